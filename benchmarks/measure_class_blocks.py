"""Measure: the class blocks' products ``M q``, float64 einsum against the float32 route.

:meth:`~sparse_probe.solvers.class_blocks.ClassBlocks.apply` is two of every OWL-QN
iteration's products where the blocks are L-BFGS's initial matrix (the direction's ``M q`` and
the new pair's ``M y``); ``h`` = 10 rows is the products with all pairs when the initial matrix
is set. Route "float64" is torch's einsum on the float64 inverses (what other devices do), route
"float32" the CPU one (:data:`~sparse_probe.solvers.class_blocks.SINGLE_APPLY`: the inverses
rounded to float32, one numpy product per block). Each is timed warm (the inverses in cache from
the call before) and cold (a 64 MB pass over another array between calls, as the logits' passes
do in a solve); prints microseconds per product (median of ``--repeats``), float64 over float32,
and the float32 route's largest error relative to the float64 one's largest entry.

    python benchmarks/measure_class_blocks.py [--repeats 101] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sparse_probe.solvers import class_blocks as cb
from sparse_probe.solvers.class_blocks import ClassBlocks

# (n, m, C): the 100- and 1,000-class bench geometries' widest working sets, a collinear
# 40-class held-out size, 20 classes at 150 features
SHAPES = [(10000, 64, 100), (20000, 32, 1000), (3000, 128, 40), (2000, 150, 20)]


def blocks_for(n: int, m: int, C: int, seed: int = 0) -> ClassBlocks:
    """Blocks of correlated float32 columns at random logits, all weights free."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, 4)) @ g.standard_normal((4, m)) + 0.5 * g.standard_normal((n, m))
    z = torch.tensor(g.standard_normal((n, C)) * 2.0)
    return ClassBlocks(torch.tensor(X, dtype=torch.float32), z, 1e-3,
                       torch.ones(C, m, dtype=torch.bool))


def time_us(fn, Q: torch.Tensor, repeats: int, cold: bool, scratch: torch.Tensor) -> float:
    """Median microseconds of ``fn(Q)``; with ``cold`` a pass over ``scratch`` before each."""
    times = []
    for _ in range(repeats):
        if cold:
            scratch.mul_(1.0000001)
        t = time.perf_counter()
        fn(Q)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=101)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scratch = torch.ones(8 << 20, dtype=torch.float64)
    print(f"threads {args.threads}, SINGLE_APPLY={cb.SINGLE_APPLY}; microseconds per product, "
          f"median of {args.repeats}")
    print(f"{'n×m×C':>16} {'h':>3} {'cache':>5} {'float64':>9} {'float32':>9} {'64/32':>6} "
          f"{'rel err':>8}")
    for n, m, C in SHAPES:
        blocks = blocks_for(n, m, C)
        inv32 = blocks.inv32
        assert inv32 is not None, "the float32 route runs on CPU only"
        single = blocks.apply

        def double(Q, b=blocks, keep=inv32):
            b.inv32 = None
            try:
                return b.apply(Q)
            finally:
                b.inv32 = keep

        p = C * m + C
        for h in (1, 10):
            Q = torch.randn((h, p) if h > 1 else (p,), dtype=torch.float64 if h == 1
                            else torch.float32, generator=torch.Generator().manual_seed(h))
            ref = double(Q).double()
            err = float((single(Q).double() - ref).abs().max() / ref.abs().max())
            for cold in (False, True):
                t64 = time_us(double, Q, args.repeats, cold, scratch)
                t32 = time_us(single, Q, args.repeats, cold, scratch)
                print(f"{f'{n}×{m}×{C}':>16} {h:>3} {'cold' if cold else 'warm':>5} "
                      f"{t64:9.0f} {t32:9.0f} {t64 / t32:6.2f} {err:8.1e}")


if __name__ == "__main__":
    main()
