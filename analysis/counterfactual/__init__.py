"""Counterfactual tests of spurious features: paste a feature's evidence into images of other
classes (where it sat and at random places), put other objects on the backgrounds of its top
images, and remove it; insert text terms; and measure prediction flips with Wilson intervals
against matched controls (dense, sparse or any external model); each tested image feature gets
a verdict (supports / refutes / inconclusive)."""

from analysis.counterfactual.background import (
    background_plates,
    swap_backgrounds,
    swap_regions,
)
from analysis.counterfactual.cue import (
    CUE_TESTS,
    DECIDING_TESTS,
    CueTestResult,
    cue_test,
    decide,
    feature_verdict,
)
from analysis.counterfactual.evidence import (
    elsewhere_boxes,
    evidence_regions,
    fill_regions,
    firing_masks,
    upsample_maps,
)
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
    check_outputs,
    layer_features,
    sparse_predictor,
    torch_predictor,
)
from analysis.counterfactual.runner import (
    CF_COLUMNS,
    check_features,
    image_counterfactuals,
    read_texts,
    run_counterfactual,
    run_text_counterfactual,
    spurious_features,
    spurious_kinds,
    text_counterfactuals,
    write_counterfactual,
)
from analysis.counterfactual.stats import (
    bootstrap_mean_interval,
    mcnemar_exact,
    paired_comparison,
    wilson_interval,
)
from analysis.counterfactual.text import (
    TermTestResult,
    check_lexicon,
    group_verdicts,
    insert_term,
    term_test,
)

__all__ = [
    "CF_COLUMNS",
    "CUE_TESTS",
    "DECIDING_TESTS",
    "CueTestResult",
    "PatchTestResult",
    "Predictor",
    "TermTestResult",
    "background_plates",
    "bootstrap_mean_interval",
    "callable_predictor",
    "check_features",
    "check_lexicon",
    "check_outputs",
    "control_boxes",
    "crop",
    "cue_test",
    "decide",
    "elsewhere_boxes",
    "evidence_regions",
    "feature_verdict",
    "fill_regions",
    "fire_boxes",
    "firing_masks",
    "group_verdicts",
    "image_counterfactuals",
    "insert_term",
    "layer_features",
    "mcnemar_exact",
    "paired_comparison",
    "paste",
    "patch_test",
    "read_texts",
    "run_counterfactual",
    "run_text_counterfactual",
    "sparse_predictor",
    "spurious_features",
    "spurious_kinds",
    "swap_backgrounds",
    "swap_regions",
    "term_test",
    "text_counterfactuals",
    "torch_predictor",
    "upsample_maps",
    "wilson_interval",
    "write_counterfactual",
]
