"""Requester API blueprint: MTurk's JSON 1.1 protocol on ``POST /``.

boto3 sends ``X-Amz-Target: MTurkRequesterServiceV20170117.<Operation>`` with a SigV4-signed
JSON body. The view checks, in order: body size (413), signature (403/400 auth errors; the
``X-Amz-Target`` header must be signed), operation (``UnknownOperationException``), JSON
(``SerializationException``), parameters (``RequestError``), replay (a request that changes
state whose signature was already seen within the clock-skew window is refused; botocore signs
each call anew, with an ``X-Amz-Date`` to the second), then runs the operation from
:mod:`tasks.server.mturk_ops`. Reads, CreateHITType and calls with a UniqueRequestToken (which
MTurk's own rules make idempotent) may repeat: byte-identical calls within one second have one
signature."""

from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Blueprint, Response, current_app, request

from .errors import MTurkError, ServiceFault, json_error
from .mturk_ops import OPERATIONS as HIT_OPERATIONS
from .qualification_ops import QUALIFICATION_OPERATIONS
from .sigv4 import MAX_CLOCK_SKEW_SECONDS, verify_sigv4
from .storage import get_storage
from .validation import validate_params

__all__ = ["OPERATIONS", "REPLAYABLE", "REPLAY_WINDOW_SECONDS", "TARGET_PREFIX", "bp"]

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
TARGET_PREFIX = "MTurkRequesterServiceV20170117."
#: Every operation of botocore's MTurk client (some answer "not supported").
OPERATIONS = {**HIT_OPERATIONS, **QUALIFICATION_OPERATIONS}
#: How long a signature is remembered: it can pass the clock-skew check for twice the skew.
REPLAY_WINDOW_SECONDS = 2 * MAX_CLOCK_SKEW_SECONDS + 60


def _replayable(operation: str) -> bool:
    """Reads, and CreateHITType (the same properties give the same type), may run again."""
    return operation.startswith(("Get", "List")) or operation == "CreateHITType"


REPLAYABLE = frozenset(op for op in OPERATIONS if _replayable(op))


def _read_body(limit: int) -> bytes | None:
    length = request.content_length
    if length is not None and length > limit:
        return None
    data = request.stream.read(limit + 1)
    return None if len(data) > limit else data


@bp.post("/")
def dispatch() -> Response:
    """Run one requester operation."""
    cfg = current_app.config
    limit = int(cfg["MAX_API_BODY_BYTES"])
    body = _read_body(limit)
    if body is None:
        return json_error("RequestEntityTooLarge",
                          f"request body exceeds the limit of {limit} bytes", 413)
    try:
        signature = verify_sigv4(
            method=request.method,
            url=request.url,
            headers=request.headers,
            body=body,
            access_key_id=cfg["ACCESS_KEY_ID"],
            secret_access_key=cfg["SECRET_ACCESS_KEY"],
            region=cfg["REGION"],
        )
        target = request.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        if operation not in OPERATIONS:
            return json_error("UnknownOperationException",
                              f"unknown or unsupported operation {target!r}", 400)
        try:
            params = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return json_error("SerializationException", f"request body is not valid JSON: {exc}",
                              400)
        params = validate_params(operation, params,
                                 min_duration=int(cfg["MIN_DURATION_SECONDS"]))
        store = get_storage()
        recorded = operation not in REPLAYABLE and "UniqueRequestToken" not in params
        if recorded and not store.first_use_of_signature(signature, time.time(),
                                                         REPLAY_WINDOW_SECONDS):
            return json_error(
                "InvalidSignatureException",
                f"This signed {operation} request was already received and is not run again. "
                "Byte-identical requests signed within the same second share a signature: "
                "add a UniqueRequestToken or wait a second to repeat one on purpose.", 400)
        try:
            result = OPERATIONS[operation](store, params)
        except MTurkError:
            raise
        except Exception:
            if recorded:  # nothing was applied: a retry (same second, same signature) may run
                store.forget_signature(signature)
            raise
    except MTurkError as err:
        return err.response()
    except Exception:
        log.exception("requester operation failed")
        return ServiceFault().response()
    return Response(
        json.dumps(result),
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )
