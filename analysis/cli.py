"""``sparse-probe report`` and ``sparse-probe counterfactual``: thin wrappers over
:func:`analysis.report.build_report` and :func:`analysis.counterfactual.runner.run_counterfactual`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from analysis.aggregate import METHODS
from analysis.ingest import IngestError
from analysis.quality import QCConfig


@click.command()
@click.option("--run", "run_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run directory (tasks/, answers/, probe/, features/); not with --study.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: RUN/report; required with --study].")
@click.option("--answers", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Answers instead of RUN/answers/answers.parquet (parquet, long "
                                 "CSV or MTurk batch-results CSV); with --study, the other "
                                 "study's results CSV.")
@click.option("--study", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Study file (TOML) mapping another study's CSV columns, "
                                 "questions, value meanings and decision rule (see "
                                 "docs/contracts.md); needs --answers and --out.")
@click.option("--rule", type=click.Choice(["k_of_n", "majority", "MajorityVote", "Wawa",
                                           "DawidSkene", "GLAD", "MACE"]), default=None,
              help="With --study: override the study file's decision rule.")
@click.option("--k", "k", type=click.IntRange(1), default=None,
              help="With --study: k of the k_of_n rule.")
@click.option("--n-of", "n_of", type=click.IntRange(1), default=None,
              help="With --study: n of the k_of_n rule (answers expected per item).")
@click.option("--drop-unknown", is_flag=True, default=False,
              help="With --study: drop answer values the study file does not declare (counted "
                   "in report.json) instead of stopping.")
@click.option("--self-contained", is_flag=True, default=False,
              help="With --study: one HTML file with the figures inlined.")
@click.option("--method", type=click.Choice(METHODS), default="DawidSkene", show_default=True,
              help="crowd-kit aggregation method (majority vote is always shown beside it).")
@click.option("--min-gold-accuracy", type=click.FloatRange(0, 1), default=0.6,
              show_default=True, help="Exclude workers below this gold accuracy.")
@click.option("--min-gold-answers", type=click.IntRange(1), default=1, show_default=True,
              help="Gold HITs a worker must answer before the gold rule applies.")
@click.option("--require-attention/--no-require-attention", default=True, show_default=True,
              help="Exclude workers who fail attention checks.")
@click.option("--attention-tolerance", type=click.IntRange(0), default=1, show_default=True,
              help="Failed attention checks that only flag a worker for review; more "
                   "exclude (0: the first failure excludes).")
@click.option("--min-seconds", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Assignments faster than this are 'fast'.")
@click.option("--min-time-fraction", type=click.FloatRange(0, 1), default=0.2,
              show_default=True, help="Assignments faster than this fraction of the median "
                                      "time are 'fast'.")
@click.option("--min-robust-z", type=float, default=None,
              help="Assignments whose robust z-score of log work time is below this are "
                   "'fast' (e.g. -3).")
@click.option("--max-fast-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Exclude workers with a larger share of fast assignments.")
@click.option("--min-posterior", type=click.FloatRange(0, 1), default=0.6, show_default=True,
              help="Labels with a lower posterior leave the verdict undecided.")
@click.option("--n-boot", type=click.IntRange(0), default=500, show_default=True,
              help="Bootstrap resamples for agreement intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
def report(run_dir: Path | None, out: Path | None, answers: Path | None, study: Path | None,
           rule: str | None, k: int | None, n_of: int | None, drop_unknown: bool,
           self_contained: bool, method: str,
           min_gold_accuracy: float, min_gold_answers: int, require_attention: bool,
           attention_tolerance: int, min_seconds: float, min_time_fraction: float, min_robust_z: float | None,
           max_fast_share: float,
           min_posterior: float, n_boot: int, seed: int) -> None:
    """Aggregate crowd answers into verdicts and write RUN/report (HTML, JSON, CSV, figures).

    With --study, report on another study's results CSV: sparse-probe report --answers
    results.csv --study study.toml --out DIR.
    """
    if study is not None:
        if run_dir is not None or answers is None or out is None:
            raise click.UsageError("--study needs --answers FILE and --out DIR (and no --run)")
        ctx = click.get_current_context()
        given = ctx.get_parameter_source("min_posterior") != click.core.ParameterSource.DEFAULT
        _study_report(answers, study, out, rule=rule, k=k, n_of=n_of,
                      min_posterior=min_posterior if given else None, drop_unknown=drop_unknown,
                      self_contained=self_contained, n_boot=n_boot, seed=seed)
        return
    if run_dir is None:
        raise click.UsageError("give --run RUN (or --answers FILE --study STUDY.toml --out DIR)")
    from analysis.report import ReportOptions, build_report

    qc = QCConfig(min_gold_accuracy=min_gold_accuracy, min_gold_answers=min_gold_answers,
                  require_attention=require_attention,
                  attention_tolerance=attention_tolerance, min_seconds=min_seconds,
                  min_time_fraction=min_time_fraction, min_robust_z=min_robust_z,
                  max_fast_share=max_fast_share)
    options = ReportOptions(method=method, qc=qc, min_posterior=min_posterior, n_boot=n_boot,
                            seed=seed, answers=answers)
    try:
        result = build_report(run_dir, out, options)
    except (IngestError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    s = result["summary"]
    dest = out or run_dir / "report"
    if (s.get("answer_source") or {}).get("note"):
        click.echo(f"NOTE: {s['answer_source']['note']}")
    click.echo(f"{s['n_features_audited']} features audited, {s['n_spurious']} spurious, "
               f"{s['n_undecided']} undecided, {s['n_pending']} pending; workers kept "
               f"{s['n_workers_kept']}/{s['n_workers']} ({s['n_workers_review']} flagged "
               "for review)")
    click.echo(f"report: {dest / 'index.html'}")


def _study_report(answers: Path, study_file: Path, out: Path, *, rule: str | None,
                  k: int | None, n_of: int | None, min_posterior: float | None,
                  drop_unknown: bool, self_contained: bool, n_boot: int, seed: int) -> None:
    from analysis.study import StudyError, load_study
    from analysis.study_report import StudyReportOptions, build_study_report

    try:
        study = load_study(study_file).with_rule(method=rule, k=k, n=n_of,
                                                 min_posterior=min_posterior, seed=seed)
        result = build_study_report(answers, study, out, StudyReportOptions(
            drop_unknown=drop_unknown, self_contained=self_contained, n_boot=n_boot,
            seed=seed))
    except StudyError as exc:
        raise click.ClickException(str(exc)) from None
    s = result["summary"]
    click.echo(f"{s['n_items']} items of {s['n_classes']} classes from {s['n_answers']} answers: "
               f"{s['n_spurious']} spurious, {s['n_core']} core, {s['n_undecided']} undecided "
               f"({result['rule']['method']}); report: {out / 'index.html'}")


def _parse_features(values: tuple[str, ...]) -> list[tuple[int, int]] | None:
    out = []
    for v in values:
        for part in v.split(","):
            if not part.strip():
                continue
            try:
                c, f = part.split(":")
                out.append((int(c), int(f)))
            except ValueError:
                raise click.BadParameter(f"{part!r}: expected CLASS:FEATURE, e.g. 3:117",
                                         param_hint="--features") from None
    return out or None


def _parse_region(value: str | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    try:
        y0, x0, y1, x1 = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected Y0,X0,Y1,X1 in pixels, e.g. 0,0,8,8",
                                 param_hint="--region") from None
    return y0, x0, y1, x1


def _read_image(path: Path | None, hint: str):
    """RGB in [0, 1] (H, W, 3) for --patch; a bool mask (H, W) of non-black pixels for --mask."""
    if path is None:
        return None
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise click.BadParameter(f"{path}: not a readable image ({exc})",
                                 param_hint=hint) from None
    return rgb if hint == "--patch" else rgb.max(axis=2) > 0


def read_object_masks(path: Path | None):
    """Object masks for ``counterfactual --object-masks``: a ``.npy`` array (N, H, W) of bool
    (or 0/1) values, one mask per image of the split; a one-line error otherwise.

    Returns
    -------
    bool ndarray of shape (N, H, W), or None when ``path`` is None.
    """
    if path is None:
        return None
    import numpy as np

    hint = "--object-masks"
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise click.BadParameter(f"{path}: not a readable .npy array ({str(exc).splitlines()[0]})",
                                 param_hint=hint) from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or 0 in arr.shape:
        raise click.BadParameter(f"{path}: expected masks of shape (N, H, W), got shape "
                                 f"{getattr(arr, 'shape', None)}", param_hint=hint)
    if arr.dtype != bool:
        if arr.dtype.kind not in "biu" or not np.isin(arr, (0, 1)).all():
            raise click.BadParameter(f"{path}: expected bool or 0/1 masks, got dtype {arr.dtype}"
                                     " with other values", param_hint=hint)
        arr = arr.astype(bool)
    return arr


def _load_external(spec: str, outputs: str = "probabilities"):
    import importlib

    from analysis.counterfactual import callable_predictor

    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise click.BadParameter(f"{spec!r}: cannot import ({exc})",
                                 param_hint="--external") from None
    fn = getattr(obj, "predict_proba", obj)
    if not callable(fn):
        raise click.BadParameter(f"{spec!r}: not callable and has no predict_proba",
                                 param_hint="--external")
    return callable_predictor(fn, name=spec, outputs=outputs)


@click.command()
@click.option("--run", "run_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run directory (features/, probe/, report/); optional with --texts and "
                   "--external.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: RUN/report; required without --run].")
@click.option("--features", "feature_specs", multiple=True, metavar="CLASS:FEATURE[,...]",
              help="Image features to test [default: those judged spurious in the report].")
@click.option("--model", "model",
              type=click.Choice(["original", "sparse", "both", "none", "dense"]),
              default=None, help="The run's models to test: the original model (the network's "
                                 "own last layer), the sparse head, both or none [default: "
                                 "both with --run, else none]. 'dense' is a deprecated alias "
                                 "of 'original'.")
@click.option("--external", multiple=True, metavar="MODULE:ATTR",
              help="Also audit an importable model: an object with predict_proba or a callable "
                   "returning class probabilities (n, C), or (n,) for a binary model.")
@click.option("--outputs", type=click.Choice(["probabilities", "logits"]),
              default="probabilities", show_default=True,
              help="What --external models return; logits go through softmax (logistic for "
                   "one column).")
@click.option("--texts", "texts_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Texts to edit (.txt one per line, .csv or .jsonl with --text-column), "
                   "instead of the run's split.")
@click.option("--text-column", default="text", show_default=True,
              help="Column of the texts in a .csv / .jsonl file.")
@click.option("--toxic-class", default=None,
              help="Class (name or index) inserted terms should not move texts to "
                   "[default: 'toxic' if the run has it, else 1].")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Toxic when p(toxic) >= THRESHOLD [default: the most probable class].")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True,
              help="Texts per model call.")
@click.option("--n", "n", type=click.IntRange(1), default=200, show_default=True,
              help="Perturbed examples per test.")
@click.option("--box", type=click.IntRange(1), default=None,
              help="Side of the fixed patch of the image_patch test [default: image side / 4].")
@click.option("--region", default=None, metavar="Y0,X0,Y1,X1",
              help="Cue region in pixels (end exclusive) instead of the feature's evidence.")
@click.option("--mask", "mask_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Cue mask image of the images' size (non-black pixels), instead of --region.")
@click.option("--object-masks", "object_masks_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Image runs on your own data: a .npy of bool masks (N, H, W), the object in "
                   "each image of --split, so the paste and removal tests carry only evidence "
                   "outside it and the background swap keeps it (built-in datasets: their "
                   "ground truth is used).")
@click.option("--patch", "patch_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Cue patch image (pasted at --region's corner, else where the evidence "
                   "starts).")
@click.option("--frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="Evidence threshold between a map's minimum and maximum.")
@click.option("--max-area", type=click.FloatRange(0, 1, min_open=True), default=0.0625,
              show_default=True, help="Largest pasted evidence, as a fraction of the image.")
@click.option("--top", type=click.IntRange(1), default=16, show_default=True,
              help="Top-activating examples to cut patterns from.")
@click.option("--split", default="test", show_default=True)
@click.option("--lexicon", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON {group: [terms]} [default: built-in identity terms].")
@click.option("--template", "templates", multiple=True,
              help="Text template with {text} and {term}, e.g. '{text} I am {term}.'")
@click.option("--mode", type=click.Choice(["append", "prepend", "random"]), default="append",
              show_default=True, help="Where terms go when no template is given.")
@click.option("--seed", type=int, default=0, show_default=True)
def counterfactual(run_dir: Path | None, out: Path | None, feature_specs: tuple[str, ...],
                   model: str | None, external: tuple[str, ...], outputs: str,
                   texts_file: Path | None, text_column: str, toxic_class: str | None,
                   threshold: float | None, batch_size: int, n: int, box: int | None,
                   region: str | None, mask_file: Path | None,
                   object_masks_file: Path | None, patch_file: Path | None,
                   frac: float, max_area: float,
                   top: int, split: str, lexicon: Path | None, templates: tuple[str, ...],
                   mode: str, seed: int) -> None:
    """Paste / remove a feature's evidence, or insert identity terms, and measure flips.

    Image runs: each feature gets supports / refutes / inconclusive in counterfactual.json.
    Texts: any texts (--texts) and any model (--external), with or without a run.
    """
    from analysis.counterfactual.runner import (
        read_texts,
        run_counterfactual,
        run_text_counterfactual,
    )

    if model is None:
        model = "both" if run_dir is not None else "none"
    if model == "dense":
        click.echo("note: --model dense is deprecated; it means the original model (the "
                   "network's own last layer): use --model original", err=True)
        model = "original"
    # the counterfactual runner's name of the original model is "dense" (its files keep it)
    models = {"original": ["dense"], "sparse": ["sparse"], "both": ["dense", "sparse"],
              "none": []}[model]
    if run_dir is None and models:
        raise click.UsageError(f"--model {model} needs --run (the run's models)")
    if run_dir is None and (texts_file is None or out is None or not external):
        raise click.UsageError("without --run, give --texts, --external and --out")
    feats = _parse_features(feature_specs)
    reg = _parse_region(region)
    if mask_file is not None:
        if reg is not None:
            raise click.UsageError("give --region or --mask, not both")
        reg = _read_image(mask_file, "--mask")
    lex = None
    if lexicon is not None:
        try:
            lex = json.loads(lexicon.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            lex = None
        if not isinstance(lex, dict) or not all(isinstance(v, list) for v in lex.values()):
            raise click.BadParameter(f"{lexicon}: expected a JSON object {{group: [terms]}}",
                                     param_hint="--lexicon")
    ext = {spec: _load_external(spec, outputs) for spec in external}
    try:
        texts = read_texts(texts_file, text_column) if texts_file is not None else None
        if run_dir is None:
            if toxic_class is not None and not toxic_class.lstrip("-").isdigit():
                raise click.BadParameter(f"{toxic_class!r}: without --run give the class index",
                                         param_hint="--toxic-class")
            tox = int(toxic_class) if toxic_class is not None else 1
            rows = run_text_counterfactual(out, ext, texts, lex, tox, None,
                                           list(templates) or None, mode, n, seed, threshold,
                                           batch_size, str(texts_file))
        else:
            rows = run_counterfactual(run_dir, out, feats, models, n, box, top, split, lex,
                                      list(templates) or None, mode, ext, seed, texts,
                                      threshold, batch_size, toxic_class, reg,
                                      _read_image(patch_file, "--patch"), frac, max_area,
                                      read_object_masks(object_masks_file))
    except (FileNotFoundError, ValueError, KeyError, IngestError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise click.ClickException(str(msg).splitlines()[0] if str(msg) else repr(exc)) from None
    dest = out or run_dir / "report"
    click.echo(f"{len(rows)} result rows -> {dest / 'counterfactual.csv'}")
    js = json.loads((dest / "counterfactual.json").read_text(encoding="utf-8"))
    for v in js.get("verdicts", []):
        item = (f"{v['class_name']} · feature {v['feature']}" if "feature" in v
                else f"group {v['group']} vs {v['control']}")
        click.echo(f"{item} ({v['model']}): {v['verdict']}")
