"""Incremental collection of assignments into answers.parquet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from helpers_publish import FIXTURE_HITS, make_tasks_dir

from tasks.answers import (
    answers_frame,
    assignment_rows,
    build_question_form_answers,
    read_answers,
    write_answers,
)
from tasks.client import make_client, resolve_endpoint
from tasks.collect import collect_answers
from tasks.ledger import Ledger
from tasks.publish import PublishError, PublishOptions, publish_batch
from tasks.simulate import simulate_crowd

N_QUESTIONS = 5


def _no_sleep(_: float) -> None:
    pass


def _assignment(aid: str, hit_id: str, worker: str, answer: str) -> dict:
    t0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
    return {"AssignmentId": aid, "WorkerId": worker, "HITId": hit_id,
            "AssignmentStatus": "Submitted", "AcceptTime": t0,
            "SubmitTime": t0 + timedelta(seconds=42),
            "Answer": build_question_form_answers({"shared": answer, "description": "d"})}


def _ledger_with_hits(tasks, endpoint: str, hits: list[tuple[str, str]], max_assignments=3):
    with Ledger(tasks / "ledger.sqlite") as ledger:
        for key, hit_id in hits:
            ledger.mark_pending(endpoint, key, batch_id="b", token=key, reward="0.10",
                                max_assignments=max_assignments, cost_cents=36)
            ledger.mark_created(endpoint, key, hit_id=hit_id, hit_type_id="T")


@pytest.mark.slow
def test_paginates_and_is_incremental_with_stubber(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    key = FIXTURE_HITS[0][0]
    _ledger_with_hits(tasks, "sandbox", [(key, "H1")])
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                   region_name="us-east-1").client(
        "mturk", endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com")
    ep = resolve_endpoint("sandbox")
    out = tmp_path / "answers"
    base = {"HITId": "H1", "MaxResults": 1,
            "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}
    with Stubber(client) as stub:
        stub.add_response("list_assignments_for_hit",
                          {"Assignments": [_assignment("A1", "H1", "W1", "yes")],
                           "NextToken": "p2", "NumResults": 1}, base)
        stub.add_response("list_assignments_for_hit",
                          {"Assignments": [_assignment("A2", "H1", "W2", "no")],
                           "NumResults": 1}, {**base, "NextToken": "p2"})
        r1 = collect_answers(tasks, out, client, ep, page_size=1, sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert (r1.new_assignments, r1.new_rows) == (2, 4)
    df = read_answers(out)
    assert sorted(df["assignment_id"].unique()) == ["A1", "A2"]
    assert (df["work_seconds"] == 42).all() and (df["hit_key"] == key).all()
    # Second run: one more assignment shows up; only it is added.
    with Stubber(client) as stub:
        stub.add_client_error("list_assignments_for_hit", "ServiceUnavailable", "busy", 503)
        stub.add_response("list_assignments_for_hit", {
            "Assignments": [_assignment(a, "H1", w, "yes")
                            for a, w in (("A1", "W1"), ("A2", "W2"), ("A3", "W3"))],
            "NumResults": 3}, {**base, "MaxResults": 100})
        r2 = collect_answers(tasks, out, client, ep, sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert (r2.new_assignments, r2.new_rows, r2.total_rows) == (1, 2, 6)
    # The HIT has all 3 assignments now: a third run lists nothing.
    with Stubber(client) as stub:
        r3 = collect_answers(tasks, out, client, ep, sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert (r3.hits_polled, r3.new_rows, r3.total_rows) == (0, 0, 6)


@pytest.mark.slow
def test_deleted_parquet_is_refetched(tmp_path):
    """The ledger alone never hides answers: rows missing from the parquet are fetched again."""
    tasks = make_tasks_dir(tmp_path)
    key = FIXTURE_HITS[0][0]
    _ledger_with_hits(tasks, "sandbox", [(key, "H1")], max_assignments=1)
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                   region_name="us-east-1").client(
        "mturk", endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com")
    ep = resolve_endpoint("sandbox")
    page = {"Assignments": [_assignment("A1", "H1", "W1", "yes")], "NumResults": 1}
    with Stubber(client) as stub:
        stub.add_response("list_assignments_for_hit", page)
        stub.add_response("list_assignments_for_hit", page)
        collect_answers(tasks, tmp_path / "answers", client, ep, sleep=_no_sleep)
        (tmp_path / "answers" / "answers.parquet").unlink()
        r = collect_answers(tasks, tmp_path / "answers", client, ep, sleep=_no_sleep)
    assert r.new_assignments == 1 and len(read_answers(tmp_path / "answers")) == 2


def test_collect_without_ledger_is_an_error(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    with pytest.raises(PublishError, match="no ledger"):
        collect_answers(tasks, tmp_path / "a", None, resolve_endpoint("sandbox"))


@pytest.mark.slow
def test_incremental_collect_against_live_server(tmp_path):
    live = pytest.importorskip("tasks.server.live")
    tasks = make_tasks_dir(tmp_path)
    out = tmp_path / "answers"
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        auth = (srv.admin_user, srv.admin_password)
        publish_batch(tasks, client, ep, PublishOptions(assignments=2), admin_auth=auth)
        n = len(FIXTURE_HITS)
        simulate_crowd(srv.url, tasks, n_workers=1, spammer_share=0, seed=1, concurrency=1,
                       admin_auth=auth, worker_prefix="FIRST")
        r1 = collect_answers(tasks, out, client, ep)
        first = read_answers(out)
        assert (r1.new_assignments, len(first)) == (n, n * N_QUESTIONS)
        r_again = collect_answers(tasks, out, client, ep)
        assert r_again.new_rows == 0 and r_again.total_rows == n * N_QUESTIONS
        simulate_crowd(srv.url, tasks, n_workers=1, spammer_share=0, seed=2, concurrency=1,
                       admin_auth=auth, worker_prefix="SECOND")
        r2 = collect_answers(tasks, out, client, ep)
        both = read_answers(out)
        assert r2.new_assignments == n
        assert len(both) == 2 * n * N_QUESTIONS
        assert not both.duplicated(["assignment_id", "question"]).any()
        kept = both[both["assignment_id"].isin(first["assignment_id"])]
        assert kept.sort_values(["assignment_id", "question"])["answer"].tolist() == \
            first.sort_values(["assignment_id", "question"])["answer"].tolist()
        r3 = collect_answers(tasks, out, client, ep)
        assert r3.hits_polled == 0  # every HIT is complete


@pytest.mark.slow
def test_rows_of_hits_not_in_the_ledger_are_refused_unless_asked(tmp_path):
    """An answers table with another batch's rows is not silently merged into."""
    tasks = make_tasks_dir(tmp_path)
    key = FIXTURE_HITS[0][0]
    _ledger_with_hits(tasks, "sandbox", [(key, "H1")], max_assignments=1)
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                   region_name="us-east-1").client(
        "mturk", endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com")
    ep = resolve_endpoint("sandbox")
    out = tmp_path / "answers"
    stray = assignment_rows(_assignment("X1", "OTHERHIT", "W9", "no"), hit_key="other",
                            source="sandbox")
    write_answers(answers_frame(stray), out)
    page = {"Assignments": [_assignment("A1", "H1", "W1", "yes")], "NumResults": 1}
    with pytest.raises(PublishError, match=r"2 rows of 1 HITs not in the ledger.*OTHERHIT"):
        collect_answers(tasks, out, client, ep, sleep=_no_sleep)
    assert set(read_answers(out)["assignment_id"]) == {"X1"}  # untouched
    with Stubber(client) as stub:
        stub.add_response("list_assignments_for_hit", page)
        r = collect_answers(tasks, out, client, ep, sleep=_no_sleep, merge_foreign=True)
    assert (r.new_assignments, r.existing_rows, r.foreign_rows, r.total_rows) == (1, 2, 2, 4)
    assert "2 of them of HITs not in the ledger" in r.summary()
    assert set(read_answers(out)["assignment_id"]) == {"X1", "A1"}
