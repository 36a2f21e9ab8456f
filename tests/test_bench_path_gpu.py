"""``benchmarks/bench_path_gpu.py``'s streamed (ImageNet-scale) benchmark, run scaled down on CPU.

The script runs as a user runs it (a subprocess, a real float16 memmap in ``tmp_path``, glm_saga
in its own process); the JSON it writes is checked for sane results: our objective matches a
float64 reference optimum at every compared λ, glm_saga is never better than the best, nnz
grows along the path, and the memory check is present and passed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_path_gpu.py"


def _run(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--no-progress",
                           "--data-dir", str(tmp_path / "data"), "--out", str(out), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_path_gpu_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # subprocesses that start torch and glm_saga: a minute or two
def test_tiny_end_to_end_against_reference_and_glm_saga(tmp_path):
    res, stdout = _run(tmp_path, "--size", "tiny", "--n-lambdas", "5", "--checks", "3")
    r = res["tiny"]
    cfg = r["config"]
    assert r["device"] == "cpu" and cfg["dtype"] == "float16"

    # the features really are a memmap on disk, shaped like deep features
    X = np.load(next((tmp_path / "data").glob("tiny-*/X.npy")), mmap_mode="r")
    assert X.shape == (cfg["n"], cfg["d"]) and X.dtype == np.float16
    assert float(X.min()) >= 0.0 and float((X == 0).mean()) > 0.05

    lams = np.asarray(r["lambdas"])
    assert len(lams) == 5 and np.all(np.diff(lams) < 0)
    nnz = np.asarray(r["ours"]["nnz"])
    assert nnz[0] == 0 and nnz[-1] > 0
    assert np.mean(np.diff(nnz) >= 0) >= 0.75 and nnz[-1] >= 0.8 * nnz.max()  # monotone-ish
    assert r["ours"]["kkt_over_tol_max"] <= 1.0 and r["ours"]["low_memory"] is True

    saga = r["glm_saga"]
    assert saga["finished"] and saga["reached"] == 5 and not saga["killed"]
    assert len(saga["time"]) == 5 and np.all(np.diff(saga["time"]) >= 0)

    checks = r["checks"]
    assert len(checks) >= 2
    for e in checks:
        ref, ours, gs = e["reference"], e["ours"], e["glm_saga"]
        assert ref is not None and ref["converged"]
        # ours against the independent float64 optimum (the 1e-5 relative)
        assert abs(ours["objective"] - ref["objective"]) <= 1e-5 * abs(ref["objective"])
        assert 0.0 <= ours["gap"] <= 1e-5 and ours["eval_rel_diff"] <= 1e-6
        assert ours["nnz"] == nnz[e["index"]]
        # glm_saga ran at the same λ (its own grid agrees) and cannot beat the optimum by much
        assert gs is not None and gs["lambda_rel_diff"] < 1e-4
        assert gs["gap"] >= 0.0 and gs["objective"] >= ref["objective"] * (1 - 1e-6)
    assert [e["index"] for e in checks][-1] == 4

    mem = r["memory"]
    assert mem["total_bytes"] > 0
    for who in ("ours", "glm_saga"):
        m = mem[who]
        assert 0 < m["plan_bytes"] <= mem["headroom"] * mem["total_bytes"]
        assert m["plan_bytes"] <= mem["free_bytes_at_start"]
        assert m["peak_bytes"] > 0 and m["within_device"] and m["peak_kind"]
    # the path's weights as held: its first point (λ_max, all zero) costs nothing, so less
    # than dense float64 storage of every point
    assert 0 < mem["ours"]["weights_bytes"] < mem["ours"]["weights_dense_bytes"]
    assert "the path's weights hold" in stdout
    assert "memory plan: ours" in stdout and "ours memory: peak" in stdout
    assert "glm_saga memory: peak" in stdout and "glm_saga/ours" in stdout


@pytest.mark.slow  # subprocesses that start torch and glm_saga: a minute or two
def test_imagenet_without_cuda_runs_tiny_and_a_budget_stops_glm_saga(tmp_path):
    res, stdout = _run(tmp_path, "--size", "imagenet", "--n-lambdas", "4", "--peer-budget", "0",
                       "--reference", "off", "--dtype", "float32")
    assert "run as 'tiny' on CPU" in stdout
    r = res["tiny"]
    assert r["config"]["dtype"] == "float32" and "imagenet" not in res
    saga = r["glm_saga"]
    assert saga["killed"] and not saga["finished"] and saga["reached"] == 0
    assert all(e["glm_saga"] is None and e["reference"] is None for e in r["checks"])
    assert all(e["ours"]["gap"] == 0.0 for e in r["checks"])  # best of one solver
    assert "finished no λ" in stdout
    # the files are kept and reused on the next run
    res2, _ = _run(tmp_path, "--size", "tiny", "--n-lambdas", "4", "--peers", "",
                   "--dtype", "float32")
    assert res2["tiny"]["data"]["reused"] and res2["tiny"]["glm_saga"] is None
    assert res2["tiny"]["ours"]["nnz"] == r["ours"]["nnz"]
    # our own budget: the path stops after its first point past it, and only points both
    # solvers reached are compared
    res3, stdout3 = _run(tmp_path, "--size", "tiny", "--n-lambdas", "4", "--our-budget", "0",
                         "--dtype", "float32", "--reference", "off")
    o3, s3 = res3["tiny"]["ours"], res3["tiny"]["glm_saga"]
    assert o3["reached"] == 1 and o3["stopped"] == "max_seconds" and len(o3["time"]) == 1
    assert s3["reached"] == 4 and [e["index"] for e in res3["tiny"]["checks"]] == [0]
    assert "stopped by --our-budget" in stdout3 and "the last both reached" in stdout3
    assert res3["tiny"]["ours"]["resident"] is False and "streamed from the host" in stdout3
    # --resident on: the file copied to the device once (on CPU: into memory), the same path
    res4, stdout4 = _run(tmp_path, "--size", "tiny", "--n-lambdas", "4", "--resident", "on",
                         "--dtype", "float32", "--peers", "")
    assert res4["tiny"]["ours"]["resident"] is True and "copied to cpu" in stdout4
    assert res4["tiny"]["ours"]["nnz"] == r["ours"]["nnz"]
    assert res4["tiny"]["memory"]["ours"]["plan"]["resident copy of X"] == 1_000 * 24 * 4


def test_memory_plan_that_does_not_fit_stops_with_the_parts():
    import torch

    mod = _bench_module()
    cpu = torch.device("cpu")
    plan = mod.plan_ours(1_281_167, 2_048, 1_000, 8_192, 16 * 2**30, cpu)
    assert plan["working-set cache (x2 while it grows)"] == 2 * 1_281_167 * 2_048 * 4
    assert plan["resident copy of X"] == 0
    cuda = torch.device("cuda")  # the rule only: nothing runs on it
    assert mod._resident_bytes(100, 8, 2, cuda, None, free=100 * 8 * 2 * 4) == 1_600
    assert mod._resident_bytes(100, 8, 2, cuda, None, free=100 * 8 * 2 * 4 - 1) == 0
    assert mod._resident_bytes(100, 8, 2, cpu, None, free=10**12) == 0
    assert mod._resident_bytes(100, 8, 2, cpu, True, free=0) == 1_600
    with pytest.raises(SystemExit, match=r"memory plan for ours does not fit.*working-set cache"):
        mod.check_plan("ours", plan, 16 * 2**30, 16 * 2**30, cpu)
    with pytest.raises(SystemExit, match=r"1\.00 GiB free"):  # a device others already fill
        mod.check_plan("ours", plan, 2**30, 200 * 2**30, cpu)
    assert mod.check_plan("ours", plan, 200 * 2**30, 200 * 2**30, cpu) == sum(plan.values())
    saga = mod.plan_glm_saga(1_281_167, 2_048, 1_000, 256, cpu)
    assert saga["SAGA table"] == 1_281_167 * 1_000 * 4


def test_synthetic_features_are_nonnegative_correlated_and_class_dependent(tmp_path):
    mod = _bench_module()
    xf, yf, reused = mod.write_deep_features(tmp_path, 3_000, 64, 5, "float32", seed=1,
                                             progress=False)
    assert not reused
    X, y = np.load(xf), np.load(yf)
    assert X.shape == (3_000, 64) and np.bincount(y).min() == 600
    assert X.min() == 0.0 and 0.1 < (X == 0).mean() < 0.7
    corr = np.corrcoef(X.T)
    off = np.abs(corr[~np.eye(64, dtype=bool)])
    assert off.mean() > 0.1  # a shared low-rank part, not independent columns
    means = np.stack([X[y == c].mean(0) for c in range(5)])
    spread = means.std(0) / X.std(0)
    assert spread.max() > 0.5  # class-selective units
    assert mod.write_deep_features(tmp_path, 3_000, 64, 5, "float32", seed=1, progress=False)[2]


def test_device_check_script_runs_its_imagenet_part_as_tiny_on_cpu(tmp_path):
    """benchmarks/device_check.sh (the prepared command for a lent GPU machine) cannot rot:
    its ImageNet part, at the tiny size on CPU, writes the data in the background and leaves
    the benchmark's JSON and the log in $OUT."""
    import os
    import subprocess
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "python3"  # the script calls python3, as on the device machine
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", OUT=str(out), PARTS="imagenet",
               SIZE="tiny", GPU="cpu", BUDGET="60", DATA=str(tmp_path / "data"))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(root / "benchmarks" / "device_check.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert "tiny features written" in log and "bench rc 0" in log
    res = json.loads((out / "imagenet.json").read_text())["tiny"]
    assert res["ours"]["reached"] == res["config"]["n_lambdas"]
    assert res["config"]["our_budget"] == 60 and res["glm_saga"]["reached"] >= 1


def test_synthetic_features_are_the_same_for_any_number_of_writers(tmp_path):
    """Each chunk's noise has its own seed: one process and two write the same file, and
    another seed writes another."""
    mod = _bench_module()  # its writer, deep_features, is imported again by each process
    one = mod.write_deep_features(tmp_path / "one", 9_000, 40, 3, "float16", seed=2,
                                  progress=False, workers=1)[0]
    two = mod.write_deep_features(tmp_path / "two", 9_000, 40, 3, "float16", seed=2,
                                  progress=False, workers=2)[0]
    other = mod.write_deep_features(tmp_path / "other", 9_000, 40, 3, "float16", seed=3,
                                    progress=False, workers=1)[0]
    assert mod.write_deep_features(tmp_path / "one", 9_000, 40, 3, "float16", seed=2,
                                   progress=False)[2]  # reused
    a, b = np.load(one), np.load(two)
    assert a.dtype == np.float16 and a.shape == (9_000, 40) and (a > 0).mean() > 0.3
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, np.load(other))
