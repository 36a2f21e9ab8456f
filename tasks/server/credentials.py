"""Requester and admin credentials of a task server.

Values come from explicit options, then the environment (``SPARSE_PROBE_ACCESS_KEY_ID``,
``SPARSE_PROBE_SECRET_ACCESS_KEY``, ``SPARSE_PROBE_ADMIN_USER``,
``SPARSE_PROBE_ADMIN_PASSWORD``), then a JSON file next to the database
(``<db>.credentials.json``, mode 0600) that is generated once with random values. Secrets are
never logged; only the file's path is shown.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from sparse_probe.rundir import write_json

__all__ = ["ENV", "ServerCredentials", "credentials_path_for", "load_or_create_credentials"]

ENV = {
    "access_key_id": "SPARSE_PROBE_ACCESS_KEY_ID",
    "secret_access_key": "SPARSE_PROBE_SECRET_ACCESS_KEY",
    "admin_user": "SPARSE_PROBE_ADMIN_USER",
    "admin_password": "SPARSE_PROBE_ADMIN_PASSWORD",
}


@dataclass(frozen=True)
class ServerCredentials:
    """Requester key pair (for boto3), admin login, and the session-cookie signing key."""

    access_key_id: str
    secret_access_key: str
    admin_user: str
    admin_password: str
    session_secret: str

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"ServerCredentials(access_key_id={self.access_key_id!r}, admin_user=" \
               f"{self.admin_user!r}, ...)"


def credentials_path_for(db_path: str | os.PathLike[str]) -> Path:
    """``<db>.credentials.json`` next to a SQLite database file."""
    p = Path(db_path)
    return p.with_name(p.name + ".credentials.json")


def _generate() -> dict[str, str]:
    alnum = string.ascii_uppercase + string.digits
    return {
        "access_key_id": "SPKI" + "".join(secrets.choice(alnum) for _ in range(16)),
        "secret_access_key": secrets.token_urlsafe(30),
        "admin_user": "admin",
        "admin_password": secrets.token_urlsafe(18),
        "session_secret": secrets.token_hex(32),
    }


def load_or_create_credentials(
    path: str | os.PathLike[str] | None, **overrides: str | None
) -> ServerCredentials:
    """Credentials from ``overrides`` > environment > the JSON file at ``path``.

    The file is created (mode 0600, written atomically) with random values when missing; its
    values fill whatever options and environment leave unset. ``path=None`` keeps everything in
    memory.
    """
    stored: dict[str, str] = {}
    if path is not None:
        p = Path(path)
        if p.exists():
            try:
                stored = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{p}: not a readable credentials JSON ({exc})") from None
            missing = set(_generate()) - set(stored)
            if missing:
                raise ValueError(f"{p}: credentials JSON lacks {sorted(missing)}")
        else:
            stored = _generate()
            write_json(p, stored, mode=0o600)  # secrets: never readable by others
    else:
        stored = _generate()
    values = dict(stored)
    for key, env in ENV.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
        if overrides.get(key):
            values[key] = overrides[key]  # type: ignore[assignment]
    return ServerCredentials(**{k: values[k] for k in asdict(ServerCredentials(*[""] * 5))})
