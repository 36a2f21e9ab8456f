"""Orthant-wise limited-memory quasi-Newton (OWL-QN) for the elementwise elastic net.

Andrew & Gao, "Scalable training of L1-regularized log-linear models", ICML 2007. The smooth
part ``f(W, b) = CE + lam(1-alpha)/2 ||W||^2`` gets an L-BFGS model (second-order information at
the cost of two float32 matrix products per iteration), the L1 part ``lam * alpha * ||W||_1`` is
handled through the pseudo-gradient and orthant projections. The bias is unpenalized. The
split into ``l1 = lam * alpha`` and ``l2 = lam * (1 - alpha)`` is the penalty's
(:meth:`sparse_probe.penalties.ElasticNet.l1_l2`).

After every accepted step each feature's weights are shifted across classes to the
penalty-optimal center (:mod:`~sparse_probe.solvers.centering`): the loss is invariant to that
shift, and without it the iterates crawl along those d nearly flat directions.

One loop serves both kinds of working-set data; what differs is how a point is evaluated,
behind a small access object (``start``, ``direction``, ``trial``, ``accept``, ``resync``):

- cached columns (:class:`~sparse_probe.solvers.restricted.RestrictedData`): per iteration one
  product ``X d`` for the search direction (line-search trials then update float64 logits
  without further products, except for the few columns clipped by the orthant projection)
  and one ``R^T X`` for the gradient at the accepted point;
- streamed row blocks (:class:`~sparse_probe.solvers.blocked.BlockedData`, low-memory mode):
  every line-search trial is one pass returning loss and gradient, nothing of size n kept.
"""

from __future__ import annotations

import torch

from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.base import SolveResult
from sparse_probe.solvers.centering import center_shift
from sparse_probe.solvers.class_blocks import PAIRS as BLOCK_PAIRS
from sparse_probe.solvers.class_blocks import ClassBlocks, blocks_pay
from sparse_probe.solvers.lbfgs import CPU_PAIRS, LBFGSMemory, history_for
from sparse_probe.solvers.restricted import RestrictedData

__all__ = ["F32_NEAR", "F32_TOL_SHARE", "default_pairs", "f32_suspect", "owlqn", "precision_retry"]

F32_TOL_SHARE = 0.1
F32_NEAR = 3.0
RETRIES = 2
"""Exact resyncs OWL-QN makes for drifted logits before it gives up (``owlqn``'s ``retry``)."""
ARMIJO = 1e-4
"""Sufficient decrease: a trial is accepted where ``F(x + s) <= F(x) + ARMIJO · φ'(0)``."""
F_NOISE = 1e-10
"""Objective changes within this share of ``max(|F|, 1)`` are taken as rounding (float64
sums over n rows of logits kept to float64): on float64 products (exact mode) such a trial is
decided by the trapezoid form of the same test, ``φ'(1) <= (2·ARMIJO − 1) φ'(0)`` (exact on
a quadratic, the objective's local form near the optimum), from the trial's gradient; the
approximate Wolfe conditions of Hager & Zhang, "A new conjugate gradient method with
guaranteed descent and an efficient line search", SIAM J. Optim. 2005. Without it OWL-QN
stalled at 2-3x tolerances of ~1e-9 (``eps = 1e-4``) whose steps' decreases, ~1e-16, the
objective cannot resolve."""


def f32_suspect(data, gb: torch.Tensor, tol: float) -> bool:
    """Whether float32 gradient products may be too coarse for the KKT test at ``tol`` on
    ``data``: their error bound
    (:meth:`~sparse_probe.solvers.restricted.RestrictedData.f32_error`, bias gradient ``gb``)
    exceeds ``F32_TOL_SHARE`` of it (the caller's check allows the solver's tolerance over
    0.9). Where so, a solver converged on float32 products verifies on float64 ones, and one
    that stalls within ``F32_NEAR`` times the bound (the model's linear term then mostly the
    products' error: a held-out 12000 x 40 x 10 path's last point crawled at Newton steps of
    1e-5 at 2x its tolerance) goes on with float64 ones. Never for data without them."""
    return not getattr(data, "exact", True) and data.f32_error(gb) > F32_TOL_SHARE * tol


def precision_retry(data, viol: float, gb: torch.Tensor, tol: float, drift: bool,
                    retries: int) -> tuple[bool, int]:
    """Before a solver on kept logits gives up (no acceptable step, a stall): whether the
    float32 products may be what stopped it, and the retries of drifted logits counted.

    Their error: stopped within ``F32_NEAR`` times its bound where that bound is suspect at
    ``tol`` (:func:`f32_suspect`); ``data`` is then switched to float64 products. Or logits
    moved by float32 step products since they were last exact (``drift``: a large early
    step's product error stays in them, ~1e-7 of the logits, until a resync; on float64
    gradients it stopped OWL-QN at 300x a tolerance of 1e-11), at most :data:`RETRIES`
    times per solve. The caller resyncs its logits exactly and goes on where this says so.

    Returns
    -------
    retry : bool
    retries : int
        The drift retries so far, this one included.
    """
    if viol < F32_NEAR * data.f32_error(gb) and f32_suspect(data, gb, tol):
        data.exact = True
        return True, retries
    if drift and retries < RETRIES:
        return True, retries + 1
    return False, retries


def _l1_weights(C: int, m: int, l1: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 weight per entry of the flat ``[W (C*m), b (C)]`` vector (bias unpenalized), and the
    mask of penalized entries."""
    c = torch.cat([torch.full((C * m,), l1, dtype=torch.float64, device=device),
                   torch.zeros(C, dtype=torch.float64, device=device)])
    return c, c > 0


def _penalized(loss: float, wflat: torch.Tensor, l1: float, l2: float) -> float:
    """``loss + l2/2 ||w||^2 + l1 ||w||_1`` for the flat weights ``wflat`` (the elementwise
    penalty's value, :meth:`~sparse_probe.penalties.ElasticNet.value`, on the flat vector the
    loop keeps; one reduction each)."""
    return loss + 0.5 * l2 * float(wflat @ wflat) + l1 * float(wflat.abs().sum())


def _pseudo_grad(x: torch.Tensor, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Minimum-norm subgradient of ``f + sum(c * |x|)`` (c = 0 on unpenalized entries).

    ``g ± c`` with the sign of ``x`` where ``x ≠ 0``; at zero the soft threshold
    ``g - clip(g, -c, c)`` (``g - c`` above ``c``, ``g + c`` below ``-c``, else 0): the same
    roundings as the one-sided derivatives ``g ± c``, with one ``where`` (a ``where`` per case
    and their boolean masks took 3.5x as long on the iteration's vectors)."""
    return torch.where(x != 0, g + torch.copysign(c, x), g - torch.clamp(g, -c, c))


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

    Without curvature pairs: the memory's initial matrix where it has one
    (:meth:`~sparse_probe.solvers.lbfgs.LBFGSMemory.set_initial`), else the scaling
    ``gamma0`` (the last one of the previous path point: the curvature barely changes between
    neighbouring λ), else a step of 1 in the largest coordinate. Clears the memory and falls
    back to steepest descent when the model gives no descent.
    """
    if len(mem):
        q = mem.apply(pg)
    elif mem.initial is not None:
        q = mem.initial.apply(pg)
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


def default_pairs(p: int, blocks: bool, device) -> int:
    """Curvature pairs an OWL-QN solve keeps by default: on CPU
    :data:`~sparse_probe.solvers.class_blocks.PAIRS` beside the class blocks, else at most
    :data:`~sparse_probe.solvers.lbfgs.CPU_PAIRS`; elsewhere :func:`history_for`'s budget
    (fewer not measured there)."""
    budget = history_for(p)
    if torch.device(device).type != "cpu":
        return budget
    return BLOCK_PAIRS if blocks else min(budget, CPU_PAIRS)


def _memory(memory: LBFGSMemory | None, p: int, history: int | None, l2: float,
            default: int) -> LBFGSMemory:
    """The carried memory, moved to ridge weight ``l2`` (its pairs hold gradient changes of the
    previous point's smooth part) and, without a given ``history``, cut to its newest
    ``default`` pairs or grown to that many; or a new one of ``history`` (else ``default``)
    pairs when there is none of length ``p`` (or what was carried is not curvature pairs: a
    Newton point's model)."""
    if isinstance(memory, LBFGSMemory) and memory.dim in (None, p):
        if memory.ridge is not None:
            memory.add_to_y(l2 - memory.ridge)
        memory.ridge = l2
        if history is None:
            memory.resize(default)
        return memory
    # float32 pairs: the direction needs no more, and each direction reads the buffer twice
    mem = LBFGSMemory(history if history is not None else default, storage_dtype=torch.float32)
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


class _KeptLogits:
    """Data access for cached working-set columns (:class:`RestrictedData`): float64 logits
    are kept and moved along the step, so a line-search trial costs no matrix product.

    One product ``X d`` per direction (:meth:`direction`), widened into a reused float64
    buffer; a trial's logits are ``z + t X d`` written into a spare buffer, corrected with a
    product over the few columns the orthant projection clipped; one ``R^T X`` for the
    gradient at the accepted point (:meth:`accept`); and an exact float64 recomputation every
    ``resync_every`` iterations to bound the drift of the incremental updates.
    """

    def __init__(self, data: RestrictedData, x: torch.Tensor, C: int, m: int,
                 z0: torch.Tensor | None, resync_every: int):
        self.data, self.C, self.m, self.resync_every = data, C, m, resync_every
        Cm = C * m
        self.z = data.logits64(x[:Cm].view(C, m), x[Cm:]) if z0 is None else z0
        # line-search trials write their logits into ``spare`` (reused: fresh (n, C) float64
        # tensors cost more in page faults than the arithmetic); an accepted trial's buffer
        # becomes ``z`` and the old ``z`` the spare, except the caller's z0, never written
        self.spare = torch.empty_like(self.z)
        self.own_z = z0 is None
        # the step's logit change: the float32 product as is where the compiled kernel reads
        # it (fused_ce), else widened into a reused float64 buffer
        self.fused = fused_ce.usable(self.z)
        self.dz = None if self.fused else torch.empty_like(self.z)
        self.loss, self.R = data.ce(self.z)
        self.zn = self.loss_n = self.R_n = None

    def start(self):
        """Loss and CE gradient ``(loss, G (C, m), g_b (C,))`` at the start."""
        return (self.loss, *self.data.grad(self.R))

    def direction(self, d: torch.Tensor) -> None:
        """Prepare the trials along ``d`` (flat): its logit change, one float32 product."""
        Cm = self.C * self.m
        dz = self.data.step(d[:Cm].view(self.C, self.m), d[Cm:])
        if self.fused:
            self.dz = dz.contiguous()
        else:
            self.dz.copy_(dz)

    def trial(self, xn: torch.Tensor, t: float, delta: torch.Tensor | None) -> float:
        """Mean CE at ``xn = x + t d + delta`` (``delta``: the clipped entries, or None)."""
        if delta is None:  # the move and the loss in one pass where the kernel runs
            self.loss_n, self.R_n = self.data.ce_along(self.z, self.dz, t, self.spare)
        else:
            dW = delta[: self.C * self.m].view(self.C, self.m)
            cols = torch.nonzero(dW.abs().sum(0) > 0)[:, 0]
            if self.fused:  # the clipped entries' product, for their classes only, is the
                # kernel's second term (no (n, C) array for a few clipped weights)
                cls = torch.nonzero(dW.abs().sum(1) > 0)[:, 0]
                self.loss_n, self.R_n = self.data.ce_along(
                    self.z, self.dz, t, self.spare, self.data.matvec32(dW[cls], cols), cls)
            else:
                zn = torch.add(self.z, self.dz, alpha=t, out=self.spare)
                zn.add_(self.data.matvec(dW, cols))
                self.loss_n, self.R_n = self.data.ce(zn)
        self.zn = self.spare
        return self.loss_n

    def trial_grad(self):
        """The last trial's CE gradient ``(G, g_b)``, the trial not accepted."""
        return self.data.grad(self.R_n)

    def accept(self, grad=None):
        """Make the last trial the current point; its CE gradient ``(G, g_b)`` (``grad``:
        already computed by :meth:`trial_grad`). The loss and its gradient are those of any
        re-centered copy too (see ``_recenter``)."""
        self.spare = self.z if self.own_z else torch.empty_like(self.z)
        self.own_z = True
        self.z = self.zn
        self.R = self.R_n  # the current point's residual (until the next trial)
        return grad if grad is not None else self.data.grad(self.R_n)

    def verify(self, gb: torch.Tensor, tol: float, drift: bool) -> bool:
        """At convergence (bias gradient ``gb``): whether to recheck on exact logits, after
        switching to float64 gradient products where float32 ones are suspect at ``tol``
        (:func:`f32_suspect`). Elsewhere the float32 products and kept logits stand (their
        errors are a small share of the tolerance)."""
        if self.data.exact:
            return drift
        if not f32_suspect(self.data, gb, tol):
            return False
        self.data.exact = True
        return True

    def resync(self, x: torch.Tensor, it: int | None = None):
        """Every ``resync_every`` iterations (``it`` None: now): exact float64 logits at ``x``
        and the ``(loss, G, g_b)`` there; else None."""
        if it is not None and it % self.resync_every:
            return None
        Cm = self.C * self.m
        self.z = self.data.logits64(x[:Cm].view(self.C, self.m), x[Cm:])
        self.own_z = True
        loss, R = self.data.ce(self.z)
        self.R = R
        return (loss, *self.data.grad(R))

    @property
    def logits(self) -> torch.Tensor:
        return self.z


class _Streamed:
    """Data access for data that only offers ``loss_grad`` (:class:`BlockedData`: row blocks
    streamed from a column cache or from disk): every trial is one streaming pass that
    returns loss and gradient together, nothing of size n is kept."""

    def __init__(self, data, x: torch.Tensor, C: int, m: int):
        self.data, self.C, self.m = data, C, m
        self.x0 = x
        self.pending = None

    def _eval(self, x: torch.Tensor):
        Cm = self.C * self.m
        return self.data.loss_grad(x[:Cm].view(self.C, self.m), x[Cm:])

    def start(self):
        return self._eval(self.x0)

    def direction(self, d: torch.Tensor) -> None:
        """Nothing to prepare: each trial streams the data once for loss and gradient."""

    def trial(self, xn: torch.Tensor, t: float, delta: torch.Tensor | None) -> float:
        self.pending = self._eval(xn)
        return self.pending[0]

    def accept(self, grad=None):
        return self.pending[1], self.pending[2]

    def verify(self, gb: torch.Tensor, tol: float, drift: bool) -> bool:
        return False  # streamed blocks: float32 products (low-memory mode)

    def resync(self, x: torch.Tensor, it: int | None = None):
        return None

    logits = None


def owlqn(
    data,
    W0: torch.Tensor,
    b0: torch.Tensor,
    lam: float,
    penalty: ElasticNet,
    *,
    tol: float,
    max_iter: int = 2000,
    history: int | None = None,
    resync_every: int = 50,
    z0: torch.Tensor | None = None,
    gamma0: float | None = None,
    memory: LBFGSMemory | None = None,
    expected_iters: float | None = None,
) -> SolveResult:
    """Minimize the elementwise elastic-net objective on the working set.

    One loop for both kinds of data: :class:`RestrictedData` (cached columns: float64 logits
    kept, line-search trials without products) and data offering only ``loss_grad``
    (:class:`~sparse_probe.solvers.blocked.BlockedData`: every trial one streaming pass).

    Parameters
    ----------
    data : RestrictedData or BlockedData
        Working-set columns (n, m) and labels.
    W0 : torch.Tensor of shape (C, m), float64
        Warm start.
    b0 : torch.Tensor of shape (C,), float64
    lam : float
        Penalty strength λ.
    penalty : ElasticNet
        The elementwise elastic net (its ``l1_l2`` split and ``alpha`` for the centering).
    tol : float
        Stop when the largest pseudo-gradient entry (the KKT violation, gradient units) is
        at most ``tol``.
    z0 : torch.Tensor of shape (n, C), float64, optional
        Logits at the start (up to a per-row constant), when the caller has them; otherwise
        computed with float64 products. Only with :class:`RestrictedData`.
    history : int, optional
        Curvature pairs kept. Default on CPU: :data:`~sparse_probe.solvers.class_blocks.PAIRS`
        beside the class blocks, else at most :data:`~sparse_probe.solvers.lbfgs.CPU_PAIRS`;
        on other devices :func:`~sparse_probe.solvers.lbfgs.history_for`'s budget (not
        measured there with fewer). A carried memory is cut to its newest pairs or grown.
    gamma0 : float, optional
        Initial L-BFGS scaling (``SolveResult.gamma`` of the previous path point).
    memory : LBFGSMemory, optional
        The curvature pairs of the previous path point (``SolveResult.memory``), for vectors
        of this problem's length (``fit_path`` embeds them when features joined); updated in
        place for this λ's ridge weight and reused.
    resync_every : int
        With kept logits: recompute them exactly every this many iterations.
    expected_iters : float, optional
        Iterations the caller expects the solve to take (``fit_path``: OWL-QN's count at the
        last point it solved): a long solve pays for the class blocks on wider working sets
        (:func:`~sparse_probe.solvers.class_blocks.blocks_pay`).

    Returns
    -------
    SolveResult
        With ``logits``, ``grad``/``grad_b`` at the solution when the data keeps logits, for
        the caller's KKT pass and the next warm start.
    """
    if not isinstance(penalty, ElasticNet):
        raise ValueError(f"owlqn: solves the elementwise elastic net only, got {penalty!r}")
    C, m = W0.shape
    Cm = C * m
    l1, l2 = penalty.l1_l2(lam)
    c, wmask = _l1_weights(C, m, l1, W0.device)
    x = torch.cat([W0.reshape(-1).to(torch.float64), b0.to(torch.float64)])
    if data.keeps_logits:
        acc = _KeptLogits(data, x, C, m, z0, resync_every)
    else:
        if z0 is not None:
            raise ValueError("owlqn: z0 needs data that keeps logits (RestrictedData)")
        acc = _Streamed(data, x, C, m)

    def smooth_grad(x, G, gb):  # gradient of CE + l2/2 ||W||^2, flat
        return torch.cat([(G + l2 * x[:Cm].view(C, m)).reshape(-1), gb])

    def at_exact(exact):  # loss, objective and smooth gradient from a resync's (loss, G, g_b)
        loss, G_r, gb_r = exact
        return loss, _penalized(loss, x[:Cm], l1, l2), smooth_grad(x, G_r, gb_r)

    retries = 0

    def retry(gb) -> bool:  # before giving up (no acceptable step, a stall): precision_retry
        nonlocal loss, F, g, drift, stall, retries
        if not data.keeps_logits:
            return False
        go, retries = precision_retry(data, viol, gb, tol, drift, retries)
        if not go:
            return False
        loss, F, g = at_exact(acc.resync(x))
        drift, stall = False, 0
        return True

    loss, G, gb = acc.start()
    F, g = _penalized(loss, x[:Cm], l1, l2), smooth_grad(x, G, gb)
    use_blocks = data.keeps_logits and blocks_pay(data.n, m, C, expected_iters)
    mem = _memory(memory, Cm + C, history, l2, default_pairs(Cm + C, use_blocks, W0.device))
    blocks = None
    if use_blocks:  # per-class curvature as L-BFGS's H0
        free = ((x[:Cm] != 0) | (g[:Cm].abs() > l1)).view(C, m)
        blocks = ClassBlocks(data.Xw, acc.z, l2, free, previous=mem.blocks,
                             features=data.features)
        mem.set_initial(blocks)
        mem.blocks = blocks  # kept through add_to_y and embed, which drop the initial matrix
    elif mem.initial is not None:
        mem.set_initial(None)
    converged = False
    viol = float("inf")
    stall = 0
    it = 0
    # kept logits moved by float32 products since they were last exact (the caller's z0 did:
    # the last point's logits moved by the warm start's float32 product)
    drift = data.keeps_logits and z0 is not None
    while it < max_iter:
        pg = _pseudo_grad(x, g, c)
        viol = float(pg.abs().max())
        if viol <= tol and acc.verify(g[Cm:], tol, drift):
            # converged on float32 products too coarse for tol: check on exact logits and
            # float64 products (those from here on)
            drift = False
            exact = acc.resync(x)
            if exact is not None:
                loss, F, g = at_exact(exact)
                continue
        if viol <= tol:
            converged = True
            break
        it += 1
        if blocks is not None:  # couplings of the weights that can move now only
            changed = blocks.set_free(((x[:Cm] != 0) | (pg[:Cm] != 0)).view(C, m))
            if changed.numel():
                mem.initial_changed(blocks.columns(changed),
                                    lambda Q, k=changed: blocks.apply_classes(Q, k))
        d = _direction(pg, mem, gamma0, free=(x != 0) | ~wmask)
        xi = torch.where(x != 0, torch.sign(x), torch.sign(-pg))
        acc.direction(d)
        t = 1.0
        accepted = by_slope = False
        grad_n = None
        for _ in range(40):
            xt = x + t * d
            clip = wmask & (torch.sign(xt) != xi) & (xt != 0)
            if bool(clip.any()):  # orthant projection: clipped entries to zero
                delta = torch.where(clip, -xt, torch.zeros_like(xt))
                xn = xt + delta
            else:
                delta, xn = None, xt
            loss_n = acc.trial(xn, t, delta)
            F_n = _penalized(loss_n, xn[:Cm], l1, l2)
            slope = float(pg @ (xn - x))  # the objective's derivative along the move, at x
            if data.keeps_logits and data.exact and abs(F_n - F) <= F_NOISE * max(abs(F), 1.0):
                # the change is within the objective's rounding, which could pass or fail the
                # test either way: decided from the slope at the trial instead (the move keeps
                # the orthant: the L1 part is linear along it)
                grad_n = acc.trial_grad()
                slope_n = float((smooth_grad(xn, *grad_n) + c * xi) @ (xn - x))
                if slope_n <= (2.0 * ARMIJO - 1.0) * slope:
                    accepted = by_slope = True
                    break
                grad_n = None
            elif F_n <= F + ARMIJO * slope:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            if retry(g[Cm:]):
                continue
            break  # no representable decrease: the caller's KKT check decides
        G_n, gb_n = acc.accept(grad_n)
        xc = _recenter(xn, C, m, penalty.alpha)  # free: logits change by a per-row constant
        if xc is not None:
            xn = xc
            F_n = _penalized(loss_n, xn[:Cm], l1, l2)
        g_n = smooth_grad(xn, G_n, gb_n)
        mem.push(xn - x, g_n - g)
        decrease = F - F_n
        x, loss, F, g = xn, loss_n, F_n, g_n
        exact = acc.resync(x, it)  # bound drift of incrementally updated logits
        drift = exact is None
        if exact is not None:
            loss, F, g = at_exact(exact)
        stall = stall + 1 if decrease <= 1e-15 * max(abs(F), 1.0) and not by_slope else 0
        if stall >= 5:
            if retry(g[Cm:]):
                continue
            break
    if drift and not converged:  # stopped (max_iter, a stall): exact logits for the caller
        exact = acc.resync(x)
        if exact is not None:
            loss, F, g = at_exact(exact)
            viol = float(_pseudo_grad(x, g, c).abs().max())
            converged = viol <= tol
    W = x[:Cm].view(C, m).clone()
    b = x[Cm:].clone()
    kept = acc.logits is not None
    G = g[:Cm].view(C, m) - l2 * W  # g holds the smooth part's gradient, ridge included
    return SolveResult(W, b, loss, F, it, viol, converged, logits=acc.logits, gamma=mem.gamma,
                       grad=G if kept else None, grad_b=g[Cm:].clone() if kept else None,
                       memory=mem)
