"""``sparse-probe tasks ...``: build, publish, serve, collect, review and simulate HITs."""

from __future__ import annotations

import click

from sparse_probe.lazy_group import LazyGroup

TASK_COMMANDS: dict[str, str] = {
    "build": "tasks.build_cli:build",
    "serve": "tasks.server.cli:serve",
    "publish": "tasks.publish_cli:publish",
    "collect": "tasks.publish_cli:collect",
    "extend": "tasks.publish_cli:extend",
    "review": "tasks.publish_cli:review",
    "ingest-csv": "tasks.publish_cli:ingest_csv",
    "simulate": "tasks.simulate_cli:simulate",
}


@click.group(cls=LazyGroup, lazy_subcommands=TASK_COMMANDS)
def tasks() -> None:
    """Crowd tasks: render HITs, publish them (local server or MTurk), collect answers."""
