"""The verdict rules of analysis.verdicts on hand-built aggregates (no crowd-kit, milliseconds):
every branch of the rule list at its posterior boundary, what each row carries, the quote order
and the truth comparison. The whole-report paths are in test_verdicts_gold.py and
test_honest_verdicts.py."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.verdicts import compute_verdicts, findings, rank_descriptions, truth_matches
from sparse_probe.questions import schema_from_dict

NAN = float("nan")


def _man(*keys: str, **extra) -> pd.DataFrame:
    rows = []
    for i, key in enumerate(keys):
        rows.append({"hit_key": key, "class": i, "class_name": f"c{i}", "feature": 10 + i,
                     "weight": 0.5 + i, "rank": i + 1, "layer": "sparse", "kind": "image",
                     "is_gold": False, "truth": None, "assets": {"grid": f"assets/{key}.png"},
                     **extra})
    return pd.DataFrame(rows)


def _ag(rows: dict[str, dict], presence: str = "shared", pattern: str = "pattern"
        ) -> pd.DataFrame:
    """An aggregate shaped like analysis.aggregate.aggregate's (indexed by hit_key)."""
    out = []
    for key, r in rows.items():
        s, sp = r.get("s"), r.get("sp", NAN)
        p, pp = r.get("p"), r.get("pp", NAN)
        n = r.get("n", 3)
        out.append({"hit_key": key, presence: s, f"{presence}_posterior": sp,
                    f"{presence}_mv": r.get("smv", s), f"{presence}_votes": r.get("sv", {}),
                    f"{presence}_n": r.get("sn", n), pattern: p,
                    f"{pattern}_posterior": pp, f"{pattern}_mv": r.get("pmv", p),
                    f"{pattern}_votes": r.get("pv", {}), f"{pattern}_n": r.get("pn", n),
                    "n_workers": r.get("workers", n)})
    if not out:
        return pd.DataFrame(columns=["n_workers"], index=pd.Index([], name="hit_key"))
    return pd.DataFrame(out).set_index("hit_key")


def _one(ag_row: dict | None, min_posterior: float = 0.6, **kw) -> pd.Series:
    ag = _ag({"h": ag_row} if ag_row is not None else {})
    return compute_verdicts(_man("h"), ag, min_posterior=min_posterior, **kw).iloc[0]


# --------------------------------------------------------------------------- rule 1: pending
def test_no_answers_is_pending_with_empty_fields():
    r = _one(None)
    assert (r["verdict"], r["reason"], r["kind"]) == ("pending", "no answers yet", None)
    assert math.isnan(r["confidence"]) and r["shared"] is None and r["pattern"] is None
    assert math.isnan(r["shared_posterior"]) and math.isnan(r["pattern_posterior"])
    assert r["votes_shared"] == {} and r["votes_pattern"] == {}
    assert r["shared_mv"] is None and r["pattern_mv"] is None
    assert (r["n_workers"], r["n_shared"], r["n_pattern"], r["n_answered"]) == (0, 0, 0, 0)


def test_an_aggregate_row_with_zero_workers_is_still_pending():
    r = _one({"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0, "workers": 0})
    assert r["verdict"] == "pending" and r["reason"] == "no answers yet"
    assert r["n_workers"] == 0 and r["shared"] is None


@pytest.mark.parametrize("n_answered", [pd.Series({"h": 2, "other": 9}), {"h": 2}])
def test_answers_only_from_excluded_workers_are_undecided(n_answered):
    r = _one(None, n_answered=n_answered)
    assert r["verdict"] == "undecided"
    assert r["reason"] == "all 2 answers from workers excluded by quality control"
    assert r["n_answered"] == 2 and r["n_workers"] == 0


def test_a_single_excluded_answer_is_enough_to_be_undecided():
    r = _one(None, n_answered={"h": 1})
    assert r["verdict"] == "undecided" and r["n_answered"] == 1


@pytest.mark.parametrize("n_answered", [{"other": 3}, {"h": 0}, {"h": None}])
def test_no_answers_before_quality_control_stays_pending(n_answered):
    r = _one(None, n_answered=n_answered)
    assert r["verdict"] == "pending" and r["n_answered"] == 0


def test_n_answered_is_the_larger_of_before_and_after_quality_control():
    row = {"s": "yes", "sp": 1.0, "p": "object", "pp": 1.0, "n": 3}
    assert _one(row, n_answered={"h": 5})["n_answered"] == 5
    assert _one(row, n_answered={"h": 2})["n_answered"] == 3
    assert _one(row)["n_answered"] == 3


# --------------------------------------------------------------------------- rule 2: presence
def test_presence_posterior_exactly_at_the_threshold_decides_and_just_below_does_not():
    at = _one({"s": "no", "sp": 0.6, "n": 5}, min_posterior=0.6)
    assert (at["verdict"], at["confidence"], at["reason"]) == ("no_pattern", 0.6, "")
    below = _one({"s": "no", "sp": 0.599, "n": 5}, min_posterior=0.6)
    assert below["verdict"] == "undecided" and below["confidence"] == 0.599
    assert below["reason"] == "shared: posterior 0.599 < 0.6 (n=5)"
    # the default threshold is 0.6
    r = _one({"s": "no", "sp": 0.59})
    assert r["verdict"] == "undecided" and r["reason"] == "shared: posterior 0.59 < 0.6 (n=3)"
    assert _one({"s": "no", "sp": 0.6})["verdict"] == "no_pattern"


def test_presence_posterior_missing_is_undecided():
    r = _one({"s": "yes", "sp": NAN, "p": "object", "pp": 1.0})
    assert r["verdict"] == "undecided" and r["reason"].startswith("shared: posterior nan")


@pytest.mark.parametrize("label", [None, NAN])
def test_presence_tie_and_abstentions_are_undecided_with_their_reason(label):
    tie = _one({"s": label, "sp": 0.5, "sn": 4, "p": "mark", "pp": 1.0})
    assert tie["verdict"] == "undecided" and tie["confidence"] == 0.5
    assert tie["reason"] == "shared: tie between answers (n=4)" and tie["kind"] is None
    unsure = _one({"s": label, "sp": NAN, "sn": 0, "p": "mark", "pp": 1.0})
    assert unsure["verdict"] == "undecided"
    assert unsure["reason"] == "shared: no answer but 'unsure'"
    assert unsure["n_shared"] == 0


@pytest.mark.parametrize("label", [None, NAN])
def test_a_tie_never_decides_even_when_its_posterior_reaches_the_threshold(label):
    """With min_posterior 0.5 a two-way tie (posterior 0.5) reaches the threshold; without a
    label it is still undecided, for the presence and for the pattern question."""
    r = _one({"s": label, "sp": 0.5, "sn": 2, "p": "mark", "pp": 1.0}, min_posterior=0.5)
    assert r["verdict"] == "undecided" and r["reason"] == "shared: tie between answers (n=2)"
    r = _one({"s": "yes", "sp": 1.0, "p": label, "pp": 0.5, "pn": 2}, min_posterior=0.5)
    assert r["verdict"] == "undecided" and r["reason"] == "pattern: tie between answers (n=2)"


def test_presence_no_is_no_pattern_whatever_the_pattern_says():
    r = _one({"s": "no", "sp": 0.8, "p": "mark", "pp": 0.1})
    assert (r["verdict"], r["kind"], r["confidence"], r["reason"]) == ("no_pattern", None, 0.8,
                                                                        "")


# --------------------------------------------------------------------------- rules 4-5: pattern
def test_pattern_posterior_exactly_at_the_threshold_decides_and_just_below_does_not():
    at = _one({"s": "yes", "sp": 0.9, "p": "object", "pp": 0.7}, min_posterior=0.7)
    assert at["verdict"] == "core" and at["confidence"] == pytest.approx(0.63)
    assert at["kind"] is None and at["reason"] == ""
    below = _one({"s": "yes", "sp": 0.9, "p": "object", "pp": 0.69, "pn": 4},
                 min_posterior=0.7)
    assert below["verdict"] == "undecided"
    assert below["confidence"] == pytest.approx(0.9 * 0.69)
    assert below["reason"] == "pattern: posterior 0.69 < 0.7 (n=4)"


@pytest.mark.parametrize("label", [None, NAN])
def test_pattern_tie_and_abstentions_are_undecided(label):
    tie = _one({"s": "yes", "sp": 0.8, "p": label, "pp": 0.5, "pn": 2})
    assert tie["verdict"] == "undecided" and tie["confidence"] == pytest.approx(0.4)
    assert tie["reason"] == "pattern: tie between answers (n=2)" and tie["kind"] is None
    none = _one({"s": "yes", "sp": 0.8, "p": label, "pp": NAN, "pn": 0})
    assert none["verdict"] == "undecided" and none["confidence"] == 0.0
    assert none["reason"] == "pattern: no answer but 'unsure'"


@pytest.mark.parametrize(("pattern", "kind"), [("background", "background"), ("mark", "mark"),
                                               ("identity", "identity"), ("other", "other")])
def test_spurious_patterns_carry_their_kind(pattern, kind):
    r = _one({"s": "yes", "sp": 0.8, "p": pattern, "pp": 0.75})
    assert (r["verdict"], r["kind"]) == ("spurious", kind)
    assert r["confidence"] == pytest.approx(0.6) and r["reason"] == ""


def test_a_pattern_value_the_schema_does_not_know_is_spurious_of_kind_other():
    r = _one({"s": "yes", "sp": 1.0, "p": "texture", "pp": 1.0})
    assert (r["verdict"], r["kind"]) == ("spurious", "other")


def test_core_pattern_is_core():
    r = _one({"s": "yes", "sp": 1.0, "p": "object", "pp": 1.0, "n": 1})
    assert (r["verdict"], r["kind"], r["confidence"]) == ("core", None, 1.0)
    assert (r["n_shared"], r["n_pattern"], r["n_workers"]) == (1, 1, 1)


def test_a_study_schema_with_other_field_names_and_a_kindless_spurious_value():
    schema = schema_from_dict({"questions": [
        {"id": "present", "role": "presence", "kind": "choice", "wording": "Shared?",
         "values": [{"value": "y", "label": "Y", "meaning": "pattern"},
                    {"value": "n", "label": "N", "meaning": "no_pattern"}]},
        {"id": "which", "role": "pattern", "kind": "choice", "wording": "Which?",
         "values": [{"value": "thing", "label": "T", "meaning": "core"},
                    {"value": "glitch", "label": "G", "meaning": "spurious"}]}]})
    ag = _ag({"a": {"s": "y", "sp": 1.0, "p": "glitch", "pp": 1.0},
              "b": {"s": "y", "sp": 1.0, "p": "thing", "pp": 1.0},
              "c": {"s": "n", "sp": 1.0},
              "d": {"s": "y", "sp": 0.5, "p": "thing", "pp": 1.0}}, "present", "which")
    v = compute_verdicts(_man("a", "b", "c", "d"), ag, schema=schema).set_index("hit_key")
    assert v["verdict"].to_dict() == {"a": "spurious", "b": "core", "c": "no_pattern",
                                      "d": "undecided"}
    assert v.loc["a", "kind"] == "other"
    assert v.loc["d", "reason"] == "present: posterior 0.5 < 0.6 (n=3)"
    assert v.loc["a", "shared"] == "y" and v.loc["a", "pattern"] == "glitch"
    # the built-in schema does not know these values: 'y' does not mean "pattern"
    assert compute_verdicts(_man("a"), ag.rename(columns=lambda c: c.replace(
        "present", "shared").replace("which", "pattern"))).iloc[0]["verdict"] == "no_pattern"


# --------------------------------------------------------------------------- what a row carries
def test_a_row_carries_the_manifest_and_aggregate_fields():
    ag = _ag({"h": {"s": "yes", "sp": 0.75, "p": "mark", "pp": 0.8, "sv": {"yes": 3, "no": 1},
                    "pv": {"mark": 3}, "smv": "yes", "pmv": "mark", "sn": 4, "pn": 3,
                    "workers": 5}})
    man = _man("h", truth="spurious:mark")
    r = compute_verdicts(man, ag).iloc[0]
    assert (r["class"], r["class_name"], r["feature"], r["rank"], r["layer"]) == (
        0, "c0", 10, 1, "sparse")
    assert r["weight"] == 0.5 and r["kind_of_data"] == "image" and not r["is_gold"]
    assert (r["shared"], r["pattern"]) == ("yes", "mark")
    assert (r["shared_posterior"], r["pattern_posterior"]) == (0.75, 0.8)
    assert r["votes_shared"] == {"yes": 3, "no": 1} and r["votes_pattern"] == {"mark": 3}
    assert (r["shared_mv"], r["pattern_mv"]) == ("yes", "mark")
    assert (r["n_workers"], r["n_shared"], r["n_pattern"], r["n_answered"]) == (5, 4, 3, 5)
    assert (r["truth"], r["truth_match"]) == ("spurious:mark", True)
    assert r["assets"] == {"grid": "assets/h.png"} and r["quotes"] == []
    assert math.isnan(r["self_confidence"])


def test_missing_weight_truth_assets_and_counts():
    man = _man("h").assign(weight=None, truth=NAN, assets="not a dict")
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "object", "pp": 1.0}}).drop(
        columns=["shared_n", "pattern_n"])
    r = compute_verdicts(man, ag).iloc[0]
    assert math.isnan(r["weight"]) and r["truth"] is None and r["truth_match"] is None
    assert r["assets"] == {} and (r["n_shared"], r["n_pattern"]) == (0, 0)


def test_gold_hits_are_left_out_unless_asked_for():
    man = pd.concat([_man("a"), _man("g").assign(is_gold=True), _man("n").assign(is_gold=NAN)],
                    ignore_index=True)
    # read from a CSV the column is float: 1.0 is gold, 0.0 and NaN are not
    as_float = man.assign(is_gold=[0.0, 1.0, NAN])
    assert list(compute_verdicts(as_float, _ag({k: {"s": "no", "sp": 1.0} for k in "agn"}))[
        "hit_key"]) == ["a", "n"]
    ag = _ag({k: {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0} for k in "agn"})
    v = compute_verdicts(man, ag)
    assert list(v["hit_key"]) == ["a", "n"] and not v["is_gold"].any()
    v = compute_verdicts(man, ag, include_gold=True).set_index("hit_key")
    assert v["is_gold"].to_dict() == {"a": False, "g": True, "n": False}
    assert v.loc["g", "verdict"] == "spurious"


def test_no_rows_gives_an_empty_table_with_the_key_columns():
    v = compute_verdicts(_man("g").assign(is_gold=True), _ag({}))
    assert v.empty and list(v.columns) == ["hit_key", "class", "class_name", "feature",
                                           "layer", "is_gold", "verdict", "kind", "truth",
                                           "truth_match"]


# --------------------------------------------------------------------------- answers: quotes
def _answers(rows: list[tuple[str, str, str, dict[str, str]]]) -> pd.DataFrame:
    """(assignment, worker, hit_key, {question: answer}) -> long answers table."""
    return pd.DataFrame([{"hit_key": key, "assignment_id": aid, "worker_id": w,
                          "question": q, "answer": a}
                         for aid, w, key, qa in rows for q, a in qa.items()])


def test_self_confidence_is_the_mean_of_numeric_answers():
    ans = _answers([("A1", "W1", "h", {"confidence": "4"}), ("A2", "W2", "h", {"confidence": "2"}),
                    ("A3", "W3", "h", {"confidence": "sure"}),
                    ("A4", "W4", "x", {"confidence": "1"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "object", "pp": 1.0}})
    v = compute_verdicts(_man("h", "z"), ag, ans).set_index("hit_key")
    assert v.loc["h", "self_confidence"] == 3.0 and math.isnan(v.loc["z", "self_confidence"])
    assert math.isnan(compute_verdicts(_man("h"), ag, ans.iloc[:0]).iloc[0]["self_confidence"])


def test_quotes_are_deduplicated_blank_free_and_capped():
    d = "description"
    ans = _answers([("A1", "W1", "h", {d: "white corner mark"}),
                    ("A2", "W2", "h", {d: "  White Corner Mark "}),
                    ("A3", "W3", "h", {d: "   "}),
                    ("A4", "W4", "h", {d: "corner mark"}),
                    ("A5", "W5", "h", {d: "striped background"}),
                    ("A7", "W7", "h", {d: None}),
                    ("A8", "W8", "h", {d: "dots"}),
                    ("A6", "W6", "x", {d: "elsewhere"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    every = compute_verdicts(_man("h"), ag, ans, n_quotes=10).iloc[0]["quotes"]
    assert every == ["white corner mark", "corner mark", "striped background", "dots"]
    # three by default
    assert compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"] == every[:3]
    assert compute_verdicts(_man("h"), ag, ans, n_quotes=2).iloc[0]["quotes"] == every[:2]
    # a HIT without descriptions, and a pending HIT, quote what they have
    v = compute_verdicts(_man("h", "x", "z"), ag, ans).set_index("hit_key")
    assert v.loc["x", "quotes"] == ["elsewhere"] and v.loc["z", "quotes"] == []


def test_descriptions_differing_beyond_ascii_case_are_distinct_quotes():
    d = "description"
    ans = _answers([("A1", "W1", "h", {d: "weiße Ecke"}), ("A2", "W2", "h", {d: "WEISSE ECKE"}),
                    ("A3", "W3", "h", {d: "Weiße ecke"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    assert sorted(compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"]) == [
        "WEISSE ECKE", "weiße Ecke"]


def test_numeric_descriptions_are_quoted_as_text():
    """An answers table read from a CSV may hold numbers; each one is its own quote."""
    d = "description"
    ans = _answers([("A1", "W1", "h", {d: 42}), ("A2", "W2", "h", {d: 43})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    assert sorted(compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"]) == ["42", "43"]


def test_a_writer_without_a_skill_counts_as_skill_zero():
    d = "description"
    ans = _answers([("A1", "W1", "h", {d: "red dot"}), ("A2", "W2", "h", {d: "blue line"}),
                    ("A3", "W3", "h", {d: "green arc"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    q = compute_verdicts(_man("h"), ag, ans, skills=pd.Series({"W1": 0.5, "W3": -0.5}))
    assert q.iloc[0]["quotes"] == ["red dot", "blue line", "green arc"]


def test_writers_who_agree_with_the_crowd_are_quoted_first():
    d = "description"
    ans = _answers([
        # the most typical text, but its writer said "background": quoted after the agreers
        ("A1", "W1", "h", {"shared": "yes", "pattern": "background", d: "corner mark square"}),
        ("A2", "W2", "h", {"shared": "YES ", "pattern": " Mark", d: "a mark in the corner"}),
        ("A3", "W3", "h", {"shared": "yes", "pattern": "mark", d: "corner mark square box"}),
        ("A4", "W4", "h", {"shared": "no", d: "corner mark square"}),
    ])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    q = compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"]
    assert q[:2] == ["corner mark square box", "a mark in the corner"]
    assert q[2] == "corner mark square"
    # without a crowd label (pending) nobody agrees: the most typical text first
    none = compute_verdicts(_man("h"), _ag({}), ans)
    assert none.iloc[0]["quotes"][0] == "corner mark square"


def test_a_crowd_that_sees_no_pattern_agrees_on_presence_alone():
    d = "description"
    ans = _answers([("A1", "W1", "h", {"shared": "yes", "pattern": "mark", d: "dots and dots"}),
                    ("A2", "W2", "h", {"shared": "no", "pattern": "object", d: "nothing"}),
                    ("A3", "W3", "h", {d: "dots"})])
    ag = _ag({"h": {"s": "no", "sp": 1.0, "p": "mark", "pp": 1.0}})
    q = compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"]
    assert q == ["nothing", "dots and dots", "dots"]


def test_writer_skill_breaks_ties_between_equally_typical_descriptions():
    d = "description"
    ans = _answers([("A1", "W1", "h", {d: "red dot"}), ("A2", "W2", "h", {d: "blue line"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    q = compute_verdicts(_man("h"), ag, ans, skills=pd.Series({"W1": 0.2, "W2": 0.9}))
    assert q.iloc[0]["quotes"] == ["blue line", "red dot"]
    q = compute_verdicts(_man("h"), ag, ans, skills=pd.Series({"W1": 0.9, "W2": 0.2}))
    assert q.iloc[0]["quotes"] == ["red dot", "blue line"]


# --------------------------------------------------------------------------- rank_descriptions
def test_rank_by_overlap_then_skill_then_length():
    texts = ["white corner mark", "corner mark", "stripes", "the corner mark!"]
    # stop words ("the") and punctuation do not count: 1 and 3 are the same tokens
    assert rank_descriptions(texts)[:3] == [3, 1, 0]
    assert rank_descriptions(texts)[-1] == 2
    assert rank_descriptions(["ab", "abc"]) == [1, 0]                    # length
    assert rank_descriptions(["ab", "abc"], [1.0, 0.0]) == [0, 1]        # skill first
    assert rank_descriptions(["ab", "abc"], [NAN, -1.0]) == [0, 1]       # NaN skill counts 0
    assert rank_descriptions(["ab", "abc"], [-1.0, NAN]) == [1, 0]
    assert rank_descriptions(["ab", "abc"], [0.5, NAN]) == [0, 1]
    assert rank_descriptions(["only one"]) == [0] and rank_descriptions([]) == []
    # texts made only of stop words share nothing (no division by zero)
    assert rank_descriptions(["the", "a"]) == [0, 1]


def _jaccard(a: str, b: str) -> Fraction:
    stop = {"a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "is", "are", "it",
            "its", "this", "that", "with", "for", "there"}
    ta = {t for t in "".join(c if c.isalnum() else " " for c in a.lower()).split()
          if t not in stop}
    tb = {t for t in "".join(c if c.isalnum() else " " for c in b.lower()).split()
          if t not in stop}
    return Fraction(len(ta & tb), len(ta | tb)) if ta | tb else Fraction(0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["red", "dot", "corner", "the", "mark", "blue", "a"]),
                         max_size=4).map(" ".join), min_size=1, max_size=6),
       st.data())
def test_rank_is_a_permutation_ordered_by_mean_overlap_skill_and_length(texts, data):
    skills = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=len(texts),
                                max_size=len(texts)))
    order = rank_descriptions(texts, skills)
    assert sorted(order) == list(range(len(texts)))
    n = len(texts)

    def key(i: int) -> tuple[Fraction, float, int]:
        sims = [_jaccard(texts[i], texts[j]) for j in range(n) if j != i]
        return (sum(sims, Fraction(0)) / len(sims) if sims else Fraction(0), skills[i],
                len(texts[i]))

    keys = [key(i) for i in order]
    assert keys == sorted(keys, reverse=True)


def test_equal_mean_overlaps_are_a_tie_even_when_float_sums_differ():
    """'red' (1/2, 1/2, 1/2, 0) and 'red corner' (1/2, 1/3, 1/3, 1/3) both average 3/8; in
    floats the second sums to just under 1.5, which used to rank it below on overlap instead
    of above on length."""
    texts = ["red", "red dot", "red dot", "red corner", "dot corner"]
    assert rank_descriptions(texts) == [1, 2, 3, 0, 4]
    assert rank_descriptions(texts, [1.0, 0.0, 0.0, 0.0, 0.0]) == [1, 2, 0, 3, 4]


# --------------------------------------------------------------------------- truth, findings
@pytest.mark.parametrize(("verdict", "kind", "truth", "want"), [
    ("core", None, "core", True), ("spurious", "mark", "core", False),
    ("no_pattern", None, "none", True), ("core", None, "none", False),
    ("spurious", "mark", "spurious:mark", True), ("spurious", "background", "spurious:mark", False),
    ("core", None, "spurious:mark", False), ("spurious", "identity", "spurious", True),
    ("no_pattern", None, "spurious", False),
    # the kind is everything after the first colon
    ("spurious", "mark", "spurious:mark:v2", False), ("spurious", "v2", "spurious:mark:v2", False),
    ("spurious", "mark:v2", "spurious:mark:v2", True),
    ("undecided", None, "core", None), ("pending", None, "none", None),
    ("core", None, None, None), ("core", None, NAN, None), ("core", None, "unknown", None),
])
def test_truth_matches(verdict, kind, truth, want):
    assert truth_matches(verdict, kind, truth) is want


def test_findings_are_spurious_and_never_gold():
    v = pd.DataFrame({"hit_key": list("abcd"), "verdict": ["spurious", "core", "spurious",
                                                           "spurious"],
                      "is_gold": [False, False, True, NAN]})
    assert list(findings(v)["hit_key"]) == ["a", "d"]
    assert list(findings(v.drop(columns="is_gold"))["hit_key"]) == ["a", "c", "d"]
    empty = v.iloc[:0]
    assert findings(empty) is empty


def test_verdict_of_every_row_is_one_of_the_known_ones():
    rows = {"a": {"s": "yes", "sp": 1.0, "p": "object", "pp": 1.0},
            "b": {"s": None, "sp": 0.5, "sn": 2}, "c": {"s": "no", "sp": 0.9}}
    v = compute_verdicts(_man("a", "b", "c", "d"), _ag(rows))
    assert list(v["verdict"]) == ["core", "undecided", "no_pattern", "pending"]
    assert np.isnan(v.loc[3, "confidence"])


def test_a_writer_who_skipped_the_presence_or_pattern_question_is_quoted_after_the_agreers():
    """A description from an assignment without a presence (or pattern) answer, as external
    CSVs have, used to crash the report (bool of pd.NA); it is quoted, after agreeing ones."""
    d = "description"
    ans = _answers([("A1", "W1", "h", {"pattern": "mark", d: "dot dot"}),
                    ("A2", "W2", "h", {"shared": "yes", d: "dot"}),
                    ("A3", "W3", "h", {"shared": "yes", "pattern": "mark", d: "line"})])
    ag = _ag({"h": {"s": "yes", "sp": 1.0, "p": "mark", "pp": 1.0}})
    assert compute_verdicts(_man("h"), ag, ans).iloc[0]["quotes"] == ["line", "dot dot", "dot"]
