"""analysis.quality on small hand-built answer tables (milliseconds): which workers the report
drops, at the rules' boundaries with the default and a given configuration, what the result
tables hold, and that the study's schema and timing rules reach the checks. The shared
measurements themselves (sparse_probe.quality) are tested in test_worker_quality.py."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.quality import QCConfig, QCResult, assignment_checks, quality_control
from sparse_probe.questions import schema_from_dict

GOLD = {"shared": "yes", "pattern": "mark"}
ATT = {"field": "attention", "expected": "3"}
WORKER_COLUMNS = ["worker_id", "n_assignments", "n_gold", "gold_accuracy", "n_attention",
                  "n_attention_failed", "attention_rate", "median_seconds", "fast_share",
                  "min_robust_z", "excluded", "review", "reason"]


def _manifest(n_gold: int) -> list[dict]:
    rows = [{"hit_key": f"g{i}", "is_gold": True, "gold": GOLD, "attention": ATT}
            for i in range(n_gold)]
    return [*rows, {"hit_key": "plain", "is_gold": False, "gold": None, "attention": ATT}]


def _table(work: dict[str, list[tuple[str, dict[str, str], float]]]) -> pd.DataFrame:
    rows, n = [], 0
    for worker, items in work.items():
        for key, fields, secs in items:
            n += 1
            rows += [{"hit_key": key, "hit_id": f"H-{key}", "assignment_id": f"A{n:03d}",
                      "worker_id": worker, "question": q, "answer": a, "work_seconds": secs}
                     for q, a in fields.items()]
    return pd.DataFrame(rows)


RIGHT = {"shared": "yes", "pattern": "mark", "attention": "3"}
WRONG = {"shared": "yes", "pattern": "background", "attention": "3"}


def _gold_worker(k_right: int, n: int, secs: float = 60.0) -> list:
    return [(f"g{i}", RIGHT if i < k_right else WRONG, secs) for i in range(n)]


def test_default_rules_exclude_below_sixty_percent_gold_and_keep_exactly_sixty():
    table = _table({"at": _gold_worker(3, 5), "below": _gold_worker(2, 5),
                    "perfect": _gold_worker(5, 5)})
    qc = quality_control(table, _manifest(5))
    assert qc.config == QCConfig() and qc.config.min_gold_accuracy == 0.6
    w = qc.workers.set_index("worker_id")
    assert w["gold_accuracy"].to_dict() == {"at": 0.6, "below": 0.4, "perfect": 1.0}
    assert w["excluded"].to_dict() == {"at": False, "below": True, "perfect": False}
    assert w.loc["below", "reason"] == "gold accuracy 0.40 < 0.60"
    assert set(qc.kept["worker_id"]) == {"at", "perfect"}


def test_a_given_config_is_applied_and_returned():
    table = _table({"at": _gold_worker(3, 5), "perfect": _gold_worker(5, 5)})
    config = QCConfig(min_gold_accuracy=0.61)
    qc = quality_control(table, _manifest(5), config)
    assert qc.config is config
    assert list(qc.excluded["worker_id"]) == ["at"]


def test_result_tables_hold_the_documented_columns_and_rows():
    table = _table({"w1": _gold_worker(1, 2), "w2": _gold_worker(2, 2),
                    "w3": [("plain", {"shared": "no", "attention": "3"}, 50.0)]})
    qc = quality_control(table, _manifest(2), QCConfig(min_gold_accuracy=0.75))
    assert isinstance(qc, QCResult)
    assert list(qc.workers.columns) == WORKER_COLUMNS
    assert list(qc.workers["worker_id"]) == ["w1", "w2", "w3"]
    w1 = qc.workers.iloc[0]
    assert (w1["n_assignments"], w1["n_gold"], w1["gold_accuracy"]) == (2, 2, 0.5)
    assert (w1["n_attention"], w1["n_attention_failed"], w1["attention_rate"]) == (2, 0, 1.0)
    assert w1["median_seconds"] == 60.0 and w1["fast_share"] == 0.0
    # the excluded view: who, why and how much work, renumbered from 0
    ex = qc.excluded
    assert list(ex.columns) == ["worker_id", "reason", "n_assignments"]
    assert ex.to_dict(orient="records") == [
        {"worker_id": "w1", "reason": "gold accuracy 0.50 < 0.75", "n_assignments": 2}]
    assert list(ex.index) == [0]
    # the per-assignment checks, and the kept answers renumbered from 0 in input order
    assert list(qc.assignments["assignment_id"]) == ["A001", "A002", "A003", "A004", "A005"]
    assert list(qc.assignments["gold_correct"].iloc[:4]) == [True, False, True, True]
    kept = table[table["worker_id"] != "w1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(qc.kept, kept)


def test_excluded_is_renumbered_when_the_excluded_worker_is_not_first():
    table = _table({"a": _gold_worker(2, 2), "b": _gold_worker(0, 2), "c": _gold_worker(0, 2)})
    ex = quality_control(table, _manifest(2)).excluded
    assert list(ex["worker_id"]) == ["b", "c"] and list(ex.index) == [0, 1]


def test_nobody_excluded_keeps_every_answer():
    table = _table({"a": _gold_worker(2, 2), "b": _gold_worker(2, 2)})
    qc = quality_control(table, _manifest(2))
    assert qc.excluded.empty and not qc.workers["excluded"].any()
    pd.testing.assert_frame_equal(qc.kept, table)


def test_no_answers_gives_empty_tables_with_the_columns():
    empty = _table({"a": _gold_worker(1, 1)}).iloc[:0]
    config = QCConfig(min_seconds=5.0)
    qc = quality_control(empty, _manifest(1), config)
    assert qc.workers.empty and list(qc.workers.columns) == WORKER_COLUMNS
    assert qc.assignments.empty and qc.kept is empty and qc.config is config
    assert qc.excluded.empty
    assert quality_control(empty, _manifest(1)).config == QCConfig()


def test_time_rules_of_the_config_reach_the_checks():
    table = _table({"quick": [("plain", RIGHT, 4.0), ("plain", RIGHT, 4.0)],
                    "steady": [("plain", RIGHT, 5.0), ("plain", RIGHT, 60.0)]})
    config = QCConfig(min_seconds=5.0, min_time_fraction=0.0)
    checks = assignment_checks(table, _manifest(0), config)
    assert list(checks["fast"]) == [True, True, False, False]   # 5.0 s is not faster than 5.0
    assert list(checks.columns) == ["assignment_id", "worker_id", "hit_key", "work_seconds",
                                    "gold_correct", "attention_pass", "robust_z", "fast"]
    qc = quality_control(table, _manifest(0), config)
    assert list(qc.excluded["worker_id"]) == ["quick"]
    assert qc.excluded.loc[0, "reason"] == "100% of assignments too fast"
    # without the config's min_seconds nobody is fast
    assert not assignment_checks(table, _manifest(0))["fast"].any()


def test_the_study_schema_decides_which_gold_fields_are_graded():
    schema = schema_from_dict({"gold_fields": ["shared"], "questions": [
        {"id": "shared", "role": "presence", "kind": "choice", "wording": "Shared?",
         "values": [{"value": "yes", "label": "Y", "meaning": "pattern"},
                    {"value": "no", "label": "N", "meaning": "no_pattern"}]},
        {"id": "pattern", "role": "pattern", "kind": "choice", "wording": "Which?",
         "values": [{"value": "mark", "label": "M", "meaning": "spurious"},
                    {"value": "background", "label": "B", "meaning": "spurious"}]}]})
    table = _table({"w": _gold_worker(0, 2)})                  # right shared, wrong pattern
    assert assignment_checks(table, _manifest(2), schema=schema)["gold_correct"].all()
    assert not assignment_checks(table, _manifest(2))["gold_correct"].any()
    assert quality_control(table, _manifest(2), schema=schema).excluded.empty
    assert not quality_control(table, _manifest(2)).excluded.empty


def test_one_failed_attention_check_is_flagged_two_are_excluded_by_default():
    bad = {**RIGHT, "attention": "4"}
    table = _table({"one": [("plain", bad, 60.0), ("plain", RIGHT, 60.0)],
                    "two": [("plain", bad, 60.0), ("plain", bad, 60.0)]})
    w = quality_control(table, _manifest(0)).workers.set_index("worker_id")
    assert (w.loc["one", "excluded"], w.loc["one", "review"]) == (False, True)
    assert (w.loc["two", "excluded"], w.loc["two", "review"]) == (True, False)


def test_the_log_tells_how_many_workers_were_excluded(caplog):
    table = _table({"a": _gold_worker(2, 2), "b": _gold_worker(0, 2), "c": _gold_worker(1, 2)})
    with caplog.at_level(logging.INFO, logger="analysis.quality"):
        quality_control(table, _manifest(2))
    assert [r.getMessage() for r in caplog.records] == [
        "quality control: 2 of 3 workers excluded"]


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(st.sampled_from(["w1", "w2", "w3", "w4"]),
                       st.tuples(st.integers(0, 4), st.integers(1, 4)), min_size=1),
       st.sampled_from([0.25, 0.5, 0.6, 0.75, 1.0]))
def test_exactly_the_workers_below_the_gold_threshold_lose_their_answers(work, threshold):
    """A brute-force count: worker w with k of n gold right is dropped iff k / n < threshold
    (k clipped to n), and the kept table is the input without their rows."""
    work = {w: (min(k, n), n) for w, (k, n) in work.items()}
    table = _table({w: _gold_worker(k, n) for w, (k, n) in work.items()})
    qc = quality_control(table, _manifest(4), QCConfig(min_gold_accuracy=threshold))
    dropped = {w for w, (k, n) in work.items() if k / n < threshold}
    assert set(qc.excluded["worker_id"]) == dropped
    assert set(qc.kept["worker_id"]) == set(work) - dropped
    assert len(qc.kept) == int((~table["worker_id"].isin(dropped)).sum())
    assert qc.workers["excluded"].sum() == len(dropped)


@pytest.mark.parametrize("manifest_as", [list, pd.DataFrame])
def test_the_manifest_may_be_rows_or_a_frame(manifest_as):
    table = _table({"a": _gold_worker(0, 1)})
    qc = quality_control(table, manifest_as(_manifest(1)))
    assert list(qc.excluded["worker_id"]) == ["a"]
