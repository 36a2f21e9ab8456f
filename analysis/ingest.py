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
import math
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
        The contract's fields as columns (``class`` is an int column, dict fields stay dicts);
        a field a line leaves out takes the contract's default (``kind`` image, ``layer``
        sparse, ``class_name`` the class index, ``weight`` NaN, ``rank`` 0, ``is_gold``
        False, the others None).
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
        elif df[key].isna().any() and not (isinstance(value, float) and math.isnan(value)):
            # a line leaves out what others have (a missing weight is NaN already)
            df[key] = df[key].astype(object).where(df[key].notna(), value)
    df["rank"] = df["rank"].astype("int64")
    df["class_name"] = [
        n if isinstance(n, str) else str(c)
        for n, c in zip(df["class_name"], df["class"], strict=True)
    ]
    df["is_gold"] = df["is_gold"].astype(bool)
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
        Class names in index order. A class cell is then one of these names or an index into
        them (anything else is an error); without it, a column of indices keeps them and a
        column of names is numbered in sorted order.
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


def _cells(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A mapped column's cells, stripped; an empty one is an error naming its row."""
    cells = df[column].map(lambda v: v.strip() if isinstance(v, str) else v)
    empty = cells.isna() | cells.eq("")
    if empty.any():
        row = int(empty.to_numpy().argmax()) + 2
        raise IngestError(f"{path}: row {row}: {column} is empty")
    return cells.astype(str)


def _class_indices(raw: pd.Series, classes: list[str] | None, path: Path,
                   column: str) -> tuple[pd.Series, pd.Series]:
    """Each row's class index and name from a class column of indices or names.

    With ``classes`` a cell is one of the names or an index into them; without, the cells are
    indices (named by themselves) or names, numbered in sorted order.
    """
    if classes is not None:
        lookup = {name: i for i, name in enumerate(classes)}
        lookup.update({str(i): i for i in range(len(classes)) if str(i) not in lookup})
        unknown = ~raw.isin(set(lookup))
        if unknown.any():
            row = int(unknown.to_numpy().argmax()) + 2
            raise IngestError(f"{path}: row {row}: {column} {raw[unknown].iloc[0]!r} is neither "
                              f"one of the mapping's {len(classes)} classes nor an index 0-"
                              f"{len(classes) - 1}")
        idx = raw.map(lookup).astype("int64")
        return idx, idx.map(lambda i: classes[i])
    if raw.str.fullmatch(r"\d+").all():
        idx = raw.astype("int64")
        return idx, idx.astype(str)
    codes, _ = pd.factorize(raw, sort=True)
    return pd.Series(codes, index=raw.index, dtype="int64"), raw


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

    Raises
    ------
    IngestError
        A mapped column missing from the header, an empty class, feature or item cell, or a
        class that is not among ``mapping.classes`` (the message names the file and row).
    """
    path = Path(path)
    df = read_results_csv(path)
    needed = [mapping.class_column, mapping.feature_column, *mapping.questions.values()]
    needed += [c for c in (mapping.class_name_column, mapping.item_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise IngestError(f"{path}: mapped column(s) {missing} not in the CSV header")
    raw_class = _cells(df, mapping.class_column, path)
    feat = _cells(df, mapping.feature_column, path)
    cls_int, names = _class_indices(raw_class, mapping.classes, path, mapping.class_column)
    if mapping.class_name_column:
        names = df[mapping.class_name_column]
    if mapping.item_column:
        keys = _cells(df, mapping.item_column, path)
    else:
        keys = "ext-c" + cls_int.astype(str) + "-f" + feat
    answers = results_to_long(df, keys, mapping.questions, SOURCE_EXTERNAL_CSV,
                              value_maps=mapping.value_maps, where=str(path))
    items = pd.DataFrame({"hit_key": keys, "class": cls_int, "class_name": names,
                          "feature": feat.astype("int64") if feat.str.fullmatch(r"-?\d+").all()
                          else feat})
    items = items.drop_duplicates("hit_key").reset_index(drop=True)
    items["kind"] = mapping.kind
    items["layer"] = "sparse"
    items["weight"] = float("nan")
    items["rank"] = 0
    items["is_gold"] = False
    for col in ("gold", "attention", "assets", "evidence", "truth"):
        items[col] = None
    return answers, items
