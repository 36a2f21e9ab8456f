"""The fit's thread rule (sparse_probe/solvers/threads.py): the choice, overrides, restore."""

import numpy as np
import pytest
import torch

from sparse_probe import fit_path
from sparse_probe.solvers import threads as th


def test_pick_threads_keeps_one_unless_more_is_clearly_faster():
    assert th.pick_threads({1: [1.0, 1.0], 2: [0.7, 0.7]}) == 2  # 0.7 <= 0.8
    assert th.pick_threads({1: [1.0, 1.0], 2: [0.9, 0.8]}) == 1  # 0.85 > 0.8: not clearly
    assert th.pick_threads({1: [1.0], 2: [5.0]}) == 1  # a busy core: collapse
    assert th.pick_threads({1: [1.0], 2: [0.6], 4: [0.5]}) == 4
    assert th.pick_threads({1: [1.0], 2: [0.5], 4: [0.55]}) == 2
    assert th.pick_threads({1: [1.0], 2: [0.79]}, margin=0.5) == 1
    assert th.pick_threads({1: [1.0, 1.0, 1.0], 2: [0.5]}) == 2  # means, not sums
    with pytest.raises(ValueError, match="one-thread"):
        th.pick_threads({2: [1.0]})


def test_explicit_count_and_env_var(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    assert th.resolve_threads(3, cpu, (10, 10, 2)) == 3
    monkeypatch.setenv(th.ENV_VAR, "2")
    assert th.resolve_threads(None, cpu, (10, 10, 2)) == 2
    assert th.resolve_threads(1, cpu, (10, 10, 2)) == 1  # the argument wins over the env
    monkeypatch.setenv(th.ENV_VAR, "many")
    with pytest.raises(ValueError, match="SPARSE_PROBE_THREADS"):
        th.resolve_threads(None, cpu, (10, 10, 2))
    with pytest.raises(ValueError, match="threads"):
        th.resolve_threads(0, cpu, (10, 10, 2))
    assert th.resolve_threads(4, torch.device("meta"), (10, 10, 2)) is None  # not CPU


def test_auto_measures_and_picks_from_the_probe(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        if torch.get_num_threads() != 2:
            pytest.skip("cannot set 2 threads here")
        seen = {}

        def slow_pair(n, m, C):
            seen["shape"] = (n, m, C)
            return {1: [1.0], 2: [3.0]}  # what a busy core does to two threads

        monkeypatch.setattr(th, "_probe", slow_pair)
        assert th.resolve_threads("auto", torch.device("cpu"), (500, 30, 4)) == 1
        assert seen["shape"] == (500, 30, 4)
        monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 2: [0.5]})
        assert th.resolve_threads(None, torch.device("cpu"), (500, 30, 4)) == 2
        # the real probe returns timings for both counts, interleaved repeats
        monkeypatch.undo()
        monkeypatch.delenv(th.ENV_VAR, raising=False)
        t = th._probe(300, 20, 3, repeats=2)
        assert set(t) == {1, 2} and len(t[1]) == len(t[2]) >= 1
        # a full probe only while more threads keep up; an early stop only when they lost
        assert len(t[1]) == 2 or sum(t[2]) > sum(t[1])
        assert torch.get_num_threads() == 2  # the probe restores the count
    finally:
        torch.set_num_threads(old)


def test_one_thread_means_no_probe(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(th, "_probe", lambda *a: pytest.fail("probed with one thread"))
        assert th.resolve_threads(None, torch.device("cpu"), (10, 10, 2)) == 1
    finally:
        torch.set_num_threads(old)


def test_fit_uses_and_restores_the_count(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    old = torch.get_num_threads()
    during = []
    real = th.resolve_threads

    def spy(*a, **k):
        during.append(real(*a, **k))
        return during[-1]

    monkeypatch.setattr(th, "resolve_threads", spy)
    try:
        torch.set_num_threads(2)
        p = fit_path(X, y, n_lambdas=4, eps=0.1, threads=1, progress=False)
        assert during == [1] and p.info["threads"] == 1
        assert torch.get_num_threads() == 2  # restored
        p2 = fit_path(X, y, n_lambdas=4, eps=0.1, threads=1, progress=False)
        np.testing.assert_array_equal(p.weights[-1], p2.weights[-1])
    finally:
        torch.set_num_threads(old)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_fit_holds_numpys_blas_to_the_count_and_restores_it(monkeypatch):
    """numpy's BLAS pool (the Newton solver's factorizations and model products) follows the
    fit's count: two OpenBLAS threads beside a busy core slowed a one-thread fit by 20-30%."""
    from threadpoolctl import threadpool_limits

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS loaded
    assert _blas_threads(), "no BLAS library found by threadpoolctl"
    seen = []
    real = th.resolve_threads
    monkeypatch.setattr(th, "resolve_threads", lambda *a, **k: seen.append(_blas_threads())
                        or real(*a, **k))
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with th.fit_threads(1, "cpu", (100, 5, 3)) as k:
            inside = _blas_threads()
        assert k == 1 and inside == [1] * len(before)
        assert _blas_threads() == before  # restored
        with th.fit_threads(None, "cuda", (100, 5, 3)) as k:  # a GPU fit: left alone
            assert k is None and _blas_threads() == before
    assert seen == [before, before]
