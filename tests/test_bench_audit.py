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
    assert "2 variants (1 image, 1 text)" in out and "targets (" in out
    assert not (tmp_path / "wd" / "image-s0-watermark-triangle_texture-ring-0.9").exists()
