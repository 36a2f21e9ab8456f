"""The sparse head's objective, written once and used to check every solver.

For standardized features :math:`x_i \\in \\mathbb{R}^d` (mean 0, std 1 on the training set),
labels :math:`y_i \\in \\{0..C-1\\}`, weights :math:`W \\in \\mathbb{R}^{C\\times d}` and an
unpenalized bias :math:`b \\in \\mathbb{R}^C` (glmnet's multinomial objective, also glm_saga's)::

    F(W, b) = 1/n sum_i CE(W x_i + b, y_i) + lam * [alpha * P1(W) + (1 - alpha)/2 * ||W||_F^2]

with ``P1(W) = sum_kj |W_kj|`` (elementwise lasso) or ``P1(W) = sum_j ||W_:j||_2`` (glmnet's
"grouped" multinomial penalty: one L2 norm over classes per feature).

Optimality (KKT) with ``G = dCE/dW`` (shape (C, d)) and ``g_b = dCE/db``:
``g_b = 0``; elementwise: ``G_kj + lam(1-alpha)W_kj + lam*alpha*sign(W_kj) = 0`` where
``W_kj != 0`` and ``|G_kj| <= lam*alpha`` where ``W_kj = 0``; grouped: the same with the vector
``W_:j / ||W_:j||`` and ``||G_:j|| <= lam*alpha``. :func:`kkt_violation` returns the largest
violation of these conditions, in the gradient's units.

The penalty itself (value, the L1/L2 split, the KKT conditions) is written once, in
:mod:`sparse_probe.penalties`; the functions here are its float64 evaluation on data.
"""

from __future__ import annotations

import numpy as np

from sparse_probe.data import FeatureSource
from sparse_probe.penalties import make_penalty

__all__ = ["kkt_violation", "objective_f64", "penalty_value"]


def penalty_value(W: np.ndarray, lam: float, alpha: float, grouped: bool = False) -> float:
    """``lam * [alpha * P1(W) + (1 - alpha)/2 * ||W||_F^2]`` in float64. W: (C, d).

    Shorthand for ``make_penalty(alpha, grouped).value(W, lam)``
    (:mod:`sparse_probe.penalties`)."""
    return make_penalty(alpha, grouped).value(W, lam)


def objective_f64(
    X,
    y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    lam: float,
    alpha: float,
    *,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    grouped: bool = False,
    return_grad: bool = False,
):
    """Independent float64 evaluation of the objective (numpy only, chunked).

    Parameters
    ----------
    X : array-like or FeatureSource, shape (n_samples, n_features)
        Raw features; standardized here as ``(X - mean) / scale`` when given.
    y : ndarray of shape (n_samples,)
    W : ndarray of shape (n_classes, n_features)
        Weights on the standardized features.
    b : ndarray of shape (n_classes,)
    lam, alpha : float
        Penalty strength and L1 share.

    Returns
    -------
    float, or (float, G, g_b) with ``G`` (C, d) and ``g_b`` (C,) the gradient of the mean
    cross-entropy when ``return_grad``.
    """
    src = X if isinstance(X, FeatureSource) else FeatureSource(X)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    y = np.asarray(y)
    mu = None if mean is None else np.asarray(mean, dtype=np.float64)
    sd = None if scale is None else np.asarray(scale, dtype=np.float64)
    total = 0.0
    G = np.zeros_like(W) if return_grad else None
    gb = np.zeros_like(b) if return_grad else None
    # the logits need only the features some class uses: a sparse head's value reads a few
    # columns of each chunk (exact: the others are multiplied by zero)
    cols, Wz, mz, sz = None, W, mu, sd
    used = None if return_grad else np.flatnonzero(np.any(W != 0, axis=0))
    if used is not None and used.size < W.shape[1]:
        cols, Wz = used, W[:, used]
        mz = None if mu is None else mu[used]
        sz = None if sd is None else sd[used]
    for s, block in src.chunks():
        xb = block.cpu().numpy() if hasattr(block, "cpu") else np.asarray(block)
        xb = np.asarray(xb if cols is None else xb[:, cols], dtype=np.float64)
        if mz is not None:
            xb = xb - mz
        if sz is not None:
            xb = xb / sz
        z = xb @ Wz.T + b
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        yb = y[s : s + xb.shape[0]]
        total += float((lse - z[np.arange(xb.shape[0]), yb]).sum())
        if return_grad:
            p = np.exp(z - lse[:, None])
            p[np.arange(xb.shape[0]), yb] -= 1.0
            G += p.T @ xb
            gb += p.sum(axis=0)
    n = src.n
    value = total / n + make_penalty(alpha, grouped).value(W, lam)
    if return_grad:
        return value, G / n, gb / n
    return value


def kkt_violation(
    G: np.ndarray, W: np.ndarray, lam: float, alpha: float, grouped: bool = False
) -> np.ndarray:
    """Per-feature violation of the optimality conditions (see module docstring).

    Parameters
    ----------
    G : ndarray of shape (n_classes, n_features)
        Gradient of the mean cross-entropy at ``W``.
    W : ndarray of shape (n_classes, n_features)

    Returns
    -------
    ndarray of shape (n_features,)
        The largest violation over classes (elementwise penalty) or the norm of the violated
        group condition (grouped), per feature. 0 at an exact optimum.
    """
    return make_penalty(alpha, grouped).kkt_violation(G, W, lam)
