"""``sparse-probe tasks publish | collect | extend | review | ingest-csv``: thin library
wrappers."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from tasks.answers import AnswersFormatError, merge_answers, read_answers, read_batch_csv
from tasks.answers import write_answers as _write_answers
from tasks.client import (
    Endpoint,
    load_credentials_file,
    make_client,
    resolve_endpoint,
)
from tasks.ledger import LEDGER_NAME, Ledger, LedgerError

__all__ = ["collect", "extend", "ingest_csv", "parse_seconds", "publish", "review",
           "undecided_keys"]

ADMIN_USER_ENV = "SPARSE_PROBE_ADMIN_USER"
ADMIN_PASSWORD_ENV = "SPARSE_PROBE_ADMIN_PASSWORD"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_seconds(text: str) -> int:
    """``"3600"``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"7d"`` as seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(text))
    if not m:
        raise click.BadParameter(f"{text!r}: expected seconds or N[s|m|h|d], e.g. 30m, 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors into one-line click errors (non-zero exit)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, LedgerError, OSError) as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else repr(exc)) \
                from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise click.ClickException(
                f"{exc.operation_name}: {err.get('Code', '')}: {err.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _endpoint_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--endpoint", type=click.Choice(["local", "sandbox", "production"]),
                     default=None, help="Where to send requests [default: the ledger's one "
                     "endpoint, else local]."),
        click.option("--endpoint-url", default=None,
                     help="Task server URL (local) or an override of MTurk's endpoint."),
        click.option("--profile", default=None, help="AWS profile (sandbox/production)."),
        click.option("--credentials", "credentials", type=click.Path(dir_okay=False),
                     default=None, help="Task server credentials JSON (local)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _endpoint_and_client(tasks_dir: Path, endpoint: str | None, endpoint_url: str | None,
                         profile: str | None, credentials: str | None
                         ) -> tuple[Endpoint, Any, dict[str, Any]]:
    creds: dict[str, Any] = load_credentials_file(credentials) if credentials else {}
    if endpoint is None:
        keys: set[str] = set()
        ledger_path = tasks_dir / LEDGER_NAME
        if ledger_path.is_file():
            with Ledger(ledger_path) as ledger:
                keys = {h.endpoint for h in ledger.hits()}
        if len(keys) == 1:
            only = keys.pop()
            endpoint = "local" if only.startswith("local:") else only
            if only.startswith("local:") and endpoint_url is None:
                endpoint_url = only[len("local:"):]
        else:
            endpoint = "local"
    if endpoint == "local" and endpoint_url is None:
        endpoint_url = creds.get("url")
    ep = resolve_endpoint(endpoint, endpoint_url)
    client = make_client(ep, profile=profile, credentials_file=credentials)
    return ep, client, creds


def _admin_auth(creds: dict[str, Any], user: str | None, password: str | None
                ) -> tuple[str, str] | None:
    user = user or creds.get("admin_user") or os.environ.get(ADMIN_USER_ENV)
    password = password or creds.get("admin_password") or os.environ.get(ADMIN_PASSWORD_ENV)
    return (user, password) if user and password else None


def _money(value: str | None, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        out = Decimal(value)
    except InvalidOperation as exc:
        raise click.BadParameter(f"{value!r}: expected dollars like 25 or 12.50",
                                 param_hint=what) from exc
    if out < 0:
        raise click.BadParameter("must be >= 0", param_hint=what)
    return out


def _tasks_dir(path: str) -> Path:
    p = Path(path)
    if not (p / "manifest.jsonl").is_file():
        raise click.ClickException(f"{p / 'manifest.jsonl'}: manifest not found (expected a "
                                   "tasks directory written by 'sparse-probe tasks build')")
    return p


# --------------------------------------------------------------------------- publish
def _reward_for(root: Path, manifest: list[dict], given: str | None) -> str:
    """The reward to publish with: ``--reward`` if given (saying so when it overrides the
    manifest's), else the one ``tasks build --reward`` wrote into every manifest line
    (``"0.10"``, the build's default, for manifests from before that field)."""
    from tasks.cost import parse_reward

    path = root / "manifest.jsonl"
    built = set()
    for r in manifest:
        if "reward" not in r:
            continue
        value = r["reward"]
        try:
            built.add(f"{parse_reward(value):.2f}")
        except (ValueError, TypeError):
            raise click.ClickException(f"{path}: HIT {r['hit_key']}: reward {value!r} is not "
                                       "dollars like '0.10'") from None
    if given is None:
        if len(built) > 1:
            raise click.ClickException(f"{path}: HITs have different rewards "
                                       f"({', '.join(sorted(built))}); pass --reward")
        return built.pop() if built else "0.10"
    try:
        text = f"{parse_reward(given):.2f}"
    except ValueError as exc:
        raise click.ClickException(f"--reward: {exc}") from None
    if built and built != {text}:
        click.echo(f"reward: ${text} per assignment (--reward overrides the manifest's "
                   f"${', $'.join(sorted(built))})")
    return text


@click.command()
@click.argument("tasks_dir", type=click.Path(file_okay=False))
@_endpoint_options
@click.option("--reward", default=None,
              help="Dollars per assignment [default: the manifest's, from tasks build --reward; "
                   "0.10 for manifests without one].")
@click.option("--assignments", default=None, type=click.IntRange(1, 1000),
              help="Assignments (workers) per HIT [default: the manifest's, from tasks build "
                   "--assignments].")
@click.option("--lifetime", default="7d", show_default=True, help="How long HITs stay listed.")
@click.option("--duration", default="30m", show_default=True, help="Time a worker has per HIT.")
@click.option("--auto-approval", default="3d", show_default=True,
              help="Delay before MTurk auto-approves.")
@click.option("--title", default=None, help="HIT title.")
@click.option("--description", default=None, help="HIT description.")
@click.option("--keywords", default=None, help="Comma-separated keywords.")
@click.option("--budget", default=None, help="Cap in dollars on rewards + fees (incl. spent).")
@click.option("--qualification", "qualifications", multiple=True,
              help="approval>=95, approved_hits>=500, locale=US[,CA], masters, "
              "TYPEID:Comparator[:values]; repeatable.")
@click.option("--asset-base-url", default=None,
              help="URL where tasks/assets/ is served (default for local: upload to the server).")
@click.option("--admin-user", default=None, help=f"Task-server admin user (${ADMIN_USER_ENV}).")
@click.option("--admin-password", default=None,
              help=f"Task-server admin password (${ADMIN_PASSWORD_ENV}).")
@click.option("--yes", is_flag=True, help="Confirm publishing to production (real money).")
@_cli_errors
def publish(tasks_dir: str, endpoint: str | None, endpoint_url: str | None,
            profile: str | None, credentials: str | None, reward: str | None,
            assignments: int | None, lifetime: str, duration: str, auto_approval: str, title: str | None,
            description: str | None, keywords: str | None, budget: str | None,
            qualifications: tuple[str, ...], asset_base_url: str | None,
            admin_user: str | None, admin_password: str | None, yes: bool) -> None:
    """Publish the HITs of TASKS_DIR (idempotent; recorded in TASKS_DIR/ledger.sqlite)."""
    from tasks.publish import PublishOptions, load_manifest, parse_qualification, publish_batch

    root = _tasks_dir(tasks_dir)
    reward = _reward_for(root, load_manifest(root), reward)
    if assignments is not None:
        built = sorted({r["assignments"] for r in load_manifest(root)})
        if built != [assignments]:
            click.echo(f"assignments: {assignments} per HIT (--assignments overrides the "
                       f"manifest's {', '.join(map(str, built))})")
    if endpoint == "production" and not yes:
        raise click.ClickException("endpoint production spends real money: pass --yes to confirm")
    ep, client, creds = _endpoint_and_client(root, endpoint, endpoint_url, profile, credentials)
    opts = PublishOptions(reward=reward, assignments=assignments,
                          lifetime=parse_seconds(lifetime), duration=parse_seconds(duration),
                          auto_approval_delay=parse_seconds(auto_approval),
                          qualifications=[parse_qualification(q, ep.name)
                                          for q in qualifications],
                          budget=_money(budget, "--budget"), asset_base_url=asset_base_url)
    for name, value in (("title", title), ("description", description),
                        ("keywords", keywords)):
        if value:
            setattr(opts, name, value)
    result = publish_batch(root, client, ep, opts, confirm_production=yes,
                           admin_auth=_admin_auth(creds, admin_user, admin_password))
    click.echo(result.summary())


# --------------------------------------------------------------------------- collect
@click.command()
@click.argument("tasks_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="answers/ directory (answers.parquet).")
@click.option("--merge-foreign", is_flag=True,
              help="Keep rows of an existing answers.parquet whose HITs the ledger does not "
                   "know (refused otherwise).")
@_endpoint_options
@_cli_errors
def collect(tasks_dir: str, out_dir: str, merge_foreign: bool, endpoint: str | None,
            endpoint_url: str | None, profile: str | None, credentials: str | None) -> None:
    """Fetch new assignments of every published HIT into OUT/answers.parquet."""
    from tasks.collect import collect_answers

    root = _tasks_dir(tasks_dir)
    ep, client, _ = _endpoint_and_client(root, endpoint, endpoint_url, profile, credentials)
    click.echo(collect_answers(root, out_dir, client, ep, merge_foreign=merge_foreign).summary())


# --------------------------------------------------------------------------- review
@click.command()
@click.argument("tasks_dir", type=click.Path(file_okay=False))
@click.option("--answers", "answers_dir", required=True, type=click.Path(file_okay=False),
              help="answers/ directory written by collect.")
@_endpoint_options
@click.option("--min-gold-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Reject workers below this accuracy on gold questions [default: the "
                   "report's exclusion threshold, 0.6].")
@click.option("--require-attention", is_flag=True, help="Reject failed attention checks.")
@click.option("--min-seconds", type=float, default=None, help="Reject faster submissions.")
@click.option("--bonus", default=None, help="Bonus in dollars for approved, accurate work.")
@click.option("--bonus-min-gold-accuracy", type=click.FloatRange(0, 1), default=0.9,
              show_default=True, help="Gold accuracy a worker needs for the bonus.")
@click.option("--dry-run", is_flag=True, help="Print decisions; send and record nothing.")
@_cli_errors
def review(tasks_dir: str, answers_dir: str, endpoint: str | None, endpoint_url: str | None,
           profile: str | None, credentials: str | None, min_gold_accuracy: float | None,
           require_attention: bool, min_seconds: float | None, bonus: str | None,
           bonus_min_gold_accuracy: float, dry_run: bool) -> None:
    """Approve or reject collected assignments by rules (gold, attention, time)."""
    from tasks.cost import parse_reward
    from tasks.review import ReviewRules, review_assignments

    root = _tasks_dir(tasks_dir)
    if bonus is not None:
        parse_reward(bonus)
    ep, client, _ = _endpoint_and_client(root, endpoint, endpoint_url, profile, credentials)
    rules = ReviewRules(require_attention=require_attention, min_seconds=min_seconds,
                        bonus=bonus, bonus_min_gold_accuracy=bonus_min_gold_accuracy)
    if min_gold_accuracy is not None:
        rules.min_gold_accuracy = min_gold_accuracy
    result = review_assignments(root, answers_dir, client, ep, rules, dry_run=dry_run)
    if dry_run:
        for d in result.decisions:
            click.echo(f"{d.assignment_id}\t{d.worker_id}\t{d.hit_key}\t{d.action}"
                       + (f"\t{'; '.join(d.reasons)}" if d.reasons else "")
                       + (f"\tbonus ${d.bonus}" if d.bonus else ""))
    click.echo(result.summary())


# --------------------------------------------------------------------------- ingest-csv
@click.command("ingest-csv")
@click.argument("batch_results", type=click.Path(dir_okay=False))
@click.option("--tasks", "tasks_dir", default=None, type=click.Path(file_okay=False),
              help="Tasks directory (its manifest checks the hit keys); not with --study.")
@click.option("--study", "study_file", default=None, type=click.Path(dir_okay=False),
              help="Another study's CSV: the study file (TOML) mapping its columns, questions "
                   "and value meanings (docs/contracts.md); items become the hit keys.")
@click.option("--drop-unknown", is_flag=True, default=False,
              help="With --study: drop answer values the study file does not declare.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="answers/ directory (answers.parquet is created or extended).")
@_cli_errors
def ingest_csv(batch_results: str, tasks_dir: str | None, study_file: str | None,
               drop_unknown: bool, out_dir: str) -> None:
    """Read MTurk's batch-results CSV (full or reduced header) into OUT/answers.parquet.

    With --study, read another study's results CSV through its study file instead.
    """
    if not Path(batch_results).is_file():
        raise click.ClickException(f"{batch_results}: file not found")
    if study_file is not None:
        from sparse_probe.study import (
            StudyError,
            load_study,
            read_study_answers,
            study_answers_table,
        )

        if tasks_dir is not None:
            raise click.UsageError("--study and --tasks exclude each other")
        try:
            study = load_study(study_file)
            new = study_answers_table(read_study_answers(batch_results, study,
                                                         drop_unknown=drop_unknown), study)
        except StudyError as exc:
            raise click.ClickException(str(exc)) from None
        merged = merge_answers(read_answers(out_dir), new)
        path = _write_answers(merged, out_dir)
        click.echo(f"{new['assignment_id'].nunique()} assignments, {len(new)} rows from "
                   f"{batch_results} (study {study_file}); {len(merged)} rows in {path}")
        return
    if tasks_dir is None:
        raise click.UsageError("give --tasks TASKS (or --study STUDY.toml)")
    from tasks.publish import load_manifest

    keys = [r["hit_key"] for r in load_manifest(_tasks_dir(tasks_dir))]
    try:
        new = read_batch_csv(batch_results, known_hit_keys=keys)
    except AnswersFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    merged = merge_answers(read_answers(out_dir), new)
    try:
        path = _write_answers(merged, out_dir, tasks_dir=_tasks_dir(tasks_dir))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{new['assignment_id'].nunique()} assignments, {len(new)} rows from "
               f"{batch_results}; {len(merged)} rows in {path}")


# --------------------------------------------------------------------------- extend
def undecided_keys(features_csv: Path) -> list[str]:
    """HIT keys of the ``undecided`` rows of a report's ``features.csv``."""
    import csv

    try:
        with open(features_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"hit_key", "verdict"} - set(reader.fieldnames or [])
            if missing:
                raise click.ClickException(
                    f"{features_csv}: no column {', '.join(sorted(missing))} (expected the "
                    "features.csv written by 'sparse-probe report')")
            return [r["hit_key"] for r in reader if r["verdict"] == "undecided"]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise click.ClickException(f"{features_csv}: cannot read ({exc})") from None


@click.command()
@click.argument("tasks_dir", type=click.Path(file_okay=False))
@click.option("--undecided-from", "features_csv", default=None,
              type=click.Path(dir_okay=False),
              help="A report's features.csv: extend its undecided HITs.")
@click.option("--hit", "hits", multiple=True, help="A HIT key to extend; repeatable.")
@click.option("--add", "n_add", type=click.IntRange(1, 1000), default=2, show_default=True,
              help="Assignments to add per HIT (MTurk keeps a HIT created with fewer than 10 "
                   "below 10).")
@click.option("--max-rounds", type=click.IntRange(1), default=None,
              help="Extend a HIT at most this many times in all (earlier runs included).")
@click.option("--budget", default=None, help="Cap in dollars on rewards + fees (incl. spent).")
@_endpoint_options
@click.option("--yes", is_flag=True, help="Confirm extending on production (real money).")
@_cli_errors
def extend(tasks_dir: str, features_csv: str | None, hits: tuple[str, ...], n_add: int,
           max_rounds: int | None, budget: str | None, endpoint: str | None, endpoint_url: str | None,
           profile: str | None, credentials: str | None, yes: bool) -> None:
    """Ask for more assignments on HITs whose answers split (idempotent; in the ledger).

    Typical loop: report, then extend its undecided HITs, let workers answer, collect, and
    report again."""
    from tasks.extend import extend_hits

    root = _tasks_dir(tasks_dir)
    keys = list(hits) + (undecided_keys(Path(features_csv)) if features_csv else [])
    if not features_csv and not hits:
        raise click.UsageError("name the HITs: --undecided-from REPORT/features.csv or --hit")
    if not keys:
        click.echo(f"{features_csv}: no undecided verdicts; nothing to extend")
        return
    if endpoint == "production" and not yes:
        raise click.ClickException("endpoint production spends real money: pass --yes to confirm")
    ep, client, _ = _endpoint_and_client(root, endpoint, endpoint_url, profile, credentials)
    result = extend_hits(root, client, ep, keys, n_add, budget=_money(budget, "--budget"),
                         confirm_production=yes, max_rounds=max_rounds)
    for key, why in result.skipped.items():
        click.echo(f"skipped {key}: {why}")
    click.echo(result.summary())
