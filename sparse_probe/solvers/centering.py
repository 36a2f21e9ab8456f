"""Penalty-optimal centering of the multinomial weights: a free, exact descent step.

The softmax cross-entropy is invariant to adding the same number to every class's weight for a
feature: ``W[:, j] + c_j`` changes each logit of example ``i`` by ``c_j x_ij``, equally for all
classes, so the loss, its gradient ``R^T X`` and the predictions stay the same. Only the penalty
moves. Along these d directions the objective's curvature is the ridge part ``λ(1-α)`` alone,
tiny for the usual α near 1, so gradient and quasi-Newton methods crawl along them near the dense
end of the path. Minimizing the penalty over each column's shift in closed form removes that
slow mode (glmnet's multinomial solver applies the same step; Friedman, Hastie & Tibshirani,
J. Stat. Softw. 2010, section 4).

For one column ``w`` (C values) the shift solves the 1-D convex problem

    min_c  α Σ_k |w_k + c| + (1-α)/2 Σ_k (w_k + c)^2

whose derivative is piecewise linear with kinks at ``c = -w_k``; grouped penalty
(``α ||w + c||_2 + (1-α)/2 ||w + c||^2``): ``c = -mean(w)``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["center_shift"]


def center_shift(W: torch.Tensor, alpha: float, grouped: bool = False) -> torch.Tensor:
    """Shift per feature that minimizes the penalty of ``W + shift`` (loss unchanged).

    Parameters
    ----------
    W : torch.Tensor of shape (C, m)
        Weights (any float dtype, any device).
    alpha : float
        L1 share α in (0, 1].
    grouped : bool
        Per-feature L2 norm over classes instead of the elementwise L1 norm.

    Returns
    -------
    torch.Tensor of shape (m,), W's dtype
        ``c_j``; zero wherever the shift would not lower the penalty strictly (so zero columns
        and columns already centered stay exactly as they are).

    Notes
    -----
    CPU tensors are computed with numpy (the same steps): the solver calls this once per
    iteration on a (C, m) array, where torch's per-op overhead (~35 small ops) cost ~0.7 ms
    against numpy's ~0.15 ms. Other devices keep the data where it is.
    """
    if W.device.type == "cpu":
        c = _center_shift_np(W.detach().numpy().astype(np.float64, copy=False), alpha, grouped)
        return torch.from_numpy(c).to(W.dtype)
    return _center_shift_torch(W, alpha, grouped)


def _center_shift_torch(W: torch.Tensor, alpha: float, grouped: bool) -> torch.Tensor:
    """:func:`center_shift` with torch ops on W's device."""
    C = W.shape[0]
    W64 = W.to(torch.float64)
    if grouped:
        c = -W64.mean(0)
    else:
        # per column (rows of the (m, C) transpose: sorting along a contiguous dim is ~10x
        # faster than along dim 0 of a (C, m) tensor)
        bp = torch.sort(-W64.T.contiguous(), dim=1).values  # kinks, ascending (m, C)
        S = W64.sum(0)
        i = torch.arange(C, dtype=torch.float64, device=W.device)[None, :]
        ridge = (1.0 - alpha) * (S[:, None] + C * bp)
        right = alpha * (2 * (i + 1) - C) + ridge  # derivative just right of each kink
        left = alpha * (2 * i - C) + ridge  # and just left of it
        # ``right`` increases along each row, so the first kink with right >= 0 (C: none) is
        # C minus the count of such kinks
        istar = C - (right >= 0).sum(1)
        ii = istar.clamp(max=C - 1)[:, None]
        at_kink = (istar < C) & (left.gather(1, ii)[:, 0] <= 0)
        c = torch.where(at_kink, bp.gather(1, ii)[:, 0], torch.zeros_like(S))
        if alpha < 1:  # the root lies inside the segment left of kink istar
            seg = -(alpha * (2 * istar.to(torch.float64) - C) + (1.0 - alpha) * S) / (
                (1.0 - alpha) * C)
            c = torch.where(at_kink, c, seg)
    before = _column_penalty(W64, alpha, grouped)
    after = _column_penalty(W64 + c[None, :], alpha, grouped)
    c = torch.where(after < before * (1 - 1e-12), c, torch.zeros_like(c))
    return c.to(W.dtype)


def _center_shift_np(W: np.ndarray, alpha: float, grouped: bool) -> np.ndarray:
    """:func:`center_shift` in numpy, float64 (m,)."""
    C = W.shape[0]
    if grouped:
        c = -W.mean(0)
    else:
        bp = np.sort(-W.T, axis=1)  # kinks, ascending (m, C)
        S = W.sum(0)
        i = np.arange(C, dtype=np.float64)[None, :]
        ridge = (1.0 - alpha) * (S[:, None] + C * bp)
        right = alpha * (2 * (i + 1) - C) + ridge
        left = alpha * (2 * i - C) + ridge
        istar = C - (right >= 0).sum(1)
        ii = np.minimum(istar, C - 1)[:, None]
        at_kink = (istar < C) & (np.take_along_axis(left, ii, 1)[:, 0] <= 0)
        c = np.where(at_kink, np.take_along_axis(bp, ii, 1)[:, 0], 0.0)
        if alpha < 1:
            seg = -(alpha * (2 * istar - C) + (1.0 - alpha) * S) / ((1.0 - alpha) * C)
            c = np.where(at_kink, c, seg)
    before = _column_penalty_np(W, alpha, grouped)
    after = _column_penalty_np(W + c[None, :], alpha, grouped)
    return np.where(after < before * (1 - 1e-12), c, 0.0)


def _column_penalty_np(W: np.ndarray, alpha: float, grouped: bool) -> np.ndarray:
    sq = (W * W).sum(0)
    return alpha * (np.sqrt(sq) if grouped else np.abs(W).sum(0)) + 0.5 * (1.0 - alpha) * sq


def _column_penalty(W: torch.Tensor, alpha: float, grouped: bool) -> torch.Tensor:
    l1 = torch.sqrt((W * W).sum(0)) if grouped else W.abs().sum(0)
    return alpha * l1 + 0.5 * (1.0 - alpha) * (W * W).sum(0)
