"""The original model beside the sparse head: test accuracy overall, per class and on
cue-aligned vs cue-conflicting ("flipped") test examples.

Names (one meaning each):

- **original**: the network's own last layer. Its accuracy comes from the built-in training
  report ``models/<name>.json`` (``test.accuracy``, ``test.per_class_accuracy``,
  ``test.aligned_accuracy``, ``test.flipped_accuracy``, written by
  :func:`sparse_probe.datasets.prepare.prepare_builtin`); a run on another model has none, and
  the row says so. A report written before per-class accuracy was recorded has none per class:
  the row's ``per_class_note`` says "not recorded".
- **dense path end**: the least-regularized point of the elastic-net path (``probe.json`` key
  ``dense``).
- **sparse**: the selected sparse head (``probe.json`` key ``sparse``).

For the two probe heads, per-class accuracy (recall) and the aligned / flipped accuracies are
computed from ``features/test.npy`` with the training report's definitions
(:func:`sparse_probe.datasets.models.shapes_report` / ``toxicity_report``) when the run's
dataset is built in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYER_LABELS", "model_comparison"]

logger = logging.getLogger(__name__)

#: keys of the comparison -> labels shown in the report
LAYER_LABELS = {"original": "original", "dense": "dense path end", "sparse": "sparse"}


def _training_report(run: Path, meta: dict) -> tuple[dict | None, str | None]:
    models = run / "models"
    if not models.is_dir():
        return None, None
    names = [meta.get("dataset", {}).get("name"), meta.get("model", {}).get("name")]
    candidates = [models / f"{n}.json" for n in names if n]
    found = [p for p in candidates if p.is_file()] or sorted(models.glob("*.json"))[:1]
    if not found:
        return None, None
    try:
        rep = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("%s: training report unreadable (%s); original model not compared",
                       found[0], exc)
        return None, None
    return (rep if isinstance(rep, dict) else None), found[0].relative_to(run).as_posix()


def _cue_report(meta: dict, pred: np.ndarray) -> dict[str, Any] | None:
    """The training report's accuracies of ``pred`` on the built-in test split, else None."""
    if meta.get("dataset", {}).get("source") != "builtin":
        return None
    try:
        from sparse_probe.datasets.models import shapes_report, toxicity_report
        from sparse_probe.datasets.prepare import load_builtin

        split = load_builtin(meta).split("test")
    except (ImportError, KeyError, ValueError, OSError) as exc:
        logger.warning("cue-aligned / flipped accuracy skipped: %s", exc)
        return None
    if len(split.labels) != len(pred):
        logger.warning("test split has %d examples, features %d; cue accuracies skipped",
                       len(split.labels), len(pred))
        return None
    rep = shapes_report if hasattr(split, "has_cue") else toxicity_report
    return rep(pred, split)


def model_comparison(run: str | Path, meta: dict, probe_json: dict) -> dict[str, Any] | None:
    """Original vs dense path end vs sparse head on the test split.

    Parameters
    ----------
    run : path
        Run directory (``models/``, ``features/test.npy``, ``probe/``).
    meta : dict
        ``features/meta.json``.
    probe_json : dict
        ``probe/probe.json`` (its ``accuracy`` and ``selection``).

    Returns
    -------
    dict or None
        ``{"rows": [{"key", "label", "test", "aligned", "flipped", "per_class"
        {class name: accuracy (recall)}, "per_class_note" (why ``per_class`` is empty, else
        None), "source"}], "classes": [...]}``; None without a probe.
    """
    run = Path(run)
    if not probe_json:
        return None
    classes = list(probe_json.get("classes") or meta.get("classes") or [])
    acc = probe_json.get("accuracy", {})
    rows: list[dict[str, Any]] = []
    train_rep, src = _training_report(run, meta)
    test = (train_rep or {}).get("test") or {}
    orig_per_class = test.get("per_class_accuracy")
    if isinstance(orig_per_class, dict) and orig_per_class:
        orig_note = None
        orig_per_class = {str(k): _number(v) for k, v in orig_per_class.items()}
    else:
        orig_per_class = {}
        orig_note = ("not recorded (training report older than per-class accuracy)"
                     if train_rep is not None else "not recorded (no training report)")
    rows.append({"key": "original", "label": LAYER_LABELS["original"],
                 "test": test.get("accuracy"), "aligned": test.get("aligned_accuracy"),
                 "flipped": test.get("flipped_accuracy"), "per_class": orig_per_class,
                 "per_class_note": orig_note,
                 "source": src or "no training report (not a built-in model)"})
    preds: dict[str, np.ndarray] = {}
    y = None
    feats = run / "features"
    sel = probe_json.get("selection", {}).get("index")
    if (feats / "test.npy").is_file() and (feats / "test_labels.npy").is_file() \
            and (run / "probe" / "path.npz").is_file() and sel is not None:
        try:
            from sparse_probe.path import Path as ProbePath

            path = ProbePath.load(run / "probe" / "path.npz")
            X = np.load(feats / "test.npy", mmap_mode="r")
            y = np.load(feats / "test_labels.npy")
            preds["sparse"] = path.decision_function(np.asarray(X), int(sel)).argmax(1)
            preds["dense"] = path.decision_function(np.asarray(X), len(path) - 1).argmax(1)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            logger.warning("per-class accuracy skipped: %s", exc)
            preds, y = {}, None
    for key in ("dense", "sparse"):
        row = {"key": key, "label": LAYER_LABELS[key], "test": acc.get(key, {}).get("test"),
               "aligned": None, "flipped": None, "per_class": {}, "per_class_note": None,
               "source": "probe/probe.json"}
        if key in preds and y is not None:
            pred = preds[key]
            for ci in np.unique(y):
                name = classes[int(ci)] if 0 <= int(ci) < len(classes) else str(int(ci))
                row["per_class"][name] = float((pred[y == ci] == ci).mean())
            cue = _cue_report(meta, pred)
            if cue is not None:
                row["aligned"], row["flipped"] = cue.get("aligned_accuracy"), \
                    cue.get("flipped_accuracy")
        if not row["per_class"]:
            row["per_class_note"] = "not computed (no test features or path)"
        rows.append(row)
    return {"rows": rows, "classes": classes}


def _number(v: Any) -> float | None:
    """A recorded accuracy as a float; None for a missing or non-numeric value."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
