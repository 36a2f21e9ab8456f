"""Aggregate the crowd's answers per question with crowd-kit.

The long answer table is renamed to crowd-kit's ``task, worker, label`` (task = ``hit_key``) and
one crowd-kit aggregator is fitted per question.

Which questions, and what their answers mean, come from the question schema
(:mod:`sparse_probe.questions`; the built-in one unless a study brings its own).

Abstentions and missing answers
    Values meaning ``unsure`` (built-in: ``shared = unsure``), empty / missing answers and a few
    common spellings of "don't know" carry no label: they are dropped before aggregation and
    counted separately (``n_abstain``). A task whose answers are all abstentions gets no label.
Conditional question
    The ``pattern`` question is only asked meaningfully when the same assignment's presence
    answer means "there is a pattern" (``shared = yes``); pattern answers of other assignments
    are dropped.
Ties
    Majority vote ties (two labels with the same top count) are reported as ``tie = True`` and the
    label left empty; crowd-kit would break them by label order, which would hide them.
Methods
    ``MajorityVote``, ``Wawa``, ``DawidSkene`` (Dawid & Skene 1979, default), ``GLAD`` (Whitehill et
    al. 2009), ``MACE`` (Hovy et al. 2013). Wawa is crowd-kit's algorithm (majority vote weighted by
    each worker's agreement with the plain majority) assembled from crowd-kit's ``MajorityVote``
    and ``get_accuracy``, because crowd-kit 1.4's ``Wawa`` class fails scikit-learn >= 1.6's
    ``check_is_fitted``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from sparse_probe.questions import PATTERN, PRESENCE, UNSURE, QuestionSchema, default_schema

__all__ = [
    "ABSTAIN",
    "DEFAULT_PARAMS",
    "METHODS",
    "aggregate",
    "aggregate_question",
    "majority_vote",
    "to_crowdkit",
    "worker_skills",
]

logger = logging.getLogger(__name__)

METHODS = ("MajorityVote", "Wawa", "DawidSkene", "GLAD", "MACE")
#: crowd-kit hyperparameters used unless overridden (``params=``)
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "DawidSkene": {"n_iter": 100},
    "GLAD": {"n_iter": 100, "silent": True},
    "MACE": {"n_restarts": 2, "n_iter": 50},
}
#: answers that are abstentions in any schema (compared lower-cased, stripped)
_NO_ANSWER = frozenset({"", "not sure", "don't know", "dont know", "n/a", "na", "none", "nan",
                        "<na>"})
#: abstentions under the built-in schema (its values meaning ``unsure`` + the above)
ABSTAIN = _NO_ANSWER | default_schema().abstentions()


def _abstain(schema: QuestionSchema) -> frozenset[str]:
    return _NO_ANSWER | schema.abstentions()


def _clean(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.lower()


def to_crowdkit(answers: pd.DataFrame, question: str, schema: QuestionSchema | None = None
                ) -> tuple[pd.DataFrame, pd.Series]:
    """Rows of one question as crowd-kit input.

    Parameters
    ----------
    answers : DataFrame
        Long answer table.
    question : str
        Form field, e.g. ``"shared"``.
    schema : QuestionSchema, optional
        Abstentions and the pattern question's condition (default: built-in schema).

    Returns
    -------
    data : DataFrame
        Columns ``task, worker, label`` (one label per task and worker: the first submitted),
        abstentions removed.
    abstain : Series
        Number of abstentions per task.
    """
    schema = schema or default_schema()
    rows = answers[answers["question"] == question]
    presence = schema.field_for(PRESENCE)
    if question == schema.field_for(PATTERN) and presence is not None:
        shared = answers[answers["question"] == presence]
        says_yes = {v.lower() for v in schema.values_meaning(presence, PATTERN)}
        yes = set(shared.loc[_clean(shared["answer"]).isin(says_yes), "assignment_id"])
        if len(shared):
            rows = rows[rows["assignment_id"].isin(yes)]
    label = _clean(rows["answer"]).fillna("")
    df = pd.DataFrame({"task": rows["hit_key"].astype(str).values,
                       "worker": rows["worker_id"].astype(str).values,
                       "label": label.values})
    if "submit_time" in rows.columns:
        df["_t"] = rows["submit_time"].astype(str).values
        df = df.sort_values("_t", kind="stable").drop(columns="_t")
    df = df.drop_duplicates(["task", "worker"], keep="first")
    is_abstain = df["label"].isin(_abstain(schema))
    abstain = df[is_abstain].groupby("task").size()
    data = df[~is_abstain].reset_index(drop=True)
    data["label"] = data["label"].astype(object)
    return data, abstain


def majority_vote(data: pd.DataFrame) -> pd.DataFrame:
    """Majority vote per task with explicit ties.

    Parameters
    ----------
    data : DataFrame
        ``task, worker, label``.

    Returns
    -------
    DataFrame indexed by task
        ``label`` (None on a tie), ``share`` (top count / n), ``tie`` (bool), ``votes``
        (dict label -> count), ``n`` (labels).
    """
    cols = ["label", "share", "tie", "votes", "n"]
    if data.empty:
        return pd.DataFrame(columns=cols)
    t_codes, tasks = pd.factorize(data["task"], sort=True)
    l_codes, labels = pd.factorize(data["label"], sort=True)
    n_t, n_l = len(tasks), len(labels)
    counts = np.bincount(t_codes * n_l + l_codes, minlength=n_t * n_l).reshape(n_t, n_l)
    n = counts.sum(axis=1)
    top = counts.max(axis=1)
    tie = (counts == top[:, None]).sum(axis=1) > 1
    names = np.asarray(labels, dtype=object)
    label = np.where(tie, None, names[counts.argmax(axis=1)])
    rows, where = np.nonzero(counts)
    bounds = np.searchsorted(rows, np.arange(n_t + 1))
    keys, vals = names[where].tolist(), counts[rows, where].tolist()
    votes = [dict(zip(keys[a:b], vals[a:b], strict=True))
             for a, b in pairwise(bounds.tolist())]
    return pd.DataFrame({"label": label, "share": top / n, "tie": tie, "votes": votes,
                         "n": n}, index=tasks, columns=cols)


@contextmanager
def _quiet() -> Iterator[None]:
    """crowd-kit 1.4 uses pandas' deprecated ``inplace=`` keywords; keep the logs clean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        yield


def _wawa(data: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    from crowdkit.aggregation import MajorityVote
    from crowdkit.aggregation.utils import get_accuracy

    mv = MajorityVote().fit(data)
    skills = get_accuracy(data, true_labels=mv.labels_, by="worker")
    weighted = MajorityVote().fit(data, skills=skills)
    return weighted.labels_, weighted.probas_


def aggregate_question(
    data: pd.DataFrame, method: str = "DawidSkene", seed: int = 0,
    params: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Fit one crowd-kit aggregator.

    Parameters
    ----------
    data : DataFrame
        ``task, worker, label`` without abstentions.
    method : {"MajorityVote", "Wawa", "DawidSkene", "GLAD", "MACE"}
    seed : int
        Random state (MACE).
    params : dict, optional
        Hyperparameters passed to the crowd-kit class, overriding :data:`DEFAULT_PARAMS`.

    Returns
    -------
    DataFrame indexed by task
        ``label`` and ``posterior`` (the aggregator's probability of that label; for
        MajorityVote the vote share, with ties left unlabelled).
    """
    if method not in METHODS:
        raise ValueError(
            f"method: unknown aggregation method {method!r}; expected one of {METHODS}")
    if data.empty:
        return pd.DataFrame(columns=["label", "posterior"])
    if method == "MajorityVote":
        mv = majority_vote(data)
        return pd.DataFrame({"label": mv["label"], "posterior": mv["share"]})
    if data["label"].nunique() == 1:
        # every model degenerates to the one observed label
        tasks = sorted(data["task"].unique())
        return pd.DataFrame({"label": data["label"].iloc[0], "posterior": 1.0}, index=tasks)
    if method == "Wawa":
        with _quiet():
            labels, probas = _wawa(data)
    else:
        from crowdkit.aggregation import GLAD, MACE, DawidSkene

        kw = {**DEFAULT_PARAMS.get(method, {}), **(params or {})}
        if method == "MACE":
            kw.setdefault("random_state", seed)
        model: Any = {"DawidSkene": DawidSkene, "GLAD": GLAD, "MACE": MACE}[method](**kw)
        with _quiet():
            labels = model.fit_predict(data)
        probas = model.probas_
    probas = probas.astype(float)
    col = probas.columns.get_indexer(pd.Index(labels.astype(object)))
    row = probas.index.get_indexer(labels.index)
    vals = probas.to_numpy()
    post = np.where((col >= 0) & (row >= 0), vals[np.maximum(row, 0), np.maximum(col, 0)],
                    np.nan)
    out = pd.DataFrame({"label": labels.astype(object), "posterior": post}, index=labels.index)
    # a posterior of exactly 1/k with k labels tied is a tie, not a decision
    top2 = np.sort(probas.to_numpy(), axis=1)[:, -2:] if probas.shape[1] > 1 else None
    if top2 is not None:
        tie = pd.Series(np.isclose(top2[:, 0], top2[:, 1], atol=1e-9), index=probas.index)
        out.loc[tie.reindex(out.index).fillna(False).astype(bool), "label"] = None
    return out.sort_index()


def aggregate(
    answers: pd.DataFrame,
    method: str = "DawidSkene",
    questions: tuple[str, ...] | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    schema: QuestionSchema | None = None,
) -> pd.DataFrame:
    """Aggregate every categorical question, with the majority vote beside the chosen method.

    Parameters
    ----------
    answers : DataFrame
        Long answer table (after quality control).
    method : str
        One of :data:`METHODS`.
    questions : tuple of str, optional
        Categorical form fields to aggregate; default the schema's presence and pattern
        questions (``("shared", "pattern")``).
    seed : int
    params : dict, optional
        crowd-kit hyperparameters for ``method``.
    schema : QuestionSchema, optional
        The study's questions (default: built-in).

    Returns
    -------
    DataFrame indexed by hit_key
        For each question ``q``: ``q`` (label), ``q_posterior``, ``q_mv`` (majority label),
        ``q_mv_tie``, ``q_votes`` (dict, abstentions counted under ``"unsure"``), ``q_n`` (labels),
        ``q_abstain``; plus ``n_workers``.
    """
    schema = schema or default_schema()
    questions = schema.categorical if questions is None else questions
    tasks = sorted(answers["hit_key"].astype(str).unique()) if len(answers) else []
    out = pd.DataFrame(index=pd.Index(tasks, name="hit_key"))
    for q in questions:
        data, abstain = to_crowdkit(answers, q, schema)
        agg = aggregate_question(data, method, seed, params)
        mv = majority_vote(data) if len(data) else pd.DataFrame(
            columns=["label", "share", "tie", "votes", "n"])
        out[q] = agg["label"].reindex(out.index).astype(object)
        out[q] = out[q].where(out[q].notna(), None)
        out[f"{q}_posterior"] = agg["posterior"].reindex(out.index).astype(float)
        out[f"{q}_mv"] = mv["label"].reindex(out.index).astype(object)
        out[f"{q}_mv_tie"] = mv["tie"].reindex(out.index).fillna(False).astype(bool)
        votes = mv["votes"].reindex(out.index)
        ab = abstain.reindex(out.index).fillna(0).astype(int)
        out[f"{q}_votes"] = [
            {**(v if isinstance(v, dict) else {}), **({UNSURE: int(a)} if a else {})}
            for v, a in zip(votes, ab, strict=True)]
        out[f"{q}_n"] = mv["n"].reindex(out.index).fillna(0).astype(int)
        out[f"{q}_abstain"] = ab
    if len(answers):
        out["n_workers"] = answers.groupby("hit_key")["worker_id"].nunique().reindex(
            out.index).fillna(0).astype(int)
    else:
        out["n_workers"] = pd.Series(dtype=int)
    return out


def worker_skills(answers: pd.DataFrame, aggregated: pd.DataFrame,
                  question: str | None = None, schema: QuestionSchema | None = None
                  ) -> pd.Series:
    """Each worker's agreement with the aggregated label (crowd-kit ``get_accuracy``) of
    ``question`` (default: the schema's presence question, ``shared``).

    Returns
    -------
    Series indexed by worker id, values in [0, 1].
    """
    schema = schema or default_schema()
    question = question or schema.field_for(PRESENCE) or schema.categorical[0]
    data, _ = to_crowdkit(answers, question, schema)
    truth = aggregated[question].dropna() if question in aggregated else pd.Series(dtype=object)
    data = data[data["task"].isin(truth.index)]
    if data.empty:
        return pd.Series(dtype=float)
    from crowdkit.aggregation.utils import get_accuracy

    with _quiet():
        return get_accuracy(data, true_labels=truth, by="worker").astype(float)
