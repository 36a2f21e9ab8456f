"""Agreement statistics against statsmodels, the krippendorff package and published values."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from helpers_analysis import make_manifest, simulate_answers
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

import analysis.agreement as agreement_module  # the private helpers too
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


def test_undefined_statistics_are_nan():
    """Nothing pairable, one item, one category, or a category share within rounding of 1:
    NaN, not an error or a number; a single item with two different ratings is defined."""
    empty = pd.DataFrame(columns=["task", "worker", "label"])
    singles = matrix_to_long([["a", "b", "c"]])  # one rating per item
    one_cat = matrix_to_long([["a", "a"], ["a", "a"]])
    for stat in (krippendorff_alpha_nominal, unanimous_share):
        assert np.isnan(stat(empty)) and np.isnan(stat(singles))
    assert np.isnan(krippendorff_alpha_nominal(one_cat))
    for table in (np.zeros((0, 3)), np.array([1.0, 2.0]), np.array([[1, 0], [0, 1]]),
                  np.array([[2, 0], [3, 0]])):
        assert np.isnan(fleiss_kappa(table)), table
    near_one = np.array([[2, 0]] * 1_000_000 + [[1, 1]])  # P_e within isclose of 1
    assert np.isnan(fleiss_kappa(near_one))
    # one item rated a and b: P_i = 0, P_e = 1/2, kappa = -1; alpha = 0 (2 values, 1 pair)
    assert fleiss_kappa(np.array([[1, 1]])) == pytest.approx(-1.0)
    pair = matrix_to_long([["a"], ["b"]])
    assert krippendorff_alpha_nominal(pair) == pytest.approx(0.0)
    assert agreement_module._alpha_from_counts(np.array([[1.0, 1.0]])) == pytest.approx(0.0)
    assert np.isnan(agreement_module._alpha_from_counts(np.array([[1.0, 0.0], [0.0, 1.0]])))


def test_items_of_exactly_two_ratings_count_and_unanimity_counts_labels():
    """Items with two ratings are pairable (alpha's and the bootstrap's), and an item is
    unanimous when one category holds all its ratings (two ratings of one label included)."""
    long = matrix_to_long([["a", "a", "b", "c"], ["a", "b", "b", "c"]])
    table = count_table(long).to_numpy(dtype=float)
    assert agreement_module._alpha_from_counts(table) == pytest.approx(
        krippendorff.alpha(reliability_data=[[0, 0, 1, 2], [0, 1, 1, 2]],
                           level_of_measurement="nominal"))
    assert unanimous_share(long) == pytest.approx(0.75)  # u0 a/a, u2 b/b, u3 c/c; u1 a/b
    lo, hi = bootstrap_ci(long, fleiss_kappa, n_boot=50, seed=1)
    assert np.isfinite(lo) and np.isfinite(hi)


def test_unanimity_needs_every_rating_in_one_category():
    """Three ratings a, b, b: two categories, not unanimous (the b's being a majority)."""
    long = matrix_to_long([["a", "a", "b"], ["a", "b", "b"], ["a", "b", "b"]])
    assert unanimous_share(long) == pytest.approx(2 / 3)  # u0 a/a/a, u2 b/b/b; u1 a/b/b


def test_bootstrap_resamples_the_pairable_items_at_the_asked_coverage():
    """Items with one rating are left out before resampling; n_boot resamples are drawn with
    the seed's generator over all items (index 0 included), the NaN ones dropped, and the
    interval is their (1-level)/2 and (1+level)/2 quantiles; two items at least."""
    long = matrix_to_long(FLEISS_1971.T.tolist())
    lone = pd.DataFrame({"task": ["lone"], "worker": ["c0"], "label": ["3"]})
    calls = []

    def stat(t):
        calls.append(t.copy())
        return fleiss_kappa(t)

    got = bootstrap_ci(pd.concat([long, lone]), stat, n_boot=40, level=0.8, seed=3)
    assert len(calls) == 40
    table = count_table(long).to_numpy(dtype=float)
    rng = np.random.default_rng(3)
    vals = np.array([fleiss_kappa(table[rng.integers(0, len(table), len(table))])
                     for _ in range(40)])
    assert got == (pytest.approx(np.quantile(vals, 0.1)), pytest.approx(np.quantile(vals, 0.9)))
    assert bootstrap_ci(long, fleiss_kappa) == bootstrap_ci(long, fleiss_kappa, n_boot=500,
                                                           seed=0)
    assert bootstrap_ci(long, fleiss_kappa, n_boot=40, level=0.5, seed=3) != \
        bootstrap_ci(long, fleiss_kappa, n_boot=40, level=0.95, seed=3)
    two = matrix_to_long([["a", "b"], ["a", "b"]])  # two items: an interval, if degenerate
    assert np.isfinite(bootstrap_ci(two, lambda t: float(len(t)), n_boot=5)[0])
    nan_pair = bootstrap_ci(long.iloc[:0], fleiss_kappa)
    assert np.isnan(nan_pair[0]) and np.isnan(nan_pair[1])
    one_item = matrix_to_long([["a"], ["b"]])
    assert all(np.isnan(v) for v in bootstrap_ci(one_item, fleiss_kappa, n_boot=5))
    all_nan = bootstrap_ci(long, lambda t: float("nan"), n_boot=5)
    assert np.isnan(all_nan[0]) and np.isnan(all_nan[1])
    some_nan = iter([float("nan"), 1.0, 2.0, 3.0, 4.0])
    assert bootstrap_ci(long, lambda t: next(some_nan), n_boot=5, level=0.5) == \
        (pytest.approx(1.75), pytest.approx(3.25))  # the NaN left out


def test_summary_is_each_question_and_the_pooled_units():
    """Per question: the statistics of its crowd-kit table, the bootstrap intervals with the
    given resamples and seed, items with two labels; overall: every (question, item) a unit of
    its own and every (question, label) a category; a question without answers gets Nones."""
    from analysis.aggregate import to_crowdkit
    from sparse_probe.questions import default_schema

    ans = simulate_answers(make_manifest(), n_good=3, n_spam=2, seed=4)
    schema = default_schema()
    questions = tuple(schema.categorical)
    got = agreement_summary(ans, questions=(*questions, "absent"), n_boot=20, seed=5)

    def summ(data):
        t = count_table(data)
        none = agreement_module._nan_none
        return {"fleiss_kappa": none(fleiss_kappa(t)),
                "kappa_ci": [none(v) for v in bootstrap_ci(data, fleiss_kappa, 20, seed=5)],
                "krippendorff_alpha": none(krippendorff_alpha_nominal(data)),
                "alpha_ci": [none(v) for v in bootstrap_ci(data, agreement_module._alpha_from_counts,
                                                           20, seed=5)],
                "unanimous": none(unanimous_share(data)),
                "n_items": int((t.sum(axis=1) >= 2).sum())}

    pooled = []
    for q in questions:
        data, _ = to_crowdkit(ans, q, schema)
        assert got[q] == summ(data), q
        pooled.append(data.assign(task=q + "/" + data["task"], label=q + "/" + data["label"]))
    assert got["overall"] == summ(pd.concat(pooled))
    assert got["absent"] == {"fleiss_kappa": None, "kappa_ci": [None, None],
                             "krippendorff_alpha": None, "alpha_ci": [None, None],
                             "unanimous": None, "n_items": 0}
    assert got["overall"]["n_items"] == sum(got[q]["n_items"] for q in questions)
    default = agreement_summary(ans, n_boot=20, seed=5)
    assert default.keys() == set(questions) | {"overall"}
    assert agreement_summary(ans, n_boot=20) == agreement_summary(ans, n_boot=20, seed=0)
    nothing = agreement_summary(ans.iloc[:0], n_boot=5)
    assert nothing["overall"] == got["absent"]
    assert all(nothing[q] == got["absent"] for q in questions)
    assert agreement_summary(ans) == agreement_summary(ans, n_boot=500, seed=0)  # defaults


def test_nan_and_none_become_none_in_the_summary():
    none = agreement_module._nan_none
    assert none(None) is None and none(float("nan")) is None and none(float("inf")) is None
    assert none(np.float64(0.25)) == 0.25 and type(none(np.float64(0.25))) is float
