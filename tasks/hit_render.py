"""Render HIT pages from the Jinja2 templates in :mod:`hit_templates` (autoescaped).

Every value passed in is escaped unless it is :class:`markupsafe.Markup` (built by the
visualization code from escaped tokens), so class names, descriptions and texts written by
anyone cannot inject markup into a worker's page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import jinja2

from hit_templates import TEMPLATE_DIR

__all__ = [
    "IMAGE_PATTERNS",
    "TEXT_PATTERNS",
    "environment",
    "pattern_options",
    "render_hit",
    "render_mturk_template",
]

#: Form values of the ``pattern`` question and their labels, per HIT kind.
IMAGE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("object", "part of the {class_name} object"),
    ("background", "the background"),
    ("mark", "a separate object or mark"),
    ("other", "something else"),
)
TEXT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("object", "words that carry the meaning of \u201c{class_name}\u201d (e.g. insults, praise)"),
    ("identity", "text: an identity term (religion, nationality, ethnicity, gender, ...)"),
    ("other", "something else"),
)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja2 environment over ``hit_templates`` with autoescaping always on."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def pattern_options(kind: str, class_name: str) -> list[tuple[str, str]]:
    """``(value, label)`` pairs of the pattern question for ``kind`` ("image" or "text")."""
    if kind not in ("image", "text"):
        raise ValueError(f"kind must be 'image' or 'text', got {kind!r}")
    options = IMAGE_PATTERNS if kind == "image" else TEXT_PATTERNS
    return [(v, label.format(class_name=class_name)) for v, label in options]


def render_hit(
    *,
    kind: str,
    hit_key: str,
    class_name: str,
    direction: str,
    attention_number: str,
    assets: Mapping[str, str],
    n_examples: int,
    texts: Sequence[Any] = (),
    cloud: Any = "",
    class_cloud: Any = "",
    class_texts: Sequence[str] = (),
    heat_empty: bool = False,
) -> str:
    """A complete HIT page.

    Parameters
    ----------
    kind : {"image", "text"}
    hit_key : str
        Sent back in the hidden ``hit_key`` field.
    class_name, direction : str
        Shown to the worker (escaped).
    attention_number : str
        The number the attention check asks for.
    assets : mapping
        Image URLs by role: ``grid``, ``heat``, ``fvis`` (optional), ``class_examples`` for
        image HITs; ``cloud`` for text HITs. They should start with ``../assets/``.
    n_examples : int
    texts : sequence of Markup
        Highlighted comments (text HITs).
    cloud, class_cloud : Markup
        Word clouds of the feature and of the class (text HITs).
    class_texts : sequence of str
        A few typical comments of the class (text HITs; escaped).
    heat_empty : bool
        The feature is zero everywhere in the shown images (nothing highlighted); the page
        says so.
    """
    template = environment().get_template("image_hit.html" if kind == "image" else
                                          "text_hit.html")
    return template.render(
        kind=kind, hit_key=hit_key, class_name=class_name, direction=direction,
        attention_number=attention_number, assets=dict(assets), n_examples=n_examples,
        texts=list(texts), cloud=cloud, class_cloud=class_cloud, class_texts=list(class_texts),
        heat_empty=heat_empty,
        pattern_options=pattern_options(kind, class_name),
    )


def render_mturk_template(kind: str) -> str:
    """The HIT layout for MTurk's requester website, with ``${column}`` placeholders for the
    columns of ``batch.csv``. The class name in the pattern labels is ``${class_name}``."""
    return environment().get_template("mturk_template.html").render(
        kind=kind, pattern_options=pattern_options(kind, "${class_name}"),
    )
