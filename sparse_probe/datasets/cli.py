"""``sparse-probe datasets``: write the built-in datasets as files, or prepare a demo run."""

from __future__ import annotations

from pathlib import Path

import click

from sparse_probe.datasets.prepare import builtin_params


@click.group()
def datasets() -> None:
    """Built-in demo datasets with planted spurious cues."""


@datasets.command("make")
@click.argument("name", type=click.Choice(["shapes", "toxicity"]))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (ImageFolder tree for shapes, CSV files for toxicity).")
@click.option("--seed", default=0, show_default=True, help="Generation seed.")
@click.option("--quick", is_flag=True, help="Small sizes (as prepare_builtin(quick=True)).")
def make(name: str, out: Path, seed: int, quick: bool) -> None:
    """Write dataset NAME with its ground truth (masks, cue flags) under --out."""
    from sparse_probe.datasets.export import write_shapes_imagefolder, write_toxicity_csv
    from sparse_probe.datasets.shapes import make_shapes
    from sparse_probe.datasets.toxicity import make_toxicity

    params = builtin_params(name, seed=seed, quick=quick)
    if name == "shapes":
        write_shapes_imagefolder(make_shapes(**params), out)
    else:
        write_toxicity_csv(make_toxicity(**params), out)
    click.echo(f"wrote {name} to {out}")


@datasets.command("prepare")
@click.argument("name", type=click.Choice(["shapes", "toxicity"]))
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: receives models/ and features/.")
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True, help="Smaller data, fewer epochs (seconds).")
@click.option("--device", default=None, help="torch device (default cpu).")
def prepare(name: str, run_dir: Path, seed: int, quick: bool, device: str | None) -> None:
    """Generate NAME, train its model (cached) and extract features into RUN/features."""
    from sparse_probe.datasets.prepare import prepare_builtin

    try:
        out = prepare_builtin(name, run_dir, seed=seed, quick=quick, device=device)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"features in {out}")
