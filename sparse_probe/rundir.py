"""The run-directory contract in code: paths, one atomic writer, readers, and run fingerprints.

One audit is one pipeline of stages that meet only in files (``../shared/DESIGN.md``)::

    run/features/  ──fit──▶  run/probe/  ──build──▶  run/tasks/  ──collect──▶  run/answers/
                                                                               ──report──▶ run/report/

This module is the one home of

- the **layout** (:class:`RunDir`: where each artefact lives),
- the **atomic writes** (:func:`atomic_path`, :func:`write_json`, :func:`write_text`,
  :func:`write_bytes`): every artefact is written to a temporary file in its own directory
  and renamed over the target, so a killed process leaves the old file or the new one,
  never half of one;
- the **readers** that give a one-line error naming the file and what was expected
  (:func:`read_json`, :func:`read_features_meta`, :func:`read_probe`, :func:`read_manifest`);
- the **fingerprints** that chain the stages: each stage records the fingerprint of the
  artefact it read (features → probe → tasks → answers), and :func:`check_same_run` refuses
  inputs that come from different runs.

A fingerprint is a short hex digest of what identifies an artefact's content (its metadata,
shapes, labels and ids, and a strided sample of the feature rows), so re-extracting the same
data gives the same fingerprint while another model or dataset of the same width does not.
Artefacts written before fingerprints existed have none; they are accepted unchecked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FEATURES_FORMAT",
    "MANIFEST_REQUIRED",
    "RUN_RECORD",
    "MissingArtefactError",
    "RunDir",
    "RunDirError",
    "RunMismatchError",
    "atomic_path",
    "check_same_run",
    "features_fingerprint",
    "fingerprint_of",
    "manifest_lines",
    "read_features_meta",
    "read_json",
    "read_jsonl",
    "read_manifest",
    "read_run_record",
    "write_bytes",
    "write_json",
    "write_jsonl",
    "write_run_record",
    "write_text",
]

#: ``features/meta.json`` format understood by this version.
FEATURES_FORMAT = 1


class RunDirError(ValueError):
    """A run-directory artefact is missing or malformed (the message names the file)."""


class MissingArtefactError(RunDirError, FileNotFoundError):
    """A run-directory file is missing (also a ``FileNotFoundError``)."""


class RunMismatchError(RunDirError):
    """Two inputs of one stage come from different runs (the message names both)."""


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class RunDir:
    """Where each artefact of one run lives (``root/features``, ``root/probe``, ...).

    Parameters
    ----------
    root : path-like
        The run directory. Stages may also be given their folders one by one; this class is
        for code that works on a whole run (the demo, ``report --run``).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def probe(self) -> Path:
        return self.root / "probe"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def answers(self) -> Path:
        return self.root / "answers"

    @property
    def report(self) -> Path:
        return self.root / "report"

    # files
    @property
    def features_meta(self) -> Path:
        return self.features / "meta.json"

    @property
    def probe_json(self) -> Path:
        return self.probe / "probe.json"

    @property
    def path_npz(self) -> Path:
        return self.probe / "path.npz"

    @property
    def head_pt(self) -> Path:
        return self.probe / "head.pt"

    @property
    def manifest(self) -> Path:
        return self.tasks / "manifest.jsonl"

    @property
    def ledger(self) -> Path:
        return self.tasks / "ledger.sqlite"

    @property
    def answers_parquet(self) -> Path:
        return self.answers / "answers.parquet"


# --------------------------------------------------------------------------- atomic writes
def _default_mode() -> int:
    """Permissions of a plain new file under this process's umask (e.g. 0o644)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None,
                mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    For writers that want a file name (``np.save``, ``DataFrame.to_parquet``,
    ``Figure.savefig``, ``torch.save``, SQLite). The temporary file keeps ``path``'s suffix
    (or ``suffix``) so libraries that dispatch on it behave the same. On any exception the
    temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        The final file. Its directory is created if missing.
    suffix : str, optional
        Suffix of the temporary file; default: ``path``'s own.
    mode : int, optional
        Permissions of the file, set before anything is written (``0o600`` for secrets);
        default: those of a plain new file under the umask.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-",
                               suffix=suffix if suffix is not None else (target.suffix or ".tmp"))
    try:
        os.fchmod(fd, _default_mode() if mode is None else mode)
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename).

    ``mode`` as in :func:`atomic_path` (permissions set before any byte is written).
    """
    target = Path(path)
    with atomic_path(target, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any, *, mode: int | None = None) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically.

    numpy scalars and arrays are converted; NaN and infinity are refused (``ValueError``),
    since JSON has no such values.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    return write_bytes(path, (text + "\n").encode("utf-8"), mode=mode)


def write_jsonl(path: str | os.PathLike[str], rows: Any) -> Path:
    """Write an iterable of JSON objects, one per line, to ``path`` atomically."""
    lines = [json.dumps(r, ensure_ascii=False, allow_nan=False, default=_json_default)
             for r in rows]
    return write_text(path, "".join(line + "\n" for line in lines))


# --------------------------------------------------------------------------- readers
def read_json(path: str | os.PathLike[str], *, what: str = "a JSON file",
              hint: str = "") -> Any:
    """Read a JSON file, or raise :class:`RunDirError` naming the file and what was expected.

    Parameters
    ----------
    path : path-like
        The file.
    what : str
        What the file should be, for the error (e.g. ``"probe.json from `sparse-probe fit`"``).
    hint : str
        Appended to the "missing" error (e.g. ``"run `sparse-probe extract` first"``).
    """
    p = Path(path)
    if not p.is_file():
        extra = f"; {hint}" if hint else ""
        raise MissingArtefactError(f"{p}: missing; expected {what}{extra}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{p}: not valid JSON ({exc}); expected {what}") from None


def read_jsonl(path: str | os.PathLike[str], *, what: str = "a JSON-lines file",
               hint: str = "") -> list[dict[str, Any]]:
    """Read a JSON-lines file of objects (blank lines skipped), with ``file:line`` errors."""
    p = Path(path)
    if not p.is_file():
        extra = f"; {hint}" if hint else ""
        raise MissingArtefactError(f"{p}: missing; expected {what}{extra}")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{p}:{n}: not valid JSON ({exc.msg}); expected {what}") from None
        if not isinstance(row, dict):
            raise RunDirError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def with_relative(entry: Mapping[str, Any], key: str, base: str | os.PathLike[str]
                  ) -> dict[str, Any]:
    """``entry`` plus ``key + "_rel"``: its path ``entry[key]`` relative to ``base`` (the
    directory whose ``meta.json`` records it), so that :func:`recorded_path` finds the file
    again after the run directory is moved or copied to another machine. Unchanged where
    ``entry[key]`` is null."""
    out = dict(entry)
    if out.get(key):
        out[f"{key}_rel"] = os.path.relpath(os.path.abspath(out[key]), os.path.abspath(base))
    return out


def recorded_path(meta: Mapping[str, Any], section: str | None, key: str) -> str | None:
    """A path a ``meta.json`` or ``probe.json`` records (``model.checkpoint``,
    ``dataset.root``, the probe's ``features_dir``), found again.

    The recorded path when it exists; else, relative to the directory holding the file
    (``meta["_dir"]``), the recorded path itself when it is relative, then ``key + "_rel"``
    (written beside it by :func:`with_relative`), the first that exists. Where none does,
    the recorded path (the caller's error names it). ``section`` None: a top-level key.
    """
    entry = meta if section is None else (meta.get(section) or {})
    path = entry.get(key)
    if not path or Path(path).exists() or not meta.get("_dir"):
        return path
    base = Path(meta["_dir"])
    for cand in (path, entry.get(f"{key}_rel")):
        if cand and (base / cand).exists():
            return str((base / cand).resolve())
    return path


def read_features_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``meta.json`` of a features directory (or the file itself).

    The returned dict carries one extra key, ``"_dir"``: the absolute features directory, so
    relative paths inside it can be resolved.
    """
    p = Path(path)
    file = p / "meta.json" if p.is_dir() or not p.suffix else p
    meta = read_json(file, what="meta.json of a features directory",
                     hint="run `sparse-probe extract` first")
    if not isinstance(meta, dict) or meta.get("format") != FEATURES_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RunDirError(f"{file}: unsupported format {got!r} (expected {FEATURES_FORMAT})")
    meta["_dir"] = str(file.parent.resolve())
    return meta


#: Fields every manifest line has (docs/contracts.md); the rest are optional.
MANIFEST_REQUIRED = ("hit_key", "class", "feature")


def read_manifest(tasks_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The HITs of ``tasks/manifest.jsonl`` (see :func:`manifest_lines`, without line numbers)."""
    return [row for _, row in manifest_lines(tasks_dir)]


def manifest_lines(tasks_dir: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """The one reader of ``tasks/manifest.jsonl``: (line number, HIT) pairs in file order.

    The line numbers let a stage name ``file:line`` in its own checks. Checks what every
    consumer relies on: each line is an object with a string ``hit_key``,
    an integer-like ``class`` and ``feature``, and keys are unique. ``html`` defaults to
    ``hits/<hit_key>.html``. Stage-specific checks (a HIT page exists, for publishing) stay
    with the stage.

    Parameters
    ----------
    tasks_dir : path-like
        The tasks folder, or the manifest file itself.

    Raises
    ------
    MissingArtefactError
        No manifest (run ``sparse-probe tasks build`` first).
    RunDirError
        A malformed line (``file:line`` and the field named) or a duplicate key.
    """
    p = Path(tasks_dir)
    path = p if p.suffix == ".jsonl" else p / "manifest.jsonl"
    rows = read_jsonl(path, what="one HIT per line from `sparse-probe tasks build`",
                      hint="run `sparse-probe tasks build` first")
    seen: set[str] = set()
    lines = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    out = list(zip(lines, rows, strict=True))
    for n, row in out:
        for key in MANIFEST_REQUIRED:
            if key not in row:
                raise RunDirError(f"{path}:{n}: missing field {key!r}")
        key = row["hit_key"]
        if not isinstance(key, str) or not key:
            raise RunDirError(f"{path}:{n}: field 'hit_key' must be a non-empty string")
        for field in ("class", "feature"):
            if isinstance(row[field], bool) or not isinstance(row[field], int):
                raise RunDirError(f"{path}:{n}: field {field!r} must be an integer, "
                                  f"got {row[field]!r}")
        if key in seen:
            raise RunDirError(f"{path}:{n}: duplicate hit_key {key!r}")
        seen.add(key)
        row.setdefault("html", f"hits/{key}.html")
    return out


# --------------------------------------------------------------------------- fingerprints
def fingerprint_of(parts: Mapping[str, Any]) -> str:
    """A 16-hex-digit digest of JSON-able ``parts`` (keys sorted; bytes hashed as they are)."""
    h = hashlib.sha256()
    for key in sorted(parts):
        h.update(key.encode())
        value = parts[key]
        if isinstance(value, bytes | bytearray | memoryview):
            h.update(bytes(value))
        else:
            h.update(json.dumps(value, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()[:16]


_SAMPLE_ROWS = 64


def features_fingerprint(features_dir: str | os.PathLike[str],
                         meta: Mapping[str, Any] | None = None) -> str:
    """Fingerprint of a features directory: metadata, shapes, labels, ids and sampled rows.

    Cheap at any size: the feature matrices are memory-mapped and only up to 64 evenly
    spaced rows per split are hashed, plus every label and id.

    Parameters
    ----------
    features_dir : path-like
        A directory written by ``sparse-probe extract`` (``meta.json``, ``{split}.npy``,
        ``{split}_labels.npy``, ``{split}_ids.json``).
    meta : mapping, optional
        The parsed ``meta.json``, if already read. Its ``fingerprint`` and ``_dir`` keys are
        ignored.
    """
    d = Path(features_dir)
    if meta is None:
        meta = read_features_meta(d)
    parts: dict[str, Any] = {
        "meta": {k: v for k, v in meta.items() if k not in ("fingerprint", "_dir", "created")}}
    for split in sorted(meta.get("splits", {})):
        xf = d / f"{split}.npy"
        if not xf.is_file():
            continue
        X = np.load(xf, mmap_mode="r")
        parts[f"{split}.shape"] = list(X.shape)
        if X.shape[0]:
            rows = np.unique(np.linspace(0, X.shape[0] - 1, _SAMPLE_ROWS).astype(np.int64))
            parts[f"{split}.rows"] = np.ascontiguousarray(X[rows]).tobytes()
        yf = d / f"{split}_labels.npy"
        if yf.is_file():
            parts[f"{split}.labels"] = np.ascontiguousarray(np.load(yf)).tobytes()
        idf = d / f"{split}_ids.json"
        if idf.is_file():
            parts[f"{split}.ids"] = idf.read_bytes()
    return fingerprint_of(parts)


#: A stage's record of what it is and what it was made from (``tasks/run.json``,
#: ``answers/run.json``); features and probe keep theirs in ``meta.json`` / ``probe.json``.
RUN_RECORD = "run.json"


def write_run_record(stage_dir: str | os.PathLike[str], *, fingerprint: str,
                     inputs: Mapping[str, str | None]) -> Path:
    """Write ``stage_dir/run.json``: ``{"format": 1, "fingerprint": ..., "inputs": {...}}``.

    Parameters
    ----------
    stage_dir : path-like
        The stage's folder (``run/tasks``, ``run/answers``).
    fingerprint : str
        This artefact's fingerprint (:func:`fingerprint_of` of its content).
    inputs : mapping
        Fingerprints of the artefacts it was made from, by stage name (``features``,
        ``probe``, ``tasks``); ``None`` where the input had none.
    """
    return write_json(Path(stage_dir) / RUN_RECORD,
                      {"format": 1, "fingerprint": fingerprint, "inputs": dict(inputs)})


def read_run_record(stage_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``stage_dir/run.json`` as written by :func:`write_run_record`, or None when absent."""
    p = Path(stage_dir) / RUN_RECORD
    if not p.is_file():
        return None
    rec = read_json(p, what="a stage record (run.json)")
    if not isinstance(rec, dict) or not isinstance(rec.get("inputs", {}), dict):
        raise RunDirError(f"{p}: expected an object with 'fingerprint' and 'inputs'")
    return rec


def check_same_run(expected: str | None, actual: str | None, *, expected_from: str,
                   actual_from: str) -> None:
    """Refuse inputs of one stage that come from different runs.

    Parameters
    ----------
    expected : str or None
        The fingerprint an artefact recorded of its input (e.g. probe.json's features
        fingerprint). ``None`` (written before fingerprints existed) skips the check.
    actual : str or None
        The fingerprint of the input given now. ``None`` skips the check.
    expected_from, actual_from : str
        Where each came from (paths), named in the error.

    Raises
    ------
    RunMismatchError
        The two fingerprints differ.
    """
    if expected is None or actual is None or expected == actual:
        return
    raise RunMismatchError(
        f"{actual_from} (run {actual}) is not the input {expected_from} was made from "
        f"(run {expected}); use the files of one run")
