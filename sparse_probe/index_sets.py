"""Sorted sets of integer indices (feature numbers, flat weight keys) as numpy arrays.

The path fit joins and compares working sets at every point and every KKT round. numpy 2.4's
``np.unique`` on integers (and ``np.union1d``, and ``np.setdiff1d`` without
``assume_unique``, which call it) goes through a hash table before it sorts: on 6,000 int64
indices 428 us against 36 us for a sort and a comparison of neighbours, 4.8-14x from 300
indices on (numpy 2.4.6, the lock file's; ``benchmarks/measure_index_sets.py``,
``results/index-sets-cpu-2026-12-05.txt``). The n << d bench path made ~300 such calls, 80 ms
of its 1.7 s (an ad hoc cProfile run). These helpers sort instead; their results equal
numpy's (sorted, distinct, the input's dtype). ``np.isin`` without ``assume_unique`` calls
``np.unique`` too, whose first call in a process imports ``numpy.ma`` (7 ms of a fresh
process's fit; numpy 2.4, an ad hoc cProfile run): :func:`members` searches a sorted copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["difference", "members", "union", "unique"]


def unique(a: np.ndarray) -> np.ndarray:
    """The distinct entries of ``a`` (any shape, flattened), sorted: ``np.unique(a)``.

    Parameters
    ----------
    a : ndarray of integers

    Returns
    -------
    ndarray of shape (k,), the dtype of ``a``
    """
    s = np.sort(np.asarray(a).ravel())
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The entries in ``a`` or ``b``, sorted and distinct: ``np.union1d(a, b)``."""
    return unique(np.concatenate([np.ravel(a), np.ravel(b)]))


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The entries of ``a`` not in ``b``, sorted and distinct: ``np.setdiff1d(a, b)``."""
    a = unique(a)
    return a[~members(a, b)]


def members(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each entry of ``a`` is in ``b``: ``np.isin(a, b)``.

    Parameters
    ----------
    a, b : ndarray of integers (any shapes; ``b`` flattened)

    Returns
    -------
    ndarray of bool, the shape of ``a``
    """
    a = np.asarray(a)
    s = np.sort(np.ravel(b))
    if s.size == 0:
        return np.zeros(a.shape, dtype=bool)
    i = np.searchsorted(s, a)
    np.minimum(i, s.size - 1, out=i)
    return s[i] == a
