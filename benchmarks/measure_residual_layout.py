"""Measure: a trial's residual and its gradient product, by the residual's layout.

Each OWL-QN trial runs the compiled cross-entropy kernel (``fused_ce.ce_rows``), whose float32
residual ``R`` feeds the gradient's ``R^T X`` (``products.rt_x``). Two layouts: "rows", the
(n, C) residual (the kernel writes each row's C floats together; the product then copies it
transposed, or from ``WIDE_CLASSES`` classes on hands it to the BLAS, which reads it
transposed), and "transposed", a (C, n) residual (the kernel stages 16 rows and writes each
class's 16 floats together; oneDNN reads it as is). Prints per shape ``n x m x C`` the
kernel's and the product's milliseconds on each side (median of ``--repeats``, reused
buffers), rows/transposed of their sums, and the largest difference of the two gradients
relative to its largest entry.

``--routes``: the kernel alone writing the transposed residual, along rows (route 0, staged)
and across rows in lanes (route 1), at class counts from 32 to 1,000, with the route the
kernel picks by default (``_softmax_ce.LANE_MAX_C_T``).

    python benchmarks/measure_residual_layout.py [--repeats 15] [--threads 2] [--routes]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.products import rt_x

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure_products import median_ms

# the bench geometries' working sets and held-out-like shapes across the class counts
SHAPES = [(10000, 256, 2), (10000, 256, 10), (10000, 128, 20), (12000, 128, 40),
          (10000, 64, 100), (40000, 64, 300), (20000, 32, 1000), (500, 3000, 10)]


def measure(n: int, m: int, C: int, repeats: int, g: torch.Generator) -> tuple[float, ...]:
    """(kernel ms, product ms) with the (n, C) residual, the same with the (C, n) one, and
    the two gradients' largest difference relative to the largest entry."""
    z = torch.randn(n, C, dtype=torch.float64, generator=g) * 3
    dz = torch.randn(n, C, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    X = torch.randn(n, m, generator=g)
    zn, R32, RT = torch.empty_like(z), torch.empty(n, C), torch.empty(C, n)

    def rows_kernel():
        fused_ce.ce_rows(z, y, dz=dz, t=0.5, zn=zn, R32=R32, scale=1 / n)

    def t_kernel():
        fused_ce.ce_rows(z, y, dz=dz, t=0.5, zn=zn, R32T=RT, scale=1 / n)

    rows_kernel()
    t_kernel()
    G_rows, G_t = rt_x(R32, X).double(), rt_x(RT.T, X).double()
    diff = float((G_rows - G_t).abs().max() / G_rows.abs().max())
    return (median_ms(rows_kernel, repeats), median_ms(lambda: rt_x(R32, X), repeats),
            median_ms(t_kernel, repeats), median_ms(lambda: rt_x(RT.T, X), repeats), diff)


def routes(repeats: int, threads: int, g: torch.Generator) -> None:
    """The ``--routes`` table."""
    from sparse_probe.solvers._softmax_ce import LANE_MAX_C_T, rows

    print(f"{'n x C':>12} {'along':>8} {'lanes':>8} {'along/lanes':>12} {'default':>8}")
    for n, C in [(12000, 32), (12000, 48), (10000, 64), (10000, 128), (10000, 200),
                 (20000, 300), (20000, 400), (20000, 500), (20000, 700), (20000, 1000)]:
        z = torch.randn(n, C, dtype=torch.float64, generator=g)
        dz = torch.randn(n, C, generator=g)
        y = torch.randint(0, C, (n,), generator=g)
        zn, RT, gb = torch.empty_like(z), torch.empty(C, n), torch.zeros(C, dtype=torch.float64)

        def call(route, z=z, dz=dz, y=y, zn=zn, RT=RT, gb=gb, n=n, C=C):
            rows(n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), zn.numpy(), None,
                 RT.numpy(), gb.numpy(), 1 / n, route, threads, n)

        a = median_ms(lambda: call(0), repeats)
        b = median_ms(lambda: call(1), repeats)
        print(f"{f'{n} x {C}':>12} {a:8.3f} {b:8.3f} {a / b:12.2f} "
              f"{'lanes' if C <= LANE_MAX_C_T else 'along':>8}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--routes", action="store_true", help="the kernel's two routes (above)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"threads {args.threads}; median of {args.repeats} (ms)")
    if args.routes:
        routes(args.repeats, args.threads, g)
        return
    print(f"{'n x m x C':>18} {'kernel':>8} {'R^T X':>8} {'kernel T':>9} {'R^T X T':>8} "
          f"{'rows/T':>7} {'grad diff':>10}")
    for n, m, C in SHAPES:
        a, b, c, d, diff = measure(n, m, C, args.repeats, g)
        print(f"{f'{n} x {m} x {C}':>18} {a:8.3f} {b:8.3f} {c:9.3f} {d:8.3f} "
              f"{(a + b) / (c + d):7.2f} {diff:10.1e}")


if __name__ == "__main__":
    main()
