"""SparseProbe (scikit-learn-style) and SparseHead (torch)."""

import numpy as np
import pytest
import torch
from torch import nn

from sparse_probe import SparseHead, SparseProbe
from sparse_probe.synthetic import make_sparse_classification


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = make_sparse_classification(800, 30, 3, informative_per_class=2, seed=2)
    labels = np.array(["cat", "dog", "eel"])[y]
    est = SparseProbe(n_lambdas=20, eps=1e-2).fit(X, labels)
    return est, X, labels


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        SparseProbe().predict(np.zeros((2, 3)))


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
