"""Accelerated proximal gradient (FISTA with backtracking and adaptive restart) for either
elastic-net penalty.

Beck & Teboulle, "A fast iterative shrinkage-thresholding algorithm", SIAM J. Imaging Sci. 2009;
restart rule of O'Donoghue & Candès, Found. Comput. Math. 2015 (a restart drops the momentum
when a step from an extrapolated point raised the objective). The smooth part is
``CE + λ(1-α)/2 ||W||^2`` (the bias unpenalized) and each step applies the proximal operator
of the L1-type part ``λα P1`` (:meth:`~sparse_probe.penalties.Penalty.prox_p1`):
soft-thresholding for the elementwise penalty, the block
soft-threshold ``W_:j max(0, 1 - tλα / ||W_:j||)`` for the grouped one. It needs only
``loss_grad`` from the data, so it runs on cached and on streamed working sets alike. The
path default for the grouped penalty; OWL-QN is faster for the elementwise one.
"""

from __future__ import annotations

import torch

from sparse_probe.penalties import Penalty
from sparse_probe.solvers.base import SolveResult

__all__ = ["fista"]


def _kkt(penalty: Penalty, W: torch.Tensor, G: torch.Tensor, gb: torch.Tensor, lam: float) -> float:
    """Largest violation of the optimality conditions, bias included (gradient units)."""
    viol = float(penalty.kkt_violation(G, W, lam).max()) if W.numel() else 0.0
    return max(viol, float(gb.abs().max()))


def fista(
    data,
    W0: torch.Tensor,
    b0: torch.Tensor,
    lam: float,
    penalty: Penalty,
    *,
    tol: float,
    max_iter: int = 5000,
    L0: float = 1.0,
    check_every: int = 10,
    z0: torch.Tensor | None = None,
    gamma0: float | None = None,
    memory=None,
) -> SolveResult:
    """Minimize the elastic-net objective on the working set (see module docstring).

    Parameters
    ----------
    data : object with ``loss_grad``
        Working-set data (:class:`~sparse_probe.solvers.restricted.RestrictedData` or
        :class:`~sparse_probe.solvers.blocked.BlockedData`).
    W0 : torch.Tensor of shape (C, m), float64
    b0 : torch.Tensor of shape (C,), float64
    lam : float
    penalty : Penalty
        :class:`~sparse_probe.penalties.ElasticNet` or
        :class:`~sparse_probe.penalties.GroupedElasticNet`.
    tol : float
        Stop when the KKT violation (checked every ``check_every`` iterations) is at most this.
    L0 : float
        Initial Lipschitz estimate (backtracking doubles it, each step relaxes it by 5%).
    z0, gamma0, memory
        Part of the solver interface (:class:`~sparse_probe.solvers.base.Solver`); unused.
    """
    l1, l2 = penalty.l1_l2(lam)

    def smooth(W, b, need_grad=True):
        loss, G, gb = data.loss_grad(W, b, need_grad=need_grad)
        f = loss + 0.5 * l2 * float((W * W).sum())
        if need_grad:
            G = G + l2 * W
        return loss, f, G, gb

    def full_obj(W, f):
        return f + l1 * penalty.p1(W)

    W, b = W0.clone(), b0.clone()
    Wy, by = W.clone(), b.clone()
    tk = 1.0
    L = L0
    loss, f, _, _ = smooth(W, b, need_grad=False)
    F = full_obj(W, f)
    viol = float("inf")
    converged = False
    # A step from an unextrapolated point is a plain proximal-gradient step: it cannot raise F
    # beyond the rounding the sufficient-decrease test allows, so it is never "restarted" (a
    # restart there would retry the same step forever near the optimum).
    extrapolated = False
    it = 0
    for it in range(1, max_iter + 1):
        _, fy, Gy, gby = smooth(Wy, by)
        while True:
            step = 1.0 / L
            Wn = penalty.prox_p1(Wy - step * Gy, step * l1)
            bn = by - step * gby
            dW, db = Wn - Wy, bn - by
            loss_n, fn, _, _ = smooth(Wn, bn, need_grad=False)
            quad = fy + float((Gy * dW).sum() + (gby * db).sum()) + 0.5 * L * float(
                (dW * dW).sum() + (db * db).sum()
            )
            if fn <= quad + 1e-12 * abs(quad):
                break
            L *= 2.0
        Fn = full_obj(Wn, fn)
        if Fn > F and extrapolated:  # adaptive restart
            tk = 1.0
            Wy, by = W.clone(), b.clone()
            extrapolated = False
            L *= 0.9
            continue
        tn = 0.5 * (1 + (1 + 4 * tk * tk) ** 0.5)
        coef = (tk - 1) / tn
        Wy = Wn + coef * (Wn - W)
        by = bn + coef * (bn - b)
        extrapolated = coef > 0
        W, b, F, loss, tk = Wn, bn, Fn, loss_n, tn
        L *= 0.95
        if it % check_every == 0:
            _, G, gb = data.loss_grad(W, b)
            viol = _kkt(penalty, W, G, gb, lam)
            if viol <= tol:
                converged = True
                break
    return SolveResult(W, b, loss, F, it, viol, converged)
