"""Measure: a path fit with its large temporaries from the heap against glibc's default.

``fit_path`` runs an in-memory CPU fit inside :func:`sparse_probe.allocator.heap_temporaries`
(no mmap of large blocks, freed memory kept until the fit ends). Here each case is fitted in
fresh child processes, with the block ("heap") and with it replaced by a no-op ("mapped":
glibc as the fit found it), interleaved, and per side the fastest wall time, its user and
system CPU seconds, its minor page faults and the child's peak RSS are printed, with the
iterations (the same on both sides: the allocator changes no arithmetic).

    python benchmarks/measure_heap.py [--cases classes1000,classes100,collinear] [--repeats 2]

Cases as ``compare_revisions.py``: a ``bench_path.py`` geometry or ``KIND:n:d:C:SEED[:NLAM[:EPS]]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHILD = r"""
import contextlib, json, resource, sys, time
sys.path.insert(0, {here!r})
import bench_path as bp, compare_revisions as cr
import sparse_probe.fit as fm
if {side!r} == "mapped":
    fm.heap_temporaries = lambda: contextlib.nullcontext(False)
kind, n, d, C, seed, nl, eps = cr.parse_case({case!r})
X, y = bp.make_geometry(kind, n, d, C, seed)
lams = bp.lambda_grid(X, y, C, nl, eps)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
p = fm.fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
wall = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(wall=wall, user=r1.ru_utime - r0.ru_utime, sys=r1.ru_stime - r0.ru_stime,
                      faults=r1.ru_minflt - r0.ru_minflt, rss=r1.ru_maxrss * 1024,
                      iters=int(p.n_iter.sum()))))
"""


def run(case: str, side: str) -> dict:
    got = subprocess.run([sys.executable, "-c", CHILD.format(here=HERE, side=side, case=case)],
                         capture_output=True, text=True)
    if got.returncode:
        raise SystemExit(f"{case} ({side}): {(got.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="classes1000,classes100,collinear,current")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"fastest of {args.repeats} per side, interleaved, fresh processes; "
          "faults = minor page faults of the fit; RSS = the child's peak")
    print(f"{'case':>14} {'side':>7} {'wall s':>7} {'user':>6} {'sys':>6} {'faults':>9} "
          f"{'peak RSS':>9} {'iters':>6} {'mapped/heap':>11}")
    for case in args.cases.split(","):
        got: dict[str, list[dict]] = {"heap": [], "mapped": []}
        for _ in range(args.repeats):
            for side in got:
                got[side].append(run(case, side))
        best = {side: min(rs, key=lambda r: r["wall"]) for side, rs in got.items()}
        for side, r in best.items():
            ratio = best["mapped"]["wall"] / r["wall"] if side == "heap" else float("nan")
            print(f"{case:>14} {side:>7} {r['wall']:7.2f} {r['user']:6.2f} {r['sys']:6.2f} "
                  f"{r['faults']:9d} {r['rss'] / 2**30:7.2f}Gi {r['iters']:6d} "
                  + ("" if ratio != ratio else f"{ratio:11.2f}"))
        walls = {side: ", ".join(f"{r['wall']:.2f}" for r in rs) for side, rs in got.items()}
        print(f"{'':>14} runs: heap {walls['heap']}; mapped {walls['mapped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
