"""Decision rules: an item's answers to one question -> its verdict, as first-class methods.

Every rule reads the item x value count table of the deciding question (values keep their
identity: background and separate object are different values even if both mean spurious)
and gives each item a verdict among ``core``, ``spurious`` (with a ``kind``), ``no_pattern``,
``undecided`` (the rule cannot decide) or ``pending`` (no answer).

``k_of_n``
    The rule of studies that call an item spurious when at least ``k`` of its ``n`` answers do
    not say "core": spurious when the answers meaning ``spurious`` number ``>= k``; otherwise
    ``no_pattern`` if more answers mean ``no_pattern`` than ``core``, else ``core``. With ``n``
    set, an item with fewer answers whose missing answers could still reach ``k`` is
    ``undecided``. The kind of a spurious item is the spurious kind with most answers; a tie
    between kinds gives the joined kinds (``background+mark``) and ``kind_tie = True``.
``majority``
    Plurality of values; a tie between the top values is ``undecided`` with ``tie = True``
    (a 2-2-1 split over three values is a tie).
crowd-kit (``MajorityVote``, ``Wawa``, ``DawidSkene``, ``GLAD``, ``MACE``)
    :func:`analysis.aggregate.aggregate_question`; a label whose posterior is below
    ``min_posterior`` leaves the item ``undecided``.

Every rule also reports ``plurality_tie`` (the top values are tied: how majority vote would
see the item), so a report can say how many items the rule decided that a plurality could not.
All of it is numpy over the count table; crowd-kit is imported only when one of its methods
is asked for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.study import Rule, StudyAnswers
from sparse_probe.questions import CORE, NO_PATTERN, SPURIOUS, Question

__all__ = ["VERDICT_COLUMNS", "count_table", "decide"]

#: Columns added per item by :func:`decide`.
VERDICT_COLUMNS = ["verdict", "kind", "kind_tie", "label", "posterior", "tie", "plurality_tie",
                   "n_answers", "n_spurious", "n_core", "n_no_pattern", "votes"]


def count_table(item_codes: np.ndarray, value_codes: np.ndarray, n_items: int,
                n_values: int) -> np.ndarray:
    """Item x value counts.

    Parameters
    ----------
    item_codes : int array, shape (n_answers,)
        Item index of each answer.
    value_codes : int array, shape (n_answers,)
        Value index of each answer; negative values (abstentions) are not counted.
    n_items, n_values : int

    Returns
    -------
    int array, shape (n_items, n_values)
    """
    ok = value_codes >= 0
    flat = item_codes[ok] * n_values + value_codes[ok]
    return np.bincount(flat, minlength=n_items * n_values).reshape(n_items, n_values)


def _top_tie(counts: np.ndarray) -> np.ndarray:
    """Whether the two largest counts of each row are equal (and non-zero)."""
    if counts.shape[1] < 2:
        return np.zeros(len(counts), dtype=bool)
    part = np.sort(counts, axis=1)[:, -2:]
    return (part[:, 0] == part[:, 1]) & (part[:, 1] > 0)


def _kinds(counts: np.ndarray, q: Question) -> tuple[np.ndarray, np.ndarray]:
    """The spurious kind with most answers per item (joined kinds on a tie), and the tie."""
    kinds = sorted({v.spurious_kind or "other" for v in q.values if v.meaning == SPURIOUS})
    kc = np.zeros((len(counts), len(kinds)), dtype=int)
    for j, v in enumerate(q.values):
        if v.meaning == SPURIOUS:
            kc[:, kinds.index(v.spurious_kind or "other")] += counts[:, j]
    best = kc.max(axis=1, initial=0)
    at_best = (kc == best[:, None]) & (best[:, None] > 0)
    joined = np.full(len(counts), "", dtype=object)
    for j, name in enumerate(kinds):
        sep = np.where(joined != "", "+", "")
        joined = np.where(at_best[:, j], joined + sep + name, joined)
    joined[joined == ""] = None
    return joined, at_best.sum(axis=1) > 1


def _votes(counts: np.ndarray, q: Question) -> list[str]:
    """``value:count`` strings per item (non-zero counts, declared order)."""
    vals = [v.value for v in q.values]
    frame = pd.DataFrame(counts, columns=vals)
    parts = [np.where(frame[v] > 0, v + ":" + frame[v].astype(str), "") for v in vals]
    joined = parts[0]
    for p in parts[1:]:
        joined = np.char.add(np.char.add(joined, np.where((joined != "") & (p != ""), " ", "")),
                             p)
    return list(joined)


def decide(answers: StudyAnswers, rule: Rule, question: Question) -> pd.DataFrame:
    """Apply ``rule`` to every item.

    Parameters
    ----------
    answers : StudyAnswers
        From :func:`analysis.study.read_study_answers`.
    rule : Rule
    question : Question
        The deciding question (its values' meanings).

    Returns
    -------
    DataFrame, shape (n_items, len(VERDICT_COLUMNS))
        Indexed like ``answers.items``; columns :data:`VERDICT_COLUMNS`: ``label`` the value
        the rule chose (``None`` for ``k_of_n``, which decides on meanings), ``posterior``
        (crowd-kit methods; else the top value's share), ``tie`` (the rule itself tied),
        ``votes`` (``"value:count ..."``).
    """
    items = answers.items["item"].to_numpy()
    n_items, values = len(items), question.values
    item_idx = pd.Index(items).get_indexer(answers.rows["item"])
    codes = answers.rows[question.id].to_numpy()
    counts = count_table(item_idx, codes, n_items, len(values))
    meaning = np.array([v.meaning for v in values], dtype=object)
    is_sp, is_core, is_np = (meaning == SPURIOUS), (meaning == CORE), (meaning == NO_PATTERN)
    n_ans = counts.sum(axis=1)
    n_sp, n_core, n_np = (counts[:, m].sum(axis=1) for m in (is_sp, is_core, is_np))
    plurality_tie = _top_tie(counts)
    top = counts.argmax(axis=1)
    share = np.divide(counts.max(axis=1, initial=0), n_ans, out=np.full(n_items, np.nan),
                      where=n_ans > 0)
    kind_all, kind_tie_all = _kinds(counts, question)
    verdict = np.full(n_items, "pending", dtype=object)
    kind = np.full(n_items, None, dtype=object)
    kind_tie = np.zeros(n_items, dtype=bool)
    label = np.full(n_items, None, dtype=object)
    posterior = share.copy()
    tie = np.zeros(n_items, dtype=bool)
    value_names = np.array([v.value for v in values], dtype=object)
    value_kind = np.array([v.spurious_kind or "other" if v.meaning == SPURIOUS else None
                           for v in values], dtype=object)
    has = n_ans > 0

    if rule.method == "k_of_n":
        k = int(rule.k or 1)
        sp = has & (n_sp >= k)
        open_ = np.zeros(n_items, dtype=bool)
        if rule.n is not None:
            open_ = has & ~sp & (n_sp + np.maximum(rule.n - n_ans, 0) >= k)
        rest = has & ~sp & ~open_
        verdict[sp] = SPURIOUS
        verdict[open_] = "undecided"
        verdict[rest & (n_np > n_core)] = NO_PATTERN
        verdict[rest & (n_np <= n_core)] = CORE
        kind[sp], kind_tie[sp] = kind_all[sp], kind_tie_all[sp]
    else:
        if rule.method == "majority":
            tie = has & plurality_tie
            decided = has & ~tie
            label[decided] = value_names[top[decided]]
        else:
            lab, post = _crowdkit(answers, item_idx, codes, value_names, rule)
            label[:] = lab
            posterior = post
            tie = has & pd.isna(lab)
            decided = has & ~tie & (np.nan_to_num(post, nan=0.0) >= rule.min_posterior)
        chosen = pd.Index(value_names).get_indexer(pd.Index(label))
        good = decided & (chosen >= 0)
        m = np.where(chosen >= 0, meaning[np.maximum(chosen, 0)], None)
        verdict[has] = "undecided"
        verdict[good & (m == SPURIOUS)] = SPURIOUS
        verdict[good & (m == CORE)] = CORE
        verdict[good & (m == NO_PATTERN)] = NO_PATTERN
        is_spv = verdict == SPURIOUS
        kind[is_spv] = value_kind[chosen[is_spv]]
    return pd.DataFrame({
        "verdict": verdict, "kind": kind, "kind_tie": kind_tie, "label": label,
        "posterior": posterior, "tie": tie, "plurality_tie": plurality_tie & has,
        "n_answers": n_ans, "n_spurious": n_sp, "n_core": n_core, "n_no_pattern": n_np,
        "votes": _votes(counts, question)}, index=answers.items.index)


def _crowdkit(answers: StudyAnswers, item_idx: np.ndarray, codes: np.ndarray,
              value_names: np.ndarray, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    """Label and posterior per item from a crowd-kit aggregator (NaN / None: no answers)."""
    from analysis.aggregate import aggregate_question

    ok = codes >= 0
    data = pd.DataFrame({"task": item_idx[ok], "worker": answers.rows["worker"].to_numpy()[ok],
                         "label": value_names[codes[ok]]})
    n_items = len(answers.items)
    labels = np.full(n_items, None, dtype=object)
    post = np.full(n_items, np.nan)
    if data.empty:
        return labels, post
    agg = aggregate_question(data, rule.method, rule.seed, dict(rule.params) or None)
    idx = agg.index.to_numpy().astype(int)
    labels[idx] = agg["label"].to_numpy(dtype=object)
    post[idx] = agg["posterior"].to_numpy(dtype=float)
    labels[pd.isna(labels)] = None
    return labels, post
