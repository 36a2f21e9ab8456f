"""Several server processes on one database (a SQLite WAL file or PostgreSQL): ``tasks serve
--workers 2`` (two gunicorn worker processes on one socket; the master is ``LiveServer.pid``),
and two ``tasks serve`` processes on different ports."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from click.testing import CliRunner
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import accept, create_batch, load_page, parse_answer_xml, submit
from sqlalchemy import bindparam, create_engine, text

from tasks.server.cli import serve
from tasks.server.live import start_server

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # real server processes

N_WORKERS = 50
N_HITS = 6
MAX_ASSIGNMENTS = 4


def _database(request, tmp_path, backend):
    """``(start_server arguments, what _stored reads)`` for a fresh database."""
    if backend == "sqlite":
        db = tmp_path / "server.sqlite"
        return {"db_path": db}, db
    url = request.getfixturevalue("pg_cluster").create_database()
    return {"database_url": url}, url


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory, request):
    where, db = _database(request, tmp_path_factory.mktemp("multi"), request.param)
    with start_server(**where, threads=4, subprocess=True, workers=2) as srv:
        srv.db_file = db
        yield srv


def _children(pid, n=2):
    """The server's worker processes once ``n`` of them run (gunicorn forks after it binds)."""
    proc = psutil.Process(pid)
    for _ in range(300):
        children = proc.children()
        if len(children) >= n:
            return children
        time.sleep(0.1)
    return proc.children()


def _stored(db, hit_ids):
    """Assignments of ``hit_ids`` read straight from the database (file or URL)."""
    if not isinstance(db, str):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute(
                f"SELECT assignment_id, hit_id, worker_id, status, answer FROM assignments "
                f"WHERE hit_id IN ({','.join('?' * len(hit_ids))})", hit_ids).fetchall()
        finally:
            con.close()
    engine = create_engine(db)
    try:
        with engine.connect() as con:
            rows = con.execute(text(
                "SELECT assignment_id, hit_id, worker_id, status, answer FROM assignments "
                "WHERE hit_id IN :ids").bindparams(bindparam("ids", expanding=True)),
                {"ids": list(hit_ids)})
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_two_processes_serve(server):
    children = _children(server.pid)
    assert len(children) == 2
    assert all(c.is_running() for c in children)


@pytest.mark.slow
def test_fifty_workers_across_processes(server):
    mturk = server.boto3_client()  # unmodified boto3, SigV4 checked by whichever process
    _, hit_ids = create_batch(mturk, N_HITS, MAX_ASSIGNMENTS, title="multi-process batch")
    workers = [f"M{i:02d}" for i in range(N_WORKERS)]
    tokens = {w: server.issue_token(w) for w in workers}
    start = threading.Barrier(N_WORKERS)
    acked: dict[str, tuple[str, str, str]] = {}  # assignment -> (worker, hit, answer)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def work(worker: str) -> None:
        s = requests.Session()
        if int(worker[1:]) % 2:
            # A new connection per request: the kernel hands them to either process, so the
            # session cookie signed by one is verified by the other.
            s.headers["Connection"] = "close"
        r = s.post(f"{server.url}/worker/login", data={"worker_id": worker,
                                                       "token": tokens[worker]},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 303
        start.wait()
        for hit_id in hit_ids[::-1] if int(worker[1:]) % 3 else hit_ids:
            status, aid = accept(s, server.url, hit_id)
            with lock:
                statuses[status] += 1
            if aid is None:
                continue
            assert aid in load_page(s, server.url, aid)
            answer = f"{worker}:{hit_id}"
            r = submit(s, server.url, aid, shared="yes", description=answer)
            with lock:
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    acked[aid] = (worker, hit_id, answer)

    with ThreadPoolExecutor(N_WORKERS) as pool:
        list(pool.map(work, workers))

    assert set(statuses) <= {200, 303, 409}, statuses
    rows = _stored(server.db_file, hit_ids)
    per_hit = Counter(r[1] for r in rows)
    assert max(per_hit.values()) <= MAX_ASSIGNMENTS  # never over MaxAssignments
    assert sum(per_hit.values()) == N_HITS * MAX_ASSIGNMENTS  # and every slot was taken
    stored = {aid: (w, h, parse_answer_xml(xml)["description"])
              for aid, h, w, status, xml in rows if status == "Submitted"}
    assert stored == acked  # acknowledged submits == stored answers: none lost or doubled
    assert statuses[200] == len(acked)
    listed = {a["AssignmentId"] for h in hit_ids for a in mturk.list_assignments_for_hit(
        HITId=h, MaxResults=100)["Assignments"]}
    assert listed == set(acked)

    # A second POST to a completed assignment is refused on every process, never overwritten.
    aid, (worker, hit_id, answer) = next(iter(acked.items()))
    s = requests.Session()
    s.post(f"{server.url}/worker/login", data={"worker_id": worker, "token": tokens[worker]},
           allow_redirects=False, timeout=30)
    for _ in range(4):
        s.headers["Connection"] = "close"
        r = submit(s, server.url, aid, shared="no", description="overwrite")
        assert r.status_code == 409
    [a] = [a for a in mturk.list_assignments_for_hit(HITId=hit_id)["Assignments"]
           if a["AssignmentId"] == aid]
    assert parse_answer_xml(a["Answer"])["description"] == answer


@pytest.mark.slow
def test_stop_ends_every_process(tmp_path):
    srv = start_server(tmp_path / "s.sqlite", threads=2, subprocess=True, workers=2)
    children = _children(srv.pid)
    assert len(children) == 2
    srv.stop()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_workers_option_checked(tmp_path):
    result = CliRunner().invoke(serve, ["--db", str(tmp_path / "x.sqlite"), "--workers", "0"])
    assert result.exit_code != 0
    assert "--workers" in result.output
    with pytest.raises(ValueError, match="subprocess=True"):
        start_server(tmp_path / "y.sqlite", workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_serve_processes_on_one_database(tmp_path, request, backend):
    """Two ``tasks serve`` processes on different ports share one database: workers on either
    take and submit the same batch; no slot is over-taken, no answer lost or doubled."""
    where, db = _database(request, tmp_path, backend)
    with start_server(**where, threads=4, subprocess=True) as a, \
            start_server(**where, threads=4, subprocess=True) as b:
        assert a.url != b.url
        _, hit_ids = create_batch(a.boto3_client(), 3, 3, title="two servers")
        acked: dict[str, tuple[str, str]] = {}
        lock = threading.Lock()
        n = 16
        start = threading.Barrier(n)

        def work(i: int) -> None:
            srv = (a, b)[i % 2]
            worker = f"TS{i:02d}"
            s = srv.worker_session(worker)
            start.wait()
            for hit_id in hit_ids if i % 3 else hit_ids[::-1]:
                status, aid = accept(s, srv.url, hit_id)
                assert status in (303, 409), status
                if aid is None:
                    continue
                r = submit(s, srv.url, aid, shared="yes", description=f"{worker}:{hit_id}")
                assert r.status_code == 200
                with lock:
                    acked[aid] = (worker, hit_id)

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(work, range(n)))
        listed = {x["AssignmentId"]: (x["WorkerId"], h) for h in hit_ids
                  for x in b.boto3_client().list_assignments_for_hit(
                      HITId=h, MaxResults=100)["Assignments"]}
    rows = _stored(db, hit_ids)
    assert Counter(r[1] for r in rows) == {h: 3 for h in hit_ids}  # full, never over
    stored = {aid: (w, h) for aid, h, w, status, xml in rows
              if status == "Submitted" and parse_answer_xml(xml)["description"] == f"{w}:{h}"}
    assert stored == acked == listed
