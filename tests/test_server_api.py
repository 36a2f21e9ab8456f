"""Requester API of the task server through unmodified boto3 over real HTTP (loopback)."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import (
    accept,
    create_batch,
    load_page,
    parse_answer_xml,
    question,
    raw_call,
    submit_page_form,
)

from tasks.cost import estimate_cost
from tasks.server.live import start_server
from tasks.server.validation import service_model

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory, request):
    db = tmp_path_factory.mktemp("api") / "server.sqlite"
    url = None if request.param == "sqlite" else request.getfixturevalue(
        "pg_cluster").create_database()
    with start_server(None if url else db, database_url=url, threads=8,
                      config={"MIN_DURATION_SECONDS": 1}) as srv:
        yield srv


@pytest.fixture(scope="module")
def mturk(server):
    return server.boto3_client()


def _work(server, worker_id, hit_id, **answers):
    s = server.worker_session(worker_id)
    status, aid = accept(s, server.url, hit_id)
    assert status == 303, status
    page = load_page(s, server.url, aid)
    assert f'value="{aid}"' in page
    r = submit_page_form(s, page, **answers)
    assert r.status_code == 200, r.text
    return aid


@pytest.mark.slow
def test_hit_shapes_match_botocore_model(mturk):
    type_id, [hit_id] = create_batch(mturk, 1, 3, reward="0.25")
    hit = mturk.get_hit(HITId=hit_id)["HIT"]
    expected = set(service_model().shape_for("HIT").members) - {"HITLayoutId"}
    assert set(hit) == expected
    assert hit["HITTypeId"] == type_id == hit["HITGroupId"]
    assert hit["HITStatus"] == "Assignable"
    assert hit["Reward"] == "0.25"
    assert hit["MaxAssignments"] == 3
    assert hit["NumberOfAssignmentsAvailable"] == 3
    assert hit["Question"] == question("k0")
    assert hit["Expiration"] > hit["CreationTime"]  # parsed by botocore into datetimes
    assert hit["Expiration"].timestamp() == pytest.approx(
        hit["CreationTime"].timestamp() + 600, abs=1e-3)
    # CreateHITType is idempotent for identical properties, as on MTurk.
    again = mturk.create_hit_type(Title="Is there a shared pattern?",
                                  Description="Look at the images and answer.", Reward="0.25",
                                  AssignmentDurationInSeconds=600, Keywords="images, patterns")
    assert again["HITTypeId"] == type_id


@pytest.mark.slow
def test_create_hit_without_type_and_token_reuse(mturk):
    params = dict(Title="t", Description="d", Reward="0.05", LifetimeInSeconds=300,
                  AssignmentDurationInSeconds=120, MaxAssignments=2, Question=question(),
                  UniqueRequestToken="batch-1/hit-7")
    hit_id = mturk.create_hit(**params)["HIT"]["HITId"]
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.create_hit(**params)
    assert hit_id in err.value.response["Error"]["Message"]
    assert err.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"
    listed = [h["HITId"] for page in mturk.get_paginator("list_hits").paginate()
              for h in page["HITs"]]
    assert listed.count(hit_id) == 1


@pytest.mark.slow
def test_full_cycle_review_bonus_and_balance(server, mturk):
    before = Decimal(mturk.get_account_balance()["AvailableBalance"])
    _, [hit_id] = create_batch(mturk, 1, 3, reward="0.50")
    aids = {w: _work(server, w, hit_id, shared="yes", description=f"from {w} <b>&</b>")
            for w in ("WA1", "WA2", "WA3")}
    listed = mturk.list_assignments_for_hit(HITId=hit_id, MaxResults=100)
    assert listed["NumResults"] == 3
    by_worker = {a["WorkerId"]: a for a in listed["Assignments"]}
    assert {w: a["AssignmentId"] for w, a in by_worker.items()} == aids
    for w, a in by_worker.items():
        assert a["AssignmentStatus"] == "Submitted"
        assert a["SubmitTime"] >= a["AcceptTime"]
        answers = parse_answer_xml(a["Answer"])
        assert answers["description"] == f"from {w} <b>&</b>"
        assert answers["shared"] == "yes" and answers["hit_key"] == "k0"
        assert "assignmentId" not in answers
    assert mturk.get_hit(HITId=hit_id)["HIT"]["HITStatus"] == "Reviewable"

    mturk.approve_assignment(AssignmentId=aids["WA1"], RequesterFeedback="thanks")
    mturk.reject_assignment(AssignmentId=aids["WA2"], RequesterFeedback="empty answer")
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.approve_assignment(AssignmentId=aids["WA1"])  # already approved
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.approve_assignment(AssignmentId=aids["WA2"])  # rejected, no override
    mturk.approve_assignment(AssignmentId=aids["WA2"], OverrideRejection=True)
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.reject_assignment(AssignmentId=aids["WA1"], RequesterFeedback="too late")
    mturk.send_bonus(WorkerId="WA3", BonusAmount="1.00", AssignmentId=aids["WA3"],
                     Reason="good work", UniqueRequestToken="bonus-1")
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.send_bonus(WorkerId="WA3", BonusAmount="1.00", AssignmentId=aids["WA3"],
                         Reason="good work", UniqueRequestToken="bonus-1")
    with pytest.raises(mturk.exceptions.RequestError):  # not this worker's assignment
        mturk.send_bonus(WorkerId="WA1", BonusAmount="1.00", AssignmentId=aids["WA3"],
                         Reason="x")

    statuses = {a["WorkerId"]: a["AssignmentStatus"] for a in mturk.list_assignments_for_hit(
        HITId=hit_id)["Assignments"]}
    assert statuses == {"WA1": "Approved", "WA2": "Approved", "WA3": "Submitted"}
    approved = mturk.list_assignments_for_hit(HITId=hit_id, AssignmentStatuses=["Approved"])
    assert {a["WorkerId"] for a in approved["Assignments"]} == {"WA1", "WA2"}
    # Independent reference: tasks.cost's per-batch estimate, 20% fee for < 10 assignments.
    per_assignment = estimate_cost(1, 3, "0.50").total / 3
    expected = before - 2 * per_assignment - estimate_cost(1, 1, "1.00").total
    assert Decimal(mturk.get_account_balance()["AvailableBalance"]) == expected


@pytest.mark.slow
def test_pagination_over_more_than_100_assignments(server, mturk):
    _, [hit_id] = create_batch(mturk, 1, 120)
    workers = [f"P{i:03d}" for i in range(120)]
    with ThreadPoolExecutor(8) as pool:
        aids = set(pool.map(lambda w: _work(server, w, hit_id, shared="no", description=w),
                            workers))
    assert len(aids) == 120
    pages = list(mturk.get_paginator("list_assignments_for_hit").paginate(
        HITId=hit_id, PaginationConfig={"PageSize": 50}))
    assert [p["NumResults"] for p in pages] == [50, 50, 20]
    seen = [a["AssignmentId"] for p in pages for a in p["Assignments"]]
    assert len(seen) == len(set(seen)) == 120 and set(seen) == aids
    first = mturk.list_assignments_for_hit(HITId=hit_id, MaxResults=100)
    rest = mturk.list_assignments_for_hit(HITId=hit_id, MaxResults=100,
                                          NextToken=first["NextToken"])
    assert first["NumResults"] == 100 and rest["NumResults"] == 20 and "NextToken" not in rest
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.list_assignments_for_hit(HITId=hit_id, MaxResults=101)
    with pytest.raises(mturk.exceptions.RequestError):
        mturk.list_assignments_for_hit(HITId=hit_id, NextToken="not-a-token")


@pytest.mark.slow
def test_list_hits_expiration_reviewable_and_delete(server, mturk):
    type_id, hit_ids = create_batch(mturk, 3, 1, title="expiring batch")
    got = mturk.list_reviewable_hits(HITTypeId=type_id)
    assert got["NumResults"] == 0
    _work(server, "WX1", hit_ids[0], shared="yes")
    mturk.update_expiration_for_hit(HITId=hit_ids[1], ExpireAt=0)  # expire now
    assert mturk.get_hit(HITId=hit_ids[1])["HIT"]["HITStatus"] == "Reviewable"
    s = server.worker_session("WX2")
    assert accept(s, server.url, hit_ids[1])[0] == 410
    reviewable = {h["HITId"] for h in mturk.list_reviewable_hits(HITTypeId=type_id)["HITs"]}
    assert reviewable == {hit_ids[0], hit_ids[1]}
    with pytest.raises(mturk.exceptions.RequestError):  # still assignable
        mturk.delete_hit(HITId=hit_ids[2])
    with pytest.raises(mturk.exceptions.RequestError):  # a submitted assignment to review
        mturk.delete_hit(HITId=hit_ids[0])
    mturk.delete_hit(HITId=hit_ids[1])
    assert mturk.get_hit(HITId=hit_ids[1])["HIT"]["HITStatus"] == "Disposed"
    listed = {h["HITId"] for p in mturk.get_paginator("list_hits").paginate(
        PaginationConfig={"PageSize": 2}) for h in p["HITs"]}
    assert hit_ids[1] not in listed and {hit_ids[0], hit_ids[2]} <= listed
    later = time.time() + 3600
    mturk.update_expiration_for_hit(HITId=hit_ids[2], ExpireAt=later)
    exp = mturk.get_hit(HITId=hit_ids[2])["HIT"]["Expiration"].timestamp()
    assert exp == pytest.approx(later, abs=1e-3)
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.get_hit(HITId="NOSUCHHIT")
    assert err.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"


def test_auth_errors(server):
    wrong = boto3.client("mturk", endpoint_url=server.url, region_name="us-east-1",
                         aws_access_key_id=server.access_key_id,
                         aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        wrong.get_account_balance()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = boto3.client("mturk", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="SPUNKNOWNKEY", aws_secret_access_key="x")
    with pytest.raises(ClientError) as err:
        unknown.get_account_balance()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    unsigned = boto3.client("mturk", endpoint_url=server.url, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as err:
        unsigned.get_account_balance()
    assert err.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    other_region = boto3.client("mturk", endpoint_url=server.url, region_name="eu-west-1",
                                aws_access_key_id=server.access_key_id,
                                aws_secret_access_key=server.secret_access_key)
    with pytest.raises(ClientError) as err:
        other_region.get_account_balance()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"Reward": "1.234"}, "Reward"),
        ({"Reward": "$1"}, "Reward"),
        ({"Reward": "-1"}, "Reward"),
        ({"Title": "x" * 129}, "Title"),
        ({"Title": "   "}, "Title"),
        ({"Description": "x" * 2001}, "Description"),
        ({"MaxAssignments": 0}, "MaxAssignments"),
        ({"Question": "<HTMLQuestion>not closed"}, "well-formed"),
        ({"Question": "<Other xmlns='urn:x'/>"}, "HTMLQuestion"),
        ({"Question": question() + "x" * 65_536}, "65535"),
        ({"UniqueRequestToken": "x" * 65}, "UniqueRequestToken"),
        ({"AutoApprovalDelayInSeconds": 2_592_001}, "AutoApprovalDelayInSeconds"),
        ({"QualificationRequirements": [{"QualificationTypeId": "000000000000000000L0",
                                         "Comparator": "Exists"}] * 11}, "at most 10"),
        ({"QualificationRequirements": [{"QualificationTypeId": "000000000000000000L0",
                                         "Comparator": "Sometimes"}]}, "Comparator"),
    ],
)
def test_create_hit_validation(mturk, changes, fragment):
    params = dict(Title="t", Description="d", Reward="0.05", LifetimeInSeconds=300,
                  AssignmentDurationInSeconds=120, MaxAssignments=1, Question=question())
    params.update(changes)
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.create_hit(**params)
    assert fragment in err.value.response["Error"]["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("operation", "body", "status", "error_type"),
    [
        ("GetAccountBalance", b"{not json", 400, "SerializationException"),
        ("GetAccountBalance", b"[1, 2]", 400, "RequestError"),
        ("GetAccountBalance", b"[" * 200_000, 400, "SerializationException"),
        ("GetAccountBalance", b"\xff\xfe{}", 400, "SerializationException"),
        ("DoSomethingElse", b"{}", 400, "UnknownOperationException"),
        ("GetHIT", b"{}", 400, "RequestError"),  # HITId missing
        ("GetHIT", b'{"HITId": 5}', 400, "RequestError"),
        ("GetHIT", b'{"HITId": "ABC", "Extra": 1}', 400, "RequestError"),
        ("CreateHITType", b'{"Title": "t"}', 400, "RequestError"),
        ("CreateHITType", b'{"Title": "t", "Description": "d", "Reward": "0.10", '
         b'"AssignmentDurationInSeconds": 60, "QualificationRequirements": '
         b'[{"Comparator": "Exists"}]}', 400, "RequestError"),
        ("GetAccountBalance", b"{" + b" " * 1_100_000 + b"}", 413, "RequestEntityTooLarge"),
    ],
)
def test_malformed_requests_get_json_errors(server, operation, body, status, error_type):
    r = raw_call(server.url, server.access_key_id, server.secret_access_key, operation, body)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert r.json()["__type"].rsplit("#", 1)[-1] == error_type
    assert r.json()["Message"]


@pytest.mark.slow
def test_wrong_target_prefix_is_unknown_operation(server):
    r = raw_call(server.url, server.access_key_id, server.secret_access_key, "GetHIT",
                 b"{}", target="SomeOtherService.GetHIT")
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException"


@pytest.mark.slow
def test_auto_approval_applied_on_read_and_charged(server, mturk):
    before = Decimal(mturk.get_account_balance()["AvailableBalance"])
    type_id = mturk.create_hit_type(Title="auto", Description="auto-approved", Reward="0.07",
                                    AssignmentDurationInSeconds=600,
                                    AutoApprovalDelayInSeconds=0)["HITTypeId"]
    hit_id = mturk.create_hit_with_hit_type(HITTypeId=type_id, LifetimeInSeconds=600,
                                            MaxAssignments=12, Question=question())["HIT"]["HITId"]
    aid = _work(server, "WAUTO", hit_id, shared="yes")
    [a] = mturk.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert a["AssignmentId"] == aid and a["AssignmentStatus"] == "Approved"
    assert a["ApprovalTime"] == a["AutoApprovalTime"]
    # 12 assignments per HIT: the 40% fee applies (tasks.cost as the reference).
    expected = before - estimate_cost(1, 12, "0.07").total / 12
    assert Decimal(mturk.get_account_balance()["AvailableBalance"]) == expected


@pytest.mark.slow
def test_serve_subprocess_as_the_cli_runs_it(tmp_path):
    db = tmp_path / "cli.sqlite"
    with start_server(db, threads=2, subprocess=True) as srv:
        client = srv.boto3_client()
        assert client.get_account_balance()["AvailableBalance"] == "10000.00"
        _, [hit_id] = create_batch(client, 1, 1, title="subprocess")
        aid = _work(srv, "WSUB", hit_id, shared="yes")
        [a] = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
        assert a["AssignmentId"] == aid
        log = Path(srv.log_path).read_text()
    assert srv.secret_access_key not in log and srv.admin_password not in log
    assert not Path(srv.log_path).exists()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.slow
def test_list_bonus_payments_and_review_status(server, mturk):
    _, [hit_id] = create_batch(mturk, 1, 2, reward="0.20", title="bonus listing")
    aids = [_work(server, w, hit_id, shared="yes", description=w) for w in ("BL1", "BL2")]
    for i, aid in enumerate(aids * 2):
        mturk.send_bonus(WorkerId=("BL1", "BL2")[i % 2], AssignmentId=aid,
                         BonusAmount=f"0.{i + 1}0", Reason=f"r{i}", UniqueRequestToken=f"bl-{i}")
    pages = mturk.get_paginator("list_bonus_payments").paginate(
        HITId=hit_id, PaginationConfig={"PageSize": 3})
    paid = [b for page in pages for b in page["BonusPayments"]]
    assert [b["BonusAmount"] for b in paid] == ["0.10", "0.20", "0.30", "0.40"]
    assert [b["Reason"] for b in paid] == ["r0", "r1", "r2", "r3"]
    one = mturk.list_bonus_payments(AssignmentId=aids[0])["BonusPayments"]
    assert [b["BonusAmount"] for b in one] == ["0.10", "0.30"]
    with pytest.raises(mturk.exceptions.RequestError, match="exactly one"):
        mturk.list_bonus_payments()
    mturk.update_hit_review_status(HITId=hit_id)
    assert mturk.get_hit(HITId=hit_id)["HIT"]["HITReviewStatus"] == "MarkedForReview"
    mturk.update_hit_review_status(HITId=hit_id, Revert=True)
    assert mturk.get_hit(HITId=hit_id)["HIT"]["HITReviewStatus"] == "NotReviewed"


def test_create_additional_assignments_reopens_a_full_hit_once_per_token(server, mturk):
    _, [hit_id] = create_batch(mturk, 1, 2, title="extended batch")
    _work(server, "WE1", hit_id, shared="yes")
    _work(server, "WE2", hit_id, shared="no")
    hit = mturk.get_hit(HITId=hit_id)["HIT"]
    assert hit["HITStatus"] == "Reviewable" and hit["NumberOfAssignmentsAvailable"] == 0
    assert accept(server.worker_session("WE3"), server.url, hit_id)[0] != 303  # full
    mturk.create_additional_assignments_for_hit(HITId=hit_id, NumberOfAdditionalAssignments=1,
                                                UniqueRequestToken="extend-1")
    hit = mturk.get_hit(HITId=hit_id)["HIT"]
    assert (hit["MaxAssignments"], hit["NumberOfAssignmentsAvailable"]) == (3, 1)
    assert hit["HITStatus"] == "Assignable"
    with pytest.raises(mturk.exceptions.RequestError) as err:  # a retried call adds nothing
        mturk.create_additional_assignments_for_hit(
            HITId=hit_id, NumberOfAdditionalAssignments=1, UniqueRequestToken="extend-1")
    assert err.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.ExtendHITAlreadyExists"
    assert mturk.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"] == 3
    _work(server, "WE3", hit_id, shared="yes")
    got = mturk.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert sorted(a["WorkerId"] for a in got) == ["WE1", "WE2", "WE3"]
    # MTurk: a HIT created with fewer than 10 assignments never reaches 10 (9 is allowed).
    mturk.create_additional_assignments_for_hit(HITId=hit_id, NumberOfAdditionalAssignments=6)
    assert mturk.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"] == 9
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.create_additional_assignments_for_hit(HITId=hit_id,
                                                    NumberOfAdditionalAssignments=1)
    assert err.value.response["TurkErrorCode"] == \
        "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease"
    assert "created with 2 assignments" in err.value.response["Error"]["Message"]
    assert mturk.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"] == 9
    _, [big] = create_batch(mturk, 1, 10, title="big batch")
    mturk.create_additional_assignments_for_hit(HITId=big, NumberOfAdditionalAssignments=5)
    assert mturk.get_hit(HITId=big)["HIT"]["MaxAssignments"] == 15
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.create_additional_assignments_for_hit(HITId="NOSUCHHIT",
                                                    NumberOfAdditionalAssignments=1)
    assert err.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"
