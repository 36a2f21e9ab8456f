"""Hugging Face transformers adapter (optional extra; imported only when an ``hf:`` model is used).

Features are the attention-masked mean of the last hidden state, shape (n, hidden_size).
Everything is read from a local directory; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["HFTextEncoder"]


class HFTextEncoder(nn.Module):
    """Text encoder over a local ``transformers`` model directory (model + tokenizer files).

    Parameters
    ----------
    path : str
        Directory with ``config.json``, weights and tokenizer files.
    max_length : int
        Truncation length in tokens.
    """

    default_layer = "output"

    def __init__(self, path: str, max_length: int = 128):
        super().__init__()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ValueError("hf: models need the optional extra: pip install "
                             "'sparse-probe[hf]'") from exc
        self.path = path
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled last hidden state (n, hidden_size) of raw texts."""
        dev = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(dev) for k, v in batch.items()
                 if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(texts)
