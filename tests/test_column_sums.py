"""A fit's statistics' pass (sparse_probe/fit_common.py: column_sums and its compiled kernel):
column means, spreads and class sums against numpy's float64 sums on data made here, in
every input kind, the torch route as the reference of the kernel, non-finite entries named."""

import logging

import numpy as np
import pytest
import torch

from sparse_probe import fit_common
from sparse_probe.data import FeatureSource


def _data(n=1000, d=7, C=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.01, 20, d) + rng.uniform(-50, 50, d)
    X[:, 1] += 1e4  # a mean large against the spread: the shifted sums' case
    X[:, 3] = -2.5  # constant: spread 1 by convention
    y = rng.integers(0, C, n)
    return X, y


def _numpy_reference(X64, y, C):
    mean, std = X64.mean(0), X64.std(0)
    std[3] = 1.0
    return mean, std, np.stack([X64[y == k].sum(0) for k in range(C)])


@pytest.fixture
def small_blocks(monkeypatch):
    """Row blocks of 8 KiB (a few dozen rows): many blocks and chunks in a small test."""
    monkeypatch.setattr(fit_common, "_STATS_BYTES", 8 * 1024)


def _kinds(X, tmp_path):
    X32 = X.astype(np.float32)
    np.save(tmp_path / "X16.npy", X.astype(np.float16))
    np.save(tmp_path / "X32.npy", X32)
    yield "float32 array", X32, X32.astype(np.float64)
    yield "float64 array", X, X
    yield "float32 tensor", torch.from_numpy(X32), X32.astype(np.float64)
    yield "float64 tensor", torch.from_numpy(X), X
    yield "float16 file", str(tmp_path / "X16.npy"), \
        np.load(tmp_path / "X16.npy").astype(np.float64)
    yield "float32 memmap", np.load(tmp_path / "X32.npy", mmap_mode="r"), X32.astype(np.float64)


def test_the_pass_matches_numpy_and_the_torch_route_on_every_input_kind(tmp_path, small_blocks):
    X, y = _data()
    assert fit_common._kernel() is not None, "the compiled kernel is built here"
    for kind, data, X64 in _kinds(X, tmp_path):
        src = FeatureSource(data, chunk_rows=300, name="X")
        polls = []
        got = fit_common.column_sums(src, y, 5, poll=lambda p=polls: p.append(1))
        ref = _numpy_reference(X64, y, 5)
        torch_route = (*fit_common.column_stats(src), fit_common.class_sums(src, y, 5))
        for g, r, t, what in zip(got, ref, torch_route, ("mean", "std", "sums"), strict=True):
            assert g.dtype == np.float64 and g.shape == r.shape, (kind, what)
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-9, err_msg=f"{kind} {what}")
            np.testing.assert_allclose(g, t, rtol=1e-13, atol=1e-10, err_msg=f"{kind} {what}")
        assert got[1][3] == 1.0 and got[1][1] != 1.0
        # one poll per row block: 8 KiB of float64 rows of 7 entries = 146 rows; chunks of 300
        per_chunk = -(-300 // 146)
        assert len(polls) == 3 * per_chunk + -(-100 // 146), kind


def test_without_the_kernel_the_torch_route_gives_the_same(monkeypatch, small_blocks):
    X, y = _data(seed=1)
    src = FeatureSource(X.astype(np.float32), chunk_rows=250)
    with_kernel = fit_common.column_sums(src, y, 5)
    monkeypatch.setitem(fit_common._STATE, "sums", None)  # not built / failed its check
    polls = []
    without = fit_common.column_sums(src, y, 5, poll=lambda: polls.append(1))
    for a, b in zip(with_kernel, without, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-10)
    assert len(polls) == 4 * -(-250 // 146)  # column_stats' row blocks
    # not on CPU: the torch route, whatever the kernel (a meta device stands in for a GPU)
    monkeypatch.setitem(fit_common._STATE, "sums", lambda *a: pytest.fail("kernel off CPU"))
    called = []
    monkeypatch.setattr(fit_common, "column_stats",
                        lambda src, device, poll: called.append(str(device)) or (1, 2))
    monkeypatch.setattr(fit_common, "class_sums", lambda src, y, C, device: 3)
    assert fit_common.column_sums(src, y, 5, device="meta") == (1, 2, 3)
    assert called == ["meta"]


@pytest.mark.parametrize("route", ["kernel", "torch"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_is_named_by_its_row_and_column(tmp_path, small_blocks, monkeypatch,
                                                           value, route):
    if route == "torch":
        monkeypatch.setitem(fit_common._STATE, "sums", None)
    X, y = _data(n=600, seed=2)
    X[437, 4] = value
    X[437, 6] = value  # the first in row order is named
    X[512, 0] = value
    for _kind, data, _ in _kinds(X, tmp_path):
        src = FeatureSource(data, chunk_rows=200, name="feats")
        with pytest.raises(ValueError, match=r"^feats: non-finite value \(NaN or inf\) at "
                                             r"row 437, column 4$"):
            fit_common.column_sums(src, y, 5)


def test_the_kernel_checks_its_arguments():
    from sparse_probe.solvers._column_sums import sums

    X = np.ones((4, 3), dtype=np.float32)
    s, q, S = np.zeros(3), np.zeros(3), np.zeros((2, 3))
    shift = np.zeros(3)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    assert sums(X, 3, shift, s, q, y, S, 2) == -1
    np.testing.assert_array_equal(S, [[2, 2, 2], [2, 2, 2]])
    np.testing.assert_array_equal(s, [4, 4, 4])
    for args, match in [
        ((X.astype(np.int32), 3, shift, s, q), "float32 or float64"),
        ((X, 5, *np.zeros((3, 5))), "rows of 5 entries"),  # 12 entries: not rows of 5
        ((X[:, :2], 2, shift[:2], s[:2], q[:2]), "C-contiguous"),  # a strided view
        ((X, 3, shift[:2], s, q), "shift"),
        ((X, 3, shift, s, q, y[:3], S, 2), "y"),
        ((X, 3, shift, s, q, y, S, 3), "S"),
        ((X, 3, shift, s, q, y, None, 2), "together"),
        ((X, 3, shift, s, q, np.array([0, 1, 2, 0]), S, 2), r"y\[2\] = 2 is not in \[0, 2\)"),
        ((X, 3, shift, s, q, np.array([0, -1, 1, 0]), S, 2), r"y\[1\] = -1"),
        ((X, 0, shift, s, q), "d >= 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            sums(*args)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        sums(X, 3, shift, ro, q)
    for args, name in [((None, s, q), "shift"), ((shift, None, q), "s"), ((shift, s, None), "q")]:
        with pytest.raises(ValueError, match=f"{name} must be"):
            sums(X, 3, *args)
    with pytest.raises(ValueError, match=r"y\[0\] = 5"):
        sums(X, 3, shift, s, q, np.array([5, 0, 0, 0]), S, 2)
    with pytest.raises(ValueError, match="S must be"):  # labels without C: no classes
        sums(X, 3, shift, s, q, np.zeros(4, dtype=np.int64), np.zeros((1, 3)))
    # read-only inputs are read (a memmap's shift row, the caller's labels)
    ro_shift, ro_y = np.zeros(3), y.copy()
    ro_shift.flags.writeable = ro_y.flags.writeable = False
    s2, q2, S2 = np.zeros(3), np.zeros(3), np.zeros((2, 3))
    assert sums(X, 3, ro_shift, s2, q2, ro_y, S2, 2) == -1
    np.testing.assert_array_equal(S2, [[2, 2, 2], [2, 2, 2]])


@pytest.mark.parametrize("route", ["kernel", "torch"])
def test_finite_rows_whose_sums_overflow_are_not_called_non_finite(monkeypatch, route):
    """Values near float64's largest: the shifted sums overflow, but no entry is NaN or
    infinite, so nothing is named (the statistics are then not finite, as numpy's would
    be)."""
    if route == "torch":
        monkeypatch.setitem(fit_common._STATE, "sums", None)
    X = np.array([[1.7e308, 1.0], [-1.7e308, 2.0], [1.0, 3.0]])
    with np.errstate(invalid="ignore", over="ignore"):
        mean, std, _ = fit_common.column_sums(FeatureSource(X), np.array([0, 1, 0]), 2)
    assert not np.isfinite(std[0]) and mean[1] == 2.0


def test_a_kernel_that_disagrees_is_left_out(monkeypatch, caplog):
    from sparse_probe.solvers._column_sums import sums

    def unshifted(X, d, shift, s, q, y=None, S=None, C=0):  # sums without the shift
        return sums(X, d, np.zeros(d), s, q, y, S, C)

    def no_class_sums(X, d, shift, s, q, y=None, S=None, C=0):
        return sums(X, d, shift, s, q)

    def finds_nothing(X, d, shift, s, q, y=None, S=None, C=0):
        sums(X, d, shift, s, q, y, S, C)
        return -1

    def reports_a_bad_entry(X, d, shift, s, q, y=None, S=None, C=0):  # on finite rows too
        sums(X, d, shift, s, q, y, S, C)
        return 0

    def off_by_a_hair(X, d, shift, s, q, y=None, S=None, C=0):  # 1e-10 on each shifted sum
        bad = sums(X, d, shift, s, q, y, S, C)
        s += 1e-10
        return bad

    def float32_rounded(X, d, shift, s, q, y=None, S=None, C=0):  # wrong on float32 rows only
        if X.dtype == np.float32:
            X = X.astype(np.float16).astype(np.float32)
        return sums(X, d, shift, s, q, y, S, C)

    assert fit_common._agrees(sums)
    for wrong in (unshifted, no_class_sums, finds_nothing, reports_a_bad_entry, off_by_a_hair,
                  float32_rounded):
        assert not fit_common._agrees(wrong), wrong.__name__
    monkeypatch.setattr(fit_common, "_STATE", {})
    monkeypatch.setattr(fit_common, "_agrees", lambda fn: False)
    with caplog.at_level(logging.WARNING, logger=fit_common.__name__):
        assert fit_common._kernel() is None
    assert caplog.messages == ["the compiled _column_sums.sums disagrees with torch's sums on a "
                               "self-check; using torch's sums"]
    assert fit_common._STATE == {"sums": None}  # decided once


@pytest.mark.parametrize("route", ["kernel", "torch"])
@pytest.mark.parametrize(("n", "d", "chunk", "blocks"), [
    (130, 100, 1000, 3),  # 8 KiB / 800 B = 10 rows: at least 64 rows a block, 130 rows in 3
    (584, 7, 292, 4),  # 8 KiB / 56 B = 146 rows: each 292-row chunk in 2 blocks
    (1024, 1, 5000, 1),  # 8 KiB / 8 B = 1,024 rows: one block
])
def test_one_poll_per_row_block_of_the_statistics_bytes(small_blocks, monkeypatch, route, n, d,
                                                         chunk, blocks):
    if route == "torch":
        monkeypatch.setitem(fit_common._STATE, "sums", None)
    X = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    polls = []
    fit_common.column_sums(FeatureSource(X, chunk_rows=chunk), np.arange(n) % 2, 2,
                           poll=lambda: polls.append(1))
    assert len(polls) == blocks


def test_the_kernel_runs_on_cpu_and_the_torch_route_without_it(monkeypatch):
    """A spy on each route: on CPU the kernel and not column_stats; with the kernel left out
    (its state None) column_stats and the class sums by ``index_add_``; int32 labels reach
    the kernel as int64."""
    X, y = _data(n=200, seed=4)
    src = FeatureSource(X.astype(np.float32))
    real = fit_common._kernel()
    calls = []
    monkeypatch.setitem(fit_common._STATE, "sums",
                        lambda *a: calls.append("kernel") or real(*a))
    real_stats = fit_common.column_stats
    monkeypatch.setattr(fit_common, "column_stats",
                        lambda *a, **k: calls.append("stats") or real_stats(*a, **k))
    got = fit_common.column_sums(src, y.astype(np.int32), 5)
    assert set(calls) == {"kernel"}
    np.testing.assert_allclose(got[2], _numpy_reference(X.astype(np.float32).astype(np.float64),
                                                        y, 5)[2], rtol=1e-12)
    calls.clear()
    monkeypatch.setitem(fit_common._STATE, "sums", None)
    fit_common.column_sums(src, y, 5)
    assert calls == ["stats"]


def test_class_sums_add_rows_by_index_on_cpu_and_by_a_product_elsewhere(monkeypatch):
    """On CPU row by row (``index_add_``); on another device (a meta device stands in for a
    GPU, whose ``index_add_`` adds in no fixed order) as the one-hot product."""
    used = []
    for name in ("index_add_", "addmm_"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _r=real, **k:
                            used.append(_n) or _r(self, *a, **k))
    X, y = _data(n=50, seed=5)
    src = FeatureSource(X)
    fit_common.class_sums(src, y, 5)
    assert used == ["index_add_"]
    used.clear()
    with pytest.raises(NotImplementedError, match="meta tensor; no data"):  # none to bring back
        fit_common.class_sums(src, y, 5, device="meta")
    assert used == ["addmm_"]


def test_a_non_finite_first_entry_and_row_blocks_of_a_whole_chunk():
    X, y = _data(n=40, seed=6)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"at row 0, column 0$"):
        fit_common.column_sums(FeatureSource(X, name="X"), y, 5)
    chunk = np.zeros((5, 2))
    assert [(r, b.shape) for r, b in fit_common._row_blocks(chunk, None)] == [(0, (5, 2))]
    assert [(r, b.shape) for r, b in fit_common._row_blocks(chunk, 2)] == \
        [(0, (2, 2)), (2, (2, 2)), (4, (1, 2))]


def test_a_float16_tensor_and_a_near_constant_column(tmp_path):
    """A float16 tensor's rows go to the kernel as float32 (exactly); a column whose spread
    is within 1e-12 of its magnitude counts as constant (spread 1), one just above keeps its
    spread, and below magnitude 1 the bound is 1e-12 itself."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((64, 3))
    X16 = torch.from_numpy(X.astype(np.float16))
    got = fit_common.column_sums(FeatureSource(X16), np.arange(64) % 2, 2)
    np.testing.assert_allclose(got[0], X.astype(np.float16).astype(np.float64).mean(0),
                               rtol=1e-12)
    signs = np.where(np.arange(64) % 2, 1.0, -1.0)
    Z = np.stack([1e6 + 0.9e-6 * signs,  # spread 0.9e-6 <= 1e-12 * 1e6: constant
                  1e6 + 1.1e-6 * signs,  # 1.1e-6 > 1e-6: kept
                  1.5e-12 * signs,  # magnitude under 1: bound 1e-12, kept
                  0.9e-12 * signs], axis=1)  # constant
    _, std, _ = fit_common.column_sums(FeatureSource(Z), np.arange(64) % 2, 2)
    assert std[0] == 1.0 and std[3] == 1.0
    np.testing.assert_allclose(std[1:3], [1.1e-6, 1.5e-12], rtol=1e-3)


def test_the_lambda_grid_and_its_bounds():
    lams = fit_common.lambda_path(2.0)
    assert lams.size == 100 and lams[0] == 2.0 and lams[-1] == pytest.approx(2e-3, rel=1e-12)
    np.testing.assert_allclose(fit_common.lambda_path(1.0, 3, 0.01), [1.0, 0.1, 0.01])
    assert fit_common.lambda_path(5.0, 1, 0.5).tolist() == [5.0]
    assert fit_common.lambda_path(1.0, 2, 0.999)[-1] == pytest.approx(0.999)
    for n_lambdas in (0, -1):
        with pytest.raises(ValueError, match=r"^n_lambdas must be >= 1$"):
            fit_common.lambda_path(1.0, n_lambdas)
    for eps in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^eps must be in \(0, 1\)$"):
            fit_common.lambda_path(1.0, 5, eps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_torch_route_gives_the_cpu_results():
    X, y = _data(seed=9)
    src = FeatureSource(X.astype(np.float32), chunk_rows=300)
    on_gpu = fit_common.column_sums(src, y, 5, device="cuda")
    for a, b in zip(on_gpu, fit_common.column_sums(src, y, 5), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
