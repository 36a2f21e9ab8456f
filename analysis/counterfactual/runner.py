"""Run counterfactual tests on a run directory and write ``counterfactual.csv`` / ``.json``.

:func:`image_counterfactuals` and :func:`text_counterfactuals` take plain arrays and predictors
(usable with any model); :func:`run_counterfactual` loads the run's model, data, sparse head and
verdicts through ``sparse_probe.extract`` (the contract in docs/contracts.md) and calls them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.counterfactual.cue import CUE_TESTS, cue_test
from analysis.counterfactual.image import patch_test
from analysis.counterfactual.models import (
    Predictor,
    layer_features,
    sparse_predictor,
    torch_predictor,
)
from analysis.counterfactual.text import check_lexicon, group_verdicts, term_test
from sparse_probe.rundir import atomic_path, write_text

__all__ = [
    "CF_COLUMNS",
    "check_features",
    "image_counterfactuals",
    "read_texts",
    "run_counterfactual",
    "run_text_counterfactual",
    "spurious_features",
    "spurious_kinds",
    "text_counterfactuals",
    "write_counterfactual",
]

logger = logging.getLogger(__name__)
CF_COLUMNS = ["test", "model", "label", "class", "class_name", "feature", "group", "term",
              "direction", "control_of", "n", "flips", "flip_rate", "ci_low", "ci_high",
              "mean_prob_increase", "shift_ci_low", "shift_ci_high", "mean_logit_increase",
              "verdict"]


def _class_name(cls: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[cls]) if class_names is not None and 0 <= cls < len(class_names) \
        else f"class {cls}"


def image_counterfactuals(
    predictors: Mapping[str, Predictor],
    images: np.ndarray,
    labels: np.ndarray,
    activations: np.ndarray,
    maps_fn: Callable[[np.ndarray, int], np.ndarray],
    features: Sequence[tuple[int, int]],
    box: int | None = None,
    n: int = 200,
    top: int = 16,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    region: tuple[int, int, int, int] | np.ndarray | None = None,
    patch: np.ndarray | None = None,
    frac: float = 0.8,
    max_area: float = 0.0625,
    verdicts: list[dict] | None = None,
    object_masks: np.ndarray | None = None,
    kinds: Mapping[tuple[int, int], str] | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Patch tests and cue tests (:func:`analysis.counterfactual.cue.cue_test`) for several
    (class, feature) pairs.

    Parameters
    ----------
    predictors : mapping name -> predictor over images (n, H, W, C)
    images : array of shape (N, H, W, C)
        Test images.
    labels : int array of shape (N,)
    activations : array of shape (N, d)
        The features of ``images`` (to find each feature's top-activating examples).
    maps_fn : callable
        ``maps_fn(images, feature) -> (k, h, w)`` spatial map of one feature.
    features : sequence of (class, feature)
    box : int, optional
        Patch side; default a quarter of the image side.
    n, top, seed
        See :func:`analysis.counterfactual.image.patch_test`.
    class_names : sequence of str, optional
        Names for the ``class_name`` column and the labels (default ``class <i>``).
    region, patch, frac, max_area
        See :func:`analysis.counterfactual.cue.cue_test`.
    verdicts : list, optional
        Filled with one dict per (feature, model): ``class``, ``class_name``, ``feature``,
        ``model``, ``verdict`` (supports / refutes / inconclusive), ``tests`` (test ->
        verdict), ``kind`` (the crowd's spurious kind that chose the deciding tests, or None)
        and ``object_masks`` (whether the tests knew the objects).
    object_masks : bool array of shape (N, H, W), optional
        The object in each of ``images``; see :func:`analysis.counterfactual.cue.cue_test`.
    kinds : mapping (class, feature) -> str, optional
        The crowd's spurious kind of each feature (mark, background, ...); see
        :func:`analysis.counterfactual.cue.feature_verdict`.

    Returns
    -------
    rows : DataFrame with :data:`CF_COLUMNS`
        ``image_patch`` / ``image_control`` (a fixed box at the map's peak, random places) and
        the cue tests ``image_paste_same``, ``image_paste_random``, ``image_removal``,
        ``image_background_swap``, ``image_background_removal`` with their controls
        (``control_of`` names the test a control belongs to).
    paired : list of dict (exact McNemar comparisons of ``image_patch``)
    """
    box = box or max(2, images.shape[1] // 4)
    rows, paired = [], []
    for cls, feat in tqdm(features, desc="patch tests", disable=None):
        order = np.argsort(-activations[:, feat])[:top]
        src = images[order]
        maps = maps_fn(src, feat)
        res = patch_test(predictors, src, maps, images, labels, target=cls, box=box, n=n,
                         top=top, seed=seed)
        name = _class_name(cls, class_names)
        label = f"{name} · feature {feat}"
        ids = {"label": label, "class": cls, "class_name": name, "feature": feat}
        for r in res.rows:
            rows.append({**r, **ids, "test": f"image_{r['test']}",
                         "control_of": "image_patch" if r["test"] == "control" else ""})
        for p in res.paired:
            paired.append({**p, **ids, "test": "image_patch"})
        cue = cue_test(predictors, images, labels, activations[:, feat],
                       lambda b, f=feat: maps_fn(b, f), cls, n=n, top=top, seed=seed,
                       frac=frac, max_area=max_area, region=region, patch=patch,
                       object_masks=object_masks, kind=(kinds or {}).get((cls, feat)))
        for r in cue.rows:
            rows.append({**r, **ids, "test": f"image_{r['test']}",
                         "control_of": f"image_{r['control_of']}" if r["control_of"] else ""})
        for model, verdict in cue.verdicts.items():
            tests = {f"image_{r['test']}": r["verdict"] for r in cue.rows
                     if r["model"] == model and r["test"] in CUE_TESTS}
            if verdicts is not None:
                verdicts.append({"class": int(cls), "class_name": name, "feature": int(feat),
                                 "model": model, "verdict": verdict, "tests": tests,
                                 "kind": (kinds or {}).get((cls, feat)),
                                 "object_masks": object_masks is not None,
                                 "boxes": cue.boxes[:4].tolist()})
    return pd.DataFrame(rows).reindex(columns=CF_COLUMNS), paired


def text_counterfactuals(
    predictors: Mapping[str, Predictor],
    texts: Sequence[str],
    lexicon: Mapping[str, Sequence[str]],
    toxic_class: int = 1,
    mode: str = "append",
    templates: Sequence[str] | None = None,
    n: int = 200,
    seed: int = 0,
    threshold: float | None = None,
    batch_size: int = 256,
    class_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """Term insertion tests; see :func:`analysis.counterfactual.text.term_test`.

    ``class_names`` (when known) name the toxic class and bound its index before any model
    runs.

    Returns
    -------
    rows : DataFrame with :data:`CF_COLUMNS`
    paired : list of dict
    examples : list of dict (flipped texts before/after)
    """
    res = term_test(predictors, texts, lexicon, toxic_class, mode, templates, n, seed,
                    threshold=threshold, batch_size=batch_size,
                    n_classes=len(class_names) if class_names is not None else None)
    name = _class_name(toxic_class, class_names)
    rows = [{**r, "label": f"{r['group']}: {r['term']} ({r['direction']})",
             "class": toxic_class, "class_name": name, "control_of": ""} for r in res.rows]
    paired = [{**p, "label": p["group"]} for p in res.paired]
    return pd.DataFrame(rows).reindex(columns=CF_COLUMNS), paired, res.examples


def write_counterfactual(out: Path, rows: pd.DataFrame, summary: dict) -> None:
    """Write ``counterfactual.csv`` and ``counterfactual.json`` atomically."""
    with atomic_path(out / "counterfactual.csv") as tmp:
        rows.to_csv(tmp, index=False)
    write_text(out / "counterfactual.json",
               json.dumps(summary, indent=1, default=_json_default, ensure_ascii=False))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")


def spurious_features(report_json: Path, layer: str = "sparse") -> list[tuple[int, int]]:
    """(class, feature) pairs judged spurious in a report.json."""
    rep = json.loads(report_json.read_text(encoding="utf-8"))
    return [(int(r["class"]), int(r["feature"])) for r in rep.get("features", [])
            if r.get("verdict") == "spurious" and r.get("layer", layer) == layer]


def spurious_kinds(report_json: Path, layer: str = "sparse") -> dict[tuple[int, int], str]:
    """(class, feature) -> the crowd's spurious kind (mark, background, ...) in a report.json."""
    rep = json.loads(report_json.read_text(encoding="utf-8"))
    return {(int(r["class"]), int(r["feature"])): str(r["kind"])
            for r in rep.get("features", [])
            if r.get("verdict") == "spurious" and r.get("layer", layer) == layer
            and isinstance(r.get("kind"), str) and r["kind"]}


def _builtin_object_masks(meta: Mapping, split: str, n: int) -> np.ndarray | None:
    """Ground-truth object masks (n, H, W) of a run on a built-in image dataset, else None."""
    if (meta.get("dataset") or {}).get("source") != "builtin":
        return None
    from sparse_probe.datasets import load_builtin

    part = load_builtin(dict(meta)).split(split)
    masks = getattr(part, "object_masks", None)
    if masks is None or len(masks) != n:
        return None
    return np.asarray(masks, bool)


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of bool masks (n, h, w) to (n, H, W)."""
    if masks.shape[1:] == tuple(size):
        return masks
    import torch

    t = torch.from_numpy(masks.astype(np.float32))[:, None]
    return torch.nn.functional.interpolate(t, size=tuple(size), mode="nearest")[:, 0].numpy() > 0.5


def _to_hwc(x: Any) -> tuple[np.ndarray, bool]:
    """Images as a numpy (n, H, W, C) array; True when the source was channels-first."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1)), True
    return arr, False


def read_texts(path: str | Path, column: str = "text") -> list[str]:
    """Texts from a file: ``.txt`` (one per line), ``.csv`` or ``.jsonl`` (field ``column``).

    Raises
    ------
    ValueError
        Unknown format, a missing column, or no texts (naming the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix == ".txt":
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    elif suffix in (".csv", ".jsonl"):
        try:
            df = pd.read_csv(path) if suffix == ".csv" else pd.read_json(path, lines=True)
        except (ValueError, pd.errors.ParserError) as exc:
            raise ValueError(f"{path}: not readable as {suffix[1:]} "
                             f"({str(exc).splitlines()[0]})") from None
        if column not in df.columns:
            raise ValueError(f"{path}: no column {column!r} (columns: "
                             f"{', '.join(map(str, df.columns))})")
        texts = [str(t).strip() for t in df[column].dropna()]
    else:
        raise ValueError(f"{path}: expected a .txt, .csv or .jsonl file of texts")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts


def check_features(features: Sequence[tuple[int, int]], classes: Sequence[str],
                   d: int) -> list[tuple[int, int]]:
    """Refuse (class, feature) pairs outside the run: a one-line ``ValueError``."""
    out = []
    for cls, feat in features:
        if not 0 <= int(cls) < len(classes):
            raise ValueError(f"features: class {cls} in {cls}:{feat} is out of range (the run "
                             f"has {len(classes)} classes, 0-{len(classes) - 1})")
        if not 0 <= int(feat) < d:
            raise ValueError(f"features: feature {feat} in {cls}:{feat} is out of range (the "
                             f"run has {d} features, 0-{d - 1})")
        out.append((int(cls), int(feat)))
    return out


def run_text_counterfactual(
    out: str | Path,
    predictors: Mapping[str, Predictor],
    texts: Sequence[str],
    lexicon: Mapping[str, Sequence[str]] | None = None,
    toxic_class: int = 1,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    mode: str = "append",
    n: int = 200,
    seed: int = 0,
    threshold: float | None = None,
    batch_size: int = 256,
    source: str | None = None,
) -> pd.DataFrame:
    """Text counterfactuals of any models on any texts; writes ``out/counterfactual.{csv,json}``.

    Parameters
    ----------
    out : path
        Output directory (created).
    predictors : mapping name -> predictor over lists of texts
    texts : sequence of str
    lexicon : mapping group -> terms, optional
        Default ``sparse_probe.datasets.IDENTITY_TERMS``.
    toxic_class : int
    class_names : sequence of str, optional
    templates, mode, n, seed, threshold, batch_size
        See :func:`analysis.counterfactual.text.term_test`.
    source : str, optional
        Where the texts came from (recorded in the JSON).

    Returns
    -------
    DataFrame
        The rows of ``counterfactual.csv``.
    """
    if lexicon is None:
        from sparse_probe.datasets import IDENTITY_TERMS

        lexicon = IDENTITY_TERMS
    lexicon = check_lexicon(lexicon)
    rows, paired, examples = text_counterfactuals(
        predictors, texts, lexicon, toxic_class, mode, templates, n, seed, threshold,
        batch_size, class_names)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_counterfactual(out, rows, {
        "kind": "text", "models": list(predictors), "n": n, "seed": seed, "mode": mode,
        "templates": list(templates or []), "threshold": threshold, "texts": source,
        "toxic_class": toxic_class, "toxic_class_name": _class_name(toxic_class, class_names),
        "paired": paired, "examples": examples,
        "verdicts": group_verdicts(rows.to_dict(orient="records"))})
    return rows


def run_counterfactual(
    run: str | Path,
    out: str | Path | None = None,
    features: Sequence[tuple[int, int]] | None = None,
    models: Sequence[str] = ("dense", "sparse"),
    n: int = 200,
    box: int | None = None,
    top: int = 16,
    split: str = "test",
    lexicon: Mapping[str, Sequence[str]] | None = None,
    templates: Sequence[str] | None = None,
    mode: str = "append",
    external: Mapping[str, Predictor] | None = None,
    seed: int = 0,
    texts: Sequence[str] | None = None,
    threshold: float | None = None,
    batch_size: int = 256,
    toxic_class: int | str | None = None,
    region: tuple[int, int, int, int] | np.ndarray | None = None,
    patch: np.ndarray | None = None,
    frac: float = 0.8,
    max_area: float = 0.0625,
    object_masks: np.ndarray | None = None,
) -> pd.DataFrame:
    """Counterfactual tests for a run; writes ``out/counterfactual.{csv,json}``.

    Parameters
    ----------
    run : path
        Run directory with ``features/meta.json`` (+ the split's features) and ``probe/head.pt``.
    out : path, optional
        Default ``run/report``; when it holds a ``report.json`` the report is rebuilt so that
        it shows the results.
    features : sequence of (class, feature), optional
        Image features to test; default those judged spurious in ``out/report.json``. Classes
        and features outside the run are refused before anything runs.
    models : sequence of {"dense", "sparse"}
    n, box, top, seed
        See :func:`image_counterfactuals`.
    split : str
        Data split whose examples are perturbed.
    lexicon : mapping group -> terms, optional
        Text runs; default ``sparse_probe.datasets.IDENTITY_TERMS``.
    templates, mode
        See :func:`analysis.counterfactual.text.insert_term`.
    external : mapping name -> predictor, optional
        Third-party models audited alongside.
    texts : sequence of str, optional
        Text runs: edit these texts instead of the split's.
    threshold, batch_size
        See :func:`analysis.counterfactual.text.term_test`.
    toxic_class : int or str, optional
        Text runs: the class (index or name) terms should not move to; default ``toxic`` if
        the run has such a class, else 1.
    region, patch, frac, max_area
        Image runs; see :func:`analysis.counterfactual.cue.cue_test`. ``patch`` is RGB in
        [0, 1] (normalized here like the run's images when its preprocessing does).
    object_masks : bool array of shape (n_split, H, W), optional
        Image runs: the object in every image of the split (resized to the images' size if
        needed); default the ground truth of a built-in dataset, else none (the background
        tests then move each image's evidence region). See
        :func:`analysis.counterfactual.cue.cue_test`.

    Returns
    -------
    DataFrame
        The rows of ``counterfactual.csv``.
    """
    from sparse_probe import extract

    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    meta_path = run / "features" / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: not found (run `sparse-probe extract` first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.setdefault("_dir", str(run / "features"))
    kind = meta.get("kind", "image")
    classes = [str(c) for c in meta.get("classes", [])]
    rj = out / "report.json"
    kinds = spurious_kinds(rj) if rj.exists() else {}
    if kind == "image":
        if features is None:
            features = spurious_features(rj) if rj.exists() else []
        if not features:
            raise ValueError("features: none given and no feature judged spurious in "
                             f"{out / 'report.json'}; pass --features CLASS:FEATURE")
        features = check_features(features, classes, int(meta.get("d", 0)))
    else:
        toxic = _toxic_index(toxic_class, classes)
        lexicon = check_lexicon(lexicon) if lexicon is not None else None
        if texts is not None and not len(texts):
            raise ValueError("texts: no texts to edit")
    model = extract.load_model(meta)
    data = extract.load_split(meta, split)
    labels = np.asarray(data.labels)
    predictors: dict[str, Predictor] = {}
    if "dense" in models:
        predictors["dense"] = torch_predictor(model)
    if "sparse" in models:
        from sparse_probe import SparseHead

        head = SparseHead.load(run / "probe" / "head.pt")
        predictors["sparse"] = sparse_predictor(_feature_reader(model, meta), head)
    predictors.update(external or {})
    if not predictors:
        raise ValueError("models: expected at least one of dense, sparse or an external model")
    rng = np.random.default_rng(seed)
    summary: dict[str, Any] = {"split": split, "models": list(predictors), "n": n,
                               "seed": seed, "kind": kind, "classes": classes}
    if kind == "image":
        acts = np.load(run / "features" / f"{split}.npy", mmap_mode="r")
        # the examples needed: every feature's top-activating ones and a random test pool
        tops = [np.argsort(-np.asarray(acts[:, f]))[:top] for _, f in features]
        pool = rng.choice(len(labels), size=min(len(labels), 3 * n), replace=False)
        rows_idx = np.unique(np.concatenate([*tops, pool]))
        images, channels_first = _to_hwc(data[rows_idx.tolist()])
        masks_src = "given"
        if object_masks is None:
            object_masks = _builtin_object_masks(meta, split, len(labels))
            masks_src = "built-in ground truth" if object_masks is not None else None
        elif len(object_masks) != len(labels):
            raise ValueError(f"object_masks: expected one mask per image of split {split!r} "
                             f"({len(labels)}), got {len(object_masks)}")
        obj = None if object_masks is None else _resize_masks(
            np.asarray(object_masks, bool)[rows_idx], images.shape[1:3])

        def to_model(b: np.ndarray) -> Any:
            import torch

            x = np.ascontiguousarray(b.transpose(0, 3, 1, 2) if channels_first else b)
            return torch.from_numpy(x)

        def maps_fn(imgs: np.ndarray, feat: int) -> np.ndarray:
            return np.asarray(extract.spatial_maps(model, meta, to_model(imgs)))[:, feat]

        adapted = {k: (lambda b, p=p: p(to_model(b))) for k, p in predictors.items()}
        prep = meta.get("preprocessing") or {}
        if patch is not None and prep.get("mean") is not None:
            # a patch is given in [0, 1] RGB; the images here are model inputs (normalized)
            patch = (np.asarray(patch, np.float32) - np.asarray(prep["mean"], np.float32)) \
                / np.asarray(prep["std"], np.float32)
        verdicts: list[dict] = []
        rows, paired = image_counterfactuals(adapted, images, labels[rows_idx],
                                             np.asarray(acts[rows_idx]), maps_fn, features,
                                             box, n, top, seed, classes or None, region, patch,
                                             frac, max_area, verdicts, obj, kinds)
        summary.update({"features": [list(f) for f in features], "box": box, "paired": paired,
                        "verdicts": verdicts, "frac": frac, "max_area": max_area,
                        "region": None if region is None else (
                            [int(v) for v in region] if np.ndim(region) == 1 else "mask"),
                        "patch": patch is not None, "object_masks": masks_src})
    else:
        if lexicon is None:
            from sparse_probe.datasets import IDENTITY_TERMS

            lexicon = IDENTITY_TERMS
        if texts is None:
            texts = [str(t) for t in data[list(range(len(labels)))]]
        rows, paired, examples = text_counterfactuals(predictors, texts, lexicon, toxic, mode,
                                                      templates, n, seed, threshold, batch_size,
                                                      classes or None)
        summary.update({"paired": paired, "examples": examples, "mode": mode,
                        "templates": list(templates or []), "threshold": threshold,
                        "toxic_class": toxic, "toxic_class_name": _class_name(toxic, classes),
                        "verdicts": group_verdicts(rows.to_dict(orient="records"))})
    write_counterfactual(out, rows, summary)
    if (out / "report.json").exists():
        from analysis.quality import QCConfig
        from analysis.report import ReportOptions, build_report

        rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
        opts = rep.get("options", {})
        build_report(run, out, ReportOptions(
            method=opts.get("method", "DawidSkene"), min_posterior=opts.get("min_posterior", 0.6),
            n_boot=opts.get("n_boot", 500), seed=opts.get("seed", 0),
            qc=QCConfig(**rep.get("qc", {}).get("config", {}))))
    return rows


def _toxic_index(toxic_class: int | str | None, classes: Sequence[str]) -> int:
    """The toxic class as an index into ``classes`` (name or index; default 'toxic' or 1)."""
    if toxic_class is None:
        return classes.index("toxic") if "toxic" in classes else 1
    if isinstance(toxic_class, str) and not toxic_class.lstrip("-").isdigit():
        if toxic_class not in classes:
            raise ValueError(f"toxic_class: no class named {toxic_class!r} (classes: "
                             f"{', '.join(classes)})")
        return classes.index(toxic_class)
    idx = int(toxic_class)
    if idx < 0 or (classes and idx >= len(classes)):
        raise ValueError(f"toxic_class: {idx} is out of range for {len(classes)} classes")
    return idx


def _feature_reader(model: Any, meta: dict) -> Callable[[Any], Any]:
    """The run's own feature extractor for ``meta["layer"]`` (same pooling as extraction)."""
    import torch

    try:
        from sparse_probe.extract.extractor import LayerReader
    except ImportError:  # pragma: no cover - older sparse_probe
        return layer_features(model, meta["layer"])
    reader = LayerReader(model, meta["layer"])

    def read(batch: Any) -> torch.Tensor:
        with torch.no_grad():
            return reader(batch)

    return read
