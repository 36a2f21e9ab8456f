"""The run-directory contract: atomic writes, one-line reader errors, and the fingerprint chain
features → probe → tasks that refuses inputs from different runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_viz import text_run

from sparse_probe.rundir import (
    MissingArtefactError,
    RunDir,
    RunDirError,
    RunMismatchError,
    atomic_path,
    check_same_run,
    features_fingerprint,
    read_json,
    read_jsonl,
    read_run_record,
    write_json,
    write_jsonl,
)


def test_write_json_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "x.json"
    write_json(target, {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 3, "b": 0.5, "c": [0, 1]}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]
    with pytest.raises(ValueError):  # NaN is not JSON: refused, old file kept
        write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text())["a"] == 3
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "arr.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        np.save(tmp, np.arange(5))
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path
        raise RuntimeError("killed half-way")
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["arr.npy"]
    with atomic_path(target) as tmp:
        np.save(tmp, np.arange(5))
    assert np.load(target).tolist() == [0, 1, 2, 3, 4]


def test_readers_give_one_line_errors_naming_the_file(tmp_path):
    missing = tmp_path / "probe.json"
    with pytest.raises(MissingArtefactError) as e:
        read_json(missing, what="probe.json", hint="run `sparse-probe fit` first")
    assert isinstance(e.value, FileNotFoundError)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(RunDirError, match=r"bad\.json: not valid JSON"):
        read_json(bad)
    lines = tmp_path / "m.jsonl"
    lines.write_text('{"a": 1}\n\n[1]\n')
    with pytest.raises(RunDirError, match=r"m.jsonl:3: expected a JSON object"):
        read_jsonl(lines)
    write_jsonl(lines, [{"a": 1}, {"b": 2}])
    assert read_jsonl(lines) == [{"a": 1}, {"b": 2}]


def test_layout_names_every_artefact(tmp_path):
    r = RunDir(tmp_path)
    assert r.features_meta == tmp_path / "features" / "meta.json"
    assert r.probe_json == tmp_path / "probe" / "probe.json"
    assert r.manifest == tmp_path / "tasks" / "manifest.jsonl"
    assert r.answers_parquet == tmp_path / "answers" / "answers.parquet"
    assert r.report == tmp_path / "report"


def test_features_fingerprint_follows_content(tmp_path):
    _, feats, _ = text_run(tmp_path / "a")
    fp = features_fingerprint(feats)
    assert fp == features_fingerprint(feats)  # deterministic
    labels = np.load(feats / "val_labels.npy")
    labels[0] = 1 - labels[0]
    np.save(feats / "val_labels.npy", labels)
    fp_labels = features_fingerprint(feats)
    assert fp_labels != fp
    X = np.load(feats / "val.npy")
    X[-1, 0] += 1.0  # the last row is always among the sampled ones
    np.save(feats / "val.npy", X)
    assert features_fingerprint(feats) != fp_labels


def test_check_same_run():
    check_same_run(None, "abc", expected_from="p", actual_from="f")  # old artefact: unchecked
    check_same_run("abc", "abc", expected_from="p", actual_from="f")
    with pytest.raises(RunMismatchError) as e:
        check_same_run("abc", "def", expected_from="run1/probe/probe.json",
                       actual_from="run2/features")
    msg = str(e.value)
    assert "run1/probe/probe.json" in msg and "run2/features" in msg and "\n" not in msg


def _fit_probe(feats: Path, out: Path) -> dict:
    """A real (tiny) fit on the run's features, written by the one probe writer."""
    from sparse_probe.fit import fit_path
    from sparse_probe.probe import write_probe
    from sparse_probe.select import select

    meta = json.loads((feats / "meta.json").read_text())
    X = np.load(feats / "val.npy")
    y = np.load(feats / "val_labels.npy")
    path = fit_path(X, y, n_lambdas=8, eps=0.05, classes=meta["classes"], progress=False)
    sel = select(path, "features_per_class", 2)
    return write_probe(path, sel, out, features_dir=str(feats), top_k=2)


@pytest.mark.slow
def test_build_refuses_features_of_another_run_and_records_the_chain(tmp_path):
    from tasks.build import BuildError, build_tasks

    _, feats_a, src_a = text_run(tmp_path / "a")
    _, feats_b, _ = text_run(tmp_path / "b", n=34)  # same width, other examples
    probe = _fit_probe(feats_a, tmp_path / "a" / "probe2")
    assert probe["inputs"]["features"] == features_fingerprint(feats_a)
    assert np.load(feats_a / "val.npy").shape[1] == np.load(feats_b / "val.npy").shape[1]

    with pytest.raises(BuildError) as e:
        build_tasks(tmp_path / "a" / "probe2", feats_b, tmp_path / "tasks-b", source=src_a,
                    gold_share=0.0, progress=False)
    msg = str(e.value)
    assert str(feats_b) in msg and "probe2" in msg and "\n" not in msg
    assert not (tmp_path / "tasks-b" / "manifest.jsonl").exists()

    res = build_tasks(tmp_path / "a" / "probe2", feats_a, tmp_path / "tasks-a", source=src_a,
                      gold_share=0.0, progress=False)
    rec = read_run_record(res.out_dir)
    assert rec["inputs"] == {"features": probe["inputs"]["features"],
                             "probe": probe["fingerprint"]}
    assert len(rec["fingerprint"]) == 16


def test_artefacts_without_fingerprints_are_accepted(tmp_path):
    """Runs written before fingerprints existed still build (no inputs recorded)."""
    from tasks.build import build_tasks

    probe, feats, src = text_run(tmp_path / "old")
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.0,
                      progress=False)
    assert read_run_record(res.out_dir)["inputs"]["probe"] is None


def test_manifest_reader_checks_every_line(tmp_path):
    from sparse_probe.rundir import read_manifest

    m = tmp_path / "manifest.jsonl"
    with pytest.raises(MissingArtefactError, match="tasks build"):
        read_manifest(tmp_path)
    good = {"hit_key": "a", "class": 0, "feature": 3}
    write_jsonl(m, [good, {**good, "hit_key": "b", "html": "hits/x.html"}])
    rows = read_manifest(tmp_path)
    assert [r["html"] for r in rows] == ["hits/a.html", "hits/x.html"]
    m.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(RunDirError, match=r"manifest.jsonl:3: duplicate hit_key 'a'"):
        read_manifest(m)
    m.write_text(json.dumps({"hit_key": "a", "class": 0}) + "\n")
    with pytest.raises(RunDirError, match=r":1: missing field 'feature'"):
        read_manifest(m)
    m.write_text(json.dumps({"hit_key": "a", "class": "0", "feature": 1}) + "\n")
    with pytest.raises(RunDirError, match=r"field 'class' must be an integer"):
        read_manifest(m)
    m.write_text(json.dumps({"hit_key": "", "class": 0, "feature": 1}) + "\n")
    with pytest.raises(RunDirError, match=r"'hit_key' must be a non-empty string"):
        read_manifest(m)


def _answers_table():
    from sparse_probe.answers import answers_frame

    return answers_frame([{"hit_key": "h1", "hit_id": "H1", "assignment_id": "A1",
                           "worker_id": "W1", "question": "shared", "answer": "yes"}])


def test_answers_record_their_tasks_and_refuse_another_runs(tmp_path):
    from sparse_probe.answers import read_answers, write_answers
    from sparse_probe.rundir import write_run_record

    tasks_a, tasks_b = tmp_path / "a" / "tasks", tmp_path / "b" / "tasks"
    write_run_record(tasks_a, fingerprint="aaaa", inputs={"probe": None})
    write_run_record(tasks_b, fingerprint="bbbb", inputs={"probe": None})
    out = tmp_path / "a" / "answers"
    write_answers(_answers_table(), out, tasks_dir=tasks_a)
    rec = read_run_record(out)
    assert rec["inputs"] == {"tasks": "aaaa"} and len(rec["fingerprint"]) == 16
    write_answers(_answers_table(), out, tasks_dir=tasks_a)  # same run: fine
    with pytest.raises(RunMismatchError) as e:
        write_answers(_answers_table(), out, tasks_dir=tasks_b)
    assert str(tasks_b) in str(e.value) and "answers.parquet" in str(e.value)
    assert read_run_record(out)["inputs"] == {"tasks": "aaaa"}  # nothing overwritten
    assert len(read_answers(out)) == 1


def test_report_refuses_answers_of_other_tasks(tmp_path):
    from analysis.report import _check_answers_match_tasks
    from sparse_probe.answers import write_answers
    from sparse_probe.rundir import write_run_record

    run = tmp_path / "run"
    write_run_record(tmp_path / "other" / "tasks", fingerprint="1111", inputs={})
    write_answers(_answers_table(), run / "answers", tasks_dir=tmp_path / "other" / "tasks")
    write_run_record(run / "tasks", fingerprint="2222", inputs={})
    with pytest.raises(RunMismatchError, match="1111"):
        _check_answers_match_tasks(run / "answers", run / "tasks")
    write_run_record(run / "tasks", fingerprint="1111", inputs={})
    _check_answers_match_tasks(run / "answers", run / "tasks")


def test_atomic_files_get_plain_permissions_unless_told(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        plain = write_json(tmp_path / "report.json", {"a": 1})
        secret = write_json(tmp_path / "cred.json", {"k": "s"}, mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
