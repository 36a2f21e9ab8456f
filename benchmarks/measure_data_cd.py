"""Measure: the proximal Newton model solved in data space against its Gram route.

For each case, one default path fit with the data-space route (``solvers/data_cd.py``) and one
with it switched off (``newton.data_pays`` answering no), interleaved, each in its own
process, ``--repeats`` rounds. Per fit: its wall seconds, and from the route's own calls the
seconds per example read by the data-space solves (``DataWork.entries``) and per
multiply-add of the fresh Hessians (``n N²/2`` each); their ratio times
``choice.WORK_HESSIAN`` is the price ``choice.DATA_ENTRY`` of one example read, in the
choice's units (run with ``--threads 1``: the choice's prices are one thread's). Also the
data-space solves' passes per solve and the Gram route's seconds in its model solves.

Cases as ``compare_revisions.py``: a ``bench_path.py`` geometry by name, or
``KIND:n:d:C:SEED[:NLAM[:EPS]]``.

    python benchmarks/measure_data_cd.py --cases wide,collinear:800:2000:10:5 [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(1, {here!r})
import bench_path as bp
import compare_revisions as cr
import sparse_probe.solvers.newton
from sparse_probe import fit_path
import sparse_probe.solvers.data_cd as dc
nw = sys.modules["sparse_probe.solvers.newton"]
st = dict(data_s=0.0, entries=0.0, solves=0, passes=0, hess_s=0.0, madds=0.0, qp_s=0.0, nN=0.0)
real_q, real_h, real_e = nw.data_qp, nw.hessian_blocks, nw.enet_qp

def data_qp(*a, **k):
    w = dc.DataWork()
    k["work"] = w
    t = time.perf_counter()
    r = real_q(*a, **k)
    st["data_s"] += time.perf_counter() - t
    st["entries"] += w.entries
    st["solves"] += 1
    st["passes"] += r[2]
    st["nN"] += a[1].shape[0] * float(a[2].numel() + a[1].shape[1])  # n (Nw + C)
    return r

def hessian_blocks(Xw, P, cls, col, XwT=None):
    t = time.perf_counter()
    r = real_h(Xw, P, cls, col, XwT)
    st["hess_s"] += time.perf_counter() - t
    st["madds"] += P.shape[0] * float(cls.numel()) ** 2 / 2
    return r

def enet_qp(*a, **k):
    t = time.perf_counter()
    r = real_e(*a, **k)
    st["qp_s"] += time.perf_counter() - t
    return r

nw.data_qp, nw.hessian_blocks, nw.enet_qp = data_qp, hessian_blocks, enet_qp
if not {on}:
    nw.data_pays = lambda n, N: False
kind, n, d, C, seed, nl, eps = cr.parse_case({case!r})
X, y = bp.make_geometry(kind, n, d, C, seed)
lams = bp.lambda_grid(X, y, C, nl, eps)
kw = {{}} if {threads!r} is None else {{"threads": {threads!r}}}
t = time.perf_counter()
fit_path(X, y, alpha=bp.ALPHA, lambdas=lams, progress=False, **kw)
st["seconds"] = time.perf_counter() - t
print(json.dumps(st))
"""


def run(case: str, on: bool, threads) -> dict:
    code = _CHILD.format(root=ROOT, here=HERE, case=case, on=on, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    from sparse_probe.solvers.choice import DATA_ENTRY, WORK_HESSIAN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    print(f"# python benchmarks/measure_data_cd.py {' '.join(argv or sys.argv[1:])}")
    print(f"threads: {args.threads or 'default'}; price in use: DATA_ENTRY = {DATA_ENTRY} "
          f"(WORK_HESSIAN = {WORK_HESSIAN} per Hessian multiply-add)")
    pooled = dict(data_s=0.0, entries=0.0, hess_s=0.0, madds=0.0)
    for case in args.cases.split(","):
        best = {True: None, False: None}
        for _ in range(args.repeats):
            for on in (True, False):
                r = run(case, on, args.threads)
                if best[on] is None or r["seconds"] < best[on]["seconds"]:
                    best[on] = r
        d, g = best[True], best[False]
        line = (f"{case:32s} data route {d['seconds']:6.2f} s  Gram only {g['seconds']:6.2f} s"
                f"  ratio {g['seconds'] / d['seconds']:5.2f}")
        if d["entries"]:
            line += (f"  | {d['solves']} data solves, {d['passes'] / d['solves']:.1f} passes "
                     f"each ({d['entries'] / d['nN']:.1f} full passes' worth), "
                     f"{1e9 * d['data_s'] / d['entries']:.3f} ns/example")
            pooled["data_s"] += d["data_s"]
            pooled["entries"] += d["entries"]
            if g["madds"]:  # the Hessians' price where the data route stood in for them
                pooled["hess_s"] += g["hess_s"]
                pooled["madds"] += g["madds"]
        if g["madds"]:
            line += (f"  | Gram: Hessians {g['hess_s']:.2f} s "
                     f"({1e9 * g['hess_s'] / g['madds']:.4f} ns/madd), "
                     f"model solves {g['qp_s']:.2f} s")
        print(line, flush=True)
    if pooled["entries"] and pooled["madds"]:
        e = 1e9 * pooled["data_s"] / pooled["entries"]
        h = 1e9 * pooled["hess_s"] / pooled["madds"]
        print(f"pooled over the cases the data route ran on: {e:.3f} ns per example read, "
              f"{h:.4f} ns per Hessian multiply-add of their Gram-only fits: "
              f"one example = {e / h:.1f} multiply-adds = {WORK_HESSIAN * e / h:.1f} in the "
              f"choice's units (DATA_ENTRY in use: {DATA_ENTRY})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
