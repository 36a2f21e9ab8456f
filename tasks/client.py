"""The one boto3 MTurk client, pointed at Amazon MTurk or at our own task server.

- ``sandbox`` / ``production``: standard AWS configuration (``--profile``, environment,
  shared config files), region ``us-east-1``, the endpoints of ../shared/MTURK.md.
- ``local``: our task server (``tasks serve``) at ``endpoint_url``, signed with the server's
  requester keys from ``SPARSE_PROBE_ACCESS_KEY_ID`` / ``SPARSE_PROBE_SECRET_ACCESS_KEY`` or
  the credentials JSON file the server writes (``--credentials FILE``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

__all__ = [
    "ENDPOINTS",
    "REGION",
    "WORKER_SITES",
    "ClientConfigError",
    "Endpoint",
    "load_credentials_file",
    "make_client",
    "resolve_endpoint",
]

REGION = "us-east-1"
ENDPOINTS = {
    "sandbox": "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
    "production": "https://mturk-requester.us-east-1.amazonaws.com",
}
WORKER_SITES = {"sandbox": "https://workersandbox.mturk.com", "production": "https://www.mturk.com"}
ACCESS_KEY_ENV = "SPARSE_PROBE_ACCESS_KEY_ID"
SECRET_KEY_ENV = "SPARSE_PROBE_SECRET_ACCESS_KEY"


class ClientConfigError(ValueError):
    """The endpoint or its credentials are not configured correctly."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``name`` (local/sandbox/production), its URL and its ledger key."""

    name: str
    url: str

    @property
    def key(self) -> str:
        """Ledger key: ``sandbox``, ``production`` or ``local:<url>``."""
        return self.name if self.name in ENDPOINTS else f"local:{self.url}"


def resolve_endpoint(name: str, endpoint_url: str | None = None) -> Endpoint:
    """Validate an endpoint name and find its URL.

    Raises
    ------
    ClientConfigError
        Unknown name, or ``local`` without ``endpoint_url``.
    """
    if name not in ("local", *ENDPOINTS):
        raise ClientConfigError(
            f"endpoint {name!r}: expected one of local, sandbox, production")
    if name == "local":
        if not endpoint_url:
            raise ClientConfigError("endpoint local: --endpoint-url (the task server URL) is "
                                    "required")
        return Endpoint("local", endpoint_url.rstrip("/"))
    return Endpoint(name, (endpoint_url or ENDPOINTS[name]).rstrip("/"))


def load_credentials_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the task server's credentials JSON.

    Accepted keys: ``access_key_id``/``access_key`` and ``secret_access_key``/``secret``, and
    optionally ``url``, ``admin_user``, ``admin_password``.

    Raises
    ------
    ClientConfigError
        Unreadable file, not JSON, or no access key / secret.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClientConfigError(f"{p}: cannot read credentials JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ClientConfigError(f"{p}: expected a JSON object")
    access = data.get("access_key_id") or data.get("access_key")
    secret = data.get("secret_access_key") or data.get("secret")
    if not access or not secret:
        raise ClientConfigError(f"{p}: expected 'access_key_id' and 'secret_access_key'")
    return {**data, "access_key_id": access, "secret_access_key": secret}


def make_client(
    endpoint: Endpoint,
    *,
    profile: str | None = None,
    credentials_file: str | os.PathLike[str] | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    max_attempts: int = 5,
) -> Any:
    """A boto3 ``mturk`` client for ``endpoint`` with adaptive retries.

    botocore's retry mode retries throttling (``ThrottlingException``, ``ServiceUnavailable``)
    and 5xx responses with exponential backoff; the publisher adds its own loop on top so that
    every attempt keeps the ledger's semantics.
    """
    config = Config(region_name=REGION, retries={"max_attempts": max_attempts,
                                                 "mode": "standard"},
                    connect_timeout=10, read_timeout=60)
    if endpoint.name == "local":
        if credentials_file is not None:
            creds = load_credentials_file(credentials_file)
            access_key_id = access_key_id or creds["access_key_id"]
            secret_access_key = secret_access_key or creds["secret_access_key"]
        access_key_id = access_key_id or os.environ.get(ACCESS_KEY_ENV)
        secret_access_key = secret_access_key or os.environ.get(SECRET_KEY_ENV)
        if not access_key_id or not secret_access_key:
            raise ClientConfigError(
                f"endpoint local: no requester keys; set {ACCESS_KEY_ENV} and "
                f"{SECRET_KEY_ENV} or pass --credentials FILE")
        session = boto3.session.Session(aws_access_key_id=access_key_id,
                                        aws_secret_access_key=secret_access_key,
                                        region_name=REGION)
    else:
        session = boto3.session.Session(profile_name=profile, region_name=REGION)
    return session.client("mturk", endpoint_url=endpoint.url, config=config)
