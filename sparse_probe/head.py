"""``SparseHead``: standardization + sparse linear layer, a drop-in last layer for a backbone."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch
from torch import nn

from sparse_probe.rundir import atomic_path

__all__ = ["SparseHead", "find_last_linear"]


class SparseHead(nn.Module):
    """``logits = ((x - mean) / scale) @ weight.T + bias``.

    Parameters
    ----------
    weight : array of shape (n_classes, n_features)
        Weights on the standardized features (mostly zeros).
    bias : array of shape (n_classes,)
    mean, scale : array of shape (n_features,)
    classes : list of str, optional
    """

    def __init__(self, weight, bias, mean, scale, classes: list[str] | None = None):
        super().__init__()
        f32 = dict(dtype=torch.float32)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), **f32))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), **f32))
        self.linear = nn.Linear(self.mean.numel(), len(np.asarray(bias)))
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(np.asarray(weight), **f32))
            self.linear.bias.copy_(torch.as_tensor(np.asarray(bias), **f32))
        self.classes = list(classes) if classes is not None else None

    @property
    def n_features(self) -> int:
        return self.mean.numel()

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, C) from raw features ``x`` (n, d)."""
        return self.linear((x - self.mean) / self.scale)

    def nonzero_features(self) -> list[list[int]]:
        """Indices of the features each class uses."""
        W = self.linear.weight.detach()
        return [torch.nonzero(W[k]).flatten().tolist() for k in range(W.shape[0])]

    def as_linear(self) -> nn.Linear:
        """The same map folded into one ``nn.Linear`` acting on raw features."""
        W = self.linear.weight.detach() / self.scale
        b = self.linear.bias.detach() - W @ self.mean
        lin = nn.Linear(self.n_features, self.n_classes)
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        return lin

    def attach(self, model: nn.Module, name: str | None = None) -> nn.Module:
        """Replace ``model``'s final linear layer (or the submodule ``name``) by this head.

        The model is modified in place and returned, giving a full network whose decision
        layer is sparse. Raises ``ValueError`` if the input width does not match.
        """
        name = name or find_last_linear(model)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        width = getattr(old, "in_features", None)
        if width is not None and width != self.n_features:
            raise ValueError(f"{name} takes {width} features, the head expects {self.n_features}")
        setattr(parent, attr, self)
        return model

    # ------------------------------------------------------------------ io
    def save(self, path: str | os.PathLike) -> None:
        """Write weights and config to ``path`` atomically (loadable with ``weights_only``)."""
        with atomic_path(path) as tmp:
            torch.save({"format": 1, "state_dict": self.state_dict(), "classes": self.classes,
                        "n_features": self.n_features, "n_classes": self.n_classes}, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SparseHead:
        """Load a head written by :meth:`save`, without any other file.

        Only tensors and plain containers are read (``torch.load(weights_only=True)``): a file
        holding other objects, whose unpickling could run code, is refused with a
        ``ValueError`` naming the file, as is anything else that is not a head file."""
        try:
            blob = torch.load(path, map_location=map_location, weights_only=True)
            sd = blob["state_dict"]
            head = cls(sd["linear.weight"], sd["linear.bias"], sd["mean"], sd["scale"],
                       classes=blob.get("classes"))
        except FileNotFoundError:
            raise
        except pickle.UnpicklingError as exc:  # not tensors and plain containers only
            raise ValueError(f"{path}: not a sparse-probe head file (it holds objects other "
                             f"than tensors, which are not loaded: {type(exc).__name__})") from exc
        except (KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(f"{path}: not a sparse-probe head file ({exc})") from exc
        return head.to(map_location)

    @classmethod
    def from_path(cls, path, index: int) -> SparseHead:
        """The head of point ``index`` of a :class:`~sparse_probe.path.Path`."""
        return cls(path.weights[index], path.intercepts[index], path.mean, path.scale,
                   classes=path.classes)


def find_last_linear(model: nn.Module) -> str:
    """Qualified name of the last ``nn.Linear`` registered in ``model``."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("model has no nn.Linear layer to replace; pass name=...")
    return names[-1]
