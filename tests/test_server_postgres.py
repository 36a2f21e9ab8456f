"""PostgreSQL as shipped: ``tasks serve --database-url`` writes the same credentials file as
SQLite (stable across restarts), plain ``postgresql://`` URLs use the psycopg driver of the
``postgres`` extra, and values past 32 bits or with NUL never reach the database."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner
from helpers_postgres import pg_cluster  # noqa: F401

from tasks.server import create_app
from tasks.server.cli import serve
from tasks.server.db import normalize_url


def test_plain_postgresql_urls_use_psycopg():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:////x.sqlite") == "sqlite:////x.sqlite"


@pytest.mark.slow
def test_database_url_writes_a_stable_credentials_file(tmp_path, pg_cluster, monkeypatch):  # noqa: F811
    for var in ("SPARSE_PROBE_ACCESS_KEY_ID", "SPARSE_PROBE_SECRET_ACCESS_KEY",
                "SPARSE_PROBE_ADMIN_USER", "SPARSE_PROBE_ADMIN_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    url = pg_cluster.create_database().replace("postgresql+psycopg://", "postgresql://")
    db = tmp_path / "pg-server.sqlite"
    first = CliRunner().invoke(serve, ["--database-url", url, "--db", str(db),
                                       "--issue-token", "W1"])
    assert first.exit_code == 0, first.output
    creds_file = tmp_path / "pg-server.sqlite.credentials.json"
    creds = json.loads(creds_file.read_text())
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    assert set(creds) >= {"access_key_id", "secret_access_key", "admin_user", "admin_password",
                          "session_secret"}
    assert creds["secret_access_key"] not in first.output
    # A restart reads the same secrets back (nothing random per process).
    again = create_app({"DATABASE_URL": url, "CREDENTIALS_FILE": str(creds_file)})
    assert again.config["SECRET_ACCESS_KEY"] == creds["secret_access_key"]
    assert again.config["ADMIN_PASSWORD"] == creds["admin_password"]
    worker, token = first.output.split()
    r = again.test_client().post("/worker/login", data={"worker_id": worker, "token": token})
    assert r.status_code == 303
    again.extensions["sparse_probe_storage"].dispose()
    other = tmp_path / "elsewhere.json"
    res = CliRunner().invoke(serve, ["--database-url", url, "--credentials-file", str(other),
                                     "--issue-token", "W2"])
    assert res.exit_code == 0, res.output
    assert json.loads(other.read_text())["access_key_id"]


def test_missing_driver_is_a_one_line_error(tmp_path):
    # psycopg2 is not what the extra installs: its absence must read as a clear error.
    try:
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        pytest.skip("psycopg2 is installed here")
    res = CliRunner().invoke(serve, ["--database-url", "postgresql+psycopg2://u@/db",
                                     "--db", str(tmp_path / "x.sqlite"), "--issue-token", "W"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "needs the database driver 'psycopg2'" in res.output
    assert "pip install 'sparse-probe[postgres]'" in res.output
