"""Shared pieces of the path fitters: standardization statistics and the λ grid."""

from __future__ import annotations

import numpy as np
import torch

from sparse_probe.data import FeatureSource

__all__ = ["column_stats", "lambda_path"]


def column_stats(src: FeatureSource) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column in float64 (one chunked pass).

    Raises ``ValueError`` naming the first column/row holding NaN or inf.
    Zero-variance columns get scale 1 (their standardized value is 0 and never enters the model).
    """
    total = np.zeros(src.d)
    sq = np.zeros(src.d)
    # shifted sums (shift = first row) keep the variance accurate for large means
    shift = None
    for s, block in src.chunks():
        xb = block.detach().cpu().numpy() if isinstance(block, torch.Tensor) else block
        xb = np.asarray(xb, dtype=np.float64)
        bad = ~np.isfinite(xb)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{src.name}: non-finite value (NaN or inf) at row {s + r}, column {c}")
        if shift is None:
            shift = xb[0].copy()
        xb = xb - shift
        total += xb.sum(axis=0)
        sq += (xb * xb).sum(axis=0)
    n = src.n
    mean_c = total / n
    var = np.maximum(sq / n - mean_c**2, 0.0)
    std = np.sqrt(var)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean_c + shift))] = 1.0
    return mean_c + shift, std


def lambda_path(lambda_max: float, n_lambdas: int = 100, eps: float = 1e-3) -> np.ndarray:
    """``n_lambdas`` values log-spaced from ``lambda_max`` down to ``eps * lambda_max``."""
    if n_lambdas < 1:
        raise ValueError("n_lambdas must be >= 1")
    if not 0 < eps < 1:
        raise ValueError("eps must be in (0, 1)")
    return lambda_max * np.logspace(0.0, np.log10(eps), n_lambdas)
