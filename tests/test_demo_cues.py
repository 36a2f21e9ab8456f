"""``sparse-probe demo --cue``: planted cues chosen by the user, reported FOUND / MISSED each,
and bad cue options refused with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sparse_probe.cli import main

CUE_ARGS = ["--cue", "watermark=circle", "--cue", "stripe=square", "--cue", "tint=star:0.9"]


@pytest.mark.parametrize(("args", "message"), [
    (["--cue", "glitter=circle"], "unknown cue 'glitter'; expected one of watermark, texture, "
                                  "stripe, tint"),
    (["--cue", "stripe=hexagon"], "cue 'stripe': unknown class 'hexagon'; expected one of "
                                  "circle, cross, ring, square, star, triangle"),
    (["--cue", "tint=star:1.5"], "cue 'tint': strength must be in [0, 1], got 1.5"),
    (["--cue", "tint=star:-1"], "strength must be in [0, 1], got -1.0"),
    (["--cue", "stripe"], "expected NAME=CLASS[:STRENGTH]"),
    (["--cue", "stripe=star", "--cue", "stripe=ring"], "cue 'stripe' given twice"),
    (["--cue", "stripe=star", "--kind", "text"], "cues are planted in the image audit"),
])
def test_bad_cue_options_are_refused_in_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "--cue" in errors[0] and message in errors[0], res.output
    assert not out.exists()  # nothing was started


@pytest.fixture(scope="module")
def cue_demo(tmp_path_factory):
    """A quick image-only demo with three user-chosen cues, two of them marks."""
    out = tmp_path_factory.mktemp("cues") / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sparse_probe.cli", "demo", "--quick", "--kind",
                           "image", "--out", str(out), *CUE_ARGS], capture_output=True, text=True,
                          env=env, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_each_configured_cue_is_reported(cue_demo):
    from sparse_probe.datasets import load_builtin
    from sparse_probe.rundir import read_features_meta

    out, stdout = cue_demo
    meta = read_features_meta(out / "shapes" / "features")
    cues = meta["dataset"]["params"]["cues"]
    assert cues == {"watermark": {"class": "circle", "strength": 0.9},
                    "stripe": {"class": "square", "strength": 0.9},
                    "tint": {"class": "star", "strength": 0.9}}
    ds = load_builtin(meta)  # the description rebuilds the configured data
    assert {c: ds.class_names[k] for c, k in ds.cue_class.items()} == {
        "watermark": "circle", "stripe": "square", "tint": "star"}
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["config"]["cues"] == cues
    run = summary["runs"]["shapes"]
    by_cue = {c["cue"]: c for c in run["cues"]}
    assert set(by_cue) == {"watermark", "stripe", "tint"}
    manifest = [json.loads(line) for line in
                (out / "shapes" / "tasks" / "manifest.jsonl").read_text().splitlines()]
    evidence = {r["hit_key"]: r["evidence"] for r in manifest}
    report = json.loads((out / "shapes" / "report" / "report.json").read_text())
    for cue, c in by_cue.items():
        assert c["kind"] == {"watermark": "mark", "stripe": "mark", "tint": "background"}[cue]
        assert c["class_name"] == cues[cue]["class"]
        # shown: an audited HIT whose evidence is mostly this cue (not merely a cue of its kind)
        shown = [r for r in report["features"] if not r["is_gold"]
                 and r["truth"] == f"spurious:{c['kind']}"
                 and max(evidence[r["hit_key"]]["cues"].items(), key=lambda kv: kv[1])[0] == cue]
        assert c["shown"] == bool(shown)
        flagged = [r for r in shown if r["verdict"] == "spurious"]
        assert c["status"] == ("found" if flagged else "missed")
        assert sorted(map(tuple, c["features"])) == sorted((r["class"], r["feature"])
                                                          for r in flagged)
        line = f"planted cue '{cue}' ({c['kind']}, class {c['class_name']}): {c['status'].upper()}"
        assert line in stdout
    assert "they read each HIT's ground-truth evidence" in stdout
    assert not [f for f in run["flagged"] if f["gold"] and f in run["false_alarms"]]


@pytest.mark.slow
def test_other_cues_are_refused_on_resume(cue_demo):
    out, _ = cue_demo
    res = CliRunner().invoke(main, ["demo", "--quick", "--kind", "image", "--out", str(out),
                                    "--cue", "stripe=square"])
    assert res.exit_code == 2 and "holds a demo run with cues=" in res.output
    assert "--cue watermark=circle:0.9 --cue stripe=square:0.9 --cue tint=star:0.9" in res.output


@pytest.mark.parametrize(("workers", "assignments", "extra", "fillable"), [
    (12, 7, 2, 2), (8, 7, 2, 1), (7, 7, 2, 0), (15, 5, 0, 0)])
def test_extensions_never_ask_for_more_than_the_crowd_can_give(workers, assignments, extra,
                                                                fillable):
    from sparse_probe.demo.config import DemoConfig

    cfg = DemoConfig(workers=workers, assignments=assignments, extra_assignments=extra)
    assert cfg.fillable_extra == fillable
