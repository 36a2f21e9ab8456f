"""The compact-form L-BFGS memory against the textbook two-loop recursion."""

import numpy as np
import pytest
import torch
from helpers_lbfgs import push_pairs

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
    pairs = push_pairs(mem, A, g, n_pairs, history)
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


def _pairs(p, n_pairs, seed):
    A, g = spd(p, seed)
    out = []
    for _ in range(n_pairs):
        s = torch.randn(p, generator=g, dtype=torch.float64)
        out.append((s, A @ s))
    return out, g


def test_float32_storage_matches_two_loop_to_float32_precision():
    pairs, g = _pairs(80, 6, 3)
    mem = LBFGSMemory(8, storage_dtype=torch.float32)
    for s, y in pairs:
        assert mem.push(s, y)
    assert mem._SY.dtype == torch.float32
    q = torch.randn(80, generator=g, dtype=torch.float64)
    out = mem.apply(q)
    assert out.dtype == torch.float64
    ref = two_loop(q, pairs)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0,
                               atol=1e-4 * float(ref.abs().max()))


def test_add_to_y_equals_pairs_of_the_shifted_function():
    """y + delta*s are the gradient changes of f + delta/2 ||x||^2: same as pushing those."""
    pairs, g = _pairs(40, 5, 4)
    mem = LBFGSMemory(5)
    for s, y in pairs:
        mem.push(s, y)
    delta = -0.05  # the ridge weight drops, as it does down a path
    mem.add_to_y(delta)
    shifted = [(s, y + delta * s) for s, y in pairs]
    q = torch.randn(40, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, shifted).numpy(), rtol=1e-9,
                               atol=1e-12)
    assert mem.gamma == pytest.approx(float(shifted[-1][0] @ shifted[-1][1])
                                      / float(shifted[-1][1] @ shifted[-1][1]), rel=1e-12)


def test_add_to_y_drops_pairs_that_lose_curvature_and_push_reuses_their_slots():
    p = 12
    g = torch.Generator().manual_seed(5)
    curv = [0.5, 3.0, 4.0]  # y = c s: after delta = -1 the oldest pair has s.y < 0
    pairs = []
    mem = LBFGSMemory(3)
    for c in curv:
        s = torch.randn(p, generator=g, dtype=torch.float64)
        pairs.append((s, c * s))
        mem.push(s, c * s)
    live_before = list(mem.slots)
    mem.add_to_y(-1.0)
    assert len(mem) == 2 and mem.slots == live_before[1:]
    kept = [(s, y - s) for s, y in pairs[1:]]
    s = torch.randn(p, generator=g, dtype=torch.float64)
    assert mem.push(s, 5.0 * s)  # must go to the freed slot, not over a live pair
    assert sorted(mem.slots) == [0, 1, 2]
    kept.append((s, 5.0 * s))
    q = torch.randn(p, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, kept).numpy(), rtol=1e-10)


def test_embed_pads_the_pairs_with_zeros():
    pairs, g = _pairs(10, 4, 6)
    mem = LBFGSMemory(6)
    for s, y in pairs:
        mem.push(s, y)
    index = torch.tensor([0, 1, 2, 5, 6, 7, 8, 11, 12, 13])  # new coordinates: 3, 4, 9, 10
    mem.embed(index, 14)
    assert mem.dim == 14

    def pad(v):
        out = torch.zeros(14, dtype=torch.float64)
        out[index] = v
        return out

    padded = [(pad(s), pad(y)) for s, y in pairs]
    q = torch.randn(14, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, padded).numpy(), rtol=1e-10,
                               atol=1e-13)


@pytest.mark.parametrize(("n_pairs", "new_history"), [(7, 3), (4, 3), (2, 3), (7, 9), (0, 2)])
def test_resize_keeps_the_newest_pairs_and_their_products(n_pairs, new_history):
    """A memory cut to h pairs (or grown) applies as a memory given only its newest h pairs;
    pairs pushed afterwards wrap the new ring buffer as usual."""
    p, history = 40, 5
    A, g = spd(p, 30 + n_pairs)
    mem = LBFGSMemory(history)
    pairs = push_pairs(mem, A, g, n_pairs, history)
    mem.resize(new_history)
    assert mem.history == new_history
    pairs = pairs[-new_history:] if new_history else []
    assert len(mem) == len(pairs)
    for _ in range(new_history + 2):  # then the buffer of the new size fills and wraps
        q = torch.randn(p, generator=g, dtype=torch.float64)
        if pairs:
            np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, pairs).numpy(),
                                       rtol=1e-10, atol=1e-12 * float(q.abs().max()))
        s = torch.randn(p, generator=g, dtype=torch.float64)
        assert mem.push(s, A @ s)
        pairs = [*pairs, (s, A @ s)][-new_history:]
        assert len(mem) == len(pairs)


def _filled(p, seed, history, n_pairs):
    """A memory of ``history`` pairs after ``n_pairs`` pushes on a random SPD quadratic."""
    A, g = spd(p, seed)
    mem = LBFGSMemory(history)
    for _ in range(n_pairs):
        s = torch.randn(p, generator=g, dtype=torch.float64)
        mem.push(s, A @ s)
    return mem, A, g


def test_resize_to_the_same_history_changes_nothing():
    mem, _, _ = _filled(10, 3, 4, 6)
    buf, slots = mem._SY, list(mem.slots)
    mem.resize(4)
    assert mem._SY is buf and mem.slots == slots


def test_resize_after_clear_keeps_an_empty_buffer_of_the_new_size():
    # a cleared memory still has its buffer: no pair to keep (an empty index), the new size
    p = 8
    mem, A, g = _filled(p, 5, 4, 3)
    mem.clear()
    mem.resize(2)
    assert len(mem) == 0 and mem.history == 2 and mem._SY.shape == (4, p)
    s = torch.randn(p, generator=g, dtype=torch.float64)
    assert mem.push(s, A @ s)
    q = torch.randn(p, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), two_loop(q, [(s, A @ s)]).numpy(),
                               rtol=1e-10)
