"""Exact copies among the feature columns, and the equal split of their weights.

Where columns ``j`` and ``j'`` of ``X`` are the same, the loss sees only the sum of their
weights (per class), so every split of that sum fits the data equally well; the penalty
(elementwise elastic net or the grouped one: a sum over features of a convex function of a
feature's weights) is lowest at the equal split (Jensen's inequality), strictly so with any
ridge, and that split is the unique optimum. A solver that updates coordinates one at a time
(the proximal Newton model's coordinate descent, :mod:`sparse_probe.solvers.data_cd` and
:mod:`sparse_probe.solvers.gram_cd`) splits such a sum unequally, and the only force that
evens it out is the ridge, ``(1 − α) λ`` (a hundredth of the L1 weight at α = 0.99). OWL-QN,
whose updates of equal gradients are equal, keeps an even split even, but started from an
uneven one it crawled: on a held-out n ≪ d path with a fifth of its columns copied
(929 × 5,468 × 20) its points after one Newton point took 64-273 iterations against 53-69 on
the path OWL-QN solved alone (ad hoc runs), and the path's last five Newton points each
handed over to OWL-QN. With the split: 9.9 s against 18.4 s (901 OWL-QN iterations against
1,501), and 2.10× and 1.35× on two more such draws; paths without copies unchanged
(``benchmarks/measure_copied_columns.py``, ``results/copied-columns-cpu-2026-12-06.txt``).

:func:`copy_groups` finds the copies once per fit (candidates: columns whose first rows are
the same and whose statistics, which the fit computes anyway, agree; confirmed on the data,
in one more pass only where there are candidates); :func:`equal_split` evens each group's weights
after every solve, before the fit's KKT pass certifies the point (the logits, the loss and
its gradient are unchanged; the penalty can only drop).
"""

from __future__ import annotations

import numpy as np
import torch

from sparse_probe.data import FeatureSource

__all__ = ["copy_groups", "equal_split"]


def copy_groups(src: FeatureSource, mean: np.ndarray, std: np.ndarray) -> list[np.ndarray]:
    """Groups of columns of ``src`` that are exact copies of each other, constant columns
    left out.

    Parameters
    ----------
    src : FeatureSource
        The features, shape (n, d).
    mean, std : ndarray of shape (d,)
        The columns' means and standard deviations (``column_stats``, whose spread of a
        constant column is exactly 1): copies agree in them up to the sums' rounding, which
        may differ from column to column (a reduction's vector lanes and tail), so they are
        compared to :data:`STATS_RTOL`.

    Returns
    -------
    list of ndarray of int64
        Each group's columns in ascending order (two or more); groups in the order of their
        first column. Empty where no two columns are candidates (no further read of the data
        then).

    Notes
    -----
    Candidates are columns whose first :data:`HEAD_ROWS` values are the same bits (read from
    the first rows only) and whose statistics agree; each candidate group is then compared in
    the data's own dtype, chunk by chunk, against its first column, and a candidate that
    differs anywhere starts a group of its own among the rest. Constant columns (standardized
    to zero, they never carry a weight) are left out: those whose first rows are all the same
    and whose spread is 1 (``column_stats``' mark).
    """
    mean, std = np.asarray(mean), np.asarray(std)
    if mean.shape != (src.d,) or std.shape != (src.d,):
        raise ValueError(f"copy_groups: mean {mean.shape} and std {std.shape} must be ({src.d},)")
    head = _numpy(next(iter(src.chunks(min(HEAD_ROWS, src.n))))[1])
    # one key per column: its first values' bytes
    keys = np.ascontiguousarray(head.T).view(np.dtype((np.void, head.shape[0] * head.itemsize)))
    _, inverse = np.unique(keys[:, 0], return_inverse=True)
    # constant columns (column_stats gives them a spread of exactly 1): on their own, so that
    # a ReLU's dead units, all zero, cost no pass over the data
    flat = (head == head[0]).all(0) & (std == 1.0)
    order = np.lexsort((mean, inverse))  # by key, then by mean
    a, b = order[:-1], order[1:]  # neighbours in that order: linked where they agree
    new_run = np.ones(src.d, dtype=bool)
    new_run[1:] = ~((inverse[a] == inverse[b]) & ~flat[a] & ~flat[b]
                    & (np.abs(mean[a] - mean[b]) <= STATS_RTOL * (np.abs(mean[a]) + std[a]))
                    & (np.abs(std[a] - std[b]) <= STATS_RTOL * std[a]))
    label = np.empty(src.d, dtype=np.int64)  # each column's group head: its run's first
    label[order] = order[np.flatnonzero(new_run)[np.cumsum(new_run) - 1]]
    cand = np.flatnonzero(np.bincount(label)[label] > 1)
    if cand.size == 0:
        return []
    # lab[i]: the position in cand of candidate i's group head (a candidate itself); split
    # off below where the data differ
    lab = np.searchsorted(cand, label[cand])
    for _, block in src.chunks():
        B = _numpy(block)[:, cand]
        while True:  # split every group whose members differ from its head in this block
            differs = ~(B[:, lab] == B).all(0)
            if not differs.any():
                break
            # the differing members regroup under the first of them with the same head
            for h in np.unique(lab[differs]):
                moved = np.flatnonzero(differs & (lab == h))
                lab[moved] = moved[0]
    groups = []
    for h in np.unique(lab):
        members = cand[lab == h]
        if members.size > 1:
            groups.append(np.sort(members))
    groups.sort(key=lambda g: int(g[0]))
    return groups


HEAD_ROWS = 8
"""Rows whose values make a column's key in :func:`copy_groups` (read once, from the start)."""

STATS_RTOL = 1e-9
"""How far copies' means and standard deviations may differ in :func:`copy_groups`, relative
to the spread: their float64 sums differ by rounding only (~1e-16)."""


def _numpy(block) -> np.ndarray:
    """A row block (numpy, or a torch tensor on any device) as a numpy array in its own
    dtype."""
    return block.detach().cpu().numpy() if isinstance(block, torch.Tensor) else np.asarray(block)


def equal_split(W: np.ndarray, groups: list[np.ndarray], within: np.ndarray) -> int:
    """Even out each group's weights, in place: the members inside ``within`` (the working
    set: the fit's logits and gradients see no others) all get their mean, per class.

    Parameters
    ----------
    W : ndarray of shape (C, d)
        Weights per class and column (the fit's standardized ones; copies share their
        standardization, so an equal split there is one in the original units too).
    groups : list of ndarray of int
        :func:`copy_groups`.
    within : ndarray of int
        Columns whose weights may change (the others stay at zero).

    Returns
    -------
    int
        Groups whose weights changed.

    Notes
    -----
    The loss sees the members' sum, which the mean keeps (up to rounding); with the members
    outside ``within`` at zero, the penalty at the mean is at most the original's.
    """
    if not groups:
        return 0
    cols = np.concatenate(groups)
    gid = np.repeat(np.arange(len(groups)), [g.size for g in groups])  # nondecreasing
    inside = np.zeros(W.shape[1], dtype=bool)
    inside[within] = True
    cols, gid = cols[inside[cols]], gid[inside[cols]]
    heads, first, count = np.unique(gid, return_index=True, return_counts=True)
    at = np.searchsorted(heads, gid)  # each member's group among those inside
    block = W[:, cols]
    # groups whose members inside are not all at their first one's weights (a group with
    # one member inside never is)
    uneven = np.zeros(heads.size, dtype=bool)
    uneven[at[(block != block[:, first[at]]).any(0)]] = True
    if not uneven.any():
        return 0
    even = np.add.reduceat(block, first, axis=1) / count  # (C, groups inside): the means
    move = uneven[at]
    W[:, cols[move]] = even[:, at[move]]
    return int(uneven.sum())
