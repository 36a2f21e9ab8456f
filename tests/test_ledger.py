"""The publishing ledger: what is recorded, per endpoint, and what makes re-runs safe."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import pytest

from tasks.ledger import LEDGER_NAME, HitRecord, Ledger, LedgerError, request_token


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / LEDGER_NAME) as led:
        yield led


def _pending(led: Ledger, endpoint: str, key: str, cents: int = 30, n: int = 3) -> None:
    led.mark_pending(endpoint, key, batch_id="b1", token=request_token("b1", endpoint, key),
                     reward="0.10", max_assignments=n, cost_cents=cents)


def _rows(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_request_token_is_deterministic_and_keeps_parts_apart():
    t = request_token("batch", "sandbox", "hit-1")
    assert re.fullmatch(r"[0-9a-f]{64}", t)  # MTurk allows 1-64 characters
    assert t == request_token("batch", "sandbox", "hit-1")
    assert t != request_token("batch", "production", "hit-1")
    assert request_token("a", "bc") != request_token("ab", "c")
    assert request_token("a", "bc") != request_token("abc")


def test_new_ledger_is_created_and_reopened(tmp_path):
    path = tmp_path / LEDGER_NAME
    with Ledger(path) as led:
        _pending(led, "sandbox", "k1")
    with Ledger(path) as led:
        assert [h.hit_key for h in led.hits()] == ["k1"]
        assert led.get_meta("schema") == "1"
    assert _rows(path, "PRAGMA journal_mode") == [("wal",)]  # readers never block the writer


def test_empty_file_is_a_new_ledger(tmp_path):
    path = tmp_path / LEDGER_NAME
    path.write_bytes(b"")
    with Ledger(path) as led:
        assert led.hits() == []


def test_truncated_ledger_is_refused_not_started_afresh(tmp_path):
    """Only an empty file counts as new: a damaged ledger (here one byte) must not be silently
    replaced by an empty one, which would forget every published HIT."""
    path = tmp_path / LEDGER_NAME
    path.write_bytes(b"S")
    with pytest.raises(LedgerError, match=r"ledger\.sqlite: not a publishing ledger"):
        Ledger(path)


def test_non_ledger_files_are_refused_with_the_reason(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LedgerError, match=r"garbage\.sqlite: not a valid ledger database"):
        Ledger(garbage)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE hits (x)")
        db.execute("CREATE TABLE meta (key, value)")
    with pytest.raises(LedgerError, match=r"other\.sqlite: not a publishing ledger \(missing "
                                          r"tables \['actions', 'assignments', 'hit_types'\]\)"):
        Ledger(other)


@pytest.mark.parametrize("version", [None, "0", "2"])
def test_other_schema_versions_are_refused(tmp_path, version):
    path = tmp_path / LEDGER_NAME
    Ledger(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE key='schema'")
        if version is not None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (version,))
    with pytest.raises(LedgerError, match=r"ledger\.sqlite: ledger schema .* is not 1"):
        Ledger(path)


def test_transaction_commits_on_success_and_rolls_back_on_error(tmp_path):
    path = tmp_path / LEDGER_NAME
    with Ledger(path) as led:
        with led.transaction():
            _pending(led, "sandbox", "kept")
        with pytest.raises(KeyError), led.transaction():
            _pending(led, "sandbox", "dropped")
            raise KeyError("boom")
        with pytest.raises(KeyboardInterrupt), led.transaction():  # even on Ctrl-C
            _pending(led, "sandbox", "dropped too")
            raise KeyboardInterrupt
        assert [h.hit_key for h in led.hits()] == ["kept"]
    # What another process sees: committed, nothing left open.
    assert _rows(path, "SELECT hit_key FROM hits") == [("kept",)]
    with Ledger(path) as led, led.transaction():
        _pending(led, "sandbox", "after")  # the write lock was released


def test_meta_default_keeps_the_first_value(ledger):
    assert ledger.get_meta("batch_id") is None
    assert ledger.set_meta_default("batch_id", "first") == "first"
    assert ledger.set_meta_default("batch_id", "second") == "first"
    assert ledger.get_meta("batch_id") == "first"


def test_hit_types_are_remembered_per_endpoint_and_signature(ledger):
    assert ledger.hit_type("sandbox", "sig") is None
    ledger.record_hit_type("sandbox", "sig", "HT1")
    assert ledger.hit_type("sandbox", "sig") == "HT1"
    assert ledger.hit_type("production", "sig") is None
    assert ledger.hit_type("sandbox", "other") is None
    ledger.record_hit_type("sandbox", "sig", "HT2")
    assert ledger.hit_type("sandbox", "sig") == "HT2"


def test_hit_lifecycle_is_recorded(tmp_path):
    path = tmp_path / LEDGER_NAME
    with Ledger(path) as led:
        _pending(led, "sandbox", "k1", cents=45, n=3)
        rec = led.hit("sandbox", "k1")
        assert rec == HitRecord("sandbox", "k1", "b1", request_token("b1", "sandbox", "k1"),
                                "pending", None, None, "0.10", 3, 45, False)
        led.mark_created("sandbox", "k1", hit_id="H1", hit_type_id="HT1")
        rec = led.hit("sandbox", "k1")
        assert (rec.state, rec.hit_id, rec.hit_type_id, rec.completed) == (
            "created", "H1", "HT1", False)
        assert rec.token == request_token("b1", "sandbox", "k1")  # kept for retries
        led.mark_completed("sandbox", "H1")
        assert led.hit("sandbox", "k1").completed is True
    for created, updated in _rows(path, "SELECT created_at, updated_at FROM hits"):
        for stamp in (created, updated):
            when = datetime.fromisoformat(stamp)
            assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
            assert abs((datetime.now(UTC) - when).total_seconds()) < 24 * 3600
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stamp)


def test_a_hit_key_is_written_down_once_per_endpoint(ledger):
    _pending(ledger, "sandbox", "k1")
    with pytest.raises(sqlite3.IntegrityError):
        _pending(ledger, "sandbox", "k1")
    _pending(ledger, "production", "k1")  # another endpoint is another HIT


def test_hits_are_kept_apart_by_endpoint_in_insertion_order(ledger):
    for key in ("k3", "k1", "k2"):
        _pending(ledger, "sandbox", key)
    _pending(ledger, "local:http://127.0.0.1:1", "k1")
    assert [h.hit_key for h in ledger.hits("sandbox")] == ["k3", "k1", "k2"]
    assert [(h.endpoint, h.hit_key) for h in ledger.hits()] == [
        ("sandbox", "k3"), ("sandbox", "k1"), ("sandbox", "k2"),
        ("local:http://127.0.0.1:1", "k1")]
    assert ledger.hit("production", "k1") is None
    assert ledger.hit("sandbox", "missing") is None
    ledger.mark_created("sandbox", "k1", hit_id="H1", hit_type_id=None)
    assert ledger.hit("local:http://127.0.0.1:1", "k1").state == "pending"
    ledger.mark_completed("local:http://127.0.0.1:1", "H1")  # another endpoint's HIT id
    assert ledger.hit("sandbox", "k1").completed is False
    ledger.mark_completed("sandbox", "H1")
    assert ledger.hit("sandbox", "k1").completed is True
    assert ledger.hit("sandbox", "k3").completed is False


def test_spent_counts_hits_and_bonuses_of_one_endpoint(ledger):
    assert ledger.spent_cents("sandbox") == 0
    _pending(ledger, "sandbox", "k1", cents=30)  # pending counts: the call may have succeeded
    _pending(ledger, "sandbox", "k2", cents=45)
    ledger.mark_created("sandbox", "k2", hit_id="H2", hit_type_id="HT")
    _pending(ledger, "production", "k1", cents=1000)
    assert ledger.spent_cents("sandbox") == 75
    ledger.mark_action("sandbox", "A1", "bonus", "pending", worker_id="W1", amount="0.50",
                       cost_cents=60)
    ledger.mark_action("sandbox", "A1", "approve", "done", cost_cents=7)  # approvals are not
    ledger.mark_action("sandbox", "A2", "reject", "done", cost_cents=9)  # extra spending
    ledger.mark_action("production", "A3", "bonus", "done", cost_cents=500)
    assert ledger.spent_cents("sandbox") == 135
    assert ledger.spent_cents("production") == 1500
    assert ledger.spent_cents("local:x") == 0


def test_assignments_seen_per_endpoint_and_status_updates_recorded(tmp_path):
    path = tmp_path / LEDGER_NAME
    with Ledger(path) as led:
        assert led.seen_assignments("sandbox") == {}
        led.record_assignment("sandbox", "A1", hit_id="H1", hit_key="k1", worker_id="W1",
                              status="Submitted")
        led.record_assignment("sandbox", "A2", hit_id="H1", hit_key="k1", worker_id="W2",
                              status="Submitted")
        led.record_assignment("production", "A9", hit_id="H9", hit_key="k9", worker_id="W9",
                              status="Submitted")
        assert led.seen_assignments("sandbox") == {"A1": "H1", "A2": "H1"}
        led.record_assignment("sandbox", "A1", hit_id="H1", hit_key="k1", worker_id="W1",
                              status="Approved")
        assert led.seen_assignments("sandbox") == {"A1": "H1", "A2": "H1"}
    rows = _rows(path, "SELECT endpoint, assignment_id, hit_id, hit_key, worker_id, status "
                       "FROM assignments ORDER BY endpoint, assignment_id")
    assert rows == [("production", "A9", "H9", "k9", "W9", "Submitted"),
                    ("sandbox", "A1", "H1", "k1", "W1", "Approved"),
                    ("sandbox", "A2", "H1", "k1", "W2", "Submitted")]


def test_review_actions_move_from_pending_to_done(tmp_path):
    path = tmp_path / LEDGER_NAME
    with Ledger(path) as led:
        assert led.action_state("sandbox", "A1", "approve") is None
        assert led.decided("sandbox", "A1") is None
        led.mark_action("sandbox", "A1", "bonus", "pending", worker_id="W1", amount="0.25",
                        cost_cents=25, feedback="thanks", token="T1")
        assert led.decided("sandbox", "A1") is None  # a bonus is not a decision
        led.mark_action("sandbox", "A1", "approve", "pending")
        assert led.action_state("sandbox", "A1", "approve") == "pending"
        assert led.decided("sandbox", "A1") == "approve"
        assert led.decided("production", "A1") is None
        led.mark_action("sandbox", "A1", "approve", "done")
        led.mark_action("sandbox", "A1", "bonus", "done")
        assert led.action_state("sandbox", "A1", "approve") == "done"
        assert led.action_state("sandbox", "A1", "bonus") == "done"
        assert led.action_state("sandbox", "A1", "reject") is None
        assert led.action_state("production", "A1", "approve") is None
        led.mark_action("sandbox", "A2", "reject", "pending", feedback="wrong gold answer")
        assert led.decided("sandbox", "A2") == "reject"
        assert led.spent_cents("sandbox") == 25  # the bonus once, not once per state change
    rows = _rows(path, "SELECT assignment_id, action, state, worker_id, amount, cost_cents, "
                       "feedback, token FROM actions ORDER BY assignment_id, action")
    assert rows == [("A1", "approve", "done", None, None, 0, None, None),
                    ("A1", "bonus", "done", "W1", "0.25", 25, "thanks", "T1"),
                    ("A2", "reject", "pending", None, None, 0, "wrong gold answer", None)]


def test_closed_ledger_refuses_further_use(tmp_path):
    led = Ledger(tmp_path / LEDGER_NAME)
    with led:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        led.hits()


def test_a_ledger_from_before_extensions_opens_and_gains_the_table(tmp_path):
    from tasks.ledger import _SCHEMA, SCHEMA_VERSION

    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:  # what schema 1 wrote before the extensions table
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    with Ledger(path) as ledger:
        assert ledger.extensions("local:x", "k") == []
        ledger.mark_extension_pending("local:x", "k", round_no=1, token="t", n_added=2,
                                      cost_cents=24)
        assert ledger.spent_cents("local:x") == 24
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "extensions" in tables
