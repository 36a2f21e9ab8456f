"""Where a feature fires in an image.

For channel features (feature ``j`` is channel ``j`` of a convolutional layer, average-pooled)
the heatmap is the channel's spatial map before pooling, signed by the class weight, rectified
and upsampled bilinearly to the image size. A late layer's map is coarse (e.g. 8x8 for a 64 px
image), so :func:`gradient_refined_heatmaps` can sharpen it to pixel resolution by multiplying
it with the input-gradient saliency of the same rectified map (the coarse-map x fine-gradient
idea of Guided Grad-CAM, Selvaraju et al., 2017). For features that are not channels, captum's
:class:`~captum.attr.LayerGradCam` (Selvaraju et al., 2017) on a convolutional layer or
:class:`~captum.attr.Occlusion` (Zeiler & Fergus, 2014) on the input give the map instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "channel_heatmaps",
    "gradcam_heatmaps",
    "gradient_refined_heatmaps",
    "normalize_maps",
    "occlusion_heatmaps",
    "upsample",
]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of maps (n, h, w) to (n, H, W)."""
    if maps.shape[-2:] == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear",
                         align_corners=False)[:, 0]


def normalize_maps(maps: torch.Tensor | np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Scale each map (n, H, W) to ``[0, 1]`` by its maximum, then keep only its hot part.

    ``out = clip((m / max(m) - floor) / (1 - floor), 0, 1)``: with ``floor = 0.5`` only the
    region above half the map's peak remains (the red/yellow region a viewer perceives; the
    same idea as Network Dissection's thresholded activation masks, Bau et al., 2017), which
    undoes most of the spread that bilinear upsampling of a coarse map adds. All-zero maps
    stay zero.
    """
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [0, 1), got {floor}")
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    m = np.clip(m.astype(np.float64), 0, None)
    peak = m.reshape(len(m), -1).max(axis=1) if len(m) else np.zeros(0)
    m = m / np.where(peak > 0, peak, 1.0)[:, None, None]
    return np.clip((m - floor) / (1.0 - floor), 0.0, 1.0)


def channel_heatmaps(spatial: torch.Tensor, size: tuple[int, int], sign: float = 1.0
                     ) -> torch.Tensor:
    """Heatmaps from one channel's spatial maps.

    Parameters
    ----------
    spatial : Tensor of shape (n, h, w)
        The feature's map before pooling, for each image.
    size : (H, W)
        Image size.
    sign : float
        Sign of the class weight: negative weights show where the map is most negative.

    Returns
    -------
    Tensor of shape (n, H, W), non-negative (not normalized)
    """
    s = 1.0 if sign >= 0 else -1.0
    return torch.clamp(upsample(s * spatial.float(), size), min=0)


def gradient_refined_heatmaps(
    spatial: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    features: Sequence[int],
    signs: Sequence[float],
    sigma: float | None = None,
) -> torch.Tensor | None:
    """Channel heatmaps sharpened to pixel resolution by input gradients.

    For image ``i`` with feature ``j = features[i]`` and sign ``s = signs[i]``, with
    ``A = relu(s * spatial(x)[i, j])`` (h, w):
    ``heat_i = blur_sigma(upsample(A) * sum_c |dA.sum() / dx_c|)`` (H, W): the gradient
    saliency is spiky, so a Gaussian blur (``sigma`` pixels, default ``max(1, H / 48)``) makes
    the hot region visible. One forward and one backward pass for the whole batch (images are
    independent in eval mode).

    Returns
    -------
    Tensor (n, H, W), non-negative, or None when ``spatial`` is not differentiable (e.g. it
    runs under ``torch.no_grad``).
    """
    x = images.detach().clone().requires_grad_(True)
    idx = torch.arange(len(x), device=x.device)
    feat = torch.as_tensor(list(features), device=x.device)
    sgn = torch.as_tensor([1.0 if s >= 0 else -1.0 for s in signs], device=x.device)
    with torch.enable_grad():
        maps = spatial(x)
        if not maps.requires_grad:
            return None
        act = torch.relu(sgn[:, None, None] * maps[idx, feat].float())
        (grad,) = torch.autograd.grad(act.sum(), x)
    saliency = grad.abs().sum(1)
    heat = (upsample(act.detach(), tuple(x.shape[-2:])) * saliency).detach()
    return gaussian_blur(heat, sigma if sigma is not None else max(1.0, x.shape[-2] / 48))


def gaussian_blur(maps: torch.Tensor, sigma: float, mirror: bool = False) -> torch.Tensor:
    """Separable Gaussian blur of maps (n, H, W) with standard deviation ``sigma`` pixels,
    reaching ``int(3σ + 0.5)`` pixels: zero padding (mass near the border is partly lost), or
    with ``mirror`` the maps reflected at their borders (a flat map stays flat; the reach is
    cut to the side less one where the maps are smaller)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(3 * sigma + 0.5))
    if mirror:
        radius = min(radius, maps.shape[-2] - 1, maps.shape[-1] - 1)
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = maps[:, None]
    if mirror:
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
        return x[:, 0]
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))
    return x[:, 0]


def gradcam_heatmaps(forward: Callable[[torch.Tensor], torch.Tensor], layer: nn.Module,
                     images: torch.Tensor, feature: int, sign: float = 1.0) -> torch.Tensor:
    """LayerGradCam heatmaps of ``forward(images)[:, feature]`` (times ``sign``) on ``layer``.

    Parameters
    ----------
    forward : callable
        ``forward(images (n, 3, H, W)) -> (n, d)`` features; must pass through ``layer``.
    layer : nn.Module
        A convolutional module.

    Returns
    -------
    Tensor (n, H, W), non-negative
    """
    from captum.attr import LayerAttribution, LayerGradCam

    s = 1.0 if sign >= 0 else -1.0
    gc = LayerGradCam(lambda x: s * forward(x), layer)
    attr = gc.attribute(images, target=int(feature), relu_attributions=True)
    up = LayerAttribution.interpolate(attr, tuple(images.shape[-2:]), "bilinear")
    return torch.clamp(up[:, 0].detach(), min=0)


def occlusion_heatmaps(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                       feature: int, sign: float = 1.0, window: int | None = None,
                       stride: int | None = None, baseline: float = 0.5) -> torch.Tensor:
    """Occlusion heatmaps: drop of ``sign * forward(images)[:, feature]`` when a square patch
    is replaced by ``baseline`` (captum's Occlusion), rectified.

    Returns
    -------
    Tensor (n, H, W), non-negative
    """
    from captum.attr import Occlusion

    h = images.shape[-1]
    window = window or max(2, h // 8)
    stride = stride or max(1, window // 2)
    s = 1.0 if sign >= 0 else -1.0
    occ = Occlusion(lambda x: s * forward(x))
    attr = occ.attribute(images, target=int(feature), baselines=baseline,
                         sliding_window_shapes=(images.shape[1], window, window),
                         strides=(images.shape[1], stride, stride))
    return torch.clamp(attr.sum(1).detach(), min=0)
