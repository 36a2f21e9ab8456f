"""Parameter validation of the requester API, driven by botocore's MTurk model.

botocore's client only checks required parameters and types; MTurk itself also enforces the
model's ``min``/``max``/``pattern``/``enum`` constraints and a few documented limits (title and
description lengths, question size and XML, durations). This module checks all of them and
raises :class:`~tasks.server.errors.RequestError` with MTurk-like messages.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tasks.question_xml import EXTERNAL_QUESTION_NS, HTML_QUESTION_NS, QUESTION_MAX_BYTES

from .errors import RequestError

__all__ = [
    "ParsedQuestion",
    "check_text",
    "check_worker_id",
    "parse_question",
    "service_model",
    "to_epoch",
    "validate_params",
]

WORKER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

# Documented MTurk limits not carried by the model (characters unless noted).
LIMITS = {
    "Title": 128,
    "Description": 2000,
    "Keywords": 1000,
    "RequesterAnnotation": 255,
    "RequesterFeedback": 1024,
    "Reason": 1024,
    "Question": 131_072,  # then checked in UTF-8 bytes by parse_question
    "Name": 128,
    "MessageText": 4096,
    "Subject": 200,
}
MAX_TEXT = 65_535  # any other string (the Question's documented limit, in bytes, is lower)
MAX_DURATION = 31_536_000  # one year (LifetimeInSeconds, AssignmentDurationInSeconds)
MAX_AUTO_APPROVAL = 2_592_000  # 30 days
MAX_QUALIFICATIONS = 10
MAX_FRAME_HEIGHT = 100_000  # pixels
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant botocore can parse
#: Integer ranges of the model's shapes (MTurk is a Java service: int and long).
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: Documented value ranges by member name (the durations' lower bound is ``min_duration``).
#: MaxAssignments and NumberOfAdditionalAssignments: MTurk documents no upper bound; this
#: server allows one million, which keeps every sum of them far inside 64-bit integers.
RANGES = {
    "AutoApprovalDelayInSeconds": (0, MAX_AUTO_APPROVAL),
    "MaxAssignments": (1, 1_000_000),
    "NumberOfAdditionalAssignments": (1, 1_000_000),
    "RetryDelayInSeconds": (0, MAX_DURATION),
    "TestDurationInSeconds": (1, MAX_DURATION),
}
MAX_ITEMS = {"QualificationRequirements": MAX_QUALIFICATIONS, "WorkerIds": 100,
             "IntegerValues": 15, "LocaleValues": 30}
#: Money members (dollars with up to two decimals) and the largest amount accepted.
MONEY = {"Reward", "BonusAmount"}
MAX_MONEY_CENTS = 10_000_000  # $100,000.00
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# Model patterns we deliberately relax: our worker ids need not look like MTurk's ("A...").
# They are checked against this server's own worker-id rule (WORKER_ID_RE) instead.
RELAXED_PATTERNS = {"WorkerId", "WorkerIds"}


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
    """A timestamp parameter (epoch seconds or ISO 8601 string) as finite epoch seconds.

    Raises
    ------
    TypeError, ValueError
        If it is not a timestamp, not finite, or outside years 1970-9999.
    """
    if isinstance(value, bool):
        raise TypeError("bool is not a timestamp")
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            out = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except (ValueError, OverflowError):
                raise ValueError(f"not a timestamp: {text[:40]!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            try:
                out = parsed.timestamp()
            except (ValueError, OverflowError):
                raise ValueError("timestamp out of range") from None
    else:
        raise TypeError(f"unsupported timestamp {type(value).__name__}")
    if not math.isfinite(out) or not 0 <= out <= MAX_TIMESTAMP:
        raise ValueError("timestamp out of range")
    return out


def check_text(name: str, value: str) -> str:
    """Refuse text that is not a sequence of Unicode scalar values or that holds NUL."""
    bad = _BAD_TEXT.search(value)
    if bad is not None:
        raise RequestError(
            f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
            f"Member must be valid Unicode text without NUL (found U+{ord(bad.group()):04X} "
            f"at index {bad.start()})",
            "AWS.ParameterOutOfRange",
        )
    return value


def _fail(name: str, value: Any, constraint: str) -> RequestError:
    shown = value if isinstance(value, int | float) and abs(value) < 1e18 else (
        ascii(value)[:80])
    return RequestError(
        f"1 validation error detected: Value {shown} at '{name}' failed to satisfy constraint: "
        f"{constraint}",
        "AWS.ParameterOutOfRange",
    )


@lru_cache(maxsize=256)
def _full_pattern(pattern: str) -> re.Pattern[str]:
    # botocore's patterns end in '$', which in Python also matches before a final newline.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


def _walk(value: Any, shape: Any, name: str, min_duration: int) -> None:
    t = shape.type_name
    meta = shape.metadata
    leaf = name.rsplit(".", 1)[-1].split("[", 1)[0]
    if value is None:
        raise _fail(name, value, "Member must not be null")
    if t == "structure":
        if not isinstance(value, dict):
            raise _fail(name, value, "Member must be a structure")
        for req in shape.required_members:
            if req not in value:
                raise RequestError(
                    f"Missing required parameter '{req}' in {name or 'the request'}",
                    "AWS.MissingParameters",
                )
        for key, sub in value.items():
            if key not in shape.members:
                raise RequestError(
                    f"Unknown parameter {ascii(key)[:80]} in {name or 'the request'}",
                    "AWS.BadClaimsSupplied")
            _walk(sub, shape.members[key], f"{name}.{key}" if name else key, min_duration)
        return
    if t == "list":
        if not isinstance(value, list):
            raise _fail(name, value, "Member must be a list")
        if leaf in MAX_ITEMS and len(value) > MAX_ITEMS[leaf]:
            raise _fail(name, f"<{len(value)} items>",
                        f"Member must have at most {MAX_ITEMS[leaf]} items")
        for i, item in enumerate(value):
            _walk(item, shape.member, f"{name}[{i}]", min_duration)
        n = len(value)
    elif t == "string":
        if not isinstance(value, str):
            raise _fail(name, value, "Member must be a string")
        check_text(name, value)
        n = len(value)
        limit = LIMITS.get(leaf, MAX_TEXT)
        if n > limit:
            raise _fail(name, f"<{n} characters>",
                        f"Member must have length less than or equal to {limit}")
        if "enum" in meta and value not in meta["enum"]:
            raise _fail(name, value, f"Member must satisfy enum value set: {meta['enum']}")
        if leaf in RELAXED_PATTERNS:
            if not WORKER_ID_RE.match(value):
                raise _fail(name, value, "Member must be 1-64 characters of letters, digits, "
                            "'_' or '-'")
        elif "pattern" in meta and not _full_pattern(meta["pattern"]).match(value):
            raise _fail(
                name, value, f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
        if leaf in MONEY:
            cents = Decimal(value) * 100
            if cents > MAX_MONEY_CENTS:
                raise _fail(name, value, f"Member must be at most {MAX_MONEY_CENTS // 100}.00")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, value, "Member must be an integer")
        lo, hi = INT_RANGES[t]
        if leaf == "AssignmentDurationInSeconds" or leaf == "LifetimeInSeconds":
            lo, hi = min_duration, MAX_DURATION
        elif leaf in RANGES:
            lo, hi = RANGES[leaf]
        if not lo <= value <= hi:
            raise _fail(name, value, f"Member must be between {lo} and {hi}")
        n = value
    elif t == "boolean":
        if not isinstance(value, bool):
            raise _fail(name, value, "Member must be a boolean")
        return
    elif t == "timestamp":
        try:
            to_epoch(value)
        except (TypeError, ValueError):
            raise _fail(name, value, "Member must be a timestamp (epoch seconds between 0 and "
                        f"{MAX_TIMESTAMP})") from None
        return
    else:  # double, float, blob, map: MTurk's requester API has none of these as input
        raise _fail(name, value, f"Member type {t} is not supported")
    if "min" in meta and n < meta["min"]:
        raise _fail(name, value, f"Member must have {'length ' if t == 'string' else 'value '}"
                    f"greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        raise _fail(name, value, f"Member must have {'length ' if t == 'string' else 'value '}"
                    f"less than or equal to {meta['max']}")


def validate_params(operation: str, params: Any, *, min_duration: int = 30) -> dict[str, Any]:
    """Check ``params`` of ``operation`` against the model and MTurk's documented limits.

    Every member is checked: no JSON nulls, strings are Unicode scalar values without NUL and
    within their length limit, integers within their shape's 32/64-bit range and MTurk's
    documented range (:data:`RANGES`), timestamps finite and within years 1970-9999, money
    at most :data:`MAX_MONEY_CENTS`.

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
        _walk(params, shape, "", min_duration)
    elif params:
        raise RequestError(f"{operation} takes no parameters", "AWS.BadClaimsSupplied")
    for key in ("Title", "Description"):
        if key in params and not params[key].strip():
            raise _fail(key, params[key], "Member must not be blank")
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
        text = (node.text or "").strip() if node is not None else ""
        if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) > MAX_FRAME_HEIGHT:
            raise RequestError(f"Question: FrameHeight must be an integer between 0 and "
                               f"{MAX_FRAME_HEIGHT}", "AWS.MechanicalTurk.XMLParseError")
        return int(text)

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
