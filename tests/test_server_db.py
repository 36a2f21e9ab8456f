"""The SQLite engine room of the task server: the fair write lock and the background WAL
checkpointer (real SQLite files, real threads)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tasks.server.db import Database, _FifoLock

pytestmark = pytest.mark.timeout(60)


def test_fifo_lock_hands_over_in_arrival_order():
    lock = _FifoLock()
    lock.acquire()
    order: list[int] = []
    started: list[threading.Thread] = []

    def waiter(i: int) -> None:
        with lock:
            order.append(i)

    for i in range(6):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        started.append(t)
        # wait until this waiter is queued before starting the next one
        deadline = time.monotonic() + 5
        while len(lock._waiters) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(lock._waiters) == i + 1
    lock.release()
    for t in started:
        t.join(5)
    assert order == list(range(6))
    # free again: a fresh acquire succeeds at once
    assert lock.acquire() is True
    lock.release()
    assert lock._held is False


def test_fifo_lock_is_exclusive_under_contention():
    lock = _FifoLock()
    inside = 0
    worst = 0
    count = 0

    def work() -> None:
        nonlocal inside, worst, count
        for _ in range(200):
            with lock:
                inside += 1
                worst = max(worst, inside)
                count += 1
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert worst == 1
    assert count == 8 * 200


def _write_rows(db: Database, n: int) -> None:
    with db.fast_write() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
    for i in range(n):
        with db.fast_write() as conn:
            conn.execute("INSERT INTO t (x) VALUES (?)", ("x" * 2000 + str(i),))


def test_server_connections_leave_checkpoints_to_the_background_thread(tmp_path):
    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite:///{path}", checkpoint_interval_s=3600)
    try:
        with db.fast_write() as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        with db.reader.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        _write_rows(db, 1500)  # > 1000 pages: SQLite would have checkpointed inside a commit
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1000 * 4096
    finally:
        db.dispose()  # a last checkpoint, then the thread stops
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1500
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, log) == (0, done)  # everything already copied back
    finally:
        conn.close()


def test_background_checkpointer_copies_the_wal_while_serving(tmp_path):
    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite:///{path}", checkpoint_interval_s=0.05)
    try:
        _write_rows(db, 300)  # about 600 kB, all in the WAL at first
        # only a checkpoint copies pages into the database file itself
        deadline = time.monotonic() + 10
        while path.stat().st_size < 300 * 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 300 * 2000
        assert db._checkpointer is not None and db._checkpointer._thread.is_alive()
    finally:
        db.dispose()
    assert db._checkpointer is None


def test_tools_keep_sqlites_automatic_checkpoints(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert db._checkpointer is None
        with db.fast_write() as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        db.dispose()


def test_checkpoint_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_interval_s"):
        Database(f"sqlite:///{tmp_path / 'db.sqlite'}", checkpoint_interval_s=0)
