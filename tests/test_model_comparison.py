"""The report compares the original model (the network's own last layer) with the dense path
end and the sparse head: accuracy, per class, on cue-aligned vs cue-conflicting test examples
(issue 15, item 7)."""

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
    # the methods table names the least-regularized point "dense path end", never "dense"
    methods = soup.find(id="methods").get_text(" ", strip=True)
    assert "dense path end" in methods


def test_no_training_report_says_so(tmp_path):
    cmp = model_comparison(tmp_path, {}, {"classes": ["a", "b"],
                                          "accuracy": {"dense": {"test": 0.9},
                                                       "sparse": {"test": 0.8}}})
    rows = {r["key"]: r for r in cmp["rows"]}
    assert rows["original"]["test"] is None
    assert rows["original"]["source"].startswith("no training report")
    assert (rows["dense"]["test"], rows["sparse"]["test"]) == (0.9, 0.8)
    assert model_comparison(tmp_path, {}, {}) is None
