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

__all__ = ["OUTPUTS", "Predictor", "callable_predictor", "check_outputs", "layer_features", "sparse_predictor",
           "torch_predictor"]

Predictor = Callable[[Any], np.ndarray]


def _batches(inputs: Any, batch_size: int):
    n = len(inputs)
    for i in range(0, n, batch_size):
        yield inputs[i:i + batch_size]


OUTPUTS = ("probabilities", "logits")


def check_outputs(out: Any, n: int, name: str, outputs: str = "probabilities") -> np.ndarray:
    """Validate a model's outputs on ``n`` inputs and turn them into probabilities (n, C).

    Parameters
    ----------
    out : array-like of shape (n, C), (n,) or (n, 1)
        Class probabilities, or logits with ``outputs="logits"`` (softmax over C columns; a
        single column is a binary model's positive class, through the logistic function).
    n : int
        Number of inputs the model was given.
    name : str
        The model, for error messages.
    outputs : {"probabilities", "logits"}

    Returns
    -------
    array of shape (n, C), C >= 2
        A 1-D or one-column output becomes ``[1 - p, p]``.

    Raises
    ------
    ValueError
        Wrong shape, NaN or inf, or probabilities outside [0, 1].
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs: expected one of {OUTPUTS}, got {outputs!r}")
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected probabilities of shape (n={n}, n_classes), got "
                         f"{type(out).__name__} that is not numeric") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"{name}: expected probabilities of shape (n={n}, n_classes) or "
                         f"(n={n},), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.any(axis=-1).sum() if arr.ndim == 2 else bad.sum())}"
                         f" of {n} outputs are NaN or infinite")
    if outputs == "logits":
        if arr.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-arr))
            return np.stack([1 - p, p], axis=1)
        z = arr - arr.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if arr.size and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
        raise ValueError(f"{name}: outputs in [{arr.min():.4g}, {arr.max():.4g}] are not "
                         f"probabilities in [0, 1] (for logits use outputs='logits', "
                         f"--outputs logits)")
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 1:
        return np.stack([1 - arr, arr], axis=1)
    return arr


def torch_predictor(
    model: torch.nn.Module,
    to_input: Callable[[Any], Any] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> Predictor:
    """The model's own output layer: ``softmax(model(to_input(batch)))`` (the logistic function
    for a model with one output).

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
                out.append(model(x).float().cpu().numpy())
        if not out:
            raise ValueError("model: no inputs to predict")
        # softmax over the logits; one output column is a binary model's positive class
        return check_outputs(np.concatenate(out), len(inputs), "model", "logits")

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
            logits = head(x).float().cpu().numpy()
        return check_outputs(logits, len(inputs), "sparse head", "logits")

    return predict


def callable_predictor(fn: Callable[[Any], Any], name: str = "external",
                       outputs: str = "probabilities") -> Predictor:
    """Wrap any ``predict_proba``-style callable, checking its outputs (:func:`check_outputs`).

    Parameters
    ----------
    fn : callable
        Raw batch (array of images or list of texts) -> probabilities (n, n_classes), or a
        binary model's probabilities of the positive class (n,).
    name : str
        Used in error messages.
    outputs : {"probabilities", "logits"}
        What ``fn`` returns; logits go through softmax (logistic for one column).
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs: expected one of {OUTPUTS}, got {outputs!r}")

    def predict(inputs: Any) -> np.ndarray:
        if len(inputs) == 0:
            raise ValueError(f"{name}: no inputs to predict")
        batch = list(inputs) if isinstance(inputs, Sequence) and not isinstance(
            inputs, np.ndarray) else inputs
        return check_outputs(fn(batch), len(inputs), name, outputs)

    return predict
