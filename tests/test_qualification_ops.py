"""The requester's qualification operations (tasks/server/qualification_ops.py) as MTurk
answers them, in-process on a real SQLite store.

Each call goes through the server's own parameter checks (validate_params, botocore's model)
and then the operation, as the API view runs it; a few go over the app's test client as signed
JSON 1.1 requests, parsed as botocore parses them. test_server_qualifications.py drives the same
operations through boto3 against a live server (marked slow); these pin every field of the
answers, the defaults (IsRequestable false, AutoGrantedValue 1, IntegerValue 1, MaxResults 10),
the pagination (NextToken, MaxResults, NumResults), the refusals' messages and TurkErrorCodes,
the system types, who may be granted what, NotifyWorkers' stored messages and the operations
this server does not implement (``MTURK.md``; botocore's MTurk model).
"""

from __future__ import annotations

import json
import re
import time
from base64 import b64encode

import pytest
from botocore.parsers import create_parser
from helpers_server import APP_CONFIG, TARGET, make_app, signed_headers

from tasks.server import api
from tasks.server.errors import RequestError
from tasks.server.qualification_ops import QUALIFICATION_OPERATIONS, UNSUPPORTED, unsupported
from tasks.server.qualifications import (
    ADULT,
    APPROVAL_RATE,
    APPROVED_HITS,
    LOCALE,
    MASTERS,
    SYSTEM_TYPES,
)
from tasks.server.storage import Storage, issue_worker_token
from tasks.server.validation import service_model, validate_params

MODEL = service_model()
NO_TYPE = "AWS.MechanicalTurk.QualificationTypeDoesNotExist"
NOT_HELD = "AWS.MechanicalTurk.QualificationDoesNotExist"
DENIED = "AWS.MechanicalTurk.PermissionDenied"
UNSUPPORTED_CODE = "AWS.MechanicalTurk.UnsupportedOperation"
TYPE_FIELDS = {"QualificationTypeId", "CreationTime", "Name", "Description", "Keywords",
               "QualificationTypeStatus", "IsRequestable", "AutoGranted"}
MISSING = "3NOSUCHTYPE000000000"
NOT_GRANTABLE = ("QualificationType {} is computed by the server (approval rate, approved HITs) "
                 "or set by the admin (Locale: POST /admin/api/workers)")
TESTS_REFUSED = ("Qualification tests (Test, AnswerKey) are not supported by this server; grant "
                 "qualifications with AssociateQualificationWithWorker")


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def store(app):
    return app.extensions["sparse_probe_storage"]


def call(store: Storage, operation: str, **params) -> dict:
    """One operation as the server runs it: MTurk's parameter checks, then the operation."""
    answer = QUALIFICATION_OPERATIONS[operation](store, validate_params(operation, params))
    _conforms(answer, MODEL.operation_model(operation).output_shape)
    return answer


def refused(store: Storage, operation: str, **params) -> tuple[str, str | None]:
    """``(Message, TurkErrorCode)`` of an operation that must be refused."""
    with pytest.raises(RequestError) as err:
        call(store, operation, **params)
    return err.value.message, err.value.turk_code


def _conforms(value, shape) -> None:
    """Every key of an answer is a member of botocore's output shape (recursively), with the
    shape's JSON type: what MTurk's clients read."""
    kinds = {"string": str, "boolean": bool, "integer": int, "long": int, "timestamp": float,
             "structure": dict, "list": list}
    if shape.type_name == "timestamp":
        assert isinstance(value, int | float) and not isinstance(value, bool), value
        return
    assert isinstance(value, kinds[shape.type_name]), (shape.name, value)
    if shape.type_name in ("integer", "long"):
        assert not isinstance(value, bool), (shape.name, value)
    if shape.type_name == "structure":
        assert set(value) <= set(shape.members), (shape.name, set(value) - set(shape.members))
        for key, item in value.items():
            _conforms(item, shape.members[key])
    elif shape.type_name == "list":
        for item in value:
            _conforms(item, shape.member)


def create(store: Storage, name: str, **params) -> dict:
    return call(store, "CreateQualificationType", Name=name,
                Description=params.pop("Description", f"about {name}"),
                QualificationTypeStatus=params.pop("QualificationTypeStatus", "Active"),
                **params)["QualificationType"]


def pages(store: Storage, operation: str, key: str, **params) -> list[dict]:
    """Every page of a list operation, following NextToken; each page's NumResults checked."""
    out, token = [], None
    while True:
        page = call(store, operation, **params, **({"NextToken": token} if token else {}))
        assert page["NumResults"] == len(page[key])
        out.append(page)
        token = page.get("NextToken")
        if token is None:
            return out


def _system(type_id: str) -> dict:
    name, description = SYSTEM_TYPES[type_id]
    return {"QualificationTypeId": type_id, "CreationTime": 0.0, "Name": name,
            "Description": description, "Keywords": "system",
            "QualificationTypeStatus": "Active", "IsRequestable": False, "AutoGranted": False}


# ------------------------------------------------------------------------ types: create, get
def test_create_answers_every_field_with_mturks_defaults(store):
    before = time.time()
    plain = create(store, "Trained", Description="passed training")
    after = time.time()
    assert set(plain) == TYPE_FIELDS  # no RetryDelayInSeconds, no AutoGrantedValue
    assert re.fullmatch("[A-Z2-7]{30}", plain["QualificationTypeId"])
    assert before <= plain["CreationTime"] <= after
    assert {k: v for k, v in plain.items() if k not in ("QualificationTypeId", "CreationTime")} \
        == {"Name": "Trained", "Description": "passed training", "Keywords": "",
            "QualificationTypeStatus": "Active", "IsRequestable": False, "AutoGranted": False}
    assert call(store, "GetQualificationType", QualificationTypeId=plain[
        "QualificationTypeId"]) == {"QualificationType": plain}

    auto = create(store, "Everyone", Keywords="labels, images", RetryDelayInSeconds=3600,
                  AutoGranted=True)
    assert auto["Keywords"] == "labels, images" and auto["RetryDelayInSeconds"] == 3600
    assert auto["AutoGranted"] is True and auto["AutoGrantedValue"] == 1  # MTurk's default
    assert auto["IsRequestable"] is False
    valued = create(store, "Seven", QualificationTypeStatus="Inactive", AutoGranted=True,
                    AutoGrantedValue=7, RetryDelayInSeconds=0)
    assert valued["AutoGrantedValue"] == 7 and valued["RetryDelayInSeconds"] == 0
    assert valued["QualificationTypeStatus"] == "Inactive"
    unused = create(store, "Not auto", AutoGranted=False, AutoGrantedValue=5)
    assert unused["AutoGranted"] is False and "AutoGrantedValue" not in unused
    for qt in (auto, valued, unused):
        assert call(store, "GetQualificationType", QualificationTypeId=qt[
            "QualificationTypeId"]) == {"QualificationType": qt}


def test_create_refuses_a_taken_name_and_qualification_tests(store):
    create(store, "Trained")
    assert refused(store, "CreateQualificationType", Name="Trained", Description="again",
                   QualificationTypeStatus="Active") == (
        "You have already created a QualificationType with the name 'Trained'.",
        "AWS.MechanicalTurk.QualificationTypeAlreadyExists")
    for test in ({"Test": "<QuestionForm/>"}, {"AnswerKey": "<AnswerKey/>"},
                 {"TestDurationInSeconds": 60}):
        assert refused(store, "CreateQualificationType", Name="With a test",
                       Description="x", QualificationTypeStatus="Active", **test) == (
            TESTS_REFUSED, UNSUPPORTED_CODE), test
    owned = call(store, "ListQualificationTypes", MustBeRequestable=False,
                 MustBeOwnedByCaller=True)["QualificationTypes"]
    assert [q["Name"] for q in owned] == ["Trained"]  # nothing was created by the refusals


def test_get_answers_system_types_and_refuses_unknown_and_deleted_ones(store):
    assert len(SYSTEM_TYPES) == 6
    assert call(store, "GetQualificationType", QualificationTypeId=LOCALE) == {
        "QualificationType": {
            "QualificationTypeId": LOCALE, "CreationTime": 0.0, "Name": "Worker_Locale",
            "Description": "The worker's location (country and subdivision)",
            "Keywords": "system", "QualificationTypeStatus": "Active", "IsRequestable": False,
            "AutoGranted": False}}
    for type_id in SYSTEM_TYPES:
        assert call(store, "GetQualificationType", QualificationTypeId=type_id) == {
            "QualificationType": _system(type_id)}
    assert refused(store, "GetQualificationType", QualificationTypeId=MISSING) == (
        f"QualificationType {MISSING} does not exist.", NO_TYPE)
    gone = create(store, "Gone")["QualificationTypeId"]
    assert call(store, "DeleteQualificationType", QualificationTypeId=gone) == {}
    assert refused(store, "GetQualificationType", QualificationTypeId=gone) == (
        f"QualificationType {gone} does not exist.", NO_TYPE)
    assert refused(store, "DeleteQualificationType", QualificationTypeId=gone) == (
        f"QualificationType {gone} does not exist.", NO_TYPE)


# --------------------------------------------------------------------------------- list types
def test_list_types_pages_through_system_and_own_types_in_id_order(store):
    own = [create(store, f"Type {i}") for i in range(5)]
    expected = sorted([_system(t) for t in SYSTEM_TYPES] + own,
                      key=lambda q: q["QualificationTypeId"])
    assert len(expected) == 11
    got = pages(store, "ListQualificationTypes", "QualificationTypes", MustBeRequestable=False,
                MaxResults=3)
    assert [p["NumResults"] for p in got] == [3, 3, 3, 2]
    assert [q for p in got for q in p["QualificationTypes"]] == expected
    # the first page ends on a system type: the next one starts after it
    assert got[0]["QualificationTypes"][-1]["QualificationTypeId"] in SYSTEM_TYPES
    exact = call(store, "ListQualificationTypes", MustBeRequestable=False, MaxResults=11)
    assert exact == {"NumResults": 11, "QualificationTypes": expected}  # no NextToken
    default = call(store, "ListQualificationTypes", MustBeRequestable=False)
    assert default["NumResults"] == 10 and default["QualificationTypes"] == expected[:10]
    rest = call(store, "ListQualificationTypes", MustBeRequestable=False,
                NextToken=default["NextToken"])
    assert rest == {"NumResults": 1, "QualificationTypes": expected[10:]}
    mine = pages(store, "ListQualificationTypes", "QualificationTypes", MustBeRequestable=False,
                 MustBeOwnedByCaller=True, MaxResults=2)
    assert [p["NumResults"] for p in mine] == [2, 2, 1]
    assert [q for p in mine for q in p["QualificationTypes"]] == sorted(
        own, key=lambda q: q["QualificationTypeId"])
    assert call(store, "ListQualificationTypes", MustBeRequestable=False,
                MustBeOwnedByCaller=False, MaxResults=100)["NumResults"] == 11


def test_list_types_refuses_bad_page_sizes_and_tokens(store):
    for size in (0, 101):
        assert refused(store, "ListQualificationTypes", MustBeRequestable=False,
                       MaxResults=size)[1] == "AWS.ParameterOutOfRange"
    for token in ("not a token", b64encode(b"[1]").decode(), b64encode(b'["a", "b"]').decode()):
        assert refused(store, "ListQualificationTypes", MustBeRequestable=False,
                       NextToken=token) == ("NextToken is invalid or expired",
                                            "AWS.ParameterOutOfRange")


def test_no_type_is_requestable_on_this_server(store):
    create(store, "Everyone", AutoGranted=True)
    assert call(store, "ListQualificationTypes", MustBeRequestable=True) == {
        "NumResults": 0, "QualificationTypes": []}
    assert call(store, "ListQualificationTypes", MustBeRequestable=True,
                MustBeOwnedByCaller=True, Query="every") == {
        "NumResults": 0, "QualificationTypes": []}


def _ids(store: Storage, **params) -> list[str]:
    return [q["QualificationTypeId"] for p in pages(
        store, "ListQualificationTypes", "QualificationTypes", MustBeRequestable=False, **params)
        for q in p["QualificationTypes"]]


def test_list_types_query_searches_names_descriptions_and_keywords(store):
    by_name = create(store, "Skilled labeller")["QualificationTypeId"]
    by_description = create(store, "Second", Description="Labels images")["QualificationTypeId"]
    by_keywords = create(store, "Third", Keywords="LABELS, cats")["QualificationTypeId"]
    create(store, "Unrelated", Description="nothing here")
    assert _ids(store, Query="label") == sorted([by_name, by_description, by_keywords])
    assert _ids(store, Query="label", MustBeOwnedByCaller=True, MaxResults=1) == sorted(
        [by_name, by_description, by_keywords])
    assert _ids(store, Query="Locale") == [LOCALE]  # a system type by its name
    assert _ids(store, Query="PERCENTAGE") == [APPROVAL_RATE]  # by its description only
    assert _ids(store, Query="masters") == sorted(MASTERS)
    workers = sorted([APPROVAL_RATE, APPROVED_HITS, LOCALE, ADULT])
    assert _ids(store, Query="WORKER_") == workers
    assert _ids(store, Query="worker_", MaxResults=1) == workers  # filtered after the cursor
    assert _ids(store, Query="zzz") == []
    assert _ids(store, Query="") == sorted([*SYSTEM_TYPES, by_name, by_description, by_keywords,
                                            _ids(store, Query="unrelated")[0]])
    # a system type answers Keywords "system": a search finds it by them, as a requester's own
    assert _ids(store, Query="system") == sorted(SYSTEM_TYPES)
    assert _ids(store, Query="label", MustBeOwnedByCaller=False) == sorted(
        [by_name, by_description, by_keywords])
    assert _ids(store, Query="Locale", MustBeOwnedByCaller=True) == []


# ----------------------------------------------------------------------- types: update, delete
def test_update_changes_what_mturk_lets_change(store):
    qt = create(store, "Trained", Keywords="labels", Description="before")
    type_id = qt["QualificationTypeId"]
    assert call(store, "UpdateQualificationType", QualificationTypeId=type_id) == {
        "QualificationType": qt}  # nothing asked, nothing changed
    updated = call(store, "UpdateQualificationType", QualificationTypeId=type_id,
                   Description="after", QualificationTypeStatus="Inactive",
                   RetryDelayInSeconds=60, AutoGranted=True, AutoGrantedValue=3
                   )["QualificationType"]
    assert updated == {**qt, "Description": "after", "QualificationTypeStatus": "Inactive",
                       "RetryDelayInSeconds": 60, "AutoGranted": True, "AutoGrantedValue": 3}
    assert call(store, "GetQualificationType", QualificationTypeId=type_id) == {
        "QualificationType": updated}
    off = call(store, "UpdateQualificationType", QualificationTypeId=type_id,
               AutoGranted=False)["QualificationType"]
    assert off == {k: v for k, v in {**updated, "AutoGranted": False}.items()
                   if k != "AutoGrantedValue"}
    value_only = call(store, "UpdateQualificationType", QualificationTypeId=type_id,
                      AutoGrantedValue=9, AutoGranted=True)["QualificationType"]
    assert value_only["AutoGrantedValue"] == 9
    for test in ({"Test": "<QuestionForm/>"}, {"AnswerKey": "<AnswerKey/>"},
                 {"TestDurationInSeconds": 60}):
        assert refused(store, "UpdateQualificationType", QualificationTypeId=type_id,
                       Description="changed", **test) == (TESTS_REFUSED, UNSUPPORTED_CODE)
    assert call(store, "GetQualificationType", QualificationTypeId=type_id)[
        "QualificationType"]["Description"] == "after"  # the refused updates changed nothing


def test_system_types_cannot_be_changed_and_unknown_ones_do_not_exist(store):
    for type_id in SYSTEM_TYPES:
        message = f"QualificationType {type_id} is a system type and cannot be changed"
        assert refused(store, "UpdateQualificationType", QualificationTypeId=type_id,
                       Description="x") == (message, DENIED)
        assert refused(store, "DeleteQualificationType", QualificationTypeId=type_id) == (
            message, DENIED)
    assert refused(store, "UpdateQualificationType", QualificationTypeId=MISSING,
                   Description="x") == (f"QualificationType {MISSING} does not exist.", NO_TYPE)
    assert refused(store, "DeleteQualificationType", QualificationTypeId=MISSING) == (
        f"QualificationType {MISSING} does not exist.", NO_TYPE)


def test_delete_takes_the_type_and_its_scores(store):
    type_id = create(store, "Trained")["QualificationTypeId"]
    call(store, "AssociateQualificationWithWorker", QualificationTypeId=type_id, WorkerId="W1",
         IntegerValue=5)
    assert call(store, "DeleteQualificationType", QualificationTypeId=type_id) == {}
    assert store.worker_qualification(type_id, "W1") is None
    assert _ids(store, MustBeOwnedByCaller=True) == []
    assert refused(store, "UpdateQualificationType", QualificationTypeId=type_id,
                   Description="x") == (f"QualificationType {type_id} does not exist.", NO_TYPE)
    # the name is free again
    assert create(store, "Trained")["QualificationTypeId"] != type_id


class _DeletedMeanwhile(Storage):
    """A store on which another requester's DeleteQualificationType lands right after the
    operation has looked the type up: between its check and its write."""

    def qualification_type(self, qualification_type_id):
        row = super().qualification_type(qualification_type_id)
        if row is not None:
            self.delete_qualification_type(qualification_type_id)
        return row


def test_a_type_deleted_meanwhile_does_not_exist(tmp_path):
    store = _DeletedMeanwhile(f"sqlite:///{tmp_path / 'server.sqlite'}")
    store.init(balance_cents=0)
    try:
        for operation, extra in (("UpdateQualificationType", {"Description": "x"}),
                                 ("DeleteQualificationType", {})):
            type_id = create(store, f"for {operation}")["QualificationTypeId"]
            assert refused(store, operation, QualificationTypeId=type_id, **extra) == (
                f"QualificationType {type_id} does not exist.", NO_TYPE)
    finally:
        store.dispose()


# ------------------------------------------------------------------------- granting, revoking
def test_who_may_be_granted_what(store):
    for type_id in (APPROVAL_RATE, APPROVED_HITS, LOCALE):
        for operation in ("AssociateQualificationWithWorker",
                          "DisassociateQualificationFromWorker"):
            assert refused(store, operation, QualificationTypeId=type_id, WorkerId="W1") == (
                NOT_GRANTABLE.format(type_id), DENIED), (operation, type_id)
    for type_id in (*MASTERS, ADULT):  # MTurk grants these itself; this server lets you
        assert call(store, "AssociateQualificationWithWorker", QualificationTypeId=type_id,
                    WorkerId="W1") == {}
        score = call(store, "GetQualificationScore", QualificationTypeId=type_id,
                     WorkerId="W1")["Qualification"]
        assert score["IntegerValue"] == 1  # IntegerValue's default
    own = create(store, "Trained")["QualificationTypeId"]
    call(store, "AssociateQualificationWithWorker", QualificationTypeId=own, WorkerId="W1",
         IntegerValue=90, SendNotification=False)
    call(store, "AssociateQualificationWithWorker", QualificationTypeId=own, WorkerId="W1",
         IntegerValue=-3)  # a second grant changes the value
    assert call(store, "GetQualificationScore", QualificationTypeId=own, WorkerId="W1")[
        "Qualification"]["IntegerValue"] == -3
    call(store, "DeleteQualificationType", QualificationTypeId=own)
    for type_id in (MISSING, own):
        for operation in ("AssociateQualificationWithWorker",
                          "DisassociateQualificationFromWorker"):
            assert refused(store, operation, QualificationTypeId=type_id, WorkerId="W1") == (
                f"QualificationType {type_id} does not exist.", NO_TYPE)
    assert store.worker_qualification(MISSING, "W1") is None


def test_disassociate_revokes_and_refuses_what_is_not_held(store):
    own = create(store, "Trained")["QualificationTypeId"]
    for type_id in (own, MASTERS[0]):
        call(store, "AssociateQualificationWithWorker", QualificationTypeId=type_id,
             WorkerId="W1", IntegerValue=7)
        call(store, "AssociateQualificationWithWorker", QualificationTypeId=type_id,
             WorkerId="W2", IntegerValue=8)
        assert call(store, "DisassociateQualificationFromWorker", QualificationTypeId=type_id,
                    WorkerId="W1", Reason="left the project") == {}
        message = f"Worker W1 does not hold QualificationType {type_id}"
        assert refused(store, "GetQualificationScore", QualificationTypeId=type_id,
                       WorkerId="W1") == (message, NOT_HELD)
        assert refused(store, "DisassociateQualificationFromWorker",
                       QualificationTypeId=type_id, WorkerId="W1") == (message, NOT_HELD)
        assert [q["WorkerId"] for q in call(
            store, "ListWorkersWithQualificationType", QualificationTypeId=type_id)[
            "Qualifications"]] == ["W2"]


# ----------------------------------------------------------------------------- list workers
def _grant_all(store: Storage, type_id: str, n: int) -> tuple[list[str], float, float]:
    workers = [f"W{i:02d}" for i in range(n)]
    before = time.time()
    for i, w in enumerate(reversed(workers)):
        call(store, "AssociateQualificationWithWorker", QualificationTypeId=type_id,
             WorkerId=w, IntegerValue=i)
    return workers, before, time.time()


def test_list_workers_pages_every_field_in_worker_order(store):
    type_id = create(store, "Trained")["QualificationTypeId"]
    workers, before, after = _grant_all(store, type_id, 7)
    got = pages(store, "ListWorkersWithQualificationType", "Qualifications",
                QualificationTypeId=type_id, MaxResults=3)
    assert [p["NumResults"] for p in got] == [3, 3, 1]
    listed = [q for p in got for q in p["Qualifications"]]
    assert [q["WorkerId"] for q in listed] == workers
    for i, q in enumerate(listed):
        assert set(q) == {"QualificationTypeId", "WorkerId", "GrantTime", "Status",
                          "IntegerValue"}
        assert q["QualificationTypeId"] == type_id and q["Status"] == "Granted"
        assert q["IntegerValue"] == 6 - i and before <= q["GrantTime"] <= after
        # GetQualificationScore answers the same, stored grant time included
        assert call(store, "GetQualificationScore", QualificationTypeId=type_id,
                    WorkerId=q["WorkerId"]) == {"Qualification": q}
    exact = call(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                 MaxResults=7)
    assert exact == {"NumResults": 7, "Qualifications": listed}  # no NextToken
    assert call(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                Status="Granted", MaxResults=100) == exact
    assert call(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                Status="Revoked") == {"NumResults": 0, "Qualifications": []}


def test_list_workers_default_page_and_types(store):
    type_id = create(store, "Trained")["QualificationTypeId"]
    workers, _, _ = _grant_all(store, type_id, 11)
    first = call(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id)
    assert [q["WorkerId"] for q in first["Qualifications"]] == workers[:10]
    assert first["NumResults"] == 10
    rest = call(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                NextToken=first["NextToken"])
    assert [q["WorkerId"] for q in rest["Qualifications"]] == workers[10:]
    assert "NextToken" not in rest
    assert refused(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                   NextToken="bogus") == ("NextToken is invalid or expired",
                                          "AWS.ParameterOutOfRange")
    for size in (0, 101):
        assert refused(store, "ListWorkersWithQualificationType", QualificationTypeId=type_id,
                       MaxResults=size)[1] == "AWS.ParameterOutOfRange"
    # system types: those granted are listed, computed ones hold no grants
    call(store, "AssociateQualificationWithWorker", QualificationTypeId=MASTERS[1],
         WorkerId="M1")
    masters = call(store, "ListWorkersWithQualificationType", QualificationTypeId=MASTERS[1])
    assert [(q["WorkerId"], q["IntegerValue"]) for q in masters["Qualifications"]] == [
        ("M1", 1)]
    assert call(store, "ListWorkersWithQualificationType",
                QualificationTypeId=APPROVAL_RATE) == {"NumResults": 0, "Qualifications": []}
    assert refused(store, "ListWorkersWithQualificationType", QualificationTypeId=MISSING) == (
        f"QualificationType {MISSING} does not exist.", NO_TYPE)


def _set_locale(app, worker_id: str, locale: str) -> None:
    """The admin's way to give a worker a Locale (POST /admin/api/workers)."""
    r = app.test_client().post("/admin/api/workers", json={"worker_id": worker_id,
                                                           "locale": locale},
                               auth=(APP_CONFIG["ADMIN_USER"], APP_CONFIG["ADMIN_PASSWORD"]))
    assert r.status_code == 201, r.data


def test_locale_scores_and_holders(app, store):
    assert refused(store, "GetQualificationScore", QualificationTypeId=LOCALE,
                   WorkerId="LW_DE") == (f"Worker LW_DE does not hold QualificationType {LOCALE}",
                                         NOT_HELD)
    before = time.time()
    _set_locale(app, "LW_DE", "DE")
    _set_locale(app, "LW_US", "US-NY")
    after = time.time()
    de = call(store, "GetQualificationScore", QualificationTypeId=LOCALE, WorkerId="LW_DE")
    assert set(de["Qualification"]) == {"QualificationTypeId", "WorkerId", "GrantTime",
                                        "Status", "LocaleValue"}  # no IntegerValue
    assert de["Qualification"]["LocaleValue"] == {"Country": "DE"}  # no Subdivision
    assert before <= de["Qualification"]["GrantTime"] <= after
    us = call(store, "GetQualificationScore", QualificationTypeId=LOCALE, WorkerId="LW_US")
    assert us["Qualification"]["LocaleValue"] == {"Country": "US", "Subdivision": "NY"}
    listed = call(store, "ListWorkersWithQualificationType", QualificationTypeId=LOCALE)
    assert listed == {"NumResults": 2, "Qualifications": [de["Qualification"],
                                                          us["Qualification"]]}


def test_scores_of_computed_and_auto_granted_types(store):
    before = time.time()
    rate = call(store, "GetQualificationScore", QualificationTypeId=APPROVAL_RATE,
                WorkerId="FRESH")["Qualification"]
    approved = call(store, "GetQualificationScore", QualificationTypeId=APPROVED_HITS,
                    WorkerId="FRESH")["Qualification"]
    after = time.time()
    for score, value, type_id in ((rate, 100, APPROVAL_RATE), (approved, 0, APPROVED_HITS)):
        assert before <= score.pop("GrantTime") <= after  # computed now
        assert score == {"QualificationTypeId": type_id, "WorkerId": "FRESH",
                         "Status": "Granted", "IntegerValue": value}
    auto = create(store, "Everyone", AutoGranted=True, AutoGrantedValue=5)["QualificationTypeId"]
    before = time.time()
    score = call(store, "GetQualificationScore", QualificationTypeId=auto,
                 WorkerId="ANYONE")["Qualification"]
    assert before <= score.pop("GrantTime") <= time.time()
    assert score == {"QualificationTypeId": auto, "WorkerId": "ANYONE", "Status": "Granted",
                     "IntegerValue": 5}
    own = create(store, "Trained")["QualificationTypeId"]
    assert refused(store, "GetQualificationScore", QualificationTypeId=own,
                   WorkerId="ANYONE") == (f"Worker ANYONE does not hold QualificationType {own}",
                                          NOT_HELD)
    assert refused(store, "GetQualificationScore", QualificationTypeId=MISSING,
                   WorkerId="ANYONE") == (f"QualificationType {MISSING} does not exist.",
                                          NO_TYPE)


# ----------------------------------------------------------------------- notify, unsupported
def test_notify_workers_stores_the_message_and_reports_unknown_workers(store):
    for w in ("NW1", "NW2"):
        issue_worker_token(store, w)
    before = time.time()
    out = call(store, "NotifyWorkers", Subject="Thanks", MessageText="New batch tomorrow",
               WorkerIds=["NW1", "NOBODY", "NW1", "NW2", "NOBODY"])
    after = time.time()
    assert out == {"NotifyWorkersFailureStatuses": [
        {"NotifyWorkersFailureCode": "HardFailure",
         "NotifyWorkersFailureMessage": "Worker NOBODY does not exist on this server",
         "WorkerId": "NOBODY"}]}
    for w in ("NW1", "NW2"):
        [message] = store.messages(w)  # once, though named twice
        assert (message.subject, message.message) == ("Thanks", "New batch tomorrow")
        assert before <= message.sent_time <= after
    assert store.messages("NOBODY") == []
    assert call(store, "NotifyWorkers", Subject="s", MessageText="m", WorkerIds=["NW2"]) == {
        "NotifyWorkersFailureStatuses": []}
    assert [m.subject for m in store.messages("NW2")] == ["s", "Thanks"]


def test_unsupported_operations_answer_mturks_error(store):
    assert set(UNSUPPORTED) <= set(MODEL.operation_names)
    assert set(QUALIFICATION_OPERATIONS) <= set(api.OPERATIONS)
    assert set(api.OPERATIONS) == set(MODEL.operation_names)  # every operation is answered
    for operation in UNSUPPORTED:
        run = api.OPERATIONS[operation]
        assert run.__name__ == operation
        with pytest.raises(RequestError) as err:
            run(store, {})
        assert (err.value.message, err.value.turk_code) == (
            f"{operation} is not supported by this server", UNSUPPORTED_CODE)
    made = unsupported("SomeFutureOperation")  # the table's entries are made at import
    assert made.__name__ == "SomeFutureOperation"
    with pytest.raises(RequestError) as err:
        made(store, {"Anything": 1})
    assert (err.value.message, err.value.turk_code) == (
        "SomeFutureOperation is not supported by this server", UNSUPPORTED_CODE)


# ------------------------------------------------------------------------------ over the wire
def _wire(app, operation: str, params: dict) -> tuple[int, dict]:
    """A signed JSON 1.1 request through the app, as boto3 sends it; ``(status, parsed)``
    with the body parsed as botocore parses it (errors: the raw JSON)."""
    body = json.dumps(params).encode()
    headers = signed_headers("http://localhost", TARGET + operation, body,
                             APP_CONFIG["ACCESS_KEY_ID"], APP_CONFIG["SECRET_ACCESS_KEY"])
    r = app.test_client().post("/", data=body, headers=headers)
    if r.status_code != 200:
        return r.status_code, json.loads(r.data)
    shape = MODEL.operation_model(operation).output_shape
    return 200, create_parser("json").parse(
        {"status_code": 200, "headers": dict(r.headers), "body": r.data}, shape)


def test_answers_and_errors_over_the_wire(app):
    status, made = _wire(app, "CreateQualificationType", {
        "Name": "Wire", "Description": "d", "QualificationTypeStatus": "Active",
        "AutoGranted": True})
    assert status == 200
    qt = made["QualificationType"]
    assert qt["AutoGrantedValue"] == 1 and qt["IsRequestable"] is False
    assert qt["CreationTime"].year >= 2024  # botocore reads the epoch seconds as a timestamp
    status, listed = _wire(app, "ListQualificationTypes", {"MustBeRequestable": False,
                                                           "MaxResults": 2})
    assert status == 200 and listed["NumResults"] == 2 and listed["NextToken"]
    status, score = _wire(app, "GetQualificationScore", {
        "QualificationTypeId": qt["QualificationTypeId"], "WorkerId": "AW1"})
    assert status == 200 and score["Qualification"]["IntegerValue"] == 1  # auto-granted
    status, err = _wire(app, "GetQualificationType", {"QualificationTypeId": MISSING})
    assert (status, err) == (400, {
        "__type": "com.amazonaws.mechanicalturk.requester#RequestError",
        "Message": f"QualificationType {MISSING} does not exist.", "TurkErrorCode": NO_TYPE})
    status, err = _wire(app, "ListWorkerBlocks", {})
    assert (status, err["TurkErrorCode"]) == (400, UNSUPPORTED_CODE)
    assert err["Message"] == "ListWorkerBlocks is not supported by this server"
