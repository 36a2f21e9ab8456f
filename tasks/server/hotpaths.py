"""Plain-WSGI fast path for the three requests of every worker cycle.

A worker's cycle is ``POST /worker/hits/<id>/accept``, ``GET /worker/assignments/<id>/page``
and ``POST /mturk/externalSubmit``. Through Flask each costs about a millisecond of CPU in
request/response objects, routing and context locals; :class:`HotPathMiddleware` answers the
*successful* case of these three directly from the WSGI environ with the same storage calls
(:class:`tasks.server.storage.Storage`, with ``explain=False``: the same statements, less the
reads that only explain a refusal), the same signed session cookie
(:func:`tasks.server.sessions.decode_session`), the same same-origin check and the same
escaping, and hands everything else (not logged in, foreign origin,
multipart bodies, any refusal) to the Flask app unchanged, which then produces the usual
response. A refusal found here is never answered here: the transaction is rolled back (or
nothing was written) and Flask re-runs the request from the start, so its checks decide.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from markupsafe import escape as html_escape

from .mturk_ops import new_id
from .sessions import decode_session, session_key
from .storage import ACCEPTED, Storage
from .worker import (
    MAX_ANSWER_FIELDS,
    PREVIEW_ASSIGNMENT_ID,
    answers_xml,
    page_parts,
    submission_problems,
)

__all__ = ["HotPathMiddleware"]

_ACCEPT_RE = re.compile(r"/worker/hits/([^/]+)/accept")
_PAGE_RE = re.compile(r"/worker/assignments/([^/]+)/page")
_SAFE_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_DEFAULT_PORT = {"http": ":80", "https": ":443"}
_DONE_MARK = "\x00assignment\x00"

Start = Callable[..., Any]


def _redirect_body(location: str) -> bytes:
    loc = str(html_escape(location))
    return ("<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n"
            "<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target "
            f'URL: <a href="{loc}">{loc}</a>. If not, click the link.\n').encode()


class HotPathMiddleware:
    """WSGI middleware answering successful accept/page/submit requests without Flask.

    Parameters
    ----------
    app : flask.Flask
        The task server; its ``wsgi_app`` handles every request this class does not answer.
    """

    def __init__(self, app: Any):
        self.app = app
        self.flask_wsgi = app.wsgi_app
        self.store: Storage = app.extensions["sparse_probe_storage"]
        cfg = app.config
        self.cookie_name: str = cfg["SESSION_COOKIE_NAME"]
        self.key = session_key(app.secret_key)
        self.lifetime = app.permanent_session_lifetime.total_seconds()
        self.max_body = int(cfg.get("MAX_CONTENT_LENGTH") or 2_000_000)
        self.schema = cfg.get("QUESTION_SCHEMA")
        with app.test_request_context("/"):
            from flask import render_template

            done = render_template("worker_done.html", assignment_id=_DONE_MARK)
        self.done_parts = done.split(_DONE_MARK)

    # ------------------------------------------------------------------------------- helpers
    def _worker(self, environ: dict[str, Any]) -> str | None:
        header = environ.get("HTTP_COOKIE")
        if not header:
            return None
        prefix = self.cookie_name + "="
        for part in header.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                data = decode_session(part[len(prefix):], self.key, self.lifetime)
                worker = data.get("worker_id") if data else None
                return worker if isinstance(worker, str) else None
        return None

    @staticmethod
    def _origin(environ: dict[str, Any]) -> str | None:
        """``scheme://host`` as Flask's ``request.host`` gives it; None for odd hosts."""
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST")
        if not host or not _SAFE_HOST.fullmatch(host):
            return None
        default = _DEFAULT_PORT.get(scheme)
        if default and host.endswith(default):
            host = host[: -len(default)]
        return f"{scheme}://{host}"

    def _same_origin(self, environ: dict[str, Any], origin: str) -> bool:
        sent = environ.get("HTTP_ORIGIN")
        return sent is None or sent == origin

    @staticmethod
    def _respond(start: Start, status: str, body: bytes, headers: list[tuple[str, str]]
                 ) -> list[bytes]:
        start(status, [("Content-Type", "text/html; charset=utf-8"),
                       ("Content-Length", str(len(body))), *headers,
                       ("X-Content-Type-Options", "nosniff")])
        return [body]

    # -------------------------------------------------------------------------------- routes
    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        if "\x00" in path:
            return self.flask_wsgi(environ, start)  # refused there (400)
        try:
            if method == "POST":
                if path == "/mturk/externalSubmit":
                    return self._submit(environ, start)
                m = _ACCEPT_RE.fullmatch(path)
                if m:
                    return self._accept(environ, start, m.group(1))
            elif method == "GET":
                m = _PAGE_RE.fullmatch(path)
                if m:
                    return self._page(environ, start, m.group(1))
        except _Delegate:
            pass  # not a request the fast path serves: the Flask app below does
        return self.flask_wsgi(environ, start)

    def _accept(self, environ: dict[str, Any], start: Start, hit_id: str) -> list[bytes]:
        worker_id = self._worker(environ)
        origin = self._origin(environ)
        if worker_id is None or origin is None or not self._same_origin(environ, origin):
            raise _Delegate
        assignment_id = new_id()
        if self.store.accept(hit_id, worker_id, assignment_id, time.time(),
                             explain=False) != ACCEPTED:
            raise _Delegate  # nothing written; Flask frees abandoned slots or refuses
        location = f"/worker/assignments/{assignment_id}"
        return self._respond(start, "303 SEE OTHER", _redirect_body(location),
                             [("Location", location)])

    def _page(self, environ: dict[str, Any], start: Start, assignment_id: str) -> list[bytes]:
        worker_id = self._worker(environ)
        origin = self._origin(environ)
        if worker_id is None or origin is None:
            raise _Delegate
        sent = next((v for k, v in parse_qsl(environ.get("QUERY_STRING", ""),
                                             keep_blank_values=True) if k == "assignmentId"),
                    None)  # the first value, as Flask's request.args.get
        if sent != assignment_id:
            raise _Delegate
        row = self.store.owned_assignment(assignment_id)
        if row is None:
            raise _Delegate
        if (row.worker_id != worker_id or row.status != "Accepted" or row.deadline < time.time()
                or row.external_url):
            raise _Delegate
        parts = page_parts(row.hit_id, row.html_content or "")
        if parts is None:
            raise _Delegate
        values = {"assignmentId": str(html_escape(assignment_id)),
                  "hitId": str(html_escape(row.hit_id)),
                  "workerId": str(html_escape(worker_id)), "turkSubmitTo": origin}
        page = "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(parts))
        return self._respond(start, "200 OK", page.encode(), [("Cache-Control", "no-store")])

    def _submit(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        worker_id = self._worker(environ)
        origin = self._origin(environ)
        if worker_id is None or origin is None or not self._same_origin(environ, origin):
            raise _Delegate
        ctype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            raise _Delegate from None
        if ctype != "application/x-www-form-urlencoded" or not 0 <= length <= self.max_body:
            raise _Delegate
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask can still read it if we delegate
        try:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                              max_num_fields=10 * MAX_ANSWER_FIELDS)
        except ValueError:
            raise _Delegate from None
        grouped: dict[str, list[str]] = {}
        for name, value in pairs:
            grouped.setdefault(name, []).append(value)
        assignment_id = (grouped.get("assignmentId") or [""])[0].strip()
        fields = [(name, "|".join(v)) for name, v in grouped.items() if name != "assignmentId"]
        if (not assignment_id or assignment_id == PREVIEW_ASSIGNMENT_ID or not fields
                or len(fields) > MAX_ANSWER_FIELDS or "\x00" in assignment_id
                or submission_problems(self.schema, grouped)):
            raise _Delegate  # Flask refuses with the reason
        xml = answers_xml(fields)
        if self.store.submit(assignment_id, worker_id, xml, time.time(),
                             explain=False) != "stored":
            raise _Delegate  # nothing written; Flask's identical UPDATE refuses with the reason
        page = str(html_escape(assignment_id)).join(self.done_parts)
        return self._respond(start, "200 OK", page.encode(), [])


class _Delegate(Exception):  # noqa: N818 - control flow, not an error
    """Hand the request to Flask."""

