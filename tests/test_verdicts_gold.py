"""A finding never rests on a gold item: gold HITs (known answers, used to score workers) get
no verdict, and what the report counts as spurious comes from audited features only."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers_analysis import FEATURES, GOLD, make_manifest, simulate_answers, write_run

from analysis.aggregate import aggregate
from analysis.verdicts import compute_verdicts, findings


def _gold_keys(manifest):
    return {m["hit_key"] for m in manifest if m["is_gold"]}


def test_gold_hits_get_no_verdict_even_when_the_crowd_calls_them_spurious():
    manifest = make_manifest()
    gold = _gold_keys(manifest)
    # the crowd judges the gold item (0, 90) "yes, a mark": it would read as spurious
    assert GOLD[0][2] == {"shared": "yes", "pattern": "mark"}
    ans = simulate_answers(manifest, n_good=5, n_spam=0, accuracy=1.0, seed=2)
    man = pd.DataFrame(manifest)
    agg = aggregate(ans, method="MajorityVote")
    v = compute_verdicts(man, agg, ans)
    assert not set(v["hit_key"]) & gold and not v["is_gold"].any()
    assert len(v) == len(FEATURES)
    with_gold = compute_verdicts(man, agg, ans, include_gold=True).set_index("hit_key")
    g0 = f"img-c00-f{GOLD[0][1]:04d}-sparse"
    assert (with_gold.loc[g0, "verdict"], with_gold.loc[g0, "kind"]) == ("spurious", "mark")
    assert with_gold.loc[g0, "is_gold"]
    # findings: the spurious audited features, never a gold item
    f = findings(with_gold.reset_index())
    assert not f["is_gold"].any() and g0 not in set(f["hit_key"])
    assert sorted(f["hit_key"]) == sorted(
        f"img-c{c:02d}-f{k:04d}-sparse" for c, k, t in FEATURES if t.startswith("spurious"))
    assert findings(v).equals(v[v["verdict"] == "spurious"])


def test_a_gold_only_spurious_signal_is_no_finding():
    """The issue's failure: the only 'spurious' item is the gold HIT itself."""
    manifest = make_manifest(features=[(0, 11, "core"), (1, 21, "core")],
                             gold=[(0, 90, {"shared": "yes", "pattern": "mark"})])
    ans = simulate_answers(manifest, n_good=4, n_spam=0, accuracy=1.0, seed=3)
    agg = aggregate(ans, method="MajorityVote")
    v = compute_verdicts(pd.DataFrame(manifest), agg, ans)
    assert set(v["verdict"]) == {"core"} and findings(v).empty
    v_all = compute_verdicts(pd.DataFrame(manifest), agg, ans, include_gold=True)
    assert (v_all["verdict"] == "spurious").sum() == 1 and findings(v_all).empty


@pytest.mark.slow
def test_report_counts_no_gold_item(tmp_path):
    from analysis.report import ReportOptions, build_report

    manifest = make_manifest()
    ans = simulate_answers(manifest, n_good=5, n_spam=0, accuracy=1.0, seed=5)
    run = write_run(tmp_path / "run", ans, manifest)
    rep = build_report(run, options=ReportOptions(n_boot=10, method="MajorityVote"))
    keys = {r["hit_key"] for r in rep["features"]}
    assert not keys & _gold_keys(manifest)
    assert rep["summary"]["n_spurious"] == sum(t.startswith("spurious") for *_, t in FEATURES)
    assert all(not r["is_gold"] for r in rep["features"] if r["verdict"] == "spurious")
