"""A path's weights in memory: exact float64 round trips, sparse where smaller, fresh copies."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_probe import fit_path
from sparse_probe.path import Path
from sparse_probe.path_weights import PathWeights


def _point(rng, C, d, k):
    """A (C, d) float64 point with exactly ``k`` nonzeros at random places, values that
    float32 would round."""
    W = np.zeros(C * d)
    W[rng.choice(C * d, k, replace=False)] = rng.normal(size=k) * 5 + 1e-9
    return W.reshape(C, d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_points_read_back_exactly_at_every_density(seed):
    rng = np.random.default_rng(seed)
    C, d = int(rng.integers(2, 9)), int(rng.integers(3, 40))
    pts = [_point(rng, C, d, k) for k in (0, 1, C * d // 3, 2 * C * d // 3, C * d)]
    w = PathWeights(pts)
    assert len(w) == len(pts)
    for a, b in zip(w, pts, strict=True):
        assert a.dtype == np.float64 and a.shape == (C, d)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w[-1], pts[-1])
    assert [x.tolist() for x in w[1:3]] == [x.tolist() for x in pts[1:3]]
    for i, W in enumerate(pts):
        r, c, v = w.nonzero(i)
        r0, c0 = np.nonzero(W)  # row-major, what path.npz has always held
        np.testing.assert_array_equal(r, r0)
        np.testing.assert_array_equal(c, c0)
        np.testing.assert_array_equal(v, W[r0, c0])


def test_storage_is_the_smaller_of_sparse_and_dense():
    # int32 index + float64 value = 12 bytes a nonzero against 8 a dense entry: sparse below
    # two thirds density. C·d = 30: 19 nonzeros are 228 bytes sparse, 20 would be 240 = dense
    rng = np.random.default_rng(5)
    for k, expect in ((0, 0), (1, 12), (19, 228), (20, 240), (30, 240)):
        w = PathWeights([_point(rng, 3, 10, k)])
        assert w.nbytes == expect, k


def test_reads_are_fresh_copies_and_appends_copy():
    W = np.zeros((2, 4))
    W[0, 1] = 3.0
    D = np.arange(8, dtype=np.float64).reshape(2, 4) + 1
    w = PathWeights([W, D])
    W[0, 1] = 7.0  # the caller's array moves on after the append
    D[:] = 0
    assert w[0][0, 1] == 3.0 and w[1][1, 3] == 8.0
    a = w[0]
    a[:] = 9.0
    b = w[1]
    b[:] = 9.0
    assert w[0][0, 1] == 3.0 and w[0].sum() == 3.0 and w[1][0, 0] == 1.0


def test_bad_points_are_refused():
    w = PathWeights([np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        w.append(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="must be \\(C, d\\)"):
        w.append(np.zeros(6))
    with pytest.raises(ValueError, match="outside a \\(2, 3\\) point"):
        w.append_coo(np.array([0]), np.array([3]), np.array([1.0]), (2, 3))
    with pytest.raises(ValueError, match="outside"):
        w.append_coo(np.array([2]), np.array([0]), np.array([1.0]), (2, 3))
    with pytest.raises(ValueError, match="one length"):
        w.append_coo(np.array([0, 1]), np.array([0]), np.array([1.0]), (2, 3))


def test_huge_points_stay_sparse_with_wide_indices():
    # 100,000 classes x 30,000 features: 3e9 entries, past 32-bit flat indices; never dense
    w = PathWeights()
    C, d = 100_000, 30_000
    rows = np.array([0, 71_582, 99_999])
    cols = np.array([5, 29_999, 29_999])
    w.append_coo(rows, cols, np.array([1.5, -2.0, 0.25]), (C, d))
    r, c, v = w.nonzero(0)
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)
    np.testing.assert_array_equal(v, [1.5, -2.0, 0.25])
    assert w.nbytes == 3 * 16


def test_fitted_path_is_compact_and_saves_as_before(tmp_path):
    rng = np.random.default_rng(11)
    n, d, C = 300, 40, 6
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, :3] @ rng.normal(size=(3, C))).argmax(1)
    p = fit_path(X, y, n_lambdas=8, eps=0.05, progress=False)
    assert isinstance(p.weights, PathWeights)
    dense = [np.asarray(W) for W in p.weights]
    assert p.weights.nbytes < sum(W.nbytes for W in dense)  # the path starts sparse
    for i, W in enumerate(dense):
        assert int((W != 0).sum()) == p.nnz[i]
    p.save(tmp_path / "path.npz")
    z = np.load(tmp_path / "path.npz")
    ptr = z["w_ptr"]
    for i, W in enumerate(dense):  # the file's layout: row-major nonzeros of each point
        r, c = np.nonzero(W)
        sl = slice(ptr[i], ptr[i + 1])
        np.testing.assert_array_equal(z["w_row"][sl], r)
        np.testing.assert_array_equal(z["w_col"][sl], c)
        np.testing.assert_array_equal(z["w_val"][sl], W[r, c])
    q = Path.load(tmp_path / "path.npz")
    assert isinstance(q.weights, PathWeights) and len(q.weights) == len(dense)
    for a, b in zip(q.weights, dense, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_file_with_nonzeros_outside_its_shape_names_itself(tmp_path):
    p = Path(lambdas=np.array([1.0]), alpha=0.99, grouped=False,
             weights=[np.array([[0.0, 2.0], [0.0, 0.0]])], intercepts=np.zeros((1, 2)),
             mean=np.zeros(2), scale=np.ones(2), nnz=np.array([1]),
             nnz_per_class=np.array([[1, 0]]), n_active=np.array([1]),
             train_acc=np.zeros(1), train_loss=np.zeros(1), val_acc=np.zeros(1),
             val_loss=np.zeros(1), objective=np.zeros(1), kkt_violation=np.zeros(1),
             n_iter=np.zeros(1), time=np.zeros(1))
    assert isinstance(p.weights, PathWeights)  # a list given to the constructor converts
    f = tmp_path / "path.npz"
    p.save(f)
    z = dict(np.load(f))
    z["w_col"] = np.array([2], np.int32)  # feature 2 of a 2-feature path
    np.savez(f, **z)
    with pytest.raises(ValueError, match=r"path\.npz: .*outside a \(2, 2\) point"):
        Path.load(f)
