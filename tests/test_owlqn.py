"""OWL-QN pieces: the projected direction, buffers that must not leak into the caller's
tensors, the float32 step product, and the curvature memory carried along the path."""

import numpy as np
import pytest
import torch

from sparse_probe.fit import _carry_memory
from sparse_probe.objective import kkt_violation
from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers.lbfgs import LBFGSMemory
from sparse_probe.solvers.owlqn import _direction, owlqn
from sparse_probe.solvers.restricted import RestrictedData


def _problem(n=600, m=8, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    W = torch.randn(C, m, generator=g, dtype=torch.float64)
    y = torch.argmax(X.double() @ W.T + 0.5 * torch.randn(n, C, generator=g,
                                                            dtype=torch.float64), 1)
    return X, y, C


def test_direction_keeps_free_coordinates_and_projects_at_zero():
    mem = LBFGSMemory(3)
    s = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    y = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)  # coupling of 0 and 1
    assert mem.push(s, y)
    pg = torch.tensor([1.0, 0.1, 0.1, -0.2], dtype=torch.float64)
    q = mem.apply(pg)
    # the quasi-Newton step disagrees in sign with pg on some coordinate
    disagree = (q * pg <= 0).nonzero()[:, 0]
    assert disagree.numel() > 0
    free = torch.tensor([True, True, False, False])
    d_free = _direction(pg, mem, free=free)
    d_all = _direction(pg, mem)
    for j in range(4):
        if free[j]:
            assert d_free[j] == -q[j]  # kept whole where the objective is smooth
        else:
            assert d_free[j] == (-q[j] if q[j] * pg[j] > 0 else 0.0)
        assert d_all[j] == (-q[j] if q[j] * pg[j] > 0 else 0.0)  # Andrew & Gao everywhere
    assert float(pg @ d_free) < 0 and float(pg @ d_all) < 0


def test_owlqn_leaves_the_callers_logits_alone_and_converges():
    X, y, C = _problem()
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    m = X.shape[1]
    W0 = torch.zeros(C, m, dtype=torch.float64)
    b0 = torch.zeros(C, dtype=torch.float64)
    z0 = data.logits64(W0, b0)
    z0_copy = z0.clone()
    lam, alpha = 0.01, 0.9
    res = owlqn(data, W0, b0, lam, ElasticNet(alpha), tol=1e-7, z0=z0)
    torch.testing.assert_close(z0, z0_copy, rtol=0, atol=0)
    assert res.converged
    # the returned logits are the solution's (the buffers were swapped, not mixed up), up to
    # the per-row constants that recentering adds
    ref = data.logits64(res.W, res.b)
    diff = res.logits - ref
    torch.testing.assert_close(diff - diff.mean(1, keepdim=True), torch.zeros_like(diff),
                               rtol=0, atol=1e-5)
    _, G, gb = data.loss_grad(res.W, res.b)
    assert float(kkt_violation(G.numpy(), res.W.numpy(), lam, alpha, False).max()) <= 2e-7
    assert float(gb.abs().max()) <= 2e-7


@pytest.mark.parametrize("seed", [0, 5])
def test_owlqn_converges_on_exact_logits_not_drifted_ones(seed):
    """Kept logits move by float32 products between exact recomputations; the solver may only
    declare convergence on exact ones (else its KKT test, and the caller's after it, judge
    logits the weights do not have). Here no periodic resync at all: every iteration drifts."""
    X, y, C = _problem(n=900, m=10, C=4, seed=seed)
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    W0 = torch.zeros(C, X.shape[1], dtype=torch.float64)
    b0 = torch.zeros(C, dtype=torch.float64)
    lam, alpha, tol = 3e-3, 0.9, 1e-8
    res = owlqn(data, W0, b0, lam, ElasticNet(alpha), tol=tol, resync_every=10**9)
    assert res.converged and res.n_iter > 5
    ref = data.logits64(res.W, res.b)
    torch.testing.assert_close(res.logits, ref, rtol=0, atol=0)
    loss, G, gb = data.loss_grad(res.W, res.b)
    assert res.loss == loss
    # the solver's gradient is its smooth part's less the ridge term: rounding only
    torch.testing.assert_close(res.grad, G, rtol=0, atol=1e-15)
    torch.testing.assert_close(res.grad_b, gb, rtol=0, atol=0)
    assert res.violation <= tol


def test_step_is_the_float32_product_plus_bias():
    X, y, C = _problem(n=333)
    data = RestrictedData(X, y, C)
    g = torch.Generator().manual_seed(1)
    dW = torch.randn(C, X.shape[1], generator=g, dtype=torch.float64)
    db = torch.randn(C, generator=g, dtype=torch.float64)
    dz = data.step(dW, db)
    assert dz.dtype == torch.float32
    ref = X.double() @ dW.T + db
    torch.testing.assert_close(dz.double(), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


def test_residual_buffer_is_reused_and_gradient_matches_float64():
    X, y, C = _problem(n=501)
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    g = torch.Generator().manual_seed(2)
    W = torch.randn(C, X.shape[1], generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    z = data.logits64(W, b)
    _, R1 = data.ce(z)
    R1_copy = R1.clone()
    _, R2 = data.ce(z + 1.0)  # a per-row constant: same residual, same buffer
    assert R2.data_ptr() == R1.data_ptr()
    torch.testing.assert_close(R2, R1_copy, rtol=0, atol=1e-15)
    G, gb = data.grad(R2)
    P = torch.softmax(X.double() @ W.T + b, 1)
    Y = torch.nn.functional.one_hot(y, C).double()
    ref_G = (P - Y).T @ X.double() / X.shape[0]
    ref_gb = (P - Y).mean(0)
    # G: a float32 product (R rounded to float32): a few ulps of the largest entry
    torch.testing.assert_close(G, ref_G, rtol=0, atol=4e-6 * float(ref_G.abs().max()))
    torch.testing.assert_close(gb, ref_gb, rtol=0, atol=1e-12)  # summed in float64


def test_carried_memory_follows_the_working_set():
    C = 2
    mem = LBFGSMemory(4)
    g = torch.Generator().manual_seed(0)
    old_ws = np.array([4, 9, 1])
    s = torch.randn(C * 3 + C, generator=g, dtype=torch.float64)
    assert mem.push(s, 2 * s)
    # same set: as is
    assert _carry_memory(mem, old_ws, old_ws.copy(), C) is mem and mem.dim == 8
    # features dropped or reordered: start afresh
    assert _carry_memory(mem, old_ws, np.array([4, 9]), C) is None
    assert _carry_memory(mem, old_ws, np.array([9, 4, 1]), C) is None
    # appended: W (C, m) rows grow, the bias moves to the end
    out = _carry_memory(mem, old_ws, np.array([4, 9, 1, 7, 0]), C)
    assert out is mem and mem.dim == C * 5 + C
    stored = mem._SY[mem.slots[0]].view(-1)
    W_old, b_old = s[: C * 3].view(C, 3), s[C * 3 :]
    W_new, b_new = stored[: C * 5].view(C, 5), stored[C * 5 :]
    torch.testing.assert_close(W_new[:, :3], W_old)
    assert bool((W_new[:, 3:] == 0).all())
    torch.testing.assert_close(b_new, b_old)
    # a working set so large that 80 pairs would outgrow the buffer's budget: start afresh
    mem80 = LBFGSMemory(80)
    assert mem80.push(s, 2 * s)
    big = np.concatenate([old_ws, np.arange(10, 10 + 300_000)])
    assert _carry_memory(mem80, old_ws, big, C) is None
    assert mem80.dim == C * 3 + C  # untouched


@pytest.mark.slow
@pytest.mark.parametrize("history", [1, 10])
def test_owlqn_reuses_a_carried_memory(history):
    """A memory from a neighbouring λ is updated for the new ridge weight and reused: the
    solve reaches the same KKT tolerance."""
    X, y, C = _problem(seed=4)
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    m = X.shape[1]
    W0 = torch.zeros(C, m, dtype=torch.float64)
    b0 = torch.zeros(C, dtype=torch.float64)
    alpha = 0.5
    first = owlqn(data, W0, b0, 0.02, ElasticNet(alpha), tol=1e-8, history=history)
    mem = first.memory
    assert mem is not None and len(mem) > 0 and mem.ridge == pytest.approx(0.02 * (1 - alpha))
    second = owlqn(data, first.W, first.b, 0.015, ElasticNet(alpha), tol=1e-8, memory=mem)
    assert second.memory is mem and mem.ridge == pytest.approx(0.015 * (1 - alpha))
    assert second.converged
    _, G, gb = data.loss_grad(second.W, second.b)
    assert float(kkt_violation(G.numpy(), second.W.numpy(), 0.015, alpha, False).max()) <= 2e-8
    assert float(gb.abs().max()) <= 2e-8
