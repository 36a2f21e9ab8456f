"""The shared float64 objective and KKT check (sparse_probe/objective.py and the penalties'
KKT conditions) against a direct float64 numpy statement of their definitions, on random
small problems drawn by hypothesis, plus the edge cases a solver check depends on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_probe.data import FeatureSource
from sparse_probe.objective import kkt_violation, objective_f64, penalty_value


# ------------------------------------------------------------------ the reference
def ref_objective(X, y, W, b, lam, alpha, mean=None, scale=None, grouped=False):
    """Value, G (C, d) and g_b (C,) straight from the definition, float64."""
    X = np.asarray(X, np.float64)
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    if mean is not None:
        X = X - np.asarray(mean, np.float64)
    if scale is not None:
        X = X / np.asarray(scale, np.float64)
    n = X.shape[0]
    z = X @ W.T + b
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    ce = np.mean(lse - z[np.arange(n), y])
    p1 = np.sqrt((W**2).sum(0)).sum() if grouped else np.abs(W).sum()
    pen = lam * (alpha * p1 + (1 - alpha) / 2 * (W**2).sum())
    P = np.exp(z - lse[:, None])
    P[np.arange(n), y] -= 1
    return ce + pen, P.T @ X / n, P.sum(0) / n


def ref_kkt(G, W, lam, alpha, grouped):
    """Per-feature KKT violation, written out feature by feature."""
    C, d = W.shape
    out = np.zeros(d)
    for j in range(d):
        g, w = G[:, j], W[:, j]
        if grouped:
            nrm = np.sqrt((w**2).sum())
            if nrm > 0:
                out[j] = np.sqrt(((g + lam * (1 - alpha) * w + lam * alpha * w / nrm) ** 2).sum())
            else:
                out[j] = max(np.sqrt((g**2).sum()) - lam * alpha, 0.0)
        else:
            v = [abs(g[k] + lam * (1 - alpha) * w[k] + lam * alpha * np.sign(w[k])) if w[k] != 0
                 else max(abs(g[k]) - lam * alpha, 0.0) for k in range(C)]
            out[j] = max(v)
    return out


@st.composite
def problems(draw):
    n = draw(st.integers(2, 9))
    d = draw(st.integers(1, 5))
    C = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # float32 inputs: the evaluation must still be float64 throughout
    X = (rng.standard_normal((n, d)) * 3 + 1).astype(np.float32)
    y = rng.integers(0, C, n)
    W = (rng.standard_normal((C, d)) * (rng.random((C, d)) < 0.6)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    mean = X.mean(0).astype(np.float32)
    scale = (X.std(0) + 0.5).astype(np.float32)
    lam = draw(st.floats(1e-3, 2.0))
    alpha = draw(st.sampled_from([0.2, 0.5, 0.99, 1.0]))
    grouped = draw(st.booleans())
    chunk = draw(st.integers(1, n))
    return X, y, W, b, mean, scale, lam, alpha, grouped, chunk


@settings(max_examples=60, deadline=None)
@given(problems())
def test_objective_and_gradient_match_the_float64_reference(prob):
    X, y, W, b, mean, scale, lam, alpha, grouped, chunk = prob
    src = FeatureSource(X, chunk_rows=chunk)  # several chunks must add up
    val, G, gb = objective_f64(src, y, W, b, lam, alpha, mean=mean, scale=scale,
                               grouped=grouped, return_grad=True)
    rval, rG, rgb = ref_objective(X, y, W, b, lam, alpha, mean, scale, grouped)
    assert val == pytest.approx(rval, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(G, rG, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gb, rgb, rtol=1e-10, atol=1e-13)
    assert G.dtype == np.float64 and gb.dtype == np.float64
    assert isinstance(val, float)
    # value alone: the same number, not a tuple
    alone = objective_f64(src, y, W, b, lam, alpha, mean=mean, scale=scale, grouped=grouped)
    assert isinstance(alone, float) and alone == pytest.approx(val, rel=1e-13, abs=1e-13)
    # no standardization given: raw features
    raw = objective_f64(X, y, W, b, lam, alpha, grouped=grouped)
    assert raw == pytest.approx(ref_objective(X, y, W, b, lam, alpha, grouped=grouped)[0],
                                rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_kkt_violation_and_penalty_match_the_reference(prob):
    X, y, W, b, mean, scale, lam, alpha, grouped, _ = prob
    _, G, _ = ref_objective(X, y, W, b, lam, alpha, mean, scale, grouped)
    G32 = G.astype(np.float32)
    got = kkt_violation(G32, W, lam, alpha, grouped)
    np.testing.assert_allclose(got, ref_kkt(G32.astype(np.float64), W.astype(np.float64),
                                            lam, alpha, grouped), rtol=1e-12, atol=1e-13)
    assert got.shape == (W.shape[1],) and got.dtype == np.float64
    W64 = W.astype(np.float64)
    p1 = np.sqrt((W64**2).sum(0)).sum() if grouped else np.abs(W64).sum()
    ref = lam * (alpha * p1 + (1 - alpha) / 2 * (W64**2).sum())
    assert penalty_value(W, lam, alpha, grouped) == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_penalty_value_default_is_elementwise():
    W = np.array([[3.0, 0.0], [4.0, 1.0]])
    # elementwise |W| sum 8 vs grouped column norms 5 + 1 = 6; alpha 1 leaves the L1 part
    assert penalty_value(W, 0.5, 1.0) == 4.0
    assert penalty_value(W, 0.5, 1.0, grouped=True) == 3.0
    # ridge part: (1 - alpha)/2 ||W||^2 = 0.25 * 26
    assert penalty_value(W, 1.0, 0.5) == pytest.approx(0.5 * 8 + 0.25 * 26)


def test_kkt_default_is_elementwise_and_zero_at_an_exact_optimum():
    lam, alpha = 1.0, 0.5
    W = np.array([[2.0, 0.0], [0.0, 0.0]])
    # G chosen to satisfy every condition: active G = -(l2 W + l1 sign W) = -(1 + 0.5)
    G = np.array([[-1.5, 0.5], [0.3, -0.5]])
    np.testing.assert_array_equal(kkt_violation(G, W, lam, alpha), [0.0, 0.0])
    # one past the inactive bound |G| <= l1 = 0.5
    G2 = G.copy()
    G2[1, 1] = -0.75
    np.testing.assert_allclose(kkt_violation(G2, W, lam, alpha), [0.0, 0.25])
    # grouped: column 1's norm sqrt(0.5) > 0.5 violates
    assert kkt_violation(G, W, lam, alpha, grouped=True)[1] == pytest.approx(np.sqrt(0.5) - 0.5)


def test_objective_is_stable_for_large_logits():
    # rows whose logits are far below another row's must not underflow to log(0)
    X = np.array([[1.0], [-1.0]])
    y = np.array([0, 1])
    W = np.array([[900.0], [899.0]])
    b = np.zeros(2)
    val = objective_f64(X, y, W, b, 0.0, 1.0)
    # row 0: logits 900, 899 -> CE = log(1 + e^-1); row 1: -900, -899 -> CE = log(1 + e^-1)
    assert val == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-12)


@pytest.mark.parametrize("n_used", [0, 1, 3, 7])
def test_objective_of_a_sparse_head_reads_only_its_columns_and_agrees(n_used):
    """The value alone multiplies only the columns some class uses: the same number as the
    dense reference (a column used by one class only counts; unused columns hold values that
    would dominate the logits if they were read with a nonzero weight)."""
    rng = np.random.default_rng(10 + n_used)
    n, d, C = 40, 12, 3
    X = rng.standard_normal((n, d)) * 2 + 1
    y = rng.integers(0, C, n)
    W = np.zeros((C, d))
    used = rng.choice(d, n_used, replace=False)
    for j in used:
        W[rng.integers(0, C), j] = rng.standard_normal()  # one class per used column
    b = rng.standard_normal(C)
    mean, scale = X.mean(0), X.std(0) + 0.5
    X[:, np.setdiff1d(np.arange(d), used)] *= 1e6
    ref = ref_objective(X, y, W, b, 0.2, 0.7, mean, scale)[0]
    got = objective_f64(FeatureSource(X.astype(np.float32), chunk_rows=7), y, W, b, 0.2, 0.7,
                        mean=mean, scale=scale)
    assert got == pytest.approx(ref_objective(X.astype(np.float32), y, W, b, 0.2, 0.7, mean,
                                              scale)[0], rel=1e-12)
    assert got == pytest.approx(ref, rel=1e-6)


def test_objective_accepts_tensors_and_feature_sources():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    W, b = rng.standard_normal((3, 3)), rng.standard_normal(3)
    ref = ref_objective(X, y, W, b, 0.1, 0.9)[0]
    assert objective_f64(torch.from_numpy(X), y, W, b, 0.1, 0.9) == pytest.approx(ref, rel=1e-12)
    assert objective_f64(FeatureSource(X, chunk_rows=4), y, W, b, 0.1, 0.9) == \
        pytest.approx(ref, rel=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_objective_accepts_gpu_tensors():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    W, b = rng.standard_normal((3, 3)), rng.standard_normal(3)
    ref = ref_objective(X, y, W, b, 0.1, 0.9)[0]
    got = objective_f64(torch.from_numpy(X).cuda(), y, W, b, 0.1, 0.9)
    assert got == pytest.approx(ref, rel=1e-12)
