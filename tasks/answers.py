"""Worker answers: QuestionFormAnswers XML, the tidy answers table, batch-results CSV ingestion.

Every source of answers (our task server or MTurk through the requester API, MTurk's "Download
batch results" CSV) ends up in one long table, ``answers/answers.parquet``, with one row per
(assignment, question) and the columns of :data:`ANSWER_COLUMNS` (see docs/contracts.md).
Parquet files are written atomically (temporary file, then :func:`os.replace`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import pandas as pd

__all__ = [
    "ANSWER_COLUMNS",
    "IGNORED_FIELDS",
    "QFA_NS",
    "AnswersFormatError",
    "answers_frame",
    "assignment_rows",
    "build_question_form_answers",
    "merge_answers",
    "parse_mturk_time",
    "parse_question_form_answers",
    "read_answers",
    "read_batch_csv",
    "write_answers",
]

QFA_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
    "QuestionFormAnswers.xsd"
)
ANSWER_COLUMNS: list[str] = [
    "hit_key",
    "hit_id",
    "assignment_id",
    "worker_id",
    "question",
    "answer",
    "submit_time",
    "work_seconds",
    "status",
    "accept_time",
    "source",
]
#: Form fields that carry bookkeeping, not answers (never become question rows).
IGNORED_FIELDS = frozenset({"assignmentId", "hitId", "workerId", "turkSubmitTo", "hit_key"})

_STRING_COLUMNS = ["hit_key", "hit_id", "assignment_id", "worker_id", "question", "answer",
                   "status", "source"]


class AnswersFormatError(ValueError):
    """An answer document or results file does not have the expected structure."""


# --------------------------------------------------------------------------- QuestionFormAnswers
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_question_form_answers(xml: str) -> dict[str, str]:
    """Parse MTurk ``QuestionFormAnswers`` XML into ``{question identifier: answer}``.

    Accepts the namespaced document MTurk returns as well as an un-namespaced one. ``FreeText``
    answers are returned verbatim (XML entities decoded); ``SelectionIdentifier`` answers (from
    QuestionForm HITs) are joined with ``|``; an ``UploadedFileKey`` is returned as the key.
    Repeated identifiers (multi-valued form fields) are joined with ``|`` in document order.

    Raises
    ------
    AnswersFormatError
        If the text is not well-formed XML or its root is not ``QuestionFormAnswers``.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise AnswersFormatError(f"QuestionFormAnswers: not well-formed XML ({exc})") from exc
    if _local(root.tag) != "QuestionFormAnswers":
        raise AnswersFormatError(
            f"QuestionFormAnswers: root element is <{_local(root.tag)}>, "
            "expected <QuestionFormAnswers>"
        )
    out: dict[str, str] = {}
    for ans in root:
        if _local(ans.tag) != "Answer":
            continue
        qid: str | None = None
        values: list[str] = []
        for child in ans:
            name = _local(child.tag)
            if name == "QuestionIdentifier":
                qid = (child.text or "").strip()
            elif name == "FreeText":
                values.append(child.text or "")
            elif name == "SelectionIdentifier" or name == "UploadedFileKey":
                values.append((child.text or "").strip())
        if not qid:
            raise AnswersFormatError("QuestionFormAnswers: <Answer> without <QuestionIdentifier>")
        value = "|".join(values)
        out[qid] = f"{out[qid]}|{value}" if qid in out else value
    return out


def build_question_form_answers(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Build the namespaced ``QuestionFormAnswers`` XML MTurk stores for a submitted form.

    Each ``(name, value)`` becomes one ``<Answer>`` with a ``<FreeText>``; text is XML-escaped.
    """
    items = fields.items() if isinstance(fields, Mapping) else fields
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><QuestionFormAnswers xmlns="{QFA_NS}">']
    for name, value in items:
        parts.append(
            f"<Answer><QuestionIdentifier>{escape(str(name))}</QuestionIdentifier>"
            f"<FreeText>{escape(str(value))}</FreeText></Answer>"
        )
    parts.append("</QuestionFormAnswers>")
    return "".join(parts)


# --------------------------------------------------------------------------- times
_TZ_ABBREV = {"UTC": 0, "GMT": 0, "Z": 0, "PST": -8, "PDT": -7, "MST": -7, "MDT": -6,
              "CST": -6, "CDT": -5, "EST": -5, "EDT": -4}
_MTURK_CSV_TIME = re.compile(
    r"^\w{3} (?P<mon>\w{3}) (?P<day>\d{1,2}) (?P<hms>\d{2}:\d{2}:\d{2}) (?P<tz>[A-Z]{1,4}) "
    r"(?P<year>\d{4})$"
)


def parse_mturk_time(value: Any) -> pd.Timestamp | None:
    """A timestamp as a tz-aware UTC :class:`pandas.Timestamp` (``None`` when empty).

    Accepts :class:`datetime` objects (boto3 parses API timestamps), ISO 8601 strings, epoch
    seconds, and the requester website's CSV format (``"Wed Jul 08 04:16:53 PDT 2020"``).
    Naive values are taken as UTC.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, (int, float)):
        return pd.Timestamp(datetime.fromtimestamp(float(value), tz=UTC))
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        m = _MTURK_CSV_TIME.match(text)
        if m:
            if m["tz"] not in _TZ_ABBREV:
                raise AnswersFormatError(f"time {text!r}: unknown time zone {m['tz']!r}")
            naive = datetime.strptime(f"{m['mon']} {m['day']} {m['hms']} {m['year']}",
                                      "%b %d %H:%M:%S %Y")
            tz = timezone(timedelta(hours=_TZ_ABBREV[m["tz"]]))
            return pd.Timestamp(naive.replace(tzinfo=tz)).tz_convert("UTC")
        try:
            ts = pd.Timestamp(text)
        except ValueError as exc:
            raise AnswersFormatError(f"time {text!r}: not a recognized timestamp") from exc
    else:
        ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# --------------------------------------------------------------------------- the table
def answers_frame(rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Rows (dicts keyed by :data:`ANSWER_COLUMNS`) as the typed answers table.

    ``submit_time`` / ``accept_time`` are ``datetime64[ns, UTC]``, ``work_seconds`` float64,
    every other column string (object). Missing keys become missing values.
    """
    df = pd.DataFrame(list(rows), columns=ANSWER_COLUMNS)
    for col in _STRING_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    for col in ("submit_time", "accept_time"):
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    df["work_seconds"] = pd.to_numeric(df["work_seconds"], errors="coerce").astype("float64")
    return df


def assignment_rows(
    assignment: Mapping[str, Any], *, hit_key: str | None, source: str
) -> list[dict[str, Any]]:
    """Answer rows of one assignment as returned by ``ListAssignmentsForHIT``.

    Parameters
    ----------
    assignment : mapping
        ``{"AssignmentId", "WorkerId", "HITId", "AssignmentStatus", "AcceptTime",
        "SubmitTime", "Answer", ...}`` (boto3's parsed form).
    hit_key : str or None
        The manifest key of the HIT (falls back to the hidden ``hit_key`` form field).
    source : str
        Where the answers came from (e.g. ``"local"``, ``"sandbox"``, ``"production"``).
    """
    answers = parse_question_form_answers(assignment.get("Answer") or "<QuestionFormAnswers/>")
    key = hit_key or answers.get("hit_key")
    accept = parse_mturk_time(assignment.get("AcceptTime"))
    submit = parse_mturk_time(assignment.get("SubmitTime"))
    work = (submit - accept).total_seconds() if accept is not None and submit is not None else None
    base = {
        "hit_key": key,
        "hit_id": assignment.get("HITId"),
        "assignment_id": assignment["AssignmentId"],
        "worker_id": assignment.get("WorkerId"),
        "submit_time": submit,
        "work_seconds": work,
        "status": assignment.get("AssignmentStatus"),
        "accept_time": accept,
        "source": source,
    }
    return [
        {**base, "question": q, "answer": a}
        for q, a in answers.items()
        if q not in IGNORED_FIELDS
    ]


def read_answers(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``answers.parquet`` (a file, or the ``answers/`` directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "answers.parquet"
    if not p.exists():
        return answers_frame()
    df = pd.read_parquet(p)
    missing = [c for c in ANSWER_COLUMNS[:8] if c not in df.columns]
    if missing:
        raise AnswersFormatError(f"{p}: missing columns {missing}")
    for c in ANSWER_COLUMNS:
        if c not in df.columns:
            df[c] = None
    return answers_frame(df[ANSWER_COLUMNS].to_dict("records"))


def merge_answers(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two answer tables, one row per (assignment, question); ``new`` wins."""
    if old.empty:
        merged = new
    elif new.empty:
        merged = old
    else:
        merged = pd.concat([old, new], ignore_index=True)
    merged = merged.drop_duplicates(["assignment_id", "question"], keep="last")
    merged = merged.sort_values(["hit_key", "assignment_id", "question"], na_position="last")
    return answers_frame(merged.to_dict("records"))


def write_answers(df: pd.DataFrame, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/answers.parquet`` atomically (temporary file in the same directory)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "answers.parquet"
    fd, tmp = tempfile.mkstemp(prefix=".answers-", suffix=".parquet", dir=out)
    os.close(fd)
    try:
        answers_frame(df.to_dict("records")).to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- batch CSV
def _csv_assignment_id(row_number: int, worker: str, hit_key: str, answers: Mapping[str, str]
                       ) -> str:
    digest = hashlib.sha256(
        "\x1f".join([str(row_number), worker, hit_key, *sorted(f"{k}={v}" for k, v in
                                                               answers.items())]).encode()
    ).hexdigest()[:24]
    return f"csv-{digest}"


def read_batch_csv(
    path: str | os.PathLike[str], *, known_hit_keys: Iterable[str] | None = None
) -> pd.DataFrame:
    """Read MTurk's "Download batch results" CSV into the answers table.

    Reads the full header (``HITId, ..., AssignmentId, WorkerId, AssignmentStatus, AcceptTime,
    SubmitTime, ..., WorkTimeInSeconds, ..., Input.*, Answer.*, Approve, Reject``) and reduced
    versions holding only ``WorkerId``, ``Input.*`` and ``Answer.*``; unknown columns are
    ignored, quoted newlines kept. ``hit_key`` comes from ``Input.hit_key`` (else the
    ``Answer.hit_key`` hidden field); each ``Answer.<field>`` becomes one row with
    ``question=<field>``. Without ``AssignmentId`` a stable id is derived from the row.

    Parameters
    ----------
    known_hit_keys : iterable of str, optional
        The manifest's keys; a row whose key is not among them is an error.

    Raises
    ------
    AnswersFormatError
        Missing ``WorkerId`` / ``Answer.*`` columns, a row without a hit key, an unknown key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswersFormatError(f"{p}: cannot read batch results ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if "WorkerId" not in header:
        raise AnswersFormatError(f"{p}: no 'WorkerId' column (is this MTurk's batch results CSV?)")
    answer_cols = [c for c in header if c.startswith("Answer.")]
    if not answer_cols:
        raise AnswersFormatError(f"{p}: no 'Answer.<field>' columns")
    known = set(known_hit_keys) if known_hit_keys is not None else None
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(reader, start=2):
        answers = {c[len("Answer."):]: rec.get(c) or "" for c in answer_cols}
        hit_key = (rec.get("Input.hit_key") or answers.get("hit_key") or "").strip()
        if not hit_key:
            raise AnswersFormatError(f"{p}: line {i}: no 'Input.hit_key' (or Answer.hit_key)")
        if known is not None and hit_key not in known:
            raise AnswersFormatError(f"{p}: line {i}: hit_key {hit_key!r} is not in the manifest")
        worker = (rec.get("WorkerId") or "").strip()
        aid = (rec.get("AssignmentId") or "").strip() or _csv_assignment_id(
            i, worker, hit_key, answers)
        work = (rec.get("WorkTimeInSeconds") or "").strip()
        base = {
            "hit_key": hit_key,
            "hit_id": (rec.get("HITId") or "").strip() or None,
            "assignment_id": aid,
            "worker_id": worker or None,
            "submit_time": parse_mturk_time(rec.get("SubmitTime")),
            "work_seconds": float(work) if work else None,
            "status": (rec.get("AssignmentStatus") or "").strip() or None,
            "accept_time": parse_mturk_time(rec.get("AcceptTime")),
            "source": "mturk-csv",
        }
        for q, a in answers.items():
            if q not in IGNORED_FIELDS:
                rows.append({**base, "question": q, "answer": a})
    return answers_frame(rows)
