"""Newton's Levenberg-Marquardt damping (``newton.damping``): the model's step is damped after
the line search cut one, on real deep features (a small CNN trained on the built-in shapes
data in the test), and the damping changes the iterates, never the optimum."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from helpers_bench import load_bench
from helpers_kkt import kkt_ratios

from sparse_probe import fit_path
from sparse_probe.solvers.gram_cd import qp_violation
from sparse_probe.solvers.newton import DAMP_FACTOR, DAMP_START, damping

newton_module = importlib.import_module("sparse_probe.solvers.newton")

ALPHA = 0.99


def test_damping_starts_at_a_share_of_the_diagonal_grows_on_cuts_and_decays_on_full_steps():
    diag = 0.5
    start = DAMP_START * diag
    assert DAMP_START == 0.01 and DAMP_FACTOR == 4.0
    assert damping(0.0, 1.0, diag) == 0.0  # full steps: undamped stays undamped
    assert damping(0.0, 0.5, diag) == pytest.approx(start, rel=1e-15)  # a cut: the start
    assert damping(0.0, 0.999, diag) == pytest.approx(start, rel=1e-15)
    assert damping(start, 0.25, diag) == pytest.approx(4 * start, rel=1e-15)  # cut again: x4
    assert damping(1e-9, 0.5, diag) == pytest.approx(start, rel=1e-15)  # never under the start
    assert damping(16 * start, 1.0, diag) == pytest.approx(4 * start, rel=1e-15)  # full: /4
    assert damping(4 * start, 1.0, diag) == pytest.approx(start, rel=1e-15)  # at the start: kept
    assert damping(2 * start, 1.0, diag) == 0.0  # under it: off
    assert damping(3 * start, 2.0, 1.0) == 0.0  # the start is the diagonal's share: 0.01
    assert damping(4 * start, 1.0, 2 * diag) == 0.0


@pytest.fixture(scope="module")
def deep_features():
    """Pooled channels (n, d) of a small ShapesCNN trained here, standardized, and labels."""
    bp = load_bench("bench_path")
    X, y = bp.deep_features("deep-cnn", 600, 32, 6, 0, size=32, epochs=3)
    return bp.standardize(X.astype(np.float64)), y


def _path(X, y, solver, lams):
    return fit_path(X, y, alpha=ALPHA, lambdas=lams, progress=False, solver=solver, threads=1)


def test_newton_damps_its_model_after_a_cut_step_and_keeps_the_optimum(deep_features,
                                                                      monkeypatch, caplog):
    X, y = deep_features
    lams = load_bench("bench_path").lambda_grid(X, y, int(y.max()) + 1, 20, 1e-3)
    solves = []  # each Gram-route model solve: (Q, q, u0, l1, ridge, tol, its solution)
    real_qp = newton_module.enet_qp

    def spy(Q, q, u0, l1, l2, **kw):
        out = real_qp(Q, q, u0, l1, l2, **kw)
        solves.append((Q.copy(), q.copy(), u0.copy(), l1, l2, kw["tol"], out[0]))
        return out

    monkeypatch.setattr(newton_module, "enet_qp", spy)
    with caplog.at_level("DEBUG", logger="sparse_probe.solvers.newton"):
        damped = _path(X, y, "newton", lams)
    steps = [r.args for r in caplog.records if r.msg.startswith("newton: it")]
    assert len(steps) == len(solves)  # every step accepted, one model solve each
    # replay the rule: a step's damping is the one the last step of its point left
    l2_of = {}  # each point's own ridge: its first step's (undamped)
    mu, point = 0.0, -1
    lengths = []  # per damped solve: its step's length, and the undamped model's
    for (it, _, _, t, _, logged_mu), (Q, q, u0, l1, ridge, tol, u) in zip(steps, solves,
                                                                          strict=True):
        if it == 1:  # a point's first step: undamped, its ridge the point's λ(1 - α)
            mu, point = 0.0, point + 1
            l2_of[point] = ridge
        assert logged_mu == pytest.approx(mu, rel=1e-15, abs=0)
        assert ridge == pytest.approx(l2_of[point] + mu, rel=1e-12, abs=0)
        assert qp_violation(Q, q, u, l1, ridge) <= tol * (1 + 1e-9)  # the damped model solved
        if mu > 0:  # + μ/2 ||u - u0||² (u0 the current weights): a shorter step than the
            # undamped model's (q = Q u0 - g + μ u0 there)
            plain = real_qp(Q, q - mu * u0, u0, l1, ridge - mu, tol=0.01 * tol)[0]
            lengths.append((np.linalg.norm(u - u0), np.linalg.norm(plain - u0)))
        mu = damping(mu, t, float(np.mean(np.diagonal(Q))))
    assert len(lengths) >= 3
    assert all(damped_len <= plain_len * (1 + 1e-6) for damped_len, plain_len in lengths)
    assert any(damped_len < 0.9 * plain_len for damped_len, plain_len in lengths)
    assert sorted(l2_of.values(), reverse=True) == list(l2_of.values())  # one per λ, falling
    cut = [s for s in steps if s[3] < 1]
    assert len(cut) >= 3  # real deep features: the line search cut steps
    assert sum(1 for s in steps if s[5] > 0) >= 3  # and damped steps were taken
    # the damping moves the iterates only: the same optimum as undamped Newton and OWL-QN
    monkeypatch.setattr(newton_module, "DAMP_START", 0.0)
    caplog.clear()
    with caplog.at_level("DEBUG", logger="sparse_probe.solvers.newton"):
        plain = _path(X, y, "newton", lams)
    assert all(r.args[5] == 0.0 for r in caplog.records if r.msg.startswith("newton: it"))
    ref = _path(X, y, "owlqn", lams)
    for p in (damped, plain, ref):
        assert kkt_ratios(X, y, p).max() <= 1.0
    obj = [np.asarray(p.objective) for p in (damped, plain, ref)]
    np.testing.assert_allclose(obj[0], obj[1], rtol=1e-8, atol=0)
    # OWL-QN stops within the same KKT tolerance a little higher up (~3e-7 here)
    assert (obj[0] <= obj[2] * (1 + 1e-6)).all()
    np.testing.assert_allclose(obj[0], obj[2], rtol=1e-5, atol=0)
