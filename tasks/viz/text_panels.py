"""The evidence panels of a text HIT beyond the highlighted comments.

Occlusion (:mod:`tasks.viz.text_attr`) shows which words of the top comments drive a feature,
but it is confounded by what co-occurs in them: in toxic comments that mention an identity
term, the insult usually takes the larger share even when the feature responds to the identity
term as strongly. These panels test words on a common footing:

- **insertion** (:func:`insertion_ranking`): each candidate word (the words of the feature's
  top comments, and the words whose comments have the feature furthest the class's way over
  the whole split, :func:`associated_words`) is appended to the same ordinary comments of the split (those where the
  feature is nearest its median) and the mean change of the feature, in the direction the
  class uses, ranks the words: the words that push the feature most, whatever comments they
  usually appear in.
- **contrast** (:func:`highlight_contrast`): the top comments with their highlighted words
  removed, and with only those words kept: how much of the feature's departure from an
  ordinary comment is left (does the highlight explain the feature?).
- **least-activating** comments of the class (:func:`least_rows`): what the class's comments
  look like where the feature is weakest.
- **words picked at random** (:func:`typical_words`) from the split's vocabulary, appended
  the same way and listed beside the ranking: what a typical word does (the control group of
  the paper's counterfactual test).

With ground truth (token kinds of the built-in corpus), :func:`kind_shares` measures what each
kind of word (class words, identity terms, the rest) does on average over every word tested,
beyond a typical word, and
:func:`text_reader_evidence` is what a careful reader takes from the panels (the simulated
crowd reads the same). ``benchmarks/measure_text_evidence.py`` measured which panel separates
identity-term features from features of the class's own words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from tasks.viz.evidence import dominant_region

__all__ = [
    "INSERTION_REACH",
    "TYPICAL_WORDS",
    "associated_words",
    "candidate_words",
    "feature_values",
    "highlight_contrast",
    "insertion_ranking",
    "kind_shares",
    "least_rows",
    "normalize_word",
    "ordinary_rows",
    "text_reader_evidence",
    "typical_words",
    "word_kinds",
]

Encode = Callable[[list[str]], torch.Tensor | np.ndarray]

#: Words drawn from the vocabulary for the typical word's effect (:func:`typical_words`).
TYPICAL_WORDS = 128
_STRIP = ".,!?;:\"'()"


def normalize_word(token: str) -> str:
    """A token as the word clouds and panels show it: lower case, outer punctuation removed."""
    return token.lower().strip(_STRIP)


def feature_values(encode: Encode, texts: list[str], feature: int,
                   batch_size: int = 512) -> np.ndarray:
    """Feature ``feature`` of each text, (len(texts),) float64, encoded ``batch_size`` at a
    time without gradients."""
    vals = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            out = encode(texts[start : start + batch_size])
            out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out
            vals.append(np.asarray(out, dtype=np.float64)[:, feature])
    return np.concatenate(vals) if vals else np.zeros(0)


def ordinary_rows(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` rows whose value is nearest the median (ties: lower index first).

    Parameters
    ----------
    values : ndarray (m,)
        One feature's values over the split.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"ordinary_rows: values must be 1-d, got shape {v.shape}")
    order = np.argsort(np.abs(v - np.median(v)), kind="stable") if v.size else np.zeros(0, int)
    return order[: max(0, int(n))]


def least_rows(values: np.ndarray, labels: np.ndarray, cls: int, n: int, sign: float
               ) -> np.ndarray:
    """The class's ``n`` rows where the feature is weakest in the class's direction (lowest
    values for a positive weight ``sign``, highest for a negative one)."""
    rows = np.flatnonzero(np.asarray(labels) == cls)
    v = np.asarray(values, dtype=np.float64)[rows]
    key = v if sign >= 0 else -v
    return rows[np.argsort(key, kind="stable")[: max(0, int(n))]]


def candidate_words(tokens: Sequence[Sequence[str]], max_words: int = 100) -> list[str]:
    """Distinct words of ``tokens`` (normalized, :func:`normalize_word`), the most frequent
    first (ties alphabetical), at most ``max_words``."""
    counts = Counter(w for toks in tokens for w in map(normalize_word, toks) if w)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:max_words]


def associated_words(tokens: Sequence[Sequence[str]], values: np.ndarray, sign: float = 1.0,
                     max_words: int = 100, min_count: int = 3) -> list[str]:
    """Words whose comments have the feature furthest the class's way, over a whole split.

    A cheap screen (no model call): for every word in at least ``min_count`` comments, the
    mean of ``sign * (f - mean f)`` over the comments that contain it; the ``max_words``
    largest first (ties alphabetical). :func:`insertion_ranking` then tests them causally.

    Parameters
    ----------
    tokens : list of list of str
        Every comment's tokens, (m,).
    values : ndarray (m,)
        The feature's value on each comment.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) != len(tokens):
        raise ValueError(f"associated_words: {len(tokens)} comments but values of shape "
                         f"{v.shape}")
    z = (1.0 if sign >= 0 else -1.0) * (v - v.mean()) if v.size else v
    total: dict[str, float] = {}
    count: Counter[str] = Counter()
    for toks, val in zip(tokens, z, strict=True):
        for w in {normalize_word(t) for t in toks} - {""}:
            total[w] = total.get(w, 0.0) + float(val)
            count[w] += 1
    score = {w: total[w] / n for w, n in count.items() if n >= min_count}
    return [w for w, _ in sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))][:max_words]


def typical_words(tokens: Sequence[Sequence[str]], n: int = TYPICAL_WORDS, seed: int = 0,
                  min_count: int = 3) -> list[str]:
    """``n`` distinct words drawn uniformly (with ``seed``) from the words in at least
    ``min_count`` of the comments ``tokens`` (normalized, :func:`normalize_word`), in
    alphabetical order; every such word when there are at most ``n``.

    Appended to ordinary comments (:func:`insertion_ranking`), they show what a typical word
    does: the control group against which the ranked words are read (a feature that any
    appended word moves, e.g. one that counts words, is no feature of the words at the top of
    the ranking). The draw cannot tell the words of interest (a class's words, identity
    terms) from the rest; a reader who can, leaves them out (:func:`kind_shares`). On three
    flagged features of the built-in toxicity demo (seeds 65-79: ~170 words in the
    vocabulary, ~113 of neither kind, their effects with a standard deviation of ~0.4 of the
    way to the top comments), the mean of the words of neither kind among 128 drawn had a
    standard deviation of 0.02 around the mean of all of them (0.05 among 64, the first
    choice: too coarse at the 0.5 line; held-out text seeds 105-124 lost a feature of 0.54
    to it).
    """
    counts = Counter(w for toks in tokens for w in {normalize_word(t) for t in toks} if w)
    vocab = sorted(w for w, c in counts.items() if c >= min_count)
    if len(vocab) <= n:
        return vocab
    rng = np.random.default_rng(seed)
    return [vocab[i] for i in sorted(rng.choice(len(vocab), int(n), replace=False))]


def insertion_ranking(encode: Encode, base_texts: Sequence[str], words: Sequence[str],
                      feature: int, sign: float = 1.0, batch_size: int = 512
                      ) -> list[tuple[str, float]]:
    """Every word's mean effect on the feature when appended to each of ``base_texts``.

    Parameters
    ----------
    encode : callable
        ``encode(list of str) -> (m, d)`` features.
    base_texts : list of str
        Comments the words are appended to (``text + " " + word``).
    words : list of str
    feature : int
    sign : float
        Sign of the class weight: effects are ``sign * (f(text + word) - f(text))``, i.e.
        positive where the word pushes the feature the way the class uses it.

    Returns
    -------
    list of (word, effect)
        Largest effect first (ties: the order of ``words``).
    """
    base = list(base_texts)
    if not base or not words:
        return []
    s = 1.0 if sign >= 0 else -1.0
    f0 = feature_values(encode, base, feature, batch_size)
    texts = [f"{t} {w}" for w in words for t in base]
    f1 = feature_values(encode, texts, feature, batch_size).reshape(len(words),
                                                                    len(base))
    effect = s * (f1 - f0[None, :]).mean(1)
    order = np.argsort(-effect, kind="stable")
    return [(str(words[i]), float(effect[i])) for i in order]


def highlight_contrast(encode: Encode, tokens: Sequence[Sequence[str]],
                       attributions: Sequence[np.ndarray], feature: int, sign: float,
                       baseline: float, floor: float = 0.5, batch_size: int = 512
                       ) -> dict[str, float] | None:
    """How much of the feature's departure from an ordinary comment the highlighted words
    carry, over the top comments.

    A token is highlighted when its attribution is at least ``floor`` times the comment's
    largest (positive) one. For each comment with a departure ``s * (f(x) - baseline) > 0``
    (``s`` the sign of the class weight, ``baseline`` the feature's median), ``removed`` is
    the share of that departure left with the highlighted tokens removed and ``kept`` the share
    with only them kept (each clipped to [0, 1]); ``area`` the share of tokens highlighted.

    Returns
    -------
    dict or None
        ``{"removed", "kept", "area"}`` (means over the comments), or None when no comment
        has a highlight and a departure.
    """
    s = 1.0 if sign >= 0 else -1.0
    full, removed, kept, area = [], [], [], []
    for toks, attr in zip(tokens, attributions, strict=True):
        a = np.asarray(attr, dtype=np.float64)
        if not len(toks) or a.size == 0 or a.max() <= 0:
            continue
        hl = a >= floor * a.max()
        full.append(" ".join(toks))
        removed.append(" ".join(t for t, h in zip(toks, hl, strict=True) if not h))
        kept.append(" ".join(t for t, h in zip(toks, hl, strict=True) if h))
        area.append(float(hl.mean()))
    if not full:
        return None
    v = feature_values(encode, full + removed + kept, feature,
                       batch_size).reshape(3, len(full))
    dep = s * (v - baseline)
    ok = dep[0] > 1e-9
    if not ok.any():
        return None
    share = np.clip(dep[1:, ok] / dep[0, ok], 0.0, 1.0)
    return {"removed": round(float(share[0].mean()), 4), "kept": round(float(share[1].mean()), 4),
            "area": round(float(np.mean(np.asarray(area)[ok])), 4)}


def word_kinds(tokens: Sequence[Sequence[str]], kinds: Sequence[Sequence[str]]
               ) -> dict[str, str]:
    """Word -> its ground-truth kind (the first kind seen for it) from the tokens and token
    kinds of a corpus."""
    out: dict[str, str] = {}
    for toks, ks in zip(tokens, kinds, strict=True):
        for t, k in zip(toks, ks, strict=True):
            out.setdefault(normalize_word(t), str(k))
    return out


def kind_shares(ranking: Sequence[tuple[str, float]], kinds: Mapping[str, str],
                class_kinds: Sequence[str], typical: Sequence[tuple[str, float]] = (),
                scale: float | None = None) -> dict:
    """What each kind of word does to the feature, on average over every word of the ranking,
    beyond a typical word: the evidence format of :mod:`tasks.viz.evidence`.

    Per part (class words: ``"object"``; identity terms; the rest: ``"background"``), the mean
    effect of its words in ``ranking`` less the typical word's (the mean effect of the words
    picked at random, :func:`typical_words`, that are of neither kind: the control group as a
    reader who knows the kinds reads the list), clipped at 0; the shares are those parts over
    their sum. This is the truth's own measure
    (:func:`tasks.viz.intervention.text_removal`: a group's mean effect less the control
    group's) on the words the HIT shows. The mean over *every* word tested, not the mass of
    the first few: where many words take the feature to the same limit, which of them come
    first is arbitrary, and a part with many words tested (the rest) would fill the top of the
    ranking by number alone.

    Parameters
    ----------
    ranking : list of (word, effect)
        Every word tested (:func:`insertion_ranking`).
    kinds : mapping
        Word -> its ground-truth kind (:func:`word_kinds`); words not in it are the rest.
    class_kinds : sequence of str
        Kinds that are the class's own words.
    typical : list of (word, effect)
        The words picked at random, with their effects in the ranking's units (none, or none
        of neither kind: the typical word does nothing).
    scale : float, optional
        The shown comments' mean departure from an ordinary comment, the way the class uses
        the feature: with it the result also has ``reach`` (per part, its net mean effect over
        ``scale``: 1 means its words take an ordinary comment, on average, as far beyond a
        typical word as the top comments are) and ``typical`` (the typical word's effect over
        ``scale``).

    Returns
    -------
    dict
        ``{"object": f, "cues": {"identity": f}, "background": f, "words": {part: int}}`` (the
        shares, all zero when no part does more than a typical word; the number of words of
        each part tested), plus ``"reach"`` and ``"typical"`` with ``scale``.
    """
    total = {"object": 0.0, "identity": 0.0, "rest": 0.0}
    count = {"object": 0, "identity": 0, "rest": 0}
    for word, effect in ranking:
        part = _part(kinds, class_kinds, word)
        total[part] += float(effect)
        count[part] += 1
    control = [float(e) for w, e in typical if _part(kinds, class_kinds, w) == "rest"]
    base = float(np.mean(control)) if control else 0.0
    net = {p: max(0.0, total[p] / count[p] - base) if count[p] else 0.0 for p in total}
    whole = sum(net.values())
    if whole <= 0:
        out: dict = {"object": 0.0, "cues": {"identity": 0.0}, "background": 0.0}
    else:
        out = {"object": net["object"] / whole, "cues": {"identity": net["identity"] / whole},
               "background": net["rest"] / whole}
    out["words"] = {"object": count["object"], "identity": count["identity"],
                    "background": count["rest"]}
    if scale is not None and scale > 0:
        out["reach"] = {"object": net["object"] / scale, "identity": net["identity"] / scale,
                        "background": net["rest"] / scale}
        out["typical"] = base / scale
    return out


def _part(kinds: Mapping[str, str], class_kinds: Sequence[str], word: str) -> str:
    """``"identity"``, ``"object"`` (a class word) or ``"rest"``: a word's part by its kind."""
    k = kinds.get(normalize_word(word), "other")
    return "identity" if k.startswith("identity") else "object" if k in class_kinds else "rest"


#: A careful reader names identity terms from the insertion panel only when they move an
#: ordinary comment, on average and beyond a typical word, at least this share of the way to
#: the feature's top comments. The truth by intervention calls a kind the feature's pattern
#: from half (:data:`tasks.viz.intervention.REMOVAL_THRESHOLD`) and a flagged feature that a
#: kind carries 0.2-0.5 of "mixed" (a partial reliance, no false alarm); the panel measures
#: the reach within a few hundredths, so a line at half missed carried features read just
#: under it (held-out seeds 124 and 144: identity 0.51-0.54 by the truth, read at
#: 0.485-0.50). ``benchmarks/measure_text_evidence.py`` on seeds 0-4: every line from 0.3
#: to 0.5 finds the same 39 of 40 carried features with no false alarm, and flags 12 to 2
#: mixed ones; 0.4 keeps a margin on both sides.
INSERTION_REACH = 0.4


def text_reader_evidence(panels: Mapping[str, Mapping] | None,
                         evidence: Mapping | None = None,
                         reach_line: float = INSERTION_REACH) -> Mapping | None:
    """The evidence a careful reader takes from a text HIT's panels.

    The insertion panel tests every word in the same ordinary comments, so it is free of what
    merely co-occurs in the top comments. Where it says how far each kind of word goes on
    average beyond a typical word (``reach``, :func:`kind_shares`):

    - identity terms that go at least ``reach_line`` (:data:`INSERTION_REACH`) of the way to
      the top comments are what the reader names (``{"cues": {"identity": 1}}``), however
      far the class's own words go too: the truth by intervention puts a cue first
      (:func:`tasks.viz.intervention.truth_from_removal`), since a feature that identity
      terms move as far as insults relies on them as much; identity terms that go less than
      that are no identity feature, whatever their share;
    - otherwise the class's own words, when they clearly dominate
      (:func:`tasks.viz.evidence.dominant_region`).

    Without ``reach`` (older manifests), a kind that clearly dominates the panel is read as
    before. Otherwise the highlighted comments (``panels["occlusion"]``, else ``evidence``)
    decide.
    """
    panels = panels or {}
    ins = panels.get("insertion")
    reach = (ins or {}).get("reach")
    if ins is not None and reach is not None and float(
            reach.get("identity", 0.0)) >= reach_line:
        return {"object": 0.0, "cues": {"identity": 1.0}, "background": 0.0}
    name = dominant_region(ins) if ins is not None else None
    if name is not None and (name == "object" or reach is None):
        return _shares(ins)
    occ = panels.get("occlusion")
    return _shares(occ) if occ is not None else evidence


def _shares(p: Mapping) -> dict:
    return {"object": float(p.get("object") or 0.0), "cues": dict(p.get("cues") or {}),
            "background": float(p.get("background") or 0.0)}
