"""The report compares the original model (the network's own last layer) with the dense path
end and the sparse head: accuracy, per class, on cue-aligned vs cue-conflicting test examples
(issue 15, item 7). The original model's per-class accuracy comes from the built-in training
report (``test.per_class_accuracy``); older reports without it say "not recorded"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bs4 import BeautifulSoup
from helpers_analysis import fit_small_probe

from analysis.model_comparison import model_comparison


@pytest.mark.slow
def test_original_vs_sparse_on_a_real_builtin_run(tmp_path):
    from analysis.report import ReportOptions, build_report
    from sparse_probe.datasets import make_shapes
    from sparse_probe.datasets.models import train_shapes_model
    from sparse_probe.extract import ModelSpec, extract_features, save_builtin

    run = tmp_path / "run"
    ds = make_shapes(n_train=400, n_val=60, n_test=200, size=32, seed=0)
    model, training = train_shapes_model(ds, epochs=3, width=16, progress=False, seed=0)
    ckpt = save_builtin(model.cpu(), run / "models" / "shapes.pt", name="shapes")
    (run / "models" / "shapes.json").write_text(json.dumps(training))
    extract_features(ModelSpec("builtin", "shapes", None, str(ckpt.resolve())), ds,
                     run / "features", device="cpu", batch_size=256, progress=False)
    probe = fit_small_probe(run)
    meta = json.loads((run / "features" / "meta.json").read_text())

    cmp = model_comparison(run, meta, probe)
    rows = {r["key"]: r for r in cmp["rows"]}
    assert [r["label"] for r in cmp["rows"]] == ["original", "dense path end", "sparse"]
    orig = rows["original"]
    assert orig["source"] == "models/shapes.json"
    assert (orig["test"], orig["aligned"], orig["flipped"]) == (
        training["test"]["accuracy"], training["test"]["aligned_accuracy"],
        training["test"]["flipped_accuracy"])
    y = np.load(run / "features" / "test_labels.npy")
    counts = np.bincount(y, minlength=len(cmp["classes"]))
    # the original model's per-class accuracy is recorded by training and shown beside the heads
    assert orig["per_class"] == training["test"]["per_class_accuracy"]
    assert list(orig["per_class"]) == cmp["classes"] and orig["per_class_note"] is None
    recall = np.array([orig["per_class"][c] for c in cmp["classes"]])
    assert float((recall * counts).sum() / counts.sum()) == pytest.approx(orig["test"])
    for key in ("dense", "sparse"):
        r = rows[key]
        assert r["test"] == probe["accuracy"][key]["test"]
        assert set(r["per_class"]) == set(cmp["classes"])
        # per-class recalls weighted by class size give back the overall accuracy
        recall = np.array([r["per_class"][c] for c in cmp["classes"]])
        assert float((recall * counts).sum() / counts.sum()) == pytest.approx(r["test"])
        assert 0.0 <= r["aligned"] <= 1.0 and 0.0 <= r["flipped"] <= 1.0

    rep = build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    assert rep["model_comparison"]["rows"][0]["label"] == "original"
    soup = BeautifulSoup((run / "report" / "index.html").read_text(encoding="utf-8"),
                         "html.parser")
    table = soup.find(id="model-comparison").find_next("table")
    first_cells = [tr.find("td").get_text(strip=True) for tr in table.find_all("tr")[1:]]
    assert first_cells == ["original", "dense path end", "sparse"]
    assert f"{training['test']['accuracy']:.3f}" in table.find_all("tr")[1].get_text()
    header = [th.get_text(strip=True) for th in table.find("tr").find_all("th")]
    orig_cells = [td.get_text(strip=True) for td in table.find_all("tr")[1].find_all("td")]
    for c in cmp["classes"]:
        assert orig_cells[header.index(c)] == f"{orig['per_class'][c]:.3f}"
    # the methods table names the least-regularized point "dense path end", never "dense"
    methods = soup.find(id="methods").get_text(" ", strip=True)
    assert "dense path end" in methods

    # a training report from before per-class accuracy was recorded: the row says so
    old = dict(training, test={k: v for k, v in training["test"].items()
                               if k != "per_class_accuracy"})
    (run / "models" / "shapes.json").write_text(json.dumps(old))
    orig = model_comparison(run, meta, probe)["rows"][0]
    assert orig["per_class"] == {} and orig["per_class_note"].startswith("not recorded")
    assert orig["test"] == training["test"]["accuracy"]
    build_report(run, options=ReportOptions(n_boot=0, method="MajorityVote"))
    soup = BeautifulSoup((run / "report" / "index.html").read_text(encoding="utf-8"),
                         "html.parser")
    row = soup.find(id="model-comparison").find_next("table").find_all("tr")[1]
    assert "not recorded" in row.get_text()
    assert "not recorded" not in soup.find(id="model-comparison").find_next("table") \
        .find_all("tr")[3].get_text()  # the sparse head's per-class cells are numbers


@pytest.mark.slow
def test_builtin_training_report_records_per_class_and_old_reports_get_it(tmp_path):
    """prepare_builtin records the original model's per-class test accuracy; a reused report
    written before that gets it from the checkpoint, without retraining."""
    import torch

    from sparse_probe.datasets import load_builtin, prepare_builtin
    from sparse_probe.extract import load_model, read_meta

    run = tmp_path / "run"
    feats = prepare_builtin("toxicity", run, quick=True, progress=False)
    report_file, ckpt = run / "models" / "toxicity.json", run / "models" / "toxicity.pt"
    report = json.loads(report_file.read_text())
    meta = read_meta(feats)
    test = load_builtin(meta).split("test")
    with torch.inference_mode():
        pred = load_model(meta)(test.texts).argmax(1).numpy()
    expected = {name: float((pred[test.labels == k] == k).mean())
                for k, name in enumerate(test.class_names)}
    assert report["test"]["per_class_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert set(report["val"]["per_class_accuracy"]) == set(test.class_names)

    # an old report (no per-class key): reused, not retrained, and the key is added back
    for split in ("val", "test"):
        del report[split]["per_class_accuracy"]
    report_file.write_text(json.dumps(report))
    before = ckpt.stat().st_mtime_ns
    prepare_builtin("toxicity", run, quick=True, progress=False)
    assert ckpt.stat().st_mtime_ns == before
    again = json.loads(report_file.read_text())
    assert again["test"]["per_class_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert again["test"]["accuracy"] == report["test"]["accuracy"]

    probe = fit_small_probe(run)
    orig = model_comparison(run, json.loads((feats / "meta.json").read_text()), probe)["rows"][0]
    assert orig["key"] == "original" and orig["source"] == "models/toxicity.json"
    assert orig["per_class"] == pytest.approx(expected, abs=1e-12)


def test_no_training_report_says_so(tmp_path):
    cmp = model_comparison(tmp_path, {}, {"classes": ["a", "b"],
                                          "accuracy": {"dense": {"test": 0.9},
                                                       "sparse": {"test": 0.8}}})
    rows = {r["key"]: r for r in cmp["rows"]}
    assert rows["original"]["test"] is None
    assert rows["original"]["source"].startswith("no training report")
    assert rows["original"]["per_class_note"] == "not recorded (no training report)"
    assert (rows["dense"]["test"], rows["sparse"]["test"]) == (0.9, 0.8)
    assert rows["sparse"]["per_class_note"].startswith("not computed")
    assert model_comparison(tmp_path, {}, {}) is None


@pytest.mark.parametrize("recorded", [True, False])
def test_original_per_class_from_the_training_report(tmp_path, recorded):
    test = {"accuracy": 0.75, "aligned_accuracy": 1.0, "flipped_accuracy": 0.5}
    if recorded:
        test["per_class_accuracy"] = {"a": 0.5, "b": 1.0, "c": None, "d": "bad"}
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.json").write_text(json.dumps({"test": test}))
    cmp = model_comparison(tmp_path, {"model": {"name": "m"}},
                           {"classes": ["a", "b"], "accuracy": {"sparse": {"test": 0.7}}})
    orig = cmp["rows"][0]
    assert orig["source"] == "models/m.json" and orig["test"] == 0.75
    if recorded:
        assert orig["per_class"] == {"a": 0.5, "b": 1.0, "c": None, "d": None}
        assert orig["per_class_note"] is None
    else:
        assert orig["per_class"] == {}
        assert orig["per_class_note"] == ("not recorded (training report older than "
                                          "per-class accuracy)")
