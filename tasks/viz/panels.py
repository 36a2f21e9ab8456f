"""The evidence panels of an image HIT: where a feature fires, computed several ways.

A feature of a cue on the object (a mark) and one of a cue spread over the whole image (a
striped or tinted background) need different evidence: input gradients are sharp at edges and
marks, so gradient-sharpened heatmaps put a background texture's evidence on the object's
outline (measured by ``benchmarks/measure_evidence.py``). The map panels:

``lime``
    LIME-style superpixel explanation (:mod:`tasks.viz.lime`): each superpixel coloured by how
    much the feature drops when it is removed. Shows marks and backgrounds alike.
``activation``
    The feature's own spatial map at its own resolution, upsampled without gradient sharpening:
    coarse, but a feature firing on the whole background shows up everywhere there.
``gradient``
    The map sharpened by input-gradient saliency (:func:`tasks.viz.heatmap.
    gradient_refined_heatmaps`): sharp on marks, misleading on textures (measured only).

Each map is shown above ``floor`` of its peak (:func:`tasks.viz.heatmap.normalize_maps`); the
*contrast* of a map is the feature with its highlighted region removed vs only that region kept
(:func:`tasks.viz.perturb.contrast`), which tells a reader which map to trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tasks.viz.evidence import image_evidence
from tasks.viz.heatmap import (
    channel_heatmaps,
    gradcam_heatmaps,
    gradient_refined_heatmaps,
    normalize_maps,
    occlusion_heatmaps,
)
from tasks.viz.lime import lime_maps
from tasks.viz.perturb import Contrast, colour_kept, contrast, detail_kept, feature_scorer
from tasks.viz.source import ExampleSource

__all__ = ["HIT_PANELS", "MAP_PANELS", "PanelEvidence", "panel_evidence"]

#: Every map panel that can be computed.
MAP_PANELS: tuple[str, ...] = ("lime", "activation", "gradient")
#: The map panels a HIT shows (chosen from the measurements of measure_evidence.py).
HIT_PANELS: tuple[str, ...] = ("lime", "activation")


@dataclass
class PanelEvidence:
    """The map panels of one feature on its shown images.

    Attributes
    ----------
    shown : dict of str to ndarray (k, H, W)
        Each panel's map as shown, in ``[0, 1]`` (above ``floor`` of each image's peak).
    contrast : dict of str to Contrast
        The feature with each map's highlighted region removed / kept.
    removed, kept : dict of str to Tensor (k, 3, H, W)
        The contrast images of each map.
    evidence : dict of str to dict
        With ground truth: each map's shares (:func:`tasks.viz.evidence.image_evidence`) plus
        its contrast numbers ``removed``, ``kept``, ``area``.
    colour : float or None
        Share of the feature left on the shown images in greyscale
        (:func:`tasks.viz.perturb.colour_kept`; None where the signed feature is not
        positive on them).
    detail : float or None
        Share of the feature left on the shown images blurred
        (:func:`tasks.viz.perturb.detail_kept`; None as ``colour``).
    """

    shown: dict[str, np.ndarray] = field(default_factory=dict)
    contrast: dict[str, Contrast] = field(default_factory=dict)
    removed: dict[str, torch.Tensor] = field(default_factory=dict)
    kept: dict[str, torch.Tensor] = field(default_factory=dict)
    evidence: dict[str, dict] = field(default_factory=dict)
    colour: float | None = None
    detail: float | None = None


def _raw_map(src: ExampleSource, panel: str, x: torch.Tensor, feature: int, weight: float,
             score, lime_samples: int, n_segments: int, seed: int) -> np.ndarray | None:
    k, size = len(x), tuple(x.shape[-2:])
    sign = 1.0 if weight >= 0 else -1.0
    if panel == "lime":
        if lime_samples <= 0:
            return None
        m, _ = lime_maps(score, x, n_samples=lime_samples, n_segments=n_segments, seed=seed)
        return m
    if panel == "gradient":
        if src.spatial is None:
            return None
        g = gradient_refined_heatmaps(src.spatial, x, [feature] * k, [weight] * k)
        return None if g is None else g.detach().float().cpu().numpy()
    if panel == "activation":
        if src.spatial is not None:
            with torch.no_grad():
                sm = src.spatial(x)[:, feature].detach().float().cpu()
            return channel_heatmaps(sm, size, sign).numpy()
        if src.features is None:
            return None
        if src.gradcam_layer is not None:
            m = gradcam_heatmaps(src.features, src.gradcam_layer, x, feature, sign)
        else:
            m = occlusion_heatmaps(src.features, x, feature, sign)
        return m.detach().float().cpu().numpy()
    raise ValueError(f"unknown panel {panel!r}; expected one of {', '.join(MAP_PANELS)}")


def panel_evidence(src: ExampleSource, rows: Sequence[int] | np.ndarray, feature: int,
                   weight: float, *, panels: Sequence[str] = HIT_PANELS,
                   device: torch.device | str | None = None, floor: float = 0.5,
                   lime_samples: int = 96, n_segments: int = 48, seed: int = 0,
                   object_masks: np.ndarray | None = None,
                   cue_masks: dict[str, np.ndarray] | None = None) -> PanelEvidence:
    """Compute the map panels of ``feature`` on the examples ``rows`` of ``src``.

    Parameters
    ----------
    src : ExampleSource
        An image source with ``spatial`` maps or a ``features`` function.
    rows : sequence of int
        The shown examples.
    feature : int
    weight : float
        The class weight (its sign: negative weights show where the feature is lowest).
    panels : sequence of str
        Names from :data:`MAP_PANELS`; a panel the source cannot give is left out.
    floor : float
        Each map shows the part above this fraction of its peak.
    lime_samples, n_segments : int
        Perturbations and superpixels per image of the LIME panel (0 samples: no LIME panel).
    seed : int
    object_masks, cue_masks : optional
        Ground truth of the shown examples ((k, H, W) each; default: ``src``'s masks of
        ``rows``); with it :attr:`PanelEvidence.evidence` is filled.

    Returns
    -------
    PanelEvidence
    """
    rows = np.asarray(rows, np.int64)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = src.images[rows].to(dev)
    k = len(rows)
    score = feature_scorer([feature] * k, [weight] * k, spatial=src.spatial,
                           pooled=src.features)
    if object_masks is None and src.object_masks is not None:
        object_masks = src.object_masks[rows]
        cue_masks = {n: m[rows] for n, m in sorted(src.cue_masks.items())}
    colour = colour_kept(score, x)
    detail = detail_kept(score, x)
    out = PanelEvidence(colour=None if colour is None else round(colour, 4),
                        detail=None if detail is None else round(detail, 4))
    for panel in panels:
        raw = _raw_map(src, panel, x, feature, weight, score, lime_samples, n_segments, seed)
        if raw is None:
            continue
        shown = normalize_maps(raw, floor=floor)
        out.shown[panel] = shown
        c, removed, kept = contrast(score, x, shown > 0)
        out.contrast[panel], out.removed[panel], out.kept[panel] = c, removed.cpu(), kept.cpu()
        if object_masks is not None:
            ev = image_evidence(shown, object_masks, cue_masks or {})
            out.evidence[panel] = {**ev, **c.as_dict()}
    return out
