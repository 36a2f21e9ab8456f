"""Ground truth of an image HIT by intervention: how much of the feature goes when the data's
generator leaves a region out.

The map-based truth (:func:`tasks.viz.evidence.truth_from_evidence`) reads the same maps the
simulated crowd reads, so it cannot tell whether the reader trusted the right map. This truth
uses no attribution map at all: the built-in generator redraws each shown image without the
object, without each planted cue and without all cues of one kind
(:func:`sparse_probe.datasets.shapes.render_without`; every other pixel identical), and the
feature is measured on the redrawn images. With ``f`` the feature's signed value (the sign of
its class weight) and the means taken over the HIT's shown images,

    drop(region) = 1 - mean f(image without region) / mean f(image),

the share of the feature that the region carries (it can exceed 1 or be negative when the
feature goes below zero or rises without the region). The truth is the region whose removal
takes the largest share, if that share is at least :data:`REMOVAL_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["PARTIAL_SHARE", "REMOVAL_THRESHOLD", "feature_removal", "removal_effects",
           "truth_from_removal"]

#: Share of a feature a region must carry (its removal takes at least this share away) to be
#: the feature's pattern: at least half, so at most one region can qualify by itself.
REMOVAL_THRESHOLD = 0.5
#: A cue carrying at least this share of a feature is part of what the feature responds to
#: even when the object carries more (a feature of the object *and* a cue); the benchmark
#: reports findings against both this and :data:`REMOVAL_THRESHOLD`.
PARTIAL_SHARE = 0.2


def removal_effects(score: Callable[[torch.Tensor, np.ndarray], np.ndarray],
                    images: torch.Tensor,
                    without: Callable[[frozenset[str]], torch.Tensor],
                    cue_kinds: Mapping[str, str]) -> dict:
    """The share of the feature each region carries on the shown images.

    Parameters
    ----------
    score : callable
        ``score(images (k, 3, H, W), which (k,)) -> (k,)``, the signed feature per image
        (:func:`tasks.viz.perturb.feature_scorer`).
    images : Tensor (k, 3, H, W)
        The shown images.
    without : callable
        ``without(regions) -> (k, 3, H, W)``: the shown images redrawn without ``regions``.
    cue_kinds : mapping
        Planted cue name -> kind (``"mark"``, ``"background"``).

    Returns
    -------
    dict
        ``{"object": drop, "cues": {cue: drop}, "kinds": {kind: drop}}`` where a kind's drop
        removes all its cues at once (the same as the cue's own for a kind with one cue).
        All zero when the feature's mean signed value on the shown images is not positive
        (nothing to take away: e.g. a feature shown where it is lowest).
    """
    which = np.arange(len(images))
    base = float(np.mean(score(images, which))) if len(images) else 0.0
    kinds: dict[str, list[str]] = {}
    for cue, kind in cue_kinds.items():
        kinds.setdefault(kind, []).append(cue)
    if base <= 0:
        return {"object": 0.0, "cues": {c: 0.0 for c in cue_kinds},
                "kinds": {k: 0.0 for k in kinds}}

    def drop(regions: Sequence[str]) -> float:
        return float(1.0 - np.mean(score(without(frozenset(regions)), which)) / base)

    cues = {c: drop([c]) for c in cue_kinds}
    return {"object": drop(["object"]), "cues": cues,
            "kinds": {k: (cues[cs[0]] if len(cs) == 1 else drop(cs)) for k, cs in kinds.items()}}


def truth_from_removal(effects: Mapping, threshold: float = REMOVAL_THRESHOLD) -> str:
    """``"core"`` when removing the object takes the largest share of the feature,
    ``"spurious:<kind>"`` when removing that kind's cues does, provided the share is at least
    ``threshold``; ``"none"`` otherwise (no region carries the feature by itself). Ties go to
    the object."""
    shares = {"core": float(effects.get("object") or 0.0)}
    shares.update({f"spurious:{k}": float(v or 0.0)
                   for k, v in (effects.get("kinds") or {}).items()})
    best = max(shares, key=lambda k: (shares[k], k == "core"))
    return best if shares[best] >= threshold else "none"


def feature_removal(src, rows: Sequence[int] | np.ndarray, feature: int, weight: float,
                    device: torch.device | str | None = None) -> dict | None:
    """The truth by intervention of one HIT of an :class:`~tasks.viz.source.ExampleSource`
    whose data can be redrawn (``src.without``): ``{"removal": {"object": f, "cues":
    {cue: f}, "kinds": {kind: f}}, "truth": str}`` rounded to 4 digits, or None when the
    source cannot redraw its images or the feature is not positive on the shown images
    ``rows`` (signed by ``weight``)."""
    from tasks.viz.perturb import feature_scorer

    if src.without is None:
        return None
    rows = np.asarray(rows, np.int64)
    k = len(rows)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    score = feature_scorer([feature] * k, [weight] * k, spatial=src.spatial,
                           pooled=src.features)
    eff = removal_effects(score, src.images[rows].to(dev),
                          lambda regions: src.without(regions, rows).to(dev), src.cue_kind)
    if not eff["object"] and not any(eff["cues"].values()):
        return None
    removal = {"object": round(eff["object"], 4),
               "cues": {c: round(v, 4) for c, v in eff["cues"].items()},
               "kinds": {c: round(v, 4) for c, v in eff["kinds"].items()}}
    return {"removal": removal, "truth": truth_from_removal(eff)}
