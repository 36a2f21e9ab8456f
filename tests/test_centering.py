"""Penalty-optimal centering: checked against scipy's scalar minimizer, and its premise (the loss
does not change) against a float64 evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_kkt import kkt_ratios
from scipy.optimize import minimize_scalar

from sparse_probe.objective import objective_f64
from sparse_probe.solvers.centering import _center_shift_torch, center_shift


def _penalty(w: np.ndarray, alpha: float, grouped: bool) -> float:
    l1 = np.sqrt((w * w).sum()) if grouped else np.abs(w).sum()
    return alpha * l1 + 0.5 * (1 - alpha) * (w * w).sum()


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.5, 0.05])
def test_shift_minimizes_each_column_penalty(alpha, grouped):
    rng = np.random.default_rng(3)
    C, m = 7, 40
    W = rng.standard_normal((C, m)) * (rng.random((C, m)) < 0.7)
    W[:, 0] = 0.0  # a zero column
    W[:, 1] = 2.5  # all classes equal: the best shift cancels it
    c = center_shift(torch.as_tensor(W), alpha, grouped).numpy()
    assert c[0] == 0.0
    for j in range(m):
        w = W[:, j]
        ref = minimize_scalar(lambda t, w=w: _penalty(w + t, alpha, grouped),
                              bounds=(-10, 10), method="bounded",
                              options={"xatol": 1e-12})
        ours = _penalty(w + c[j], alpha, grouped)
        # never worse than the scalar minimizer (tolerance: its bracketing accuracy)
        assert ours <= ref.fun + 1e-9, (j, ours, ref.fun)
        # and never worse than no shift at all
        assert ours <= _penalty(w, alpha, grouped) + 1e-15
    np.testing.assert_allclose(c[1], -2.5, atol=1e-12)


def test_shift_keeps_sparse_columns_exactly():
    # fewer than half the classes nonzero: the L1 median is 0, so the column must stay as is
    W = np.zeros((10, 3))
    W[:3, 0] = [0.4, -1.0, 2.0]
    W[:4, 1] = 0.7
    W[0, 2] = -3.0
    c = center_shift(torch.as_tensor(W), 0.99).numpy()
    np.testing.assert_array_equal(c, 0.0)


def test_loss_is_invariant_and_objective_drops():
    rng = np.random.default_rng(0)
    n, d, C = 300, 12, 5
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    W = rng.standard_normal((C, d)) + 0.8  # every column off-center
    b = rng.standard_normal(C)
    lam, alpha = 0.05, 0.9
    c = center_shift(torch.as_tensor(W), alpha).numpy()
    Wc = W + c[None, :]
    # same loss: objective difference equals the penalty difference exactly
    pen = lambda V: lam * (alpha * np.abs(V).sum() + 0.5 * (1 - alpha) * (V * V).sum())  # noqa: E731
    before = objective_f64(X, y, W, b, lam, alpha)
    after = objective_f64(X, y, Wc, b, lam, alpha)
    np.testing.assert_allclose(before - after, pen(W) - pen(Wc), rtol=1e-10, atol=1e-12)
    assert after < before - 1e-3


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.3])
def test_numpy_and_torch_paths_agree(alpha, grouped):
    """CPU tensors take the numpy implementation, other devices the torch one: same shifts."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((9, 300)) * (rng.random((9, 300)) < 0.6)
    W[:, :5] = 0.0
    W[:, 5:8] = 1.25
    Wt = torch.as_tensor(W)
    c_np = center_shift(Wt, alpha, grouped)
    c_t = _center_shift_torch(Wt, alpha, grouped)
    assert c_np.dtype == Wt.dtype
    np.testing.assert_allclose(c_np.numpy(), c_t.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(c_np.numpy() == 0, c_t.numpy() == 0)


def _exact_best(w: np.ndarray, alpha: float) -> float:
    """The smallest elastic-net penalty of ``w + t`` over t, from the closed form: the
    piecewise-quadratic penalty's minimum lies at a kink ``-w_k`` or at the stationary point
    of one of its pieces (between consecutive kinks: the L1 part is linear there)."""
    C = w.size
    kinks = np.sort(-w)
    cands = list(kinks)
    if alpha < 1:
        for i in range(C + 1):  # i weights have w + t < 0 on this piece: slope alpha (C - 2i)
            cands.append(-(alpha * (C - 2 * i) + (1 - alpha) * w.sum()) / ((1 - alpha) * C))
    return min(_penalty(w + t, alpha, False) for t in cands)


def _compiled():
    """The compiled ``shifts`` as built, or None where it is not: called directly, not through
    the library's self-check (which would hide a wrong kernel behind numpy's steps and leave
    these tests nothing to see)."""
    try:
        from sparse_probe.solvers._centering import shifts
    except ImportError:
        return None
    return shifts


def _routes():
    """The CPU routes: the compiled kernel where built (the default), and numpy."""
    import sparse_probe.solvers.centering as centering

    yield "numpy", lambda W, a: centering._center_shift_np(W, a, False)
    kernel = _compiled()
    if kernel is not None:
        def run(W, a, kernel=kernel):
            out = np.full(W.shape[1], np.nan)
            kernel(W.shape[0], W.shape[1], np.ascontiguousarray(W), a, out)
            return out
        yield "compiled", run


@pytest.mark.parametrize("C", [1, 2, 7, 32, 33, 40, 250, 1000])  # sorted to 32, selected above
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.5, 0.01])
def test_every_cpu_route_reaches_the_closed_form_minimum(C, alpha):
    """Each route's shift gives each column the smallest penalty over all shifts (to 1e-12 of
    the column's scale), never more than no shift, zero for zero columns, on columns drawn
    here: dense, sparse, tied, integer and with one dominant weight, at three scales."""
    rng = np.random.default_rng(C * 7 + int(alpha * 100))
    m = 60
    W = rng.standard_normal((C, m)) * np.repeat([1e-4, 1.0, 1e3], m // 3)
    W[:, 10:20] *= rng.random((C, 10)) < 0.4
    W[:, 20:25] = np.round(W[:, 20:25])
    W[:, 25] = 0.0
    W[0, 26] = 1e3
    for name, route in _routes():
        c = route(W, alpha)
        assert c[25] == 0.0, name
        for j in range(m):
            w = W[:, j]
            scale = max(float(np.abs(w).max()), 1e-300)
            got = _penalty(w + c[j], alpha, False)
            assert got <= _exact_best(w, alpha) + 1e-12 * scale * C, (name, j)
            assert got <= _penalty(w, alpha, False) * (1 + 1e-15), (name, j)


def test_compiled_and_numpy_shifts_agree_and_zero_the_same_columns():
    """The compiled kernel as built gives numpy's shifts, and passes the library's self-check
    (so center_shift uses it)."""
    import sparse_probe.solvers.centering as centering

    kernel = _compiled()
    if kernel is None:
        pytest.skip("the compiled centering is not built here")
    assert centering._kernel() is not None
    rng = np.random.default_rng(5)
    for C in (2, 10, 32, 33, 100, 1000):
        W = rng.standard_normal((C, 500)) * (rng.random((C, 500)) < 0.5)
        for alpha in (1.0, 0.9):
            got = np.full(500, np.nan)
            kernel(C, 500, W, alpha, got)
            ref = centering._center_shift_np(W, alpha, False)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.abs(W).max())
            np.testing.assert_array_equal(got == 0, ref == 0)
            np.testing.assert_array_equal(center_shift(torch.as_tensor(W), alpha).numpy(), got)


def test_compiled_shifts_refuse_what_they_cannot_read():
    pytest.importorskip("sparse_probe.solvers._centering")
    from sparse_probe.solvers._centering import shifts

    W, out = np.ones((3, 4)), np.zeros(4)
    with pytest.raises(ValueError, match="W must be a C-contiguous float64 array of 12"):
        shifts(3, 4, np.ones((3, 5)), 0.5, out)
    with pytest.raises(ValueError, match="W must be a C-contiguous float64"):
        shifts(3, 4, W.astype(np.float32), 0.5, out)
    with pytest.raises(ValueError, match="W must be a C-contiguous"):
        shifts(3, 4, np.ones((4, 3)).T, 0.5, out)
    with pytest.raises(ValueError, match="out must be a C-contiguous, writable"):
        ro = np.zeros(4)
        ro.flags.writeable = False
        shifts(3, 4, W, 0.5, ro)
    with pytest.raises(ValueError, match="0 < alpha <= 1"):
        shifts(3, 4, W, 0.0, out)
    with pytest.raises(ValueError, match="C >= 1"):
        shifts(0, 4, W, 0.5, out)


def test_the_environment_or_a_disagreeing_kernel_leaves_numpy(monkeypatch, caplog):
    """SPARSE_PROBE_CENTERING=numpy skips the compiled kernel; one that fails the self-check
    is logged and not used; either way the shifts are numpy's."""
    import sparse_probe.solvers.centering as centering

    W = np.random.default_rng(2).standard_normal((6, 20))
    ref = centering._center_shift_np(W, 0.9, False)
    monkeypatch.setenv("SPARSE_PROBE_CENTERING", "numpy")
    assert centering._kernel() is None
    np.testing.assert_array_equal(center_shift(torch.as_tensor(W), 0.9).numpy(), ref)
    monkeypatch.delenv("SPARSE_PROBE_CENTERING")
    pytest.importorskip("sparse_probe.solvers._centering")
    import sparse_probe.solvers._centering as compiled

    def off_by_a_little(C, m, W, alpha, out):
        real(C, m, W, alpha, out)
        out += 1e-9 * (np.abs(W).max(0) + 1.0)

    real = compiled.shifts
    monkeypatch.setattr(centering, "_STATE", {})
    monkeypatch.setattr(compiled, "shifts", off_by_a_little)
    with caplog.at_level("WARNING", logger="sparse_probe.solvers.centering"):
        assert centering._kernel() is None
    assert "disagrees" in caplog.text
    np.testing.assert_array_equal(center_shift(torch.as_tensor(W), 0.9).numpy(), ref)


def test_a_path_is_the_same_with_the_compiled_centering_and_with_numpys(monkeypatch):
    """A collinear 10-class path (OWL-QN and Newton points) fitted with each route: the
    objectives agree to 1e-9 at every λ and every point meets its KKT tolerance."""
    import sparse_probe.solvers.centering as centering
    from sparse_probe.fit import fit_path

    if centering._kernel() is None:
        pytest.skip("the compiled centering is not built here")
    rng = np.random.default_rng(8)
    n, d, C = 900, 30, 10
    X = rng.standard_normal((n, d))
    X[:, 20:] = X[:, :10] @ rng.standard_normal((10, 10))  # exact combinations
    y = (X[:, :10] @ rng.standard_normal((10, C)) + rng.standard_normal((n, C))).argmax(1)
    objs = {}
    for route in ("compiled", "numpy"):
        monkeypatch.setattr(centering, "_STATE", {})
        if route == "numpy":
            monkeypatch.setenv("SPARSE_PROBE_CENTERING", "numpy")
        p = fit_path(X, y, alpha=0.99, n_lambdas=12, eps=1e-2, progress=False)
        assert kkt_ratios(X, y, p).max() <= 1.0, route
        objs[route] = [objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], 0.99,
                                     mean=p.mean, scale=p.scale) for i in range(len(p))]
        assert {"owlqn", "newton"} <= set(p.info["method_per_point"]), route
    np.testing.assert_allclose(objs["compiled"], objs["numpy"], rtol=1e-9)


def test_every_class_count_takes_the_kernel_and_grouped_takes_numpy(monkeypatch):
    """The compiled kernel runs for any number of classes (sorting up to 32, selecting beyond);
    the grouped penalty's shift (the mean) stays numpy's."""
    import sparse_probe.solvers.centering as centering

    calls = []
    monkeypatch.setitem(centering._STATE, "shifts",
                        lambda C, m, W, a, out: calls.append(C) or out.fill(0.0))
    rng = np.random.default_rng(4)
    for C in (2, 32, 33, 1000):
        W = rng.standard_normal((C, 7))
        np.testing.assert_array_equal(center_shift(torch.as_tensor(W), 0.9).numpy(), 0.0)
        np.testing.assert_array_equal(center_shift(torch.as_tensor(W), 0.9, grouped=True).numpy(),
                                      centering._center_shift_np(W, 0.9, True))
    assert calls == [2, 32, 33, 1000]


def test_selection_finds_the_sorted_scans_kink_on_adversarial_columns():
    """Above 32 classes the kernel selects the minimizing kink by partitioning: on columns whose
    order defeats its median-of-three pivots (sorted, reversed, organ-pipe, all equal but one,
    few distinct values, a kink repeated across the minimizer) and on random ones, the shifts
    are numpy's (which sorts and scans), to 1e-13 of the column's scale, and zero where numpy's
    are; also where the kernel's guard sorts what is left after a few partition rounds."""
    import sparse_probe.solvers.centering as centering

    kernel = _compiled()
    if kernel is None:
        pytest.skip("the compiled centering is not built here")
    rng = np.random.default_rng(17)
    cols = []
    for C in (33, 64, 301, 2048):
        up = np.arange(C, dtype=np.float64) - C / 3
        cols += [up, up[::-1], np.concatenate([up[: C // 2], up[: C - C // 2][::-1]]),
                 np.where(np.arange(C) == C // 2, 5.0, 1.0),
                 rng.integers(-2, 3, C).astype(np.float64),
                 np.concatenate([np.full(C // 2 + 1, 0.75), rng.standard_normal(C - C // 2 - 1)]),
                 rng.standard_normal(C) * 10.0 ** rng.integers(-3, 4)]
    for w in cols:
        W = np.ascontiguousarray(np.stack([w, -w, np.roll(w, 3)], 1))
        for alpha in (1.0, 0.99, 0.5, 0.01):
            ref = centering._center_shift_np(W, alpha, False)
            # rounds: partition rounds before the kernel sorts the rest (its guard against
            # pivots that keep missing), from none (all sorted) to the default
            for rounds in (0, 1, 2, 3, 64):
                out = np.full(3, np.nan)
                kernel(W.shape[0], 3, W, alpha, out, rounds)
                np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * np.abs(W).max())
                np.testing.assert_array_equal(out == 0, ref == 0)


def test_the_kernels_sort_limit_is_the_librarys():
    """``SORT_MAX`` in the C source is ``SELECT_FROM_CLASSES - 1`` (the docstring's figures
    are for that split)."""
    import pathlib
    import re

    import sparse_probe.solvers.centering as centering

    src = (pathlib.Path(centering.__file__).parent / "_centering.c").read_text()
    assert int(re.search(r"#define SORT_MAX (\d+)", src).group(1)) == \
        centering.SELECT_FROM_CLASSES - 1


def test_a_kernel_not_built_is_logged_once_and_numpys_steps_used(monkeypatch, caplog):
    import sys

    import sparse_probe.solvers.centering as centering

    monkeypatch.setitem(sys.modules, "sparse_probe.solvers._centering", None)  # import fails
    monkeypatch.setattr(centering, "_STATE", {})
    W = np.random.default_rng(9).standard_normal((5, 8))
    with caplog.at_level("DEBUG", logger="sparse_probe.solvers.centering"):
        for _ in range(3):
            np.testing.assert_array_equal(center_shift(torch.as_tensor(W), 0.8).numpy(),
                                          centering._center_shift_np(W, 0.8, False))
    assert [r.getMessage() for r in caplog.records] == [
        "compiled centering not built; using numpy"]


def _battery(C: int, seed: int = 3) -> np.ndarray:
    """Columns of every kind the shift meets: random at three scales, zero, already centered
    (its median subtracted), constant, one dominant entry of either sign, integer-valued
    (ties), two-valued."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((C, 10)) * np.array([1e-3, 1.0, 100.0, 1.0, 1.0] * 2)
    W[:, 3] = 0.0
    W[:, 4] -= np.median(W[:, 4])
    W[:, 5] = -0.75
    W[:, 6] = 1e-3 * rng.standard_normal(C)
    W[0, 6] = 50.0
    W[:, 7] = 1e-3 * rng.standard_normal(C)
    W[-1, 7] = -80.0
    W[:, 8] = np.round(3 * rng.standard_normal(C))
    W[:, 9] = np.where(np.arange(C) % 3 == 0, 2.0, -1.0)
    return W


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.5])
@pytest.mark.parametrize("C", [1, 2, 3, 4, 33, 40, 300])
def test_torch_route_matches_numpy_on_every_kind_of_column(C, alpha, grouped):
    """The route of other devices (torch ops), run here on CPU tensors, against numpy's steps
    on every kind of column, shifting and leaving exactly the same columns; float32 weights
    get float32 shifts from both routes."""
    import sparse_probe.solvers.centering as centering

    W = _battery(C)
    ref = centering._center_shift_np(W, alpha, grouped)
    got = _center_shift_torch(torch.as_tensor(W), alpha, grouped)
    assert got.dtype == torch.float64
    assert np.all(np.abs(got.numpy() - ref) <= 1e-12 * np.abs(W).max(0))
    np.testing.assert_array_equal(got.numpy() == 0, ref == 0)
    W32 = torch.as_tensor(W, dtype=torch.float32)
    ref32 = centering._center_shift_np(W32.double().numpy(), alpha, grouped)
    for shift in (center_shift(W32, alpha, grouped), _center_shift_torch(W32, alpha, grouped)):
        assert shift.dtype == torch.float32
        assert np.all(np.abs(shift.double().numpy() - ref32) <= 1e-6 * np.abs(W).max(0))


def _kinds(col: np.ndarray, ref: float) -> set[str]:
    """The kinds of one column of the self-check's draws (for a kernel wrong on one kind)."""
    a = np.abs(col)
    kinds = set()
    if not col.any():
        kinds.add("zero")
    elif np.ptp(col) == 0:
        kinds.add("constant")
    elif a.max() >= 1e3 * np.median(a):
        kinds.add("dominant")
    elif np.all(col == np.round(col)):
        kinds.add("ties")
    elif ref == 0:
        kinds.add("centered")
    return kinds


@pytest.mark.parametrize("wrong", [
    "zero", "constant", "dominant", "ties", "centered",  # a kind of column
    "sorted", "selected-40", "selected-300",  # class counts: sorted (<= 32) and selected beyond
    "alpha-1", "alpha-0.99", "alpha-0.5",  # L1 shares
    "over-tolerance",  # off by twice 1e-13 of each column's largest weight everywhere
    "over-small",  # the same on the small-scale columns only (each column's own tolerance)
])
def test_the_self_check_rejects_a_kernel_wrong_anywhere_it_looks(wrong):
    """The compiled kernel's self-check (``_agrees``) passes the kernel as built and numpy's
    own steps, and refuses one wrong on any kind of column, class count or L1 share it draws,
    and one off by more than its tolerance; off by half of it passes."""
    import sparse_probe.solvers.centering as centering

    def fake(off):
        def shifts(C, m, W, alpha, out):
            ref = centering._center_shift_np(W, alpha, False)
            out[:] = ref
            scale = np.abs(W).max(0)
            for j in range(m):
                hit = {
                    "sorted": C <= 32, "selected-40": 32 < C <= 100, "selected-300": C > 100,
                    "alpha-1": alpha == 1.0, "alpha-0.99": 0.9 < alpha < 1.0,
                    "alpha-0.5": alpha <= 0.9, "over-tolerance": True,
                    "over-small": 0 < scale[j] < 1e-2 * scale.max(),
                }.get(off, off in _kinds(W[:, j], ref[j]))
                if hit:
                    out[j] += 2e-13 * scale[j] if off.startswith("over") else 1e-3 + 1e-3 * scale[j]
        return shifts

    assert centering._agrees(lambda C, m, W, a, out: out.__setitem__(
        slice(None), centering._center_shift_np(W, a, False)))
    kernel = _compiled()
    if kernel is not None:
        assert centering._agrees(kernel)

    def half(C, m, W, alpha, out):
        out[:] = centering._center_shift_np(W, alpha, False) + 0.5e-13 * np.abs(W).max(0)

    assert centering._agrees(half)
    assert not centering._agrees(fake(wrong))
