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

``--routes``: ``R^T X`` under ``products.WIDE_CLASSES`` classes from the (C, n) float32
transpose of R, by oneDNN's op on the column-major copy ``X^T`` (the fit keeps one) and as one
BLAS call ``(C, n) @ (n, m)`` on row-major ``X``, at sizes of ``X`` on both sides of
``products.SINGLE_CALL_BYTES`` (the transpose made once, outside the timing), with each
route's largest error against the float64 product (units of 2⁻²⁴ times the entry's
``Σ |r x|``) and the route the library takes here (the single call only where its check,
``products.single_call_pays``, passes on this machine).

``--steps``: the step product ``X W^T + b`` (n, C) at the working-set sizes of the paths, by
oneDNN's op and as one BLAS call (``torch.addmm``), each steady (median) and on its first call
at a shape not seen before (oneDNN generates its kernels for each new shape; a path's working
set changes size at most points, and each fit runs in a fresh process in the benchmarks).

    python benchmarks/measure_products.py [--repeats 15] [--threads 1] [--outputs | --routes |
        --steps]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparse_probe.solvers.products import (
    FRESH_MAP_BYTES,
    SINGLE_CALL_BYTES,
    WIDE_CLASSES,
    _linear,
    onednn_enabled,
    rt_x,
    single_call_pays,
    x_wt,
)

SHAPES = [(4000, 1000, 32), (20000, 1000, 32), (10000, 100, 64), (10000, 64, 256),
          (10000, 32, 256), (10000, 16, 256), (10000, 10, 256), (20000, 10, 512)]


# (n, C, m) of the step product: outputs of 76, 38, 31 (three shapes) and 4 MiB
OUTPUT_SHAPES = [(20000, 1000, 32), (200000, 100, 64), (100000, 100, 64), (80000, 100, 128),
                 (40000, 200, 64), (20000, 400, 256), (10000, 100, 64)]


# (n, C, m) of R^T X for --routes: X from 1 to 195 MiB
ROUTE_SHAPES = [(10000, 2, 30), (2000, 10, 256), (2920, 10, 78), (10000, 2, 256),
                (10000, 10, 256), (20000, 10, 64), (20000, 10, 256), (20000, 10, 384), (20000, 10, 512),
                (50000, 10, 256), (20000, 10, 1024), (100000, 10, 256), (20000, 10, 2048),
                (100000, 10, 512)]


# (n, C, m) of the step product for --steps: the bench paths' working sets (X 0.1-39 MiB)
STEP_SHAPES = [(10000, 2, 16), (10000, 2, 64), (10000, 2, 256), (10000, 10, 32),
               (10000, 10, 128), (10000, 10, 256), (500, 10, 300), (500, 10, 2000),
               (3000, 12, 1000), (10000, 100, 64), (20000, 10, 512)]


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


def measure_routes(n: int, C: int, m: int, repeats: int, g: torch.Generator) -> tuple[float, ...]:
    """(oneDNN on X^T ms, one BLAS call on X ms, oneDNN's error, the call's error) of ``R^T X``
    at one shape; the errors against the float64 product, largest over the entries, in units
    of 2⁻²⁴ times the largest ``Σ_i |r_i x_i|`` (a single running float32 sum errs the most)."""
    X = torch.randn(n, m, generator=g)
    XT = X.T.contiguous()
    Rt = torch.randn(C, n, generator=g)
    ref = Rt.double() @ X.double()
    unit = 2.0**-24 * float((Rt.double().abs() @ X.double().abs()).max())

    def err(G):
        return float((G.double() - ref).abs().max()) / unit

    return (median_ms(lambda: _linear(Rt, XT), repeats), median_ms(lambda: Rt @ X, repeats),
            err(_linear(Rt, XT)), err(Rt @ X))


def measure_steps(n: int, C: int, m: int, repeats: int, g: torch.Generator,
                  fresh: int) -> tuple[float, ...]:
    """(oneDNN ms, BLAS ms, oneDNN first-call ms, BLAS first-call ms) of ``X W^T + b`` at one
    shape; the first calls at widths ``m + fresh`` and ``m + fresh + 1`` (never timed
    before in this process)."""
    X = torch.randn(n, m + fresh + 2, generator=g)
    W = torch.randn(C, m + fresh + 2, generator=g)
    b = torch.randn(C, generator=g)

    def first(fn, k):
        Xk, Wk = X[:, : m + k].contiguous(), W[:, : m + k].contiguous()
        t = time.perf_counter()
        fn(Xk, Wk)
        return 1e3 * (time.perf_counter() - t)

    def onednn(Xk, Wk):
        return _linear(Xk, Wk, b)

    def blas(Xk, Wk):
        return torch.addmm(b, Xk, Wk.T)

    Xm, Wm = X[:, :m].contiguous(), W[:, :m].contiguous()
    torch.testing.assert_close(onednn(Xm, Wm), blas(Xm, Wm), rtol=1e-4, atol=1e-3)
    return (median_ms(lambda: onednn(Xm, Wm), repeats), median_ms(lambda: blas(Xm, Wm), repeats),
            first(onednn, fresh), first(blas, fresh + 1))


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
    ap.add_argument("--routes", action="store_true",
                    help="time R^T X by oneDNN against one BLAS call (module docstring)")
    ap.add_argument("--steps", action="store_true",
                    help="time X W^T + b by oneDNN against one BLAS call (module docstring)")
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

    def route_row(n, C, m):
        a, b, ea, eb = measure_routes(n, C, m, k, g)
        mib = 4 * n * m / 2**20
        side = "single" if 4 * n * m <= SINGLE_CALL_BYTES and single_call_pays() else "oneDNN"
        return (f"{n:>6} {C:>5} {m:>4} {mib:>6.1f} | {a:>9.3f} | {b:>9.3f} | {b / a:>5.2f} "
                f"{side:<6} | {ea:>7.1f} {eb:>7.1f}")

    fresh = iter(range(1, 1000, 3))

    def step_row(n, C, m):
        a, b, fa, fb = measure_steps(n, C, m, k, g, next(fresh))
        return (f"{n:>6} {C:>5} {m:>5} {4 * n * m / 2**20:>6.1f} | {a:>9.3f} | {b:>9.3f} | "
                f"{b / a:>5.2f} | {fa:>9.3f} | {fb:>9.3f}")

    if args.steps:
        if not onednn_enabled():
            raise SystemExit("--steps: this torch build has no usable oneDNN linear op")
        table(f"X W^T + b, float32, {args.threads} thread(s), median of {k}; first calls at "
              f"new widths", f"{'n':>6} {'C':>5} {'m':>5} {'X MiB':>6} | {'oneDNN ms':>9} | "
              f"{'BLAS ms':>9} | {'ratio':>5} | {'1st oneDNN':>9} | {'1st BLAS':>9}",
              STEP_SHAPES, step_row)
    elif args.routes:
        if not onednn_enabled():
            raise SystemExit("--routes: this torch build has no usable oneDNN linear op")
        table(f"R^T X, (C, n) float32 R^T, {args.threads} thread(s), median of {k}; one BLAS "
              f"call up to X of {SINGLE_CALL_BYTES / 2**20:.0f} MiB (products.SINGLE_CALL_BYTES) "
              f"where its check passes on this machine (products.single_call_pays(): "
              f"{single_call_pays()}); errors in units of 2^-24 max sum|r x|",
              f"{'n':>6} {'C':>5} {'m':>4} {'X MiB':>6} | {'oneDNN ms':>9} | {'single ms':>9} | "
              f"{'ratio':>5} route  | {'err 1DNN':>7} {'single':>7}", ROUTE_SHAPES, route_row)
    elif args.outputs:
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
