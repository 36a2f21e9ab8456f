"""Image parameterizations for feature visualization: FFT spectrum + decorrelated color.

Following Olah et al., "Feature Visualization" (Distill, 2017) and lucent's ``optvis.param``:
the image is optimized in a scaled Fourier basis (which whitens natural-image statistics, so
gradient steps are not dominated by high frequencies) and in a decorrelated color space (the
square root of ImageNet's color covariance), then squashed into ``[0, 1]`` with a sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT",
    "ImageParam",
    "decorrelate_color",
    "fft_image",
    "image_param",
    "rfft2d_freqs",
]

#: Square root (via SVD) of the RGB covariance of ImageNet pixels, as used by lucid/lucent.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
_COLOR_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """Frequency magnitudes of a real 2-D FFT, shape ``(h, w // 2 + 1)``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def fft_image(
    shape: tuple[int, int, int, int],
    *,
    sd: float = 0.01,
    decay_power: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """Fourier-parameterized image batch.

    The spectrum coefficients ``c`` (real and imaginary parts, shape ``(b, ch, h, w//2+1, 2)``)
    are scaled by ``1 / max(f, 1/max(h, w)) ** decay_power`` (``f`` the frequency magnitude)
    and inverted with an orthonormal real inverse FFT, so every frequency starts with equal
    energy in the whitened space.

    Parameters
    ----------
    shape : (b, ch, h, w)
        Batch of images to produce.
    sd : float
        Standard deviation of the initial coefficients.
    decay_power : float
        Exponent of the 1/f spectrum scaling.
    generator : torch.Generator, optional
        Source of the initial coefficients (CPU generator; fixes the result for a seed).

    Returns
    -------
    params : list of Tensor
        The leaf tensors to optimize.
    image_fn : callable
        ``image_fn() -> Tensor (b, ch, h, w)`` in an unbounded (pre-sigmoid) space.
    """
    b, ch, h, w = shape
    freqs = rfft2d_freqs(h, w)
    init = torch.randn((b, ch, *freqs.shape, 2), generator=generator) * sd
    spectrum = init.to(device).requires_grad_(True)
    scale_np = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    scale = torch.tensor(scale_np, dtype=torch.float32, device=device)[None, None, ..., None]

    def image_fn() -> torch.Tensor:
        coeffs = torch.view_as_complex((scale * spectrum).contiguous())
        image = torch.fft.irfftn(coeffs, s=(h, w), norm="ortho")
        return image / 4.0

    return [spectrum], image_fn


def decorrelate_color(image: torch.Tensor) -> torch.Tensor:
    """Map an image from the decorrelated color basis to RGB, ``(b, 3, h, w) -> (b, 3, h, w)``."""
    m = torch.as_tensor(_COLOR_NORMALIZED, dtype=image.dtype, device=image.device)
    return torch.einsum("bchw,dc->bdhw", image, m)


class ImageParam:
    """A batch of optimizable images: ``param()`` returns RGB in ``[0, 1]``, shape (b, 3, h, w).

    Attributes
    ----------
    params : list of Tensor
        Leaf tensors for the optimizer.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        image_fn: Callable[[], torch.Tensor],
        decorrelate: bool = True,
    ) -> None:
        self.params = params
        self._image_fn = image_fn
        self.decorrelate = decorrelate

    def __call__(self) -> torch.Tensor:
        image = self._image_fn()
        if self.decorrelate:
            image = decorrelate_color(image)
        return torch.sigmoid(image)


def image_param(
    batch: int,
    size: int | tuple[int, int],
    *,
    fft: bool = True,
    decorrelate: bool = True,
    sd: float = 0.01,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ImageParam:
    """FFT + color-decorrelated (default) or plain pixel parameterization of ``batch`` images."""
    h, w = (size, size) if isinstance(size, int) else size
    if fft:
        params, image_fn = fft_image((batch, 3, h, w), sd=sd, generator=generator, device=device)
    else:
        pixels = (torch.randn((batch, 3, h, w), generator=generator) * sd).to(device)
        pixels.requires_grad_(True)
        params, image_fn = [pixels], lambda: pixels
    return ImageParam(params, image_fn, decorrelate=decorrelate)
