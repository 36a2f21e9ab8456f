"""Measure: ``RestrictedData.logits64``'s float64 product on column-major columns, by its two forms.

The exact logits ``z = b + X_cols W_colsᵀ`` (n, C) float64 are recomputed every few dozen
OWL-QN iterations and at each solver's end; where the weights use few of the working set's
columns, those k columns come from the kept column-major copy ``Xᵀ`` (a (k, n) gather, widened
to float64), a column-major (n, k) view. Two forms of the product: "sum", the product of its
rows ``W (Xᵀ)_cols`` (C, n) added transposed into z, and "in place", ``z.addmm_(view, Wᵀ)``
on the transposed view. Prints milliseconds of each (the fastest of ``--repeats``, the
logits' allocation and the gather included, as in the library) and sum/in-place per shape
``n × m × C`` with k used columns, and the library's choice
(``restricted.TRANSPOSED_SUM_CLASSES``).

``--widen``: two (n, C) passes of the path's per-point bookkeeping instead, at the bench's
many-class shapes: the warm start's ``z += dz`` (float64 logits, float32 step) by torch's
mixed-dtype ``add_`` and by ``restricted.add_widened`` (row blocks widened into a reused
buffer), and each row's largest entry by ``argmax(1)`` and by ``restricted.row_argmax``
(``max(1)``), each pair checked equal.

    python benchmarks/measure_logits64.py [--repeats 7] [--threads 1] [--widen]
"""

from __future__ import annotations

import argparse
import time

import torch

from sparse_probe.solvers.restricted import TRANSPOSED_SUM_CLASSES, add_widened, row_argmax

# (n, m, C, k): the bench geometries' shapes and held-out-like ones around C = k
SHAPES = [(20000, 32, 1000, 12), (10000, 64, 100, 20), (3000, 52, 70, 20), (10000, 64, 40, 64),
          (10000, 128, 40, 64), (10000, 64, 20, 20), (10000, 256, 20, 40), (5000, 300, 30, 100),
          (10000, 256, 10, 100), (500, 5000, 10, 1500)]


def fastest_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1e3 * best


def widen(repeats: int) -> None:
    """The ``--widen`` table."""
    g = torch.Generator().manual_seed(1)
    print(f"threads {torch.get_num_threads()}; fastest of {repeats} (ms)")
    print(f"{'n x C':>14} {'add_':>8} {'widened':>8} {'ratio':>6} {'argmax':>8} {'max':>8} "
          f"{'ratio':>6}")
    for n, C in [(20000, 1000), (10000, 100), (10000, 10)]:
        z = torch.randn(n, C, generator=g, dtype=torch.float64)
        d = torch.randn(n, C, generator=g)
        assert torch.equal(z.clone().add_(d), add_widened(z.clone(), d))
        assert torch.equal(z.argmax(1), row_argmax(z))
        a = fastest_ms(lambda z=z, d=d: z.add_(d), repeats)
        w = fastest_ms(lambda z=z, d=d: add_widened(z, d), repeats)
        m1 = fastest_ms(lambda z=z: z.argmax(1), repeats)
        m2 = fastest_ms(lambda z=z: row_argmax(z), repeats)
        print(f"{f'{n} x {C}':>14} {a:>8.2f} {w:>8.2f} {a / w:>6.2f} {m1:>8.2f} {m2:>8.2f} "
              f"{m1 / m2:>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--widen", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.widen:
        widen(args.repeats)
        return
    g = torch.Generator().manual_seed(0)
    print(f"threads {torch.get_num_threads()}; fastest of {args.repeats} (ms); library: the sum "
          f"where k > {TRANSPOSED_SUM_CLASSES} C")
    print(f"{'n x m x C':>18} {'k':>5} {'sum':>9} {'in place':>9} {'sum/in place':>13} "
          f"{'library':>9}")
    for n, m, C, k in SHAPES:
        XT = torch.randn(m, n, generator=g)  # the kept column-major copy
        cols = torch.randperm(m, generator=g)[:k].sort().values
        W = torch.randn(C, k, generator=g, dtype=torch.float64)
        b = torch.randn(C, generator=g, dtype=torch.float64)

        def summed(n=n, XT=XT, cols=cols, W=W, b=b):
            z = b.expand(n, -1).clone()
            xb = XT[cols].to(torch.float64).T
            z += (W @ xb.T).T
            return z

        def in_place(n=n, XT=XT, cols=cols, W=W, b=b):
            z = b.expand(n, -1).clone()
            xb = XT[cols].to(torch.float64).T
            z.addmm_(xb, W.T)
            return z

        assert torch.allclose(summed(), in_place(), rtol=1e-12, atol=1e-12)
        a, c = fastest_ms(summed, args.repeats), fastest_ms(in_place, args.repeats)
        lib = "sum" if k > TRANSPOSED_SUM_CLASSES * C else "in place"
        print(f"{f'{n} x {m} x {C}':>18} {k:>5} {a:>9.2f} {c:>9.2f} {a / c:>13.2f} {lib:>9}")


if __name__ == "__main__":
    main()
