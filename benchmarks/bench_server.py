"""Throughput and latency of the task server, run as ``sparse-probe tasks serve`` runs it.

The server is a subprocess (waitress, SQLite in WAL mode or PostgreSQL) on loopback. Three measurements:

1. Full worker cycles at 8 and 32 concurrent workers, no think time: accept a HIT
   (``POST /worker/hits/<id>/accept`` -> 303), load its page (the iframe's
   ``/worker/assignments/<id>/page?...``), submit the form (``POST /mturk/externalSubmit``).
   Reports cycles/s, p50/p99 per request kind, refusals/errors, then checks in the database that
   the stored answers are exactly the acknowledged submits (none lost, none doubled).
2. ``externalSubmit`` alone at concurrency 32 (assignments pre-accepted by direct inserts into
   the database during setup; only the submits are timed): submits/s and p99.
3. ``ListAssignmentsForHIT`` over 10,000 assignments: time for boto3's paginator to page through
   all of them (MaxResults 100).

Ratios are printed against the Turkle anchor (20.6 full cycles/s at concurrency 32, submit p99
515 ms). Targets: >= 200 cycles/s, >= 300 submits/s with p99 < 100 ms at concurrency 32.

Usage: ``python benchmarks/bench_server.py [--quick] [--duration S] [--workers N] [--json OUT]
[--database-url postgresql://...]``. With ``--database-url`` (an empty, throwaway database) every
measurement runs on SQLite and then on PostgreSQL, and the two are printed side by side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import secrets
import shutil
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.question_xml import html_question
from tasks.server.live import LiveServer, start_server
from tasks.server.worker import ANSWER_NS, answers_xml

log = logging.getLogger("bench_server")

TURKLE_CYCLES_PER_S = 20.6
TURKLE_SUBMIT_P99_MS = 515.0

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bench HIT</title></head><body>
<h1>Is there a shared pattern?</h1>""" + "<p>" + "Some instructions for the worker. " * 60 + """</p>
<img src="../assets/example.png" alt="example">
<form method="post" action="/mturk/externalSubmit">
<input type="hidden" name="assignmentId" value=""><input type="hidden" name="hit_key" value="k">
<label><input type="radio" name="shared" value="yes">yes</label>
<label><input type="radio" name="shared" value="no">no</label>
<textarea name="description"></textarea><button type="submit">Submit</button></form>
<script>const p = new URLSearchParams(location.search);
document.querySelector('input[name=assignmentId]').value = p.get('assignmentId');</script>
</body></html>"""


class Client:
    """A minimal keep-alive HTTP client (one per simulated worker thread)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, dict, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if "set-cookie" in hdrs:
            self.cookie = hdrs["set-cookie"].split(";", 1)[0]
        return resp.status, hdrs, data

    def login(self, worker_id: str, token: str) -> None:
        status, _, _ = self.request("POST", "/worker/login",
                                    urlencode({"worker_id": worker_id, "token": token}))
        if status != 303:
            raise RuntimeError(f"login {worker_id}: HTTP {status}")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0-1) in milliseconds of a list of seconds."""
    if not values:
        return float("nan")
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def issue_tokens(srv: LiveServer, worker_ids: list[str]) -> dict[str, str]:
    return {w: srv.issue_token(w) for w in worker_ids}


def _server_cpu(srv: LiveServer) -> float:
    """CPU seconds (user + system) used so far by the server process and its server children
    (``--workers`` > 1)."""
    import psutil

    proc = psutil.Process(srv.pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def run_cycles(srv: LiveServer, hit_ids: list[str], concurrency: int, duration: float,
               tag: str) -> dict:
    """Full accept -> page -> submit cycles for ``duration`` seconds."""
    origin = srv.url
    lat: dict[str, list[float]] = defaultdict(list)
    acked: dict[str, str] = {}
    refusals: dict[str, int] = defaultdict(int)
    errors = [0]
    lock = threading.Lock()
    stop_at = [0.0]
    ready = threading.Barrier(concurrency + 1)
    n_hits = len(hit_ids)

    def worker(i: int) -> None:
        client = Client(origin)
        generation = 0
        local_lat: dict[str, list[float]] = defaultdict(list)
        local_acked: dict[str, str] = {}
        local_ref: dict[str, int] = defaultdict(int)

        def new_identity() -> str:
            nonlocal generation
            wid = f"B{tag}T{i:02d}G{generation:03d}"
            generation += 1
            client.cookie = ""
            client.login(wid, srv.issue_token(wid))
            return wid

        wid = new_identity()
        ready.wait()
        k = (i * 7) % n_hits
        done_here = 0
        while time.perf_counter() < stop_at[0]:
            if done_here == n_hits:  # this identity has taken every HIT once
                wid = new_identity()
                done_here = 0
            hit_id = hit_ids[k % n_hits]
            k += 1
            done_here += 1
            try:
                t0 = time.perf_counter()
                status, hdrs, _ = client.request("POST", f"/worker/hits/{hit_id}/accept")
                t1 = time.perf_counter()
                local_lat["accept"].append(t1 - t0)
                if status != 303:
                    local_ref[f"accept {status}"] += 1
                    continue
                aid = hdrs["location"].rstrip("/").rsplit("/", 1)[1]
                q = urlencode({"assignmentId": aid, "hitId": hit_id, "workerId": wid,
                               "turkSubmitTo": origin})
                status, _, page = client.request("GET", f"/worker/assignments/{aid}/page?{q}")
                t2 = time.perf_counter()
                local_lat["page"].append(t2 - t1)
                if status != 200 or aid.encode() not in page:
                    local_ref[f"page {status}"] += 1
                    continue
                answer = secrets.token_hex(8)
                body = urlencode({"assignmentId": aid, "hit_key": "k", "shared": "yes",
                                  "description": answer})
                status, _, _ = client.request("POST", "/mturk/externalSubmit", body)
                t3 = time.perf_counter()
                local_lat["submit"].append(t3 - t2)
                if status == 200:
                    local_lat["cycle"].append(t3 - t0)
                    local_acked[aid] = answer
                else:
                    local_ref[f"submit {status}"] += 1
            except Exception:
                log.exception("request failed")
                with lock:
                    errors[0] += 1
        with lock:
            for key, values in local_lat.items():
                lat[key].extend(values)
            acked.update(local_acked)
            for key, n in local_ref.items():
                refusals[key] += n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    ready.wait()
    begin = time.perf_counter()
    cpu0, client0 = _server_cpu(srv), time.process_time()
    stop_at[0] = begin + duration
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    cpu, client = _server_cpu(srv) - cpu0, time.process_time() - client0
    return {"concurrency": concurrency, "seconds": elapsed, "cycles": len(acked),
            "cycles_per_s": len(acked) / elapsed,
            "server_cpu_ms_per_cycle": 1000 * cpu / max(len(acked), 1),
            "client_cpu_ms_per_cycle": 1000 * client / max(len(acked), 1),
            "latency_ms": {k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)}
                           for k, v in sorted(lat.items())},
            "refusals": dict(refusals), "errors": errors[0], "_acked": acked}


def _engine(db_url: str) -> Any:
    """A SQLAlchemy engine on the server's database (SQLite file or PostgreSQL)."""
    from sqlalchemy import create_engine

    from tasks.server.db import normalize_url

    return create_engine(normalize_url(db_url))


def _sql(db_url: str, statement: str, params: Any = None, *, write: bool = False) -> list:
    """Run one statement on the server's database (``:name`` parameters; a list of dicts
    inserts many rows) and return the rows it reads."""
    from sqlalchemy import text

    engine = _engine(db_url)
    try:
        with (engine.begin() if write else engine.connect()) as con:
            result = con.execute(text(statement), params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def check_db(db_url: str, acked: dict[str, str], prefix: str) -> dict:
    """Stored answers of this run's workers vs acknowledged submits."""
    rows = _sql(db_url, "SELECT assignment_id, answer FROM assignments WHERE "
                "status='Submitted' AND worker_id LIKE :p", {"p": prefix + "%"})
    stored: dict[str, str] = {}
    for aid, xml in rows:
        root = ET.fromstring(xml)
        for ans in root.findall(f"{{{ANSWER_NS}}}Answer"):
            if ans.findtext(f"{{{ANSWER_NS}}}QuestionIdentifier") == "description":
                stored[aid] = ans.findtext(f"{{{ANSWER_NS}}}FreeText") or ""
    lost = set(acked) - set(stored)
    extra = set(stored) - set(acked)
    wrong = [a for a in set(acked) & set(stored) if acked[a] != stored[a]]
    return {"acknowledged": len(acked), "stored": len(stored), "lost": len(lost),
            "unacknowledged_stored": len(extra), "mismatched": len(wrong)}


def run_submits(srv: LiveServer, db_url: str, hit_type_id: str, concurrency: int,
                duration: float, per_worker: int) -> dict:
    """externalSubmit alone on assignments inserted during setup."""
    from sqlalchemy import text

    now = time.time()
    engine = _engine(db_url)
    with engine.connect() as con:
        found = con.execute(text("SELECT * FROM hits WHERE hit_type_id=:t LIMIT 1"),
                            {"t": hit_type_id})
        base = dict(found.fetchone()._mapping)
    cols = list(base)
    hit_rows, assignment_rows = [], []
    work: dict[int, list[str]] = {}
    for j in range(per_worker):
        row = dict(base, hit_id=f"SUBHIT{j:07d}", unique_request_token=None,
                   max_assignments=concurrency, n_taken=concurrency)
        hit_rows.append(row)
    for i in range(concurrency):
        wid = f"S{i:02d}"
        work[i] = []
        for j in range(per_worker):
            aid = f"SUBA{i:02d}X{j:07d}"
            work[i].append(aid)
            assignment_rows.append({"a": aid, "h": f"SUBHIT{j:07d}", "w": wid, "s": "Accepted",
                                    "t": now, "d": now + 86400})
    with engine.begin() as con:
        con.execute(text(f"INSERT INTO hits ({', '.join(cols)}) VALUES "
                         f"({', '.join(':' + c for c in cols)})"), hit_rows)
        con.execute(text("INSERT INTO assignments (assignment_id, hit_id, worker_id, status, "
                         "accept_time, deadline) VALUES (:a, :h, :w, :s, :t, :d)"),
                    assignment_rows)
    engine.dispose()
    tokens = issue_tokens(srv, [f"S{i:02d}" for i in range(concurrency)])
    lat: list[float] = []
    acked: dict[str, str] = {}
    bad = defaultdict(int)
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)
    stop_at = [time.perf_counter() + 3600]

    def worker(i: int) -> None:
        client = Client(srv.url)
        client.login(f"S{i:02d}", tokens[f"S{i:02d}"])
        mine, local, ok = [], {}, []
        ready.wait()
        for aid in work[i]:
            if time.perf_counter() >= stop_at[0]:
                break
            answer = secrets.token_hex(8)
            body = urlencode({"assignmentId": aid, "shared": "no", "description": answer})
            t0 = time.perf_counter()
            status, _, _ = client.request("POST", "/mturk/externalSubmit", body)
            mine.append(time.perf_counter() - t0)
            if status == 200:
                local[aid] = answer
            else:
                ok.append(status)
        with lock:
            lat.extend(mine)
            acked.update(local)
            for s in ok:
                bad[s] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    begin = time.perf_counter()
    cpu0 = _server_cpu(srv)
    stop_at[0] = begin + duration
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    cpu = _server_cpu(srv) - cpu0
    check = check_db(db_url, acked, "S")
    return {"concurrency": concurrency, "seconds": elapsed, "submits": len(acked),
            "submits_per_s": len(acked) / elapsed,
            "server_cpu_ms_per_submit": 1000 * cpu / max(len(acked), 1), "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99), "refusals": dict(bad), "db_check": check}


def run_list(srv: LiveServer, db_url: str, hit_type_id: str, n: int) -> dict:
    """Page through ``n`` assignments of one HIT with boto3's paginator."""
    mturk = srv.boto3_client()
    hit_id = mturk.create_hit_with_hit_type(
        HITTypeId=hit_type_id, LifetimeInSeconds=3600, MaxAssignments=n,
        Question=html_question(PAGE))["HIT"]["HITId"]
    now = time.time()
    xml = answers_xml([("shared", "yes"), ("description", "x" * 40)])
    _sql(db_url,
         "INSERT INTO assignments (assignment_id, hit_id, worker_id, status, accept_time, "
         "deadline, submit_time, auto_approval_time, answer) "
         "VALUES (:a, :h, :w, 'Submitted', :t, :d, :t, :aa, :x)",
         [{"a": f"LISTA{i:08d}", "h": hit_id, "w": f"L{i:06d}", "t": now, "d": now + 600,
           "aa": now + 86400, "x": xml} for i in range(n)], write=True)
    _sql(db_url, "UPDATE hits SET n_taken=:n WHERE hit_id=:h", {"n": n, "h": hit_id},
         write=True)
    t0 = time.perf_counter()
    seen = 0
    pages = 0
    for page in mturk.get_paginator("list_assignments_for_hit").paginate(
            HITId=hit_id, PaginationConfig={"PageSize": 100}):
        seen += page["NumResults"]
        pages += 1
    elapsed = time.perf_counter() - t0
    return {"assignments": n, "listed": seen, "pages": pages, "seconds": elapsed,
            "assignments_per_s": seen / elapsed}


def run_backend(where: dict, db_url: str, label: str, args: argparse.Namespace,
                duration: float, levels: list[int]) -> dict:
    """Every measurement against one database; the results."""
    results: dict = {"backend": label, "duration_s": duration, "server_threads": args.threads,
                     "server_processes": args.workers}
    with start_server(**where, threads=args.threads, subprocess=True,
                      workers=args.workers) as srv:
        mturk = srv.boto3_client()
        type_id = mturk.create_hit_type(Title="bench", Description="benchmark HITs",
                                        Reward="0.05", AssignmentDurationInSeconds=3600,
                                        AutoApprovalDelayInSeconds=86400)["HITTypeId"]
        hit_ids = [mturk.create_hit_with_hit_type(
            HITTypeId=type_id, LifetimeInSeconds=7200, MaxAssignments=1_000_000,
            Question=html_question(PAGE), RequesterAnnotation=f"bench-{i}")["HIT"]["HITId"]
            for i in range(args.hits)]
        results["cycles"] = []
        for level in levels:
            tag = f"C{level}"
            res = run_cycles(srv, hit_ids, level, duration, tag)
            res["db_check"] = check_db(db_url, res.pop("_acked"), f"B{tag}")
            results["cycles"].append(res)
            lat = res["latency_ms"]
            print(f"\n[{label}] full cycles, {level} workers: {res['cycles']} in "
                  f"{res['seconds']:.1f} s = {res['cycles_per_s']:.1f} cycles/s "
                  f"({res['cycles_per_s'] / TURKLE_CYCLES_PER_S:.1f}x Turkle's "
                  f"{TURKLE_CYCLES_PER_S})")
            for kind in ("accept", "page", "submit", "cycle"):
                if kind in lat:
                    print(f"  {kind:7s} p50 {lat[kind]['p50']:7.1f} ms  "
                          f"p99 {lat[kind]['p99']:7.1f} ms  (n={lat[kind]['n']})")
            print(f"  CPU per cycle: server {res['server_cpu_ms_per_cycle']:.2f} ms, "
                  f"benchmark client {res['client_cpu_ms_per_cycle']:.2f} ms; "
                  f"refusals {res['refusals'] or 0}  errors {res['errors']}")
            print(f"  db check {res['db_check']}")
        sub_level = max(levels)
        per_worker = int(max(duration, 1) * 40) + 50
        res = run_submits(srv, db_url, type_id, sub_level, duration, per_worker)
        results["submits"] = res
        print(f"\n[{label}] externalSubmit alone, {sub_level} workers: "
              f"{res['submits_per_s']:.1f} submits/s, p50 {res['p50_ms']:.1f} ms, "
              f"p99 {res['p99_ms']:.1f} ms (Turkle p99 {TURKLE_SUBMIT_P99_MS:g} ms: "
              f"{TURKLE_SUBMIT_P99_MS / res['p99_ms']:.1f}x lower)")
        print(f"  server CPU {res['server_cpu_ms_per_submit']:.2f} ms per submit; "
              f"refusals {res['refusals'] or 0}  db check {res['db_check']}"
              + ("  (ran out of prepared assignments)" if res["seconds"] < duration * 0.95
                 else ""))
        res = run_list(srv, db_url, type_id, args.list_n)
        results["list_assignments"] = res
        print(f"\n[{label}] ListAssignmentsForHIT: {res['listed']} of {res['assignments']} "
              f"assignments in {res['pages']} pages, {res['seconds']:.2f} s "
              f"({res['assignments_per_s']:.0f} assignments/s)")
    top = results["cycles"][-1] if results["cycles"] else None
    checks = [c["db_check"] for c in results["cycles"]] + [results["submits"]["db_check"]]
    ok = all(c["lost"] == 0 and c["unacknowledged_stored"] == 0 and c["mismatched"] == 0
             for c in checks)
    results["none_lost"] = ok
    results["targets"] = []
    if top:
        sub = results["submits"]
        refused = sum(top["refusals"].values()) + sum(sub["refusals"].values())
        results["targets"] = [
            (f"full cycles at {top['concurrency']}: {top['cycles_per_s']:.1f}/s (target >= 200)",
             top["cycles_per_s"] >= 200),
            (f"externalSubmit at {sub['concurrency']}: {sub['submits_per_s']:.1f}/s "
             "(target >= 300)", sub["submits_per_s"] >= 300),
            (f"externalSubmit p99 {sub['p99_ms']:.1f} ms (target < 100)", sub["p99_ms"] < 100),
            (f"refusals {refused}, errors {top['errors']} (target 0)",
             refused == 0 and top["errors"] == 0),
            ("none lost or doubled", ok),
        ]
        results["targets_met"] = all(met for _, met in results["targets"])
    return results


def _side_by_side(runs: list[dict]) -> None:
    """One table row per measurement, one column per backend."""
    def row(name: str, get: Any) -> None:
        cells = []
        for r in runs:
            try:
                cells.append(f"{get(r):>12.1f}")
            except (KeyError, IndexError, TypeError):
                cells.append(f"{'-':>12}")
        print(f"  {name:34s}" + "".join(cells))

    print("\nside by side" + " " * 24 + "".join(f"{r['backend']:>12}" for r in runs))
    row("full cycles/s (top concurrency)", lambda r: r["cycles"][-1]["cycles_per_s"])
    row("accept p99 ms", lambda r: r["cycles"][-1]["latency_ms"]["accept"]["p99"])
    row("submit p99 ms (in cycles)", lambda r: r["cycles"][-1]["latency_ms"]["submit"]["p99"])
    row("externalSubmit alone /s", lambda r: r["submits"]["submits_per_s"])
    row("externalSubmit alone p99 ms", lambda r: r["submits"]["p99_ms"])
    row("ListAssignmentsForHIT assignments/s",
        lambda r: r["list_assignments"]["assignments_per_s"])
    row("refusals + errors", lambda r: sum(r["cycles"][-1]["refusals"].values())
        + r["cycles"][-1]["errors"] + sum(r["submits"]["refusals"].values()))
    row("answers lost or doubled", lambda r: sum(
        c["lost"] + c["unacknowledged_stored"] + c["mismatched"]
        for c in [*(x["db_check"] for x in r["cycles"]), r["submits"]["db_check"]]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds per measured phase (default 60)")
    parser.add_argument("--quick", action="store_true", help="5-second phases")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated worker counts")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per process")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes (tasks serve --workers, default 1)")
    parser.add_argument("--list-n", type=int, default=10_000)
    parser.add_argument("--hits", type=int, default=200, help="HITs in the cycle batch")
    parser.add_argument("--database-url", default=None,
                        help="also run everything on this (empty, throwaway) PostgreSQL "
                             "database and print both backends side by side")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    duration = 5.0 if args.quick else args.duration
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    db_path = tmp / "server.sqlite"
    import os

    load = os.getloadavg()[0]
    print(f"task server benchmark: {duration:g} s phases, {args.workers} server "
          f"process{'es' if args.workers > 1 else ''} x {args.threads} threads "
          f"({'gunicorn gthread' if args.workers > 1 else 'waitress'}), "
          f"SQLite WAL at {db_path}"
          + (" and PostgreSQL" if args.database_url else "")
          + f"; {os.cpu_count()} CPUs, load average {load:.1f} "
          "(client and server share them)")
    runs = [run_backend({"db_path": db_path}, f"sqlite:///{db_path}", "sqlite", args,
                        duration, levels)]
    if args.database_url:
        runs.append(run_backend({"database_url": args.database_url}, args.database_url,
                                "postgres", args, duration, levels))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(runs) > 1:
        _side_by_side(runs)
    for r in runs:
        print(f"\nsummary [{r['backend']}] ({args.workers} server "
              f"process{'es' if args.workers > 1 else ''}): "
              + ("no answer lost or doubled" if r["none_lost"] else "ANSWERS LOST OR DOUBLED"))
        for text, met in r["targets"]:
            print(f"  {'MET    ' if met else 'NOT MET'} {text}")
    if args.json:
        out = runs[0] if len(runs) == 1 else {"backends": runs}
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0 if all(r["none_lost"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
