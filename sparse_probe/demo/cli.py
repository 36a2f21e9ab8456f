"""``sparse-probe demo``: the whole audit end to end on the built-in data (thin wrapper over
:func:`sparse_probe.demo.run_demo`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

STAGE_TITLES = {
    "data": "1/6 data + model", "fit": "2/6 sparse head", "build": "3/6 HITs",
    "publish": "3/6 publish", "server": "3/6 server", "crowd": "4/6 crowd",
    "collect": "5/6 collect", "extend": "5/6 extend", "report": "5/6 report",
}


@click.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Demo directory.")
@click.option("--kind", type=click.Choice(["image", "text", "both"]), default="both",
              show_default=True, help="Which built-in audits to run.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Simulated workers (20% spammers) [default: 15, quick 12].")
@click.option("--assignments", type=click.IntRange(1), default=None,
              help="Assignments per HIT [default: 5, quick 7].")
@click.option("--keep-server", is_flag=True,
              help="Publish, then leave the task server running for people to answer in a "
                   "browser (no simulated workers); prints how to finish.")
@click.option("--quick", is_flag=True, help="Small data and short path (tests; ~1-2 min).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Delete OUT (a demo directory) and start over.")
@click.option("--device", default=None, help="torch device (cpu, cuda) [default: cpu].")
@click.option("--cue", "cues", multiple=True, metavar="NAME=CLASS[:STRENGTH]",
              help="Plant this cue in the image audit (repeatable; replaces the default "
                   "watermark=triangle and texture=ring). NAME: watermark, texture, stripe "
                   "(border bar), tint (background colour); CLASS: circle, cross, ring, square, "
                   "star, triangle; STRENGTH in [0, 1]: share of the class's train images with "
                   "the cue [default: 0.9].")
def demo(out_dir: Path, kind: str, workers: int | None, assignments: int | None,
         keep_server: bool, quick: bool, seed: int, force: bool, device: str | None,
         cues: tuple[str, ...]) -> None:
    """Run every stage on the built-in datasets with a simulated crowd and report what was
    found. Re-running into the same OUT resumes."""
    from sparse_probe.demo import DemoConfigError, run_demo, summary_lines

    def on_stage(name: str, line: str) -> None:
        click.echo(f"[{STAGE_TITLES.get(name, name)}] {line}")

    def sigterm(*_: object) -> None:  # run the cleanup (stop the server) on SIGTERM too
        sys.exit(143)

    previous = signal.signal(signal.SIGTERM, sigterm)
    try:
        result = run_demo(out_dir, kind=kind, workers=workers, assignments=assignments,
                          quick=quick, keep_server=keep_server, seed=seed, force=force,
                          device=device, progress=True, on_stage=on_stage,
                          cues=list(cues) or None)
    except DemoConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}"
                                 if exc.field in ("kind", "workers", "assignments", "quick",
                                                  "seed", "out", "cue") else None) from None
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.server_kept:
        click.echo(f"\nThe task server keeps running at {result.server_url} "
                   f"(pid {result.server_pid}). To finish the audit:")
        for step in result.next_steps:
            click.echo(f"  {step}")
        return
    click.echo("")
    for line in summary_lines(result.summary or {"runs": {}}):
        click.echo(line)
    click.echo(f"summary: {out_dir / 'demo_summary.json'}")
