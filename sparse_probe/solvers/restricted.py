"""Mean cross-entropy and its gradient on a cached working set of standardized columns.

Matrix products run in float32 on the chosen device; logits are *kept* in float64 and updated
incrementally (``z += t * X d`` with the small product ``X d`` in float32), so that the solver can
resolve objective changes far below float32's resolution and line-search trials need no matrix
product. Losses and gradients are reduced in float64.
"""

from __future__ import annotations

import torch

from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.products import WIDE_CLASSES, reuse_output, rt_x, x_wt

__all__ = ["F32_GRADIENT_ERROR", "LOGITS_NONZERO_SHARE", "TRANSPOSED_SUM_CLASSES", "WIDEN_MIN",
           "WIDEN_ROWS", "X64_CACHE_BYTES", "RestrictedData", "add_widened", "f32_gradient_error",
           "row_argmax", "softmax_residual"]

F32_GRADIENT_ERROR = 16 * 2.0**-24
"""Bound on the error of a float32-product gradient entry, in units of
``sqrt(2 n_k / n + |g_b,k|)`` for class k: ``Σ_i r_ik x_ij`` (``r = (p − y)/n``, standardized
``x``) erred by up to 7x ``u √n ||r_k||`` (u = 2⁻²⁴; 24 random problems, n 2,000-40,000,
post-ReLU columns the worst; hence 16), and ``n² ||r_k||² ≤ Σ_i |p_ik − y_ik| =
2 n_k + n g_b,k`` (the two halves of the bias gradient's sum balance). At the small λ of a
path's end the KKT tolerance (``tol · λα``) falls near this size: 10 balanced classes give
4e-7, the tolerance at ``eps = 1e-3`` can be 5e-8. A gate only: where it exceeds a share of
the tolerance the solvers verify on float64 products (:func:`~sparse_probe.solvers.owlqn.f32_suspect`)."""


def softmax_residual(z: torch.Tensor, y: torch.Tensor, *, inplace: bool = False,
                     scale: float = 1.0, out: torch.Tensor | None = None):
    """Summed cross-entropy of logits ``z`` (n, C) and the residual ``scale * (softmax(z) - Y)``.

    Each row is shifted by its true-class logit, ``s = z - z_y``, so that
    ``CE_i = log Σ_k exp(s_ik)`` (the sum is at least 1: no underflow) and
    ``softmax = exp(s) / Σ exp(s)``: one ``exp`` serves loss and residual, and the row maximum
    (a reduction over the short class axis, as slow as the ``exp``) is only taken when some
    ``exp(s)`` overflows: found from the n row sums after the ``exp`` (then redone from the
    intact ``z``), or, in place (``z`` is overwritten), from one global maximum of ``s``
    before it (above 700); the global maximum was ~4% of the classes100 path's time.
    ``inplace=True`` overwrites ``z`` with the residual; ``out`` (n, C), z's dtype, receives it
    otherwise (solvers pass a reused buffer: a fresh (n, C) float64 tensor per call costs more
    than the arithmetic, in page faults on first touch).

    Returns
    -------
    loss_sum : float
        ``Σ_i [logsumexp(z_i) - z_{i, y_i}]`` accumulated in z's dtype.
    R : torch.Tensor of shape (n, C)
        ``z`` itself with ``inplace``, else ``out`` when given.
    """
    zy = z.gather(1, y[:, None])
    e = z.sub_(zy) if inplace else torch.sub(z, zy, out=out) if out is not None else z - zy
    smax = None
    if inplace and e.numel() and float(e.max()) > 700.0:  # z is overwritten: check first
        smax = e.amax(1, keepdim=True)
        e.sub_(smax)
    e.exp_()
    se = e.sum(1, keepdim=True)
    if not inplace and e.numel() and not bool(torch.isfinite(se).all()):
        # some exp overflowed: z is intact, so redo with each row's maximum shifted out
        # (checked on the n row sums after the exp, not on all n·C entries before it)
        torch.sub(z, zy, out=e)
        smax = e.amax(1, keepdim=True)
        e.sub_(smax).exp_()
        se = e.sum(1, keepdim=True)
    lse = se.log()
    loss_sum = float(lse.sum()) + (float(smax.sum()) if smax is not None else 0.0)
    R = e.mul_(se.reciprocal_().mul_(scale))
    R.scatter_add_(1, y[:, None], torch.full_like(zy, -scale))
    return loss_sum, R


WIDEN_ROWS = 2048
"""Rows per block of :func:`add_widened`'s float64 copy."""

WIDEN_MIN = 1 << 18
"""Fewest entries for which :func:`add_widened` widens block by block (below, torch's own
mixed-dtype ``add_`` was as fast or faster: 0.02 against 0.06 ms at 10,000 × 10)."""


def add_widened(z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``z += d`` in place for float64 ``z`` and float32 ``d`` (n, C), returning ``z``: the
    same values as torch's mixed-dtype ``add_`` (each float32 entry widened exactly, one
    float64 addition), which on CPU runs a slow casting loop: at 20,000 × 1,000 it took 51 ms
    against 15 ms for blocks of :data:`WIDEN_ROWS` rows widened into a reused float64 buffer
    (in cache) and added, at 10,000 × 100 0.52 against 0.35 ms
    (``benchmarks/measure_logits64.py --widen``, ``results/logits64-cpu-2026-12-05.txt``).
    Under :data:`WIDEN_MIN` entries, other devices and dtypes: ``add_`` as is."""
    if z.device.type != "cpu" or z.dtype != torch.float64 or d.dtype != torch.float32 or \
            z.numel() < WIDEN_MIN:
        return z.add_(d)
    buf = torch.empty((min(WIDEN_ROWS, z.shape[0]), *z.shape[1:]), dtype=torch.float64)
    for s in range(0, z.shape[0], WIDEN_ROWS):
        e = min(z.shape[0], s + WIDEN_ROWS)
        b = buf[: e - s]
        z[s:e].add_(b.copy_(d[s:e]))
    return z


def row_argmax(z: torch.Tensor) -> torch.Tensor:
    """Each row's first largest entry's index (n,) (a NaN counts as the largest), as
    ``z.argmax(1)``: by ``z.max(1)``, which took 10-17 ms against 41 for ``argmax`` on a
    20,000 × 1,000 float64 array, 0.45 against 0.97 ms at 10,000 × 100
    (``benchmarks/measure_logits64.py --widen``; the per-point accuracy reads it)."""
    return z.max(1).indices


def f32_gradient_error(counts, n: int, gb):
    """Per class, the bound :data:`F32_GRADIENT_ERROR` ``· sqrt(2 n_k / n + |g_b,k|)`` on a
    float32-product gradient entry's error (``counts`` and ``gb`` (C,), numpy or torch; the
    result is of their kind)."""
    return F32_GRADIENT_ERROR * (2.0 * counts / n + abs(gb)) ** 0.5


X64_CACHE_BYTES = 256 * 2**20
"""Largest float64 copy of the working-set columns :class:`RestrictedData` keeps in exact
mode (beyond it each float64 product converts its row blocks)."""

TRANSPOSED_SUM_CLASSES = 2
""":meth:`RestrictedData.logits64` on column-major float64 columns (the working set's kept
column-major copy, gathered and widened) adds the product of their rows, ``(W X_colsᵀ)ᵀ``, where
the columns number more than this many times the classes, else multiplies the transposed view
in place (``addmm_``). The transposed sum passes over the (n, C) logits against their layout:
at 20,000 × 12 columns × 1,000 classes it took 2.5x the in-place product's time, at 10,000 ×
20 × 100 2.2x, 1.1-1.7x at five other shapes with k ≤ 2C; where k > 2C the in-place product
took 1.06-1.27x the sum's (10,000 × 100 columns × 10 classes, 500 × 1,500 × 10, 5,000 × 100
× 30; ``benchmarks/measure_logits64.py``, ``results/logits64-cpu-2026-12-05.txt``). Always
the sum before: the 1,000-class path recomputes its logits a few dozen times."""

LOGITS_NONZERO_SHARE = 0.5
""":meth:`RestrictedData.logits64` multiplies only the columns where ``W`` has a nonzero entry
(their float64 values gathered) when they are at most this share of the working set; the
others contribute exactly zero. A working set keeps the features whose gradient may let them
enter (the strong rule's screen), so on the n ≪ d bench path 1,383 of its 3,681 columns held
a weight at the end, and each exact recomputation of the logits widened all 3,681 (500 rows)
to float64 first: 4.6 ms of a ~45 ms Newton point (an ad hoc cProfile)."""


def _columns(xb: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Columns ``cols`` of the block ``xb`` (rows, m): gathered as rows of its transpose where
    it is column-major (a (rows, k) view of contiguous rows), else as columns."""
    if not xb.is_contiguous() and xb.T.is_contiguous():
        return xb.T.index_select(0, cols).T
    return xb.index_select(1, cols)


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
    exact_blocks : callable, optional
        Returns an iterator of ``(start, block)``: the same columns standardized in float64,
        row blocks (rows, m) in order (``fit_path``'s ``_Trainer.exact_ws_blocks``: the
        float32 ``Xw`` rounds each value once more). Exact mode's float64 products use these;
        without it, ``Xw`` widened.
    features : array of int, optional
        Which features ``Xw``'s columns are, in order (``fit_path``'s working set): the class
        blocks extend their last estimate where only columns were appended
        (:class:`~sparse_probe.solvers.class_blocks.ClassBlocks`).
    """

    keeps_logits = True  # offers logits64/step/matvec/ce/grad (see solvers/base.py)

    def __init__(self, Xw: torch.Tensor, y: torch.Tensor, n_classes: int, block_rows: int = 65536,
                 XwT: torch.Tensor | None = None, exact_blocks=None, features=None):
        self.Xw = Xw
        self._exact_blocks = exact_blocks
        self.features = features
        self.XwT = XwT
        self.y = y
        self.n = Xw.shape[0]
        self.m = Xw.shape[1]
        self.C = n_classes
        self.block_rows = block_rows
        self.n_products = 0
        self._R: torch.Tensor | None = None  # (n, C) float64 residual, reused by every ce()
        self._Rt: torch.Tensor | None = None  # (C, n) float32 residual for the product
        self._R32: torch.Tensor | None = None  # (n, C) float32 copy of R for many classes
        self._R32T: torch.Tensor | None = None  # (C, n) float32 residual of the kernel; its
        self._R32T_view: torch.Tensor | None = None  # .T view, the residual ce() returns
        self._gb: torch.Tensor | None = None  # the kernel's float64 column sums of _gb_R
        self._gb_R: torch.Tensor | None = None  # what they sum (_R32T_view, or _R in exact mode)
        self._dz32: torch.Tensor | None = None  # (n, C) float32 step products, large ones
        # gradients from float64 products (the solvers switch it on where the float32
        # products' error could decide a KKT verdict: owlqn.f32_suspect)
        self.exact = False
        self._counts: torch.Tensor | None = None
        self._X64: torch.Tensor | None = None  # float64 copy of Xw (exact mode, when small)

    # ---------------------------------------------------------------- logits
    def _x64_blocks(self, cols: torch.Tensor | None = None):
        """``(start, block)`` row blocks of the columns in float64, in order (``cols``: only
        those columns, in their order). In exact mode the columns standardized in float64
        (``exact_blocks``: the provider keeps them where it can), or without a provider ``Xw``
        widened, kept where that takes at most :data:`X64_CACHE_BYTES` (a conversion cost more
        than the float64 product it feeds); otherwise ``Xw``'s float32 values widened, block
        by block: the solvers' own problem."""
        if self.exact and self._exact_blocks is not None:
            for s, xb in self._exact_blocks():
                yield s, xb if cols is None else _columns(xb, cols)
            return
        if self.exact and self._X64 is None and self.n * self.m * 8 <= X64_CACHE_BYTES:
            self._X64 = self.Xw.to(torch.float64)
        if self._X64 is not None:
            for s in range(0, self.n, self.block_rows):
                xb = self._X64[s : s + self.block_rows]
                yield s, xb if cols is None else _columns(xb, cols)
        elif cols is not None and self.XwT is not None:  # contiguous rows of the column-major
            for s in range(0, self.n, self.block_rows):  # copy, widened: a (rows, k) view
                yield s, self.XwT[cols, s : s + self.block_rows].to(torch.float64).T
        else:
            for s in range(0, self.n, self.block_rows):
                xb = self.Xw[s : s + self.block_rows]
                yield s, (xb if cols is None else xb.index_select(1, cols)).to(torch.float64)

    def logits64(self, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits (n, C) in float64 computed with float64 products, block by block: over the
        columns where ``W`` (C, m) has a nonzero entry where they are few
        (:data:`LOGITS_NONZERO_SHARE`), else over all."""
        W64 = W.to(torch.float64)
        z = b.to(torch.float64).expand(self.n, -1).clone()
        if self.m:
            self.n_products += 1
            cols = torch.nonzero((W64 != 0).any(0))[:, 0]
            if cols.numel() > LOGITS_NONZERO_SHARE * self.m:
                cols = None  # most columns: all of them, no gather
            elif cols.numel() == 0:
                return z
            else:
                W64 = W64.index_select(1, cols)
            for s, xb in self._x64_blocks(cols):
                zb = z[s : s + xb.shape[0]]
                if not xb.is_contiguous() and xb.T.is_contiguous() and \
                        xb.shape[1] > TRANSPOSED_SUM_CLASSES * self.C:
                    # column-major columns (a kept float64 copy), many against the classes:
                    # the product of their rows, (C, rows), added transposed
                    zb += (W64 @ xb.T).T
                else:  # in place: a fresh (rows, C) float64 product is a pass of page faults
                    zb.addmm_(xb, W64.T)
        return z

    def step(self, dW: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
        """Change of the logits along a step: ``Xw @ dW.T + db`` (n, C) in float32.

        Callers widen it into a reused float64 buffer (``dz64.copy_(dz)``) before the
        line-search trials add it: a mixed-dtype add would allocate that copy on every trial.
        Where the output is large (:func:`~sparse_probe.solvers.products.reuse_output`) it is
        a buffer of this object that the next call overwrites: a fresh one cost more in page
        faults than the product (1,000 classes).
        """
        if self.m == 0:
            return db.to(torch.float32).expand(self.n, -1)
        self.n_products += 1
        out = None
        if self.Xw.device.type == "cpu" and reuse_output(self.n, self.C):
            if self._dz32 is None:
                self._dz32 = torch.empty((self.n, self.C), dtype=torch.float32)
            out = self._dz32
        return x_wt(self.Xw, dW, bias=db, out=out)

    def matvec32(self, dW: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``Xw[:, cols] @ dW[:, cols].T`` (n, k) for the k rows of ``dW``, a contiguous float32
        product (the few columns gathered: the row-major result is what the compiled kernel
        reads)."""
        self.n_products += 1
        return x_wt(self.Xw.index_select(1, cols), dW.index_select(1, cols))

    def matvec(self, dW: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """``Xw[:, cols] @ dW[:, cols].T`` (n, C) as float64 from a float32 product."""
        if self.m == 0:
            return torch.zeros((self.n, self.C), dtype=torch.float64, device=self.y.device)
        self.n_products += 1
        if cols is None:
            out = x_wt(self.Xw, dW)
        elif self.XwT is not None:  # contiguous rows of the column-major copy: cheap
            out = (dW[:, cols].to(torch.float32) @ self.XwT[cols]).T
        else:
            out = self.Xw[:, cols] @ dW[:, cols].to(torch.float32).T
        return out.to(torch.float64)

    # ---------------------------------------------------------------- loss
    def ce(self, z: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean cross-entropy of logits ``z`` (n, C) and the residual ``(softmax(z) - Y)/n``.

        The residual lives in a buffer that the next call overwrites (use it or copy it first).
        It is float64, or float32 where the compiled kernel ran (:mod:`fused_ce`: CPU, not in
        exact mode): it only feeds float32 products there, and the kernel sums the
        bias gradient in float64 on the way, for :meth:`grad`. The kernel's is the transposed
        view of a (C, n) array (the gradient product's operand as oneDNN reads it).
        """
        return self.ce_along(z, None, 0.0, None)

    def ce_along(self, z: torch.Tensor, dz: torch.Tensor | None, t: float,
                 out: torch.Tensor | None, dz2: torch.Tensor | None = None,
                 cls2: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
        """:meth:`ce` at ``z + t·dz + dz2``, written into ``out`` (n, C) float64 (``dz`` None:
        at ``z``, ``out`` and ``dz2`` unused). ``dz2`` (float32, contiguous) is (n, C), or
        (n, k) for the classes ``cls2`` (k,) only. One pass of the compiled kernel where it
        runs."""
        if fused_ce.usable(z):
            # float32 residual: each entry's float64 value rounded once (relative 6e-8, ~√n
            # below the float32 products' accumulation error); float64 in exact mode, whose
            # products it would otherwise limit (2e-10 of a 4000 x 40 x 40 gradient)
            if self.exact:
                if self._R is None or self._R.shape != z.shape or self._R.dtype != z.dtype:
                    self._R = torch.empty_like(z, memory_format=torch.contiguous_format)
                loss, self._gb = fused_ce.ce_rows(z, self.y, dz=dz, t=t, dz2=dz2, cls2=cls2,
                                                  zn=out, R64=self._R, scale=1.0 / self.n)
                self._gb_R = self._R
                return loss / self.n, self._R
            # written transposed, (C, n): the gradient's R^T X reads it as oneDNN's left
            # operand as is, where a row-major residual needed a transposed copy or (many
            # classes) went to a BLAS reading it transposed, at 2-3x oneDNN's time
            # (products.rt_x)
            if self._R32T is None or self._R32T.shape != (z.shape[1], z.shape[0]):
                self._R32T = torch.empty((z.shape[1], z.shape[0]), dtype=torch.float32)
                self._R32T_view = self._R32T.T
            loss, self._gb = fused_ce.ce_rows(z, self.y, dz=dz, t=t, dz2=dz2, cls2=cls2, zn=out,
                                              R32T=self._R32T, scale=1.0 / self.n)
            self._gb_R = self._R32T_view
            return loss / self.n, self._R32T_view
        if dz is not None:
            z = torch.add(z, dz, alpha=t, out=out)
            if dz2 is not None and cls2 is not None:
                z.index_add_(1, cls2, dz2.to(z.dtype))
            elif dz2 is not None:
                z.add_(dz2)
        if self._R is None or self._R.shape != z.shape or self._R.dtype != z.dtype:
            self._R = torch.empty_like(z, memory_format=torch.contiguous_format)
        loss, R = softmax_residual(z, self.y, scale=1.0 / self.n, out=self._R)
        self._gb_R = None  # _R no longer holds a kernel's residual
        return loss / self.n, R

    def grad(self, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the mean CE from the residual: ``G = R^T Xw`` (C, m) and ``g_b`` (C,).

        ``G`` from a float32 copy of ``R^T`` (reused buffer); ``g_b`` summed from the float64
        ``R`` (a float32 sum would leave ~1e-8 of error where the partial sums are large,
        e.g. rows sorted by class, close to the tolerances at the end of a path), or, for the
        kernel's residual (float32, or float64 in exact mode), the float64 sums the kernel
        made of it.
        """
        kernel = self._gb is not None and R is self._gb_R  # its bias sums are the kernel's
        gb = self._gb if kernel else R.sum(0, dtype=torch.float64)
        if self.m == 0:
            return torch.zeros((self.C, 0), dtype=torch.float64, device=R.device), gb
        self.n_products += 1
        if self.exact:  # float64 products on the float64 columns (_x64_blocks), row block by block
            G = torch.zeros((self.C, self.m), dtype=torch.float64, device=R.device)
            R64 = R.to(torch.float64)
            for s, xb in self._x64_blocks():
                G.addmm_(R64[s : s + xb.shape[0]].T, xb)
            return G, gb
        if kernel:  # the kernel's float32 residual, a transposed view of a (C, n) array
            return rt_x(R, self.Xw).to(torch.float64), gb
        if self.C >= WIDE_CLASSES and R.device.type == "cpu":  # rt_x reads row-major R as is
            if self._R32 is None or self._R32.shape != R.shape:
                self._R32 = torch.empty(R.shape, dtype=torch.float32)
            self._R32.copy_(R)
            self._gb = None  # the buffer no longer holds the kernel's residual
            return rt_x(self._R32, self.Xw).to(torch.float64), gb
        if self._Rt is None or self._Rt.shape != (R.shape[1], R.shape[0]):
            self._Rt = torch.empty((R.shape[1], R.shape[0]), dtype=torch.float32, device=R.device)
        self._Rt.copy_(R.T)  # rt_x takes the transpose of a contiguous float32 tensor as is
        return rt_x(self._Rt.T, self.Xw, XT=self.XwT).to(torch.float64), gb

    def f32_error(self, gb: torch.Tensor) -> float:
        """Bound on the error of :meth:`grad`'s float32 products, in gradient units, from the
        class counts and the bias gradient ``gb`` (C,) (:data:`F32_GRADIENT_ERROR`); 0 in
        exact mode."""
        if self.exact:
            return 0.0
        if self._counts is None:
            self._counts = torch.bincount(self.y, minlength=self.C).to(torch.float64)
        return float(f32_gradient_error(self._counts, self.n, gb.to(self._counts.device)).max())

    def loss_grad(self, W: torch.Tensor, b: torch.Tensor, *, need_grad: bool = True):
        """Mean CE at (W, b) and, when asked, its gradient ``(loss, G (C, m), g_b (C,))``."""
        loss, R = self.ce(self.logits64(W, b))
        if not need_grad:
            return loss, None, None
        G, gb = self.grad(R)
        return loss, G, gb
