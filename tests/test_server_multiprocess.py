"""``tasks serve --workers 2``: two gunicorn worker processes on one socket and one SQLite WAL
file (the master is ``LiveServer.pid``)."""

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
from helpers_server import accept, create_batch, load_page, parse_answer_xml, submit

from tasks.server.cli import serve
from tasks.server.live import start_server

pytestmark = pytest.mark.timeout(240)

N_WORKERS = 50
N_HITS = 6
MAX_ASSIGNMENTS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("multi") / "server.sqlite"
    with start_server(db, threads=4, subprocess=True, workers=2) as srv:
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


def _stored(db_file, hit_ids):
    con = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        return con.execute(
            f"SELECT assignment_id, hit_id, worker_id, status, answer FROM assignments "
            f"WHERE hit_id IN ({','.join('?' * len(hit_ids))})", hit_ids).fetchall()
    finally:
        con.close()


def test_two_processes_serve(server):
    children = _children(server.pid)
    assert len(children) == 2
    assert all(c.is_running() for c in children)


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
