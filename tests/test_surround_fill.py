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
