"""The torch path solver against independent references: scikit-learn saga and glmnet.

Objective values are compared with one shared float64 implementation (``objective_f64``);
tolerance 1e-5 relative as the issue states (observed agreement is ~1e-9).
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from sparse_probe import fit_path, objective_f64

ALPHA = 0.99


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=500, n_features=24, n_informative=8, n_classes=3,
                               random_state=3)
    return X.astype(np.float64), y


@pytest.fixture(scope="module")
def torch_path(data):
    X, y = data
    return fit_path(X, y, alpha=ALPHA, n_lambdas=15, eps=1e-2, progress=False)


def _sklearn(Xs, y, lam):
    n = len(y)
    est = LogisticRegression(penalty="elasticnet", solver="saga", l1_ratio=ALPHA,
                             C=1.0 / (lam * n), tol=1e-10, max_iter=200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(Xs, y)
    return est.coef_, est.intercept_


@pytest.mark.slow
@pytest.mark.parametrize("i", [2, 7, 14])
def test_objective_and_support_match_sklearn(data, torch_path, i):
    X, y = data
    p = torch_path
    Xs = (X - p.mean) / p.scale
    lam = p.lambdas[i]
    W_sk, b_sk = _sklearn(Xs, y, lam)
    f_sk = objective_f64(Xs, y, W_sk, b_sk, lam, ALPHA)
    f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], lam, ALPHA, mean=p.mean, scale=p.scale)
    assert abs(f_us - f_sk) <= 1e-5 * abs(f_sk)
    assert f_us <= f_sk * (1 + 1e-6)  # never worse than the reference by more than 1e-6 rel.
    # supports agree away from ties: ignore reference weights that are numerically zero-ish
    ours = p.weights[i] != 0
    clear = (np.abs(W_sk) > 1e-4) | (W_sk == 0)
    np.testing.assert_array_equal(ours[clear], (W_sk != 0)[clear])


@pytest.mark.slow
def test_objective_matches_glmnet_backend(data, torch_path):
    X, y = data
    g = fit_path(X, y, alpha=ALPHA, n_lambdas=15, eps=1e-2, solver="glmnet", progress=False)
    assert g.info["solver"] == "glmnet"
    L = min(len(g), len(torch_path))
    assert L >= 10
    np.testing.assert_allclose(torch_path.lambdas[:L], g.lambdas[:L], rtol=1e-12)
    rel = (torch_path.objective[:L] - g.objective[:L]) / g.objective[:L]
    assert np.all(np.abs(rel) <= 1e-5), rel
    for i in range(1, L):
        clear = np.abs(g.weights[i]) > 1e-3
        assert np.all(torch_path.weights[i][clear] != 0)


@pytest.mark.slow
def test_reported_objective_matches_independent_float64(data, torch_path):
    X, y = data
    p = torch_path
    for i in range(len(p)):
        ref = objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], ALPHA,
                            mean=p.mean, scale=p.scale)
        assert p.objective[i] == pytest.approx(ref, rel=1e-7)


@pytest.mark.slow
def test_grouped_matches_glmnet_grouped(data):
    X, y = data
    ours = fit_path(X, y, alpha=ALPHA, n_lambdas=10, eps=2e-2, grouped=True, progress=False)
    ref = fit_path(X, y, alpha=ALPHA, n_lambdas=10, eps=2e-2, grouped=True, solver="glmnet",
                   progress=False)
    L = min(len(ours), len(ref))
    rel = (ours.objective[:L] - ref.objective[:L]) / ref.objective[:L]
    assert np.all(rel <= 1e-5), rel
    # grouped: a feature is used by all classes or by none
    for W in ours.weights:
        used = W != 0
        assert np.all(used.all(0) | ~used.any(0))
    # same active features away from the tie at λ_max itself (where glmnet may keep a ~0 weight)
    np.testing.assert_array_equal(ours.n_active[1:L], ref.n_active[1:L])
    assert ours.n_active[0] == 0
