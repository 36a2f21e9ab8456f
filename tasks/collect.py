"""Collect submitted assignments of every published HIT into ``answers/answers.parquet``.

Incremental: the ledger remembers which assignments were collected and which HITs have all
their assignments, so a re-run only lists HITs that may have new work and only adds rows for
assignments it has not stored yet. The parquet file is rewritten atomically; rows are unique per
(assignment, question).

An existing answers table is merged into, and the summary says how many of its rows were kept.
Rows of HITs that the ledger does not know (another batch, another project, a stray copy) are
refused, unless ``merge_foreign=True`` (``--merge-foreign``) asks to keep them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sparse_probe.answers import (
    answers_frame,
    assignment_rows,
    merge_answers,
    read_answers,
    write_answers,
)
from tasks.client import Endpoint
from tasks.ledger import LEDGER_NAME, Ledger
from tasks.publish import PublishError, call_with_retry

__all__ = ["CollectResult", "collect_answers"]

log = logging.getLogger(__name__)
_STATUSES = ["Submitted", "Approved", "Rejected"]


@dataclass
class CollectResult:
    """What one collection run did."""

    hits_polled: int
    new_assignments: int
    new_rows: int
    total_rows: int
    path: Path
    existing_rows: int = 0
    foreign_rows: int = 0

    def summary(self) -> str:
        """One line for the console."""
        merged = ""
        if self.existing_rows:
            merged = f" (merged with {self.existing_rows} rows already there"
            if self.foreign_rows:
                merged += f", {self.foreign_rows} of them of HITs not in the ledger"
            merged += ")"
        return (f"polled {self.hits_polled} HITs: {self.new_assignments} new assignments, "
                f"{self.new_rows} new rows, {self.total_rows} rows in {self.path}{merged}")


def _list_assignments(client: Any, hit_id: str, page_size: int,
                      sleep: Callable[[float], None]) -> list[dict[str, Any]]:
    """Every assignment of one HIT through boto3's paginator (the whole listing is retried)."""

    def list_assignments_for_hit() -> list[dict[str, Any]]:
        pages = client.get_paginator("list_assignments_for_hit").paginate(
            HITId=hit_id, AssignmentStatuses=_STATUSES,
            PaginationConfig={"PageSize": page_size})
        return [a for page in pages for a in page.get("Assignments", [])]

    return call_with_retry(list_assignments_for_hit, sleep=sleep)


def collect_answers(
    tasks_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    client: Any,
    endpoint: Endpoint,
    *,
    page_size: int = 100,
    sleep: Callable[[float], None] = time.sleep,
    merge_foreign: bool = False,
) -> CollectResult:
    """Fetch new assignments of the HITs the ledger published at ``endpoint``.

    Parameters
    ----------
    tasks_dir : path-like
        Directory holding ``ledger.sqlite`` (written by :func:`tasks.publish.publish_batch`).
    out_dir : path-like
        ``answers/`` directory; ``answers.parquet`` is created or extended there.
    client : botocore client
        ``mturk`` client for ``endpoint``.
    page_size : int
        ``MaxResults`` per ``ListAssignmentsForHIT`` page (1-100).
    merge_foreign : bool
        Keep rows of the existing ``answers.parquet`` whose HIT the ledger does not know
        (refused by default).

    Raises
    ------
    PublishError
        No ledger, nothing published at ``endpoint``, or the existing answers hold rows of
        HITs not in the ledger (without ``merge_foreign``).
    """
    ledger_path = Path(tasks_dir) / LEDGER_NAME
    if not ledger_path.is_file():
        raise PublishError(f"{ledger_path}: no ledger (publish the tasks first)")
    existing = read_answers(out_dir)
    present = set(existing["assignment_id"])
    with Ledger(ledger_path) as ledger:
        hits = [h for h in ledger.hits(endpoint.key) if h.state == "created"]
        if not hits:
            raise PublishError(f"{ledger_path}: nothing published at {endpoint.key}")
        known = {h.hit_id for h in ledger.hits() if h.hit_id}
        foreign = existing[~existing["hit_id"].isin(known)]
        if len(foreign) and not merge_foreign:
            ids = sorted(foreign["hit_id"].fillna("<none>").unique())
            raise PublishError(
                f"{Path(out_dir) / 'answers.parquet'}: {len(foreign)} rows of {len(ids)} HITs "
                f"not in the ledger {ledger_path} (e.g. {', '.join(map(str, ids[:3]))}); "
                "collect into another --out directory, or pass --merge-foreign to keep them")
        seen_all = ledger.seen_assignments(endpoint.key)
        # An assignment counts as collected only if the parquet still holds it.
        seen = {a: h for a, h in seen_all.items() if a in present}
        per_hit: dict[str, int] = {}
        for hid in seen.values():
            per_hit[hid] = per_hit.get(hid, 0) + 1
        to_poll = [h for h in hits
                   if not (h.completed and per_hit.get(h.hit_id or "", 0) >= h.max_assignments)]
        new_rows: list[dict[str, Any]] = []
        new_assign: list[tuple[str, str, str, str | None, str | None]] = []
        status_updates: dict[str, str] = {}
        completed: list[str] = []
        for h in tqdm(to_poll, desc="collect", unit="HIT", disable=None):
            assert h.hit_id is not None
            listed = _list_assignments(client, h.hit_id, page_size, sleep)
            for a in listed:
                aid = a["AssignmentId"]
                if aid in seen:
                    status_updates[aid] = a.get("AssignmentStatus", "")
                    continue
                new_rows.extend(assignment_rows(a, hit_key=h.hit_key, source=endpoint.name))
                new_assign.append((aid, h.hit_id, h.hit_key, a.get("WorkerId"),
                                   a.get("AssignmentStatus")))
            if len(listed) >= h.max_assignments:
                completed.append(h.hit_id)
        merged = existing
        if status_updates:
            mask = merged["assignment_id"].isin(status_updates)
            merged.loc[mask, "status"] = merged.loc[mask, "assignment_id"].map(status_updates)
        merged = merge_answers(merged, answers_frame(new_rows))
        path = write_answers(merged, out_dir, tasks_dir=tasks_dir)
        # Written to the ledger only after the parquet holds the rows (a crash re-fetches).
        with ledger.transaction():
            for aid, hid, key, worker, status in new_assign:
                ledger.record_assignment(endpoint.key, aid, hit_id=hid, hit_key=key,
                                         worker_id=worker, status=status)
            for hid in completed:
                ledger.mark_completed(endpoint.key, hid)
    result = CollectResult(len(to_poll), len(new_assign), len(new_rows), len(merged), path,
                           existing_rows=len(existing), foreign_rows=len(foreign))
    log.info("%s", result.summary())
    return result
