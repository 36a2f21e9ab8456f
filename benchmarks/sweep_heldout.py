"""Held-out check of the fitter: random shapes, seeds and geometries, side by side with glmnet.

Each trial draws a geometry (``bench_path.py``'s current, collinear and post-ReLU low-rank,
plus two made here: a class cut to 3 examples, and exact copies of a fifth of the columns
with a constant column), n in [150, 4000), d in [8, 400), C from {2, 3, 5, 10, 20, 40, 70},
20 λ down to 1e-2 or 1e-3·λ_max (``--eps``: all to that), and fits the path with the
defaults. Per trial it prints both times, our largest KKT violation over the tolerance
(independent float64 gradient; ≤ 1: verified) and our largest objective gap to the better of
the two at any λ (python-glmnet on the same standardized data), flagging KKT/tol > 1 or a gap
over 1e-5 (issue 19's bar). ``--grouped`` does the same for the grouped penalty (our default
solver for it, FISTA, against glmnet's grouped multinomial, ``kopt=2``). ``--wide`` draws
n ≪ d shapes instead (n in [100, 1000), d in [1000, 6000), C up to 40): there the Newton
models have more free weights than examples and are solved in data space
(:mod:`sparse_probe.solvers.data_cd`), a route the default shapes rarely reach. ``--deep``
draws real deep features instead (``bench_path.py``'s ``deep-cnn`` and ``deep-resnet``, made
in the run from the built-in shapes data: n in [1000, 5000), a CNN of width 32-256 trained
there or a random-weight ResNet-18's 512 features, 6 classes).

    python benchmarks/sweep_heldout.py [--seed 3] [--trials 16] [--eps 1e-4] [--grouped]
                                       [--wide | --deep]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KINDS = ["current", "collinear", "lowrank-relu", "rare-class", "copied-columns"]
DEEP_KINDS = ["deep-cnn", "deep-resnet"]
N_LAMBDAS = 20
"""λ values of each trial's path (down to its eps)."""


#: (n range, d range, class counts) of a draw: the default shapes and ``--wide``'s n ≪ d ones
SHAPES = {False: ((150, 4000), (8, 400), [2, 3, 5, 10, 20, 40, 70]),
          True: ((100, 1000), (1000, 6000), [2, 3, 5, 10, 20, 40])}


def copy_columns(X: np.ndarray) -> np.ndarray:
    """``X`` (n, d) with copies of its first ``max(1, d // 5)`` columns and a zero column
    appended: the held-out kind ``copied-columns``."""
    d = X.shape[1]
    return np.concatenate([X, X[:, : max(1, d // 5)], np.zeros((len(X), 1), X.dtype)], 1)


def draw_deep(rng: np.random.Generator):
    """One ``--deep`` trial's (kind, X, y, eps): real deep features of the shapes data."""
    import bench_path as bp

    kind = str(rng.choice(DEEP_KINDS))
    n = int(rng.integers(1000, 5000))
    d = int(rng.choice([32, 64, 128, 256])) if kind == "deep-cnn" else 512
    seed = int(rng.integers(0, 10**6))
    eps = float(rng.choice([1e-2, 1e-3]))
    X, y = bp.make_geometry(kind, n, d, 6, seed)
    return f"{kind} seed={seed}", X, y, eps


def draw(rng: np.random.Generator, wide: bool = False):
    """One trial's (kind, X, y, eps), or None when make_classification refuses the draw;
    ``wide``: n ≪ d shapes (:data:`SHAPES`)."""
    import bench_path as bp

    kind = str(rng.choice(KINDS))
    (n0, n1), (d0, d1), classes = SHAPES[wide]
    n, d = int(rng.integers(n0, n1)), int(rng.integers(d0, d1))
    C = int(rng.choice(classes))
    seed = int(rng.integers(0, 10**6))
    eps = float(rng.choice([1e-2, 1e-3]))
    try:
        X, y = bp.make_geometry(kind if kind in KINDS[:3] else "current", n, d, C, seed)
    except ValueError:  # too many classes for the informative columns
        return None
    if kind == "rare-class":  # class 0 keeps 3 examples; the columns standardized again
        keep = np.ones(len(y), bool)
        keep[np.flatnonzero(y == 0)[3:]] = False
        X, y = X[keep], y[keep]
        X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    elif kind == "copied-columns":
        X = copy_columns(X)
    return f"{kind} seed={seed}", X, y, eps


SETS = ("heldout", "heldout-wide", "heldout-deep")
"""The draw sets :func:`trials` makes: this script's default shapes, ``--wide``, ``--deep``."""


def trials(seed: int, kind: str = "heldout"):
    """The sweep's trials in order, ``(name, X, y, eps)`` each, for ``--seed seed`` and the
    shapes of ``kind`` (:data:`SETS`); the draws ``make_classification`` refuses skipped."""
    rng = np.random.default_rng(seed)
    while True:
        trial = draw_deep(rng) if kind == "heldout-deep" else draw(rng, kind == "heldout-wide")
        if trial is not None:
            yield trial


def nth_draw(seed: int, k: int, kind: str = "heldout"):
    """The ``k``-th of :func:`trials` (1-based), as the sweep fits it, so one draw can be
    fitted again (``compare_revisions.py``'s ``heldout:SEED:K`` cases)."""
    if kind not in SETS or k < 1:
        raise ValueError(f"nth_draw: expected one of {list(SETS)} and k >= 1, got {kind!r}, {k}")
    return next(itertools.islice(trials(seed, kind), k - 1, None))


def main(argv=None) -> int:
    import bench_path as bp

    from sparse_probe import fit_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--eps", type=float, default=None,
                    help="every trial's path down to this times λ_max (the draws stay the same)")
    ap.add_argument("--grouped", action="store_true",
                    help="the grouped penalty (glmnet's kopt=2) instead of the elementwise one")
    shapes = ap.add_mutually_exclusive_group()
    shapes.add_argument("--wide", action="store_true",
                        help="n << d shapes (n in [100, 1000), d in [1000, 6000))")
    shapes.add_argument("--deep", action="store_true",
                        help="real deep features of the built-in shapes data (deep-cnn, "
                             "deep-resnet)")
    args = ap.parse_args(argv)
    g = args.grouped
    kind = "heldout-deep" if args.deep else "heldout-wide" if args.wide else "heldout"
    worst_kkt = worst_gap = 0.0
    done = 0
    for name, X, y, eps in itertools.islice(trials(args.seed, kind), args.trials):
        eps = args.eps or eps
        C = int(y.max()) + 1
        lams = bp.lambda_grid(X, y, C, N_LAMBDAS, eps, grouped=g)
        t = time.perf_counter()
        p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, grouped=g, progress=False)
        ours = time.perf_counter() - t
        obj, kkt = bp.objectives_kkt(X, y, list(p.weights), list(p.intercepts), lams,
                                     p.info["tol_per_point"], p.mean, p.scale, grouped=g)
        g_el, Wg, Bg, g_info = bp.run_glmnet(X, y, lams, C, grouped=g)
        L = len(Wg)
        best = np.minimum(obj[:L], bp.objectives(X, y, Wg, Bg, lams[:L], grouped=g))
        gap = float(np.max((obj[:L] - best) / np.abs(best)))
        worst_kkt, worst_gap = max(worst_kkt, float(kkt.max())), max(worst_gap, gap)
        flag = "  <--" if kkt.max() > 1 or gap > 1e-5 else ""
        print(f"{name:28s} {len(y):5d}x{X.shape[1]:4d}x{C:3d} eps={eps:g}  ours {ours:6.2f} s  "
              f"glmnet {g_el:6.2f} s  KKT/tol {kkt.max():.2f}  gap {gap:.1e}  "
              f"{p.info['method']}{bp.peer_stop_note(g_info, L, len(lams))}{flag}", flush=True)
        done += 1
    print(f"{done} trials: largest KKT/tol {worst_kkt:.2f}, largest gap {worst_gap:.1e}")
    return 0 if worst_kkt <= 1 and worst_gap <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
