"""The default's bounds on a wrong per-point solver choice (``sparse_probe/solvers/choice.py``):
OWL-QN probed where its iteration count is stale (``owlqn_probe``), a Newton point handed to
OWL-QN past its budget (``newton_budget``, ``newton(max_cost=...)``, the model solves'
``stop``), and the floor such a hand-over puts under Newton's price (``newton_over_seen``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers_bench import load_bench

from sparse_probe import fit_path
from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers import choice
from sparse_probe.solvers.choice import (
    cost_route,
    newton_budget,
    newton_cost,
    newton_observed_cost,
    newton_over_seen,
    owlqn_probe,
)
from sparse_probe.solvers.gram_cd import active_set_qp, enet_qp, qp_violation
from sparse_probe.solvers.newton import newton
from sparse_probe.solvers.owlqn import owlqn
from sparse_probe.solvers.restricted import RestrictedData

FIT = sys.modules["sparse_probe.fit"]
SIZE = (10_000, 100, 10)  # n, m, C of the unit tests of the rules


# ----------------------------------------------------------------------------- owlqn_probe
def test_probe_needs_a_count_and_a_model_grown_twofold():
    n, m, C = SIZE
    est = newton_cost(n, m, C, 1200, 5)
    assert owlqn_probe(n, m, C, 1200, None, 100, newton_steps=5) is None
    assert owlqn_probe(n, m, C, 1200, 1, None, newton_steps=5) is None
    assert owlqn_probe(n, m, C, 1200, 1, 0, newton_steps=5) is None
    # a count of 1 iteration: Newton's estimate is far above any growth of it
    assert owlqn_probe(n, m, C, 1200, 1, 600, newton_steps=5) == round(est)  # grown 2x
    assert owlqn_probe(n, m, C, 1200, 1, 601, newton_steps=5) is None  # grown 1.997x


def test_probe_where_the_slowest_growth_would_change_the_choice():
    """The probe is asked for where Newton's estimate is at least ``stay`` times the count
    grown as ``N^0.4`` (the slowest growth seen): exactly there, not just below."""
    n, m, C = SIZE
    N, N0 = 1200, 100
    est = newton_cost(n, m, C, N, 5)
    at = est / (1.5 * (N / N0) ** choice.PROBE_EXPONENT)  # the count on the boundary
    assert owlqn_probe(n, m, C, N, at, N0, newton_steps=5) == round(est)
    assert owlqn_probe(n, m, C, N, at * 1.001, N0, newton_steps=5) is None
    # another stay moves the boundary with it
    assert owlqn_probe(n, m, C, N, at * 0.75, N0, newton_steps=5, stay=2.0) == round(est)
    assert owlqn_probe(n, m, C, N, at * 0.76, N0, newton_steps=5, stay=2.0) is None


def test_probe_boundary_is_exact(monkeypatch):
    """At Newton's estimate equal to ``stay`` times the count grown at the slowest power, the
    probe is asked for; one float below it, not."""
    c, N, N0 = 7.0, 1300, 100
    thr = 1.5 * c * (N / N0) ** choice.PROBE_EXPONENT  # the rule's own order of operations
    monkeypatch.setattr(choice, "_newton_estimate", lambda *a: thr)
    assert owlqn_probe(*SIZE, N, c, N0) == int(thr + 0.5)
    monkeypatch.setattr(choice, "_newton_estimate", lambda *a: np.nextafter(thr, 0.0))
    assert owlqn_probe(*SIZE, N, c, N0) is None


def test_probe_budget_is_newtons_estimate_scaled_up_never_down():
    n, m, C = SIZE
    est = newton_cost(n, m, C, 1200, 5)
    assert est > 1
    assert owlqn_probe(n, m, C, 1200, 1, 100, newton_steps=5, newton_over=2.0) == \
        round(2 * est)
    assert owlqn_probe(n, m, C, 1200, 1, 100, newton_steps=5, newton_over=0.5) == round(est)
    # at least one iteration: n ≪ d, where an OWL-QN iteration (its pairs' passes over a
    # million weights) costs more than this Newton point
    assert newton_cost(10, 100_000, 10, 20, 1) < 0.5
    assert owlqn_probe(10, 100_000, 10, 20, 1e-9, 10, newton_steps=1) == 1


# ---------------------------------------------------------------------------- newton_budget
def test_newton_budget_is_three_counts_grown_on_newton():
    assert newton_budget(None, 500, 100, on_newton=True) is None
    assert newton_budget(200, 500, 100, on_newton=False) == pytest.approx(600.0)
    assert newton_budget(200, 400, 100, on_newton=True) == pytest.approx(600.0 * 4 ** 0.7)
    assert newton_budget(200, 50, 100, on_newton=True) == pytest.approx(600.0)  # never shrunk
    assert newton_budget(200, 400, None, on_newton=True) == pytest.approx(600.0)
    assert newton_budget(30, 500, 100, on_newton=False) == choice.MIN_BUDGET
    assert newton_budget(34, 500, 100, on_newton=False) == pytest.approx(102.0)


def test_over_seen_is_floored_by_a_hand_over():
    fresh, counted = [1.0, 2.0, 3.0], [0.5, 0.5, 0.5]
    assert newton_over_seen(fresh, counted, on_newton=False, floor=None) == pytest.approx(2.0)
    assert newton_over_seen(fresh, counted, on_newton=False, floor=7.0) == pytest.approx(7.0)
    assert newton_over_seen(fresh, counted, on_newton=False, floor=1.5) == pytest.approx(2.0)
    assert newton_over_seen(fresh, counted, on_newton=True, floor=0.8) == pytest.approx(0.8)
    assert newton_over_seen([], [], on_newton=False, floor=4.0) == pytest.approx(4.0)
    assert newton_over_seen([], [], on_newton=False) is None


def test_over_seen_averages_the_points_of_this_route():
    """A ratio corrects one of :func:`newton_cost`'s formulas (:func:`cost_route`): a point
    averages the last three of its own formula's, all of them where it has none."""
    fresh = [9.0, 1.1, 1.2, 1.3, 5.0, 4.0]
    counted = [9.0, 1.0, 1.0, 1.0, 6.0, 2.0]
    routes = ["gram", "gram", "gram", "gram", "data", "data"]
    seen = {"routes": routes}
    assert newton_over_seen(fresh, counted, on_newton=False, route="data", **seen) == \
        pytest.approx(4.5)
    # the last three of the Gram route's, not its oldest (9.0) nor the data route's
    assert newton_over_seen(fresh, counted, on_newton=False, route="gram", **seen) == \
        pytest.approx(1.2)
    assert newton_over_seen(fresh, counted, on_newton=True, route="data", **seen) == \
        pytest.approx(4.0)
    assert newton_over_seen(fresh, counted, on_newton=True, route="gram", **seen) == \
        pytest.approx(1.0)
    # routes without this point's route, or no routes: every point's last three
    assert newton_over_seen(fresh, counted, on_newton=False, routes=routes) == \
        pytest.approx((1.3 + 5.0 + 4.0) / 3)
    assert newton_over_seen(fresh, counted, on_newton=False, route="data") == \
        pytest.approx((1.3 + 5.0 + 4.0) / 3)
    # none priced by this formula yet: all of them
    assert newton_over_seen(fresh, counted, on_newton=False, route="data+gram", **seen) == \
        pytest.approx((1.3 + 5.0 + 4.0) / 3)
    # a hand-over's floor still holds
    assert newton_over_seen(fresh, counted, on_newton=False, route="gram", floor=3.0,
                            **seen) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="newton_over_seen: 5 routes for 6 ratios"):
        newton_over_seen(fresh, counted, on_newton=False, route="data", routes=routes[1:])


@pytest.mark.parametrize("built", [True, False])
def test_cost_route_names_the_formula_a_point_is_priced_by(monkeypatch, built):
    """One more free weight than examples goes to data space where its compiled sweeps are
    built (``data_route``), and a crawl seen on the path prices it with the Gram route."""
    monkeypatch.setattr(choice, "data_compiled", lambda: built)
    n, C = 300, 5
    assert cost_route(n, C, n + C) == "gram"  # N = n free weights: the Gram route
    assert cost_route(n, C, n + C, data_crawls=True) == "gram"
    assert cost_route(n, C, n + C + 1) == ("data" if built else "gram")
    assert cost_route(n, C, n + C + 1, data_crawls=True) == ("data+gram" if built else "gram")


def test_a_crawling_data_route_is_priced_with_its_gram_route(monkeypatch):
    """Where a data-space solve crawled on the path, a data-route point costs its data-space
    steps plus a fresh Hessian and a model solve a step after the first (closed form);
    Gram-route points are priced as before."""
    monkeypatch.setattr(choice, "data_compiled", lambda: True)
    n, m, C, k = 400, 200, 8, 4.0
    unit = choice.owlqn_iteration_cost(n, m, C)
    for N in (900, 1500):
        N2 = float(N) ** 2
        plain = newton_cost(n, m, C, N, k)
        crawls = newton_cost(n, m, C, N, k, data_crawls=True)
        gram = choice.FRESH_HESSIAN * n * N2 / 2 + (k - 1) * choice.NEWTON_STEP_MODEL * N2
        assert crawls == pytest.approx(plain + gram / unit, rel=1e-12)
        one = newton_cost(n, m, C, N, 1.0, data_crawls=True) - newton_cost(n, m, C, N, 1.0)
        # one step: still one model solve on the Gram route
        assert one == pytest.approx((choice.FRESH_HESSIAN * n * N2 / 2
                                     + choice.NEWTON_STEP_MODEL * N2) / unit, rel=1e-12)
    assert newton_cost(n, m, C, 300, k, data_crawls=True) == newton_cost(n, m, C, 300, k)
    # the estimate the choices read (prefer_newton, owlqn_budget, owlqn_probe) goes with it
    est = choice._newton_estimate(n, m, C, 900, k, 2.0, True)
    assert est == pytest.approx(2.0 * newton_cost(n, m, C, 900, k, data_crawls=True))
    big = 3000
    budget = choice.owlqn_budget(n, m, C, big, newton_steps=k, data_crawls=True)
    assert budget == int(choice.HANDOVER * newton_cost(n, m, C, big, k, data_crawls=True) + 0.5)
    assert budget > choice.MIN_BUDGET
    assert choice.owlqn_budget(n, m, C, big, newton_steps=k) == max(
        choice.MIN_BUDGET, int(choice.HANDOVER * newton_cost(n, m, C, big, k) + 0.5))
    cheap = newton_cost(n, m, C, 900, k)
    assert choice.prefer_newton(n, m, C, 900, cheap / 0.6, newton_steps=k)
    assert not choice.prefer_newton(n, m, C, 900, cheap / 0.6, newton_steps=k,
                                    data_crawls=True)
    probe = dict(stay=1.5, newton_steps=k)
    assert choice.owlqn_probe(n, m, C, 900, 1.0, 100, data_crawls=True, **probe) == \
        int(newton_cost(n, m, C, 900, k, data_crawls=True) + 0.5)
    # by default no crawl: the data-space formula alone
    assert choice.owlqn_probe(n, m, C, 900, 1.0, 100, **probe) == \
        int(newton_cost(n, m, C, 900, k) + 0.5)
    work = {"hessian": 1e9, "data": 1e7}
    observed = choice.newton_observed_cost(n, m, C, 4, work)
    assert choice.newton_cost_ratio(n, m, C, 900, 4, work, data_crawls=True) == pytest.approx(
        observed / newton_cost(n, m, C, 900, 4, data_crawls=True))
    assert choice.newton_cost_ratio(n, m, C, 900, 4, work) == pytest.approx(
        observed / newton_cost(n, m, C, 900, 4))


# ------------------------------------------------------------------- the model solves' stop
def _qp(N=60, seed=0, rows=None):
    """A coupled elastic-net model (nearly singular with ``rows`` < N, the default N/2: as
    collinear columns make it) and its linear term."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N // 2 if rows is None else rows, N))
    Q = A.T @ A / N + 1e-6 * np.eye(N)
    q = rng.standard_normal(N)
    return Q, q


def _obj(Q, q, u, l1, l2):
    return 0.5 * u @ Q @ u - q @ u + l1 * np.abs(u).sum() + 0.5 * l2 * u @ u


def test_enet_qp_stop_returns_the_iterate_reached():
    Q, q = _qp()
    u0 = np.zeros(q.size)
    l1, l2 = 0.05, 1e-4
    u, sweeps, viol = enet_qp(Q, q, u0, l1, l2, tol=1e-9, direct_max=0)
    assert viol <= 1e-9 and sweeps > 2
    calls = []
    u_s, sweeps_s, viol_s = enet_qp(Q, q, u0, l1, l2, tol=1e-9, direct_max=0,
                                    stop=lambda: calls.append(1) is None)
    assert calls == [1] and sweeps_s == 2  # asked after the first chunk, and it stopped there
    assert viol_s > 1e-9 and viol_s == pytest.approx(qp_violation(Q, q, u_s, l1, l2))
    assert _obj(Q, q, u_s, l1, l2) < _obj(Q, q, u0, l1, l2)  # descent all the same
    # never asked before a sweep, and a stop that says no changes nothing
    u_n, _sweeps_n, _ = enet_qp(Q, q, u0, l1, l2, tol=1e-9, direct_max=0, stop=lambda: False)
    np.testing.assert_allclose(u_n, u, rtol=1e-9, atol=1e-12)


def test_active_set_qp_stop_after_a_face_solve():
    Q, q = _qp(N=40, seed=3, rows=200)
    l1, l2 = 0.3, 1e-4
    _full, solves, viol = active_set_qp(Q, q, np.zeros(40), l1, l2, tol=1e-10)
    assert solves > 1 and viol <= 1e-10
    calls = []
    u, solves_s, viol_s = active_set_qp(Q, q, np.zeros(40), l1, l2, tol=1e-10,
                                        stop=lambda: calls.append(1) is None)
    assert len(calls) == 1 and 1 <= solves_s < solves and viol_s > 1e-10
    assert _obj(Q, q, u, l1, l2) <= _obj(Q, q, np.zeros(40), l1, l2)
    # through enet_qp (a small model: the active set first): stopped there, no sweeps
    u_e, sweeps, _ = enet_qp(Q, q, np.zeros(40), l1, l2, tol=1e-10, stop=lambda: True)
    assert sweeps == 0
    np.testing.assert_array_equal(u_e, u)


# ----------------------------------------------------------------------- newton(max_cost)
def _problem(n=500, m=14, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    X[:, -1] = X[:, 0] - 0.5 * X[:, 1]  # exactly collinear columns
    X[:, -2] = X[:, 2] + X[:, 0]
    W = torch.randn(C, m, generator=g, dtype=torch.float64)
    y = torch.argmax(X.double() @ W.T + torch.randn(n, C, generator=g, dtype=torch.float64), 1)
    return RestrictedData(X, y, C), C, m


def test_newton_hands_over_to_owlqn_past_its_cost_and_reports_its_work():
    data, C, m = _problem()
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(0.99), 0.005, 1e-7
    alone = newton(data, W0, b0, lam, pen, tol=tol)
    assert alone.converged and alone.iterations is None and alone.n_iter >= 3
    spent = newton_observed_cost(data.n, m, C, alone.n_iter, alone.work)
    # a budget above what the point cost: the same solve
    roomy = newton(data, W0, b0, lam, pen, tol=tol, max_cost=1.01 * spent)
    assert roomy.iterations is None and roomy.n_iter == alone.n_iter
    assert roomy.objective == pytest.approx(alone.objective, rel=1e-10)  # its CD chunks: 8
    ref = owlqn(data, W0, b0, lam, pen, tol=tol)
    # a budget below its first Hessian's price: no step, OWL-QN from the start, the Hessian it
    # declined counted as its price (what the path reads: Newton cost here at least this)
    none = newton(data, W0, b0, lam, pen, tol=tol, max_cost=1e-9)
    assert none.iterations == {"newton": 0, "owlqn": none.n_iter} and none.converged
    assert none.objective == pytest.approx(ref.objective, rel=1e-8)
    hess = none.work["hessian"]
    N = (hess / (data.n / 2)) ** 0.5  # n N²/2 of the free coordinates' Hessian
    assert hess > 0 and pytest.approx(round(N)) == N and C <= round(N) <= m * C
    assert none.work["stream"] + none.work["stream_cached"] + none.work["blas3"] == 0
    first = newton_observed_cost(data.n, m, C, 1, {"hessian": hess})
    assert newton(data, W0, b0, lam, pen, tol=tol, max_cost=0.999 * first).iterations == \
        {"newton": 0, "owlqn": none.n_iter}
    # a budget the first Hessian fits but not one step's: one Newton step, then OWL-QN
    res = newton(data, W0, b0, lam, pen, tol=tol, max_cost=1.001 * first)
    assert list(res.iterations) == ["newton", "owlqn"] and res.iterations["newton"] == 1
    assert sum(res.iterations.values()) == res.n_iter
    assert res.converged and res.objective == pytest.approx(ref.objective, rel=1e-8)
    assert res.work is not None and res.work["hessian"] > 0  # Newton's work up to there
    # the model solve of that step was stopped too: less work than the unbudgeted first step
    one = newton(data, W0, b0, lam, pen, tol=tol, max_iter=1)
    assert sum(res.work.values()) < sum(one.work.values())
    # between: Newton goes on while its priced work is within the budget
    budget = 0.5 * (first + spent)
    assert first < budget < spent
    mid = newton(data, W0, b0, lam, pen, tol=tol, max_cost=budget)
    assert mid.iterations is not None and 1 <= mid.iterations["newton"] < alone.n_iter
    assert newton_observed_cost(data.n, m, C, mid.iterations["newton"], mid.work) > budget


# ------------------------------------------------------------------------------ in a path
def _collinear():
    bench = load_bench("bench_path")
    X, y = bench.make_geometry("collinear", 600, 30, 4, seed=1)
    return X.astype(np.float32), y


KW = dict(alpha=0.99, n_lambdas=10, eps=2e-2, progress=False, threads=1)


def test_a_path_probes_owlqn_and_newton_finishes_a_failed_probe(monkeypatch):
    """Where the probe is asked for (here: 3 iterations at every point staying on Newton),
    OWL-QN runs first and Newton finishes the point from where it stands: recorded
    "owlqn+newton", the same optima, and the choice after it is asked as on Newton."""
    X, y = _collinear()
    ref = fit_path(X, y, solver="owlqn", **KW)
    base = fit_path(X, y, **KW)
    assert base.info["method_per_point"].count("newton") >= 3
    events = []
    real_prefer = FIT.prefer_newton

    def prefer(*a, **k):
        events.append(("prefer", k["on_newton"]))
        return real_prefer(*a, **k)

    def probe(n, m, C, n_free, owlqn_iters, owlqn_free, **k):
        events.append(("probe", owlqn_iters, owlqn_free))
        return 3

    monkeypatch.setattr(FIT, "owlqn_probe", probe)
    monkeypatch.setattr(FIT, "prefer_newton", prefer)
    p = fit_path(X, y, **KW)
    methods = p.info["method_per_point"]
    probes = [e for e in events if e[0] == "probe"]
    assert probes and methods.count("owlqn+newton") >= 1, methods
    assert all(p.n_iter[i] > 3 for i, m in enumerate(methods) if m == "owlqn+newton")
    np.testing.assert_allclose(p.objective, ref.objective, rtol=1e-6)
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    # asked only on Newton, with OWL-QN's count; and a probed point ended on Newton: the
    # choice after it is asked as staying there
    assert all(e[1] is not None and e[2] for e in probes)
    after = [events[i + 1][1] for i, e in enumerate(events[:-1]) if e[0] == "probe"]
    assert after and all(after), events


def test_a_path_hands_a_costly_newton_point_to_owlqn_and_floors_newtons_price(monkeypatch):
    """Newton chosen at every point (the choice forced), its third solve given a budget below
    one step's: that point takes a step and hands over ("newton+owlqn"), the path reaches the
    same optima, the next choice reads Newton's price at least that point's ratio (its
    floor, where the mean of the last three is lower), and a point Newton then solves alone
    lifts the floor."""
    X, y = _collinear()
    ref = fit_path(X, y, solver="owlqn", **KW)
    events, state = [], {"budgets": 0, "bail": False}

    def prefer(*a, **k):
        events.append(("prefer", k["newton_over"]))
        return True

    def budget(*a, **k):
        state["budgets"] += 1
        state["bail"] = state["budgets"] == 3
        return 1e-9 if state["bail"] else None

    def ratio(*a, **k):
        events.append(("ratio", 50.0 if state["bail"] else 1.0))
        return events[-1][1]

    monkeypatch.setattr(FIT, "prefer_newton", prefer)
    monkeypatch.setattr(FIT, "owlqn_probe", lambda *a, **k: None)
    monkeypatch.setattr(FIT, "newton_budget", budget)
    monkeypatch.setattr(FIT, "newton_cost_ratio", ratio)
    p = fit_path(X, y, **KW)
    methods = p.info["method_per_point"]
    assert methods.count("newton+owlqn") == 1 and methods.count("newton") >= 3, methods
    np.testing.assert_allclose(p.objective, ref.objective, rtol=1e-6)
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    i = next(j for j, e in enumerate(events) if e == ("ratio", 50.0))
    after = [e[1] for e in events[i:] if e[0] == "prefer"]
    assert after[0] == 50.0  # the floor: the mean of the last three ratios is below it
    assert len(after) >= 2 and after[1] < 50.0  # a Newton point alone since: the mean again
