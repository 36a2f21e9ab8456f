"""The requester operations (MTurk 2017-01-17 semantics) over the server's database.

Every function takes the :class:`~tasks.server.db.Database` and the validated parameters and
returns the response dict that botocore's MTurk model expects (timestamps as epoch seconds).

Money: the account starts with ``START_BALANCE``; an assignment is charged reward + MTurk fee
(:func:`tasks.cost.fee_rate`: 20%, or 40% for HITs with 10 or more assignments, rounded half-up
to the cent) when it is approved, explicitly or automatically after AutoApprovalDelayInSeconds
(applied lazily whenever assignments or HITs are read). ``SendBonus`` charges bonus + 20% at
once. An explicit approval or bonus that the balance cannot cover fails with
``AWS.MechanicalTurk.InsufficientFunds``; automatic approvals are always applied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import string
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError

from tasks.cost import fee_rate, parse_reward

from .db import HIT, Account, Assignment, Bonus, Database, HITType
from .errors import RequestError
from .validation import parse_question, to_epoch

__all__ = ["OPERATIONS", "apply_auto_approvals", "hit_counts", "hit_status", "new_id"]

log = logging.getLogger(__name__)

_ALNUM = string.ascii_uppercase + string.digits
LIVE_STATUSES = ("Submitted", "Approved", "Rejected")


def new_id(n: int = 30) -> str:
    """A random MTurk-style id (uppercase letters and digits 2-7, 5 random bits each)."""
    return base64.b32encode(secrets.token_bytes((n * 5 + 7) // 8)).decode("ascii")[:n]


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(ROUND_HALF_UP))


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def assignment_cost_cents(reward: str, max_assignments: int) -> int:
    """Reward plus MTurk's fee for one approved assignment, in cents."""
    r = parse_reward(reward)
    fee = (r * fee_rate(max_assignments)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return _cents(r + fee)


def _encode_token(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _decode_token(token: str | None, n: int) -> list[Any] | None:
    if token is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(parts, list) and len(parts) == n:
            return parts
    except (ValueError, TypeError):
        pass
    raise RequestError("NextToken is invalid or expired", "AWS.ParameterOutOfRange")


# ----------------------------------------------------------------------------- reading helpers
def hit_counts(s: Any, hit_ids: list[str], now: float) -> dict[str, tuple[int, int, int]]:
    """``{hit_id: (pending, submitted, completed)}``; pending = accepted and not past deadline,
    completed = approved or rejected."""
    if not hit_ids:
        return {}
    A = Assignment
    stmt = (
        select(
            A.hit_id,
            func.sum(case(((A.status == "Accepted") & (A.deadline >= now), 1), else_=0)),
            func.sum(case((A.status == "Submitted", 1), else_=0)),
            func.sum(case((A.status.in_(("Approved", "Rejected")), 1), else_=0)),
        )
        .where(A.hit_id.in_(hit_ids))
        .group_by(A.hit_id)
    )
    return {h: (int(p or 0), int(sb or 0), int(c or 0)) for h, p, sb, c in s.execute(stmt)}


def hit_status(hit: HIT, counts: tuple[int, int, int], now: float) -> tuple[str, int]:
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


def hit_json(hit: HIT, htype: HITType, counts: tuple[int, int, int], now: float) -> dict:
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


def assignment_json(a: Assignment) -> dict:
    """An assignment as botocore's ``Assignment`` shape (absent times left out)."""
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


def _get_hit(s: Any, hit_id: str) -> tuple[HIT, HITType]:
    row = s.execute(
        select(HIT, HITType).join(HITType, HIT.hit_type_id == HITType.hit_type_id)
        .where(HIT.hit_id == hit_id)
    ).first()
    if row is None:
        raise RequestError(f"Hit {hit_id} does not exist.", "AWS.MechanicalTurk.HITDoesNotExist")
    return row[0], row[1]


def _charge(s: Any, cents: int, *, allow_negative: bool = False) -> None:
    stmt = update(Account).where(Account.id == 1)
    if not allow_negative:
        stmt = stmt.where(Account.balance_cents >= cents)
    if s.execute(stmt.values(balance_cents=Account.balance_cents - cents)).rowcount != 1:
        raise RequestError(
            f"Your account balance is too low to pay ${_money(cents)} (reward plus fees)",
            "AWS.MechanicalTurk.InsufficientFunds",
        )


_DUE_SQL = (
    "SELECT assignment_id FROM assignments WHERE status = 'Submitted' "
    "AND auto_approval_time <= :now LIMIT 1"
)


def apply_auto_approvals(db: Database, now: float | None = None) -> int:
    """Approve submitted assignments whose AutoApprovalTime has passed; return how many."""
    now = time.time() if now is None else now
    due = (Assignment.status == "Submitted") & (Assignment.auto_approval_time <= now)
    with db.fast_read() as conn:
        if conn.execute(_DUE_SQL, {"now": now}).fetchone() is None:
            return 0
    with db.write() as s:
        rows = s.execute(
            select(Assignment, HIT.max_assignments, HITType.reward)
            .join(HIT, HIT.hit_id == Assignment.hit_id)
            .join(HITType, HITType.hit_type_id == HIT.hit_type_id)
            .where(due)
        ).all()
        for a, max_assignments, reward in rows:
            a.status = "Approved"
            a.approval_time = a.auto_approval_time
            _charge(s, assignment_cost_cents(reward, max_assignments), allow_negative=True)
    if rows:
        log.info("auto-approved %d assignments", len(rows))
    return len(rows)


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


def _ensure_hit_type(db: Database, p: dict) -> HITType:
    fields = _type_fields(p)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()
    hit_type_id = "".join(_ALNUM[b % 36] for b in digest[:30])
    with db.read() as s:
        existing = s.get(HITType, hit_type_id)
    if existing is not None:
        return existing
    row = HITType(hit_type_id=hit_type_id, creation_time=time.time(), **fields)
    try:
        with db.write() as s:
            s.add(row)
    except IntegrityError:  # created concurrently with identical properties
        with db.read() as s:
            return s.get(HITType, hit_type_id)
    return row


def create_hit_type(db: Database, p: dict) -> dict:
    """``CreateHITType``: identical properties give the same HITTypeId (as on MTurk)."""
    return {"HITTypeId": _ensure_hit_type(db, p).hit_type_id}


def _token_conflict(db: Database, token: str) -> RequestError:
    with db.read() as s:
        hit_id = s.execute(
            select(HIT.hit_id).where(HIT.unique_request_token == token)
        ).scalar_one_or_none()
    return RequestError(
        f"The HIT with ID {hit_id} already exists: UniqueRequestToken {token!r} was used "
        f"to create HIT {hit_id}.",
        "AWS.MechanicalTurk.HitAlreadyExists",
    )


def _create_hit(db: Database, htype: HITType, p: dict) -> dict:
    if "Question" not in p:
        raise RequestError(
            "Question is required (this server does not support HITLayoutId)",
            "AWS.MissingParameters",
        )
    question = parse_question(p["Question"])
    token = p.get("UniqueRequestToken")
    if token is not None:
        with db.read() as s:
            if s.execute(select(HIT.hit_id).where(HIT.unique_request_token == token)).first():
                raise _token_conflict(db, token)
    now = time.time()
    hit = HIT(
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
        with db.write() as s:
            s.add(hit)
    except IntegrityError:
        if token is not None:
            raise _token_conflict(db, token) from None
        raise
    return {"HIT": hit_json(hit, htype, (0, 0, 0), now)}


def create_hit(db: Database, p: dict) -> dict:
    """``CreateHIT``: a HIT type from the type parameters, then the HIT."""
    return _create_hit(db, _ensure_hit_type(db, p), p)


def create_hit_with_hit_type(db: Database, p: dict) -> dict:
    """``CreateHITWithHITType``."""
    with db.read() as s:
        htype = s.get(HITType, p["HITTypeId"])
    if htype is None:
        raise RequestError(f"HITType {p['HITTypeId']} does not exist.",
                           "AWS.MechanicalTurk.HITTypeDoesNotExist")
    return _create_hit(db, htype, p)


def get_hit(db: Database, p: dict) -> dict:
    """``GetHIT``."""
    apply_auto_approvals(db)
    now = time.time()
    with db.read() as s:
        hit, htype = _get_hit(s, p["HITId"])
        counts = hit_counts(s, [hit.hit_id], now).get(hit.hit_id, (0, 0, 0))
    return {"HIT": hit_json(hit, htype, counts, now)}


def _list_hits(db: Database, p: dict, *, reviewable: bool) -> dict:
    apply_auto_approvals(db)
    now = time.time()
    limit = int(p.get("MaxResults", 10))
    after = _decode_token(p.get("NextToken"), 2)
    stmt = (
        select(HIT, HITType)
        .join(HITType, HIT.hit_type_id == HITType.hit_type_id)
        .where(HIT.disposed == 0)
        .order_by(HIT.creation_time, HIT.hit_id)
    )
    if after is not None:
        t, h = after
        stmt = stmt.where((HIT.creation_time > t) | ((HIT.creation_time == t) & (HIT.hit_id > h)))
    if reviewable:
        if p.get("HITTypeId"):
            stmt = stmt.where(HIT.hit_type_id == p["HITTypeId"])
        if p.get("Status", "Reviewable") != "Reviewable":
            return {"NumResults": 0, "HITs": []}  # this server never puts HITs in Reviewing
    out: list[dict] = []
    more = False
    with db.read() as s:
        chunk = 500 if reviewable else limit + 1
        while True:
            rows = s.execute(stmt.limit(chunk)).all()
            counts = hit_counts(s, [h.hit_id for h, _ in rows], now)
            for hit, htype in rows:
                item = hit_json(hit, htype, counts.get(hit.hit_id, (0, 0, 0)), now)
                if reviewable and item["HITStatus"] != "Reviewable":
                    continue
                if len(out) == limit:
                    more = True
                    break
                out.append(item)
            if more or len(rows) < chunk:
                break
            last = rows[-1][0]
            stmt = stmt.where(
                (HIT.creation_time > last.creation_time)
                | ((HIT.creation_time == last.creation_time) & (HIT.hit_id > last.hit_id))
            )
    result: dict[str, Any] = {"NumResults": len(out), "HITs": out}
    if more:
        result["NextToken"] = _encode_token(out[-1]["CreationTime"], out[-1]["HITId"])
    return result


def list_hits(db: Database, p: dict) -> dict:
    """``ListHITs`` (HITs not deleted, oldest first)."""
    return _list_hits(db, p, reviewable=False)


def list_reviewable_hits(db: Database, p: dict) -> dict:
    """``ListReviewableHITs`` (optionally of one HIT type)."""
    return _list_hits(db, p, reviewable=True)


_ASSIGNMENT_COLUMNS = (
    "assignment_id, worker_id, hit_id, status, accept_time, deadline, auto_approval_time, "
    "submit_time, approval_time, rejection_time, answer, requester_feedback"
)


def _assignment_row_json(row: Any) -> dict:
    out: dict[str, Any] = {
        "AssignmentId": row[0], "WorkerId": row[1], "HITId": row[2], "AssignmentStatus": row[3],
        "AcceptTime": row[4], "Deadline": row[5],
    }
    for key, value in zip(("AutoApprovalTime", "SubmitTime", "ApprovalTime", "RejectionTime",
                           "Answer", "RequesterFeedback"), row[6:], strict=True):
        if value is not None:
            out[key] = value
    return out


def list_assignments_for_hit(db: Database, p: dict) -> dict:
    """``ListAssignmentsForHIT``: Submitted/Approved/Rejected ones, keyset-paginated."""
    apply_auto_approvals(db)
    limit = int(p.get("MaxResults", 10))
    statuses = sorted(set(p.get("AssignmentStatuses") or LIVE_STATUSES))
    for st in statuses:
        if st not in LIVE_STATUSES:
            raise RequestError(f"AssignmentStatuses: {st!r} is not one of {list(LIVE_STATUSES)}",
                               "AWS.ParameterOutOfRange")
    after = _decode_token(p.get("NextToken"), 1)
    params: dict[str, Any] = {"h": p["HITId"], "n": limit + 1,
                              "after": after[0] if after else ""}
    params.update({f"s{i}": st for i, st in enumerate(statuses)})
    sql = (
        f"SELECT {_ASSIGNMENT_COLUMNS} FROM assignments WHERE hit_id = :h AND status IN "
        f"({', '.join(f':s{i}' for i in range(len(statuses)))}) AND assignment_id > :after "
        "ORDER BY assignment_id LIMIT :n"
    )
    with db.fast_read() as conn:
        if conn.execute("SELECT 1 FROM hits WHERE hit_id = :h", params).fetchone() is None:
            raise RequestError(f"Hit {p['HITId']} does not exist.",
                               "AWS.MechanicalTurk.HITDoesNotExist")
        rows = conn.execute(sql, params).fetchall()
    page = [_assignment_row_json(r) for r in rows[:limit]]
    result: dict[str, Any] = {"NumResults": len(page), "Assignments": page}
    if len(rows) > limit:
        result["NextToken"] = _encode_token(page[-1]["AssignmentId"])
    return result


def _load_assignment(s: Any, assignment_id: str) -> tuple[Assignment, HIT, HITType]:
    row = s.execute(
        select(Assignment, HIT, HITType)
        .join(HIT, HIT.hit_id == Assignment.hit_id)
        .join(HITType, HITType.hit_type_id == HIT.hit_type_id)
        .where(Assignment.assignment_id == assignment_id)
    ).first()
    if row is None:
        raise RequestError(f"Assignment {assignment_id} does not exist.",
                           "AWS.MechanicalTurk.AssignmentDoesNotExist")
    return row[0], row[1], row[2]


def get_assignment(db: Database, p: dict) -> dict:
    """``GetAssignment``: the assignment and its HIT."""
    apply_auto_approvals(db)
    now = time.time()
    with db.read() as s:
        a, hit, htype = _load_assignment(s, p["AssignmentId"])
        counts = hit_counts(s, [hit.hit_id], now).get(hit.hit_id, (0, 0, 0))
    return {"Assignment": assignment_json(a), "HIT": hit_json(hit, htype, counts, now)}


def approve_assignment(db: Database, p: dict) -> dict:
    """``ApproveAssignment`` (a rejected one only with ``OverrideRejection``); charges
    reward + fee."""
    apply_auto_approvals(db)
    with db.write() as s:
        a, hit, htype = _load_assignment(s, p["AssignmentId"])
        allowed = ("Submitted", "Rejected") if p.get("OverrideRejection") else ("Submitted",)
        if a.status not in allowed:
            raise RequestError(
                f"This operation can be called with a status of: {', '.join(allowed)} "
                f"(assignment {a.assignment_id} is {a.status})",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        _charge(s, assignment_cost_cents(htype.reward, hit.max_assignments))
        a.status = "Approved"
        a.approval_time = time.time()
        a.rejection_time = None
        if "RequesterFeedback" in p:
            a.requester_feedback = p["RequesterFeedback"]
    return {}


def reject_assignment(db: Database, p: dict) -> dict:
    """``RejectAssignment`` of a submitted assignment (feedback required)."""
    apply_auto_approvals(db)
    with db.write() as s:
        a, _, _ = _load_assignment(s, p["AssignmentId"])
        if a.status != "Submitted":
            raise RequestError(
                f"This operation can be called with a status of: Submitted "
                f"(assignment {a.assignment_id} is {a.status})",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        a.status = "Rejected"
        a.rejection_time = time.time()
        a.requester_feedback = p["RequesterFeedback"]
    return {}


def send_bonus(db: Database, p: dict) -> dict:
    """``SendBonus`` to the worker of a submitted assignment; charges bonus + 20% at once."""
    amount = _cents(parse_reward(p["BonusAmount"]))
    if amount <= 0:
        raise RequestError("BonusAmount must be greater than 0", "AWS.ParameterOutOfRange")
    fee = _cents((parse_reward(p["BonusAmount"]) * Decimal("0.20")).quantize(
        Decimal("0.01"), ROUND_HALF_UP))
    token = p.get("UniqueRequestToken")
    try:
        with db.write() as s:
            if token is not None and s.execute(
                select(Bonus.id).where(Bonus.unique_request_token == token)
            ).first():
                raise RequestError(
                    f"A bonus with UniqueRequestToken {token!r} was already sent",
                    "AWS.MechanicalTurk.BonusAlreadyPaid",
                )
            a, _, _ = _load_assignment(s, p["AssignmentId"])
            if a.worker_id != p["WorkerId"]:
                raise RequestError(
                    f"Assignment {a.assignment_id} was not done by worker {p['WorkerId']}",
                    "AWS.MechanicalTurk.InvalidAssignmentState",
                )
            if a.status not in LIVE_STATUSES:
                raise RequestError(
                    f"Assignment {a.assignment_id} has not been submitted",
                    "AWS.MechanicalTurk.InvalidAssignmentState",
                )
            _charge(s, amount + fee)
            s.add(Bonus(worker_id=a.worker_id, assignment_id=a.assignment_id,
                        amount_cents=amount, reason=p["Reason"],
                        unique_request_token=token, grant_time=time.time()))
    except IntegrityError:
        raise RequestError(f"A bonus with UniqueRequestToken {token!r} was already sent",
                           "AWS.MechanicalTurk.BonusAlreadyPaid") from None
    return {}


def get_account_balance(db: Database, p: dict) -> dict:
    """``GetAccountBalance`` (dollars as strings)."""
    apply_auto_approvals(db)
    with db.read() as s:
        cents = s.execute(select(Account.balance_cents).where(Account.id == 1)).scalar_one()
    return {"AvailableBalance": _money(cents), "OnHoldBalance": "0.00"}


def update_expiration_for_hit(db: Database, p: dict) -> dict:
    """``UpdateExpirationForHIT``: a time in the past expires the HIT now."""
    expire_at = max(to_epoch(p["ExpireAt"]), 0.0)
    now = time.time()
    with db.write() as s:
        hit, _ = _get_hit(s, p["HITId"])
        if hit.disposed:
            raise RequestError(f"Hit {hit.hit_id} has been deleted.",
                               "AWS.MechanicalTurk.InvalidHITState")
        hit.expiration = min(expire_at, now) if expire_at <= now else expire_at
    return {}


def delete_hit(db: Database, p: dict) -> dict:
    """``DeleteHIT``: only an expired or fully completed HIT whose assignments are all approved
    or rejected; it becomes ``Disposed`` and leaves ``ListHITs``."""
    apply_auto_approvals(db)
    now = time.time()
    with db.write() as s:
        hit, _ = _get_hit(s, p["HITId"])
        if hit.disposed:
            return {}
        pending, submitted, completed = hit_counts(s, [hit.hit_id], now).get(
            hit.hit_id, (0, 0, 0))
        if pending or submitted:
            raise RequestError(
                f"Hit {hit.hit_id} has assignments that are pending or awaiting review; "
                "approve or reject them first",
                "AWS.MechanicalTurk.InvalidHITState",
            )
        if hit.expiration > now and completed < hit.max_assignments:
            raise RequestError(
                f"Hit {hit.hit_id} is still assignable; expire it with UpdateExpirationForHIT "
                "first",
                "AWS.MechanicalTurk.InvalidHITState",
            )
        hit.disposed = 1
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
    "UpdateExpirationForHIT": update_expiration_for_hit,
    "DeleteHIT": delete_hit,
}
