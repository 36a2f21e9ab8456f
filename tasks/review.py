"""Approve or reject collected assignments by rules, optionally pay bonuses; all via the ledger.

Rules (each optional):

- **gold accuracy**: for every worker, the share of gold questions (manifest ``gold``,
  ``{field: expected}`` on gold HITs) answered as expected; a worker below
  ``min_gold_accuracy`` has all of their assignments rejected.
- **attention check**: the manifest row's ``attention`` ``{field, expected}``; a wrong answer
  rejects that assignment (when ``require_attention``).
- **time**: an assignment submitted in under ``min_seconds`` is rejected.

Rejections always carry feedback text (MTurk requires it). Every action is written to the
ledger before (``pending``) and after (``done``) the call, so a re-run never acts twice; bonuses
use a deterministic ``UniqueRequestToken``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError
from tqdm import tqdm

from tasks.answers import read_answers, write_answers
from tasks.client import Endpoint
from tasks.cost import fee_rate, parse_reward
from tasks.ledger import LEDGER_NAME, Ledger, request_token
from tasks.publish import PublishError, call_with_retry, load_manifest

__all__ = ["Decision", "ReviewResult", "ReviewRules", "decide", "review_assignments"]

log = logging.getLogger(__name__)


@dataclass
class ReviewRules:
    """Thresholds of :func:`decide` (``None`` disables a rule)."""

    min_gold_accuracy: float | None = 0.7
    require_attention: bool = False
    min_seconds: float | None = None
    bonus: str | None = None
    bonus_min_gold_accuracy: float = 0.9
    bonus_reason: str = "Thank you for careful work on our feature-description HITs."


@dataclass
class Decision:
    """The verdict on one assignment."""

    assignment_id: str
    hit_id: str | None
    hit_key: str | None
    worker_id: str | None
    action: str  # "approve" | "reject"
    reasons: list[str] = field(default_factory=list)
    bonus: str | None = None

    @property
    def feedback(self) -> str:
        """Requester feedback sent with the decision (required for rejections)."""
        if self.action == "approve":
            return "Thank you!"
        return "Rejected: " + "; ".join(self.reasons) + "."


@dataclass
class ReviewResult:
    """Decisions and what was done with them."""

    decisions: list[Decision]
    approved: int = 0
    rejected: int = 0
    bonuses: int = 0
    skipped: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        """One line for the console."""
        verb = "would act" if self.dry_run else "acted"
        n_app = sum(d.action == "approve" for d in self.decisions)
        n_rej = len(self.decisions) - n_app
        return (f"{len(self.decisions)} assignments reviewed ({n_app} approve, {n_rej} reject); "
                f"{verb}: {self.approved} approved, {self.rejected} rejected, "
                f"{self.bonuses} bonuses, {self.skipped} already done")


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def decide(answers: pd.DataFrame, manifest: list[dict[str, Any]], rules: ReviewRules
           ) -> list[Decision]:
    """Apply ``rules`` to every assignment of ``answers`` (long table, one row per question).

    Returns one :class:`Decision` per assignment, in assignment-id order.
    """
    by_key = {r["hit_key"]: r for r in manifest}
    if answers.empty:
        return []
    # Worker gold accuracy over all gold questions they answered.
    gold_hits = {k: r["gold"] for k, r in by_key.items() if r.get("is_gold") and r.get("gold")}
    correct: dict[str, list[bool]] = {}
    for row in answers.itertuples(index=False):
        gold = gold_hits.get(row.hit_key)
        if gold and row.question in gold:
            correct.setdefault(row.worker_id, []).append(
                _norm(row.answer) == _norm(gold[row.question]))
    gold_acc = {w: sum(v) / len(v) for w, v in correct.items() if v}

    decisions: list[Decision] = []
    for aid, grp in answers.groupby("assignment_id", sort=True):
        first = grp.iloc[0]
        key, worker = first["hit_key"], first["worker_id"]
        reasons: list[str] = []
        acc = gold_acc.get(worker)
        if rules.min_gold_accuracy is not None and acc is not None \
                and acc < rules.min_gold_accuracy:
            reasons.append(f"accuracy on questions with known answers {acc:.0%} is below "
                           f"{rules.min_gold_accuracy:.0%}")
        att = (by_key.get(key) or {}).get("attention")
        if rules.require_attention and att and att.get("field"):
            given = grp.loc[grp["question"] == att["field"], "answer"]
            if given.empty or _norm(given.iloc[0]) != _norm(att.get("expected")):
                reasons.append("the attention-check question was not answered as instructed")
        ws = first["work_seconds"]
        if rules.min_seconds is not None and pd.notna(ws) and float(ws) < rules.min_seconds:
            reasons.append(f"submitted after {float(ws):.0f} s, faster than the "
                           f"{rules.min_seconds:.0f} s the task needs")
        action = "reject" if reasons else "approve"
        bonus = None
        if action == "approve" and rules.bonus and acc is not None \
                and acc >= rules.bonus_min_gold_accuracy:
            bonus = f"{parse_reward(rules.bonus):.2f}"
        decisions.append(Decision(str(aid), first["hit_id"], key, worker, action, reasons, bonus))
    return decisions


def _act(ledger: Ledger, endpoint: Endpoint, aid: str, action: str, call: Callable[[], Any],
         **record: Any) -> bool:
    """Run one side effect under the ledger's pending/done protocol; False if already done."""
    state = ledger.action_state(endpoint.key, aid, action)
    if state == "done":
        return False
    if state is None:
        ledger.mark_action(endpoint.key, aid, action, "pending", **record)
    try:
        call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if state != "pending" or code != "RequestError":
            raise
        # A retried call the service already applied before a crash.
        log.warning("%s %s: %s (treated as already done)", action, aid, exc)
    ledger.mark_action(endpoint.key, aid, action, "done", **record)
    return True


def review_assignments(
    tasks_dir: str | os.PathLike[str],
    answers_dir: str | os.PathLike[str],
    client: Any,
    endpoint: Endpoint,
    rules: ReviewRules,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> ReviewResult:
    """Decide on every submitted assignment published at ``endpoint`` and act on it.

    Only assignments of HITs in the ledger for ``endpoint`` and with status ``Submitted`` (or
    missing) in the answers table are considered. With ``dry_run`` nothing is sent or written.
    After acting, the ``status`` column of ``answers.parquet`` is updated (atomically).
    """
    root = Path(tasks_dir)
    manifest = load_manifest(root)
    ledger_path = root / LEDGER_NAME
    if not ledger_path.is_file():
        raise PublishError(f"{ledger_path}: no ledger (publish and collect first)")
    answers = read_answers(answers_dir)
    if answers.empty:
        raise PublishError(f"{Path(answers_dir) / 'answers.parquet'}: no answers (run collect)")
    with Ledger(ledger_path) as ledger:
        hit_ids = {h.hit_id for h in ledger.hits(endpoint.key) if h.hit_id}
        mine = answers[answers["hit_id"].isin(hit_ids)]
        decisions = decide(mine, manifest, rules)
        result = ReviewResult(decisions, dry_run=dry_run)
        if dry_run:
            return result
        statuses = mine.groupby("assignment_id")["status"].first().to_dict()
        new_status: dict[str, str] = {}
        for d in tqdm(decisions, desc="review", unit="assignment", disable=None):
            if statuses.get(d.assignment_id) not in (None, "Submitted") and \
                    ledger.decided(endpoint.key, d.assignment_id) is None:
                result.skipped += 1
                continue
            prior = ledger.decided(endpoint.key, d.assignment_id)
            action = prior or d.action
            if action == "approve":
                done = _act(ledger, endpoint, d.assignment_id, "approve",
                            lambda d=d: call_with_retry(
                                client.approve_assignment, sleep=sleep,
                                AssignmentId=d.assignment_id, RequesterFeedback=d.feedback),
                            worker_id=d.worker_id, feedback=d.feedback)
                result.approved += done
                new_status[d.assignment_id] = "Approved"
            else:
                done = _act(ledger, endpoint, d.assignment_id, "reject",
                            lambda d=d: call_with_retry(
                                client.reject_assignment, sleep=sleep,
                                AssignmentId=d.assignment_id, RequesterFeedback=d.feedback),
                            worker_id=d.worker_id, feedback=d.feedback)
                result.rejected += done
                new_status[d.assignment_id] = "Rejected"
            result.skipped += not done
            if d.bonus and action == "approve":
                amount = Decimal(d.bonus)
                fee = (amount * fee_rate(1)).quantize(Decimal("0.01"))
                token = request_token("bonus", endpoint.key, d.assignment_id)
                result.bonuses += _act(
                    ledger, endpoint, d.assignment_id, "bonus",
                    lambda d=d, token=token: call_with_retry(
                        client.send_bonus, sleep=sleep, WorkerId=d.worker_id,
                        BonusAmount=d.bonus, AssignmentId=d.assignment_id,
                        Reason=rules.bonus_reason, UniqueRequestToken=token),
                    worker_id=d.worker_id, amount=d.bonus,
                    cost_cents=int((amount + fee) * 100), token=token)
    if new_status:
        updated = answers.copy()
        mask = updated["assignment_id"].isin(new_status)
        updated.loc[mask, "status"] = updated.loc[mask, "assignment_id"].map(new_status)
        write_answers(updated, answers_dir)
    log.info("%s", result.summary())
    return result
