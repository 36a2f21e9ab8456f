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
                        n_examples=5, fvis_steps=0, assignments=5, reward="0.3",
                        progress=False)
    assert {r["assignments"] for r in built.manifest} == {5}
    assert {r["reward"] for r in built.manifest} == {"0.30"}
    res = CliRunner().invoke(publish, [str(tmp_path / "tasks"), "--endpoint", "local",
                                       "--endpoint-url", server.url], env=_env(server))
    assert res.exit_code == 0, res.output
    assert "overrides" not in res.output
    assert _max_assignments(server) == [5] * built.n_hits
    assert {h["Reward"] for h in _server_hits(server)} == {"0.30"}
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


def test_publish_takes_the_reward_tasks_build_wrote(tmp_path, server):
    """No --reward: every HIT pays the manifest's reward; --reward overrides it and says so;
    a manifest without rewards (older builds) pays the build's default 0.10."""
    client = server.boto3_client()
    tasks = make_tasks_dir(tmp_path / "a", reward="0.25")
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "local", "--endpoint-url",
                                       server.url], env=_env(server))
    assert res.exit_code == 0, res.output
    assert "overrides" not in res.output
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert {client.get_hit(HITId=h.hit_id)["HIT"]["Reward"] for h in ledger.hits()} == {
            "0.25"}
        spent = Decimal(ledger.spent_cents(f"local:{server.url}")) / 100
    assert spent == estimate_cost(len(FIXTURE_HITS), DEFAULT_ASSIGNMENTS, "0.25").total

    tasks = make_tasks_dir(tmp_path / "b", reward="0.25")
    res = _publish_cli(tasks, server)  # --reward 0.05
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == ("reward: $0.05 per assignment (--reward overrides "
                                          "the manifest's $0.25)")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert {client.get_hit(HITId=h.hit_id)["HIT"]["Reward"] for h in ledger.hits()} == {
            "0.05"}

    tasks = make_tasks_dir(tmp_path / "c")  # no reward field
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "local", "--endpoint-url",
                                       server.url], env=_env(server))
    assert res.exit_code == 0, res.output
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert {client.get_hit(HITId=h.hit_id)["HIT"]["Reward"] for h in ledger.hits()} == {
            "0.10"}


@pytest.mark.parametrize(("reward", "message"), [
    ("mixed", "HITs have different rewards (0.10, 0.20); pass --reward"),
    ("ten cents", "reward 'ten cents' is not dollars like '0.10'"),
])
def test_bad_or_mixed_manifest_rewards_are_one_line_errors(tmp_path, reward, message):
    if reward == "mixed":
        reward = ["0.1"] * (len(FIXTURE_HITS) - 1) + ["0.20"]
    tasks = make_tasks_dir(tmp_path, reward=reward)
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "local", "--endpoint-url",
                                       "http://127.0.0.1:9"], env={})
    assert res.exit_code != 0
    assert message in res.output and str(tasks / "manifest.jsonl") in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tasks / "ledger.sqlite").exists()


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


# --------------------------------------------------------------------------- idempotency and
# money at their boundaries, against botocore's Stubber: an unexpected call fails the test.
def _stub_client():
    import boto3

    from tasks.client import ENDPOINTS

    session = boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="s",
                                    region_name="us-east-1")
    return session.client("mturk", endpoint_url=ENDPOINTS["sandbox"])


def _keys(tasks: Path) -> list[str]:
    return [r["hit_key"] for r in load_manifest(tasks)]


_ASSETS = "https://cdn.example.org/b/"


def test_hit_type_is_created_once_and_reused_by_later_runs(tmp_path):
    from botocore.stub import ANY, Stubber

    tasks = make_tasks_dir(tmp_path)
    keys = _keys(tasks)
    client = _stub_client()
    opts = PublishOptions(assignments=3, asset_base_url=_ASSETS)
    sandbox = resolve_endpoint("sandbox")
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT1"}, None)
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "H0"}}, None)
        res = publish_batch(tasks, client, sandbox, opts, hit_keys=keys[:1], sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert (res.hit_type_id, res.created) == ("HT1", keys[:1])
    with Stubber(client) as stub:  # no CreateHITType queued: a second one would fail
        for i in range(1, len(keys)):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"H{i}"}},
                              {"HITTypeId": "HT1", "MaxAssignments": 3,
                               "LifetimeInSeconds": ANY, "Question": ANY,
                               "RequesterAnnotation": ANY, "UniqueRequestToken": ANY})
        res = publish_batch(tasks, client, sandbox, opts, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert res.hit_type_id == "HT1"
    assert res.created == keys[1:] and res.skipped == keys[:1] and res.recovered == []
    # Other HIT properties are another HIT type.
    extra = make_tasks_dir(tmp_path / "more")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.hit_type("sandbox", "nope") is None
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT2"}, None)
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "X0"}}, None)
        res = publish_batch(extra, client, sandbox, PublishOptions(
            assignments=3, reward="0.20", asset_base_url=_ASSETS), hit_keys=_keys(extra)[:1],
            sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert res.hit_type_id == "HT2"


def test_pending_hit_is_retried_with_its_recorded_token_and_assignments(tmp_path):
    """A pending row is re-sent exactly as first written down (token, assignments), even when
    this run's options say otherwise, so the service can refuse a duplicate."""
    from botocore.stub import ANY, Stubber

    from tasks.ledger import request_token

    tasks = make_tasks_dir(tmp_path)
    key = _keys(tasks)[0]
    with Ledger(tasks / "ledger.sqlite") as ledger:
        ledger.set_meta_default("batch_id", "B1")
        ledger.mark_pending("sandbox", key, batch_id="B1", token="TOKEN-FROM-RUN-1",
                            reward="0.10", max_assignments=5, cost_cents=60)
    client = _stub_client()
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "H1"}}, {
            "HITTypeId": "HT", "MaxAssignments": 5, "LifetimeInSeconds": ANY,
            "Question": ANY, "RequesterAnnotation": f"sparse-probe:B1:{key}",
            "UniqueRequestToken": "TOKEN-FROM-RUN-1"})
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"),
                            PublishOptions(assignments=2, asset_base_url=_ASSETS),
                            hit_keys=[key], sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert res.recovered == [key] and res.created == []
    assert res.new_cost == 0  # already committed when first written down
    assert res.spent == Decimal("0.60")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        rec = ledger.hit("sandbox", key)
    assert (rec.state, rec.hit_id, rec.hit_type_id, rec.token) == (
        "created", "H1", "HT", "TOKEN-FROM-RUN-1")
    assert request_token("B1", "sandbox", key) != "TOKEN-FROM-RUN-1"


def test_failed_create_leaves_the_hit_pending_for_the_next_run(tmp_path):
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    keys = _keys(tasks)[:2]
    client = _stub_client()
    opts = PublishOptions(assignments=3, asset_base_url=_ASSETS)
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "H0"}}, None)
        stub.add_client_error("create_hit_with_hit_type", "RequestError",
                              "AWS.MechanicalTurk.InsufficientFunds", 400)
        with pytest.raises(Exception, match="InsufficientFunds"):
            publish_batch(tasks, client, resolve_endpoint("sandbox"), opts, hit_keys=keys,
                          sleep=lambda s: None)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert [(h.hit_key, h.state, h.hit_id) for h in ledger.hits("sandbox")] == [
            (keys[0], "created", "H0"), (keys[1], "pending", None)]
        token = ledger.hit("sandbox", keys[1]).token
    with Stubber(client) as stub:
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "H1"}}, None)
        seen = []
        client.meta.events.register("before-parameter-build.mturk.CreateHITWithHITType",
                                    lambda params, **kw: seen.append(params["UniqueRequestToken"]))
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"), opts, hit_keys=keys,
                            sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert seen == [token]
    assert res.recovered == [keys[1]] and res.skipped == [keys[0]] and res.created == []


def test_service_says_exists_without_an_id_then_the_hit_is_found_by_annotation(tmp_path):
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    key = _keys(tasks)[0]
    client = _stub_client()
    with Ledger(tasks / "ledger.sqlite") as ledger:
        batch = ledger.set_meta_default("batch_id", "B9")
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_client_error("create_hit_with_hit_type", "RequestError",
                              "AWS.MechanicalTurk.HitAlreadyExists: the token was used", 400)
        stub.add_response("list_hits", {"HITs": [
            {"HITId": "OTHERHIT000000000000", "RequesterAnnotation": "sparse-probe:B9:zzz"},
            {"HITId": "FOUNDHIT000000000000", "RequesterAnnotation": f"sparse-probe:{batch}:{key}"},
        ]}, None)
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"),
                            PublishOptions(asset_base_url=_ASSETS), hit_keys=[key],
                            sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert res.recovered == [key]
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.hit("sandbox", key).hit_id == "FOUNDHIT000000000000"
    # Not found anywhere: a clear error, and the row stays pending.
    tasks2 = make_tasks_dir(tmp_path / "two")
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_client_error("create_hit_with_hit_type", "RequestError",
                              "AWS.MechanicalTurk.HitAlreadyExists", 400)
        stub.add_response("list_hits", {"HITs": []}, None)
        with pytest.raises(PublishError, match="exists but gave no HIT id"):
            publish_batch(tasks2, client, resolve_endpoint("sandbox"),
                          PublishOptions(asset_base_url=_ASSETS), hit_keys=[key],
                          sleep=lambda s: None)
    with Ledger(tasks2 / "ledger.sqlite") as ledger:
        assert ledger.hit("sandbox", key).state == "pending"


def test_budget_exactly_covering_the_cost_is_enough(tmp_path):
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    keys = _keys(tasks)
    total = estimate_cost(len(keys), 3, "0.10").total
    client = _stub_client()
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        for i in range(len(keys)):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"H{i}"}}, None)
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"), PublishOptions(
            assignments=3, budget=total, asset_base_url=_ASSETS), sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert res.new_cost == total and res.spent == total
    # Everything is published: a re-run with no budget left creates nothing and says so.
    with Stubber(client) as stub:
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"), PublishOptions(
            assignments=3, budget=total, asset_base_url=_ASSETS), sleep=lambda s: None)
    assert res.created == [] and res.skipped == keys and res.spent == total
    assert "0 HITs created, 0 recovered, 4 already published" in res.summary()
    assert f"committed ${total:.2f}" in res.summary()


def test_assignments_below_one_are_refused_before_anything_is_sent(tmp_path):
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    client = _stub_client()
    for bad in (0, -1):
        with Stubber(client), pytest.raises(PublishError, match="--assignments must be >= 1"):
            publish_batch(tasks, client, resolve_endpoint("sandbox"),
                          PublishOptions(assignments=bad, asset_base_url=_ASSETS))
    assert not (tasks / "ledger.sqlite").exists() or not Ledger(tasks / "ledger.sqlite").hits()


def test_retries_back_off_exponentially_then_give_up(caplog):
    from botocore.exceptions import ClientError, EndpointConnectionError

    from tasks.publish import call_with_retry

    calls = []

    def flaky(**kw):
        calls.append(kw)
        raise ClientError({"Error": {"Code": ""}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                          "CreateHIT")

    flaky.__name__ = "flaky"
    delays: list[float] = []
    with caplog.at_level("WARNING", logger="tasks.publish"), pytest.raises(ClientError):
        call_with_retry(flaky, attempts=4, base_delay=1.0, sleep=delays.append, x=1)
    assert len(calls) == 4 and calls[0] == {"x": 1}
    # Without an error code the log names the HTTP status.
    assert [r.getMessage() for r in caplog.records] == [
        f"500 (flaky); retry {i}/3" for i in (1, 2, 3)]
    assert len(delays) == 3  # no sleep after the last attempt
    for i, d in enumerate(delays):
        assert 0.5 * 2**i <= d <= 2**i

    def status_499(**kw):
        calls.append(kw)
        raise ClientError({"Error": {"Code": "Bad"}, "ResponseMetadata": {"HTTPStatusCode": 499}},
                          "X")

    calls.clear()
    with pytest.raises(ClientError):
        call_with_retry(status_499, sleep=delays.append)
    assert len(calls) == 1  # a 4xx that is not throttling is final

    def offline(**kw):
        calls.append(kw)
        if len(calls) < 3:
            raise EndpointConnectionError(endpoint_url="https://x")
        return "ok"

    calls.clear()
    assert call_with_retry(offline, attempts=3, sleep=lambda s: None) == "ok"
    calls.clear()
    with pytest.raises(EndpointConnectionError):
        call_with_retry(offline, attempts=2, sleep=lambda s: None)


def _recover_one(tmp_path, error: dict, *, token: str | None = None, pages=None):
    """Publish one HIT whose CreateHIT fails with ``error``; ListHITs answers ``pages``."""
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    key = _keys(tasks)[0]
    with Ledger(tasks / "ledger.sqlite") as ledger:
        batch = ledger.set_meta_default("batch_id", "B7")
        if token is not None:
            ledger.mark_pending("sandbox", key, batch_id=batch, token=token, reward="0.10",
                                max_assignments=3, cost_cents=36)
    client = _stub_client()
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_client_error("create_hit_with_hit_type", **error)
        for i, hits in enumerate(pages or []):
            page = {"NextToken": f"page{i + 1}"} if i < len(pages) - 1 else {}
            if hits is not None:
                page["HITs"] = [{"HITId": h, "RequesterAnnotation": f"sparse-probe:B7:{k}"}
                                for h, k in hits]
            stub.add_response("list_hits", page, {"MaxResults": 100, **(
                {"NextToken": f"page{i}"} if i else {})})
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"),
                            PublishOptions(asset_base_url=_ASSETS), hit_keys=[key],
                            sleep=lambda s: None)
        stub.assert_no_pending_responses()
    with Ledger(tasks / "ledger.sqlite") as ledger:
        return res, key, ledger.hit("sandbox", key)


@pytest.mark.parametrize("error", [
    {"service_error_code": "HitAlreadyExists", "service_message": "duplicate request"},
    {"service_error_code": "RequestError", "service_message": "The HIT already exists."},
    {"service_error_code": "RequestError", "service_message": "AWS.MechanicalTurk.HitAlreadyExists"},
    {"service_error_code": "RequestError", "service_message": "duplicate",
     "modeled_fields": {"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"}},
], ids=["code", "message", "turk-code-in-message", "turk-error-code"])
def test_already_exists_is_recognised_from_code_message_or_turk_code(tmp_path, error):
    key = _keys(make_tasks_dir(tmp_path / "probe"))[0]  # the fixture's first HIT key
    res, _, rec = _recover_one(tmp_path, {"http_status_code": 400, **error}, pages=[
        None, [("OTHER0000000000000000", "zzz"), ("FOUND0000000000000000", key)]])
    assert res.recovered == [key] and rec.hit_id == "FOUND0000000000000000"


def test_other_create_errors_are_not_taken_for_an_existing_hit(tmp_path):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ParameterValidationError"):
        _recover_one(tmp_path, {"service_error_code": "RequestError",
                                "service_message": "ParameterValidationError: bad Question",
                                "http_status_code": 400})


def test_hit_id_in_the_message_is_not_confused_with_the_request_token(tmp_path):
    token = "TOKEN1234567890ABCDEFGHIJ"  # a pending row from an older run, upper case
    hit = "3AQN9REUTFGXCRWFKSDGEJMOZTAKBY"
    for message in (f"Token {token} was already used by {hit}; HIT already exists",
                    f"HIT already exists: {token.lower()} {hit}",
                    f"HIT already exists (HIT Id: {hit}, token {token})"):
        _, _, rec = _recover_one(tmp_path / str(len(message)), {
            "service_error_code": "RequestError", "service_message": message,
            "http_status_code": 400}, token=token)
        assert rec.hit_id == hit, message
    # A token the service echoes in upper case is still the token, not a HIT id.
    lower = token.lower()
    _, _, rec = _recover_one(tmp_path / "echo", {
        "service_error_code": "RequestError", "http_status_code": 400,
        "service_message": f"HIT already exists: {lower.upper()} {hit}"}, token=lower)
    assert rec.hit_id == hit


def test_a_short_hit_id_named_in_the_message_is_used(tmp_path):
    _, _, rec = _recover_one(tmp_path, {
        "service_error_code": "RequestError", "http_status_code": 400,
        "service_message": "HIT already exists with HITId: hit-42xyz"})
    assert rec.hit_id == "hit-42xyz" and rec.state == "created"


def test_default_retry_policy_is_six_attempts_from_half_a_second(caplog):
    from botocore.exceptions import ClientError

    from tasks.publish import call_with_retry

    calls = []

    def throttled(**kw):
        calls.append(kw)
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateHIT")

    delays: list[float] = []
    with caplog.at_level("WARNING", logger="tasks.publish"), \
            pytest.raises(ClientError, match="slow down"):
        call_with_retry(throttled, sleep=delays.append)
    assert caplog.records[0].getMessage() == "ThrottlingException (throttled); retry 1/5"
    assert len(calls) == 6 and len(delays) == 5
    for i, d in enumerate(delays):
        assert 0.25 * 2**i <= d <= 0.5 * 2**i


def test_batch_id_names_the_run_and_tells_directories_and_manifests_apart(tmp_path):
    import re
    import shutil

    from tasks.publish import batch_id_for

    a = make_tasks_dir(tmp_path / "my run: #1")
    bid = batch_id_for(a)
    assert re.fullmatch(r"my-run-1-[0-9a-f]{10}", bid), bid
    assert batch_id_for(a) == bid  # stable across runs
    b = tmp_path / "copy" / "tasks"
    shutil.copytree(a, b)  # the same manifest elsewhere is another batch
    assert batch_id_for(b) != bid and batch_id_for(b).startswith("copy-")
    manifest = a / "manifest.jsonl"
    manifest.write_text(manifest.read_text() + "\n", encoding="utf-8")
    assert batch_id_for(a) != bid  # another manifest is another batch
    long = make_tasks_dir(tmp_path / ("x" * 60))
    assert re.fullmatch(r"x{40}-[0-9a-f]{10}", batch_id_for(long))
    odd = make_tasks_dir(tmp_path / "%%%")
    assert re.fullmatch(r"run-[0-9a-f]{10}", batch_id_for(odd))


def test_one_assignment_is_allowed_and_each_endpoint_is_published_on_its_own(tmp_path):
    from botocore.stub import ANY, Stubber

    from tasks.client import ENDPOINTS

    tasks = make_tasks_dir(tmp_path)
    keys = _keys(tasks)
    client = _stub_client()
    opts = PublishOptions(assignments=1, asset_base_url=_ASSETS)  # the boundary: 1 is valid
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        for i in range(len(keys)):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"S{i}"}}, {
                "HITTypeId": "HT", "MaxAssignments": 1, "LifetimeInSeconds": ANY,
                "Question": ANY, "RequesterAnnotation": ANY, "UniqueRequestToken": ANY})
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"), opts,
                            sleep=lambda s: None)
        stub.assert_no_pending_responses()
    with Ledger(tasks / "ledger.sqlite") as ledger:
        batch = ledger.get_meta("batch_id")
    assert (res.endpoint, res.batch_id, res.created) == ("sandbox", batch, keys)
    # The sandbox's HITs say nothing about production: all are created there too.
    import boto3

    prod = boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="s",
                                 region_name="us-east-1").client(
        "mturk", endpoint_url=ENDPOINTS["production"])
    with Stubber(prod) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HTP"}, None)
        for i in range(len(keys)):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"P{i}"}}, None)
        res = publish_batch(tasks, prod, resolve_endpoint("production"), opts,
                            confirm_production=True, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert (res.endpoint, res.created, res.skipped) == ("production", keys, [])
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert [h.hit_id for h in ledger.hits("sandbox")] == [f"S{i}" for i in range(len(keys))]
        assert [h.hit_id for h in ledger.hits("production")] == [
            f"P{i}" for i in range(len(keys))]


def test_refusals_say_exactly_what_to_do(tmp_path):
    from botocore.stub import Stubber

    tasks = make_tasks_dir(tmp_path)
    client = _stub_client()
    with Stubber(client), pytest.raises(
            PublishError, match=r"^endpoint production spends real money: pass --yes to confirm$"):
        publish_batch(tasks, client, resolve_endpoint("production"), PublishOptions())
    with Stubber(client), pytest.raises(PublishError, match=r"^--assignments must be >= 1$"):
        publish_batch(tasks, client, resolve_endpoint("sandbox"), PublishOptions(assignments=0))
    with Stubber(client), pytest.raises(PublishError, match=(
            r"^HIT pages refer to \.\./assets/: pass --asset-base-url \(where tasks/assets/ is "
            r"served; HTTPS for MTurk\)$")):
        publish_batch(tasks, client, resolve_endpoint("sandbox"), PublishOptions())
