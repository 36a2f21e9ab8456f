"""``sparse-probe tasks simulate``: simulated workers answer the open HITs of a task server."""

from __future__ import annotations

import os

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
def simulate(url: str, tasks_dir: str, n_workers: int, spammer_share: float, noisy_share: float,
             seed: int, concurrency: int, time_scale: float, admin_user: str | None,
             admin_password: str | None, credentials: str | None) -> None:
    """Simulated workers answer every open HIT through the worker UI (like a browser)."""
    from tasks.client import ClientConfigError, load_credentials_file
    from tasks.simulate import simulate_crowd

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
                                time_scale=time_scale)
    except (ValueError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc
    click.echo(result.summary())
    for wid, n in sorted(result.per_worker.items()):
        click.echo(f"{wid}\t{result.profiles[wid].kind}\t{n}")
