"""The study decision rules (analysis/rules.py) on hand-built answers, item by item.

test_study_report.py runs the rules through whole reports; these pin each rule's edges
directly: the k of k_of_n and the open items of its n, the no-pattern/core tie, the kinds and
their ties, majority's ties, crowd-kit's posterior cutoff, the vote strings, pending items.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from analysis.rules import count_table, decide
from analysis.study import Rule, StudyAnswers
from sparse_probe.questions import Question, Value

Q = Question(id="main", wording="?", kind="choice", values=(
    Value("object", "the object", meaning="core"),
    Value("bg", "the background", meaning="spurious", spurious_kind="background"),
    Value("wm", "a watermark", meaning="spurious", spurious_kind="mark"),
    Value("sky", "the sky", meaning="spurious", spurious_kind="background"),
    Value("none", "nothing", meaning="no_pattern"),
    Value("spot", "a spot", meaning="spurious"),  # no kind given: "other"
))


def _answers(items: dict[str, list[str]], question: Question = Q) -> StudyAnswers:
    """One row per answer (worker w0, w1, ... per item) to ``question``; '-' is an abstention
    (code -1)."""
    codes = {v.value: i for i, v in enumerate(question.values)}
    rows = [{"item": it, "worker": f"w{j}", "main": codes.get(a, -1)}
            for it, answers in items.items() for j, a in enumerate(answers)]
    frame = pd.DataFrame(rows, columns=["item", "worker", "main"]).astype({"main": int})
    return StudyAnswers(rows=frame, items=pd.DataFrame({"item": list(items)}), dropped={},
                        abstentions={}, duplicates=0)


ITEMS = {
    "two_bg": ["bg", "bg", "object"],
    "kinds_tie": ["bg", "wm", "object", "object"],
    "two_bg_kinds": ["bg", "sky", "wm"],  # background 2 (two values of one kind), mark 1
    "np_over_core": ["object", "none", "none"],
    "np_eq_core": ["object", "none"],
    "one_bg": ["bg"],
    "bg_object": ["bg", "object"],
    "abstained": ["-"],
    "many": ["bg", "object", "object", "object"],
    "sp_with_none": ["bg", "bg", "none", "none", "none"],
    "spots": ["spot", "spot"],
}


def _by_item(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index(pd.Index(list(ITEMS)))


def _val(x):
    """A cell with pandas' missing value read as None."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


def test_k_of_n_without_n():
    v = _by_item(decide(_answers(ITEMS), Rule("k_of_n", "main", k=2), Q))
    want = {"two_bg": ("spurious", "background", False),
            "kinds_tie": ("spurious", "background+mark", True),
            "two_bg_kinds": ("spurious", "background", False),
            "np_over_core": ("no_pattern", None, False),
            "np_eq_core": ("core", None, False),  # no_pattern only with more than core
            "one_bg": ("core", None, False), "bg_object": ("core", None, False),
            "abstained": ("pending", None, False), "many": ("core", None, False),
            "sp_with_none": ("spurious", "background", False),  # k reached: no_pattern aside
            "spots": ("spurious", "other", False)}
    for item, (verdict, kind, kind_tie) in want.items():
        assert (v.loc[item, "verdict"], _val(v.loc[item, "kind"]),
                bool(v.loc[item, "kind_tie"])) == (verdict, kind, kind_tie), item
    assert v["label"].isna().all()  # k_of_n decides on meanings, not on a value
    assert v.loc["kinds_tie", ["n_answers", "n_spurious", "n_core", "n_no_pattern"]].tolist() \
        == [4, 2, 2, 0]
    assert v.loc["two_bg_kinds", "n_spurious"] == 3
    assert v.loc["abstained", "n_answers"] == 0 and np.isnan(v.loc["abstained", "posterior"])
    assert v.loc["two_bg", "posterior"] == pytest.approx(2 / 3)  # the top value's share
    assert v.loc["kinds_tie", "votes"] == "object:2 bg:1 wm:1"
    assert v.loc["two_bg_kinds", "votes"] == "bg:1 wm:1 sky:1"
    assert v.loc["abstained", "votes"] == ""
    # plurality ties, reported by every rule: the 1-1-1 of two_bg_kinds, the 1-1 of
    # np_eq_core and bg_object (kinds_tie's object 2 against bg 1 and wm 1 is none)
    assert v["plurality_tie"].tolist() == [False, False, True, False, True, False, True,
                                           False, False, False, False]
    assert v["tie"].dtype == v["kind_tie"].dtype == v["plurality_tie"].dtype == bool
    assert not v["tie"].any()
    assert v.loc["one_bg", "posterior"] == 1.0  # one answer: a share of 1
    k1 = _by_item(decide(_answers(ITEMS), Rule("k_of_n", "main"), Q))  # k defaults to 1
    assert k1.loc["one_bg", "verdict"] == "spurious" and k1.loc["many", "verdict"] == "spurious"


def test_k_of_n_leaves_open_items_undecided():
    """With n = 3 answers expected, an item whose missing answers could still reach k is
    undecided (exactly reaching it counts); one with at least n answers is decided."""
    v = _by_item(decide(_answers(ITEMS), Rule("k_of_n", "main", k=2, n=3), Q))
    assert v.loc["one_bg", "verdict"] == "undecided"  # 1 + 2 missing >= 2
    assert v.loc["bg_object", "verdict"] == "undecided"  # 1 + 1 missing = 2: still open
    assert v.loc["np_eq_core", "verdict"] == "core"  # 0 + 1 missing < 2: decided
    assert v.loc["many", "verdict"] == "core"  # 4 answers, more than n: nothing missing
    assert v.loc["two_bg", "verdict"] == "spurious" and v.loc["abstained", "verdict"] == "pending"


def test_majority_takes_the_plurality_value_and_leaves_ties_undecided():
    v = _by_item(decide(_answers(ITEMS), Rule("majority", "main"), Q))
    assert (v.loc["two_bg", "verdict"], v.loc["two_bg", "label"], v.loc["two_bg", "kind"]) == \
        ("spurious", "bg", "background")
    assert v.loc["np_over_core", ["verdict", "label"]].tolist() == ["no_pattern", "none"]
    assert v.loc["many", ["verdict", "label"]].tolist() == ["core", "object"]
    for item in ("bg_object", "np_eq_core", "two_bg_kinds"):  # 1-1 and 1-1-1 splits
        assert v.loc[item, "verdict"] == "undecided" and bool(v.loc[item, "tie"]), item
        assert _val(v.loc[item, "label"]) is None
    assert v.loc["abstained", "verdict"] == "pending" and not v.loc["abstained", "tie"]
    assert v.loc["one_bg", ["verdict", "kind"]].tolist() == ["spurious", "background"]
    assert v.loc["many", "posterior"] == pytest.approx(0.75)
    assert v.loc["spots", ["verdict", "kind"]].tolist() == ["spurious", "other"]
    assert v.loc["sp_with_none", ["verdict", "label"]].tolist() == ["no_pattern", "none"]
    assert v["tie"].dtype == bool


@pytest.mark.parametrize("cutoff,verdict", [(0.6, "spurious"), (2 / 3, "spurious"),
                                            (0.7, "undecided")])
def test_crowdkit_rule_keeps_a_label_only_at_its_posterior_cutoff(cutoff, verdict):
    """crowd-kit's majority vote: bg at 2 of 3 answers (posterior 2/3) is spurious from a
    cutoff of 2/3 down, undecided above it; no answers: pending."""
    rule = Rule("MajorityVote", "main", min_posterior=cutoff)
    v = _by_item(decide(_answers(ITEMS), rule, Q))
    assert v.loc["two_bg", "label"] == "bg"
    assert v.loc["two_bg", "posterior"] == pytest.approx(2 / 3)
    assert v.loc["two_bg", "verdict"] == verdict
    assert _val(v.loc["two_bg", "kind"]) == ("background" if verdict == "spurious" else None)
    assert v.loc["abstained", "verdict"] == "pending"
    assert _val(v.loc["abstained", "label"]) is None
    assert v.loc["many", ["verdict", "label"]].tolist() == ["core", "object"]


def test_crowdkit_rule_passes_its_seed_and_parameters(monkeypatch):
    aggregate = importlib.import_module("analysis.aggregate")  # the package exports a function
    seen = []
    real = aggregate.aggregate_question

    def spy(data, method, seed, params):
        seen.append((method, seed, params))
        return real(data, "MajorityVote", seed, None)

    monkeypatch.setattr(aggregate, "aggregate_question", spy)
    decide(_answers(ITEMS), Rule("GLAD", "main", seed=7, params={"n_iter": 5}), Q)
    decide(_answers(ITEMS), Rule("GLAD", "main", seed=3), Q)
    assert seen == [("GLAD", 7, {"n_iter": 5}), ("GLAD", 3, None)]


def test_the_verdicts_keep_the_items_index():
    answers = _answers(ITEMS)
    answers.items.index = pd.Index(np.arange(len(ITEMS)) * 10 + 5)
    assert decide(answers, Rule("k_of_n", "main", k=2), Q).index.equals(answers.items.index)


def test_questions_of_one_or_two_values_or_no_spurious_value():
    """Two values: a 1-1 split is a plurality tie; one value: never a tie; no spurious value:
    k_of_n decides on core and no pattern alone."""
    two = Question(id="main", wording="?", kind="choice", values=(
        Value("object", "o", meaning="core"), Value("bg", "b", meaning="spurious")))
    one = Question(id="main", wording="?", kind="choice", values=(
        Value("object", "o", meaning="core"),))
    plain = Question(id="main", wording="?", kind="choice", values=(
        Value("object", "o", meaning="core"), Value("none", "n", meaning="no_pattern")))

    def run(q, items, rule):
        return decide(_answers(items, q), rule, q)

    v = run(two, {"a": ["object", "bg"], "b": ["bg", "bg"]}, Rule("majority", "main"))
    assert v["plurality_tie"].tolist() == [True, False]
    assert v["verdict"].tolist() == ["undecided", "spurious"]
    v = run(one, {"a": ["object"], "b": ["object", "object"]}, Rule("majority", "main"))
    assert v["plurality_tie"].tolist() == [False, False] and v["plurality_tie"].dtype == bool
    assert v["verdict"].tolist() == ["core", "core"]
    v = run(plain, {"a": ["none", "none", "object"], "b": ["object"]},
            Rule("k_of_n", "main", k=1))
    assert v["verdict"].tolist() == ["no_pattern", "core"]
    assert [_val(k) for k in v["kind"]] == [None, None]


def test_count_table_leaves_abstentions_out():
    counts = count_table(np.array([0, 0, 1, 1, 2]), np.array([1, -1, 0, 0, 2]), 4, 3)
    np.testing.assert_array_equal(counts, [[0, 1, 0], [2, 0, 0], [0, 0, 1], [0, 0, 0]])
