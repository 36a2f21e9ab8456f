"""Publishing end to end: unmodified boto3 over loopback HTTP against a live task server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_publish import ATTENTION, FIXTURE_HITS, make_tasks_dir

from tasks.answers import read_answers
from tasks.client import make_client, resolve_endpoint
from tasks.collect import collect_answers
from tasks.cost import DEFAULT_ASSIGNMENTS, estimate_cost
from tasks.ledger import Ledger
from tasks.publish import PublishError, PublishOptions, load_manifest, publish_batch
from tasks.publish_cli import collect, publish, review
from tasks.review import ReviewRules, review_assignments
from tasks.simulate import simulate_crowd

live = pytest.importorskip("tasks.server.live")

N_QUESTIONS = 5  # shared, pattern, confidence, description, attention


@pytest.fixture
def server(tmp_path):
    with live.start_server(tmp_path / "server.sqlite") as srv:
        yield srv


def _env(srv) -> dict[str, str]:
    return {"SPARSE_PROBE_ACCESS_KEY_ID": srv.access_key_id,
            "SPARSE_PROBE_SECRET_ACCESS_KEY": srv.secret_access_key,
            "SPARSE_PROBE_ADMIN_USER": srv.admin_user,
            "SPARSE_PROBE_ADMIN_PASSWORD": srv.admin_password}


def _server_hits(srv) -> list[dict]:
    client = srv.boto3_client()
    return [h for page in client.get_paginator("list_hits").paginate() for h in page["HITs"]]


def _publish_cli(tasks: Path, srv, *extra: str):
    return CliRunner().invoke(publish, [str(tasks), "--endpoint", "local", "--endpoint-url",
                                        srv.url, "--assignments", "3", "--reward", "0.05",
                                        *extra], env=_env(srv))


@pytest.mark.slow
def test_publish_simulate_collect_review(tmp_path, server):
    tasks = make_tasks_dir(tmp_path)
    res = _publish_cli(tasks, server)
    assert res.exit_code == 0, res.output
    hits = _server_hits(server)
    assert len(hits) == len(FIXTURE_HITS)
    # Assets were uploaded and the HIT pages point at them.
    page = server.boto3_client().get_hit(HITId=hits[0]["HITId"])["HIT"]["Question"]
    assert "../assets/" not in page and f"{server.url}/assets/" in page
    import re

    import requests
    asset_url = re.search(r'src="([^"]+\.png)"', page).group(1)
    assert requests.get(asset_url, timeout=10).status_code == 200

    sim = simulate_crowd(server.url, tasks, n_workers=6, spammer_share=0.34, seed=3,
                         concurrency=3, admin_auth=(server.admin_user, server.admin_password))
    assert sim.submitted == 3 * len(FIXTURE_HITS)

    res = CliRunner().invoke(collect, [str(tasks), "--out", str(tmp_path / "answers")],
                             env=_env(server))
    assert res.exit_code == 0, res.output
    df = read_answers(tmp_path / "answers")
    assert len(df) == 3 * len(FIXTURE_HITS) * N_QUESTIONS
    assert set(df["question"]) == {"shared", "pattern", "confidence", "description",
                                   ATTENTION["field"]}
    assert str(df["submit_time"].dt.tz) == "UTC"
    assert (df["work_seconds"] >= 0).all()
    assert set(df["hit_key"]) == {h[0] for h in FIXTURE_HITS}
    assert set(df["source"]) == {"local"}
    assert df.groupby("assignment_id")["worker_id"].nunique().eq(1).all()

    res = CliRunner().invoke(review, [str(tasks), "--answers", str(tmp_path / "answers"),
                                      "--require-attention", "--min-gold-accuracy", "0"],
                             env=_env(server))
    assert res.exit_code == 0, res.output
    att = df[df["question"] == ATTENTION["field"]].set_index("assignment_id")["answer"]
    client = server.boto3_client()
    statuses = {a["AssignmentId"]: a["AssignmentStatus"]
                for h in hits for a in client.list_assignments_for_hit(HITId=h["HITId"])
                ["Assignments"]}
    for aid, answer in att.items():
        assert statuses[aid] == ("Approved" if answer == ATTENTION["expected"] else "Rejected")
    assert "Rejected" in statuses.values() or all(a == ATTENTION["expected"] for a in att)
    after = read_answers(tmp_path / "answers").groupby("assignment_id")["status"].first()
    assert after.to_dict() == statuses
    # A second review does nothing new.
    res = CliRunner().invoke(review, [str(tasks), "--answers", str(tmp_path / "answers"),
                                      "--require-attention"], env=_env(server))
    assert res.exit_code == 0, res.output
    assert "0 approved, 0 rejected" in res.output


@pytest.mark.slow
def test_republish_creates_nothing(tmp_path, server):
    tasks = make_tasks_dir(tmp_path)
    assert _publish_cli(tasks, server).exit_code == 0
    first = {h["HITId"] for h in _server_hits(server)}
    res = _publish_cli(tasks, server)
    assert res.exit_code == 0, res.output
    assert "0 HITs created" in res.output
    assert {h["HITId"] for h in _server_hits(server)} == first


@pytest.mark.slow
def test_killed_publisher_rerun_creates_no_duplicates(tmp_path, server):
    """A publisher killed (SIGKILL) after the service created a HIT but before the ledger
    recorded it: a re-run recovers that HIT by its token and creates each HIT exactly once."""
    tasks = make_tasks_dir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **_env(server),
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get(
               "PYTHONPATH")])])}
    cmd = [sys.executable, str(Path(__file__).with_name("publish_then_hang.py")), "2",
           str(tasks), "--endpoint", "local", "--endpoint-url", server.url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=root)
    try:
        line = proc.stdout.readline()  # blocks until the 2nd HIT exists (or the child dies)
        assert line.strip() == "HIT_CREATED 2", line or proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    with Ledger(tasks / "ledger.sqlite") as ledger:
        states = [h.state for h in ledger.hits()]
    assert states == ["created", "pending"]  # killed between CreateHIT and the ledger update
    assert len(_server_hits(server)) == 2
    res = _publish_cli(tasks, server)
    assert res.exit_code == 0, res.output
    assert "1 recovered" in res.output
    hits = _server_hits(server)
    keys = [h["RequesterAnnotation"].rsplit(":", 1)[1] for h in hits]
    assert sorted(keys) == sorted(h[0] for h in FIXTURE_HITS)  # exactly one HIT per key
    with Ledger(tasks / "ledger.sqlite") as ledger:
        recs = ledger.hits()
    assert {r.hit_id for r in recs} == {h["HITId"] for h in hits}
    assert all(r.state == "created" for r in recs)


def _max_assignments(srv) -> list[int]:
    return sorted(h["MaxAssignments"] for h in _server_hits(srv))


@pytest.mark.slow
def test_build_assignments_reach_publish_and_the_cost_preview_is_committed(tmp_path, server):
    """`tasks build --assignments 5` is written to the manifest; publish without
    --assignments creates HITs with MaxAssignments 5 and commits exactly the previewed cost."""
    from helpers_viz import text_run

    from tasks.build import build_tasks

    probe, feats, src = text_run(tmp_path)
    built = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.0,
                        n_examples=5, fvis_steps=0, assignments=5, progress=False)
    assert {r["assignments"] for r in built.manifest} == {5}
    res = CliRunner().invoke(publish, [str(tmp_path / "tasks"), "--endpoint", "local",
                                       "--endpoint-url", server.url], env=_env(server))
    assert res.exit_code == 0, res.output
    assert "overrides" not in res.output
    assert _max_assignments(server) == [5] * built.n_hits
    with Ledger(tmp_path / "tasks" / "ledger.sqlite") as ledger:
        assert {h.max_assignments for h in ledger.hits()} == {5}
        assert Decimal(ledger.spent_cents(f"local:{server.url}")) / 100 == built.cost.total
    assert f"committed ${built.cost.total:.2f}" in res.output


@pytest.mark.slow
def test_publish_assignments_option_overrides_the_manifest_and_says_so(tmp_path, server):
    tasks = make_tasks_dir(tmp_path, assignments=5)
    res = _publish_cli(tasks, server, "--assignments", "4")  # the last --assignments wins
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == ("assignments: 4 per HIT (--assignments overrides "
                                          "the manifest's 5)")
    assert _max_assignments(server) == [4] * len(FIXTURE_HITS)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        spent = Decimal(ledger.spent_cents(f"local:{server.url}")) / 100
    assert spent == estimate_cost(len(FIXTURE_HITS), 4, "0.05").total


def test_manifest_assignments_must_be_a_positive_integer(tmp_path):
    tasks = make_tasks_dir(tmp_path, assignments=0)
    with pytest.raises(PublishError, match=r"manifest\.jsonl:1: assignments 0 is not"):
        load_manifest(tasks)
    assert {r["assignments"] for r in load_manifest(make_tasks_dir(tmp_path / "old"))} == {
        DEFAULT_ASSIGNMENTS}


@pytest.mark.slow
def test_budget_cap_against_live_server(tmp_path, server):
    tasks = make_tasks_dir(tmp_path)
    res = _publish_cli(tasks, server, "--budget", "0.10")
    assert res.exit_code != 0
    assert "budget" in res.output and len(res.output.strip().splitlines()) == 1
    assert _server_hits(server) == []


@pytest.mark.slow
def test_library_publish_with_registered_asset_dir(tmp_path):
    """The server can serve tasks/assets/ itself (ASSET_DIRS); no upload needed."""
    tasks = make_tasks_dir(tmp_path)
    with live.start_server(tmp_path / "s.sqlite",
                           config={"ASSET_DIRS": {"run1": str(tasks / "assets")}}) as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        res = publish_batch(tasks, client, ep, PublishOptions(
            assignments=2, asset_base_url=f"{srv.url}/assets/run1/"))
        assert len(res.created) == len(FIXTURE_HITS)
        sim = simulate_crowd(srv.url, tasks, n_workers=2, spammer_share=0, seed=1,
                             concurrency=2, admin_auth=(srv.admin_user, srv.admin_password))
        assert sim.submitted == 2 * len(FIXTURE_HITS)
        out = collect_answers(tasks, tmp_path / "answers", client, ep)
        assert out.new_assignments == 2 * len(FIXTURE_HITS)
        r = review_assignments(tasks, tmp_path / "answers", client, ep,
                               ReviewRules(min_gold_accuracy=None), dry_run=True)
        assert len(r.decisions) == 2 * len(FIXTURE_HITS)
        assert all(d.action == "approve" for d in r.decisions)


@pytest.mark.parametrize(("args", "message"), [
    (["--endpoint", "staging"], "staging"),
    (["--endpoint", "local"], "--endpoint-url"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    tasks = make_tasks_dir(tmp_path)
    res = CliRunner().invoke(publish, [str(tasks), *args],
                             env={"SPARSE_PROBE_ACCESS_KEY_ID": "a",
                                  "SPARSE_PROBE_SECRET_ACCESS_KEY": "b"})
    assert res.exit_code != 0
    assert message in res.output


def test_cli_missing_manifest_and_bad_ledger(tmp_path):
    res = CliRunner().invoke(publish, [str(tmp_path / "nope"), "--endpoint", "sandbox"])
    assert res.exit_code != 0 and "manifest.jsonl" in res.output
    tasks = make_tasks_dir(tmp_path)
    (tasks / "ledger.sqlite").write_bytes(b"this is not sqlite" * 100)
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "local", "--endpoint-url",
                                       "http://127.0.0.1:9", "--asset-base-url", "http://x/"],
                             env={"SPARSE_PROBE_ACCESS_KEY_ID": "a",
                                  "SPARSE_PROBE_SECRET_ACCESS_KEY": "b"})
    assert res.exit_code != 0 and "ledger" in res.output
    assert (tasks / "ledger.sqlite").read_bytes() == b"this is not sqlite" * 100


@pytest.mark.slow
def test_missing_hit_page_is_reported(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    victim = FIXTURE_HITS[1][0]
    (tasks / "hits" / f"{victim}.html").unlink()
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "sandbox",
                                       "--asset-base-url", "https://x/"],
                             env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert res.exit_code != 0
    assert victim in res.output and "not found" in res.output
    assert not (tasks / "ledger.sqlite").exists()


# --------------------------------------------------------------------------- review rules
def _answers_frame(rows):
    from tasks.answers import answers_frame

    out = []
    for aid, worker, key, seconds, answers in rows:
        for q, a in answers.items():
            out.append({"hit_key": key, "hit_id": f"H-{key}", "assignment_id": aid,
                        "worker_id": worker, "question": q, "answer": a,
                        "submit_time": None, "work_seconds": seconds, "status": "Submitted",
                        "accept_time": None, "source": "sandbox"})
    return answers_frame(out)


def test_decide_gold_attention_time_and_bonus(tmp_path):
    from tasks.publish import load_manifest
    from tasks.review import decide

    tasks = make_tasks_dir(tmp_path)
    manifest = load_manifest(tasks)
    gold_key = next(h[0] for h in FIXTURE_HITS if h[4])
    other = FIXTURE_HITS[0][0]
    good = {"shared": "yes", "pattern": "background", "attention": "blue"}
    df = _answers_frame([
        ("A1", "W_good", gold_key, 60.0, good),
        ("A2", "W_good", other, 50.0, {"shared": "yes", "attention": "blue"}),
        ("A3", "W_bad", gold_key, 60.0, {**good, "shared": "no", "pattern": "mark"}),
        ("A4", "W_bad", other, 60.0, {"shared": "yes", "attention": "blue"}),
        ("A5", "W_half", gold_key, 60.0, {**good, "pattern": "object"}),
        ("A6", "W_fast", other, 2.0, {"shared": "yes", "attention": "blue"}),
        ("A7", "W_inattentive", other, 60.0, {"shared": "yes", "attention": "red"}),
    ])
    rules = ReviewRules(min_gold_accuracy=0.7, require_attention=True, min_seconds=10,
                        bonus="0.05", bonus_min_gold_accuracy=1.0)
    got = {d.assignment_id: d for d in decide(df, manifest, rules)}
    assert {a: d.action for a, d in got.items()} == {
        "A1": "approve", "A2": "approve", "A3": "reject", "A4": "reject", "A5": "reject",
        "A6": "reject", "A7": "reject"}
    assert got["A1"].bonus == "0.05" and got["A2"].bonus == "0.05"
    assert got["A6"].bonus is None
    # one gold HIT, graded as a whole (sparse_probe.quality): the pattern is wrong, so 0%
    assert "known answers 0% is below 70%" in got["A5"].feedback
    assert got["A5"].gold_accuracy == 0.0 and got["A1"].gold_accuracy == 1.0
    assert "faster" in got["A6"].feedback and "attention" in got["A7"].feedback
    assert all(d.feedback.startswith("Rejected: ") for d in got.values() if d.action == "reject")


@pytest.mark.slow
def test_review_actions_are_recorded_and_not_repeated(tmp_path):
    import boto3
    from botocore.stub import ANY, Stubber

    from tasks.answers import write_answers
    from tasks.ledger import request_token

    tasks = make_tasks_dir(tmp_path)
    gold_key = next(h[0] for h in FIXTURE_HITS if h[4])
    good = {"shared": "yes", "pattern": "background", "attention": "blue"}
    df = _answers_frame([("A1", "W1", gold_key, 60.0, good),
                         ("A2", "W2", gold_key, 60.0, {**good, "attention": "green"})])
    write_answers(df, tmp_path / "answers")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        ledger.mark_pending("sandbox", gold_key, batch_id="b", token="t", reward="0.10",
                            max_assignments=3, cost_cents=36)
        ledger.mark_created("sandbox", gold_key, hit_id=f"H-{gold_key}", hit_type_id="T")
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                   region_name="us-east-1").client(
        "mturk", endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com")
    ep = resolve_endpoint("sandbox")
    rules = ReviewRules(require_attention=True, bonus="0.25", bonus_min_gold_accuracy=0.5)
    with Stubber(client) as stub:
        stub.add_response("approve_assignment", {}, {"AssignmentId": "A1",
                                                     "RequesterFeedback": ANY})
        stub.add_response("send_bonus", {}, {
            "WorkerId": "W1", "BonusAmount": "0.25", "AssignmentId": "A1", "Reason": ANY,
            "UniqueRequestToken": request_token("bonus", "sandbox", "A1")})
        stub.add_response("reject_assignment", {}, {"AssignmentId": "A2",
                                                    "RequesterFeedback": ANY})
        res = review_assignments(tasks, tmp_path / "answers", client, ep, rules,
                                 sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert (res.approved, res.rejected, res.bonuses) == (1, 1, 1)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        # reward+fee of the HIT plus bonus 0.25 + 20% fee
        assert ledger.spent_cents("sandbox") == 36 + 30
    statuses = read_answers(tmp_path / "answers").groupby("assignment_id")["status"].first()
    assert statuses.to_dict() == {"A1": "Approved", "A2": "Rejected"}
    # A second run sends nothing (the Stubber would fail on any call).
    with Stubber(client) as stub:
        res2 = review_assignments(tasks, tmp_path / "answers", client, ep, rules)
    assert (res2.approved, res2.rejected, res2.bonuses) == (0, 0, 0)
