"""LIME-style superpixel explanations of a feature (Ribeiro et al., 2016; the paper's choice).

For each shown image: cut it into superpixels (:func:`tasks.viz.superpixels.slic_superpixels`),
draw ``n_samples`` random on/off patterns over them (the first one keeps everything), paint the
"off" superpixels neutral grey (:func:`tasks.viz.perturb.fill_removed`), score
the feature on every perturbed image, and fit a weighted ridge regression of the scores on the
on/off patterns (weights ``exp(-d^2 / width^2)`` with ``d`` the share of superpixels turned off,
LIME's locality kernel). A superpixel's coefficient is how much the feature loses when it is
removed. Unlike gradients, this sees a feature that fires on a whole striped or tinted
background: every background superpixel carries part of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tasks.viz.perturb import fill_removed
from tasks.viz.superpixels import slic_superpixels

__all__ = ["lime_coefficients", "lime_maps"]


def lime_coefficients(z: np.ndarray, y: np.ndarray, kernel_width: float = 0.25,
                      ridge: float = 1.0) -> np.ndarray:
    """Weighted ridge fit ``y ~ b + z @ beta`` (intercept unpenalized).

    Parameters
    ----------
    z : ndarray (s, k) of 0/1
        Which superpixels are kept in each sample.
    y : ndarray (s,)
        The feature's value on each sample.
    kernel_width : float
        Width of the locality kernel on the share of superpixels removed.
    ridge : float
        L2 penalty on ``beta``.

    Returns
    -------
    ndarray (k,)
    """
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    d = 1.0 - z.mean(1)
    w = np.exp(-(d ** 2) / kernel_width ** 2)
    sw = w.sum()
    zm = (w @ z) / sw
    ym = float(w @ y) / sw
    zc, yc = z - zm, y - ym
    a = (zc * w[:, None]).T @ zc + ridge * np.eye(z.shape[1])
    return np.linalg.solve(a, (zc * w[:, None]).T @ yc)


def lime_maps(score: Callable[[torch.Tensor, np.ndarray], np.ndarray], images: torch.Tensor,
              n_samples: int = 96, keep_prob: float = 0.5, n_segments: int = 48,
              seed: int = 0, segments: np.ndarray | None = None, batch: int = 512,
              min_share: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel LIME coefficients of each image's feature.

    Parameters
    ----------
    score : callable
        ``score(images (m, 3, H, W), which (m,)) -> (m,)``: the feature of shown image
        ``which[r]`` on image ``r`` (:func:`tasks.viz.perturb.feature_scorer`).
    images : Tensor (n, 3, H, W) in [0, 1]
    n_samples : int
        Perturbed copies per image.
    keep_prob : float
        Chance that a superpixel stays in a sample.
    n_segments : int
        Superpixels per image (approximate).
    seed : int
    segments : ndarray (n, H, W), optional
        Precomputed superpixels.
    batch : int
        Perturbed images scored at once.
    min_share : float
        Coefficients below this share of the image's own (unperturbed) value are noise and
        set to 0; an image whose value is not positive (nothing supports the class there)
        gets an all-zero map.

    Returns
    -------
    maps : ndarray (n, H, W), float, non-negative
        The coefficient of each pixel's superpixel (how much the feature drops when it is
        removed).
    segments : ndarray (n, H, W), int
    """
    if segments is None:
        segments = slic_superpixels(images, n_segments=n_segments)
    rng = np.random.default_rng(seed)
    n = len(images)
    out = np.zeros(segments.shape, np.float64)
    zs, seg_t = [], torch.as_tensor(segments)
    for i in range(n):
        k = int(segments[i].max()) + 1
        z = (rng.random((n_samples, k)) < keep_prob).astype(np.float32)
        z[0] = 1.0
        zs.append(z)
    # score all perturbations of all images, ``batch`` at a time
    jobs = [(i, s) for i in range(n) for s in range(n_samples)]
    ys = np.zeros((n, n_samples))
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        idx = np.array([i for i, _ in chunk])
        off = torch.stack([torch.as_tensor(1.0 - zs[i][s])[seg_t[i]] for i, s in chunk])
        x = fill_removed(images[torch.as_tensor(idx)], off)
        v = score(x, idx)
        for (i, s), val in zip(chunk, v, strict=True):
            ys[i, s] = val
    for i in range(n):
        y0 = ys[i, 0]  # the first sample keeps every superpixel
        if not y0 > 0:
            continue
        beta = lime_coefficients(zs[i], ys[i])
        beta = np.where(beta >= min_share * y0, beta, 0.0)
        out[i] = beta[segments[i]]
    return out, segments
