"""The report says in its first lines when its answers come from a simulated crowd, and
loudly when that crowd was blind (issue 15, item 5)."""

from __future__ import annotations

import json

from bs4 import BeautifulSoup
from helpers_analysis import make_manifest, simulate_answers, write_run

from analysis.report import ReportOptions, answer_source, build_report


def _first_main_text(run) -> str:
    soup = BeautifulSoup((run / "report" / "index.html").read_text(encoding="utf-8"),
                         "html.parser")
    first = soup.find("main").find(True)
    return first.get_text(" ", strip=True) if first else ""


def _renamed(ans, prefix):
    ans = ans.copy()
    ans["worker_id"] = prefix + ans["worker_id"]
    return ans


def test_blind_simulated_crowd_is_said_first(tmp_path):
    manifest = make_manifest()
    ans = _renamed(simulate_answers(manifest, n_good=3, n_spam=0, accuracy=1.0), "SIMBLIND0W")
    run = write_run(tmp_path / "run", ans, manifest)
    (run / "tasks" / "simulation.json").write_text(json.dumps(
        {"source": "simulated-blind", "worker_prefix": "SIMBLIND0W"}))
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    src = rep["summary"]["answer_source"]
    assert src["kind"] == "simulated-blind" and src["n_blind"] == 3
    assert next(iter(rep["summary"])) == "answer_source"  # first in report.json's summary
    assert "BLIND simulated crowd" in _first_main_text(run)


def test_sighted_simulated_crowd_and_people(tmp_path):
    manifest = make_manifest()
    ans = _renamed(simulate_answers(manifest, n_good=3, n_spam=0, accuracy=1.0), "SIM0W")
    run = write_run(tmp_path / "sim", ans, manifest)
    (run / "tasks" / "simulation.json").write_text(json.dumps(
        {"source": "simulated", "worker_prefix": "SIM0W"}))
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    assert rep["summary"]["answer_source"]["kind"] == "simulated"
    assert "simulated crowd (reads ground-truth masks)" in _first_main_text(run)
    # people's answers: no note, nothing before the summary
    run = write_run(tmp_path / "people", simulate_answers(manifest, n_good=3, n_spam=0),
                    manifest)
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    assert rep["summary"]["answer_source"]["kind"] == "people"
    assert rep["summary"]["answer_source"]["note"] is None
    assert _first_main_text(run).startswith("Summary")


def test_blind_workers_found_by_prefix_without_record(tmp_path):
    manifest = make_manifest()
    people = simulate_answers(manifest, n_good=2, n_spam=0, seed=1)
    blind = _renamed(simulate_answers(manifest, n_good=1, n_spam=0, seed=2), "SIMBLIND7W")
    blind["assignment_id"] = "B" + blind["assignment_id"]
    import pandas as pd

    src = answer_source(tmp_path, pd.concat([people, blind], ignore_index=True))
    assert (src["kind"], src["n_workers"], src["n_blind"]) == ("simulated-blind", 3, 1)
    assert src["note"].startswith("1 of 3 workers are a blind simulated crowd")
    assert answer_source(tmp_path, people.iloc[:0])["kind"] == "none"
