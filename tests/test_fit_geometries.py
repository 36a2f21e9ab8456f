"""The path on every feature geometry of ``bench_path.py --geometry`` (small instances).

Each geometry is one the fitter meets in practice (issue 19): make_classification as the
benchmark's presets, exactly collinear columns, post-ReLU low-rank features (nonnegative,
strongly correlated), many classes at small d, and n ≪ d; and two the benchmark does not time:
two classes (a toxicity head), a class of three examples beside exact copies of columns
and a constant column, and real deep features (the pooled channels of a small CNN trained in
the test on the built-in shapes data: nonnegative, correlated, some dead). On each: every point satisfies the
KKT conditions (re-checked independently in float64), and the objective is never worse than
python-glmnet's on the same λ, nor than scikit-learn saga's (tight tolerance) at a few points,
by more than 1e-6 relative (1e-5 with the rare class: ``WORSE_BY``). Two classes are checked
against scikit-learn's binomial fit mapped onto the multinomial one (``helpers_sklearn``).
Objectives are evaluated by one shared float64 function.
"""

import numpy as np
import pytest
from helpers_bench import load_bench
from helpers_kkt import kkt_ratios
from helpers_sklearn import sklearn_multinomial
from sklearn.datasets import make_classification

from sparse_probe import fit_path, objective_f64

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
    elif name == "binary":  # two classes, as a toxicity head
        X, y = make_classification(n_samples=600, n_features=30, n_informative=6,
                                   n_redundant=0, n_classes=2, n_clusters_per_class=1,
                                   random_state=seed)
    elif name == "rare-class-copies":  # a class of 3 examples, copied and constant columns
        X, y = make_classification(n_samples=800, n_features=24, n_informative=6,
                                   n_redundant=0, n_classes=5, n_clusters_per_class=1,
                                   random_state=seed)
        keep = np.ones(len(y), bool)
        keep[np.flatnonzero(y == 0)[3:]] = False
        X, y = X[keep], y[keep]
        X = np.concatenate([X, X[:, :5], np.full((len(y), 1), 2.5)], 1)
    elif name == "deep-cnn":  # real deep features: a small CNN trained here on built-in data
        X, y = load_bench("bench_path").deep_features("deep-cnn", 600, 24, 6, seed, size=32,
                                                      epochs=3)
    else:
        raise ValueError(name)
    X = X * rng.uniform(0.5, 2.0, X.shape[1]) + rng.normal(0, 1, X.shape[1])  # unstandardized
    return X.astype(np.float32), np.asarray(y, dtype=np.int64)


GEOMETRIES = ["current", "collinear", "lowrank-relu", "many-classes", "wide", "binary",
              "rare-class-copies", "deep-cnn"]


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
    assert kkt_ratios(X, y, p).max() <= 1.0  # the claim itself, in float64


#: How much worse than glmnet's an objective may be, relative. 1e-6 where every class is
#: common; a class of 3 examples in 640 has curvature ~0.005 along its bias, and the default
#: KKT tolerance (gradient units) then allows a gap ~v²/(2·0.005): 1.2e-6 at the second λ
#: here (2.5e-10 with a tenth of the tolerance), within issue 19's 1e-5.
WORSE_BY = {"rare-class-copies": 1e-5}


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
        assert f_us <= f_gl * (1 + WORSE_BY.get(name, 1e-6)), (name, i, f_us, f_gl)
        assert abs(f_us - f_gl) <= 1e-4 * abs(f_gl), (name, i, f_us, f_gl)  # same problem


@pytest.mark.slow
def test_objective_never_worse_than_sklearn(case):
    name, X, y, p = case
    Xs = (X.astype(np.float64) - p.mean) / p.scale
    for i in (3,):
        lam = p.lambdas[i]
        coef, intercept = sklearn_multinomial(Xs, y, lam, ALPHA, tol=1e-7)
        f_sk = objective_f64(Xs, y, coef, intercept, lam, ALPHA)
        f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], lam, ALPHA,
                             mean=p.mean, scale=p.scale)
        assert f_us <= f_sk * (1 + 1e-6), (name, i, f_us, f_sk)
        assert abs(f_us - f_sk) <= 1e-4 * abs(f_sk), (name, i, f_us, f_sk)


def _worse_than_glmnet(X, y, p, g, alpha, grouped=False) -> float:
    """The largest relative amount by which ``p``'s objective exceeds ``g``'s at a shared λ."""
    out = []
    for i in range(min(len(p), len(g))):
        f = [objective_f64(X, y, q.weights[i], q.intercepts[i], p.lambdas[i], alpha,
                           mean=q.mean, scale=q.scale, grouped=grouped) for q in (p, g)]
        out.append((f[0] - f[1]) / abs(f[1]))
    return max(out)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_other_l1_shares_match_glmnet(name, alpha):
    """α away from the benchmark's 0.99, on data of another seed: the ridge share then weighs
    (at 0.99 it is 1% of the penalty, where a slip in how a solver carries it could hide) and
    α = 1 leaves none (the lasso). KKT at every point and glmnet's objective as above."""
    X, y = _geometry(name, seed=1)
    p = fit_path(X, y, alpha=alpha, n_lambdas=10, eps=1e-2, progress=False)
    assert kkt_ratios(X, y, p).max() <= 1.0
    g = fit_path(X, y, alpha=alpha, lambdas=p.lambdas, solver="glmnet", progress=False)
    assert len(g) >= 2, name
    worse = _worse_than_glmnet(X, y, p, g, alpha)
    assert -1e-4 <= worse <= WORSE_BY.get(name, 1e-6), (name, alpha, worse)
    if len(g) < len(p):  # glmnet stopped unconverged (the 40-class lasso): saga past its end
        i = len(g) + (len(p) - len(g)) // 2
        Xs = (X.astype(np.float64) - p.mean) / p.scale
        coef, intercept = sklearn_multinomial(Xs, y, p.lambdas[i], alpha, tol=1e-7)
        f_sk = objective_f64(Xs, y, coef, intercept, p.lambdas[i], alpha)
        f_us = objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], alpha,
                             mean=p.mean, scale=p.scale)
        assert f_us <= f_sk * (1 + 1e-6), (name, alpha, i, f_us, f_sk)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["current", "wide", "binary"])
def test_grouped_at_half_l1_matches_glmnet(name):
    """The grouped penalty at α = 0.5 against glmnet's kopt=2 on data of another seed."""
    X, y = _geometry(name, seed=2)
    p = fit_path(X, y, alpha=0.5, n_lambdas=10, eps=1e-2, grouped=True, progress=False)
    g = fit_path(X, y, alpha=0.5, lambdas=p.lambdas, grouped=True, solver="glmnet",
                 progress=False)
    assert len(g) >= 8, name
    worse = _worse_than_glmnet(X, y, p, g, 0.5, grouped=True)
    assert -1e-4 <= worse <= 1e-6, (name, worse)
