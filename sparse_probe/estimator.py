"""``SparseProbe``: a scikit-learn-style estimator over :func:`sparse_probe.fit.fit_path`.

Names follow scikit-learn: ``alpha`` is the penalty strength λ and ``l1_ratio`` the L1 share α
(``fit_path`` and the CLI call them ``lambda`` and ``alpha``, as glmnet does). The objective is
``mean CE + alpha * [l1_ratio ||W||_1 + (1 - l1_ratio)/2 ||W||^2]`` on standardized features,
which is scikit-learn's ``LogisticRegression(penalty="elasticnet", C=1/(alpha * n_samples))``.
"""

from __future__ import annotations

import numpy as np
import torch

from sparse_probe.fit import fit_path
from sparse_probe.head import SparseHead
from sparse_probe.path import Path
from sparse_probe.select import Selection, select

__all__ = ["SparseProbe"]


class SparseProbe:
    """Sparse multinomial decision layer fitted along an elastic-net path.

    Parameters
    ----------
    alpha : float, optional
        λ, the penalty strength. When given, the path ends at this λ and that point is used.
        When None (default), the point is chosen by ``selection``.
    l1_ratio : float, default 0.99
        α, the L1 share of the elastic net.
    selection : {"val_acc_within", "features_per_class"}, default "val_acc_within"
    selection_value : float, default 0.05
        Δ validation accuracy (fraction) or the target features per class.
    validation_fraction : float, default 0.1
        Share of the training rows held out for selection when ``fit`` gets no ``X_val``
        (in-memory inputs only).
    n_lambdas, eps, grouped, tol, solver, device :
        As in :func:`~sparse_probe.fit.fit_path`.
    random_state : int, default 0
        Seed of the validation split.

    Attributes
    ----------
    path_ : Path
    selection_ : Selection
    coef_ : ndarray of shape (n_classes, n_features)
        Weights on raw features of the selected point.
    intercept_ : ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : int
    """

    def __init__(self, alpha=None, *, l1_ratio=0.99, selection="val_acc_within",
                 selection_value=0.05, validation_fraction=0.1, n_lambdas=100, eps=1e-3,
                 grouped=False, tol=1e-3, solver="torch", device=None, random_state=0,
                 progress=False):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.selection = selection
        self.selection_value = selection_value
        self.validation_fraction = validation_fraction
        self.n_lambdas = n_lambdas
        self.eps = eps
        self.grouped = grouped
        self.tol = tol
        self.solver = solver
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y, X_val=None, y_val=None) -> SparseProbe:
        """Fit the path on ``X`` (n_samples, n_features), ``y`` (n_samples,) and select a point."""
        y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if X_val is not None:
            y_val = np.searchsorted(self.classes_, np.asarray(y_val))
        elif (self.alpha is None and self.selection == "val_acc_within"
              and self.validation_fraction > 0 and not isinstance(X, str)):
            rng = np.random.default_rng(self.random_state)
            perm = rng.permutation(len(y_enc))
            n_val = max(1, round(self.validation_fraction * len(y_enc)))
            val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            X_val, y_val = X[val_idx], y_enc[val_idx]
            X, y_enc = X[tr_idx], y_enc[tr_idx]
        self.path_ = fit_path(
            X, y_enc, alpha=self.l1_ratio, n_lambdas=self.n_lambdas, eps=self.eps,
            lambda_min=self.alpha, grouped=self.grouped, tol=self.tol, device=self.device,
            X_val=X_val, y_val=y_val, n_classes=len(self.classes_), solver=self.solver,
            classes=[str(c) for c in self.classes_], progress=self.progress,
        )
        if self.alpha is not None:
            self.select("lambda", self.path_.lambdas[-1])
        else:
            self.select(self.selection, self.selection_value)
        return self

    def select(self, rule: str, value: float) -> SparseProbe:
        """Re-select a path point (no refit); updates ``coef_`` and ``intercept_``."""
        path = self._check_fitted()
        self.selection_: Selection = select(path, rule, value)
        self.coef_, self.intercept_ = path.raw_coef(self.selection_.index)
        self.n_iter_ = int(path.n_iter[: self.selection_.index + 1].sum())
        return self

    def _check_fitted(self) -> Path:
        if not hasattr(self, "path_"):
            raise RuntimeError("this SparseProbe is not fitted yet; call fit(X, y) first")
        return self.path_

    def decision_function(self, X) -> np.ndarray:
        """Logits of shape (n_samples, n_classes)."""
        self._check_fitted()
        X = np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"X: expected shape (n, {self.coef_.shape[1]}), got {X.shape}")
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes)."""
        z = self.decision_function(X)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Predicted labels of shape (n_samples,)."""
        z = self.decision_function(X)
        return self.classes_[z.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Accuracy."""
        return float((self.predict(X) == np.asarray(y)).mean())

    @property
    def head_(self) -> SparseHead:
        """The selected point as a torch :class:`~sparse_probe.head.SparseHead`."""
        path = self._check_fitted()
        return SparseHead.from_path(path, self.selection_.index)
