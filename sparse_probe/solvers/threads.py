"""How many CPU threads a fit uses: never slower than one thread on a shared machine.

torch runs its CPU products and elementwise kernels on an OpenMP team of
``torch.get_num_threads()`` threads (by default one per physical core). Every parallel region
ends at a barrier, and a solver iteration has dozens of short ones. When another process keeps
one of the cores busy, the scheduler shares that core between it and one of our threads, and
every barrier waits for a time slice: on the 2-core development machine, with one CPU-bound
process beside it, a collinear path took 238 s with 2 threads where glmnet took 10.5 s; at
load ~5 one path took 146 s with 2 threads and 30 s with one.

The rule (``threads=None`` / ``"auto"``, the default): on CPU, a small fit (under
:data:`SMALL_WORK` multiply-adds per product) runs on one thread; a larger one takes no more
threads than its cgroup's CPU quota allows (containers, CI runners), then looks at what other
processes keep busy on the CPUs it may run on (a 30 ms window read from ``/proc/stat``, in
which a fit runs its set-up on one thread: :class:`StartThreads`; both readings:
:mod:`~sparse_probe.solvers.machine_load`; another thread of this process still running
through the window, such as numpy's BLAS spinning after a product, is waited out for up to
:data:`~sparse_probe.solvers.machine_load.SPIN_SETTLE_S` and counts as a core taken where it
goes on) and takes no more threads than the cores left free (:func:`free_threads`). Where
every core is free, each thread would have a physical core of its own (no two on one core's
SMT siblings: :func:`~sparse_probe.solvers.machine_load.physical_cores`) and the fit's
product has at least :data:`PROBE_WORK` multiply-adds per thread, it takes them all.
Otherwise, where that leaves more than one, it times a few iterations' worth of the fit's
own kind of work (one ``X W^T`` product, the softmax residual, one ``R^T X`` product on a
block of this problem's shape) with one thread and with that many, interleaved, and keeps
more threads only when they are clearly faster (mean time at most :data:`MARGIN` of one
thread's). The probe costs a few tens of milliseconds and stops at the first round where
more threads are slower. The probe alone misjudged a busy core in a third of the fits: a
thread that wakes up is run ahead of a process that has been computing for a while (the
scheduler's credit for sleepers), so for the few tens of milliseconds of the probe two
threads ran at full speed beside a CPU-bound process, and for the seconds of the fit they
did not (``bench_path.py --burner --threads default,1,default,1``: the
collinear path 9.9 s on the two threads the probe chose against 4.6 s on one, 100 classes 7.9
against 4.2 s; ``results/path-threads-burner-cpu-2026-12-04.txt``). The load is read while
this process sleeps, where no such credit applies. Load that starts during the fit is read
between path points (:class:`LoadWatch`, over :data:`WATCH_INTERVAL_S` or more of the fit's
own running, no pause) and drops the count to the cores left free from the next point on
(a burner started 1 s into the collinear fit: 1.03x one thread's time, 1.47x without; same
results file). A count that other processes' load held down, at the start or by such a
drop, is measured again (the pause and the probe, as at the start) once a span reads that
load gone (:class:`LoadGovernor`, at most :data:`RAISE_TRIES` times): a CPU-bound process
stopped 1 s into the 1,000-class path had left it one thread to its end (74.5 s); measured
again, it ran on two from its fourth point (53.5 s;
``results/path-threads-burner-stop-cpu-2026-12-05.txt``). The count in force before the
fit is restored after it. The proximal Newton solver's
points get a count of their own, measured once on a product of its Hessian's kind
(:func:`newton_threads`).

numpy's BLAS (OpenBLAS in the wheels) has its own thread pool, one thread per core by default,
and the proximal Newton solver runs there (its model's matrix-vector products and the
Schur complements of the biases): the fit holds it to one thread (:func:`blas_limits`),
whatever torch's count. Left at two threads beside a busy core, it made the collinear path
11.3 s against 9.0 s with one, the n ≪ d path 5.6 s against 4.1 s, though torch ran on one
thread in both (``bench_path.py --geometry collinear,wide --burner --threads default``, with
and without ``OPENBLAS_NUM_THREADS=1``; ``benchmarks/results/path-geometries-cpu-2026-12-01.txt``).
On a quiet machine two pools of two threads each on two cores contend too: with torch on two
threads, the paths that run Newton were up to 2× faster with BLAS on one thread than on two,
and none slower (:data:`BLAS_THREADS`).

Overrides: ``fit_path(threads=k)`` (an int) or the environment variable
``SPARSE_PROBE_THREADS=k`` use ``k`` threads without measuring (``auto`` measures);
``torch.set_num_threads`` / ``OMP_NUM_THREADS`` bound the candidates (with one thread there is
nothing to measure). CUDA fits leave the thread count alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator

import torch

from sparse_probe.solvers.machine_load import (
    LOAD_WINDOW_S,
    LoadWatch,
    LoadWindow,
    busy_cores,
    cpu_quota,
    physical_cores,
)

__all__ = ["BLAS_THREADS", "BUSY_SHARE", "ENV_VAR", "MARGIN", "PROBE_WORK", "QUIET_SHARE",
           "RAISE_SPANS", "RAISE_TRIES", "SMALL_HESSIAN", "SMALL_WORK", "WATCH_INTERVAL_S",
           "WATCH_SHARE", "WINDOW_WORK", "LoadGovernor", "StartThreads", "blas_limits",
           "fit_threads", "free_threads", "load_watch", "newton_threads", "pick_threads",
           "remeasure", "resolve_threads", "torch_threads"]

log = logging.getLogger(__name__)

ENV_VAR = "SPARSE_PROBE_THREADS"
MARGIN = 0.9
"""More threads are kept only when their probe time is at most this share of one thread's.
Others' load is read apart from the probe (:func:`free_threads`, :class:`LoadGovernor`), so
the margin only guards against the probe's own scatter. On twelve shapes on the quiet 2-core
machine two threads were faster over the whole path on every one (path time 0.80-0.96 of one
thread's) where the probe read 0.55-1.19 (medians 0.57-0.88). At the former 0.8 the three
whose probe medians read 0.81-0.88 (paths 0.90-0.92) got one thread in at least half their
fits; at 0.9, 3 of the 72 fits did (``benchmarks/measure_thread_probe.py --spread 6 --paths``,
``results/thread-probe-spread-cpu-2026-12-05.txt``)."""
BLAS_THREADS = 1
"""numpy's BLAS threads during a CPU fit, whatever torch's count. With torch on two threads on
the 2-core machine, one BLAS thread instead of two made the default's paths that run Newton
1.0-2.0x faster (collinear 10,000 × 256 × 10 1.40x, n ≪ d 500 × 5,000 × 10 2.03x, five
held-out shapes 1.01-1.46x) and the OWL-QN ones no slower; with torch on one thread, two
BLAS threads gained nothing (``benchmarks/measure_thread_pools.py``,
``results/thread-pools-cpu-2026-12-03.txt``)."""
SMALL_HESSIAN = 2e8
"""A Newton point whose fresh Hessian (``n N²/2`` multiply-adds) is under this keeps the fit's
count without a probe of its own (:func:`newton_threads`): at 30-60 G multiply-adds per
second such a Hessian takes a few milliseconds, about as long as the probe."""
SMALL_WORK = 8_000_000
"""A fit whose product ``X W^T`` is under this many multiply-adds (``n·d·C``) runs on one
thread without a probe: below it two threads lost on every shape in every run of
``benchmarks/measure_thread_probe.py`` (1.1-3.9× one thread's time), above it the outcome
varied by shape and run (0.66-1.45×) and the probe decides; the probe itself was 4-5% of a
two-class 10,000 × 256 path (``benchmarks/results/thread-probe-cpu-2026-12-03.txt``)."""
PROBE_WORK = 4_000_000
"""Multiply-adds per thread (``n·d·C`` over the count) from which a fit that finds every core
free, one physical core per thread, takes them all without a probe. On twelve shapes of
9-64 M multiply-adds (4.5-32 M per thread) on the quiet 2-core machine two threads ran the
whole path faster on every one (0.80-0.96 of one thread's time), while their 4-round probe
read 0.55-1.19 of one thread's time and picked one thread in 3 of 72 fits
(``measure_thread_probe.py --spread 6 --paths``,
``results/thread-probe-spread-cpu-2026-12-05.txt``). Without the probe the set-up before a
fit's first point took 60-66 ms instead of 84-105 ms, whole fits the same within noise
(``compare_revisions.py --quiet-start``, ``results/thread-start-cpu-2026-12-06.txt``). Below
it, and where some cores are taken, the probe decides."""


WINDOW_WORK = 64_000_000
"""The most multiply-adds a piece of a fit's set-up may take to run in the load's window on
one thread (:meth:`StartThreads.poll`): a few milliseconds there. The first full gradient of
the 1,000-class bench path (20,000 x 32 x 1,000: 640 M, and 20 M exponentials) ran past the
window on one thread, its first point 184 ms against 153 with the window slept
(``compare_revisions.py --quiet-start``, ``results/start-window-cpu-2026-12-06.txt``)."""


BUSY_SHARE = 0.5
"""Other processes' load (cores) from which a core counts as taken (:func:`free_threads`)."""
WATCH_SHARE = 0.3
"""Other processes' load (cores) from which :class:`LoadWatch` counts a core as taken. Lower
than :data:`BUSY_SHARE`: its spans include the fit's own threads, which a CPU-bound process
shares its core with (spans of 0.5 s read 0.60-0.70 of a core for it beside two threads, and
0.34-0.53 where the span began before it started; quiet spans -0.06-0.07: ad hoc runs of the
collinear and 100-class paths), and a missed drop costs more (two threads collapse, up to
2x one thread's time) than a needless one (at most the second thread's gain, 1.2-1.3x)."""
WATCH_INTERVAL_S = 0.5
""":class:`LoadWatch` reads the load over at least this much wall time (the fit's own
threads run meanwhile and the scheduler shares the busy core between them and the other
process, which then shows as 0.6-0.7 of a core: :data:`WATCH_SHARE`). At 100 ticks a second
per CPU a span of 0.5 s on 2 CPUs resolves 1% of a core; quiet spans read under 0.07."""


QUIET_SHARE = 0.15
"""Other processes' load (cores) under which a :class:`LoadWatch` span counts as quiet for a
raise (:class:`LoadGovernor`): quiet spans read -0.06-0.07 of a core, and a fit on one thread
beside a CPU-bound process on the other core reads about 1 (:data:`WATCH_SHARE`)."""
RAISE_SPANS = 1
"""Quiet spans in a row (of :data:`WATCH_INTERVAL_S` or more each) before a fit held down by
other processes' load measures its count again (:class:`LoadGovernor`); twice that many after
each measure that found no more threads worth taking. A burner stopped 1 s into the 100-class
path read 0.61 of a core over the span it stopped in and 0.00-0.01 after (ad hoc readings):
one quiet span is the load gone; each measure that finds otherwise costs one pause and probe."""
RAISE_TRIES = 3
"""Most such measures per fit (each one :func:`resolve_threads`' pause and probe, 0.05-0.15 s
on the 2-core machine)."""


class LoadGovernor:
    """The fit's thread count between path points, as other processes' load comes and goes.

    Each call of :meth:`step` reads the load over the span since the last reading
    (:meth:`LoadWatch.busy <sparse_probe.solvers.machine_load.LoadWatch.busy>`): where others
    took a core it answers ``("drop", fewer)`` (:func:`free_threads` of that load, a core
    counted as taken from :data:`WATCH_SHARE` of one). A
    count held below the machine's by their load, at the fit's start (``held``:
    :func:`resolve_threads` found fewer cores free than torch's count) or by a drop, is
    measured again once the load has gone (:data:`RAISE_SPANS` spans in a row under
    :data:`QUIET_SHARE`; at most :data:`RAISE_TRIES` times, each failed try doubling the
    spans the next one waits for): ``("remeasure", k)``, on which the caller runs
    :func:`remeasure`. Otherwise ``("keep", k)``. A load that only passed at the start
    would otherwise hold a long fit to one thread to its end (module docstring).
    """

    def __init__(self, watch: LoadWatch, held: bool):
        self.watch, self.held = watch, held
        self.quiet, self.spans, self.tries = 0, RAISE_SPANS, RAISE_TRIES

    def step(self, k: int, top: int, base: int | None = None) -> tuple[str, int]:
        """The count for the next point of a fit whose points run at most ``k`` threads of
        ``top`` (``base`` of them at its own points, ``k`` by default: the proximal Newton
        solver's points may have a count of their own, :func:`newton_threads`)."""
        busy = self.watch.busy()
        if busy is None:
            return "keep", k
        cap = min(k, free_threads(k, busy, share=WATCH_SHARE))
        if cap < k:
            self.held, self.quiet = True, 0
            return "drop", cap
        if not self.held or (k if base is None else base) >= top or self.tries <= 0:
            return "keep", k
        self.quiet = self.quiet + 1 if busy < QUIET_SHARE else 0
        if self.quiet < self.spans:
            return "keep", k
        self.quiet, self.tries = 0, self.tries - 1
        return "remeasure", k

    def measured(self, k: int, got: int, top: int) -> None:
        """Record a measure's outcome ``got`` for a fit that ran ``k`` of ``top`` threads."""
        if got <= k:
            self.spans *= 2  # no more threads worth it now: wait longer before the next try
        self.held = max(got, k) < top


def remeasure(device, shape: tuple[int, int, int], top: int) -> int:
    """:func:`resolve_threads` again for a fit held down by other processes' load, with
    torch's count back at ``top`` for the measure (others' load read anew over the pause,
    then the probe), as at a fit's start; torch's count is left as it was."""
    with torch_threads(top):
        return resolve_threads("auto", device, shape)


def load_watch(threads, k: int | None, top: int) -> LoadWatch | None:
    """A :class:`LoadWatch` for a fit whose count ``k`` was measured (``threads`` not given:
    a given count stands) and that may run on more than one of ``top`` threads; else None."""
    if k is None or top <= 1 or _given(threads) is not None:
        return None
    return LoadWatch(WATCH_INTERVAL_S)


def _quota_top(top: int) -> int:
    """``top`` held to the CPUs this process's cgroup quota allows (rounded down, at least
    1)."""
    quota = cpu_quota()
    return top if quota is None else max(1, min(top, math.floor(quota + 1e-9)))


def free_threads(top: int, busy: float | None = None, share: float = BUSY_SHARE) -> int:
    """At most ``top`` threads, no more than the CPUs this process's cgroup quota allows
    (:func:`cpu_quota`, rounded down), and no more than the cores that other processes leave
    free: ``len(os.sched_getaffinity(0)) − ⌊busy + 1 − share⌋`` (``busy`` from
    :func:`busy_cores` when not given; a core counts as taken from ``share`` of one on); at
    least 1. Only ``top`` and the quota where the load cannot be read."""
    top = _quota_top(top)
    if top <= 1:
        return 1
    if busy is None:
        busy = busy_cores()
    if busy is None:
        return top
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return top
    taken = max(0, math.floor(busy + 1.0 - share))
    return max(1, min(top, n_cpus - taken))


def pick_threads(timings: dict[int, list[float]], margin: float = MARGIN) -> int:
    """The thread count to use, given probe timings per candidate count.

    Parameters
    ----------
    timings : dict of int -> list of float
        Seconds of each probe repetition per thread count; must include 1 (lists may differ
        in length: the probe stops early once more threads are slower).
    margin : float
        A count above 1 wins only with a mean time at most ``margin`` × one thread's (and the
        best such mean among the candidates).

    Returns
    -------
    int
    """
    if 1 not in timings:
        raise ValueError("pick_threads: timings must include the one-thread probe")
    base = sum(timings[1]) / len(timings[1])
    best, best_t = 1, base
    for k, ts in sorted(timings.items()):
        if not ts:
            continue
        t = sum(ts) / len(ts)
        if k > 1 and t <= margin * base and t < best_t:
            best, best_t = k, t
    return best


def _given(threads) -> int | None:
    """The count the caller gave: ``threads`` as an int, else (``threads`` None) the
    environment's :data:`ENV_VAR`; None for 'measure' (``"auto"`` measures whatever the
    environment says)."""
    k = _parse(threads, "threads")
    if k is None and threads is None:
        k = _parse(os.environ.get(ENV_VAR), ENV_VAR)
    return k


def _parse(value, name: str) -> int | None:
    """An explicit count (int >= 1), or None for 'measure' (None / 'auto')."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive integer or 'auto', got {value!r}") from None
    if k < 1:
        raise ValueError(f"{name}: expected a positive integer or 'auto', got {value!r}")
    return k


def _probe_problem(n: int, m: int, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The probe's problem: the fit's shape cut to at most 8,192 rows, 2·10⁶ logits and
    2^21 entries of X, or 256 columns where that is more (at least 64 rows and 8 columns),
    the same data on every call. Few rows keep many columns: at 500 × 5,000 × 10 (the bench's
    n ≪ d path, whose full-gradient passes and OWL-QN points run over thousands of columns)
    the probe at 256 columns found two threads no faster, and the path ran 1.3x faster on
    two (``results/thread-pools-cpu-2026-12-03.txt``).

    Returns
    -------
    X : torch.Tensor of shape (n_p, m_p), float32
    W : torch.Tensor of shape (C, m_p), float64
        Small weights (logits of order 0.1, as near the path's start).
    y : torch.Tensor of shape (n_p,), int64
        Labels in ``[0, C)``.
    """
    n_p = max(64, min(n, 8192, 2_000_000 // max(C, 1)))
    m_p = max(8, min(m, max(256, (1 << 21) // n_p)))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n_p, m_p, generator=g)
    W = torch.randn(C, m_p, generator=g, dtype=torch.float64) * 0.01
    y = torch.randint(0, C, (n_p,), generator=g)
    return X, W, y


def _probe(n: int, m: int, C: int, repeats: int = 4,
           clock=time.perf_counter) -> dict[int, list[float]]:
    """Time one iteration's kind of work with 1 and with torch's thread count, interleaved.

    Each count first runs the work once untimed: the first call at a thread count starts
    torch's OpenMP team for it and has oneDNN generate its kernels for this shape and count,
    and timed, it made a fresh process's probe pick one thread in 3 of 8 runs on the quiet
    2-core machine where two were 1.5x faster over the fit (an ad hoc check; the collinear
    bench path's first fit in a process took 7.3 s on one thread against 4.7 s on two). On a
    busy machine the warm-up costs one slow multi-threaded call. Then it stops after the
    first round in which the multi-threaded total exceeds the one-thread total: on a busy
    machine each multi-threaded call can take ten times longer than one thread's, and one
    such call is enough to decide. ``clock`` (seconds) is for tests.
    """
    from sparse_probe.solvers.products import rt_x, x_wt
    from sparse_probe.solvers.restricted import softmax_residual

    top = torch.get_num_threads()
    X, W, y = _probe_problem(n, m, C)
    buf = torch.empty((X.shape[0], C), dtype=torch.float64)

    def work():
        z = x_wt(X, W).to(torch.float64)
        _, R = softmax_residual(z, y, out=buf)
        rt_x(R, X)

    return _time_counts(work, top, repeats, clock)


def _time_counts(work, top: int, repeats: int, clock) -> dict[int, list[float]]:
    """``work()`` timed with 1 and ``top`` threads, interleaved, after an untimed call at each
    count, stopping after the first round where ``top`` is slower (:func:`_probe`)."""
    timings: dict[int, list[float]] = {1: [], top: []}
    try:
        for k in (1, top):  # warm-up, untimed, at each count (_probe's docstring)
            torch.set_num_threads(k)
            work()
        for _ in range(repeats):
            for k in (1, top):
                torch.set_num_threads(k)
                t = clock()
                work()
                timings[k].append(clock() - t)
            if sum(timings[top]) > sum(timings[1]):
                break
    finally:
        torch.set_num_threads(top)
    return timings


def _probe_hessian(repeats: int = 4, clock=time.perf_counter) -> dict[int, list[float]]:
    """Time a product of the Newton Hessian's kind, ``A @ B.T`` float32 with ``A`` (128,
    2,048) and ``B`` (512, 2,048) (134 M multiply-adds, 3-5 ms on one thread of the 2-core
    machine), with 1 and with torch's thread count, as :func:`_probe`."""
    g = torch.Generator().manual_seed(1)
    V = torch.randn(640, 2048, generator=g)
    A, B = V[:128], V[128:]
    return _time_counts(lambda: A @ B.T, torch.get_num_threads(), repeats, clock)


class StartThreads:
    """The thread count of a fit on ``device`` of an ``(n, m, C)``-shaped problem, chosen
    while the fit's set-up runs.

    Where the count needs no reading of the load (``threads`` given: an int, or None with
    :data:`ENV_VAR` set; not a CPU fit: None; torch at one thread, a fit under
    :data:`SMALL_WORK` or a cgroup quota of one CPU: 1) it is :attr:`k` at once. Otherwise a
    :class:`~sparse_probe.solvers.machine_load.LoadWindow` opens: the caller runs its set-up
    on one thread (:func:`fit_threads` holds torch there) and calls :meth:`poll` between
    pieces of it; the first call once :data:`~sparse_probe.solvers.machine_load.LOAD_WINDOW_S`
    has passed, or :meth:`settle` (which sleeps what is left of the window), reads the load
    and decides as the module docstring says (the cores others leave free, every core free
    and enough work: all of them, else the probe). The n ≪ d bench path spent the window's
    30 ms asleep before its statistics' passes (26 ms on two threads, in a fresh process);
    its pieces now run in it. ``report`` (a dict), when given, receives ``"held"``: whether
    other processes' load left fewer cores than torch's count, the CPUs and the cgroup quota
    allow (only where the load was read).
    """

    def __init__(self, threads, device, shape: tuple[int, int, int],
                 report: dict | None = None):
        self.shape, self.report = shape, report
        self.top = torch.get_num_threads()
        self.k: int | None = None
        self._load: LoadWindow | None = None
        if torch.device(device).type != "cpu":
            return
        self.k = _given(threads)
        if self.k is not None:
            return
        n, m, C = shape
        if self.top <= 1:
            self.k = 1
        elif n * m * C < SMALL_WORK:
            log.debug("threads: %d x %d x %d is under SMALL_WORK -> 1", n, m, C)
            self.k = 1
        elif _quota_top(self.top) <= 1:  # the cgroup's quota: one CPU, no load to read
            self.k = 1
            if report is not None:
                report["held"] = False
        else:
            self._load = LoadWindow()

    @property
    def decided(self) -> bool:
        """Whether the count is known (no window open)."""
        return self._load is None

    def poll(self, next_work: float = 0.0) -> None:
        """Decide now if the window is open and has lasted its length, or if the caller's
        next piece of set-up is ``next_work`` multiply-adds, more than :data:`WINDOW_WORK`
        (it would outlast the window on one thread: it runs on the count chosen instead);
        else nothing."""
        if self._load is not None and (self._load.elapsed() >= LOAD_WINDOW_S
                                       or next_work > WINDOW_WORK):
            self.settle()

    def settle(self) -> int | None:
        """The count: read the load where the window is open (sleeping what is left of it)
        and decide; torch's count is then set to it (None: not a CPU fit, left alone)."""
        if self._load is not None:
            busy, self._load = self._load.busy(), None
            self.k = self._choose(busy)
            torch.set_num_threads(self.k)
        return self.k

    def _choose(self, busy: float | None) -> int:
        top, (n, m, C) = self.top, self.shape
        free = free_threads(top, busy)
        if self.report is not None:  # fewer than the quota and the CPUs allow: others' load
            self.report["held"] = free < free_threads(top, 0.0)
        if free < top:
            # INFO: why a fit runs on fewer threads than the machine has (as the mid-fit drop's)
            log.info("threads: other processes leave %d of %d -> %s", free, top,
                      "1" if free == 1 else "probe")
            if free == 1:
                return 1
        elif n * m * C >= top * PROBE_WORK and (physical_cores() or 0) >= top:
            log.debug("threads: every core free, %d x %d x %d -> %d", n, m, C, top)
            return top
        with torch_threads(free):  # the probe's candidates: 1 and ``free``
            timings = _probe(*self.shape)
        choice = pick_threads(timings)
        log.debug("threads: probe %s -> %d", _ms(timings), choice)
        return choice


def resolve_threads(threads, device: torch.device, shape: tuple[int, int, int],
                    report: dict | None = None) -> int | None:
    """The thread count for a fit on ``device`` of an ``(n, m, C)``-shaped problem, with
    nothing run in the load's window (:class:`StartThreads`, settled at once; torch's count
    is left as it was).

    ``threads``: an int (used as is), None (the environment variable :data:`ENV_VAR` when
    set, else measured: see the module docstring) or ``"auto"`` (measured, whatever the
    environment says). Returns None for non-CPU devices (left alone). ``report``: as
    :class:`StartThreads`'.
    """
    with torch_threads(torch.get_num_threads()):
        return StartThreads(threads, device, shape, report).settle()


def _ms(timings: dict[int, list[float]]) -> dict[int, float]:
    """Total milliseconds per thread count (the debug log's)."""
    return {k: round(sum(v) * 1e3, 2) for k, v in timings.items()}


def newton_threads(threads, k: int | None, top: int) -> int | None:
    """The thread count for the points the proximal Newton solver takes, in a fit whose
    other points run on ``k`` threads (:func:`resolve_threads`) and whose torch count before
    the fit was ``top``.

    Newton's time goes to its Hessian's products (large ``A @ B.T`` blocks, which two threads
    run faster wherever a core is free) and to its model solves (one thread: the compiled
    coordinate descent, numpy's BLAS held to :data:`BLAS_THREADS`), not to the skinny
    products :func:`_probe` times: beside a quiet core two threads ran the bench's n ≪ d path
    (Newton on 26 of 30 points) 1.36x faster where the probe picked one (its products gain
    nothing at n = 500; ``results/thread-pools-cpu-2026-12-03.txt``). So unless the count is
    given (``threads`` an int or :data:`ENV_VAR`: that count) or ``k`` is None (not a CPU
    fit: None), ``top`` is held to the cores other processes leave free (:func:`free_threads`)
    and, where that is still above ``k``, a product of the Hessian's kind is timed
    (:func:`_probe_hessian`) and :func:`pick_threads` decides between 1 and ``top``. The
    fit asks once, at its first Newton point whose Hessian has at least
    :data:`SMALL_HESSIAN` multiply-adds; smaller ones keep ``k``.
    """
    if k is None:
        return None
    if k >= top or _given(threads) is not None:
        return k
    top = free_threads(top)  # other processes' load, as at the fit's start
    if k >= top:
        log.debug("threads: other processes leave %d -> Newton %d", top, k)
        return k
    with torch_threads(top):
        timings = _probe_hessian()
    choice = pick_threads(timings)
    log.debug("threads: Newton probe %s -> %d", _ms(timings), choice)
    return choice


def blas_limits(k: int | None) -> contextlib.AbstractContextManager:
    """numpy's and scipy's BLAS (OpenBLAS, MKL, BLIS) held to ``k`` threads in the body
    (``threadpoolctl``; torch's own MKL is linked into torch and set by
    ``torch.set_num_threads``). A no-op for ``k`` None."""
    if k is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # a dependency; imported on a CPU fit only

    return threadpool_limits(limits=k, user_api="blas")


@contextlib.contextmanager
def torch_threads(k: int | None) -> Iterator[None]:
    """torch's thread count set to ``k`` in the body (None: left alone), then restored."""
    old = torch.get_num_threads()
    if k is not None and k != old:
        torch.set_num_threads(k)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@contextlib.contextmanager
def fit_threads(threads, device, shape: tuple[int, int, int],
                report: dict | None = None) -> Iterator[StartThreads]:
    """Run the body with :data:`BLAS_THREADS` for numpy's BLAS (:func:`blas_limits`) and
    torch's count chosen by a :class:`StartThreads` (yielded: torch runs on one thread until
    its :meth:`~StartThreads.poll` or :meth:`~StartThreads.settle` decides), then restore
    both. torch's count is left alone where the fit is not on CPU."""
    cpu = torch.device(device).type == "cpu"
    start = StartThreads(threads, device, shape, report=report)
    # BLAS held from before the load is read (a BLAS thread spinning after a product would
    # count as a core taken); threadpoolctl's scan of the loaded libraries (4 ms in a fresh
    # process, ad hoc) runs in the window
    with blas_limits(BLAS_THREADS if cpu else None), \
            torch_threads(start.k if start.decided else 1):
        yield start
