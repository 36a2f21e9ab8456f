"""``fit_path``: the regularization path of the multinomial elastic net (DESIGN.md objective).

Algorithm (torch, identical on CPU and CUDA):

1. One chunked float64 pass for the training mean/std (standardization) and a finite check.
2. λ_max = max_kj |∇_W CE(0, b*)| / α (grouped: max_j ||∇_W[:, j]|| / α; the penalty's
   ``lambda_max``, :mod:`sparse_probe.penalties`) at the intercept-only
   optimum ``b* = log class priors``, computed on the standardized features; ``n_lambdas``
   values log-spaced down to ``eps * λ_max``.
3. For each λ: the sequential strong rule (Tibshirani et al., JRSS-B 2012) proposes a working
   set ``{j : ||∇_j||_∞ >= α(2λ_k - λ_{k-1})}`` plus the previously active features; those
   columns are standardized and cached (float32) on the device and the problem restricted to
   them is solved by the solver looked up in :data:`sparse_probe.solvers.SOLVERS` (by default
   for the elementwise penalty, on CPU, OWL-QN or proximal Newton chosen per point from the
   expected size of Newton's model and OWL-QN's last iteration count, see
   ``solvers/choice.py``; both re-center each feature's weights across classes after every
   step, see ``solvers/centering.py``; FISTA for the grouped penalty). The start is the path
   extrapolated quadratically in log λ through the last three solutions (on weights that kept
   their sign), and OWL-QN continues with the previous point's L-BFGS curvature pairs (moved to
   the new ridge weight; embedded with zeros when features joined the working set; the loss's
   curvature barely changes between neighbouring λ), else its first step is scaled by the
   previous point's curvature estimate; Newton takes its first step on the previous Newton
   point's model where a fresh Hessian costs several such steps, and replaces it by a fresh
   Hessian when that pays (``solvers/newton.py``). A full-data gradient pass (reusing the
   solver's float64 logits) then checks the KKT conditions on *all* features; violators join
   the working set and the point is re-solved until none remain. Once the working set holds every feature, the solver's
   own gradient at its solution is that full gradient and the pass is skipped. At λ_max itself
   the solution is known in closed form (W = 0).
4. Each point stores weights, bias, nnz, accuracy/loss (train and validation), the objective
   (float64 reduction) and the largest KKT violation over every coordinate.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from sparse_probe import index_sets
from sparse_probe.allocator import (
    MMAP_CEILING,
    fix_mmap_threshold,
    heap_temporaries,
    prime_mmap_threshold,
)
from sparse_probe.copies import copy_groups, equal_split
from sparse_probe.data import FeatureSource, as_labels, block_tensor
from sparse_probe.fit_common import column_stats, column_sums, lambda_path
from sparse_probe.path import Path
from sparse_probe.penalties import DEFAULT_ALPHA, Penalty, make_penalty
from sparse_probe.solvers import SOLVERS, fused_ce, get_solver
from sparse_probe.solvers.blocked import BlockedData
from sparse_probe.solvers.choice import (
    cost_route,
    grown_count,
    newton_budget,
    newton_cost_ratio,
    newton_over_seen,
    owlqn_budget,
    owlqn_probe,
    prefer_newton,
)
from sparse_probe.solvers.class_blocks import blocks_paid, expected_count, long_blocks
from sparse_probe.solvers.lbfgs import LBFGSMemory, history_for
from sparse_probe.solvers.newton import (
    DEFAULT_MAX_FREE,
    NewtonState,
    carry_model,
    entering_cap,
)
from sparse_probe.solvers.products import rt_x
from sparse_probe.solvers.restricted import (
    X64_CACHE_BYTES,
    RestrictedData,
    add_widened,
    f32_gradient_error,
    row_argmax,
    softmax_residual,
)
from sparse_probe.solvers.threads import (
    SMALL_HESSIAN,
    LoadGovernor,
    fit_threads,
    load_watch,
    newton_threads,
    remeasure,
    torch_threads,
)

__all__ = ["column_stats", "fit_path", "lambda_path"]


log = logging.getLogger(__name__)

# the restricted solver stops at this share of the KKT tolerance, leaving the rest as margin for
# the full-data check (its float32 products differ from the solver's in the last bits)
_SOLVER_TOL_SHARE = 0.9
_PREDICT_ORDER = 2  # warm-start extrapolation degree: cubic overshot on the benchmark path
LAMBDA_MAX_RTOL = 1e-12
"""A λ within this relative distance of λ_max gets the closed form (no weight): λ_max's float64
value depends on the BLAS's summation order, and a caller's own λ_max (``bench_path.py``'s
grid, on the unstandardized columns) came out 1e-16 below the fit's on one machine and not on
another, which sent that point to OWL-QN there. The weights such a λ admits are of the order
of the gap times the data's scale, far under any tolerance."""
STANDARDIZED_COPY_BYTES = 256 * 2**20
"""Largest float32 copy of the whole standardized matrix a CPU fit keeps (also at most its
``cache_bytes``), for features held in memory (not streamed from a file, not ``low_memory``):
every KKT pass over all columns then reads it instead of standardizing each raw chunk again,
and joining columns are gathered from it. Standardizing took a tenth of a two-class
10,000 × 256 path (31 passes; a py-spy profile, ad hoc), and that path ran 1.10x faster with
the copy (``benchmarks/results/compare-session-cpu-2026-12-05.txt``, run D, the others within
the spread); the values are those of the per-chunk standardization, bit for bit (the same
float32 operations)."""
STICKY_SHARE = 0.05
"""A path point keeps the last working set's features that neither hold a weight nor pass the
strong rule's screen any more when they are at most this share of it: dropping a few of
thousands rebuilt the column caches (a gather instead of an append) and reset what is kept
along them, for products a few hundredths smaller."""


class _Trainer:
    """State shared by the path points: data, standardization, device, working-set cache.

    Two memory regimes: the default caches the working-set columns (n × m float32) and keeps
    float64 logits (n × C) for cheap line searches; ``low_memory`` keeps nothing of size n
    beyond the optional column cache and evaluates block by block (streaming from disk when
    even the cache exceeds ``cache_bytes``).
    """

    def __init__(self, src, y, C, mean, scale, device, cache_bytes, low_memory):
        self.src, self.C, self.device = src, C, device
        self.n, self.d = src.n, src.d
        self.mean = mean
        self.scale = scale
        self.mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.inv_scale_t = torch.as_tensor(1.0 / scale, dtype=torch.float32, device=device)
        # the same map in float64 arithmetic (mean and 1/scale are float32 values: exact)
        self.mean64_t = self.mean_t.to(torch.float64)
        self.inv_scale64_t = self.inv_scale_t.to(torch.float64)
        self.y = torch.as_tensor(y, device=device)
        self.cache_bytes = cache_bytes
        self.low_memory = low_memory
        self.ws = np.zeros(0, dtype=np.int64)
        self.Xw: torch.Tensor | None = torch.zeros((self.n, 0), dtype=torch.float32, device=device)
        self.XwT: torch.Tensor | None = None
        self._XTbuf: torch.Tensor | None = None  # (capacity, n): XwT is its first rows
        # the working set's columns standardized in float64, column-major (capacity, n): its
        # first _x64_m rows are ws[:_x64_m] (exact_ws_blocks; kept across points)
        self._X64T: torch.Tensor | None = None
        self._x64_m = 0
        self.passes = 0
        self._copy_ok = (torch.device(device).type == "cpu" and not low_memory and not src.on_disk
                         and 4 * self.n * self.d <= min(STANDARDIZED_COPY_BYTES, cache_bytes))
        self._Xstd: torch.Tensor | None = None  # the standardized copy, once made

    def standardized(self) -> torch.Tensor | None:
        """The whole matrix standardized in float32 (n, d), made on first use, where it is kept
        (:data:`STANDARDIZED_COPY_BYTES`); else None (callers standardize raw chunks)."""
        if self._Xstd is None and self._copy_ok:
            X = torch.empty((self.n, self.d), dtype=torch.float32, device=self.device)
            for s, block in self.src.chunks():
                self._standardize(block, X[s : s + block.shape[0]])
            self._Xstd = X
        return self._Xstd

    def _std_blocks(self):
        """``(start, standardized float32 row block)`` in order: views of the copy where it is
        kept (:meth:`standardized`), else each raw chunk standardized into a reused buffer
        (valid until the next block)."""
        X = self.standardized()
        if X is not None:
            for s in range(0, self.n, self.src.chunk_rows):
                yield s, X[s : s + self.src.chunk_rows]
            return
        buf = None
        for s, block in self.src.chunks():
            if buf is None or buf.shape[0] < block.shape[0]:
                buf = torch.empty(tuple(block.shape), dtype=torch.float32, device=self.device)
            yield s, self._standardize(block, buf[: block.shape[0]])

    def _standardize(self, block, out: torch.Tensor) -> torch.Tensor:
        """A raw row block standardized in float32 into ``out`` (rows, d), the one map every
        full-data pass uses (the raw block, possibly the caller's own array, is not
        written)."""
        return torch.sub(self._to_dev(block), self.mean_t, out=out).mul_(self.inv_scale_t)

    def _to_dev(self, block) -> torch.Tensor:
        return block_tensor(block, self.device, torch.float32)

    def _standardized_cols(self, block, cols_t: torch.Tensor) -> torch.Tensor:
        """Standardized float32 columns ``cols_t`` of a raw row block, C-ordered on the device."""
        xb = torch.index_select(self._to_dev(block), 1, cols_t)
        return xb.sub_(self.mean_t[cols_t]).mul_(self.inv_scale_t[cols_t])

    def exact_blocks(self, cols: np.ndarray):
        """Yield ``(start, block)``: columns ``cols`` of the raw row blocks standardized in
        float64, ``(x - mean) * inv_scale`` with the float32 standardization's own constants
        (float64 (rows, k) on the device).

        The float32 columns round each value once more (relative 6e-8): the solvers' problem
        then differs from the standardized data's by that rounding, which moved the gradient
        by up to 3% of the float32 products' error bound in a measurement
        (``benchmarks/measure_std_error.py``) and, at tolerances far below that bound
        (``eps = 1e-5``), decided KKT verdicts. Where float64 products decide a verdict
        (exact mode, :func:`_certify`) the data are these.
        """
        cols_t = torch.as_tensor(cols, device=self.device)
        mean, inv = self.mean64_t[cols_t], self.inv_scale64_t[cols_t]
        for s, block in self.src.chunks():
            if isinstance(block, torch.Tensor):
                xb = torch.index_select(block.to(self.device), 1, cols_t)
            else:  # numpy's take copies: a read-only memmap's rows never reach torch as such
                xb = torch.from_numpy(np.take(np.asarray(block), cols, axis=1)).to(self.device)
            xb = xb.to(torch.float64)
            yield s, xb.sub_(mean).mul_(inv)

    def exact_ws_blocks(self):
        """Yield ``(start, block)``: the working set's columns standardized in float64, rows
        in order (float64 (rows, m), :meth:`exact_blocks`' values), for exact mode's float64
        products (:class:`RestrictedData`'s ``exact_blocks``).

        Where they take at most :data:`~sparse_probe.solvers.restricted.X64_CACHE_BYTES`
        they are kept, column-major, across path points: a point that only adds features
        converts only those (converting the whole working set at every point that ended in
        exact mode cost the default ``current`` bench path 8-15% of its time); one block, a
        transposed view. Larger ones are converted from the raw chunks on every pass.
        """
        m = self.ws.size
        if self.n * m * 8 > X64_CACHE_BYTES:
            yield from self.exact_blocks(self.ws)
            return
        if self._X64T is None or self._X64T.shape[0] < m:
            cap = max(m, min(int(1.25 * m) + 8, X64_CACHE_BYTES // (8 * self.n)))
            buf = torch.empty((cap, self.n), dtype=torch.float64, device=self.device)
            if self._X64T is not None and self._x64_m:
                buf[: self._x64_m] = self._X64T[: self._x64_m]
            self._X64T = buf
        if self._x64_m < m:
            a = self._x64_m
            for s, xb in self.exact_blocks(self.ws[a:m]):
                self._X64T[a:m, s : s + xb.shape[0]] = xb.T
            self._x64_m = m
        yield 0, self._X64T[:m].T

    def set_working_set(self, ws: np.ndarray) -> None:
        """Cache standardized columns ``ws`` on the device (reusing cached ones) if they fit.

        ``self.ws`` lists the cached features in cache order (not sorted), so that joining
        columns are appended: the row-major cache ``Xw`` (n, m) is reallocated contiguous (the
        products ran slower on a strided view of a larger buffer) with the old columns copied
        as one block, and the column-major copy ``XwT`` grows in place within spare capacity.
        Only the new columns are read from the source.
        """
        ws = index_sets.unique(ws)
        if ws.size == self.ws.size and np.array_equal(ws, np.sort(self.ws)):
            return
        if self.n * ws.size * 4 > self.cache_bytes:
            if not self.low_memory:
                raise MemoryError(
                    f"working set of {ws.size} features needs {self.n * ws.size * 4 / 2**20:.0f} "
                    f"MiB, over cache_bytes={self.cache_bytes / 2**20:.0f} MiB; use "
                    "low_memory=True (streams from disk), raise cache_bytes, or stop the path "
                    "earlier (max_features_per_class)")
            self.ws, self.Xw, self.XwT, self._XTbuf = ws, None, None, None
            return  # stream the columns on every pass
        old_ws, old_Xw, old_XwT = self.ws, self.Xw, self.XwT
        self.Xw = self.XwT = None  # drop references early: the old cache is freed below
        cached = old_Xw is not None
        new = index_sets.difference(ws, old_ws) if cached else ws
        keep = index_sets.members(old_ws, ws) if cached else np.zeros(0, dtype=bool)
        appended = cached and bool(keep.all())
        kept = old_ws[keep]
        keep_idx = torch.as_tensor(np.flatnonzero(keep), device=self.device)
        order, start = np.concatenate([kept, new]), kept.size
        m = order.size
        Xw = torch.empty((self.n, m), dtype=torch.float32, device=self.device)
        want_T = not self.low_memory and 2 * self.n * m * 4 <= self.cache_bytes
        XTbuf = self._XTbuf if want_T and appended and old_XwT is not None else None
        if XTbuf is not None and XTbuf.shape[0] < m:
            XTbuf = None
        if kept.size:
            Xw[:, :start] = old_Xw if appended else old_Xw[:, keep_idx]
        if want_T and XTbuf is None:  # new column-major buffer with spare rows
            cap = max(m, min(int(1.25 * m) + 8, self.cache_bytes // (8 * self.n)))
            XTbuf = torch.empty((cap, self.n), dtype=torch.float32, device=self.device)
            if kept.size:  # from the old copy, or transposed from the new Xw
                XTbuf[:start] = Xw[:, :start].T if old_XwT is None else \
                    old_XwT if appended else old_XwT[keep_idx]
        del old_Xw, old_XwT
        if new.size:
            cols_t = torch.as_tensor(new, device=self.device)
            Xs = self.standardized()
            if Xs is not None:  # gathered from the standardized copy
                Xw[:, start:] = torch.index_select(Xs, 1, cols_t)
            else:
                for s, block in self.src.chunks():
                    xb = self._standardized_cols(block, cols_t)
                    Xw[s : s + xb.shape[0], start:] = xb
            if XTbuf is not None:
                XTbuf[start:m] = Xw[:, start:].T
        self.ws, self.Xw, self._XTbuf = order, Xw, XTbuf
        self.XwT = XTbuf[:m] if XTbuf is not None else None
        if not appended:  # the float64 columns kept are no longer the working set's first
            self._x64_m = 0

    def restricted(self):
        """The problem on the working set: cached columns with kept logits
        (:class:`RestrictedData`) or streamed row blocks (:class:`BlockedData`)."""
        if not self.low_memory and self.Xw is not None:
            return RestrictedData(self.Xw, self.y, self.C, XwT=self.XwT,
                                  exact_blocks=self.exact_ws_blocks, features=self.ws)
        m, cols_t = self.ws.size, torch.as_tensor(self.ws, device=self.device)
        if self.Xw is not None:  # cached standardized columns: views, no copies
            Xw, step = self.Xw, self.src.chunk_rows

            def blocks():
                for s in range(0, self.n, step):
                    yield s, Xw[s : s + step]

            return BlockedData(blocks, self.y, self.n, m, self.C)
        def raw_blocks():  # whole raw chunks: BlockedData gathers and standardizes the columns
            for s, block in self.src.chunks():
                yield s, self._to_dev(block)

        # the float32 standardization of the cached columns (_standardized_cols)
        return BlockedData(raw_blocks, self.y, self.n, m, self.C, cols=cols_t,
                           mean=self.mean_t[cols_t], inv_scale=self.inv_scale_t[cols_t])

    def full_gradient(self, W_ws: torch.Tensor, b: torch.Tensor, z: torch.Tensor | None = None):
        """Gradient of the mean CE w.r.t. all d weights (C, d), loss and accuracy: one pass.

        Streams the raw chunks once, each standardized in float32 as the cached columns are:
        logits from the working-set columns in float64 (or the solver's own float64 logits
        ``z`` (n, C) when given), then the float32 product of the residual with all columns.
        The product is taken on the standardized columns, not the raw ones with the
        standardization folded in afterwards: for a column whose mean is large against its
        spread that subtraction cancelled, and the float32 error of ``Σ r x_raw`` (relative to
        ``|mean| Σ|r|``) exceeded the KKT tolerance at small λ (mean/std ~ 50).
        Memory: one chunk plus O(C·d).
        """
        self.passes += 1
        W64 = W_ws.to(torch.float64)
        b64 = b.to(torch.float64)
        cols_t = torch.as_tensor(self.ws, device=self.device)
        G = torch.zeros((self.C, self.d), dtype=torch.float64, device=self.device)
        rsum = torch.zeros(self.C, dtype=torch.float64, device=self.device)
        total, correct = 0.0, 0
        for s, xs in self._std_blocks():
            yb = self.y[s : s + xs.shape[0]]
            if z is not None:  # the solver's logits at this point (up to row constants)
                zb = z[s : s + xs.shape[0]]
            else:
                zb = b64.expand(xs.shape[0], -1).clone()
                if self.ws.size:
                    zb += xs[:, cols_t].to(torch.float64) @ W64.T
            correct += int((row_argmax(zb) == yb).sum())
            if fused_ce.usable(zb):  # CPU: one compiled pass, z left intact
                R = torch.empty(zb.shape, dtype=torch.float32)
                loss_sum, sums = fused_ce.ce_rows(zb, yb, R32=R)
            else:
                loss_sum, R = softmax_residual(zb, yb, inplace=z is None)  # never the solver's z
                sums = R.sum(0)
            total += loss_sum
            G += rt_x(R, xs).to(torch.float64)
            rsum += sums
        return (G / self.n).cpu().numpy(), rsum.cpu().numpy() / self.n, total / self.n, \
            correct / self.n

    def exact_gradient(self, W_ws: torch.Tensor, b: torch.Tensor, cols: np.ndarray) -> np.ndarray:
        """Gradient of the mean CE on the features ``cols`` (C, k) with float64 products.

        One pass over the raw chunks: logits from float64 products of the working-set
        columns (not a solver's kept ones, which may have drifted), residuals in float64, the
        columns standardized in float64 (:meth:`exact_blocks`: the standardized data's own
        gradient, not that of its float32 rounding). For the KKT verdicts float32 products
        cannot settle (:func:`_certify`).
        """
        self.passes += 1
        both = np.concatenate([np.asarray(cols, dtype=np.int64), self.ws])
        k = len(cols)
        W64 = W_ws.to(torch.float64)
        G = torch.zeros((self.C, k), dtype=torch.float64, device=self.device)
        for s, xb in self.exact_blocks(both):
            rows = xb.shape[0]
            zb = b.to(torch.float64).expand(rows, -1).clone()
            if self.ws.size:
                zb += xb[:, k:] @ W64.T
            _, R = softmax_residual(zb, self.y[s : s + rows], inplace=True)
            G += R.T @ xb[:, :k]
        return (G / self.n).cpu().numpy()


def _certify(tr: _Trainer, penalty: Penalty, G: np.ndarray, gb: np.ndarray, W: np.ndarray,
             b: np.ndarray, lam: float, tol_abs: float, counts: np.ndarray,
             exact: np.ndarray) -> tuple[np.ndarray, int]:
    """``G`` (C, d) with float64-product columns wherever the float32 products' error could
    flip a KKT verdict: the features whose violation is within that error
    (:data:`~sparse_probe.solvers.restricted.F32_GRADIENT_ERROR`) of ``tol_abs``, except the
    features ``exact`` whose columns of ``G`` are float64 products already.

    At small λ the tolerance (``tol · λα``) falls to the float32 products' error (with the
    default ``eps = 1e-3`` the last points' tolerances reach ~5e-8 against errors up to a few
    times 1e-8): the fitter then verified KKT on products an independent float64 check
    disagreed with (1.4x tolerance on a held-out rare-class path). The logits are recomputed
    from the weights in float64 (a solver's kept logits may have drifted). Returns the
    gradient and how many features were recomputed.
    """
    err_k = f32_gradient_error(counts, tr.n, gb)
    err = float(np.sqrt((err_k**2).sum()) if penalty.grouped else err_k.max())
    cols = np.flatnonzero(penalty.kkt_violation(G, W, lam) > tol_abs - err)
    cols = index_sets.difference(cols, exact)
    if cols.size == 0:
        return G, 0
    G = G.copy()
    dev = tr.device
    G[:, cols] = tr.exact_gradient(torch.as_tensor(W[:, tr.ws], device=dev),
                                   torch.as_tensor(b, device=dev), cols)
    return G, int(cols.size)


def _float32_standardization(mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` (d,) float64 moved to the values the float32 standardization
    ``(x - mean32) * inv_scale32`` uses exactly: ``mean32`` and ``1 / inv_scale32`` as float64.

    Each moves by at most float32's half ulp (relative 6e-8): the columns' means stay ~0 and
    their spreads ~1, and the path's weights, intercepts and KKT checks all refer to the data
    its solvers saw.
    """
    mean = mean.astype(np.float32).astype(np.float64)
    inv32 = (1.0 / scale).astype(np.float32).astype(np.float64)
    return mean, 1.0 / inv32


def _evaluate(src: FeatureSource | None, y, W: np.ndarray, b: np.ndarray, mean, scale):
    """Accuracy and mean CE of a (C, d) standardized-space model on raw features."""
    if src is None:
        return float("nan"), float("nan")
    active = np.flatnonzero(np.any(W != 0, axis=0))
    Wr = W[:, active].astype(np.float64) / scale[active]
    br = b - Wr @ mean[active]
    correct = 0
    total = 0.0
    for s, block in src.chunks():
        xb = block.detach().cpu().numpy() if isinstance(block, torch.Tensor) else block
        z = np.asarray(xb[:, active], dtype=np.float64) @ Wr.T + br
        yb = y[s : s + z.shape[0]]
        zmax = z.max(1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(1))
        total += float((lse - z[np.arange(z.shape[0]), yb]).sum())
        correct += int((z.argmax(1) == yb).sum())
    return correct / src.n, total / src.n


def fit_path(
    X,
    y,
    *,
    alpha: float = DEFAULT_ALPHA,
    n_lambdas: int = 100,
    eps: float = 1e-3,
    lambdas: np.ndarray | None = None,
    lambda_min: float | None = None,
    grouped: bool = False,
    tol: float = 1e-3,
    tol_relative_to: str = "lambda",
    device: str | torch.device | None = None,
    X_val=None,
    y_val=None,
    n_classes: int | None = None,
    classes: list[str] | None = None,
    solver: str = "torch",
    penalty: Penalty | None = None,
    max_features_per_class: float | None = None,
    max_seconds: float | None = None,
    max_iter: int = 5000,
    chunk_rows: int | None = None,
    cache_bytes: int = 2 * 2**30,
    low_memory: bool | None = None,
    resident: bool | None = None,
    threads: int | str | None = None,
    progress: bool = True,
) -> Path:
    """Fit the elastic-net regularization path of a multinomial sparse head.

    Minimizes, for each λ, ``mean_i CE(W x_i + b, y_i) + λ[α P1(W) + (1-α)/2 ||W||_F^2]`` on
    standardized features (see :mod:`sparse_probe.objective`).

    Parameters
    ----------
    X : ndarray, torch.Tensor, np.memmap or path to a ``.npy``, shape (n_samples, n_features)
        Raw features (standardized internally). A ``.npy`` path or memmap is streamed in row
        chunks, so memory stays bounded by the chunk plus the working-set cache and O(d·C) state.
        Columns that are exact copies of each other (:func:`~sparse_probe.copies.copy_groups`)
        share their weight equally at every point, the optimum's split
        (:func:`~sparse_probe.copies.equal_split`); ``info["copied_columns"]`` counts the
        columns beyond the first of each such group (glmnet backend: not looked for).
    y : array-like of shape (n_samples,)
        Integer labels in ``[0, n_classes)``.
    alpha : float, default :data:`~sparse_probe.penalties.DEFAULT_ALPHA` (0.99)
        L1 share α in (0, 1].
    n_lambdas : int, default 100
    eps : float, default 1e-3
        Smallest λ as a fraction of λ_max.
    lambdas : ndarray, optional
        Explicit decreasing λ values (overrides ``n_lambdas``/``eps``).
    lambda_min : float, optional
        End the path exactly at this λ (grid points above it, then it).
    grouped : bool, default False
        Use glmnet's grouped penalty (per-feature L2 norm over classes).
    tol : float, default 1e-3
        KKT tolerance: every returned point has all optimality violations (gradient units)
        below ``tol * α * λ`` at its own λ (or ``tol * α * λ_max`` with
        ``tol_relative_to="lambda_max"``), unless the solver hit ``max_iter`` (then a warning).
        Relative to λ, the tolerance tightens along the path where curvature is low.
    device : str or torch.device, optional
        Where the matrix products run (default: X's device for tensors, else CPU).
    X_val, y_val : optional
        Validation features/labels for ``val_acc``/``val_loss``.
    solver : {"torch", "glmnet"} or a name in :data:`sparse_probe.solvers.SOLVERS`
        ``"torch"``: this module's path algorithm with the penalty's default restricted
        solver (for the elementwise penalty OWL-QN, or on CPU proximal Newton where
        :func:`~sparse_probe.solvers.choice.prefer_newton` expects it to be faster, point by
        point; FISTA for the grouped one); a registered name (``"owlqn"``, ``"newton"``,
        ``"fista"``) picks that restricted solver for every point instead (an unsupported
        penalty is a ``ValueError``). ``info["method"]`` names the solvers used,
        ``info["method_per_point"]`` each point's (``"newton+owlqn"`` where Newton's model
        outgrew its ``max_free`` and OWL-QN finished the point; points expected above it go
        to OWL-QN directly), ``info["free_per_point"]`` the free
        coordinates (weights plus biases) the choice expected at each point's first round. ``"glmnet"`` runs python-glmnet's Fortran
        coordinate descent on the same λs.
    penalty : Penalty, optional
        A penalty object (:mod:`sparse_probe.penalties`); when given it replaces ``alpha``
        and ``grouped``.
    max_features_per_class : float, optional
        Stop the path after the first point whose mean nonzero features per class exceeds it.
    max_seconds : float, optional
        A time budget: stop the path after the first point that ends this many seconds or more
        after the call began (that point is kept, so at least one point is returned). The
        points returned are the same as a longer run's first points; ``info["stopped"]``
        says ``"max_seconds"`` when the budget cut the path short. Not supported by the
        glmnet backend, which fits every λ in one call.
    max_iter : int, default 5000
        Iterations of the restricted solver at a point at most (a point stopped by it keeps
        its weights, with a warning). OWL-QN is the only solver for models over Newton's
        ``max_free``, and deep (ε = 1e-3) collinear many-class paths need ~2,000 iterations
        per point there: a held-out 3395 × 253 × 20 draw took 1,912 at its last point, and
        2,000 more on a path whose earlier points had gone otherwise (left unverified at
        2.8× its tolerance with 2,000).
    cache_bytes : int
        Upper bound for the cached working-set columns (n × m float32). On CPU, features
        held in memory (not a file, not ``low_memory``) of at most
        :data:`STANDARDIZED_COPY_BYTES` and ``cache_bytes`` as float32 are also kept
        standardized once (n × d float32), for the full-data passes.
    low_memory : bool, optional
        Keep nothing of size n except the column cache (and stream from ``X`` when even that
        exceeds ``cache_bytes``): memory is one chunk plus O(d·C) state. Default: on when
        three (n, C) float64 arrays would exceed 512 MiB or ``X`` is a file larger than
        ``cache_bytes``. Otherwise, on CPU, where one such array is 32 MiB or more, the fit's
        large temporaries come from glibc's heap and the memory they free stays until the fit
        ends (:func:`~sparse_probe.allocator.heap_temporaries`: faster, some peak memory more).
    resident : bool, optional
        Copy ``X`` to ``device`` once, in its own dtype, and run every pass there instead of
        reading it from the host again (a file's rows otherwise cross from the host on every
        full-data pass). Default: on a CUDA device when ``X`` is not already there and its
        bytes are at most :data:`RESIDENT_SHARE` of the device's free memory (ImageNet-size
        features, 1.28M × 2,048 float16, are 4.9 GiB); never on CPU, where the host memory
        is what ``low_memory`` protects. ``True`` forces the copy (on CPU: the file read into
        memory), ``False`` streams. Recorded in ``info["resident"]``. Not used by the glmnet
        backend.
    threads : int or "auto", optional
        CPU threads for this fit (restored afterwards). Default: the environment variable
        ``SPARSE_PROBE_THREADS`` when set, else ``"auto"``: no more threads than the cores other
        processes leave free, and of those a short probe of this problem's products with one
        thread and with more keeps more only when they are clearly faster, so a machine with
        a busy core never makes the fit slower than one thread would
        (:mod:`sparse_probe.solvers.threads`). The proximal Newton solver's points measure
        their own count once (a product of its Hessian's kind,
        :func:`~sparse_probe.solvers.threads.newton_threads`). Load that other processes start
        during the fit drops the count from the next path point on. Ignored on CUDA and by
        the glmnet backend; recorded in ``info["threads"]`` (the choice at the start),
        ``info["threads_newton"]`` (None where no Newton point ran) and
        ``info["threads_dropped_at"]`` (``[point, count]`` from where the fit ran on fewer
        threads, else None). A count that others' load held down (at the start or by a drop)
        is measured again once that load has gone for a second or more, at most three times
        (:class:`~sparse_probe.solvers.threads.LoadGovernor`): ``info["threads_raised_at"]``
        (``[point, count]`` from where it ran on more again, else None).

    Returns
    -------
    Path
    """
    t0 = time.perf_counter()
    if penalty is None:
        penalty = make_penalty(alpha, grouped)  # checks alpha
    alpha, grouped = penalty.alpha, penalty.grouped
    if solver not in ("torch", "glmnet", *SOLVERS):
        raise ValueError(f"solver must be 'torch', 'glmnet' or one of {', '.join(SOLVERS)}, "
                         f"got {solver!r}")
    if max_seconds is not None and not max_seconds >= 0:
        raise ValueError(f"max_seconds must be >= 0, got {max_seconds!r}")
    if max_seconds is not None and solver == "glmnet":
        raise ValueError("max_seconds: not supported by the glmnet backend (it fits every λ "
                         "in one call)")
    spec = None if solver == "glmnet" else get_solver(None if solver == "torch" else solver,
                                                      penalty)
    # default for the elementwise penalty: OWL-QN or proximal Newton, chosen per path point
    # from cheap signals (sizes, free coordinates, OWL-QN's last iteration count; solvers/choice.py)
    auto = solver == "torch" and spec is not None and spec.name == "owlqn"
    src = FeatureSource(X, chunk_rows=chunk_rows, name="X")
    y = as_labels(y, src.n, n_classes=n_classes, name="y")
    C = int(n_classes or (y.max() + 1))
    if C < 2:
        raise ValueError("y: need at least 2 classes")
    counts = np.bincount(y, minlength=C)
    if (counts == 0).any():
        raise ValueError(f"y: class {int(np.flatnonzero(counts == 0)[0])} has no training examples")
    val_src = None
    if X_val is not None:
        val_src = FeatureSource(X_val, chunk_rows=chunk_rows, name="X_val")
        if val_src.d != src.d:
            raise ValueError(f"X_val: has {val_src.d} features, X has {src.d}")
        if y_val is None:
            raise ValueError("y_val: required with X_val")
        y_val = as_labels(y_val, val_src.n, n_classes=C, name="y_val")
        _check_finite(val_src)
    # the standardization the float32 columns get, (x - mean32) * inv_scale32, is the one the
    # path reports (both backends: one λ grid): with the float64 mean, a column whose mean is
    # large against its spread was shifted by the mean's float32 rounding (~6e-8 |mean| / std),
    # a per-class logit offset of the model's Σ |w| times that, which the intercepts lacked
    if device is None:
        device = X.device if isinstance(X, torch.Tensor) else "cpu"
    device = torch.device(device)
    on_device = solver != "glmnet" and _keep_resident(src, device, resident)
    if on_device:
        src = src.to_device(device)  # one read of X; every later pass runs on the device
    if solver == "glmnet":
        from sparse_probe.solvers.glmnet_backend import fit_path_glmnet

        mean, scale = _float32_standardization(*column_stats(src, device="cpu"))
        return fit_path_glmnet(
            src, y, C, mean, scale, penalty=penalty, n_lambdas=n_lambdas, eps=eps,
            lambdas=lambdas, val=(val_src, y_val), classes=classes, t0=t0, tol=tol,
            evaluate=_evaluate, progress=progress,
        )

    top_threads = torch.get_num_threads()
    start_load: dict = {}  # StartThreads' report: whether others' load held the count down
    with fit_threads(threads, device, (src.n, src.d, C), report=start_load) as start, \
            contextlib.ExitStack() as scope:
        # the thread count is chosen at the fit's start (solvers/threads.py), restored after.
        # Where it reads other processes' load, the set-up's passes up to the first full
        # gradient run in the load's 30 ms window on one thread, polling it between their
        # pieces (the first poll past the window decides, the rest run on the count chosen):
        # beside a busy core two threads' reductions stall (a 10,000 x 256 statistics' pass
        # up to 80 ms against 8 on one thread, ad hoc), and the window is not slept away.
        # The class sums come from the same pass (the gradient at W = 0, below)
        if device.type == "cpu":
            prime_mmap_threshold()  # the fit's mid-sized temporaries from the heap
        *stats, class_total = column_sums(src, y, C, device=device, poll=start.poll)
        mean, scale = _float32_standardization(*stats)
        # exact copies among the columns: their weights are evened out after every solve
        # (the optimum's split; copies.py)
        copies = copy_groups(src, *stats)
        start.poll()
        if low_memory is None:
            low_memory = src.n * C * 8 * 3 > 512 * 2**20 or (src.on_disk and src.nbytes > cache_bytes)
        if low_memory:
            fix_mmap_threshold()
        elif device.type == "cpu" and src.n * C * 8 >= MMAP_CEILING:
            # the (n, C) float64 logits and residuals the solvers allocate and free at every
            # iteration from the heap: above glibc's mmap ceiling each one was faulted in anew.
            # Below it glibc keeps them itself, and the heap would only keep the large, rare
            # blocks (a grown working set's cache, a grown Newton model's Hessian) resident
            # after they are freed: a 50,000 x 1,024 x 10 path 1.29x faster so, but its peak
            # RSS 2.84 GiB against 2.06 (benchmarks/measure_heap.py)
            scope.enter_context(heap_temporaries())
        tr = _Trainer(src, y, C, mean, scale, device, cache_bytes, low_memory)
        prior = counts / counts.sum()
        b = np.log(prior) - np.log(prior).mean()
        # gradient at W = 0 with the intercept-only optimum: -(1/n) Y^T X_std (the X_std sum is 0),
        # accumulated in float64 so that λ_max is exact
        G0 = -(class_total - counts[:, None] * mean[None, :]) / scale[None, :] / src.n
        start.poll(next_work=src.n * src.d * C)  # the first full gradient: in the window?
        _, _, loss0, acc0 = tr.full_gradient(torch.zeros((C, 0), dtype=torch.float64, device=device),
                                             torch.as_tensor(b, device=device))
        n_threads = start.settle()
        lam_max = penalty.lambda_max(G0)
        if lam_max <= 0:
            raise ValueError("X: all features are constant; nothing to fit")
        lams = lambda_path(lam_max, n_lambdas, eps) if lambdas is None else np.asarray(lambdas, float)
        if lambda_min is not None:
            lams = np.append(lams[lams > lambda_min], min(lambda_min, lam_max))
        if np.any(np.diff(lams) > 0):
            raise ValueError("lambdas must be decreasing")
        tol_scale = lam_max if tol_relative_to == "lambda_max" else None

        W = np.zeros((C, src.d))
        records: dict[str, list] = Path.empty_records()
        G = G0
        lam_prev = lam_max
        gamma = None  # L-BFGS scaling carried from point to point
        hist: list = []  # (λ, W, b) of the last solved points, for the warm start
        z = None  # float64 logits (n, C) of the current solution when the solver returns them
        mem, mem_ws = None, None  # OWL-QN's curvature pairs and the working set they belong to
        owlqn_iters = None  # OWL-QN's iterations at the last point it solved (for ``auto``)
        owlqn_free = None  # the free coordinates expected at that point
        newton_steps: list[int] = []  # Newton's steps at the points it solved
        # their cost from the work they counted / the estimate: each point's as if it made its
        # fresh Hessian (entering Newton), and as counted (staying: choice.newton_over_seen)
        newton_over: list[float] = []
        newton_over_counted: list[float] = []
        newton_routes: list[str] = []  # each of those points' formula (choice.cost_route)
        data_crawls = False  # a Newton point's data-space solve crawled (choice.newton_cost)
        # whether the class blocks paid where OWL-QN first used them for a long solve (None:
        # not yet; class_blocks.blocks_paid), whether its last point alone used them, and
        # its counts (point, iterations) at the last two points it solved alone without them
        blocks_long: bool | None = None
        owlqn_blocks = False
        plain_counts: list[tuple[int, int]] = []
        # the ratio of a Newton point that handed over past its budget, until Newton next
        # solves a point alone (choice.newton_over_seen's floor)
        newton_floor = None
        methods: list[str] = []  # the restricted solver(s) of each point
        newton_k = None  # Newton's own thread count, once measured (threads.newton_threads)
        threads_newton = None  # the count Newton's last point ran on
        # load that other processes start during the fit: fewer threads from the next point
        # on; load that held the count down and went: measured again (threads.LoadGovernor)
        watch = load_watch(threads, n_threads, top_threads)
        governor = None if watch is None else LoadGovernor(watch, start_load.get("held", False))
        threads_chosen = n_threads
        threads_dropped = None  # [the point from which the fit ran on fewer threads, how many]
        threads_raised = None  # [the point from which it ran on more again, how many]
        ceiling = top_threads  # the most threads any point may take (a drop lowers it)
        bar = tqdm(lams, desc="path", unit="λ", disable=not progress, leave=False)
        tol_points = []
        free_points: list[int] = []  # the free coordinates expected at each point's first round
        stopped = None  # why the path ended before its last λ
        for lam in bar:
            if governor is not None:
                k_now = max(n_threads, newton_k or 1)
                what, cap = governor.step(k_now, top_threads, n_threads)
                if what == "drop":
                    log.info("other processes took a core: %d thread(s) from λ #%d on", cap,
                             len(tol_points))
                    n_threads, newton_k = min(n_threads, cap), newton_k and min(newton_k, cap)
                    torch.set_num_threads(n_threads)  # fit_threads restores the caller's count
                    threads_dropped, ceiling = [len(tol_points), cap], cap
                elif what == "remeasure":
                    got = remeasure(device, (src.n, src.d, C), top_threads)
                    governor.measured(n_threads, got, top_threads)
                    if got > n_threads:
                        log.info("other processes' load went: %d thread(s) from λ #%d on", got,
                                 len(tol_points))
                        # Newton's count is measured again at its next point worth it
                        n_threads, newton_k, ceiling = got, None, got
                        torch.set_num_threads(n_threads)
                        threads_raised = [len(tol_points), got]
            n_iter = 0
            used: list[str] = []
            tol_abs = tol * penalty.l1_l2(tol_scale if tol_scale is not None else lam)[0]
            tol_points.append(tol_abs)
            active = np.flatnonzero(np.any(W != 0, axis=0))
            strong = np.flatnonzero(penalty.screen(G, lam, lam_prev))
            ws = _keep_leaving(index_sets.union(active, strong), tr.ws)
            loss, acc = loss0, acc0
            if lam >= lam_max * (1.0 - LAMBDA_MAX_RTOL):
                # closed form: W = 0 with the intercept-only optimum; solving would only let
                # float32 rounding at the tie admit a ~1e-9 weight
                ws = np.zeros(0, dtype=np.int64)
            free_points.append(C)  # the biases only, unless a working set says more
            for _round in range(50):
                tr.set_working_set(ws)
                if ws.size:
                    data = tr.restricted()
                    Wstart, bstart = W, b
                    if _round == 0 and hist:
                        Wstart, bstart = _predict(hist, lam, order=_PREDICT_ORDER)
                    use = spec
                    # the model's size at the solution: the nonzero weights and those whose
                    # gradient already violates this λ's threshold, plus the biases
                    # (as many of the entering ones as Newton admits at a step: newton.admit)
                    enter = np.abs(G[:, tr.ws]) > penalty.l1_l2(lam)[0]
                    nonzero = Wstart[:, tr.ws] != 0
                    k_nz = int(nonzero.sum())
                    n_free = k_nz + min(int((enter & ~nonzero).sum()), entering_cap(k_nz)) + C
                    if _round == 0:
                        free_points[-1] = n_free
                    # the last point ended on Newton (alone, or taking over from OWL-QN)
                    on_newton = bool(methods) and methods[-1].endswith("newton")
                    newton_seen = {
                        "newton_steps": np.mean(newton_steps[-3:]) if newton_steps else None,
                        "newton_over": newton_over_seen(
                            newton_over, newton_over_counted, on_newton=on_newton,
                            floor=newton_floor, routes=newton_routes,
                            route=cost_route(src.n, C, n_free, data_crawls)),
                        "data_crawls": data_crawls}
                    choose = auto and data.keeps_logits and device.type == "cpu"
                    if choose and prefer_newton(
                            src.n, tr.ws.size, C, n_free, owlqn_iters, on_newton=on_newton,
                            owlqn_free=owlqn_free, max_free=DEFAULT_MAX_FREE, **newton_seen):
                        use = SOLVERS["newton"]
                    # staying on Newton on a stale OWL-QN count: a probe of OWL-QN for what
                    # Newton is estimated to cost here (choice.owlqn_probe)
                    budget = owlqn_probe(src.n, tr.ws.size, C, n_free, owlqn_iters, owlqn_free,
                                         **newton_seen) \
                        if choose and use is SOLVERS["newton"] and on_newton else None
                    probing = budget is not None
                    if probing:
                        use = SOLVERS["owlqn"]
                        log.debug("λ=%.3e: OWL-QN probed for %d iterations (its count is from "
                                  "N=%d, now %d)", lam, budget, owlqn_free, n_free)
                    elif choose and use is SOLVERS["owlqn"]:
                        # OWL-QN where Newton could run: a budget, beyond which Newton takes over
                        budget = owlqn_budget(src.n, tr.ws.size, C, n_free,
                                              max_free=DEFAULT_MAX_FREE, **newton_seen)
                    W0 = torch.as_tensor(Wstart[:, tr.ws], device=device)
                    b0 = torch.as_tensor(bstart, device=device)
                    z0 = None
                    if (use.uses_logits and data.keeps_logits and z is not None
                            and len(records["nnz"]) % 10):
                        # logits from the last solution plus a float32 product of the (small)
                        # change; recomputed exactly with float64 products every 10th point.
                        # In place: the last solution's logits have served their KKT pass, and
                        # fresh (n, C) float64 arrays cost a pass of page faults each
                        dW = W0 - torch.as_tensor(W[:, tr.ws], device=device)
                        z0 = add_widened(z, data.step(dW, torch.zeros_like(b0))).add_(
                            b0 - torch.as_tensor(b, device=device))
                    # OWL-QN's curvature pairs or Newton's model (each solver uses its own)
                    carried = None if mem is None else _carry_memory(mem, mem_ws, tr.ws, C)
                    k_point = n_threads
                    if use is SOLVERS["newton"] and n_threads is not None:
                        # Newton's products gain from threads where OWL-QN's may not: its
                        # own count, measured once its Hessians are worth it (threads.py)
                        if newton_k is None and src.n * float(n_free) ** 2 / 2 >= SMALL_HESSIAN:
                            newton_k = newton_threads(threads, n_threads, ceiling)
                        k_point = threads_newton = newton_k or n_threads
                    # OWL-QN finishing a Newton point whose model outgrew max_free gets the
                    # path's max_iter too (not its own default)
                    handed = {"owlqn_max_iter": max_iter} if use is SOLVERS["newton"] else {}
                    # OWL-QN's count at the last point it solved, to OWL-QN (or Newton's
                    # hand-over to it): a long solve uses the class blocks (blocks_pay),
                    # unless they did not pay where first so used on this path
                    expected = owlqn_iters if blocks_long is not False else None
                    if expected is not None and use is SOLVERS["owlqn"]:
                        handed["expected_iters"] = expected
                    elif expected is not None and use is SOLVERS["newton"]:
                        handed["owlqn_expected_iters"] = expected
                    if choose and use is SOLVERS["newton"]:
                        # and Newton a budget, past which OWL-QN takes over (choice.newton_budget)
                        handed["max_cost"] = newton_budget(owlqn_iters, n_free, owlqn_free,
                                                           on_newton=on_newton)
                    with torch_threads(k_point):
                        res = use.solve(
                            data, W0, b0, lam, penalty, tol=_SOLVER_TOL_SHARE * tol_abs,
                            max_iter=max_iter if budget is None else min(max_iter, budget),
                            z0=z0,
                            gamma0=gamma,  # the last point's curvature scale: a sized first step
                            memory=carried, **handed)
                        if budget is not None and not res.converged:
                            # over its budget (or stopped): the choice was wrong whatever
                            # OWL-QN's count said, which is at least this point's now (a
                            # probe's: at least the count grown to here, choice.owlqn_probe)
                            known = 0.0 if owlqn_iters is None else \
                                grown_count(owlqn_iters, n_free, owlqn_free) if probing \
                                else owlqn_iters
                            owlqn_iters, owlqn_free = max(known, res.n_iter), n_free
                            log.debug("λ=%.3e: OWL-QN unconverged after %d iterations (budget "
                                      "%d): Newton takes over", lam, res.n_iter, budget)
                            # a probe's Newton finish starts on the last point's model (its
                            # first step, as a carried point's: newton.carry_model)
                            res = _hand_over(res, SOLVERS["newton"].solve(
                                data, res.W, res.b, lam, penalty,
                                tol=_SOLVER_TOL_SHARE * tol_abs, max_iter=max_iter,
                                z0=res.logits, gamma0=gamma, owlqn_max_iter=max_iter,
                                memory=carried if isinstance(carried, NewtonState) else None))
                    # what ran: a Newton point whose model outgrew max_free was finished by
                    # OWL-QN; the counts that size the next choice are those of a point one
                    # solver solved alone (a share of a point understates either's count)
                    parts = res.iterations or {use.name: res.n_iter}
                    used.extend(parts)
                    if parts.keys() == {"owlqn"}:
                        with_blocks = isinstance(res.memory, LBFGSMemory) and \
                            res.memory.initial is not None
                        point = len(tol_points)
                        if blocks_long is None and with_blocks and not owlqn_blocks and \
                                plain_counts and long_blocks(src.n, tr.ws.size, C, expected):
                            blocks_long = blocks_paid(res.n_iter, plain_counts, point)
                            log.debug("λ=%.3e: class blocks on a long solve: %d iterations "
                                      "(%.0f expected without): %s", lam, res.n_iter,
                                      expected_count(plain_counts, point),
                                      "kept" if blocks_long else "dropped")
                        if not with_blocks:
                            plain_counts = [*plain_counts[-1:], (point, res.n_iter)]
                        owlqn_iters, owlqn_free, owlqn_blocks = res.n_iter, n_free, with_blocks
                    elif parts.keys() == {"newton"}:
                        newton_steps.append(res.n_iter)
                    if "newton" in parts and res.work is not None:
                        # a Newton point, or one it handed over past its budget (its work up
                        # to there: what Newton cost here at least), priced as counted, and
                        # as if the point had computed its fresh Hessian where it ran on the
                        # last point's model (which of the two a choice reads:
                        # choice.newton_over_seen)
                        # (not a point that solved its models in data space: no Hessian)
                        work = res.work if res.work.get("data") else dict(
                            res.work, hessian=max(res.work["hessian"],
                                                  src.n * float(n_free) ** 2 / 2))
                        # against the formula of what it did: a data-space solve that
                        # crawled into the Gram route prices this and later data-route
                        # points as both (choice.newton_cost's data_crawls)
                        data_crawls = data_crawls or bool(res.work.get("crawled"))
                        priced = {"data_crawls": data_crawls}
                        newton_over.append(newton_cost_ratio(
                            src.n, tr.ws.size, C, n_free, parts["newton"], work, **priced))
                        newton_over_counted.append(newton_cost_ratio(
                            src.n, tr.ws.size, C, n_free, parts["newton"], res.work, **priced))
                        newton_routes.append(cost_route(src.n, C, n_free, data_crawls))
                        # Newton first, then OWL-QN: the budget sent it over (newton.newton)
                        bailed = next(iter(parts)) == "newton" and "owlqn" in parts
                        newton_floor = newton_over[-1] if bailed else \
                            (None if parts.keys() == {"newton"} else newton_floor)
                    z = res.logits
                    gamma = res.gamma if res.gamma is not None else gamma
                    mem, mem_ws = res.memory, tr.ws
                    n_iter += res.n_iter
                    W = np.zeros((C, src.d))
                    W[:, tr.ws] = res.W.cpu().numpy()
                    equal_split(W, copies, tr.ws)  # before the KKT pass certifies it
                    b = res.b.cpu().numpy()
                if ws.size == src.d and res.grad is not None:
                    # every feature is in the working set: the solver's gradient at its solution
                    # (all data, float64 logits) is the full gradient; a pass would only repeat it
                    G = np.zeros((C, src.d))
                    G[:, tr.ws] = res.grad.cpu().numpy()
                    gb, loss = res.grad_b.cpu().numpy(), res.loss
                    acc = float((row_argmax(res.logits) == tr.y).double().mean())
                else:
                    G, gb, loss, acc = tr.full_gradient(
                        torch.as_tensor(W[:, tr.ws], device=device),
                        torch.as_tensor(b, device=device), z=z if ws.size else None)
                exact = np.zeros(0, dtype=np.int64)
                if ws.size and getattr(data, "exact", False) and res.grad is not None:
                    # the solver's last gradients were float64 products (it switched where
                    # float32 ones could not settle its tolerance): those columns stand
                    G[:, tr.ws] = res.grad.cpu().numpy()
                    exact = tr.ws
                G, n_exact = _certify(tr, penalty, G, gb, W, b, lam, tol_abs, counts, exact)
                if n_exact:
                    log.debug("λ=%.3e: %d features' gradients from float64 products", lam,
                              n_exact)
                l1 = penalty.l1_l2(lam)[0]
                outside = index_sets.difference(
                    np.flatnonzero(penalty.dual_norm(G) > l1 + 0.5 * tol_abs), tr.ws)
                if outside.size == 0:
                    break
                ws = index_sets.union(tr.ws, outside)
                log.debug("λ=%.3e: %d KKT violators join the working set", lam, outside.size)
            viol = max(float(penalty.kkt_violation(G, W, lam).max()), float(np.abs(gb).max()))
            if viol > tol_abs:
                log.warning("λ=%.3e: KKT violation %.2e above tolerance %.2e", lam, viol, tol_abs)
            va, vl = _evaluate(val_src, y_val, W, b, mean, scale)
            methods.append("+".join(dict.fromkeys(used)) or "closed-form")
            Path.append_point(records, W, b, train_acc=acc, train_loss=loss, val_acc=va,
                              val_loss=vl, objective=loss + penalty.value(W, lam),
                              kkt_violation=viol, n_iter=n_iter, time=time.perf_counter() - t0)
            nz = records["nnz_per_class"][-1]
            bar.set_postfix(nnz=records["nnz"][-1], val=f"{va:.3f}")
            hist = [*hist, (lam, W, b)][-3:]
            lam_prev = lam
            if len(tol_points) == len(lams):
                break
            if max_features_per_class is not None and nz.mean() > max_features_per_class:
                stopped = "max_features_per_class"
                break
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                stopped = "max_seconds"
                break
        bar.close()
        info = {
            "solver": "torch", "penalty": penalty.name,
            # the solver's name, "-grouped" for the grouped penalty (as the glmnet backend's)
            "method": f"{spec.name}-grouped" if penalty.grouped else
            "+".join(sorted({u for ms in methods for u in ms.split("+")} - {"closed-form"}))
            or spec.name,
            "method_per_point": methods,
            "tol": tol, "tol_relative_to": tol_relative_to, "tol_abs": float(max(tol_points)),
            "tol_per_point": [float(t) for t in tol_points],
            "free_per_point": free_points, "eps": eps, "n_lambdas": n_lambdas,
            "lambda_max": lam_max, "n_samples": src.n, "n_features": src.d, "n_classes": C,
            "device": str(device), "threads": threads_chosen, "threads_newton": threads_newton,
            "threads_dropped_at": threads_dropped, "threads_raised_at": threads_raised,
            "stopped": stopped, "full_passes": tr.passes, "low_memory": bool(low_memory),
            "resident": on_device, "total_seconds": time.perf_counter() - t0,
            "copied_columns": int(sum(g.size - 1 for g in copies)),
        }
        return Path.from_records(records, lambdas=lams, alpha=alpha, grouped=grouped, mean=mean,
                                 scale=scale, classes=classes, info=info)



RESIDENT_SHARE = 0.25
"""The largest share of a CUDA device's free memory that ``fit_path`` fills with a copy of
``X`` by default (``resident``): the rest stays for the column cache, the logits and the
solvers' state."""


def _keep_resident(src: FeatureSource, device: torch.device, resident: bool | None,
                   free_bytes: int | None = None) -> bool:
    """Whether ``fit_path`` copies ``X`` to ``device`` (its ``resident`` argument): the
    caller's choice, else on CUDA when ``X`` is not there yet and fits
    :data:`RESIDENT_SHARE` of the free memory (``free_bytes``: measured when None)."""
    at = src._tensor.device if src._tensor is not None else None
    here = at is not None and at.type == device.type and device.index in (None, at.index)
    if resident is not None:
        return bool(resident) and not here
    if device.type != "cuda" or here:
        return False
    if free_bytes is None:
        free_bytes = int(torch.cuda.mem_get_info(device)[0])
    return resident_by_default(src.nbytes, device, free_bytes)


def resident_by_default(nbytes: int, device: torch.device, free_bytes: int) -> bool:
    """``fit_path``'s default ``resident`` for ``nbytes`` of features not yet on ``device``:
    on CUDA, where they fit :data:`RESIDENT_SHARE` of its ``free_bytes``."""
    return device.type == "cuda" and nbytes <= RESIDENT_SHARE * free_bytes


def _hand_over(first, second):
    """The result of a point two solvers solved in turn (``second`` from where ``first``
    stopped): ``second``'s, with the iterations of both (``SolveResult.iterations``)."""
    parts = dict(first.iterations or {"owlqn": first.n_iter})
    for name, k in (second.iterations or {"newton": second.n_iter}).items():
        parts[name] = parts.get(name, 0) + k
    second.iterations = parts
    second.n_iter += first.n_iter
    return second


def _keep_leaving(ws: np.ndarray, last: np.ndarray, share: float | None = None) -> np.ndarray:
    """The next working set: ``ws`` (sorted feature indices), with the features of the last one
    ``last`` that it leaves out where they are at most ``share`` (default
    :data:`STICKY_SHARE`) of ``last``, sorted."""
    share = STICKY_SHARE if share is None else share
    leaving = index_sets.difference(last, ws)
    if leaving.size and leaving.size <= share * last.size:
        return index_sets.union(ws, leaving)
    return ws


def _carry_memory(mem, old_ws: np.ndarray, ws: np.ndarray, C: int):
    """The last point's L-BFGS pairs, or Newton's model, for the working set ``ws``, or ``None``.

    A Newton model: :func:`~sparse_probe.solvers.newton.carry_model`. L-BFGS pairs on the
    same working set: as they are. A working set that appended features to the old
    one (the cache keeps the old order first): the pairs embedded with zeros on the new
    weights. Anything else (features dropped or reordered, or so many joined that the buffer
    would outgrow :func:`~sparse_probe.solvers.lbfgs.history_for`'s budget): ``None``, start
    afresh.
    """
    if isinstance(mem, NewtonState):
        return carry_model(mem, old_ws, ws)
    m_old, m = old_ws.size, ws.size
    if m < m_old or not np.array_equal(ws[:m_old], old_ws):
        return None
    if history_for(C * m + C) < mem.history:  # the grown buffer would exceed its budget
        return None
    if m > m_old and mem.dim is not None:
        k = np.arange(C)[:, None]
        index = np.concatenate([(k * m + np.arange(m_old)[None, :]).ravel(),
                                C * m + np.arange(C)])  # flat [W (C, m), b] positions
        mem.embed(index, C * m + C)
    return mem


def _predict(hist: list, lam: float, order: int = 2):
    """Start for ``lam``: the path extrapolated in log λ through the last solutions.

    ``hist`` holds ``(λ, W, b)`` of the last points, newest last. A polynomial of degree
    ``min(order, len(hist) - 1)`` through them (Lagrange form) is evaluated at ``log lam`` on
    the weights whose sign was the same at all those points; every other weight starts where
    the newest solution left it, and no extrapolated weight crosses zero.
    """
    _, W1, b1 = hist[-1]
    pts = hist[-(order + 1):]
    if len(pts) < 2:
        return W1, b1
    u = np.log([p[0] for p in pts])
    if np.any(np.diff(u) >= 0):
        return W1, b1
    x = np.log(lam)
    coef = [np.prod([(x - u[j]) / (u[i] - u[j]) for j in range(len(u)) if j != i])
            for i in range(len(u))]
    same = W1 != 0
    for _, Wk, _ in pts[:-1]:
        same &= np.sign(Wk) == np.sign(W1)
    Wx = sum(c * p[1] for c, p in zip(coef, pts, strict=True))
    Wp = np.where(same, Wx, W1)
    Wp = np.where(same & (np.sign(Wp) != np.sign(W1)), 0.0, Wp)  # never cross zero
    return Wp, sum(c * p[2] for c, p in zip(coef, pts, strict=True))


def _check_finite(src: FeatureSource) -> None:
    for s, block in src.chunks():
        xb = block.detach().cpu().numpy() if isinstance(block, torch.Tensor) else block
        bad = ~np.isfinite(xb)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{src.name}: non-finite value (NaN or inf) at row {s + r}, column {c}")
