"""Image grids and heatmap overlays, written as PNG files (PIL, matplotlib colormaps)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from sparse_probe.rundir import atomic_path

__all__ = ["colorize", "image_grid", "overlay", "save_png", "to_uint8"]


def to_uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images as uint8 RGB of shape (n, h, w, 3).

    Accepts (n, 3, h, w) or (n, h, w, 3) floats in ``[0, 1]`` (clipped), uint8, or grayscale
    (n, h, w).
    """
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 4:
        raise ValueError(f"images: expected 3 or 4 dimensions, got shape {a.shape}")
    if a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Map heat values in ``[0, 1]`` of shape (n, h, w) to RGB floats (n, h, w, 3)."""
    return colormaps[cmap](np.clip(np.asarray(heat, dtype=np.float64), 0, 1))[..., :3]


def overlay(images: np.ndarray | torch.Tensor, heat: np.ndarray, alpha: float = 0.6,
            cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over images: ``out = img (1 - a h) + cmap(h) a h`` with ``a = alpha``.

    Parameters
    ----------
    images : (n, 3, h, w) or (n, h, w, 3)
    heat : ndarray of shape (n, h, w), values in ``[0, 1]`` (per-image normalized)

    Returns
    -------
    ndarray (n, h, w, 3) uint8
    """
    img = to_uint8(images).astype(np.float64) / 255.0
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, 1)
    if h.shape != img.shape[:3]:
        raise ValueError(f"heat shape {h.shape} does not match images {img.shape[:3]}")
    a = (alpha * h)[..., None]
    return to_uint8(img * (1 - a) + colorize(h, cmap) * a)


def image_grid(images: np.ndarray | torch.Tensor, ncols: int | None = None, pad: int = 2,
               min_side: int = 96, background: int = 255) -> Image.Image:
    """Tile images into one grid image.

    Parameters
    ----------
    images : (n, 3, h, w) or (n, h, w, 3)
    ncols : int, optional
        Columns; ``ceil(sqrt(n))`` by default.
    min_side : int
        Small images are enlarged (nearest neighbour, integer factor) to at least this side.
    """
    a = to_uint8(images)
    n, h, w, _ = a.shape
    if n == 0:
        raise ValueError("image_grid: no images")
    factor = max(1, math.ceil(min_side / max(h, w)))
    if factor > 1:
        a = a.repeat(factor, axis=1).repeat(factor, axis=2)
        h, w = h * factor, w * factor
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3),
                     background, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = a[i]
    return Image.fromarray(canvas)


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as PNG atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return path
