"""Model sources: build the network whose features we extract, and rebuild it from meta.json.

A model is named by one string (``--model``) plus an optional ``--weights``:

- ``builtin:shapes`` / ``builtin:toxicity``: the demo models; ``weights`` is the checkpoint
  written by :func:`sparse_probe.datasets.prepare_builtin` (or :func:`save_builtin`).
- ``resnet18`` or ``torchvision:resnet18``: any torchvision classification model by name;
  ``weights`` is a local checkpoint (a state dict, possibly under ``"state_dict"``) or the name
  of a torchvision weights enum (``IMAGENET1K_V1``: downloads, so only where a network allows).
- ``path/to/model.ts`` or ``torchscript:path``: a TorchScript archive (features = its output).
- ``package.module:function``: a Python callable returning an ``nn.Module`` (images) or an
  object with ``encode(texts) -> (n, d)`` (texts); ``weights`` an optional state dict.
- ``hf:path/to/dir``: a local Hugging Face transformers model directory (mean-pooled last hidden
  state); needs the optional ``transformers`` extra, imported only here.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparse_probe.rundir import atomic_path

__all__ = [
    "EncodeModule",
    "ModelSpec",
    "build_model",
    "load_model",
    "parse_model_spec",
    "save_builtin",
]

logger = logging.getLogger(__name__)

BUILTIN_MODELS = ("shapes", "toxicity")


@dataclass
class ModelSpec:
    """How to build a model; serialized as ``meta["model"]``."""

    source: str  # "builtin" | "torchvision" | "torchscript" | "callable" | "hf"
    name: str
    weights: str | None = None  # torchvision weights enum name
    checkpoint: str | None = None  # absolute path of a local file or directory

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)


class EncodeModule(nn.Module):
    """An object with ``encode(texts)`` (or a plain callable) as a module: ``forward = encode``.

    Parameters
    ----------
    encoder : object
        Has ``encode(texts) -> Tensor | ndarray (n, d)``, or is itself such a callable.
    """

    default_layer = "output"

    def __init__(self, encoder: Any):
        super().__init__()
        self.encoder = encoder
        if isinstance(encoder, nn.Module):
            self.add_module("inner", encoder)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        fn = getattr(self.encoder, "encode", self.encoder)
        out = fn(list(texts))
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)


def _abs(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def parse_model_spec(model: str, weights: str | None = None) -> ModelSpec:
    """Turn ``--model`` / ``--weights`` strings into a :class:`ModelSpec` (no loading yet).

    Raises
    ------
    ValueError
        Unknown model name or unusable combination, with a one-line explanation.
    """
    model = model.strip()
    w_is_file = weights is not None and Path(weights).expanduser().exists()
    if model.startswith("builtin:"):
        name = model.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {name!r}; expected one of "
                             f"{', '.join('builtin:' + b for b in BUILTIN_MODELS)}")
        if weights is None:
            raise ValueError(f"--weights is required for builtin:{name} (the checkpoint written "
                             f"by `sparse-probe datasets prepare` / prepare_builtin)")
        if not w_is_file:
            raise ValueError(f"checkpoint not found: {weights}")
        return ModelSpec("builtin", name, None, _abs(weights))
    if model.startswith("hf:"):
        path = Path(model[3:]).expanduser()
        if not path.is_dir():
            raise ValueError(f"hf model directory not found: {path}")
        return ModelSpec("hf", path.name, None, _abs(path))
    if model.startswith("torchscript:") or (
            Path(model).suffix in (".ts", ".pt", ".pth", ".jit") and Path(model).is_file()):
        path = Path(model.split(":", 1)[1] if model.startswith("torchscript:") else model)
        if not path.is_file():
            raise ValueError(f"TorchScript file not found: {path}")
        return ModelSpec("torchscript", path.name, None, _abs(path))
    if model.startswith("torchvision:") or ":" not in model:
        name = model.split(":", 1)[1] if model.startswith("torchvision:") else model
        import torchvision

        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            close = [m for m in available if name.lower()[:4] in m][:5]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown model {name!r}: not a torchvision classification model, "
                             f"builtin:NAME, hf:DIR, a TorchScript file or module:function{hint}")
        if weights is None or w_is_file:
            return ModelSpec("torchvision", name, None, _abs(weights))
        return ModelSpec("torchvision", name, weights, None)
    # module:function
    if weights is not None and not w_is_file:
        raise ValueError(f"checkpoint not found: {weights}")
    return ModelSpec("callable", model, None, _abs(weights))


def _load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a pickle / not a state dict
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path} does not hold a state dict")
    return obj


def _summarize(keys: Sequence[str], k: int = 4) -> str:
    keys = list(keys)
    more = f", ... (+{len(keys) - k})" if len(keys) > k else ""
    return ", ".join(keys[:k]) + more


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``model.load_state_dict(state)`` with a one-line summary of any mismatch.

    Raises
    ------
    ValueError
        ``checkpoint X does not match Y: 2 missing keys (...); 1 unexpected key (...); ...``
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_summarize(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_summarize(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_summarize(shapes, 2)})")
        raise ValueError(f"{what}: " + "; ".join(parts))
    model.load_state_dict(state)


def _last_linear(model: nn.Module) -> str | None:
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return name


def _build_torchvision(spec: ModelSpec) -> nn.Module:
    import torchvision

    if spec.weights is not None:
        try:
            return torchvision.models.get_model(spec.name, weights=spec.weights)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"bad --weights {spec.weights!r} for {spec.name}: neither a file "
                             f"nor a torchvision weights enum ({exc})") from None
    if spec.checkpoint is None:
        logger.warning("%s has random weights (no --weights given)", spec.name)
        return torchvision.models.get_model(spec.name, weights=None)
    state = _load_state_dict_file(spec.checkpoint)
    kwargs: dict[str, Any] = {}
    head = _last_linear(torchvision.models.get_model(spec.name, weights=None))
    if head is not None and f"{head}.weight" in state:
        kwargs["num_classes"] = int(state[f"{head}.weight"].shape[0])
    model = torchvision.models.get_model(spec.name, weights=None, **kwargs)
    load_state_dict_checked(model, state, f"checkpoint {spec.checkpoint} does not match "
                                          f"{spec.name}")
    return model


def _build_builtin(spec: ModelSpec) -> nn.Module:
    from sparse_probe.datasets.models import ShapesCNN, ToxicityEncoder

    assert spec.checkpoint is not None
    try:
        ckpt = torch.load(spec.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {spec.checkpoint}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("builtin") != spec.name:
        raise ValueError(f"checkpoint {spec.checkpoint} is not a builtin:{spec.name} checkpoint")
    cfg = ckpt["config"]
    if spec.name == "shapes":
        model: nn.Module = ShapesCNN(cfg["n_classes"], width=cfg["width"])
    else:
        model = ToxicityEncoder(cfg["vocab"], n_classes=cfg["n_classes"], dim=cfg["dim"],
                                d=cfg["d"])
    load_state_dict_checked(model, ckpt["state_dict"],
                            f"checkpoint {spec.checkpoint} does not match builtin:{spec.name}")
    return model


def save_builtin(model: nn.Module, path: str | os.PathLike, *, name: str,
                 extra: dict[str, Any] | None = None) -> Path:
    """Save a built-in model as ``{"builtin", "config", "state_dict", ...}`` (atomically)."""
    from sparse_probe.datasets.models import ShapesCNN, ToxicityEncoder

    if isinstance(model, ShapesCNN):
        cfg: dict[str, Any] = {"n_classes": model.n_classes, "width": model.width}
    elif isinstance(model, ToxicityEncoder):
        cfg = model.config()
    else:
        raise TypeError(f"not a built-in model: {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"builtin": name, "config": cfg, "state_dict": model.state_dict(),
                    **(extra or {})}, tmp)
    return path


def _import_callable(target: str) -> Any:
    mod_name, _, attr = target.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"expected module:function, got {target!r}")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {mod_name!r} for model {target!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable")
    return obj


def _build_callable(spec: ModelSpec) -> nn.Module:
    obj = _import_callable(spec.name)()
    if isinstance(obj, nn.Module):
        if spec.checkpoint is not None:
            load_state_dict_checked(obj, _load_state_dict_file(spec.checkpoint),
                                    f"checkpoint {spec.checkpoint} does not match "
                                    f"{spec.name}()")
        return obj
    if hasattr(obj, "encode") or callable(obj):
        return EncodeModule(obj)
    raise ValueError(f"{spec.name} returned {type(obj).__name__}: expected an nn.Module or an "
                     f"object with encode(texts)")


def build_model(spec: ModelSpec, device: str | torch.device | None = None) -> nn.Module:
    """Build the model described by ``spec``, in eval mode on ``device`` (default CPU)."""
    if spec.source == "builtin":
        model = _build_builtin(spec)
    elif spec.source == "torchvision":
        model = _build_torchvision(spec)
    elif spec.source == "torchscript":
        try:
            model = torch.jit.load(spec.checkpoint, map_location="cpu")
        except Exception as exc:
            raise ValueError(f"{spec.checkpoint} is not a TorchScript archive "
                             f"({type(exc).__name__}); for a state dict pass --model NAME "
                             f"--weights FILE") from None
    elif spec.source == "callable":
        model = _build_callable(spec)
    elif spec.source == "hf":
        from sparse_probe.extract.hf import HFTextEncoder

        model = HFTextEncoder(spec.checkpoint)
    else:
        raise ValueError(f"unknown model source {spec.source!r}")
    return model.to(torch.device(device) if device is not None else "cpu").eval()


def load_model(meta: dict[str, Any] | str | os.PathLike,
               device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the model of a features directory from its ``meta.json`` (dict or path).

    Parameters
    ----------
    meta : dict or path
        The parsed ``meta.json``, or the features directory / meta.json path.
    device : str or torch.device, optional

    Returns
    -------
    torch.nn.Module
        In eval mode on ``device``. Text models take a list of strings.
    """
    from sparse_probe.extract.meta import read_meta
    from sparse_probe.rundir import recorded_path

    meta = read_meta(meta) if not isinstance(meta, dict) else meta
    m = meta["model"]
    # a moved run directory: the checkpoint is found again beside the features
    spec = ModelSpec(m["source"], m["name"], m.get("weights"),
                     recorded_path(meta, "model", "checkpoint"))
    return build_model(spec, device)
