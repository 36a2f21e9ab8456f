"""One definition of worker quality: `tasks review` (pay) and the report (exclusion) agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_analysis import make_manifest, simulate_answers

from analysis.quality import QCConfig, quality_control
from sparse_probe.answers import answers_frame
from sparse_probe.quality import (
    QualityRules,
    assignment_checks,
    judge_workers,
    worker_quality,
)
from tasks.review import ReviewRules, decide

GOLD_YES = {"shared": "yes", "pattern": "mark"}
GOLD_NO = {"shared": "no", "pattern": "other"}


def _manifest(n_gold: int) -> list[dict]:
    rows = []
    for i in range(n_gold):
        rows.append({"hit_key": f"g{i}", "is_gold": True, "gold": GOLD_YES if i % 2 == 0
                     else GOLD_NO, "attention": {"field": "attention", "expected": "3"}})
    rows.append({"hit_key": "plain", "is_gold": False, "gold": None,
                 "attention": {"field": "attention", "expected": "3"}})
    return rows


def _answers(per_worker: dict[str, list[tuple[str, dict[str, str], float]]]) -> pd.DataFrame:
    rows, n = [], 0
    for worker, items in per_worker.items():
        for key, fields, secs in items:
            n += 1
            for q, a in fields.items():
                rows.append({"hit_key": key, "hit_id": f"H-{key}", "assignment_id": f"A{n:03d}",
                             "worker_id": worker, "question": q, "answer": a,
                             "work_seconds": secs, "status": "Submitted", "source": "local"})
    return answers_frame(rows)


def _right(key: str, manifest: list[dict]) -> dict[str, str]:
    g = next(r["gold"] for r in manifest if r["hit_key"] == key)
    return {"shared": g["shared"], "pattern": g["pattern"], "attention": "3"}


@pytest.mark.slow
def test_review_and_report_give_the_same_gold_accuracy():
    """Built from one table: the pay rule and the exclusion rule see the same number for every
    worker, including partly-right gold answers, 'unsure', missing fields and case."""
    manifest = make_manifest()
    ans = simulate_answers(manifest, n_good=4, n_spam=2, accuracy=0.8, seed=3).copy()
    gold_keys = [m["hit_key"] for m in manifest if m["is_gold"]]
    # W01: right shared, wrong pattern on the "yes" gold; W02: unsure; W03: upper case;
    # S00: drops the pattern answer of the "yes" gold entirely.
    sel = ans["hit_key"] == gold_keys[0]
    ans.loc[sel & (ans["worker_id"] == "W01GOOD") & (ans["question"] == "pattern"),
            "answer"] = "background"
    ans.loc[sel & (ans["worker_id"] == "W02GOOD") & (ans["question"] == "shared"),
            "answer"] = "unsure"
    ans.loc[sel & (ans["worker_id"] == "W03GOOD"), "answer"] = \
        ans.loc[sel & (ans["worker_id"] == "W03GOOD"), "answer"].str.upper()
    ans = ans[~(sel & (ans["worker_id"] == "S00SPAM") & (ans["question"] == "pattern"))]
    table = answers_frame(ans)

    report = quality_control(table, pd.DataFrame(manifest), QCConfig(min_gold_accuracy=0.75))
    pay = decide(table, manifest, ReviewRules(min_gold_accuracy=0.75))
    from_report = report.workers.set_index("worker_id")["gold_accuracy"].sort_index()
    from_review = pd.Series({d.worker_id: d.gold_accuracy for d in pay}).sort_index()
    pd.testing.assert_series_equal(from_report, from_review, check_names=False)
    assert from_report["W00GOOD"] == 1.0 and from_report["W03GOOD"] == 1.0
    assert from_report["W01GOOD"] == 0.5 and from_report["W02GOOD"] == 0.5
    assert from_report["S00SPAM"] <= 0.5
    # and the same workers fail the gold rule in both
    gold_excluded = {w for w, r in zip(report.workers["worker_id"], report.workers["reason"],
                                       strict=True) if "gold accuracy" in r}
    refused = {d.worker_id for d in pay if any("known answers" in r for r in d.reasons)}
    assert gold_excluded == refused and {"W01GOOD", "W02GOOD"} <= refused


def test_gold_scoring_rules_by_hand():
    manifest = _manifest(2)
    table = _answers({
        "right": [("g0", _right("g0", manifest), 60.0), ("g1", _right("g1", manifest), 60.0)],
        # a "no pattern" gold does not grade the pattern field
        "no_any_pattern": [("g1", {"shared": "NO ", "pattern": "mark", "attention": "3"}, 60.0)],
        "missing_pattern": [("g0", {"shared": "yes", "attention": "3"}, 60.0)],
        "unsure": [("g0", {"shared": "unsure", "pattern": "mark", "attention": "3"}, 60.0)],
        "no_gold": [("plain", {"shared": "yes", "pattern": "mark", "attention": "3"}, 60.0)],
    })
    checks = assignment_checks(table, manifest).set_index("assignment_id")
    assert checks["gold_correct"].tolist()[:5] == [True, True, True, False, False]
    assert checks["gold_correct"].isna().tolist()[5]
    w = worker_quality(table, manifest).set_index("worker_id")
    assert w.loc["right", ["n_gold", "n_gold_correct", "gold_accuracy"]].tolist() == [2, 2, 1.0]
    assert w.loc["no_any_pattern", "gold_accuracy"] == 1.0
    assert w.loc["missing_pattern", "gold_accuracy"] == 0.0
    assert w.loc["unsure", "gold_accuracy"] == 0.0
    assert w.loc["no_gold", "n_gold"] == 0 and np.isnan(w.loc["no_gold", "gold_accuracy"])


@pytest.fixture
def four_gold():
    """Worker 'at' answers 3 of 4 gold HITs right (0.75), 'below' 2 of 4 (0.5)."""
    manifest = _manifest(4)
    right = [(f"g{i}", _right(f"g{i}", manifest), 60.0) for i in range(4)]
    flip = {"g0": {"shared": "no", "pattern": "mark", "attention": "3"},
            "g2": {"shared": "no", "pattern": "other", "attention": "3"}}
    table = _answers({
        "at": [*right[1:], ("g0", flip["g0"], 60.0)],
        "below": [right[1], right[3], ("g0", flip["g0"], 60.0), ("g2", flip["g2"], 60.0)],
    })
    return manifest, table


@pytest.mark.slow
def test_gold_threshold_boundary_is_the_same_for_pay_and_exclusion(four_gold):
    manifest, table = four_gold
    rules = QCConfig(min_gold_accuracy=0.75, require_attention=False, max_fast_share=1.0)
    qc = quality_control(table, manifest, rules).workers.set_index("worker_id")
    assert qc.loc["at", "gold_accuracy"] == 0.75 and qc.loc["below", "gold_accuracy"] == 0.5
    assert not qc.loc["at", "excluded"] and qc.loc["below", "excluded"]
    pay = {d.worker_id: d.action for d in decide(table, manifest,
                                                  ReviewRules(min_gold_accuracy=0.75))}
    assert pay == {"at": "approve", "below": "reject"}
    # one past the threshold: 'at' fails too, in both
    qc = quality_control(table, manifest, QCConfig(min_gold_accuracy=0.76,
                                                   require_attention=False))
    assert qc.workers["excluded"].all()
    assert {d.action for d in decide(table, manifest, ReviewRules(min_gold_accuracy=0.76))} \
        == {"reject"}


@pytest.mark.slow
def test_min_gold_answers_boundary(four_gold):
    manifest, table = four_gold
    w = worker_quality(table, manifest)
    at_four = judge_workers(w, QualityRules(min_gold_accuracy=0.9, min_gold_answers=4))
    assert at_four["gold_failed"].all()          # exactly 4 graded gold HITs: judged
    at_five = judge_workers(w, QualityRules(min_gold_accuracy=0.9, min_gold_answers=5))
    assert not at_five["gold_failed"].any()      # one more needed: not judged yet
    pay = decide(table, manifest, ReviewRules(min_gold_accuracy=0.9, min_gold_answers=5))
    assert {d.action for d in pay} == {"approve"}


@pytest.mark.slow
def test_attention_and_time_boundaries():
    manifest = _manifest(0)
    table = _answers({
        "half": [("plain", {"attention": "3"}, 10.0), ("plain", {"attention": "4"}, 10.0)],
        "all": [("plain", {"attention": " 3"}, 9.999), ("plain", {"attention": "3"}, 10.0)],
    })
    w = worker_quality(table, manifest, QualityRules(min_seconds=10.0, min_time_fraction=0.0))
    w = w.set_index("worker_id")
    assert w.loc["half", "attention_rate"] == 0.5 and w.loc["all", "attention_rate"] == 1.0
    assert w.loc["half", "fast_share"] == 0.0 and w.loc["all", "fast_share"] == 0.5
    judged = judge_workers(w.reset_index(), QualityRules(min_attention_rate=0.5,
                                                         max_fast_share=0.5))
    assert not judged["excluded"].any()          # exactly at both thresholds: kept
    judged = judge_workers(w.reset_index(), QualityRules(min_attention_rate=0.51,
                                                         max_fast_share=0.49,
                                                         attention_tolerance=0))
    assert judged.set_index("worker_id")["reason"].to_dict() == {
        "all": "50% of assignments too fast",
        "half": "attention checks passed 0.50 < 0.51"}
    # by default one failed check is tolerated: flagged for review, not excluded
    judged = judge_workers(w.reset_index(), QualityRules(min_attention_rate=0.51,
                                                         max_fast_share=0.49)
                           ).set_index("worker_id")
    assert not judged.loc["half", "excluded"] and judged.loc["half", "review"]
    assert judged.loc["half", "reason"] == ("review: failed 1 of 2 attention checks "
                                            "(within tolerance 1)")
    assert judged.loc["all", "excluded"] and not judged.loc["all", "review"]
    pay = decide(table, manifest, ReviewRules(min_gold_accuracy=None, require_attention=True,
                                              min_seconds=10.0))
    assert [d.action for d in pay] == ["approve", "reject", "reject", "approve"]


def test_pay_and_exclusion_share_the_default_gold_threshold():
    """Nobody is refused pay for gold work that the report keeps, by default."""
    from sparse_probe.quality import QualityRules
    from tasks.review import ReviewRules

    assert ReviewRules().min_gold_accuracy == QualityRules().min_gold_accuracy
