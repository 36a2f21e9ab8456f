"""A click group whose subcommands are imported only when used.

Keeps ``sparse-probe --help`` fast (no torch import) and lets each package own its commands.
"""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """Click group resolving ``{name: "module:attribute"}`` entries on first use.

    Parameters
    ----------
    lazy_subcommands : dict of str to str
        Command name mapped to ``"package.module:attribute"`` of a click command.
    """

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands; one that cannot be imported is shown as unavailable, not a crash."""
        rows = []
        for name in self.list_commands(ctx):
            try:
                cmd = self.get_command(ctx, name)
            except Exception as exc:  # help must still render
                rows.append((name, f"(unavailable: {type(exc).__name__}: {exc})"))
                continue
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _load(self, cmd_name: str) -> click.Command:
        target = self.lazy_subcommands[cmd_name]
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command
