"""The float32 gradient products against KKT tolerances near their error.

At the small λ of a path's end (the default ``eps = 1e-3``) the tolerance ``tol · λα``
reaches a few 1e-8, the size of a float32 product's error over thousands of examples: the
solvers then switch to float64 gradient products (``RestrictedData.exact``), and the fitter
recomputes in float64 the features whose verdict the error could flip (``fit._certify``).
Checked against float64 references on data made here, several kinds and seeds.
"""

import numpy as np
import pytest
import torch
from helpers_kkt import kkt_ratios
from sklearn.datasets import make_classification

from sparse_probe import fit_path, kkt_violation, objective_f64
from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers.owlqn import F32_TOL_SHARE, f32_suspect, owlqn
from sparse_probe.solvers.restricted import RestrictedData


def _problem(kind, n, m, C, seed):
    """Standardized float32 columns, labels, and weights a solver might be at."""
    rng = np.random.default_rng(seed)
    if kind == "lowrank":
        Z = rng.standard_normal((n, 6))
        X = np.maximum(Z @ rng.standard_normal((6, m)) + 0.3 * rng.standard_normal((n, m)), 0)
        y = np.argmax(Z[:, :C] if C <= 6 else Z @ rng.standard_normal((6, C)), 1)
    else:
        X, y = make_classification(n_samples=n, n_features=m, n_informative=min(m, 8),
                                   n_redundant=0, n_classes=C, n_clusters_per_class=1,
                                   random_state=seed)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    W = rng.standard_normal((C, m)) * (rng.random((C, m)) < 0.3)
    b = rng.standard_normal(C) * 0.1
    return torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)), W, b


def _reference(X, y, W, b):
    """float64 residual (n, C) ``(p - y)/n`` and gradient (C, m)."""
    X64 = X.double().numpy()
    Z = X64 @ W.T + b
    Z -= Z.max(1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(1, keepdims=True)
    R = (P - np.eye(W.shape[0])[y.numpy()]) / len(y)
    return R, R.T @ X64


CASES = [("current", 6000, 60, 10, 1), ("current", 15000, 30, 3, 2), ("lowrank", 9000, 80, 5, 3),
         ("current", 4000, 40, 40, 4), ("lowrank", 20000, 24, 4, 5), ("lowrank", 30000, 100, 3, 6)]


@pytest.mark.parametrize("kind,n,m,C,seed", CASES)
def test_f32_error_bounds_the_float32_gradient(kind, n, m, C, seed):
    X, y, W, b = _problem(kind, n, m, C, seed)
    data = RestrictedData(X, y, C)
    _loss, G, gb = data.loss_grad(torch.from_numpy(W), torch.from_numpy(b))
    _R, G64 = _reference(X, y, W, b)
    err = np.abs(G.numpy() - G64).max()
    assert 0 < err <= data.f32_error(gb)  # float32 products: some error, within the bound


@pytest.mark.parametrize("kind,n,m,C,seed", CASES)
def test_exact_mode_takes_float64_products(kind, n, m, C, seed):
    X, y, W, b = _problem(kind, n, m, C, seed)
    data = RestrictedData(X, y, C, block_rows=1000)  # several row blocks
    data.exact = True
    _loss, G, gb = data.loss_grad(torch.from_numpy(W), torch.from_numpy(b))
    R, G64 = _reference(X, y, W, b)
    # float64 sums of float64 products of the float32 residual (each entry rounded once)
    scale = np.abs(R).T @ np.abs(X.double().numpy())
    assert np.all(np.abs(G.numpy() - G64) <= 2**-23 * scale + 1e-18)
    assert data.f32_error(gb) == 0.0
    z = data.logits64(torch.from_numpy(W), torch.from_numpy(b))  # from the kept float64 copy
    np.testing.assert_allclose(z.numpy(), X.double().numpy() @ W.T + b, rtol=1e-14, atol=1e-13)


def test_float32_products_are_suspect_near_their_error():
    X, y, W, b = _problem("current", 6000, 60, 10, 1)
    data = RestrictedData(X, y, 10)
    _, _, gb = data.loss_grad(torch.from_numpy(W), torch.from_numpy(b))
    err = data.f32_error(gb)
    tol = err / F32_TOL_SHARE  # the error exactly at its share of the tolerance: not yet
    assert not f32_suspect(data, gb, tol)
    assert f32_suspect(data, gb, 0.99 * tol)
    data.exact = True  # float64 products: never
    assert not f32_suspect(data, gb, 0.99 * tol)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [4, 11, 23])
def test_default_eps_path_verifies_kkt_in_float64(seed):
    """12,000 examples, 10 classes, down to 1e-3 λ_max: the last tolerances (~8e-8) are
    near the float32 products' error. Seed 4 (a held-out sweep's draw): the last point ended
    at 2x its tolerance, Newton crawling at steps of 1e-5 on float32 gradients."""
    X, y = make_classification(n_samples=12000, n_features=40, n_informative=5,
                               n_redundant=0, n_classes=10, n_clusters_per_class=1,
                               class_sep=1.0, random_state=seed)
    X = X.astype(np.float32)
    p = fit_path(X, y, n_lambdas=20, eps=1e-3, progress=False)
    tols = np.asarray(p.info["tol_per_point"])
    assert np.all(p.kkt_violation <= tols)
    assert kkt_ratios(X, y, p).max() <= 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_owlqn_goes_on_in_float64_where_float32_products_stall(seed):
    """A tolerance below what float32 gradient products resolve (1e-9 here, their error a
    few 1e-9): OWL-QN stalls in their noise, switches to float64 products and converges."""
    X, y, _, _ = _problem("current", 3000, 12, 3, seed)
    data = RestrictedData(X, y, 3)
    W0 = torch.zeros(3, 12, dtype=torch.float64)
    b0 = torch.zeros(3, dtype=torch.float64)
    tol = 1e-9
    res = owlqn(data, W0, b0, 2e-3, ElasticNet(0.9), tol=tol, max_iter=3000)
    assert data.exact and res.converged and res.violation <= tol
    R, G64 = _reference(X, y, res.W.numpy(), res.b.numpy())
    viol = kkt_violation(G64, res.W.numpy(), 2e-3, 0.9, False)
    assert viol.max() <= 1.5 * tol and np.abs(R.sum(0)).max() <= 1.5 * tol


def test_certify_recomputes_the_features_near_the_tolerance():
    """fit._certify: the features whose float32 verdict the products' error could flip get
    float64 gradients (checked against objective_f64); the others keep theirs."""
    from sparse_probe.data import FeatureSource
    from sparse_probe.fit import _certify, _float32_standardization, _Trainer
    from sparse_probe.fit_common import column_stats
    from sparse_probe.solvers.restricted import F32_GRADIENT_ERROR

    X, y, W, b = _problem("current", 5000, 30, 4, 7)
    Xr = (X.numpy() * 2.0 + 5.0).astype(np.float32)
    src = FeatureSource(Xr, chunk_rows=1024)
    mean, scale = _float32_standardization(*column_stats(src))
    tr = _Trainer(src, y.numpy(), 4, mean, scale, "cpu", cache_bytes=2**30, low_memory=False)
    ws = np.arange(0, 30, 2)
    tr.set_working_set(ws)
    Wf = np.zeros((4, 30))
    Wf[:, ws] = W[:, ws]
    _, G64, gb = objective_f64(Xr, y.numpy(), Wf, b, 0.0, 1.0, mean=mean, scale=scale,
                               return_grad=True)
    pen, lam = ElasticNet(0.9), 0.01
    l1, l2 = pen.l1_l2(lam)
    counts = np.bincount(y.numpy(), minlength=4)
    err = F32_GRADIENT_ERROR * np.sqrt(2.0 * counts / 5000 + np.abs(gb)).max()
    tol = 10 * err
    # a gradient the solver might report: KKT exact everywhere (nonzero weights balanced,
    # zero ones well inside the threshold), but zero-weight features 3, 7, 11 and 9 with
    # violations tol, tol - err/2, tol - err/2 (given as exact already) and tol - 2 err
    G = np.where(Wf != 0, -l2 * Wf - l1 * np.sign(Wf), 0.1 * l1)
    for j, v in ((3, tol), (7, tol - 0.5 * err), (11, tol - 0.5 * err), (9, tol - 2 * err)):
        G[:, j] = 0.0
        G[1, j] = -(l1 + v)
    out, n = _certify(tr, pen, G, gb, Wf, b, lam, tol, counts, exact=np.array([11]))
    assert n == 2
    np.testing.assert_allclose(out[:, [3, 7]], G64[:, [3, 7]], rtol=1e-10, atol=1e-16)
    keep = np.setdiff1d(np.arange(30), [3, 7])
    np.testing.assert_array_equal(out[:, keep], G[:, keep])


@pytest.mark.parametrize("tol,suspect", [(3e-8, True), (1e-5, False)])
def test_owlqn_verifies_on_float64_products_where_float32_are_suspect(tol, suspect):
    """Converged on float32 products at a tolerance near their error: the answer is checked
    (and returned) on float64 products and exact logits; far above it, float32 stands."""
    X, y, _, _ = _problem("lowrank", 8000, 20, 4, 9)
    data = RestrictedData(X, y, 4)
    W0 = torch.zeros(4, 20, dtype=torch.float64)
    b0 = torch.zeros(4, dtype=torch.float64)
    res = owlqn(data, W0, b0, 1e-3, ElasticNet(0.9), tol=tol)
    assert res.converged and data.exact is suspect
    _, G64 = _reference(X, y, res.W.numpy(), res.b.numpy())
    err = np.abs(res.grad.numpy() - G64).max()
    if suspect:
        assert err <= 1e-13  # float64 products of the exact logits' residual
        assert kkt_violation(G64, res.W.numpy(), 1e-3, 0.9, False).max() <= tol
    else:
        assert err > 1e-12  # float32 products (and no float64 pass paid for)
