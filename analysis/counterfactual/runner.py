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

from analysis.counterfactual.image import patch_test
from analysis.counterfactual.models import (
    Predictor,
    layer_features,
    sparse_predictor,
    torch_predictor,
)
from analysis.counterfactual.text import term_test
from sparse_probe.rundir import atomic_path, write_text

__all__ = [
    "CF_COLUMNS",
    "image_counterfactuals",
    "run_counterfactual",
    "spurious_features",
    "text_counterfactuals",
    "write_counterfactual",
]

logger = logging.getLogger(__name__)
CF_COLUMNS = ["test", "model", "label", "class", "feature", "group", "term", "direction", "n",
              "flips", "flip_rate", "ci_low", "ci_high", "mean_prob_increase"]


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
) -> tuple[pd.DataFrame, list[dict]]:
    """Patch tests for several (class, feature) pairs.

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

    Returns
    -------
    rows : DataFrame with :data:`CF_COLUMNS`
    paired : list of dict (exact McNemar comparisons)
    """
    box = box or max(2, images.shape[1] // 4)
    rows, paired = [], []
    for cls, feat in tqdm(features, desc="patch tests", disable=None):
        order = np.argsort(-activations[:, feat])[:top]
        src = images[order]
        maps = maps_fn(src, feat)
        res = patch_test(predictors, src, maps, images, labels, target=cls, box=box, n=n,
                         top=top, seed=seed)
        label = f"class {cls} · feature {feat}"
        for r in res.rows:
            rows.append({**r, "test": f"image_{r['test']}", "label": label, "class": cls,
                         "feature": feat})
        for p in res.paired:
            paired.append({**p, "test": "image_patch", "label": label, "class": cls,
                           "feature": feat})
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
) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """Term insertion tests; see :func:`analysis.counterfactual.text.term_test`.

    Returns
    -------
    rows : DataFrame with :data:`CF_COLUMNS`
    paired : list of dict
    examples : list of dict (flipped texts before/after)
    """
    res = term_test(predictors, texts, lexicon, toxic_class, mode, templates, n, seed)
    rows = [{**r, "label": f"{r['group']}: {r['term']} ({r['direction']})",
             "class": toxic_class} for r in res.rows]
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


def _to_hwc(x: Any) -> tuple[np.ndarray, bool]:
    """Images as a numpy (n, H, W, C) array; True when the source was channels-first."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1)), True
    return arr, False


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
        Image features to test; default those judged spurious in ``out/report.json``.
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
                               "seed": seed, "kind": kind}
    if kind == "image":
        if features is None:
            rj = out / "report.json"
            features = spurious_features(rj) if rj.exists() else []
        if not features:
            raise ValueError("features: none given and no feature judged spurious in "
                             f"{out / 'report.json'}; pass --features CLASS:FEATURE")
        acts = np.load(run / "features" / f"{split}.npy", mmap_mode="r")
        # the examples needed: every feature's top-activating ones and a random test pool
        tops = [np.argsort(-np.asarray(acts[:, f]))[:top] for _, f in features]
        pool = rng.choice(len(labels), size=min(len(labels), 3 * n), replace=False)
        rows_idx = np.unique(np.concatenate([*tops, pool]))
        images, channels_first = _to_hwc(data[rows_idx.tolist()])

        def to_model(b: np.ndarray) -> Any:
            import torch

            x = np.ascontiguousarray(b.transpose(0, 3, 1, 2) if channels_first else b)
            return torch.from_numpy(x)

        def maps_fn(imgs: np.ndarray, feat: int) -> np.ndarray:
            return np.asarray(extract.spatial_maps(model, meta, to_model(imgs)))[:, feat]

        adapted = {k: (lambda b, p=p: p(to_model(b))) for k, p in predictors.items()}
        rows, paired = image_counterfactuals(adapted, images, labels[rows_idx],
                                             np.asarray(acts[rows_idx]), maps_fn, features,
                                             box, n, top, seed)
        summary.update({"features": [list(f) for f in features], "box": box, "paired": paired})
    else:
        if lexicon is None:
            from sparse_probe.datasets import IDENTITY_TERMS

            lexicon = IDENTITY_TERMS
        classes = meta.get("classes", [])
        toxic = classes.index("toxic") if "toxic" in classes else 1
        texts = [str(t) for t in data[list(range(len(labels)))]]
        rows, paired, examples = text_counterfactuals(predictors, texts, lexicon, toxic, mode,
                                                      templates, n, seed)
        summary.update({"paired": paired, "examples": examples, "mode": mode,
                        "templates": list(templates or [])})
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
