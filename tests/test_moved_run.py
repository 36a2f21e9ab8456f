"""A run directory moved (or copied to another machine) still works: the model checkpoint, the
dataset root and the probe's features are found again from paths recorded relative to them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers_extract import write_encoder_module

from sparse_probe.extract import extract_features, load_model, load_split, read_meta
from sparse_probe.rundir import recorded_path, with_relative

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_relative_entries_and_their_lookup(tmp_path):
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "run" / "features").mkdir()
    ckpt = tmp_path / "run" / "models" / "m.pt"
    ckpt.write_bytes(b"x")
    entry = with_relative({"checkpoint": str(ckpt), "name": "m"}, "checkpoint",
                          tmp_path / "run" / "features")
    assert entry == {"checkpoint": str(ckpt), "name": "m", "checkpoint_rel": "../models/m.pt"}
    assert with_relative({"checkpoint": None}, "checkpoint", tmp_path) == {"checkpoint": None}
    meta = {"model": entry, "_dir": str(tmp_path / "run" / "features")}
    assert recorded_path(meta, "model", "checkpoint") == str(ckpt)  # where it was
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = {"model": entry, "_dir": str(tmp_path / "moved" / "features")}
    assert recorded_path(moved, "model", "checkpoint") == str(tmp_path / "moved/models/m.pt")
    # without the relative entry, or without the directory: the recorded path (for the error)
    plain = {"model": {"checkpoint": str(ckpt)}, "_dir": str(tmp_path / "moved" / "features")}
    assert recorded_path(plain, "model", "checkpoint") == str(ckpt)
    assert recorded_path({"model": entry}, "model", "checkpoint") == str(ckpt)
    # a relative record is read against the directory; a top-level key with section None
    top = {"features_dir": "../features", "_dir": str(tmp_path / "moved" / "probe")}
    (tmp_path / "moved" / "probe").mkdir()
    assert recorded_path(top, None, "features_dir") == str(tmp_path / "moved" / "features")


@pytest.mark.slow
def test_a_moved_builtin_run_loads_its_model_and_builds_hits(tmp_path):
    from sparse_probe.datasets import prepare_builtin
    from sparse_probe.fitting import fit_features
    from tasks.cli import tasks as tasks_cli

    run = tmp_path / "a"
    feats = prepare_builtin("toxicity", run, quick=True, progress=False)
    fit_features(feats, run / "probe", n_lambdas=6, eps=0.1, progress=False)
    before = load_model(read_meta(feats)).state_dict()
    probe = json.loads((run / "probe" / "probe.json").read_text())
    assert probe["features_dir"] == str(feats.resolve())
    assert probe["features_dir_rel"] == "../features"
    recorded = read_meta(feats)["model"]["checkpoint"]
    shutil.move(run, tmp_path / "b")
    moved = tmp_path / "b"
    meta = read_meta(moved / "features")
    after = load_model(meta).state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    # HITs from the moved run, the features found from probe.json alone
    out = tmp_path / "tasks"
    result = CliRunner().invoke(tasks_cli, [
        "build", "--probe", str(moved / "probe"), "--out", str(out), "--k", "1",
        "--examples", "5", "--insertion-words", "0"])
    assert result.exit_code == 0, result.output
    assert (out / "manifest.jsonl").read_text().count("\n") >= 2
    # a meta.json from before the relative entries: the error names the recorded checkpoint
    raw = json.loads((moved / "features" / "meta.json").read_text())
    del raw["model"]["checkpoint_rel"]
    (moved / "features" / "meta.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=recorded):
        load_model(read_meta(moved / "features"))


def test_a_moved_array_dataset_is_read_from_its_new_place(tmp_path, monkeypatch):
    run = tmp_path / "a"
    (run / "data").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = write_encoder_module(tmp_path, name="toy_models_moved")
    X = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    np.save(run / "data" / "arr.npy", X)
    np.save(run / "data" / "arr_labels.npy", np.arange(12) % 3)
    extract_features(f"{mod}:make_mlp", run / "data" / "arr.npy", run / "features",
                     val_fraction=0.0, device="cpu", progress=False)
    assert read_meta(run / "features")["dataset"]["root_rel"] == "../data/arr.npy"
    shutil.move(run, tmp_path / "b")
    split = load_split(read_meta(tmp_path / "b" / "features"), "train")
    np.testing.assert_array_equal(split.labels, np.arange(12) % 3)


@pytest.mark.parametrize("recorded", [{}, {"features_dir": None}])
def test_a_probe_without_its_features_dir_asks_for_features(tmp_path, recorded):
    from tasks.build import BuildError, build_tasks

    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "probe.json").write_text(json.dumps({"format": 1, **recorded}))
    with pytest.raises(BuildError, match="field features_dir missing; pass --features"):
        build_tasks(tmp_path / "probe", None, tmp_path / "tasks")
