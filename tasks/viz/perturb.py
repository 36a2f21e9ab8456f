"""Perturbing images to see what a feature needs: the feature's value as a function of the
image, the "removed" fill, and contrast panels (a region removed vs only that region kept).

A region is *removed* by filling it from the rest of its image where a copy continues the
surroundings and replaces what the region shows (:func:`surround_fill`: an object on a striped
background leaves the stripes running through where it was, a watermark or an edge bar the
background beside it), else by painting it neutral grey (0.5 in every channel, the occlusion
baseline of :func:`tasks.viz.heatmap.occlusion_heatmaps`: a region that is more of what
surrounds it, such as a patch of the background, or more than half the image). Grey erases
marks, stripes, tints and shapes alike (a blur would leave a tint and a superpixel's own mean
colour a mark; the image's mean colour keeps a tint that covers most of the image, which
``benchmarks/measure_evidence.py`` showed hides a tint feature from LIME), but it also cuts a
hole in a striped background, so a feature of the stripes seemed to need the object. Keeping
only a region paints the rest grey; LIME's own perturbations stay grey (:mod:`tasks.viz.lime`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tasks.viz.heatmap import gaussian_blur

__all__ = ["DETAIL_SIGMA", "FILL", "FILL_BAND", "FILL_CHANGE", "FILL_SPREAD", "LUMA", "Contrast",
           "blurred", "colour_kept", "contrast", "detail_kept",
           "feature_scorer", "fill_from_surround", "fill_removed", "greyscale", "surround_fill"]

#: The colour a removed region is painted with (images in [0, 1]).
FILL = 0.5

#: Luminance weights of R, G, B (ITU-R BT.601): the grey an image keeps without its colour.
LUMA = (0.299, 0.587, 0.114)

#: ``score(images (m, 3, H, W)) -> (m,)``
Scorer = Callable[[torch.Tensor], torch.Tensor]


def feature_scorer(features: Sequence[int], signs: Sequence[float],
                   spatial: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   pooled: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   batch: int = 256) -> Callable[[torch.Tensor, np.ndarray], np.ndarray]:
    """``score(images, which) -> (m,)``: the signed value of feature ``features[which[r]]`` on
    image ``r`` (the spatial map's mean for channel features, else ``pooled``'s column), run
    without gradients in batches of ``batch``.

    Parameters
    ----------
    features, signs : sequences of equal length
        Feature index and the sign of its class weight, per shown image.
    spatial : callable, optional
        ``(m, 3, H, W) -> (m, d, h, w)``.
    pooled : callable, optional
        ``(m, 3, H, W) -> (m, d)``; used when ``spatial`` is None.
    """
    if spatial is None and pooled is None:
        raise ValueError("feature_scorer needs spatial maps or a feature function")
    feat = np.asarray(features, np.int64)
    sgn = np.where(np.asarray(signs, np.float64) >= 0, 1.0, -1.0)

    def score(images: torch.Tensor, which: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch):
            x = images[s : s + batch]
            w = np.asarray(which[s : s + batch])
            with torch.no_grad():
                if spatial is not None:
                    m = spatial(x)
                    v = m[torch.arange(len(x)), torch.as_tensor(feat[w])].float().mean((1, 2))
                else:
                    v = pooled(x)[torch.arange(len(x)), torch.as_tensor(feat[w])].float()
            out.append(v.detach().cpu().numpy().astype(np.float64) * sgn[w])
        return np.concatenate(out) if out else np.zeros(0)

    return score


def fill_removed(images: torch.Tensor, remove: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``images`` (n, 3, H, W) with the pixels where ``remove`` (n, H, W), in [0, 1], is 1
    painted :data:`FILL` grey (soft masks blend)."""
    r = torch.as_tensor(np.asarray(remove, np.float32) if not isinstance(remove, torch.Tensor)
                        else remove, dtype=images.dtype, device=images.device)[:, None]
    return images * (1 - r) + FILL * r


#: Width in pixels of the ring around a removed region that a copied fill must continue.
FILL_BAND = 2
#: A copied fill replaces a region only when it changes the region at least this many times
#: as much as it misses the ring around it (mean squared difference per pixel): a region that
#: the rest of the image continues seamlessly (a patch of a striped or plain background, half
#: of a symmetric shape) is more of the same, and copying over it would remove nothing.
FILL_CHANGE = 10.0
#: ... and at least this share of the region's own variance: a copy of a striped patch from
#: a shift near the stripes' period matches its ring exactly and differs inside only where
#: the period is not a whole number of pixels, i.e. it puts the same stripes back.
FILL_SPREAD = 0.5


def _dilate(mask: np.ndarray, band: int) -> np.ndarray:
    """``mask`` grown by ``band`` pixels (8-neighbour, one pixel a round)."""
    g = mask.copy()
    for _ in range(band):
        h = g.copy()
        h[1:] |= g[:-1]
        h[:-1] |= g[1:]
        v = h.copy()
        v[:, 1:] |= h[:, :-1]
        v[:, :-1] |= h[:, 1:]
        g = v
    return g


def surround_fill(image: np.ndarray, region: np.ndarray, band: int = FILL_BAND,
                  change: float = FILL_CHANGE) -> np.ndarray | None:
    """``image`` with ``region`` filled from the rest of the image, piece by piece, where the
    copy continues the surroundings and replaces what the region shows; else None.

    Parameters
    ----------
    image : ndarray of shape (3, H, W)
    region : bool ndarray of shape (H, W)
    band, change
        :data:`FILL_BAND`, :data:`FILL_CHANGE`.

    Returns
    -------
    ndarray of shape (3, H, W), float64, or None
        None when the region is empty or more than half the image, when some piece has no
        shift that keeps it and its ring inside the image with their sources off the region,
        or when the copy changes the region by no more than ``change`` times its mismatch on
        the rings or :data:`FILL_SPREAD` times the region's own variance (mean squared
        differences per pixel, summed over the channels).

    Notes
    -----
    Exemplar-based completion by offsets (Criminisi, Pérez & Toyama, IEEE TIP 2004; one offset
    per piece as in He & Sun, "Statistics of patch offsets for image completion", ECCV 2012):
    the region ``M`` is cut into square tiles of a quarter of the image's side; for the piece
    ``M_t`` in each, its ring ``B_t`` (pixels within ``band`` of it that lie outside ``M`` or
    in pieces filled already; the piece with the largest ring goes first) is matched against
    every shift ``s`` at once, ``Σ_{p∈B_t} |I(p+s) − J(p)|²`` (``J`` the image as filled so
    far) from cross-correlations by FFT, over the shifts that move ``M_t ∪ B_t`` inside the
    image and off ``M``; the piece is copied from ``I`` at its best shift (ties: the
    shortest). A periodic texture is continued at a
    multiple of its period, a plain background by any shift.
    """
    M = np.asarray(region, bool)
    H, W = M.shape
    area = int(M.sum())
    if area == 0 or 2 * area > H * W:
        return None
    x = np.asarray(image, np.float64)
    shape = (2 * H, 2 * W)
    fft = functools.partial(np.fft.rfft2, s=shape)
    f_img, f_sq = [fft(c) for c in x], [fft(c * c) for c in x]
    f_inside, f_m = fft(np.ones((H, W))), fft(M.astype(np.float64))
    dy = np.fft.fftfreq(shape[0], 1.0 / shape[0])[:, None]
    dx = np.fft.fftfreq(shape[1], 1.0 / shape[1])[None, :]
    tie = 1e-9 * (dy * dy + dx * dx)
    out = x.copy()
    seam = replaced = 0.0
    ring_px = 0
    side = max(8, H // 4)
    pieces = []
    for y0 in range(0, H, side):
        for x0 in range(0, W, side):
            piece = np.zeros_like(M)
            piece[y0:y0 + side, x0:x0 + side] = M[y0:y0 + side, x0:x0 + side]
            if piece.any():
                pieces.append(piece)
    known = ~M
    while pieces:  # the piece with the most known pixels around it first (onion order)
        rings = [_dilate(p, band) & known for p in pieces]
        k = max(range(len(pieces)), key=lambda t: int(rings[t].sum()))
        piece, ring = pieces.pop(k), rings[k]
        U = (piece | ring).astype(np.float64)
        fu = np.conj(fft(U))
        inside = np.fft.irfft2(fu * f_inside, s=shape)
        on_region = np.fft.irfft2(fu * f_m, s=shape)
        valid = (inside > U.sum() - 0.5) & (on_region < 0.5)
        if not valid.any():
            return None
        fr = ring.astype(np.float64)
        f_ring = np.conj(fft(fr))
        cost = np.full(shape, float((out[:, ring] ** 2).sum()))
        for c, fi, fs in zip(out, f_img, f_sq, strict=True):
            cost += np.fft.irfft2(f_ring * fs - 2.0 * np.conj(fft(fr * c)) * fi, s=shape)
        i, j = np.unravel_index(int(np.argmin(np.where(valid, cost + tie, np.inf))), shape)
        sy, sx = int(dy[i, 0]), int(dx[0, j])
        ys, xs = np.nonzero(piece)
        out[:, ys, xs] = x[:, ys + sy, xs + sx]
        known = known | piece
        seam += max(float(cost[i, j]), 0.0)
        ring_px += int(ring.sum())
        replaced += float(((out[:, ys, xs] - x[:, ys, xs]) ** 2).sum())
    spread = float(x[:, M].var(axis=1).sum())  # how much the region varies in itself
    if replaced / area <= max(change * seam / max(ring_px, 1), FILL_SPREAD * spread):
        return None
    return out


def fill_from_surround(images: torch.Tensor, region: np.ndarray,
                       band: int = FILL_BAND, change: float = FILL_CHANGE) -> torch.Tensor:
    """``images`` (n, 3, H, W) with each ``region`` (n, H, W, bool) removed by filling it from
    the rest of its image where the copy continues the surroundings and replaces what the
    region shows (:func:`surround_fill`), else painted :data:`FILL` grey
    (:func:`fill_removed`).

    Removing an object from a striped background leaves the stripes running through where it
    was (grey would cut a hole in them, and a feature of the stripes would seem to need the
    object); a patch of the stripes themselves is painted grey (a copy would put the stripes
    back, removing nothing)."""
    reg = np.asarray(region, bool)
    out = fill_removed(images, reg)
    x = images.detach().cpu().numpy()
    for r in range(len(reg)):
        filled = surround_fill(x[r], reg[r], band, change)
        if filled is not None:
            out[r] = torch.as_tensor(filled, dtype=out.dtype, device=out.device)
    return out


@dataclass
class Contrast:
    """A contrast panel's numbers: the feature with the highlighted region removed / kept.

    Attributes
    ----------
    original : ndarray (n,)
        The signed feature value on each shown image.
    removed, kept : ndarray (n,)
        Its value with the highlighted region removed / with only that region kept.
    area : ndarray (n,)
        Share of each image that is highlighted.
    """

    original: np.ndarray
    removed: np.ndarray
    kept: np.ndarray
    area: np.ndarray

    def ratio(self, which: str) -> float:
        """Mean of ``removed`` or ``kept`` over the mean original value (0 when the feature is
        zero on every shown image): how much of the feature survives."""
        base = float(np.mean(self.original))
        return float(np.mean(getattr(self, which)) / base) if base > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """``{"removed": f, "kept": f, "area": f}``: surviving shares and mean area."""
        return {"removed": round(self.ratio("removed"), 4), "kept": round(self.ratio("kept"), 4),
                "area": round(float(np.mean(self.area)), 4)}


def contrast(score: Callable[[torch.Tensor, np.ndarray], np.ndarray], images: torch.Tensor,
             region: np.ndarray) -> tuple[Contrast, torch.Tensor, torch.Tensor]:
    """The feature on the images, with ``region`` removed and with only ``region`` kept.

    Parameters
    ----------
    score : callable
        From :func:`feature_scorer` (image ``r`` scored for its own feature).
    images : Tensor (n, 3, H, W) in [0, 1]
    region : bool ndarray (n, H, W)
        The highlighted pixels.

    Returns
    -------
    (Contrast, removed images (n, 3, H, W), kept images (n, 3, H, W))
    """
    reg = np.asarray(region, bool)
    which = np.arange(len(images))
    removed = fill_from_surround(images, reg)
    kept = fill_removed(images, ~reg)
    c = Contrast(original=score(images, which), removed=score(removed, which),
                 kept=score(kept, which), area=reg.reshape(len(reg), -1).mean(1))
    return c, removed, kept


def greyscale(images: torch.Tensor) -> torch.Tensor:
    """``images`` (n, 3, H, W) with their colour taken out: each pixel's luminance
    (:data:`LUMA`) in all three channels. Shapes, edges and brightness stay; a colour cast
    (a tinted background, a coloured object) goes."""
    w = torch.as_tensor(LUMA, dtype=images.dtype, device=images.device)
    return (images * w[None, :, None, None]).sum(1, keepdim=True).expand_as(images).contiguous()


def colour_kept(score: Callable[[torch.Tensor, np.ndarray], np.ndarray],
                images: torch.Tensor) -> float | None:
    """Share of a feature left on its shown images in greyscale (:func:`greyscale`): the
    mean signed value on the grey images over the mean on the originals, as
    :meth:`Contrast.ratio`; None when the signed feature is not positive on them (nothing to
    lose: e.g. the images where a feature the class counts against is lowest).

    A map cannot place a colour cast that covers the image: the feature of a tinted
    background often fires at the object's edge against the tint, so its maps point at the
    object, and painting the object grey leaves the edge (the grey meets the tint). Taking the
    colour out of the whole image shows whether the feature needs it.
    """
    return _share_left(score, images, greyscale(images))


#: Standard deviation of the blur of the blur line (:func:`detail_kept`), as a share of the
#: image's side: 1 pixel at 64 pixels. It keeps ``exp(-2π²σ²/P²)`` of a pattern of period
#: ``P`` pixels: about 0.38 of the built-in texture's stripes (P of 4-5), 0.9 of a pattern
#: of period 14, so shapes and their edges stay while fine texture fades.
DETAIL_SIGMA = 1.0 / 64


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (n, 3, H, W) blurred by a separable Gaussian of standard deviation
    ``sigma`` pixels, reflected at the borders so the border keeps its colour
    (:func:`tasks.viz.heatmap.gaussian_blur` on each channel)."""
    n, c, H, W = images.shape
    return gaussian_blur(images.reshape(n * c, H, W), sigma, mirror=True).reshape(n, c, H, W)


def detail_kept(score: Callable[[torch.Tensor, np.ndarray], np.ndarray],
                images: torch.Tensor, sigma: float = DETAIL_SIGMA) -> float | None:
    """Share of a feature left on its shown images blurred (:func:`blurred`, standard
    deviation ``sigma`` times the image's side): the mean signed value on the blurred images
    over the mean on the originals, as :func:`colour_kept`; None when the signed feature is
    not positive on them.

    Maps split a feature of a fine texture behind an object between the texture and the
    object (the texture fills every region around the object, so each region takes part of
    it); blurring the whole image takes the texture out and leaves the object's shape, which
    is the intervention the maps cannot show (texture versus shape, as in Geirhos et al.,
    "ImageNet-trained CNNs are biased towards texture", ICLR 2019).
    """
    return _share_left(score, images, blurred(images, sigma * min(images.shape[-2:])))


def _share_left(score: Callable[[torch.Tensor, np.ndarray], np.ndarray], images: torch.Tensor,
                changed: torch.Tensor) -> float | None:
    """The mean signed feature on ``changed`` over its mean on ``images`` (each image scored
    for its own feature); None when the latter is not positive."""
    which = np.arange(len(images))
    base = float(np.mean(score(images, which)))
    if base <= 0:
        return None
    return float(np.mean(score(changed, which)) / base)
