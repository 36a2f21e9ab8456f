"""Approve or reject collected assignments by rules, optionally pay bonuses; all via the ledger.

The measurements are the one definition of worker quality in :mod:`sparse_probe.quality`
(the report excludes workers by the same numbers). Rules (each optional):

- **gold accuracy**: a worker's share of correctly answered gold HITs
  (:func:`sparse_probe.quality.worker_quality`); a worker with at least ``min_gold_answers``
  graded gold HITs and ``gold_accuracy < min_gold_accuracy`` has all of their assignments
  rejected (the same test as :func:`sparse_probe.quality.gold_fails`).
- **attention check**: the manifest row's ``attention`` ``{field, expected}``; a wrong or
  missing answer rejects that assignment (when ``require_attention``, off by default) once the
  worker failed more than ``attention_tolerance`` checks (the same test as the report's quality
  control, :func:`sparse_probe.quality.attention_fails`). Pay is per assignment, so the
  default tolerance here is 0: asking for ``require_attention`` rejects exactly the
  assignments that did not follow the instruction; the report only *excludes* a worker beyond
  its own tolerance (default 1), so one slip never drops a perfect gold record from the
  audit.
- **time**: an assignment submitted in under ``min_seconds`` is rejected.

An assignment without a worker id (an answers table from elsewhere) is judged as a worker of
its own: by its own gold answers and attention checks, never pooled with other anonymous
assignments nor approved unchecked; it gets no bonus (there is no one to pay).

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

from sparse_probe.answers import read_answers, write_answers
from sparse_probe.quality import (
    QualityRules,
    assignment_checks,
    attention_fails,
    gold_fails,
    name_anonymous,
    worker_quality,
)
from sparse_probe.questions import QuestionSchema, schema_for_tasks
from tasks.client import Endpoint
from tasks.cost import bonus_fee, parse_reward
from tasks.ledger import LEDGER_NAME, Ledger, request_token
from tasks.publish import PublishError, call_with_retry, load_manifest

__all__ = ["Decision", "ReviewResult", "ReviewRules", "decide", "review_assignments"]

log = logging.getLogger(__name__)


@dataclass
class ReviewRules:
    """Thresholds of :func:`decide` (``None`` disables a rule)."""

    # the report's exclusion threshold: nobody is refused pay for gold work the report keeps
    min_gold_accuracy: float | None = QualityRules.min_gold_accuracy
    min_gold_answers: int = 1
    require_attention: bool = False
    attention_tolerance: int = 0
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
    gold_accuracy: float | None = None

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


def decide(answers: pd.DataFrame, manifest: list[dict[str, Any]], rules: ReviewRules,
           schema: QuestionSchema | None = None) -> list[Decision]:
    """Apply ``rules`` to every assignment of ``answers`` (long table, one row per question).

    ``schema`` (default built-in) says which fields a gold answer covers. Returns one
    :class:`Decision` per assignment, in assignment-id order, carrying the worker's gold
    accuracy (``None`` without graded gold HITs).
    """
    if answers.empty:
        return []
    # An assignment without a worker id cannot be tied to anyone's record: it is judged as a
    # worker of its own (its own gold answers and attention checks), never pooled with other
    # anonymous assignments nor waved through.
    given = answers.drop_duplicates("assignment_id").set_index("assignment_id")["worker_id"]
    answers = name_anonymous(answers)
    timing = QualityRules(min_seconds=rules.min_seconds or 0.0, min_time_fraction=0.0)
    checks = assignment_checks(answers, manifest, timing, schema)
    workers = worker_quality(answers, manifest, checks=checks).set_index("worker_id",
                                                                         drop=False)
    failed = gold_fails(workers, rules.min_gold_accuracy, rules.min_gold_answers)
    # every failed check counts (rate 1.0), beyond the tolerance
    inattentive, _ = attention_fails(workers, 1.0, rules.attention_tolerance)
    acc = workers["gold_accuracy"]
    first = answers.drop_duplicates("assignment_id").set_index("assignment_id")["hit_id"]
    checks = checks.assign(hit_id=checks["assignment_id"].map(first),
                           gold_accuracy=checks["worker_id"].map(acc),
                           gold_failed=checks["worker_id"].map(failed),
                           inattentive=checks["worker_id"].map(inattentive))
    decisions: list[Decision] = []
    for c in checks.sort_values("assignment_id").itertuples(index=False):
        reasons: list[str] = []
        a = None if pd.isna(c.gold_accuracy) else float(c.gold_accuracy)
        if c.gold_failed:
            reasons.append(f"accuracy on questions with known answers {a:.0%} is below "
                           f"{rules.min_gold_accuracy:.0%}")
        if rules.require_attention and pd.notna(c.attention_pass) and not c.attention_pass \
                and c.inattentive:
            reasons.append("the attention-check question was not answered as instructed")
        if rules.min_seconds is not None and c.fast:
            reasons.append(f"submitted after {float(c.work_seconds):.0f} s, faster than the "
                           f"{rules.min_seconds:.0f} s the task needs")
        action = "reject" if reasons else "approve"
        bonus = None
        worker = given.get(c.assignment_id)
        known = not (pd.isna(worker) or str(worker).strip() == "")
        if action == "approve" and rules.bonus and a is not None and known \
                and a >= rules.bonus_min_gold_accuracy:  # a bonus needs someone to pay
            bonus = f"{parse_reward(rules.bonus):.2f}"
        decisions.append(Decision(str(c.assignment_id), c.hit_id, c.hit_key,
                                  None if pd.isna(worker) else worker, action, reasons, bonus,
                                  a))
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
        decisions = decide(mine, manifest, rules, schema_for_tasks(root))
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
                fee = bonus_fee(amount)
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
        write_answers(updated, answers_dir, tasks_dir=root)
    log.info("%s", result.summary())
    return result
