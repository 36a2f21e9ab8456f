"""Shared pieces of the path fitters: standardization statistics and the λ grid."""

from __future__ import annotations

import numpy as np
import torch

from sparse_probe.data import FeatureSource, block_tensor

__all__ = ["column_stats", "lambda_path"]


def column_stats(src: FeatureSource,
                 device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column in float64 (one chunked pass on ``device``).

    Raises ``ValueError`` naming the first column/row holding NaN or inf.
    Zero-variance columns get scale 1 (their standardized value is 0 and never enters the model).
    The rows are converted to float64 by torch where the sums run (:func:`block_tensor`).
    """
    device = torch.device(device)
    total = torch.zeros(src.d, dtype=torch.float64, device=device)
    sq = torch.zeros(src.d, dtype=torch.float64, device=device)
    # shifted sums (shift = first row) keep the variance accurate for large means
    shift = None
    # float64 temporaries of a few MiB per row block on CPU: fresh chunk-sized ones cost a
    # pass of page faults each (40 ms of a 10,000 x 256 fit's 0.5 s, an ad hoc timing)
    rows = max(64, _STATS_BYTES // (8 * max(src.d, 1))) if device.type == "cpu" else None
    for s, chunk in src.chunks():
        for r0, block in _row_blocks(chunk, rows):
            xb = block_tensor(block, device, torch.float64)
            bad = ~torch.isfinite(xb)
            if bool(bad.any()):
                r, c = (int(v) for v in torch.nonzero(bad)[0])
                raise ValueError(f"{src.name}: non-finite value (NaN or inf) at row "
                                 f"{s + r0 + r}, column {c}")
            if shift is None:
                shift = xb[0].clone()
            xb = xb - shift  # a new tensor: xb may be the caller's own float64 array
            total += xb.sum(dim=0)
            sq += (xb * xb).sum(dim=0)
    n = src.n
    total, sq, shift = total.cpu().numpy(), sq.cpu().numpy(), shift.cpu().numpy()
    mean_c = total / n
    var = np.maximum(sq / n - mean_c**2, 0.0)
    std = np.sqrt(var)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean_c + shift))] = 1.0
    return mean_c + shift, std


_STATS_BYTES = 4 * 2**20  # float64 bytes of one row block of column_stats on CPU


def _row_blocks(chunk, rows: int | None):
    """``(offset, rows of chunk)`` blocks of ``rows`` rows (the whole chunk when None)."""
    n = chunk.shape[0]
    if rows is None or n <= rows:
        yield 0, chunk
        return
    for r0 in range(0, n, rows):
        yield r0, chunk[r0 : r0 + rows]


def lambda_path(lambda_max: float, n_lambdas: int = 100, eps: float = 1e-3) -> np.ndarray:
    """``n_lambdas`` values log-spaced from ``lambda_max`` down to ``eps * lambda_max``."""
    if n_lambdas < 1:
        raise ValueError("n_lambdas must be >= 1")
    if not 0 < eps < 1:
        raise ValueError("eps must be in (0, 1)")
    return lambda_max * np.logspace(0.0, np.log10(eps), n_lambdas)
