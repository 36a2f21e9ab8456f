"""Quality control: gold accuracy, attention checks, work-time outliers, exclusion table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers_analysis import make_manifest, simulate_answers

from analysis.quality import QCConfig, assignment_checks, quality_control
from sparse_probe.quality import ANONYMOUS_PREFIX, name_anonymous


@pytest.fixture
def data():
    manifest = make_manifest()
    ans = simulate_answers(manifest, n_good=4, n_spam=2, accuracy=1.0, seed=0)
    return pd.DataFrame(manifest), ans


def test_spammers_excluded_with_reasons(data):
    man, ans = data
    qc = quality_control(ans, man)
    ex = qc.excluded.set_index("worker_id")
    assert set(ex.index) == {"S00SPAM", "S01SPAM"}
    assert all("attention" in r and "too fast" in r for r in ex["reason"])
    w = qc.workers.set_index("worker_id")
    assert w.loc["W00GOOD", "gold_accuracy"] == 1.0 and w.loc["W00GOOD", "n_gold"] == 2
    assert w.loc["S00SPAM", "attention_rate"] == 0.0
    assert set(qc.kept["worker_id"]) == {f"W0{i}GOOD" for i in range(4)}


@pytest.mark.slow
def test_gold_accuracy_by_hand(data):
    man, ans = data
    gold_key = man.loc[man["is_gold"], "hit_key"].iloc[0]  # gold: shared yes, pattern mark
    wrong = (ans["hit_key"] == gold_key) & (ans["worker_id"] == "W01GOOD") & (
        ans["question"] == "pattern")
    ans = ans.copy()
    ans.loc[wrong, "answer"] = "Background"
    checks = assignment_checks(ans, man)
    w1 = checks[(checks["worker_id"] == "W01GOOD") & checks["gold_correct"].notna()]
    assert sorted(w1["gold_correct"].astype(bool)) == [False, True]
    qc = quality_control(ans, man, QCConfig(min_gold_accuracy=0.75))
    assert "W01GOOD" in set(qc.excluded["worker_id"])
    assert "gold accuracy 0.50 < 0.75" in qc.excluded.set_index("worker_id").loc[
        "W01GOOD", "reason"]
    # a gold that says "no shared pattern" ignores the pattern field
    gold_no = man.loc[man["is_gold"], "hit_key"].iloc[1]
    ans.loc[(ans["hit_key"] == gold_no) & (ans["question"] == "pattern"), "answer"] = "mark"
    checks = assignment_checks(ans, man).query("hit_key == @gold_no")
    assert checks.loc[checks["worker_id"].str.endswith("GOOD"), "gold_correct"].all()


@pytest.mark.slow
def test_time_rule_and_config(data):
    man, ans = data
    honest = ans[~ans["worker_id"].str.endswith("SPAM")]
    qc = quality_control(honest, man, QCConfig(min_seconds=10_000, max_fast_share=0.5))
    assert qc.excluded["reason"].str.contains("too fast").all() and len(qc.excluded) == 4
    qc = quality_control(ans, man, QCConfig(require_attention=False, max_fast_share=1.0,
                                            min_gold_accuracy=0.0))
    assert qc.excluded.empty
    checks = assignment_checks(ans, man)
    spam_z = checks.loc[checks["worker_id"].str.endswith("SPAM"), "robust_z"]
    assert (spam_z < -3).all()
    # robust z by hand: log times, median, 1.4826 * MAD
    logt = np.log(checks["work_seconds"].to_numpy())
    mad = 1.4826 * np.median(np.abs(logt - np.median(logt)))
    assert np.allclose(checks["robust_z"], (logt - np.median(logt)) / mad)
    qc = quality_control(ans, man, QCConfig(min_time_fraction=0.0, min_robust_z=-3.0,
                                            require_attention=False, min_gold_accuracy=0.0))
    assert set(qc.excluded["worker_id"]) == {"S00SPAM", "S01SPAM"}


def test_no_answers(data):
    man, ans = data
    qc = quality_control(ans.iloc[:0], man)
    assert qc.workers.empty and qc.kept.empty


def test_answers_without_a_worker_id_are_each_a_worker_of_their_own(data):
    man, ans = data
    ans = ans.copy()
    # a spammer's and an honest worker's ids lost (a hand-made CSV): missing and blank
    ans["worker_id"] = ans["worker_id"].astype(object)
    ans.loc[ans["worker_id"] == "S00SPAM", "worker_id"] = np.nan
    ans.loc[ans["worker_id"] == "W00GOOD", "worker_id"] = " "
    qc = quality_control(ans, man)
    anon = qc.workers[qc.workers["worker_id"].str.startswith(ANONYMOUS_PREFIX)]
    # one row per anonymous assignment, none pooled, none dropped from quality control
    n_spam = ans.loc[ans["worker_id"].isna(), "assignment_id"].nunique()
    n_good = ans.loc[ans["worker_id"] == " ", "assignment_id"].nunique()
    assert len(anon) == n_spam + n_good and (anon["n_assignments"] == 1).all()
    # the spammer's assignments are still too fast, each on its own; the honest ones are kept
    spam_ids = {ANONYMOUS_PREFIX + a
                for a in ans.loc[ans["worker_id"].isna(), "assignment_id"].astype(str)}
    excluded = set(qc.excluded["worker_id"])
    assert spam_ids <= excluded and "S01SPAM" in excluded
    assert not (excluded & set(anon["worker_id"]) - spam_ids)
    kept = qc.kept
    assert kept["worker_id"].notna().all() and not kept["worker_id"].str.strip().eq("").any()
    assert kept.loc[kept["worker_id"].str.startswith(ANONYMOUS_PREFIX),
                    "assignment_id"].nunique() == n_good
    # each kept anonymous assignment is one voter on its HIT
    per = kept.groupby("hit_key")["worker_id"].nunique()
    assert (per == 4).all()   # W00GOOD's assignment (now anonymous) + W01-W03GOOD


def test_name_anonymous_leaves_named_answers_alone(data):
    _, ans = data
    assert name_anonymous(ans) is ans
    assert name_anonymous(ans.iloc[:0]).empty
