"""Synthetic deep features for the streamed GPU benchmark (``bench_path_gpu.py``), written to
a ``.npy`` by several processes.

A module of its own, importing numpy alone, so that the writer processes start in a fraction
of a second (``bench_path_gpu`` imports torch).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np

_GEOMETRY_VERSION = 2  # 2: each chunk's noise seeded by (seed, first row)


def _feature_rows(start: int, yb: np.ndarray, A: np.ndarray, M: np.ndarray, B: np.ndarray,
                  seed: int, dtype: str) -> np.ndarray:
    """Rows ``start ..`` of :func:`write_deep_features`'s matrix for labels ``yb``: their noise
    from a generator seeded by ``(seed, start)``, so a row's values do not depend on which
    process made it or how many there were."""
    rng = np.random.default_rng([seed, start])
    z = rng.standard_normal((yb.size, A.shape[1]), dtype=np.float32)
    z += M[yb]
    h = z @ A.T
    h += B[yb]
    h += 0.5 * rng.standard_normal(h.shape, dtype=np.float32)
    h -= 0.3
    np.maximum(h, 0.0, out=h)
    return h.astype(dtype, copy=False)


_WRITER: dict = {}  # a worker's fixed arguments (path, offset, A, M, B, seed, dtype)


def _init_writer(*fixed) -> None:
    _WRITER["args"] = fixed


def _write_chunk(start: int, yb: np.ndarray) -> int:
    """A worker's chunk, with the fixed arguments its initializer was given."""
    return _write_rows(*_WRITER["args"][:2], start, yb, *_WRITER["args"][2:])


def _write_rows(path: str, offset: int, start: int, yb: np.ndarray, A: np.ndarray,
                M: np.ndarray, B: np.ndarray, seed: int, dtype: str) -> int:
    """One chunk: computed and written at its own place in the file (``os.pwrite``)."""
    rows = _feature_rows(start, yb, A, M, B, seed, dtype)
    fd = os.open(path, os.O_WRONLY)
    try:
        data = memoryview(np.ascontiguousarray(rows)).cast("B")
        at = offset + start * rows.shape[1] * rows.itemsize
        while data:
            k = os.pwrite(fd, data, at)
            data, at = data[k:], at + k
    finally:
        os.close(fd)
    return yb.size


def write_deep_features(folder: Path, n: int, d: int, classes: int, dtype: str, seed: int = 0,
                        progress: bool = True, workers: int | None = None
                        ) -> tuple[Path, Path, bool]:
    """Write ``X.npy`` (n, d) of ``dtype`` and ``y.npy`` (n,) int64 into ``folder``, in chunks.

    Row i: ``x = relu(A (z + M[y]) + B[y] + 0.5 ε - 0.3)`` with a shared low-rank loading
    ``A`` (d, r) and latent ``z ~ N(0, I_r)`` (correlated features), a class shift ``M[y]`` in
    the latent space and a few class-selective units ``B[y]`` (class-dependent), Gaussian
    noise ``ε`` and a ReLU (nonnegative, about a third zeros). Labels: every class equally
    often, shuffled. Chunks of at most ~32 MiB of rows are made by ``workers`` processes
    (default: the CPUs, at most 16; one for files under 256 MiB) and written in place with
    plain writes (pages written through a mapping would count toward resident memory); each
    chunk's noise has its own seed, so the file is the same for any number of workers. The
    ImageNet size (1,281,167 × 2,048 float16, 4.9 GiB): 56.6 s with one process and 28.2 s
    with two on the 2-core machine (the same bytes; ad hoc, 2026-12-04); one process took
    103 s on the H200 machine, whose 16 cores have not written it yet.
    Reuses the files when ``data.json`` says they were made with the same parameters.

    Returns
    -------
    (X path, y path, reused)
    """
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    xf, yf, meta_f = folder / "X.npy", folder / "y.npy", folder / "data.json"
    meta = dict(n=n, d=d, classes=classes, dtype=dtype, seed=seed, geometry=_GEOMETRY_VERSION)
    if meta_f.is_file() and xf.is_file() and yf.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(meta_f.read_text()) == meta:
                return xf, yf, True
    if n < classes:
        raise SystemExit(f"n={n} < classes={classes}: every class needs an example")
    itemsize = np.dtype(dtype).itemsize
    free = shutil.disk_usage(folder).free
    need = n * d * itemsize + n * 8
    if need * 1.02 > free:
        raise SystemExit(f"{folder}: {need / 2**30:.1f} GiB needed for the features, "
                         f"{free / 2**30:.1f} GiB free; use --data-dir on a larger disk")
    meta_f.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    rank = max(4, min(64, d // 8))
    A = (rng.standard_normal((d, rank)) / np.sqrt(rank)).astype(np.float32)
    M = (0.5 * rng.standard_normal((classes, rank))).astype(np.float32)
    k = max(2, min(8, d // 16))
    B = np.zeros((classes, d), np.float32)
    for c in range(classes):
        B[c, rng.choice(d, k, replace=False)] = rng.uniform(1.0, 2.0, k)
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)
    step = max(256, 32 * 2**20 // (d * 4))
    with open(xf, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": (n, d)})
        offset = fh.tell()
        fh.truncate(offset + n * d * itemsize)
    if workers is None:
        workers = 1 if n * d * itemsize < 256 * 2**20 else min(16, os.cpu_count() or 1)
    starts = range(0, n, step)
    bar = tqdm(total=len(starts), desc="writing features", unit="chunk", disable=not progress)
    if workers <= 1:
        for s in starts:
            _write_rows(str(xf), offset, s, y[s : s + step], A, M, B, seed, dtype)
            bar.update()
    else:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                    initializer=_init_writer,
                                    initargs=(str(xf), offset, A, M, B, seed, dtype)) as pool:
            jobs = [pool.submit(_write_chunk, s, y[s : s + step]) for s in starts]
            for job in cf.as_completed(jobs):
                job.result()
                bar.update()
    bar.close()
    np.save(yf, y)
    meta_f.write_text(json.dumps(meta))
    return xf, yf, False


