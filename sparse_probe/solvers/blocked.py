"""Low-memory evaluation of the restricted problem, one row block at a time.

Used when the (n, C) logits or the (n, m) working-set columns would not fit the memory budget
(e.g. a memory-mapped ``.npy`` larger than RAM): nothing of size n is kept; each evaluation
streams row blocks (from a cached working set or straight from disk), computes logits in
float64 per block and reduces loss and gradient in float64. Memory: one block plus O(m·C).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

__all__ = ["BlockedData"]


class BlockedData:
    """Working-set data given as a re-iterable stream of standardized row blocks.

    Parameters
    ----------
    blocks : callable returning an iterator of (start, Xb)
        ``Xb`` is a float32 tensor (rows, m) of standardized working-set columns.
    y : torch.Tensor of shape (n_samples,), int64
    n, m, n_classes : int
    """

    def __init__(self, blocks: Callable[[], Iterator[tuple[int, torch.Tensor]]], y: torch.Tensor,
                 n: int, m: int, n_classes: int):
        self.blocks = blocks
        self.y = y
        self.n, self.m, self.C = n, m, n_classes
        self.n_products = 0

    def loss_grad(self, W: torch.Tensor, b: torch.Tensor, *, need_grad: bool = True):
        """Mean CE and (optionally) its gradient ``(loss, G (C, m), g_b (C,))`` in float64."""
        W64 = W.to(torch.float64)
        b64 = b.to(torch.float64)
        total = 0.0
        G = torch.zeros((self.C, self.m), dtype=torch.float64, device=W.device) if need_grad else None
        gb = torch.zeros(self.C, dtype=torch.float64, device=W.device) if need_grad else None
        self.n_products += 2 if need_grad else 1
        for s, xb in self.blocks():
            x64 = xb.to(torch.float64)
            yb = self.y[s : s + xb.shape[0]]
            z = torch.addmm(b64, x64, W64.T) if self.m else b64.expand(xb.shape[0], -1).clone()
            lse = torch.logsumexp(z, dim=1)
            zy = z.gather(1, yb[:, None])[:, 0]
            total += float((lse - zy).sum())
            if need_grad:
                p = torch.exp(z - lse[:, None])
                p.scatter_add_(1, yb[:, None], -torch.ones_like(zy)[:, None])
                if self.m:
                    G.addmm_(p.T, x64)
                gb += p.sum(0)
        if not need_grad:
            return total / self.n, None, None
        return total / self.n, G / self.n, gb / self.n
