"""What makes one demo run, what it did, and its record ``OUT/demo.json``."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparse_probe.rundir import write_text

__all__ = ["DEMO_FORMAT", "KINDS", "REPORT_METHOD", "SPAMMER_SHARE", "DemoConfig",
           "DemoConfigError", "DemoResult", "check_config", "cue_flags", "write_json"]

DEMO_FORMAT = 1
#: ``kind`` option -> built-in dataset names (run directories under OUT).
KINDS: dict[str, tuple[str, ...]] = {"image": ("shapes",), "text": ("toxicity",),
                                     "both": ("shapes", "toxicity")}
#: Share of spammers in the simulated crowd.
SPAMMER_SHARE = 0.2
#: crowd-kit aggregation of the demo's report (see :func:`analysis.aggregate.aggregate`).
REPORT_METHOD = "Wawa"


class DemoConfigError(ValueError):
    """``OUT`` holds a demo run of another configuration (``field`` names the difference)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DemoConfig:
    """What makes one demo run (recorded in ``OUT/demo.json``)."""

    kind: str = "both"
    workers: int = 15
    assignments: int = 5
    quick: bool = False
    seed: int = 0
    #: Planted cues of the image audit ({name: {"class", "strength"}}); None: the defaults.
    cues: dict[str, dict[str, Any]] | None = None
    #: Assignments added once to each HIT left ``undecided`` after the first answers (0: none;
    #: MTurk's rule keeps a HIT created with fewer than 10 below 10).
    extra_assignments: int = 2

    @property
    def fillable_extra(self) -> int:
        """Assignments an undecided HIT can get from the simulated crowd: at most
        ``extra_assignments``, and no more than the workers who have not answered it (a worker
        answers a HIT once; ``workers == assignments`` leaves none)."""
        return max(0, min(self.extra_assignments, self.workers - self.assignments))

    @property
    def fit(self) -> dict[str, float]:
        """Path options: fewer, less dense points than the default (the dense end of the path
        is slow on these highly correlated CNN features)."""
        return {"n_lambdas": 25, "eps": 2e-2} if self.quick else {"n_lambdas": 30, "eps": 3e-2}

    @property
    def build(self) -> dict[str, int]:
        """:func:`tasks.build.build_tasks` sizes."""
        return ({"k_features": 4, "fvis_steps": 8} if self.quick
                else {"k_features": 5, "fvis_steps": 48})


@dataclass
class DemoResult:
    """What :func:`sparse_probe.demo.run_demo` did.

    Attributes
    ----------
    out_dir : Path
    config : DemoConfig
    runs : dict of str to Path
        Run directory per built-in dataset name.
    stages : list of (str, str)
        (stage, one-line summary) in the order they ran.
    summary : dict or None
        The content of ``OUT/demo_summary.json`` (None while answers are awaited).
    server_url, server_pid : str or None, int or None
        The task server of this run (the pid of its process).
    server_kept : bool
        The server was left running (``keep_server``).
    resumed : list of str
        Stages skipped because their outputs were complete.
    next_steps : list of str
        With ``keep_server``: the commands that finish the audit.
    """

    out_dir: Path
    config: DemoConfig
    runs: dict[str, Path] = field(default_factory=dict)
    stages: list[tuple[str, str]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    server_url: str | None = None
    server_pid: int | None = None
    server_kept: bool = False
    resumed: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def cue_flags(cues: dict[str, dict[str, Any]] | None) -> str:
    """The ``--cue`` options that give ``cues`` (``no --cue`` for the defaults)."""
    if not cues:
        return "no --cue"
    return " ".join(f"--cue {name}={c['class']}:{c['strength']:g}" for name, c in cues.items())


def write_json(path: Path, data: Any) -> None:
    """Indented JSON, written atomically (anything not JSON-able as ``str``)."""
    write_text(path, json.dumps(data, indent=2, default=str))


def check_config(out: Path, config: DemoConfig, force: bool) -> dict[str, Any]:
    """Create or check ``OUT/demo.json``; returns its state dict.

    Raises
    ------
    DemoConfigError
        ``out`` is not empty and not a demo directory, its record is unreadable, or it holds
        a run of another configuration.
    """
    from sparse_probe.demo.server import running_server

    state_file = out / "demo.json"
    if force and out.exists():
        if not state_file.is_file() and any(out.iterdir()):
            raise DemoConfigError(f"{out}: not empty and not a demo directory (no demo.json); "
                                  "refusing to delete it with --force", "out")
        if state_file.is_file():  # a server kept by an earlier run must not outlive its files
            try:
                old_state = json.loads(state_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old_state = {}
            kept = running_server(old_state, (out / "server" / "server.sqlite").resolve())
            if kept is not None:
                kept.stop()
        shutil.rmtree(out)
    if out.exists() and not state_file.is_file() and any(out.iterdir()):
        raise DemoConfigError(f"{out}: not empty and has no demo.json; choose another --out",
                              "out")
    out.mkdir(parents=True, exist_ok=True)
    want = asdict(config)
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            have = state["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DemoConfigError(f"{state_file}: unreadable demo record ({exc}); use --force "
                                  "to start over", "demo.json") from None
        for key in ("quick", "kind", "seed", "workers", "assignments", "cues"):
            if have.get(key) != want[key]:
                old = have.get(key)
                flag = (("--quick" if old else "no --quick") if key == "quick"
                        else cue_flags(old) if key == "cues" else f"--{key} {old}")
                raise DemoConfigError(
                    f"{out} holds a demo run with {key}={old!r}, not {want[key]!r}; rerun "
                    f"with {flag} to resume, use another --out, or --force to start over", key)
        return state
    state = {"format": DEMO_FORMAT, "config": want, "server": {}}
    write_json(state_file, state)
    return state

