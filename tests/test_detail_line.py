"""The blur line of image HITs: the feature left with the fine detail blurred out, and the
background texture a careful reader names from it (tasks.viz.perturb.detail_kept,
tasks.viz.evidence.detail_cue)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from bs4 import BeautifulSoup
from helpers_bench import load_bench
from helpers_publish import hit_html

from tasks.hit_render import DETAIL_NOTE, render_hit
from tasks.simulate import WorkerProfile, choose_answers, parse_hit_form
from tasks.viz.evidence import (
    DETAIL_LEFT,
    backdrop_unneeded,
    cue_kind,
    detail_cue,
    reader_evidence,
)
from tasks.viz.perturb import DETAIL_SIGMA, blurred, detail_kept


@pytest.mark.parametrize("period", [4.0, 6.0, 10.0, 16.0])
def test_the_blur_keeps_a_sinusoid_as_the_gaussian_transfer_function_says(period):
    """Closed form: a Gaussian of standard deviation σ keeps exp(-2π²σ²/P²) of a sinusoid
    of period P (the Fourier transform of the kernel; to within the kernel's truncation at
    3σ and its sampling)."""
    size, sigma = 64, 1.5
    x = torch.arange(size, dtype=torch.float64)
    wave = torch.cos(2 * np.pi * x / period)
    img = (0.5 + 0.3 * wave)[None, None, None, :].expand(1, 3, size, size).contiguous()
    out = blurred(img, sigma)
    centre = out[0, 0, size // 2, 16:48] - 0.5
    amp = float((centre * wave[16:48]).sum() / (wave[16:48] ** 2).sum()) / 0.3
    assert amp == pytest.approx(np.exp(-2 * np.pi ** 2 * sigma ** 2 / period ** 2), abs=0.02)


def test_the_blur_leaves_flat_images_and_borders_alone():
    img = torch.rand(2, 3, 1, 1).expand(2, 3, 20, 24).contiguous()
    torch.testing.assert_close(blurred(img, 2.0), img)  # reflected borders: no dark rim
    torch.testing.assert_close(blurred(img, 0.0), img)
    assert blurred(torch.rand(1, 3, 5, 5), 9.0).shape == (1, 3, 5, 5)  # kernel cut to fit


def _stripes_and_blob(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        period = rng.uniform(4.0, 5.0)
        img = np.full((3, size, size), 0.5)
        img += 0.25 * np.sign(np.sin(2 * np.pi * (xx + yy) / period))[None]
        cy, cx = rng.uniform(20, 44, 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 100
        img[:, blob] = rng.uniform(0, 1, 3)[:, None]
        out.append(img)
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def test_detail_kept_tells_a_fine_texture_from_a_shape():
    images = _stripes_and_blob(5)

    def texture(x, which):  # energy of the finest detail: neighbouring pixels differ
        return (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3)).double().numpy()

    def blob(x, which):  # the blob's colour against the image's mean: a shape feature
        return x.amax(dim=(2, 3)).sum(1).double().numpy() - x.mean(dim=(1, 2, 3)).double().numpy()

    def against(x, which):
        return -texture(x, which)

    assert detail_kept(texture, images) < 0.5
    assert detail_kept(blob, images) > 0.8
    assert detail_kept(against, images) is None  # nothing to lose: not a share
    # σ is a share of the image's side: the same stripes at twice the size fade as much
    big = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest")
    assert detail_kept(texture, big) == pytest.approx(detail_kept(texture, images), abs=0.1)
    assert pytest.approx(1.0) == DETAIL_SIGMA * 64


MAPS = {"lime": {"object": 0.65, "cues": {"texture": 0.35, "watermark": 0.0},
                 "background": 0.0, "removed": 0.41, "kept": 0.73, "area": 0.25},
        "activation": {"object": 0.45, "cues": {"texture": 0.55, "watermark": 0.0},
                       "background": 0.0, "removed": 0.49, "kept": 0.67, "area": 0.36}}
IMAGES = {"top": {"texture": 1.0, "watermark": 0.0}, "least": {"texture": 0.67, "watermark": 0.0}}


def test_a_texture_the_maps_split_with_the_object_is_read_from_the_blur_line():
    """A held-out ring feature (seed 39): texture 0.55 and object 0.42 by the truth; LIME puts
    0.65 on the object, the activation map 0.55 on the texture, and each region takes the
    other along. The blur left 0.40 of it: the texture, the one background cue in the top
    images."""
    texture = {"object": 0.0, "cues": {"texture": 1.0, "watermark": 0.0}, "background": 0.0}
    assert detail_cue(0.40, MAPS, IMAGES) == "texture"
    assert reader_evidence(None, MAPS, IMAGES, None, 0.40) == texture
    assert reader_evidence(None, MAPS, IMAGES, 1.0, 0.40) == texture  # colour not needed
    assert reader_evidence(None, MAPS, IMAGES, None, 0.60)["object"] == pytest.approx(0.65)
    assert detail_cue(DETAIL_LEFT, MAPS, IMAGES) == "texture"  # at most half left
    assert detail_cue(DETAIL_LEFT + 0.01, MAPS, IMAGES) is None
    assert detail_cue(0.55, MAPS, IMAGES, left=0.6) == "texture"
    assert detail_cue(None, MAPS, IMAGES) is None and detail_cue(0.4, MAPS, None) is None


def test_the_blur_line_names_only_a_background_cue_shared_by_the_top_images():
    for cue, named in (("texture", "texture"), ("tint", "tint"), ("watermark", None),
                       ("stripe", None)):
        images = {"top": {cue: 1.0}, "least": {cue: 0.5}}
        maps = {n: {**p, "cues": {cue: p["cues"]["texture"]}} for n, p in MAPS.items()}
        assert detail_cue(0.3, maps, images) == named  # a blur dims a small mark too
        assert (cue_kind(cue) == "background") == (named is not None)
    assert [cue_kind(c) for c in ("Corner_Logo", "identity:religion", "shape")] == [
        "mark", "identity", "other"]
    assert detail_cue(0.3, MAPS, {"top": {"texture": 0.79}}) is None
    assert detail_cue(0.3, MAPS, {"top": {"texture": 0.8}}) == "texture"
    assert detail_cue(0.3, MAPS, {"top": {"texture": 0.9, "tint": 0.9}}) is None  # which?
    assert detail_cue(0.3, MAPS, {"top": {"texture": 0.9, "watermark": 1.0}}) == "texture"


def test_a_map_region_apart_from_the_texture_that_is_more_necessary_wins():
    """An object map whose region, without the texture, takes more of the feature than the
    blur does shows the pattern; a region that holds a fifth of the texture does not count
    (blurring and removing it both take the texture)."""
    sharp = {**MAPS, "lime": {**MAPS["lime"], "cues": {"texture": 0.1}, "removed": 0.2}}
    assert detail_cue(0.4, sharp, IMAGES) is None
    assert detail_cue(0.15, sharp, IMAGES) == "texture"  # not more than the blur
    for on_texture, named in ((0.2, "texture"), (0.19, None)):
        region = {**sharp["lime"], "object": 1.0 - on_texture, "cues": {"texture": on_texture}}
        assert detail_cue(0.4, {**MAPS, "lime": region}, IMAGES) == named
        assert detail_cue(0.4, {**MAPS, "lime": region}, IMAGES, in_region=0.5) is None
    blank = {**sharp, "lime": {**sharp["lime"], "kept": 0.0}}
    assert detail_cue(0.4, blank, IMAGES) == "texture"  # a map without contrast says nothing
    assert detail_cue(0.4, None, IMAGES) == "texture"


ASSETS = {"grid": "../assets/g.png", "heat": "../assets/h.png",
          "class_examples": "../assets/e.png", "contrast": "../assets/c.png"}


def _page(**kw) -> BeautifulSoup:
    return BeautifulSoup(render_hit(kind="image", hit_key="k", class_name="ring",
                                    direction="highest", attention_number="3", assets=ASSETS,
                                    n_examples=4, heat_panel="lime",
                                    contrast={"lime": {"removed": 0.4, "kept": 0.7}}, **kw),
                         "html5lib")


def test_the_hit_page_shows_the_blur_line():
    note = _page(colour=0.9, detail=0.374).find("p", class_="detail-note")
    assert " ".join(note.get_text().split()) == " ".join(DETAIL_NOTE.format(pct=37).split())
    assert _page(colour=0.9).find("p", class_="detail-note") is None


def test_simulated_worker_reads_the_blur_line_of_the_manifest_row():
    form = parse_hit_form(hit_html("k1", "image", ["a.png"]))
    worker = WorkerProfile("D", "diligent", 1.0)
    row = {"kind": "image", "evidence_panels": MAPS, "evidence_images": IMAGES,
           "attention": {"field": "attention", "expected": "3"}}
    with_line = choose_answers(form, {**row, "detail": 0.40}, worker, random.Random(0))
    assert (with_line["shared"], with_line["pattern"]) == ("yes", "background")
    without = choose_answers(form, {**row, "detail": 0.80}, worker, random.Random(0))
    assert without["pattern"] != "background"


def test_measure_detail_groups_features_by_the_texture_share_and_counts_the_line(tmp_path):
    bench = load_bench("measure_detail")
    recs = [{"texture": t, "top_textured": top, "detail": {"1": d}}
            for t, top, d in ((0.55, 1.0, 0.3), (0.5, 0.8, 0.5), (0.45, 1.0, 0.6),
                              (0.1, 0.9, 0.7), (0.9, 0.79, 0.2), (None, 1.0, 0.9))]
    assert [bench.group_of(r) for r in recs] == [bench.GROUPS[i] for i in (0, 0, 1, 2, 3, 3)]
    rows = bench.table(recs, [1.0])
    by_group = {r.split()[1] + " " + r.split()[2]: r.split() for r in rows[1:]}
    assert by_group["texture >="][-5:] == ["2", "0.30", "0.40", "0.50", "2"]  # 0.5 counts
    assert by_group["top images"][-5:] == ["2", "0.20", "0.55", "0.90", "1"]
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path)])  # not a kept variant directory


@pytest.mark.parametrize(("shape", "sigma"), [((24, 24), 1.0), ((24, 24), 2.3), ((9, 30), 2.0),
                                               ((30, 9), 2.0), ((6, 6), 0.5), ((24, 24), 0.3),
                                               ((5, 30), 2.0), ((30, 5), 2.0)])
def test_the_blur_is_scipys_gaussian_filter_with_mirrored_borders(shape, sigma):
    """Reference: scipy.ndimage.gaussian_filter, whose kernel reaches int(truncate·σ + 0.5)
    pixels, with ``mode="mirror"`` (torch's reflect padding); where the image is too small
    for that reach the blur reaches side - 1 pixels, as scipy does with truncate set so."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(int(10 * sigma))
    img = rng.random((2, 3, *shape))
    reach = min(max(1, int(3 * sigma + 0.5)), shape[0] - 1, shape[1] - 1)
    want = gaussian_filter(img, sigma=(0, 0, sigma, sigma), mode="mirror",
                           truncate=reach / sigma)
    got = blurred(torch.as_tensor(img), sigma).numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_detail_kept_is_the_blurred_mean_over_the_original_mean_per_image_feature():
    """Each shown image is scored for its own feature (``which``); the share is the ratio of
    the means, and a feature that is zero on the originals has no share."""
    rng = np.random.default_rng(4)
    images = torch.as_tensor(rng.random((4, 3, 16, 16)))
    means = images.mean(dim=(2, 3))  # (4, 3): feature c of image r is its channel-c mean

    def score(x, which):
        idx = np.asarray(which) % 3  # the caller says which feature each image is shown for
        return (x.mean(dim=(2, 3))[np.arange(len(x)), idx] + 2.0).double().numpy()

    b = blurred(images, 16 * DETAIL_SIGMA)
    want = float((b.mean(dim=(2, 3))[np.arange(4), np.arange(4) % 3] + 2.0).mean()
                 / (means[np.arange(4), np.arange(4) % 3] + 2.0).mean())
    assert detail_kept(score, images) == pytest.approx(want, rel=1e-12)
    assert abs(want - 1.0) < 0.05  # a mirrored blur keeps the means: about 1

    def zero(x, which):
        return np.zeros(len(x))

    assert detail_kept(zero, images) is None


def test_the_blur_rule_reads_each_map_as_colour_cue_does():
    """A map that names no texture holds none of it; a map without a removal number leaves
    everything (1.0); a map whose region leaves exactly as much as the blur is not more
    necessary; the reader passes the maps on to the rule."""
    sharp = {**MAPS, "lime": {**MAPS["lime"], "cues": {}, "removed": 0.2}}
    assert detail_cue(0.4, sharp, IMAGES) is None  # no texture named: none in the region
    bare = {"lime": {**{k: v for k, v in MAPS["lime"].items() if k != "removed"}, "cues": {}}}
    assert detail_cue(0.4, bare, IMAGES) == "texture"
    assert detail_cue(1.2, bare, IMAGES, left=1.5) is None  # 1.0 left is more necessary
    even = {**MAPS, "lime": {**MAPS["lime"], "cues": {"texture": 0.1}, "removed": 0.4}}
    assert detail_cue(0.4, even, IMAGES) == "texture"
    assert detail_cue(0.41, even, IMAGES) is None
    texture = {"object": 0.0, "cues": {"texture": 1.0, "watermark": 0.0}, "background": 0.0}
    assert reader_evidence(None, even, IMAGES, None, 0.41) != texture
    assert reader_evidence(None, even, IMAGES, None, 0.40) == texture


def test_a_backdrop_that_neither_colour_nor_fine_detail_carries_is_not_named():
    """A held-out ring feature (seed 42): the texture carries 0.20 of it, the object 0.84;
    its activation map put 0.61 on the texture with a removal leaving 0.44 (a finding by the
    maps alone), while greyscale kept 0.98 and the blur 0.67 of it."""
    panels = {"lime": {"object": 0.767, "cues": {"stripe": 0.0, "texture": 0.233},
                       "background": 0.0, "removed": 0.54, "kept": 0.589, "area": 0.125},
              "activation": {"object": 0.394, "cues": {"stripe": 0.0, "texture": 0.606},
                             "background": 0.0, "removed": 0.435, "kept": 0.835,
                             "area": 0.298}}
    images = {"top": {"stripe": 0.0, "texture": 1.0}, "least": {"stripe": 0.0, "texture": 0.78}}
    none = {"object": 0.0, "cues": {"stripe": 0.0, "texture": 0.0}, "background": 1.0}
    assert reader_evidence(None, panels, images, 0.98, 0.67) == none
    named = reader_evidence(None, panels, images, 0.98, None)  # without the blur line
    assert named["cues"]["texture"] == pytest.approx(0.606)
    assert reader_evidence(None, panels, images, None, 0.67)["cues"]["texture"] > 0.6
    assert backdrop_unneeded("texture", 0.98, 0.67)
    assert backdrop_unneeded("tint", 0.51, 0.51)
    assert not backdrop_unneeded("texture", 0.50, 0.9)  # half left: the colour may carry it
    assert not backdrop_unneeded("texture", 0.9, 0.50)
    assert not backdrop_unneeded("texture", 0.9, 0.55, left=0.6)
    assert not backdrop_unneeded("watermark", 0.9, 0.9)  # a mark: neither line speaks to it
    assert not backdrop_unneeded("texture", None, 0.9)
    assert not backdrop_unneeded("texture", 0.9, None)


def _kept_variant(tmp_path, rows):
    run = tmp_path / "image-s1-texture-ring_watermark-star-0.9"
    (run / "shapes" / "tasks").mkdir(parents=True)
    (run / "demo.json").write_text(json.dumps({"config": {"cues": {
        "texture": {"class": "ring", "strength": 0.9},
        "watermark": {"class": "star", "strength": 0.9}}}}))
    (run / "shapes" / "tasks" / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    return run


def _row(key, truth, cues, panels, **kw):
    kinds = {"background": cues.get("texture", 0.0), "mark": cues.get("watermark", 0.0)}
    return {"hit_key": key, "class_name": "ring", "feature": int(key[-1]), "is_gold": False,
            "truth": truth, "removal": {"object": 0.5, "cues": cues, "kinds": kinds},
            "evidence_panels": panels, **kw}


def test_reread_audit_scores_the_readers_answers_as_the_benchmark_does(tmp_path):
    bench = load_bench("reread_audit")
    on_mark = {"lime": {"object": 0.1, "cues": {"texture": 0.0, "watermark": 0.9},
                        "background": 0.0, "removed": 0.2, "kept": 0.8, "area": 0.05}}
    rows = [
        # split maps: the texture is found only through the blur line (given by --detail)
        _row("k1", "spurious:background", {"texture": 0.55, "watermark": 0.0}, MAPS,
             evidence_images=IMAGES, colour=1.0),
        _row("k2", "core", {"texture": 0.0, "watermark": 0.05}, on_mark),  # a false alarm
        _row("k3", "core", {"texture": 0.0, "watermark": 0.3}, on_mark),  # mixed
        {**_row("k4", "core", {"texture": 0.0, "watermark": 0.0}, on_mark), "is_gold": True},
    ]
    run = _kept_variant(tmp_path, rows)
    missed = bench.read_variant(run)
    assert missed["cues"] == {"texture": False}  # no HIT carries the watermark: not counted
    assert len(missed["false_alarms"]) == 1 and "ring:2 read as mark" in missed["false_alarms"][0]
    assert missed["mixed"] == 1
    assert missed["misses"] == [f"{run.name} texture: ring:1 read as object"]
    found = bench.read_variant(run, {(run.name, "k1"): 0.40})
    assert found["cues"] == {"texture": True} and not found["misses"]
    assert bench.summary_line([missed, found]) == (
        "texture 1/2 | found 1/2 | false alarms 2 | mixed 2")
    line = tmp_path / "detail.jsonl"
    line.write_text(json.dumps({"run": run.name, "hit_key": "k1", "detail": {"1": 0.4}}) + "\n")
    assert bench.main([str(run), "--detail", str(line)]) == 0
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path)])  # not a kept variant
    line.write_text("{}\n")
    with pytest.raises(SystemExit):
        bench.main([str(run), "--detail", str(line)])
