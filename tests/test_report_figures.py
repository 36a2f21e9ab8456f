"""Figures of the run report stay readable at 1,000 classes."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd

from analysis.figures import MAX_CLASS_BARS, fig_spurious_share


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_class_share_figure_summarizes_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    sp = rng.random(n) * 0.5
    shares = pd.DataFrame({"core": 1 - sp, "spurious:mark": sp},
                          index=[f"class {i + 1}" for i in range(n)])
    small = fig_spurious_share(shares.iloc[:10], tmp_path / "small.png")
    big = fig_spurious_share(shares, tmp_path / "big.png")
    (_, h_small), (_, h_big) = _png_size(small), _png_size(big)
    # the 1,000-class figure is as tall as one of MAX_CLASS_BARS classes, not 25x taller
    top = fig_spurious_share(shares.iloc[np.argsort(-sp)[:MAX_CLASS_BARS]], tmp_path / "t.png")
    assert h_big == _png_size(top)[1]
    assert h_small < h_big < 4 * h_small * MAX_CLASS_BARS / 10
