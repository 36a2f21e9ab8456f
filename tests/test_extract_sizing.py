"""Extraction keeps the data's own image size unless --image-size or the model says otherwise,
and says what it did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers_extract import make_image_folder, save_resnet18
from PIL import Image
from torch import nn

from sparse_probe.extract import extract_features, read_meta
from sparse_probe.extract.data import open_data
from sparse_probe.extract.sizing import choose_image_size, data_image_sizes


def _same_size_folder(root, side=40, per_class=3):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


class SizedNet(nn.Module):
    """A small CNN that, like a ViT, accepts one input size only (``image_size``)."""

    def __init__(self, image_size: int = 48):
        super().__init__()
        self.image_size = image_size
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise RuntimeError(f"expected {self.image_size}px input, got {tuple(x.shape)}")
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.mark.slow
def test_cli_keeps_own_size_and_prints_it(tmp_path):
    from sparse_probe.cli import main

    folder = _same_size_folder(tmp_path / "imgs")
    ckpt = tmp_path / "r18.pt"
    model = save_resnet18(ckpt, num_classes=2)
    res = CliRunner().invoke(main, ["extract", "--model", "resnet18", "--weights", str(ckpt),
                                    "--data", str(folder), "--out", str(tmp_path / "f"),
                                    "--splits", "test", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "images kept at their own size 40x40" in res.output
    meta = read_meta(tmp_path / "f")
    assert meta["preprocessing"]["image_size"] is None
    # the features are the model's on the 40-px images (a resize to 224 would change them)
    from sparse_probe.extract.data import IMAGENET_MEAN, IMAGENET_STD

    ids = __import__("json").loads((tmp_path / "f" / "test_ids.json").read_text())
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(folder / i)).copy())
                     .permute(2, 0, 1).float() / 255 for i in ids])
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1)
    with torch.no_grad():
        m = model
        h = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        ref = h.mean((2, 3)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "f" / "test.npy"), ref, rtol=1e-4, atol=1e-4)
    # --image-size resizes, and says so
    res = CliRunner().invoke(main, ["extract", "--model", "resnet18", "--weights", str(ckpt),
                                    "--data", str(folder), "--out", str(tmp_path / "g"),
                                    "--splits", "test", "--device", "cpu", "--image-size", "32"])
    assert res.exit_code == 0, res.output
    assert "images resized to 32x32 (--image-size; the data's own size: 40x40)" in res.output
    assert read_meta(tmp_path / "g")["preprocessing"]["image_size"] == 32


def test_mixed_sizes_get_their_median_shorter_side(tmp_path):
    folder = make_image_folder(tmp_path / "mixed", size=30, per_class=3)
    src = open_data(folder, preprocessing={"image_size": None, "mean": None, "std": None})
    sizes = data_image_sizes(src)
    shorter = []
    for p in sorted(folder.rglob("*.png")):
        with Image.open(p) as im:
            shorter.append(min(im.size))
    assert sum(sizes.values()) == len(shorter) == 18
    size, note = choose_image_size(src, nn.Linear(2, 2), None)
    assert size == int(np.median(shorter))
    assert f"center-cropped to {size}x{size}, their median shorter side" in note


def test_model_that_needs_a_size_gets_it(tmp_path):
    folder = _same_size_folder(tmp_path / "imgs", side=40, per_class=2)
    notes: list[str] = []
    out = extract_features(SizedNet(48), folder, tmp_path / "f", splits=("test",),
                           device="cpu", progress=False, report=notes.append)
    assert read_meta(out)["preprocessing"]["image_size"] == 48
    assert notes == ["images resized to 48x48: the model needs that size (the data's own "
                     "size: 40x40); --image-size chooses another"]
    assert np.load(out / "test.npy").shape == (4, 4)


def test_model_failing_at_native_size_says_how_to_fix(tmp_path):
    folder = _same_size_folder(tmp_path / "imgs", side=40, per_class=2)
    class Strict(SizedNet):
        def forward(self, x):
            if x.shape[-1] != 48:
                raise RuntimeError("size mismatch in the first block")
            return super().forward(x)

    strict = Strict(48)
    strict.image_size = None  # declares nothing, still needs 48 px
    with pytest.raises(ValueError, match=r"the model fails on 40x40 images \(size mismatch in "
                       r"the first block\); pass --image-size N"):
        extract_features(strict, folder, tmp_path / "f", splits=("test",), device="cpu",
                         progress=False)
