"""Aggregation: crowd-kit called directly and hand-computed majority votes are the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import GLAD, DawidSkene, MajorityVote
from helpers_analysis import make_manifest, simulate_answers

from analysis.aggregate import aggregate, aggregate_question, majority_vote, to_crowdkit
from analysis.verdicts import compute_verdicts, rank_descriptions

# crowd-kit 1.4 itself (called directly here as the reference) uses pandas' deprecated inplace=
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:crowdkit")


def long(rows):
    """(hit, worker, question, answer) tuples -> long table."""
    return pd.DataFrame([
        {"hit_key": h, "hit_id": h, "assignment_id": f"{h}:{w}", "worker_id": w,
         "question": q, "answer": a, "submit_time": "2026-01-01", "work_seconds": 30.0}
        for h, w, q, a in rows])


HAND = long([
    # t1: yes 3 / no 1 -> yes (3/4)
    ("t1", "a", "shared", "yes"), ("t1", "b", "shared", "yes"), ("t1", "c", "shared", "Yes "),
    ("t1", "d", "shared", "no"),
    # t2: tie yes 1 / no 1, plus an abstention -> tie, no label
    ("t2", "a", "shared", "yes"), ("t2", "b", "shared", "no"), ("t2", "c", "shared", "unsure"),
    # t3: only abstentions and an empty answer -> no label at all
    ("t3", "a", "shared", "unsure"), ("t3", "b", "shared", ""),
    # t4: no 2 / yes 1
    ("t4", "a", "shared", "no"), ("t4", "b", "shared", "no"), ("t4", "d", "shared", "yes"),
])


def test_majority_vote_by_hand():
    out = aggregate(HAND, method="MajorityVote", questions=("shared",))
    assert out.loc["t1", "shared"] == "yes"
    assert out.loc["t1", "shared_posterior"] == pytest.approx(3 / 4)
    assert out.loc["t1", "shared_votes"] == {"yes": 3, "no": 1}
    assert out.loc["t2", "shared"] is None and bool(out.loc["t2", "shared_mv_tie"])
    assert out.loc["t2", "shared_votes"] == {"yes": 1, "no": 1, "unsure": 1}
    assert out.loc["t3", "shared"] is None
    assert out.loc["t3", "shared_abstain"] == 2 and out.loc["t3", "shared_n"] == 0
    assert out.loc["t4", "shared"] == "no"
    assert out.loc["t4", "shared_posterior"] == pytest.approx(2 / 3)


def test_majority_vote_matches_crowdkit_where_no_tie():
    data, _ = to_crowdkit(HAND, "shared")
    ours = majority_vote(data)
    ref = MajorityVote().fit_predict(data)
    for task in ["t1", "t4"]:
        assert ours.loc[task, "label"] == ref[task]
    ref_p = MajorityVote().fit(data).probas_
    assert ours.loc["t1", "share"] == pytest.approx(ref_p.loc["t1", "yes"])


@pytest.mark.slow
@pytest.mark.parametrize(("method", "cls", "kw"), [
    ("DawidSkene", DawidSkene, {"n_iter": 100}),
    ("GLAD", GLAD, {"n_iter": 5}),
])
def test_matches_crowdkit_directly(method, cls, kw):
    ans = simulate_answers(make_manifest(), n_good=4, n_spam=2, accuracy=0.75, seed=3)
    data, _ = to_crowdkit(ans, "shared")
    ref = cls(**kw)
    ref_labels = ref.fit_predict(data)
    ours = aggregate_question(data, method, params=kw)
    probas = ref.probas_
    top2 = np.sort(probas.to_numpy(), axis=1)[:, -2:]
    decided = ~np.isclose(top2[:, 0], top2[:, 1])
    for task, ok in zip(probas.index, decided, strict=True):
        if ok:
            assert ours.loc[task, "label"] == ref_labels[task]
            assert ours.loc[task, "posterior"] == pytest.approx(
                probas.loc[task, ref_labels[task]], rel=1e-6)


@pytest.mark.slow
def test_pattern_only_from_assignments_that_saw_a_pattern():
    rows = long([("t", "a", "shared", "yes"), ("t", "a", "pattern", "mark"),
                 ("t", "b", "shared", "no"), ("t", "b", "pattern", "object"),
                 ("t", "c", "shared", "no"), ("t", "c", "pattern", "object")])
    out = aggregate(rows, method="MajorityVote")
    assert out.loc["t", "pattern_votes"] == {"mark": 1}
    assert out.loc["t", "shared"] == "no"


def test_unknown_method_is_a_clear_error():
    data, _ = to_crowdkit(HAND, "shared")
    with pytest.raises(ValueError, match="unknown aggregation method"):
        aggregate_question(data, "Bogus")


@pytest.mark.slow
@pytest.mark.parametrize(("method", "params"), [
    ("MajorityVote", None), ("Wawa", None), ("DawidSkene", None),
    ("GLAD", {"n_iter": 15, "silent": True}), ("MACE", {"n_restarts": 1, "n_iter": 15}),
])
def test_all_methods_flag_planted_features(method, params):
    manifest = make_manifest()
    ans = simulate_answers(manifest, n_good=5, n_spam=0, accuracy=0.95, seed=1)
    man = pd.DataFrame(manifest)
    agg = aggregate(ans, method=method, params=params)
    v = compute_verdicts(man, agg, ans)
    real = v[~v["is_gold"]]
    assert real["truth_match"].all(), (method, real[["hit_key", "verdict", "truth"]])


def test_verdict_rules():
    man = pd.DataFrame(make_manifest(features=[(0, 1, "core"), (0, 2, "spurious:mark"),
                                               (0, 3, "none"), (0, 4, "core"), (0, 5, "core")],
                                     gold=[]))
    keys = list(man["hit_key"])
    rows = []
    for w in "abc":
        rows += [(keys[0], w, "shared", "yes"), (keys[0], w, "pattern", "object")]
        rows += [(keys[1], w, "shared", "yes"), (keys[1], w, "pattern", "mark")]
        rows += [(keys[2], w, "shared", "no")]
    rows += [(keys[3], "a", "shared", "yes"), (keys[3], "b", "shared", "no")]  # tie
    rows += [(keys[1], "d", "shared", "no"), (keys[1], "d", "description", "a white mark, maybe"),
             (keys[1], "a", "description", "nothing at all"),
             (keys[1], "b", "description", "white mark in corner")]
    agg = aggregate(long(rows), method="MajorityVote")
    v = compute_verdicts(man, agg, long(rows)).set_index("hit_key")
    assert v.loc[keys[0], "verdict"] == "core"
    assert (v.loc[keys[1], "verdict"], v.loc[keys[1], "kind"]) == ("spurious", "mark")
    assert v.loc[keys[2], "verdict"] == "no_pattern"
    assert v.loc[keys[3], "verdict"] == "undecided"
    assert v.loc[keys[4], "verdict"] == "pending"
    assert v.loc[keys[1], "votes_pattern"] == {"mark": 3}
    # writers who agree with the crowd come first, then the most typical description
    assert v.loc[keys[1], "quotes"] == ["white mark in corner", "nothing at all",
                                        "a white mark, maybe"]


def test_representative_description_first():
    texts = ["white square in the corner", "a white corner square", "cat", "corner white mark"]
    order = rank_descriptions(texts)
    assert order[-1] == 2
    assert order[0] in (0, 1, 3)
    # skills break ties between equally typical descriptions
    assert rank_descriptions(["x y", "x y"], skills=[0.1, 0.9])[0] == 1


# ------------------------------------------------------------------ property: majority vote
from collections import Counter  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from analysis.aggregate import ABSTAIN  # noqa: E402

_SHARED = ["yes", "no", "Yes ", " NO", "unsure", "", "n/a", "Not sure"]
_PATTERN = ["a", "b", "B", "c", "none", ""]


@st.composite
def answer_tables(draw):
    """Small long tables: up to 4 HITs x 4 workers, some workers answering twice."""
    rows = []
    n = draw(st.integers(1, 24))
    times = draw(st.permutations(range(n)))
    for i in range(n):
        h = draw(st.sampled_from(["t0", "t1", "t2", "t3"]))
        w = draw(st.sampled_from(["w0", "w1", "w2", "w3"]))
        a = f"{h}:{w}:{draw(st.integers(0, 1))}"  # a repeated assignment id is a resubmission
        rows.append({"hit_key": h, "hit_id": h, "assignment_id": a, "worker_id": w,
                     "question": "shared", "answer": draw(st.sampled_from(_SHARED)),
                     "submit_time": f"2026-01-01T00:00:{times[i]:02d}", "work_seconds": 1.0})
        if draw(st.booleans()):
            rows.append({**rows[-1], "question": "pattern",
                         "answer": draw(st.sampled_from(_PATTERN))})
    return pd.DataFrame(rows)


def brute_force(table: pd.DataFrame, question: str) -> dict:
    """Per HIT: the first submitted answer of each worker, cleaned, counted by hand."""
    yes = {r["assignment_id"] for _, r in table.iterrows()
           if r["question"] == "shared" and r["answer"].strip().lower() == "yes"}
    first: dict[tuple, tuple] = {}
    for _, r in table.iterrows():
        if r["question"] != question:
            continue
        if question == "pattern" and r["assignment_id"] not in yes:
            continue
        key = (r["hit_key"], r["worker_id"])
        if key not in first or r["submit_time"] < first[key][0]:
            first[key] = (r["submit_time"], r["answer"].strip().lower())
    out = {}
    for h in sorted(set(table["hit_key"])):
        labels = [lab for (t, _), (_, lab) in first.items() if t == h]
        counts = Counter(lab for lab in labels if lab not in ABSTAIN)
        abstain = sum(lab in ABSTAIN for lab in labels)
        if counts:
            top = max(counts.values())
            winners = [lab for lab, c in counts.items() if c == top]
            label = winners[0] if len(winners) == 1 else None
            share = top / sum(counts.values())
        else:
            label, share = None, float("nan")
        votes = dict(counts) | ({"unsure": abstain} if abstain else {})
        workers = len({w for t, w in zip(table["hit_key"], table["worker_id"], strict=True)
                       if t == h})
        out[h] = (label, share, len(winners) > 1 if counts else False, votes,
                  sum(counts.values()), abstain, workers)
    return out


@settings(max_examples=50, deadline=None)
@given(answer_tables())
def test_majority_vote_matches_a_brute_force_count(table):
    agg = aggregate(table, method="MajorityVote")
    assert list(agg.index) == sorted(set(table["hit_key"]))
    for q in ("shared", "pattern"):
        for h, (label, share, tie, votes, n, abstain, workers) in brute_force(table, q).items():
            row = agg.loc[h]
            assert row[q] == label
            # the majority column is missing (None or NaN) where no label was given
            assert pd.isna(row[f"{q}_mv"]) if label is None else row[f"{q}_mv"] == label
            if np.isnan(share):
                assert np.isnan(row[f"{q}_posterior"])
            else:
                assert row[f"{q}_posterior"] == pytest.approx(share)
            assert bool(row[f"{q}_mv_tie"]) is tie
            assert row[f"{q}_votes"] == votes
            assert (row[f"{q}_n"], row[f"{q}_abstain"], row["n_workers"]) == (n, abstain, workers)


def test_majority_vote_exactly_half_is_a_tie_one_more_is_not():
    data = pd.DataFrame({"task": ["t"] * 4, "worker": list("abcd"),
                         "label": ["yes", "yes", "no", "no"]})
    mv = majority_vote(data)
    assert mv.loc["t", "label"] is None and bool(mv.loc["t", "tie"])
    assert mv.loc["t", "share"] == 0.5 and mv.loc["t", "n"] == 4
    data = pd.concat([data, pd.DataFrame({"task": ["t"], "worker": ["e"], "label": ["no"]})])
    mv = majority_vote(data)
    assert mv.loc["t", "label"] == "no" and not bool(mv.loc["t", "tie"])
    assert mv.loc["t", "share"] == pytest.approx(3 / 5)
    assert mv.loc["t", "votes"] == {"no": 3, "yes": 2}


# ------------------------------------------------------------------ edges of each function
from analysis.aggregate import DEFAULT_PARAMS, METHODS, worker_skills  # noqa: E402


def _data(rows):
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_methods_and_default_hyperparameters():
    assert METHODS == ("MajorityVote", "Wawa", "DawidSkene", "GLAD", "MACE")
    assert DEFAULT_PARAMS == {"DawidSkene": {"n_iter": 100},
                              "GLAD": {"n_iter": 100, "silent": True},
                              "MACE": {"n_restarts": 2, "n_iter": 50}}


def test_unknown_method_message_lists_the_methods():
    with pytest.raises(ValueError) as e:
        aggregate_question(_data([("t", "a", "yes")]), "Bogus")
    assert str(e.value) == ("method: unknown aggregation method 'Bogus'; expected one of "
                            f"{METHODS}")


@pytest.mark.parametrize("method", METHODS)
def test_no_data_gives_an_empty_table(method):
    out = aggregate_question(_data([]), method)
    assert out.empty and list(out.columns) == ["label", "posterior"]


@pytest.mark.parametrize("method", ["Wawa", "DawidSkene", "MACE"])
def test_one_observed_label_is_certain(method):
    out = aggregate_question(_data([("t2", "a", "yes"), ("t1", "b", "yes"), ("t1", "a", "yes")]),
                             method)
    assert list(out.index) == ["t1", "t2"]
    assert out["label"].tolist() == ["yes", "yes"] and out["posterior"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("method", ["DawidSkene"])
def test_an_even_split_is_a_tie_not_a_decision(method):
    data = _data([("t1", "a", "yes"), ("t1", "b", "no"),
                  ("t2", "a", "yes"), ("t2", "b", "yes"), ("t2", "c", "yes"),
                  ("t3", "a", "no"), ("t3", "b", "no"), ("t3", "c", "no")])
    out = aggregate_question(data, method)
    assert out.loc["t1", "label"] is None
    assert out.loc["t2", "label"] == "yes" and out.loc["t3", "label"] == "no"
    assert out.loc["t2", "posterior"] > 0.5 and out.loc["t3", "posterior"] > 0.5
    assert list(out.index) == ["t1", "t2", "t3"]


def test_majority_vote_method_reports_the_vote_share():
    data = _data([("t1", "a", "yes"), ("t1", "b", "yes"), ("t1", "c", "no"),
                  ("t2", "a", "no"), ("t2", "b", "yes")])
    out = aggregate_question(data, "MajorityVote")
    assert out.loc["t1", "label"] == "yes" and out.loc["t1", "posterior"] == pytest.approx(2 / 3)
    assert pd.isna(out.loc["t2", "label"]) and out.loc["t2", "posterior"] == 0.5


def test_mace_seed_is_reproducible():
    ans = simulate_answers(make_manifest(), n_good=3, n_spam=2, accuracy=0.7, seed=5)
    data, _ = to_crowdkit(ans, "shared")
    kw = {"n_restarts": 1, "n_iter": 5}
    a = aggregate_question(data, "MACE", seed=1, params=kw)
    b = aggregate_question(data, "MACE", seed=1, params=kw)
    pd.testing.assert_frame_equal(a, b)


def test_to_crowdkit_keeps_first_row_without_submit_times_and_pattern_without_presence():
    rows = long([("t", "a", "pattern", "mark"), ("t", "a", "pattern", "object"),
                 ("t", "b", "pattern", "Object")]).drop(columns="submit_time")
    data, abstain = to_crowdkit(rows, "pattern")
    # no presence answers in the table at all: pattern answers are not filtered
    assert data.values.tolist() == [["t", "a", "mark"], ["t", "b", "object"]]
    assert abstain.empty


def test_to_crowdkit_first_submission_wins_and_abstentions_are_counted():
    rows = long([("t", "a", "shared", "no"), ("t", "a", "shared", "yes"),
                 ("t", "b", "shared", "Don't know"), ("u", "c", "shared", "none")])
    rows["submit_time"] = ["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-01"]
    data, abstain = to_crowdkit(rows, "shared")
    assert data.values.tolist() == [["t", "a", "yes"]]
    assert abstain.to_dict() == {"t": 1, "u": 1}


def test_empty_answer_table():
    out = aggregate(long([]).reindex(columns=["hit_key", "hit_id", "assignment_id", "worker_id",
                                              "question", "answer", "submit_time"]),
                    method="MajorityVote")
    assert len(out) == 0 and "n_workers" in out.columns and "shared_votes" in out.columns


def test_worker_skills_is_agreement_with_the_aggregated_label():
    rows = long([("t1", "a", "shared", "yes"), ("t1", "b", "shared", "yes"),
                 ("t1", "c", "shared", "no"), ("t2", "a", "shared", "no"),
                 ("t2", "b", "shared", "no"), ("t2", "c", "shared", "no"),
                 ("t3", "a", "shared", "yes"), ("t3", "b", "shared", "no")])  # t3 tied
    agg = aggregate(rows, method="MajorityVote")
    skills = worker_skills(rows, agg)
    # t3 has no label and does not count
    assert skills.to_dict() == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert skills.equals(worker_skills(rows, agg, "shared"))
    assert worker_skills(rows, agg, "pattern").empty
    assert worker_skills(rows, agg.drop(columns="shared")).empty


# ------------------------------------------------------------------ survivors of the first run
def test_defaults_are_dawid_skene_and_hit_key_index():
    rows = long([("t2", "a", "shared", "yes"), ("t2", "b", "shared", "no"),
                 ("t1", "a", "shared", "yes"), ("t1", "b", "shared", "yes"),
                 ("t1", "c", "shared", None)])
    out = aggregate(rows)
    pd.testing.assert_frame_equal(out, aggregate(rows, "DawidSkene", seed=0))
    assert out.index.name == "hit_key" and list(out.index) == ["t1", "t2"]
    assert out["shared_n"].dtype == np.int64 and out["shared_abstain"].dtype == np.int64
    assert out["n_workers"].dtype == np.int64 and out["shared_mv_tie"].dtype == bool
    assert out["shared_posterior"].dtype == np.float64
    # a missing answer is an abstention
    assert out.loc["t1", "shared_abstain"] == 1 and out.loc["t1", "shared_votes"] == {
        "yes": 2, "unsure": 1}
    data, _ = to_crowdkit(rows, "shared")
    pd.testing.assert_frame_equal(aggregate_question(data),
                                  aggregate_question(data, "DawidSkene", 0))


def test_questions_argument_limits_the_columns():
    out = aggregate(HAND, method="MajorityVote", questions=("shared",))
    assert not any(c.startswith("pattern") for c in out.columns)


def test_params_reach_the_crowdkit_model():
    data = _data([("t1", "a", "yes"), ("t1", "b", "no"), ("t2", "a", "no")])
    with pytest.raises(TypeError):
        aggregate_question(data, "DawidSkene", params={"no_such_option": 1})
    with pytest.raises(TypeError):
        aggregate(long([("t1", "a", "shared", "yes"), ("t1", "b", "shared", "no")]),
                  "DawidSkene", questions=("shared",), params={"no_such_option": 1})


def test_a_single_answer_is_certain():
    out = aggregate_question(_data([("t", "a", "yes")]), "DawidSkene")
    assert out.loc["t", "label"] == "yes" and out.loc["t", "posterior"] == 1.0


def test_posterior_of_every_task_is_crowdkits_probability_of_the_label():
    data = _data([("t1", "a", "yes"), ("t1", "b", "no"),
                  ("t2", "a", "yes"), ("t2", "b", "yes"), ("t2", "c", "yes"),
                  ("t3", "a", "no"), ("t3", "b", "no"), ("t3", "c", "no")])
    out = aggregate_question(data, "DawidSkene")
    ref = DawidSkene(n_iter=100)
    labels = ref.fit_predict(data)
    for t in ["t1", "t2", "t3"]:
        assert out.loc[t, "posterior"] == pytest.approx(ref.probas_.loc[t, labels[t]], rel=1e-9)
    assert out.loc["t1", "posterior"] == pytest.approx(0.5)


def test_wawa_weights_workers_by_agreement_with_the_majority():
    # a and b are in the minority on t2..t4 (skill 1/4), c always with it (3/4): on t1
    # c's "no" outweighs a and b's "yes", which a plain majority would pick
    rows = [("t1", "a", "yes"), ("t1", "b", "yes"), ("t1", "c", "no")]
    for t in ("t2", "t3", "t4"):
        rows += [(t, "a", "no"), (t, "b", "no"), (t, "c", "yes"), (t, "d", "yes"),
                 (t, "e", "yes")]
    data = _data(rows)
    assert aggregate_question(data, "MajorityVote").loc["t1", "label"] == "yes"
    assert aggregate_question(data, "Wawa").loc["t1", "label"] == "no"


def test_majority_vote_table_order_and_empty_columns():
    empty = majority_vote(_data([]))
    assert empty.empty and list(empty.columns) == ["label", "share", "tie", "votes", "n"]
    mv = majority_vote(_data([("t2", "a", "yes"), ("t1", "a", "yes"), ("t1", "b", "no"),
                              ("t1", "c", "maybe")]))
    assert list(mv.index) == ["t1", "t2"]
    assert list(mv.loc["t1", "votes"]) == ["maybe", "no", "yes"]


def test_worker_skills_empty_is_float():
    rows = long([("t1", "a", "shared", "yes"), ("t1", "b", "shared", "no")])
    agg = aggregate(rows, method="MajorityVote")  # a tie: no label to agree with
    assert worker_skills(rows, agg).dtype == np.float64
    assert worker_skills(rows, agg.drop(columns="shared")).dtype == np.float64


@pytest.mark.parametrize("method", ["MajorityVote", "DawidSkene"])
def test_hit_answered_only_unsure_is_no_tie_and_no_label(method):
    """A HIT whose every worker abstained has no votes: no label, no tie (a tie means
    votes split evenly), zero labels counted, the abstentions counted."""
    rows = long([("t1", "a", "shared", "yes"), ("t1", "b", "shared", "yes"),
                 ("t2", "a", "shared", "unsure"), ("t2", "b", "shared", "Don't know"),
                 ("t3", "a", "shared", "yes"), ("t3", "b", "shared", "no")])
    out = aggregate(rows, method=method, questions=("shared",))
    assert out.loc["t2", "shared"] is None
    assert not out.loc["t2", "shared_mv_tie"] and out.loc["t3", "shared_mv_tie"]
    assert out.loc["t2", "shared_n"] == 0 and out.loc["t2", "shared_abstain"] == 2
    assert out.loc["t2", "shared_votes"] == {"unsure": 2}
    assert out["shared_mv_tie"].dtype == bool


def test_empty_answer_table_has_the_columns_and_dtypes_of_a_full_one():
    """Code that reads the aggregate (verdicts, the report) sees the same columns and dtypes
    whether or not any answer has come in yet."""
    cols = ["hit_key", "hit_id", "assignment_id", "worker_id", "question", "answer",
            "submit_time", "work_seconds"]
    empty = aggregate(long([]).reindex(columns=cols), method="MajorityVote")
    full = aggregate(HAND, method="MajorityVote")
    assert list(empty.columns) == list(full.columns)
    for c in ("n_workers", "shared_n", "shared_abstain", "shared_mv_tie", "shared_posterior"):
        assert empty[c].dtype == full[c].dtype, c
