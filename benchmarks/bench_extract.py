"""Benchmark of feature extraction (not a test; run by ``make bench``).

1. Throughput: images/s of ``extract_features`` vs a plain ``model(x)`` loop over the same
   DataLoader, for random-init torchvision ResNet-18/50 at 224 px on CPU (batch 64). Target:
   ratio >= 0.9 (the extractor adds a hook, a copy to a buffer and chunked writes).
2. Memory: resident set size at start / middle / end while extracting d=512 features of many
   small synthetic examples (default 100k, 16 px): it must stay flat, since rows go to disk
   chunk by chunk instead of accumulating in RAM (n x d x 4 bytes would be 205 MB here).

No downloads; all weights are random.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from sparse_probe.extract import extract_features
from sparse_probe.extract.data import IMAGENET_MEAN, IMAGENET_STD, ImageArrayDataset


def _images(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """Write ``root/train.npy`` (uint8, (n, size, size, 3)) + labels, chunkwise."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(root / "train.npy", mode="w+", dtype=np.uint8,
                                    shape=(n, size, size, 3))
    for i in range(0, n, 4096):
        j = min(n, i + 4096)
        arr[i:j] = rng.integers(0, 256, (j - i, size, size, 3), dtype=np.uint8)
    arr.flush()
    del arr
    np.save(root / "train_labels.npy", np.arange(n) % 10)
    return root


def bench_throughput(name: str, n: int, size: int, batch_size: int, workers: int,
                     tmp: Path, repeats: int = 2) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    data = _images(tmp / f"tp_{name}", n, size)
    prep = {"image_size": None, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    loader = DataLoader(ImageArrayDataset(np.load(data / "train.npy", mmap_mode="r"), prep),
                        batch_size=batch_size, num_workers=workers)
    with torch.inference_mode():  # warm-up
        model(next(iter(loader))[:4])
    plain, ours = 0.0, 0.0
    for rep in range(repeats):  # alternate, keep the best of each (the machine may be shared)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in loader:
                model(x)
        plain = max(plain, n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        extract_features(model, data, tmp / f"feat_{name}_{rep}", batch_size=batch_size,
                         device="cpu", num_workers=workers, val_fraction=0.0, progress=False)
        ours = max(ours, n / (time.perf_counter() - t0))
    print(f"{name:10s} {size}px batch {batch_size}: plain model(x) {plain:7.1f} img/s, "
          f"extract_features {ours:7.1f} img/s, ratio {ours / plain:.2f} (target >= 0.9)")


class _Wide(nn.Module):
    """Cheap model with a 512-d penultimate layer (so n x d is large)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, stride=4, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 512, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def bench_rss(n: int, size: int, batch_size: int, tmp: Path) -> None:
    proc = psutil.Process()
    data = _images(tmp / "rss", n, size)
    marks: dict[str, float] = {}
    chunk = 16 * batch_size

    def on_chunk(split: str, rows: int) -> None:
        rss = proc.memory_info().rss / 2**20
        marks.setdefault("first chunk", rss)
        if rows >= n // 2:
            marks.setdefault("middle", rss)
        marks["peak"] = max(marks.get("peak", 0.0), rss)

    marks["start"] = proc.memory_info().rss / 2**20
    t0 = time.perf_counter()
    out = extract_features(_Wide().eval(), data, tmp / "feat_rss", batch_size=batch_size,
                           device="cpu", val_fraction=0.0, chunk_size=chunk,
                           on_chunk=on_chunk, progress=False)
    marks["end"] = proc.memory_info().rss / 2**20
    dt = time.perf_counter() - t0
    feats_mb = n * 512 * 4 / 2**20
    print(f"RSS while extracting {n} x 512 features ({feats_mb:.0f} MB on disk, "
          f"{n / dt:.0f} ex/s):")
    for k in ("start", "first chunk", "middle", "end", "peak"):
        print(f"  {k:12s} {marks.get(k, float('nan')):8.1f} MB")
    growth = marks["end"] - marks["first chunk"]
    print(f"  growth first chunk -> end: {growth:+.1f} MB "
          f"({'flat' if growth < 0.25 * feats_mb else 'NOT flat'})")
    assert np.load(out / "train.npy", mmap_mode="r").shape == (n, 512)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--n", type=int, default=512,
                    help="images per throughput run (short runs are noisy)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rss-n", type=int, default=100_000, help="examples for the RSS run")
    ap.add_argument("--rss-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="best of N alternating runs")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as d:
        tmp = Path(d)
        for name in [m for m in args.models.split(",") if m]:
            bench_throughput(name, args.n, args.size, args.batch_size, args.workers, tmp,
                             args.repeats)
        if args.rss_n > 0:
            bench_rss(args.rss_n, args.rss_size, 256, tmp)


if __name__ == "__main__":
    main()
