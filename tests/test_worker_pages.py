"""The worker pages as a worker sees them (tasks/server/worker.py through Flask's test client,
the WSGI fast path off so that every request reaches the Flask views): what each refusal says,
its status code and the page its link leads back to; where a worker who is not logged in is
sent; same-origin checks on every POST; escaping of what a worker sends; the HIT page with its
ids and form action filled in; the stored answers XML; and the helpers behind them
(fill_page, page_parts, answers_xml, submission_problems) called directly."""

from __future__ import annotations

import html
import re
import types
from urllib.parse import parse_qsl, urlsplit

import pytest
from helpers_server import PAGE, make_app, parse_answer_xml
from sqlalchemy import update
from test_server_worker import _accept, _hit, _login

from sparse_probe.questions import default_schema
from tasks.question_xml import external_question, html_question
from tasks.server import issue_worker_token, mturk_ops, qualification_ops, worker
from tasks.server.db import HIT, Assignment
from tasks.server.qualifications import APPROVAL_RATE, APPROVED_HITS
from tasks.server.worker import (
    ANSWER_NS,
    MAX_ANSWER_FIELDS,
    PREVIEW_ASSIGNMENT_ID,
    answers_xml,
    fill_page,
    page_parts,
    submission_problems,
)

ORIGIN = "http://localhost"  # the test client's scheme://host
INDEX = "/worker/"
LOGIN = "/worker/login"

# A page with every way a HIT can write the three id inputs (quoted, single-quoted, unquoted
# names; an old value; self-closing with and without a space; upper-case tag), inputs that
# must be left alone, a single-quoted externalSubmit action and a form posting elsewhere.
FORM_PAGE = """<!doctype html><html><body>
<form method="post" action='/mturk/externalSubmit'>
<INPUT type="hidden" name="assignmentId" value="old">
<input type=hidden name='hitId' />
<input type="hidden" name=workerId value=stale/>
<input name="assignmentIdx" value="keep">
<input name="comment" value="">
</form>
<form action="/elsewhere"><input name="other"></form>
</body></html>
"""
# FORM_PAGE as served: {aid}, {hid}, {wid} and {to} are what the worker's page must carry.
FORM_FILLED = """<!doctype html><html><body>
<form method="post" action="{to}/mturk/externalSubmit">
<INPUT type="hidden" name="assignmentId" value="{aid}">
<input type=hidden name='hitId' value="{hid}"/>
<input type="hidden" name=workerId value="{wid}"/>
<input name="assignmentIdx" value="keep">
<input name="comment" value="">
</form>
<form action="/elsewhere"><input name="other"></form>
</body></html>
"""


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, WSGI_HOT_PATHS=False)
    yield app
    app.extensions["sparse_probe_storage"].dispose()


@pytest.fixture
def db(app):
    return app.extensions["sparse_probe_storage"]


def refusal(r) -> tuple[int, str, str | None]:
    """``(status, message, link)`` of a refusal page, checking that it is an HTML page
    titled with its status."""
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    text = r.get_data(as_text=True)
    title = f"Error {r.status_code}"
    assert f"<title>{title}</title>" in text and f"<h1>{title}</h1>" in text
    message = re.search(r'<p class="error" id="message">(.*?)</p>', text, re.S).group(1)
    assert "<" not in message  # whatever the worker sent is escaped
    link = re.search(r'<a href="([^"]*)">Continue</a>', text)
    return r.status_code, html.unescape(message), link and html.unescape(link.group(1))


def _page_hit(db, page: str = FORM_PAGE, *, max_assignments: int = 2,
              requirements=None) -> str:
    """A HIT showing ``page`` (an HTMLQuestion), of a type with ``requirements``."""
    params = {"Title": "t", "Description": "d", "Reward": "0.10",
              "AssignmentDurationInSeconds": 600}
    if requirements is not None:
        params["QualificationRequirements"] = requirements
    type_id = mturk_ops.create_hit_type(db, params)["HITTypeId"]
    return mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id, "LifetimeInSeconds": 600, "MaxAssignments": max_assignments,
        "Question": html_question(page)})["HIT"]["HITId"]


def _set_hit(db, hit_id: str, **values) -> None:
    with db.database.write() as s:
        s.execute(update(HIT).where(HIT.hit_id == hit_id).values(**values))


def _set_assignment(db, assignment_id: str, **values) -> None:
    with db.database.write() as s:
        s.execute(update(Assignment).where(Assignment.assignment_id == assignment_id)
                  .values(**values))


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


# ------------------------------------------------------------------------------ logging in
def test_login_form_refusals_next_and_logout(app, db):
    client = app.test_client()
    form = client.get("/worker/login?next=/worker/x%22%3E%3Cscript%3E").get_data(as_text=True)
    assert 'name="next" value="/worker/x&#34;&gt;&lt;script&gt;"' in form
    token = issue_worker_token(db, "W1")
    r = client.post(LOGIN, data={"worker_id": "W1", "next": "/worker/a"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "Both the worker id and the token are required." in page
    assert 'name="next" value="/worker/a"' in page  # the form keeps where to go next
    assert client.post(LOGIN, data={"worker_id": " ", "token": token}).status_code == 400
    r = client.post(LOGIN, data={"worker_id": "W1", "token": token + "x", "next": "/worker/b"})
    assert r.status_code == 403 and 'name="next" value="/worker/b"' in r.get_data(as_text=True)
    assert "Unknown worker id or wrong token." in r.get_data(as_text=True)
    r = client.post(LOGIN, data={"worker_id": "W1", "token": token},
                    headers={"Origin": "http://evil.example"})
    assert refusal(r) == (403, "cross-site login refused", None)
    assert client.get(INDEX).status_code == 302  # none of these logged the worker in

    # Where a successful login leads: only back into the worker pages of this server.
    for nxt, target in (("/worker/hits/H/preview?x=1", "/worker/hits/H/preview?x=1"),
                        ("", INDEX), ("//evil.example/worker/", INDEX),
                        ("https://evil.example/worker/", INDEX), ("/admin/", INDEX)):
        r = app.test_client().post(LOGIN, data={"worker_id": " W1 ", "token": f" {token} ",
                                                "next": nxt},
                                   headers={"Origin": ORIGIN})
        assert (r.status_code, r.headers["Location"]) == (303, target), nxt
    assert client.post(LOGIN, data={"worker_id": "W1", "token": token}).status_code == 303
    assert client.get(INDEX).status_code == 200
    r = client.post("/worker/logout")
    assert (r.status_code, r.headers["Location"]) == (303, LOGIN)
    assert client.get(INDEX).status_code == 302


def test_not_logged_in_gets_sent_to_login_and_back(app, db):
    """A GET goes to the login form with the page to come back to (no dangling '?', nothing
    else stripped); a POST is a 401 linking to the login form."""
    anon = app.test_client()
    for path, nxt in ((INDEX, INDEX), ("/worker/?", INDEX),
                      ("/worker/?format=json", "/worker/?format=json"),
                      ("/worker/assignments/AX", "/worker/assignments/AX"),
                      ("/worker/assignments/AX/page?x=1X", "/worker/assignments/AX/page?x=1X")):
        r = anon.get(path)
        assert r.status_code == 302, path
        location = urlsplit(r.headers["Location"])
        assert location.path == LOGIN and parse_qsl(location.query) == [("next", nxt)], path
    hit_id = _hit(db)
    for path in (f"/worker/hits/{hit_id}/accept", "/mturk/externalSubmit"):
        r = anon.post(path, data={"assignmentId": "A", "x": "1"})
        assert refusal(r) == (401, "log in first", LOGIN), path
    # Logging in from the form the redirect showed leads back to the page asked for.
    token = issue_worker_token(db, "W1")
    r = anon.post(LOGIN, data={"worker_id": "W1", "token": token,
                               "next": "/worker/?format=json"})
    assert r.headers["Location"] == "/worker/?format=json"
    assert anon.get(r.headers["Location"]).get_json()["worker_id"] == "W1"


# ---------------------------------------------------------------------------- cross-site
def test_every_post_checks_the_origin(app, db):
    hit_id = _hit(db, max_assignments=1)
    w1 = _login(app, db, "W1")
    for origin in ("http://evil.example", "null", "http://localhost:8080", "https://localhost"):
        r = w1.post(f"/worker/hits/{hit_id}/accept", headers={"Origin": origin})
        assert refusal(r) == (403, "cross-site request refused", None), origin
    r = w1.post(f"/worker/hits/{hit_id}/accept", headers={"Origin": ORIGIN})
    assert r.status_code == 303  # the same origin, sent explicitly, is fine
    aid = r.headers["Location"].rsplit("/", 1)[1]
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "yes"},
                headers={"Origin": "http://evil.example"})
    assert refusal(r) == (403, "cross-site request refused", None)
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "yes"},
                headers={"Origin": ORIGIN})
    assert r.status_code == 200


# ------------------------------------------------------------------------------ HIT list
def test_hit_list_counts_links_and_escaped_messages(app, db):
    hit_id = _hit(db, max_assignments=3)
    w1 = _login(app, db, "W1")
    qualification_ops.notify_workers(db, {"WorkerIds": ["W1"], "Subject": "<b>news</b>",
                                          "MessageText": "<script>x</script> & more"})
    w2 = _login(app, db, "W2")
    assert _accept(w2, hit_id)[0] == 303
    listed = w1.get("/worker/", headers={"Accept": "application/json"}).get_json()
    (h,) = listed["hits"]
    assert (h["hit_id"], h["available"], h["preview_url"], h["accept_url"]) == \
        (hit_id, 2, f"/worker/hits/{hit_id}/preview", f"/worker/hits/{hit_id}/accept")
    assert [(m["subject"], m["message"]) for m in listed["messages"]] == \
        [("<b>news</b>", "<script>x</script> & more")]
    page = w1.get("/worker/").get_data(as_text=True)
    assert "&lt;b&gt;news&lt;/b&gt;" in page and "&lt;script&gt;x&lt;/script&gt; &amp; more" in page
    assert "<script>x" not in page and "<b>news" not in page
    assert f'action="/worker/hits/{hit_id}/accept"' in page
    assert w2.get("/worker/?format=json").get_json()["messages"] == []


# ----------------------------------------------------------------------- qualifications
def _trained(db) -> str:
    return qualification_ops.create_qualification_type(db, {
        "Name": "Trained", "Description": "d", "QualificationTypeStatus": "Active"}
    )["QualificationType"]["QualificationTypeId"]


def test_unqualified_workers_are_told_which_requirements_they_miss(app, db):
    trained = _trained(db)
    both = [{"QualificationTypeId": trained, "Comparator": "Exists"},
            {"QualificationTypeId": APPROVED_HITS, "Comparator": "GreaterThan",
             "IntegerValues": [3]},
            {"QualificationTypeId": APPROVAL_RATE, "Comparator": "GreaterThanOrEqualTo",
             "IntegerValues": [90]}]  # met by everyone: no review yet reads as 100%
    guarded = _page_hit(db, requirements=both)
    hidden = _page_hit(db, requirements=[{"QualificationTypeId": trained,
                                          "Comparator": "Exists",
                                          "ActionsGuarded": "PreviewAndAccept"}])
    open_hit = _page_hit(db, requirements=[])
    w1 = _login(app, db, "W1")
    w2 = _login(app, db, "W2")
    qualification_ops.associate_qualification_with_worker(
        db, {"QualificationTypeId": trained, "WorkerId": "W2", "IntegerValue": 1})
    listed = {h["hit_id"] for h in w1.get("/worker/?format=json").get_json()["hits"]}
    assert listed == {open_hit}
    assert refusal(w1.post(f"/worker/hits/{guarded}/accept")) == (
        403, f"You do not meet this HIT's qualification requirements ({trained} Exists, "
             f"{APPROVED_HITS} GreaterThan).", INDEX)
    # Accept-guarded: W1 may still look at it; preview-guarded: not even that.
    assert w1.get(f"/worker/hits/{guarded}/preview?assignmentId={PREVIEW_ASSIGNMENT_ID}"
                  ).status_code == 200
    expected = (403, f"You do not meet this HIT's qualification requirements ({trained} "
                     "Exists).", INDEX)
    assert refusal(w1.get(f"/worker/hits/{hidden}/preview")) == expected
    assert refusal(w1.post(f"/worker/hits/{hidden}/accept")) == expected
    # W2 holds the type: the values looked up are the logged-in worker's own.
    assert w2.get(f"/worker/hits/{hidden}/preview").status_code == 302
    assert _accept(w2, hidden)[0] == 303
    assert refusal(w2.post(f"/worker/hits/{guarded}/accept")) == (
        403, f"You do not meet this HIT's qualification requirements ({APPROVED_HITS} "
             "GreaterThan).", INDEX)
    assert _accept(w1, open_hit)[0] == 303


def test_anonymous_previews_are_judged_without_any_qualifications(app, db):
    """A visitor who is not logged in holds no qualification, whoever else does (also a
    worker whose id is empty)."""
    trained = _trained(db)
    hidden = _page_hit(db, requirements=[{"QualificationTypeId": trained,
                                          "Comparator": "Exists",
                                          "ActionsGuarded": "DiscoverPreviewAndAccept"}])
    for w in ("W1", ""):
        qualification_ops.associate_qualification_with_worker(
            db, {"QualificationTypeId": trained, "WorkerId": w, "IntegerValue": 1})
    anon = app.test_client()
    assert refusal(anon.get(f"/worker/hits/{hidden}/preview")) == (
        403, f"You do not meet this HIT's qualification requirements ({trained} Exists).",
        INDEX)
    assert _login(app, db, "W1").get(f"/worker/hits/{hidden}/preview").status_code == 302


# ----------------------------------------------------------------------------- previews
def test_preview_redirects_with_mturk_parameters_and_fills_the_page(app, db):
    hit_id = _page_hit(db)
    anon = app.test_client()
    r = anon.get(f"/worker/hits/{hit_id}/preview")
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == f"/worker/hits/{hit_id}/preview"
    assert _query(r.headers["Location"]) == [("assignmentId", PREVIEW_ASSIGNMENT_ID),
                                             ("hitId", hit_id), ("turkSubmitTo", ORIGIN)]
    page = anon.get(r.headers["Location"])
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.get_data(as_text=True) == FORM_FILLED.format(
        aid=PREVIEW_ASSIGNMENT_ID, hid=hit_id, wid="", to=ORIGIN)
    w1 = _login(app, db, "W1")
    r = w1.get(f"/worker/hits/{hit_id}/preview")
    assert _query(r.headers["Location"]) == [("assignmentId", PREVIEW_ASSIGNMENT_ID),
                                             ("hitId", hit_id), ("workerId", "W1"),
                                             ("turkSubmitTo", ORIGIN)]
    assert w1.get(r.headers["Location"]).get_data(as_text=True) == FORM_FILLED.format(
        aid=PREVIEW_ASSIGNMENT_ID, hid=hit_id, wid="W1", to=ORIGIN)
    r = anon.get("/worker/hits/%3Cb%3Ex/preview")
    assert refusal(r) == (404, "HIT <b>x does not exist", None)


# ------------------------------------------------------------------------------ accepting
def test_accept_refusals_say_why_and_where_to_go(app, db):
    hit_id = _hit(db, max_assignments=1)
    w1 = _login(app, db, "W1")
    w2 = _login(app, db, "W2")
    status, aid = _accept(w1, hit_id)
    assert status == 303
    assert refusal(w1.post(f"/worker/hits/{hit_id}/accept")) == \
        (409, "You already took this HIT.", f"/worker/assignments/{aid}")
    assert refusal(w2.post(f"/worker/hits/{hit_id}/accept")) == \
        (409, "No assignments of this HIT are left.", INDEX)
    assert refusal(w2.post("/worker/hits/NOSUCH%3Cb%3E/accept")) == \
        (404, "HIT NOSUCH<b> does not exist.", None)
    expired = _hit(db)
    _set_hit(db, expired, expiration=0.0)
    assert refusal(w2.post(f"/worker/hits/{expired}/accept")) == \
        (410, "This HIT has expired.", INDEX)


# -------------------------------------------------------------------- the assignment page
def test_assignment_view_frames_the_page_with_mturk_parameters(app, db):
    hit_id = _page_hit(db)
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    view = w1.get(f"/worker/assignments/{aid}").get_data(as_text=True)
    src = html.unescape(re.search(r'<iframe id="hit-frame" src="([^"]+)"', view).group(1))
    assert urlsplit(src).path == f"/worker/assignments/{aid}/page"
    assert _query(src) == [("assignmentId", aid), ("hitId", hit_id), ("workerId", "W1"),
                           ("turkSubmitTo", ORIGIN)]
    assert 'height="800"' in view and f'<span id="assignment-id">{aid}</span>' in view
    page = w1.get(src)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.get_data(as_text=True) == FORM_FILLED.format(aid=aid, hid=hit_id, wid="W1",
                                                             to=ORIGIN)
    # Without (or with another) assignmentId the page sends the browser to itself with all of
    # MTurk's parameters, for pages that read them in JavaScript.
    for query in ("", "?assignmentId=other"):
        r = w1.get(f"/worker/assignments/{aid}/page{query}")
        assert r.status_code == 302
        assert r.headers["Location"] == src


def test_each_hit_page_is_its_own_and_pages_of_a_hit_share_nothing_but_text(app, db):
    """Two HITs' pages never mix (the split page is kept per HIT), and a second worker on the
    same HIT gets their own ids."""
    first = _page_hit(db, PAGE.replace("{key}", "first"))
    second = _page_hit(db, PAGE.replace("{key}", "second"))
    pages = {}
    for w, hit_id in (("W1", first), ("W2", second), ("W3", first)):
        client = _login(app, db, w)
        _, aid = _accept(client, hit_id)
        pages[w] = (aid, client.get(f"/worker/assignments/{aid}/page?assignmentId={aid}")
                    .get_data(as_text=True))
    for w, key in (("W1", "first"), ("W2", "second"), ("W3", "first")):
        aid, page = pages[w]
        expected = PAGE.replace("{key}", key).replace(
            'name="assignmentId" value=""', f'name="assignmentId" value="{aid}"').replace(
            'action="/mturk/externalSubmit"', f'action="{ORIGIN}/mturk/externalSubmit"')
        assert page == expected, w


def test_a_page_with_nul_is_filled_without_the_split_cache(app, db):
    """A stored page that contains NUL (written to the database by something other than this
    server's API, which cannot carry one) cannot be split at NUL marks: it is filled directly,
    with the same result."""
    hit_id = _page_hit(db)
    _set_hit(db, hit_id, html_content=FORM_PAGE + "<!--\x00-->")
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    page = w1.get(f"/worker/assignments/{aid}/page?assignmentId={aid}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.get_data(as_text=True) == FORM_FILLED.format(
        aid=aid, hid=hit_id, wid="W1", to=ORIGIN) + "<!--\x00-->"


def test_a_hit_without_a_page_serves_an_empty_one(app, db):
    hit_id = _page_hit(db)
    _set_hit(db, hit_id, html_content=None, external_url=None)
    w1 = _login(app, db, "W1")
    _, aid = _accept(w1, hit_id)
    page = w1.get(f"/worker/assignments/{aid}/page?assignmentId={aid}")
    assert (page.status_code, page.get_data(as_text=True)) == (200, "")


@pytest.mark.parametrize("url, sep", [("https://example.org/task", "?"),
                                      ("https://example.org/task?x=1", "&")])
def test_external_pages_get_mturk_parameters_appended(app, db, url, sep):
    type_id = mturk_ops.create_hit_type(db, {"Title": "ext", "Description": "d",
                                             "Reward": "0.10",
                                             "AssignmentDurationInSeconds": 600})["HITTypeId"]
    hit_id = mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id, "LifetimeInSeconds": 600, "MaxAssignments": 1,
        "Question": external_question(url)})["HIT"]["HITId"]
    w1 = _login(app, db, "W1")
    r = w1.get(f"/worker/hits/{hit_id}/preview?assignmentId={PREVIEW_ASSIGNMENT_ID}")
    assert r.status_code == 302
    assert r.headers["Location"] == (f"{url}{sep}assignmentId={PREVIEW_ASSIGNMENT_ID}"
                                     f"&hitId={hit_id}&workerId=W1&turkSubmitTo=http%3A%2F%2F"
                                     "localhost")
    _, aid = _accept(w1, hit_id)
    r = w1.get(f"/worker/assignments/{aid}/page?assignmentId={aid}")
    assert r.status_code == 302
    assert r.headers["Location"] == (f"{url}{sep}assignmentId={aid}&hitId={hit_id}"
                                     "&workerId=W1&turkSubmitTo=http%3A%2F%2Flocalhost")


def test_assignment_refusals_say_why_and_where_to_go(app, db, monkeypatch):
    hit_id = _page_hit(db, max_assignments=2)
    w1 = _login(app, db, "W1")
    w2 = _login(app, db, "W2")
    _, aid = _accept(w1, hit_id)
    _, late = _accept(w2, hit_id)
    for suffix in ("", f"/page?assignmentId={aid}"):
        assert refusal(w2.get(f"/worker/assignments/{aid}{suffix}")) == \
            (403, "This assignment belongs to another worker.", None)
    assert refusal(w1.get("/worker/assignments/NO%3Cb%3E")) == \
        (404, "Assignment NO<b> does not exist.", None)
    assert refusal(w1.get("/worker/assignments/NO%3Cb%3E/page?assignmentId=NO%3Cb%3E")) == \
        (404, "Assignment NO<b> does not exist.", None)

    # At its deadline an assignment is still open; a moment later it has run out.
    with db.database.read() as s:
        deadline = s.get(Assignment, late).deadline
    monkeypatch.setattr(worker, "time", types.SimpleNamespace(time=lambda: deadline))
    assert w2.get(f"/worker/assignments/{late}/page?assignmentId={late}").status_code == 200
    monkeypatch.setattr(worker, "time",
                        types.SimpleNamespace(time=lambda: deadline + 0.001))
    for suffix in ("", f"/page?assignmentId={late}"):
        assert refusal(w2.get(f"/worker/assignments/{late}{suffix}")) == \
            (410, "The time for this assignment has run out.", INDEX)
    monkeypatch.undo()

    assert w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "shared": "yes"}
                   ).status_code == 200
    for suffix in ("", f"/page?assignmentId={aid}"):
        assert refusal(w1.get(f"/worker/assignments/{aid}{suffix}")) == \
            (409, "This assignment was already submitted.", INDEX)


# ------------------------------------------------------------------------------ submitting
def test_submit_refusals_say_why_and_nothing_is_stored(app, db):
    hit_id = _hit(db, max_assignments=2)
    w1 = _login(app, db, "W1")
    w2 = _login(app, db, "W2")
    _, aid = _accept(w1, hit_id)
    _, late = _accept(w2, hit_id)
    cases = [
        ({"shared": "yes"}, (400, "the form must include assignmentId", None)),
        ({"assignmentId": "  ", "shared": "yes"}, (400, "the form must include assignmentId",
                                                   None)),
        ({"assignmentId": PREVIEW_ASSIGNMENT_ID, "shared": "yes"},
         (400, "a preview cannot be submitted; accept the HIT first", None)),
        ({"assignmentId": aid}, (400, "the form has no answer fields", None)),
        ({"assignmentId": aid, **{f"f{i}": "1" for i in range(MAX_ANSWER_FIELDS + 1)}},
         (400, f"the form has more than {MAX_ANSWER_FIELDS} fields", None)),
        ({"assignmentId": "NO<b>", "shared": "yes"},
         (404, "Assignment NO<b> does not exist.", None)),
        ({"assignmentId": late, "shared": "yes"},
         (403, "This assignment belongs to another worker.", None)),
    ]
    for form, expected in cases:
        assert refusal(w1.post("/mturk/externalSubmit", data=form)) == expected, form
    _set_assignment(db, late, deadline=0.0)
    assert refusal(w2.post("/mturk/externalSubmit", data={"assignmentId": late, "x": "1"})) \
        == (410, "The time for this assignment ran out before it was submitted.", INDEX)
    with db.database.read() as s:
        assert [s.get(Assignment, a).answer for a in (aid, late)] == [None, None]

    # Exactly MAX_ANSWER_FIELDS answer fields (assignmentId aside) are taken, in order, with
    # the assignment id stripped of spaces; a second submit keeps the first answers.
    many = {f"f{i}": str(i) for i in range(MAX_ANSWER_FIELDS)}
    r = w1.post("/mturk/externalSubmit", data={"assignmentId": f" {aid} ", **many})
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert f'Assignment <span id="assignment-id">{aid}</span> was submitted.' in text
    assert '<a href="/worker/" target="_top">' in text
    assert refusal(w1.post("/mturk/externalSubmit", data={"assignmentId": aid, "x": "2"})) == \
        (409, "This assignment was already submitted; answers are kept as first sent.", INDEX)
    with db.database.read() as s:
        assert list(parse_answer_xml(s.get(Assignment, aid).answer).items()) == \
            list(many.items())


def test_answers_not_matching_the_question_schema_are_refused(tmp_path):
    schema = default_schema()
    app = make_app(tmp_path, WSGI_HOT_PATHS=False, QUESTION_SCHEMA=schema)
    db = app.extensions["sparse_probe_storage"]
    try:
        hit_id = _hit(db)
        w1 = _login(app, db, "W1")
        _, aid = _accept(w1, hit_id)
        good = {q.id: "a mark" if q.kind == "text" else q.allowed("image")[0]
                for q in schema.questions}
        first = schema.questions[0].id
        bad = {**good, first: "maybe"}
        bad.pop(schema.questions[-1].id)
        problems = list(schema.validate({k: [v] for k, v in bad.items()}))
        assert len(problems) == 2
        r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, **bad})
        assert refusal(r) == (400, "Please go back and correct your answers: "
                                   + "; ".join(problems), None)
        r = w1.post("/mturk/externalSubmit", data={"assignmentId": aid, **good})
        assert r.status_code == 200
    finally:
        db.dispose()


def test_submission_problems_follow_the_schema_or_accept_anything():
    schema = default_schema()
    form = {"assignmentId": ["A"], schema.questions[0].id: ["maybe"]}
    assert submission_problems(None, form) == []
    assert submission_problems(None, {}) == []
    problems = submission_problems(schema, form)
    assert problems == list(schema.validate(form)) and len(problems) >= 2
    assert any(p.startswith(f"{schema.questions[0].id}: ") for p in problems)


# --------------------------------------------------------------------------- the helpers
def test_answers_xml_escapes_and_drops_what_xml_cannot_carry():
    fields = [("a<&>", "x & y < z > \"q\" 'a'"), ("bad\x00\x07\ufffe", "\x0b\ud800ok\t\n\r"),
              ("empty", "")]
    assert answers_xml(fields) == (
        f'<?xml version="1.0" encoding="UTF-8"?><QuestionFormAnswers xmlns="{ANSWER_NS}">'
        "<Answer><QuestionIdentifier>a&lt;&amp;&gt;</QuestionIdentifier>"
        "<FreeText>x &amp; y &lt; z &gt; \"q\" 'a'</FreeText></Answer>"
        "<Answer><QuestionIdentifier>bad</QuestionIdentifier>"
        "<FreeText>ok\t\n\r</FreeText></Answer>"
        "<Answer><QuestionIdentifier>empty</QuestionIdentifier><FreeText></FreeText></Answer>"
        "</QuestionFormAnswers>")
    assert answers_xml([]) == (f'<?xml version="1.0" encoding="UTF-8"?>'
                               f'<QuestionFormAnswers xmlns="{ANSWER_NS}"></QuestionFormAnswers>')
    assert parse_answer_xml(answers_xml([("\U0001f600", "\U0001f600 \ue000")])) == \
        {"\U0001f600": "\U0001f600 \ue000"}


def test_fill_page_fills_only_the_id_inputs_and_the_submit_action():
    values = {"assignmentId": "A1", "hitId": "H1", "workerId": "W1"}
    assert fill_page(FORM_PAGE, values, "https://host:8443") == FORM_FILLED.format(
        aid="A1", hid="H1", wid="W1", to="https://host:8443")
    # Values are escaped for the attribute; an id the caller has not got is left empty.
    filled = fill_page(FORM_PAGE, {"assignmentId": 'a"<b>&\''}, "")
    assert filled == FORM_FILLED.format(aid="a&#34;&lt;b&gt;&amp;&#39;", hid="", wid="", to="")
    # Other actions and a page without inputs pass through unchanged.
    assert fill_page('<form action="/elsewhere"></form><p>no inputs</p>', values, "X") == \
        '<form action="/elsewhere"></form><p>no inputs</p>'


def test_page_parts_splits_each_hit_page_once_at_its_slots(monkeypatch):
    monkeypatch.setattr(worker, "_PAGE_PARTS", {})  # this test's HIT ids, whatever ran before
    parts = page_parts("parts-hit", FORM_PAGE)
    assert parts[1::2] == ["turkSubmitTo", "assignmentId", "hitId", "workerId"]
    values = {"assignmentId": "A", "hitId": "H", "workerId": "W", "turkSubmitTo": "http://o"}
    assert "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(parts)) == \
        FORM_FILLED.format(aid="A", hid="H", wid="W", to="http://o")
    assert page_parts("parts-hit", FORM_PAGE) is parts  # kept, not split again
    # A page with NUL cannot be split at NUL marks: None, and nothing is kept for the HIT.
    assert page_parts("nul-hit", "<p>a\x00hitId\x00b</p>") is None
    assert page_parts("nul-hit", "<p>ok</p>") == ["<p>ok</p>"]


def test_page_parts_cache_is_bounded(monkeypatch):
    """At most _PAGE_PARTS_MAX HITs' pages are kept: a new HIT past that starts afresh."""
    monkeypatch.setattr(worker, "_PAGE_PARTS", {})
    for i in range(worker._PAGE_PARTS_MAX):
        page_parts(f"bound-{i}", "<p>x</p>")
    assert len(worker._PAGE_PARTS) == worker._PAGE_PARTS_MAX
    page_parts("bound-new", "<p>y</p>")
    assert worker._PAGE_PARTS == {"bound-new": ["<p>y</p>"]}
