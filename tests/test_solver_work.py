"""Newton's counted work (gram_cd.QPWork, SolveResult.work) and how the default's choice
reads it (choice.newton_observed_cost, prefer_newton's ``newton_over``, fit_path).

The counts are checked against closed forms of what each kernel reads (a numpy sweep reads
all of Q, the compiled one a row per moving coordinate, one Cholesky of N entries costs
N³/3), the prices against the measured results file they were fitted in, and the path's
reaction on a real collinear problem, with KKT re-checked in float64.
"""

import os
import re
import sys

import numpy as np
import pytest
import torch
from helpers_bench import load_bench
from helpers_qp import singular_model

from sparse_probe import fit_path, kkt_violation, objective_f64
from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers import choice, gram_cd
from sparse_probe.solvers.choice import (
    newton_cost,
    newton_observed_cost,
    owlqn_iteration_cost,
    prefer_newton,
)
from sparse_probe.solvers.gram_cd import QPWork, active_set_qp, enet_qp
from sparse_probe.solvers.newton import newton
from sparse_probe.solvers.restricted import RestrictedData

newton_module = sys.modules["sparse_probe.solvers.newton"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALPHA = 0.99


def _pd(N: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A well-conditioned (N, N) Gram matrix and a linear term."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((4 * N, N))
    return A.T @ A / (4 * N) + 0.5 * np.eye(N), rng.standard_normal(N)


def _chunks(sweeps: int) -> list[int]:
    """enet_qp's schedule of sweeps per call (2, 4, 8, ... 64) that adds up to ``sweeps``."""
    out, chunk = [], 2
    while sum(out) < sweeps:
        out.append(chunk)
        chunk = min(2 * chunk, 64)
    assert sum(out) == sweeps, (out, sweeps)
    return out


def test_numpy_sweeps_count_all_of_q_per_sweep_and_per_check(monkeypatch):
    Q, q = _pd(12)
    monkeypatch.setattr(gram_cd, "_kernel", lambda: ("numpy", None))
    work = QPWork()
    _u, sweeps, viol = enet_qp(Q, q, np.zeros(12), 1e-3, 0.0, tol=1e-9, direct_max=0,
                               work=work)
    assert viol <= 1e-9 and sweeps > 2
    # every call: its sweeps over all of Q plus the violation's product
    assert work.stream_cached == sum((k + 1) * 144 for k in _chunks(sweeps))
    assert work.stream == 0 and work.blas3 == 0


def test_own_kernel_counts_a_row_per_moving_coordinate():
    """Every coordinate nonzero from the first sweep on: N² for the first Q u, N per
    coordinate and sweep, N² for the exact product that confirms the tolerance."""
    if gram_cd._kernel()[0] != "own":
        pytest.skip("the compiled _gram_cd kernel is not built")
    Q, q = _pd(15, seed=1)
    work = QPWork()
    u, sweeps, viol = enet_qp(Q, q, np.zeros(15), 1e-6, 0.0, tol=1e-10, direct_max=0,
                              work=work)
    assert viol <= 1e-10 and np.count_nonzero(u) == 15
    assert work.stream_cached == (sweeps + 2) * 225
    # the same work sparse: a row per nonzero, fewer than N² per sweep
    work2 = QPWork()
    u2, sweeps2, _ = enet_qp(Q, q, np.zeros(15), 0.6, 0.0, tol=1e-10, direct_max=0, work=work2)
    nnz = np.count_nonzero(u2)
    assert 0 < nnz < 15
    assert work2.stream_cached < (sweeps2 + 2) * 225


def test_models_beyond_the_caches_are_counted_apart(monkeypatch):
    Q, q = _pd(12)
    monkeypatch.setattr(gram_cd, "_kernel", lambda: ("numpy", None))
    a, b = QPWork(), QPWork()
    enet_qp(Q, q, np.zeros(12), 1e-3, 0.0, tol=1e-9, direct_max=0, work=a)
    monkeypatch.setattr(gram_cd, "CACHED_MAX", 11)  # 12 is beyond it now
    enet_qp(Q, q, np.zeros(12), 1e-3, 0.0, tol=1e-9, direct_max=0, work=b)
    assert b.stream_cached == 0 and b.stream == a.stream_cached > 0
    monkeypatch.setattr(gram_cd, "CACHED_MAX", 12)  # at the bound: cached
    c = QPWork()
    enet_qp(Q, q, np.zeros(12), 1e-3, 0.0, tol=1e-9, direct_max=0, work=c)
    assert c.stream == 0 and c.stream_cached == a.stream_cached
    assert gram_cd.QPWork().stream == 0  # a fresh counter per default, nothing shared


def test_one_face_solve_counts_one_factorization():
    """A diagonal model whose every entry joins: one face, one Cholesky of N³/3."""
    d = np.array([2.0, 3.0, 1.5, 4.0, 2.5])
    q = np.array([1.0, -2.0, 3.0, -1.0, 2.0])
    work = QPWork()
    u, solves, viol = active_set_qp(np.diag(d), q, np.zeros(5), 0.1, 0.0, tol=1e-12, work=work)
    assert solves == 1 and viol <= 1e-12
    np.testing.assert_allclose(u, np.sign(q) * (np.abs(q) - 0.1) / d, rtol=1e-12)
    assert work.blas3 == pytest.approx(5 ** 3 / 3, rel=1e-12)
    assert work.stream_cached > 0 and work.stream == 0


def test_newton_reports_the_work_its_hessians_and_model_solves_did(monkeypatch):
    g = torch.Generator().manual_seed(3)
    n, m, C = 600, 12, 4
    X = torch.randn(n, m, generator=g)
    X[:, -1] = X[:, 0] - 0.5 * X[:, 1]  # collinear: models that need real solves
    y = torch.randint(0, C, (n,), generator=g)
    y[X[:, 0] > 0.5] = 1
    data = RestrictedData(X, y, C)
    hess, works, crossed = [0.0], [], []
    real_hb, real_hc, real_qp = (newton_module.hessian_blocks, newton_module.hessian_cross,
                                 newton_module.enet_qp)

    def hb(Xw, P, cls, col, XwT=None):
        hess[0] += Xw.shape[0] * cls.numel() ** 2 / 2
        return real_hb(Xw, P, cls, col, XwT=XwT)

    def hc(Xw, P, cls_n, col_n, cls_a, col_a, XwT=None):
        crossed.append(cls_n.numel())
        hess[0] += Xw.shape[0] * cls_n.numel() * Xw.shape[1] * P.shape[1]
        return real_hc(Xw, P, cls_n, col_n, cls_a, col_a, XwT)

    def qp(*a, work=None, **k):
        works.append(work)
        return real_qp(*a, work=work, **k)

    monkeypatch.setattr(newton_module, "hessian_blocks", hb)
    monkeypatch.setattr(newton_module, "hessian_cross", hc)
    monkeypatch.setattr(newton_module, "enet_qp", qp)
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    res = newton(data, W0, b0, 0.002, ElasticNet(ALPHA), tol=1e-6)
    assert res.converged and res.n_iter >= 2 and works
    assert crossed  # a reused model took new weights: their rows are Hessian work too
    assert all(w is works[0] for w in works)  # one counter for the whole solve
    assert res.work["hessian"] == pytest.approx(hess[0], rel=1e-12) and hess[0] > 0
    for key in ("stream", "stream_cached", "blas3"):
        assert res.work[key] == getattr(works[0], key)
    assert res.work["stream"] + res.work["stream_cached"] > 0


def _counted_fit(path: str) -> list[float]:
    """The counted-work fit's constants from a solver-costs results file, in the order of
    choice.py's WORK_HESSIAN, WORK_STEP_PRODUCTS, STREAM, STREAM_CACHED, BLAS3,
    WORK_STEP_FIXED, WORK_FIXED."""
    with open(path) as f:
        line = next(ln for ln in f if ln.startswith("Newton per point with the model solves'"))
    return [float(v) for v in re.findall(r"([0-9.]+(?:e[+-]?[0-9]+)?) \*", line.split(":")[1])
            ] + [float(re.search(r"\+ ([0-9.]+(?:e[+-]?[0-9]+)?)\s*$", line).group(1))]


def test_observed_cost_prices_are_the_measured_fit():
    got = _counted_fit(os.path.join(ROOT, "benchmarks", "results",
                                    "solver-costs-cpu-2026-12-05.txt"))
    want = [choice.WORK_HESSIAN, choice.WORK_STEP_PRODUCTS, choice.STREAM, choice.STREAM_CACHED,
            choice.BLAS3, choice.WORK_STEP_FIXED, choice.WORK_FIXED]
    assert got == pytest.approx(want, rel=1e-12)


def test_observed_cost_is_the_documented_formula():
    work = {"hessian": 3e9, "stream": 2e8, "stream_cached": 5e7, "blas3": 4e9}
    for n, m, C, k in [(10_000, 100, 10, 3), (500, 3000, 40, 1), (2000, 50, 5, 0)]:
        want = (2.46 * 3e9 + max(k, 1) * (2.49 * 4 * n * m * C + 5.36e7) + 32.6 * 2e8
                + 19.2 * 5e7 + 2.78 * 4e9 + 5.76e8) / owlqn_iteration_cost(n, m, C)
        assert newton_observed_cost(n, m, C, k, work) == pytest.approx(want, rel=1e-12)
    # a count the solver did not report is no work (OWL-QN's hand-over reports none)
    none = (3 * (2.49 * 4 * 10_000 * 100 * 10 + 5.36e7) + 5.76e8) / owlqn_iteration_cost(
        10_000, 100, 10)
    assert newton_observed_cost(10_000, 100, 10, 3, {}) == pytest.approx(none, rel=1e-14)
    # each count is priced on its own: none of them is free
    base = newton_observed_cost(10_000, 100, 10, 3, {})
    for key in work:
        assert newton_observed_cost(10_000, 100, 10, 3, {key: 1e9}) > base
    with pytest.raises(ValueError, match="newton_observed_cost: n, m and C must be positive"):
        newton_observed_cost(10, 0, 3, 1, work)


def test_observed_over_estimated_cost_is_at_the_points_own_size_and_steps():
    work = {"hessian": 3e9, "stream": 2e8, "stream_cached": 5e7, "blas3": 4e9}
    for N, k in [(300, 3), (800, 3), (300, 7)]:
        want = newton_observed_cost(10_000, 100, 10, k, work) / newton_cost(10_000, 100, 10, N, k)
        assert choice.newton_cost_ratio(10_000, 100, 10, N, k, work) == pytest.approx(
            want, rel=1e-12)
    # the estimate at the point's own size and steps: a larger model or more steps were
    # expected to cost more, so the same work is less of a surprise
    r = choice.newton_cost_ratio(10_000, 100, 10, 300, 3, work)
    assert choice.newton_cost_ratio(10_000, 100, 10, 800, 3, work) < r
    assert choice.newton_cost_ratio(10_000, 100, 10, 300, 7, work) != r


def test_an_underpriced_newton_is_priced_up_never_down():
    cost = newton_cost(10_000, 100, 10, 300)
    # entering takes cost < 0.7 · iters: 0.7 / 0.65 = 1.077 of headroom here
    assert prefer_newton(10_000, 100, 10, 300, cost / 0.65, newton_over=1.05)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 0.65, newton_over=1.1)
    # staying takes cost < 1.5 · iters
    assert prefer_newton(10_000, 100, 10, 300, cost / 1.3, on_newton=True, newton_over=1.1)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 1.3, on_newton=True,
                             newton_over=1.2)
    # an overpriced estimate is not lowered: 0.7 / 0.75 = 0.93 < 1 either way
    assert not prefer_newton(10_000, 100, 10, 300, cost / 0.75, newton_over=0.5)
    assert prefer_newton(10_000, 100, 10, 300, cost / 0.65, newton_over=0.5)
    assert prefer_newton(10_000, 100, 10, 300, cost / 0.65, newton_over=None)


def test_the_choice_reads_counted_ratios_staying_and_fresh_ones_entering():
    fresh = [1.0, 1.9, 1.8, 2.1]
    counted = [1.0, 0.6, 1.2, 0.9]
    # the mean of the last three points' ratios, from the list the decision reads
    assert choice.newton_over_seen(fresh, counted, on_newton=True) == pytest.approx(0.9)
    assert choice.newton_over_seen(fresh, counted, on_newton=False) == pytest.approx(5.8 / 3)
    assert choice.newton_over_seen(fresh[:2], counted[:2], on_newton=True) == \
        pytest.approx(0.8)
    assert choice.newton_over_seen([], [], on_newton=True) is None
    assert choice.newton_over_seen([], [], on_newton=False) is None
    # what that does to a stay: a path whose carried points cost what the estimate says stays
    # on Newton at the point where priced with fresh Hessians it would go back to OWL-QN
    cost = newton_cost(10_000, 256, 10, 1500, 3.5)
    iters = cost * 1.3 / 1.5  # OWL-QN's (grown) count: staying takes cost · over < 1.5 · it
    kw = dict(on_newton=True, newton_steps=3.5)
    assert prefer_newton(10_000, 256, 10, 1500, iters, newton_over=choice.newton_over_seen(
        [1.4, 1.4, 1.4], [1.2, 1.25, 1.28], on_newton=True), **kw)
    assert not prefer_newton(10_000, 256, 10, 1500, iters, newton_over=choice.newton_over_seen(
        [1.4, 1.4, 1.4], [1.2, 1.25, 1.28], on_newton=False), **kw)


def test_fit_path_leaves_a_newton_whose_work_says_it_is_dearer(monkeypatch):
    """A collinear path the default puts on Newton; with Newton's counted work priced 10⁶
    times higher, the path goes back to OWL-QN once a Newton point has shown it (that point
    itself handed over mid-way), and stays
    (1,000 times was not enough here: OWL-QN takes ~200 iterations per point on this path)."""
    X, y = load_bench("bench_path").make_geometry("collinear", 1500, 40, 6, 5)
    kw = dict(alpha=ALPHA, n_lambdas=12, eps=1e-2, progress=False, threads=1)
    base = fit_path(X, y, **kw)
    mb = base.info["method_per_point"]
    first = mb.index("newton")
    assert mb.count("newton") >= 4, mb
    for name in ("WORK_HESSIAN", "STREAM", "STREAM_CACHED", "BLAS3"):
        monkeypatch.setattr(choice, name, 1e6 * getattr(choice, name))
    dear = fit_path(X, y, **kw)
    md = dear.info["method_per_point"]
    # the same until Newton's first point, which its budget (choice.newton_budget, priced the
    # same way) hands to OWL-QN after a step; no Newton after it
    assert md[:first] == mb[:first] and md[first] == "newton+owlqn", md
    assert not any("newton" in m for m in md[first + 1:]), md
    # both paths solved: KKT re-checked in float64 at every point, the same objectives
    for i in range(len(dear)):
        _f, G, gb = objective_f64(X, y, dear.weights[i], dear.intercepts[i], dear.lambdas[i],
                                  ALPHA, mean=dear.mean, scale=dear.scale, return_grad=True)
        tol = dear.info["tol_per_point"][i]
        assert kkt_violation(G, dear.weights[i], dear.lambdas[i], ALPHA).max() <= 2 * tol, i
        assert np.abs(gb).max() <= 2 * tol, i
    np.testing.assert_allclose(dear.objective, base.objective, rtol=1e-5)


def test_one_face_solve_counts_what_each_step_reads():
    """The same single face, entry by entry: the start's product (gradient and objective:
    N²), the face's gather (N rows of Q and their N columns: 2 N²), two one-column solves on
    the factor (the solve and its refinement, N² each), the residual's product (N²), the
    step's curvature (N²) and one product with the candidate points (the objective at the
    minimizer, whose column is the new gradient's: N²): 8 N²."""
    d = np.array([2.0, 3.0, 1.5, 4.0, 2.5])
    work = QPWork()
    active_set_qp(np.diag(d), np.array([1.0, -2.0, 3.0, -1.0, 2.0]), np.zeros(5), 0.1, 0.0,
                  tol=1e-12, work=work)
    assert work.stream_cached == 8 * 25


def test_faces_count_factor_border_and_constrained_solves():
    """One factor shared by three faces (gram_cd.Faces): a factorization, an entry bordered
    on, a face that holds two entries of the factor at zero; each operation's count as its
    docstring prices it."""
    Q, _ = _pd(12, seed=2)
    work = QPWork()
    faces = gram_cd.Faces(Q, 0.0, work)
    S1 = np.arange(9)
    assert faces.solve(S1, np.ones(9)) is not None
    want_blas3 = 9 ** 3 / 3  # the factorization
    # gather, two one-column solves, the residual (one product with the whole model)
    want_stream = 9 * (12 + 9) + 2 * 81 + 144
    assert (work.blas3, work.stream_cached) == (pytest.approx(want_blas3), want_stream)
    S2 = np.arange(11)  # two more entries: bordered onto the factor (t = 9, k = 2)
    v2 = faces.solve(S2, np.ones(11))
    np.testing.assert_allclose(v2, np.linalg.solve(Q[:11, :11], np.ones(11)), rtol=1e-10)
    want_blas3 += 81 * 2 / 2 + 9 * 2 * 2 + 2 ** 3 / 3
    # B (as its 2 rows of Q: Q is symmetric) and A22 gathered; the bordered columns copied
    # (9 x 2 and the 2 x 2 block), not the factor of the first 9
    want_stream += 2 * (12 + 9) + 2 * (12 + 2) + 9 * 2 + 2 * 2
    want_stream += 2 * 121 + 144  # the two solves on the 11-entry factor, the residual
    assert (work.blas3, work.stream_cached) == (pytest.approx(want_blas3), want_stream)
    S3 = np.array([0, 2, 3, 4, 5, 6, 8, 9, 10])  # two entries of the factor held at zero
    v3 = faces.solve(S3, np.ones(9))
    np.testing.assert_allclose(v3, np.linalg.solve(Q[np.ix_(S3, S3)], np.ones(9)), rtol=1e-9)
    # the two columns Fᵀ⁻¹ e_z of positions 1 and 7 (one 2-column forward solve from position
    # 1: 10 rows) and their 2 x 2 Gram matrix; then per constrained solve (the solve and its
    # refinement) a one-column solve each way, the 2 x 2 multipliers' system and two products
    # with the kept columns; the residual between them
    want_blas3 += 10 ** 2 * 2 / 2 + 11 * 2 * 2 + 2 * (2 * 8 / 3)
    want_stream += 2 * (121 + 2 * 11 * 2) + 144
    assert (work.blas3, work.stream_cached) == (pytest.approx(want_blas3), want_stream)
    S5 = np.array([0, 2, 3, 4, 5, 6, 8, 9, 10, 11])  # one entry bordered on, 1 and 7 still out
    v5 = faces.solve(S5, np.ones(10))
    np.testing.assert_allclose(v5, np.linalg.solve(Q[np.ix_(S5, S5)], np.ones(10)), rtol=1e-9)
    # the border (t = 11, k = 1), then the two kept columns' new row: their product with the
    # border's column, a 1 x 1 triangular solve, the Gram matrix's update
    want_blas3 += 121 / 2 + 11 + 1 / 3 + (11 * 2 + 2 / 2 + 2 * 2)
    want_stream += 1 * (12 + 11) + 1 * (12 + 1) + 9 * 3 + 3 * 3
    # the constrained solve and its refinement on the same kept columns, the residual
    want_blas3 += 2 * (2 * 8 / 3)
    want_stream += 2 * (144 + 2 * 12 * 2) + 144
    assert (work.blas3, work.stream_cached) == (pytest.approx(want_blas3), want_stream)
    S4 = np.arange(4)  # most of the factor left out: factorized anew, and added to the rest
    faces.solve(S4, np.ones(4))
    want_blas3 += 4 ** 3 / 3
    want_stream += 4 * (12 + 4) + 2 * 16 + 144
    assert (work.blas3, work.stream_cached) == (pytest.approx(want_blas3), want_stream)
    assert faces.factorizations == 2
    assert work.stream == 0


def test_a_border_extends_the_kept_columns_at_its_count():
    """Two entries bordered on while two positions of the factor stay held at zero: the
    border's count plus the kept columns' new rows (their product with the border's columns,
    a k x k triangular solve, the Gram matrix's update: k t c + k² c / 2 + k c²), no column
    computed again."""
    Q, _ = _pd(10, seed=5)
    work = QPWork()
    faces = gram_cd.Faces(Q, 0.0, work)
    faces.solve(np.arange(8), np.ones(8))
    faces.solve(np.delete(np.arange(8), [1, 4]), np.ones(6))  # 2 of 8 out: columns kept
    before = work.blas3
    S = np.delete(np.arange(10), [1, 4])  # 2 new of 8: bordered (t = 8, k = 2, c = 2)
    v = faces.solve(S, np.ones(8))
    np.testing.assert_allclose(v, np.linalg.solve(Q[np.ix_(S, S)], np.ones(8)), rtol=1e-9)
    t, k, c = 8, 2, 2
    border = t * t * k / 2 + t * k * k + k ** 3 / 3
    rows = k * t * c + k * k * c / 2 + k * c * c
    assert faces.factorizations == 1
    assert work.blas3 - before == pytest.approx(border + rows + 2 * (2 * c ** 3 / 3))


def test_an_all_zero_model_counts_one_row_per_sweep():
    """With l1 above every |q| the first sweep sets every coordinate to zero and the model
    ends all-zero: a sweep there is counted as one row (N), not as no work and not N²."""
    if gram_cd._kernel()[0] != "own":
        pytest.skip("the compiled _gram_cd kernel is not built")
    Q, q = _pd(9, seed=4)
    work = QPWork()
    u, sweeps, viol = enet_qp(Q, q, np.full(9, 0.1), 10 * float(np.abs(q).max()), 0.0, tol=1e-12,
                              direct_max=0, work=work)
    assert not u.any() and viol == 0 and sweeps >= 1
    assert work.stream_cached == 2 * 81 + sweeps * 9


def test_enet_qp_counts_the_face_solves_it_hands_to():
    """Both ways into the active-set method count its factorizations: a small model's face
    solves first, and a crawling coordinate descent's hand-off (test_newton's singular
    model: exactly collinear columns, a tiny ridge)."""
    Q, q = _pd(12, seed=6)
    work = QPWork()
    _u, sweeps, _ = enet_qp(Q, q, np.zeros(12), 0.05, 0.0, tol=1e-10, work=work)
    assert sweeps == 0 and work.blas3 > 0  # solved by the face solves alone
    Q, q = singular_model()
    work = QPWork()
    _u, sweeps, viol = enet_qp(Q, q, np.zeros(80), 1e-2, 1e-6, tol=1e-10, direct_max=0,
                               work=work)
    assert viol <= 1e-10 and 0 < sweeps < 100 and work.blas3 > 0


def test_faces_count_a_border_on_a_border_copying_only_the_bordered_columns():
    """A second border (K = 2 entries bordered since the factorization, k = 1 more) gathers
    its rows (Q[T, new] as Q[new, T]ᵀ: k rows of Q, not t) and copies the bordered columns of
    the factor, t0 (K + k) + (K + k)² entries, not the factorization's own t0²
    (gram_cd.Faces)."""
    Q, _ = _pd(12, seed=3)
    work = QPWork()
    faces = gram_cd.Faces(Q, 0.0, work)
    assert faces.solve(np.arange(9), np.ones(9)) is not None
    assert faces.solve(np.arange(11), np.ones(11)) is not None  # bordered: K = 0, k = 2
    before, blas3 = work.stream_cached, work.blas3
    assert faces._border(np.array([11]))  # t = 11 (t0 = 9, K = 2), k = 1
    t, t0, K, k = 11, 9, 2, 1
    assert work.stream_cached - before == k * (12 + t) + k * (12 + k) + t0 * (K + k) + (K + k) ** 2
    assert work.blas3 - blas3 == pytest.approx(t * t * k / 2 + t * k * k + k ** 3 / 3)
    v = faces.solve(np.arange(12), np.ones(12))
    np.testing.assert_allclose(v, np.linalg.solve(Q, np.ones(12)), rtol=1e-9)
