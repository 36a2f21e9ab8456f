"""More assignments for HITs whose answers split: ``CreateAdditionalAssignmentsForHIT``,
idempotently and within budget.

A verdict that the crowd left ``undecided`` (the votes split, or the posterior is below the
report's threshold) needs more answers, not a guess. This asks the service for ``n`` more
assignments on each chosen HIT, as a study with adaptive redundancy does (Ipeirotis et al.,
"Repeated labeling using multiple noisy labelers", 2014: extra labels where the label
distribution is most uncertain).

Safety, as for publishing (:mod:`tasks.publish`): every extension is written to the ledger
(``extensions`` table) as ``pending`` with its deterministic ``UniqueRequestToken`` before the
call and ``done`` after it, so a run killed at any point and run again never adds assignments
twice (the service refuses a repeated token). A HIT is extended only once all its assignments
so far have been collected (``sparse-probe tasks collect``); otherwise a second run before
collecting would add another round for the same split. MTurk's rule that a HIT created with
fewer than 10 assignments cannot reach 10 caps ``n`` (a HIT at 9 is skipped, with the reason).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tasks.client import Endpoint
from tasks.cost import LARGE_HIT, estimate_cost, parse_reward
from tasks.ledger import LEDGER_NAME, Ledger, request_token
from tasks.publish import BudgetExceededError, PublishError, call_with_retry

__all__ = ["EXTENSION_LIMIT", "ExtendResult", "extend_hits", "extension_size"]

log = logging.getLogger(__name__)

#: MTurk: a HIT created with fewer than this many assignments cannot be extended to as many.
EXTENSION_LIMIT = LARGE_HIT


def extension_size(created_with: int, current: int, wanted: int) -> int:
    """How many of ``wanted`` additional assignments MTurk allows on a HIT created with
    ``created_with`` assignments that now has ``current``: all of them, unless that takes a
    HIT created with fewer than :data:`EXTENSION_LIMIT` to the limit or beyond."""
    if wanted < 1:
        raise ValueError(f"additional assignments must be >= 1, got {wanted}")
    if created_with >= EXTENSION_LIMIT:
        return wanted
    return max(0, min(wanted, EXTENSION_LIMIT - 1 - current))


@dataclass
class ExtendResult:
    """What one extension run did (HIT keys)."""

    endpoint: str
    extended: dict[str, int] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    new_cost: Decimal = Decimal("0")
    spent: Decimal = Decimal("0")

    def summary(self) -> str:
        """One line for the console."""
        added = sum(self.extended.values()) + sum(self.recovered.values())
        return (f"{self.endpoint}: {len(self.extended) + len(self.recovered)} HITs extended by "
                f"{added} assignments in all ({len(self.recovered)} recovered after an "
                f"interrupted run), {len(self.skipped)} skipped; committed ${self.spent:.2f}")


def _max_assignments(client: Any, hit_id: str, sleep: Callable[[float], None]) -> int:
    return int(call_with_retry(client.get_hit, sleep=sleep, HITId=hit_id)["HIT"]["MaxAssignments"])


def extend_hits(tasks_dir: str | Path, client: Any, endpoint: Endpoint,
                hit_keys: Sequence[str], n_additional: int, *,
                budget: Decimal | None = None, confirm_production: bool = False,
                max_rounds: int | None = None,
                sleep: Callable[[float], None] = time.sleep) -> ExtendResult:
    """Add ``n_additional`` assignments to each HIT ``hit_keys`` of ``tasks_dir``.

    Parameters
    ----------
    tasks_dir : path
        A published tasks directory (its ``ledger.sqlite`` knows the HIT ids).
    client : botocore client
        ``mturk`` client for ``endpoint``.
    endpoint : Endpoint
    hit_keys : sequence of str
        HITs to extend (e.g. the report's ``undecided`` rows of ``features.csv``).
    n_additional : int
        Assignments to add per HIT (capped per HIT by MTurk's 10-assignment rule).
    budget : Decimal, optional
        Cap in dollars on everything committed at ``endpoint`` (HITs, extensions, bonuses).
    confirm_production : bool
        Must be true to spend real money at ``production``.
    max_rounds : int, optional
        Extend a HIT at most this many times in all (earlier runs included).

    Returns
    -------
    ExtendResult
        ``extended``/``recovered``: HIT key -> assignments added; ``skipped``: HIT key ->
        why (not published, answers not collected yet, at MTurk's limit, ``max_rounds``
        reached).

    Raises
    ------
    PublishError
        No ledger, an unknown HIT key, production without confirmation.
    BudgetExceededError
        The extensions would take the committed cost over ``budget``; nothing is asked for.
    """
    if endpoint.name == "production" and not confirm_production:
        raise PublishError("endpoint production spends real money: pass --yes to confirm")
    if n_additional < 1:
        raise PublishError(f"additional assignments must be >= 1, got {n_additional}")
    path = Path(tasks_dir) / LEDGER_NAME
    if not path.is_file():
        raise PublishError(f"{path}: no ledger (publish the tasks first)")
    result = ExtendResult(endpoint.key)
    with Ledger(path) as ledger:
        batch_id = ledger.get_meta("batch_id") or ""
        plan: list[tuple[str, str, int, int, str, Decimal, bool]] = []
        for key in dict.fromkeys(hit_keys):
            rec = ledger.hit(endpoint.key, key)
            if rec is None or rec.state != "created" or rec.hit_id is None:
                if rec is None and not any(h.hit_key == key for h in ledger.hits()):
                    raise PublishError(f"{path}: no HIT {key!r} in the ledger")
                result.skipped[key] = f"not published at {endpoint.key}"
                continue
            rounds = ledger.extensions(endpoint.key, key)
            pending = [r for r in rounds if r[3] == "pending"]
            if pending:  # an interrupted run: retry with the same token
                rnd, token, n, _ = pending[0]
                plan.append((key, rec.hit_id, rnd, n, token, Decimal(0), True))
                continue
            if max_rounds is not None and len(rounds) >= max_rounds:
                result.skipped[key] = f"extended {len(rounds)} times already (max_rounds)"
                continue
            got = ledger.n_collected(endpoint.key, rec.hit_id)
            if got < rec.max_assignments:
                result.skipped[key] = (f"{got} of its {rec.max_assignments} assignments "
                                       "collected; collect the rest first")
                continue
            created_with = rec.max_assignments - sum(r[2] for r in rounds)
            n = extension_size(created_with, rec.max_assignments, n_additional)
            if n == 0:
                result.skipped[key] = (f"at {rec.max_assignments} assignments: MTurk does not "
                                       f"extend a HIT created with fewer than {EXTENSION_LIMIT} "
                                       f"to {EXTENSION_LIMIT} or more")
                continue
            total = rec.max_assignments + n
            cost = estimate_cost(1, total, parse_reward(rec.reward)).total / total * n
            rnd = len(rounds) + 1
            plan.append((key, rec.hit_id, rnd, n,
                         request_token(batch_id, endpoint.name, key, f"extend-{rnd}"), cost,
                         False))
        new_cost = sum((p[5] for p in plan), Decimal("0"))
        spent = Decimal(ledger.spent_cents(endpoint.key)) / 100
        if budget is not None and spent + new_cost > budget:
            raise BudgetExceededError(
                f"budget ${budget:.2f} exceeded: {sum(p[3] for p in plan if not p[6])} more "
                f"assignments cost ${new_cost:.2f} and ${spent:.2f} is already committed; "
                "nothing was extended")
        for key, hit_id, rnd, n, token, cost, resumed in plan:
            if not resumed:
                ledger.mark_extension_pending(endpoint.key, key, round_no=rnd, token=token,
                                              n_added=n, cost_cents=int(cost * 100))
            expected = ledger.hit(endpoint.key, key).max_assignments + n
            try:
                call_with_retry(client.create_additional_assignments_for_hit, sleep=sleep,
                                HITId=hit_id, NumberOfAdditionalAssignments=n,
                                UniqueRequestToken=token)
            except ClientError:
                # MTurk answers a repeated token with an error whose form it does not
                # document: the HIT itself says whether this extension was already made
                if _max_assignments(client, hit_id, sleep) != expected:
                    # refused: nothing was added, so nothing stays committed
                    ledger.drop_extension(endpoint.key, key, rnd)
                    raise
                log.info("%s: extension %d already made", key, rnd)
            ledger.mark_extension_done(endpoint.key, key, rnd)
            (result.recovered if resumed else result.extended)[key] = n
        result.new_cost = new_cost
        result.spent = Decimal(ledger.spent_cents(endpoint.key)) / 100
    log.info("%s", result.summary())
    return result
