"""Small real fixtures for the extraction tests: tiny image folders, a random-init ResNet-18
checkpoint, a text encoder importable as ``module:function``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image


def make_image_folder(root: Path, *, classes=("ant", "bee", "cat"), per_class: int = 3,
                      size: int = 72, splits=("train", "test"), seed: int = 0) -> Path:
    """``root/{split}/{class}/{i}.png`` random RGB images (different sizes per file)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = size + int(rng.integers(0, 8)), size + int(rng.integers(0, 8))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


def save_resnet18(path: Path, *, num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """Random-init ResNet-18 (eval mode, BN statistics perturbed so they matter) saved as a
    plain state dict at ``path``; returns the model."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    torch.save(model.state_dict(), path)
    return model


ENCODER_MODULE = textwrap.dedent('''
    import torch

    class HashEncoder:
        """Deterministic toy text encoder: bag of hashed character trigrams (d=16)."""

        def encode(self, texts):
            out = torch.zeros(len(texts), 16)
            for i, t in enumerate(texts):
                for j in range(len(t) - 2):
                    out[i, sum(map(ord, t[j:j + 3])) % 16] += 1.0
            return out

    def make_encoder():
        return HashEncoder()

    def make_mlp():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(),
                                   torch.nn.Linear(8, 3))
''')


def write_encoder_module(dirpath: Path, name: str = "toy_models_extract") -> str:
    """Write an importable module with ``make_encoder`` and ``make_mlp``; returns its name."""
    (dirpath / f"{name}.py").write_text(ENCODER_MODULE)
    return name
