"""The publishing ledger ``tasks/ledger.sqlite``: what was published where, seen, and reviewed.

Every side effect on a requester endpoint is written down *before* the call (state
``pending``, with the deterministic ``UniqueRequestToken`` it will use) and *after* it (state
``created``/``done``, with the id the service returned). A publisher killed at any point is
re-run safely: pending rows are retried with the same token, so the service itself refuses a
duplicate, and created rows are skipped. The same holds for approvals, rejections and bonuses.

Endpoints are kept apart by an *endpoint key* (``"sandbox"``, ``"production"``, or
``"local:<url>"``), so one run can be published to the sandbox and then to production.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["LEDGER_NAME", "HitRecord", "Ledger", "LedgerError", "request_token"]

LEDGER_NAME = "ledger.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hit_types (
    endpoint TEXT NOT NULL, signature TEXT NOT NULL, hit_type_id TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (endpoint, signature));
CREATE TABLE IF NOT EXISTS hits (
    endpoint TEXT NOT NULL, hit_key TEXT NOT NULL, batch_id TEXT NOT NULL,
    token TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'created')),
    hit_id TEXT, hit_type_id TEXT, reward TEXT NOT NULL, max_assignments INTEGER NOT NULL,
    cost_cents INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, hit_key));
CREATE TABLE IF NOT EXISTS assignments (
    endpoint TEXT NOT NULL, assignment_id TEXT NOT NULL, hit_id TEXT NOT NULL,
    hit_key TEXT, worker_id TEXT, status TEXT, seen_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, assignment_id));
CREATE TABLE IF NOT EXISTS actions (
    endpoint TEXT NOT NULL, assignment_id TEXT NOT NULL, action TEXT NOT NULL
        CHECK (action IN ('approve', 'reject', 'bonus')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    worker_id TEXT, amount TEXT, cost_cents INTEGER NOT NULL DEFAULT 0, feedback TEXT,
    token TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, assignment_id, action));
"""
#: Added after schema 1 was released; created on open, so older ledgers gain it.
_EXTENSIONS = """
CREATE TABLE IF NOT EXISTS extensions (
    endpoint TEXT NOT NULL, hit_key TEXT NOT NULL, round INTEGER NOT NULL,
    token TEXT NOT NULL, n_added INTEGER NOT NULL, cost_cents INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done')), updated_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, hit_key, round));
"""
_TABLES = {"meta", "hit_types", "hits", "assignments", "actions"}


class LedgerError(RuntimeError):
    """The ledger file is not a ledger this code can use."""


def request_token(*parts: str) -> str:
    """Deterministic ``UniqueRequestToken`` (64 hex characters, MTurk allows 1-64)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class HitRecord:
    """One row of the ``hits`` table."""

    endpoint: str
    hit_key: str
    batch_id: str
    token: str
    state: str
    hit_id: str | None
    hit_type_id: str | None
    reward: str
    max_assignments: int
    cost_cents: int
    completed: bool


class Ledger:
    """SQLite ledger of one tasks directory.

    Parameters
    ----------
    path : path-like
        The ``ledger.sqlite`` file (created when missing).

    Raises
    ------
    LedgerError
        If the file exists but is not an SQLite database with the ledger's tables.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            if existed:
                tables = {r[0] for r in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
                if not tables >= _TABLES:
                    raise LedgerError(
                        f"{self.path}: not a publishing ledger (missing tables "
                        f"{sorted(_TABLES - tables)})")
                version = self._db.execute(
                    "SELECT value FROM meta WHERE key='schema'").fetchone()
                if version is None or version[0] != SCHEMA_VERSION:
                    raise LedgerError(f"{self.path}: ledger schema {version} is not "
                                      f"{SCHEMA_VERSION}")
            else:
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                 (SCHEMA_VERSION,))
            self._db.executescript(_EXTENSIONS)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a valid ledger database ({exc})") from exc

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta_default(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is there; return the stored value."""
        self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        return self.get_meta(key) or value

    # ------------------------------------------------------------------ HIT types
    def hit_type(self, endpoint: str, signature: str) -> str | None:
        """The HIT type id created for these properties at ``endpoint``, if any."""
        row = self._db.execute(
            "SELECT hit_type_id FROM hit_types WHERE endpoint=? AND signature=?",
            (endpoint, signature)).fetchone()
        return None if row is None else row[0]

    def record_hit_type(self, endpoint: str, signature: str, hit_type_id: str) -> None:
        """Remember a created HIT type."""
        self._db.execute("INSERT OR REPLACE INTO hit_types VALUES (?, ?, ?, ?)",
                         (endpoint, signature, hit_type_id, _now()))

    # ------------------------------------------------------------------ HITs
    def hits(self, endpoint: str | None = None) -> list[HitRecord]:
        """All HIT rows (of one endpoint), in insertion order."""
        sql = ("SELECT endpoint, hit_key, batch_id, token, state, hit_id, hit_type_id, reward, "
               "max_assignments, cost_cents, completed FROM hits")
        args: tuple[str, ...] = ()
        if endpoint is not None:
            sql += " WHERE endpoint=?"
            args = (endpoint,)
        rows = self._db.execute(sql + " ORDER BY rowid", args).fetchall()
        return [HitRecord(*r[:10], bool(r[10])) for r in rows]

    def hit(self, endpoint: str, hit_key: str) -> HitRecord | None:
        """The row of one HIT key at one endpoint."""
        for rec in self.hits(endpoint):
            if rec.hit_key == hit_key:
                return rec
        return None

    def spent_cents(self, endpoint: str) -> int:
        """Committed cost at ``endpoint`` in cents: HITs (pending or created), added
        assignments and bonuses."""
        hits = self._db.execute("SELECT COALESCE(SUM(cost_cents), 0) FROM hits WHERE endpoint=?",
                                (endpoint,)).fetchone()[0]
        bonus = self._db.execute(
            "SELECT COALESCE(SUM(cost_cents), 0) FROM actions WHERE endpoint=? AND action='bonus'",
            (endpoint,)).fetchone()[0]
        extra = self._db.execute(
            "SELECT COALESCE(SUM(cost_cents), 0) FROM extensions WHERE endpoint=?",
            (endpoint,)).fetchone()[0]
        return int(hits) + int(bonus) + int(extra)

    def mark_pending(self, endpoint: str, hit_key: str, *, batch_id: str, token: str,
                     reward: str, max_assignments: int, cost_cents: int) -> None:
        """Write a HIT down before asking the service to create it."""
        now = _now()
        self._db.execute(
            "INSERT INTO hits (endpoint, hit_key, batch_id, token, state, reward, "
            "max_assignments, cost_cents, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
            (endpoint, hit_key, batch_id, token, reward, max_assignments, cost_cents, now, now))

    def mark_created(self, endpoint: str, hit_key: str, *, hit_id: str,
                     hit_type_id: str | None) -> None:
        """Record the HIT id the service returned."""
        self._db.execute(
            "UPDATE hits SET state='created', hit_id=?, hit_type_id=?, updated_at=? "
            "WHERE endpoint=? AND hit_key=?", (hit_id, hit_type_id, _now(), endpoint, hit_key))

    def mark_completed(self, endpoint: str, hit_id: str) -> None:
        """All of a HIT's assignments have been collected."""
        self._db.execute("UPDATE hits SET completed=1, updated_at=? WHERE endpoint=? AND hit_id=?",
                         (_now(), endpoint, hit_id))

    # ------------------------------------------------------------------ extensions
    def extensions(self, endpoint: str, hit_key: str) -> list[tuple[int, str, int, str]]:
        """``(round, token, n_added, state)`` of every extension of a HIT, by round."""
        return list(self._db.execute(
            "SELECT round, token, n_added, state FROM extensions WHERE endpoint=? AND hit_key=? "
            "ORDER BY round", (endpoint, hit_key)))

    def mark_extension_pending(self, endpoint: str, hit_key: str, *, round_no: int, token: str,
                               n_added: int, cost_cents: int) -> None:
        """Write an extension down before asking the service for it."""
        self._db.execute(
            "INSERT INTO extensions VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
            (endpoint, hit_key, round_no, token, n_added, cost_cents, _now()))

    def mark_extension_done(self, endpoint: str, hit_key: str, round_no: int) -> None:
        """The service added the assignments: the HIT's MaxAssignments grows by them and it
        is no longer complete (one transaction)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT n_added FROM extensions WHERE endpoint=? AND hit_key=? AND round=? "
                "AND state='pending'", (endpoint, hit_key, round_no)).fetchone()
            if row is None:  # already done (or never written down): nothing to add
                return
            (n_added,) = row
            db.execute("UPDATE extensions SET state='done', updated_at=? WHERE endpoint=? AND "
                       "hit_key=? AND round=?", (_now(), endpoint, hit_key, round_no))
            db.execute("UPDATE hits SET max_assignments=max_assignments+?, completed=0, "
                       "updated_at=? WHERE endpoint=? AND hit_key=?",
                       (n_added, _now(), endpoint, hit_key))

    def drop_extension(self, endpoint: str, hit_key: str, round_no: int) -> None:
        """Forget a pending extension the service refused (it added nothing)."""
        self._db.execute("DELETE FROM extensions WHERE endpoint=? AND hit_key=? AND round=? "
                         "AND state='pending'", (endpoint, hit_key, round_no))

    def n_collected(self, endpoint: str, hit_id: str) -> int:
        """Assignments of a HIT already collected."""
        return int(self._db.execute(
            "SELECT COUNT(*) FROM assignments WHERE endpoint=? AND hit_id=?",
            (endpoint, hit_id)).fetchone()[0])

    # ------------------------------------------------------------------ assignments
    def seen_assignments(self, endpoint: str) -> dict[str, str]:
        """``{assignment_id: hit_id}`` of every assignment already collected."""
        return dict(self._db.execute(
            "SELECT assignment_id, hit_id FROM assignments WHERE endpoint=?", (endpoint,)))

    def record_assignment(self, endpoint: str, assignment_id: str, *, hit_id: str,
                          hit_key: str | None, worker_id: str | None, status: str | None) -> None:
        """Remember a collected assignment."""
        self._db.execute(
            "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?)",
            (endpoint, assignment_id, hit_id, hit_key, worker_id, status, _now()))

    # ------------------------------------------------------------------ review actions
    def action_state(self, endpoint: str, assignment_id: str, action: str) -> str | None:
        """``'pending'``, ``'done'`` or ``None`` for an approve/reject/bonus."""
        row = self._db.execute(
            "SELECT state FROM actions WHERE endpoint=? AND assignment_id=? AND action=?",
            (endpoint, assignment_id, action)).fetchone()
        return None if row is None else row[0]

    def decided(self, endpoint: str, assignment_id: str) -> str | None:
        """The approve/reject decision already taken (pending or done) for an assignment."""
        row = self._db.execute(
            "SELECT action FROM actions WHERE endpoint=? AND assignment_id=? "
            "AND action IN ('approve', 'reject')", (endpoint, assignment_id)).fetchone()
        return None if row is None else row[0]

    def mark_action(self, endpoint: str, assignment_id: str, action: str, state: str, *,
                    worker_id: str | None = None, amount: str | None = None,
                    cost_cents: int = 0, feedback: str | None = None,
                    token: str | None = None) -> None:
        """Write an action down (``pending`` before the call, ``done`` after it)."""
        self._db.execute(
            "INSERT INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (endpoint, assignment_id, action) DO UPDATE SET state=excluded.state, "
            "updated_at=excluded.updated_at",
            (endpoint, assignment_id, action, state, worker_id, amount, cost_cents, feedback,
             token, _now()))
