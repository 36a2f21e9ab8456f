"""Measure what one path point costs each restricted solver, and fit the size-based cost
model the default's per-point choice uses (``sparse_probe/solvers/choice.py``).

Runs the path of each ``--geometry`` (``bench_path.py``'s problems, plus any ``--extra``
``NAME:n:d:C[:KIND[:SEED]]``, of the ``current`` kind and ``--seed`` unless given) twice,
with OWL-QN and with proximal Newton forced at every point, on one thread (``--threads``),
and records every path point (its restricted solves summed over the KKT rounds): examples
``n``, working-set features ``m`` and free coordinates ``N`` as the default's choice sees
them before solving (the first round's working set and ``fit_path``'s
``info["free_per_point"]``), classes ``C``, iterations and seconds, and the
work Newton did (the multiply-adds of its fresh Hessians and of the Hessian rows of weights
that join a model, the sizes of its model solves, and what the solver counts of them:
``SolveResult.work``, :class:`~sparse_probe.solvers.gram_cd.QPWork`).
Then it fits, by nonnegative least squares on the seconds (each point weighted by
1/seconds: relative error),

- OWL-QN: ``seconds = iters * (a_p * 4nmC + a_h * 4 h mC + a_z * nC + a_0)``, with ``h`` the
  L-BFGS pairs OWL-QN keeps on CPU for ``mC + C`` unknowns (``owlqn.default_pairs``, with the
  class blocks as ``class_blocks.blocks_pay`` decides them): the data products, the two
  passes of the two-loop product over the pair buffer, the elementwise work on the (n, C)
  logits, and a fixed overhead per iteration;
- Newton: ``seconds = b_H * (Hessian multiply-adds) + b_i * iters * 4nmC + b_q * (Σ N_model²
  over its model solves) + b_s * iters + b_0``: the Hessians, the products and line search
  of each step, the model's coordinate descent, a fixed overhead per step and per point; and
  a second fit with the model solves' counted work in place of ``Σ N_model²``: ``b_m *
  stream + b_c * stream_cached + b_f * blas3 + b_d * data`` (entries read from models beyond
  and within the caches, factorization multiply-adds, examples read by data-space model
  solves), the prices ``choice.newton_observed_cost`` reads
  a point's work with; the
  work against the expected ``N`` (Hessian work per point / (nN²/2), model solves' ΣN² per
  step / N², steps per point) is printed per geometry: the choice needs it before Newton
  has run,

and prints every constant in units of ``a_p`` (one multiply-add of OWL-QN's products), the
unit of :mod:`sparse_probe.solvers.choice`, with each model's error per geometry. Ratios
of constants, not seconds, are what the choice keeps: they are what a machine's speed
cancels out of.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/measure_solver_costs.py \
        --geometry current,collinear,lowrank-relu,wide,classes100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_path import GEOMETRIES, lambda_grid, make_geometry

FACTOR_MIN = 300  # model sizes above which the reads and factorizations per point are summarized
QP_COUNTS = ("stream", "stream_cached", "blas3",  # gram_cd.QPWork's counts, per solve
             "data")  # examples read by data-space model solves (data_cd.DataWork)


def record_solves(X, y, lams, solver: str, threads: int = 1) -> list[dict]:
    """Fit the path with ``solver`` forced; one dict per restricted solve, with Newton's work
    counted where it is done: ``hess`` the multiply-adds of its fresh Hessians (``n Nw²/2``
    each) and of the rows of joining weights (``n k m C``), ``qp`` the sum of ``N²`` over its
    model solves (coordinate descent on an N×N model, or the face solves it hands over to)."""
    import sparse_probe.solvers as S
    import sparse_probe.solvers.newton  # noqa: F401  (the module: the package's name is the function)
    from sparse_probe import fit_path
    from sparse_probe.solvers.class_blocks import blocks_pay
    from sparse_probe.solvers.owlqn import default_pairs

    NW = sys.modules["sparse_probe.solvers.newton"]
    rows: list[dict] = []
    spec = S.SOLVERS[solver]
    work = {"hess": 0.0, "qp": 0.0, "n_hess": 0, "n_qp": 0}
    hessian_blocks, hessian_cross, enet_qp = NW.hessian_blocks, NW.hessian_cross, NW.enet_qp

    def counted_hessian(Xw, P, cls, col, XwT=None):
        work["hess"] += Xw.shape[0] * float(cls.numel()) ** 2 / 2
        work["n_hess"] += 1
        return hessian_blocks(Xw, P, cls, col, XwT=XwT)

    def counted_cross(Xw, P, cls_n, col_n, cls_a, col_a, XwT=None):
        # rows of joining weights: n k m C multiply-adds, counted as Hessian work
        work["hess"] += Xw.shape[0] * float(cls_n.numel()) * Xw.shape[1] * P.shape[1]
        return hessian_cross(Xw, P, cls_n, col_n, cls_a, col_a, XwT)

    def counted_qp(Q, q, w0, l1, l2, **kw):
        work["qp"] += float(Q.shape[0]) ** 2
        work["n_qp"] += 1
        return enet_qp(Q, q, w0, l1, l2, **kw)

    def timed(data, W0, b0, lam, penalty, **kw):
        for k in work:
            work[k] = 0
        t = time.perf_counter()
        res = spec.solve(data, W0, b0, lam, penalty, **kw)
        sec = time.perf_counter() - t
        C, m = W0.shape
        counted = {k: float((res.work or {}).get(k, 0.0)) for k in QP_COUNTS}
        solves.append(dict(lam=float(lam), n=int(data.n), m=int(m), C=int(C),
                           iters=int(res.n_iter), seconds=sec, **work, **counted))
        return res

    solves: list[dict] = []
    S.SOLVERS[solver] = dataclasses.replace(spec, solve=timed)
    NW.hessian_blocks, NW.hessian_cross, NW.enet_qp = counted_hessian, counted_cross, counted_qp
    try:
        path = fit_path(X, y, alpha=0.99, lambdas=lams, progress=False, threads=threads,
                        solver=solver)
    finally:
        S.SOLVERS[solver] = spec
        NW.hessian_blocks, NW.hessian_cross, NW.enet_qp = hessian_blocks, hessian_cross, enet_qp
    # one row per path point (its KKT rounds summed), sized as the choice sizes it: the
    # first round's working set and the free coordinates fit_path expected there
    for lam, N in zip(lams, path.info["free_per_point"], strict=False):
        at = [r for r in solves if r["lam"] == float(lam)]
        if not at:
            continue
        row = {k: at[0][k] for k in ("n", "m", "C")}
        row.update({k: sum(r[k] for r in at) for k in ("iters", "seconds", *work, *QP_COUNTS)})
        # the pairs OWL-QN kept by default on CPU (the class blocks as the solve decides them
        # for data that keeps its logits)
        blocks = blocks_pay(row["n"], row["m"], row["C"])
        row.update(N=int(N), h=default_pairs(row["m"] * row["C"] + row["C"], blocks, "cpu"),
                   blocks=int(blocks), rounds=len(at))
        rows.append(row)
    return rows


def owlqn_terms(r: dict) -> np.ndarray:
    """Per-solve regressors of OWL-QN's model (in the order a_p, a_h, a_z, a_0)."""
    p = r["m"] * r["C"]
    return r["iters"] * np.array([4.0 * r["n"] * p, 4.0 * r["h"] * p, r["n"] * r["C"], 1.0])


def newton_terms(r: dict) -> np.ndarray:
    """Per-point regressors of Newton's model, the work it did (in the order b_H, b_i,
    b_q, b_s, b_0): Hessian multiply-adds, products of its steps, model sizes N² solved,
    steps, points."""
    nmc = 4.0 * r["n"] * r["m"] * r["C"]
    return np.array([r["hess"], r["iters"] * nmc, r["qp"], r["iters"], 1.0])


def newton_work_terms(r: dict) -> np.ndarray:
    """Per-point regressors of Newton's model with the model solves' counted work (in the
    order b_H, b_i, b_m, b_c, b_f, b_d, b_s, b_0): the last term before the steps is the
    examples its data-space model solves read (``choice.DATA_ENTRY``)."""
    nmc = 4.0 * r["n"] * r["m"] * r["C"]
    return np.array([r["hess"], r["iters"] * nmc, r.get("stream", 0.0),
                     r.get("stream_cached", 0.0), r.get("blas3", 0.0), r.get("data", 0.0),
                     r["iters"], 1.0])


def fit_model(rows: list[dict], terms) -> tuple[np.ndarray, np.ndarray]:
    """Nonnegative least squares of seconds on the terms, in relative error."""
    from scipy.optimize import nnls

    A = np.array([terms(r) for r in rows])
    s = np.array([r["seconds"] for r in rows])
    w = 1.0 / np.maximum(s, 1e-4)
    scale = A.max(0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale * w[:, None], s * w)
    coef = coef / scale
    return coef, A @ coef


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometry", default="current,collinear,lowrank-relu,wide,classes100")
    ap.add_argument("--extra", default="",
                    help="NAME:n:d:C[:KIND[:SEED]][,...] more problems (current kind, --seed)")
    ap.add_argument("--n-lambdas", type=int, default=30)
    ap.add_argument("--eps", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the fits (the constants in choice.py are 1-thread)")
    ap.add_argument("--save", help="write the recorded solves to this JSON file")
    ap.add_argument("--load", help="fit the solves of a --save file instead of running")
    args = ap.parse_args(argv)
    import torch

    if args.threads < 1:
        raise SystemExit(f"--threads: expected a positive count, got {args.threads}")
    torch.set_num_threads(args.threads)
    problems = []
    for name in filter(None, args.geometry.split(",")):
        if name not in GEOMETRIES:
            raise SystemExit(f"--geometry: unknown geometry {name!r}; one of {', '.join(GEOMETRIES)}")
        g = GEOMETRIES[name]
        problems.append((name, name, g["n"], g["d"], g["classes"], args.seed))
    for spec in filter(None, args.extra.split(",")):
        parts = spec.split(":")
        try:
            label, n, d, C = parts[:4]
            kind = parts[4] if len(parts) > 4 else "current"
            seed = int(parts[5]) if len(parts) > 5 else args.seed
            if len(parts) > 6 or kind not in GEOMETRIES:
                raise ValueError
            problems.append((label, kind, int(n), int(d), int(C), seed))
        except ValueError:
            raise SystemExit(f"--extra: expected NAME:n:d:C[:KIND[:SEED]] with KIND one of "
                             f"{', '.join(GEOMETRIES)}, got {spec!r}") from None
    runs: dict[tuple[str, str], list[dict]] = {}
    if args.load:
        with open(args.load) as f:
            saved = json.load(f)
        problems = [tuple(p) for p in saved["problems"]]
        runs = {(r["problem"], r["solver"]): [] for r in saved["solves"]}
        for r in saved["solves"]:
            runs[r["problem"], r["solver"]].append(r)
    for label, kind, n, d, C, seed in [] if args.load else problems:
        X, y = make_geometry(kind, n, d, C, seed=seed)
        lams = lambda_grid(X, y, C, args.n_lambdas, args.eps)
        for solver in ("owlqn", "newton"):
            if solver == "newton":  # the compiled CD's import is a one-off, not a point's cost
                from sparse_probe.solvers.gram_cd import enet_qp  # noqa: F401
            t = time.perf_counter()
            rows = record_solves(X, y, lams, solver, args.threads)
            for r in rows:
                r["problem"], r["solver"] = label, solver
            runs[label, solver] = rows
            print(f"[{label}] {solver}: {len(rows)} points, {sum(r['iters'] for r in rows)} "
                  f"iterations, {time.perf_counter() - t:.2f} s", flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"problems": problems, "solves": [r for rs in runs.values() for r in rs]}, f)
    ow = [r for (_, s), rs in runs.items() if s == "owlqn" for r in rs if r["iters"] > 0]
    nw = [r for (_, s), rs in runs.items() if s == "newton" for r in rs if r["iters"] > 0]
    a, pred_o = fit_model(ow, owlqn_terms)
    b, pred_n = fit_model(nw, newton_terms)
    bw, pred_w = fit_model(nw, newton_work_terms)
    unit = a[0]
    if not unit > 0:  # too few or too small points to price the products
        print("\n(the OWL-QN fit gave its products no weight: the constants below are in "
              "seconds, not in its unit)")
        unit = 1.0
    print("\nOWL-QN per iteration, in multiply-adds of its products: "
          f"4nmC + {a[1] / unit:.3g} * 4hmC + {a[2] / unit:.3g} * nC + {a[3] / unit:.3g}")
    print("Newton per point, same unit: "
          f"{b[0] / unit:.3g} * (Hessian multiply-adds) + {b[1] / unit:.3g} * iters*4nmC + "
          f"{b[2] / unit:.3g} * (Σ N² of its model solves) + {b[3] / unit:.3g} * iters + "
          f"{b[4] / unit:.3g}")
    print("Newton per point with the model solves' counted work, same unit: "
          f"{bw[0] / unit:.3g} * (Hessian multiply-adds) + {bw[1] / unit:.3g} * iters*4nmC + "
          f"{bw[2] / unit:.3g} * stream + {bw[3] / unit:.3g} * stream_cached + "
          f"{bw[4] / unit:.3g} * blas3 + {bw[5] / unit:.3g} * data + {bw[6] / unit:.3g} * iters + "
          f"{bw[7] / unit:.3g}")
    print("Newton's work against the expected free coordinates N (sums over the points of "
          "each problem with N > C):")
    for label, *_ in problems:
        rs = [r for r in nw if r["problem"] == label and r["N"] > r["C"]]
        if rs:
            nn2 = sum(r["n"] * r["N"] ** 2 / 2 for r in rs)
            print(f"  {label:>14}: Hessian work / (nN²/2) {sum(r['hess'] for r in rs) / nn2:5.2f}, "
                  f"model solves' ΣN² per step / N² "
                  f"{sum(r['qp'] for r in rs) / sum(r['iters'] * r['N'] ** 2 for r in rs):5.2f}, "
                  f"iterations per point {np.mean([r['iters'] for r in rs]):5.2f}")
            reads = [(r["stream"] + r["stream_cached"]) / (r["iters"] * r["N"] ** 2)
                     for r in rs if r["iters"] and r["N"] > FACTOR_MIN]
            facts = [r["blas3"] / (r["N"] ** 3 / 3) for r in rs if r["N"] > FACTOR_MIN]
            if reads:  # a Gram-route point's work against its size, the medians of these points
                print(f"  {'':>14}  at N > {FACTOR_MIN}: model entries read per step / N² "
                      f"{np.median(reads):5.1f}, factorization work per point / (N³/3) "
                      f"{np.median(facts):5.2f}")
    print(f"(a_p = {unit:.3g} s per multiply-add on this machine)\n")
    print(f"{'problem':>14} {'solver':>11} {'points':>6} {'measured s':>10} {'model s':>8} "
          f"{'model/meas':>10}  (newton-work: the fit with the counted work)")
    for rows, pred, solver in ((ow, pred_o, "owlqn"), (nw, pred_n, "newton"),
                               (nw, pred_w, "newton-work")):
        for label, *_ in problems:
            idx = [i for i, r in enumerate(rows) if r["problem"] == label]
            meas = sum(rows[i]["seconds"] for i in idx)
            mod = float(sum(pred[i] for i in idx))
            print(f"{label:>14} {solver:>11} {len(idx):6d} {meas:10.2f} {mod:8.2f} "
                  f"{mod / meas:10.2f}")


if __name__ == "__main__":
    main()
