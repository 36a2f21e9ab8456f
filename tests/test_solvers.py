"""The solver registry (a lookup by name and penalty) and the solvers it holds: the one
OWL-QN loop on cached and on streamed data, FISTA on either penalty, and fit_path's choice."""

import numpy as np
import pytest
import torch

from sparse_probe import fit_path
from sparse_probe.penalties import ElasticNet, GroupedElasticNet
from sparse_probe.solvers import SOLVERS, get_solver
from sparse_probe.solvers.blocked import BlockedData
from sparse_probe.solvers.restricted import RestrictedData
from sparse_probe.synthetic import make_sparse_classification


def test_lookup_defaults_and_clear_errors():
    assert get_solver(None, ElasticNet()).name == "owlqn"
    assert get_solver(None, GroupedElasticNet()).name == "fista"
    assert get_solver("fista", ElasticNet()).solve is SOLVERS["fista"].solve
    with pytest.raises(ValueError, match="solver 'owlqn' does not support the grouped penalty; "
                                         "use one of fista"):
        get_solver("owlqn", GroupedElasticNet())
    with pytest.raises(ValueError, match="unknown solver 'lbfgs'; expected one of owlqn, fista"):
        get_solver("lbfgs", ElasticNet())


def _problem(n=800, m=10, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    W = torch.randn(C, m, generator=g, dtype=torch.float64)
    y = torch.argmax(X.double() @ W.T + torch.randn(n, C, generator=g, dtype=torch.float64), 1)
    return X, y, C


def _blocked(X, y, C, rows=300):
    def blocks():
        for s in range(0, X.shape[0], rows):
            yield s, X[s : s + rows]

    return BlockedData(blocks, y, X.shape[0], X.shape[1], C)


def test_one_owlqn_loop_on_cached_and_streamed_data():
    """The same iteration on both data accesses: the same iterations and solution, up to the
    float32 products' rounding (the cached access moves float64 logits along the step)."""
    X, y, C = _problem()
    m = X.shape[1]
    W0, b0 = torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    pen, lam = ElasticNet(0.9), 0.01
    owlqn = SOLVERS["owlqn"].solve
    kept = owlqn(RestrictedData(X, y, C, XwT=X.T.contiguous()), W0, b0, lam, pen, tol=1e-8)
    streamed = owlqn(_blocked(X, y, C), W0, b0, lam, pen, tol=1e-8)
    assert kept.converged and streamed.converged
    assert abs(kept.n_iter - streamed.n_iter) <= 2
    assert kept.logits is not None and kept.grad is not None
    assert streamed.logits is None and streamed.grad is None  # nothing of size n kept
    torch.testing.assert_close(streamed.W, kept.W, rtol=0, atol=1e-6)
    assert streamed.objective == pytest.approx(kept.objective, rel=1e-8)
    with pytest.raises(ValueError, match="elementwise elastic net only"):
        owlqn(_blocked(X, y, C), W0, b0, lam, GroupedElasticNet(0.9), tol=1e-8)


@pytest.mark.parametrize("pen", [ElasticNet(0.9), GroupedElasticNet(0.9)], ids=repr)
def test_fista_reaches_the_penalty_kkt_tolerance(pen):
    X, y, C = _problem(seed=1)
    data = RestrictedData(X, y, C)
    m = X.shape[1]
    res = SOLVERS["fista"].solve(data, torch.zeros(C, m, dtype=torch.float64),
                                 torch.zeros(C, dtype=torch.float64), 0.02, pen, tol=1e-6)
    assert res.converged
    _, G, gb = data.loss_grad(res.W, res.b)
    assert float(pen.kkt_violation(G, res.W, 0.02).max()) <= 1e-6
    assert float(gb.abs().max()) <= 1e-6


@pytest.fixture(scope="module")
def xy():
    X, y, _ = make_sparse_classification(600, 30, 3, informative_per_class=2, seed=5)
    return X, y


@pytest.mark.slow
def test_fit_path_solver_by_name(xy):
    """fista on the elementwise penalty reaches the same objective as the default owlqn."""
    X, y = xy
    kw = dict(n_lambdas=8, eps=2e-2, tol=1e-5, progress=False)
    a = fit_path(X, y, **kw)
    b = fit_path(X, y, solver="fista", **kw)
    # the default chooses OWL-QN or proximal Newton per point (solvers/choice.py)
    assert a.info["method"] in ("owlqn", "newton", "newton+owlqn") and b.info["method"] == "fista"
    assert set(a.info["method_per_point"]) <= {"closed-form", "owlqn", "newton", "owlqn+newton",
                                               "newton+owlqn"}
    assert a.info["method_per_point"][0] == "closed-form"  # λ_max
    assert a.info["penalty"] == b.info["penalty"] == "elasticnet"
    np.testing.assert_allclose(b.objective, a.objective, rtol=1e-7)
    assert np.all(b.kkt_violation <= np.asarray(b.info["tol_per_point"]))


def test_fit_path_unsupported_or_unknown_solver_is_a_clear_error(xy):
    X, y = xy
    with pytest.raises(ValueError, match="solver 'owlqn' does not support the grouped penalty"):
        fit_path(X, y, grouped=True, solver="owlqn", n_lambdas=3, progress=False)
    with pytest.raises(ValueError, match="solver must be 'torch', 'glmnet' or one of owlqn, "
                                         "fista, newton, got 'cd'"):
        fit_path(X, y, solver="cd", n_lambdas=3, progress=False)


@pytest.mark.slow
def test_fit_path_takes_a_penalty_object(xy):
    X, y = xy
    a = fit_path(X, y, alpha=0.8, grouped=True, n_lambdas=5, eps=0.1, progress=False)
    b = fit_path(X, y, penalty=GroupedElasticNet(0.8), n_lambdas=5, eps=0.1, progress=False)
    assert b.alpha == 0.8 and b.grouped and b.info["method"] == "fista-grouped"
    np.testing.assert_array_equal(b.objective, a.objective)
