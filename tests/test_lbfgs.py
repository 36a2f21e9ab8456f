"""The compact-form L-BFGS memory against the textbook two-loop recursion."""

import numpy as np
import pytest
import torch

from sparse_probe.solvers.lbfgs import LBFGSMemory


def two_loop(q, pairs):
    """Nocedal & Wright, Algorithm 7.4, with H0 = (s.y / y.y of the newest pair) I."""
    q = q.clone()
    alphas = []
    for s, y in reversed(pairs):
        a = float(s @ q) / float(s @ y)
        q -= a * y
        alphas.append(a)
    s, y = pairs[-1]
    q *= float(s @ y) / float(y @ y)
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        q += (a - float(y @ q) / float(s @ y)) * s
    return q


def spd(p, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(p, p, generator=g, dtype=torch.float64)
    return A @ A.T / p + 0.1 * torch.eye(p, dtype=torch.float64), g


@pytest.mark.parametrize("n_pairs", [1, 3, 5, 12])  # 12 > history: the ring buffer wraps
def test_apply_matches_two_loop(n_pairs):
    p, history = 60, 5
    A, g = spd(p, n_pairs)
    mem = LBFGSMemory(history)
    pairs = []
    for _ in range(n_pairs):
        s = torch.randn(p, generator=g, dtype=torch.float64)
        assert mem.push(s, A @ s)
        pairs = [*pairs, (s, A @ s)][-history:]
    assert len(mem) == min(n_pairs, history)
    s, y = pairs[-1]
    assert mem.gamma == pytest.approx(float(s @ y) / float(y @ y), rel=1e-14)
    for _ in range(3):
        q = torch.randn(p, generator=g, dtype=torch.float64)
        ref = two_loop(q, pairs)
        np.testing.assert_allclose(mem.apply(q).numpy(), ref.numpy(), rtol=1e-10,
                                   atol=1e-12 * float(ref.abs().max()))


def test_secant_equation_of_the_newest_pair():
    """BFGS updates satisfy H y = s for the newest pair exactly (up to rounding)."""
    p = 6
    A, g = spd(p, 7)
    mem = LBFGSMemory(history=p)
    for _ in range(p):
        s = torch.randn(p, generator=g, dtype=torch.float64)
        mem.push(s, A @ s)
    s = mem._SY[mem.slots[-1]]
    y = mem._SY[mem.history + mem.slots[-1]]
    np.testing.assert_allclose(mem.apply(y).numpy(), s.numpy(), rtol=1e-9, atol=1e-11)


def test_rejects_nonpositive_curvature_and_clear_restarts():
    mem = LBFGSMemory(3)
    s = torch.ones(4, dtype=torch.float64)
    assert not mem.push(s, -s)  # s.y < 0
    assert not mem.push(s, torch.zeros(4, dtype=torch.float64))
    assert len(mem) == 0 and mem.gamma is None
    assert mem.push(s, 2 * s)
    assert mem.gamma == pytest.approx(0.5)
    mem.clear()
    assert len(mem) == 0
    assert mem.push(s, 4 * s)  # reuses the buffers; stale slots carry no weight
    q = torch.arange(4, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, [(s, 4 * s)]).numpy(),
                               rtol=1e-12)
