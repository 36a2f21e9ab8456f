"""Measure: the per-iteration centering of the weights, compiled against numpy and torch.

Every OWL-QN iteration and Newton step shifts each feature's weights to their penalty-optimal
center (``sparse_probe.solvers.centering.center_shift``). Part 1 times one call per route on
(C, m) weights of the bench geometries' shapes (median of ``--repeats``, after checking the
routes agree): the compiled kernel called directly, numpy's steps, torch's, and
``center_shift`` itself ("library": the kernel up to ``KERNEL_MAX_CLASSES``, numpy beyond);
part 2 fits each ``--cases`` path (``compare_revisions.py``'s cases) with the
compiled kernel and with numpy's steps (``SPARSE_PROBE_CENTERING=numpy``), interleaved, best of
``--fits``, and prints both fits' seconds, the centering's own seconds in each, and the largest
relative difference of the two paths' objectives.

    python benchmarks/measure_centering.py [--cases current,classes100] [--fits 2]
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

CE = importlib.import_module("sparse_probe.solvers.centering")
SHAPES = [(2, 256), (10, 256), (10, 3000), (100, 64), (1000, 32)]


def per_call(repeats: int) -> None:
    from measure_products import median_ms

    kernel = CE._kernel()
    print(f"one call, median of {repeats} (ms); compiled kernel: "
          f"{'built' if kernel is not None else 'not built'}")
    print(f"{'C':>6} {'m':>6} {'kernel':>9} {'numpy':>9} {'torch':>9} {'library':>9} "
          f"{'numpy/kernel':>13} {'numpy/library':>14}")
    g = np.random.default_rng(0)
    for C, m in SHAPES:
        W = g.standard_normal((C, m)) * (g.random((C, m)) < 0.5)
        Wt = torch.from_numpy(W)
        ref = CE._center_shift_np(W, 0.99, False)
        np.testing.assert_allclose(CE.center_shift(Wt, 0.99).numpy(), ref, rtol=0,
                                   atol=1e-13 * np.abs(W).max())
        ms_np = median_ms(lambda W=W: CE._center_shift_np(W, 0.99, False), repeats)
        ms_t = median_ms(lambda Wt=Wt: CE._center_shift_torch(Wt, 0.99, False), repeats)
        ms_lib = median_ms(lambda Wt=Wt: CE.center_shift(Wt, 0.99), repeats)
        ms_k = np.nan
        if kernel is not None:
            out = np.empty(m)
            kernel(C, m, W, 0.99, out)
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * np.abs(W).max())
            ms_k = median_ms(lambda W=W, out=out, C=C, m=m: kernel(C, m, W, 0.99, out), repeats)
        print(f"{C:>6} {m:>6} {ms_k:>9.4f} {ms_np:>9.4f} {ms_t:>9.4f} {ms_lib:>9.4f} "
              f"{ms_np / ms_k:>13.1f} {ms_np / ms_lib:>14.1f}")


def timed_fit(case, route: str):
    """(fit seconds, centering seconds, objectives) of the default path with ``route``."""
    import bench_path as bp

    from sparse_probe.fit import fit_path
    from sparse_probe.objective import objective_f64

    kind, n, d, C, seed, nl, eps = case
    X, y = bp.make_geometry(kind, n, d, C, seed)
    lams = bp.lambda_grid(X, y, C, nl, eps)
    from measure_ce_threads import timed_calls

    real, spent = CE.center_shift, [0.0, 0]
    counted = timed_calls(real, spent)

    old_env = os.environ.pop("SPARSE_PROBE_CENTERING", None)
    if route == "numpy":
        os.environ["SPARSE_PROBE_CENTERING"] = "numpy"
    CE._STATE.clear()
    # the solvers import center_shift by name: count it where they call it
    users = [m for m in list(sys.modules.values())
             if m is not None and getattr(m, "center_shift", None) is real]
    for m in users:
        m.center_shift = counted
    try:
        t = time.perf_counter()
        p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
        sec = time.perf_counter() - t
    finally:
        for m in users:
            m.center_shift = real
        os.environ.pop("SPARSE_PROBE_CENTERING", None)
        if old_env is not None:
            os.environ["SPARSE_PROBE_CENTERING"] = old_env
        CE._STATE.clear()
    objs = np.array([objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i], bp.ALPHA,
                                   mean=p.mean, scale=p.scale) for i in range(len(p))])
    return sec, spent[0], objs


def main(argv: list[str] | None = None) -> None:
    import compare_revisions as cr

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="current,classes100")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--fits", type=int, default=2)
    args = ap.parse_args(argv)
    per_call(args.repeats)
    if CE._kernel() is None or not args.cases:
        return
    print(f"\nwhole default fits, best of {args.fits}; 'centering s': inside that fit")
    print(f"{'case':>30} {'compiled s':>10} {'centering s':>11} {'numpy s':>8} "
          f"{'centering s':>11} {'numpy/compiled':>14} {'objective diff':>14}")
    for name in args.cases.split(","):
        case = cr.parse_case(name)
        best = {"compiled": (np.inf, 0.0, None), "numpy": (np.inf, 0.0, None)}
        for _ in range(args.fits):
            for route in best:
                got = timed_fit(case, route)
                if got[0] < best[route][0]:
                    best[route] = got
        (tk, ck, ok), (tn, cn, on) = best["compiled"], best["numpy"]
        diff = float(np.max(np.abs(ok - on) / np.abs(on)))
        print(f"{name:>30} {tk:>10.2f} {ck:>11.3f} {tn:>8.2f} {cn:>11.3f} {tn / tk:>14.2f} "
              f"{diff:>14.1e}")


if __name__ == "__main__":
    main()
