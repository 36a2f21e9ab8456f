"""Quality control of crowd workers for the report: exclusion by the one worker-quality rule.

What a worker's gold accuracy, attention-check pass rate and work time are, and when a rule
fails, is defined once in :mod:`sparse_probe.quality` (``tasks review`` pays by the same
numbers). Here a worker failing any rule of :class:`QCConfig` is *excluded*: all their answers
are dropped before aggregation; :func:`quality_control` returns the per-worker table with the
reason. Quality control is proportionate: a worker who failed no more attention checks than
``attention_tolerance`` (default 1) is kept and flagged for ``review``, so one slip never
erases a perfect gold record. An assignment without a worker id is judged as a worker of its
own (:func:`sparse_probe.quality.name_anonymous`) and keeps that name in the kept answers, so
aggregation counts it as one voter, not pooled with every other anonymous assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sparse_probe.quality import QualityRules, judge_workers, name_anonymous, worker_quality
from sparse_probe.quality import assignment_checks as _assignment_checks
from sparse_probe.questions import QuestionSchema

__all__ = ["QCConfig", "QCResult", "assignment_checks", "quality_control"]

logger = logging.getLogger(__name__)

#: Exclusion rules: :class:`sparse_probe.quality.QualityRules` (the name analysis code uses).
QCConfig = QualityRules

_WORKER_COLUMNS = ["worker_id", "n_assignments", "n_gold", "gold_accuracy", "n_attention",
                   "n_attention_failed", "attention_rate", "median_seconds", "fast_share",
                   "min_robust_z", "excluded", "review", "reason"]


@dataclass
class QCResult:
    """Result of :func:`quality_control`.

    Attributes
    ----------
    workers : DataFrame
        One row per worker: ``worker_id, n_assignments, n_gold, gold_accuracy, n_attention,
        n_attention_failed, attention_rate, median_seconds, fast_share, min_robust_z,
        excluded, review, reason``.
    assignments : DataFrame
        One row per assignment with its checks (``gold_correct``, ``attention_pass``, ``fast``,
        ``robust_z``).
    kept : DataFrame
        The answers of the kept workers (same columns as the input; an assignment without a
        worker id carries the id :func:`~sparse_probe.quality.name_anonymous` gave it).
    config : QCConfig
        The rules applied.
    """

    workers: pd.DataFrame
    assignments: pd.DataFrame
    kept: pd.DataFrame
    config: QualityRules

    @property
    def excluded(self) -> pd.DataFrame:
        """Excluded workers with the reason."""
        return self.workers.loc[self.workers["excluded"],
                                ["worker_id", "reason", "n_assignments"]].reset_index(drop=True)


def assignment_checks(
    answers: pd.DataFrame, manifest: pd.DataFrame | Sequence[Mapping[str, Any]],
    config: QualityRules | None = None, schema: QuestionSchema | None = None,
) -> pd.DataFrame:
    """Per-assignment gold, attention and work-time checks
    (:func:`sparse_probe.quality.assignment_checks`).

    Returns
    -------
    DataFrame
        ``assignment_id, worker_id, hit_key, work_seconds, gold_correct (bool or NA),
        attention_pass (bool or NA), robust_z, fast``.
    """
    return _assignment_checks(answers, manifest, config, schema)


def quality_control(
    answers: pd.DataFrame, manifest: pd.DataFrame | Sequence[Mapping[str, Any]],
    config: QualityRules | None = None, schema: QuestionSchema | None = None,
) -> QCResult:
    """Score workers and drop those failing the rules.

    Parameters
    ----------
    answers : DataFrame
        Long answer table.
    manifest : DataFrame
        Manifest with ``gold`` and ``attention``.
    config : QCConfig, optional
        Exclusion rules (default :class:`QCConfig`).
    schema : QuestionSchema, optional
        The study's questions (which fields a gold answer covers); default built-in.

    Returns
    -------
    QCResult
    """
    config = config or QCConfig()
    answers = name_anonymous(answers)
    if answers.empty:
        return QCResult(pd.DataFrame(columns=_WORKER_COLUMNS), pd.DataFrame(), answers, config)
    checks = _assignment_checks(answers, manifest, config, schema)
    workers = judge_workers(worker_quality(answers, manifest, checks=checks), config)
    workers = workers[_WORKER_COLUMNS]
    bad = set(workers.loc[workers["excluded"], "worker_id"])
    kept = answers[~answers["worker_id"].isin(bad)].reset_index(drop=True)
    logger.info("quality control: %d of %d workers excluded", len(bad), len(workers))
    return QCResult(workers, checks, kept, config)
