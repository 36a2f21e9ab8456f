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

import logging
import os

import numpy as np
import torch

from sparse_probe.solvers.compiled import CheckDraws, checked_kernel

__all__ = ["SELECT_FROM_CLASSES", "center_shift"]

SELECT_FROM_CLASSES = 33
"""From this many classes the compiled kernel finds each column's minimizer by selection
(quickselect on the kinks' ranks) instead of sorting them by insertion. With ``qsort`` there,
the kernel took a call 2.1x and 3.4x numpy's time at 100 and 1,000 classes (numpy sorts all
columns at once with its vectorized sort; ``results/centering-cpu-2026-12-05.txt``) and the
library sent them to numpy; with the selection 0.23x and 0.56x (0.022 against 0.094 ms at
100 x 64, 0.24 against 0.42 ms at 1,000 x 32; ``benchmarks/measure_centering.py``,
``results/centering-select-cpu-2026-12-05.txt``), and every class count goes to it. The C
source's ``SORT_MAX`` is this less one (a test reads both)."""

log = logging.getLogger(__name__)
_STATE: dict[str, object] = {}  # "shifts": the self-checked compiled kernel, or None


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
    The solvers call this once per iteration on their (C, m) weights. CPU tensors go to the
    compiled ``_centering.shifts`` (sorting or selecting: :data:`SELECT_FROM_CLASSES`; the
    same steps in the same floating-point order, column by column; self-checked once per
    process against the numpy steps, and ``SPARSE_PROBE_CENTERING=numpy`` turns it off);
    grouped penalties, or all where it is not built, to numpy's ~30 array operations (torch's
    ~35 small ops cost several times more). On the bench's 10-class path the centering took
    6% of the fit with numpy's steps, 2% compiled (``benchmarks/measure_centering.py``).
    Other devices keep the data where it is.
    """
    if W.device.type == "cpu":
        W64 = np.ascontiguousarray(W.detach().numpy(), dtype=np.float64)
        kernel = None if grouped else _kernel()
        if kernel is not None:
            c = np.empty(W64.shape[1])
            kernel(W64.shape[0], W64.shape[1], W64, float(alpha), c)
        else:
            c = _center_shift_np(W64, alpha, grouped)
        return torch.from_numpy(c).to(W.dtype)
    return _center_shift_torch(W, alpha, grouped)


def _kernel():
    """The compiled ``shifts`` once it agreed with :func:`_center_shift_np` on a self-check
    (cached per process), else None."""
    if os.environ.get("SPARSE_PROBE_CENTERING") == "numpy":
        return None
    return checked_kernel(_STATE, "shifts", "sparse_probe.solvers._centering", "shifts", _agrees,
                          log, "compiled centering", "numpy", "numpy")


def _agrees(shifts) -> bool:
    """Whether ``shifts`` gives :func:`_center_shift_np`'s shifts on columns of every kind:
    random, zero, already centered, tied, one dominant entry; 3, 40 and 300 classes (the
    kernel sorts up to 32 and selects beyond, :data:`SELECT_FROM_CLASSES`), L1 shares 1, 0.99
    and 0.5. Equal to ``1e-13`` of each column's largest weight: the steps are the same, but
    numpy sums a lone column pairwise (a contiguous reduction) where the kernel adds in order,
    which moves the last bits."""
    g = CheckDraws(0)
    for C in (3, 40, 300):
        W = g.standard_normal((C, 12)) * np.array([1e-3, 1, 100] * 4)
        W[:, 0] = 0.0
        mid = np.sort(W[:, 1])  # its median (np.median's first call imports numpy.ma)
        W[:, 1] -= 0.5 * (mid[(C - 1) // 2] + mid[C // 2])
        W[:, 2] = 0.25
        W[0, 3] = 50.0
        W[:, 4] = np.round(W[:, 4])
        for alpha in (1.0, 0.99, 0.5):
            got = np.full(W.shape[1], np.nan)
            shifts(C, W.shape[1], W, alpha, got)
            ref = _center_shift_np(W, alpha, False)
            if not np.all(np.abs(got - ref) <= 1e-13 * np.abs(W).max(0)):
                return False
    return True


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
