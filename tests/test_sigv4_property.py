"""SigV4 acceptance against botocore's own signer, over random requests, times and keys.

The statement checked is independent of the verifier's code: a request signed by botocore's
:class:`~botocore.auth.SigV4Auth` is accepted if and only if it was signed with the server's
secret key and its signing time is within ``MAX_CLOCK_SKEW_SECONDS`` of the server's clock,
on either side.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.server.errors import MTurkError
from tasks.server.sigv4 import MAX_CLOCK_SKEW_SECONDS, verify_sigv4

HOST = "127.0.0.1:8765"
TARGET = "MTurkRequesterServiceV20170117.ListHITs"

key_ids = st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=20)
secrets = st.text(string.ascii_letters + string.digits + "+/=_-", min_size=1, max_size=48)
times = st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 12, 31),
                     timezones=st.just(dt.UTC)).map(lambda t: t.replace(microsecond=0))
bodies = st.one_of(st.binary(max_size=256),
                   st.text(max_size=128).map(lambda s: json.dumps({"q": s}).encode()))
paths = st.sampled_from(["/", "/api", "/a/b", "/x%20y"])
skews = st.one_of(
    st.integers(-3 * MAX_CLOCK_SKEW_SECONDS, 3 * MAX_CLOCK_SKEW_SECONDS),
    st.sampled_from([-MAX_CLOCK_SKEW_SECONDS - 1, -MAX_CLOCK_SKEW_SECONDS,
                     MAX_CLOCK_SKEW_SECONDS, MAX_CLOCK_SKEW_SECONDS + 1]),
    st.integers(-10 * 24 * 3600, 10 * 24 * 3600),
)


def sign(*, key_id: str, secret: str, at: dt.datetime, body: bytes, path: str = "/",
         region: str = "us-east-1", service: str = "mturk-requester") -> tuple[str, dict]:
    """``(url, headers)`` of a POST signed by botocore at time ``at``, as sent on the wire."""
    url = f"http://{HOST}{path}"
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET})
    with pytest.MonkeyPatch.context() as mp:  # botocore reads the signing time from its clock
        mp.setattr(botocore.auth, "get_current_datetime",
                   lambda *a, **k: at.astimezone(dt.UTC).replace(tzinfo=None))
        SigV4Auth(Credentials(key_id, secret), service, region).add_auth(request)
    headers = dict(request.prepare().headers)
    headers["Host"] = HOST  # what the HTTP client sends
    return url, headers


def verdict(url: str, headers: dict, body: bytes, *, key_id: str, secret: str,
            now: dt.datetime) -> str:
    """``"ok"`` or the error type the server answers."""
    try:
        verify_sigv4(method="POST", url=url, headers=headers, body=body,
                     access_key_id=key_id, secret_access_key=secret, now=now)
    except MTurkError as exc:
        return exc.error_type
    return "ok"


@settings(max_examples=150, deadline=None)
@given(key_id=key_ids, secret=secrets, other=secrets, signed_at=times, skew=skews,
       body=bodies, path=paths, right_key=st.booleans())
@example(key_id="AKIDEXAMPLE000000", secret="s", other="t", signed_at=dt.datetime(
    2030, 1, 1, tzinfo=dt.UTC), skew=MAX_CLOCK_SKEW_SECONDS, body=b"", path="/", right_key=True)
@example(key_id="AKIDEXAMPLE000000", secret="s", other="t", signed_at=dt.datetime(
    2030, 1, 1, tzinfo=dt.UTC), skew=-MAX_CLOCK_SKEW_SECONDS - 1, body=b"", path="/",
    right_key=True)
def test_accepted_iff_right_key_and_within_the_clock_skew(key_id, secret, other, signed_at, skew,
                                                          body, path, right_key):
    used = secret if right_key or other == secret else other
    url, headers = sign(key_id=key_id, secret=used, at=signed_at, body=body, path=path)
    now = signed_at + dt.timedelta(seconds=skew)
    got = verdict(url, headers, body, key_id=key_id, secret=secret, now=now)
    expected = used == secret and abs(skew) <= MAX_CLOCK_SKEW_SECONDS
    assert (got == "ok") == expected, (got, skew, used == secret)
    if not expected:
        assert got == "InvalidSignatureException"


@pytest.mark.parametrize("skew", [-MAX_CLOCK_SKEW_SECONDS, -MAX_CLOCK_SKEW_SECONDS + 1, 0,
                                  MAX_CLOCK_SKEW_SECONDS - 1, MAX_CLOCK_SKEW_SECONDS])
def test_clock_skew_window_is_inclusive_on_both_sides(skew):
    t = dt.datetime(2031, 6, 30, 23, 59, 50, tzinfo=dt.UTC)  # the server's day may differ
    url, headers = sign(key_id="AKID1234567890ABCD", secret="sec", at=t, body=b"{}")
    assert verdict(url, headers, b"{}", key_id="AKID1234567890ABCD", secret="sec",
                   now=t + dt.timedelta(seconds=skew)) == "ok"


@pytest.mark.parametrize("skew", [-MAX_CLOCK_SKEW_SECONDS - 1, MAX_CLOCK_SKEW_SECONDS + 1,
                                  -10 * 24 * 3600, 10 * 24 * 3600])
def test_signatures_outside_the_window_are_refused_both_ways(skew):
    """Old signatures expire, and future-dated ones are not valid in advance either."""
    t = dt.datetime(2031, 6, 30, 12, tzinfo=dt.UTC)
    url, headers = sign(key_id="AKID1234567890ABCD", secret="sec", at=t, body=b"{}")
    assert verdict(url, headers, b"{}", key_id="AKID1234567890ABCD", secret="sec",
                   now=t + dt.timedelta(seconds=skew)) == "InvalidSignatureException"


def test_unknown_key_id_is_unrecognized():
    t = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    url, headers = sign(key_id="AKIDOTHER000000000", secret="sec", at=t, body=b"")
    assert verdict(url, headers, b"", key_id="AKID1234567890ABCD", secret="sec",
                   now=t) == "UnrecognizedClientException"


@pytest.mark.parametrize(("region", "service"), [("eu-west-1", "mturk-requester"),
                                                 ("us-east-1", "s3")])
def test_scope_for_another_region_or_service_is_refused(region, service):
    t = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    url, headers = sign(key_id="AKID1234567890ABCD", secret="sec", at=t, body=b"",
                        region=region, service=service)
    assert verdict(url, headers, b"", key_id="AKID1234567890ABCD", secret="sec",
                   now=t) == "InvalidSignatureException"


def test_credential_date_must_match_the_signing_date():
    """The scope's date is not part of what the server re-signs, so it is checked on its own:
    a valid request whose Credential date was edited is refused."""
    t = dt.datetime(2031, 1, 1, 0, 5, tzinfo=dt.UTC)
    url, headers = sign(key_id="AKID1234567890ABCD", secret="sec", at=t, body=b"")
    assert verdict(url, headers, b"", key_id="AKID1234567890ABCD", secret="sec", now=t) == "ok"
    headers["Authorization"] = re.sub(r"/20310101/", "/20301231/", headers["Authorization"])
    assert verdict(url, headers, b"", key_id="AKID1234567890ABCD", secret="sec",
                   now=t) == "InvalidSignatureException"


@given(body=bodies, flip=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_any_change_to_the_signed_body_is_refused(body, flip):
    t = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    url, headers = sign(key_id="AKID1234567890ABCD", secret="sec", at=t, body=body)
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
    else:
        changed = b"x"
    assert verdict(url, headers, changed, key_id="AKID1234567890ABCD", secret="sec",
                   now=t) == "InvalidSignatureException"
