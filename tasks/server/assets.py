"""Asset blueprint: read-only ``GET /assets/<name>/<path>``.

A HIT page refers to its images by URL. Directories come from two places: ``ASSET_DIRS``
(name -> directory, ``serve --assets NAME=DIR``), served as they are, and the upload directory
(``UPLOAD_DIR/<name>/``) filled by the admin route ``PUT /admin/api/assets/<name>/<path>``.
Paths are resolved with :func:`werkzeug.security.safe_join` (no traversal).
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, send_from_directory

__all__ = ["ASSET_NAME_RE", "asset_root", "bp"]

bp = Blueprint("assets", __name__, url_prefix="/assets")
ASSET_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


def asset_root(name: str) -> tuple[Path, bool] | None:
    """Directory serving ``name`` and whether it is writable (an upload directory)."""
    if not ASSET_NAME_RE.match(name):
        return None
    registered = current_app.config.get("ASSET_DIRS") or {}
    if name in registered:
        return Path(registered[name]), False
    return Path(current_app.config["UPLOAD_DIR"]) / name, True


@bp.get("/<name>/<path:filename>")
def serve_asset(name: str, filename: str) -> Response:
    """One asset file (404 when missing or outside the directory)."""
    root = asset_root(name)
    if root is None:
        abort(404)
    resp = send_from_directory(root[0], filename, max_age=3600)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
