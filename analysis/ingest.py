"""Load crowd answers into the run directory's tidy long table, and the manifest.

The answers table, its reader, QuestionFormAnswers XML and the one reader of MTurk's batch-results
CSV live in :mod:`sparse_probe.answers` (shared with ``tasks``); this module re-exports them
under the names analysis code uses and adds what only analysis needs: reading the manifest,
turning ``ListAssignmentsForHIT`` results into answers, and result CSVs of other studies
through a user column mapping (:func:`read_external_csv`). Every loader returns the columns of
``answers/answers.parquet`` (docs/contracts.md)::

    hit_key, hit_id, assignment_id, worker_id, question, answer, submit_time, work_seconds,
    status, accept_time, source
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sparse_probe.answers import (
    ANSWER_COLUMNS,
    IGNORED_FIELDS,
    SOURCE_EXTERNAL_CSV,
    SOURCE_MTURK_API,
    AnswersFormatError,
    answers_frame,
    assignment_rows,
    parse_question_form_answers,
    read_answers,
    read_batch_csv,
    read_results_csv,
    results_to_long,
)
from sparse_probe.rundir import RunDirError, read_manifest

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

#: form fields that are not answers to a question (MTurk/our template's hidden fields)
HIDDEN_FIELDS = IGNORED_FIELDS
#: Answers or a manifest could not be read; the message names the file and the field.
#: (The same class as :class:`sparse_probe.answers.AnswersFormatError`.)
IngestError = AnswersFormatError


def load_answers(path: str | Path) -> pd.DataFrame:
    """Read ``answers.parquet`` (or a CSV with the same columns, or MTurk's batch results).

    Parameters
    ----------
    path : str or Path
        ``answers/answers.parquet`` of a run, a ``.csv`` in the same long format, or MTurk's
        batch-results CSV (recognised by its ``WorkerId`` column; see :func:`read_batch_csv`).

    Returns
    -------
    DataFrame
        Columns :data:`ANSWER_COLUMNS`; extra columns are dropped.

    Raises
    ------
    IngestError
        The file is missing or unreadable, or lacks a required column.
    """
    return read_answers(path, missing_ok=False)


def load_manifest(path: str | Path) -> pd.DataFrame:
    """Read ``tasks/manifest.jsonl`` into a DataFrame, one row per HIT.

    Returns
    -------
    DataFrame
        The contract's fields as columns (``class`` is an int column, dict fields stay dicts).
    """
    try:
        rows = read_manifest(path)
    except RunDirError as exc:
        raise IngestError(str(exc)) from None
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
    return df


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
        The long table (``source = "mturk-api"``); ``work_seconds`` = SubmitTime - AcceptTime.
    """
    rows: list[dict[str, Any]] = []
    for a in assignments:
        hit_id = a.get("HITId")
        key = (hit_keys or {}).get(hit_id) or parse_question_form_answers(
            a.get("Answer") or "<QuestionFormAnswers/>").get("hit_key")
        if not key:
            raise IngestError(f"assignment {a.get('AssignmentId')}: no hit_key for HIT {hit_id}")
        rows.extend(assignment_rows(a, hit_key=key, source=SOURCE_MTURK_API))
    return answers_frame(rows)


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
        Long answer table (``source = "external-csv"``).
    items : DataFrame
        A manifest-like table, one row per item: ``hit_key, kind, layer, class, class_name,
        feature, weight, rank, is_gold, gold, attention, assets, evidence, truth``.
    """
    path = Path(path)
    df = read_results_csv(path)
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
    answers = results_to_long(df, keys, mapping.questions, SOURCE_EXTERNAL_CSV,
                              value_maps=mapping.value_maps, where=str(path))
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
