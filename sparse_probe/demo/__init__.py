"""``sparse-probe demo``: every stage of an audit on the built-in data, orchestrated.

The orchestrator (:func:`run_demo`) calls each stage's library function in turn (built-in data
and model, :func:`sparse_probe.fitting.fit_features`, ``tasks``' build, publish, simulate and
collect, ``analysis``' report and counterfactual tests). With :mod:`sparse_probe.cli`, it is
the only code of ``sparse_probe`` that names the ``tasks`` and ``analysis`` packages
(DESIGN.md); it does so inside functions, so importing this package stays light.

Modules: :mod:`~sparse_probe.demo.config` (configuration, result, ``OUT/demo.json``),
:mod:`~sparse_probe.demo.server` (the task server process), :mod:`~sparse_probe.demo.stages`
(per-run stages), :mod:`~sparse_probe.demo.crowd` (publish, simulated crowd, collect),
:mod:`~sparse_probe.demo.summary` (ground-truth verdict), :mod:`~sparse_probe.demo.orchestrate`
(:func:`run_demo`), :mod:`~sparse_probe.demo.cli` (the click command).
"""

from sparse_probe.demo.config import (
    DEMO_FORMAT,
    KINDS,
    DemoConfig,
    DemoConfigError,
    DemoResult,
)
from sparse_probe.demo.orchestrate import run_demo
from sparse_probe.demo.summary import summarize_run, summary_lines

__all__ = ["DEMO_FORMAT", "KINDS", "DemoConfig", "DemoConfigError", "DemoResult", "run_demo",
           "summarize_run", "summary_lines"]
