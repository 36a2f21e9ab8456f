"""Load crowd answers into the run directory's tidy long table.

Every loader returns a DataFrame with one row per (assignment, question) and the columns of
``answers/answers.parquet`` (see docs/contracts.md)::

    hit_key, hit_id, assignment_id, worker_id, question, answer, submit_time, work_seconds
    [+ status, accept_time, source]

Sources: our own parquet (written by ``tasks/collect.py``), assignments as returned by MTurk's
``ListAssignmentsForHIT`` (QuestionFormAnswers XML), MTurk's "Download batch results" CSV (full
header or a reduced ``WorkerId, Input.*, Answer.*`` version) and, through a user column mapping,
result CSVs of other studies (:func:`read_external_csv`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ANSWER_COLUMNS",
    "ExternalMapping",
    "IngestError",
    "answers_from_assignments",
    "load_answers",
    "load_manifest",
    "parse_question_form_answers",
    "read_batch_csv",
    "read_external_csv",
]

logger = logging.getLogger(__name__)

ANSWER_COLUMNS = [
    "hit_key",
    "hit_id",
    "assignment_id",
    "worker_id",
    "question",
    "answer",
    "submit_time",
    "work_seconds",
]
OPTIONAL_COLUMNS = ["status", "accept_time", "source"]

#: form fields that are not answers to a question (MTurk/our template's hidden fields)
HIDDEN_FIELDS = frozenset({"assignmentId", "hitId", "workerId", "turkSubmitTo", "hit_key"})


class IngestError(ValueError):
    """Answers or a manifest could not be read; the message names the file and the field."""


def _finish(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Coerce a long table to the contract's columns and dtypes."""
    for col in ANSWER_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if "source" not in df.columns:
        df["source"] = source
    cols = ANSWER_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in df.columns]
    out = df[cols].copy()
    for col in ("hit_key", "hit_id", "assignment_id", "worker_id", "question"):
        out[col] = out[col].astype("string")
    out["answer"] = out["answer"].astype("string")
    out["work_seconds"] = pd.to_numeric(out["work_seconds"], errors="coerce").astype(float)
    return out.reset_index(drop=True)


def load_answers(path: str | Path) -> pd.DataFrame:
    """Read ``answers.parquet`` (or a CSV with the same columns).

    Parameters
    ----------
    path : str or Path
        ``answers/answers.parquet`` of a run, a ``.csv`` in the same long format, or MTurk's
        batch-results CSV (recognised by its ``WorkerId`` column; see :func:`read_batch_csv`).

    Returns
    -------
    DataFrame
        Columns :data:`ANSWER_COLUMNS` (+ optional ones); extra columns are dropped.
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: answers file not found")
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path, dtype=str, nrows=0)
        if "WorkerId" in df.columns:
            return read_batch_csv(path)
        df = pd.read_csv(path, dtype=str)
    else:
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise IngestError(f"{path}: not a readable parquet file ({exc})") from None
    required = {"hit_key", "worker_id", "question", "answer"}
    missing = sorted(required - set(df.columns))
    if missing:
        raise IngestError(f"{path}: missing column(s) {missing}; expected {ANSWER_COLUMNS}")
    if "assignment_id" not in df.columns or df["assignment_id"].isna().all():
        df["assignment_id"] = df["hit_key"].astype(str) + ":" + df["worker_id"].astype(str)
    return _finish(df, "parquet")


def load_manifest(path: str | Path) -> pd.DataFrame:
    """Read ``tasks/manifest.jsonl`` into a DataFrame, one row per HIT.

    Returns
    -------
    DataFrame
        The contract's fields as columns (``class`` is an int column, dict fields stay dicts).
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: manifest not found")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            for key in ("hit_key", "class", "feature"):
                if key not in row:
                    raise IngestError(f"{path}:{lineno}: missing field {key!r}")
            rows.append(row)
    df = pd.DataFrame(rows)
    defaults: dict[str, Any] = {
        "kind": "image", "layer": "sparse", "class_name": None, "weight": float("nan"),
        "rank": 0, "assets": None, "is_gold": False, "gold": None, "attention": None,
        "evidence": None, "truth": None,
    }
    for key, value in defaults.items():
        if key not in df.columns:
            df[key] = [value] * len(df)
    df["class_name"] = [
        n if isinstance(n, str) else str(c)
        for n, c in zip(df["class_name"], df["class"], strict=True)
    ]
    df["is_gold"] = df["is_gold"].fillna(False).astype(bool)
    if df["hit_key"].duplicated().any():
        dup = df.loc[df["hit_key"].duplicated(), "hit_key"].iloc[0]
        raise IngestError(f"{path}: duplicate hit_key {dup!r}")
    return df


def parse_question_form_answers(xml: str) -> dict[str, str]:
    """Parse MTurk's QuestionFormAnswers XML into ``{QuestionIdentifier: answer}``.

    Delegates to :func:`tasks.answers.parse_question_form_answers` (one parser for the
    format); selection answers are joined with ``|``.

    Raises
    ------
    IngestError
        If the XML is not a well-formed QuestionFormAnswers document.
    """
    from tasks.answers import parse_question_form_answers as _parse

    try:
        return _parse(xml)
    except ValueError as exc:
        raise IngestError(f"Answer XML: {exc}") from None


def answers_from_assignments(
    assignments: Iterable[Mapping[str, Any]],
    hit_keys: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Turn ``ListAssignmentsForHIT`` assignments into the long answer table.

    Parameters
    ----------
    assignments : iterable of dict
        boto3's ``Assignments`` entries (``AssignmentId, WorkerId, HITId, AssignmentStatus,
        AcceptTime, SubmitTime, Answer``).
    hit_keys : mapping, optional
        HITId -> hit_key (from the ledger). Without it the hidden ``hit_key`` form field is used.

    Returns
    -------
    DataFrame
        The long table; ``work_seconds`` = SubmitTime - AcceptTime.
    """
    rows = []
    for a in assignments:
        fields = parse_question_form_answers(a["Answer"])
        hit_id = a.get("HITId")
        key = (hit_keys or {}).get(hit_id) or fields.get("hit_key")
        if key is None:
            raise IngestError(f"assignment {a.get('AssignmentId')}: no hit_key for HIT {hit_id}")
        accept, submit = a.get("AcceptTime"), a.get("SubmitTime")
        seconds = None
        if accept is not None and submit is not None:
            seconds = (pd.Timestamp(submit) - pd.Timestamp(accept)).total_seconds()
        for q, v in fields.items():
            if q in HIDDEN_FIELDS:
                continue
            rows.append({
                "hit_key": key, "hit_id": hit_id, "assignment_id": a["AssignmentId"],
                "worker_id": a["WorkerId"], "question": q, "answer": v,
                "submit_time": None if submit is None else str(pd.Timestamp(submit)),
                "work_seconds": seconds, "status": a.get("AssignmentStatus"),
                "accept_time": None if accept is None else str(pd.Timestamp(accept)),
                "source": "mturk_api",
            })
    return _finish(pd.DataFrame(rows, columns=ANSWER_COLUMNS + OPTIONAL_COLUMNS), "mturk_api")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise IngestError(f"{path}: CSV not found")
    # dtype=str keeps ids and free text verbatim (quoted newlines included); an empty answer
    # stays "" (an abstention), an empty metadata cell becomes missing.
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not a readable CSV ({exc})") from None
    meta_cols = [c for c in df.columns if not c.startswith("Answer.")]
    df[meta_cols] = df[meta_cols].replace("", None)
    if "WorkerId" not in df.columns:
        raise IngestError(f"{path}: no 'WorkerId' column; expected MTurk batch results")
    return df


def read_batch_csv(
    path: str | Path,
    hit_key_column: str = "Input.hit_key",
    questions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read MTurk's "Download batch results" CSV (full or reduced header).

    Parameters
    ----------
    path : str or Path
        The CSV: ``HITId, ..., AssignmentId, WorkerId, ..., Input.*, Answer.*, Approve, Reject``
        or only ``WorkerId, Input.*, Answer.*``. Unknown columns are ignored.
    hit_key_column : str
        Column naming the HIT (our batch.csv has ``hit_key``, so ``Input.hit_key``).
    questions : iterable of str, optional
        ``Answer.<name>`` fields to keep; default all.

    Returns
    -------
    DataFrame
        The long answer table (``source = "mturk_csv"``).
    """
    path = Path(path)
    df = _expand_task_answers(_read_csv(path), path)
    if hit_key_column not in df.columns:
        raise IngestError(f"{path}: no column {hit_key_column!r} naming the HIT")
    answer_cols = [c for c in df.columns if c.startswith("Answer.")]
    if questions is not None:
        wanted = set(questions)
        answer_cols = [c for c in answer_cols if c[len("Answer."):] in wanted]
    if not answer_cols:
        raise IngestError(f"{path}: no 'Answer.*' columns")
    return _wide_to_long(df, df[hit_key_column], {c[len("Answer."):]: c for c in answer_cols},
                         "mturk_csv")


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
    for i, raw in enumerate(df["Answer.taskAnswers"]):
        try:
            parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else [{}]
        except json.JSONDecodeError:
            raise IngestError(f"{path}: row {i + 2}: Answer.taskAnswers is not JSON") from None
        first = parsed[0] if isinstance(parsed, list) and parsed else parsed
        if not isinstance(first, dict):
            raise IngestError(f"{path}: row {i + 2}: Answer.taskAnswers: expected a JSON object")
        records.append({f"Answer.{k}": _flatten_crowd_answer(v) for k, v in first.items()})
    extra = pd.DataFrame(records, index=df.index)
    extra = extra[[c for c in extra.columns if c not in df.columns]]
    return pd.concat([df.drop(columns="Answer.taskAnswers"), extra], axis=1)


def _wide_to_long(
    df: pd.DataFrame, keys: pd.Series, question_cols: Mapping[str, str], source: str,
    value_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    def col(name: str) -> pd.Series:
        return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index)

    n = len(df)
    assignment = col("AssignmentId").copy()
    synth = [f"row{i}" for i in range(n)]
    assignment = assignment.where(assignment.notna(), pd.Series(synth, index=df.index))
    hit_id = col("HITId").where(col("HITId").notna(), keys)
    rows = []
    value_maps = value_maps or {}
    for q, c in question_cols.items():
        if q in HIDDEN_FIELDS:
            continue
        vals = df[c]
        vmap = value_maps.get(q)
        if vmap:
            vals = vals.map(lambda v, m=vmap: m.get(v, v) if isinstance(v, str) else v)
        rows.append(pd.DataFrame({
            "hit_key": keys.values, "hit_id": hit_id.values, "assignment_id": assignment.values,
            "worker_id": df["WorkerId"].values, "question": q, "answer": vals.values,
            "submit_time": col("SubmitTime").values,
            "work_seconds": col("WorkTimeInSeconds").values,
            "status": col("AssignmentStatus").values, "accept_time": col("AcceptTime").values,
            "source": source,
        }))
    long = pd.concat(rows, ignore_index=True)
    long = long[long["answer"].notna()]
    return _finish(long, source)


@dataclass
class ExternalMapping:
    """How the columns of another study's MTurk result CSV map onto our items and questions.

    Attributes
    ----------
    class_column : str
        Column holding the class (index or name), e.g. ``"Input.class"``.
    feature_column : str
        Column holding the feature id, e.g. ``"Input.neuron"``.
    questions : dict
        Our question name -> their column, e.g. ``{"shared": "Answer.Q1",
        "pattern": "Answer.Q2", "description": "Answer.why"}``.
    value_maps : dict
        Per question, their answer -> ours (e.g. ``{"shared": {"Yes": "yes", "No": "no"}}``).
    class_name_column : str, optional
        Column with a readable class name.
    item_column : str, optional
        Column that identifies an item; default ``ext-<class>-<feature>``.
    classes : list of str, optional
        Class names in index order; class columns holding names are mapped to their index.
    kind : str
        ``"image"`` or ``"text"`` (decides which pattern options apply).
    """

    class_column: str
    feature_column: str
    questions: dict[str, str]
    value_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    class_name_column: str | None = None
    item_column: str | None = None
    classes: list[str] | None = None
    kind: str = "image"


def read_external_csv(
    path: str | Path, mapping: ExternalMapping
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read another study's MTurk result CSV through a column mapping.

    Parameters
    ----------
    path : str or Path
        Batch-results CSV (full or reduced header); must have ``WorkerId``.
    mapping : ExternalMapping
        Which ``Input.*`` / ``Answer.*`` columns are the class, feature and questions.

    Returns
    -------
    answers : DataFrame
        Long answer table (``source = "external_csv"``).
    items : DataFrame
        A manifest-like table, one row per item: ``hit_key, kind, layer, class, class_name,
        feature, weight, rank, is_gold, gold, attention, assets, evidence, truth``.
    """
    path = Path(path)
    df = _expand_task_answers(_read_csv(path), path)
    needed = [mapping.class_column, mapping.feature_column, *mapping.questions.values()]
    needed += [c for c in (mapping.class_name_column, mapping.item_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise IngestError(f"{path}: mapped column(s) {missing} not in the CSV header")
    raw_class = df[mapping.class_column].str.strip()
    if mapping.classes is not None:
        lookup = {name: i for i, name in enumerate(mapping.classes)}
        cls = raw_class.map(lambda v: lookup.get(v, v))
    else:
        cls = raw_class
    try:
        cls_int = cls.astype(int)
    except (TypeError, ValueError):
        codes, _ = pd.factorize(raw_class, sort=True)
        cls_int = pd.Series(codes, index=df.index)
        if mapping.class_name_column is None:
            df = df.assign(**{"_class_name": raw_class})
            mapping = ExternalMapping(**{**mapping.__dict__, "class_name_column": "_class_name"})
    feat = df[mapping.feature_column].str.strip()
    if mapping.item_column:
        keys = df[mapping.item_column].astype(str)
    else:
        keys = "ext-c" + cls_int.astype(str) + "-f" + feat.astype(str)
    answers = _wide_to_long(df, keys, mapping.questions, "external_csv", mapping.value_maps)
    names = (df[mapping.class_name_column] if mapping.class_name_column
             else (cls_int.map(lambda i: mapping.classes[i]) if mapping.classes
                   else cls_int.astype(str)))
    items = pd.DataFrame({"hit_key": keys, "class": cls_int, "class_name": names,
                          "feature": pd.to_numeric(feat, errors="coerce").fillna(-1).astype(int)
                          if feat.str.fullmatch(r"-?\d+").all() else feat})
    items = items.drop_duplicates("hit_key").reset_index(drop=True)
    items["kind"] = mapping.kind
    items["layer"] = "sparse"
    items["weight"] = float("nan")
    items["rank"] = 0
    items["is_gold"] = False
    for col in ("gold", "attention", "assets", "evidence", "truth"):
        items[col] = None
    return answers, items
