"""Removing a region by filling it from the rest of the image (tasks.viz.perturb.surround_fill).

The reference is the image without the region, made in the test (stripes of a random period,
angle and phase under a disk; a plain background) or redrawn by the shapes generator
(:func:`sparse_probe.datasets.shapes.render_without`), never the fill itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_probe.datasets.shapes import make_shapes, render_without
from tasks.viz.perturb import (
    FILL,
    FILL_CHANGE,
    FILL_SPREAD,
    contrast,
    fill_from_surround,
    fill_removed,
    surround_fill,
)


def striped(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A background of stripes (random period, angle, phase, colours), the same image with a
    disk of a random colour at a random place, and the disk's mask."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    period = rng.uniform(4.0, 9.0)
    angle = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle))
                                      / period + phase))
    lo, hi = rng.uniform(0.0, 0.4, 3), rng.uniform(0.6, 1.0, 3)
    bg = lo[:, None, None] + (hi - lo)[:, None, None] * wave[None]
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.1, size * 0.18)
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = bg.copy()
    img[:, disk] = rng.uniform(0, 1, 3)[:, None]
    return bg, img, disk


@pytest.mark.parametrize("seed", range(6))
def test_an_object_on_stripes_is_replaced_by_the_stripes_under_it(seed):
    bg, img, disk = striped(np.random.default_rng(100 + seed))
    out = surround_fill(img, disk)
    assert out is not None
    err = np.abs(out[:, disk] - bg[:, disk]).mean()
    grey = np.abs(FILL - bg[:, disk]).mean()
    assert err < 0.2 * grey  # the stripes run on where the disk was; grey cuts a hole
    np.testing.assert_array_equal(out[:, ~disk], img[:, ~disk])  # nothing else changes


@pytest.mark.parametrize("seed", range(4))
def test_a_patch_of_the_stripes_themselves_is_not_copied_over(seed):
    """Copying stripes over stripes would remove nothing: the patch is left to grey."""
    bg, _, _ = striped(np.random.default_rng(200 + seed))
    patch = np.zeros(bg.shape[1:], bool)
    patch[4:20, 6:22] = True
    assert surround_fill(bg, patch) is None
    out = fill_from_surround(torch.as_tensor(bg[None], dtype=torch.float32), patch[None])
    np.testing.assert_allclose(out[0][:, torch.as_tensor(patch)].numpy(), FILL)


def test_the_fill_never_copies_pixels_of_the_region_itself():
    """A region whose best match is inside itself (its left half continues its right half)
    is filled from outside it: every filled pixel is the background's colour."""
    img = np.zeros((3, 40, 40))
    img[0] = 0.2  # plain background
    region = np.zeros((40, 40), bool)
    region[10:26, 8:30] = True
    img[:, region] = np.array([0.9, 0.1, 0.6])[:, None]
    out = surround_fill(img, region)
    assert out is not None
    np.testing.assert_allclose(out[:, region], img[:, ~region][:, :1].repeat(region.sum(), 1))


def test_no_fill_without_room_or_region():
    img = np.random.default_rng(0).uniform(size=(3, 24, 24))
    big = np.zeros((24, 24), bool)
    big[:, :13] = True  # more than half the image
    assert surround_fill(img, big) is None
    assert surround_fill(img, np.zeros((24, 24), bool)) is None
    out = fill_from_surround(torch.as_tensor(img[None], dtype=torch.float32), big[None])
    torch.testing.assert_close(out, fill_removed(torch.as_tensor(img[None],
                                                                 dtype=torch.float32), big[None]))


def test_the_change_threshold_decides_between_copy_and_grey():
    """A faint blob (changed little against its ring's mismatch) is copied over only when
    the threshold lets it: FILL_CHANGE is what separates a region from more of the same."""
    rng = np.random.default_rng(3)
    img = 0.5 + 0.02 * rng.standard_normal((3, 40, 40))
    region = np.zeros((40, 40), bool)
    region[14:24, 14:24] = True
    img[:, region] += 0.25  # a clear object: replaced many times more than the seam misses
    assert surround_fill(img, region) is not None
    assert surround_fill(img, region, change=1e6) is None
    noise = 0.5 + 0.02 * rng.standard_normal((3, 40, 40))  # the region is more of the same
    assert surround_fill(noise, region) is None
    assert surround_fill(noise, region, change=0.0) is not None
    assert FILL_CHANGE > 1.0


def test_a_border_bar_is_filled_from_the_background_next_to_it():
    img = np.zeros((3, 32, 32))
    img[:] = np.linspace(0.2, 0.4, 32)[None, None, :]  # a smooth horizontal ramp
    bar = np.zeros((32, 32), bool)
    bar[:, 29:] = True
    ramp = img.copy()
    img[:, bar] = np.array([1.0, 0.7, 0.0])[:, None]
    out = surround_fill(img, bar)
    assert out is not None
    assert np.abs(out[:, bar] - ramp[:, bar]).max() < 0.05


def test_objects_of_the_shapes_generator_leave_the_background_the_generator_draws():
    """Held out: the generator's own images (textured and plain backgrounds, every class),
    the object filled from its surroundings against the same images redrawn without it."""
    params = {"n_train": 48, "n_val": 6, "n_test": 6, "seed": 11,
              "cues": {"texture": {"class": "circle", "strength": 0.5},
                       "tint": {"class": "cross", "strength": 0.5}}}
    ds = make_shapes(**params)
    truth = render_without(ds.params, "train", ["object"]).astype(np.float64) / 255
    imgs = torch.as_tensor(ds.train.images.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    masks = ds.train.object_masks
    filled = fill_from_surround(imgs, masks).numpy().transpose(0, 2, 3, 1)
    greyed = fill_removed(imgs, masks).numpy().transpose(0, 2, 3, 1)
    textured = ds.train.has_cue["texture"]
    for group in (textured, ~textured):
        e_fill = np.mean([np.abs(filled[i][masks[i]] - truth[i][masks[i]]).mean()
                          for i in np.flatnonzero(group)])
        e_grey = np.mean([np.abs(greyed[i][masks[i]] - truth[i][masks[i]]).mean()
                          for i in np.flatnonzero(group)])
        assert e_fill < 0.6 * e_grey


def test_contrast_removes_by_the_surround_fill_and_keeps_on_grey():
    rng = np.random.default_rng(7)
    bgs, imgs, disks = zip(*(striped(rng, 40) for _ in range(3)), strict=True)
    images = torch.as_tensor(np.stack(imgs), dtype=torch.float32)
    region = np.stack(disks)

    def score(x, which):  # a feature of the stripes: their contrast, anywhere
        return x.std(dim=(1, 2, 3)).double().numpy()

    c, removed, kept = contrast(score, images, region)
    ref = torch.as_tensor(np.stack(bgs), dtype=torch.float32)
    assert float((removed - ref).abs().mean()) < 0.05
    torch.testing.assert_close(kept, fill_removed(images, ~region))
    assert c.ratio("removed") > 0.9  # the stripes survive the object's removal


# --- the FFT search against a brute-force search over every shift ------------------------------
def _reference_fill(image: np.ndarray, region: np.ndarray, band: int = 2,
                    change: float = FILL_CHANGE) -> tuple[np.ndarray | None, dict]:
    """The same completion by plain loops: every shift tried one by one, rings from
    scipy's dilation. Returns the filled image (or None) and the statistics it decided on."""
    from scipy.ndimage import binary_dilation

    M = region.astype(bool)
    H, W = M.shape
    area = int(M.sum())
    if area == 0 or 2 * area > H * W:
        return None, {}
    x = image.astype(np.float64)
    out = x.copy()
    side = max(8, H // 4)
    pieces = []
    for y0 in range(0, H, side):
        for x0 in range(0, W, side):
            p = np.zeros_like(M)
            p[y0:y0 + side, x0:x0 + side] = M[y0:y0 + side, x0:x0 + side]
            if p.any():
                pieces.append(p)
    known = ~M
    seam = replaced = 0.0
    ring_px = 0
    while pieces:
        rings = [binary_dilation(p, np.ones((3, 3), bool), iterations=band) & known
                 for p in pieces]
        k = max(range(len(pieces)), key=lambda t: int(rings[t].sum()))
        piece, ring = pieces.pop(k), rings[k]
        uy, ux = np.nonzero(piece | ring)
        ry, rx = np.nonzero(ring)
        best = None
        for dy in range(-H + 1, H):
            for dx in range(-W + 1, W):
                sy, sx = uy + dy, ux + dx
                if sy.min() < 0 or sx.min() < 0 or sy.max() >= H or sx.max() >= W:
                    continue
                if M[sy, sx].any():
                    continue
                cost = float(((x[:, ry + dy, rx + dx] - out[:, ry, rx]) ** 2).sum())
                key = (round(cost, 9), dy * dy + dx * dx)
                if best is None or key < best[0]:
                    best = (key, dy, dx, cost)
        if best is None:
            return None, {}
        _, dy, dx, cost = best
        py, px = np.nonzero(piece)
        out[:, py, px] = x[:, py + dy, px + dx]
        known = known | piece
        seam += cost
        ring_px += int(ring.sum())
        replaced += float(((out[:, py, px] - x[:, py, px]) ** 2).sum())
    stats = {"replaced": replaced / area, "seam": seam / max(ring_px, 1),
             "spread": float(sum(x[c][M].var() for c in range(len(x))))}
    if stats["replaced"] <= max(change * stats["seam"], FILL_SPREAD * stats["spread"]):
        return None, stats
    return out, stats


def _scene(seed: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A noisy smooth background with a blob of another colour (random place and size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = (rng.uniform(0.2, 0.6, 3)[:, None, None] + 0.01 * xx[None] / size
           + 0.03 * rng.standard_normal((3, size, size)))
    cy, cx = rng.uniform(7, size - 7, 2)
    r = rng.uniform(2.0, 4.0)
    blob = (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.6, 1.4)) ** 2 <= r * r
    img[:, blob] = rng.uniform(0.6, 1.0, 3)[:, None] + 0.03 * rng.standard_normal((3, 1))
    return img, blob


@pytest.mark.parametrize("seed", range(8))
def test_the_fft_search_finds_the_shifts_a_brute_force_search_finds(seed):
    img, blob = _scene(seed)
    for band in (1, 2):
        want, stats = _reference_fill(img, blob, band)
        got = surround_fill(img, blob, band)
        assert stats, "the scene leaves room to copy from"
        assert want is not None and got is not None
        np.testing.assert_allclose(got, want, atol=1e-12)
        # the decision: copied over while the change beats `change` times the seam ...
        ratio = stats["replaced"] / stats["seam"]
        assert stats["replaced"] > FILL_SPREAD * stats["spread"]
        assert surround_fill(img, blob, band, change=0.999 * ratio) is not None
        assert surround_fill(img, blob, band, change=ratio * 1.001) is None


@pytest.mark.parametrize("seed", range(4))
def test_pieces_and_odd_shapes_match_the_brute_force_search(seed):
    """A region over several tiles (a bar across the image, on a 32-pixel image: tiles of 8),
    in a non-square image, with and without room to copy from."""
    rng = np.random.default_rng(50 + seed)
    H, W = 32, 24
    img = rng.uniform(0.3, 0.5, (3, 1, 1)) + 0.05 * rng.standard_normal((3, H, W))
    region = np.zeros((H, W), bool)
    y0 = int(rng.integers(2, 20))
    region[y0:y0 + 5, 3:21] = True
    img[:, region] += 0.4
    want, _ = _reference_fill(img, region, 2, change=0.0)
    got = surround_fill(img, region, 2, change=0.0)
    assert (want is None) == (got is None)
    if want is not None:
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_no_copy_for_more_than_half_the_image_or_without_room():
    """A region of more than half the image is painted grey (what would be left to copy
    from is less than what it replaces); exactly half is still copied piece by piece; a
    region in a tiny image has nowhere to come from."""
    rng = np.random.default_rng(9)
    img = rng.random((3, 24, 24))
    half = np.zeros((24, 24), bool)
    half[:12] = True
    assert surround_fill(img, half, change=0.0) is not None
    over = half.copy()
    over[12, 0] = True
    assert surround_fill(img, over, change=0.0) is None
    assert surround_fill(np.zeros((3, 3, 3)), np.eye(3, dtype=bool), change=0.0) is None


def test_fill_from_surround_passes_its_change_on():
    img, blob = _scene(3)
    images = torch.as_tensor(img[None], dtype=torch.float32)
    copied = fill_from_surround(images, blob[None])
    greyed = fill_from_surround(images, blob[None], change=1e9)
    assert not torch.allclose(copied, greyed)
    torch.testing.assert_close(greyed, fill_removed(images, blob[None]))


@pytest.mark.parametrize("band", [1, 2, 3])
def test_rings_are_scipys_dilation(band):
    from scipy.ndimage import binary_dilation

    from tasks.viz.perturb import _dilate

    rng = np.random.default_rng(band)
    mask = rng.random((17, 23)) < 0.05
    np.testing.assert_array_equal(
        _dilate(mask, band), binary_dilation(mask, np.ones((3, 3), bool), iterations=band))


def test_ties_go_to_the_nearest_shift():
    """On a flat background every shift whose ring lands on flat pixels matches exactly; the
    nearest one copies the background next to the region, not a far corner that holds
    another object (two small blobs there, in reach of the farthest shifts)."""
    img = np.full((3, 30, 30), 0.3)
    region = np.zeros((30, 30), bool)
    region[2:6, 2:6] = True
    img[:, region] = 0.8
    img[:, 26:28, 26:28] = 0.9  # far bottom right
    img[:, 4:6, 26:28] = 0.1  # far top right
    img[:, 26:28, 4:6] = 0.6  # far bottom left
    out = surround_fill(img, region)
    assert out is not None
    np.testing.assert_array_equal(out[:, region], 0.3)


def test_a_region_of_up_to_half_the_image_is_copied_where_there_is_room():
    img = np.full((3, 20, 40), 0.4)
    region = np.zeros((20, 40), bool)
    region[:, :16] = True  # 40% of the image, a plain background beside it
    img[:, region] = 0.9
    out = surround_fill(img, region)
    assert out is not None
    np.testing.assert_array_equal(out[:, region], 0.4)


def test_inputs_of_other_types_give_the_same_fill():
    img, blob = _scene(5)
    want = surround_fill(img, blob)
    assert want is not None and want.dtype == np.float64
    np.testing.assert_array_equal(surround_fill(img, blob.astype(np.uint8)), want)
    got = surround_fill(img.astype(np.float32), blob)
    assert got is not None and got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_copy_that_changes_nothing_is_no_removal():
    """A region of the background's own colour: any copy puts the same pixels back (no
    change, no seam, no spread), so the region is painted grey instead."""
    img = np.full((3, 24, 24), 0.3)
    region = np.zeros((24, 24), bool)
    region[5:9, 5:9] = True
    assert surround_fill(img, region) is None


def test_the_spread_sums_each_channels_own_variance():
    """Channels far apart (0, 0.5, 1) and a blob that raises red by 0.2: each channel varies
    only by its noise inside the region, so the blob is copied over; all values pooled would
    vary by the gap between the channels (0.11) and refuse it."""
    rng = np.random.default_rng(2)
    img = np.empty((3, 24, 24))
    img[0], img[1], img[2] = 0.0, 0.5, 1.0
    img += 0.005 * rng.standard_normal(img.shape)
    region = np.zeros((24, 24), bool)
    region[8:13, 8:13] = True
    img[0][region] += 0.2
    assert surround_fill(img, region, change=0.0) is not None


@pytest.mark.parametrize("seed", range(3))
def test_larger_images_near_black_match_the_brute_force_search(seed):
    """40 pixels (tiles of 10), a near-black noisy background (so a shift that moves a ring
    pixel off the image, onto the FFT's zero padding, would look as good as any), a blob
    near the border."""
    rng = np.random.default_rng(300 + seed)
    size = 40
    yy, xx = np.mgrid[:size, :size]
    img = np.abs(0.02 * rng.standard_normal((3, size, size)))
    cy, cx = rng.uniform(3, 8), rng.uniform(5, size - 5)
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(6, 14) ** 2
    img[:, blob] = rng.uniform(0.5, 1.0, 3)[:, None]
    want, _ = _reference_fill(img, blob, 2, change=0.0)
    got = surround_fill(img, blob, 2, change=0.0)
    assert want is not None and got is not None
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_soft_mask_is_read_as_the_region_where_it_is_not_zero():
    img, blob = _scene(6)
    images = torch.as_tensor(img[None], dtype=torch.float32)
    soft = 0.6 * blob[None].astype(np.float32)
    torch.testing.assert_close(fill_from_surround(images, soft),
                               fill_from_surround(images, blob[None]))
    torch.testing.assert_close(fill_from_surround(images, soft, change=1e9),
                               fill_removed(images, blob[None]))


def test_measure_fill_reports_the_copy_closer_to_the_redraw_than_grey(capsys):
    from helpers_bench import load_bench

    bench = load_bench("measure_fill")
    res = bench.measure(seed=3, n=24, grow=0)
    for copied, e_fill, e_grey in res.values():
        assert copied > 0.5 and e_fill < 0.6 * e_grey
    assert bench.main(["--seeds", "3", "--n", "24", "--grow", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # header, textured, plain
    with pytest.raises(SystemExit):
        bench.main(["--n", "5"])
