"""What the machine leaves a fit: other processes' load and this process's CPU quota.

Two readings the thread rule (:mod:`sparse_probe.solvers.threads`) decides on, both from the
kernel's own accounting rather than from timing a probe (which a busy core or a quota can
fool for the few tens of milliseconds it runs):

- :func:`busy_cores` / :class:`LoadWindow` / :class:`LoadWatch`: the cores' worth of CPU time other processes (and
  a hypervisor's other guests) take on the CPUs this process may run on: ``n_cpus · Δbusy /
  Δtotal`` of the ``cpuN`` lines of ``/proc/stat`` for ``os.sched_getaffinity(0)``, less this
  process's own CPU time over the wall time.
- :func:`cpu_quota`: the CPUs' worth of time this process's cgroup may use (CFS quota over
  period, v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), the smallest on
  the way from the hierarchy's root to its cgroup.

Both return None where the kernel offers no such reading (not Linux).
"""

from __future__ import annotations

import os
import time

__all__ = ["CGROUP_ROOT", "LOAD_WINDOW_S", "SPIN_SETTLE_S", "SPIN_SHARE", "STAT", "SYS_CPU",
           "LoadWatch", "LoadWindow", "busy_cores", "cpu_quota", "physical_cores"]

LOAD_WINDOW_S = 0.03
"""The pause over which :func:`busy_cores` reads the other processes' load. On the 2-core
machine, 30 windows of 40 ms read 0.99-1.10 cores beside one CPU-bound process and -0.01-0.22
quiet (an ad hoc run): far apart at this length already."""
STAT = "/proc/stat"
SPIN_SHARE = 0.5
"""This process's own CPU time over a pause (its calling thread asleep), in cores, from which
:func:`busy_cores` counts one of its other threads as running: numpy's BLAS (OpenBLAS) keeps
a thread spinning at a full core for about a tenth of a second after each multi-threaded
product (``THREAD_TIMEOUT``, 2^28 cycles), and torch's second thread beside it lost to one
thread (2-10x a two-thread product's time, ad hoc)."""
SPIN_SETTLE_S = 0.15
"""How long :func:`busy_cores` waits, past its window, for such a thread to stop spinning,
reading in slices of :data:`SPIN_SLICE_S`: over pauses of 10 ms right after a numpy
``A.T @ A`` (800 x 800) on the 2-core machine the process ran 0.8-1.0 of a core for 110 ms,
then less as the thread slept (ad hoc). A thread still running after it counts as a core
taken, as another process's would."""
SPIN_SLICE_S = 0.01


def _stat_ticks(text: str, cpus) -> tuple[int, int]:
    """Busy and total ticks of the CPUs ``cpus`` in a ``/proc/stat`` text (``cpuN`` lines:
    user nice system idle iowait irq softirq steal; idle and iowait are not busy, steal is:
    a hypervisor's other guests take the core as another process would)."""
    busy = total = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        fields = line.split()
        if int(fields[0][3:]) not in cpus:
            continue
        v = [int(x) for x in fields[1:9]]
        total += sum(v)
        busy += sum(v) - v[3] - v[4]
    return busy, total


def _read_stat() -> str | None:
    try:
        with open(STAT) as fh:
            return fh.read()
    except OSError:
        return None


class LoadWatch:
    """Other processes' load, read from ``/proc/stat`` whenever asked, without pausing (a fit
    asks between path points: :func:`~sparse_probe.solvers.threads.load_watch`).

    :meth:`busy` returns the cores' worth of CPU time others took on this process's CPUs since
    the last reading at least ``interval`` seconds ago (None before that, or where the load
    cannot be read). ``read``, ``cpu_time``, ``clock``: for tests.
    """

    def __init__(self, interval: float, *, read=_read_stat,
                 cpu_time=time.process_time, clock=time.perf_counter):
        self.interval, self._read, self._cpu, self._clock = interval, read, cpu_time, clock
        try:
            self._cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            self._cpus = None
        self._last = self._reading()

    def _reading(self):
        text = self._read() if self._cpus is not None else None
        if text is None:
            return None
        return _stat_ticks(text, self._cpus), self._cpu(), self._clock()

    def busy(self) -> float | None:
        """Others' load in cores since the last reading, once ``interval`` has passed (the
        reading then starts the next span); None before, or where it cannot be read."""
        if self._last is None or self._clock() - self._last[2] < self.interval:
            return None
        now = self._reading()
        if now is None:
            return None
        ((b0, t0), c0, w0), ((b1, t1), c1, w1) = self._last, now
        self._last = now
        if t1 <= t0 or w1 <= w0:
            return None
        return len(self._cpus) * (b1 - b0) / (t1 - t0) - (c1 - c0) / (w1 - w0)


class LoadWindow:
    """Other processes' load over a window that opens on construction and in which the
    calling thread may work instead of sleeping (a fit's set-up passes on one thread:
    :class:`~sparse_probe.solvers.threads.StartThreads`); :meth:`busy` sleeps what is left of
    the window and reads it.

    Others' load is ``n_cpus · Δbusy / Δtotal`` of ``/proc/stat`` less this process's CPU time
    over the wall time (:class:`LoadWatch`), the calling thread's work included. That work
    cannot hide a free core: it displaces others only where their load and it exceed the
    cores, where at most one core reads free either way. This process's *other* threads'
    share (its CPU time less the calling thread's, ``thread_time``) decides whether one of
    them is still running (:data:`SPIN_SHARE`, :func:`busy_cores`). ``read``, ``cpu_time``,
    ``thread_time``, ``clock``: for tests.
    """

    def __init__(self, *, read=_read_stat, cpu_time=time.process_time,
                 thread_time=time.thread_time, clock=time.perf_counter):
        self._watch = LoadWatch(0.0, read=read, cpu_time=cpu_time, clock=clock)
        self._cpu, self._thread, self._clock = cpu_time, thread_time, clock
        self._start = self._marks()

    def _marks(self) -> tuple[float, float, float]:
        return self._cpu(), self._thread(), self._clock()

    def elapsed(self) -> float:
        """Wall seconds since the window opened."""
        return self._clock() - self._start[2]

    def busy(self, window: float = LOAD_WINDOW_S, settle: float = SPIN_SETTLE_S,
             sleep=time.sleep) -> float | None:
        """Cores' worth of CPU time others took since the window opened, after sleeping to
        ``window`` seconds from its start, and this process's other threads' share where one
        of them keeps running (waited out up to ``settle`` seconds from the start, as
        :func:`busy_cores`). None where ``/proc/stat`` cannot be read or no tick passed."""
        rest = window - self.elapsed()
        if rest > 0:
            sleep(rest)
        (c0, h0, t0), start = self._start, self._start[2]
        c1, h1, t1 = self._marks()
        own = ((c1 - c0) - (h1 - h0)) / max(t1 - t0, 1e-9)
        while own >= SPIN_SHARE and t1 - start < settle:
            c0, h0, t0 = c1, h1, t1
            sleep(SPIN_SLICE_S)
            c1, h1, t1 = self._marks()
            own = ((c1 - c0) - (h1 - h0)) / max(t1 - t0, 1e-9)
        others = self._watch.busy()
        if others is None:
            return None
        return others + (own if own >= SPIN_SHARE else 0.0)


def busy_cores(window: float = LOAD_WINDOW_S, settle: float = SPIN_SETTLE_S, *,
               read=_read_stat, sleep=time.sleep, cpu_time=time.process_time,
               thread_time=time.thread_time, clock=time.perf_counter) -> float | None:
    """Cores' worth of CPU time that other processes (and the hypervisor's other guests) take
    on the CPUs this process may run on, over a pause of ``window`` seconds, and this
    process's own other threads where one of them keeps running.

    ``n_cpus · Δbusy / Δtotal`` of the ``/proc/stat`` lines of this process's CPUs
    (``os.sched_getaffinity``), less this process's own CPU time over the wall time. The
    calling thread sleeps through the pause, so this process's CPU time there is its other
    threads': where they ran :data:`SPIN_SHARE` of a core or more (a BLAS thread spinning
    after a product), the pause goes on in slices of :data:`SPIN_SLICE_S` until a slice reads
    less or ``settle`` seconds have passed, and a share still at or above it is added to the
    result (a core those threads keep from the fit). None where ``/proc/stat`` cannot be read
    (not Linux) or no tick passed. ``read``, ``sleep``, ``cpu_time``, ``thread_time``,
    ``clock``: for tests. :class:`LoadWindow` is the same reading with work in the pause.
    """
    return LoadWindow(read=read, cpu_time=cpu_time, thread_time=thread_time,
                      clock=clock).busy(window, settle, sleep)


SYS_CPU = "/sys/devices/system/cpu"


def physical_cores(root: str = SYS_CPU) -> int | None:
    """Physical cores among the CPUs this process may run on (``os.sched_getaffinity``): CPUs
    that share a core (SMT siblings, the same ``topology/thread_siblings_list``) count once.
    Two threads on one core's siblings share its arithmetic units, so a fit there may gain
    nothing from the second. None where the topology cannot be read (not Linux)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    cores = set()
    for c in cpus:
        try:
            with open(os.path.join(root, f"cpu{c}", "topology", "thread_siblings_list")) as fh:
                cores.add(fh.read().strip())
        except OSError:
            return None
    return len(cores) or None


CGROUP_ROOT = "/sys/fs/cgroup"


def _quota_v2(text: str) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000"); None: no limit."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return int(parts[0]) / int(parts[1])


def cpu_quota(root: str = CGROUP_ROOT, self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """CPUs' worth of time this process's cgroup may use: the smallest CFS quota / period of
    its cgroup and their ancestors (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), also read at the hierarchy's root (inside a container its own
    cgroup is the root it sees). None: no quota, or none readable (not Linux).

    Containers and CI runners are often held to fewer CPUs than they see (``docker --cpus``,
    Kubernetes limits): torch's threads then follow the CPUs seen, and the quota's 100 ms
    periods, longer than the probe, hid the throttling from it: under a 1-CPU quota on the
    2-core machine the default chose two threads on three paths, 1.33-1.77x one thread's time
    (``results/path-threads-burner-cpu-2026-12-04.txt``, E).
    """
    try:
        with open(self_cgroup) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        names = controllers.split(",") if controllers else []
        v2 = hid == "0" and not controllers  # the unified hierarchy (hybrid: under unified/)
        if v2:
            bases = [os.path.join(root, "unified"), root]
        elif "cpu" in names:  # v1: mounted as the controller list, or under a usual name
            bases = [os.path.join(root, d) for d in (controllers, "cpu,cpuacct", "cpu")]
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for base in dict.fromkeys(bases):
            if not os.path.isdir(base):
                continue
            for depth in range(len(parts) + 1):
                q = _read_quota(os.path.join(base, *parts[:depth]), v2)
                if q is not None:
                    found.append(q)
    return min(found) if found else None


def _read_quota(folder: str, v2: bool) -> float | None:
    """CPUs of one cgroup folder's quota (v2 ``cpu.max``, else v1's two files); None: no
    quota, or none readable."""
    try:
        if v2:
            with open(os.path.join(folder, "cpu.max")) as fh:
                return _quota_v2(fh.read())
        with open(os.path.join(folder, "cpu.cfs_quota_us")) as fh:
            quota = int(fh.read())
        with open(os.path.join(folder, "cpu.cfs_period_us")) as fh:
            period = int(fh.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
