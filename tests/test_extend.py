"""More assignments for split HITs: unmodified boto3 over loopback against a live task server,
the publishing ledger, and the ``tasks extend`` command."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from helpers_publish import FIXTURE_HITS, make_tasks_dir

from tasks.client import resolve_endpoint
from tasks.collect import collect_answers
from tasks.cost import estimate_cost
from tasks.extend import EXTENSION_LIMIT, extend_hits, extension_size
from tasks.ledger import Ledger, request_token
from tasks.publish import BudgetExceededError, PublishError, PublishOptions, publish_batch
from tasks.publish_cli import extend
from tasks.simulate import simulate_crowd

live = pytest.importorskip("tasks.server.live")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path):
    with live.start_server(tmp_path / "server.sqlite") as srv:
        yield srv


def _published(tmp_path, srv, assignments: int = 2):
    tasks = make_tasks_dir(tmp_path)
    ep = resolve_endpoint("local", srv.url)
    client = srv.boto3_client()
    publish_batch(tasks, client, ep, PublishOptions(assignments=assignments, reward="0.05"),
                  admin_auth=(srv.admin_user, srv.admin_password))
    return tasks, ep, client


def _answer_all(tmp_path, srv, tasks, ep, client, n_workers: int, seed: int = 1):
    simulate_crowd(srv.url, tasks, n_workers=n_workers, spammer_share=0.0, seed=seed,
                   concurrency=2, admin_auth=(srv.admin_user, srv.admin_password))
    collect_answers(tasks, tmp_path / "answers", client, ep)


def _max(client, tasks, ep, key: str) -> int:
    with Ledger(tasks / "ledger.sqlite") as ledger:
        hit_id = ledger.hit(ep.key, key).hit_id
    return client.get_hit(HITId=hit_id)["HIT"]["MaxAssignments"]


@pytest.mark.parametrize(("created", "current", "wanted", "expected"), [
    (2, 2, 3, 3), (7, 7, 2, 2), (7, 7, 3, 2), (7, 8, 2, 1), (7, 9, 1, 0), (9, 9, 1, 0),
    (EXTENSION_LIMIT, EXTENSION_LIMIT, 50, 50), (12, 15, 1, 1),
])
def test_extension_size_keeps_hits_created_below_ten_below_ten(created, current, wanted,
                                                               expected):
    assert extension_size(created, current, wanted) == expected


def test_extension_size_refuses_nothing_to_add():
    with pytest.raises(ValueError, match=">= 1"):
        extension_size(3, 3, 0)


@pytest.mark.slow
def test_split_hits_get_more_answers_once_and_only_after_collecting(tmp_path, server):
    tasks, ep, client = _published(tmp_path, server)
    keys = [h[0] for h in FIXTURE_HITS]
    early = extend_hits(tasks, client, ep, keys[:1], 2)  # nothing collected yet
    assert early.extended == {} and "0 of its 2 assignments collected" in early.skipped[keys[0]]
    assert _max(client, tasks, ep, keys[0]) == 2

    _answer_all(tmp_path, server, tasks, ep, client, n_workers=4)
    before = Decimal(0)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        before = Decimal(ledger.spent_cents(ep.key)) / 100
    res = extend_hits(tasks, client, ep, keys[:2], 2)
    assert res.extended == {keys[0]: 2, keys[1]: 2} and not res.skipped
    assert [_max(client, tasks, ep, k) for k in keys] == [4, 4] + [2] * (len(keys) - 2)
    # the committed cost grows by exactly the added assignments (4 of them, 20% fee)
    assert res.spent - before == estimate_cost(1, 4, "0.05").total
    # before the new answers are collected a second run adds nothing
    again = extend_hits(tasks, client, ep, keys[:2], 2)
    assert again.extended == {} and set(again.skipped) == set(keys[:2])
    assert [_max(client, tasks, ep, k) for k in keys[:2]] == [4, 4]

    # the remaining workers fill the new slots; collect sees them (the HITs were complete)
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=4)
    with Ledger(tasks / "ledger.sqlite") as ledger:
        got = {k: ledger.n_collected(ep.key, ledger.hit(ep.key, k).hit_id) for k in keys}
    assert got == {k: (4 if k in keys[:2] else 2) for k in keys}
    # a second round is a new request (a new token), allowed now that all are collected
    second = extend_hits(tasks, client, ep, keys[:1], 1)
    assert second.extended == {keys[0]: 1}
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert [r[0] for r in ledger.extensions(ep.key, keys[0])] == [1, 2]
        assert ledger.hit(ep.key, keys[0]).max_assignments == 5
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=5)
    capped = extend_hits(tasks, client, ep, keys[:2], 1, max_rounds=2)
    assert capped.extended == {keys[1]: 1}  # keys[0] had its 2 rounds, keys[1] one
    assert "extended 2 times already" in capped.skipped[keys[0]]


@pytest.mark.slow
def test_run_killed_after_the_call_is_resumed_without_adding_twice(tmp_path, server):
    tasks, ep, client = _published(tmp_path, server)
    key = FIXTURE_HITS[0][0]
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=2)
    # the state a run killed right after the service call leaves behind: the ledger says
    # pending, the service already added the assignments under the recorded token
    with Ledger(tasks / "ledger.sqlite") as ledger:
        rec = ledger.hit(ep.key, key)
        token = request_token(ledger.get_meta("batch_id"), ep.name, key, "extend-1")
        ledger.mark_extension_pending(ep.key, key, round_no=1, token=token, n_added=3,
                                      cost_cents=18)
    client.create_additional_assignments_for_hit(HITId=rec.hit_id,
                                                 NumberOfAdditionalAssignments=3,
                                                 UniqueRequestToken=token)
    res = extend_hits(tasks, client, ep, [key], 2)  # resumes the pending one, adds no other
    assert res.recovered == {key: 3} and res.extended == {}
    assert _max(client, tasks, ep, key) == 5
    with Ledger(tasks / "ledger.sqlite") as ledger:
        assert ledger.extensions(ep.key, key) == [(1, token, 3, "done")]
        assert ledger.hit(ep.key, key).max_assignments == 5


@pytest.mark.slow
def test_mturk_limit_budget_and_unknown_keys(tmp_path, server):
    tasks, ep, client = _published(tmp_path, server, assignments=7)
    keys = [h[0] for h in FIXTURE_HITS]
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=7)
    with pytest.raises(BudgetExceededError, match="nothing was extended"):
        extend_hits(tasks, client, ep, keys, 5, budget=Decimal("0.01"))
    assert {_max(client, tasks, ep, k) for k in keys} == {7}
    with pytest.raises(PublishError, match="no HIT 'nope'"):
        extend_hits(tasks, client, ep, ["nope"], 1)
    res = extend_hits(tasks, client, ep, keys[:1], 5)  # capped at 9: created with 7
    assert res.extended == {keys[0]: 2}
    assert _max(client, tasks, ep, keys[0]) == EXTENSION_LIMIT - 1
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=9)
    at_limit = extend_hits(tasks, client, ep, keys[:1], 1)
    assert at_limit.extended == {} and "MTurk does not extend" in at_limit.skipped[keys[0]]


@pytest.mark.slow
def test_cli_extends_the_undecided_rows_of_a_report(tmp_path, server):
    tasks, ep, client = _published(tmp_path, server)
    keys = [h[0] for h in FIXTURE_HITS]
    _answer_all(tmp_path, server, tasks, ep, client, n_workers=2)
    csv = tmp_path / "features.csv"
    rows = [f"{k},{'undecided' if i == 1 else 'core'}" for i, k in enumerate(keys)]
    csv.write_text("hit_key,verdict\n" + "\n".join(rows) + "\n", encoding="utf-8")
    env = {"SPARSE_PROBE_ACCESS_KEY_ID": server.access_key_id,
           "SPARSE_PROBE_SECRET_ACCESS_KEY": server.secret_access_key}
    res = CliRunner().invoke(extend, [str(tasks), "--undecided-from", str(csv), "--add", "3"],
                             env=env)
    assert res.exit_code == 0, res.output
    assert "1 HITs extended by 3 assignments" in res.output
    assert [_max(client, tasks, ep, k) for k in keys] == [2, 5] + [2] * (len(keys) - 2)


def test_cli_bad_features_csv_is_one_line_error(tmp_path):
    tasks = make_tasks_dir(tmp_path)
    csv = tmp_path / "features.csv"
    csv.write_text("hit_key,kind\nx,core\n", encoding="utf-8")
    res = CliRunner().invoke(extend, [str(tasks), "--undecided-from", str(csv)])
    assert res.exit_code != 0
    assert f"{csv}: no column verdict" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(extend, [str(tasks)])
    assert res.exit_code != 0 and "--undecided-from" in res.output
