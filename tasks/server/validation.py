"""Parameter validation of the requester API, driven by botocore's MTurk model.

botocore's client only checks required parameters and types; MTurk itself also enforces the
model's ``min``/``max``/``pattern``/``enum`` constraints and a few documented limits (title and
description lengths, question size and XML, durations). This module checks all of them and
raises :class:`~tasks.server.errors.RequestError` with MTurk-like messages.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tasks.question_xml import EXTERNAL_QUESTION_NS, HTML_QUESTION_NS, QUESTION_MAX_BYTES

from .errors import RequestError

__all__ = [
    "ParsedQuestion",
    "check_worker_id",
    "parse_question",
    "service_model",
    "to_epoch",
    "validate_params",
]

WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Documented MTurk limits not carried by the model (characters unless noted).
LIMITS = {
    "Title": 128,
    "Description": 2000,
    "Keywords": 1000,
    "RequesterAnnotation": 255,
    "RequesterFeedback": 1024,
    "Reason": 1024,
}
MAX_DURATION = 31_536_000  # one year
MAX_AUTO_APPROVAL = 2_592_000  # 30 days
MAX_QUALIFICATIONS = 10
# Model patterns we deliberately relax: our worker ids need not look like MTurk's ("A...").
RELAXED_PATTERNS = {"WorkerId"}


def check_worker_id(worker_id: Any) -> str:
    """Validate a worker id (1-64 characters of ``[A-Za-z0-9_-]``) and return it."""
    if not isinstance(worker_id, str) or not WORKER_ID_RE.match(worker_id):
        raise ValueError(
            f"worker_id {worker_id!r}: expected 1-64 characters of letters, digits, '_' or '-'"
        )
    return worker_id


@lru_cache(maxsize=1)
def service_model() -> Any:
    """botocore's ``ServiceModel`` for MTurk (2017-01-17)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("mturk")


def to_epoch(value: Any) -> float:
    """A timestamp parameter (epoch seconds or ISO 8601 string) as epoch seconds."""
    if isinstance(value, bool):
        raise TypeError("bool is not a timestamp")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise TypeError(f"unsupported timestamp {type(value).__name__}")


def _fail(name: str, value: Any, constraint: str) -> RequestError:
    shown = value if isinstance(value, int | float) else repr(value)[:80]
    return RequestError(
        f"1 validation error detected: Value {shown} at '{name}' failed to satisfy constraint: "
        f"{constraint}",
        "AWS.ParameterOutOfRange",
    )


def _walk(value: Any, shape: Any, name: str) -> None:
    t = shape.type_name
    meta = shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            raise _fail(name, value, "Member must be a structure")
        for req in shape.required_members:
            if value.get(req) is None:
                raise RequestError(
                    f"Missing required parameter '{req}' in {name or 'the request'}",
                    "AWS.MissingParameters",
                )
        for key, sub in value.items():
            if key not in shape.members:
                raise RequestError(f"Unknown parameter '{key}' in {name or 'the request'}",
                                   "AWS.BadClaimsSupplied")
            if sub is not None:
                _walk(sub, shape.members[key], f"{name}.{key}" if name else key)
        return
    if t == "list":
        if not isinstance(value, list):
            raise _fail(name, value, "Member must be a list")
        for i, item in enumerate(value):
            _walk(item, shape.member, f"{name}[{i}]")
        n = len(value)
    elif t == "string":
        if not isinstance(value, str):
            raise _fail(name, value, "Member must be a string")
        n = len(value)
        if "enum" in meta and value not in meta["enum"]:
            raise _fail(name, value, f"Member must satisfy enum value set: {meta['enum']}")
        leaf = name.rsplit(".", 1)[-1]
        if "pattern" in meta and leaf not in RELAXED_PATTERNS and not re.match(
            meta["pattern"], value
        ):
            raise _fail(
                name, value, f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, value, "Member must be an integer")
        n = value
    elif t == "boolean":
        if not isinstance(value, bool):
            raise _fail(name, value, "Member must be a boolean")
        return
    elif t == "timestamp":
        try:
            to_epoch(value)
        except (TypeError, ValueError):
            raise _fail(name, value, "Member must be a timestamp (epoch seconds)") from None
        return
    else:
        return
    if "min" in meta and n < meta["min"]:
        raise _fail(name, value, f"Member must have {'length ' if t != 'integer' else 'value '}"
                    f"greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        raise _fail(name, value, f"Member must have {'length ' if t != 'integer' else 'value '}"
                    f"less than or equal to {meta['max']}")


def validate_params(operation: str, params: Any, *, min_duration: int = 30) -> dict[str, Any]:
    """Check ``params`` of ``operation`` against the model and MTurk's documented limits.

    Parameters
    ----------
    operation : str
        Operation name, e.g. ``"CreateHIT"``.
    params : Any
        The decoded JSON body.
    min_duration : int
        Smallest AssignmentDurationInSeconds / LifetimeInSeconds accepted (MTurk: 30).

    Raises
    ------
    RequestError
        On the first violated constraint.
    """
    if not isinstance(params, dict):
        raise RequestError("request body must be a JSON object", "AWS.BadClaimsSupplied")
    shape = service_model().operation_model(operation).input_shape
    if shape is not None:
        _walk(params, shape, "")
    elif params:
        raise RequestError(f"{operation} takes no parameters", "AWS.BadClaimsSupplied")
    for key, limit in LIMITS.items():
        value = params.get(key)
        if isinstance(value, str) and len(value) > limit:
            raise _fail(key, value, f"Member must have length less than or equal to {limit}")
    for key in ("Title", "Description"):
        if key in params and not params[key].strip():
            raise _fail(key, params[key], "Member must not be blank")
    for key in ("AssignmentDurationInSeconds", "LifetimeInSeconds"):
        if key in params and not min_duration <= params[key] <= MAX_DURATION:
            raise _fail(key, params[key], f"Member must be between {min_duration} and "
                        f"{MAX_DURATION} seconds")
    if "AutoApprovalDelayInSeconds" in params and not (
        0 <= params["AutoApprovalDelayInSeconds"] <= MAX_AUTO_APPROVAL
    ):
        raise _fail("AutoApprovalDelayInSeconds", params["AutoApprovalDelayInSeconds"],
                    f"Member must be between 0 and {MAX_AUTO_APPROVAL} seconds")
    if "MaxAssignments" in params and params["MaxAssignments"] < 1:
        raise _fail("MaxAssignments", params["MaxAssignments"],
                    "Member must have value greater than or equal to 1")
    quals = params.get("QualificationRequirements")
    if quals is not None and len(quals) > MAX_QUALIFICATIONS:
        raise _fail("QualificationRequirements", f"<{len(quals)} items>",
                    f"Member must have at most {MAX_QUALIFICATIONS} items")
    return params


@dataclass(frozen=True)
class ParsedQuestion:
    """The parts of a question XML the worker UI needs."""

    html_content: str | None
    external_url: str | None
    frame_height: int


def parse_question(xml: str) -> ParsedQuestion:
    """Check and parse an ``HTMLQuestion`` or ``ExternalQuestion`` (MTurk's two HTML kinds).

    Raises
    ------
    RequestError
        If the XML is over 65,535 bytes, not well-formed, or not one of the two kinds.
    """
    size = len(xml.encode("utf-8"))
    if size > QUESTION_MAX_BYTES:
        raise RequestError(
            f"Question is {size} bytes; the maximum is {QUESTION_MAX_BYTES} bytes",
            "AWS.MechanicalTurk.QuestionTooLong",
        )
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise RequestError(f"Question is not well-formed XML: {exc}",
                           "AWS.MechanicalTurk.XMLParseError") from None

    def frame(ns: str) -> int:
        node = root.find(f"{{{ns}}}FrameHeight")
        if node is None or not (node.text or "").strip().isdigit():
            raise RequestError("Question: FrameHeight must be a non-negative integer",
                               "AWS.MechanicalTurk.XMLParseError")
        return int(node.text.strip())

    if root.tag == f"{{{HTML_QUESTION_NS}}}HTMLQuestion":
        node = root.find(f"{{{HTML_QUESTION_NS}}}HTMLContent")
        if node is None or not (node.text or "").strip():
            raise RequestError("HTMLQuestion: HTMLContent is missing or empty",
                               "AWS.MechanicalTurk.XMLParseError")
        return ParsedQuestion(node.text, None, frame(HTML_QUESTION_NS))
    if root.tag == f"{{{EXTERNAL_QUESTION_NS}}}ExternalQuestion":
        node = root.find(f"{{{EXTERNAL_QUESTION_NS}}}ExternalURL")
        url = (node.text or "").strip() if node is not None else ""
        if not re.match(r"^https?://", url):
            raise RequestError("ExternalQuestion: ExternalURL must be an http(s) URL",
                               "AWS.MechanicalTurk.XMLParseError")
        return ParsedQuestion(None, url, frame(EXTERNAL_QUESTION_NS))
    raise RequestError(
        "Question must be an HTMLQuestion or ExternalQuestion in its MTurk namespace "
        f"(got root element {root.tag!r})",
        "AWS.MechanicalTurk.XMLParseError",
    )
