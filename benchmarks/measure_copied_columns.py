"""Measure: the equal split of copied columns' weights (``sparse_probe/copies.py``), side by side.

Each case is a held-out ``copied-columns`` draw of ``sweep_heldout.py`` (a ``bench_path.py``
geometry with copies of its first fifth of columns and a zero column appended; ``d`` below is
before the copies), fitted with the defaults twice per round: as the library does (copies
found, their weights evened after every solve) and with the copies not looked for
(``fit.copy_groups`` returning none), interleaved, ``--repeats`` rounds after a warm-up fit;
each one's fastest wall seconds, its solver iterations, the solvers per point, its largest KKT
violation over the tolerance (≤ 1: verified), and the largest relative objective difference
``(split − not) / |not|`` over the path (below 0: the split's objective lower).

    python benchmarks/measure_copied_columns.py [--repeats 2] [--cases all|NAME,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: name -> (kind, n, d before the copies, C, seed, eps): sweep_heldout draws (seeds 4343, 4141)
CASES = {
    "wide-929x4556x20": ("current", 929, 4556, 20, 292494, 1e-2),
    "wide-985x5110x10": ("current", 985, 5110, 10, 258105, 1e-2),
    "wide-705x3900x5": ("current", 705, 3900, 5, 359285, 1e-3),
    "wide-335x3802x3": ("current", 335, 3802, 3, 669112, 1e-2),
    "1728x155x20": ("current", 1728, 155, 20, 854086, 1e-2),
    "766x391x70": ("current", 766, 391, 70, 838336, 1e-2),
    "1656x314x10": ("current", 1656, 314, 10, 545022, 1e-2),
}


def problem(case: tuple):
    """(X, y, λ grid) of a case: 20 λ down to its eps·λ_max."""
    import bench_path as bp
    import sweep_heldout as sh

    kind, n, d, C, seed, eps = case
    X, y = bp.make_geometry(kind, n, d, C, seed)
    X = sh.copy_columns(X)
    return X, y, bp.lambda_grid(X, y, C, 20, eps)


def fit(X, y, lams, split: bool):
    """One default fit, the copies looked for or not: (wall s, Path)."""
    import bench_path as bp

    import sparse_probe.fit as fit_module

    real = fit_module.copy_groups
    if not split:
        fit_module.copy_groups = lambda *a: []
    try:
        t = time.perf_counter()
        p = fit_module.fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
        return time.perf_counter() - t, p
    finally:
        fit_module.copy_groups = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cases", default="all", help=f"all, or comma-separated: {', '.join(CASES)}")
    args = ap.parse_args(argv)
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    for name in names:
        if name not in CASES:
            raise SystemExit(f"--cases: unknown case {name!r}; one of {', '.join(CASES)}")
    print(f"best of {args.repeats}; iterations: the path's solver iterations; solvers per point: "
          "o OWL-QN, n Newton, + Newton then OWL-QN, * OWL-QN then Newton, - none")
    print(f"{'case':>18} {'copies':>6} {'split s':>8} {'not s':>8} {'ratio':>6} {'iters':>6} "
          f"{'iters not':>9} {'KKT/tol':>7} {'obj diff':>9}")
    for name in names:
        X, y, lams = problem(CASES[name])
        fit(X, y, lams[:2], True)  # warm-up: imports, kernels' self-checks, the first points
        best = {True: (np.inf, None), False: (np.inf, None)}
        for _ in range(args.repeats):
            for split in (True, False):
                t, p = fit(X, y, lams, split)
                if t < best[split][0]:
                    best[split] = (t, p)
        (ts, ps), (tn, pn) = best[True], best[False]
        kkt = max(float(np.max(p.kkt_violation / np.asarray(p.info["tol_per_point"])))
                  for p in (ps, pn))
        diff = float(np.max((ps.objective - pn.objective) / np.abs(pn.objective)))
        print(f"{name:>18} {ps.info['copied_columns']:6d} {ts:8.2f} {tn:8.2f} {tn / ts:6.2f} "
              f"{int(ps.n_iter.sum()):6d} {int(pn.n_iter.sum()):9d} {kkt:7.2f} {diff:9.1e}")
        marks = {"owlqn": "o", "newton": "n", "newton+owlqn": "+", "owlqn+newton": "*",
                 "closed-form": "-"}
        for tag, p in (("split", ps), ("not", pn)):
            print(f"{'':>18} {tag:>6} " + "".join(marks.get(m, "?")
                                                  for m in p.info["method_per_point"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
