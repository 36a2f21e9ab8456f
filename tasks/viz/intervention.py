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
feature goes below zero or rises without the region). The truth is the kind of cue whose
removal takes at least :data:`REMOVAL_THRESHOLD` of the feature, else the object if its removal
does (:func:`truth_from_removal`).

Text (:func:`text_removal`): the regions are the words of each ground-truth kind of the
built-in corpus (the class's own words, e.g. insults, as the "object"; identity terms as the
cue), deleted from the shown comments or appended to ordinary ones; the share is of the
feature's departure from an ordinary comment (its median), as in the HIT's contrast panel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["ORDINARY_TEXTS", "PARTIAL_SHARE", "REMOVAL_THRESHOLD", "feature_removal",
           "removal_effects", "text_feature_removal", "text_removal", "truth_from_removal"]

#: Share of a feature a region must carry (its removal takes at least this share away) to be
#: the feature's pattern: at least half.
REMOVAL_THRESHOLD = 0.5
#: A cue carrying at least this share of a feature (but less than :data:`REMOVAL_THRESHOLD`)
#: is part of what the feature responds to (a feature of the object *and* a cue): flagging
#: the feature for it is neither a finding nor a false alarm (the benchmark lists it apart).
PARTIAL_SHARE = 0.2
#: Ordinary comments (the feature nearest its median) that words are appended to.
ORDINARY_TEXTS = 16


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
    """``"spurious:<kind>"`` when a kind of cue carries at least ``threshold`` of the feature
    (the kind carrying most, if several do), else ``"core"`` when the object does, else
    ``"none"`` (no region carries the feature by itself).

    A cue comes first because the audit asks whether a feature relies on a spurious cue: a
    feature that the object and a cue each carry half or more of (an image feature needing
    both, or a text feature that identity terms move as far as insults: insertion shares are
    measured one kind at a time and need not add up to one) relies on the cue as much as on
    the object. Ties between cue kinds go to the kind named first in sorted order."""
    kinds = {str(k): float(v or 0.0) for k, v in (effects.get("kinds") or {}).items()}
    cues = sorted((k for k, v in kinds.items() if v >= threshold),
                  key=lambda k: (-kinds[k], k))
    if cues:
        return f"spurious:{cues[0]}"
    return "core" if float(effects.get("object") or 0.0) >= threshold else "none"


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


def text_removal(encode: Callable, tokens: Sequence[Sequence[str]],
                 token_kinds: Sequence[Sequence[str]], feature: int, weight: float,
                 baseline: float, class_kinds: Sequence[str],
                 ordinary: Sequence[str] = (), cue_words: Sequence[str] = (),
                 class_words: Sequence[str] = (), control_words: Sequence[str] = (),
                 n_words: int | None = None, seed: int = 0) -> dict | None:
    """The truth by intervention of a text HIT, by deletion and by insertion.

    *Deletion*: the shown comments with every word of one kind deleted; the share of their
    departure from an ordinary comment that goes. *Insertion* (the paper's counterfactual,
    feature by feature): words of one kind appended to ordinary comments; the departure they
    add, as a share of the shown comments' departure, less what words of neither kind add
    (``control_words``, the control group of the paper's counterfactual test: a feature that
    every appended word moves, e.g. one that counts words, is no feature of identity terms). A
    region's share is the larger of the two: a feature is the identity terms' if deleting
    them takes half of it from its top comments, or if appending one to an ordinary comment
    moves it half the way to them beyond what any word does.

    Parameters
    ----------
    encode : callable
        ``encode(texts) -> (m, d)`` features.
    tokens, token_kinds : list of list of str
        The shown comments' tokens and each token's ground-truth kind.
    feature : int
    weight : float
        Its class weight (the sign says which way the class uses it).
    baseline : float
        The feature on an ordinary comment (its median over the split).
    class_kinds : sequence of str
        Token kinds that are the class's own words (the "object").
    ordinary : sequence of str
        Ordinary comments (the feature near its median) for insertion; none: no insertion.
    cue_words, class_words, control_words : sequence of str
        Identity terms, the class's own words and words of neither kind to append (the
        class's own words default to those in the shown comments; no control words: nothing
        is subtracted).
    n_words, seed : int
        Append ``n_words`` distinct words of each group drawn with ``seed``; None (default):
        every word of each group, so each share is the group's exact mean effect. Until
        2026-12-02 the truth drew 8 of each: on two flagged features of the toxicity demo
        (seeds 83-84) a draw of 8 of the ~110 control words had a standard deviation of
        0.10-0.19 around a control mean near 0, as much as the 0.2 line between a mixed
        feature and none.

    Returns
    -------
    dict or None
        ``{"removal": {"object": f, "cues": {"identity": f}, "kinds": {"identity": f},
        "deletion": {"object": f, "identity": f}, "insertion": {"object", "identity",
        "control"}}, "truth": str}`` (``insertion`` before the control's is subtracted), or
        None when no shown comment departs the class's way.
    """
    from tasks.viz.text_panels import feature_values

    s = 1.0 if weight >= 0 else -1.0
    cls = set(class_kinds)
    full, no_obj, no_id, own = [], [], [], []
    for toks, kinds in zip(tokens, token_kinds, strict=True):
        is_id = [str(k).startswith("identity") for k in kinds]
        is_obj = [str(k) in cls and not i for k, i in zip(kinds, is_id, strict=True)]
        full.append(" ".join(toks))
        no_obj.append(" ".join(t for t, o in zip(toks, is_obj, strict=True) if not o))
        no_id.append(" ".join(t for t, i in zip(toks, is_id, strict=True) if not i))
        own += [t for t, o in zip(toks, is_obj, strict=True) if o]
    if not full:
        return None
    v = feature_values(encode, full + no_obj + no_id, feature).reshape(3, len(full))
    dep = s * (v - baseline)
    ok = dep[0] > 1e-9
    if not ok.any():
        return None
    base = float(dep[0, ok].mean())
    deletion = {"object": round(float(1.0 - dep[1, ok].mean() / base), 4),
                "identity": round(float(1.0 - dep[2, ok].mean() / base), 4)}
    insertion = {"object": 0.0, "identity": 0.0, "control": 0.0}
    rng = np.random.default_rng(seed)
    for name, words in (("object", list(dict.fromkeys(class_words or own))),
                        ("identity", list(dict.fromkeys(cue_words))),
                        ("control", list(dict.fromkeys(control_words)))):
        if not ordinary or not words:
            continue
        pick = words if n_words is None or n_words >= len(words) else [
            words[i] for i in sorted(rng.choice(len(words), n_words, replace=False))]
        f0 = feature_values(encode, list(ordinary), feature)
        f1 = feature_values(encode, [f"{b} {w}" for w in pick for b in ordinary],
                            feature).reshape(len(pick), len(ordinary))
        insertion[name] = round(float(np.mean(s * (f1 - f0[None, :]))) / base, 4)
    net = {k: round(insertion[k] - insertion["control"], 4) for k in ("object", "identity")}
    obj = max(deletion["object"], net["object"])
    ident = max(deletion["identity"], net["identity"])
    removal = {"object": obj, "cues": {"identity": ident}, "kinds": {"identity": ident},
               "deletion": deletion, "insertion": insertion}
    return {"removal": removal, "truth": truth_from_removal(removal)}


def text_feature_removal(src, rows: Sequence[int] | np.ndarray, feature: int, weight: float,
                         values: np.ndarray) -> dict | None:
    """:func:`text_removal` of one text HIT of an :class:`~tasks.viz.source.ExampleSource`
    with token kinds (None without them): its shown comments ``rows``, the feature's column
    ``values`` (n,) over the source's split for the baseline (median) and the ordinary
    comments, the corpus's identity terms as the words to append, and its words of no class
    and no identity kind as the control (``ExampleSource.text_word_groups``, computed once
    per source)."""
    from tasks.viz.text_panels import ordinary_rows

    if src.token_kinds is None:
        return None
    col = np.asarray(values, dtype=np.float64)
    rows = np.asarray(rows, np.int64)
    identity, control = src.text_word_groups  # the corpus is scanned once per source
    return text_removal(src.features, [src.tokens[i] for i in rows],
                        [src.token_kinds[i] for i in rows], feature, weight,
                        float(np.median(col)), src.class_word_kinds,
                        ordinary=[src.texts[i] for i in ordinary_rows(col, ORDINARY_TEXTS)],
                        cue_words=identity, control_words=control)
