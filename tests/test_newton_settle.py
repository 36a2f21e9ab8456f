"""Newton's first step at a path point settles the nonzero weights before any joins where the
warm start's zero weights over the threshold pass the entering cap (``newton.admit``'s
``settle``), on real deep features: the pooled features of a random-weight torchvision
ResNet-18 on the built-in shapes images, made in the test (nothing downloaded). The rule itself
in closed form: ``test_newton.py``'s ``test_admit_settles_on_the_nonzeros_past_its_cap_only``."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from helpers_bench import load_bench
from helpers_kkt import kkt_ratios

from sparse_probe import fit_path

newton_module = importlib.import_module("sparse_probe.solvers.newton")

ALPHA = 0.99


@pytest.fixture(scope="module")
def resnet_features():
    """Pooled features (600, 512) of a random-weight ResNet-18 on 32-pixel shapes images,
    standardized, and the labels (6 classes)."""
    bp = load_bench("bench_path")
    X, y = bp.deep_features("deep-resnet", 600, 512, 6, 0, size=32)
    return bp.standardize(X.astype(np.float64)), y


def test_newton_settles_first_steps_past_the_cap_and_keeps_the_optimum(resnet_features,
                                                                       monkeypatch):
    X, y = resnet_features
    lams = load_bench("bench_path").lambda_grid(X, y, 6, 20, 1e-2)
    calls = []  # (settle, nonzero mask, zero weights over the threshold, admitted)
    real = newton_module.admit

    def spy(W, g, thr, floor=None, **kw):
        out = real(W, g, thr, floor, **kw)
        nz = W != 0
        calls.append((kw.get("settle", False), nz, (g.abs() > thr) & ~nz, out))
        return out

    monkeypatch.setattr(newton_module, "admit", spy)
    settled = fit_path(X, y, alpha=ALPHA, lambdas=lams, progress=False, solver="newton",
                       threads=1)
    binding = [i for i, (s, nz, cand, _) in enumerate(calls)
               if s and nz.any() and int(cand.sum()) > newton_module.entering_cap(int(nz.sum()))]
    assert len(binding) >= 3  # the warm starts of these features pass the cap
    for i in binding:
        _, nz, _, out = calls[i]
        assert torch.equal(out, nz)  # the first step: the nonzero weights alone
        assert not calls[i + 1][0]  # the next step of that point does not settle ...
        _, nz1, cand1, out1 = calls[i + 1]
        assert int((out1 & ~nz1).sum()) > 0 and cand1.any()  # ... and weights join there
    for _, nz, cand, out in calls:  # within the cap every candidate joins, settling or not
        if int(cand.sum()) <= newton_module.entering_cap(int(nz.sum())):
            assert torch.equal(out, nz | cand)
    # the settling moves the iterates only: the optimum of Newton without it, and OWL-QN's
    monkeypatch.setattr(newton_module, "admit",
                        lambda W, g, thr, floor=None, settle=False: real(W, g, thr, floor))
    plain = fit_path(X, y, alpha=ALPHA, lambdas=lams, progress=False, solver="newton",
                     threads=1)
    ref = fit_path(X, y, alpha=ALPHA, lambdas=lams, progress=False, solver="owlqn", threads=1)
    for p in (settled, plain, ref):
        assert kkt_ratios(X, y, p).max() <= 1.0
    obj = [np.asarray(p.objective) for p in (settled, plain, ref)]
    np.testing.assert_allclose(obj[0], obj[1], rtol=1e-7, atol=0)
    np.testing.assert_allclose(obj[0], obj[2], rtol=1e-5, atol=0)
