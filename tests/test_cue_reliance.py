"""Planted cues the model can learn, and the measured reliance on each one.

- ``make_shapes(cue_leak=None)`` matches each cue's leak to its strength, so the cue predicts
  its class as well as the class predicts the cue (the built-in demo data uses it);
- :func:`sparse_probe.demo.reliance.cue_reliance` measures, on the test split where every
  cue is planted independently of the class, how much a real trained model relies on each cue;
- the demo summary and ``bench_audit.py`` keep a cue the model did not learn apart from the
  cues the audit missed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_bench import load_bench

from sparse_probe.datasets import load_builtin, make_shapes, prepare
from sparse_probe.datasets.prepare import builtin_params, prepare_builtin
from sparse_probe.demo.reliance import LEARNED_Z, cue_effect, cue_reliance
from sparse_probe.demo.summary import _reliance, summary_lines

ROOT = Path(__file__).resolve().parents[1]


def _precision(split, cue: str) -> float:
    """P(class of the cue | cue) in a split."""
    k = split.cue_class[cue]
    return float((split.labels[split.has_cue[cue]] == k).mean())


def test_matched_leak_makes_the_cue_as_predictive_as_its_strength():
    cues = {"stripe": {"class": "circle", "strength": 0.9},
            "watermark": {"class": "ring", "strength": 0.6}}
    matched = make_shapes(n_train=6000, n_val=60, n_test=60, size=24, seed=3, cues=cues,
                          cue_leak=None)
    fixed = make_shapes(n_train=6000, n_val=60, n_test=60, size=24, seed=3, cues=cues)
    tr = matched.train
    for cue, strength in (("stripe", 0.9), ("watermark", 0.6)):
        k = tr.cue_class[cue]
        assert abs(tr.has_cue[cue][tr.labels == k].mean() - strength) < 0.03
        assert abs(_precision(tr, cue) - strength) < 0.03  # both ways equally predictive
        # the leak is spread over the other classes: (1 - strength) / 5 of each
        assert abs(tr.has_cue[cue][tr.labels != k].mean() - (1 - strength) / 5) < 0.015
    # a fixed 5% leak makes the strong cue clearly less predictive of its class
    assert _precision(fixed.train, "stripe") < 0.82 < _precision(tr, "stripe")
    # the test split does not depend on the leak: every cue independent of the class
    assert np.array_equal(matched.test.images, fixed.test.images)
    assert matched.params["cue_leak"] is None
    again = make_shapes(**matched.params)
    assert np.array_equal(again.train.images, matched.train.images)


def test_builtin_demo_data_uses_the_matched_leak():
    params = builtin_params("shapes", seed=0, quick=True, cues={"stripe": "circle"})
    assert params["cue_leak"] is None
    assert "cue_leak" not in builtin_params("toxicity", seed=0, quick=True)


def test_cue_effect_compares_other_classes_with_and_without_the_cue():
    labels = np.array([0] * 4 + [1] * 200 + [2] * 200)
    has = np.zeros(len(labels), bool)
    has[4:104] = has[204:304] = True  # half of each other class carries the cue
    pred = labels.copy()
    pred[4:64] = 0  # 60 of the 200 other-class images with the cue go to class 0
    pred[304:314] = 0  # 10 of the 200 without it
    e = cue_effect(pred, labels, has, 0)
    assert (e["n_with"], e["n_without"]) == (200, 200)
    assert e["to_class_with"] == 0.3 and e["to_class_without"] == 0.05
    assert e["effect"] == 0.25 and e["z"] > LEARNED_Z and e["learned"]
    pred[304:364] = 0  # now just as many without it: no effect
    e = cue_effect(pred, labels, has, 0)
    assert e["effect"] == 0.0 and not e["learned"]
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        cue_effect(pred[:-1], labels, has, 0)


@pytest.mark.timeout(600)
def test_reliance_of_a_trained_model_separates_a_tied_cue_from_an_untied_one(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(prepare, "CUE_TRAIN_ATTEMPTS", 1)  # one training run: nothing chosen
    # the watermark tied to ring; the stripe at strength 1/6 with the matched leak is planted
    # in 1/6 of every class, i.e. independent of the class: nothing to learn from it
    cues = {"watermark": {"class": "ring", "strength": 0.9},
            "stripe": {"class": "circle", "strength": 1 / 6}}
    run = tmp_path / "shapes"
    prepare_builtin("shapes", run, seed=0, quick=True, progress=False, cues=cues)
    ds = load_builtin(json.loads((run / "features" / "meta.json").read_text()))
    assert abs(_precision(ds.train, "stripe") - 1 / 6) < 0.06
    rel = cue_reliance(run)
    assert set(rel) == {"watermark", "stripe"}
    wm, st = rel["watermark"], rel["stripe"]
    assert wm["learned"] and wm["effect"] > 0.1
    assert wm["class_acc_with"] > wm["class_acc_without"]
    assert not st["learned"] and abs(st["effect"]) < 0.1
    assert wm["n_with"] + wm["n_without"] == int((ds.test.labels != 2).sum())
    # a run whose checkpoint is gone: the summary goes on without the measurement
    (run / "models" / "shapes.pt").rename(run / "models" / "moved.pt")
    assert _reliance(run) == {}


@pytest.mark.timeout(900)
def test_training_retries_until_the_model_relies_on_every_planted_cue(tmp_path):
    # seed 2: the first training run ignores the watermark on triangle (it learns the
    # texture shortcut and the triangle's shape), so no audit could find it
    cues = {"watermark": "triangle", "texture": "ring"}
    run = tmp_path / "shapes"
    prepare_builtin("shapes", run, seed=2, quick=True, progress=False, cues=cues)
    report = json.loads((run / "models" / "shapes.json").read_text())
    check = report["cue_check"]
    first, last = check["attempts"][0], check["attempts"][-1]
    assert first["train_seed"] == 2 and first["min_z"] < LEARNED_Z
    assert abs(first["effects"]["watermark"]) < 0.05
    assert 2 <= len(check["attempts"]) <= prepare.CUE_TRAIN_ATTEMPTS
    assert check["all_learned"] and last["min_z"] >= LEARNED_Z
    assert report["train_seed"] == last["train_seed"] == report["seed"] != 2
    # the kept model relies on both cues on the test split too (the demo's own measure)
    rel = cue_reliance(run)
    assert rel["watermark"]["learned"] and rel["watermark"]["effect"] > 0.1
    assert rel["texture"]["learned"]


def _bench():
    return load_bench("bench_audit")


def _cue(cue, kind, status, learned, effect):
    return {"cue": cue, "kind": kind, "class_name": "x", "status": status, "shown": True,
            "features": [], "learned": learned,
            "reliance": {"effect": effect, "z": effect * 20, "learned": learned}}


def test_bench_counts_recall_over_learned_cues_and_lists_the_others():
    b = _bench()
    rec = {"kind": "image", "seed": 4, "placement": "tint=star,watermark=ring", "strength": 0.9,
           "seconds": 1.0, "n_flagged": 1, "false_alarms": [], "gold_findings": [],
           "cues": [_cue("watermark", "mark", "missed", False, 0.02),
                    _cue("tint", "background", "found", True, 0.6)]}
    lines, ok = b.summarize([rec])
    text = "\n".join(lines)
    assert ok and "watermark       mark" not in text  # not counted as a miss
    assert "cues the model did not learn (not counted above): 1" in text
    assert "image seed 4 [tint=star,watermark=ring]: watermark effect +0.02" in text
    assert "watermark MISSED (effect +0.02, NOT LEARNED)" in b.variant_line(rec)
    rec["cues"][0]["learned"] = True  # a learned cue that was missed is a miss
    lines, ok = b.summarize([rec])
    assert not ok and " watermark       mark   0/1      0.00" in "\n".join(lines)
    # found through a feature of another class than the cue's: counted, and said apart
    rec["cues"][1].update({"class": 4, "features": [[2, 44]]})
    other = {**rec, "cues": [{**rec["cues"][1], "features": [[4, 25], [2, 7]]}]}
    text = "\n".join(b.summarize([rec, other])[0])
    assert ("      tint background   2/2      1.00   1/2 found through a feature of the cue's "
            "own class") in text


def test_summary_lines_say_not_learned_only_for_a_missed_unlearned_cue():
    cue = {"cue": "watermark", "kind": "mark", "class_name": "ring", "status": "missed",
           "note": "NOT LEARNED: ...", "learned": False}
    summary = {"runs": {"shapes": {"report": "r", "flagged": [], "false_alarms": [],
                                   "counterfactual": [], "cues": [cue]}}}
    assert "'watermark' (mark, class ring): MISSED (NOT LEARNED) - NOT LEARNED" in "\n".join(
        summary_lines(summary))
    cue["learned"] = True
    assert "ring): MISSED - " in "\n".join(summary_lines(summary))
