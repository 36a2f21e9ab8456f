"""The penalty objects: value, L1/L2 split, proximal operator, dual norm and KKT violation,
checked against their definitions (numpy and torch alike)."""

import numpy as np
import pytest
import torch

from sparse_probe.objective import kkt_violation, penalty_value
from sparse_probe.penalties import (
    DEFAULT_ALPHA,
    ElasticNet,
    GroupedElasticNet,
    make_penalty,
)

PENALTIES = [ElasticNet(0.7), GroupedElasticNet(0.7), ElasticNet(1.0), GroupedElasticNet(0.2)]


def _weights(seed=0, C=4, d=9):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((C, d)) * (rng.random((C, d)) < 0.6)
    W[:, 0] = 0.0
    return W


def test_split_default_and_bad_alpha():
    assert ElasticNet().alpha == DEFAULT_ALPHA == 0.99
    l1, l2 = ElasticNet(0.75).l1_l2(2.0)
    assert (l1, l2) == (1.5, 0.5)
    assert make_penalty(0.5, grouped=True) == GroupedElasticNet(0.5)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"alpha \(the L1 share\) must be in \(0, 1\]"):
            ElasticNet(bad)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_value_matches_the_definition_in_numpy_and_torch(pen):
    W, lam = _weights(), 0.3
    p1 = np.sqrt((W**2).sum(0)).sum() if pen.grouped else np.abs(W).sum()
    expect = lam * (pen.alpha * p1 + 0.5 * (1 - pen.alpha) * (W**2).sum())
    assert pen.value(W, lam) == pytest.approx(expect, rel=1e-14)
    assert pen.value(torch.as_tensor(W), lam) == pytest.approx(expect, rel=1e-14)
    assert penalty_value(W, lam, pen.alpha, pen.grouped) == pytest.approx(expect, rel=1e-14)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_prox_output_satisfies_the_prox_optimality_condition(pen):
    """Z = prox(V) minimizes ||W - V||^2 / (2 t) + λ P(W): (Z - V)/t is then a 'gradient' whose
    KKT violation at Z is zero, and coordinates (groups) below the threshold are exactly 0."""
    V, lam, t = 2.0 * _weights(1), 0.8, 0.5
    Z = pen.prox(V, lam, t)
    assert np.all(pen.kkt_violation((Z - V) / t, Z, lam) <= 1e-12)
    Zt = pen.prox(torch.as_tensor(V), lam, t)
    np.testing.assert_allclose(Zt.numpy(), Z, rtol=1e-13, atol=1e-15)
    small = pen.dual_norm(V) <= t * lam * pen.alpha  # whole feature shrunk to 0
    assert np.all(Z[:, small] == 0) and np.all(np.any(Z[:, ~small] != 0, axis=0))


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_kkt_violation_numpy_torch_and_objective_wrapper_agree(pen):
    W, lam = _weights(2), 0.4
    G = np.random.default_rng(3).standard_normal(W.shape)
    v = pen.kkt_violation(G, W, lam)
    assert v.shape == (W.shape[1],) and np.all(v >= 0)
    np.testing.assert_allclose(pen.kkt_violation(torch.as_tensor(G), torch.as_tensor(W), lam)
                               .numpy(), v, rtol=1e-13)
    np.testing.assert_array_equal(kkt_violation(G, W, lam, pen.alpha, pen.grouped), v)
    # a zero feature violates exactly by how far its dual norm exceeds λα
    l1 = lam * pen.alpha
    assert v[0] == pytest.approx(max(pen.dual_norm(G)[0] - l1, 0.0), abs=1e-14)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_lambda_max_and_screen(pen):
    G0 = np.random.default_rng(4).standard_normal((3, 20))
    lam_max = pen.lambda_max(G0)
    # W = 0 is optimal at λ_max (no violation) and not below it
    zero = np.zeros_like(G0)
    assert pen.kkt_violation(G0, zero, lam_max).max() <= 1e-12
    assert pen.kkt_violation(G0, zero, 0.99 * lam_max).max() > 0
    # strong rule from λ_max to λ: the features whose dual norm reaches α(2λ - λ_max)
    lam = 0.8 * lam_max
    keep = pen.screen(G0, lam, lam_max)
    np.testing.assert_array_equal(keep, pen.dual_norm(G0) >= pen.alpha * (2 * lam - lam_max))
    assert 0 < keep.sum() < 20


def test_make_penalty_default_is_elementwise():
    pen = make_penalty(0.5)
    assert type(pen) is ElasticNet and not pen.grouped
    assert type(make_penalty()) is ElasticNet and make_penalty().alpha == DEFAULT_ALPHA
    assert type(make_penalty(0.5, True)) is GroupedElasticNet


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_torch_input_stays_in_torch(pen):
    # a numpy round trip would fail for tensors on a GPU: every method must stay in torch
    import warnings

    W = _weights(5)
    G = np.random.default_rng(6).standard_normal(W.shape)
    Wt, Gt = torch.as_tensor(W), torch.as_tensor(G)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dn, pr = pen.dual_norm(Gt), pen.prox(Wt, 0.3, 0.5)
        kk = pen.kkt_violation(Gt, Wt, 0.3)
    for got, ref in [(dn, pen.dual_norm(G)), (pr, pen.prox(W, 0.3, 0.5)),
                     (kk, pen.kkt_violation(G, W, 0.3))]:
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_kkt_violation_without_warnings_at_zero_weights(pen):
    # zero weights (and lam = 0) must not divide by zero on the way
    import warnings

    W = _weights(7)
    G = np.random.default_rng(8).standard_normal(W.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = pen.kkt_violation(G, W, 0.3)
        v0 = pen.kkt_violation(G, W, 0.0)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(v0))
    # at lam = 0 the conditions are G = 0: the violation is the gradient's own size
    ref = np.sqrt((G**2).sum(0)) if pen.grouped else np.abs(G).max(0)
    np.testing.assert_allclose(v0, ref, rtol=1e-13)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_screen_keeps_a_feature_exactly_at_the_strong_rule_bound(pen):
    # bound α(2λ - λ_prev) with λ = 1, λ_prev = 1.5: α / 2; binary fractions, so exact
    bound = pen.alpha * (2 * 1.0 - 1.5)
    G = np.zeros((2, 3))
    G[0, 0] = bound  # exactly at the bound: kept
    G[0, 1] = bound * (1 - 2**-20)  # just under: dropped
    G[0, 2] = bound * (1 + 2**-20)
    np.testing.assert_array_equal(pen.screen(G, 1.0, 1.5), [True, False, True])


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_kkt_violation_of_float32_gradients_is_computed_in_float64(pen):
    # a float32 gradient (the solvers' dtype) at a zero feature: the violation is
    # dual_norm - λα evaluated in float64, not rounded to float32 on the way
    G = np.array([[0.3, 0.1], [0.7, -0.2], [0.11, 0.05]], dtype=np.float32)
    W = np.zeros((3, 2))
    G64 = G.astype(np.float64)
    ref = (np.sqrt((G64**2).sum(0)) if pen.grouped else np.abs(G64).max(0)) - 0.1 * pen.alpha
    got = pen.kkt_violation(G, W, 0.1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.maximum(ref, 0), rtol=1e-15, atol=0)
