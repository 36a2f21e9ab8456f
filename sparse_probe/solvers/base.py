"""The interface every restricted-problem solver implements, and what it returns.

A solver minimizes ``mean CE(W x + b) + penalty.value(W, λ)`` over the working set's weights
``W`` (C, m) and the bias ``b`` (C,), given the data as an object offering

- ``loss_grad(W, b, need_grad=True) -> (loss, G (C, m), g_b (C,))`` (float64), always; and,
  where ``keeps_logits`` is true (:class:`~sparse_probe.solvers.restricted.RestrictedData`),
  the finer ``logits64``/``step``/``matvec``/``ce``/``grad`` that let a solver keep float64
  logits between evaluations.

Solvers are registered by name in :data:`sparse_probe.solvers.SOLVERS` with the penalties they
support; ``fit_path`` looks them up there (:func:`sparse_probe.solvers.get_solver`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from sparse_probe.penalties import Penalty
from sparse_probe.solvers.lbfgs import LBFGSMemory

if TYPE_CHECKING:
    from sparse_probe.solvers.newton import NewtonState

__all__ = ["SolveResult", "Solver", "SolverSpec"]


@dataclass
class SolveResult:
    """Solution of one restricted problem (tensors on the data's device)."""

    W: torch.Tensor  # (C, m) float64
    b: torch.Tensor  # (C,) float64
    loss: float  # mean CE at (W, b)
    objective: float  # loss + penalty
    n_iter: int
    violation: float  # the solver's last KKT measure (gradient units)
    converged: bool
    logits: torch.Tensor | None = None  # (n, C) float64 at (W, b), up to a per-row constant
    gamma: float | None = None  # L-BFGS scaling s.y / y.y of the last curvature pair
    grad: torch.Tensor | None = None  # (C, m) float64 gradient of the mean CE at (W, b)
    grad_b: torch.Tensor | None = None  # (C,) the same for the bias
    # for the next point: OWL-QN's curvature pairs at the end, or proximal Newton's model
    memory: LBFGSMemory | NewtonState | None = None
    # iterations of each solver that ran, in order, where one handed the problem to another
    # (proximal Newton to OWL-QN: {"newton": 3, "owlqn": 80}); None: the solver's own alone
    iterations: dict[str, int] | None = None
    # the work done, in counts no clock disturbs, where the solver counts it (proximal
    # Newton: {"hessian": multiply-adds, "stream": model-solve entries, "blas3": ..., ...})
    work: dict[str, float] | None = None


class Solver(Protocol):
    """``solve(data, W0, b0, lam, penalty, *, tol, max_iter, z0, gamma0, memory)``.

    ``W0`` (C, m) and ``b0`` (C,) float64 are the warm start; ``tol`` the KKT tolerance in
    gradient units; ``z0``, ``gamma0``, ``memory`` what the previous path point left
    (logits at the start, an L-BFGS scaling, curvature pairs or a Newton model): a solver
    uses what it can and ignores the rest (``z0`` is only passed to solvers whose spec says
    ``uses_logits``).
    """

    def __call__(self, data, W0: torch.Tensor, b0: torch.Tensor, lam: float, penalty: Penalty,
                 *, tol: float, max_iter: int = ..., z0: torch.Tensor | None = None,
                 gamma0: float | None = None,
                 memory: LBFGSMemory | NewtonState | None = None) -> SolveResult: ...


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver.

    Attributes
    ----------
    name : str
    solve : Solver
    penalties : tuple of Penalty subclasses
        The penalties it minimizes exactly.
    uses_logits : bool
        Takes the start's logits ``z0`` (the caller computes them only then).
    """

    name: str
    solve: Solver
    penalties: tuple[type[Penalty], ...]
    uses_logits: bool = False

    def supports(self, penalty: Penalty) -> bool:
        return isinstance(penalty, self.penalties)
