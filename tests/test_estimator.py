"""SparseProbe (a scikit-learn estimator: its common checks run here) and SparseHead (torch)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sparse_probe import SparseHead, SparseProbe
from sparse_probe.penalties import DEFAULT_ALPHA
from sparse_probe.synthetic import make_sparse_classification

# Checks expected to fail, each with its reason. None: every check that applies passes. Those
# for sample_weight, class_weight and partial_fit return early (SparseProbe has none of them),
# the array-API ones skip unless SCIPY_ARRAY_API is set, and sparse input is refused with the
# TypeError the sparse checks expect.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.mark.slow
@parametrize_with_checks([SparseProbe(n_lambdas=8, eps=1e-2)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = make_sparse_classification(800, 30, 3, informative_per_class=2, seed=2)
    labels = np.array(["cat", "dog", "eel"])[y]
    est = SparseProbe(n_lambdas=20, eps=1e-2).fit(X, labels)
    return est, X, labels


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        SparseProbe().predict(np.zeros((2, 3)))


@pytest.mark.slow
def test_params_clone_and_pickle(fitted):
    est, X, _ = fitted
    params = est.get_params()
    assert params["l1_ratio"] == DEFAULT_ALPHA and params["n_lambdas"] == 20
    twin = clone(est)
    assert twin.get_params() == params and not hasattr(twin, "coef_")
    twin.set_params(l1_ratio=0.5, selection="features_per_class", selection_value=2)
    assert twin.l1_ratio == 0.5 and twin.selection == "features_per_class"
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


def test_init_stores_and_fit_validates():
    X, y, _ = make_sparse_classification(200, 10, 3, informative_per_class=2, seed=0)
    bad = SparseProbe(l1_ratio=1.5, selection="nope", validation_fraction=2.0)  # no error yet
    assert bad.l1_ratio == 1.5
    with pytest.raises(ValueError, match="selection must be one of"):
        bad.fit(X, y)
    with pytest.raises(ValueError, match="alpha \\(the L1 share\\) must be in"):
        SparseProbe(l1_ratio=1.5).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        SparseProbe(validation_fraction=2.0).fit(X, y)
    with pytest.raises(ValueError, match="need at least 2 classes"):
        SparseProbe().fit(X, np.zeros(200))
    with pytest.raises(ValueError, match="y_val: label 7 is not among the training classes"):
        SparseProbe(n_lambdas=3).fit(X, y, X_val=X[:5], y_val=[0, 1, 2, 7, 0])


def test_binary_decision_function_is_the_logit_difference():
    X, y, _ = make_sparse_classification(300, 12, 2, informative_per_class=2, seed=4)
    labels = np.array(["no", "yes"])[y]
    est = SparseProbe(n_lambdas=10, eps=1e-2).fit(X, labels)
    d = est.decision_function(X)
    assert d.shape == (300,)
    z = X.astype(np.float64) @ est.coef_.T + est.intercept_
    np.testing.assert_allclose(d, z[:, 1] - z[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(est.predict(X), np.where(d > 0, "yes", "no"))


def test_holdout_keeps_every_class_in_training():
    from sparse_probe.estimator import _stratified_holdout

    y = np.array([0] * 20 + [1] * 3 + [2])
    tr, val = _stratified_holdout(y, 0.25, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate([tr, val])), np.arange(y.size))
    assert np.bincount(y[val], minlength=3).tolist() == [5, 1, 0]  # round(0.25 n_k), < n_k
    assert set(y[tr]) == {0, 1, 2}


@pytest.mark.slow
def test_estimator_api(fitted):
    est, X, labels = fitted
    assert list(est.classes_) == ["cat", "dog", "eel"]
    assert est.coef_.shape == (3, 30) and est.intercept_.shape == (3,)
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(est.predict(X)) <= set(est.classes_)
    assert est.score(X, labels) > 0.8
    # the paper's rule: sparsest point within 5 points of the best validation accuracy
    p, s = est.path_, est.selection_
    assert p.val_acc[s.index] >= np.nanmax(p.val_acc) - 0.05
    assert all(p.nnz[j] >= p.nnz[s.index] for j in range(len(p)) if p.val_acc[j] >= np.nanmax(p.val_acc) - 0.05)


@pytest.mark.slow
def test_explicit_lambda_is_the_last_point(fitted):
    _, X, labels = fitted
    lam = 0.05
    est = SparseProbe(alpha=lam, n_lambdas=20).fit(X, labels)
    assert est.path_.lambdas[-1] == pytest.approx(lam)
    assert est.selection_.lam == pytest.approx(lam)


def test_head_matches_estimator_and_roundtrips(tmp_path, fitted):
    est, X, _ = fitted
    head = est.head_
    with torch.no_grad():
        logits = head(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(logits, est.decision_function(X), rtol=1e-4, atol=1e-4)
    head.save(tmp_path / "head.pt")
    again = SparseHead.load(tmp_path / "head.pt")
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.from_numpy(X)).numpy(), logits, rtol=1e-6)
    lin = head.as_linear()
    with torch.no_grad():
        np.testing.assert_allclose(lin(torch.from_numpy(X)).numpy(), logits, rtol=1e-4, atol=1e-4)


def test_head_attaches_to_backbone(fitted):
    est, X, _ = fitted
    head = est.head_
    backbone = nn.Sequential(nn.Identity(), nn.Linear(30, 3))
    model = head.attach(backbone)
    assert model[1] is head
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(X)).numpy(), est.decision_function(X),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="takes 7 features, the head expects 30"):
        head.attach(nn.Sequential(nn.Linear(7, 3)))


def test_bad_head_file(tmp_path):
    f = tmp_path / "head.pt"
    torch.save({"something": 1}, f)
    with pytest.raises(ValueError, match="not a sparse-probe head file"):
        SparseHead.load(f)


def test_threads_reach_the_fit(monkeypatch):
    from sparse_probe.solvers.threads import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    X, y, _ = make_sparse_classification(300, 12, 3, informative_per_class=2, seed=6)
    est = SparseProbe(n_lambdas=6, eps=5e-2, threads=3).fit(X, y)
    assert est.get_params()["threads"] == 3 and est.path_.info["threads"] == 3
    assert clone(est).threads == 3
    with pytest.raises(ValueError, match="threads: expected a positive integer or 'auto'"):
        SparseProbe(n_lambdas=4, threads="many").fit(X, y)
    assert SparseProbe(n_lambdas=6, eps=5e-2).fit(X, y).path_.info["threads"] == 1  # small
