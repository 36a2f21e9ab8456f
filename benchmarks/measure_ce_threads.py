"""Measure: the cross-entropy kernel's threads inside a fit (``fused_ce.MIN_ENTRIES_PER_THREAD``,
``fused_ce.OPENMP_MIN_ENTRIES_PER_THREAD``).

``fused_ce.ce_rows`` splits its rows over torch's thread count once each thread gets at least
that many entries of the (n, C) logits: on the kernel's OpenMP team (``--route openmp``, the
default where it was built with OpenMP: torch's own team) or on Python threads (``--route
pool``, a build without OpenMP; the rest of this paragraph is that route's story). Timed alone
(``measure_softmax_ce.py --threads 2``) two threads gain wherever the array is large; inside a
fit the kernel runs right after torch's multi-threaded products, whose OpenMP workers keep
spinning on the other cores for a while after each product (libgomp's default wait policy),
and the kernel's own second thread shares a core with one of them. So this script times whole
default fits: each case's path with every ``--per-thread`` value (entries per thread; a value
above ``n C`` keeps one thread), interleaved, ``--repeats`` rounds, and prints per value the
fastest fit, the kernel's seconds within it (all its calls) and its calls.

Cases as ``compare_revisions.py``: a ``bench_path.py`` geometry by name or
``KIND:n:d:C:SEED[:NLAM[:EPS]]``.

    python benchmarks/measure_ce_threads.py --cases classes100,current:40000:64:100:7:12 \\
        [--per-thread 131072,2097152,1099511627776] [--repeats 2] [--route openmp|pool]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

FC = importlib.import_module("sparse_probe.solvers.fused_ce")


def timed_calls(real, spent: list):
    """``real`` wrapped: each call's seconds added to ``spent[0]``, the calls counted in
    ``spent[1]``."""

    def counted(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t
            spent[1] += 1

    return counted


def timed_fit(case, per_thread: int, route: str = "openmp") -> tuple[float, float, int]:
    """(fit seconds, seconds in ce_rows, ce_rows calls) of one default fit of ``case``, the
    kernel's blocks on ``route`` (``"openmp"``: its OpenMP team; ``"pool"``: Python threads,
    as in a build without OpenMP) with ``per_thread`` as that route's threshold."""
    import bench_path as bp

    from sparse_probe.fit import fit_path

    kind, n, d, C, seed, nl, eps = case
    X, y = bp.make_geometry(kind, n, d, C, seed)
    lams = bp.lambda_grid(X, y, C, nl, eps)
    name = "OPENMP_MIN_ENTRIES_PER_THREAD" if route == "openmp" else "MIN_ENTRIES_PER_THREAD"
    real, old, forked = FC.ce_rows, getattr(FC, name), FC._FORKED
    spent = [0.0, 0]
    FC.ce_rows, FC._FORKED = timed_calls(real, spent), [route == "pool"]
    setattr(FC, name, per_thread)
    try:
        t = time.perf_counter()
        fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
        return time.perf_counter() - t, spent[0], spent[1]
    finally:
        FC.ce_rows, FC._FORKED = real, forked
        setattr(FC, name, old)


def main(argv: list[str] | None = None) -> None:
    import compare_revisions as cr
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="classes100,classes1000")
    ap.add_argument("--per-thread", default=f"{1 << 17},{1 << 21},{1 << 40}")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--route", choices=["openmp", "pool"], default="openmp",
                    help="the kernel's OpenMP blocks (where built with OpenMP) or Python threads")
    args = ap.parse_args(argv)
    values = [int(v) for v in args.per_thread.split(",")]
    kernel = FC._kernel()
    if args.route == "openmp" and (kernel is None or not FC._openmp(kernel)):
        ap.error("--route openmp: the kernel is not built with OpenMP here")
    print(f"torch threads {torch.get_num_threads()}, route {args.route}, library "
          f"MIN_ENTRIES_PER_THREAD = {FC.MIN_ENTRIES_PER_THREAD}, OPENMP_MIN_ENTRIES_PER_THREAD"
          f" = {FC.OPENMP_MIN_ENTRIES_PER_THREAD}, best of {args.repeats}")
    print(f"{'case':>30} {'n C':>10} {'per thread':>14} {'threads':>7} {'fit s':>7} "
          f"{'ce_rows s':>9} {'calls':>6}")
    for name in args.cases.split(","):
        case = cr.parse_case(name)
        entries = case[1] * case[3]
        best = {v: (float("inf"), 0.0, 0) for v in values}
        for _ in range(args.repeats):
            for v in values:
                got = timed_fit(case, v, args.route)
                if got[0] < best[v][0]:
                    best[v] = got
        for v in values:
            k = min(torch.get_num_threads(), max(1, entries // v))
            fit_s, ce_s, calls = best[v]
            print(f"{name:>30} {entries:>10} {v:>14} {k:>7} {fit_s:>7.2f} {ce_s:>9.2f} {calls:>6}")


if __name__ == "__main__":
    main()
