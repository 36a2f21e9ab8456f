"""Word clouds: an HTML fragment with font sizes, or a PNG (PIL's built-in TrueType font)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from markupsafe import Markup
from PIL import Image, ImageDraw, ImageFont

from tasks.viz.grid import save_png

__all__ = ["cloud_html", "cloud_png", "top_words"]


def top_words(weights: Mapping[str, float], max_words: int = 30) -> list[tuple[str, float]]:
    """Words with positive weight, largest first (ties alphabetical), at most ``max_words``."""
    items = [(w, float(v)) for w, v in weights.items() if v > 0]
    items.sort(key=lambda t: (-t[1], t[0]))
    return items[:max_words]


def _sizes(items: list[tuple[str, float]], min_px: int, max_px: int) -> list[int]:
    if not items:
        return []
    top = items[0][1]
    return [round(min_px + (max_px - min_px) * (v / top)) for _, v in items]


def cloud_html(weights: Mapping[str, float], max_words: int = 30, min_px: int = 12,
               max_px: int = 36) -> Markup:
    """Escaped HTML ``<p class="cloud">`` of the top words with font sizes proportional to
    their weights (linear between ``min_px`` and ``max_px``)."""
    items = top_words(weights, max_words)
    if not items:
        return Markup('<p class="cloud">(no words)</p>')
    spans = [
        Markup('<span style="font-size:{}px">{}</span>').format(px, w)
        for (w, _), px in zip(items, _sizes(items, min_px, max_px), strict=True)
    ]
    return Markup('<p class="cloud">') + Markup(" ").join(spans) + Markup("</p>")


def cloud_png(weights: Mapping[str, float], path: str | os.PathLike, width: int = 480,
              max_words: int = 30, min_px: int = 12, max_px: int = 40) -> Path:
    """Render the word cloud as rows of words to a PNG (deterministic layout)."""
    items = top_words(weights, max_words) or [("(no words)", 1.0)]
    sizes = _sizes(items, min_px, max_px)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed, x, y, row_h, gap = [], 8, 8, 0, 10
    for (word, _), px in zip(items, sizes, strict=True):
        font = ImageFont.load_default(size=px)
        tw = int(scratch.textlength(word, font=font))
        if x + tw > width - 8 and x > 8:
            x, y, row_h = 8, y + row_h + 6, 0
        placed.append((x, y, word, font, px))
        x += tw + gap
        row_h = max(row_h, px + px // 4)
    img = Image.new("RGB", (width, y + row_h + 8), "white")
    draw = ImageDraw.Draw(img)
    for i, (x, y, word, font, px) in enumerate(placed):
        shade = 0 if i < 3 else 60
        color = (180, 60, 0) if px >= (min_px + max_px) // 2 else (shade, shade, shade + 40)
        draw.text((x, y), word, fill=color, font=font)
    return save_png(img, path)
