"""Backgrounds of images: cut them out (object removed) and swap them between images.

A background cue (a texture, a colour cast) is not a local patch: it covers most of the image
around the object, so it cannot be carried by a small pasted region. The background tests move
the whole background instead. With object masks (ground truth of a built-in dataset, or masks a
user gives) the background of an image is everything but its object; the object's pixels are
filled from the image's own background (copies shifted by the object's size, so a texture
continues into the hole instead of leaving a flat silhouette of the object). Without masks the
"background" is a region given per image (the feature's evidence region or a user mask).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["background_plates", "swap_backgrounds", "swap_regions"]


def background_plates(images: np.ndarray, object_masks: np.ndarray) -> np.ndarray:
    """Each image with its object removed: the object's pixels filled from its background.

    Parameters
    ----------
    images : array of shape (n, H, W, C)
    object_masks : bool array of shape (n, H, W)

    Returns
    -------
    array of shape (n, H, W, C), same dtype
        Pixels of the (one-pixel dilated) object are copied from the nearest background pixels
        at offsets of the object's height / width (so periodic textures continue); any left
        over take the median colour of the background.
    """
    out = np.array(images, copy=True)
    H, W = images.shape[1:3]
    for i, m in enumerate(np.asarray(object_masks, bool)):
        if not m.any():
            continue
        hole = ndimage.binary_dilation(m)
        if hole.all():
            continue
        ys, xs = np.nonzero(hole)
        bh, bw = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        todo = hole.copy()
        for dy, dx in ((0, bw), (0, -bw), (bh, 0), (-bh, 0), (bh, bw), (-bh, -bw), (bh, -bw),
                       (-bh, bw)):
            yy, xx = np.nonzero(todo)
            sy, sx = yy + dy, xx + dx
            ok = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
            ok[ok] = ~hole[sy[ok], sx[ok]]
            out[i, yy[ok], xx[ok]] = images[i, sy[ok], sx[ok]]
            todo[yy[ok], xx[ok]] = False
            if not todo.any():
                break
        if todo.any():
            out[i][todo] = np.median(images[i][~hole], axis=0).astype(images.dtype)
    return out


def swap_backgrounds(images: np.ndarray, object_masks: np.ndarray,
                     plates: np.ndarray) -> np.ndarray:
    """Each image's object over another background.

    Parameters
    ----------
    images : array of shape (n, H, W, C)
    object_masks : bool array of shape (n, H, W)
        The objects kept from ``images``.
    plates : array of shape (n, H, W, C)
        Backgrounds (:func:`background_plates` of the donor images).

    Returns
    -------
    array of shape (n, H, W, C)
    """
    return np.where(np.asarray(object_masks, bool)[..., None], images, plates).astype(
        images.dtype)


def swap_regions(images: np.ndarray, regions: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """Replace the pixels of each image under ``regions`` by the donor's pixels there.

    Parameters
    ----------
    images, donors : arrays of shape (n, H, W, C)
    regions : bool array of shape (n, H, W)

    Returns
    -------
    array of shape (n, H, W, C)
    """
    return np.where(np.asarray(regions, bool)[..., None], donors, images).astype(images.dtype)
