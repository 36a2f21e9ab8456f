"""Measure: the residual product ``R^T X`` of an OWL-QN iteration, by its two CPU routes.

``R`` (n, C) is the float64 softmax residual, ``X`` (n, m) the float32 working set. Route
"transpose" builds the (C, n) float32 transpose of R and multiplies it (oneDNN when available;
the route below ``products.WIDE_CLASSES`` classes); route "row-major" copies R to a row-major
float32 array that the BLAS reads transposed (the route from ``WIDE_CLASSES`` classes on).
Prints milliseconds per product (median of ``--repeats``), the copy's share, and the ratio,
for shapes on both sides of the threshold. One thread unless ``--threads``.

    python benchmarks/measure_products.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparse_probe.solvers.products import WIDE_CLASSES, rt_x

SHAPES = [(4000, 1000, 32), (20000, 1000, 32), (10000, 100, 64), (10000, 64, 256),
          (10000, 32, 256), (10000, 16, 256), (10000, 10, 256), (20000, 10, 512)]


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def measure(n: int, C: int, m: int, repeats: int, g: torch.Generator) -> tuple[float, ...]:
    """(transpose ms, its copy ms, row-major ms, its copy ms) at one shape."""
    R = torch.randn(n, C, generator=g, dtype=torch.float64)
    X = torch.randn(n, m, generator=g)
    Rt = torch.empty(C, n)
    R32 = torch.empty(n, C)

    def transpose():
        Rt.copy_(R.T)
        return rt_x(Rt.T, X)

    def row_major():
        R32.copy_(R)
        return torch.mm(R32.T, X)

    torch.testing.assert_close(transpose(), row_major(), rtol=1e-4, atol=1e-3)
    return (median_ms(transpose, repeats), median_ms(lambda: Rt.copy_(R.T), repeats),
            median_ms(row_major, repeats), median_ms(lambda: R32.copy_(R), repeats))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"R^T X, float64 R -> float32, {args.threads} thread(s), median of {args.repeats}; "
          f"row-major route from C >= {WIDE_CLASSES}")
    print(f"{'n':>6} {'C':>5} {'m':>4} | {'transpose ms':>12} {'(copy)':>7} | "
          f"{'row-major ms':>12} {'(copy)':>7} | {'ratio':>5}")
    for n, C, m in SHAPES:
        a, ca, b, cb = measure(n, C, m, args.repeats, g)
        print(f"{n:>6} {C:>5} {m:>4} | {a:>12.2f} {ca:>7.2f} | {b:>12.2f} {cb:>7.2f} | "
              f"{a / b:>5.2f}")


if __name__ == "__main__":
    main()
