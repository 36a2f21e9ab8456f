"""Perturbing images to see what a feature needs: the feature's value as a function of the
image, the "removed" fill, and contrast panels (a region removed vs only that region kept).

A region is *removed* by painting it neutral grey (0.5 in every channel, the occlusion
baseline of :func:`tasks.viz.heatmap.occlusion_heatmaps`): this erases marks, stripes, tints
and shapes alike (a blur would leave a tint and a superpixel's own mean colour a mark; the
image's mean colour keeps a tint that covers most of the image, which
``benchmarks/measure_evidence.py`` showed hides a tint feature from LIME).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FILL", "LUMA", "Contrast", "colour_kept", "contrast", "feature_scorer", "fill_removed",
           "greyscale"]

#: The colour a removed region is painted with (images in [0, 1]).
FILL = 0.5

#: Luminance weights of R, G, B (ITU-R BT.601): the grey an image keeps without its colour.
LUMA = (0.299, 0.587, 0.114)

#: ``score(images (m, 3, H, W)) -> (m,)``
Scorer = Callable[[torch.Tensor], torch.Tensor]


def feature_scorer(features: Sequence[int], signs: Sequence[float],
                   spatial: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   pooled: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   batch: int = 256) -> Callable[[torch.Tensor, np.ndarray], np.ndarray]:
    """``score(images, which) -> (m,)``: the signed value of feature ``features[which[r]]`` on
    image ``r`` (the spatial map's mean for channel features, else ``pooled``'s column), run
    without gradients in batches of ``batch``.

    Parameters
    ----------
    features, signs : sequences of equal length
        Feature index and the sign of its class weight, per shown image.
    spatial : callable, optional
        ``(m, 3, H, W) -> (m, d, h, w)``.
    pooled : callable, optional
        ``(m, 3, H, W) -> (m, d)``; used when ``spatial`` is None.
    """
    if spatial is None and pooled is None:
        raise ValueError("feature_scorer needs spatial maps or a feature function")
    feat = np.asarray(features, np.int64)
    sgn = np.where(np.asarray(signs, np.float64) >= 0, 1.0, -1.0)

    def score(images: torch.Tensor, which: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch):
            x = images[s : s + batch]
            w = np.asarray(which[s : s + batch])
            with torch.no_grad():
                if spatial is not None:
                    m = spatial(x)
                    v = m[torch.arange(len(x)), torch.as_tensor(feat[w])].float().mean((1, 2))
                else:
                    v = pooled(x)[torch.arange(len(x)), torch.as_tensor(feat[w])].float()
            out.append(v.detach().cpu().numpy().astype(np.float64) * sgn[w])
        return np.concatenate(out) if out else np.zeros(0)

    return score


def fill_removed(images: torch.Tensor, remove: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``images`` (n, 3, H, W) with the pixels where ``remove`` (n, H, W), in [0, 1], is 1
    painted :data:`FILL` grey (soft masks blend)."""
    r = torch.as_tensor(np.asarray(remove, np.float32) if not isinstance(remove, torch.Tensor)
                        else remove, dtype=images.dtype, device=images.device)[:, None]
    return images * (1 - r) + FILL * r


@dataclass
class Contrast:
    """A contrast panel's numbers: the feature with the highlighted region removed / kept.

    Attributes
    ----------
    original : ndarray (n,)
        The signed feature value on each shown image.
    removed, kept : ndarray (n,)
        Its value with the highlighted region removed / with only that region kept.
    area : ndarray (n,)
        Share of each image that is highlighted.
    """

    original: np.ndarray
    removed: np.ndarray
    kept: np.ndarray
    area: np.ndarray

    def ratio(self, which: str) -> float:
        """Mean of ``removed`` or ``kept`` over the mean original value (0 when the feature is
        zero on every shown image): how much of the feature survives."""
        base = float(np.mean(self.original))
        return float(np.mean(getattr(self, which)) / base) if base > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """``{"removed": f, "kept": f, "area": f}``: surviving shares and mean area."""
        return {"removed": round(self.ratio("removed"), 4), "kept": round(self.ratio("kept"), 4),
                "area": round(float(np.mean(self.area)), 4)}


def contrast(score: Callable[[torch.Tensor, np.ndarray], np.ndarray], images: torch.Tensor,
             region: np.ndarray) -> tuple[Contrast, torch.Tensor, torch.Tensor]:
    """The feature on the images, with ``region`` removed and with only ``region`` kept.

    Parameters
    ----------
    score : callable
        From :func:`feature_scorer` (image ``r`` scored for its own feature).
    images : Tensor (n, 3, H, W) in [0, 1]
    region : bool ndarray (n, H, W)
        The highlighted pixels.

    Returns
    -------
    (Contrast, removed images (n, 3, H, W), kept images (n, 3, H, W))
    """
    reg = np.asarray(region, bool)
    which = np.arange(len(images))
    removed = fill_removed(images, reg)
    kept = fill_removed(images, ~reg)
    c = Contrast(original=score(images, which), removed=score(removed, which),
                 kept=score(kept, which), area=reg.reshape(len(reg), -1).mean(1))
    return c, removed, kept


def greyscale(images: torch.Tensor) -> torch.Tensor:
    """``images`` (n, 3, H, W) with their colour taken out: each pixel's luminance
    (:data:`LUMA`) in all three channels. Shapes, edges and brightness stay; a colour cast
    (a tinted background, a coloured object) goes."""
    w = torch.as_tensor(LUMA, dtype=images.dtype, device=images.device)
    return (images * w[None, :, None, None]).sum(1, keepdim=True).expand_as(images).contiguous()


def colour_kept(score: Callable[[torch.Tensor, np.ndarray], np.ndarray],
                images: torch.Tensor) -> float | None:
    """Share of a feature left on its shown images in greyscale (:func:`greyscale`): the
    mean signed value on the grey images over the mean on the originals, as
    :meth:`Contrast.ratio`; None when the signed feature is not positive on them (nothing to
    lose: e.g. the images where a feature the class counts against is lowest).

    A map cannot place a colour cast that covers the image: the feature of a tinted
    background often fires at the object's edge against the tint, so its maps point at the
    object, and painting the object grey leaves the edge (the grey meets the tint). Taking the
    colour out of the whole image shows whether the feature needs it.
    """
    which = np.arange(len(images))
    base = float(np.mean(score(images, which)))
    if base <= 0:
        return None
    return float(np.mean(score(greyscale(images), which)) / base)
