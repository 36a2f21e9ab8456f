"""Heatmaps, top-k, evidence shares and text attributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_viz import BagOfWordsEncoder, ColorCNN, synthetic_images, synthetic_texts

from tasks.viz import (
    channel_heatmaps,
    gradcam_heatmaps,
    gradient_refined_heatmaps,
    highlight_html,
    image_evidence,
    normalize_maps,
    occlusion_attributions,
    occlusion_heatmaps,
    text_evidence,
    top_k,
    truth_from_evidence,
    word_scores,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes():
    images, labels, obj, mark = synthetic_images(n=16, size=32, seed=1)
    return images, labels, obj, mark, ColorCNN().eval()


def _mass_share(heat: np.ndarray, mask: np.ndarray) -> float:
    heat = np.asarray(heat, dtype=np.float64)
    per = (heat * mask).reshape(len(heat), -1).sum(1) / heat.reshape(len(heat), -1).sum(1)
    return float(per.mean())


def test_top_k_matches_argsort_both_directions():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(50)
    np.testing.assert_array_equal(top_k(v, 7, "highest"), np.argsort(v)[::-1][:7])
    np.testing.assert_array_equal(top_k(v, 7, "lowest"), np.argsort(v)[:7])
    assert len(top_k(v[:3], 9)) == 3
    with pytest.raises(ValueError, match="direction"):
        top_k(v, 3, "up")


def test_channel_heatmap_upsampling_is_bilinear_and_signed():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 1.0
    up = channel_heatmaps(maps, (16, 16))
    ref = F.interpolate(maps[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(up, ref)
    y, x = np.unravel_index(int(up[0].argmax()), (16, 16))
    assert 4 <= y < 8 and 8 <= x < 12
    # a negative weight shows where the map is most negative
    neg = channel_heatmaps(-maps, (16, 16), sign=-1.0)
    torch.testing.assert_close(neg, ref)
    assert float(channel_heatmaps(maps, (16, 16), sign=-1.0).max()) == 0.0
    norm = normalize_maps(up)
    assert norm.max() == pytest.approx(1.0) and norm.min() >= 0.0


def test_mark_feature_concentrates_on_mark_and_object_feature_on_object(shapes):
    images, labels, obj, mark, model = shapes
    with torch.no_grad():
        spatial = model.features(images)
    marked = labels == 1
    heat_mark = channel_heatmaps(spatial[marked, 0], (32, 32)).numpy()
    heat_obj = channel_heatmaps(spatial[:, 1], (32, 32)).numpy()
    assert _mass_share(heat_mark, mark[marked]) > 0.5
    assert _mass_share(heat_obj, obj) > 0.5
    # the evidence summary agrees with the direct computation and names the truth
    ev = image_evidence(heat_mark, obj[marked], {"watermark": mark[marked]})
    assert ev["cues"]["watermark"] == pytest.approx(_mass_share(heat_mark, mark[marked]))
    assert truth_from_evidence(ev, {"watermark": "mark"}) == "spurious:mark"
    ev = image_evidence(heat_obj, obj, {"watermark": mark})
    assert truth_from_evidence(ev, {"watermark": "mark"}) == "core"
    assert ev["object"] + ev["cues"]["watermark"] + ev["background"] == pytest.approx(1.0)


@pytest.mark.slow
def test_gradcam_and_occlusion_fallbacks_find_the_mark(shapes):
    images, labels, obj, mark, model = shapes
    x = images[labels == 1][:4]
    m = mark[labels == 1][:4]
    gc = gradcam_heatmaps(model.embed, model.features[0], x, feature=0)
    assert gc.shape == (4, 32, 32)
    assert _mass_share(gc.numpy(), m) > 0.5
    occ = occlusion_heatmaps(model.embed, x, feature=0, window=2, stride=1)
    assert occ.shape == (4, 32, 32)
    assert _mass_share(occ.numpy(), m) > 0.5
    occ_obj = occlusion_heatmaps(model.embed, x, feature=1, window=2, stride=1)
    assert _mass_share(occ_obj.numpy(), obj[labels == 1][:4]) > 0.5


def test_image_evidence_closed_form_and_overlap_priority():
    heat = np.zeros((2, 4, 4))
    heat[0, 0, 0], heat[0, 3, 3] = 3.0, 1.0          # 3/4 on the object, 1/4 elsewhere
    heat[1, 0, 0], heat[1, 1, 1] = 1.0, 1.0          # 1/2 object, 1/2 cue
    obj = np.zeros((2, 4, 4), bool)
    obj[:, 0, 0] = True
    cue = np.zeros((2, 4, 4), bool)
    cue[:, :2, :2] = True                            # overlaps the object at (0, 0)
    ev = image_evidence(heat, obj, {"tex": cue})
    assert ev["object"] == pytest.approx((0.75 + 0.5) / 2)
    assert ev["cues"]["tex"] == pytest.approx((0.0 + 0.5) / 2)
    assert ev["background"] == pytest.approx(0.125)
    assert truth_from_evidence(ev, {"tex": "background"}) == "core"
    assert truth_from_evidence({"object": 0.2, "cues": {"tex": 0.3}, "background": 0.5},
                               {"tex": "background"}) == "none"
    assert truth_from_evidence({"object": 0.2, "cues": {"tex": 0.7}, "background": 0.1},
                               {"tex": "background"}) == "spurious:background"


def test_occlusion_attributions_bag_of_words_closed_form():
    enc = BagOfWordsEncoder()
    toks = [["you", "are", "an", "idiot", "idiot"], ["muslim", "post"]]
    attrs = occlusion_attributions(enc.encode, toks, feature=0)
    np.testing.assert_allclose(attrs[0], [0, 0, 0, 1, 1])
    np.testing.assert_allclose(attrs[1], [0, 0])
    neg = occlusion_attributions(enc.encode, toks, feature=1, sign=-1.0)
    np.testing.assert_allclose(neg[1], [-1, 0])
    scores = word_scores(toks, attrs)
    assert scores == {"idiot": 2.0}


def test_text_evidence_and_truth():
    texts, kinds, _ = synthetic_texts(20, seed=2)
    enc = BagOfWordsEncoder()
    toks = [t.split() for t in texts]
    ident = occlusion_attributions(enc.encode, toks, feature=1)
    ev = text_evidence(ident, kinds, ["insult", "compliment"])
    assert ev["cues"]["identity"] == pytest.approx(1.0)
    assert truth_from_evidence(ev, {"identity": "identity"}) == "spurious:identity"
    insult = occlusion_attributions(enc.encode, toks, feature=0)
    ev = text_evidence(insult, kinds, ["insult", "compliment"])
    assert ev["object"] == pytest.approx(1.0)
    assert truth_from_evidence(ev, {"identity": "identity"}) == "core"


def test_highlight_html_escapes_tokens():
    html = str(highlight_html(["<script>alert(1)</script>", "ok"], np.array([1.0, 0.0])))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="hl"' in html


@pytest.mark.slow
def test_builtin_shapes_mark_and_object_heatmaps_hit_their_masks():
    """On the built-in shapes dataset (real images, real object and cue masks) with a stride-8
    model like ShapesCNN: the watermark channel's heatmaps put > 50% of their mass on the
    watermark, the object channel's on the object."""
    shapes_mod = pytest.importorskip("sparse_probe.datasets.shapes")
    from helpers_viz import ShapesProbeCNN

    ds = shapes_mod.make_shapes(n_train=6, n_val=96, n_test=6, size=64, seed=0)
    val = ds.val
    x = torch.from_numpy(val.images).permute(0, 3, 1, 2).float() / 255.0
    model = ShapesProbeCNN().eval()
    with torch.no_grad():
        spatial = model.features(x)
    assert spatial.shape[-1] == 8
    feats = spatial.mean((2, 3)).numpy()
    cues = {name: m for name, m in val.cue_masks.items()}
    kinds = dict(ds.cue_kind)
    wm = next(n for n, k in kinds.items() if k == "mark")
    for channel, region in ((0, wm), (1, "object")):
        idx = top_k(feats[:, channel], 9)
        refined = gradient_refined_heatmaps(model.features, x[idx], [channel] * 9, [1.0] * 9)
        shown = normalize_maps(refined, floor=0.5)
        ev = image_evidence(shown, val.object_masks[idx], {n: m[idx] for n, m in cues.items()})
        share = ev["object"] if region == "object" else ev["cues"][region]
        assert share > 0.5, (channel, ev)
        mask = val.object_masks[idx] if region == "object" else cues[region][idx]
        assert _mass_share(shown, mask) == pytest.approx(share, abs=1e-9)
        expected = "core" if region == "object" else "spurious:mark"
        assert truth_from_evidence(ev, kinds) == expected
    # unrefined (plain bilinear upsampling of the 8x8 map) still puts the object channel's
    # hot region on the object
    idx = top_k(feats[:, 1], 9)
    plain = normalize_maps(channel_heatmaps(spatial[idx, 1], (64, 64)), floor=0.5)
    assert _mass_share(plain, val.object_masks[idx]) > 0.5


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    from tasks.viz.heatmap import gaussian_blur

    rng = np.random.default_rng(0)
    m = rng.random((2, 20, 24))
    got = gaussian_blur(torch.tensor(m), 1.5).numpy()
    ref = np.stack([gaussian_filter(a, 1.5, mode="constant", truncate=3.0) for a in m])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)


#: Thresholds on the channel choice, from ``benchmarks/measure_heatmap_margins.py`` over seeds
#: 0-5 of the quick built-in shapes model (benchmarks/results/heatmap-margins-cpu-2026-12-01.txt):
#: the mark channel's drop ranged 0.69-0.98 and the object channel's change 0.09-0.21 (0.205 at
#: seed 0, the seed this test uses: the former ceiling of 0.2 sat inside the spread). Each bound
#: sits about a third of the observed range beyond its extreme, and the two stay far apart.
MARGINS = {"mark_drop_min": 0.5, "object_change_max": 0.3}


@pytest.mark.slow
def test_real_builtin_shapes_model_mark_and_object_features():
    """The trained built-in ShapesCNN: the channel most tied to the planted watermark (the one
    whose activation drops most when the watermark is removed from the same images) has
    heatmaps with > 50% of their mass on the watermark's mask; a channel that does not depend
    on the cues has > 50% on the object mask.

    The thresholds on the channel choice come from the spread over seeds (``MARGINS``). The
    heatmap shares are checked at seed 0 (mark 0.95, object 0.85); over seeds 0-5 the object
    share stayed above 0.6, but the mark channel's refined heatmap missed the watermark at
    seeds 2 and 3 (share ~0): the gradient-sharpened evidence is seed-fragile, which the
    audit-validity work on HIT evidence addresses."""
    pytest.importorskip("sparse_probe.extract")
    from helpers_viz import channel_measurements, prepared_builtin

    m = channel_measurements(prepared_builtin("shapes") / "features")
    assert m["mark_drop"] > MARGINS["mark_drop_min"], m
    assert m["object_change"] < MARGINS["object_change_max"], m
    assert m["mark_share"] > 0.5, m
    assert m["object_share"] > 0.5, m
