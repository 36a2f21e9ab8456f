"""What a HIT's evidence is drawn from: the examples of a split, the model's feature functions,
and (for built-in datasets) the ground truth of every pixel or token.

:func:`load_source` builds an :class:`ExampleSource` from a features directory through
``sparse_probe.extract`` (and ``sparse_probe.datasets`` for ground truth); tests and callers
with their own model pass an :class:`ExampleSource` directly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CLASS_WORD_KINDS",
    "ExampleSource",
    "SplitImages",
    "as_display_images",
    "load_source",
]

logger = logging.getLogger(__name__)

#: Token kinds that count as words carrying a text class's meaning (built-in toxicity corpus).
CLASS_WORD_KINDS: tuple[str, ...] = ("insult", "compliment")


def as_display_images(images: Any) -> torch.Tensor:
    """Images as float (n, 3, H, W) in ``[0, 1]`` from uint8 (n, H, W, 3) / (n, 3, H, W) or
    floats already in ``[0, 1]``."""
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.dim() != 4:
        raise ValueError(f"images: expected 4 dimensions, got shape {tuple(t.shape)}")
    if t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2)
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous()


@dataclass
class ExampleSource:
    """Examples of one split (in the order of the features' rows) and how to probe the model.

    Attributes
    ----------
    kind : {"image", "text"}
    images : Tensor (n, 3, H, W) in [0, 1] or :class:`SplitImages`, optional
        What workers see (image sources); indexed with lists of rows.
    texts : list of str, optional
        The comments (text sources).
    tokens : list of list of str, optional
        Tokens of each text (default: whitespace split); a text with a token removed is
        ``" ".join`` of the rest.
    spatial : callable, optional
        ``spatial(images (m, 3, H, W) in [0, 1]) -> (m, d, h, w)``: each feature's map before
        pooling (channel features).
    features : callable, optional
        ``features(images or texts) -> (m, d)``: the features themselves (fallback heatmaps,
        text attributions).
    model : nn.Module, optional
        Module run by feature visualization; input is ``preprocess(images in [0, 1])``.
    fvis_layer : str, optional
        Name (``model.named_modules()``) of the module whose output channels are the features.
    preprocess : callable, optional
        Maps images in ``[0, 1]`` to the model's input (normalization).
    gradcam_layer : nn.Module, optional
        Convolutional module for LayerGradCam when features are not channels.
    object_masks : bool ndarray (n, H, W), optional
    cue_masks : dict of str to bool ndarray (n, H, W)
    cue_kind : dict of str to str
        ``"mark"`` or ``"background"`` per cue.
    token_kinds : list of list of str, optional
        Kind of every token (``"insult"``, ``"identity:religion"``, ...).
    class_word_kinds : sequence of str
        Token kinds that count as class words.
    labels : ndarray (n,), optional
        Labels of the examples as loaded now (checked against the features' labels).
    without : callable, optional
        ``without(regions, rows) -> (k, 3, H, W)`` in ``[0, 1]``: the examples ``rows`` as the
        data's generator draws them without ``regions`` (``"object"``, cue names), every
        other pixel identical (built-in image data; :func:`sparse_probe.datasets.shapes.
        render_without`). The ground truth's intervention (:mod:`tasks.viz.intervention`).
    """

    kind: str
    images: torch.Tensor | None = None
    texts: list[str] | None = None
    tokens: list[list[str]] | None = None
    spatial: Callable[[torch.Tensor], torch.Tensor] | None = None
    features: Callable[[Any], torch.Tensor] | None = None
    model: nn.Module | None = None
    fvis_layer: str | None = None
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None
    gradcam_layer: nn.Module | None = None
    object_masks: np.ndarray | None = None
    cue_masks: dict[str, np.ndarray] = field(default_factory=dict)
    cue_kind: dict[str, str] = field(default_factory=dict)
    token_kinds: list[list[str]] | None = None
    class_word_kinds: Sequence[str] = CLASS_WORD_KINDS
    labels: np.ndarray | None = None
    without: Callable[[frozenset[str], Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("image", "text"):
            raise ValueError(f"ExampleSource.kind must be 'image' or 'text', got {self.kind!r}")
        if self.kind == "image" and self.images is None:
            raise ValueError("an image ExampleSource needs images")
        if self.kind == "text":
            if self.texts is None:
                raise ValueError("a text ExampleSource needs texts")
            if self.tokens is None:
                self.tokens = [t.split() for t in self.texts]
            if self.features is None:
                raise ValueError("a text ExampleSource needs features (the encoder)")

    def __len__(self) -> int:
        return len(self.images) if self.kind == "image" else len(self.texts or [])


    @functools.cached_property
    def text_word_groups(self) -> tuple[list[str], list[str]]:
        """``(identity terms, control words)`` of a text source with token kinds, lower-cased
        and sorted: every word of an identity kind, and every word of neither an identity
        kind nor one of :attr:`class_word_kinds` (the control group of the truth by insertion,
        :func:`tasks.viz.intervention.text_feature_removal`). Computed once per source from
        its whole corpus; ``([], [])`` without token kinds."""
        identity: set[str] = set()
        control: set[str] = set()
        for toks, kinds in zip(self.tokens or [], self.token_kinds or [], strict=True):
            for t, k in zip(toks, kinds, strict=True):
                if str(k).startswith("identity"):
                    identity.add(t.lower())
                elif str(k) not in self.class_word_kinds:
                    control.add(t.lower())
        return sorted(identity), sorted(control)

    @property
    def has_truth(self) -> bool:
        """Whether ground truth exists (object masks for images, token kinds for text)."""
        return (self.object_masks is not None if self.kind == "image"
                else self.token_kinds is not None)


def _preprocess_from_meta(meta: Mapping) -> Callable[[torch.Tensor], torch.Tensor] | None:
    prep = meta.get("preprocessing") or {}
    mean, std = prep.get("mean"), prep.get("std")
    if mean is None or std is None:
        return None
    m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
    return lambda x: (x - m.to(x.device)) / s.to(x.device)


class SplitImages:
    """Lazy display images of a split: ``images[rows]`` -> (k, 3, H, W) floats in ``[0, 1]``.

    Wraps ``sparse_probe.extract.load_split``'s model-ready examples and undoes the
    normalization of ``preprocessing`` (mean/std), so only the rows shown are ever loaded.
    """

    def __init__(self, split: Any, preprocessing: Mapping | None = None) -> None:
        self.split = split
        prep = preprocessing or {}
        self.mean = (torch.tensor(prep["mean"], dtype=torch.float32)[None, :, None, None]
                     if prep.get("mean") is not None else None)
        self.std = (torch.tensor(prep["std"], dtype=torch.float32)[None, :, None, None]
                    if prep.get("std") is not None else None)
        first = self[[0]] if len(split) else torch.zeros(1, 3, 1, 1)
        self.shape = (len(split), *first.shape[1:])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, rows: Any) -> torch.Tensor:
        rows = [int(r) for r in np.atleast_1d(np.asarray(rows))]
        x = self.split[rows].float()
        if self.mean is not None and self.std is not None:
            x = x * self.std + self.mean
        return x.clamp(0.0, 1.0)


def _hooked_spatial(model: nn.Module, layer: str,
                    preprocess: Callable[[torch.Tensor], torch.Tensor] | None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``spatial(images in [0, 1]) -> (n, d, h, w)``: the output of module ``layer``, computed
    with autograd enabled (so heatmaps can be refined by input gradients)."""
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"spatial layer {layer!r} not found in {type(model).__name__}")

    def spatial(x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _a, out: box.append(out))
        try:
            model(preprocess(x) if preprocess is not None else x)
        finally:
            handle.remove()
        return box[0]

    return spatial


class _ArrayRows:
    """``rows -> (k, 3, H, W)`` model-ready tensors of a uint8 image array (the indexing
    :class:`SplitImages` expects of a split)."""

    def __init__(self, images: np.ndarray, prep: Mapping | None) -> None:
        from sparse_probe.extract.data import ImageArrayDataset

        self.data = ImageArrayDataset(images, dict(prep or {}))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows: Any) -> torch.Tensor:
        return torch.stack([self.data[int(r)] for r in rows])


def _builtin_without(meta: Mapping, split: str, n: int
                     ) -> Callable[[frozenset[str], Any], torch.Tensor] | None:
    """The built-in shapes generator's counterfactual examples of ``split`` (None for other
    data), passed through the same preprocessing as the examples themselves."""
    dataset = meta.get("dataset") or {}
    if dataset.get("source") != "builtin" or dataset.get("name") != "shapes":
        return None
    from sparse_probe.datasets.shapes import render_without

    params = dataset.get("params") or {"seed": dataset.get("seed") or 0}
    prep = meta.get("preprocessing") or {}
    cache: dict[frozenset[str], SplitImages] = {}

    def without(regions: frozenset[str], rows: Any) -> torch.Tensor:
        regions = frozenset(regions)
        if regions not in cache:
            images = render_without(params, split, regions)
            if len(images) != n:
                raise ValueError(f"built-in dataset split {split!r} has {len(images)} "
                                 f"examples, features have {n}")
            cache[regions] = SplitImages(_ArrayRows(images, prep), prep)
        return cache[regions][rows]

    return without


def _builtin_truth(meta: Mapping, split: str, n: int) -> Any | None:
    dataset = meta.get("dataset") or {}
    if dataset.get("source") != "builtin":
        return None
    from sparse_probe.datasets import load_builtin

    part = load_builtin(dict(meta)).split(split)
    if meta.get("classes") and list(part.class_names) != list(meta["classes"]):
        raise ValueError(f"built-in dataset classes {list(part.class_names)} differ from "
                         f"meta.json's {list(meta['classes'])}; the dataset changed since "
                         "extraction (re-run sparse-probe extract)")
    if len(part) != n:
        raise ValueError(f"built-in dataset split {split!r} has {len(part)} examples, "
                         f"features have {n}")
    return part


def load_source(meta: Mapping, split: str, device: torch.device | str | None = None
                ) -> ExampleSource:
    """Build the :class:`ExampleSource` of ``split`` from a features ``meta.json``.

    Uses ``sparse_probe.extract.load_model`` / ``load_split`` / ``LayerReader`` (features of
    ``meta["layer"]``), hooks ``meta["spatial_layer"]`` for spatial maps and feature
    visualization, and for built-in datasets (``meta["dataset"]["source"] == "builtin"``)
    ``sparse_probe.datasets.load_builtin`` for object/cue masks and token kinds.
    """
    from sparse_probe import extract

    kind = meta.get("kind")
    model = extract.load_model(dict(meta), device=device).eval()
    data = extract.load_split(dict(meta), split)
    truth = _builtin_truth(meta, split, len(data))
    reader = extract.LayerReader(model, meta.get("layer"))
    if kind == "text":
        texts = [str(t) for t in data[list(range(len(data)))]]
        return ExampleSource(
            kind="text", texts=texts, features=reader, labels=np.asarray(data.labels),
            tokens=[list(t) for t in truth.tokens] if truth is not None else None,
            token_kinds=[list(k) for k in truth.token_kinds] if truth is not None else None)
    prep = meta.get("preprocessing") or {}
    preprocess = _preprocess_from_meta(meta)
    images = SplitImages(data, prep)
    layer = meta.get("spatial_layer")
    return ExampleSource(
        kind="image", images=images, labels=np.asarray(data.labels),
        spatial=_hooked_spatial(model, layer, preprocess) if layer else None,
        features=(lambda x: reader(preprocess(x) if preprocess is not None else x)),
        model=model if layer else None, fvis_layer=layer, preprocess=preprocess,
        object_masks=truth.object_masks if truth is not None else None,
        cue_masks=dict(truth.cue_masks) if truth is not None else {},
        cue_kind=dict(truth.cue_kind) if truth is not None else {},
        without=_builtin_without(meta, split, len(data)) if truth is not None else None)
