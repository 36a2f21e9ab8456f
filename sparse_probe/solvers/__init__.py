"""Solvers for the sparse head's objective (see :mod:`sparse_probe.objective`).

A fit is loss × penalty × solver: the penalties live in :mod:`sparse_probe.penalties`, each
solver implements the interface of :mod:`sparse_probe.solvers.base` and is registered here
with the penalties it supports. ``fit_path`` picks one with :func:`get_solver` (a lookup by
name and penalty), never by identity.

==========  ==========================  ===============================================
name        penalties                   method
==========  ==========================  ===============================================
``owlqn``   ElasticNet                  OWL-QN + L-BFGS with penalty-optimal centering
``fista``   ElasticNet, GroupedEN       FISTA with backtracking and adaptive restart
``newton``  ElasticNet                  proximal Newton, exact Hessian on the free set
==========  ==========================  ===============================================
"""

from __future__ import annotations

from sparse_probe.penalties import ElasticNet, GroupedElasticNet, Penalty
from sparse_probe.solvers.base import Solver, SolveResult, SolverSpec
from sparse_probe.solvers.fista import fista
from sparse_probe.solvers.newton import newton
from sparse_probe.solvers.owlqn import owlqn

__all__ = ["DEFAULT_SOLVERS", "SOLVERS", "SolveResult", "Solver", "SolverSpec", "get_solver"]

SOLVERS: dict[str, SolverSpec] = {
    "owlqn": SolverSpec("owlqn", owlqn, (ElasticNet,), uses_logits=True),
    "fista": SolverSpec("fista", fista, (ElasticNet, GroupedElasticNet)),
    "newton": SolverSpec("newton", newton, (ElasticNet,), uses_logits=True),
}

DEFAULT_SOLVERS: dict[type[Penalty], str] = {ElasticNet: "owlqn", GroupedElasticNet: "fista"}
"""The solver ``fit_path`` uses for each penalty when none is named."""


def get_solver(name: str | None, penalty: Penalty) -> SolverSpec:
    """The registered solver ``name`` (None: the penalty's default) for ``penalty``.

    Raises ``ValueError`` for an unknown name or a solver that does not support the penalty.
    """
    if name is None:
        name = DEFAULT_SOLVERS.get(type(penalty))
        if name is None:
            raise ValueError(f"no default solver for penalty {type(penalty).__name__}; "
                             f"name one of {', '.join(SOLVERS)}")
    spec = SOLVERS.get(name)
    if spec is None:
        raise ValueError(f"unknown solver {name!r}; expected one of {', '.join(SOLVERS)}")
    if not spec.supports(penalty):
        ok = [n for n, s in SOLVERS.items() if s.supports(penalty)]
        raise ValueError(f"solver {name!r} does not support the {penalty.name} penalty; "
                         f"use one of {', '.join(ok)}")
    return spec
