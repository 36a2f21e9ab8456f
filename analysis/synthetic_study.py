"""A synthetic "published study" of any size: an MTurk batch-results CSV and its study file.

The shape follows the published studies the ``--study`` route is for: (class, feature) items,
``n_workers`` answers each to one 3-valued question (``main_object`` / ``separate_object`` /
``background``), a 1-5 confidence and a free-text reason. Class ids are 1-based with gaps,
class names are strings. Used by ``benchmarks/bench_report.py`` and the browser test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["STUDY_TOML", "write_synthetic_study"]

#: The study file of the synthetic study (k_of_n: spurious when >= 3 of 5 are not core).
STUDY_TOML = """\
title = "Synthetic published study"

[columns]
worker = "WorkerId"
assignment = "AssignmentId"
class = "Input.class_index"
feature = "Input.feature_index"
class_name = "Input.class_name"
confidence = "Answer.confidence"
free_text = "Answer.reasons"

[[questions]]
id = "main"
column = "Answer.main"
values = [
  {value = "main_object", meaning = "core"},
  {value = "separate_object", meaning = "spurious", spurious_kind = "mark"},
  {value = "background", meaning = "spurious", spurious_kind = "background"},
]

[rule]
method = "k_of_n"
question = "main"
k = 3
n = 5
"""

_VALUES = np.array(["main_object", "separate_object", "background"], dtype=object)
_REASONS = np.array([
    "the highlighted region is the animal itself", "it focuses on the object's texture",
    "a watermark in the corner", "there is a person holding it", "mostly sky and grass",
    "water in the background", "a logo on the side", "the face of the dog",
    "<b>bold</b> & 'quoted' text", "not sure, looks like the table under it",
], dtype=object)


def write_synthetic_study(out_dir: str | Path, *, n_items: int = 5000, n_classes: int = 1000,
                          n_workers: int = 5, pool: int = 300, accuracy: float = 0.8,
                          seed: int = 0) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``study.toml`` under ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
    n_items : int
        (class, feature) items, spread evenly over the classes.
    n_classes : int
    n_workers : int
        Answers per item (distinct workers).
    pool : int
        Workers in the crowd.
    accuracy : float
        Probability a worker gives the item's true value (else one of the other two).
    seed : int

    Returns
    -------
    (csv_path, study_path)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    class_ids = np.sort(rng.choice(np.arange(1, int(n_classes * 1.2) + 2), n_classes,
                                   replace=False))
    item_class = class_ids[np.arange(n_items) % n_classes]
    # distinct features within a class: the k-th item of a class gets one from block k
    item_feature = (np.arange(n_items) // n_classes) * 41 + rng.integers(0, 41, n_items)
    truth = rng.choice(3, n_items, p=[0.6, 0.2, 0.2])
    n = n_items * n_workers
    item = np.repeat(np.arange(n_items), n_workers)
    # distinct workers per item: a random offset walk through the pool
    start = rng.integers(0, pool, n_items)
    worker = (np.repeat(start, n_workers) + np.tile(np.arange(n_workers), n_items) * 7) % pool
    right = rng.random(n) < accuracy
    other = (truth[item] + rng.integers(1, 3, n)) % 3
    answer = np.where(right, truth[item], other)
    df = pd.DataFrame({
        "HITId": "HIT" + pd.Series(item).astype(str),
        "HITTypeId": "TYPE1", "Title": "Which part of the image?", "Reward": "$0.10",
        "AssignmentId": "ASG" + pd.Series(np.arange(n)).astype(str),
        "WorkerId": "W" + pd.Series(worker).astype(str).str.zfill(4),
        "AssignmentStatus": "Approved",
        "AcceptTime": "Wed Jul 08 04:10:00 PDT 2020", "SubmitTime": "Wed Jul 08 04:16:53 PDT 2020",
        "WorkTimeInSeconds": rng.integers(10, 200, n).astype(str),
        "Input.class_index": item_class[item].astype(str),
        "Input.class_name": "class " + pd.Series(item_class[item]).astype(str),
        "Input.feature_index": item_feature[item].astype(str),
        "Answer.main": _VALUES[answer],
        "Answer.confidence": rng.integers(1, 6, n).astype(str),
        "Answer.reasons": _REASONS[rng.integers(0, len(_REASONS), n)],
        "Approve": "", "Reject": "",
    })
    csv_path = out / "results.csv"
    df.to_csv(csv_path, index=False)
    study = out / "study.toml"
    study.write_text(STUDY_TOML, encoding="utf-8")
    return csv_path, study
