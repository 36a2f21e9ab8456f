"""Proximal Newton with the exact multinomial Hessian on the free coordinates.

Each iteration builds the quadratic model of the mean cross-entropy at the current point,

    CE(x + D) ≈ CE(x) + gᵀD + ½ Dᵀ H D,   H = (1/n) Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ

(``x̃_i`` the working-set features of example i with a 1 for the bias, ``p_i`` its class
probabilities), restricted to the *free* coordinates: the nonzero weights, the zero weights
whose gradient is within ``shrink`` of the L1 threshold (at most as many as there are
nonzero ones, or :data:`ENTER_MIN`, per step, the largest first), and the biases (the rest stay at
zero; the outer KKT test brings them in when they turn out to violate it). The elastic-net
problem on that model is solved by coordinate descent on its Gram matrix, or exact face solves
where the model is small or coordinate descent crawls
(:func:`~sparse_probe.solvers.gram_cd.enet_qp`, no pass over the n examples), after the
unpenalized biases are eliminated in closed form (Schur complement); a backtracking line search
on the true objective (float64 logits moved along the step's float32 product, recomputed
exactly before the solver declares convergence) accepts the step; after a step it had to cut,
the next model is damped (Levenberg-Marquardt, :func:`damping`: on real deep features the
undamped steps ran far along nearly flat directions). As in
OWL-QN, each feature's weights are then shifted to the penalty-optimal center
(:mod:`~sparse_probe.solvers.centering`): the loss is invariant to that shift, and the model
is singular along it (``(diag(p) − ppᵀ) 1 = 0``), regularized only by the tiny ridge.

The biases' own block is singular along ``1`` (the softmax's invariance to a constant per
row); their step is taken on the complement of ``1`` and the biases re-centered after it.

Unlike glmnet's per-class (block-diagonal) model, the full Hessian couples the classes: on the
collinear benchmark geometry a numpy prototype needed 2 Newton iterations per λ where the
block-diagonal model needed 9–100 and OWL-QN 16–160. The price is the Hessian itself, about
``n N²/2`` multiply-adds for ``N`` free weights (float32 products over row blocks, summed in
float64). So a model is reused within a point while a step on it still contracts the KKT
violation enough that the remaining steps cost less than a fresh Hessian; weights that join a
model get their Hessian rows at the probabilities the model was computed at
(:func:`hessian_cross`, ``n k m C`` for k of them), so the model stays one positive
semidefinite Hessian with its couplings. The model of a point's fresh Hessian, or one whose
last step still cut the violation fivefold (:data:`CARRY_RATE`), is also handed to the next
path point (``SolveResult.memory``; :func:`carry_model` re-labels it for a working set that
appended features, no copy): where a fresh Hessian would cost several steps on it
(:func:`~sparse_probe.solvers.choice.carry_pays`), that point's first step is taken on it as
on any reused model, with the new weights' rows added, and the same rule then decides whether
a fresh Hessian pays (a model that sees no descent or misleads the line search is replaced at
once). On the collinear bench path this took the fresh Hessians from 25 to 9 and the path's
time down 1.32-1.53× side by side, where an earlier solver, without the contraction rule and
the coupled rows of joining weights, had found a carried model to contract the violation by
a small factor only (``benchmarks/results/newton-carry-cpu-2026-12-04.txt``).

Where the model has more free weights than there are examples (n ≪ d working sets), no Hessian
is formed: the model is solved by coordinate descent over the examples
(:mod:`~sparse_probe.solvers.data_cd`, two passes over n per coordinate against ``n N²/2`` for
the Hessian; ``benchmarks/results/data-cd-cpu-2026-12-06.txt``), and such a model has no
(N, N) matrix to outgrow ``max_free``. A solve that does not reach its tolerance within what a
fresh Hessian would cost (:func:`~sparse_probe.solvers.choice.data_sweep_cap`) is finished on
the Gram route from where it stopped (or handed to OWL-QN where that model would be over
``max_free``), and the point stays off the data route. The Gram route still
pays only where the free set is small against ``n·m·C`` times OWL-QN's iteration count:
:mod:`~sparse_probe.solvers.choice` decides per path point. Above
``max_free`` free coordinates, on streamed data (which offers no Hessian), and once its
counted work passes the caller's ``max_cost``, it hands the problem to
:func:`~sparse_probe.solvers.owlqn.owlqn` from where it stands.

References: Lee, Sun & Saunders, "Proximal Newton-type methods for minimizing composite
functions", SIAM J. Optim. 2014; Yuan, Ho & Lin, "An improved GLMNET for L1-regularized
logistic regression", JMLR 2012 (shrinking of the free set).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers.base import SolveResult
from sparse_probe.solvers.centering import center_shift
from sparse_probe.solvers.choice import carry_pays, data_sweep_cap, newton_observed_cost
from sparse_probe.solvers.data_cd import DataWork, data_pays, data_qp
from sparse_probe.solvers.data_cd import compiled as data_cd_compiled
from sparse_probe.solvers.gram_cd import Faces, QPWork, enet_qp
from sparse_probe.solvers.lbfgs import LBFGSMemory
from sparse_probe.solvers.owlqn import (
    ARMIJO,
    F32_NEAR,
    F_NOISE,
    f32_suspect,
    owlqn,
    precision_retry,
)

__all__ = ["CARRY_RATE", "DAMP_FACTOR", "DAMP_START", "DEFAULT_INNER_STALE", "DEFAULT_MAX_FREE",
           "DEFAULT_SHRINK", "DIAG_ALL", "ENTER_MIN", "NewtonState", "admit", "carry_model",
           "damping", "entering_cap", "hessian", "hessian_blocks", "hessian_cross",
           "hessian_diag", "newton"]

NOISE_CUT = 0.5
"""A line-search trial whose objective change is within rounding
(:data:`~sparse_probe.solvers.owlqn.F_NOISE`) is accepted, on float64 products, where it
cuts the KKT violation to this share."""

DEFAULT_MAX_FREE = 4096
"""Free coordinates (weights plus biases) above which the solver hands over to OWL-QN: the
(N, N) float64 model takes 128 MiB there and its Hessian ``n N²`` multiply-adds."""

log = logging.getLogger(__name__)

DEFAULT_INNER_STALE = 0.1
"""A step on a reused (stale) model solves it to this share of the current KKT violation,
a step on a fresh Hessian to ``inner`` (0.02; both a tenth of the solver's tolerance at
least): the forcing terms of an inexact Newton method. A stale model is only an
approximation of the Hessian where the step starts, and on collinear models coordinate
descent on it crawled (up to 182 sweeps per solve in an ad hoc instrumented run) for
precision the step could not use.
With 0.1 (and :data:`~sparse_probe.solvers.gram_cd.SWEEP_BUDGET_CAP`) the model solves' sweep
work on the held-out collinear 2528 x 363 x 10 path fell from 13.5 to 4.3 G entries for 12%
more Hessian work, 1.17-1.25x its wall time; on the bench's collinear and n << d paths by
1.10-1.16x, their wall times within the machine's noise (``benchmarks/
measure_model_solve.py``, results/model-solve-cpu-2026-12-03.txt)."""

CARRY_RATE = 0.2
"""A point's model is handed to the next point where a fresh Hessian was computed at the
point, or where the point's last step on it still cut the KKT violation at least this much
(fivefold). Handed on regardless of how it did, a model aged over many points and its steps
weakened (13 per point at the collinear bench path's end instead of 3, and the choice sent the
last point to OWL-QN for 153 iterations). Handed on from its own point only, the collinear
bench path took 14 fresh Hessians, its carried points contracting the violation ~10× per
step; with this rule 9, and 1.14× faster side by side, three held-out collinear draws
1.02-1.19×. At one thread the path took 3.94-4.18 s handed on from its own point only, and
with 0.1, 0.2, 0.3 here 3.38-3.53, 3.31-3.38, 3.21-3.47 s
(``benchmarks/results/newton-carry-cpu-2026-12-04.txt``)."""

DAMP_START = 1e-2
"""The damping a Newton model gets when a line search has just cut its step (``t < 1``), as a
share of the model's mean diagonal (:func:`damping`)."""
DAMP_FACTOR = 4.0
"""The damping grows this many times after a cut step and shrinks as many after a full one
(:func:`damping`)."""

ENTER_MIN = 256
"""At most ``max(nonzeros, ENTER_MIN)`` zero weights join the model at a step (:func:`admit`),
those with the largest gradients first; the rest join at later steps if they still violate the
KKT conditions then. Where n ≪ d most of the zero weights over the threshold at a point's
start stay zero at its solution (500 × 5,000 × 10 with 20 λ: 4,699 expected free coordinates
for 1,667 nonzeros at the last point), and admitting them all made the model outgrow
``max_free``: the default left Newton for OWL-QN there, 4.6 s against 1.4 s with this rule;
a 300 × 6,000 × 20 path 25.0 s against 1.4 s (``benchmarks/results/
newton-admit-cpu-2026-12-04.txt``; 1,024 instead of 256: 0.90-1.33× of it on five such
paths)."""

DEFAULT_SHRINK = 0.97
"""A zero weight joins the Newton model when its gradient exceeds this share of λα (on the
collinear path 0.97 took 9.3 s, 0.9 11.7 s, 1.0 13.5 s: more coordinates make a costlier
Hessian, fewer make more KKT rounds; one ad-hoc contended run each)."""

GATHER_COPY = 16.0
""":func:`hessian_cross` gathers its ``Na`` columns' data (a copy of ``n Na`` floats, each
counted as this many multiply-adds) when that and the ``n k Na`` multiply-adds against them
cost less than the ``n k m C`` against all the working set's columns (one product of every
class's rows stacked). Over the joining rows of nine default paths, recorded and timed again
(``benchmarks/measure_cross_rows.py``, ``results/cross-rows-cpu-2026-12-05.txt``), 64 took
0.76-1.0x the time of 16 and never gathering up to 2.9x (n << d: a few new weights against
all 3,000 columns of 15 classes); but whole paths with 64, side by side with 16, took
0.92-1.02x (five paths, ``compare_revisions.py``): the rows are a few percent of a path, and
the changed rounding moved later points' OWL-QN iterations (a 40-class draw, 1,830 against
1,696). 16 stays."""

_ROW_FLOATS = 1 << 23  # float32 entries of one row block of the gathered columns (32 MiB)


def _rows(Xw: torch.Tensor, XwT: torch.Tensor | None, idx: torch.Tensor, s: int, e: int,
          buf: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Columns ``idx`` of the row block ``Xw[s:e]`` in the (coordinate, example) layout, shape
    (k, e - s), contiguous; returns them and the buffer for the next row block's gather.

    From the column-major copy ``XwT`` where there is one, gathered into ``buf`` (grown where it
    is too small): a row block of the Hessians' columns is up to 32 MiB (:data:`_ROW_FLOATS`),
    and gathered by advanced indexing into a fresh array it took 13.9 ms at 1,500 × 5,000, by
    ``index_select`` into one reused 1.9 ms (the fresh array's page faults, and the indexing's
    slower copy; an ad hoc timing, one thread). Else a transposed copy of ``Xw``'s columns."""
    if XwT is None:
        return Xw[s:e][:, idx].T.contiguous(), buf
    k, w = idx.numel(), e - s
    if buf is None or buf.numel() < k * w:
        buf = torch.empty(k * w, dtype=XwT.dtype, device=XwT.device)
    return torch.index_select(XwT[:, s:e], 0, idx, out=buf[: k * w].view(k, w)), buf


def hessian_blocks(Xw: torch.Tensor, P: torch.Tensor, cls: torch.Tensor, col: torch.Tensor,
                   XwT: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean cross-entropy's Hessian on the chosen weights and all biases, by blocks.

    Parameters
    ----------
    Xw : torch.Tensor of shape (n, m), float32
        Working-set columns.
    P : torch.Tensor of shape (n, C), float32
        Class probabilities.
    cls, col : torch.Tensor of shape (Nw,), int64
        Class and column of each chosen weight, sorted by class.
    XwT : torch.Tensor of shape (m, n), float32, optional
        A column-major copy of ``Xw`` (the gathers then read contiguous rows).

    Returns
    -------
    Hww : ndarray of shape (Nw, Nw), float64
        Weights against weights, in the given order.
    Hwb : ndarray of shape (Nw, C), float64
        Weights against biases.
    Hbb : ndarray of shape (C, C), float64
        Biases against biases, ``(1/n) Σ_i diag(p_i) − p_i p_iᵀ``.

    Notes
    -----
    Float32 products over row blocks, accumulated in float64: one class's rows at a time
    against the classes after it (the blocks below the diagonal are copies: half the
    products, about ``n Nw²/2`` multiply-adds in all), each class's diagonal block and its
    own bias entries from the weights ``p(1-p)`` directly (a difference of two products
    would cancel where ``p`` is near 1; the float32 row sums of ``x p(1-p)`` replaced
    float64 sums of ``x p``, about 8% of the Hessian's time at ``Nw`` = 1,500, n = 10,000).
    """
    n, C = P.shape
    dev = P.device
    cls, col = cls.to(dev), col.to(dev)
    Nw = cls.numel()
    bounds = np.concatenate([[0], np.cumsum(torch.bincount(cls, minlength=C).tolist())])
    bounds = bounds.astype(int).tolist()
    PT = P.T.contiguous()  # (C, n)
    WdT = PT * (1.0 - PT)  # p(1-p) per class
    Hww = torch.zeros((Nw, Nw), dtype=torch.float64, device=dev)
    Hwb = torch.zeros((Nw, C), dtype=torch.float64, device=dev)
    own = torch.zeros(Nw, dtype=torch.float64, device=dev)  # Σ p_k(1-p_k) x, own class
    step = max(256, _ROW_FLOATS // max(Nw, 1))
    VT = UwT = buf = None
    widest = int(np.diff(bounds).max()) if Nw else 0
    for s in range(0, n, step):
        e = min(n, s + step)
        # transposed (coordinate, example) layout: every block below is contiguous rows
        UT, buf = _rows(Xw, XwT, col, s, e, buf)
        if VT is None or VT.shape != UT.shape:
            VT = torch.empty_like(UT)
            UwT = torch.empty((widest, e - s), dtype=UT.dtype, device=dev)
        for k in range(C):
            torch.mul(UT[bounds[k] : bounds[k + 1]], PT[k, s:e], out=VT[bounds[k] : bounds[k + 1]])
        Hwb -= (VT @ PT[:, s:e].T).to(torch.float64)  # -Σ p_k p_l x (own class: replaced)
        for k in range(C):
            a, b = bounds[k], bounds[k + 1]
            if a == b:
                continue
            if b < Nw:  # -Σ p_k p_l x xᵀ against the later classes
                Hww[a:b, b:] -= (VT[a:b] @ VT[b:].T).to(torch.float64)
            Uw = torch.mul(UT[a:b], WdT[k, s:e], out=UwT[: b - a])
            Hww[a:b, a:b] += (UT[a:b] @ Uw.T).to(torch.float64)
            own[a:b] += Uw.sum(1)
    if Nw:
        Hwb[torch.arange(Nw, device=dev), cls] = own
    for k in range(C):  # mirror the blocks above the diagonal; symmetric diagonal blocks
        a, b = bounds[k], bounds[k + 1]
        Hww[b:, a:b] = Hww[a:b, b:].T
        Hww[a:b, a:b] = 0.5 * (Hww[a:b, a:b] + Hww[a:b, a:b].T)
    P64 = P.to(torch.float64)
    PP = P64.T @ P64  # a GEMM: not bit-symmetric on every BLAS (AMD's here, by an ulp)
    Hbb = torch.diag(P64.sum(0)) - 0.5 * (PP + PP.T)
    # in place: a fresh (Nw, Nw) float64 array costs a pass of page faults (92 MiB at 3,400)
    return Hww.div_(n).cpu().numpy(), (Hwb / n).cpu().numpy(), (Hbb / n).cpu().numpy()


def hessian(Xw: torch.Tensor, P: torch.Tensor, cls: torch.Tensor, col: torch.Tensor,
            XwT: torch.Tensor | None = None) -> np.ndarray:
    """:func:`hessian_blocks` assembled, shape (Nw + C, Nw + C): the weights in the given
    order, then the C biases."""
    Hww, Hwb, Hbb = hessian_blocks(Xw, P, cls, col, XwT)
    return np.block([[Hww, Hwb], [Hwb.T, Hbb]])


DIAG_ALL = 8.0
""":func:`hessian_diag` computes every weight's entry by one product where the weights
chosen are at least ``1/DIAG_ALL`` of the working set's ``m C`` (ad hoc timings, each the
median of 5: 2,899 x 198 x 40 with 7,800 chosen 150 ms by gathering, 2.1 ms by the product;
10,000 x 256 x 10 with 1,500 99 against 12.7 ms; 20,000 x 32 x 1,000 with 8,000 1.2 s against
0.14; but 500 x 5,000 x 10 with 500 chosen, 1% of the m C, 0.2 ms against 2.0)."""


def hessian_diag(Xw: torch.Tensor, P: torch.Tensor, cls: torch.Tensor, col: torch.Tensor,
                 XwT: torch.Tensor | None = None) -> np.ndarray:
    """The diagonal of :func:`hessian_blocks`' ``Hww``, ``(1/n) Σ_i x_ij² p_ik(1-p_ik)`` for
    each chosen ``(k, j)``, shape (Nw,) float64.

    Where the chosen weights are at least ``1/DIAG_ALL`` of all ``m C``, every ``(k, j)`` at
    once as one product per row block, ``(x²)ᵀ (p(1-p))`` (m, C), in float64 (the squares
    exact), the chosen entries picked from it: ``n m C`` multiply-adds, where the gather of the
    chosen columns' rows, an ``(Nw, n)`` array per operand, costs a pass of page faults and
    memory (:data:`DIAG_ALL`); else from that gather, float32 products summed in float64.
    """
    if cls.numel() == 0:
        return np.zeros(0)
    n, C = P.shape
    m = Xw.shape[1]
    dev = P.device
    cls, col = cls.to(dev), col.to(dev)
    if DIAG_ALL * cls.numel() < m * C:
        X2 = (XwT[col] if XwT is not None else Xw[:, col].T) ** 2  # (Nw, n)
        Wd = (P * (1.0 - P)).T[cls]  # (Nw, n)
        return ((X2 * Wd).sum(1, dtype=torch.float64) / n).cpu().numpy()
    P64 = P.to(torch.float64)
    Wd = P64 * (1.0 - P64)
    D = torch.zeros((m, C), dtype=torch.float64, device=dev)
    step = max(256, _ROW_FLOATS // (2 * m))  # float64 squares: 32 MiB a block
    for s in range(0, n, step):
        e = min(n, s + step)
        Xb = (XwT[:, s:e] if XwT is not None else Xw[s:e].T).to(torch.float64)
        D.addmm_(Xb * Xb, Wd[s:e])
    return (D[col, cls] / n).cpu().numpy()


def hessian_cross(Xw: torch.Tensor, P: torch.Tensor, cls_n: torch.Tensor, col_n: torch.Tensor,
                  cls_a: torch.Tensor, col_a: torch.Tensor,
                  XwT: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :func:`hessian_blocks` for a few weights: against a set of weights, and against
    the biases, at the probabilities ``P``.

    Parameters
    ----------
    Xw, P, XwT
        As :func:`hessian_blocks`.
    cls_n, col_n : torch.Tensor of shape (k,), int64
        Class and column of each weight whose rows are wanted (sorted by class).
    cls_a, col_a : torch.Tensor of shape (Na,), int64
        Class and column of each weight of the columns (sorted by class).

    Returns
    -------
    Hna : ndarray of shape (k, Na), float64
    Hnb : ndarray of shape (k, C), float64

    Notes
    -----
    About ``n k Na`` multiply-adds where that saves more than the gather of the columns' data
    costs (:data:`GATHER_COPY`; gathered once per row block, each class's products against
    its own columns), else ``n k m C`` in one product per row block: the k rows scaled for
    every class at once, ``(C k, rows) @ (rows, m)``, each class's columns picked from it
    afterwards (no gather, and ``X`` read once where a product per class read it C times);
    float32 products over row blocks, summed in float64. Entry ``(j, l)`` of new weight j
    (class k) against weight l (class c) sums ``x_j x_l (δ_kc p_c − p_k p_c)``: the
    same-class rows from the weights ``p(1-p)`` directly, as in :func:`hessian_blocks` (a
    difference would cancel where ``p`` is near 1), the others as ``−(x_j p_k) p_c``; so is
    each weight's entry against its own class's bias, ``Σ x_j p_k (1 - p_k)`` (it was
    ``Σ x_j p_k − Σ x_j p_k²``, which at ``1 - p ≈ 1e-3`` kept ~1e-4 of it in float32
    rounding).
    """
    n, C = P.shape
    dev = P.device
    cls_n, col_n, cls_a, col_a = (t.to(dev) for t in (cls_n, col_n, cls_a, col_a))
    k, Na = cls_n.numel(), cls_a.numel()
    m = Xw.shape[1]
    ba = np.concatenate([[0], np.cumsum(torch.bincount(cls_a, minlength=C).tolist())]).astype(int)
    bn = np.concatenate([[0], np.cumsum(torch.bincount(cls_n, minlength=C).tolist())]).astype(int)
    PT = P.T.contiguous()
    Hna = torch.zeros((k, Na), dtype=torch.float64, device=dev)
    Hnb = torch.zeros((k, C), dtype=torch.float64, device=dev)
    gather = k * (m * C - Na) >= GATHER_COPY * Na
    step = max(256, _ROW_FLOATS // max(k + Na if gather else k * C + m, 1))
    rows = torch.arange(k, device=dev)
    own_b = torch.zeros(k, dtype=torch.float64, device=dev)  # Σ x_j p_k (1 - p_k)
    buf_n = buf_a = None
    for s in range(0, n, step):
        e = min(n, s + step)
        UTn, buf_n = _rows(Xw, XwT, col_n, s, e, buf_n)
        Pb = PT[:, s:e]
        VTn = UTn * Pb[cls_n]  # (k, rows): x_j p_k, each new weight's own class probability
        Hnb -= (VTn @ Pb.T).to(torch.float64)  # -Σ x_j p_k p_c (own class: replaced below)
        own = UTn * (Pb * (1.0 - Pb))[cls_n]  # x_j p_k (1 - p_k): against its own class
        own_b += own.sum(1, dtype=torch.float64)
        VTn.neg_()
        if gather:  # the columns' own data, (Na, rows): each class's block a slice of it
            UA, buf_a = _rows(Xw, XwT, col_a, s, e, buf_a)
            M = torch.empty_like(VTn)
            for c in range(C):
                a, b = ba[c], ba[c + 1]
                if a == b:
                    continue
                torch.mul(VTn, Pb[c], out=M)  # -x_j p_k p_c
                M[bn[c]:bn[c + 1]] = own[bn[c]:bn[c + 1]]  # the new weights of class c
                Hna[:, a:b] += (M @ UA[a:b].T).to(torch.float64)
        else:  # every class's scaled rows in one product against all m columns, then picked
            M3 = VTn[None] * Pb[:, None, :]  # (C, k, rows)
            M3[cls_n, rows] = own
            R = (M3.view(C * k, e - s) @ Xw[s:e]).view(C, k, m)
            Hna += R[cls_a, :, col_a].T.to(torch.float64)
    Hnb[rows, cls_n] = own_b
    return (Hna / n).cpu().numpy(), (Hnb / n).cpu().numpy()


class NewtonState:
    """The model of one :func:`newton` call, reused by its later steps.

    The biases are minimized out of the quadratic model in closed form, so what a step needs
    is the Schur complement ``Q = Hww − Hwb Hbb⁺ Hbw`` with ``Hwb`` and ``Hbb``; ``Q``
    restricted to a subset of the weights is the Schur complement of that subset's Hessian
    (the bias block is the same), so a smaller free set takes a sub-block.

    Attributes
    ----------
    key : ndarray of shape (Nw,), int64
        Flat ``k * m + j`` index of each weight covered, in the model's order (sorted from a
        fresh Hessian; weights that joined later follow, :func:`_cover`).
    Q : ndarray of shape (Nw, Nw), float64
    Hwb : ndarray of shape (Nw, C), float64
    Hbb : ndarray of shape (C, C), float64
    m, C : int
        Working-set size and classes it was computed for.
    P : torch.Tensor of shape (n, C), float32, optional
        The class probabilities the Hessian was computed at: weights that join the model
        later get their rows at these, so the model stays one Hessian (positive
        semidefinite) with its couplings.
    faces : Faces, optional
        The model solves' face factor (:class:`~sparse_probe.solvers.gram_cd.Faces`) of
        ``Q`` at one ridge, kept for the next step on this model: where a solve crawled into
        the active-set method, the next starts there without factorizing anew (on the
        collinear bench path that solve took 20-50 ms, 4-10 ms with the factor kept; an ad
        hoc run).
    """

    def __init__(self, key: np.ndarray, Q: np.ndarray, Hwb: np.ndarray, Hbb: np.ndarray,
                 m: int, C: int, P: torch.Tensor | None = None, faces: Faces | None = None):
        self.key, self.Q, self.Hwb, self.Hbb, self.m, self.C = key, Q, Hwb, Hbb, m, C
        self.P, self.faces = P, faces

    def faces_at(self, l2: float) -> Faces:
        """The kept face factor where it is of this ridge ``l2`` (a path point's), else a
        new one kept instead."""
        if self.faces is None or self.faces.l2 != l2 or self.faces.Q is not self.Q:
            self.faces = Faces(self.Q, l2)
        return self.faces


def entering_cap(nonzero: int, floor: int | None = None) -> int:
    """How many zero weights may join a Newton model at one step: ``max(nonzero, floor)``
    (``floor`` default :data:`ENTER_MIN`). :func:`admit` applies it; ``fit_path`` sizes the
    model it expects with it."""
    return max(nonzero, ENTER_MIN if floor is None else floor)


def admit(W: torch.Tensor, g: torch.Tensor, threshold: float,
          floor: int | None = None, *, settle: bool = False) -> torch.Tensor:
    """The free weights of a Newton step: the nonzero ones, and the zero ones whose gradient
    exceeds ``threshold``, at most ``max(nonzeros, floor)`` of those (the largest first); with
    ``settle``, where more than that many are over it and some weights are nonzero, the nonzero
    ones alone.

    ``settle`` is for a path point's first step, taken from the warm start: there, zero weights
    over the threshold past the cap say that the start's gradients are too far from the
    point's own to choose the entering weights by. On the pooled features of a random-weight
    ResNet-18 (``bench_path.py --geometry deep-resnet``) the last four points' first steps
    admitted the 740-980 largest of 1,300-1,570 candidates, and 4-9% of those were nonzero
    after the step; of the 72-121 weights that entered at each of those points, 9-14 were among
    the 256 largest gradients. A first step on the nonzero weights alone moves them to about
    this point's optimum, and the entering weights are chosen at the next step by the gradients
    there (``benchmarks/results/newton-settle-cpu-2026-12-07.txt``).

    Parameters
    ----------
    W : torch.Tensor of shape (C, m)
        Weights.
    g : torch.Tensor of shape (C, m)
        The smooth part's gradient at ``W``.
    threshold : float
        ``shrink·λα``.
    floor : int, optional
        Zero weights that may always join (default :data:`ENTER_MIN`).
    settle : bool
        Past the cap, the nonzero weights alone (where there are some).

    Returns
    -------
    torch.Tensor of shape (C, m), bool
    """
    nz = W != 0
    ga = g.abs()
    over = ga > threshold
    cand = over & ~nz
    k_nz = int(nz.sum())
    cap = entering_cap(k_nz, floor)
    if int(cand.sum()) <= cap:
        return nz | over
    if settle and k_nz:
        return nz
    score = torch.where(cand, ga, torch.zeros_like(ga)).reshape(-1)
    keep = torch.zeros(score.numel(), dtype=torch.bool, device=W.device)
    keep[torch.topk(score, cap).indices] = True
    return nz | keep.view_as(W)


def carry_model(state: NewtonState, old_ws: np.ndarray, ws: np.ndarray) -> NewtonState | None:
    """The last point's model for the next point's working set, or None.

    Parameters
    ----------
    state : NewtonState
        The model a :func:`newton` call returned (``SolveResult.memory``).
    old_ws, ws : ndarray of shape (m_old,), (m,), int
        Feature indices of the working set it was computed on, and of the next one.

    Returns
    -------
    NewtonState or None
        The same model (its arrays shared, not copied) with each weight's flat key
        ``k * m + j`` re-labelled for ``ws`` where ``ws`` keeps ``old_ws`` as its first
        columns (the working-set cache appends features); None where a feature left or moved.
    """
    m_old, m = old_ws.size, ws.size
    if state.m != m_old or m < m_old or not np.array_equal(ws[:m_old], old_ws):
        return None
    if m == m_old:
        return state
    k, j = np.divmod(state.key, m_old)
    return NewtonState(k * m + j, state.Q, state.Hwb, state.Hbb, m, state.C, state.P,
                       state.faces)


def _pinv_bias(Hbb: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of the biases' Hessian on the complement of ``1``, its null direction.

    ``Hbb 1 = 0`` exactly only in exact arithmetic: from float32 probabilities the smallest
    eigenvalue is ~1e-8 instead of 0, and a plain pseudo-inverse would blow the bias step up
    along ``1`` (the loss cannot see it: the biases once drifted to ~1.5e4 there, the logits
    with them, and the line search lost its precision). Both sides are projected onto the
    complement of ``1`` first.
    """
    C = Hbb.shape[0]
    J = np.eye(C) - 1.0 / C
    e, V = np.linalg.eigh(J @ Hbb @ J)
    keep = e > 1e-9 * max(float(e.max()), 1e-300)
    return (V[:, keep] / e[keep]) @ V[:, keep].T


MODEL_SLACK = 1.2
"""A reused model that holds more than this many times the weights a step frees is cut down
to those weights first (:func:`_restrict`)."""


def _restrict(state: NewtonState, key: np.ndarray) -> NewtonState:
    """The model on those of its weights that are in ``key`` (the weights a step frees, sorted
    flat indices) where it holds more than :data:`MODEL_SLACK` times as many, else ``state``
    itself.

    A reused model keeps every weight it ever covered (:func:`_cover`), and its solves run on
    all of them: on the random-weight ResNet features of ``bench_path.py --geometry
    deep-resnet`` the last points' carried models held 2,500 weights where the steps freed
    1,130, and their solves were half the path. Restricted, the model is its principal
    sub-block, the Schur complement of those weights' own Hessian (:class:`NewtonState`), in
    the same order; its face factor, whose faces index the old model, is dropped."""
    if state.key.size <= MODEL_SLACK * key.size:
        return state
    keep = np.flatnonzero(np.isin(state.key, key, assume_unique=True))
    return NewtonState(state.key[keep], state.Q[np.ix_(keep, keep)], state.Hwb[keep], state.Hbb,
                       state.m, state.C, state.P)


def _cover(state: NewtonState, key: np.ndarray, cross, diag) -> NewtonState | None:
    """The last model extended to cover the weights ``key`` (sorted flat indices): the
    state itself when it covers them already (its extra weights stay in the model: they are
    at zero with a gradient under the threshold, where the model's coordinate descent leaves
    them unless their coupling pulls them out), else a copy with the new weights added after
    the old ones, or None when it covers under 70% of them.

    A new weight gets its Hessian rows against every weight of the model and the biases at
    the probabilities the model was computed at, ``cross(new_keys, union_keys, P) -> (Hna,
    Hnb)`` (:func:`hessian_cross`, ``n k m C`` multiply-adds for k new weights, a small share
    of a fresh Hessian's ``n N²/2``; both key lists sorted): the model stays that Hessian,
    couplings included, and positive semidefinite. Without those probabilities (``state.P``
    None) a new weight gets its own curvature ``diag(new_keys)`` only. (On the collinear path,
    the step after a fresh Hessian, on that model with the weights that had joined since,
    contracted the violation by a small factor with the diagonal only, by more than an order
    of magnitude with the coupled rows; an ad hoc run.)

    The new weights go after the old ones (the model's order need not be sorted), so the old
    model is one block of the new: a scatter of its ``N²`` entries into sorted places took
    0.9 s at N = 4,000, the block copy a fraction of that (an ad hoc timing)."""
    have = np.isin(key, state.key, assume_unique=True)  # both lists of distinct keys
    if have.all():
        return state
    if have.sum() < 0.7 * key.size:
        return None
    new_keys = key[~have]
    N, k = state.key.size, new_keys.size
    union = np.concatenate([state.key, new_keys])
    Q = np.empty((N + k, N + k))
    Q[:N, :N] = state.Q
    Hwb = np.concatenate([state.Hwb, np.zeros((k, state.C))])
    if state.P is None:
        Q[:N, N:] = 0.0
        Q[N:, :] = 0.0
        Q[range(N, N + k), range(N, N + k)] = diag(new_keys)
    else:
        ordered = np.sort(union)
        Hna, Hnb = cross(new_keys, ordered, state.P)
        Hna = Hna[:, np.searchsorted(ordered, union)]  # columns in the model's order
        Hwb[N:] = Hnb
        Qn = Hna - (Hnb @ _pinv_bias(state.Hbb)) @ Hwb.T  # the Schur complement's rows
        Q[N:, :N] = Qn[:, :N]
        Q[:N, N:] = Qn[:, :N].T
        Q[N:, N:] = 0.5 * (Qn[:, N:] + Qn[:, N:].T)
    faces = state.faces.grown(Q) if state.faces is not None else None
    return NewtonState(union, Q, Hwb, state.Hbb, state.m, state.C, state.P, faces)


def damping(mu: float, t: float, diag_mean: float) -> float:
    """The next step's Levenberg-Marquardt damping ``μ`` of the Newton model (added to its
    ridge: the model solve minimizes ``m(u) + μ/2 ||u − w||²``, ``w`` the current weights),
    after a step the line search accepted at ``t``.

    A cut step (``t < 1``) says the model misled beyond ``t`` of its step: ``μ`` grows
    :data:`DAMP_FACTOR` times, from :data:`DAMP_START` times the model's mean diagonal
    ``diag_mean``; a full step shrinks it as many times, to 0 once under that start. Where
    every step is full (the bench geometries' paths) it stays 0 and the solver is the plain
    proximal Newton method.

    On real deep features (pooled channels of a CNN trained on the built-in shapes data) with
    their tiny ridge (``λ(1 − α)``), the undamped model's steps ran far along nearly flat
    directions where the loss is not quadratic: at a path's last points the line search cut
    them to ``t`` = 2⁻⁸-2⁻¹², 15-35 steps per point where 2-4 do elsewhere. The damped step
    bends toward the gradient on those directions only (the trust-region idea of Moré 1978 and
    of Yamashita & Fukushima's regularized Newton methods).

    Parameters
    ----------
    mu : float
        The damping of the step just taken.
    t : float
        Its accepted line-search step (1: the full model step).
    diag_mean : float
        Mean of the diagonal of that model (its Hessian on the free weights).
    """
    start = DAMP_START * diag_mean
    if t < 1.0:
        return max(mu * DAMP_FACTOR, start)
    mu /= DAMP_FACTOR
    return mu if mu >= start else 0.0


def _refresh(viol: float, before: float, tol: float, n: int, m: int, C: int, N: int) -> bool:
    """Whether a fresh Hessian pays: the steps still needed on the old one, at the contraction
    ``viol / before`` it just gave, times their cost (two products over the working set and
    the model's coordinate descent) exceed a Hessian's ``n N²/2``."""
    rate = viol / before if before > 0 else 1.0
    if rate >= 0.9:
        return True
    steps = max(1.0, np.log(tol / viol) / np.log(rate))
    return steps * (3.0 * n * m * C + 20.0 * N * N) > 0.5 * n * N * N


def _kkt(W: torch.Tensor, G: torch.Tensor, gb: torch.Tensor, penalty: ElasticNet,
         lam: float) -> float:
    """Largest KKT violation (``G`` the mean cross-entropy's gradient, ridge not included),
    the penalty's own measure (:meth:`~sparse_probe.penalties.ElasticNet.kkt_violation`),
    biases included."""
    v = float(penalty.kkt_violation(G, W, lam).max()) if W.numel() else 0.0
    return max(v, float(gb.abs().max()))


def newton(
    data,
    W0: torch.Tensor,
    b0: torch.Tensor,
    lam: float,
    penalty: ElasticNet,
    *,
    tol: float,
    max_iter: int = 200,
    z0: torch.Tensor | None = None,
    gamma0: float | None = None,
    memory=None,
    max_free: int = DEFAULT_MAX_FREE,
    shrink: float = DEFAULT_SHRINK,
    inner: float = 0.02,
    inner_stale: float = DEFAULT_INNER_STALE,
    owlqn_max_iter: int | None = None,
    owlqn_expected_iters: float | None = None,
    max_cost: float | None = None,
) -> SolveResult:
    """Minimize the elementwise elastic-net objective on the working set (module docstring).

    Parameters
    ----------
    data : RestrictedData or BlockedData
        Working-set columns (n, m) and labels. Data without kept logits (streamed blocks) goes
        to OWL-QN whole.
    W0 : torch.Tensor of shape (C, m), float64
        Warm start.
    b0 : torch.Tensor of shape (C,), float64
    lam : float
        Penalty strength λ.
    penalty : ElasticNet
    tol : float
        Stop when the largest minimum-norm subgradient entry (weights and biases, gradient
        units; the measure OWL-QN uses) is at most ``tol``.
    max_iter : int
        Newton iterations at most.
    owlqn_max_iter : int, optional
        OWL-QN's iterations at most when handed over to (default: its own default).
    owlqn_expected_iters : float, optional
        The iterations OWL-QN is expected to take when handed over to (its ``expected_iters``:
        a long solve uses the class blocks).
    max_cost : float, optional
        Hand over to OWL-QN once the work counted so far, priced by
        :func:`~sparse_probe.solvers.choice.newton_observed_cost` (in OWL-QN iterations at
        this size), exceeds this: checked between steps and within the model solves, which
        then return the iterate they reached. A path's default gives a point
        :data:`~sparse_probe.solvers.choice.HANDOVER` times what OWL-QN was expected to take
        (module docstring of :mod:`~sparse_probe.solvers.choice`).
    z0 : torch.Tensor of shape (n, C), float64, optional
        Logits at the start, up to a per-row constant (not modified).
    gamma0 : float, optional
        Passed on to OWL-QN when it takes over.
    memory : NewtonState or LBFGSMemory, optional
        The last point's model (:func:`carry_model`, for this working set: the first step is
        taken on it, module docstring), or curvature pairs for OWL-QN when it takes over;
        anything else, or a model of other sizes, is ignored.
    max_free : int
        Hand over to OWL-QN when the free coordinates (plus the C biases) exceed this.
    shrink : float in (0, 1]
        A zero weight is free when its gradient's magnitude exceeds ``shrink·λα``.
    inner, inner_stale : float
        The model's coordinate descent stops at ``inner`` times the current violation on a
        fresh Hessian, ``inner_stale`` times it on a reused one (at most; a tenth of ``tol``
        at least).

    Returns
    -------
    SolveResult
        With ``logits``, ``grad``/``grad_b`` at the solution (for the caller's KKT pass and
        the next warm start); ``memory`` None, or OWL-QN's L-BFGS pairs when it took over,
        and then ``iterations`` each solver's share of ``n_iter`` (``{"newton": k, "owlqn":
        j}``, or ``{"owlqn": j}`` where no Newton step was taken); where Newton solved it
        alone, ``work`` its counted work: ``"hessian"`` the multiply-adds of its fresh Hessians
        (``n Nw²/2`` each) and of the rows of joining weights (``n k m C``), ``"stream"``,
        ``"stream_cached"`` and ``"blas3"`` its model solves'
        (:class:`~sparse_probe.solvers.gram_cd.QPWork`), ``"data"`` the examples its
        data-space model solves read, which the default's choice prices
        (:func:`~sparse_probe.solvers.choice.newton_observed_cost`), and ``"crawled"``
        whether a data-space model solve crawled into the Gram route (the choice's
        ``data_crawls``). ``memory`` is this point's model (a :class:`NewtonState`) for the
        next point where Newton solved it, or OWL-QN's L-BFGS pairs where that took over.
    """
    if not isinstance(penalty, ElasticNet):
        raise ValueError(f"newton: solves the elementwise elastic net only, got {penalty!r}")
    if not 0 < shrink <= 1:
        raise ValueError(f"newton: shrink must be in (0, 1], got {shrink}")
    if W0.ndim != 2 or b0.shape != (W0.shape[0],):
        raise ValueError(f"newton: W0 {tuple(W0.shape)} and b0 {tuple(b0.shape)} disagree")
    handed = {} if owlqn_max_iter is None else {"max_iter": owlqn_max_iter}
    if owlqn_expected_iters is not None:
        handed["expected_iters"] = owlqn_expected_iters
    if not data.keeps_logits:  # streamed row blocks: no Hessian from loss_grad
        res = owlqn(data, W0, b0, lam, penalty, tol=tol, gamma0=gamma0,
                    memory=memory if isinstance(memory, LBFGSMemory) else None, **handed)
        res.iterations = {"owlqn": res.n_iter}
        return res
    C, m = W0.shape
    n = data.n
    l1, l2 = penalty.l1_l2(lam)
    W = W0.to(torch.float64).clone()
    b = b0.to(torch.float64).clone()
    z = data.logits64(W, b) if z0 is None else z0.clone()
    y = data.y
    rows = torch.arange(n, device=z.device)

    def evaluate(zt):
        """Loss, CE gradient and float32 probabilities at logits ``zt``."""
        loss, R = data.ce(zt)
        G, gb = data.grad(R)
        P = (R * n).to(torch.float32)
        P[rows, y] += 1.0
        return loss, G, gb, P

    def penalized(loss, Wt):
        return loss + l1 * float(Wt.abs().sum()) + 0.5 * l2 * float((Wt * Wt).sum())

    loss, G, gb, P = evaluate(z)
    F = penalized(loss, W)
    # the model of this call's last fresh Hessian, or the last point's (carried)
    carried = isinstance(memory, NewtonState) and memory.m == m and memory.C == C and \
        memory.P is not None and memory.P.shape[0] == n
    state: NewtonState | None = memory if carried else None
    fresh_here = False  # a fresh Hessian was computed at this point
    last_rate = 1.0  # the last step's contraction of the violation
    mu, diag_mean = 0.0, 0.0  # the model's damping (damping()), the mean of its diagonal
    qp = QPWork()  # the model solves' work, and the Hessians' multiply-adds (for the choice)
    dwork = DataWork()  # the data-space model solves' work
    data_space = data_cd_compiled() and W0.device.type == "cpu"
    crawled = False  # a data-space model solve crawled: the Gram route from there
    hess_madds = 0.0
    lbfgs = memory if isinstance(memory, LBFGSMemory) else None  # for a hand-over to OWL-QN
    it, stall, converged, viol = 0, 0, False, float("inf")
    stale_step, force = False, False
    dear = False  # a fresh Hessian would have passed max_cost: OWL-QN from here
    short_step = False  # the last step's line search took less than the full step
    # the logits moved by float32 products since they were last exact (the caller's z0 did:
    # the last point's logits moved by the warm start's float32 product)
    drift = z0 is not None
    retries = 0

    def counted() -> dict:
        return {"hessian": hess_madds, "stream": qp.stream, "stream_cached": qp.stream_cached,
                "blas3": qp.blas3, "data": dwork.entries, "crawled": crawled}

    def over_budget(hessian: float = 0.0) -> bool:
        """The work so far, and a fresh Hessian of ``hessian`` multiply-adds about to start
        (which no check can stop midway), costs more than ``max_cost`` OWL-QN iterations."""
        if max_cost is None:
            return False
        work = counted()
        work["hessian"] += hessian
        return newton_observed_cost(n, m, C, max(it, 1), work) > max_cost

    def retry() -> bool:
        """Before giving up (no descent in a fresh model or no acceptable step on it, a
        stall): :func:`~sparse_probe.solvers.owlqn.precision_retry`, then exact logits and
        a fresh Hessian."""
        nonlocal z, loss, G, gb, P, F, drift, stall, retries, force
        go, retries = precision_retry(data, viol, gb, tol, drift, retries)
        if not go:
            return False
        z = data.logits64(W, b)
        loss, G, gb, P = evaluate(z)
        F, drift, stall, force = penalized(loss, W), False, 0, True
        return True

    while True:
        g = G + l2 * W
        v = _kkt(W, G, gb, penalty, lam)
        crawl = short_step and v < F32_NEAR * data.f32_error(gb)  # in the products' noise
        switch = (v <= tol or crawl) and f32_suspect(data, gb, tol)
        if switch:
            data.exact = True  # float64 gradient products from here on
        if switch or (v <= tol and drift):  # (re)check on exact logits
            if drift:
                z = data.logits64(W, b)
            loss, G, gb, P = evaluate(z)
            F, drift = penalized(loss, W), False
            continue
        viol_before, viol = viol, v
        if viol <= tol:
            converged = True
            break
        if it >= max_iter:
            break
        # the first step from the warm start: past the cap, on the nonzero weights alone
        free = admit(W, g, shrink * l1, settle=it == 0)
        cls, col = torch.nonzero(free, as_tuple=True)
        Nw = cls.numel()
        # after a step on an old Hessian: keep it while the steps it still needs (at the
        # contraction it just showed) cost less than a fresh one; at a path point's start, the
        # last point's model where it was handed on, else a fresh Hessian
        refresh = force or (it == 0 and (state is None or not carry_pays(n, m, C, Nw + C))) \
            or (stale_step and _refresh(viol, viol_before, tol, n, m, C, Nw + C))
        force = False
        spent = dear or (it and over_budget())
        to_data = data_space and data_pays(n, Nw)  # solved in data space (data_cd)
        # (a model solved in data space has no (N, N) matrix to outgrow max_free)
        if (Nw + C > max_free and not to_data) or spent:
            if spent:
                log.debug("newton: over its budget of %.0f OWL-QN iterations after %d steps%s: "
                          "OWL-QN from here", max_cost, it,
                          " (with the fresh Hessian it needed)" if dear else "")
            res = owlqn(data, W, b, lam, penalty, tol=tol, z0=z, gamma0=gamma0, memory=lbfgs,
                        **handed)
            # (a Newton that declined its first Hessian is a Newton hand-over with no steps:
            # the path reads its price)
            res.iterations = {"newton": it, "owlqn": res.n_iter} if it or dear \
                else {"owlqn": res.n_iter}
            res.n_iter += it
            res.work = counted() if spent else None
            return res
        it += 1
        in_data, start = False, None  # start: the Gram solve's, where not the weights
        if to_data:  # no Hessian: coordinate descent over the examples
            XwT = data.XwT if data.XwT is not None else data.Xw.T.contiguous()
            target = max(0.1 * tol, inner * viol)
            u, Db, _, dviol = data_qp(
                XwT, P, cls, col, hessian_diag(data.Xw, P, cls, col, XwT),
                G[cls, col].cpu().numpy(), gb.cpu().numpy(), W[cls, col].cpu().numpy(), l1, l2,
                tol=target, max_sweeps=data_sweep_cap(Nw + C), work=dwork,
                stop=over_budget if max_cost is not None else None)
            state, in_data = None, dviol <= target
            if not in_data and over_budget():  # stopped by the budget: OWL-QN from here
                continue
            if not in_data:  # it crawled: the Gram route from its iterate, from here on
                log.debug("newton: data-space model unsolved (%.3e over %.3e): Gram route",
                          dviol, target)
                data_space, start, crawled = False, u, True
                if Nw + C > max_free:  # too large a model for it: OWL-QN (the loop's top)
                    it -= 1
                    continue
        key = (cls * m + col).cpu().numpy()
        model = None
        if state is not None and not refresh:  # the last model, on the weights it covers
            def split(keys):
                return (torch.as_tensor(v, device=W0.device) for v in np.divmod(keys, m))

            def cross(keys, union, Pm):
                nonlocal hess_madds
                hess_madds += float(n) * keys.size * m * C
                return hessian_cross(data.Xw, Pm, *split(keys), *split(union), data.XwT)

            state = _restrict(state, key)
            cover = _cover(
                state, key, cross,
                lambda keys, P=P: hessian_diag(data.Xw, P, *split(keys), data.XwT))
            if cover is not None:
                state, key = cover, cover.key
                cls, col = (torch.as_tensor(v, device=W.device) for v in np.divmod(key, m))
                Nw = key.size
                model = state.Q, state.Hwb, state.Hbb
        fresh = model is None
        if fresh and not in_data and over_budget(n * float(Nw) ** 2 / 2):
            # (the largest piece of a step, n N²/2 multiply-adds, which no budget check can
            # stop midway). Its price is counted as spent (what Newton would have cost here at
            # least: the path's choice reads it); the step it was for is not taken, a
            # data-space solve that crawled into it was
            hess_madds += n * float(Nw) ** 2 / 2
            dear = True
            if start is None:
                it -= 1
            continue
        if fresh and not in_data:
            Hww, Hwb, Hbb = hessian_blocks(data.Xw, P, cls, col, XwT=data.XwT)
            hess_madds += n * float(Nw) ** 2 / 2
            # biases minimized out: the Schur complement Hww - (Hwb Hbb⁺) Hwbᵀ, in place
            torch.from_numpy(Hww).addmm_(torch.from_numpy(Hwb @ _pinv_bias(Hbb)),
                                         torch.from_numpy(Hwb).T, alpha=-1.0)
            state = NewtonState(key, Hww, Hwb, Hbb, m, C, P)  # P: a new tensor every step
            fresh_here = True
            model = Hww, Hwb, Hbb
        gw = G[cls, col].cpu().numpy()  # the CE part of the gradient
        gbn = gb.cpu().numpy()
        w0 = W[cls, col].cpu().numpy()
        if in_data:
            Dw = u - w0
        elif Nw:
            Q, Hwb, Hbb = model
            Hbb_inv = _pinv_bias(Hbb)
            gq = gw - Hwb @ (Hbb_inv @ gbn)
            q = Q @ w0 - gq + mu * w0  # damped: + μ/2 ||u - w0||², the ridge below takes μ
            diag_mean = float(np.mean(np.diagonal(Q)))
            # a fresh model is solved closely (its step converges fast), an old one loosely:
            # it is only an approximation, and on collinear models its tight solves crawled
            share = inner if fresh else inner_stale
            u, _, _ = enet_qp(Q, q, w0 if start is None else start, l1, l2 + mu,
                              tol=max(0.1 * tol, share * viol), work=qp,
                              stop=over_budget if max_cost is not None else None,
                              faces=state.faces_at(l2 + mu))
            Dw = u - w0
            Db = -Hbb_inv @ (gbn + Hwb.T @ Dw)
        else:
            u, Dw = w0, np.zeros(0)
            Db = -_pinv_bias(model[2]) @ gbn
        delta = (float(gw @ Dw + gbn @ Db) + l1 * float(np.abs(u).sum() - np.abs(w0).sum())
                 + 0.5 * l2 * float(u @ u - w0 @ w0))
        # a predicted change within the objective's rounding (on float64 products) is no
        # verdict on the step: the line search's rounding branch judges it by the KKT
        # violation it leaves
        within = data.exact and abs(delta) <= F_NOISE * max(abs(F), 1.0)
        if not (delta < 0 or within):
            if not fresh:  # an old model that sees no descent: a fresh one at this point
                force = True
                continue
            if retry():
                continue
            log.debug("newton: no descent in the model (delta %.3e)", delta)
            break  # the caller's KKT check decides
        DW = torch.zeros_like(W)
        DW[cls, col] = torch.as_tensor(Dw, dtype=torch.float64, device=W.device)
        Db_t = torch.as_tensor(Db, dtype=torch.float64, device=W.device)
        # the logits' change in a float32 product (as OWL-QN's steps, restricted.py; a
        # float64 product converts the (n, m) columns on every call), the biases' exactly:
        # the kept float64 logits move by it, and are recomputed exactly before the solver
        # declares convergence or returns (a large first step from zero left the objective
        # ~1e-9 off otherwise)
        dz = data.step(DW, torch.zeros_like(Db_t)).to(torch.float64) + Db_t
        t, accepted, grads = 1.0, False, None
        for _ in range(40):
            zt = torch.add(z, dz, alpha=t)
            Wt = W + t * DW
            loss_t, R_t = data.ce(zt)
            F_t = penalized(loss_t, Wt)
            if data.exact and abs(F_t - F) <= F_NOISE * max(abs(F), 1.0):
                # the change is within the objective's rounding (float64 products: the
                # gradient is not), which could pass or fail the test either way: decided by
                # the KKT violation at the trial, which a step of a converging Newton method
                # cuts (the step may cross zero: no slope test)
                grads = data.grad(R_t)
                if _kkt(Wt, *grads, penalty, lam) <= NOISE_CUT * viol:
                    accepted = True
                    break
                grads = None
            elif F_t <= F + ARMIJO * t * delta:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            if not fresh:  # the old model misled: retry this point with a fresh Hessian
                force = True
                continue
            if retry():
                continue
            log.debug("newton: line search failed on a fresh model (delta %.3e)", delta)
            break
        stale_step, short_step = not fresh or t < 1, t < 1
        log.debug("newton: it %d N %d %s t %.3g viol %.3e damping %.2e", it, Nw + C,
                  "fresh" if fresh else "stale", t, viol, mu)
        if not in_data and Nw:  # (a data-space solve has no model diagonal: undamped)
            mu = damping(mu, t, diag_mean)
        G, gb = grads if grads is not None else data.grad(R_t)
        P = (R_t * n).to(torch.float32)
        P[rows, y] += 1.0
        shift = center_shift(Wt, penalty.alpha)  # loss and logits (up to rows) unchanged
        if bool((shift != 0).any()):
            Wt = Wt + shift[None, :]
        b = b + t * Db_t
        b -= b.mean()  # the loss's other invariance: logits move by a constant per row
        W, z, loss, drift = Wt, zt, loss_t, True
        F_new = penalized(loss, W)
        # a stall: no resolvable decrease, and the violation not cut either (below the
        # objective's resolution a converging step still cuts it)
        v_new = _kkt(W, G, gb, penalty, lam)
        last_rate = v_new / viol if viol > 0 else 1.0
        tiny = F - F_new <= 1e-15 * max(abs(F), 1.0)
        stall = stall + 1 if tiny and v_new > NOISE_CUT * viol else 0
        F = F_new
        if stall >= 3:
            viol = v_new
            if viol > tol and retry():
                continue
            converged = viol <= tol
            break
    if drift:  # exact float64 logits, loss and gradient for the caller
        z = data.logits64(W, b)
        loss, G, gb, _ = evaluate(z)
        F = penalized(loss, W)
        viol = _kkt(W, G, gb, penalty, lam)
        converged = viol <= tol
    # the model for the next point's first step (CARRY_RATE), where it could pay there (at its
    # own size: the next point's model is as large or larger); otherwise its (n, C)
    # probabilities and (N, N) model are not held between points for nothing
    hand_on = state is not None and (fresh_here or last_rate <= CARRY_RATE) and \
        carry_pays(n, m, C, state.key.size + C)
    return SolveResult(W, b, loss, F, it, viol, converged, logits=z, gamma=gamma0, grad=G,
                       grad_b=gb, memory=state if hand_on else None, work=counted())
