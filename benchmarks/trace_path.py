"""Trace: one default path fit point by point, with the solver choice's inputs at each point.

Per path point: the restricted solver(s) that ran (``info["method_per_point"]``), the free
coordinates the choice expected, the solver's iterations and the point's wall seconds; then
every call of :func:`~sparse_probe.solvers.choice.prefer_newton` in order: the expected model
size N, OWL-QN's count it compared with (and the model size it was counted at), whether the
last point was Newton's, the ``newton_over`` ratio it read, Newton's estimate in OWL-QN
iterations and the answer. This is how a point that went to the slower solver is found.

Cases as ``compare_revisions.py``: a ``bench_path.py`` geometry by name,
``KIND:n:d:C:SEED[:NLAM[:EPS]]``, or ``heldout:SEED:K`` (a ``sweep_heldout.py`` draw).

    python benchmarks/trace_path.py collinear [--threads 1]
    python benchmarks/trace_path.py collinear:3395:253:20:994051:20:0.001
    python benchmarks/trace_path.py heldout:5602:8
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def trace(case: tuple, threads: int | None = None) -> tuple[list[tuple], list[dict], float]:
    """Fit ``case`` (``compare_revisions.parse_case``'s tuple) with the defaults; returns the
    per-point rows ``(method, expected free, iterations, seconds)``, the choice's calls and
    the fit's wall seconds."""
    import bench_path as bp
    import compare_revisions as cr

    import sparse_probe.fit as fit_module
    from sparse_probe.solvers import choice

    X, y, lams = cr.case_data(case)
    calls: list[dict] = []
    real = fit_module.prefer_newton

    def spy(n_, m, C_, n_free, owlqn_iters, **kw):
        got = real(n_, m, C_, n_free, owlqn_iters, **kw)
        calls.append(dict(N=n_free, owlqn_iters=owlqn_iters, owlqn_free=kw.get("owlqn_free"),
                          on_newton=kw.get("on_newton", False), over=kw.get("newton_over"),
                          estimate=choice._newton_estimate(n_, m, C_, n_free,
                                                           kw.get("newton_steps"),
                                                           kw.get("newton_over"),
                                                           kw.get("data_crawls", False)),
                          newton=got))
        return got

    fit_module.prefer_newton = spy
    try:
        t = time.perf_counter()
        p = fit_module.fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False,
                                threads=threads)
        wall = time.perf_counter() - t
    finally:
        fit_module.prefer_newton = real
    secs = np.diff(np.concatenate([[0.0], p.time]))
    rows = [(p.info["method_per_point"][i], p.info["free_per_point"][i], int(p.n_iter[i]),
             float(secs[i])) for i in range(len(p.time))]
    return rows, calls, wall


def main(argv=None) -> int:
    import compare_revisions as cr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help="a geometry or KIND:n:d:C:SEED[:NLAM[:EPS]]")
    ap.add_argument("--threads", type=int, default=None,
                    help="fit_path's threads (default: its own choice)")
    args = ap.parse_args(argv)
    rows, calls, wall = trace(cr.parse_case(args.case), args.threads)
    print(f"{args.case}: {wall:.2f} s, threads {args.threads or 'default'}")
    print(f"{'point':>5} {'solver':>13} {'free':>6} {'iters':>6} {'s':>7}")
    for i, (method, free, it, s) in enumerate(rows):
        print(f"{i:>5} {method:>13} {free:>6} {it:>6} {s:>7.2f}")
    print("choices (prefer_newton), in order:")
    for c in calls:
        over = "-" if c["over"] is None else f"{c['over']:.2f}"
        print(f"  N={c['N']} OWL-QN count={c['owlqn_iters']} (at N={c['owlqn_free']}) "
              f"on_newton={c['on_newton']} over={over} estimate={c['estimate']:.1f} "
              f"-> {'newton' if c['newton'] else 'owlqn'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
