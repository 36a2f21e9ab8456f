"""Measure: how far the float32 standardization moves the gradient, against the products' bound.

The solvers' cached columns are ``fl32((x - mean) * inv_scale)``: each value rounded once more
than the standardized data ``(x - mean) * inv_scale`` (float64). At weights a path reaches
(its last points, down to 1e-4·λ_max), this prints, per problem, the largest difference between
the two data's float64 gradients in units of the float32 products' error bound
(``restricted.f32_gradient_error``, what gates the solvers' float64 exact mode), with the
largest weight norm. Random shapes, geometries (``bench_path.py``'s), column scales 1e-2..1e2
and, in half of the problems, offsets up to 50x the spread. Small ratios mean the products'
gate also covers the standardization: where it sends a solver to float64 products, those run
on the float64 standardized columns (``_Trainer.exact_blocks``), and elsewhere the difference
is a small share of a tolerance the float32 products already meet.

    python benchmarks/measure_std_error.py [--seed 5] [--problems 12]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def grads(Xs: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray):
    """float64 gradient of the mean cross-entropy on the columns ``Xs`` (n, d): weights
    (C, d) and biases (C,)."""
    z = Xs @ W.T + b
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(len(y)), y] -= 1.0
    return P.T @ Xs / len(y), P.mean(0)


def main(argv=None) -> int:
    import bench_path as bp

    import sparse_probe.path as sp
    from sparse_probe import fit_path
    from sparse_probe.solvers.restricted import f32_gradient_error

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--problems", type=int, default=12)
    args = ap.parse_args(argv)
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    append = sp.Path.append_point

    def keep(records, W, b, **metrics):  # the fitter's own weights of every point
        kept.append((np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)))
        return append(records, W, b, **metrics)

    sp.Path.append_point = staticmethod(keep)
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    done = 0
    while done < args.problems:
        kind = str(rng.choice(["current", "collinear", "lowrank-relu"]))
        n, d = int(rng.integers(300, 5000)), int(rng.integers(10, 200))
        C = int(rng.choice([2, 3, 5, 10, 20]))
        try:
            X, y = bp.make_geometry(kind, n, d, C, int(rng.integers(10**6)))
        except ValueError:  # too many classes for the informative columns
            continue
        shift = rng.uniform(-50, 50, d) if rng.random() < 0.5 else np.zeros(d)
        X = (X * 10 ** rng.uniform(-2, 2, d) + shift).astype(np.float32)
        m64, s64 = X.astype(np.float64).mean(0), X.astype(np.float64).std(0)
        s64[s64 == 0] = 1.0
        lams = bp.lambda_grid(((X - m64) / s64).astype(np.float32), y, C, 8, 1e-4)
        kept.clear()
        p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, tol=1e-2)
        m32, inv32 = p.mean.astype(np.float32), (1.0 / p.scale).astype(np.float32)
        X32 = ((X - m32) * inv32).astype(np.float32).astype(np.float64)
        X64 = (X.astype(np.float64) - p.mean) * inv32.astype(np.float64)
        counts = np.bincount(y, minlength=C)
        ratio = 0.0
        for W, b in kept[-3:]:
            G64, gb = grads(X64, y, W, b)
            bound = f32_gradient_error(counts, n, gb)  # (C,)
            ratio = max(ratio, float((np.abs(G64 - grads(X32, y, W, b)[0]).max(1) / bound).max()))
        worst = max(worst, ratio)
        wmax = max(float(np.linalg.norm(W, axis=1).max()) for W, _ in kept[-3:])
        print(f"{kind:13s} {n:5d}x{d:4d}x{C:3d} offsets {'yes' if shift.any() else 'no ':3s} "
              f"max |W_k| {wmax:8.2f}  max |dG_std| / f32 bound {ratio:.4f}", flush=True)
        done += 1
    print(f"{done} problems: largest |dG_std| / f32 bound {worst:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
