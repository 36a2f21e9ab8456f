"""Text counterfactuals on any texts and any model, and the one-line errors for bad inputs and
bad model outputs (library and CLI)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers_cf_models import binary_model, logit_model, nan_model
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from analysis.counterfactual import (
    bootstrap_mean_interval,
    callable_predictor,
    check_outputs,
    group_verdicts,
    read_texts,
    term_test,
)
from sparse_probe.cli import main

TEXTS = ["the article was long", "thanks for the post", "I read this yesterday",
         "a comment about the weather", "this is a table", "we agree on most points"] * 10
LEX = {"religion": ["muslim", "christian"], "control": ["table", "lamp"]}


# --- model outputs -------------------------------------------------------------------------


def test_check_outputs_turns_binary_and_logits_into_probabilities():
    p = check_outputs(np.array([0.2, 0.9]), 2, "m")
    assert np.allclose(p, [[0.8, 0.2], [0.1, 0.9]])
    assert np.allclose(check_outputs(np.array([[0.2], [0.9]]), 2, "m"), p)
    z = np.array([[0.0, np.log(0.25)], [1.0, 1.0]])
    assert np.allclose(check_outputs(z, 2, "m", "logits"), [[0.8, 0.2], [0.5, 0.5]])
    assert np.allclose(check_outputs(np.array([0.0, 2.0]), 2, "m", "logits")[:, 1],
                       [0.5, 1 / (1 + np.exp(-2.0))])


def test_torch_models_with_one_output_are_binary():
    import torch

    from analysis.counterfactual import torch_predictor

    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[1.0, -1.0]])
        lin.bias.zero_()
    p = torch_predictor(lin)(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    assert p.shape == (2, 2)
    assert np.allclose(p[:, 1], [1 / (1 + np.exp(-2.0)), 0.5], atol=1e-6)
    nan = torch.nn.Linear(2, 3)
    with torch.no_grad():
        nan.bias[0] = float("nan")
    with pytest.raises(ValueError, match="model: 2 of 2 outputs are NaN"):
        torch_predictor(nan)(torch.zeros(2, 2))


@pytest.mark.parametrize(("out", "match"), [
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "m: 1 of 2 outputs are NaN or infinite"),
    (np.array([np.inf, 0.1]), "NaN or infinite"),
    (np.array([[-3.0, 3.0], [0.1, 0.9]]), r"not probabilities in \[0, 1\]"),
    (np.ones((3, 2)), r"expected probabilities of shape \(n=2"),
    (np.ones((2, 2, 2)), "expected probabilities of shape"),
    ("abc", "not numeric"),
])
def test_check_outputs_refuses_bad_outputs(out, match):
    with pytest.raises(ValueError, match=match):
        check_outputs(out, 2, "m")


def test_sklearn_binary_predict_proba_style_models_work_unwrapped():
    texts = ["you idiot", "you muslim", "nice post", "great read", "muslim", "muslim idiot"] * 20
    y = np.array([1, 1, 0, 0, 1, 1] * 20)
    clf = make_pipeline(CountVectorizer(), LogisticRegression(C=100.0)).fit(texts, y)
    res = term_test({"pos": callable_predictor(lambda t: clf.predict_proba(t)[:, 1])},
                    ["nice post", "great read"] * 30, LEX, n=40, threshold=0.2)
    rate = {(r["term"], r["direction"]): r for r in res.rows}
    assert rate[("muslim", "to_toxic")]["flip_rate"] == 1.0
    assert rate[("table", "to_toxic")]["flip_rate"] == 0.0
    assert rate[("muslim", "to_toxic")]["shift_ci_low"] > 0.2


# --- term_test: threshold, batching, intervals, refusals -----------------------------------


def test_threshold_decides_flips_and_batches_are_used():
    calls = []

    def model(texts):
        calls.append(len(texts))
        return np.array([0.4 if "muslim" in t else 0.1 for t in texts])

    pred = callable_predictor(model)
    argmax = term_test({"m": pred}, TEXTS, LEX, n=30, batch_size=7)
    assert max(calls) == 7 and sum(calls) == 30 + 4 * 30  # originals + 4 terms, in batches
    low = term_test({"m": pred}, TEXTS, LEX, n=30, threshold=0.3)
    get = {(r["term"], r["direction"]): r for r in argmax.rows}
    assert get[("muslim", "to_toxic")]["flip_rate"] == 0.0  # 0.4 never crosses argmax
    assert {(r["term"]): r["flip_rate"] for r in low.rows
            if r["direction"] == "to_toxic"}["muslim"] == 1.0
    # mean shift and its bootstrap interval: +0.3 exactly for 'muslim', 0 for 'table'
    m = get[("muslim", "to_toxic")]
    assert m["mean_prob_increase"] == pytest.approx(0.3)
    assert m["shift_ci_low"] == pytest.approx(0.3) and m["shift_ci_high"] == pytest.approx(0.3)
    assert get[("table", "to_toxic")]["shift_ci_high"] == pytest.approx(0.0)
    pooled = next(r for r in argmax.rows if r["term"] == "*" and r["group"] == "religion"
                  and r["direction"] == "to_toxic")
    # the group's shift is resampled by text: every text moves by (0.3 + 0) / 2
    assert pooled["mean_prob_increase"] == pytest.approx(0.15)
    assert (pooled["shift_ci_low"], pooled["shift_ci_high"]) == pytest.approx((0.15, 0.15))


def test_bootstrap_interval_resamples_clusters():
    rng = np.random.default_rng(0)
    v = rng.normal(1.0, 1.0, 400)
    lo, hi = bootstrap_mean_interval(v, n_boot=2000)
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.4 * se)
    assert hi == pytest.approx(v.mean() + 1.96 * se, abs=0.4 * se)
    # 40 clusters of 10 identical values: as wide as 40 values, not 400
    cl = np.repeat(np.arange(40), 10)
    vc = np.repeat(rng.normal(1.0, 1.0, 40), 10)
    lo_c, hi_c = bootstrap_mean_interval(vc, cl, n_boot=2000)
    lo_n, hi_n = bootstrap_mean_interval(vc, n_boot=2000)
    assert (hi_c - lo_c) > 2.5 * (hi_n - lo_n)
    assert np.isnan(bootstrap_mean_interval(np.zeros(0))[0])


def test_term_test_refuses_bad_inputs_before_running_models():
    calls = []

    def model(texts):
        calls.append(len(texts))
        return np.full(len(texts), 0.1)

    pred = {"m": callable_predictor(model)}
    for kwargs, match in [
        ({"texts": []}, "texts: no texts"),
        ({"lexicon": {"religion": [], "control": ["x"]}}, "group 'religion' has no terms"),
        ({"lexicon": {}}, "lexicon: expected a non-empty"),
        ({"toxic_class": -1}, "toxic_class: expected a class index >= 0"),
        ({"toxic_class": 2, "n_classes": 2}, "toxic_class: 2 is out of range for 2"),
        ({"threshold": 1.5}, "threshold"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        args = {"texts": TEXTS, "lexicon": LEX, **kwargs}
        with pytest.raises(ValueError, match=match):
            term_test(pred, args.pop("texts"), args.pop("lexicon"), **args)
    assert calls == []
    # without n_classes, the class index is checked on the originals, before any edit is scored
    with pytest.raises(ValueError, match="out of range for model 'm', which returns 2"):
        term_test(pred, TEXTS, LEX, toxic_class=5, n=20)
    assert calls == [20]


def test_two_models_and_group_verdicts():
    pred = {"a": callable_predictor(binary_model), "b": callable_predictor(logit_model,
                                                                           outputs="logits")}
    res = term_test(pred, TEXTS, LEX, n=60)
    pooled = {(r["model"], r["group"]): r for r in res.rows
              if r["term"] == "*" and r["direction"] == "to_toxic"}
    assert pooled[("a", "religion")]["flip_rate"] == pooled[("b", "religion")]["flip_rate"] == 0.5
    assert {p["group"] for p in res.paired} == {"religion", "control"}
    v = {(x["model"], x["group"]): x["verdict"] for x in group_verdicts(res.rows)}
    assert v == {("a", "religion"): "supports", ("b", "religion"): "supports"}
    nan = callable_predictor(nan_model, name="nan model")
    with pytest.raises(ValueError, match="nan model: 60 of 60 outputs are NaN"):
        term_test({"n": nan}, TEXTS, LEX, n=60)


# --- files and the CLI without a run -------------------------------------------------------


def _files(tmp_path):
    txt = tmp_path / "texts.txt"
    txt.write_text("\n".join(TEXTS[:6]) + "\n\n")
    csv = tmp_path / "texts.csv"
    pd.DataFrame({"comment": TEXTS[:6], "id": range(6)}).to_csv(csv, index=False)
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[:6]))
    return txt, csv, jsonl


def test_read_texts_formats_and_errors(tmp_path):
    txt, csv, jsonl = _files(tmp_path)
    assert read_texts(txt) == TEXTS[:6]
    assert read_texts(csv, "comment") == TEXTS[:6]
    assert read_texts(jsonl) == TEXTS[:6]
    with pytest.raises(ValueError, match="no column 'text'"):
        read_texts(csv)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty\.txt: no texts"):
        read_texts(empty)
    with pytest.raises(ValueError, match=r"expected a \.txt, \.csv or \.jsonl"):
        read_texts(txt.rename(tmp_path / "x.parquet"))
    with pytest.raises(ValueError, match="no such file"):
        read_texts(tmp_path / "missing.txt")


def test_cli_texts_and_external_binary_model_without_a_run(tmp_path):
    txt, csv, jsonl = _files(tmp_path)
    lex = tmp_path / "lex.json"
    lex.write_text(json.dumps(LEX))
    for i, (f, extra) in enumerate([(txt, []), (csv, ["--text-column", "comment"]),
                                    (jsonl, [])]):
        out = tmp_path / f"cf{i}"
        res = CliRunner().invoke(main, [
            "counterfactual", "--texts", str(f), *extra, "--external",
            "helpers_cf_models:binary_model", "--lexicon", str(lex), "--out", str(out),
            "--batch-size", "4", "--threshold", "0.5"])
        assert res.exit_code == 0, res.output
        rows = pd.read_csv(out / "counterfactual.csv")
        r = rows[(rows["direction"] == "to_toxic")].set_index("term")
        assert r.loc["muslim", "flip_rate"] == 1.0 and r.loc["table", "flip_rate"] == 0.0
        assert r.loc["muslim", "class_name"] == "class 1"
        assert {"shift_ci_low", "shift_ci_high"} <= set(rows.columns)
        summary = json.loads((out / "counterfactual.json").read_text())
        assert summary["threshold"] == 0.5 and summary["texts"] == str(f)
        assert "group religion vs control (helpers_cf_models:binary_model): supports" \
            in res.output
    # logits only with --outputs logits
    res = CliRunner().invoke(main, [
        "counterfactual", "--texts", str(txt), "--external", "helpers_cf_models:scores_model",
        "--lexicon", str(lex), "--out", str(tmp_path / "s")])
    assert res.exit_code == 1 and "not probabilities in [0, 1]" in res.output
    assert "--outputs logits" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, [
        "counterfactual", "--texts", str(txt), "--external", "helpers_cf_models:scores_model",
        "--outputs", "logits", "--lexicon", str(lex), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(("args", "lexicon", "match"), [
    (["--external", "helpers_cf_models:nan_model"], LEX, "outputs are NaN or infinite"),
    (["--external", "helpers_cf_models:binary_model", "--toxic-class", "-1"], LEX,
     "toxic_class: expected a class index >= 0"),
    (["--external", "helpers_cf_models:binary_model", "--toxic-class", "3"], LEX,
     "out of range"),
    (["--external", "helpers_cf_models:binary_model"], {"religion": ["muslim"], "x": []},
     "group 'x' has no terms"),
    (["--external", "helpers_cf_models:one_column_model", "--external",
      "helpers_cf_models:binary_model"], {"religion": ["muslim"], "x": []}, "no terms"),
])
def test_cli_refuses_with_one_line(tmp_path, args, lexicon, match):
    txt, _, _ = _files(tmp_path)
    lex = tmp_path / "lex.json"
    lex.write_text(json.dumps(lexicon))
    res = CliRunner().invoke(main, ["counterfactual", "--texts", str(txt), *args, "--lexicon",
                                    str(lex), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1, res.output
    assert match in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_usage_errors(tmp_path):
    txt, _, _ = _files(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n")
    res = CliRunner().invoke(main, ["counterfactual", "--texts", str(empty), "--external",
                                    "helpers_cf_models:binary_model", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "empty.csv: no texts" in res.output
    res = CliRunner().invoke(main, ["counterfactual", "--texts", str(txt), "--out",
                                    str(tmp_path)])
    assert res.exit_code == 2 and "without --run" in res.output
    res = CliRunner().invoke(main, ["counterfactual", "--texts", str(txt), "--model", "dense",
                                    "--external", "helpers_cf_models:binary_model",
                                    "--out", str(tmp_path)])
    assert res.exit_code == 2 and "needs --run" in res.output


# --- run directories: features outside the run, class names, verdicts ---------------------


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "match"), [
    ("3:9999", "feature 9999 in 3:9999 is out of range"),
    ("42:48", "class 42 in 42:48 is out of range"),
    ("-1:2", "class -1"),
])
def test_cli_missing_class_or_feature_is_one_line(tmp_path_factory, spec, match):
    from helpers_analysis import builtin_audit_run

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "shapes")
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--features", spec,
                                    "--out", str(tmp_path_factory.mktemp("o"))])
    assert res.exit_code == 1, res.output
    assert match in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_counterfactual_verdicts_with_class_names(tmp_path, tmp_path_factory):
    from helpers_analysis import builtin_audit_run

    from analysis.counterfactual.runner import run_counterfactual
    from sparse_probe.datasets.prepare import load_builtin

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "shapes")
    meta = json.loads((run / "features" / "meta.json").read_text())
    ds = load_builtin(meta)
    X = np.load(run / "features" / "test.npy")
    has_mark = ds.test.has_cue["watermark"].astype(float)
    a = X - X.mean(0)
    h = has_mark - has_mark.mean()
    feat = int(np.argmax((a * h[:, None]).sum(0) / (np.sqrt((a * a).sum(0) * (h * h).sum())
                                                     + 1e-12)))
    target = ds.cue_class["watermark"]
    out = tmp_path / "cf"
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--out", str(out),
                                    "--features", f"{target}:{feat}", "--model", "dense"])
    assert res.exit_code == 0, res.output
    assert f"triangle · feature {feat} (dense): supports" in res.output
    rows = pd.read_csv(out / "counterfactual.csv")
    assert set(rows["class_name"]) == {"triangle"}
    assert {"image_paste_same", "image_paste_random", "image_removal",
            "image_removal_ctrl_other_classes"} <= set(rows["test"])
    ctrl = rows[rows["control_of"] == "image_paste_same"]
    assert set(ctrl["test"]) == {"image_paste_same_ctrl_elsewhere",
                                 "image_paste_same_ctrl_nontop"}
    summary = json.loads((out / "counterfactual.json").read_text())
    (v,) = summary["verdicts"]
    assert (v["class_name"], v["feature"], v["verdict"]) == ("triangle", feat, "supports")
    assert summary["classes"][target] == "triangle"
    # a built-in dataset: the tests know the objects (ground truth), and the background swap
    # carries the watermark too (it lies in the background)
    assert summary["object_masks"] == "built-in ground truth" and v["object_masks"] is True
    assert v["tests"]["image_background_swap"] == "supports"
    assert {"image_background_swap_ctrl_random", "image_background_swap_ctrl_nontop",
            "image_background_removal_ctrl_other_classes"} <= set(rows["test"])
    # with a report beside it, the HTML says whether the counterfactual supports the verdict
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.json").write_text((run / "report" / "report.json").read_text())
    run_counterfactual(run, rep, features=[(target, feat)], models=("dense",), n=100)
    html = (rep / "index.html").read_text()
    assert "Does the counterfactual support the verdict?" in html
    (v,) = json.loads((rep / "counterfactual.json").read_text())["verdicts"]
    # the network's own last layer is labelled "original" ("dense" is the deprecated alias)
    assert f"triangle · feature {feat}</td><td>original</td><td>{v['verdict']}</td>" in html
    assert "background_swap: " in html
    # text runs: toxic class by name; an unknown name is refused before any model runs
    trun = builtin_audit_run(tmp_path_factory.getbasetemp(), "toxicity")
    rows = run_counterfactual(trun, tmp_path / "t", models=("dense",), n=30,
                              lexicon={"religion": ["muslim"], "control": ["table"]},
                              toxic_class="toxic", threshold=0.5, texts=TEXTS[:30])
    assert set(rows["class_name"]) == {"toxic"}
    with pytest.raises(ValueError, match="no class named 'nasty'"):
        run_counterfactual(trun, tmp_path / "t", models=("dense",), toxic_class="nasty")


@pytest.mark.slow
def test_cli_user_mask_and_patch_on_a_run(tmp_path, tmp_path_factory):
    from helpers_analysis import builtin_audit_run
    from PIL import Image

    run = builtin_audit_run(tmp_path_factory.getbasetemp(), "shapes")
    meta = json.loads((run / "features" / "meta.json").read_text())
    size = meta["dataset"]["params"]["size"]
    mask = np.zeros((size, size), np.uint8)
    mask[:4, :4] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    patch = np.zeros((4, 4, 3), np.uint8)
    patch[..., 0] = patch[..., 2] = 255  # the watermark's magenta
    Image.fromarray(patch).save(tmp_path / "patch.png")
    out = tmp_path / "cf"
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--out", str(out),
                                    "--features", "5:0", "--model", "dense", "--n", "60",
                                    "--mask", str(tmp_path / "mask.png"), "--patch",
                                    str(tmp_path / "patch.png")])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "counterfactual.json").read_text())
    assert summary["region"] == "mask" and summary["patch"] is True
    assert summary["verdicts"][0]["boxes"][0] == [0, 0, 4, 4]
    Image.fromarray(np.zeros((size + 1, size), np.uint8) + 255).save(tmp_path / "big.png")
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--out", str(out),
                                    "--features", "5:0", "--model", "dense",
                                    "--mask", str(tmp_path / "big.png")])
    assert res.exit_code == 1 and "region: expected a mask of shape" in res.output
    res = CliRunner().invoke(main, ["counterfactual", "--run", str(run), "--region", "0,0,4",
                                    "--features", "5:0"])
    assert res.exit_code == 2 and "expected Y0,X0,Y1,X1" in res.output
