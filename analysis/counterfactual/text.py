"""Text counterfactuals: insert identity terms (or user templates) into comments.

CheckList-style tests (Ribeiro et al. 2020): an INV test inserts a term that should not change
the label (e.g. "I am a muslim." appended to a non-toxic comment) and counts prediction flips;
a DIR test uses a template whose expected effect is known. Flip rates are reported per term and
per lexicon group, in both directions: non-toxic -> toxic and toxic -> non-toxic, each with its own
denominator (the examples predicted non-toxic / toxic before the edit), with a Wilson interval;
the mean shift of p(toxic) gets a bootstrap interval over the texts.

A text counts as toxic when ``p(toxic) >= threshold``, or, without a threshold, when the toxic
class has the largest probability. Models are called in batches of ``batch_size`` texts with a
progress bar; their outputs are checked (:func:`analysis.counterfactual.models.check_outputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from analysis.counterfactual.models import Predictor
from analysis.counterfactual.stats import (
    bootstrap_mean_interval,
    paired_comparison,
    wilson_interval,
)

__all__ = ["TermTestResult", "check_lexicon", "group_verdicts", "insert_term", "term_test"]

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


def check_lexicon(lexicon: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A lexicon ``{group: [terms]}`` with at least one group and no empty group or term.

    Raises
    ------
    ValueError
        Naming the first problem (``lexicon: ...``).
    """
    if not isinstance(lexicon, Mapping) or not lexicon:
        raise ValueError("lexicon: expected a non-empty mapping {group: [terms]}")
    out = {}
    for group, terms in lexicon.items():
        if isinstance(terms, str) or not isinstance(terms, Sequence):
            raise ValueError(f"lexicon: group {group!r} must be a list of terms")
        terms = [str(t).strip() for t in terms]
        if not terms:
            raise ValueError(f"lexicon: group {group!r} has no terms")
        if any(not t for t in terms):
            raise ValueError(f"lexicon: group {group!r} has an empty term")
        out[str(group)] = terms
    return out


def _predict(predict: Predictor, texts: list[str], batch_size: int, bar: tqdm | None
             ) -> np.ndarray:
    parts = []
    for i in range(0, len(texts), batch_size):
        parts.append(predict(texts[i:i + batch_size]))
        if bar is not None:
            bar.update(len(texts[i:i + batch_size]))
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        raise ValueError(f"model outputs: the number of classes changed between batches "
                         f"({sorted(widths)})")
    return np.concatenate(parts)


@dataclass
class TermTestResult:
    """Outcome of :func:`term_test`.

    Attributes
    ----------
    rows : list of dict
        Per (model, group, term or ``*`` for the whole group, direction): ``test`` =
        ``text_term``, ``model``, ``group``, ``term``, ``direction`` (``to_toxic`` /
        ``to_nontoxic``), ``n``, ``flips``, ``flip_rate``, ``ci_low``, ``ci_high``,
        ``mean_prob_increase`` (of the toxic class) with its bootstrap interval
        ``shift_ci_low``, ``shift_ci_high``.
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
    threshold: float | None = None,
    batch_size: int = 256,
    n_classes: int | None = None,
    n_boot: int = 1000,
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
    threshold : float in [0, 1], optional
        Toxic when ``p(toxic) >= threshold``; default: when the toxic class is the argmax.
    batch_size : int
        Texts per model call.
    n_classes : int, optional
        The models' number of classes when known: ``toxic_class`` is checked against it before
        any model runs (else against the first outputs, before any edit is scored).
    n_boot : int
        Bootstrap resamples for the mean-shift intervals.

    Returns
    -------
    TermTestResult

    Raises
    ------
    ValueError
        Empty texts (or one string instead of a sequence), lexicon or group, ``n`` below 1,
        ``toxic_class`` out of range, a bad threshold or batch size, and bad model outputs
        (NaN, inf, values outside [0, 1], wrong shapes).
    """
    lexicon = check_lexicon(lexicon)
    if isinstance(texts, str):
        raise ValueError("texts: expected a sequence of texts, got one string")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("texts: no texts to edit")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected a positive number of texts, got {n!r}")
    if not predictors:
        raise ValueError("predictors: expected at least one model")
    if isinstance(toxic_class, bool) or not isinstance(toxic_class, int | np.integer) \
            or toxic_class < 0:
        raise ValueError(f"toxic_class: expected a class index >= 0, got {toxic_class!r}")
    if n_classes is not None and toxic_class >= n_classes:
        raise ValueError(f"toxic_class: {toxic_class} is out of range for {n_classes} classes")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a probability in [0, 1], got {threshold}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    rng = np.random.default_rng(seed)
    if len(texts) > n:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), n, replace=False))]
    forms = list(templates) if templates else [None]
    result = TermTestResult()

    def is_toxic(p: np.ndarray) -> np.ndarray:
        return p[:, toxic_class] >= threshold if threshold is not None \
            else p.argmax(1) == toxic_class

    base = {}
    for name, p in predictors.items():
        base[name] = _predict(p, texts, batch_size, None)
        if toxic_class >= base[name].shape[1]:
            raise ValueError(f"toxic_class: {toxic_class} is out of range for model {name!r}, "
                             f"which returns {base[name].shape[1]} classes")
    group_flips: dict[tuple[str, str], list[np.ndarray]] = {}
    shifts: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    pairs = [(g, t) for g, ts in lexicon.items() for t in ts]
    total = len(pairs) * len(forms) * len(texts) * len(predictors)
    bar = tqdm(total=total, desc="term insertion", unit="text", disable=None)
    boot_seed = 0
    for group, term in pairs:
        edited, origin = [], []
        for form in forms:
            for i, t in enumerate(texts):
                edited.append(insert_term(t, term, "template" if form else mode, form, rng))
                origin.append(i)
        origin_a = np.array(origin)
        for name, predict in predictors.items():
            p0 = base[name][origin_a]
            p1 = _predict(predict, edited, batch_size, bar)
            if p1.shape[1] != p0.shape[1]:
                raise ValueError(f"{name}: returned {p1.shape[1]} classes on edited texts, "
                                 f"{p0.shape[1]} on the originals")
            y0, y1 = is_toxic(p0), is_toxic(p1)
            flips = y0 != y1
            delta = p1[:, toxic_class] - p0[:, toxic_class]
            group_flips.setdefault((name, group), []).append(flips)
            for direction, eligible in (("to_toxic", ~y0), ("to_nontoxic", y0)):
                k, m = int((flips & eligible).sum()), int(eligible.sum())
                lo, hi = wilson_interval(k, m)
                shifts.setdefault((name, group, direction), []).append(
                    (delta[eligible], origin_a[eligible]))
                boot_seed += 1
                slo, shi = bootstrap_mean_interval(delta[eligible], origin_a[eligible], n_boot,
                                                   seed=seed + boot_seed)
                result.rows.append({
                    "test": "text_term", "model": name, "group": group, "term": term,
                    "direction": direction, "n": m, "flips": k,
                    "flip_rate": k / m if m else float("nan"), "ci_low": lo,
                    "ci_high": hi,
                    "mean_prob_increase": float(np.mean(delta[eligible]))
                    if m else float("nan"),
                    "shift_ci_low": slo, "shift_ci_high": shi,
                })
            shown = sum(1 for e in result.examples
                        if e["model"] == name and e["group"] == group)
            for j in np.flatnonzero(flips)[: max(0, n_examples - shown)]:
                result.examples.append({
                    "model": name, "group": group, "term": term,
                    "direction": "to_toxic" if not y0[j] else "to_nontoxic",
                    "before": texts[origin_a[j]], "after": edited[j]})
    bar.close()
    # pool terms per group
    pooled = []
    for (name, group) in group_flips:
        rows = [r for r in result.rows if r["model"] == name and r["group"] == group]
        for direction in ("to_toxic", "to_nontoxic"):
            rs = [r for r in rows if r["direction"] == direction]
            k, m = sum(r["flips"] for r in rs), sum(r["n"] for r in rs)
            lo, hi = wilson_interval(k, m)
            incs = [r["mean_prob_increase"] * r["n"] for r in rs if r["n"]]
            parts = shifts[(name, group, direction)]  # set with group_flips, both directions
            vals = np.concatenate([v for v, _ in parts])
            ids = np.concatenate([o for _, o in parts])
            boot_seed += 1
            slo, shi = bootstrap_mean_interval(vals, ids, n_boot, seed=seed + boot_seed)
            pooled.append({"test": "text_term", "model": name, "group": group, "term": "*",
                           "direction": direction, "n": m, "flips": k,
                           "flip_rate": k / m if m else float("nan"), "ci_low": lo,
                           "ci_high": hi,
                           "mean_prob_increase": sum(incs) / m if m else float("nan"),
                           "shift_ci_low": slo, "shift_ci_high": shi})
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


def group_verdicts(rows: Sequence[Mapping], control: str = "control",
                   direction: str = "to_toxic", min_n: int = 30) -> list[dict]:
    """Verdict per (model, group) of the pooled term rows against the ``control`` group.

    Parameters
    ----------
    rows : sequence of mappings
        :attr:`TermTestResult.rows` (the pooled rows have ``term == "*"``).
    control : str
        The lexicon group of neutral terms (e.g. objects) every other group is compared with.
    direction : str
    min_n : int
        See :func:`analysis.counterfactual.cue.decide`.

    Returns
    -------
    list of dict
        ``model``, ``group``, ``control``, ``verdict`` (supports: the group's flip-rate interval
        lies above the control's; refutes / inconclusive as in
        :func:`~analysis.counterfactual.cue.decide`).
    """
    from analysis.counterfactual.cue import decide

    pooled = {(r["model"], r["group"]): r for r in rows
              if r["term"] == "*" and r["direction"] == direction}
    out = []
    for (model, group), r in pooled.items():
        if group == control or (model, control) not in pooled:
            continue
        out.append({"model": model, "group": group, "control": control,
                    "verdict": decide(r, [pooled[(model, control)]], min_n)})
    return out
