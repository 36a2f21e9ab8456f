"""The grouped/elementwise FISTA solver (sparse_probe/solvers/fista.py) against the published
algorithm, step by step.

FISTA (Beck & Teboulle 2009) with backtracking and the function-value adaptive restart of
O'Donoghue & Candès (2015) is written here once more, independently, in numpy float64 with the
constants the solver documents: start at ``L0``; double ``L`` until the quadratic upper bound
holds (relative slack 1e-12); relax ``L`` by 5% after each accepted step; on an objective
increase after a step from an extrapolated point drop the momentum, restart from the last
iterate and relax ``L`` by 10% (a plain proximal-gradient step is monotone up to rounding and
is always accepted); check the KKT
conditions every ``check_every`` iterations. On small random problems the solver must take
exactly the reference's iterations (same count, same iterate): its speed is the algorithm's,
not an accident of the constants. A second family of tests checks what a caller sees without
a reference: the answer meets the KKT conditions, the reported loss/objective/violation are
those of the returned point, the budget and the tolerance are honoured.

Tolerances: both run in float64 on the same data; the iterates agree to 1e-9 absolute (the
difference is rounding of the same operations in another order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_probe.penalties import ElasticNet, GroupedElasticNet
from sparse_probe.solvers.fista import _kkt, fista

# --------------------------------------------------------------------------- the reference


def _ce_grad(X, y, W, b, l2):
    """Smooth part ``mean CE + l2/2 ||W||^2``, its gradient (C, m), (C,) and the plain CE."""
    n = X.shape[0]
    z = X @ W.T + b
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    loss = float(np.mean(lse - z[np.arange(n), y]))
    P = np.exp(z - lse[:, None])
    P[np.arange(n), y] -= 1.0
    G = P.T @ X / n
    gb = P.sum(axis=0) / n
    return loss, loss + 0.5 * l2 * float((W * W).sum()), G, gb


def _prox(V, t, grouped):
    if grouped:
        norms = np.sqrt((V * V).sum(axis=0))
        scale = np.where(norms > 0, np.maximum(0.0, 1.0 - t / np.where(norms > 0, norms, 1.0)), 0.0)
        return V * scale[None, :]
    return np.sign(V) * np.maximum(np.abs(V) - t, 0.0)


def _p1(W, grouped):
    return float(np.sqrt((W * W).sum(axis=0)).sum()) if grouped else float(np.abs(W).sum())


def _kkt_ref(G, W, gb, l1, l2, grouped):
    """Largest violation of the elastic-net optimality conditions, bias included."""
    if grouped:
        norms = np.sqrt((W * W).sum(axis=0))
        safe = np.where(norms > 0, norms, 1.0)
        r = G + l2 * W + l1 * W / safe
        active = np.sqrt((r * r).sum(axis=0))
        zero = np.maximum(np.sqrt((G * G).sum(axis=0)) - l1, 0.0)
        viol = np.where(norms > 0, active, zero)
    else:
        viol = np.where(W != 0, np.abs(G + l2 * W + l1 * np.sign(W)), np.maximum(np.abs(G) - l1, 0.0))
    return max(float(viol.max()) if viol.size else 0.0, float(np.abs(gb).max()))


def reference_fista(X, y, W0, b0, lam, alpha, grouped, *, tol, max_iter=5000, L0=1.0,
                    check_every=10):
    """Textbook FISTA with backtracking and function-value restart (see module docstring).

    Besides the solution it returns how often each rule fired and ``first_tie``: the first
    iteration at which a decision (sufficient decrease, restart, tolerance) was within
    rounding of going the other way (relative margin 1e-13, a hundred times float64 rounding of these sums). Before it, a correct solver in
    float64 must take exactly these steps; from it on, rounding may pick the other branch.
    """
    l1, l2 = lam * alpha, lam * (1 - alpha)
    W, b = W0.copy(), b0.copy()
    Wy, by = W.copy(), b.copy()
    tk, L = 1.0, L0
    loss, f, _, _ = _ce_grad(X, y, W, b, l2)
    F = f + l1 * _p1(W, grouped)
    viol, converged, it = float("inf"), False, 0
    momentum = False  # was the next step's point extrapolated?
    counts = {"backtracks": 0, "restarts": 0, "checks": 0, "first_tie": None}

    def tie(margin, scale):
        if counts["first_tie"] is None and abs(margin) <= 1e-13 * max(1.0, abs(scale)):
            counts["first_tie"] = it

    for it in range(1, max_iter + 1):
        _, fy, Gy, gby = _ce_grad(X, y, Wy, by, l2)
        Gy = Gy + l2 * Wy
        while True:
            t = 1.0 / L
            Wn = _prox(Wy - t * Gy, t * l1, grouped)
            bn = by - t * gby
            dW, db = Wn - Wy, bn - by
            loss_n, fn, _, _ = _ce_grad(X, y, Wn, bn, l2)
            quad = fy + float((Gy * dW).sum() + (gby * db).sum()) + 0.5 * L * float(
                (dW * dW).sum() + (db * db).sum())
            tie(quad + 1e-12 * abs(quad) - fn, quad)
            if fn <= quad + 1e-12 * abs(quad):
                break
            L *= 2.0
            counts["backtracks"] += 1
        Fn = fn + l1 * _p1(Wn, grouped)
        if momentum:
            tie(Fn - F, F)
        if Fn > F and momentum:
            tk, L = 1.0, 0.9 * L
            Wy, by = W.copy(), b.copy()
            momentum = False
            counts["restarts"] += 1
            continue
        tn = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * tk * tk))
        Wy = Wn + (tk - 1.0) / tn * (Wn - W)
        by = bn + (tk - 1.0) / tn * (bn - b)
        momentum = tk > 1.0
        W, b, F, loss, tk = Wn, bn, Fn, loss_n, tn
        L *= 0.95
        if it % check_every == 0:
            counts["checks"] += 1
            _, _, G, gb = _ce_grad(X, y, W, b, 0.0)
            viol = _kkt_ref(G, W, gb, l1, l2, grouped)
            if tol > 0:
                tie((viol - tol) / tol * 1e-7, 1.0)  # within 1e-6 relative of the tolerance
            if viol <= tol:
                converged = True
                break
    return dict(W=W, b=b, loss=loss, objective=F, n_iter=it, violation=viol, converged=converged,
                **counts)


# --------------------------------------------------------------------------- the data


class Float64Data:
    """Working-set data for the solver: exact float64 CE and gradient (torch), as the
    solver's interface asks (``loss_grad``)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, C: int):
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.C = C
        self.calls = 0
        self.grads = 0  # evaluations with the gradient (the costly product X^T P)

    def loss_grad(self, W, b, need_grad=True):
        self.calls += 1
        self.grads += bool(need_grad)
        z = self.X @ W.T + b
        logp = torch.log_softmax(z, dim=1)
        loss = float(-logp[torch.arange(len(self.y)), self.y].mean())
        if not need_grad:
            return loss, None, None
        P = logp.exp()
        P[torch.arange(len(self.y)), self.y] -= 1.0
        n = len(self.y)
        return loss, P.T @ self.X / n, P.sum(0) / n


def _problem(seed, n=80, m=10, C=3, shift=0.0, scale=2.5):
    """Random features with a class signal on a few columns, standardized then scaled (a
    Lipschitz constant above the default ``L0 = 1``, so backtracking has work to do)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = rng.standard_normal((n, m))
    X[:, :C] += 1.5 * np.eye(C)[y]
    X[:, C] += 0.8 * (y == 0) - 0.4 * X[:, 0]  # a correlated column
    X = scale * (X - X.mean(0)) / X.std(0)
    return X + shift, y.astype(np.int64), C


def _run(X, y, C, lam, pen, W0=None, b0=None, **kw):
    m = X.shape[1]
    W0 = np.zeros((C, m)) if W0 is None else W0
    b0 = np.zeros(C) if b0 is None else b0
    data = Float64Data(X, y, C)
    res = fista(data, torch.from_numpy(W0.copy()), torch.from_numpy(b0.copy()), lam, pen, **kw)
    ref = reference_fista(X, y, W0, b0, lam, pen.alpha, pen.grouped, **kw)
    return res, ref, data


PENALTIES = [ElasticNet(0.9), GroupedElasticNet(0.9), ElasticNet(0.5), GroupedElasticNet(0.99)]


# --------------------------------------------------------------------------- step by step


def _assert_same(res, ref, atol=1e-10):
    np.testing.assert_allclose(res.W.numpy(), ref["W"], rtol=0, atol=atol)
    np.testing.assert_allclose(res.b.numpy(), ref["b"], rtol=0, atol=atol)
    assert res.loss == pytest.approx(ref["loss"], rel=1e-12)
    assert res.objective == pytest.approx(ref["objective"], rel=1e-12)
    assert res.n_iter == ref["n_iter"] and res.converged == ref["converged"]
    if ref["violation"] == float("inf"):
        assert res.violation == float("inf")
    else:
        assert res.violation == pytest.approx(ref["violation"], rel=1e-6, abs=1e-9)


def _untied_budget(X, y, C, lam, pen, cap=200, **kw):
    """The reference's steps before its first rounding-level decision (at most ``cap``)."""
    m = X.shape[1]
    ref = reference_fista(X, y, np.zeros((C, m)), np.zeros(C), lam, pen.alpha, pen.grouped,
                          tol=0.0, max_iter=cap, **kw)
    k = cap if ref["first_tie"] is None else ref["first_tie"] - 1
    return reference_fista(X, y, np.zeros((C, m)), np.zeros(C), lam, pen.alpha, pen.grouped,
                           tol=0.0, max_iter=k, **kw)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
@pytest.mark.parametrize("seed,lam", [(0, 0.02), (1, 0.05), (2, 0.01)])
def test_fista_takes_exactly_the_textbook_algorithms_steps(pen, seed, lam):
    """With the default constants (L0, check_every), the same iterate, loss, objective and
    violation as the reference after every step it takes before any decision is a rounding
    tie; the problems make the reference backtrack, restart and check in that stretch, so
    every rule is exercised."""
    X, y, C = _problem(seed)
    ref = _untied_budget(X, y, C, lam, pen)
    k = ref["n_iter"]
    assert ref["backtracks"] >= 1 and ref["restarts"] >= 1 and ref["checks"] >= 3, ref
    for budget in sorted({1, 2, 3, k // 3, k // 2, k - 1, k} - {0}):
        res, ref_k, _ = _run(X, y, C, lam, pen, tol=0.0, max_iter=budget)
        _assert_same(res, ref_k)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
@pytest.mark.parametrize("seed,lam,tol", [(0, 0.02, 1e-3), (1, 0.05, 3e-4), (2, 0.01, 1e-4)])
def test_fista_stops_where_the_textbook_algorithm_stops(pen, seed, lam, tol):
    """Run to the tolerance with every default (L0, check_every, max_iter): the same stopping
    iteration and point as the reference (tolerances reached before any rounding tie)."""
    X, y, C = _problem(seed)
    res, ref, _ = _run(X, y, C, lam, pen, tol=tol)
    assert ref["converged"] and ref["first_tie"] is None, ref
    _assert_same(res, ref)
    assert res.violation <= tol


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_step_by_step_with_other_constants_and_a_warm_start(pen):
    """Non-default L0, check cadence and a warm start away from zero (a nonzero bias too)."""
    X, y, C = _problem(3, n=60, m=7, C=4)
    rng = np.random.default_rng(3)
    W0 = 0.3 * rng.standard_normal((C, X.shape[1]))
    W0[:, -2:] = 0.0
    b0 = rng.standard_normal(C)
    for L0, every in [(0.05, 3), (40.0, 7), (1.0, 1)]:
        full = reference_fista(X, y, W0, b0, 0.03, pen.alpha, pen.grouped, tol=0.0, max_iter=150,
                               L0=L0, check_every=every)
        k = 150 if full["first_tie"] is None else full["first_tie"] - 1
        assert k >= 2 * every
        res, ref, _ = _run(X, y, C, 0.03, pen, W0=W0, b0=b0, tol=0.0, L0=L0, check_every=every,
                           max_iter=k)
        _assert_same(res, ref)


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_partial_run_matches_reference_at_every_budget(pen):
    """Cut off after k iterations (not converged): the same iterate as the reference's k-th,
    for every k up to 40 (covers steps just after a restart and just after a check)."""
    X, y, C = _problem(4)
    ref40 = _untied_budget(X, y, C, 0.01, pen, cap=40, check_every=4)
    assert ref40["n_iter"] == 40 and ref40["restarts"] >= 1
    for k in range(1, 41):
        res, ref, _ = _run(X, y, C, 0.01, pen, tol=0.0, max_iter=k, check_every=4)
        assert res.n_iter == k and res.converged is False
        _assert_same(res, ref)


# --------------------------------------------------------------------------- what a caller sees


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_answer_meets_kkt_and_reports_its_own_point(pen):
    X, y, C = _problem(5, shift=2.0)  # uncentred columns: the bias matters
    lam = 0.1
    res, _, data = _run(X, y, C, lam, pen, tol=1e-8)
    assert res.converged and res.violation <= 1e-8
    loss, G, gb = data.loss_grad(res.W, res.b)
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert res.objective == pytest.approx(loss + pen.value(res.W, lam), rel=1e-12)
    assert float(pen.kkt_violation(G, res.W, lam).max()) <= 1e-8
    assert float(gb.abs().max()) <= 1e-8
    assert res.violation == pytest.approx(_kkt(pen, res.W, G, gb, lam), rel=1e-9)
    # some but not all weights survive: the penalty acted
    nz = (res.W.abs().sum(0) > 0).sum() if pen.grouped else (res.W != 0).sum()
    assert 0 < int(nz) < res.W.numel() // (C if pen.grouped else 1)


def test_fista_objective_never_increases_between_accepted_iterates():
    """The restart keeps the objective monotone: budget k+1 is never worse than budget k."""
    X, y, C = _problem(6)
    pen = ElasticNet(0.9)
    prev = np.inf
    for k in range(1, 60):
        res, _, _ = _run(X, y, C, 0.01, pen, tol=0.0, max_iter=k)
        assert res.objective <= prev + 1e-12 * abs(prev)
        prev = res.objective


def test_fista_default_budget_is_5000_iterations():
    X, y, C = _problem(7, n=30, m=4, C=2)
    data = Float64Data(X, y, C)
    res = fista(data, torch.zeros(C, 4, dtype=torch.float64), torch.zeros(C, dtype=torch.float64),
                0.05, ElasticNet(0.9), tol=-1.0)  # a tolerance no point meets
    assert res.n_iter == 5000 and res.converged is False and res.violation >= 0


def test_fista_stops_at_the_first_check_that_meets_the_tolerance():
    X, y, C = _problem(8)
    pen = GroupedElasticNet(0.9)
    res, _, _ = _run(X, y, C, 0.02, pen, tol=1e-7)
    # with a tolerance met at the first check it stops there, not later
    loose = 10.0
    res2, _, _ = _run(X, y, C, 0.02, pen, tol=loose)
    assert res2.n_iter == 10 and res2.converged and res2.violation <= loose
    # exactly at the tolerance counts as met
    res3, _, _ = _run(X, y, C, 0.02, pen, tol=1e-7, max_iter=10)
    assert not res3.converged
    res4, _, _ = _run(X, y, C, 0.02, pen, tol=res3.violation)
    assert res4.n_iter == 10 and res4.converged
    assert res.n_iter > 10


def test_fista_solves_an_empty_working_set_for_the_bias_alone():
    """m = 0 columns (every feature screened out): the bias still converges to the class
    log-frequencies, and the violation is the bias gradient's."""
    rng = np.random.default_rng(9)
    y = rng.choice(3, size=90, p=[0.5, 0.3, 0.2]).astype(np.int64)
    X = np.zeros((90, 0))
    data = Float64Data(X, y, 3)
    res = fista(data, torch.zeros(3, 0, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                0.1, GroupedElasticNet(0.9), tol=1e-9)
    assert res.converged
    freq = np.bincount(y, minlength=3) / 90
    p = torch.softmax(res.b, 0).numpy()
    np.testing.assert_allclose(p, freq, atol=1e-8)
    assert _kkt(GroupedElasticNet(0.9), res.W, torch.zeros(3, 0, dtype=torch.float64),
                torch.tensor([0.0, -3e-3, 1e-3], dtype=torch.float64), 0.1) == pytest.approx(3e-3)


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_kkt_takes_the_larger_of_weight_and_bias_violations(pen):
    W = torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=torch.float64)
    G = torch.tensor([[-0.1, 0.02], [0.3, 0.01]], dtype=torch.float64)
    lam = 0.1
    wv = float(pen.kkt_violation(G, W, lam).max())
    assert wv > 0
    small = torch.tensor([wv / 2, -wv / 3], dtype=torch.float64)
    big = torch.tensor([0.0, -2 * wv], dtype=torch.float64)
    assert _kkt(pen, W, G, small, lam) == pytest.approx(wv, rel=1e-15)
    assert _kkt(pen, W, G, big, lam) == pytest.approx(2 * wv, rel=1e-15)


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fista_reaches_tight_tolerances_instead_of_stalling(pen, seed):
    """Near the optimum a step's objective change is rounding: a plain proximal-gradient step
    must then be accepted. (Restarting on it retried the same step until the budget ran out:
    seed 0 with the grouped penalty stalled at violation 1.1e-7 for 4,940 iterations.)"""
    X, y, C = _problem(seed)
    for tol in (1e-7, 1e-10):
        res, _, data = _run(X, y, C, 0.02, pen, tol=tol)
        assert res.converged and res.n_iter < 2000 and res.violation <= tol
        _, G, gb = data.loss_grad(res.W, res.b)
        assert _kkt(pen, res.W, G, gb, 0.02) <= tol


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_computes_one_gradient_per_iteration_and_per_check(pen):
    """The gradient (a second product with the data) is computed once per iteration, at the
    extrapolated point, and once per KKT check; every trial step needs the loss only."""
    X, y, C = _problem(10)
    ref = _untied_budget(X, y, C, 0.02, pen)
    k = ref["n_iter"]
    assert ref["backtracks"] >= 1 and ref["checks"] >= 2
    res, _, data = _run(X, y, C, 0.02, pen, tol=0.0, max_iter=k)
    assert res.n_iter == k
    assert data.grads == k + ref["checks"]
    assert data.calls - data.grads == 1 + k + ref["backtracks"]  # the start, then each trial


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_starts_at_the_default_lipschitz_estimate(pen):
    """On data whose curvature is below the default ``L0 = 1`` no backtracking happens at
    first, so the first steps have length exactly 1/L0 (then relaxed by 5% per step)."""
    X, y, C = _problem(11, scale=0.3)
    ref = _untied_budget(X, y, C, 0.002, pen, cap=60)
    assert ref["n_iter"] >= 20
    for budget in (1, 2, 5, ref["n_iter"]):
        res, ref_k, _ = _run(X, y, C, 0.002, pen, tol=0.0, max_iter=budget)
        _assert_same(res, ref_k)
        if budget <= 2:
            assert ref_k["backtracks"] == 0


def test_fista_with_no_iteration_budget_returns_the_start():
    X, y, C = _problem(12)
    W0 = np.full((C, X.shape[1]), 0.1)
    res, ref, data = _run(X, y, C, 0.02, ElasticNet(0.9), W0=W0, tol=1e-6, max_iter=0)
    assert res.n_iter == 0 and ref["n_iter"] == 0 and res.converged is False
    assert res.violation == float("inf")
    np.testing.assert_array_equal(res.W.numpy(), W0)
    assert res.objective == pytest.approx(ref["objective"], rel=1e-12)
    assert data.grads == 0
