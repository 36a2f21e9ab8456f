"""Admin blueprint (HTTP Basic credentials on every route).

- ``GET /admin/``: progress per batch (HIT type) and the account balance.
- ``GET /admin/hittypes/<id>``: the batch's HITs (RequesterAnnotation, counts).
- ``GET /admin/hits/<hit_id>``: answers per assignment (escaped) with approve/reject buttons;
  ``POST /admin/assignments/<id>/approve|reject`` need the per-session CSRF token.
- ``POST /admin/api/workers`` (JSON ``{"worker_id": ...}``) -> ``{"worker_id", "token"}``:
  issues or rotates a worker's login token (only its hash is stored).
- ``PUT /admin/api/assets/<name>/<path>``: upload one asset file (body = file bytes) into the
  upload directory, served at ``/assets/<name>/<path>``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

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
from werkzeug.security import safe_join

from sparse_probe.rundir import write_bytes

from . import mturk_ops
from .assets import asset_root
from .errors import MTurkError
from .qualifications import LOCALE
from .storage import get_storage, issue_worker_token
from .worker import ANSWER_NS

__all__ = ["bp", "parse_answers"]

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _require_admin() -> Response | None:
    auth = request.authorization
    cfg = current_app.config
    ok = (
        auth is not None
        and auth.type == "basic"
        and hmac.compare_digest((auth.username or "").encode(), cfg["ADMIN_USER"].encode())
        and hmac.compare_digest((auth.password or "").encode(), cfg["ADMIN_PASSWORD"].encode())
    )
    if not ok:
        return Response("admin credentials required\n", 401,
                        {"WWW-Authenticate": 'Basic realm="sparse-probe admin"'},
                        mimetype="text/plain")
    return None


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token", "")
    stored = session.get("csrf", "")
    return bool(stored) and hmac.compare_digest(sent.encode(), stored.encode())


def parse_answers(xml: str | None) -> list[tuple[str, str]]:
    """``[(field, value)]`` from QuestionFormAnswers XML (empty when absent or unreadable)."""
    if not xml:
        return []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [("(unreadable answer XML)", xml)]
    out = []
    for ans in root.findall(f"{{{ANSWER_NS}}}Answer"):
        out.append((ans.findtext(f"{{{ANSWER_NS}}}QuestionIdentifier") or "",
                    ans.findtext(f"{{{ANSWER_NS}}}FreeText") or ""))
    return out


@bp.get("/")
def index() -> str:
    """Progress per batch."""
    store = get_storage()
    mturk_ops.apply_auto_approvals(store)
    batches = store.batches()
    balance = mturk_ops.get_account_balance(store, {})["AvailableBalance"]
    return render_template("admin_index.html", batches=batches, balance=balance)


@bp.get("/hittypes/<hit_type_id>")
def batch(hit_type_id: str) -> Response | str:
    """The HITs of one batch."""
    found = get_storage().batch(hit_type_id)
    if found is None:
        return Response("no such HIT type\n", 404, mimetype="text/plain")
    htype, hits, counts = found
    return render_template("admin_batch.html", htype=htype, hits=hits, counts=counts)


@bp.get("/hits/<hit_id>")
def hit_detail(hit_id: str) -> Response | str:
    """Answers per assignment with approve/reject buttons."""
    store = get_storage()
    mturk_ops.apply_auto_approvals(store)
    found = store.hit_assignments(hit_id)
    if found is None:
        return Response("no such HIT\n", 404, mimetype="text/plain")
    hit, rows = found
    assignments = [{"a": a, "answers": parse_answers(a.answer)} for a in rows]
    return render_template("admin_hit.html", hit=hit, assignments=assignments,
                           csrf_token=_csrf_token(), message=request.args.get("message"))


def _review(assignment_id: str, approve: bool) -> Response:
    if not _csrf_ok():
        return Response("missing or wrong CSRF token; reload the page\n", 403,
                        mimetype="text/plain")
    store = get_storage()
    try:
        if approve:
            params: dict[str, Any] = {"AssignmentId": assignment_id}
            if request.form.get("override"):
                params["OverrideRejection"] = True
            mturk_ops.approve_assignment(store, params)
        else:
            feedback = request.form.get("feedback", "").strip() or "Rejected by the requester."
            mturk_ops.reject_assignment(store, {"AssignmentId": assignment_id,
                                             "RequesterFeedback": feedback[:1024]})
        message = f"{assignment_id} {'approved' if approve else 'rejected'}"
    except MTurkError as err:
        message = err.message
    hit_id = store.hit_of_assignment(assignment_id)
    if hit_id is None:
        return Response("no such assignment\n", 404, mimetype="text/plain")
    return redirect(url_for("admin.hit_detail", hit_id=hit_id, message=message), 303)


@bp.post("/assignments/<assignment_id>/approve")
def approve(assignment_id: str) -> Response:
    """Approve (CSRF-checked form POST)."""
    return _review(assignment_id, True)


@bp.post("/assignments/<assignment_id>/reject")
def reject(assignment_id: str) -> Response:
    """Reject (CSRF-checked form POST)."""
    return _review(assignment_id, False)


@bp.post("/api/workers")
def api_issue_worker() -> tuple[Response, int]:
    """Issue (or rotate) a worker token, and optionally set the worker's Locale
    qualification (``"locale": "US"`` or ``"US-CA"``). JSON only, so a cross-site form cannot
    call it."""
    data = request.get_json(silent=True)
    if not request.is_json or not isinstance(data, dict) or "worker_id" not in data:
        return jsonify({"error": 'send JSON {"worker_id": "..."}'}), 400
    locale = data.get("locale")
    if locale is not None and (not isinstance(locale, str)
                               or not re.fullmatch(r"[A-Z]{2}(-[A-Z0-9]{1,3})?", locale)):
        return jsonify({"error": 'locale: expected a country code such as "US", optionally '
                                 'with a subdivision ("US-CA")'}), 400
    try:
        token = issue_worker_token(get_storage(), data["worker_id"])
    except ValueError as exc:
        return jsonify({"error": str(exc)}), 400
    out = {"worker_id": data["worker_id"], "token": token}
    if locale is not None:
        country, _, subdivision = locale.partition("-")
        get_storage().grant_qualification(LOCALE, data["worker_id"], country=country,
                                          subdivision=subdivision or None, now=time.time())
        out["locale"] = locale
    return jsonify(out), 201


@bp.put("/api/assets/<name>/<path:filename>")
def api_upload_asset(name: str, filename: str) -> tuple[Response, int]:
    """Store the request body as ``/assets/<name>/<filename>`` (atomic write)."""
    request.max_content_length = int(current_app.config["MAX_UPLOAD_BYTES"])
    root = asset_root(name)
    if root is None:
        return jsonify({"error": f"asset directory name {name!r} is not allowed"}), 400
    if not root[1]:
        return jsonify({"error": f"{name!r} is a registered read-only directory"}), 409
    target = safe_join(str(root[0]), filename)
    if target is None or filename.endswith("/"):
        return jsonify({"error": f"path {filename!r} is not allowed"}), 400
    data = request.get_data(cache=False)
    write_bytes(Path(target), data, mode=0o644)
    url = url_for("assets.serve_asset", name=name, filename=filename)
    return jsonify({"url": url, "bytes": len(data)}), 201
