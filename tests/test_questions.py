"""The question schema: built-in fields, validation, meanings, loading a study's own, rendering."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup

from sparse_probe.questions import (
    SchemaError,
    default_schema,
    load_schema,
    schema_for_tasks,
    schema_from_dict,
)
from tasks.hit_render import render_hit, render_mturk_template

SUBMISSION = {"shared": "yes", "pattern": "mark", "confidence": "4", "description": "a logo",
              "attention": "7", "assignmentId": "A1", "hit_key": "k"}


def test_builtin_schema_is_the_contract():
    s = default_schema()
    assert s.ids == ("shared", "pattern", "confidence", "description", "attention")
    assert s["shared"].allowed() == ("yes", "no", "unsure")
    assert s["pattern"].allowed("image") == ("object", "background", "mark", "other")
    assert s["pattern"].allowed("text") == ("object", "identity", "other")
    assert s["confidence"].allowed() == ("1", "2", "3", "4", "5")
    assert s.gold_fields == ("shared", "pattern") and s.categorical == ("shared", "pattern")
    assert s.field_for("attention") == "attention"


def test_meanings():
    s = default_schema()
    assert s.meaning("shared", "yes") == "pattern" and s.meaning("shared", "No") == "no_pattern"
    assert s.meaning("shared", "unsure") == "unsure" and s.abstentions() == {"unsure"}
    assert s.meaning("pattern", "object") == "core"
    assert [s.spurious_kind("pattern", v) for v in ("background", "mark", "identity", "other",
                                                     "object", "bogus")] == [
        "background", "mark", "identity", "other", None, None]
    assert s.meaning("pattern", "bogus") is None and s.meaning("nope", "yes") is None
    assert s.value_for("pattern", "spurious", "mark") == "mark"
    assert s.value_for("pattern", "spurious", "identity", hit_kind="image") is None
    assert s.values_meaning("shared", "pattern") == ("yes",)


def test_validate_reports_every_problem_by_field():
    s = default_schema()
    assert s.validate(SUBMISSION, "image") == []
    bad = {**SUBMISSION, "shared": "maybe", "pattern": "identity", "confidence": "",
           "description": "x" * 501}
    del bad["attention"]
    problems = s.validate(bad, "image")
    assert problems == [
        "shared: 'maybe' is not one of ['yes', 'no', 'unsure']",
        "pattern: 'identity' is not one of ['object', 'background', 'mark', 'other']",
        "confidence: missing (required)",
        "description: 501 characters, at most 500",
        "attention: missing (required)",
    ]
    # identity is allowed on text HITs, and without a kind on any HIT
    assert s.validate({**SUBMISSION, "pattern": "identity"}, "text") == []
    assert s.validate({**SUBMISSION, "pattern": "identity"}) == []
    assert s.validate({**SUBMISSION, "shared": ["yes", "no"]}) == [
        "shared: 2 values given, expected one"]


STUDY_TOML = """
gold_fields = ["present"]

[[questions]]
id = "present"
role = "presence"
kind = "choice"
wording = "Do these {examples} share something? ({class_name})"
values = [
  {value = "Y", label = "Yes", meaning = "pattern"},
  {value = "N", label = "No", meaning = "no_pattern"},
]

[[questions]]
id = "what"
role = "pattern"
kind = "choice"
wording = "Which?"
values = [
  {value = "thing", label = "the {class_name} itself", meaning = "core"},
  {value = "scenery", label = "the scenery", meaning = "spurious", spurious_kind = "background"},
]

[[questions]]
id = "why"
kind = "text"
required = false
wording = "Why?"
"""


def test_load_a_study_schema_toml_and_json(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_TOML)
    s = load_schema(path)
    assert s.ids == ("present", "what", "why") and s.categorical == ("present", "what")
    assert s.spurious_kind("what", "scenery") == "background"
    assert s.validate({"present": "Y", "what": "thing"}) == []
    js = tmp_path / "study.json"
    js.write_text(json.dumps(s.to_dict()))
    assert load_schema(js) == s
    assert schema_from_dict(default_schema().to_dict()) == default_schema()


@pytest.mark.parametrize(("text", "message"), [
    ("questions = 3", "field 'questions' must be a non-empty list"),
    ("[[questions]]\nid = 'a'\nkind = 'choice'\n", "question 'a': missing field 'wording'"),
    ("[[questions]]\nid = 'a'\nwording = 'x'\nkind = 'slider'\n",
     "question 'a': kind 'slider' is not one of"),
    ("[[questions]]\nid = 'a'\nwording = 'x'\nkind = 'choice'\n"
     "values = [{value = 'v', meaning = 'great'}]\n", "value 'v': meaning 'great'"),
    ("[[questions]]\nid = 'a'\nwording = 'x {nope}'\nkind = 'text'\n",
     "question 'a': wording uses unknown placeholder(s) ['nope']"),
    ("gold_fields = ['b']\n[[questions]]\nid = 'a'\nwording = 'x'\nkind = 'text'\n",
     "gold_fields names 'b'"),
    ("[[questions]]\nid = 'a'\nwording = 'x'\nkind = 'text'\ncolour = 'red'\n",
     "questions[0]: unknown field(s) ['colour']"),
    ("[[questions]]\nid = 'a b'\nwording = 'x'\nkind = 'text'\n", "not a valid form field"),
    ("[[questions]\n", "not valid TOML"),
])
def test_loader_errors_are_one_line_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SchemaError) as err:
        load_schema(path)
    msg = str(err.value)
    assert message in msg and str(path) in msg and "\n" not in msg
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.toml")


def test_schema_for_tasks_reads_questions_json(tmp_path):
    assert schema_for_tasks(tmp_path) == default_schema()
    (tmp_path / "s.toml").write_text(STUDY_TOML)
    (tmp_path / "questions.json").write_text(json.dumps(load_schema(tmp_path / "s.toml")
                                                        .to_dict()))
    assert schema_for_tasks(tmp_path).ids == ("present", "what", "why")


def _page(kind: str, schema=None) -> str:
    return render_hit(kind=kind, hit_key="k1", class_name="cat", direction="highest",
                      attention_number="7", assets={"grid": "../assets/g.png",
                                                    "heat": "../assets/h.png",
                                                    "class_examples": "../assets/c.png"},
                      n_examples=5, schema=schema)


def _legends(html: str) -> list[str]:
    soup = BeautifulSoup(html, "html.parser")
    return [" ".join(fs.find("legend").get_text(" ", strip=True).split())
            for fs in soup.find_all("fieldset")]


@pytest.mark.parametrize("kind", ["image", "text"])
def test_both_templates_ask_the_same_questions(kind):
    page = _page(kind) if kind == "image" else render_hit(
        kind="text", hit_key="k1", class_name="cat", direction="highest",
        attention_number="7", assets={}, n_examples=5)
    mturk = render_mturk_template(kind).replace("${class_name}", "cat").replace(
        "${attention_number}", "7")
    assert _legends(page) == _legends(mturk)
    noun = "images" if kind == "image" else "comments"
    # not only the highlighted parts: a background a map misses is still a shared pattern
    assert _legends(page)[0] == (f"1. Is there a shared pattern across these {noun}, in the "
                                 "highlighted parts or anywhere else?")
    for html in (page, mturk):
        soup = BeautifulSoup(html, "html.parser")
        radios = {i["value"] for i in soup.find_all("input", attrs={"name": "pattern"})}
        assert radios == set(default_schema()["pattern"].allowed(kind))


def test_a_study_schema_renders_in_both_templates(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_TOML)
    s = load_schema(path)
    page, mturk = _page("image", s), render_mturk_template("image", s)
    assert _legends(page) == ["1. Do these images share something? (cat)", "2. Which?",
                              "3. Why?"]
    assert _legends(mturk)[0] == "1. Do these images share something? (${class_name})"
    soup = BeautifulSoup(page, "html.parser")
    assert [i["value"] for i in soup.find_all("input", attrs={"name": "what"})] == [
        "thing", "scenery"]
    assert "the cat itself" in [lab.get_text(strip=True) for lab in soup.find_all("label")]
    assert not soup.find("textarea", attrs={"name": "why"}).has_attr("required")
    # the page's submit check asks only for the required questions
    assert '{"present": "1 (present)", "what": "2 (what)"}' in page


def test_gold_for_truth_reproduces_the_builtin_gold_answers():
    s = default_schema()
    assert s.gold_for_truth("core", "image") == {"shared": "yes", "pattern": "object"}
    assert s.gold_for_truth("spurious:mark", "image") == {"shared": "yes", "pattern": "mark"}
    assert s.gold_for_truth("spurious:identity", "text") == {"shared": "yes",
                                                              "pattern": "identity"}
    assert s.gold_for_truth("none", "image") == {"shared": "no", "pattern": "other"}
    # a kind the HIT does not offer, or no truth: no gold answer
    assert s.gold_for_truth("spurious:identity", "image") is None
    assert s.gold_for_truth(None) is None and s.gold_for_truth("weird") is None
