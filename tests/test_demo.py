"""``sparse-probe demo --quick`` end to end: the real pipeline (built-in data and models, the
elastic-net path, HIT building, the task server in its own process, boto3 publishing, simulated
workers over HTTP, collection, report, counterfactuals) runs once per module; the tests check
what it found against the generators' ground truth, that nothing keeps running, and resuming."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from click.testing import CliRunner

from sparse_probe.cli import main
from sparse_probe.datasets.shapes import CUES

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]  # end-to-end demo runs


def _processes_mentioning(text: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"]
                                                                           or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One quick demo of both kinds, run as a real command in its own process."""
    out = tmp_path_factory.mktemp("demo") / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sparse_probe.cli", "demo", "--quick",
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def _report(out: Path, name: str) -> dict:
    return json.loads((out / name / "report" / "report.json").read_text(encoding="utf-8"))


def _summary(out: Path) -> dict:
    return json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_stage_reports_and_the_report_exists(demo):
    out, stdout = demo
    for tag in ("1/6 data + model", "2/6 sparse head", "3/6 HITs", "3/6 publish", "4/6 crowd",
                "5/6 collect", "5/6 report"):
        assert f"[{tag}]" in stdout, tag
    assert "n_lambdas=25, eps=0.02" in stdout and "features/class" in stdout
    for name in ("shapes", "toxicity"):
        assert (out / name / "report" / "index.html").stat().st_size > 0
        rep = _report(out, name)
        assert rep["summary"]["n_pending"] == 0
        assert str(out / name / "report" / "index.html") in stdout
        # the full run directory of DESIGN.md
        for sub in ("features/meta.json", "probe/probe.json", "probe/head.pt",
                    "tasks/manifest.jsonl", "tasks/ledger.sqlite", "answers/answers.parquet",
                    "report/counterfactual.csv"):
            assert (out / name / sub).is_file(), sub
    cfg = json.loads((out / "demo.json").read_text())["config"]
    assert cfg == {"kind": "both", "workers": 12, "assignments": 7, "quick": True, "seed": 0,
                   "cues": None, "extra_assignments": 2}
    # undecided HITs were extended once at most, and every assignment was collected
    for name in ("shapes", "toxicity"):
        with sqlite3.connect(out / name / "tasks" / "ledger.sqlite") as db:
            rounds = db.execute("SELECT hit_key, COUNT(*) FROM extensions GROUP BY hit_key "
                                "HAVING COUNT(*) > 1").fetchall()
            n_hits, wanted = db.execute("SELECT COUNT(*), SUM(max_assignments) FROM hits"
                                        ).fetchone()
            added = db.execute("SELECT COALESCE(SUM(n_added), 0) FROM extensions "
                               "WHERE state='done'").fetchone()[0]
        assert rounds == []
        assert wanted == 7 * n_hits + added
        assert _assignments(out, name)["assignment_id"].nunique() == wanted


def test_planted_shape_cues_flagged_and_no_object_feature(demo):
    out, stdout = demo
    rows = _report(out, "shapes")["features"]
    summary = {c["cue"]: c for c in _summary(out)["runs"]["shapes"]["cues"]}
    assert set(summary) == set(CUES)
    for cue, (_cls, kind) in CUES.items():  # ground truth from the generator
        shown = [r for r in rows if r["truth"] == f"spurious:{kind}"]
        flagged = [r for r in shown if r["verdict"] == "spurious"]
        if cue == "watermark":
            assert shown, "no HIT showed the watermark"
        if shown:  # the crowd could see it: it must be judged spurious, of the right kind
            assert flagged, (cue, shown)
            assert all(r["kind"] == kind for r in flagged)
            assert summary[cue]["status"] == "found"
            assert f"planted cue '{cue}'" in stdout and "FOUND" in stdout
        else:  # not recoverable from what the HITs showed: the demo must say so
            assert summary[cue]["status"] == "missed" and not summary[cue]["shown"]
    mark_rows = [r for r in rows if r["verdict"] == "spurious" and r["kind"] == "mark"]
    assert {r["class_name"] for r in mark_rows} == {CUES["watermark"][0]}
    # no object feature judged spurious; every flag is a planted cue
    assert not [r for r in rows if r["truth"] == "core" and r["verdict"] == "spurious"]
    assert all((r["truth"] or "").startswith("spurious")
               for r in rows if r["verdict"] == "spurious")
    assert _summary(out)["runs"]["shapes"]["false_alarms"] == []


def test_identity_terms_flagged(demo):
    out, stdout = demo
    rows = _report(out, "toxicity")["features"]
    flagged = [r for r in rows if r["verdict"] == "spurious"]
    assert flagged and all(r["kind"] == "identity" for r in flagged)
    # each flag is a finding, or a mixed feature (identity terms carry a fifth to a half of
    # it beyond what other words do): never a false alarm
    summary = _summary(out)["runs"]["toxicity"]
    assert summary["false_alarms"] == []
    findings = [r for r in flagged if r["truth"] == "spurious:identity"]
    assert findings and len(findings) + len(summary["flagged_mixed"]) == len(flagged)
    assert {r["class_name"] for r in flagged} == {"toxic"}
    (cue,) = _summary(out)["runs"]["toxicity"]["cues"]
    assert cue["status"] == "found" and cue["kind"] == "identity"
    assert "planted cue 'identity terms'" in stdout


def test_counterfactual_flips_toward_cue_class_above_controls(demo):
    out, _ = demo
    rows = _report(out, "shapes")["features"]
    cf = pd.read_csv(out / "shapes" / "report" / "counterfactual.csv")
    marks = [(r["class"], r["feature"]) for r in rows
             if r["verdict"] == "spurious" and r["kind"] == "mark"]
    assert marks
    for c, f in marks:
        for model in ("dense", "sparse"):
            g = cf[(cf["class"] == c) & (cf["feature"] == f) & (cf["model"] == model)]
            g = g.set_index("test")
            assert g.loc["image_patch", "flip_rate"] > g.loc["image_control", "flip_rate"] + 0.1
            assert g.loc["image_patch", "ci_low"] > g.loc["image_control", "ci_high"]
    text = pd.read_csv(out / "toxicity" / "report" / "counterfactual.csv")
    pooled = text[(text["term"] == "*") & (text["direction"] == "to_toxic")]
    for model, g in pooled.groupby("model"):
        g = g.set_index("group")
        for group in g.index.drop("control"):
            assert g.loc[group, "flip_rate"] > g.loc["control", "flip_rate"] + 0.1, (model, group)
            assert g.loc[group, "ci_low"] > g.loc["control", "ci_high"], (model, group)
    summary = _summary(out)["runs"]
    assert all(r["flip_rate"] > r["control_flip_rate"] for r in summary["toxicity"]
               ["counterfactual"])


def test_no_process_left_running(demo):
    out, _ = demo
    server = json.loads((out / "demo.json").read_text())["server"]
    assert server["pid"] and server["running"] is False
    try:
        alive = psutil.Process(server["pid"]).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    assert not alive, "the task server outlived the demo"
    assert not _processes_mentioning(str(out))


def _ledger_rows(out: Path) -> dict[str, list]:
    rows = {}
    for name in ("shapes", "toxicity"):
        with sqlite3.connect(out / name / "tasks" / "ledger.sqlite") as db:
            rows[name] = sorted(db.execute(
                "SELECT endpoint, hit_key, batch_id, token, state, hit_id, max_assignments "
                "FROM hits").fetchall())
    return rows


def _assignments(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / name / "answers" / "answers.parquet")


@pytest.mark.slow
def test_rerun_resumes_without_duplicates(demo, tmp_path):
    src, _ = demo
    out = tmp_path / "out"
    shutil.copytree(src, out)  # leave the module's run untouched for other tests
    (out / "demo.json").write_text((out / "demo.json").read_text().replace(str(src), str(out)))
    ledger = _ledger_rows(out)
    answers = {n: _assignments(out, n) for n in ("shapes", "toxicity")}
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "no server needed [resumed]" in res.output
    assert res.output.count("[resumed]") == 9  # 3 stages x 2 kinds, crowd, 2 reports
    assert _ledger_rows(out) == ledger
    # lose one kind's answers and report: the server comes back on the ledger's port, nothing
    # is published twice, nobody answers again, collection refetches every assignment once
    shutil.rmtree(out / "shapes" / "answers")
    shutil.rmtree(out / "shapes" / "report")
    res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "shapes: local:" in res.output and "0 HITs created" in res.output
    assert "[4/6 crowd] 0 assignments submitted" in res.output
    assert _ledger_rows(out) == ledger
    again = _assignments(out, "shapes")
    assert again["assignment_id"].nunique() == answers["shapes"]["assignment_id"].nunique()
    assert len(again) == len(answers["shapes"])
    assert not again.duplicated(["assignment_id", "question"]).any()
    assert (out / "shapes" / "report" / "index.html").is_file()
    assert not _processes_mentioning(str(out))


def test_other_configuration_is_refused(demo):
    out, _ = demo
    before = (out / "demo.json").read_text()
    res = CliRunner().invoke(main, ["demo", "--quick", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 2
    assert "seed=0, not 1" in res.output and "--seed" in res.output
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])  # not --quick
    assert res.exit_code == 2 and "quick=True" in res.output
    assert (out / "demo.json").read_text() == before


def test_refuses_a_directory_that_is_not_a_demo(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    for extra in ([], ["--force"]):
        res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path), *extra])
        assert res.exit_code == 2 and "no demo.json" in res.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    res = CliRunner().invoke(main, ["demo", "--quick", "--workers", "2", "--out",
                                    str(tmp_path / "new")])
    assert res.exit_code == 2 and "at least assignments" in res.output


def test_summary_says_missed_and_false_alarm(demo, tmp_path):
    """The console summary is honest: a cue shown but not flagged is 'missed', an object
    feature judged spurious is a false alarm (report edited by hand from the real run)."""
    from sparse_probe.demo import summarize_run, summary_lines

    src, _ = demo
    run = tmp_path / "shapes"
    shutil.copytree(src / "shapes" / "features", run / "features", ignore=shutil.ignore_patterns(
        "*.npy"))
    rep = _report(src, "shapes")
    for r in rep["features"]:
        if r["truth"] == "spurious:mark":
            r["verdict"], r["kind"] = "core", None
        if r["truth"] == "core":
            r["verdict"], r["kind"] = "spurious", "background"
    (run / "report").mkdir(parents=True)
    (run / "report" / "report.json").write_text(json.dumps(rep))
    s = summarize_run(run)
    cues = {c["cue"]: c for c in s["cues"]}
    assert cues["watermark"]["status"] == "missed" and cues["watermark"]["shown"]
    n_core = sum(r["truth"] == "core" for r in rep["features"])
    assert s["core_flagged_spurious"] == len(s["false_alarms"]) == n_core > 0
    text = "\n".join(summary_lines({"runs": {"shapes": s}}))
    assert "'watermark' (mark, class triangle): MISSED" in text
    assert "false alarms: " in text and "truth core" in text


@pytest.mark.slow
def test_keep_server_leaves_it_running_and_says_how_to_finish(demo, tmp_path):
    src, _ = demo
    out = tmp_path / "out"
    shutil.copytree(src, out)
    res = CliRunner().invoke(main, ["demo", "--quick", "--keep-server", "--out", str(out)])
    assert res.exit_code == 0, res.output
    server = json.loads((out / "demo.json").read_text())["server"]
    proc = psutil.Process(server["pid"])
    try:
        assert proc.is_running() and server["running"] and server["kept"]
        import requests

        assert requests.get(f"{server['url']}/worker/login", timeout=10).status_code == 200
        assert f"sparse-probe tasks collect {out / 'shapes' / 'tasks'}" in res.output
        assert f"sparse-probe report --run {out / 'toxicity'}" in res.output
        assert "--issue-token" in res.output and server["url"] in res.output
        # a later run without --keep-server finishes and stops the kept server
        res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert f"stopped the task server kept by an earlier run (pid {proc.pid})" in res.output
        proc.wait(timeout=15)
        assert not _processes_mentioning(str(out))
    finally:
        if proc.is_running():
            proc.terminate()
            proc.wait(timeout=15)
