"""Render HIT pages from the Jinja2 templates in :mod:`hit_templates` (autoescaped).

The questions come from the question schema (:mod:`sparse_probe.questions`; the built-in one
unless a study brings its own): both the HIT pages and MTurk's ``template.html`` include
``questions.html``, which loops over the schema's questions, so their wording cannot drift.

Every value passed in is escaped unless it is :class:`markupsafe.Markup` (built by the
visualization code from escaped tokens), so class names, descriptions and texts written by
anyone cannot inject markup into a worker's page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from statistics import median
from typing import Any

import jinja2

from hit_templates import TEMPLATE_DIR
from sparse_probe.questions import PATTERN, QuestionSchema, RenderedQuestion, default_schema

__all__ = [
    "INSERTION_TOP",
    "PANEL_TEXT",
    "TEXT_PANEL_TEXT",
    "TYPICAL_NOTE",
    "environment",
    "pattern_options",
    "render_hit",
    "render_mturk_template",
    "render_text_panels",
]


#: Title and one-line description of each map panel (tasks.viz.panels), as the HIT says them.
PANEL_TEXT: dict[str, tuple[str, str]] = {
    "lime": ("Which regions the feature needs",
             "each image is cut into small regions; coloured regions are those whose removal "
             "lowers the feature (red/yellow = lowers it most). It shows small marks and whole "
             "backgrounds alike."),
    "activation": ("Where the feature fires, at its own coarse resolution",
                   "the feature's own map, enlarged without sharpening: a feature that fires "
                   "on the whole background colours the whole background."),
    "gradient": ("Sharpened heatmap",
                 "the feature's map sharpened by pixel gradients: precise on small marks, but "
                 "it can put a background pattern on the object's outline."),
}


#: Title and one-line description of each text panel (tasks.viz.text_panels), as the HIT says
#: them.
TEXT_PANEL_TEXT: dict[str, tuple[str, str]] = {
    "insertion": ("Words that push this feature most when added to ordinary comments",
                  "words of the comments above, and words of comments where the feature is "
                  "strong, were each added to the same ordinary comments; the bar shows how "
                  "far the word moves the feature the way the class uses it, whatever comments "
                  "it usually appears in: 100% takes an ordinary comment as far as the "
                  "comments above."),
    "contrast": ("Do the highlighted words explain the feature?",
                 "the share of the feature's difference from an ordinary comment that is left "
                 "with the highlighted words removed, and with only them kept."),
    "least": ("Comments of the class where this feature is weakest",
              "compare them with the comments above: what do those have that these lack?"),
}


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


def pattern_options(kind: str, class_name: str, schema: QuestionSchema | None = None
                    ) -> list[tuple[str, str]]:
    """``(value, label)`` pairs of the pattern question for ``kind`` ("image" or "text")."""
    if kind not in ("image", "text"):
        raise ValueError(f"kind must be 'image' or 'text', got {kind!r}")
    schema = schema or default_schema()
    field = schema.field_for(PATTERN)
    if field is None:
        return []
    rendered = schema.render(kind, class_name=class_name, attention_number="")
    return list(next(q.options for q in rendered if q.id == field))


def _questions(schema: QuestionSchema | None, kind: str, class_name: str,
               attention_number: str) -> dict[str, Any]:
    """Template context of the questions: the rendered list and the "please answer" labels
    of the required ones (for the page's submit check)."""
    qs: list[RenderedQuestion] = (schema or default_schema()).render(
        kind, class_name=class_name, attention_number=attention_number)
    return {"questions": qs, "required_labels": {q.id: q.short for q in qs if q.required}}


#: Words of a text HIT's insertion ranking shown as bars; the rest are listed in one line.
INSERTION_TOP = 10

#: The line under the insertion ranking: what a word picked at random does, on the same scale.
TYPICAL_NOTE = ("Words picked at random from the comments move it {pct}% (the median of "
                "{n}, listed below): a word that moves it no further is nothing special.")

#: The greyscale line of an image HIT (``pct``: the share of the feature left in greyscale).
COLOUR_NOTE = ("With the colour taken out of these images (the same images in grey): {pct}% of "
               "the feature is left. Little left means the feature needs a colour the images "
               "share (look at what colour the top images have in common, on the object or "
               "around it); most of it left means colour plays no part.")
#: The blur line of an image HIT (``pct``: the share of the feature left with the images blurred).
DETAIL_NOTE = ("With the fine detail blurred out of these images (shapes stay, fine textures such "
               "as stripes or grain fade): {pct}% of the feature is left. Little left means the "
               "feature needs a fine texture the images share (look at what the backgrounds of "
               "the top images have in common); most of it left means it does not.")


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
    heat_panel: str = "",
    contrast: Mapping[str, Mapping[str, float]] | None = None,
    colour: float | None = None,
    detail: float | None = None,
    insertion: Sequence[tuple[str, float]] = (),
    text_contrast: Mapping[str, float] | None = None,
    least_texts: Sequence[str] = (),
    schema: QuestionSchema | None = None,
    insertion_typical: Sequence[tuple[str, float]] = (),
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
        Image URLs by role: ``grid``, ``heat`` (the first map panel), other map panels by
        name (``activation``, ``gradient``), ``contrast``, ``least``, ``fvis`` (each
        optional), ``class_examples`` for image HITs; ``cloud`` for text HITs. They should
        start with ``../assets/``.
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
    heat_panel : str
        Which map panel (:data:`PANEL_TEXT`) the ``heat`` asset is; other map panels are
        shown when ``assets`` has them.
    contrast : mapping, optional
        Per map panel ``{"removed": f, "kept": f}``: the share of the feature left with the
        panel's highlighted region removed / with only it kept (shown as percentages).
    colour : float, optional
        Image HITs: the share of the feature left on the same images in greyscale
        (:func:`tasks.viz.perturb.colour_kept`), shown as a percentage with
        :data:`COLOUR_NOTE`.
    detail : float, optional
        Image HITs: the share of the feature left on the same images blurred
        (:func:`tasks.viz.perturb.detail_kept`), shown as a percentage with
        :data:`DETAIL_NOTE`.
    insertion : sequence of (str, float)
        Text HITs: every word tested by appending it to ordinary comments, with its effect as
        a share of the shown comments' departure from an ordinary one (largest first, shown
        as percentages; :func:`tasks.viz.text_panels.insertion_ranking`): the first
        :data:`INSERTION_TOP` that push the feature as bars, then every other word in one
        line.
    insertion_typical : sequence of (str, float)
        Text HITs: words picked at random from the comments
        (:func:`tasks.viz.text_panels.typical_words`) with their effects on the same scale:
        their median is shown with :data:`TYPICAL_NOTE`, then each of them in one line.
    text_contrast : mapping, optional
        Text HITs: ``{"removed": f, "kept": f}``, the share of the feature left with the
        highlighted words removed / only kept (:func:`tasks.viz.text_panels.highlight_contrast`).
    least_texts : sequence of str
        Text HITs: the class's comments where the feature is weakest (escaped).
    schema : QuestionSchema, optional
        The questions asked (default: the built-in schema).
    """
    template = environment().get_template("image_hit.html" if kind == "image" else
                                          "text_hit.html")
    return template.render(
        kind=kind, hit_key=hit_key, class_name=class_name, direction=direction,
        attention_number=attention_number, assets=dict(assets), n_examples=n_examples,
        texts=list(texts), cloud=cloud, class_cloud=class_cloud, class_texts=list(class_texts),
        heat_empty=heat_empty, heat=_panel_text(heat_panel),
        map_panels=[(p, *_panel_text(p)) for p in PANEL_TEXT if p != heat_panel and p in assets],
        contrast=[(_panel_text(p)[0], round(100 * c["removed"]), round(100 * c["kept"]))
                  for p, c in (contrast or {}).items()],
        colour_note=None if colour is None else COLOUR_NOTE.format(pct=round(100 * colour)),
        detail_note=None if detail is None else DETAIL_NOTE.format(pct=round(100 * detail)),
        **_text_panel_context(insertion, text_contrast, least_texts, insertion_typical),
        **_questions(schema, kind, class_name, attention_number),
    )


def _text_panel_context(insertion: Sequence[tuple[str, float]],
                        text_contrast: Mapping[str, float] | None,
                        least_texts: Sequence[str],
                        insertion_typical: Sequence[tuple[str, float]] = ()
                        ) -> dict[str, Any]:
    """Template context of ``text_panels.html``."""
    bars = _insertion_bars(insertion[:INSERTION_TOP])
    return {"text_panels": TEXT_PANEL_TEXT, "insertion": bars,
            "insertion_rest": ([(str(w), round(100 * float(e))) for w, e in
                                insertion[len(bars):]] if bars else []),
            "typical_note": (None if not insertion_typical or not bars else TYPICAL_NOTE.format(
                pct=round(100 * median(float(e) for _, e in insertion_typical)),
                n=len(insertion_typical))),
            "typical_words": ([(str(w), round(100 * float(e))) for w, e in insertion_typical]
                              if bars else []),
            "text_contrast": ({k: round(100 * float(text_contrast[k])) for k in
                               ("removed", "kept")} if text_contrast else None),
            "least_texts": list(least_texts)}


def render_text_panels(insertion: Sequence[tuple[str, float]] = (),
                       text_contrast: Mapping[str, float] | None = None,
                       least_texts: Sequence[str] = (),
                       insertion_typical: Sequence[tuple[str, float]] = ()) -> str:
    """A standalone page with a text HIT's panels beyond the highlighted comments (contrast,
    insertion, least-activating comments; as on the HIT page), the ``panels`` asset that
    MTurk's template shows in a frame. Arguments as :func:`render_hit`'s."""
    return environment().get_template("text_panels_page.html").render(
        **_text_panel_context(insertion, text_contrast, least_texts, insertion_typical))


def _insertion_bars(insertion: Sequence[tuple[str, float]]) -> list[tuple[str, float, int]]:
    """(word, effect, bar width in % of the largest effect) of the leading positive effects
    (a ranking, largest first: up to its first effect that is not positive)."""
    items = []
    for w, e in insertion:
        if float(e) <= 0:
            break
        items.append((str(w), float(e)))
    top = max((e for _, e in items), default=0.0)
    return [(w, e, max(1, round(100 * e / top))) for w, e in items] if top > 0 else []


def _panel_text(panel: str) -> tuple[str, str]:
    """(title, one-line description) of a map panel; the plain heatmap for an unnamed one."""
    return PANEL_TEXT.get(panel, ("Where the feature fires",
                                  "red/yellow = where the feature fires."))


def render_mturk_template(kind: str, schema: QuestionSchema | None = None) -> str:
    """The HIT layout for MTurk's requester website, with ``${column}`` placeholders for the
    columns of ``batch.csv``. The class name in the question labels is ``${class_name}``, the
    attention number ``${attention_number}``; the questions are those of ``schema``."""
    return environment().get_template("mturk_template.html").render(
        kind=kind, **_questions(schema, kind, "${class_name}", "${attention_number}"),
    )
