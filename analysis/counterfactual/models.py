"""Model adapters for counterfactual tests: everything becomes ``f(inputs) -> probabilities``.

A *predictor* is any callable mapping a batch of raw inputs (images as an array of shape
(n, H, W, C), or a list of n texts) to class probabilities of shape (n, n_classes). Adapters:

- :func:`torch_predictor`: a torch model's own final layer (the *dense* model);
- :func:`sparse_predictor`: backbone features -> a sparse head (the *sparse* model);
- :func:`callable_predictor`: any third-party callable, e.g. a scikit-learn pipeline's
  ``predict_proba`` on texts, so external models can be audited the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Predictor", "callable_predictor", "layer_features", "sparse_predictor",
           "torch_predictor"]

Predictor = Callable[[Any], np.ndarray]


def _batches(inputs: Any, batch_size: int):
    n = len(inputs)
    for i in range(0, n, batch_size):
        yield inputs[i:i + batch_size]


def _check(probs: np.ndarray, n: int, name: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"{name}: expected probabilities of shape (n={n}, n_classes), "
                         f"got {probs.shape}")
    return probs


def torch_predictor(
    model: torch.nn.Module,
    to_input: Callable[[Any], Any] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Predictor:
    """The model's own output layer: ``softmax(model(to_input(batch)))``.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits (n, n_classes).
    to_input : callable, optional
        Raw batch -> model input (e.g. uint8 images (n, H, W, 3) -> float tensor (n, 3, H, W)).
    batch_size : int
    device : torch device, optional
    """
    model.eval()
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else None

    def predict(inputs: Any) -> np.ndarray:
        out = []
        with torch.no_grad():
            for b in _batches(inputs, batch_size):
                x = to_input(b) if to_input is not None else b
                if isinstance(x, torch.Tensor) and device is not None:
                    x = x.to(device)
                out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
        return _check(np.concatenate(out) if out else np.zeros((0, 0)), len(inputs), "model")

    return predict


def layer_features(model: torch.nn.Module, layer: str, to_input: Callable[[Any], Any] | None
                   = None, batch_size: int = 256) -> Callable[[Any], torch.Tensor]:
    """Features of ``layer`` (a dotted module name) captured by a forward hook, flattened.

    Returns
    -------
    callable
        Raw batch -> float tensor (n, d).
    """
    module = model.get_submodule(layer)
    model.eval()

    def features(inputs: Any) -> torch.Tensor:
        chunks: list[torch.Tensor] = []
        for b in _batches(inputs, batch_size):
            captured: list[torch.Tensor] = []

            def keep(_m: torch.nn.Module, _i: Any, o: torch.Tensor,
                     store: list[torch.Tensor] = captured) -> None:
                store.append(o.detach())

            hook = module.register_forward_hook(keep)
            try:
                with torch.no_grad():
                    model(to_input(b) if to_input is not None else b)
            finally:
                hook.remove()
            chunks.append(captured[0].flatten(1).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, 0)

    return features


def sparse_predictor(features: Callable[[Any], torch.Tensor | np.ndarray],
                     head: torch.nn.Module) -> Predictor:
    """The sparse model: ``softmax(head(features(batch)))``.

    Parameters
    ----------
    features : callable
        Raw batch -> raw (unstandardized) features (n, d), e.g. :func:`layer_features`.
    head : torch.nn.Module
        Maps raw features (n, d) to logits, e.g. ``sparse_probe.SparseHead.load(...)``.
    """
    head.eval()

    def predict(inputs: Any) -> np.ndarray:
        x = features(inputs)
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                            dtype=torch.float32)
        param = next(iter(head.parameters()), None)
        if param is not None:
            x = x.to(param.device)
        with torch.no_grad():
            probs = torch.softmax(head(x).float(), dim=1).cpu().numpy()
        return _check(probs, len(inputs), "sparse head")

    return predict


def callable_predictor(fn: Callable[[Any], Any], name: str = "external") -> Predictor:
    """Wrap any ``predict_proba``-style callable, checking its output shape.

    Parameters
    ----------
    fn : callable
        Raw batch (array of images or list of texts) -> probabilities (n, n_classes).
    name : str
        Used in error messages.
    """

    def predict(inputs: Any) -> np.ndarray:
        batch = list(inputs) if isinstance(inputs, Sequence) and not isinstance(
            inputs, np.ndarray) else inputs
        return _check(fn(batch), len(inputs), name)

    return predict
