"""``sparse-probe extract``: features of any layer of a model on a dataset, into RUN/features."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--model", required=True,
              help="torchvision name (resnet18), builtin:shapes|toxicity, a TorchScript file, "
                   "module:function, or hf:DIR.")
@click.option("--weights", default=None,
              help="Local checkpoint file, or a torchvision weights enum name (downloads).")
@click.option("--data", required=True,
              help="ImageFolder dir, .npy (dir), .csv/.jsonl (dir), or builtin:shapes|toxicity.")
@click.option("--layer", default=None,
              help="NAME (module output, spatially averaged), NAME:input, or output. "
                   "Default: input of the final linear layer.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Features directory, e.g. RUN/features.")
@click.option("--device", default=None, help="torch device (default cuda if available, else cpu).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0),
              help="DataLoader worker processes.")
@click.option("--image-size", default=None, type=click.IntRange(8),
              help="Resize (shorter side) + center crop to N x N. Default: the data's own "
                   "size (a model that needs one size, e.g. a ViT, gets it; a folder of mixed "
                   "sizes gets its median shorter side). Printed either way.")
@click.option("--method", type=click.Choice(["hook", "fx"]), default="hook", show_default=True,
              help="Forward hooks or torchvision feature_extraction.")
@click.option("--splits", default="train,val,test", show_default=True)
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of train carved out as val when the data has no val split.")
@click.option("--seed", default=0, show_default=True, help="Seed of the val carve-out.")
@click.option("--classes", default=None, help="Comma-separated class names for integer labels.")
def extract(model: str, weights: str | None, data: str, layer: str | None, out: Path,
            device: str | None, batch_size: int, workers: int, image_size: int | None,
            method: str, splits: str, val_fraction: float, seed: int,
            classes: str | None) -> None:
    """Extract features (resumable: rerun the same command after an interruption)."""
    from sparse_probe.extract.extractor import extract_features

    notes: list[str] = []  # printed after success, so an error stays one line
    try:
        path = extract_features(
            model, data, out, weights=weights, layer=layer, method=method,
            batch_size=batch_size, device=device, num_workers=workers,
            splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
            val_fraction=val_fraction, seed=seed, image_size=image_size,
            classes=classes.split(",") if classes else None, report=notes.append,
        )
    except (ValueError, FileNotFoundError, KeyError) as exc:
        msg = str(exc).strip("'\"").splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(msg) from None
    for note in notes:
        click.echo(note)
    click.echo(f"features in {path}")
