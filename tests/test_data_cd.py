"""The Newton model solved in data space (sparse_probe.solvers.data_cd): the compiled sweeps
against their numpy reference, the solution against the model's optimality conditions on a
Hessian from autograd, and the Newton solver's use of it (and its way back to the Gram route).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

import sparse_probe.solvers.data_cd as data_cd
from sparse_probe import fit_path, kkt_violation, objective_f64
from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers.choice import (
    DATA_ENTRY,
    DATA_MIN_SWEEPS,
    WORK_HESSIAN,
    data_sweep_cap,
    newton_observed_cost,
)
from sparse_probe.solvers.data_cd import DataWork, _sweeps_numpy, data_pays, data_qp
from sparse_probe.solvers.gram_cd import enet_qp
from sparse_probe.solvers.newton import hessian_diag, newton
from sparse_probe.solvers.restricted import RestrictedData

newton_module = sys.modules["sparse_probe.solvers.newton"]
compiled = pytest.mark.skipif(not data_cd.compiled(), reason="_data_cd not built")
try:  # the compiled sweeps as built, not through the self-check (which would hide a wrong one)
    from sparse_probe.solvers._data_cd import sweeps as built_sweeps
except ImportError:
    built_sweeps = None
built = pytest.mark.skipif(built_sweeps is None, reason="_data_cd not built")


def _model(n, m, C, seed, share=0.5, all_classes=()):
    """A Newton model's pieces at random weights: features (n, m) float32, probabilities
    (n, C) float32, the free (class, column) pairs (a ``share`` of them, and every class of the
    columns in ``all_classes``), the CE gradient there and the autograd Hessian over
    (W flat, b) in float64."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    W = 0.3 * torch.randn(C, m, generator=g, dtype=torch.float64)
    b = 0.2 * torch.randn(C, generator=g, dtype=torch.float64)
    P = torch.softmax(X.double() @ W.T + b, 1)

    def ce(v):
        z = X.double() @ v[: C * m].view(C, m).T + v[C * m:]
        return torch.nn.functional.cross_entropy(z, y)

    v = torch.cat([W.reshape(-1), b]).requires_grad_(True)
    grad = torch.autograd.grad(ce(v), v)[0].detach().numpy()
    H = torch.autograd.functional.hessian(ce, v.detach()).numpy()
    free = torch.rand(C, m, generator=g) < share
    free[:, list(all_classes)] = True
    cls, col = torch.nonzero(free, as_tuple=True)
    return X, P.float(), cls, col, grad, H, W.numpy()


def _pieces(X, P, cls, col, grad, W, zero_share=0.5, seed=0):
    """The arguments data_qp takes: curvatures, the CE gradient at the free weights and the
    biases, and starting weights of which a share is zero."""
    C, m = P.shape[1], X.shape[1]
    key = (cls * m + col).numpy()
    gw, gb = grad[key], grad[C * m:]
    rng = np.random.default_rng(seed)
    w0 = np.where(rng.random(key.size) < zero_share, 0.0, W.reshape(-1)[key])
    return key, hessian_diag(X, P, cls, col), gw, gb, w0


def _model_kkt(H, key, C, m, gw, gb, w0, u, Db, l1, l2):
    """The model's largest subgradient entry at (u, Db), from the full Hessian H."""
    idx = np.concatenate([key, C * m + np.arange(C)])
    Hs = H[np.ix_(idx, idx)]
    g = np.concatenate([gw, gb]) + Hs @ np.concatenate([u - w0, Db])
    gw_, gb_ = g[: key.size] + l2 * u, g[key.size:]
    sub = np.where(u > 0, np.abs(gw_ + l1), np.where(u < 0, np.abs(gw_ - l1),
                                                      np.maximum(np.abs(gw_) - l1, 0.0)))
    return max(float(sub.max(initial=0.0)), float(np.abs(gb_).max()))


def _model_value(H, key, C, m, gw, gb, w0, u, Db, l1, l2):
    idx = np.concatenate([key, C * m + np.arange(C)])
    D = np.concatenate([u - w0, Db])
    return float(np.concatenate([gw, gb]) @ D + 0.5 * D @ H[np.ix_(idx, idx)] @ D
                 + l1 * np.abs(u).sum() + 0.5 * l2 * u @ u)


@pytest.mark.parametrize("n,m,C,seed", [(30, 25, 3, 0), (50, 40, 4, 1), (80, 12, 6, 2)])
def test_data_qp_meets_the_models_optimality_conditions(n, m, C, seed):
    """More free weights than examples (the route's use) and fewer: the solution satisfies the
    model's KKT conditions computed from an autograd Hessian, and its value equals the Gram
    route's (enet_qp on the Schur complement of that Hessian)."""
    X, P, cls, col, grad, H, W = _model(n, m, C, seed)
    key, hw, gw, gb, w0 = _pieces(X, P, cls, col, grad, W, seed=seed)
    l1, l2, tol = 0.02, 0.05, 1e-10
    u, Db, sweeps, viol = data_qp(X.T.contiguous(), P, cls, col, hw, gw, gb, w0, l1, l2,
                                  tol=tol, max_sweeps=20_000)
    assert viol <= tol and sweeps > 1
    assert _model_kkt(H, key, C, m, gw, gb, w0, u, Db, l1, l2) <= 1e-6
    # the Gram route on the same model: biases minimized out
    idx_b = C * m + np.arange(C)
    Hww, Hwb, Hbb = H[np.ix_(key, key)], H[np.ix_(key, idx_b)], H[np.ix_(idx_b, idx_b)]
    Hbb_inv = np.linalg.pinv(Hbb)
    Q = Hww - Hwb @ Hbb_inv @ Hwb.T
    ug, _, _ = enet_qp(Q, Q @ w0 - (gw - Hwb @ (Hbb_inv @ gb)), w0, l1, l2, tol=1e-12)
    Dbg = -Hbb_inv @ (gb + Hwb.T @ (ug - w0))
    ref = _model_value(H, key, C, m, gw, gb, w0, ug, Dbg, l1, l2)
    got = _model_value(H, key, C, m, gw, gb, w0, u, Db, l1, l2)
    assert got == pytest.approx(ref, rel=1e-7, abs=1e-12)
    np.testing.assert_allclose(u, ug, atol=1e-5)


@built
@pytest.mark.parametrize("seed", [3, 4])
def test_compiled_sweeps_match_the_numpy_reference(seed):
    sweeps = built_sweeps
    X, P, cls, col, grad, _H, W = _model(40, 30, 5, seed)
    key, hw, gw, gb, w0 = _pieces(X, P, cls, col, grad, W, seed=seed)
    C, Nw = P.shape[1], key.size
    XT, PT = X.T.contiguous().numpy(), np.ascontiguousarray(P.numpy().T)
    cls_a = np.concatenate([cls.numpy(), np.arange(C)]).astype(np.int64)
    col_a = np.concatenate([col.numpy(), np.full(C, -1)]).astype(np.int64)
    a = np.concatenate([gw, gb])
    h = np.concatenate([hw, (PT.astype(np.float64) * (1 - PT)).sum(1) / 40])
    l1v = np.r_[np.full(Nw, 0.01), np.zeros(C)]
    l2v = np.r_[np.full(Nw, 1e-3), np.zeros(C)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(Nw + C)[: (Nw + C) // 2 + 3].astype(np.int64)  # a subset, shuffled
    out = []
    for fn in (sweeps, _sweeps_numpy):
        UT, s, w = np.zeros((C, 40)), np.zeros(40), np.r_[w0, np.zeros(C)]
        v = fn(XT, PT, UT, s, cls_a, col_a, a, h, l1v, l2v, w, order, 40, 4)
        out.append((v, w, UT, s))
    for x, y in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)
    w = out[0][1]
    untouched = np.setdiff1d(np.arange(Nw + C), order)
    np.testing.assert_array_equal(w[untouched], np.r_[w0, np.zeros(C)][untouched])
    # U and s are the step's (C, n) products: U = (w - w0) x̃, s = Σ_k p_k u_k
    D = w - np.r_[w0, np.zeros(C)]
    Dm = np.zeros((C, 30))
    Dm[cls.numpy(), col.numpy()] = D[:Nw]
    U = X.numpy().astype(np.float64) @ Dm.T + D[Nw:]
    np.testing.assert_allclose(out[0][2], U.T, atol=1e-12)
    np.testing.assert_allclose(out[0][3], (PT * out[0][2]).sum(0), atol=1e-12)


@built
def test_compiled_sweeps_reject_bad_input_by_name():
    sweeps = built_sweeps

    C, n, m = 2, 5, 3
    XT, PT = np.zeros((m, n), np.float32), np.full((C, n), 0.5, np.float32)
    UT, s = np.zeros((C, n)), np.zeros(n)
    cls, col = np.array([0, 1], np.int64), np.array([0, -1], np.int64)
    v = np.zeros(2)
    order = np.arange(2, dtype=np.int64)
    args = [XT, PT, UT, s, cls, col, v, v, v, v, v.copy(), order, n, 1]
    assert sweeps(*args) == 0.0
    bad = {0: XT.astype(np.float64), 2: np.zeros((C, n), np.float32), 5: np.array([0, 3]),
           11: np.array([0, 2], np.int64)}
    names = {0: "XT", 2: "UT", 5: "col", 11: "order"}
    for i, value in bad.items():
        args2 = list(args)
        args2[i] = value
        with pytest.raises(ValueError, match=names[i] if i != 5 else "column 3|col"):
            sweeps(*args2)
    args2 = list(args)
    args2[5] = np.array([0, -2], np.int64)
    with pytest.raises(ValueError, match="outside"):
        sweeps(*args2)


def test_data_qp_counts_its_work_and_stops_at_its_sweep_budget():
    X, P, cls, col, grad, H, W = _model(30, 25, 3, 5)
    key, hw, gw, gb, w0 = _pieces(X, P, cls, col, grad, W)
    work = DataWork()
    N = key.size + 3
    u, Db, sweeps, viol = data_qp(X.T.contiguous(), P, cls, col, hw, gw, gb, w0, 0.02, 1e-4,
                                  tol=1e-14, max_sweeps=3, work=work)
    assert sweeps == 3 and viol > 1e-14
    # the first pass visits every coordinate; the others the nonzero weights and the biases
    assert N * 30 <= work.entries <= 3 * N * 30
    # the budget is a bound on passes, and what was reached is still a descent on the model
    assert _model_value(H, key, 3, 25, gw, gb, w0, u, Db, 0.02, 1e-4) < \
        _model_value(H, key, 3, 25, gw, gb, w0, w0, np.zeros(3), 0.02, 1e-4)


@pytest.mark.parametrize("at", [1, 2, 4])
def test_data_qp_stops_where_its_caller_says(at):
    """``stop`` is asked after every pass: stopped at the ``at``-th it returns what that many
    passes reach (the same point as ``max_sweeps=at``), its reads counted up to there; a
    stop that never fires changes nothing."""
    X, P, cls, col, grad, _H, W = _model(30, 25, 3, 5)
    _key, hw, gw, gb, w0 = _pieces(X, P, cls, col, grad, W)
    args = (X.T.contiguous(), P, cls, col, hw, gw, gb, w0, 0.02, 1e-4)
    asked = []

    def stop():
        asked.append(1)
        return len(asked) >= at

    work, ref_work = DataWork(), DataWork()
    u, Db, sweeps, _ = data_qp(*args, tol=1e-14, max_sweeps=50, work=work, stop=stop)
    ru, rDb, rsweeps, _ = data_qp(*args, tol=1e-14, max_sweeps=at, work=ref_work)
    assert sweeps == rsweeps == at == len(asked) and work.entries == ref_work.entries
    np.testing.assert_array_equal(u, ru)
    np.testing.assert_array_equal(Db, rDb)
    full = data_qp(*args, tol=1e-12, max_sweeps=500)
    never = data_qp(*args, tol=1e-12, max_sweeps=500, stop=lambda: False)
    assert full[2] == never[2] > at
    np.testing.assert_array_equal(full[0], never[0])


def test_the_routes_choice_and_sweep_budget():
    assert not data_pays(500, 500) and data_pays(500, 501) and not data_pays(10_000, 1_500)
    assert data_sweep_cap(10) == DATA_MIN_SWEEPS
    N = 4_000
    assert data_sweep_cap(N) == int(WORK_HESSIAN * N / (2 * DATA_ENTRY)) > DATA_MIN_SWEEPS
    # a data-space solve's examples are priced into Newton's observed cost
    base = dict(hessian=0.0, stream=0.0, stream_cached=0.0, blas3=0.0)
    more = newton_observed_cost(500, 300, 10, 2, dict(base, data=1e9)) - \
        newton_observed_cost(500, 300, 10, 2, base)
    from sparse_probe.solvers.choice import owlqn_iteration_cost

    assert more == pytest.approx(DATA_ENTRY * 1e9 / owlqn_iteration_cost(500, 300, 10))


def _wide(n=120, m=400, C=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    W = torch.zeros(C, m, dtype=torch.float64)
    W[:, :20] = torch.randn(C, 20, generator=g, dtype=torch.float64)
    y = torch.argmax(X.double() @ W.T + 0.5 * torch.randn(n, C, generator=g,
                                                          dtype=torch.float64), 1)
    return X, y, C


def _solve(X, y, C, lam, **kw):
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    return data, newton(data, W0, b0, lam, ElasticNet(0.99), tol=1e-7, **kw)


@compiled
@pytest.mark.parametrize("seed", [0, 7])
def test_newton_in_data_space_reaches_the_gram_routes_optimum(seed, monkeypatch):
    X, y, C = _wide(seed=seed)
    lam = 0.02
    data, a = _solve(X, y, C, lam)
    assert a.converged and a.work["data"] > 0  # the model had more free weights than rows
    assert int((a.W != 0).sum()) + C > X.shape[0] or a.work["hessian"] == 0
    monkeypatch.setattr(newton_module, "data_pays", lambda n, N: False)
    _, ref = _solve(X, y, C, lam)
    assert ref.work["data"] == 0 and ref.work["hessian"] > 0
    pen = ElasticNet(0.99)

    def exact(r):
        loss, _, _ = data.loss_grad(r.W, r.b, need_grad=False)
        return loss + pen.value(r.W, lam)

    assert exact(a) == pytest.approx(exact(ref), rel=1e-8)
    # verified independently: float64 gradient at the solution
    _, G, gb = data.loss_grad(a.W, a.b)
    assert max(float(kkt_violation(G.numpy(), a.W.numpy(), lam, 0.99).max()),
               float(gb.abs().max())) <= 1e-7


@compiled
def test_a_crawling_data_space_solve_goes_to_the_gram_route(monkeypatch, caplog):
    """Where the data-space solve does not reach its tolerance within its budget, the step
    is finished on the Gram route from where it stopped, and the point stays there."""
    X, y, C = _wide(seed=3)
    monkeypatch.setattr(newton_module, "data_sweep_cap", lambda N: 1)
    with caplog.at_level(logging.DEBUG, logger="sparse_probe.solvers.newton"):
        _data, a = _solve(X, y, C, 0.02)
    assert a.converged and a.work["data"] > 0 and a.work["hessian"] > 0
    assert sum("data-space model unsolved" in r.message for r in caplog.records) == 1
    assert a.work["crawled"] is True  # what the path's choice reads (choice.newton_cost)
    monkeypatch.setattr(newton_module, "data_pays", lambda n, N: False)
    _, ref = _solve(X, y, C, 0.02)
    torch.testing.assert_close(a.W, ref.W, rtol=0, atol=1e-5)


def test_without_the_compiled_sweeps_newton_forms_the_hessian(monkeypatch):
    monkeypatch.setitem(data_cd._STATE, "sweeps", None)
    assert not data_cd.compiled()
    X, y, C = _wide(seed=1)
    _, a = _solve(X, y, C, 0.02)
    assert a.converged and a.work["data"] == 0 and a.work["hessian"] > 0
    assert a.work["crawled"] is False


@compiled
def test_an_n_much_smaller_than_d_path_in_data_space_is_verified(monkeypatch):
    """A default path where the free weights outnumber the examples: every point's KKT
    conditions hold on an independent float64 gradient, and the objectives equal a path
    with the data-space route switched off."""
    from helpers_kkt import kkt_ratios

    X, y, _C = _wide(n=90, m=600, C=4, seed=11)
    Xn, yn = X.numpy(), y.numpy()
    kw = dict(alpha=0.99, n_lambdas=12, eps=1e-2, progress=False, threads=1)
    solves = []
    real = newton_module.data_qp
    monkeypatch.setattr(newton_module, "data_qp",
                        lambda *a, **k: solves.append(a[2].numel()) or real(*a, **k))
    p = fit_path(Xn, yn, **kw)
    assert solves and max(solves) > X.shape[0]  # the route ran, on models wider than n
    assert (kkt_ratios(Xn, yn, p) <= 1.0).all()
    monkeypatch.setattr(newton_module, "data_pays", lambda n, N: False)
    ref = fit_path(Xn, yn, **kw)
    for i in range(len(p)):
        a = objective_f64(Xn, yn, p.weights[i], p.intercepts[i], p.lambdas[i], 0.99,
                          mean=p.mean, scale=p.scale)
        r = objective_f64(Xn, yn, ref.weights[i], ref.intercepts[i], ref.lambdas[i], 0.99,
                          mean=ref.mean, scale=ref.scale)
        assert a == pytest.approx(r, rel=1e-7)


@compiled
@pytest.mark.parametrize("cap", [None, 1])
def test_a_paths_choice_prices_data_route_points_by_what_its_solves_did(monkeypatch, cap):
    """fit_path's choices read ``data_crawls`` from the first Newton point whose data-space
    solve crawled into the Gram route (that point's ratio already priced by it), and average
    each point's price corrections over the points priced by its own formula
    (``choice.cost_route``). ``cap`` 1: every data-space solve crawls (one pass allowed)."""
    from sparse_probe.solvers.choice import cost_route

    fit_module = sys.modules["sparse_probe.fit"]
    if cap is not None:
        monkeypatch.setattr(newton_module, "data_sweep_cap", lambda N: cap)
    X, y, _C = _wide(n=90, m=600, C=4, seed=11)
    events = []
    real_ratio, real_seen, real_prefer = (fit_module.newton_cost_ratio,
                                          fit_module.newton_over_seen, fit_module.prefer_newton)

    def ratio(n, m, C_, n_free, steps, work, **kw):
        events.append(("ratio", bool(work.get("crawled")), kw["data_crawls"],
                       cost_route(n, C_, n_free, kw["data_crawls"])))
        return real_ratio(n, m, C_, n_free, steps, work, **kw)

    def seen(fresh, counted, **kw):
        events.append(("seen", list(kw["routes"]), kw["route"]))
        return real_seen(fresh, counted, **kw)

    def prefer(n, m, C_, n_free, owlqn_iters, **kw):
        events.append(("prefer", kw["data_crawls"], cost_route(n, C_, n_free, kw["data_crawls"])))
        return real_prefer(n, m, C_, n_free, owlqn_iters, **kw)

    monkeypatch.setattr(fit_module, "newton_cost_ratio", ratio)
    monkeypatch.setattr(fit_module, "newton_over_seen", seen)
    monkeypatch.setattr(fit_module, "prefer_newton", prefer)
    fit_path(X.numpy(), y.numpy(), alpha=0.99, n_lambdas=12, eps=1e-2, progress=False,
             threads=1)
    ratios = [e for e in events if e[0] == "ratio"]
    assert ratios, "no Newton point ran"
    crawled = False
    routes = []  # the formula of each Newton point so far (its two ratios share it)
    for i, e in enumerate(events):
        if e[0] == "ratio":
            crawled = crawled or e[1]
            assert e[2] is crawled  # this point's crawl prices it already
            if not routes or events[i - 1][0] != "ratio":
                routes.append(e[3])
        elif e[0] == "seen":
            assert e[1] == routes
            nxt = events[i + 1]
            assert nxt[0] == "prefer" and nxt[1] is crawled and e[2] == nxt[2]
    if cap == 1:
        assert crawled and "data+gram" in routes
        assert any(e[0] == "prefer" and e[2] == "data+gram" for e in events)


def test_the_choice_prices_a_data_space_model_without_a_hessian(monkeypatch):
    """From one more free weight than examples (and with the compiled sweeps) Newton's
    estimate is its products and DATA_PASSES passes over the examples, with no Hessian and no
    max_free; without the sweeps, or at as many weights as examples, the Hessian's."""
    from sparse_probe.solvers import choice

    n, m, C = 500, 3000, 10
    if data_cd.compiled():
        assert choice.data_route(n, C, n + C + 1) and not choice.data_route(n, C, n + C)
        step = 2.4 * 4 * n * m * C + 15 * 35 * n * (n + C + 1) + 6.12e7
        want = (3.5 * step + 5.44e8) / choice.owlqn_iteration_cost(n, m, C)
        assert choice.newton_cost(n, m, C, n + C + 1) == pytest.approx(want, rel=1e-12)
        # over max_free, a data-space model may still run: no (N, N) matrix to outgrow
        big = 5000
        cost = choice.newton_cost(n, m, C, big)
        assert choice.prefer_newton(n, m, C, big, 10 * cost, max_free=4096)
        assert choice.owlqn_budget(n, m, C, big, max_free=4096) is not None
    gram = choice.newton_cost(n, m, C, n + C)
    N = n + C + 1
    monkeypatch.setitem(data_cd._STATE, "sweeps", None)
    assert not choice.data_route(n, C, N)
    step = 2.4 * 4 * n * m * C + 534 * 0.8 * N * N + 6.12e7
    want = (2.28 * 0.6 * n * N * N / 2 + 3.5 * step + 5.44e8) / choice.owlqn_iteration_cost(n, m, C)
    assert choice.newton_cost(n, m, C, N) == pytest.approx(want, rel=1e-12)
    assert gram < choice.newton_cost(n, m, C, N)
    cost = choice.newton_cost(n, m, C, 5000)
    assert not choice.prefer_newton(n, m, C, 5000, 10 * cost, max_free=4096)
    assert choice.owlqn_budget(n, m, C, 5000, max_free=4096) is None


@compiled
def test_a_crawling_solve_over_max_free_goes_to_owlqn(monkeypatch, caplog):
    """A data-space model may exceed max_free (it has no (N, N) matrix); where its solve
    crawls, the Gram route would need one: OWL-QN finishes the point instead."""
    X, y, C = _wide(seed=3)
    monkeypatch.setattr(newton_module, "data_sweep_cap", lambda N: 1)
    with caplog.at_level(logging.DEBUG, logger="sparse_probe.solvers.newton"):
        data, a = _solve(X, y, C, 0.02, max_free=C + X.shape[0] + 1)
    assert sum("data-space model unsolved" in r.message for r in caplog.records) == 1
    assert a.converged and "owlqn" in a.iterations and a.iterations.get("newton", 0) == 0
    _, ref = _solve(X, y, C, 0.02)
    pen = ElasticNet(0.99)
    f = [data.loss_grad(r.W, r.b, need_grad=False)[0] + pen.value(r.W, 0.02) for r in (a, ref)]
    assert f[0] == pytest.approx(f[1], rel=1e-7)


@compiled
def test_a_crawl_after_a_data_space_step_hands_over_from_that_step(monkeypatch):
    """A step solved in data space, then a model that crawls over max_free: Newton's one step
    stands, OWL-QN finishes from there (no Gram route within max_free), at the optimum."""
    X, y, C = _wide(seed=3)
    caps = iter([10_000])  # the first solve to its target, every later one a sweep
    monkeypatch.setattr(newton_module, "data_sweep_cap", lambda N: next(caps, 1))
    data, a = _solve(X, y, C, 0.02, max_free=C + X.shape[0] + 1)
    assert a.converged and a.iterations["newton"] == 1 and a.iterations["owlqn"] > 0
    assert a.n_iter == 1 + a.iterations["owlqn"]
    _, ref = _solve(X, y, C, 0.02)
    pen = ElasticNet(0.99)
    f = [data.loss_grad(r.W, r.b, need_grad=False)[0] + pen.value(r.W, 0.02) for r in (a, ref)]
    assert f[0] == pytest.approx(f[1], rel=1e-7)


def test_a_budget_stops_a_data_space_solve_and_declines_the_crawls_hessian(monkeypatch):
    """Newton's budget (max_cost) reaches into its model solves in data space: a budget one
    pass of the first solve passes stops that solve there (no crawl, no Gram route), and one
    that the crawling solve fits but not the Gram route's fresh Hessian declines it (priced as
    spent); OWL-QN finishes each point at the optimum."""
    X, y, C = _wide(seed=3)
    n, m = X.shape
    _, ref = _solve(X, y, C, 0.02)
    pen = ElasticNet(0.99)

    def value(data, r):
        return data.loss_grad(r.W, r.b, need_grad=False)[0] + pen.value(r.W, 0.02)

    # a budget below a step's fixed price: the first data-space solve stops after its
    # first pass (over every free coordinate: at most m C + C of them, each n examples)
    passes = []
    real_qp = newton_module.data_qp

    def counted_qp(*args, **kw):
        out = real_qp(*args, **kw)
        passes.append(out[2])
        return out

    monkeypatch.setattr(newton_module, "data_qp", counted_qp)
    data, a = _solve(X, y, C, 0.02, max_cost=0.5 * newton_observed_cost(n, m, C, 1, {}))
    assert passes == [1]
    assert a.iterations == {"newton": 1, "owlqn": a.iterations["owlqn"]} and a.converged
    assert not a.work["crawled"] and a.work["hessian"] == 0
    assert 0 < a.work["data"] <= n * (m * C + C) and a.work["data"] % n == 0
    assert value(data, a) == pytest.approx(value(data, ref), rel=1e-7)
    # every solve crawls after one pass; the budget fits that pass, not the Hessian after it
    monkeypatch.setattr(newton_module, "data_sweep_cap", lambda N: 1)
    _, crawl = _solve(X, y, C, 0.02, max_free=10_000)
    assert crawl.work["crawled"] and crawl.work["hessian"] > 0
    data_only = {"data": crawl.work["data"]}  # its one pass (the Gram route after it)
    data, b = _solve(X, y, C, 0.02, max_free=10_000,
                     max_cost=(1 + 1e-6) * newton_observed_cost(n, m, C, 1, data_only))
    assert b.iterations["newton"] == 1 and b.iterations["owlqn"] > 0 and b.converged
    assert b.work["crawled"] and b.work["stream"] == b.work["stream_cached"] == 0
    N = (b.work["hessian"] / (n / 2)) ** 0.5  # the declined Hessian, counted: n N²/2
    assert abs(N - round(N)) < 1e-6 and round(N) > n
    assert value(data, b) == pytest.approx(value(data, ref), rel=1e-7)


def _kernels():
    """The sweeps to check: the numpy reference, and the compiled ones as built."""
    return [_sweeps_numpy] + ([built_sweeps] if built_sweeps is not None else [])


def _one_coordinate(fn, w, a, h=0.5, l1=0.1, l2=0.01, col=0, count=1):
    """One coordinate (class 0, column ``col``) of a 4-example model: the violation ``fn``
    reports and the weight it leaves."""
    XT = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    PT = np.array([[0.2, 0.7, 0.4, 0.5], [0.8, 0.3, 0.6, 0.5]], np.float32)
    wv = np.array([w])
    v = fn(XT, PT, np.zeros((2, 4)), np.zeros(4), np.array([0], np.int64),
           np.array([col], np.int64), np.array([a]), np.array([h]), np.array([l1]),
           np.array([l2]), wv, np.array([0], np.int64), 4, count)
    return v, float(wv[0])


@pytest.mark.parametrize("fn", _kernels(), ids=lambda f: f.__module__)
def test_a_coordinates_violation_and_update_are_the_closed_forms(fn):
    """At U = 0 the model's gradient is ``a``: the minimum-norm subgradient of
    ``a + l2 w + l1 sign(w)`` on each side of zero and at it, and the exact 1-D minimizer
    ``soft(h w - a, l1) / (h + l2)``."""
    h, l1, l2 = 0.5, 0.1, 0.01
    for w, a in [(0.4, 0.3), (0.4, -0.3), (-0.4, 0.3), (-0.4, -0.05), (0.0, 0.3), (0.0, -0.3),
                 (0.0, 0.05), (0.0, -0.05)]:
        g = a + l2 * w
        want = abs(g + l1) if w > 0 else abs(g - l1) if w < 0 else max(abs(g) - l1, 0.0)
        v, nw = _one_coordinate(fn, w, a, h, l1, l2)
        assert v == pytest.approx(want, rel=1e-12, abs=1e-15), (w, a)
        z = h * w - a
        assert nw == pytest.approx(np.sign(z) * max(abs(z) - l1, 0) / (h + l2), rel=1e-12,
                                   abs=1e-15), (w, a)
    # a bias (column -1): no penalty, x = 1
    v, nw = _one_coordinate(fn, 0.0, 0.3, h, 0.0, 0.0, col=-1)
    assert v == pytest.approx(0.3) and nw == pytest.approx(-0.3 / h)
    # no curvature and no ridge: left alone (no division by zero), later coordinates still
    # move; a NaN gradient is reported, not hidden
    v, nw = _one_coordinate(fn, 0.2, 0.3, 0.0, l1, 0.0)
    assert nw == 0.2 and v == pytest.approx(0.4)
    v, _ = _one_coordinate(fn, 0.2, float("nan"))
    assert v != v
    # no passes: nothing met, nothing moved
    assert _one_coordinate(fn, 0.2, 0.3, count=0) == (0.0, 0.2)


@pytest.mark.parametrize("fn", _kernels(), ids=lambda f: f.__module__)
def test_a_coordinate_without_curvature_does_not_stop_the_pass(fn):
    XT = np.array([[1.0, -2.0, 0.5, 3.0], [0.5, 1.0, -1.0, 2.0]], np.float32)
    PT = np.array([[0.2, 0.7, 0.4, 0.5], [0.8, 0.3, 0.6, 0.5]], np.float32)
    w = np.array([0.2, 0.0])
    fn(XT, PT, np.zeros((2, 4)), np.zeros(4), np.array([0, 1], np.int64),
       np.array([0, 1], np.int64), np.array([0.3, 0.5]), np.array([0.0, 0.5]),
       np.array([0.1, 0.1]), np.array([0.0, 0.0]), w, np.array([0, 1], np.int64), 4, 1)
    assert w[0] == 0.2 and w[1] == pytest.approx(-0.4 / 0.5)


def test_the_self_check_refuses_a_kernel_that_differs_anywhere():
    assert data_cd._agrees(_sweeps_numpy)
    if built_sweeps is not None:  # the built kernel passes its self-check
        assert data_cd._agrees(built_sweeps)

    def wrong(change):
        def run(*args):
            args = list(args)
            v = change(args)
            out = _sweeps_numpy(*args)
            return out if v is None else v(out)
        return run

    def drop_biases(a):  # the biases never visited
        a[11] = a[11][a[5][a[11]] >= 0].astype(np.int64)

    def no_l1(a):
        a[8] = np.zeros_like(a[8])

    def one_pass_less(a):
        a[13] -= 1

    def more_ridge(a):
        a[9] = a[9] * 2 + 1e-3

    def off_violation(a):
        return lambda v: v * (1 + 1e-6)

    def off_s(a):
        s = a[3]
        return lambda v: (s.__iadd__(1e-9), v)[1]

    def off_u(a):
        UT = a[2]
        return lambda v: (UT.__iadd__(1e-9), v)[1]

    for change in (drop_biases, no_l1, one_pass_less, more_ridge, off_violation, off_s, off_u):
        assert not data_cd._agrees(wrong(change)), change.__name__


def test_the_kernel_is_the_compiled_one_once_checked(monkeypatch, caplog):
    if built_sweeps is not None:
        monkeypatch.setattr(data_cd, "_STATE", {})
        assert data_cd._kernel() is built_sweeps
    monkeypatch.setattr(data_cd, "_STATE", {})
    monkeypatch.setitem(sys.modules, "sparse_probe.solvers._data_cd", None)  # not built
    with caplog.at_level(logging.DEBUG, logger="sparse_probe.solvers.data_cd"):
        assert data_cd._kernel() is _sweeps_numpy and not data_cd.compiled()
    assert "the compiled _data_cd.sweeps not built; using the numpy sweeps" in caplog.text
    monkeypatch.undo()
    if built_sweeps is not None:
        monkeypatch.setattr(data_cd, "_STATE", {})
        monkeypatch.setattr(data_cd, "_agrees", lambda fn: False)
        with caplog.at_level(logging.WARNING, logger="sparse_probe.solvers.data_cd"):
            assert data_cd._kernel() is _sweeps_numpy
        assert ("the compiled _data_cd.sweeps disagrees with its numpy reference on a "
                "self-check; using the numpy sweeps") in caplog.text


class _Scripted:
    """A stand-in for the sweeps: returns the violations it is given, in order, for passes
    over every coordinate (``full``) and over the active part (``active``); records each
    call's order and curvatures, and makes weight 1 nonzero on the first pass."""

    def __init__(self, full, active):
        self.full, self.active, self.calls = list(full), list(active), []

    def __call__(self, XT, PT, UT, s, cls, col, a, h, l1, l2, w, order, n, count):
        assert count == 1
        self.calls.append((order.copy(), h.copy()))
        w[1] = 1.0
        return (self.full if len(order) == len(w) - 1 else self.active).pop(0)


def _scripted_solve(monkeypatch, full, active, tol=1e-3, max_sweeps=100):
    X, P, cls, col, grad, _H, W = _model(20, 6, 3, 9, share=0.5)
    key, hw, gw, gb, w0 = _pieces(X, P, cls, col, grad, W, zero_share=1.0)
    fake = _Scripted(full, active)
    monkeypatch.setattr(data_cd, "_kernel", lambda: fake)
    work = DataWork()
    out = data_qp(X.T.contiguous(), P, cls, col, hw, gw, gb, w0, 0.01, 1e-3, tol=tol,
                  max_sweeps=max_sweeps, work=work)
    return out, fake, key.size, work, P


def test_the_solve_cycles_active_passes_between_full_ones(monkeypatch):
    # full 1.0 -> active 0.5, 0.4, 0.4 (no better: back to a full pass) -> full 1e-3 (met)
    (_, _, made, viol), fake, Nw, work, P = _scripted_solve(monkeypatch, [1.0, 1e-3],
                                                            [0.5, 0.4, 0.4])
    assert made == 5 and viol == 1e-3 and not fake.full and not fake.active
    N = Nw + 3
    full = np.arange(N - 1)  # every coordinate but the last class's bias (pinned)
    np.testing.assert_array_equal(fake.calls[0][0], full)
    np.testing.assert_array_equal(fake.calls[4][0], full)
    # the active part: the weights that moved (weight 1) and the biases but the pinned one
    np.testing.assert_array_equal(fake.calls[1][0], [1, Nw, Nw + 1])
    assert work.entries == 20 * (2 * (N - 1) + 3 * 3)
    # the biases' curvature, mean p (1 - p), after the weights'
    p = P.double().numpy()
    np.testing.assert_allclose(fake.calls[0][1][Nw:], (p * (1 - p)).mean(0), rtol=1e-12)
    # an active pass that meets the tolerance also ends the active passes
    (_, _, made, _), fake, *_ = _scripted_solve(monkeypatch, [1.0, 0.5], [1e-3], tol=1e-3,
                                                max_sweeps=3)
    assert made == 3 and not fake.active


def test_the_solve_stops_after_two_full_passes_no_better_or_at_its_budget(monkeypatch):
    # full passes 1.0, 0.5, 0.6, 0.7: the last two no better than 0.5 -> stop there (between
    # them, active passes until one is no better than the last: two at a constant 0.9)
    (_, _, made, viol), fake, *_ = _scripted_solve(
        monkeypatch, [1.0, 0.5, 0.6, 0.7, 0.1], [0.9] * 7)
    assert viol == 0.7 and fake.full == [0.1] and made == 4 + 6 and len(fake.active) == 1
    # one no better, then better again: the count starts over
    (_, _, made, viol), fake, *_ = _scripted_solve(
        monkeypatch, [1.0, 0.5, 0.6, 0.4, 0.45, 0.5, 0.1], [0.9] * 10)
    assert viol == 0.5 and fake.full == [0.1] and made == 6 + 10
    # the budget: exactly max_sweeps passes
    (_, _, made, viol), fake, *_ = _scripted_solve(monkeypatch, [1.0, 0.9], [0.8, 0.7, 0.6],
                                                   max_sweeps=4)
    assert made == 4 and viol == 1.0
    (_, _, made, viol), fake, *_ = _scripted_solve(monkeypatch, [1.0, 0.9], [0.8, 0.7, 0.6],
                                                   max_sweeps=1)
    assert made == 1 and viol == 1.0 and len(fake.calls) == 1


def test_an_equal_full_pass_is_no_better_and_a_nan_never_is(monkeypatch):
    # a violation that repeats exactly (the sums' floor) counts as no better
    (_, _, made, viol), fake, *_ = _scripted_solve(monkeypatch, [1.0, 0.5, 0.5, 0.5, 0.1],
                                                   [0.9] * 9)
    assert viol == 0.5 and fake.full == [0.1] and made == 4 + 6
    # a NaN is never better than anything: two full passes (one active pass between)
    nan = float("nan")
    (_, _, made, viol), fake, *_ = _scripted_solve(monkeypatch, [nan, nan, 0.1], [nan] * 2)
    assert viol != viol and made == 3 and fake.full == [0.1]


def _call_args():
    """A valid call of the compiled sweeps on a 3-example model: 2 weights and 2 biases."""
    C, n = 2, 3  # and m = 2 columns
    return [np.array([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], np.float32),  # XT (m, n)
            np.array([[0.2, 0.7, 0.4], [0.8, 0.3, 0.6]], np.float32),  # PT (C, n)
            np.zeros((C, n)), np.zeros(n),  # UT, s
            np.array([0, 1, 0, 1], np.int64), np.array([0, 1, -1, -1], np.int64),  # cls, col
            np.array([0.3, -0.4, 0.1, -0.1]), np.full(4, 0.4),  # a, h
            np.array([0.05, 0.05, 0.0, 0.0]), np.array([0.01, 0.01, 0.0, 0.0]),  # l1, l2
            np.zeros(4), np.arange(4, dtype=np.int64), n, 2]  # w, order, n, count


NAMES = ["XT", "PT", "UT", "s", "cls", "col", "a", "h", "l1", "l2", "w", "order"]
WRITTEN = {"UT", "s", "w"}


@built
def test_compiled_sweeps_check_each_buffer_and_take_read_only_inputs():
    ref = _call_args()
    v_ref = built_sweeps(*ref)
    args = _call_args()
    for i, name in enumerate(NAMES):  # the inputs read-only: the same result
        if name not in WRITTEN:
            args[i].setflags(write=False)
    assert built_sweeps(*args) == v_ref
    for i in (2, 3, 10):
        np.testing.assert_array_equal(args[i], ref[i])
    for i, name in enumerate(NAMES):
        bad = _call_args()
        bad[i] = None
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            built_sweeps(*bad)
        if name in WRITTEN:  # written in place: read-only refused
            bad = _call_args()
            bad[i].setflags(write=False)
            with pytest.raises(ValueError, match=rf"\b{name}\b.*writable"):
                built_sweeps(*bad)
        if name in ("UT", "s", "col", "a", "h", "l1", "l2", "w"):  # sized by n, C or N
            bad = _call_args()
            bad[i] = np.concatenate([bad[i].ravel(), bad[i].ravel()[:1]])
            with pytest.raises(ValueError, match=rf"\b{name}\b.*entries"):
                built_sweeps(*bad)
    # XT and PT must hold whole rows of n
    bad = _call_args()
    bad[0] = np.zeros(7, np.float32)
    with pytest.raises(ValueError, match="whole rows"):
        built_sweeps(*bad)
    # every coordinate's class and column, and every entry of order, at each end and first
    for i, values, what in ((4, ([2, 1, 0, 1], [-1, 1, 0, 1], [0, 1, 0, 2]), "outside C"),
                            (5, ([2, 1, -1, -1], [-2, 1, -1, -1], [0, 1, -1, 2]), "outside C"),
                            (11, ([4, 1, 2, 3], [-1, 1, 2, 3], [0, 1, 2, 4]), "outside N")):
        for v in values:
            bad = _call_args()
            bad[i] = np.array(v, np.int64)
            with pytest.raises(ValueError, match=what):
                built_sweeps(*bad)
    for n, count in ((0, 1), (3, -1)):
        bad = _call_args()
        bad[12], bad[13] = n, count
        with pytest.raises(ValueError, match="n must be positive"):
            built_sweeps(*bad)


@pytest.mark.parametrize("fn", _kernels(), ids=lambda f: f.__module__)
def test_one_example_and_a_step_of_exactly_one(fn):
    """n = 1 is a model too; and a step of exactly 1.0 is taken like any other (the update is
    skipped only where the weight does not move)."""
    w = np.array([0.0])
    fn(np.array([[2.0]], np.float32), np.array([[0.5], [0.5]], np.float32), np.zeros((2, 1)),
       np.zeros(1), np.array([0], np.int64), np.array([0], np.int64), np.array([0.1]),
       np.array([0.5]), np.array([0.0]), np.array([0.0]), w, np.array([0], np.int64), 1, 1)
    assert w[0] == pytest.approx(-0.2)
    # soft(0.5 * 0 + 0.75, 0.25) / 0.5 = 1.0 exactly: the weight, U and s all move by it
    UT, s, w = np.zeros((2, 4)), np.zeros(4), np.array([0.0])
    XT = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    PT = np.array([[0.25, 0.75, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5]], np.float32)
    fn(XT, PT, UT, s, np.array([0], np.int64), np.array([0], np.int64), np.array([-0.75]),
       np.array([0.5]), np.array([0.25]), np.array([0.0]), w, np.array([0], np.int64), 4, 1)
    assert w[0] == 1.0
    np.testing.assert_array_equal(UT[0], XT[0])
    np.testing.assert_allclose(s, XT[0] * PT[0], rtol=1e-15)


@built
def test_compiled_sweeps_release_every_buffer():
    """Each call releases the views it took: no array keeps an extra reference, after a
    call that succeeded and after one refused."""
    args = _call_args()
    before = [sys.getrefcount(a) for a in args[:12]]
    for _ in range(3):
        built_sweeps(*args)
    bad = list(args)
    bad[11] = np.array([0, 9], np.int64)  # refused after every buffer was taken
    with pytest.raises(ValueError):
        built_sweeps(*bad)
    del bad  # its own references to the same arrays
    assert [sys.getrefcount(a) for a in args[:12]] == before
