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
    "AGREEING_SHARE",
    "CUE_KIND_WORDS",
    "DETAIL_LEFT",
    "GOLD_ANSWERS",
    "NECESSARY_LEFT",
    "SUFFICIENT_KEPT",
    "SUFFICIENT_OBJECT",
    "agreeing_cue",
    "backdrop_unneeded",
    "backed_cue_map",
    "colour_cue",
    "cue_backed_by_contrast",
    "cue_kind",
    "detail_cue",
    "dominant_region",
    "dominant_share",
    "gold_answer",
    "image_evidence",
    "object_backed",
    "panel_faithfulness",
    "reader_evidence",
    "text_evidence",
    "trusted_panel",
    "truth_from_evidence",
]

#: Words in a cue's name and the kind of cue they say (the simulated crowd answers the kind).
CUE_KIND_WORDS = {"watermark": "mark", "mark": "mark", "logo": "mark", "corner": "mark",
                  "stripe": "mark", "texture": "background", "background": "background",
                  "tint": "background", "identity": "identity"}


def cue_kind(name: str) -> str:
    """The kind of cue (``"mark"``, ``"background"``, ``"identity"``, else ``"other"``) a
    cue's name says (:data:`CUE_KIND_WORDS`), as the simulated crowd answers it."""
    low = name.lower()
    for word, kind in CUE_KIND_WORDS.items():
        if word in low:
            return kind
    return "other"


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
    """``"core"`` if the object holds at least ``threshold`` of the mass and more than any
    kind of cue; ``"spurious:<kind>"`` if the cues of one kind (``cue_kinds[name]``: mark,
    background, identity) together do; ``"none"`` if nothing does.

    The shares of cues of one kind add up because a HIT asks for the kind, not the cue: a
    feature with 0.45 of its mass on a border stripe and 0.22 on a watermark is a feature of
    marks (0.67), which is what a careful reader answers."""
    shares = {"object": float(evidence["object"])}
    for name, share in (evidence.get("cues") or {}).items():
        kind = f"spurious:{cue_kinds.get(name, name)}"
        shares[kind] = shares.get(kind, 0.0) + float(share or 0.0)
    best = max(shares, key=lambda k: (shares[k], k == "object"))
    if shares[best] < threshold:
        return "none"
    return "core" if best == "object" else best


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


#: A region dominates a map when it holds this share of the mass and this many times the
#: runner-up (the simulated crowd's reading, :func:`tasks.simulate.evidence_answer`).
DOMINANT_SHARE, DOMINANT_MARGIN = 0.4, 1.5
#: A cue the maps leave open is still plain to see in the images when it is in at least this
#: share of the top images and this much more often there than in the class's
#: least-activating images (the least-activating panel).
IMAGE_CUE_TOP, IMAGE_CUE_GAP = 0.8, 0.5


def dominant_region(evidence: Mapping, share: float = DOMINANT_SHARE,
                    margin: float = DOMINANT_MARGIN) -> str | None:
    """``"object"`` or the cue name holding a clear majority of the mass, else None (also
    when the unassigned rest is the largest part)."""
    shares = {"object": float(evidence.get("object") or 0.0)}
    shares.update({n: float(v or 0.0) for n, v in (evidence.get("cues") or {}).items()})
    rest = float(evidence.get("background") or 0.0)
    total = sum(shares.values()) + rest
    ranked = sorted([*shares.items(), ("\0rest", rest)], key=lambda kv: kv[1], reverse=True)
    (top, v), second = ranked[0], (ranked[1][1] if len(ranked) > 1 else 0.0)
    if top == "\0rest" or total <= 0 or v / total < share or v < margin * second:
        return None
    return top


#: Share of a map's mass the cue must hold in every map for :func:`agreeing_cue`: the share
#: at which the ground truth calls a feature that cue's (:func:`truth_from_evidence`).
AGREEING_SHARE = 0.5


def agreeing_cue(panels: Mapping[str, Mapping] | None,
                 share: float = AGREEING_SHARE) -> str | None:
    """The cue that every one of at least two map panels puts the largest share of its mass
    on, with at least ``share`` of it in each, else None.

    Maps computed independently (LIME's perturbations, the feature's own activation map) that
    agree on a cue holding half of the highlight settle what the feature shares even when the
    object holds most of the rest (a feature of the object *and* a cue, common in small
    models: e.g. texture 0.54 / ring 0.46 in one map and 0.55 / 0.45 in the other), where one
    map alone would leave it open.
    """
    items = [p for p in (panels or {}).values() if p]
    if len(items) < 2:
        return None
    tops = set()
    for p in items:
        regions = {"\0object": float(p.get("object") or 0.0),
                   "\0rest": float(p.get("background") or 0.0)}
        regions.update({c: float(v or 0.0) for c, v in (p.get("cues") or {}).items()})
        total = sum(regions.values())
        top = max(regions, key=lambda r: regions[r])
        if top.startswith("\0") or total <= 0 or regions[top] / total < share:
            return None
        tops.add(top)
    return tops.pop() if len(tops) == 1 else None


#: A careful reader names a cue as a feature's pattern only where a map whose highlighted
#: region is mainly that cue shows that removing the region leaves at most this share of the
#: feature (the region is necessary: the share at which the ground truth by intervention
#: calls a region the feature's pattern, :data:`tasks.viz.intervention.REMOVAL_THRESHOLD`,
#: it carries at least half) ...
NECESSARY_LEFT = 0.5
#: ... or that keeping only the region keeps at least this share of it (the region is
#: sufficient: painting a tinted background grey is no neutral removal for a colour feature,
#: while keeping the background alone shows it carries the feature) ...
SUFFICIENT_KEPT = 0.9
#: ... where the object holds at most this share of the map's mass: a sufficient region that
#: takes in a good part of the object says nothing about the cue (two held-out ring features
#: that a watermark carries 15-17% of kept 93-97% with a LIME region of 0.57-0.61 watermark,
#: 0.27-0.30 object). The share under which a part is minor, as the truth's
#: :data:`~tasks.viz.intervention.PARTIAL_SHARE`.
SUFFICIENT_OBJECT = 0.2


def cue_backed_by_contrast(cue: str, panels: Mapping[str, Mapping] | None,
                           left: float = NECESSARY_LEFT, kept: float = SUFFICIENT_KEPT,
                           share: float = AGREEING_SHARE,
                           object_share: float = SUFFICIENT_OBJECT) -> bool:
    """Whether some map panel highlights mainly ``cue`` (at least ``share`` of its mass and
    more than the object or the rest) and its contrast numbers say the highlighted region
    carries the feature: removing it leaves at most ``left`` of the feature (``removed``), or
    keeping only it keeps at least ``kept`` while the object holds at most ``object_share``
    of the map, for a background cue (a panel whose ``kept`` is not positive has no contrast
    to read). Sufficiency stands in for necessity only for a backdrop, whose grey fill is no
    neutral removal of its colour; a mark's region is removed by copying its surroundings
    over it (:func:`tasks.viz.perturb.fill_from_surround`), so a mark whose removal leaves
    most of the feature is not its pattern, however much of it the mark alone keeps (a
    held-out cross feature, seed 43, that a watermark carries 0.09 of: its LIME region, 0.91
    watermark, kept 1.00 of it alone and left 0.92 removed). A cue seen
    in the maps or the images without such a contrast is a cue the feature merely co-occurs
    with or responds to in part (e.g. 0.2 of an object feature's value comes from a watermark
    that its top images all show), which a careful reader does not call the feature's
    pattern."""
    for p in (panels or {}).values():
        k = float((p or {}).get("kept") or 0.0)
        if k <= 0:
            continue
        necessary = float(p.get("removed", 1.0)) <= left
        if not necessary and (k < kept or cue_kind(cue) != "background"):
            continue  # neither necessary nor (for a backdrop) sufficient
        on = float((p.get("cues") or {}).get(cue) or 0.0)
        obj = float(p.get("object") or 0.0)
        total = (obj + float(p.get("background") or 0.0)
                 + sum(float(v or 0.0) for v in (p.get("cues") or {}).values()))
        if total <= 0 or (not necessary and obj > object_share * total):
            continue  # only sufficient, and much of the object in the region
        if on / total >= share and on >= max(obj, float(p.get("background") or 0.0)):
            return True
    return False


def backed_cue_map(panels: Mapping[str, Mapping] | None) -> str | None:
    """The cue that some map panel clearly shows (:func:`dominant_region`) with contrast
    numbers that back it (:func:`cue_backed_by_contrast` on that map alone), when exactly one
    cue is so shown, else None.

    A reader whose trusted map leaves the pattern open (a coarse map spills a thin cue, e.g. a
    bar along one edge, into the background around it) still sees a sharper map that puts
    the cue first and whose region, removed, takes most of the feature: that is the pattern.
    """
    cues = set()
    for name, p in (panels or {}).items():
        if not p:
            continue
        top = dominant_region(p)  # it reads only the shares
        if top not in (None, "object") and cue_backed_by_contrast(top, {name: p}):
            cues.add(top)
    return cues.pop() if len(cues) == 1 else None


#: A map's region that holds at least this share of a colour cue's mass takes the colour with
#: it when grey-filled, so its removal does not show it more necessary than the colour
#: (:func:`colour_cue`): the share under which a part is minor, as the truth's
#: :data:`~tasks.viz.intervention.PARTIAL_SHARE`.
COLOUR_IN_REGION = 0.2


def colour_cue(colour: float | None, panels: Mapping[str, Mapping] | None,
               images: Mapping[str, Mapping[str, float]] | None,
               left: float = NECESSARY_LEFT, top_share: float = IMAGE_CUE_TOP,
               in_region: float = COLOUR_IN_REGION) -> str | None:
    """The cue a careful reader names when a feature needs the images' colour but not the
    region its maps highlight, else None.

    The greyscale line of a HIT (``colour``, :func:`tasks.viz.perturb.colour_kept`) says how
    much of the feature is left without colour. When that is at most ``left`` (the colour is
    necessary, the share at which the truth by intervention calls a region the pattern), the
    pattern is a colour the top images share: the one cue shown in at least ``top_share`` of
    them (``images["top"]``), when exactly one is, unless a map's highlighted region is more
    necessary (leaves less of the feature removed than greyscale does: the maps show the
    pattern). A region that holds at least ``in_region`` of that cue's mass does not count:
    grey-filling it greys the colour cast around the object's edge too (held-out tint=circle
    features, seeds 25 and 32: LIME regions of 0.40-0.41 tint whose removal left 0.22-0.24,
    where greyscale left 0.41-0.46 and redrawing the images without the tint took 0.50-0.57
    of the feature, without the object 0.05-0.23).
    """
    if colour is None or colour > left or not panels or not images:
        return None
    shared = [c for c, r in (images.get("top") or {}).items() if float(r) >= top_share]
    if len(shared) != 1:
        return None
    for p in panels.values():
        k = float((p or {}).get("kept") or 0.0)
        on_cue = float(((p or {}).get("cues") or {}).get(shared[0]) or 0.0)
        if k > 0 and float(p.get("removed", 1.0)) < colour and on_cue < in_region:
            return None  # a map's region, apart from the colour, is more necessary
    return shared[0]


#: A careful reader names a background cue from the blur line (:func:`detail_cue`) when the
#: blurred images keep at most this share of the feature: the share at which the truth by
#: intervention calls a region the pattern (:data:`NECESSARY_LEFT`).
DETAIL_LEFT = NECESSARY_LEFT


def detail_cue(detail: float | None, panels: Mapping[str, Mapping] | None,
               images: Mapping[str, Mapping[str, float]] | None,
               left: float = DETAIL_LEFT, top_share: float = IMAGE_CUE_TOP,
               in_region: float = COLOUR_IN_REGION) -> str | None:
    """The background cue a careful reader names when a feature needs the images' fine detail
    but not the region its maps highlight, else None.

    The blur line of a HIT (``detail``, :func:`tasks.viz.perturb.detail_kept`: the share of
    the feature left when the shown images are blurred) says how much of it survives without
    fine texture. When that is at most ``left``, the pattern is a texture the top images
    share: the one cue of kind background (a textured or coloured backdrop, not a mark) shown
    in at least ``top_share`` of them (``images["top"]``), when exactly one is, unless a map's
    highlighted region that holds less than ``in_region`` of that cue is more necessary
    (leaves less of the feature removed than the blur does: the maps show the pattern).

    Where the maps split a feature between a textured background and the object about evenly,
    the blur separates them (``benchmarks/measure_detail.py``, results in
    ``benchmarks/results/audit-intervention-cpu-2026-12-02.txt``): over the 60 kept audit runs
    of seeds 34-39 the blur (σ of 1 pixel at 64 pixels) kept at most 0.45 of each of the 51
    features that the texture carries at least half of (by the truth), more than 0.5 of 574
    of the 577 features whose top images are not mostly textured, and 0.68 and 1.22 of the two
    features of textured top images that the texture carries under a fifth of; on seeds 40-41,
    held out, at most 0.44 of the 22 texture features. Marks are left out: a blur also dims a
    small mark and a star's points (object features whose top images share a watermark kept
    0.48-0.55).
    """
    if detail is None or detail > left or not images:
        return None
    shared = [c for c, r in (images.get("top") or {}).items()
              if float(r) >= top_share and cue_kind(c) == "background"]
    if len(shared) != 1:
        return None
    for p in (panels or {}).values():
        k = float((p or {}).get("kept") or 0.0)
        on_cue = float(((p or {}).get("cues") or {}).get(shared[0]) or 0.0)
        if k > 0 and float(p.get("removed", 1.0)) < detail and on_cue < in_region:
            return None  # a map's region, apart from the texture, is more necessary
    return shared[0]


def _only(cue: str, names) -> dict:
    """Evidence that shows ``cue`` and nothing else (every other cue of ``names`` at 0)."""
    return {"object": 0.0, "cues": {c: float(c == cue) for c in names}, "background": 0.0}


def reader_evidence(evidence: Mapping | None, panels: Mapping[str, Mapping] | None,
                    images: Mapping[str, Mapping[str, float]] | None = None,
                    colour: float | None = None, detail: float | None = None) -> Mapping | None:
    """The evidence a careful reader of a HIT takes from it (:func:`_seen`), except that a
    cue it would name is kept only when a map's contrast backs it
    (:func:`cue_backed_by_contrast`) and no map's contrast backs the object instead
    (:func:`object_backed`); otherwise the reader sees no single pattern
    (``{"object": 0, "cues": {...: 0}, "background": 1}``), as it does for a background cue
    that neither the greyscale nor the blur line shows needed (:func:`backdrop_unneeded`).
    Before the maps, the greyscale line (``colour``) may name a colour the top images share
    (:func:`colour_cue`), and the blur line (``detail``) a background texture they share
    (:func:`detail_cue`). HITs without panels (older manifests, text) are read as before."""
    if panels:
        hue = colour_cue(colour, panels, images)
        if hue is None:
            hue = detail_cue(detail, panels, images)
        if hue is not None:
            names = set((images or {}).get("top") or {})
            for p in panels.values():
                names.update((p or {}).get("cues") or {})
            return _only(hue, sorted(names))
    seen = _seen(evidence, panels, images)
    if not panels or seen is None:
        return seen
    name = dominant_region(seen)
    if name is None or name == "object":
        return seen
    if (not backdrop_unneeded(name, colour, detail) and cue_backed_by_contrast(name, panels)
            and not object_backed(panels)):
        return seen
    return {"object": 0.0, "cues": {c: 0.0 for c in seen.get("cues") or {}},
            "background": 1.0}


def backdrop_unneeded(cue: str, colour: float | None, detail: float | None,
                      left: float = NECESSARY_LEFT) -> bool:
    """Whether a HIT's two whole-image lines say a background cue is not the pattern: the
    feature keeps more than ``left`` of itself both in greyscale (``colour``) and blurred
    (``detail``), so neither the colour of the backdrop nor its fine texture carries half of
    it (the background cues a careful reader names are colour casts and textures). False for
    cues of other kinds and where a line is missing.

    A held-out ring feature (seed 42) that the texture carries 0.20 of and the object 0.84,
    whose activation map put 0.61 on the texture with a removal leaving 0.44, kept 0.98 in
    greyscale and 0.67 blurred. Over the 100 kept audit runs of seeds 34-43, 2 of the 173
    features that a background cue carries at least half of keep more than half in both: two
    tint features carried 0.50 and 0.51 whose greyscale lines left 0.51 (missed with or
    without this rule).
    """
    return (cue_kind(cue) == "background" and colour is not None and detail is not None
            and colour > left and detail > left)


def object_backed(panels: Mapping[str, Mapping] | None, left: float = NECESSARY_LEFT) -> bool:
    """Whether some map panel clearly shows the object (:func:`dominant_region`) and its
    region, removed, takes most of the feature (leaves at most ``left``; a panel whose
    ``kept`` is not positive has no contrast to read), and the maps together, each weighted
    by how much of the feature its region carries, clearly put it on the object
    (:func:`weighed_maps`).

    Such a map contradicts any cue another map or the images suggest: a careful reader who
    sees one map put the feature on the object, with a contrast that backs it, and another put
    it on a cue, names no single pattern (a held-out cross feature, 0.89 object and 0.18
    texture by the truth, had a LIME map 0.79 object whose removal left 0.33, an activation
    map split 0.52 texture / 0.48 object whose removal left 0.24, and every top image
    textured: read as texture, a false alarm). Unless the map on the cue weighs as much: on a
    textured background, grey-filling the object leaves a hole in the texture, so an object
    map also backs features of the texture (held-out square, circle and square features of
    texture 0.64-0.70 and object 0.02-0.20 by the truth: LIME maps 0.64-0.67 texture whose
    removal left 0.22-0.36, activation maps 0.66-0.77 object whose removal left 0.39-0.48;
    weighed, 0.97-1.11 times as much object as texture, where the two cross features above
    weigh about 1.7 and 1.9 times).
    """
    backing = any(p and float(p.get("kept") or 0.0) > 0 and dominant_region(p) == "object"
                  and p.get("removed") is not None and float(p["removed"]) <= left
                  for p in (panels or {}).values())
    return backing and dominant_region(weighed_maps(panels)) == "object"


def weighed_maps(panels: Mapping[str, Mapping] | None) -> dict:
    """The map panels' shares added up, each weighted by the share of the feature its region
    carries (``1 - removed``, at least 0; a panel without contrast or a removal weighs
    nothing).

    Returns
    -------
    dict
        ``{"object": float, "cues": {name: float}, "background": float}``: sums of
        ``(1 - removed) * share`` over the panels (not normalized; :func:`dominant_region`
        reads them as parts of their total).
    """
    out: dict = {"object": 0.0, "cues": {}, "background": 0.0}
    for p in (panels or {}).values():
        if not p or float(p.get("kept") or 0.0) <= 0 or p.get("removed") is None:
            continue
        w = max(1.0 - float(p["removed"]), 0.0)
        out["object"] += w * float(p.get("object") or 0.0)
        out["background"] += w * float(p.get("background") or 0.0)
        for c, v in (p.get("cues") or {}).items():
            out["cues"][c] = out["cues"].get(c, 0.0) + w * float(v or 0.0)
    return out


def _seen(evidence: Mapping | None, panels: Mapping[str, Mapping] | None,
          images: Mapping[str, Mapping[str, float]] | None = None) -> Mapping | None:
    """The evidence a careful reader of a HIT takes from it.

    The shares of the trusted map panel (:func:`trusted_panel`) when the HIT has panels, else
    ``evidence``. When no region dominates them but every map agrees on a cue holding half
    of its mass (:func:`agreeing_cue`), the reader sees that cue: ``{"object": 0, "cues":
    {cue: 1, ...: 0}, "background": 0}``. Else, when another map clearly shows one cue and its
    own contrast backs it (:func:`backed_cue_map`), the reader sees that cue. Else, when no
    region dominates them
    (:func:`dominant_region`) and ``images`` (``{"top": {cue: share of the top images
    showing it}, "least": {cue: share of the class's least-activating images showing it}}``)
    says a cue is in most top images and clearly rarer in the least-activating ones (:data:`IMAGE_CUE_TOP`, :data:`IMAGE_CUE_GAP`),
    the reader sees that cue as the shared pattern: ``{"object": 0, "cues": {cue: 1, ...: 0},
    "background": 0}``.
    """
    name = trusted_panel(panels)
    if name is not None:
        p = panels[name]
        evidence = {"object": p["object"], "cues": dict(p.get("cues") or {}),
                    "background": p["background"]}
    if evidence is not None and dominant_region(evidence) is not None:
        return evidence
    agreed = agreeing_cue(panels)
    if agreed is not None:
        return _only(agreed, evidence["cues"])
    backed = backed_cue_map(panels)
    if backed is not None:
        return _only(backed, evidence["cues"])
    if not images:
        return evidence
    top, least = images.get("top") or {}, images.get("least") or {}
    gaps = {c: float(r) - float(least.get(c, 0.0)) for c, r in top.items()
            if float(r) >= IMAGE_CUE_TOP}
    seen = [c for c, g in sorted(gaps.items(), key=lambda kv: -kv[1]) if g >= IMAGE_CUE_GAP]
    if not seen:
        return evidence
    return _only(seen[0], top)
