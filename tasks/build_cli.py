"""``sparse-probe tasks build``: render HITs from a probe and its features."""

from __future__ import annotations

from pathlib import Path

import click

from tasks.cost import DEFAULT_ASSIGNMENTS

#: tasks.viz.panels' HIT_PANELS and MAP_PANELS, spelled out so that the CLI starts without
#: importing torch (tests/test_hits.py checks they agree).
DEFAULT_PANELS = "lime,activation"
PANEL_CHOICES = ("lime", "activation", "gradient")

__all__ = ["build"]


@click.command()
@click.option("--probe", "probe_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="RUN/probe (with probe.json).")
@click.option("--features", "features_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="RUN/features (default: probe.json's features_dir).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder, usually RUN/tasks.")
@click.option("--k", "k_features", default=5, show_default=True, type=click.IntRange(min=1),
              help="Top features per class.")
@click.option("--examples", "n_examples", default=9, show_default=True,
              type=click.IntRange(5, 9), help="Top-activating examples per HIT.")
@click.option("--split", default="val", show_default=True, help="Held-out split to show.")
@click.option("--layer", default="sparse", show_default=True,
              type=click.Choice(["sparse", "dense", "both"]),
              help="Decision layer whose top features get HITs.")
@click.option("--gold-share", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Share of gold HITs drawn from built-in ground truth.")
@click.option("--gold", "gold_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON {hit_key: {shared, pattern}} of gold answers (overrides --gold-share).")
@click.option("--reward", default="0.10", show_default=True, help="Dollars per assignment.")
@click.option("--assignments", default=DEFAULT_ASSIGNMENTS, show_default=True,
              type=click.IntRange(min=1),
              help="Assignments per HIT (written to the manifest; tasks publish uses it).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--fvis-steps", default=128, show_default=True, type=click.IntRange(min=0),
              help="Optimization steps of feature visualizations (0: none).")
@click.option("--fvis-size", default=64, show_default=True, type=click.IntRange(min=16),
              help="Side of feature visualizations in pixels.")
@click.option("--asset-base-url", default="https://example.com/sparse-probe/assets/",
              show_default=True, help="Initial asset_base_url column of batch.csv.")
@click.option("--questions", "questions_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The study's question schema (.toml or .json; default: the built-in "
                   "questions). Copied to OUT/questions.json.")
@click.option("--panels", default=DEFAULT_PANELS, show_default=True,
              help=f"Image HITs' map panels, comma-separated, from {', '.join(PANEL_CHOICES)} "
                   "(the first one the model allows is the main heatmap).")
@click.option("--lime-samples", default=96, show_default=True, type=click.IntRange(min=0),
              help="Perturbed copies per top image for the LIME panel (0: no LIME panel).")
@click.option("--insertion-words", default=100, show_default=True, type=click.IntRange(min=0),
              help="Text HITs: candidate words tested by the insertion panel (0: no panel).")
@click.option("--insertion-texts", default=16, show_default=True, type=click.IntRange(min=0),
              help="Text HITs: ordinary comments each candidate word is appended to.")
def build(probe_dir: Path, features_dir: Path | None, out_dir: Path, k_features: int,
          n_examples: int, split: str, layer: str, gold_share: float, gold_file: Path | None,
          reward: str, assignments: int, device: str, seed: int, fvis_steps: int,
          fvis_size: int, asset_base_url: str, questions_file: Path | None, panels: str,
          lime_samples: int, insertion_words: int, insertion_texts: int) -> None:
    """Render one HIT per (class, top feature): evidence assets, pages, manifest, MTurk batch."""
    from sparse_probe.questions import SchemaError, load_schema
    from tasks.build import BuildError, build_tasks

    try:
        questions = load_schema(questions_file) if questions_file is not None else None
        result = build_tasks(
            probe_dir, features_dir, out_dir, k_features=k_features, n_examples=n_examples,
            split=split, layer=layer, gold_share=gold_share, gold_file=gold_file,
            device=device, seed=seed, reward=reward, assignments=assignments,
            asset_base_url=asset_base_url, fvis_steps=fvis_steps, fvis_size=fvis_size,
            questions=questions, panels=tuple(p.strip() for p in panels.split(",") if p.strip()),
            lime_samples=lime_samples, insertion_words=insertion_words,
            insertion_texts=insertion_texts)
    except (BuildError, SchemaError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {result.n_hits} HITs ({result.n_gold} gold) to {result.out_dir}")
    click.echo(f"cost: {result.cost.summary()}")
