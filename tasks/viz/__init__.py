"""Visual evidence for HITs: top-activating examples, grids, heatmaps, LIME superpixel maps and
contrast panels (:mod:`tasks.viz.panels`), feature visualizations (:mod:`tasks.viz.fvis`), text
attributions, word clouds, ground-truth evidence shares, and the ground truth by intervention
(:mod:`tasks.viz.intervention`)."""

from tasks.viz.evidence import (
    GOLD_ANSWERS,
    gold_answer,
    image_evidence,
    reader_evidence,
    text_evidence,
    trusted_panel,
    truth_from_evidence,
)
from tasks.viz.grid import colorize, image_grid, overlay, save_png, to_uint8
from tasks.viz.heatmap import (
    channel_heatmaps,
    gaussian_blur,
    gradcam_heatmaps,
    gradient_refined_heatmaps,
    normalize_maps,
    occlusion_heatmaps,
    upsample,
)
from tasks.viz.intervention import feature_removal, text_feature_removal, truth_from_removal
from tasks.viz.lime import lime_coefficients, lime_maps
from tasks.viz.panels import HIT_PANELS, MAP_PANELS, PanelEvidence, panel_evidence
from tasks.viz.perturb import (
    Contrast,
    colour_kept,
    contrast,
    feature_scorer,
    fill_from_surround,
    fill_removed,
    greyscale,
    surround_fill,
)
from tasks.viz.source import ExampleSource, SplitImages, load_source
from tasks.viz.superpixels import slic_superpixels
from tasks.viz.text_attr import highlight_html, occlusion_attributions, word_scores
from tasks.viz.topk import direction_for, top_k
from tasks.viz.wordcloud import cloud_html, cloud_png, top_words

__all__ = [
    "GOLD_ANSWERS",
    "HIT_PANELS",
    "MAP_PANELS",
    "Contrast",
    "ExampleSource",
    "PanelEvidence",
    "SplitImages",
    "channel_heatmaps",
    "cloud_html",
    "cloud_png",
    "colorize",
    "colour_kept",
    "contrast",
    "direction_for",
    "feature_removal",
    "feature_scorer",
    "fill_from_surround",
    "fill_removed",
    "gaussian_blur",
    "gold_answer",
    "gradcam_heatmaps",
    "gradient_refined_heatmaps",
    "greyscale",
    "highlight_html",
    "image_evidence",
    "image_grid",
    "lime_coefficients",
    "lime_maps",
    "load_source",
    "normalize_maps",
    "occlusion_attributions",
    "occlusion_heatmaps",
    "overlay",
    "panel_evidence",
    "reader_evidence",
    "save_png",
    "slic_superpixels",
    "surround_fill",
    "text_evidence",
    "text_feature_removal",
    "to_uint8",
    "top_k",
    "top_words",
    "trusted_panel",
    "truth_from_evidence",
    "truth_from_removal",
    "upsample",
    "word_scores",
]
