"""Inter-rater agreement: Fleiss' kappa, Krippendorff's alpha (nominal), unanimity, bootstrap.

Fleiss' kappa (Fleiss 1971) on an item x category count table ``n_ij`` with ``n_i`` ratings on
item i: ``P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))``, ``P_bar = mean_i P_i``,
``p_j = sum_i n_ij / sum_i n_i``, ``P_e = sum_j p_j^2``, ``kappa = (P_bar - P_e) / (1 - P_e)``.
With a constant number of raters this is Fleiss' statistic exactly; with varying ``n_i`` it is the
usual generalisation (items with fewer than two ratings are dropped).

Krippendorff's alpha, nominal (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
coincidence matrix ``o_ck = sum_u sum_{i != j in u} [v_i = c][v_j = k] / (m_u - 1)`` over units
with ``m_u >= 2`` values, ``n_c = sum_k o_ck``, ``n = sum_c n_c``,
``alpha = 1 - (n - 1) (n - sum_c o_cc) / (n^2 - sum_c n_c^2)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.aggregate import to_crowdkit
from sparse_probe.questions import QuestionSchema, default_schema

__all__ = [
    "agreement_summary",
    "bootstrap_ci",
    "count_table",
    "crowdkit_alpha_of_counts",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "unanimous_share",
]


def count_table(data: pd.DataFrame) -> pd.DataFrame:
    """Item x category counts from crowd-kit's ``task, worker, label``.

    Returns
    -------
    DataFrame of shape (n_items, n_categories), integer counts.
    """
    if data.empty:
        return pd.DataFrame()
    return pd.crosstab(data["task"], data["label"]).astype(int)


def fleiss_kappa(table: np.ndarray | pd.DataFrame) -> float:
    """Fleiss' kappa of an item x category count table.

    Parameters
    ----------
    table : array of shape (n_items, n_categories)
        ``table[i, j]`` = raters who put item i in category j.

    Returns
    -------
    float
        Kappa; NaN when undefined (fewer than one item with two ratings, or ``P_e = 1``).
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.size == 0:
        return float("nan")
    n_i = t.sum(axis=1)
    t = t[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if len(t) == 0:
        return float("nan")
    p_i = ((t**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = t.sum(0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha_nominal(data: pd.DataFrame) -> float:
    """Krippendorff's alpha for nominal data: crowd-kit's ``alpha_krippendorff``.

    Parameters
    ----------
    data : DataFrame
        ``task, worker, label`` (missing values are simply absent rows).

    Returns
    -------
    float
        Alpha; NaN when undefined (no pairable values or a single category).
    """
    if data.empty:
        return float("nan")
    table = count_table(data).to_numpy(dtype=float)
    if np.isnan(_alpha_from_counts(table)):  # undefined: crowd-kit would divide by zero
        return float("nan")
    from crowdkit.metrics.data import alpha_krippendorff

    return float(alpha_krippendorff(data[["task", "worker", "label"]]))


def crowdkit_alpha_of_counts(table: np.ndarray) -> float:
    """crowd-kit's Krippendorff alpha of a count table (n_items, n_categories).

    Nominal alpha depends only on how many answers of each value every item got, so each
    answer is given its own (item, position) worker id.
    """
    t = np.asarray(table, dtype=np.int64)
    items, cats = np.nonzero(t)
    reps = t[items, cats]
    task = np.repeat(items, reps)
    label = np.repeat(cats, reps)
    order = np.argsort(task, kind="stable")
    task, label = task[order], label[order]
    first = np.searchsorted(task, task)  # index of each item's first answer
    worker = np.arange(len(task)) - first
    from crowdkit.metrics.data import alpha_krippendorff

    return float(alpha_krippendorff(pd.DataFrame({"task": task, "worker": worker,
                                                  "label": label})))


def _alpha_from_counts(table: np.ndarray) -> float:
    """Nominal alpha from counts (the vectorized form the bootstrap resamples use; equal to
    crowd-kit's ``alpha_krippendorff``, checked in tests/test_agreement.py)."""
    m = table.sum(axis=1)
    keep = m >= 2
    table, m = table[keep], m[keep]
    if len(table) == 0:
        return float("nan")
    # o_ck = sum_u n_uc (n_uk - [c = k]) / (m_u - 1)
    w = 1.0 / (m - 1)
    o = (table * w[:, None]).T @ table
    o -= np.diag((table * w[:, None]).sum(0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    denom = n**2 - (n_c**2).sum()
    if denom <= 0:
        return float("nan")
    return float(1 - (n - 1) * (n - np.trace(o)) / denom)


def unanimous_share(data: pd.DataFrame) -> float:
    """Share of items (with at least two labels) on which every label agrees."""
    t = count_table(data)
    if t.empty:
        return float("nan")
    t = t[t.sum(axis=1) >= 2]
    if t.empty:
        return float("nan")
    return float(((t > 0).sum(axis=1) == 1).mean())


def bootstrap_ci(
    data: pd.DataFrame,
    stat: Callable[[np.ndarray], float],
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of an agreement statistic, resampling items.

    Parameters
    ----------
    data : DataFrame
        ``task, worker, label``.
    stat : callable
        Maps an item x category count array (n_items, n_categories) to a float.
    n_boot : int
        Bootstrap resamples.
    level : float
        Coverage.
    seed : int
        Seed of the resampling generator.

    Returns
    -------
    (low, high)
    """
    table = count_table(data).to_numpy(dtype=float)
    table = table[table.sum(axis=1) >= 2] if table.size else table
    if len(table) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = np.array([stat(table[rng.integers(0, len(table), len(table))])
                     for _ in range(n_boot)])
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def agreement_summary(
    answers: pd.DataFrame,
    questions: tuple[str, ...] | None = None,
    n_boot: int = 500,
    seed: int = 0,
    schema: QuestionSchema | None = None,
) -> dict:
    """Agreement per question and overall.

    Parameters
    ----------
    answers : DataFrame
        Long answer table (after quality control).
    questions : tuple of str, optional
        Default: the schema's presence and pattern questions (``("shared", "pattern")``).
    n_boot : int
        Bootstrap resamples for the 95% intervals (items resampled; seeded).
    seed : int
    schema : QuestionSchema, optional
        Abstentions and the pattern question's condition (default: built-in schema).

    Returns
    -------
    dict
        ``{question: {"fleiss_kappa", "kappa_ci", "krippendorff_alpha", "alpha_ci",
        "unanimous", "n_items"}, "overall": {...}}``; overall pools the questions' items
        (each (item, question) pair is one unit).
    """
    schema = schema or default_schema()
    questions = schema.categorical if questions is None else questions
    out: dict = {}
    pooled = []
    for q in questions:
        data, _ = to_crowdkit(answers, q, schema) if len(answers) else (pd.DataFrame(), None)
        if data is None or data.empty:
            out[q] = {"fleiss_kappa": None, "kappa_ci": [None, None],
                      "krippendorff_alpha": None, "alpha_ci": [None, None],
                      "unanimous": None, "n_items": 0}
            continue
        pooled.append(data.assign(task=q + ":" + data["task"], label=q + ":" + data["label"]))
        out[q] = _summ(data, n_boot, seed)
    out["overall"] = _summ(pd.concat(pooled), n_boot, seed) if pooled else {
        "fleiss_kappa": None, "kappa_ci": [None, None], "krippendorff_alpha": None,
        "alpha_ci": [None, None], "unanimous": None, "n_items": 0}
    return out


def _nan_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _summ(data: pd.DataFrame, n_boot: int, seed: int) -> dict:
    t = count_table(data)
    return {
        "fleiss_kappa": _nan_none(fleiss_kappa(t)),
        "kappa_ci": [_nan_none(v) for v in bootstrap_ci(data, fleiss_kappa, n_boot, seed=seed)],
        "krippendorff_alpha": _nan_none(krippendorff_alpha_nominal(data)),
        "alpha_ci": [_nan_none(v) for v in bootstrap_ci(data, _alpha_from_counts, n_boot,
                                                          seed=seed)],
        "unanimous": _nan_none(unanimous_share(data)),
        "n_items": int((t.sum(axis=1) >= 2).sum()) if not t.empty else 0,
    }
