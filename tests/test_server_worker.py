"""Worker UI, admin pages, assets and CLI of the task server through Flask's test client."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from click.testing import CliRunner
from helpers_postgres import backend_url, pg_cluster  # noqa: F401
from helpers_server import APP_CONFIG, make_app, parse_answer_xml, question, use_core_connections
from sqlalchemy import select, update

from tasks.server import create_app, issue_worker_token, mturk_ops
from tasks.server.cli import serve
from tasks.server.credentials import credentials_path_for
from tasks.server.db import Assignment, Worker

ADMIN = ("admin", "admin-pass")


@pytest.fixture(params=["raw-sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def app(tmp_path, request, monkeypatch):
    """The app on SQLite (the sqlite3 driver path, or ``core``: SQLAlchemy Core as other
    databases take) or on PostgreSQL."""
    assets = tmp_path / "static-assets"
    (assets / "sub").mkdir(parents=True)
    (assets / "sub" / "a.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.txt").write_text("do not serve")
    backend = "postgres" if request.param == "postgres" else "sqlite"
    app = make_app(tmp_path, ASSET_DIRS={"demo": str(assets)},
                   UPLOAD_DIR=str(tmp_path / "uploads"),
                   DATABASE_URL=backend_url(request, tmp_path, backend))
    if request.param == "core":
        use_core_connections(app, monkeypatch)
    yield app
    app.extensions["sparse_probe_storage"].dispose()


@pytest.fixture
def db(app):
    return app.extensions["sparse_probe_storage"]


def _hit(db, max_assignments=2, duration=600, lifetime=600, key="k1"):
    type_id = mturk_ops.create_hit_type(db, {"Title": "t", "Description": "d",
                                             "Reward": "0.10",
                                             "AssignmentDurationInSeconds": duration})
    hit = mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id["HITTypeId"], "LifetimeInSeconds": lifetime,
        "MaxAssignments": max_assignments, "Question": question(key)})
    return hit["HIT"]["HITId"]


def _login(app, db, worker_id):
    client = app.test_client()
    token = issue_worker_token(db, worker_id)
    r = client.post("/worker/login", data={"worker_id": worker_id, "token": token})
    assert r.status_code == 303
    return client


def _accept(client, hit_id):
    r = client.post(f"/worker/hits/{hit_id}/accept")
    if r.status_code == 303:
        return r.status_code, r.headers["Location"].rsplit("/", 1)[1]
    return r.status_code, None


@pytest.mark.slow
def test_login_refusals(app, db):
    client = app.test_client()
    assert client.post("/worker/login", data={"worker_id": "W1"}).status_code == 400
    assert client.post("/worker/login", data={}).status_code == 400
    issue_worker_token(db, "W1")
    r = client.post("/worker/login", data={"worker_id": "W1", "token": "guess"})
    assert r.status_code == 403 and b"wrong token" in r.data
    r = client.post("/worker/login", data={"worker_id": "nobody", "token": "guess"})
    assert r.status_code == 403
    r = client.get("/worker/")
    assert r.status_code == 302 and "/worker/login" in r.headers["Location"]
    assert client.post("/worker/hits/X/accept").status_code == 401
    assert client.post("/mturk/externalSubmit", data={"assignmentId": "A"}).status_code == 401


def test_only_token_hashes_are_stored_and_rotation(app, db):
    token = issue_worker_token(db, "W1")
    with db.database.read() as s:
        stored = s.execute(select(Worker.token_hash)).scalar_one()
    assert token not in stored and len(stored) == 64
    new = issue_worker_token(db, "W1")
    client = app.test_client()
    assert client.post("/worker/login", data={"worker_id": "W1", "token": token}
                       ).status_code == 403
    assert client.post("/worker/login", data={"worker_id": "W1", "token": new}
                       ).status_code == 303
    with pytest.raises(ValueError, match="worker_id"):
        issue_worker_token(db, "bad id!")


# The second run sends the hot paths through SQLAlchemy Core, the code path PostgreSQL uses.
@pytest.mark.slow
@pytest.mark.parametrize("app", ["raw-sqlite", "core",
                                 pytest.param("postgres", marks=pytest.mark.slow)],
                         indirect=True)
def test_list_accept_page_and_submit(app, db):
    hit_id = _hit(db, max_assignments=1)
    w1 = _login(app, db, "W1")
    listed = w1.get("/worker/?format=json").get_json()
    assert [h["hit_id"] for h in listed["hits"]] == [hit_id]
    assert hit_id.encode() in w1.get("/worker/").data
    status, aid = _accept(w1, hit_id)
    assert status == 303
    assert w1.get("/worker/?format=json").get_json()["hits"] == []  # taken by W1, and full
    assert _accept(w1, hit_id)[0] == 409  # cannot take the same HIT twice
    w2 = _login(app, db, "W2")
    assert _accept(w2, hit_id)[0] == 409  # no assignment left
    assert _accept(w2, "NOSUCHHIT")[0] == 404

    view = w1.get(f"/worker/assignments/{aid}")
    assert view.status_code == 200
    src = re.search(r'<iframe[^>]*src="([^"]+)"', view.get_data(as_text=True)).group(1)
    src = src.replace("&amp;", "&")
    assert f"assignmentId={aid}" in src and f"hitId={hit_id}" in src and "workerId=W1" in src
    assert "turkSubmitTo=http%3A%2F%2Flocalhost" in src
    page = w1.get(src).get_data(as_text=True)
    assert f'name="assignmentId" value="{aid}"' in page
    assert 'action="http://localhost/mturk/externalSubmit"' in page
    assert w2.get(src).status_code == 403  # someone else's assignment
    # Without MTurk's parameters the page redirects to itself with them (for JS pages).
    r = w1.get(f"/worker/assignments/{aid}/page")
    assert r.status_code == 302 and f"assignmentId={aid}" in r.headers["Location"]

    r = w2.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "no"})
    assert r.status_code == 403
    assert w1.post("/mturk/externalSubmit", data={"shared": "yes"}).status_code == 400
    assert w1.post("/mturk/externalSubmit", data={"assignmentId": aid}).status_code == 400
    assert w1.post("/mturk/externalSubmit",
                   data={"assignmentId": "NOSUCH", "x": "1"}).status_code == 404
    evil = "<script>alert(1)</script> & \x00\x07 ünïcode"
    r = w1.post("/mturk/externalSubmit",
                data={"assignmentId": aid, "shared": "yes", "description": evil,
                      "tags": ["a", "b"]})
    assert r.status_code == 200 and aid.encode() in r.data
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "no"})
    assert r.status_code == 409
    with db.database.read() as s:
        a = s.get(Assignment, aid)
    assert a.status == "Submitted" and a.auto_approval_time > a.submit_time
    answers = parse_answer_xml(a.answer)
    assert answers == {"shared": "yes", "description": "<script>alert(1)</script> &  ünïcode",
                       "tags": "a|b"}
    assert w1.get(f"/worker/assignments/{aid}").status_code == 409


@pytest.mark.slow
@pytest.mark.parametrize("app", ["raw-sqlite", "core",
                                 pytest.param("postgres", marks=pytest.mark.slow)],
                         indirect=True)
def test_late_submit_refused_and_slot_reclaimed(app, db):
    hit_id = _hit(db, max_assignments=1)
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    with db.database.write() as s:  # the deadline passes
        s.execute(update(Assignment).where(Assignment.assignment_id == aid)
                  .values(deadline=0.0))
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "yes"})
    assert r.status_code == 410
    with db.database.read() as s:
        assert s.get(Assignment, aid).answer is None
    w2 = _login(app, db, "W2")
    assert _accept(w2, hit_id)[0] == 303  # the abandoned slot is free again
    with db.database.read() as s:
        assert s.get(Assignment, aid).status == "Abandoned"


@pytest.mark.slow
def test_preview_cannot_be_submitted(app, db):
    hit_id = _hit(db)
    w1 = _login(app, db, "W1")
    r = w1.get(f"/worker/hits/{hit_id}/preview")
    assert r.status_code == 302 and "ASSIGNMENT_ID_NOT_AVAILABLE" in r.headers["Location"]
    page = w1.get(r.headers["Location"]).get_data(as_text=True)
    assert 'name="assignmentId" value="ASSIGNMENT_ID_NOT_AVAILABLE"' in page
    r = w1.post("/mturk/externalSubmit",
                data={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "shared": "yes"})
    assert r.status_code == 400
    assert app.test_client().get("/worker/hits/NOSUCH/preview").status_code == 404


def test_cross_site_posts_refused(app, db):
    hit_id = _hit(db)
    w1 = _login(app, db, "W1")
    r = w1.post(f"/worker/hits/{hit_id}/accept", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert _accept(w1, hit_id)[0] == 303


@pytest.mark.slow
def test_admin_requires_credentials_and_escapes_answers(app, db):
    hit_id = _hit(db)
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    w1.post("/mturk/externalSubmit",
            data={"assignmentId": aid, "description": "<img src=x onerror=alert(1)>"})
    anon = app.test_client()
    assert anon.get("/admin/").status_code == 401
    assert anon.get("/admin/", auth=("admin", "wrong")).status_code == 401
    admin = app.test_client()
    index = admin.get("/admin/", auth=ADMIN)
    assert index.status_code == 200 and b"10000.00" in index.data
    page = admin.get(f"/admin/hits/{hit_id}", auth=ADMIN).get_data(as_text=True)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    # No or a wrong CSRF token: refused, nothing changes.
    assert admin.post(f"/admin/assignments/{aid}/approve", auth=ADMIN).status_code == 403
    assert admin.post(f"/admin/assignments/{aid}/approve", auth=ADMIN,
                      data={"csrf_token": "x"}).status_code == 403
    with db.database.read() as s:
        assert s.get(Assignment, aid).status == "Submitted"
    r = admin.post(f"/admin/assignments/{aid}/reject", auth=ADMIN,
                   data={"csrf_token": token, "feedback": "blank"})
    assert r.status_code == 303
    r = admin.post(f"/admin/assignments/{aid}/approve", auth=ADMIN,
                   data={"csrf_token": token, "override": "1"})
    assert r.status_code == 303
    with db.database.read() as s:
        a = s.get(Assignment, aid)
    assert a.status == "Approved" and a.requester_feedback == "blank"
    batch = admin.get("/admin/", auth=ADMIN).get_data(as_text=True)
    assert "99.88" in batch  # 10000 - (0.10 + 20%)


def test_admin_worker_api(app):
    admin = app.test_client()
    r = admin.post("/admin/api/workers", json={"worker_id": "W9"}, auth=ADMIN)
    assert r.status_code == 201 and r.get_json()["worker_id"] == "W9"
    token = r.get_json()["token"]
    login = app.test_client().post("/worker/login", data={"worker_id": "W9", "token": token})
    assert login.status_code == 303
    assert admin.post("/admin/api/workers", json={"worker_id": "W9"}).status_code == 401
    assert admin.post("/admin/api/workers", data="worker_id=W9", auth=ADMIN).status_code == 400
    assert admin.post("/admin/api/workers", json={"worker_id": "../x"},
                      auth=ADMIN).status_code == 400


def test_assets_served_read_only_and_uploaded(app, tmp_path):
    client = app.test_client()
    r = client.get("/assets/demo/sub/a.png")
    assert r.status_code == 200 and r.data == b"\x89PNG fake"
    assert client.get("/assets/demo/../secret.txt").status_code == 404
    assert client.get("/assets/demo/%2e%2e/secret.txt").status_code == 404
    assert client.get("/assets/demo/missing.png").status_code == 404
    assert client.put("/admin/api/assets/batch1/x/b.png", data=b"123").status_code == 401
    r = client.put("/admin/api/assets/batch1/x/b.png", data=b"123", auth=ADMIN)
    assert r.status_code == 201 and r.get_json()["url"] == "/assets/batch1/x/b.png"
    assert client.get("/assets/batch1/x/b.png").data == b"123"
    assert (tmp_path / "uploads" / "batch1" / "x" / "b.png").read_bytes() == b"123"
    assert client.put("/admin/api/assets/demo/c.png", data=b"1", auth=ADMIN).status_code == 409
    r = client.put("/admin/api/assets/batch1/..%2f..%2fevil.txt", data=b"1", auth=ADMIN)
    assert r.status_code in (400, 404)
    assert not (tmp_path / "evil.txt").exists()


def test_app_without_credentials_creates_private_file(tmp_path, monkeypatch):
    for var in ("SPARSE_PROBE_ACCESS_KEY_ID", "SPARSE_PROBE_SECRET_ACCESS_KEY",
                "SPARSE_PROBE_ADMIN_USER", "SPARSE_PROBE_ADMIN_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    db_file = tmp_path / "s.sqlite"
    app = create_app({"DATABASE_URL": f"sqlite:///{db_file}"})
    cred = credentials_path_for(db_file)
    assert stat.S_IMODE(os.stat(cred).st_mode) == 0o600
    data = json.loads(cred.read_text())
    assert data["secret_access_key"] == app.config["SECRET_ACCESS_KEY"]
    again = create_app({"DATABASE_URL": f"sqlite:///{db_file}"})  # reused, not regenerated
    assert again.config["SECRET_ACCESS_KEY"] == data["secret_access_key"]
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0 and "initialized" in result.output


def test_serve_issue_token_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_SECRET_ACCESS_KEY", APP_CONFIG["SECRET_ACCESS_KEY"])
    db_file = tmp_path / "cli.sqlite"
    result = CliRunner().invoke(serve, ["--db", str(db_file), "--issue-token", "W5"])
    assert result.exit_code == 0, result.output
    worker, token = result.output.split()
    assert worker == "W5"
    assert APP_CONFIG["SECRET_ACCESS_KEY"] not in result.output
    app = create_app({"DATABASE_URL": f"sqlite:///{db_file}"})
    r = app.test_client().post("/worker/login", data={"worker_id": "W5", "token": token})
    assert r.status_code == 303
    bad = CliRunner().invoke(serve, ["--db", str(db_file), "--assets", "nodir"])
    assert bad.exit_code != 0 and "NAME=DIR" in bad.output
    bad = CliRunner().invoke(serve, ["--db", str(db_file), "--balance", "$5"])
    assert bad.exit_code != 0 and "--balance" in bad.output


@pytest.mark.slow
def test_oversized_and_overfull_forms_are_4xx(app, db):
    hit_id = _hit(db)
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    r = w1.post("/mturk/externalSubmit",
                data={"assignmentId": aid, "description": "x" * 3_000_000})
    assert r.status_code == 413
    many = {f"f{i}": "1" for i in range(250)}
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, **many})
    assert r.status_code == 400
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "yes"})
    assert r.status_code == 200  # the refusals above stored nothing


def test_external_question_page_redirects_with_mturk_parameters(app, db):
    from tasks.question_xml import external_question

    type_id = mturk_ops.create_hit_type(db, {"Title": "ext", "Description": "d",
                                             "Reward": "0.10",
                                             "AssignmentDurationInSeconds": 600})
    hit_id = mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id["HITTypeId"], "LifetimeInSeconds": 600, "MaxAssignments": 1,
        "Question": external_question("https://example.org/task?x=1")})["HIT"]["HITId"]
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    r = w1.get(f"/worker/assignments/{aid}/page?assignmentId={aid}")
    assert r.status_code == 302
    target = r.headers["Location"]
    assert target.startswith("https://example.org/task?x=1&")
    assert f"assignmentId={aid}" in target and "turkSubmitTo=http%3A%2F%2Flocalhost" in target


@pytest.mark.slow
def test_each_assignment_page_carries_its_own_ids(app, db):
    hit_id = _hit(db, max_assignments=3)
    pages = {}
    for worker in ("W1", "W2", "W3"):
        client = _login(app, db, worker)
        _, aid = _accept(client, hit_id)
        q = f"assignmentId={aid}&hitId={hit_id}&workerId={worker}"
        pages[aid] = client.get(f"/worker/assignments/{aid}/page?{q}").get_data(as_text=True)
    for aid, page in pages.items():  # the per-HIT page cache never leaks another's ids
        assert re.findall(r'name="assignmentId" value="([^"]*)"', page) == [aid]
        assert all(other not in page for other in pages if other != aid)


def test_admin_review_tokens_feedback_and_messages(app, db):
    """The admin's approve/reject: the page's CSRF token stays one per session (a form loaded
    earlier still works), a session that never got one is refused whatever it sends (with a
    plain-text reason), a rejection without feedback says so, long feedback is cut to MTurk's
    1,024 characters, each outcome comes back as the page's message, and an unknown
    assignment is a 404."""
    from urllib.parse import parse_qs, urlparse

    hit_id = _hit(db, max_assignments=3)
    aids = []
    for w in ("W1", "W2", "W3"):
        client = _login(app, db, w)
        _, aid = _accept(client, hit_id)
        client.post("/mturk/externalSubmit", data={"assignmentId": aid, "description": "x"})
        aids.append(aid)
    admin = app.test_client()
    pages = [admin.get(f"/admin/hits/{hit_id}", auth=ADMIN).get_data(as_text=True)
             for _ in range(2)]
    tokens = [re.search(r'name="csrf_token" value="([^"]+)"', p).group(1) for p in pages]
    assert tokens[0] == tokens[1]
    fresh = app.test_client()  # credentials, but no page loaded: no token in its session
    forged = "X" * 4  # any guess, here the one a session's missing token would read as under mutation
    r = fresh.post(f"/admin/assignments/{aids[0]}/approve", auth=ADMIN,
                   data={"csrf_token": forged})
    assert (r.status_code, r.mimetype) == (403, "text/plain")
    assert r.get_data(as_text=True) == "missing or wrong CSRF token; reload the page\n"

    def message(r):
        assert r.status_code == 303
        url = urlparse(r.headers["Location"])
        assert url.path == f"/admin/hits/{hit_id}"
        return parse_qs(url.query)["message"]

    assert message(admin.post(f"/admin/assignments/{aids[0]}/reject", auth=ADMIN,
                              data={"csrf_token": tokens[0]})) == [f"{aids[0]} rejected"]
    assert message(admin.post(f"/admin/assignments/{aids[1]}/reject", auth=ADMIN,
                              data={"csrf_token": tokens[0], "feedback": "y" * 2000})) == \
        [f"{aids[1]} rejected"]
    assert message(admin.post(f"/admin/assignments/{aids[2]}/approve", auth=ADMIN,
                              data={"csrf_token": tokens[0]})) == [f"{aids[2]} approved"]
    again = message(admin.post(f"/admin/assignments/{aids[2]}/approve", auth=ADMIN,
                               data={"csrf_token": tokens[0]}))
    assert again != [f"{aids[2]} approved"]  # MTurk's refusal, shown as the message
    with db.database.read() as s:
        got = [s.get(Assignment, a) for a in aids]
    assert got[0].requester_feedback == "Rejected by the requester."
    assert got[1].requester_feedback == "y" * 1024
    assert [a.status for a in got] == ["Rejected", "Rejected", "Approved"]
    r = admin.post("/admin/assignments/NOSUCHASSIGNMENT/approve", auth=ADMIN,
                   data={"csrf_token": tokens[0]})
    assert (r.status_code, r.mimetype, r.get_data(as_text=True)) == \
        (404, "text/plain", "no such assignment\n")


def test_admin_reads_answer_xml_as_field_value_pairs():
    from tasks.server.admin import ANSWER_NS, parse_answers

    ns = f'xmlns="{ANSWER_NS}"'
    xml = (f"<QuestionFormAnswers {ns}><Answer><QuestionIdentifier>q1</QuestionIdentifier>"
           "<FreeText>yes</FreeText></Answer><Answer><FreeText>no id</FreeText></Answer>"
           "<Answer><QuestionIdentifier>q3</QuestionIdentifier></Answer></QuestionFormAnswers>")
    assert parse_answers(xml) == [("q1", "yes"), ("", "no id"), ("q3", "")]
    assert parse_answers("<not xml") == [("(unreadable answer XML)", "<not xml")]
    assert parse_answers(None) == [] and parse_answers("") == []
