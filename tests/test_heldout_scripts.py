"""The held-out sweep (benchmarks/sweep_heldout.py) and the thread-probe measurement
(benchmarks/measure_thread_probe.py): what they draw and print, so they cannot rot."""

import numpy as np
import pytest
import torch
from helpers_bench import load_bench


def test_sweep_draws_the_held_out_kinds_as_described():
    sweep = load_bench("sweep_heldout")
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(200):
        trial = sweep.draw(rng)
        if trial is not None:
            seen.setdefault(trial[0].split()[0], trial)
        if len(seen) == len(sweep.KINDS):
            break
    assert set(seen) == set(sweep.KINDS)
    _, X, y, eps = seen["rare-class"]
    assert np.sum(y == 0) == 3 and eps in (1e-2, 1e-3)
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-4)  # standardized again after the cut
    np.testing.assert_allclose(X.std(0), 1, atol=1e-3)
    _, X, y, _ = seen["copied-columns"]  # d columns, copies of the first d // 5, a zero one
    d = next(d for d in range(1, X.shape[1]) if d + max(1, d // 5) + 1 == X.shape[1])
    np.testing.assert_array_equal(X[:, d:d + max(1, d // 5)], X[:, :max(1, d // 5)])
    assert not X[:, -1].any()


def test_sweep_runs_a_trial_and_reports_kkt_and_gap(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")

    def small(rng):  # a quick trial of the same kind: the drawing is tested above
        X, y = load_bench("bench_path").make_geometry("collinear", 400, 30, 3, 5)
        return "collinear seed=5", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw", small)
    assert sweep.main(["--seed", "1", "--trials", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "KKT/tol" in out[0] and out[1].startswith("1 trials: largest KKT/tol")


@pytest.mark.slow
def test_thread_probe_measurement_prints_every_shape(capsys):
    before = torch.get_num_threads()
    load_bench("measure_thread_probe").main(["--repeats", "1"])
    assert torch.get_num_threads() == before
    lines = capsys.readouterr().out.splitlines()
    shapes = load_bench("measure_thread_probe").SHAPES
    assert len(lines) == 2 + len(shapes) + 1
    assert [tuple(int(v) for v in ln.split("|")[0].split()) for ln in lines[2:-1]] == shapes
    assert lines[-1].startswith("two-class 10000 x 256 path")
