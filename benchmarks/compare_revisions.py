"""Measure: the default path fit at another git revision and in this working tree, side by side.

Each case is fitted with ``fit_path``'s defaults (20 or 30 λ, α = 0.99, as
``bench_path.py``), once by the library of ``--base`` (checked out into a temporary git
worktree, the compiled extensions copied from this tree) and once by this tree's, each fit
in its own process, interleaved, ``--repeats`` rounds. Per case: the fastest wall seconds of
each, their ratio, each one's solvers per point (``o`` OWL-QN, ``n`` Newton, ``+`` Newton
handed over to OWL-QN, ``*`` OWL-QN over its budget handed to Newton) and the largest
relative difference of the two paths' objectives. A change to the solver choice shows as a change of the letters; its price as the ratio. Run it
on a quiet machine: identical fits differed by up to 1.2x in wall time here.

Cases: ``bench_path.py``'s geometries by name (its sizes, 30 λ to 1e-2·λ_max),
``KIND:n:d:C:SEED[:NLAM[:EPS]]`` (20 λ to 1e-2 by default: ``sweep_heldout.py``'s draws), or
``heldout:SEED:K`` (also ``heldout-wide``, ``heldout-deep``): the K-th draw of
``sweep_heldout.py --seed SEED`` (``--wide``, ``--deep``) as the sweep fits it, kinds that no
geometry makes included (rare classes, copied columns).

    python benchmarks/compare_revisions.py --base HEAD~1 --cases collinear,wide,\\
        collinear:3333:138:40:176452 [--repeats 2] [--threads 1] [--quiet-start]

Each row also gives the median time to the end of the path's first point (λ_max, no solve:
the fit's set-up and its choice of thread count). By default each child draws its case and
computes the λ grid with numpy just before the fit, so numpy's BLAS threads are still
spinning as it starts; ``--quiet-start`` draws each case once in this process and has the
children read it from files, as ``bench_path.py``'s workers do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import sweep_heldout as sh  # noqa: E402  (from HERE)

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(1, {here!r})
import bench_path as bp
import sparse_probe
assert sparse_probe.__file__.startswith({root!r}), sparse_probe.__file__
from sparse_probe import fit_path
import compare_revisions as cr
data = {data!r}
if data is None:  # drawn here, the λ grid a numpy product just before the fit
    X, y, lams = cr.case_data({case!r})
else:  # read from the parent's files, as bench_path.py's workers do
    import numpy as np
    X, y, lams = (np.load(data + s) for s in ("-X.npy", "-y.npy", "-lams.npy"))
t = time.perf_counter()
p = fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, threads={threads!r})
wall = time.perf_counter() - t
print(json.dumps([wall, list(map(float, p.objective)), p.info["method_per_point"],
                  float(p.time[0])]))
"""

LETTER = {"owlqn": "o", "newton": "n", "newton+owlqn": "+", "owlqn+newton": "*",
          "closed-form": "-"}


def parse_case(spec: str) -> tuple:
    """``(kind, n, d, C, seed, n_lambdas, eps)`` of a case name or spec (module docstring)."""
    import bench_path as bp

    if spec in bp.GEOMETRIES:
        g = bp.GEOMETRIES[spec]
        return (spec, g["n"], g["d"], g["classes"], 0, 30, 1e-2)
    parts = spec.split(":")
    if parts[0] in HELDOUT:
        if len(parts) != 3 or not all(p.isdigit() for p in parts[1:]) or int(parts[2]) < 1:
            raise SystemExit(f"--cases: expected {parts[0]}:SEED:K (K >= 1), got {spec!r}")
        return (parts[0], int(parts[1]), int(parts[2]), 0, 0, sh.N_LAMBDAS, None)
    try:
        if len(parts) < 5 or len(parts) > 7 or parts[0] not in bp.GEOMETRIES:
            raise ValueError
        kind, n, d, C, seed = parts[0], *map(int, parts[1:5])
        nl = int(parts[5]) if len(parts) > 5 else sh.N_LAMBDAS
        eps = float(parts[6]) if len(parts) > 6 else 1e-2
    except ValueError:
        raise SystemExit(f"--cases: expected a geometry ({', '.join(bp.GEOMETRIES)}), "
                         f"KIND:n:d:C:SEED[:NLAM[:EPS]] or heldout:SEED:K, got {spec!r}") from None
    return (kind, n, d, C, seed, nl, eps)


def fit_once(root: str, case: tuple, threads: int | None = None, data: str | None = None
             ) -> tuple[float, np.ndarray, list[str], float]:
    """One default fit of ``case`` by the library under ``root``, in a fresh process
    (``threads``: ``fit_path``'s, None its default choice; ``data``: the prefix of
    :func:`write_case`'s files to read, else the child draws the case itself). Returns the
    wall seconds, the objectives, the solvers per point and the seconds to the end of the
    path's first point (λ_max: the fit's set-up, its thread count's choice included)."""
    code = _CHILD.format(root=root, here=HERE, case=case, threads=threads, data=data)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root)
    if out.returncode:
        raise SystemExit(f"compare_revisions: the fit at {root} failed:\n{out.stderr[-2000:]}")
    wall, obj, methods, start = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, np.asarray(obj), methods, start


def write_case(case: tuple, prefix: str) -> str:
    """Draw ``case`` and its λ grid here and save them as ``prefix``-X/-y/-lams.npy."""
    X, y, lams = case_data(case)
    for suffix, a in (("-X.npy", X), ("-y.npy", y), ("-lams.npy", lams)):
        np.save(prefix + suffix, a)
    return prefix


HELDOUT = sh.SETS
"""The held-out case kinds (:func:`parse_case`): ``sweep_heldout.py``'s draw sets."""


def case_data(case: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, lambdas)`` of a :func:`parse_case` tuple: a geometry's draw and its λ grid,
    or a held-out draw and the grid ``sweep_heldout.py`` fits it on (20 λ to its eps)."""
    import bench_path as bp

    kind, n, d, C, seed, nl, eps = case
    if kind in HELDOUT:
        _, X, y, eps = sh.nth_draw(n, d, kind)
        return X, y, bp.lambda_grid(X, y, int(y.max()) + 1, nl, eps)
    X, y = bp.make_geometry(kind, n, d, C, seed)
    return X, y, bp.lambda_grid(X, y, C, nl, eps)


def checkout(rev: str, into: str) -> str:
    """A detached worktree of ``rev`` under ``into`` with this tree's compiled extensions."""
    path = os.path.join(into, "base")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, rev], check=True,
                   capture_output=True)
    changed = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", rev, "--", "*.c"])
    if changed.returncode:
        print(f"# note: the C sources differ from {rev}; its fits use this tree's compiled "
              "extensions", flush=True)
    for dirpath, _, files in os.walk(os.path.join(ROOT, "sparse_probe")):
        for f in files:
            if f.endswith(".so"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
                shutil.copy2(os.path.join(ROOT, rel), os.path.join(path, rel))
    return path


def remove_checkout(path: str) -> None:
    """Remove a worktree :func:`checkout` made (quietly: it may not have been made)."""
    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path],
                   capture_output=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="the git revision to compare with")
    ap.add_argument("--cases", required=True, help="comma-separated (module docstring)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="fit_path's threads (default: its own choice)")
    ap.add_argument("--quiet-start", action="store_true",
                    help="draw each case once here and have the fits read it from files "
                         "(no numpy product in their process just before the fit, whose "
                         "BLAS threads would still be spinning, as in bench_path.py)")
    args = ap.parse_args(argv)
    cases = [(c, parse_case(c)) for c in args.cases.split(",") if c]
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.base],
                         capture_output=True, text=True)
    if rev.returncode:
        raise SystemExit(f"--base: not a revision of this repository: {args.base!r}")
    tmp = tempfile.mkdtemp(prefix="compare-revisions-")
    try:
        base = checkout(args.base, tmp)
        print(f"base = {rev.stdout.strip()}, this = the working tree; threads "
              f"{args.threads or 'default'}; best wall s of "
              f"{args.repeats}; solvers per point: o OWL-QN, n Newton, + Newton then OWL-QN, "
              "* OWL-QN then Newton, - no solve (λ_max)")
        for name, case in cases:
            data = write_case(case, os.path.join(tmp, "case")) if args.quiet_start else None
            best = {"base": float("inf"), "this": float("inf")}
            starts: dict[str, list[float]] = {"base": [], "this": []}
            got = {}
            for _ in range(args.repeats):
                for side, root in (("base", base), ("this", ROOT)):
                    wall, obj, methods, start = fit_once(root, case, args.threads, data)
                    best[side] = min(best[side], wall)
                    starts[side].append(start)
                    got[side] = (obj, "".join(LETTER.get(m, "?") for m in methods))
            (ob, mb), (ot, mt) = got["base"], got["this"]
            L = min(len(ob), len(ot))
            diff = float(np.max(np.abs(ob[:L] - ot[:L]) / np.abs(ob[:L])))
            ms = {k: 1e3 * float(np.median(v)) for k, v in starts.items()}
            print(f"{name:<36} base {best['base']:7.2f} s  this {best['this']:7.2f} s  "
                  f"base/this {best['base'] / best['this']:5.2f}  objective rel. diff "
                  f"{diff:.1e}  first point (median) base {ms['base']:.0f} ms this "
                  f"{ms['this']:.0f} ms\n{'':<36} base {mb}\n{'':<36} this {mt}", flush=True)
    finally:
        remove_checkout(os.path.join(tmp, "base"))
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
