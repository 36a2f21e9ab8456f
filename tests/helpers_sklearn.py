"""scikit-learn's elastic-net logistic regression as an independent reference for the
multinomial objective ``mean CE + λ[α‖W‖₁ + (1 − α)/2‖W‖²]`` (W of shape (C, d)).

For C ≥ 3 scikit-learn fits that multinomial model itself (``C = 1/(λn)``,
``l1_ratio = α``). For two classes it fits one binomial vector ``w`` instead; the two-class
multinomial optimum is ``W = [w/2, −w/2]`` (each feature's two weights centred: the loss sees
only their difference, and the penalty is least with them opposite), whose penalty is
``λ[α‖w‖₁ + (1 − α)/4‖w‖²]``, which is scikit-learn's with ``λ' = λ(1 + α)/2`` and
``l1_ratio = 2α/(1 + α)``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression


def sklearn_multinomial(X: np.ndarray, y: np.ndarray, lam: float, alpha: float,
                        tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """``(W (C, d), b (C,))`` of the multinomial elastic net on ``X`` (n, d) by saga."""
    n = len(y)
    binary = int(y.max()) + 1 == 2
    lam_s, l1 = (lam * (1 + alpha) / 2, 2 * alpha / (1 + alpha)) if binary else (lam, alpha)
    est = LogisticRegression(penalty="elasticnet", solver="saga", l1_ratio=l1,
                             C=1.0 / (lam_s * n), tol=tol, max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    if not binary:
        return est.coef_, est.intercept_
    w, b = est.coef_[0] / 2, est.intercept_[0] / 2  # the binomial logit is class 1 vs 0
    return np.stack([-w, w]), np.array([-b, b])
