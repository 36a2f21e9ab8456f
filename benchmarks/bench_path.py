"""Benchmark: the elastic-net path of a multinomial sparse head, ours vs its peers.

Same standardized float32 data for everyone (scikit-learn ``make_classification`` with a sparse
truth), α = 0.99, ``--n-lambdas`` λ log-spaced from λ_max to ``eps``·λ_max with warm starts.
Peers: glm_saga (the paper's solver, CPU, lr 0.1, batch 256, tol 1e-4, lookbehind 3, stock
DataLoader), python-glmnet (Fortran coordinate descent, lognet as python-glmnet calls it) and
scikit-learn saga (warm starts). Every solver's weights are evaluated by one shared float64
objective at the same λ; the gap at a λ is relative to the best objective any solver reached
there. Each peer runs in its own process with a time limit.

Presets (``--preset``):
  small   n=20,000  d=512   C=10   (peers finish in minutes)
  large   n=50,000  d=2,048 C=10   (the issue's main size)
  oocore  n=1,000,000 d=512 C=100 memmap on disk, ours only, low-memory mode: peak RSS

Targets (issue 2): ≥ 20× faster than glm_saga, ≥ 5× faster than glmnet and scikit-learn,
objective never worse than the best by more than 1e-5 relative.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PRESETS = {
    "small": dict(n=20_000, d=512, classes=10),
    "large": dict(n=50_000, d=2_048, classes=10),
    "oocore": dict(n=1_000_000, d=512, classes=100),
}
ALPHA = 0.99


def make_data(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized float32 features with a sparse truth (few informative features)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=d, n_informative=min(d // 8, 64),
                               n_redundant=0, n_classes=classes, n_clusters_per_class=1,
                               class_sep=1.0, random_state=seed)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    return X, y.astype(np.int64)


def lambda_grid(X, y, classes, n_lambdas, eps):
    Y = np.eye(classes)[y]
    lam_max = np.abs(X.astype(np.float64).T @ (Y - Y.mean(0))).max() / len(y) / ALPHA
    return lam_max * np.logspace(0, np.log10(eps), n_lambdas)


# ----------------------------------------------------------------------------- solvers
def run_ours(X, y, lams, device="cpu", tol=None):
    from sparse_probe import fit_path

    kw = {} if tol is None else {"tol": tol}
    t = time.perf_counter()
    p = fit_path(X, y, alpha=ALPHA, lambdas=lams, device=device, progress=False, **kw)
    return time.perf_counter() - t, [w for w in p.weights], p.intercepts, p.info


def run_glmnet(X, y, lams, classes):
    from glmnet._glmnet import lognet, lsolns

    n, d = X.shape
    t = time.perf_counter()
    Xf = X.astype(np.float64, order="F", copy=True)  # what python-glmnet does
    Y = np.asfortranarray(np.eye(classes)[y])
    bounds = np.asfortranarray(np.vstack([np.full(d, -np.inf), np.full(d, np.inf)]))
    lmu, a0, ca, ia, nin, *_rest, jerr = lognet(
        ALPHA, classes, Xf, Y, np.zeros((n, classes), order="F"), np.array([0], np.int32),
        np.ones(d), bounds, d + 1, 1.0, lams, 1e-7, d + 1, len(lams), 0, 1, 100000, 0)
    coefs = lsolns(d, ca[:, :, :lmu], ia, nin[:lmu])
    el = time.perf_counter() - t
    return el, [coefs[:, :, i].T.astype(np.float32) for i in range(lmu)], a0[:, :lmu].T, {"jerr": int(jerr)}


def run_sklearn(X, y, lams, tol):
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    est = LogisticRegression(penalty="elasticnet", solver="saga", l1_ratio=ALPHA, tol=tol,
                             max_iter=1000, warm_start=True)
    W, B = [], []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lam in lams:
            est.set_params(C=1.0 / (lam * n))
            est.fit(X, y)
            W.append(est.coef_.astype(np.float32).copy())
            B.append(est.intercept_.copy())
    return time.perf_counter() - t, W, np.asarray(B), {"tol": tol}


def run_glm_saga(X, y, lams, classes, eps):
    import contextlib
    import io

    import torch
    from glm_saga.elasticnet import IndexedTensorDataset, glm_saga
    from torch.utils.data import DataLoader

    ds = IndexedTensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = DataLoader(ds, batch_size=256, shuffle=True)
    linear = torch.nn.Linear(X.shape[1], classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = glm_saga(linear, loader, 0.1, 2000, ALPHA, k=len(lams), epsilon=eps, tol=1e-4,
                       lookbehind=3, do_zero=False, n_classes=classes)
    el = time.perf_counter() - t
    W = [p["weight"].numpy() for p in out["path"]]
    B = np.asarray([p["bias"].numpy() for p in out["path"]])
    return el, W, B, {"lambdas": [float(p["lam"]) for p in out["path"]]}


def _worker(name, args, out_file):
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    X = np.load(args["X"], mmap_mode="r")
    X = np.ascontiguousarray(X)
    y = np.load(args["y"])
    lams = np.asarray(args["lams"])
    if name == "glmnet":
        res = run_glmnet(X, y, lams, args["classes"])
    elif name == "sklearn":
        res = run_sklearn(X, y, lams, args["sklearn_tol"])
    elif name == "glm_saga":
        res = run_glm_saga(X, y, lams, args["classes"], args["eps"])
    else:
        tol = name.partition("tol=")[2].rstrip(")")
        res = run_ours(X, y, lams, args.get("device", "cpu"), float(tol) if tol else None)
    el, W, B, info = res
    np.savez(out_file, time=el, W=np.stack(W), B=np.asarray(B), info=json.dumps(info))


def run_in_process(name, args, timeout):
    ctx = mp.get_context("spawn")
    with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as fh:
        out_file = fh.name
    proc = ctx.Process(target=_worker, args=(name, args, out_file))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return None
    if proc.exitcode != 0:
        raise RuntimeError(f"{name} failed with exit code {proc.exitcode}")
    z = np.load(out_file)
    os.unlink(out_file)
    return float(z["time"]), z["W"], z["B"], json.loads(str(z["info"]))


# ----------------------------------------------------------------------------- report
def objectives(X, y, W, B, lams):
    from sparse_probe.objective import objective_f64

    return np.array([objective_f64(X, y, W[i], B[i], lams[i], ALPHA) for i in range(len(W))])


def one_pass_seconds(X, classes, device="cpu", repeats=5):
    """Time of one X^T R product (n×d by n×C), the unit of a 'full-data pass'."""
    import torch

    from sparse_probe.solvers.products import rt_x

    Xt = torch.from_numpy(X).to(device)
    R = torch.randn(X.shape[0], classes, device=device)
    rt_x(R, Xt)
    t = time.perf_counter()
    for _ in range(repeats):
        rt_x(R, Xt).sum().item()
    return (time.perf_counter() - t) / repeats


def bench_in_memory(cfg, args):
    X, y = make_data(cfg["n"], cfg["d"], cfg["classes"], args.seed)
    lams = lambda_grid(X, y, cfg["classes"], args.n_lambdas, args.eps)
    tmp = Path(tempfile.mkdtemp(prefix="bench-path-"))
    try:
        _bench_in_memory(cfg, args, X, y, lams, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_in_memory(cfg, args, X, y, lams, tmp: Path):
    np.save(tmp / "X.npy", X)
    np.save(tmp / "y.npy", y)
    wargs = dict(X=str(tmp / "X.npy"), y=str(tmp / "y.npy"), lams=lams.tolist(),
                 classes=cfg["classes"], eps=args.eps, sklearn_tol=args.sklearn_tol,
                 device=args.device)
    print(f"data: n={cfg['n']} d={cfg['d']} C={cfg['classes']} float32 standardized, "
          f"{len(lams)} λ from {lams[0]:.4e} to {lams[-1]:.4e}, α={ALPHA}", flush=True)
    results = {}
    ours_names = [f"ours(tol={t})" for t in args.tol] if args.tol else ["ours"]
    for name in [*ours_names, *args.peers]:
        print(f"running {name} ...", flush=True)
        r = run_in_process(name, wargs, None if name.startswith("ours") else args.peer_timeout)
        if r is None:
            print(f"  {name}: did not finish within {args.peer_timeout:.0f} s", flush=True)
            results[name] = None
            continue
        el, W, B, info = r
        lam_eval = lams[: len(W)]
        results[name] = dict(time=el, obj=objectives(X, y, W, B, lam_eval),
                             nnz_last=int((np.abs(W[-1]) > 0).sum()), n=len(W), info=info)
        print(f"  {name}: {el:.1f} s for {len(W)} λ", flush=True)
    done = {k: v for k, v in results.items() if v is not None}
    L = min(v["n"] for v in done.values())
    best = np.min(np.stack([v["obj"][:L] for v in done.values()]), axis=0)
    unit = one_pass_seconds(X, cfg["classes"], args.device)
    for name in ours_names:
        print(f"\none full-data pass (X^T R) = {unit * 1e3:.1f} ms; {name} path = "
              f"{results[name]['time'] / unit:.0f} full-data passes (incl. KKT checks; info: "
              f"{results[name]['info'].get('full_passes')} KKT passes)")
    short = [n.replace("ours", "").strip("()") or "ours" for n in ours_names]
    head = "".join(f" {'/ ' + sname:>14}" for sname in short)
    print("\ntime ratios: each solver's time / ours at each tolerance (columns)")
    print(f"\n{'solver':>16} {'time (s)':>10} {'max rel gap':>12} {'nnz last':>9}{head}")
    for name, v in results.items():
        if v is None:
            ratios = "".join(f" {'> ' + format(args.peer_timeout / results[o]['time'], '.1f'):>14}"
                             for o in ours_names)
            print(f"{name:>16} {'> ' + str(int(args.peer_timeout)):>10} {'-':>12} {'-':>9}{ratios}")
            continue
        gap = np.max((v["obj"][:L] - best) / np.abs(best))
        ratios = "".join(f" {v['time'] / results[o]['time']:>14.1f}" for o in ours_names)
        print(f"{name:>16} {v['time']:>10.1f} {gap:>12.2e} {v['nnz_last']:>9d}{ratios}")
    print("\ntargets: glm_saga/ours >= 20, glmnet/ours >= 5, sklearn/ours >= 5; our gap <= 1e-5")


def bench_oocore(cfg, args):
    tmp = Path(tempfile.mkdtemp(prefix="bench-oocore-"))
    try:
        _bench_oocore(cfg, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_oocore(cfg, args, tmp: Path):
    f = tmp / "X.npy"
    n, d, C = cfg["n"], cfg["d"], cfg["classes"]
    print(f"writing a {n * d * 4 / 2**30:.1f} GiB .npy ({n}×{d}, C={C}) ...", flush=True)
    rng = np.random.default_rng(args.seed)
    centers = np.zeros((C, d), np.float32)
    for k in range(C):
        centers[k, rng.choice(d, 3, replace=False)] = 2.0
    y = rng.integers(0, C, n)
    # plain writes, not a memmap: pages written through a mapping count toward this process's
    # RSS high-water mark, which a forked child inherits (see below)
    with open(f, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                 "fortran_order": False, "shape": (n, d)})
        for s in range(0, n, 100_000):
            e = min(n, s + 100_000)
            (centers[y[s:e]] + rng.standard_normal((e - s, d), dtype=np.float32)).tofile(fh)
    np.save(tmp / "y.npy", y)
    # The child reports VmHWM, the high-water mark of its own address space. getrusage's
    # ru_maxrss would not do: on Linux a forked child starts with its parent's high-water mark
    # and keeps it across exec.
    code = (
        "import numpy as np, time, resource\n"
        "from sparse_probe import fit_path\n"
        f"y=np.load('{tmp / 'y.npy'}')\n"
        "t=time.perf_counter()\n"
        f"p=fit_path('{f}', y, n_lambdas={args.oocore_lambdas}, eps={args.oocore_eps}, "
        "low_memory=True, cache_bytes=256*2**20, progress=True)\n"
        "print('points', len(p), 'nnz', list(p.nnz), 'seconds', round(time.perf_counter()-t,1))\n"
        "print('max KKT violation / tolerance', "
        "float(np.max(p.kkt_violation / np.asarray(p.info['tol_per_point']))))\n"
        "try:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print('peak_rss_mib', int(hwm.split()[1]) / 1024)\n"
        "except OSError:\n"
        "    print('peak_rss_mib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(r.stdout)
    if r.returncode:
        print(r.stderr[-2000:])
        raise SystemExit(1)
    rss = float(r.stdout.strip().split()[-1])
    print(f"peak RSS {rss:.0f} MiB for a {n * d * 4 / 2**20:.0f} MiB feature file "
          f"(target < 2048 MiB): {'OK' if rss < 2048 else 'OVER'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--n", type=int)
    ap.add_argument("--d", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--n-lambdas", type=int, default=100)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--peers", default="glmnet,sklearn,glm_saga",
                    help="comma-separated subset of glmnet,sklearn,glm_saga ('' for none)")
    ap.add_argument("--peer-timeout", type=float, default=1800.0, help="seconds per peer")
    ap.add_argument("--sklearn-tol", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tol", default="",
                    help="comma-separated KKT tolerances for our solver, one run each "
                         "(default: fit_path's default); ratios are against the first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oocore-lambdas", type=int, default=20)
    ap.add_argument("--oocore-eps", type=float, default=0.2)
    args = ap.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    args.tol = [t for t in args.tol.split(",") if t]
    cfg = dict(PRESETS[args.preset])
    for k in ("n", "d", "classes"):
        if getattr(args, k):
            cfg[k] = getattr(args, k)
    if args.preset == "oocore":
        bench_oocore(cfg, args)
    else:
        bench_in_memory(cfg, args)


if __name__ == "__main__":
    main()
