"""The path on every feature geometry of ``bench_path.py --geometry`` (small instances).

Each geometry is one the fitter meets in practice (issue 19): make_classification as the
benchmark's presets, exactly collinear columns, post-ReLU low-rank features (nonnegative,
strongly correlated), many classes at small d, and n ≪ d. On each: every point satisfies the
KKT conditions (re-checked independently in float64), and the objective is never worse than
python-glmnet's on the same λ, nor than scikit-learn saga's (tight tolerance) at a few points,
by more than 1e-6 relative. Objectives are evaluated by one shared float64 function.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from sparse_probe import fit_path, kkt_violation, objective_f64

ALPHA = 0.99


def _geometry(name: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    if name == "current":
        X, y = make_classification(n_samples=600, n_features=30, n_informative=6,
                                   n_redundant=0, n_classes=4, n_clusters_per_class=1,
                                   random_state=seed)
    elif name == "collinear":  # as many exact linear combinations as informative columns
        X, y = make_classification(n_samples=600, n_features=30, n_informative=8,
                                   n_redundant=8, n_classes=4, n_clusters_per_class=1,
                                   random_state=seed)
    elif name == "lowrank-relu":
        n, d, C, r = 600, 30, 4, 4
        y = rng.integers(0, C, n)
        Z = rng.standard_normal((C, r))[y] + rng.standard_normal((n, r))
        X = np.maximum(Z @ rng.standard_normal((r, d)) / np.sqrt(r)
                       + 0.3 * rng.standard_normal((n, d)) + 0.3, 0.0)
    elif name == "many-classes":
        X, y = make_classification(n_samples=1200, n_features=10, n_informative=8,
                                   n_redundant=0, n_classes=40, n_clusters_per_class=1,
                                   class_sep=2.0, random_state=seed)
    elif name == "wide":
        X, y = make_classification(n_samples=60, n_features=150, n_informative=5,
                                   n_redundant=0, n_classes=3, n_clusters_per_class=1,
                                   random_state=seed)
    else:
        raise ValueError(name)
    X = X * rng.uniform(0.5, 2.0, X.shape[1]) + rng.normal(0, 1, X.shape[1])  # unstandardized
    return X.astype(np.float32), np.asarray(y, dtype=np.int64)


GEOMETRIES = ["current", "collinear", "lowrank-relu", "many-classes", "wide"]


@pytest.fixture(scope="module", params=GEOMETRIES)
def case(request):
    X, y = _geometry(request.param)
    ours = fit_path(X, y, alpha=ALPHA, n_lambdas=10, eps=2e-2, progress=False)
    return request.param, X, y, ours


@pytest.mark.slow
def test_kkt_at_every_point_independently(case):
    _, X, y, p = case
    tols = np.asarray(p.info["tol_per_point"])
    assert np.all(p.kkt_violation <= tols)
    for i in range(len(p)):
        _, G, gb = objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], ALPHA,
                                 mean=p.mean, scale=p.scale, return_grad=True)
        assert kkt_violation(G, p.weights[i], p.lambdas[i], ALPHA).max() <= 2 * tols[i]
        assert np.abs(gb).max() <= 2 * tols[i]


@pytest.mark.slow
def test_objective_never_worse_than_glmnet(case):
    name, X, y, p = case
    g = fit_path(X, y, alpha=ALPHA, lambdas=p.lambdas, solver="glmnet", progress=False)
    L = min(len(g), len(p))
    assert L >= 8, name
    for i in range(L):
        f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], ALPHA,
                             mean=p.mean, scale=p.scale)
        f_gl = objective_f64(X, y, g.weights[i], g.intercepts[i], p.lambdas[i], ALPHA,
                             mean=g.mean, scale=g.scale)
        assert f_us <= f_gl * (1 + 1e-6), (name, i, f_us, f_gl)
        assert abs(f_us - f_gl) <= 1e-4 * abs(f_gl), (name, i, f_us, f_gl)  # same problem


@pytest.mark.slow
def test_objective_never_worse_than_sklearn(case):
    name, X, y, p = case
    Xs = (X.astype(np.float64) - p.mean) / p.scale
    n = len(y)
    for i in (3,):
        lam = p.lambdas[i]
        est = LogisticRegression(penalty="elasticnet", solver="saga", l1_ratio=ALPHA,
                                 C=1.0 / (lam * n), tol=1e-7, max_iter=100_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(Xs, y)
        f_sk = objective_f64(Xs, y, est.coef_, est.intercept_, lam, ALPHA)
        f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], lam, ALPHA,
                             mean=p.mean, scale=p.scale)
        assert f_us <= f_sk * (1 + 1e-6), (name, i, f_us, f_sk)
        assert abs(f_us - f_sk) <= 1e-4 * abs(f_sk), (name, i, f_us, f_sk)
