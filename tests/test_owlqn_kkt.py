"""OWL-QN's stopping measure and objective (sparse_probe/solvers/owlqn.py) against the
elementwise elastic net's own KKT conditions and value (sparse_probe/penalties.py).

OWL-QN (Andrew & Gao, ICML 2007) stops when the largest entry of the minimum-norm
subgradient ("pseudo-gradient") of ``f + Σ c_i |x_i|`` is at most the tolerance. With
``f = CE + λ(1-α)/2 ||W||²``, ``c = λα`` on the weights and ``c = 0`` on the bias, that entry
is exactly the KKT violation of :class:`~sparse_probe.penalties.ElasticNet` (and the bias
gradient). Checked on random small problems drawn by hypothesis, with exact zeros and
entries at the boundary ``|G| = λα``; tolerance 1e-12 (the same float64 sums).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparse_probe.penalties import ElasticNet
from sparse_probe.solvers.owlqn import _l1_weights, _penalized, _pseudo_grad


def _draw(seed: int, C: int, m: int, zero_frac: float, lam: float, alpha: float):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((C, m))
    W[rng.random((C, m)) < zero_frac] = 0.0
    G = rng.standard_normal((C, m)) * lam * 2
    l1 = lam * alpha
    # some zero weights with a gradient exactly at the threshold, either sign
    edge = (W == 0) & (rng.random((C, m)) < 0.3)
    G[edge] = l1 * np.where(rng.random(int(edge.sum())) < 0.5, 1.0, -1.0)
    gb = rng.standard_normal(C) * 0.1
    return torch.from_numpy(W), torch.from_numpy(G), torch.from_numpy(gb)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.integers(1, 5), m=st.integers(1, 8),
       zero_frac=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
       lam=st.floats(1e-3, 1.0), alpha=st.sampled_from([0.1, 0.5, 0.9, 0.99, 1.0]))
def test_pseudo_gradient_is_the_elastic_net_kkt_violation(seed, C, m, zero_frac, lam, alpha):
    W, G, gb = _draw(seed, C, m, zero_frac, lam, alpha)
    pen = ElasticNet(alpha)
    l1, l2 = pen.l1_l2(lam)
    c, wmask = _l1_weights(C, m, l1, W.device)
    assert int(wmask.sum()) == C * m and not bool(wmask[C * m:].any())
    x = torch.cat([W.reshape(-1), torch.zeros(C, dtype=torch.float64)])
    g = torch.cat([(G + l2 * W).reshape(-1), gb])
    pg = _pseudo_grad(x, g, c)
    viol_w = pen.kkt_violation(G, W, lam)  # per column max over classes
    np.testing.assert_allclose(pg[: C * m].abs().reshape(C, m).amax(0).numpy(), viol_w.numpy(),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(pg[C * m:].numpy(), gb.numpy(), rtol=0, atol=0)  # bias: plain gradient


def test_pseudo_gradient_signs_at_each_case():
    """Each branch once, with the sign a descent method needs (it steps along -pg)."""
    c = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([2.0, -2.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    g = torch.tensor([0.5, 0.5, -3.0, 3.0, 0.4, 0.7], dtype=torch.float64)
    pg = _pseudo_grad(x, g, c).tolist()
    # x>0: g + c; x<0: g - c; at 0: g + c if that is < 0, g - c if that is > 0, else 0;
    # unpenalized entry at 0: the gradient itself
    assert pg == [1.5, -0.5, -2.0, 2.0, 0.0, 0.7]
    # exactly at the threshold the zero is optimal
    assert _pseudo_grad(torch.zeros(2, dtype=torch.float64),
                        torch.tensor([1.0, -1.0], dtype=torch.float64),
                        torch.ones(2, dtype=torch.float64)).tolist() == [0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.integers(1, 4), m=st.integers(0, 6),
       lam=st.floats(1e-3, 1.0), alpha=st.sampled_from([0.1, 0.5, 0.9, 1.0]),
       loss=st.floats(0.0, 5.0))
def test_penalized_objective_is_loss_plus_the_elastic_net_value(seed, C, m, lam, alpha, loss):
    W, _, _ = _draw(seed, C, m, 0.3, lam, alpha)
    pen = ElasticNet(alpha)
    l1, l2 = pen.l1_l2(lam)
    got = _penalized(loss, W.reshape(-1), l1, l2)
    assert abs(got - (loss + pen.value(W, lam))) <= 1e-12 * max(1.0, abs(got))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_l1_weights_live_on_the_solvers_device():
    c, wmask = _l1_weights(3, 4, 0.5, torch.device("cuda"))
    assert c.device.type == "cuda" and wmask.device.type == "cuda"
    assert c.dtype == torch.float64 and c.tolist() == [0.5] * 12 + [0.0] * 3
