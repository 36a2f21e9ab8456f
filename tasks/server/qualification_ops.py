"""The requester's qualification operations (MTurk 2017-01-17), and MTurk's error for the
operations this server does not implement.

Qualification types are the requester's own (``CreateQualificationType``) or MTurk's system
types (:data:`~tasks.server.qualifications.SYSTEM_TYPES`), which ``Get``/``ListQualificationTypes``
and ``GetQualificationScore`` also answer. Qualification tests (``Test``/``AnswerKey``) and
qualification requests are not supported: a type is granted with
``AssociateQualificationWithWorker`` or automatically (``AutoGranted``). ``NotifyWorkers``
stores the message; the worker sees it on their HIT list.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import RequestError
from .mturk_ops import decode_token, encode_token, new_id
from .qualifications import COMPUTED, LOCALE, SYSTEM_TYPES, worker_value
from .qualifications import no_type as _no_type
from .storage import QualificationType, Refused, Storage, WorkerQualification

__all__ = ["QUALIFICATION_OPERATIONS", "UNSUPPORTED", "unsupported"]

#: Operations of botocore's MTurk client that this server answers with an error.
UNSUPPORTED = (
    "AcceptQualificationRequest", "CreateWorkerBlock",
    "DeleteWorkerBlock", "GetFileUploadURL", "ListHITsForQualificationType",
    "ListQualificationRequests", "ListReviewPolicyResultsForHIT", "ListWorkerBlocks",
    "RejectQualificationRequest", "SendTestEventNotification", "UpdateHITTypeOfHIT",
    "UpdateNotificationSettings",
)
#: The Keywords of every system type (a Query finds them by these too).
_SYSTEM_KEYWORDS = "system"


def _type_json(row: QualificationType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "QualificationTypeId": row.qualification_type_id,
        "CreationTime": row.creation_time,
        "Name": row.name,
        "Description": row.description,
        "Keywords": row.keywords,
        "QualificationTypeStatus": row.status,
        "IsRequestable": False,
        "AutoGranted": bool(row.auto_granted),
    }
    if row.retry_delay is not None:
        out["RetryDelayInSeconds"] = row.retry_delay
    if row.auto_granted:
        out["AutoGrantedValue"] = 1 if row.auto_granted_value is None else row.auto_granted_value
    return out


def _system_json(type_id: str) -> dict[str, Any]:
    name, description = SYSTEM_TYPES[type_id]
    return {"QualificationTypeId": type_id, "CreationTime": 0.0, "Name": name,
            "Description": description, "Keywords": _SYSTEM_KEYWORDS, "QualificationTypeStatus":
            "Active", "IsRequestable": False, "AutoGranted": False}


def _no_tests(p: dict) -> None:
    if "Test" in p or "AnswerKey" in p or "TestDurationInSeconds" in p:
        raise RequestError("Qualification tests (Test, AnswerKey) are not supported by this "
                           "server; grant qualifications with AssociateQualificationWithWorker",
                           "AWS.MechanicalTurk.UnsupportedOperation")


def _own_type(store: Storage, type_id: str) -> QualificationType:
    row = store.qualification_type(type_id)
    if row is None:
        if type_id in SYSTEM_TYPES:
            raise RequestError(f"QualificationType {type_id} is a system type and cannot be "
                               "changed", "AWS.MechanicalTurk.PermissionDenied")
        raise _no_type(type_id)
    return row


def create_qualification_type(store: Storage, p: dict) -> dict:
    """``CreateQualificationType`` (names are unique per requester)."""
    _no_tests(p)
    try:
        row = store.add_qualification_type(
            qualification_type_id=new_id(), name=p["Name"], description=p["Description"],
            keywords=p.get("Keywords", ""), status=p["QualificationTypeStatus"],
            retry_delay=p.get("RetryDelayInSeconds"), auto_granted=int(bool(
                p.get("AutoGranted", False))), auto_granted_value=p.get("AutoGrantedValue"),
            creation_time=time.time())
    except Refused:
        raise RequestError(f"You have already created a QualificationType with the name "
                           f"{p['Name']!r}.",
                           "AWS.MechanicalTurk.QualificationTypeAlreadyExists") from None
    return {"QualificationType": _type_json(row)}


def get_qualification_type(store: Storage, p: dict) -> dict:
    """``GetQualificationType`` (also of a system type)."""
    type_id = p["QualificationTypeId"]
    if type_id in SYSTEM_TYPES:
        return {"QualificationType": _system_json(type_id)}
    row = store.qualification_type(type_id)
    if row is None:
        raise _no_type(type_id)
    return {"QualificationType": _type_json(row)}


def list_qualification_types(store: Storage, p: dict) -> dict:
    """``ListQualificationTypes``: the requester's types (system types too unless
    ``MustBeOwnedByCaller``), matching ``Query``; none is requestable on this server."""
    limit = int(p.get("MaxResults", 10))
    if p["MustBeRequestable"]:
        return {"NumResults": 0, "QualificationTypes": []}
    after = decode_token(p.get("NextToken"), (str,))
    cursor = after[0] if after else ""
    query = (p.get("Query") or "").lower()
    items: list[tuple[str, dict[str, Any]]] = []
    if not p.get("MustBeOwnedByCaller", False):
        for type_id in SYSTEM_TYPES:
            name, description = SYSTEM_TYPES[type_id]
            if type_id > cursor and (query in name.lower() or query in description.lower()
                                     or query in _SYSTEM_KEYWORDS):
                items.append((type_id, _system_json(type_id)))
    items += [(r.qualification_type_id, _type_json(r))
              for r in store.qualification_types_page(query or None, cursor, limit + 1)]
    items.sort(key=lambda kv: kv[0])
    page = items[:limit]
    out: dict[str, Any] = {"NumResults": len(page), "QualificationTypes": [v for _, v in page]}
    if len(items) > limit:
        out["NextToken"] = encode_token(page[-1][0])
    return out


def update_qualification_type(store: Storage, p: dict) -> dict:
    """``UpdateQualificationType``: description, status, retry delay, auto-granting."""
    _no_tests(p)
    type_id = p["QualificationTypeId"]
    _own_type(store, type_id)
    fields: dict[str, Any] = {}
    for key, column in (("Description", "description"), ("QualificationTypeStatus", "status"),
                        ("RetryDelayInSeconds", "retry_delay"),
                        ("AutoGrantedValue", "auto_granted_value")):
        if key in p:
            fields[column] = p[key]
    if "AutoGranted" in p:
        fields["auto_granted"] = int(bool(p["AutoGranted"]))
    try:
        row = store.update_qualification_type(type_id, **fields)
    except Refused:
        raise _no_type(type_id) from None
    return {"QualificationType": _type_json(row)}


def delete_qualification_type(store: Storage, p: dict) -> dict:
    """``DeleteQualificationType`` (with every worker's score of it)."""
    type_id = p["QualificationTypeId"]
    _own_type(store, type_id)
    try:
        store.delete_qualification_type(type_id)
    except Refused:
        raise _no_type(type_id) from None
    return {}


def _grantable(store: Storage, type_id: str) -> None:
    if type_id in COMPUTED or type_id == LOCALE:
        raise RequestError(
            f"QualificationType {type_id} is computed by the server (approval rate, approved "
            "HITs) or set by the admin (Locale: POST /admin/api/workers)",
            "AWS.MechanicalTurk.PermissionDenied")
    if type_id not in SYSTEM_TYPES and store.qualification_type(type_id) is None:
        raise _no_type(type_id)


def associate_qualification_with_worker(store: Storage, p: dict) -> dict:
    """``AssociateQualificationWithWorker`` (grant, or change the value). On this server the
    Masters and Adult system types may be granted too."""
    type_id = p["QualificationTypeId"]
    _grantable(store, type_id)
    store.grant_qualification(type_id, p["WorkerId"], integer_value=p.get("IntegerValue", 1),
                              now=time.time())
    return {}


def disassociate_qualification_from_worker(store: Storage, p: dict) -> dict:
    """``DisassociateQualificationFromWorker`` (revoke)."""
    type_id = p["QualificationTypeId"]
    _grantable(store, type_id)
    try:
        store.revoke_qualification(type_id, p["WorkerId"])
    except Refused:
        raise RequestError(f"Worker {p['WorkerId']} does not hold QualificationType {type_id}",
                           "AWS.MechanicalTurk.QualificationDoesNotExist") from None
    return {}


def _qualification_json(row: WorkerQualification) -> dict[str, Any]:
    out: dict[str, Any] = {"QualificationTypeId": row.qualification_type_id,
                           "WorkerId": row.worker_id, "GrantTime": row.grant_time,
                           "Status": "Granted"}
    if row.integer_value is not None:
        out["IntegerValue"] = row.integer_value
    if row.country is not None:
        out["LocaleValue"] = {"Country": row.country, **(
            {"Subdivision": row.subdivision} if row.subdivision else {})}
    return out


def list_workers_with_qualification_type(store: Storage, p: dict) -> dict:
    """``ListWorkersWithQualificationType`` (granted ones; revoked ones are deleted)."""
    type_id = p["QualificationTypeId"]
    if type_id not in SYSTEM_TYPES and store.qualification_type(type_id) is None:
        raise _no_type(type_id)
    limit = int(p.get("MaxResults", 10))
    if p.get("Status", "Granted") != "Granted":
        return {"NumResults": 0, "Qualifications": []}
    after = decode_token(p.get("NextToken"), (str,))
    rows = store.qualified_workers_page(type_id, after[0] if after else "", limit + 1)
    page = [_qualification_json(r) for r in rows[:limit]]
    out: dict[str, Any] = {"NumResults": len(page), "Qualifications": page}
    if len(rows) > limit:
        out["NextToken"] = encode_token(page[-1]["WorkerId"])
    return out


def get_qualification_score(store: Storage, p: dict) -> dict:
    """``GetQualificationScore`` (system types computed from the worker's work)."""
    type_id, worker_id = p["QualificationTypeId"], p["WorkerId"]
    if type_id not in SYSTEM_TYPES and store.qualification_type(type_id) is None:
        raise _no_type(type_id)
    held = worker_value(store.worker_qualification_values(worker_id), type_id)
    if held is None:
        raise RequestError(f"Worker {worker_id} does not hold QualificationType {type_id}",
                           "AWS.MechanicalTurk.QualificationDoesNotExist")
    row = store.worker_qualification(type_id, worker_id)
    integer, country, subdivision = held
    out = _qualification_json(WorkerQualification(
        qualification_type_id=type_id, worker_id=worker_id, integer_value=integer,
        country=country, subdivision=subdivision,
        grant_time=row.grant_time if row is not None else time.time()))
    return {"Qualification": out}


def notify_workers(store: Storage, p: dict) -> dict:
    """``NotifyWorkers``: stored for the workers who exist; the others are hard failures."""
    ids = list(dict.fromkeys(p["WorkerIds"]))
    known = store.known_workers(ids)
    store.add_messages([w for w in ids if w in known], p["Subject"], p["MessageText"],
                       time.time())
    return {"NotifyWorkersFailureStatuses": [
        {"NotifyWorkersFailureCode": "HardFailure",
         "NotifyWorkersFailureMessage": f"Worker {w} does not exist on this server",
         "WorkerId": w} for w in ids if w not in known]}


def unsupported(operation: str) -> Any:
    """An operation that answers MTurk's error for what this server does not do."""

    def run(store: Storage, p: dict) -> dict:
        raise RequestError(f"{operation} is not supported by this server",
                           "AWS.MechanicalTurk.UnsupportedOperation")

    run.__name__ = operation
    return run


QUALIFICATION_OPERATIONS = {
    "CreateQualificationType": create_qualification_type,
    "GetQualificationType": get_qualification_type,
    "ListQualificationTypes": list_qualification_types,
    "UpdateQualificationType": update_qualification_type,
    "DeleteQualificationType": delete_qualification_type,
    "AssociateQualificationWithWorker": associate_qualification_with_worker,
    "DisassociateQualificationFromWorker": disassociate_qualification_from_worker,
    "ListWorkersWithQualificationType": list_workers_with_qualification_type,
    "GetQualificationScore": get_qualification_score,
    "NotifyWorkers": notify_workers,
    **{op: unsupported(op) for op in UNSUPPORTED},
}
