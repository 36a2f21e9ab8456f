"""``sparse-probe tasks simulate``: simulated workers answer the open HITs of a task server."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["simulate"]


@click.command()
@click.option("--url", required=True, help="Task server base URL.")
@click.option("--tasks", "tasks_dir", required=True, type=click.Path(file_okay=False),
              help="Tasks directory (manifest.jsonl) of the published HITs.")
@click.option("--workers", "n_workers", default=20, show_default=True,
              type=click.IntRange(1, 10_000))
@click.option("--spammers", "spammer_share", default=0.2, show_default=True,
              type=click.FloatRange(0, 1), help="Share of spammers.")
@click.option("--noisy", "noisy_share", default=0.25, show_default=True,
              type=click.FloatRange(0, 1), help="Share of noisy workers among the others.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--time-scale", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Multiplier on sampled work times (0: no sleeping).")
@click.option("--admin-user", default=None, help="Server admin user ($SPARSE_PROBE_ADMIN_USER).")
@click.option("--admin-password", default=None,
              help="Server admin password ($SPARSE_PROBE_ADMIN_PASSWORD).")
@click.option("--credentials", type=click.Path(dir_okay=False), default=None,
              help="Server credentials JSON (admin_user, admin_password).")
@click.option("--allow-blind", is_flag=True,
              help="Run even on HITs without ground-truth evidence (data without masks): the "
                   "answers are guesses, labelled simulated-blind (worker ids SIMBLIND...).")
def simulate(url: str, tasks_dir: str, n_workers: int, spammer_share: float, noisy_share: float,
             seed: int, concurrency: int, time_scale: float, admin_user: str | None,
             admin_password: str | None, credentials: str | None, allow_blind: bool) -> None:
    """Simulated workers answer every open HIT through the worker UI (like a browser).

    They read each HIT's ground-truth evidence (the built-in datasets' masks); on HITs without
    it they refuse, unless --allow-blind."""
    from sparse_probe.rundir import read_manifest
    from tasks.client import ClientConfigError, load_credentials_file
    from tasks.simulate import blind_hits, simulate_crowd

    try:  # refuse blind data before asking for credentials or contacting the server
        blind = blind_hits({r["hit_key"]: r for r in read_manifest(Path(tasks_dir))})
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    if blind and not allow_blind:
        raise click.ClickException(
            f"{len(blind)} HITs of {tasks_dir} (e.g. {blind[0]}) have no ground-truth evidence "
            "(object and cue masks), so simulated workers cannot see what they show; have "
            "people answer them, or pass --allow-blind (answers labelled simulated-blind)")
    creds = {}
    if credentials:
        try:
            creds = load_credentials_file(credentials)
        except ClientConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    user = admin_user or creds.get("admin_user") or os.environ.get("SPARSE_PROBE_ADMIN_USER")
    password = admin_password or creds.get("admin_password") or os.environ.get(
        "SPARSE_PROBE_ADMIN_PASSWORD")
    if not user or not password:
        raise click.ClickException("admin credentials needed to issue worker tokens: pass "
                                   "--admin-user/--admin-password or --credentials FILE")
    try:
        result = simulate_crowd(url, tasks_dir, n_workers=n_workers,
                                spammer_share=spammer_share, noisy_share=noisy_share,
                                seed=seed, concurrency=concurrency, admin_auth=(user, password),
                                time_scale=time_scale, allow_blind=allow_blind)
    except (ValueError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    click.echo(result.summary())
    for wid, n in sorted(result.per_worker.items()):
        click.echo(f"{wid}\t{result.profiles[wid].kind}\t{n}")
