"""Analysis of crowd answers: quality control, aggregation, reports, counterfactual tests."""

from analysis.aggregate import METHODS, aggregate, aggregate_question, majority_vote, to_crowdkit
from analysis.agreement import (
    agreement_summary,
    bootstrap_ci,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    unanimous_share,
)
from analysis.ingest import (
    ExternalMapping,
    IngestError,
    answers_from_assignments,
    load_answers,
    load_manifest,
    parse_question_form_answers,
    read_batch_csv,
    read_external_csv,
)
from analysis.quality import QCConfig, QCResult, quality_control
from analysis.report import ReportOptions, build_report, class_weight_shares
from analysis.verdicts import compute_verdicts, rank_descriptions

__all__ = [
    "METHODS",
    "ExternalMapping",
    "IngestError",
    "QCConfig",
    "QCResult",
    "ReportOptions",
    "aggregate",
    "aggregate_question",
    "agreement_summary",
    "answers_from_assignments",
    "bootstrap_ci",
    "build_report",
    "class_weight_shares",
    "compute_verdicts",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "load_answers",
    "load_manifest",
    "majority_vote",
    "parse_question_form_answers",
    "quality_control",
    "rank_descriptions",
    "read_batch_csv",
    "read_external_csv",
    "to_crowdkit",
    "unanimous_share",
]
