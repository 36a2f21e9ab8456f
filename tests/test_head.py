"""SparseHead on a hand-made head: its map, the features each class uses, its file, attaching it.

The estimator's tests (test_estimator.py) check a fitted head against the estimator's own
predictions; these pin the parts a user reads or keeps: the class names, the file's contents,
the per-class features, a head attached inside a nested backbone, and what a file may hold.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from sparse_probe.head import SparseHead, find_last_linear

W = np.array([[0.0, 1.5, 0.0, -2.0],
              [0.5, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.0, 0.0]])
B = np.array([0.1, -0.2, 0.3])
MEAN = np.array([1.0, -2.0, 0.5, 3.0])
SCALE = np.array([2.0, 0.5, 1.0, 4.0])


def _head(classes=("cat", "dog", "other")):
    return SparseHead(W, B, MEAN, SCALE, classes=None if classes is None else list(classes))


def test_logits_are_the_standardized_features_times_the_weights():
    x = torch.tensor([[3.0, -1.0, 0.0, 7.0], [1.0, -2.0, 0.5, 3.0]])
    want = ((x.numpy() - MEAN) / SCALE) @ W.T + B
    head = _head()
    with torch.no_grad():
        np.testing.assert_allclose(head(x).numpy(), want, rtol=1e-6)
        np.testing.assert_allclose(head.as_linear()(x).numpy(), want, rtol=1e-6, atol=1e-6)
    assert (head.n_features, head.n_classes) == (4, 3)
    assert head.linear.weight.dtype == head.linear.bias.dtype == torch.float32


def test_nonzero_features_per_class():
    assert _head().nonzero_features() == [[1, 3], [0], []]


def test_file_keeps_the_map_and_the_class_names(tmp_path):
    head = _head()
    head.save(tmp_path / "head.pt")
    blob = torch.load(tmp_path / "head.pt", weights_only=True)
    assert blob["format"] == 1 and blob["classes"] == ["cat", "dog", "other"]
    assert (blob["n_features"], blob["n_classes"]) == (4, 3)
    again = SparseHead.load(tmp_path / "head.pt")
    assert again.classes == ["cat", "dog", "other"]
    for name, value in head.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)
    nameless = _head(classes=None)
    nameless.save(tmp_path / "nameless.pt")
    assert SparseHead.load(tmp_path / "nameless.pt").classes is None
    assert _head(classes=("a", "b", "c")).classes == ["a", "b", "c"]  # a tuple kept as a list


class _Unsafe:
    """An object only full unpickling would build."""


def test_a_file_holding_code_is_refused(tmp_path):
    """Only tensors and plain containers are read (``weights_only``): a file whose unpickling
    would build an arbitrary object is an error, not a head."""
    f = tmp_path / "head.pt"
    head = _head()
    blob = {"format": 1, "state_dict": head.state_dict(), "classes": head.classes,
            "n_features": 4, "n_classes": 3, "extra": _Unsafe()}
    torch.save(blob, f)
    with pytest.raises(ValueError, match=r"head\.pt: not a sparse-probe head file \(it holds "
                                         r"objects other than tensors, .*: UnpicklingError\)$"):
        SparseHead.load(f)


def test_head_from_a_path_point_keeps_its_classes():
    path = SimpleNamespace(weights=[W * 0, W], intercepts=[B * 0, B], mean=MEAN, scale=SCALE,
                           classes=["cat", "dog", "other"])  # what from_path reads of a Path
    head = SparseHead.from_path(path, 1)
    assert head.classes == ["cat", "dog", "other"] and head.nonzero_features() == [[1, 3], [0], []]


def test_attach_replaces_the_last_linear_of_a_nested_backbone():
    backbone = nn.Sequential(nn.Linear(6, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 3)))
    assert find_last_linear(backbone) == "1.1"
    head = _head()
    model = head.attach(backbone)
    assert model[1][1] is head and isinstance(model[0], nn.Linear)
    other = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3))
    assert head.attach(other, name="1")[1] is head
    # a named layer without an input width (here a placeholder) is replaced unchecked
    assert head.attach(nn.Sequential(nn.Linear(6, 4), nn.Identity()), name="1")[1] is head
    with pytest.raises(ValueError, match="^" + re.escape(
            "model has no nn.Linear layer to replace; pass name=...") + "$"):
        find_last_linear(nn.Sequential(nn.ReLU()))
