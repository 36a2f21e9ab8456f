"""glibc's malloc during a fit (sparse_probe/allocator.py): large temporaries from the heap,
freed memory kept while the fit runs and returned after it.

Observed on real allocations: where a large block lies (the ``[heap]`` of /proc/self/maps, or
a mapping of its own), and, in fresh interpreters whose heap the test controls, the resident
memory (/proc/self/statm) and minor page faults (getrusage) around blocks from ``malloc``.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import sparse_probe.fit as fit_module
from sparse_probe import allocator
from sparse_probe.fit import fit_path

GLIBC = allocator._libc() is not None and allocator.user_tuned() is None and \
    os.path.exists("/proc/self/maps")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc's malloc on Linux only")

BLOCK = allocator.MMAP_CEILING + 8 * 2**20  # above the ceiling: glibc maps it itself; below
# TRIM_AFTER: glibc would keep it at the heap's top once M_MMAP_MAX stopped mapping it


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_free() -> int:
    """Free bytes in malloc's heaps (mallinfo2): no free chunk is larger."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):  # glibc < 2.33
        return 2**31
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().fordblks)


def in_heap(ptr: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                if lo <= ptr < hi:
                    return True
    return False


def from_heap() -> bool:
    """Whether a fresh large tensor (not touched) lies in the heap (glibc's brk arena) rather
    than in a mapping of its own. Larger than every free chunk the heap holds (the suite's
    earlier fits leave some), so only a heap that grew for it can hold it."""
    t = torch.empty(max(8 * BLOCK, heap_free() + BLOCK), dtype=torch.uint8)
    return in_heap(t.data_ptr())


@needs_glibc
def test_outside_the_block_a_large_tensor_is_mapped():
    assert not from_heap()


@needs_glibc
def test_inside_large_tensors_come_from_the_heap():
    with allocator.heap_temporaries() as on:
        assert on is True
        assert from_heap()
    # after the block: large blocks are mapped again
    assert not from_heap()


@needs_glibc
def test_nested_and_concurrent_blocks_restore_when_the_last_leaves():
    with allocator.heap_temporaries():
        with allocator.heap_temporaries() as inner:
            assert inner is True
        # the inner block's exit left the outer's setting in force
        assert from_heap()
        entered, leave = threading.Event(), threading.Event()

        def other():
            with allocator.heap_temporaries():
                entered.set()
                leave.wait(10)

        th = threading.Thread(target=other)
        th.start()
        assert entered.wait(10)
    # the main thread's block is over, the other thread's still runs: still in force
    try:
        assert from_heap()
    finally:
        leave.set()
        th.join()
    assert not from_heap()


@needs_glibc
def test_an_exception_inside_still_restores():
    with pytest.raises(RuntimeError), allocator.heap_temporaries():
        raise RuntimeError("solver failed")
    assert not from_heap()


@needs_glibc
@pytest.mark.parametrize("name,value", [("MALLOC_MMAP_MAX_", "65536"),
                                        ("MALLOC_TRIM_THRESHOLD_", "131072"),
                                        ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=10")])
def test_a_user_tuned_allocator_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert allocator.user_tuned() == name
    with allocator.heap_temporaries() as on:
        assert on is False
        assert not from_heap()


# Fresh interpreters for the resident memory and page faults, which the pytest process's heap
# (free chunks left by other tests, resident or not) would decide: blocks from libc.malloc
# directly, no Python object between them.
FRESH = r"""
import ctypes, json, resource, sys
from sparse_probe import allocator
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def in_heap(ptr):
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                return lo <= ptr < hi
    return False

def freed(total, size=100_000):
    # the resident bytes a total of size-byte blocks, touched, give back once freed in order
    ptrs = [libc.malloc(size) for _ in range(total // size)]
    for p in ptrs:
        ctypes.memset(p, 1, size)
    r = rss()
    for p in ptrs:
        libc.free(p)
    return r - rss()

out = {}
exec(sys.argv[1])
print(json.dumps(out))
"""
MB = 2**20


def fresh(code: str) -> dict:
    got = subprocess.run([sys.executable, "-c", FRESH, code], capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


@needs_glibc
def test_inside_freed_blocks_stay_resident_and_are_reused_without_faults():
    # six 40 MB blocks in turn, each touched and freed: mapped, each faults in its pages
    # anew; inside the block, after the first (an aligned request may not fit the chunk the
    # last one freed; the two coalesce), the same pages again. After the block, the kept
    # memory goes back (malloc_trim).
    out = fresh(f"""
def cycles():
    f0 = faults()
    for _ in range(6):
        p = libc.malloc({BLOCK}); ctypes.memset(p, 1, {BLOCK}); libc.free(p)
    return faults() - f0
out["mapped"] = cycles()
r0 = rss()
with allocator.heap_temporaries():
    out["heap"] = cycles()
    out["kept"] = rss() - r0
out["after"] = rss() - r0
""")
    pages = BLOCK / 4096
    assert out["heap"] < 2.5 * pages
    assert out["kept"] > 0.9 * BLOCK
    assert out["after"] < 0.1 * BLOCK
    if out["mapped"] > 5 * pages:  # 4 KiB pages (transparent huge pages would fault fewer)
        assert out["heap"] < out["mapped"] / 2


@needs_glibc
def test_after_the_block_the_heap_top_is_trimmed_again_past_twice_the_ceiling():
    # during the block nothing freed goes back; after it, a free top of 30 MB (below
    # TRIM_AFTER) stays and one of 100 MB (above) goes back
    out = fresh("""
with allocator.heap_temporaries():
    out["inside"] = freed(100 * 2**20)
out["small"] = freed(30 * 2**20)
out["large"] = freed(100 * 2**20)
""")
    assert out["inside"] < 5 * MB
    assert out["small"] < 5 * MB
    assert out["large"] > 90 * MB
    # and here (mutation testing maps the block's code to this test by its calls here)
    with allocator.heap_temporaries():
        assert from_heap()
    assert not from_heap()


@needs_glibc
def test_a_fixed_mmap_threshold_maps_every_large_block():
    # glibc's own adjustment: a 20 MB mapped block, once freed, raises the threshold, and the
    # next 20 MB comes from the heap; fixed at 16 MB, every such block is mapped (a 1 MB
    # one still comes from the heap)
    code = """
size = 20 * 2**20
{fix}
p = libc.malloc(size); out["first"] = in_heap(p); libc.free(p)
p = libc.malloc(size); out["second"] = in_heap(p); libc.free(p)
p = libc.malloc(2**20); out["small"] = in_heap(p); libc.free(p)
"""
    adjusted = fresh(code.format(fix=""))
    fixed = fresh(code.format(fix="allocator.fix_mmap_threshold(16 * 2**20)"))
    assert adjusted == {"first": False, "second": True, "small": True}
    assert fixed == {"first": False, "second": False, "small": True}
    # and here, as the low-memory fits of other tests leave it
    allocator.fix_mmap_threshold(16 * 2**20)
    assert not from_heap()


@needs_glibc
def test_priming_raises_glibcs_own_threshold_to_just_under_the_ceiling_and_never_lowers_it():
    # a fresh process maps a 20 MB and a 30 MB block; primed, both come from the heap and
    # nothing is faulted in by the priming itself; a larger threshold is kept (a 31.5 MB block
    # freed first), a user's tuning or a fixed threshold left alone
    code = """
{before}
f0 = faults()
out["primed"] = allocator.prime_mmap_threshold({arg})
out["faults"] = faults() - f0
for mb in (20, 30, 31.4):
    p = libc.malloc(int(mb * 2**20)); out[str(mb)] = in_heap(p); libc.free(p)
"""
    fresh_out = fresh(code.format(before="", arg=""))
    assert fresh_out.pop("faults") < 64  # the block's pages are never touched
    assert fresh_out == {"primed": True, "20": True, "30": True, "31.4": False}
    assert allocator.PRIMED_THRESHOLD == allocator.MMAP_CEILING - 2**20
    unprimed = fresh(code.format(before="", arg="1"))  # a 1-byte block: nothing raised
    assert {k: unprimed[k] for k in ("20", "30")} == {"20": False, "30": False}
    # exactly the ceiling: its chunk (header, page rounding) is over it, glibc adjusts nothing
    at_ceiling = fresh(code.format(before="", arg="allocator.MMAP_CEILING"))
    assert {k: at_ceiling[k] for k in ("20", "30")} == {"20": False, "30": False}
    # already higher (a freed 31.5 MB block): a smaller priming does not lower it
    higher = fresh(code.format(before="libc.free(libc.malloc(int(31.5 * 2**20)))",
                               arg="4 * 2**20"))
    assert higher["31.4"] is True and higher["20"] is True
    frozen = fresh(code.format(before="allocator.fix_mmap_threshold(16 * 2**20)", arg=""))
    assert frozen["primed"] is True and frozen["20"] is False and frozen["30"] is False
    got = subprocess.run([sys.executable, "-c", FRESH, code.format(before="", arg="")],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MALLOC_TOP_PAD_": "131072"})
    assert got.returncode == 0, got.stderr
    tuned = json.loads(got.stdout)
    assert tuned["primed"] is False and tuned["20"] is False
    # and here (mutation testing maps the function's code to this test by its calls here):
    # it primes unless the environment tunes the allocator
    assert allocator.prime_mmap_threshold() is True
    assert allocator.prime_mmap_threshold(2**20) is True


@needs_glibc
def test_priming_leaves_a_user_tuned_allocator_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert allocator.prime_mmap_threshold() is False
    monkeypatch.setattr(allocator, "_libc", lambda: None)  # not glibc
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert allocator.prime_mmap_threshold() is False


def test_user_tuned_reads_only_malloc_settings():
    assert allocator.user_tuned({}) is None
    assert allocator.user_tuned({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}) is None
    assert allocator.user_tuned({"MALLOC_TOP_PAD_": "0"}) == "MALLOC_TOP_PAD_"
    assert allocator.user_tuned({"GLIBC_TUNABLES": "glibc.cpu.x=1:glibc.malloc.trim_threshold=1"}) \
        == "GLIBC_TUNABLES"


def _spy(monkeypatch) -> list[bool]:
    """Records each fit's entry into heap_temporaries (the real one runs)."""
    seen: list[bool] = []
    real = allocator.heap_temporaries

    def spy():
        cm = real()

        class Wrapped:
            def __enter__(self):
                seen.append(cm.__enter__())
                return seen[-1]

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrapped()

    monkeypatch.setattr(fit_module, "heap_temporaries", spy)
    return seen


@needs_glibc
@pytest.mark.parametrize("n,entered", [(4096, True), (4095, False)])
def test_a_cpu_fit_runs_in_the_block_from_n_c_arrays_of_the_ceiling_on(monkeypatch, n, entered):
    """An in-memory CPU fit whose (n, C) float64 arrays are MMAP_CEILING bytes or more (4096 x
    1024: exactly 32 MiB) runs in the block and leaves it; one row fewer, glibc keeps such
    arrays itself and the fit leaves the allocator alone."""
    seen = _spy(monkeypatch)
    C = 1024
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.arange(n) % C
    p = fit_path(X, y, n_lambdas=2, eps=0.9, progress=False)
    assert seen == ([True] if entered else [])
    assert p.info["low_memory"] is False
    assert not from_heap()


def test_a_low_memory_fit_keeps_to_mapped_blocks(monkeypatch):
    """The size that puts a fit in the block (the test above), in low-memory mode: not."""
    seen = _spy(monkeypatch)
    n, C = 4096, 1024
    X = np.random.default_rng(3).normal(size=(n, 3)).astype(np.float32)
    p = fit_path(X, np.arange(n) % C, n_lambdas=2, eps=0.9, progress=False, low_memory=True)
    assert seen == []
    assert p.info["low_memory"] is True


def test_a_cpu_fit_primes_the_threshold_before_its_statistics_pass(monkeypatch):
    """Every CPU fit (in memory or low-memory: the fixed threshold then overrides it) primes
    glibc's threshold once, before the statistics' pass; a fit on another device does not."""
    from sparse_probe import fit_common

    calls = []
    monkeypatch.setattr(fit_module, "prime_mmap_threshold", lambda: calls.append("prime"))
    real = fit_common.column_sums
    monkeypatch.setattr(fit_module, "column_sums",
                        lambda *a, **k: calls.append("sums") or real(*a, **k))
    X = np.random.default_rng(4).normal(size=(300, 5)).astype(np.float32)
    y = np.arange(300) % 3
    for low in (False, True):
        calls.clear()
        fit_path(X, y, n_lambdas=2, eps=0.5, progress=False, low_memory=low)
        assert calls == ["prime", "sums"]
    calls.clear()
    with pytest.raises(RuntimeError, match="meta"):  # no data there: it stops further on
        fit_path(X, y, n_lambdas=2, eps=0.5, progress=False, device="meta")
    assert calls == ["sums"]
