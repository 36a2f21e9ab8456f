"""Fuzzing the requester API: no input gives a 5xx, and no accepted request breaks later reads.

Requests are built by hypothesis from botocore's MTurk service model (every operation, every
member, with wrong types, JSON nulls, huge integers, surrogates, NUL, non-finite timestamps and
unknown keys mixed in), signed as botocore signs, and sent through the app's WSGI stack, on SQLite and on PostgreSQL
(which refuses NUL in text and integers past 32 bits where SQLite would not). A second
property checks that after any sequence of accepted requests, ListHITs (all pages), GetHIT,
ListAssignmentsForHIT (parsed by botocore's own response parser, which rejects timestamps past
year 9999) and the admin pages still answer. The audit's cases are listed explicitly as well.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import pytest
from botocore.parsers import create_parser
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import (
    APP_CONFIG,
    TARGET,
    accept,
    make_app,
    question,
    raw_call,
    signed_headers,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.server.live import start_server
from tasks.server.validation import service_model

pytestmark = pytest.mark.timeout(600)

KEY, SECRET = APP_CONFIG["ACCESS_KEY_ID"], APP_CONFIG["SECRET_ACCESS_KEY"]
MODEL = service_model()
OPERATIONS = sorted(MODEL.operation_names)
READS = ("ListHITs", "GetHIT", "ListAssignmentsForHIT")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ the app
class Api:
    """A signed JSON 1.1 client over Flask's test client, with botocore's response parser."""

    def __init__(self, app: Any):
        self.app = app
        self.client = app.test_client()
        self.parser = create_parser("json")

    def raw(self, operation: str, body: bytes) -> tuple[int, dict]:
        headers = signed_headers("http://localhost", TARGET + operation, body, KEY, SECRET)
        r = self.client.post("/", data=body, headers=headers)
        assert r.status_code < 500, (operation, body[:300], r.status_code, r.data[:300])
        try:
            payload = json.loads(r.data)
        except ValueError:
            pytest.fail(f"{operation}: {r.status_code} body is not JSON: {r.data[:200]!r}")
        if r.status_code != 200:
            assert "__type" in payload and "Message" in payload, payload
        return r.status_code, payload

    def call(self, operation: str, params: Any) -> tuple[int, dict]:
        return self.raw(operation, json.dumps(params).encode())

    def parsed(self, operation: str, params: dict) -> dict:
        """A successful call, parsed as boto3 parses it (raises if botocore cannot)."""
        body = json.dumps(params).encode()
        headers = signed_headers("http://localhost", TARGET + operation, body, KEY, SECRET)
        r = self.client.post("/", data=body, headers=headers)
        assert r.status_code == 200, (operation, params, r.data[:300])
        shape = MODEL.operation_model(operation).output_shape
        return self.parser.parse({"status_code": 200, "headers": dict(r.headers),
                                  "body": r.data}, shape)


@pytest.fixture(scope="module", params=BACKENDS)
def api(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("fuzz")
    url = (f"sqlite:///{tmp / 'server.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_cluster").create_database())
    app = make_app(tmp, DATABASE_URL=url)
    a = Api(app)
    status, out = a.call("CreateHIT", dict(
        Title="seed", Description="seed HIT", Reward="0.10", LifetimeInSeconds=600,
        AssignmentDurationInSeconds=300, MaxAssignments=3, Question=question("seed")))
    assert status == 200, out
    a.hit_id = out["HIT"]["HITId"]
    a.hit_type_id = out["HIT"]["HITTypeId"]
    yield a
    app.extensions["sparse_probe_storage"].dispose()


def _check_reads(api: Api) -> None:
    """ListHITs (every page), GetHIT and ListAssignmentsForHIT of each HIT, admin pages."""
    token, hit_ids = None, []
    while True:
        page = api.parsed("ListHITs", {"MaxResults": 100, **({"NextToken": token}
                                                            if token else {})})
        hit_ids += [h["HITId"] for h in page["HITs"]]
        token = page.get("NextToken")
        if not token:
            break
    for hit_id in [*hit_ids[-5:], api.hit_id]:
        api.parsed("GetHIT", {"HITId": hit_id})
        api.parsed("ListAssignmentsForHIT", {"HITId": hit_id, "MaxResults": 100})
    auth = base64.b64encode(b"admin:admin-pass").decode()
    headers = {"Authorization": f"Basic {auth}"}
    r = api.client.get("/admin/", headers=headers)
    assert r.status_code == 200, r.data[:300]
    r = api.client.get(f"/admin/hittypes/{api.hit_type_id}", headers=headers)
    assert r.status_code == 200, r.data[:300]
    r = api.client.get(f"/admin/hits/{api.hit_id}", headers=headers)
    assert r.status_code == 200, r.data[:300]


# --------------------------------------------------------------------- values from shapes
WEIRD_TEXT = ["\ud800", "a\udfffb", "nul\x00byte", "", " ", "x" * 70_000, "é" * 300,
              "1" * 40, "-1", "1e308", "NaN", "Infinity", "9" * 30 + ".99", "0.00"]
WEIRD_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
              10**400, 31_536_001]
WEIRD_TIMES = [0, -1, 1e308, -1e308, 10**400, "NaN", "Infinity", "-Infinity", "1e308",
               "9999-12-31T23:59:59Z", "10000-01-01T00:00:00", "2030-01-01T00:00:00Z",
               "not a date", 253_402_300_800, 4_102_444_800]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=5,
)
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)


def _questions() -> st.SearchStrategy:
    weird = [
        question("k") + "\ud800", question("k").replace("<body>", "<body>\ud800"),
        question("k").replace("<FrameHeight>0</FrameHeight>",
                              f"<FrameHeight>{2**63}</FrameHeight>"),
        question("k").replace("<FrameHeight>0</FrameHeight>", "<FrameHeight>²</FrameHeight>"),
        question("k").replace("<FrameHeight>0</FrameHeight>", "<FrameHeight>-5</FrameHeight>"),
        "<not xml", "<a/>", question("k") + "\x00",
    ]
    return st.sampled_from([question("ok")] * 3 + weird)


def value_for(shape: Any, name: str, api: Api, depth: int = 0) -> st.SearchStrategy:
    """Mostly well-typed values of ``shape`` with boundary and ill-typed ones mixed in."""
    t = shape.type_name
    meta = shape.metadata
    wrong = st.one_of(st.none(), ANY_JSON)
    if t == "structure":
        if depth > 3:
            return st.just({})
        required = {k: value_for(s, k, api, depth + 1) for k, s in shape.members.items()
                    if k in shape.required_members}
        optional = {k: value_for(s, k, api, depth + 1) for k, s in shape.members.items()
                    if k not in shape.required_members}
        base = st.fixed_dictionaries(required, optional=optional)
        extra = st.builds(lambda d, k, v: {**d, k: v}, base, st.text(max_size=8), ANY_JSON)
        return st.one_of(base, base, base, extra, wrong)
    if t == "list":
        return st.one_of(st.lists(value_for(shape.member, name, api, depth + 1), max_size=4),
                         wrong)
    if t == "string":
        choices = [TEXT, st.sampled_from(WEIRD_TEXT)]
        if "enum" in meta:
            choices += [st.sampled_from(meta["enum"])] * 3
        if name in ("HITId",):
            choices += [st.just(api.hit_id)] * 4
        if name in ("HITTypeId",):
            choices += [st.just(api.hit_type_id)] * 4
        if name == "Question":
            choices += [_questions()] * 4
        if name in ("Reward", "BonusAmount"):
            choices += [st.sampled_from(["0.01", "1.00", "99999.99", "100000.01", "1" * 40])] * 3
        if name == "NextToken":
            choices += [st.sampled_from([
                base64.urlsafe_b64encode(json.dumps(p).encode()).decode()
                for p in ([["x"], 1], [None, None], ["a", "b"], [1e308, "Z"], [10**400, "A"],
                          [float("nan"), "A"], [[1]], [{"a": 1}], ["\ud800"], [2**70])
            ] + ["!!!", "e30="])] * 3
        if "pattern" in meta and meta["pattern"] == "^[A-Z0-9]+$":
            choices += [st.from_regex(r"\A[A-Z0-9]{1,64}\Z")]
        if "pattern" in meta and meta["pattern"] == "^A[A-Z0-9]+$":
            choices += [st.from_regex(r"\AA[A-Z0-9]{1,20}\Z")]
        return st.one_of(*choices, wrong)
    if t in ("integer", "long"):
        return st.one_of(st.integers(-1000, 1_000_000), st.sampled_from(WEIRD_INTS),
                         st.integers(), wrong)
    if t == "timestamp":
        return st.one_of(st.integers(0, 2**34), st.floats(), st.sampled_from(WEIRD_TIMES),
                         wrong)
    if t == "boolean":
        return st.one_of(st.booleans(), wrong)
    return wrong


def request_for(operation: str, api: Api) -> st.SearchStrategy:
    """Anything for ``operation``: a valid request with members replaced, or a random one."""
    shape = MODEL.operation_model(operation).input_shape
    if shape is None:
        return st.one_of(st.just({}), ANY_JSON)
    return st.one_of(mutated(operation, api), value_for(shape, "", api))


def valid_request(operation: str, api: Api) -> dict:
    """A request of ``operation`` that the server accepts (where it can without a worker)."""
    now = int(time.time())
    hit = {"HITId": api.hit_id}
    return {
        "CreateHIT": _create(),
        "CreateHITType": {k: v for k, v in _create().items() if k in (
            "Title", "Description", "Reward", "AssignmentDurationInSeconds")},
        "CreateHITWithHITType": {"HITTypeId": api.hit_type_id, "LifetimeInSeconds": 300,
                                 "MaxAssignments": 2, "Question": question()},
        "UpdateExpirationForHIT": {**hit, "ExpireAt": now + 600},
        "GetHIT": hit, "ListAssignmentsForHIT": hit, "DeleteHIT": hit, "ListHITs": {},
        "ListReviewableHITs": {"HITTypeId": api.hit_type_id},
    }.get(operation, {})


def mutated(operation: str, api: Api) -> st.SearchStrategy:
    """A valid request with 0-2 members (of the model) replaced by fuzzed values, or
    dropped."""
    shape = MODEL.operation_model(operation).input_shape
    base = valid_request(operation, api)
    names = sorted(shape.members)
    if not names:
        return st.just(base)
    # Offsets from the time of the request (strategies must not depend on the clock).
    edge = {"ExpireAt": st.one_of(st.integers(-10, 2 * 31_536_000),
                                  st.sampled_from([31_536_000 - 5, 31_536_005]))}

    @st.composite
    def build(draw):
        params = dict(base)
        n = min(len(names), draw(st.sampled_from([0, 0, 1, 1, 1, 2])))
        for name in draw(st.lists(st.sampled_from(names), min_size=n, max_size=n,
                                  unique=True)):
            if draw(st.integers(0, 5)) == 0:
                params.pop(name, None)
                continue
            if name in edge:
                params[name] = int(time.time()) + draw(edge[name])
            else:
                params[name] = draw(value_for(shape.members[name], name, api, 1))
        return params

    return build()


# ------------------------------------------------------------------------------- the tests
@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_5xx_for_any_parameters(api, operation):
    @FUZZ
    @given(params=request_for(operation, api))
    def run(params):
        api.call(operation, params)  # asserts < 500 and a JSON error body

    run()


@pytest.mark.slow
def test_no_accepted_request_breaks_later_reads(api):
    mutating = ["CreateHIT", "CreateHITWithHITType", "CreateHITType"] * 2 + [
                "UpdateExpirationForHIT"] * 3 + [ "SendBonus", "DeleteHIT", "ApproveAssignment",
                "RejectAssignment", "CreateQualificationType", "UpdateQualificationType",
                "AssociateQualificationWithWorker", "NotifyWorkers"]

    accepted: dict[str, int] = {}

    @settings(FUZZ, max_examples=150)
    @given(st.data())
    def run(data):
        operation = data.draw(st.sampled_from(mutating))
        status, _ = api.call(operation, data.draw(mutated(operation, api)))
        if status == 200:
            accepted[operation] = accepted.get(operation, 0) + 1
            _check_reads(api)

    run()
    _check_reads(api)
    print("accepted:", accepted)
    # The property is only worth something if requests got through and were stored.
    assert sum(accepted.values()) >= 10, accepted
    assert {"CreateHIT", "UpdateExpirationForHIT"} <= set(accepted), accepted


# -------------------------------------------------------------------------- the audit's cases
def _create(**over: Any) -> dict:
    params = dict(Title="t", Description="d", Reward="0.05", LifetimeInSeconds=300,
                  AssignmentDurationInSeconds=120, MaxAssignments=2, Question=question())
    params.update(over)
    return params


@pytest.mark.parametrize("over", [
    {"Title": "\ud800"}, {"Description": "x\ud800"}, {"Question": question() + "\ud800"},
    {"Title": "a\x00b"}, {"MaxAssignments": 2**63}, {"MaxAssignments": 2**62},
    {"MaxAssignments": 1_000_001}, {"MaxAssignments": None}, {"Keywords": None},
    {"Reward": "1" * 40}, {"Reward": "0.05\n"}, {"LifetimeInSeconds": 2**31},
    {"Question": question().replace("<FrameHeight>0</FrameHeight>",
                                    f"<FrameHeight>{2**63}</FrameHeight>")},
    {"Question": question().replace("<FrameHeight>0</FrameHeight>",
                                    "<FrameHeight>²</FrameHeight>")},
], ids=repr)
def test_audit_create_hit_cases_are_request_errors(api, over):
    status, body = api.call("CreateHIT", _create(**over))
    assert status == 400
    assert body["__type"].endswith("#RequestError"), body


@pytest.mark.slow
@pytest.mark.parametrize("expire_at", [10**400, "NaN", "Infinity", 1e308, "-Infinity",
                                       "10000-01-01T00:00:00Z", 253_402_300_800,
                                       4_102_444_800])
def test_audit_expire_at_cannot_poison_list_hits(api, expire_at):
    body = json.dumps({"HITId": api.hit_id, "ExpireAt": expire_at}).encode()
    status, out = api.raw("UpdateExpirationForHIT", body)
    assert status == 400 and out["__type"].endswith("#RequestError"), out
    _check_reads(api)


def test_audit_forged_next_tokens(api):
    for parts in ([["x"], 1], ["a", "b"], [None, "A"], [10**400, "A"], [1, 2**70]):
        token = base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()
        status, out = api.call("ListHITs", {"NextToken": token})
        assert status == 400 and "NextToken" in out["Message"], out
    status, out = api.call("ListAssignmentsForHIT", {
        "HITId": api.hit_id,
        "NextToken": base64.urlsafe_b64encode(b"[5]").decode()})
    assert status == 400 and "NextToken" in out["Message"], out


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_api_get_json_405(api, method):
    r = api.client.open("/", method=method, data=b"{}",
                        headers={"X-Amz-Target": TARGET + "GetAccountBalance"})
    assert r.status_code == 405
    body = json.loads(r.data)
    assert body["__type"].endswith("#RequestError") and "POST" in body["Message"]


def test_replays_and_unsigned_targets(tmp_path):
    app = make_app(tmp_path)
    a = Api(app)
    body = json.dumps(_create()).encode()
    headers = signed_headers("http://localhost", TARGET + "CreateHIT", body, KEY, SECRET)
    answers = [a.client.post("/", data=body, headers=headers) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 400, 400, 400]
    assert json.loads(answers[1].data)["__type"] == "InvalidSignatureException"
    assert a.parsed("ListHITs", {})["NumResults"] == 1
    # X-Amz-Target left out of the signed headers: refused, so it cannot be re-targeted.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url="http://localhost/", data=b"{}",
                     headers={"Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(KEY, SECRET), "mturk-requester", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    headers["X-Amz-Target"] = TARGET + "GetAccountBalance"
    r = a.client.post("/", data=b"{}", headers=headers)
    assert r.status_code == 400
    assert json.loads(r.data)["__type"] == "IncompleteSignatureException"
    app.extensions["sparse_probe_storage"].dispose()


@pytest.mark.slow
def test_send_bonus_is_paid_once(tmp_path):
    with start_server(tmp_path / "s.sqlite", threads=4,
                      config={"MIN_DURATION_SECONDS": 1}) as srv:
        client = srv.boto3_client()
        hit_id = client.create_hit(**_create())["HIT"]["HITId"]
        s = srv.worker_session("W1")
        status, aid = accept(s, srv.url, hit_id)
        assert status == 303
        r = s.post(f"{srv.url}/mturk/externalSubmit", data={"assignmentId": aid, "a": "b"},
                   timeout=30)
        assert r.status_code == 200
        before = client.get_account_balance()["AvailableBalance"]
        params = {"WorkerId": "W1", "AssignmentId": aid, "BonusAmount": "1.00", "Reason": "r"}
        body = json.dumps(params).encode()
        headers = signed_headers(srv.url, TARGET + "SendBonus", body, srv.access_key_id,
                                 srv.secret_access_key)
        import requests

        codes = [requests.post(srv.url + "/", data=body, headers=headers, timeout=30)
                 .status_code for _ in range(3)]
        assert codes == [200, 400, 400]
        # A fresh signature of the same bonus without a token is not paid again either.
        again = raw_call(srv.url, srv.access_key_id, srv.secret_access_key, "SendBonus", params)
        assert again.status_code == 400
        assert again.json()["TurkErrorCode"] == "AWS.MechanicalTurk.BonusAlreadyPaid"
        after = client.get_account_balance()["AvailableBalance"]
        from decimal import Decimal

        assert Decimal(before) - Decimal(after) == Decimal("1.20")
        # Another amount is another bonus.
        client.send_bonus(WorkerId="W1", AssignmentId=aid, BonusAmount="0.50", Reason="r")


@pytest.mark.slow
def test_waitress_413_is_json(tmp_path):
    with start_server(tmp_path / "s.sqlite", threads=2) as srv:
        host, port = srv.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n{}" % (65 * 1024 * 1024))
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        out = json.loads(body)
        assert out["__type"].endswith("#RequestError")


def test_nul_in_worker_and_admin_ids_is_4xx(api):
    """PostgreSQL refuses NUL in parameters; no path, query or id field reaches it."""
    from tasks.server import issue_worker_token

    store = api.app.extensions["sparse_probe_storage"]
    c = api.app.test_client()
    assert c.post("/worker/login", data={"worker_id": "a\x00", "token": "t"}).status_code == 400
    token = issue_worker_token(store, "NULW")
    assert c.post("/worker/login", data={"worker_id": "NULW", "token": token}).status_code == 303
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-pass").decode()}
    for method, path in [("POST", "/worker/hits/%00/accept"), ("GET", "/worker/hits/A%00/preview"),
                         ("GET", "/worker/assignments/%00/page"), ("GET", "/admin/hits/%00"),
                         ("GET", "/worker/?format=%00"), ("POST", "/admin/assignments/%00/approve")]:
        assert c.open(path, method=method, headers=auth).status_code == 400, path
    r = c.post("/mturk/externalSubmit", data={"assignmentId": "A\x00", "x": "y"})
    assert r.status_code == 400
    r = api.client.post("/worker/hits/" + api.hit_id + "/accept")
    assert r.status_code < 500
