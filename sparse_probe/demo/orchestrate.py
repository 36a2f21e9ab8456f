"""The whole audit end to end on the built-in data: :func:`run_demo` behind ``sparse-probe demo``.

It composes every stage's library function on the two built-in datasets (DESIGN.md,
"Built-in demo"): the spurious-shapes images (run directory ``OUT/shapes``) and the biased
toxicity corpus (``OUT/toxicity``):

1. data + model: :func:`sparse_probe.datasets.prepare.prepare_builtin` (dataset, small model
   trained on CPU, ``features/``);
2. the elastic-net path (``n_lambdas=30, eps=3e-2``; quick ``25, 2e-2``: the dense end of the
   path is slow on these highly correlated CNN features) and the sparse head
   (:func:`sparse_probe.fitting.fit_features`, ``probe/``);
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

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sparse_probe.demo.config import (
    DEMO_FORMAT,
    KINDS,
    DemoConfig,
    DemoConfigError,
    DemoResult,
    check_config,
    write_json,
)
from sparse_probe.demo.crowd import run_crowd
from sparse_probe.demo.server import running_server
from sparse_probe.demo.stages import (
    crowd_complete,
    stage_build,
    stage_data,
    stage_fit,
    stage_report,
)
from sparse_probe.demo.summary import summarize_run

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def _cue_config(cues: Mapping[str, Any] | Sequence[str] | None,
                kind: str) -> dict[str, dict[str, Any]] | None:
    """The demo's planted cues in full form (None: the dataset's defaults)."""
    from sparse_probe.datasets.shapes import DEFAULT_CUE_STRENGTH, CueError, cue_config, parse_cue

    if cues is None or len(cues) == 0:
        return None
    if "shapes" not in KINDS[kind]:
        raise DemoConfigError("cues are planted in the image audit; use --kind image or both",
                              "cue")
    try:
        if not isinstance(cues, Mapping):
            parsed: dict[str, Any] = {}
            for text in cues:
                name, spec = parse_cue(str(text))
                if name in parsed:
                    raise CueError(f"cue {name!r} given twice")
                parsed[name] = spec
            cues = parsed
        return cue_config(cues, DEFAULT_CUE_STRENGTH)
    except CueError as exc:
        raise DemoConfigError(str(exc), "cue") from None


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
    cues: Mapping[str, Any] | Sequence[str] | None = None,
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
    cues : mapping or sequence of str, optional
        The cues planted in the image audit instead of the defaults (watermark on triangle,
        texture on ring): ``{"stripe": "circle", "tint": {"class": "star", "strength": 0.8}}``
        or ``["stripe=circle", "tint=star:0.8"]`` (the ``--cue`` form); see
        :func:`sparse_probe.datasets.shapes.cue_config`. The summary reports each one.

    Returns
    -------
    DemoResult

    Raises
    ------
    DemoConfigError
        ``out_dir`` holds another configuration or is not a demo directory, or a cue names an
        unknown cue or class or a strength outside [0, 1] (``field`` ``"cue"``).
    """
    if kind not in KINDS:
        raise DemoConfigError(f"kind must be image, text or both, got {kind!r}", "kind")
    config = DemoConfig(kind=kind, workers=int(workers or (12 if quick else 15)),
                        assignments=int(assignments or (7 if quick else 5)), quick=bool(quick),
                        seed=int(seed), cues=_cue_config(cues, kind))
    if config.workers < config.assignments:
        raise DemoConfigError(f"workers ({config.workers}) must be at least assignments "
                              f"({config.assignments}): a worker answers a HIT once", "workers")
    out = Path(out_dir)
    state = check_config(out, config, force)
    result = DemoResult(out_dir=out, config=config)
    runs = {name: out / name for name in KINDS[kind]}
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
        stage("data", *stage_data(name, run, config, device, progress))
    for run in runs.values():
        stage("fit", *stage_fit(run, config, progress))
    for run in runs.values():
        stage("build", *stage_build(run, config, device, progress))

    pending = [r for r in runs.values() if not crowd_complete(r, config)]
    if pending or keep_server:
        run_crowd(out, state, config, runs, keep_server, stage, result)
    else:
        stage("crowd", "every HIT has its assignments; no server needed", True)
        kept = running_server(state, (out / "server" / "server.sqlite").resolve())
        if kept is not None:  # kept by an earlier --keep-server run: no longer needed
            kept.stop()
            state["server"]["running"] = False
            write_json(out / "demo.json", state)
            stage("server", f"stopped the task server kept by an earlier run (pid {kept.pid})")
    if keep_server:
        return result

    for run in runs.values():
        stage("report", *stage_report(run, config))
    summary = {"format": DEMO_FORMAT, "config": asdict(config),
               "runs": {name: summarize_run(run) for name, run in runs.items()}}
    write_json(out / "demo_summary.json", summary)
    result.summary = summary
    return result
