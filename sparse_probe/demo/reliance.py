"""The model's reliance on each planted cue of a finished built-in shapes run (test split).

See :mod:`sparse_probe.datasets.cue_reliance` for what is measured and why the test split
(every cue planted independently of the class) measures it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparse_probe.datasets.cue_reliance import LEARNED_Z, cue_effect, cue_effects
from sparse_probe.rundir import RunDir, read_features_meta

__all__ = ["LEARNED_Z", "cue_effect", "cue_reliance"]


def cue_reliance(run: Path, device: str | None = None) -> dict[str, dict[str, Any]]:
    """Per planted cue of a built-in shapes run, the original model's reliance on it
    (:func:`sparse_probe.datasets.cue_reliance.cue_effect` on the test split); empty for
    other runs."""
    from sparse_probe.datasets.models import predict_images
    from sparse_probe.datasets.prepare import load_builtin
    from sparse_probe.datasets.shapes import ShapesDataset
    from sparse_probe.extract import load_model

    rd = RunDir(run)
    meta = read_features_meta(rd.features)
    if meta.get("kind") != "image" or (meta.get("dataset") or {}).get("name") != "shapes":
        return {}
    ds = load_builtin(meta)
    if not isinstance(ds, ShapesDataset):
        return {}
    pred = predict_images(load_model({**meta, "_dir": str(rd.features)}, device=device),
                          ds.test.images, device=device)
    return cue_effects(pred, ds.test)
