"""The signed-JSON session cookie: round trip, tampering, wrong key, expiry at its boundary."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest
from flask import Flask, session

from tasks.server import sessions
from tasks.server.sessions import SignedJSONSessionInterface, decode_session, session_key

LIFETIME = 3600.0
KEY = session_key("s3cret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cookie(data: object, key: bytes = KEY) -> str:
    """A cookie value built independently of the module: base64(json) '.' base64(hmac)."""
    payload = _b64(json.dumps(data).encode())
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def frozen(monkeypatch):
    """Pin time.time() (as the sessions module sees it) to a fixed instant."""
    now = 1_800_000_000.0
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    return now


def _app(**config) -> Flask:
    app = Flask(__name__)
    app.secret_key = "s3cret"
    app.session_interface = SignedJSONSessionInterface()
    app.config.update(PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME), **config)

    @app.post("/login/<name>")
    def login(name):
        session["worker"] = name
        return "ok"

    @app.get("/whoami")
    def whoami():
        return session.get("worker", "-")

    @app.post("/remember/<name>")
    def remember(name):
        session["worker"] = name
        session.permanent = True
        return "ok"

    @app.post("/forget")
    def forget():
        session.pop("worker", None)
        return "forgotten"

    @app.post("/logout")
    def logout():
        session.clear()
        return "bye"

    return app


def test_session_key_needs_a_secret_and_depends_on_it():
    for empty in ("", None, 0):
        with pytest.raises(RuntimeError, match=r"^SECRET_KEY is required for sessions$"):
            session_key(empty)
    assert session_key("a") == session_key("a")
    assert session_key("a") != session_key("b")
    assert len(session_key("a")) == 32


def test_decode_accepts_a_valid_cookie_and_keeps_the_issue_time(frozen):
    data = {"worker": "W1", "_t": frozen - 10}
    assert decode_session(_cookie(data), KEY, LIFETIME) == data


@pytest.mark.parametrize("age", [0.0, LIFETIME - 1, LIFETIME])
def test_session_valid_up_to_and_at_its_lifetime(frozen, age):
    raw = _cookie({"worker": "W1", "_t": frozen - age})
    assert decode_session(raw, KEY, LIFETIME) == {"worker": "W1", "_t": frozen - age}


@pytest.mark.parametrize("age", [LIFETIME + 0.001, LIFETIME + 1, 10 * LIFETIME])
def test_session_expired_past_its_lifetime(frozen, age):
    assert decode_session(_cookie({"worker": "W1", "_t": frozen - age}), KEY, LIFETIME) is None


def test_session_without_issue_time_or_with_a_bad_one_is_refused(frozen):
    assert decode_session(_cookie({"worker": "W1"}), KEY, LIFETIME) is None
    assert decode_session(_cookie({"worker": "W1", "_t": "now"}), KEY, LIFETIME) is None
    assert decode_session(_cookie({"worker": "W1", "_t": None}), KEY, LIFETIME) is None
    # An integer issue time is as good as a float one.
    assert decode_session(_cookie({"w": 1, "_t": int(frozen)}), KEY, LIFETIME) == {
        "w": 1, "_t": int(frozen)}


@pytest.mark.parametrize("raw", ["", "nodot", ".", "abc.def"])
def test_malformed_cookie_is_refused(raw):
    assert decode_session(raw, KEY, LIFETIME) is None


def test_wrong_key_or_tampering_is_refused(frozen):
    raw = _cookie({"worker": "W1", "_t": frozen})
    assert decode_session(raw, session_key("other"), LIFETIME) is None
    payload, sig = raw.split(".")
    forged = _b64(json.dumps({"worker": "ADMIN", "_t": frozen}).encode())
    assert decode_session(f"{forged}.{sig}", KEY, LIFETIME) is None
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert decode_session(f"{payload}.{flipped}", KEY, LIFETIME) is None


def test_signed_payload_that_is_not_a_json_object_is_refused(frozen):
    assert decode_session(_cookie(["worker", frozen]), KEY, LIFETIME) is None
    assert decode_session(_cookie("W1"), KEY, LIFETIME) is None
    payload = _b64(b"\xff not json")
    sig = _b64(hmac.new(KEY, payload.encode(), hashlib.sha256).digest())
    assert decode_session(f"{payload}.{sig}", KEY, LIFETIME) is None


@pytest.mark.parametrize("name", ["W", "W1", "W12", "W123", "Wörker-ünïcode"])
def test_round_trip_through_flask_for_every_padding_length(name):
    client = _app().test_client()
    assert client.get("/whoami").text == "-"
    r = client.post(f"/login/{name}")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "Cookie" in [v.strip() for v in r.headers["Vary"].split(",")]
    assert client.get("/whoami").text == name
    value = client.get_cookie("session").value
    data = decode_session(value, KEY, LIFETIME)
    assert data is not None and data["worker"] == name
    assert abs(data["_t"] - time.time()) < LIFETIME  # issued now, not at the epoch


def test_session_cookie_is_signed_with_the_apps_secret():
    client = _app().test_client()
    client.post("/login/W1")
    value = client.get_cookie("session").value
    assert decode_session(value, session_key("other"), LIFETIME) is None
    other = _app()
    other.secret_key = "different"
    c2 = other.test_client()
    c2.set_cookie("session", value)
    assert c2.get("/whoami").text == "-"


def test_expired_cookie_gives_an_empty_session(monkeypatch):
    client = _app().test_client()
    client.post("/login/W1")
    real = time.time
    monkeypatch.setattr(sessions.time, "time", lambda: real() + LIFETIME + 5)
    assert client.get("/whoami").text == "-"


def test_reading_a_session_sets_no_cookie_and_logout_deletes_it():
    client = _app().test_client()
    assert "Set-Cookie" not in client.get("/whoami").headers  # nothing stored, nothing sent
    client.post("/login/W1")
    r = client.get("/whoami")
    assert r.text == "W1" and "Set-Cookie" not in r.headers  # unchanged session: no re-send
    r = client.post("/logout")
    assert "session=;" in r.headers["Set-Cookie"] and "Expires=Thu, 01 Jan 1970" in \
        r.headers["Set-Cookie"]
    assert client.get("/whoami").text == "-"


def test_cookie_flags_follow_the_app_config():
    app = _app(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict",
               SESSION_COOKIE_PATH="/w", SESSION_COOKIE_NAME="sp", SESSION_COOKIE_DOMAIN="example.test")
    r = app.test_client().post("/login/W1")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("sp=")
    for flag in ("Secure", "SameSite=Strict", "Path=/w", "HttpOnly", "Domain=example.test"):
        assert flag in cookie, flag


def test_logout_deletes_the_cookie_where_it_was_set():
    app = _app(SESSION_COOKIE_PATH="/w", SESSION_COOKIE_NAME="sp",
               SESSION_COOKIE_DOMAIN="example.test")
    client = app.test_client()
    client.post("/login/W1")
    cookie = client.post("/logout").headers["Set-Cookie"]
    assert cookie.startswith("sp=;")
    assert "Path=/w" in cookie and "Domain=example.test" in cookie


def test_many_session_contents_round_trip(frozen):
    """Session contents of every length mod 3 (so every stripped padding) survive the cookie."""
    app = _app()
    for i in range(60):
        client = app.test_client()
        name = f"W{i}" + "x" * (i % 7)
        client.post(f"/login/{name}")
        assert client.get("/whoami").text == name


def test_session_left_with_only_its_issue_time_is_deleted():
    client = _app().test_client()
    client.post("/login/W1")
    r = client.post("/forget")
    assert "session=;" in r.headers["Set-Cookie"]
    assert client.get_cookie("session") is None


def test_permanent_session_cookie_expires_after_the_lifetime():
    r = _app().test_client().post("/remember/W1")
    cookie = r.headers["Set-Cookie"]
    expires = re.search(r"Expires=([^;]+)", cookie)
    assert expires is not None, cookie
    when = parsedate_to_datetime(expires.group(1)).timestamp()
    assert abs(when - (time.time() + LIFETIME)) < 120
