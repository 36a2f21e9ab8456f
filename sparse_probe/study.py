"""A study file: how another study's results CSV maps onto items, questions and a decision rule.

``sparse-probe report --answers results.csv --study study.toml --out DIR`` (and ``sparse-probe
tasks ingest-csv results.csv --study study.toml --out answers/``) reads answers
collected elsewhere (a published study's MTurk batch results, a requester-website batch with
your own questions) through a small TOML file::

    title = "Spurious features of 1,000 classes (published study)"

    [columns]                     # CSV column names; only worker, class and feature are required
    worker = "WorkerId"
    class = "Input.class_index"   # any strings: gaps, 1-based ids and names are fine
    feature = "Input.feature_index"
    class_name = "Input.class_name"
    assignment = "AssignmentId"   # optional; default: one assignment per (item, worker)
    weight = "Input.weight"       # optional (feature weight in the class)
    rank = "Input.rank"           # optional
    confidence = "Answer.confidence"
    free_text = "Answer.reasons"
    visualization = "Input.image_url"

    [[questions]]                 # every choice question, with the meaning of each value
    id = "main"
    column = "Answer.main"
    values = [
      {value = "main_object", meaning = "core"},
      {value = "separate_object", meaning = "spurious", spurious_kind = "mark"},
      {value = "background", meaning = "spurious", spurious_kind = "background"},
    ]

    [rule]                        # how an item's answers become its verdict
    method = "k_of_n"             # k_of_n | majority | MajorityVote | Wawa | DawidSkene | GLAD | MACE
    question = "main"             # default: the first question
    k = 3                         # k_of_n: spurious when >= k answers mean spurious
    n = 5                         # k_of_n: answers expected per item (fewer: undecided if open)
    min_posterior = 0.6           # crowd-kit methods: a lower posterior leaves it undecided

Meanings are those of :mod:`sparse_probe.questions` (``core``, ``spurious`` with a
``spurious_kind`` among background / mark / identity / other, ``no_pattern``, ``unsure``).
Several values may mean ``spurious`` and stay distinct (background vs separate object). Values
meaning ``unsure`` and empty cells are abstentions. Every other value in the CSV must be
declared: undeclared values stop the run (:class:`StudyError`, one line listing them with their
counts) unless ``drop_unknown`` is set, in which case they are dropped and counted.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparse_probe.answers import SOURCE_EXTERNAL_CSV, answers_frame
from sparse_probe.questions import (
    MEANINGS,
    SPURIOUS,
    SPURIOUS_KINDS,
    UNSURE,
    Question,
    QuestionSchema,
    SchemaError,
    Value,
)

__all__ = [
    "COLUMN_FIELDS",
    "RULES",
    "Rule",
    "Study",
    "StudyAnswers",
    "StudyError",
    "load_study",
    "read_study_answers",
    "study_answers_table",
    "study_from_dict",
]

#: Decision rules: ours (vectorized) and crowd-kit's aggregators.
RULES = ("k_of_n", "majority", "MajorityVote", "Wawa", "DawidSkene", "GLAD", "MACE")
#: Column roles of the ``[columns]`` table (``worker``, ``class``, ``feature`` required).
COLUMN_FIELDS = ("worker", "class", "feature", "item", "assignment", "class_name", "weight",
                 "rank", "confidence", "free_text", "visualization")
_REQUIRED_COLUMNS = ("worker", "class", "feature")
_RULE_FIELDS = {"method", "question", "k", "n", "min_posterior", "params", "seed"}


class StudyError(ValueError):
    """A study file or the CSV it describes is not usable; one line naming the file and field."""


@dataclass(frozen=True)
class Rule:
    """How an item's answers to one question become a verdict.

    Attributes
    ----------
    method : str
        One of :data:`RULES`.
    question : str
        The question that decides.
    k, n : int, optional
        ``k_of_n``: spurious when at least ``k`` answers mean spurious; ``n`` answers are
        expected per item (an item with fewer, whose outcome the missing answers could still
        change, is ``undecided``).
    min_posterior : float
        crowd-kit methods: a label with a lower posterior leaves the item ``undecided``.
    params : dict
        Extra crowd-kit hyperparameters.
    seed : int
    """

    method: str
    question: str
    k: int | None = None
    n: int | None = None
    min_posterior: float = 0.6
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The rule and its parameters as written in report.json."""
        d: dict[str, Any] = {"method": self.method, "question": self.question}
        if self.method == "k_of_n":
            d.update(k=self.k, n=self.n)
        elif self.method != "majority":
            d.update(min_posterior=self.min_posterior, params=dict(self.params), seed=self.seed)
        return d


@dataclass(frozen=True)
class Study:
    """A parsed study file.

    Attributes
    ----------
    title : str
    columns : dict
        Column role (:data:`COLUMN_FIELDS`) -> CSV column name, except ``free_text``.
    free_text_columns : tuple of str
        The free-text columns (several are joined with ``" | "`` per answer).
    question_columns : dict
        Question id -> CSV column.
    schema : QuestionSchema
        The questions with their values' meanings.
    rule : Rule
    path : str
        Where the study came from (named in errors).
    """

    title: str
    columns: Mapping[str, str]
    free_text_columns: tuple[str, ...]
    question_columns: Mapping[str, str]
    schema: QuestionSchema
    rule: Rule
    path: str = "study"

    def with_rule(self, **changes: Any) -> Study:
        """A copy whose rule has ``changes`` (``None`` values are ignored), re-checked."""
        kw = {**self.rule.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        rule = Rule(**kw)
        _check_rule(rule, self.schema, self.path)
        return Study(self.title, self.columns, self.free_text_columns, self.question_columns,
                     self.schema, rule, self.path)


def _str(d: Mapping[str, Any], key: str, at: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise StudyError(f"{at}: field {key!r} must be a non-empty string")
    return v


def _check_rule(rule: Rule, schema: QuestionSchema, where: str) -> None:
    at = f"{where}: [rule]"
    if rule.method not in RULES:
        raise StudyError(f"{at}: method {rule.method!r} is not one of {list(RULES)}")
    if rule.question not in schema:
        raise StudyError(f"{at}: question {rule.question!r} is not declared "
                         f"(have {list(schema.ids)})")
    if rule.method == "k_of_n":
        if not isinstance(rule.k, int) or isinstance(rule.k, bool) or rule.k < 1:
            raise StudyError(f"{at}: k_of_n needs a positive integer 'k'")
        if rule.n is not None and (not isinstance(rule.n, int) or rule.n < rule.k):
            raise StudyError(f"{at}: 'n' must be an integer >= k ({rule.k})")
    if not 0.0 <= float(rule.min_posterior) <= 1.0:
        raise StudyError(f"{at}: min_posterior must be in [0, 1]")
    meanings = {v.meaning for v in schema[rule.question].values}
    if not meanings & {SPURIOUS}:
        raise StudyError(f"{at}: question {rule.question!r} has no value meaning 'spurious'")


def study_from_dict(data: Mapping[str, Any], where: str = "study") -> Study:
    """Build a :class:`Study` from plain data (the TOML file's content).

    Raises
    ------
    StudyError
        A missing or unknown field, an unknown meaning / spurious kind / rule, a question
        without values.
    """
    unknown = set(data) - {"title", "columns", "questions", "rule"}
    if unknown:
        raise StudyError(f"{where}: unknown field(s) {sorted(unknown)}")
    cols = data.get("columns")
    if not isinstance(cols, Mapping):
        raise StudyError(f"{where}: missing table [columns]")
    bad = set(cols) - set(COLUMN_FIELDS)
    if bad:
        raise StudyError(f"{where}: [columns]: unknown field(s) {sorted(bad)}; "
                         f"allowed {list(COLUMN_FIELDS)}")
    for c in _REQUIRED_COLUMNS:
        _str(cols, c, f"{where}: [columns]")
    free = cols.get("free_text", ())
    free_cols = (free,) if isinstance(free, str) else tuple(free)
    if not all(isinstance(c, str) and c for c in free_cols):
        raise StudyError(f"{where}: [columns]: free_text must be a column name or a list")
    columns = {k: _str(cols, k, f"{where}: [columns]") for k in cols if k != "free_text"}
    raw_qs = data.get("questions")
    if not isinstance(raw_qs, list) or not raw_qs:
        raise StudyError(f"{where}: needs at least one [[questions]] entry")
    questions, qcols = [], {}
    for i, rq in enumerate(raw_qs):
        at = f"{where}: questions[{i}]"
        if not isinstance(rq, Mapping):
            raise StudyError(f"{at}: expected a table")
        extra = set(rq) - {"id", "column", "values", "wording"}
        if extra:
            raise StudyError(f"{at}: unknown field(s) {sorted(extra)}")
        qid = _str(rq, "id", at)
        at = f"{where}: question {qid!r}"
        raw_vals = rq.get("values")
        if not isinstance(raw_vals, list) or not raw_vals:
            raise StudyError(f"{at}: 'values' must be a non-empty list")
        values = []
        for j, rv in enumerate(raw_vals):
            vat = f"{at}: values[{j}]"
            if not isinstance(rv, Mapping):
                raise StudyError(f"{vat}: expected {{value = ..., meaning = ...}}")
            extra = set(rv) - {"value", "meaning", "spurious_kind", "label"}
            if extra:
                raise StudyError(f"{vat}: unknown field(s) {sorted(extra)}")
            val = rv.get("value")
            if isinstance(val, int | float) and not isinstance(val, bool):
                val = str(val)
            if not isinstance(val, str) or not val.strip():
                raise StudyError(f"{vat}: 'value' must be a non-empty string")
            meaning = rv.get("meaning")
            if meaning is not None and meaning not in MEANINGS:
                raise StudyError(f"{vat}: meaning {meaning!r} is not one of {list(MEANINGS)}")
            kind = rv.get("spurious_kind")
            if kind is not None and (meaning != SPURIOUS or kind not in SPURIOUS_KINDS):
                raise StudyError(f"{vat}: spurious_kind needs meaning 'spurious' and one of "
                                 f"{list(SPURIOUS_KINDS)}")
            if meaning == SPURIOUS and kind is None:
                kind = "other"
            values.append(Value(val.strip(), str(rv.get("label", val)), meaning, kind))
        questions.append(Question(id=qid, wording=str(rq.get("wording", qid)), kind="choice",
                                  values=tuple(values)))
        qcols[qid] = _str(rq, "column", at)
    try:
        schema = QuestionSchema(tuple(questions))
    except SchemaError as exc:
        raise StudyError(str(exc).replace("schema:", f"{where}:", 1)) from None
    raw_rule = data.get("rule", {})
    if not isinstance(raw_rule, Mapping):
        raise StudyError(f"{where}: [rule] must be a table")
    extra = set(raw_rule) - _RULE_FIELDS
    if extra:
        raise StudyError(f"{where}: [rule]: unknown field(s) {sorted(extra)}")
    params = raw_rule.get("params", {})
    if not isinstance(params, Mapping):
        raise StudyError(f"{where}: [rule]: 'params' must be a table")
    rule = Rule(method=str(raw_rule.get("method", "k_of_n" if "k" in raw_rule else "majority")),
                question=str(raw_rule.get("question", questions[0].id)),
                k=raw_rule.get("k"), n=raw_rule.get("n"),
                min_posterior=float(raw_rule.get("min_posterior", 0.6)),
                params=dict(params), seed=int(raw_rule.get("seed", 0)))
    _check_rule(rule, schema, where)
    return Study(title=str(data.get("title", Path(where).stem)), columns=columns,
                 free_text_columns=free_cols, question_columns=qcols, schema=schema, rule=rule,
                 path=where)


def load_study(path: str | Path) -> Study:
    """Read a study file (TOML, the format of the module docstring).

    Raises
    ------
    StudyError
        Unreadable file, invalid TOML, or any problem :func:`study_from_dict` reports.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{p}: cannot read study file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{p}: not valid TOML ({exc})") from None
    return study_from_dict(data, str(p))


@dataclass
class StudyAnswers:
    """A study's answers, one row per assignment, and what was set aside.

    Attributes
    ----------
    rows : DataFrame, shape (n_assignments, ...)
        ``item, class, class_name, feature, worker, assignment`` (strings), optional
        ``weight, rank`` (float), ``confidence`` (float), ``free_text`` (str),
        ``visualization`` (str), and per question ``q`` the integer column ``q`` = index of
        the declared value (-1: abstention or empty).
    items : DataFrame, shape (n_items, ...)
        One row per item (first occurrence order): ``item, class, class_name, feature`` and
        the optional item columns.
    dropped : dict
        Question -> {value: count} of undeclared values dropped (``drop_unknown``; the
        assignment's other answers are kept).
    abstentions : dict
        Question -> number of empty answers or answers meaning ``unsure``.
    duplicates : int
        Repeated (item, worker) rows dropped (the first is kept).
    """

    rows: pd.DataFrame
    items: pd.DataFrame
    dropped: dict[str, dict[str, int]]
    abstentions: dict[str, int]
    duplicates: int


def _codes(raw: pd.Series, q: Question) -> tuple[np.ndarray, pd.Series]:
    """Value index per answer (-1 abstention/empty, -2 undeclared) and the cleaned strings."""
    clean = raw.astype("string").str.strip()
    low = clean.str.lower()
    lookup: dict[str, int] = {}
    for i, v in enumerate(q.values):
        lookup.setdefault(v.value.lower(), i)
    code = low.map(lookup).astype("Float64")
    unsure = {i for i, v in enumerate(q.values) if v.meaning == UNSURE}
    out = code.fillna(-2).astype(int).to_numpy().copy()
    out[np.isin(out, list(unsure))] = -1
    out[(clean.isna() | clean.eq("")).to_numpy()] = -1
    return out, clean


def read_study_answers(path: str | Path, study: Study, *, drop_unknown: bool = False
                       ) -> StudyAnswers:
    """Read a results CSV through a study file (vectorized; no per-row Python).

    Parameters
    ----------
    path : path-like
        The results CSV (MTurk full or reduced header, or any CSV with the mapped columns).
    study : Study
    drop_unknown : bool
        Drop answers with undeclared values (counted in :attr:`StudyAnswers.dropped`) instead
        of stopping.

    Raises
    ------
    StudyError
        A mapped column missing from the header; undeclared answer values (listing each with
        its count); an unreadable file.
    """
    p = Path(path)
    cols = study.columns
    usecols = sorted({*cols.values(), *study.free_text_columns, *study.question_columns.values()})
    try:
        header = pd.read_csv(p, nrows=0, dtype=str).columns
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyError(f"{p}: not a readable CSV ({exc})") from None
    missing = [c for c in usecols if c not in header]
    if missing:
        raise StudyError(f"{p}: column(s) {missing} named in {study.path} are not in the CSV "
                         "header")
    try:
        df = pd.read_csv(p, usecols=usecols, dtype=str, keep_default_na=False,
                         na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise StudyError(f"{p}: not a readable CSV ({exc})") from None

    def text(name: str) -> pd.Series:
        return df[cols[name]].astype("string").str.strip()

    out = pd.DataFrame({"class": text("class"), "feature": text("feature"),
                        "worker": text("worker")})
    for name in ("class", "feature", "worker"):
        empty = out[name].isna() | out[name].eq("")
        if empty.any():
            row = int(empty.to_numpy().argmax()) + 2
            raise StudyError(f"{p}: row {row}: empty {name} (column {cols[name]!r})")
    out["item"] = text("item") if "item" in cols else (
        "c" + out["class"] + "-f" + out["feature"])
    out["class_name"] = text("class_name").fillna(out["class"]) if "class_name" in cols \
        else out["class"]
    out["assignment"] = text("assignment") if "assignment" in cols else (
        out["item"] + ":" + out["worker"])
    for name in ("weight", "rank", "confidence"):
        if name in cols:
            out[name] = pd.to_numeric(df[cols[name]], errors="coerce")
    if "visualization" in cols:
        out["visualization"] = text("visualization")
    if study.free_text_columns:
        parts = [df[c].astype("string").str.strip().fillna("") for c in study.free_text_columns]
        joined = parts[0]
        for extra in parts[1:]:
            joined = joined.str.cat(extra, sep=" | ").str.strip(" |")
        out["free_text"] = joined
    dropped: dict[str, dict[str, int]] = {}
    abstentions: dict[str, int] = {}
    problems = []
    for qid, col in study.question_columns.items():
        codes, clean = _codes(df[col], study.schema[qid])
        bad = codes == -2
        if bad.any():
            counts = clean[bad].value_counts(sort=True)
            listed = {str(k): int(v) for k, v in counts.items()}
            if drop_unknown:
                dropped[qid] = listed
            else:
                shown = ", ".join(f"{k!r} ({v})" for k, v in list(listed.items())[:10])
                more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
                problems.append(f"question {qid!r} (column {col!r}): {shown}{more}")
        abstentions[qid] = int((codes == -1).sum())
        codes[bad] = -1
        out[qid] = codes
    if problems:
        raise StudyError(f"{p}: answer values not declared in {study.path}: "
                         + "; ".join(problems) + " (declare them or pass --drop-unknown)")
    dup = out.duplicated(["item", "worker"], keep="first")
    out = out[~dup].reset_index(drop=True)
    item_cols = ["item", "class", "class_name", "feature"] + [
        c for c in ("weight", "rank", "visualization") if c in out.columns]
    items = out.drop_duplicates("item")[item_cols].reset_index(drop=True)
    return StudyAnswers(out, items, dropped, abstentions, int(dup.sum()))


def study_answers_table(answers: StudyAnswers, study: Study) -> pd.DataFrame:
    """A study's answers as the long answers table (:data:`sparse_probe.answers.ANSWER_COLUMNS`).

    One row per (assignment, question): each declared question (its declared value, spelled
    as in the study file; abstentions and empty answers left out), ``confidence`` and
    ``description`` (the free text) where the study has them. ``hit_key`` is the item key,
    ``source`` is ``"external-csv"``.

    Returns
    -------
    DataFrame, shape (n_rows, len(ANSWER_COLUMNS))
    """
    rows = answers.rows
    base = pd.DataFrame({"hit_key": rows["item"].to_numpy(),
                         "assignment_id": rows["assignment"].to_numpy(),
                         "worker_id": rows["worker"].to_numpy(),
                         "_row": np.arange(len(rows))})
    parts = []
    for order, qid in enumerate(study.question_columns):
        names = np.array([v.value for v in study.schema[qid].values] + [None], dtype=object)
        codes = rows[qid].to_numpy()
        vals = names[np.where(codes >= 0, codes, len(names) - 1)]
        parts.append(base.assign(question=qid, answer=vals, _col=order))
    extra = [("confidence", "confidence"), ("free_text", "description")]
    for order, (col, qid) in enumerate(extra, start=len(parts)):
        if col in rows.columns:
            if col == "confidence":
                num = rows[col]
                whole = num.notna() & (num == num.round())
                vals = num.astype("string")
                vals[whole] = num[whole].round().astype("Int64").astype("string")
            else:
                vals = rows[col].astype("string").replace("", None)
            parts.append(base.assign(question=qid, answer=vals.to_numpy(dtype=object),
                                     _col=order))
    long = pd.concat(parts, ignore_index=True)
    long = long[pd.notna(long["answer"])].sort_values(["_row", "_col"], kind="stable")
    return answers_frame(long.assign(source=SOURCE_EXTERNAL_CSV), where=study.path)
