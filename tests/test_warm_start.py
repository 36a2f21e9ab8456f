"""Warm-start extrapolation along the path and the shared softmax residual."""

import numpy as np
import pytest
import torch

from sparse_probe.fit import _predict
from sparse_probe.solvers.restricted import softmax_residual


def _quadratic_path(lam):
    u = np.log(lam)
    W = np.array([[1.0 + 0.3 * u + 0.05 * u**2, -2.0 + 0.1 * u], [0.0, 0.5 - 0.2 * u**2]])
    return W, np.array([0.1 * u, -0.1 * u])


def test_quadratic_extrapolation_is_exact_on_a_quadratic_path():
    lams = [0.5, 0.4, 0.32]
    hist = [(lam, *_quadratic_path(lam)) for lam in lams]
    W, b = _predict(hist, 0.25, order=2)
    W_true, b_true = _quadratic_path(0.25)
    same = np.all([np.sign(h[1]) == np.sign(hist[-1][1]) for h in hist], axis=0) & (hist[-1][1] != 0)
    np.testing.assert_allclose(W[same], W_true[same], rtol=1e-12)
    np.testing.assert_allclose(b, b_true, rtol=1e-12)
    # linear extrapolation is not exact on the same path
    W1, _ = _predict(hist, 0.25, order=1)
    assert np.abs(W1[same] - W_true[same]).max() > 1e-4


def test_extrapolation_keeps_signs_and_new_weights_in_place():
    hist = [(1.0, np.array([[0.0, 0.2, 0.0]]), np.zeros(1)),
            (0.8, np.array([[0.0, 0.1, 0.0]]), np.zeros(1)),
            (0.64, np.array([[0.3, 0.01, -0.2]]), np.zeros(1))]
    W, _ = _predict(hist, 0.5, order=2)
    assert W[0, 0] == 0.3 and W[0, 2] == -0.2  # just entered: no history, start where they are
    assert W[0, 1] == 0.0  # the trend would cross zero: clipped at zero, not flipped


def test_single_point_history_returns_it():
    W0, b0 = np.ones((2, 3)), np.zeros(2)
    W, b = _predict([(1.0, W0, b0)], 0.9)
    assert W is W0 and b is b0


def test_softmax_residual_matches_log_softmax():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 7, dtype=torch.float64, generator=g) * 30  # large logits: overflow-safe
    y = torch.randint(0, 7, (500,), generator=g)
    logp = torch.log_softmax(z, 1)
    loss, R = softmax_residual(z.clone(), y)
    assert abs(loss - float(-logp.gather(1, y[:, None]).sum())) <= 1e-9 * abs(loss)
    expect = logp.exp()
    expect[torch.arange(500), y] -= 1
    torch.testing.assert_close(R, expect, rtol=0, atol=1e-12)
    zc = z.clone()
    loss2, R2 = softmax_residual(zc, y, inplace=True)
    assert R2.data_ptr() == zc.data_ptr() and loss2 == loss


@pytest.mark.parametrize("inplace", [False, True])
def test_softmax_residual_overflowing_shift_and_scale(inplace):
    """Logits far below another class's (z - z_y > 700 would overflow exp) take the
    max-shifted path and still match log_softmax; ``scale`` multiplies the residual only."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(300, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 5, (300,), generator=g)
    z[0, (int(y[0]) + 1) % 5] = 900.0
    z[1, int(y[1])] = -2000.0
    logp = torch.log_softmax(z, 1)
    loss, R = softmax_residual(z.clone(), y, inplace=inplace, scale=0.25)
    ref = float(-logp.gather(1, y[:, None]).sum())
    assert abs(loss - ref) <= 1e-12 * abs(ref)
    expect = logp.exp()
    expect[torch.arange(300), y] -= 1
    torch.testing.assert_close(R, 0.25 * expect, rtol=0, atol=1e-14)
