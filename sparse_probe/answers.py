"""The answers table: its columns, one reader and one atomic writer, and MTurk's answer formats.

Every source of answers ends up in one long table, ``answers/answers.parquet``, with one row per
(assignment, question) and the columns of :data:`ANSWER_COLUMNS` (docs/contracts.md):

- assignments from our task server or MTurk's requester API (``ListAssignmentsForHIT``: the
  answers are ``QuestionFormAnswers`` XML, :func:`assignment_rows`);
- MTurk's "Download batch results" CSV, with MTurk's full header or a reduced
  ``WorkerId, Input.*, Answer.*`` one (:func:`read_batch_csv`; crowd-html-elements'
  ``Answer.taskAnswers`` JSON is expanded into fields);
- another study's results CSV through a column mapping (``analysis.ingest`` builds on
  :func:`read_results_csv` and :func:`results_to_long`).

Types: ``submit_time`` and ``accept_time`` are tz-aware UTC timestamps, ``work_seconds`` float,
the other columns strings. ``source`` says where rows came from: the endpoint (``local``,
``sandbox``, ``production``), ``mturk-csv``, ``mturk-api`` or ``external-csv``.

Both ``tasks`` (collect, ingest-csv, review) and ``analysis`` (report) read and write the table
only through this module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import numbers
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import pandas as pd

from sparse_probe.rundir import (
    atomic_path,
    check_same_run,
    fingerprint_of,
    read_run_record,
    write_run_record,
)

__all__ = [
    "ANSWERS_FILE",
    "ANSWER_COLUMNS",
    "IGNORED_FIELDS",
    "QFA_NS",
    "REQUIRED_COLUMNS",
    "SOURCE_EXTERNAL_CSV",
    "SOURCE_MTURK_API",
    "SOURCE_MTURK_CSV",
    "AnswersFormatError",
    "answers_frame",
    "assignment_rows",
    "build_question_form_answers",
    "merge_answers",
    "parse_mturk_time",
    "parse_question_form_answers",
    "read_answers",
    "read_batch_csv",
    "read_results_csv",
    "results_to_long",
    "write_answers",
]

QFA_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
    "QuestionFormAnswers.xsd"
)
ANSWERS_FILE = "answers.parquet"
#: The columns of the answers table, in order. The first eight are required in a file.
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
REQUIRED_COLUMNS: list[str] = ANSWER_COLUMNS[:8]
#: Form fields that carry bookkeeping, not answers (never become question rows).
IGNORED_FIELDS = frozenset({"assignmentId", "hitId", "workerId", "turkSubmitTo", "hit_key"})
SOURCE_MTURK_CSV = "mturk-csv"
SOURCE_MTURK_API = "mturk-api"
SOURCE_EXTERNAL_CSV = "external-csv"

_STRING_COLUMNS = ["hit_key", "hit_id", "assignment_id", "worker_id", "question", "answer",
                   "status", "source"]
_TIME_COLUMNS = ["submit_time", "accept_time"]


class AnswersFormatError(ValueError):
    """An answer document or results file does not have the expected structure (the message
    names the file and the field or row)."""


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

    Raises
    ------
    AnswersFormatError
        An unrecognized string or time-zone abbreviation.
    """
    if value is None or value is pd.NaT or (isinstance(value, numbers.Real) and pd.isna(value)):
        return None
    if isinstance(value, numbers.Real):  # numpy's too: pd.Timestamp would read them as ns
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
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _utc_column(values: pd.Series, where: str) -> pd.Series:
    """A column of times as ``datetime64[ns, UTC]`` (each distinct value parsed once)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    obj = values.astype(object).where(values.notna(), None)
    uniq = pd.unique(obj.to_numpy())
    try:
        parsed = {u: parse_mturk_time(u) for u in uniq if u is not None}
    except AnswersFormatError as exc:
        raise AnswersFormatError(f"{where}: {exc}") from None
    out = obj.map(lambda v: parsed.get(v) if v is not None else None)
    return pd.to_datetime(out, utc=True).astype("datetime64[ns, UTC]")


# --------------------------------------------------------------------------- the table
def answers_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]] = (),
                  where: str = "answers") -> pd.DataFrame:
    """Rows (a DataFrame, or dicts keyed by :data:`ANSWER_COLUMNS`) as the typed answers table.

    ``submit_time`` / ``accept_time`` become ``datetime64[ns, UTC]`` (strings in any format
    :func:`parse_mturk_time` reads), ``work_seconds`` float64, every other column object
    (strings or ``None``). Missing columns become missing values; extra columns are dropped.
    """
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    df = df.reindex(columns=ANSWER_COLUMNS).reset_index(drop=True)
    for col in _STRING_COLUMNS:
        s = df[col].astype(object)
        df[col] = s.where(s.notna(), None)
    for col in _TIME_COLUMNS:
        df[col] = _utc_column(df[col], f"{where}: column {col!r}")
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


def read_answers(path: str | os.PathLike[str], *, missing_ok: bool = True) -> pd.DataFrame:
    """The one reader of the answers table.

    Parameters
    ----------
    path : path-like
        The ``answers/`` directory, its ``answers.parquet``, a ``.csv`` in the same long
        format, or MTurk's batch-results CSV (recognised by its ``WorkerId`` column; read with
        :func:`read_batch_csv`).
    missing_ok : bool
        A missing file gives an empty table (else :class:`AnswersFormatError`).

    Returns
    -------
    DataFrame
        Columns :data:`ANSWER_COLUMNS`, typed as :func:`answers_frame`. A file without
        ``assignment_id`` gets ``<hit_key>:<worker_id>`` (one assignment per worker and HIT).

    Raises
    ------
    AnswersFormatError
        Unreadable file, or one of the :data:`REQUIRED_COLUMNS` missing.
    """
    p = Path(path)
    if p.is_dir():
        p = p / ANSWERS_FILE
    if not p.exists():
        if missing_ok:
            return answers_frame()
        raise AnswersFormatError(f"{p}: answers file not found")
    if p.suffix.lower() == ".csv":
        try:
            head = pd.read_csv(p, dtype=str, nrows=0)
            if "WorkerId" in head.columns:
                return read_batch_csv(p)
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise AnswersFormatError(f"{p}: not a readable CSV ({exc})") from None
        meta = [c for c in df.columns if c != "answer"]
        df[meta] = df[meta].replace("", None)
    else:
        try:
            df = pd.read_parquet(p)
        except (OSError, ValueError) as exc:
            raise AnswersFormatError(f"{p}: not a readable parquet file ({exc})") from None
    if "assignment_id" not in df.columns and {"hit_key", "worker_id"} <= set(df.columns):
        df["assignment_id"] = df["hit_key"].astype(str) + ":" + df["worker_id"].astype(str)
    needed = [c for c in ("hit_key", "assignment_id", "worker_id", "question", "answer")
              if c not in df.columns]
    if needed:
        raise AnswersFormatError(f"{p}: missing column(s) {needed}; expected {ANSWER_COLUMNS}")
    return answers_frame(df, where=str(p))


def merge_answers(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two answer tables, one row per (assignment, question); ``new`` wins."""
    parts = [answers_frame(d) for d in (old, new) if len(d)]
    merged = pd.concat(parts, ignore_index=True) if parts else answers_frame()
    merged = merged.drop_duplicates(["assignment_id", "question"], keep="last")
    merged = merged.sort_values(["hit_key", "assignment_id", "question"], na_position="last")
    return answers_frame(merged)


def write_answers(df: pd.DataFrame, out_dir: str | os.PathLike[str], *,
                  tasks_dir: str | os.PathLike[str] | None = None) -> Path:
    """The one writer: ``out_dir/answers.parquet``, atomically (temp file + rename).

    With ``tasks_dir``, the answers are tied to those HITs: ``out_dir/run.json`` records the
    tasks' fingerprint (``tasks/run.json``), and answers already tied to *other* tasks are
    not overwritten (:class:`~sparse_probe.rundir.RunMismatchError`, naming both).
    """
    out = Path(out_dir)
    target = out / ANSWERS_FILE
    table = answers_frame(df)
    tasks_fp = None
    if tasks_dir is not None:
        rec = read_run_record(tasks_dir)
        tasks_fp = rec.get("fingerprint") if rec else None
        old = read_run_record(out)
        check_same_run((old or {}).get("inputs", {}).get("tasks"), tasks_fp,
                       expected_from=str(target), actual_from=str(tasks_dir))
    with atomic_path(target) as tmp:
        table.to_parquet(tmp, index=False)
    if tasks_dir is not None:
        digest = pd.util.hash_pandas_object(table.astype("string"), index=False).to_numpy()
        write_run_record(out, fingerprint=fingerprint_of({"answers": digest.tobytes()}),
                         inputs={"tasks": tasks_fp})
    return target


# --------------------------------------------------------------------------- results CSV
def read_results_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """An MTurk results CSV as a wide table of strings, one row per assignment.

    Quoted newlines are kept, a UTF-8 byte-order mark dropped; empty cells of metadata
    columns become ``None`` while empty ``Answer.*`` cells stay ``""`` (an empty answer).
    crowd-html-elements' ``Answer.taskAnswers`` JSON is expanded into ``Answer.<field>``
    columns (a radio group ``{"yes": true, "no": false}`` becomes ``"yes"``).

    Raises
    ------
    AnswersFormatError
        Unreadable file (a quote left open, text after a closing quote), no ``WorkerId``
        column, a column named twice, ragged rows, bad ``taskAnswers`` JSON.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswersFormatError(f"{p}: cannot read results CSV ({exc})") from None
    try:
        # strict: a quote left open (a download cut inside an answer) is refused, not read
        # as a shorter answer
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise AnswersFormatError(f"{p}: not a readable CSV ({exc})") from None
    if not records:
        raise AnswersFormatError(f"{p}: empty file (is this MTurk's batch results CSV?)")
    header, rows = records[0], [r for r in records[1:] if r]
    if "WorkerId" not in header:
        raise AnswersFormatError(f"{p}: no 'WorkerId' column (is this MTurk's batch results CSV?)")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise AnswersFormatError(f"{p}: column {dup!r} appears twice in the header")
    for i, r in enumerate(rows, start=2):
        if len(r) != len(header):
            raise AnswersFormatError(
                f"{p}: row {i}: {len(r)} cells, the header has {len(header)}")
    df = pd.DataFrame(rows, columns=header, dtype=object)
    meta = [c for c in header if not c.startswith("Answer.")]
    # (pandas 3 infers a str column with NaN from map; the table keeps None, as documented)
    stripped = df[meta].map(lambda v: v.strip() or None)
    df[meta] = stripped.astype(object).where(stripped.notna(), None)
    return _expand_task_answers(df, p)


def _flatten_crowd_answer(value: Any) -> str:
    """crowd-html-elements radio groups arrive as ``{"yes": true, "no": false}``."""
    if isinstance(value, dict):
        picked = [k for k, v in value.items() if v is True]
        if picked or all(isinstance(v, bool) for v in value.values()):
            return "|".join(picked)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return "" if value is None else str(value)


def _expand_task_answers(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Expand ``Answer.taskAnswers`` (crowd-html-elements JSON) into ``Answer.<field>`` columns."""
    if "Answer.taskAnswers" not in df.columns:
        return df
    records = []
    for i, raw in enumerate(df["Answer.taskAnswers"], start=2):
        try:
            parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else [{}]
        except json.JSONDecodeError:
            raise AnswersFormatError(f"{path}: row {i}: Answer.taskAnswers is not JSON") from None
        first = parsed[0] if isinstance(parsed, list) and parsed else parsed
        if not isinstance(first, dict):
            raise AnswersFormatError(
                f"{path}: row {i}: Answer.taskAnswers: expected a JSON object")
        records.append({f"Answer.{k}": _flatten_crowd_answer(v) for k, v in first.items()})
    extra = pd.DataFrame(records, index=df.index, dtype=object)
    extra = extra[[c for c in extra.columns if c not in df.columns]]
    extra = extra.astype(object).where(extra.notna(), None)
    return pd.concat([df.drop(columns="Answer.taskAnswers"), extra], axis=1)


def _stable_assignment_ids(df: pd.DataFrame, keys: pd.Series,
                           question_cols: Mapping[str, str]) -> pd.Series:
    """``csv-<digest>`` of worker, HIT and answers: the same row gets the same id in every
    download and row order, so re-ingesting a file adds nothing."""
    cols = sorted(question_cols.items())
    workers = df["WorkerId"].fillna("").astype(str).tolist()
    answers = [df[c].fillna("").astype(str).tolist() for _, c in cols]
    ids = []
    for i, (worker, key) in enumerate(zip(workers, keys.astype(str).tolist(), strict=True)):
        parts = [worker, key, *(f"{q}={a[i]}" for (q, _), a in zip(cols, answers, strict=True))]
        ids.append("csv-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24])
    return pd.Series(ids, index=df.index, dtype=object)


def results_to_long(
    df: pd.DataFrame,
    keys: pd.Series,
    question_cols: Mapping[str, str],
    source: str,
    *,
    value_maps: Mapping[str, Mapping[str, str]] | None = None,
    where: str = "results CSV",
) -> pd.DataFrame:
    """A wide results table (:func:`read_results_csv`) as the long answers table.

    Parameters
    ----------
    df : DataFrame
        One row per assignment; MTurk's metadata columns (``AssignmentId``, ``HITId``,
        ``WorkerId``, ``AssignmentStatus``, ``AcceptTime``, ``SubmitTime``,
        ``WorkTimeInSeconds``) are used where present.
    keys : Series
        The ``hit_key`` of each row (same index as ``df``).
    question_cols : mapping
        Our question id -> the column holding its answer.
    source : str
        The ``source`` of the rows.
    value_maps : mapping, optional
        Per question, a translation of answer values (``{"shared": {"Yes": "yes"}}``).
    where : str
        Named in errors (the file).

    Returns
    -------
    DataFrame
        :data:`ANSWER_COLUMNS`; row-major (an assignment's answers together, in column order).
        Without ``AssignmentId`` an id is derived from worker, HIT and answers
        (``csv-<digest>``); without ``HITId`` the ``hit_id`` is missing.
    """
    def col(name: str) -> pd.Series:
        return df[name] if name in df.columns else pd.Series(None, index=df.index, dtype=object)

    qcols = {q: c for q, c in question_cols.items() if q not in IGNORED_FIELDS}
    assignment = col("AssignmentId")
    if assignment.isna().any():
        assignment = assignment.where(assignment.notna(),
                                      _stable_assignment_ids(df, keys, qcols))
    work = col("WorkTimeInSeconds")
    secs = pd.to_numeric(work, errors="coerce")
    bad = work.notna() & secs.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax()) + 2
        raise AnswersFormatError(f"{where}: row {row}: WorkTimeInSeconds "
                                 f"{work[bad].iloc[0]!r} is not a number")
    base = pd.DataFrame({
        "hit_key": keys.to_numpy(), "hit_id": col("HITId").to_numpy(),
        "assignment_id": assignment.to_numpy(),
        "worker_id": col("WorkerId").to_numpy(),
        "submit_time": _utc_column(col("SubmitTime"), f"{where}: SubmitTime").to_numpy(),
        "work_seconds": secs.to_numpy(), "status": col("AssignmentStatus").to_numpy(),
        "accept_time": _utc_column(col("AcceptTime"), f"{where}: AcceptTime").to_numpy(),
        "source": source, "_row": range(len(df)),
    })
    if not qcols:
        return answers_frame(where=where)
    value_maps = value_maps or {}
    parts = []
    for order, (q, c) in enumerate(qcols.items()):
        vals = df[c].astype(object)
        vmap = value_maps.get(q)
        if vmap:
            vals = vals.map(lambda v, m=vmap: m.get(v, v) if isinstance(v, str) else v)
        parts.append(base.assign(question=q, answer=vals.to_numpy(), _col=order))
    long = pd.concat(parts, ignore_index=True)
    long = long[long["answer"].notna()].sort_values(["_row", "_col"], kind="stable")
    return answers_frame(long, where=where)


def read_batch_csv(
    path: str | os.PathLike[str],
    *,
    known_hit_keys: Iterable[str] | None = None,
    hit_key_column: str = "Input.hit_key",
    questions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The one reader of MTurk's "Download batch results" CSV, into the answers table.

    Reads the full header (``HITId, ..., AssignmentId, WorkerId, AssignmentStatus, AcceptTime,
    SubmitTime, ..., WorkTimeInSeconds, ..., Input.*, Answer.*, Approve, Reject``) and reduced
    versions holding only ``WorkerId``, ``Input.*`` and ``Answer.*``; unknown columns are
    ignored, quoted newlines kept. ``hit_key`` comes from ``hit_key_column`` (else the
    ``Answer.hit_key`` hidden field); each ``Answer.<field>`` becomes one row with
    ``question=<field>``. Times are parsed to UTC (MTurk writes ``"Wed Jul 08 04:16:53 PDT
    2020"``); without ``AssignmentId`` a stable id is derived from worker, HIT and answers;
    ``source`` is ``"mturk-csv"``.

    Parameters
    ----------
    path : path-like
    known_hit_keys : iterable of str, optional
        The manifest's keys; a row whose key is not among them is an error.
    hit_key_column : str
        The column naming the HIT (our batch.csv has ``hit_key``, so ``Input.hit_key``).
    questions : iterable of str, optional
        ``Answer.<field>`` fields to keep; default all. Derived assignment ids still come from
        every answer, so they are the same whatever is kept.

    Raises
    ------
    AnswersFormatError
        Missing ``WorkerId`` / ``Answer.*`` columns, a row without a hit key, an unknown key,
        an unparseable time or work time (the message names the file and row).
    """
    p = Path(path)
    df = read_results_csv(p)
    answer_cols = [c for c in df.columns if c.startswith("Answer.")]
    if not answer_cols:
        raise AnswersFormatError(f"{p}: no 'Answer.<field>' columns")
    # (an empty or blank key is refused below, as a missing one is)
    if hit_key_column in df.columns:
        keys = df[hit_key_column]
        if "Answer.hit_key" in df.columns:
            keys = keys.where(keys.notna(), df["Answer.hit_key"])
    elif "Answer.hit_key" in df.columns:
        keys = df["Answer.hit_key"]
    else:
        raise AnswersFormatError(f"{p}: no {hit_key_column!r} (or Answer.hit_key) column "
                                 "naming the HIT")
    keys = keys.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    missing = keys.isna() | keys.eq("")
    if missing.any():
        row = int(missing.to_numpy().argmax()) + 2
        raise AnswersFormatError(f"{p}: row {row}: no hit_key ({hit_key_column} or "
                                 "Answer.hit_key is empty)")
    if known_hit_keys is not None:
        unknown = ~keys.isin(set(known_hit_keys))
        if unknown.any():
            row = int(unknown.to_numpy().argmax()) + 2
            raise AnswersFormatError(f"{p}: row {row}: hit_key {keys[unknown].iloc[0]!r} is "
                                     "not in the manifest")
    qcols = {c[len("Answer."):]: c for c in answer_cols}
    wanted = None if questions is None else set(questions)
    if wanted is not None and not wanted & qcols.keys():
        raise AnswersFormatError(f"{p}: none of the questions {sorted(wanted)} has an "
                                 "'Answer.<field>' column")
    # Every answer goes into the stable assignment ids, so that reading some questions names
    # the same assignments as reading them all (merge_answers keeps one row per assignment).
    long = results_to_long(df, keys, qcols, SOURCE_MTURK_CSV, where=str(p))
    if wanted is None:
        return long
    return long[long["question"].isin(wanted)].reset_index(drop=True)
