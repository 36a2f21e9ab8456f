"""The task server refuses submitted forms that do not answer its question schema (the one
schema the HIT templates render and analysis reads), on the Flask route and the fast path."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers_server import make_app, parse_answer_xml, question
from sqlalchemy import select

from sparse_probe.questions import default_schema
from tasks.server import issue_worker_token, mturk_ops
from tasks.server.cli import serve
from tasks.server.db import Assignment


def _valid_form(schema) -> dict[str, str]:
    form = {}
    for q in schema.questions:
        form[q.id] = "a magenta mark in the corner" if q.kind == "text" else q.allowed("image")[0]
    return form


@pytest.fixture(params=["flask", "fast-path"])
def setup(tmp_path, request):
    cfg = {"QUESTION_SCHEMA": default_schema()}
    if request.param == "flask":
        cfg["WSGI_HOT_PATHS"] = False
    app = make_app(tmp_path, **cfg)
    db = app.extensions["sparse_probe_storage"]
    type_id = mturk_ops.create_hit_type(db, {"Title": "t", "Description": "d", "Reward": "0.10",
                                             "AssignmentDurationInSeconds": 600})
    hit_id = mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id["HITTypeId"], "LifetimeInSeconds": 600, "MaxAssignments": 1,
        "Question": question("k1")})["HIT"]["HITId"]
    client = app.test_client()
    token = issue_worker_token(db, "W1")
    assert client.post("/worker/login", data={"worker_id": "W1", "token": token}
                       ).status_code == 303
    r = client.post(f"/worker/hits/{hit_id}/accept")
    aid = r.headers["Location"].rsplit("/", 1)[1]
    yield app, db, client, aid
    db.dispose()


def _stored(db, aid):
    with db.database.read() as s:
        return s.execute(select(Assignment.status, Assignment.answer)
                         .where(Assignment.assignment_id == aid)).one()


@pytest.mark.slow
def test_invalid_answers_are_refused_and_nothing_is_stored(setup):
    _app, db, client, aid = setup
    schema = default_schema()
    good = _valid_form(schema)
    shared = schema.questions[0].id
    for bad, expect in (({**good, shared: "maybe"}, f"{shared}: &#39;maybe&#39; is not one of"),
                        ({k: v for k, v in good.items() if k != shared},
                         f"{shared}: missing (required)")):
        r = client.post("/mturk/externalSubmit", data={"assignmentId": aid, "hit_key": "k1",
                                                       **bad})
        assert r.status_code == 400, r.data
        assert expect in r.get_data(as_text=True)
        status, answer = _stored(db, aid)
        assert status == "Accepted" and answer is None
    r = client.post("/mturk/externalSubmit", data={"assignmentId": aid, "hit_key": "k1", **good})
    assert r.status_code == 200
    status, answer = _stored(db, aid)
    assert status == "Submitted"
    assert parse_answer_xml(answer)[shared] == good[shared]


def test_serve_refuses_an_unreadable_schema(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text("{")
    res = CliRunner().invoke(serve, ["--db", str(tmp_path / "s.sqlite"), "--questions", str(bad)])
    assert res.exit_code != 0 and "q.json" in res.output and "--questions" in res.output
