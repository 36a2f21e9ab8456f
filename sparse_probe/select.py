"""Choosing the sparse decision layer on a path (rules of Wong et al. 2021's code).

- ``val_acc_within`` (default, the paper's rule): the sparsest point (largest λ) whose
  validation accuracy is within ``value`` (Δ, a fraction: 0.05 = 5 points) of the best point's.
- ``features_per_class``: the densest point whose mean number of nonzero features per class
  does not exceed ``value`` (falls back to the first point with any feature).
- ``lambda``: the point whose λ is closest to ``value`` in log scale.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from sparse_probe.path import Path

__all__ = ["RULES", "Selection", "parse_rule", "select"]

log = logging.getLogger(__name__)

RULES = ("val_acc_within", "features_per_class", "lambda")


@dataclass(frozen=True)
class Selection:
    """A chosen path point and the rule that chose it (recorded in ``probe.json``)."""

    rule: str
    value: float
    index: int
    lam: float
    metric: str

    def to_json(self) -> dict:
        d = asdict(self)
        d["lambda"] = d.pop("lam")
        return d


def parse_rule(text: str) -> tuple[str, float]:
    """Parse ``"val_acc_within=0.05"``, ``"features_per_class=5"`` or ``"lambda=0.01"``."""
    name, _, val = text.partition("=")
    name = name.strip().replace("-", "_")
    if name not in RULES:
        raise ValueError(f"--select: unknown rule {name!r}; expected one of {', '.join(RULES)}")
    if not val:
        val = {"val_acc_within": "0.05", "features_per_class": "5", "lambda": ""}[name]
    try:
        value = float(val)
    except ValueError:
        raise ValueError(f"--select: {name} needs a number, got {val!r}") from None
    if value < 0 or (name == "lambda" and value <= 0):
        raise ValueError(f"--select: {name} must be positive, got {value}")
    return name, value


def select(path: Path, rule: str = "val_acc_within", value: float = 0.05) -> Selection:
    """Pick a point of ``path`` by ``rule`` (see module docstring)."""
    if rule == "val_acc_within":
        acc = path.val_acc
        metric = "val_acc"
        if np.all(np.isnan(acc)):
            log.warning("no validation accuracy on the path; selecting on training accuracy")
            acc, metric = path.train_acc, "train_acc"
        best = np.nanmax(acc)
        ok = np.flatnonzero(acc >= best - value - 1e-12)
        # sparsest = fewest features used; ties go to the larger λ (earlier point)
        idx = int(ok[np.argmin(path.nnz[ok])])
    elif rule == "features_per_class":
        fpc = path.features_per_class
        metric = "features_per_class"
        ok = np.flatnonzero((fpc <= value) & (path.nnz > 0))
        idx = int(ok[-1]) if ok.size else int(np.flatnonzero(path.nnz > 0)[0]) if (path.nnz > 0).any() else 0
    elif rule == "lambda":
        metric = "lambda"
        idx = int(np.argmin(np.abs(np.log(path.lambdas) - np.log(value))))
    else:
        raise ValueError(f"unknown selection rule {rule!r}; expected one of {', '.join(RULES)}")
    return Selection(rule, float(value), idx, float(path.lambdas[idx]), metric)
