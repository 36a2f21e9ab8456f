"""`sparse-probe fit` and `sparse-probe inspect` on a features directory."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sparse_probe.cli import main
from sparse_probe.synthetic import make_sparse_classification


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    X, y, support = make_sparse_classification(1200, 32, 4, informative_per_class=2, seed=4)
    for split, sl in (("train", slice(0, 800)), ("val", slice(800, 1000)), ("test", slice(1000, None))):
        np.save(d / f"{split}.npy", X[sl])
        np.save(d / f"{split}_labels.npy", y[sl])
    (d / "meta.json").write_text(json.dumps({"format": 1, "classes": ["a", "b", "c", "d"], "d": 32}))
    return d, support


@pytest.mark.slow
def test_fit_writes_probe_and_inspect_prints(tmp_path, features_dir):
    d, support = features_dir
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                  "--n-lambdas", "25", "--eps", "1e-2"])
    assert r.exit_code == 0, r.output
    assert "selected #" in r.output
    probe = json.loads((out / "probe.json").read_text())
    assert probe["selection"]["rule"] == "val_acc_within"
    acc = probe["accuracy"]
    assert acc["dense"]["test"] > 0.8
    # the paper's rule: within Δ = 5 points on validation (test may wobble a little more)
    assert acc["sparse"]["val"] >= acc["dense"]["val"] - 0.05 - 1e-9
    assert acc["sparse"]["test"] >= acc["dense"]["test"] - 0.1
    assert probe["features_per_class"]["sparse"] <= probe["features_per_class"]["dense"]
    tops = [r for r in probe["top_features"]["sparse"] if r["rank"] == 1]
    assert len(tops) == 4
    for row in tops:  # each class's strongest feature is one of its planted ones
        assert row["feature"] in support[row["class"]] and row["weight"] > 0
    assert (out / "path.npz").exists() and (out / "head.pt").exists()
    r2 = CliRunner().invoke(main, ["inspect", str(out), "--plot", str(tmp_path / "p.png")])
    assert r2.exit_code == 0, r2.output
    assert "<- selected" in r2.output and "top features per class" in r2.output
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.slow
def test_fit_select_features_per_class(tmp_path, features_dir):
    d, _ = features_dir
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                  "--n-lambdas", "25", "--select", "features_per_class=2"])
    assert r.exit_code == 0, r.output
    probe = json.loads((out / "probe.json").read_text())
    assert probe["features_per_class"]["sparse"] <= 2


def test_probe_records_copied_columns_and_splits_them(tmp_path, features_dir):
    """A features folder whose last column copies a planted one: probe.json counts it, and the
    two columns carry the same weight in the selected layer (the optimum's equal split)."""
    from sparse_probe import fit_features

    d, support = features_dir
    dup = tmp_path / "features"
    dup.mkdir()
    j = int(support[0][0])
    for split in ("train", "val", "test"):
        X = np.load(d / f"{split}.npy")
        np.save(dup / f"{split}.npy", np.concatenate([X, X[:, [j]]], 1))
        np.save(dup / f"{split}_labels.npy", np.load(d / f"{split}_labels.npy"))
    meta = json.loads((d / "meta.json").read_text())
    (dup / "meta.json").write_text(json.dumps(dict(meta, d=33)))
    probe = fit_features(dup, tmp_path / "probe", n_lambdas=8, eps=1e-2, progress=False)
    assert probe["fit"]["copied_columns"] == 1
    rows = {(r["class"], r["feature"]): r["weight"] for r in probe["top_features"]["sparse"]}
    pairs = [(rows[(c, j)], rows[(c, 32)]) for c in range(4) if (c, j) in rows]
    assert pairs and all(a == b for a, b in pairs)


def test_fit_errors(tmp_path, features_dir):
    d, _ = features_dir
    r = CliRunner().invoke(main, ["fit", "--features", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "train.npy" in r.output
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(tmp_path / "o"),
                                  "--select", "bogus=1"])
    assert r.exit_code != 0 and "unknown rule 'bogus'" in r.output
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "nothing")])
    assert r.exit_code != 0 and "probe.json" in r.output


@pytest.mark.slow
def test_fit_features_library_function(tmp_path, features_dir):
    """The library function behind `sparse-probe fit`: features folder in, probe folder out."""
    import torch

    from sparse_probe import SparseHead, fit_features
    from sparse_probe.rundir import RunDirError

    d, _ = features_dir
    out = tmp_path / "probe"
    probe = fit_features(d, out, n_lambdas=20, eps=1e-2, select_rule="features_per_class=3",
                         top_k=2, progress=False)
    assert probe == json.loads((out / "probe.json").read_text())
    assert probe["classes"] == ["a", "b", "c", "d"] and probe["d"] == 32
    assert probe["selection"]["rule"] == "features_per_class"
    assert probe["features_per_class"]["sparse"] <= 3
    assert probe["fit"]["n_lambdas"] == 20 and probe["fit"]["eps"] == 1e-2
    assert max(r["rank"] for r in probe["top_features"]["sparse"]) <= 2
    # head.pt alone reproduces the sparse layer's test accuracy written in probe.json
    head = SparseHead.load(out / "head.pt")
    X, y = np.load(d / "test.npy"), np.load(d / "test_labels.npy")
    with torch.no_grad():
        pred = head(torch.as_tensor(X)).argmax(1).numpy()
    assert float((pred == y).mean()) == pytest.approx(probe["accuracy"]["sparse"]["test"])

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match=r"train\.npy"):
        fit_features(empty, tmp_path / "o", progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in d.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "meta.json").write_text(json.dumps({"format": 99, "classes": ["a"]}))
    with pytest.raises(RunDirError, match=r"meta\.json: unsupported format 99"):
        fit_features(bad, tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="unknown rule 'bogus'"):
        fit_features(d, tmp_path / "o", select_rule="bogus=1", progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_dense_path_end_is_named_so(tmp_path, features_dir):
    """The least-regularized path point is "dense path end" in fit / inspect output (the
    network's own layer is "original"); probe.json keeps its "dense" key."""
    d, _ = features_dir
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                  "--n-lambdas", "10", "--eps", "1e-2"])
    assert r.exit_code == 0, r.output
    lines = [ln.strip() for ln in r.output.splitlines()]
    assert any(ln.startswith("dense path end") for ln in lines)
    assert not any(ln.startswith("dense ") and not ln.startswith("dense path end")
                   for ln in lines)
    assert "dense" in json.loads((out / "probe.json").read_text())["accuracy"]
    for layer in ("dense-path-end", "dense"):
        r = CliRunner().invoke(main, ["inspect", str(out), "--layer", layer])
        assert r.exit_code == 0, r.output
        assert "(dense path end layer," in r.output


def test_counterfactual_model_original_and_deprecated_dense():
    r = CliRunner().invoke(main, ["counterfactual", "--model", "dense"])
    assert r.exit_code != 0
    assert "--model dense is deprecated" in r.output and "use --model original" in r.output
    assert "--model original needs --run" in r.output
    r = CliRunner().invoke(main, ["counterfactual", "--model", "original"])
    assert "deprecated" not in r.output and "--model original needs --run" in r.output


@pytest.mark.parametrize("solver,method", [("newton", "newton"), ("owlqn", "owlqn")])
def test_fit_cli_names_a_restricted_solver(tmp_path, features_dir, solver, method):
    d, _ = features_dir
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                  "--n-lambdas", "8", "--eps", "5e-2", "--solver", solver])
    assert r.exit_code == 0, r.output
    probe = json.loads((out / "probe.json").read_text())
    assert probe["fit"]["method"] == method and probe["kkt_violation_max"] < 1.0
    bad = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                    "--solver", "lbfgs"])
    assert bad.exit_code != 0 and "'lbfgs' is not one of" in bad.output


def test_fit_cli_takes_a_thread_count_and_records_it(tmp_path, features_dir, monkeypatch):
    from sparse_probe.solvers.threads import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    d, _ = features_dir
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                  "--n-lambdas", "6", "--eps", "5e-2", "--threads", "1"])
    assert r.exit_code == 0, r.output
    fit = json.loads((out / "probe.json").read_text())["fit"]
    assert fit["threads"] == 1 and "threads_newton" in fit and fit["threads_dropped_at"] is None
    assert fit["threads_raised_at"] is None
    bad = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(out),
                                    "--threads", "0"])
    assert bad.exit_code != 0
    assert "threads: expected a positive integer or 'auto', got '0'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def _short_fit(features: Path, out: Path, *options: str) -> tuple[str, dict]:
    """``sparse-probe fit`` of a 6-point path into ``out``: its output and probe.json's fit."""
    r = CliRunner().invoke(main, ["fit", "--features", str(features), "--out", str(out),
                                  "--n-lambdas", "6", "--eps", "5e-2", *options])
    assert r.exit_code == 0, r.output
    return r.output, json.loads((out / "probe.json").read_text())["fit"]


def test_fit_cli_time_budget_stops_the_path_and_says_so(tmp_path, features_dir):
    d, _ = features_dir
    output, fit = _short_fit(d, tmp_path / "probe", "--max-seconds", "0")
    assert fit["n_points"] == 1 and fit["stopped"] == "max_seconds"
    assert "path stopped early (max_seconds): 1 of 6 points" in output
    output, fit = _short_fit(d, tmp_path / "p2")
    assert "stopped early" not in output and fit["stopped"] is None and fit["n_points"] == 6
    output, fit = _short_fit(d, tmp_path / "p3", "--solver", "glmnet")
    assert "stopped early" not in output and fit["stopped"] == "complete"
    bad = CliRunner().invoke(main, ["fit", "--features", str(d), "--out", str(tmp_path / "p4"),
                                    "--max-seconds", "-1"])
    assert bad.exit_code != 0 and "--max-seconds" in bad.output
