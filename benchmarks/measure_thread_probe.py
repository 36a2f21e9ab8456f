"""Measure: where a second thread pays for the fit's products, and what the probe costs.

For each shape ``n × m × C`` the thread probe (``sparse_probe.solvers.threads._probe``) times
the fit's kind of work with one thread and with two, and the ratio of their means is printed
(below 1: two threads faster) beside ``n·m·C``, the multiply-adds of one ``X W^T`` product
(``threads.SMALL_WORK`` is the bound under which a fit skips the probe and runs on one
thread). Then, for one small two-class path, the probe's own seconds against the fit's on one
thread. Run it on a quiet machine.

    python benchmarks/measure_thread_probe.py [--repeats 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SHAPES = [(2000, 100, 2), (10000, 256, 2), (5000, 128, 10), (3000, 300, 20),
          (10000, 256, 5), (20000, 512, 2), (10000, 256, 10)]


def main(argv=None) -> None:
    from sparse_probe import fit_path
    from sparse_probe.solvers import threads as th

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args(argv)
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
