"""Reading and writing ``features/meta.json`` (atomically: temp file + rename)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_meta", "write_json_atomic"]

FORMAT = 1


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as UTF-8 JSON to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``meta.json`` from a features directory (or the file itself).

    The returned dict carries one extra key, ``"_dir"``: the absolute features directory, so
    relative paths inside it can be resolved.
    """
    path = Path(path)
    file = path / "meta.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no meta.json at {file} (run `sparse-probe extract` first)")
    meta = json.loads(file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{file}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    meta["_dir"] = str(file.parent.resolve())
    return meta
