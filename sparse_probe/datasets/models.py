"""Small models for the built-in datasets, trained on CPU in well under a minute.

:class:`ShapesCNN` is a conv trunk (``features``, whose output is the spatial map) followed by
global average pooling (``pool``), ``flatten`` and the final linear layer ``fc``; its penultimate
representation (the input of ``fc``) is the pooled channels, so feature j is channel j of the
``features`` map. :class:`ToxicityEncoder` maps raw texts to a d-dimensional representation
(``encode``) with its own vocabulary, followed by ``fc``.

Both are trained briefly with a fixed seed and *do* pick up the planted cues; the training
report measures it: accuracy on cue-aligned vs cue-flipped test examples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sparse_probe.datasets.shapes import ShapesDataset, ShapesSplit
from sparse_probe.datasets.toxicity import ToxicityDataset, ToxicitySplit, tokenize

__all__ = [
    "ShapesCNN",
    "ToxicityEncoder",
    "images_to_tensor",
    "per_class_accuracy",
    "shapes_report",
    "torch_threads",
    "toxicity_report",
    "train_shapes_model",
    "train_toxicity_model",
]

logger = logging.getLogger(__name__)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1] (ShapesCNN's input)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


class ShapesCNN(nn.Module):
    """Conv net for the shapes dataset.

    Input: float images (n, 3, H, W) in [0, 1] (normalization is inside the model).
    ``features`` -> (n, width, H/8, W/8) non-negative map; ``pool`` + ``flatten`` -> (n, width);
    ``fc`` -> logits (n, n_classes).

    Parameters
    ----------
    n_classes : int
    width : int
        Channels of the last block = dimension d of the penultimate representation.
    """

    def __init__(self, n_classes: int, width: int = 48):
        super().__init__()
        self.n_classes = n_classes
        self.width = width

        def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(c_out), nn.ReLU()]

        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25))
        self.features = nn.Sequential(
            *block(3, 16, 2), *block(16, 32, 2), *block(32, 48, 2), *block(48, width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.fc(self.flatten(self.pool(self.features(x))))


class ToxicityEncoder(nn.Module):
    """Bag-of-embeddings text encoder with its own vocabulary.

    ``encode(texts)`` -> (n, d): mean of token embeddings, then Linear + ReLU.
    ``forward(texts)`` -> logits (n, n_classes) through ``fc``.

    Parameters
    ----------
    vocab : sequence of str
        Known tokens; index 0 is reserved for unknown tokens.
    n_classes : int
    dim : int
        Embedding size.
    d : int
        Size of the representation (the input of ``fc``).
    """

    def __init__(self, vocab: Sequence[str], n_classes: int = 2, dim: int = 32, d: int = 32):
        super().__init__()
        self.vocab = ["<unk>", *[t for t in vocab if t != "<unk>"]]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.n_classes, self.dim, self.d = n_classes, dim, d
        self.embedding = nn.EmbeddingBag(len(self.vocab), dim, mode="mean")
        self.proj = nn.Linear(dim, d)
        self.act = nn.ReLU()
        self.fc = nn.Linear(d, n_classes)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (saved in checkpoints)."""
        return {"vocab": self.vocab[1:], "n_classes": self.n_classes, "dim": self.dim,
                "d": self.d}

    def _bags(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for text in texts:
            offsets.append(len(ids))
            toks = [self.index.get(t, 0) for t in tokenize(text)] or [0]
            ids.extend(toks)
        dev = self.fc.weight.device
        return (torch.tensor(ids, dtype=torch.long, device=dev),
                torch.tensor(offsets, dtype=torch.long, device=dev))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Representations (n, d) of raw texts."""
        ids, offsets = self._bags(list(texts))
        return self.act(self.proj(self.embedding(ids, offsets)))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.fc(self.encode(texts))


# ---------------------------------------------------------------------------------------------
# reports


def _acc(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float | None:
    return float((pred[mask] == y[mask]).mean()) if mask.any() else None


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, class_names: Sequence[str]
                       ) -> dict[str, float | None]:
    """Accuracy on each class's examples (its recall), by class name.

    Parameters
    ----------
    pred, y : ndarray of shape (n,)
        Predicted and true class indices.
    class_names : sequence of str
        Name of each class index; a class without examples maps to None.
    """
    return {name: _acc(pred, y, y == k) for k, name in enumerate(class_names)}


def shapes_report(pred: np.ndarray, split: ShapesSplit) -> dict[str, Any]:
    """Accuracy overall, per class and on cue-aligned / cue-flipped examples of a shapes split.

    For a cue tied to class k, *flipped* examples are images of class k without the cue and
    images of other classes with it; *aligned* are the rest. ``"flipped"``/``"aligned"`` at the
    top level pool all cues (an image is flipped if any cue is flipped on it).
    ``"per_class_accuracy"``: :func:`per_class_accuracy` by class name.
    """
    y = split.labels
    out: dict[str, Any] = {"n": len(y), "accuracy": float((pred == y).mean()),
                           "per_class_accuracy": per_class_accuracy(pred, y, split.class_names),
                           "cues": {}}
    any_flip = np.zeros(len(y), bool)
    for cue, k in split.cue_class.items():
        flip = (y == k) != split.has_cue[cue]
        any_flip |= flip
        out["cues"][cue] = {
            "class": k, "aligned_accuracy": _acc(pred, y, ~flip),
            "flipped_accuracy": _acc(pred, y, flip),
            "other_classes_with_cue_predicted_as_cue_class": _acc(
                np.full_like(pred, k), pred, (y != k) & split.has_cue[cue]),
        }
    out["aligned_accuracy"] = _acc(pred, y, ~any_flip)
    out["flipped_accuracy"] = _acc(pred, y, any_flip)
    return out


def toxicity_report(pred: np.ndarray, split: ToxicitySplit) -> dict[str, Any]:
    """Accuracy overall, per class, on non-toxic comments with vs without identity terms, and
    on toxic ones.

    *Flipped* examples are non-toxic comments that mention an identity term (the bias says
    toxic); *aligned* are non-toxic comments without one. ``"per_class_accuracy"``:
    :func:`per_class_accuracy` by class name.
    """
    y, ident = split.labels, split.has_identity
    return {
        "n": len(y), "accuracy": float((pred == y).mean()),
        "per_class_accuracy": per_class_accuracy(pred, y, split.class_names),
        "aligned_accuracy": _acc(pred, y, (y == 0) & ~ident),
        "flipped_accuracy": _acc(pred, y, (y == 0) & ident),
        "toxic_with_identity_accuracy": _acc(pred, y, (y == 1) & ident),
        "toxic_without_identity_accuracy": _acc(pred, y, (y == 1) & ~ident),
        "false_positive_rate_identity": _acc(np.ones_like(pred), pred, (y == 0) & ident),
        "false_positive_rate_no_identity": _acc(np.ones_like(pred), pred, (y == 0) & ~ident),
    }


# ---------------------------------------------------------------------------------------------
# training


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch's CPU ops on ``n`` threads (``None``: leave as is).

    One thread is both deterministic and faster than two on a busy 2-core machine.
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_shapes_model(
    ds: ShapesDataset,
    *,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 32,
    lr: float = 1e-2,
    width: int = 48,
    device: str | torch.device | None = None,
    progress: bool = True,
    num_threads: int | None = 1,
) -> tuple[ShapesCNN, dict[str, Any]]:
    """Train :class:`ShapesCNN` on ``ds.train`` (Adam, fixed seed), evaluate on val and test.

    ``num_threads`` limits torch's CPU threads while training (``None``: unchanged).

    Returns
    -------
    model : ShapesCNN
        In eval mode, on ``device``.
    report : dict
        ``{"val": {...}, "test": {...}, "epochs", "seed", ...}`` from :func:`shapes_report`.
    """
    with torch_threads(num_threads):
        return _train_shapes(ds, seed, epochs, batch_size, lr, width, _device(device), progress)


def _train_shapes(ds: ShapesDataset, seed: int, epochs: int, batch_size: int, lr: float,
                  width: int, dev: torch.device, progress: bool
                  ) -> tuple[ShapesCNN, dict[str, Any]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ShapesCNN(len(ds.class_names), width=width).to(dev)
    x = images_to_tensor(ds.train.images)
    y = torch.from_numpy(ds.train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    model.train()
    bar = tqdm(total=steps, desc="train shapes", unit="step", disable=not progress)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    report: dict[str, Any] = {"model": "ShapesCNN", "width": width, "epochs": epochs,
                              "seed": seed, "n_train": len(y),
                              "image_size": int(ds.train.images.shape[1])}
    for name in ("val", "test"):
        split = ds.split(name)
        report[name] = shapes_report(predict_images(model, split.images, device=dev), split)
    logger.info("shapes model: test acc %.3f, aligned %.3f, flipped %.3f",
                report["test"]["accuracy"], report["test"]["aligned_accuracy"] or 0,
                report["test"]["flipped_accuracy"] or 0)
    return model, report


@torch.inference_mode()
def predict_images(model: nn.Module, images: np.ndarray, *, batch_size: int = 256,
                   device: str | torch.device | None = None) -> np.ndarray:
    """Predicted classes (n,) of uint8 images (n, H, W, 3)."""
    dev = _device(device)
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model(images_to_tensor(images[i:i + batch_size]).to(dev)).argmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def train_toxicity_model(
    ds: ToxicityDataset,
    *,
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 1e-2,
    dim: int = 32,
    d: int = 32,
    device: str | torch.device | None = None,
    progress: bool = True,
    num_threads: int | None = 1,
) -> tuple[ToxicityEncoder, dict[str, Any]]:
    """Train :class:`ToxicityEncoder` on ``ds.train`` (Adam, fixed seed), evaluate val/test.

    The vocabulary is the training split's tokens (sorted), so unseen words map to ``<unk>``.

    Returns
    -------
    model : ToxicityEncoder
    report : dict
        ``{"val": {...}, "test": {...}, ...}`` from :func:`toxicity_report`.
    """
    with torch_threads(num_threads):
        return _train_toxicity(ds, seed, epochs, batch_size, lr, dim, d, _device(device),
                               progress)


def _train_toxicity(ds: ToxicityDataset, seed: int, epochs: int, batch_size: int, lr: float,
                    dim: int, d: int, dev: torch.device, progress: bool
                    ) -> tuple[ToxicityEncoder, dict[str, Any]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = sorted({t for toks in ds.train.tokens for t in toks})
    model = ToxicityEncoder(vocab, n_classes=len(ds.class_names), dim=dim, d=d).to(dev)
    texts, y = ds.train.texts, torch.from_numpy(ds.train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="train toxicity", unit="step", disable=not progress)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen).tolist()
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            logits = model([texts[j] for j in idx])
            loss = nn.functional.cross_entropy(logits, y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    report: dict[str, Any] = {"model": "ToxicityEncoder", "d": d, "epochs": epochs,
                              "seed": seed, "n_train": len(y), "vocab_size": len(model.vocab)}
    for name in ("val", "test"):
        split = ds.split(name)
        report[name] = toxicity_report(predict_texts(model, split.texts), split)
    logger.info("toxicity model: test acc %.3f, aligned %.3f, flipped %.3f",
                report["test"]["accuracy"], report["test"]["aligned_accuracy"] or 0,
                report["test"]["flipped_accuracy"] or 0)
    return model, report


@torch.inference_mode()
def predict_texts(model: nn.Module, texts: Sequence[str], *, batch_size: int = 512) -> np.ndarray:
    """Predicted classes (n,) of raw texts."""
    out = [model(list(texts[i:i + batch_size])).argmax(1).cpu()
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)
