"""Measure: the Hessian rows of weights that join a carried Newton model (``hessian_cross``).

Runs the default path of each case once with :func:`sparse_probe.solvers.newton.hessian_cross`
recorded (its arguments, as the solver called it), then times every recorded call again,
side by side in this process, best of ``--repeats`` over the path's calls:

- ``per class``: the route before 42aff03, kept here as the reference: for each class, four
  elementwise passes over the ``(k, rows)`` block of new rows and one product against that
  class's columns (gathered) or against all ``m`` columns (then picked);
- ``library``: ``hessian_cross`` as it is (all classes' scaled rows stacked into one
  ``(C k, rows) @ (rows, m)`` product where the columns are not gathered, one elementwise
  pass per class where they are), with ``GATHER_COPY`` at the library's value and at each
  ``--gather`` value (0: always gather; ``inf``: never).

Prints the seconds of each route over the path's calls, how many calls gathered, and the
largest difference of each route's rows from the per-class route's (relative to the largest
entry: float32 products of other shapes round differently). Cases as
``compare_revisions.py``: a ``bench_path.py`` geometry by name or ``KIND:n:d:C:SEED[:NLAM[:EPS]]``.

    python benchmarks/measure_cross_rows.py --cases collinear,lowrank-relu,wide [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

NW = importlib.import_module("sparse_probe.solvers.newton")  # the module, not the function


def per_class_rows(Xw, P, cls_n, col_n, cls_a, col_a, XwT=None, gather_copy=16.0):
    """``hessian_cross`` as it was before 42aff03 (the reference route, same entries)."""
    n, C = P.shape
    k, Na = cls_n.numel(), cls_a.numel()
    m = Xw.shape[1]
    ba = np.concatenate([[0], np.cumsum(torch.bincount(cls_a, minlength=C).tolist())]).astype(int)
    PT = P.T.contiguous()
    Hna = torch.zeros((k, Na), dtype=torch.float64)
    Hnb = torch.zeros((k, C), dtype=torch.float64)
    gather = k * (m * C - Na) >= gather_copy * Na
    step = max(256, (1 << 23) // max(k + (Na if gather else m), 1))
    own = (cls_n[:, None] == torch.arange(C)[None, :])
    for s in range(0, n, step):
        e = min(n, s + step)
        UTn = XwT[col_n, s:e] if XwT is not None else Xw[s:e][:, col_n].T.contiguous()
        VTn = UTn * PT[cls_n, s:e]
        Hnb -= (VTn @ PT[:, s:e].T).to(torch.float64)
        Hnb[torch.arange(k), cls_n] += VTn.sum(1, dtype=torch.float64)
        if gather:
            UA = XwT[col_a, s:e] if XwT is not None else Xw[s:e][:, col_a].T.contiguous()
        for c in range(C):
            a, b = ba[c], ba[c + 1]
            if a == b:
                continue
            pc = PT[c, s:e]
            M = torch.where(own[:, c:c + 1], UTn * (pc * (1.0 - pc)), -VTn * pc)
            if gather:
                Hna[:, a:b] += (M @ UA[a:b].T).to(torch.float64)
            else:
                Hna[:, a:b] += (M @ Xw[s:e]).index_select(1, col_a[a:b]).to(torch.float64)
    return (Hna / n).numpy(), (Hnb / n).numpy()


def record(case) -> list[tuple]:
    """The ``hessian_cross`` calls of the case's default path, their tensors copied."""
    import bench_path as bp

    from sparse_probe.fit import fit_path

    kind, n, d, C, seed, nl, eps = case
    X, y = bp.make_geometry(kind, n, d, C, seed)
    lams = bp.lambda_grid(X, y, C, nl, eps)
    calls: list[tuple] = []
    real = NW.hessian_cross

    def spy(*args):
        calls.append(tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        return real(*args)

    NW.hessian_cross = spy
    try:
        fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
    finally:
        NW.hessian_cross = real
    return calls


def best_seconds(fn, calls, repeats: int) -> float:
    """Fastest total seconds of ``fn`` over all ``calls`` (after one untimed round)."""
    for c in calls:
        fn(*c)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for c in calls:
            fn(*c)
        best = min(best, time.perf_counter() - t)
    return best


def gathered(calls, gather_copy: float) -> int:
    return sum(int(c[2].numel() * (c[0].shape[1] * c[1].shape[1] - c[4].numel())
                   >= gather_copy * c[4].numel()) for c in calls)


def main(argv: list[str] | None = None) -> None:
    import compare_revisions as cr

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="collinear,lowrank-relu,wide")
    ap.add_argument("--gather", default="0,64,inf", help="GATHER_COPY values besides the library's")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lib = NW.GATHER_COPY
    values = [lib] + [float(v) for v in args.gather.split(",") if v and float(v) != lib]
    print(f"threads {torch.get_num_threads()}, best of {args.repeats}; library GATHER_COPY = {lib:g}")
    print(f"{'case':>34} {'calls':>5} {'route':>22} {'GATHER_COPY':>11} {'gathered':>8} "
          f"{'seconds':>8} {'ref/this':>8} {'max diff':>9}")
    for name in args.cases.split(","):
        calls = record(cr.parse_case(name))
        if not calls:
            print(f"{name:>34} {0:>5}   (no joining weights: nothing to time)")
            continue
        ref_rows = [per_class_rows(*c) for c in calls]
        scale = max(float(np.abs(a).max()) for a, _ in ref_rows) or 1.0
        ref = best_seconds(per_class_rows, calls, args.repeats)
        print(f"{name:>34} {len(calls):>5} {'per class (reference)':>22} {16.0:>11g} "
              f"{gathered(calls, 16.0):>8} {ref:>8.3f} {1.0:>8.2f} {0.0:>9.1e}")
        try:
            for v in values:
                NW.GATHER_COPY = v
                diff = max(float(np.abs(NW.hessian_cross(*c)[0] - r[0]).max())
                           for c, r in zip(calls, ref_rows, strict=True)) / scale
                sec = best_seconds(NW.hessian_cross, calls, args.repeats)
                label = "library" + (" (default)" if v == lib else "")
                print(f"{'':>34} {'':>5} {label:>22} {v:>11g} {gathered(calls, v):>8} "
                      f"{sec:>8.3f} {ref / sec:>8.2f} {diff:>9.1e}")
        finally:
            NW.GATHER_COPY = lib


if __name__ == "__main__":
    main()
