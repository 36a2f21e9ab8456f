"""Mean cross-entropy and its gradient on a cached working set of standardized columns.

Matrix products run in float32 on the chosen device; logits are *kept* in float64 and updated
incrementally (``z += t * X d`` with the small product ``X d`` in float32), so that the solver can
resolve objective changes far below float32's resolution and line-search trials need no matrix
product. Losses and gradients are reduced in float64.
"""

from __future__ import annotations

import torch

__all__ = ["RestrictedData", "rt_x", "softmax_residual"]


def rt_x(R: torch.Tensor, X: torch.Tensor, block_rows: int = 2048) -> torch.Tensor:
    """``R^T X`` in float32: (n, C) residuals times (n, m) float32 features -> (C, m).

    On CPU the product is accumulated over row blocks: a single reduction-shaped call
    ``(C, n) @ (n, m)`` ran about 2x slower with torch's CPU BLAS on the 2-core machines we
    measured (the product is memory-bound; blocks keep it in cache). Calling numpy's BLAS
    instead was as fast alone but made its threads and torch's spin against each other.
    """
    R32 = R.to(torch.float32)
    if X.device.type != "cpu" or X.shape[0] <= block_rows:
        return R32.T @ X
    out = torch.zeros((R32.shape[1], X.shape[1]), dtype=torch.float32)
    for s in range(0, X.shape[0], block_rows):
        out.addmm_(R32[s : s + block_rows].T, X[s : s + block_rows])
    return out


def softmax_residual(z: torch.Tensor, y: torch.Tensor, *, inplace: bool = False):
    """Summed cross-entropy of logits ``z`` (n, C) and the residual ``softmax(z) - onehot(y)``.

    One ``exp`` serves both (``logsumexp`` followed by ``softmax`` would take two, about 3x the
    time at C = 10). ``inplace=True`` overwrites ``z`` with the residual.

    Returns
    -------
    loss_sum : float
        ``Σ_i [logsumexp(z_i) - z_{i, y_i}]`` accumulated in z's dtype.
    R : torch.Tensor of shape (n, C)
    """
    zy = z.gather(1, y[:, None])
    zmax = z.amax(1, keepdim=True)
    e = z.sub_(zmax) if inplace else torch.sub(z, zmax)
    e.exp_()
    se = e.sum(1, keepdim=True)
    loss_sum = float((zmax + se.log() - zy).sum())
    R = e.div_(se)
    R.scatter_add_(1, y[:, None], torch.full_like(zy, -1.0))
    return loss_sum, R


class RestrictedData:
    """Standardized columns ``Xw`` (n, m) of the working set plus labels, on one device.

    Parameters
    ----------
    Xw : torch.Tensor of shape (n_samples, m), float32
    y : torch.Tensor of shape (n_samples,), int64
    n_classes : int
    block_rows : int
        Rows per block for float64 temporaries.
    XwT : torch.Tensor of shape (m, n_samples), optional
        A column-major copy of ``Xw`` for products with a few columns.
    """

    def __init__(self, Xw: torch.Tensor, y: torch.Tensor, n_classes: int, block_rows: int = 65536,
                 XwT: torch.Tensor | None = None):
        self.Xw = Xw
        self.XwT = XwT
        self.y = y
        self.n = Xw.shape[0]
        self.m = Xw.shape[1]
        self.C = n_classes
        self.block_rows = block_rows
        self.n_products = 0

    # ---------------------------------------------------------------- logits
    def logits64(self, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits (n, C) in float64 computed with float64 products, block by block."""
        W64 = W.to(torch.float64)
        z = b.to(torch.float64).expand(self.n, -1).clone()
        if self.m:
            self.n_products += 1
            for s in range(0, self.n, self.block_rows):
                z[s : s + self.block_rows] += self.Xw[s : s + self.block_rows].to(torch.float64) @ W64.T
        return z

    def matvec(self, dW: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """``Xw[:, cols] @ dW[:, cols].T`` (n, C) as float64 from a float32 product."""
        if self.m == 0:
            return torch.zeros((self.n, self.C), dtype=torch.float64, device=self.y.device)
        self.n_products += 1
        if cols is None:
            out = self.Xw @ dW.to(torch.float32).T
        elif self.XwT is not None:  # contiguous rows of the column-major copy: cheap
            out = (dW[:, cols].to(torch.float32) @ self.XwT[cols]).T
        else:
            out = self.Xw[:, cols] @ dW[:, cols].to(torch.float32).T
        return out.to(torch.float64)

    # ---------------------------------------------------------------- loss
    def ce(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean cross-entropy of logits ``z`` (n, C) and the residual ``(softmax(z) - Y)/n``."""
        loss, R = softmax_residual(z, self.y)
        return loss / self.n, R.div_(self.n)

    def grad(self, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the mean CE from the residual: ``G = R^T Xw`` (C, m) and ``g_b`` (C,)."""
        gb = R.sum(0)
        if self.m == 0:
            return torch.zeros((self.C, 0), dtype=torch.float64, device=R.device), gb
        self.n_products += 1
        return rt_x(R, self.Xw).to(torch.float64), gb

    def loss_grad(self, W: torch.Tensor, b: torch.Tensor, *, need_grad: bool = True):
        """Mean CE at (W, b) and, when asked, its gradient ``(loss, G (C, m), g_b (C,))``."""
        loss, R = self.ce(self.logits64(W, b))
        if not need_grad:
            return loss, None, None
        G, gb = self.grad(R)
        return loss, G, gb
