"""Analysis of crowd answers: quality control, aggregation, reports, counterfactual tests."""

import importlib
from typing import Any

# Names are imported on first use (PEP 562), so ``sparse-probe report --study`` does not pay for
# matplotlib, crowd-kit and the run-directory report when it needs none of them.
# ``aggregate`` (pandas only; crowd-kit is imported when a model is fitted) is bound now: the
# function must shadow the submodule of the same name, as it always has.
from analysis.aggregate import METHODS, aggregate, aggregate_question, majority_vote, to_crowdkit

_LAZY = {
    "ExternalMapping": "analysis.ingest",
    "IngestError": "analysis.ingest",
    "QCConfig": "analysis.quality",
    "QCResult": "analysis.quality",
    "ReportOptions": "analysis.report",
    "agreement_summary": "analysis.agreement",
    "answers_from_assignments": "analysis.ingest",
    "bootstrap_ci": "analysis.agreement",
    "build_report": "analysis.report",
    "class_weight_shares": "analysis.report",
    "compute_verdicts": "analysis.verdicts",
    "fleiss_kappa": "analysis.agreement",
    "krippendorff_alpha_nominal": "analysis.agreement",
    "load_answers": "analysis.ingest",
    "load_manifest": "analysis.ingest",
    "parse_question_form_answers": "analysis.ingest",
    "quality_control": "analysis.quality",
    "rank_descriptions": "analysis.verdicts",
    "StudyError": "analysis.study",
    "load_study": "analysis.study",
    "build_study_report": "analysis.study_report",
    "StudyReportOptions": "analysis.study_report",
    "write_synthetic_study": "analysis.synthetic_study",
    "read_batch_csv": "analysis.ingest",
    "read_external_csv": "analysis.ingest",
    "unanimous_share": "analysis.agreement",
}

__all__ = [
    "METHODS",
    "ExternalMapping",
    "IngestError",
    "QCConfig",
    "QCResult",
    "ReportOptions",
    "StudyError",
    "StudyReportOptions",
    "aggregate",
    "aggregate_question",
    "agreement_summary",
    "answers_from_assignments",
    "bootstrap_ci",
    "build_report",
    "build_study_report",
    "class_weight_shares",
    "compute_verdicts",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "load_answers",
    "load_manifest",
    "load_study",
    "majority_vote",
    "parse_question_form_answers",
    "quality_control",
    "rank_descriptions",
    "read_batch_csv",
    "read_external_csv",
    "to_crowdkit",
    "unanimous_share",
    "write_synthetic_study",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
