"""Robustness transforms applied to the image at every optimization step (lucent's
``optvis.transform``): padding, jitter, random scale and random rotation. Randomness comes from
an explicit ``torch.Generator`` so renders are reproducible for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "compose",
    "jitter",
    "pad",
    "random_rotate",
    "random_scale",
    "standard_transforms",
]

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(values: Sequence[float], gen: torch.Generator) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=gen))])


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels with a constant (gray by default)."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return F.pad(x, (width, width, width, width), mode="constant", value=value)

    return inner


def jitter(d: int) -> Transform:
    """Random crop that shifts the image by up to ``d - 1`` pixels in each direction."""
    if d < 1:
        raise ValueError("jitter: d must be >= 1")

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(d, (2,), generator=gen))
        h, w = x.shape[-2:]
        return x[..., dy : h - d + dy + 1, dx : w - d + dx + 1]

    return inner


def random_scale(scales: Sequence[float]) -> Transform:
    """Rescale by a factor drawn from ``scales`` (bilinear)."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = _choice(scales, gen)
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return inner


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate by an angle (degrees) drawn from ``angles``, about the image center."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        theta = math.radians(_choice(angles, gen))
        c, s = math.cos(theta), math.sin(theta)
        mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(mat.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    return inner


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for t in transforms:
            x = t(x, gen)
        return x

    return inner


def standard_transforms(size: int) -> list[Transform]:
    """Lucent's standard transforms, with pixel amounts scaled to an image of side ``size``.

    At 224 px this is pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4.
    """
    k = max(size / 224.0, 0.15)
    return [
        pad(max(1, round(12 * k))),
        jitter(max(1, round(8 * k))),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate([*range(-10, 11), 0, 0, 0, 0, 0]),
        jitter(max(1, round(4 * k))),
    ]
