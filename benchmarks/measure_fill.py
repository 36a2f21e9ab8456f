"""How close a removed object is to what the shapes generator draws without it: the copy from
the surroundings (:func:`tasks.viz.perturb.fill_from_surround`) against the grey fill.

For each seed a small shapes dataset with a texture and a tint is generated, every train
image's object mask is removed both ways and compared, inside the mask, with the same image
redrawn without the object (:func:`sparse_probe.datasets.shapes.render_without`, every other
pixel identical). Masks grown by a few pixels stand in for maps that spill past the object.

Usage: ``python benchmarks/measure_fill.py [--seeds 5 6] [--n 120] [--grow 0 2 4 6]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(seed: int, n: int, grow: int) -> dict[str, tuple[float, float, float]]:
    """Per background (``textured``, ``plain``): share of masks copied (not grey), and the
    mean absolute error per channel inside the mask of the copy and of grey."""
    import numpy as np
    import torch

    from sparse_probe.datasets.shapes import make_shapes, render_without
    from tasks.viz.perturb import _dilate, fill_from_surround, fill_removed, surround_fill

    ds = make_shapes(n_train=n, n_val=6, n_test=6, seed=seed,
                     cues={"texture": "ring", "tint": "star"})
    sp = ds.train
    truth = render_without(ds.params, "train", ["object"]).astype(np.float64) / 255
    imgs = torch.as_tensor(sp.images.transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    masks = np.stack([_dilate(m, grow) for m in sp.object_masks])
    filled = fill_from_surround(imgs, masks).numpy().transpose(0, 2, 3, 1)
    greyed = fill_removed(imgs, masks).numpy().transpose(0, 2, 3, 1)
    out = {}
    for name, group in (("textured", sp.has_cue["texture"]), ("plain", ~sp.has_cue["texture"])):
        rows = np.flatnonzero(group)
        copied = np.mean([surround_fill(imgs[i].numpy(), masks[i]) is not None for i in rows])
        e_fill = np.mean([np.abs(filled[i][masks[i]] - truth[i][masks[i]]).mean() for i in rows])
        e_grey = np.mean([np.abs(greyed[i][masks[i]] - truth[i][masks[i]]).mean() for i in rows])
        out[name] = (float(copied), float(e_fill), float(e_grey))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5])
    ap.add_argument("--n", type=int, default=120, help="train images per seed")
    ap.add_argument("--grow", type=int, nargs="+", default=[0, 2, 4, 6],
                    help="pixels each object mask is grown by")
    args = ap.parse_args(argv)
    if args.n < 10 or min(args.grow) < 0:
        ap.error("--n must be at least 10 and --grow at least 0")
    print(f"{'seed':>4} {'grow':>4} {'background':>10} {'copied':>6} {'copy err':>8} "
          f"{'grey err':>8}")
    for seed in args.seeds:
        for grow in args.grow:
            for name, (copied, e_fill, e_grey) in measure(seed, args.n, grow).items():
                print(f"{seed:>4} {grow:>4} {name:>10} {copied:>6.2f} {e_fill:>8.3f} "
                      f"{e_grey:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
