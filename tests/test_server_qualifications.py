"""Qualifications on the task server through unmodified boto3: the requester's operations,
the system types the publisher uses, and their enforcement when a worker lists, previews and
accepts a HIT."""

from __future__ import annotations

import pytest
import requests
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import accept, question, submit

from tasks.publish import QUALIFICATION_IDS
from tasks.server.live import start_server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory, request):
    db = tmp_path_factory.mktemp("quals") / "server.sqlite"
    url = None if request.param == "sqlite" else request.getfixturevalue(
        "pg_cluster").create_database()
    with start_server(None if url else db, database_url=url, threads=4,
                      config={"MIN_DURATION_SECONDS": 1}) as srv:
        yield srv


@pytest.fixture(scope="module")
def mturk(server):
    return server.boto3_client()


def _hit(mturk, requirements, title="q"):
    return mturk.create_hit(Title=title, Description="d", Reward="0.05", LifetimeInSeconds=600,
                            AssignmentDurationInSeconds=120, MaxAssignments=5,
                            Question=question(), QualificationRequirements=requirements
                            )["HIT"]["HITId"]


def _listed(session, server):
    return {h["hit_id"] for h in session.get(f"{server.url}/worker/?format=json",
                                             timeout=30).json()["hits"]}


def _preview(session, server, hit_id):
    return session.get(f"{server.url}/worker/hits/{hit_id}/preview", timeout=30).status_code


@pytest.mark.slow
def test_qualification_type_lifecycle(mturk):
    qt = mturk.create_qualification_type(Name="Skilled labeller", Description="passed training",
                                         Keywords="labels", QualificationTypeStatus="Active"
                                         )["QualificationType"]
    tid = qt["QualificationTypeId"]
    assert qt["Name"] == "Skilled labeller" and qt["QualificationTypeStatus"] == "Active"
    assert mturk.get_qualification_type(QualificationTypeId=tid)["QualificationType"][
        "Description"] == "passed training"
    with pytest.raises(mturk.exceptions.RequestError, match="already created"):
        mturk.create_qualification_type(Name="Skilled labeller", Description="x",
                                        QualificationTypeStatus="Active")
    with pytest.raises(mturk.exceptions.RequestError, match="not supported"):
        mturk.create_qualification_type(Name="with test", Description="x",
                                        QualificationTypeStatus="Active", Test="<x/>",
                                        TestDurationInSeconds=60)
    owned = mturk.list_qualification_types(MustBeRequestable=False, MustBeOwnedByCaller=True,
                                           Query="labeller")["QualificationTypes"]
    assert [q["QualificationTypeId"] for q in owned] == [tid]
    system = mturk.list_qualification_types(MustBeRequestable=False, Query="Locale")
    assert QUALIFICATION_IDS["locale"] in [q["QualificationTypeId"]
                                          for q in system["QualificationTypes"]]
    updated = mturk.update_qualification_type(QualificationTypeId=tid, Description="new",
                                              QualificationTypeStatus="Inactive")
    assert updated["QualificationType"]["Description"] == "new"
    assert updated["QualificationType"]["QualificationTypeStatus"] == "Inactive"
    for w, v in (("QW1", 90), ("QW2", 10), ("QW3", 50)):
        mturk.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId=w,
                                                  IntegerValue=v, SendNotification=False)
    assert mturk.get_qualification_score(QualificationTypeId=tid, WorkerId="QW1")[
        "Qualification"]["IntegerValue"] == 90
    pages = mturk.get_paginator("list_workers_with_qualification_type").paginate(
        QualificationTypeId=tid, PaginationConfig={"PageSize": 2})
    assert [q["WorkerId"] for p in pages for q in p["Qualifications"]] == ["QW1", "QW2", "QW3"]
    mturk.disassociate_qualification_from_worker(QualificationTypeId=tid, WorkerId="QW2")
    with pytest.raises(mturk.exceptions.RequestError, match="does not hold"):
        mturk.get_qualification_score(QualificationTypeId=tid, WorkerId="QW2")
    with pytest.raises(mturk.exceptions.RequestError, match="computed by the server"):
        mturk.associate_qualification_with_worker(
            QualificationTypeId=QUALIFICATION_IDS["approval"], WorkerId="QW1", IntegerValue=1)
    mturk.delete_qualification_type(QualificationTypeId=tid)
    with pytest.raises(mturk.exceptions.RequestError, match="does not exist"):
        mturk.get_qualification_type(QualificationTypeId=tid)
    with pytest.raises(mturk.exceptions.RequestError, match="does not exist"):
        _hit(mturk, [{"QualificationTypeId": tid, "Comparator": "Exists"}])


@pytest.mark.slow
def test_custom_qualification_is_enforced_on_list_preview_and_accept(server, mturk):
    tid = mturk.create_qualification_type(Name="Trained", Description="d",
                                          QualificationTypeStatus="Active"
                                          )["QualificationType"]["QualificationTypeId"]
    guarded = _hit(mturk, [{"QualificationTypeId": tid, "Comparator": "GreaterThanOrEqualTo",
                            "IntegerValues": [80]}])
    hidden = _hit(mturk, [{"QualificationTypeId": tid, "Comparator": "Exists",
                           "ActionsGuarded": "DiscoverPreviewAndAccept"}])
    open_hit = _hit(mturk, [], title="open")
    s = server.worker_session("TW1")
    assert open_hit in _listed(s, server)
    assert guarded not in _listed(s, server) and hidden not in _listed(s, server)
    assert _preview(s, server, guarded) == 200  # Accept-guarded: preview is allowed
    assert _preview(s, server, hidden) == 403
    assert accept(s, server.url, guarded)[0] == 403
    assert accept(s, server.url, hidden)[0] == 403
    mturk.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId="TW1",
                                              IntegerValue=70)
    assert accept(s, server.url, guarded)[0] == 403  # 70 < 80
    assert accept(s, server.url, hidden)[0] == 303  # Exists
    mturk.associate_qualification_with_worker(QualificationTypeId=tid, WorkerId="TW1",
                                              IntegerValue=85)
    assert guarded in _listed(s, server)
    status, aid = accept(s, server.url, guarded)
    assert status == 303 and aid
    hit = mturk.get_hit(HITId=guarded)["HIT"]
    assert hit["NumberOfAssignmentsPending"] == 1


@pytest.mark.slow
def test_system_qualifications_locale_approval_rate_masters(server, mturk):
    locale_hit = _hit(mturk, [{"QualificationTypeId": QUALIFICATION_IDS["locale"],
                               "Comparator": "In",
                               "LocaleValues": [{"Country": "US"}, {"Country": "CA"}]}])
    masters = QUALIFICATION_IDS["masters"]["sandbox"]
    masters_hit = _hit(mturk, [{"QualificationTypeId": masters, "Comparator": "Exists"}])
    rate_hit = _hit(mturk, [{"QualificationTypeId": QUALIFICATION_IDS["approval"],
                             "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [95]}])
    auth = (server.admin_user, server.admin_password)
    tokens = {}
    for worker, locale in (("LW_US", "US-NY"), ("LW_DE", "DE")):
        r = requests.post(f"{server.url}/admin/api/workers", auth=auth, timeout=30,
                          json={"worker_id": worker, "locale": locale})
        assert r.status_code == 201, r.text
        tokens[worker] = r.json()["token"]
    bad = requests.post(f"{server.url}/admin/api/workers", auth=auth, timeout=30,
                        json={"worker_id": "LW_X", "locale": "usa"})
    assert bad.status_code == 400
    us = server.worker_session("LW_US", tokens["LW_US"])
    de = server.worker_session("LW_DE", tokens["LW_DE"])
    nobody = server.worker_session("LW_NONE")
    assert accept(de, server.url, locale_hit)[0] == 403
    assert accept(nobody, server.url, locale_hit)[0] == 403
    assert accept(us, server.url, locale_hit)[0] == 303
    score = mturk.get_qualification_score(QualificationTypeId=QUALIFICATION_IDS["locale"],
                                          WorkerId="LW_US")["Qualification"]
    assert score["LocaleValue"] == {"Country": "US", "Subdivision": "NY"}
    # Masters: granted by the requester on this server.
    assert accept(us, server.url, masters_hit)[0] == 403
    mturk.associate_qualification_with_worker(QualificationTypeId=masters, WorkerId="LW_US")
    assert accept(us, server.url, masters_hit)[0] == 303
    # Approval rate: 100 while nothing is reviewed; a rejection brings it under 95.
    assert mturk.get_qualification_score(QualificationTypeId=QUALIFICATION_IDS["approval"],
                                         WorkerId="LW_DE")["Qualification"]["IntegerValue"] == 100
    warmup = _hit(mturk, [], title="warm-up")
    status, aid = accept(de, server.url, warmup)
    assert status == 303
    assert submit(de, server.url, aid, a="x").status_code == 200
    mturk.reject_assignment(AssignmentId=aid, RequesterFeedback="no")
    assert mturk.get_qualification_score(QualificationTypeId=QUALIFICATION_IDS["approval"],
                                         WorkerId="LW_DE")["Qualification"]["IntegerValue"] == 0
    assert rate_hit not in _listed(de, server)
    assert accept(de, server.url, rate_hit)[0] == 403
    assert accept(us, server.url, rate_hit)[0] == 303


@pytest.mark.slow
def test_notify_workers_and_unsupported_operations(server, mturk):
    server.worker_session("NW1")
    out = mturk.notify_workers(Subject="Thanks", MessageText="New batch tomorrow",
                               WorkerIds=["NW1", "NOBODY"])
    assert [f["WorkerId"] for f in out["NotifyWorkersFailureStatuses"]] == ["NOBODY"]
    s = server.worker_session("NW1")
    listed = s.get(f"{server.url}/worker/?format=json", timeout=30).json()
    assert listed["messages"][0]["subject"] == "Thanks"
    assert "New batch tomorrow" in s.get(f"{server.url}/worker/", timeout=30).text
    with pytest.raises(mturk.exceptions.RequestError) as err:
        mturk.list_worker_blocks()
    assert err.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.UnsupportedOperation"


@pytest.mark.slow
def test_auto_granted_type_counts_as_held_by_everyone(server, mturk):
    tid = mturk.create_qualification_type(Name="Everyone", Description="auto",
                                          QualificationTypeStatus="Active", AutoGranted=True,
                                          AutoGrantedValue=5
                                          )["QualificationType"]["QualificationTypeId"]
    ok = _hit(mturk, [{"QualificationTypeId": tid, "Comparator": "EqualTo",
                       "IntegerValues": [5]}], title="auto ok")
    too_high = _hit(mturk, [{"QualificationTypeId": tid, "Comparator": "GreaterThan",
                             "IntegerValues": [5]}], title="auto high")
    s = server.worker_session("AG1")
    assert accept(s, server.url, ok)[0] == 303
    assert accept(s, server.url, too_high)[0] == 403
    assert mturk.get_qualification_score(QualificationTypeId=tid, WorkerId="AG1")[
        "Qualification"]["IntegerValue"] == 5
    # Switching auto-granting off takes it from those who never got a score of their own.
    mturk.update_qualification_type(QualificationTypeId=tid, AutoGranted=False)
    assert accept(server.worker_session("AG2"), server.url, ok)[0] == 403
