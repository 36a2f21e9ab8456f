"""The demo's crowd stages over all runs: task server, publishing, simulated workers, collection.

One task server serves every run (database ``OUT/server/server.sqlite``, port recorded in
``OUT/demo.json`` so a resumed run finds its HITs again). Publishing goes through boto3
(:func:`tasks.publish.publish_batch`), simulated workers answer over HTTP
(:func:`tasks.simulate.simulate_crowd`) and :func:`tasks.collect.collect_answers` fetches the
assignments into each run's ``answers/``. The server is stopped on exit, also on errors, unless
``keep_server`` leaves it running for people.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparse_probe.demo.config import (
    REPORT_METHOD,
    SPAMMER_SHARE,
    DemoConfig,
    DemoResult,
    write_json,
)
from sparse_probe.demo.server import free_port, port_free, running_server, start_server
from sparse_probe.demo.stages import (
    expected_assignments,
    manifest_rows,
    n_assignments,
)
from sparse_probe.rundir import RunDir

__all__ = ["finishing_steps", "run_crowd"]


def finishing_steps(url: str, pid: int, db: Path, creds: Path,
                    runs: dict[str, Path]) -> list[str]:
    """The commands that finish an audit whose server was left running for people."""
    return [
        f"workers answer at {url}/worker/ (admin progress: {url}/admin/, "
        f"login and password in {creds})",
        f"worker login token: sparse-probe tasks serve --db {db} --issue-token WORKER_ID",
        *[f"sparse-probe tasks collect {run / 'tasks'} --out {run / 'answers'} "
          f"--credentials {creds}" for run in runs.values()],
        *[f"sparse-probe report --run {run}" for run in runs.values()],
        *[f"sparse-probe counterfactual --run {run}" for run in runs.values()],
        f"stop the server: kill {pid}",
    ]


def run_crowd(out: Path, state: dict[str, Any], config: DemoConfig, runs: dict[str, Path],
              keep_server: bool, stage: Callable[..., None], result: DemoResult) -> None:
    """Server, publish, simulated crowd, collect (the server is stopped on exit).

    Raises
    ------
    RuntimeError
        The recorded port is busy, the server does not start, or assignments are still
        missing after the simulated crowd.
    """
    from tasks.client import make_client, resolve_endpoint
    from tasks.collect import collect_answers
    from tasks.publish import PublishOptions, publish_batch
    from tasks.simulate import simulate_crowd

    server_dir = out / "server"
    server_dir.mkdir(exist_ok=True)
    db = (server_dir / "server.sqlite").resolve()
    srv = running_server(state, db)
    if srv is None:
        port = (state.get("server") or {}).get("port")
        if port and not port_free(int(port)):
            raise RuntimeError(f"port {port} (where this demo's HITs were published) is busy; "
                               "free it and rerun to resume")
        srv = start_server(db, int(port or free_port()), detach=keep_server)
    state["server"] = {"url": srv.url, "port": int(srv.url.rsplit(":", 1)[1]), "pid": srv.pid,
                       "db": str(db), "running": True, "kept": keep_server}
    write_json(out / "demo.json", state)
    result.server_url, result.server_pid = srv.url, srv.pid
    try:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.creds["access_key_id"],
                             secret_access_key=srv.creds["secret_access_key"])
        for run in runs.values():
            pub = publish_batch(RunDir(run).tasks, client, ep,
                                PublishOptions(assignments=config.assignments),
                                admin_auth=srv.admin_auth)
            stage("publish", f"{run.name}: {pub.summary()}")
        if keep_server:
            from tasks.server.credentials import credentials_path_for

            result.server_kept = True
            result.next_steps = finishing_steps(srv.url, srv.pid, db, credentials_path_for(db),
                                                runs)
            stage("server", f"task server left running at {srv.url} (pid {srv.pid})")
            return
        sim_dir = server_dir / "simulation"
        sim_dir.mkdir(exist_ok=True)
        with open(sim_dir / "manifest.jsonl", "w", encoding="utf-8") as fh:
            for run in runs.values():
                for row in manifest_rows(run):
                    fh.write(json.dumps(row) + "\n")

        def crowd() -> None:
            sim = simulate_crowd(srv.url, sim_dir, n_workers=config.workers,
                                 spammer_share=SPAMMER_SHARE, seed=config.seed,
                                 concurrency=4, admin_auth=srv.admin_auth, time_scale=0.0)
            kinds: dict[str, int] = {}
            for p in sim.profiles.values():
                kinds[p.kind] = kinds.get(p.kind, 0) + 1
            mix = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
            stage("crowd", f"{sim.submitted} assignments submitted by {len(sim.profiles)} "
                           f"simulated workers ({mix}); they read each HIT's ground-truth "
                           "evidence (the built-in masks), which people never see")

        def collect() -> None:
            for run in runs.values():
                rd = RunDir(run)
                col = collect_answers(rd.tasks, rd.answers, client, ep)
                missing = expected_assignments(run, config) - n_assignments(run)
                if missing > 0:
                    raise RuntimeError(f"{run.name}: {missing} assignments still missing after "
                                       "the simulated crowd; rerun to resume")
                stage("collect", f"{run.name}: {col.summary()}")

        crowd()
        collect()
        if config.fillable_extra:
            # adaptive redundancy: HITs whose votes split get more answers, as a requester
            # would do with `sparse-probe tasks extend --undecided-from report/features.csv`
            from analysis.report import ReportOptions, undecided_hit_keys
            from tasks.extend import extend_hits

            added = 0
            for run in runs.values():
                keys = undecided_hit_keys(run, ReportOptions(method=REPORT_METHOD,
                                                             seed=config.seed))
                if keys:
                    ext = extend_hits(RunDir(run).tasks, client, ep, keys,
                                      config.fillable_extra, max_rounds=1)
                    added += sum(ext.extended.values()) + sum(ext.recovered.values())
                    stage("extend", f"{run.name}: {len(keys)} undecided; {ext.summary()}")
            if added:
                crowd()
                collect()
    finally:
        if not keep_server:
            srv.stop()
            state["server"]["running"] = False
            write_json(out / "demo.json", state)
