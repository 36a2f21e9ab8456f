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


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_is_named_by_its_row_and_column(tmp_path, small_blocks, value):
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


def test_a_kernel_that_disagrees_is_left_out(monkeypatch, caplog):
    from sparse_probe.solvers._column_sums import sums

    def unshifted(X, d, shift, s, q, y=None, S=None, C=0):  # sums without the shift
        return sums(X, d, np.zeros(d), s, q, y, S, C)

    def no_class_sums(X, d, shift, s, q, y=None, S=None, C=0):
        return sums(X, d, shift, s, q)

    def finds_nothing(X, d, shift, s, q, y=None, S=None, C=0):
        sums(X, d, shift, s, q, y, S, C)
        return -1

    assert fit_common._agrees(sums)
    for wrong in (unshifted, no_class_sums, finds_nothing):
        assert not fit_common._agrees(wrong), wrong.__name__
    monkeypatch.setattr(fit_common, "_STATE", {})
    monkeypatch.setattr(fit_common, "_agrees", lambda fn: False)
    with caplog.at_level(logging.WARNING, logger=fit_common.__name__):
        assert fit_common._kernel() is None
    assert "disagrees with torch's sums" in caplog.text
