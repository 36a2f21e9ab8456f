"""Visual evidence for HITs: top-activating examples, grids, heatmaps, feature visualizations
(:mod:`tasks.viz.fvis`), text attributions, word clouds, and ground-truth evidence shares."""

from tasks.viz.evidence import (
    GOLD_ANSWERS,
    gold_answer,
    image_evidence,
    text_evidence,
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
from tasks.viz.source import ExampleSource, SplitImages, load_source
from tasks.viz.text_attr import highlight_html, occlusion_attributions, word_scores
from tasks.viz.topk import direction_for, top_k
from tasks.viz.wordcloud import cloud_html, cloud_png, top_words

__all__ = [
    "GOLD_ANSWERS",
    "ExampleSource",
    "SplitImages",
    "channel_heatmaps",
    "cloud_html",
    "cloud_png",
    "colorize",
    "direction_for",
    "gaussian_blur",
    "gold_answer",
    "gradcam_heatmaps",
    "gradient_refined_heatmaps",
    "highlight_html",
    "image_evidence",
    "image_grid",
    "load_source",
    "normalize_maps",
    "occlusion_attributions",
    "occlusion_heatmaps",
    "overlay",
    "save_png",
    "text_evidence",
    "to_uint8",
    "top_k",
    "top_words",
    "truth_from_evidence",
    "upsample",
    "word_scores",
]
