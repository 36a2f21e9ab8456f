"""Measure: one line-search trial's cross-entropy rows, torch's passes against the compiled kernel.

What an OWL-QN trial computes from the kept float64 logits ``z`` (n, C) and the step's float32
logit change ``dz``: the moved logits ``z + t dz``, the mean cross-entropy, the float32 residual
the gradient product reads and the float64 bias gradient. Route "torch" is what the solvers do
without the kernel (``torch.add`` into a reused buffer, ``restricted.softmax_residual``, the
float32 copy, the column sums); route "kernel" is ``fused_ce.ce_rows`` (``_softmax_ce.c``). Both
write into reused buffers. Prints milliseconds per trial (median of ``--repeats``) and their
ratio at the (n, C) of ``bench_path.py``'s geometries and around ``fused_ce.MIN_CLASSES``, after
checking that the two agree. One thread unless ``--threads``.

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

SHAPES = [(10000, 10), (10000, 16), (10000, 32), (10000, 64), (10000, 100), (20000, 1000),
          (5000, 1000), (500, 10)]


def measure(n: int, C: int, repeats: int, g: torch.Generator) -> tuple[float, float, float]:
    """(torch ms, kernel ms, largest relative difference of the losses) at one shape."""
    z = torch.randn(n, C, generator=g, dtype=torch.float64) * 3
    dz = torch.randn(n, C, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    zn, R64, R32 = torch.empty_like(z), torch.empty_like(z), torch.empty(n, C)
    dz64 = torch.empty_like(z)

    def torch_route():
        dz64.copy_(dz)  # the solvers' float64 step buffer (restricted/owlqn without the kernel)
        torch.add(z, dz64, alpha=0.5, out=zn)
        loss, R = softmax_residual(zn, y, scale=1.0 / n, out=R64)
        R32.copy_(R)
        return loss, R.sum(0)

    def kernel_route():
        return fused_ce.ce_rows(z, y, dz=dz, t=0.5, zn=zn, R32=R32, scale=1.0 / n)

    a, b = torch_route()[0], kernel_route()[0]
    return median_ms(torch_route, repeats), median_ms(kernel_route, repeats), abs(a - b) / abs(a)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if fused_ce._kernel() is None:
        raise SystemExit("the _softmax_ce extension is not built (pip install -e . with a C compiler)")
    g = torch.Generator().manual_seed(0)
    print(f"threads {args.threads}, median of {args.repeats}; the solvers use the kernel from "
          f"C = {fused_ce.MIN_CLASSES}")
    print(f"{'n':>7} {'C':>6} {'torch ms':>10} {'kernel ms':>10} {'torch/kernel':>13} {'loss rel diff':>14}")
    for n, C in SHAPES:
        t_ms, k_ms, diff = measure(n, C, args.repeats, g)
        print(f"{n:>7} {C:>6} {t_ms:>10.2f} {k_ms:>10.2f} {t_ms / k_ms:>13.2f} {diff:>14.1e}")


if __name__ == "__main__":
    main()
