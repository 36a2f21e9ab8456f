"""Tables, engines and transactions of the task server (SQLAlchemy 2); the queries are in
:mod:`tasks.server.storage`, the only module that uses this one.

SQLite is the default (``sqlite:///path``), any SQLAlchemy URL works (PostgreSQL). For SQLite the
connection runs in WAL mode with ``synchronous=NORMAL`` and a ``busy_timeout``; every write is
one short ``BEGIN IMMEDIATE`` transaction, serialized in-process by a lock so that threads queue
on a Python lock instead of SQLite's sleeping busy handler (no "database is locked").
The server (``checkpoint_interval_s``) turns SQLite's automatic WAL checkpoint off on its own
connections and checkpoints from a background thread instead (``PASSIVE``: it never blocks a
writer), so no request pays for copying the WAL back into the database file; that copy and its
fsync landed on whichever submit crossed the 1,000-page mark and set the submit p99.

Times are stored as float epoch seconds (what MTurk's JSON protocol returns); money in cents.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

__all__ = [
    "HIT",
    "INTEGRITY_ERRORS",
    "Account",
    "Assignment",
    "Base",
    "Bonus",
    "Database",
    "FastConn",
    "HITType",
    "HitExtension",
    "QualificationType",
    "SeenSignature",
    "Worker",
    "WorkerMessage",
    "WorkerQualification",
]


class Base(DeclarativeBase):
    """Declarative base of the task server's tables."""


class HITType(Base):
    """A HIT type (``CreateHITType``): the properties shared by a batch of HITs."""

    __tablename__ = "hit_types"
    hit_type_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(Text, default="")
    reward: Mapped[str] = mapped_column(String(32))
    assignment_duration: Mapped[int] = mapped_column(Integer)
    auto_approval_delay: Mapped[int] = mapped_column(Integer)
    qualification_requirements: Mapped[str] = mapped_column(Text, default="[]")
    creation_time: Mapped[float] = mapped_column(Float)


class HIT(Base):
    """One HIT. ``n_taken`` counts live assignments (accepted, submitted, approved, rejected);
    a slot is taken with a conditional ``UPDATE ... WHERE n_taken < max_assignments``."""

    __tablename__ = "hits"
    hit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_type_id: Mapped[str] = mapped_column(ForeignKey("hit_types.hit_type_id"), index=True)
    creation_time: Mapped[float] = mapped_column(Float)
    expiration: Mapped[float] = mapped_column(Float)
    question: Mapped[str] = mapped_column(Text)
    html_content: Mapped[str | None] = mapped_column(Text, nullable=True)
    external_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    frame_height: Mapped[int] = mapped_column(Integer, default=0)
    max_assignments: Mapped[int] = mapped_column(Integer)
    n_taken: Mapped[int] = mapped_column(Integer, default=0)
    requester_annotation: Mapped[str] = mapped_column(Text, default="")
    unique_request_token: Mapped[str | None] = mapped_column(
        String(64), unique=True, nullable=True
    )
    review_status: Mapped[str] = mapped_column(String(32), default="NotReviewed")
    disposed: Mapped[int] = mapped_column(Integer, default=0)
    # Copied from the HIT type at creation (CreateHIT may not share a type with others).
    auto_approval_delay: Mapped[int] = mapped_column(Integer)
    assignment_duration: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_hits_disposed_expiration", "disposed", "expiration"),)


class Assignment(Base):
    """A worker's assignment. Status: Accepted, Submitted, Approved, Rejected, Abandoned."""

    __tablename__ = "assignments"
    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_id: Mapped[str] = mapped_column(ForeignKey("hits.hit_id"))
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    accept_time: Mapped[float] = mapped_column(Float)
    deadline: Mapped[float] = mapped_column(Float)
    submit_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    auto_approval_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    approval_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    rejection_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    requester_feedback: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("hit_id", "worker_id", name="uq_assignment_hit_worker"),
        Index("ix_assignments_hit_aid", "hit_id", "assignment_id"),
        Index("ix_assignments_status_auto", "status", "auto_approval_time"),
    )


class Worker(Base):
    """A worker allowed to log in; only the SHA-256 of the token is stored."""

    __tablename__ = "workers"
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created: Mapped[float] = mapped_column(Float)


class Account(Base):
    """The requester's prepaid balance (one row, id 1), in cents."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    balance_cents: Mapped[int] = mapped_column(Integer)


class Bonus(Base):
    """A bonus paid with ``SendBonus``."""

    __tablename__ = "bonuses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(64))
    assignment_id: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    unique_request_token: Mapped[str | None] = mapped_column(
        String(64), unique=True, nullable=True
    )
    grant_time: Mapped[float] = mapped_column(Float)


class HitExtension(Base):
    """Assignments added to a HIT with ``CreateAdditionalAssignmentsForHIT`` (its
    UniqueRequestToken keeps a retried call from adding them twice)."""

    __tablename__ = "hit_extensions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hit_id: Mapped[str] = mapped_column(ForeignKey("hits.hit_id"), index=True)
    n_added: Mapped[int] = mapped_column(Integer)
    unique_request_token: Mapped[str | None] = mapped_column(
        String(64), unique=True, nullable=True
    )
    time: Mapped[float] = mapped_column(Float)


class QualificationType(Base):
    """A qualification type created by the requester (``CreateQualificationType``)."""

    __tablename__ = "qualification_types"
    qualification_type_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))  # Active | Inactive
    retry_delay: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_granted: Mapped[int] = mapped_column(Integer, default=0)
    auto_granted_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    creation_time: Mapped[float] = mapped_column(Float)


class WorkerQualification(Base):
    """A qualification a worker holds: an integer score, or a locale (the system Locale
    qualification, set by the admin)."""

    __tablename__ = "worker_qualifications"
    qualification_type_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    integer_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    subdivision: Mapped[str | None] = mapped_column(String(8), nullable=True)
    grant_time: Mapped[float] = mapped_column(Float)


class WorkerMessage(Base):
    """A message sent to a worker with ``NotifyWorkers``."""

    __tablename__ = "worker_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    sent_time: Mapped[float] = mapped_column(Float)


class SeenSignature(Base):
    """A verified SigV4 signature of the requester API, kept while it could still be valid
    (the clock-skew window), so a replayed request is refused."""

    __tablename__ = "seen_signatures"
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Float, index=True)


INTEGRITY_ERRORS: tuple[type[Exception], ...] = (IntegrityError, sqlite3.IntegrityError)


class FastConn:
    """Runs fixed SQL text with ``:name`` parameters on hot paths.

    On SQLite it calls the driver directly (``sqlite3`` understands ``:name`` natively), which
    skips SQLAlchemy's per-statement overhead; on other databases it runs the same text through
    SQLAlchemy Core. Results support ``fetchone()``/``fetchall()`` (rows index like tuples) and
    ``rowcount``. Integrity errors are any of :data:`INTEGRITY_ERRORS`.
    """

    _texts: ClassVar[dict[str, Any]] = {}

    def __init__(self, conn: Any, *, raw: bool):
        self._conn = conn
        self._raw = raw

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Execute one statement."""
        if self._raw:
            return self._conn.execute(sql, params or {})
        stmt = self._texts.get(sql)
        if stmt is None:
            stmt = self._texts[sql] = text(sql)
        return self._conn.execute(stmt, params or {})


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use the psycopg (3) driver, the one the
    ``postgres`` extra installs; other URLs are returned as they are."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database:
    """Engines and sessions for one database URL.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:////tmp/server.sqlite`` or ``postgresql://...``.
    busy_timeout_ms : int
        SQLite ``busy_timeout`` (other processes holding the write lock).
    pool_size : int
        Connections kept per engine (about the number of server threads).
    checkpoint_interval_s : float or None
        SQLite only: checkpoint the WAL from a background thread every this many seconds
        instead of inside the commit that crosses SQLite's automatic threshold (long-running
        servers). None keeps SQLite's automatic checkpoints (tools and tests).

    Attributes
    ----------
    raw : bool
        Whether :meth:`fast_read`/:meth:`fast_write` hand out ``sqlite3`` driver connections
        (True exactly for SQLite URLs); otherwise they run the same SQL text through SQLAlchemy
        Core, as on PostgreSQL.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 16,
                 checkpoint_interval_s: float | None = None):
        url = normalize_url(url)
        self.url = url
        self.sqlite = _is_sqlite(url)
        self.raw = self.sqlite
        self._write_lock = _FifoLock() if self.sqlite else None
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._local = threading.local()  # raw mode: one sqlite3 connection per thread
        self._raw_conns: list[sqlite3.Connection] = []
        self._raw_lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        self._autocheckpoint = 1000
        if self.sqlite and checkpoint_interval_s is not None:
            if not checkpoint_interval_s > 0:
                raise ValueError(f"checkpoint_interval_s must be > 0, got {checkpoint_interval_s}")
            self._autocheckpoint = 0
        if self.sqlite:
            self.reader = self._sqlite_engine("BEGIN", busy_timeout_ms, pool_size)
            self.writer = self._sqlite_engine("BEGIN IMMEDIATE", busy_timeout_ms, pool_size)
        else:
            self.reader = self.writer = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        if self._autocheckpoint == 0:
            path = self.writer.url.database
            if path and path != ":memory:":
                self._checkpointer = _Checkpointer(path, float(checkpoint_interval_s or 1.0))
            else:
                self._autocheckpoint = 1000  # nothing to checkpoint from another connection

    def _sqlite_engine(self, begin: str, busy_timeout_ms: int, pool_size: int) -> Engine:
        engine = create_engine(
            self.url,
            connect_args={
                "check_same_thread": False,
                "timeout": busy_timeout_ms / 1000,
                "isolation_level": None,  # we emit BEGIN ourselves (pysqlite quirk)
            },
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    def create_all(self) -> None:
        """Create missing tables (idempotent)."""
        Base.metadata.create_all(self.writer)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (deferred transaction, rolled back at the end)."""
        with Session(self.reader, expire_on_commit=False) as s:
            yield s  # close() ends the transaction; loaded objects stay usable

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One short write transaction, committed on success and rolled back on error."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.writer, expire_on_commit=False) as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise
        finally:
            if lock is not None:
                lock.release()

    def _thread_conn(self, write: bool = False) -> sqlite3.Connection | None:
        """This thread's own autocommit ``sqlite3`` connection (raw mode, plain file URLs), so
        hot paths skip the pool's checkout/checkin; None when the URL needs SQLAlchemy.

        The write connection has ``busy_timeout=0``: :meth:`fast_write` retries
        ``BEGIN IMMEDIATE`` itself with sub-millisecond sleeps, because SQLite's own busy
        handler sleeps 1, 2, 5, 10, ... ms and lets another process's stream of writes starve
        a waiter (tail latency with ``tasks serve --workers N``)."""
        attr = "wconn" if write else "conn"
        conn = getattr(self._local, attr, None)
        if conn is not None:
            return conn
        url = self.writer.url
        if url.query or not url.database or url.database == ":memory:":
            return None
        busy = 0 if write else self._busy_timeout_ms
        conn = sqlite3.connect(url.database, timeout=busy / 1000,
                               isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={busy}",
                       "foreign_keys=ON", f"wal_autocheckpoint={self._autocheckpoint}"):
            conn.execute(f"PRAGMA {pragma}")
        with self._raw_lock:
            self._raw_conns.append(conn)
        setattr(self._local, attr, conn)
        return conn

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` on a ``busy_timeout=0`` connection, retried with short sleeps
        (0.1 ms doubling to 1 ms) until ``busy_timeout_ms`` has passed."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.0001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if conn.in_transaction or ("locked" not in str(exc) and "busy" not in str(exc)):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.001)

    @contextmanager
    def fast_read(self) -> Iterator[FastConn]:
        """A connection for single-statement reads on hot paths (see :class:`FastConn`)."""
        if not self.raw:
            with self.reader.connect() as conn:
                yield FastConn(conn, raw=False)
            return
        own = self._thread_conn()
        if own is not None:
            yield FastConn(own, raw=True)
            return
        fairy = self.reader.raw_connection()
        try:
            yield FastConn(fairy.driver_connection, raw=True)
        finally:
            fairy.close()

    @contextmanager
    def fast_write(self) -> Iterator[FastConn]:
        """One short write transaction on hot paths (SQLite: ``BEGIN IMMEDIATE`` on the raw
        connection); committed on success, rolled back on error."""
        lock = self._write_lock
        if not self.raw:
            if lock is not None:
                lock.acquire()
            try:
                with self.writer.begin() as conn:
                    yield FastConn(conn, raw=False)
            finally:
                if lock is not None:
                    lock.release()
            return
        assert lock is not None
        with lock:
            own = self._thread_conn(write=True)
            fairy = self.writer.raw_connection() if own is None else None
            try:
                conn = own if fairy is None else fairy.driver_connection
                if fairy is None:
                    self._begin_immediate(conn)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield FastConn(conn, raw=True)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if fairy is not None:
                    fairy.close()

    def dispose(self) -> None:
        """Close all pooled connections (and the hot paths' per-thread ones); stop the
        checkpointer after a last checkpoint."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._raw_lock:
            conns, self._raw_conns = self._raw_conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()


class _Checkpointer:
    """A daemon thread that runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval_s`` on its
    own connection. PASSIVE copies what it can without waiting for readers or blocking writers;
    a process killed meanwhile loses nothing (the WAL is replayed on the next open)."""

    def __init__(self, path: str, interval_s: float):
        self._path = path
        self._interval = float(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=10, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            while not self._stop.wait(self._interval):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        # busy or closing: the next round (or SQLite's next open) checkpoints
        with suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class _FifoLock:
    """A lock handed to waiters in arrival order. ``threading.Lock`` is not fair: the thread
    that releases it usually takes it again before a woken waiter runs, so under load a few
    writers wait many turns (the submit p99). Same ``acquire``/``release``/``with`` use."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        gate.acquire()  # released by release(): ownership is handed over, _held stays True
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
