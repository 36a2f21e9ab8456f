"""``benchmarks/bench_audit.py``: the variant list, the summary table, and a ``--tiny`` run of
the real audits end to end (one image and one text variant) so the benchmark cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_bench import load_bench

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_bench("bench_audit")


def _record(kind, seed, placement, strength, statuses, alarms=0, gold=0):
    return {"kind": kind, "seed": seed, "placement": placement, "strength": strength,
            "seconds": 1.0, "n_flagged": 0,
            "cues": [{"cue": c, "kind": k, "class_name": "x", "status": s, "shown": True,
                      "features": []} for c, k, s in statuses],
            "false_alarms": [{"class_name": "x", "feature": 1, "truth": "core"}] * alarms,
            "gold_findings": [{"class_name": "x", "feature": 2}] * gold}


def test_variants_cover_every_cue_kind_and_slice(capsys):
    b = _bench()
    img = b.image_variants([0, 1])
    assert len(img) == 10 and len({(v["seed"], v["placement"]) for v in img}) == 10
    planted = {part.split("=")[0] for v in img for part in v["placement"].split(",")}
    assert planted == {"watermark", "texture", "stripe", "tint"}
    assert b.cue_list(img[0]) == ["watermark=triangle:0.9", "texture=ring:0.9"]
    assert b.main(["--list", "--variants", "2:4", "--kinds", "image"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(ln.split(" ", 1)[1])["placement"] for ln in lines] == [
        b.PLACEMENTS[2], b.PLACEMENTS[3]]
    assert b.main(["--list", "--tiny"]) == 0
    kinds = [json.loads(ln.split(" ", 1)[1])["kind"] for ln in
             capsys.readouterr().out.splitlines()]
    assert kinds == ["image", "text"]


def test_summary_counts_recall_false_alarms_and_gold():
    b = _bench()
    recs = [_record("image", 0, "watermark=triangle,texture=ring", 0.9,
                    [("watermark", "mark", "found"), ("texture", "background", "found")]),
            _record("image", 1, "watermark=triangle,texture=ring", 0.9,
                    [("watermark", "mark", "found"), ("texture", "background", "missed")]),
            _record("text", 0, "identity=toxic", None, [("identity terms", "identity",
                                                          "found")])]
    lines, ok = b.summarize(recs)
    text = "\n".join(lines)
    assert not ok  # texture found in 1 of 2 < 95%
    assert " watermark       mark   2/2      1.00" in text
    assert "   texture background   1/2      0.50" in text
    assert "  identity   identity   1/1      1.00" in text
    assert "false alarms: 0" in text and "findings resting on gold items: 0" in text
    recs[1]["cues"][1]["status"] = "found"
    assert b.summarize(recs)[1]
    recs[2]["gold_findings"] = [{"class_name": "toxic", "feature": 3}]
    lines, ok = b.summarize(recs)
    assert not ok and "findings resting on gold items: 1" in "\n".join(lines)
    assert "text seed 0 [identity=toxic]: toxic:3" in "\n".join(lines)


def test_summary_sets_apart_uncarried_cues_and_mixed_features():
    b = _bench()
    rec = _record("image", 3, "stripe=ring,watermark=square", 0.9,
                  [("stripe", "mark", "found"), ("watermark", "mark", "missed")])
    rec["truth_by_intervention"] = True
    rec["cues"][1]["shown"] = False  # no audited feature is mainly the watermark
    rec["mixed"] = [{"class_name": "ring", "feature": 7, "kind": "mark", "truth": "none",
                     "truth_source": "intervention",
                     "removal": {"object": 0.3, "cues": {"stripe": 0.4, "watermark": 0.0},
                                 "kinds": {"mark": 0.4}}}]
    rec["n_flagged"], rec["n_flagged_by_intervention"] = 3, 2
    lines, ok = b.summarize([rec])
    text = "\n".join(lines)
    assert ok  # the uncarried watermark is listed apart, not missed
    assert "    stripe       mark   1/1      1.00" in text and " watermark " not in text.split(
        "cues the model did not learn")[0]
    assert ("learned cues that no audited feature carries as its pattern (by intervention; "
            "not counted above): 1\n  image seed 3 [stripe=ring,watermark=square]: watermark"
            in text)
    assert ("flagged mixed features (neither findings nor false alarms: the named cue carries "
            "at least 20% of the feature but less than half): 1, 0 of them with the object "
            "carrying more (false alarms by the stricter rule used until 2026-12-02)\n  image "
            "seed 3 [stripe=ring,watermark=square]: ring:7 as mark by intervention: object "
            "0.30, stripe 0.40, watermark 0.00") in text
    rec["mixed"][0]["removal"]["object"] = 0.41  # the object carries more than the mark
    assert "but less than half): 1, 1 of them" in "\n".join(b.summarize([rec])[0])
    assert "truth of the flagged features: 2 of 3 by intervention" in text
    # without the truth by intervention a cue no HIT showed is simply missed
    rec["truth_by_intervention"] = False
    lines, ok = b.summarize([rec])
    assert not ok and " watermark       mark   0/1      0.00" in "\n".join(lines)
    # a false alarm decided by intervention shows its shares
    rec["false_alarms"] = [{"class_name": "cross", "feature": 2, "truth": "core",
                            "truth_source": "intervention",
                            "removal": {"object": 0.85, "cues": {"watermark": 0.16}}}]
    assert ("cross:2 (truth core by intervention: object 0.85, watermark 0.16)"
            in "\n".join(b.summarize([rec])[0]))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_tiny_run_end_to_end(tmp_path, capsys):
    b = _bench()
    record = tmp_path / "runs.jsonl"
    b.main(["--tiny", "--record", str(record), "--workdir", str(tmp_path / "wd")])
    out = capsys.readouterr().out
    recs = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["kind"] for r in recs] == ["image", "text"]
    assert {c["cue"] for c in recs[0]["cues"]} == {"watermark", "texture"}
    assert [c["kind"] for c in recs[1]["cues"]] == ["identity"]
    for r in recs:
        assert all(c["status"] in ("found", "missed") for c in r["cues"])
        assert r["gold_findings"] == []  # gold items are never findings
        assert b.variant_line(r) in out
        # the truth of the audited features came from the intervention, not the maps
        assert r["truth_by_intervention"] is True
        assert r["n_flagged_by_intervention"] <= r["n_flagged"]
    assert "2 variants (1 image, 1 text)" in out and "targets (" in out
    assert not (tmp_path / "wd" / "image-s0-watermark-triangle_texture-ring-0.9").exists()
