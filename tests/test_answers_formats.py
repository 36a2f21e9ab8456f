"""sparse_probe.answers on small hand-made inputs: what a user of each reader and writer sees.

QuestionFormAnswers XML both ways, MTurk's time formats, the batch-results CSV (full and
reduced headers, a byte-order mark, quoted newlines, empty cells, crowd-html-elements'
Answer.taskAnswers JSON, the hit_key column and its fallback, the refusals that name the file
and row), stable assignment ids, the answers table's columns and types, merge_answers and the
write that ties answers to the tasks they answer (seconds; real files under tmp_path).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers_analysis import write_batch_csv

from sparse_probe.answers import (
    ANSWER_COLUMNS,
    QFA_NS,
    AnswersFormatError,
    answers_frame,
    assignment_rows,
    build_question_form_answers,
    merge_answers,
    parse_mturk_time,
    parse_question_form_answers,
    read_answers,
    read_batch_csv,
    read_results_csv,
    results_to_long,
    write_answers,
)
from sparse_probe.rundir import RunMismatchError, fingerprint_of, write_run_record

STRING_COLUMNS = ["hit_key", "hit_id", "assignment_id", "worker_id", "question", "answer",
                  "status", "source"]
UTC_DTYPE = "datetime64[ns, UTC]"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def csv_id(worker: str, key: str, answers: dict[str, str]) -> str:
    """The documented stable id: sha256 of worker, key and the sorted question=answer pairs."""
    parts = [worker, key, *(f"{q}={a}" for q, a in sorted(answers.items()))]
    return "csv-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def assert_typed(df: pd.DataFrame) -> None:
    """The answers table's columns and types (docs/contracts.md)."""
    assert list(df.columns) == ANSWER_COLUMNS
    for col in STRING_COLUMNS:
        assert df[col].dtype == object, col
        assert all(v is None or isinstance(v, str) for v in df[col]), col
    assert str(df["submit_time"].dtype) == UTC_DTYPE
    assert str(df["accept_time"].dtype) == UTC_DTYPE
    assert df["work_seconds"].dtype == "float64"
    assert isinstance(df.index, pd.RangeIndex) and list(df.index) == list(range(len(df)))


def message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- QuestionFormAnswers
def test_parse_skips_other_elements_and_reads_every_answer_kind():
    xml = (f'<QuestionFormAnswers xmlns="{QFA_NS}"><Note>ignored</Note>'
           "<Answer><QuestionIdentifier> upload </QuestionIdentifier>"
           "<UploadedFileKey> key/1.png </UploadedFileKey><Other>not an answer</Other></Answer>"
           "<Answer><QuestionIdentifier>pick</QuestionIdentifier>"
           "<SelectionIdentifier>a</SelectionIdentifier><SelectionIdentifier/>"
           "<SelectionIdentifier> c </SelectionIdentifier></Answer>"
           "<Answer><QuestionIdentifier>pick</QuestionIdentifier>"
           "<SelectionIdentifier>d</SelectionIdentifier></Answer>"
           "<Answer><QuestionIdentifier>text</QuestionIdentifier>"
           "<FreeText> kept  as is </FreeText></Answer></QuestionFormAnswers>")
    assert parse_question_form_answers(xml) == {"upload": "key/1.png", "pick": "a||c|d",
                                                "text": " kept  as is "}


def test_parse_refusals_say_what_is_wrong():
    with pytest.raises(AnswersFormatError) as e:
        parse_question_form_answers("<QuestionFormAnswer/>")
    assert message(e) == ("QuestionFormAnswers: root element is <QuestionFormAnswer>, "
                          "expected <QuestionFormAnswers>")
    empty_id = ("<QuestionFormAnswers><Answer><QuestionIdentifier> </QuestionIdentifier>"
                "<FreeText>x</FreeText></Answer></QuestionFormAnswers>")
    for xml in (empty_id, empty_id.replace("<QuestionIdentifier> </QuestionIdentifier>",
                                           "<QuestionIdentifier/>")):
        with pytest.raises(AnswersFormatError) as e:
            parse_question_form_answers(xml)
        assert message(e) == "QuestionFormAnswers: <Answer> without <QuestionIdentifier>"
    with pytest.raises(AnswersFormatError) as e:
        parse_question_form_answers("<QuestionFormAnswers>")
    assert message(e).startswith("QuestionFormAnswers: not well-formed XML (")


def test_build_writes_mturks_document_from_pairs_or_a_mapping():
    pairs = [("a", "x < y & z"), ("b", 1)]
    xml = build_question_form_answers(pairs)
    assert xml == (
        f'<?xml version="1.0" encoding="UTF-8"?><QuestionFormAnswers xmlns="{QFA_NS}">'
        "<Answer><QuestionIdentifier>a</QuestionIdentifier>"
        "<FreeText>x &lt; y &amp; z</FreeText></Answer>"
        "<Answer><QuestionIdentifier>b</QuestionIdentifier><FreeText>1</FreeText></Answer>"
        "</QuestionFormAnswers>")
    assert build_question_form_answers(dict(pairs)) == xml
    assert parse_question_form_answers(xml) == {"a": "x < y & z", "b": "1"}


# --------------------------------------------------------------------------- times
@pytest.mark.parametrize(("value", "expected"), [
    ("Wed Jul 08 04:16:53 PDT 2020", "2020-07-08 11:16:53"),
    ("Tue Jan 07 23:59:01 EST 2020", "2020-01-08 04:59:01"),
    ("Thu Jul 09 23:00:00 EDT 2020", "2020-07-10 03:00:00"),
    ("Mon Mar 02 10:00:00 CST 2020", "2020-03-02 16:00:00"),
    ("Mon Mar 02 10:00:00 GMT 2020", "2020-03-02 10:00:00"),
    ("  Mon Mar 02 10:00:00 Z 2020 ", "2020-03-02 10:00:00"),
    ("2021-03-04T05:06:07Z", "2021-03-04 05:06:07"),
    ("2021-03-04T05:06:07-05:00", "2021-03-04 10:06:07"),
    ("2021-03-04 05:06:07", "2021-03-04 05:06:07"),  # naive: UTC
    (1594207013, "2020-07-08 11:16:53"),  # epoch seconds
    (1594207013.5, "2020-07-08 11:16:53.5"),
    (np.int64(1594207013), "2020-07-08 11:16:53"),  # numpy's too (not nanoseconds)
    (np.float64(1594207013.25), "2020-07-08 11:16:53.25"),
    (datetime(2020, 7, 8, 11, 16, 53), "2020-07-08 11:16:53"),  # naive: UTC
    (datetime(2020, 7, 8, 4, 16, 53, tzinfo=timezone(timedelta(hours=-7))),
     "2020-07-08 11:16:53"),
    (pd.Timestamp("2020-07-08 13:16:53", tz="Europe/Berlin"), "2020-07-08 11:16:53"),
    (np.datetime64("2020-07-08T11:16:53"), "2020-07-08 11:16:53"),
])
def test_parse_mturk_time_gives_utc(value, expected):
    ts = parse_mturk_time(value)
    assert isinstance(ts, pd.Timestamp) and str(ts.tz) == "UTC"
    assert ts == utc(expected)


@pytest.mark.parametrize("value", [None, pd.NaT, float("nan"), np.nan, np.float64("nan"), "",
                                   "   ", "NaT", np.datetime64("NaT"), pd.NA])
def test_parse_mturk_time_missing_is_none(value):
    assert parse_mturk_time(value) is None


def test_parse_mturk_time_refusals_name_the_text():
    with pytest.raises(AnswersFormatError) as e:
        parse_mturk_time("Wed Jul 08 04:16:53 XYZ 2020")
    assert message(e) == "time 'Wed Jul 08 04:16:53 XYZ 2020': unknown time zone 'XYZ'"
    with pytest.raises(AnswersFormatError) as e:
        parse_mturk_time(" soon ")
    assert message(e) == "time 'soon': not a recognized timestamp"


# --------------------------------------------------------------------------- the table
def test_answers_frame_columns_types_and_missing_values():
    rows = pd.DataFrame([
        {"hit_key": "k1", "assignment_id": "A1", "worker_id": "W1", "question": "q",
         "answer": "", "submit_time": "Wed Jul 08 04:16:53 PDT 2020", "work_seconds": "12",
         "accept_time": 1594206900, "extra": "dropped"},
        {"hit_key": "k1", "hit_id": np.nan, "assignment_id": "A2", "worker_id": "W2",
         "question": "q", "answer": "yes", "submit_time": None, "work_seconds": "soon",
         "status": "Approved", "accept_time": np.nan, "source": "local"},
    ], index=[7, 3])
    df = answers_frame(rows)
    assert_typed(df)
    assert df["hit_id"].tolist() == [None, None] and df["status"].tolist() == [None, "Approved"]
    assert df["answer"].tolist() == ["", "yes"] and df["source"].tolist() == [None, "local"]
    assert df["submit_time"].iloc[0] == utc("2020-07-08 11:16:53")
    assert df["accept_time"].iloc[0] == utc("2020-07-08 11:15:00")
    assert df[["submit_time", "accept_time"]].iloc[1].isna().all()
    assert df["work_seconds"].iloc[0] == 12.0 and np.isnan(df["work_seconds"].iloc[1])
    assert_typed(answers_frame())
    assert len(answers_frame()) == 0


def test_answers_frame_datetime_columns_become_utc():
    naive = pd.DataFrame({"submit_time": pd.to_datetime(["2020-07-08 11:16:53", None]),
                          "accept_time": pd.to_datetime(["2020-07-08 13:16:53"] * 2)
                          .tz_localize("Europe/Berlin")})
    df = answers_frame(naive)
    assert_typed(df)
    assert df["submit_time"].iloc[0] == utc("2020-07-08 11:16:53")
    assert pd.isna(df["submit_time"].iloc[1])
    assert (df["accept_time"] == utc("2020-07-08 11:16:53")).all()


def test_answers_frame_bad_time_names_the_column():
    with pytest.raises(AnswersFormatError) as e:
        answers_frame([{"submit_time": "soon"}])
    assert message(e) == "answers: column 'submit_time': time 'soon': not a recognized timestamp"
    with pytest.raises(AnswersFormatError) as e:
        answers_frame([{"accept_time": "Wed Jul 08 04:16:53 ABC 2020"}], where="x.csv")
    assert message(e) == ("x.csv: column 'accept_time': time 'Wed Jul 08 04:16:53 ABC 2020': "
                          "unknown time zone 'ABC'")


def test_assignment_rows_every_field():
    xml = build_question_form_answers({"shared": "yes", "hit_key": "hidden", "assignmentId": "A1",
                                       "description": ""})
    rows = assignment_rows({"AssignmentId": "A1", "WorkerId": "W1", "HITId": "H1",
                            "AssignmentStatus": "Approved",
                            "AcceptTime": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
                            "SubmitTime": "2024-05-01T03:01:30-07:00", "Answer": xml},
                           hit_key="k1", source="production")
    base = {"hit_key": "k1", "hit_id": "H1", "assignment_id": "A1", "worker_id": "W1",
            "submit_time": utc("2024-05-01 10:01:30"), "work_seconds": 90.0,
            "status": "Approved", "accept_time": utc("2024-05-01 10:00:00"),
            "source": "production"}
    assert rows == [{**base, "question": "shared", "answer": "yes"},
                    {**base, "question": "description", "answer": ""}]


def test_assignment_rows_without_answer_or_times():
    assert assignment_rows({"AssignmentId": "A2"}, hit_key="k", source="sandbox") == []
    assert assignment_rows({"AssignmentId": "A2", "Answer": None}, hit_key="k",
                           source="sandbox") == []
    xml = build_question_form_answers({"hit_key": "k7", "q": "a"})
    for times in ({"SubmitTime": "2024-05-01T10:00:00Z"}, {"AcceptTime": "2024-05-01T10:00:00Z"},
                  {}):
        (row,) = assignment_rows({"AssignmentId": "A3", "Answer": xml, **times}, hit_key=None,
                                 source="mturk-api")
        assert row["hit_key"] == "k7" and row["work_seconds"] is None
        assert row["hit_id"] is None and row["worker_id"] is None and row["status"] is None


# --------------------------------------------------------------------------- results CSV
def test_results_csv_bom_quoted_newlines_and_empty_cells(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(
        "\ufeffWorkerId,HITId,WorkTimeInSeconds,Input.hit_key,Answer.q,Answer.note\r\n"
        'W1,,  ,k1,,"two\r\nlines, ""quoted"""\r\n'
        "\r\n"
        " W2 ,H2,7,k2,  spaced  ,\u00e9t\u00e9\r\n".encode())
    df = read_results_csv(path)
    assert list(df.columns) == ["WorkerId", "HITId", "WorkTimeInSeconds", "Input.hit_key",
                                "Answer.q", "Answer.note"]
    assert (df.dtypes == "object").all()
    assert df.to_dict("records") == [
        {"WorkerId": "W1", "HITId": None, "WorkTimeInSeconds": None, "Input.hit_key": "k1",
         "Answer.q": "", "Answer.note": 'two\nlines, "quoted"'},
        {"WorkerId": "W2", "HITId": "H2", "WorkTimeInSeconds": "7", "Input.hit_key": "k2",
         "Answer.q": "  spaced  ", "Answer.note": "\u00e9t\u00e9"}]
    # the same line ends as the API's XML, whose parser turns \r\n into \n as well
    long = read_batch_csv(path)
    assert_typed(long)
    assert long[["worker_id", "question", "answer"]].values.tolist() == [
        ["W1", "q", ""], ["W1", "note", 'two\nlines, "quoted"'], ["W2", "q", "  spaced  "],
        ["W2", "note", "\u00e9t\u00e9"]]
    assert long["hit_id"].tolist() == [None, None, "H2", "H2"]
    assert long["work_seconds"].iloc[:2].isna().all() and (long["work_seconds"].iloc[2:] == 7).all()


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "empty file (is this MTurk's batch results CSV?)"),
    ("\ufeff".encode(), "empty file (is this MTurk's batch results CSV?)"),
    (b"Input.hit_key,Answer.q\nk,a\n", "no 'WorkerId' column (is this MTurk's batch results CSV?)"),
    (b"WorkerId,Answer.q,Input.x,Answer.q\nW,a,x,b\n", "column 'Answer.q' appears twice in the header"),
    # a download cut inside a quoted answer, text after a closing quote
    (b'WorkerId,Answer.q\nW1,"complete"\nW2,"cut sho', "not a readable CSV (unexpected end of data)"),
    (b'WorkerId,Answer.q\nW1,"yes" \n', "not a readable CSV (',' expected after '\"')"),
    (b"WorkerId,Input.hit_key,Answer.q\nW1,k,a\nW2,k\n", "row 3: 2 cells, the header has 3"),
    (b"WorkerId,Input.hit_key,Answer.q\nW1,k,a,b\n", "row 2: 4 cells, the header has 3"),
    (b"WorkerId,Answer.q\nW,\xff\n",
     "cannot read results CSV ('utf-8' codec can't decode byte 0xff in position 20: "
     "invalid start byte)"),
    (b"WorkerId,Answer.q\nW," + b"x" * 131073 + b"\n",
     "not a readable CSV (field larger than field limit (131072))"),
])
def test_results_csv_refusals_name_the_file_and_row(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(AnswersFormatError) as e:
        read_results_csv(path)
    assert message(e) == f"{path}: {expected}"


def test_results_csv_unreadable_path_is_named(tmp_path):
    with pytest.raises(AnswersFormatError) as e:
        read_results_csv(tmp_path)
    assert message(e).startswith(f"{tmp_path}: cannot read results CSV (")


TASK_ANSWERS = [
    '[{"shared": {"yes": true, "no": false}, "both": {"a": true, "b": true, "c": false}, '
    '"none": {"yes": false, "no": false}, "tags": ["x", 3, "\u00e9"], '
    '"meta": {"label": "\u00e9t\u00e9", "n": 2}, "mixed": {"a": true, "n": 5}, "note": null, '
    '"num": 4, "text": "white\\nsquare"}]',
    '{"shared": {"yes": false, "no": true}, "extra": "x"}',  # a bare object
    "",
    "  ",
]


def test_task_answers_json_is_expanded_into_fields(tmp_path):
    path = tmp_path / "crowd.csv"
    pd.DataFrame({"WorkerId": ["W1", "W2", "W3", "W4"], "Input.hit_key": ["k1"] * 4,
                  "Answer.taskAnswers": TASK_ANSWERS,
                  "Answer.text": ["column wins", "", "", ""]}).to_csv(path, index=False)
    wide = read_results_csv(path)
    fields = ["shared", "both", "none", "tags", "meta", "mixed", "note", "num", "extra"]
    assert list(wide.columns) == ["WorkerId", "Input.hit_key", "Answer.text",
                                  *(f"Answer.{f}" for f in fields)]
    assert (wide.dtypes == "object").all()
    first = wide.iloc[0]
    assert first[[f"Answer.{f}" for f in fields]].tolist() == [
        "yes", "a|b", "", "x|3|\u00e9", '{"label": "\u00e9t\u00e9", "n": 2}', "a", "", "4",
        None]
    assert first["Answer.text"] == "column wins"
    assert wide.loc[1, "Answer.shared"] == "no" and wide.loc[1, "Answer.extra"] == "x"
    assert wide.loc[1, "Answer.both"] is None  # a field the row does not have
    assert wide.loc[2:, [f"Answer.{f}" for f in fields]].isna().all().all()
    assert all(v is None for v in wide.loc[2:, "Answer.shared"])
    long = read_batch_csv(path)
    assert_typed(long)
    got = {(w, q): a for w, q, a in long[["worker_id", "question", "answer"]].values}
    assert got == {("W1", "text"): "column wins", ("W2", "text"): "", ("W3", "text"): "",
                   ("W4", "text"): "", **{("W1", f): first[f"Answer.{f}"] for f in fields[:-1]},
                   ("W2", "shared"): "no", ("W2", "extra"): "x"}


@pytest.mark.parametrize(("cell", "expected"), [
    ("[]", "row 3: Answer.taskAnswers: expected a JSON object"),
    ('["x"]', "row 3: Answer.taskAnswers: expected a JSON object"),
    ("5", "row 3: Answer.taskAnswers: expected a JSON object"),
    ('"text"', "row 3: Answer.taskAnswers: expected a JSON object"),
    ("{oops", "row 3: Answer.taskAnswers is not JSON"),
])
def test_task_answers_refusals_name_the_file_and_row(tmp_path, cell, expected):
    path = tmp_path / "crowd.csv"
    pd.DataFrame({"WorkerId": ["W1", "W2"], "Input.hit_key": ["k", "k"],
                  "Answer.taskAnswers": ['[{"q": "a"}]', cell]}).to_csv(path, index=False)
    with pytest.raises(AnswersFormatError) as e:
        read_batch_csv(path)
    assert message(e) == f"{path}: {expected}"


# --------------------------------------------------------------------------- batch CSV
def _long_answers() -> pd.DataFrame:
    """Three assignments as the long table (the hand-made source of the batch files)."""
    rows = []
    for aid, hit, worker, key, accept, submit, secs, answers in [
        ("3ASG0", "3HIT0", "AW1", "k0", "Wed Jul 08 04:15:00 PDT 2020",
         "Wed Jul 08 04:16:53 PDT 2020", 113, {"shared": "yes", "pattern": "mark",
                                                "description": 'a logo\nin the "corner"'}),
        ("3ASG1", "3HIT0", "AW2", "k0", "Wed Jul 08 05:00:00 PDT 2020",
         "Wed Jul 08 05:00:30 PDT 2020", 30, {"shared": "no", "pattern": "",
                                               "description": "nothing, \u00e9t\u00e9"}),
        ("3ASG2", "3HIT1", "AW1", "k1", "Tue Jan 07 23:59:01 EST 2020",
         "Wed Jan 08 00:00:01 EST 2020", 60, {"shared": "yes", "pattern": "object",
                                               "description": ""}),
    ]:
        for q, a in answers.items():
            rows.append({"hit_key": key, "hit_id": hit, "assignment_id": aid, "worker_id": worker,
                         "question": q, "answer": a, "accept_time": accept,
                         "submit_time": submit, "work_seconds": secs})
    return pd.DataFrame(rows)


def test_full_batch_csv_every_column(tmp_path):
    path = write_batch_csv(_long_answers(), tmp_path / "Batch_1_batch_results.csv")
    df = read_batch_csv(path, known_hit_keys=iter(["k0", "k1"]))
    assert_typed(df)
    order = ["description", "pattern", "shared"]  # the file's Answer.* columns, row by row
    expected = []
    src = _long_answers().set_index(["assignment_id", "question"])
    for aid, hit, worker, key, accept, submit, secs, status in [
        ("3ASG0", "3HIT0", "AW1", "k0", "2020-07-08 11:15:00", "2020-07-08 11:16:53", 113.0,
         "Submitted"),
        ("3ASG1", "3HIT0", "AW2", "k0", "2020-07-08 12:00:00", "2020-07-08 12:00:30", 30.0,
         "Submitted"),
        ("3ASG2", "3HIT1", "AW1", "k1", "2020-01-08 04:59:01", "2020-01-08 05:00:01", 60.0,
         "Submitted"),
    ]:
        for q in order:
            expected.append({"hit_key": key, "hit_id": hit, "assignment_id": aid,
                             "worker_id": worker, "question": q,
                             "answer": src.loc[(aid, q), "answer"], "submit_time": utc(submit),
                             "work_seconds": secs, "status": status,
                             "accept_time": utc(accept), "source": "mturk-csv"})
    pd.testing.assert_frame_equal(df, answers_frame(expected))


def test_reduced_batch_csv_gives_the_same_answers_with_stable_ids(tmp_path):
    answers = _long_answers()
    full = read_batch_csv(write_batch_csv(answers, tmp_path / "full.csv"))
    reduced = read_batch_csv(write_batch_csv(answers, tmp_path / "reduced.csv", reduced=True))
    assert_typed(reduced)
    same = ["hit_key", "worker_id", "question", "answer", "source"]
    pd.testing.assert_frame_equal(full[same], reduced[same])
    assert reduced[["hit_id", "status"]].isna().all().all()
    assert reduced[["submit_time", "accept_time", "work_seconds"]].isna().all().all()
    src = answers.set_index(["assignment_id", "question"])["answer"]
    expected = {csv_id(w, k, src[aid].to_dict()) for aid, w, k in
                [("3ASG0", "AW1", "k0"), ("3ASG1", "AW2", "k0"), ("3ASG2", "AW1", "k1")]}
    assert set(reduced["assignment_id"]) == expected
    assert all(re.fullmatch(r"csv-[0-9a-f]{24}", a) for a in expected)
    assert reduced.groupby("assignment_id")["worker_id"].nunique().eq(1).all()


def test_stable_ids_ignore_row_order_and_tell_rows_apart(tmp_path):
    def ids(rows: list[str], name: str) -> list[str]:
        path = tmp_path / name
        path.write_text("WorkerId,Input.hit_key,Answer.b,Answer.a,Answer.hit_key\n"
                        + "".join(r + "\n" for r in rows), encoding="utf-8")
        df = read_batch_csv(path)
        return df.drop_duplicates("worker_id")["assignment_id"].tolist()

    base = ["W1,k1,yes,x,ignored", "W2,k1,yes,x,"]
    one, two = ids(base, "a.csv")
    assert one == csv_id("W1", "k1", {"a": "x", "b": "yes"}) != two
    assert two == csv_id("W2", "k1", {"a": "x", "b": "yes"})
    assert ids(base[::-1], "b.csv") == [two, one]  # another download's row order
    for changed in ("W9,k1,yes,x,ignored", "W1,k2,yes,x,ignored", "W1,k1,no,x,ignored",
                    "W1,k1,yes,y,ignored"):
        assert ids([changed, base[1]], "c.csv")[0] != one
    # the hidden hit_key field is not an answer: only the key itself counts
    assert ids(["W1,k1,yes,x,other", base[1]], "d.csv")[0] == one


def test_stable_ids_of_empty_worker_and_absent_fields(tmp_path):
    path = tmp_path / "crowd.csv"
    pd.DataFrame({"WorkerId": ["", "W2"], "Input.hit_key": ["k", "k"],
                  "Answer.taskAnswers": ['{"q": "a"}', '{"r": "b"}']}).to_csv(path, index=False)
    df = read_batch_csv(path)
    assert df["assignment_id"].tolist() == [csv_id("", "k", {"q": "a", "r": ""}),
                                            csv_id("W2", "k", {"q": "", "r": "b"})]
    assert df["worker_id"].tolist() == [None, "W2"]


def test_hit_key_from_input_column_else_answer_field_per_row(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("WorkerId,Input.hit_key,Answer.hit_key,Answer.q\n"
                    "W1, k1 ,zz,a\nW2,,  k2 ,b\nW3,k3,,c\n", encoding="utf-8")
    assert read_batch_csv(path)["hit_key"].tolist() == ["k1", "k2", "k3"]
    path.write_text("WorkerId,Answer.hit_key,Answer.q\nW1, k1 ,a\nW2,k2,b\n", encoding="utf-8")
    df = read_batch_csv(path)
    assert df["hit_key"].tolist() == ["k1", "k2"] and df["question"].tolist() == ["q", "q"]
    path.write_text("WorkerId,Input.item,Answer.q\nW1,k1,a\n", encoding="utf-8")
    assert read_batch_csv(path, hit_key_column="Input.item")["hit_key"].tolist() == ["k1"]


@pytest.mark.parametrize(("content", "kwargs", "expected"), [
    ("WorkerId,Input.hit_key,Answer.q\nW1,k1,a\nW2,,b\n", {},
     "row 3: no hit_key (Input.hit_key or Answer.hit_key is empty)"),
    ("WorkerId,Input.hit_key,Answer.hit_key,Answer.q\nW1,k1,,a\nW2,,  ,b\n", {},
     "row 3: no hit_key (Input.hit_key or Answer.hit_key is empty)"),
    ("WorkerId,Input.hit_key,Answer.hit_key,Answer.q\nW1,k1,,a\nW2,,,b\n", {},
     "row 3: no hit_key (Input.hit_key or Answer.hit_key is empty)"),
    ("WorkerId,Answer.hit_key,Answer.q\nW1,k1,a\nW2,,b\n", {},
     "row 3: no hit_key (Input.hit_key or Answer.hit_key is empty)"),
    ("WorkerId,Answer.hit_key,Answer.q\nW1,k1,a\nW2, ,b\n", {},
     "row 3: no hit_key (Input.hit_key or Answer.hit_key is empty)"),
    ("WorkerId,Input.item,Answer.q\nW1,k1,a\nW2,,b\n", {"hit_key_column": "Input.item"},
     "row 3: no hit_key (Input.item or Answer.hit_key is empty)"),
    ("WorkerId,Answer.q\nW1,a\n", {}, "no 'Input.hit_key' (or Answer.hit_key) column naming the HIT"),
    ("WorkerId,Input.hit_key\nW1,k1\n", {}, "no 'Answer.<field>' columns"),
    ("WorkerId,Input.hit_key,Answer.q\nW1,k1,a\nW2,kX,b\nW3,kY,c\n", {"known_hit_keys": ["k1"]},
     "row 3: hit_key 'kX' is not in the manifest"),
    ("WorkerId,Input.hit_key,Answer.q\nW1,k1,a\n", {"questions": ["zz", "nope"]},
     "none of the questions ['nope', 'zz'] has an 'Answer.<field>' column"),
    ("WorkerId,Input.hit_key,WorkTimeInSeconds,Answer.q\nW1,k1,5,a\nW2,k1,soon,b\n", {},
     "row 3: WorkTimeInSeconds 'soon' is not a number"),
    ("WorkerId,Input.hit_key,SubmitTime,Answer.q\nW1,k1,soon,a\n", {},
     "SubmitTime: time 'soon': not a recognized timestamp"),
    ("WorkerId,Input.hit_key,SubmitTime,Answer.q\nW1,k1,soon,a\n", {"questions": ["q"]},
     "SubmitTime: time 'soon': not a recognized timestamp"),
    ("WorkerId,Input.hit_key,AcceptTime,Answer.q\nW1,k1,Wed Jul 08 04:16:53 XYZ 2020,a\n", {},
     "AcceptTime: time 'Wed Jul 08 04:16:53 XYZ 2020': unknown time zone 'XYZ'"),
])
def test_batch_csv_refusals_name_the_file_and_row(tmp_path, content, kwargs, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AnswersFormatError) as e:
        read_batch_csv(path, **kwargs)
    assert message(e) == f"{path}: {expected}"


def test_known_keys_and_questions_filter(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("WorkerId,Input.hit_key,Answer.shared,Answer.pattern,Answer.note\n"
                    "W1,k1,yes,mark,n1\nW2,k2,no,,n2\n", encoding="utf-8")
    every = read_batch_csv(path, known_hit_keys={"k1", "k2", "k3"})
    assert every["question"].tolist() == ["shared", "pattern", "note"] * 2
    some = read_batch_csv(path, questions=["note", "shared", "absent"])
    assert_typed(some)
    assert set(some["source"]) == {"mturk-csv"}
    assert some[["worker_id", "question", "answer"]].values.tolist() == [
        ["W1", "shared", "yes"], ["W1", "note", "n1"], ["W2", "shared", "no"],
        ["W2", "note", "n2"]]
    # the same assignments, whatever questions are read
    assert some["assignment_id"].unique().tolist() == every["assignment_id"].unique().tolist()
    assert len(read_batch_csv(path, questions=iter(["pattern"]))) == 2


def test_results_to_long_with_value_maps_and_any_index():
    df = pd.DataFrame({"WorkerId": ["W1", "W2", "W3"], "Answer.Q1": ["Yes", "Maybe", "No"],
                       "Answer.Q2": ["a", None, "b"], "Answer.hit_key": ["x", "x", "x"]},
                      index=[10, 20, 30], dtype=object)
    keys = pd.Series(["k1", "k1", "k2"], index=df.index, dtype=object)
    cols = {"shared": "Answer.Q1", "pattern": "Answer.Q2", "hit_key": "Answer.hit_key"}
    # a missing answer stays missing, whatever a value map holds
    long = results_to_long(df, keys, cols, "external-csv",
                           value_maps={"shared": {"Yes": "yes", "No": "no"},
                                       "pattern": {None: "filled"}})
    assert_typed(long)
    assert long[["worker_id", "hit_key", "question", "answer"]].values.tolist() == [
        ["W1", "k1", "shared", "yes"], ["W1", "k1", "pattern", "a"],
        ["W2", "k1", "shared", "Maybe"],
        ["W3", "k2", "shared", "no"], ["W3", "k2", "pattern", "b"]]
    assert set(long["source"]) == {"external-csv"}
    # ids from the rows' own values, not from where the frame's rows sit
    again = results_to_long(df.reset_index(drop=True), keys.reset_index(drop=True), cols, "x")
    assert long["assignment_id"].tolist() == again["assignment_id"].tolist()
    assert long["assignment_id"].tolist()[0] == csv_id("W1", "k1", {"shared": "Yes",
                                                                    "pattern": "a"})
    empty = results_to_long(df, keys, {"hit_key": "Answer.hit_key"}, "x")
    assert_typed(empty)
    assert len(empty) == 0


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("WorkTimeInSeconds", "soon", "results CSV: row 3: WorkTimeInSeconds 'soon' is not a number"),
    ("SubmitTime", "soon", "results CSV: SubmitTime: time 'soon': not a recognized timestamp"),
    ("AcceptTime", "soon", "results CSV: AcceptTime: time 'soon': not a recognized timestamp"),
])
def test_results_to_long_refusals_default_to_results_csv(column, value, expected):
    df = pd.DataFrame({"WorkerId": ["W1", "W2"], column: [None, value], "Answer.q": ["a", "b"]},
                      dtype=object)
    with pytest.raises(AnswersFormatError) as e:
        results_to_long(df, pd.Series(["k", "k"]), {"q": "Answer.q"}, "x")
    assert message(e) == expected


# --------------------------------------------------------------------------- read_answers
def test_read_answers_long_csv_keeps_answers_verbatim(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "hit_key,hit_id,assignment_id,worker_id,question,answer,submit_time,work_seconds,"
        "status,accept_time,source\n"
        "k1,,A1,007,q,,2020-07-08T11:16:53Z,12,,,local\n"
        "k1,H1,A1,007,r,NA,,,Submitted,Wed Jul 08 04:15:00 PDT 2020,\n", encoding="utf-8")
    df = read_answers(path)
    assert_typed(df)
    assert df[STRING_COLUMNS].values.tolist() == [
        ["k1", None, "A1", "007", "q", "", None, "local"],
        ["k1", "H1", "A1", "007", "r", "NA", "Submitted", None]]
    assert df["submit_time"].iloc[0] == utc("2020-07-08 11:16:53") and pd.isna(
        df["submit_time"].iloc[1])
    assert df["accept_time"].iloc[1] == utc("2020-07-08 11:15:00")
    assert df["work_seconds"].iloc[0] == 12.0 and np.isnan(df["work_seconds"].iloc[1])


def test_read_answers_csv_without_assignment_id_and_missing_columns(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("hit_key,worker_id,question,answer\nk1,W1,q,yes\n", encoding="utf-8")
    assert read_answers(path)["assignment_id"].tolist() == ["k1:W1"]
    path.write_text("hit_key,worker_id\nx,y\n", encoding="utf-8")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(path)
    assert message(e) == (f"{path}: missing column(s) ['question', 'answer']; "
                          f"expected {ANSWER_COLUMNS}")
    path.write_text("worker_id,question,answer\ny,q,a\n", encoding="utf-8")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(path)
    assert message(e) == (f"{path}: missing column(s) ['hit_key', 'assignment_id']; "
                          f"expected {ANSWER_COLUMNS}")
    path.write_text("hit_key,assignment_id,worker_id,question,answer,submit_time\n"
                    "k,A,W,q,a,soon\n", encoding="utf-8")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(path)
    assert message(e) == (f"{path}: column 'submit_time': time 'soon': "
                          "not a recognized timestamp")


def test_read_answers_recognises_batch_results(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_text("\ufeffWorkerId,Input.hit_key,Answer.q\nW1,k1,\nW2,k1,b\n", encoding="utf-8")
    df = read_answers(path)
    pd.testing.assert_frame_equal(df, read_batch_csv(path))
    assert df["answer"].tolist() == ["", "b"] and set(df["source"]) == {"mturk-csv"}
    # read as read_batch_csv reads it: the header alone says which reader
    for content, expected in [
        ("W1,k1,a,extra\nW2,k1\n", "row 2: 4 cells, the header has 3"),
        ("W1,k1,a\nW2,k1,b,c,d\n", "row 3: 5 cells, the header has 3"),
    ]:
        path.write_text("WorkerId,Input.hit_key,Answer.q\n" + content, encoding="utf-8")
        with pytest.raises(AnswersFormatError) as e:
            read_answers(path)
        assert message(e) == f"{path}: {expected}"
    path.write_text('WorkerId,Input.hit_key,Answer.q\nW1,k1,"cut', encoding="utf-8")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(path)
    assert message(e).startswith(f"{path}: not a readable CSV (")


def test_read_answers_missing_and_unreadable_files(tmp_path):
    assert_typed(read_answers(tmp_path / "answers"))
    for missing in (tmp_path, tmp_path / "x.csv"):
        with pytest.raises(AnswersFormatError) as e:
            read_answers(missing, missing_ok=False)
        target = missing / "answers.parquet" if missing.is_dir() else missing
        assert message(e) == f"{target}: answers file not found"
    (tmp_path / "answers.parquet").write_bytes(b"not parquet")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(tmp_path)
    assert message(e).startswith(f"{tmp_path / 'answers.parquet'}: not a readable parquet file (")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(empty)
    assert message(e) == f"{empty}: not a readable CSV (No columns to parse from file)"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"hit_key,worker_id,question,answer\nk,W,q,\xe9t\xe9\n")
    with pytest.raises(AnswersFormatError) as e:
        read_answers(latin)
    assert re.fullmatch(re.escape(f"{latin}: not a readable CSV (") + r".*can't decode.*\)",
                        message(e))


# --------------------------------------------------------------------------- merge
def _row(aid, q, a, key="k1", **extra):
    return {"hit_key": key, "assignment_id": aid, "worker_id": "W", "question": q, "answer": a,
            **extra}


def test_merge_new_wins_sorted_with_missing_keys_last():
    old = pd.DataFrame([_row("A2", "q", "old"), _row("A1", "r", "kept", work_seconds=5),
                        _row("B", "q", "no key", key=None), _row("A1", "q", "old")],
                       index=[4, 4, 9, 1])
    new = pd.DataFrame([_row("A1", "q", "new"), _row("A0", "q", "other hit", key="k2"),
                        _row("A3", "q", "x", key="k0")], index=[1, 2, 3])
    merged = merge_answers(old, new)
    assert_typed(merged)
    assert merged[["hit_key", "assignment_id", "question", "answer"]].values.tolist() == [
        ["k0", "A3", "q", "x"], ["k1", "A1", "q", "new"], ["k1", "A1", "r", "kept"],
        ["k1", "A2", "q", "old"], ["k2", "A0", "q", "other hit"], [None, "B", "q", "no key"]]
    assert merged.loc[2, "work_seconds"] == 5.0


def test_merge_of_empty_tables_and_reingesting_adds_nothing(tmp_path):
    assert_typed(merge_answers(answers_frame(), answers_frame()))
    path = write_batch_csv(_long_answers(), tmp_path / "reduced.csv", reduced=True)
    first = merge_answers(answers_frame(), read_batch_csv(path))
    assert_typed(first)
    assert len(first) == 9
    again = merge_answers(first, read_batch_csv(path))
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(merge_answers(first, answers_frame()), first)


# --------------------------------------------------------------------------- write
def _table() -> pd.DataFrame:
    return pd.DataFrame([
        {**_row("A1", "q", "yes"), "submit_time": "2024-01-01T00:00:00Z", "work_seconds": 3},
        {**_row("A2", "q", "no"), "status": "Approved", "source": "local"}], index=[5, 2])


def test_write_answers_parquet_without_index(tmp_path):
    target = write_answers(_table(), tmp_path / "answers")
    assert target == tmp_path / "answers" / "answers.parquet"
    assert sorted(p.name for p in target.parent.iterdir()) == ["answers.parquet"]
    schema = pq.read_schema(target)
    assert schema.names == ANSWER_COLUMNS
    assert json.loads(schema.metadata[b"pandas"])["index_columns"] == []
    back = read_answers(target.parent)
    assert_typed(back)
    pd.testing.assert_frame_equal(back, answers_frame(_table()))


def test_write_answers_ties_them_to_the_tasks(tmp_path):
    tasks, other, bare = tmp_path / "tasks", tmp_path / "other", tmp_path / "bare"
    write_run_record(tasks, fingerprint="f1", inputs={})
    write_run_record(other, fingerprint="f2", inputs={})
    bare.mkdir()
    out = tmp_path / "answers"
    table = answers_frame(_table())
    digest = pd.util.hash_pandas_object(table.astype("string"), index=False).to_numpy()
    fingerprint = fingerprint_of({"answers": digest.tobytes()})
    target = write_answers(_table(), out, tasks_dir=tasks)
    record = json.loads((out / "run.json").read_text())
    assert record == {"format": 1, "fingerprint": fingerprint, "inputs": {"tasks": "f1"}}
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    before = target.read_bytes()
    changed = _table().assign(answer=["yes", "maybe"])
    with pytest.raises(RunMismatchError) as e:
        write_answers(changed, out, tasks_dir=other)
    assert message(e) == (f"{other} (run f2) is not the input {target} was made from (run f1); "
                          "use the files of one run")
    assert target.read_bytes() == before
    assert json.loads((out / "run.json").read_text()) == record
    # the same tasks again: replaced, with the new answers' fingerprint
    write_answers(changed, out, tasks_dir=tasks)
    again = json.loads((out / "run.json").read_text())
    assert again["inputs"] == {"tasks": "f1"} and again["fingerprint"] != fingerprint
    assert read_answers(out)["answer"].tolist() == ["yes", "maybe"]
    # tasks without a record (written before fingerprints) are not checked and tie nothing
    write_answers(_table(), out, tasks_dir=bare)
    assert json.loads((out / "run.json").read_text()) == {
        "format": 1, "fingerprint": fingerprint, "inputs": {"tasks": None}}
    write_answers(_table(), out, tasks_dir=other)  # nothing recorded to contradict
    assert json.loads((out / "run.json").read_text())["inputs"] == {"tasks": "f2"}
