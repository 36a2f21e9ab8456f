"""Publishing never duplicates a HIT: crashes, retries and re-runs against the real task server.

The server runs in-process: an unmodified boto3 client signs each request and botocore's
``before-send`` hook hands it to the Flask app's test client instead of a socket (no live
server, no threads), so the service really honours ``UniqueRequestToken`` (it answers "already
exists" with the HIT id), really validates the parameters, and its ``ListHITs`` is the truth
about which HITs exist. A crash is simulated by an exception that, like a kill, passes through
every ``except Exception``: before the request reaches the service or after the service created
the HIT but before the publisher heard back.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from helpers_publish import FIXTURE_HITS, make_tasks_dir
from helpers_server import APP_CONFIG, make_app

from tasks.client import resolve_endpoint
from tasks.cost import estimate_cost
from tasks.ledger import Ledger, request_token
from tasks.publish import (
    BudgetExceededError,
    PublishError,
    PublishOptions,
    load_manifest,
    publish_batch,
)

URL = "http://sp.test"
ASSETS = "https://cdn.example.org/b/"
PREFIX = "MTurkRequesterServiceV20170117."


class Killed(BaseException):
    """The publisher's process dies here (passes through ``except Exception``)."""


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_: object):
        yield self._data


class InProcessService:
    """The task server's Flask app behind a boto3 client, plus a record of what was sent."""

    def __init__(self, tmp_path: Path):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.app = make_app(tmp_path)
        self.web = self.app.test_client()
        self.sent: list[tuple[str, dict]] = []  # (operation, params) the service received
        self.kill_at: tuple[str, int, str] | None = None  # (operation, n-th call, before|after)
        self.fail: dict[str, list[int]] = {}  # operation -> statuses to refuse it with first
        self.client = _client()
        _ROUTE[0] = self  # the shared client's requests now go to this service
        self.endpoint = resolve_endpoint("local", URL)

    def _send(self, request, **_):
        import json

        op = request.headers["X-Amz-Target"]
        op = (op.decode() if isinstance(op, bytes) else op)[len(PREFIX):]
        calls = Counter(o for o, _ in self.sent)[op] + 1
        if self.kill_at == (op, calls, "before"):
            raise Killed(op)
        if self.fail.get(op):
            status = self.fail[op].pop(0)
            code = "ServiceUnavailable" if status >= 500 else "RequestError"
            body = json.dumps({"__type": code, "Message": f"refused with {status}"}).encode()
            return AWSResponse(request.url, status, {}, _Body(body))
        self.sent.append((op, json.loads(request.body or b"{}")))
        headers = {k: v.decode() if isinstance(v, bytes) else v
                   for k, v in request.headers.items()}
        r = self.web.open("/", method=request.method, base_url=URL, headers=headers,
                          data=request.body)
        if self.kill_at == (op, calls, "after"):
            raise Killed(op)
        return AWSResponse(request.url, r.status_code, dict(r.headers), _Body(r.data))

    def hits(self) -> dict[str, str]:
        """``{RequesterAnnotation: HITId}`` of every HIT the service holds (ListHITs)."""
        out: dict[str, str] = {}
        for page in self.client.get_paginator("list_hits").paginate():
            for h in page["HITs"]:
                assert h["RequesterAnnotation"] not in out, "a HIT was created twice"
                out[h["RequesterAnnotation"]] = h["HITId"]
        return out

    def count(self, op: str) -> int:
        return sum(o == op for o, _ in self.sent)


_ROUTE: list[InProcessService | None] = [None]
_CLIENTS: list = []


def _client():
    """One boto3 client for the module (making one takes most of a second); its requests go
    to whichever service was made last."""
    if not _CLIENTS:
        client = boto3.session.Session(
            aws_access_key_id=APP_CONFIG["ACCESS_KEY_ID"],
            aws_secret_access_key=APP_CONFIG["SECRET_ACCESS_KEY"],
            region_name="us-east-1").client(
                "mturk", endpoint_url=URL,  # the publisher's own retries, not botocore's
                config=Config(retries={"total_max_attempts": 1}))
        client.meta.events.register("before-send.mturk",
                                    lambda request, **kw: _ROUTE[0]._send(request, **kw))
        _CLIENTS.append(client)
    return _CLIENTS[0]


@pytest.fixture
def service(tmp_path):
    return InProcessService(tmp_path / "server")


@pytest.fixture
def tasks(tmp_path):
    return make_tasks_dir(tmp_path / "probe")


KEYS = [h[0] for h in FIXTURE_HITS]


def publish(tasks: Path, svc: InProcessService, hit_keys=None, sleep=lambda s: None,
            **options):
    opts = PublishOptions(**{"assignments": 3, "asset_base_url": ASSETS, **options})
    return publish_batch(tasks, svc.client, svc.endpoint, opts, sleep=sleep, hit_keys=hit_keys)


def ledger_rows(tasks: Path, svc: InProcessService) -> dict[str, tuple[str, str | None]]:
    with Ledger(tasks / "ledger.sqlite") as ledger:
        return {h.hit_key: (h.state, h.hit_id) for h in ledger.hits(svc.endpoint.key)}


def batch(tasks: Path) -> str:
    with Ledger(tasks / "ledger.sqlite") as ledger:
        return ledger.get_meta("batch_id")


def assert_each_hit_once(tasks: Path, svc: InProcessService, keys=KEYS) -> None:
    """The service holds exactly one HIT per key and the ledger names exactly that HIT."""
    b = batch(tasks)
    held = svc.hits()
    assert sorted(held) == sorted(f"sparse-probe:{b}:{k}" for k in keys)
    assert ledger_rows(tasks, svc) == {k: ("created", held[f"sparse-probe:{b}:{k}"])
                                       for k in keys}


# --------------------------------------------------------------------------- re-runs
def test_a_rerun_creates_nothing_and_reuses_the_hit_type(tasks, service):
    first = publish(tasks, service)
    assert first.created == KEYS and first.recovered == [] and first.skipped == []
    assert service.count("CreateHITType") == 1
    assert_each_hit_once(tasks, service)
    sent = len(service.sent)
    again = publish(tasks, service)
    assert (again.created, again.recovered, again.skipped) == ([], [], KEYS)
    assert len(service.sent) == sent  # not even CreateHITType
    assert_each_hit_once(tasks, service)


def test_publishing_in_parts_keeps_one_hit_type(tasks, service):
    a = publish(tasks, service, hit_keys=KEYS[:1])
    assert a.created == KEYS[:1] and a.skipped == []
    b = publish(tasks, service, hit_keys=KEYS[1:3])
    assert b.created == KEYS[1:3] and b.skipped == []  # the first is not in this subset
    c = publish(tasks, service)
    assert c.created == KEYS[3:] and c.skipped == KEYS[:3]
    assert service.count("CreateHITType") == 1
    assert a.hit_type_id == b.hit_type_id == c.hit_type_id
    assert {p["HITTypeId"] for o, p in service.sent if o == "CreateHITWithHITType"} == {
        a.hit_type_id}
    assert_each_hit_once(tasks, service)


def test_other_hit_properties_make_a_new_hit_type(tasks, service):
    first = publish(tasks, service, hit_keys=KEYS[:1])
    second = publish(tasks, service, hit_keys=KEYS[1:2], reward="0.20")
    assert second.hit_type_id != first.hit_type_id
    assert service.count("CreateHITType") == 2
    # A run with the first properties again finds the type the ledger recorded for them.
    third = publish(tasks, service, hit_keys=KEYS[2:3])
    assert third.hit_type_id == first.hit_type_id and service.count("CreateHITType") == 2


# --------------------------------------------------------------------------- crashes
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("nth", range(1, len(KEYS) + 1))
def test_killed_at_any_hit_then_rerun_never_duplicates(tasks, service, nth, when):
    """Killed while sending the n-th HIT (before the service saw it, or after it created
    the HIT but before the answer came back): the re-run sends that HIT again with the same
    token, the service answers "already exists" if it has it, and every HIT exists once."""
    service.kill_at = ("CreateHITWithHITType", nth, when)
    with pytest.raises(Killed):
        publish(tasks, service)
    rows = ledger_rows(tasks, service)
    b = batch(tasks)
    assert rows[KEYS[nth - 1]] == ("pending", None)
    assert [k for k in KEYS if rows.get(k, ("",))[0] == "created"] == KEYS[:nth - 1]
    assert len(service.hits()) == nth - (when == "before")
    tokens = [p["UniqueRequestToken"] for o, p in service.sent if o == "CreateHITWithHITType"]

    service.kill_at = None
    res = publish(tasks, service)
    assert res.recovered == [KEYS[nth - 1]]
    assert res.created == KEYS[nth:] and res.skipped == KEYS[:nth - 1]
    assert_each_hit_once(tasks, service)
    resent = [p for o, p in service.sent if o == "CreateHITWithHITType"][len(tokens):]
    if when == "after":  # the one sent again carries the first run's token
        assert resent[0]["UniqueRequestToken"] == tokens[-1]
        assert resent[0]["UniqueRequestToken"] == request_token(b, "local", KEYS[nth - 1])
    assert len({p["UniqueRequestToken"] for o, p in service.sent
                if o == "CreateHITWithHITType"}) == len(KEYS)
    assert service.count("CreateHITType") == 1
    # Money: each HIT committed once.
    per_hit = estimate_cost(1, 3, "0.10").total
    assert res.spent == per_hit * len(KEYS)
    assert res.new_cost == per_hit * (len(KEYS) - nth)
    assert isinstance(res.new_cost, Decimal) and isinstance(res.spent, Decimal)
    with Ledger(tasks / "ledger.sqlite") as ledger:  # each row knows its HIT type
        assert {h.hit_type_id for h in ledger.hits(service.endpoint.key)} == {res.hit_type_id}


def test_killed_while_creating_the_hit_type(tasks, service):
    service.kill_at = ("CreateHITType", 1, "after")
    with pytest.raises(Killed):
        publish(tasks, service)
    assert ledger_rows(tasks, service) == {}
    res = publish(tasks, service)  # identical properties: the service returns the same type
    assert res.created == KEYS
    assert_each_hit_once(tasks, service)


def test_a_pending_hit_is_resent_with_its_recorded_assignments(tasks, service):
    """The row's MaxAssignments and token win over this run's options."""
    service.kill_at = ("CreateHITWithHITType", 1, "before")
    with pytest.raises(Killed):
        publish(tasks, service, assignments=5)
    service.kill_at = None
    res = publish(tasks, service, assignments=2)
    sent = [p for o, p in service.sent if o == "CreateHITWithHITType"]
    assert [p["MaxAssignments"] for p in sent] == [5, 2, 2, 2]
    assert res.recovered == KEYS[:1]
    assert res.spent == estimate_cost(1, 5, "0.10").total + estimate_cost(3, 2, "0.10").total


# --------------------------------------------------------------------------- retries
def test_throttling_and_5xx_are_retried_with_the_same_token(tasks, service):
    service.fail = {"CreateHITType": [503], "CreateHITWithHITType": [503, 500]}
    waited: list[float] = []
    res = publish(tasks, service, hit_keys=KEYS[:2], sleep=waited.append)
    assert res.created == KEYS[:2]
    # One wait per retry, through the caller's clock: 0.5 s base, jitter in [0.5, 1].
    assert len(waited) == 3
    assert 0.25 <= waited[0] <= 0.5 and 0.25 <= waited[1] <= 0.5 and 0.5 <= waited[2] <= 1.0
    tokens = [p["UniqueRequestToken"] for o, p in service.sent if o == "CreateHITWithHITType"]
    assert len(tokens) == 2 and len(set(tokens)) == 2
    assert service.count("CreateHITType") == 1
    assert_each_hit_once(tasks, service, KEYS[:2])


def test_a_4xx_is_not_retried_and_leaves_the_hit_pending(tasks, service):
    service.fail = {"CreateHITWithHITType": [400]}
    with pytest.raises(service.client.exceptions.RequestError, match="refused with 400"):
        publish(tasks, service, hit_keys=KEYS[:1])
    assert ledger_rows(tasks, service) == {KEYS[0]: ("pending", None)}
    assert service.hits() == {}
    res = publish(tasks, service, hit_keys=KEYS[:1])
    assert res.recovered == KEYS[:1]
    assert_each_hit_once(tasks, service, KEYS[:1])


# --------------------------------------------------------------------------- what is sent
def test_the_service_receives_the_hits_properties(tasks, service):
    res = publish(tasks, service, hit_keys=KEYS[:1], lifetime=3600, assignments=None,
                  frame_height=640, reward="0.35")
    [(_, params)] = [(o, p) for o, p in service.sent if o == "CreateHITWithHITType"]
    hit = service.client.get_hit(HITId=ledger_rows(tasks, service)[KEYS[0]][1])["HIT"]
    manifest = {r["hit_key"]: r for r in load_manifest(tasks)}
    assert hit["MaxAssignments"] == manifest[KEYS[0]]["assignments"]
    assert (hit["Expiration"] - hit["CreationTime"]).total_seconds() == pytest.approx(3600, abs=1)
    assert hit["Reward"] == "0.35" and hit["HITTypeId"] == res.hit_type_id
    assert "<FrameHeight>640</FrameHeight>" in params["Question"]
    assert ASSETS in params["Question"] and "../assets/" not in params["Question"]
    assert params["RequesterAnnotation"] == f"sparse-probe:{res.batch_id}:{KEYS[0]}"


def test_requester_annotation_of_255_characters_is_the_limit(tmp_path, service):
    """The annotation is how a HIT is found again; over MTurk's 255 it is refused up front."""
    fits = "k" * (255 - len("sparse-probe:B1:"))
    hits = [(fits, *FIXTURE_HITS[0][1:]), (fits + "x", *FIXTURE_HITS[0][1:])]
    tasks = make_tasks_dir(tmp_path / "long", hits=hits)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        ledger.set_meta_default("batch_id", "B1")
    res = publish(tasks, service, hit_keys=[fits])
    assert res.created == [fits]
    with pytest.raises(PublishError, match="RequesterAnnotation over 255 characters"):
        publish(tasks, service)
    assert ledger_rows(tasks, service) == {fits: ("created", svc_id(service, fits))}


def svc_id(svc: InProcessService, key: str) -> str:
    return svc.hits()[f"sparse-probe:B1:{key}"]


# --------------------------------------------------------------------------- money
def test_budget_counts_what_the_ledger_already_committed(tasks, service):
    per_hit = estimate_cost(1, 3, "0.10").total
    publish(tasks, service, hit_keys=KEYS[:2])
    sent = len(service.sent)
    with pytest.raises(BudgetExceededError) as err:
        publish(tasks, service, budget=per_hit * 4 - Decimal("0.01"))
    assert len(service.sent) == sent  # nothing was sent
    assert f"${per_hit * 2:.2f} is already committed" in str(err.value)
    assert f"2 new HITs cost ${per_hit * 2:.2f}" in str(err.value)
    assert f"({estimate_cost(2, 3, '0.10').summary()})" in str(err.value)  # the breakdown
    res = publish(tasks, service, budget=per_hit * 4)  # exactly enough
    assert res.created == KEYS[2:] and res.new_cost == per_hit * 2 and res.spent == per_hit * 4
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.spent_cents(service.endpoint.key) == int(per_hit * 4 * 100)


def test_a_masters_batch_is_budgeted_with_the_masters_fee(tasks, service):
    """Masters costs 5% more of the reward: a budget that covers the plain batch exactly does
    not cover it."""
    masters = [{"QualificationTypeId": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", "Comparator": "Exists",
                "ActionsGuarded": "Accept"}]
    plain = estimate_cost(len(KEYS), 3, "0.10").total
    with pytest.raises(BudgetExceededError, match=r"25% MTurk fee \$0\.\d\d"):
        publish(tasks, service, budget=plain, qualifications=masters)
    assert service.sent == []  # nothing was sent
    res = publish(tasks, service, budget=estimate_cost(len(KEYS), 3, "0.10", masters=True).total,
                  qualifications=masters)
    assert res.created == KEYS and res.spent == len(KEYS) * 3 * Decimal("0.13")


def test_cost_is_committed_per_hit_in_whole_cents(tasks, service):
    """Odd rewards: every HIT's committed cost is its estimate to the cent."""
    res = publish(tasks, service, reward="0.07", assignments=None)
    n = {r["assignments"] for r in load_manifest(tasks)}
    assert len(n) == 1
    per_hit = estimate_cost(1, n.pop(), "0.07").total
    with Ledger(tasks / "ledger.sqlite") as ledger:
        cents = [h.cost_cents for h in ledger.hits(service.endpoint.key)]
    assert cents == [int(per_hit * 100)] * len(KEYS)
    assert res.spent == per_hit * len(KEYS) == res.new_cost


def test_local_endpoint_without_an_asset_url_asks_for_one_or_admin_credentials(tasks, service):
    with pytest.raises(PublishError, match=r"--asset-base-url .* or the server's admin "
                                           r"credentials$"):
        publish_batch(tasks, service.client, service.endpoint, PublishOptions(),
                      sleep=lambda s: None)
    assert service.sent == []


def test_admin_credentials_are_not_used_for_a_remote_endpoint(tasks):
    """Assets are uploaded only to the local task server, never to MTurk."""
    from tasks.client import ENDPOINTS

    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b",
                                region_name="us-east-1").client(
        "mturk", endpoint_url=ENDPOINTS["sandbox"])
    with pytest.raises(PublishError, match=r"HTTPS for MTurk\)$"):
        publish_batch(tasks, client, resolve_endpoint("sandbox"), PublishOptions(),
                      admin_auth=("admin", "pw"), sleep=lambda s: None)


def test_a_copy_of_the_tasks_elsewhere_is_another_batch_not_a_rerun(tmp_path, service):
    """Two runs with the same name and manifest in different places are different batches:
    the copy's HITs are created, not taken for the original's (their tokens differ)."""
    import shutil

    a = make_tasks_dir(tmp_path / "x" / "run")
    b = tmp_path / "y" / "run" / "tasks"
    shutil.copytree(a, b)
    first = publish(a, service, hit_keys=KEYS[:1])
    second = publish(b, service, hit_keys=KEYS[:1])
    assert first.batch_id != second.batch_id
    assert first.batch_id.startswith("run-") and second.batch_id.startswith("run-")
    assert second.created == KEYS[:1] and second.recovered == []
    assert len(service.hits()) == 2


def test_each_endpoint_keeps_its_own_pending_hits(tasks, tmp_path):
    """Published everywhere at one endpoint, killed at another: the re-run at the second
    finishes its own pending HIT (the first endpoint's rows say nothing about it)."""
    first = InProcessService(tmp_path / "one")
    publish(tasks, first)
    assert_each_hit_once(tasks, first)
    second = InProcessService(tmp_path / "two")
    second.endpoint = resolve_endpoint("local", "http://sp2.test")  # another ledger key
    second.kill_at = ("CreateHITWithHITType", 1, "before")
    with pytest.raises(Killed):
        publish(tasks, second)
    second.kill_at = None
    res = publish(tasks, second)
    assert res.recovered == KEYS[:1] and res.created == KEYS[1:] and res.skipped == []
    assert_each_hit_once(tasks, second)


def test_run_names_keep_their_letters_in_the_batch_id(tmp_path):
    from tasks.publish import batch_id_for

    for name in ("MyRun_v2", "X-ray-X"):
        bid = batch_id_for(make_tasks_dir(tmp_path / name))
        assert bid.startswith(f"{name}-") and len(bid) == len(name) + 11, bid


def test_local_endpoint_uploads_the_assets_and_points_the_pages_at_them(tasks, service,
                                                                          monkeypatch):
    """With the task server's admin credentials and no asset URL, the publisher uploads
    tasks/assets/ to ``/assets/<batch>/`` and the HIT pages load their images from there.
    (The upload's HTTP goes to the same in-process app through a requests adapter.)"""
    import requests
    from requests.adapters import BaseAdapter

    class ToApp(BaseAdapter):
        def send(self, request, **_):
            r = service.web.open(request.path_url, method=request.method, base_url=URL,
                                 headers=dict(request.headers), data=request.body)
            out = requests.Response()
            out.status_code, out._content, out.url = r.status_code, r.data, request.url
            out.headers.update(r.headers)
            return out

        def close(self):
            pass

    session = requests.Session()
    session.mount(URL, ToApp())
    monkeypatch.setattr(requests, "Session", lambda: session)
    res = publish_batch(tasks, service.client, service.endpoint, PublishOptions(assignments=1),
                        admin_auth=(APP_CONFIG["ADMIN_USER"], APP_CONFIG["ADMIN_PASSWORD"]),
                        sleep=lambda s: None, hit_keys=KEYS[:1])
    assert res.created == KEYS[:1]
    base = f"{URL}/assets/{res.batch_id}/"
    [question] = [p["Question"] for o, p in service.sent if o == "CreateHITWithHITType"]
    assert f"{base}{KEYS[0]}-grid.png" in question and "../assets/" not in question
    for png in sorted((tasks / "assets").iterdir()):  # every file, served back unchanged
        got = service.web.get(f"/assets/{res.batch_id}/{png.name}")
        assert got.status_code == 200 and got.data == png.read_bytes()


def test_a_page_that_cannot_be_a_question_is_named_in_the_error(tmp_path, service):
    """A HIT page that cannot be embedded (here: it contains ']]>') stops publishing with
    the HIT's key in the message, before that HIT is sent."""
    tasks = make_tasks_dir(tmp_path / "bad")
    page = tasks / "hits" / f"{KEYS[1]}.html"
    page.write_text(page.read_text(encoding="utf-8") + "<!-- ]]> -->", encoding="utf-8")
    with pytest.raises(PublishError, match=rf"^{KEYS[1]}: HTML contains '\]\]>'"):
        publish(tasks, service, hit_keys=KEYS[:2])
    assert ledger_rows(tasks, service) == {KEYS[0]: ("created", service.hits()[
        f"sparse-probe:{batch(tasks)}:{KEYS[0]}"])}
