"""HIT building: manifest contract, pages, question XML, escaping, gold, determinism, CLI."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import html5lib
import numpy as np
import pytest
import torch
from bs4 import BeautifulSoup
from click.testing import CliRunner
from helpers_viz import image_run, text_run

from tasks.build import LONG_BASE_URL, BuildError, build_tasks
from tasks.cli import tasks as tasks_cli
from tasks.cost import estimate_cost
from tasks.question_xml import HTML_QUESTION_NS, QUESTION_MAX_BYTES, html_question, retarget_assets

MANIFEST_KEYS = {"hit_key", "kind", "layer", "class", "class_name", "feature", "weight", "rank",
                 "direction", "html", "assets", "example_ids", "is_gold", "gold", "attention",
                 "evidence", "evidence_panels", "evidence_images", "colour", "detail", "truth",
                 "removal", "truth_removal", "truth_maps", "assignments", "reward"}
FAST = {"fvis_steps": 12, "fvis_size": 32, "n_examples": 6, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    probe, feats, src = image_run(root)
    res = build_tasks(probe, feats, root / "tasks", source=src, gold_share=0.34, **FAST)
    return root, res, src


@pytest.fixture(scope="module")
def text_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("txt")
    probe, feats, src = text_run(root)
    res = build_tasks(probe, feats, root / "tasks", source=src, gold_share=0.0, **FAST)
    return root, res, src


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _strict_parse(text: str) -> None:
    html5lib.HTMLParser(strict=True).parse(text)


@pytest.mark.slow
def test_manifest_follows_the_contract(image_build):
    root, res, _ = image_build
    out = root / "tasks"
    records = _manifest(out)
    assert records == res.manifest and len(records) == 3
    X = np.load(root / "features" / "val.npy")
    ids = json.loads((root / "features" / "val_ids.json").read_text())
    for r in records:
        assert set(r) == MANIFEST_KEYS
        assert r["kind"] == "image" and r["layer"] == "sparse"
        assert r["colour"] is None or 0 <= r["colour"] < 10  # share left in greyscale
        assert r["hit_key"] == f"img-c{r['class']:02d}-f{r['feature']:04d}-sparse"
        assert r["html"] == f"hits/{r['hit_key']}.html" and (out / r["html"]).is_file()
        assert set(r["assets"]) == {"grid", "heat", "activation", "contrast", "least", "fvis",
                                    "class_examples"}
        for path in r["assets"].values():
            assert path.startswith("assets/") and (out / path).is_file()
        # top-activating examples, independently: argsort of the feature column
        v = X[:, r["feature"]]
        order = np.argsort(-v if r["weight"] > 0 else v, kind="stable")[:6]
        assert r["example_ids"] == [ids[i] for i in order]
        assert r["direction"] == ("highest" if r["weight"] > 0 else "lowest")
        assert r["attention"]["field"] == "attention"
        assert r["attention"]["expected"] in {str(i) for i in range(1, 10)}
        assert r["truth"] in {"core", "spurious:mark", "none"}
        assert set(r["evidence"]) == {"object", "cues", "background"}
        # each map panel's shares and contrast numbers; evidence is the trusted panel's
        assert set(r["evidence_panels"]) == {"lime", "activation"}
        for p in r["evidence_panels"].values():
            assert set(p) == {"object", "cues", "background", "removed", "kept", "area"}
        # share of the top / the class's least-activating images that show each cue
        assert set(r["evidence_images"]) == {"top", "least"}
        assert set(r["evidence_images"]["top"]) == {"mark"}
    truths = {r["hit_key"]: r["truth"] for r in records}
    assert truths["img-c01-f0000-sparse"] == "spurious:mark"
    assert truths["img-c00-f0001-sparse"] == "core"
    mark = next(r for r in records if r["feature"] == 0)
    assert mark["evidence"]["cues"]["mark"] > 0.5


def gold_run(root: Path):
    """A run on ColorCNN whose audit (sparse top features) shows the mark (feature 0, class
    1) and the diffuse feature 2 (class 0); the object detector (feature 1) is a dense top
    feature of class 0 outside the audit, so it can be a gold item (its answer, "the object",
    is known from the masks). Returns (probe_dir, features_dir, source)."""
    from helpers_viz import ColorCNN, synthetic_images, write_run

    from tasks.viz.source import ExampleSource

    images, labels, obj, mark = synthetic_images(24, 32)
    model = ColorCNN().eval()
    with torch.no_grad():
        X = model.embed(images).numpy()
    names = ["plain", "marked"]
    top = [{"class": 0, "class_name": "plain", "feature": 2, "weight": 1.0, "rank": 1},
           {"class": 1, "class_name": "marked", "feature": 0, "weight": 2.0, "rank": 1}]
    dense = [*top, {"class": 0, "class_name": "plain", "feature": 1, "weight": 0.8, "rank": 2}]
    probe, feats = write_run(root, "image", X, labels, [f"val/{i:04d}" for i in range(24)],
                             top, names, dense=dense)
    src = ExampleSource(kind="image", images=images, spatial=lambda x: model.features(x),
                        features=model.embed, model=model, fvis_layer="features",
                        object_masks=obj, cue_masks={"mark": mark}, cue_kind={"mark": "mark"})
    return probe, feats, src


@pytest.mark.slow
def test_gold_hits_are_features_outside_the_audit_and_look_like_the_others(tmp_path):
    probe, feats, src = gold_run(tmp_path)
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_share=0.34, **FAST)
    audited = [r for r in res.manifest if not r["is_gold"]]
    gold = [r for r in res.manifest if r["is_gold"]]
    # the audit is exactly the sparse top features; gold comes on top of it
    assert sorted((r["class"], r["feature"]) for r in audited) == [(0, 2), (1, 0)]
    assert len(gold) == 1 == res.n_gold   # max(1, round(0.34 * 2))
    g = gold[0]
    assert (g["class"], g["feature"], g["layer"]) == (0, 1, "dense")
    assert g["feature"] not in {r["feature"] for r in audited}
    assert g["truth"] == "core" and g["gold"] == {"shared": "yes", "pattern": "object"}
    assert set(g["assets"]) == set(audited[0]["assets"])
    for r in audited:
        assert r["gold"] is None
    # every file under assets/ belongs to a HIT of the manifest (no leftover candidates)
    used = {Path(a).name for r in res.manifest for a in r["assets"].values()}
    assert {p.name for p in (tmp_path / "tasks" / "assets").iterdir()} == used
    pages = [(tmp_path / "tasks" / r["html"]).read_text() for r in res.manifest]
    for p in pages:
        assert "gold" not in p.lower() and "truth" not in p.lower()
    # same structure as an audited HIT: identical tag sequences once the HIT-specific values
    # are removed (the diffuse feature's page adds a note that its heatmap is empty)
    shapes = {r["hit_key"]: [t.name for t in BeautifulSoup(p, "html5lib").find_all(True)]
              for r, p in zip(res.manifest, pages, strict=True)}
    assert shapes[g["hit_key"]] == shapes["img-c01-f0000-sparse"]


@pytest.mark.slow
def test_pages_are_complete_mturk_forms(image_build):
    root, res, _ = image_build
    out = root / "tasks"
    for r in res.manifest:
        text = (out / r["html"]).read_text()
        _strict_parse(text)
        soup = BeautifulSoup(text, "html5lib")
        assert soup.find("meta", attrs={"name": "viewport"})
        form = soup.find("form")
        assert form["method"].lower() == "post" and form["action"] == "/mturk/externalSubmit"
        for name in ("assignmentId", "hitId", "workerId"):
            el = form.find("input", attrs={"name": name})
            assert el["type"] == "hidden" and el["value"] == ""
        assert form.find("input", attrs={"name": "hit_key"})["value"] == r["hit_key"]
        values = {i["value"] for i in form.find_all("input", attrs={"name": "pattern"})}
        assert values == {"object", "background", "mark", "other"}
        assert {i["value"] for i in form.find_all("input", attrs={"name": "shared"})} == {
            "yes", "no", "unsure"}
        assert [i["value"] for i in form.find_all("input", attrs={"name": "confidence"})] == [
            "1", "2", "3", "4", "5"]
        for name in ("shared", "pattern", "confidence"):
            assert all(i.has_attr("required") for i in form.find_all("input", attrs={"name": name}))
        assert form.find("textarea", attrs={"name": "description"}).has_attr("required")
        att = form.find("select", attrs={"name": "attention"})
        assert att.has_attr("required")
        assert f"select the number shown here: {r['attention']['expected']}" in \
            soup.get_text(" ", strip=True)
        assert soup.find(string=re.compile(r["class_name"]))
        imgs = soup.find_all("img")
        assert len(imgs) >= 4
        for img in imgs:
            assert img.get("alt", "").strip()
            assert img["src"].startswith("../assets/")
            assert (out / "hits" / img["src"]).resolve().is_file()
        # every URL in the page is an asset URL: nothing else to retarget or to fetch
        assert not re.search(r'(src|href)="(?!\.\./assets/)', text)
        if r["direction"] == "lowest":
            assert "lowest" in soup.get_text()
        # the object channel is >= 0, so its lowest images have nothing to highlight
        assert ("nothing is highlighted" in soup.get_text()) == (r["direction"] == "lowest")


@pytest.mark.slow
def test_question_xml_is_wellformed_namespaced_and_small(image_build):
    root, res, _ = image_build
    for r in res.manifest:
        page = (root / "tasks" / r["html"]).read_text()
        xml = html_question(retarget_assets(page, LONG_BASE_URL), what=r["hit_key"])
        assert len(xml.encode()) < QUESTION_MAX_BYTES
        tree = ET.fromstring(xml)
        assert tree.tag == f"{{{HTML_QUESTION_NS}}}HTMLQuestion"
        content = tree.find(f"{{{HTML_QUESTION_NS}}}HTMLContent").text
        assert "../assets/" not in content and LONG_BASE_URL in content
        assert tree.find(f"{{{HTML_QUESTION_NS}}}FrameHeight").text == "0"


@pytest.mark.slow
def test_batch_csv_fills_every_template_placeholder(image_build, text_build):
    for root, res, _ in (image_build, text_build):
        out = root / "tasks"
        template = (out / "template.html").read_text()
        placeholders = set(re.findall(r"\$\{(\w+)\}", template))
        with open(out / "batch.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == res.n_hits
        assert placeholders <= set(rows[0])
        assert "{{" not in template and "{%" not in template
        for row, r in zip(rows, res.manifest, strict=True):
            assert row["hit_key"] == r["hit_key"]
            assert row["attention_number"] == r["attention"]["expected"]
            for col, val in row.items():
                if col.endswith("_file") and val:
                    assert (out / "assets" / val).is_file()
        soup = BeautifulSoup(template, "html5lib")
        names = {i["name"] for i in soup.find_all(["input", "textarea", "select"])}
        assert names == {"hit_key", "shared", "pattern", "confidence", "description",
                         "attention"}


def test_text_hits(text_build):
    root, res, _ = text_build
    out = root / "tasks"
    by_feature = {r["feature"]: r for r in res.manifest}
    assert by_feature[1]["truth"] == "spurious:identity"
    assert by_feature[0]["truth"] == "core" and by_feature[2]["truth"] == "core"
    for r in res.manifest:
        assert set(r) == MANIFEST_KEYS and r["kind"] == "text"
        assert r["colour"] is None  # text HITs have no greyscale line
        assert r["hit_key"].startswith("txt-")
        assert set(r["assets"]) == {"examples", "cloud", "class_cloud", "panels"}
        text = (out / r["html"]).read_text()
        _strict_parse(text)
        soup = BeautifulSoup(text, "html5lib")
        values = {i["value"] for i in soup.find_all("input", attrs={"name": "pattern"})}
        assert values == {"object", "identity", "other"}
        assert len(soup.select("ol.texts li")) == 6
        assert soup.select("span.hl")                     # attributions highlighted
        assert soup.select("p.cloud span")                 # feature word cloud
        for img in soup.find_all("img"):
            assert img["alt"].strip() and img["src"].startswith("../assets/")
    ident = BeautifulSoup((out / by_feature[1]["html"]).read_text(), "html5lib")
    hot = {s.get_text() for s in ident.select("ol.texts span.hl")}
    assert hot and hot <= {"muslim", "jewish", "christian"}


@pytest.mark.slow
def test_script_in_class_name_and_text_is_escaped(tmp_path):
    evil = "<script>alert('x')</script>"
    probe, feats, src = image_run(tmp_path / "i", class_name=evil)
    build_tasks(probe, feats, tmp_path / "i" / "tasks", source=src, **FAST)
    for page in (tmp_path / "i" / "tasks" / "hits").iterdir():
        text = page.read_text()
        assert "<script>alert" not in text
        if "c01" in page.name:
            assert "&lt;script&gt;alert" in text
            assert evil in BeautifulSoup(text, "html5lib").find("h1").get_text()
        assert len(BeautifulSoup(text, "html5lib").find_all("script")) == 1
    probe, feats, src = text_run(tmp_path / "t")
    src.texts[0] = src.texts[0] + " <script>alert(1)</script> idiot"
    src.tokens[0] = src.texts[0].split()
    src.token_kinds[0] = [*src.token_kinds[0], "other", "insult"]
    X = np.load(feats / "val.npy")
    X[0, 0] = 100.0
    np.save(feats / "val.npy", X)
    build_tasks(probe, feats, tmp_path / "t" / "tasks", source=src, **FAST)
    page = (tmp_path / "t" / "tasks" / "hits" / "txt-c01-f0000-sparse.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path, image_build):
    root, res, src = image_build
    probe, feats = root / "probe", root / "features"
    again = build_tasks(probe, feats, tmp_path / "a", source=src, gold_share=0.34, **FAST)
    first = root / "tasks"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                           if p.is_file())
    for f in files:
        assert (first / f).read_bytes() == (tmp_path / "a" / f).read_bytes(), f
    assert again.manifest == res.manifest
    other = build_tasks(probe, feats, tmp_path / "b", source=src, seed=5, gold_share=0.34,
                        **FAST)
    assert [r["attention"] for r in other.manifest] != [r["attention"] for r in res.manifest] \
        or (tmp_path / "b/assets/img-c00-f0001-sparse-fvis.png").read_bytes() != \
        (first / "assets/img-c00-f0001-sparse-fvis.png").read_bytes()


@pytest.mark.slow
def test_layer_both_adds_dense_hits_and_gold_file(tmp_path):
    probe, feats, src = image_run(tmp_path)
    gold = tmp_path / "gold.json"
    # a gold item must not be a HIT (or a feature) under audit
    gold.write_text(json.dumps({"img-c00-f0002-dense": {"shared": "no", "pattern": "other"}}))
    with pytest.raises(BuildError, match=r"gold\.json: img-c00-f0002-dense is a HIT under "
                                         r"audit; gold items must be features outside"):
        build_tasks(probe, feats, tmp_path / "tasks", source=src, layer="both",
                    gold_file=gold, **FAST)
    gold.write_text(json.dumps({"img-c01-f0001-extra": {"shared": "yes", "pattern": "object"}}))
    with pytest.raises(BuildError, match=r"feature 1 is under audit"):
        build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_file=gold, **FAST)
    gold.write_text(json.dumps({"feature-2": {"shared": "yes", "pattern": "object"}}))
    with pytest.raises(BuildError, match=r"gold key 'feature-2' is not img-cCC-fFFFF-NAME"):
        build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_file=gold, **FAST)
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, layer="both", **FAST)
    keys = res.hit_keys
    assert sum(k.endswith("-sparse") for k in keys) == 3
    assert sum(k.endswith("-dense") for k in keys) == 4
    assert res.n_gold == 0  # every feature of the model is audited: none is left for gold
    # a researcher-labelled feature outside the audit (sparse: features 0 and 1) is gold
    gold.write_text(json.dumps({"img-c00-f0002-sparse": {"shared": "no", "pattern": "other"}}))
    res = build_tasks(probe, feats, tmp_path / "tasks", source=src, gold_file=gold, **FAST)
    gold_rows = [r for r in res.manifest if r["is_gold"]]
    assert [r["hit_key"] for r in gold_rows] == ["img-c00-f0002-sparse"]
    assert gold_rows[0]["gold"] == {"shared": "no", "pattern": "other"}
    assert gold_rows[0]["feature"] == 2 and gold_rows[0]["weight"] == 0.1  # the probe's entry
    assert {r["feature"] for r in res.manifest if not r["is_gold"]} == {0, 1}
    # k limits features per class
    res1 = build_tasks(probe, feats, tmp_path / "k1", source=src, k_features=1, **FAST)
    assert res1.hit_keys == ["img-c00-f0001-sparse", "img-c01-f0000-sparse"]


@pytest.mark.slow
def test_oversized_hit_fails_clearly_and_leaves_previous_build(tmp_path):
    probe, feats, src = image_run(tmp_path)
    out = tmp_path / "tasks"
    build_tasks(probe, feats, out, source=src, **FAST)
    before = (out / "manifest.jsonl").read_bytes()
    pj = json.loads((probe / "probe.json").read_text())
    for e in pj["top_features"]["sparse"]:
        e["class_name"] = "x" * 40_000
    (probe / "probe.json").write_text(json.dumps(pj))
    with pytest.raises(BuildError, match=r"img-c0\d-f\d{4}-sparse: question XML is \d+ bytes"):
        build_tasks(probe, feats, out, source=src, **FAST)
    assert (out / "manifest.jsonl").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".build-" in p.name]


def test_bad_inputs_are_clear_errors(tmp_path):
    probe, feats, src = image_run(tmp_path)
    with pytest.raises(BuildError, match="between 5 and 9"):
        build_tasks(probe, feats, tmp_path / "o", source=src, n_examples=3)
    with pytest.raises(BuildError, match="reward"):
        build_tasks(probe, feats, tmp_path / "o", source=src, reward="$1")
    with pytest.raises(BuildError, match=r"val_x\.npy: not found"):
        build_tasks(probe, feats, tmp_path / "o", source=src, split="val_x")
    pj = json.loads((probe / "probe.json").read_text())
    del pj["top_features"]["dense"]
    (probe / "probe.json").write_text(json.dumps(pj))
    with pytest.raises(BuildError, match=r"probe.json: field top_features.dense missing"):
        build_tasks(probe, feats, tmp_path / "o", source=src, layer="dense")
    assert not (tmp_path / "o").exists()
    runner = CliRunner()
    result = runner.invoke(tasks_cli, ["build", "--probe", str(tmp_path / "features"),
                                       "--features", str(feats), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "probe.json: not found" in result.output
    result = runner.invoke(tasks_cli, ["build", "--probe", str(probe), "--out",
                                       str(tmp_path / "o"), "--examples", "12"])
    assert result.exit_code != 0 and "--examples" in result.output


def test_cost_preview_matches_cost_module(image_build):
    _, res, _ = image_build
    ref = estimate_cost(3, 3, "0.10")
    assert res.cost == ref
    assert res.cost.summary().startswith("3 HITs x 3 assignments x $0.10")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "k"), [("shapes", 2), ("toxicity", 3)])
def test_cli_builds_hits_for_the_builtin_datasets(name, k, tmp_path):
    """``sparse-probe tasks build`` on real ``features/`` of a built-in dataset (trained model,
    sparse_probe.extract loading): cost preview, pages, evidence from the dataset's masks."""
    pytest.importorskip("sparse_probe.extract")
    from helpers_viz import prepared_builtin

    from sparse_probe.datasets import load_builtin
    from sparse_probe.extract import read_meta

    run = prepared_builtin(name)
    out = tmp_path / "tasks"
    result = CliRunner().invoke(tasks_cli, [
        "build", "--probe", str(run / "probe"), "--features", str(run / "features"),
        "--out", str(out), "--k", str(k), "--examples", "5", "--fvis-steps", "4",
        "--fvis-size", "32", "--reward", "0.25", "--assignments", "10"])
    assert result.exit_code == 0, result.output
    records = _manifest(out)
    assert estimate_cost(len(records), 10, "0.25").summary() in result.output
    assert f"wrote {len(records)} HITs" in result.output
    meta = read_meta(run / "features")
    audited = [r for r in records if not r["is_gold"]]
    assert len(audited) == k * len(meta["classes"])
    # gold items (default share 0.1: at most one) are features outside the audit whose answer
    # is clear both from the maps and by intervention; the toxicity probe lists 3 features per
    # class, all audited: none is left for gold
    gold = [r for r in records if r["is_gold"]]
    assert len(gold) <= (1 if k < 3 else 0)
    for g in gold:
        assert g["gold"] is not None and g["feature"] not in {r["feature"] for r in audited}
        assert g["truth_maps"] in (None, g["truth"])
    ds = load_builtin(meta)
    for r in records:
        assert set(r) == MANIFEST_KEYS and r["assignments"] == 10 and r["reward"] == "0.25"
        assert r["evidence"] is not None and r["truth"] is not None
        page = (out / r["html"]).read_text()
        _strict_parse(page)
        html_question(retarget_assets(page, LONG_BASE_URL), what=r["hit_key"])
    if name == "shapes":
        assert all((out / r["assets"]["fvis"]).is_file() for r in records)
        # a HIT whose heatmaps sit on the watermark belongs to the watermark's class
        cue_class = ds.cue_class[next(c for c, k in ds.cue_kind.items() if k == "mark")]
        marks = [r for r in audited if r["truth"] == "spurious:mark"]
        assert marks and all(r["class"] == cue_class for r in marks)
    else:
        assert all("fvis" not in r["assets"] for r in records)
        ids = [r for r in audited if r["truth"] == "spurious:identity"]
        assert ids and all(r["class_name"] == "toxic" for r in ids)


@pytest.mark.slow
def test_build_refuses_features_from_a_changed_builtin_dataset(tmp_path):
    pytest.importorskip("sparse_probe.extract")
    import shutil

    from helpers_viz import prepared_builtin

    run = prepared_builtin("shapes")
    shutil.copytree(run / "features", tmp_path / "features")
    shutil.copytree(run / "probe", tmp_path / "probe")
    meta = json.loads((tmp_path / "features" / "meta.json").read_text())
    meta["classes"] = meta["classes"][::-1]
    (tmp_path / "features" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BuildError, match="dataset changed since extraction"):
        build_tasks(tmp_path / "probe", tmp_path / "features", tmp_path / "tasks", **FAST)
    labels = np.load(tmp_path / "features" / "val_labels.npy")
    np.save(tmp_path / "features" / "val_labels.npy", (labels + 1) % 6)
    meta["classes"] = meta["classes"][::-1]
    (tmp_path / "features" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BuildError, match=r"val_labels\.npy differs"):
        build_tasks(tmp_path / "probe", tmp_path / "features", tmp_path / "tasks", **FAST)
    assert not (tmp_path / "tasks").exists()


STUDY_SCHEMA = """
gold_fields = ["present", "what"]

[[questions]]
id = "present"
role = "presence"
kind = "choice"
wording = "Do the highlighted parts of these {examples} look alike?"
values = [{value = "Y", label = "Yes", meaning = "pattern"},
          {value = "N", label = "No", meaning = "no_pattern"}]

[[questions]]
id = "what"
role = "pattern"
kind = "choice"
wording = "What is highlighted?"
values = [{value = "thing", label = "the {class_name}", meaning = "core"},
          {value = "logo", label = "a logo", meaning = "spurious", spurious_kind = "mark"},
          {value = "else", label = "something else", meaning = "spurious"}]
"""


@pytest.mark.slow
def test_a_study_schema_drives_pages_template_gold_and_questions_json(tmp_path):
    from sparse_probe.questions import default_schema, load_schema, schema_for_tasks

    (tmp_path / "study.toml").write_text(STUDY_SCHEMA)
    study = load_schema(tmp_path / "study.toml")
    probe, feats, src = gold_run(tmp_path)
    out = tmp_path / "tasks"
    res = build_tasks(probe, feats, out, source=src, gold_share=1.0, questions=study, **FAST)
    assert schema_for_tasks(out) == study
    assert all(r["attention"] is None for r in res.manifest)  # the study asks no attention check
    gold = [r["gold"] for r in res.manifest if r["is_gold"]]
    assert gold and all(g in ({"present": "Y", "what": "thing"}, {"present": "Y", "what": "logo"})
                        for g in gold)
    for text in [(out / r["html"]).read_text() for r in res.manifest] + [
            (out / "template.html").read_text()]:
        soup = BeautifulSoup(text, "html5lib")
        names = {i["name"] for i in soup.find_all(["input", "select", "textarea"])
                 if i.get("type") != "hidden"}
        assert names == {"present", "what"}
        assert "1. Do the highlighted parts of these images look alike?" in soup.get_text(
            " ", strip=True)
    # a gold file is checked against the study's values
    (tmp_path / "gold.json").write_text(json.dumps({res.manifest[0]["hit_key"]: {
        "present": "yes", "what": "thing"}}))
    with pytest.raises(BuildError, match=r"gold\.json: gold answer of .* must have present in "
                                         r"Y/N, got 'yes'"):
        build_tasks(probe, feats, tmp_path / "o", source=src, gold_file=tmp_path / "gold.json",
                    questions=study, **FAST)
    # rebuilding with the built-in questions replaces questions.json
    build_tasks(probe, feats, out, source=src, **FAST)
    assert schema_for_tasks(out) == default_schema()
    (tmp_path / "bad.toml").write_text("[[questions]]\nid = 'x'\nkind = 'choice'\n")
    result = CliRunner().invoke(tasks_cli, ["build", "--probe", str(probe), "--features",
                                            str(feats), "--out", str(tmp_path / "o"),
                                            "--questions", str(tmp_path / "bad.toml")])
    assert result.exit_code != 0
    assert "bad.toml: question 'x': missing field 'wording'" in result.output


def test_cli_panel_defaults_are_the_panels_modules():
    from tasks import build_cli
    from tasks.viz.panels import HIT_PANELS, MAP_PANELS

    assert ",".join(HIT_PANELS) == build_cli.DEFAULT_PANELS
    assert build_cli.PANEL_CHOICES == MAP_PANELS


@pytest.mark.slow
def test_cli_panel_options_reach_the_hits(tmp_path):
    """--panels/--lime-samples choose the image HITs' maps; --insertion-words 0 drops the text
    HITs' insertion panel; an unknown panel is a one-line error and writes nothing."""
    pytest.importorskip("sparse_probe.extract")
    from helpers_viz import prepared_builtin

    base = ["--k", "1", "--examples", "5", "--fvis-steps", "0", "--gold-share", "0"]
    run = prepared_builtin("shapes")
    out = tmp_path / "img"
    res = CliRunner().invoke(tasks_cli, [
        "build", "--probe", str(run / "probe"), "--features", str(run / "features"),
        "--out", str(out), *base, "--panels", "gradient, activation", "--lime-samples", "0"])
    assert res.exit_code == 0, res.output
    for r in _manifest(out):
        assert list(r["evidence_panels"]) == ["gradient", "activation"]
        assert "activation" in r["assets"] and "lime" not in r["assets"]

    run = prepared_builtin("toxicity")
    out = tmp_path / "txt"
    res = CliRunner().invoke(tasks_cli, [
        "build", "--probe", str(run / "probe"), "--features", str(run / "features"),
        "--out", str(out), *base, "--insertion-words", "0"])
    assert res.exit_code == 0, res.output
    assert all("insertion" not in r["evidence_panels"] for r in _manifest(out))

    out = tmp_path / "bad"
    res = CliRunner().invoke(tasks_cli, [
        "build", "--probe", str(run / "probe"), "--features", str(run / "features"),
        "--out", str(out), *base, "--panels", "lime,saliency"])
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1
    assert "panels: unknown ['saliency']; expected some of lime, activation, gradient" in res.output
    assert not out.exists()
