"""Measure: the proximal Newton model solve's two settings, side by side.

Part 1, the sweep budget (``gram_cd.cd_sweep_budget``): for each model size N, one
coordinate-descent sweep of the project's compiled kernel where every coordinate moves
against one Cholesky factorization of the (N, N) model (torch, float64), on one thread and
on two; their ratio is the number of sweeps one factorization costs. Both are also given in
multiply-adds of OWL-QN's products (the raw time of an iteration's two products, timed in
the same run), per entry a sweep reads and per multiply-add of the factorization (``N³/3``):
what the prices of Newton's counted model-solve work (``gram_cd.QPWork``) in
``sparse_probe/solvers/choice.py`` come to. Its unit is the fitted one of
``measure_solver_costs.py``, which also carries the products' share of an iteration's
overheads (about twice the raw time on one thread here): convert before comparing.

Part 2, the settings on whole paths: each case fitted with the defaults, once with the old
settings (a stale model solved to 0.02 of the violation as a fresh one, the budget
``16 + N/16`` uncapped), once with only the budget's cap (``gram_cd.SWEEP_BUDGET_CAP``) and
once with the current ones (``newton.DEFAULT_INNER_STALE`` too),
each fit in its own process,
interleaved, ``--repeats`` rounds; the fastest wall and CPU seconds of each and their ratio,
and two counts that no clock disturbs: the model solves' coordinate-descent work (sweeps
times N², in G entries) and the fresh Hessians' multiply-adds (``n N²/2``, in G).
The cases: the two slowest held-out collinear draws of ``sweep_heldout.py`` (seeds 20 and 3)
and ``bench_path.py``'s geometries where Newton runs. Run it on a quiet machine.

    python benchmarks/measure_model_solve.py [--repeats 2] [--sizes 256,1024,2048,4096]
        [--cases all|NAME,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: name -> (geometry, n, d, C, seed, λ count, eps)
CASES = {
    "heldout-collinear-2528x363x10": ("collinear", 2528, 363, 10, 934559, 20, 1e-2),
    "heldout-collinear-1297x199x40": ("collinear", 1297, 199, 40, 292509, 20, 1e-3),
    "collinear": ("collinear", 10_000, 256, 10, 0, 30, 1e-2),
    "wide": ("wide", 500, 5000, 10, 0, 30, 1e-2),
    "lowrank-relu": ("lowrank-relu", 10_000, 256, 10, 0, 30, 1e-2),
}
#: setting -> (inner_stale, budget cap); None: the module's current value
SETTINGS = {"old": (0.02, 10**9), "cap-only": (0.02, None), "current": (None, None)}

_CHILD = """
import functools, json, sys, time
sys.path.insert(0, {here!r})
import bench_path as bp
from sparse_probe import fit_path
from sparse_probe.solvers import SOLVERS, SolverSpec, gram_cd, newton
inner, cap = {inner!r}, {cap!r}
if inner is not None:
    s = SOLVERS["newton"]
    SOLVERS["newton"] = SolverSpec("newton", functools.partial(newton, inner_stale=inner),
                                   s.penalties, s.uses_logits)
if cap is not None:
    gram_cd.SWEEP_BUDGET_CAP = cap
geo, n, d, C, seed, nl, eps = {case!r}
X, y = bp.make_geometry(geo, n, d, C, seed)
lams = bp.lambda_grid(X, y, C, nl, eps)
work = [0.0, 0.0]  # the model solves' sweeps x N², the Hessians' n N²/2 multiply-adds
nt = sys.modules["sparse_probe.solvers.newton"]
qp, hb = nt.enet_qp, nt.hessian_blocks
def counted_qp(Q, *a, **k):
    r = qp(Q, *a, **k)
    work[0] += r[1] * Q.shape[0] ** 2
    return r
def counted_hb(Xw, P, cls, col, XwT=None):
    work[1] += P.shape[0] * cls.numel() ** 2 / 2
    return hb(Xw, P, cls, col, XwT)
nt.enet_qp, nt.hessian_blocks = counted_qp, counted_hb
t, c = time.perf_counter(), time.process_time()
p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
print(json.dumps([time.perf_counter() - t, time.process_time() - c, int(sum(p.n_iter)),
                  float(p.objective[-1]), *work]))
"""


def sweep_vs_factorization(N: int, threads: int, seed: int = 0) -> tuple[float, float]:
    """Seconds of one sweep (every coordinate moving) and of one Cholesky factorization of a
    random (N, N) Gram matrix, with torch on ``threads`` threads."""
    import torch

    from sparse_probe.solvers import gram_cd

    kind, sweeps = gram_cd._kernel()
    if kind != "own":
        raise SystemExit("measure_model_solve: the compiled _gram_cd kernel is not built "
                         "(python setup.py build_ext --inplace)")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N + 200, N))
    Q = A.T @ A / (N + 200)
    q = rng.standard_normal(N)
    u = 0.01 * rng.standard_normal(N)
    Qu = Q @ u
    sweeps(u, Qu, Q, q, 1e-9, 1e-4, 1, 0.0)  # warm: pages touched
    t = time.perf_counter()
    _, made = sweeps(u, Qu, Q, q, 1e-9, 1e-4, 3, 0.0)
    sweep = (time.perf_counter() - t) / max(made, 1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        M = torch.from_numpy(Q + 1e-3 * np.eye(N))
        torch.linalg.cholesky_ex(M)
        t = time.perf_counter()
        for _ in range(3):
            torch.linalg.cholesky_ex(M)
        chol = (time.perf_counter() - t) / 3
    finally:
        torch.set_num_threads(old)
    return sweep, chol


def product_unit(threads: int, n: int = 10000, m: int = 256, C: int = 10) -> float:
    """Seconds per unit of :mod:`sparse_probe.solvers.choice` on ``threads`` threads: one
    multiply-add of OWL-QN's products, timed as the two products of one iteration (the
    logits' step and the gradient, ``RestrictedData.step`` and ``.grad``) over ``4 n m C``."""
    import torch

    from sparse_probe.solvers.restricted import RestrictedData

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        data = RestrictedData(torch.randn(n, m, generator=g), torch.randint(0, C, (n,), generator=g),
                              C)
        dW, db = torch.randn(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
        R = torch.randn(n, C, dtype=torch.float64) / n
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            data.step(dW, db)
            data.grad(R)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return best / (4.0 * n * m * C)


def run_case(case: tuple, inner, cap) -> list[float]:
    """One fit of ``case`` in a fresh process with the given settings: [wall, cpu, iters,
    last objective]."""
    code = _CHILD.format(here=HERE, inner=inner, cap=cap, case=case)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", default="256,512,1024,2048,3072,4096")
    ap.add_argument("--cases", default="all", help="all, none, or names from CASES")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    names = list(CASES) if args.cases == "all" else \
        [] if args.cases == "none" else args.cases.split(",")
    for name in names:
        if name not in CASES:
            raise SystemExit(f"--cases: unknown case {name!r}; one of {', '.join(CASES)}")
    sizes = [int(v) for v in args.sizes.split(",") if v]
    threads = [int(v) for v in args.threads.split(",")]
    from sparse_probe.solvers.gram_cd import SWEEP_BUDGET_CAP
    from sparse_probe.solvers.newton import DEFAULT_INNER_STALE

    units = {k: product_unit(k) for k in threads} if sizes else {}
    if sizes:
        print("units: one multiply-add of OWL-QN's products (raw, not choice.py's fitted unit): "
              + ", ".join(f"{k} thread(s) {u:.3g} s" for k, u in units.items()))
        print(f"{'N':>5} {'thr':>3} | {'sweep ms':>8} | {'Cholesky ms':>11} | "
              f"{'ratio':>6} | {'N/16':>5} | {'units/entry':>11} | {'units/madd':>10}")
    for N in sizes:
        for k in threads:
            sw, ch = sweep_vs_factorization(N, k)
            print(f"{N:>5} {k:>3} | {1e3 * sw:>8.2f} | {1e3 * ch:>11.2f} | {ch / sw:>6.1f} | "
                  f"{N // 16:>5} | {sw / N ** 2 / units[k]:>11.2f} | "
                  f"{ch / (N ** 3 / 3) / units[k]:>10.2f}")
    if names:
        print(f"paths: old = inner_stale 0.02, budget 16 + N/16; cap-only = inner_stale "
              f"0.02, budget 16 + min(N/16, {SWEEP_BUDGET_CAP}); current = inner_stale "
              f"{DEFAULT_INNER_STALE}, that budget; best of {args.repeats}")
    for name in names:
        got: dict[str, list] = {s: [] for s in SETTINGS}
        for _ in range(args.repeats):
            for s, (inner, cap) in SETTINGS.items():
                got[s].append(run_case(CASES[name], inner, cap))
        best = {s: (min(r[0] for r in v), min(r[1] for r in v), *v[0][2:])
                for s, v in got.items()}
        o = best["old"]
        cells = "  ".join(f"{s} {b[0]:6.2f} s (CPU {b[1]:6.2f}, {b[2]:>5} it, sweeps "
                          f"{b[4] / 1e9:5.2f} G, Hessians {b[5] / 1e9:5.1f} G)"
                          for s, b in best.items())
        c = best["current"]
        print(f"{name:<30} {cells}  old/current {o[0] / c[0]:5.2f}  objective rel. diff "
              f"{abs(o[3] - c[3]) / abs(o[3]):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
