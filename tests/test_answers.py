"""QuestionFormAnswers XML, the answers table, and MTurk batch-results CSV ingestion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers_publish import FIXTURE_HITS, make_tasks_dir

from tasks.answers import (
    ANSWER_COLUMNS,
    AnswersFormatError,
    assignment_rows,
    build_question_form_answers,
    parse_mturk_time,
    parse_question_form_answers,
    read_answers,
    read_batch_csv,
    write_answers,
)
from tasks.publish_cli import ingest_csv

NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"

# What MTurk returns for an HTMLQuestion form (namespaced, escaped text, several answers).
MTURK_XML = (
    f'<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="{NS}">'
    "<Answer><QuestionIdentifier>shared</QuestionIdentifier><FreeText>yes</FreeText></Answer>"
    "<Answer><QuestionIdentifier>pattern</QuestionIdentifier><FreeText>mark</FreeText></Answer>"
    "<Answer><QuestionIdentifier>description</QuestionIdentifier>"
    "<FreeText>a &lt;b&gt;logo&lt;/b&gt; &amp; &quot;text&quot; in the\ncorner &#233;</FreeText>"
    "</Answer>"
    "<Answer><QuestionIdentifier>hit_key</QuestionIdentifier><FreeText>k1</FreeText></Answer>"
    "<Answer><QuestionIdentifier>empty</QuestionIdentifier><FreeText/></Answer>"
    "</QuestionFormAnswers>"
)


def test_parse_namespaced_escaped_multiple():
    got = parse_question_form_answers(MTURK_XML)
    assert got == {"shared": "yes", "pattern": "mark", "hit_key": "k1", "empty": "",
                   "description": 'a <b>logo</b> & "text" in the\ncorner \u00e9'}


def test_parse_selection_and_repeated_identifiers():
    xml = ("<QuestionFormAnswers><Answer><QuestionIdentifier>q</QuestionIdentifier>"
           "<SelectionIdentifier>a</SelectionIdentifier></Answer>"
           "<Answer><QuestionIdentifier>q</QuestionIdentifier>"
           "<SelectionIdentifier>b</SelectionIdentifier></Answer></QuestionFormAnswers>")
    assert parse_question_form_answers(xml) == {"q": "a|b"}


@pytest.mark.parametrize(("xml", "message"), [
    ("<QuestionFormAnswers><Answer>", "not well-formed"),
    ("<Other/>", "expected <QuestionFormAnswers>"),
    ("<QuestionFormAnswers><Answer><FreeText>x</FreeText></Answer></QuestionFormAnswers>",
     "QuestionIdentifier"),
])
def test_parse_errors(xml, message):
    with pytest.raises(AnswersFormatError, match=message):
        parse_question_form_answers(xml)


def test_build_roundtrip_with_hostile_text():
    fields = {"description": "<script>alert('x')</script> & ]]> \u00fc", "shared": "no"}
    xml = build_question_form_answers(fields)
    assert f'xmlns="{NS}"' in xml
    assert parse_question_form_answers(xml) == fields


def test_assignment_rows_work_seconds_and_utc():
    accept = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=-7)))
    submit = accept + timedelta(seconds=95.5)
    rows = assignment_rows({"AssignmentId": "A1", "WorkerId": "W1", "HITId": "H1",
                            "AssignmentStatus": "Submitted", "AcceptTime": accept,
                            "SubmitTime": submit, "Answer": MTURK_XML},
                           hit_key=None, source="sandbox")
    assert {r["question"] for r in rows} == {"shared", "pattern", "description", "empty"}
    assert all(r["hit_key"] == "k1" for r in rows)  # from the hidden field
    assert rows[0]["work_seconds"] == pytest.approx(95.5)
    assert rows[0]["submit_time"] == pd.Timestamp("2024-05-01 17:01:35.5", tz="UTC")


@pytest.mark.parametrize(("text", "expected"), [
    ("Wed Jul 08 04:16:53 PDT 2020", "2020-07-08 11:16:53"),
    ("Tue Jan 07 23:59:01 PST 2020", "2020-01-08 07:59:01"),
    ("Mon Mar 02 10:00:00 UTC 2020", "2020-03-02 10:00:00"),
    ("2021-03-04T05:06:07Z", "2021-03-04 05:06:07"),
    ("2021-03-04T05:06:07+02:00", "2021-03-04 03:06:07"),
])
def test_parse_mturk_time(text, expected):
    assert parse_mturk_time(text) == pd.Timestamp(expected, tz="UTC")


def test_parse_mturk_time_datetime_and_empty():
    assert parse_mturk_time("") is None and parse_mturk_time(None) is None
    assert parse_mturk_time(datetime(2020, 1, 1, tzinfo=UTC)) == pd.Timestamp("2020-01-01",
                                                                               tz="UTC")


FULL_HEADER = (
    "HITId,HITTypeId,Title,Description,Keywords,Reward,CreationTime,MaxAssignments,"
    "RequesterAnnotation,AssignmentDurationInSeconds,AutoApprovalDelayInSeconds,Expiration,"
    "NumberOfSimilarHITs,LifetimeInSeconds,AssignmentId,WorkerId,AssignmentStatus,AcceptTime,"
    "SubmitTime,AutoApprovalTime,ApprovalTime,RejectionTime,RequesterFeedback,"
    "WorkTimeInSeconds,LifetimeApprovalRate,Last30DaysApprovalRate,Last7DaysApprovalRate,"
    "Input.hit_key,Input.class_name,Input.grid_url,Answer.attention,Answer.confidence,"
    "Answer.description,Answer.pattern,Answer.shared,Approve,Reject,ExtraColumn"
)


def _full_csv(k0: str, k1: str) -> str:
    common = ('"3HIT0","3TYPE","What does this feature look at?","Look, then answer",'
              '"image, label","$0.10","Wed Jul 08 03:00:00 PDT 2020","3","batch",'
              '"1800","259200","Wed Jul 15 03:00:00 PDT 2020","","604800"')
    return (
        FULL_HEADER + "\r\n"
        + common + f',"3ASG0","AW1","Submitted","Wed Jul 08 04:15:00 PDT 2020",'
        '"Wed Jul 08 04:16:53 PDT 2020","Sat Jul 11 04:16:53 PDT 2020","","","","113",'
        f'"0% (0/0)","0% (0/0)","0% (0/0)","{k0}","cat","https://x/a.png","blue","5",'
        '"a small logo\nin the corner, ""quoted""","mark","yes","","","junk"\r\n'
        + common.replace("3HIT0", "3HIT1") + ',"3ASG1","AW2","Approved",'
        '"Wed Jul 08 05:00:00 PDT 2020","Wed Jul 08 05:00:30 PDT 2020","","","","","30",'
        f'"100% (3/3)","100% (3/3)","100% (3/3)","{k1}","dog","https://x/b.png","red","2",'
        '"fur, \u00e9t\u00e9","object","unsure","x","","more junk"\r\n'
    )


def test_full_batch_csv(tmp_path):
    k0, k1 = FIXTURE_HITS[0][0], FIXTURE_HITS[1][0]
    path = tmp_path / "Batch_123_batch_results.csv"
    path.write_text(_full_csv(k0, k1), encoding="utf-8")
    df = read_batch_csv(path, known_hit_keys=[k0, k1])
    assert list(df.columns) == ANSWER_COLUMNS
    assert len(df) == 2 * 5
    a0 = df[df["assignment_id"] == "3ASG0"].set_index("question")
    assert a0.loc["description", "answer"] == 'a small logo\nin the corner, "quoted"'
    assert a0.loc["pattern", "answer"] == "mark"
    assert (a0["hit_key"] == k0).all() and (a0["hit_id"] == "3HIT0").all()
    assert (a0["worker_id"] == "AW1").all() and (a0["status"] == "Submitted").all()
    assert a0["submit_time"].iloc[0] == pd.Timestamp("2020-07-08 11:16:53", tz="UTC")
    assert a0["work_seconds"].iloc[0] == 113.0
    a1 = df[df["assignment_id"] == "3ASG1"].set_index("question")
    assert a1.loc["description", "answer"] == "fur, \u00e9t\u00e9"
    assert "ExtraColumn" not in set(df["question"]) and "Approve" not in set(df["question"])
    assert set(df["source"]) == {"mturk-csv"}


@pytest.mark.slow
def test_reduced_batch_csv_and_cli(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    k0, k1 = FIXTURE_HITS[0][0], FIXTURE_HITS[2][0]
    path = tmp_path / "reduced.csv"
    path.write_text(
        "WorkerId,Input.hit_key,Input.image_url,Answer.shared,Answer.pattern,Answer.description\n"
        f'W1,{k0},http://x/1.png,yes,object,"the cat,\nits face"\n'
        f"W2,{k0},http://x/1.png,no,other,nothing\n"
        f"W1,{k1},http://x/2.png,yes,background,grass\n", encoding="utf-8")
    out = tmp_path / "answers"
    res = CliRunner().invoke(ingest_csv, [str(path), "--tasks", str(tasks), "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = read_answers(out)
    assert len(df) == 9 and df["assignment_id"].nunique() == 3
    assert df["submit_time"].isna().all() and df["work_seconds"].isna().all()
    w1 = df[(df["worker_id"] == "W1") & (df["hit_key"] == k0)].set_index("question")
    assert w1.loc["description", "answer"] == "the cat,\nits face"
    # Re-ingesting the same file adds nothing (stable assignment ids).
    res = CliRunner().invoke(ingest_csv, [str(path), "--tasks", str(tasks), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(read_answers(out)) == 9


@pytest.mark.parametrize(("content", "message"), [
    ("Input.hit_key,Answer.shared\nk,yes\n", "WorkerId"),
    ("WorkerId,Input.hit_key\nW,k\n", "Answer."),
    ("WorkerId,Answer.shared\nW,yes\n", "hit_key"),
    ("WorkerId,Input.hit_key,Answer.shared\nW,unknown-key,yes\n", "not in the manifest"),
])
def test_bad_batch_csv_is_one_line_error_and_writes_nothing(tmp_path, content, message):
    tasks = make_tasks_dir(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "answers"
    res = CliRunner().invoke(ingest_csv, [str(path), "--tasks", str(tasks), "--out", str(out)])
    assert res.exit_code != 0
    assert message in res.output and str(path) in res.output
    assert not (out / "answers.parquet").exists()


def test_write_answers_is_atomic_and_typed(tmp_path, monkeypatch):
    rows = [{"hit_key": "k", "hit_id": "H", "assignment_id": "A", "worker_id": "W",
             "question": "shared", "answer": "yes",
             "submit_time": pd.Timestamp("2024-01-01", tz="UTC"), "work_seconds": 3.0,
             "status": "Submitted", "accept_time": None, "source": "local"}]
    df = pd.DataFrame(rows)
    write_answers(df, tmp_path)
    before = (tmp_path / "answers.parquet").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        write_answers(pd.concat([df, df.assign(assignment_id="B")]), tmp_path)
    assert (tmp_path / "answers.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["answers.parquet"]
    back = read_answers(tmp_path)
    assert str(back["submit_time"].dtype) == "datetime64[ns, UTC]"
    assert back["work_seconds"].dtype == "float64"


# --------------------------------------------------------------------------- one reader
def _reduce(full_text: str) -> str:
    """The same batch file with only WorkerId, Input.* and Answer.* columns."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(full_text, newline="")))
    keep = [i for i, h in enumerate(rows[0])
            if h == "WorkerId" or h.startswith(("Input.", "Answer."))]
    buf = io.StringIO()
    csv.writer(buf).writerows([[r[i] for i in keep] for r in rows])
    return buf.getvalue()


@pytest.mark.slow
def test_full_and_reduced_headers_give_the_same_answers(tmp_path):
    k0, k1 = FIXTURE_HITS[0][0], FIXTURE_HITS[1][0]
    text = _full_csv(k0, k1)
    (tmp_path / "full.csv").write_text(text, encoding="utf-8")
    (tmp_path / "reduced.csv").write_text(_reduce(text), encoding="utf-8")
    full = read_batch_csv(tmp_path / "full.csv")
    reduced = read_batch_csv(tmp_path / "reduced.csv")
    assert list(reduced.columns) == ANSWER_COLUMNS and len(reduced) == len(full) == 10
    same = ["hit_key", "worker_id", "question", "answer", "source"]
    pd.testing.assert_frame_equal(full[same], reduced[same])
    assert set(full["source"]) == {"mturk-csv"}
    # what only the full header has: MTurk's ids, status, UTC times and work time
    assert full["assignment_id"].str.startswith("3ASG").all()
    assert reduced["assignment_id"].str.fullmatch(r"csv-[0-9a-f]{24}").all()
    assert reduced[["hit_id", "status", "submit_time", "work_seconds"]].isna().all().all()
    assert str(full["submit_time"].dtype) == "datetime64[ns, UTC]"
    # one assignment id per row, the same whatever the row order of the download
    lines = _reduce(text).splitlines(keepends=True)
    header, body = lines[0], "".join(lines[1:])
    first_row_end = body.index("\r\n", body.index("quoted")) + 2
    swapped = header + body[first_row_end:] + body[:first_row_end]
    (tmp_path / "swapped.csv").write_text(swapped, encoding="utf-8")
    again = read_batch_csv(tmp_path / "swapped.csv")
    assert again["assignment_id"].nunique() == 2
    assert set(again["assignment_id"]) == set(reduced["assignment_id"])
    assert again.iloc[0]["worker_id"] == "AW2"


def test_tasks_and_analysis_share_one_reader():
    import ast
    from pathlib import Path

    import analysis.ingest
    import sparse_probe.answers
    import tasks.answers

    assert tasks.answers.read_batch_csv is analysis.ingest.read_batch_csv \
        is sparse_probe.answers.read_batch_csv
    assert tasks.answers.write_answers is sparse_probe.answers.write_answers
    assert analysis.ingest.IngestError is sparse_probe.answers.AnswersFormatError
    root = Path(__file__).resolve().parents[1]
    for name in ("ingest", "quality", "aggregate", "verdicts", "agreement", "report"):
        tree = ast.parse((root / "analysis" / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m == "tasks" or m.startswith("tasks.") for m in imported), name


def test_bad_work_time_and_ragged_rows_name_the_row(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("WorkerId,Input.hit_key,WorkTimeInSeconds,Answer.shared\n"
                    "W1,k,12,yes\nW2,k,soon,no\n", encoding="utf-8")
    with pytest.raises(AnswersFormatError, match=r"b\.csv: row 3: WorkTimeInSeconds 'soon'"):
        read_batch_csv(path)
    path.write_text("WorkerId,Input.hit_key,Answer.shared\nW1,k,yes,extra\n", encoding="utf-8")
    with pytest.raises(AnswersFormatError, match=r"b\.csv: row 2: 4 cells, the header has 3"):
        read_batch_csv(path)
