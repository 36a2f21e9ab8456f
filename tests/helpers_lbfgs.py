"""Curvature pairs for the L-BFGS memory tests (test_lbfgs.py, test_class_blocks.py)."""

import torch


def push_pairs(mem, A, g, n_pairs, history):
    """Push ``n_pairs`` random steps with their gradient changes ``A s``; the newest
    ``history`` pairs, oldest first."""
    pairs = []
    for _ in range(n_pairs):
        s = torch.randn(A.shape[0], generator=g, dtype=torch.float64)
        assert mem.push(s, A @ s)
        pairs = [*pairs, (s, A @ s)][-history:]
    return pairs
