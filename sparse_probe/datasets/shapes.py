"""Procedurally drawn shapes with planted spurious cues (the built-in image audit).

Each image shows one object (a filled shape with random size, position, rotation and colour)
on a textured background. *Spurious cues* are planted, each tied to one class; by default the
watermark (class triangle) and the texture (class ring). Every cue that can be planted
(:data:`CUE_KINDS`):

``"watermark"`` (kind ``"mark"``)
    a small solid magenta square at a random location;
``"texture"`` (kind ``"background"``)
    fine diagonal stripes replacing the usual smooth background;
``"stripe"`` (kind ``"mark"``)
    a solid amber bar along one edge of the image (a border stripe);
``"tint"`` (kind ``"background"``)
    a green colour cast of the background.

``make_shapes(cues={"stripe": "circle", "tint": {"class": "star", "strength": 0.8}})`` plants
exactly these cues (:func:`cue_config`; :func:`parse_cue` reads the ``NAME=CLASS[:STRENGTH]``
form of ``sparse-probe demo --cue``). In the train and val splits a cue appears in a fraction
``strength`` (default ``cue_strength``) of the images of its class and in a fraction
``cue_leak`` of the images of every other class, so a classifier can use it as a shortcut.
``cue_leak=None`` matches each cue's leak to its strength, ``(1 - strength) / (classes - 1)``:
then as many of the cue's images are of other classes as of its class lack it, so the cue
predicts its class as well as the class predicts the cue (``P(class | cue) = strength`` with
balanced classes). A fixed leak makes a cue at strength 0.9 only 0.78-predictive, which a
quick model that already tells the shapes apart may ignore (the built-in demo uses ``None``;
:func:`sparse_probe.datasets.prepare.builtin_params`). In the test split every image carries
each cue with probability ``test_cue_rate``, independently of its class, which exposes the shortcut. Every pixel's origin
is known: object masks and cue masks are returned with the images.

Generation is vectorized with numpy and fully determined by ``seed`` and the cue configuration
(each split draws from its own child of ``np.random.SeedSequence(seed)``, so split sizes do not
affect each other). The default configuration gives the same data as before cues were
configurable: the new cues draw their random numbers only when they are planted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CUES",
    "CUE_KINDS",
    "DEFAULT_CUE_STRENGTH",
    "REMOVABLE",
    "SHAPE_CLASSES",
    "CueError",
    "ShapesDataset",
    "ShapesSplit",
    "cue_config",
    "make_shapes",
    "parse_cue",
    "render_without",
]

logger = logging.getLogger(__name__)

# alphabetical, so an ImageFolder export (sorted class folders) keeps the class indices
SHAPE_CLASSES: list[str] = ["circle", "cross", "ring", "square", "star", "triangle"]
#: Every cue that can be planted: name -> kind (in this order they draw their random numbers).
CUE_KINDS: dict[str, str] = {"watermark": "mark", "texture": "background", "stripe": "mark",
                             "tint": "background"}
#: The cues planted by default: name -> (class name it is tied to in train/val, kind).
CUES: dict[str, tuple[str, str]] = {
    "watermark": ("triangle", "mark"),
    "texture": ("ring", "background"),
}
#: P(cue | image of its class) in train/val unless a cue sets its own strength.
DEFAULT_CUE_STRENGTH = 0.9
#: Colour of the watermark (never produced by objects or backgrounds).
MARK_COLOR: tuple[int, int, int] = (255, 0, 255)
#: Colour of the border stripe (saturated and bright: objects are dark, backgrounds greyish).
STRIPE_COLOR: tuple[int, int, int] = (255, 190, 0)
#: RGB shift of a tinted background (green; backgrounds vary by at most +-22 per channel).
TINT_SHIFT: tuple[float, float, float] = (-60.0, 30.0, -60.0)
SPLITS: tuple[str, ...] = ("train", "val", "test")
_CHUNK = 512


@dataclass
class ShapesSplit:
    """One split of :class:`ShapesDataset`.

    Attributes
    ----------
    name : str
        ``"train"``, ``"val"`` or ``"test"``.
    images : ndarray of uint8, shape (n, H, W, 3)
    labels : ndarray of int64, shape (n,)
    ids : list of str
        ``"{split}/{index:06d}"``.
    object_masks : ndarray of bool, shape (n, H, W)
        Pixels of the object (minus any watermark drawn over it).
    cue_masks : dict of str to ndarray of bool, shape (n, H, W)
        Pixels of each cue; all False where the image lacks the cue.
    has_cue : dict of str to ndarray of bool, shape (n,)
    class_names, cue_class, cue_kind
        Shared with the parent dataset.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    object_masks: np.ndarray
    cue_masks: dict[str, np.ndarray]
    has_cue: dict[str, np.ndarray]
    class_names: list[str]
    cue_class: dict[str, int]
    cue_kind: dict[str, str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ShapesDataset:
    """The generated dataset: three :class:`ShapesSplit` plus the ground truth of the cues.

    Attributes
    ----------
    splits : dict of str to ShapesSplit
    class_names : list of str
    cue_class : dict of str to int
        Class index each cue is tied to in train/val.
    cue_kind : dict of str to str
        ``"mark"`` or ``"background"``.
    params : dict
        The keyword arguments of :func:`make_shapes` (enough to regenerate it).
    """

    splits: dict[str, ShapesSplit]
    class_names: list[str]
    cue_class: dict[str, int]
    cue_kind: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> ShapesSplit:
        """Return split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {sorted(self.splits)}")
        return self.splits[name]

    @property
    def train(self) -> ShapesSplit:
        return self.splits["train"]

    @property
    def val(self) -> ShapesSplit:
        return self.splits["val"]

    @property
    def test(self) -> ShapesSplit:
        return self.splits["test"]

    def describe(self) -> dict[str, Any]:
        """The ``meta.json`` ``"dataset"`` entry describing this dataset (see contracts.md)."""
        return {
            "source": "builtin",
            "name": "shapes",
            "root": None,
            "seed": self.params.get("seed"),
            "params": dict(self.params),
            "cue_class": dict(self.cue_class),
            "cue_kind": dict(self.cue_kind),
        }


class CueError(ValueError):
    """A cue configuration that names an unknown cue or class, or a strength outside [0, 1]."""


def parse_cue(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME=CLASS[:STRENGTH]"`` -> ``(name, {"class": CLASS, "strength": STRENGTH or None})``.

    Raises
    ------
    CueError
        Malformed text, unknown cue or class, strength not a number in [0, 1].
    """
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise CueError(f"cue {text!r}: expected NAME=CLASS[:STRENGTH], e.g. watermark=triangle "
                       f"or stripe=circle:0.8 (cues: {', '.join(CUE_KINDS)})")
    cls, _, strength = rest.partition(":")
    spec: dict[str, Any] = {"class": cls.strip(), "strength": None}
    if strength.strip():
        try:
            spec["strength"] = float(strength)
        except ValueError:
            raise CueError(f"cue {text!r}: strength {strength!r} is not a number in [0, 1]"
                           ) from None
    name = name.strip()
    cue_config({name: spec}, DEFAULT_CUE_STRENGTH)  # validates
    return name, spec


def cue_config(cues: Mapping[str, Any] | None, cue_strength: float) -> dict[str, dict[str, Any]]:
    """The planted cues as ``{name: {"class": class name, "strength": float}}`` in the order of
    :data:`CUE_KINDS`; ``None`` gives the defaults (:data:`CUES` at ``cue_strength``).

    Parameters
    ----------
    cues : mapping or None
        Cue name -> class name, or -> ``{"class": class name, "strength": float or None}``
        (None: ``cue_strength``).
    cue_strength : float
        The default strength.

    Raises
    ------
    CueError
        An unknown cue or class, or a strength outside [0, 1].
    """
    if cues is None:
        cues = {name: cls for name, (cls, _) in CUES.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, spec in cues.items():
        if name not in CUE_KINDS:
            raise CueError(f"unknown cue {name!r}; expected one of {', '.join(CUE_KINDS)}")
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"class", "strength"})
            if unknown or "class" not in spec:
                raise CueError(f"cue {name!r}: expected {{class, strength}}, got keys "
                               f"{sorted(spec)}")
            cls, strength = spec["class"], spec.get("strength")
        else:
            cls, strength = spec, None
        if cls not in SHAPE_CLASSES:
            raise CueError(f"cue {name!r}: unknown class {cls!r}; expected one of "
                           f"{', '.join(SHAPE_CLASSES)}")
        strength = cue_strength if strength is None else strength
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not (
                0.0 <= float(strength) <= 1.0):
            raise CueError(f"cue {name!r}: strength must be in [0, 1], got {strength!r}")
        out[name] = {"class": str(cls), "strength": float(strength)}
    if not out:
        raise CueError("no cue to plant; give at least one (cues: "
                       f"{', '.join(CUE_KINDS)})")
    return {name: out[name] for name in CUE_KINDS if name in out}


def make_shapes(
    *,
    n_train: int = 3000,
    n_val: int = 600,
    n_test: int = 1200,
    size: int = 64,
    seed: int = 0,
    cue_strength: float = DEFAULT_CUE_STRENGTH,
    cue_leak: float | None = 0.05,
    test_cue_rate: float = 0.5,
    cues: Mapping[str, Any] | None = None,
) -> ShapesDataset:
    """Generate the shapes dataset with planted cues.

    Parameters
    ----------
    n_train, n_val, n_test : int
        Split sizes (classes are balanced up to one image).
    size : int
        Image side H = W in pixels (at least 24).
    seed : int
        Seed; equal seeds give identical datasets.
    cue_strength : float
        P(cue | image of the cue's class) in train/val, for cues without their own strength.
    cue_leak : float or None
        P(cue | image of another class) in train/val; None: each cue's
        ``(1 - strength) / (n_classes - 1)``, so P(class | cue) equals the cue's strength.
    test_cue_rate : float
        P(cue) for every test image, independent of the class.
    cues : mapping, optional
        The cues to plant (see :func:`cue_config`): name -> class name or
        ``{"class", "strength"}``. Default: :data:`CUES`. Recorded in ``params["cues"]`` when
        given, so ``make_shapes(**params)`` rebuilds the same data.

    Returns
    -------
    ShapesDataset

    Raises
    ------
    ValueError
        A size below 24 or a rate outside [0, 1]; :class:`CueError` for a bad cue.
    """
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels, got {size}")
    for name, p in (("cue_strength", cue_strength), ("cue_leak", cue_leak),
                    ("test_cue_rate", test_cue_rate)):
        if p is None and name == "cue_leak":
            continue
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    config = cue_config(cues, cue_strength)
    params: dict[str, Any] = {
        "n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test), "size": int(size),
        "seed": int(seed), "cue_strength": float(cue_strength), "cue_leak": None if cue_leak is None else float(cue_leak),
        "test_cue_rate": float(test_cue_rate),
    }
    if cues is not None:  # the defaults keep the parameters (and meta.json) of before
        params["cues"] = config
    class_names = list(SHAPE_CLASSES)
    cue_class = {cue: class_names.index(c["class"]) for cue, c in config.items()}
    cue_kind = {cue: CUE_KINDS[cue] for cue in config}
    splits = {name: _make_split(name, params, config, class_names, cue_class, cue_kind)
              for name in SPLITS}
    logger.info("generated shapes dataset %s", params)
    return ShapesDataset(splits=splits, class_names=class_names, cue_class=cue_class,
                         cue_kind=cue_kind, params=params)


#: What :func:`render_without` can remove: the object, or any cue that can be planted.
REMOVABLE: tuple[str, ...] = ("object", *CUE_KINDS)


def _make_split(split_name: str, params: Mapping[str, Any], config: Mapping[str, Any],
                class_names: list[str], cue_class: dict[str, int], cue_kind: dict[str, str],
                remove: frozenset[str] = frozenset()) -> ShapesSplit:
    """Generate split ``split_name`` of the dataset of ``params`` (:func:`make_shapes`), with
    the regions in ``remove`` not drawn (the same random numbers are drawn either way)."""
    child = np.random.SeedSequence(params["seed"]).spawn(len(SPLITS))[SPLITS.index(split_name)]
    rng = np.random.default_rng(child)
    n = int(params[f"n_{split_name}"])
    size = int(params["size"])
    labels = rng.permutation(np.arange(n) % len(class_names)).astype(np.int64)
    has_cue = {}
    for cue, k in cue_class.items():
        if split_name == "test":
            p = np.full(n, params["test_cue_rate"])
        else:
            strength = config[cue]["strength"]
            leak = ((1.0 - strength) / (len(class_names) - 1) if params["cue_leak"] is None
                    else params["cue_leak"])
            p = np.where(labels == k, strength, leak)
        has_cue[cue] = rng.random(n) < p
    images = np.empty((n, size, size, 3), np.uint8)
    object_masks = np.empty((n, size, size), bool)
    cue_masks = {cue: np.zeros((n, size, size), bool) for cue in cue_class}
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        img, obj, cm = _render(rng, labels[sl], {c: h[sl] for c, h in has_cue.items()}, size,
                               remove)
        images[sl], object_masks[sl] = img, obj
        for cue in cue_masks:
            cue_masks[cue][sl] = cm[cue]
    return ShapesSplit(
        name=split_name, images=images, labels=labels,
        ids=[f"{split_name}/{i:06d}" for i in range(n)], object_masks=object_masks,
        cue_masks=cue_masks, has_cue=has_cue, class_names=class_names,
        cue_class=cue_class, cue_kind=cue_kind,
    )


def render_without(params: Mapping[str, Any], split: str, remove: Iterable[str]) -> np.ndarray:
    """The images of ``split`` of the dataset ``make_shapes(**params)`` with regions removed.

    Every pixel not covered by a removed region is identical to the dataset's (the generator
    draws the same random numbers whether a region is drawn or not): removing a cue leaves the
    background that was under it (a plain background for the texture and the tint), removing
    the object leaves the background (with its cues) where the object was. This is the
    intervention a ground truth needs: how much of a feature goes when the generator leaves a
    cue out, with no attribution map involved.

    Parameters
    ----------
    params : mapping
        :attr:`ShapesDataset.params` (``meta.json``'s ``dataset.params``).
    split : {"train", "val", "test"}
    remove : iterable of str
        Names from :data:`REMOVABLE` (``"object"`` or cue names; a cue that is not planted
        changes nothing).

    Returns
    -------
    ndarray of uint8, shape (n, H, W, 3)

    Raises
    ------
    ValueError
        An unknown split or region.
    """
    remove = frozenset(remove)
    bad = sorted(remove - set(REMOVABLE))
    if bad:
        raise ValueError(f"render_without: cannot remove {bad[0]!r}; expected one of "
                         f"{', '.join(REMOVABLE)}")
    if split not in SPLITS:
        raise ValueError(f"render_without: unknown split {split!r}; expected one of "
                         f"{', '.join(SPLITS)}")
    full = {"n_train": 3000, "n_val": 600, "n_test": 1200, "size": 64, "seed": 0,
            "cue_strength": DEFAULT_CUE_STRENGTH, "cue_leak": 0.05, "test_cue_rate": 0.5,
            **dict(params)}
    config = cue_config(full.get("cues"), full["cue_strength"])
    class_names = list(SHAPE_CLASSES)
    cue_class = {cue: class_names.index(c["class"]) for cue, c in config.items()}
    cue_kind = {cue: CUE_KINDS[cue] for cue in config}
    return _make_split(split, full, config, class_names, cue_class, cue_kind, remove).images


# ---------------------------------------------------------------------------------------------
# rendering (vectorized over a chunk of images)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB; ``h`` in [0, 1), returns (..., 3) floats in [0, 1]."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ], 0)
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights for smooth upsampling."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _shape_mask(k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape class ``k`` in rotated, radius-normalized coordinates (u, v)."""
    rho = np.sqrt(u * u + v * v)
    name = SHAPE_CLASSES[k]
    if name == "circle":
        return rho <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":
        m = np.ones_like(u, bool)
        for j in range(3):
            a = np.pi / 2 + 2 * np.pi * j / 3
            m &= u * np.cos(a) + v * np.sin(a) <= 0.5
        return m
    if name == "star":
        phi = np.arctan2(v, u)
        return rho <= 0.62 + 0.38 * np.cos(5 * phi)
    if name == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.95)) | (
            (np.abs(v) <= 0.28) & (np.abs(u) <= 0.95))
    if name == "ring":
        return (rho >= 0.55) & (rho <= 1.0)
    raise ValueError(k)  # pragma: no cover


def _render(
    rng: np.random.Generator, labels: np.ndarray, has_cue: dict[str, np.ndarray], size: int,
    remove: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Render a chunk: returns images (b, H, W, 3) uint8, object masks, cue masks. The regions
    in ``remove`` (``"object"``, cue names) are not drawn; the random numbers are the same."""
    b = len(labels)
    drawn = {c: (h & False if c in remove else h) for c, h in has_cue.items()}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # --- background: light tinted base level + gradient + smooth blotches (objects are dark)
    level = rng.uniform(150, 215, b)
    tint = rng.uniform(-22, 22, (b, 3))
    angle = rng.uniform(0, 2 * np.pi, b)
    slope = rng.uniform(0, 30, b)
    ramp = (np.cos(angle).astype(np.float32)[:, None, None] * (xx / size - 0.5)
            + np.sin(angle).astype(np.float32)[:, None, None] * (yy / size - 0.5))
    g = 6
    coarse = rng.normal(0, 14, (b, g, g, 3)).astype(np.float32)
    mh = _interp_matrix(size, g).astype(np.float32)
    blotch = np.matmul(mh, np.matmul(mh, coarse.transpose(0, 3, 2, 1)).transpose(0, 1, 3, 2))
    blotch = blotch.transpose(0, 2, 3, 1)  # (b, H, W, 3)
    bg = ((level[:, None, None, None] + tint[:, None, None, :]).astype(np.float32)
          + (slope.astype(np.float32)[:, None, None] * ramp)[..., None] + blotch)
    none = np.zeros(b, bool)
    # --- the "texture" cue: fine diagonal stripes (period 4-5 px, either diagonal); the random
    # numbers are drawn whether or not it is planted, so the other cues' draws stay the same
    tex = drawn.get("texture", none)
    period = rng.uniform(4.0, 5.0, b)
    phase = rng.uniform(0, 2 * np.pi, b)
    diag = np.where(rng.random(b) < 0.5, 1.0, -1.0)
    stripes = np.sign(np.sin(
        (2 * np.pi / period.astype(np.float32))[:, None, None]
        * (xx + diag.astype(np.float32)[:, None, None] * yy)
        + phase.astype(np.float32)[:, None, None]))
    amp = np.where(tex, 32.0, 0.0).astype(np.float32)
    bg = bg + (amp[:, None, None] * stripes)[..., None]
    # --- the "tint" cue: a green cast of the background (no random numbers)
    tint = drawn.get("tint")
    if tint is not None:
        bg = bg + np.where(tint[:, None], np.asarray(TINT_SHIFT, np.float32),
                           np.float32(0))[:, None, None, :]
    # --- the object
    radius = rng.uniform(0.17, 0.3, b) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    theta = rng.uniform(0, 2 * np.pi, b)
    f32 = np.float32
    dx = (xx[None] - cx.astype(f32)[:, None, None]) / radius.astype(f32)[:, None, None]
    dy = (yy[None] - cy.astype(f32)[:, None, None]) / radius.astype(f32)[:, None, None]
    c, s = np.cos(theta).astype(f32)[:, None, None], np.sin(theta).astype(f32)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    obj = np.zeros((b, size, size), bool)
    for k in np.unique(labels):
        idx = labels == k
        obj[idx] = _shape_mask(int(k), u[idx], v[idx])
    # object colour: any hue except magenta, dark (the background is light)
    hue = rng.uniform(0, 1, b)
    hue = np.where((hue > 0.72) & (hue < 0.94), hue - 0.22, hue)
    sat = rng.uniform(0.45, 1.0, b)
    val = rng.uniform(0.15, 0.45, b)
    color = (_hsv_to_rgb(hue, sat, val) * 255.0).astype(np.float32)
    shade = 1.0 + 0.12 * (u * 0.5 + v * 0.3)  # a little shading on the object
    obj_img = color[:, None, None, :] * shade[..., None]
    img = np.where(obj[..., None] & ("object" not in remove), obj_img, bg)
    img += 5.0 * rng.standard_normal(img.shape, dtype=np.float32)  # sensor noise
    img = np.clip(np.rint(img), 0, 254).astype(np.uint8)
    # --- the "watermark" cue: a solid square of MARK_COLOR, drawn last
    wm = drawn.get("watermark", none)
    m = max(4, round(size * 0.12))
    mx = rng.integers(0, size - m + 1, b)
    my = rng.integers(0, size - m + 1, b)
    mark = ((xx[None] >= mx[:, None, None]) & (xx[None] < (mx + m)[:, None, None])
            & (yy[None] >= my[:, None, None]) & (yy[None] < (my + m)[:, None, None])
            & wm[:, None, None])
    # --- the "stripe" cue: a solid bar of STRIPE_COLOR along one edge (under the watermark)
    stripe = np.zeros((b, size, size), bool)
    if "stripe" in has_cue:
        width = max(3, round(size * 0.08))
        edge = rng.integers(0, 4, b)  # top, bottom, left, right
        bars = np.stack([yy < width, yy >= size - width, xx < width, xx >= size - width])
        stripe = bars[edge] & drawn["stripe"][:, None, None]
        img[stripe] = STRIPE_COLOR
    img[mark] = MARK_COLOR
    stripe &= ~mark
    obj &= ~mark & ~stripe
    marks = mark | stripe
    cue_masks = {"watermark": mark, "texture": tex[:, None, None] & ~obj & ~marks,
                 "stripe": stripe}
    if tint is not None:
        cue_masks["tint"] = tint[:, None, None] & ~obj & ~marks
    if "object" in remove:
        obj = np.zeros_like(obj)
    return img, obj, {c: cue_masks[c] for c in has_cue}
