"""The demo's task server: ``tasks serve`` in its own process on a loopback port.

The server is started as a child process (``python -c "from tasks.server.cli import serve;
serve()" ...``, waitress in that one process), found again by a later run from the pid and
URL recorded in ``OUT/demo.json`` (checked against the process's command line), and stopped
with SIGTERM (SIGKILL after a grace period). Process inspection uses ``/proc`` where it exists
and ``ps`` elsewhere; no third-party package is needed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TaskServer", "free_port", "port_free", "running_server", "start_server"]

#: Environment variables that would override the server's own credentials and database.
_SERVER_ENV = ("SPARSE_PROBE_ACCESS_KEY_ID", "SPARSE_PROBE_SECRET_ACCESS_KEY",
               "SPARSE_PROBE_ADMIN_USER", "SPARSE_PROBE_ADMIN_PASSWORD",
               "SPARSE_PROBE_DATABASE_URL")
#: Seconds a server has to exit after SIGTERM before it is killed.
STOP_GRACE = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` (TIME_WAIT counts as free, as for waitress)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- processes
def _cmdline(pid: int) -> str | None:
    """The command line of process ``pid``, or None when it does not exist (or is a zombie)."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            raw = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaping it when it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:  # not our child: ask the system
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) has finished too
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _terminate(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM ``pid``, wait up to ``grace`` seconds for it to exit, then SIGKILL it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while not _gone(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
        time.sleep(0.05)


@dataclass
class TaskServer:
    """One running task server: its URL, process and credentials."""

    url: str
    pid: int
    creds: dict[str, str] = field(repr=False)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def admin_auth(self) -> tuple[str, str]:
        """(user, password) of the server's admin API."""
        return self.creds["admin_user"], self.creds["admin_password"]

    def stop(self) -> None:
        """Terminate the server process (idempotent)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            return
        _terminate(self.pid)  # a server kept by an earlier run: ours by its command line


def _read_creds(db: Path) -> dict[str, str]:
    from tasks.server.credentials import credentials_path_for

    return json.loads(credentials_path_for(db).read_text(encoding="utf-8"))


def running_server(state: dict[str, Any], db: Path) -> TaskServer | None:
    """The server an earlier ``keep_server`` run left running on ``db``, if it still runs.

    Parameters
    ----------
    state : dict
        The content of ``OUT/demo.json`` (its ``server`` entry: pid, url, running).
    db : Path
        The server's database; the process must have been started on it.
    """
    import requests

    info = state.get("server") or {}
    if not isinstance(info, dict):
        return None
    pid, url = info.get("pid"), info.get("url")
    if not info.get("running") or not pid or not url:
        return None
    cmd = _cmdline(int(pid))
    if cmd is None or "tasks.server.cli" not in cmd or str(db) not in cmd:
        return None
    try:
        requests.get(f"{url}/worker/login", timeout=5)
    except requests.RequestException:
        return None
    try:
        creds = _read_creds(db)
    except (OSError, json.JSONDecodeError):
        return None
    return TaskServer(url, int(pid), creds)


def start_server(db: Path, port: int, detach: bool, timeout: float = 60.0) -> TaskServer:
    """``tasks serve`` on ``127.0.0.1:port`` in its own process (own session when detached).

    Raises
    ------
    RuntimeError
        The server exited or did not answer within ``timeout`` seconds (its log is
        ``server.log`` beside ``db``).
    """
    import requests

    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV}
    log_path = db.with_name("server.log")
    cmd = [sys.executable, "-c", "from tasks.server.cli import serve; serve()",
           "--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--threads", "8",
           "--questions", "builtin"]  # the demo's HITs use the built-in questions
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=detach)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"task server exited with {proc.returncode}; see {log_path}")
            try:
                requests.get(f"{url}/worker/login", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"task server did not answer at {url} within "
                                       f"{timeout:.0f}s; see {log_path}") from None
                time.sleep(0.2)
        creds = _read_creds(db)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return TaskServer(url, proc.pid, creds, proc)
