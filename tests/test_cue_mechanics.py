"""cue_test's bookkeeping on a scorer whose every answer is known: 8x8 images whose only red
pixels are a 2x2 cue square (at a different place in each image of the target class) or, in a
few images of the other class, a dim red stripe; the "model" calls an image the target when its
red channel sums to at least 2. Every arm's size, flips and mean changes then follow by hand,
and decide's thresholds are checked at their exact edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.counterfactual import cue_test, decide, feature_verdict

H = W = 8
TARGET = 1
N_CUE, N_OTHER, N_STRIPE = 21, 24, 4
#: logit(1 - 1e-6) - logit(1e-6): a certain flip's logit change, the probabilities clipped
CERTAIN = 2 * math.log((1 - 1e-6) / 1e-6)


def _pool(seed: int = 3, width: int = 2):
    """Images (N, 8, 8, 3), labels, the cue squares' corners, the stripe images."""
    rng = np.random.default_rng(seed)
    n = N_CUE + N_OTHER
    img = np.zeros((n, H, W, 3), np.float32)
    img[..., 1] = rng.uniform(0.2, 0.4, (n, 1, 1))
    img[..., 2] = 0.3
    labels = np.array([TARGET] * N_CUE + [0] * N_OTHER)
    corners = np.stack([rng.integers(0, H - 1, N_CUE), rng.integers(0, W + 1 - width, N_CUE)],
                       1)
    for i, (y, x) in enumerate(corners):
        img[i, y:y + 2, x:x + width, 0] = 1.0
    stripe = np.arange(N_CUE, N_CUE + N_STRIPE)
    img[stripe, H - 1, :, 0] = 0.3  # red sums 2.4: called the target without the cue
    return img, labels, corners, stripe


def _red(b: np.ndarray) -> np.ndarray:
    return b[..., 0]


def scorer(b: np.ndarray) -> np.ndarray:
    s = (b[..., 0].sum((1, 2)) >= 2.0).astype(float)
    return np.stack([1 - s, s], 1)


def never(b: np.ndarray) -> np.ndarray:
    return np.tile([1.0, 0.0], (len(b), 1))


def _run(**kw):
    img, labels, corners, stripe = _pool()
    act = img[..., 0].mean((1, 2)).astype(float)
    args = {"n": 200, "top": 8, "seed": 0, **kw}
    res = cue_test({"model": scorer, "blind": never}, img, labels, act, _red, TARGET, **args)
    return res, img, labels, corners, stripe


def _rows(res, model="model"):
    return {r["test"]: r for r in res.rows if r["model"] == model}


def test_every_arm_counts_what_the_scorer_says():
    res, img, _, corners, _ = _run()
    r = _rows(res)
    # the evidence boxes are the cue squares of the top images (the strongest red)
    act = img[..., 0].mean((1, 2))
    top = np.argsort(-act, kind="stable")[:8]
    assert res.boxes.tolist() == [[y, x, y + 2, x + 2] for y, x in corners[top]]
    # pasting: every image that was not called the target (the stripes were) becomes it
    paste = r["paste_same"]
    assert 0 < paste["n"] < 200 and paste["flips"] == paste["n"] and paste["flip_rate"] == 1.0
    for arm in ("paste_same", "paste_random"):
        for ctrl in ("ctrl_elsewhere", "ctrl_nontop"):
            row = r[f"{arm}_{ctrl}"]
            assert (row["n"], row["flips"], row["control_of"]) == (paste["n"], 0, arm)
            # a control pasted over a stripe can only take red away
            assert row["mean_prob_increase"] <= 0 and row["mean_logit_increase"] <= 0
        assert r[arm]["flips"] == paste["n"] and r[arm]["control_of"] == ""
        assert r[arm]["verdict"] == "supports"
        # the mean changes run over every pasted image: the stripes were at 1 already
        assert r[arm]["mean_prob_increase"] == pytest.approx(paste["n"] / 200, abs=1e-12)
        assert r[arm]["mean_logit_increase"] == pytest.approx(CERTAIN * paste["n"] / 200)
    # the swap without object masks moves where the map fires: the square again
    assert (r["background_swap"]["n"], r["background_swap"]["flips"]) == (paste["n"],) * 2
    assert r["background_swap_ctrl_random"]["flips"] == 0
    assert r["background_swap_ctrl_nontop"]["flips"] == 0
    # removal: the half of the 21 cue images where the feature is highest, all called the target
    # before and none after
    assert (r["removal"]["n"], r["removal"]["flips"]) == ((N_CUE + 1) // 2,) * 2
    assert r["removal"]["mean_prob_increase"] == -1.0
    assert r["removal"]["mean_logit_increase"] == pytest.approx(-CERTAIN)
    # its control: the 12 other-class images where the feature is highest hold the 4 stripes,
    # which the scorer gets wrong already (not counted); filling changes none of the rest
    ctrl = r["removal_ctrl_other_classes"]
    assert (ctrl["n"], ctrl["flips"], ctrl["control_of"]) == ((N_OTHER + 1) // 2 - N_STRIPE,
                                                            0, "removal")
    assert r["background_removal"]["n"] == r["background_removal"]["flips"] == 11
    assert r["background_removal_ctrl_other_classes"]["flips"] == 0
    for row in r.values():
        assert row["target"] == TARGET
        assert (row["ci_low"] <= row["flip_rate"] <= row["ci_high"])
    # verdicts per model: the blind one never moves, and every arm refutes
    assert res.verdicts == {"model": "supports", "blind": "refutes"}
    blind = _rows(res, "blind")
    assert blind["paste_same"]["n"] == 200 and blind["paste_same"]["verdict"] == "refutes"
    assert blind["removal"]["n"] == 0 and math.isnan(blind["removal"]["flip_rate"])


def test_removal_takes_at_most_n_images_per_arm():
    res, *_ = _run(n=5)
    r = _rows(res)
    assert r["paste_same"]["n"] <= 5
    assert r["removal"]["n"] == 5 == r["removal"]["flips"]


def test_top_is_at_least_one_image():
    res, img, _, corners, _ = _run(top=0)
    assert len(res.boxes) == 1
    peak = int(np.argmax(img[..., 0].mean((1, 2))))
    y, x = corners[peak]
    assert res.boxes.tolist() == [[y, x, y + 2, x + 2]]


def test_object_masks_keep_only_the_evidence_outside_the_object():
    img, labels, corners, _ = _pool(width=3)  # 2x3 cue rectangles, red 1.0 / 0.9 / 1.0
    obj = np.zeros(img.shape[:3], bool)
    for i, (y, x) in enumerate(corners):
        img[i, y:y + 2, x + 1, 0] = 0.9
        obj[i, y:y + 2, x] = True  # the rectangle's left column belongs to the object
    act = img[..., 0].mean((1, 2)).astype(float)
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, seed=1,
                   object_masks=obj)
    top = np.argsort(-act, kind="stable")[:8]
    # the core (4 pixels) is chosen among the pixels outside the object: both right columns.
    # Chosen first and cut by the object after, it would be the outer columns' brightest pixels
    # less the object: the right column alone.
    assert res.boxes.tolist() == [[y, x + 1, y + 2, x + 3] for y, x in corners[top]]
    r = _rows(res)
    # the two columns outside the object sum to 3.8: the target
    assert r["paste_same"]["flips"] == r["paste_same"]["n"] > 0
    # removal fills only the part outside the object: red 2 is left, nothing flips
    assert r["removal"]["n"] == 11 and r["removal"]["flips"] == 0
    # with masks the swap moves the whole background (the object dilated by a pixel is filled
    # from its surroundings): the right column travels onto images without an object
    assert r["background_swap"]["flips"] == r["background_swap"]["n"] > 0


def test_a_user_patch_is_placed_at_the_region_and_kept_inside_the_image():
    red = np.zeros((3, 3, 3), np.float32)
    red[..., 0] = 1.0
    res, *_ = _run(patch=red, region=(6, 6, 8, 8))
    assert res.boxes.tolist() == [[5, 5, 8, 8]] * 8
    r = _rows(res)
    assert r["paste_same"]["flips"] == r["paste_same"]["n"] > 0
    res_m, *_ = _run(region=np.pad(np.ones((2, 3), bool), ((1, 5), (4, 1))))
    assert res_m.boxes.tolist() == [[1, 4, 3, 7]] * 8


@pytest.mark.parametrize(("region", "message"), [
    ((0, 0, 9, 8), r"region: expected 0 <= y0 < y1 <= 8 and 0 <= x0 < x1 <= 8, got \(0, 0, 9, 8\)"),
    ((0, 0, 8, 9), r"got \(0, 0, 8, 9\)"),
    ((-1, 0, 2, 2), r"got \(-1, 0, 2, 2\)"),
    ((0, -1, 2, 2), r"got \(0, -1, 2, 2\)"),
    ((3, 0, 3, 8), r"got \(3, 0, 3, 8\)"),
    ((0, 4, 8, 4), r"got \(0, 4, 8, 4\)"),
    ((0, 0, 2), r"region: expected \(y0, x0, y1, x1\) or a mask, got \(0, 0, 2\)"),
    (np.zeros((8, 8), bool), r"region: expected a mask of shape \(8, 8\) with at least one "
                             r"pixel set, got shape \(8, 8\)"),
    (np.ones((8, 7), bool), r"got shape \(8, 7\)"),
])
def test_bad_regions_are_refused_with_what_was_expected(region, message):
    with pytest.raises(ValueError, match=message):
        _run(region=region)


def test_whole_image_region_is_accepted():
    res, *_ = _run(region=(0, 0, 8, 8))
    assert res.boxes.tolist() == [[0, 0, 8, 8]] * 8


def test_bad_pools_are_refused():
    img, labels, _, _ = _pool()
    act = np.zeros(len(img))
    with pytest.raises(ValueError, match=r"labels/activation: expected 45 values each, got 44 "
                                         r"and 45"):
        cue_test({"m": scorer}, img, labels[:-1], act, _red, TARGET)
    with pytest.raises(ValueError, match=r"labels/activation: expected 45 values each, got 45 "
                                         r"and 44"):
        cue_test({"m": scorer}, img, labels, act[:-1], _red, TARGET)
    with pytest.raises(ValueError, match=r"labels: no image outside class 1 to paste into"):
        cue_test({"m": scorer}, img, np.ones(len(img), int), act, _red, TARGET)


# --------------------------------------------------------------------------- decide's edges
def row(n: int, rate: float, lo: float, hi: float) -> dict:
    return {"n": n, "flip_rate": rate, "ci_low": lo, "ci_high": hi}


def test_decide_supports_from_the_smallest_effect_up():
    ctrl = [row(100, 0.25, 0.125, 0.375)]
    # an effect exactly min_effect above the highest control rate, its interval clear of it
    assert decide(row(100, 0.5, 0.4, 0.6), ctrl, min_effect=0.25) == "supports"
    assert decide(row(100, 0.5, 0.4, 0.6), ctrl, min_effect=0.2500001) == "inconclusive"
    # the interval must clear every control's: touching one is not enough
    assert decide(row(100, 0.5, 0.375, 0.6), ctrl, min_effect=0.25) == "inconclusive"
    two = [row(100, 0.25, 0.125, 0.375), row(100, 0.0, 0.0, 0.45)]
    assert decide(row(100, 0.5, 0.4, 0.6), two, min_effect=0.25) == "inconclusive"
    # the default min_effect is 0.05 (0.45 + 0.05 is exactly 0.5 in binary)
    assert decide(row(100, 0.5, 0.48, 0.6), [row(100, 0.45, 0.4, 0.47)]) == "supports"
    assert decide(row(100, 0.5, 0.48, 0.6), [row(100, 0.4501, 0.4, 0.47)]) == "inconclusive"
    # the highest control rate counts, not the first
    assert decide(row(100, 0.5, 0.48, 0.6), [row(100, 0.1, 0.05, 0.2),
                                            row(100, 0.46, 0.4, 0.47)]) == "inconclusive"


def test_decide_refutes_up_to_the_margin_with_enough_examples():
    ctrl = [row(30, 0.25, 0.1, 0.4)]
    assert decide(row(30, 0.5, 0.3, 0.7), ctrl, margin=0.25) == "refutes"
    assert decide(row(30, 0.5, 0.3, 0.7), ctrl, margin=0.2499999) == "inconclusive"
    # the default margin is 0.02 and min_n 30, on the effect and on every control
    assert decide(row(30, 0.27, 0.1, 0.4), [row(30, 0.25, 0.1, 0.4)]) == "refutes"
    assert decide(row(30, 0.2701, 0.1, 0.4), [row(30, 0.25, 0.1, 0.4)]) == "inconclusive"
    assert decide(row(29, 0.25, 0.1, 0.4), [row(30, 0.25, 0.1, 0.4)]) == "inconclusive"
    assert decide(row(30, 0.25, 0.1, 0.4), [row(30, 0.25, 0.1, 0.4),
                                           row(29, 0.25, 0.1, 0.4)]) == "inconclusive"
    assert decide(row(10, 0.25, 0.1, 0.4), [row(10, 0.25, 0.1, 0.4)], min_n=10) == "refutes"
    # the highest control rate counts: an effect at the lower one's level still refutes
    assert decide(row(30, 0.3, 0.1, 0.4), [row(30, 0.1, 0.0, 0.2),
                                          row(30, 0.3, 0.2, 0.45)]) == "refutes"


def test_decide_needs_examples_and_controls():
    assert decide(row(0, float("nan"), 0, 1), [row(30, 0.0, 0.0, 0.1)]) == "inconclusive"
    assert decide(row(30, 0.9, 0.8, 1.0), []) == "inconclusive"
    assert decide(row(30, 0.9, 0.8, 1.0), [row(30, 0.0, 0.0, 0.1),
                                          row(0, float("nan"), 0, 1)]) == "inconclusive"


def test_feature_verdict_picks_the_deciding_tests():
    everything = {"paste_same": "refutes", "paste_random": "refutes",
                  "background_swap": "refutes", "removal": "supports",
                  "background_removal": "supports"}
    assert feature_verdict(everything) == "refutes"
    assert feature_verdict({"removal": "supports"}) == "inconclusive"  # nothing decides
    assert feature_verdict({}) == "inconclusive"
    one = {**everything, "paste_random": "supports"}
    assert feature_verdict(one, kind="mark") == "supports"
    assert feature_verdict(one, kind="background") == "refutes"
    assert feature_verdict(one, kind="texture") == "supports"  # an unknown kind: all decide
    swap = {**everything, "background_swap": "supports"}
    assert feature_verdict(swap, kind="background", object_masks=False) == "supports"
    assert feature_verdict(swap, kind="mark", object_masks=False) == "refutes"
    assert feature_verdict(swap, object_masks=False) == "refutes"
    assert feature_verdict(swap, object_masks=True) == "supports"
    assert feature_verdict({**everything, "paste_same": "inconclusive"}) == "inconclusive"


# --------------------------------------------------------------------------- the evidence
def test_the_core_is_chosen_among_the_pixels_outside_the_object():
    from analysis.counterfactual import evidence_regions

    m = np.zeros((2, 8, 8), np.float32)
    m[:, 2, 1:5] = [1.0, 0.95, 0.9, 0.85]  # a row of four, brightest on the left
    outside = np.zeros((2, 8, 8), bool)
    outside[0, 2, 1:3] = True   # the object covers the two brightest pixels
    outside[1, 2, 1:5] = True   # ... or the whole region
    cap = 2 / 64
    regions, cores, boxes = evidence_regions(m, (8, 8), frac=0.5, max_area=cap, outside=outside)
    assert np.argwhere(regions[0]).tolist() == [[2, 3], [2, 4]]
    assert np.argwhere(cores[0]).tolist() == [[2, 3], [2, 4]]
    assert boxes[0].tolist() == [2, 3, 3, 5]
    # nothing left outside the object: no core, and the box the core would have had
    assert not regions[1].any() and not cores[1].any()
    assert boxes[1].tolist() == [2, 1, 3, 3]
    # without the object the two brightest make the core
    _, plain, plain_boxes = evidence_regions(m, (8, 8), frac=0.5, max_area=cap)
    assert np.argwhere(plain[0]).tolist() == [[2, 1], [2, 2]]
    assert plain_boxes.tolist() == [[2, 1, 3, 3]] * 2
