"""Feature extraction into memory-mappable ``{split}.npy`` files (resumable, constant RAM).

Features of a layer are read with a forward hook (``method="hook"``, any ``nn.Module``) or
with ``torchvision.models.feature_extraction.create_feature_extractor`` (``method="fx"``).
Layer names:

- ``"fc:input"``: the *input* of module ``fc`` (the default is the input of the last
  ``nn.Linear``, i.e. the penultimate representation, see :func:`find_penultimate_layer`);
- ``"layer4"``: the output of that module; maps (n, c, h, w) are averaged over h, w and
  sequences (n, t, c) over t, so every layer gives (n, d);
- ``"output"``: the model's output itself (TorchScript, text encoders).

Rows go straight to a preallocated ``np.lib.format.open_memmap`` file, chunk by chunk (each chunk
through a short-lived mapping, so resident memory stays flat whatever n); a progress file records
rows done after each flushed chunk, so an interrupted extraction resumes where it stopped.
``meta.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from sparse_probe.extract.data import IMAGENET_MEAN, IMAGENET_STD, DataSource, open_data
from sparse_probe.extract.meta import FORMAT, read_meta
from sparse_probe.extract.sizing import choose_image_size
from sparse_probe.extract.sources import ModelSpec, build_model, parse_model_spec
from sparse_probe.rundir import atomic_path, features_fingerprint, with_relative, write_json

__all__ = [
    "LayerReader",
    "extract_features",
    "find_penultimate_layer",
    "find_spatial_layer",
    "layer_names",
    "spatial_maps",
]

logger = logging.getLogger(__name__)


class _StopForwardError(Exception):
    """Raised by a hook to stop the forward pass once the wanted layer is computed."""


def layer_names(model: nn.Module) -> list[str]:
    """Names usable as layers (module names; ``NAME:input`` also works)."""
    return [n for n, _ in model.named_modules() if n]


def find_penultimate_layer(model: nn.Module) -> str:
    """The input of the model's last ``nn.Linear`` (``"NAME:input"``), or ``"output"``.

    For torchvision classifiers this is the pooled representation (``fc:input`` for ResNets,
    ``classifier.N:input`` for VGG/MobileNet...). TorchScript modules, modules without a
    linear layer and adapters with a ``default_layer`` attribute (the ``encode`` wrappers, the
    Hugging Face adapter: ``"output"``) give that instead.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return "output"
    if getattr(model, "default_layer", None):  # adapters (text encoders) declare their own
        return str(model.default_layer)
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return f"{name}:input" if name else "output"


def _pool(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 4:
        return t.mean(dim=(2, 3))
    if t.ndim == 3:
        return t.mean(dim=1)
    return t.reshape(t.shape[0], -1)


def _resolve_module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        near = [n for n in modules if n and name.split(".")[0] in n][:5] or \
            [n for n in modules if n][-5:]
        raise ValueError(f"no layer named {name!r} in {type(model).__name__}; valid names "
                         f"include: {', '.join(near)}")
    return modules[name]


class LayerReader:
    """Callable ``reader(batch) -> Tensor (n, d)``: features of one layer of ``model``.

    Parameters
    ----------
    model : nn.Module
    layer : str
        ``"NAME"``, ``"NAME:input"`` or ``"output"``; ``None`` for the penultimate layer.
    method : {"hook", "fx"}
        Forward hooks (any module) or torchvision's FX feature extractor (traceable models).
    """

    def __init__(self, model: nn.Module, layer: str | None = None, method: str = "hook"):
        self.model = model
        self.layer = layer or find_penultimate_layer(model)
        self.method = method
        self._fx: nn.Module | None = None
        if self.layer == "output":
            return
        if isinstance(model, torch.jit.ScriptModule):
            raise ValueError(f"layer {self.layer!r}: TorchScript models only support "
                             f"layer 'output' (export the feature model instead)")
        name, _, where = self.layer.partition(":")
        if where not in ("", "input", "output"):
            raise ValueError(f"bad layer {self.layer!r}: expected NAME, NAME:input or output")
        self.module = _resolve_module(model, name)
        self.name, self.use_input = name, where == "input"
        if method == "fx":
            self._fx = self._build_fx()
        elif method != "hook":
            raise ValueError(f"unknown method {method!r}: expected 'hook' or 'fx'")

    def _build_fx(self) -> nn.Module:
        from torchvision.models.feature_extraction import (
            create_feature_extractor,
            get_graph_node_names,
        )

        _, nodes = get_graph_node_names(self.model)
        node = self.name
        if self.use_input:
            if self.name not in nodes:
                raise ValueError(f"layer {self.layer!r}: {self.name!r} is not a traced node")
            node = nodes[nodes.index(self.name) - 1]
        elif node not in nodes:
            raise ValueError(f"no traced node {node!r}; nodes include: "
                             f"{', '.join(nodes[-5:])}")
        self.fx_node = node
        return create_feature_extractor(self.model, return_nodes=[node])

    def __call__(self, batch: Any) -> torch.Tensor:
        if self.layer == "output":
            return _pool(self.model(batch))
        if self._fx is not None:
            return _pool(self._fx(batch)[self.fx_node])
        box: list[torch.Tensor] = []

        def pre(_m: nn.Module, args: tuple) -> None:
            box.append(args[0])
            raise _StopForwardError

        def post(_m: nn.Module, _args: tuple, out: Any) -> None:
            box.append(out[0] if isinstance(out, tuple) else out)
            raise _StopForwardError

        handle = (self.module.register_forward_pre_hook(pre) if self.use_input
                  else self.module.register_forward_hook(post))
        try:
            self.model(batch)
        except _StopForwardError:
            pass
        finally:
            handle.remove()
        if not box:
            raise ValueError(f"layer {self.layer!r} was not reached by the forward pass")
        return _pool(box[0])


_POOLING = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool2d)


def find_spatial_layer(model: nn.Module, reader: LayerReader, batch: Any) -> str | None:
    """Module whose (n, d, h, w) output, averaged over h and w, equals the features.

    Returns the shallowest such module name (e.g. ``layer4`` for a ResNet's ``fc:input``,
    ``features`` for :class:`~sparse_probe.datasets.ShapesCNN`), or ``None`` (texts,
    TorchScript, no such map).
    """
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(batch, torch.Tensor):
        return None
    if reader.layer != "output" and not reader.use_input:
        out: list[torch.Tensor] = []
        h = reader.module.register_forward_hook(lambda m, a, o: out.append(o))
        try:
            reader(batch)
        finally:
            h.remove()
        return reader.name if out and isinstance(out[0], torch.Tensor) and out[0].ndim == 4 \
            else None
    seen: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_hook(
        lambda mod, a, o, n=n: seen.append((n, o)) if isinstance(o, torch.Tensor)
        and o.ndim == 4 else None) for n, m in model.named_modules() if n]
    try:
        feats = reader(batch)  # one pass: the hooks above record every map on the way
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    matches = [n for n, o in seen if o.shape[:2] == feats.shape
               and not isinstance(modules[n], _POOLING)
               and torch.allclose(o.mean(dim=(2, 3)), feats, rtol=1e-4, atol=1e-5)]
    if not matches:
        return None
    depth = min(n.count(".") for n in matches)
    return [n for n in matches if n.count(".") == depth][-1]


def spatial_maps(model: nn.Module, meta: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
    """The map before global pooling, (n, d, h, w), for a few model-ready images.

    ``meta["spatial_layer"]`` names the module (recomputed on demand, never stored).
    ``images``: (n, 3, H, W) float as returned by :func:`~sparse_probe.extract.load_split`.
    """
    name = meta.get("spatial_layer")
    if not name:
        raise ValueError("this features directory has no spatial layer (text or flat model)")
    module = _resolve_module(model, name)
    out: list[torch.Tensor] = []
    h = module.register_forward_hook(lambda m, a, o: out.append(o))
    dev = next(iter(model.parameters())).device
    try:
        with torch.inference_mode():
            model(images.to(dev))
    except _StopForwardError:  # pragma: no cover
        pass
    finally:
        h.remove()
    return out[0].detach().float().cpu()


# --------------------------------------------------------------------------- the writer


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _write_rows(path: Path, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` at ``start`` through a short-lived mapping (keeps RSS flat), flushed."""
    mm = np.lib.format.open_memmap(path, mode="r+")
    mm[start:start + len(rows)] = rows
    mm.flush()
    del mm


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extract_features(
    model: str | nn.Module | ModelSpec,
    data: Any,
    out_dir: str | os.PathLike,
    *,
    weights: str | None = None,
    layer: str | None = None,
    method: str = "hook",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    splits: Sequence[str] = ("train", "val", "test"),
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    model_meta: dict[str, Any] | None = None,
    chunk_size: int | None = None,
    on_chunk: Callable[[str, int], None] | None = None,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Extract features of ``model`` on ``data`` into ``out_dir`` (the features contract).

    Parameters
    ----------
    model : str, ModelSpec or nn.Module
        A model spec (see :mod:`sparse_probe.extract.sources`) or a built module (then
        ``model_meta`` should describe how to rebuild it, else ``load_model`` cannot).
    data : str, path or built-in dataset object
        See :func:`sparse_probe.extract.data.open_data`.
    out_dir : path
        Receives ``{split}.npy`` (float32, (n, d)), ``{split}_labels.npy``, ``{split}_ids.json``
        and ``meta.json``.
    layer : str, optional
        Default: the penultimate representation (:func:`find_penultimate_layer`).
    method : {"hook", "fx"}
    batch_size, device, num_workers : int, str, int
    splits : sequence of str
        Splits to extract (those the data lacks are skipped).
    val_fraction, seed : float, int
        Carve ``val`` from ``train`` when absent.
    image_size : int, optional
        Resize (shorter side) + center-crop images to this side. Default: the data's own size;
        the size a model needs where it declares one (torchvision ViTs); for an image folder
        whose images differ in size, their median shorter side (see :func:`choose_image_size`).
        ImageNet normalization is applied for non-builtin image models.
    chunk_size : int, optional
        Rows per flushed chunk (default ``16 * batch_size``).
    on_chunk : callable(split, rows_done), optional
        Called after each chunk is safely on disk (progress reporting; tests interrupt here).
    report : callable(str), optional
        Called with one line saying which image size was used and why (the CLI prints it).

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device is not None else _default_device()
    if isinstance(model, str):
        model = parse_model_spec(model, weights)
    if isinstance(model, ModelSpec):
        spec_meta = model.to_meta()
        net = build_model(model, dev)
    else:
        spec_meta = model_meta or {"source": "callable", "name": type(model).__name__,
                                   "weights": None, "checkpoint": None}
        net = model.to(dev).eval()
    from sparse_probe.datasets.models import ShapesCNN, ToxicityEncoder

    # the built-in models normalize inside; everything else gets ImageNet normalization
    builtin_model = spec_meta["source"] == "builtin" or isinstance(net, ShapesCNN | ToxicityEncoder)
    prep: dict[str, Any] = {"image_size": image_size, "mean": None, "std": None}
    if not builtin_model:
        prep.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    src: DataSource = open_data(data, preprocessing=prep, val_fraction=val_fraction, seed=seed,
                                classes=classes)
    if src.kind != "image":
        prep = {"kind": src.kind}
    else:
        # the splits' datasets share ``src.preprocessing``: the size set here applies to all
        prep["image_size"], note = choose_image_size(src, net, image_size)
        src.preprocessing["image_size"] = prep["image_size"]
        logger.info("%s", note)
        if report is not None:
            report(note)
    reader = LayerReader(net, layer, method)
    todo = [s for s in splits if s in src.splits]
    if not todo:
        raise ValueError(f"none of the splits {list(splits)} in the data "
                         f"(has {sorted(src.splits)})")
    chunk = chunk_size or 16 * batch_size
    first = src.splits[todo[0]]
    probe = first[list(range(min(2, len(first))))]
    with torch.inference_mode():
        probe_in = probe.to(dev) if isinstance(probe, torch.Tensor) else probe
        try:
            d = int(reader(probe_in).shape[1])
        except RuntimeError as exc:
            if src.kind != "image":
                raise
            shape = "x".join(str(v) for v in probe_in.shape[-2:])
            raise ValueError(f"the model fails on {shape} images "
                             f"({str(exc).splitlines()[0][:200]}); pass --image-size N "
                             "(e.g. 224) to resize them") from None
        spatial = find_spatial_layer(net, reader, probe_in) if src.kind == "image" else None
    (out / "meta.json").unlink(missing_ok=True)  # written last: its absence marks "unfinished"
    counts = {}
    for s in todo:
        counts[s] = _extract_split(net, reader, src.splits[s], out, d=d, device=dev,
                                   batch_size=batch_size, num_workers=num_workers, chunk=chunk,
                                   key=_fingerprint(spec_meta, reader.layer, src.describe, prep),
                                   on_chunk=on_chunk, progress=progress)
    meta = {
        "format": FORMAT, "kind": src.kind, "classes": list(src.classes), "d": d,
        "splits": counts, "model": with_relative(spec_meta, "checkpoint", out),
        "layer": reader.layer, "spatial_layer": spatial,
        "method": method, "pooling": "mean over spatial/sequence dims if any",
        "dataset": with_relative(src.describe, "root", out), "preprocessing": prep,
    }
    meta["fingerprint"] = features_fingerprint(out, meta)
    write_json(out / "meta.json", meta)
    logger.info("features: %s (d=%d, %s)", out, d, counts)
    return out


def _extract_split(net: nn.Module, reader: LayerReader, split: Any, out: Path, *, d: int,
                   device: torch.device, batch_size: int, num_workers: int, chunk: int,
                   key: str, on_chunk: Callable[[str, int], None] | None, progress: bool) -> int:
    n = len(split)
    final = out / f"{split.name}.npy"
    partial = out / f"{split.name}.npy.partial"
    prog_file = out / f"{split.name}.progress.json"
    key = _fingerprint(key, split.name, n, d, split.ids)
    start = 0
    if prog_file.is_file() and partial.is_file():
        prog = json.loads(prog_file.read_text())
        if prog.get("key") == key:
            start = int(prog["rows"])
            logger.info("resuming %s at row %d of %d", split.name, start, n)
    if start == 0:
        final.unlink(missing_ok=True)
        if n == 0:  # an empty file cannot be memory-mapped for writing
            with partial.open("wb") as fh:
                np.save(fh, np.zeros((0, d), np.float32))
        else:
            np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                      shape=(n, d)).flush()
        write_json(prog_file, {"key": key, "rows": 0, "n": n, "d": d})
    rows_left = range(start, n)
    loader = DataLoader(Subset(split.dataset, list(rows_left)), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=split.collate_fn,
                        pin_memory=device.type == "cuda")
    buf = np.empty((min(chunk, max(n, 1)), d), np.float32)
    filled, pos = 0, start
    bar = tqdm(total=n, initial=start, desc=f"extract {split.name}", unit="ex",
               unit_scale=True, disable=not progress)

    def flush() -> None:
        nonlocal filled, pos
        if filled:
            _write_rows(partial, pos, buf[:filled])
            pos += filled
            filled = 0
            write_json(prog_file, {"key": key, "rows": pos, "n": n, "d": d})
            if on_chunk is not None:
                on_chunk(split.name, pos)

    with torch.inference_mode():
        for batch in loader:
            x = batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch
            f = reader(x).float().cpu().numpy()
            if f.shape[1] != d:
                raise ValueError(f"layer {reader.layer!r} gave {f.shape[1]} features, "
                                 f"expected {d} (inputs of varying shape?)")
            i = 0
            while i < len(f):
                take = min(len(f) - i, len(buf) - filled)
                buf[filled:filled + take] = f[i:i + take]
                filled, i = filled + take, i + take
                if filled == len(buf):
                    flush()
            bar.update(len(f))
    flush()
    bar.close()
    with atomic_path(out / f"{split.name}_labels.npy") as tmp:
        np.save(tmp, np.asarray(split.labels, np.int64))
    write_json(out / f"{split.name}_ids.json", list(split.ids))
    os.replace(partial, final)
    prog_file.unlink(missing_ok=True)
    return n


def read_features(features_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped features (n, d) and labels (n,) of one split."""
    meta = read_meta(features_dir)
    base = Path(meta["_dir"])
    return np.load(base / f"{split}.npy", mmap_mode="r"), np.load(base / f"{split}_labels.npy")
