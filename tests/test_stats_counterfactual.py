"""Counterfactual statistics (analysis/counterfactual/stats.py) against statsmodels and the
closed forms, at the edges of their inputs (no trials, all or none successes, one pair)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from analysis.counterfactual.stats import (
    bootstrap_mean_interval,
    mcnemar_exact,
    paired_comparison,
    wilson_interval,
)

Z95 = 1.959963984540054


@pytest.mark.parametrize("n", [1, 2, 7, 40])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_wilson_every_k_matches_statsmodels(n, level):
    for k in range(n + 1):
        lo, hi = wilson_interval(k, n, level)
        rlo, rhi = proportion_confint(k, n, alpha=1 - level, method="wilson")
        assert (lo, hi) == pytest.approx((rlo, rhi), abs=1e-12)


def test_wilson_default_level_is_95():
    assert wilson_interval(3, 10) == wilson_interval(3, 10, 0.95)
    assert wilson_interval(3, 10) != wilson_interval(3, 10, 0.9)


def test_wilson_closed_form_at_the_edges():
    n = 10
    z2 = Z95**2
    lo, hi = wilson_interval(0, n)
    assert lo == 0.0 and hi == pytest.approx(z2 / (n + z2), abs=1e-12)
    lo, hi = wilson_interval(n, n)
    assert hi == 1.0 and lo == pytest.approx(n / (n + z2), abs=1e-12)
    lo, hi = wilson_interval(5, n)
    half = Z95 * math.sqrt(5 * 5 / n + z2 / 4) / (n + z2)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)


def test_wilson_upper_end_is_exactly_one_at_k_equal_n():
    # the unclamped sum rounds to 1 + 2^-52 at these n (90%): an interval must stay in [0, 1]
    for n in (32, 33, 34, 36):
        assert wilson_interval(n, n, 0.9)[1] == 1.0
        assert wilson_interval(0, n, 0.9)[0] == 0.0


def test_wilson_no_trials_and_bad_counts():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert all(math.isnan(v) for v in wilson_interval(0, -1))
    assert wilson_interval(1, 1)[1] == 1.0  # k == n is allowed
    for k, n in [(5, 3), (-1, 3), (2, 1)]:
        with pytest.raises(ValueError) as e:
            wilson_interval(k, n)
        assert str(e.value) == f"k: expected 0 <= k <= n, got k={k}, n={n}"


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (1, 1), (0, 5), (3, 9), (9, 3),
                                 (20, 20), (0, 30)])
def test_mcnemar_exact_matches_binomtest(b, c):
    ref = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(ref, abs=1e-12)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_closed_form():
    # all 5 discordant pairs on one side: p = 2 / 2^5
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32, abs=1e-15)
    assert mcnemar_exact(0, 0) == 1.0


def test_paired_comparison_counts_every_cell():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    b = np.array([1, 0, 0, 1, 0, 0, 0, 0], bool)
    r = paired_comparison(a, b)
    assert r == {"n": 8, "a_rate": 0.5, "b_rate": 0.25, "both": 1, "neither": 3,
                 "a_only": 3, "b_only": 1, "p_value": pytest.approx(mcnemar_exact(3, 1))}
    assert r["p_value"] == pytest.approx(binomtest(1, 4, 0.5).pvalue)


def test_paired_comparison_accepts_float_and_int_flags():
    a = np.array([1.0, 1.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 1.0, 0.0])
    r = paired_comparison(a, b)
    assert (r["both"], r["neither"], r["a_only"], r["b_only"]) == (1, 1, 1, 1)
    r = paired_comparison([2, 0, 3], [1, 1, 0])  # nonzero means flipped
    assert (r["both"], r["neither"], r["a_only"], r["b_only"]) == (1, 0, 1, 1)
    assert (r["a_rate"], r["b_rate"]) == pytest.approx((2 / 3, 2 / 3))


def test_paired_comparison_discordant_cells_are_told_apart():
    # a_only 1, b_only 3, both 2: b_only must not be mistaken for both
    a = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    b = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    r = paired_comparison(a, b)
    assert (r["both"], r["neither"], r["a_only"], r["b_only"]) == (2, 1, 1, 3)
    assert r["p_value"] == pytest.approx(binomtest(1, 4, 0.5).pvalue)


def test_paired_comparison_empty_and_shape_mismatch():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" warning in the user's log
        r = paired_comparison(np.zeros(0, bool), np.zeros(0, bool))
    assert r["n"] == 0 and math.isnan(r["a_rate"]) and math.isnan(r["b_rate"])
    assert r["p_value"] == 1.0
    with pytest.raises(ValueError) as e:
        paired_comparison(np.zeros(3, bool), np.zeros(4, bool))
    assert str(e.value) == "flips_b: expected shape (3,), got (4,)"


def test_bootstrap_empty_single_and_constant():
    assert all(math.isnan(v) for v in bootstrap_mean_interval(np.zeros(0)))
    assert bootstrap_mean_interval([0.3]) == (0.3, 0.3)
    assert bootstrap_mean_interval(np.full(7, 0.25)) == (0.25, 0.25)
    assert bootstrap_mean_interval([1.0, 2.0], clusters=[4, 4]) == (1.5, 1.5)


def test_bootstrap_resamples_whole_clusters_weighted_by_size():
    # clusters {1,1,1} and {0}: a resample of 2 clusters has mean 1, 0 or (3+0)/4 = 0.75
    # (not the mean of cluster means 0.5); the mixed draw has probability 1/2
    vals = np.array([1.0, 1.0, 1.0, 0.0])
    lo, hi = bootstrap_mean_interval(vals, clusters=np.array([7, 7, 7, 2]), level=0.1)
    assert (lo, hi) == (0.75, 0.75)
    lo, hi = bootstrap_mean_interval(vals, clusters=np.array([7, 7, 7, 2]))
    assert (lo, hi) == (0.0, 1.0)


def test_bootstrap_clusters_widen_the_interval():
    vals = np.array([0.0] * 10 + [1.0] * 10)
    free = bootstrap_mean_interval(vals)
    grouped = bootstrap_mean_interval(vals, clusters=np.repeat([0, 1], 10))
    assert grouped == (0.0, 1.0)
    assert 0.2 < free[0] < 0.5 < free[1] < 0.8


def test_bootstrap_level_seed_and_defaults():
    rng = np.random.default_rng(1)
    vals = rng.normal(size=50)
    default = bootstrap_mean_interval(vals)
    assert default == bootstrap_mean_interval(vals, None, 1000, 0.95, 0)
    assert default != bootstrap_mean_interval(vals, seed=1)
    assert default != bootstrap_mean_interval(vals, n_boot=999)
    narrow = bootstrap_mean_interval(vals, level=0.5)
    assert default[0] < narrow[0] < vals.mean() < narrow[1] < default[1]
    # the percentile interval of the bootstrap means, computed here directly
    rng = np.random.default_rng(0)
    pick = rng.integers(0, 50, (1000, 50))
    means = vals[pick].mean(1)
    assert default == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
