"""analysis.ingest on small hand-made inputs: the manifest's defaults, ListAssignmentsForHIT's
assignments, and another study's CSV through a column mapping (classes given by name or index,
in any order; empty and unknown cells refused with the row named)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.ingest import (
    ANSWER_COLUMNS,
    ExternalMapping,
    IngestError,
    answers_from_assignments,
    load_answers,
    load_manifest,
    read_external_csv,
)
from sparse_probe.answers import build_question_form_answers

ITEM_COLUMNS = ["hit_key", "class", "class_name", "feature", "kind", "layer", "weight", "rank",
                "is_gold", "gold", "attention", "assets", "evidence", "truth"]


# --------------------------------------------------------------------------- the manifest
def test_manifest_fields_a_line_leaves_out_get_the_contracts_defaults(tmp_path):
    path = tmp_path / "manifest.jsonl"
    rows = [{"hit_key": "a", "class": 3, "feature": 7},
            {"hit_key": "b", "class": 4, "feature": 1, "class_name": "dog", "is_gold": True,
             "kind": "text", "weight": 0.5, "rank": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    man = load_manifest(path).set_index("hit_key")
    a, b = man.loc["a"], man.loc["b"]
    # a line without the optional fields: the contract's defaults
    assert (a["kind"], a["layer"], a["class_name"], a["rank"]) == ("image", "sparse", "3", 0)
    assert math.isnan(a["weight"]) and not a["is_gold"]
    for col in ("assets", "gold", "attention", "evidence", "truth"):
        assert man[col].isna().all(), col
    # a line's own values are kept; a missing is_gold is False, not carried from another line
    assert (b["kind"], b["class_name"], b["weight"], b["rank"]) == ("text", "dog", 0.5, 2)
    assert man["is_gold"].tolist() == [False, True] and man["is_gold"].dtype == bool
    assert man["layer"].tolist() == ["sparse", "sparse"]
    assert man["weight"].dtype == "float64" and man["rank"].dtype == "int64"


def test_manifest_without_any_optional_field_has_every_column(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"hit_key": "k1", "class": 0, "feature": 2}\n'
                    '{"hit_key": "k2", "class": 1, "feature": 5}\n')
    man = load_manifest(path)
    assert set(ITEM_COLUMNS) <= set(man.columns)
    assert man["kind"].tolist() == ["image", "image"]
    assert man["class_name"].tolist() == ["0", "1"]
    assert man["rank"].tolist() == [0, 0] and man["is_gold"].tolist() == [False, False]
    assert man["weight"].isna().all()


def test_load_answers_refuses_a_missing_file(tmp_path):
    with pytest.raises(IngestError, match=r"nothere\.parquet: answers file not found"):
        load_answers(tmp_path / "nothere.parquet")


# --------------------------------------------------------------------------- API assignments
def _assignment(aid: str, hit: str, fields: dict[str, str] | None) -> dict:
    return {"AssignmentId": aid, "WorkerId": "W" + aid, "HITId": hit,
            "AssignmentStatus": "Submitted", "AcceptTime": "2026-01-01T00:00:00Z",
            "SubmitTime": "2026-01-01T00:01:30Z",
            "Answer": None if fields is None else build_question_form_answers(fields)}


def test_assignments_take_the_ledgers_key_before_the_hidden_field():
    got = answers_from_assignments(
        [_assignment("A1", "H1", {"shared": "yes", "hit_key": "from-form"}),
         _assignment("A2", "H2", {"shared": "no", "hit_key": "form-only"})],
        hit_keys={"H1": "from-ledger"})
    assert list(got.columns) == ANSWER_COLUMNS
    assert got[["assignment_id", "hit_id", "hit_key", "question", "answer"]].values.tolist() == [
        ["A1", "H1", "from-ledger", "shared", "yes"], ["A2", "H2", "form-only", "shared", "no"]]
    assert set(got["source"]) == {"mturk-api"}
    assert got["work_seconds"].tolist() == [90.0, 90.0]


@pytest.mark.parametrize("fields", [None, {"shared": "yes"}])
def test_an_assignment_without_any_key_is_refused_naming_it(fields):
    with pytest.raises(IngestError, match=r"^assignment A9: no hit_key for HIT H9$"):
        answers_from_assignments([_assignment("A9", "H9", fields)], hit_keys={"H1": "k"})
    # with the ledger's key, an empty answer document is no error: no question rows
    ok = answers_from_assignments([_assignment("A9", "H9", fields)], hit_keys={"H9": "k9"})
    assert ok["hit_key"].eq("k9").all() and len(ok) == (0 if fields is None else 1)


# --------------------------------------------------------------------------- external CSV
def _external(tmp_path, rows: list[dict], name: str = "study.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _rows(cls_feat: list[tuple[str, str]], workers=("A1", "A2")) -> list[dict]:
    return [{"WorkerId": w, "Input.label": c, "Input.unit": f, "Answer.Q1": "Yes"}
            for w in workers for c, f in cls_feat]


MAP = {"class_column": "Input.label", "feature_column": "Input.unit",
       "questions": {"shared": "Answer.Q1"}, "value_maps": {"shared": {"Yes": "yes"}}}


def read(path, **kw):
    return read_external_csv(path, ExternalMapping(**{**MAP, **kw}))


def test_class_names_map_to_the_given_classes_in_their_order(tmp_path):
    # not in sorted order: sorting the names would number them the other way round
    path = _external(tmp_path, _rows([("zebra", "7"), ("ant", "7"), ("1", "3")]))
    answers, items = read(path, classes=["zebra", "ant"], kind="text")
    assert items.columns.tolist() == ITEM_COLUMNS
    assert items[["hit_key", "class", "class_name", "feature"]].values.tolist() == [
        ["ext-c0-f7", 0, "zebra", 7], ["ext-c1-f7", 1, "ant", 7], ["ext-c1-f3", 1, "ant", 3]]
    assert items.index.tolist() == [0, 1, 2]
    assert items["feature"].dtype == "int64" and items["class"].dtype == "int64"
    assert items["kind"].eq("text").all() and items["layer"].eq("sparse").all()
    assert items["weight"].isna().all() and items["weight"].dtype == "float64"
    assert items["rank"].eq(0).all()
    assert items["is_gold"].eq(False).all()
    for col in ("gold", "attention", "assets", "evidence", "truth"):
        assert items[col].isna().all(), col
    assert len(answers) == 6 and set(answers["source"]) == {"external-csv"}
    assert set(answers["answer"]) == {"yes"}
    assert answers["hit_key"].tolist() == ["ext-c0-f7", "ext-c1-f7", "ext-c1-f3"] * 2


def test_a_class_outside_the_given_classes_is_refused_naming_the_row(tmp_path):
    path = _external(tmp_path, _rows([("cat", "1"), ("bird", "2")], workers=("A1",)))
    with pytest.raises(IngestError, match=r"study\.csv: row 3: Input\.label 'bird' is neither "
                                          r"one of the mapping's 2 classes nor an index 0-1$"):
        read(path, classes=["cat", "dog"])
    idx = _external(tmp_path, _rows([("1", "1"), ("2", "2")], workers=("A1",)), "idx.csv")
    with pytest.raises(IngestError, match=r"row 3: Input\.label '2' is neither"):
        read(idx, classes=["cat", "dog"])


def test_without_classes_indices_are_kept_and_names_numbered_in_sorted_order(tmp_path):
    ints = _external(tmp_path, _rows([("12", "4"), ("3", "4")]), "ints.csv")
    _, items = read(ints)
    assert items[["class", "class_name"]].values.tolist() == [[12, "12"], [3, "3"]]
    names = _external(tmp_path, _rows([("zebra", "4"), ("ant", "4")]), "names.csv")
    _, items = read(names)
    assert items[["hit_key", "class", "class_name"]].values.tolist() == [
        ["ext-c1-f4", 1, "zebra"], ["ext-c0-f4", 0, "ant"]]


def test_a_class_name_column_and_an_item_column_are_used(tmp_path):
    rows = [{"WorkerId": w, "Input.label": c, "Input.unit": f, "Input.name": n,
             "Input.item": it, "Answer.Q1": "Yes", "WorkTimeInSeconds": "12"}
            for w in ("A1", "A2")
            for c, f, n, it in (("0", "layer4/12", "tench", "item-x"),
                                ("1", "layer4/3", "goldfish", "item-y"))]
    # the same item shown again under another display name is still one item
    rows.append({**rows[0], "WorkerId": "A3", "Input.name": "Tench"})
    path = _external(tmp_path, rows)
    answers, items = read(path, class_name_column="Input.name", item_column="Input.item")
    assert items[["hit_key", "class", "class_name", "feature"]].values.tolist() == [
        ["item-x", 0, "tench", "layer4/12"], ["item-y", 1, "goldfish", "layer4/3"]]
    assert answers["hit_key"].tolist() == ["item-x", "item-y"] * 2 + ["item-x"]
    assert answers["work_seconds"].tolist() == [12.0] * 5


@pytest.mark.parametrize(("column", "blank_row"), [("Input.label", 3), ("Input.unit", 2),
                                                   ("Input.item", 3)])
def test_an_empty_class_feature_or_item_cell_is_refused_naming_the_row(tmp_path, column,
                                                                       blank_row):
    rows = [{"WorkerId": "A1", "Input.label": "0", "Input.unit": "5", "Input.item": "i1",
             "Answer.Q1": "Yes"},
            {"WorkerId": "A1", "Input.label": "1", "Input.unit": "6", "Input.item": "i2",
             "Answer.Q1": "Yes"}]
    rows[blank_row - 2][column] = "  "
    path = _external(tmp_path, rows)
    with pytest.raises(IngestError, match=rf"study\.csv: row {blank_row}: {column} is empty$"):
        read(path, item_column="Input.item")


def test_mapping_errors_name_the_file(tmp_path):
    path = _external(tmp_path, [{"WorkerId": "A1", "Input.label": "0", "Input.unit": "5",
                                 "Answer.Q1": "Yes", "WorkTimeInSeconds": "soon"}])
    with pytest.raises(IngestError, match=r"study\.csv: row 2: WorkTimeInSeconds 'soon'"):
        read(path)
    with pytest.raises(IngestError, match=r"study\.csv: mapped column\(s\) \['Input\.nope'\]"):
        read(path, class_name_column="Input.nope")


def test_a_class_names_own_spelling_wins_over_an_index(tmp_path):
    # classes named like indices: a cell is the class of that name, not the index
    path = _external(tmp_path, _rows([("1", "5"), ("0", "5")], workers=("A1",)))
    _, items = read(path, classes=["1", "0"])
    assert items[["class", "class_name"]].values.tolist() == [[0, "1"], [1, "0"]]
    # other names, "None" among them, leave the indices usable
    path = _external(tmp_path, _rows([("1", "5"), ("None", "6")], workers=("A1",)), "n.csv")
    _, items = read(path, classes=["None", "dog"])
    assert items[["class", "class_name"]].values.tolist() == [[1, "dog"], [0, "None"]]


def test_answer_columns_mapped_as_class_or_feature_are_stripped_and_checked(tmp_path):
    # Answer.* cells keep their spaces and empty strings (an empty answer); mapped as the
    # feature they are stripped, and an empty one is refused
    rows = [{"WorkerId": "A1", "Input.label": "0", "Answer.unit": " 7 ", "Answer.Q1": "Yes"},
            {"WorkerId": "A2", "Input.label": "0", "Answer.unit": "", "Answer.Q1": "Yes"}]
    path = _external(tmp_path, rows[:1])
    _, items = read(path, feature_column="Answer.unit")
    assert items[["hit_key", "feature"]].values.tolist() == [["ext-c0-f7", 7]]
    path = _external(tmp_path, rows, "blank.csv")
    with pytest.raises(IngestError, match=r"blank\.csv: row 3: Answer\.unit is empty$"):
        read(path, feature_column="Answer.unit")
