"""A small synthetic study (another study's MTurk results CSV + its study file) with known
aggregates: ties, gaps in class ids, 1-based ids, empty answers."""

from __future__ import annotations

import csv
from pathlib import Path

STUDY_TOML = """
title = "Synthetic published study"

[columns]
worker = "WorkerId"
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

M, S, B, E = "main_object", "separate_object", "background", ""
#: (class id, class name, feature, answers) -> expected k_of_n verdict/kind, majority verdict
ITEMS = [
    ("7", "dog", "1", [M, M, M, M, M], ("core", None), ("core", None)),
    ("7", "dog", "2", [S, B, S, B, M], ("spurious", "background+mark"), ("undecided", None)),
    ("7", "dog", "3", [M, S, M, S, B], ("spurious", "mark"), ("undecided", None)),
    ("12", "cat", "5", [B, M, B, M, B], ("spurious", "background"), ("spurious", "background")),
    ("12", "cat", "6", [M, B, M, B, M], ("core", None), ("core", None)),
    ("1", "car", "9", [S, S, S, S], ("spurious", "mark"), ("spurious", "mark")),
    ("1", "car", "10", [M, E, B, M, E], ("undecided", None), ("core", None)),
]


def write_study(tmp: Path, *, extra_rows: list[dict[str, str]] = (),
                reasons: dict[tuple[str, int], str] | None = None) -> tuple[Path, Path]:
    """Write ``results.csv`` (MTurk full-ish header) and ``study.toml`` under ``tmp``."""
    header = ["HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "WorkTimeInSeconds",
              "Input.class_index", "Input.class_name", "Input.feature_index", "Answer.main",
              "Answer.confidence", "Answer.reasons", "Approve", "Reject"]
    rows = []
    for cls, name, feat, answers, _, _ in ITEMS:
        for w, a in enumerate(answers):
            text = (reasons or {}).get((f"c{cls}-f{feat}", w), f"reason {w} for {feat}")
            rows.append({"HITId": f"H{cls}-{feat}", "AssignmentId": f"A{cls}-{feat}-{w}",
                         "WorkerId": f"W{w}", "AssignmentStatus": "Approved",
                         "WorkTimeInSeconds": "30", "Input.class_index": cls,
                         "Input.class_name": name, "Input.feature_index": feat,
                         "Answer.main": a, "Answer.confidence": str(3 + w % 3),
                         "Answer.reasons": text, "Approve": "", "Reject": ""})
    rows.extend({k: r.get(k, "") for k in header} for r in extra_rows)
    csv_path = tmp / "results.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=header)
        wr.writeheader()
        wr.writerows(rows)
    study = tmp / "study.toml"
    study.write_text(STUDY_TOML, encoding="utf-8")
    return csv_path, study
