"""The held-out sweep (benchmarks/sweep_heldout.py), the thread-probe measurement
(benchmarks/measure_thread_probe.py), the model-solve and solver-cost measurements
(benchmarks/measure_model_solve.py, measure_solver_costs.py), the thread-pool measurement
(benchmarks/measure_thread_pools.py), the standardization-error measurement
(benchmarks/measure_std_error.py), the side-by-side of two revisions
(benchmarks/compare_revisions.py) and the replay of a path's model solves
(benchmarks/replay_model_solves.py): what they draw and print, so they cannot rot."""

import importlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers_bench import ROOT, load_bench

from sparse_probe.solvers import threads as th


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


def test_sweep_wide_draws_n_much_smaller_than_d():
    """``--wide``: n in [100, 1000) and d in [1000, 6000) before the kinds' own changes (a rare
    class cuts rows, copied columns add a fifth and a zero column), so that Newton's models
    outgrow n and take the data-space route."""
    sweep = load_bench("sweep_heldout")
    rng = np.random.default_rng(1)
    shapes = []
    while len(shapes) < 6:
        trial = sweep.draw(rng, True)
        if trial is not None:
            shapes.append((trial[1].shape, int(trial[2].max()) + 1))
    for (n, d), C in shapes:
        assert n < 1000 <= d < 6000 + 6000 // 5 + 1 and C <= 40
    # the default draws stay where they were: d below 400 (+ a fifth + 1 for copied columns)
    rng = np.random.default_rng(1)
    trial = None
    while trial is None:
        trial = sweep.draw(rng)
    assert trial[1].shape[1] < 400 + 400 // 5 + 1


def test_sweep_deep_draws_real_deep_feature_shapes(monkeypatch):
    """``--deep``: deep-cnn (width 32-256) and deep-resnet (512) features of the shapes data's
    6 classes, n in [1000, 5000), each with its own seed; the features themselves are
    bench_path.deep_features' (built and fitted in test_fit_geometries.py and
    test_newton_settle.py), recorded here instead of built."""
    sweep = load_bench("sweep_heldout")
    bp = load_bench("bench_path")
    asked = []

    def record(kind, n, d, C, seed):
        asked.append((kind, n, d, C, seed))
        return np.zeros((n, d), np.float32), np.arange(n) % C

    monkeypatch.setattr(bp, "make_geometry", record)
    rng = np.random.default_rng(2)
    trials = [sweep.draw_deep(rng) for _ in range(40)]
    assert {a[0] for a in asked} == set(sweep.DEEP_KINDS)
    for (kind, n, d, C, seed), (name, X, _, eps) in zip(asked, trials, strict=True):
        assert 1000 <= n < 5000 and C == 6 and X.shape == (n, d)
        assert d in ((32, 64, 128, 256) if kind == "deep-cnn" else (512,))
        assert name == f"{kind} seed={seed}" and eps in (1e-2, 1e-3)
    assert len({a[4] for a in asked}) == len(asked)  # a seed of its own per trial
    assert {a[2] for a in asked if a[0] == "deep-cnn"} == {32, 64, 128, 256}


def test_sweep_deep_flag_reaches_its_draws_and_excludes_wide(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")
    asked = []

    def small(rng):
        asked.append("deep")
        X, y = load_bench("bench_path").make_geometry("lowrank-relu", 300, 20, 3, 7)
        return "deep-cnn seed=7", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw_deep", small)
    assert sweep.main(["--seed", "1", "--trials", "1", "--deep"]) == 0
    assert asked == ["deep"] and capsys.readouterr().out.startswith("deep-cnn seed=7")
    with pytest.raises(SystemExit):
        sweep.main(["--deep", "--wide"])


def test_sweep_runs_a_trial_and_reports_kkt_and_gap(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")

    def small(rng, wide):  # a quick trial of the same kind: the drawing is tested above
        X, y = load_bench("bench_path").make_geometry("collinear", 400, 30, 3, 5)
        return "collinear seed=5", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw", small)
    assert sweep.main(["--seed", "1", "--trials", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "KKT/tol" in out[0] and out[1].startswith("1 trials: largest KKT/tol")


def test_sweep_eps_sets_every_trials_depth(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")

    def small(rng, wide):
        X, y = load_bench("bench_path").make_geometry("current", 300, 20, 3, 7)
        return "current seed=7", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw", small)
    assert sweep.main(["--seed", "1", "--trials", "1", "--eps", "1e-4"]) == 0
    assert "eps=0.0001 " in capsys.readouterr().out.splitlines()[0]


def test_sweep_wide_flag_reaches_the_draws(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")
    asked = []

    def small(rng, wide):
        asked.append(wide)
        X, y = load_bench("bench_path").make_geometry("current", 120, 400, 3, 7)
        return "current seed=7", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw", small)
    assert sweep.main(["--seed", "1", "--trials", "1", "--wide"]) == 0
    assert sweep.main(["--seed", "1", "--trials", "1"]) == 0
    assert asked == [True, False]
    assert "120x 400x  3" in capsys.readouterr().out.splitlines()[0]


def test_std_error_measurement_prints_a_ratio_per_problem(capsys):
    """benchmarks/measure_std_error.py on two problems: a line each, the summary, and the
    claim it measures (the float32 standardization's effect a small share of the float32
    products' bound; 2.8% at most over 16 problems in its results file)."""
    assert load_bench("measure_std_error").main(["--seed", "5", "--problems", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[2].startswith("2 problems: largest")
    ratios = [float(line.rsplit(" ", 1)[1]) for line in out]
    assert all(0 < r < 0.1 for r in ratios), out


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



def test_thread_probe_spread_runs_the_fits_probe_in_fresh_processes(capsys):
    """--spread: one row per shape with the 4- and 8-round ratios and the picks; --paths adds
    each shape's path on one and on two threads; malformed shapes are refused."""
    mt = load_bench("measure_thread_probe")
    for bad in ("300x40", "300x40xthree"):
        with pytest.raises(SystemExit, match="--shapes: expected NxMxC"):
            mt.main(["--spread", "1", "--shapes", bad])
    mt.main(["--spread", "2", "--shapes", "600x40x3", "--paths"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"MARGIN {th.MARGIN}") and len(lines) == 3
    rows = [ln.split("|") for ln in lines[2:]]
    assert [r[0].strip() for r in rows] == ["600x40x3"]
    for r in rows:
        ones = r[3].strip().split("/")
        assert int(ones[1]) == 2 and 0 <= int(ones[0]) <= 2
        ratio, one, two = re.fullmatch(r" ([0-9.]+) \(([0-9.]+), ([0-9.]+)\)", r[4]).groups()
        one, two, h = float(one), float(two), 0.005  # each printed to two decimals
        assert (two - h) / (one + h) - h <= float(ratio) <= (two + h) / (one - h) + h


def test_model_solve_measurement_prints_sizes_and_settings(capsys, monkeypatch):
    """benchmarks/measure_model_solve.py at a tiny size and on a tiny path: one line per size
    and thread count, one per case with every setting, each setting really applied (the old
    settings reach the fit's processes: the same data, so the optimum agrees closely)."""
    mm = load_bench("measure_model_solve")
    sweep, chol = mm.sweep_vs_factorization(64, 1)
    assert sweep > 0 and chol > 0
    monkeypatch.setitem(mm.CASES, "tiny", ("collinear", 300, 20, 3, 1, 4, 1e-1))
    assert mm.main(["--repeats", "1", "--sizes", "64", "--threads", "1",
                    "--cases", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("units: one multiply-add of OWL-QN's products")
    cells = lines[2].split("|")
    assert cells[0].split() == ["64", "1"]
    assert float(cells[5]) > 0 and float(cells[6]) > 0  # a sweep's entry, a Cholesky's madd
    assert lines[3].startswith("paths: old = inner_stale 0.02")
    row = lines[4]
    assert row.startswith("tiny") and all(f"{s} " in row for s in mm.SETTINGS)
    assert float(row.split("objective rel. diff")[1]) < 1e-5
    with pytest.raises(SystemExit, match="--cases: unknown case 'nope'"):
        mm.main(["--sizes", "", "--cases", "nope"])


def test_model_solve_settings_reach_the_child_process():
    """The child code applies each setting: the stale model's share and the budget's cap."""
    mm = load_bench("measure_model_solve")
    code = mm._CHILD.format(here=mm.HERE, inner=0.02, cap=7, case=("collinear", 200, 10, 3,
                                                                   1, 3, 1e-1))
    probe = code.split("geo, n, d")[0] + (
        "print(SOLVERS['newton'].solve.keywords, gram_cd.SWEEP_BUDGET_CAP)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "{'inner_stale': 0.02} 7"


def test_product_unit_is_the_two_products_of_an_iteration():
    mm = load_bench("measure_model_solve")
    small, big = mm.product_unit(1, n=2000, m=64, C=5), mm.product_unit(1, n=8000, m=64, C=5)
    assert 0 < small < 1e-6 and 0 < big < 1e-6  # seconds per multiply-add


def test_solver_cost_measurement_fits_both_newton_models(capsys):
    """benchmarks/measure_solver_costs.py on one tiny --extra problem of a named kind and seed:
    both solvers run at every point, both Newton fits and their per-problem errors print."""
    mc = load_bench("measure_solver_costs")
    threads = torch.get_num_threads()
    try:
        mc.main(["--geometry", "", "--extra", "tiny:600:24:4:collinear:3", "--n-lambdas", "8"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    # every point but λ_max's closed form, or that one too where the fit's own λ_max (its
    # float32 standardization) falls a hair above the grid's first λ
    counts = {m.group(1): int(m.group(2))
              for m in re.finditer(r"\[tiny\] (owlqn|newton): (\d+) points", out)}
    assert counts.keys() == {"owlqn", "newton"} and set(counts.values()) <= {7, 8}
    assert "Newton per point with the model solves' counted work" in out
    # the examples read by data-space model solves are priced in the same fit
    assert re.search(r"\* blas3 \+ [0-9.e+-]+ \* data \+", out)
    assert [ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("tiny ")] == \
        ["owlqn", "newton", "newton-work"]
    for bad in ("tiny:600:24", "tiny:600:24:4:nope", "tiny:600:24:4:collinear:x"):
        with pytest.raises(SystemExit, match="--extra: expected NAME:n:d:C"):
            mc.main(["--geometry", "", "--extra", bad])
    with pytest.raises(SystemExit, match="--threads: expected a positive count, got 0"):
        mc.main(["--geometry", "", "--threads", "0"])


def test_compare_revisions_fits_both_sides_and_shows_the_choices(capsys, tmp_path):
    """benchmarks/compare_revisions.py against HEAD on a tiny case: both sides fitted in
    their own processes, the same objective where the fitter is the same, the worktree
    removed afterwards."""
    cr = load_bench("compare_revisions")
    assert cr.parse_case("collinear") == ("collinear", 10_000, 256, 10, 0, 30, 1e-2)
    assert cr.parse_case("collinear:300:20:3:5") == ("collinear", 300, 20, 3, 5, 20, 1e-2)
    for bad in ("nope", "collinear:300:20", "nope:300:20:3:5", "collinear:300:20:3:5:4:x"):
        with pytest.raises(SystemExit, match="--cases: expected a geometry"):
            cr.parse_case(bad)
    before = subprocess.run(["git", "-C", cr.ROOT, "worktree", "list"], capture_output=True,
                            text=True).stdout
    for extra in ([], ["--quiet-start"]):  # the child draws the case, or reads it from files
        assert cr.main(["--base", "HEAD", "--repeats", "1",
                        "--cases", "collinear:300:20:3:5:4:0.1", *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        row = next(ln for ln in lines if ln.startswith("collinear:300:20:3:5:4:0.1"))
        assert "base/this" in row
        diff = row.split("objective rel. diff")[1].split()[0]
        assert float(diff) < 1e-5
        first = row.split("first point (median) base ")[1].split()
        assert first[1] == "ms" and first[2] == "this" and first[4] == "ms"
        assert 0 < float(first[0]) < 1e5 and 0 < float(first[3]) < 1e5
        letters = [ln.split()[-1] for ln in lines if ln.strip().startswith(("base ", "this "))
                   and not ln.startswith("base =")]
        assert len(letters) == 2 and all(len(v) == 4 and set(v) <= set("on+-") for v in letters)
    # the files hold the case as the child would draw it
    import bench_path as bp

    prefix = cr.write_case(("collinear", 300, 20, 3, 5, 4, 0.1), str(tmp_path / "c"))
    X, y = bp.make_geometry("collinear", 300, 20, 3, 5)
    np.testing.assert_array_equal(np.load(prefix + "-X.npy"), X)
    np.testing.assert_array_equal(np.load(prefix + "-y.npy"), y)
    np.testing.assert_array_equal(np.load(prefix + "-lams.npy"),
                                  bp.lambda_grid(X, y, 3, 4, 0.1))
    assert subprocess.run(["git", "-C", cr.ROOT, "worktree", "list"], capture_output=True,
                          text=True).stdout == before
    with pytest.raises(SystemExit, match="--base: not a revision"):
        cr.main(["--base", "no-such-rev", "--cases", "collinear:300:20:3:5"])


def test_compare_revisions_fits_a_held_out_draw_as_the_sweep_drew_it(capsys, tmp_path):
    """``heldout:SEED:K`` cases: the K-th draw of ``sweep_heldout.py --seed SEED`` (a kind no
    geometry makes: rare classes) with the sweep's 20 λ to its eps, the draws the sweep skips
    skipped; fitted on both sides from the child's own draw and from the parent's files."""
    cr = load_bench("compare_revisions")
    sh = load_bench("sweep_heldout")
    bp = load_bench("bench_path")
    assert cr.parse_case("heldout:28:2") == ("heldout", 28, 2, 0, 0, 20, None)
    assert cr.parse_case("heldout-deep:5:1")[:3] == ("heldout-deep", 5, 1)
    for bad in ("heldout:28", "heldout:28:0", "heldout:x:2", "heldout:28:2:3"):
        with pytest.raises(SystemExit, match="--cases: expected heldout"):
            cr.parse_case(bad)
    rng, trials = np.random.default_rng(28), []
    while len(trials) < 2:  # the sweep's own loop
        t = sh.draw(rng)
        if t is not None:
            trials.append(t)
    name, X, y, eps = trials[1]
    assert name.startswith("rare-class") and (y == 0).sum() == 3
    got = cr.case_data(cr.parse_case("heldout:28:2"))
    np.testing.assert_array_equal(got[0], X)
    np.testing.assert_array_equal(got[1], y)
    np.testing.assert_array_equal(got[2], bp.lambda_grid(X, y, int(y.max()) + 1, 20, eps))
    prefix = cr.write_case(cr.parse_case("heldout:28:2"), str(tmp_path / "h"))
    np.testing.assert_array_equal(np.load(prefix + "-X.npy"), X)
    for bad in (("heldout", 0), ("nope", 1)):
        with pytest.raises(ValueError, match="nth_draw: expected"):
            sh.nth_draw(28, bad[1], bad[0])
    for extra in ([], ["--quiet-start"]):
        assert cr.main(["--base", "HEAD", "--repeats", "1", "--cases", "heldout:28:2",
                        *extra]) == 0
        row = next(ln for ln in capsys.readouterr().out.splitlines()
                   if ln.startswith("heldout:28:2"))
        assert float(row.split("objective rel. diff")[1].split()[0]) < 1e-5


def test_thread_pool_measurement_sets_both_pools_and_restores_the_blas_count(capsys,
                                                                            monkeypatch):
    """benchmarks/measure_thread_pools.py on a tiny case: every configuration fitted with its
    torch count and its BLAS count in force during the fit, the same objectives, the
    library's BLAS_THREADS restored afterwards."""
    from threadpoolctl import threadpool_info

    from sparse_probe.solvers import threads as th

    mp = load_bench("measure_thread_pools")
    assert mp.parse_configs("1x1,2X3") == [(1, 1), (2, 3)]
    for bad in ("2", "0x1", "1x", "ax1"):
        with pytest.raises(SystemExit, match="--configs: expected TORCHxBLAS"):
            mp.parse_configs(bad)
    with pytest.raises(SystemExit, match="'2x1' is given twice"):
        mp.parse_configs("2x1,1x1,2x1")
    seen = []
    real = th.StartThreads.settle

    def spy(self):
        k = real(self)
        seen.append((k, th.BLAS_THREADS))
        return k

    monkeypatch.setattr(th.StartThreads, "settle", spy)
    def blas():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    np.ones((4, 4)) @ np.ones((4, 4))
    before = blas()
    assert mp.main(["--cases", "collinear:300:20:3:5:4:0.1", "--configs", "1x1,2x2",
                    "--repeats", "1", "--solver", "newton"]) == 0
    assert seen[1:] == [(1, 1), (2, 2)]  # after the warm-up fit
    assert th.BLAS_THREADS == 1
    after = blas()  # the fits may load another BLAS (scipy's): those loaded before restored
    assert before and {f: after[f] for f in before} == before
    out = capsys.readouterr().out
    assert "solver: newton" in out
    gap = float(out.split("objectives agree to ")[1].split(";")[0])
    assert gap < 1e-8
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("collinear:300x20x3:5"))
    cells = re.findall(r"(\d+\.\d+)/\s*(\d+\.\d+)\s+(\d+\.\d+)", row)  # fastest/slowest ratio
    assert len(cells) == 2 and cells[0][2] == "1.00"  # the first configuration against itself
    assert all(float(a) <= float(b) for a, b, _ in cells)
    letters = out.split("solvers per point: ")[1].splitlines()[0]
    assert letters.startswith("1x1 ") and set(letters.split("; ")[0][4:]) <= set("n+-")


def test_a_peer_that_stopped_early_is_named_in_the_report():
    # glmnet's path cut short (jerr -k) covers fewer λ than ours: its time is not the same work
    bp = load_bench("bench_path")
    assert bp.peer_stop_note({"jerr": 0}, 20, 20) == ""
    assert bp.peer_stop_note({"jerr": -14}, 13, 20) == ", stopped after 13 of 20 λ (jerr -14)"
    assert bp.peer_stop_note({}, 19, 20) == ", stopped after 19 of 20 λ"


def test_a_peer_that_stopped_early_is_timed_against_ours_on_the_same_lambdas():
    # python-glmnet stopped the 1,000-class path at 23 of 30 λ (jerr -24): its time set against
    # our whole path had favoured it; the ratio is now against our time to its last λ
    bp = load_bench("bench_path")
    # fit_path's clock starts inside the call: shifted so the last point ends at the elapsed time
    assert bp.point_seconds(5.0, [1.0, 2.5, 4.5]) == pytest.approx([1.5, 3.0, 5.0])
    assert bp.point_seconds(1.0, []) == []
    ours = {"time": 10.0, "n": 4, "point_seconds": [1.0, 2.0, 4.0, 10.0]}
    assert bp.peer_ratio({"time": 20.0, "n": 4}, ours) == (2.0, "")
    assert bp.peer_ratio({"time": 20.0, "n": 5}, ours) == (2.0, "")  # ours the shorter: as is
    assert bp.peer_ratio({"time": 20.0, "n": 3}, ours) == (5.0, "*")  # 20 s over our 4.0 s
    assert bp.peer_ratio({"time": 20.0, "n": 1}, ours) == (20.0, "*")
    # no per-point times (an older run): the whole path, marked as favouring the peer
    assert bp.peer_ratio({"time": 20.0, "n": 3}, {"time": 10.0, "n": 4}) == (2.0, "!")
    assert bp.peer_ratio({"time": 20.0, "n": 0}, ours) == (2.0, "!")
    # a real path: one time per point, increasing, the last the whole call's
    X, y = bp.make_geometry("current", 300, 20, 3, 4)
    lams = bp.lambda_grid(X, y, 3, 6, 1e-2)
    el, W, _B, info = bp.run_ours(X, y, lams, threads=1)
    pts = info["point_seconds"]
    assert len(pts) == len(W) == 6 and pts[-1] == pytest.approx(el)
    assert np.all(np.diff(pts) >= 0) and pts[0] > 0


def test_a_glmnet_peer_takes_its_threshold_from_its_name():
    bp = load_bench("bench_path")
    assert bp.glmnet_thresh("glmnet") == bp.GLMNET_THRESH == 1e-7  # python-glmnet's default
    assert bp.glmnet_thresh("glmnet(thresh=1e-9)") == 1e-9
    for bad in ("glmnet(thresh=0)", "glmnet(thresh=-1e-9)", "glmnet(thresh=x)", "glmnet(1e-9)",
                "glmnet(thresh=1e-9"):
        with pytest.raises(SystemExit, match="--peers: expected glmnet or glmnet"):
            bp.glmnet_thresh(bad)
    # a tighter threshold is a closer solution: its objectives no worse anywhere on the path,
    # better somewhere (the same λ, the same shared float64 objective)
    X, y = bp.make_geometry("collinear", 600, 30, 4, 3)
    lams = bp.lambda_grid(X, y, 4, 8, 1e-2)
    objs = {}
    for t in (1e-4, 1e-10):
        _el, W, B, info = bp.run_glmnet(X, y, lams, 4, thresh=t)
        assert info["jerr"] == 0 and len(W) == len(lams)
        objs[t] = bp.objectives(X, y, W, B, lams)
    assert np.all(objs[1e-10] <= objs[1e-4] * (1 + 1e-12))
    assert np.max((objs[1e-4] - objs[1e-10]) / objs[1e-10]) > 1e-7


def test_bench_peers_split_at_commas_outside_a_peers_options(capsys, monkeypatch):
    bp = load_bench("bench_path")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the spawned workers import it
    with pytest.raises(SystemExit, match="--peers: expected glmnet or glmnet"):
        bp.main(["--geometry", "current", "--n", "300", "--d", "20", "--classes", "3",
                 "--n-lambdas", "4", "--peers", "glmnet(thresh=0)"])
    assert "[current]" not in capsys.readouterr().out  # refused before any fit
    bp.main(["--geometry", "current", "--n", "300", "--d", "20", "--classes", "3",
             "--n-lambdas", "4", "--peers", "glmnet,glmnet(thresh=1e-10)"])
    out = capsys.readouterr().out
    assert re.search(r"^  glmnet: [0-9.]+ s", out, re.M)
    assert re.search(r"^  glmnet\(thresh=1e-10\): [0-9.]+ s", out, re.M)
    assert "glmnet(thresh=1e-10)/ours" in out


def test_trace_shows_each_point_and_each_choice_the_path_made(capsys):
    """benchmarks/trace_path.py on a tiny collinear path: a row per point with the solver that
    ran, and one line per solver choice whose answer matches the solver of its point."""
    tp = load_bench("trace_path")
    assert tp.main(["collinear:1500:40:6:5:12:0.01", "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in out if re.match(r"^ +[0-9]+ +[a-z+-]+ +[0-9]+ +[0-9]+ +[0-9.]+$", ln)]
    assert [int(r[0]) for r in rows] == list(range(12))
    assert rows[0][1] == "closed-form"  # λ_max
    chosen = [ln.rsplit("-> ", 1)[1] for ln in out if ln.startswith("  N=")]
    # every solved point asked the choice at least once (again after a KKT round); as many
    # answers said newton as points Newton ran on, at least
    solved = [r[1] for r in rows if r[1] != "closed-form"]
    assert len(chosen) >= len(solved) and "newton" in solved
    assert chosen.count("newton") >= solved.count("newton")
    assert chosen[0] == "owlqn"  # before OWL-QN has run there is no count to compare with


def test_sweep_grouped_checks_the_grouped_penalty_against_glmnet_grouped(capsys, monkeypatch):
    sweep = load_bench("sweep_heldout")

    def small(rng, wide):
        X, y = load_bench("bench_path").make_geometry("lowrank-relu", 350, 25, 4, 11)
        return "lowrank-relu seed=11", X, y, 1e-2

    monkeypatch.setattr(sweep, "draw", small)
    assert sweep.main(["--seed", "1", "--trials", "1", "--grouped"]) == 0
    out = capsys.readouterr().out.splitlines()
    # FISTA is the grouped penalty's default solver; an elementwise fit would fail the grouped KKT
    assert "fista" in out[0] and out[1].startswith("1 trials: largest KKT/tol")


@pytest.mark.parametrize("grouped", [False, True])
def test_lambda_grid_starts_where_the_first_feature_enters(grouped):
    from sparse_probe import fit_path

    bp = load_bench("bench_path")
    X, y = bp.make_geometry("current", 300, 20, 3, 4)
    lam_max = bp.lambda_grid(X, y, 3, 5, 1e-2, grouped=grouped)[0]
    p = fit_path(X, y, alpha=bp.ALPHA, lambdas=[1.001 * lam_max, 0.97 * lam_max], grouped=grouped,
                 progress=False)
    assert p.nnz[0] == 0 and p.nnz[1] > 0


def test_bench_geometries_shows_each_run_of_a_repeated_setting(capsys, monkeypatch):
    # --threads default,1,default,1: the repeats had overwritten the first runs, whose (slower)
    # times the table then never showed
    bp = load_bench("bench_path")
    assert bp.run_labels(["a", "b", "a", "a"]) == ["a", "b", "a #2", "a #3"]
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the spawned workers import it
    bp.main(["--geometry", "current", "--n", "300", "--d", "20", "--classes", "3",
             "--n-lambdas", "5", "--threads", "1,1", "--peers", ""])
    out = capsys.readouterr().out
    # each run printed as it finishes, and a row of its own in the table and in the CPU table
    runs = re.findall(r"^  (ours\(threads=1\)(?: #2)?): ([0-9.]+) s", out, re.M)
    rows = re.findall(r"^ +current +300×20×3 +(ours\(threads=1\)(?: #2)?) +([0-9.]+) ", out, re.M)
    cpu = re.findall(r"^ +current +(ours\(threads=1\)(?: #2)?) +[0-9.]+$", out, re.M)
    assert [r[0] for r in runs] == ["ours(threads=1)", "ours(threads=1) #2"]
    assert rows == runs  # the table shows each run's own time
    assert cpu == [r[0] for r in runs]


def test_the_run_line_names_newtons_count_and_a_drop_or_raise_in_threads():
    bp = load_bench("bench_path")
    assert bp.newton_count_note({"threads": 2, "threads_newton": 2}) == ""
    assert bp.newton_count_note({"threads": 1, "threads_newton": 2}) == " (Newton 2)"
    assert bp.newton_count_note({"threads": 2, "threads_newton": None,
                                 "threads_dropped_at": [7, 1]}) == ", 1 from λ #7"
    assert bp.newton_count_note({"threads": 2, "threads_dropped_at": None}) == ""
    assert bp.newton_count_note({"threads": 1, "threads_dropped_at": None,
                                 "threads_raised_at": [3, 2]}) == ", up to 2 from λ #3"


def test_cross_rows_measurement_times_both_routes_against_the_reference(capsys):
    """benchmarks/measure_cross_rows.py on a small collinear path: the joining rows it
    recorded, gathered (GATHER_COPY 0) and not (the library's value here), agree with the
    per-class reference route to float32 rounding, and the library's constant is restored."""
    newton_module = importlib.import_module("sparse_probe.solvers.newton")
    before = newton_module.GATHER_COPY
    load_bench("measure_cross_rows").main(["--cases", "collinear:600:30:5:3:10", "--gather", "0",
                                           "--repeats", "1"])
    restored = newton_module.GATHER_COPY
    assert restored == before
    lines = capsys.readouterr().out.splitlines()
    ref, default, always = (line.split() for line in lines[2:5])
    calls = int(ref[1])
    assert calls > 0 and ref[2:5] == ["per", "class", "(reference)"]
    assert default[:2] == ["library", "(default)"] and float(default[2]) == before
    assert always[0] == "library" and float(always[1]) == 0 and int(always[2]) == calls
    assert float(default[-1]) <= 1e-5 and float(always[-1]) <= 1e-5


@pytest.mark.parametrize("route", ["pool", "openmp"])
def test_ce_threads_measurement_times_each_threshold_and_restores_it(capsys, route):
    """benchmarks/measure_ce_threads.py on a small 40-class path, each route: a row per
    threshold, the kernel's calls counted inside the fit (the fused kernel runs from 32
    classes), and the library's thresholds and route back in place after."""
    fused_ce = importlib.import_module("sparse_probe.solvers.fused_ce")
    kernel = fused_ce._kernel()
    if route == "openmp" and (kernel is None or not fused_ce._openmp(kernel)):
        with pytest.raises(SystemExit):  # refused: this build has no OpenMP blocks
            load_bench("measure_ce_threads").main(["--route", "openmp"])
        return
    before = (fused_ce.MIN_ENTRIES_PER_THREAD, fused_ce.OPENMP_MIN_ENTRIES_PER_THREAD,
              fused_ce._FORKED)
    load_bench("measure_ce_threads").main(["--cases", "current:600:48:40:3:4", "--route", route,
                                           "--per-thread", f"1024,{1 << 40}", "--repeats", "1"])
    restored = (fused_ce.MIN_ENTRIES_PER_THREAD, fused_ce.OPENMP_MIN_ENTRIES_PER_THREAD,
                fused_ce._FORKED)
    assert restored == before and restored[2] is before[2]
    out = capsys.readouterr().out.splitlines()
    assert f"route {route}" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [r[0] for r in rows] == ["current:600:48:40:3:4"] * 2
    assert [int(r[1]) for r in rows] == [600 * 40] * 2
    assert [int(r[3]) for r in rows] == [min(torch.get_num_threads(), 600 * 40 // 1024), 1]
    if fused_ce.usable(torch.zeros((1, 40), dtype=torch.float64)):
        assert all(int(r[6]) > 0 and float(r[5]) > 0 for r in rows)


def test_centering_measurement_times_every_route_and_fits_both_ways(capsys):
    """benchmarks/measure_centering.py: a row per shape (the routes checked against numpy's
    first), then a small path fitted with the compiled kernel and with numpy's steps, their
    objectives the same, SPARSE_PROBE_CENTERING left as it was."""
    import os

    mod = load_bench("measure_centering")
    mod.main(["--cases", "current:600:30:5:3:6", "--repeats", "2", "--fits", "1"])
    assert "SPARSE_PROBE_CENTERING" not in os.environ
    lines = capsys.readouterr().out.splitlines()
    shapes = [tuple(int(v) for v in line.split()[:2]) for line in lines[2:2 + len(mod.SHAPES)]]
    assert shapes == mod.SHAPES
    if mod.CE._kernel() is not None:
        fit = lines[-1].split()
        assert fit[0] == "current:600:30:5:3:6" and float(fit[-1]) <= 1e-9


def test_bench_geometries_keeps_the_fastest_of_repeated_runs(capsys, monkeypatch):
    bp = load_bench("bench_path")
    with pytest.raises(SystemExit, match="--repeats: expected at least 1, got 0"):
        bp.main(["--geometry", "current", "--repeats", "0"])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the spawned workers import it
    bp.main(["--geometry", "current", "--n", "300", "--d", "20", "--classes", "3",
             "--n-lambdas", "5", "--repeats", "3", "--peers", "glmnet"])
    out = capsys.readouterr().out
    # interleaved: ours, glmnet, ours, glmnet, ...; each run printed as it finishes
    order = re.findall(r"^  (ours|glmnet) \(run ([0-9])\): ([0-9.]+) s", out, re.M)
    assert [(a, int(b)) for a, b, _ in order] == [(w, r) for r in (1, 2, 3)
                                                  for w in ("ours", "glmnet")]
    ours = [float(t) for a, _, t in order if a == "ours"]
    glm = [float(t) for a, _, t in order if a == "glmnet"]
    row = re.search(r"^ +current +300×20×3 +ours +([0-9.]+) +\S+ +\S+ +([0-9.]+) +([0-9.]+)",
                    out, re.M)
    assert float(row[1]) == pytest.approx(min(ours), abs=0.006)  # the fastest, not the last
    assert float(row[2]) == pytest.approx(min(glm), abs=0.006)
    o, g, h = min(ours), min(glm), 0.005  # each printed to two decimals (glmnet's ~0.00 s)
    assert (g - h) / (o + h) - h <= float(row[3]) <= (g + h) / (o - h) + h
    assert "each the fastest of 3 runs, interleaved" in out
    spread = re.search(r"^current runs: ours ([0-9., ]+); glmnet ([0-9., ]+) s$", out, re.M)
    assert [float(t) for t in spread[1].split(", ")] == pytest.approx(ours, abs=0.006)
    assert [float(t) for t in spread[2].split(", ")] == pytest.approx(glm, abs=0.006)


def test_copied_columns_measurement_prints_both_fits_per_case(capsys, monkeypatch):
    """benchmarks/measure_copied_columns.py on a small draw: a row with the copies found, both
    fits verified, their objectives the same within tolerance, each fit's solvers per point."""
    m = load_bench("measure_copied_columns")
    monkeypatch.setattr(m, "CASES", {"small": ("current", 300, 40, 4, 5, 1e-2)})
    assert m.main(["--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.split()[0] == "small").split()
    assert int(row[1]) == 40 // 5  # the first fifth copied; the zero column: constant, no group
    assert float(row[7]) <= 1 and abs(float(row[8])) <= 1e-6  # one optimum, within tolerances
    assert out[-2].split()[0] == "split" and out[-1].split()[0] == "not"
    assert len(out[-1].split()[1]) == 20  # one mark per λ
    with pytest.raises(SystemExit, match="unknown case 'nope'"):
        m.main(["--cases", "nope"])


def test_model_solve_replays_end_where_the_path_solves_did(tmp_path):
    """benchmarks/replay_model_solves.py: the model solves it records from a small collinear
    path, replayed by this library in a fresh process from the same starts, make the same
    sweeps and reach the same objective as in the path: bit for bit where the path solved the
    model from scratch, to rounding where it began on a factor kept from an earlier solve (the
    replay factors afresh); the slowest are the ones kept, and the enet_qp the path calls is
    restored. Every solve of the path is replayed, so which ones are slowest on a busy machine
    does not decide which kinds are checked."""
    rep = load_bench("replay_model_solves")
    newton_module = importlib.import_module("sparse_probe.solvers.newton")
    before = newton_module.enet_qp
    case = load_bench("compare_revisions").parse_case("collinear:1500:60:5:3:10")
    (tmp_path / "kept").mkdir()
    seconds = rep.record(case, str(tmp_path / "kept"), 0.0, 3)
    assert newton_module.enet_qp is before
    files = sorted((tmp_path / "kept").glob("model-*.npz"))
    assert len(seconds) > 3 and len(files) == 3 and seconds == sorted(seconds, reverse=True)
    kept = sorted(float(np.load(f)["seconds"]) for f in files)
    assert kept == sorted(seconds[:3])
    (tmp_path / "all").mkdir()
    rep.record(case, str(tmp_path / "all"), 0.0, 10_000)
    files = sorted((tmp_path / "all").glob("model-*.npz"))
    rows = rep.replay(rep.ROOT, str(tmp_path / "all"), 1)
    assert set(rows) == {str(f) for f in files}
    kinds = set()
    for f in files:
        d = np.load(f)
        _, sweeps, viol, obj, phases = rows[str(f)]
        assert phases == []  # spied only when asked
        assert sweeps == int(d["sweeps"])
        if bool(d["factored"]):
            assert obj == pytest.approx(float(d["obj"]), rel=1e-12, abs=1e-14)
            assert (viol <= float(d["tol"])) == (float(d["viol"]) <= float(d["tol"]))
        else:
            assert obj == float(d["obj"]) and viol == float(d["viol"])
        kinds.add(bool(d["factored"]))
    assert kinds == {False, True}  # both kinds met


def test_model_solve_replay_prints_a_row_per_kept_model_and_the_total(capsys):
    """replay_model_solves.py's report without --base: the case's line, a row per kept model
    (its size, how it began, the path's seconds, then this library's replay) and the total."""
    load_bench("replay_model_solves").main(["--cases", "collinear:1500:60:5:3:10",
                                            "--min-seconds", "0", "--max-models", "2",
                                            "--repeats", "1", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[collinear:1500:60:5:3:10]") and "slowest 2 kept" in lines[0]
    rows = [line.split() for line in lines[2:-1]]
    assert len(rows) == 2 and all(r[2] in ("cd", "factor") and r[4] == "|" for r in rows)
    assert lines[-1].startswith("total: this ") and "base" not in lines[-1]


def test_model_solve_phases_add_up_to_the_replayed_solve(tmp_path):
    """replay_model_solves.replay(phases=True): a solve phase by phase, on a collinear model
    made here (N = 600, over DIRECT_MAX: coordinate descent first, crawling into the
    active-set method): its coordinate-descent chunks summed into phases that add up to the
    sweeps the solve reports, the last phase's violation the solve's, its objective the same
    as without the spies."""
    rep = load_bench("replay_model_solves")
    rng = np.random.default_rng(5)
    B = rng.standard_normal((400, 300))
    A = np.hstack([B, B @ rng.standard_normal((300, 300)) / 17.0])  # exact combinations
    Q = A.T @ A / 400
    q = Q @ (rng.standard_normal(600) * (rng.random(600) < 0.5)) + 0.01 * rng.standard_normal(600)
    np.savez(tmp_path / "model-0000.npz", Q=Q, q=q, u0=np.zeros(600), l1=0.01, l2=1e-4,
             tol=1e-7, factored=False)
    plain = rep.replay(rep.ROOT, str(tmp_path), 1)[str(tmp_path / "model-0000.npz")]
    _, sweeps, viol, obj, phases = rep.replay(rep.ROOT, str(tmp_path), 1, phases=True)[
        str(tmp_path / "model-0000.npz")]
    assert plain[1:4] == (sweeps, viol, obj) and plain[4] == []
    names = [p[0] for p in phases]
    assert names[0] == "cd" and "active-set" in names  # it crawled into the method
    assert set(names) <= {"cd", "active-set"}
    assert "cd,cd" not in ",".join(names)  # chunks summed into one phase
    assert sum(p[1] for p in phases if p[0] == "cd") == sweeps > 8
    assert all(p[1] > 0 and p[3] >= 0 for p in phases)
    assert phases[-1][2] == pytest.approx(viol, rel=1e-6)  # the kernel's reading of it


def test_model_solve_report_prints_phases_and_keeps_the_models(tmp_path, capsys):
    """replay_model_solves.py --phases --keep DIR: a phase line per kept model after the
    table; the recorded models stay in DIR/<case>, and a second run into it leaves only its
    own there."""
    rep = load_bench("replay_model_solves")
    spec = "collinear:1500:60:5:3:10"
    argv = ["--cases", spec, "--min-seconds", "0", "--max-models", "3", "--repeats", "1",
            "--threads", "1", "--phases", "--keep", str(tmp_path)]
    rep.main(argv)
    folder = tmp_path / spec.replace(":", "-")
    files = sorted(folder.glob("model-*.npz"))
    assert len(files) == 3
    out = capsys.readouterr().out.splitlines()
    at = out.index(next(line for line in out if line.startswith("phases (this tree")))
    printed = out[at + 1: at + 4]
    assert [line.split()[0] for line in printed] == [f.name[6:10] for f in files]
    assert all(("cd " in line or "active-set " in line) and " -> " in line for line in printed)
    (folder / "model-9999.npz").write_bytes(b"")  # an earlier run's leftover
    rep.main(argv)
    assert len(list(folder.glob("model-*.npz"))) == 3
    assert not (folder / "model-9999.npz").exists()
