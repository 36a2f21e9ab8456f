"""Simulated workers: answers from the evidence, through the real worker UI over HTTP."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from click.testing import CliRunner
from helpers_publish import (
    ATTENTION,
    FIXTURE_HITS,
    PATTERNS,
    hit_html,
    make_tasks_dir,
    truth_to_answer,
)

from tasks.answers import read_answers
from tasks.client import make_client, resolve_endpoint
from tasks.collect import collect_answers
from tasks.publish import PublishOptions, publish_batch
from tasks.simulate import (
    WorkerProfile,
    choose_answers,
    evidence_answer,
    parse_hit_form,
    simulate_crowd,
)
from tasks.simulate_cli import simulate


@pytest.mark.parametrize(("key", "kind", "truth", "evidence", "gold"), FIXTURE_HITS)
def test_evidence_answer_matches_truth(key, kind, truth, evidence, gold):
    shared, pattern, summary = evidence_answer(evidence, kind)
    assert (shared, pattern) == truth_to_answer(truth)
    assert summary


def test_evidence_without_a_clear_majority_is_no_pattern():
    ev = {"object": 0.3, "cues": {"watermark": 0.28}, "background": 0.42}
    assert evidence_answer(ev)[:2] == ("no", "other")
    ev = {"object": 0.36, "cues": {"texture": 0.33}, "background": 0.31}
    assert evidence_answer(ev)[:2] == ("no", "other")


def test_parse_hit_form_reads_fields_and_options():
    form = parse_hit_form(hit_html("k1", "text", ["a.png"]))
    assert form.action == "/mturk/externalSubmit"
    assert form.hidden == {"assignmentId": "", "hit_key": "k1"}
    assert form.choices["shared"] == ["yes", "no", "unsure"]
    assert form.choices["pattern"] == PATTERNS["text"]
    assert form.choices["confidence"] == ["1", "2", "3", "4", "5"]
    assert form.choices["attention"] == ["red", "blue", "green"]
    assert form.text_fields == ["description"]


def test_spammer_styles():
    form = parse_hit_form(hit_html("k1", "image", ["a.png"]))
    row = {"kind": "image", "evidence": FIXTURE_HITS[1][3], "attention": ATTENTION}
    const = WorkerProfile("S", "spammer", 0.0, "constant")
    rng = random.Random(0)
    answers = [choose_answers(form, row, const, rng) for _ in range(5)]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["shared"] == "yes" and answers[0]["pattern"] == "object"
    rand = WorkerProfile("R", "spammer", 0.0, "random")
    seen = {choose_answers(form, row, rand, rng)["pattern"] for _ in range(40)}
    assert seen == set(PATTERNS["image"])


@pytest.mark.slow
def test_crowd_majority_recovers_truth_and_respects_max_assignments(tmp_path):
    live = pytest.importorskip("tasks.server.live")
    tasks = make_tasks_dir(tmp_path)
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        publish_batch(tasks, client, ep, PublishOptions(assignments=5),
                      admin_auth=(srv.admin_user, srv.admin_password))
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({"access_key_id": srv.access_key_id,
                                     "secret_access_key": srv.secret_access_key,
                                     "admin_user": srv.admin_user,
                                     "admin_password": srv.admin_password}))
        res = CliRunner().invoke(simulate, [
            "--url", srv.url, "--tasks", str(tasks), "--workers", "8", "--spammers", "0.25",
            "--noisy", "0", "--seed", "7", "--concurrency", "1", "--credentials", str(creds)])
        assert res.exit_code == 0, res.output
        kinds = dict(line.split("\t")[:2] for line in res.output.splitlines() if "\t" in line)
        assert Counter(kinds.values()) == {"diligent": 6, "spammer": 2}
        for page in client.get_paginator("list_hits").paginate():
            for hit in page["HITs"]:
                got = client.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
                assert len(got) == hit["MaxAssignments"] == 5
                assert len({a["WorkerId"] for a in got}) == 5
        collect_answers(tasks, tmp_path / "answers", client, ep)
    df = read_answers(tmp_path / "answers")
    assert len(df) == 5 * len(FIXTURE_HITS) * 5
    spammers = {w for w, k in kinds.items() if k == "spammer"}
    assert spammers & set(df["worker_id"])  # spammers did submit work
    diligent = df[df["worker_id"].map(kinds) == "diligent"]
    for key, _kind, truth, _ev, _gold in FIXTURE_HITS:
        rows = diligent[diligent["hit_key"] == key]
        votes = {q: Counter(rows.loc[rows["question"] == q, "answer"]).most_common(1)[0][0]
                 for q in ("shared", "pattern")}
        assert (votes["shared"], votes["pattern"]) == truth_to_answer(truth), key
    att = diligent[diligent["question"] == ATTENTION["field"]]["answer"]
    assert (att == ATTENTION["expected"]).mean() > 0.9


@pytest.mark.slow
def test_concurrent_workers_never_exceed_max_assignments(tmp_path):
    live = pytest.importorskip("tasks.server.live")
    tasks = make_tasks_dir(tmp_path, FIXTURE_HITS[:1])
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        publish_batch(tasks, client, ep, PublishOptions(assignments=2),
                      admin_auth=(srv.admin_user, srv.admin_password))
        result = simulate_crowd(srv.url, tasks, n_workers=8, spammer_share=0.5, seed=0,
                                concurrency=8, admin_auth=(srv.admin_user, srv.admin_password))
        hit_id = client.list_hits()["HITs"][0]["HITId"]
        got = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert result.submitted == len(got) == 2
    assert sum(result.per_worker.values()) == 2


def test_simulate_cli_needs_admin_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSE_PROBE_ADMIN_USER", raising=False)
    monkeypatch.delenv("SPARSE_PROBE_ADMIN_PASSWORD", raising=False)
    tasks = make_tasks_dir(tmp_path)
    res = CliRunner().invoke(simulate, ["--url", "http://127.0.0.1:9", "--tasks", str(tasks)])
    assert res.exit_code != 0 and "admin credentials" in res.output


def _blind_hits():
    """The fixture HITs with the evidence of the last one removed (data without masks)."""
    return [*FIXTURE_HITS[:-1], (*FIXTURE_HITS[-1][:3], None, FIXTURE_HITS[-1][4])]


def test_simulate_refuses_hits_without_evidence(tmp_path, monkeypatch):
    from tasks.simulate import BlindCrowdError

    monkeypatch.delenv("SPARSE_PROBE_ADMIN_USER", raising=False)
    tasks = make_tasks_dir(tmp_path, _blind_hits())
    # before any credentials or server: one line that says why and what to do
    res = CliRunner().invoke(simulate, ["--url", "http://127.0.0.1:9", "--tasks", str(tasks)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "1 HITs" in lines[0] and "no ground-truth evidence" in lines[0]
    assert "--allow-blind" in lines[0] and FIXTURE_HITS[-1][0] in lines[0]
    with pytest.raises(BlindCrowdError, match=r"1 of 4 HITs .* no ground-truth evidence"):
        simulate_crowd("http://127.0.0.1:9", tasks, admin_auth=("a", "b"))
    assert not (tasks / "simulation.json").exists()


@pytest.mark.slow
def test_allow_blind_labels_every_answer_as_a_blind_simulation(tmp_path):
    live = pytest.importorskip("tasks.server.live")
    tasks = make_tasks_dir(tmp_path, _blind_hits())
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        publish_batch(tasks, client, ep, PublishOptions(assignments=2),
                      admin_auth=(srv.admin_user, srv.admin_password))
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({"access_key_id": srv.access_key_id,
                                     "secret_access_key": srv.secret_access_key,
                                     "admin_user": srv.admin_user,
                                     "admin_password": srv.admin_password}))
        res = CliRunner().invoke(simulate, [
            "--url", srv.url, "--tasks", str(tasks), "--workers", "3", "--spammers", "0",
            "--concurrency", "1", "--credentials", str(creds), "--allow-blind"])
        assert res.exit_code == 0, res.output
        assert "BLIND: 1 HITs have no ground-truth evidence" in res.output
        assert "simulated-blind" in res.output
        collect_answers(tasks, tmp_path / "answers", client, ep)
    record = json.loads((tasks / "simulation.json").read_text())
    assert record["source"] == "simulated-blind" and record["blind_hits"] == [FIXTURE_HITS[-1][0]]
    df = read_answers(tmp_path / "answers")
    assert len(df) and df["worker_id"].str.startswith("SIMBLIND").all()
    # the blind HIT got guesses: "unsure" where the schema offers it, never a read of evidence
    blind = df[(df["hit_key"] == FIXTURE_HITS[-1][0]) & (df["question"] == "shared")]
    assert len(blind) == 2 and set(blind["answer"]) <= {"unsure", "no"}


@pytest.mark.slow
def test_simulated_workers_with_evidence_say_so(tmp_path):
    live = pytest.importorskip("tasks.server.live")
    tasks = make_tasks_dir(tmp_path, FIXTURE_HITS[:1])
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        publish_batch(tasks, client, ep, PublishOptions(assignments=1),
                      admin_auth=(srv.admin_user, srv.admin_password))
        result = simulate_crowd(srv.url, tasks, n_workers=1, spammer_share=0, seed=0,
                                concurrency=1, admin_auth=(srv.admin_user, srv.admin_password))
    assert result.source == "simulated" and result.submitted == 1
    assert "read each HIT's ground-truth evidence" in result.summary()
    assert json.loads((tasks / "simulation.json").read_text())["source"] == "simulated"
