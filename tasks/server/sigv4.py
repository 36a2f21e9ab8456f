"""AWS Signature Version 4 verification for the requester API.

The server does not re-implement SigV4: it rebuilds the request botocore signed (method, URL,
body and exactly the headers listed in ``SignedHeaders``, with the client's ``X-Amz-Date``),
signs it again with botocore's own :class:`~botocore.auth.SigV4Auth` and the configured secret,
and compares both signatures with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .errors import MTurkError

__all__ = ["MAX_CLOCK_SKEW_SECONDS", "verify_sigv4"]

MAX_CLOCK_SKEW_SECONDS = 15 * 60
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


def _auth_error(code: str, message: str, status: int = 400) -> MTurkError:
    return MTurkError(message, None, error_type=code, status=status)


def verify_sigv4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    service: str = "mturk-requester",
    region: str = "us-east-1",
    now: dt.datetime | None = None,
    must_sign: tuple[str, ...] = ("host", "x-amz-target"),
) -> str:
    """Verify the SigV4 signature of a received request.

    Parameters
    ----------
    method, url : str
        HTTP method and the full URL as the client addressed it (scheme, Host, path, query).
    headers : Mapping[str, str]
        Received headers (case-insensitive lookup).
    body : bytes
        Received body.
    access_key_id, secret_access_key : str
        The configured requester credentials.
    must_sign : tuple of str
        Headers that must be among the signed ones (lower case): the Host, and the
        ``X-Amz-Target`` that names the operation, so a request cannot be re-targeted.

    Returns
    -------
    str
        The verified signature (64 hex digits), for replay detection.

    Raises
    ------
    MTurkError
        ``MissingAuthenticationTokenException`` (403) without an Authorization header,
        ``IncompleteSignatureException`` for a malformed one, ``UnrecognizedClientException``
        for an unknown key, ``InvalidSignatureException`` for a wrong or expired signature.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization")
    if not auth:
        raise _auth_error("MissingAuthenticationTokenException",
                          "Missing Authentication Token: requests must be SigV4-signed", 403)
    m = _AUTH_RE.match(auth.strip())
    if m is None:
        raise _auth_error("IncompleteSignatureException",
                          "Authorization header is not a valid AWS4-HMAC-SHA256 signature")
    parts = m.group("cred").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise _auth_error("IncompleteSignatureException", "Credential scope is malformed")
    key_id, date, c_region, c_service, _ = parts
    if not hmac.compare_digest(key_id.encode(), access_key_id.encode()):
        raise _auth_error("UnrecognizedClientException",
                          "The security token included in the request is invalid.")
    if c_region != region or c_service != service:
        raise _auth_error("InvalidSignatureException",
                          f"Credential should be scoped to region '{region}' and service "
                          f"'{service}', not '{c_region}'/'{c_service}'")
    amz_date = lower.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise _auth_error("IncompleteSignatureException",
                          "X-Amz-Date header is missing or not in the form YYYYMMDDTHHMMSSZ"
                          ) from None
    if date != amz_date[:8]:
        raise _auth_error("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    now = now or dt.datetime.now(dt.UTC)
    if abs((now - signed_at).total_seconds()) > MAX_CLOCK_SKEW_SECONDS:
        raise _auth_error("InvalidSignatureException",
                          "Signature expired: X-Amz-Date is more than 15 minutes from server time")
    signed_names = m.group("signed").split(";")
    for name in must_sign:
        if name not in signed_names:
            raise _auth_error("IncompleteSignatureException",
                              f"the {name} header must be signed (SignedHeaders lacks it)")
    rebuilt: dict[str, str] = {}
    for name in signed_names:
        if name not in lower:
            raise _auth_error("IncompleteSignatureException",
                              f"signed header '{name}' is missing from the request")
        rebuilt[name] = lower[name]
    request = AWSRequest(method=method, url=url, data=body, headers=rebuilt)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key_id, secret_access_key), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), m.group("sig").encode()):
        raise _auth_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return expected
