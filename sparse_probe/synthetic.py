"""A built-in synthetic feature set with a known sparse truth (for the fitter's demo/tests)."""

from __future__ import annotations

import numpy as np

__all__ = ["make_sparse_classification"]


def make_sparse_classification(
    n_samples: int = 4000, n_features: int = 256, n_classes: int = 5, *,
    informative_per_class: int = 3, noise: float = 1.0, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian features where each class is driven by a few features of its own.

    ``x = mu_{y} + noise * N(0, I)`` with ``mu_k`` nonzero (value 1.5) only on class ``k``'s
    ``informative_per_class`` features; the remaining features are pure noise.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    support : ndarray of shape (n_classes, informative_per_class)
        The informative features of each class.
    """
    rng = np.random.default_rng(seed)
    if n_classes * informative_per_class > n_features:
        raise ValueError("n_features must be >= n_classes * informative_per_class")
    support = rng.permutation(n_features)[: n_classes * informative_per_class]
    support = support.reshape(n_classes, informative_per_class)
    mu = np.zeros((n_classes, n_features))
    for k in range(n_classes):
        mu[k, support[k]] = 1.5
    y = rng.integers(0, n_classes, n_samples)
    X = mu[y] + noise * rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32), y.astype(np.int64), support
