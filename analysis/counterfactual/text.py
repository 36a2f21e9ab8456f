"""Text counterfactuals: insert identity terms (or user templates) into comments.

CheckList-style tests (Ribeiro et al. 2020): an INV test inserts a term that should not change
the label (e.g. "I am a muslim." appended to a non-toxic comment) and counts prediction flips;
a DIR test uses a template whose expected effect is known. Flip rates are reported per term and
per lexicon group, in both directions: non-toxic -> toxic and toxic -> non-toxic, each with its own
denominator (the examples predicted non-toxic / toxic before the edit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from analysis.counterfactual.models import Predictor
from analysis.counterfactual.stats import paired_comparison, wilson_interval

__all__ = ["TermTestResult", "insert_term", "term_test"]

logger = logging.getLogger(__name__)
MODES = ("append", "prepend", "random", "template")


def insert_term(text: str, term: str, mode: str = "append", template: str | None = None,
                rng: np.random.Generator | None = None) -> str:
    """Insert ``term`` into ``text``.

    Parameters
    ----------
    text, term : str
    mode : {"append", "prepend", "random", "template"}
        ``random`` inserts before a random word (seeded ``rng``); ``template`` formats
        ``template`` with ``{text}`` and ``{term}``.
    template : str, optional
        E.g. ``"{text} As a {term} person, I agree."``.
    rng : numpy Generator, optional
    """
    if mode == "append":
        return f"{text.rstrip()} {term}"
    if mode == "prepend":
        return f"{term} {text.lstrip()}"
    if mode == "random":
        words = text.split()
        rng = rng or np.random.default_rng(0)
        i = int(rng.integers(0, len(words) + 1))
        return " ".join([*words[:i], term, *words[i:]])
    if mode == "template":
        if not template or "{text}" not in template or "{term}" not in template:
            raise ValueError("template: expected a string containing {text} and {term}")
        return template.format(text=text, term=term)
    raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


@dataclass
class TermTestResult:
    """Outcome of :func:`term_test`.

    Attributes
    ----------
    rows : list of dict
        Per (model, group, term or ``*`` for the whole group, direction): ``test`` =
        ``text_term``, ``model``, ``group``, ``term``, ``direction`` (``to_toxic`` /
        ``to_nontoxic``), ``n``, ``flips``, ``flip_rate``, ``ci_low``, ``ci_high``,
        ``mean_prob_increase`` (of the toxic class).
    examples : list of dict
        A few flipped examples per model and group (``before``, ``after``, ``direction``).
    paired : list of dict
        Exact McNemar comparisons between models per group.
    """

    rows: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    paired: list[dict] = field(default_factory=list)


def term_test(
    predictors: Mapping[str, Predictor],
    texts: Sequence[str],
    lexicon: Mapping[str, Sequence[str]],
    toxic_class: int = 1,
    mode: str = "append",
    templates: Sequence[str] | None = None,
    n: int = 200,
    seed: int = 0,
    n_examples: int = 3,
) -> TermTestResult:
    """Insert every lexicon term into the same ``n`` texts and count flips.

    Parameters
    ----------
    predictors : mapping name -> predictor
        Each maps a list of texts to probabilities (n, n_classes).
    texts : sequence of str
        Test comments (sampled without replacement when more than ``n``).
    lexicon : mapping group -> terms
        E.g. ``sparse_probe.datasets.IDENTITY_TERMS``.
    toxic_class : int
    mode : str
        See :func:`insert_term`; with ``templates`` the mode is ``template`` and every template
        is applied.
    templates : sequence of str, optional
    n : int
    seed : int
    n_examples : int

    Returns
    -------
    TermTestResult
    """
    rng = np.random.default_rng(seed)
    texts = list(texts)
    if len(texts) > n:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), n, replace=False))]
    forms = list(templates) if templates else [None]
    result = TermTestResult()
    base = {name: p(texts) for name, p in predictors.items()}
    group_flips: dict[tuple[str, str], list[np.ndarray]] = {}
    pairs = [(g, t) for g, ts in lexicon.items() for t in ts]
    for group, term in tqdm(pairs, desc="term insertion", disable=None):
        edited, origin = [], []
        for form in forms:
            for i, t in enumerate(texts):
                edited.append(insert_term(t, term, "template" if form else mode, form, rng))
                origin.append(i)
        origin_a = np.array(origin)
        for name, predict in predictors.items():
            p0 = base[name][origin_a]
            p1 = predict(edited)
            y0, y1 = p0.argmax(1) == toxic_class, p1.argmax(1) == toxic_class
            flips = y0 != y1
            group_flips.setdefault((name, group), []).append(flips)
            for direction, eligible in (("to_toxic", ~y0), ("to_nontoxic", y0)):
                k, m = int((flips & eligible).sum()), int(eligible.sum())
                lo, hi = wilson_interval(k, m)
                result.rows.append({
                    "test": "text_term", "model": name, "group": group, "term": term,
                    "direction": direction, "n": m, "flips": k,
                    "flip_rate": k / m if m else float("nan"), "ci_low": lo,
                    "ci_high": hi,
                    "mean_prob_increase": float(np.mean(
                        p1[eligible, toxic_class] - p0[eligible, toxic_class]))
                    if m else float("nan"),
                })
            shown = sum(1 for e in result.examples
                        if e["model"] == name and e["group"] == group)
            for j in np.flatnonzero(flips)[: max(0, n_examples - shown)]:
                result.examples.append({
                    "model": name, "group": group, "term": term,
                    "direction": "to_toxic" if not y0[j] else "to_nontoxic",
                    "before": texts[origin_a[j]], "after": edited[j]})
    # pool terms per group
    pooled = []
    for (name, group) in group_flips:
        rows = [r for r in result.rows if r["model"] == name and r["group"] == group]
        for direction in ("to_toxic", "to_nontoxic"):
            rs = [r for r in rows if r["direction"] == direction]
            k, m = sum(r["flips"] for r in rs), sum(r["n"] for r in rs)
            lo, hi = wilson_interval(k, m)
            incs = [r["mean_prob_increase"] * r["n"] for r in rs if r["n"]]
            pooled.append({"test": "text_term", "model": name, "group": group, "term": "*",
                           "direction": direction, "n": m, "flips": k,
                           "flip_rate": k / m if m else float("nan"), "ci_low": lo,
                           "ci_high": hi,
                           "mean_prob_increase": sum(incs) / m if m else float("nan")})
    result.rows = pooled + result.rows
    names = list(predictors)
    for group in lexicon:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                fa = np.concatenate(group_flips[(a, group)])
                fb = np.concatenate(group_flips[(b, group)])
                result.paired.append({"test": "text_term", "group": group, "model_a": a,
                                      "model_b": b, **paired_comparison(fa, fb)})
    return result
