"""MTurk-style JSON errors of the requester API.

MTurk answers a bad request with HTTP 400 and
``{"__type": "com.amazonaws.mechanicalturk.requester#RequestError", "Message": ...,
"TurkErrorCode": ...}``; botocore keeps the part after ``#`` as the error code, so boto3 raises
``client.exceptions.RequestError`` (or ``ServiceFault`` for internal errors). Authentication
failures use AWS's generic codes (``MissingAuthenticationTokenException``,
``UnrecognizedClientException``, ``InvalidSignatureException``) and surface as ``ClientError``.
"""

from __future__ import annotations

import json
import uuid

from flask import Response

__all__ = ["MTurkError", "RequestError", "ServiceFault", "error_body", "json_error"]

_PREFIX = "com.amazonaws.mechanicalturk.requester#"


class MTurkError(Exception):
    """An error answered as MTurk JSON.

    Parameters
    ----------
    message : str
        Human-readable ``Message``.
    turk_code : str or None
        ``TurkErrorCode`` (e.g. ``AWS.MechanicalTurk.HitAlreadyExists``).
    error_type : str
        ``__type`` without prefix (``RequestError``, ``ServiceFault``, or an auth code).
    status : int
        HTTP status.
    """

    def __init__(
        self,
        message: str,
        turk_code: str | None = "AWS.ParameterOutOfRange",
        *,
        error_type: str = "RequestError",
        status: int = 400,
    ):
        super().__init__(message)
        self.message = message
        self.turk_code = turk_code
        self.error_type = error_type
        self.status = status

    def response(self) -> Response:
        """The Flask response for this error."""
        return json_error(self.error_type, self.message, self.status, self.turk_code)


class RequestError(MTurkError):
    """A ``RequestError`` (HTTP 400)."""


class ServiceFault(MTurkError):  # noqa: N818 - MTurk's error name
    """A ``ServiceFault`` (HTTP 500): something failed inside the server."""

    def __init__(self, message: str = "internal error, the request was not applied"):
        super().__init__(message, "AWS.ServiceUnavailable", error_type="ServiceFault", status=500)


def error_body(error_type: str, message: str, turk_code: str | None = None) -> dict[str, str]:
    """The JSON body of an MTurk/AWS error (modeled MTurk errors carry the service prefix in
    ``__type``; AWS auth errors don't)."""
    modeled = error_type in ("RequestError", "ServiceFault")
    body: dict[str, str] = {
        "__type": (_PREFIX + error_type) if modeled else error_type,
        "Message": message,
    }
    if turk_code:
        body["TurkErrorCode"] = turk_code
    return body


def json_error(
    error_type: str, message: str, status: int, turk_code: str | None = None
) -> Response:
    """Build an MTurk/AWS JSON 1.1 error response.

    Modeled MTurk errors carry the service prefix in ``__type``; AWS auth errors don't.
    """
    return Response(
        json.dumps(error_body(error_type, message, turk_code)),
        status=status,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )
