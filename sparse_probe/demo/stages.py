"""The demo's stages on one run directory, each a call of that stage's library function.

Each ``stage_*`` function runs its stage unless its outputs are complete and returns
``(one-line summary, resumed)``:

- :func:`stage_data`: :func:`sparse_probe.datasets.prepare.prepare_builtin` (dataset, small
  model trained on CPU, ``features/``);
- :func:`stage_fit`: :func:`sparse_probe.fitting.fit_features` (``probe/``);
- :func:`stage_build`: :func:`tasks.build.build_tasks` (``tasks/``);
- :func:`stage_report`: :func:`analysis.report.build_report` and
  :func:`analysis.counterfactual.runner.run_counterfactual` (``report/``).

Publishing, the simulated crowd and collection span all runs and the task server; they are in
:mod:`sparse_probe.demo.crowd`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparse_probe.demo.config import REPORT_METHOD, DemoConfig, write_json
from sparse_probe.rundir import RunDir, read_features_meta, read_json, read_jsonl

__all__ = ["crowd_complete", "manifest_rows", "n_assignments", "stage_build", "stage_data",
           "stage_fit", "stage_report"]


def _fmt(a: float | None) -> str:
    return "n/a" if a is None else f"{a:.3f}"


def stage_data(name: str, run: Path, config: DemoConfig, device: str | None,
               progress: bool) -> tuple[str, bool]:
    """Built-in dataset ``name``, its model and ``features/`` in ``run``."""
    from sparse_probe.datasets.prepare import prepare_builtin

    rd = RunDir(run)
    report_file = run / "models" / f"{name}.json"
    done = rd.features_meta.is_file() and report_file.is_file()
    if not done:
        prepare_builtin(name, run, seed=config.seed, quick=config.quick, device=device,
                        progress=progress, cues=config.cues if name == "shapes" else None)
    rep = read_json(report_file, what="the built-in model's training report")
    test = rep.get("test", {})
    meta = read_features_meta(rd.features)
    line = (f"{name}: model test accuracy {test.get('accuracy', float('nan')):.3f} "
            f"(cue-aligned {test.get('aligned_accuracy') or 0:.3f}, cue-flipped "
            f"{test.get('flipped_accuracy') or 0:.3f}); features d={meta['d']}, "
            f"{sum(meta['splits'].values())} examples")
    return line, done


def stage_fit(run: Path, config: DemoConfig, progress: bool) -> tuple[str, bool]:
    """The elastic-net path and the sparse head (``probe/``), with the demo's path options."""
    from sparse_probe.fitting import fit_features

    rd = RunDir(run)
    opts = config.fit
    done = rd.probe_json.is_file()
    if done:
        probe = read_json(rd.probe_json, what="probe.json from `sparse-probe fit`")
    else:
        probe = fit_features(rd.features, rd.probe, n_lambdas=int(opts["n_lambdas"]),
                             eps=opts["eps"], select_rule="val_acc_within=0.05",
                             progress=progress)
    acc, fpc = probe["accuracy"], probe["features_per_class"]
    line = (f"{run.name}: path n_lambdas={opts['n_lambdas']}, eps={opts['eps']:g} (the dense "
            f"end is slow on correlated features); test acc dense {_fmt(acc['dense']['test'])} "
            f"({fpc['dense']:.1f} features/class) vs sparse {_fmt(acc['sparse']['test'])} "
            f"({fpc['sparse']:.1f} features/class)")
    return line, done


def stage_build(run: Path, config: DemoConfig, device: str | None,
                progress: bool) -> tuple[str, bool]:
    """The HITs (``tasks/``), with the demo's assignments per HIT."""
    from tasks.build import build_tasks

    rd = RunDir(run)
    done = rd.manifest.is_file()
    if not done:
        build_tasks(rd.probe, rd.features, rd.tasks, seed=config.seed,
                    assignments=config.assignments, device=device, progress=progress,
                    **config.build)
    rows = manifest_rows(run)
    line = (f"{run.name}: {len(rows)} HITs ({sum(r['is_gold'] for r in rows)} gold), "
            f"{config.build['k_features']} features per class")
    return line, done


def manifest_rows(run: Path) -> list[dict[str, Any]]:
    """The lines of ``run/tasks/manifest.jsonl``."""
    return read_jsonl(RunDir(run).manifest, what="manifest.jsonl from `sparse-probe tasks build`")


def n_assignments(run: Path) -> int:
    """Distinct assignments in ``run/answers/answers.parquet`` (0 without it)."""
    from tasks.answers import read_answers

    rd = RunDir(run)
    if not rd.answers_parquet.is_file():
        return 0
    return int(read_answers(rd.answers)["assignment_id"].nunique())


def expected_assignments(run: Path, config: DemoConfig) -> int:
    """Assignments the HITs of ``run`` were published with, extensions included (from the
    publishing ledger; the configured number per HIT before publishing)."""
    from tasks.ledger import LEDGER_NAME, Ledger

    path = RunDir(run).tasks / LEDGER_NAME
    base = len(manifest_rows(run)) * config.assignments
    if not path.is_file():
        return base
    with Ledger(path) as ledger:
        hits = [h for h in ledger.hits() if h.state == "created"]
    return max(base, sum(h.max_assignments for h in hits))


def crowd_complete(run: Path, config: DemoConfig) -> bool:
    """Every HIT of ``run`` has all its assignments collected (extensions included)."""
    return n_assignments(run) >= expected_assignments(run, config)


def stage_report(run: Path, config: DemoConfig) -> tuple[str, bool]:
    """Verdicts and report (``report/``), then counterfactual tests of what was flagged."""
    from analysis.counterfactual.runner import run_counterfactual
    from analysis.report import ReportOptions, build_report

    rep_dir = RunDir(run).report
    cf = rep_dir / "counterfactual.json"
    done = False
    if cf.is_file() and (rep_dir / "report.json").is_file():  # up to date with the answers?
        old = json.loads((rep_dir / "report.json").read_text(encoding="utf-8"))
        done = old.get("summary", {}).get("n_answers") == n_assignments(run)
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
            write_json(cf, {"skipped": "no feature was judged spurious"})
    report = json.loads((rep_dir / "report.json").read_text(encoding="utf-8"))
    s = report["summary"]
    line = (f"{run.name}: {s['method']} verdicts: {s['n_features_audited']} features audited, "
            f"{s['n_spurious']} "
            f"spurious, {s['n_pending']} pending; workers kept {s['n_workers_kept']}/"
            f"{s['n_workers']}; report {rep_dir / 'index.html'}")
    return line, done
