"""kill -9 of a serving task server loses, duplicates and half-writes nothing.

The server runs as a real child process (``tasks serve``); workers accept and submit over HTTP
from threads; once some submits have been acknowledged the process is killed with SIGKILL by
PID, mid-stream. The database (a SQLite file, or PostgreSQL) must then hold every acknowledged assignment and answer exactly
as sent, no answer attached to the wrong assignment, no HIT over MaxAssignments, and slot
counts that match the assignments holding slots; a fresh server on the same file serves the
rest of the batch.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import accept, create_batch, load_page, parse_answer_xml, submit
from sqlalchemy import create_engine, text

from tasks.server.live import start_server

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # kill -9 of real servers

N_HITS = 8
MAX_ASSIGNMENTS = 3
N_WORKERS = 12
ACKS_BEFORE_KILL = 10


def _answer(worker_id: str, hit_id: str) -> dict[str, str]:
    return {"shared": "yes", "description": f"{worker_id}:{hit_id}"}


def _rows(db):
    """Assignments and slot counts, read straight from the database (a SQLite file, read
    only and integrity-checked, or a PostgreSQL URL)."""
    if not isinstance(db, str):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assignments = con.execute(
                "SELECT assignment_id, hit_id, worker_id, status, answer FROM assignments"
            ).fetchall()
            taken = dict(con.execute("SELECT hit_id, n_taken FROM hits").fetchall())
        finally:
            con.close()
        return assignments, taken
    engine = create_engine(db)
    try:
        with engine.connect() as con:
            assignments = [tuple(r) for r in con.execute(text(
                "SELECT assignment_id, hit_id, worker_id, status, answer FROM assignments"))]
            taken = {h: n for h, n in con.execute(text("SELECT hit_id, n_taken FROM hits"))}
    finally:
        engine.dispose()
    return assignments, taken


def _check_consistent(db_file, hit_ids):
    """Rows as a crash may leave them: whole transactions only."""
    rows, taken = _rows(db_file)
    holding = Counter(h for _, h, _, status, _ in rows if status != "Abandoned")
    for hit_id in hit_ids:
        assert taken[hit_id] == holding[hit_id] <= MAX_ASSIGNMENTS
    for _, hit_id, worker_id, status, answer in rows:
        if status == "Accepted":
            assert answer is None
        else:
            assert status == "Submitted"
            assert parse_answer_xml(answer) == _answer(worker_id, hit_id)
    assert len({(h, w) for _, h, w, _, _ in rows}) == len(rows)
    return rows


def _work_until_killed(srv, hit_ids, killed, accepted, acked, lock, enough):
    def work(worker_id):
        try:
            s = srv.worker_session(worker_id)
            order = hit_ids if int(worker_id[1:]) % 2 else hit_ids[::-1]
            for hit_id in order:
                if killed.is_set():
                    return
                _, aid = accept(s, srv.url, hit_id)
                if aid is None:
                    continue
                with lock:
                    accepted[aid] = (worker_id, hit_id)
                load_page(s, srv.url, aid)
                if submit(s, srv.url, aid, **_answer(worker_id, hit_id)).status_code == 200:
                    with lock:
                        acked[aid] = (worker_id, hit_id)
                        if len(acked) >= ACKS_BEFORE_KILL:
                            enough.set()
        except requests.RequestException:
            assert killed.is_set()  # only the kill cuts a request off

    return work


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_mid_stream_keeps_every_acknowledged_answer(tmp_path, request, backend):
    db_file = tmp_path / "server.sqlite"
    if backend == "postgres":
        db_file = request.getfixturevalue("pg_cluster").create_database()
    where = {"database_url": db_file} if backend == "postgres" else {"db_path": db_file}
    killed, enough, lock = threading.Event(), threading.Event(), threading.Lock()
    accepted: dict[str, tuple[str, str]] = {}
    acked: dict[str, tuple[str, str]] = {}
    with start_server(**where, threads=4, subprocess=True) as srv:
        mturk = srv.boto3_client()
        _, hit_ids = create_batch(mturk, N_HITS, MAX_ASSIGNMENTS, title="crash batch")
        work = _work_until_killed(srv, hit_ids, killed, accepted, acked, lock, enough)
        with ThreadPoolExecutor(N_WORKERS) as pool:
            futures = [pool.submit(work, f"K{i:02d}") for i in range(N_WORKERS)]
            assert enough.wait(timeout=120), "workers never got submits acknowledged"
            killed.set()
            os.kill(srv.pid, signal.SIGKILL)
            for f in futures:
                f.result()

    rows = _check_consistent(db_file, hit_ids)
    stored = {aid: (w, h, status) for aid, h, w, status, _ in rows}
    for aid, (worker_id, hit_id) in accepted.items():  # every acknowledged accept is kept
        assert stored[aid][:2] == (worker_id, hit_id)
    for aid in acked:  # and every acknowledged submit
        assert stored[aid][2] == "Submitted"

    # A fresh server on the same file: the open assignments are submitted by their workers,
    # a second submit is refused, and new workers take the remaining slots.
    with start_server(**where, threads=4, subprocess=True) as srv:
        mturk = srv.boto3_client()
        sessions: dict[str, requests.Session] = {}

        def session(worker_id):
            if worker_id not in sessions:
                sessions[worker_id] = srv.worker_session(worker_id)
            return sessions[worker_id]

        for aid, (worker_id, hit_id, status) in stored.items():
            r = submit(session(worker_id), srv.url, aid, **_answer(worker_id, hit_id))
            assert r.status_code == (200 if status == "Accepted" else 409)
        for i in range(N_HITS * MAX_ASSIGNMENTS):
            worker_id = f"R{i:02d}"
            for hit_id in hit_ids:
                _, aid = accept(session(worker_id), srv.url, hit_id)
                if aid is not None:
                    r = submit(session(worker_id), srv.url, aid, **_answer(worker_id, hit_id))
                    assert r.status_code == 200
                    break
        listed = {h: mturk.list_assignments_for_hit(HITId=h, MaxResults=100)["Assignments"]
                  for h in hit_ids}

    rows = _check_consistent(db_file, hit_ids)
    assert all(status == "Submitted" for _, _, _, status, _ in rows)
    assert Counter(h for _, h, _, _, _ in rows) == {h: MAX_ASSIGNMENTS for h in hit_ids}
    for hit_id, assignments in listed.items():
        assert len(assignments) == MAX_ASSIGNMENTS
        for a in assignments:
            assert parse_answer_xml(a["Answer"]) == _answer(a["WorkerId"], hit_id)
    assert set(acked) <= {a["AssignmentId"] for al in listed.values() for a in al}
