"""GPU timing of the fitter's path (same code as on CPU, ``device="cuda"``).

Prints, per size, the wall time of the full path, iterations, nnz at the last λ, the time of one
full-data pass on the GPU and the path's cost in such passes, plus the objective agreement with
a float64 CPU evaluation at a few points. Exits 0 with a note where no CUDA device is present.
CPU peers (glmnet, scikit-learn, glm_saga) are timed by ``bench_path.py``; compare the two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_path import lambda_grid, make_data

SIZES = {
    "small": dict(n=20_000, d=512, classes=10, n_lambdas=100, eps=1e-3),
    "large": dict(n=50_000, d=2_048, classes=10, n_lambdas=100, eps=1e-3),
    "wide": dict(n=200_000, d=2_048, classes=100, n_lambdas=30, eps=5e-2),
}


def one_pass(X: torch.Tensor, C: int) -> float:
    R = torch.randn(X.shape[0], C, device=X.device)
    for _ in range(3):
        R.T @ X
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        R.T @ X
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / 20


def main(argv=None) -> None:
    from sparse_probe import fit_path, objective_f64

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="small,large,wide")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: GPU timing skipped")
        return
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    results = {}
    for name in args.sizes.split(","):
        cfg = SIZES[name]
        X, y = make_data(cfg["n"], cfg["d"], cfg["classes"]) if cfg["n"] <= 50_000 else _fast_data(cfg)
        lams = lambda_grid(X, y, cfg["classes"], cfg["n_lambdas"], cfg["eps"])
        Xg = torch.from_numpy(X).cuda()
        yg = torch.from_numpy(y).cuda()
        fit_path(Xg[:2000], yg[:2000], lambdas=lams[:3], device="cuda", progress=False)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        p = fit_path(Xg, yg, lambdas=lams, device="cuda", progress=False)
        torch.cuda.synchronize()
        el = time.perf_counter() - t
        unit = one_pass(Xg, cfg["classes"])
        check = [0, len(p) // 2, len(p) - 1]
        rel = max(abs(p.objective[i] - objective_f64(X, y, p.weights[i], p.intercepts[i], p.lambdas[i],
                                                     p.alpha, mean=p.mean, scale=p.scale))
                  / p.objective[i] for i in check)
        results[name] = dict(cfg, seconds=el, iterations=int(p.n_iter.sum()), nnz_last=int(p.nnz[-1]),
                             pass_ms=unit * 1e3, passes=el / unit, kkt_max=float(p.kkt_violation.max()),
                             objective_rel_diff_vs_f64=float(rel))
        print(f"{name}: n={cfg['n']} d={cfg['d']} C={cfg['classes']} {len(p)} λ: {el:.1f} s, "
              f"{int(p.n_iter.sum())} iterations, nnz last {int(p.nnz[-1])}, one pass {unit * 1e3:.2f} ms "
              f"-> {el / unit:.0f} passes; objective vs float64 CPU {rel:.1e}", flush=True)
        del Xg, yg
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


def _fast_data(cfg):
    rng = np.random.default_rng(0)
    n, d, C = cfg["n"], cfg["d"], cfg["classes"]
    centers = np.zeros((C, d), np.float32)
    for k in range(C):
        centers[k, rng.choice(d, 5, replace=False)] = 1.0
    y = rng.integers(0, C, n)
    X = centers[y] + rng.standard_normal((n, d), dtype=np.float32)
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y.astype(np.int64)


if __name__ == "__main__":
    main()
