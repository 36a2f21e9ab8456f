"""waitress's own error answers (a body over its size limit, a malformed request) as MTurk
JSON instead of plain text.

waitress refuses some requests before the app sees them (most importantly a body over
``max_request_body_size``: 413). :func:`json_errors` makes a waitress server answer those with
``{"__type": "...#RequestError" | "...#ServiceFault", "Message": ...}``, as the app answers
everything else on the requester API, so boto3 raises its modeled errors.
"""

from __future__ import annotations

import json
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error

from .errors import error_body

__all__ = ["JSONErrorChannel", "json_errors"]


class _JSONError(Error):
    """A waitress error whose response body is MTurk JSON."""

    def __init__(self, original: Error):
        super().__init__(original.body)
        self.code = original.code
        self.reason = original.reason

    def to_response(self, ident: str | None = None) -> tuple[str, list, bytes]:
        kind = "ServiceFault" if self.code >= 500 else "RequestError"
        turk = "AWS.ServiceUnavailable" if self.code >= 500 else (
            "AWS.RequestEntityTooLarge" if self.code == 413 else "AWS.BadRequest")
        body = json.dumps(error_body(kind, f"{self.reason}: {self.body}", turk)).encode()
        return (f"{self.code} {self.reason}",
                [("Content-Type", "application/x-amz-json-1.1")], body)


class _JSONErrorParser(HTTPRequestParser):
    def received(self, data: bytes) -> int:
        n = super().received(data)
        if self.error is not None and not isinstance(self.error, _JSONError):
            self.error = _JSONError(self.error)
        return n


class JSONErrorChannel(HTTPChannel):
    """waitress's channel with errors answered as MTurk JSON."""

    parser_class = _JSONErrorParser


def json_errors(server: Any) -> Any:
    """Make the waitress ``server`` (from ``waitress.create_server``) answer its own errors
    as MTurk JSON; returns it."""
    server.channel_class = JSONErrorChannel
    return server
