"""Data sources and splits: what ``--data`` can name, turned into model-ready examples.

- ``builtin:shapes`` / ``builtin:toxicity`` (or the dataset objects themselves);
- an ImageFolder directory: ``ROOT/{train,val,test}/CLASS/*.png`` or ``ROOT/CLASS/*.png``
  (all of it is ``train``);
- ``.npy`` arrays: a directory with ``{split}.npy`` + ``{split}_labels.npy``, or one file
  ``X.npy`` with ``X_labels.npy`` next to it; uint8 (n, H, W, 3) arrays are treated as images;
- texts: ``.csv`` (columns ``text``, ``label``, optional ``id``, ``split``) or ``.jsonl`` (same
  keys), or a directory with ``{split}.csv`` / ``{split}.jsonl``.

Labels may be class names (classes = sorted names) or integers 0..K-1. A missing ``val`` split is
carved from ``train`` with a fixed seed; order is deterministic and ids are kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DataSource", "SplitData", "load_split", "open_data"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


# --------------------------------------------------------------------------- torch datasets


class ImageArrayDataset(Dataset):
    """uint8 images (n, H, W, 3) (array or memmap) -> float tensors (3, H', W')."""

    def __init__(self, images: np.ndarray, prep: dict[str, Any]):
        self.images, self.prep = images, prep

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1)
        return _prepare_tensor(x.float().div_(255.0), self.prep)


class ArrayDataset(Dataset):
    """Any numeric array: row i as a float32 tensor, unchanged."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[i], dtype=np.float32))


class ImageFileDataset(Dataset):
    """Image files -> float tensors (resize, center crop, [0, 1], normalize)."""

    def __init__(self, paths: Sequence[str], prep: dict[str, Any]):
        self.paths, self.prep = list(paths), prep

    def __len__(self) -> int:
        return len(self.paths)

    def load_raw(self, i: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.paths[i]) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"not a readable image: {self.paths[i]} ({exc})") from None

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(self.load_raw(i).copy()).permute(2, 0, 1).float().div_(255.0)
        return _prepare_tensor(x, self.prep)


class TextDataset(Dataset):
    """Raw texts (the model tokenizes)."""

    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> str:
        return self.texts[i]


def collate_texts(batch: list[str]) -> list[str]:
    return list(batch)


def _prepare_tensor(x: torch.Tensor, prep: dict[str, Any]) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> resized (shorter side) + center-cropped + normalized."""
    size = prep.get("image_size")
    if size and tuple(x.shape[-2:]) != (size, size):
        from torchvision.transforms.v2 import functional as F

        x = F.center_crop(F.resize(x, [size], antialias=True), [size, size])
    if prep.get("mean") is not None:
        mean = torch.tensor(prep["mean"]).view(-1, 1, 1)
        std = torch.tensor(prep["std"]).view(-1, 1, 1)
        x = (x - mean) / std
    return x


# --------------------------------------------------------------------------- splits


@dataclass
class SplitData:
    """One split: ids, labels and a torch Dataset of model-ready examples (same order).

    Indexing returns examples: ``split[i]`` one (a (3, H, W) tensor or a str), ``split[[i, j]]``
    or ``split[a:b]`` a stacked (k, 3, H, W) tensor or a list of str. ``raw(i)`` returns a
    displayable uint8 (H, W, 3) image (or the text).
    """

    name: str
    kind: str  # "image" | "text" | "array"
    ids: list[str]
    labels: np.ndarray
    dataset: Dataset
    raw_fn: Callable[[int], Any] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int | slice | Sequence[int]) -> Any:
        if isinstance(idx, int | np.integer):
            return self.dataset[int(idx)]
        rows = range(len(self))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
        items = [self.dataset[i] for i in rows]
        if self.kind == "text":
            return items
        return torch.stack(items) if items else torch.empty(0)

    def raw(self, i: int) -> Any:
        return self.raw_fn(i) if self.raw_fn is not None else self.dataset[i]

    @property
    def collate_fn(self) -> Callable | None:
        return collate_texts if self.kind == "text" else None

    def subset(self, rows: np.ndarray, name: str) -> SplitData:
        rows = np.asarray(rows, dtype=np.int64)
        ds = torch.utils.data.Subset(self.dataset, rows.tolist())
        raw = self.raw_fn
        return SplitData(name, self.kind, [self.ids[i] for i in rows], self.labels[rows], ds,
                         (lambda i: raw(int(rows[i]))) if raw is not None else None)


@dataclass
class DataSource:
    """An opened data source: its splits, classes, kind and its meta.json description."""

    kind: str
    classes: list[str]
    splits: dict[str, SplitData]
    describe: dict[str, Any]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    truth: Any = None  # the built-in dataset object, where there is one


def _carve_val(src: DataSource, val_fraction: float, seed: int) -> None:
    if "val" in src.splits or "train" not in src.splits or val_fraction <= 0:
        return
    train = src.splits["train"]
    n = len(train)
    n_val = round(n * val_fraction)
    if n_val == 0 or n_val >= n:
        return
    perm = np.random.default_rng(seed).permutation(n)
    val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    src.splits = {"train": train.subset(train_rows, "train"),
                  "val": train.subset(val_rows, "val"),
                  **{k: v for k, v in src.splits.items() if k not in ("train", "val")}}
    src.describe["val_carved"] = {"fraction": val_fraction, "seed": seed}


def _check_labels(labels: np.ndarray, classes: Sequence[str] | None, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    k = len(classes) if classes is not None else None
    bad = (labels < 0) | (labels >= k if k is not None else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rng = f"[0, {k})" if k is not None else ">= 0"
        raise ValueError(f"{where}: label {labels[i]} at row {i} out of range (expected {rng})")
    return labels


# --------------------------------------------------------------------------- sources


def _builtin(name_or_ds: Any, prep: dict[str, Any]) -> DataSource:
    from sparse_probe.datasets import ShapesDataset, ToxicityDataset, make_shapes, make_toxicity

    ds = name_or_ds
    if isinstance(ds, str):
        ds = {"shapes": make_shapes, "toxicity": make_toxicity}[ds]()
    if isinstance(ds, ShapesDataset):
        splits = {}
        for s in SPLITS:
            sp = ds.split(s)
            splits[s] = SplitData(s, "image", list(sp.ids), sp.labels,
                                  ImageArrayDataset(sp.images, prep),
                                  (lambda i, im=sp.images: im[i]))
        return DataSource("image", list(ds.class_names), splits, ds.describe(), prep, ds)
    if isinstance(ds, ToxicityDataset):
        splits = {s: SplitData(s, "text", list(ds.split(s).ids), ds.split(s).labels,
                               TextDataset(ds.split(s).texts)) for s in SPLITS}
        return DataSource("text", list(ds.class_names), splits, ds.describe(), {}, ds)
    raise ValueError(f"not a built-in dataset: {type(ds).__name__}")


def _scan_class_dirs(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"empty image folder: no class subfolders in {root}")
    items = []
    for k, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).rglob("*") if p.is_file()
                       and not p.name.startswith("."))
        for f in files:
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"not an image file: {f} (expected one of "
                                 f"{', '.join(IMAGE_EXTENSIONS)})")
            items.append((str(f), k))
    if not items:
        raise ValueError(f"empty image folder: no images under {root}")
    return classes, items


def _imagefolder(root: Path, prep: dict[str, Any]) -> DataSource:
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    classes: list[str] | None = None
    splits = {}
    for s, d in split_dirs.items():
        cls, items = _scan_class_dirs(d)
        if classes is None:
            classes = cls
        elif cls != classes:
            raise ValueError(f"{d}: class folders {cls} differ from the train split's {classes}")
        paths = [p for p, _ in items]
        ids = [os.path.relpath(p, root) for p in paths]
        ds = ImageFileDataset(paths, prep)
        splits[s] = SplitData(s, "image", ids, np.array([k for _, k in items], np.int64), ds,
                              ds.load_raw)
    assert classes is not None
    return DataSource("image", classes, splits,
                      {"source": "imagefolder", "name": root.name, "root": str(root.resolve()),
                       "seed": None}, prep)


def _read_text_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path, dtype={"text": str}, keep_default_na=False)
        rows = df.to_dict("records")
    else:
        rows = []
        with path.open(encoding="utf-8") as fh:
            for ln, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{ln}: invalid JSON ({exc.msg})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    for col in ("text", "label"):
        if col not in rows[0]:
            raise ValueError(f"{path}: missing column {col!r} (expected text, label)")
    return rows


def _texts(path: Path, classes: Sequence[str] | None) -> DataSource:
    if path.is_dir():
        tables = {s: path / f"{s}{ext}" for s in SPLITS for ext in (".csv", ".jsonl")
                  if (path / f"{s}{ext}").is_file()}
        per_split = {s: _read_text_table(p) for s, p in tables.items()}
    else:
        rows = _read_text_table(path)
        if "split" in rows[0]:
            per_split = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
            per_split = {s: r for s, r in per_split.items() if r}
        else:
            per_split = {"train": rows}
    all_labels = [r["label"] for rows in per_split.values() for r in rows]
    is_int = all(isinstance(v, int | np.integer) or (isinstance(v, str) and v.lstrip("-")
                                                     .isdigit()) for v in all_labels)
    if classes is None:
        if is_int:
            classes = [str(i) for i in range(max(int(v) for v in all_labels) + 1)]
        else:
            classes = sorted({str(v) for v in all_labels})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for s, rows in per_split.items():
        if is_int:
            labels = np.array([int(r["label"]) for r in rows])
        else:
            unknown = sorted({str(r["label"]) for r in rows} - set(index))
            if unknown:
                raise ValueError(f"{path}: labels {unknown[:3]} not in classes {list(classes)}")
            labels = np.array([index[str(r["label"])] for r in rows])
        labels = _check_labels(labels, classes, f"{path} ({s})")
        ids = [str(r["id"]) if "id" in r else f"{s}/{i:06d}" for i, r in enumerate(rows)]
        splits[s] = SplitData(s, "text", ids, labels, TextDataset([str(r["text"]) for r in rows]))
    return DataSource("text", list(classes), splits,
                      {"source": "csv" if (path.suffix == ".csv" or any(
                          p.suffix == ".csv" for p in path.glob("*.csv"))) else "jsonl",
                       "name": path.stem, "root": str(path.resolve()), "seed": None}, {})


def _npy(path: Path, prep: dict[str, Any], classes: Sequence[str] | None) -> DataSource:
    if path.is_dir():
        files = {s: (path / f"{s}.npy", path / f"{s}_labels.npy") for s in SPLITS
                 if (path / f"{s}.npy").is_file()}
        if not files:
            raise ValueError(f"{path}: no train.npy / val.npy / test.npy")
    else:
        files = {"train": (path, path.with_name(path.stem + "_labels.npy"))}
    arrays, labels = {}, {}
    for s, (x, y) in files.items():
        if not y.is_file():
            raise ValueError(f"missing labels file {y} for {x}")
        arrays[s] = np.load(x, mmap_mode="r")
        labels[s] = np.load(y)
        if len(labels[s]) != len(arrays[s]):
            raise ValueError(f"{y}: {len(labels[s])} labels for {len(arrays[s])} rows of {x}")
    if classes is None:
        k = max(int(np.max(v)) for v in labels.values() if len(v)) + 1
        classes = [str(i) for i in range(k)]
    first = next(iter(arrays.values()))
    is_image = first.dtype == np.uint8 and first.ndim == 4 and first.shape[-1] == 3
    splits = {}
    for s in arrays:
        y = _check_labels(labels[s], classes, str(files[s][1]))
        ds: Dataset = ImageArrayDataset(arrays[s], prep) if is_image else ArrayDataset(arrays[s])
        raw = (lambda i, a=arrays[s]: np.asarray(a[i])) if is_image else None
        splits[s] = SplitData(s, "image" if is_image else "array",
                              [f"{s}/{i:06d}" for i in range(len(y))], y, ds, raw)
    return DataSource("image" if is_image else "array", list(classes), splits,
                      {"source": "npy", "name": path.stem, "root": str(path.resolve()),
                       "seed": None}, prep if is_image else {})


def open_data(
    data: Any,
    *,
    preprocessing: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> DataSource:
    """Open ``data`` (a spec string / path, or a built-in dataset object).

    Parameters
    ----------
    data : str, path, ShapesDataset or ToxicityDataset
    preprocessing : dict, optional
        For images: ``{"image_size": int | None, "mean": [3] | None, "std": [3] | None}``.
    val_fraction, seed : float, int
        Used to carve ``val`` from ``train`` when the source has no val split.
    classes : list of str, optional
        Class names for integer labels (checked: labels must lie in [0, len(classes))).

    Raises
    ------
    ValueError
        Empty folder, non-image file, labels out of range, ... (one line, naming the file).
    """
    prep = dict(preprocessing or {})
    if not isinstance(data, str | os.PathLike):
        src = _builtin(data, prep)
    elif str(data).startswith("builtin:"):
        name = str(data).split(":", 1)[1]
        if name not in ("shapes", "toxicity"):
            raise ValueError(f"unknown built-in dataset {name!r}; expected builtin:shapes or "
                             f"builtin:toxicity")
        src = _builtin(name, prep)
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise ValueError(f"data not found: {path}")
        if path.suffix in (".csv", ".jsonl") or (path.is_dir() and any(
                (path / f"{s}{e}").is_file() for s in SPLITS for e in (".csv", ".jsonl"))):
            src = _texts(path, classes)
        elif path.suffix == ".npy" or (path.is_dir() and (path / "train.npy").is_file()):
            src = _npy(path, prep, classes)
        elif path.is_dir():
            src = _imagefolder(path, prep)
            if classes is not None and len(classes) != len(src.classes):
                raise ValueError(f"{path}: {len(src.classes)} class folders but "
                                 f"{len(classes)} classes given")
        else:
            raise ValueError(f"unsupported data {path}: expected an image folder, .npy, .csv, "
                             f".jsonl or builtin:NAME")
    _carve_val(src, val_fraction, seed)
    return src


def load_split(meta: dict[str, Any] | str | os.PathLike, split: str) -> SplitData:
    """Examples of ``split`` of a features directory, in the order of ``{split}_ids.json``.

    ``load_split(meta, "test")[[3, 7]]`` gives model-ready inputs (a (2, 3, H, W) tensor for
    images, a list of str for texts); ``.raw(i)`` a displayable uint8 image; ``.labels``, ``.ids``.
    """
    from sparse_probe.extract.meta import read_meta

    meta = read_meta(meta) if not isinstance(meta, dict) else meta
    ds_meta = meta["dataset"]
    if ds_meta["source"] == "builtin":
        from sparse_probe.datasets.prepare import load_builtin

        data: Any = load_builtin(ds_meta)
    else:
        from sparse_probe.rundir import recorded_path

        data = recorded_path(meta, "dataset", "root")  # found again in a moved run directory
    carved = ds_meta.get("val_carved") or {}
    src = open_data(data, preprocessing=meta.get("preprocessing"),
                    val_fraction=carved.get("fraction", 0.0), seed=carved.get("seed", 0),
                    classes=meta.get("classes"))
    if split not in src.splits:
        raise KeyError(f"no split {split!r} in {ds_meta.get('root') or ds_meta['name']}")
    return src.splits[split]
