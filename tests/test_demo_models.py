"""Built-in demo models: trained quickly, they beat chance and demonstrably use the planted cues;
prepare_builtin writes a features directory that the extraction library reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparse_probe.datasets import (
    ShapesCNN,
    ToxicityEncoder,
    images_to_tensor,
    load_builtin,
    prepare_builtin,
)
from sparse_probe.extract import load_model, load_split, read_meta, spatial_maps

pytestmark = pytest.mark.slow  # trains and extracts the built-in models


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("shapes_run")
    return run, prepare_builtin("shapes", run, quick=True, progress=False)


@pytest.fixture(scope="module")
def toxicity_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tox_run")
    return run, prepare_builtin("toxicity", run, quick=True, progress=False)


def _recompute_shapes_accuracy(model, split, mask):
    with torch.inference_mode():
        pred = model(images_to_tensor(split.images[mask])).argmax(1).numpy()
    return float((pred == split.labels[mask]).mean())


@pytest.mark.slow
def test_shapes_model_beats_chance_and_uses_the_cues(shapes_run):
    run, features = shapes_run
    meta = read_meta(features)
    report = json.loads((run / "models" / "shapes.json").read_text())
    model = load_model(meta)
    assert isinstance(model, ShapesCNN)
    test = load_builtin(meta).split("test")
    # recompute the report's numbers independently from the saved checkpoint
    flipped = np.zeros(len(test), bool)
    for cue, k in test.cue_class.items():
        flipped |= (test.labels == k) != test.has_cue[cue]
    acc_all = _recompute_shapes_accuracy(model, test, np.ones(len(test), bool))
    acc_aligned = _recompute_shapes_accuracy(model, test, ~flipped)
    acc_flipped = _recompute_shapes_accuracy(model, test, flipped)
    assert acc_all == pytest.approx(report["test"]["accuracy"], abs=1e-9)
    assert acc_flipped == pytest.approx(report["test"]["flipped_accuracy"], abs=1e-9)
    n_classes = len(test.class_names)
    assert acc_all > 1.0 / n_classes + 0.1
    # the shortcut: much worse where the cue points to the wrong class
    assert acc_aligned - acc_flipped > 0.2
    # and other classes' images carrying a cue are pulled toward the cue's class
    for cue, k in test.cue_class.items():
        others = (test.labels != k) & test.has_cue[cue]
        clean = (test.labels != k) & ~test.has_cue[cue]
        with torch.inference_mode():
            p_cue = model(images_to_tensor(test.images[others])).argmax(1).numpy()
            p_clean = model(images_to_tensor(test.images[clean])).argmax(1).numpy()
        assert (p_cue == k).mean() > (p_clean == k).mean() + 0.1, cue


def test_shapes_features_directory(shapes_run):
    _, features = shapes_run
    meta = read_meta(features)
    assert meta["kind"] == "image" and meta["layer"] == "fc:input"
    assert meta["spatial_layer"] == "features"
    assert meta["model"]["source"] == "builtin" and meta["dataset"]["source"] == "builtin"
    ds = load_builtin(meta)
    for split in ("train", "val", "test"):
        X = np.load(features / f"{split}.npy", mmap_mode="r")
        y = np.load(features / f"{split}_labels.npy")
        ids = json.loads((features / f"{split}_ids.json").read_text())
        assert X.dtype == np.float32 and X.shape == (meta["splits"][split], meta["d"])
        assert np.array_equal(y, ds.split(split).labels) and ids == ds.split(split).ids
    model = load_model(meta)
    test = load_split(meta, "test")
    rows = [0, 7, 31]
    x = test[rows]
    assert x.shape == (3, 3, 64, 64)
    # features == pooled channels of the spatial map == what fc sees
    maps = spatial_maps(model, meta, x)
    X = np.load(features / "test.npy", mmap_mode="r")
    assert maps.shape[:2] == (3, meta["d"]) and maps.shape[2] > 1
    np.testing.assert_allclose(maps.mean(dim=(2, 3)).numpy(), X[rows], rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        logits = model(x)
        np.testing.assert_allclose(model.fc(torch.from_numpy(np.array(X[rows]))).numpy(),
                                   logits.numpy(), rtol=1e-4, atol=1e-5)
    assert np.array_equal(test.raw(7), ds.test.images[7])


@pytest.mark.slow
def test_prepare_reuses_cached_checkpoint(shapes_run):
    run, _ = shapes_run
    ckpt = run / "models" / "shapes.pt"
    before = ckpt.stat().st_mtime_ns
    prepare_builtin("shapes", run, quick=True, progress=False)
    assert ckpt.stat().st_mtime_ns == before


@pytest.mark.slow
def test_toxicity_model_uses_identity_terms(toxicity_run):
    run, features = toxicity_run
    meta = read_meta(features)
    model = load_model(meta)
    assert isinstance(model, ToxicityEncoder)
    ds = load_builtin(meta)
    test = ds.test
    with torch.inference_mode():
        pred = model(test.texts).argmax(1).numpy()
    y, ident = test.labels, test.has_identity
    acc = (pred == y).mean()
    fpr_identity = (pred[(y == 0) & ident] == 1).mean()
    fpr_plain = (pred[(y == 0) & ~ident] == 1).mean()
    assert acc > 0.6
    assert fpr_identity > fpr_plain + 0.2
    # swapping the identity term out of a flagged comment removes the flag (counterfactual)
    idx = np.flatnonzero((y == 0) & ident & (pred == 1))[:20]
    assert len(idx) > 0
    from sparse_probe.datasets import IDENTITY_TERMS

    terms = {t for ts in IDENTITY_TERMS.values() for t in ts}
    stripped = [" ".join(w for w in test.texts[i].split() if w.lower() not in terms)
                for i in idx]
    with torch.inference_mode():
        assert (model(stripped).argmax(1).numpy() == 0).mean() > 0.5
    report = json.loads((run / "models" / "toxicity.json").read_text())
    assert report["test"]["accuracy"] == pytest.approx(acc, abs=1e-9)
    # features: the encoder's output, in id order
    X = np.load(features / "test.npy", mmap_mode="r")
    with torch.inference_mode():
        enc = model.encode(test.texts[:16]).numpy()
    np.testing.assert_allclose(X[:16], enc, rtol=1e-5, atol=1e-6)
    assert meta["kind"] == "text" and meta["spatial_layer"] is None
    assert load_split(meta, "test")[[0, 1]] == test.texts[:2]
