"""Counterfactual tests: Wilson/McNemar against statsmodels/scipy, patch pasting on a planted CNN,
identity-term insertion against a biased scikit-learn text model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_analysis import (
    IDENTITY,
    biased_corpus,
    hwc_to_tensor,
    planted_cnn,
    planted_images,
)
from scipy.stats import binomtest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from analysis.counterfactual import (
    callable_predictor,
    control_boxes,
    crop,
    fire_boxes,
    insert_term,
    layer_features,
    mcnemar_exact,
    paired_comparison,
    paste,
    patch_test,
    sparse_predictor,
    term_test,
    torch_predictor,
    wilson_interval,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 200), (1, 1)])
@pytest.mark.parametrize("level", [0.95, 0.9])
def test_wilson_matches_statsmodels(k, n, level):
    lo, hi = wilson_interval(k, n, level)
    rlo, rhi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    assert lo == pytest.approx(rlo, abs=1e-12) and hi == pytest.approx(rhi, abs=1e-12)


def test_wilson_bad_input():
    assert np.isnan(wilson_interval(0, 0)[0])
    with pytest.raises(ValueError, match="k: expected"):
        wilson_interval(5, 3)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 9), (10, 2), (25, 25), (0, 7)])
def test_mcnemar_exact_matches_statsmodels_and_binomtest(b, c):
    table = [[5, b], [c, 7]]
    ref = mcnemar(table, exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(ref, abs=1e-12)
    if b + c:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, abs=1e-12)
    fa = np.array([1] * 5 + [1] * b + [0] * c + [0] * 7, bool)
    fb = np.array([1] * 5 + [0] * b + [1] * c + [0] * 7, bool)
    p = paired_comparison(fa, fb)
    assert (p["a_only"], p["b_only"], p["both"], p["neither"]) == (b, c, 5, 7)


def test_boxes_crop_paste_geometry():
    rng = np.random.default_rng(0)
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 2] = 5.0
    maps[1, 3, 0] = 2.0
    boxes = fire_boxes(maps, (16, 16), 4)
    # map cell (1, 2) of a 4x4 map on 16x16 pixels is centred at pixel (6, 10)
    assert boxes.tolist() == [[4, 8], [12, 0]]
    ctrl = control_boxes(maps, (16, 16), 4, rng)
    for (y, x), m in zip(ctrl, maps, strict=True):
        cy, cx = (y + 2) * 4 // 16, (x + 2) * 4 // 16
        assert m[min(cy, 3), min(cx, 3)] == 0
    imgs = np.arange(2 * 16 * 16 * 3, dtype=float).reshape(2, 16, 16, 3)
    patches = crop(imgs, boxes, 4)
    assert patches.shape == (2, 4, 4, 3)
    assert np.array_equal(patches[0], imgs[0, 4:8, 8:12])
    out, pos = paste(np.zeros((3, 16, 16, 3)), patches, rng, which=np.array([0, 1, 0]))
    for i, (y, x) in enumerate(pos):
        assert np.array_equal(out[i, y:y + 4, x:x + 4], patches[[0, 1, 0][i]])
        assert out[i].sum() == pytest.approx(patches[[0, 1, 0][i]].sum())


def test_patch_test_flips_dense_not_sparse_or_control():
    model, head = planted_cnn()
    src, marks = planted_images(24, cls=1, mark=True, seed=1)
    with torch.no_grad():
        maps = model.maps(hwc_to_tensor(src))[:, 3].numpy()  # the white-mark feature
    # the feature fires where the mark was planted
    boxes = fire_boxes(maps, (16, 16), 4)
    assert (np.abs(boxes - marks) <= 2).all()
    test0, _ = planted_images(60, cls=0, seed=2)
    test2, _ = planted_images(60, cls=2, seed=3)
    test = np.concatenate([test0, test2])
    labels = np.array([0] * 60 + [2] * 60)
    dense = torch_predictor(model, hwc_to_tensor)
    sparse = sparse_predictor(layer_features(model, "pool", hwc_to_tensor), head)
    assert (dense(test).argmax(1) == labels).all() and (sparse(test).argmax(1) == labels).all()
    res = patch_test({"dense": dense, "sparse": sparse}, src, maps, test, labels, target=1,
                     box=4, n=80, seed=0)
    rows = {(r["test"], r["model"]): r for r in res.rows}
    assert rows[("patch", "dense")]["flip_rate"] > 0.9
    assert rows[("patch", "dense")]["mean_prob_increase"] > 0.5
    assert rows[("control", "dense")]["flip_rate"] < 0.05
    assert rows[("patch", "sparse")]["flip_rate"] < 0.05
    assert rows[("patch", "dense")]["ci_low"] > rows[("control", "dense")]["ci_high"]
    (pair,) = res.paired
    assert pair["a_only"] > 60 and pair["p_value"] < 1e-10
    # seeded: the same call gives the same numbers
    again = patch_test({"dense": dense}, src, maps, test, labels, target=1, box=4, n=80, seed=0)
    assert again.rows[0] == rows[("patch", "dense")]


def test_insert_term_modes():
    rng = np.random.default_rng(0)
    assert insert_term("you are nice", "muslim") == "you are nice muslim"
    assert insert_term("you are nice", "muslim", "prepend") == "muslim you are nice"
    out = insert_term("a b c", "X", "random", rng=rng)
    assert sorted(out.split()) == ["X", "a", "b", "c"]
    assert insert_term("hi", "gay", "template", "{text} I am {term}.") == "hi I am gay."
    with pytest.raises(ValueError, match="template"):
        insert_term("hi", "gay", "template", "no slots")


@pytest.mark.slow
def test_identity_term_insertion_shows_planted_bias():
    texts, y = biased_corpus(600, seed=0)
    biased = make_pipeline(CountVectorizer(), LogisticRegression(C=10.0, max_iter=1000))
    biased.fit(texts, y)
    fair_texts, fair_y = biased_corpus(600, seed=0, bias=False)
    fair = make_pipeline(CountVectorizer(), LogisticRegression(C=10.0, max_iter=1000))
    fair.fit(fair_texts, fair_y)
    test, ty = biased_corpus(300, seed=9, bias=False)
    nontoxic = [t for t, lab in zip(test, ty, strict=True) if lab == 0]
    res = term_test({"biased": callable_predictor(biased.predict_proba),
                     "fair": callable_predictor(fair.predict_proba)},
                    nontoxic, IDENTITY, toxic_class=1, mode="append", n=100, seed=0)
    rate = {(r["model"], r["term"], r["direction"]): r for r in res.rows}
    hit = rate[("biased", "muslim", "to_toxic")]
    assert hit["flip_rate"] > 0.3 and hit["ci_low"] > rate[("biased", "christian", "to_toxic")][
        "ci_high"]
    assert rate[("fair", "muslim", "to_toxic")]["flip_rate"] < hit["flip_rate"] / 3
    pooled = [r for r in res.rows if r["term"] == "*" and r["model"] == "biased"
              and r["group"] == "religion" and r["direction"] == "to_toxic"]
    assert pooled[0]["flips"] == hit["flips"] + rate[("biased", "christian", "to_toxic")]["flips"]
    assert any(e["model"] == "biased" and e["after"].endswith("muslim") for e in res.examples)
    rel = next(p for p in res.paired if p["group"] == "religion")
    assert rel["a_only"] > rel["b_only"] and rel["p_value"] < 0.01


def test_callable_predictor_checks_shape():
    bad = callable_predictor(lambda xs: np.ones((len(xs) + 1, 2)), name="my model")
    with pytest.raises(ValueError, match="my model: expected probabilities"):
        bad(["a", "b"])


@pytest.mark.slow
def test_image_counterfactuals_into_report(tmp_path):
    from helpers_analysis import make_manifest, simulate_answers, write_run

    from analysis.counterfactual.runner import image_counterfactuals, write_counterfactual
    from analysis.report import ReportOptions, build_report

    model, head = planted_cnn()
    src, _ = planted_images(20, cls=1, mark=True, seed=1)
    others = np.concatenate([planted_images(30, cls=0, seed=2)[0],
                             planted_images(30, cls=2, seed=3)[0]])
    images = np.concatenate([src, others])
    labels = np.array([1] * 20 + [0] * 30 + [2] * 30)
    acts = layer_features(model, "pool", hwc_to_tensor)(images).numpy()

    def maps_fn(imgs, feat):
        with torch.no_grad():
            return model.maps(hwc_to_tensor(imgs))[:, feat].numpy()

    dense = torch_predictor(model, hwc_to_tensor)
    sparse = sparse_predictor(layer_features(model, "pool", hwc_to_tensor), head)
    rows, paired = image_counterfactuals({"dense": dense, "sparse": sparse}, images, labels,
                                         acts, maps_fn, [(1, 3)], box=4, n=60, seed=1)
    r = rows.set_index(["test", "model"])
    assert r.loc[("image_patch", "dense"), "flip_rate"] > 0.9
    assert r.loc[("image_control", "dense"), "flip_rate"] < 0.1
    assert paired[0]["p_value"] < 1e-6
    run = write_run(tmp_path / "run", simulate_answers(make_manifest(), n_good=3, n_spam=0))
    write_counterfactual(run / "report", rows, {"paired": paired})
    rep = build_report(run, options=ReportOptions(n_boot=10))
    assert rep["counterfactual"]["paired"][0]["a_only"] == paired[0]["a_only"]
    html = (run / "report" / "index.html").read_text()
    assert "class 1 · feature 3" in html and "McNemar" in html


def test_counterfactual_cli_errors(tmp_path):
    from click.testing import CliRunner

    from sparse_probe.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["counterfactual", "--run", str(tmp_path), "--features", "3x"])
    assert res.exit_code == 2 and "expected CLASS:FEATURE" in res.output
    res = runner.invoke(main, ["counterfactual", "--run", str(tmp_path), "--external",
                               "no_such_module_xyz:f"])
    assert res.exit_code == 2 and "cannot import" in res.output


# --- the built-in datasets with their planted cues: real run directories (trained model +
# extracted features through sparse_probe.extract), tested through run_counterfactual ---------


@pytest.mark.slow
def test_run_counterfactual_shapes_watermark(tmp_path, tmp_path_factory):
    import json

    from helpers_analysis import builtin_audit_run

    from analysis.counterfactual.runner import run_counterfactual
    from sparse_probe.datasets.prepare import load_builtin

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "shapes")
    out = tmp_path / "cf"
    meta = json.loads((run / "features" / "meta.json").read_text())
    ds = load_builtin(meta)
    X = np.load(run / "features" / "test.npy")
    has_mark = ds.test.cue_masks["watermark"].reshape(len(X), -1).any(1)
    # the feature that tracks the planted watermark (ground truth from the generator)
    corr = [np.corrcoef(X[:, j], has_mark)[0, 1] for j in range(X.shape[1])]
    feat = int(np.nanargmax(corr))
    target = ds.cue_class["watermark"]
    rows = run_counterfactual(run, out, features=[(target, feat)], models=("dense",), n=200,
                              box=8)
    r = rows.set_index("test")
    assert r.loc["image_patch", "flip_rate"] > r.loc["image_control", "flip_rate"] + 0.1
    assert r.loc["image_patch", "ci_low"] > r.loc["image_control", "ci_high"]
    assert r.loc["image_patch", "mean_prob_increase"] > r.loc["image_control",
                                                             "mean_prob_increase"]
    on_disk = pd.read_csv(out / "counterfactual.csv")
    assert on_disk["flips"].tolist() == rows["flips"].tolist()
    assert json.loads((out / "counterfactual.json").read_text())["features"] == [[target, feat]]


@pytest.mark.slow
def test_run_counterfactual_toxicity_identity_terms(tmp_path, tmp_path_factory):
    import json

    from helpers_analysis import builtin_audit_run

    from analysis.counterfactual.runner import run_counterfactual
    from sparse_probe.datasets.toxicity import IDENTITY_TERMS, load_lexicon

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "toxicity")
    lexicon = {g: terms[:4] for g, terms in IDENTITY_TERMS.items()}
    lexicon["control"] = load_lexicon("objects")[:4]
    rows = run_counterfactual(run, tmp_path / "cf", models=("dense", "sparse"),
                              lexicon=lexicon, n=150)
    pooled = rows[(rows["term"] == "*") & (rows["direction"] == "to_toxic")
                  & (rows["model"] == "dense")].set_index("group")
    for group in IDENTITY_TERMS:
        assert pooled.loc[group, "flip_rate"] > pooled.loc["control", "flip_rate"] + 0.1, group
        assert pooled.loc[group, "ci_low"] > pooled.loc["control", "ci_high"], group
    summary = json.loads((tmp_path / "cf" / "counterfactual.json").read_text())
    assert any(e["direction"] == "to_toxic" for e in summary["examples"])
    assert {p["group"] for p in summary["paired"]} == set(lexicon)


@pytest.mark.slow
def test_counterfactual_cli_text_with_external_model(tmp_path, tmp_path_factory):
    import json

    from click.testing import CliRunner
    from helpers_analysis import builtin_audit_run

    from sparse_probe.cli import main

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "toxicity")
    out = tmp_path / "cf"
    lex = tmp_path / "lex.json"
    lex.write_text(json.dumps({"religion": ["muslim", "christian"], "control": ["table"]}))
    res = CliRunner().invoke(main, [
        "counterfactual", "--run", str(run), "--out", str(out), "--model", "dense",
        "--external",
        "helpers_analysis:keyword_model", "--lexicon", str(lex), "--n", "40",
        "--template", "{text} I am {term}."])
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(out / "counterfactual.csv")
    ext = rows[(rows["model"] == "helpers_analysis:keyword_model") & (rows["direction"] ==
                                                                      "to_toxic")]
    by_term = ext.set_index("term")["flip_rate"]
    # the keyword model flips every non-toxic text when (and only when) 'muslim' is inserted
    assert by_term["muslim"] == 1.0 and by_term["christian"] == 0.0 and by_term["table"] == 0.0
    summary = json.loads((out / "counterfactual.json").read_text())
    assert summary["templates"] == ["{text} I am {term}."]
    assert any(e["after"].endswith("I am muslim.") for e in summary["examples"])
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--lexicon", str(bad)])
    assert res.exit_code == 2 and "expected a JSON object" in res.output


@pytest.mark.slow
def test_run_counterfactual_defaults_to_report_verdicts_both_models(tmp_path_factory):
    """After the report: the features judged spurious are tested on the dense and the sparse
    model (SparseHead from probe/head.pt), compared pairwise, and the report shows them."""
    import json

    from helpers_analysis import builtin_audit_run

    from analysis.counterfactual.runner import run_counterfactual

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "shapes")
    spurious = [(r["class"], r["feature"]) for r in json.loads(
        (run / "report" / "report.json").read_text())["features"] if r["verdict"] == "spurious"]
    rows = run_counterfactual(run, n=60)
    assert set(rows["model"]) == {"dense", "sparse"}
    assert {(c, f) for c, f in zip(rows["class"], rows["feature"], strict=True)} == set(spurious)
    summary = json.loads((run / "report" / "counterfactual.json").read_text())
    assert len(summary["paired"]) == len(spurious)
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["counterfactual"]["rows"] == len(rows) and "counterfactual" in rep["figures"]


def test_object_masks_file_is_read_or_refused_with_one_line(tmp_path):
    import click

    from analysis.cli import read_object_masks

    assert read_object_masks(None) is None
    good = tmp_path / "masks.npy"
    np.save(good, np.array([[[0, 1], [1, 0]]], dtype=np.uint8))
    got = read_object_masks(good)
    assert got.dtype == bool and got.shape == (1, 2, 2) and got.sum() == 2
    for name, arr, expect in [("flat.npy", np.zeros((4, 4), bool), r"shape \(N, H, W\)"),
                              ("empty.npy", np.zeros((0, 4, 4), bool), r"shape \(N, H, W\)"),
                              ("grey.npy", np.full((1, 2, 2), 0.5), "bool or 0/1"),
                              ("two.npy", np.full((1, 2, 2), 2), "bool or 0/1")]:
        np.save(tmp_path / name, arr)
        with pytest.raises(click.BadParameter, match=expect) as err:
            read_object_masks(tmp_path / name)
        assert "\n" not in str(err.value.message)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(click.BadParameter, match=r"not a readable \.npy"):
        read_object_masks(tmp_path / "junk.npy")
