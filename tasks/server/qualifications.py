"""Qualification rules of the task server: MTurk's system qualification types and whether a
worker meets a HIT's ``QualificationRequirements``.

System types (the ids MTurk uses, which :mod:`tasks.publish` sends):

- ``000000000000000000L0`` PercentAssignmentsApproved: computed from the worker's approved and
  rejected assignments on this server (100 while none has been reviewed);
- ``00000000000000000040`` NumberHITsApproved: the worker's approved assignments;
- ``00000000000000000071`` Locale: set by the admin (``POST /admin/api/workers`` with
  ``"locale": "US"`` or ``"US-CA"``); a worker without one fails every comparator but
  ``DoesNotExist``;
- Masters (``2ARFPLSP75KLA8M8DH1HTEQVJT3SY6`` sandbox, ``2F1QJWKUDD8XADTFD2Q0G6UTO95ALH``
  production) and Adult (``00000000000000000060``): held when granted with
  ``AssociateQualificationWithWorker`` (on MTurk, Amazon grants them).

A requirement is met as on MTurk: ``Exists``/``DoesNotExist`` test holding the qualification;
every other comparator needs it held and compares its integer value (``IntegerValues``) or
locale (``LocaleValues``: the country, and the subdivision when the requirement names one).
An auto-granted type counts as held with its ``AutoGrantedValue`` by every worker who has no
score. ``ActionsGuarded`` (default ``Accept``; ``RequiredToPreview`` means
``PreviewAndAccept``) says what an unmet requirement forbids: accepting, previewing too, or
also seeing the HIT in the list (``DiscoverPreviewAndAccept``). The worker's list shows only
HITs they may accept.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import RequestError
from .storage import Storage, WorkerValues

__all__ = [
    "ADULT",
    "APPROVAL_RATE",
    "APPROVED_HITS",
    "LOCALE",
    "MASTERS",
    "SYSTEM_TYPES",
    "check_requirements",
    "guarded_actions",
    "meets",
    "no_type",
    "unmet",
    "worker_value",
]

APPROVAL_RATE = "000000000000000000L0"
APPROVED_HITS = "00000000000000000040"
LOCALE = "00000000000000000071"
ADULT = "00000000000000000060"
MASTERS = ("2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH")

#: System types: id -> (Name, Description).
SYSTEM_TYPES: dict[str, tuple[str, str]] = {
    APPROVAL_RATE: ("Worker_PercentAssignmentsApproved",
                    "The percentage of the worker's assignments that were approved"),
    APPROVED_HITS: ("Worker_NumberHITsApproved", "The number of the worker's approved HITs"),
    LOCALE: ("Worker_Locale", "The worker's location (country and subdivision)"),
    ADULT: ("Worker_Adult", "The worker agreed to see adult content"),
    MASTERS[0]: ("Masters", "Masters workers (sandbox)"),
    MASTERS[1]: ("Masters", "Masters workers"),
}
#: System types that are computed, never granted.
COMPUTED = (APPROVAL_RATE, APPROVED_HITS)
_ACTIONS = {"Accept": 1, "PreviewAndAccept": 2, "DiscoverPreviewAndAccept": 3}


def worker_value(values: WorkerValues, type_id: str
                 ) -> tuple[int | None, str | None, str | None] | None:
    """``(integer, country, subdivision)`` of a worker's qualification; None if not held."""
    if type_id == APPROVAL_RATE:
        reviewed = values.approved + values.rejected
        return (100 if reviewed == 0 else values.approved * 100 // reviewed, None, None)
    if type_id == APPROVED_HITS:
        return (values.approved, None, None)
    if type_id in values.held:
        return values.held[type_id]
    if type_id in values.auto:
        auto = values.auto[type_id]
        return (1 if auto is None else auto, None, None)
    return None


def _compare(comparator: str, have: int, wanted: list[int]) -> bool:
    if not wanted:
        return False
    first = wanted[0]
    return {
        "LessThan": have < first,
        "LessThanOrEqualTo": have <= first,
        "GreaterThan": have > first,
        "GreaterThanOrEqualTo": have >= first,
        "EqualTo": have == first,
        "NotEqualTo": have != first,
        "In": have in wanted,
        "NotIn": have not in wanted,
    }.get(comparator, False)


def _locale_matches(country: str | None, subdivision: str | None, want: dict) -> bool:
    if country != want.get("Country"):
        return False
    return "Subdivision" not in want or subdivision == want["Subdivision"]


def requirement_met(req: dict[str, Any], values: WorkerValues) -> bool:
    """Whether a worker with ``values`` meets one QualificationRequirement."""
    held = worker_value(values, req["QualificationTypeId"])
    comparator = req["Comparator"]
    if comparator == "Exists":
        return held is not None
    if comparator == "DoesNotExist":
        return held is None
    if held is None:
        return False
    integer, country, subdivision = held
    locales = req.get("LocaleValues")
    if locales:
        found = any(_locale_matches(country, subdivision, w) for w in locales)
        return {"EqualTo": found, "In": found, "NotEqualTo": not found,
                "NotIn": not found}.get(comparator, False)
    if integer is None:
        return False
    return _compare(comparator, integer, [int(v) for v in req.get("IntegerValues") or []])


def guarded_actions(req: dict[str, Any]) -> str:
    """What an unmet requirement forbids: ``Accept``, ``PreviewAndAccept`` or
    ``DiscoverPreviewAndAccept``."""
    if "ActionsGuarded" in req:
        return req["ActionsGuarded"]
    return "PreviewAndAccept" if req.get("RequiredToPreview") else "Accept"


def unmet(requirements: str | list[dict[str, Any]], values: WorkerValues,
          action: str = "Accept") -> list[dict[str, Any]]:
    """The requirements (JSON text or list) a worker does not meet that guard ``action``
    (``Accept``, ``Preview`` or ``Discover``)."""
    reqs = json.loads(requirements) if isinstance(requirements, str) else requirements
    level = {"Accept": 1, "Preview": 2, "Discover": 3}[action]
    return [r for r in reqs if _ACTIONS.get(guarded_actions(r), 1) >= level
            and not requirement_met(r, values)]


def meets(requirements: str | list[dict[str, Any]], values: WorkerValues,
          action: str = "Accept") -> bool:
    """Whether a worker may do ``action`` on a HIT with these requirements."""
    return not unmet(requirements, values, action)


def no_type(type_id: str) -> RequestError:
    """MTurk's error for an unknown qualification type."""
    return RequestError(f"QualificationType {type_id} does not exist.",
                        "AWS.MechanicalTurk.QualificationTypeDoesNotExist")


def check_requirements(store: Storage, requirements: list[dict[str, Any]]) -> None:
    """Refuse QualificationRequirements naming a type that does not exist, or a locale
    comparison on a non-locale type (CreateHIT, CreateHITType)."""
    for req in requirements:
        type_id = req["QualificationTypeId"]
        if type_id not in SYSTEM_TYPES and store.qualification_type(type_id) is None:
            raise no_type(type_id)
        if req.get("LocaleValues") and type_id != LOCALE:
            raise RequestError(f"LocaleValues can only be used with the Locale qualification "
                               f"({LOCALE})", "AWS.ParameterOutOfRange")
        if req["Comparator"] not in ("Exists", "DoesNotExist") and not (
                req.get("IntegerValues") or req.get("LocaleValues")):
            raise RequestError(f"Comparator {req['Comparator']} needs IntegerValues or "
                               "LocaleValues", "AWS.ParameterOutOfRange")
