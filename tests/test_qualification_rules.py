"""Who may preview and accept a HIT: the qualification rules of the task server, one by one.

test_server_qualifications.py drives them through the live server over HTTP and boto3; these
pin every comparator at its edges, the locale match, the system types' values, what an unmet
requirement guards and the refusals of CreateHIT's requirements, against MTurk's documented
behaviour (``MTURK.md``).
"""

from __future__ import annotations

import json

import pytest

from tasks.server import qualifications as qual
from tasks.server.errors import RequestError
from tasks.server.storage import Storage, WorkerValues

CUSTOM = "3CUSTOMTYPE00000000000"


@pytest.mark.parametrize(("comparator", "below", "equal", "above"), [
    ("LessThan", True, False, False),
    ("LessThanOrEqualTo", True, True, False),
    ("GreaterThan", False, False, True),
    ("GreaterThanOrEqualTo", False, True, True),
    ("EqualTo", False, True, False),
    ("NotEqualTo", True, False, True),
])
def test_each_integer_comparator_at_its_edges(comparator, below, equal, above):
    assert qual._compare(comparator, 79, [80]) is below
    assert qual._compare(comparator, 80, [80]) is equal
    assert qual._compare(comparator, 81, [80]) is above
    assert qual._compare(comparator, 80, []) is False  # no value to compare with


def test_membership_comparators_and_an_unknown_one():
    assert qual._compare("In", 3, [1, 3, 5]) and not qual._compare("In", 4, [1, 3, 5])
    assert qual._compare("NotIn", 4, [1, 3, 5]) and not qual._compare("NotIn", 5, [1, 3, 5])
    assert qual._compare("In", 5, [1, 3, 5])  # not only the first value
    assert qual._compare("Bogus", 80, [80]) is False  # never met


def test_locale_matches_country_then_subdivision():
    assert qual._locale_matches("US", "CA", {"Country": "US"})
    assert qual._locale_matches("US", "CA", {"Country": "US", "Subdivision": "CA"})
    assert not qual._locale_matches("US", "NY", {"Country": "US", "Subdivision": "CA"})
    assert not qual._locale_matches("CA", None, {"Country": "US"})


def _values(approved=0, rejected=0, held=None, auto=None):
    return WorkerValues(approved, rejected, held or {}, auto or {})


def test_system_and_granted_values():
    assert qual.worker_value(_values(), qual.APPROVAL_RATE) == (100, None, None)
    assert qual.worker_value(_values(2, 1), qual.APPROVAL_RATE) == (66, None, None)  # floor
    assert qual.worker_value(_values(7, 3), qual.APPROVED_HITS) == (7, None, None)
    held = {qual.LOCALE: (None, "US", "CA"), CUSTOM: (42, None, None)}
    assert qual.worker_value(_values(held=held), CUSTOM) == (42, None, None)
    assert qual.worker_value(_values(auto={CUSTOM: None}), CUSTOM) == (1, None, None)
    assert qual.worker_value(_values(auto={CUSTOM: 9}), CUSTOM) == (9, None, None)
    assert qual.worker_value(_values(held=held, auto={CUSTOM: 9}), CUSTOM) == (42, None, None)
    assert qual.worker_value(_values(), CUSTOM) is None


def test_requirements_met_as_on_mturk():
    us_ca = _values(held={qual.LOCALE: (None, "US", "CA"), CUSTOM: (42, None, None)})
    nothing = _values()

    def req(comparator, **kw):
        return {"QualificationTypeId": kw.pop("type_id", CUSTOM), "Comparator": comparator, **kw}

    assert qual.requirement_met(req("Exists"), us_ca)
    assert not qual.requirement_met(req("Exists"), nothing)
    assert qual.requirement_met(req("DoesNotExist"), nothing)
    assert not qual.requirement_met(req("DoesNotExist"), us_ca)
    assert qual.requirement_met(req("GreaterThan", IntegerValues=[41]), us_ca)
    assert not qual.requirement_met(req("GreaterThan", IntegerValues=[42]), us_ca)
    assert not qual.requirement_met(req("LessThan", IntegerValues=[100]), nothing)  # not held
    locale = {"type_id": qual.LOCALE}
    us, fr = [{"Country": "US"}], [{"Country": "FR"}]
    assert qual.requirement_met(req("EqualTo", LocaleValues=us, **locale), us_ca)
    assert qual.requirement_met(req("In", LocaleValues=fr + us, **locale), us_ca)
    assert not qual.requirement_met(req("In", LocaleValues=fr, **locale), us_ca)
    assert qual.requirement_met(req("NotEqualTo", LocaleValues=fr, **locale), us_ca)
    assert qual.requirement_met(req("NotIn", LocaleValues=fr, **locale), us_ca)
    assert not qual.requirement_met(req("NotIn", LocaleValues=us, **locale), us_ca)
    assert qual.requirement_met(req("GreaterThan", LocaleValues=us, **locale), us_ca) is False
    ca = [{"Country": "US", "Subdivision": "CA"}]
    assert qual.requirement_met(req("EqualTo", LocaleValues=ca, **locale), us_ca)
    # a locale held without an integer value: integer comparisons are never met
    assert not qual.requirement_met(req("GreaterThan", IntegerValues=[0], **locale), us_ca)


def test_what_an_unmet_requirement_guards():
    base = {"QualificationTypeId": CUSTOM, "Comparator": "Exists"}
    assert qual.guarded_actions(base) == "Accept"
    assert qual.guarded_actions({**base, "RequiredToPreview": True}) == "PreviewAndAccept"
    assert qual.guarded_actions({**base, "RequiredToPreview": False}) == "Accept"
    assert qual.guarded_actions({**base, "ActionsGuarded": "DiscoverPreviewAndAccept",
                                 "RequiredToPreview": True}) == "DiscoverPreviewAndAccept"
    nothing = _values()
    accept = [base]
    preview = [{**base, "ActionsGuarded": "PreviewAndAccept"}]
    discover = [{**base, "ActionsGuarded": "DiscoverPreviewAndAccept"}]
    for reqs, blocked in ((accept, {"Accept"}), (preview, {"Accept", "Preview"}),
                          (discover, {"Accept", "Preview", "Discover"})):
        for action in ("Accept", "Preview", "Discover"):
            assert qual.meets(reqs, nothing, action) is (action not in blocked), (reqs, action)
            assert qual.meets(json.dumps(reqs), nothing, action) is (action not in blocked)
    assert not qual.meets(accept, nothing)  # Accept by default
    assert qual.unmet(preview + accept, nothing, "Preview") == preview
    odd = [{**base, "ActionsGuarded": "SomethingElse"}]  # an unknown value guards Accept only
    assert not qual.meets(odd, nothing, "Accept") and qual.meets(odd, nothing, "Preview")
    held = _values(held={CUSTOM: (1, None, None)})
    assert qual.meets(discover, held, "Discover") and qual.unmet(discover, held) == []


def test_requirements_refused_at_creation(tmp_path):
    store = Storage(f"sqlite:///{tmp_path / 'server.sqlite'}")
    store.init(balance_cents=0)
    store.add_qualification_type(qualification_type_id=CUSTOM, name="custom",
                                 description="a test type", status="Active", creation_time=0.0)
    ok = [{"QualificationTypeId": CUSTOM, "Comparator": "GreaterThan", "IntegerValues": [1]},
          {"QualificationTypeId": qual.LOCALE, "Comparator": "In",
           "LocaleValues": [{"Country": "US"}]},
          {"QualificationTypeId": qual.MASTERS[0], "Comparator": "Exists"},
          {"QualificationTypeId": CUSTOM, "Comparator": "DoesNotExist"}]
    qual.check_requirements(store, ok)
    cases = [
        ({"QualificationTypeId": "3NOSUCHTYPE", "Comparator": "Exists"},
         "QualificationType 3NOSUCHTYPE does not exist.",
         "AWS.MechanicalTurk.QualificationTypeDoesNotExist"),
        ({"QualificationTypeId": CUSTOM, "Comparator": "In",
          "LocaleValues": [{"Country": "US"}]},
         f"LocaleValues can only be used with the Locale qualification ({qual.LOCALE})",
         "AWS.ParameterOutOfRange"),
        ({"QualificationTypeId": CUSTOM, "Comparator": "EqualTo"},
         "Comparator EqualTo needs IntegerValues or LocaleValues", "AWS.ParameterOutOfRange"),
    ]
    for bad, message, code in cases:
        with pytest.raises(RequestError) as err:
            qual.check_requirements(store, [*ok, bad])
        assert (err.value.message, err.value.turk_code) == (message, code)
