"""Measure: sorted index sets, numpy's set functions against ``sparse_probe.index_sets``.

The path fit unions and differences its working sets (feature numbers) at every point and KKT
round. For random int64 index lists of several sizes (the bench paths' working sets are 30 to
5,000 features), the median of ``--repeats`` calls of ``np.unique`` / ``np.union1d`` /
``np.setdiff1d`` and of the project's helpers (checked equal first), and their ratio.

    python benchmarks/measure_index_sets.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _median_us(fn, repeats: int) -> float:
    fn()  # first call untimed
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e6


def main(argv=None) -> None:
    from sparse_probe import index_sets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}; median of {args.repeats} calls, microseconds")
    print(f"{'size':>6} | {'function':>9} | {'numpy':>8} | {'ours':>8} | numpy/ours")
    for size in (30, 300, 3000, 6000, 50000):
        a = rng.integers(0, 2 * size, size)
        b = rng.integers(0, 2 * size, size)
        pairs = [("unique", np.unique, index_sets.unique, (a,)),
                 ("union", np.union1d, index_sets.union, (a, b)),
                 ("setdiff", np.setdiff1d, index_sets.difference, (a, b))]
        for name, theirs, ours, xs in pairs:
            np.testing.assert_array_equal(theirs(*xs), ours(*xs))
            t_np = _median_us(lambda f=theirs, xs=xs: f(*xs), args.repeats)
            t_us = _median_us(lambda f=ours, xs=xs: f(*xs), args.repeats)
            print(f"{size:>6} | {name:>9} | {t_np:8.1f} | {t_us:8.1f} | {t_np / t_us:6.2f}")


if __name__ == "__main__":
    main()
