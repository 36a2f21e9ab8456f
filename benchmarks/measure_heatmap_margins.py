"""Spread over seeds of the quantities `tests/test_heatmaps.py` asserts on the built-in shapes model.

The test picks two channels of the trained ShapesCNN: the one whose activation drops most when
the watermark is removed (`mark_drop`, asserted > a floor) and a cue-independent channel (the
active channel whose activation changes least when every cue is removed: `object_change`,
asserted < a ceiling); then the share of each channel's heatmap mass on its region. This
script trains the quick model for several seeds and prints each quantity per seed and its
range, so the test's thresholds are set from the measured spread rather than from one run.

Usage: ``python benchmarks/measure_heatmap_margins.py --seeds 0 1 2 3 4``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def measure(seed: int) -> dict[str, float]:
    from helpers_viz import channel_measurements  # the test's own measurement code

    from sparse_probe.datasets import prepare_builtin

    run = Path(tempfile.mkdtemp(prefix=f"margins-{seed}-"))
    try:
        feats = prepare_builtin("shapes", run, seed=seed, quick=True, progress=False)
        return channel_measurements(feats)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for s in args.seeds:
        m = measure(s)
        rows.append(m)
        print(f"seed {s}: " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()), flush=True)
    keys = rows[0].keys()
    print("range over seeds:")
    for k in keys:
        v = np.array([r[k] for r in rows])
        print(f"  {k:>16}: min {v.min():.4f}  max {v.max():.4f}  mean {v.mean():.4f}")


if __name__ == "__main__":
    main()
