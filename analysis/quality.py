"""Quality control of crowd workers: gold accuracy, attention checks, work-time outliers.

A worker is excluded (all their answers dropped before aggregation) when a rule of
:class:`QCConfig` fails; :func:`quality_control` returns the per-worker table with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["QCConfig", "QCResult", "assignment_checks", "quality_control"]

logger = logging.getLogger(__name__)


@dataclass
class QCConfig:
    """Exclusion rules.

    Attributes
    ----------
    min_gold_accuracy : float
        Exclude workers whose share of correctly answered gold HITs is below this (only judged
        when they answered at least ``min_gold_answers`` gold HITs).
    min_gold_answers : int
        Gold HITs a worker must have answered before ``min_gold_accuracy`` applies.
    require_attention : bool
        Exclude workers whose attention-check pass rate is below ``min_attention_rate``.
    min_attention_rate : float
        Required share of passed attention checks (1.0 = every check).
    min_seconds : float
        An assignment faster than this many seconds is "fast".
    min_time_fraction : float
        An assignment faster than this fraction of the median work time of all assignments is
        "fast" (a robust outlier rule; the log-time robust z-score is reported alongside).
    min_robust_z : float, optional
        Also call an assignment "fast" when the robust z-score of its log work time
        (median / 1.4826 MAD) is below this (e.g. -3).
    max_fast_share : float
        Exclude workers with more than this share of fast assignments.
    """

    min_gold_accuracy: float = 0.6
    min_gold_answers: int = 1
    require_attention: bool = True
    min_attention_rate: float = 1.0
    min_seconds: float = 0.0
    min_time_fraction: float = 0.2
    min_robust_z: float | None = None
    max_fast_share: float = 0.5

    def to_dict(self) -> dict:
        """Plain dict (for report.json)."""
        return asdict(self)


@dataclass
class QCResult:
    """Result of :func:`quality_control`.

    Attributes
    ----------
    workers : DataFrame
        One row per worker: ``worker_id, n_assignments, n_gold, gold_accuracy, n_attention,
        attention_rate, median_seconds, fast_share, min_robust_z, excluded, reason``.
    assignments : DataFrame
        One row per assignment with its checks (``gold_correct``, ``attention_pass``, ``fast``,
        ``robust_z``).
    kept : DataFrame
        The answers of the kept workers (same columns as the input).
    config : QCConfig
        The rules applied.
    """

    workers: pd.DataFrame
    assignments: pd.DataFrame
    kept: pd.DataFrame
    config: QCConfig

    @property
    def excluded(self) -> pd.DataFrame:
        """Excluded workers with the reason."""
        return self.workers.loc[self.workers["excluded"],
                                ["worker_id", "reason", "n_assignments"]].reset_index(drop=True)


def _norm(v: object) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    return str(v).strip().lower()


def assignment_checks(
    answers: pd.DataFrame, manifest: pd.DataFrame, config: QCConfig | None = None
) -> pd.DataFrame:
    """Per-assignment gold, attention and work-time checks.

    Parameters
    ----------
    answers : DataFrame
        Long answer table.
    manifest : DataFrame
        Manifest (``hit_key, is_gold, gold, attention``).
    config : QCConfig, optional

    Returns
    -------
    DataFrame
        ``assignment_id, worker_id, hit_key, work_seconds, gold_correct (bool or NA),
        attention_pass (bool or NA), robust_z, fast``. The gold answer is compared field by field
        (case-insensitive); ``pattern`` is only compared when the gold says ``shared = yes``.
        ``robust_z`` = (log t - median log t) / (1.4826 MAD of log t).
    """
    config = config or QCConfig()
    by_key = manifest.set_index("hit_key")
    wide = answers.pivot_table(index="assignment_id", columns="question", values="answer",
                               aggfunc="first")
    meta = answers.groupby("assignment_id", sort=False).agg(
        worker_id=("worker_id", "first"), hit_key=("hit_key", "first"),
        work_seconds=("work_seconds", "first"))
    meta = meta.join(wide)
    gold_col, att_col = [], []
    for aid, row in meta.iterrows():
        key = row["hit_key"]
        info = by_key.loc[key] if key in by_key.index else None
        gold = info["gold"] if info is not None else None
        if info is not None and bool(info["is_gold"]) and isinstance(gold, dict):
            ok = True
            for q, expected in gold.items():
                if expected is None:
                    continue
                if q == "pattern" and _norm(gold.get("shared")) not in (None, "yes"):
                    continue
                got = _norm(row[q]) if q in row.index else None
                ok = ok and got == _norm(expected)
            gold_col.append(ok)
        else:
            gold_col.append(pd.NA)
        att = info["attention"] if info is not None else None
        if isinstance(att, dict) and att.get("field"):
            got = _norm(row[att["field"]]) if att["field"] in row.index else None
            att_col.append(got == _norm(att.get("expected")))
        else:
            att_col.append(pd.NA)
        del aid
    meta["gold_correct"] = pd.array(gold_col, dtype="boolean")
    meta["attention_pass"] = pd.array(att_col, dtype="boolean")
    t = meta["work_seconds"].astype(float)
    valid = t[t > 0]
    if len(valid):
        logt = np.log(valid)
        med = float(np.median(logt))
        mad = float(np.median(np.abs(logt - med))) * 1.4826
        z = (np.log(t.where(t > 0)) - med) / (mad if mad > 0 else 1.0)
        median_t = float(np.median(valid))
        fast = (t < config.min_time_fraction * median_t) | (t < config.min_seconds)
        if config.min_robust_z is not None:
            fast |= z < config.min_robust_z
    else:
        z = pd.Series(np.nan, index=t.index)
        fast = pd.Series(False, index=t.index)
    meta["robust_z"] = z
    meta["fast"] = fast.fillna(False).astype(bool)
    keep = ["worker_id", "hit_key", "work_seconds", "gold_correct", "attention_pass",
            "robust_z", "fast"]
    return meta[keep].reset_index()


def quality_control(
    answers: pd.DataFrame, manifest: pd.DataFrame, config: QCConfig | None = None
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

    Returns
    -------
    QCResult
    """
    config = config or QCConfig()
    cols = ["worker_id", "n_assignments", "n_gold", "gold_accuracy", "n_attention",
            "attention_rate", "median_seconds", "fast_share", "min_robust_z", "excluded",
            "reason"]
    if answers.empty:
        empty = pd.DataFrame(columns=cols)
        return QCResult(empty, pd.DataFrame(), answers, config)
    checks = assignment_checks(answers, manifest, config)
    g = checks.groupby("worker_id", sort=True)
    workers = pd.DataFrame({
        "n_assignments": g.size(),
        "n_gold": g["gold_correct"].count(),
        "gold_accuracy": g["gold_correct"].apply(
            lambda s: float(s.dropna().astype(float).mean()) if s.notna().any() else np.nan),
        "n_attention": g["attention_pass"].count(),
        "attention_rate": g["attention_pass"].apply(
            lambda s: float(s.dropna().astype(float).mean()) if s.notna().any() else np.nan),
        "median_seconds": g["work_seconds"].median(),
        "fast_share": g["fast"].mean(),
        "min_robust_z": g["robust_z"].min(),
    }).reset_index()
    reasons = []
    for _, w in workers.iterrows():
        r = []
        if w["n_gold"] >= max(config.min_gold_answers, 1) and \
                w["gold_accuracy"] < config.min_gold_accuracy:
            r.append(f"gold accuracy {w['gold_accuracy']:.2f} < {config.min_gold_accuracy:.2f}")
        if config.require_attention and w["n_attention"] > 0 and \
                w["attention_rate"] < config.min_attention_rate:
            r.append(f"attention checks passed {w['attention_rate']:.2f} "
                     f"< {config.min_attention_rate:.2f}")
        if w["fast_share"] > config.max_fast_share:
            r.append(f"{w['fast_share']:.0%} of assignments too fast")
        reasons.append("; ".join(r))
    workers["reason"] = reasons
    workers["excluded"] = workers["reason"] != ""
    workers = workers[cols]
    bad = set(workers.loc[workers["excluded"], "worker_id"])
    kept = answers[~answers["worker_id"].isin(bad)].reset_index(drop=True)
    logger.info("quality control: %d of %d workers excluded", len(bad), len(workers))
    return QCResult(workers, checks, kept, config)
