"""Loading an optional compiled kernel once, checked against its reference.

The solvers' C extensions (``_softmax_ce``, ``_centering``; ``_gram_cd`` has its own list of
candidates) are optional: a build without a C compiler goes on without them. Where one is
built it is used only after a self-check against the pure-Python route it replaces, once per
process: a kernel that disagrees is logged and left out. The checks draw their data from
torch's generator (:class:`CheckDraws`), not ``numpy.random``, which a fit does not import
otherwise (its first import took 5 ms of a fresh process's fit, an ad hoc cProfile run).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["CheckDraws", "checked_kernel"]


class CheckDraws:
    """Seeded float64 draws for a kernel's self-check, as numpy arrays (torch's CPU
    generator: the same draws on every machine)."""

    def __init__(self, seed: int = 0):
        self._g = torch.Generator().manual_seed(seed)

    def standard_normal(self, shape) -> np.ndarray:
        """Standard normal draws of ``shape``."""
        return torch.randn(shape, generator=self._g, dtype=torch.float64).numpy()

    def uniform(self, low: float, high: float, shape) -> np.ndarray:
        """Uniform draws on ``[low, high)`` of ``shape``."""
        u = torch.rand(shape, generator=self._g, dtype=torch.float64).numpy()
        return low + (high - low) * u

    def simplex(self, rows: int, k: int) -> np.ndarray:
        """``rows`` points drawn uniformly from the probability simplex of ``k`` entries,
        shape (rows, k): normalized standard exponentials (a flat Dirichlet)."""
        e = -np.log1p(-self.uniform(0.0, 1.0, (rows, k)))
        return e / e.sum(1, keepdims=True)


def checked_kernel(state: dict, key: str, module: str, name: str,
                   agrees: Callable[[Callable], bool], log: logging.Logger, what: str,
                   reference: str, instead: str):
    """``module.name`` once ``agrees`` accepted it, cached in ``state[key]``; None where the
    module is not built (a debug line) or the check failed (a warning). Either way decided
    once: ``state[key]`` holds the answer until the caller clears it.

    Parameters
    ----------
    state : dict
        The caller's cache (its module's own, so tests can swap it).
    key : str
        The kernel's entry in ``state``.
    module, name : str
        Where the kernel is (``"sparse_probe.solvers._centering"``, ``"shifts"``).
    agrees : callable
        The self-check: the kernel in, true where it matches the reference route.
    log : logging.Logger
        The caller's logger.
    what, reference, instead : str
        For the log lines: ``"<what> not built; using <instead>"`` and ``"<what> disagrees
        with <reference> on a self-check; using <instead>"``.
    """
    if key not in state:
        state[key] = None
        try:
            fn = getattr(importlib.import_module(module), name)
        except ImportError:  # not built (no compiler at install)
            log.debug("%s not built; using %s", what, instead)
            return None
        if agrees(fn):
            state[key] = fn
        else:
            log.warning("%s disagrees with %s on a self-check; using %s", what, reference,
                        instead)
    return state[key]
