"""Orthant-wise limited-memory quasi-Newton (OWL-QN) for the elementwise elastic net.

Andrew & Gao, "Scalable training of L1-regularized log-linear models", ICML 2007. The smooth
part ``f(W, b) = CE + lam(1-alpha)/2 ||W||^2`` gets an L-BFGS model (second-order information at
the cost of two float32 matrix products per iteration), the L1 part ``lam * alpha * ||W||_1`` is
handled through the pseudo-gradient and orthant projections. The bias is unpenalized.

After every accepted step each feature's weights are shifted across classes to the
penalty-optimal center (:mod:`~sparse_probe.solvers.centering`): the loss is invariant to that
shift, and without it the iterates crawl along those d nearly flat directions.

Per iteration: one product ``X d`` for the search direction (line-search trials then update
float64 logits without further products, except for the few columns clipped by the orthant
projection) and one ``R^T X`` for the gradient at the accepted point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparse_probe.solvers.centering import center_shift
from sparse_probe.solvers.lbfgs import LBFGSMemory, history_for
from sparse_probe.solvers.restricted import RestrictedData

__all__ = ["SolveResult", "owlqn", "owlqn_blocked"]


@dataclass
class SolveResult:
    """Solution of one restricted problem."""

    W: torch.Tensor
    b: torch.Tensor
    loss: float
    objective: float
    n_iter: int
    violation: float
    converged: bool
    logits: torch.Tensor | None = None  # (n, C) float64 at (W, b), up to a per-row constant
    gamma: float | None = None  # L-BFGS scaling s.y / y.y of the last curvature pair
    grad: torch.Tensor | None = None  # (C, m) float64 gradient of the mean CE at (W, b)
    grad_b: torch.Tensor | None = None  # (C,) the same for the bias
    memory: LBFGSMemory | None = None  # the curvature pairs at the end, for the next point


def _l1_weights(C: int, m: int, l1: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 weight per entry of the flat ``[W (C*m), b (C)]`` vector (bias unpenalized), and the
    mask of penalized entries."""
    c = torch.cat([torch.full((C * m,), l1, dtype=torch.float64, device=device),
                   torch.zeros(C, dtype=torch.float64, device=device)])
    return c, c > 0


def _penalized(loss: float, wflat: torch.Tensor, l1: float, l2: float) -> float:
    """``loss + l2/2 ||w||^2 + l1 ||w||_1`` for the flat weights ``wflat``."""
    return loss + 0.5 * l2 * float(wflat @ wflat) + l1 * float(wflat.abs().sum())


def _pseudo_grad(x: torch.Tensor, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Minimum-norm subgradient of ``f + sum(c * |x|)`` (c = 0 on unpenalized entries)."""
    right = g + c
    left = g - c
    pg = torch.where(x > 0, right, torch.where(x < 0, left, torch.zeros_like(g)))
    at0 = x == 0
    pg = torch.where(at0 & (right < 0), right, pg)
    pg = torch.where(at0 & (left > 0), left, pg)
    return pg


def _direction(pg: torch.Tensor, mem: LBFGSMemory, gamma0: float | None = None,
               free: torch.Tensor | None = None) -> torch.Tensor:
    """L-BFGS direction on the pseudo-gradient, projected onto descent components.

    ``free`` marks the coordinates where the objective is differentiable (nonzero weights,
    the bias): there the quasi-Newton direction is kept whole. Andrew & Gao's projection
    (drop every component whose sign disagrees with the pseudo-gradient's) is applied to the
    coordinates at zero only, where it decides which orthant a weight may enter; applied to
    all coordinates it cut the curvature information out of the step (on the small benchmark
    preset with the memory carried along the path, ~8% more iterations). Whatever is kept,
    the result must be a descent direction.

    Without curvature pairs the initial Hessian scaling is ``gamma0`` (the last one of the
    previous path point: the curvature barely changes between neighbouring λ), else a step of
    1 in the largest coordinate. Clears the memory and falls back to steepest descent when the
    model gives no descent.
    """
    if len(mem):
        q = mem.apply(pg)
    elif gamma0 is not None and gamma0 > 0:
        q = gamma0 * pg
    else:
        q = pg / max(float(pg.abs().max()), 1e-12)
    keep = q * pg > 0 if free is None else (q * pg > 0) | free
    d = torch.where(keep, -q, torch.zeros_like(q))  # descent components only
    if float(pg @ d) >= 0 or not bool(torch.isfinite(d).all()):
        mem.clear()
        d = -pg / max(float(pg.abs().max()), 1e-12)
    return d


def _memory(memory: LBFGSMemory | None, p: int, history: int | None, l2: float) -> LBFGSMemory:
    """The carried memory, moved to ridge weight ``l2`` (its pairs hold gradient changes of the
    previous point's smooth part), or a new one when there is none of length ``p``."""
    if memory is not None and memory.dim in (None, p):
        if memory.ridge is not None:
            memory.add_to_y(l2 - memory.ridge)
        memory.ridge = l2
        return memory
    # float32 pairs: the direction needs no more, and each direction reads the buffer twice
    mem = LBFGSMemory(history if history is not None else history_for(p),
                      storage_dtype=torch.float32)
    mem.ridge = l2
    return mem


def _recenter(x: torch.Tensor, C: int, m: int, alpha: float) -> torch.Tensor | None:
    """``x`` with each feature's weights shifted to the penalty-optimal center (loss unchanged),
    or ``None`` when no shift lowers the penalty (see :mod:`~sparse_probe.solvers.centering`)."""
    if m == 0:
        return None
    shift = center_shift(x[: C * m].view(C, m), alpha)
    if not bool((shift != 0).any()):
        return None
    out = x.clone()
    out[: C * m].view(C, m).add_(shift)
    return out


def owlqn(
    data: RestrictedData,
    W0: torch.Tensor,
    b0: torch.Tensor,
    lam: float,
    alpha: float,
    *,
    tol: float,
    max_iter: int = 2000,
    history: int | None = None,
    resync_every: int = 50,
    z0: torch.Tensor | None = None,
    gamma0: float | None = None,
    memory: LBFGSMemory | None = None,
) -> SolveResult:
    """Minimize the elementwise elastic-net objective on the working set.

    Parameters
    ----------
    data : RestrictedData
        Working-set columns (n, m) and labels.
    W0 : torch.Tensor of shape (C, m), float64
        Warm start.
    b0 : torch.Tensor of shape (C,), float64
    lam, alpha : float
    tol : float
        Stop when the largest pseudo-gradient entry (the KKT violation, gradient units) is
        at most ``tol``.
    z0 : torch.Tensor of shape (n, C), float64, optional
        Logits at the start (up to a per-row constant), when the caller has them; otherwise
        computed with float64 products.
    history : int, optional
        Curvature pairs kept (default :func:`~sparse_probe.solvers.lbfgs.history_for`).
    gamma0 : float, optional
        Initial L-BFGS scaling (``SolveResult.gamma`` of the previous path point).
    memory : LBFGSMemory, optional
        The curvature pairs of the previous path point (``SolveResult.memory``), for vectors
        of this problem's length (``fit_path`` embeds them when features joined); updated in
        place for this λ's ridge weight and reused.

    Returns
    -------
    SolveResult
        With ``logits`` at the solution, for the caller's KKT pass and the next warm start.
    """
    C, m = W0.shape
    Cm = C * m
    l1, l2 = lam * alpha, lam * (1.0 - alpha)
    c, wmask = _l1_weights(C, m, l1, W0.device)

    def smooth_parts(x, loss, R):
        W = x[:Cm].view(C, m)
        G, gb = data.grad(R)
        wflat = x[:Cm]
        F = _penalized(loss, wflat, l1, l2)
        g = torch.cat([(G + l2 * W).reshape(-1), gb])
        return F, g

    def objective(x, loss):
        wflat = x[:Cm]
        return _penalized(loss, wflat, l1, l2)

    x = torch.cat([W0.reshape(-1).to(torch.float64), b0.to(torch.float64)])
    z = data.logits64(x[:Cm].view(C, m), x[Cm:]) if z0 is None else z0
    # line-search trials write their logits into ``spare`` (reused: fresh (n, C) float64
    # tensors cost more in page faults than the arithmetic); an accepted trial's buffer
    # becomes ``z`` and the old ``z`` the spare, except the caller's z0, which is never written
    spare = torch.empty_like(z)
    own_z = z0 is None
    dz = torch.empty_like(z)  # the step's logit change, widened to float64 once per direction
    loss, R = data.ce(z)
    F, g = smooth_parts(x, loss, R)
    mem = _memory(memory, Cm + C, history, l2)
    converged = False
    viol = float("inf")
    stall = 0
    it = 0
    while it < max_iter:
        pg = _pseudo_grad(x, g, c)
        viol = float(pg.abs().max())
        if viol <= tol:
            converged = True
            break
        it += 1
        d = _direction(pg, mem, gamma0, free=(x != 0) | ~wmask)
        xi = torch.where(x != 0, torch.sign(x), torch.sign(-pg))
        dz.copy_(data.step(d[:Cm].view(C, m), d[Cm:]))  # float32 product, widened in place
        t = 1.0
        accepted = False
        for _ in range(40):
            xt = x + t * d
            clip = wmask & (torch.sign(xt) != xi) & (xt != 0)
            zn = torch.add(z, dz, alpha=t, out=spare)
            if bool(clip.any()):
                delta = torch.where(clip, -xt, torch.zeros_like(xt))
                xn = xt + delta
                dW = delta[:Cm].view(C, m)
                cols = torch.nonzero(dW.abs().sum(0) > 0)[:, 0]
                zn.add_(data.matvec(dW, cols))
            else:
                xn = xt
            loss_n, R_n = data.ce(zn)
            F_n = objective(xn, loss_n)
            if F_n <= F + 1e-4 * float(pg @ (xn - x)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break  # no representable decrease: the caller's KKT check decides
        xc = _recenter(xn, C, m, alpha)  # free: logits change by a per-row constant only
        if xc is not None:
            xn = xc
        F_n, g_n = smooth_parts(xn, loss_n, R_n)
        mem.push(xn - x, g_n - g)
        decrease = F - F_n
        spare = z if own_z else torch.empty_like(z)
        own_z = True
        x, z, loss, F, g = xn, zn, loss_n, F_n, g_n
        if it % resync_every == 0:  # bound drift of the incrementally updated logits
            z = data.logits64(x[:Cm].view(C, m), x[Cm:])
            loss, R = data.ce(z)
            F, g = smooth_parts(x, loss, R)
        stall = stall + 1 if decrease <= 1e-15 * max(abs(F), 1.0) else 0
        if stall >= 5:
            break
    W = x[:Cm].view(C, m).clone()
    b = x[Cm:].clone()
    G = g[:Cm].view(C, m) - l2 * W  # g holds the smooth part's gradient, ridge included
    return SolveResult(W, b, loss, F, it, viol, converged, logits=z, gamma=mem.gamma,
                       grad=G, grad_b=g[Cm:].clone(), memory=mem)


def owlqn_blocked(
    data,
    W0: torch.Tensor,
    b0: torch.Tensor,
    lam: float,
    alpha: float,
    *,
    tol: float,
    max_iter: int = 2000,
    history: int | None = None,
    gamma0: float | None = None,
    memory: LBFGSMemory | None = None,
) -> SolveResult:
    """OWL-QN for data that only offers ``loss_grad`` (see :class:`~sparse_probe.solvers.blocked.BlockedData`).

    Same iteration as :func:`owlqn`; every line-search trial is one streaming evaluation.
    """
    C, m = W0.shape
    Cm = C * m
    l1, l2 = lam * alpha, lam * (1.0 - alpha)
    c, wmask = _l1_weights(C, m, l1, W0.device)

    def evaluate(x):
        W = x[:Cm].view(C, m)
        loss, G, gb = data.loss_grad(W, x[Cm:])
        wflat = x[:Cm]
        F = _penalized(loss, wflat, l1, l2)
        return loss, F, torch.cat([(G + l2 * W).reshape(-1), gb])

    x = torch.cat([W0.reshape(-1).to(torch.float64), b0.to(torch.float64)])
    loss, F, g = evaluate(x)
    mem = _memory(memory, Cm + C, history, l2)
    converged, viol, stall, it = False, float("inf"), 0, 0
    while it < max_iter:
        pg = _pseudo_grad(x, g, c)
        viol = float(pg.abs().max())
        if viol <= tol:
            converged = True
            break
        it += 1
        d = _direction(pg, mem, gamma0, free=(x != 0) | ~wmask)
        xi = torch.where(x != 0, torch.sign(x), torch.sign(-pg))
        t, accepted = 1.0, False
        for _ in range(40):
            xn = x + t * d
            xn = torch.where(wmask & (torch.sign(xn) != xi), torch.zeros_like(xn), xn)
            loss_n, F_n, g_n = evaluate(xn)
            if F_n <= F + 1e-4 * float(pg @ (xn - x)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        xc = _recenter(xn, C, m, alpha)
        if xc is not None:
            g_n = g_n.clone()
            g_n[:Cm] += l2 * (xc - xn)[:Cm]
            xn = xc
            F_n = _penalized(loss_n, xn[:Cm], l1, l2)
        mem.push(xn - x, g_n - g)
        decrease = F - F_n
        x, loss, F, g = xn, loss_n, F_n, g_n
        stall = stall + 1 if decrease <= 1e-15 * max(abs(F), 1.0) else 0
        if stall >= 5:
            break
    return SolveResult(x[:Cm].view(C, m).clone(), x[Cm:].clone(), loss, F, it, viol, converged,
                       gamma=mem.gamma, memory=mem)
