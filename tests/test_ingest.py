"""Ingestion: parquet, MTurk API assignments, batch-results CSV (full and reduced), external CSV."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from helpers_analysis import (
    make_manifest,
    simulate_answers,
    to_assignments,
    write_batch_csv,
    write_run,
)

from analysis.aggregate import aggregate
from analysis.ingest import (
    ANSWER_COLUMNS,
    ExternalMapping,
    IngestError,
    answers_from_assignments,
    load_answers,
    load_manifest,
    parse_question_form_answers,
    read_batch_csv,
    read_external_csv,
)
from analysis.quality import quality_control
from analysis.verdicts import compute_verdicts

NASTY = "line one\nline two, with \"quotes\" and <b>tags</b>"


def _verdicts(answers, manifest):
    qc = quality_control(answers, manifest)
    agg = aggregate(qc.kept, method="DawidSkene")
    return compute_verdicts(manifest, agg, qc.kept).set_index("hit_key")


@pytest.fixture
def sample():
    manifest = make_manifest()
    key = manifest[1]["hit_key"]
    ans = simulate_answers(manifest, n_good=4, n_spam=1, accuracy=0.85, seed=5,
                           extra={(key, "W00GOOD"): {"description": NASTY}})
    return manifest, ans


def test_parse_question_form_answers():
    xml = to_assignments(pd.DataFrame([{
        "hit_key": "k", "hit_id": "H", "assignment_id": "A", "worker_id": "W",
        "question": "description", "answer": "a < b & c", "submit_time": "2026-01-01 00:01:00",
        "accept_time": "2026-01-01 00:00:00", "work_seconds": 60.0}]))[0]["Answer"]
    assert parse_question_form_answers(xml) == {"description": "a < b & c", "hit_key": "k"}
    with pytest.raises(IngestError, match="not well-formed"):
        parse_question_form_answers("<QuestionFormAnswers>")


@pytest.mark.slow
def test_batch_csv_round_trips_to_api_verdicts(sample, tmp_path):
    manifest, ans = sample
    man = pd.DataFrame(manifest)
    api = answers_from_assignments(to_assignments(ans))
    path = write_batch_csv(ans, tmp_path / "Batch_1_batch_results.csv")
    with path.open(newline="") as fh:  # the fixture really has quoted newlines and extras
        header = next(csv.reader(fh))
    assert header[:3] == ["HITId", "HITTypeId", "Title"] and "Unrelated Extra" in header
    batch = read_batch_csv(path)
    assert list(batch.columns) == ANSWER_COLUMNS
    assert NASTY in set(batch["answer"])
    key = lambda d: d.sort_values(["assignment_id", "question"])[  # noqa: E731
        ["hit_key", "assignment_id", "worker_id", "question", "answer"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(key(batch), key(api), check_dtype=False)
    va, vb = _verdicts(api, man), _verdicts(batch, man)
    cols = ["verdict", "kind", "votes_shared", "votes_pattern"]
    assert va[cols].equals(vb[cols])
    assert va.loc[~va["is_gold"], "truth_match"].sum() >= 7  # 4 workers at 85%: mostly right
    # the API's times give the same work seconds as MTurk's WorkTimeInSeconds (whole seconds)
    assert (api.groupby("assignment_id")["work_seconds"].first().round().astype(int)
            .sub(batch.groupby("assignment_id")["work_seconds"].first()).abs() <= 1).all()


@pytest.mark.slow
def test_reduced_batch_csv(sample, tmp_path):
    manifest, ans = sample
    path = write_batch_csv(ans, tmp_path / "reduced.csv", reduced=True)
    batch = read_batch_csv(path)
    assert batch["assignment_id"].nunique() == ans["assignment_id"].nunique()
    v = _verdicts(batch, pd.DataFrame(manifest))
    full = _verdicts(ans, pd.DataFrame(manifest))
    # no work times in the reduced file: time rules cannot fire, other verdicts agree
    assert (v["verdict"] != "pending").all()
    assert v.loc[~v["is_gold"], "truth_match"].sum() >= full.loc[~full["is_gold"],
                                                                 "truth_match"].sum() - 1


@pytest.mark.slow
def test_external_csv_with_mapping(tmp_path):
    path = tmp_path / "other_study.csv"
    rows = []
    truth = {("dog", "7"): ("Yes", "the dog itself"), ("dog", "9"): ("Yes", "grass behind"),
             ("cat", "7"): ("No", "")}
    for w in ["A1", "A2", "A3"]:
        for (cls, neuron), (q1, q2) in truth.items():
            rows.append({"WorkerId": w, "Input.label": cls, "Input.neuron": neuron,
                         "Answer.Q1": q1, "Answer.Q2": q2, "Answer.notes": "multi\nline"})
    pd.DataFrame(rows).to_csv(path, index=False)
    mapping = ExternalMapping(
        class_column="Input.label", feature_column="Input.neuron",
        questions={"shared": "Answer.Q1", "pattern": "Answer.Q2", "description": "Answer.notes"},
        value_maps={"shared": {"Yes": "yes", "No": "no"},
                    "pattern": {"the dog itself": "object", "grass behind": "background"}},
        classes=["cat", "dog"])
    answers, items = read_external_csv(path, mapping)
    assert set(items.columns) >= {"hit_key", "class", "class_name", "feature"}
    assert sorted(zip(items["class_name"], items["feature"], strict=True)) == [
        ("cat", 7), ("dog", 7), ("dog", 9)]
    agg = aggregate(answers, method="MajorityVote")
    v = compute_verdicts(items, agg, answers).set_index(["class_name", "feature"])
    assert v.loc[("dog", 7), "verdict"] == "core"
    assert (v.loc[("dog", 9), "verdict"], v.loc[("dog", 9), "kind"]) == ("spurious", "background")
    assert v.loc[("cat", 7), "verdict"] == "no_pattern"
    with pytest.raises(IngestError, match=r"Answer\.Q9"):
        read_external_csv(path, ExternalMapping("Input.label", "Input.neuron",
                                                {"shared": "Answer.Q9"}))


def test_load_answers_and_manifest(sample, tmp_path):
    manifest, ans = sample
    write_run(tmp_path, ans.assign(extra_col=1), manifest)
    loaded = load_answers(tmp_path / "answers" / "answers.parquet")
    assert "extra_col" not in loaded.columns and len(loaded) == len(ans)
    man = load_manifest(tmp_path / "tasks" / "manifest.jsonl")
    assert len(man) == len(manifest) and man["is_gold"].sum() == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hit_key": "x", "class": 0}\n')
    with pytest.raises(IngestError, match=r"bad\.jsonl:1: missing field 'feature'"):
        load_manifest(bad)
    (tmp_path / "a.csv").write_text("hit_key,worker_id\nx,y\n")
    with pytest.raises(IngestError, match=r"a\.csv: missing column"):
        load_answers(tmp_path / "a.csv")


def test_crowd_html_task_answers_json(tmp_path):
    path = tmp_path / "crowd.csv"
    rows = [
        {"WorkerId": "W1", "Input.hit_key": "k1",
         "Answer.taskAnswers": '[{"shared": {"yes": true, "no": false}, "pattern": "mark", '
                               '"description": "white\\nsquare"}]'},
        {"WorkerId": "W2", "Input.hit_key": "k1",
         "Answer.taskAnswers": '[{"shared": {"yes": false, "no": true}}]'},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    ans = read_batch_csv(path)
    got = {(w, q): a for w, q, a in zip(ans["worker_id"], ans["question"], ans["answer"],
                                         strict=True)}
    assert got[("W1", "shared")] == "yes" and got[("W2", "shared")] == "no"
    assert got[("W1", "description")] == "white\nsquare"
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"WorkerId": "W", "Input.hit_key": "k", "Answer.taskAnswers": "{oops"}]).to_csv(
        bad, index=False)
    with pytest.raises(IngestError, match=r"row 2: Answer\.taskAnswers is not JSON"):
        read_batch_csv(bad)


@pytest.mark.slow
def test_parquet_written_by_tasks_collect_matches(sample, tmp_path):
    """What `tasks collect` / `tasks ingest-csv` write (through the tasks package's names of
    the one reader and writer in sparse_probe.answers) reads back as the same table and
    verdicts as reading the CSV directly."""
    answers_mod = pytest.importorskip("tasks.answers")
    manifest, ans = sample
    path = write_batch_csv(ans, tmp_path / "batch.csv")
    theirs = answers_mod.read_batch_csv(path)
    answers_mod.write_answers(theirs, tmp_path / "answers")
    loaded = load_answers(tmp_path / "answers" / "answers.parquet")
    ours = read_batch_csv(path)
    key = ["assignment_id", "question"]
    a = loaded.sort_values(key).reset_index(drop=True)
    b = ours.sort_values(key).reset_index(drop=True)
    for col in ("hit_key", "assignment_id", "worker_id", "question", "answer", "work_seconds"):
        assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    man = pd.DataFrame(manifest)
    cols = ["verdict", "kind", "votes_shared", "votes_pattern", "quotes"]
    assert _verdicts(loaded, man)[cols].equals(_verdicts(ours, man)[cols])
