"""HIT evidence panels that show every kind of cue: superpixels, LIME, contrast, the trusted
panel, the pages that show them, and (on the trained built-in shapes model) that the LIME
panel shows a background texture that gradient-sharpened heatmaps put elsewhere."""

from __future__ import annotations

import html
import json
import random

import numpy as np
import pytest
import torch
from bs4 import BeautifulSoup
from helpers_publish import ATTENTION, hit_html
from helpers_viz import ColorCNN, image_run, synthetic_images

from tasks.build import build_tasks
from tasks.hit_render import COLOUR_NOTE, DETAIL_NOTE, PANEL_TEXT
from tasks.simulate import WorkerProfile, choose_answers, parse_hit_form
from tasks.viz.evidence import (
    colour_cue,
    dominant_region,
    panel_faithfulness,
    reader_evidence,
    trusted_panel,
    truth_from_evidence,
)
from tasks.viz.heatmap import normalize_maps
from tasks.viz.lime import lime_coefficients, lime_maps
from tasks.viz.panels import MAP_PANELS, panel_evidence
from tasks.viz.perturb import LUMA, colour_kept, contrast, feature_scorer, fill_removed, greyscale
from tasks.viz.source import ExampleSource
from tasks.viz.superpixels import slic_superpixels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_superpixels_follow_a_colour_edge():
    """Two flat colours split by a vertical edge off the superpixel grid: no superpixel
    straddles the edge, and every image gets labels 0..K-1."""
    x = np.zeros((2, 3, 32, 32))
    x[:, 0, :, :13] = 0.9
    x[:, 2, :, 13:] = 0.9
    seg = slic_superpixels(x, n_segments=16)
    assert seg.shape == (2, 32, 32)
    for s in seg:
        assert set(np.unique(s)) == set(range(s.max() + 1))
        for lab in np.unique(s):
            cols = np.flatnonzero((s == lab).any(0))
            assert cols.max() < 13 or cols.min() >= 13, lab


def test_superpixels_reject_bad_input():
    with pytest.raises(ValueError, match=r"shape \(n, 3, H, W\)"):
        slic_superpixels(np.zeros((2, 32, 32)))


def test_lime_coefficients_recover_a_linear_score():
    rng = np.random.default_rng(0)
    z = (rng.random((200, 6)) < 0.5).astype(float)
    beta = np.array([2.0, 0.0, -1.0, 0.5, 0.0, 3.0])
    y = 0.7 + z @ beta
    got = lime_coefficients(z, y, ridge=1e-9)
    np.testing.assert_allclose(got, beta, atol=1e-6)


def test_fill_removed_paints_grey_and_contrast_counts_it():
    images, _, _, mark = synthetic_images(6, 32)
    out = fill_removed(images, mark)
    i = int(np.flatnonzero(mark.reshape(6, -1).any(1))[0])
    ys, xs = np.nonzero(mark[i])
    np.testing.assert_allclose(out[i, :, ys[0], xs[0]].numpy(), [0.5, 0.5, 0.5])
    assert torch.equal(out[i][:, ~torch.as_tensor(mark[i])],
                       images[i][:, ~torch.as_tensor(mark[i])])
    model = ColorCNN().eval()
    marked = np.flatnonzero(mark.reshape(6, -1).any(1))
    score = feature_scorer([0] * len(marked), [1.0] * len(marked), spatial=model.features)
    c, _, _ = contrast(score, images[marked], mark[marked])
    assert c.ratio("removed") < 0.05 and c.ratio("kept") > 0.9  # channel 0 is the mark


def test_greyscale_keeps_luminance_and_colour_kept_measures_a_colour_feature():
    images, _, _, mark = synthetic_images(6, 32)
    g = greyscale(images)
    assert g.shape == images.shape
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    px = images[0, :, 3, 5]
    luma = float(sum(w * float(v) for w, v in zip(LUMA, px, strict=True)))
    assert float(g[0, 0, 3, 5]) == pytest.approx(luma, abs=1e-6)
    model = ColorCNN().eval()
    marked = np.flatnonzero(mark.reshape(6, -1).any(1))
    colour = feature_scorer([0] * len(marked), [1.0] * len(marked), spatial=model.features)
    assert colour_kept(colour, images[marked]) < 0.05  # the magenta mark's channel: colour
    flat = feature_scorer([2] * len(marked), [1.0] * len(marked), spatial=model.features)
    assert colour_kept(flat, images[marked]) == pytest.approx(1.0)  # fires on every pixel
    against = feature_scorer([2] * len(marked), [-1.0] * len(marked), spatial=model.features)
    assert colour_kept(against, images[marked]) is None  # nothing to lose: not a share


def test_a_colour_the_maps_cannot_place_is_read_from_the_greyscale_line():
    """A tinted-background feature whose maps point at the object (its edge meets the tint):
    removing the object leaves most of it, greyscale takes most of it: the tint, the one cue
    in the top images. Not when a map's region is more necessary than the colour, when the
    colour is not necessary, when two cues fill the top images, or without the line."""
    maps = {"lime": {"object": 0.95, "cues": {"tint": 0.05, "stripe": 0.0}, "background": 0.0,
                     "removed": 0.72, "kept": 0.63, "area": 0.14},
            "activation": {"object": 0.82, "cues": {"tint": 0.18, "stripe": 0.0},
                           "background": 0.0, "removed": 0.60, "kept": 0.85, "area": 0.36}}
    images = {"top": {"stripe": 0.0, "tint": 1.0}, "least": {"stripe": 0.0, "tint": 0.67}}
    tint = {"object": 0.0, "cues": {"stripe": 0.0, "tint": 1.0}, "background": 0.0}
    assert colour_cue(0.49, maps, images) == "tint"
    assert reader_evidence(None, maps, images, 0.49) == tint
    assert reader_evidence(None, maps, images)["object"] == 0.82  # no line: the object map
    assert colour_cue(0.51, maps, images) is None  # the colour is not necessary
    assert colour_cue(0.60, maps, images, left=0.6) == "tint"
    sharp = {**maps, "activation": {**maps["activation"], "removed": 0.40}}
    assert colour_cue(0.45, sharp, images) is None  # a map's region is more necessary
    assert colour_cue(0.40, sharp, images) == "tint"  # ... not more than the colour
    # a region that holds the tint around the object's edge greys the colour with it: its
    # removal says nothing against the colour (held-out seed 32's circle:20, as its HIT shows)
    edge = {**maps, "lime": {"object": 0.598, "cues": {"tint": 0.402, "stripe": 0.0},
                             "background": 0.0, "removed": 0.2375, "kept": 0.637,
                             "area": 0.52}}
    assert colour_cue(0.4563, edge, images) == "tint"
    for on_tint, named in ((0.2, "tint"), (0.19, None)):
        region = {**edge["lime"], "object": 1.0 - on_tint, "cues": {"tint": on_tint}}
        assert colour_cue(0.4563, {**maps, "lime": region}, images) == named
        assert colour_cue(0.4563, {**maps, "lime": region}, images,
                          in_region=0.5) is None  # a looser line lets it count
    # a map that does not name the cue at all holds none of it
    bare_cues = {**sharp, "activation": {**sharp["activation"], "cues": {}}}
    assert colour_cue(0.45, bare_cues, images) is None
    blank = {**maps, "activation": {**maps["activation"], "removed": 0.0, "kept": 0.0}}
    assert colour_cue(0.49, blank, images) == "tint"  # a map without contrast says nothing
    both = {"top": {"stripe": 0.9, "tint": 1.0}, "least": {}}
    assert colour_cue(0.3, maps, both) is None  # which colour? the reader cannot tell
    assert colour_cue(0.3, maps, {"top": {"tint": 0.7}}) is None
    assert colour_cue(0.3, maps, {"top": {"tint": 0.8}}) == "tint"
    assert colour_cue(None, maps, images) is None and colour_cue(0.3, None, images) is None
    assert colour_cue(0.3, maps, None) is None
    bare = {"lime": {k: v for k, v in maps["lime"].items() if k != "removed"}}
    assert colour_cue(0.49, bare, images) == "tint"  # no removal number: nothing more necessary
    # the reader's evidence names every cue the page knows, from the images and the maps
    only_tint = {"top": {"tint": 1.0}, "least": {}}
    assert reader_evidence(None, maps, only_tint, 0.49) == tint
    more = {"top": {"tint": 1.0, "watermark": 0.1}, "least": {}}
    assert reader_evidence(None, maps, more, 0.49)["cues"] == {"stripe": 0.0, "tint": 1.0,
                                                               "watermark": 0.0}


def test_lime_puts_the_mark_channel_on_the_mark():
    images, labels, _obj, mark = synthetic_images(12, 32)
    model = ColorCNN().eval()
    rows = np.flatnonzero(labels == 1)[:6]
    score = feature_scorer([0] * 6, [1.0] * 6, spatial=model.features)
    maps, seg = lime_maps(score, images[rows], n_samples=64, n_segments=32)
    assert seg.shape == maps.shape and (maps >= 0).all()
    shown = normalize_maps(maps, floor=0.5)  # what the HIT shows
    share = (shown * mark[rows]).sum() / shown.sum()
    assert share > 0.5
    # a negative weight on a non-negative channel: nothing supports the class, empty maps
    score_neg = feature_scorer([0] * 6, [-1.0] * 6, spatial=model.features)
    assert not lime_maps(score_neg, images[rows], n_samples=32)[0].any()


def test_trusted_panel_is_the_one_whose_region_explains_the_feature():
    panels = {"lime": {"object": 0.2, "cues": {"texture": 0.8}, "background": 0.0,
                       "removed": 0.05, "kept": 0.8},
              "gradient": {"object": 0.6, "cues": {"texture": 0.4}, "background": 0.0,
                           "removed": 0.7, "kept": 0.3}}
    assert trusted_panel(panels) == "lime"
    assert trusted_panel({}) is None
    # two maps that explain a mark feature about equally: the more precise one (a coarse
    # blob around the mark is faithful too, but its shares spread over the surroundings)
    mark = {"activation": {"removed": 0.14, "kept": 1.10, "area": 0.13},
            "lime": {"removed": 0.12, "kept": 1.03, "area": 0.02}}
    assert trusted_panel(mark) == "lime"
    assert trusted_panel(mark, tolerance=0.0) == "activation"
    ev = reader_evidence({"object": 1.0, "cues": {}, "background": 0.0}, panels)
    assert ev["cues"] == {"texture": 0.8} and ev["object"] == 0.2
    # without panels the one attribution shown is what the reader sees
    plain = {"object": 1.0, "cues": {}, "background": 0.0}
    assert reader_evidence(plain, None) is plain


def test_a_cue_the_maps_leave_open_is_read_from_the_images():
    """Maps split between object and texture (no region dominates): the texture in every
    top image and in few least-activating ones decides; a cue as common in the
    least-activating images, or a map that does show the object, does not."""
    split = {"lime": {"object": 0.44, "cues": {"texture": 0.56, "watermark": 0.0},
                      "background": 0.0, "removed": 0.3, "kept": 0.6, "area": 0.3}}
    images = {"top": {"texture": 1.0, "watermark": 0.0},
              "least": {"texture": 0.22, "watermark": 0.0}}
    seen = reader_evidence(None, split, images)
    assert seen == {"object": 0.0, "cues": {"texture": 1.0, "watermark": 0.0},
                    "background": 0.0}
    assert reader_evidence(None, split, {"top": {"texture": 1.0},
                                         "least": {"texture": 0.9}})["object"] == 0.44
    clear = {"lime": {**split["lime"], "object": 0.9, "cues": {"texture": 0.1}}}
    assert reader_evidence(None, clear, images)["object"] == 0.9
    assert dominant_region(clear["lime"]) == "object" and dominant_region(split["lime"]) is None


def test_simulated_worker_reads_the_panels_not_a_misleading_heatmap():
    """A row whose one-heatmap evidence says 'object' but whose panels show a faithful
    background map: a diligent simulated worker answers 'background', as a person reading
    the contrast numbers would."""
    form = parse_hit_form(hit_html("k1", "image", ["a.png"]))
    misleading = {"object": 0.7, "cues": {"texture": 0.3}, "background": 0.0}
    panels = {"lime": {"object": 0.1, "cues": {"texture": 0.9}, "background": 0.0,
                       "removed": 0.04, "kept": 0.85, "area": 0.6},
              "activation": {"object": 0.25, "cues": {"texture": 0.75}, "background": 0.0,
                             "removed": 0.2, "kept": 0.7, "area": 0.6}}
    worker = WorkerProfile("D", "diligent", 1.0)
    old = choose_answers(form, {"kind": "image", "evidence": misleading,
                                "attention": ATTENTION}, worker, random.Random(0))
    new = choose_answers(form, {"kind": "image", "evidence": misleading, "evidence_panels":
                                panels, "attention": ATTENTION}, worker, random.Random(0))
    assert old["pattern"] == "object"
    assert (new["shared"], new["pattern"]) == ("yes", "background")


def test_panels_on_a_model_without_spatial_maps_use_its_features():
    images, labels, obj, mark = synthetic_images(8, 32)
    model = ColorCNN().eval()
    src = ExampleSource(kind="image", images=images, features=model.embed,
                        object_masks=obj, cue_masks={"mark": mark}, cue_kind={"mark": "mark"})
    rows = np.flatnonzero(labels == 1)[:4]
    pe = panel_evidence(src, rows, 0, 1.0, panels=MAP_PANELS, lime_samples=32)
    assert set(pe.shown) == {"lime", "activation"}  # no gradient panel without maps
    assert pe.evidence["lime"]["cues"]["mark"] > 0.5
    assert set(pe.evidence["lime"]) == {"object", "cues", "background", "removed", "kept",
                                        "area"}


@pytest.mark.slow
def test_rendered_hits_show_and_describe_every_panel(tmp_path):
    probe, feats, src = image_run(tmp_path)
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.0,
                      fvis_steps=4, fvis_size=32, n_examples=6, progress=False,
                      lime_samples=48)
    lines = 0
    for r in res.manifest:
        soup = BeautifulSoup((tmp_path / "tasks" / r["html"]).read_text(), "html5lib")
        text = " ".join(soup.get_text(" ").split())
        srcs = {img["src"].rsplit("/", 1)[1] for img in soup.find_all("img")}
        for role in ("grid", "heat", "activation", "contrast", "least", "fvis",
                     "class_examples"):
            assert r["assets"][role].rsplit("/", 1)[1] in srcs, role
        # one line per panel says what it shows
        panels = [" ".join(li.get_text().split())
                  for li in soup.find("ul", class_="panels").find_all("li")]
        assert len(panels) == 7
        for name in ("lime", "activation"):
            title, line = PANEL_TEXT[name]
            assert f"{title}: {' '.join(line.split())}" in panels
        # the contrast table gives the feature left per map, as percentages
        rows = soup.find("table", class_="contrast").find_all("tr")[1:]
        assert len(rows) == 2
        for tr, (name, c) in zip(rows, r["evidence_panels"].items(), strict=True):
            cells = [td.get_text() for td in tr.find_all("td")]
            assert cells == [PANEL_TEXT[name][0], f"{round(100 * c['removed'])}%",
                             f"{round(100 * c['kept'])}%"]
        # the greyscale line: the feature left without colour, as a percentage (none where
        # the signed feature is not positive on the shown images: nothing to lose)
        if r["colour"] is None:
            assert soup.find("p", class_="colour-note") is None
        else:
            assert " ".join(COLOUR_NOTE.format(pct=round(100 * r["colour"])).split()) in text
            lines += 1
        # the blur line, the same way (tasks.viz.perturb.detail_kept)
        if r["detail"] is None:
            assert soup.find("p", class_="detail-note") is None
        else:
            assert " ".join(DETAIL_NOTE.format(pct=round(100 * r["detail"])).split()) in text
        assert "in the highlighted parts or anywhere else" in text
        assert "anywhere else: a shared background, texture, colour or mark counts" in text
    assert lines >= 1
    batch = (tmp_path / "tasks" / "batch.csv").read_text()
    shown = [r for r in res.manifest if r["colour"] is not None]
    assert html.escape(COLOUR_NOTE.format(pct=round(100 * shown[0]["colour"]))) in batch
    blur = [r for r in res.manifest if r["detail"] is not None]
    assert blur and html.escape(DETAIL_NOTE.format(pct=round(100 * blur[0]["detail"]))) in batch
    mark = next(r for r in res.manifest if r["feature"] == 0 and r["weight"] > 0)
    assert mark["colour"] < 0.05  # the magenta mark's channel needs its colour
    assert mark["truth"] == "spurious:mark"
    trusted = trusted_panel(mark["evidence_panels"])
    assert mark["evidence"] == {k: mark["evidence_panels"][trusted][k]
                                for k in ("object", "cues", "background")}


#: From ``benchmarks/measure_evidence.py`` (benchmarks/results/evidence-cpu-2026-12-01.txt:
#: seeds 0-3 x four cue placements with the image's mean colour as fill, seeds 0 and 3 with
#: the grey fill the panels use now): on the channel most tied to the texture, the LIME map's
#: share on the texture mask was 0.64-1.00 (0.94 at seed 0, the seed of this test; once 0.00,
#: at seed 1, where the drop rule picked the watermark's channel, whose top images have no
#: texture, as every map agreed; the
#: gradient-sharpened map's 0.41 there, 0.23-1.00 over all); the faithfulness (kept - removed)
#: of the better HIT map exceeded the gradient map's by at least 0.5 in every run. Bounds sit
#: well inside the spread.
MARGINS = {"lime_texture_share": 0.55, "faithfulness_gap": 0.3}


@pytest.mark.slow
def test_lime_shows_the_texture_that_the_gradient_heatmap_misses():
    """The trained built-in ShapesCNN (quick, seed 0; texture planted on ring): on the channel
    that depends most on the texture, the LIME panel's mass sits on the texture (the
    gradient heatmap's sits on the object at this seed), a map the HIT shows explains the
    feature (contrast numbers) far better than the gradient map, and the evidence a reader
    takes from the panels says "spurious: background"."""
    pytest.importorskip("sparse_probe.extract")
    from helpers_viz import prepared_builtin

    from sparse_probe.datasets import load_builtin, make_shapes
    from sparse_probe.extract import read_meta
    from tasks.viz.source import load_source
    from tasks.viz.topk import top_k

    meta = read_meta(prepared_builtin("shapes") / "features")
    src = load_source(meta, "val")
    ds = load_builtin(meta)
    val = ds.val
    clean = make_shapes(**{**meta["dataset"]["params"], "cue_strength": 0.0,
                           "cue_leak": 0.0}).val
    x = src.images[np.arange(len(val))]
    xc = torch.from_numpy(clean.images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        f = src.spatial(x).mean((2, 3)).numpy()
        fc = src.spatial(xc).mean((2, 3)).numpy()
    only = val.has_cue["texture"] & ~val.has_cue["watermark"]
    drop = (f[only] - fc[only]).mean(0) / (f[only].mean(0) + 1e-6)
    drop[f[only].mean(0) < np.median(f[only].mean(0))] = -np.inf  # as measure_evidence.py
    ch = int(np.argmax(drop))
    assert drop[ch] > 0.5
    rows = top_k(f[:, ch], 9)
    pe = panel_evidence(src, rows, ch, 1.0, panels=MAP_PANELS)
    lime, grad = pe.evidence["lime"], pe.evidence["gradient"]
    assert lime["cues"]["texture"] > MARGINS["lime_texture_share"], lime
    assert lime["cues"]["texture"] > grad["cues"]["texture"], (lime, grad)
    shown = {p: pe.evidence[p] for p in ("lime", "activation")}
    best = max(panel_faithfulness(p) for p in shown.values())
    assert best - panel_faithfulness(grad) > MARGINS["faithfulness_gap"], pe.evidence
    seen = reader_evidence(None, shown)
    assert truth_from_evidence(seen, ds.cue_kind) == "spurious:background"
    json.dumps(pe.evidence)  # manifest-ready
