"""The path's working set from point to point: a few features that leave it are kept.

Dropping a handful of thousands of features rebuilt the column caches (a gather instead of an
append) at every point of the n << d path; ``fit.STICKY_SHARE`` keeps them. The rule on its
own, and on a real n << d path made here: the same solutions as without it, KKT verified.
"""

from __future__ import annotations

import itertools

import numpy as np
from helpers_bench import load_bench

import sparse_probe.fit as fit_module
from sparse_probe import fit_path


def test_a_few_leaving_features_are_kept_and_many_are_dropped():
    last = np.arange(0, 80, 2)  # 40 features
    few = np.setdiff1d(last, [4, 30])  # 2 of 40 leave: 5%, kept
    np.testing.assert_array_equal(fit_module._keep_leaving(few, last), last)
    grown = np.union1d(few, [1, 99])  # others join at the same time: all of both, sorted
    np.testing.assert_array_equal(fit_module._keep_leaving(grown, last),
                                  np.union1d(last, [1, 99]))
    many = np.setdiff1d(last, [4, 30, 50])  # 3 of 40: over 5%, they leave
    np.testing.assert_array_equal(fit_module._keep_leaving(many, last), many)
    np.testing.assert_array_equal(fit_module._keep_leaving(last, last), last)  # none leaves
    assert fit_module._keep_leaving(few, last, share=0.0).size == 38
    np.testing.assert_array_equal(fit_module._keep_leaving(many, last, share=0.1), last)
    # the first working set (nothing before it), and one that empties
    np.testing.assert_array_equal(fit_module._keep_leaving(few, np.zeros(0, int)), few)
    assert fit_module._keep_leaving(np.zeros(0, int), last).size == 0


def _wide_path(monkeypatch, share):
    bp = load_bench("bench_path")
    X, y = bp.make_geometry("wide", 150, 1200, 4, 21)
    lams = bp.lambda_grid(X, y, 4, 14, 1e-2)
    monkeypatch.setattr(fit_module, "STICKY_SHARE", share)
    sets = []
    real = fit_module._Trainer.set_working_set

    def spy(self, ws):
        sets.append(np.unique(ws))
        return real(self, ws)

    monkeypatch.setattr(fit_module._Trainer, "set_working_set", spy)
    p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, threads=1)
    return p, sets


def test_the_n_much_less_than_d_path_keeps_its_few_leaving_features(monkeypatch):
    sticky, sets = _wide_path(monkeypatch, fit_module.STICKY_SHARE)
    for a, b in itertools.pairwise(sets):
        gone = np.setdiff1d(a, b)
        assert gone.size == 0 or gone.size > 0.05 * a.size  # only where many leave at once
    plain, plain_sets = _wide_path(monkeypatch, 0.0)
    # without the rule features do leave along this path: the rule had work to do
    assert any(np.setdiff1d(a, b).size for a, b in itertools.pairwise(plain_sets))
    assert sum(s.size for s in sets) > sum(s.size for s in plain_sets)
    # the same solutions, each point KKT verified
    tol = np.asarray(sticky.info["tol_per_point"])
    assert np.all(sticky.kkt_violation <= tol)
    np.testing.assert_allclose(sticky.objective, plain.objective, rtol=1e-7)
