"""Counterfactual tests of spurious features: paste image patterns, insert text terms, and
measure prediction flips with Wilson intervals (dense, sparse or any external model)."""

from analysis.counterfactual.image import (
    PatchTestResult,
    control_boxes,
    crop,
    fire_boxes,
    paste,
    patch_test,
)
from analysis.counterfactual.models import (
    Predictor,
    callable_predictor,
    layer_features,
    sparse_predictor,
    torch_predictor,
)
from analysis.counterfactual.runner import (
    CF_COLUMNS,
    image_counterfactuals,
    run_counterfactual,
    spurious_features,
    text_counterfactuals,
    write_counterfactual,
)
from analysis.counterfactual.stats import mcnemar_exact, paired_comparison, wilson_interval
from analysis.counterfactual.text import TermTestResult, insert_term, term_test

__all__ = [
    "CF_COLUMNS",
    "PatchTestResult",
    "Predictor",
    "TermTestResult",
    "callable_predictor",
    "control_boxes",
    "crop",
    "fire_boxes",
    "image_counterfactuals",
    "insert_term",
    "layer_features",
    "mcnemar_exact",
    "paired_comparison",
    "paste",
    "patch_test",
    "run_counterfactual",
    "sparse_predictor",
    "spurious_features",
    "term_test",
    "text_counterfactuals",
    "torch_predictor",
    "wilson_interval",
    "write_counterfactual",
]
