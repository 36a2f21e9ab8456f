"""cue_test's bookkeeping on a scorer whose every answer is known: 8x8 images whose only red
pixels are a 2x2 cue square (at a different place in each image of the target class) or, in a
few images of the other class, a dim red stripe; the "model" calls an image the target when its
red channel sums to at least 2. Every arm's size, flips and mean changes then follow by hand,
and decide's thresholds are checked at their exact edges."""

from __future__ import annotations

import json
import math
import re

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
    # moved onto the quiet images' backgrounds, the cue images keep their object (red 2)
    assert r["background_removal"]["n"] == 11 and r["background_removal"]["flips"] == 0
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


# --------------------------------------------------------------------------- more arms
def test_defaults_are_200_images_16_top_seed_0_and_30_to_refute():
    img, labels, _, _ = _pool()
    act = img[..., 0].mean((1, 2)).astype(float)
    preds = {"model": scorer, "blind": never}
    by_default = cue_test(preds, img, labels, act, _red, TARGET)
    spelled = cue_test(preds, img, labels, act, _red, TARGET, n=200, top=16, seed=0, min_n=30)
    assert json.dumps(by_default.rows) == json.dumps(spelled.rows)  # NaN written alike
    assert by_default.verdicts == spelled.verdicts
    assert len(by_default.boxes) == 16 and _rows(by_default, "blind")["paste_same"]["n"] == 200
    # 30 examples per arm may refute, 29 may not, unless min_n says so
    assert _run(n=30)[0].verdicts["blind"] == "refutes"
    assert _run(n=29)[0].verdicts["blind"] == "inconclusive"
    assert _run(n=29, min_n=29)[0].verdicts["blind"] == "refutes"


def test_every_other_class_image_is_pasted_into_once_when_n_is_their_number():
    for seed in range(5):  # drawn without replacement: each of the 24 once, whatever the seed
        res, *_ = _run(n=N_OTHER, seed=seed)
        assert _rows(res)["paste_same"]["n"] == N_OTHER - N_STRIPE
        assert _rows(res, "blind")["paste_same"]["n"] == N_OTHER


def test_a_class_without_images_gets_empty_removal_arms(caplog):
    img, labels, _, _ = _pool()
    labels = np.where(labels == TARGET, 2, labels)  # the cue images are of a third class
    act = img[..., 0].mean((1, 2)).astype(float)
    with caplog.at_level("INFO", logger="analysis.counterfactual.cue"):
        res = cue_test({"model": lambda b: np.pad(scorer(b), ((0, 0), (0, 1)))}, img, labels,
                       act, _red, TARGET, n=50, top=4)
    r = _rows(res)
    assert [row["test"] for row in res.rows] == [
        "paste_same", "paste_same_ctrl_elsewhere", "paste_same_ctrl_nontop", "paste_random",
        "paste_random_ctrl_elsewhere", "paste_random_ctrl_nontop", "background_swap",
        "background_swap_ctrl_random", "background_swap_ctrl_nontop", "removal",
        "removal_ctrl_other_classes", "background_removal",
        "background_removal_ctrl_other_classes"]
    for arm in ("removal", "background_removal"):
        row = r[arm]
        assert (row["n"], row["flips"], row["control_of"], row["target"]) == (0, 0, "", TARGET)
        assert math.isnan(row["flip_rate"]) and math.isnan(row["mean_prob_increase"])
        assert math.isnan(row["mean_logit_increase"])
        assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
        assert row["verdict"] == "inconclusive"
    # the other classes' arms follow (their images, the cue's class 2 among them, are all
    # called the target already, so none counts)
    assert r["removal_ctrl_other_classes"]["control_of"] == "removal"
    assert [r.getMessage() for r in caplog.records] == ["cue test target=1 model=model: supports"]


def test_partial_flips_are_counted_row_by_row():
    img, labels, corners, _ = _pool()
    # a second, dimmer square in five cue images, apart from the first: removing the evidence
    # region around the peak leaves it, and those images stay the target
    second = []
    for i, (y, x) in enumerate(corners[:10]):
        free = [(yy, xx) for yy in range(0, 7) for xx in range(0, 7)
                if abs(yy - y) > 2 or abs(xx - x) > 2]
        if len(second) < 5 and free:
            yy, xx = free[0]
            img[i, yy:yy + 2, xx:xx + 2, 0] = 0.9
            second.append(i)
    act = np.arange(len(img), 0, -1).astype(float)  # the first images are the top ones
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, seed=2)
    r = _rows(res)
    kept = (N_CUE + 1) // 2  # the 11 cue images of highest activation: the first 11
    assert r["removal"]["n"] == kept
    assert r["removal"]["flips"] == kept - len(second)
    # dim evidence (red 1.8 in four pixels) pasted from two of the eight top images moves
    # nothing; the bright squares do
    img2, labels2, _, _ = _pool()
    img2[:2, ..., 0] *= 0.45
    res2 = cue_test({"model": scorer}, img2, labels2, act, _red, TARGET, n=100, top=8, seed=2)
    paste = _rows(res2)["paste_same"]
    assert 0 < paste["flips"] < paste["n"]


def test_integer_activations_are_ranked_as_numbers():
    img, labels, corners, _ = _pool()
    act = (img[..., 0].sum((1, 2)) * 10).astype(np.uint8)  # -act would wrap around in uint8
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=50, top=8)
    top = np.argsort(-act.astype(float), kind="stable")[:8]
    assert res.boxes.tolist() == [[y, x, y + 2, x + 2] for y, x in corners[top]]


def test_top_may_cover_the_whole_pool():
    res, *_ = _run(top=N_CUE + N_OTHER)  # no image below the median is left out of the top
    assert len(res.boxes) == N_CUE + N_OTHER
    assert _rows(res)["background_swap_ctrl_random"]["n"] > 0


@pytest.mark.parametrize("shape", [(9, 8, 3), (8, 9, 3), (2, 2, 4), (2, 2)])
def test_a_patch_that_does_not_fit_is_refused(shape):
    with pytest.raises(ValueError, match=r"^patch: expected shape \(h<=8, w<=8, 3\), got "
                                         + re.escape(str(shape)) + "$"):
        _run(patch=np.zeros(shape, np.float32))


def test_a_patch_as_large_as_the_image_and_patches_at_the_edges():
    res, *_ = _run(patch=np.zeros((8, 8, 3)), region=(0, 0, 2, 2))
    assert res.boxes.tolist() == [[0, 0, 8, 8]] * 8
    red = np.zeros((3, 3, 3))
    red[..., 0] = 1.0
    res, *_ = _run(patch=red, region=(0, 4, 2, 6))
    assert res.boxes.tolist() == [[0, 4, 3, 7]] * 8
    res, *_ = _run(patch=red, region=(4, 0, 6, 2))
    assert res.boxes.tolist() == [[4, 0, 7, 3]] * 8


def test_the_crowds_kind_and_the_masks_pick_the_deciding_tests():
    # a red patch pasted at a corner where no cue square sits moves every image; the swap,
    # without masks, moves the user's region of the top images: no red there, nothing moves
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1.0
    img, labels, corners, _ = _pool()
    act = img[..., 0].mean((1, 2)).astype(float)
    top = np.argsort(-act, kind="stable")[:8]
    clear = next((y, x) for y in range(7) for x in range(7)
                 if all(abs(y - cy) > 1 or abs(x - cx) > 1 for cy, cx in corners[top]))
    region = (clear[0], clear[1], clear[0] + 2, clear[1] + 2)

    def run(**kw):
        return cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8,
                        patch=red, region=region, **kw)

    r = _rows(run())
    assert r["paste_same"]["verdict"] == "supports"
    assert r["background_swap"]["flips"] == 0 and r["background_swap"]["verdict"] == "refutes"
    assert run(kind="mark").verdicts["model"] == "supports"
    assert run(kind="background").verdicts["model"] == "refutes"
    # a neutral patch: the pastes refute; the swap (the squares, where the map fires) supports
    # but, without masks and with no crowd kind, does not decide
    grey = np.full((2, 2, 3), 0.3, np.float32)
    bare = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, patch=grey)
    rb = _rows(bare)
    assert rb["paste_same"]["verdict"] == "refutes"
    assert rb["background_swap"]["verdict"] == "supports"
    assert bare.verdicts["model"] == "refutes"


def test_the_swap_keeps_the_other_images_object():
    img, labels, corners, _ = _pool(width=3)
    obj = np.zeros(img.shape[:3], bool)
    for i, (y, x) in enumerate(corners):
        obj[i, y:y + 2, x] = True
    obj[labels != TARGET] = True  # the other images' objects cover them whole
    act = img[..., 0].mean((1, 2)).astype(float)
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, seed=1,
                   object_masks=obj)
    # no background of theirs is left to swap: nothing moves
    r = _rows(res)["background_swap"]
    assert r["flips"] == 0 and r["n"] > 0


def _plus_pool():
    """Cue images whose evidence is a plus: a peak of 1.0 and four arms of 0.5 (red 3.0)."""
    img, labels, corners, _ = _pool()
    img[:N_CUE, ..., 0] = 0.0
    for i, (y, x) in enumerate(corners):
        cy, cx = min(max(y, 1), 6), min(max(x, 1), 6)
        img[i, cy, cx, 0] = 1.0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            img[i, cy + dy, cx + dx, 0] = 0.5
    return img, labels


def test_paste_and_removal_take_the_region_around_the_peak_the_swap_every_firing_pixel():
    img, labels = _plus_pool()
    act = img[..., 0].sum((1, 2)).astype(float)
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, seed=4)
    r = _rows(res)
    # the region above 0.8 of the map's range is the peak alone: pasted (red 1) it moves
    # nothing, and filled it leaves the arms (red 2): still the target
    assert r["paste_same"]["flips"] == 0 and r["paste_same"]["n"] > 0
    assert r["removal"]["flips"] == 0 and r["removal"]["n"] == 11
    # the swap moves every pixel at or above half the range, the arms too (red 3)
    assert r["background_swap"]["flips"] == r["background_swap"]["n"] > 0
    assert r["background_removal"]["flips"] == r["background_removal"]["n"] == 11
    # a lower threshold takes the arms into the region: paste and removal then move
    low = _rows(cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8,
                         seed=4, frac=0.4))
    assert low["paste_same"]["flips"] == low["paste_same"]["n"] > 0
    assert low["removal"]["flips"] == 11


def test_max_area_caps_the_pasted_core():
    res, *_ = _run(max_area=1 / 64)  # one pixel of red 1.0: below the scorer's 2
    assert all(b[2] - b[0] == 1 and b[3] - b[1] == 1 for b in res.boxes)
    assert _rows(res)["paste_same"]["flips"] == 0


def test_ties_in_activation_are_broken_by_image_order():
    img, labels, corners, _ = _pool()
    perm = np.random.default_rng(7).permutation(len(img))
    img, labels = img[perm], labels[perm]
    where = np.argsort(perm)  # where each original image went
    cue_pos = np.sort(where[:N_CUE])
    # two tiers of tied activations among the cue images (every third one higher), the others
    # tied at 0 or at the stripes' value
    act = (img[..., 0] >= 1.0).sum((1, 2)).astype(float) + (img[..., 0] > 0).any((1, 2))
    high = cue_pos[::3]
    act[high] += 1
    # removal takes the 11 highest cue images: the 7 of the high tier, then the first 4 of the
    # other tier in image order. A second square in the rest of that tier would stay after
    # removal, so any other choice among the ties shows as fewer flips.
    low = [p for p in cue_pos if p not in set(high)]
    for p in low[4:]:
        y, x = corners[perm[p]]
        yy, xx = (y + 4) % 7, (x + 4) % 7
        if abs(yy - y) > 2 or abs(xx - x) > 2:
            img[p, yy:yy + 2, xx:xx + 2, 0] = 0.9
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8, seed=0)
    first = [*high, low[0]]  # the top 8: the high tier, then the first of the other
    assert res.boxes.tolist() == [[*corners[perm[p]], *(corners[perm[p]] + 2)] for p in first]
    r = _rows(res)
    assert r["removal"]["n"] == r["removal"]["flips"] == 11


def test_a_class_of_two_images_gives_one_to_remove():
    img, labels, _, _ = _pool()
    labels = labels.copy()
    labels[2:N_CUE] = 0
    act = img[..., 0].mean((1, 2)).astype(float)
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=50, top=4)
    assert _rows(res)["removal"]["n"] == 1


def _median_pool(rank: int, top: int = 8):
    """44 images (an even number): the cue images, and the other class without stripes but one
    fully red image at ``rank`` in the activation order."""
    img, labels, _, _ = _pool()
    img, labels = img[:-1], labels[:-1]
    img[N_CUE:, ..., 0] = 0.0  # no stripes: only the cue squares and ...
    red = N_CUE  # ... one image of the other class fully red
    img[red, ..., 0] = 1.0
    act = img[..., 0].mean((1, 2)).astype(float)
    act[red] = 0.0
    order = list(np.argsort(-act, kind="stable"))
    order.remove(red)
    order.insert(rank, red)
    act = np.empty(len(img))
    act[order] = np.arange(len(img), 0, -1)
    res = cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=top, seed=0)
    return _rows(res)["background_swap_ctrl_random"]


def test_the_random_backgrounds_come_from_below_the_median_and_outside_the_top():
    half = 44 // 2
    # just above the median: never a donor; at the median: a donor, whose red moves images
    assert _median_pool(half - 1)["flips"] == 0
    assert _median_pool(half)["flips"] > 0
    # ... unless it is one of the top images
    assert _median_pool(half, top=half + 1)["flips"] == 0


def test_background_removal_puts_the_quiet_images_pixels_in():
    img, labels, _, _ = _pool()
    img[labels != TARGET, ..., 0] = 1.0  # every image below the median is red all over
    act = (labels == TARGET).astype(float)
    r = _rows(cue_test({"model": scorer}, img, labels, act, _red, TARGET, n=100, top=8))
    # the square is swapped for the same pixels of red images: the cue images stay the target
    assert r["background_removal"]["n"] == 11 and r["background_removal"]["flips"] == 0
    # filled with the image's median colour instead, it goes
    assert r["removal"]["n"] == r["removal"]["flips"] == 11
