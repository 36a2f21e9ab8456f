"""Self-hosted, MTurk-compatible task server (Flask application factory).

boto3's MTurk client talks to it exactly as to Amazon MTurk (``endpoint_url=`` this server,
region ``us-east-1``, the configured key pair); workers use the worker UI under ``/worker/``;
the requester watches and reviews under ``/admin/``. See :func:`create_app` for the config.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from tasks.cost import parse_reward

from .credentials import ServerCredentials, credentials_path_for, load_or_create_credentials
from .errors import json_error
from .live import LiveServer, start_server
from .sessions import SignedJSONSessionInterface
from .storage import Storage, get_storage, init_db_command, issue_worker_token

__all__ = [
    "DEFAULTS",
    "LiveServer",
    "ServerCredentials",
    "Storage",
    "create_app",
    "credentials_path_for",
    "get_storage",
    "issue_worker_token",
    "load_or_create_credentials",
    "sqlite_url",
    "start_server",
]

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # default: sqlite in the instance folder
    "ACCESS_KEY_ID": None,  # None: environment, then <db>.credentials.json
    "SECRET_ACCESS_KEY": None,
    "ADMIN_USER": None,
    "ADMIN_PASSWORD": None,
    "SECRET_KEY": None,  # session signing key; default from the credentials file
    "CREDENTIALS_FILE": None,  # default: <db>.credentials.json for SQLite files
    "REGION": "us-east-1",
    "START_BALANCE": "10000.00",
    "MAX_API_BODY_BYTES": 1_000_000,
    "MAX_CONTENT_LENGTH": 2_000_000,  # forms and everything else
    "MAX_UPLOAD_BYTES": 32_000_000,  # PUT /admin/api/assets/...
    "MIN_DURATION_SECONDS": 30,  # MTurk's minimum AssignmentDuration/Lifetime
    "ASSET_DIRS": {},
    # a sparse_probe.questions.QuestionSchema: submitted forms must answer it (None: any form)
    "QUESTION_SCHEMA": None,
    "UPLOAD_DIR": None,  # default: <db stem>-assets/ next to a SQLite file
    "DB_POOL_SIZE": 16,
    # SQLite: WAL checkpoints run in a background thread this often, not inside a request
    "SQLITE_CHECKPOINT_INTERVAL_S": 1.0,
    "WSGI_HOT_PATHS": True,  # answer successful accept/page/submit without Flask (hotpaths.py)
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
}


#: Form fields used as ids (checked for NUL before any view runs).
ID_FIELDS = ("worker_id", "token", "assignmentId", "next", "csrf_token")


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):])
    return None


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the task server.

    Parameters
    ----------
    config : dict, optional
        Overrides of :data:`DEFAULTS`: ``DATABASE_URL`` (any SQLAlchemy URL; SQLite runs in WAL
        mode), ``ACCESS_KEY_ID``/``SECRET_ACCESS_KEY`` (requester SigV4 key pair),
        ``ADMIN_USER``/``ADMIN_PASSWORD``, ``START_BALANCE`` (dollars), ``ASSET_DIRS``
        (name -> directory), ``UPLOAD_DIR``, ``MIN_DURATION_SECONDS``, ... Unset credentials
        come from the environment (``SPARSE_PROBE_*``) and then from ``<db>.credentials.json``
        (created 0600 with random values when missing).

    Returns
    -------
    Flask
        The app; its :class:`~tasks.server.storage.Storage` (the one way to the database) is
        ``app.extensions["sparse_probe_storage"]``, reached by the views as
        :func:`~tasks.server.storage.get_storage`.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.session_interface = SignedJSONSessionInterface()
    app.config.from_mapping(DEFAULTS)
    if config:
        app.config.update(config)
    cfg = app.config
    if not cfg["DATABASE_URL"]:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        cfg["DATABASE_URL"] = sqlite_url(Path(app.instance_path) / "tasks.sqlite")
    db_file = _sqlite_file(cfg["DATABASE_URL"])
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    cred_file = cfg["CREDENTIALS_FILE"] or (
        credentials_path_for(db_file) if db_file is not None else None
    )
    needed = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "ADMIN_USER", "ADMIN_PASSWORD", "SECRET_KEY")
    if any(not cfg[k] for k in needed):
        creds = load_or_create_credentials(
            cred_file,
            access_key_id=cfg["ACCESS_KEY_ID"],
            secret_access_key=cfg["SECRET_ACCESS_KEY"],
            admin_user=cfg["ADMIN_USER"],
            admin_password=cfg["ADMIN_PASSWORD"],
        )
        cfg["ACCESS_KEY_ID"] = creds.access_key_id
        cfg["SECRET_ACCESS_KEY"] = creds.secret_access_key
        cfg["ADMIN_USER"] = creds.admin_user
        cfg["ADMIN_PASSWORD"] = creds.admin_password
        cfg["SECRET_KEY"] = cfg["SECRET_KEY"] or creds.session_secret
    if not cfg["UPLOAD_DIR"]:
        cfg["UPLOAD_DIR"] = str(db_file.with_name(db_file.stem + "-assets") if db_file
                                else Path(app.instance_path) / "assets")
    cfg["START_BALANCE_CENTS"] = int(parse_reward(str(cfg["START_BALANCE"])) * Decimal(100))

    store = Storage(cfg["DATABASE_URL"], pool_size=int(cfg["DB_POOL_SIZE"]),
                    checkpoint_interval_s=float(cfg["SQLITE_CHECKPOINT_INTERVAL_S"]))
    store.init(cfg["START_BALANCE_CENTS"])
    app.extensions["sparse_probe_storage"] = store

    from . import admin, api, assets, worker

    app.register_blueprint(api.bp)
    worker.register(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(assets.bp)
    app.cli.add_command(init_db_command)

    @app.get("/")
    def home() -> Response:
        return Response(
            '<!doctype html><title>sparse-probe task server</title>'
            '<p><a href="/worker/">Worker</a> · <a href="/admin/">Requester admin</a></p>',
            mimetype="text/html",
        )

    @app.before_request
    def _refuse_nul() -> Any:
        """NUL is not text: no id, path or query may carry one (PostgreSQL refuses it in
        parameters, and nothing stored contains one). Answer fields drop it instead
        (``worker.answers_xml``)."""
        fields = [request.path, *request.args.keys(), *request.args.values()]
        if request.method == "POST" and request.mimetype in (
                "application/x-www-form-urlencoded", "multipart/form-data"):
            fields += [request.form.get(k, "") for k in ID_FIELDS]
        if any("\x00" in f for f in fields):
            if request.path == "/" or "X-Amz-Target" in request.headers:
                return json_error("RequestError", "NUL characters are not allowed", 400,
                                  "AWS.ParameterOutOfRange")
            return Response("NUL characters are not allowed in ids, paths or queries",
                            status=400, mimetype="text/plain")
        return None

    @app.errorhandler(HTTPException)
    def _api_http_error(exc: HTTPException) -> Any:
        """405, 413, 404, ... on the requester API as MTurk JSON; HTML elsewhere."""
        api_call = (request.path == "/" and request.method not in ("GET", "HEAD")) or (
            "X-Amz-Target" in request.headers)
        if not api_call:
            return exc
        code = exc.code or 500
        kind = "ServiceFault" if code >= 500 else "RequestError"
        turk = {405: "AWS.MethodNotAllowed", 413: "AWS.RequestEntityTooLarge"}.get(
            code, "AWS.ServiceUnavailable" if code >= 500 else "AWS.BadRequest")
        message = f"{exc.name}: {exc.description}"
        if code == 405:
            message = f"{request.method} is not allowed: the requester API takes POST on /"
        resp = json_error(kind, message, code, turk)
        if code == 405:
            resp.headers["Allow"] = "POST"
        return resp

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    if cfg["WSGI_HOT_PATHS"]:
        from .hotpaths import HotPathMiddleware

        app.wsgi_app = HotPathMiddleware(app)  # type: ignore[method-assign]
    return app

