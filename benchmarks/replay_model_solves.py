"""Measure: a path's slowest Newton model solves (``gram_cd.enet_qp``), recorded and replayed.

Each case's default path is fitted once by this tree's library with every model solve
recorded that took at least ``--min-seconds``: its model ``Q``, ``q``, start, ``l1``,
``l2``, tolerance and its result, and whether it began with the active-set method on a
factor kept from an earlier solve of the model. The ``--max-models`` slowest are then solved
again from the same starts, each library in its own process, ``--repeats`` rounds
interleaved: this tree's, and with ``--base REV`` a worktree of that revision's
(``compare_revisions.checkout``). A solve that began on a kept factor is replayed with the
active-set method first (``direct_max`` above its size), on a factor of its own: one
factorization more than the path paid, and its objective then agrees with the path's to
rounding, not bit for bit (the others' do). numpy's BLAS is held to ``fit_path``'s
``threads.BLAS_THREADS``; torch runs on ``--threads`` (default: its own count).

Every library solves the same models here, so a change to the model solver shows its price
model by model. On whole paths that price drowns: a solve that ends elsewhere changes every
step after it, and the same path's wall time varies by up to 1.2x on this machine
(``results/qp-experiments-cpu-2026-12-07.txt``). Per model: its size N, how it began
(``factor``: on a kept factor; ``cd``: the library's own order), the seconds it took in the
path, and for each library the best seconds, the coordinate-descent sweeps (0 where the
active-set method alone solved it), the violation over the tolerance and the objective;
then the totals.

    python benchmarks/replay_model_solves.py --cases heldout-deep:5601:3 [--base HEAD~1]
        [--min-seconds 0.25] [--max-models 20] [--repeats 2] [--threads 2] [--phases]
        [--keep DIR]

``--phases`` adds each model's solve by this tree's library phase by phase (the active-set
method's face solves, coordinate descent's sweeps, the violation after each and its seconds),
from one more replay: where a solve's time goes, e.g. an active-set call that ends over its
tolerance and the sweeps that crawl after it. ``--keep DIR`` records each case's models into
``DIR/<case>`` and leaves them there (``np.load`` gives ``Q``, ``q``, ``u0``, ``l1``, ``l2``,
``tol``) to be solved again by hand.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

_CHILD = """
import glob, json, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
if {threads!r} is not None:
    torch.set_num_threads({threads!r})
import importlib
from threadpoolctl import threadpool_limits
gc = importlib.import_module("sparse_probe.solvers.gram_cd")
th = importlib.import_module("sparse_probe.solvers.threads")
threadpool_limits(limits=getattr(th, "BLAS_THREADS", 1), user_api="blas")  # as fit_path holds it
files = sorted(glob.glob({folder!r} + "/model-*.npz"))
phases = []  # with phases: [method, face solves or sweeps, violation after, seconds] in order
if {phases!r}:
    def _phase(name, real, count, viol):
        def spy(*a, **k):
            t = time.perf_counter()
            out = real(*a, **k)
            n, v = count(out), viol(out)
            if name == "cd" and phases and phases[-1][0] == "cd":  # one phase over its chunks
                n += phases[-1][1]
                t -= phases.pop()[3]
            phases.append([name, int(n), float(v), time.perf_counter() - t])
            return out
        return spy
    gc.active_set_qp = _phase("active-set", gc.active_set_qp, lambda o: o[1], lambda o: o[2])
    gc._cd_own = _phase("cd", gc._cd_own, lambda o: o[1], lambda o: o[0])
for i, f in enumerate(files[:1] + files):  # the first once untimed: the kernels' first-use checks
    phases.clear()
    d = np.load(f)
    Q, q, u0 = d["Q"], d["q"], d["u0"]
    kw = dict(tol=float(d["tol"]))
    if bool(d["factored"]):
        kw["direct_max"] = Q.shape[0] + 1
    t = time.perf_counter()
    u, sweeps, viol = gc.enet_qp(Q, q, u0, float(d["l1"]), float(d["l2"]), **kw)
    dt = time.perf_counter() - t
    obj = gc._objective(Q, q, u, float(d["l1"]), float(d["l2"]))
    if i:
        print(json.dumps([f, dt, int(sweeps), float(viol), float(obj), phases]), flush=True)
"""


def record(case: tuple, folder: str, min_seconds: float, max_models: int) -> list[float]:
    """Fit ``case`` (``compare_revisions.parse_case``'s tuple) with the defaults, saving each
    model solve of at least ``min_seconds`` into ``folder``; keeps the ``max_models`` slowest.
    Returns the seconds of every solve saved, slowest first (the first ``max_models`` kept)."""
    import bench_path as bp
    import compare_revisions as cr

    from sparse_probe.fit import fit_path

    nt = importlib.import_module("sparse_probe.solvers.newton")
    gc = importlib.import_module("sparse_probe.solvers.gram_cd")
    real = nt.enet_qp
    saved: list[tuple[float, str]] = []

    def spy(Q, q, u0, l1, l2, **kw):
        faces = kw.get("faces")
        factored = faces is not None and faces.factored
        t = time.perf_counter()
        out = real(Q, q, u0, l1, l2, **kw)
        dt = time.perf_counter() - t
        if dt >= min_seconds:
            path = os.path.join(folder, f"model-{len(saved):04d}.npz")
            np.savez(path, Q=Q, q=q, u0=u0, l1=l1, l2=l2, tol=kw["tol"], factored=factored,
                     seconds=dt, sweeps=out[1], viol=out[2],
                     obj=gc._objective(np.asarray(Q), np.asarray(q), out[0], l1, l2))
            saved.append((dt, path))
        return out

    X, y, lams = cr.case_data(case)
    nt.enet_qp = spy
    try:
        fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False)
    finally:
        nt.enet_qp = real
    saved.sort(reverse=True)
    for _, path in saved[max_models:]:
        os.remove(path)
    return [dt for dt, _ in saved]


def replay(root: str, folder: str, threads: int | None, phases: bool = False
           ) -> dict[str, tuple]:
    """Every model under ``folder`` solved by the library under ``root`` in a fresh process:
    ``{file: (seconds, sweeps, violation, objective, phases)}``. With ``phases`` (timed apart:
    the spies cost a little) ``phases`` lists the solve's methods in order, each
    ``[method, count, violation after, seconds]``: ``"active-set"`` with its face solves, or
    ``"cd"`` with its coordinate-descent sweeps (the library's own kernel; consecutive chunks
    summed); else it is empty."""
    code = _CHILD.format(root=root, folder=folder, threads=threads, phases=phases)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    if out.returncode:
        raise SystemExit(f"replay_model_solves: the replay at {root} failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("[")]
    return {r[0]: tuple(r[1:]) for r in rows}


def main(argv: list[str] | None = None) -> int:
    import compare_revisions as cr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="as compare_revisions.py's")
    ap.add_argument("--base", default=None, help="a git revision to replay the models under too")
    ap.add_argument("--min-seconds", type=float, default=0.1)
    ap.add_argument("--max-models", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the replays")
    ap.add_argument("--phases", action="store_true",
                    help="after the table, each model's solve by this tree's library phase by "
                    "phase (active-set face solves, coordinate-descent sweeps), in one more "
                    "replay")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="record the models into DIR/<case> and leave them there (to solve "
                    "them again by hand); default a temporary folder")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.max_models < 1:
        raise SystemExit("replay_model_solves: --repeats and --max-models must be at least 1")
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        roots = {"this": ROOT}
        if args.base:
            roots = {"base": cr.checkout(args.base, tmp), "this": ROOT}
        try:
            for spec in args.cases.split(","):
                folder = tempfile.mkdtemp(dir=tmp) if args.keep is None else \
                    os.path.join(args.keep, spec.replace(":", "-"))
                os.makedirs(folder, exist_ok=True)
                for old in glob.glob(os.path.join(folder, "model-*.npz")):
                    os.remove(old)  # a kept folder of an earlier run: only this run's models
                seen = record(cr.parse_case(spec), folder, args.min_seconds, args.max_models)
                print(f"[{spec}] {len(seen)} model solves of at least {args.min_seconds:g} s, "
                      f"the slowest {args.max_models} kept; best of {args.repeats}", flush=True)
                if not seen:
                    continue
                best: dict[str, dict[str, tuple]] = {name: {} for name in roots}
                for _ in range(args.repeats):
                    for name, root in roots.items():
                        for f, row in replay(root, folder, args.threads).items():
                            if f not in best[name] or row[0] < best[name][f][0]:
                                best[name][f] = row
                _report(folder, best)
                if args.phases:
                    _report_phases(replay(ROOT, folder, args.threads, phases=True))
        finally:
            if args.base:
                cr.remove_checkout(roots["base"])
    return 0


def _report(folder: str, best: dict[str, dict[str, tuple]]) -> None:
    """Print each model's row and the totals (``best``: library -> file -> replay row)."""
    names = list(best)
    head = f"{'model':>10} {'N':>5} {'start':>7} {'path s':>7}"
    for name in names:
        head += f" | {name + ' s':>8} {'sweeps':>6} {'viol/tol':>8} {'objective':>16}"
    print(head)
    totals = dict.fromkeys(names, 0.0)
    for f in sorted(glob.glob(os.path.join(folder, "model-*.npz"))):
        d = np.load(f)
        row = (f"{os.path.basename(f)[6:10]:>10} {d['Q'].shape[0]:>5} "
               f"{'factor' if bool(d['factored']) else 'cd':>7} {float(d['seconds']):7.2f}")
        for name in names:
            dt, sweeps, viol, obj = best[name][f][:4]
            totals[name] += dt
            row += f" | {dt:8.3f} {sweeps:6d} {viol / float(d['tol']):8.2g} {obj:16.10g}"
        print(row)
    line = "total: " + ", ".join(f"{name} {t:.2f} s" for name, t in totals.items())
    if "base" in totals and totals["this"] > 0:
        line += f"; base/this {totals['base'] / totals['this']:.2f}"
    print(line, flush=True)


def _report_phases(rows: dict[str, tuple]) -> None:
    """Print each model's solve phase by phase (``replay(..., phases=True)``'s rows)."""
    print("phases (this tree; active-set: face solves, cd: sweeps; violation after; seconds):")
    for f in sorted(rows):
        steps = "; ".join(f"{name} {count} -> {viol:.2e} ({sec:.2f} s)"
                          for name, count, viol, sec in rows[f][4])
        print(f"{os.path.basename(f)[6:10]:>10}  {steps or '(no phase)'}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
