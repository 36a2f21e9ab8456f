"""The proximal Newton model solved in data space: coordinate descent without a Hessian.

:func:`~sparse_probe.solvers.newton.newton` minimizes, per step, the elastic net on the
quadratic model of the mean cross-entropy,

    q(D) = aᵀD + 1/(2n) Σ_i u_iᵀ (diag(p_i) − p_i p_iᵀ) u_i,   u_i = D x̃_i,

over its free weights and the biases. The Gram route forms that model's Hessian (``n N²/2``
multiply-adds for ``N`` free weights) and runs coordinate descent on it, reading ``N`` entries
per coordinate update. Keeping instead ``U = (u_i)`` (C, n) and ``s_i = p_iᵀu_i`` up to date,
a coordinate's gradient is ``a_kj + (1/n) Σ_i x_ij p_ik (u_ik − s_i)`` and its curvature
``(1/n) Σ_i x_ij² p_ik (1 − p_ik)``: an exact 1-D minimization costs two passes over the n
examples (glmnet's "naive" updates, here on the coupled multinomial model rather than
glmnet's per-class one). Where n is small against N, as on n ≪ d working sets, no Hessian is
formed at all and a sweep reads ``~2 n N`` entries from arrays that stay in cache instead of
``N²`` from a model that does not (:func:`data_pays`).

The sweeps follow glmnet's active-set cycling (Friedman, Hastie & Tibshirani, "Regularization
paths for generalized linear models via coordinate descent", J. Stat. Softw. 2010, §2.6): one
pass over every free coordinate, then passes over the nonzero weights and the biases until
they settle, then a pass over all again, until a whole pass meets the tolerance, or
:data:`FLAT_PASSES` full passes in a row do no better than the best (the float64 sums' floor).
The last class's bias is held where it is: the model is flat along a shift of all biases (up
to the float32 probabilities' rounding), a direction coordinate descent would crawl along.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from sparse_probe.solvers.compiled import CheckDraws, checked_kernel

__all__ = [
    "DATA_SWEEPS",
    "FLAT_PASSES",
    "DataWork",
    "compiled",
    "data_pays",
    "data_qp",
]

log = logging.getLogger(__name__)

DATA_SWEEPS = 200
"""Passes (over the whole free set or its active part) one model solve makes at most: the
model solve is inexact by design (the Newton step's line search and the next step correct it)."""


class DataWork:
    """The work of data-space model solves: ``entries`` counts the examples read, ``n`` per
    coordinate visited (each visit reads the feature column, the class's probabilities and
    ``U`` row, and ``s``, and writes the last two where the coordinate moves)."""

    def __init__(self) -> None:
        self.entries = 0.0


def data_pays(n: int, n_free: int) -> bool:
    """Whether a Newton step's model is solved in data space (:func:`data_qp`) rather than on
    its Gram matrix: where the free coordinates outnumber the examples, ``N > n``.

    Parameters
    ----------
    n : int
        Examples.
    n_free : int
        Free weights of the model.
    """
    return n_free > n


FLAT_PASSES = 2
"""Full passes in a row no better than the best one, after which a solve stops (its sums'
rounding, not the model, decides there)."""

_STATE: dict = {}


def _sweeps_numpy(XT, PT, UT, s, cls, col, a, h, l1, l2, w, order, n, count) -> float:
    """The reference of ``_data_cd.sweeps`` (its module doc): ``count`` passes over
    ``order``, updating ``w``, ``UT`` and ``s`` in place; the largest subgradient met in the
    last pass."""
    worst = 0.0
    for _ in range(count):
        worst = 0.0
        for c in order:
            k, j = int(cls[c]), int(col[c])
            p, u = PT[k].astype(np.float64), UT[k]
            x = XT[j].astype(np.float64) if j >= 0 else np.ones(n)
            g = a[c] + float(np.dot(x * p, u - s)) / n
            wc = w[c]
            gr = g + l2[c] * wc
            viol = abs(gr + l1[c]) if wc > 0 else abs(gr - l1[c]) if wc < 0 else \
                max(abs(gr) - l1[c], 0.0)
            worst = max(worst, viol) if viol == viol else viol
            den = h[c] + l2[c]
            if not den > 0:
                continue
            v = h[c] * wc - g
            e = abs(v) - l1[c]
            nw = np.copysign(e, v) / den if e > 0 else 0.0
            if nw != wc:
                dx = (nw - wc) * x
                w[c] = nw
                u += dx
                s += dx * p
    return worst


def _agrees(fn) -> bool:
    """Whether ``fn`` gives :func:`_sweeps_numpy`'s weights, ``U``, ``s`` and violation after
    three passes over a small model's weights (zero and not) and biases."""
    rs = CheckDraws(0)
    n, C = 23, 3
    XT = rs.standard_normal((5, n)).astype(np.float32)
    PT = rs.simplex(n, C).T.astype(np.float32).copy()
    cls = np.array([0, 0, 1, 2, 2, 0, 1], dtype=np.int64)
    col = np.array([0, 3, 1, 2, 4, -1, -1], dtype=np.int64)
    a, h = rs.standard_normal(7) * 0.1, rs.uniform(0.1, 0.3, 7)
    l1 = np.where(col >= 0, 0.02, 0.0)
    out = []
    for run in (fn, _sweeps_numpy):
        UT, s = np.zeros((C, n)), np.zeros(n)
        w = np.array([0.0, 0.3, -0.2, 0.0, 0.1, 0.0, 0.0])
        v = run(XT, PT, UT, s, cls, col, a, h, l1, l1 / 20, w, np.arange(7, dtype=np.int64), n, 3)
        out.append(np.concatenate([[v], w, UT.ravel(), s]))
    return bool(np.allclose(out[0], out[1], rtol=1e-9, atol=1e-14))


def _kernel():
    """The compiled sweeps once checked, else :func:`_sweeps_numpy`."""
    fn = checked_kernel(_STATE, "sweeps", "sparse_probe.solvers._data_cd", "sweeps", _agrees,
                        log, "the compiled _data_cd.sweeps", "its numpy reference",
                        "the numpy sweeps")
    return fn if fn is not None else _sweeps_numpy


def compiled() -> bool:
    """Whether the compiled sweeps are in use (the numpy ones are a reference, far slower:
    :func:`~sparse_probe.solvers.newton.newton` solves its models on the Gram route then)."""
    return _kernel() is not _sweeps_numpy


def data_qp(XwT: torch.Tensor, P: torch.Tensor, cls: torch.Tensor, col: torch.Tensor,
            hw: np.ndarray, gw: np.ndarray, gb: np.ndarray, w0: np.ndarray, l1: float, l2: float,
            *, tol: float, max_sweeps: int = DATA_SWEEPS,
            work: DataWork | None = None,
            stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Minimize the Newton model with the elastic net on the weights (module doc).

    Parameters
    ----------
    XwT : torch.Tensor of shape (m, n), float32
        Working-set columns, one row per feature (CPU).
    P : torch.Tensor of shape (n, C), float32
        Class probabilities at the model's point.
    cls, col : torch.Tensor of shape (Nw,), int64
        Class and column of each free weight.
    hw : ndarray of shape (Nw,), float64
        Their curvatures ``(1/n) Σ_i x_ij² p_ik (1 − p_ik)``
        (:func:`~sparse_probe.solvers.newton.hessian_diag`).
    gw : ndarray of shape (Nw,), float64
        The mean cross-entropy's gradient at the free weights.
    gb : ndarray of shape (C,), float64
        Its gradient at the biases.
    w0 : ndarray of shape (Nw,), float64
        The weights at the model's point.
    l1, l2 : float
        The elastic net's weights on ``w0 + D`` (not on the biases).
    tol : float
        Stop once a pass over every coordinate meets no subgradient entry above this.
    max_sweeps : int
        Passes at most (the iterate reached is returned: every pass lowers the model).
    work : DataWork, optional
        Counts the examples read into it.
    stop : callable, optional
        Asked after each pass: true stops there (the caller's work budget is spent: a
        Newton point's ``max_cost``; on a held-out 40-class path a solve ran on for seconds
        past it, ``benchmarks/results/solver-prices-zen5-trials-cpu-2026-12-06.txt``).

    Returns
    -------
    u : ndarray of shape (Nw,)
        The weights at the model's minimizer, ``w0 + Dw``.
    Db : ndarray of shape (C,)
        The biases' step.
    sweeps : int
        Passes made.
    violation : float
        The largest subgradient entry met in the last pass over every coordinate.
    """
    n, C = P.shape
    Nw = int(cls.numel())
    N = Nw + C
    XT = XwT.detach().cpu().numpy()
    PT = np.ascontiguousarray(P.detach().cpu().numpy().T)
    cls_all = np.concatenate([cls.cpu().numpy(), np.arange(C)]).astype(np.int64)
    col_all = np.concatenate([col.cpu().numpy(), np.full(C, -1)]).astype(np.int64)
    a = np.concatenate([gw, gb]).astype(np.float64)
    P64 = PT.astype(np.float64)
    h = np.concatenate([hw, (P64 * (1.0 - P64)).sum(1) / n])
    l1v = np.concatenate([np.full(Nw, float(l1)), np.zeros(C)])
    l2v = np.concatenate([np.full(Nw, float(l2)), np.zeros(C)])
    w = np.concatenate([w0, np.zeros(C)]).astype(np.float64)
    UT, s = np.zeros((C, n)), np.zeros(n)
    # the last class's bias stays put: the model is flat along a shift of all biases (up to
    # the float32 probabilities' rounding, a ~1e-8 curvature coordinate descent would crawl
    # along), so the other biases' steps are taken relative to it
    everything = np.arange(N - 1, dtype=np.int64)
    fn = _kernel()
    work = DataWork() if work is None else work
    made, viol, best, flat, stopped = 0, float("inf"), float("inf"), 0, False

    def run(order: np.ndarray) -> float:
        nonlocal made, stopped
        v = fn(XT, PT, UT, s, cls_all, col_all, a, h, l1v, l2v, w, order, n, 1)
        made += 1
        work.entries += float(n) * order.size
        stopped = stop is not None and stop()
        return v

    while made < max_sweeps and not stopped:
        viol = run(everything)
        # two full passes in a row no better than the best: the sums' rounding rules, not
        # the model (where the active set settled, a full pass can still meet more)
        flat = 0 if viol < best else flat + 1
        best = min(best, viol)
        if viol <= tol or made >= max_sweeps or flat >= FLAT_PASSES or stopped:
            break
        active = np.flatnonzero(((w != 0) | (col_all < 0))[: N - 1]).astype(np.int64)
        inner = float("inf")
        while made < max_sweeps and not stopped:
            v = run(active)
            if v <= tol or not v < inner:
                break
            inner = v
    return w[:Nw], w[Nw:], made, viol
