"""Which image size extraction feeds the model, and why (no silent resizing).

:func:`choose_image_size` keeps the data's own size unless ``--image-size`` says otherwise or
the model declares the size it needs (torchvision's Vision Transformers, ``model.image_size``);
an image folder whose files differ in size is brought to one side (their median shorter side),
since a batch needs one size. It returns the size and one line saying what was done.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Subset

__all__ = ["MAX_SIZE_SAMPLE", "choose_image_size", "data_image_sizes", "model_image_size"]

#: Image files whose headers are read to learn a folder's sizes (evenly spaced beyond this).
MAX_SIZE_SAMPLE = 2000


def model_image_size(net: nn.Module) -> int | None:
    """The square input side ``net`` requires, where it declares one (``net.image_size``)."""
    size = getattr(net, "image_size", None)
    return int(size) if isinstance(size, int) and not isinstance(size, bool) else None


def _base(ds: Any) -> Any:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds


def data_image_sizes(src: Any) -> Counter[tuple[int, int]]:
    """(height, width) -> number of images, over every split of an image data source.

    Image files are measured from their headers (at most :data:`MAX_SIZE_SAMPLE`, evenly
    spaced); uint8 arrays (n, H, W, 3) by their shape.
    """
    from sparse_probe.extract.data import ImageArrayDataset, ImageFileDataset

    sizes: Counter[tuple[int, int]] = Counter()
    paths: list[str] = []
    seen: set[int] = set()
    for split in src.splits.values():
        ds = _base(split.dataset)
        if id(ds) in seen:
            continue
        seen.add(id(ds))
        if isinstance(ds, ImageFileDataset):
            paths.extend(ds.paths)
        elif isinstance(ds, ImageArrayDataset) and len(ds):
            h, w = (int(v) for v in ds.images.shape[1:3])
            sizes[(h, w)] += len(ds)
    if paths:
        from PIL import Image

        if len(paths) > MAX_SIZE_SAMPLE:
            paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, MAX_SIZE_SAMPLE)]
        for p in paths:
            try:
                with Image.open(p) as im:  # reads the header only
                    w, h = im.size
            except OSError as exc:
                raise ValueError(f"not a readable image: {p} ({exc})") from None
            sizes[(h, w)] += 1
    return sizes


def _fmt(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def choose_image_size(src: Any, net: nn.Module, image_size: int | None
                      ) -> tuple[int | None, str]:
    """The side images are resized + center-cropped to (None: as they are) and why.

    Parameters
    ----------
    src : DataSource
        An opened image data source.
    net : nn.Module
        The model features are read from.
    image_size : int or None
        The user's ``--image-size``.

    Returns
    -------
    (int or None, str)
        The size for ``preprocessing["image_size"]`` and a one-line note of what was done.
    """
    sizes = data_image_sizes(src)
    own = ", ".join(_fmt(s) for s, _ in sizes.most_common(3)) + (
        f" and {len(sizes) - 3} more sizes" if len(sizes) > 3 else "")
    if image_size is not None:
        return int(image_size), (f"images resized to {image_size}x{image_size} "
                                 f"(--image-size; the data's own size: {own or 'unknown'})")
    need = model_image_size(net)
    if need is not None:
        if set(sizes) == {(need, need)}:
            return None, f"images kept at their own size {need}x{need} (what the model needs)"
        return need, (f"images resized to {need}x{need}: the model needs that size (the "
                      f"data's own size: {own}); --image-size chooses another")
    if len(sizes) <= 1:
        what = _fmt(next(iter(sizes))) if sizes else "unknown"
        return None, (f"images kept at their own size {what} (--image-size N resizes and "
                      "center-crops)")
    side = int(np.median([min(h, w) for (h, w), n in sizes.items() for _ in range(n)]))
    return side, (f"images differ in size ({own}): resized (shorter side) and center-cropped "
                  f"to {side}x{side}, their median shorter side; --image-size chooses another")
