"""Shared pieces of the path fitters: standardization statistics and the λ grid."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from sparse_probe.data import FeatureSource, block_tensor

__all__ = ["class_sums", "column_stats", "column_sums", "lambda_path"]

log = logging.getLogger(__name__)


def column_stats(src: FeatureSource, device: str | torch.device = "cpu",
                 poll: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column in float64 (one chunked pass on ``device``).

    Raises ``ValueError`` naming the first column/row holding NaN or inf.
    Zero-variance columns get scale 1 (their standardized value is 0 and never enters the model).
    The rows are converted to float64 by torch where the sums run (:func:`block_tensor`).
    ``poll``, when given, is called after each row block (a fit's thread choice:
    :meth:`~sparse_probe.solvers.threads.StartThreads.poll`). :func:`column_sums` is the same
    statistics and the class sums in one read of the rows on CPU.
    """
    device = torch.device(device)
    total = torch.zeros(src.d, dtype=torch.float64, device=device)
    sq = torch.zeros(src.d, dtype=torch.float64, device=device)
    # shifted sums (shift = first row) keep the variance accurate for large means
    shift = None
    # float64 temporaries of a few MiB per row block on CPU: fresh chunk-sized ones cost a
    # pass of page faults each (40 ms of a 10,000 x 256 fit's 0.5 s, an ad hoc timing)
    rows = _stats_rows(src.d) if device.type == "cpu" else None
    for s, chunk in src.chunks():
        for r0, block in _row_blocks(chunk, rows):
            xb = block_tensor(block, device, torch.float64)
            bad = ~torch.isfinite(xb)
            if bool(bad.any()):
                r, c = (int(v) for v in torch.nonzero(bad)[0])
                raise _non_finite(src.name, s + r0 + r, c)
            if shift is None:
                shift = xb[0].clone()
            xb = xb - shift  # a new tensor: xb may be the caller's own float64 array
            total += xb.sum(dim=0)
            sq += (xb * xb).sum(dim=0)
            if poll is not None:
                poll()
    return _mean_std(total.cpu().numpy(), sq.cpu().numpy(), shift.cpu().numpy(), src.n)


def _stats_rows(d: int) -> int:
    """Rows of one CPU row block of the statistics' pass: :data:`_STATS_BYTES` of float64
    rows of ``d`` entries, at least 64."""
    return max(64, _STATS_BYTES // (8 * max(d, 1)))


def _non_finite(name: str, row: int, col: int) -> ValueError:
    """The error for a NaN or infinity at ``(row, col)`` of the features ``name``."""
    return ValueError(f"{name}: non-finite value (NaN or inf) at row {row}, column {col}")


def _mean_std(total: np.ndarray, sq: np.ndarray, shift: np.ndarray,
              n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (d,) from the sums of ``x - shift`` and of its squares
    over ``n`` rows; a spread under 1e-12 of the column's magnitude (a constant column) is 1."""
    mean_c = total / n
    var = np.maximum(sq / n - mean_c**2, 0.0)
    std = np.sqrt(var)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean_c + shift))] = 1.0
    return mean_c + shift, std


def class_sums(src: FeatureSource, y: np.ndarray, C: int,
               device: str | torch.device = "cpu", onehot: bool | None = None) -> np.ndarray:
    """Per-class sums of the raw rows, shape (C, d), in float64, on ``device``.

    On CPU row by row into the class's sum (``index_add_``, O(n·d)); on a GPU, whose
    ``index_add_`` adds through atomics in no fixed order, as the one-hot matrix product
    (fixed order, so λ_max is the same in every run). ``onehot`` chooses the way explicitly.
    """
    device = torch.device(device)
    if onehot is None:
        onehot = device.type != "cpu"
    S = torch.zeros((C, src.d), dtype=torch.float64, device=device)
    yt = torch.as_tensor(y, device=device)
    for s, block in src.chunks():
        xb = block_tensor(block, device, torch.float64)
        yb = yt[s : s + xb.shape[0]]
        if not onehot:
            S.index_add_(0, yb, xb)
        else:
            Y = torch.zeros((xb.shape[0], C), dtype=torch.float64, device=device)
            Y[torch.arange(xb.shape[0], device=device), yb] = 1.0
            S.addmm_(Y.T, xb)
    return S.cpu().numpy()


def column_sums(src: FeatureSource, y: np.ndarray, C: int, device: str | torch.device = "cpu",
                poll: Callable[[], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`column_stats` and :func:`class_sums` of ``src`` (n, d) with labels ``y`` (n,)
    in ``[0, C)``: mean (d,), standard deviation (d,) and per-class sums of the raw rows
    (C, d), float64.

    On CPU the compiled kernel (``_column_sums.sums``, checked once per process against the
    torch route) reads each row block of at most :data:`_STATS_BYTES` once and adds it to all
    three, in row order; the torch route makes a float64 copy, a shifted copy and a squared
    copy of each block and a second pass for the class sums (16 and 10 ms of a fresh process's
    10,000 x 256 x 2 fit, an ad hoc timing). Elsewhere, or where the kernel is not built, the
    two torch passes. The same errors as :func:`column_stats`; ``poll`` is called after each
    row block.
    """
    device = torch.device(device)
    fn = _kernel() if device.type == "cpu" else None
    if fn is None:
        mean, std = column_stats(src, device, poll)
        return mean, std, class_sums(src, y, C, device)
    d = src.d
    total, sq, S = np.zeros(d), np.zeros(d), np.zeros((C, d))
    labels = np.ascontiguousarray(y, dtype=np.int64)
    shift = None
    rows = _stats_rows(d)
    for s, chunk in src.chunks():
        for r0, block in _row_blocks(chunk, rows):
            xb = _host_rows(block)
            if shift is None:
                shift = xb[0].astype(np.float64)
            start = s + r0
            bad = fn(xb, d, shift, total, sq, labels[start : start + xb.shape[0]], S, C)
            if bad >= 0:
                raise _non_finite(src.name, start + bad // d, bad % d)
            if poll is not None:
                poll()
    return (*_mean_std(total, sq, shift, src.n), S)


def _host_rows(block) -> np.ndarray:
    """A CPU row block as a C-contiguous float32 or float64 numpy array (its own memory or a
    view; a float16 file's rows converted to float32, exactly)."""
    if isinstance(block, torch.Tensor):
        if block.dtype not in (torch.float32, torch.float64):
            block = block.to(torch.float32)
        return block.contiguous().numpy()
    if block.dtype not in (np.float32, np.float64):
        return np.ascontiguousarray(block, dtype=np.float32)
    return np.ascontiguousarray(block)


_STATE: dict = {}


def _kernel():
    """The compiled ``sums`` once its self-check passed (:func:`_agrees`), else None."""
    from sparse_probe.solvers.compiled import checked_kernel

    return checked_kernel(_STATE, "sums", "sparse_probe.solvers._column_sums", "sums",
                          _agrees, log, "the compiled _column_sums.sums", "torch's sums",
                          "torch's sums")


def _agrees(fn) -> bool:
    """Whether ``fn`` gives the torch route's statistics and class sums (to 1e-12 relative)
    on float32 and float64 blocks with a large mean, a constant column and a one-row block,
    and finds the first non-finite entry of a block."""
    from sparse_probe.solvers.compiled import CheckDraws

    g = CheckDraws(0)
    X = g.standard_normal((37, 6)) * np.array([1.0, 1e-3, 50.0, 0.0, 1.0, 2.0])
    X[:, 4] += 1e4
    X[:, 3] = 7.0
    y = (np.arange(37) * 5) % 4
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        src = FeatureSource(Xd, chunk_rows=12, name="X")
        ref = (*column_stats(src), class_sums(src, y, 4))
        total, sq, S = np.zeros(6), np.zeros(6), np.zeros((4, 6))
        shift = Xd[0].astype(np.float64)
        for s in range(0, 37, 12):
            if fn(Xd[s : s + 12], 6, shift, total, sq, y[s : s + 12].astype(np.int64), S, 4) != -1:
                return False
        got = (*_mean_std(total, sq, shift, 37), S)
        if not all(np.allclose(a, b, rtol=1e-12, atol=0.0) for a, b in zip(got, ref, strict=True)):
            return False
        bad = Xd[:12].copy()
        bad[7, 2] = np.nan
        if fn(bad, 6, shift, np.zeros(6), np.zeros(6), None, None, 0) != 7 * 6 + 2:
            return False
    return True


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
