"""Requester-API parameter validation at each documented boundary (in-process, no server).

MTurk's documented ranges (tasks.server.validation): lifetimes and assignment durations
30 s .. 1 year, auto-approval 0 .. 30 days, MaxAssignments 1 .. 1,000,000, page sizes
1 .. 100, rewards and bonuses at most $100,000.00 with at most two decimals, string lengths
(Title 128, Description 2000, ...), at most 10 qualification requirements. Each is checked
exactly at the limit (accepted) and one past it (refused), on both sides where there are two.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tasks.question_xml import EXTERNAL_QUESTION_NS, HTML_QUESTION_NS, QUESTION_MAX_BYTES
from tasks.server.errors import RequestError
from tasks.server.validation import (
    LIMITS,
    MAX_AUTO_APPROVAL,
    MAX_DURATION,
    MAX_FRAME_HEIGHT,
    MAX_TEXT,
    MAX_TIMESTAMP,
    check_text,
    check_worker_id,
    parse_question,
    to_epoch,
    validate_params,
)

HIT = dict(Title="t", Description="d", Reward="0.05", LifetimeInSeconds=300,
           AssignmentDurationInSeconds=120, MaxAssignments=1, Question="<q/>")
HIT_TYPE = dict(Title="t", Description="d", Reward="0.05", AssignmentDurationInSeconds=120)
QUAL_TYPE = dict(Name="n", Description="d", QualificationTypeStatus="Active")
LOCALE_QUAL = "00000000000000000071"


def refused(operation: str, params: dict, *, min_duration: int = 30) -> RequestError:
    """The error validate_params raises (fails the test when it accepts)."""
    with pytest.raises(RequestError) as err:
        validate_params(operation, params, min_duration=min_duration)
    return err.value


def accepted(operation: str, params: dict, *, min_duration: int = 30) -> None:
    assert validate_params(operation, params, min_duration=min_duration) is params


def out_of_range(operation: str, params: dict, field: str, **kw) -> str:
    err = refused(operation, params, **kw)
    assert err.turk_code == "AWS.ParameterOutOfRange", err
    assert f"at '{field}'" in str(err), err
    return str(err)


# --------------------------------------------------------------------------- integers
@pytest.mark.parametrize("member", ["LifetimeInSeconds", "AssignmentDurationInSeconds"])
def test_durations_from_thirty_seconds_to_one_year(member):
    accepted("CreateHIT", {**HIT, member: 30})
    accepted("CreateHIT", {**HIT, member: MAX_DURATION})
    assert MAX_DURATION == 365 * 24 * 3600
    msg = out_of_range("CreateHIT", {**HIT, member: 29}, member)
    assert f"between 30 and {MAX_DURATION}" in msg
    out_of_range("CreateHIT", {**HIT, member: MAX_DURATION + 1}, member)


def test_the_server_can_lower_the_shortest_duration():
    accepted("CreateHIT", {**HIT, "LifetimeInSeconds": 1}, min_duration=1)
    out_of_range("CreateHIT", {**HIT, "LifetimeInSeconds": 0}, "LifetimeInSeconds",
                 min_duration=1)
    # The default is MTurk's 30 s.
    out_of_range("CreateHIT", {**HIT, "AssignmentDurationInSeconds": 29},
                 "AssignmentDurationInSeconds")
    accepted("CreateHITType", {**HIT_TYPE, "AssignmentDurationInSeconds": 30})


@pytest.mark.parametrize(("operation", "base", "member", "lo", "hi"), [
    ("CreateHIT", HIT, "AutoApprovalDelayInSeconds", 0, MAX_AUTO_APPROVAL),
    ("CreateHITType", HIT_TYPE, "AutoApprovalDelayInSeconds", 0, MAX_AUTO_APPROVAL),
    ("CreateHIT", HIT, "MaxAssignments", 1, 1_000_000),
    ("CreateAdditionalAssignmentsForHIT", {"HITId": "H1"}, "NumberOfAdditionalAssignments", 1,
     1_000_000),
    ("CreateQualificationType", QUAL_TYPE, "RetryDelayInSeconds", 0, MAX_DURATION),
    ("CreateQualificationType", QUAL_TYPE, "TestDurationInSeconds", 1, MAX_DURATION),
    ("ListHITs", {}, "MaxResults", 1, 100),
    ("ListAssignmentsForHIT", {"HITId": "H1"}, "MaxResults", 1, 100),
    ("ListBonusPayments", {"HITId": "H1"}, "MaxResults", 1, 100),
])
def test_documented_integer_ranges_are_inclusive_on_both_sides(operation, base, member, lo, hi):
    accepted(operation, {**base, member: lo})
    accepted(operation, {**base, member: hi})
    out_of_range(operation, {**base, member: lo - 1}, member)
    out_of_range(operation, {**base, member: hi + 1}, member)


def test_auto_approval_is_thirty_days():
    assert MAX_AUTO_APPROVAL == 30 * 24 * 3600


@pytest.mark.parametrize(("operation", "base", "member"), [
    ("AssociateQualificationWithWorker", {"QualificationTypeId": "Q1", "WorkerId": "W1"},
     "IntegerValue"),
    ("CreateQualificationType", QUAL_TYPE, "AutoGrantedValue"),
])
def test_other_integers_are_32_bit(operation, base, member):
    accepted(operation, {**base, member: 2**31 - 1})
    accepted(operation, {**base, member: -(2**31)})
    out_of_range(operation, {**base, member: 2**31}, member)
    out_of_range(operation, {**base, member: -(2**31) - 1}, member)


def test_qualification_integer_values_are_32_bit_and_at_most_15():
    req = {"QualificationTypeId": "Q1", "Comparator": "In"}
    accepted("CreateHIT", {**HIT, "QualificationRequirements": [
        {**req, "IntegerValues": [2**31 - 1, -(2**31)] + [0] * 13}]})
    out_of_range("CreateHIT", {**HIT, "QualificationRequirements": [
        {**req, "IntegerValues": [0, 2**31]}]}, "QualificationRequirements[0].IntegerValues[1]")
    out_of_range("CreateHIT", {**HIT, "QualificationRequirements": [
        {**req, "IntegerValues": [0] * 16}]}, "QualificationRequirements[0].IntegerValues")


@pytest.mark.parametrize("bad", [True, False, 1.0, "5", [5]])
def test_integers_must_be_json_integers(bad):
    out_of_range("CreateHIT", {**HIT, "MaxAssignments": bad}, "MaxAssignments")


# --------------------------------------------------------------------------- money
@pytest.mark.parametrize("ok", ["0.00", "0.01", "1", "1.5", "1.", "100000.00", "100000"])
def test_rewards_up_to_one_hundred_thousand_dollars(ok):
    accepted("CreateHIT", {**HIT, "Reward": ok})


@pytest.mark.parametrize("bad", ["100000.01", "100001", "99999999999999999999", "1.234", "-1",
                                 "$1", "1e3", " 1.00", "1.00\n", ""])
def test_rewards_over_the_limit_or_malformed_are_refused(bad):
    out_of_range("CreateHIT", {**HIT, "Reward": bad}, "Reward")


def test_bonus_amount_has_the_same_limit():
    base = {"WorkerId": "W1", "BonusAmount": "100000.00", "AssignmentId": "A1", "Reason": "r"}
    accepted("SendBonus", base)
    msg = out_of_range("SendBonus", {**base, "BonusAmount": "100000.01"}, "BonusAmount")
    assert "at most 100000.00" in msg


# --------------------------------------------------------------------------- strings
@pytest.mark.parametrize(("operation", "base", "member"), [
    ("CreateHIT", HIT, "Title"),
    ("CreateHIT", HIT, "Description"),
    ("CreateHIT", HIT, "Keywords"),
    ("CreateHIT", HIT, "RequesterAnnotation"),
    ("CreateHIT", HIT, "Question"),
    ("RejectAssignment", {"AssignmentId": "A1"}, "RequesterFeedback"),
    ("SendBonus", {"WorkerId": "W1", "BonusAmount": "1", "AssignmentId": "A1"}, "Reason"),
    ("CreateQualificationType", QUAL_TYPE, "Name"),
    ("NotifyWorkers", {"Subject": "s", "WorkerIds": ["W1"]}, "MessageText"),
    ("NotifyWorkers", {"MessageText": "m", "WorkerIds": ["W1"]}, "Subject"),
])
def test_documented_string_lengths(operation, base, member):
    limit = LIMITS[member]
    accepted(operation, {**base, member: "x" * limit})
    msg = out_of_range(operation, {**base, member: "x" * (limit + 1)}, member)
    assert f"less than or equal to {limit}" in msg


def test_the_documented_lengths():
    assert {k: LIMITS[k] for k in ("Title", "Description", "Keywords", "RequesterAnnotation",
                                   "RequesterFeedback", "Reason", "Name", "MessageText",
                                   "Subject")} == {
        "Title": 128, "Description": 2000, "Keywords": 1000, "RequesterAnnotation": 255,
        "RequesterFeedback": 1024, "Reason": 1024, "Name": 128, "MessageText": 4096,
        "Subject": 200}


def test_any_other_string_is_at_most_65535_characters():
    base = {**QUAL_TYPE, "AnswerKey": "x" * MAX_TEXT}
    accepted("CreateQualificationType", base)
    out_of_range("CreateQualificationType", {**base, "AnswerKey": "x" * (MAX_TEXT + 1)},
                 "AnswerKey")


def test_model_string_lengths():
    """UniqueRequestToken (1-64 characters, no pattern) and ids (1-64 of [A-Z0-9])."""
    accepted("CreateHIT", {**HIT, "UniqueRequestToken": "t"})
    accepted("CreateHIT", {**HIT, "UniqueRequestToken": "t" * 64})
    msg = out_of_range("CreateHIT", {**HIT, "UniqueRequestToken": "t" * 65}, "UniqueRequestToken")
    assert "length less than or equal to 64" in msg
    msg = out_of_range("CreateHIT", {**HIT, "UniqueRequestToken": ""}, "UniqueRequestToken")
    assert "length greater than or equal to 1" in msg
    accepted("GetHIT", {"HITId": "H" * 64})
    out_of_range("GetHIT", {"HITId": "H" * 65}, "HITId")
    out_of_range("GetHIT", {"HITId": ""}, "HITId")


def test_page_size_messages_speak_of_values():
    assert "value less than or equal to 100" in out_of_range(
        "ListHITs", {"MaxResults": 101}, "MaxResults")
    assert "value greater than or equal to 1" in out_of_range(
        "ListHITs", {"MaxResults": 0}, "MaxResults")


def test_next_token_length():
    accepted("ListHITs", {"NextToken": "t" * 255})
    out_of_range("ListHITs", {"NextToken": "t" * 256}, "NextToken")


@pytest.mark.parametrize("hit_id", ["abc", "ABC\n", "AB C", "ÄBC"])
def test_ids_must_match_the_model_pattern_in_full(hit_id):
    msg = out_of_range("GetHIT", {"HITId": hit_id}, "HITId")
    assert "regular expression pattern" in msg
    accepted("GetHIT", {"HITId": "ABC123"})


@pytest.mark.parametrize("ok", ["W1", "worker_7-x", "a" * 64, "A3XYZ"])
def test_worker_ids_follow_this_servers_rule_not_mturks_pattern(ok):
    accepted("GetAccountBalance", {})
    accepted("NotifyWorkers", {"Subject": "s", "MessageText": "m", "WorkerIds": [ok]})
    accepted("AssociateQualificationWithWorker", {"QualificationTypeId": "Q1", "WorkerId": ok})


@pytest.mark.parametrize("bad", ["", "a" * 65, "bad id", "w.1", "w1\n", "wörker"])
def test_worker_ids_outside_this_servers_rule_are_refused(bad):
    msg = out_of_range("AssociateQualificationWithWorker",
                       {"QualificationTypeId": "Q1", "WorkerId": bad}, "WorkerId")
    assert "1-64 characters" in msg
    out_of_range("NotifyWorkers", {"Subject": "s", "MessageText": "m", "WorkerIds": ["W1", bad]},
                 "WorkerIds[1]")


def test_at_most_100_worker_ids():
    base = {"Subject": "s", "MessageText": "m"}
    accepted("NotifyWorkers", {**base, "WorkerIds": [f"W{i}" for i in range(100)]})
    out_of_range("NotifyWorkers", {**base, "WorkerIds": [f"W{i}" for i in range(101)]},
                 "WorkerIds")


def test_at_most_ten_qualification_requirements_and_thirty_locales():
    req = {"QualificationTypeId": "000000000000000000L0", "Comparator": "Exists"}
    accepted("CreateHIT", {**HIT, "QualificationRequirements": [req] * 10})
    msg = out_of_range("CreateHIT", {**HIT, "QualificationRequirements": [req] * 11},
                       "QualificationRequirements")
    assert "at most 10 items" in msg
    loc = {"QualificationTypeId": LOCALE_QUAL, "Comparator": "In"}
    accepted("CreateHIT", {**HIT, "QualificationRequirements": [
        {**loc, "LocaleValues": [{"Country": "US"}] * 30}]})
    out_of_range("CreateHIT", {**HIT, "QualificationRequirements": [
        {**loc, "LocaleValues": [{"Country": "US"}] * 31}]},
        "QualificationRequirements[0].LocaleValues")


def test_enums_are_checked_in_nested_members():
    req = {"QualificationTypeId": "000000000000000000L0", "Comparator": "Sometimes"}
    msg = out_of_range("CreateHIT", {**HIT, "QualificationRequirements": [req]},
                       "QualificationRequirements[0].Comparator")
    assert "enum value set" in msg
    accepted("CreateHIT", {**HIT, "QualificationRequirements": [{**req, "Comparator": "Exists"}]})


@pytest.mark.parametrize("member", ["Title", "Description"])
@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_title_and_description_must_not_be_blank(member, blank):
    msg = out_of_range("CreateHIT", {**HIT, member: blank}, member)
    assert "must not be blank" in msg
    accepted("CreateHIT", {**HIT, member: " x "})


@pytest.mark.parametrize(("bad", "code", "index"), [("a\x00b", "U+0000", 1),
                                                     ("ab\ud800", "U+D800", 2),
                                                     ("\udfff", "U+DFFF", 0)])
def test_text_with_nul_or_lone_surrogates_is_refused(bad, code, index):
    msg = out_of_range("CreateHIT", {**HIT, "Keywords": bad}, "Keywords")
    assert f"found {code} at index {index}" in msg
    with pytest.raises(RequestError, match=re.escape(f"found {code} at index {index}")):
        check_text("Keywords", bad)


def test_ordinary_unicode_text_is_kept():
    text = "Ünïcödé ✓ 😀 tab\tnewline\n"
    assert check_text("Title", text) is text
    accepted("CreateHIT", {**HIT, "Title": text})


@pytest.mark.parametrize("bad", [1, None, ["t"], {"t": 1}])
def test_strings_must_be_strings(bad):
    out_of_range("CreateHIT", {**HIT, "Title": bad}, "Title")


# --------------------------------------------------------------------------- structure
def test_missing_required_and_unknown_parameters():
    err = refused("CreateHIT", {k: v for k, v in HIT.items() if k != "Reward"})
    assert err.turk_code == "AWS.MissingParameters" and "'Reward'" in str(err)
    err = refused("CreateHIT", {**HIT, "QualificationRequirements": [{"Comparator": "Exists"}]})
    assert err.turk_code == "AWS.MissingParameters"
    assert "'QualificationTypeId' in QualificationRequirements[0]" in str(err)
    err = refused("CreateHIT", {**HIT, "Extra": 1})
    assert err.turk_code == "AWS.BadClaimsSupplied" and "'Extra' in the request" in str(err)
    err = refused("CreateHIT", {**HIT, "QualificationRequirements": [
        {"QualificationTypeId": "Q1", "Comparator": "Exists", "Extra": 1}]})
    assert err.turk_code == "AWS.BadClaimsSupplied"
    assert "in QualificationRequirements[0]" in str(err)


@pytest.mark.parametrize("body", [[], "x", 1, None])
def test_the_body_must_be_an_object(body):
    err = refused("ListHITs", body)
    assert err.turk_code == "AWS.BadClaimsSupplied"


def test_nulls_and_wrong_container_types_are_refused():
    out_of_range("CreateHIT", {**HIT, "Keywords": None}, "Keywords")
    assert "must not be null" in out_of_range("CreateHIT", {**HIT, "Keywords": None}, "Keywords")
    out_of_range("CreateHIT", {**HIT, "QualificationRequirements": {"a": 1}},
                 "QualificationRequirements")
    out_of_range("CreateHIT", {**HIT, "QualificationRequirements": ["x"]},
                 "QualificationRequirements[0]")


@pytest.mark.parametrize("bad", [1, "true", None, 0])
def test_booleans_must_be_booleans(bad):
    out_of_range("UpdateHITReviewStatus", {"HITId": "H1", "Revert": bad}, "Revert")
    accepted("UpdateHITReviewStatus", {"HITId": "H1", "Revert": False})


def test_operations_with_nothing_to_check():
    accepted("GetAccountBalance", {})
    err = refused("GetAccountBalance", {"X": 1})
    assert err.turk_code == "AWS.BadClaimsSupplied"


def test_unknown_values_are_shown_safely_in_the_message():
    """A huge number or a long string is shown abbreviated, never echoed whole."""
    msg = out_of_range("CreateHIT", {**HIT, "MaxAssignments": 10**30}, "MaxAssignments")
    assert str(10**30) in msg  # ascii() of an int is its digits
    msg = out_of_range("CreateHIT", {**HIT, "MaxAssignments": 10**17 + 1}, "MaxAssignments")
    assert f"Value {10**17 + 1} at" in msg
    msg = out_of_range("GetHIT", {"HITId": "x" * 60 + "\x01"}, "HITId")
    assert "'" + "x" * 60 in msg and "\x01" not in msg


# --------------------------------------------------------------------------- timestamps
def test_expire_at_accepts_epoch_and_iso_and_refuses_the_rest():
    for ok in (0, 1.5, MAX_TIMESTAMP, "1700000000", "2030-01-01T00:00:00Z"):
        accepted("UpdateExpirationForHIT", {"HITId": "H1", "ExpireAt": ok})
    for bad in (-1, MAX_TIMESTAMP + 1, "soon", True, [1], float("inf"), float("nan")):
        msg = out_of_range("UpdateExpirationForHIT", {"HITId": "H1", "ExpireAt": bad},
                           "ExpireAt")
        assert f"between 0 and {MAX_TIMESTAMP}" in msg


def test_to_epoch_range_is_1970_to_the_end_of_9999():
    assert to_epoch(0) == 0.0 and isinstance(to_epoch(0), float)
    assert to_epoch(MAX_TIMESTAMP) == MAX_TIMESTAMP
    assert to_epoch("9999-12-31T23:59:59Z") == MAX_TIMESTAMP
    assert to_epoch("1970-01-01T00:00:00Z") == 0.0
    for bad in (-1, -0.001, MAX_TIMESTAMP + 1, MAX_TIMESTAMP + 0.5, "1969-12-31T23:59:59Z"):
        with pytest.raises(ValueError, match="out of range"):
            to_epoch(bad)


def test_to_epoch_reads_iso_strings_in_utc_unless_an_offset_is_given():
    t = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert to_epoch("2030-01-02T03:04:05Z") == t
    assert to_epoch("2030-01-02T03:04:05") == t  # naive: UTC, not the server's zone
    assert to_epoch("  2030-01-02T03:04:05+00:00 ") == t
    assert to_epoch("2030-01-02T05:04:05+02:00") == t
    assert to_epoch(" 12.5 ") == 12.5
    assert to_epoch(7) == 7.0


@pytest.mark.parametrize(("bad", "error"), [
    (True, TypeError), (None, TypeError), ([0], TypeError), (b"0", TypeError),
    (10**400, ValueError), ("nope", ValueError), ("", ValueError), ("inf", ValueError),
    ("nan", ValueError), (float("-inf"), ValueError), ("0001-01-01T00:00:00+01:00", ValueError),
])
def test_to_epoch_refusals(bad, error):
    with pytest.raises(error):
        to_epoch(bad)


def test_to_epoch_error_shows_the_start_of_a_bad_string():
    with pytest.raises(ValueError, match=r"^not a timestamp: 'y{40}'$"):
        to_epoch("y" * 100)


# --------------------------------------------------------------------------- worker ids
def test_check_worker_id_bounds():
    assert check_worker_id("a") == "a"
    assert check_worker_id("Z" * 64) == "Z" * 64
    for bad in ("", "Z" * 65, "a b", "a\n", 5, None):
        with pytest.raises(ValueError, match="worker_id"):
            check_worker_id(bad)


# --------------------------------------------------------------------------- question XML
def html_q(content: str = "<p>hi</p>", frame: str = "0", ns: str = HTML_QUESTION_NS) -> str:
    return (f'<HTMLQuestion xmlns="{ns}"><HTMLContent><![CDATA[{content}]]></HTMLContent>'
            f"<FrameHeight>{frame}</FrameHeight></HTMLQuestion>")


def ext_q(url: str, frame: str = "600") -> str:
    return (f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}"><ExternalURL>{url}</ExternalURL>'
            f"<FrameHeight>{frame}</FrameHeight></ExternalQuestion>")


def test_question_size_limit_is_65535_utf8_bytes():
    assert QUESTION_MAX_BYTES == 65_535
    pad = QUESTION_MAX_BYTES - len(html_q("").encode())
    assert parse_question(html_q("x" * pad)).html_content == "x" * pad
    with pytest.raises(RequestError, match="65536 bytes; the maximum is 65535") as err:
        parse_question(html_q("x" * (pad + 1)))
    assert err.value.turk_code == "AWS.MechanicalTurk.QuestionTooLong"
    # Counted in bytes, not characters: 'é' is two.
    with pytest.raises(RequestError, match="65536 bytes; the maximum is 65535"):
        parse_question(html_q("x" * (pad - 1) + "é"))
    assert parse_question(html_q("x" * (pad - 2) + "é")).html_content.endswith("é")


def test_html_question_parts():
    q = parse_question(html_q("<b>go</b>", " 450 "))
    assert (q.html_content, q.external_url, q.frame_height) == ("<b>go</b>", None, 450)


@pytest.mark.parametrize("frame", ["0", "100000", "000123"])
def test_frame_height_from_0_to_100000(frame):
    assert parse_question(html_q(frame=frame)).frame_height == int(frame)
    assert parse_question(ext_q("https://x.org/", frame)).frame_height == int(frame)
    assert MAX_FRAME_HEIGHT == 100_000


@pytest.mark.parametrize("frame", ["100001", "1000000", "-1", "1.5", "", "abc", "1e3"])
def test_frame_height_outside_the_range_is_refused(frame):
    for xml in (html_q(frame=frame), ext_q("https://x.org/", frame)):
        with pytest.raises(RequestError, match="FrameHeight must be an integer between 0 and "
                                               "100000") as err:
            parse_question(xml)
        assert err.value.turk_code == "AWS.MechanicalTurk.XMLParseError"


def test_frame_height_is_required():
    xml = (f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}"><HTMLContent>x</HTMLContent>'
           "</HTMLQuestion>")
    with pytest.raises(RequestError, match="FrameHeight"):
        parse_question(xml)


@pytest.mark.parametrize("content", ["", "   "])
def test_html_content_must_not_be_empty(content):
    with pytest.raises(RequestError, match="HTMLContent is missing or empty"):
        parse_question(html_q(content))
    with pytest.raises(RequestError, match="HTMLContent is missing or empty"):
        parse_question(f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}"><FrameHeight>0</FrameHeight>'
                       "</HTMLQuestion>")


@pytest.mark.parametrize("url", ["http://x.org/a", "https://x.org/a?b=1", " https://x.org/ "])
def test_external_question_takes_http_and_https_urls(url):
    q = parse_question(ext_q(url))
    assert (q.html_content, q.external_url, q.frame_height) == (None, url.strip(), 600)


@pytest.mark.parametrize("url", ["ftp://x.org/", "javascript:alert(1)", "", "x https://a"])
def test_external_question_refuses_other_urls(url):
    with pytest.raises(RequestError, match="ExternalURL must be an http"):
        parse_question(ext_q(url))
    with pytest.raises(RequestError, match="ExternalURL must be an http"):
        parse_question(f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}"><FrameHeight>1'
                       "</FrameHeight></ExternalQuestion>")


@pytest.mark.parametrize("xml", [
    html_q(ns="urn:other"),
    "<HTMLQuestion><HTMLContent>x</HTMLContent><FrameHeight>0</FrameHeight></HTMLQuestion>",
    f'<QuestionForm xmlns="{HTML_QUESTION_NS}"/>',
])
def test_other_question_kinds_are_refused(xml):
    with pytest.raises(RequestError, match="must be an HTMLQuestion or ExternalQuestion") as err:
        parse_question(xml)
    assert err.value.turk_code == "AWS.MechanicalTurk.XMLParseError"


def test_malformed_xml_is_a_parse_error():
    with pytest.raises(RequestError, match="not well-formed XML") as err:
        parse_question("<HTMLQuestion>not closed")
    assert err.value.turk_code == "AWS.MechanicalTurk.XMLParseError"


# --------------------------------------------------------------------------- the answers
_V = "1 validation error detected: Value {} at '{}' failed to satisfy constraint: Member must "
_REQ = {"QualificationTypeId": "Q1", "Comparator": "Exists"}


@pytest.mark.parametrize(("operation", "params", "turk_code", "message"), [
    ("ListHITs", [1], "AWS.BadClaimsSupplied", "request body must be a JSON object"),
    ("CreateHIT", {**HIT, "Keywords": None}, "AWS.ParameterOutOfRange",
     _V.format("None", "Keywords") + "not be null"),
    ("CreateHIT", {**HIT, "QualificationRequirements": ["x"]}, "AWS.ParameterOutOfRange",
     _V.format("'x'", "QualificationRequirements[0]") + "be a structure"),
    ("CreateHIT", {**HIT, "QualificationRequirements": {"a": 1}}, "AWS.ParameterOutOfRange",
     _V.format("{'a': 1}", "QualificationRequirements") + "be a list"),
    ("CreateHIT", {**HIT, "QualificationRequirements": [_REQ] * 11}, "AWS.ParameterOutOfRange",
     _V.format("'<11 items>'", "QualificationRequirements") + "have at most 10 items"),
    ("CreateHIT", {**HIT, "Title": 5}, "AWS.ParameterOutOfRange",
     _V.format("5", "Title") + "be a string"),
    ("CreateHIT", {**HIT, "Title": "x" * 129}, "AWS.ParameterOutOfRange",
     _V.format("'<129 characters>'", "Title") + "have length less than or equal to 128"),
    ("CreateHIT", {**HIT, "QualificationRequirements": [{**_REQ, "Comparator": "Sometimes"}]},
     "AWS.ParameterOutOfRange", _V.format("'Sometimes'", "QualificationRequirements[0]."
                                          "Comparator") + "satisfy enum value set: ['LessThan', "
     "'LessThanOrEqualTo', 'GreaterThan', 'GreaterThanOrEqualTo', 'EqualTo', 'NotEqualTo', "
     "'Exists', 'DoesNotExist', 'In', 'NotIn']"),
    ("AssociateQualificationWithWorker", {"QualificationTypeId": "Q1", "WorkerId": "bad id"},
     "AWS.ParameterOutOfRange",
     _V.format("'bad id'", "WorkerId") + "be 1-64 characters of letters, digits, '_' or '-'"),
    ("CreateHIT", {**HIT, "Reward": "100000.01"}, "AWS.ParameterOutOfRange",
     _V.format("'100000.01'", "Reward") + "be at most 100000.00"),
    ("CreateHIT", {**HIT, "MaxAssignments": 1.0}, "AWS.ParameterOutOfRange",
     _V.format("1.0", "MaxAssignments") + "be an integer"),
    ("CreateHIT", {**HIT, "MaxAssignments": 0}, "AWS.ParameterOutOfRange",
     _V.format("0", "MaxAssignments") + "be between 1 and 1000000"),
    ("UpdateHITReviewStatus", {"HITId": "H1", "Revert": "true"}, "AWS.ParameterOutOfRange",
     _V.format("'true'", "Revert") + "be a boolean"),
    ("UpdateExpirationForHIT", {"HITId": "H1", "ExpireAt": "soon"}, "AWS.ParameterOutOfRange",
     _V.format("'soon'", "ExpireAt") + "be a timestamp (epoch seconds between 0 and "
     "253402300799)"),
    ("ListHITs", {"MaxResults": 101}, "AWS.ParameterOutOfRange",
     _V.format("101", "MaxResults") + "have value less than or equal to 100"),
    ("ListHITs", {"MaxResults": 0}, "AWS.ParameterOutOfRange",
     _V.format("0", "MaxResults") + "have value greater than or equal to 1"),
    ("CreateHIT", {**HIT, "UniqueRequestToken": ""}, "AWS.ParameterOutOfRange",
     _V.format("''", "UniqueRequestToken") + "have length greater than or equal to 1"),
    ("CreateHIT", {**HIT, "Title": "  "}, "AWS.ParameterOutOfRange",
     _V.format("'  '", "Title") + "not be blank"),
    ("CreateHIT", {k: v for k, v in HIT.items() if k != "Reward"}, "AWS.MissingParameters",
     "Missing required parameter 'Reward' in the request"),
    ("CreateHIT", {**HIT, "QualificationRequirements": [{"Comparator": "Exists"}]},
     "AWS.MissingParameters",
     "Missing required parameter 'QualificationTypeId' in QualificationRequirements[0]"),
    ("CreateHIT", {**HIT, "Extra": 1}, "AWS.BadClaimsSupplied",
     "Unknown parameter 'Extra' in the request"),
    # Long values and names are cut to 80 characters of their ascii() form, never echoed whole.
    ("GetHIT", {"HITId": "x" * 100}, "AWS.ParameterOutOfRange",
     _V.format("'" + "x" * 79, "HITId") + "satisfy regular expression pattern: ^[A-Z0-9]+$"),
    ("GetHIT", {"HITId": "H1", "y" * 100: 1}, "AWS.BadClaimsSupplied",
     "Unknown parameter '" + "y" * 79 + " in the request"),
])
def test_each_refusal_answers_mturks_code_and_names_the_member_and_constraint(
        operation, params, turk_code, message):
    """What the client reads: MTurk's TurkErrorCode and its validation message format."""
    err = refused(operation, params)
    assert (err.turk_code, err.message) == (turk_code, message)


def test_the_shortest_duration_defaults_to_mturks_30_seconds():
    params = {**HIT, "LifetimeInSeconds": 30}
    assert validate_params("CreateHIT", params) is params
    with pytest.raises(RequestError, match="between 30 and"):
        validate_params("CreateHIT", {**HIT, "LifetimeInSeconds": 29})


def test_naive_iso_timestamps_are_utc_whatever_the_servers_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert to_epoch("2030-01-02T03:04:05") == dt.datetime(
            2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(("bad", "error", "message"), [
    (True, TypeError, "bool is not a timestamp"),
    ([1], TypeError, "unsupported timestamp list"),
    (None, TypeError, "unsupported timestamp NoneType"),
    (10**400, ValueError, "timestamp out of range"),
    (-1, ValueError, "timestamp out of range"),
    ("0001-01-01T00:00:00+01:00", ValueError, "timestamp out of range"),
    ("nope", ValueError, "not a timestamp: 'nope'"),
])
def test_to_epoch_says_why(bad, error, message):
    with pytest.raises(error) as err:
        to_epoch(bad)
    assert str(err.value) == message


@pytest.mark.parametrize(("xml", "message"), [
    (html_q("  "), "HTMLQuestion: HTMLContent is missing or empty"),
    (ext_q("ftp://x.org/"), "ExternalQuestion: ExternalURL must be an http(s) URL"),
    (html_q(frame="x"), "Question: FrameHeight must be an integer between 0 and 100000"),
    (f'<QuestionForm xmlns="{HTML_QUESTION_NS}"/>',
     "Question must be an HTMLQuestion or ExternalQuestion in its MTurk namespace (got root "
     f"element '{{{HTML_QUESTION_NS}}}QuestionForm')"),
])
def test_question_refusals_are_xml_parse_errors_that_say_what_is_wrong(xml, message):
    with pytest.raises(RequestError) as err:
        parse_question(xml)
    assert (err.value.turk_code, err.value.message) == ("AWS.MechanicalTurk.XMLParseError",
                                                        message)
