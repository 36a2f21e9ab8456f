"""Statistics of counterfactual tests: Wilson score intervals and the exact McNemar test.

Wilson (1927): for k successes in n trials and z = Phi^-1(1 - a/2),
``center = (k + z^2/2) / (n + z^2)``, ``half = z sqrt(k (n - k) / n + z^2 / 4) / (n + z^2)``.
Mean shifts get a percentile bootstrap interval that resamples whole clusters (the texts: every
edit of one text moves together).
Exact McNemar (McNemar 1947; the binomial form): with b = pairs flipped only by model A and
c = pairs flipped only by model B, ``p = min(1, 2 P[X <= min(b, c)])`` for X ~ Bin(b + c, 1/2).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, norm

__all__ = ["bootstrap_mean_interval", "mcnemar_exact", "paired_comparison", "wilson_interval"]


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    k : int
        Successes (e.g. flipped predictions).
    n : int
        Trials.
    level : float
        Coverage (default 95%).

    Returns
    -------
    (low, high)
        ``(nan, nan)`` when ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"k: expected 0 <= k <= n, got k={k}, n={n}")
    z = float(norm.ppf(1 - (1 - level) / 2))
    z2 = z * z
    center = (k + z2 / 2) / (n + z2)
    half = z * np.sqrt(k * (n - k) / n + z2 / 4) / (n + z2)
    return float(max(0.0, center - half)), float(min(1.0, center + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c``."""
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))


def paired_comparison(flips_a: np.ndarray, flips_b: np.ndarray) -> dict:
    """Compare two models' flips on the same perturbed examples.

    Parameters
    ----------
    flips_a, flips_b : bool arrays of shape (n,)
        Whether each perturbed example flipped model A's / model B's prediction.

    Returns
    -------
    dict
        ``n, a_rate, b_rate, both, neither, a_only, b_only, p_value`` (exact McNemar).
    """
    a = np.asarray(flips_a, bool)
    b = np.asarray(flips_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"flips_b: expected shape {a.shape}, got {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return {"n": int(a.size), "a_rate": float(a.mean()) if a.size else float("nan"),
            "b_rate": float(b.mean()) if b.size else float("nan"), "both": int((a & b).sum()),
            "neither": int((~a & ~b).sum()), "a_only": a_only, "b_only": b_only,
            "p_value": mcnemar_exact(a_only, b_only)}


def bootstrap_mean_interval(values: np.ndarray, clusters: np.ndarray | None = None,
                            n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean, resampling clusters with replacement.

    Parameters
    ----------
    values : array of shape (m,)
    clusters : int array of shape (m,), optional
        Cluster id per value (e.g. the source text of each edit); default one per value.
    n_boot : int
    level : float
    seed : int

    Returns
    -------
    (low, high)
        ``(nan, nan)`` for no values.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    ids = np.arange(values.size) if clusters is None else np.asarray(clusters)
    _, inv = np.unique(ids, return_inverse=True)
    sums = np.bincount(inv, weights=values)
    counts = np.bincount(inv).astype(float)
    k = len(sums)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, k, (n_boot, k))
    means = sums[pick].sum(1) / counts[pick].sum(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)
