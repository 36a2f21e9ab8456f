"""The ground truth by intervention: the shapes generator redraws images without a region
(every other pixel identical), the share of a feature each region carries, and the truth it
implies, checked on hand-computable scorers and on a model whose channels are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_viz import BagOfWordsEncoder, ShapesProbeCNN, synthetic_texts

from sparse_probe.datasets import make_shapes
from sparse_probe.datasets.shapes import REMOVABLE, render_without
from sparse_probe.demo.summary import is_mixed, object_larger, summarize_run
from sparse_probe.questions import default_schema
from tasks.build import HitSpec, _assign_gold
from tasks.viz.evidence import (
    NECESSARY_LEFT,
    SUFFICIENT_KEPT,
    cue_backed_by_contrast,
    dominant_region,
    reader_evidence,
)
from tasks.viz.intervention import (
    PARTIAL_SHARE,
    REMOVAL_THRESHOLD,
    removal_effects,
    text_removal,
    truth_from_removal,
)
from tasks.viz.perturb import feature_scorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_CUES = {"watermark": "star", "texture": "cross", "stripe": "circle", "tint": "square"}


@pytest.mark.parametrize("seed,cues", [(11, None), (23, ALL_CUES),
                                       (5, {"stripe": "ring", "watermark": "ring"})])
def test_redrawn_images_differ_only_inside_the_removed_region(seed, cues):
    ds = make_shapes(n_train=90, n_val=40, n_test=70, size=40, seed=seed, cues=cues,
                     cue_leak=None)
    for split in ("train", "val", "test"):
        sp = ds.split(split)
        assert np.array_equal(render_without(ds.params, split, []), sp.images)
        for region in ("object", *ds.cue_class):
            mask = sp.object_masks if region == "object" else sp.cue_masks[region]
            assert mask.any(), region
            changed = (render_without(ds.params, split, [region]) != sp.images).any(-1)
            assert not (changed & ~mask).any(), region  # nothing outside the region moves
            assert changed[mask].mean() > 0.95, region  # the region itself is redrawn
        both = [c for c in ds.cue_class][:2]
        changed = (render_without(ds.params, split, both) != sp.images).any(-1)
        union = np.logical_or.reduce([sp.cue_masks[c] for c in both])
        assert not (changed & ~union).any() and changed[union].mean() > 0.95


def test_a_cue_that_is_not_planted_changes_nothing_and_bad_names_are_errors():
    ds = make_shapes(n_train=30, n_val=12, n_test=12, size=32, seed=2)  # watermark, texture
    assert np.array_equal(render_without(ds.params, "val", ["stripe", "tint"]),
                          ds.val.images)
    with pytest.raises(ValueError, match="cannot remove 'logo'; expected one of object"):
        render_without(ds.params, "val", ["logo"])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        render_without(ds.params, "dev", ["object"])
    assert set(REMOVABLE) == {"object", "watermark", "texture", "stripe", "tint"}


def _region_scorer(weights: np.ndarray):
    """score = sum over pixels of weights * channel 0 (a linear feature: drops add up)."""
    w = torch.as_tensor(weights, dtype=torch.float32)

    def score(images: torch.Tensor, which: np.ndarray) -> np.ndarray:
        return (images[:, 0] * w).sum((1, 2)).double().numpy()

    return score


def test_shares_are_the_features_drop_when_each_region_goes():
    # 2 images 4x4, channel 0 = 1 everywhere; the feature weighs object pixels 3, cue a 2,
    # cue b 1, elsewhere 0 -> removals take 3/6, 2/6, 1/6; a and b together 3/6
    regions = {"object": np.zeros((4, 4), bool), "a": np.zeros((4, 4), bool),
               "b": np.zeros((4, 4), bool)}
    regions["object"][0, :3] = True
    regions["a"][1, :2] = True
    regions["b"][2, 0] = True
    weights = np.zeros((4, 4))
    weights[regions["object"]] = 1.0
    weights[regions["a"]] = 1.0
    weights[regions["b"]] = 1.0
    images = torch.ones(2, 3, 4, 4)

    def without(removed):
        x = images.clone()
        for r in removed:
            x[:, :, torch.as_tensor(regions[r])] = 0.0
        return x

    eff = removal_effects(_region_scorer(weights), images, without, {"a": "mark", "b": "mark"})
    assert eff["object"] == pytest.approx(3 / 6)
    assert eff["cues"] == pytest.approx({"a": 2 / 6, "b": 1 / 6})
    assert eff["kinds"] == pytest.approx({"mark": 3 / 6})  # both marks removed at once
    assert truth_from_removal(eff) == "spurious:mark"  # half each: the cue comes first
    eff2 = removal_effects(_region_scorer(weights), images, without,
                           {"a": "mark", "b": "background"})
    assert eff2["kinds"] == pytest.approx({"mark": 2 / 6, "background": 1 / 6})
    # a feature that is not positive on the shown images has nothing to take away
    neg = removal_effects(_region_scorer(-weights), images, without, {"a": "mark"})
    assert neg == {"object": 0.0, "cues": {"a": 0.0}, "kinds": {"mark": 0.0}}


@pytest.mark.parametrize("eff,truth", [
    ({"object": 0.9, "kinds": {"mark": 0.2}}, "core"),
    ({"object": 0.3, "kinds": {"mark": 0.7}}, "spurious:mark"),
    ({"object": 0.45, "kinds": {"mark": 0.45, "background": 0.1}}, "none"),
    ({"object": 0.2, "kinds": {"mark": 0.55, "background": 0.6}}, "spurious:background"),
    ({"object": REMOVAL_THRESHOLD, "kinds": {"mark": 0.1}}, "core"),
    ({"object": REMOVAL_THRESHOLD - 1e-9, "kinds": {"mark": 0.1}}, "none"),
    ({"object": 0.1, "kinds": {"background": REMOVAL_THRESHOLD - 1e-9}}, "none"),
    ({"object": 0.9, "kinds": {"background": REMOVAL_THRESHOLD}}, "spurious:background"),
    ({"object": 1.2, "kinds": {"mark": 1.2}}, "spurious:mark"),
])
def test_truth_is_a_cue_kind_carrying_half_else_the_object_carrying_half(eff, truth):
    assert truth_from_removal(eff) == truth


def test_a_model_with_known_channels_gets_the_truth_its_construction_implies():
    # held-out data made here: seed 31, the watermark on square, the tint on circle
    ds = make_shapes(n_train=60, n_val=60, n_test=60, size=64, seed=31,
                     cues={"watermark": "square", "tint": "circle"}, cue_leak=None)
    sp = ds.val
    model = ShapesProbeCNN().eval()
    x = torch.from_numpy(sp.images).permute(0, 3, 1, 2).float() / 255.0

    def without(regions):
        return torch.from_numpy(render_without(ds.params, "val", regions)).permute(
            0, 3, 1, 2).float() / 255.0

    marked = np.flatnonzero(sp.has_cue["watermark"])[:9]
    k = len(marked)
    assert k >= 5
    mark_score = feature_scorer([0] * k, [1.0] * k, spatial=model.features)
    eff = removal_effects(mark_score, x[marked], lambda r: without(r)[marked], ds.cue_kind)
    # channel 0 is the magenta detector: the watermark carries all of it, the object nothing
    assert eff["cues"]["watermark"] == pytest.approx(1.0, abs=0.02)
    assert abs(eff["object"]) < 0.05 and abs(eff["cues"]["tint"]) < 0.05
    assert truth_from_removal(eff) == "spurious:mark"
    rows = np.arange(9)
    dark = feature_scorer([1] * 9, [1.0] * 9, spatial=model.features)
    eff = removal_effects(dark, x[rows], lambda r: without(r)[rows], ds.cue_kind)
    # channel 1 fires on dark pixels, i.e. the objects
    assert eff["object"] > 0.8 and abs(eff["kinds"]["background"]) < 0.2
    assert truth_from_removal(eff) == "core"


def _summary_run(tmp_path, rows):
    """A finished run directory as summarize_run reads it: features/meta.json of a built-in
    shapes dataset (stripe and watermark, both marks, on ring), the manifest and report.json
    rows given as (hit_key, feature, truth by the maps, verdict, removal or None)."""
    ds = make_shapes(n_train=30, n_val=12, n_test=12, size=32, seed=4,
                     cues={"stripe": "ring", "watermark": "ring"})
    run = tmp_path / "run"
    (run / "features").mkdir(parents=True)
    (run / "features" / "meta.json").write_text(json.dumps(
        {"format": 1, "kind": "image", "classes": ds.class_names, "dataset": ds.describe()}))
    manifest, feats = [], []
    for key, f, truth, verdict, removal in rows:
        kinds = (removal or {}).get("kinds") or {}
        best = max([("core", (removal or {}).get("object", 0.0)),
                    *((f"spurious:{k}", v) for k, v in kinds.items())], key=lambda kv: kv[1])
        manifest.append({"hit_key": key, "evidence": {"object": 0.1, "cues": {
            "stripe": 0.1, "watermark": 0.8}, "background": 0.0}, "truth": truth,
            "removal": removal,
            "truth_removal": None if removal is None
            else (best[0] if best[1] >= REMOVAL_THRESHOLD else "none")})
        feats.append({"hit_key": key, "class": 2, "class_name": "ring", "feature": f,
                      "kind": "image", "truth": truth, "is_gold": False, "verdict": verdict})
    (run / "tasks").mkdir()
    (run / "tasks" / "manifest.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in manifest))
    (run / "report").mkdir()
    (run / "report" / "report.json").write_text(json.dumps(
        {"summary": {"kind": "image"}, "features": feats}))
    return run


def test_summary_takes_the_truth_by_intervention_over_the_maps(tmp_path):
    stripe = {"object": 0.1, "cues": {"stripe": 0.8, "watermark": 0.0}, "kinds": {"mark": 0.8}}
    mixed = {"object": 0.85, "cues": {"stripe": 0.0, "watermark": 0.16},
             "kinds": {"mark": 0.16}}
    run = _summary_run(tmp_path, [
        # the maps say watermark (evidence), the intervention says the stripe carries it
        ("img-c02-f0001-sparse", 1, "spurious:mark", "spurious", stripe),
        # the maps say mark, the intervention says the object: a false alarm
        ("img-c02-f0002-sparse", 2, "spurious:mark", "spurious", mixed),
        # shown where lowest: no intervention, the maps' truth stands
        ("img-c02-f0003-sparse", 3, "spurious:mark", "not spurious", None)])
    s = summarize_run(run)
    cues = {c["cue"]: c for c in s["cues"]}
    assert s["truth_by_intervention"] is True
    assert cues["stripe"]["status"] == "found" and cues["stripe"]["features"] == [[2, 1]]
    # the watermark dominates the maps of feature 3 only: shown, never flagged
    assert cues["watermark"]["status"] == "missed" and cues["watermark"]["shown"]
    assert [(f["feature"], f["truth"], f["truth_source"]) for f in s["false_alarms"]] == [
        (2, "core", "intervention")]
    assert s["false_alarms"][0]["removal"]["cues"]["watermark"] == 0.16
    # checks measured afterwards replace the manifest's
    s2 = summarize_run(run, checks={"img-c02-f0002-sparse": {"truth": "spurious:mark",
                                                             "removal": {**stripe}}})
    assert s2["false_alarms"] == []
    assert {c["cue"]: c["features"] for c in s2["cues"]}["stripe"] == [[2, 1], [2, 2]]


def test_summary_without_intervention_keeps_the_maps_truth(tmp_path):
    run = _summary_run(tmp_path, [("img-c02-f0005-sparse", 5, "core", "spurious", None)])
    s = summarize_run(run)
    assert s["truth_by_intervention"] is False
    assert [(f["truth"], f["truth_source"]) for f in s["false_alarms"]] == [("core", "maps")]


def test_text_truth_deletes_each_kind_of_word_from_the_shown_comments():
    texts, kinds, _ = synthetic_texts(n=40, seed=9)  # held-out seed: data made here
    enc = BagOfWordsEncoder()
    toks = [t.split() for t in texts]
    with_id = [i for i, k in enumerate(kinds) if any(x.startswith("identity") for x in k)
               and "insult" in k]
    assert len(with_id) >= 5
    sel_t, sel_k = [toks[i] for i in with_id], [kinds[i] for i in with_id]
    # feature 1 counts identity terms: deleting them takes all of it, the insults nothing
    check = text_removal(enc.encode, sel_t, sel_k, 1, 1.0, 0.0, ["insult"])
    assert check["removal"]["deletion"] == pytest.approx({"identity": 1.0, "object": 0.0})
    assert check["removal"]["kinds"]["identity"] == pytest.approx(1.0)
    assert check["truth"] == "spurious:identity"
    # feature 0 counts insults (the class's own words): the object
    check = text_removal(enc.encode, sel_t, sel_k, 0, 1.0, 0.0, ["insult"])
    assert check["removal"]["object"] == pytest.approx(1.0) and check["truth"] == "core"
    # shares are of the departure from the baseline: with a baseline of 0.5 an insult count
    # of 1 departs by 0.5, and deleting it leaves -0.5, i.e. takes 200% of the departure
    check = text_removal(enc.encode, sel_t, sel_k, 0, 1.0, 0.5, ["insult"])
    assert check["removal"]["object"] == pytest.approx(2.0)
    # filler words (feature 3) are neither: nothing of either kind carries them
    check = text_removal(enc.encode, sel_t, sel_k, 3, 1.0, 0.0, ["insult"])
    assert check["removal"]["object"] == 0.0 and check["removal"]["kinds"] == {
        "identity": 0.0} and check["truth"] == "none"
    # a negative weight reads the feature the other way: comments at the baseline or above
    # do not depart the class's way, so there is nothing to measure
    assert text_removal(enc.encode, sel_t, sel_k, 1, -1.0, 0.0, ["insult"]) is None


def test_text_truth_by_insertion_into_ordinary_comments():
    texts, kinds, _ = synthetic_texts(n=40, seed=17)
    enc = BagOfWordsEncoder()
    toks = [t.split() for t in texts]
    ident = sorted({t for ts, ks in zip(toks, kinds, strict=True)
                    for t, k in zip(ts, ks, strict=True) if k.startswith("identity")})
    # the feature counts identity terms and filler words; its top comments depart by
    # (their filler + identity) - baseline, and appending one identity term to an ordinary
    # comment adds exactly 1
    counted = set(BagOfWordsEncoder.groups[1]) | set(BagOfWordsEncoder.groups[3])

    def encode(batch):
        out = enc.encode(batch)
        return torch.stack([out[:, 1] + out[:, 3], out[:, 0]], 1)

    top = sorted(range(len(toks)), key=lambda i: -sum(t in counted for t in toks[i]))[:6]
    sel_t, sel_k = [toks[i] for i in top], [kinds[i] for i in top]
    vals = encode([" ".join(t) for t in sel_t])[:, 0].numpy()
    baseline = float(vals.min()) - 2.0  # every shown comment departs by at least 2
    ordinary = ["plain words here", "more plain words"]
    check = text_removal(encode, sel_t, sel_k, 0, 1.0, baseline, ["insult"],
                         ordinary=ordinary, cue_words=ident)
    dep = float(np.mean(vals - baseline))
    assert check["removal"]["insertion"]["identity"] == pytest.approx(1.0 / dep, abs=1e-4)
    # appending an insult (the class's words, from the shown comments) adds nothing here
    assert check["removal"]["insertion"]["object"] == pytest.approx(0.0)
    # the share is the larger of deletion and insertion
    assert check["removal"]["kinds"]["identity"] == pytest.approx(
        max(check["removal"]["deletion"]["identity"], 1.0 / dep), abs=1e-4)
    # no ordinary comments: no insertion
    assert text_removal(encode, sel_t, sel_k, 0, 1.0, baseline, ["insult"],
                        cue_words=ident)["removal"]["insertion"] == {"object": 0.0,
                                                                      "identity": 0.0,
                                                                      "control": 0.0}
    # the control group: filler words move this feature exactly as identity terms do, so
    # insertion says nothing about identity terms beyond what any counted word does
    filler = sorted(BagOfWordsEncoder.groups[3])
    ctrl = text_removal(encode, sel_t, sel_k, 0, 1.0, baseline, ["insult"],
                        ordinary=ordinary, cue_words=ident, control_words=filler)
    assert ctrl["removal"]["insertion"]["control"] == pytest.approx(1.0 / dep, abs=1e-4)
    assert ctrl["removal"]["kinds"]["identity"] == pytest.approx(
        max(ctrl["removal"]["deletion"]["identity"], 0.0), abs=1e-4)
    # insults move it by nothing, so net of the control they take it back by as much
    assert ctrl["removal"]["object"] == pytest.approx(
        max(ctrl["removal"]["deletion"]["object"], -1.0 / dep), abs=1e-4)
    # a control that the feature ignores subtracts nothing
    plain = text_removal(encode, sel_t, sel_k, 0, 1.0, baseline, ["insult"],
                         ordinary=ordinary, cue_words=ident, control_words=["plain", "words"])
    assert plain["removal"]["kinds"] == check["removal"]["kinds"]


def _panel(obj, cues, rest, removed, kept=0.8, area=0.1):
    return {"object": obj, "cues": cues, "background": rest, "removed": removed,
            "kept": kept, "area": area}


@pytest.mark.parametrize("removed,kept,cue,named", [
    (0.3, 0.8, "mark", True), (NECESSARY_LEFT, 0.8, "mark", True),
    (NECESSARY_LEFT + 1e-6, 0.8, "mark", False), (0.3, 0.0, "mark", False),
    (0.7, SUFFICIENT_KEPT, "tint", True), (0.7, SUFFICIENT_KEPT - 1e-6, "tint", False),
    # sufficiency stands in for necessity only for a backdrop (a colour cast's grey fill is
    # no neutral removal); a mark whose removal leaves most of the feature is not its pattern
    (0.7, SUFFICIENT_KEPT, "mark", False), (0.7, 1.0, "watermark", False),
    (0.7, SUFFICIENT_KEPT, "texture", True)])
def test_reader_names_a_cue_only_where_a_maps_contrast_backs_it(removed, kept, cue, named):
    panels = {"lime": _panel(0.1, {cue: 0.9, "tex": 0.0}, 0.0, removed, kept),
              "activation": _panel(0.1, {cue: 0.85, "tex": 0.0}, 0.05, 0.9)}
    seen = reader_evidence(None, panels)
    assert (dominant_region(seen) == cue) is named
    if not named:  # no single pattern: the rest holds everything
        assert seen == {"object": 0.0, "cues": {cue: 0.0, "tex": 0.0}, "background": 1.0}
    assert cue_backed_by_contrast(cue, panels) is named


def test_contrast_must_come_from_a_map_that_is_mainly_the_cue():
    # the map whose removal takes the feature highlights mainly the object; the map on the
    # mark leaves 70% of the feature when its region goes: the mark is not the pattern
    panels = {"lime": _panel(0.2, {"mark": 0.8}, 0.0, 0.7),
              "activation": _panel(0.8, {"mark": 0.2}, 0.0, 0.2)}
    assert not cue_backed_by_contrast("mark", panels)
    # exactly half of the map's mass on the cue, and at least the object's, is enough
    half = {"lime": _panel(0.5, {"mark": 0.5}, 0.0, 0.4)}
    assert cue_backed_by_contrast("mark", half)
    assert not cue_backed_by_contrast("mark", {"lime": _panel(0.51, {"mark": 0.49}, 0.0, 0.4)})
    # the object is read as before, whatever the contrast
    obj = {"lime": _panel(0.9, {"mark": 0.1}, 0.0, 0.9), "activation": _panel(0.8, {"mark": 0.1},
                                                                             0.1, 0.9)}
    assert dominant_region(reader_evidence(None, obj)) == "object"


def test_a_cue_read_from_the_images_alone_needs_a_backing_map():
    images = {"top": {"mark": 1.0}, "least": {"mark": 0.0}}
    split = {"lime": _panel(0.45, {"mark": 0.35}, 0.2, 0.6),
             "activation": _panel(0.4, {"mark": 0.3}, 0.3, 0.55)}
    assert dominant_region(reader_evidence(None, split, images)) is None
    backed = {**split, "lime": _panel(0.3, {"mark": 0.6}, 0.1, 0.45)}
    # the LIME map is now mainly the mark and its contrast takes more than half
    assert dominant_region(reader_evidence(None, backed, images)) == "mark"


def _spec(key, feature, truth, maps=None, removal=None):
    h = HitSpec(hit_key=key, kind="image", layer="dense", cls=0, class_name="circle",
                feature=feature, weight=1.0, rank=1, direction="highest",
                examples=np.arange(3), example_ids=["val/0", "val/1", "val/2"],
                attention="5")
    h.evidence = {"object": 0.9, "cues": {"mark": 0.05}, "background": 0.05}
    h.truth = maps
    h.decide_by_intervention(None if removal is None else {"removal": removal,
                                                          "truth": truth})
    if removal is None:
        h.truth = truth
    return h


def test_gold_needs_the_maps_and_the_intervention_to_agree():
    audited = [_spec("img-c00-f0001-sparse", 1, "core")]
    obj = {"object": 0.9, "cues": {"mark": 0.0}, "kinds": {"mark": 0.0}}
    agree = _spec("img-c00-f0002-dense", 2, "core", maps="core", removal=obj)
    disagree = _spec("img-c00-f0003-dense", 3, "spurious:mark", maps="core",
                     removal={"object": 0.1, "cues": {"mark": 0.8}, "kinds": {"mark": 0.8}})
    assert (disagree.truth, disagree.truth_maps) == ("spurious:mark", "core")
    chosen = _assign_gold(audited, [disagree, agree], 1.0, 0, None, default_schema())
    assert [h.hit_key for h in chosen] == ["img-c00-f0002-dense"]
    assert chosen[0].gold == {"shared": "yes", "pattern": "object"}
    assert _assign_gold(audited, [disagree], 1.0, 0, None, default_schema()) == []
    # without an intervention (other data) the maps' clear truth is enough
    plain = _spec("img-c00-f0004-dense", 4, "core")
    assert _assign_gold(audited, [plain], 1.0, 0, None, default_schema()) == [plain]


@pytest.mark.parametrize(("kind_share", "obj", "source", "mixed", "larger"), [
    (PARTIAL_SHARE, 0.9, "intervention", True, True),        # a fifth of it: mixed
    (PARTIAL_SHARE - 1e-9, 0.1, "intervention", False, False),  # less: a false alarm
    (0.4, 0.3, "intervention", True, False),
    (0.4, 0.4, "intervention", True, False),                  # larger means strictly more
    (0.4, 0.3, "maps", False, False),                          # no measurement, no mixing
])
def test_mixed_means_the_named_cue_carries_a_fifth_and_says_if_the_object_carries_more(
        kind_share, obj, source, mixed, larger):
    f = {"kind": "background", "truth_source": source,
         "removal": {"object": obj, "kinds": {"background": kind_share, "mark": 0.9}}}
    assert is_mixed(f) is mixed
    assert object_larger(f) is (larger if source == "intervention" else obj > kind_share)


def test_object_larger_with_a_kind_or_an_object_not_measured():
    # the named kind was not measured: it carries nothing, so any object share is larger
    f = {"kind": "mark", "truth_source": "intervention",
         "removal": {"object": 0.1, "kinds": {"background": 0.9}}}
    assert object_larger(f) is True and is_mixed(f) is False
    # no object share recorded: the object carries nothing
    f = {"kind": "background", "truth_source": "intervention",
         "removal": {"object": None, "kinds": {"background": 0.3}}}
    assert object_larger(f) is False and is_mixed(f) is True
    assert object_larger({"kind": "mark", "removal": {}}) is False
