"""Low-memory evaluation of the restricted problem, one row block at a time.

Used when the (n, C) logits or the (n, m) working-set columns would not fit the memory budget
(e.g. a memory-mapped ``.npy`` larger than RAM): nothing of size n is kept; each evaluation
streams row blocks (from a cached working set or straight from disk) and reduces loss and
gradient in float64. Memory: a few block-sized buffers, reused across blocks and evaluations
(fresh temporaries of varying sizes fragment the heap), plus O(m·C).

Blocks may be *raw* columns: the standardization ``(x - μ) / σ`` is then folded into the
weights instead of applied to every block,

    z = x_std W^T + b = x (W/σ)^T + (b - (W/σ) μ),
    ∇_W = R^T x_std = (R^T x - (Σ_i R_i) μ^T) / σ,

so a block costs one float64 product for the logits (the line search compares objectives far
below float32 resolution) and one float32 product for the gradient (accumulated in float64,
as in :func:`~sparse_probe.solvers.products.rt_x`). On CPU the block's loss, float32 residual
and bias sums come from the compiled kernel in one pass (:mod:`~sparse_probe.solvers.fused_ce`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.products import rt_x
from sparse_probe.solvers.restricted import softmax_residual

__all__ = ["BlockedData"]


class BlockedData:
    """Working-set data given as a re-iterable stream of row blocks.

    Parameters
    ----------
    blocks : callable returning an iterator of (start, Xb)
        ``Xb`` is a float32 tensor (rows, m) of the working-set columns, standardized unless
        ``mean``/``inv_scale`` are given. A block is only used until the next one is requested.
    y : torch.Tensor of shape (n_samples,), int64
    n, m, n_classes : int
    cols : torch.Tensor of shape (m,), optional
        Blocks hold all columns and these are the working set's (gathered into a reused buffer).
    mean, inv_scale : torch.Tensor of shape (m,), optional
        Standardization of raw blocks, ``x_std = (x - mean) * inv_scale``.
    """

    keeps_logits = False  # offers loss_grad only (see solvers/base.py)

    def __init__(self, blocks: Callable[[], Iterator[tuple[int, torch.Tensor]]], y: torch.Tensor,
                 n: int, m: int, n_classes: int, *, cols: torch.Tensor | None = None,
                 mean: torch.Tensor | None = None, inv_scale: torch.Tensor | None = None):
        self.blocks = blocks
        self.y = y
        self.n, self.m, self.C = n, m, n_classes
        self.cols = cols
        # raw blocks are standardized in float32 before any product, as the cached columns
        # are: the standardization folded into float32 products of the raw values cancelled
        # for columns with a large mean (the path's mean and scale are float32 values)
        self.mean = None if mean is None else mean.to(torch.float32)
        self.inv_scale = None if inv_scale is None else inv_scale.to(torch.float32)
        self.n_products = 0
        self._buf: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, rows: int, cols: int, dtype, device) -> torch.Tensor:
        """A reusable (rows, cols) buffer, grown only when a larger block comes."""
        b = self._buf.get(name)
        if b is None or b.shape[0] < rows or b.shape[1] != cols or b.dtype != dtype \
                or b.device != device:
            b = self._buf[name] = torch.empty((rows, cols), dtype=dtype, device=device)
        return b[:rows]

    def loss_grad(self, W: torch.Tensor, b: torch.Tensor, *, need_grad: bool = True):
        """Mean CE and (optionally) its gradient ``(loss, G (C, m), g_b (C,))`` in float64."""
        W64 = W.to(torch.float64)
        b64 = b.to(torch.float64)
        W64T = W64.T.contiguous()
        total = 0.0
        G = torch.zeros((self.C, self.m), dtype=torch.float64, device=W.device) if need_grad else None
        gb = torch.zeros(self.C, dtype=torch.float64, device=W.device) if need_grad else None
        self.n_products += 2 if need_grad else 1
        for s, xb in self.blocks():
            rows = xb.shape[0]
            if self.cols is not None:
                xb = torch.index_select(xb, 1, self.cols,
                                        out=self._buffer("x", rows, self.m, torch.float32, xb.device))
            if self.inv_scale is not None:  # into our buffer: the raw block is not written
                out = xb if self.cols is not None else \
                    self._buffer("x", rows, self.m, torch.float32, xb.device)
                xb = torch.sub(xb, self.mean, out=out).mul_(self.inv_scale)
            yb = self.y[s : s + rows]
            z = self._buffer("z", rows, self.C, torch.float64, xb.device)
            if self.m:
                x64 = self._buffer("x64", rows, self.m, torch.float64, xb.device)
                x64.copy_(xb)
                torch.addmm(b64, x64, W64T, out=z)
            else:
                z.copy_(b64.expand(rows, -1))
            if fused_ce.usable(z):  # CPU: loss, residual, bias sums in one compiled pass
                r32 = self._buffer("r32", rows, self.C, torch.float32, xb.device)
                loss_sum, gbb = fused_ce.ce_rows(z, yb, R32=r32 if need_grad else None)
                total += loss_sum
                if need_grad:
                    if self.m:
                        G += rt_x(r32, xb).to(torch.float64)
                    gb += gbb
                continue
            loss_sum, p = softmax_residual(z, yb, inplace=True)
            total += loss_sum
            if need_grad:
                if self.m:
                    # float32 residual stored transposed, (C, rows) contiguous: the layout
                    # rt_x multiplies with, so it takes this view without another copy
                    pt = self._buffer("pT", self.C * rows, 1, torch.float32, xb.device)
                    pt = pt.view(self.C, rows).copy_(p.T)
                    G += rt_x(pt.T, xb).to(torch.float64)
                gb += p.sum(0)
        if not need_grad:
            return total / self.n, None, None
        return total / self.n, G / self.n, gb / self.n
