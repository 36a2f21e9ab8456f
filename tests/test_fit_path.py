"""Path properties: KKT at every point, λ_max, input kinds, chunking, and bad input."""

import numpy as np
import pytest
import torch
from helpers_kkt import kkt_ratios

from sparse_probe import fit_path
from sparse_probe.synthetic import make_sparse_classification


@pytest.fixture(scope="module")
def xy():
    X, y, support = make_sparse_classification(700, 40, 4, informative_per_class=2, seed=1)
    X = X * np.linspace(0.5, 3.0, 40, dtype=np.float32) + 2.0  # unstandardized on purpose
    return X, y, support


@pytest.fixture(scope="module")
def path(xy):
    X, y, _ = xy
    return fit_path(X, y, n_lambdas=12, eps=1e-2, progress=False)


@pytest.mark.slow
def test_kkt_holds_at_every_point(xy, path):
    X, y, _ = xy
    tols = np.asarray(path.info["tol_per_point"])
    assert np.all(path.kkt_violation <= tols)
    assert kkt_ratios(X, y, path).max() <= 1.0  # re-checked independently in float64


@pytest.mark.slow
def test_lambda_max_gives_zero_and_next_does_not(path):
    assert path.nnz[0] == 0
    assert path.nnz[1] > 0
    assert path.lambdas[-1] == pytest.approx(1e-2 * path.lambdas[0])
    assert np.all(np.diff(path.lambdas) < 0)


def test_lambda_max_is_tight(xy, path):
    """Slightly below λ_max a feature enters: λ_max is the smallest λ with W = 0."""
    X, y, _ = xy
    lam = path.lambdas[0]
    p = fit_path(X, y, lambdas=[lam, lam * (1 - 1e-3)], progress=False)
    assert p.nnz[0] == 0 and p.nnz[1] > 0


def test_a_lambda_within_rounding_of_lambda_max_is_the_closed_form(xy, path):
    """λ_max's float64 value depends on the summation order: a λ a relative 1e-13 below the
    fit's own (a caller's λ_max computed another way) gets the closed form, as λ_max does; one
    at 1e-11 below is solved (it may admit a weight of the order of the gap)."""
    X, y, _ = xy
    lam = path.lambdas[0]
    near = fit_path(X, y, lambdas=[lam * (1 - 1e-13), lam * 0.9], progress=False)
    assert near.info["method_per_point"][0] == "closed-form" and near.nnz[0] == 0
    below = fit_path(X, y, lambdas=[lam * (1 - 1e-11), lam * 0.9], progress=False)
    assert below.info["method_per_point"][0] != "closed-form"
    assert below.objective[0] == pytest.approx(near.objective[0], rel=1e-9)


def test_recovers_planted_support(xy, path):
    _, _, support = xy
    i = int(np.argmax(path.nnz >= 8))
    W = path.weights[i]
    for k in range(4):
        top = set(np.argsort(-W[k])[:2])
        assert top == set(support[k])


@pytest.mark.slow
def test_chunk_size_not_dividing_n_gives_same_path(xy, path):
    X, y, _ = xy
    p2 = fit_path(X, y, n_lambdas=12, eps=1e-2, chunk_rows=97, progress=False)
    np.testing.assert_allclose(p2.objective, path.objective, rtol=1e-7)
    _same_weights(p2, path)


def _same_weights(p, q, atol=1e-3):
    """Equal up to solver tolerance.

    The softmax is invariant to adding one vector to every class row, so at small λ (where
    the penalty barely pins that direction down) weights are compared after centering over
    classes; the objective comparison above is the strict check.
    """
    for a, b in zip(p.weights, q.weights, strict=True):
        np.testing.assert_allclose(a - a.mean(0), b - b.mean(0), atol=atol)


@pytest.mark.slow
def test_float64_and_tensor_inputs_agree(xy, path):
    X, y, _ = xy
    p64 = fit_path(X.astype(np.float64), y, n_lambdas=12, eps=1e-2, progress=False)
    pt = fit_path(torch.from_numpy(X), torch.from_numpy(y), n_lambdas=12, eps=1e-2, progress=False)
    np.testing.assert_allclose(p64.objective, path.objective, rtol=1e-6)
    np.testing.assert_allclose(pt.objective, path.objective, rtol=1e-7)


@pytest.mark.slow
def test_memmap_equals_in_memory(tmp_path, xy, path):
    X, y, _ = xy
    f = tmp_path / "train.npy"
    np.save(f, X)
    p_file = fit_path(str(f), y, n_lambdas=12, eps=1e-2, chunk_rows=128, progress=False)
    p_mm = fit_path(np.load(f, mmap_mode="r"), y, n_lambdas=12, eps=1e-2, progress=False)
    for p in (p_file, p_mm):
        np.testing.assert_allclose(p.objective, path.objective, rtol=1e-7)
        _same_weights(p, path)


def test_validation_metrics_and_early_stop(xy):
    X, y, _ = xy
    p = fit_path(X[:500], y[:500], X_val=X[500:], y_val=y[500:], n_lambdas=30, eps=1e-3,
                 max_features_per_class=3, progress=False)
    assert np.all(np.isfinite(p.val_acc))
    assert p.features_per_class[-1] > 3 and np.all(p.features_per_class[:-1] <= 3)
    assert len(p) < 30


def test_time_budget_stops_after_a_point_and_keeps_the_same_points(xy):
    """``max_seconds``: the path ends after the first point past the budget (kept, so a zero
    budget returns λ_max's point alone), the points match a full run's, and the reason is in
    ``info["stopped"]``; without a budget, or one it never reaches, the whole path runs."""
    X, y, _ = xy
    full = fit_path(X, y, n_lambdas=8, eps=1e-2, threads=1, progress=False)
    assert len(full) == 8 and full.info["stopped"] is None
    cut = fit_path(X, y, n_lambdas=8, eps=1e-2, threads=1, max_seconds=0.0, progress=False)
    assert len(cut) == 1 and cut.info["stopped"] == "max_seconds"
    np.testing.assert_array_equal(cut.lambdas, full.lambdas[:1])
    np.testing.assert_array_equal(cut.weights[0], full.weights[0])
    long = fit_path(X, y, n_lambdas=8, eps=1e-2, threads=1, max_seconds=1e6, progress=False)
    assert len(long) == 8 and long.info["stopped"] is None
    np.testing.assert_allclose(long.objective, full.objective, rtol=1e-12)
    capped = fit_path(X[:500], y[:500], n_lambdas=30, eps=1e-3, max_features_per_class=3,
                      progress=False)
    assert capped.info["stopped"] == "max_features_per_class"
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="max_seconds"):
            fit_path(X, y, max_seconds=bad, progress=False)
    with pytest.raises(ValueError, match="max_seconds: not supported by the glmnet"):
        fit_path(X, y, solver="glmnet", max_seconds=5.0, progress=False)


def test_save_load_roundtrip(tmp_path, path):
    from sparse_probe import Path

    path.save(tmp_path / "path.npz")
    q = Path.load(tmp_path / "path.npz")
    np.testing.assert_array_equal(q.lambdas, path.lambdas)
    for a, b in zip(q.weights, path.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(q.nnz_per_class, path.nnz_per_class)
    assert q.info["tol_abs"] == path.info["tol_abs"]


@pytest.mark.parametrize("bad,match", [
    ("nan", r"X: non-finite value .* row 3, column 5"),
    ("inf", r"X: non-finite value .* row 3, column 5"),
    ("label", r"y: labels out of range: found 0\.\.7, expected \[0, 4\)"),
    ("shape", r"y: expected shape \(700,\)"),
    ("val", r"X_val: has 39 features, X has 40"),
])
def test_bad_input_gives_clear_error(xy, bad, match):
    X, y, _ = xy
    X, y = X.copy(), y.copy()
    kw = {}
    if bad == "nan":
        X[3, 5] = np.nan
    elif bad == "inf":
        X[3, 5] = np.inf
    elif bad == "label":
        y[0] = 7
        kw["n_classes"] = 4
    elif bad == "shape":
        y = y[:-1]
    elif bad == "val":
        kw = {"X_val": X[:10, :39], "y_val": y[:10]}
    with pytest.raises(ValueError, match=match):
        fit_path(X, y, n_lambdas=3, progress=False, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("cache_bytes", [2**30, 1024])
def test_low_memory_modes_equal_default(tmp_path, xy, path, cache_bytes):
    """Blocked evaluation from a column cache, and pure streaming from disk (cache too small)."""
    X, y, _ = xy
    f = tmp_path / "train.npy"
    np.save(f, X)
    p = fit_path(str(f), y, n_lambdas=12, eps=1e-2, chunk_rows=150, low_memory=True,
                 cache_bytes=cache_bytes, progress=False)
    assert p.info["low_memory"]
    np.testing.assert_allclose(p.objective, path.objective, rtol=1e-7)
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    _same_weights(p, path)


def test_cache_limit_without_low_memory_is_a_clear_error(xy):
    X, y, _ = xy
    with pytest.raises(MemoryError, match="low_memory=True"):
        fit_path(X, y, n_lambdas=5, cache_bytes=1024, low_memory=False, progress=False)


READ_ONLY_FIT = """
import sys, numpy as np
from sparse_probe import SparseProbe, fit_path
d = sys.argv[1]
Xm, ym = np.load(d + "/X.npy", mmap_mode="r"), np.load(d + "/y.npy", mmap_mode="r")
assert not Xm.flags.writeable and not ym.flags.writeable
# tol 1e-7: the path ends in exact mode, whose float64 columns come from the raw rows
p = fit_path(Xm, ym, n_lambdas=8, eps=1e-3, tol=1e-7, X_val=Xm, y_val=ym, progress=False)
q = fit_path(np.array(Xm), np.array(ym), n_lambdas=8, eps=1e-3, tol=1e-7, progress=False)
assert np.array_equal(p.objective, q.objective), (p.objective, q.objective)
Xr = np.load(d + "/X.npy")  # read-only in memory (np.ascontiguousarray of a memmap is one)
Xr.setflags(write=False)
r = fit_path(Xr, ym, n_lambdas=8, eps=1e-3, tol=1e-7, progress=False)
assert np.array_equal(r.objective, q.objective), (r.objective, q.objective)
est = SparseProbe(n_lambdas=8, eps=1e-3).fit(Xm, ym)
assert est.predict(Xm).shape == ym.shape
# a float16 file (converted by torch, block by block) and a read-only memmap view of part
# of a file (streamed through the view): the same data as float32 arrays, the same path
h = fit_path(np.load(d + "/X16.npy", mmap_mode="r"), ym, n_lambdas=8, eps=1e-3, tol=1e-7,
             progress=False)
h32 = fit_path(np.load(d + "/X16.npy").astype(np.float32), ym, n_lambdas=8, eps=1e-3,
               tol=1e-7, progress=False)
assert np.array_equal(h.objective, h32.objective), (h.objective, h32.objective)
v = fit_path(Xm[:300], ym[:300], n_lambdas=8, eps=1e-3, progress=False)
w = fit_path(np.array(Xm[:300]), np.array(ym[:300]), n_lambdas=8, eps=1e-3, progress=False)
assert np.array_equal(v.objective, w.objective), (v.objective, w.objective)
"""


def test_read_only_inputs_fit_without_torch_warnings(tmp_path):
    """Read-only memmaps (``np.load(..., mmap_mode="r")``, the usual way to pass big features)
    reach torch only through copies: torch warns once per process on a non-writable array,
    so this runs in its own interpreter with that warning made an error."""
    import subprocess
    import sys

    X, y, _ = make_sparse_classification(400, 12, 3, informative_per_class=2, seed=5)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "X16.npy", X.astype(np.float16))
    np.save(tmp_path / "y.npy", y)
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", READ_ONLY_FIT,
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_block_tensor_converts_in_torch_and_never_aliases_read_only_rows(dtype):
    """``block_tensor``: the values of numpy's conversion; a read-only block (a memmap) is
    never shared with the result, which may then be written; a writable block of the same
    dtype is used as it is (no copy)."""
    import warnings

    from sparse_probe.data import block_tensor

    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((7, 5)) * 100).astype(dtype)
    for target, np_target in ((torch.float32, np.float32), (torch.float64, np.float64)):
        ro = arr.copy()
        ro.setflags(write=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            t = block_tensor(ro, "cpu", target)
        assert t.dtype == target
        np.testing.assert_array_equal(t.numpy(), arr.astype(np_target))
        assert not np.shares_memory(t.numpy(), ro)
        t.add_(1.0)  # writable, and the block is unchanged
        np.testing.assert_array_equal(ro, arr)
    rw = arr.copy()
    same = block_tensor(rw, "cpu", torch.float64 if dtype == np.float64 else torch.float32)
    assert np.shares_memory(same.numpy(), rw) == (dtype in (np.float32, np.float64))
    strided = block_tensor(arr[:, ::2], "cpu", torch.float32)
    np.testing.assert_array_equal(strided.numpy(), arr[:, ::2].astype(np.float32))
    # to another device (here torch's "meta", which holds no data): moved, then converted
    ro = arr.copy()
    ro.setflags(write=False)
    far = block_tensor(ro, "meta", torch.float64)
    assert far.device.type == "meta" and far.dtype == torch.float64 and far.shape == arr.shape


def test_column_stats_and_class_sums_match_numpy_on_a_float16_file(tmp_path):
    from sparse_probe.data import FeatureSource
    from sparse_probe.fit_common import class_sums as _class_sums
    from sparse_probe.fit_common import column_stats, column_sums

    rng = np.random.default_rng(3)
    X = (rng.standard_normal((1000, 6)) * [1, 10, 0.1, 5, 2, 3] + [0, 50, -3, 1e3, 0, 7])
    np.save(tmp_path / "X.npy", X.astype(np.float16))
    y = rng.integers(0, 4, 1000)
    X64 = np.load(tmp_path / "X.npy").astype(np.float64)
    src = FeatureSource(str(tmp_path / "X.npy"), chunk_rows=128)
    mean, std = column_stats(src)
    np.testing.assert_allclose(mean, X64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, X64.std(0), rtol=1e-10)
    ref = np.stack([X64[y == k].sum(0) for k in range(4)])
    np.testing.assert_allclose(_class_sums(src, y, 4), ref, rtol=1e-12)
    np.testing.assert_allclose(_class_sums(src, y, 4, onehot=True), ref, rtol=1e-12)
    for got, want in zip(column_sums(src, y, 4), (X64.mean(0), X64.std(0), ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_column_stats_over_row_blocks_and_the_bad_rows_place(monkeypatch):
    """column_stats sums row blocks of each chunk on CPU: the statistics are numpy's and a
    NaN past the first blocks (and chunks) is reported at its row in the whole X."""
    import sparse_probe.fit_common as fc
    from sparse_probe.data import FeatureSource

    monkeypatch.setattr(fc, "_STATS_BYTES", 8 * 7 * 50)  # 50 rows of 7 columns per block
    rng = np.random.default_rng(11)
    X = rng.standard_normal((1234, 7)) * [1, 3, 0.5, 2, 9, 1, 4] + [1e3, 0, -5, 2, 40, 0, 7]
    mean, std = fc.column_stats(FeatureSource(X.astype(np.float32), chunk_rows=300))
    X32 = X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mean, X32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, X32.std(0), rtol=1e-9)
    bad = X.copy()
    bad[1000, 4] = np.inf  # chunk 4 (rows 900-1199), its third block of 50
    with pytest.raises(ValueError, match=r"non-finite value .* row 1000, column 4"):
        fc.column_stats(FeatureSource(bad, chunk_rows=300))


def test_resident_copy_runs_the_same_path_and_the_default_rule(tmp_path):
    """``resident``: X copied to the device once, in its own dtype, gives the streamed fit's
    path; by default only on CUDA and only when X fits RESIDENT_SHARE of the free memory."""
    from sparse_probe.data import FeatureSource
    from sparse_probe.fit import RESIDENT_SHARE, _keep_resident

    X, y, _ = make_sparse_classification(600, 10, 3, informative_per_class=2, seed=8)
    f = tmp_path / "X16.npy"
    np.save(f, X.astype(np.float16))
    src = FeatureSource(str(f))
    copy = src.to_device("cpu")
    assert copy._tensor.dtype == torch.float16 and not copy.on_disk
    np.testing.assert_array_equal(copy._tensor.numpy(), np.load(f))
    streamed = fit_path(str(f), y, n_lambdas=6, eps=1e-2, low_memory=True, threads=1,
                        progress=False)
    kept = fit_path(str(f), y, n_lambdas=6, eps=1e-2, low_memory=True, resident=True,
                    threads=1, progress=False)
    assert kept.info["resident"] and not streamed.info["resident"]
    np.testing.assert_array_equal(kept.objective, streamed.objective)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not _keep_resident(src, cpu, None)  # host memory: never by default
    assert _keep_resident(src, cpu, True) and not _keep_resident(src, cuda, False)
    fits = int(np.ceil(src.nbytes / RESIDENT_SHARE))
    assert _keep_resident(src, cuda, None, free_bytes=fits)
    assert not _keep_resident(src, cuda, None, free_bytes=fits - 8)
    # already there: no second copy, whatever is asked
    assert not _keep_resident(copy, cpu, True) and not _keep_resident(copy, cpu, None)
