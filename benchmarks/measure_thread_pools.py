"""Measure: torch's thread count against numpy's BLAS thread count in one fit, side by side.

A CPU fit runs two thread pools: torch's OpenMP team (the products, the softmax residual,
the Newton solver's Hessians and factorizations) and numpy's BLAS (OpenBLAS in the wheels:
the Newton model's matrix-vector products and the biases' Schur complements).
``sparse_probe.solvers.threads.fit_threads`` sets torch's count (the probe's choice) and
holds the BLAS to :data:`~sparse_probe.solvers.threads.BLAS_THREADS`. This script fits each
case with every ``TORCHxBLAS`` configuration of ``--configs`` (torch's count forced, the
BLAS's set through ``BLAS_THREADS``), interleaved, ``--repeats`` rounds in one process after
a short warm-up fit, and prints the fastest and slowest wall seconds of each, their ratio to the first
configuration's, the solvers per point (``o`` OWL-QN, ``n`` Newton, ``+`` Newton handed over
to OWL-QN) and the largest relative difference between the configurations' objectives.
Run it on a quiet machine.

Cases as ``compare_revisions.py``: ``bench_path.py``'s geometries by name (30 λ) or
``KIND:n:d:C:SEED[:NLAM[:EPS]]`` (20 λ by default).

    python benchmarks/measure_thread_pools.py --cases collinear,wide,collinear:2528:363:10:934559 \\
        [--configs 1x1,2x2,2x1,1x2] [--solver newton] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def parse_configs(spec: str) -> list[tuple[int, int]]:
    """``"1x1,2x1"`` -> ``[(1, 1), (2, 1)]`` (torch threads, BLAS threads)."""
    out = []
    for part in spec.split(","):
        try:
            t, b = (int(v) for v in part.lower().split("x"))
            if t < 1 or b < 1:
                raise ValueError
        except ValueError:
            raise SystemExit(f"--configs: expected TORCHxBLAS thread counts such as 2x1, "
                             f"got {part!r}") from None
        if (t, b) in out:
            raise SystemExit(f"--configs: {part!r} is given twice")
        out.append((t, b))
    return out


def main(argv=None) -> int:
    import bench_path as bp
    from compare_revisions import LETTER, parse_case

    from sparse_probe import fit_path
    from sparse_probe.solvers import threads as th

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="comma-separated (module docstring)")
    ap.add_argument("--configs", default="1x1,2x2,2x1,1x2",
                    help="TORCHxBLAS thread counts, comma-separated; ratios are to the first")
    ap.add_argument("--solver", default=None, choices=["newton", "owlqn"],
                    help="force one solver (default: the automatic choice per point)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    cases = [parse_case(s) for s in args.cases.split(",") if s]
    configs = parse_configs(args.configs)
    names = [f"{t}x{b}" for t, b in configs]
    kept = th.BLAS_THREADS
    kw = {} if args.solver is None else {"solver": args.solver}
    print(f"# solver: {args.solver or 'automatic'}; configurations torch x BLAS threads: "
          f"{', '.join(names)}; {args.repeats} interleaved rounds; load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    head = f"{'case':>28} " + " ".join(f"{n + ' s':>12} {'/' + names[0]:>6}" for n in names)
    rows = []
    try:
        for case in cases:
            kind, n, d, C, seed, nl, eps = case
            X, y = bp.make_geometry(kind, n, d, C, seed)
            lams = bp.lambda_grid(X, y, C, nl, eps)
            fit_path(X, y, alpha=bp.ALPHA, lambdas=lams[:3], progress=False, threads=1, **kw)
            walls: dict[str, list[float]] = {k: [] for k in names}  # after a warm-up fit
            objs, letters = {}, {}
            for _ in range(args.repeats):
                for name, (t, b) in zip(names, configs, strict=True):
                    th.BLAS_THREADS = b
                    t0 = time.perf_counter()
                    p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, threads=t,
                                 **kw)
                    walls[name].append(time.perf_counter() - t0)
                    objs[name] = np.asarray(p.objective, dtype=np.float64)
                    letters[name] = "".join(LETTER.get(m, "?")
                                            for m in p.info["method_per_point"])
            ref = objs[names[0]]
            gap = max(float(np.max(np.abs(o - ref) / np.maximum(np.abs(ref), 1e-300)))
                      for o in objs.values())
            label = f"{kind}:{n}x{d}x{C}" + (f":{seed}" if seed else "")
            base = min(walls[names[0]])
            cells = " ".join(f"{min(w):6.2f}/{max(w):5.2f} {min(w) / base:6.2f}"
                             for w in walls.values())
            rows.append(f"{label:>28} {cells}")
            print(f"[{label}] objectives agree to {gap:.1e}; solvers per point: "
                  + "; ".join(f"{k} {v}" for k, v in letters.items()), flush=True)
    finally:
        th.BLAS_THREADS = kept
    print("\nfastest/slowest wall seconds of each configuration, and the fastest against "
          f"{names[0]}'s (below 1: faster)")
    print(head)
    print("\n".join(rows))
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
