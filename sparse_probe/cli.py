"""Root of the ``sparse-probe`` command line: one subcommand per pipeline stage.

With the demo orchestrator (:mod:`sparse_probe.demo`), this is the only code of
:mod:`sparse_probe` allowed to name the ``tasks`` and ``analysis`` packages (see DESIGN.md); it
does so lazily, by dotted path.
"""

from __future__ import annotations

import logging

import click

from sparse_probe.lazy_group import LazyGroup

COMMANDS: dict[str, str] = {
    # sparse_probe: features and the sparse head
    "fit": "sparse_probe.fit_cli:fit",
    "inspect": "sparse_probe.fit_cli:inspect",
    "extract": "sparse_probe.extract.cli:extract",
    "datasets": "sparse_probe.datasets.cli:datasets",
    # tasks: HITs, publishing, the task server
    "tasks": "tasks.cli:tasks",
    # analysis: reports and counterfactual tests
    "report": "analysis.cli:report",
    "counterfactual": "analysis.cli:counterfactual",
    # the whole audit end to end
    "demo": "sparse_probe.demo.cli:demo",
}


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="sparse-probe")
def main(verbose: int) -> None:
    """Debug deep networks with sparse decision layers and human validation."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    main()
