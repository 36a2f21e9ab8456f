"""Measure: the residual product ``R^T X`` of an OWL-QN iteration, by its two CPU routes.

``R`` (n, C) is the float64 softmax residual, ``X`` (n, m) the float32 working set. Route
"transpose" builds the (C, n) float32 transpose of R and multiplies it (oneDNN when available;
the route below ``products.WIDE_CLASSES`` classes); route "row-major" copies R to a row-major
float32 array that the BLAS reads transposed (the route from ``WIDE_CLASSES`` classes on).
Prints milliseconds per product (median of ``--repeats``), the copy's share, and the ratio,
for shapes on both sides of the threshold. One thread unless ``--threads``.

``--outputs``: the step product ``X W^T + b`` (n, C) instead, as a fresh tensor (``x_wt``'s
default route, oneDNN where available) and written into a reused buffer (``x_wt(out=...)``,
the route from ``products.FRESH_MAP_BYTES`` on), at output sizes on both sides of it.

    python benchmarks/measure_products.py [--repeats 15] [--threads 1] [--outputs]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparse_probe.solvers.products import FRESH_MAP_BYTES, WIDE_CLASSES, rt_x, x_wt

SHAPES = [(4000, 1000, 32), (20000, 1000, 32), (10000, 100, 64), (10000, 64, 256),
          (10000, 32, 256), (10000, 16, 256), (10000, 10, 256), (20000, 10, 512)]


# (n, C, m) of the step product: outputs of 76, 38, 31 (three shapes) and 4 MiB
OUTPUT_SHAPES = [(20000, 1000, 32), (200000, 100, 64), (100000, 100, 64), (80000, 100, 128),
                 (40000, 200, 64), (20000, 400, 256), (10000, 100, 64)]


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


def measure_output(n: int, C: int, m: int, repeats: int, g: torch.Generator) -> tuple[float, ...]:
    """(fresh ms, into-buffer ms) of ``X W^T + b`` at one shape (n, C, m)."""
    X = torch.randn(n, m, generator=g)
    W = torch.randn(C, m, generator=g)
    b = torch.randn(C, generator=g)
    out = torch.empty(n, C)
    torch.testing.assert_close(x_wt(X, W, bias=b), x_wt(X, W, bias=b, out=out),
                               rtol=1e-4, atol=1e-3)
    return (median_ms(lambda: x_wt(X, W, bias=b), repeats),
            median_ms(lambda: x_wt(X, W, bias=b, out=out), repeats))


def table(title: str, header: str, shapes, row) -> None:
    """Print ``title``, ``header`` and ``row(n, C, m)`` for every shape."""
    print(title)
    print(header)
    for n, C, m in shapes:
        print(row(n, C, m))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--outputs", action="store_true",
                    help="time the step product's output routes instead (module docstring)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    k = args.repeats

    def residual_row(n, C, m):
        a, ca, b, cb = measure(n, C, m, k, g)
        return (f"{n:>6} {C:>5} {m:>4} | {a:>12.2f} {ca:>7.2f} | {b:>12.2f} {cb:>7.2f} | "
                f"{a / b:>5.2f}")

    def output_row(n, C, m):
        a, b = measure_output(n, C, m, k, g)
        return (f"{n:>6} {C:>5} {m:>4} {4 * n * C / 2**20:>5.0f} | {a:>9.2f} | {b:>9.2f} | "
                f"{b / a:>5.2f}")

    if args.outputs:
        table(f"X W^T + b -> (n, C) float32, {args.threads} thread(s), median of {k}; reused "
              f"buffer from {FRESH_MAP_BYTES / 2**20:.0f} MiB",
              f"{'n':>6} {'C':>5} {'m':>4} {'MiB':>5} | {'fresh ms':>9} | {'buffer ms':>9} | "
              f"{'ratio':>5}", OUTPUT_SHAPES, output_row)
    else:
        table(f"R^T X, float64 R -> float32, {args.threads} thread(s), median of {k}; "
              f"row-major route from C >= {WIDE_CLASSES}",
              f"{'n':>6} {'C':>5} {'m':>4} | {'transpose ms':>12} {'(copy)':>7} | "
              f"{'row-major ms':>12} {'(copy)':>7} | {'ratio':>5}", SHAPES, residual_row)


if __name__ == "__main__":
    main()
