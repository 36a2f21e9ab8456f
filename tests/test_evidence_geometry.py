"""Where a feature's evidence is (analysis/counterfactual/evidence.py), against brute force and
hand-made maps: the threshold between each map's own minimum and maximum, the region around the
peak and its capped core (ties in raster order), the control boxes where the map is lowest
away from the evidence, the median fill, the firing masks, the upsampling's type."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.counterfactual import elsewhere_boxes, evidence_regions, fill_regions, firing_masks
from analysis.counterfactual.evidence import upsample_maps


def _brute_elsewhere(m: np.ndarray, box) -> tuple[int, int, int, int]:
    """The same-size box of lowest sum not overlapping ``box`` (any box if all overlap)."""
    y0, x0, y1, x1 = box
    bh, bw = y1 - y0, x1 - x0
    H, W = m.shape
    best, fallback = None, None
    for yy in range(H - bh + 1):
        for xx in range(W - bw + 1):
            s = float(m[yy:yy + bh, xx:xx + bw].sum())
            if fallback is None or s < fallback[0]:
                fallback = (s, yy, xx)
            overlaps = yy < y1 and yy + bh > y0 and xx < x1 and xx + bw > x0
            if not overlaps and (best is None or s < best[0]):
                best = (s, yy, xx)
    _, yy, xx = best if best is not None else fallback
    return (yy, xx, yy + bh, xx + bw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elsewhere_boxes_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    maps = rng.random((6, 9, 7)).astype(np.float32)
    boxes = []
    for _ in range(6):
        bh, bw = rng.integers(1, 5), rng.integers(1, 5)
        y0, x0 = rng.integers(0, 9 - bh + 1), rng.integers(0, 7 - bw + 1)
        boxes.append((y0, x0, y0 + bh, x0 + bw))
    boxes = np.array(boxes)
    got = elsewhere_boxes(maps, (9, 7), boxes)
    assert [tuple(b) for b in got] == [_brute_elsewhere(m, b) for m, b in zip(maps, boxes,
                                                                              strict=True)]


def test_the_lowest_box_next_to_the_evidence_counts_as_clear_of_it():
    m = np.ones((1, 6, 6), np.float32)
    m[0, 2:4, 4:6] = 0.0  # the lowest place touches the evidence box's right edge
    assert elsewhere_boxes(m, (6, 6), np.array([[2, 2, 4, 4]])).tolist() == [[2, 4, 4, 6]]
    m = np.ones((1, 6, 6), np.float32)
    m[0, 4:6, 2:4] = 0.0  # ... or its bottom edge
    assert elsewhere_boxes(m, (6, 6), np.array([[2, 2, 4, 4]])).tolist() == [[4, 2, 6, 4]]
    m = np.ones((1, 6, 6), np.float32)
    m[0, 0:2, 2:4] = 0.0  # ... or its top edge
    assert elsewhere_boxes(m, (6, 6), np.array([[2, 2, 4, 4]])).tolist() == [[0, 2, 2, 4]]
    m = np.ones((1, 6, 6), np.float32)
    m[0, 2:4, 0:2] = 0.0  # ... or its left edge
    assert elsewhere_boxes(m, (6, 6), np.array([[2, 2, 4, 4]])).tolist() == [[2, 0, 4, 2]]
    m = np.ones((1, 6, 6), np.float32)
    m[0, 2:4, 3:5] = 0.0  # overlapping by a column: not clear, so elsewhere
    got = elsewhere_boxes(m, (6, 6), np.array([[2, 2, 4, 4]]))[0]
    assert not (got[0] < 4 and got[2] > 2 and got[1] < 4 and got[3] > 2)
    # a box as large as the image overlaps wherever it goes: it stays
    assert elsewhere_boxes(m, (6, 6), np.array([[0, 0, 6, 6]])).tolist() == [[0, 0, 6, 6]]
    # where every place overlaps, the lowest of them all
    m = np.ones((1, 6, 6), np.float32)
    m[0, 2:6, 2:6] = 0.0
    assert elsewhere_boxes(m, (6, 6), np.array([[1, 1, 5, 5]])).tolist() == [[2, 2, 6, 6]]


def test_the_threshold_is_a_fraction_of_each_maps_own_range():
    # values from 1 to 3: half the range is 2, not 1.25 (0.5 / 2) nor 3 (0.5 * 4)
    m = np.array([[[3.0, 2.0, 1.5, 1.0]]], np.float32)
    regions, _, _ = evidence_regions(m, (1, 4), frac=0.5, max_area=1.0)
    assert regions[0, 0].tolist() == [True, True, False, False]  # 2.0 is at the threshold
    fm = firing_masks(np.stack([m[0], m[0] + 10]), (1, 4), frac=0.5)
    assert fm[:, 0].tolist() == [[True, True, False, False]] * 2  # each map its own range


def test_defaults_are_a_threshold_of_0_8_and_a_core_of_a_sixteenth():
    m = np.zeros((1, 8, 8), np.float32)
    m[0, 1, :] = np.linspace(1.0, 0.65, 8)  # a bright row: 0.8 of the range cuts it
    default = evidence_regions(m, (8, 8))
    spelled = evidence_regions(m, (8, 8), frac=0.8, max_area=0.0625)
    for a, b in zip(default, spelled, strict=True):
        assert (a == b).all()
    assert default[0].sum() == 5 and default[1].sum() == 4


def test_the_core_keeps_ties_in_raster_order():
    m = np.zeros((1, 6, 6), np.float32)
    m[0, 1:5, 1:5] = np.array([[1, .9, 1, .9], [.9, 1, .9, 1], [1, 1, .9, .9], [.9, .9, 1, 1]])
    _, cores, _ = evidence_regions(m, (6, 6), frac=0.5, max_area=5 / 36)
    ones = np.argwhere(m[0] == 1)
    assert np.argwhere(cores[0]).tolist() == ones[:5].tolist()


@pytest.mark.parametrize(("kw", "message"), [
    ({"frac": 0.0}, r"^frac: expected a number in \(0, 1\), got 0\.0$"),
    ({"frac": 1.0}, r"^frac: expected a number in \(0, 1\), got 1\.0$"),
    ({"max_area": 0.0}, r"^max_area: expected a number in \(0, 1\], got 0\.0$"),
    ({"max_area": 1.5}, r"^max_area: expected a number in \(0, 1\], got 1\.5$"),
])
def test_evidence_regions_refuse_fractions_outside_their_range(kw, message):
    with pytest.raises(ValueError, match=message):
        evidence_regions(np.ones((1, 4, 4)), (4, 4), **kw)
    assert evidence_regions(np.eye(4)[None], (4, 4), max_area=1.0)[1].sum() == 1


@pytest.mark.parametrize("frac", [0.0, 1.0, 1.5])
def test_firing_masks_refuse_fractions_outside_0_1(frac):
    with pytest.raises(ValueError, match=rf"^frac: expected a number in \(0, 1\), got {frac}$"):
        firing_masks(np.ones((1, 4, 4)), (4, 4), frac)


def test_fill_takes_the_median_of_what_is_left_or_of_everything():
    img = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    masks = np.zeros((2, 3, 3), bool)
    masks[0, 0, :] = True
    masks[1] = True  # nothing left: the median of the whole image
    out = fill_regions(img, masks)
    for x in range(3):
        assert out[0, 0, x].tolist() == [float(np.median(img[0, 1:, :, c])) for c in (0, 1)]
    assert (out[0, 1:] == img[0, 1:]).all()
    assert (out[1] == np.median(img[1].reshape(-1, 2), axis=0)).all()


def test_upsampled_maps_are_float32_whatever_they_came_as():
    up = upsample_maps(np.ones((2, 3, 3), np.float64), (6, 6))
    assert up.dtype == np.float32 and up.shape == (2, 6, 6) and (up == 1).all()
