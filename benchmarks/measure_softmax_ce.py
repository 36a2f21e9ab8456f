"""Measure: one line-search trial's cross-entropy rows, torch's passes against the compiled kernel.

What an OWL-QN trial computes from the kept float64 logits ``z`` (n, C) and the step's float32
logit change ``dz``: the moved logits ``z + t dz``, the mean cross-entropy, the float32 residual
the gradient product reads and the float64 bias gradient. Route "torch" is what the solvers do without the kernel
(``torch.add`` into a reused buffer, ``restricted.softmax_residual``, the float32 copy, the
column sums); the kernel (``fused_ce.ce_rows``, ``_softmax_ce.c``) is timed on both of its
routes, along rows (one row at a time) and across rows (32 rows at a time, transposed),
whatever its own choice by C (``_softmax_ce.LANE_MAX_C``: across rows up to 31 classes). All
write into reused buffers. Prints milliseconds per trial (median of ``--repeats``), torch's
time over the route the kernel picks, and the largest relative difference of the three
losses, at the (n, C) of ``bench_path.py``'s geometries and around the switch. One thread
unless ``--threads``.

    python benchmarks/measure_softmax_ce.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.restricted import softmax_residual

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure_products import median_ms

SHAPES = [(10000, 2), (10000, 3), (10000, 5), (10000, 10), (10000, 16), (10000, 24),
          (10000, 31), (10000, 32), (10000, 64), (10000, 100), (20000, 1000), (5000, 1000),
          (500, 10)]


def measure(n: int, C: int, repeats: int, g: torch.Generator) -> tuple[float, float, float, float]:
    """(torch ms, along-rows ms, across-rows ms, largest relative difference of the three
    losses) at one shape."""
    from sparse_probe.solvers._softmax_ce import rows

    z = torch.randn(n, C, generator=g, dtype=torch.float64) * 3
    dz = torch.randn(n, C, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    zn, R64, R32 = torch.empty_like(z), torch.empty_like(z), torch.empty(n, C)
    dz64 = torch.empty_like(z)
    gb = torch.zeros(C, dtype=torch.float64)

    def torch_route():
        dz64.copy_(dz)  # the solvers' float64 step buffer (restricted/owlqn without the kernel)
        torch.add(z, dz64, alpha=0.5, out=zn)
        loss, R = softmax_residual(zn, y, scale=1.0 / n, out=R64)
        R32.copy_(R)
        return loss, R.sum(0)

    def kernel(route: int):
        def call():  # what fused_ce.ce_rows passes, the route forced
            gb.zero_()
            return rows(n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), zn.numpy(),
                        None, R32.numpy(), gb.numpy(), 1.0 / n, route)
        return call

    losses = [torch_route()[0], kernel(0)(), kernel(1)()]
    diff = max(abs(a - losses[0]) for a in losses) / abs(losses[0])
    return (median_ms(torch_route, repeats), median_ms(kernel(0), repeats),
            median_ms(kernel(1), repeats), diff)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if fused_ce._kernel() is None:
        raise SystemExit("the _softmax_ce extension is not built (pip install -e . with a C compiler)")
    g = torch.Generator().manual_seed(0)
    from sparse_probe.solvers._softmax_ce import LANE_MAX_C

    print(f"threads {args.threads}, median of {args.repeats}; the kernel goes across rows up to "
          f"C = {LANE_MAX_C}, along rows beyond")
    print(f"{'n':>7} {'C':>6} {'torch ms':>10} {'along ms':>10} {'across ms':>10} "
          f"{'torch/kernel':>13} {'loss rel diff':>14}")
    for n, C in SHAPES:
        t_ms, a_ms, x_ms, diff = measure(n, C, args.repeats, g)
        k_ms = x_ms if C <= LANE_MAX_C else a_ms
        print(f"{n:>7} {C:>6} {t_ms:>10.2f} {a_ms:>10.2f} {x_ms:>10.2f} {t_ms / k_ms:>13.2f} "
              f"{diff:>14.1e}")


if __name__ == "__main__":
    main()
