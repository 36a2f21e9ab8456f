"""A feature's evidence at input resolution: where in the image the feature fires.

The spatial map of a feature (h, w) is bilinearly upsampled to the image size (H, W); the
*evidence region* is the connected set of pixels around the map's peak whose value is at least
``frac`` of the way from the map's minimum to its maximum; the removal test fills it in. Its
*core*, the region's highest pixels up to ``max_area`` of the image, is what the paste tests
carry (the pixels under the core's mask, inside its bounding box), so a thin cue (a stripe)
travels whole while a large region (an object, a background) is cut down to where the feature
fires most.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["elsewhere_boxes", "evidence_regions", "fill_regions", "firing_masks",
           "upsample_maps"]


def upsample_maps(maps: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of spatial maps to the image size.

    Parameters
    ----------
    maps : array of shape (n, h, w)
    image_size : (H, W)

    Returns
    -------
    array of shape (n, H, W), float32
    """
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32))[:, None]
    up = torch.nn.functional.interpolate(t, size=tuple(image_size), mode="bilinear",
                                         align_corners=False)
    return up[:, 0].numpy()


def evidence_regions(maps: np.ndarray, image_size: tuple[int, int], frac: float = 0.8,
                     max_area: float = 0.0625, outside: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evidence regions, their capped cores and bounding boxes, of one feature on n images.

    Parameters
    ----------
    maps : array of shape (n, h, w)
        The feature's spatial map per image.
    image_size : (H, W)
    frac : float in (0, 1)
        Threshold between each map's minimum (0) and maximum (1).
    max_area : float in (0, 1]
        Largest core, as a fraction of the image's pixels: the region's highest pixels.
    outside : bool array of shape (n, H, W), optional
        Pixels that cannot be evidence (each image's object): left out of the region before
        its core is chosen, so the cap counts only the pixels that are left.

    Returns
    -------
    regions : bool array of shape (n, H, W)
        The connected above-threshold region around each map's peak (what removal fills).
    cores : bool array of shape (n, H, W)
        Each region's ``max_area * H * W`` highest pixels (what the paste tests carry).
    boxes : int array of shape (n, 4)
        ``(y0, x0, y1, x1)`` (end exclusive) bounding each core (where ``outside`` leaves no
        core, the box of the core the region would have without it).
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac: expected a number in (0, 1), got {frac}")
    if not 0 < max_area <= 1:
        raise ValueError(f"max_area: expected a number in (0, 1], got {max_area}")
    H, W = image_size
    up = upsample_maps(maps, image_size)
    regions = np.zeros(up.shape, bool)
    cores = np.zeros(up.shape, bool)
    boxes = np.zeros((len(up), 4), int)
    cap = max(1, round(max_area * H * W))
    for i, m in enumerate(up):
        lo, hi = float(m.min()), float(m.max())
        py, px = np.unravel_index(int(m.argmax()), m.shape)
        above = m >= lo + frac * (hi - lo) if hi > lo else np.ones_like(m, bool)
        comp, _ = ndimage.label(above)
        region = comp == comp[py, px]
        box_of = core = _highest(region, m, cap)
        if outside is not None:
            region = region & ~outside[i]
            core = _highest(region, m, cap)
            if core.any():
                box_of = core
        regions[i] = region
        cores[i] = core
        ys, xs = np.nonzero(box_of)
        boxes[i] = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    return regions, cores, boxes


def _highest(region: np.ndarray, m: np.ndarray, cap: int) -> np.ndarray:
    """The ``cap`` pixels of ``region`` where ``m`` is highest (ties in raster order)."""
    if region.sum() <= cap:
        return region
    flat = np.flatnonzero(region)
    keep = flat[np.argsort(-m.ravel()[flat], kind="stable")[:cap]]
    core = np.zeros(region.size, bool)
    core[keep] = True
    return core.reshape(region.shape)


def firing_masks(maps: np.ndarray, image_size: tuple[int, int], frac: float = 0.5
                 ) -> np.ndarray:
    """Every pixel where each feature's upsampled map is at least ``frac`` of its range.

    Unlike :func:`evidence_regions` the pixels need not be connected to the peak: a feature of
    a background texture fires all over the background, around the object.

    Parameters
    ----------
    maps : array of shape (n, h, w)
    image_size : (H, W)
    frac : float in (0, 1)

    Returns
    -------
    bool array of shape (n, H, W)
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac: expected a number in (0, 1), got {frac}")
    up = upsample_maps(maps, image_size)
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up >= lo + frac * (hi - lo)) & (hi > lo)


def elsewhere_boxes(maps: np.ndarray, image_size: tuple[int, int],
                    boxes: np.ndarray) -> np.ndarray:
    """Same-size boxes where each feature's map is lowest, away from its evidence box.

    Parameters
    ----------
    maps : array of shape (n, h, w)
    image_size : (H, W)
    boxes : int array of shape (n, 4)
        The evidence boxes ``(y0, x0, y1, x1)``.

    Returns
    -------
    int array of shape (n, 4)
        A box of the same height and width per image, placed where the upsampled map's mean is
        lowest among positions that do not overlap the evidence box (any position if none).
    """
    H, W = image_size
    up = upsample_maps(maps, image_size)
    out = np.zeros_like(boxes)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        bh, bw = y1 - y0, x1 - x0
        csum = np.pad(up[i], ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        sums = (csum[bh:, bw:] - csum[:-bh, bw:] - csum[bh:, :-bw] + csum[:-bh, :-bw])
        ys, xs = np.mgrid[0:H - bh + 1, 0:W - bw + 1]
        overlap = (ys < y1) & (ys + bh > y0) & (xs < x1) & (xs + bw > x0)
        score = np.where(overlap, np.inf, sums) if not overlap.all() else sums
        j = int(np.argmin(score))
        yy, xx = int(ys.ravel()[j]), int(xs.ravel()[j])
        out[i] = (yy, xx, yy + bh, xx + bw)
    return out


def fill_regions(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Inpaint masked pixels with the median colour of the image's unmasked pixels.

    Parameters
    ----------
    images : array of shape (n, H, W, C)
    masks : bool array of shape (n, H, W)

    Returns
    -------
    array of shape (n, H, W, C), same dtype
    """
    out = images.copy()
    for i, m in enumerate(masks):
        keep = images[i][~m] if (~m).any() else images[i].reshape(-1, images.shape[-1])
        out[i][m] = np.median(keep, axis=0).astype(images.dtype)
    return out
