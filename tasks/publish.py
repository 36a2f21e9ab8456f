"""Publish a built tasks directory through boto3's MTurk client, idempotently and within budget.

One code path for every endpoint (our task server, the MTurk sandbox, production): one
``CreateHITType`` per batch, then one ``CreateHITWithHITType`` per manifest row, each with a
``UniqueRequestToken`` derived from the batch id and the HIT key. Every HIT is written to the
ledger (``tasks/ledger.sqlite``) as ``pending`` before the call and ``created`` after it, so a
crash at any point followed by a re-run never creates a HIT twice: pending rows are retried with
their token (MTurk answers ``HitAlreadyExists`` with the HIT id) and created rows are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tqdm import tqdm

from sparse_probe.rundir import RunDirError, manifest_lines
from tasks.client import Endpoint
from tasks.cost import DEFAULT_ASSIGNMENTS, estimate_cost, parse_reward
from tasks.ledger import LEDGER_NAME, Ledger, request_token
from tasks.question_xml import ASSET_PREFIX, html_question, retarget_assets

__all__ = [
    "QUALIFICATION_IDS",
    "BudgetExceededError",
    "PublishError",
    "PublishOptions",
    "PublishResult",
    "batch_id_for",
    "call_with_retry",
    "find_hit_by_annotation",
    "load_manifest",
    "parse_qualification",
    "publish_batch",
    "upload_assets",
]

log = logging.getLogger(__name__)

#: System qualification type ids (identical in sandbox and production, except Masters).
QUALIFICATION_IDS = {
    "approval": "000000000000000000L0",  # PercentAssignmentsApproved
    "approved_hits": "00000000000000000040",  # NumberHITsApproved
    "locale": "00000000000000000071",  # Worker_Locale
    "masters": {"sandbox": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
                "production": "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"},
}
_COMPARATORS = {
    "LessThan", "LessThanOrEqualTo", "GreaterThan", "GreaterThanOrEqualTo", "EqualTo",
    "NotEqualTo", "Exists", "DoesNotExist", "In", "NotIn",
}
_RETRY_CODES = {"ThrottlingException", "Throttling", "ServiceUnavailable", "ServiceFault",
                "RequestLimitExceeded", "TooManyRequestsException", "InternalFailure"}


class PublishError(ValueError):
    """Publishing cannot proceed (bad input, missing file, refused endpoint)."""


class BudgetExceededError(PublishError):
    """Publishing would spend more than ``--budget``."""


# --------------------------------------------------------------------------- inputs
def load_manifest(tasks_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and check ``tasks_dir/manifest.jsonl`` (keys unique, HIT pages present).

    Manifests written before the ``assignments`` field existed get
    :data:`tasks.cost.DEFAULT_ASSIGNMENTS` per HIT.

    Raises
    ------
    PublishError
        What :func:`sparse_probe.rundir.read_manifest` refuses (missing file, malformed line,
        duplicate key), an ``assignments`` that is not a positive integer, or a missing
        ``hits/<hit_key>.html``.
    """
    root = Path(tasks_dir)
    path = root / "manifest.jsonl"
    try:
        lines = manifest_lines(root)
    except RunDirError as exc:
        raise PublishError(str(exc)) from None
    for n_line, row in lines:
        n = row.get("assignments", DEFAULT_ASSIGNMENTS)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PublishError(f"{path}:{n_line}: assignments {n!r} is not an integer >= 1")
        if not (root / row["html"]).is_file():
            raise PublishError(f"{path}:{n_line}: HIT page {root / row['html']} not found")
        row["assignments"] = n
    rows = [row for _, row in lines]
    if not rows:
        raise PublishError(f"{path}: manifest has no HITs")
    return rows


def batch_id_for(tasks_dir: str | os.PathLike[str]) -> str:
    """A short id for a tasks directory: its run's name plus a hash of path and manifest."""
    root = Path(tasks_dir).resolve()
    digest = hashlib.sha256(str(root).encode() + b"\0" +
                            (root / "manifest.jsonl").read_bytes()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", root.parent.name or "run").strip("-")[:40] or "run"
    return f"{name}-{digest}"


def parse_qualification(spec: str, endpoint: str) -> dict[str, Any]:
    """One ``QualificationRequirement`` from a short spec.

    Specs: ``approval>=95`` (PercentAssignmentsApproved; also ``>``, ``<=``, ``<``, ``=``),
    ``approved_hits>=1000``, ``locale=US`` / ``locale=US,CA,GB-NIR`` (Country[-Subdivision];
    ``locale!=IN`` for NotIn), ``masters``, or a custom type
    ``<QualificationTypeId>:<Comparator>[:<int>[,<int>...]]``.

    Raises
    ------
    PublishError
        If the spec cannot be parsed.
    """
    ops = {">=": "GreaterThanOrEqualTo", "<=": "LessThanOrEqualTo", ">": "GreaterThan",
           "<": "LessThan", "!=": "NotEqualTo", "=": "EqualTo"}
    s = spec.strip()
    if s == "masters":
        return {"QualificationTypeId": QUALIFICATION_IDS["masters"].get(
            endpoint, QUALIFICATION_IDS["masters"]["sandbox"]), "Comparator": "Exists",
            "ActionsGuarded": "Accept"}
    m = re.fullmatch(r"(approval|approved_hits|locale)\s*(>=|<=|!=|>|<|=)\s*(.+)", s)
    if m:
        kind, op, value = m.groups()
        if kind == "locale":
            if op not in ("=", "!="):
                raise PublishError(f"qualification {spec!r}: locale takes = or !=")
            locales = []
            for item in value.split(","):
                country, _, sub = item.strip().partition("-")
                if not re.fullmatch(r"[A-Z]{2}", country) or (sub and not sub.isalnum()):
                    raise PublishError(f"qualification {spec!r}: locale {item!r} is not "
                                       "CC or CC-SUB (ISO 3166)")
                locales.append({"Country": country, **({"Subdivision": sub} if sub else {})})
            comparator = ("In" if len(locales) > 1 else "EqualTo") if op == "=" else (
                "NotIn" if len(locales) > 1 else "NotEqualTo")
            return {"QualificationTypeId": QUALIFICATION_IDS["locale"], "Comparator": comparator,
                    "LocaleValues": locales, "ActionsGuarded": "Accept"}
        if not value.strip().isdigit():
            raise PublishError(f"qualification {spec!r}: expected an integer value")
        return {"QualificationTypeId": QUALIFICATION_IDS[kind], "Comparator": ops[op],
                "IntegerValues": [int(value)], "ActionsGuarded": "Accept"}
    parts = s.split(":")
    if len(parts) in (2, 3) and re.fullmatch(r"[A-Z0-9]{10,64}", parts[0]) and \
            parts[1] in _COMPARATORS:
        req: dict[str, Any] = {"QualificationTypeId": parts[0], "Comparator": parts[1],
                               "ActionsGuarded": "Accept"}
        if len(parts) == 3:
            try:
                req["IntegerValues"] = [int(v) for v in parts[2].split(",")]
            except ValueError as exc:
                raise PublishError(f"qualification {spec!r}: values must be integers") from exc
        elif parts[1] not in ("Exists", "DoesNotExist"):
            raise PublishError(f"qualification {spec!r}: {parts[1]} needs values")
        return req
    raise PublishError(
        f"qualification {spec!r}: expected approval>=N, approved_hits>=N, locale=CC[,CC], "
        "masters or TYPEID:Comparator[:values]")


@dataclass
class PublishOptions:
    """HIT properties and limits for one batch (times in seconds, money in dollars)."""

    reward: str = "0.10"
    #: Assignments per HIT; None: each HIT's manifest value (the one ``tasks build`` priced).
    assignments: int | None = None
    lifetime: int = 7 * 24 * 3600
    duration: int = 30 * 60
    auto_approval_delay: int = 3 * 24 * 3600
    title: str = "What does this neural-network feature look at?"
    description: str = ("Look at a few examples with highlighted regions and tell us what "
                        "pattern they share. About 1-2 minutes.")
    keywords: str = "image, text, labeling, survey, machine learning"
    qualifications: list[dict[str, Any]] = field(default_factory=list)
    budget: Decimal | None = None
    asset_base_url: str | None = None
    frame_height: int = 0

    @property
    def masters(self) -> bool:
        """Whether a qualification requires Masters (MTurk then takes 5% more of the reward)."""
        ids = set(QUALIFICATION_IDS["masters"].values())
        return any(q.get("QualificationTypeId") in ids for q in self.qualifications)

    def hit_type_params(self) -> dict[str, Any]:
        """Parameters of ``CreateHITType``."""
        params: dict[str, Any] = {
            "AutoApprovalDelayInSeconds": int(self.auto_approval_delay),
            "AssignmentDurationInSeconds": int(self.duration),
            "Reward": f"{parse_reward(self.reward):.2f}",
            "Title": self.title,
            "Keywords": self.keywords,
            "Description": self.description,
        }
        if self.qualifications:
            params["QualificationRequirements"] = self.qualifications
        return params


@dataclass
class PublishResult:
    """What one publishing run did."""

    endpoint: str
    batch_id: str
    hit_type_id: str | None
    created: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new_cost: Decimal = Decimal("0")
    spent: Decimal = Decimal("0")

    def summary(self) -> str:
        """One line for the console."""
        return (f"{self.endpoint}: {len(self.created)} HITs created, {len(self.recovered)} "
                f"recovered, {len(self.skipped)} already published; batch {self.batch_id}; "
                f"committed ${self.spent:.2f}")


# --------------------------------------------------------------------------- calls
def call_with_retry(
    fn: Callable[..., Any],
    *,
    attempts: int = 6,
    base_delay: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Any:
    """Call ``fn(**kwargs)``, retrying throttling, 5xx and connection errors with backoff.

    The delay before retry ``i`` (0-based) is ``base_delay * 2**i`` times a jitter in [0.5, 1].
    Other errors propagate at once.
    """
    for i in range(attempts):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
            if (code not in _RETRY_CODES and status < 500) or i == attempts - 1:
                raise
            log.warning("%s (%s); retry %d/%d", code or status, fn.__name__, i + 1, attempts - 1)
        except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError):
            if i == attempts - 1:
                raise
            log.warning("connection error (%s); retry %d/%d", fn.__name__, i + 1, attempts - 1)
        sleep(base_delay * 2**i * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _already_exists(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    text = f"{err.get('Code', '')} {err.get('Message', '')} {exc.response.get('TurkErrorCode', '')}"
    return "AlreadyExists" in text or "already exists" in text.lower()


def _hit_id_from_message(message: str, token: str) -> str | None:
    m = re.search(r"HIT(?:\s+with)?\s*-?\s*I[dD]\s*[:=]?\s*[\"']?([A-Za-z0-9_-]{6,64})", message)
    if m and m.group(1) != token:
        return m.group(1)
    for cand in re.findall(r"\b[A-Z0-9]{20,40}\b", message):
        if cand != token and cand.upper() != token.upper():
            return cand
    return None


def find_hit_by_annotation(client: Any, annotation: str) -> str | None:
    """The id of the HIT whose ``RequesterAnnotation`` equals ``annotation`` (ListHITs)."""
    for page in client.get_paginator("list_hits").paginate(PaginationConfig={"PageSize": 100}):
        for hit in page.get("HITs", []):
            if hit.get("RequesterAnnotation") == annotation:
                return hit["HITId"]
    return None


def upload_assets(
    base_url: str, assets_dir: Path, name: str, admin_auth: tuple[str, str],
    session: requests.Session | None = None,
) -> int:
    """Upload every file of ``assets_dir`` to the task server (``PUT /admin/api/assets/...``).

    Returns the number of files uploaded.
    """
    s = session or requests.Session()
    n = 0
    files = sorted(p for p in assets_dir.rglob("*") if p.is_file()) if assets_dir.is_dir() else []
    for p in tqdm(files, desc="upload assets", unit="file", disable=None):
        rel = p.relative_to(assets_dir).as_posix()
        r = s.put(f"{base_url}/admin/api/assets/{name}/{rel}", data=p.read_bytes(),
                  auth=admin_auth, timeout=60)
        if r.status_code >= 300:
            raise PublishError(f"uploading {p} to {base_url}: HTTP {r.status_code} "
                               f"{r.text[:200]!r}")
        n += 1
    return n


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def _cost_summary(assignments: Sequence[int], reward: Decimal, masters: bool) -> str:
    """The cost of HITs with these assignments each, one estimate per distinct number."""
    counts = Counter(assignments)
    return "; ".join(estimate_cost(counts[n], n, reward, masters=masters).summary()
                     for n in sorted(counts))


# --------------------------------------------------------------------------- publishing
def publish_batch(
    tasks_dir: str | os.PathLike[str],
    client: Any,
    endpoint: Endpoint,
    options: PublishOptions,
    *,
    confirm_production: bool = False,
    admin_auth: tuple[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    hit_keys: Sequence[str] | None = None,
) -> PublishResult:
    """Publish the HITs of ``tasks_dir`` (or the subset ``hit_keys``) at ``endpoint``.

    Parameters
    ----------
    tasks_dir : path-like
        Output of ``sparse-probe tasks build`` (``manifest.jsonl``, ``hits/``, ``assets/``).
    client : botocore client
        ``mturk`` client for ``endpoint`` (:func:`tasks.client.make_client`).
    endpoint : Endpoint
        Where the client points; its key separates ledger rows.
    options : PublishOptions
        Reward, times, qualifications, budget, asset URL; ``assignments`` overrides the
        manifest's assignments per HIT when not None.
    confirm_production : bool
        Must be true to publish to ``production``.
    admin_auth : (user, password), optional
        Task-server admin credentials; with the local endpoint and no ``asset_base_url`` the
        assets are uploaded to ``/assets/<batch_id>/``.

    Raises
    ------
    PublishError
        Bad input, production without confirmation, assets without a URL.
    BudgetExceededError
        The HITs still to create (plus what the ledger already committed) cost more than
        ``options.budget``; nothing is created.
    """
    if endpoint.name == "production" and not confirm_production:
        raise PublishError("endpoint production spends real money: pass --yes to confirm")
    root = Path(tasks_dir)
    manifest = load_manifest(root)
    if hit_keys is not None:
        wanted = set(hit_keys)
        manifest = [r for r in manifest if r["hit_key"] in wanted]
    reward = parse_reward(options.reward)
    if options.assignments is not None and options.assignments < 1:
        raise PublishError("--assignments must be >= 1")
    assignments = {r["hit_key"]: int(options.assignments if options.assignments is not None
                                     else r["assignments"]) for r in manifest}
    masters = options.masters
    per_hit = {n: estimate_cost(1, n, reward, masters=masters).total
               for n in set(assignments.values())}
    hit_type_params = options.hit_type_params()

    with Ledger(root / LEDGER_NAME) as ledger:
        batch_id = ledger.set_meta_default("batch_id", batch_id_for(root))
        todo = [r for r in manifest if ledger.hit(endpoint.key, r["hit_key"]) is None]
        pending = [r for r in manifest
                   if (rec := ledger.hit(endpoint.key, r["hit_key"])) and rec.state == "pending"]
        result = PublishResult(endpoint.key, batch_id, None)
        result.skipped = [r["hit_key"] for r in manifest if r not in todo and r not in pending]
        new_cost = sum((per_hit[assignments[r["hit_key"]]] for r in todo), Decimal("0"))
        spent = Decimal(ledger.spent_cents(endpoint.key)) / 100
        if options.budget is not None and spent + new_cost > options.budget:
            raise BudgetExceededError(
                f"budget ${options.budget:.2f} exceeded: {len(todo)} new HITs cost "
                f"${new_cost:.2f} "
                f"({_cost_summary([assignments[r['hit_key']] for r in todo], reward, masters)}) and "
                f"${spent:.2f} is already committed; nothing was published")
        if not todo and not pending:
            result.spent = spent
            log.info("all %d HITs already published at %s", len(manifest), endpoint.key)
            return result

        base_url = options.asset_base_url
        pages: dict[str, str] = {}
        for row in todo + pending:
            pages[row["hit_key"]] = (root / row["html"]).read_text(encoding="utf-8")
        needs_assets = any(ASSET_PREFIX in html for html in pages.values())
        if needs_assets and base_url is None:
            if endpoint.name == "local" and admin_auth is not None:
                upload_assets(endpoint.url, root / "assets", batch_id, admin_auth)
                base_url = f"{endpoint.url}/assets/{batch_id}/"
            else:
                raise PublishError(
                    "HIT pages refer to ../assets/: pass --asset-base-url (where tasks/assets/ "
                    "is served; HTTPS for MTurk)" + (" or the server's admin credentials"
                                                     if endpoint.name == "local" else ""))

        signature = request_token(json.dumps(hit_type_params, sort_keys=True))
        hit_type_id = ledger.hit_type(endpoint.key, signature)
        if hit_type_id is None:
            resp = call_with_retry(client.create_hit_type, sleep=sleep, **hit_type_params)
            hit_type_id = resp["HITTypeId"]
            ledger.record_hit_type(endpoint.key, signature, hit_type_id)
        result.hit_type_id = hit_type_id

        for row in tqdm(pending + todo, desc=f"publish to {endpoint.name}", unit="HIT",
                        disable=None):
            key = row["hit_key"]
            annotation = f"sparse-probe:{batch_id}:{key}"
            if len(annotation) > 255:
                raise PublishError(f"hit_key {key!r}: RequesterAnnotation over 255 characters")
            html = pages[key]
            if base_url is not None:
                html = retarget_assets(html, base_url)
            try:
                question = html_question(html, options.frame_height, what=key)
            except ValueError as exc:
                raise PublishError(str(exc)) from exc
            rec = ledger.hit(endpoint.key, key)
            if rec is None:
                token = request_token(batch_id, endpoint.name, key)
                ledger.mark_pending(endpoint.key, key, batch_id=batch_id, token=token,
                                    reward=f"{reward:.2f}", max_assignments=assignments[key],
                                    cost_cents=_cents(per_hit[assignments[key]]))
            else:
                token = rec.token
            try:
                resp = call_with_retry(
                    client.create_hit_with_hit_type, sleep=sleep, HITTypeId=hit_type_id,
                    MaxAssignments=int(rec.max_assignments if rec else assignments[key]),
                    LifetimeInSeconds=int(options.lifetime), Question=question,
                    RequesterAnnotation=annotation, UniqueRequestToken=token)
                hit_id = resp["HIT"]["HITId"]
                ledger.mark_created(endpoint.key, key, hit_id=hit_id, hit_type_id=hit_type_id)
                (result.recovered if rec else result.created).append(key)
            except ClientError as exc:
                if not _already_exists(exc):
                    raise
                msg = exc.response.get("Error", {}).get("Message", "")
                hit_id = _hit_id_from_message(msg, token) or find_hit_by_annotation(
                    client, annotation)
                if hit_id is None:
                    raise PublishError(f"{key}: the service says the HIT exists but gave no "
                                       f"HIT id ({msg!r})") from exc
                log.info("%s: already created as %s", key, hit_id)
                ledger.mark_created(endpoint.key, key, hit_id=hit_id, hit_type_id=hit_type_id)
                result.recovered.append(key)
        result.new_cost = new_cost
        result.spent = Decimal(ledger.spent_cents(endpoint.key)) / 100
    log.info("%s", result.summary())
    return result

