"""Shared helpers for the task-server tests (apps, live servers, signed raw requests, workers)."""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tasks.question_xml import html_question
from tasks.server import create_app
from tasks.server.worker import ANSWER_NS

TARGET = "MTurkRequesterServiceV20170117."

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tiny HIT</title></head>
<body>
<form id="f" method="post" action="/mturk/externalSubmit">
 <input type="hidden" name="assignmentId" value="">
 <input type="hidden" name="hit_key" value="{key}">
 <input name="shared" value="yes">
 <textarea name="description"></textarea>
 <button type="submit">Submit</button>
</form>
<script>
 const p = new URLSearchParams(location.search);
 document.querySelector('input[name=assignmentId]').value = p.get('assignmentId');
 document.getElementById('f').action = p.get('turkSubmitTo') + '/mturk/externalSubmit';
</script>
</body></html>
"""

APP_CONFIG = {
    "ACCESS_KEY_ID": "SPTESTKEY0000000",
    "SECRET_ACCESS_KEY": "test-secret-not-real",
    "ADMIN_USER": "admin",
    "ADMIN_PASSWORD": "admin-pass",
    "SECRET_KEY": "session-key-for-tests",
    "MIN_DURATION_SECONDS": 1,
}


def question(key: str = "k1") -> str:
    """A tiny valid HTMLQuestion with a form posting to externalSubmit."""
    return html_question(PAGE.replace("{key}", key))


def make_app(tmp_path: Path, **config: Any) -> Any:
    """A Flask app on a fresh SQLite file with fixed test credentials."""
    cfg = {"DATABASE_URL": f"sqlite:///{tmp_path / 'server.sqlite'}", **APP_CONFIG, **config}
    return create_app(cfg)


def use_core_connections(app: Any, monkeypatch: Any) -> None:
    """Send the storage's fixed-SQL statements through SQLAlchemy Core instead of the
    ``sqlite3`` driver: on SQLite, the code path every other database (PostgreSQL) takes.

    Test-only: the server picks the driver path for every SQLite URL. ``monkeypatch`` (pytest's
    fixture) restores it after the test.
    """
    monkeypatch.setattr(app.extensions["sparse_probe_storage"].database, "raw", False)


def signed_headers(url: str, target: str, body: bytes, key: str, secret: str,
                   region: str = "us-east-1") -> dict[str, str]:
    """Headers of a SigV4-signed JSON 1.1 request, signed exactly as botocore signs."""
    req = AWSRequest(method="POST", url=url + "/", data=body, headers={
        "X-Amz-Target": target,
        "Content-Type": "application/x-amz-json-1.1",
        "amz-sdk-invocation-id": str(uuid.uuid4()),  # as botocore: each call signs differently
    })
    SigV4Auth(Credentials(key, secret), "mturk-requester", region).add_auth(req)
    return dict(req.headers.items())


def raw_call(url: str, key: str, secret: str, operation: str, body: bytes | dict,
             *, target: str | None = None) -> requests.Response:
    """POST a signed request whose body may be anything (malformed JSON, huge, ...)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(url, target or TARGET + operation, data, key, secret)
    return requests.post(url + "/", data=data, headers=headers, timeout=30)


def create_batch(client: Any, n_hits: int, max_assignments: int, *, duration: int = 600,
                 lifetime: int = 600, reward: str = "0.10",
                 title: str = "Is there a shared pattern?") -> tuple[str, list[str]]:
    """One HIT type and ``n_hits`` HITs of it through boto3; returns (type id, HIT ids)."""
    type_id = client.create_hit_type(Title=title,
                                     Description="Look at the images and answer.",
                                     Reward=reward, AssignmentDurationInSeconds=duration,
                                     Keywords="images, patterns")["HITTypeId"]
    hit_ids = [
        client.create_hit_with_hit_type(HITTypeId=type_id, LifetimeInSeconds=lifetime,
                                        MaxAssignments=max_assignments,
                                        Question=question(f"k{i}"),
                                        RequesterAnnotation=f"k{i}")["HIT"]["HITId"]
        for i in range(n_hits)
    ]
    return type_id, hit_ids


def accept(session: requests.Session, base: str, hit_id: str) -> tuple[int, str | None]:
    """Accept a HIT; (status, assignment id or None)."""
    r = session.post(f"{base}/worker/hits/{hit_id}/accept", allow_redirects=False, timeout=30)
    if r.status_code == 303:
        return 303, r.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    return r.status_code, None


def load_page(session: requests.Session, base: str, assignment_id: str) -> str:
    """Follow the assignment view's iframe src and return the HIT page."""
    view = session.get(f"{base}/worker/assignments/{assignment_id}", timeout=30)
    view.raise_for_status()
    src = re.search(r'<iframe[^>]*src="([^"]+)"', view.text).group(1).replace("&amp;", "&")
    page = session.get(base + src, timeout=30)
    page.raise_for_status()
    return page.text


def submit(session: requests.Session, base: str, assignment_id: str,
           **answers: str) -> requests.Response:
    """POST the form to externalSubmit."""
    return session.post(f"{base}/mturk/externalSubmit",
                        data={"assignmentId": assignment_id, **answers}, timeout=30)


def parse_answer_xml(xml: str) -> dict[str, str]:
    """QuestionFormAnswers XML -> {field: value}, parsed independently of the server."""
    root = ET.fromstring(xml)
    assert root.tag == f"{{{ANSWER_NS}}}QuestionFormAnswers"
    return {
        a.findtext(f"{{{ANSWER_NS}}}QuestionIdentifier"): a.findtext(f"{{{ANSWER_NS}}}FreeText")
        or ""
        for a in root.findall(f"{{{ANSWER_NS}}}Answer")
    }


def submit_page_form(session: requests.Session, page: str, **answers: str) -> requests.Response:
    """Submit the page's form as a browser without JavaScript would: to the form's action,
    with its inputs' (server-filled) values plus ``answers``."""
    from bs4 import BeautifulSoup

    form = BeautifulSoup(page, "html.parser").find("form")
    data = {i["name"]: i.get("value", "") for i in form.find_all(["input", "textarea"])
            if i.get("name")}
    data.update(answers)
    return session.post(form["action"], data=data, timeout=30)
