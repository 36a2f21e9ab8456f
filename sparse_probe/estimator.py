"""``SparseProbe``: a scikit-learn estimator over :func:`sparse_probe.fit.fit_path`.

Names follow scikit-learn: ``alpha`` is the penalty strength λ and ``l1_ratio`` the L1 share α
(``fit_path`` and the CLI call them ``lambda`` and ``alpha``, as glmnet does). The objective is
``mean CE + alpha * [l1_ratio ||W||_1 + (1 - l1_ratio)/2 ||W||^2]`` on standardized features,
which is scikit-learn's ``LogisticRegression(penalty="elasticnet", C=1/(alpha * n_samples))``.

As scikit-learn asks of an estimator, ``__init__`` only stores its arguments; ``fit`` validates
them and the data. It passes scikit-learn's ``check_estimator`` (see ``tests/test_estimator.py``
for the checks that cannot apply).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sparse_probe.data import FeatureSource
from sparse_probe.fit import fit_path
from sparse_probe.head import SparseHead
from sparse_probe.penalties import DEFAULT_ALPHA
from sparse_probe.select import Selection, select

__all__ = ["SparseProbe"]

_SELECTIONS = ("val_acc_within", "features_per_class")


def _stratified_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Row indices (train, val), both sorted: ``round(fraction * n_k)`` random rows of each
    class k held out, but never a class's last row (every class keeps a training example)."""
    val = []
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        val.append(rows[: min(round(fraction * rows.size), rows.size - 1)])
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(y.size), val_idx), val_idx


class SparseProbe(ClassifierMixin, BaseEstimator):
    """Sparse multinomial decision layer fitted along an elastic-net path.

    Parameters
    ----------
    alpha : float, optional
        λ, the penalty strength. When given, the path ends at this λ and that point is used.
        When None (default), the point is chosen by ``selection``.
    l1_ratio : float, default :data:`~sparse_probe.penalties.DEFAULT_ALPHA` (0.99)
        α, the L1 share of the elastic net, in (0, 1].
    selection : {"val_acc_within", "features_per_class"}, default "val_acc_within"
    selection_value : float, default 0.05
        Δ validation accuracy (fraction) or the target features per class.
    validation_fraction : float, default 0.1
        Share of each class's training rows held out for selection when ``fit`` gets no
        ``X_val`` (in-memory inputs only; with too few rows nothing is held out and the
        selection uses training accuracy).
    n_lambdas, eps, grouped, tol, solver, device, threads :
        As in :func:`~sparse_probe.fit.fit_path` (``threads`` None: the environment's
        ``SPARSE_PROBE_THREADS``, else the cores left free and a probe; an int: that many).
    random_state : int, default 0
        Seed of the validation split.
    progress : bool, default False
        Show the path's progress bar.

    Attributes
    ----------
    path_ : Path
    selection_ : Selection
    coef_ : ndarray of shape (n_classes, n_features)
        Weights on raw features of the selected point.
    intercept_ : ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Solver iterations summed over the path up to the selected point.
    """

    def __init__(self, alpha=None, *, l1_ratio=DEFAULT_ALPHA, selection="val_acc_within",
                 selection_value=0.05, validation_fraction=0.1, n_lambdas=100, eps=1e-3,
                 grouped=False, tol=1e-3, solver="torch", device=None, random_state=0,
                 progress=False, threads=None):
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
        self.threads = threads

    def _check_params(self) -> None:
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"alpha (λ) must be positive or None, got {self.alpha}")
        if self.selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(_SELECTIONS)}, "
                             f"got {self.selection!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1), "
                             f"got {self.validation_fraction}")

    def fit(self, X, y, X_val=None, y_val=None) -> SparseProbe:
        """Fit the path and select a point.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), torch.Tensor, or path to a ``.npy``
            Tensors stay on their device; a path is streamed (see ``fit_path``).
        y : array-like of shape (n_samples,)
            Class labels (any sortable values).
        X_val, y_val : optional
            Validation data for the selection (else a stratified share of ``X`` is held out).

        Returns
        -------
        self
        """
        self._check_params()
        if isinstance(X, str | os.PathLike | torch.Tensor):  # streamed or on a device
            y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
            if y.ndim != 1:
                raise ValueError(f"y: expected a 1-d array of labels, got shape {y.shape}")
            self.n_features_in_ = FeatureSource(X, name="X").d
        else:
            X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y: need at least 2 classes, got one class ({self.classes_[0]!r})")
        if X_val is not None:
            if y_val is None:
                raise ValueError("y_val: required with X_val")
            y_val = np.asarray(y_val)
            unknown = ~np.isin(y_val, self.classes_)
            if unknown.any():
                raise ValueError(f"y_val: label {y_val[unknown][0]} is not among the "
                                 "training classes")
            y_val = np.searchsorted(self.classes_, y_val)
        elif (self.alpha is None and self.selection == "val_acc_within"
              and self.validation_fraction > 0 and not isinstance(X, str | os.PathLike)):
            rng = np.random.default_rng(self.random_state)
            tr_idx, val_idx = _stratified_holdout(y_enc, self.validation_fraction, rng)
            if val_idx.size:
                X_val, y_val = X[val_idx], y_enc[val_idx]
                X, y_enc = X[tr_idx], y_enc[tr_idx]
        self.path_ = fit_path(
            X, y_enc, alpha=self.l1_ratio, n_lambdas=self.n_lambdas, eps=self.eps,
            lambda_min=self.alpha, grouped=self.grouped, tol=self.tol, device=self.device,
            X_val=X_val, y_val=y_val, n_classes=len(self.classes_), solver=self.solver,
            classes=[str(c) for c in self.classes_], progress=self.progress,
            threads=self.threads,
        )
        if self.alpha is not None:
            self.select("lambda", self.path_.lambdas[-1])
        else:
            self.select(self.selection, self.selection_value)
        return self

    def select(self, rule: str, value: float) -> SparseProbe:
        """Re-select a path point (no refit); updates ``coef_`` and ``intercept_``."""
        check_is_fitted(self, "path_")
        path = self.path_
        self.selection_: Selection = select(path, rule, value)
        self.coef_, self.intercept_ = path.raw_coef(self.selection_.index)
        self.n_iter_ = int(path.n_iter[: self.selection_.index + 1].sum())
        return self

    def _logits(self, X) -> np.ndarray:
        """Logits (n_samples, n_classes) of validated ``X``."""
        check_is_fitted(self, "path_")
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_

    def decision_function(self, X) -> np.ndarray:
        """Logits: shape (n_samples, n_classes); with two classes, as scikit-learn's binary
        classifiers, shape (n_samples,): the logit of ``classes_[1]`` minus that of
        ``classes_[0]`` (positive means ``classes_[1]``)."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes)."""
        z = self._logits(X)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Predicted labels of shape (n_samples,)."""
        z = self._logits(X)  # checks fitted first
        return self.classes_[z.argmax(axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (scikit-learn's ``ClassifierMixin.score``)."""
        return float(super().score(X, y, sample_weight=sample_weight))

    @property
    def head_(self) -> SparseHead:
        """The selected point as a torch :class:`~sparse_probe.head.SparseHead`."""
        check_is_fitted(self, "path_")
        return SparseHead.from_path(self.path_, self.selection_.index)

