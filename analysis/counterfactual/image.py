"""Image counterfactuals: cut a feature's pattern where it fires most and paste it elsewhere.

For a feature f judged spurious for class c: among the images where f fires most, take the
argmax of f's spatial map, map it to pixel coordinates and cut a ``box x box`` patch centred
there. Paste the patches at random (seeded) positions into test images of the other classes and
measure how often each model's prediction flips to c, and how much p(c) rises. The control cuts
patches of the same size from the same images where the feature does not fire (the map's lowest
region), so any effect of pasting "some patch" is measured too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from analysis.counterfactual.models import Predictor
from analysis.counterfactual.stats import paired_comparison, wilson_interval

__all__ = ["PatchTestResult", "control_boxes", "crop", "fire_boxes", "paste", "patch_test"]

logger = logging.getLogger(__name__)


def _upsample_coords(iy: np.ndarray, ix: np.ndarray, hw: tuple[int, int],
                     HW: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = hw
    H, W = HW
    return ((iy + 0.5) * H / h).astype(int), ((ix + 0.5) * W / w).astype(int)


def _clip_box(cy: np.ndarray, cx: np.ndarray, box: int, HW: tuple[int, int]) -> np.ndarray:
    H, W = HW
    y0 = np.clip(cy - box // 2, 0, H - box)
    x0 = np.clip(cx - box // 2, 0, W - box)
    return np.stack([y0, x0], axis=1)


def fire_boxes(maps: np.ndarray, image_size: tuple[int, int], box: int) -> np.ndarray:
    """Top-left corners of the boxes centred where each map peaks.

    Parameters
    ----------
    maps : array of shape (n, h, w)
        One feature's spatial map on n images.
    image_size : (H, W)
    box : int
        Patch side in pixels.

    Returns
    -------
    array of shape (n, 2)
        ``(y0, x0)`` per image.
    """
    n, h, w = maps.shape
    flat = maps.reshape(n, -1).argmax(1)
    cy, cx = _upsample_coords(flat // w, flat % w, (h, w), image_size)
    return _clip_box(cy, cx, box, image_size)


def control_boxes(maps: np.ndarray, image_size: tuple[int, int], box: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Boxes from where each map is lowest (ties broken at random): the non-firing region.

    Returns
    -------
    array of shape (n, 2)
    """
    n, h, w = maps.shape
    out = np.zeros((n, 2), dtype=int)
    for i in range(n):
        m = maps[i]
        low = np.flatnonzero(m.ravel() <= m.min() + 1e-6 * (np.ptp(m) + 1e-12))
        j = int(rng.choice(low))
        cy, cx = _upsample_coords(np.array([j // w]), np.array([j % w]), (h, w), image_size)
        out[i] = _clip_box(cy, cx, box, image_size)[0]
    return out


def crop(images: np.ndarray, boxes: np.ndarray, box: int) -> np.ndarray:
    """Cut patches (k, box, box, C) from images (k, H, W, C) at ``boxes`` (k, 2)."""
    return np.stack([images[i, y:y + box, x:x + box] for i, (y, x) in enumerate(boxes)])


def paste(images: np.ndarray, patches: np.ndarray, rng: np.random.Generator,
          which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste one patch into each image at a random position.

    Parameters
    ----------
    images : array of shape (n, H, W, C)
    patches : array of shape (k, box, box, C)
    rng : numpy Generator
    which : int array of shape (n,), optional
        Patch index per image; default drawn uniformly.

    Returns
    -------
    pasted : array of shape (n, H, W, C)
    positions : int array of shape (n, 2)
        Top-left ``(y, x)`` of each pasted patch.
    """
    n, H, W = images.shape[:3]
    box = patches.shape[1]
    if which is None:
        which = rng.integers(0, len(patches), n)
    pos = np.stack([rng.integers(0, H - box + 1, n), rng.integers(0, W - box + 1, n)], axis=1)
    out = images.copy()
    for i, (y, x) in enumerate(pos):
        out[i, y:y + box, x:x + box] = patches[which[i]]
    return out, pos


@dataclass
class PatchTestResult:
    """Outcome of :func:`patch_test` for one feature.

    Attributes
    ----------
    rows : list of dict
        One per (test, model): ``test`` (``patch`` or ``control``), ``model``, ``target``,
        ``n``, ``flips``, ``flip_rate``, ``ci_low``, ``ci_high``, ``mean_prob_increase``.
    flips : dict
        ``(test, model) -> bool array (n,)``, for paired comparisons.
    paired : list of dict
        Exact McNemar comparisons between models on the same pasted images.
    """

    rows: list[dict] = field(default_factory=list)
    flips: dict = field(default_factory=dict)
    paired: list[dict] = field(default_factory=list)


def patch_test(
    predictors: Mapping[str, Predictor],
    source_images: np.ndarray,
    source_maps: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    target: int,
    box: int = 8,
    n: int = 200,
    top: int = 16,
    seed: int = 0,
) -> PatchTestResult:
    """Paste a feature's pattern into test images of other classes; count flips to ``target``.

    Parameters
    ----------
    predictors : mapping name -> predictor
        E.g. ``{"dense": ..., "sparse": ...}``; each maps images (n, H, W, C) to probabilities.
    source_images : array of shape (m, H, W, C)
        Candidate images to cut the pattern from (e.g. the feature's top-activating examples).
    source_maps : array of shape (m, h, w)
        The feature's spatial map on ``source_images``.
    test_images : array of shape (N, H, W, C)
    test_labels : int array of shape (N,)
    target : int
        The feature's class.
    box : int
        Patch side in pixels.
    n : int
        Perturbed images (drawn with replacement from test images whose label is not target).
    top : int
        Use the ``top`` source images where the map's maximum is largest.
    seed : int

    Returns
    -------
    PatchTestResult
        A flip is a prediction that was not ``target`` before pasting and is ``target`` after;
        the denominator is the perturbed images not predicted ``target`` before.
    """
    rng = np.random.default_rng(seed)
    peak = source_maps.reshape(len(source_maps), -1).max(1)
    best = np.argsort(-peak)[: max(1, min(top, len(peak)))]
    imgs, maps = source_images[best], source_maps[best]
    HW = imgs.shape[1:3]
    patches = crop(imgs, fire_boxes(maps, HW, box), box)
    controls = crop(imgs, control_boxes(maps, HW, box, rng), box)
    pool = np.flatnonzero(np.asarray(test_labels) != target)
    if len(pool) == 0:
        raise ValueError(f"test_labels: no test image outside class {target}")
    pick = rng.choice(pool, size=n, replace=len(pool) < n)
    base = test_images[pick]
    which = rng.integers(0, len(patches), n)
    pasted, pos = paste(base, patches, rng, which)
    control = base.copy()
    for i, (y, x) in enumerate(pos):  # same positions and source images as the real patch
        control[i, y:y + box, x:x + box] = controls[which[i]]
    result = PatchTestResult()
    for name, predict in predictors.items():
        p0 = predict(base)
        eligible = p0.argmax(1) != target
        for test, imgs_t in (("patch", pasted), ("control", control)):
            p1 = predict(imgs_t)
            flips = eligible & (p1.argmax(1) == target)
            k, m = int(flips.sum()), int(eligible.sum())
            lo, hi = wilson_interval(k, m)
            result.rows.append({
                "test": test, "model": name, "target": int(target), "n": m, "flips": k,
                "flip_rate": k / m if m else float("nan"), "ci_low": lo, "ci_high": hi,
                "mean_prob_increase": float(np.mean(p1[:, target] - p0[:, target])),
            })
            result.flips[(test, name)] = flips
        logger.info("patch test target=%d model=%s: %s", target, name, result.rows[-2:])
    names = list(predictors)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            result.paired.append({"test": "patch", "model_a": a, "model_b": b,
                                  **paired_comparison(result.flips[("patch", a)],
                                                      result.flips[("patch", b)])})
    return result
