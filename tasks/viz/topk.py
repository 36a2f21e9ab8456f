"""Top-activating examples of a feature."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Direction", "direction_for", "top_k"]

Direction = Literal["highest", "lowest"]


def direction_for(weight: float) -> Direction:
    """``"highest"`` for a positive class weight, ``"lowest"`` for a negative one."""
    return "lowest" if weight < 0 else "highest"


def top_k(values: np.ndarray, k: int, direction: Direction = "highest") -> np.ndarray:
    """Indices of the ``k`` examples with the highest (or lowest) feature value.

    Parameters
    ----------
    values : ndarray of shape (n,)
        One feature's value on every example.
    k : int
        Number of examples (fewer when ``n < k``).
    direction : {"highest", "lowest"}

    Returns
    -------
    ndarray of shape (min(k, n),), int64
        Example indices, most extreme first; ties keep the earlier example first.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if direction not in ("highest", "lowest"):
        raise ValueError(f"direction must be 'highest' or 'lowest', got {direction!r}")
    if k < 1:
        raise ValueError("k must be >= 1")
    key = -v if direction == "highest" else v
    key = np.where(np.isnan(key), np.inf, key)
    return np.argsort(key, kind="stable")[:k].astype(np.int64)
