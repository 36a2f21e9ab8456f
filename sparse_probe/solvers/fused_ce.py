"""Cross-entropy rows in one pass: the project's compiled kernel, on CPU.

Every OWL-QN line-search trial and every Newton step evaluates the mean cross-entropy of float64
logits ``z + t·dz`` (n, C) and its residual ``(softmax - Y)/n``. In torch that is about ten
passes over the (n, C) array (the move, the true-class shift, ``exp``, the row sums, the
scaling, the one-hot, the float32 copy for the gradient product, the bias gradient's column
sums), each a trip to memory once n·C outgrows the caches, and each an operator call, which
is what a pass costs with few classes. ``_softmax_ce.rows`` (C, see its source) reads a row
once and writes what the solver needs: the moved logits, the float32 residual and the float64
bias gradient; rows of fewer than 32 classes go 32 at a time, transposed, so that its vector
steps run across rows. ``benchmarks/measure_softmax_ce.py`` times both routes and torch's on
the geometries of ``bench_path.py`` (``benchmarks/results/softmax-ce-cpu-*.txt``): from 2 to
1,000 classes the kernel is the faster.

The solvers take the residual transposed, (C, n) (``R32T``): the left operand of the
gradient's ``R^T X`` as oneDNN reads it, with no copy (``benchmarks/
measure_residual_layout.py``, results/residual-layout-cpu-2026-12-06.txt: the kernel and the
product together 1.05-1.46x faster than with the (n, C) residual; rows along C are staged 16
at a time, so that each class's floats go out a cache line at once).

It is optional (a build without a C compiler falls back to torch) and checked once per process
against :func:`~sparse_probe.solvers.restricted.softmax_residual` on both routes (disagreement:
torch, with a warning). ``SPARSE_PROBE_FUSED_CE=0`` in the environment turns it off.

Threads: rows are split into blocks over torch's thread count (``torch.get_num_threads()``,
which the fit sets: :mod:`~sparse_probe.solvers.threads`). Built with OpenMP (``setup.py``, where
the compiler has it), the kernel runs its blocks on the OpenMP team of torch's own products
(the same ``libgomp``), once each thread gets :data:`OPENMP_MIN_ENTRIES_PER_THREAD` entries;
built without, the kernel releases the GIL and the blocks go to a pool of Python threads, the
calling thread taking the first, once each gets :data:`MIN_ENTRIES_PER_THREAD`. In a forked
child the pool route is taken: GNU OpenMP's team does not survive ``fork`` (a parallel region
in the child of a process that had one waits forever, torch's products too).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import torch

from sparse_probe.solvers.compiled import checked_kernel

__all__ = ["ce_rows", "usable"]

MIN_ENTRIES_PER_THREAD = 1 << 21
"""Fewest entries n·C per thread worth a thread of its own. Timed alone, two threads gain from
a few hundred thousand entries on; inside a fit the kernel runs right after torch's
multi-threaded products, whose OpenMP workers go on spinning on the other cores for a while
(libgomp's default wait policy), and the kernel's second thread shares a core with one of
them. Whole default fits (``benchmarks/measure_ce_threads.py``,
``results/ce-threads-cpu-2026-12-05.txt``): at 10⁶ and 2·10⁶ entries one thread made the fit
0.92-0.94x the time of two (1 << 17 per thread, the value before), at 4·10⁶ even, at 2·10⁷
(1,000 classes) two threads 0.81x one's."""

OPENMP_MIN_ENTRIES_PER_THREAD = 1 << 15
"""Fewest entries n·C per thread worth a thread where the kernel's blocks run on torch's OpenMP
team (its workers, spinning after the products, take the blocks: no core is shared). Whole
default fits, as :data:`MIN_ENTRIES_PER_THREAD` (``benchmarks/measure_ce_threads.py --route
openmp``, ``results/ce-threads-openmp-cpu-2026-12-05.txt``): at 10⁶ entries (100 classes) two
threads took the fit 3.36-3.44 s against one's 4.17, at 2·10⁶ 3.20 against 3.99, at 10⁵ the
kernel's calls 0.05-0.09 s against 0.08-0.15 (fits within noise), at 6·10⁴ even; at 2·10⁷
(1,000 classes) as the pool route's two threads (46.0 s against 47.0)."""

log = logging.getLogger(__name__)
_STATE: dict[str, object] = {}  # "rows": the self-checked kernel or None
_POOLS: dict[int, ThreadPoolExecutor] = {}  # row-block workers by thread count
_FORKED: list[bool] = [False]  # whether this process is a forked child (at-fork handler)
_RUNTIME: dict[str, bool] = {}  # "shared": the kernel's libgomp is torch's runtime (_shared)


def _kernel():
    """The compiled ``rows`` once it agreed with torch on a self-check, else None (cached)."""
    return checked_kernel(_STATE, "rows", "sparse_probe.solvers._softmax_ce", "rows", _agrees, log,
                          "fused cross-entropy kernel", "torch", "torch's operations")


def _agrees(rows) -> bool:
    """Both of the kernel's routes against torch's passes: 37 classes go along rows, 3 across
    rows in lanes (67 rows: two full blocks of 32 and a part); each with a row whose ``exp``
    overflows unless its maximum is shifted out; on one thread and on two OpenMP blocks; the
    residual row-major (n, C) and transposed (C, n)."""
    from sparse_probe.solvers.restricted import softmax_residual

    g = torch.Generator().manual_seed(0)
    for n, C in ((64, 37), (67, 3)):
        z = torch.randn(n, C, dtype=torch.float64, generator=g) * 4
        z[3, C // 2] = 800.0
        dz = torch.randn(n, C, generator=g)
        y = torch.randint(0, C, (n,), generator=g)
        zt = z + 0.25 * dz.to(torch.float64)
        ref_loss, ref_R = softmax_residual(zt.clone(), y, scale=0.5)
        # one thread, and the OpenMP blocks where they may run: not in a process on one
        # thread, where no OpenMP team should be started (a forked child of a process that
        # has one waits forever in its parallel regions, torch's too)
        threads = (1, 2) if _openmp(rows) and torch.get_num_threads() > 1 else (1,)
        for k, ld in itertools.product(threads, (0, n)):  # ld: the residual (C, n)
            zn, R32 = torch.empty_like(z), torch.empty((C, n) if ld else (n, C))
            gb = torch.zeros(C, dtype=torch.float64)
            loss = rows(n, C, z.numpy(), dz.numpy(), 0.25, None, None, y.numpy(), zn.numpy(),
                        None, R32.numpy(), gb.numpy(), 0.5, -1, k, ld)
            R32 = R32.T if ld else R32
            if not (abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
                    and torch.allclose(zn, zt, rtol=0, atol=1e-12)
                    and torch.allclose(R32.double(), ref_R, rtol=1e-6, atol=1e-9)
                    and torch.allclose(gb, ref_R.sum(0), rtol=0, atol=1e-12)):
                return False
    return True


def _openmp(rows) -> bool:
    """Whether the kernel ``rows`` runs its blocks on OpenMP threads here: built with OpenMP,
    not in a forked child (module docstring), and its ``libgomp`` torch's runtime
    (:func:`shares_torchs_runtime`)."""
    module = sys.modules.get(getattr(rows, "__module__", None) or "")
    return bool(getattr(module, "OPENMP", 0)) and not _FORKED[0] and _shared()


_GNU = re.compile(r"libgomp\.so\.1(\.\d+)*$")  # what the soname libgomp.so.1 maps to


def openmp_runtimes(maps: str | None = None) -> set[str]:
    """The OpenMP runtime libraries mapped into this process (GNU's ``libgomp*``, Intel's
    ``libiomp*``, LLVM's ``libomp*``, as Linux's ``/proc/self/maps`` or ``maps``' text lists
    them); empty where that cannot be read."""
    if maps is None:
        try:
            with open("/proc/self/maps") as f:
                maps = f.read()
        except OSError:
            return set()
    found = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, dev, inode, path
        if len(fields) == 6 and os.path.basename(fields[5]).startswith(
                ("libgomp", "libiomp", "libomp")):
            found.add(fields[5].strip())
    return found


def shares_torchs_runtime(found: set[str]) -> bool:
    """Whether the kernel's ``libgomp.so.1`` is torch's OpenMP runtime, from the runtimes
    ``found`` (:func:`openmp_runtimes`): no Intel or LLVM runtime (a conda torch's: the
    kernel's team would be a second set of threads beside torch's spinning ones, the pool
    route's old trouble) and at most one file behind the soname ``libgomp.so.1``. Copies
    bundled under other names (scikit-learn's ``libgomp-<hash>.so``) are their owners' own."""
    names = [os.path.basename(p) for p in found]
    return (not any(n.startswith(("libiomp", "libomp")) for n in names)
            and sum(bool(_GNU.match(n)) for n in names) <= 1)


def _shared() -> bool:
    """:func:`shares_torchs_runtime` of this process, decided once (the kernel is imported by
    then) and logged where not."""
    if "shared" not in _RUNTIME:
        found = openmp_runtimes()
        _RUNTIME["shared"] = shares_torchs_runtime(found)
        if not _RUNTIME["shared"]:
            log.info("fused cross-entropy kernel: OpenMP runtimes %s in this process; its row "
                     "blocks go to Python threads", sorted(found))
    return _RUNTIME["shared"]


def usable(z: torch.Tensor) -> bool:
    """Whether :func:`ce_rows` runs the compiled kernel for logits ``z`` (n, C): CPU, float64,
    contiguous, at least one class, built, self-checked and not disabled."""
    if os.environ.get("SPARSE_PROBE_FUSED_CE") == "0":
        return False
    return (z.device.type == "cpu" and z.dtype == torch.float64 and z.dim() == 2
            and z.shape[1] >= 1 and z.is_contiguous() and _kernel() is not None)


def _np(t: torch.Tensor | None):
    return None if t is None else t.numpy()


def _pool(k: int) -> ThreadPoolExecutor:
    """The ``k`` row-block workers (threads named ``sparse-probe-ce_*``), made once."""
    pool = _POOLS.get(k)
    if pool is None:
        pool = _POOLS[k] = ThreadPoolExecutor(k, thread_name_prefix="sparse-probe-ce")
    return pool


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist there, and an executor that
    believes they do queues work that never runs (a fit in a forked worker would hang); nor
    does its OpenMP team (the blocks go to a pool of the child's own from here on)."""
    _POOLS.clear()
    _FORKED[0] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def ce_rows(z: torch.Tensor, y: torch.Tensor, *, dz: torch.Tensor | None = None, t: float = 1.0,
            dz2: torch.Tensor | None = None, cls2: torch.Tensor | None = None,
            zn: torch.Tensor | None = None, R32: torch.Tensor | None = None,
            scale: float = 1.0, R64: torch.Tensor | None = None,
            R32T: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
    """Summed cross-entropy of ``z + t·dz + dz2`` and its residual, by the compiled kernel.

    With ``s = z + t·dz + dz2`` (an omitted term is zero), per row ``i``:
    ``CE_i = logsumexp(s_i) - s_{i, y_i}`` (the row maximum shifted out, so no overflow) and
    ``R_i = scale · (softmax(s_i) - onehot(y_i))``. Requires :func:`usable` (z).

    Parameters
    ----------
    z : torch.Tensor of shape (n, C), float64, contiguous, CPU
    y : torch.Tensor of shape (n,), int64, labels in ``[0, C)``
    dz : torch.Tensor of shape (n, C), float64 or float32, optional
    t : float
        Step along ``dz``.
    dz2 : torch.Tensor of shape (n, C) or (n, k), float32, optional
        Added as is (a line-search trial's correction for the weights its projection clipped);
        with ``cls2``, its columns are those classes' only.
    cls2 : torch.Tensor of shape (k,), int64, optional
        The classes of ``dz2``'s columns (the other classes get no correction).
    zn : torch.Tensor of shape (n, C), float64, optional
        Receives ``s``; must not overlap ``z``.
    R32 : torch.Tensor of shape (n, C), float32, optional
        Receives the residual ``R``.
    scale : float
    R64 : torch.Tensor of shape (n, C), float64, optional
        Receives the residual ``R`` unrounded (for float64 gradient products: rounded to
        float32, its entries' error alone moved a 4000 x 40 x 40 gradient by 2e-10).
    R32T : torch.Tensor of shape (C, n), float32, contiguous, optional
        Receives ``R`` transposed, instead of ``R32``: the left operand of the gradient's
        ``R^T X`` as oneDNN reads it (an (n, C) residual needed a transposed copy, or from
        32 classes on went to a BLAS reading it transposed at 2-3x oneDNN's time).

    Returns
    -------
    loss_sum : float
        ``Σ_i CE_i`` (float64).
    gb : torch.Tensor of shape (C,), float64
        Column sums of ``R`` in float64 (the bias gradient when ``scale = 1/n``).

    Raises
    ------
    ValueError
        A label outside ``[0, C)`` or an array of the wrong shape or dtype.
    """
    rows = _kernel()
    n, C = z.shape
    if R32T is not None:
        if R32 is not None:
            raise ValueError("ce_rows: R32 and R32T are alternatives; give one")
        if tuple(R32T.shape) != (C, n):
            raise ValueError(f"ce_rows: R32T must have shape ({C}, {n}), got {tuple(R32T.shape)}")
    yy = y.to(torch.int64).contiguous()
    c2 = None if cls2 is None else cls2.to(torch.int64).contiguous()
    omp = _openmp(rows)
    per = OPENMP_MIN_ENTRIES_PER_THREAD if omp else MIN_ENTRIES_PER_THREAD
    k = min(torch.get_num_threads(), max(1, (n * C) // per), n)
    if k <= 1 or omp:  # one thread (few entries or no rows), or the kernel's OpenMP blocks
        gb = torch.zeros(C, dtype=torch.float64)
        loss = rows(n, C, z.numpy(), _np(dz), float(t), _np(dz2), _np(c2), yy.numpy(), _np(zn),
                    _np(R64), _np(R32 if R32T is None else R32T), gb.numpy(), float(scale), -1,
                    max(k, 1), 0 if R32T is None else n)
        return loss, gb
    # each block's column sums on cache lines of their own (rows of C sums side by side share
    # a line where they meet, which the two threads' cores would pass back and forth per row)
    gbs = torch.zeros((k, (C + 15) // 8 * 8), dtype=torch.float64)

    def block(j: int) -> float:
        s, e = n * j // k, n * (j + 1) // k

        def part(a: torch.Tensor | None):
            return None if a is None else a[s:e].numpy()

        # the transposed residual: the flat span from the block's first row in class 0 to
        # its last row in class C - 1 (its rows n apart in each class)
        rt = None if R32T is None else R32T.view(-1)[s : s + (C - 1) * n + (e - s)].numpy()
        return rows(e - s, C, z[s:e].numpy(), part(dz), float(t), part(dz2), _np(c2),
                    yy[s:e].numpy(), part(zn), part(R64), part(R32) if rt is None else rt,
                    gbs[j, :C].numpy(), float(scale), -1, 1, 0 if rt is None else n)

    rest = [_pool(k - 1).submit(block, j) for j in range(1, k)]
    loss = block(0)  # this thread's share: the pool's threads take the others
    return float(loss + sum(f.result() for f in rest)), gbs[:, :C].sum(0)
