"""Storage of the task server: every query in one place, and the one way the routes reach it.

Routes, the WSGI hot paths and the requester operations call named methods of
:class:`Storage` (``get_storage().accept(...)``, ``.hits_page(...)``); no other module of
:mod:`tasks.server` holds SQL or opens a connection. The tables are in :mod:`.db`, with the
connections and transactions (:class:`~tasks.server.db.Database`).

Two kinds of statement live here:

- the hot paths of a worker cycle (list, accept, page, submit, login) are fixed SQL text with
  ``:name`` parameters, portable across SQLite and PostgreSQL, run on
  :meth:`Database.fast_read`/:meth:`Database.fast_write` (on SQLite straight on the ``sqlite3``
  driver, skipping SQLAlchemy's per-statement cost);
- the requester operations and admin pages are SQLAlchemy ORM/Core queries in short sessions.

Guarantees kept by the statements (not by callers): taking an assignment is a conditional
``UPDATE hits ... WHERE n_taken < max_assignments`` and the ``INSERT`` in one write transaction,
guarded by ``UNIQUE(hit_id, worker_id)``, so MaxAssignments is never exceeded and a worker never
holds two assignments of a HIT; a submit is one conditional
``UPDATE ... WHERE status = 'Accepted' AND deadline >= now``, so a second submit never
overwrites the first. Each write is one transaction, so a killed process loses nothing that was
acknowledged and leaves nothing half written.

Refusals that depend on what a transaction finds are raised as :class:`Refused` (with a reason
code) after the transaction has been rolled back; callers turn them into MTurk errors or HTTP
answers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from .db import (
    HIT,
    INTEGRITY_ERRORS,
    Account,
    Assignment,
    Bonus,
    Database,
    HitExtension,
    HITType,
    QualificationType,
    SeenSignature,
    Worker,
    WorkerMessage,
    WorkerQualification,
)

__all__ = [
    "ACCEPTED",
    "HIT",
    "LIVE_STATUSES",
    "Assignment",
    "AssignmentRow",
    "Batch",
    "Counts",
    "HITType",
    "ListedHIT",
    "OwnedAssignment",
    "QualificationType",
    "Refused",
    "Storage",
    "WorkerQualification",
    "WorkerValues",
    "get_storage",
    "hash_token",
    "init_db_command",
    "issue_worker_token",
]

LIVE_STATUSES = ("Submitted", "Approved", "Rejected")
ACCEPTED = "accepted"

Counts = tuple[int, int, int]
"""``(pending, submitted, completed)`` assignments of a HIT: pending = accepted and not past
its deadline, completed = approved or rejected."""

CostFn = Callable[[str, int], int]
"""``cost(reward, max_assignments)``: cents charged for one approved assignment."""


class Refused(Exception):  # noqa: N818 - an outcome, raised after the rollback
    """A write refused by what its transaction found (nothing was written).

    ``reason`` is one of ``"missing"`` (no such row), ``"state"`` (``detail`` = the current
    status), ``"funds"`` (``detail`` = the cents that could not be charged), ``"duplicate"``
    (a UniqueRequestToken or key already used), ``"worker"`` (another worker's assignment),
    ``"disposed"``, ``"busy"`` (assignments pending or awaiting review) and ``"assignable"``
    (the HIT has not expired and is not full).
    """

    def __init__(self, reason: str, detail: Any = None):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class ListedHIT(NamedTuple):
    """A row of the worker's HIT list."""

    hit_id: str
    max_assignments: int
    n_taken: int
    expiration: float
    title: str
    description: str
    reward: str
    qualification_requirements: str  # JSON list, "[]" for none


class OwnedAssignment(NamedTuple):
    """An assignment with what its pages need."""

    worker_id: str
    hit_id: str
    status: str
    deadline: float
    html_content: str | None
    external_url: str | None
    frame_height: int
    title: str
    reward: str


class AssignmentRow(NamedTuple):
    """An assignment as ``ListAssignmentsForHIT`` returns it (absent times are None)."""

    assignment_id: str
    worker_id: str
    hit_id: str
    status: str
    accept_time: float
    deadline: float
    auto_approval_time: float | None
    submit_time: float | None
    approval_time: float | None
    rejection_time: float | None
    answer: str | None
    requester_feedback: str | None


class WorkerValues(NamedTuple):
    """A worker's standing for qualification checks."""

    approved: int
    rejected: int
    held: dict[str, tuple[int | None, str | None, str | None]]
    auto: dict[str, int | None]


class Batch(NamedTuple):
    """A HIT type on the admin index: its live HITs, their slots, assignments per status."""

    type: HITType
    n_hits: int
    slots: int
    counts: dict[str, int]


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a worker token (tokens are 256-bit random, so no slow KDF)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- hot-path SQL text
_TOKEN_SQL = "SELECT token_hash FROM workers WHERE worker_id = :w"
_LIST_SQL = (
    "SELECT h.hit_id, h.max_assignments, h.n_taken, h.expiration, t.title, t.description, "
    "t.reward, t.qualification_requirements FROM hits h "
    "JOIN hit_types t ON t.hit_type_id = h.hit_type_id "
    "WHERE h.disposed = 0 AND h.expiration > :now AND h.n_taken < h.max_assignments "
    "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.hit_id = h.hit_id "
    "AND a.worker_id = :w) ORDER BY h.creation_time, h.hit_id LIMIT :n"
)
_TAKE_SQL = (
    "UPDATE hits SET n_taken = n_taken + 1 WHERE hit_id = :h AND disposed = 0 "
    "AND expiration > :now AND n_taken < max_assignments RETURNING assignment_duration"
)
# The WSGI fast path takes only HITs without QualificationRequirements (Flask checks the rest).
_TAKE_OPEN_SQL = (
    "UPDATE hits SET n_taken = n_taken + 1 WHERE hit_id = :h AND disposed = 0 "
    "AND expiration > :now AND n_taken < max_assignments AND EXISTS (SELECT 1 FROM hit_types t "
    "WHERE t.hit_type_id = hits.hit_type_id AND t.qualification_requirements = '[]') "
    "RETURNING assignment_duration"
)
_REQUIREMENTS_SQL = (
    "SELECT t.qualification_requirements FROM hits h "
    "JOIN hit_types t ON t.hit_type_id = h.hit_type_id WHERE h.hit_id = :h"
)
_WORKER_STATS_SQL = (
    "SELECT COALESCE(SUM(CASE WHEN status = 'Approved' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN status = 'Rejected' THEN 1 ELSE 0 END), 0) "
    "FROM assignments WHERE worker_id = :w"
)
_WORKER_QUALS_SQL = (
    "SELECT qualification_type_id, integer_value, country, subdivision "
    "FROM worker_qualifications WHERE worker_id = :w"
)
_AUTO_GRANTED_SQL = (
    "SELECT qualification_type_id, auto_granted_value FROM qualification_types "
    "WHERE auto_granted = 1 AND status = 'Active'"
)
_ABANDON_SQL = (
    "UPDATE assignments SET status = 'Abandoned' WHERE hit_id = :h AND status = 'Accepted' "
    "AND deadline < :now"
)
_RELEASE_SQL = "UPDATE hits SET n_taken = n_taken - :n WHERE hit_id = :h"
_INSERT_SQL = (
    "INSERT INTO assignments (assignment_id, hit_id, worker_id, status, accept_time, deadline) "
    "VALUES (:a, :h, :w, 'Accepted', :now, :deadline)"
)
_MINE_SQL = "SELECT assignment_id FROM assignments WHERE hit_id = :h AND worker_id = :w"
_HIT_STATE_SQL = "SELECT disposed, expiration FROM hits WHERE hit_id = :h"
_OWNED_SQL = (
    "SELECT a.worker_id, a.hit_id, a.status, a.deadline, h.html_content, h.external_url, "
    "h.frame_height, t.title, t.reward FROM assignments a "
    "JOIN hits h ON h.hit_id = a.hit_id JOIN hit_types t ON t.hit_type_id = h.hit_type_id "
    "WHERE a.assignment_id = :a"
)
_SUBMIT_SQL = (
    "UPDATE assignments SET status = 'Submitted', submit_time = :now, answer = :xml, "
    "auto_approval_time = :now + (SELECT h.auto_approval_delay FROM hits h "
    "WHERE h.hit_id = assignments.hit_id) "
    "WHERE assignment_id = :a AND worker_id = :w AND status = 'Accepted' AND deadline >= :now"
)
_SUBMIT_STATE_SQL = "SELECT worker_id, status, deadline FROM assignments WHERE assignment_id = :a"
_DUE_SQL = (
    "SELECT assignment_id FROM assignments WHERE status = 'Submitted' "
    "AND auto_approval_time <= :now LIMIT 1"
)
_HIT_EXISTS_SQL = "SELECT 1 FROM hits WHERE hit_id = :h"
_ASSIGNMENTS_SQL = (
    "SELECT assignment_id, worker_id, hit_id, status, accept_time, deadline, "
    "auto_approval_time, submit_time, approval_time, rejection_time, answer, "
    "requester_feedback FROM assignments WHERE hit_id = :h AND status IN ({statuses}) "
    "AND assignment_id > :after ORDER BY assignment_id LIMIT :n"
)


def _scalar(result: Any) -> Any:
    row = result.fetchone()
    return None if row is None else row[0]


# ------------------------------------------------------------------------------- ORM helpers
def _hit_counts(s: Session, hit_ids: list[str], now: float) -> dict[str, Counts]:
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


def _hit_and_type(s: Session, hit_id: str) -> tuple[HIT, HITType]:
    row = s.execute(
        select(HIT, HITType).join(HITType, HIT.hit_type_id == HITType.hit_type_id)
        .where(HIT.hit_id == hit_id)
    ).first()
    if row is None:
        raise Refused("missing")
    return row[0], row[1]


def _assignment_hit_type(s: Session, assignment_id: str) -> tuple[Assignment, HIT, HITType]:
    row = s.execute(
        select(Assignment, HIT, HITType)
        .join(HIT, HIT.hit_id == Assignment.hit_id)
        .join(HITType, HITType.hit_type_id == HIT.hit_type_id)
        .where(Assignment.assignment_id == assignment_id)
    ).first()
    if row is None:
        raise Refused("missing")
    return row[0], row[1], row[2]


def _charge(s: Session, cents: int, *, allow_negative: bool = False) -> None:
    stmt = update(Account).where(Account.id == 1)
    if not allow_negative:
        stmt = stmt.where(Account.balance_cents >= cents)
    if s.execute(stmt.values(balance_cents=Account.balance_cents - cents)).rowcount != 1:
        raise Refused("funds", cents)


def _status_counts(s: Session, key: Any, where: Any) -> dict[Any, dict[str, int]]:
    stmt = (select(key, Assignment.status, func.count())
            .join(HIT, HIT.hit_id == Assignment.hit_id)
            .where(where)
            .group_by(key, Assignment.status))
    out: dict[Any, dict[str, int]] = {}
    for k, status, n in s.execute(stmt):
        out.setdefault(k, {})[status] = n
    return out


class Storage:
    """The task server's database, reached only through the named methods below.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:////tmp/server.sqlite`` or ``postgresql://...``.
    busy_timeout_ms : int
        SQLite ``busy_timeout`` (other processes holding the write lock).
    pool_size : int
        Connections kept per engine (about the number of server threads).
    checkpoint_interval_s : float or None
        SQLite: checkpoint the WAL from a background thread this often instead of inside
        requests (the server); None keeps SQLite's automatic checkpoints.

    Attributes
    ----------
    database : Database
        Connections and transactions (for tests and tools that inspect the tables).
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 16,
                 checkpoint_interval_s: float | None = None):
        self.database = Database(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size,
                                 checkpoint_interval_s=checkpoint_interval_s)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL."""
        return self.database.url

    @property
    def sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.database.sqlite

    def dispose(self) -> None:
        """Close every connection (pooled and per-thread)."""
        self.database.dispose()

    def init(self, balance_cents: int) -> None:
        """Create missing tables, and the account row with ``balance_cents`` if it does not
        exist yet (idempotent)."""
        self.database.create_all()
        with self.database.write() as s:
            if s.get(Account, 1) is None:
                s.add(Account(id=1, balance_cents=int(balance_cents)))

    # ---------------------------------------------------------------------------- requests
    def first_use_of_signature(self, signature: str, now: float, keep_seconds: float) -> bool:
        """Record a verified request signature; False if it was already recorded (a replay).

        Signatures older than ``keep_seconds`` are forgotten in the same transaction (they
        fail the clock-skew check anyway). The primary key makes this hold across processes.
        """
        try:
            with self.database.write() as s:
                s.execute(delete(SeenSignature).where(SeenSignature.seen_at < now - keep_seconds))
                s.add(SeenSignature(signature=signature, seen_at=now))
        except INTEGRITY_ERRORS:
            return False
        return True

    def forget_signature(self, signature: str) -> None:
        """Drop a recorded signature (its request failed inside the server and changed
        nothing, so a retry with the same signature may run)."""
        with self.database.write() as s:
            s.execute(delete(SeenSignature).where(SeenSignature.signature == signature))

    # ----------------------------------------------------------------------------- workers
    def set_worker_token(self, worker_id: str, token: str) -> None:
        """Store the hash of ``worker_id``'s token, creating the worker or rotating it."""
        with self.database.write() as s:
            row = s.get(Worker, worker_id)
            if row is None:
                s.add(Worker(worker_id=worker_id, token_hash=hash_token(token),
                             created=time.time()))
            else:
                row.token_hash = hash_token(token)

    def worker_token_ok(self, worker_id: str, token: str) -> bool:
        """Whether ``token`` is the current token of ``worker_id`` (constant-time compare)."""
        with self.database.fast_read() as conn:
            stored = _scalar(conn.execute(_TOKEN_SQL, {"w": worker_id}))
        return stored is not None and hmac.compare_digest(stored, hash_token(token))

    # ------------------------------------------------------------------------- worker cycle
    def assignable_hits(self, worker_id: str, now: float, limit: int = 100) -> list[ListedHIT]:
        """HITs ``worker_id`` can accept: not deleted, not expired, not full, not already
        taken by them; oldest first."""
        with self.database.fast_read() as conn:
            rows = conn.execute(_LIST_SQL, {"w": worker_id, "now": now, "n": limit}).fetchall()
        return [ListedHIT(*r) for r in rows]

    def hit_page(self, hit_id: str) -> tuple[str | None, str | None] | None:
        """``(html_content, external_url)`` of a HIT not deleted; None if there is none."""
        with self.database.read() as s:
            row = s.execute(
                select(HIT.html_content, HIT.external_url)
                .where(HIT.hit_id == hit_id, HIT.disposed == 0)
            ).first()
        return None if row is None else (row[0], row[1])

    def accept(self, hit_id: str, worker_id: str, assignment_id: str, now: float, *,
               explain: bool = True) -> str:
        """Take one assignment of a HIT as ``assignment_id`` (one write transaction).

        Returns :data:`ACCEPTED`, or why not: ``"missing"`` (no such HIT), ``"expired"``
        (expired or deleted), ``"duplicate"`` (the worker already took this HIT) or ``"full"``.
        With ``explain=False`` (the WSGI fast path) a refusal is ``"refused"``, found with no
        statement beyond the conditional update, assignments past their deadline are not
        freed, and HITs with QualificationRequirements are refused; the caller asks again with
        ``explain=True`` after checking the worker's qualifications
        (:meth:`hit_requirements`, :meth:`worker_qualification_values`).
        """
        args = {"h": hit_id, "now": now}
        outcome = ACCEPTED
        try:
            with self.database.fast_write() as conn:
                duration = _scalar(conn.execute(_TAKE_SQL if explain else _TAKE_OPEN_SQL, args))
                if duration is None and not explain:
                    return "refused"
                if duration is None:
                    # Free the slots of assignments abandoned past their deadline, then retry.
                    freed = conn.execute(_ABANDON_SQL, args).rowcount
                    if freed:
                        conn.execute(_RELEASE_SQL, {"h": hit_id, "n": freed})
                        duration = _scalar(conn.execute(_TAKE_SQL, args))
                if duration is None:
                    hit = conn.execute(_HIT_STATE_SQL, args).fetchone()
                    if hit is None:
                        outcome = "missing"
                    elif hit[0] or hit[1] <= now:
                        outcome = "expired"
                    elif conn.execute(_MINE_SQL, {"h": hit_id, "w": worker_id}).fetchone():
                        outcome = "duplicate"
                    else:
                        outcome = "full"
                else:
                    conn.execute(_INSERT_SQL, {"a": assignment_id, "h": hit_id, "w": worker_id,
                                               "now": now, "deadline": now + duration})
        except INTEGRITY_ERRORS:  # UNIQUE(hit_id, worker_id): rolled back, slot not taken
            return "duplicate" if explain else "refused"
        return outcome

    def assignment_of(self, hit_id: str, worker_id: str) -> str | None:
        """The id of ``worker_id``'s assignment of ``hit_id``, if any."""
        with self.database.fast_read() as conn:
            return _scalar(conn.execute(_MINE_SQL, {"h": hit_id, "w": worker_id}))

    def owned_assignment(self, assignment_id: str) -> OwnedAssignment | None:
        """An assignment with its HIT's page and title; None if there is none."""
        with self.database.fast_read() as conn:
            found = conn.execute(_OWNED_SQL, {"a": assignment_id}).fetchone()
        return None if found is None else OwnedAssignment(*found)

    def submit(self, assignment_id: str, worker_id: str, answer_xml: str, now: float, *,
               explain: bool = True) -> str:
        """Store the answers of ``worker_id``'s accepted assignment, once, before its deadline
        (one conditional update; a second submit never overwrites the first).

        Returns ``"stored"``, or why not: ``"missing"``, ``"worker"`` (another worker's),
        ``"submitted"`` (not Accepted any more) or ``"late"``. With ``explain=False`` a
        refusal is ``"refused"`` and nothing else is read.
        """
        state = None
        with self.database.fast_write() as conn:
            done = conn.execute(_SUBMIT_SQL, {"a": assignment_id, "w": worker_id, "now": now,
                                              "xml": answer_xml}).rowcount
            if done != 1 and explain:
                state = conn.execute(_SUBMIT_STATE_SQL, {"a": assignment_id}).fetchone()
        if done == 1:
            return "stored"
        if not explain:
            return "refused"
        if state is None:
            return "missing"
        if state[0] != worker_id:
            return "worker"
        if state[1] != "Accepted":
            return "submitted"
        return "late"

    # ----------------------------------------------------------------------- qualifications
    def hit_requirements(self, hit_id: str) -> str | None:
        """The QualificationRequirements (JSON text) of a HIT's type; None if no such HIT."""
        with self.database.fast_read() as conn:
            return _scalar(conn.execute(_REQUIREMENTS_SQL, {"h": hit_id}))

    def worker_qualification_values(self, worker_id: str | None) -> WorkerValues:
        """What the qualification checks need about a worker: ``(approved, rejected, held,
        auto)`` with the numbers of approved and rejected assignments, the qualifications held
        (``{type id: (integer value, country, subdivision)}``) and the active auto-granted
        types (``{type id: value}``). ``None``, a visitor who is not logged in, matches no
        worker's rows (SQL's ``= NULL`` is never true): no assignments, nothing held."""
        with self.database.fast_read() as conn:
            approved, rejected = conn.execute(_WORKER_STATS_SQL, {"w": worker_id}).fetchone()
            held = {r[0]: (r[1], r[2], r[3])
                    for r in conn.execute(_WORKER_QUALS_SQL, {"w": worker_id}).fetchall()}
            auto = {r[0]: r[1] for r in conn.execute(_AUTO_GRANTED_SQL).fetchall()}
        return WorkerValues(int(approved or 0), int(rejected or 0), held, auto)

    def add_qualification_type(self, **fields: Any) -> QualificationType:
        """Insert a qualification type (columns of :class:`~tasks.server.db.QualificationType`);
        ``Refused("duplicate")`` if its name is taken."""
        row = QualificationType(**fields)
        try:
            with self.database.write() as s:
                s.add(row)
        except INTEGRITY_ERRORS:
            raise Refused("duplicate") from None
        return row

    def qualification_type(self, qualification_type_id: str) -> QualificationType | None:
        """A requester-created qualification type by id."""
        with self.database.read() as s:
            return s.get(QualificationType, qualification_type_id)

    def qualification_types_page(self, query: str | None, after: str, n: int
                                 ) -> list[QualificationType]:
        """Up to ``n`` qualification types by id after ``after``, whose name, description or
        keywords contain ``query`` (case-insensitive) if given."""
        stmt = select(QualificationType).where(
            QualificationType.qualification_type_id > after
        ).order_by(QualificationType.qualification_type_id).limit(n)
        if query:
            like = f"%{query.lower()}%"
            stmt = stmt.where(func.lower(QualificationType.name).like(like)
                              | func.lower(QualificationType.description).like(like)
                              | func.lower(QualificationType.keywords).like(like))
        with self.database.read() as s:
            return list(s.execute(stmt).scalars().all())

    def update_qualification_type(self, qualification_type_id: str, **fields: Any
                                  ) -> QualificationType:
        """Set ``fields`` of a qualification type; ``Refused("missing")``."""
        with self.database.write() as s:
            row = s.get(QualificationType, qualification_type_id)
            if row is None:
                raise Refused("missing")
            for key, value in fields.items():
                setattr(row, key, value)
        return row

    def delete_qualification_type(self, qualification_type_id: str) -> None:
        """Delete a qualification type and every worker's score of it;
        ``Refused("missing")``."""
        with self.database.write() as s:
            row = s.get(QualificationType, qualification_type_id)
            if row is None:
                raise Refused("missing")
            s.execute(delete(WorkerQualification).where(
                WorkerQualification.qualification_type_id == qualification_type_id))
            s.delete(row)

    def grant_qualification(self, qualification_type_id: str, worker_id: str, *,
                            integer_value: int | None = None, country: str | None = None,
                            subdivision: str | None = None, now: float) -> None:
        """Give ``worker_id`` the qualification (or change its value)."""
        with self.database.write() as s:
            row = s.get(WorkerQualification, (qualification_type_id, worker_id))
            if row is None:
                s.add(WorkerQualification(
                    qualification_type_id=qualification_type_id, worker_id=worker_id,
                    integer_value=integer_value, country=country, subdivision=subdivision,
                    grant_time=now))
            else:
                row.integer_value = integer_value
                row.country = country
                row.subdivision = subdivision
                row.grant_time = now

    def revoke_qualification(self, qualification_type_id: str, worker_id: str) -> None:
        """Take a qualification from a worker; ``Refused("missing")`` if not held."""
        with self.database.write() as s:
            row = s.get(WorkerQualification, (qualification_type_id, worker_id))
            if row is None:
                raise Refused("missing")
            s.delete(row)

    def worker_qualification(self, qualification_type_id: str, worker_id: str
                             ) -> WorkerQualification | None:
        """A worker's score of a qualification type, if held."""
        with self.database.read() as s:
            return s.get(WorkerQualification, (qualification_type_id, worker_id))

    def qualified_workers_page(self, qualification_type_id: str, after: str, n: int
                               ) -> list[WorkerQualification]:
        """Up to ``n`` holders of a qualification, by worker id after ``after``."""
        with self.database.read() as s:
            return list(s.execute(
                select(WorkerQualification)
                .where(WorkerQualification.qualification_type_id == qualification_type_id,
                       WorkerQualification.worker_id > after)
                .order_by(WorkerQualification.worker_id).limit(n)).scalars().all())

    def known_workers(self, worker_ids: list[str]) -> set[str]:
        """The ids among ``worker_ids`` of workers who exist (have a login)."""
        with self.database.read() as s:
            return set(s.execute(select(Worker.worker_id)
                                 .where(Worker.worker_id.in_(worker_ids))).scalars().all())

    def add_messages(self, worker_ids: list[str], subject: str, message: str,
                     now: float) -> None:
        """Store a message to each of ``worker_ids`` (``NotifyWorkers``)."""
        with self.database.write() as s:
            s.add_all([WorkerMessage(worker_id=w, subject=subject, message=message,
                                     sent_time=now) for w in worker_ids])

    def messages(self, worker_id: str, limit: int = 20) -> list[WorkerMessage]:
        """The latest messages to a worker, newest first."""
        with self.database.read() as s:
            return list(s.execute(select(WorkerMessage)
                                  .where(WorkerMessage.worker_id == worker_id)
                                  .order_by(WorkerMessage.id.desc()).limit(limit))
                        .scalars().all())

    # ------------------------------------------------------------------------ HIT types/HITs
    def hit_type(self, hit_type_id: str) -> HITType | None:
        """A HIT type by id."""
        with self.database.read() as s:
            return s.get(HITType, hit_type_id)

    def add_hit_type(self, hit_type_id: str, **fields: Any) -> HITType:
        """The HIT type ``hit_type_id``, inserted with ``fields`` (columns of
        :class:`~tasks.server.db.HITType`) unless it exists (also if created concurrently)."""
        existing = self.hit_type(hit_type_id)
        if existing is not None:
            return existing
        row = HITType(hit_type_id=hit_type_id, **fields)
        try:
            with self.database.write() as s:
                s.add(row)
        except INTEGRITY_ERRORS:
            found = self.hit_type(row.hit_type_id)
            if found is None:
                raise
            return found
        return row

    def hit_with_token(self, token: str) -> str | None:
        """The id of the HIT created with UniqueRequestToken ``token``, if any."""
        with self.database.read() as s:
            return s.execute(
                select(HIT.hit_id).where(HIT.unique_request_token == token)
            ).scalar_one_or_none()

    def add_hit(self, **fields: Any) -> HIT:
        """Insert and return a HIT with ``fields`` (columns of :class:`~tasks.server.db.HIT`);
        ``Refused("duplicate")`` if its UniqueRequestToken was used."""
        hit = HIT(**fields)
        try:
            with self.database.write() as s:
                s.add(hit)
        except INTEGRITY_ERRORS:
            if hit.unique_request_token is not None:
                raise Refused("duplicate") from None
            raise
        return hit

    def hit(self, hit_id: str, now: float) -> tuple[HIT, HITType, Counts]:
        """A HIT, its type and its assignment counts; ``Refused("missing")`` if none."""
        with self.database.read() as s:
            hit, htype = _hit_and_type(s, hit_id)
            counts = _hit_counts(s, [hit_id], now).get(hit_id, (0, 0, 0))
        return hit, htype, counts

    def hits_page(self, now: float, after: tuple[float, str] | None, n: int,
                  hit_type_id: str | None = None) -> list[tuple[HIT, HITType, Counts]]:
        """Up to ``n`` HITs not deleted (optionally of one type), ordered by
        ``(creation_time, hit_id)`` and strictly after ``after``, with their counts."""
        stmt = (
            select(HIT, HITType)
            .join(HITType, HIT.hit_type_id == HITType.hit_type_id)
            .where(HIT.disposed == 0)
            .order_by(HIT.creation_time, HIT.hit_id)
        )
        if after is not None:
            t, h = after
            stmt = stmt.where((HIT.creation_time > t)
                              | ((HIT.creation_time == t) & (HIT.hit_id > h)))
        if hit_type_id:
            stmt = stmt.where(HIT.hit_type_id == hit_type_id)
        with self.database.read() as s:
            rows = s.execute(stmt.limit(n)).all()
            counts = _hit_counts(s, [h.hit_id for h, _ in rows], now)
        return [(h, t, counts.get(h.hit_id, (0, 0, 0))) for h, t in rows]

    def set_expiration(self, hit_id: str, expiration: float) -> None:
        """Set a HIT's expiration; ``Refused("missing")`` or ``Refused("disposed")``."""
        with self.database.write() as s:
            hit, _ = _hit_and_type(s, hit_id)
            if hit.disposed:
                raise Refused("disposed")
            hit.expiration = expiration

    def extend_hit(self, hit_id: str, n_added: int, token: str | None, now: float,
                   limit: int | None = None) -> int:
        """Add ``n_added`` assignments to a HIT (one transaction) and return its new
        MaxAssignments. With ``limit``, a HIT created with fewer than ``limit`` assignments
        may not reach ``limit`` (MTurk's rule for 10).
        ``Refused("duplicate" | "missing" | "disposed" | "limit")``."""
        try:
            with self.database.write() as s:
                if token is not None and s.execute(
                    select(HitExtension.id).where(HitExtension.unique_request_token == token)
                ).first():
                    raise Refused("duplicate")
                hit, _ = _hit_and_type(s, hit_id)
                if hit.disposed:
                    raise Refused("disposed")
                created_with = hit.max_assignments - int(_scalar(s.execute(
                    select(func.coalesce(func.sum(HitExtension.n_added), 0))
                    .where(HitExtension.hit_id == hit_id))))
                if (limit is not None and created_with < limit
                        and hit.max_assignments + n_added >= limit):
                    raise Refused("limit", (created_with, hit.max_assignments))
                hit.max_assignments += n_added
                s.add(HitExtension(hit_id=hit_id, n_added=n_added,
                                   unique_request_token=token, time=now))
                return hit.max_assignments
        except INTEGRITY_ERRORS:  # the same token sent concurrently
            raise Refused("duplicate") from None

    def dispose_hit(self, hit_id: str, now: float) -> None:
        """Mark a HIT deleted if it has no pending or submitted assignments and is expired
        or full of completed ones; ``Refused("missing" | "busy" | "assignable")``."""
        with self.database.write() as s:
            hit, _ = _hit_and_type(s, hit_id)
            if hit.disposed:
                return
            pending, submitted, completed = _hit_counts(s, [hit_id], now).get(
                hit_id, (0, 0, 0))
            if pending or submitted:
                raise Refused("busy")
            if hit.expiration > now and completed < hit.max_assignments:
                raise Refused("assignable")
            hit.disposed = 1

    # ------------------------------------------------------------------------- assignments
    def apply_auto_approvals(self, now: float, cost: CostFn) -> int:
        """Approve submitted assignments whose AutoApprovalTime has passed, charging
        ``cost(reward, max_assignments)`` each (even past a zero balance); return how many.

        A single indexed read answers the common case (nothing due) without the write lock.
        """
        with self.database.fast_read() as conn:
            if conn.execute(_DUE_SQL, {"now": now}).fetchone() is None:
                return 0
        due = (Assignment.status == "Submitted") & (Assignment.auto_approval_time <= now)
        with self.database.write() as s:
            rows = s.execute(
                select(Assignment, HIT.max_assignments, HITType.reward)
                .join(HIT, HIT.hit_id == Assignment.hit_id)
                .join(HITType, HITType.hit_type_id == HIT.hit_type_id)
                .where(due)
            ).all()
            for a, max_assignments, reward in rows:
                a.status = "Approved"
                a.approval_time = a.auto_approval_time
                _charge(s, cost(reward, max_assignments), allow_negative=True)
        return len(rows)

    def assignments_page(self, hit_id: str, statuses: list[str], after: str, n: int
                         ) -> list[AssignmentRow]:
        """Up to ``n`` assignments of a HIT with one of ``statuses``, by id after ``after``;
        ``Refused("missing")`` if the HIT does not exist."""
        params: dict[str, Any] = {"h": hit_id, "n": n, "after": after}
        params.update({f"s{i}": st for i, st in enumerate(statuses)})
        sql = _ASSIGNMENTS_SQL.format(statuses=", ".join(f":s{i}" for i in range(len(statuses))))
        with self.database.fast_read() as conn:
            if conn.execute(_HIT_EXISTS_SQL, params).fetchone() is None:
                raise Refused("missing")
            rows = conn.execute(sql, params).fetchall()
        return [AssignmentRow(*r) for r in rows]

    def assignment(self, assignment_id: str, now: float
                   ) -> tuple[Assignment, HIT, HITType, Counts]:
        """An assignment, its HIT, the HIT's type and counts; ``Refused("missing")``."""
        with self.database.read() as s:
            a, hit, htype = _assignment_hit_type(s, assignment_id)
            counts = _hit_counts(s, [hit.hit_id], now).get(hit.hit_id, (0, 0, 0))
        return a, hit, htype, counts

    def hit_of_assignment(self, assignment_id: str) -> str | None:
        """The HIT id of an assignment, if it exists."""
        with self.database.read() as s:
            return s.execute(select(Assignment.hit_id)
                             .where(Assignment.assignment_id == assignment_id)).scalar()

    def approve(self, assignment_id: str, *, allowed: tuple[str, ...], cost: CostFn,
                feedback: str | None, now: float) -> None:
        """Approve an assignment whose status is in ``allowed`` and charge
        ``cost(reward, max_assignments)`` (one transaction); ``feedback`` None keeps the
        stored one. ``Refused("missing" | "state" | "funds")``."""
        with self.database.write() as s:
            a, hit, htype = _assignment_hit_type(s, assignment_id)
            if a.status not in allowed:
                raise Refused("state", a.status)
            _charge(s, cost(htype.reward, hit.max_assignments))
            a.status = "Approved"
            a.approval_time = now
            a.rejection_time = None
            if feedback is not None:
                a.requester_feedback = feedback

    def reject(self, assignment_id: str, *, feedback: str, now: float) -> None:
        """Reject a submitted assignment; ``Refused("missing" | "state")``."""
        with self.database.write() as s:
            a, _, _ = _assignment_hit_type(s, assignment_id)
            if a.status != "Submitted":
                raise Refused("state", a.status)
            a.status = "Rejected"
            a.rejection_time = now
            a.requester_feedback = feedback

    def pay_bonus(self, assignment_id: str, worker_id: str, *, amount_cents: int,
                  charge_cents: int, reason: str, token: str | None, now: float) -> None:
        """Record a bonus to the worker of a submitted (or reviewed) assignment and charge
        ``charge_cents`` (one transaction).
        ``Refused("duplicate" | "missing" | "worker" | "state" | "funds")``."""
        try:
            with self.database.write() as s:
                if token is not None and s.execute(
                    select(Bonus.id).where(Bonus.unique_request_token == token)
                ).first():
                    raise Refused("duplicate")
                a, _, _ = _assignment_hit_type(s, assignment_id)
                if a.worker_id != worker_id:
                    raise Refused("worker")
                if a.status not in LIVE_STATUSES:
                    raise Refused("state", a.status)
                _charge(s, charge_cents)
                s.add(Bonus(worker_id=a.worker_id, assignment_id=a.assignment_id,
                            amount_cents=amount_cents, reason=reason,
                            unique_request_token=token, grant_time=now))
        except INTEGRITY_ERRORS:  # the same token sent concurrently
            raise Refused("duplicate") from None

    def bonuses_page(self, *, hit_id: str | None, assignment_id: str | None, after: int,
                     n: int) -> list[Bonus]:
        """Up to ``n`` bonuses paid for one assignment, or for the assignments of one HIT,
        by id after ``after``; ``Refused("missing")`` if the HIT or assignment does not
        exist."""
        with self.database.read() as s:
            stmt = select(Bonus).where(Bonus.id > after).order_by(Bonus.id).limit(n)
            if assignment_id is not None:
                if s.get(Assignment, assignment_id) is None:
                    raise Refused("missing")
                stmt = stmt.where(Bonus.assignment_id == assignment_id)
            if hit_id is not None:
                if s.get(HIT, hit_id) is None:
                    raise Refused("missing")
                stmt = stmt.where(Bonus.assignment_id.in_(
                    select(Assignment.assignment_id).where(Assignment.hit_id == hit_id)))
            return list(s.execute(stmt).scalars().all())

    def set_review_status(self, hit_id: str, status: str) -> None:
        """Set a HIT's HITReviewStatus; ``Refused("missing")``."""
        with self.database.write() as s:
            hit = s.get(HIT, hit_id)
            if hit is None:
                raise Refused("missing")
            hit.review_status = status

    def balance_cents(self) -> int:
        """The account balance in cents."""
        with self.database.read() as s:
            return s.execute(select(Account.balance_cents).where(Account.id == 1)).scalar_one()

    # ------------------------------------------------------------------------------- admin
    def batches(self) -> list[Batch]:
        """HIT types with live HITs, oldest first, with slots and assignments per status."""
        with self.database.read() as s:
            types = s.execute(
                select(HITType, func.count(HIT.hit_id), func.sum(HIT.max_assignments))
                .join(HIT, HIT.hit_type_id == HITType.hit_type_id)
                .where(HIT.disposed == 0)
                .group_by(HITType.hit_type_id)
                .order_by(HITType.creation_time)
            ).all()
            counts = _status_counts(s, HIT.hit_type_id, HIT.disposed == 0)
        return [Batch(t, n, int(slots or 0), counts.get(t.hit_type_id, {}))
                for t, n, slots in types]

    def batch(self, hit_type_id: str
              ) -> tuple[HITType, list[HIT], dict[str, dict[str, int]]] | None:
        """A HIT type, its live HITs (oldest first) and assignments per status per HIT."""
        with self.database.read() as s:
            htype = s.get(HITType, hit_type_id)
            if htype is None:
                return None
            hits = s.execute(select(HIT).where(HIT.hit_type_id == hit_type_id,
                                               HIT.disposed == 0)
                             .order_by(HIT.creation_time, HIT.hit_id)).scalars().all()
            counts = _status_counts(s, HIT.hit_id, HIT.hit_type_id == hit_type_id)
        return htype, list(hits), counts

    def hit_assignments(self, hit_id: str) -> tuple[HIT, list[Assignment]] | None:
        """A HIT and all its assignments in accept order; None if there is no such HIT."""
        with self.database.read() as s:
            hit = s.get(HIT, hit_id)
            if hit is None:
                return None
            rows = s.execute(select(Assignment).where(Assignment.hit_id == hit_id)
                             .order_by(Assignment.accept_time)).scalars().all()
        return hit, list(rows)


def get_storage() -> Storage:
    """The current app's :class:`Storage` (the one way the routes reach the database)."""
    return current_app.extensions["sparse_probe_storage"]


@contextmanager
def _opened(db: Storage | str) -> Iterator[Storage]:
    if not isinstance(db, str):
        yield db
        return
    store = Storage(db)
    try:
        store.database.create_all()
        yield store
    finally:
        store.dispose()


def issue_worker_token(db: Storage | str, worker_id: str) -> str:
    """Create (or rotate) a worker's login token and return it; only its hash is stored.

    Parameters
    ----------
    db : Storage or str
        The server's storage or its database's SQLAlchemy URL.
    worker_id : str
        1-64 characters of ``[A-Za-z0-9_-]``.
    """
    from .validation import check_worker_id

    check_worker_id(worker_id)
    token = secrets.token_urlsafe(32)
    with _opened(db) as store:
        store.set_worker_token(worker_id, token)
    return token


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the task server's tables (idempotent)."""
    store = get_storage()
    store.init(current_app.config["START_BALANCE_CENTS"])
    click.echo(f"initialized {store.url.split('://', 1)[0]} database")
