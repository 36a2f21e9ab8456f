"""Many simulated workers at once against a live server (waitress threads + SQLite WAL)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers_postgres import BACKENDS, pg_cluster  # noqa: F401
from helpers_server import accept, create_batch, load_page, parse_answer_xml, submit
from sqlalchemy import select

from tasks.server.db import Assignment
from tasks.server.live import start_server

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory, request):
    db = tmp_path_factory.mktemp("conc") / "server.sqlite"
    url = None if request.param == "sqlite" else request.getfixturevalue(
        "pg_cluster").create_database()
    with start_server(None if url else db, database_url=url, threads=16,
                      config={"MIN_DURATION_SECONDS": 1}) as srv:
        yield srv


def _db(server):
    return server.app.extensions["sparse_probe_storage"]


@pytest.mark.slow
def test_fifty_workers_one_batch(server):
    mturk = server.boto3_client()
    _, hit_ids = create_batch(mturk, 10, 3, title="concurrent batch")
    workers = [f"C{i:02d}" for i in range(50)]
    sessions = {w: server.worker_session(w) for w in workers}
    start = threading.Barrier(len(workers))
    acked: dict[str, tuple[str, str, str]] = {}  # assignment -> (worker, hit, answer)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def work(worker):
        s = sessions[worker]
        start.wait()
        for hit_id in hit_ids[::-1] if int(worker[1:]) % 2 else hit_ids:
            status, aid = accept(s, server.url, hit_id)
            with lock:
                statuses[status] += 1
            if aid is None:
                continue
            load_page(s, server.url, aid)
            answer = f"{worker}:{hit_id}"
            r = submit(s, server.url, aid, shared="yes", description=answer)
            with lock:
                statuses[r.status_code] += 1
            if r.status_code == 200:
                with lock:
                    acked[aid] = (worker, hit_id, answer)

    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(work, workers))

    assert not [code for code in statuses if code >= 500]
    assert set(statuses) <= {200, 303, 409}
    with _db(server).database.read() as s:
        rows = s.execute(select(Assignment).where(Assignment.hit_id.in_(hit_ids))).scalars().all()
    per_hit = Counter(a.hit_id for a in rows)
    assert max(per_hit.values()) <= 3  # MaxAssignments never exceeded
    assert sum(per_hit.values()) == 30  # and every slot was taken
    stored = {a.assignment_id: (a.worker_id, a.hit_id,
                                parse_answer_xml(a.answer)["description"])
              for a in rows if a.status == "Submitted"}
    assert stored == acked  # none lost, none doubled, none crossed
    assert len({(w, h) for w, h, _ in acked.values()}) == len(acked)
    listed = {a["AssignmentId"] for h in hit_ids for a in mturk.list_assignments_for_hit(
        HITId=h, MaxResults=100)["Assignments"]}
    assert listed == set(acked)


@pytest.mark.slow
def test_same_worker_racing_accepts_get_one_assignment(server):
    mturk = server.boto3_client()
    _, [hit_id] = create_batch(mturk, 1, 5, title="racing accepts")
    s = server.worker_session("RACER")
    cookies = s.cookies.get_dict()
    barrier = threading.Barrier(12)

    def go(_):
        own = requests.Session()
        own.cookies.update(cookies)
        barrier.wait()
        return accept(own, server.url, hit_id)[0]

    with ThreadPoolExecutor(12) as pool:
        codes = Counter(pool.map(go, range(12)))
    assert codes == Counter({303: 1, 409: 11})


@pytest.mark.slow
def test_double_submit_race_keeps_first_answer(server):
    mturk = server.boto3_client()
    _, [hit_id] = create_batch(mturk, 1, 1, title="double submit")
    s = server.worker_session("DOUBLE")
    _, aid = accept(s, server.url, hit_id)
    cookies = s.cookies.get_dict()
    barrier = threading.Barrier(8)

    def go(i):
        own = requests.Session()
        own.cookies.update(cookies)
        barrier.wait()
        return i, submit(own, server.url, aid, shared="yes", description=f"try {i}").status_code

    with ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(go, range(8)))
    winners = [i for i, code in results.items() if code == 200]
    assert len(winners) == 1
    assert sorted(code for code in results.values() if code != 200) == [409] * 7
    [a] = mturk.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert parse_answer_xml(a["Answer"])["description"] == f"try {winners[0]}"


@pytest.mark.slow
def test_late_submit_refused_with_real_deadline(server):
    mturk = server.boto3_client()
    _, [hit_id] = create_batch(mturk, 1, 1, duration=1, title="tiny duration")
    s = server.worker_session("SLOW")
    status, aid = accept(s, server.url, hit_id)
    assert status == 303
    time.sleep(1.3)
    r = submit(s, server.url, aid, shared="yes")
    assert r.status_code == 410
    assert mturk.list_assignments_for_hit(HITId=hit_id)["NumResults"] == 0
    fast = server.worker_session("FAST")
    status, aid2 = accept(fast, server.url, hit_id)
    assert status == 303
    assert submit(fast, server.url, aid2, shared="no").status_code == 200
    [a] = mturk.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert a["WorkerId"] == "FAST"
