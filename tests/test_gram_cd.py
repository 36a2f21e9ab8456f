"""Exact behaviour of :mod:`sparse_probe.solvers.gram_cd`: the three coordinate-descent kernels
sweep for sweep (the project's compiled ``_gram_cd``, scikit-learn's, the numpy loop), the kernel choice and its fallbacks, the shared-factor face solves, the
active-set method's exits and counts, and enet_qp's sweep schedule and hand-off rule (driven
by scripted violations, so each comparison is met at its boundary).

References: on a diagonal ``Q`` the QP separates and its minimizer is the closed form
``u_j = soft(q_j, l1) / (Q_jj + l2)``; on a general ``Q`` the numpy loop is the reference for
the compiled kernel (same cyclic updates, so agreement to rounding after each sweep).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import sys
import sysconfig

import numpy as np
import pytest
import sklearn.linear_model._cd_fast as cd_fast
import torch
from helpers_qp import singular_model

from sparse_probe.solvers import gram_cd
from sparse_probe.solvers.gram_cd import (
    DIRECT_MAX,
    SWEEP_BUDGET_CAP,
    active_set_qp,
    cd_sweep_budget,
    enet_qp,
    qp_violation,
)

RAW = cd_fast.enet_coordinate_descent_gram
try:  # built at install where a C compiler is present (setup.py; optional)
    from sparse_probe.solvers import _gram_cd
except ImportError:
    _gram_cd = None
OWN = getattr(_gram_cd, "sweeps", None)
HAVE_CC = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is not None
#: Tests of the project's own kernel: skipped only where no C compiler could have built it (a
#: compiler and no extension is a broken install, and fails them).
needs_own = pytest.mark.skipif(OWN is None and not HAVE_CC,
                               reason="no C compiler: the optional _gram_cd extension is not built")
LOGGER = "sparse_probe.solvers.gram_cd"


def _soft(x, l1):
    return np.sign(x) * np.maximum(np.abs(x) - l1, 0.0)


def _coupled(seed=0, N=7, n=25):
    """A strongly coupled PD Gram (cyclic order matters) and a q giving mixed signs."""
    rs = np.random.default_rng(seed)
    A = rs.standard_normal((n, N))
    A[:, 1] += 0.8 * A[:, 0]
    Q = A.T @ A / n
    q = rs.standard_normal(N)
    return Q, q


@pytest.fixture
def fresh_kernel(monkeypatch):
    monkeypatch.setattr(gram_cd, "_KERNEL", [])
    monkeypatch.setattr(gram_cd, "_SCREEN_ARG", [True])
    monkeypatch.delenv("SPARSE_PROBE_GRAM_CD", raising=False)
    yield


# --- qp_violation ------------------------------------------------------------------------

def test_qp_violation_is_the_minimum_norm_subgradient_entrywise():
    Q = np.diag([2.0, 2.0, 2.0, 2.0, 2.0])
    q = np.array([3.0, -1.0, 0.5, -2.0, 0.2])
    u = np.array([0.5, -0.25, 0.0, 0.0, 0.0])
    l1, l2 = 0.3, 0.1
    g = Q @ u - q + l2 * u  # [-1.95, 0.475, -0.5, 2.0, -0.2]
    expect = [g[0] + l1, g[1] - l1, -(0.5 - l1), 2.0 - l1, 0.0]
    for j in range(5):
        e = np.zeros(5)
        e[j] = 1.0
        # one entry at a time: the max picks that entry's subgradient alone
        w = u * e
        gj = (Q @ w - q + l2 * w)[j]
        want = {0: gj + l1, 1: gj - l1}.get(j, np.sign(gj) * max(abs(gj) - l1, 0.0))
        assert qp_violation(Q * e[:, None] * e[None, :], q * e, w, l1, l2) == pytest.approx(
            abs(want), abs=1e-15)
    assert qp_violation(Q, q, u, l1, l2) == pytest.approx(max(abs(x) for x in expect))


def test_qp_violation_uses_a_given_qu_and_handles_empty():
    Q = np.array([[1.0, 0.5], [0.5, 1.0]])
    q = np.array([0.2, -0.1])
    u = np.array([0.4, -0.3])
    assert qp_violation(None, q, u, 0.1, 0.0, Qu=Q @ u) == qp_violation(Q, q, u, 0.1, 0.0)
    assert qp_violation(np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0.1, 0.1) == 0.0
    # positive entries below 1, negative entries: each branch on its own
    assert qp_violation(np.eye(1), np.zeros(1), np.array([0.5]), 0.1, 0.0) == pytest.approx(0.6)
    assert qp_violation(np.eye(1), np.zeros(1), np.array([-0.5]), 0.1, 0.0) == pytest.approx(0.6)
    assert qp_violation(np.eye(1), np.array([0.05]), np.zeros(1), 0.1, 0.0) == 0.0


# --- cd_sweep_budget ---------------------------------------------------------------------

def test_cd_sweep_budget_is_16_plus_n_over_16_capped():
    assert [cd_sweep_budget(N) for N in (0, 15, 16, 17, 31, 32, 160, 1000)] == \
        [16, 16, 17, 17, 17, 18, 26, 78]
    # beyond the caches the model solve's sweeps are capped at 64 + 16 (the cap's N is 1,024)
    assert SWEEP_BUDGET_CAP == 64
    assert [cd_sweep_budget(N) for N in (1023, 1024, 1040, 1041, 4096)] == [79, 80, 80, 80, 80]
    assert isinstance(cd_sweep_budget(15), int)


# --- the numpy loop ----------------------------------------------------------------------

def test_cd_numpy_one_sweep_on_a_diagonal_is_the_closed_form():
    d = np.array([2.0, 0.5, 1.0, 3.0])
    q = np.array([1.0, -0.7, 0.05, -2.0])
    l1, l2 = 0.1, 0.3
    u = np.zeros(4)
    gram_cd._cd_numpy(u, l1, l2, np.diag(d), q, 1)
    np.testing.assert_allclose(u, _soft(q, l1) / (d + l2), rtol=1e-15, atol=0)


def test_cd_numpy_skips_a_zero_diagonal_and_goes_on():
    Q = np.diag([0.0, 1.0, 2.0])
    q = np.array([5.0, 1.0, -1.0])
    u = np.zeros(3)
    with np.errstate(all="raise"):
        gram_cd._cd_numpy(u, 0.1, 0.0, Q, q, 2)
    np.testing.assert_allclose(u, [0.0, 0.9, -0.45], rtol=1e-15)


def test_cd_numpy_makes_exactly_the_sweeps_asked():
    Q, q = _coupled(1)
    one = np.zeros(7)
    gram_cd._cd_numpy(one, 0.05, 0.01, Q, q, 1)
    for s in (2, 3):
        u = np.zeros(7)
        gram_cd._cd_numpy(u, 0.05, 0.01, Q, q, s)
        v = one.copy()
        gram_cd._cd_numpy(v, 0.05, 0.01, Q, q, s - 1)
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-15)  # Qu recomputed: rounding
        assert not np.allclose(u, one, rtol=1e-6)


# --- scikit-learn's compiled kernel ------------------------------------------------------

@pytest.mark.parametrize("sweeps", [1, 2, 3])
def test_cd_sklearn_makes_exactly_sweeps_passes_like_the_numpy_loop(fresh_kernel, sweeps):
    Q, q = _coupled(2)
    for l1, l2 in ((0.05, 0.01), (0.2, 0.0)):
        u1, u2 = np.zeros(7), np.zeros(7)
        gram_cd._cd_sklearn(u1, l1, l2, Q, q, sweeps, RAW)
        gram_cd._cd_numpy(u2, l1, l2, Q, q, sweeps)
        assert (u2 < 0).any() and (u2 > 0).any()
        np.testing.assert_allclose(u1, u2, rtol=1e-12, atol=1e-15)
    assert gram_cd._SCREEN_ARG == [True]  # this scikit-learn takes do_screening


@pytest.mark.parametrize("sweeps", [1, 2, 3])
def test_cd_sklearn_without_do_screening_falls_back_to_the_old_call(fresh_kernel, sweeps):
    calls = []

    def old(*args, **kw):  # a scikit-learn before gap-safe screening
        calls.append(kw)
        if "do_screening" in kw:
            raise TypeError("unexpected keyword argument 'do_screening'")
        assert len(args) == 11
        return RAW(*args, do_screening=False)

    Q, q = _coupled(3)
    u1, u2 = np.zeros(7), np.zeros(7)
    gram_cd._cd_sklearn(u1, 0.05, 0.01, Q, q, sweeps, old)
    gram_cd._cd_numpy(u2, 0.05, 0.01, Q, q, sweeps)
    np.testing.assert_allclose(u1, u2, rtol=1e-12, atol=1e-15)
    assert gram_cd._SCREEN_ARG == [False] and len(calls) == 2
    u3 = np.zeros(7)
    gram_cd._cd_sklearn(u3, 0.05, 0.01, Q, q, sweeps, old)  # remembered: one call now
    assert len(calls) == 3 and calls[-1] == {}
    np.testing.assert_array_equal(u3, u1)


# --- the project's compiled kernel (_gram_cd.sweeps) ---------------------------------------

@needs_own
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sweeps", [1, 4, 30])
def test_own_kernel_matches_the_numpy_loop_sweep_for_sweep(seed, sweeps):
    Q, q = _coupled(seed, N=9)
    Q[4, :] = Q[:, 4] = 0.0  # a coordinate without curvature: skipped (l2 = 0 below)
    for l1, l2 in ((0.05, 0.01), (0.0, 0.2), (0.3, 0.0)):
        u1, u2 = np.zeros(9), np.full(9, 0.2)
        u2[4] = 0.0
        u1[:] = u2
        Qu = Q @ u2
        viol, made = OWN(u2, Qu, Q, q, l1, l2, sweeps, -1.0)
        gram_cd._cd_numpy(u1, l1, l2, Q, q, sweeps)
        assert made == sweeps
        np.testing.assert_allclose(u2, u1, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(Qu, Q @ u2, rtol=1e-12, atol=1e-14)  # kept up to date
        assert viol == pytest.approx(qp_violation(Q, q, u2, l1, l2), rel=1e-12, abs=1e-13)


@needs_own
def test_own_kernel_stops_after_the_first_sweep_that_meets_tol():
    Q, q = _coupled(5)
    viols, u = [], np.zeros(7)
    for _ in range(12):  # the numpy loop's violation after each sweep
        gram_cd._cd_numpy(u, 0.05, 0.01, Q, q, 1)
        viols.append(qp_violation(Q, q, u, 0.05, 0.01))
    for at in (0, 3, 7):
        tol = viols[at]  # met exactly after sweep at + 1, not before (strictly decreasing)
        assert all(v > tol for v in viols[:at])
        u = np.zeros(7)
        viol, made = OWN(u, Q @ u, Q, q, 0.05, 0.01, 50, tol * (1 + 1e-9))
        assert made == at + 1 and viol <= tol * (1 + 1e-9)
    u = np.zeros(7)  # a start that already meets tol: no sweep
    u_met = u.copy()
    gram_cd._cd_numpy(u_met, 0.05, 0.01, Q, q, 200)
    v0 = qp_violation(Q, q, u_met, 0.05, 0.01)
    viol, made = OWN(u_met, Q @ u_met, Q, q, 0.05, 0.01, 50, v0)
    assert made == 0 and viol == pytest.approx(v0, rel=1e-12, abs=1e-16)


@needs_own
def test_own_kernel_reports_a_nan():
    Q, q = _coupled(1)
    q[2] = np.nan
    u = np.zeros(7)
    viol, made = OWN(u, Q @ u, Q, q, 0.05, 0.01, 3, 1e-8)
    assert np.isnan(viol) and made == 3 and np.isnan(u[2])  # as the numpy loop's
    ref = np.zeros(7)
    gram_cd._cd_numpy(ref, 0.05, 0.01, Q, q, 3)
    np.testing.assert_array_equal(np.isnan(u), np.isnan(ref))
    g = np.zeros(7)  # a NaN gradient at a zero weight: reported, not read as inside the band
    viol, made = OWN(g, Q @ g, Q, q, 0.05, 0.01, 0, 1e-8)
    assert np.isnan(viol) and made == 0


@needs_own
def test_own_kernel_rejects_what_it_cannot_read():
    Q, q = _coupled(2)
    u = np.zeros(7)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: Q must be a C-contiguous float64 "
                                         r"array of 49 entries"):
        OWN(u, Q @ u, Q[:6, :6].copy(), q, 0.1, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: q must be .* of 7 entries"):
        OWN(u, Q @ u, Q, q.astype(np.float32), 0.1, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: Qu must be"):
        OWN(u, np.zeros(6), Q, q, 0.1, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: u must be .* of 7 entries"):
        OWN(u.astype(np.float32), Q @ u, Q, q, 0.1, 0.0, 1, 0.0)
    with pytest.raises((ValueError, BufferError)):
        OWN(u, Q @ u, np.asfortranarray(Q[:, ::-1]), q, 0.1, 0.0, 1, 0.0)  # not C-contiguous
    frozen = np.zeros(7)
    frozen.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        OWN(frozen, Q @ u, Q, q, 0.1, 0.0, 1, 0.0)
    # one check failing alone: 8-byte integers (the size and count right, the kind not), and
    # bytes of the right total length (the kind and size not)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: q must be"):
        OWN(u, Q @ u, Q, q.astype(np.int64), 0.1, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: Q must be"):
        OWN(u, Q @ u, np.frombuffer(Q.tobytes(), dtype=np.uint8), q, 0.1, 0.0, 1, 0.0)
    # u's entries are counted in its own items, whatever their kind: 7 bytes are 7 entries
    with pytest.raises(ValueError, match=r"_gram_cd.sweeps: u must be .* of 7 entries"):
        OWN(np.zeros(7, dtype=np.uint8), Q @ u, Q, q, 0.1, 0.0, 1, 0.0)


@needs_own
def test_own_kernel_reads_float64_buffers_with_a_byte_order_prefix():
    """A float64 buffer may say so as "<d" (ctypes arrays) or "@d" (memoryview casts): the
    kernel reads both as numpy's "d", with the same sweeps."""
    import ctypes

    Q, q = _coupled(2)
    want_u, want_Qu = np.zeros(7), np.zeros(7)
    want = OWN(want_u, want_Qu, Q, q, 0.1, 0.01, 3, 0.0)
    u, Qu = (ctypes.c_double * 7)(), (ctypes.c_double * 7)()  # format "<d", writable
    assert memoryview(u).format == "<d"
    Qm = memoryview(Q.tobytes()).cast("B").cast("@d")  # format "@d", read-only
    qm = memoryview(q.tobytes()).cast("B").cast("@d")
    assert Qm.format == qm.format == "@d"
    assert OWN(u, Qu, Qm, qm, 0.1, 0.01, 3, 0.0) == want
    np.testing.assert_array_equal(np.frombuffer(u), want_u)
    np.testing.assert_array_equal(np.frombuffer(Qu), want_Qu)


@needs_own
def test_own_kernel_reads_a_read_only_model_and_linear_term():
    """Q and q are only read: read-only arrays (a caller's cached model) are accepted and give
    the same sweeps as writable ones."""
    Q, q = _coupled(2)
    u1, u2 = np.zeros(7), np.zeros(7)
    Qu1, Qu2 = Q @ u1, Q @ u2
    ro_Q, ro_q = Q.copy(), q.copy()
    ro_Q.flags.writeable = ro_q.flags.writeable = False
    got = OWN(u1, Qu1, ro_Q, ro_q, 0.1, 0.01, 3, 0.0)
    want = OWN(u2, Qu2, Q, q, 0.1, 0.01, 3, 0.0)
    assert got == want and got[1] == 3
    np.testing.assert_array_equal(u1, u2)
    assert np.abs(u1).sum() > 0


@needs_own
def test_enet_qp_confirms_the_own_kernels_stop_on_an_exact_product(fresh_kernel, monkeypatch):
    """The kernel's violation is read off a kept product that drifts by rounding: enet_qp
    re-reads it off an exact one, sweeps on where that misses tol, and ends where the kernel
    makes no sweep at all (it met tol on its own reading of that exact product)."""
    Q, q = _coupled(3)
    calls = []

    def lying(u, Qu, Q_, q_, l1, l2, k, tol):  # claims tol met after its sweeps
        _viol, made = OWN(u, Qu, Q_, q_, l1, l2, min(k, 1), -1.0)
        calls.append(made)
        return (0.0, made) if len(calls) < 3 else (0.0, 0)

    monkeypatch.setattr(gram_cd, "_kernel", lambda: ("own", lying))
    u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-12, direct_max=0)
    assert calls == [1, 1, 1] and sweeps == 2  # the third call's sweep is not counted
    assert viol == qp_violation(Q, q, u, 0.05, 0.01) and viol > 1e-12


@needs_own
def test_enet_qp_with_the_own_kernel_stops_at_the_sweep_that_meets_tol(fresh_kernel):
    """Not at the end of its chunk: the kernel checks after every sweep."""
    Q, q = _coupled(9)
    u, viols = np.zeros(7), []
    for _ in range(40):
        gram_cd._cd_numpy(u, 0.05, 0.01, Q, q, 1)
        viols.append(qp_violation(Q, q, u, 0.05, 0.01))
    for first in (2, 4, 5, 11):  # inside the chunks 2, 4, 8, 16 (the 3rd, 5th, 6th, 12th)
        tol = 0.5 * (viols[first] + viols[first - 1]) if viols[first] < viols[first - 1] \
            else viols[first]
        need = next(i + 1 for i, v in enumerate(viols) if v <= tol)
        _u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=tol, direct_max=0)
        assert sweeps == need and viol <= tol


@needs_own
def test_enet_qp_reads_the_violation_off_an_exact_product_at_tol(fresh_kernel, monkeypatch):
    """A kernel's reading of exactly tol is confirmed on an exact product too."""
    Q, q = _coupled(3)

    def at_tol(u, Qu, Q_, q_, l1, l2, k, tol):
        OWN(u, Qu, Q_, q_, l1, l2, k, -1.0)
        return tol, k

    monkeypatch.setattr(gram_cd, "_kernel", lambda: ("own", at_tol))
    u, _sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-3, max_sweeps=2,
                               direct_max=0)
    assert viol == qp_violation(Q, q, u, 0.05, 0.01) and viol != 1e-3


def test_enet_qp_with_scikit_learns_kernel_calls_it(fresh_kernel, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "sklearn")
    assert gram_cd._kernel() == ("sklearn", RAW)  # decided (its self-check runs both loops)
    calls = []
    real = gram_cd._cd_sklearn
    monkeypatch.setattr(gram_cd, "_cd_sklearn", lambda *a: calls.append(a[5]) or real(*a))
    monkeypatch.setattr(gram_cd, "_cd_numpy", lambda *a: pytest.fail("numpy loop run"))
    Q, q = _coupled(2)
    _u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-10, direct_max=0)
    assert viol <= 1e-10 and sum(calls) == sweeps >= 1


@needs_own
def test_enet_qp_own_kernel_resumes_on_a_fresh_product_after_a_hand_off(fresh_kernel,
                                                                         monkeypatch):
    """After the active-set method moved u (a crawl handed off at 14 sweeps), the kernel's
    kept Qu is rebuilt from that u, not carried over."""
    Q, q = _coupled(6)
    seen, viols = [], [1.0, 0.9, 0.89, 0.5]

    def crawling(u, Qu, Q_, q_, l1, l2, k, tol):  # moves nothing, reports a slow contraction
        seen.append((u.copy(), np.array(Qu, dtype=float, copy=True)))
        return viols.pop(0), k

    def off(Q_, q_, u, l1, l2, *, tol, **_):  # moves u and reports no success
        w = u + 0.3
        return w, 1, qp_violation(Q_, q_, w, l1, l2)

    monkeypatch.setattr(gram_cd, "_kernel", lambda: ("own", crawling))
    monkeypatch.setattr(gram_cd, "active_set_qp", off)
    u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-9, max_sweeps=16,
                              direct_max=0)
    assert len(seen) == 4 and sweeps == 16
    np.testing.assert_array_equal(seen[3][0], np.full(7, 0.3))
    np.testing.assert_allclose(seen[3][1], Q @ np.full(7, 0.3), rtol=1e-14)
    assert viol == qp_violation(Q, q, u, 0.05, 0.01)


# --- the kernel choice -------------------------------------------------------------------

@needs_own
def test_kernel_is_the_projects_own_and_is_decided_once(fresh_kernel, monkeypatch):
    """The extension is built by the project's install (setup.py): the default kernel is it,
    and a test environment where it is missing fails here rather than running slower."""
    assert OWN is not None, "a C compiler is here but _gram_cd is not built: pip install -e ."
    assert gram_cd._kernel() == ("own", _gram_cd.sweeps)
    monkeypatch.setattr(_gram_cd, "sweeps", None)
    assert gram_cd._kernel() == ("own", OWN)  # cached
    assert gram_cd._KERNEL == [("own", OWN)]


def test_kernel_env_override_chooses_the_numpy_loop(fresh_kernel, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "numpy")
    assert gram_cd._kernel() == ("numpy", None)
    assert gram_cd._KERNEL == [("numpy", None)]


def test_kernel_env_sklearn_chooses_scikit_learns(fresh_kernel, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "sklearn")
    assert gram_cd._kernel() == ("sklearn", RAW)


@needs_own
def test_kernel_env_other_value_keeps_the_default(fresh_kernel, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "fast")
    assert gram_cd._kernel() == ("own", OWN)


def test_kernel_without_the_extension_is_scikit_learns(fresh_kernel, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sparse_probe.solvers._gram_cd", None)  # import fails
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert gram_cd._kernel() == ("sklearn", RAW)
    recs = [r for r in caplog.records if r.name == LOGGER]
    assert len(recs) == 1 and recs[0].levelno == logging.DEBUG
    assert recs[0].getMessage().startswith("gram_cd: the compiled _gram_cd.sweeps unavailable (")
    assert isinstance(recs[0].args[1], ImportError)


@needs_own
@pytest.mark.parametrize("how", ["far", "near"])
def test_own_kernel_that_disagrees_is_dropped_for_scikit_learns(fresh_kernel, monkeypatch,
                                                                caplog, how):
    def wrong(u, *args):
        out = OWN(u, *args)
        u[0] += 1.0 if how == "far" else 5e-10  # beyond rtol 1e-9, atol 1e-12
        return out

    monkeypatch.setattr(_gram_cd, "sweeps", wrong)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert gram_cd._kernel() == ("sklearn", RAW)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "gram_cd: the compiled _gram_cd.sweeps disagrees with the numpy loop; not used"]


@pytest.mark.parametrize("how", ["far", "near"])
def test_kernel_that_disagrees_is_dropped_with_a_warning(fresh_kernel, monkeypatch, caplog,
                                                         how):
    def wrong(w, *args, **kw):
        out = RAW(w, *args, **kw)
        w[0] += 1.0 if how == "far" else 5e-10  # beyond rtol 1e-9, atol 1e-12
        return out

    monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "sklearn")
    monkeypatch.setattr(cd_fast, "enet_coordinate_descent_gram", wrong)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert gram_cd._kernel() == ("numpy", None)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "gram_cd: scikit-learn's enet_coordinate_descent_gram disagrees with the numpy "
        "loop; not used"]
    # and enet_qp then runs the numpy loop: the wrong kernel is never called again
    monkeypatch.setattr(cd_fast, "enet_coordinate_descent_gram",
                        lambda *a, **k: pytest.fail("dropped kernel called"))
    Q, q = _coupled(4)
    _u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-9, direct_max=0)
    assert sweeps >= 1 and viol <= 1e-9


def test_kernel_missing_is_logged_and_the_numpy_loop_used(fresh_kernel, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sparse_probe.solvers._gram_cd", None)
    monkeypatch.delattr(cd_fast, "enet_coordinate_descent_gram")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert gram_cd._kernel() == ("numpy", None)
    recs = [r for r in caplog.records if r.name == LOGGER]
    assert len(recs) == 2 and all(r.levelno == logging.DEBUG for r in recs)
    assert [r.args[0] for r in recs] == ["the compiled _gram_cd.sweeps",
                                         "scikit-learn's enet_coordinate_descent_gram"]
    assert all(r.msg == "gram_cd: %s unavailable (%s)" for r in recs)
    assert isinstance(recs[1].args[1], ImportError)
    assert recs[1].getMessage().startswith(
        "gram_cd: scikit-learn's enet_coordinate_descent_gram unavailable (cannot ")


# --- the shared-factor face solves -------------------------------------------------------

def _faces_problem(N=12, seed=0):
    rs = np.random.default_rng(seed)
    A = rs.standard_normal((40, N))
    return A.T @ A / 40, rs.standard_normal(N)


def _check(faces, Q, l2, S, rhs):
    v = faces.solve(S, rhs)
    want = np.linalg.solve(Q[np.ix_(S, S)] + l2 * np.eye(S.size), rhs)
    np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-12)
    return v


def test_faces_share_one_factor_across_nearby_faces():
    Q, r = _faces_problem()
    l2 = 0.01
    f = gram_cd.Faces(Q, l2)
    assert f.factorizations == 0
    S = np.arange(8)
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1
    S = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 8])  # 2 new of 10: 4*2 <= 10, bordered
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1 and f.T.size == 10
    S = np.array([7, 0, 1, 2, 9, 4, 5, 6])  # 2 of 10 left out: 8 <= 10, multipliers
    _check(f, Q, l2, S, r[S])
    _check(f, Q, l2, S, -r[S])  # the columns are reused
    assert f.factorizations == 1
    S = np.array([0, 1, 2, 4, 5, 6, 7, 9])  # again, another order
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1
    S = np.array([0, 1, 2, 4, 5, 6, 9])  # 3 of 10 out: 12 > 10, a new factor
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 2 and f.T.size == 7


def test_faces_kept_columns_follow_the_factor_through_borders(monkeypatch):
    """The columns ``Fᵀ⁻¹ e_p`` kept for the positions held at zero, and their Gram matrix, are
    those of the factor they are read with: a border extends them by its rows (no column is
    computed again), and a column new after a border (in the bordered block or before it) is
    that of the whole factor. Each solve matches a direct one."""
    Q, r = _faces_problem(16, seed=3)
    l2 = 0.01
    f = gram_cd.Faces(Q, l2)
    asked = []
    keep = gram_cd.Faces._keep
    monkeypatch.setattr(gram_cd.Faces, "_keep", lambda self, pos: (asked.append(list(pos)),
                                                                   keep(self, pos))[1])

    def exact_columns():
        T = f.T
        F = np.linalg.cholesky(Q[np.ix_(T, T)] + l2 * np.eye(T.size)).T  # A0 = FᵀF, F upper
        for p, c in f.ycol.items():
            e = np.zeros(T.size)
            e[p] = 1.0
            np.testing.assert_allclose(f.Y[:, c].numpy(), np.linalg.solve(F.T, e),
                                       rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f.K.numpy(), f.Y.numpy().T @ f.Y.numpy(), rtol=1e-12,
                                   atol=1e-14)

    _check(f, Q, l2, np.arange(10), r[:10])
    S = np.delete(np.arange(10), 2)  # position 2 held at zero: its column
    _check(f, Q, l2, S, r[S])
    S = np.delete(np.arange(12), 2)  # entries 10, 11 bordered on; 2 still out
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1 and f.T.size == 12 and f.L is not None
    exact_columns()
    S = np.delete(np.arange(12), [2, 11])  # a position in the bordered block
    _check(f, Q, l2, S, r[S])
    S = np.delete(np.arange(12), [2, 5, 11])  # one before it, on a bordered factor
    _check(f, Q, l2, S, -r[S])
    assert f.factorizations == 1 and asked == [[2], [11], [5]]
    exact_columns()
    S = np.delete(np.arange(14), [2, 5, 11])  # a second border carries all three
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1 and f.T.size == 14 and asked == [[2], [11], [5]]
    exact_columns()


def test_faces_forward_slices_the_factor_only_for_a_small_corner(monkeypatch):
    """``Faces._forward(R, first)`` is ``Fᵀ⁻¹`` of R padded with zeros above ``first`` (its
    rows from there on) for every ``first``, against a dense solve. It hands torch a slice of
    the factor only where the corner from ``first`` holds at most a quarter of the rows;
    otherwise the whole blocks (``U``, ``U2``): torch copies a sliced factor before it solves,
    5.9 ms against 2.0 ms for the whole one from half of N = 3,000."""
    Q, r = _faces_problem(16, seed=4)
    l2 = 0.01
    f = gram_cd.Faces(Q, l2)
    _check(f, Q, l2, np.arange(10), r[:10])
    _check(f, Q, l2, np.arange(13), r[:13])  # three entries bordered on
    assert f.L is not None and f.U.shape[0] == 10 and f.T.size == 13
    T = f.T
    F = np.linalg.cholesky(Q[np.ix_(T, T)] + l2 * np.eye(T.size)).T  # A0 = FᵀF, F upper
    seen = []
    real = torch.linalg.solve_triangular
    monkeypatch.setattr(torch.linalg, "solve_triangular",
                        lambda A, B, **kw: (seen.append(A), real(A, B, **kw))[1])
    whole = {(f.U.data_ptr(), tuple(f.U.shape)), (f.U2.data_ptr(), tuple(f.U2.shape))}
    rng = np.random.default_rng(0)
    for first in range(13):
        seen.clear()
        R = rng.standard_normal((13 - first, 2))
        got = f._forward(torch.from_numpy(R), first).numpy()
        full = np.zeros((13, 2))
        full[first:] = R
        assert got.shape == R.shape
        np.testing.assert_allclose(got, np.linalg.solve(F.T, full)[first:], rtol=1e-10,
                                   atol=1e-12)
        sliced = [A for A in seen if (A.data_ptr(), tuple(A.shape)) not in whole]
        if first <= 9:  # 4 (13 - first) > 13: the whole blocks
            assert seen and not sliced, first
        else:  # 10..12: a corner of at most 3 rows, in the bordered block: U2 from there
            assert len(seen) == 1 and seen[0].shape == (13 - first, 13 - first), first
            assert bool(sliced) == (first > 10), first  # from 10 the corner is U2 itself
    # a corner of exactly a quarter of the rows is sliced (12 + 4 bordered: from 12, U2)
    g = gram_cd.Faces(Q, l2)
    _check(g, Q, l2, np.arange(12), r[:12])
    _check(g, Q, l2, np.arange(16), r[:16])
    assert g.L is not None and g.U.shape[0] == 12 and g.T.size == 16
    for first, solves in ((12, 1), (11, 2)):
        seen.clear()
        g._forward(torch.ones((16 - first, 1), dtype=torch.float64), first)
        assert len(seen) == solves and seen[-1].shape == (4, 4), first


def test_faces_refactor_thresholds_are_strict():
    Q, r = _faces_problem(16)
    l2 = 0.0
    f = gram_cd.Faces(Q, l2)
    _check(f, Q, l2, np.arange(6), r[:6])
    S = np.arange(8)  # 2 new of 8: 4*2 == 8, not more: bordered
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 1
    S = np.arange(11)  # 3 new of 11: 12 > 11, refactor
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 2
    S = np.arange(12)  # from 11, 1 new (bordered), T 12
    _check(f, Q, l2, S, r[S])
    S = np.arange(3, 12)  # 3 of 12 out: 4*3 == 12, not more: kept
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 2
    S = np.arange(3, 13)  # 1 new, 3 out of 13: 12 <= 13, bordered
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 2 and f.T.size == 13
    S = np.array([3, 4, 5, 6, 7, 8, 13])  # 1 new, 6 of 13 out: 4*6 > 14, a new factor
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 3 and f.T.size == 7
    S = np.arange(3, 13)  # 6 new of 10: refactor
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 4
    S = np.arange(0, 13, 2)  # 6 out of 13: refactor
    _check(f, Q, l2, S, r[S])
    assert f.factorizations == 5


def test_faces_position_zero_is_not_new():
    Q, r = _faces_problem(6)
    f = gram_cd.Faces(Q, 0.0)
    _check(f, Q, 0.0, np.array([3, 1, 2, 0]), r[:4])
    _check(f, Q, 0.0, np.array([3, 1, 2, 0, 4]), r[:5])  # entry 3 sits at position 0
    assert f.factorizations == 1 and f.T.size == 5


def test_faces_singular_face_is_none_and_recovers():
    rs = np.random.default_rng(0)
    A = rs.standard_normal((20, 5))
    A[:, 4] = 0.0  # a zero column: the face with entry 4 is singular without ridge
    Q = A.T @ A / 20
    r = rs.standard_normal(5)
    f = gram_cd.Faces(Q, 0.0)
    _check(f, Q, 0.0, np.arange(4), r[:4])
    assert f.solve(np.arange(5), r) is None  # the border fails, then the factorization
    assert f.factorizations == 2 and f.U is None and f.T.size == 0
    assert (f.where == -1).all()
    _check(f, Q, 0.0, np.array([0, 1, 2]), r[:3])  # a fresh factor after the failure
    assert f.factorizations == 3
    g = gram_cd.Faces(Q, 0.0)
    assert g.solve(np.arange(5), r) is None and g.factorizations == 1
    h = gram_cd.Faces(Q, 1e-3)  # the ridge makes it definite
    _check(h, Q, 1e-3, np.arange(5), r)


def test_faces_non_finite_solution_is_none():
    Q, _r = _faces_problem(4)
    f = gram_cd.Faces(Q, 0.0)
    assert f.solve(np.arange(4), np.array([1.0, np.inf, 0.0, 0.0])) is None


# --- the active-set method ---------------------------------------------------------------

def test_active_set_on_a_diagonal_is_the_closed_form_in_one_solve():
    d = np.array([2.0, 0.5, 1.0, 3.0, 1.5])
    q = np.array([1.0, -0.7, 0.05, -2.0, 0.3])
    l1, l2 = 0.1, 0.3
    u, solves, viol = active_set_qp(np.diag(d), q, np.zeros(5), l1, l2, tol=1e-12)
    np.testing.assert_allclose(u, _soft(q, l1) / (d + l2), rtol=1e-14, atol=0)
    assert solves == 1 and viol <= 1e-12
    assert viol == qp_violation(np.diag(d), q, u, l1, l2)


def test_active_set_handles_sign_changes_from_a_wrong_start():
    d = np.array([2.0, 0.5, 1.0, 3.0, 1.5])
    q = np.array([1.0, -0.7, 0.05, -2.0, 0.3])
    l1, l2 = 0.1, 0.3
    want = _soft(q, l1) / (d + l2)
    for u0 in (np.array([-1.0, 0.5, 0.2, 1.0, -0.4]), np.array([0.0, 0.0, -0.3, 0.0, 0.0]),
               -want, 3 * want):
        u, solves, viol = active_set_qp(np.diag(d), q, u0, l1, l2, tol=1e-12, max_iter=50)
        np.testing.assert_allclose(u, want, rtol=1e-13, atol=1e-15)
        assert 1 <= solves <= 50 and viol <= 1e-12


def test_active_set_against_sklearn_on_coupled_problems():
    from sklearn.linear_model import ElasticNet as SkEnet

    rs = np.random.default_rng(9)
    for _ in range(5):
        n, N = 30, 8
        X = rs.standard_normal((n, N))
        y = rs.standard_normal(n)
        l1, l2 = float(rs.uniform(0.01, 0.2)), 0.05
        # ½||y − Xu||²/n = ½uᵀQu − qᵀu + const with Q = XᵀX/n, q = Xᵀy/n; scikit-learn's
        # 1/(2n)||y − Xu||² + a·ρ||u||₁ + a(1−ρ)/2||u||² with a = l1 + l2, ρ = l1/a
        Q, q = X.T @ X / n, X.T @ y / n
        sk = SkEnet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), fit_intercept=False, tol=1e-14,
                    max_iter=100_000).fit(X, y)
        u0 = rs.standard_normal(N) * (rs.random(N) < 0.5)
        u, _solves, viol = active_set_qp(Q, q, u0, l1, l2, tol=1e-12, max_iter=100)
        assert viol <= 1e-12
        np.testing.assert_allclose(u, sk.coef_, atol=1e-9)
        assert u.dtype == np.float64


def test_active_set_early_exits_return_the_start():
    Q, q = _coupled(5)
    l1, l2 = 0.05, 0.01
    u0 = np.zeros(7)
    gram_cd._cd_numpy(u0, l1, l2, Q, q, 3)
    v0 = qp_violation(Q, q, u0, l1, l2)
    keep = u0.copy()
    for kw in ({"tol": v0}, {"tol": 1e-12, "max_iter": 0}):  # already met; no solves allowed
        work = gram_cd.QPWork()
        u, solves, viol = active_set_qp(Q, q, u0, l1, l2, work=work, **kw)
        assert solves == 0 and viol == v0
        assert work.stream_cached == 7 ** 2  # the one product Q @ u0, nothing to confirm
        np.testing.assert_array_equal(u, u0)
        assert not np.shares_memory(u, u0)
    np.testing.assert_array_equal(u0, keep)
    u, solves, viol = active_set_qp(Q, q, u0, l1, l2, tol=1e-12, max_iter=1)
    assert 1 <= solves <= gram_cd.JOIN_TRIES and viol < v0  # one iteration's solves


def test_active_set_start_at_the_optimum_makes_no_solve():
    d = np.array([2.0, 0.5, 1.0])
    q = np.array([1.0, -0.7, 0.05])
    want = _soft(q, 0.1) / (d + 0.3)
    u, solves, viol = active_set_qp(np.diag(d), q, want, 0.1, 0.3, tol=1e-12)
    assert solves == 0 and viol <= 1e-12
    np.testing.assert_array_equal(u, want)
    u, solves, viol = active_set_qp(np.diag(d), q, want, 0.1, 0.3, tol=0.0)  # not below 0
    np.testing.assert_array_equal(u, want)
    assert solves <= 2


def test_active_set_from_an_integer_start():
    d = np.array([2.0, 0.5, 1.0])
    q = np.array([1.0, -0.7, 0.05])
    u, _, _ = active_set_qp(np.diag(d), q, np.array([1, -1, 0]), 0.1, 0.3, tol=1e-12)
    assert u.dtype == np.float64
    np.testing.assert_allclose(u, _soft(q, 0.1) / (d + 0.3), rtol=1e-14)


def test_active_set_singular_face_returns_the_current_point():
    rs = np.random.default_rng(0)
    A = rs.standard_normal((20, 4))
    A[:, 3] = A[:, 0] + A[:, 1]
    Q = A.T @ A / 20
    q = Q @ np.array([1.0, 2.0, -1.0, 0.5])
    u0 = np.array([0.5, 0.5, -0.5, 0.5])
    v0 = qp_violation(Q, q, u0, 0.0, 0.0)
    u, solves, viol = active_set_qp(Q, q, u0, 0.0, 0.0, tol=1e-12)
    assert solves == 1 and viol == v0
    np.testing.assert_array_equal(u, u0)


def test_active_set_counts_every_face_solve():
    """Two solves when the first face is wrong: the joiner whose minimizer has the wrong
    sign is dropped and the face solved again."""
    Q = np.array([[1.0, 0.9], [0.9, 1.0]])
    q = np.array([1.0, 0.95])
    l1, l2 = 0.1, 0.0
    # from zero both join with positive signs; the face's minimizer makes entry 1 negative?
    u, solves, viol = active_set_qp(Q, q, np.zeros(2), l1, l2, tol=1e-13)
    sk_ref = _brute(Q, q, l1, l2)
    np.testing.assert_allclose(u, sk_ref, atol=1e-12)
    assert viol <= 1e-13 and solves >= 1


def _relu_lowrank_model(seed, n=60, N=40, r=6):
    """A QP of post-ReLU low-rank features (strongly correlated, like pooled deep features):
    the features X, the noise e, ``Q = XᵀX/n``, ``q = Xᵀe/n``, l1 2% of the largest ``|q|``
    and l2."""
    rs = np.random.default_rng(seed)
    X = np.maximum(rs.standard_normal((n, r)) @ rs.standard_normal((r, N))
                   + 0.3 * rs.standard_normal((n, N)), 0.0)
    e = rs.standard_normal(n)
    q = X.T @ e / n
    return X, e, X.T @ X / n, q, 0.02 * float(np.abs(q).max()), 1e-3


def _record_faces(monkeypatch):
    """The sizes of the faces solved by every :class:`Faces`, in order."""
    sizes = []
    real = gram_cd.Faces.solve

    def spy(self, S, rhs):
        sizes.append(int(S.size))
        return real(self, S, rhs)

    monkeypatch.setattr(gram_cd.Faces, "solve", spy)
    return sizes


@pytest.mark.parametrize("seed", [0, 3, 8])
def test_active_set_turns_wrong_signs_away_until_they_agree_then_caps_joiners(seed,
                                                                              monkeypatch):
    """From zero every correlated feature violates; most of them come out of the face's
    minimizer with the wrong sign. Those are turned away and the face solved again, round
    after round (each face smaller), and the next iteration asks for at most twice as many
    joiners as joined, the largest violators; the solution is scikit-learn's."""
    from sklearn.linear_model import ElasticNet as SkEnet

    X, e, Q, q, l1, l2 = _relu_lowrank_model(seed)
    N = q.size
    sizes = _record_faces(monkeypatch)
    u, solves, viol = active_set_qp(Q, q, np.zeros(N), l1, l2, tol=1e-12, max_iter=100)
    assert viol <= 1e-12 and solves == len(sizes)
    sk = SkEnet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), fit_intercept=False, tol=1e-14,
                max_iter=200_000).fit(X, e)
    np.testing.assert_allclose(u, sk.coef_, atol=1e-8)
    assert sizes[0] == int((np.abs(q) > l1).sum())  # all violators asked for at first
    # turned away at least three times in the first iteration, each face smaller
    first = [sizes[0]]
    for s in sizes[1:]:
        if s >= first[-1]:
            break
        first.append(s)
    assert len(first) >= 4
    joined = first[-1]  # from zero: the face that took is the weights nonzero now
    # the next iteration: the nonzeros and at most twice as many joiners (JOIN_MIN at least)
    assert joined < sizes[len(first)] <= joined + max(gram_cd.JOIN_MIN, 2 * joined)


def test_active_set_tries_join_tries_faces_per_iteration(monkeypatch):
    """A face solver that gives the first joiner the wrong sign at every solve: the joiners
    are turned away one by one, ``JOIN_TRIES - 2`` times, then the largest violator alone is
    tried (the face of no nonzeros is solved: it counts as solved) and given the wrong sign too,
    and the method stops at the start."""

    class Contrary(gram_cd.Faces):
        def solve(self, S, rhs):
            v = super().solve(S, rhs)
            v[0] = -v[0]
            sizes.append(int(S.size))
            return v

    sizes = []
    d = np.linspace(1.0, 2.0, 10)
    q = np.linspace(1.0, 3.0, 10)  # every entry violates at zero; the last the most
    l1, l2 = 0.1, 0.0
    Q = np.diag(d)
    u, solves, viol = active_set_qp(Q, q, np.zeros(10), l1, l2, tol=1e-12, max_iter=100,
                                    faces=Contrary(Q, l2))
    T = gram_cd.JOIN_TRIES
    assert sizes == [10 - k for k in range(T - 1)] + [1] and solves == T
    np.testing.assert_array_equal(u, np.zeros(10))
    assert viol == qp_violation(Q, q, np.zeros(10), l1, l2)


def test_largest_keeps_the_cap_largest_candidates():
    cand = np.array([True, False, True, True, False, True])
    excess = np.array([0.5, 9.0, 0.1, 0.7, 8.0, 0.3])
    assert gram_cd._largest(cand, excess, None) is cand
    assert gram_cd._largest(cand, excess, 4) is cand
    np.testing.assert_array_equal(gram_cd._largest(cand, excess, 2),
                                  [True, False, False, True, False, False])
    np.testing.assert_array_equal(gram_cd._largest(cand, excess, 3),
                                  [True, False, False, True, False, True])
    np.testing.assert_array_equal(gram_cd._largest(cand, excess, 1),
                                  [False, False, False, True, False, False])


def test_largest_matches_a_full_sort_on_large_arrays():
    """On arrays long enough that ``argpartition`` does not sort them whole: exactly the
    ``cap`` candidates of the largest excess (numpy's selection leaves the elements before
    ``kth`` nearly sorted: ``kth = cap + 1`` instead of ``cap - 1`` picks another set in 1 of
    these 1,200 cases)."""
    rs = np.random.default_rng(4)
    for _ in range(300):
        N = int(rs.integers(200, 2000))
        cand = rs.random(N) < 0.6
        excess = rs.standard_normal(N)
        idx = np.flatnonzero(cand)
        for cap in (1, 2, 7, int(rs.integers(3, idx.size - 1))):
            want = np.zeros(N, dtype=bool)
            want[idx[np.argsort(-excess[idx])[:cap]]] = True
            np.testing.assert_array_equal(gram_cd._largest(cand, excess, cap), want)


def test_active_set_passes_its_cap_from_iteration_to_iteration(monkeypatch):
    """The cap each iteration asks under is the one :func:`_join_cap` returned at the one
    before (None at the first), and ``_join_cap`` is given that same cap; on this model one
    iteration has all the joiners its cap allows join, and the cap doubles."""
    _X, _e, Q, q, l1, l2 = _relu_lowrank_model(6, n=100, N=80)
    asked_under, given, returned = [], [], []
    real_largest, real_cap = gram_cd._largest, gram_cd._join_cap

    def largest(cand, excess, cap):
        asked_under.append(cap)
        return real_largest(cand, excess, cap)

    def join_cap(cap, asked, joined):
        given.append(cap)
        returned.append(real_cap(cap, asked, joined))
        return returned[-1]

    monkeypatch.setattr(gram_cd, "_largest", largest)
    monkeypatch.setattr(gram_cd, "_join_cap", join_cap)
    active_set_qp(Q, q, np.zeros(q.size), l1, l2, tol=1e-12, max_iter=100)
    assert len(returned) >= 3 and asked_under[0] is None
    assert asked_under[1:len(returned) + 1] == returned[: len(asked_under) - 1]
    assert given == asked_under[: len(given)]
    assert any(c is not None and r == 2 * c for c, r in zip(given, returned, strict=True))  # a doubling


def test_active_set_default_budget_is_20_face_solves():
    """A face solver that stops halfway to each face's minimizer: every iteration one solve
    that descends and never meets tol, so the default ``max_iter`` of 20 ends it."""

    class Halfway(gram_cd.Faces):
        last = np.zeros(4)

        def solve(self, S, rhs):
            v = super().solve(S, rhs)
            half = self.last[S] + 0.5 * (v - self.last[S])
            self.last = np.zeros(4)
            self.last[S] = half
            return half

    Q = np.diag([1.0, 2.0, 3.0, 4.0])
    q = np.array([1.0, -2.0, 3.0, -4.0])
    u, solves, viol = active_set_qp(Q, q, np.zeros(4), 0.1, 0.0, tol=1e-12,
                                    faces=Halfway(Q, 0.0))
    assert solves == 20 and viol > 1e-12
    want = _soft(q, 0.1) / np.diag(Q)
    np.testing.assert_allclose(u, want * (1 - 0.5 ** 20), rtol=1e-12)


def test_join_cap_halves_to_what_joined_and_doubles_when_all_joined():
    m = gram_cd.JOIN_MIN
    assert m == 8
    assert gram_cd._join_cap(None, 10, 10) is None  # uncapped and all joined: stays so
    assert gram_cd._join_cap(None, 0, 0) is None
    assert gram_cd._join_cap(None, 40, 10) == 20  # some turned away: twice those that joined
    assert gram_cd._join_cap(None, 40, 3) == m  # ... at least JOIN_MIN
    assert gram_cd._join_cap(None, 40, 4) == m
    assert gram_cd._join_cap(None, 40, 5) == 10
    assert gram_cd._join_cap(16, 16, 15) == 30
    assert gram_cd._join_cap(16, 16, 0) == m
    assert gram_cd._join_cap(16, 16, 16) == 32  # all the cap allowed joined: doubled
    assert gram_cd._join_cap(16, 5, 5) == 16  # fewer violators than the cap: unchanged


def _brute(Q, q, l1, l2):
    """The 2-D QP's minimizer by trying every sign pattern."""
    best, arg = np.inf, None
    import itertools
    for s in itertools.product((-1, 0, 1), repeat=Q.shape[0]):
        s = np.array(s, float)
        S = np.flatnonzero(s)
        u = np.zeros(Q.shape[0])
        if S.size:
            u[S] = np.linalg.solve(Q[np.ix_(S, S)] + l2 * np.eye(S.size), q[S] - l1 * s[S])
            if (np.sign(u[S]) != s[S]).any():
                continue
        f = gram_cd._objective(Q, q, u, l1, l2)
        if f < best:
            best, arg = f, u
    return arg


# --- enet_qp -----------------------------------------------------------------------------

def test_enet_qp_inputs_are_converted_and_not_modified(fresh_kernel):
    Q, q = _coupled(6)
    l1, l2 = 0.05, 0.01
    Qi = np.rint(Q * 4).astype(np.int64)
    qi = np.rint(q * 4).astype(np.int64)
    for direct_max in (0, DIRECT_MAX):
        a = enet_qp(Qi, qi, np.zeros(7, dtype=np.int64), l1, l2, tol=1e-10,
                    direct_max=direct_max)
        b = enet_qp(Qi.astype(float), qi.astype(float), np.zeros(7), l1, l2, tol=1e-10,
                    direct_max=direct_max)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[0].dtype == np.float64 and a[1:] == b[1:]
    u0 = np.full(7, 0.1)
    u, sweeps, _viol = enet_qp(Q, q, u0, l1, l2, tol=1e-10, direct_max=0)
    np.testing.assert_array_equal(u0, np.full(7, 0.1))
    assert sweeps >= 2 and not np.shares_memory(u, u0)


@pytest.mark.parametrize("numpy_loop", [False, True])
def test_enet_qp_with_tol_zero_makes_exactly_max_sweeps(fresh_kernel, monkeypatch, numpy_loop):
    if numpy_loop:
        monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", "numpy")
    monkeypatch.setattr(gram_cd, "active_set_qp",
                        lambda Q, q, u, *a, **k: (u, 0, qp_violation(Q, q, u, *a)))
    Q, q = _coupled(7)
    for m in (1, 3, 5, 7):
        u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=0.0, max_sweeps=m,
                                  direct_max=0)
        ref = np.zeros(7)
        gram_cd._cd_numpy(ref, 0.05, 0.01, Q, q, m)
        assert sweeps == m
        np.testing.assert_allclose(u, ref, rtol=1e-12, atol=1e-15)
        assert viol == qp_violation(Q, q, u, 0.05, 0.01)


def test_enet_qp_without_sweeps_returns_the_start_and_its_violation(fresh_kernel):
    Q, q = _coupled(8)
    u0 = np.linspace(-0.5, 0.5, 7)
    u, sweeps, viol = enet_qp(Q, q, u0, 0.05, 0.01, tol=1e-10, max_sweeps=0, direct_max=0)
    np.testing.assert_array_equal(u, u0)
    assert sweeps == 0 and viol == qp_violation(Q, q, u0, 0.05, 0.01)


def test_enet_qp_bad_shapes():
    with pytest.raises(ValueError, match=r"enet_qp: Q \(3, 3\), q \(3,\) and u0 \(2,\)"):
        enet_qp(np.eye(3), np.zeros(3), np.zeros(2), 0.1, 0.0, tol=1e-8)


class _Script:
    """enet_qp's collaborators replaced: sweeps recorded, violations scripted."""

    def __init__(self, monkeypatch, viols, as_viols=(1.0,)):
        self.ks, self.handoffs, self.viols, self.as_viols = [], [], list(viols), list(as_viols)
        self.stops = []
        monkeypatch.setattr(gram_cd, "_kernel", lambda: ("numpy", None))
        monkeypatch.setattr(gram_cd, "_cd_numpy", lambda u, l1, l2, Q, q, k: self.ks.append(k))
        monkeypatch.setattr(gram_cd, "qp_violation", self._viol)
        monkeypatch.setattr(gram_cd, "active_set_qp", self._as)

    def _viol(self, *a, **k):
        return self.viols.pop(0) if len(self.viols) > 1 else self.viols[0]

    def _as(self, Q, q, u, l1, l2, *, tol, work=None, stop=None, faces=None):
        self.handoffs.append(sum(self.ks))
        self.stops.append(stop)
        v = self.as_viols.pop(0) if len(self.as_viols) > 1 else self.as_viols[0]
        return u, 3, v

    def run(self, N=4, **kw):
        kw.setdefault("direct_max", 0)
        return enet_qp(np.eye(N), np.ones(N), np.zeros(N), 0.1, 0.0, **kw)


def test_enet_qp_sweep_schedule_doubles_to_64(monkeypatch):
    s = _Script(monkeypatch, [1.0])  # stagnating: handed off once, at the first check >= 8
    _, sweeps, viol = s.run(tol=1e-10, max_sweeps=300)
    assert s.ks == [2, 4, 8, 16, 32, 64, 64, 64, 46]
    assert s.handoffs == [14] and sweeps == 300 and viol == 1.0
    s = _Script(monkeypatch, [1.0])
    _u, sweeps, viol = s.run(tol=1e-10)  # default max_sweeps
    assert sum(s.ks) == 500 and sweeps == 500 and s.ks[-1] == 500 - 446


def test_enet_qp_with_a_stop_checks_every_8_sweeps_and_hands_it_on(monkeypatch):
    """A caller's stop: asked after every chunk, chunks of at most STOP_CHUNK sweeps (not 64),
    and passed on to the crawl's active-set hand-off; it stops the sweeps when it says so."""
    asked = []

    def never():
        asked.append(sum(s.ks))
        return False

    s = _Script(monkeypatch, [1.0])
    s.run(tol=1e-10, max_sweeps=40, stop=never)
    assert gram_cd.STOP_CHUNK == 8
    assert s.ks == [2, 4, 8, 8, 8, 8, 2] and s.handoffs == [14] and s.stops == [never]
    assert asked == [2, 6, 14, 22, 30, 38]
    s = _Script(monkeypatch, [1.0])
    s.run(tol=1e-10, max_sweeps=40, stop=lambda: sum(s.ks) >= 14)
    assert s.ks == [2, 4, 8]
    s = _Script(monkeypatch, [1.0])
    s.run(tol=1e-10, max_sweeps=40)
    assert s.stops == [None] and s.ks == [2, 4, 8, 16, 10]


def test_enet_qp_hands_off_at_8_sweeps_not_before(monkeypatch):
    s = _Script(monkeypatch, [1.0])
    s.run(tol=1e-10, max_sweeps=8)
    assert s.ks == [2, 4, 2] and s.handoffs == [8]
    s = _Script(monkeypatch, [1.0])
    s.run(tol=1e-10, max_sweeps=7)
    assert s.ks == [2, 4, 1] and s.handoffs == []


def test_enet_qp_stops_at_the_tolerance_exactly(monkeypatch):
    s = _Script(monkeypatch, [0.5, 1e-6])
    _u, sweeps, viol = s.run(tol=1e-6)
    assert s.ks == [2, 4] and sweeps == 6 and viol == 1e-6 and s.handoffs == []


def test_enet_qp_budget_boundary(monkeypatch):
    """Checks at 2, 6, 14 sweeps with a contraction of 1/16 a sweep: at 14 the sweeps still
    needed reach the budget (16 for N < 16) exactly for tol 2⁻⁶⁴ (no hand-off), pass it for
    2⁻⁶⁸ (hand-off)."""
    viols = [2.0 ** -8, 2.0 ** -24, 2.0 ** -56, 2.0 ** -64]
    s = _Script(monkeypatch, viols)
    _, sweeps, viol = s.run(tol=2.0 ** -64)  # and at 30 the tolerance is met exactly
    assert s.handoffs == [] and s.ks == [2, 4, 8, 16] and sweeps == 30 and viol == 2.0 ** -64
    s = _Script(monkeypatch, viols, as_viols=[2.0 ** -70])
    _u, sweeps, viol = s.run(tol=2.0 ** -68)
    assert s.handoffs == [14] and sweeps == 14 and viol == 2.0 ** -70
    # a larger model has a larger budget: N = 32 gives 18 >= 17, no hand-off
    s = _Script(monkeypatch, viols)
    s.run(N=32, tol=2.0 ** -68)
    assert s.handoffs == [30]  # there 2⁻⁶⁴ contracted by 2⁻⁵⁶ in 16 sweeps: 8 more needed


def test_enet_qp_hands_off_a_growing_violation(monkeypatch):
    s = _Script(monkeypatch, [1.0, 0.5, 0.6, 1e-12], as_viols=[0.4])
    _u, _sweeps, viol = s.run(tol=1e-10)
    assert s.handoffs == [14] and s.ks == [2, 4, 8, 16] and viol == 1e-12


def test_enet_qp_small_model_tries_the_active_set_once_first(monkeypatch):
    s = _Script(monkeypatch, [1.0], as_viols=[1.0])
    _u, sweeps, _viol = s.run(N=4, direct_max=4, tol=1e-10, max_sweeps=100)
    assert s.handoffs == [0] and sum(s.ks) == 100 and sweeps == 100
    s = _Script(monkeypatch, [1.0], as_viols=[1.0])
    s.run(N=5, direct_max=4, tol=1e-10, max_sweeps=100)
    assert s.handoffs == [14]


def test_enet_qp_active_set_at_the_tolerance_needs_no_kernel(monkeypatch):
    monkeypatch.setattr(gram_cd, "_kernel", lambda: pytest.fail("kernel asked for"))
    monkeypatch.setattr(gram_cd, "active_set_qp", lambda Q, q, u, l1, l2, tol, **_: (u + 1, 2, tol))
    u, sweeps, viol = enet_qp(np.eye(3), np.ones(3), np.zeros(3), 0.1, 0.0, tol=1e-7)
    np.testing.assert_array_equal(u, np.ones(3))
    assert sweeps == 0 and viol == 1e-7


def _one_move_reference(Q, q, u0, l1, l2):
    """The docstring's move from a start without zeros: the face's minimizer ``v`` for the
    start's signs, then the best (in the objective) of the points on the segment where an
    entry crosses zero (that entry set to zero), the minimizer itself, and the steps of 1,
    1/2, 1/4, 1/8 toward it with every entry that crossed zero set to zero; no move unless it
    lowers the objective."""
    obj = gram_cd._objective
    theta = np.sign(u0)
    N = u0.size
    v = np.linalg.solve(Q + l2 * np.eye(N), q - l1 * theta)
    d = v - u0
    cands = [v]
    for j in np.flatnonzero(np.sign(v) != theta):
        t = u0[j] / (u0[j] - v[j])
        if 0 < t <= 1:
            w = u0 + t * d
            w[j] = 0.0
            cands.append(w)
    if (np.sign(v) != theta).any():
        cands.append(_projected_path_reference(Q, q, u0, d, theta, l1, l2))
        for t in (1.0, 0.5, 0.25, 0.125):
            w = u0 + t * d
            w[np.sign(w) != theta] = 0.0
            cands.append(w)
    fs = [obj(Q, q, w, l1, l2) for w in cands]
    k = int(np.argmin(fs))
    return (cands[k], fs[k]) if fs[k] < obj(Q, q, u0, l1, l2) else (u0, None)


def _projected_path_reference(Q, q, u0, d, theta, l1, l2):
    """The first local minimizer of the objective along ``u0 + t d``, t in [0, 1], each entry
    held at zero once it crosses: piece by piece between the crossings, each piece's
    parabola fitted through the objective at three of its points."""
    obj = gram_cd._objective
    tc = np.full(u0.size, np.inf)
    crossing = (u0 != 0) & (np.sign(u0 + d) != theta)
    tc[crossing] = u0[crossing] / (u0[crossing] - (u0 + d)[crossing])

    def at(t):
        w = u0 + t * d
        w[tc <= t] = 0.0
        return w

    cuts = [0.0, *sorted(x for x in tc if x <= 1.0), 1.0]
    for a, b in itertools.pairwise(cuts):
        if b <= a:
            continue
        def on_piece(t, a=a):  # the piece's own point: the entries crossed by its start
            w = u0 + t * d
            w[tc <= a] = 0.0
            return obj(Q, q, w, l1, l2)
        fa, fm, fb = on_piece(a), on_piece(0.5 * (a + b)), on_piece(b)
        h = 0.5 * (b - a)
        slope, curv = (fb - fa) / (2 * h), (fa - 2 * fm + fb) / h ** 2
        if curv > 0:
            t = 0.5 * (a + b) - slope / curv
            if t < b:
                return at(max(t, a))
        elif fb >= fa:
            return at(a)
    return at(1.0)


@pytest.mark.parametrize("seed", [*range(12), 64, 71, 105, 1031, 1388])  # 64...: inexact
# crossings; 1031, 1388: an orthant projection of the minimizer beats the projected path
def test_active_set_one_move_is_the_best_candidate(seed):
    rs = np.random.default_rng(100 + seed)
    N = int(rs.integers(2, 7))
    A = rs.standard_normal((3 * N, N))
    Q = A.T @ A / (3 * N)
    q = rs.standard_normal(N)
    l1, l2 = float(rs.uniform(0.05, 0.5)), float(rs.uniform(0.0, 0.3))
    u0 = rs.standard_normal(N)  # no zeros: the face is the start's own signs
    u, solves, _ = active_set_qp(Q, q, u0, l1, l2, tol=0.0, max_iter=1)
    want, f = _one_move_reference(Q, q, u0, l1, l2)
    assert solves == 1
    np.testing.assert_allclose(u, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(u == 0, want == 0)  # a breakpoint's entry is exactly zero
    if f is not None:
        assert gram_cd._objective(Q, q, u, l1, l2) == pytest.approx(f, rel=1e-12, abs=1e-14)


def test_active_set_one_move_in_one_dimension_by_hand():
    """½u² + 2u + ½|u| from u = 1: the face u > 0 has its minimizer at −2.5, the breakpoint
    (t = 2/7, u = 0) has objective 0, −2.5 has −0.625, the projection 0: the move goes to
    −2.5, and the next face (u < 0) gives the optimum −1.5."""
    Q, q = np.ones((1, 1)), np.array([-2.0])
    u, solves, viol = active_set_qp(Q, q, np.array([1.0]), 0.5, 0.0, tol=0.0, max_iter=1)
    assert u.tolist() == [-2.5] and solves == 1 and viol == 1.0
    u, solves, viol = active_set_qp(Q, q, np.array([1.0]), 0.5, 0.0, tol=0.0)
    assert u.tolist() == [-1.5] and solves == 2 and viol == 0.0
    # with q = −0.2 inside the threshold the breakpoint (objective 0) beats the face's
    # minimizer −0.7 (objective 0.735): one move lands on the optimum, exactly zero
    u, solves, viol = active_set_qp(Q, np.array([-0.2]), np.array([1.0]), 0.5, 0.0, tol=0.0,
                                    max_iter=1)
    assert u.tolist() == [0.0] and solves == 1 and viol == 0.0


def _joining_problem(seed):
    rs = np.random.default_rng(seed)
    A = rs.standard_normal((4, 3))
    A[:, 1] += 1.5 * A[:, 0]
    A[:, 2] -= 1.2 * A[:, 1]
    Q = A.T @ A / 4
    q = rs.standard_normal(3)
    return Q, q, float(rs.uniform(0.05, 0.5)), rs


def test_active_set_from_zero_joins_only_the_largest_violator_when_the_face_is_wrong(monkeypatch):
    """From zero all three entries violate; their joint face, and the face of those that got
    the right sign, put a minimizer entry on the wrong side: the third solve takes only the
    largest violator, at its one-dimensional minimizer."""
    monkeypatch.setattr(gram_cd, "JOIN_TRIES", 3)  # one round of turning away, then this
    Q3, q3, l1, _ = _joining_problem(8)
    Q = np.zeros((4, 4))  # entry 0: uncoupled, inside its threshold (never a candidate)
    Q[0, 0], Q[1:, 1:] = 1.0, Q3
    q = np.concatenate([[0.5 * l1], q3])
    excess = np.abs(q) - l1
    assert (excess[1:] > 0).all() and excess[0] < 0
    u, solves, _ = active_set_qp(Q, q, np.zeros(4), l1, 0.0, tol=0.0, max_iter=1)
    j = int(np.argmax(excess))
    assert j == 2
    want = np.zeros(4)
    want[j] = _soft(q[j], l1) / Q[j, j]
    assert solves == 3
    np.testing.assert_allclose(u, want, rtol=1e-13, atol=0)


def test_active_set_joins_none_while_its_own_face_is_unsolved(monkeypatch):
    """One nonzero entry off its face's optimum, the zero entries violating with wrong-sign
    face minimizers twice: none join, the third solve is the entry's own face."""
    monkeypatch.setattr(gram_cd, "JOIN_TRIES", 3)  # one round of turning away, then this
    Q, q, l1, rs = _joining_problem(3)
    u0 = np.zeros(3)
    u0[0] = rs.standard_normal()
    u, solves, _ = active_set_qp(Q, q, u0, l1, 0.0, tol=0.0, max_iter=1)
    assert solves == 3
    want, _ = _one_move_reference(Q[:1, :1], q[:1], u0[:1], l1, 0.0)
    np.testing.assert_allclose(u, [want[0], 0.0, 0.0], rtol=1e-13, atol=1e-15)


def test_active_set_threshold_entry_does_not_join():
    """A zero entry whose gradient equals l1 exactly is optimal there: only the entry past
    its threshold joins, one solve."""
    Q, q = np.eye(2), np.array([2.0, 0.5])
    u, solves, viol = active_set_qp(Q, q, np.zeros(2), 0.5, 0.0, tol=0.0)
    assert u.tolist() == [1.5, 0.0] and solves == 1 and viol == 0.0


def test_active_set_solved_face_takes_the_largest_violator(monkeypatch):
    """From the one-entry face's exact minimizer, with violators whose joint faces have wrong
    signs: the face counts as solved (its residual is at most tol, here equal to it) and the
    largest violator joins, at the two-entry face's minimizer."""
    monkeypatch.setattr(gram_cd, "JOIN_TRIES", 3)  # one round of turning away, then this
    rs = np.random.default_rng(5)
    A = rs.standard_normal((5, 4))
    A[:, 1] += 1.5 * A[:, 0]
    A[:, 2] -= 1.2 * A[:, 1]
    A[:, 3] += A[:, 2]
    Q, q = A.T @ A / 5, rs.standard_normal(4)
    l1 = float(rs.uniform(0.05, 0.5))
    u0 = np.zeros(4)
    u0[0] = _soft(q[0], l1) / Q[0, 0]
    g = Q @ u0 - q + 0.0 * u0
    tol = float(np.abs(g[:1] + l1 * np.sign(u0[:1])).max())
    assert qp_violation(Q, q, u0, l1, 0.0) > 100 * (tol + 1e-12)
    u, solves, _ = active_set_qp(Q, q, u0, l1, 0.0, tol=tol, max_iter=1)
    assert solves == 3
    S = np.array([0, 3])
    theta = np.array([np.sign(u0[0]), -np.sign(g[3])])
    want = np.zeros(4)
    want[S] = np.linalg.solve(Q[np.ix_(S, S)], q[S] - l1 * theta)
    np.testing.assert_allclose(u, want, rtol=1e-10, atol=0)


class _CountingQ(np.ndarray):
    """Q that counts its products with vectors."""

    products = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        if ufunc is np.matmul and inputs[0] is self:
            _CountingQ.products += 1
        inputs = tuple(x.view(np.ndarray) if isinstance(x, _CountingQ) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kw)


def test_active_set_reuses_its_gradient_for_the_violation():
    """Products with Q: one at the start (gradient and objective), one per face solve (its
    refinement), then per move the curvature and one product with every candidate point at
    once (their objectives, the chosen one's gradient): 4 for one move; the violation is
    taken from the gradient at hand, never from another product."""
    d = np.array([2.0, 0.5, 1.0])
    Q = np.diag(d).view(_CountingQ)
    q = np.array([1.0, -0.7, 0.05])
    _CountingQ.products = 0
    _, solves, viol = active_set_qp(Q, q, np.zeros(3), 0.1, 0.3, tol=1e-12)
    assert solves == 1 and viol <= 1e-12
    assert _CountingQ.products == 4  # and the face solve's refinement (one product)


def test_active_set_weighs_every_candidate_of_a_move_in_one_product():
    """A start whose signs are all wrong: each move weighs the segment's best point, the
    projected path's and four orthant projections, still in one product; the moves end at the closed-form optimum of
    a diagonal Q (soft thresholding) and never raise the objective."""
    d = np.array([2.0, 0.5, 1.0, 4.0])
    Q = np.diag(d).view(_CountingQ)
    q = np.array([1.0, -0.7, 0.6, -2.0])
    l1, l2 = 0.1, 0.3
    u0 = np.array([-0.4, 0.9, -1.2, 0.8])
    _CountingQ.products = 0
    u, solves, viol = active_set_qp(Q, q, u0, l1, l2, tol=1e-12)
    want = np.sign(q) * np.maximum(np.abs(q) - l1, 0.0) / (d + l2)
    np.testing.assert_allclose(u, want, rtol=0, atol=1e-12)
    assert viol <= 1e-12
    moves = _CountingQ.products - 1 - solves  # the start's, each face's refinement
    assert moves % 2 == 0 and moves // 2 <= solves  # two per move: curvature, candidates
    f = gram_cd._objective(np.diag(d), q, u, l1, l2)
    assert f <= gram_cd._objective(np.diag(d), q, u0, l1, l2)


def _refinements(monkeypatch):
    """A counter of the face solves' refinements (each reads the model once: Faces._times)."""
    count = [0]
    real = gram_cd.Faces._times

    def times(self, w):
        count[0] += 1
        return real(self, w)

    monkeypatch.setattr(gram_cd.Faces, "_times", times)
    return count


def test_faces_skip_the_refinement_on_a_factor_it_left_unchanged(monkeypatch):
    """A well-conditioned model past REFINE_ALWAYS entries: the first solve on a factor is
    refined, and where the refinement changed nothing (within REFINE_SKIP) the later solves on
    that factor (faces inside it, the factor carried to a grown model) are not; a factor
    bordered or factorized anew is refined again; a factor of REFINE_ALWAYS entries at every
    solve. Every solve exact to 1e-10."""
    k = gram_cd.REFINE_ALWAYS
    Q, r = _faces_problem(k + 40, seed=3)
    Q += 0.5 * np.eye(k + 40)  # well conditioned: the refinement's correction ~1e-15 of it
    r *= 1e4  # solves of size ~1e4: REFINE_SKIP is a share of the solve, not an absolute
    l2 = 0.01
    count = _refinements(monkeypatch)
    f = gram_cd.Faces(Q, l2)
    S1 = np.arange(k + 1)
    _check(f, Q, l2, S1, r[S1])
    assert count[0] == 1 and f.accurate
    S2 = np.delete(S1, [3, 17, k - 5])  # three entries held at zero on the same factor
    _check(f, Q, l2, S2, r[S2])
    _check(f, Q, l2, S1, -r[S1])
    assert count[0] == 1 and f.factorizations == 1
    g = f.grown(Q)  # the factor of the same block: still known to be exact
    _check(g, Q, l2, S2, r[S2])
    assert count[0] == 1
    S3 = np.arange(k + 3)  # two entries bordered on: a new factor, refined once
    _check(f, Q, l2, S3, r[S3])
    assert count[0] == 2 and f.factorizations == 1
    _check(f, Q, l2, S3, 2 * r[S3])
    assert count[0] == 2
    S4 = np.arange(20, k + 23)  # 20 left out, 20 new: factorized anew, refined once
    _check(f, Q, l2, S4, r[S4])
    _check(f, Q, l2, S4, -r[S4])
    assert count[0] == 3 and f.factorizations == 2
    small = gram_cd.Faces(Q, l2)  # REFINE_ALWAYS entries: refined every time
    S5 = np.arange(k)
    for sign in (1, -1, 2):
        _check(small, Q, l2, S5, sign * r[S5])
    assert count[0] == 6 and small.accurate


def test_faces_keep_refining_an_ill_conditioned_factor(monkeypatch):
    """Exactly collinear features (rank 40 of 110 columns) with a ridge of 1e-6 (condition
    ~3e8): a refinement changes the solve by ~1e-8 of it, more than REFINE_SKIP, so every
    solve on the factor is refined; each meets its system to the precision the conditioning
    allows (1e-7 of the right-hand side)."""
    rs = np.random.default_rng(5)
    A = rs.standard_normal((200, 40)) @ rs.standard_normal((40, 110))
    Q = A.T @ A / 200
    l2 = 1e-6
    S = np.arange(100)
    M = Q[np.ix_(S, S)] + l2 * np.eye(S.size)
    count = _refinements(monkeypatch)
    f = gram_cd.Faces(Q, l2)
    for trial in range(3):
        rhs = rs.standard_normal(S.size)
        v = f.solve(S, rhs)
        assert np.abs(M @ v - rhs).max() <= 1e-7 * np.abs(rhs).max()
        assert count[0] == trial + 1 and not f.accurate


def test_faces_count_new_entries_among_those_left_out():
    """T of 8, then a face of 6 with one entry new: 3 of the 9 would be held at zero,
    4·3 > 9, so it is factorized anew rather than bordered."""
    Q, r = _faces_problem(10)
    f = gram_cd.Faces(Q, 0.0)
    _check(f, Q, 0.0, np.arange(8), r[:8])
    S = np.array([0, 1, 2, 3, 4, 8])
    _check(f, Q, 0.0, S, r[S])
    assert f.factorizations == 2 and f.T.size == 6


def test_the_face_solves_breakpoints_are_sorted_and_distinct():
    """gram_cd._distinct: np.unique of a float array (without numpy.ma's import)."""
    from sparse_probe.solvers.gram_cd import _distinct

    for a in ([0.5, 0.2, 0.5, 1.0], [1.0], [0.3, 0.3, 0.3], [0.9, 0.1, 0.4, 0.1, 0.9, 1.0]):
        got = _distinct(np.array(a))
        np.testing.assert_array_equal(got, np.unique(a))


# --- the face factor kept across solves of one model ---------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_enet_qp_kept_faces_solve_the_next_model_solve_without_a_factorization(fresh_kernel,
                                                                               seed):
    Q, q = singular_model(seed)  # coordinate descent crawls on it
    l1, l2 = 0.02, 1e-3
    faces = gram_cd.Faces(Q, l2)
    assert not faces.factored
    u1, sweeps1, v1 = enet_qp(Q, q, np.zeros(Q.shape[0]), l1, l2, tol=1e-10, direct_max=0,
                              faces=faces)
    assert v1 <= 1e-10 and sweeps1 > 0 and faces.factored  # crawled into the method
    made = faces.factorizations
    # the next step's model solve: the same model, a nearby linear term, from u1
    q2 = q + 1e-5 * np.random.default_rng(seed + 10).standard_normal(q.size)
    ref, _, vref = enet_qp(Q, q2, u1, l1, l2, tol=1e-10, direct_max=0)
    u2, sweeps2, v2 = enet_qp(Q, q2, u1, l1, l2, tol=1e-10, direct_max=0, faces=faces)
    assert v2 <= 1e-10 and vref <= 1e-10
    assert sweeps2 == 0 and faces.factorizations == made  # face solves on the kept factor
    np.testing.assert_allclose(u2, ref, atol=1e-8)
    np.testing.assert_allclose(u2, _brute_face(Q, q2, u2, l1, l2), rtol=1e-8, atol=1e-12)


def _brute_face(Q, q, u, l1, l2):
    """The minimizer on ``u``'s sign pattern (the optimum where that pattern is right)."""
    S = np.flatnonzero(u)
    out = np.zeros_like(u)
    out[S] = np.linalg.solve(Q[np.ix_(S, S)] + l2 * np.eye(S.size), q[S] - l1 * np.sign(u[S]))
    return out


def test_enet_qp_without_a_factor_in_faces_runs_the_sweeps_first(fresh_kernel, monkeypatch):
    Q = 2.0 * np.eye(7) + 0.1  # well conditioned: the sweeps alone solve it
    q = np.linspace(-1.0, 1.0, 7)
    faces = gram_cd.Faces(Q, 0.01)
    monkeypatch.setattr(gram_cd, "active_set_qp", lambda *a, **k: pytest.fail("tried"))
    _u, sweeps, viol = enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-9, direct_max=0,
                              faces=faces)
    assert sweeps > 0 and viol <= 1e-9 and not faces.factored


def test_enet_qp_with_a_factor_in_faces_tries_the_active_set_first(monkeypatch):
    Q = np.eye(4)
    faces = gram_cd.Faces(Q, 0.0)
    faces.U = torch.eye(1, dtype=torch.float64)
    seen = []
    monkeypatch.setattr(gram_cd, "_kernel", lambda: pytest.fail("kernel asked for"))

    def spy(Q_, q, u, l1, l2, *, tol, work=None, stop=None, faces=None):
        seen.append(faces)
        return u + 1, 1, tol

    monkeypatch.setattr(gram_cd, "active_set_qp", spy)
    u, sweeps, _ = enet_qp(Q, np.ones(4), np.zeros(4), 0.1, 0.0, tol=1e-7, direct_max=0,
                           faces=faces)
    assert seen == [faces] and sweeps == 0
    np.testing.assert_array_equal(u, np.ones(4))


def test_faces_of_another_model_or_ridge_are_refused():
    Q, q = _coupled(3)
    faces = gram_cd.Faces(Q, 0.01)
    for other_Q, other_l2 in ((Q.copy(), 0.01), (Q, 0.02)):
        with pytest.raises(ValueError, match=r"^gram_cd: the Faces given is of another model "
                                             r"\(Q or l2\)$"):
            enet_qp(other_Q, q, np.zeros(7), 0.05, other_l2, tol=1e-9, faces=faces)
        with pytest.raises(ValueError, match="another model"):
            gram_cd.active_set_qp(other_Q, q, np.zeros(7), 0.05, other_l2, tol=1e-9,
                                  faces=faces)


def test_faces_grown_keeps_the_factor_for_the_leading_block():
    Q, r = _faces_problem(12)
    l2 = 0.01
    small = Q[:9, :9].copy()
    f = gram_cd.Faces(small, l2)
    _check(f, small, l2, np.arange(7), r[:7])
    g = f.grown(Q)
    assert g.Q is Q and g.N == 12 and g.l2 == l2 and g.factorizations == 1
    assert (g.where[9:] == -1).all() and g.factored
    _check(g, Q, l2, np.array([0, 1, 2, 3, 4, 6, 10]), r[[0, 1, 2, 3, 4, 6, 10]])
    assert g.factorizations == 1  # entry 10 bordered, 5 held at zero: no new factor
    assert f.T.size == 7 and (f.where[7:] == -1).all()  # the old one is left as it was
    _check(f, small, l2, np.arange(7), -r[:7])
    assert f.factorizations == 1
    same = f.grown(small.copy())  # a model of the same size (nothing appended) is one too
    assert same.N == 9 and same.factored
    fresh = gram_cd.Faces(small, l2).grown(Q)  # never factored (its solves were all sweeps)
    assert not fresh.factored and fresh.N == 12
    _check(fresh, Q, l2, np.delete(np.arange(10), 3), np.delete(r[:10], 3))
    assert fresh.factorizations == 1
    with pytest.raises(ValueError, match=r"does not extend \(9, 9\)"):
        f.grown(Q[:8, :8])
    with pytest.raises(ValueError, match="does not extend"):
        f.grown(Q[:, :10])


def _projected_path_case(seed):
    """One move with many crossings: ``_projected_path``'s point, the reference's, the work
    counted and the breakpoints passed."""
    rs = np.random.default_rng(300 + seed)
    N = 25
    A = rs.standard_normal((40, N))
    A[:, 1::2] = A[:, ::2][:, : N // 2] + 0.05 * rs.standard_normal((40, N // 2))
    Q = A.T @ A / 40
    q = rs.standard_normal(N)
    l1, l2 = float(rs.uniform(0.05, 0.3)), float(rs.uniform(1e-4, 0.05))
    u0 = rs.standard_normal(N)
    theta = np.sign(u0)
    v = np.linalg.solve(Q + l2 * np.eye(N), q - l1 * theta)  # the start's face minimizer
    d = v - u0
    cross = np.sign(v) != theta
    assert cross.sum() >= 3
    tc = np.full(N, np.inf)
    tc[cross] = u0[cross] / (u0[cross] - v[cross])
    g = Q @ u0 - q + l2 * u0
    work = gram_cd.QPWork()
    got, t = gram_cd._projected_path(Q, l2, u0, np.arange(N), d, g + l1 * theta,
                                     Q @ d + l2 * d, tc, work)
    want = _projected_path_reference(Q, q, u0, d, theta, l1, l2)
    f = gram_cd._objective
    assert f(Q, q, got, l1, l2) <= f(Q, q, u0, l1, l2)
    # the point is u0 + t d but for the entries held at zero: those that crossed by t
    held = cross & (tc <= t)
    np.testing.assert_array_equal(got[~held], (u0 + t * d)[~held])
    assert (got[held] == 0).all() and 0 < t <= 1
    return got, want, work, int((got[cross] == 0).sum())


@pytest.mark.parametrize("seed", range(8))
def test_projected_path_is_the_first_minimizer_along_the_held_path(seed):
    """Many entries crossing zero on one move: the point ``_projected_path`` carries slope and
    curvature to is the reference's, found piece by piece from objective values; it reads
    K² entries of Q for the K breakpoints it passed."""
    got, want, work, held = _projected_path_case(seed)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(got == 0, want == 0)
    assert work.stream_cached == held ** 2 and work.stream == 0


def test_projected_path_cases_pass_several_breakpoints():
    """The cases above count K² for K of 3 or more, not only 0-2 (where K² and 2K agree)."""
    assert max(_projected_path_case(seed)[3] for seed in range(8)) >= 3


def test_projected_path_without_descent_stays_and_without_crossings_is_the_segment():
    Q = np.diag([1.0, 2.0])
    u = np.array([0.5, -0.5])
    S = np.arange(2)
    gS = np.array([0.3, -0.2])  # an ascent direction along d: no move
    d = np.array([1.0, -1.0])
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, np.full(2, np.inf),
                                     gram_cd.QPWork())
    np.testing.assert_array_equal(got, u)
    assert t == 0.0
    # no crossing: the segment's minimizer, capped at 1
    gS = np.array([-0.3, 0.4])  # slope -0.7, curvature 3: t = 0.7/3
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, np.full(2, np.inf),
                                     gram_cd.QPWork())
    np.testing.assert_allclose(got, u + (0.7 / 3) * d, rtol=1e-15)
    assert t == pytest.approx(0.7 / 3, rel=1e-15)
    gS = np.array([-3.0, 4.0])  # t = 7/3 > 1: capped
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, np.full(2, np.inf),
                                     gram_cd.QPWork())
    np.testing.assert_allclose(got, u + d, rtol=1e-15)
    assert t == 1.0


def test_projected_path_stops_where_the_slope_turns_before_a_breakpoint():
    """A breakpoint ahead but no descent at the start (slope 0.5): no move; a curvature under 1
    (0.425) whose minimizer lies before the breakpoint: the parabola's minimizer."""
    Q = 0.1 * np.eye(2)
    u = np.array([1.0, 1.0])
    S = np.arange(2)
    d = np.array([-2.0, 0.5])  # entry 0 crosses zero at t = 0.5
    tc = np.array([0.5, np.inf])
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, np.array([-0.25, 0.0]), Q @ d, tc,
                                     gram_cd.QPWork())  # slope 0.5
    np.testing.assert_array_equal(got, u)
    assert t == 0.0
    gS = np.array([0.05, 0.0])  # slope -0.1, curvature 0.425: t = 0.1/0.425 < 0.5
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, tc, gram_cd.QPWork())
    np.testing.assert_allclose(got, u + (0.1 / 0.425) * d, rtol=1e-14)
    assert t == pytest.approx(0.1 / 0.425, rel=1e-14)


def test_projected_path_that_stops_at_a_breakpoint_holds_that_entry_at_zero():
    """The slope turns nonnegative once entry 0 leaves (at its breakpoint 2/9, where
    ``0.2 + t·(−0.9)`` is −2.8e-17 in floating point): the point stops there with entry 0
    exactly zero and entry 1 moved to ``t``."""
    Q = 0.1 * np.eye(2)
    u = np.array([0.2, 1.0])
    d = np.array([-0.9, 0.1])
    tc = np.array([u[0] / (u[0] - (u[0] + d[0])), np.inf])
    assert u[0] + tc[0] * d[0] != 0.0  # the zero is the path's, not arithmetic's
    got, t = gram_cd._projected_path(Q, 0.0, u, np.arange(2), d, np.array([1.0, 0.5]), Q @ d,
                                     tc, gram_cd.QPWork())  # slope -0.85, then +0.05
    assert t == tc[0] and got[0] == 0.0 and got[1] == u[1] + t * d[1]


def test_projected_path_without_curvature_goes_to_the_end_or_the_breakpoint():
    """A flat direction (Q = 0, no ridge) with descent: to t = 1 where nothing crosses; past
    a breakpoint, the entry held at zero and on to t = 1 (no division by a zero curvature)."""
    Q = np.zeros((2, 2))
    u = np.array([1.0, -1.0])
    S = np.arange(2)
    d = np.array([0.5, 0.25])
    gS = np.array([-1.0, 0.0])
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, np.full(2, np.inf),
                                     gram_cd.QPWork())
    np.testing.assert_array_equal(got, u + d)
    assert t == 1.0
    d = np.array([0.5, 2.0])  # entry 1 crosses at t = 0.5; the slope stays -0.5 after it
    got, t = gram_cd._projected_path(Q, 0.0, u, S, d, gS, Q @ d, np.array([np.inf, 0.5]),
                                     gram_cd.QPWork())
    np.testing.assert_array_equal(got, np.array([1.5, 0.0]))
    assert t == 1.0


def test_enet_qp_counts_its_face_solves_into_the_callers_work(fresh_kernel):
    """The active-set method's factorizations and solves count into the work given, with or
    without a kept factor."""
    Q, q = _coupled(5)
    for faces in (None, gram_cd.Faces(Q, 0.01)):
        work = gram_cd.QPWork()
        enet_qp(Q, q, np.zeros(7), 0.05, 0.01, tol=1e-10, work=work, faces=faces)
        assert work.blas3 >= 7 ** 3 / 3 / 8 and work.stream_cached > 0  # a face factorized


@pytest.mark.parametrize("seed", [0, 3, 4, 5])
def test_active_set_from_its_own_solution_at_tol_zero_stops_without_a_candidate(seed):
    """At the method's own solution a tolerance of 0 still asks for a move (rounding leaves
    a violation of ~1e-17): the face solve returns the point itself, no entry crosses zero
    and the segment does not descend, so no candidate is weighed and the point is kept."""
    rs = np.random.default_rng(seed)
    N = int(rs.integers(1, 5))
    A = rs.standard_normal((2 * N + 1, N))
    Q, q = A.T @ A / (2 * N + 1), rs.standard_normal(N)
    l1, l2 = float(rs.uniform(0.01, 0.3)), float(rs.choice([0.0, 0.01]))
    u, _, _ = active_set_qp(Q, q, np.zeros(N), l1, l2, tol=0.0)
    again, solves, viol = active_set_qp(Q, q, u, l1, l2, tol=0.0)
    np.testing.assert_array_equal(again, u)
    assert solves >= 1 and viol == qp_violation(Q, q, u, l1, l2)


def _candidates_case(seed, N=40, zeroed=(0, 2, 5)):
    """A model, a point, a move on a face S and candidates ``(u + t·d, t)`` with ``zeroed[k]``
    entries of S set to zero in the k-th."""
    rs = np.random.default_rng(seed)
    A = rs.standard_normal((60, N))
    Q = A.T @ A / 60
    u = rs.standard_normal(N) * (rs.random(N) < 0.6)
    S = np.sort(rs.choice(N, N // 2, replace=False))
    dfull = np.zeros(N)
    dfull[S] = rs.standard_normal(S.size)
    cands = []
    for t, k in zip((1.0, 0.5, 0.3), zeroed, strict=False):
        w = u + t * dfull
        w[rs.choice(S, k, replace=False)] = 0.0
        cands.append((w, t))
    return Q, u, dfull, cands


def _stacked(cands):
    """``_candidate_products``' candidates (N, K) and their t (K,) from ``[(w, t), ...]``."""
    return np.stack([w for w, _ in cands], 1), np.array([t for _, t in cands])


@pytest.mark.parametrize("seed", range(4))
def test_candidate_products_carry_q_u_and_q_d_with_the_zeroed_rows(seed):
    """``_candidate_products``: each candidate's ``Q w`` from ``Q u``, ``t·Q d`` and the rows
    of the entries it set to zero (all candidates' once): ``Q @ W`` to rounding; it reads the
    |Z| distinct rows (N entries each), not the model."""
    Q, u, dfull, cands = _candidates_case(seed)
    work = gram_cd.QPWork()
    QW, carried = gram_cd._candidate_products(Q, Q @ u, Q @ dfull, u, dfull, *_stacked(cands),
                                              work)
    W = np.stack([w for w, _ in cands], 1)
    np.testing.assert_allclose(QW, Q @ W, rtol=1e-12, atol=1e-12 * np.abs(Q @ W).max())
    zeroed = {int(j) for w, t in cands for j in np.flatnonzero(w != u + t * dfull)}
    assert carried and len(zeroed) >= 5
    assert work.stream_cached == len(zeroed) * 40 and work.stream == 0


def test_candidate_products_read_the_model_once_past_a_quarter_of_its_rows():
    """Up to CARRY_ROWS (a quarter) of the N rows zeroed: carried; one row more: one product
    with all the candidates (N² read, not carried); nothing zeroed: Qu + t·Qd, nothing read."""
    for k, want in ((10, True), (11, False)):  # N = 40: 10 rows is the quarter exactly
        Q, u, dfull, cands = _candidates_case(7, zeroed=(k,))
        work = gram_cd.QPWork()
        QW, carried = gram_cd._candidate_products(Q, Q @ u, Q @ dfull, u, dfull, *_stacked(cands),
                                              work)
        assert carried is want
        assert work.stream_cached == (k * 40 if want else 40 ** 2)
        np.testing.assert_allclose(QW[:, 0], Q @ cands[0][0], rtol=1e-12, atol=1e-12)
        if not want:
            np.testing.assert_array_equal(QW, Q @ np.stack([cands[0][0]], 1))
    Q, u, dfull, cands = _candidates_case(8, zeroed=(0, 0))
    work = gram_cd.QPWork()
    Qu, Qd = Q @ u, Q @ dfull
    QW, carried = gram_cd._candidate_products(Q, Qu, Qd, u, dfull, *_stacked(cands), work)
    assert carried and work.stream_cached == 0
    np.testing.assert_array_equal(QW, Qu[:, None] + Qd[:, None] * np.array([1.0, 0.5]))


def _fake_carried_violations(monkeypatch, value):
    """Every violation :func:`active_set_qp` reads off a carried product (an output of
    ``_candidate_products`` that says carried) reported as ``value``; returns the list that
    counts them."""
    real_products, real_violation = gram_cd._candidate_products, gram_cd.qp_violation
    outputs, fooled = [], []

    def products(*a, **k):
        QW, carried = real_products(*a, **k)
        if carried:
            outputs.append(QW)
        return QW, carried

    def violation(Q_, q_, u_, l1_, l2_, Qu=None):
        if Qu is not None and any(np.shares_memory(Qu, QW) for QW in outputs):
            fooled.append(1)
            return value
        return real_violation(Q_, q_, u_, l1_, l2_, Qu=Qu)

    monkeypatch.setattr(gram_cd, "_candidate_products", products)
    monkeypatch.setattr(gram_cd, "qp_violation", violation)
    return fooled


def test_active_set_confirms_a_carried_violation_on_an_exact_product(monkeypatch):
    """Where a violation read off a carried ``Q u`` meets the tolerance, the method checks it
    on ``Q @ u`` before it stops, and goes on where that does not meet it: with every carried
    violation reported as 0, it still ends at the true tolerance, and reports the violation
    of an exact product."""
    Q, q = singular_model(3)
    l1, l2, tol = 1e-2, 1e-6, 1e-10
    u0 = np.linalg.lstsq(Q + 1e-3 * np.eye(80), q, rcond=None)[0]  # dense: entries leave
    fooled = _fake_carried_violations(monkeypatch, 0.0)
    u, solves, viol = active_set_qp(Q, q, u0, l1, l2, tol=tol, max_iter=200)
    monkeypatch.undo()
    assert fooled and solves > 1
    assert viol == qp_violation(Q, q, u, l1, l2) and viol <= tol


@pytest.mark.parametrize("max_iter", [8, 200])
def test_active_set_reports_the_violation_of_an_exact_product_after_carried_moves(
        monkeypatch, max_iter):
    """Stopped after carried moves (out of face solves; met): the violation returned is
    that of ``Q @ u``, even where every violation read off a carried product is reported as
    infinite here (so the method never stops on one)."""
    Q, q = singular_model(3)
    l1, l2 = 1e-2, 1e-6
    u0 = np.linalg.lstsq(Q + 1e-3 * np.eye(80), q, rcond=None)[0]
    fooled = _fake_carried_violations(monkeypatch, np.inf)
    u, solves, viol = active_set_qp(Q, q, u0, l1, l2, tol=1e-10, max_iter=max_iter)
    monkeypatch.undo()
    assert fooled and solves >= 3
    assert viol == pytest.approx(qp_violation(Q, q, u, l1, l2), rel=1e-12, abs=1e-18)
    assert (viol <= 1e-10) == (max_iter == 200)
