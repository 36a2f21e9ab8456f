"""The proximal Newton solver (solvers/newton.py), its Gram coordinate descent
(solvers/gram_cd.py) and the default's per-point choice (solvers/choice.py).

References are independent: autograd for the Hessian, python-glmnet and scikit-learn for the
path objectives (all evaluated by the shared float64 objective), OWL-QN for the restricted
optimum; KKT is re-checked in float64 at every path point.
"""

import functools
import sys

import numpy as np
import pytest
import sklearn.linear_model._cd_fast as cd_fast
import torch
from helpers_bench import load_bench
from helpers_qp import singular_model
from helpers_sklearn import sklearn_multinomial

from sparse_probe import fit_path, kkt_violation, objective_f64
from sparse_probe.penalties import ElasticNet, GroupedElasticNet
from sparse_probe.solvers import SOLVERS, SolverSpec, get_solver, gram_cd
from sparse_probe.solvers.blocked import BlockedData
from sparse_probe.solvers.choice import (
    newton_cost,
    owlqn_budget,
    owlqn_iteration_cost,
    prefer_newton,
)
from sparse_probe.solvers.data_cd import compiled as data_cd_compiled
from sparse_probe.solvers.gram_cd import enet_qp, qp_violation
from sparse_probe.solvers.lbfgs import history_for
from sparse_probe.solvers.newton import (
    NewtonState,
    carry_model,
    hessian,
    hessian_blocks,
    hessian_cross,
    hessian_diag,
    newton,
)
from sparse_probe.solvers.owlqn import owlqn
from sparse_probe.solvers.restricted import RestrictedData

newton_module = sys.modules["sparse_probe.solvers.newton"]  # the package exports the function
choice_module = sys.modules["sparse_probe.solvers.choice"]

ALPHA = 0.99
PATH_KW = dict(alpha=ALPHA, n_lambdas=10, eps=2e-2, progress=False, threads=1)  # small paths


def _problem(n=400, m=6, C=4, seed=0, collinear=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    if collinear:  # the last two columns: exact combinations of the first ones
        X[:, -1] = X[:, 0] - 0.5 * X[:, 1]
        X[:, -2] = X[:, 2] + X[:, 0]
    W = torch.randn(C, m, generator=g, dtype=torch.float64)
    y = torch.argmax(X.double() @ W.T + torch.randn(n, C, generator=g, dtype=torch.float64), 1)
    return X, y, C


def _autograd_hessian(X: torch.Tensor, y: torch.Tensor, C: int, g: torch.Generator,
                      w_scale: float, b_scale: float) -> tuple[np.ndarray, torch.Tensor]:
    """The mean cross-entropy's full Hessian over (W flattened, b) at random weights, by
    autograd, and the float32 probabilities there."""
    m = X.shape[1]
    W = w_scale * torch.randn(C, m, generator=g, dtype=torch.float64)
    b = b_scale * torch.randn(C, generator=g, dtype=torch.float64)

    def ce(v):
        z = X.double() @ v[: C * m].view(C, m).T + v[C * m:]
        return torch.nn.functional.cross_entropy(z, y)

    full = torch.autograd.functional.hessian(ce, torch.cat([W.reshape(-1), b])).numpy()
    return full, torch.softmax(X.double() @ W.T + b, 1).float()


def test_hessian_matches_autograd_on_any_subset_of_weights():
    X, y, C = _problem()
    m = X.shape[1]
    g = torch.Generator().manual_seed(1)
    full, P = _autograd_hessian(X, y, C, g, 0.3, 0.1)
    for mask in (torch.ones(C, m, dtype=torch.bool), torch.rand(C, m, generator=g) > 0.5,
                 torch.zeros(C, m, dtype=torch.bool)):
        cls, col = torch.nonzero(mask, as_tuple=True)
        idx = np.concatenate([(cls * m + col).numpy(), C * m + np.arange(C)])
        ref = full[np.ix_(idx, idx)]
        for XwT in (None, X.T.contiguous()):
            H = hessian(X, P, cls, col, XwT=XwT)
            np.testing.assert_allclose(H, ref, rtol=0, atol=1e-6 * np.abs(full).max())
            np.testing.assert_array_equal(H, H.T)
        np.testing.assert_allclose(hessian_diag(X, P, cls, col), np.diag(ref)[: cls.numel()],
                                   rtol=1e-5, atol=1e-9)
    # the loss is invariant to shifting a feature's weights across classes: singular there
    cls, col = torch.nonzero(torch.ones(C, m, dtype=torch.bool), as_tuple=True)
    H = hessian(X, P, cls, col)
    shift = np.zeros((C, m))
    shift[:, 2] = 1.0
    v = np.concatenate([shift.ravel(), np.zeros(C)])
    assert abs(v @ H @ v) <= 1e-6 * np.abs(H).max()


def test_hessian_over_many_row_blocks_matches_autograd(monkeypatch):
    """Row blocks of 256 (a short last one): the float32 products of each block summed in
    float64, the own-class bias entries and diagonal blocks from each block's p(1-p)."""
    X, y, C = _problem(n=1100, m=9, C=5, seed=6)
    m = X.shape[1]
    g = torch.Generator().manual_seed(7)
    full, P = _autograd_hessian(X, y, C, g, 0.5, 0.2)
    cls, col = torch.nonzero(torch.rand(C, m, generator=g) > 0.3, as_tuple=True)
    idx = np.concatenate([(cls * m + col).numpy(), C * m + np.arange(C)])
    monkeypatch.setattr(newton_module, "_ROW_FLOATS", 8)  # 256 rows a block: 5 blocks
    for XwT in (None, X.T.contiguous()):
        H = hessian(X, P, cls, col, XwT=XwT)
        np.testing.assert_allclose(H, full[np.ix_(idx, idx)], rtol=0,
                                   atol=1e-6 * np.abs(full).max())
        np.testing.assert_array_equal(H, H.T)


@pytest.mark.parametrize("row_floats", [None, 8])
def test_hessian_diag_is_float64_over_its_row_blocks(monkeypatch, row_floats):
    """``(1/n) Σ x_ij² p_ik(1-p_ik)`` for the chosen weights, from float32 data and
    probabilities, to float64 rounding: in one row block and in blocks of 256 rows (a short
    last one), with and without the column-major copy; none chosen gives an empty array."""
    X, _, C = _problem(n=1100, m=9, C=5, seed=8)
    m = X.shape[1]
    g = torch.Generator().manual_seed(9)
    P = torch.softmax(torch.randn(1100, C, generator=g) * 2, 1)
    cls, col = torch.nonzero(torch.rand(C, m, generator=g) > 0.4, as_tuple=True)
    if row_floats is not None:
        monkeypatch.setattr(newton_module, "_ROW_FLOATS", row_floats)
    Xd, Pd = X.double().numpy(), P.double().numpy()
    ref = ((Xd ** 2).T @ (Pd * (1 - Pd)) / 1100)[col.numpy(), cls.numpy()]
    for XwT in (None, X.T.contiguous()):
        np.testing.assert_allclose(hessian_diag(X, P, cls, col, XwT), ref, rtol=1e-13)
    empty = torch.zeros(0, dtype=torch.int64)
    assert hessian_diag(X, P, empty, empty).shape == (0,)


@pytest.mark.parametrize("chosen,exact", [(5, True), (4, False)])
def test_hessian_diag_takes_the_product_for_at_least_an_eighth_of_the_weights(chosen, exact):
    """m C = 40 weights: 5 chosen (DIAG_ALL x 5 = 40) go by the float64 product (to float64
    rounding), 4 by gathering their columns (float32 products: within float32 rounding)."""
    X, _, C = _problem(n=700, m=8, C=5, seed=10)
    g = torch.Generator().manual_seed(11)
    P = torch.softmax(torch.randn(700, C, generator=g) * 2, 1)
    pick = torch.randperm(40, generator=g)[:chosen].sort().values
    cls, col = pick // 8, pick % 8
    Xd, Pd = X.double().numpy(), P.double().numpy()
    ref = ((Xd ** 2).T @ (Pd * (1 - Pd)) / 700)[col.numpy(), cls.numpy()]
    got = hessian_diag(X, P, cls, col, X.T.contiguous())
    np.testing.assert_allclose(got, ref, rtol=1e-13 if exact else 1e-6)
    assert (np.abs(got / ref - 1).max() < 1e-13) == exact


try:  # the optional extension (setup.py), built where a C compiler is present
    from sparse_probe.solvers import _gram_cd
except ImportError:
    _gram_cd = None


@pytest.fixture(params=["own", "sklearn", "numpy"])
def kernel(request, monkeypatch):
    """Run a test with each Gram CD kernel: the project's compiled one (where built),
    scikit-learn's and the numpy loop."""
    if request.param == "own" and _gram_cd is None:
        pytest.skip("the optional _gram_cd extension is not built")
    monkeypatch.setattr(gram_cd, "_KERNEL", [])
    if request.param == "own":
        monkeypatch.delenv("SPARSE_PROBE_GRAM_CD", raising=False)
    else:
        monkeypatch.setenv("SPARSE_PROBE_GRAM_CD", request.param)
    yield request.param
    monkeypatch.setattr(gram_cd, "_KERNEL", [])


def test_enet_qp_reaches_its_tolerance_on_a_singular_gram(kernel):
    rs = np.random.default_rng(0)
    A = rs.standard_normal((20, 8))
    A[:, 7] = A[:, 0] + A[:, 1]  # exactly collinear: Q singular
    Q = A.T @ A / 20
    q = A.T @ rs.standard_normal(20) / 20  # in Q's range, as a Newton model's (q = Qw - g)
    u, sweeps, viol = enet_qp(Q, q, np.zeros(8), 0.05, 1e-4, tol=1e-10, direct_max=0)
    assert viol <= 1e-10 and sweeps >= 1
    assert qp_violation(Q, q, u, 0.05, 1e-4) == viol  # read off an exact product
    assert (u == 0).any()  # the L1 part keeps exact zeros
    assert gram_cd._KERNEL[0][0] == kernel
    with pytest.raises(ValueError, match="enet_qp: Q"):
        enet_qp(Q, q[:5], np.zeros(8), 0.05, 1e-4, tol=1e-8)


def test_enet_qp_kernels_agree():
    rs = np.random.default_rng(3)
    A = rs.standard_normal((40, 12))
    Q, q = A.T @ A / 40, rs.standard_normal(12)
    u1, u2, u3 = np.zeros(12), np.zeros(12), np.zeros(12)
    gram_cd._cd_numpy(u1, 0.1, 0.01, Q, q, 30)
    gram_cd._cd_sklearn(u2, 0.1, 0.01, Q, q, 30, cd_fast.enet_coordinate_descent_gram)
    np.testing.assert_allclose(u2, u1, rtol=1e-10, atol=1e-13)
    if _gram_cd is not None:
        gram_cd._cd_own(u3, 0.1, 0.01, Q, q, 30, _gram_cd.sweeps, Q @ u3)
        np.testing.assert_allclose(u3, u1, rtol=1e-10, atol=1e-13)


def _lasso_closed_form_problem(rs, N, collinear):
    A = rs.standard_normal((3 * N, N))
    if collinear:
        A[:, -1] = A[:, 0] - 2.0 * A[:, 1]
    Q = A.T @ A / A.shape[0]
    q = A.T @ rs.standard_normal(A.shape[0]) / A.shape[0]
    return Q, q


@pytest.mark.parametrize("collinear", [False, True])
def test_active_set_qp_solves_the_qp_exactly_from_a_near_start(collinear):
    """From a coordinate-descent iterate (signs about right), the face solves reach the
    QP's optimum to rounding: the subgradient vanishes and no objective is lower (against a
    long coordinate descent and scikit-learn's ElasticNet on the equivalent least squares)."""
    from sklearn.linear_model import ElasticNet as SkEnet

    rs = np.random.default_rng(1 if collinear else 2)
    N, l1, l2 = 40, 0.02, 1e-4
    Q, q = _lasso_closed_form_problem(rs, N, collinear)
    u_cd = np.zeros(N)
    gram_cd._cd_numpy(u_cd, l1, l2, Q, q, 5)  # a rough start
    u, solves, viol = gram_cd.active_set_qp(Q, q, u_cd, l1, l2, tol=1e-12)
    assert viol <= 1e-12 and 1 <= solves <= 20
    assert qp_violation(Q, q, u, l1, l2) == pytest.approx(viol)
    # the same problem as least squares, ½||yls − Xls u||² = ½uᵀQu − qᵀu + const, for
    # scikit-learn's 1/(2r)||y − Xu||² + a·ρ||u||₁ + a(1−ρ)/2||u||² with X = √r Xls
    e, V = np.linalg.eigh(Q)
    keep = e > 1e-12
    Xls = (V[:, keep] * np.sqrt(e[keep])).T  # (r, N), Xlsᵀ Xls = Q
    yls = (V[:, keep].T @ q) / np.sqrt(e[keep])  # Xlsᵀ yls = q (q in Q's range)
    r = Xls.shape[0]
    sk = SkEnet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), fit_intercept=False, tol=1e-14,
                max_iter=200_000).fit(Xls * np.sqrt(r), yls * np.sqrt(r))
    obj = gram_cd._objective
    assert obj(Q, q, u, l1, l2) <= obj(Q, q, sk.coef_, l1, l2) + 1e-12
    np.testing.assert_allclose(u, sk.coef_, atol=1e-6 if collinear else 1e-8)


def test_active_set_qp_never_moves_uphill_from_any_start():
    """From random starts (many wrong signs) every accepted move lowers the objective; a
    positive definite problem ends at its optimum."""
    rs = np.random.default_rng(5)
    obj = gram_cd._objective
    for _ in range(30):
        N = int(rs.integers(3, 25))
        Q, q = _lasso_closed_form_problem(rs, N, False)
        l1, l2 = float(rs.uniform(0.001, 0.2)), 1e-3
        u0 = rs.standard_normal(N) * (rs.random(N) < 0.5)
        u, _, viol = gram_cd.active_set_qp(Q, q, u0, l1, l2, tol=1e-11, max_iter=200)
        assert obj(Q, q, u, l1, l2) <= obj(Q, q, u0, l1, l2)
        assert viol <= 1e-11


def test_enet_qp_solves_a_small_model_without_the_compiled_kernel(monkeypatch):
    """Up to DIRECT_MAX coordinates the face solves come first; where they reach the
    tolerance the compiled kernel (and its scikit-learn import) is never asked for."""
    monkeypatch.setattr(gram_cd, "_kernel", lambda: pytest.fail("kernel asked for"))
    rs = np.random.default_rng(11)
    Q, q = _lasso_closed_form_problem(rs, 30, True)
    u, sweeps, viol = enet_qp(Q, q, np.zeros(30), 0.01, 1e-5, tol=1e-11)
    assert sweeps == 0 and viol <= 1e-11
    assert viol == pytest.approx(qp_violation(Q, q, u, 0.01, 1e-5))


def test_enet_qp_hands_a_crawling_descent_to_the_active_set(monkeypatch):
    """On a singular model (exactly collinear columns, a tiny ridge) coordinate descent
    crawls (500 sweeps leave a violation of ~5e-6); enet_qp switches to the face solves and
    meets a tolerance of 1e-10 after a few sweeps."""
    Q, q = singular_model()
    l1, l2 = 1e-2, 1e-6
    u_cd = np.zeros(80)
    gram_cd._cd_numpy(u_cd, l1, l2, Q, q, 500)
    assert qp_violation(Q, q, u_cd, l1, l2) > 1e-7
    calls = []
    real = gram_cd.active_set_qp
    monkeypatch.setattr(gram_cd, "active_set_qp",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    u, sweeps, viol = enet_qp(Q, q, np.zeros(80), l1, l2, tol=1e-10, max_sweeps=500,
                              direct_max=0)  # coordinate descent first, as for a large model
    assert calls and viol <= 1e-10 and sweeps < 100
    assert viol == pytest.approx(qp_violation(Q, q, u, l1, l2))
    assert gram_cd._objective(Q, q, u, l1, l2) <= gram_cd._objective(Q, q, u_cd, l1, l2)


@pytest.mark.parametrize("collinear", [False, True])
def test_newton_reaches_owlqns_optimum_and_returns_its_gradient(collinear, monkeypatch):
    X, y, C = _problem(collinear=collinear)
    m = X.shape[1]
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(ALPHA), 0.01, 1e-7
    z0 = data.logits64(W0, b0)
    z0_copy = z0.clone()
    a = newton(data, W0, b0, lam, pen, tol=tol, z0=z0)
    ref = owlqn(data, W0, b0, lam, pen, tol=tol)
    torch.testing.assert_close(z0, z0_copy)  # the caller's logits are left alone
    assert a.converged and a.violation <= tol

    def exact(r):  # objectives from float64 logits at the returned weights (OWL-QN's own
        # report comes from incrementally updated logits: ~5e-10 below its value here)
        loss, _, _ = data.loss_grad(r.W, r.b, need_grad=False)
        return loss + pen.value(r.W, lam)

    assert a.objective == pytest.approx(exact(a), rel=1e-12, abs=0)  # Newton's report is exact
    assert exact(a) <= exact(ref) + 1e-10
    assert exact(a) == pytest.approx(exact(ref), rel=1e-8)
    assert a.n_iter < ref.n_iter
    _, G, gb = data.loss_grad(a.W, a.b)  # the returned gradient is the one at the solution
    torch.testing.assert_close(a.grad, G, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.grad_b, gb, rtol=0, atol=1e-9)
    # no model handed on where carrying it could not pay (a small problem's Hessian is cheap)
    assert not choice_module.carry_pays(X.shape[0], m, C, m * C + C) and a.memory is None
    monkeypatch.setattr(newton_module, "carry_pays", lambda *a: True)
    a = newton(data, W0, b0, lam, pen, tol=tol, z0=z0)
    # where it could: the model of its fresh Hessian, on the weights the solution uses
    assert isinstance(a.memory, NewtonState) and a.memory.m == m and a.memory.C == C
    nz = (a.W != 0).nonzero().numpy()
    assert np.isin(nz[:, 0] * m + nz[:, 1], a.memory.key).all()
    # started at its own solution: nothing left to do
    again = newton(data, a.W, a.b, lam, pen, tol=tol)
    assert again.n_iter == 0 and again.converged


def test_bias_steps_stay_off_the_null_direction():
    """Float32 probabilities leave the biases' Hessian a ~1e-8 eigenvalue along 1 instead of
    0: the bias step must not be amplified along it (it once drifted the biases to ~1.5e4,
    taking the logits and the line search's precision with them)."""
    X, y, C = _problem(n=2000, seed=5)
    P = torch.softmax(torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    _, _, Hbb = hessian_blocks(X, P, torch.zeros(0, dtype=torch.int64),
                               torch.zeros(0, dtype=torch.int64))
    inv = newton_module._pinv_bias(Hbb)
    assert np.abs(inv @ np.ones(C)).max() <= 1e-6 * np.abs(inv).max()
    J = np.eye(C) - 1.0 / C
    np.testing.assert_allclose(inv @ Hbb @ J, J, atol=1e-6)  # an inverse off the null direction
    data = RestrictedData(X, y, C)
    m = X.shape[1]
    W0 = torch.zeros(C, m, dtype=torch.float64)
    b0 = 1.5e4 + 0.1 * torch.arange(C, dtype=torch.float64)  # drifted along 1: same loss
    res = newton(data, W0, b0, 0.01, ElasticNet(ALPHA), tol=1e-7)
    ref = owlqn(data, W0, b0 - 1.5e4, 0.01, ElasticNet(ALPHA), tol=1e-7)
    assert res.converged and abs(float(res.b.mean())) <= 1e-9
    assert res.objective == pytest.approx(ref.objective, rel=1e-8)


def test_newton_hands_over_to_owlqn_when_the_model_is_too_large_or_streamed():
    X, y, C = _problem(seed=2)
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(ALPHA), 0.005, 1e-7
    data = RestrictedData(X, y, C)
    ref = owlqn(data, W0, b0, lam, pen, tol=tol)
    small = newton(data, W0, b0, lam, pen, tol=tol, max_free=C + 1)
    assert small.converged and small.memory is not None and not isinstance(small.memory,
                                                                             NewtonState)
    assert small.objective == pytest.approx(ref.objective, rel=1e-8)
    # its first model was already too large: OWL-QN solved the point alone, and says so
    assert small.iterations == {"owlqn": small.n_iter} and small.n_iter > 0

    def blocks():
        for s in range(0, X.shape[0], 150):
            yield s, X[s : s + 150]

    streamed = newton(BlockedData(blocks, y, X.shape[0], m, C), W0, b0, lam, pen, tol=tol)
    assert streamed.converged and streamed.logits is None
    assert streamed.objective == pytest.approx(ref.objective, rel=1e-7)
    assert streamed.iterations == {"owlqn": streamed.n_iter}


def test_owlqn_gets_the_callers_max_iter_when_handed_over_to():
    """``owlqn_max_iter`` reaches OWL-QN when Newton hands a point over (the path's
    ``max_iter``; before, OWL-QN's own default of 2,000 cut a held-out path's last point)."""
    X, y, C = _problem(seed=2)
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(ALPHA), 0.005, 1e-9
    data = RestrictedData(X, y, C)
    full = newton(data, W0, b0, lam, pen, tol=tol, max_free=C + 1)
    assert full.converged and full.iterations["owlqn"] > 5
    cut = newton(data, W0, b0, lam, pen, tol=tol, max_free=C + 1, owlqn_max_iter=5)
    assert cut.iterations == {"owlqn": 5} and not cut.converged


def test_newton_solves_fresh_and_stale_models_to_their_shares_of_the_violation(
        monkeypatch, caplog):
    """A model on a fresh Hessian is solved to ``inner`` (0.02) times the KKT violation where
    the step starts, a reused one to DEFAULT_INNER_STALE (0.1) times it, never below a tenth
    of the solver's tolerance (the inexact Newton forcing terms)."""
    X, y, C = _problem(seed=2)
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam = ElasticNet(ALPHA), 0.005
    data = RestrictedData(X, y, C)
    seen = []  # the tolerance of each model solve
    real_qp = newton_module.enet_qp

    def spy_qp(Q, q, u0, l1, l2, *, tol, **kw):
        seen.append(tol)
        return real_qp(Q, q, u0, l1, l2, tol=tol, **kw)

    monkeypatch.setattr(newton_module, "enet_qp", spy_qp)
    assert newton_module.DEFAULT_INNER_STALE == 0.1
    G0, gb0 = data.grad(data.ce(data.logits64(W0, b0))[1])
    viol0 = newton_module._kkt(W0, G0, gb0, pen, lam)
    tol = 1e-4 * viol0
    with caplog.at_level("DEBUG", logger="sparse_probe.solvers.newton"):
        res = newton(data, W0, b0, lam, pen, tol=tol)
    assert res.converged
    # each accepted step's log line: fresh or stale, and the violation where it started
    steps = [(r.args[2], r.args[4]) for r in caplog.records if r.msg.startswith("newton: it")]
    assert len(steps) == len(seen)  # every step accepted: one solve each
    assert {kind for kind, _ in steps} == {"fresh", "stale"}  # both kinds exercised
    for (kind, viol), t in zip(steps, seen, strict=True):
        want = max(0.1 * tol, (0.02 if kind == "fresh" else 0.1) * viol)
        assert t == pytest.approx(want, rel=1e-12), (kind, viol, t)
    # the floor: a share that would go below a tenth of tol is raised to it
    seen.clear()
    newton(data, W0, b0, lam, pen, tol=0.5 * viol0, inner=0.01)
    assert seen[0] == pytest.approx(0.05 * viol0, rel=1e-12)


def test_newton_hands_over_mid_point_and_reports_each_share():
    """A model that outgrows ``max_free`` after a step: OWL-QN finishes from where Newton
    stands, and the result says how many iterations each took (the path's solver choice
    counts only whole points)."""
    X, y, C = _problem(n=400, m=12, seed=0)
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(ALPHA), 0.02, 1e-7
    data = RestrictedData(X, y, C)
    # the first model's size: the weights whose gradient passes shrink·λα at W0 = 0, + biases
    G0, _ = data.grad(data.ce(data.logits64(W0, b0))[1])
    first = int((G0.abs() > newton_module.DEFAULT_SHRINK * pen.l1_l2(lam)[0]).sum()) + C
    alone = newton(data, W0, b0, lam, pen, tol=tol)
    assert alone.iterations is None and alone.converged  # no hand-over: its own count only
    res = newton(data, W0, b0, lam, pen, tol=tol, max_free=first)
    ref = owlqn(data, W0, b0, lam, pen, tol=tol)
    assert res.converged and res.objective == pytest.approx(ref.objective, rel=1e-8)
    assert list(res.iterations) == ["newton", "owlqn"]
    assert res.iterations["newton"] >= 1 and res.iterations["owlqn"] >= 1
    assert sum(res.iterations.values()) == res.n_iter


def test_newton_bad_input_is_a_clear_error():
    X, y, C = _problem()
    data = RestrictedData(X, y, C)
    W0, b0 = torch.zeros(C, X.shape[1], dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    with pytest.raises(ValueError, match="newton: solves the elementwise elastic net only"):
        newton(data, W0, b0, 0.01, GroupedElasticNet(0.9), tol=1e-6)
    with pytest.raises(ValueError, match=r"newton: shrink must be in \(0, 1\], got 0"):
        newton(data, W0, b0, 0.01, ElasticNet(0.9), tol=1e-6, shrink=0)
    with pytest.raises(ValueError, match=r"newton: W0 \(4, 6\) and b0 \(3,\) disagree"):
        newton(data, W0, b0[:3], 0.01, ElasticNet(0.9), tol=1e-6)
    with pytest.raises(ValueError, match="solver 'newton' does not support the grouped penalty"):
        get_solver("newton", GroupedElasticNet())
    assert get_solver("newton", ElasticNet()).solve is SOLVERS["newton"].solve


def test_schur_complement_of_a_subset_is_the_subset_of_the_schur_complement():
    """What lets a smaller free set reuse the carried model as a sub-block."""
    X, _, C = _problem(seed=4)
    P = torch.softmax(torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    cls, col = torch.nonzero(torch.ones(C, X.shape[1], dtype=torch.bool), as_tuple=True)
    Hww, Hwb, Hbb = hessian_blocks(X, P, cls, col)
    inv = np.linalg.pinv(Hbb)
    Q = Hww - Hwb @ inv @ Hwb.T
    sub = np.array([0, 3, 7, 8, 20])
    Hs_ww, Hs_wb, _ = hessian_blocks(X, P, cls[sub], col[sub])
    np.testing.assert_allclose(Hs_ww - Hs_wb @ inv @ Hs_wb.T, Q[np.ix_(sub, sub)], rtol=0,
                               atol=1e-6 * np.abs(Q).max())  # float32 products


def _count_products(monkeypatch) -> list[int]:
    """The multiply-adds of every ``@`` from here on (torch's matmul counted), appended to
    the returned list."""
    products: list[int] = []
    real_mm = torch.Tensor.__matmul__

    def counting(a, b):
        products.append(a.shape[0] * a.shape[1] * b.shape[1])
        return real_mm(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", counting)
    return products


@pytest.mark.parametrize(("share", "k", "gathered"), [
    (0.05, 5, True),  # few columns: their data gathered
    (0.3, 3, False),  # a few rows against many columns: products against all, picked
    (0.1, 9, True),  # many of the rows: the gather pays
    (1.0, 20, False),  # every weight a column: nothing to save
])
def test_hessian_cross_rows_are_the_hessians_rows(share, k, gathered, monkeypatch):
    """The rows of a few weights against others and the biases: the same entries as the
    full Hessian's (autograd-checked above), with or without the column-major copy, with
    the columns' data gathered or picked from products against all columns, whichever
    costs less (GATHER_COPY)."""
    X, _, C = _problem(m=20, C=5, seed=6)
    m = X.shape[1]
    P = torch.softmax(2.0 * torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    g = torch.Generator().manual_seed(2)
    cls, col = torch.nonzero(torch.rand(C, m, generator=g) < share, as_tuple=True)
    Hww, Hwb, _ = hessian_blocks(X, P, cls, col)
    pick = np.linspace(0, cls.numel() - 1, k).round().astype(int)
    assert np.unique(pick).size == k
    products = _count_products(monkeypatch)
    for XwT in (None, X.T.contiguous()):
        products.clear()
        Hna, Hnb = hessian_cross(X, P, cls[pick], col[pick], cls, col, XwT)
        # float32 products of other shapes (and, with threads, other blockings) than
        # hessian_blocks': entries agree to float32's rounding of 400-row sums, not better
        # (1e-6 of the largest failed one run in four at 2 threads: 1.5e-8 against 1.3e-8)
        np.testing.assert_allclose(Hna, Hww[pick], rtol=0, atol=1e-5 * np.abs(Hww).max())
        np.testing.assert_allclose(Hnb, Hwb[pick], rtol=0, atol=1e-5 * np.abs(Hwb).max())
        # the multiply-adds against the columns: n k Na gathered, n k m C picked
        against = sum(products) - X.shape[0] * pick.size * C  # less the biases' product
        Na = cls.numel()
        assert gathered == (k * (m * C - Na) >= newton_module.GATHER_COPY * Na)
        assert against == X.shape[0] * pick.size * (cls.numel() if gathered else m * C)


def test_hessian_rows_gather_into_one_buffer_grown_only_where_too_small():
    """A row block's gather lands in the buffer it is given (no fresh array) while that
    holds it, in a larger one where it does not, and is the block's columns either way (as
    the transposed copy of ``Xw``'s columns is without the column-major copy)."""
    Xw = torch.randn(40, 9, generator=torch.Generator().manual_seed(3))
    XwT = Xw.T.contiguous()
    idx = torch.tensor([7, 2, 2, 5])
    rows = newton_module._rows
    got, buf = rows(Xw, XwT, idx, 0, 5, None)  # 4 x 5: a new buffer of 20
    torch.testing.assert_close(got, Xw[0:5, idx].T, rtol=0, atol=0)
    assert buf.numel() == 20 and got.data_ptr() == buf.data_ptr()
    got, grown = rows(Xw, XwT, idx, 5, 12, buf)  # 4 x 7 needs 28: grown
    torch.testing.assert_close(got, Xw[5:12, idx].T, rtol=0, atol=0)
    assert grown.numel() == 28 and grown.data_ptr() != buf.data_ptr()
    got, same = rows(Xw, XwT, idx, 12, 19, grown)  # 4 x 7 again: the same one
    torch.testing.assert_close(got, Xw[12:19, idx].T, rtol=0, atol=0)
    assert same is grown and got.data_ptr() == grown.data_ptr()
    got, same = rows(Xw, XwT, idx[:2], 30, 33, grown)  # smaller: its start
    torch.testing.assert_close(got, Xw[30:33, idx[:2]].T, rtol=0, atol=0)
    assert same is grown and got.data_ptr() == grown.data_ptr()
    got, same = rows(Xw, None, idx, 33, 40, grown)  # no column-major copy: the buffer unused
    torch.testing.assert_close(got, Xw[33:40, idx].T, rtol=0, atol=0)
    assert got.is_contiguous() and same is grown and got.data_ptr() != grown.data_ptr()


@pytest.mark.parametrize("gathered", [True, False])
def test_hessians_over_row_blocks_with_the_column_major_copy(gathered, monkeypatch):
    """Over several row blocks (the last one narrower), the Hessian's blocks and a few
    weights' rows from the column-major copy's reused gathers are those without the copy."""
    monkeypatch.setattr(newton_module, "_ROW_FLOATS", 1)  # 256-row blocks: 256, 256, 188
    X, _, C = _problem(n=700, m=12, C=4, seed=8)
    m = X.shape[1]
    P = torch.softmax(2.0 * torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    cls, col = torch.nonzero(torch.rand(C, m, generator=torch.Generator().manual_seed(4))
                             < 0.5, as_tuple=True)
    XwT = X.T.contiguous()
    for a, b in zip(newton_module.hessian_blocks(X, P, cls, col, XwT),
                    newton_module.hessian_blocks(X, P, cls, col), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())
    pick = torch.tensor([0, 3, cls.numel() - 1])
    monkeypatch.setattr(newton_module, "GATHER_COPY", 0.0 if gathered else 1e9)
    for a, b in zip(hessian_cross(X, P, cls[pick], col[pick], cls, col, XwT),
                    hessian_cross(X, P, cls[pick], col[pick], cls, col), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())


def test_cover_keeps_one_hessian_with_the_couplings():
    """Weights that join a carried model get their rows at the model's probabilities: the
    extended model is the Schur complement of the Hessian on the union at those
    probabilities (positive semidefinite), not just its diagonal."""
    X, _, C = _problem(seed=8)
    m = X.shape[1]
    P = torch.softmax(torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    key_all = np.arange(C * m)
    key_old = key_all[::2]
    cls, col = (torch.as_tensor(v) for v in np.divmod(key_old, m))
    Hww, Hwb, Hbb = hessian_blocks(X, P, cls, col)
    pinv = newton_module._pinv_bias(Hbb)
    st = NewtonState(key_old, Hww - Hwb @ pinv @ Hwb.T, Hwb, Hbb, m, C, P)

    def split(keys):
        return (torch.as_tensor(v) for v in np.divmod(keys, m))

    key = np.union1d(key_old[1:], [1, 3, 5])  # most of the old weights, 3 new ones
    cover = newton_module._cover(
        st, key, lambda k, u, Pm: hessian_cross(X, Pm, *split(k), *split(u)),
        lambda k: hessian_diag(X, P, *split(k)))
    union = np.union1d(key_old, key)
    # the old model's weights first, in their order, then the new ones
    np.testing.assert_array_equal(cover.key, np.concatenate([key_old, [1, 3, 5]]))
    Fww, Fwb, Fbb = hessian_blocks(X, P, *split(union))
    ref = Fww - Fwb @ newton_module._pinv_bias(Fbb) @ Fwb.T
    at = np.searchsorted(union, cover.key)  # each model weight's place in the sorted union
    ref, Fwb = ref[np.ix_(at, at)], Fwb[at]
    np.testing.assert_allclose(cover.Q, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    N = key_old.size  # the new rows and columns mirror each other exactly
    np.testing.assert_array_equal(cover.Q[N:], cover.Q[:, N:].T)
    np.testing.assert_array_equal(cover.Q[: key_old.size, : key_old.size], st.Q)
    np.testing.assert_allclose(cover.Hwb, Fwb, rtol=0, atol=1e-6 * np.abs(Fwb).max())
    assert np.linalg.eigvalsh(cover.Q).min() > -1e-6 * np.abs(ref).max()
    assert cover.P is P and cover.Hbb is Hbb and cover.faces is None
    assert newton_module._cover(cover, key, None, None) is cover  # covered: the model itself
    # a face factor kept on the model is carried to the extended one (its leading block)
    faces = st.faces_at(1e-3)
    assert st.faces_at(1e-3) is faces and faces.Q is st.Q
    assert faces.solve(np.arange(4), np.ones(4)) is not None and faces.factored
    grown = newton_module._cover(
        st, key, lambda k, u, Pm: hessian_cross(X, Pm, *split(k), *split(u)), None)
    assert grown.faces is not faces and grown.faces.Q is grown.Q and grown.faces.factored
    np.testing.assert_array_equal(grown.faces.T, faces.T)
    assert st.faces_at(2e-3) is not faces and not st.faces.factored  # another ridge: new
    assert newton_module._cover(st, np.arange(1, 2 * key_old.size, 2), None, None) is None
    st.P = None  # without the probabilities: the new weights' own curvature only
    diag_only = newton_module._cover(st, key, None, lambda k: hessian_diag(X, P, *split(k)))
    new = ~np.isin(diag_only.key, key_old)
    assert new.sum() == 3 and not diag_only.Q[np.ix_(new, ~new)].any()
    assert not diag_only.Q[np.ix_(~new, new)].any()
    np.testing.assert_allclose(np.diag(diag_only.Q)[new], hessian_diag(X, P, *split(
        np.array([1, 3, 5]))), rtol=1e-12)
    assert not (diag_only.Q[np.ix_(new, new)] - np.diag(np.diag(diag_only.Q)[new])).any()


def test_restrict_cuts_a_model_past_its_slack_to_a_sub_block_in_its_order():
    """A reused model holding more than MODEL_SLACK times the weights a step frees is cut to
    those weights: the principal sub-block of its Schur complement (the Schur complement of
    their own Hessian), in the model's order, its face factor dropped; within the slack it is
    the model itself."""
    X, _, C = _problem(seed=8)
    m = X.shape[1]
    P = torch.softmax(torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    assert newton_module.MODEL_SLACK == 1.2
    cls, col = (torch.as_tensor(v) for v in np.divmod(np.arange(C * m), m))
    Hww, Hwb, Hbb = hessian_blocks(X, P, cls, col)  # (sorted by class, as it needs)
    Q = Hww - Hwb @ newton_module._pinv_bias(Hbb) @ Hwb.T
    order = np.random.default_rng(1).permutation(C * m)  # a model's order need not be sorted
    st = NewtonState(order, Q[np.ix_(order, order)], Hwb[order], Hbb, m, C, P)
    st.faces_at(1e-3)
    N = order.size
    assert N == 24  # 1.2 x 20
    rng = np.random.default_rng(0)
    at_slack = np.sort(rng.choice(N, 20, replace=False))  # N = 1.2 x its size: kept
    assert newton_module._restrict(st, at_slack) is st
    key = np.sort(np.concatenate([rng.choice(N, 17, replace=False),
                                  [C * m, C * m + 5]]))  # two weights the model lacks
    assert key.size * 1.2 < N  # past the slack (the step's weights, the model's or not)
    inside = np.isin(order, key)
    cut = newton_module._restrict(st, key)
    keep = np.flatnonzero(inside)
    np.testing.assert_array_equal(cut.key, order[keep])  # the model's order kept
    np.testing.assert_array_equal(cut.Q, st.Q[np.ix_(keep, keep)])
    np.testing.assert_array_equal(cut.Hwb, st.Hwb[keep])
    assert not (np.diff(cut.key) > 0).all()
    assert cut.Hbb is Hbb and cut.P is P and cut.faces is None and (cut.m, cut.C) == (m, C)
    # the sub-block is the Schur complement of those weights' own Hessian
    sub = np.sort(order[keep])
    Sww, Swb, Sbb = hessian_blocks(X, P, cls[sub], col[sub])
    ref = Sww - Swb @ newton_module._pinv_bias(Sbb) @ Swb.T
    at = np.searchsorted(sub, order[keep])  # in the model's order
    ref = ref[np.ix_(at, at)]
    np.testing.assert_allclose(cut.Q, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    # the step's weights past the slack by one: cut; a key with every model weight: kept
    just = np.sort(rng.choice(N, 19, replace=False))
    assert newton_module._restrict(st, just).key.size == just.size
    assert newton_module._restrict(st, np.arange(C * m + 3)) is st


@pytest.mark.parametrize("gather", [True, False])
def test_hessian_cross_sums_its_row_blocks_with_a_class_left_out(gather, monkeypatch):
    """Rows of joining weights over blocks of 256 examples (five, a short last one), by either
    route, summed in float64 (float64 arrays returned), with the last class holding neither
    a joining weight nor a column: against autograd's Hessian, whose rows they are."""
    X, y, C = _problem(n=1100, m=9, C=5, seed=12)
    m = X.shape[1]
    g = torch.Generator().manual_seed(13)
    full, P = _autograd_hessian(X, y, C, g, 0.4, 0.2)
    mask = torch.rand(C, m, generator=g) > 0.4
    mask[C - 1] = False  # the last class: no weight at all
    cls, col = torch.nonzero(mask, as_tuple=True)
    pick = np.arange(0, cls.numel(), 3)
    monkeypatch.setattr(newton_module, "_ROW_FLOATS", 8)  # 256 rows a block
    monkeypatch.setattr(newton_module, "GATHER_COPY", 0.0 if gather else 1e12)
    rows = (cls[pick] * m + col[pick]).numpy()
    cols = (cls * m + col).numpy()
    for XwT in (None, X.T.contiguous()):
        Hna, Hnb = hessian_cross(X, P, cls[pick], col[pick], cls, col, XwT)
        assert Hna.dtype == np.float64 and Hnb.dtype == np.float64
        np.testing.assert_allclose(Hna, full[np.ix_(rows, cols)], rtol=0,
                                   atol=1e-6 * np.abs(full).max())
        np.testing.assert_allclose(Hnb, full[np.ix_(rows, C * m + np.arange(C))], rtol=0,
                                   atol=1e-6 * np.abs(full).max())


def test_hessian_cross_takes_the_own_bias_entries_from_p_times_one_minus_p(monkeypatch):
    """Joining weights of a class whose probability is near 1 (1 - p ~ 1e-3): their entries
    against their own class's bias, ``(1/n) Σ x_j p_k (1 - p_k)``, to float64 rounding of the
    float32 terms, not a difference of two float32 products (off by ~1e-4 there), and equal
    to :func:`hessian_blocks`' own-class entries to float32 rounding of row sums."""
    g = torch.Generator().manual_seed(20)
    n, m, C = 3000, 6, 3
    X = torch.rand(n, m, generator=g) + 0.5  # positive: no cancellation among the terms
    logits = torch.zeros(n, C, dtype=torch.float64)
    logits[:, 0] = 7.0 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    P = torch.softmax(logits, 1).float()
    cls_a, col_a = torch.nonzero(torch.ones(C, m, dtype=torch.bool), as_tuple=True)
    pick = torch.arange(m)  # class 0's weights
    ref = ((X * (P[:, :1] * (1.0 - P[:, :1]))).double().sum(0) / n).numpy()
    for gather in (0.0, 1e12):  # either route
        monkeypatch.setattr(newton_module, "GATHER_COPY", gather)
        _, Hnb = hessian_cross(X, P, cls_a[pick], col_a[pick], cls_a, col_a)
        np.testing.assert_allclose(Hnb[:, 0], ref, rtol=1e-9)
    _, Hwb, _ = hessian_blocks(X, P, cls_a, col_a)
    np.testing.assert_allclose(Hwb[:m, 0], ref, rtol=1e-5)


@pytest.mark.parametrize(("k", "Na", "gathered"), [
    (4, 20, True),  # k (m C - Na) = 320 = GATHER_COPY x Na: gathered at the edge
    (4, 21, False),  # 316 < 336
    (6, 40, False),  # 360 < 640 (counting the columns' Na in, as m C + Na, would gather)
])
def test_hessian_cross_gathers_from_where_it_pays(k, Na, gathered, monkeypatch):
    """The columns' data is gathered where ``k (m C - Na) >= GATHER_COPY · Na`` (m C = 100):
    the multiply-adds against the columns say which route ran (n k Na gathered, n k m C
    picked), and either gives the Hessian's rows."""
    X, _, C = _problem(m=20, C=5, seed=14)
    m = X.shape[1]
    P = torch.softmax(2.0 * torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    g = torch.Generator().manual_seed(15)
    key = torch.randperm(m * C, generator=g)[:Na].sort().values
    cls, col = key // m, key % m
    pick = np.arange(k) * (Na // k)
    Hww, Hwb, _ = hessian_blocks(X, P, cls, col)
    products = _count_products(monkeypatch)
    Hna, Hnb = hessian_cross(X, P, cls[pick], col[pick], cls, col, X.T.contiguous())
    against = sum(products) - X.shape[0] * k * C  # less the biases' product
    assert against == X.shape[0] * k * (Na if gathered else m * C)
    np.testing.assert_allclose(Hna, Hww[pick], rtol=0, atol=1e-5 * np.abs(Hww).max())
    np.testing.assert_allclose(Hnb, Hwb[pick], rtol=0, atol=1e-5 * np.abs(Hwb).max())


def test_hessian_blocks_biases_are_float64_sums_of_the_probabilities():
    """``Hbb = (1/n) Σ diag(p_i) - p_i p_iᵀ`` from the float32 probabilities in float64 (to
    float64 rounding, not float32's), symmetric; every block float64."""
    X, _, C = _problem(n=3000, m=5, C=6, seed=16)
    P = torch.softmax(3.0 * torch.randn(3000, C, dtype=torch.float64), 1).float()
    cls, col = torch.nonzero(torch.ones(C, 5, dtype=torch.bool), as_tuple=True)
    Hww, Hwb, Hbb = hessian_blocks(X, P, cls, col)
    assert Hww.dtype == Hwb.dtype == Hbb.dtype == np.float64
    Pd = P.double().numpy()
    ref = (np.diag(Pd.sum(0)) - Pd.T @ Pd) / 3000
    np.testing.assert_allclose(Hbb, ref, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(Hbb, Hbb.T)


def test_hessian_diag_of_one_weight_and_gathered_sums_in_float64():
    """A single chosen weight has its entry (not an empty array); gathered (few weights, with
    or without the column-major copy), the float32 products are summed in float64: equal to
    numpy's float64 sum of the same float32 products to float64 rounding."""
    X, _, C = _problem(n=2000, m=8, C=5, seed=17)
    g = torch.Generator().manual_seed(18)
    P = torch.softmax(torch.randn(2000, C, generator=g) * 2, 1)
    for pick in (torch.tensor([13]), torch.tensor([2, 17, 30])):  # under 1/8 of the 40
        cls, col = pick // 8, pick % 8
        X2 = X[:, col].T.contiguous() ** 2  # float32, as the route computes them
        Wd = (P * (1.0 - P)).T[cls]
        ref = (X2 * Wd).double().numpy().sum(1) / 2000
        for XwT in (None, X.T.contiguous()):
            got = hessian_diag(X, P, cls, col, XwT)
            assert got.shape == (pick.numel(),) and got.dtype == np.float64
            np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_cover_needs_seventy_percent_of_the_weights_and_keeps_the_sizes():
    """A carried model covers a set of weights of which at least 70% are its own (7 of 10:
    covered, 6 of 10: None, a fresh Hessian), and the extended model keeps its m and C."""
    X, _, C = _problem(seed=19)
    m = X.shape[1]
    P = torch.softmax(torch.randn(X.shape[0], C, dtype=torch.float64), 1).float()
    key_old = np.arange(0, 20)
    cls, col = (torch.as_tensor(v) for v in np.divmod(key_old, m))
    Hww, Hwb, Hbb = hessian_blocks(X, P, cls, col)
    st = NewtonState(key_old, Hww - Hwb @ newton_module._pinv_bias(Hbb) @ Hwb.T, Hwb, Hbb,
                     m, C, P)

    def cross(k, u, Pm):
        return hessian_cross(X, Pm, *(torch.as_tensor(v) for v in np.divmod(k, m)),
                             *(torch.as_tensor(v) for v in np.divmod(u, m)))

    seven = np.concatenate([key_old[:7], [20, 21, 22]])
    got = newton_module._cover(st, seven, cross, None)
    assert got is not None and got.key.size == 23 and (got.m, got.C) == (m, C)
    six = np.concatenate([key_old[:6], [20, 21, 22, 23]])
    assert newton_module._cover(st, six, cross, None) is None


def test_pinv_bias_cuts_at_a_billionth_of_the_largest_after_projecting_out_ones():
    """The biases' Hessian with eigenvalues 0.25 and 5e-10 off ``1`` and a 1e-8-relative
    leftover along ``1`` (float32 probabilities): the leftover is projected out, 5e-10
    (over 1e-9 x 0.25) kept; the pseudo-inverse of the rest, nothing along ``1``."""
    C = 3
    one = np.ones(C) / np.sqrt(C)
    V = np.linalg.qr(np.column_stack([one, [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]))[0]
    e = np.array([0.0, 0.25, 5e-10])
    H = (V * e) @ V.T + 2.5e-9 * np.outer(one, one)
    inv = newton_module._pinv_bias(H)
    ref = (V[:, 1:] / e[1:]) @ V[:, 1:].T
    np.testing.assert_allclose(inv, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert np.abs(inv @ one).max() <= 1e-6 * np.abs(inv).max()


def test_kkt_of_a_model_without_weights_is_the_biases_gradient():
    W = torch.zeros(3, 0, dtype=torch.float64)
    gb = torch.tensor([0.01, -0.02, 0.005], dtype=torch.float64)
    assert newton_module._kkt(W, W.clone(), gb, ElasticNet(ALPHA), 0.1) == pytest.approx(0.02)


def test_admit_leaves_a_gradient_at_the_threshold_out():
    """Zero weights join where their gradient *exceeds* the threshold: one equal to it stays out."""
    W = torch.zeros(2, 3, dtype=torch.float64)
    g = torch.tensor([[0.25, 0.5, -0.25], [0.0, -0.75, 0.125]], dtype=torch.float64)
    got = newton_module.admit(W, g, 0.25, floor=10)
    np.testing.assert_array_equal(got.numpy(), [[False, True, False], [False, True, False]])


def test_choice_follows_the_costs():
    assert not prefer_newton(10_000, 100, 10, 20, None)  # OWL-QN first
    assert prefer_newton(10_000, 100, 10, 50, 40)  # few free coordinates, slow OWL-QN
    assert not prefer_newton(10_000, 100, 10, 50, 3)  # OWL-QN barely iterates
    cost = newton_cost(10_000, 100, 10, 300)
    # entering Newton needs a clear gain (enter 0.7); staying on it, a small one (stay 1.5)
    assert prefer_newton(10_000, 100, 10, 300, cost / 0.65)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 0.75)
    assert prefer_newton(10_000, 100, 10, 300, cost / 1.45, on_newton=True)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 1.55, on_newton=True)
    # while on Newton, OWL-QN's old count grows with the model's growth to the power 0.7
    assert not prefer_newton(10_000, 100, 10, 300, cost / 2, on_newton=True)
    assert prefer_newton(10_000, 100, 10, 300, cost / 2, on_newton=True, owlqn_free=30)  # x5.0
    assert not prefer_newton(10_000, 100, 10, 300, cost / 2, on_newton=True, owlqn_free=250)
    assert prefer_newton(10_000, 100, 10, 300, cost / 3.5, on_newton=True, owlqn_free=75)  # x2.6
    # ... never shrinks, and only a stale count (off Newton the count is fresh) is grown
    assert not prefer_newton(10_000, 100, 10, 300, cost / 1.55, on_newton=True, owlqn_free=900)
    assert not prefer_newton(10_000, 100, 10, 300, cost, owlqn_free=30)
    # the steps Newton took on this path so far replace the prior guess
    assert newton_cost(10_000, 100, 10, 300, steps=10) > 1.6 * cost
    assert not prefer_newton(10_000, 100, 10, 300, cost / 0.65, newton_steps=10)
    assert newton_cost(10_000, 100, 10, 300, steps=0.2) == newton_cost(10_000, 100, 10, 300,
                                                                         steps=1)
    assert not prefer_newton(10_000, 64, 100, 6_000, 40)  # many classes: a huge model
    assert newton_cost(10_000, 100, 10, 800) > newton_cost(10_000, 100, 10, 400)
    with pytest.raises(ValueError, match="newton_cost: n, m and C must be positive"):
        newton_cost(0, 10, 3, 5)


def test_cost_model_is_the_documented_formula():
    """Both costs against the formula of solvers/choice.py's docstring, written out."""
    def owlqn_it(n, m, C, h):
        p = m * C
        return 4 * n * p + 53.1 * 4 * h * p + 235 * n * C + 1.04e8

    def newton_pt(n, m, C, N, k):
        if n < N - C and data_cd_compiled():  # the model solved in data space (data_cd.py)
            return k * (2.4 * 4 * n * m * C + 15 * 35 * n * N + 6.12e7) + 5.44e8
        step = 2.4 * 4 * n * m * C + 534 * 0.8 * N * N + 6.12e7
        return 2.28 * 0.6 * n * N * N / 2 + k * step + 5.44e8

    # h: the pairs OWL-QN keeps on CPU, at most 20; 10 beside the class blocks (100 classes)
    for n, m, C, N, h in [(10_000, 100, 10, 300, 20), (500, 3000, 10, 1500, 20),
                          (1, 1, 1, 1, 20), (5_000, 30, 100, 400, 10)]:
        assert owlqn_iteration_cost(n, m, C) == pytest.approx(owlqn_it(n, m, C, h), rel=1e-12)
        for k in (None, 1.5, 7):
            want = newton_pt(n, m, C, N, 3.5 if k is None else k) / owlqn_it(n, m, C, h)
            assert newton_cost(n, m, C, N, k) == pytest.approx(want, rel=1e-12), (n, k)
    # fewer where history_for's memory budget allows fewer, for the mC + C floats of a pair
    # (11 pairs of 699,051 floats, 12 of two fewer)
    assert history_for(699_050 + 1) == 11 and history_for(699_050 - 1) == 12
    assert owlqn_iteration_cost(1000, 699_050, 1) == pytest.approx(
        owlqn_it(1000, 699_050, 1, 11), rel=1e-12)
    for bad in [(0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        with pytest.raises(ValueError, match="must be positive"):
            newton_cost(*bad, 5)


def test_choice_thresholds_are_strict():
    cost = newton_cost(10_000, 100, 10, 300)
    # exactly at the threshold (0.5 x 2c == c in binary): not cheaper, so OWL-QN
    assert not prefer_newton(10_000, 100, 10, 300, 2 * cost, enter=0.5)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 2, on_newton=True, stay=2.0)
    # the stale count grows as a power of the model's growth: 2^0.7 = 1.62 (x 1.5 stay)
    assert prefer_newton(10_000, 100, 10, 300, cost / 2.3, on_newton=True, owlqn_free=150)
    assert not prefer_newton(10_000, 100, 10, 300, cost / 2.6, on_newton=True, owlqn_free=150)
    # Newton's own limit: at it Newton may run, one above it OWL-QN (Newton would hand over)
    assert prefer_newton(10_000, 100, 10, 300, 10 * cost, max_free=300)
    assert not prefer_newton(10_000, 100, 10, 300, 10 * cost, max_free=299)


def test_owlqn_budget_is_three_times_newtons_estimate():
    """OWL-QN's budget where Newton could take the point over: 3x Newton's estimated cost
    in iterations (scaled up by what Newton's points cost beyond their estimates, never
    down), at least 100; none above Newton's max_free."""
    est = newton_cost(10_000, 100, 10, 1200, 5)
    assert 3 * est > 100
    assert owlqn_budget(10_000, 100, 10, 1200, newton_steps=5) == round(3 * est)
    assert owlqn_budget(10_000, 100, 10, 1200, newton_steps=5, newton_over=2.0) == \
        round(6 * est)
    assert owlqn_budget(10_000, 100, 10, 1200, newton_steps=5, newton_over=0.5) == \
        round(3 * est)
    assert owlqn_budget(10_000, 100, 10, 21, newton_steps=1) == 100  # 3 x 1.65 < 100
    assert owlqn_budget(10_000, 100, 10, 300, max_free=300) is not None
    assert owlqn_budget(10_000, 100, 10, 301, max_free=300) is None


def test_path_hands_an_owlqn_point_over_its_budget_to_newton(monkeypatch):
    """A point OWL-QN leaves unconverged at its budget (3 iterations here) is finished by
    Newton from where OWL-QN stands (recorded "owlqn+newton", both solvers' iterations
    counted) and reaches the same optimum as OWL-QN alone; points that converge within it
    stay OWL-QN's."""
    X, y = _geometry("current")
    kw = PATH_KW
    ref = fit_path(X, y, solver="owlqn", **kw)
    monkeypatch.setattr(sys.modules["sparse_probe.fit"], "owlqn_budget", lambda *a, **k: 3)
    p = fit_path(X, y, **kw)
    methods = p.info["method_per_point"]
    handed = [i for i, m in enumerate(methods) if m == "owlqn+newton"]
    assert handed, methods
    assert all(p.n_iter[i] > 3 for i in handed)
    np.testing.assert_allclose(p.objective, ref.objective, rtol=1e-6)
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))
    monkeypatch.setattr(sys.modules["sparse_probe.fit"], "owlqn_budget", lambda *a, **k: None)
    assert "owlqn+newton" not in fit_path(X, y, **kw).info["method_per_point"]


def test_owlqn_iteration_cost_counts_the_overheads():
    """Where n is small the pair buffer and fixed overhead dominate an OWL-QN iteration (the
    measured model of benchmarks/measure_solver_costs.py), where n is large the products."""
    products = 4 * 500 * 3000 * 10
    assert owlqn_iteration_cost(500, 3000, 10) > 4 * products
    fixed = (owlqn_iteration_cost(500, 3000, 10) - products - 4 * 20 * 3000 * 10 * 53.1
             - 235 * 500 * 10)
    assert fixed == pytest.approx(1.04e8)
    big = 4 * 100_000 * 256 * 10
    # the products, the elementwise work on the (n, C) logits (235 nC, a fifth more) and the
    # fixed part
    assert big + 235 * 100_000 * 10 < owlqn_iteration_cost(100_000, 256, 10) < 1.4 * big
    # the same Newton point is cheaper, in OWL-QN iterations, where OWL-QN's are overhead-bound
    assert newton_cost(500, 3000, 10, 1500) < 0.95 * newton_cost(10_000, 3000, 10, 1500)
    with pytest.raises(ValueError, match="must be positive"):
        owlqn_iteration_cost(10, 0, 3)


def test_fit_path_records_the_free_coordinates_its_choice_sizes():
    X, y = _geometry("collinear")
    p = fit_path(X, y, alpha=ALPHA, n_lambdas=6, eps=5e-2, progress=False, threads=1)
    free = p.info["free_per_point"]
    C = int(y.max()) + 1
    assert len(free) == len(p) and free[0] == C  # λ_max: the biases only
    for i in range(1, len(p)):  # the last solution's weights are in the warm start
        assert free[i] >= int((p.weights[i - 1] != 0).sum()) + C, i
    again = fit_path(X, y, alpha=ALPHA, n_lambdas=6, eps=5e-2, progress=False, threads=1)
    assert again.info["method_per_point"] == p.info["method_per_point"]  # no clocks
    assert again.info["free_per_point"] == free


def test_path_records_a_handed_over_point_as_both_solvers(monkeypatch):
    """Newton forced with a small ``max_free``: points whose model outgrows it are finished
    by OWL-QN and recorded so ("newton+owlqn", or "owlqn" where no Newton step was taken),
    never as Newton alone, and reach the same optima."""
    X, y = _geometry("collinear")
    kw = PATH_KW
    ref = fit_path(X, y, solver="owlqn", **kw)
    spec = SOLVERS["newton"]
    monkeypatch.setitem(SOLVERS, "newton", SolverSpec(
        "newton", functools.partial(newton, max_free=40), spec.penalties, spec.uses_logits))
    p = fit_path(X, y, solver="newton", **kw)
    methods, free = p.info["method_per_point"], p.info["free_per_point"]
    over = [i for i in range(len(p)) if free[i] > 45]  # past max_free with margin to spare
    assert over and all("owlqn" in methods[i] for i in over), (methods, free)
    assert "newton" in methods  # points under it: Newton alone
    # the same optima to the solvers' KKT tolerance (as the paths' comparison below)
    np.testing.assert_allclose(p.objective, ref.objective, rtol=1e-6)
    assert np.all(p.kkt_violation <= np.asarray(p.info["tol_per_point"]))


def test_default_choice_skips_newton_above_its_max_free(monkeypatch):
    """The default sends a point whose expected model exceeds Newton's ``max_free`` to
    OWL-QN directly (Newton would only hand it over), and still picks Newton below it."""
    X, y = _geometry("collinear")
    kw = PATH_KW
    base = fit_path(X, y, **kw)
    free = base.info["free_per_point"]
    big = [i for i in range(len(base)) if free[i] > 40]
    assert big and all(base.info["method_per_point"][i] == "newton" for i in big)  # unguarded
    monkeypatch.setattr(sys.modules["sparse_probe.fit"], "DEFAULT_MAX_FREE", 40)
    p = fit_path(X, y, **kw)
    methods = p.info["method_per_point"]
    assert all(methods[i] == "owlqn" for i in big), (methods, free)
    assert "newton" in methods[: big[0]]
    np.testing.assert_allclose(p.objective, base.objective, rtol=1e-6)


# ---------------------------------------------------------------------------- paths
def _geometry(name):
    """A small instance of each ``bench_path.py --geometry`` problem, unstandardized."""
    bench = load_bench("bench_path")
    size = {"classes100": (1200, 10, 20), "wide": (60, 150, 3),
            "binary": (600, 30, 2)}.get(name, (600, 30, 4))
    X, y = bench.make_geometry(name, *size, seed=1)
    rng = np.random.default_rng(0)
    X = X * rng.uniform(0.5, 2.0, X.shape[1]) + rng.normal(0, 1, X.shape[1])
    return X.astype(np.float32), y


@pytest.fixture(scope="module",
                params=["current", "collinear", "lowrank-relu", "classes100", "wide", "binary"])
def paths(request):
    X, y = _geometry(request.param)
    kw = PATH_KW
    return (request.param, X, y, fit_path(X, y, solver="newton", **kw),
            fit_path(X, y, solver="owlqn", **kw), fit_path(X, y, **kw))


@pytest.mark.slow
def test_newton_path_kkt_and_objective_against_references(paths):
    name, X, y, p, ref, auto = paths
    assert p.info["method"] == "newton" and ref.info["method"] == "owlqn"
    tols = np.asarray(p.info["tol_per_point"])
    assert np.all(p.kkt_violation <= tols), name
    g = fit_path(X, y, alpha=ALPHA, lambdas=p.lambdas, solver="glmnet", progress=False)
    for i in range(len(p)):
        f, G, gb = objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], ALPHA,
                                 mean=p.mean, scale=p.scale, return_grad=True)
        assert kkt_violation(G, p.weights[i], p.lambdas[i], ALPHA).max() <= 2 * tols[i], (name, i)
        assert np.abs(gb).max() <= 2 * tols[i], (name, i)
        if i < len(g):
            f_gl = objective_f64(X, y, g.weights[i], g.intercepts[i], p.lambdas[i], ALPHA,
                                 mean=g.mean, scale=g.scale)
            assert f <= f_gl * (1 + 1e-6), (name, i, f, f_gl)
        for other in (ref, auto):  # OWL-QN's optimum, and the default's choice
            f_o = objective_f64(X, y, other.weights[i], other.intercepts[i], p.lambdas[i],
                                ALPHA, mean=p.mean, scale=p.scale)
            assert f == pytest.approx(f_o, rel=1e-6), (name, i)
    assert set(auto.info["method_per_point"]) <= {"closed-form", "owlqn", "newton",
                                                  "owlqn+newton", "newton+owlqn"}


@pytest.mark.slow
def test_newton_path_not_worse_than_sklearn(paths):
    name, X, y, p, _, _ = paths
    Xs = (X.astype(np.float64) - p.mean) / p.scale
    i = 4
    lam = p.lambdas[i]
    coef, intercept = sklearn_multinomial(Xs, y, lam, ALPHA, tol=1e-8)
    f_sk = objective_f64(Xs, y, coef, intercept, lam, ALPHA)
    f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], lam, ALPHA, mean=p.mean,
                         scale=p.scale)
    assert f_us <= f_sk * (1 + 1e-6), (name, f_us, f_sk)
    assert abs(f_us - f_sk) <= 1e-4 * abs(f_sk), (name, f_us, f_sk)


def test_newton_path_in_low_memory_mode_hands_over_to_owlqn():
    X, y = _geometry("current")
    kw = dict(alpha=ALPHA, n_lambdas=5, eps=0.1, progress=False, threads=1)
    a = fit_path(X, y, solver="newton", low_memory=True, **kw)
    b = fit_path(X, y, solver="owlqn", low_memory=True, **kw)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-7)
    assert np.all(a.kkt_violation <= np.asarray(a.info["tol_per_point"]))


def test_carry_model_relabels_the_model_for_an_appended_working_set():
    C, m_old = 3, 4
    key = np.array([0, 2, 3, 5, 9, 11])  # (class, column): (0,0) (0,2) (0,3) (1,1) (2,1) (2,3)
    Q, Hwb, Hbb = np.eye(6), np.ones((6, C)), np.eye(C)
    P = torch.full((10, C), 1.0 / C)
    st = NewtonState(key, Q, Hwb, Hbb, m_old, C, P)
    old_ws = np.array([7, 3, 12, 5])
    assert carry_model(st, old_ws, old_ws.copy()) is st  # same working set: the model itself
    moved = carry_model(st, old_ws, np.array([7, 3, 12, 5, 40, 1]))  # two features appended
    k, j = np.divmod(key, m_old)
    np.testing.assert_array_equal(moved.key, k * 6 + j)
    assert moved.m == 6 and moved.C == C
    assert moved.Q is Q and moved.Hwb is Hwb and moved.Hbb is Hbb and moved.P is P  # no copy
    st.faces_at(0.5)
    assert carry_model(st, old_ws, np.array([7, 3, 12, 5, 40])).faces is st.faces  # same Q
    assert carry_model(st, old_ws, np.array([7, 3, 5])) is None  # a feature left
    assert carry_model(st, old_ws, np.array([3, 7, 12, 5, 40])) is None  # reordered
    assert carry_model(st, old_ws[:3], old_ws) is None  # not the working set it was made on


def test_newton_takes_the_next_points_first_step_on_the_carried_model(monkeypatch):
    """The next λ starts on the last point's model (fewer Hessian multiply-adds) and reaches
    the same optimum; a point solved on the carried model alone hands it on only where its
    last step still contracted the violation (CARRY_RATE), and a model of other sizes is
    ignored. Where carrying does not pay (``carry_pays``: a small problem's Hessian is cheap),
    a fresh Hessian."""
    X, y, C = _problem(n=3000, m=12, C=5, seed=4, collinear=True)
    assert not choice_module.carry_pays(3000, 12, 5, 12 * 5 + 5)
    m = X.shape[1]
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    pen, tol = ElasticNet(ALPHA), 1e-7
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    monkeypatch.setattr(newton_module, "carry_pays", lambda *a: True)
    first = newton(data, W0, b0, 0.02, pen, tol=tol)
    assert first.converged and isinstance(first.memory, NewtonState)
    monkeypatch.setattr(newton_module, "carry_pays", choice_module.carry_pays)
    unpaid = newton(data, first.W, first.b, 0.019, pen, tol=tol, memory=first.memory)
    assert unpaid.work["hessian"] == newton(data, first.W, first.b, 0.019, pen,
                                            tol=tol).work["hessian"]
    assert unpaid.memory is None  # nor handed on from there
    monkeypatch.setattr(newton_module, "carry_pays", lambda *a: True)

    def exact(r, lam):
        loss, _, _ = data.loss_grad(r.W, r.b, need_grad=False)
        return loss + pen.value(r.W, lam)

    for lam in (0.0195, 0.012):
        fresh = newton(data, first.W, first.b, lam, pen, tol=tol)
        carried = newton(data, first.W, first.b, lam, pen, tol=tol, memory=first.memory)
        assert fresh.converged and carried.converged and carried.violation <= tol
        assert exact(carried, lam) == pytest.approx(exact(fresh, lam), rel=1e-9)
        assert carried.work["hessian"] < fresh.work["hessian"]
    # a close λ: the carried model's steps suffice, no fresh Hessian; the model goes on to the
    # next point only where its last step still cut the violation CARRY_RATE-fold
    monkeypatch.setattr(newton_module, "CARRY_RATE", 0.0)
    close = newton(data, first.W, first.b, 0.0199, pen, tol=tol, memory=first.memory)
    assert close.converged and close.n_iter >= 1 and close.violation <= tol
    assert close.work["hessian"] == 0 and close.memory is None
    monkeypatch.setattr(newton_module, "CARRY_RATE", 1.0)
    again = newton(data, first.W, first.b, 0.0199, pen, tol=tol, memory=first.memory)
    assert again.work["hessian"] == 0 and isinstance(again.memory, NewtonState)
    np.testing.assert_array_equal(again.memory.Q[: first.memory.key.size,
                                                 : first.memory.key.size], first.memory.Q)
    # a model made for another working set size (or class count) is not used
    other = NewtonState(first.memory.key, first.memory.Q, first.memory.Hwb, first.memory.Hbb,
                        m + 1, C, first.memory.P)
    ignored = newton(data, first.W, first.b, 0.019, pen, tol=tol, memory=other)
    fresh = newton(data, first.W, first.b, 0.019, pen, tol=tol)
    assert ignored.work["hessian"] == fresh.work["hessian"]
    assert exact(ignored, 0.019) == exact(fresh, 0.019)


def test_fit_path_hands_newtons_model_to_the_next_point(monkeypatch):
    """fit_path passes a Newton point's model to the next Newton point and OWL-QN never
    receives one; the path's objectives are OWL-QN's."""
    X, y, _ = _problem(n=2000, m=10, C=4, seed=6, collinear=True)
    monkeypatch.setattr(newton_module, "carry_pays", lambda *a: True)
    seen = []
    real_newton, real_owlqn = SOLVERS["newton"].solve, SOLVERS["owlqn"].solve

    def spy(name, real):
        def solve(*a, memory=None, **kw):
            seen.append((name, type(memory).__name__))
            return real(*a, memory=memory, **kw)
        return solve

    monkeypatch.setitem(SOLVERS, "newton", SolverSpec("newton", spy("newton", real_newton),
                                                      SOLVERS["newton"].penalties, True))
    monkeypatch.setitem(SOLVERS, "owlqn", SolverSpec("owlqn", spy("owlqn", real_owlqn),
                                                     SOLVERS["owlqn"].penalties, True))
    path = fit_path(X.numpy(), y.numpy(), solver="newton", **PATH_KW)
    kinds = [k for name, k in seen if name == "newton"]
    assert "NewtonState" in kinds[1:]
    assert all(k != "NewtonState" for name, k in seen if name == "owlqn")
    ref = fit_path(X.numpy(), y.numpy(), solver="owlqn", **PATH_KW)
    for i in range(len(path.lambdas)):
        a = objective_f64(X.numpy(), y.numpy(), path.weights[i], path.intercepts[i],
                          path.lambdas[i], ALPHA, mean=path.mean, scale=path.scale)
        b = objective_f64(X.numpy(), y.numpy(), ref.weights[i], ref.intercepts[i],
                          ref.lambdas[i], ALPHA, mean=ref.mean, scale=ref.scale)
        assert a == pytest.approx(b, rel=1e-6)


def test_carry_pays_is_the_documented_rule():
    """A fresh Hessian ``2.28 n N²/2`` against CARRY_MARGIN times a step's estimated cost
    (the per-step terms of newton_cost), decided at the margin exactly."""
    cp = choice_module

    def step(n, m, C, N):
        return 2.4 * 4 * n * m * C + 534 * 0.8 * N * N + 6.12e7

    assert cp.CARRY_MARGIN == 4.0
    for n, m, C, N in [(10_000, 256, 10, 1555), (500, 1400, 10, 1700), (3333, 138, 40, 1000),
                       (12_000, 40, 10, 100)]:
        ratio = 2.28 * n * N * N / 2 / step(n, m, C, N)
        assert cp.carry_pays(n, m, C, N) == (ratio >= 4.0)
    # the collinear bench path's end carries, the n << d path's does not
    assert cp.carry_pays(10_000, 256, 10, 1555) and not cp.carry_pays(500, 1400, 10, 1700)
    # at the margin: find N where the ratio crosses 4 for n = 10,000, m = 256, C = 10
    n, m, C = 10_000, 256, 10
    lo, hi = 10.0, 2000.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if 2.28 * n * mid * mid / 2 >= 4.0 * step(n, m, C, mid) else (mid, hi)
    N = int(np.ceil(hi))
    assert cp.carry_pays(n, m, C, N) and not cp.carry_pays(n, m, C, N - 1)
    # exactly at the margin it carries (>=): a margin that the step's cost times gives the
    # Hessian's exactly
    for N in range(500, 600):
        h = cp.FRESH_HESSIAN * n * float(N) ** 2 / 2
        st = (cp.NEWTON_STEP_PRODUCTS * 4.0 * n * m * C + cp.NEWTON_STEP_MODEL * float(N) ** 2
              + cp.NEWTON_STEP_FIXED)
        if (h / st) * st == h:
            break
    else:
        raise AssertionError("no exact margin found")
    margin = cp.CARRY_MARGIN
    try:
        cp.CARRY_MARGIN = h / st
        assert cp.carry_pays(n, m, C, N) and not cp.carry_pays(n, m, C, N - 1)
    finally:
        cp.CARRY_MARGIN = margin
    with pytest.raises(ValueError, match=r"^carry_pays: n, m and C must be positive"):
        cp.carry_pays(0, m, C, N)
    with pytest.raises(ValueError, match=r"^owlqn_iteration_cost: n, m and C must be positive"):
        cp.owlqn_iteration_cost(5, 0, C)


def test_the_choice_prices_a_carried_point_both_as_counted_and_with_a_fresh_hessian(
        monkeypatch):
    """A point that ran on the last point's model saved its Hessian; the default's choice
    prices it twice: with one (n N²/2 multiply-adds at least), the ratio entering Newton
    reads, and as counted, the ratio staying reads (choice.newton_over_seen)."""
    import sparse_probe.fit as fit_module

    X, y, _ = _problem(n=2500, m=14, C=5, seed=9, collinear=True)
    monkeypatch.setattr(newton_module, "carry_pays", lambda *a: True)
    own, priced = [], []
    real_solve = SOLVERS["newton"].solve

    def solve(*a, **kw):
        res = real_solve(*a, **kw)
        if res.work is not None and res.n_iter:
            own.append(res.work["hessian"])
        return res

    monkeypatch.setitem(SOLVERS, "newton", SolverSpec("newton", solve,
                                                      SOLVERS["newton"].penalties, True))
    real_ratio = fit_module.newton_cost_ratio

    def ratio(n, m, C, n_free, steps, work, **kw):
        priced.append((work["hessian"], n * float(n_free) ** 2 / 2))
        return real_ratio(n, m, C, n_free, steps, work, **kw)

    monkeypatch.setattr(fit_module, "newton_cost_ratio", ratio)
    fit_path(X.numpy(), y.numpy(), solver="newton", **PATH_KW)
    counted = [h for h, _ in priced[1::2]]  # each point's second pricing: its own work
    priced = priced[::2]
    assert priced and len(priced) == len(own) == len(counted)
    assert counted == own
    assert all(h >= fresh for h, fresh in priced)
    carried = [i for i, (h, fresh) in enumerate(priced) if own[i] < fresh]
    assert carried, "no point ran on a carried model"
    assert all(priced[i][0] == priced[i][1] for i in carried)
    assert all(priced[i][0] == own[i] for i in range(len(own)) if i not in carried)


def _admit_example():
    """Two nonzero weights and seven zero ones over the threshold 0.3: (0,1) .9, (0,3) .35,
    (0,5) .6, (1,0) .31, (1,4) .7, (2,1) .45, (2,5) .32."""
    W = torch.zeros(3, 6, dtype=torch.float64)
    W[0, 0], W[1, 2] = 0.5, -0.1
    g = torch.tensor([[0.0, 0.9, 0.2, 0.35, 0.0, 0.6],
                      [0.31, 0.0, 5.0, 0.0, -0.7, 0.0],
                      [0.0, -0.45, 0.0, 0.0, 0.0, 0.32]], dtype=torch.float64)
    return W, g, 0.3


def test_admit_takes_the_largest_entering_weights_up_to_its_cap():
    W, g, thr = _admit_example()  # seven candidates
    every = newton_module.admit(W, g, thr, floor=7)
    np.testing.assert_array_equal(every.numpy(), ((W != 0) | (g.abs() > thr)).numpy())
    three = newton_module.admit(W, g, thr, floor=3)  # cap max(2 nonzero, 3) = 3
    want = (W != 0).clone()
    for k, j in [(0, 1), (1, 4), (0, 5)]:  # the three largest |g| among the candidates
        want[k, j] = True
    np.testing.assert_array_equal(three.numpy(), want.numpy())
    two = newton_module.admit(W, g, thr, floor=0)  # the nonzero count (2) is the cap
    assert int(two.sum()) == 4 and bool(two[0, 1]) and bool(two[1, 4])
    assert newton_module.ENTER_MIN == 256


def test_admit_settles_on_the_nonzeros_past_its_cap_only():
    """``settle`` (a point's first step): past the cap, the nonzero weights alone; within it,
    or with no nonzero weight to settle, the same as without."""
    W, g, thr = _admit_example()
    nz, over = W != 0, g.abs() > thr
    admit = newton_module.admit
    # past the cap (max(2, 3) = 3 < 7, and 6 < 7): the nonzero weights alone
    assert torch.equal(admit(W, g, thr, floor=3, settle=True), nz)
    assert torch.equal(admit(W, g, thr, floor=6, settle=True), nz)
    # within it (7 = 7, and 8): every candidate joins, as without settling
    for floor in (7, 8):
        assert torch.equal(admit(W, g, thr, floor=floor, settle=True), nz | over)
        assert torch.equal(admit(W, g, thr, floor=floor, settle=True),
                           admit(W, g, thr, floor=floor))
    # not settling: the largest three join
    capped = admit(W, g, thr, floor=3)
    assert int((capped & ~nz).sum()) == 3 and bool(capped[0, 1] & capped[1, 4] & capped[0, 5])
    # no nonzero weight to settle: the cap's largest candidates, as without settling
    Z = torch.zeros_like(W)
    assert torch.equal(admit(Z, g, thr, floor=3, settle=True), admit(Z, g, thr, floor=3))
    assert int(admit(Z, g, thr, floor=3, settle=True).sum()) == 3


def test_newton_reaches_the_optimum_admitting_a_few_weights_per_step(monkeypatch):
    """With a small cap on entering weights (n << d: most candidates stay zero) Newton admits
    them over several steps and reaches OWL-QN's optimum; its first model is the capped one."""
    g = torch.Generator().manual_seed(21)
    n, m, C = 80, 150, 4
    X = torch.randn(n, m, generator=g)
    y = torch.argmax(X[:, :6].double() @ torch.randn(6, C, generator=g, dtype=torch.float64), 1)
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam, tol = ElasticNet(ALPHA), 0.02, 1e-7
    sizes = []
    real = newton_module.admit

    def spy(W, grad, thr, floor=None, **kw):
        out = real(W, grad, thr, floor=5, **kw)
        sizes.append((int((W != 0).sum()), int((grad.abs() > thr).sum()), int(out.sum())))
        return out

    monkeypatch.setattr(newton_module, "admit", spy)
    res = newton(data, W0, b0, lam, pen, tol=tol)
    ref = owlqn(data, W0, b0, lam, pen, tol=tol)
    assert res.converged and res.violation <= tol
    assert res.objective == pytest.approx(ref.objective, rel=1e-8)
    nz0, over0, free0 = sizes[0]
    assert nz0 == 0 and over0 > 5 and free0 == 5  # the first model: the five largest only
    assert len(sizes) >= 2 and max(f for _, _, f in sizes) > 5  # more joined later


def test_newton_keeps_the_face_factor_for_the_next_solve_of_one_model(monkeypatch):
    """Each model solve gets the face factor of its own model and ridge; the next solve of the
    same model gets the factor the last one left (no factorization anew where the face is
    nearly the same); the path it fits is the one fitted with a new factor every solve."""
    X, y, _C = _problem(n=3000, m=12, C=5, seed=4, collinear=True)
    kw = dict(alpha=0.9, n_lambdas=8, eps=0.01, progress=False, threads=1, solver="newton")
    calls = []
    real = newton_module.enet_qp

    def spy(Q, q, u0, l1, l2, **k):
        faces = k["faces"]
        assert faces.Q is Q and faces.l2 == l2
        calls.append((Q, faces, faces.factored, faces.factorizations))
        return real(Q, q, u0, l1, l2, **k)

    monkeypatch.setattr(newton_module, "enet_qp", spy)
    kept = fit_path(X.numpy(), y.numpy(), **kw)
    again = [i for i in range(1, len(calls)) if calls[i][0] is calls[i - 1][0]]
    assert again, "no model was solved twice"
    for i in again:
        _Q, faces, factored, _made = calls[i]
        prev = calls[i - 1]
        if prev[1].l2 == faces.l2:  # within a point: the factor the last solve left
            assert faces is prev[1] and factored
    monkeypatch.setattr(NewtonState, "faces_at", lambda self, l2: gram_cd.Faces(self.Q, l2))
    calls.clear()
    fresh = fit_path(X.numpy(), y.numpy(), **kw)
    assert all(not factored for _, _, factored, _ in calls)
    np.testing.assert_allclose(kept.objective, fresh.objective, rtol=1e-8)
    assert np.all(kept.kkt_violation <= np.asarray(kept.info["tol_per_point"]))
