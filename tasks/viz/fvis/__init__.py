"""Feature visualization by optimization: parameterizations, transforms, objectives, render."""

from tasks.viz.fvis.objectives import Objective, batched_channels, channel, neuron
from tasks.viz.fvis.param import ImageParam, decorrelate_color, fft_image, image_param
from tasks.viz.fvis.render import RenderResult, render, visualize_channels
from tasks.viz.fvis.transforms import (
    compose,
    jitter,
    pad,
    random_rotate,
    random_scale,
    standard_transforms,
)

__all__ = [
    "ImageParam",
    "Objective",
    "RenderResult",
    "batched_channels",
    "channel",
    "compose",
    "decorrelate_color",
    "fft_image",
    "image_param",
    "jitter",
    "neuron",
    "pad",
    "random_rotate",
    "random_scale",
    "render",
    "standard_transforms",
    "visualize_channels",
]
