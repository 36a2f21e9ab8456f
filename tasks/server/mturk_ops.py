"""The requester operations (MTurk 2017-01-17 semantics) over the server's database.

Every function takes the :class:`~tasks.server.storage.Storage` and the validated parameters
and returns the response dict that botocore's MTurk model expects (timestamps as epoch
seconds). The rules and messages are MTurk's and live here; the reads and writes (and the
transactions that make them atomic) are named methods of the storage.

Money: the account starts with ``START_BALANCE``; an assignment is charged reward + MTurk fee
(:func:`tasks.cost.reward_fee`: 20%, or 40% for HITs with 10 or more assignments, rounded half-up
to the cent, at least $0.01) when it is approved, explicitly or automatically after AutoApprovalDelayInSeconds
(applied lazily whenever assignments or HITs are read). ``SendBonus`` charges bonus + 20% (at least
$0.01) at once. An explicit approval or bonus that the balance cannot cover fails with
``AWS.MechanicalTurk.InsufficientFunds``; automatic approvals are always applied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import secrets
import string
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tasks.cost import LARGE_HIT, bonus_fee, parse_reward, reward_fee

from .errors import RequestError
from .qualifications import check_requirements
from .storage import HIT, LIVE_STATUSES, AssignmentRow, Counts, HITType, Refused, Storage
from .validation import MAX_DURATION, parse_question, to_epoch

__all__ = ["OPERATIONS", "apply_auto_approvals", "decode_token", "encode_token", "hit_status",
           "new_id"]

log = logging.getLogger(__name__)

_ALNUM = string.ascii_uppercase + string.digits
_BAD_TOKEN_TEXT = re.compile("[\\x00\\ud800-\\udfff]")


def new_id(n: int = 30) -> str:
    """A random MTurk-style id (uppercase letters and digits 2-7, 5 random bits each)."""
    return base64.b32encode(secrets.token_bytes((n * 5 + 7) // 8)).decode("ascii")[:n]


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(ROUND_HALF_UP))


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def assignment_cost_cents(reward: str, max_assignments: int) -> int:
    """Reward plus MTurk's fee for one approved assignment, in cents (:func:`tasks.cost.reward_fee`)."""
    r = parse_reward(reward)
    return _cents(r + reward_fee(r, max_assignments))


def encode_token(*parts: Any) -> str:
    """An opaque NextToken holding ``parts`` (checked again by :func:`decode_token`)."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _plain_part(part: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(part, int) and not isinstance(part, bool) and 0 <= part < 2**31
    return (kind is str and isinstance(part, str) and len(part) <= 64
            and not _BAD_TOKEN_TEXT.search(part))


def decode_token(token: str | None, kinds: tuple[type, ...]) -> list[Any] | None:
    """The parts of a NextToken made by :func:`_encode_token`, checked against ``kinds``
    (``float`` accepts any finite number, ``int`` 0 <= n < 2**31, ``str`` any valid text up to
    64 characters)."""
    if token is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, TypeError, RecursionError):
        parts = None
    if isinstance(parts, list) and len(parts) == len(kinds):
        out: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is float and isinstance(part, int | float) and not isinstance(part, bool):
                try:
                    value = float(part)
                except OverflowError:
                    break
                if not math.isfinite(value):
                    break
                out.append(value)
            elif _plain_part(part, kind):
                out.append(part)
            else:
                break
        else:
            return out
    raise RequestError("NextToken is invalid or expired", "AWS.ParameterOutOfRange")


# ----------------------------------------------------------------------------- response shapes
def hit_status(hit: HIT, counts: Counts, now: float) -> tuple[str, int]:
    """MTurk ``HITStatus`` and the number of assignments still available."""
    pending, submitted, completed = counts
    available = max(0, hit.max_assignments - pending - submitted - completed)
    if hit.disposed:
        return "Disposed", available
    if now < hit.expiration and available > 0:
        return "Assignable", available
    if pending > 0:
        return "Unassignable", available
    return "Reviewable", available


def hit_json(hit: HIT, htype: HITType, counts: Counts, now: float) -> dict:
    """A HIT as botocore's ``HIT`` shape."""
    status, available = hit_status(hit, counts, now)
    return {
        "HITId": hit.hit_id,
        "HITTypeId": hit.hit_type_id,
        "HITGroupId": hit.hit_type_id,
        "CreationTime": hit.creation_time,
        "Title": htype.title,
        "Description": htype.description,
        "Question": hit.question,
        "Keywords": htype.keywords,
        "HITStatus": status,
        "MaxAssignments": hit.max_assignments,
        "Reward": htype.reward,
        "AutoApprovalDelayInSeconds": hit.auto_approval_delay,
        "Expiration": hit.expiration,
        "AssignmentDurationInSeconds": hit.assignment_duration,
        "RequesterAnnotation": hit.requester_annotation,
        "QualificationRequirements": json.loads(htype.qualification_requirements),
        "HITReviewStatus": hit.review_status,
        "NumberOfAssignmentsPending": counts[0],
        "NumberOfAssignmentsAvailable": available,
        "NumberOfAssignmentsCompleted": counts[2],
    }


def assignment_json(a: Any) -> dict:
    """An assignment (a stored row or :class:`~tasks.server.storage.AssignmentRow`) as
    botocore's ``Assignment`` shape (absent times left out)."""
    out: dict[str, Any] = {
        "AssignmentId": a.assignment_id,
        "WorkerId": a.worker_id,
        "HITId": a.hit_id,
        "AssignmentStatus": a.status,
        "AcceptTime": a.accept_time,
        "Deadline": a.deadline,
    }
    for key, value in (
        ("AutoApprovalTime", a.auto_approval_time),
        ("SubmitTime", a.submit_time),
        ("ApprovalTime", a.approval_time),
        ("RejectionTime", a.rejection_time),
        ("Answer", a.answer),
        ("RequesterFeedback", a.requester_feedback),
    ):
        if value is not None:
            out[key] = value
    return out


def _no_hit(hit_id: str) -> RequestError:
    return RequestError(f"Hit {hit_id} does not exist.", "AWS.MechanicalTurk.HITDoesNotExist")


def _no_assignment(assignment_id: str) -> RequestError:
    return RequestError(f"Assignment {assignment_id} does not exist.",
                        "AWS.MechanicalTurk.AssignmentDoesNotExist")


def _too_poor(cents: int) -> RequestError:
    return RequestError(
        f"Your account balance is too low to pay ${_money(cents)} (reward plus fees)",
        "AWS.MechanicalTurk.InsufficientFunds",
    )


def apply_auto_approvals(store: Storage, now: float | None = None) -> int:
    """Approve submitted assignments whose AutoApprovalTime has passed; return how many."""
    n = store.apply_auto_approvals(time.time() if now is None else now, assignment_cost_cents)
    if n:
        log.info("auto-approved %d assignments", n)
    return n


# ---------------------------------------------------------------------------------- operations
def _type_fields(p: dict) -> dict:
    parse_reward(p["Reward"])  # pattern already checked; keeps one definition of a reward
    return {
        "title": p["Title"],
        "description": p["Description"],
        "keywords": p.get("Keywords", ""),
        "reward": p["Reward"],
        "assignment_duration": int(p["AssignmentDurationInSeconds"]),
        "auto_approval_delay": int(p.get("AutoApprovalDelayInSeconds", 2_592_000)),
        "qualification_requirements": json.dumps(
            p.get("QualificationRequirements", []), sort_keys=True
        ),
    }


def _ensure_hit_type(store: Storage, p: dict) -> HITType:
    check_requirements(store, p.get("QualificationRequirements", []))
    fields = _type_fields(p)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()
    hit_type_id = "".join(_ALNUM[b % 36] for b in digest[:30])
    return store.add_hit_type(hit_type_id, creation_time=time.time(), **fields)


def create_hit_type(store: Storage, p: dict) -> dict:
    """``CreateHITType``: identical properties give the same HITTypeId (as on MTurk)."""
    return {"HITTypeId": _ensure_hit_type(store, p).hit_type_id}


def _token_conflict(store: Storage, token: str) -> RequestError:
    hit_id = store.hit_with_token(token)
    return RequestError(
        f"The HIT with ID {hit_id} already exists: UniqueRequestToken {token!r} was used "
        f"to create HIT {hit_id}.",
        "AWS.MechanicalTurk.HitAlreadyExists",
    )


def _create_hit(store: Storage, htype: HITType, p: dict) -> dict:
    if "Question" not in p:
        raise RequestError(
            "Question is required (this server does not support HITLayoutId)",
            "AWS.MissingParameters",
        )
    question = parse_question(p["Question"])
    token = p.get("UniqueRequestToken")
    if token is not None and store.hit_with_token(token) is not None:
        raise _token_conflict(store, token)
    now = time.time()
    fields = dict(
        hit_id=new_id(),
        hit_type_id=htype.hit_type_id,
        creation_time=now,
        expiration=now + int(p["LifetimeInSeconds"]),
        question=p["Question"],
        html_content=question.html_content,
        external_url=question.external_url,
        frame_height=question.frame_height,
        max_assignments=int(p.get("MaxAssignments", 1)),
        n_taken=0,
        requester_annotation=p.get("RequesterAnnotation", ""),
        unique_request_token=token,
        review_status="NotReviewed",
        disposed=0,
        auto_approval_delay=htype.auto_approval_delay,
        assignment_duration=htype.assignment_duration,
    )
    try:
        hit = store.add_hit(**fields)
    except Refused:  # the token was used concurrently
        raise _token_conflict(store, token) from None
    return {"HIT": hit_json(hit, htype, (0, 0, 0), now)}


def create_hit(store: Storage, p: dict) -> dict:
    """``CreateHIT``: a HIT type from the type parameters, then the HIT."""
    return _create_hit(store, _ensure_hit_type(store, p), p)


def create_hit_with_hit_type(store: Storage, p: dict) -> dict:
    """``CreateHITWithHITType``."""
    htype = store.hit_type(p["HITTypeId"])
    if htype is None:
        raise RequestError(f"HITType {p['HITTypeId']} does not exist.",
                           "AWS.MechanicalTurk.HITTypeDoesNotExist")
    return _create_hit(store, htype, p)


def get_hit(store: Storage, p: dict) -> dict:
    """``GetHIT``."""
    apply_auto_approvals(store)
    now = time.time()
    try:
        hit, htype, counts = store.hit(p["HITId"], now)
    except Refused:
        raise _no_hit(p["HITId"]) from None
    return {"HIT": hit_json(hit, htype, counts, now)}


def _list_hits(store: Storage, p: dict, *, reviewable: bool) -> dict:
    apply_auto_approvals(store)
    now = time.time()
    limit = int(p.get("MaxResults", 10))
    after = decode_token(p.get("NextToken"), (float, str))
    cursor = None if after is None else (after[0], after[1])
    hit_type_id = None
    if reviewable:
        hit_type_id = p.get("HITTypeId") or None
        if p.get("Status", "Reviewable") != "Reviewable":
            return {"NumResults": 0, "HITs": []}  # this server never puts HITs in Reviewing
    out: list[dict] = []
    more = False
    chunk = 500 if reviewable else limit + 1
    while True:
        rows = store.hits_page(now, cursor, chunk, hit_type_id)
        for hit, htype, counts in rows:
            item = hit_json(hit, htype, counts, now)
            if reviewable and item["HITStatus"] != "Reviewable":
                continue
            if len(out) == limit:
                more = True
                break
            out.append(item)
        if more or len(rows) < chunk:
            break
        last = rows[-1][0]
        cursor = (last.creation_time, last.hit_id)
    result: dict[str, Any] = {"NumResults": len(out), "HITs": out}
    if more:
        result["NextToken"] = encode_token(out[-1]["CreationTime"], out[-1]["HITId"])
    return result


def list_hits(store: Storage, p: dict) -> dict:
    """``ListHITs`` (HITs not deleted, oldest first)."""
    return _list_hits(store, p, reviewable=False)


def list_reviewable_hits(store: Storage, p: dict) -> dict:
    """``ListReviewableHITs`` (optionally of one HIT type)."""
    return _list_hits(store, p, reviewable=True)


def list_assignments_for_hit(store: Storage, p: dict) -> dict:
    """``ListAssignmentsForHIT``: Submitted/Approved/Rejected ones, keyset-paginated."""
    apply_auto_approvals(store)
    limit = int(p.get("MaxResults", 10))
    statuses = sorted(set(p.get("AssignmentStatuses") or LIVE_STATUSES))
    for st in statuses:
        if st not in LIVE_STATUSES:
            raise RequestError(f"AssignmentStatuses: {st!r} is not one of {list(LIVE_STATUSES)}",
                               "AWS.ParameterOutOfRange")
    after = decode_token(p.get("NextToken"), (str,))
    try:
        rows: list[AssignmentRow] = store.assignments_page(
            p["HITId"], statuses, after[0] if after else "", limit + 1)
    except Refused:
        raise _no_hit(p["HITId"]) from None
    page = [assignment_json(r) for r in rows[:limit]]
    result: dict[str, Any] = {"NumResults": len(page), "Assignments": page}
    if len(rows) > limit:
        result["NextToken"] = encode_token(page[-1]["AssignmentId"])
    return result


def get_assignment(store: Storage, p: dict) -> dict:
    """``GetAssignment``: the assignment and its HIT."""
    apply_auto_approvals(store)
    now = time.time()
    try:
        a, hit, htype, counts = store.assignment(p["AssignmentId"], now)
    except Refused:
        raise _no_assignment(p["AssignmentId"]) from None
    return {"Assignment": assignment_json(a), "HIT": hit_json(hit, htype, counts, now)}


def _wrong_state(assignment_id: str, allowed: tuple[str, ...], status: str) -> RequestError:
    return RequestError(
        f"This operation can be called with a status of: {', '.join(allowed)} "
        f"(assignment {assignment_id} is {status})",
        "AWS.MechanicalTurk.InvalidAssignmentState",
    )


def approve_assignment(store: Storage, p: dict) -> dict:
    """``ApproveAssignment`` (a rejected one only with ``OverrideRejection``); charges
    reward + fee."""
    apply_auto_approvals(store)
    aid = p["AssignmentId"]
    allowed = ("Submitted", "Rejected") if p.get("OverrideRejection") else ("Submitted",)
    try:
        store.approve(aid, allowed=allowed, cost=assignment_cost_cents,
                      feedback=p.get("RequesterFeedback"), now=time.time())
    except Refused as r:
        if r.reason == "missing":
            raise _no_assignment(aid) from None
        if r.reason == "state":
            raise _wrong_state(aid, allowed, r.detail) from None
        raise _too_poor(r.detail) from None
    return {}


def reject_assignment(store: Storage, p: dict) -> dict:
    """``RejectAssignment`` of a submitted assignment (feedback required)."""
    apply_auto_approvals(store)
    aid = p["AssignmentId"]
    try:
        store.reject(aid, feedback=p["RequesterFeedback"], now=time.time())
    except Refused as r:
        if r.reason == "missing":
            raise _no_assignment(aid) from None
        raise _wrong_state(aid, ("Submitted",), r.detail) from None
    return {}


def send_bonus(store: Storage, p: dict) -> dict:
    """``SendBonus`` to the worker of a submitted assignment; charges bonus + 20% at once.

    Idempotent: by its UniqueRequestToken, or without one by (assignment, worker, amount,
    reason), so a repeated call never pays twice (``AWS.MechanicalTurk.BonusAlreadyPaid``)."""
    amount = _cents(parse_reward(p["BonusAmount"]))
    if amount <= 0:
        raise RequestError("BonusAmount must be greater than 0", "AWS.ParameterOutOfRange")
    fee = _cents(bonus_fee(parse_reward(p["BonusAmount"])))
    token = p.get("UniqueRequestToken")
    aid = p["AssignmentId"]
    if token is None:  # idempotent by assignment: the same bonus for it is paid once
        token = "auto-" + hashlib.sha256(json.dumps(
            [aid, p["WorkerId"], amount, p["Reason"]]).encode()).hexdigest()[:59]
    try:
        store.pay_bonus(aid, p["WorkerId"], amount_cents=amount, charge_cents=amount + fee,
                        reason=p["Reason"], token=token, now=time.time())
    except Refused as r:
        if r.reason == "duplicate":
            what = (f"UniqueRequestToken {token!r}" if "UniqueRequestToken" in p else
                    "this amount and reason (no UniqueRequestToken)")
            raise RequestError(f"A bonus for assignment {aid} with {what} was already sent",
                               "AWS.MechanicalTurk.BonusAlreadyPaid") from None
        if r.reason == "missing":
            raise _no_assignment(aid) from None
        if r.reason == "worker":
            raise RequestError(f"Assignment {aid} was not done by worker {p['WorkerId']}",
                               "AWS.MechanicalTurk.InvalidAssignmentState") from None
        if r.reason == "state":
            raise RequestError(f"Assignment {aid} has not been submitted",
                               "AWS.MechanicalTurk.InvalidAssignmentState") from None
        raise _too_poor(r.detail) from None
    return {}


def list_bonus_payments(store: Storage, p: dict) -> dict:
    """``ListBonusPayments`` of one HIT or one assignment (exactly one of them)."""
    if ("HITId" in p) == ("AssignmentId" in p):
        raise RequestError("Specify exactly one of HITId and AssignmentId",
                           "AWS.MissingParameters")
    limit = int(p.get("MaxResults", 10))
    after = decode_token(p.get("NextToken"), (int,))
    try:
        rows = store.bonuses_page(hit_id=p.get("HITId"), assignment_id=p.get("AssignmentId"),
                                  after=after[0] if after else 0, n=limit + 1)
    except Refused:
        if "HITId" in p:
            raise _no_hit(p["HITId"]) from None
        raise _no_assignment(p["AssignmentId"]) from None
    page = [{"WorkerId": b.worker_id, "BonusAmount": _money(b.amount_cents),
             "AssignmentId": b.assignment_id, "Reason": b.reason, "GrantTime": b.grant_time}
            for b in rows[:limit]]
    out: dict[str, Any] = {"NumResults": len(page), "BonusPayments": page}
    if len(rows) > limit:
        out["NextToken"] = encode_token(rows[limit - 1].id)
    return out


def update_hit_review_status(store: Storage, p: dict) -> dict:
    """``UpdateHITReviewStatus``: ``MarkedForReview``, or back to ``NotReviewed`` with
    ``Revert``."""
    try:
        store.set_review_status(p["HITId"], "NotReviewed" if p.get("Revert") else
                                "MarkedForReview")
    except Refused:
        raise _no_hit(p["HITId"]) from None
    return {}


def get_account_balance(store: Storage, p: dict) -> dict:
    """``GetAccountBalance`` (dollars as strings)."""
    apply_auto_approvals(store)
    return {"AvailableBalance": _money(store.balance_cents()), "OnHoldBalance": "0.00"}


def update_expiration_for_hit(store: Storage, p: dict) -> dict:
    """``UpdateExpirationForHIT``: a time in the past expires the HIT now; a time more than
    a year ahead (MTurk's longest lifetime) is refused."""
    expire_at = to_epoch(p["ExpireAt"])  # finite, checked by validate_params
    now = time.time()
    if expire_at > now + MAX_DURATION:
        raise RequestError(
            f"ExpireAt must be at most {MAX_DURATION} seconds (one year) from now",
            "AWS.ParameterOutOfRange")
    try:
        store.set_expiration(p["HITId"], min(expire_at, now) if expire_at <= now else expire_at)
    except Refused as r:
        if r.reason == "missing":
            raise _no_hit(p["HITId"]) from None
        raise RequestError(f"Hit {p['HITId']} has been deleted.",
                           "AWS.MechanicalTurk.InvalidHITState") from None
    return {}


#: MTurk: a HIT created with fewer than this many assignments cannot be extended to this many
#: or more (``AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease``).
EXTENSION_LIMIT = LARGE_HIT


def create_additional_assignments_for_hit(store: Storage, p: dict) -> dict:
    """``CreateAdditionalAssignmentsForHIT``: raise a HIT's MaxAssignments by
    ``NumberOfAdditionalAssignments``. A repeated UniqueRequestToken adds nothing and fails
    with a message naming the request (as on MTurk), so a retried call never extends twice; a
    HIT created with fewer than 10 assignments may not reach 10."""
    hit_id, n = p["HITId"], int(p["NumberOfAdditionalAssignments"])
    token = p.get("UniqueRequestToken")
    try:
        store.extend_hit(hit_id, n, token, time.time(), limit=EXTENSION_LIMIT)
    except Refused as r:
        if r.reason == "missing":
            raise _no_hit(hit_id) from None
        if r.reason == "duplicate":
            raise RequestError(
                f"The HIT {hit_id} was already extended by the request with "
                f"UniqueRequestToken {token!r}.",
                "AWS.MechanicalTurk.ExtendHITAlreadyExists") from None
        if r.reason == "limit":
            created, now_max = r.detail
            raise RequestError(
                f"HIT {hit_id} was created with {created} assignments (fewer than "
                f"{EXTENSION_LIMIT}) and cannot be extended from {now_max} to {now_max + n}: "
                f"at most {EXTENSION_LIMIT - 1} in all",
                "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease") from None
        raise RequestError(f"Hit {hit_id} has been deleted.",
                           "AWS.MechanicalTurk.InvalidHITState") from None
    return {}


def delete_hit(store: Storage, p: dict) -> dict:
    """``DeleteHIT``: only an expired or fully completed HIT whose assignments are all approved
    or rejected; it becomes ``Disposed`` and leaves ``ListHITs``."""
    apply_auto_approvals(store)
    hit_id = p["HITId"]
    try:
        store.dispose_hit(hit_id, time.time())
    except Refused as r:
        if r.reason == "missing":
            raise _no_hit(hit_id) from None
        if r.reason == "busy":
            raise RequestError(
                f"Hit {hit_id} has assignments that are pending or awaiting review; "
                "approve or reject them first",
                "AWS.MechanicalTurk.InvalidHITState",
            ) from None
        raise RequestError(
            f"Hit {hit_id} is still assignable; expire it with UpdateExpirationForHIT "
            "first",
            "AWS.MechanicalTurk.InvalidHITState",
        ) from None
    return {}


OPERATIONS = {
    "CreateHITType": create_hit_type,
    "CreateHIT": create_hit,
    "CreateHITWithHITType": create_hit_with_hit_type,
    "GetHIT": get_hit,
    "ListHITs": list_hits,
    "ListReviewableHITs": list_reviewable_hits,
    "ListAssignmentsForHIT": list_assignments_for_hit,
    "GetAssignment": get_assignment,
    "ApproveAssignment": approve_assignment,
    "RejectAssignment": reject_assignment,
    "SendBonus": send_bonus,
    "GetAccountBalance": get_account_balance,
    "ListBonusPayments": list_bonus_payments,
    "UpdateHITReviewStatus": update_hit_review_status,
    "UpdateExpirationForHIT": update_expiration_for_hit,
    "DeleteHIT": delete_hit,
    "CreateAdditionalAssignmentsForHIT": create_additional_assignments_for_hit,
}
