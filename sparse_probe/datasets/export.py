"""Write the built-in datasets as plain files the generic loaders read.

Shapes become an ImageFolder (``{split}/{class}/{index}.png``) plus ``truth.npz`` (object and cue
masks, cue flags, labels in dataset order) and ``truth.json`` (class names, cues, parameters and
the file of each example in dataset order); toxicity becomes ``{split}.csv`` with columns
``id, text, label`` (class name) and truth columns ``has_identity, identity_group,
template_kind``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sparse_probe.datasets.shapes import ShapesDataset
from sparse_probe.datasets.toxicity import ToxicityDataset
from sparse_probe.rundir import atomic_path

__all__ = ["write_shapes_imagefolder", "write_toxicity_csv"]

logger = logging.getLogger(__name__)


def write_shapes_imagefolder(ds: ShapesDataset, out: str | os.PathLike, *,
                             progress: bool = True) -> Path:
    """Write ``ds`` as an ImageFolder tree under ``out`` with ``truth.npz`` / ``truth.json``."""
    from PIL import Image

    from sparse_probe.rundir import write_json

    out = Path(out)
    truth: dict[str, np.ndarray] = {}
    files: dict[str, list[str]] = {}
    total = sum(len(s) for s in ds.splits.values())
    with tqdm(total=total, desc="write shapes", unit="img", disable=not progress) as bar:
        for name, sp in ds.splits.items():
            for cls in ds.class_names:
                (out / name / cls).mkdir(parents=True, exist_ok=True)
            files[name] = []
            for i in range(len(sp)):
                rel = f"{name}/{ds.class_names[sp.labels[i]]}/{i:06d}.png"
                Image.fromarray(sp.images[i]).save(out / rel, compress_level=1)
                files[name].append(rel)
                bar.update(1)
            truth[f"{name}_labels"] = sp.labels
            truth[f"{name}_object_masks"] = sp.object_masks
            for cue in sp.cue_masks:
                truth[f"{name}_{cue}_masks"] = sp.cue_masks[cue]
                truth[f"{name}_has_{cue}"] = sp.has_cue[cue]
    with atomic_path(out / "truth.npz") as tmp:
        np.savez_compressed(tmp, **truth)
    write_json(out / "truth.json", {
        "dataset": ds.describe(), "class_names": ds.class_names, "cue_class": ds.cue_class,
        "cue_kind": ds.cue_kind, "files": files,
    })
    return out


def write_toxicity_csv(ds: ToxicityDataset, out: str | os.PathLike) -> Path:
    """Write ``ds`` as ``{split}.csv`` files under ``out``."""
    import pandas as pd

    from sparse_probe.rundir import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, sp in ds.splits.items():
        df = pd.DataFrame({
            "id": sp.ids, "text": sp.texts, "label": [ds.class_names[y] for y in sp.labels],
            "has_identity": sp.has_identity, "identity_group": sp.identity_group,
            "template_kind": sp.template_kind,
        })
        with atomic_path(out / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    write_json(out / "truth.json", {"dataset": ds.describe(),
                                           "class_names": ds.class_names})
    return out
