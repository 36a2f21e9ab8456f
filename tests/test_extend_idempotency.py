"""Extending HITs never adds assignments twice: crashes, refusals and re-runs against the real
task server running in-process (the harness of test_publish_idempotency.py: an unmodified
boto3 client whose requests go to the Flask app; a kill passes through ``except Exception``)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from helpers_publish import make_tasks_dir
from test_publish_idempotency import KEYS, InProcessService, Killed, publish

from tasks.cost import estimate_cost
from tasks.extend import extend_hits
from tasks.ledger import Ledger, request_token
from tasks.publish import BudgetExceededError

OP = "CreateAdditionalAssignmentsForHIT"


@pytest.fixture
def service(tmp_path):
    return InProcessService(tmp_path / "server")


@pytest.fixture
def tasks(tmp_path):
    return make_tasks_dir(tmp_path / "probe")


def _published_and_collected(tasks, svc, keys=KEYS[:2], assignments=3, **options):
    """Publish, then write down in the ledger that every assignment of ``keys`` was collected
    (what ``tasks collect`` leaves there)."""
    publish(tasks, svc, assignments=assignments, **options)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        for key in keys:
            rec = ledger.hit(svc.endpoint.key, key)
            for i in range(rec.max_assignments):
                ledger.record_assignment(svc.endpoint.key, f"{key}-a{i}", hit_id=rec.hit_id,
                                         hit_key=key, worker_id=f"W{i}", status="Submitted")


def _max(svc, tasks, key):
    with Ledger(tasks / "ledger.sqlite") as ledger:
        rec = ledger.hit(svc.endpoint.key, key)
    return svc.client.get_hit(HITId=rec.hit_id)["HIT"]["MaxAssignments"], rec.max_assignments


def _extend(tasks, svc, keys=KEYS[:2], n=2, **kw):
    return extend_hits(tasks, svc.client, svc.endpoint, keys, n, sleep=lambda s: None, **kw)


@pytest.mark.parametrize("when", ["before", "after"])
def test_killed_extension_is_finished_by_the_rerun_once(tasks, service, when):
    _published_and_collected(tasks, service)
    service.kill_at = (OP, 2, when)  # dies on the second HIT's request
    with pytest.raises(Killed):
        _extend(tasks, service)
    service.kill_at = None
    service.fail["GetHIT"] = [503]  # the check of the HIT is retried too
    slept: list[float] = []
    res = extend_hits(tasks, service.client, service.endpoint, KEYS[:2], 2, sleep=slept.append)
    assert len(slept) == (1 if when == "after" else 0)  # GetHIT runs only after an error
    service.fail.pop("GetHIT", None)
    assert res.extended == {} and res.recovered == {KEYS[1]: 2}
    assert [_max(service, tasks, k) for k in KEYS[:2]] == [(5, 5), (5, 5)]
    tokens = [p["UniqueRequestToken"] for op, p in service.sent if op == OP]
    # every request for a HIT carried the one token its ledger row recorded
    assert len(set(tokens)) == 2 and len(tokens) == (3 if when == "after" else 2)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        batch = ledger.get_meta("batch_id")
        for key in KEYS[:2]:
            token = request_token(batch, service.endpoint.name, key, "extend-1")
            assert ledger.extensions(service.endpoint.key, key) == [(1, token, 2, "done")]
    # and nothing more is added by running again (the new slots are not collected)
    again = _extend(tasks, service)
    assert again.extended == again.recovered == {}
    assert [_max(service, tasks, k)[0] for k in KEYS[:2]] == [5, 5]


def test_refused_extension_commits_nothing_and_a_retry_of_a_busy_service_adds_once(tasks,
                                                                                 service):
    _published_and_collected(tasks, service)
    service.fail[OP] = [400]  # the service refuses the first HIT's extension
    with Ledger(tasks / "ledger.sqlite") as ledger:
        spent = ledger.spent_cents(service.endpoint.key)
    with pytest.raises(Exception, match="refused with 400"):
        _extend(tasks, service)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.extensions(service.endpoint.key, KEYS[0]) == []
        assert ledger.spent_cents(service.endpoint.key) == spent
    assert _max(service, tasks, KEYS[0]) == (3, 3)
    service.fail[OP] = [503, 503]  # transient: retried with the same token
    slept: list[float] = []
    res = extend_hits(tasks, service.client, service.endpoint, KEYS[:2], 2, sleep=slept.append)
    assert len(slept) == 2  # one back-off per refusal
    assert res.extended == {KEYS[0]: 2, KEYS[1]: 2}
    assert [_max(service, tasks, k) for k in KEYS[:2]] == [(5, 5), (5, 5)]
    with Ledger(tasks / "ledger.sqlite") as ledger:
        added = ledger.spent_cents(service.endpoint.key) - spent
    assert Decimal(added) / 100 == 2 * (estimate_cost(1, 5, "0.10").total / 5 * 2)


def test_budget_exactly_covering_the_extensions_is_enough(tasks, service):
    _published_and_collected(tasks, service, reward="0.50")
    with Ledger(tasks / "ledger.sqlite") as ledger:
        spent = Decimal(ledger.spent_cents(service.endpoint.key)) / 100
    cost = 2 * estimate_cost(1, 5, "0.50").total / 5 * 2
    assert cost == Decimal("2.40")  # 4 assignments at $0.50 + 20%
    with pytest.raises(BudgetExceededError,
                       match=rf"^budget \${spent + cost - Decimal('0.01'):.2f} exceeded: 4 more "
                             rf"assignments cost \$2.40 and \${spent:.2f} is already committed; "
                             "nothing was extended$"):
        _extend(tasks, service, budget=spent + cost - Decimal("0.01"))
    assert service.count(OP) == 0
    res = _extend(tasks, service, budget=spent + cost)
    assert res.new_cost == cost and res.spent == spent + cost
    assert res.endpoint == service.endpoint.key


def test_only_collected_hits_are_extended_and_hits_of_ten_pay_the_higher_fee(tasks, service):
    _published_and_collected(tasks, service, keys=KEYS[:1], assignments=10)
    res = _extend(tasks, service, keys=KEYS[:2], n=3)
    assert res.extended == {KEYS[0]: 3}
    assert res.skipped == {KEYS[1]: "0 of its 10 assignments collected; collect the rest first"}
    assert res.new_cost == estimate_cost(1, 13, "0.10").total / 13 * 3  # 40% fee from 10 on
    assert _max(service, tasks, KEYS[0]) == (13, 13)


def test_result_summary_counts_hits_assignments_and_recoveries():
    from tasks.extend import ExtendResult

    r = ExtendResult("local:x", extended={"a": 2, "b": 3}, recovered={"c": 1},
                     skipped={"d": "why"}, spent=Decimal("1.5"))
    assert r.summary() == ("local:x: 3 HITs extended by 6 assignments in all (1 recovered "
                           "after an interrupted run), 1 skipped; committed $1.50")


def test_bad_requests_are_refused_before_anything_is_sent(tasks, service, tmp_path):
    from tasks.client import resolve_endpoint
    from tasks.publish import PublishError

    with pytest.raises(PublishError, match="no ledger"):
        _extend(tasks, service)
    _published_and_collected(tasks, service)
    with pytest.raises(PublishError, match=r"no HIT 'nope' in the ledger"):
        _extend(tasks, service, keys=["nope"])
    with pytest.raises(PublishError, match="must be >= 1, got 0"):
        _extend(tasks, service, n=0)
    prod = resolve_endpoint("production", None)
    with pytest.raises(PublishError, match="pass --yes"):
        extend_hits(tasks, service.client, prod, KEYS[:1], 1)
    assert service.count(OP) == 0


def test_limits_rounds_and_unpublished_hits_are_skipped_with_their_reason(tmp_path, service):
    tasks = make_tasks_dir(tmp_path / "probe")
    service.kill_at = ("CreateHITWithHITType", 2, "before")  # the second HIT stays pending
    with pytest.raises(Killed):
        publish(tasks, service, assignments=7)
    service.kill_at = None
    with Ledger(tasks / "ledger.sqlite") as ledger:
        rec = ledger.hit(service.endpoint.key, KEYS[0])
        for i in range(7):
            ledger.record_assignment(service.endpoint.key, f"a{i}", hit_id=rec.hit_id,
                                     hit_key=KEYS[0], worker_id=f"W{i}", status="Submitted")
    res = _extend(tasks, service, keys=KEYS[:2], n=5)
    assert res.extended == {KEYS[0]: 2}  # 7 + 2 = 9: the most a HIT created with 7 may have
    assert res.skipped == {KEYS[1]: f"not published at {service.endpoint.key}"}
    with Ledger(tasks / "ledger.sqlite") as ledger:
        for i in range(7, 9):
            ledger.record_assignment(service.endpoint.key, f"a{i}", hit_id=rec.hit_id,
                                     hit_key=KEYS[0], worker_id=f"W{i}", status="Submitted")
    res = _extend(tasks, service, keys=KEYS[:1], n=1)
    assert res.skipped == {KEYS[0]: "at 9 assignments: MTurk does not extend a HIT created "
                                    "with fewer than 10 to 10 or more"}
    res = _extend(tasks, service, keys=KEYS[:1], n=1, max_rounds=1)
    assert res.skipped == {KEYS[0]: "extended 1 times already (max_rounds)"}
    assert _max(service, tasks, KEYS[0]) == (9, 9)


def test_rows_of_another_endpoint_are_kept_apart(tasks, service):
    with Ledger(tasks / "ledger.sqlite") as ledger:  # the sandbox saw this HIT first
        ledger.mark_pending("sandbox", KEYS[0], batch_id="b", token="t", reward="0.10",
                            max_assignments=3, cost_cents=36)
    _published_and_collected(tasks, service, keys=KEYS[:1])
    res = _extend(tasks, service, keys=KEYS[:1])
    assert res.extended == {KEYS[0]: 2}
    assert _max(service, tasks, KEYS[0]) == (5, 5)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.hit("sandbox", KEYS[0]).max_assignments == 3
        assert ledger.extensions("sandbox", KEYS[0]) == []
