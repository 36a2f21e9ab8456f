"""The feature-visualization render loop: Adam on an image parameterization through robustness
transforms, one forward pass per step for the whole batch (lucent's ``render_vis``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tasks.viz.fvis.objectives import Objective, batched_channels
from tasks.viz.fvis.param import ImageParam, image_param
from tasks.viz.fvis.transforms import Transform, compose, standard_transforms

__all__ = ["RenderResult", "render", "visualize_channels"]

logger = logging.getLogger(__name__)


@dataclass
class RenderResult:
    """Output of :func:`render`.

    Attributes
    ----------
    images : Tensor (b, 3, h, w)
        Final images in ``[0, 1]`` on the CPU.
    losses : list of float
        Objective value at every step (before the step's update).
    """

    images: torch.Tensor
    losses: list[float] = field(default_factory=list)


def _hook_layers(model: nn.Module, layers: frozenset[str], store: dict[str, torch.Tensor]):
    modules = dict(model.named_modules())
    handles = []
    for name in sorted(layers):
        if name not in modules:
            raise KeyError(f"layer {name!r} not found in model; known: {sorted(modules)[:20]}")

        def hook(_m, _inp, out, name=name):
            store[name] = out

        handles.append(modules[name].register_forward_hook(hook))
    return handles


def render(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    *,
    steps: int = 128,
    lr: float = 0.05,
    transforms: Sequence[Transform] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> RenderResult:
    """Minimize ``objective`` over the images of ``param`` with Adam.

    Each step draws the image (b, 3, h, w) in ``[0, 1]``, applies ``transforms`` (randomness from
    ``generator``), then ``preprocess`` (e.g. the model's mean/std normalization), runs ``model``
    once with forward hooks on the objective's layers, and takes an Adam step.
    The model is put in eval mode and its parameters are not updated.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    transform = compose(list(transforms or []))
    was_training = model.training
    model.eval()
    store: dict[str, torch.Tensor] = {}
    handles = _hook_layers(model, objective.layers, store)
    opt = torch.optim.Adam(param.params, lr=lr)
    losses: list[float] = []
    try:
        for _ in range(steps):
            opt.zero_grad()
            x = transform(param(), gen)
            if preprocess is not None:
                x = preprocess(x)
            model(x)
            loss = objective(store)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    with torch.no_grad():
        images = param().detach().cpu()
    logger.debug("render %s: loss %.4g -> %.4g", objective.name, losses[0] if losses else 0,
                 losses[-1] if losses else 0)
    return RenderResult(images, losses)


def visualize_channels(
    model: nn.Module,
    layer: str,
    channels: Sequence[int],
    signs: Sequence[float] | None = None,
    *,
    size: int = 64,
    steps: int = 128,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Feature visualizations of many channels, ``batch_size`` of them per forward pass.

    Parameters
    ----------
    layer : str
        Name of the module (``model.named_modules()``) whose output has the channels.
    channels : sequence of int
        Channel per image.
    signs : sequence of float, optional
        Maximize channel ``i`` when ``signs[i] >= 0``, minimize it otherwise.
    size : int
        Side of the square images.
    seed : int
        Fixes the initial spectrum and the transforms' randomness.
    progress : callable, optional
        Called with the number of channels finished after every batch.

    Returns
    -------
    Tensor (len(channels), 3, size, size)
        Images in ``[0, 1]`` on the CPU.
    """
    channels = list(channels)
    signs = [1.0] * len(channels) if signs is None else list(signs)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    out = []
    for start in range(0, len(channels), batch_size):
        chunk = channels[start : start + batch_size]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
        param = image_param(len(chunk), size, generator=gen, device=device)
        obj = batched_channels(layer, chunk, signs[start : start + batch_size])
        res = render(model, obj, param, steps=steps, lr=lr, transforms=standard_transforms(size),
                     preprocess=preprocess, generator=gen)
        out.append(res.images)
        if progress is not None:
            progress(len(chunk))
    if not out:
        return torch.zeros((0, 3, size, size))
    return torch.cat(out)
