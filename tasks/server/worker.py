"""Worker blueprint: log in with a token, list HITs, accept, work in an iframe, submit.

Routes (used by browsers and by the simulated workers, keep them stable):

- ``GET/POST /worker/login`` (form ``worker_id``, ``token``) -> signed session cookie;
  ``POST /worker/logout``.
- ``GET /worker/``: HITs this worker can accept (HTML; JSON with ``?format=json`` or
  ``Accept: application/json``).
- ``GET /worker/hits/<hit_id>/preview``: the HIT page with
  ``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``.
- ``POST /worker/hits/<hit_id>/accept`` -> 303 to ``/worker/assignments/<assignment_id>``.
- ``GET /worker/assignments/<assignment_id>``: the HIT in an iframe whose src is
  ``.../page?assignmentId=&hitId=&workerId=&turkSubmitTo=<origin>``.
- ``POST /mturk/externalSubmit``: stores the form as QuestionFormAnswers XML.

Refusals: 400 missing/invalid fields, 401 not logged in, 403 bad token / not your assignment /
cross-site request, 404 unknown HIT or assignment, 409 already taken / already submitted /
no assignment left, 410 HIT expired or assignment deadline passed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import escape as html_escape

from .mturk_ops import new_id
from .qualifications import meets, unmet
from .storage import ACCEPTED, OwnedAssignment, get_storage

__all__ = [
    "ANSWER_NS",
    "MAX_ANSWER_FIELDS",
    "PREVIEW_ASSIGNMENT_ID",
    "answers_xml",
    "bp",
    "fill_page",
    "page_parts",
    "submit_bp",
]

bp = Blueprint("worker", __name__, url_prefix="/worker")
submit_bp = Blueprint("submit", __name__)

ANSWER_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
    "QuestionFormAnswers.xsd"
)
PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
MAX_ANSWER_FIELDS = 200
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INPUT_RE = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_NAME_RE = re.compile(r"""\sname\s*=\s*(["']?)(assignmentId|hitId|workerId)\1(?=[\s/>])""")
_VALUE_RE = re.compile(r"""\svalue\s*=\s*("[^"]*"|'[^']*'|[^\s"'>/]+)""", re.IGNORECASE)
_ACTION_RE = re.compile(
    r"""(<form\b[^>]*?\saction\s*=\s*)(["'])/mturk/externalSubmit\2""", re.IGNORECASE
)


# ------------------------------------------------------------------------------------ helpers
def refuse(status: int, message: str, *, link: str | None = None) -> Response:
    """An HTML refusal page with ``status`` (never a 500)."""
    body = render_template("message.html", title=f"Error {status}", message=message, link=link)
    return Response(body, status=status, mimetype="text/html")


def _origin() -> str:
    return f"{request.scheme}://{request.host}"


def _same_origin_post() -> bool:
    """Refuse cross-site POSTs (the session cookie is also SameSite=Lax)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == _origin()


def current_worker() -> str | None:
    """The logged-in worker id, if any."""
    return session.get("worker_id")


def answers_xml(fields: list[tuple[str, str]]) -> str:
    """QuestionFormAnswers XML with one FreeText answer per form field.

    Parameters
    ----------
    fields : list of (name, value)
        Form fields in order (``assignmentId`` already removed); characters that XML 1.0
        cannot carry are dropped.
    """
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><QuestionFormAnswers xmlns="{ANSWER_NS}">']
    for name, value in fields:
        parts.append(
            "<Answer><QuestionIdentifier>"
            f"{escape(_XML_INVALID.sub('', name))}</QuestionIdentifier>"
            f"<FreeText>{escape(_XML_INVALID.sub('', value))}</FreeText></Answer>"
        )
    parts.append("</QuestionFormAnswers>")
    return "".join(parts)


def fill_page(html: str, values: dict[str, str], submit_to: str) -> str:
    """Fill hidden ``assignmentId``/``hitId``/``workerId`` inputs and the default form action.

    For clients without JavaScript: each ``<input name="assignmentId">`` (etc.) gets its value
    server-side, and ``action="/mturk/externalSubmit"`` becomes ``{submit_to}/mturk/...``.
    """

    def fill(m: re.Match[str]) -> str:
        tag = m.group(0)
        name = _NAME_RE.search(tag)
        if name is None:
            return tag
        tag = _VALUE_RE.sub("", tag)
        end = len(tag) - (2 if tag.endswith("/>") else 1)
        value = html_escape(values.get(name.group(2), ""))
        return f'{tag[:end].rstrip()} value="{value}"{tag[end:]}'

    html = _INPUT_RE.sub(fill, html)
    return _ACTION_RE.sub(lambda m: f'{m.group(1)}"{submit_to}/mturk/externalSubmit"', html)


_SLOT = re.compile("\x00(assignmentId|hitId|workerId|turkSubmitTo)\x00")
_PAGE_PARTS: dict[str, list[str]] = {}  # hit_id -> page split at its fill-in slots
_PAGE_PARTS_MAX = 1024


def page_parts(hit_id: str, html: str) -> list[str] | None:
    """The page split as ``[text, slot, text, ..., text]`` (cached per HIT: a HIT's question
    never changes), so each request only joins strings instead of running the regexes."""
    parts = _PAGE_PARTS.get(hit_id)
    if parts is None:
        if "\x00" in html:
            return None
        marks = {k: f"\x00{k}\x00" for k in ("assignmentId", "hitId", "workerId")}
        parts = _SLOT.split(fill_page(html, marks, "\x00turkSubmitTo\x00"))
        if len(_PAGE_PARTS) >= _PAGE_PARTS_MAX:
            _PAGE_PARTS.clear()
        _PAGE_PARTS[hit_id] = parts
    return parts


def _page_params(assignment_id: str, hit_id: str, worker_id: str | None) -> dict[str, str]:
    params = {"assignmentId": assignment_id, "hitId": hit_id}
    if worker_id:
        params["workerId"] = worker_id
    params["turkSubmitTo"] = _origin()
    return params


def _serve_hit_page(hit: tuple, params: dict[str, str]) -> Response:
    html, external_url = hit
    if external_url:
        sep = "&" if "?" in external_url else "?"
        return redirect(external_url + sep + urlencode(params), 302)
    parts = page_parts(params["hitId"], html or "")
    if parts is None:
        page = fill_page(html or "", params, params["turkSubmitTo"])
    else:
        page = "".join(
            p if i % 2 == 0 else (params["turkSubmitTo"] if p == "turkSubmitTo"
                                  else str(html_escape(params.get(p, ""))))
            for i, p in enumerate(parts))
    resp = Response(page, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -------------------------------------------------------------------------------------- login
@bp.get("/login")
def login_form() -> str:
    """The login form."""
    return render_template("worker_login.html", error=None, next=request.args.get("next", ""))


@bp.post("/login")
def login() -> Response:
    """Check ``worker_id`` + ``token`` and start a session."""
    if not _same_origin_post():
        return refuse(403, "cross-site login refused")
    worker_id = request.form.get("worker_id", "").strip()
    token = request.form.get("token", "").strip()
    nxt = request.form.get("next", "")
    if not worker_id or not token:
        body = render_template("worker_login.html", next=nxt,
                               error="Both the worker id and the token are required.")
        return Response(body, status=400, mimetype="text/html")
    if not get_storage().worker_token_ok(worker_id, token):
        body = render_template("worker_login.html", next=nxt,
                               error="Unknown worker id or wrong token.")
        return Response(body, status=403, mimetype="text/html")
    session.clear()
    session["worker_id"] = worker_id
    target = nxt if nxt.startswith("/worker/") and not nxt.startswith("//") else None
    return redirect(target or url_for("worker.index"), 303)


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    session.pop("worker_id", None)
    return redirect(url_for("worker.login_form"), 303)


def _need_login() -> Response:
    if request.method == "GET":
        return redirect(url_for("worker.login_form", next=request.full_path.rstrip("?")), 302)
    return refuse(401, "log in first", link=url_for("worker.login_form"))


# ------------------------------------------------------------------------------- HIT listing
@bp.get("/")
def index() -> Response | str:
    """HITs the worker can accept: assignable, not expired, not already taken by them, and
    whose QualificationRequirements they meet; with the requester's messages to them."""
    worker_id = current_worker()
    if worker_id is None:
        return _need_login()
    store = get_storage()
    rows = store.assignable_hits(worker_id, time.time())
    if any(r.qualification_requirements != "[]" for r in rows):
        values = store.worker_qualification_values(worker_id)
        rows = [r for r in rows if r.qualification_requirements == "[]"
                or meets(r.qualification_requirements, values, "Accept")]
    messages = [{"subject": m.subject, "message": m.message, "sent_time": m.sent_time}
                for m in store.messages(worker_id)]
    hits = [
        {
            "hit_id": r.hit_id,
            "title": r.title,
            "description": r.description,
            "reward": r.reward,
            "available": r.max_assignments - r.n_taken,
            "expiration": r.expiration,
            "preview_url": url_for("worker.preview", hit_id=r.hit_id),
            "accept_url": url_for("worker.accept", hit_id=r.hit_id),
        }
        for r in rows
    ]
    if request.args.get("format") == "json" or (
        request.accept_mimetypes.best_match(["text/html", "application/json"])
        == "application/json"
    ):
        return jsonify({"worker_id": worker_id, "hits": hits, "messages": messages})
    return render_template("worker_list.html", worker_id=worker_id, hits=hits,
                           messages=messages)


def _unqualified(hit_id: str, worker_id: str | None, action: str) -> Response | None:
    """403 if the HIT's QualificationRequirements that guard ``action`` are not met."""
    store = get_storage()
    requirements = store.hit_requirements(hit_id)
    if not requirements or requirements == "[]":
        return None
    missing = unmet(requirements, store.worker_qualification_values(worker_id), action)
    if not missing:
        return None
    names = ", ".join(f"{r['QualificationTypeId']} {r['Comparator']}" for r in missing)
    return refuse(403, f"You do not meet this HIT's qualification requirements ({names}).",
                  link=url_for("worker.index"))


@bp.get("/hits/<hit_id>/preview")
def preview(hit_id: str) -> Response:
    """The HIT page as a preview (cannot be submitted)."""
    store = get_storage()
    row = store.hit_page(hit_id)
    if row is None:
        return refuse(404, f"HIT {hit_id} does not exist")
    refused = _unqualified(hit_id, current_worker(), "Preview")
    if refused is not None:
        return refused
    params = _page_params(PREVIEW_ASSIGNMENT_ID, hit_id, current_worker())
    if request.args.get("assignmentId") != PREVIEW_ASSIGNMENT_ID:
        return redirect(f"{request.path}?{urlencode(params)}", 302)
    return _serve_hit_page(row, params)


# -------------------------------------------------------------------------------- accepting
def _already_taken(hit_id: str, worker_id: str) -> Response:
    mine = get_storage().assignment_of(hit_id, worker_id)
    link = url_for("worker.assignment", assignment_id=mine) if mine else None
    return refuse(409, "You already took this HIT.", link=link)


@bp.post("/hits/<hit_id>/accept")
def accept(hit_id: str) -> Response:
    """Take one assignment of the HIT (atomic: never more than MaxAssignments)."""
    worker_id = current_worker()
    if worker_id is None:
        return _need_login()
    if not _same_origin_post():
        return refuse(403, "cross-site request refused")
    assignment_id = new_id()
    refused = _unqualified(hit_id, worker_id, "Accept")
    if refused is not None:
        return refused
    outcome = get_storage().accept(hit_id, worker_id, assignment_id, time.time())
    if outcome == "missing":
        return refuse(404, f"HIT {hit_id} does not exist.")
    if outcome == "expired":
        return refuse(410, "This HIT has expired.", link=url_for("worker.index"))
    if outcome == "duplicate":
        return _already_taken(hit_id, worker_id)
    if outcome != ACCEPTED:
        return refuse(409, "No assignments of this HIT are left.", link=url_for("worker.index"))
    return redirect(url_for("worker.assignment", assignment_id=assignment_id), 303)


def _owned_assignment(assignment_id: str, worker_id: str) -> OwnedAssignment | Response:
    row = get_storage().owned_assignment(assignment_id)
    if row is None:
        return refuse(404, f"Assignment {assignment_id} does not exist.")
    if row.worker_id != worker_id:
        return refuse(403, "This assignment belongs to another worker.")
    if row.status != "Accepted":
        return refuse(409, "This assignment was already submitted.",
                      link=url_for("worker.index"))
    if row.deadline < time.time():
        return refuse(410, "The time for this assignment has run out.",
                      link=url_for("worker.index"))
    return row


@bp.get("/assignments/<assignment_id>")
def assignment(assignment_id: str) -> Response | str:
    """The HIT in an iframe with MTurk's URL parameters."""
    worker_id = current_worker()
    if worker_id is None:
        return _need_login()
    row = _owned_assignment(assignment_id, worker_id)
    if isinstance(row, Response):
        return row
    params = _page_params(assignment_id, row.hit_id, worker_id)
    src = url_for("worker.page", assignment_id=assignment_id) + "?" + urlencode(params)
    return render_template("worker_assignment.html", row=row, src=src,
                           assignment_id=assignment_id,
                           frame_height=row.frame_height or 800)


@bp.get("/assignments/<assignment_id>/page")
def page(assignment_id: str) -> Response:
    """The HIT's HTML with hidden ids and form action filled server-side."""
    worker_id = current_worker()
    if worker_id is None:
        return _need_login()
    row = _owned_assignment(assignment_id, worker_id)
    if isinstance(row, Response):
        return row
    params = _page_params(assignment_id, row.hit_id, worker_id)
    if request.args.get("assignmentId") != assignment_id:
        return redirect(f"{request.path}?{urlencode(params)}", 302)
    return _serve_hit_page((row.html_content, row.external_url), params)


# ---------------------------------------------------------------------------------- submitting
def submission_problems(schema: Any, form: Mapping[str, list[str]]) -> list[str]:
    """What a submitted form gets wrong against the server's question schema (one line each).

    Parameters
    ----------
    schema : sparse_probe.questions.QuestionSchema or None
        ``QUESTION_SCHEMA`` of the app config; None accepts any form (a generic MTurk-style
        server that does not know the HITs' questions).
    form : mapping of str to list of str
        Every submitted field with all its values; bookkeeping fields (``assignmentId``,
        ``hit_key``, ...) are ignored by the schema.
    """
    if schema is None:
        return []
    return list(schema.validate(form))


@submit_bp.post("/mturk/externalSubmit")
def external_submit() -> Response | str:
    """Store the answers of an accepted assignment once, before its deadline."""
    worker_id = current_worker()
    if worker_id is None:
        return refuse(401, "log in first", link=url_for("worker.login_form"))
    if not _same_origin_post():
        return refuse(403, "cross-site request refused")
    form = request.form
    assignment_id = form.get("assignmentId", "").strip()
    if not assignment_id:
        return refuse(400, "the form must include assignmentId")
    if assignment_id == PREVIEW_ASSIGNMENT_ID:
        return refuse(400, "a preview cannot be submitted; accept the HIT first")
    fields = [
        (name, "|".join(form.getlist(name))) for name in form if name != "assignmentId"
    ]
    if not fields:
        return refuse(400, "the form has no answer fields")
    if len(fields) > MAX_ANSWER_FIELDS:
        return refuse(400, f"the form has more than {MAX_ANSWER_FIELDS} fields")
    problems = submission_problems(current_app.config.get("QUESTION_SCHEMA"),
                                   {name: form.getlist(name) for name in form})
    if problems:
        return refuse(400, "Please go back and correct your answers: " + "; ".join(problems))
    xml = answers_xml(fields)
    outcome = get_storage().submit(assignment_id, worker_id, xml, time.time())
    if outcome == "missing":
        return refuse(404, f"Assignment {assignment_id} does not exist.")
    if outcome == "worker":
        return refuse(403, "This assignment belongs to another worker.")
    if outcome == "submitted":
        return refuse(409, "This assignment was already submitted; answers are kept as "
                      "first sent.", link=url_for("worker.index"))
    if outcome != "stored":
        return refuse(410, "The time for this assignment ran out before it was submitted.",
                      link=url_for("worker.index"))
    return render_template("worker_done.html", assignment_id=assignment_id)


def register(app: object) -> None:
    """Attach both worker blueprints to ``app``."""
    app.register_blueprint(bp)  # type: ignore[attr-defined]
    app.register_blueprint(submit_bp)  # type: ignore[attr-defined]


