"""A lean signed-cookie session for Flask (JSON + HMAC-SHA256), faster than the default.

Flask's default session (itsdangerous, tagged JSON, optional zlib) costs more per request than
the task server's whole accept transaction. This interface signs compact JSON with
HMAC-SHA256 under ``SECRET_KEY`` and stores the issue time to expire sessions after
``PERMANENT_SESSION_LIFETIME``. Values must be JSON-serializable (the server stores strings).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SessionInterface

__all__ = ["SignedJSONSessionInterface", "decode_session", "session_key"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(secret: Any) -> bytes:
    """The HMAC key derived from the app's ``SECRET_KEY``."""
    if not secret:
        raise RuntimeError("SECRET_KEY is required for sessions")
    return hashlib.sha256(b"sparse-probe-session\0" + str(secret).encode()).digest()


def decode_session(raw: str, key: bytes, lifetime_s: float) -> dict[str, Any] | None:
    """The session data of cookie value ``raw`` (``_t``, the issue time, kept), or None when it
    is malformed, its HMAC-SHA256 does not verify under ``key`` or it is older than
    ``lifetime_s`` seconds."""
    if not raw or "." not in raw:
        return None
    payload, _, sig = raw.rpartition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, sig):
        return None
    try:
        data = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    issued = data.get("_t", 0)
    if not isinstance(issued, int | float) or time.time() - issued > lifetime_s:
        return None
    data["_t"] = issued
    return data


class SignedJSONSessionInterface(SessionInterface):
    """Session cookie ``<base64 json>.<base64 hmac-sha256>``; tampered or expired -> empty."""

    session_class = SecureCookieSession

    def _key(self, app: Flask) -> bytes:
        return session_key(app.secret_key)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession:
        raw = request.cookies.get(self.get_cookie_name(app))
        data = decode_session(raw or "", self._key(app),
                              app.permanent_session_lifetime.total_seconds())
        if data is None:
            return self.session_class()
        session = self.session_class(data)
        session.modified = False
        return session

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if not session or set(session) <= {"_t"}:
            if session.modified:
                response.delete_cookie(name, domain=domain, path=path)
            return
        if not session.modified:
            return
        data = dict(session)
        data["_t"] = time.time()
        payload = _b64(json.dumps(data, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key(app), payload.encode(), hashlib.sha256).digest())
        response.set_cookie(
            name, f"{payload}.{sig}", expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app), domain=domain, path=path,
            secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")
