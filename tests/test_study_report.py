"""``sparse-probe report --answers CSV --study STUDY.toml``: another study's crowd data.

The study is built here with known aggregates (tests/study_helpers.py): 2-2-1 splits, a tie
between spurious kinds, class ids with gaps and out of order, an item short of answers, empty
answers; the expected verdicts are written next to the answers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from study_helpers import ITEMS, STUDY_TOML, write_study

from analysis.cli import report as report_cmd
from analysis.rules import decide
from analysis.study import StudyError, load_study, read_study_answers, study_from_dict
from analysis.study_report import StudyReportOptions, agreement_table, build_study_report

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> tuple[int, str, dict | None]:
    csv_path, study = write_study(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(report_cmd, ["--answers", str(csv_path), "--study", str(study),
                                          "--out", str(out), "--n-boot", "50", *args])
    rep = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() \
        else None
    return res.exit_code, res.output, rep


def _verdicts(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "verdicts.csv", dtype={"class": str, "feature": str},
                       keep_default_na=False).set_index("item")


def test_k_of_n_gives_the_study_verdicts_with_ties_reported(tmp_path):
    code, output, rep = _run(tmp_path)
    assert code == 0, output
    v = _verdicts(tmp_path / "out")
    for cls, _, feat, _, (verdict, kind), _ in ITEMS:
        row = v.loc[f"c{cls}-f{feat}"]
        assert (row["verdict"], row["kind"] or None) == (verdict, kind), (cls, feat)
    assert rep["rule"] == {"method": "k_of_n", "question": "main", "k": 3, "n": 5}
    s = rep["summary"]
    assert (s["n_spurious"], s["n_core"], s["n_undecided"]) == (4, 2, 1)
    # the two 2-2-1 splits: plurality ties that k_of_n decides (both spurious)
    assert s["n_plurality_ties"] == 2 and s["n_plurality_ties_spurious"] == 2
    assert s["n_kind_ties"] == 1
    assert bool(v.loc["c7-f2", "kind_tie"]) and v.loc["c7-f2", "kind"] == "background+mark"
    kinds = {(c["verdict"], c["kind"]): c["n"] for c in rep["verdict_counts"]}
    assert kinds[("spurious", "mark")] == 2 and kinds[("spurious", "background")] == 1
    assert kinds[("spurious", "background+mark")] == 1
    assert sum(n for (vv, k), n in kinds.items() if k is None) == len(ITEMS)
    assert rep["abstentions"] == {"main": 2}


def test_majority_rule_leaves_ties_undecided(tmp_path):
    code, output, rep = _run(tmp_path, "--rule", "majority")
    assert code == 0, output
    v = _verdicts(tmp_path / "out")
    for cls, _, feat, _, _, (verdict, kind) in ITEMS:
        row = v.loc[f"c{cls}-f{feat}"]
        assert (row["verdict"], row["kind"] or None) == (verdict, kind), (cls, feat)
    assert rep["rule"] == {"method": "majority", "question": "main"}
    assert rep["summary"]["n_rule_ties"] == 2


def test_crowdkit_rule_and_posterior_cutoff_are_parameters(tmp_path):
    code, output, rep = _run(tmp_path, "--rule", "DawidSkene", "--min-posterior", "0.99")
    assert code == 0, output
    assert rep["rule"]["method"] == "DawidSkene" and rep["rule"]["min_posterior"] == 0.99
    v = _verdicts(tmp_path / "out")
    low = v["posterior"].astype(float) < 0.99
    assert (v.loc[low & (v["n_answers"] > 0), "verdict"] == "undecided").all()
    # unanimous items are decided whatever the cut-off
    assert v.loc["c7-f1", "verdict"] == "core" and v.loc["c1-f9", "verdict"] == "spurious"


def test_undeclared_values_stop_the_run_with_their_counts(tmp_path):
    extra = [{"WorkerId": "W9", "Input.class_index": "7", "Input.class_name": "dog",
              "Input.feature_index": str(f), "Answer.main": val}
             for f, val in [(1, "Main Object"), (2, "bckground"), (3, "bckground")]]
    csv_path, study = write_study(tmp_path, extra_rows=extra)
    res = CliRunner().invoke(report_cmd, ["--answers", str(csv_path), "--study", str(study),
                                          "--out", str(tmp_path / "out")])
    assert res.exit_code != 0
    line = res.output.strip().splitlines()[-1]
    assert "'bckground' (2)" in line and "'Main Object' (1)" in line and "--drop-unknown" in line
    assert not (tmp_path / "out" / "report.json").exists()
    res = CliRunner().invoke(report_cmd, ["--answers", str(csv_path), "--study", str(study),
                                          "--out", str(tmp_path / "out"), "--drop-unknown",
                                          "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["dropped_values"] == {"main": {"bckground": 2, "Main Object": 1}}
    assert rep["summary"]["n_dropped_values"] == 3
    # the dropped answers did not change any verdict
    v = _verdicts(tmp_path / "out")
    assert v.loc["c7-f1", "verdict"] == "core" and v.loc["c7-f1", "n_answers"] == 5
    assert "bckground" in (tmp_path / "out" / "index.html").read_text()


def test_values_match_case_insensitively_and_unsure_abstains(tmp_path):
    text = STUDY_TOML.replace(
        '{value = "background", meaning = "spurious", spurious_kind = "background"},',
        '{value = "background", meaning = "spurious", spurious_kind = "background"},\n'
        '  {value = "cannot tell", meaning = "unsure"},')
    study = study_from_dict(__import__("tomllib").loads(text), "inline")
    csv_path, _ = write_study(tmp_path, extra_rows=[
        {"WorkerId": "W8", "Input.class_index": "12", "Input.feature_index": "6",
         "Answer.main": "MAIN_OBJECT"},
        {"WorkerId": "W9", "Input.class_index": "12", "Input.feature_index": "6",
         "Answer.main": "Cannot Tell"}])
    ans = read_study_answers(csv_path, study)
    v = decide(ans, study.rule, study.schema["main"]).set_axis(ans.items["item"])
    assert v.loc["c12-f6", "n_answers"] == 6 and v.loc["c12-f6", "n_core"] == 4
    assert ans.abstentions["main"] == 3


def test_classes_with_gaps_names_and_no_weights(tmp_path):
    code, output, rep = _run(tmp_path)
    assert code == 0, output
    classes = pd.read_csv(tmp_path / "out" / "classes.csv", dtype={"class": str})
    # natural order of the study's own ids (1, 7, 12), each with its own name and items
    assert list(classes["class"]) == ["1", "7", "12"]
    assert list(classes["class_name"]) == ["car", "dog", "cat"]
    assert list(classes["n_items"]) == [2, 3, 2]
    assert list(classes["n_spurious"]) == [1, 2, 1]
    assert "spurious_weight_share" not in classes.columns
    assert "weight" in rep["lacks"] and "visualization" in rep["lacks"]
    html = (tmp_path / "out" / "index.html").read_text()
    assert "0% of weight" not in html and "no feature weights" in html


class _Cells(HTMLParser):
    """Text of elements by id and the rows of tables by id."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self._open.append(a["id"])
            self.ids.setdefault(a["id"], "")
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "div" and self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            self.ids[i] += data
        if self._cell is not None:
            self._cell.append(data)


def test_summary_cards_agree_with_the_tables(tmp_path):
    code, output, rep = _run(tmp_path)
    assert code == 0, output
    p = _Cells()
    p.feed((tmp_path / "out" / "index.html").read_text())
    counts = {(r[0], r[1]): int(r[2]) for r in p.tables["verdict-counts"][1:]}
    classes = p.tables["class-table"]
    head = classes[0]
    for verdict in ("core", "spurious", "undecided"):
        card = int(re.search(r"\d+", p.ids[f"card-{verdict}"]).group())
        assert card == rep["summary"][f"n_{verdict}"] == counts[(verdict, "")]
        col = head.index(verdict)
        assert sum(int(r[col]) for r in classes[1:]) == card
    spurious_rows = p.tables["spurious-table"][1:]
    assert len(spurious_rows) == rep["summary"]["n_spurious"]
    agreement = p.tables["agreement-table"][1:]
    assert [(r[0], r[1]) for r in agreement] == [("main", "values"), ("main", "meanings")]
    assert all("[" in r[2] for r in agreement)  # alpha with its interval


def test_agreement_matches_crowdkit(tmp_path):
    pytest.importorskip("nltk")
    from crowdkit.metrics.data import alpha_krippendorff

    csv_path, study_path = write_study(tmp_path)
    study = load_study(study_path)
    ans = read_study_answers(csv_path, study)
    rows = agreement_table(ans, study, n_boot=200, seed=1)
    values = rows[0]
    ok = ans.rows["main"] >= 0
    data = pd.DataFrame({"task": ans.rows.loc[ok, "item"], "worker": ans.rows.loc[ok, "worker"],
                         "label": ans.rows.loc[ok, "main"]})
    assert values["krippendorff_alpha"] == pytest.approx(alpha_krippendorff(data), abs=1e-9)
    lo, hi = values["alpha_ci"]
    assert lo <= values["krippendorff_alpha"] <= hi
    assert values["n_items"] == len(ITEMS)


def test_self_contained_html_inlines_figures(tmp_path):
    csv_path, study = write_study(tmp_path, reasons={("c7-f2", 0): "<script>alert(1)</script>"})
    rep = build_study_report(csv_path, load_study(study), tmp_path / "out",
                             StudyReportOptions(self_contained=True, n_boot=0))
    html = (tmp_path / "out" / "index.html").read_text()
    assert not (tmp_path / "out" / "figures").exists()
    assert html.count('src="data:image/svg+xml;base64,') == len(rep["figures"]) >= 2
    assert 'src="figures/' not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html


@pytest.mark.parametrize("patch, message", [
    (("meaning = \"core\"", "meaning = \"cor\""), "meaning 'cor' is not one of"),
    (("method = \"k_of_n\"", "method = \"kofn\""), "method 'kofn' is not one of"),
    (("k = 3", "k = 0"), "positive integer 'k'"),
    (("worker = \"WorkerId\"", "wrker = \"WorkerId\""), "unknown field(s) ['wrker']"),
    (("spurious_kind = \"mark\"", "spurious_kind = \"logo\""), "spurious_kind needs"),
])
def test_study_file_errors_are_one_line_naming_the_file(tmp_path, patch, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(STUDY_TOML.replace(*patch, 1))
    with pytest.raises(StudyError) as exc:
        load_study(bad)
    assert str(bad) in str(exc.value) and message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_column_is_named(tmp_path):
    csv_path, study = write_study(tmp_path)
    study.write_text(STUDY_TOML.replace("Answer.reasons", "Answer.why"))
    with pytest.raises(StudyError, match=r"\['Answer.why'\].*not in the CSV header"):
        read_study_answers(csv_path, load_study(study))


def test_study_needs_answers_and_out(tmp_path):
    _, study = write_study(tmp_path)
    res = CliRunner().invoke(report_cmd, ["--study", str(study), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--study needs --answers" in res.output


def test_cli_end_to_end_in_a_subprocess(tmp_path):
    from analysis.synthetic_study import write_synthetic_study

    csv_path, study = write_synthetic_study(tmp_path, n_items=300, n_classes=60, seed=3)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "sparse_probe.cli", "report", "--answers",
                           str(csv_path), "--study", str(study), "--out", str(out),
                           "--n-boot", "20", "--self-contained"],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "300 items of 60 classes from 1500 answers" in proc.stdout
    rep = json.loads((out / "report.json").read_text())
    # independent k-of-n count from the raw CSV
    raw = pd.read_csv(csv_path, dtype=str)
    not_core = (raw["Answer.main"] != "main_object").groupby(
        [raw["Input.class_index"], raw["Input.feature_index"]]).sum()
    assert rep["summary"]["n_spurious"] == int((not_core >= 3).sum())
    assert rep["summary"]["n_items"] == len(not_core)
    assert np.isfinite(rep["agreement"][0]["krippendorff_alpha"])


def test_tasks_ingest_csv_takes_the_same_study_file(tmp_path):
    from sparse_probe.answers import ANSWER_COLUMNS, read_answers
    from tasks.publish_cli import ingest_csv

    csv_path, study = write_study(tmp_path)
    out = tmp_path / "answers"
    res = CliRunner().invoke(ingest_csv, [str(csv_path), "--study", str(study), "--out",
                                          str(out)])
    assert res.exit_code == 0, res.output
    table = read_answers(out)
    assert list(table.columns) == ANSWER_COLUMNS
    main = table[table["question"] == "main"]
    # every non-empty answer, spelled as declared; empty answers are not rows
    assert len(main) == sum(1 for it in ITEMS for a in it[3] if a)
    assert set(main["answer"]) == {"main_object", "separate_object", "background"}
    assert set(table["question"]) == {"main", "confidence", "description"}
    assert (table["source"] == "external-csv").all()
    assert set(main["hit_key"]) == {f"c{c}-f{f}" for c, _, f, *_ in ITEMS}
    # undeclared values stop ingest-csv the same way
    bad, _ = write_study(tmp_path, extra_rows=[{"WorkerId": "W9", "Input.class_index": "7",
                                                "Input.feature_index": "1",
                                                "Answer.main": "bckground"}])
    res = CliRunner().invoke(ingest_csv, [str(bad), "--study", str(study), "--out", str(out)])
    assert res.exit_code != 0 and "'bckground' (1)" in res.output


def test_reduced_header_and_items_without_answers(tmp_path):
    """MTurk's reduced header (WorkerId, Input.*, Answer.* only); an item whose answers are all
    empty is pending, and its class is listed with no decided item."""
    rows = ["WorkerId,Input.class_index,Input.class_name,Input.feature_index,Answer.main,"
            "Answer.confidence,Answer.reasons"]
    for w in range(5):
        rows.append(f"W{w},a,apple,3,background,4,grass")
        rows.append(f"W{w},b,bee,4,,,")
    csv_path = tmp_path / "reduced.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    study = tmp_path / "study.toml"
    study.write_text(STUDY_TOML)
    rep = build_study_report(csv_path, load_study(study), tmp_path / "out",
                             StudyReportOptions(n_boot=10))
    assert (rep["summary"]["n_spurious"], rep["summary"]["n_pending"]) == (1, 1)
    classes = pd.read_csv(tmp_path / "out" / "classes.csv")
    assert list(classes["class"]) == ["a", "b"]
    assert classes["spurious_share"].isna().tolist() == [False, True]
    html = (tmp_path / "out" / "index.html").read_text()
    assert "grass" in html
