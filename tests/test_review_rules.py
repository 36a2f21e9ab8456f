"""tasks.review: who is paid, refused or given a bonus (decide) at every rule's boundary, and
what review_assignments sends, records and skips, against botocore's Stubber (any call not
expected fails) with a real ledger and answers table. Seconds; the live-server round trip is
in test_publish.py."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from helpers_publish import FIXTURE_HITS, make_tasks_dir

from sparse_probe.answers import answers_frame, read_answers, write_answers
from sparse_probe.questions import SCHEMA_FILE, schema_from_dict
from sparse_probe.rundir import read_run_record, write_run_record
from tasks.client import ENDPOINTS, resolve_endpoint
from tasks.ledger import Ledger, request_token
from tasks.publish import PublishError
from tasks.review import Decision, ReviewResult, ReviewRules, decide, review_assignments

GOLD = {"shared": "yes", "pattern": "mark"}
ATT = {"field": "attention", "expected": "3"}
RIGHT = {"shared": "yes", "pattern": "mark", "attention": "3"}
WRONG = {"shared": "yes", "pattern": "background", "attention": "3"}
MISSED = {"shared": "yes", "pattern": "mark", "attention": "4"}


def _manifest(n_gold: int) -> list[dict]:
    rows = [{"hit_key": f"g{i}", "is_gold": True, "gold": GOLD, "attention": ATT}
            for i in range(n_gold)]
    return [*rows, {"hit_key": "plain", "is_gold": False, "gold": None, "attention": ATT},
            {"hit_key": "free", "is_gold": False, "gold": None, "attention": None}]


def _table(items: list[tuple[str, str, str, dict[str, str], float]]) -> pd.DataFrame:
    """(assignment, worker, hit_key, answers, seconds) -> the long answers table."""
    return answers_frame([
        {"hit_key": key, "hit_id": f"H-{key}", "assignment_id": aid, "worker_id": w,
         "question": q, "answer": a, "work_seconds": secs, "status": "Submitted",
         "source": "sandbox"}
        for aid, w, key, qa, secs in items for q, a in qa.items()])


def _gold_work(worker: str, k_right: int, n: int, secs: float = 60.0) -> list:
    return [(f"{worker}-{i}", worker, f"g{i}", RIGHT if i < k_right else WRONG, secs)
            for i in range(n)]


def _by_worker(decisions: list[Decision]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in decisions:
        out.setdefault(d.worker_id, set()).add(d.action)
    return {w: a.pop() if len(a) == 1 else a for w, a in out.items()}


# --------------------------------------------------------------------------- decide: gold
def test_default_gold_rule_refuses_below_sixty_percent_and_pays_exactly_sixty():
    table = _table(_gold_work("at", 3, 5) + _gold_work("below", 2, 5))
    got = decide(table, _manifest(5), ReviewRules())
    assert _by_worker(got) == {"at": "approve", "below": "reject"}
    below = next(d for d in got if d.worker_id == "below")
    assert below.reasons == ["accuracy on questions with known answers 40% is below 60%"]
    assert below.feedback == "Rejected: accuracy on questions with known answers 40% is below 60%."
    assert below.gold_accuracy == 0.4
    at = next(d for d in got if d.worker_id == "at")
    assert at.feedback == "Thank you!" and at.reasons == [] and at.gold_accuracy == 0.6


def test_gold_rule_one_past_the_threshold_and_disabled():
    table = _table(_gold_work("w", 3, 4))                       # 0.75
    assert _by_worker(decide(table, _manifest(4), ReviewRules(min_gold_accuracy=0.75))) \
        == {"w": "approve"}
    assert _by_worker(decide(table, _manifest(4), ReviewRules(min_gold_accuracy=0.76))) \
        == {"w": "reject"}
    zero = _table(_gold_work("z", 0, 2))
    assert _by_worker(decide(zero, _manifest(2), ReviewRules(min_gold_accuracy=None))) \
        == {"z": "approve"}


def test_min_gold_answers_is_the_number_of_graded_gold_hits_needed():
    table = _table(_gold_work("w", 0, 2))
    assert _by_worker(decide(table, _manifest(2), ReviewRules(min_gold_answers=2))) \
        == {"w": "reject"}
    assert _by_worker(decide(table, _manifest(2), ReviewRules(min_gold_answers=3))) \
        == {"w": "approve"}


def test_a_worker_without_gold_has_no_accuracy_and_is_not_judged_on_it():
    table = _table([("A1", "w", "plain", RIGHT, 60.0)])
    (d,) = decide(table, _manifest(0), ReviewRules(min_gold_accuracy=1.0))
    assert d.action == "approve" and d.gold_accuracy is None


def test_the_gold_rule_refuses_all_of_a_failing_workers_assignments():
    table = _table([*_gold_work("w", 0, 1), ("A9", "w", "plain", RIGHT, 60.0)])
    assert [d.action for d in decide(table, _manifest(1), ReviewRules())] == ["reject", "reject"]


# --------------------------------------------------------------------------- decide: attention
def test_attention_rule_is_off_by_default():
    table = _table([("A1", "w", "plain", MISSED, 60.0)])
    assert decide(table, _manifest(0), ReviewRules())[0].action == "approve"


def test_attention_rule_refuses_exactly_the_failed_assignments_beyond_the_tolerance():
    table = _table([("A1", "w", "plain", MISSED, 60.0), ("A2", "w", "plain", RIGHT, 60.0),
                    ("A3", "w", "plain", {"shared": "no"}, 60.0),   # no answer: failed
                    ("A4", "w", "free", MISSED, 60.0)])             # no check on this HIT
    got = decide(table, _manifest(0), ReviewRules(require_attention=True))
    assert [d.action for d in got] == ["reject", "approve", "reject", "approve"]
    assert got[0].reasons == ["the attention-check question was not answered as instructed"]
    # 2 failures: a tolerance of 1 still refuses them, a tolerance of 2 pays
    got = decide(table, _manifest(0), ReviewRules(require_attention=True, attention_tolerance=1))
    assert [d.action for d in got] == ["reject", "approve", "reject", "approve"]
    got = decide(table, _manifest(0), ReviewRules(require_attention=True, attention_tolerance=2))
    assert {d.action for d in got} == {"approve"}


def test_attention_tolerance_is_per_worker():
    table = _table([("A1", "a", "plain", MISSED, 60.0), ("A2", "b", "plain", MISSED, 60.0),
                    ("A3", "b", "plain", MISSED, 60.0)])
    got = decide(table, _manifest(0), ReviewRules(require_attention=True, attention_tolerance=1))
    assert [(d.worker_id, d.action) for d in got] == [("a", "approve"), ("b", "reject"),
                                                      ("b", "reject")]


# --------------------------------------------------------------------------- decide: time
def test_time_rule_at_the_boundary_and_off_by_default():
    table = _table([("A1", "w", "plain", RIGHT, 9.99), ("A2", "w", "plain", RIGHT, 10.0),
                    ("A3", "v", "plain", RIGHT, 400.0), ("A4", "v", "plain", RIGHT, 4.0),
                    ("A5", "v", "plain", RIGHT, 300.0), ("A6", "v", "plain", RIGHT, 350.0)])
    assert {d.action for d in decide(table, _manifest(0), ReviewRules())} == {"approve"}
    got = decide(table, _manifest(0), ReviewRules(min_seconds=10))
    # only min_seconds counts: 10 s is far below the median (155 s), and that is no reason
    assert [d.action for d in got] == ["reject", "approve", "approve", "reject", "approve",
                                       "approve"]
    assert got[3].reasons == ["submitted after 4 s, faster than the 10 s the task needs"]


def test_a_minimum_of_zero_seconds_refuses_nothing():
    table = _table([("A1", "w", "plain", RIGHT, 0.5), ("A2", "w", "plain", RIGHT, 60.0)])
    assert {d.action for d in decide(table, _manifest(0), ReviewRules(min_seconds=0))} \
        == {"approve"}


def test_every_failed_rule_is_named_in_the_feedback():
    table = _table([("A1", "w", "g0", {**WRONG, "attention": "9"}, 2.0)])
    (d,) = decide(table, _manifest(1), ReviewRules(require_attention=True, min_seconds=30))
    assert d.feedback == (
        "Rejected: accuracy on questions with known answers 0% is below 60%; the "
        "attention-check question was not answered as instructed; submitted after 2 s, faster "
        "than the 30 s the task needs.")


# --------------------------------------------------------------------------- decide: bonus
def test_bonus_at_its_accuracy_threshold_only_for_paid_work():
    table = _table(_gold_work("at", 3, 4) + _gold_work("below", 2, 4)
                   + [("Z1", "nogold", "plain", RIGHT, 60.0)])
    rules = ReviewRules(min_gold_accuracy=0.5, bonus="0.5", bonus_min_gold_accuracy=0.75)
    got = decide(table, _manifest(4), rules)
    bonus = {(d.worker_id, d.bonus) for d in got}
    assert bonus == {("at", "0.50"), ("below", None), ("nogold", None)}
    # a refused assignment gets no bonus even from a worker above the bonus threshold
    rules = ReviewRules(min_seconds=100, bonus="0.5", bonus_min_gold_accuracy=0.5)
    assert {d.bonus for d in decide(table, _manifest(4), rules)} == {None}
    # no bonus asked for
    assert {d.bonus for d in decide(table, _manifest(4), ReviewRules())} == {None}


def test_default_bonus_threshold_is_ninety_percent():
    table = _table(_gold_work("nine", 9, 10) + _gold_work("eight", 8, 10)[:9])
    got = decide(table, _manifest(10), ReviewRules(bonus="0.10"))
    assert {(d.worker_id, d.bonus) for d in got} == {("nine", "0.10"), ("eight", None)}


# --------------------------------------------------------------------------- decide: shape
def test_one_decision_per_assignment_in_assignment_order_with_its_hit():
    table = _table([("B2", "w2", "plain", RIGHT, 60.0), ("A1", "w1", "g0", RIGHT, 60.0)])
    got = decide(table, _manifest(1), ReviewRules())
    assert [(d.assignment_id, d.hit_id, d.hit_key, d.worker_id) for d in got] == [
        ("A1", "H-g0", "g0", "w1"), ("B2", "H-plain", "plain", "w2")]
    assert decide(table.iloc[:0], _manifest(1), ReviewRules()) == []


def test_the_schema_decides_which_gold_fields_are_graded():
    schema = schema_from_dict({"gold_fields": ["shared"], "questions": [
        {"id": "shared", "role": "presence", "kind": "choice", "wording": "Shared?",
         "values": [{"value": "yes", "label": "Y", "meaning": "pattern"},
                    {"value": "no", "label": "N", "meaning": "no_pattern"}]}]})
    table = _table(_gold_work("w", 0, 2))
    assert _by_worker(decide(table, _manifest(2), ReviewRules(), schema)) == {"w": "approve"}
    assert _by_worker(decide(table, _manifest(2), ReviewRules())) == {"w": "reject"}


def test_summary_line():
    ds = [Decision("A1", None, None, "w", "approve"), Decision("A2", None, None, "w", "reject"),
          Decision("A3", None, None, "w", "approve")]
    assert ReviewResult(ds, dry_run=True).summary() == (
        "3 assignments reviewed (2 approve, 1 reject); would act: 0 approved, 0 rejected, "
        "0 bonuses, 0 already done")
    assert ReviewResult(ds, approved=1, rejected=2, bonuses=3, skipped=4).summary() == (
        "3 assignments reviewed (2 approve, 1 reject); acted: 1 approved, 2 rejected, "
        "3 bonuses, 4 already done")


# --------------------------------------------------------------------------- review_assignments
GOLD_KEY = next(h[0] for h in FIXTURE_HITS if h[4])           # gold: shared yes, background
PLAIN_KEY = FIXTURE_HITS[0][0]
OTHER_KEY = FIXTURE_HITS[1][0]
GOOD = {"shared": "yes", "pattern": "background", "attention": "blue"}
BAD = {"shared": "no", "pattern": "mark", "attention": "blue"}


def _client():
    """A fresh boto3 client per test (one shared client deadlocked forked mutmut workers)."""
    session = boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="s",
                                    region_name="us-east-1")
    return session.client("mturk", endpoint_url=ENDPOINTS["sandbox"])


@pytest.fixture
def run(tmp_path):
    """A tasks dir whose gold and plain HITs are in the sandbox ledger (OTHER_KEY is not)."""
    tasks = make_tasks_dir(tmp_path)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        for key in (GOLD_KEY, PLAIN_KEY):
            ledger.mark_pending("sandbox", key, batch_id="b", token=f"t-{key}", reward="0.10",
                                max_assignments=3, cost_cents=36)
            ledger.mark_created("sandbox", key, hit_id=f"H-{key}", hit_type_id="T")
        # the same HIT at another endpoint does not make its answers ours
        ledger.mark_pending("production", OTHER_KEY, batch_id="b", token="t-o", reward="0.10",
                            max_assignments=3, cost_cents=36)
        ledger.mark_created("production", OTHER_KEY, hit_id=f"H-{OTHER_KEY}", hit_type_id="T")
    return tasks, tmp_path / "answers"


def _write(answers_dir, items, status=None):
    df = _table([(a, w, k, qa, 60.0) for a, w, k, qa in items])
    if status:
        df["status"] = df["assignment_id"].map(status).fillna(df["status"])
    write_answers(df, answers_dir)


def _review(tasks, answers, client, rules=None, **kw):
    return review_assignments(tasks, answers, client, resolve_endpoint("sandbox"),
                              rules or ReviewRules(), sleep=lambda s: None, **kw)


def _statuses(answers) -> dict[str, str]:
    return read_answers(answers).groupby("assignment_id")["status"].first().to_dict()


def test_refuses_without_ledger_or_answers(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    with pytest.raises(PublishError, match=r"ledger.sqlite: no ledger \(publish and collect"):
        _review(tasks, tmp_path / "answers", _client())
    Ledger(tasks / "ledger.sqlite").close()
    with pytest.raises(PublishError, match=r"answers.parquet: no answers \(run collect\)"):
        _review(tasks, tmp_path / "answers", _client())


def test_dry_run_decides_and_sends_or_writes_nothing(run):
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD), ("A2", "W2", GOLD_KEY, BAD)])
    before = (answers / "answers.parquet").read_bytes()
    client = _client()
    with Stubber(client):
        res = _review(tasks, answers, client, dry_run=True)
    assert res.dry_run and [d.action for d in res.decisions] == ["approve", "reject"]
    assert (res.approved, res.rejected, res.bonuses, res.skipped) == (0, 0, 0, 0)
    assert (answers / "answers.parquet").read_bytes() == before
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.decided("sandbox", "A1") is None


def test_acts_records_and_updates_statuses_once(run):
    tasks, answers = run
    write_run_record(tasks, fingerprint="tasks-fp", inputs={})
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD), ("A2", "W2", GOLD_KEY, BAD),
                     ("A3", "W3", OTHER_KEY, GOOD)])
    client = _client()
    rules = ReviewRules(bonus="0.13", bonus_min_gold_accuracy=1.0,
                        bonus_reason="thanks for the care")
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, {"AssignmentId": "A1",
                                                     "RequesterFeedback": "Thank you!"})
        stub.add_response("send_bonus", {}, {
            "WorkerId": "W1", "BonusAmount": "0.13", "AssignmentId": "A1",
            "Reason": "thanks for the care",
            "UniqueRequestToken": request_token("bonus", "sandbox", "A1")})
        stub.add_response("reject_assignment", {}, {
            "AssignmentId": "A2",
            "RequesterFeedback": "Rejected: accuracy on questions with known answers 0% is "
                                 "below 60%."})
        res = _review(tasks, answers, client, rules)
        stub.assert_no_pending_responses()
    # A3's HIT was published at another endpoint: not ours to review
    assert [d.assignment_id for d in res.decisions] == ["A1", "A2"]
    assert (res.approved, res.rejected, res.bonuses, res.skipped) == (1, 1, 1, 0)
    assert _statuses(answers) == {"A1": "Approved", "A2": "Rejected", "A3": "Submitted"}
    # the rewritten answers stay tied to the tasks they answer
    assert read_run_record(answers)["inputs"] == {"tasks": "tasks-fp"}
    with Ledger(tasks / "ledger.sqlite") as ledger:
        # HITs 2 x 36, plus the bonus 0.13 and its 20% fee 0.03 (rounded to the cent)
        assert ledger.spent_cents("sandbox") == 72 + 16
        assert ledger.decided("sandbox", "A1") == "approve"
        assert ledger.decided("sandbox", "A2") == "reject"
        assert ledger.action_state("sandbox", "A1", "bonus") == "done"
        row = ledger._db.execute(
            "SELECT worker_id, amount, cost_cents, feedback, token FROM actions "
            "WHERE assignment_id='A1' AND action='bonus'").fetchone()
        assert row == ("W1", "0.13", 16, None, request_token("bonus", "sandbox", "A1"))
        row = ledger._db.execute("SELECT worker_id, feedback FROM actions "
                                 "WHERE assignment_id='A2' AND action='reject'").fetchone()
        assert row == ("W2", "Rejected: accuracy on questions with known answers 0% is below "
                             "60%.")
    # a second run sends nothing and says the assignments were done already
    with Stubber(client):
        res2 = _review(tasks, answers, client, rules)
    assert (res2.approved, res2.rejected, res2.bonuses, res2.skipped) == (0, 0, 0, 2)


def test_assignments_already_decided_elsewhere_are_skipped(run):
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD), ("A2", "W2", PLAIN_KEY, GOOD),
                     ("A3", "W3", PLAIN_KEY, GOOD)],
           status={"A1": "Approved", "A2": "Rejected"})
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, {"AssignmentId": "A3",
                                                     "RequesterFeedback": ANY})
        res = _review(tasks, answers, client)
        stub.assert_no_pending_responses()
    assert (res.approved, res.rejected, res.skipped) == (1, 0, 2)
    assert _statuses(answers) == {"A1": "Approved", "A2": "Rejected", "A3": "Approved"}
    # nothing to act on: the answers file is not rewritten
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)], status={"A1": "Approved"})
    before = (answers / "answers.parquet").read_bytes()
    with Stubber(client):
        res = _review(tasks, answers, client)
    assert res.skipped == 1 and (answers / "answers.parquet").read_bytes() == before


def test_a_decision_in_the_ledger_wins_over_a_new_one(run):
    """A crash after recording 'reject' (pending): the rerun sends the reject, even though
    the rules now say approve, and sends no bonus with it."""
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)], status={"A1": "Rejected"})
    with Ledger(tasks / "ledger.sqlite") as ledger:
        ledger.mark_action("sandbox", "A1", "reject", "pending", worker_id="W1",
                           feedback="Rejected: earlier rules.")
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("reject_assignment", {}, {"AssignmentId": "A1",
                                                    "RequesterFeedback": "Thank you!"})
        res = _review(tasks, answers, client, ReviewRules(bonus="0.10",
                                                          bonus_min_gold_accuracy=0.5))
        stub.assert_no_pending_responses()
    assert (res.approved, res.rejected, res.bonuses, res.skipped) == (0, 1, 0, 0)
    assert _statuses(answers) == {"A1": "Rejected"}
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.action_state("sandbox", "A1", "reject") == "done"


def test_a_pending_action_the_service_already_applied_is_marked_done(run, caplog):
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)])
    with Ledger(tasks / "ledger.sqlite") as ledger:
        ledger.mark_action("sandbox", "A1", "approve", "pending", worker_id="W1")
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("approve_assignment", service_error_code="RequestError",
                              service_message="This operation can be called with a status "
                                              "of: Submitted", http_status_code=400)
        with caplog.at_level(logging.WARNING, logger="tasks.review"):
            res = _review(tasks, answers, client)
    assert (res.approved, res.skipped) == (1, 0)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.action_state("sandbox", "A1", "approve") == "done"
    # the operator is told which call was assumed to have been applied
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("approve A1: ") and "treated as already done" in warning
    assert "This operation can be called with a status of: Submitted" in warning  # the service's


@pytest.mark.parametrize(("pending", "code"), [(False, "RequestError"),
                                               (True, "AccessDeniedException")])
def test_other_errors_propagate_and_leave_the_action_pending(run, pending, code):
    """A RequestError on a first attempt is a real refusal; other codes are never taken for
    'already done'. The action stays pending, so the next run retries it."""
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)])
    if pending:
        with Ledger(tasks / "ledger.sqlite") as ledger:
            ledger.mark_action("sandbox", "A1", "approve", "pending", worker_id="W1")
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("approve_assignment", service_error_code=code,
                              http_status_code=400)
        with pytest.raises(ClientError):
            _review(tasks, answers, client, ReviewRules())
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.action_state("sandbox", "A1", "approve") == "pending"
        row = ledger._db.execute("SELECT worker_id, feedback FROM actions "
                                 "WHERE assignment_id='A1'").fetchone()
        assert row == ("W1", None if pending else "Thank you!")
    assert _statuses(answers) == {"A1": "Submitted"}


def test_retried_throttled_calls_use_the_given_sleep(run):
    """Approve, reject and bonus calls are retried with the caller's sleep (no real waits)."""
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD), ("A2", "W2", GOLD_KEY, BAD)])
    client = _client()
    slept = []
    with Stubber(client) as stub:
        for op in ("approve_assignment", "send_bonus", "reject_assignment"):
            stub.add_client_error(op, service_error_code="ThrottlingException",
                                  http_status_code=400)
            stub.add_response(op, {}, None)
        res = review_assignments(tasks, answers, client, resolve_endpoint("sandbox"),
                                 ReviewRules(bonus="0.10", bonus_min_gold_accuracy=1.0),
                                 sleep=slept.append)
        stub.assert_no_pending_responses()
    assert (res.approved, res.rejected, res.bonuses) == (1, 1, 1) and len(slept) == 3


def test_counts_add_up_over_several_assignments(run):
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD), ("A2", "W2", GOLD_KEY, BAD),
                     ("A3", "W1", PLAIN_KEY, GOOD), ("A4", "W2", PLAIN_KEY, GOOD),
                     ("A5", "W3", GOLD_KEY, GOOD)])
    client = _client()
    with Stubber(client) as stub:
        for aid, op in (("A1", "approve_assignment"), ("A1", "send_bonus"),
                        ("A2", "reject_assignment"), ("A3", "approve_assignment"),
                        ("A3", "send_bonus"), ("A4", "reject_assignment"),
                        ("A5", "approve_assignment"), ("A5", "send_bonus")):
            stub.add_response(op, {}, {"AssignmentId": aid, **(
                {"RequesterFeedback": ANY} if op != "send_bonus" else
                {"WorkerId": ANY, "BonusAmount": "0.10", "Reason": ANY,
                 "UniqueRequestToken": request_token("bonus", "sandbox", aid)})})
        res = _review(tasks, answers, client, ReviewRules(bonus="0.10",
                                                          bonus_min_gold_accuracy=1.0))
        stub.assert_no_pending_responses()
    assert (res.approved, res.rejected, res.bonuses, res.skipped) == (3, 2, 3, 0)


def test_an_error_without_a_code_is_never_taken_for_already_done(tmp_path):
    """Only a RequestError on a call already recorded as pending means 'applied before'."""
    from tasks.review import _act

    def refuse(response):
        def call():
            raise ClientError(response, "ApproveAssignment")
        return call

    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ep = resolve_endpoint("sandbox")
        for aid, response in (("A1", {}), ("A2", {"Error": {}})):
            ledger.mark_action("sandbox", aid, "approve", "pending")
            with pytest.raises(ClientError):
                _act(ledger, ep, aid, "approve", refuse(response))
            assert ledger.action_state("sandbox", aid, "approve") == "pending"
        assert _act(ledger, ep, "A3", "approve", lambda: None, worker_id="W3", feedback="ok")
        assert not _act(ledger, ep, "A3", "approve", lambda: 1 / 0)   # done: not called again


def test_progress_is_shown_on_a_terminal_only(run, monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    from tqdm import tqdm

    # no tqdm monitor thread: it would outlive the test (and hang forked mutation workers)
    monkeypatch.setattr(tqdm, "monitor_interval", 0)
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)])
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, None)
        _review(tasks, answers, client)
    assert "review" not in capsys.readouterr().err          # a log file gets no progress bar
    _write(answers, [("A2", "W2", GOLD_KEY, GOOD)])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, None)
        _review(tasks, answers, client)
    shown = terminal.getvalue()
    assert "review: 100%" in shown and "1/1" in shown and "assignment" in shown


def test_the_tasks_schema_grades_the_gold(run):
    tasks, answers = run
    schema = schema_from_dict({"gold_fields": ["shared"], "questions": [
        {"id": "shared", "role": "presence", "kind": "choice", "wording": "Shared?",
         "values": [{"value": "yes", "label": "Y", "meaning": "pattern"},
                    {"value": "no", "label": "N", "meaning": "no_pattern"}]}]})
    (tasks / SCHEMA_FILE).write_text(json.dumps(schema.to_dict()))
    _write(answers, [("A1", "W1", GOLD_KEY, {**GOOD, "pattern": "mark"})])
    res = _review(tasks, answers, _client(), dry_run=True)
    assert [d.action for d in res.decisions] == ["approve"]


def test_bonus_cost_includes_the_twenty_percent_fee(run):
    tasks, answers = run
    _write(answers, [("A1", "W1", GOLD_KEY, GOOD)])
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, None)
        stub.add_response("send_bonus", {}, None)
        _review(tasks, answers, client, ReviewRules(bonus="1.00", bonus_min_gold_accuracy=0.5))
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.spent_cents("sandbox") - 72 == int(Decimal("1.20") * 100)


def test_an_assignment_without_a_status_is_reviewed(run):
    tasks, answers = run
    df = _table([("A1", "W1", GOLD_KEY, GOOD, 60.0)])
    df["status"] = None
    write_answers(df, answers)
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, {"AssignmentId": "A1",
                                                     "RequesterFeedback": "Thank you!"})
        res = _review(tasks, answers, client)
        stub.assert_no_pending_responses()
    assert (res.approved, res.skipped) == (1, 0)
    assert _statuses(answers) == {"A1": "Approved"}


# --------------------------------------------------------------------------- decide: no worker id
def test_an_assignment_without_a_worker_id_is_judged_on_its_own():
    table = _table([("A1", None, "plain", MISSED, 60.0), ("A2", "", "g0", WRONG, 60.0),
                    ("A3", None, "plain", RIGHT, 60.0), ("A4", "", "plain", RIGHT, 60.0),
                    ("A5", None, "g0", RIGHT, 60.0), ("A6", " ", "g0", RIGHT, 60.0)])
    table.loc[table["assignment_id"] == "A3", "worker_id"] = np.nan   # not through the reader
    got = decide(table, _manifest(1), ReviewRules(require_attention=True, bonus="0.05",
                                                  bonus_min_gold_accuracy=0.0))
    # its own failed attention check rejects it; another's failed gold does not
    assert [d.action for d in got] == ["reject", "reject", "approve", "approve", "approve",
                                       "approve"]
    assert got[0].reasons == ["the attention-check question was not answered as instructed"]
    assert got[1].reasons == ["accuracy on questions with known answers 0% is below 60%"]
    assert [d.worker_id for d in got] == [None, "", None, "", None, " "]
    assert [d.gold_accuracy for d in got] == [None, 0.0, None, None, 1.0, 1.0]
    assert all(d.bonus is None for d in got)   # no one to pay
    # a named worker with the same answers is pooled and paid as before
    named = _table([("B1", "w", "g0", RIGHT, 60.0), ("B2", "w", "plain", RIGHT, 60.0)])
    assert [d.bonus for d in decide(named, _manifest(1), ReviewRules(
        bonus="0.05", bonus_min_gold_accuracy=0.0))] == ["0.05", "0.05"]
