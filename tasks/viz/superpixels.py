"""Superpixels: SLIC (Achanta et al., 2012) in numpy, for LIME-style explanations.

Each image is cut into about ``n_segments`` compact regions of similar colour: cluster centres
start on a regular grid (step ``S``); every pixel joins the centre within ``2S`` (in x and in
y) that minimizes ``|colour - colour_k|^2 + (m / S)^2 |xy - xy_k|^2`` (colours in ``[0, 100]``
per channel, ``m`` the compactness); centres move to the mean of their pixels; repeat. Labels
are renumbered ``0..K-1`` per image; a label may cover pixels that are not connected (no
connectivity post-processing, which LIME does not need).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["slic_superpixels"]


def slic_superpixels(images: np.ndarray | torch.Tensor, n_segments: int = 48,
                     compactness: float = 10.0, n_iter: int = 6) -> np.ndarray:
    """SLIC superpixels of each image.

    Parameters
    ----------
    images : ndarray or Tensor of shape (n, 3, H, W), floats in [0, 1]
    n_segments : int
        Approximate number of superpixels per image (the grid of initial centres).
    compactness : float
        ``m``: larger values give squarer regions, smaller ones follow colour edges more.
    n_iter : int
        Assignment / update rounds.

    Returns
    -------
    ndarray of shape (n, H, W), int64
        Superpixel label of every pixel, ``0..K_i - 1`` for image ``i``.
    """
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images: expected shape (n, 3, H, W), got {x.shape}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    n, _, h, w = x.shape
    step = max(1.0, math.sqrt(h * w / n_segments))
    gy = np.arange(step / 2, h, step)
    gx = np.arange(step / 2, w, step)
    cy, cx = (a.ravel() for a in np.meshgrid(gy, gx, indexing="ij"))
    k = len(cy)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pos = np.stack([yy.ravel(), xx.ravel()], 1)  # (P, 2)
    spatial_w = (compactness / step) ** 2
    out = np.empty((n, h, w), np.int64)
    for i in range(n):
        col = x[i].reshape(3, -1).T.astype(np.float64) * 100.0  # (P, 3)
        cpos = np.stack([cy, cx], 1)  # (K, 2)
        iy = np.clip(np.rint(cy).astype(int), 0, h - 1)
        ix = np.clip(np.rint(cx).astype(int), 0, w - 1)
        ccol = col[iy * w + ix]  # (K, 3)
        for _ in range(n_iter):
            dpos = pos[:, None, :] - cpos[None, :, :]  # (P, K, 2)
            far = (np.abs(dpos) > 2 * step).any(-1)
            d = ((col[:, None, :] - ccol[None]) ** 2).sum(-1) + spatial_w * (dpos ** 2).sum(-1)
            d[far] = np.inf
            lab = d.argmin(1)
            lost = np.isinf(d.min(1))  # no centre within 2S any more: the nearest one
            if lost.any():
                lab[lost] = (dpos[lost] ** 2).sum(-1).argmin(1)
            counts = np.bincount(lab, minlength=k)
            live = counts > 0
            for j, arr in ((0, cpos), (1, ccol)):
                src = pos if j == 0 else col
                sums = np.stack([np.bincount(lab, src[:, c], minlength=k)
                                 for c in range(src.shape[1])], 1)
                arr[live] = sums[live] / counts[live, None]
        _, dense = np.unique(lab, return_inverse=True)
        out[i] = dense.reshape(h, w)
    return out
