"""Exact copies among the feature columns (sparse_probe/copies.py): which columns are found,
and the equal split of their weights along a whole path, against the path without it."""

import numpy as np
import pytest
import torch

import sparse_probe.fit as fit_module
from sparse_probe import fit_path
from sparse_probe.copies import copy_groups, equal_split
from sparse_probe.data import FeatureSource
from sparse_probe.fit_common import column_stats
from sparse_probe.penalties import ElasticNet, make_penalty


def _with_copies(seed=0, n=60, d=12):
    """(X, groups): random columns, then copies: 3 of column 1, one of column 4 (at 9 and 11,
    a triple and a pair), two equal constant columns, and one column that differs from column
    6 in its last row only."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[:, 9] = X[:, 1]
    X[:, 10] = X[:, 4]
    X[:, 11] = X[:, 1]
    X[:, 2] = X[:, 3] = 5.0  # constant: never grouped
    X[:, 7] = X[:, 6]
    X[-1, 7] += 1e-9
    return X, [np.array([1, 9, 11]), np.array([4, 10])]


def _groups(X, chunk_rows=None):
    src = FeatureSource(X, chunk_rows=chunk_rows)
    return [g.tolist() for g in copy_groups(src, *column_stats(src))]


@pytest.mark.parametrize("chunk_rows", [None, 7, 1])
def test_copies_are_found_and_near_copies_and_constants_are_not(chunk_rows):
    X, want = _with_copies()
    want = [g.tolist() for g in want]
    assert _groups(X, chunk_rows) == want
    assert _groups(torch.as_tensor(X), chunk_rows) == want
    # in float32 the near copy's 1e-9 is gone: there it is a copy (the data the solvers see)
    assert _groups(torch.as_tensor(X, dtype=torch.float32), chunk_rows) == [*want, [6, 7]]
    assert _groups(X.astype(np.float32), chunk_rows) == [*want, [6, 7]]


def test_the_data_decide_between_candidates(tmp_path):
    """Columns whose first rows and statistics agree are candidates: the whole data split
    them, across chunk boundaries, in the data's own dtype (a float64 difference below
    float32's resolution still counts), from a file too."""
    X, want = _with_copies(seed=3)
    X[:, 5] = X[:, 0] * (1 + 1e-12)  # equal in float32, not in float64
    X[:, 8] = X[:, 0]
    want = [np.array([0, 8]), *want]
    path = tmp_path / "x.npy"
    np.save(path, X)
    for src in (FeatureSource(X, chunk_rows=5), FeatureSource(str(path), chunk_rows=5)):
        got = copy_groups(src, np.zeros(X.shape[1]), np.ones(X.shape[1]))
        assert [g.tolist() for g in got] == [g.tolist() for g in want]
    # a pair of candidates that differs only in the last chunk's last row
    Y = np.repeat(np.arange(20.0)[:, None], 2, 1)
    Y[-1, 1] = -1.0
    assert copy_groups(FeatureSource(Y, chunk_rows=3), np.zeros(2), np.ones(2)) == []
    Y[-1, 1] = Y[-1, 0]
    assert [g.tolist() for g in copy_groups(FeatureSource(Y, chunk_rows=3), np.zeros(2),
                                            np.ones(2))] == [[0, 1]]
    with pytest.raises(ValueError, match=r"^copy_groups: mean \(3,\) and std \(2,\)"):
        copy_groups(FeatureSource(Y), np.zeros(3), np.ones(2))


def test_no_candidates_no_pass_over_the_data():
    """Without candidates only the first rows are read: here every column's first rows are
    the same (a ReLU's zeros), their statistics are not; with copies, one pass more."""
    reads = []

    class Counted(FeatureSource):
        def chunks(self, chunk_rows=None):
            for s, block in super().chunks(chunk_rows):
                reads.append(block.shape[0])
                yield s, block

    X = np.random.default_rng(1).standard_normal((30, 5))
    X[:10] = 0.0
    assert copy_groups(Counted(X), *column_stats(FeatureSource(X))) == []
    assert reads == [8]
    X[:, 4] = X[:, 0]
    reads.clear()
    assert [g.tolist() for g in copy_groups(Counted(X), *column_stats(FeatureSource(X)))] == \
        [[0, 4]]
    assert reads == [8, 30]
    # statistics beyond the rounding of copies' sums keep columns apart (no pass)
    mean, std = column_stats(FeatureSource(X))
    reads.clear()
    assert copy_groups(Counted(X), mean + np.eye(5)[4] * 1e-8 * std[4], std) == []
    assert reads == [8]
    reads.clear()
    assert copy_groups(Counted(X), mean, std * (1 + np.eye(5)[4] * 1e-8)) == []
    assert reads == [8]
    # ... and within STATS_RTOL of the spread they are candidates, at any scale
    big = np.full(5, 1e6)
    assert [g.tolist() for g in copy_groups(Counted(X), np.eye(5)[4] * 1e-7, big)] == [[0, 4]]
    assert [g.tolist() for g in copy_groups(Counted(X), mean, big + np.eye(5)[4] * 1e-7)] == \
        [[0, 4]]
    # constant columns (a ReLU's dead units) are no candidates, however many share a value
    Z = np.zeros((30, 6))
    Z[:, 5] = np.arange(30.0)
    Z[:, 3] = 2.0
    reads.clear()
    assert copy_groups(Counted(Z), *column_stats(FeatureSource(Z))) == []
    assert reads == [8]
    # the key is every one of the first rows: columns that agree in the first only are not
    Y = np.zeros((30, 2))
    Y[1:, 0] = np.arange(1.0, 30.0)
    Y[1:, 1] = np.arange(1.0, 30.0)[::-1]
    reads.clear()
    assert copy_groups(Counted(Y), np.zeros(2), np.ones(2)) == []
    assert reads == [8]


def test_constant_columns_are_those_column_stats_marks():
    """Copies that repeat their first value over whole chunks, or start with eight equal
    values, are no constant columns (column_stats gives them a spread of their own); a
    one-row matrix has only constant ones."""
    X = np.ones((12, 3))  # rows 4-11 equal to row 0: the last two chunks alone look constant
    X[:4, 0] = X[:4, 1] = [1.0, 2.0, 3.0, 4.0]
    X[:, 2] = 7.0
    src = FeatureSource(X, chunk_rows=4)
    assert [g.tolist() for g in copy_groups(src, *column_stats(src))] == [[0, 1]]
    X[:8, :2], X[8:, :2] = 0.0, 5.0  # eight equal values first, another after them
    src = FeatureSource(X, chunk_rows=4)
    assert [g.tolist() for g in copy_groups(src, *column_stats(src))] == [[0, 1]]
    one = FeatureSource(np.array([[1.0, 1.0, 2.0]]))
    assert copy_groups(one, np.array([1.0, 1.0, 2.0]), np.ones(3)) == []


def test_equal_split_evens_the_weights_inside_the_working_set_only():
    rng = np.random.default_rng(2)
    X, groups = _with_copies()
    W = rng.standard_normal((3, 12))
    within = np.array([0, 1, 4, 5, 9, 10])  # 11 (a copy of 1) outside: stays as it is
    W[:, 11] = 0.0
    before = W.copy()
    assert equal_split(W, groups, within) == 2
    np.testing.assert_allclose(W[:, 1], (before[:, 1] + before[:, 9]) / 2, rtol=1e-15)
    np.testing.assert_array_equal(W[:, 9], W[:, 1])
    np.testing.assert_array_equal(W[:, 4], W[:, 10])
    np.testing.assert_array_equal(W[:, 11], 0.0)
    rest = np.setdiff1d(np.arange(12), [1, 4, 9, 10])
    np.testing.assert_array_equal(W[:, rest], before[:, rest])
    # the logits keep (X's copies have the same values), the penalty can only drop
    np.testing.assert_allclose(X @ W.T, X @ before.T, rtol=1e-12, atol=1e-12)
    for pen in (ElasticNet(0.99), make_penalty(0.99, True)):
        assert pen.value(W, 0.1) <= pen.value(before, 0.1)
    assert equal_split(W, groups, within) == 0  # already even
    assert equal_split(W, [], within) == 0
    one = W.copy()
    assert equal_split(one, groups, np.array([1, 4])) == 0  # a single member inside: nothing
    np.testing.assert_array_equal(one, W)
    # an even group is left bit for bit (its mean, (0.1 + 0.1 + 0.1) / 3, is not 0.1) while
    # an uneven one beside it is evened
    mixed = rng.standard_normal((3, 12))
    mixed[:, [1, 9, 11]] = 0.1
    kept = mixed.copy()
    assert equal_split(mixed, groups, np.arange(12)) == 1
    np.testing.assert_array_equal(mixed[:, [1, 9, 11]], kept[:, [1, 9, 11]])
    np.testing.assert_array_equal(mixed[:, 4], (kept[:, 4] + kept[:, 10]) / 2)
    # a group with no member inside does not stop the next one
    later = rng.standard_normal((3, 12))
    assert equal_split(later, groups, np.array([4, 10])) == 1
    np.testing.assert_array_equal(later[:, 4], later[:, 10])


def _path_problem(seed=5):
    rng = np.random.default_rng(seed)
    n, d, C = 300, 30, 4
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(X[:, :6] @ rng.standard_normal((6, C)) + 0.5 * rng.standard_normal((n, C)), 1)
    copies = list(range(8))
    X = np.concatenate([X, X[:, copies], X[:, :2]], 1)  # pairs, and triples for columns 0-1
    groups = [[j, d + j] + ([d + 8 + j] if j < 2 else []) for j in copies]
    return X, y, groups


@pytest.mark.parametrize("kw", [{}, {"solver": "newton"}, {"grouped": True}])
def test_a_path_splits_each_copy_group_equally_at_its_optimum(kw, monkeypatch):
    """Every point: the copies' weights equal (Newton's coordinate descent alone splits them
    unequally), the KKT conditions verified, the objective that of the same path without
    the split (both within their tolerance of one optimum)."""
    X, y, groups = _path_problem()
    lams_kw = dict(n_lambdas=8, eps=1e-2, progress=False, **kw)
    p = fit_path(X, y, **lams_kw)
    assert p.info["copied_columns"] == 10
    for W in p.weights:
        for g in groups:
            np.testing.assert_array_equal(W[:, g], np.repeat(W[:, g[:1]], len(g), 1))
    assert np.any([np.any(W[:, [g[0] for g in groups]] != 0) for W in p.weights])
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    monkeypatch.setattr(fit_module, "copy_groups", lambda *a: [])
    q = fit_path(X, y, **lams_kw)
    assert q.info["copied_columns"] == 0
    np.testing.assert_allclose(p.objective, q.objective, rtol=1e-6)
    if kw.get("solver") == "newton":  # without the split, Newton left some copies uneven
        assert any(not np.array_equal(W[:, g[0]], W[:, g[1]]) for W in q.weights for g in groups)


def test_a_streamed_low_memory_path_splits_copies_read_from_a_file(tmp_path):
    """The copies of a ``.npy`` file fitted out of core (row chunks, a column cache smaller
    than the working set): found from the file, split at every point, the path verified and
    at the objectives of the in-memory path."""
    X, y, groups = _path_problem(seed=8)
    f = tmp_path / "x.npy"
    np.save(f, X)
    kw = dict(n_lambdas=6, eps=1e-2, progress=False)
    p = fit_path(str(f), y, low_memory=True, cache_bytes=4096, chunk_rows=70, threads=1, **kw)
    assert p.info["low_memory"] and p.info["copied_columns"] == 10
    for W in p.weights:
        for g in groups:
            np.testing.assert_array_equal(W[:, g], np.repeat(W[:, g[:1]], len(g), 1))
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    np.testing.assert_allclose(p.objective, fit_path(X, y, **kw).objective, rtol=1e-6)
