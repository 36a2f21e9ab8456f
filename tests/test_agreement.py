"""Agreement statistics against statsmodels, the krippendorff package and published values."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from helpers_analysis import make_manifest, simulate_answers
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from analysis.agreement import (
    agreement_summary,
    bootstrap_ci,
    count_table,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    unanimous_share,
)

# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists, 5 diagnoses; published kappa = .430
FLEISS_1971 = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])
# Wikipedia's Fleiss' kappa example: 10 items, 14 raters, 5 categories; kappa = 0.210
WIKI = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                 [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                 [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C: 4 coders x 12
# units with missing values; published nominal alpha = 0.743
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def matrix_to_long(matrix):
    rows = [{"task": f"u{u}", "worker": f"c{c}", "label": str(v)}
            for c, coder in enumerate(matrix) for u, v in enumerate(coder) if v is not None]
    return pd.DataFrame(rows)


def test_fleiss_kappa_fleiss_1971_table():
    table, _ = aggregate_raters(FLEISS_1971)
    ours = fleiss_kappa(table)
    assert ours == pytest.approx(sm_fleiss(table), abs=1e-12)
    assert ours == pytest.approx(0.430, abs=5e-4)


def test_fleiss_kappa_wikipedia_and_long_form():
    assert fleiss_kappa(WIKI) == pytest.approx(0.210, abs=5e-4)
    long = matrix_to_long(FLEISS_1971.T.tolist())
    assert fleiss_kappa(count_table(long)) == pytest.approx(
        sm_fleiss(aggregate_raters(FLEISS_1971)[0]), abs=1e-12)


def test_krippendorff_alpha_published_example():
    long = matrix_to_long(K2011)
    ours = krippendorff_alpha_nominal(long)
    ref = krippendorff.alpha(
        reliability_data=np.array([[np.nan if v is None else v for v in c] for c in K2011],
                                  dtype=float), level_of_measurement="nominal")
    assert ours == pytest.approx(ref, abs=1e-10)
    assert ours == pytest.approx(0.743, abs=5e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_krippendorff_alpha_random_with_missing(seed):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 3, size=(5, 20)).astype(float)
    m[rng.random(m.shape) < 0.3] = np.nan
    matrix = [[None if np.isnan(v) else int(v) for v in row] for row in m]
    ours = krippendorff_alpha_nominal(matrix_to_long(matrix))
    ref = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
    assert ours == pytest.approx(ref, abs=1e-10)


def test_perfect_agreement_and_unanimity():
    long = matrix_to_long([["a", "b", "a", "c"], ["a", "b", "a", "c"], ["a", "b", "a", "c"]])
    assert fleiss_kappa(count_table(long)) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal(long) == pytest.approx(1.0)
    assert unanimous_share(long) == 1.0
    half = matrix_to_long([["a", "b"], ["a", "a"]])
    assert unanimous_share(half) == 0.5


@pytest.mark.slow
def test_bootstrap_is_seeded_and_brackets_estimate():
    long = matrix_to_long(FLEISS_1971.T.tolist())
    lo, hi = bootstrap_ci(long, fleiss_kappa, n_boot=300, seed=7)
    assert (lo, hi) == bootstrap_ci(long, fleiss_kappa, n_boot=300, seed=7)
    assert lo < fleiss_kappa(count_table(long)) < hi
    assert bootstrap_ci(long, fleiss_kappa, n_boot=300, seed=8) != (lo, hi)


@pytest.mark.slow
def test_summary_per_question():
    ans = simulate_answers(make_manifest(), n_good=4, n_spam=0, accuracy=1.0)
    s = agreement_summary(ans, n_boot=50)
    assert s["shared"]["fleiss_kappa"] == pytest.approx(1.0)
    assert s["shared"]["unanimous"] == 1.0
    assert s["overall"]["n_items"] > s["shared"]["n_items"]
    noisy = simulate_answers(make_manifest(), n_good=2, n_spam=3, seed=2)
    assert agreement_summary(noisy, n_boot=50)["shared"]["fleiss_kappa"] < 0.9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorized_alpha_equals_crowdkit_on_count_tables(seed):
    """The bootstrap resamples use the vectorized count-table alpha; the headline value is
    crowd-kit's. Both must be the same number (items with 1-6 answers, 2-4 values)."""
    from crowdkit.metrics.data import alpha_krippendorff

    from analysis.agreement import _alpha_from_counts, crowdkit_alpha_of_counts

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    table = rng.multinomial(1, np.ones(k) / k, size=(40, 6)).sum(1)  # 40 items x k counts
    table = table * (rng.random((40, 1)) < 0.9)  # a few items without answers
    table = table[table.sum(1) >= 2]
    ck = crowdkit_alpha_of_counts(table)
    assert ck == pytest.approx(_alpha_from_counts(table.astype(float)), abs=1e-10)
    labels = [(i, c) for i, row in enumerate(table) for c, n in enumerate(row)
              for _ in range(n)]
    long = pd.DataFrame([{"task": i, "worker": f"answer{j}", "label": c}
                         for j, (i, c) in enumerate(labels)])
    assert ck == pytest.approx(alpha_krippendorff(long), abs=1e-12)
