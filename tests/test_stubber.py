"""The live-MTurk path, checked at its true edge with botocore's Stubber (no AWS account).

These tests pin the exact requests the publisher sends to the sandbox/production endpoints,
the budget cap, production's explicit confirmation, and retries of throttling.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree as ET

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from helpers_publish import make_tasks_dir

from tasks.client import ENDPOINTS, make_client, resolve_endpoint
from tasks.cost import estimate_cost
from tasks.ledger import Ledger, request_token
from tasks.publish import (
    BudgetExceededError,
    PublishError,
    PublishOptions,
    call_with_retry,
    parse_qualification,
    publish_batch,
)
from tasks.question_xml import HTML_QUESTION_NS


def _client(endpoint: str = "sandbox"):
    session = boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="s",
                                    region_name="us-east-1")
    return session.client("mturk", endpoint_url=ENDPOINTS[endpoint])


def _no_sleep(_: float) -> None:
    pass


def _manifest_keys(tasks: Path) -> list[str]:
    return [json.loads(line)["hit_key"] for line in
            (tasks / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_make_client_points_at_sandbox_with_region(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = make_client(resolve_endpoint("sandbox"))
    assert client.meta.endpoint_url == "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
    assert client.meta.region_name == "us-east-1"
    prod = make_client(resolve_endpoint("production"))
    assert prod.meta.endpoint_url == "https://mturk-requester.us-east-1.amazonaws.com"


def test_unknown_endpoint_rejected():
    with pytest.raises(ValueError, match="expected one of local, sandbox, production"):
        resolve_endpoint("staging")


@pytest.mark.slow
def test_sandbox_requests_are_exact(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    keys = _manifest_keys(tasks)
    client = _client()
    quals = [parse_qualification("approval>=95", "sandbox"),
             parse_qualification("locale=US,CA", "sandbox")]
    opts = PublishOptions(reward="0.15", assignments=3, lifetime=3600, duration=600,
                          qualifications=quals, asset_base_url="https://cdn.example.org/b1/")
    endpoint = resolve_endpoint("sandbox")
    sent: list[dict] = []
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HTYPE1"}, {
            "AutoApprovalDelayInSeconds": 259200, "AssignmentDurationInSeconds": 600,
            "Reward": "0.15", "Title": ANY, "Keywords": ANY, "Description": ANY,
            "QualificationRequirements": [
                {"QualificationTypeId": "000000000000000000L0",
                 "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [95],
                 "ActionsGuarded": "Accept"},
                {"QualificationTypeId": "00000000000000000071", "Comparator": "In",
                 "LocaleValues": [{"Country": "US"}, {"Country": "CA"}],
                 "ActionsGuarded": "Accept"}]})
        for i, _key in enumerate(keys):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"HIT{i:027d}"}},
                              {"HITTypeId": "HTYPE1", "MaxAssignments": 3,
                               "LifetimeInSeconds": 3600, "Question": ANY,
                               "RequesterAnnotation": ANY, "UniqueRequestToken": ANY})
        client.meta.events.register(
            "before-parameter-build.mturk.CreateHITWithHITType",
            lambda params, **kw: sent.append(dict(params)))
        result = publish_batch(tasks, client, endpoint, opts, sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert result.created == keys
    assert client.meta.endpoint_url == "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
    with Ledger(tasks / "ledger.sqlite") as ledger:
        batch_id = ledger.get_meta("batch_id")
        recs = ledger.hits("sandbox")
    assert [r.state for r in recs] == ["created"] * len(keys)
    tokens = set()
    for body, key in zip(sent, keys, strict=True):
        token = body["UniqueRequestToken"]
        assert 1 <= len(token) <= 64 and token == request_token(batch_id, "sandbox", key)
        tokens.add(token)
        assert body["RequesterAnnotation"] == f"sparse-probe:{batch_id}:{key}"
        root = ET.fromstring(body["Question"])
        assert root.tag == f"{{{HTML_QUESTION_NS}}}HTMLQuestion"
        html = root.find(f"{{{HTML_QUESTION_NS}}}HTMLContent").text
        assert "../assets/" not in html
        assert f'src="https://cdn.example.org/b1/{key}-grid.png"' in html
        assert 'name="assignmentId"' in html and "/mturk/externalSubmit" in html
    assert len(tokens) == len(keys)
    # fee 20% of 0.15 = 0.03 per assignment -> 0.18 x 3 per HIT
    assert result.spent == Decimal("0.54") * len(keys)


def test_production_requires_confirmation(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    client = _client("production")
    with Stubber(client) as stub, pytest.raises(PublishError, match="--yes"):
        publish_batch(tasks, client, resolve_endpoint("production"),
                      PublishOptions(asset_base_url="https://x.example/"))
    stub.assert_no_pending_responses()
    assert not (tasks / "ledger.sqlite").exists()


def test_production_cli_refuses_without_yes(tmp_path, monkeypatch):
    from tasks.publish_cli import publish

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    tasks = make_tasks_dir(tmp_path)
    res = CliRunner().invoke(publish, [str(tasks), "--endpoint", "production",
                                       "--asset-base-url", "https://x.example/"])
    assert res.exit_code != 0
    assert "--yes" in res.output
    assert not (tasks / "ledger.sqlite").exists()


def test_budget_cap_refuses_before_creating_anything(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    n = len(_manifest_keys(tasks))
    total = estimate_cost(n, 3, "0.10").total
    client = _client()
    with Stubber(client) as stub, pytest.raises(BudgetExceededError, match="budget"):
        publish_batch(tasks, client, resolve_endpoint("sandbox"),
                      PublishOptions(reward="0.10", assignments=3, budget=total - Decimal("0.01"),
                                     asset_base_url="https://x.example/"))
    stub.assert_no_pending_responses()
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.hits() == []


@pytest.mark.slow
def test_budget_counts_what_the_ledger_already_spent(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    keys = _manifest_keys(tasks)
    per_hit = estimate_cost(1, 3, "0.10").total
    client = _client()
    opts = PublishOptions(reward="0.10", assignments=3, asset_base_url="https://x.example/",
                          budget=per_hit * len(keys))
    # First only two HITs (within budget), then the rest with a budget covering only one more.
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        for i in range(2):
            stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": f"H{i}"}}, None)
        publish_batch(tasks, client, resolve_endpoint("sandbox"), opts, hit_keys=keys[:2],
                      sleep=_no_sleep)
    opts.budget = per_hit * 3
    with Stubber(client) as stub, pytest.raises(BudgetExceededError, match="already committed"):
        publish_batch(tasks, client, resolve_endpoint("sandbox"), opts, sleep=_no_sleep)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert len(ledger.hits("sandbox")) == 2


@pytest.mark.slow
def test_throttling_is_retried(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    keys = _manifest_keys(tasks)[:1]
    client = _client()
    delays: list[float] = []
    tokens: list[str] = []
    client.meta.events.register(
        "before-parameter-build.mturk.CreateHITWithHITType",
        lambda params, **kw: tokens.append(params["UniqueRequestToken"]))
    with Stubber(client) as stub:
        stub.add_client_error("create_hit_type", "ThrottlingException", "Rate exceeded", 400)
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_client_error("create_hit_with_hit_type", "ServiceUnavailable", "busy", 503)
        stub.add_client_error("create_hit_with_hit_type", "ThrottlingException", "slow", 400)
        stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": "H1"}}, None)
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"),
                            PublishOptions(asset_base_url="https://x.example/"),
                            hit_keys=keys, sleep=delays.append)
        stub.assert_no_pending_responses()
    assert res.created == keys
    assert len(delays) == 3
    assert delays[2] >= delays[1]  # exponential: base * 2**i * jitter in [0.5, 1]
    assert len(set(tokens)) == 1 and len(tokens) == 3  # same token on every retry


@pytest.mark.slow
def test_non_retryable_error_propagates():
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("get_account_balance", "RequestError", "bad", 400)
        with pytest.raises(client.exceptions.RequestError):
            call_with_retry(client.get_account_balance, sleep=_no_sleep)
        stub.assert_no_pending_responses()


@pytest.mark.slow
def test_pending_hit_recovered_from_hit_already_exists(tmp_path):
    """A crash after CreateHIT left a pending row; the retry's HitAlreadyExists gives the id."""
    tasks = make_tasks_dir(tmp_path)
    keys = _manifest_keys(tasks)[:1]
    client = _client()
    opts = PublishOptions(asset_base_url="https://x.example/")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        from tasks.publish import batch_id_for

        batch_id = ledger.set_meta_default("batch_id", batch_id_for(tasks))
        token = request_token(batch_id, "sandbox", keys[0])
        ledger.mark_pending("sandbox", keys[0], batch_id=batch_id, token=token, reward="0.10",
                            max_assignments=3, cost_cents=36)
    existing = "3AQN9REUTFGXCRWFKSDGEJMOZTAKBY"
    with Stubber(client) as stub:
        stub.add_response("create_hit_type", {"HITTypeId": "HT"}, None)
        stub.add_client_error(
            "create_hit_with_hit_type", "RequestError",
            f"AWS.MechanicalTurk.HitAlreadyExists: There is already a HIT with this unique "
            f"request token. HITId: {existing}", 400,
            expected_params={"HITTypeId": "HT", "MaxAssignments": 3, "LifetimeInSeconds": ANY,
                             "Question": ANY, "RequesterAnnotation": ANY,
                             "UniqueRequestToken": token})
        res = publish_batch(tasks, client, resolve_endpoint("sandbox"), opts, hit_keys=keys,
                            sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert res.recovered == keys and res.created == []
    with Ledger(tasks / "ledger.sqlite") as ledger:
        rec = ledger.hit("sandbox", keys[0])
    assert rec.state == "created" and rec.hit_id == existing


@pytest.mark.parametrize(("spec", "expected"), [
    ("approval>=98", {"QualificationTypeId": "000000000000000000L0",
                      "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [98]}),
    ("locale=US", {"QualificationTypeId": "00000000000000000071", "Comparator": "EqualTo",
                   "LocaleValues": [{"Country": "US"}]}),
    ("locale!=IN,PK", {"QualificationTypeId": "00000000000000000071", "Comparator": "NotIn",
                       "LocaleValues": [{"Country": "IN"}, {"Country": "PK"}]}),
    ("locale=US-NY", {"QualificationTypeId": "00000000000000000071", "Comparator": "EqualTo",
                      "LocaleValues": [{"Country": "US", "Subdivision": "NY"}]}),
    ("3XYZABCDEFGH12345:Exists", {"QualificationTypeId": "3XYZABCDEFGH12345",
                                  "Comparator": "Exists"}),
    ("3XYZABCDEFGH12345:In:1,2", {"QualificationTypeId": "3XYZABCDEFGH12345",
                                  "Comparator": "In", "IntegerValues": [1, 2]}),
])
def test_qualification_specs(spec, expected):
    got = parse_qualification(spec, "production")
    assert {k: v for k, v in got.items() if k != "ActionsGuarded"} == expected


def test_masters_id_differs_by_endpoint():
    assert parse_qualification("masters", "sandbox")["QualificationTypeId"] != \
        parse_qualification("masters", "production")["QualificationTypeId"]


@pytest.mark.parametrize("spec", ["approval>=x", "locale>US", "bogus", "ABC:Foo"])
def test_bad_qualification_spec(spec):
    with pytest.raises(PublishError, match=re.escape(spec)):
        parse_qualification(spec, "sandbox")
