"""The report: verdicts, numbers for programs, pending HITs, self-contained HTML, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from helpers_analysis import ALL_TRUTH, GOLD, make_manifest, simulate_answers, write_run

from analysis.ingest import IngestError
from analysis.report import ReportOptions, build_report, class_weight_shares
from sparse_probe.cli import main

XSS = '<script>alert("x")</script>'


@pytest.fixture
def run(tmp_path):
    manifest = make_manifest()
    key = manifest[0]["hit_key"]
    ans = simulate_answers(manifest, n_good=5, n_spam=1, accuracy=0.95, seed=4,
                           extra={(key, "W00GOOD"): {"description": XSS}})
    return write_run(tmp_path / "run", ans, manifest)


@pytest.mark.slow
def test_planted_features_flagged_and_numbers_agree(run):
    rep = build_report(run, options=ReportOptions(n_boot=30))
    out = run / "report"
    assert {p.name for p in out.iterdir()} >= {"index.html", "report.json", "features.csv",
                                                "figures", "assets"}
    assert json.loads((out / "report.json").read_text()) == rep
    rows = {r["hit_key"]: r for r in rep["features"]}
    for c, f, truth in ALL_TRUTH:
        r = rows[f"img-c{c:02d}-f{f:04d}-sparse"]
        if truth.startswith("spurious"):
            assert (r["verdict"], r["kind"]) == ("spurious", truth.split(":")[1])
        else:
            assert r["verdict"] == {"core": "core", "none": "no_pattern"}[truth]
    s = rep["summary"]
    assert s["n_spurious"] == sum(t.startswith("spurious") for *_, t in ALL_TRUTH)
    assert s["n_features_audited"] == len(ALL_TRUTH) and s["truth_accuracy"] == 1.0
    assert s["n_workers_kept"] == 5 and rep["qc"]["excluded"][0]["worker_id"] == "S00SPAM"
    csv = pd.read_csv(out / "features.csv")
    assert list(csv.columns[:12]) == ["hit_key", "class", "class_name", "feature", "weight",
                                      "rank", "layer", "verdict", "kind", "votes", "posterior",
                                      "truth"]
    merged = csv.set_index("hit_key")
    for key, r in rows.items():
        assert merged.loc[key, "verdict"] == r["verdict"]
        assert json.loads(merged.loc[key, "votes"]) == r["votes"]
    # class 1 (square): weights 1.5 core, 0.75 spurious background, 0.5 + 0.4 no pattern
    assert s["spurious_weight_share"]["square"] == pytest.approx(0.75 / (1.5 + 0.75 + 0.5 + 0.4))
    assert rep["agreement"]["shared"]["fleiss_kappa"] is not None
    assert set(rep["figures"]) >= {"accuracy_path", "spurious_share", "verdicts", "agreement"}
    for rel in rep["figures"].values():
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_html_is_self_contained_and_escaped(run):
    build_report(run, options=ReportOptions(n_boot=10))
    html = (run / "report" / "index.html").read_text()
    soup = BeautifulSoup(html, "html5lib")
    assert soup.find_all("script") == []
    assert XSS in [q.get_text() for q in soup.find_all("blockquote")]
    refs = [t.get("src") for t in soup.find_all(["img", "script"])] + [
        t.get("href") for t in soup.find_all("link")]
    for ref in refs:
        assert ref and not ref.startswith(("http:", "https:", "//", "/"))
        assert (run / "report" / ref).is_file()
    for a in soup.find_all("a", href=True):
        assert a["href"].startswith("#") or (run / "report" / a["href"]).is_file()
        if a["href"].startswith("#"):
            assert soup.find(id=a["href"][1:]) is not None, a["href"]
    assert "elastic net" in soup.find(id="methods").get_text()


@pytest.mark.slow
def test_no_answers_yet_and_partial(tmp_path):
    manifest = make_manifest()
    run = write_run(tmp_path / "empty", None, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=10))
    assert {r["verdict"] for r in rep["features"]} == {"pending"}
    assert rep["summary"]["n_pending"] == len(ALL_TRUTH) and rep["agreement"] == {}
    assert (run / "report" / "index.html").exists()
    half = [m for m in manifest if m["class"] == 0]
    ans = simulate_answers(half, n_good=3, n_spam=0, accuracy=1.0)
    run = write_run(tmp_path / "partial", ans, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=10))
    verdicts = {r["hit_key"]: r["verdict"] for r in rep["features"]}
    for m in manifest:
        if m["is_gold"]:  # known-answer items get no verdict
            assert m["hit_key"] not in verdicts
            continue
        assert (verdicts[m["hit_key"]] == "pending") == (m["class"] != 0)


@pytest.mark.slow
def test_text_run_identity_share_figure(tmp_path):
    feats = [(0, 1, "core"), (0, 2, "spurious:identity"), (1, 3, "spurious:identity"),
             (1, 4, "core")]
    manifest = make_manifest("text", feats, gold=[]) + make_manifest(
        "text", [(0, 1, "core"), (1, 4, "core")], gold=[], layer="dense")
    for m in manifest:
        m["kind"] = "text"
    ans = simulate_answers(manifest, n_good=3, n_spam=0, accuracy=1.0)
    run = write_run(tmp_path / "text", ans, manifest, kind="text")
    rep = build_report(run, options=ReportOptions(n_boot=10, method="MajorityVote"))
    assert rep["summary"]["identity_share"] == {"dense": 0.0, "sparse": 0.5}
    assert "identity_share" in rep["figures"]


def test_class_weight_shares_by_hand():
    v = pd.DataFrame({"class": [0, 0, 1], "feature": [1, 2, 3], "weight": [2.0, 1.0, 1.0],
                      "layer": "sparse", "is_gold": False,
                      "verdict": ["core", "spurious", "pending"], "kind": [None, "mark", None]})
    w = pd.DataFrame({"class": [0, 0, 0, 1, 1], "feature": [1, 2, 9, 3, 4],
                      "weight": [2.0, -1.0, 1.0, 1.0, -3.0]})
    s = class_weight_shares(v, w, ["a", "b"])
    assert s.loc["a", "core"] == pytest.approx(0.5)
    assert s.loc["a", "spurious:mark"] == pytest.approx(0.25)  # a negative weight counts
    assert s.loc["a", "unaudited"] == pytest.approx(0.25)
    assert s.loc["b", "pending"] == pytest.approx(0.25)
    assert s.loc["b", "unaudited"] == pytest.approx(0.75)
    assert np.allclose(s.sum(axis=1), 1.0)


@pytest.mark.slow
def test_counterfactual_section(run):
    out = run / "report"
    out.mkdir()
    pd.DataFrame([{"test": "patch", "model": "dense", "label": "c1 f22", "n": 50, "flips": 40,
                   "flip_rate": 0.8, "ci_low": 0.67, "ci_high": 0.89,
                   "mean_prob_increase": 0.5}]).to_csv(out / "counterfactual.csv", index=False)
    rep = build_report(run, options=ReportOptions(n_boot=10))
    assert "counterfactual" in rep["figures"] and rep["counterfactual"]["rows"] == 1
    soup = BeautifulSoup((out / "index.html").read_text(), "html5lib")
    assert "c1 f22" in soup.find(id="counterfactual").get_text()


@pytest.mark.slow
def test_cli(run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--run", str(run), "--out", str(tmp_path / "r"),
                               "--method", "MajorityVote", "--min-gold-accuracy", "0.9",
                               "--n-boot", "10"])
    assert res.exit_code == 0, res.output
    assert f"{sum(t.startswith('spurious') for *_, t in ALL_TRUTH)} spurious" in res.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["summary"]["method"] == \
        "MajorityVote"
    # answers straight from MTurk's batch results instead of answers.parquet
    from helpers_analysis import write_batch_csv

    csv_path = write_batch_csv(pd.read_parquet(run / "answers" / "answers.parquet"),
                               tmp_path / "Batch_results.csv")
    res = runner.invoke(main, ["report", "--run", str(run), "--out", str(tmp_path / "r2"),
                               "--answers", str(csv_path), "--method", "MajorityVote",
                               "--min-gold-accuracy", "0.9", "--n-boot", "10"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "r" / "report.json").read_text())["features"]
    b = json.loads((tmp_path / "r2" / "report.json").read_text())["features"]
    assert [(r["verdict"], r["votes"]) for r in a] == [(r["verdict"], r["votes"]) for r in b]
    (run / "tasks" / "manifest.jsonl").write_text('{"hit_key": "x"}\n')
    res = runner.invoke(main, ["report", "--run", str(run), "--n-boot", "10"])
    assert res.exit_code != 0 and "manifest.jsonl:1: missing field 'class'" in res.output


@pytest.mark.slow
def test_report_from_probe_alone(tmp_path):
    """Before any HIT is built: the probe's top features, all pending."""
    run = write_run(tmp_path / "run", None, make_manifest())
    (run / "tasks" / "manifest.jsonl").unlink()
    rep = build_report(run, options=ReportOptions(n_boot=10))
    # sparse and dense top features (the gold items' features are in the probe too)
    assert len(rep["features"]) == 2 * (len(ALL_TRUTH) + len(GOLD))
    assert {r["verdict"] for r in rep["features"]} == {"pending"}
    (run / "probe" / "probe.json").unlink()
    with pytest.raises(IngestError, match=r"neither tasks/manifest\.jsonl nor probe/probe\.json"):
        build_report(run, options=ReportOptions(n_boot=10))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shapes", "toxicity"])
def test_builtin_planted_cues_flagged(name, tmp_path_factory):
    """Real pieces end to end (built-in data and model, extract, fit, tasks.build, crowd answers
    simulated from what each HIT shows): planted cues are judged spurious, objects are not."""
    from helpers_analysis import builtin_audit_run

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), name)
    rep = build_report(run, run / "report-check", ReportOptions(n_boot=10))
    rows = rep["features"]
    decided = [r for r in rows if r["truth"] and r["verdict"] in ("core", "spurious")]
    assert decided
    for r in decided:  # no false alarm, no missed kind
        assert r["verdict"] == ("spurious" if r["truth"].startswith("spurious") else "core") or \
            r["truth"] == "none", r
    flagged = [r for r in rows if r["verdict"] == "spurious"]
    assert flagged, "no planted cue was flagged"
    assert all(r["truth"] == f"spurious:{r['kind']}" for r in flagged)
    assert not any(r["truth"] == "core" and r["verdict"] == "spurious" for r in rows)
    assert rep["summary"]["most_spurious_classes"]
    assert (run / "report-check" / "index.html").exists()
    if name == "toxicity":
        from sparse_probe.datasets.prepare import load_builtin

        share = rep["summary"]["identity_example_share"]
        meta = json.loads((run / "features" / "meta.json").read_text())
        truth = load_builtin(meta).val.has_identity  # the generator's own record
        assert share["base_rate"] == pytest.approx(float(np.mean(truth)))
        assert 0 <= share["dense"] <= 1 and 0 <= share["sparse"] <= 1
        assert "identity_share" in rep["figures"]
