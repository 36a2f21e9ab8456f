"""Verdict per audited (class, feature) from the aggregated ``shared`` and ``pattern`` answers.

What an answer means comes from the question schema (:mod:`sparse_probe.questions`): the
*presence* question (built-in ``shared``) and the *pattern* question (built-in ``pattern``).
Rules (applied per HIT, i.e. per (class, feature, layer)):

1. no answers at all -> ``pending`` (only then: a HIT whose answers all came from workers
   quality control excluded is ``undecided``, with that reason, when ``n_answered`` gives the
   answer counts before quality control);
2. the presence question has no label (only abstentions, a tie) or its posterior <
   ``min_posterior`` -> ``undecided``;
3. its label does not mean "there is a pattern" (built-in: not ``yes``) -> ``no_pattern``;
4. the pattern question has no label or its posterior < ``min_posterior`` -> ``undecided``;
5. a pattern meaning ``core`` (built-in ``object``) -> ``core``; otherwise ``spurious`` with
   ``kind`` = the value's spurious kind (``background``, ``mark``, ``identity``; a value
   without one -> ``other``).

Gold HITs (``is_gold``: known-answer items that score workers) get no verdict: a finding must
never rest on one. They are left out unless ``include_gold`` asks for them (to show the crowd's
answers to gold apart from the verdicts); :func:`findings` never returns one.

``confidence`` is the verdict's posterior (product of the ``shared`` and ``pattern`` posteriors for
core/spurious) and ``self_confidence`` the workers' mean self-rated confidence (1-5).
``n_shared`` / ``n_pattern`` are the labels (non-abstaining workers) each posterior rests on, so
a posterior of 1.00 from a single vote reads as n=1; ``reason`` says why a verdict is
``undecided`` or ``pending``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pandas as pd

from sparse_probe.questions import (
    CONFIDENCE,
    CORE,
    DESCRIPTION,
    NO_PATTERN,
    PATTERN,
    PRESENCE,
    SPURIOUS,
    QuestionSchema,
    default_schema,
)
from sparse_probe.questions import SPURIOUS_KINDS as _SPURIOUS_KINDS

__all__ = [
    "SPURIOUS_KINDS",
    "VERDICTS",
    "compute_verdicts",
    "findings",
    "rank_descriptions",
    "truth_matches",
]

VERDICTS = (CORE, SPURIOUS, NO_PATTERN, "undecided", "pending")
SPURIOUS_KINDS = _SPURIOUS_KINDS
_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset(["a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "is", "are",
                   "it", "its", "this", "that", "with", "for", "there"])


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOP}


def rank_descriptions(
    descriptions: Sequence[str], skills: Sequence[float] | None = None
) -> list[int]:
    """Order descriptions from most to least representative.

    A description's score is its mean Jaccard token overlap with the other descriptions of the
    same HIT (stop words removed); ties are broken by the writer's skill, then by length.

    Parameters
    ----------
    descriptions : sequence of str
    skills : sequence of float, optional
        The writers' skills (e.g. agreement with the aggregate), same length.

    Returns
    -------
    list of int
        Indices into ``descriptions``, best first.
    """
    toks = [_tokens(d) for d in descriptions]
    n = len(toks)
    skills = list(skills) if skills is not None else [0.0] * n
    # exact fractions: equal overlaps are a tie (float sums such as 1/2 + 1/3 + 1/3 + 1/3 and
    # 1/2 + 1/2 + 1/2 + 0 differ in the last bit), so skill and length do break it
    scores = []
    for i in range(n):
        sims = [Fraction(len(toks[i] & toks[j]), len(toks[i] | toks[j])) if toks[i] | toks[j]
                else Fraction(0) for j in range(n) if j != i]
        scores.append(sum(sims) / len(sims) if sims else Fraction(0))
    return sorted(range(n), key=lambda i: (-scores[i], -(skills[i] if np.isfinite(skills[i])
                                                          else 0.0), -len(descriptions[i])))


def truth_matches(verdict: str, kind: str | None, truth: str | None) -> bool | None:
    """Whether a verdict agrees with the manifest's ``truth`` (None when there is no truth)."""
    if truth is None or (isinstance(truth, float) and np.isnan(truth)):
        return None
    if verdict in ("pending", "undecided"):
        return None
    if truth == CORE:
        return verdict == CORE
    if truth == "none":
        return verdict == NO_PATTERN
    if truth.startswith(SPURIOUS):
        want = truth.split(":", 1)[1] if ":" in truth else None
        return verdict == SPURIOUS and (want is None or kind == want)
    return None


def _agrees(said: pd.DataFrame, assignment: str, ag: pd.Series | None,
            schema: QuestionSchema) -> bool:
    """Whether an assignment's presence/pattern answers equal the aggregated labels."""
    presence, pattern = schema.field_for(PRESENCE), schema.field_for(PATTERN)
    if ag is None or assignment not in said.index:
        return False
    row = said.loc[assignment]

    def same(question: str | None) -> bool:  # an unanswered question (NA) never agrees
        value = row.get(question)
        return not pd.isna(value) and value == ag.get(question)

    if not same(presence):
        return False
    return schema.meaning(presence, ag.get(presence)) != PATTERN or same(pattern)


def compute_verdicts(
    manifest: pd.DataFrame,
    aggregated: pd.DataFrame,
    answers: pd.DataFrame | None = None,
    skills: pd.Series | None = None,
    min_posterior: float = 0.6,
    n_quotes: int = 3,
    schema: QuestionSchema | None = None,
    include_gold: bool = False,
    n_answered: pd.Series | dict | None = None,
) -> pd.DataFrame:
    """One verdict per audited HIT of the manifest (gold HITs only with ``include_gold``).

    Parameters
    ----------
    manifest : DataFrame
        ``hit_key, class, class_name, feature, weight, rank, layer, kind, is_gold, truth``.
    aggregated : DataFrame
        :func:`analysis.aggregate.aggregate` output, indexed by hit_key.
    answers : DataFrame, optional
        Kept answers, for descriptions and self-rated confidence.
    skills : Series, optional
        Worker skill, to break ties between descriptions.
    min_posterior : float
        Below this posterior a label does not decide (``undecided``).
    n_quotes : int
        Descriptions kept per HIT (most representative first).
    schema : QuestionSchema, optional
        What the answers mean (default: the built-in schema).
    include_gold : bool
        Also return the gold HITs (``is_gold`` True), judged like the others; they are
        known-answer items, never findings (see :func:`findings`).
    n_answered : Series or dict, optional
        Workers who answered each HIT before quality control (by hit_key): a HIT with answers
        only from excluded workers is then ``undecided`` ("all N answers from excluded
        workers"), not ``pending``.

    Returns
    -------
    DataFrame
        One row per manifest HIT (but gold ones, unless ``include_gold``): the manifest fields plus ``verdict, kind, shared, pattern,
        shared_posterior, pattern_posterior, confidence, votes_shared, votes_pattern,
        shared_mv, pattern_mv, n_workers, n_shared, n_pattern, n_answered, reason,
        self_confidence, quotes, truth_match``. The
        ``shared`` / ``pattern`` columns hold the presence and pattern questions' labels
        whatever the schema names them.
    """
    schema = schema or default_schema()
    presence, pattern = schema.field_for(PRESENCE), schema.field_for(PATTERN)
    rows = []
    desc = conf = None
    if answers is not None and len(answers):
        a = answers.copy()
        a["answer"] = a["answer"].astype("string")
        d = a[(a["question"] == schema.field_for(DESCRIPTION))
              & a["answer"].fillna("").str.strip().ne("")]
        desc = {k: g for k, g in d.groupby("hit_key")}
        said = a[a["question"].isin([presence, pattern])].pivot_table(
            index="assignment_id", columns="question", values="answer", aggfunc="first")
        said = said.apply(lambda col: col.astype("string").str.strip().str.lower())
        c = a[a["question"] == schema.field_for(CONFIDENCE)].copy()
        c["v"] = pd.to_numeric(c["answer"], errors="coerce")
        conf = c.groupby("hit_key")["v"].mean()
    for _, m in manifest.iterrows():
        if _is_gold(m.get("is_gold")) and not include_gold:
            continue  # a known-answer item: it scores workers, it is never a finding
        key = m["hit_key"]
        has = key in aggregated.index and int(aggregated.loc[key, "n_workers"]) > 0
        ag = aggregated.loc[key] if has else None
        verdict, kind, confidence, reason = "pending", None, np.nan, "no answers yet"
        answered = int(n_answered.get(key, 0) or 0) if n_answered is not None else 0
        if ag is None and answered > 0:
            verdict = "undecided"
            reason = (f"all {answered} answers from workers excluded by quality control")
        if ag is not None:
            reason = ""
            s, sp = ag.get(presence), ag.get(f"{presence}_posterior")
            p, pp = ag.get(pattern), ag.get(f"{pattern}_posterior")
            if s is None or (isinstance(s, float) and np.isnan(s)) or not sp >= min_posterior:
                verdict = "undecided"
                confidence = sp
                reason = _undecided_reason(presence, s, sp, ag, min_posterior)
            elif schema.meaning(presence, s) != PATTERN:
                verdict, confidence = NO_PATTERN, sp
            elif p is None or (isinstance(p, float) and np.isnan(p)) or not pp >= min_posterior:
                verdict, confidence = "undecided", sp * (pp if pp == pp else 0.0)
                reason = _undecided_reason(pattern, p, pp, ag, min_posterior)
            elif schema.meaning(pattern, p) == CORE:
                verdict, confidence = CORE, sp * pp
            else:
                verdict, confidence = SPURIOUS, sp * pp
                kind = schema.spurious_kind(pattern, p) or "other"
        quotes: list[str] = []
        if desc is not None and key in desc:
            g = desc[key]
            g = g[~g["answer"].str.strip().str.lower().duplicated()]
            texts = [str(t) for t in g["answer"]]
            sk = ([float(skills.get(w, np.nan)) for w in g["worker_id"]]
                  if skills is not None else None)
            # writers who agree with the crowd's labels first, then the most typical text
            agree = [_agrees(said, aid, ag, schema) for aid in g["assignment_id"]]
            order = rank_descriptions(texts, sk)
            order = sorted(order, key=lambda i: not agree[i])
            quotes = [texts[i] for i in order[:n_quotes]]
        truth = m.get("truth")
        truth = None if truth is None or (isinstance(truth, float) and np.isnan(truth)) else truth
        rows.append({
            "hit_key": key, "class": int(m["class"]), "class_name": m["class_name"],
            "feature": m["feature"], "weight": float(m["weight"]) if m["weight"] is not None
            else np.nan, "rank": m["rank"], "layer": m["layer"], "kind_of_data": m["kind"],
            "is_gold": _is_gold(m.get("is_gold")), "verdict": verdict, "kind": kind,
            "shared": None if ag is None else ag.get(presence),
            "pattern": None if ag is None else ag.get(pattern),
            "shared_posterior": np.nan if ag is None else ag.get(f"{presence}_posterior"),
            "pattern_posterior": np.nan if ag is None else ag.get(f"{pattern}_posterior"),
            "confidence": confidence,
            "votes_shared": {} if ag is None else ag.get(f"{presence}_votes"),
            "votes_pattern": {} if ag is None else ag.get(f"{pattern}_votes"),
            "shared_mv": None if ag is None else ag.get(f"{presence}_mv"),
            "pattern_mv": None if ag is None else ag.get(f"{pattern}_mv"),
            "n_workers": 0 if ag is None else int(ag.get("n_workers")),
            "n_shared": 0 if ag is None else int(ag.get(f"{presence}_n", 0) or 0),
            "n_pattern": 0 if ag is None else int(ag.get(f"{pattern}_n", 0) or 0),
            "n_answered": max(answered, 0 if ag is None else int(ag.get("n_workers"))),
            "reason": reason,
            "self_confidence": float(conf.get(key, np.nan)) if conf is not None else np.nan,
            "quotes": quotes, "truth": truth, "truth_match": truth_matches(verdict, kind, truth),
            "assets": m.get("assets") if isinstance(m.get("assets"), dict) else {},
        })
    if not rows:
        return pd.DataFrame(columns=["hit_key", "class", "class_name", "feature", "layer",
                                     "is_gold", "verdict", "kind", "truth", "truth_match"])
    return pd.DataFrame(rows)


def _undecided_reason(question: str, label: object, posterior: float, ag: pd.Series,
                      min_posterior: float) -> str:
    """Why a question's aggregate does not decide: abstentions only, a tie, a low posterior."""
    n = int(ag.get(f"{question}_n", 0) or 0)
    if n == 0:
        return f"{question}: no answer but 'unsure'"
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return f"{question}: tie between answers (n={n})"
    return f"{question}: posterior {posterior:.3g} < {min_posterior:g} (n={n})"


def _is_gold(value: object) -> bool:
    """A manifest ``is_gold`` value as a bool (missing or NaN: not gold)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)


def findings(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`compute_verdicts` output that are findings: judged ``spurious`` and
    not a gold HIT (a finding never rests on a known-answer item)."""
    if not len(verdicts):
        return verdicts
    gold = verdicts["is_gold"].map(_is_gold) if "is_gold" in verdicts else False
    return verdicts[(verdicts["verdict"] == SPURIOUS) & ~gold]
