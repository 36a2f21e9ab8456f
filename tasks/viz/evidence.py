"""Ground-truth evidence of a HIT on built-in datasets, and the truth and gold answer it implies.

``evidence`` is the share of the shown attribution mass that falls on the object mask, on each
planted cue's mask, and elsewhere (images); or on class words, on identity terms, and on the
rest (text). Each example's map is normalized to unit mass first, so every shown example counts
equally; the shares are the mean over examples with non-zero mass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "GOLD_ANSWERS",
    "dominant_share",
    "gold_answer",
    "image_evidence",
    "panel_faithfulness",
    "reader_evidence",
    "text_evidence",
    "trusted_panel",
    "truth_from_evidence",
]

#: Gold answer (form values) implied by each truth.
GOLD_ANSWERS: dict[str, dict[str, str]] = {
    "core": {"shared": "yes", "pattern": "object"},
    "spurious:mark": {"shared": "yes", "pattern": "mark"},
    "spurious:background": {"shared": "yes", "pattern": "background"},
    "spurious:identity": {"shared": "yes", "pattern": "identity"},
    "none": {"shared": "no", "pattern": "other"},
}


def image_evidence(heat: np.ndarray, object_masks: np.ndarray,
                   cue_masks: Mapping[str, np.ndarray] | None = None) -> dict:
    """Shares of heatmap mass on the object, on each cue, and on the rest.

    Parameters
    ----------
    heat : ndarray of shape (n, H, W), non-negative
    object_masks : bool ndarray of shape (n, H, W)
    cue_masks : mapping name -> bool ndarray (n, H, W)
        Pixels already counted for the object (or an earlier cue) are not counted again.

    Returns
    -------
    dict
        ``{"object": f, "cues": {name: f}, "background": f}``; shares sum to 1 (all zero when
        no example has heat).
    """
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, None)
    n = len(h)
    taken = np.zeros(h.shape, bool)
    regions: list[tuple[str, np.ndarray]] = []
    for name, m in [("object", object_masks), *((cue_masks or {}).items())]:
        m = np.asarray(m, bool)
        if m.shape != h.shape:
            raise ValueError(f"mask {name!r} has shape {m.shape}, heatmaps {h.shape}")
        regions.append((name, m & ~taken))
        taken |= m
    mass = h.reshape(n, -1).sum(1)
    keep = mass > 0
    shares = {}
    for name, m in regions:
        per = (h * m).reshape(n, -1).sum(1)
        shares[name] = float(np.mean(per[keep] / mass[keep])) if keep.any() else 0.0
    rest = float(max(0.0, 1.0 - sum(shares.values()))) if keep.any() else 0.0
    return {"object": shares.pop("object"), "cues": shares, "background": rest}


def text_evidence(attributions: Sequence[np.ndarray], token_kinds: Sequence[Sequence[str]],
                  class_kinds: Sequence[str]) -> dict:
    """Shares of positive token attribution on class words, identity terms and the rest.

    Parameters
    ----------
    attributions : list of ndarray (t_i,)
        Per-token attribution of each shown text.
    token_kinds : list of list of str
        Kind of each token (``"insult"``, ``"identity:religion"``, ...).
    class_kinds : sequence of str
        Kinds that count as class words (e.g. ``["insult"]``).

    Returns
    -------
    dict
        ``{"object": f, "cues": {"identity": f}, "background": f}``.
    """
    cls = set(class_kinds)
    obj, ident, used = [], [], 0
    for a, kinds in zip(attributions, token_kinds, strict=True):
        a = np.clip(np.asarray(a, dtype=np.float64), 0, None)
        if len(a) != len(kinds):
            raise ValueError("text_evidence: attributions and token kinds differ in length")
        total = a.sum()
        if total <= 0:
            continue
        used += 1
        is_id = np.array([str(k).startswith("identity") for k in kinds], bool)
        is_cls = np.array([str(k) in cls for k in kinds], bool) & ~is_id
        obj.append(a[is_cls].sum() / total)
        ident.append(a[is_id].sum() / total)
    if not used:
        return {"object": 0.0, "cues": {"identity": 0.0}, "background": 0.0}
    o, i = float(np.mean(obj)), float(np.mean(ident))
    return {"object": o, "cues": {"identity": i}, "background": max(0.0, 1.0 - o - i)}


def dominant_share(evidence: Mapping) -> tuple[str, float]:
    """The region ("object" or a cue name) with the largest share, and that share."""
    best = ("object", float(evidence["object"]))
    for name, share in evidence.get("cues", {}).items():
        if share > best[1]:
            best = (name, float(share))
    return best


def truth_from_evidence(evidence: Mapping, cue_kinds: Mapping[str, str],
                        threshold: float = 0.5) -> str:
    """``"core"`` if the object holds at least ``threshold`` of the mass and more than any cue;
    ``"spurious:<kind>"`` if a cue does (``cue_kinds[name]``: mark, background, identity);
    ``"none"`` if nothing does."""
    name, share = dominant_share(evidence)
    if share < threshold:
        return "none"
    if name == "object":
        return "core"
    return f"spurious:{cue_kinds.get(name, name)}"


def gold_answer(truth: str | None) -> dict[str, str] | None:
    """Form answers ``{"shared", "pattern"}`` a careful worker gives for ``truth``."""
    return None if truth is None else dict(GOLD_ANSWERS[truth])


def panel_faithfulness(panel: Mapping) -> float:
    """How well a map's highlighted region explains its feature, from the contrast numbers a
    HIT shows: the share of the feature kept with only that region minus the share left with
    it removed (1: the region is the whole story; 0 or less: the map points elsewhere)."""
    return float(panel.get("kept", 0.0)) - float(panel.get("removed", 1.0))


#: Maps whose faithfulness is within this of the best one explain the feature as well.
FAITHFUL_TOLERANCE = 0.15


def trusted_panel(panels: Mapping[str, Mapping] | None,
                  tolerance: float = FAITHFUL_TOLERANCE) -> str | None:
    """The map panel a careful reader trusts: among the maps whose contrast numbers say their
    highlighted region explains the feature about as well as the best one
    (:func:`panel_faithfulness` within ``tolerance`` of the best), the one that highlights
    the smallest region (``area``), i.e. the most precise of the faithful maps; ties: the
    first. None without panels."""
    items = list((panels or {}).items())
    if not items:
        return None
    best = max(panel_faithfulness(p) for _, p in items)
    faithful = [(float(p.get("area", 1.0)), i, name) for i, (name, p) in enumerate(items)
                if panel_faithfulness(p) >= best - tolerance]
    return min(faithful)[2]


def reader_evidence(evidence: Mapping | None, panels: Mapping[str, Mapping] | None
                    ) -> Mapping | None:
    """The evidence a careful reader of a HIT takes from it: the shares of the trusted map
    panel (:func:`trusted_panel`) when the HIT has panels, else ``evidence``."""
    name = trusted_panel(panels)
    if name is None:
        return evidence
    p = panels[name]
    return {"object": p["object"], "cues": dict(p.get("cues") or {}),
            "background": p["background"]}
