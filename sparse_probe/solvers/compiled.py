"""Loading an optional compiled kernel once, checked against its reference.

The solvers' C extensions (``_softmax_ce``, ``_centering``; ``_gram_cd`` has its own list of
candidates) are optional: a build without a C compiler goes on without them. Where one is
built it is used only after a self-check against the pure-Python route it replaces, once per
process: a kernel that disagrees is logged and left out.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

__all__ = ["checked_kernel"]


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
