"""A throwaway PostgreSQL cluster for the task-server tests, and the backend fixtures.

``pg_cluster`` (session scope) runs ``initdb`` and ``pg_ctl start`` in a temporary directory,
listening only on a Unix socket there (no TCP), with trust authentication; it is stopped and
deleted at the end of the session. ``initdb`` refuses to run as root, so as root the cluster
belongs to the ``postgres`` user (Debian's package creates it) or ``nobody``, through
``runuser``. Without PostgreSQL's binaries (``make postgres`` installs Debian's) or the
``psycopg`` driver the PostgreSQL cases are skipped with the reason.

``backend_url(request, tmp_path)`` gives a fresh database per test: a SQLite file under
``tmp_path``, or a new database in the cluster.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

#: The database backends the server tests run on. The PostgreSQL cases start a throwaway
#: cluster (seconds), so they belong to the full suite (`make test`), not the fast lane.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory, reached over a Unix socket."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl not found (make postgres installs "
                               "Debian's postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="sparse-probe-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self._as: list[str] = []
        if os.getuid() == 0:
            self.user = next((u for u in ("postgres", "nobody") if _user_exists(u)), "nobody")
            self._as = ["runuser", "-u", self.user, "--"]
            shutil.chown(self.root, user=self.user)
            os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8", "--locale", "C")
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start",
                  "-o", f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off "
                        "-c max_connections=400 -c shared_buffers=64MB")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (psycopg driver, Unix socket)."""
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(host=str(self.socket_dir), user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's throwaway PostgreSQL cluster (skips without PostgreSQL or psycopg)."""
    pytest.importorskip("psycopg", reason="the 'postgres' extra (psycopg) is not installed")
    if _pg_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                    "`make postgres` installs Debian's postgresql")
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def backend_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    """A fresh database of ``backend`` ("sqlite" or "postgres") for one test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'server.sqlite'}"
    return request.getfixturevalue("pg_cluster").create_database()
