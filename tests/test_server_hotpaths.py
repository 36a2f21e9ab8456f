"""The plain-WSGI hot paths answer exactly as the Flask views do (``WSGI_HOT_PATHS`` on/off)."""

from __future__ import annotations

import pytest
from helpers_server import make_app, parse_answer_xml

from tasks.server import mturk_ops
from tasks.server.storage import issue_worker_token
from tasks.server.worker import fill_page

KEPT_HEADERS = ("Content-Type", "Location", "Cache-Control", "X-Content-Type-Options")
ORIGIN = "http://localhost"
EVIL = '"><script>alert(1)</script>'


def _setup(tmp_path, hot):
    app = make_app(tmp_path, WSGI_HOT_PATHS=hot)
    db = app.extensions["sparse_probe_storage"]
    page = ('<form action="/mturk/externalSubmit"><input type="hidden" name="assignmentId">'
            '<input name="workerId" type="hidden"><input name="hitId" type="hidden"></form>')
    question = ('<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/'
                'AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"><HTMLContent>'
                f'<![CDATA[{page}]]></HTMLContent><FrameHeight>0</FrameHeight></HTMLQuestion>')
    type_id = mturk_ops.create_hit_type(db, {"Title": "t", "Description": "d", "Reward": "0.10",
                                             "AssignmentDurationInSeconds": 600})["HITTypeId"]
    hit_id = mturk_ops.create_hit_with_hit_type(db, {
        "HITTypeId": type_id, "LifetimeInSeconds": 600, "MaxAssignments": 1,
        "Question": question})["HIT"]["HITId"]
    clients = {}
    for w in ("W1", "W2"):
        c = app.test_client()
        r = c.post("/worker/login", data={"worker_id": w, "token": issue_worker_token(db, w)})
        assert r.status_code == 303
        clients[w] = c
    return app, hit_id, clients, page


def _trace(tmp_path, hot):
    """Status, kept headers and body (assignment/HIT ids masked) of a scripted session."""
    app, hit_id, c, page = _setup(tmp_path, hot)
    out = []
    reached_flask = [0]
    if hot:  # count the requests the hot layer hands on to Flask
        layer = app.wsgi_app
        inner = layer.flask_wsgi

        def counting(environ, start):
            reached_flask[0] += 1
            return inner(environ, start)

        layer.flask_wsgi = counting

    def rec(r, aid=None):
        body = r.get_data(as_text=True)
        loc = r.headers.get("Location", "")
        for value, mask in ((aid, "AID"), (hit_id, "HIT")):
            if value:
                body, loc = body.replace(value, mask), loc.replace(value, mask)
        headers = {k: r.headers.get(k) for k in KEPT_HEADERS}
        headers["Location"] = loc or None
        out.append((r.status_code, headers, body))
        return r

    anon = app.test_client()
    rec(anon.post(f"/worker/hits/{hit_id}/accept"))  # not logged in
    rec(c["W1"].post(f"/worker/hits/{hit_id}/accept", headers={"Origin": "http://evil.example"}))
    r = rec(c["W1"].post(f"/worker/hits/{hit_id}/accept", headers={"Origin": ORIGIN}))
    aid = r.headers["Location"].rsplit("/", 1)[1]
    out[-1] = (out[-1][0], {**out[-1][1], "Location": "/worker/assignments/AID"},
               out[-1][2].replace(aid, "AID"))
    rec(c["W1"].post(f"/worker/hits/{hit_id}/accept"), aid)  # already took it: 409
    rec(c["W2"].post(f"/worker/hits/{hit_id}/accept"), aid)  # none left: 409
    rec(c["W1"].get(f"/worker/assignments/{aid}/page"), aid)  # no query: redirect
    q = f"assignmentId={aid}&hitId={hit_id}&workerId=W1&turkSubmitTo={ORIGIN}"
    rec(c["W1"].get(f"/worker/assignments/{aid}/page?{q}"), aid)
    rec(c["W2"].get(f"/worker/assignments/{aid}/page?{q}"), aid)  # not theirs: 403
    rec(c["W2"].post("/mturk/externalSubmit", data={"assignmentId": aid, "x": "1"}), aid)
    rec(c["W1"].post("/mturk/externalSubmit", data={"assignmentId": aid}), aid)  # no fields
    rec(c["W1"].post("/mturk/externalSubmit", headers={"Origin": ORIGIN},
                     data={"assignmentId": aid, "a": ["1", "2"], "note": EVIL}), aid)
    rec(c["W1"].post("/mturk/externalSubmit", data={"assignmentId": aid, "a": "3"}), aid)
    with app.test_client() as t:
        t.set_cookie("session", "e30.forged")
        rec(t.post("/mturk/externalSubmit", data={"assignmentId": aid, "a": "4"}), aid)
    answer = mturk_ops.list_assignments_for_hit(app.extensions["sparse_probe_storage"],
                                                {"HITId": hit_id})["Assignments"][0]["Answer"]
    if hot:  # the three successful requests of the cycle were answered without Flask
        assert reached_flask[0] == len(out) - 3
    return out, parse_answer_xml(answer), page


@pytest.mark.slow
def test_hot_paths_answer_as_flask_does(tmp_path):
    hot, hot_answer, page = _trace(tmp_path / "hot", True)
    cold, cold_answer, _ = _trace(tmp_path / "cold", False)
    assert [s for s, _, _ in hot] == [401, 403, 303, 409, 409, 302, 200, 403, 403, 400, 200,
                                      409, 401]
    assert hot == cold
    assert hot_answer == cold_answer == {"a": "1|2", "note": EVIL}  # first answer kept
    served = hot[6][2]
    expected = fill_page(page, {"assignmentId": "AID", "hitId": "HIT", "workerId": "W1"},
                         ORIGIN)
    assert served == expected
    assert "<script>" not in hot[10][2]

