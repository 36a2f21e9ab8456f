"""``sparse-probe tasks serve``: run the task server with waitress (production WSGI server)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["WAITRESS_MAX_BODY", "quiet_waitress_queue", "serve"]

#: waitress refuses larger bodies (413) before buffering them; the app's own limits are lower.
WAITRESS_MAX_BODY = 64 * 1024 * 1024

log = logging.getLogger(__name__)


def quiet_waitress_queue() -> None:
    """Silence waitress's per-request "Task queue depth" warnings (normal under load)."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _parse_assets(values: tuple[str, ...]) -> dict[str, str]:
    from .assets import ASSET_NAME_RE

    out: dict[str, str] = {}
    for item in values:
        name, sep, directory = item.partition("=")
        if not sep or not ASSET_NAME_RE.match(name):
            raise click.BadParameter(f"{item!r}: expected NAME=DIR with NAME of [A-Za-z0-9_.-]",
                                     param_hint="--assets")
        if not Path(directory).is_dir():
            raise click.BadParameter(f"{directory!r} is not a directory", param_hint="--assets")
        out[name] = str(Path(directory).resolve())
    return out


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one; the URL is printed).")
@click.option("--db", "db_path", default="task-server.sqlite", show_default=True,
              type=click.Path(dir_okay=False), help="SQLite database file (WAL mode).")
@click.option("--database-url", default=None, envvar="SPARSE_PROBE_DATABASE_URL",
              help="Any SQLAlchemy URL (e.g. postgresql://user@host/db, driver: the "
                   "'postgres' extra); overrides --db, which then only names the credentials "
                   "file.")
@click.option("--credentials-file", default=None, type=click.Path(dir_okay=False),
              help="Where the requester keys and admin login are kept (created 0600 when "
                   "missing) [default: <db>.credentials.json].")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="waitress worker threads.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (N > 1: gunicorn's gthread workers, --threads each, on "
                   "one listening socket; SQLite WAL makes their writes safe). 1 serves from "
                   "this process with waitress.")
@click.option("--assets", "assets", multiple=True, metavar="NAME=DIR",
              help="Serve DIR read-only at /assets/NAME/ (repeatable).")
@click.option("--access-key-id", envvar="SPARSE_PROBE_ACCESS_KEY_ID", default=None,
              help="Requester access key id (default: env, then the credentials file).")
@click.option("--secret-access-key", envvar="SPARSE_PROBE_SECRET_ACCESS_KEY", default=None,
              show_envvar=True, help="Requester secret (prefer the environment variable).")
@click.option("--admin-user", envvar="SPARSE_PROBE_ADMIN_USER", default=None)
@click.option("--admin-password", envvar="SPARSE_PROBE_ADMIN_PASSWORD", default=None,
              show_envvar=True)
@click.option("--balance", default="10000.00", show_default=True,
              help="Starting account balance in dollars (used when the database is new).")
@click.option("--min-duration", default=30, show_default=True, type=click.IntRange(1),
              help="Smallest AssignmentDuration/Lifetime accepted, seconds (MTurk: 30).")
@click.option("--issue-token", "issue", multiple=True, metavar="WORKER_ID",
              help="Print a new login token for WORKER_ID (repeatable) and exit.")
@click.option("--questions", "questions", default=None, metavar="FILE|builtin",
              help="Refuse submitted forms that do not answer this question schema (a "
                   "tasks/questions.json, a study's TOML/JSON schema, or 'builtin').")
def serve(
    host: str,
    port: int,
    db_path: str,
    database_url: str | None,
    credentials_file: str | None,
    threads: int,
    workers: int,
    assets: tuple[str, ...],
    access_key_id: str | None,
    secret_access_key: str | None,
    admin_user: str | None,
    admin_password: str | None,
    balance: str,
    min_duration: int,
    issue: tuple[str, ...],
    questions: str | None,
) -> None:
    """Run the MTurk-compatible task server (requester API on /, workers on /worker/,
    admin on /admin/). Point boto3 at the printed endpoint URL, region us-east-1."""
    import waitress

    from tasks.cost import parse_reward

    from . import create_app, sqlite_url
    from .credentials import credentials_path_for
    from .storage import issue_worker_token
    from .waitress_json import json_errors

    try:
        parse_reward(balance)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--balance") from None
    url = database_url or sqlite_url(db_path)
    schema = None
    if questions is not None:
        from sparse_probe.questions import SchemaError, default_schema, load_schema

        try:
            schema = default_schema() if questions == "builtin" else load_schema(questions)
        except SchemaError as exc:
            raise click.BadParameter(str(exc), param_hint="--questions") from None
    config = {
        "QUESTION_SCHEMA": schema,
        "DATABASE_URL": url,
        "ACCESS_KEY_ID": access_key_id,
        "SECRET_ACCESS_KEY": secret_access_key,
        "ADMIN_USER": admin_user,
        "ADMIN_PASSWORD": admin_password,
        "START_BALANCE": balance,
        "MIN_DURATION_SECONDS": min_duration,
        "ASSET_DIRS": _parse_assets(assets),
        "DB_POOL_SIZE": threads + 2,
    }
    config["CREDENTIALS_FILE"] = str(Path(credentials_file).resolve() if credentials_file
                                     else credentials_path_for(Path(db_path).resolve()))
    try:
        app = create_app(config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"{url.split('://', 1)[0]} needs the database driver {exc.name!r}: "
            "pip install 'sparse-probe[postgres]'") from None
    store = app.extensions["sparse_probe_storage"]
    if issue:
        for worker_id in issue:
            try:
                click.echo(f"{worker_id} {issue_worker_token(store, worker_id)}")
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--issue-token") from None
        return
    quiet_waitress_queue()
    server_kw: dict[str, Any] = {
        "threads": threads, "backlog": 1024, "connection_limit": 1000,
        "max_request_body_size": WAITRESS_MAX_BODY, "channel_timeout": 60,
        "ident": "sparse-probe",
    }
    if workers > 1:
        if not hasattr(os, "fork"):
            raise click.BadParameter("needs os.fork (Linux, macOS)", param_hint="--workers")
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            raise click.BadParameter("needs gunicorn (pip install gunicorn)",
                                     param_hint="--workers") from None
        # Every process signs sessions and checks SigV4 with the same resolved secrets.
        for key in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "ADMIN_USER", "ADMIN_PASSWORD",
                    "SECRET_KEY"):
            config[key] = app.config[key]
        store.dispose()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
        endpoint_port = sock.getsockname()[1]
    else:
        server = json_errors(waitress.create_server(app, host=host, port=port,
                                                    **server_kw))
        endpoint_port = server.effective_port

    def announce() -> None:  # printed once the server processes exist
        endpoint = f"http://{host}:{endpoint_port}"
        click.echo(f"endpoint_url: {endpoint}")
        click.echo(f"  boto3.client('mturk', endpoint_url='{endpoint}', "
                   "region_name='us-east-1', ...)")
        click.echo(f"  workers: {endpoint}/worker/   admin: {endpoint}/admin/")
        click.echo(f"  access key id: {app.config['ACCESS_KEY_ID']}")
        if config.get("CREDENTIALS_FILE"):
            click.echo(f"  credentials (secret, admin password): {config['CREDENTIALS_FILE']}")
        click.echo(f"  database: {url.split('://', 1)[0]} ({'WAL' if store.sqlite else 'server'}), "
                   f"{workers} process{'es' if workers > 1 else ''} x {threads} threads, "
                   f"pid {os.getpid()}", nl=True)
        sys.stdout.flush()

    if workers > 1:
        raise SystemExit(_run_gunicorn(config, sock, workers, threads, announce))
    announce()
    try:
        server.run()
    finally:
        store.dispose()


def _run_gunicorn(config: dict[str, Any], sock: socket.socket, workers: int, threads: int,
                  announce: Any) -> int:
    """Serve ``sock`` with gunicorn's master and ``workers`` gthread worker processes (each
    builds its own app and database connections after the fork); returns the exit status."""
    from gunicorn.app.base import BaseApplication

    from . import create_app

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": [f"fd://{sock.fileno()}"], "workers": workers, "threads": threads,
                "worker_class": "gthread", "backlog": 1024, "worker_connections": 1000,
                "keepalive": 15, "timeout": 60, "graceful_timeout": 5,
                "loglevel": "warning", "accesslog": None, "secure_scheme_headers": {},
                "forwarded_allow_ips": "", "proc_name": "sparse-probe-tasks",
                "when_ready": lambda _arbiter: announce(),
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(config)

    try:
        _Gunicorn().run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
