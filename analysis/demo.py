"""The whole audit end to end on the built-in data: ``sparse-probe demo``.

:func:`run_demo` composes every stage's library function on the two built-in datasets (DESIGN.md,
"Built-in demo"): the spurious-shapes images (run directory ``OUT/shapes``) and the biased
toxicity corpus (``OUT/toxicity``):

1. data + model: :func:`sparse_probe.datasets.prepare.prepare_builtin` (dataset, small model
   trained on CPU, ``features/``);
2. the elastic-net path (``n_lambdas=30, eps=3e-2``; quick ``25, 2e-2``: the dense end of the
   path is slow on these highly correlated CNN features) and the sparse head (``probe/``);
3. HITs (:func:`tasks.build.build_tasks`), one task server for all kinds (a ``tasks serve``
   child process on a loopback port, database ``OUT/server/server.sqlite``), publishing through
   boto3 (:func:`tasks.publish.publish_batch`);
4. simulated workers with some spammers (:func:`tasks.simulate.simulate_crowd`) until every HIT
   has its assignments;
5. collection, quality control, aggregation (crowd-kit's Wawa: with few HITs per question
   Dawid-Skene can leave unanimous votes undecided) and the report
   (:func:`analysis.report.build_report`), then counterfactual tests
   (:func:`analysis.counterfactual.runner.run_counterfactual`) into ``OUT/<name>/report/``;
6. a summary: the features judged spurious and, from the generator's ground truth, whether each
   planted cue was found, missed, or what was flagged falsely (``OUT/demo_summary.json``).

Re-running into the same ``OUT`` resumes: every stage checks its outputs (``features/meta.json``,
``probe/probe.json``, ``tasks/manifest.jsonl``, the publishing ledger, ``answers.parquet``,
``report/``). The configuration is recorded in ``OUT/demo.json``; a different one is refused
(:class:`DemoConfigError`). The server is stopped on exit, also on errors, unless
``keep_server`` asks to leave it running for people to answer in a browser.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_FORMAT", "KINDS", "DemoConfig", "DemoConfigError", "DemoResult", "run_demo",
           "summarize_run", "summary_lines"]

log = logging.getLogger(__name__)

DEMO_FORMAT = 1
#: ``kind`` option -> built-in dataset names (run directories under OUT).
KINDS: dict[str, tuple[str, ...]] = {"image": ("shapes",), "text": ("toxicity",),
                                     "both": ("shapes", "toxicity")}
#: Share of spammers in the simulated crowd.
SPAMMER_SHARE = 0.2
#: crowd-kit aggregation of the demo's report (see :func:`analysis.aggregate.aggregate`).
REPORT_METHOD = "Wawa"
_SERVER_ENV = ("SPARSE_PROBE_ACCESS_KEY_ID", "SPARSE_PROBE_SECRET_ACCESS_KEY",
               "SPARSE_PROBE_ADMIN_USER", "SPARSE_PROBE_ADMIN_PASSWORD",
               "SPARSE_PROBE_DATABASE_URL")


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

    @property
    def fit(self) -> dict[str, float]:
        """Path options: fewer, less dense points than the default (speed, see module doc)."""
        return {"n_lambdas": 25, "eps": 2e-2} if self.quick else {"n_lambdas": 30, "eps": 3e-2}

    @property
    def build(self) -> dict[str, int]:
        """:func:`tasks.build.build_tasks` sizes."""
        return ({"k_features": 4, "fvis_steps": 8} if self.quick
                else {"k_features": 5, "fvis_steps": 48})


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

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


# --------------------------------------------------------------------------- config file
def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _check_config(out: Path, config: DemoConfig, force: bool) -> dict[str, Any]:
    """Create or check ``OUT/demo.json``; returns its state dict."""
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
            kept = _running_server(old_state, (out / "server" / "server.sqlite").resolve())
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
        for key in ("quick", "kind", "seed", "workers", "assignments"):
            if have.get(key) != want[key]:
                old = have.get(key)
                flag = (("--quick" if old else "no --quick") if key == "quick"
                        else f"--{key} {old}")
                raise DemoConfigError(
                    f"{out} holds a demo run with {key}={old!r}, not {want[key]!r}; rerun "
                    f"with {flag} to resume, use another --out, or --force to start over", key)
        return state
    state = {"format": DEMO_FORMAT, "config": want, "server": {}}
    _write_json(state_file, state)
    return state


# --------------------------------------------------------------------------- task server
def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress: TIME_WAIT is ok
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class _Server:
    url: str
    pid: int
    creds: dict[str, str] = field(repr=False)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def admin_auth(self) -> tuple[str, str]:
        return self.creds["admin_user"], self.creds["admin_password"]

    def stop(self) -> None:
        """Terminate the server process and any processes it started (idempotent)."""
        import psutil

        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        try:
            self._stop_main()
        finally:
            for c in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    c.terminate()
            psutil.wait_procs(children, timeout=10)

    def _stop_main(self) -> None:
        import psutil

        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            return
        try:  # a server kept by an earlier run: ours by its command line
            p = psutil.Process(self.pid)
            p.terminate()
            p.wait(timeout=15)
        except psutil.NoSuchProcess:
            pass  # gone already: nothing to stop
        except psutil.TimeoutExpired:
            p.kill()


def _running_server(state: dict[str, Any], db: Path) -> _Server | None:
    """The server an earlier ``keep_server`` run left running on ``db``, if it still runs."""
    import psutil
    import requests

    info = state.get("server") or {}
    pid, url = info.get("pid"), info.get("url")
    if not isinstance(info, dict) or not info.get("running") or not pid or not url:
        return None
    try:
        cmd = " ".join(psutil.Process(int(pid)).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "tasks.server.cli" not in cmd or str(db) not in cmd:
        return None
    try:
        requests.get(f"{url}/worker/login", timeout=5)
    except requests.RequestException:
        return None
    try:
        creds = _read_creds(db)
    except (OSError, json.JSONDecodeError):
        return None
    return _Server(url, int(pid), creds)


def _read_creds(db: Path) -> dict[str, str]:
    from tasks.server.credentials import credentials_path_for

    return json.loads(credentials_path_for(db).read_text(encoding="utf-8"))


def _start_server(db: Path, port: int, detach: bool, timeout: float = 60.0) -> _Server:
    """``tasks serve`` on ``127.0.0.1:port`` in its own process (own session when detached)."""
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV}
    log_path = db.with_name("server.log")
    cmd = [sys.executable, "-c", "from tasks.server.cli import serve; serve()",
           "--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--threads", "8"]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=detach)
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"task server exited with {proc.returncode}; see {log_path}")
            try:
                requests.get(f"{url}/worker/login", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"task server did not answer at {url} within "
                                       f"{timeout:.0f}s; see {log_path}") from None
                time.sleep(0.2)
        creds = _read_creds(db)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return _Server(url, proc.pid, creds, proc)


# --------------------------------------------------------------------------- stages
def _stage_data(name: str, run: Path, config: DemoConfig, device: str | None,
                progress: bool) -> tuple[str, bool]:
    from sparse_probe.datasets.prepare import prepare_builtin

    report_file = run / "models" / f"{name}.json"
    done = (run / "features" / "meta.json").is_file() and report_file.is_file()
    if not done:
        prepare_builtin(name, run, seed=config.seed, quick=config.quick, device=device,
                        progress=progress)
    rep = json.loads(report_file.read_text(encoding="utf-8"))
    test = rep.get("test", {})
    meta = json.loads((run / "features" / "meta.json").read_text(encoding="utf-8"))
    line = (f"{name}: model test accuracy {test.get('accuracy', float('nan')):.3f} "
            f"(cue-aligned {test.get('aligned_accuracy') or 0:.3f}, cue-flipped "
            f"{test.get('flipped_accuracy') or 0:.3f}); features d={meta['d']}, "
            f"{sum(meta['splits'].values())} examples")
    return line, done


def _stage_fit(run: Path, config: DemoConfig, progress: bool) -> tuple[str, bool]:
    from sparse_probe import fit_path, select
    from sparse_probe.fit_cli import load_features_split
    from sparse_probe.probe import write_probe

    probe_file = run / "probe" / "probe.json"
    done = probe_file.is_file()
    if done:
        probe = json.loads(probe_file.read_text(encoding="utf-8"))
    else:
        feats = run / "features"
        meta = json.loads((feats / "meta.json").read_text(encoding="utf-8"))
        X, y = load_features_split(feats, "train", required=True)
        X_val, y_val = load_features_split(feats, "val", required=False)
        X_test, y_test = load_features_split(feats, "test", required=False)
        opts = config.fit
        path = fit_path(X, y, alpha=0.99, n_lambdas=opts["n_lambdas"], eps=opts["eps"],
                        X_val=X_val, y_val=y_val, n_classes=len(meta["classes"]),
                        classes=meta["classes"], progress=progress)
        selection = select(path, "val_acc_within", 0.05)
        test = (np.load(X_test, mmap_mode="r"), y_test) if X_test else None
        probe = write_probe(path, selection, run / "probe", features_dir=str(feats.resolve()),
                            fit_options=dict(opts), test=test)
    acc, fpc = probe["accuracy"], probe["features_per_class"]

    def fmt(a: float | None) -> str:
        return "n/a" if a is None else f"{a:.3f}"

    opts = config.fit
    line = (f"{run.name}: path n_lambdas={opts['n_lambdas']}, eps={opts['eps']:g} (the dense "
            f"end is slow on correlated features); test acc dense {fmt(acc['dense']['test'])} "
            f"({fpc['dense']:.1f} features/class) vs sparse {fmt(acc['sparse']['test'])} "
            f"({fpc['sparse']:.1f} features/class)")
    return line, done


def _stage_build(run: Path, config: DemoConfig, device: str | None,
                 progress: bool) -> tuple[str, bool]:
    from tasks.build import build_tasks

    manifest = run / "tasks" / "manifest.jsonl"
    done = manifest.is_file()
    if not done:
        build_tasks(run / "probe", run / "features", run / "tasks", seed=config.seed,
                    assignments=config.assignments, device=device, progress=progress,
                    **config.build)
    rows = _manifest(run)
    line = (f"{run.name}: {len(rows)} HITs ({sum(r['is_gold'] for r in rows)} gold), "
            f"{config.build['k_features']} features per class")
    return line, done


def _manifest(run: Path) -> list[dict[str, Any]]:
    text = (run / "tasks" / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _n_assignments(run: Path) -> int:
    from tasks.answers import read_answers

    if not (run / "answers" / "answers.parquet").is_file():
        return 0
    return int(read_answers(run / "answers")["assignment_id"].nunique())


def _crowd_complete(run: Path, config: DemoConfig) -> bool:
    return _n_assignments(run) >= len(_manifest(run)) * config.assignments


def _stage_report(run: Path, config: DemoConfig) -> tuple[str, bool]:
    from analysis.counterfactual.runner import run_counterfactual
    from analysis.report import ReportOptions, build_report

    rep_dir = run / "report"
    cf = rep_dir / "counterfactual.json"
    done = False
    if cf.is_file() and (rep_dir / "report.json").is_file():  # up to date with the answers?
        old = json.loads((rep_dir / "report.json").read_text(encoding="utf-8"))
        done = old.get("summary", {}).get("n_answers") == _n_assignments(run)
    if not done:
        # Wawa (agreement-weighted majority): with a handful of HITs per question Dawid-Skene's
        # confusion matrices are barely identified and can leave unanimous votes undecided
        build_report(run, rep_dir, ReportOptions(method=REPORT_METHOD,
                                                 n_boot=50 if config.quick else 200,
                                                 seed=config.seed))
        report = json.loads((rep_dir / "report.json").read_text(encoding="utf-8"))
        meta_kind = report["summary"]["kind"]
        spurious = [r for r in report["features"] if r["verdict"] == "spurious"]
        n = 100 if config.quick else 200
        if meta_kind == "text":
            from sparse_probe.datasets.toxicity import IDENTITY_TERMS, load_lexicon

            # identity terms beside neutral object words (the control group)
            lexicon = {g: list(t[:6]) for g, t in IDENTITY_TERMS.items()}
            lexicon["control"] = load_lexicon("objects")[:6]
            run_counterfactual(run, rep_dir, n=n, lexicon=lexicon, seed=config.seed)
        elif spurious:
            run_counterfactual(run, rep_dir, n=n, seed=config.seed)
        else:
            _write_json(cf, {"skipped": "no feature was judged spurious"})
    report = json.loads((rep_dir / "report.json").read_text(encoding="utf-8"))
    s = report["summary"]
    line = (f"{run.name}: {s['method']} verdicts: {s['n_features_audited']} features audited, "
            f"{s['n_spurious']} "
            f"spurious, {s['n_pending']} pending; workers kept {s['n_workers_kept']}/"
            f"{s['n_workers']}; report {rep_dir / 'index.html'}")
    return line, done


# --------------------------------------------------------------------------- summary
def _planted_cues(run: Path) -> list[dict[str, Any]]:
    """The planted cues of a built-in run, from the generator's own record."""
    from sparse_probe.datasets.prepare import load_builtin

    meta = json.loads((run / "features" / "meta.json").read_text(encoding="utf-8"))
    ds = load_builtin(meta)
    if meta["kind"] == "image":
        return [{"cue": cue, "kind": ds.cue_kind[cue], "class": int(c),
                 "class_name": ds.class_names[c]} for cue, c in ds.cue_class.items()]
    toxic = ds.class_names.index("toxic")
    return [{"cue": "identity terms", "kind": "identity", "class": toxic,
             "class_name": ds.class_names[toxic]}]


def _counterfactual_summary(run: Path) -> list[dict[str, Any]]:
    import pandas as pd

    csv = run / "report" / "counterfactual.csv"
    if not csv.is_file():
        return []
    df = pd.read_csv(csv)
    out = []
    if "test" in df.columns and (df["test"] == "image_patch").any():
        for (c, f, m), g in df.groupby(["class", "feature", "model"]):
            g = g.set_index("test")
            if {"image_patch", "image_control"} <= set(g.index):
                out.append({"class": int(c), "feature": int(f), "model": str(m),
                            "flip_rate": float(g.loc["image_patch", "flip_rate"]),
                            "control_flip_rate": float(g.loc["image_control", "flip_rate"])})
    elif {"group", "term", "direction"} <= set(df.columns):
        pooled = df[(df["term"] == "*") & (df["direction"] == "to_toxic")]
        for m, g in pooled.groupby("model"):
            g = g.set_index("group")
            if "control" not in g.index:
                continue
            for group in g.index:
                if group != "control":
                    out.append({"group": str(group), "model": str(m),
                                "flip_rate": float(g.loc[group, "flip_rate"]),
                                "control_flip_rate": float(g.loc["control", "flip_rate"])})
    return out


def summarize_run(run: Path) -> dict[str, Any]:
    """Flagged features and the fate of each planted cue for one finished run directory.

    A cue is ``found`` when a feature whose HIT shows it (``truth`` from the builder) was judged
    spurious, ``missed`` otherwise; ``shown`` says whether any HIT showed it to the crowd.
    Features judged spurious whose ground truth is not a planted cue are false alarms.
    """
    report = json.loads((run / "report" / "report.json").read_text(encoding="utf-8"))
    rows = report["features"]
    flagged = [{"class": r["class"], "class_name": r["class_name"], "feature": r["feature"],
                "kind": r["kind"], "truth": r["truth"], "gold": bool(r["is_gold"])}
               for r in rows if r["verdict"] == "spurious"]
    cues = []
    for cue in _planted_cues(run):
        truth = f"spurious:{cue['kind']}"
        shown = [r for r in rows if r["truth"] == truth]
        hits = [r for r in shown if r["verdict"] == "spurious"]
        if hits:
            status, note = "found", (f"flagged {len(hits)} of {len(shown)} features whose "
                                     "HITs show it")
        elif shown:
            status, note = "missed", (f"shown in {len(shown)} HITs but not judged spurious "
                                      f"(verdicts: {sorted({r['verdict'] for r in shown})})")
        else:
            status, note = "missed", ("no audited feature's evidence shows it (the heatmaps "
                                      "attribute it elsewhere or it is not a top feature)")
        cues.append({**cue, "status": status, "shown": bool(shown),
                     "features": [[r["class"], r["feature"]] for r in hits], "note": note})
    false_alarms = [f for f in flagged if not (f["truth"] or "").startswith("spurious")]
    core_flagged = [f for f in flagged if f["truth"] == "core"]
    return {"run": str(run), "kind": report["summary"]["kind"],
            "report": str(run / "report" / "index.html"), "flagged": flagged, "cues": cues,
            "false_alarms": false_alarms, "core_flagged_spurious": len(core_flagged),
            "counterfactual": _counterfactual_summary(run)}


def _listing(items) -> str:
    """Comma-separated items, or ``none``."""
    return ", ".join(items) or "none"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The console form of ``OUT/demo_summary.json``."""
    lines = []
    for name, s in summary["runs"].items():
        lines.append(f"{name}: report {s['report']}")
        lines.append("  judged spurious: " + _listing(
            f"{f['class_name']}:{f['feature']} ({f['kind']})" for f in s["flagged"]))
        for c in s["cues"]:
            lines.append(f"  planted cue {c['cue']!r} ({c['kind']}, class {c['class_name']}): "
                         f"{c['status'].upper()} - {c['note']}")
        lines.append("  false alarms: " + _listing(
            f"{f['class_name']}:{f['feature']} (truth {f['truth']})" for f in s["false_alarms"]))
        for r in s["counterfactual"]:
            what = (f"group {r['group']}" if "group" in r
                    else f"feature {r['class']}:{r['feature']}")
            lines.append(f"  counterfactual ({r['model']}): {what} flips {r['flip_rate']:.2f} "
                         f"vs control {r['control_flip_rate']:.2f}")
    return lines


# --------------------------------------------------------------------------- driver
def run_demo(
    out_dir: str | os.PathLike,
    *,
    kind: str = "both",
    workers: int | None = None,
    assignments: int | None = None,
    quick: bool = False,
    keep_server: bool = False,
    seed: int = 0,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
    on_stage: Callable[[str, str], None] | None = None,
) -> DemoResult:
    """Run (or resume) the whole built-in audit into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Demo directory: ``shapes/`` and ``toxicity/`` run directories, ``server/``,
        ``demo.json`` (configuration), ``demo_summary.json``.
    kind : {"image", "text", "both"}
    workers : int, optional
        Simulated workers (default 15, quick 12); 20% of them spammers, a quarter of the
        others noisy.
    assignments : int, optional
        Assignments per HIT (default 5, quick 7: quick runs have few HITs, so more answers
        per HIT keep the verdicts stable).
    quick : bool
        Small data, short path, fewer HIT features (for tests).
    keep_server : bool
        Publish, then leave the task server running for people instead of simulated workers
        (no simulation, collection or report; ``result.next_steps`` says how to finish).
    seed : int
    force : bool
        Delete ``out_dir`` (a demo directory) and start over.
    device : str, optional
        torch device for training, extraction and HIT building.
    progress : bool
        tqdm bars per stage.
    on_stage : callable (stage, line), optional
        Called with each stage's one-line summary as it finishes.

    Raises
    ------
    DemoConfigError
        ``out_dir`` holds another configuration or is not a demo directory.
    """
    if kind not in KINDS:
        raise DemoConfigError(f"kind must be image, text or both, got {kind!r}", "kind")
    config = DemoConfig(kind=kind, workers=int(workers or (12 if quick else 15)),
                        assignments=int(assignments or (7 if quick else 5)), quick=bool(quick), seed=int(seed))
    if config.workers < config.assignments:
        raise DemoConfigError(f"workers ({config.workers}) must be at least assignments "
                              f"({config.assignments}): a worker answers a HIT once", "workers")
    out = Path(out_dir)
    state = _check_config(out, config, force)
    result = DemoResult(out_dir=out, config=config)
    names = KINDS[kind]
    runs = {name: out / name for name in names}
    result.runs = runs

    def stage(name: str, line: str, done: bool = False) -> None:
        if done:
            result.resumed.append(name)
            line += " [resumed]"
        result.stages.append((name, line))
        log.info("%s: %s", name, line)
        if on_stage is not None:
            on_stage(name, line)

    for name, run in runs.items():
        run.mkdir(parents=True, exist_ok=True)
        stage("data", *_stage_data(name, run, config, device, progress))
    for run in runs.values():
        stage("fit", *_stage_fit(run, config, progress))
    for run in runs.values():
        stage("build", *_stage_build(run, config, device, progress))

    pending = [r for r in runs.values() if not _crowd_complete(r, config)]
    if pending or keep_server:
        _crowd(out, state, config, runs, keep_server, progress, stage, result)
    else:
        stage("crowd", "every HIT has its assignments; no server needed", True)
        kept = _running_server(state, (out / "server" / "server.sqlite").resolve())
        if kept is not None:  # kept by an earlier --keep-server run: no longer needed
            kept.stop()
            state["server"]["running"] = False
            _write_json(out / "demo.json", state)
            stage("server", f"stopped the task server kept by an earlier run (pid {kept.pid})")
    if keep_server:
        return result

    for run in runs.values():
        stage("report", *_stage_report(run, config))
    summary = {"format": DEMO_FORMAT, "config": asdict(config),
               "runs": {name: summarize_run(run) for name, run in runs.items()}}
    _write_json(out / "demo_summary.json", summary)
    result.summary = summary
    return result


def _crowd(out: Path, state: dict[str, Any], config: DemoConfig, runs: dict[str, Path],
           keep_server: bool, progress: bool, stage: Callable[..., None],
           result: DemoResult) -> None:
    """Stages 3b-5a: server, publish, simulated crowd, collect (server stopped on exit)."""
    from tasks.client import make_client, resolve_endpoint
    from tasks.collect import collect_answers
    from tasks.publish import PublishOptions, publish_batch
    from tasks.simulate import simulate_crowd

    server_dir = out / "server"
    server_dir.mkdir(exist_ok=True)
    db = (server_dir / "server.sqlite").resolve()
    srv = _running_server(state, db)
    if srv is None:
        port = (state.get("server") or {}).get("port")
        if port and not _port_free(int(port)):
            raise RuntimeError(f"port {port} (where this demo's HITs were published) is busy; "
                               "free it and rerun to resume")
        srv = _start_server(db, int(port or _free_port()), detach=keep_server)
    state["server"] = {"url": srv.url, "port": int(srv.url.rsplit(":", 1)[1]), "pid": srv.pid,
                       "db": str(db), "running": True, "kept": keep_server}
    _write_json(out / "demo.json", state)
    result.server_url, result.server_pid = srv.url, srv.pid
    try:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.creds["access_key_id"],
                             secret_access_key=srv.creds["secret_access_key"])
        for run in runs.values():
            pub = publish_batch(run / "tasks", client, ep,
                                PublishOptions(assignments=config.assignments),
                                admin_auth=srv.admin_auth)
            stage("publish", f"{run.name}: {pub.summary()}")
        if keep_server:
            result.server_kept = True
            from tasks.server.credentials import credentials_path_for

            creds = credentials_path_for(db)
            result.next_steps = [
                f"workers answer at {srv.url}/worker/ (admin progress: {srv.url}/admin/, "
                f"login and password in {creds})",
                f"worker login token: sparse-probe tasks serve --db {db} --issue-token "
                "WORKER_ID",
                *[f"sparse-probe tasks collect {run / 'tasks'} --out {run / 'answers'} "
                  f"--credentials {creds}" for run in runs.values()],
                *[f"sparse-probe report --run {run}" for run in runs.values()],
                *[f"sparse-probe counterfactual --run {run}" for run in runs.values()],
                f"stop the server: kill {srv.pid}",
            ]
            stage("server", f"task server left running at {srv.url} (pid {srv.pid})")
            return
        sim_dir = server_dir / "simulation"
        sim_dir.mkdir(exist_ok=True)
        with open(sim_dir / "manifest.jsonl", "w", encoding="utf-8") as fh:
            for run in runs.values():
                for row in _manifest(run):
                    fh.write(json.dumps(row) + "\n")
        sim = simulate_crowd(srv.url, sim_dir, n_workers=config.workers,
                             spammer_share=SPAMMER_SHARE, seed=config.seed,
                             concurrency=4, admin_auth=srv.admin_auth, time_scale=0.0)
        kinds: dict[str, int] = {}
        for p in sim.profiles.values():
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        stage("crowd", f"{sim.submitted} assignments submitted by {len(sim.profiles)} simulated "
                       f"workers ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
        for run in runs.values():
            col = collect_answers(run / "tasks", run / "answers", client, ep)
            missing = len(_manifest(run)) * config.assignments - _n_assignments(run)
            if missing > 0:
                raise RuntimeError(f"{run.name}: {missing} assignments still missing after "
                                   "the simulated crowd; rerun to resume")
            stage("collect", f"{run.name}: {col.summary()}")
    finally:
        if not keep_server:
            srv.stop()
            state["server"]["running"] = False
            _write_json(out / "demo.json", state)
