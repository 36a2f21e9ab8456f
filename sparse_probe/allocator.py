"""How glibc's malloc serves the fit's large temporaries.

glibc serves a block above its mmap threshold with a fresh ``mmap`` and unmaps it when freed.
The threshold adjusts itself upwards as such blocks are freed, but never past
``DEFAULT_MMAP_THRESHOLD_MAX`` (:data:`MMAP_CEILING`, 32 MiB on 64-bit). A fit's ``(n, C)``
logits and residuals beyond that size (20,000 x 1,000 float64: 160 MB) are therefore mapped
anew and faulted in page by page every time a solver allocates one: on the 1,000-class bench
path 24 GiB of 4 KiB page faults, 9 of its 42 CPU seconds in the kernel. Served from the heap
instead, a freed block stays in the process for the next one (:func:`heap_temporaries`).

Other allocators (musl, macOS) have no ``mallopt``: every function here is then a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

__all__ = ["MMAP_CEILING", "PRIMED_THRESHOLD", "TRIM_AFTER", "fix_mmap_threshold",
           "heap_temporaries", "prime_mmap_threshold", "user_tuned"]

# mallopt's parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

MMAP_CEILING = 32 * 2**20
"""glibc's ``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit: the largest block its own adjustment
ever serves from the heap."""

DEFAULT_MMAP_MAX = 65536
"""glibc's default for ``M_MMAP_MAX`` (how many blocks it may serve with mmap at once)."""

TRIM_AFTER = 2 * MMAP_CEILING
"""``M_TRIM_THRESHOLD`` after :func:`heap_temporaries`: the value glibc's adjustment sets
(twice the mmap threshold) once it has reached :data:`MMAP_CEILING`, as in a process that has
freed a large torch tensor. Setting any of these parameters freezes that adjustment; the mmap
threshold keeps the value it had when the fit started."""

PRIMED_THRESHOLD = MMAP_CEILING - 2**20
"""The mmap threshold a CPU fit raises glibc's to (:func:`prime_mmap_threshold`): the most its
own adjustment takes (a freed block's chunk, header and page rounding included, of at most
:data:`MMAP_CEILING`), less a margin for those."""

HELD_TRIM = 2**31 - 1
"""``M_TRIM_THRESHOLD`` while the fit runs (mallopt takes an ``int``): free memory at the top
of the heap stays for the next temporary instead of going back to the OS."""

_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_lock = threading.Lock()
_depth = 0


def _libc():
    """The process's C library symbols through ctypes (glibc's ``mallopt``/``malloc_trim``),
    or None where it has no ``mallopt`` (not glibc)."""
    with contextlib.suppress(OSError, TypeError):  # TypeError: CDLL(None) off POSIX
        libc = ctypes.CDLL(None)
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            # typed calls: a missing or non-integer argument is a TypeError, not garbage
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            return libc
    return None


def user_tuned(environ: dict[str, str] | None = None) -> str | None:
    """The environment variable by which the user tuned glibc's malloc (``MALLOC_MMAP_MAX_``
    and the like, or a ``glibc.malloc`` tunable in ``GLIBC_TUNABLES``), or None: a tuned
    allocator is left as the user set it."""
    env = os.environ if environ is None else environ
    for name in _ENV:
        if name in env:
            return name
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def prime_mmap_threshold(nbytes: int = PRIMED_THRESHOLD) -> bool:
    """Raise glibc's own mmap threshold to ``nbytes`` where it is lower (it never lowers it):
    map and free one block of that size, on which glibc's adjustment sets the threshold to
    the block's size and the trim threshold to twice that, as it does when a process frees a
    large torch tensor. Untouched, the block costs no page faults.

    A fresh process starts at 128 KiB, and a fit's mid-sized temporaries (float64 gradients
    (C, d), Newton's Hessians, float64 column blocks: 0.1-30 MiB) were each mapped anew and
    faulted in page by page. The torch route of the statistics' pass had raised the threshold
    as a side effect, to the size of the largest float64 copy of a chunk it freed (20 MiB on
    the bench's 10,000 x 256 and 500 x 5,000 data; at the ceiling from 32 MiB chunks on); its
    compiled replacement (``_column_sums``) allocates nothing. Without this the n << d bench
    path's points 5-19 took 264-272 ms against 231-241 before, with it 223-239 (4 MiB: 265;
    32 MiB exactly: no change, its chunk exceeds the ceiling; ad hoc per-point timings, five
    fresh processes each). Freed memory up to twice the threshold (62 MiB) then stays in the
    process. Returns whether it did so: not where glibc is not the allocator or the user tuned
    it (:func:`user_tuned`); a threshold set by ``mallopt`` (:func:`fix_mmap_threshold`) has
    frozen the adjustment, and the block leaves it as it is."""
    if user_tuned() is not None:
        return False
    libc = _libc()
    if libc is None:
        return False
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(int(nbytes)))
    return True


def fix_mmap_threshold(threshold: int = 16 * 2**20) -> None:
    """Have glibc serve allocations of ``threshold`` bytes and more with mmap, always.

    glibc raises its mmap threshold each time a large block is freed, after which the
    per-chunk float64 temporaries of the low-memory mode come from the heap and fragment it.
    Fixing the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also stops the adjustment)
    returns those blocks to the OS when freed, which lowered the peak RSS of a scaled-down
    out-of-core fit. No-op where glibc is not the allocator.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, int(threshold))


@contextlib.contextmanager
def heap_temporaries() -> Iterator[bool]:
    """Serve every allocation from the heap and keep freed memory while the block runs.

    ``mallopt(M_MMAP_MAX, 0)`` stops glibc from mapping large blocks of their own and
    ``M_TRIM_THRESHOLD`` (:data:`HELD_TRIM`) from returning the heap's free top to the OS, so
    that a temporary freed by one solver iteration is reused, already faulted in, by the next.
    On leaving the outermost such block, ``M_MMAP_MAX`` is glibc's default again,
    ``M_TRIM_THRESHOLD`` :data:`TRIM_AFTER`, and ``malloc_trim(0)`` returns the free memory
    the block left in the heap. Nested and concurrent blocks (threads) share one setting,
    restored when the last one leaves.

    Yields whether the setting is in force: False where glibc is not the allocator or the
    user tuned it (:func:`user_tuned`).

    Measured (``benchmarks/measure_heap.py``, results/heap-temporaries-cpu-2026-12-06.txt):
    the 1,000-class bench path (20,000 x 32 x 1,000) 1.31x faster, its page faults from 6.3 M
    to 0.4 M; three held-out many-class paths 1.10-1.16x; the same iterations. Peak RSS rose
    by 0.2-0.5 GiB there (freed blocks a larger request did not fit: bounded, since
    ``fit_path`` enters this block only where its float64 (n, C) arrays are between
    :data:`MMAP_CEILING`, under which glibc keeps them in the heap itself, and
    ``low_memory``'s limit).
    """
    libc = _enter()
    try:
        yield libc is not None
    finally:
        if libc is not None:
            _leave(libc)


def _enter():
    """:func:`heap_temporaries`' entry: the setting made by the first block in, counted;
    returns the library handle, or None where it does not apply."""
    global _depth
    libc = None if user_tuned() else _libc()
    if libc is None:
        return None
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, HELD_TRIM)
        _depth += 1
    return libc


def _leave(libc) -> None:
    """:func:`heap_temporaries`' exit: the last block out restores glibc and trims."""
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_AFTER)
            libc.malloc_trim(0)
