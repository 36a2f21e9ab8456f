"""Worker quality: the one definition used to pay workers (``tasks review``) and to exclude
them from the report (``analysis``).

Per assignment (:func:`assignment_checks`):

- **gold** (HITs with ``is_gold`` and a ``gold`` object in the manifest): the assignment is
  *correct* when every field the gold answer covers is answered as expected. Covered fields
  are the schema's ``gold_fields`` (built-in: ``shared``, ``pattern``) that the gold object
  gives a non-empty value for; the ``pattern``-role field only counts when the gold's
  ``presence`` answer means "there is a pattern" (``shared = yes``): a gold that says "no
  shared pattern" does not grade the pattern. Answers are compared stripped and
  case-insensitively. A missing or empty answer is wrong, and so is ``unsure`` (unless the gold
  itself says ``unsure``). A gold with no covered field is not graded.
- **attention**: the manifest's ``attention`` ``{field, expected}``; passed when that field's
  answer equals ``expected`` (stripped, case-insensitive); a missing answer fails.
- **work time**: ``work_seconds``; the robust z-score of log work time over all assignments
  (median and 1.4826 MAD), and ``fast``: faster than ``min_seconds``, than
  ``min_time_fraction`` of the median, or (optionally) below ``min_robust_z``.

Per worker (:func:`worker_quality`): ``gold_accuracy`` = correct gold assignments / graded
gold assignments (NaN without any), ``attention_rate`` = passed / checked, ``median_seconds``,
``fast_share``. :func:`judge_workers` applies :class:`QualityRules`; a rule fails when

- ``n_gold >= max(min_gold_answers, 1)`` and ``gold_accuracy < min_gold_accuracy``
  (exactly at the threshold passes),
- ``require_attention`` and ``n_attention > 0`` and ``attention_rate < min_attention_rate``
  and the worker failed more than ``attention_tolerance`` checks (default 1: a single failed
  attention check never excludes by itself, it only flags the worker for review;
  :func:`attention_fails`),
- ``fast_share > max_fast_share``.

A worker whose attention rate is below ``min_attention_rate`` but whose failures are within the
tolerance is kept and flagged (``review`` True, the reason says why).

An assignment without a worker id (an empty or missing ``worker_id``: a hand-made CSV, a
platform that does not say) cannot be tied to anyone's record. :func:`name_anonymous` names it
as a worker of its own (:data:`ANONYMOUS_PREFIX` + its assignment id), so it is judged by its
own gold answers and attention checks, never pooled with other anonymous assignments (one
failed gold answer would then condemn them all, and an aggregator would read them as one
voter) nor waved through (a group-by on worker id drops missing ids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparse_probe.questions import PATTERN, PRESENCE, QuestionSchema, default_schema

__all__ = [
    "ANONYMOUS_PREFIX",
    "ASSIGNMENT_COLUMNS",
    "WORKER_COLUMNS",
    "QualityRules",
    "assignment_checks",
    "attention_fails",
    "gold_fails",
    "judge_workers",
    "name_anonymous",
    "worker_quality",
]

#: How an assignment without a worker id is named (:func:`name_anonymous`). No valid worker id
#: can start so: MTurk's are letters and digits, the task server's ``[A-Za-z0-9_-]``.
ANONYMOUS_PREFIX = "(no worker id) assignment "

ASSIGNMENT_COLUMNS = ["assignment_id", "worker_id", "hit_key", "work_seconds", "gold_correct",
                      "attention_pass", "robust_z", "fast"]
WORKER_COLUMNS = ["worker_id", "n_assignments", "n_gold", "n_gold_correct", "gold_accuracy",
                  "n_attention", "n_attention_failed", "attention_rate", "median_seconds", "fast_share",
                  "min_robust_z"]


@dataclass
class QualityRules:
    """Thresholds of the worker-quality rules (see the module docstring).

    Attributes
    ----------
    min_gold_accuracy : float
        A worker with ``gold_accuracy`` below this fails (equal passes).
    min_gold_answers : int
        Graded gold assignments a worker needs before ``min_gold_accuracy`` applies.
    require_attention : bool
        Apply the attention rule.
    min_attention_rate : float
        Required share of passed attention checks (1.0 = every check).
    attention_tolerance : int
        Failed attention checks tolerated before the attention rule excludes a worker; a
        worker below ``min_attention_rate`` within the tolerance is only flagged for review
        (0: any failure below the rate excludes, the old behaviour).
    min_seconds : float
        An assignment faster than this many seconds is "fast".
    min_time_fraction : float
        An assignment faster than this fraction of the median work time is "fast".
    min_robust_z : float, optional
        Also "fast" when the robust z-score of its log work time is below this (e.g. -3).
    max_fast_share : float
        A worker with more than this share of fast assignments fails.
    """

    min_gold_accuracy: float = 0.6
    min_gold_answers: int = 1
    require_attention: bool = True
    min_attention_rate: float = 1.0
    attention_tolerance: int = 1
    min_seconds: float = 0.0
    min_time_fraction: float = 0.2
    min_robust_z: float | None = None
    max_fast_share: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for report.json)."""
        return asdict(self)


def name_anonymous(answers: pd.DataFrame) -> pd.DataFrame:
    """Give every assignment without a worker id a worker id of its own.

    Parameters
    ----------
    answers : DataFrame
        Long answer table with ``assignment_id`` and ``worker_id`` (one row per question).

    Returns
    -------
    DataFrame
        ``answers`` with each missing or blank ``worker_id`` replaced by
        :data:`ANONYMOUS_PREFIX` + the row's ``assignment_id`` (the input itself where none is
        missing).
    """
    if answers.empty:
        return answers
    ids = answers["worker_id"]
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    if not missing.any():
        return answers
    return answers.assign(worker_id=ids.where(
        ~missing, ANONYMOUS_PREFIX + answers["assignment_id"].astype(str)))


def _manifest_frame(manifest: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    man = manifest if isinstance(manifest, pd.DataFrame) else pd.DataFrame(list(manifest))
    man = man.reindex(columns=sorted({"hit_key", "is_gold", "gold", "attention", *man.columns}))
    man = man.drop_duplicates("hit_key")
    man["is_gold"] = man["is_gold"].astype(object).where(man["is_gold"].notna(), False)
    return man


def _norm(s: pd.Series) -> pd.Series:
    """Strings stripped and lower-cased; missing and empty become NA."""
    out = s.astype("string").str.strip().str.lower()
    return out.mask(out == "")


def _gold_long(man: pd.DataFrame, schema: QuestionSchema) -> pd.DataFrame:
    """``hit_key, question, expected``: the graded fields of every gold HIT."""
    is_dict = man["gold"].map(lambda g: isinstance(g, Mapping))
    gold = man.loc[man["is_gold"].astype(bool) & is_dict, ["hit_key", "gold"]]
    if gold.empty:
        return pd.DataFrame(columns=["hit_key", "question", "expected"])
    wide = pd.DataFrame(gold["gold"].tolist(), index=gold["hit_key"].to_numpy())
    fields = [f for f in (schema.gold_fields or tuple(wide.columns)) if f in wide.columns]
    wide = wide[fields]
    presence, pattern = schema.field_for(PRESENCE), schema.field_for(PATTERN)
    if pattern in wide.columns:
        if presence in wide.columns:
            means = wide[presence].map(lambda v: schema.meaning(presence, v))
            wide.loc[means != PATTERN, pattern] = None
        else:
            wide[pattern] = None
    long = wide.rename_axis("hit_key").reset_index().melt(
        id_vars="hit_key", var_name="question", value_name="expected")
    long["expected"] = _norm(long["expected"].astype(object).where(long["expected"].notna()))
    return long[long["expected"].notna()].reset_index(drop=True)


def assignment_checks(
    answers: pd.DataFrame,
    manifest: pd.DataFrame | Sequence[Mapping[str, Any]],
    rules: QualityRules | None = None,
    schema: QuestionSchema | None = None,
) -> pd.DataFrame:
    """Gold, attention and work-time checks of every assignment.

    Parameters
    ----------
    answers : DataFrame
        The long answers table (``assignment_id, worker_id, hit_key, question, answer,
        work_seconds``).
    manifest : DataFrame or list of dict
        ``hit_key, is_gold, gold, attention`` per HIT.
    rules : QualityRules, optional
        For the "fast" thresholds.
    schema : QuestionSchema, optional
        Which fields a gold answer covers (default: the built-in schema).

    Returns
    -------
    DataFrame
        One row per assignment (first-seen order), :data:`ASSIGNMENT_COLUMNS`:
        ``gold_correct`` and ``attention_pass`` are nullable booleans (NA: not a gold HIT / no
        attention check), ``robust_z`` float, ``fast`` bool.
    """
    rules = rules or QualityRules()
    schema = schema or default_schema()
    if answers.empty:
        return pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    man = _manifest_frame(manifest)
    meta = answers.groupby("assignment_id", sort=False).agg(
        worker_id=("worker_id", "first"), hit_key=("hit_key", "first"),
        work_seconds=("work_seconds", "first")).reset_index()
    given = answers[["assignment_id", "question", "answer"]].drop_duplicates(
        ["assignment_id", "question"], keep="first")
    given = given.assign(answer=_norm(given["answer"]))

    # gold: every covered field answered as expected
    expected = meta[["assignment_id", "hit_key"]].merge(_gold_long(man, schema), on="hit_key")
    graded = expected.merge(given, on=["assignment_id", "question"], how="left")
    ok = (graded["answer"] == graded["expected"]).fillna(False).astype(bool)
    gold_ok = ok.groupby(graded["assignment_id"]).all()
    meta["gold_correct"] = pd.array(meta["assignment_id"].map(gold_ok), dtype="boolean")

    # attention: the manifest's {field, expected}
    att = man[["hit_key", "attention"]].copy()
    is_att = att["attention"].map(lambda a: isinstance(a, Mapping) and bool(a.get("field")))
    att = att[is_att].astype({"attention": object})  # a manifest without any: no float NaNs
    att = pd.DataFrame({"hit_key": att["hit_key"],
                        "question": att["attention"].map(lambda a: a.get("field")),
                        "expected": _norm(att["attention"].map(lambda a: a.get("expected"))
                                          .astype(object))})
    checked = meta[["assignment_id", "hit_key"]].merge(att, on="hit_key").merge(
        given, on=["assignment_id", "question"], how="left")
    passed = (checked["answer"] == checked["expected"]).fillna(False).astype(bool)
    att_ok = pd.Series(passed.to_numpy(), index=checked["assignment_id"].to_numpy())
    meta["attention_pass"] = pd.array(meta["assignment_id"].map(att_ok), dtype="boolean")

    # work time
    t = pd.to_numeric(meta["work_seconds"], errors="coerce").astype(float)
    valid = t[t > 0]
    if len(valid):
        logt = np.log(valid)
        med = float(np.median(logt))
        mad = float(np.median(np.abs(logt - med))) * 1.4826
        z = (np.log(t.where(t > 0)) - med) / (mad if mad > 0 else 1.0)
        fast = (t < rules.min_time_fraction * float(np.median(valid))) | (t < rules.min_seconds)
        if rules.min_robust_z is not None:
            fast |= z < rules.min_robust_z
    else:
        z = pd.Series(np.nan, index=t.index)
        fast = pd.Series(False, index=t.index)
    meta["work_seconds"] = t
    meta["robust_z"] = z.astype(float)
    meta["fast"] = fast.fillna(False).astype(bool)
    return meta[ASSIGNMENT_COLUMNS]


def worker_quality(
    answers: pd.DataFrame,
    manifest: pd.DataFrame | Sequence[Mapping[str, Any]],
    rules: QualityRules | None = None,
    schema: QuestionSchema | None = None,
    checks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The quality of every worker (one row each, sorted by worker id).

    Parameters
    ----------
    answers, manifest, rules, schema
        As :func:`assignment_checks`.
    checks : DataFrame, optional
        :func:`assignment_checks` output, if already computed.

    Returns
    -------
    DataFrame
        :data:`WORKER_COLUMNS`: ``n_assignments``, ``n_gold`` (graded gold assignments),
        ``n_gold_correct``, ``gold_accuracy`` (NaN without gold), ``n_attention``,
        ``attention_rate`` (NaN without checks), ``median_seconds``, ``fast_share``,
        ``min_robust_z``.
    """
    if checks is None:
        checks = assignment_checks(answers, manifest, rules, schema)
    if checks.empty:
        return pd.DataFrame(columns=WORKER_COLUMNS)
    c = checks.assign(
        gold_n=checks["gold_correct"].notna().astype(int),
        gold_k=checks["gold_correct"].fillna(False).astype(int),
        att_n=checks["attention_pass"].notna().astype(int),
        att_k=checks["attention_pass"].fillna(False).astype(int),
        fast_f=checks["fast"].astype(float))
    g = c.groupby("worker_id", sort=True)
    w = pd.DataFrame({
        "n_assignments": g.size(),
        "n_gold": g["gold_n"].sum(),
        "n_gold_correct": g["gold_k"].sum(),
        "n_attention": g["att_n"].sum(),
        "att_k": g["att_k"].sum(),
        "median_seconds": g["work_seconds"].median(),
        "fast_share": g["fast_f"].mean(),
        "min_robust_z": g["robust_z"].min(),
    })
    w["gold_accuracy"] = (w["n_gold_correct"] / w["n_gold"].where(w["n_gold"] > 0)).astype(float)
    w["attention_rate"] = (w["att_k"] / w["n_attention"].where(w["n_attention"] > 0)).astype(
        float)
    w["n_attention_failed"] = (w["n_attention"] - w["att_k"]).astype(int)
    return w.rename_axis("worker_id").reset_index()[WORKER_COLUMNS]


def gold_fails(workers: pd.DataFrame, min_gold_accuracy: float | None,
               min_gold_answers: int = 1) -> pd.Series:
    """Whether each worker fails the gold rule (bool Series aligned with ``workers``)."""
    if min_gold_accuracy is None:
        return pd.Series(False, index=workers.index)
    judged = workers["n_gold"] >= max(int(min_gold_answers), 1)
    return (judged & (workers["gold_accuracy"] < min_gold_accuracy)).fillna(False).astype(bool)


def attention_fails(workers: pd.DataFrame, min_attention_rate: float,
                    tolerance: int = 1) -> tuple[pd.Series, pd.Series]:
    """Whether each worker fails the attention rule, and whether they are only flagged.

    Parameters
    ----------
    workers : DataFrame
        :func:`worker_quality` output (``n_attention``, ``n_attention_failed``,
        ``attention_rate``).
    min_attention_rate : float
        Required share of passed checks (equal passes).
    tolerance : int
        Failed checks tolerated: below the rate with at most this many failures is *flagged*
        (review), with more it *fails*.

    Returns
    -------
    failed, flagged : Series of bool aligned with ``workers``
    """
    below = ((workers["n_attention"] > 0) & (workers["attention_rate"] < min_attention_rate))
    below = below.fillna(False).astype(bool)
    n_failed = workers["n_attention_failed"] if "n_attention_failed" in workers else (
        workers["n_attention"] - (workers["attention_rate"] * workers["n_attention"]).round())
    over = (n_failed.fillna(0) > max(int(tolerance), 0)).astype(bool)
    return below & over, below & ~over


def judge_workers(workers: pd.DataFrame, rules: QualityRules | None = None) -> pd.DataFrame:
    """Apply :class:`QualityRules` to :func:`worker_quality`'s table.

    Returns
    -------
    DataFrame
        ``workers`` plus ``gold_failed``, ``attention_failed``, ``fast_failed`` (bool),
        ``reason`` (the failed rules, ``"; "``-joined, ``""`` when none), ``excluded`` and
        ``review`` (kept but flagged: attention failures within ``attention_tolerance``; the
        reason says so).
    """
    rules = rules or QualityRules()
    out = workers.copy()
    if out.empty:  # no worker: the columns, none of the text arithmetic
        for c in ("gold_failed", "attention_failed", "fast_failed", "excluded", "review"):
            out[c] = pd.Series(dtype=bool)
        out["reason"] = pd.Series(dtype=str)
        return out
    out["gold_failed"] = gold_fails(out, rules.min_gold_accuracy, rules.min_gold_answers)
    failed, flagged = attention_fails(out, rules.min_attention_rate, rules.attention_tolerance)
    out["attention_failed"] = failed & bool(rules.require_attention)
    flagged = flagged & bool(rules.require_attention)
    out["fast_failed"] = (out["fast_share"] > rules.max_fast_share).fillna(False).astype(bool)
    texts = pd.DataFrame({
        "gold": ("gold accuracy " + out["gold_accuracy"].map("{:.2f}".format)
                 + f" < {rules.min_gold_accuracy:.2f}").where(out["gold_failed"], ""),
        "attention": ("attention checks passed " + out["attention_rate"].map("{:.2f}".format)
                      + f" < {rules.min_attention_rate:.2f}").where(out["attention_failed"], ""),
        "fast": (out["fast_share"].map("{:.0%}".format) + " of assignments too fast")
        .where(out["fast_failed"], ""),
        "review": ("review: failed " + out["n_attention_failed"].astype(str) + " of "
                   + out["n_attention"].astype(str) + " attention checks (within tolerance "
                   + str(rules.attention_tolerance) + ")").where(flagged, "")
        if "n_attention_failed" in out else pd.Series("", index=out.index),
    }, index=out.index)
    out["reason"] = texts.apply(lambda col: col.where(col == "", col + "; ")).sum(axis=1) \
        .str.rstrip("; ")
    out["excluded"] = out["gold_failed"] | out["attention_failed"] | out["fast_failed"]
    out["review"] = flagged & ~out["excluded"]
    return out
