"""``sparse-probe report`` and ``sparse-probe counterfactual``: thin wrappers over
:func:`analysis.report.build_report` and :func:`analysis.counterfactual.runner.run_counterfactual`.
"""

from __future__ import annotations

from pathlib import Path

import click

from analysis.aggregate import METHODS
from analysis.ingest import IngestError
from analysis.quality import QCConfig


@click.command()
@click.option("--run", "run_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run directory (tasks/, answers/, probe/, features/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: RUN/report].")
@click.option("--method", type=click.Choice(METHODS), default="DawidSkene", show_default=True,
              help="crowd-kit aggregation method (majority vote is always shown beside it).")
@click.option("--min-gold-accuracy", type=click.FloatRange(0, 1), default=0.6,
              show_default=True, help="Exclude workers below this gold accuracy.")
@click.option("--min-gold-answers", type=click.IntRange(1), default=1, show_default=True,
              help="Gold HITs a worker must answer before the gold rule applies.")
@click.option("--require-attention/--no-require-attention", default=True, show_default=True,
              help="Exclude workers who fail attention checks.")
@click.option("--min-seconds", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Assignments faster than this are 'fast'.")
@click.option("--min-time-fraction", type=click.FloatRange(0, 1), default=0.2,
              show_default=True, help="Assignments faster than this fraction of the median "
                                      "time are 'fast'.")
@click.option("--max-fast-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Exclude workers with a larger share of fast assignments.")
@click.option("--min-posterior", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Labels with a lower posterior leave the verdict undecided.")
@click.option("--n-boot", type=click.IntRange(0), default=500, show_default=True,
              help="Bootstrap resamples for agreement intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
def report(run_dir: Path, out: Path | None, method: str, min_gold_accuracy: float,
           min_gold_answers: int, require_attention: bool, min_seconds: float,
           min_time_fraction: float, max_fast_share: float, min_posterior: float,
           n_boot: int, seed: int) -> None:
    """Aggregate crowd answers into verdicts and write RUN/report (HTML, JSON, CSV, figures)."""
    from analysis.report import ReportOptions, build_report

    qc = QCConfig(min_gold_accuracy=min_gold_accuracy, min_gold_answers=min_gold_answers,
                  require_attention=require_attention, min_seconds=min_seconds,
                  min_time_fraction=min_time_fraction, max_fast_share=max_fast_share)
    options = ReportOptions(method=method, qc=qc, min_posterior=min_posterior, n_boot=n_boot,
                            seed=seed)
    try:
        result = build_report(run_dir, out, options)
    except (IngestError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    s = result["summary"]
    dest = out or run_dir / "report"
    click.echo(f"{s['n_features_audited']} features audited, {s['n_spurious']} spurious, "
               f"{s['n_pending']} pending; workers kept {s['n_workers_kept']}/{s['n_workers']}")
    click.echo(f"report: {dest / 'index.html'}")
