"""Worker quality at its edges, on hand-built tables: robust work-time z-scores by hand,
zero and missing times, every rule's reason text at once, and the attention rule without a
failure count (sparse_probe.quality decides pay and exclusion: each comparison is pinned)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sparse_probe.answers import answers_frame
from sparse_probe.quality import (
    QualityRules,
    assignment_checks,
    attention_fails,
    gold_fails,
    judge_workers,
    worker_quality,
)

ATT = {"field": "attention", "expected": "3"}


def _manifest() -> list[dict]:
    return [{"hit_key": "g", "is_gold": True, "gold": {"shared": "yes", "pattern": "mark"},
             "attention": ATT},
            {"hit_key": "p", "is_gold": False, "gold": None, "attention": ATT}]


def _table(rows: list[tuple[str, str, str, dict[str, str], float | None]]) -> pd.DataFrame:
    """(assignment, worker, hit_key, fields, work seconds) -> the long answers table."""
    out = []
    for aid, worker, key, fields, secs in rows:
        for q, a in fields.items():
            out.append({"hit_key": key, "hit_id": f"H-{key}", "assignment_id": aid,
                        "worker_id": worker, "question": q, "answer": a,
                        "work_seconds": secs, "status": "Submitted", "source": "local"})
    return answers_frame(out)


def _times(secs: list[float | None]) -> pd.DataFrame:
    return _table([(f"A{i}", f"w{i}", "p", {"attention": "3"}, s) for i, s in enumerate(secs)])


def _robust_z(valid: list[float], t: float) -> float:
    logt = np.log(valid)
    med = float(np.median(logt))
    mad = 1.4826 * float(np.median(np.abs(logt - med)))
    return (math.log(t) - med) / (mad if mad > 0 else 1.0)


def test_robust_z_by_hand_with_a_one_second_assignment():
    secs = [1.0, 30.0, 60.0, 90.0, 45.0]
    c = assignment_checks(_times(secs), _manifest()).set_index("assignment_id")
    for i, s in enumerate(secs):
        assert c.loc[f"A{i}", "robust_z"] == pytest.approx(_robust_z(secs, s), rel=1e-12)
        assert c.loc[f"A{i}", "work_seconds"] == s
    # 0.2 of the median (45 s) is 9 s: only the one-second assignment is fast
    assert c["fast"].tolist() == [True, False, False, False, False]


def test_a_zero_second_assignment_has_no_z_and_does_not_move_the_median():
    secs = [0.0, 30.0, 60.0, 90.0]
    c = assignment_checks(_times(secs), _manifest()).set_index("assignment_id")
    assert np.isnan(c.loc["A0", "robust_z"])
    valid = [30.0, 60.0, 90.0]
    assert c.loc["A1", "robust_z"] == pytest.approx(_robust_z(valid, 30.0), rel=1e-12)
    assert c.loc["A0", "fast"]  # 0 s is faster than 0.2 of the median of the rest
    # a robust-z rule does not make the missing z a fast verdict by itself
    c = assignment_checks(_times(secs), _manifest(),
                          QualityRules(min_time_fraction=0.0, min_robust_z=-10.0))
    assert c["fast"].tolist() == [False, False, False, False]


def test_identical_times_divide_by_one_not_by_a_zero_spread():
    secs = [60.0, 60.0, 60.0, 10.0]
    c = assignment_checks(_times(secs), _manifest()).set_index("assignment_id")
    assert c.loc["A3", "robust_z"] == pytest.approx(math.log(10.0) - math.log(60.0), rel=1e-12)
    assert c.loc["A0", "robust_z"] == 0.0


def test_without_any_work_time_nothing_is_fast():
    c = assignment_checks(_times([None, None]), _manifest(),
                          QualityRules(min_seconds=5.0, min_robust_z=-1.0))
    assert c["robust_z"].isna().all() and not c["fast"].any()
    assert c["fast"].dtype == bool


def test_time_fraction_and_robust_z_boundaries():
    secs = [10.0, 50.0, 50.0, 60.0, 70.0]   # median 50: 0.2 of it is exactly 10 s
    c = assignment_checks(_times(secs), _manifest())
    assert not c["fast"].any()               # exactly at the fraction: not fast
    z0 = _robust_z(secs, 10.0)
    at = assignment_checks(_times(secs), _manifest(),
                           QualityRules(min_time_fraction=0.0, min_robust_z=z0))
    assert not at["fast"].any()              # exactly at the z line: not fast
    over = assignment_checks(_times(secs), _manifest(),
                             QualityRules(min_time_fraction=0.0, min_robust_z=z0 + 1e-9))
    assert over["fast"].tolist() == [True, False, False, False, False]
    # the rules add up: fast by min_seconds stays fast though its z is unremarkable
    both = assignment_checks(_times(secs), _manifest(),
                             QualityRules(min_seconds=55.0, min_time_fraction=0.0,
                                          min_robust_z=-50.0))
    assert both["fast"].tolist() == [True, True, True, False, False]


def test_every_rule_failed_at_once_and_none():
    rows = [("A1", "bad", "g", {"shared": "no", "pattern": "", "attention": "1"}, 1.0),
            ("A2", "bad", "p", {"attention": "1"}, 1.0),
            ("A3", "bad", "p", {"attention": "2"}, 100.0),
            ("A4", "good", "g", {"shared": "yes", "pattern": "mark", "attention": "3"}, 100.0),
            ("A5", "good", "p", {"attention": "3"}, 100.0),
            ("A6", "good", "p", {"attention": "3"}, 90.0)]
    w = worker_quality(_table(rows), _manifest())
    assert w["worker_id"].tolist() == ["bad", "good"]   # sorted by worker id
    j = judge_workers(w).set_index("worker_id")
    assert j.loc["bad", "reason"] == ("gold accuracy 0.00 < 0.60; attention checks passed "
                                      "0.00 < 1.00; 67% of assignments too fast")
    assert j.loc["good", "reason"] == ""
    assert j.loc["bad", "excluded"] and not j.loc["good", "excluded"]
    assert j["gold_failed"].dtype == bool and j["fast_failed"].dtype == bool
    assert not j["review"].any()


def test_judging_a_table_without_failure_counts_or_rows():
    w = pd.DataFrame({"worker_id": ["a", "b", "c"], "n_gold": [0, 2, 1],
                      "gold_accuracy": [np.nan, 0.5, 1.0], "n_attention": [4, 3, 0],
                      "attention_rate": [0.75, 1 / 3, np.nan],
                      "fast_share": [np.nan, 0.0, 0.6]})
    j = judge_workers(w, QualityRules()).set_index("worker_id")
    # failures derived from the rate: a 1 of 4 (within tolerance), b 2 of 3 (excluded)
    assert j["attention_failed"].tolist() == [False, True, False]
    assert j.loc["a", "reason"] == "" and not j.loc["a", "excluded"]  # no count: no review text
    assert j.loc["b", "reason"] == ("gold accuracy 0.50 < 0.60; attention checks passed "
                                    "0.33 < 1.00")
    assert j.loc["c", "reason"] == "60% of assignments too fast"
    assert not j.loc["a", "fast_failed"]   # no work time: not fast
    empty = judge_workers(w.iloc[:0])
    assert empty.empty and "reason" in empty.columns


def test_attention_fails_without_a_failure_count():
    w = pd.DataFrame({"n_attention": [4, 4, 0, 3], "attention_rate": [0.75, 0.5, np.nan, 0.0]})
    failed, flagged = attention_fails(w, 1.0, tolerance=1)
    assert failed.tolist() == [False, True, False, True]
    assert flagged.tolist() == [True, False, False, False]
    failed, flagged = attention_fails(w, 1.0)   # the default tolerance is one failure
    assert flagged.tolist() == [True, False, False, False]
    failed, flagged = attention_fails(w, 1.0, tolerance=0)
    assert failed.tolist() == [True, True, False, True] and not flagged.any()
    # a worker without checks is never below the rate, whatever the rate
    w0 = pd.DataFrame({"n_attention": [0], "attention_rate": [0.0], "n_attention_failed": [0]})
    failed, flagged = attention_fails(w0, 1.0, tolerance=0)
    assert not failed.any() and not flagged.any()
    # the count, where given, wins over the rate
    wc = pd.DataFrame({"n_attention": [4], "attention_rate": [0.5], "n_attention_failed": [1]})
    assert attention_fails(wc, 1.0)[1].tolist() == [True]


def test_gold_fails_edges():
    w = pd.DataFrame({"n_gold": [1, 1, 0, 2], "gold_accuracy": [0.5, 0.6, np.nan, np.nan]})
    assert gold_fails(w, 0.6).tolist() == [True, False, False, False]
    assert gold_fails(w, 0.6, min_gold_answers=2).tolist() == [False, False, False, False]
    assert gold_fails(w, None).tolist() == [False] * 4
    assert gold_fails(w, 0.6).dtype == bool


def test_answers_are_compared_stripped_and_case_blind():
    rows = [("A1", "w", "g", {"shared": " YES ", "pattern": "Mark", "attention": "3 "}, 50.0),
            ("A2", "v", "g", {"shared": "yes", "pattern": "", "attention": ""}, 50.0)]
    c = assignment_checks(_table(rows), _manifest()).set_index("assignment_id")
    assert bool(c.loc["A1", "gold_correct"]) and bool(c.loc["A1", "attention_pass"])
    assert not bool(c.loc["A2", "gold_correct"]) and not bool(c.loc["A2", "attention_pass"])
    assert str(c["gold_correct"].dtype) == "boolean"


def test_the_first_answer_to_a_question_counts():
    rows = [("A1", "w", "g", {"shared": "yes", "pattern": "mark", "attention": "3"}, 50.0),
            ("A1", "w", "g", {"shared": "no", "pattern": "other", "attention": "1"}, 50.0)]
    c = assignment_checks(_table(rows), _manifest())
    assert len(c) == 1
    assert bool(c["gold_correct"].iloc[0]) and bool(c["attention_pass"].iloc[0])


def test_only_hits_marked_gold_are_graded():
    gold = {"shared": "yes", "pattern": "mark"}
    manifest = [{"hit_key": "g", "is_gold": True, "gold": gold, "attention": ATT},
                {"hit_key": "x", "is_gold": False, "gold": gold, "attention": ATT},
                {"hit_key": "y", "gold": gold, "attention": ATT},       # no is_gold at all
                {"hit_key": "z", "is_gold": None, "gold": gold, "attention": None}]
    fields = {"shared": "no", "pattern": "", "attention": "3"}
    rows = [(f"A{k}", "w", k, fields, 50.0) for k in ("g", "x", "y", "z")]
    c = assignment_checks(_table(rows), manifest).set_index("hit_key")
    assert c.loc["g", "gold_correct"] is not pd.NA and not bool(c.loc["g", "gold_correct"])
    assert c.loc[["x", "y", "z"], "gold_correct"].isna().all()
    assert c.loc["z", "attention_pass"] is pd.NA   # no check on that HIT


def test_a_gold_with_an_empty_field_does_not_grade_it():
    manifest = [{"hit_key": "g", "is_gold": True, "gold": {"shared": "yes", "pattern": ""},
                 "attention": ATT}]
    rows = [("A1", "w", "g", {"shared": "yes", "pattern": "background", "attention": "3"}, 9.0)]
    c = assignment_checks(_table(rows), manifest)
    assert bool(c["gold_correct"].iloc[0])   # only "shared" is graded


def test_a_work_time_that_is_no_number_is_missing():
    table = _times([30.0, 60.0, 90.0])
    table["work_seconds"] = table["work_seconds"].astype(object)
    table.loc[table["assignment_id"] == "A0", "work_seconds"] = "n/a"
    c = assignment_checks(table, _manifest(), QualityRules(min_seconds=40.0)) \
        .set_index("assignment_id")
    assert np.isnan(c.loc["A0", "work_seconds"]) and np.isnan(c.loc["A0", "robust_z"])
    assert not c.loc["A0", "fast"] and c.loc["A1", "fast"] == (60.0 < 40.0)
    assert c["work_seconds"].dtype == float


def test_tables_keep_their_columns_and_orders():
    from sparse_probe.quality import ASSIGNMENT_COLUMNS, WORKER_COLUMNS

    empty = _times([10.0]).iloc[:0]
    assert list(assignment_checks(empty, _manifest()).columns) == ASSIGNMENT_COLUMNS
    assert list(worker_quality(empty, _manifest()).columns) == WORKER_COLUMNS
    rows = [("A9", "zed", "p", {"attention": "3"}, 50.0), ("A2", "amy", "p", {"attention": "3"},
                                                          60.0),
            ("A5", "kim", "p", {"attention": "1"}, 70.0)]
    c = assignment_checks(_table(rows), _manifest())
    assert c["assignment_id"].tolist() == ["A9", "A2", "A5"]   # as they first appear
    assert list(c.columns) == ASSIGNMENT_COLUMNS
    w = worker_quality(_table(rows), _manifest())
    assert w["worker_id"].tolist() == ["amy", "kim", "zed"]      # sorted by worker id
    assert w.set_index("worker_id").loc["kim", "attention_rate"] == 0.0
    j = judge_workers(w.iloc[:0])
    for col in ("gold_failed", "attention_failed", "fast_failed", "excluded", "review"):
        assert j[col].dtype == bool
    assert pd.api.types.is_string_dtype(j["reason"])
    assert list(j.columns)[:len(WORKER_COLUMNS)] == WORKER_COLUMNS


def test_the_schema_decides_which_gold_fields_are_graded():
    import dataclasses

    from sparse_probe.questions import default_schema

    rows = [("A1", "w", "g", {"shared": "yes", "pattern": "background", "attention": "3"}, 9.0)]
    table = _table(rows)
    assert not bool(assignment_checks(table, _manifest())["gold_correct"].iloc[0])
    shared_only = dataclasses.replace(default_schema(), gold_fields=("shared",))
    assert bool(assignment_checks(table, _manifest(), schema=shared_only)["gold_correct"].iloc[0])
    w = worker_quality(table, _manifest(), schema=shared_only)
    assert w["gold_accuracy"].tolist() == [1.0]
    # no gold fields named: every field the gold object gives is graded
    every = dataclasses.replace(default_schema(), gold_fields=())
    assert not bool(assignment_checks(table, _manifest(), schema=every)["gold_correct"].iloc[0])


def test_a_manifest_without_gold_or_attention_columns():
    rows = [("A1", "w", "p", {"shared": "yes", "pattern": "mark"}, 30.0),
            ("A2", "v", "q", {"shared": "no", "pattern": ""}, 60.0)]
    c = assignment_checks(_table(rows), [{"hit_key": "p"}, {"hit_key": "q"}])
    assert c["gold_correct"].isna().all() and c["attention_pass"].isna().all()
    w = judge_workers(worker_quality(_table(rows), [{"hit_key": "p"}, {"hit_key": "q"}]))
    assert not w["excluded"].any() and (w["reason"] == "").all()
