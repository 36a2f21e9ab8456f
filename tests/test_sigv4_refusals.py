"""Every way the requester API refuses a signature, as the client sees it (in-process).

Each refusal is an ``MTurkError`` the server answers as JSON: the error type is what boto3
raises (``ClientError`` with that code), the HTTP status separates "not signed" (403) from
"signed wrongly" (400), the auth errors carry no ``TurkErrorCode``, and the message says what
to fix (in AWS's own words where AWS has them). The signing windows and the credential scope
are checked from both sides; acceptance against botocore's signer over random requests is in
``test_sigv4_property.py``.
"""

from __future__ import annotations

import datetime as dt
import re

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tasks.server.errors import MTurkError
from tasks.server.sigv4 import MAX_CLOCK_SKEW_SECONDS, verify_sigv4

HOST = "127.0.0.1:8765"
URL = f"http://{HOST}/"
KEY, SECRET = "AKID1234567890ABCD", "secret/key+1"
TARGET = "MTurkRequesterServiceV20170117.GetAccountBalance"
T = dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
INVALID = ("The request signature we calculated does not match the signature you provided. "
           "Check your AWS Secret Access Key and signing method.")


def sign(*, at: dt.datetime = T, body: bytes = b"{}", key: str = KEY, secret: str = SECRET,
         region: str = "us-east-1", service: str = "mturk-requester",
         target: str | None = TARGET) -> dict[str, str]:
    """Headers of a POST to URL signed by botocore at ``at``, as the HTTP client sends them."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=URL, data=body, headers=headers)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.auth, "get_current_datetime",
                   lambda *a, **k: at.astimezone(dt.UTC).replace(tzinfo=None))
        SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    out = dict(request.prepare().headers)
    out["Host"] = HOST
    return out


def check(headers: dict[str, str], *, body: bytes = b"{}", now: dt.datetime | None = T,
          **kw) -> str:
    return verify_sigv4(method="POST", url=URL, headers=headers, body=body, access_key_id=KEY,
                        secret_access_key=SECRET, now=now, **kw)


def refusal(headers: dict[str, str], **kw) -> MTurkError:
    with pytest.raises(MTurkError) as err:
        check(headers, **kw)
    e = err.value
    assert e.turk_code is None, "auth errors have no TurkErrorCode"
    assert str(e) == e.message
    return e


def with_auth(headers: dict[str, str], pattern: str, repl: str) -> dict[str, str]:
    out = dict(headers)
    changed = re.sub(pattern, repl, out["Authorization"])
    assert changed != out["Authorization"]
    out["Authorization"] = changed
    return out


# --------------------------------------------------------------------------- accepted
def test_a_correct_signature_is_accepted_and_returned_for_replay_detection():
    headers = sign()
    sig = re.search(r"Signature=([0-9a-f]{64})", headers["Authorization"]).group(1)
    assert check(headers) == sig
    # Header names are case-insensitive, as HTTP servers hand them over in any case.
    assert check({k.lower(): v for k, v in headers.items()}) == sig
    assert check({k.upper(): v for k, v in headers.items()}) == sig


def test_without_a_clock_given_the_servers_own_clock_is_used():
    """The server calls verify_sigv4 without ``now``: a request signed just now passes, one
    signed a day ago does not."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert len(check(sign(at=now), now=None)) == 64
    e = refusal(sign(at=now - dt.timedelta(days=1)), now=None)
    assert e.error_type == "InvalidSignatureException"


# --------------------------------------------------------------------------- the window
@pytest.mark.parametrize("skew", [0, 1, MAX_CLOCK_SKEW_SECONDS - 1, MAX_CLOCK_SKEW_SECONDS])
@pytest.mark.parametrize("side", [1, -1], ids=["server-ahead", "server-behind"])
def test_window_is_fifteen_minutes_inclusive_either_way(skew, side):
    assert MAX_CLOCK_SKEW_SECONDS == 15 * 60
    assert check(sign(), now=T + dt.timedelta(seconds=side * skew))


@pytest.mark.parametrize("skew", [MAX_CLOCK_SKEW_SECONDS + 1, 3600, 10 * 24 * 3600])
@pytest.mark.parametrize("side", [1, -1], ids=["expired", "future-dated"])
def test_one_second_past_the_window_is_refused_either_way(skew, side):
    e = refusal(sign(), now=T + dt.timedelta(seconds=side * skew))
    assert (e.error_type, e.status) == ("InvalidSignatureException", 400)
    assert e.message == ("Signature expired: X-Amz-Date is more than 15 minutes from server "
                         "time")


def test_window_counts_fractions_of_a_second():
    """The server's clock has microseconds: 900.5 s is past the window."""
    assert check(sign(), now=T + dt.timedelta(seconds=MAX_CLOCK_SKEW_SECONDS, microseconds=0))
    e = refusal(sign(), now=T + dt.timedelta(seconds=MAX_CLOCK_SKEW_SECONDS,
                                              microseconds=500_000))
    assert e.error_type == "InvalidSignatureException"
    e = refusal(sign(), now=T - dt.timedelta(seconds=MAX_CLOCK_SKEW_SECONDS,
                                              microseconds=500_000))
    assert e.error_type == "InvalidSignatureException"


# --------------------------------------------------------------------------- the scope
@pytest.mark.parametrize(("region", "service"), [("eu-west-1", "mturk-requester"),
                                                 ("us-east-1", "s3"), ("eu-west-1", "s3")])
def test_scope_must_name_the_servers_region_and_service(region, service):
    e = refusal(sign(region=region, service=service))
    assert (e.error_type, e.status) == ("InvalidSignatureException", 400)
    assert e.message == ("Credential should be scoped to region 'us-east-1' and service "
                         f"'mturk-requester', not '{region}'/'{service}'")


def test_a_server_configured_for_another_region_accepts_only_that_region():
    headers = sign(region="eu-west-1")
    assert check(headers, region="eu-west-1")
    e = refusal(sign(), region="eu-west-1")
    assert "scoped to region 'eu-west-1'" in e.message


@pytest.mark.parametrize("edit", ["20310303", "20310305"])
def test_scope_date_must_be_the_day_of_x_amz_date(edit):
    """The scope date is checked on its own (the day before and after are both refused)."""
    headers = with_auth(sign(), r"/20310304/", f"/{edit}/")
    e = refusal(headers)
    assert (e.error_type, e.status) == ("InvalidSignatureException", 400)
    assert e.message == "Credential date does not match X-Amz-Date"


def test_scope_date_is_compared_even_when_the_day_changes_within_the_window():
    """Signed at 23:59:50 on the 4th, checked at 00:05 on the 5th: still valid."""
    at = dt.datetime(2031, 3, 4, 23, 59, 50, tzinfo=dt.UTC)
    assert check(sign(at=at), now=at + dt.timedelta(minutes=5))


@pytest.mark.parametrize(("pattern", "repl"), [
    (r"/aws4_request", "/aws4_requesx"),        # five parts, wrong terminator
    (r"/mturk-requester/aws4_request", "/aws4_request"),  # four parts
    (r"/aws4_request", "/aws4_request/x"),      # six parts
    (r"Credential=AKID1234567890ABCD/", "Credential="),  # no key id
])
def test_malformed_credential_scope(pattern, repl):
    e = refusal(with_auth(sign(), pattern, repl))
    assert (e.error_type, e.status) == ("IncompleteSignatureException", 400)
    assert e.message == "Credential scope is malformed"


def test_unknown_access_key_is_unrecognized():
    e = refusal(sign(key="AKIDSOMEONEELSE0000"))
    assert (e.error_type, e.status) == ("UnrecognizedClientException", 400)
    assert e.message == "The security token included in the request is invalid."
    # A prefix of the right key is another key.
    e = refusal(sign(key=KEY[:-1]))
    assert e.error_type == "UnrecognizedClientException"


def test_wrong_secret_is_an_invalid_signature():
    e = refusal(sign(secret=SECRET + "x"))
    assert (e.error_type, e.status, e.message) == ("InvalidSignatureException", 400, INVALID)


# --------------------------------------------------------------------------- headers
def test_missing_authorization_is_403():
    headers = sign()
    del headers["Authorization"]
    for h in (headers, {**headers, "Authorization": ""}):
        e = refusal(h)
        assert (e.error_type, e.status) == ("MissingAuthenticationTokenException", 403)
        assert e.message == "Missing Authentication Token: requests must be SigV4-signed"


@pytest.mark.parametrize("auth", [
    "Bearer abc",
    "AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
    "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=" + "0" * 63,
    "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=" + "G" * 64,
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "0" * 64,
])
def test_malformed_authorization_header(auth):
    e = refusal({**sign(), "Authorization": auth})
    assert (e.error_type, e.status) == ("IncompleteSignatureException", 400)
    assert e.message == "Authorization header is not a valid AWS4-HMAC-SHA256 signature"


@pytest.mark.parametrize("amz_date", [None, "", "2031-03-04T05:06:07Z", "20310304T050607",
                                      "20311304T050607Z"])
def test_x_amz_date_missing_or_malformed(amz_date):
    headers = sign()
    if amz_date is None:
        del headers["X-Amz-Date"]
    else:
        headers["X-Amz-Date"] = amz_date
    e = refusal(headers)
    assert (e.error_type, e.status) == ("IncompleteSignatureException", 400)
    assert e.message == "X-Amz-Date header is missing or not in the form YYYYMMDDTHHMMSSZ"


def test_x_amz_date_is_signed_so_it_cannot_be_moved():
    """Moving X-Amz-Date (same day, inside the window) breaks the signature."""
    headers = sign()
    headers["X-Amz-Date"] = "20310304T050608Z"
    e = refusal(headers)
    assert (e.error_type, e.message) == ("InvalidSignatureException", INVALID)


@pytest.mark.parametrize("name", ["host", "x-amz-target"])
def test_host_and_target_must_be_signed(name):
    """Unsigned, the operation (X-Amz-Target) or the Host could be swapped by a relay."""
    headers = sign()
    signed = re.search(r"SignedHeaders=([^,]+)", headers["Authorization"]).group(1).split(";")
    assert name in signed
    rest = ";".join(n for n in signed if n != name)
    e = refusal(with_auth(headers, r"SignedHeaders=[^,]+", f"SignedHeaders={rest}"))
    assert (e.error_type, e.status) == ("IncompleteSignatureException", 400)
    assert e.message == f"the {name} header must be signed (SignedHeaders lacks it)"


def test_a_request_signed_without_a_target_is_refused():
    e = refusal(sign(target=None))
    assert e.message == "the x-amz-target header must be signed (SignedHeaders lacks it)"
    # The server may ask for less (must_sign) and then checks the signature as usual.
    assert check(sign(target=None), must_sign=("host",))


def test_changing_the_signed_target_is_refused():
    headers = sign()
    headers["X-Amz-Target"] = "MTurkRequesterServiceV20170117.DeleteHIT"
    e = refusal(headers)
    assert (e.error_type, e.message) == ("InvalidSignatureException", INVALID)


def test_a_signed_header_missing_from_the_request():
    headers = sign()
    del headers["X-Amz-Target"]
    e = refusal(headers)
    assert (e.error_type, e.status) == ("IncompleteSignatureException", 400)
    assert e.message == "signed header 'x-amz-target' is missing from the request"


def test_unsigned_extra_headers_do_not_matter():
    headers = {**sign(), "User-Agent": "anything", "X-Forwarded-For": "10.0.0.1"}
    assert check(headers)


def test_body_url_and_method_are_covered_by_the_signature():
    headers = sign()
    for kw in ({"body": b"{ }"}, {"url": f"http://{HOST}/other"}, {"method": "PUT"}):
        args = {"method": "POST", "url": URL, "headers": headers, "body": b"{}", **kw}
        with pytest.raises(MTurkError) as err:
            verify_sigv4(access_key_id=KEY, secret_access_key=SECRET, now=T, **args)
        assert (err.value.error_type, err.value.message) == ("InvalidSignatureException",
                                                             INVALID)
