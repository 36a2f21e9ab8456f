"""Composable feature-visualization objectives (lucent's ``optvis.objectives``).

An :class:`Objective` maps the recorded activations to a scalar *loss* to minimize, so
``channel(layer, n)`` is the negative mean activation of channel ``n``. Objectives add,
subtract, negate and scale; negation turns "maximize the channel" into "minimize it", which is
how a feature with a negative class weight is visualized.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

__all__ = ["Objective", "batched_channels", "channel", "neuron"]

Activations = Mapping[str, torch.Tensor]


class Objective:
    """A loss over activations.

    Parameters
    ----------
    fn : callable
        ``fn(acts) -> Tensor ()``; ``acts[layer]`` is the output of that module,
        shape (b, c, h, w) or (b, c).
    layers : iterable of str
        Module names whose outputs ``fn`` reads (the render loop hooks them).
    name : str
        Description for logs.
    """

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: Sequence[str],
                 name: str = "") -> None:
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")
        return Objective(lambda a: self(a) + other(a), self.layers | other.layers,
                         f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, int | float):
            raise TypeError("objectives can only be scaled by numbers")
        return Objective(lambda a: k * self(a), self.layers, f"{k} * ({self.name})")

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"


def channel(layer: str, n: int, batch: int | None = None) -> Objective:
    """Negative mean activation of channel ``n`` of ``layer`` (over space, and over the batch
    or only image ``batch``)."""

    def fn(acts: Activations) -> torch.Tensor:
        a = acts[layer]
        a = a if batch is None else a[batch : batch + 1]
        return -a[:, n].mean()

    return Objective(fn, [layer], f"channel({layer}:{n}{'' if batch is None else f'@{batch}'})")


def neuron(layer: str, n: int, y: int | None = None, x: int | None = None,
           batch: int | None = None) -> Objective:
    """Negative activation of channel ``n`` at the spatial center (or at ``y, x``)."""

    def fn(acts: Activations) -> torch.Tensor:
        a = acts[layer]
        a = a if batch is None else a[batch : batch + 1]
        if a.dim() == 2:
            return -a[:, n].mean()
        h, w = a.shape[-2:]
        return -a[:, n, h // 2 if y is None else y, w // 2 if x is None else x].mean()

    return Objective(fn, [layer], f"neuron({layer}:{n})")


def batched_channels(layer: str, channels: Sequence[int],
                     signs: Sequence[float] | None = None) -> Objective:
    """Image ``i`` of the batch visualizes ``channels[i]``, maximized when ``signs[i] > 0`` and
    minimized when ``signs[i] < 0``: the sum of ``±channel(layer, c_i, batch=i)``.

    Computed in one vectorized gather so that many features optimize in one forward pass.
    """
    chans = list(channels)
    sgn = [1.0] * len(chans) if signs is None else [1.0 if s >= 0 else -1.0 for s in signs]
    if len(sgn) != len(chans):
        raise ValueError("batched_channels: channels and signs differ in length")

    def fn(acts: Activations) -> torch.Tensor:
        a = acts[layer]
        idx = torch.arange(len(chans), device=a.device)
        c = torch.as_tensor(chans, device=a.device)
        picked = a[idx, c]
        per_item = picked.flatten(1).mean(1) if picked.dim() > 1 else picked
        return -(torch.as_tensor(sgn, dtype=a.dtype, device=a.device) * per_item).sum()

    return Objective(fn, [layer], f"batched_channels({layer}, {len(chans)})")
