"""Penalty-optimal centering: checked against scipy's scalar minimizer, and its premise (the loss
does not change) against a float64 evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from sparse_probe.objective import objective_f64
from sparse_probe.solvers.centering import _center_shift_torch, center_shift


def _penalty(w: np.ndarray, alpha: float, grouped: bool) -> float:
    l1 = np.sqrt((w * w).sum()) if grouped else np.abs(w).sum()
    return alpha * l1 + 0.5 * (1 - alpha) * (w * w).sum()


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.5, 0.05])
def test_shift_minimizes_each_column_penalty(alpha, grouped):
    rng = np.random.default_rng(3)
    C, m = 7, 40
    W = rng.standard_normal((C, m)) * (rng.random((C, m)) < 0.7)
    W[:, 0] = 0.0  # a zero column
    W[:, 1] = 2.5  # all classes equal: the best shift cancels it
    c = center_shift(torch.as_tensor(W), alpha, grouped).numpy()
    assert c[0] == 0.0
    for j in range(m):
        w = W[:, j]
        ref = minimize_scalar(lambda t, w=w: _penalty(w + t, alpha, grouped),
                              bounds=(-10, 10), method="bounded",
                              options={"xatol": 1e-12})
        ours = _penalty(w + c[j], alpha, grouped)
        # never worse than the scalar minimizer (tolerance: its bracketing accuracy)
        assert ours <= ref.fun + 1e-9, (j, ours, ref.fun)
        # and never worse than no shift at all
        assert ours <= _penalty(w, alpha, grouped) + 1e-15
    np.testing.assert_allclose(c[1], -2.5, atol=1e-12)


def test_shift_keeps_sparse_columns_exactly():
    # fewer than half the classes nonzero: the L1 median is 0, so the column must stay as is
    W = np.zeros((10, 3))
    W[:3, 0] = [0.4, -1.0, 2.0]
    W[:4, 1] = 0.7
    W[0, 2] = -3.0
    c = center_shift(torch.as_tensor(W), 0.99).numpy()
    np.testing.assert_array_equal(c, 0.0)


def test_loss_is_invariant_and_objective_drops():
    rng = np.random.default_rng(0)
    n, d, C = 300, 12, 5
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    W = rng.standard_normal((C, d)) + 0.8  # every column off-center
    b = rng.standard_normal(C)
    lam, alpha = 0.05, 0.9
    c = center_shift(torch.as_tensor(W), alpha).numpy()
    Wc = W + c[None, :]
    # same loss: objective difference equals the penalty difference exactly
    pen = lambda V: lam * (alpha * np.abs(V).sum() + 0.5 * (1 - alpha) * (V * V).sum())  # noqa: E731
    before = objective_f64(X, y, W, b, lam, alpha)
    after = objective_f64(X, y, Wc, b, lam, alpha)
    np.testing.assert_allclose(before - after, pen(W) - pen(Wc), rtol=1e-10, atol=1e-12)
    assert after < before - 1e-3


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.99, 0.3])
def test_numpy_and_torch_paths_agree(alpha, grouped):
    """CPU tensors take the numpy implementation, other devices the torch one: same shifts."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((9, 300)) * (rng.random((9, 300)) < 0.6)
    W[:, :5] = 0.0
    W[:, 5:8] = 1.25
    Wt = torch.as_tensor(W)
    c_np = center_shift(Wt, alpha, grouped)
    c_t = _center_shift_torch(Wt, alpha, grouped)
    assert c_np.dtype == Wt.dtype
    np.testing.assert_allclose(c_np.numpy(), c_t.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(c_np.numpy() == 0, c_t.numpy() == 0)
