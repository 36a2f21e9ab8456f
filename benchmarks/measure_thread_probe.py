"""Measure: where a second thread pays for the fit's products, and what the probe costs.

For each shape ``n × m × C`` the thread probe (``sparse_probe.solvers.threads._probe``) times
the fit's kind of work with one thread and with two, and the ratio of their means is printed
(below 1: two threads faster) beside ``n·m·C``, the multiply-adds of one ``X W^T`` product
(``threads.SMALL_WORK`` is the bound under which a fit skips the probe and runs on one
thread). Then, for one small two-class path, the probe's own seconds against the fit's on one
thread. Run it on a quiet machine.

    python benchmarks/measure_thread_probe.py [--repeats 6]

``--spread K`` instead runs the probe as a fit starts it (numpy's BLAS held to one thread,
the load's pause) with 8 interleaved rounds in K fresh processes per ``--shapes`` shape, and
prints the two-over-one ratio of the first 4 rounds (the fit's probe) and of all 8, and how
often the first 4 pick one thread (over :data:`~sparse_probe.solvers.threads.MARGIN`).
With ``--paths`` each shape's ``current``-geometry path (30 λ) is also fitted on one thread
and on two (fresh processes, interleaved, fastest of 2) and their ratio printed beside the
probe's: what the margin costs where the probe reads near it.

    python benchmarks/measure_thread_probe.py --spread 10 [--shapes 10000x256x10,500x5000x10]
        [--paths]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SHAPES = [(2000, 100, 2), (10000, 256, 2), (5000, 128, 10), (3000, 300, 20),
          (10000, 256, 5), (20000, 512, 2), (10000, 256, 10)]


SPREAD_SHAPES = "10000x256x10,500x5000x10,10000x64x100,20000x128x5,3000x1000x20,8000x512x4"

_CHILD = """
import json, sys
import torch
from sparse_probe.solvers import threads as th
n, m, C = map(int, sys.argv[1:4])
torch.set_num_threads(2)  # two against one, whatever OMP_NUM_THREADS says
with th.blas_limits(th.BLAS_THREADS):
    th.free_threads(2)
    t = th._probe(n, m, C, repeats=8)
print(json.dumps({"one": t[1], "two": t[2]}))
"""


_PATH_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[5])
import bench_path as bp
from sparse_probe import fit_path
n, m, C, k = map(int, sys.argv[1:5])
X, y = bp.make_geometry("current", n, m, C, 0)
lams = bp.lambda_grid(X, y, C, 30, 1e-2)
t = time.perf_counter()
fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, threads=k)
print(time.perf_counter() - t)
"""


def path_ratio(n: int, m: int, C: int, runs: int = 2) -> tuple[float, float]:
    """The ``current`` geometry's path (30 λ) at this shape on one thread and on two, each in
    a fresh process, interleaved, the fastest of ``runs``: ``(one, two)`` seconds."""
    import subprocess

    best = {1: float("inf"), 2: float("inf")}
    for _ in range(runs):
        for k in (1, 2):
            out = subprocess.run([sys.executable, "-c", _PATH_CHILD, str(n), str(m), str(C),
                                  str(k), os.path.dirname(os.path.abspath(__file__))],
                                 capture_output=True, text=True, check=True).stdout
            best[k] = min(best[k], float(out.strip().splitlines()[-1]))
    return best[1], best[2]


def _ratio(one: list[float], two: list[float]) -> float:
    return (sum(two) / len(two)) / (sum(one) / len(one))


def spread(shapes: list[tuple[int, int, int]], runs: int, paths: bool = False) -> None:
    """The probe's ratio over fresh processes per shape and how often the fit's probe (its
    first 4 rounds) picks one thread (module doc); with ``paths``, each shape's path on two
    threads over one (:func:`path_ratio`)."""
    import json
    import subprocess

    from sparse_probe.solvers import threads as th

    print(f"two threads over one, {runs} fresh processes per shape; MARGIN {th.MARGIN}")
    print(f"{'n x m x C':>16} | {'4 rounds: ratios':>36} | {'8 rounds':>36} | one thread"
          + (" | path 2/1 (1, 2 threads s)" if paths else ""))
    for n, m, C in shapes:
        r4, r8, ones = [], [], 0
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(m), str(C)],
                                 capture_output=True, text=True, check=True).stdout
            t = json.loads(out.strip().splitlines()[-1])
            k = min(4, len(t["one"]))
            first = _ratio(t["one"][:k], t["two"][:k])
            r4.append(first)
            r8.append(_ratio(t["one"], t["two"]))
            ones += th.pick_threads({1: t["one"][:k], 2: t["two"][:k]}) == 1
        line = (f"{f'{n}x{m}x{C}':>16} | {_span(r4):>36} | {_span(r8):>36} | "
                f"{ones:>4}/{runs}")
        if paths:
            one, two = path_ratio(n, m, C)
            line += f" | {two / one:.2f} ({one:.2f}, {two:.2f})"
        print(line, flush=True)


def _span(r: list[float]) -> str:
    return f"median {np.median(r):.2f}, {min(r):.2f}-{max(r):.2f}"


def main(argv=None) -> None:
    from sparse_probe import fit_path
    from sparse_probe.solvers import threads as th

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--spread", type=int, default=0,
                    help="fresh processes per shape for the probe's spread (module doc)")
    ap.add_argument("--shapes", default=SPREAD_SHAPES, help="with --spread: NxMxC,...")
    ap.add_argument("--paths", action="store_true",
                    help="with --spread: each shape's path on one thread and on two")
    args = ap.parse_args(argv)
    if args.spread:
        try:
            shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        except ValueError:
            raise SystemExit(f"--shapes: expected NxMxC[,NxMxC...], got {args.shapes!r}") from None
        if any(len(s) != 3 for s in shapes):
            raise SystemExit(f"--shapes: expected NxMxC[,NxMxC...], got {args.shapes!r}")
        spread(shapes, args.spread, args.paths)
        return
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        print(f"two threads against one (probe means, up to {args.repeats} rounds); "
              f"SMALL_WORK = {th.SMALL_WORK:,}")
        print(f"{'n':>6} {'m':>4} {'C':>4} | {'n·m·C':>11} | {'1 thread ms':>11} | {'2/1':>5}")
        for n, m, C in SHAPES:
            t = th._probe(n, m, C, repeats=args.repeats)
            one = sum(t[1]) / len(t[1])
            print(f"{n:>6} {m:>4} {C:>4} | {n * m * C:>11,} | {1e3 * one:>11.2f} | "
                  f"{(sum(t[2]) / len(t[2])) / one:>5.2f}")
        import bench_path as bp

        X, y = bp.make_geometry("binary", 10000, 256, 2, 0)
        lams = bp.lambda_grid(X, y, 2, 30, 1e-2)
        fit_path(X[:500], y[:500], alpha=bp.ALPHA, n_lambdas=3, progress=False, threads=1)
        t0 = time.perf_counter()
        th._probe(*X.shape, 2)
        probe = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, threads=1)
        fit = time.perf_counter() - t0
        print(f"two-class 10000 x 256 path, 30 λ: fit on one thread {fit:.3f} s, "
              f"the probe {probe:.3f} s ({probe / fit:.0%} of the fit)")
    finally:
        torch.set_num_threads(old)


if __name__ == "__main__":
    main()
