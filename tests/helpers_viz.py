"""Fixtures for the visualization and HIT-building tests: a tiny CNN whose channels detect
known colours, synthetic images with known object and mark masks, a toy bag-of-words text
encoder, and run directories (features/ + probe/) built from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.viz.source import ExampleSource

MARK_COLOR = (1.0, 0.0, 1.0)
OBJECT_COLOR = (0.1, 0.8, 0.1)


class TinyCNN(nn.Module):
    """``features`` (conv trunk, feature j = channel j) -> global average pool -> ``fc``."""

    def __init__(self, channels: int = 8, n_classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, channels, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


class ColorCNN(nn.Module):
    """Channel 0 fires on the mark's magenta, channel 1 on the object's green, channel 2 on
    every pixel a little (a diffuse feature); the spatial map is half the image size."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, -2.0, 1.0], [-1.0, 1.0, -1.0],
                                            [0.0, 0.0, 0.0]])[:, :, None, None])
            conv.bias.copy_(torch.tensor([-1.5, -0.3, 0.2]))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def synthetic_images(n: int = 24, size: int = 32, seed: int = 0):
    """Gray noisy images with a green square object and, in odd images, a magenta mark.

    Returns images (n, 3, H, W) float in [0, 1], labels (n,), object masks (n, H, W) and the
    mark masks (n, H, W).
    """
    rng = np.random.default_rng(seed)
    imgs = np.clip(0.5 + 0.05 * rng.standard_normal((n, 3, size, size)), 0, 1)
    obj = np.zeros((n, size, size), bool)
    mark = np.zeros((n, size, size), bool)
    labels = np.arange(n) % 2
    for i in range(n):
        s = rng.integers(size // 4, size // 2)
        y, x = rng.integers(0, size - s, 2)
        obj[i, y : y + s, x : x + s] = True
        if labels[i] == 1:
            m = max(3, size // 8)
            while True:
                my, mx = rng.integers(0, size - m, 2)
                if not obj[i, max(0, my - 2) : my + m + 2, max(0, mx - 2) : mx + m + 2].any():
                    break
            mark[i, my : my + m, mx : mx + m] = True
    for c in range(3):
        imgs[:, c][obj] = OBJECT_COLOR[c]
        imgs[:, c][mark] = MARK_COLOR[c]
    return torch.tensor(imgs, dtype=torch.float32), labels.astype(np.int64), obj, mark


TOXIC_WORDS = ["idiot", "stupid", "moron"]
NICE_WORDS = ["great", "kind", "lovely"]
IDENTITY_WORDS = ["muslim", "jewish", "christian"]
FILLER = ["the", "post", "was", "about", "this", "topic", "you", "are"]


class BagOfWordsEncoder:
    """Toy text encoder: feature 0 counts insults, 1 counts identity terms, 2 counts
    compliments, 3 counts filler words."""

    groups = (TOXIC_WORDS, IDENTITY_WORDS, NICE_WORDS, FILLER)

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros((len(texts), len(self.groups)))
        for i, t in enumerate(texts):
            for w in t.lower().split():
                for j, g in enumerate(self.groups):
                    if w in g:
                        out[i, j] += 1
        return out


def synthetic_texts(n: int = 30, seed: int = 0):
    """Comments with token kinds; label 1 = toxic (has an insult), identity terms in half."""
    rng = np.random.default_rng(seed)
    texts, kinds, labels = [], [], []
    for i in range(n):
        toks, ks = [], []
        for _ in range(int(rng.integers(4, 8))):
            toks.append(str(rng.choice(FILLER)))
            ks.append("other")
        label = i % 2
        word, kind = ((str(rng.choice(TOXIC_WORDS)), "insult") if label
                      else (str(rng.choice(NICE_WORDS)), "compliment"))
        pos = int(rng.integers(0, len(toks) + 1))
        toks.insert(pos, word)
        ks.insert(pos, kind)
        if i % 4 in (1, 2):
            pos = int(rng.integers(0, len(toks) + 1))
            toks.insert(pos, str(rng.choice(IDENTITY_WORDS)))
            ks.insert(pos, "identity:religion")
        texts.append(" ".join(toks))
        kinds.append(ks)
        labels.append(label)
    return texts, kinds, np.asarray(labels, np.int64)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def write_run(root: Path, kind: str, X: np.ndarray, labels: np.ndarray, ids: list[str],
              top: list[dict], classes: list[str], dense: list[dict] | None = None,
              split: str = "val") -> tuple[Path, Path]:
    """Write features/ and probe/ of a run directory (only the fields the builder reads)."""
    feats, probe = root / "features", root / "probe"
    feats.mkdir(parents=True, exist_ok=True)
    np.save(feats / f"{split}.npy", X.astype(np.float32))
    np.save(feats / f"{split}_labels.npy", labels.astype(np.int64))
    _write_json(feats / f"{split}_ids.json", ids)
    _write_json(feats / "meta.json", {
        "format": 1, "kind": kind, "classes": classes, "d": int(X.shape[1]),
        "splits": {split: int(X.shape[0])},
        "model": {"source": "callable", "name": "fixture", "weights": None, "checkpoint": None},
        "layer": "features", "spatial_layer": "features" if kind == "image" else None,
        "dataset": {"source": "npy", "name": "fixture", "root": None, "seed": 0},
        "preprocessing": {}})
    _write_json(probe / "probe.json", {
        "format": 1, "features_dir": "../features", "classes": classes, "d": int(X.shape[1]),
        "top_features": {"sparse": top, "dense": dense if dense is not None else top}})
    return probe, feats


def image_run(root: Path, n: int = 24, size: int = 32, class_name: str = "marked",
              with_truth: bool = True):
    """A run on :class:`ColorCNN` and :func:`synthetic_images`: class 1 uses feature 0 (the
    mark detector, weight +2) and feature 1 (the object, weight -0.5); class 0 feature 1.

    Returns (probe_dir, features_dir, source).
    """
    images, labels, obj, mark = synthetic_images(n, size)
    model = ColorCNN().eval()
    with torch.no_grad():
        X = model.embed(images).numpy()
    names = ["plain", class_name]
    top = [
        {"class": 0, "class_name": names[0], "feature": 1, "weight": 1.0, "rank": 1},
        {"class": 1, "class_name": names[1], "feature": 0, "weight": 2.0, "rank": 1},
        {"class": 1, "class_name": names[1], "feature": 1, "weight": -0.5, "rank": 2},
    ]
    dense = [*top, {"class": 0, "class_name": names[0], "feature": 2, "weight": 0.1, "rank": 2}]
    probe, feats = write_run(root, "image", X, labels, [f"val/{i:04d}" for i in range(n)], top,
                             names, dense=dense)
    src = ExampleSource(
        kind="image", images=images, spatial=lambda x: model.features(x),
        features=model.embed, model=model, fvis_layer="features",
        object_masks=obj if with_truth else None,
        cue_masks={"mark": mark} if with_truth else {},
        cue_kind={"mark": "mark"} if with_truth else {})
    return probe, feats, src


def text_run(root: Path, n: int = 30):
    """A run on :class:`BagOfWordsEncoder`: class 1 ("toxic") uses feature 0 (insults) and
    feature 1 (identity terms); class 0 ("non-toxic") feature 2 (compliments)."""
    texts, kinds, labels = synthetic_texts(n)
    enc = BagOfWordsEncoder()
    X = enc.encode(texts).numpy()
    names = ["non-toxic", "toxic"]
    top = [
        {"class": 0, "class_name": names[0], "feature": 2, "weight": 1.5, "rank": 1},
        {"class": 1, "class_name": names[1], "feature": 0, "weight": 2.0, "rank": 1},
        {"class": 1, "class_name": names[1], "feature": 1, "weight": 0.8, "rank": 2},
    ]
    probe, feats = write_run(root, "text", X, labels, texts, top, names)
    src = ExampleSource(kind="text", texts=texts, features=enc.encode, token_kinds=kinds)
    return probe, feats, src


class ShapesProbeCNN(nn.Module):
    """A stride-8 model for the built-in shapes images whose channels are known: channel 0
    fires on the watermark's magenta (255, 0, 255), channel 1 on dark pixels (the objects are
    drawn darker than the light backgrounds). Like ``ShapesCNN`` its ``features`` map is 1/8 of
    the image side and its inputs are floats in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, -2.0, 1.0],
                                            [-1 / 3, -1 / 3, -1 / 3]])[:, :, None, None])
            conv.bias.copy_(torch.tensor([-1.6, 0.42]))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 6)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


_PREPARED: dict[str, Path] = {}


def prepared_builtin(name: str) -> Path:
    """Run directory with ``features/`` of the built-in dataset ``name`` (quick size, trained
    model via ``sparse_probe.datasets.prepare_builtin``) and a ``probe/probe.json`` whose top
    features are the trained model's own final-layer weights (largest |weight| per class).
    Prepared once per test process."""
    if name in _PREPARED:
        return _PREPARED[name]
    import atexit
    import shutil
    import tempfile

    from sparse_probe.datasets import prepare_builtin
    from sparse_probe.extract import load_model, read_meta

    run = Path(tempfile.mkdtemp(prefix=f"viz-{name}-"))
    atexit.register(shutil.rmtree, run, ignore_errors=True)
    feats = prepare_builtin(name, run, quick=True, progress=False)
    meta = read_meta(feats)
    model = load_model(meta)
    fc = next(m for n, m in model.named_modules() if n.split(".")[-1] == "fc")
    W = fc.weight.detach().numpy()
    top = []
    for c in range(W.shape[0]):
        for r, j in enumerate(np.argsort(-np.abs(W[c]))[:3]):
            top.append({"class": c, "class_name": meta["classes"][c], "feature": int(j),
                        "weight": float(W[c, j]), "rank": r + 1})
    _write_json(run / "probe" / "probe.json", {
        "format": 1, "features_dir": "../features", "classes": meta["classes"],
        "d": meta["d"], "top_features": {"sparse": top, "dense": top}})
    _PREPARED[name] = run
    return run


def channel_measurements(features_dir: Path) -> dict[str, float]:
    """What ``test_real_builtin_shapes_model_mark_and_object_features`` measures on a trained
    built-in shapes model (also run over seeds by ``benchmarks/measure_heatmap_margins.py``).

    - ``mark_drop``: the largest relative drop of a channel's mean activation when the
      watermark is removed from the same validation images (the "mark channel");
    - ``object_change``: among the more active half of the channels, the smallest relative
      change when every cue is removed (the "object channel");
    - ``mark_share`` / ``object_share``: the share of the refined heatmaps' mass of the top-9
      images of each channel on the watermark's mask / on the object's mask.
    """
    from sparse_probe.datasets import load_builtin, make_shapes
    from sparse_probe.extract import read_meta
    from tasks.viz import gradient_refined_heatmaps, image_evidence, normalize_maps, top_k
    from tasks.viz.source import load_source

    meta = read_meta(features_dir)
    src = load_source(meta, "val")
    ds = load_builtin(meta)
    params = meta["dataset"]["params"]
    clean = make_shapes(**{**params, "cue_strength": 0.0, "cue_leak": 0.0}).val
    val = ds.val
    # same seed, no cues: the same objects (the generator draws cue flags either way)
    first = next(iter(val.cue_masks))
    same = (clean.object_masks | val.cue_masks[first]) == (val.object_masks | val.cue_masks[first])
    assert same.mean() > 0.99
    x = src.images[np.arange(len(val))]
    x_clean = torch.from_numpy(clean.images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        f = src.spatial(x).mean((2, 3)).numpy()
        f_clean = src.spatial(x_clean).mean((2, 3)).numpy()
    wm = next(n for n, k in ds.cue_kind.items() if k == "mark")
    has = val.has_cue[wm]
    drop = (f[has] - f_clean[has]).mean(0) / (f[has].mean(0) + 1e-6)
    mark_ch = int(np.argmax(drop))
    any_cue = np.any([val.has_cue[c] for c in val.has_cue], axis=0)
    change = np.abs(f - f_clean)[any_cue].mean(0) / (f[any_cue].mean(0) + 1e-6)
    active = np.flatnonzero(f.mean(0) >= np.median(f.mean(0)))
    obj_ch = int(active[np.argmin(change[active])])
    shares = {}
    for ch, region in ((mark_ch, wm), (obj_ch, "object")):
        idx = top_k(f[:, ch], 9)
        heat = gradient_refined_heatmaps(src.spatial, x[idx], [ch] * 9, [1.0] * 9)
        ev = image_evidence(normalize_maps(heat, floor=0.5), val.object_masks[idx],
                            {n: m[idx] for n, m in val.cue_masks.items()})
        shares[region] = ev["object"] if region == "object" else ev["cues"][region]
    return {"mark_drop": float(drop[mark_ch]), "object_change": float(change[obj_ch]),
            "mark_share": float(shares[wm]), "object_share": float(shares["object"])}
