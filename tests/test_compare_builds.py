"""benchmarks/compare_builds.py: what must agree between two HIT builds, and what is measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_builds import compare, main


def _build(root: Path, *, ids=("val/1", "val/2"), truth="core", object_=0.9, shade=0) -> Path:
    (root / "assets").mkdir(parents=True)
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 0] = shade
    Image.fromarray(img).save(root / "assets" / "h1-heat.png")
    row = {"hit_key": "h1", "class": 0, "feature": 3, "layer": "sparse",
           "example_ids": list(ids), "truth": truth, "truth_maps": truth, "truth_removal": None,
           "is_gold": False, "gold": None, "evidence": {"object": object_, "cues": {"m": 0.0}},
           "assets": {"heat": "assets/h1-heat.png"}}
    (root / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    return root


def test_same_builds_agree_and_rounding_is_measured(tmp_path, capsys):
    a = _build(tmp_path / "a")
    b = _build(tmp_path / "b", object_=0.8995, shade=40)
    r = compare(a, b)
    assert r["problems"] == [] and r["hits"] == 1
    assert abs(r["evidence_max_abs_diff"] - 0.0005) < 1e-12
    assert r["pixel_max_abs_diff"] == 40
    assert r["pixels_by_asset"]["heat"] == {"images": 1, "max": 40, "mean": 3 * 40 / 192}  # one pixel, 3 channels
    assert main([str(a), str(b), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["hits"] == 1
    assert "SAME example_ids" in capsys.readouterr().out


def test_different_examples_or_truth_fail(tmp_path, capsys):
    a = _build(tmp_path / "a")
    assert main([str(a), str(_build(tmp_path / "b", ids=("val/1", "val/3")))]) == 1
    assert "example_ids differs" in capsys.readouterr().out
    r = compare(a, _build(tmp_path / "c", truth="spurious:mark"))
    assert any("truth differs" in p for p in r["problems"])
    assert main([str(a), str(tmp_path / "missing")]) == 2
