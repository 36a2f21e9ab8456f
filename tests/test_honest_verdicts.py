"""Honest verdicts (issue 15, item 6): proportionate quality control, "pending" only without
answers, vote counts and n beside every posterior, an undecided count."""

from __future__ import annotations

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from helpers_analysis import FEATURES, make_manifest, simulate_answers, write_run

from analysis.aggregate import aggregate
from analysis.quality import QCConfig, quality_control
from analysis.verdicts import compute_verdicts
from tasks.review import ReviewRules, decide


def _fail_attention(ans: pd.DataFrame, worker: str, n: int) -> pd.DataFrame:
    """``worker`` answers the attention check wrongly on their first ``n`` assignments."""
    ans = ans.copy()
    aids = list(dict.fromkeys(ans.loc[ans["worker_id"] == worker, "assignment_id"]))[:n]
    ans.loc[ans["assignment_id"].isin(aids) & (ans["question"] == "attention"), "answer"] = "red"
    return ans


@pytest.fixture
def crowd():
    manifest = make_manifest()
    return manifest, simulate_answers(manifest, n_good=5, n_spam=0, accuracy=1.0, seed=1)


def test_one_failed_attention_check_flags_but_keeps_a_perfect_worker(crowd):
    manifest, ans = crowd
    one = _fail_attention(ans, "W00GOOD", 1)
    w = quality_control(one, manifest).workers.set_index("worker_id")
    assert w.loc["W00GOOD", "gold_accuracy"] == 1.0
    assert not w.loc["W00GOOD", "excluded"] and w.loc["W00GOOD", "review"]
    assert w.loc["W00GOOD", "n_attention_failed"] == 1
    # configurable: no tolerance excludes on the first failure (the old rule)
    strict = quality_control(one, manifest, QCConfig(attention_tolerance=0)).workers
    assert strict.set_index("worker_id").loc["W00GOOD", "excluded"]
    # two failures are beyond the default tolerance
    two = quality_control(_fail_attention(ans, "W00GOOD", 2), manifest).workers
    assert two.set_index("worker_id").loc["W00GOOD", "excluded"]
    assert not two.set_index("worker_id").loc["W00GOOD", "review"]
    # pay: review rejects the failed assignment only when asked, with its own tolerance
    decisions = decide(one, manifest, ReviewRules(min_gold_accuracy=None,
                                                   require_attention=True))
    assert sum(d.action == "reject" for d in decisions) == 1
    decisions = decide(one, manifest, ReviewRules(min_gold_accuracy=None,
                                                   require_attention=True,
                                                   attention_tolerance=1))
    assert {d.action for d in decisions} == {"approve"}


def test_answers_only_from_excluded_workers_are_undecided_not_pending(crowd):
    """The issue's failure: 4 of 5 'mark' votes, all from excluded workers, read 'pending'."""
    manifest, ans = crowd
    key = next(m["hit_key"] for m in manifest if m["truth"] == "spurious:mark")
    # every worker who answered this HIT fails two attention checks -> all excluded
    bad = ans
    for w in ans["worker_id"].unique():
        bad = _fail_attention(bad, w, 2)
    qc = quality_control(bad, manifest)
    assert qc.kept.empty
    n_answered = bad.groupby("hit_key")["worker_id"].nunique()
    agg = aggregate(qc.kept, method="MajorityVote")
    v = compute_verdicts(pd.DataFrame(manifest), agg, qc.kept,
                         n_answered=n_answered).set_index("hit_key")
    assert v.loc[key, "verdict"] == "undecided"
    assert v.loc[key, "reason"] == "all 5 answers from workers excluded by quality control"
    assert v.loc[key, "n_answered"] == 5
    # a HIT nobody answered stays pending
    no_answers = compute_verdicts(pd.DataFrame(manifest), agg, qc.kept,
                                  n_answered=n_answered[n_answered.index != key])
    assert no_answers.set_index("hit_key").loc[key, "verdict"] == "pending"


def test_single_vote_posterior_says_n_equals_one(crowd):
    manifest, ans = crowd
    one = ans[ans["worker_id"] == "W00GOOD"]
    agg = aggregate(one, method="MajorityVote")
    v = compute_verdicts(pd.DataFrame(manifest), agg, one)
    decided = v[v["verdict"].isin(["core", "spurious"])]
    assert len(decided) and (decided["confidence"] == 1.0).all()
    assert (decided["n_shared"] == 1).all() and (decided["n_pattern"] == 1).all()


def test_undecided_reasons_at_the_posterior_boundary(crowd):
    manifest, ans = crowd
    key = manifest[0]["hit_key"]
    three = ans[ans["worker_id"].isin(["W00GOOD", "W01GOOD", "W02GOOD"])].copy()
    # one of three says "no": majority share 2/3
    sel = (three["hit_key"] == key) & (three["worker_id"] == "W02GOOD") & \
        (three["question"] == "shared")
    three.loc[sel, "answer"] = "no"
    agg = aggregate(three, method="MajorityVote")
    man = pd.DataFrame(manifest)
    at = compute_verdicts(man, agg, three, min_posterior=2 / 3).set_index("hit_key")
    assert at.loc[key, "verdict"] == "core"  # exactly at the threshold decides
    above = compute_verdicts(man, agg, three, min_posterior=0.67).set_index("hit_key")
    assert above.loc[key, "verdict"] == "undecided"
    assert above.loc[key, "reason"] == "shared: posterior 0.667 < 0.67 (n=3)"
    # a tie: two against two
    four = ans[ans["worker_id"].isin(["W00GOOD", "W01GOOD", "W02GOOD", "W03GOOD"])].copy()
    sel = (four["hit_key"] == key) & four["worker_id"].isin(["W02GOOD", "W03GOOD"]) & \
        (four["question"] == "shared")
    four.loc[sel, "answer"] = "no"
    tie = compute_verdicts(man, aggregate(four, method="MajorityVote"), four)
    tie = tie.set_index("hit_key")
    assert tie.loc[key, "verdict"] == "undecided"
    assert tie.loc[key, "reason"] == "shared: tie between answers (n=4)"


@pytest.mark.slow
def test_report_shows_counts_n_and_undecided(tmp_path, crowd):
    from analysis.report import ReportOptions, build_report

    manifest, ans = crowd
    key = next(m["hit_key"] for m in manifest if m["truth"] == "spurious:mark")
    # only one worker answers the mark HIT: posterior 1.00 with n=1
    ans = ans[(ans["hit_key"] != key) | (ans["worker_id"] == "W00GOOD")]
    ans = _fail_attention(ans, "W01GOOD", 1)  # one slip: flagged, kept
    run = write_run(tmp_path / "run", ans, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    s = rep["summary"]
    assert s["n_workers_kept"] == 5 and s["n_workers_review"] == 1
    assert s["n_undecided"] == 0 and s["n_pending"] == 0
    row = next(r for r in rep["features"] if r["hit_key"] == key)
    assert row["verdict"] == "spurious" and row["n_votes"] == {"shared": 1, "pattern": 1}
    assert row["votes"]["pattern"] == {"mark": 1}
    soup = BeautifulSoup((run / "report" / "index.html").read_text(encoding="utf-8"),
                         "html.parser")
    text = soup.find(id=key).get_text(" ", strip=True)
    assert "posterior 1.00 (n=1; pattern n=1)" in text and "mark 1" in text
    assert soup.find(id="n-undecided").get_text(" ", strip=True) == "0 undecided"
    assert "kept, flagged: review: failed 1 of" in soup.get_text(" ", strip=True)
    assert len(FEATURES) == s["n_features_audited"]


def test_report_counts_each_anonymous_assignment_as_a_worker(tmp_path, crowd):
    from analysis.report import ReportOptions, build_report
    from sparse_probe.quality import ANONYMOUS_PREFIX

    manifest, ans = crowd
    ans = ans.copy()
    ans["worker_id"] = ans["worker_id"].astype(object)
    ans.loc[ans["worker_id"] == "W00GOOD", "worker_id"] = None   # lost in a hand-made CSV
    ans.loc[ans["worker_id"] == "W01GOOD", "worker_id"] = ""
    n_anon = ans.loc[ans["worker_id"].isna() | (ans["worker_id"] == ""),
                     "assignment_id"].nunique()
    run = write_run(tmp_path / "run", ans, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    assert rep["summary"]["n_workers"] == 3 + n_anon
    anon = [w for w in rep["qc"]["workers"] if str(w["worker_id"]).startswith(ANONYMOUS_PREFIX)]
    assert len(anon) == n_anon and all(w["n_assignments"] == 1 for w in anon)
    audited = [r for r in rep["features"] if r.get("n_answered") is not None]
    assert audited and all(r["n_answered"] == 5 for r in audited)


def test_a_hit_answered_only_by_excluded_anonymous_assignments_is_undecided(tmp_path):
    from analysis.report import ReportOptions, build_report

    manifest = make_manifest()
    ans = simulate_answers(manifest, n_good=3, n_spam=1, accuracy=1.0, seed=2)
    key = next(m["hit_key"] for m in manifest if not m["is_gold"])
    ans = ans[(ans["hit_key"] != key) | (ans["worker_id"] == "S00SPAM")].copy()
    ans["worker_id"] = ans["worker_id"].astype(object)
    ans.loc[ans["worker_id"] == "S00SPAM", "worker_id"] = None   # the spammer's ids lost
    run = write_run(tmp_path / "run", ans, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    row = next(r for r in rep["features"] if r["hit_key"] == key)
    # answered (by an assignment quality control excluded), so not "pending"
    assert row["verdict"] == "undecided" and row["n_answered"] == 1
    assert rep["summary"]["n_pending"] == 0
