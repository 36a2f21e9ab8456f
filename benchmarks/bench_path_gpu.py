"""The fitter's path on a GPU: in-memory timings, and the ImageNet-scale streamed run vs glm_saga.

Two kinds of sizes (``--sizes``, alias ``--size``, comma-separated):

**In memory** (``small``, ``large``, ``wide``; the default): ``bench_path.py``'s data moved to
the GPU as one tensor. Prints, per size, the wall time of the full path, iterations, nnz at the
last λ, the time of one full-data pass on the GPU and the path's cost in such passes, plus the
objective agreement with a float64 CPU evaluation at a few points. Skipped with a note where no
CUDA device is present. CPU peers are timed by ``bench_path.py``.

**Streamed** (``imagenet``: n = 1,281,167 (ImageNet's train size), d = 2,048, C = 1,000, 100 λ
down to 1e-3·λ_max; ``imagenet-tenth``: the same with n/10, a short device check; ``tiny``: a
CPU-sized stand-in). Synthetic features shaped like pooled deep features (nonnegative after a
ReLU, strongly correlated through a shared low-rank part, class-dependent through a shift in
that part and a few class-selective units per class) are written chunk by chunk to a ``.npy``
(``--dtype float16`` by default, or ``float32``; never the whole array in RAM) and read back
as a memmap by both solvers:

- **ours**: ``fit_path`` on the memmap with ``low_memory=True`` (the out-of-core mode: row
  chunks are read from the file and moved to the device, the working-set columns are cached on
  the device up to ``--cache-gib``, nothing of size n×C is kept), α = 0.99, default tolerance;
  with ``--resident auto`` (the default, as ``fit_path``'s) the file is copied to a GPU once
  in its own dtype where it fits a quarter of the free memory, and every later pass runs
  there; ``--resident off`` streams it from the host on every pass;
- **glm_saga** (the paper's solver) with the paper's settings as ``bench_path.py`` runs it
  (lr 0.1, batch 256, tol 1e-4, lookbehind 3, up to 2,000 epochs per λ, a stock shuffling
  DataLoader, ``do_zero=False``, the same α, k = the number of λ, ε = the same eps), on the
  same device, in its own process, reading the same memmap and normalized with our training
  mean/std (its ``preprocess``), checkpointing every λ. It is stopped after ``--peer-budget``
  seconds; its path counts as far as it got.

Printed (and written with ``--out`` as JSON): both solvers' time to each λ, the float64
objective (``sparse_probe.objective_f64``) of both at a few λ with each one's gap to the best
there, nnz at those λ, and where the data are small enough (``--reference auto``) a float64
reference optimum at those λ (scipy L-BFGS-B on the split form W = P - N from zero,
independent of both solvers). Memory: before anything runs, a plan of each solver's peak
device memory is compared with the device (``torch.cuda.get_device_properties().total_memory``;
on CPU the machine's RAM) and the script stops with an error if a plan does not fit; after
each run the measured peak (``torch.cuda.max_memory_allocated``; on CPU the process's peak
RSS) is printed against the plan and the device.

Without CUDA (or with ``--device cpu``), streamed sizes larger than ``tiny`` run as ``tiny`` on
CPU; ``tests/test_bench_path_gpu.py`` runs that end to end so the script cannot rot.

Status: first run on an H200 on 2026-12-04 (``results/gpu-check-h200-2026-12-04.txt``): the
data (4.89 GiB float16) took 103 s to write; the memory plans fit (ours 20.8 GiB, glm_saga
9.1 GiB of 139.8 GiB) and our peak at λ #0 was 0.37 GiB; but our fit spent 139 s reaching
λ #0, converting the file's rows with numpy on one CPU core (a profile put 55% of the time
there), and the call ended during glm_saga's run, so the two have not been compared yet.
The conversion now runs in torch on the device (``sparse_probe.data.block_tensor``); that
change has not been measured on a GPU. ``--our-budget`` and ``--peer-budget`` give both
solvers the same time; the points compared are those both reached. Expectations, not
measured: glm_saga makes 5,005 steps of 256 examples per epoch, at least 4 epochs per λ, so
``--peer-budget`` (default 3,600 s) decides how far along the path it gets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_path import ALPHA, lambda_grid, make_data
from deep_features import write_deep_features

SIZES = {
    "small": dict(n=20_000, d=512, classes=10, n_lambdas=100, eps=1e-3),
    "large": dict(n=50_000, d=2_048, classes=10, n_lambdas=100, eps=1e-3),
    "wide": dict(n=200_000, d=2_048, classes=100, n_lambdas=30, eps=5e-2),
}

#: streamed sizes: data on disk, both solvers read the memmap
STREAMED = {
    "imagenet": dict(n=1_281_167, d=2_048, classes=1_000, n_lambdas=100, eps=1e-3,
                     dtype="float16", cache_gib=16.0, peer_budget=3600.0),
    "imagenet-tenth": dict(n=128_117, d=2_048, classes=1_000, n_lambdas=100, eps=1e-3,
                           dtype="float16", cache_gib=16.0, peer_budget=600.0),
    "tiny": dict(n=1_000, d=24, classes=6, n_lambdas=8, eps=5e-2,
                 dtype="float16", cache_gib=None, peer_budget=600.0),
}

#: glm_saga's settings, the paper's, as ``bench_path.run_glm_saga`` uses them
GLM_SAGA = dict(lr=0.1, batch_size=256, max_epochs=2000, tol=1e-4, lookbehind=3)

#: a plan must leave this share of the device free (allocator fragmentation, CUDA context)
HEADROOM = 0.9
_REFERENCE_MAX_BYTES = 256 * 2**20  # float64 in-RAM reference only below this


# ----------------------------------------------------------------------------- in memory
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


def bench_in_memory(names: list[str]) -> dict:
    """The original GPU timings: ``bench_path.py``'s data as one GPU tensor."""
    from sparse_probe import fit_path, objective_f64

    if not torch.cuda.is_available():
        print(f"no CUDA device: GPU timing of {','.join(names)} skipped")
        return {}
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    results = {}
    for name in names:
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
    return results


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


# ----------------------------------------------------------------------------- synthetic data
# ----------------------------------------------------------------------------- memory
def device_memory(device: torch.device) -> tuple[int, int]:
    """``(free, total)`` bytes of ``device``: the GPU's (``torch.cuda.mem_get_info``, total as
    ``get_device_properties().total_memory``), or the machine's available and total RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), int(torch.cuda.get_device_properties(device).total_memory)
    total = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    free = total
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable"):
                free = int(line.split()[1]) * 1024
    return free, total


def _allowance(device: torch.device) -> int:
    """Fixed share of a plan: CUDA's workspaces on a GPU; the interpreter and torch's
    libraries on CPU, where the measured peak is the whole process's resident memory."""
    return 256 * 2**20 if device.type == "cuda" else 1024 * 2**20


def plan_ours(n: int, d: int, C: int, chunk_rows: int, cache_bytes: int,
              device: torch.device, resident_bytes: int = 0) -> dict[str, int]:
    """Peak device memory of ``fit_path(..., low_memory=True)`` on a streamed file, by part.

    The working-set cache (float32 columns, n × m, at most ``cache_bytes``) is counted twice:
    ``set_working_set`` builds the grown cache before it frees the old one. Per row chunk: the
    raw chunk and its standardized/gathered copies (float32 and a float64 copy), float64 logits
    and softmax temporaries (n_chunk × C). State: O(C·d) float64 arrays (weights, gradients,
    directions) and OWL-QN's L-BFGS pairs. Plus labels and a fixed allowance for CUDA's
    workspaces; and the copy of X on the device where the fit keeps one (``resident_bytes``,
    ``fit_path(resident=...)``). Deliberately generous: it is a bound, not an estimate.
    """
    from sparse_probe.solvers.lbfgs import history_for

    cache = min(int(cache_bytes), n * d * 4)
    chunk_rows = min(chunk_rows, n)
    p = C * d + C
    return {
        "labels": n * 8,
        "working-set cache (x2 while it grows)": 2 * cache,
        "row-chunk temporaries": chunk_rows * (d * (4 + 4 + 4 + 8) + C * (4 * 8 + 2 * 4)),
        "O(C·d) state": 16 * C * d * 8,
        "L-BFGS pairs": 2 * history_for(p) * p * 4,
        "allowance": _allowance(device),
        "resident copy of X": int(resident_bytes),
    }


def plan_glm_saga(n: int, d: int, C: int, batch: int, device: torch.device) -> dict[str, int]:
    """Peak device memory of glm_saga's ``train_saga``, by part.

    Its SAGA table holds a float32 (n, C) gradient scalar per example and class; each step
    forms ``a[:, :, None] * X[:, None, :]`` twice, (batch, C, d) float32 each, of which two
    may be alive at once; plus O(C·d) float32 state and a fixed allowance.
    """
    return {
        "SAGA table": n * C * 4,
        "per-batch (B, C, d) products": 2 * batch * C * d * 4,
        "O(C·d) state": 24 * C * d * 4,
        "allowance": _allowance(device),
    }


def check_plan(name: str, plan: dict[str, int], free: int, total: int,
               device: torch.device) -> int:
    """Total of ``plan``; stop with an error naming the parts when it does not fit.

    Raises
    ------
    SystemExit
        When the plan exceeds ``HEADROOM`` of the device's ``total``, or its ``free`` memory
        (other processes hold the rest).
    """
    need = int(sum(plan.values()))
    if need > HEADROOM * total or need > free:
        parts = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in plan.items())
        raise SystemExit(f"memory plan for {name} does not fit {device}: needs {need / 2**30:.2f} "
                         f"GiB, the device has {total / 2**30:.2f} GiB (usable {HEADROOM:.0%}), "
                         f"{free / 2**30:.2f} GiB free; {parts}")
    return need


def peak_rss_bytes() -> int:
    """This process's own peak resident memory (``VmHWM``; ``ru_maxrss`` where /proc is
    missing)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- solvers
def _resident_bytes(n: int, d: int, itemsize: int, device: torch.device,
                    resident: bool | None, free: int) -> int:
    """Bytes of the copy of X that ``fit_path(resident=resident)`` will keep on ``device``."""
    from sparse_probe.fit import resident_by_default

    nbytes = n * d * itemsize
    if resident is None:
        resident = resident_by_default(nbytes, device, free)
    return nbytes if resident else 0


def run_ours_streamed(xfile: Path, y: np.ndarray, cfg: dict, device: torch.device,
                      cache_bytes: int, progress: bool, budget: float | None = None,
                      resident: bool | None = None):
    """``fit_path`` on the memmap in the low-memory (streamed) mode, stopped after the first
    point past ``budget`` seconds when one is given (``fit_path(max_seconds=...)``).

    Returns ``(path, seconds, peak bytes, what the peak measures)``: on CUDA the caching
    allocator's peak of allocated memory, with the peak it held from the device (reserved)
    named beside it; on CPU the process's peak RSS.
    """
    from sparse_probe import fit_path

    X = np.load(xfile, mmap_mode="r")
    if device.type == "cuda":  # CUDA context, cuBLAS handles and kernels before the clock
        g = torch.Generator().manual_seed(0)
        Xw = torch.rand((2048, X.shape[1]), generator=g).to(device)
        fit_path(Xw, torch.arange(2048) % 2, n_lambdas=3, eps=0.5, device=device, progress=False)
        del Xw
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t = time.perf_counter()
    p = fit_path(X, y, alpha=ALPHA, n_lambdas=cfg["n_lambdas"], eps=cfg["eps"], device=device,
                 low_memory=True, cache_bytes=cache_bytes, max_seconds=budget, resident=resident,
                 progress=progress)
    _sync(device)
    seconds = time.perf_counter() - t
    if device.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(device))
        kind = (f"torch.cuda.max_memory_allocated; reserved "
                f"{torch.cuda.max_memory_reserved(device) / 2**30:.2f} GiB")
    else:
        peak, kind = peak_rss_bytes(), "peak RSS of the benchmark process (VmHWM)"
    return p, seconds, peak, kind


def _glm_saga_child(xfile: str, yfile: str, mean: np.ndarray, scale: np.ndarray, classes: int,
                    n_lambdas: int, eps: float, device: str, workdir: str) -> None:
    """glm_saga's path in this (spawned) process; checkpoints and memory peaks in ``workdir``."""
    from glm_saga.elasticnet import IndexedTensorDataset, NormalizedRepresentation, glm_saga
    from torch.utils.data import DataLoader

    work = Path(workdir)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    # a read-only memmap (torch warns; glm_saga never writes) and glm_saga's own softmax call
    warnings.filterwarnings("ignore", message=".*(not writable|Implicit dimension choice).*")
    X = torch.from_numpy(np.load(xfile, mmap_mode="r"))
    y = torch.from_numpy(np.load(yfile))
    loader = DataLoader(IndexedTensorDataset(X, y), batch_size=GLM_SAGA["batch_size"], shuffle=True)
    linear = torch.nn.Linear(X.shape[1], classes).to(dev)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    pre = NormalizedRepresentation(None, mean=torch.as_tensor(mean, dtype=torch.float32, device=dev),
                                   std=torch.as_tensor(scale, dtype=torch.float32, device=dev),
                                   device=linear.weight.device)
    stop = threading.Event()

    def record_memory() -> None:
        while True:
            if dev.type == "cuda":
                peak = torch.cuda.max_memory_allocated(dev)
                kind = (f"torch.cuda.max_memory_allocated; reserved "
                        f"{torch.cuda.max_memory_reserved(dev) / 2**30:.2f} GiB")
            else:
                peak, kind = peak_rss_bytes(), "peak RSS of glm_saga's process (VmHWM)"
            tmp = work / "memory.json.tmp"
            tmp.write_text(json.dumps({"peak_bytes": int(peak), "kind": kind}))
            os.replace(tmp, work / "memory.json")
            if stop.wait(2.0):
                return

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    thread = threading.Thread(target=record_memory, daemon=True)
    thread.start()
    (work / "start.json").write_text(json.dumps({"t0": time.time()}))
    with open(work / "glm_saga.log", "w") as log, contextlib.redirect_stdout(log):
        glm_saga(linear, loader, GLM_SAGA["lr"], GLM_SAGA["max_epochs"], ALPHA, preprocess=pre,
                 k=n_lambdas, epsilon=eps, tol=GLM_SAGA["tol"], lookbehind=GLM_SAGA["lookbehind"],
                 do_zero=False, n_classes=classes, checkpoint=str(work / "ckpt"))
    _sync(dev)
    stop.set()
    thread.join()
    (work / "done").touch()


def run_glm_saga_streamed(xfile: Path, yfile: Path, mean: np.ndarray, scale: np.ndarray,
                          cfg: dict, device: torch.device, budget: float, workdir: Path) -> dict:
    """glm_saga in its own process for at most ``budget`` seconds; its path as far as it got.

    Returns a dict: ``reached`` (λ finished), ``finished``, ``time`` (seconds from its start
    to each finished λ, from the checkpoint files' times), ``lambdas``, ``weights`` (C, d)
    and ``biases`` (C,) per finished λ, ``peak_bytes``/``peak_kind``, ``seconds`` (its
    process's wall time, start-up included).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_glm_saga_child, args=(
        str(xfile), str(yfile), mean, scale, cfg["classes"], cfg["n_lambdas"], cfg["eps"],
        str(device), str(workdir)))
    t = time.perf_counter()
    proc.start()
    proc.join(max(0.0, budget))
    killed = proc.is_alive()
    if killed:
        proc.terminate()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    seconds = time.perf_counter() - t
    if not killed and proc.exitcode != 0:
        log = workdir / "glm_saga.log"
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise RuntimeError(f"glm_saga failed with exit code {proc.exitcode}\n{tail}")
    out = dict(reached=0, finished=False, killed=killed, budget=budget, seconds=seconds,
               time=[], lambdas=[], weights=[], biases=[], peak_bytes=None, peak_kind=None)
    start = workdir / "start.json"
    t0 = json.loads(start.read_text())["t0"] if start.is_file() else None
    for i in range(cfg["n_lambdas"]):
        f = workdir / "ckpt" / f"params{i}.pth"
        if not f.is_file() or t0 is None:
            break
        try:
            rec = torch.load(f, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError):
            break  # a file cut short by the kill: the path ends before it
        out["time"].append(f.stat().st_mtime - t0)
        out["lambdas"].append(float(rec["lam"]))
        out["weights"].append(rec["weight"].numpy().astype(np.float32))
        out["biases"].append(rec["bias"].numpy().astype(np.float64))
    out["reached"] = len(out["weights"])
    out["finished"] = (workdir / "done").is_file() and out["reached"] == cfg["n_lambdas"]
    mem = workdir / "memory.json"
    if mem.is_file():
        with contextlib.suppress(ValueError):
            m = json.loads(mem.read_text())
            out["peak_bytes"], out["peak_kind"] = m["peak_bytes"], m["kind"]
    return out


def reference_solution(Xs: np.ndarray, y: np.ndarray, C: int, lam: float,
                       alpha: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """A float64 optimum of the objective at ``lam``, independent of both solvers.

    scipy's L-BFGS-B from zero on the smooth bound-constrained form ``W = P - N``, ``P, N >= 0``
    (the L1 term becomes linear). ``Xs`` (n, d) float64 standardized features.

    Returns
    -------
    W : ndarray (C, d), b : ndarray (C,), converged : bool
    """
    from scipy.optimize import minimize

    n, d = Xs.shape
    Y = np.zeros((n, C))
    Y[np.arange(n), y] = 1.0
    l1, l2, k = lam * alpha, lam * (1.0 - alpha), C * d

    def f(v: np.ndarray) -> tuple[float, np.ndarray]:
        W = (v[:k] - v[k : 2 * k]).reshape(C, d)
        b = v[2 * k :]
        z = Xs @ W.T + b
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(zmax[:, 0] + np.log(s[:, 0]) - z[np.arange(n), y]))
        R = e / s - Y
        G = (R.T @ Xs) / n + l2 * W
        value = loss + l1 * float(v[: 2 * k].sum()) + 0.5 * l2 * float((W * W).sum())
        return value, np.concatenate([(G + l1).ravel(), (l1 - G).ravel(), R.mean(axis=0)])

    bounds = [(0.0, None)] * (2 * k) + [(None, None)] * C
    res = minimize(f, np.zeros(2 * k + C), jac=True, method="L-BFGS-B", bounds=bounds,
                   options=dict(maxiter=100_000, maxfun=200_000, maxcor=30, ftol=1e-16, gtol=1e-11))
    W = (res.x[:k] - res.x[k : 2 * k]).reshape(C, d)
    return W, res.x[2 * k :], bool(res.success)


# ----------------------------------------------------------------------------- streamed bench
def check_points(L: int, reached: int, n_checks: int) -> list[int]:
    """A few path indices spread over the path, plus glm_saga's last and middle point."""
    idx = set(np.unique(np.round(np.linspace(0, L - 1, max(1, n_checks))).astype(int)).tolist())
    if reached > 0:
        idx |= {reached - 1, (reached - 1) // 2}
    return sorted(i for i in idx if 0 <= i < L)


def bench_streamed(name: str, cfg: dict, args, device: torch.device) -> dict:
    """Generate (or reuse) the memmap, run ours and glm_saga, evaluate, print; the results."""
    n, d = cfg["n"], cfg["d"]
    dtype = args.dtype or cfg["dtype"]
    budget = cfg["peer_budget"] if args.peer_budget is None else args.peer_budget
    cache_gib = args.cache_gib if args.cache_gib is not None else cfg["cache_gib"]
    # tiny: half the columns fit the cache, so both the cached and the streamed branch run
    cache_bytes = int(cache_gib * 2**30) if cache_gib is not None else n * d * 4 // 2
    peers = "glm_saga" in args.peers
    tmp_root = None
    if args.data_dir:
        folder = Path(args.data_dir) / f"{name}-{dtype}-seed{args.seed}"
    else:
        tmp_root = Path(tempfile.mkdtemp(prefix=f"bench-gpu-{name}-"))
        folder = tmp_root / "data"
    try:
        return _bench_streamed(name, cfg, args, device, dtype, budget, cache_bytes, peers, folder)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


def _bench_streamed(name, cfg, args, device, dtype, budget, cache_bytes, peers, folder) -> dict:
    from sparse_probe import objective_f64
    from sparse_probe.data import FeatureSource

    n, d, C = cfg["n"], cfg["d"], cfg["classes"]
    itemsize = np.dtype(dtype).itemsize
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    free, total = device_memory(device)
    print(f"\n{name}: n={n:,} d={d:,} C={C:,} {dtype} memmap ({n * d * itemsize / 2**30:.2f} GiB), "
          f"{cfg['n_lambdas']} λ down to {cfg['eps']:g}·λ_max, α={ALPHA}, on {device} ({dev_name}), "
          f"torch {torch.__version__}", flush=True)

    # memory plans first: refuse before hours of work, not after
    chunk_rows = FeatureSource(np.zeros((1, d), np.float32)).chunk_rows  # the default for this d
    resident = {"auto": None, "on": True, "off": False}[args.resident]
    p_ours = plan_ours(n, d, C, chunk_rows, cache_bytes, device,
                       _resident_bytes(n, d, itemsize, device, resident, free))
    need_ours = check_plan("ours", p_ours, free, total, device)
    p_saga = plan_glm_saga(n, d, C, GLM_SAGA["batch_size"], device) if peers else {}
    need_saga = check_plan("glm_saga", p_saga, free, total, device) if peers else 0
    print(f"memory plan: ours {need_ours / 2**30:.2f} GiB"
          + (f", glm_saga {need_saga / 2**30:.2f} GiB" if peers else "")
          + f" of {total / 2**30:.2f} GiB ({'GPU' if device.type == 'cuda' else 'RAM'}, "
            f"{free / 2**30:.2f} GiB free): fits",
          flush=True)

    t = time.perf_counter()
    xf, yf, reused = write_deep_features(folder, n, d, C, dtype, args.seed, progress=args.progress)
    gen_s = time.perf_counter() - t
    print(f"data: {xf} ({'reused' if reused else f'written in {gen_s:.1f} s'})", flush=True)
    y = np.load(yf)

    # ours
    try:
        p, secs, peak, kind = run_ours_streamed(xf, y, cfg, device, cache_bytes, args.progress,
                                                args.our_budget, resident)
    except torch.cuda.OutOfMemoryError as exc:
        raise SystemExit(f"ours ran out of device memory (plan {need_ours / 2**30:.2f} GiB of "
                         f"{total / 2**30:.2f} GiB): {exc}") from exc
    L = len(p)
    tol_ratio = float(np.max(p.kkt_violation / np.asarray(p.info["tol_per_point"])))
    if p.info.get("stopped") == "max_seconds":
        print(f"ours: stopped by --our-budget {args.our_budget:g} s after λ #{L - 1}", flush=True)
    print(f"ours: X {'copied to' if p.info.get('resident') else 'streamed from the host to'} "
          f"{device} (--resident {args.resident})", flush=True)
    print(f"ours: {secs:.1f} s for {L} λ, {int(p.n_iter.sum())} iterations, "
          f"{p.info.get('full_passes')} full-data passes, nnz last {int(p.nnz[-1])}, "
          f"max KKT violation / tolerance {tol_ratio:.2f}", flush=True)
    print(f"ours memory: peak {peak / 2**30:.2f} GiB ({kind}) of {total / 2**30:.2f} GiB, "
          f"plan {need_ours / 2**30:.2f} GiB"
          + ("" if peak <= need_ours else "  WARNING: peak above the plan, fix plan_ours"),
          flush=True)
    weights_bytes, dense_bytes = p.weights.nbytes, L * C * d * 8
    print(f"ours: the path's weights hold {weights_bytes / 2**20:.1f} MiB of host memory "
          f"({dense_bytes / 2**20:.1f} MiB as dense float64)", flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # glm_saga
    saga = None
    if peers:
        print(f"glm_saga: running for at most {budget:.0f} s ...", flush=True)
        saga = run_glm_saga_streamed(xf, yf, p.mean, p.scale, cfg, device, budget,
                                     folder.parent / f"glm_saga-{name}-{os.getpid()}")
        state = "finished" if saga["finished"] else f"stopped at the {budget:.0f} s budget"
        last = f", last at {saga['time'][-1]:.1f} s" if saga["reached"] else ""
        print(f"glm_saga: {saga['reached']} of {cfg['n_lambdas']} λ ({state}){last}", flush=True)
        if saga["peak_bytes"] is not None:
            print(f"glm_saga memory: peak {saga['peak_bytes'] / 2**30:.2f} GiB ({saga['peak_kind']}) "
                  f"of {total / 2**30:.2f} GiB, plan {need_saga / 2**30:.2f} GiB"
                  + ("" if saga["peak_bytes"] <= need_saga else
                     "  WARNING: peak above the plan, fix plan_glm_saga"), flush=True)
        if saga["reached"]:
            mis = max(abs(a / b - 1.0) for a, b in zip(saga["lambdas"], p.lambdas, strict=False))
            print(f"glm_saga's own λ grid vs ours: largest relative difference {mis:.1e} "
                  "(both are evaluated at our λ)", flush=True)
        shutil.rmtree(folder.parent / f"glm_saga-{name}-{os.getpid()}", ignore_errors=True)
    reached = saga["reached"] if saga else 0
    checks = check_points(L, min(reached, L), args.checks)

    # float64 reference where the data fit in RAM as float64
    ref_on = args.reference == "on" or (args.reference == "auto" and n * d * 8 <= _REFERENCE_MAX_BYTES)
    Xs = None
    if ref_on:
        src = FeatureSource(np.load(xf, mmap_mode="r"))
        Xs = np.empty((n, d))
        for s, block in src.chunks():
            Xs[s : s + block.shape[0]] = block
        Xs = (Xs - p.mean) / p.scale
    Xm = np.load(xf, mmap_mode="r")
    rows = []
    for i in checks:
        lam = float(p.lambdas[i])
        entry = {"index": i, "lambda": lam, "ours": {
            "objective": objective_f64(Xm, y, p.weights[i], p.intercepts[i], lam, ALPHA,
                                       mean=p.mean, scale=p.scale),
            "objective_reported": float(p.objective[i]), "nnz": int(p.nnz[i]),
            "time": float(p.time[i]), "kkt_over_tol": float(p.kkt_violation[i] / p.info["tol_per_point"][i])},
            "glm_saga": None, "reference": None}
        entry["ours"]["eval_rel_diff"] = abs(entry["ours"]["objective_reported"]
                                             - entry["ours"]["objective"]) / abs(entry["ours"]["objective"])
        if saga and i < reached:
            W = saga["weights"][i]
            entry["glm_saga"] = {
                "objective": objective_f64(Xm, y, W, saga["biases"][i], lam, ALPHA,
                                           mean=p.mean, scale=p.scale),
                "nnz": int(np.count_nonzero(W)), "time": float(saga["time"][i]),
                "lambda_rel_diff": abs(saga["lambdas"][i] / lam - 1.0)}
        if Xs is not None:
            Wr, br, ok = reference_solution(Xs, y, C, lam, ALPHA)
            entry["reference"] = {"objective": objective_f64(Xs, y, Wr, br, lam, ALPHA),
                                  "converged": ok, "nnz": int(np.count_nonzero(np.abs(Wr) > 1e-10))}
        best = min(e["objective"] for e in (entry["ours"], entry["glm_saga"], entry["reference"]) if e)
        for key in ("ours", "glm_saga", "reference"):
            if entry[key]:
                entry[key]["gap"] = (entry[key]["objective"] - best) / abs(best)
        rows.append(entry)

    # print
    ref_note = "float64 reference (L-BFGS-B) included" if Xs is not None else \
        "no float64 reference at this size: gaps are to the better of the two solvers"
    print(f"\nat a few λ (time: seconds from each solver's start; gap: float64 objective's "
          f"relative excess over the best at that λ; {ref_note})")
    print(f"{'#':>4} {'lambda':>10} | {'ours t':>9} {'nnz':>8} {'gap':>9} | "
          f"{'glm_saga t':>10} {'nnz':>8} {'gap':>9} | {'ref gap':>8}")
    for e in rows:
        o, s, r = e["ours"], e["glm_saga"], e["reference"]
        sg = f"{s['time']:>10.1f} {s['nnz']:>8d} {s['gap']:>9.1e}" if s else f"{'-':>10} {'-':>8} {'-':>9}"
        rg = f"{r['gap']:>8.1e}" if r else f"{'-':>8}"
        print(f"{e['index']:>4} {e['lambda']:>10.3e} | {o['time']:>9.1f} {o['nnz']:>8d} {o['gap']:>9.1e} | "
              f"{sg} | {rg}")
    if saga is not None:
        common = min(reached, L)
        if common:
            k = common - 1
            print(f"\nto λ #{k} (the last both reached): ours {p.time[k]:.1f} s, glm_saga "
                  f"{saga['time'][k]:.1f} s: glm_saga/ours = {saga['time'][k] / p.time[k]:.1f}×")
            print(f"in their budgets: ours reached λ #{L - 1} of {cfg['n_lambdas']} in {secs:.1f} s, "
                  f"glm_saga λ #{reached - 1} in {saga['seconds']:.1f} s")
        else:
            print(f"\nglm_saga finished no λ in {budget:.0f} s (ours did {L} in {secs:.1f} s)")
    worst = max(e["ours"]["eval_rel_diff"] for e in rows)
    print(f"ours: reported objective vs float64 evaluation, largest relative difference {worst:.1e}")

    mem = {"device": str(device), "total_bytes": total, "free_bytes_at_start": free,
           "headroom": HEADROOM,
           "ours": {"plan": p_ours, "plan_bytes": need_ours, "peak_bytes": peak, "peak_kind": kind,
                    "within_device": peak <= total, "weights_bytes": weights_bytes,
                    "weights_dense_bytes": dense_bytes}}
    if saga is not None:
        mem["glm_saga"] = {"plan": p_saga, "plan_bytes": need_saga, "peak_bytes": saga["peak_bytes"],
                           "peak_kind": saga["peak_kind"],
                           "within_device": saga["peak_bytes"] is None or saga["peak_bytes"] <= total}
    return {
        "size": name, "device": str(device), "device_name": dev_name, "torch": torch.__version__,
        "config": dict(n=n, d=d, classes=C, n_lambdas=cfg["n_lambdas"], eps=cfg["eps"], dtype=dtype,
                       alpha=ALPHA, cache_bytes=cache_bytes, peer_budget=budget if peers else None,
                       our_budget=args.our_budget,
                       glm_saga_settings=GLM_SAGA if peers else None),
        "data": {"bytes": n * d * itemsize, "reused": reused, "seconds": gen_s},
        "lambdas": [float(v) for v in p.lambdas],
        "ours": {"seconds": secs, "reached": L, "stopped": p.info.get("stopped"),
                 "time": [float(v) for v in p.time], "nnz": [int(v) for v in p.nnz],
                 "iterations": int(p.n_iter.sum()), "full_passes": p.info.get("full_passes"),
                 "kkt_over_tol_max": tol_ratio, "low_memory": p.info.get("low_memory"),
                 "resident": p.info.get("resident")},
        "glm_saga": None if saga is None else {
            k: saga[k] for k in ("reached", "finished", "killed", "budget", "seconds", "time",
                                 "lambdas", "peak_bytes", "peak_kind")} | {
            "nnz": [int(np.count_nonzero(W)) for W in saga["weights"]]},
        "checks": rows,
        "memory": mem,
    }


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", "--size", dest="sizes", default="small,large,wide",
                    help=f"comma-separated: {', '.join([*SIZES, *STREAMED])}")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cuda, cuda:N or cpu")
    ap.add_argument("--dtype", choices=["float16", "float32"], default=None,
                    help="feature file dtype of the streamed sizes (default: the size's, float16)")
    ap.add_argument("--data-dir", default=None,
                    help="keep the generated features here and reuse them (default: a temporary "
                         "folder, removed)")
    ap.add_argument("--peers", default="glm_saga", help="'glm_saga' or '' (streamed sizes)")
    ap.add_argument("--peer-budget", type=float, default=None,
                    help="seconds glm_saga's process may run, start-up included (default: the size's)")
    ap.add_argument("--our-budget", type=float, default=None,
                    help="seconds our path may run: it stops after the first λ past them "
                         "(default: the whole path)")
    ap.add_argument("--resident", choices=["auto", "on", "off"], default="auto",
                    help="our copy of X on the device (fit_path resident=): auto (on CUDA when "
                         "it fits a quarter of the free memory), on, or off (stream every pass)")
    ap.add_argument("--cache-gib", type=float, default=None,
                    help="our working-set column cache on the device (default: the size's)")
    ap.add_argument("--n-lambdas", type=int, default=None)
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--n", type=int, default=None, help="override the streamed size's n")
    ap.add_argument("--checks", type=int, default=5, help="path points compared (plus glm_saga's last)")
    ap.add_argument("--reference", choices=["auto", "on", "off"], default="auto",
                    help="float64 reference optimum at the compared points (auto: when X fits "
                         f"{_REFERENCE_MAX_BYTES // 2**20} MiB as float64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    args.peers = [s for s in args.peers.split(",") if s]
    names = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in names if s not in SIZES and s not in STREAMED]
    if unknown:
        ap.error(f"unknown size {unknown[0]!r}; choose from {', '.join([*SIZES, *STREAMED])}")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is present")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    results: dict = {}
    in_mem = [s for s in names if s in SIZES]
    if in_mem:
        results.update(bench_in_memory(in_mem))
    streamed = [s for s in names if s in STREAMED]
    if device.type != "cuda" and any(s != "tiny" for s in streamed):
        print(f"no CUDA device in use: the streamed size(s) {', '.join(s for s in streamed if s != 'tiny')} "
              "run as 'tiny' on CPU")
        streamed = ["tiny"]
    for name in dict.fromkeys(streamed):
        cfg = dict(STREAMED[name])
        for key in ("n_lambdas", "eps", "n"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        results[name] = bench_streamed(name, cfg, args, device)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2, default=float)
    return results


if __name__ == "__main__":
    main()
