"""Run a task server on a free loopback port (tests, demo, benchmarks).

>>> with start_server(tmp_path / "db.sqlite") as srv:          # doctest: +SKIP
...     mturk = srv.boto3_client()
...     session = srv.worker_session("W1")

``subprocess=True`` runs it exactly as ``sparse-probe tasks serve`` does (own process).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import subprocess as sp
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

__all__ = ["LiveServer", "start_server"]

log = logging.getLogger(__name__)


@dataclass
class LiveServer:
    """A running server: its URL, requester key pair and admin login."""

    url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    admin_user: str
    admin_password: str = field(repr=False)
    db_url: str
    app: Any = field(default=None, repr=False)
    log_path: str | None = None  # subprocess mode: the child's stderr, deleted by stop()
    pid: int | None = None
    _stop: Any = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def boto3_client(self, **kwargs: Any) -> Any:
        """boto3's MTurk client pointed at this server (region us-east-1)."""
        import boto3

        return boto3.client(
            "mturk",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            **kwargs,
        )

    def issue_token(self, worker_id: str) -> str:
        """A login token for ``worker_id`` through ``POST /admin/api/workers``."""
        r = requests.post(f"{self.url}/admin/api/workers", json={"worker_id": worker_id},
                          auth=(self.admin_user, self.admin_password), timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def worker_session(self, worker_id: str, token: str | None = None) -> requests.Session:
        """A ``requests`` session logged in as ``worker_id`` (issuing a token if needed)."""
        token = token or self.issue_token(worker_id)
        s = requests.Session()
        r = s.post(f"{self.url}/worker/login", data={"worker_id": worker_id, "token": token},
                   allow_redirects=False, timeout=30)
        if r.status_code != 303:
            raise RuntimeError(f"login of {worker_id} failed: HTTP {r.status_code}")
        return s


def _credentials() -> dict[str, str]:
    return {
        "access_key_id": "SPLIVE" + secrets.token_hex(7).upper(),
        "secret_access_key": secrets.token_urlsafe(30),
        "admin_user": "admin",
        "admin_password": secrets.token_urlsafe(12),
    }


def start_server(
    db_path: str | os.PathLike[str] | None = None,
    *,
    database_url: str | None = None,
    threads: int = 8,
    host: str = "127.0.0.1",
    config: dict[str, Any] | None = None,
    subprocess: bool = False,
    extra_args: list[str] | None = None,
    timeout: float = 60.0,
    workers: int = 1,
) -> LiveServer:
    """Start a task server on a free port of ``host`` with fresh random credentials.

    Parameters
    ----------
    db_path : path, optional
        SQLite file (a temporary directory's file when neither it nor ``database_url`` is given).
    database_url : str, optional
        Any SQLAlchemy URL instead of ``db_path``.
    threads : int
        waitress threads.
    config : dict, optional
        Extra :func:`tasks.server.create_app` config (thread mode only; in subprocess mode use
        ``extra_args``, e.g. ``["--min-duration", "1"]``).
    subprocess : bool
        Run ``tasks serve`` in a child process instead of a thread of this process.
    workers : int
        Server processes (``tasks serve --workers``); more than 1 needs ``subprocess=True``.
        ``LiveServer.pid`` is then the supervising process (its children serve).
    """
    from . import sqlite_url

    if workers < 1 or (workers > 1 and not subprocess):
        raise ValueError(f"workers={workers}: expected 1, or more with subprocess=True")
    scratch = None
    if db_path is None and database_url is None:
        scratch = Path(tempfile.mkdtemp(prefix="sparse-probe-server-"))
        db_path = scratch / "server.sqlite"
    url = database_url or sqlite_url(db_path)  # type: ignore[arg-type]
    creds = _credentials()
    if subprocess:
        args = [*(extra_args or []), *(["--workers", str(workers)] if workers > 1 else [])]
        srv = _start_subprocess(url, db_path, creds, host, threads, args, timeout)
        return _remove_on_stop(srv, scratch)
    import waitress
    from waitress import wasyncore

    from . import create_app
    from .cli import WAITRESS_MAX_BODY, quiet_waitress_queue
    from .waitress_json import json_errors

    cfg = {
        "DATABASE_URL": url,
        "ACCESS_KEY_ID": creds["access_key_id"],
        "SECRET_ACCESS_KEY": creds["secret_access_key"],
        "ADMIN_USER": creds["admin_user"],
        "ADMIN_PASSWORD": creds["admin_password"],
        "SECRET_KEY": secrets.token_hex(32),
        "DB_POOL_SIZE": threads + 2,
        **(config or {}),
    }
    app = create_app(cfg)
    quiet_waitress_queue()
    server = json_errors(waitress.create_server(app, host=host, port=0, threads=threads, backlog=1024,
                                    connection_limit=1000,
                                    max_request_body_size=WAITRESS_MAX_BODY))
    stopping = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            # closing the sockets from stop() can wake select() on a closed descriptor
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=serve, name="task-server", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)
        thread.join(timeout=10)
        app.extensions["sparse_probe_storage"].dispose()

    srv = LiveServer(url=f"http://{host}:{server.effective_port}", db_url=url, app=app,
                     pid=os.getpid(), _stop=stop, **creds)
    return _remove_on_stop(srv, scratch)


def _remove_on_stop(srv: LiveServer, scratch: Path | None) -> LiveServer:
    """Delete the temporary database directory (if one was made) when the server stops."""
    if scratch is not None:
        inner = srv._stop

        def stop() -> None:
            inner()
            shutil.rmtree(scratch, ignore_errors=True)

        srv._stop = stop
    return srv


def _start_subprocess(url: str, db_path: Any, creds: dict[str, str], host: str, threads: int,
                      extra_args: list[str], timeout: float) -> LiveServer:
    env = dict(os.environ)
    env.update({
        "SPARSE_PROBE_ACCESS_KEY_ID": creds["access_key_id"],
        "SPARSE_PROBE_SECRET_ACCESS_KEY": creds["secret_access_key"],
        "SPARSE_PROBE_ADMIN_USER": creds["admin_user"],
        "SPARSE_PROBE_ADMIN_PASSWORD": creds["admin_password"],
    })
    args = ["--host", host, "--port", "0", "--threads", str(threads)]
    fd, log_path = tempfile.mkstemp(prefix="task-server-", suffix=".log")
    os.close(fd)
    creds_file = Path(log_path).with_suffix(".credentials.json")
    if db_path is None:  # the credentials file goes beside the log, not into the cwd
        args += ["--database-url", url, "--credentials-file", str(creds_file)]
    else:
        args += ["--db", str(db_path)]
    log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child
    proc = sp.Popen(
        [sys.executable, "-c", "from tasks.server.cli import serve; serve()", *args, *extra_args],
        stdout=sp.PIPE, stderr=log_file, env=env, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    endpoint = None
    try:
        while endpoint is None:
            line = lines.get(timeout=timeout)
            if line is None:
                raise RuntimeError(f"task server exited with {proc.wait()}; see {log_path}")
            if line.startswith("endpoint_url: "):
                endpoint = line.split(": ", 1)[1].strip()
    except BaseException:
        proc.kill()
        proc.wait()
        log_file.close()
        raise

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except sp.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        Path(log_path).unlink(missing_ok=True)
        creds_file.unlink(missing_ok=True)

    return LiveServer(url=endpoint, db_url=url, log_path=log_path, pid=proc.pid, _stop=stop,
                      **creds)
