"""The fit's thread rule (sparse_probe/solvers/threads.py): the choice, overrides, restore."""

import contextlib
from typing import ClassVar

import numpy as np
import pytest
import torch

from sparse_probe import fit_path
from sparse_probe.solvers import machine_load as ml
from sparse_probe.solvers import threads as th


@contextlib.contextmanager
def torch_threads(k: int):
    """torch at ``k`` threads in the body (the test skipped where that cannot be set), and
    the count restored after."""
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(k)
        if torch.get_num_threads() != k:
            pytest.skip(f"cannot set {k} threads here")
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def quiet_machine(request, monkeypatch):
    """Every core free (:func:`~sparse_probe.solvers.threads.free_threads` leaves the count as
    is), so that the probe's tests do not depend on what else runs here; the load check's own
    tests (``@pytest.mark.real_load``) read the real load."""
    if "real_load" not in request.keywords:
        monkeypatch.setattr(th, "free_threads", lambda top, busy=None, share=None: top)


def _stat(ticks: dict[int, tuple[int, ...]], guest: int = 0) -> str:
    """A /proc/stat text with ``cpuN`` lines of the given 8 tick counts (user nice system
    idle iowait irq softirq steal), the two guest fields (``guest`` each: the kernel counts
    them inside user and nice already), and the aggregate and intr lines."""
    total = [sum(v[i] for v in ticks.values()) for i in range(8)]
    g = f" {guest} {guest}"
    lines = ["cpu  " + " ".join(map(str, total)) + g]
    lines += [f"cpu{c} " + " ".join(map(str, v)) + g for c, v in sorted(ticks.items())]
    return "\n".join([*lines, "intr 1 0 0", "ctxt 5"]) + "\n"


class _Paused:
    """A scripted pause: wall time advances by each sleep (or by ``step`` per sleep, where
    given: exact shares), this process's CPU time by ``own_share`` of it, or by ``shares``'
    next value per sleep where given."""

    def __init__(self, own_share=0.0, shares=(), step=None):
        self.t, self.c, self.h, self.slept = 100.0, 5.0, 2.0, []
        self.own, self.shares, self.step = own_share, list(shares), step

    def work(self, s, others=0.0):
        """The calling thread computes for ``s`` seconds (its own CPU time and the
        process's), this process's other threads for ``others`` of a core meanwhile."""
        self.t += s
        self.h += s
        self.c += s * (1.0 + others)

    def sleep(self, s):
        self.slept.append(s)
        dt = s if self.step is None else self.step
        self.c += dt * (self.shares.pop(0) if self.shares else self.own)
        self.t += dt

    def clock(self):
        return self.t

    def cpu(self):
        return self.c

    def thread(self):
        return self.h


@pytest.mark.real_load
def test_busy_cores_reads_the_others_load_on_this_process_cpus(monkeypatch):
    import os

    cpus = sorted(os.sched_getaffinity(0))
    other = max(cpus) + 1  # a CPU this process may not use: its load is not ours to count
    base = {c: (100, 0, 50, 1000, 10, 0, 0, 0) for c in [*cpus, other]}
    after = dict(base)
    # over the window: the first CPU fully busy (user 60, system 20, irq 5, softirq 5, steal
    # 10: a hypervisor's other guest counts), the others idle (iowait is idle), the CPU
    # outside the affinity busy too
    after[cpus[0]] = (160, 0, 70, 1000, 10, 5, 5, 10)
    for c in cpus[1:]:
        after[c] = (100, 0, 50, 1080, 30, 0, 0, 0)
    after[other] = (200, 0, 50, 1000, 10, 0, 0, 0)
    texts = [_stat(base, guest=7), _stat(after, guest=40)]  # guest time: not counted twice
    # this process's other threads ran a quarter of a core meanwhile (its own, and under
    # SPIN_SHARE: no wait, not counted)
    t = _Paused(own_share=0.25)
    got = ml.busy_cores(read=lambda: texts.pop(0), sleep=t.sleep, cpu_time=t.cpu,
                        thread_time=t.thread, clock=t.clock)
    assert t.slept == [ml.LOAD_WINDOW_S]
    # len(cpus) * 100 busy of 100 * len(cpus) ticks = 1 core, less this process's 0.25
    assert got == pytest.approx(1.0 - 0.25)
    unreadable = iter([_stat(base), None])
    t = _Paused()
    assert ml.busy_cores(read=lambda: next(unreadable), sleep=t.sleep, cpu_time=t.cpu,
                         thread_time=t.thread, clock=t.clock) is None
    still = iter([_stat(base), _stat(base)])  # no tick passed
    assert ml.busy_cores(read=lambda: next(still), sleep=t.sleep, cpu_time=t.cpu,
                         thread_time=t.thread, clock=t.clock) is None
    assert "cpu0" in ml._read_stat() and ml.STAT == "/proc/stat"
    if len(cpus) > 1:  # this thread's own CPUs (not another process's)
        os.sched_setaffinity(0, {cpus[0]})
        try:
            assert ml.LoadWatch(0.0)._cpus == {cpus[0]}
        finally:
            os.sched_setaffinity(0, cpus)
    # a CPU outside the affinity listed first: skipped, the lines after it still read
    first = {0: (0, 0, 0, 0, 0, 0, 0, 0), 1: (0, 0, 0, 0, 0, 0, 0, 0), 2: (0, 0, 0, 0, 0, 0, 0, 0)}
    later = {0: (500, 0, 0, 0, 0, 0, 0, 0), 1: (50, 0, 0, 50, 0, 0, 0, 0),
             2: (100, 0, 0, 0, 0, 0, 0, 0)}
    assert ml._stat_ticks(_stat(later), {1, 2}) == (150, 200)
    assert ml._stat_ticks(_stat(first), {1, 2}) == (0, 0)
    # where this process's CPUs are unknown, nothing is read
    def no_affinity(pid):
        raise OSError("no affinity here")

    monkeypatch.setattr(os, "sched_getaffinity", no_affinity)
    w = ml.LoadWatch(0.0, read=lambda: pytest.fail("read without CPUs"))
    assert w.busy() is None and th.LoadGovernor(w, held=True).step(2, 2) == ("keep", 2)
    assert ml.busy_cores(sleep=t.sleep, cpu_time=t.cpu, thread_time=t.thread,
                         clock=t.clock) is None


def test_a_thread_of_this_process_spinning_through_the_pause_is_waited_out_or_counted(
        monkeypatch):
    """numpy's BLAS spinning after a product (this process at a full core while the caller
    sleeps): the pause goes on in slices of SPIN_SLICE_S until one reads under SPIN_SHARE of
    a core, for at most SPIN_SETTLE_S past its start; a thread still running then counts as
    a core taken. Others' load is read over the whole pause, this process's time left out."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert (ml.SPIN_SHARE, ml.SPIN_SETTLE_S, ml.SPIN_SLICE_S) == (0.5, 0.15, 0.01)

    def pause(shares, busy_ticks, total_ticks=1000):
        t = _Paused(shares=shares)
        idle = {0: (0, 0, 0, 0, 0, 0, 0, 0), 1: (0, 0, 0, 0, 0, 0, 0, 0)}
        half = total_ticks // 2
        after = {0: (busy_ticks, 0, 0, half - busy_ticks, 0, 0, 0, 0), 1: (0, 0, 0, half, 0, 0, 0, 0)}
        texts = [_stat(idle), _stat(after)]
        got = ml.busy_cores(read=lambda: texts.pop(0), sleep=t.sleep, cpu_time=t.cpu,
                            thread_time=t.thread, clock=t.clock)
        own = (t.c - 5.0) / (t.t - 100.0)  # this process's share over the whole pause
        return got, t.slept, own

    # spinning through the window and two slices, slower in the third, stopped in the fourth
    got, slept, own = pause([1.0, 1.0, 1.0, 0.9, 0.2], busy_ticks=300)
    assert slept == [ml.LOAD_WINDOW_S] + [ml.SPIN_SLICE_S] * 4
    assert got == pytest.approx(2 * 300 / 1000 - own)  # no core counted for this process
    assert own == pytest.approx((0.03 + 0.01 + 0.01 + 0.009 + 0.002) / 0.07)
    # just over SPIN_SHARE: still spinning; just under it: settled
    assert pause([1.0, ml.SPIN_SHARE + 1e-6, 0.0], busy_ticks=300)[1] == [0.03, 0.01, 0.01]
    got, slept, own = pause([1.0, ml.SPIN_SHARE - 1e-6], busy_ticks=300)
    assert slept == [0.03, 0.01] and got == pytest.approx(0.6 - own)
    # a thread that goes on: waited for SPIN_SETTLE_S, then counted as a core
    got, slept, own = pause([1.0] * 40, busy_ticks=480)
    assert ml.SPIN_SETTLE_S <= sum(slept) < ml.SPIN_SETTLE_S + ml.SPIN_SLICE_S + 1e-9
    assert got == pytest.approx(2 * 480 / 1000 - own + 1.0)
    # quiet: the window alone; the caller's own time under SPIN_SHARE is not a core
    got, slept, _ = pause([0.2], busy_ticks=0)
    assert slept == [ml.LOAD_WINDOW_S] and got == pytest.approx(-0.2)
    # exact shares (a unit step per sleep, settle in those units): SPIN_SHARE itself is
    # still spinning and, where it lasts, counted; the wait ends at settle, not past it
    for shares, slices, counted in [([1.0, 0.5, 0.25], 2, 0.0), ([1.0, 0.5, 0.5, 0.5], 2, 0.5),
                                    ([0.5, 0.5, 0.5, 0.5], 2, 0.5), ([0.25], 0, 0.0)]:
        t = _Paused(shares=shares, step=1.0)
        idle = {0: (0, 0, 0, 0, 0, 0, 0, 0), 1: (0, 0, 0, 0, 0, 0, 0, 0)}
        texts = [_stat(idle), _stat({0: (0, 0, 0, 100, 0, 0, 0, 0), 1: (0, 0, 0, 100, 0, 0, 0, 0)})]
        got = ml.busy_cores(settle=3.0, read=lambda tx=texts: tx.pop(0), sleep=t.sleep,
                            cpu_time=t.cpu, thread_time=t.thread, clock=t.clock)
        assert len(t.slept) - 1 == slices, shares
        own = (t.c - 5.0) / (t.t - 100.0)
        assert got == pytest.approx(-own + counted), shares
    # unreadable: None after the pause
    t = _Paused(shares=[1.0, 0.0])
    assert ml.busy_cores(read=lambda: None, sleep=t.sleep, cpu_time=t.cpu,
                         thread_time=t.thread, clock=t.clock) is None
    assert t.slept == [0.03, 0.01]


def test_the_load_window_lets_the_calling_thread_work_through_it(monkeypatch):
    """LoadWindow: the calling thread's work fills the window (only its rest is slept, none
    past it) and counts as this process's own time, not as another thread spinning; another
    thread that runs meanwhile is still waited out and counted."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    idle = {0: (0, 0, 0, 0, 0, 0, 0, 0), 1: (0, 0, 0, 0, 0, 0, 0, 0)}

    def window(t, busy_ticks):
        after = {0: (busy_ticks, 0, 0, 500 - busy_ticks, 0, 0, 0, 0),
                 1: (0, 0, 0, 500, 0, 0, 0, 0)}
        texts = [_stat(idle), _stat(after)]
        return ml.LoadWindow(read=lambda: texts.pop(0), cpu_time=t.cpu, thread_time=t.thread,
                             clock=t.clock)

    # 20 ms of work: 10 ms slept; the process ran 2/3 of a core, all of it the caller's
    t = _Paused()
    w = window(t, busy_ticks=400)  # 0.8 cores busy over the window, this process's included
    t.work(0.02)
    assert w.elapsed() == pytest.approx(0.02)
    got = w.busy(sleep=t.sleep)
    assert t.slept == [pytest.approx(0.01)]
    assert got == pytest.approx(0.8 - 0.02 / 0.03)  # no core counted for the caller's work
    # work past the window: nothing slept, the reading over the whole span
    t = _Paused()
    w = window(t, busy_ticks=500)
    t.work(0.05)
    assert w.busy(sleep=t.sleep) == pytest.approx(1.0 - 1.0) and t.slept == []
    # exactly the window's length (0.5 s: exact in binary): nothing slept either
    t = _Paused()
    w = window(t, busy_ticks=150)
    t.work(0.5)
    assert w.elapsed() == 0.5
    assert w.busy(window=0.5, sleep=t.sleep) == pytest.approx(0.3 - 1.0) and t.slept == []
    # another thread of this process at a full core beside the work, and on through two
    # slices: waited out, then (stopped) not counted
    t = _Paused(shares=[1.0, 1.0, 0.0])
    w = window(t, busy_ticks=450)
    t.work(0.03, others=1.0)
    got = w.busy(sleep=t.sleep)
    assert t.slept == [ml.SPIN_SLICE_S] * 3
    assert got == pytest.approx(0.9 - (t.c - 5.0) / (t.t - 100.0))
    # one just under SPIN_SHARE of a core: not waited for
    t = _Paused()
    w = window(t, busy_ticks=450)
    t.work(0.03, others=ml.SPIN_SHARE - 1e-6)
    assert w.busy(sleep=t.sleep) == pytest.approx(0.9 - (1.0 + ml.SPIN_SHARE - 1e-6))
    assert t.slept == []
    # one still running through settle: a core taken
    t = _Paused(own_share=1.0)
    w = window(t, busy_ticks=500)
    t.work(0.03, others=1.0)
    got = w.busy(sleep=t.sleep)
    assert ml.SPIN_SETTLE_S <= t.t - 100.0 < ml.SPIN_SETTLE_S + ml.SPIN_SLICE_S + 1e-9
    assert got == pytest.approx(1.0 - (t.c - 5.0) / (t.t - 100.0) + 1.0)


@pytest.mark.real_load
def test_free_threads_leaves_the_cores_others_keep_busy(monkeypatch):
    import os

    n = 4  # this process may run on 4 CPUs (whatever this machine has)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))
    assert th.BUSY_SHARE == 0.5
    assert th.free_threads(n, 0.0) == n
    assert th.free_threads(n, 0.49) == n  # under half a core: not taken
    assert th.free_threads(n, 0.5) == n - 1  # half a core or more: taken
    assert th.free_threads(n, 1.49) == n - 1
    assert th.free_threads(n, 1.5) == n - 2
    assert th.free_threads(n, -0.3) == n  # this process's own rounding, below zero
    assert th.free_threads(2, 0.5) == 2  # the count asked for bounds it
    assert th.free_threads(n, n + 3.0) == 1  # at least one
    monkeypatch.setattr(th, "busy_cores", lambda: None)  # not Linux: the count as asked
    assert th.free_threads(n) == n
    monkeypatch.setattr(th, "busy_cores", lambda: 0.7)  # read when not given
    assert th.free_threads(n) == n - 1


@pytest.mark.real_load
def test_free_threads_on_two_cpus(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert th.free_threads(2, 0.4) == 2 and th.free_threads(2, 0.6) == 1
    assert th.free_threads(4, 0.0) == 2  # no more threads than CPUs to run them
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: (_ for _ in ()).throw(OSError()))
    assert th.free_threads(2, 1.0) == 2  # the CPUs unknown: the count as asked


def test_a_loaded_machine_caps_the_count_before_the_probe(monkeypatch, caplog):
    import logging

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    cpu = torch.device("cpu")
    with torch_threads(4):
        monkeypatch.setattr(th, "free_threads", lambda top, busy=None: 1)
        monkeypatch.setattr(th, "_probe", lambda *a: pytest.fail("probed a busy machine"))
        with caplog.at_level(logging.INFO, logger=th.__name__):  # said at INFO: a user's question
            assert th.resolve_threads(None, cpu, (50_000, 300, 4)) == 1
        assert caplog.records[-1].getMessage() == "threads: other processes leave 1 of 4 -> 1"
        assert caplog.records[-1].levelno == logging.INFO
        seen = []

        def probe(n, m, C):
            seen.append(torch.get_num_threads())
            return {1: [1.0], torch.get_num_threads(): [0.5]}

        monkeypatch.setattr(th, "free_threads", lambda top, busy=None: 2)
        monkeypatch.setattr(th, "_probe", probe)
        with caplog.at_level(logging.DEBUG, logger=th.__name__):
            assert th.resolve_threads(None, cpu, (50_000, 300, 4)) == 2  # 1 or the free 2
        assert "threads: other processes leave 2 of 4 -> probe" in caplog.messages
        assert seen == [2] and torch.get_num_threads() == 4  # probed at 2, the count restored
        # Newton's count: held to the free cores too
        monkeypatch.setattr(th, "free_threads", lambda top, busy=None: 1)
        monkeypatch.setattr(th, "_probe_hessian", lambda: pytest.fail("probed a busy machine"))
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=th.__name__):
            assert th.newton_threads(None, 1, 4) == 1
        assert caplog.messages == ["threads: other processes leave 1 -> Newton 1"]
        hess = []
        monkeypatch.setattr(th, "free_threads", lambda top, busy=None: 3)
        monkeypatch.setattr(th, "_probe_hessian",
                            lambda: hess.append(torch.get_num_threads()) or {1: [1.0], 3: [0.5]})
        assert th.newton_threads(None, 1, 4) == 3 and hess == [3]


@pytest.mark.real_load
def test_a_cpu_bound_process_beside_the_fit_leaves_it_one_thread(caplog):
    """The real thing: this thread held to two CPUs and a CPU-bound process on one of them;
    the rule reads one core taken and runs the fit on one thread without a probe (the probe
    alone had chosen two threads beside such a process in 2 of 6 fits of the benchmark)."""
    import logging
    import os
    import subprocess
    import sys
    import time

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    a, b = cpus[:2]
    burner = subprocess.Popen([sys.executable, "-c",
                               f"import os\nos.sched_setaffinity(0, {{{b}}})\nwhile True: pass"])
    try:
        os.sched_setaffinity(0, {a, b})
        time.sleep(0.3)  # the burner runs
        with torch_threads(2):
            assert ml.busy_cores() >= th.BUSY_SHARE
            assert th.free_threads(2) == 1
            with caplog.at_level(logging.DEBUG, logger=th.__name__):
                assert th.resolve_threads(None, torch.device("cpu"), (50_000, 300, 4)) == 1
            assert "threads: other processes leave 1 of 2 -> 1" in caplog.messages
    finally:
        burner.kill()
        burner.wait()
        os.sched_setaffinity(0, cpus)


def test_pick_threads_keeps_one_unless_more_is_clearly_faster():
    assert th.MARGIN == 0.9
    assert th.pick_threads({1: [1.0, 1.0], 2: [0.85, 0.85]}) == 2  # 0.85 <= 0.9
    assert th.pick_threads({1: [1.0, 1.0], 2: [0.9, 0.94]}) == 1  # 0.92 > 0.9: not clearly
    assert th.pick_threads({1: [1.0], 2: [5.0]}) == 1  # a busy core: collapse
    assert th.pick_threads({1: [1.0], 2: [0.6], 4: [0.5]}) == 4
    assert th.pick_threads({1: [1.0], 2: [0.5], 4: [0.55]}) == 2
    assert th.pick_threads({1: [1.0], 2: [0.79]}, margin=0.5) == 1
    assert th.pick_threads({1: [1.0, 1.0, 1.0], 2: [0.5]}) == 2  # means, not sums
    with pytest.raises(ValueError, match="one-thread"):
        th.pick_threads({2: [1.0]})


def test_explicit_count_and_env_var(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    assert th.resolve_threads(3, cpu, (10, 10, 2)) == 3
    monkeypatch.setenv(th.ENV_VAR, "2")
    assert th.resolve_threads(None, cpu, (10, 10, 2)) == 2
    assert th.resolve_threads(1, cpu, (10, 10, 2)) == 1  # the argument wins over the env
    monkeypatch.setenv(th.ENV_VAR, "many")
    with pytest.raises(ValueError, match="SPARSE_PROBE_THREADS"):
        th.resolve_threads(None, cpu, (10, 10, 2))
    with pytest.raises(ValueError, match="threads"):
        th.resolve_threads(0, cpu, (10, 10, 2))
    assert th.resolve_threads(4, torch.device("meta"), (10, 10, 2)) is None  # not CPU


def test_auto_measures_and_picks_from_the_probe(monkeypatch):
    """Every core free: a product of at least PROBE_WORK multiply-adds per thread takes them
    all, no probe; under it (here at 4 threads) the probe decides."""
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    cpu = torch.device("cpu")
    assert th.PROBE_WORK == 4_000_000
    with torch_threads(2):
        monkeypatch.setattr(th, "_probe", lambda *a: pytest.fail("probed a quiet machine"))
        monkeypatch.setattr(th, "physical_cores", lambda: 2)
        assert th.resolve_threads("auto", cpu, (50_000, 300, 4)) == 2
        assert th.resolve_threads(None, cpu, (2 * th.PROBE_WORK, 1, 1)) == 2  # at the bound
    with torch_threads(4):
        seen = {}

        def slow_pair(n, m, C):
            seen["shape"] = (n, m, C)
            return {1: [1.0], 4: [3.0]}  # what a busy core does to more threads

        monkeypatch.setattr(th, "_probe", slow_pair)
        monkeypatch.setattr(th, "physical_cores", lambda: 4)
        assert th.resolve_threads(None, cpu, (4 * th.PROBE_WORK, 1, 1)) == 4  # at the bound
        assert "shape" not in seen
        assert th.resolve_threads("auto", cpu, (4 * th.PROBE_WORK - 1, 1, 1)) == 1
        assert seen["shape"] == (4 * th.PROBE_WORK - 1, 1, 1)
        # four CPUs on fewer physical cores (SMT siblings), or a topology not read: probed
        for cores in (3, None):
            seen.clear()
            monkeypatch.setattr(th, "physical_cores", lambda c=cores: c)
            assert th.resolve_threads(None, cpu, (50_000, 300, 4)) == 1
            assert seen["shape"] == (50_000, 300, 4)
        monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 4: [0.5]})
        assert th.resolve_threads(None, cpu, (10_000, 300, 4)) == 4
    with torch_threads(2):
        # the real probe returns timings for both counts, interleaved repeats
        monkeypatch.undo()
        monkeypatch.delenv(th.ENV_VAR, raising=False)
        t = th._probe(300, 20, 3, repeats=2)
        assert set(t) == {1, 2} and len(t[1]) == len(t[2]) >= 1
        # a full probe only while more threads keep up; an early stop only when they lost
        assert len(t[1]) == 2 or sum(t[2]) > sum(t[1])
        assert torch.get_num_threads() == 2  # the probe restores the count


def test_a_small_fit_runs_on_one_thread_without_a_probe(monkeypatch, caplog):
    import logging

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    with torch_threads(2):
        cpu = torch.device("cpu")
        monkeypatch.setattr(th, "_probe", lambda *a: pytest.fail("probed a small fit"))
        with caplog.at_level(logging.DEBUG, logger=th.__name__):
            assert th.resolve_threads(None, cpu, (3_999, 1_000, 2)) == 1  # just under 8e6
        assert th.SMALL_WORK == 8_000_000
        assert [r.getMessage() for r in caplog.records] == [
            "threads: 3999 x 1000 x 2 is under SMALL_WORK -> 1"]
        assert th.resolve_threads(None, cpu, (10, 10, 2)) == 1
        monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 2: [0.5]})
        assert th.resolve_threads(None, cpu, (4_000, 1_000, 2)) == 2  # exactly SMALL_WORK


def test_one_thread_means_no_probe(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(th, "_probe", lambda *a: pytest.fail("probed with one thread"))
        monkeypatch.setattr(th, "free_threads", lambda *a, **k: pytest.fail("read the load"))
        assert th.resolve_threads(None, torch.device("cpu"), (10_000, 1_000, 2)) == 1  # large
    finally:
        torch.set_num_threads(old)


def test_a_held_count_is_measured_again_whatever_the_environment_says(monkeypatch):
    """remeasure (a count held down by others' load, measured again mid-fit): torch back at
    the machine's count for the measure, which the environment's count does not replace
    (that count would have stood from the start), and torch's count left as it was."""
    monkeypatch.setenv(th.ENV_VAR, "1")
    monkeypatch.setattr(th, "physical_cores", lambda: 2)
    seen = []
    real = th.resolve_threads

    def spy(threads, device, shape, **kw):
        seen.append(torch.get_num_threads())
        return real(threads, device, shape, **kw)

    monkeypatch.setattr(th, "resolve_threads", spy)
    with torch_threads(1):
        assert th.remeasure(torch.device("cpu"), (50_000, 300, 4), 2) == 2  # every core free
        assert seen == [2] and torch.get_num_threads() == 1


def test_fit_uses_and_restores_the_count(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    old = torch.get_num_threads()
    during = []
    real = th.StartThreads.settle

    def spy(self):
        during.append(real(self))
        return during[-1]

    monkeypatch.setattr(th.StartThreads, "settle", spy)
    try:
        torch.set_num_threads(2)
        p = fit_path(X, y, n_lambdas=4, eps=0.1, threads=1, progress=False)
        assert during == [1] and p.info["threads"] == 1
        assert torch.get_num_threads() == 2  # restored
        p2 = fit_path(X, y, n_lambdas=4, eps=0.1, threads=1, progress=False)
        np.testing.assert_array_equal(p.weights[-1], p2.weights[-1])
    finally:
        torch.set_num_threads(old)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_fit_holds_numpys_blas_to_one_thread_and_restores_it(monkeypatch):
    """numpy's BLAS pool (the Newton solver's model products) runs one thread in a CPU fit,
    whatever torch's count: two OpenBLAS threads beside a busy core slowed a one-thread fit by
    20-30%, and beside torch's two threads on a quiet machine slowed Newton's paths up to 2x."""
    from threadpoolctl import threadpool_limits

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS loaded
    assert _blas_threads(), "no BLAS library found by threadpoolctl"
    seen = []
    real = th.StartThreads.settle

    def spy(self):  # where the count is decided (the load read, the probe run)
        seen.append(_blas_threads())
        return real(self)

    monkeypatch.setattr(th.StartThreads, "settle", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with th.fit_threads(1, "cpu", (100, 5, 3)) as start:
            inside = _blas_threads()
            assert start.settle() == 1
        assert inside == [1] * len(before)
        assert _blas_threads() == before  # restored
        old = torch.get_num_threads()
        try:
            with th.fit_threads(2, "cpu", (100, 5, 3)) as start:  # torch on two: BLAS on one
                assert start.settle() == 2 and torch.get_num_threads() == 2
                assert _blas_threads() == [th.BLAS_THREADS] * len(before) == [1] * len(before)
            assert torch.get_num_threads() == old and _blas_threads() == before
        finally:
            torch.set_num_threads(old)
        with th.fit_threads(None, "cuda", (100, 5, 3)) as start:  # a GPU fit: left alone
            assert start.settle() is None and _blas_threads() == before
    # the BLAS held from before the probe on (a spinning BLAS thread slows its second thread)
    assert seen == [[1] * len(before), [1] * len(before), before]


def test_pick_threads_at_its_boundaries():
    assert th.pick_threads({1: [1.0], 2: [0.9]}) == 2  # exactly margin × one thread's: kept
    assert th.pick_threads({1: [2.0], 2: [1.8]}) == 2  # 1.8 <= 0.9 × 2.0
    assert th.pick_threads({1: [2.0], 2: [1.81]}) == 1  # 1.81 > 1.8
    assert th.pick_threads({1: [1.0], 2: [0.5], 4: [0.5]}) == 2  # a tie: the fewer threads
    assert th.pick_threads({1: [1.0], 2: [], 4: [0.5]}) == 4  # a count not timed is skipped
    with pytest.raises(ValueError, match=r"^pick_threads: timings must include the one-thread "
                                         r"probe$"):
        th.pick_threads({})


def test_the_parsed_count_and_its_errors(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 2: [0.5]})
    with torch_threads(2):
        big = (10_000, 1_000, 2)  # over SMALL_WORK: measured
        for unset in ("", "  ", "auto", " AUTO "):  # the variable says: measure
            monkeypatch.setenv(th.ENV_VAR, unset)
            assert th.resolve_threads(None, cpu, big) == 2
        monkeypatch.setenv(th.ENV_VAR, "1")
        assert th.resolve_threads(None, cpu, big) == 1  # the variable's count
        assert th.resolve_threads("auto", cpu, big) == 2  # an explicit auto measures
    with pytest.raises(ValueError, match=r"^threads: expected a positive integer or 'auto', "
                                         r"got 0$"):
        th.resolve_threads(0, cpu, (10, 10, 2))
    with pytest.raises(ValueError, match=r"^threads: expected a positive integer or 'auto', "
                                         r"got 'two'$"):
        th.resolve_threads("two", cpu, (10, 10, 2))
    monkeypatch.setenv(th.ENV_VAR, "-1")
    with pytest.raises(ValueError, match=rf"^{th.ENV_VAR}: expected a positive integer"):
        th.resolve_threads(None, cpu, (10, 10, 2))


def test_the_probe_decision_is_logged_in_milliseconds(monkeypatch, caplog):
    import logging

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [0.0012345, 0.001], 4: [0.0004]})
    monkeypatch.setattr(th, "physical_cores", lambda: 4)
    with torch_threads(4), caplog.at_level(logging.DEBUG, logger=th.__name__):
        assert th.resolve_threads(None, torch.device("cpu"), (10_000, 300, 4)) == 4
    with torch_threads(2), caplog.at_level(logging.DEBUG, logger=th.__name__):
        assert th.resolve_threads(None, torch.device("cpu"), (10_000, 1_000, 2)) == 2
    assert [r.getMessage() for r in caplog.records if r.name == th.__name__] == [
        "threads: probe {1: 2.23, 4: 0.4} -> 4",
        "threads: every core free, 10000 x 1000 x 2 -> 2"]


@pytest.mark.parametrize(("n", "m", "C", "rows", "cols"), [
    (10, 3, 5, 64, 8),  # at least 64 rows and 8 columns
    (100, 20, 1000, 100, 20),  # the fit's own shape when small
    (10**6, 300, 10, 8192, 256),  # at most 8,192 rows, 256 columns at that many rows
    (500, 5000, 10, 500, 4194),  # few rows: up to 2^21 entries of X (a wide fit's columns)
    (2528, 363, 10, 2528, 363),
    (10**6, 100, 10, 8192, 100),
    (10**6, 32, 1000, 2000, 32),  # at most 2·10⁶ logits
    (10**6, 32, 3000, 666, 32),  # rows an integer where the logits bound them
    (10**6, 32, 10**6, 64, 32),  # the row floor under the logits' bound
])
def test_the_probe_problem_has_the_fits_shape_within_its_bounds(n, m, C, rows, cols):
    X, W, y = th._probe_problem(n, m, C)
    assert X.shape == (rows, cols) and X.dtype == torch.float32
    assert W.shape == (C, cols) and W.dtype == torch.float64  # the solvers' weights
    assert y.shape == (rows,) and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < C


def test_the_probe_problem_is_the_same_every_time_and_near_the_paths_start():
    a, b = th._probe_problem(500, 16, 3), th._probe_problem(500, 16, 3)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    X, W, y = a
    assert set(y.tolist()) == {0, 1, 2}  # every class, the first included
    assert 0 < float(W.abs().max()) < 0.1  # small weights, as at the path's start
    assert float(X.std()) == pytest.approx(1.0, abs=0.05)


class _Clock:
    """A clock whose every timed call lasts ``cost[threads]`` seconds (the thread count
    read at the call's end)."""

    def __init__(self, cost):
        self.cost, self.now, self.calls = cost, 100.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # the end of a timed call
            self.now += self.cost[torch.get_num_threads()]
        return self.now


@pytest.mark.parametrize("top", [2, 3])
def test_the_probe_times_both_counts_and_stops_once_more_threads_lose(monkeypatch, top):
    with torch_threads(top):
        faster = th._probe(300, 20, 3, repeats=3, clock=_Clock({1: 1.0, top: 0.5}))
        assert faster == {1: [1.0] * 3, top: [0.5] * 3}  # every round
        even = th._probe(300, 20, 3, repeats=3, clock=_Clock({1: 1.0, top: 1.0}))
        assert even == {1: [1.0] * 3, top: [1.0] * 3}  # not slower: every round
        default = th._probe(300, 20, 3, clock=_Clock({1: 1.0, top: 0.5}))
        assert default == {1: [1.0] * 4, top: [0.5] * 4}  # four rounds unless told
        slower = th._probe(300, 20, 3, repeats=3, clock=_Clock({1: 1.0, top: 1.5}))
        assert slower == {1: [1.0], top: [1.5]}  # slower in the first round: stopped
        assert torch.get_num_threads() == top  # restored


def test_the_probe_warms_each_count_up_before_timing(monkeypatch):
    """The first call at a thread count (the OpenMP team's start, oneDNN's kernels for the
    shape) is run untimed at every count: timed, it made a fresh process pick one thread."""
    from sparse_probe.solvers import products

    seen, clock = [], _Clock({1: 1.0, 2: 0.5})
    real = products.x_wt

    def spy(X, W, bias=None):
        seen.append((torch.get_num_threads(), clock.calls))
        return real(X, W, bias)

    monkeypatch.setattr(products, "x_wt", spy)
    with torch_threads(2):
        timings = th._probe(300, 20, 3, repeats=2, clock=clock)
    assert timings == {1: [1.0] * 2, 2: [0.5] * 2}
    # two untimed calls (one thread, then two) before the clock is first read, then one
    # call per timed probe, each between its two clock readings
    assert seen == [(1, 0), (2, 0), (1, 1), (2, 3), (1, 5), (2, 7)]


def test_newtons_probe_is_logged_in_milliseconds(monkeypatch, caplog):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(th, "_probe_hessian", lambda: {1: [0.0123456], 2: [0.0020002]})
    with torch_threads(2), caplog.at_level("DEBUG", logger=th.__name__):
        assert th.newton_threads("auto", 1, 2) == 2
    lines = [r.getMessage() for r in caplog.records]
    assert "threads: Newton probe {1: 12.35, 2: 2.0} -> 2" in lines


def test_the_probe_measures_real_time(monkeypatch):
    import time
    import warnings

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. torch resizing a buffer of the wrong shape
            timings = th._probe(300, 20, 3, repeats=2)
        elapsed = time.perf_counter() - t
    finally:
        torch.set_num_threads(old)
    spent = [s for ts in timings.values() for s in ts]
    assert all(s > 0 for s in spent) and sum(spent) <= elapsed


def test_blas_limits_holds_the_blas_and_leaves_openmp_to_torch():
    from threadpoolctl import threadpool_info

    np.ones((4, 4)) @ np.ones((4, 4))
    torch.ones(3) @ torch.ones(3)

    def counts(api):
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == api]

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        omp = counts("openmp")  # torch's OpenMP, and any other loaded (scikit-learn's)
        if not any(c > 1 for c in omp):
            pytest.skip(f"no OpenMP runtime seen above one thread by threadpoolctl: {omp}")
        with th.blas_limits(1):
            assert counts("blas") and set(counts("blas")) == {1}
            assert counts("openmp") == omp  # torch's OpenMP team: set by torch.set_num_threads
    finally:
        torch.set_num_threads(old)


def test_newton_gets_its_own_count_from_a_product_of_its_kind(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    calls = []

    def hessian_probe(faster):
        def probe():
            calls.append(torch.get_num_threads())
            top = torch.get_num_threads()
            return {1: [1.0], top: [0.5 if faster else 1.5]}
        return probe

    with torch_threads(2):
        monkeypatch.setattr(th, "_probe_hessian", hessian_probe(True))
        assert th.newton_threads("auto", 1, 2) == 2 and calls == [2]  # probed at the top count
        assert torch.get_num_threads() == 2  # restored (the fit's count in force before)
        torch.set_num_threads(1)  # inside a fit on one thread
        assert th.newton_threads(None, 1, 2) == 2 and torch.get_num_threads() == 1
        monkeypatch.setattr(th, "_probe_hessian", hessian_probe(False))
        assert th.newton_threads(None, 1, 2) == 1  # a busy core: one thread
        torch.set_num_threads(2)
        calls.clear()
        monkeypatch.setattr(th, "_probe_hessian", lambda: pytest.fail("probed"))
        assert th.newton_threads(1, 1, 2) == 1  # a given count stands
        assert th.newton_threads(None, 2, 2) == 2  # the fit already runs on every thread
        assert th.newton_threads(None, 1, 1) == 1  # one thread is all there is
        assert th.newton_threads(None, None, 2) is None  # not a CPU fit
        monkeypatch.setenv(th.ENV_VAR, "1")
        assert th.newton_threads(None, 1, 2) == 1  # the environment's count stands
        monkeypatch.setattr(th, "_probe_hessian", hessian_probe(True))
        assert th.newton_threads("auto", 1, 2) == 2  # 'auto' measures, whatever the env says
        monkeypatch.undo()
        shapes = []
        real_mm = torch.Tensor.__matmul__

        def counting(a, b):
            shapes.append((tuple(a.shape), tuple(b.shape), torch.get_num_threads()))
            return real_mm(a, b)

        monkeypatch.setattr(torch.Tensor, "__matmul__", counting)
        timings = th._probe_hessian(clock=_Clock({1: 1.0, 2: 0.5}))
        monkeypatch.undo()
        assert timings == {1: [1.0] * 4, 2: [0.5] * 4}  # four rounds unless told
        torch.manual_seed(5)
        th._probe_hessian(repeats=1, clock=_Clock({1: 1.0, 2: 0.5}))
        after = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(after, torch.rand(3))  # its operands leave the global generator be
        # A (128, 2048) @ B.T with B (512, 2048): warm-ups at 1 and 2 threads, then the rounds
        assert shapes == [((128, 2048), (2048, 512), k) for k in [1, 2] * 5]
        assert th.pick_threads(th._probe_hessian(repeats=1, clock=_Clock({1: 1.0, 2: 1.5}))) == 1


def test_a_fits_newton_points_run_on_their_own_measured_count(monkeypatch):
    """A fit on one thread (under SMALL_WORK: no probe) whose Newton Hessians grow past
    SMALL_HESSIAN probes once, then runs every later Newton point on the count found; the
    same path as on one thread throughout, to the solver's tolerance."""
    from sklearn.datasets import make_classification

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    X, y = make_classification(n_samples=4000, n_features=60, n_informative=15,
                               n_redundant=15, n_classes=10, n_clusters_per_class=1,
                               random_state=3)
    X = X.astype(np.float32)
    assert th.SMALL_WORK > 4000 * 60 * 10
    probes, during = [], []
    real_newton = th.newton_threads

    def spy(threads, k, top):
        probes.append((threads, k, top))
        return real_newton(threads, k, top)

    import dataclasses
    import importlib

    from sparse_probe.solvers import SOLVERS

    real_solve = SOLVERS["newton"].solve

    def solve(*a, **kw):
        during.append(torch.get_num_threads())
        return real_solve(*a, **kw)

    fit_module = importlib.import_module("sparse_probe.fit")
    monkeypatch.setattr(fit_module, "newton_threads", spy)
    monkeypatch.setitem(SOLVERS, "newton", dataclasses.replace(SOLVERS["newton"], solve=solve))
    with torch_threads(2):
        monkeypatch.setattr(th, "_probe_hessian", lambda: {1: [1.0], 2: [0.5]})
        p = fit_path(X, y, n_lambdas=12, eps=0.01, solver="newton", progress=False)
        assert torch.get_num_threads() == 2
    assert p.info["threads"] == 1 and p.info["threads_newton"] == 2
    assert probes == [(None, 1, 2)]  # once
    assert during and during[0] == 1 and during[-1] == 2 and sorted(during) == during
    ref = fit_path(X, y, n_lambdas=12, eps=0.01, solver="newton", progress=False, threads=1)
    assert ref.info["threads_newton"] == 1
    np.testing.assert_allclose(p.objective, ref.objective, rtol=1e-6)


@pytest.mark.real_load
def test_load_watch_reads_the_load_between_points_without_pausing(monkeypatch):
    import os

    cpus = sorted(os.sched_getaffinity(0))
    idle = {c: (100, 0, 50, 1000, 10, 0, 0, 0) for c in cpus}
    first_busy = dict(idle)
    first_busy[cpus[0]] = (200, 0, 50, 1000, 10, 0, 0, 0)  # 100 busy ticks on one CPU
    for c in cpus[1:]:
        first_busy[c] = (100, 0, 50, 1100, 10, 0, 0, 0)
    second = {c: (v[0], v[1], v[2], v[3] + 100, *v[4:]) for c, v in first_busy.items()}
    third = {c: (v[0], v[1], v[2], v[3] + 1, *v[4:]) for c, v in second.items()}
    texts = [_stat(idle), _stat(first_busy), _stat(second), _stat(third)]
    now = [5.0]
    w = ml.LoadWatch(1.0, read=lambda: texts.pop(0), cpu_time=lambda: 0.0, clock=lambda: now[0])
    now[0] = 5.99
    assert w.busy() is None and len(texts) == 3  # under the interval: not even read
    now[0] = 6.0  # exactly the interval: read
    assert w.busy() == pytest.approx(1.0)  # one CPU's worth of others' ticks over the span
    assert len(texts) == 2 and w.busy() is None  # the next span starts at this reading
    now[0] = 7.0
    assert w.busy() == pytest.approx(0.0)  # the span from the last reading: all idle
    assert w.busy() is None  # the clock has not moved: nothing to read yet
    w.interval = 0.0
    assert w.busy() is None and texts == []  # ticks moved, the clock not: no span (no 1/0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    w = ml.LoadWatch(0.0, read=lambda: None)
    g = th.LoadGovernor(w, held=False)
    assert w.busy() is None and g.step(2, 2) == ("keep", 2)  # the load unreadable: it stands
    w = ml.LoadWatch(0.0)
    g = th.LoadGovernor(w, held=False)
    monkeypatch.setattr(w, "busy", lambda: 0.7)
    assert g.step(2, 2) == ("drop", 1) and g.step(1, 2)[1] == 1
    # mid-fit a core counts as taken from WATCH_SHARE on (the fit's own threads share it)
    monkeypatch.setattr(w, "busy", lambda: 0.3)
    assert th.LoadGovernor(w, held=False).step(2, 2) == ("drop", 1)
    monkeypatch.setattr(w, "busy", lambda: 0.29)
    assert th.LoadGovernor(w, held=False).step(2, 2) == ("keep", 2)
    assert th.free_threads(2, 0.3) == 2  # at the fit's start (a pause: BUSY_SHARE)
    assert th.WATCH_INTERVAL_S == 0.5 and th.WATCH_SHARE == 0.3


def test_load_watch_only_where_a_measured_count_could_drop(monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    assert isinstance(th.load_watch(None, 2, 2), th.LoadWatch)
    assert isinstance(th.load_watch("auto", 1, 2), th.LoadWatch)  # Newton may run on 2
    assert th.load_watch(2, 2, 2) is None  # a given count stands
    assert th.load_watch(None, None, 2) is None  # not a CPU fit
    assert th.load_watch(None, 1, 1) is None  # one thread is all there is
    monkeypatch.setenv(th.ENV_VAR, "2")
    assert th.load_watch(None, 2, 2) is None


@pytest.mark.real_load
@pytest.mark.slow
def test_load_that_starts_during_the_fit_drops_it_to_one_thread(monkeypatch):
    """Two threads chosen at the start (a quiet machine); at the third path point a CPU-bound
    process starts on one of this thread's two CPUs: the points after the next reading run on
    one thread, the path still verified, the caller's count restored."""
    import dataclasses
    import os
    import subprocess
    import sys
    import time

    from helpers_kkt import kkt_ratios
    from sklearn.datasets import make_classification

    from sparse_probe.solvers import SOLVERS

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    a, b = cpus[:2]
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(th, "busy_cores", lambda *a, **k: 0.0)  # quiet at the start
    monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 2: [0.5]})
    monkeypatch.setattr(th, "_probe_hessian", lambda: {1: [1.0], 2: [0.5]})
    monkeypatch.setattr(th, "WATCH_INTERVAL_S", 0.5)
    X, y = make_classification(n_samples=4000, n_features=200, n_informative=20,
                               n_redundant=0, n_classes=10, n_clusters_per_class=1,
                               random_state=4)
    X = X.astype(np.float32)
    assert th.SMALL_WORK <= 4000 * 200 * 10
    counts, burner = [], []

    def spy(name):
        real = SOLVERS[name].solve

        def solve(*args, **kw):
            counts.append(torch.get_num_threads())
            if len(counts) == 3:  # another process starts, on one of this thread's CPUs
                burner.append(subprocess.Popen(
                    [sys.executable, "-c",
                     f"import os\nos.sched_setaffinity(0, {{{b}}})\nwhile True: pass"]))
                time.sleep(1.0)
            return real(*args, **kw)
        return dataclasses.replace(SOLVERS[name], solve=solve)

    for name in ("owlqn", "newton"):
        monkeypatch.setitem(SOLVERS, name, spy(name))
    try:
        os.sched_setaffinity(0, {a, b})
        with torch_threads(2):
            p = fit_path(X, y, n_lambdas=10, eps=0.05, progress=False)
            assert torch.get_num_threads() == 2  # the caller's count, restored
    finally:
        for proc in burner:
            proc.kill()
            proc.wait()
        os.sched_setaffinity(0, cpus)
    assert p.info["threads"] == 2
    point, k = p.info["threads_dropped_at"]
    assert k == 1 and 3 <= point < len(p)
    assert counts[:3] == [2, 2, 2]  # up to the burner's start
    assert counts[-1] == 1  # after the drop; Newton's own count (if measured later) too
    assert kkt_ratios(X, y, p).max() <= 1.0


class _ScriptedWatch:
    """A LoadWatch whose readings are given: ``busy`` values in turn, then ``rest``."""

    def __init__(self, readings, rest=0.0):
        self.readings, self.rest = list(readings), rest

    def busy(self):
        return self.readings.pop(0) if self.readings else self.rest


def _one_core_taken(top, busy=None, share=th.BUSY_SHARE):
    """free_threads on two CPUs without a quota: one core taken from ``share`` of one."""
    return max(1, top - (1 if busy is not None and busy >= share else 0))


def test_the_governor_drops_and_raises_on_the_load_it_reads(monkeypatch):
    """Each branch of LoadGovernor.step in turn: no reading, a quiet fit not held down, a
    drop, quiet spans counted up to RAISE_SPANS (a busy span restarting the count), a measure
    that found no more threads worth it doubling the wait, one that did ending the hold."""
    monkeypatch.setattr(th, "free_threads", _one_core_taken)
    monkeypatch.setattr(th, "RAISE_SPANS", 2)
    q, b = 0.0, th.QUIET_SHARE  # a quiet span; one just too busy to count as quiet
    w = _ScriptedWatch([None, q, 1.0, q, b, q, q] + [q] * 4 + [q, q], rest=q)
    g = th.LoadGovernor(w, held=False)
    assert g.step(2, 2) == ("keep", 2)  # no reading yet
    assert g.step(2, 2) == ("keep", 2)  # quiet, and nothing held down
    assert g.step(2, 2) == ("drop", 1)  # another process took a core
    assert g.held
    assert g.step(1, 2) == ("keep", 1)  # one quiet span
    assert g.step(1, 2) == ("keep", 1)  # not quiet: the count starts again
    assert g.step(1, 2) == ("keep", 1)
    assert g.step(1, 2) == ("remeasure", 1)  # RAISE_SPANS quiet spans in a row
    g.measured(1, 1, 2)  # the measure kept one thread: twice the spans before the next
    assert g.held and g.spans == 2 * th.RAISE_SPANS and g.tries == th.RAISE_TRIES - 1
    assert [g.step(1, 2)[0] for _ in range(4)] == ["keep"] * 3 + ["remeasure"]
    g.measured(1, 2, 2)  # two threads again: nothing held down any more
    assert not g.held
    assert g.step(2, 2) == ("keep", 2) and g.step(2, 2) == ("keep", 2)
    # Newton's points on two threads, the fit's own on one held down: that one is measured
    g = th.LoadGovernor(_ScriptedWatch([], rest=q), held=True)
    assert [g.step(2, 2, 1)[0] for _ in range(2)] == ["keep", "remeasure"]


def test_the_governor_measures_at_most_raise_tries_times(monkeypatch):
    monkeypatch.setattr(th, "free_threads", _one_core_taken)
    g = th.LoadGovernor(_ScriptedWatch([], rest=0.0), held=True)
    measures = 0
    for _ in range(200):
        what = g.step(1, 2)[0]
        if what == "remeasure":
            measures += 1
            g.measured(1, 1, 2)
    assert measures == th.RAISE_TRIES
    # at the machine's count there is nothing to raise
    assert th.LoadGovernor(_ScriptedWatch([], rest=0.0), held=True).step(2, 2) == ("keep", 2)


def _script_start_load(monkeypatch, loads):
    """The load windows of the thread choice (:class:`~sparse_probe.solvers.threads.
    StartThreads`) read ``loads`` in turn, then a quiet machine; each has already lasted its
    length (the first poll decides). Returns the iterator of loads left."""
    left = iter(loads)

    class Window:
        def elapsed(self):
            return ml.LOAD_WINDOW_S

        def busy(self, *a, **k):
            return next(left, 0.0)

    monkeypatch.setattr(th, "LoadWindow", Window)
    return left


def _spied_fit(monkeypatch, probe, newton_probe=None):
    """A 10-point fit of 4000 x 200 x 10 with torch at 2 threads, the load at its start one
    core (free_threads' first reading) and quiet after, ``probe``'s timings (and
    ``newton_probe``'s for Newton's own count: two threads faster by default); returns the
    path, the thread count at each solve and the number of probes."""
    import dataclasses

    from sparse_probe.solvers import SOLVERS

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    # the start's window reads one busy core; every later one is quiet
    starts = _script_start_load(monkeypatch, [1.0])

    def free(top, busy=None, share=th.BUSY_SHARE):
        return _one_core_taken(top, next(starts, 0.0) if busy is None else busy, share)

    probes = []
    monkeypatch.setattr(th, "free_threads", free)
    monkeypatch.setattr(th, "LoadWatch", lambda interval: _ScriptedWatch([], rest=0.0))
    monkeypatch.setattr(th, "_probe", lambda n, m, C: probes.append(1) or probe)
    monkeypatch.setattr(th, "_probe_hessian", lambda: newton_probe or {1: [1.0], 2: [0.5]})
    X, y = _spied_data()
    assert X.shape[0] * X.shape[1] * 10 >= th.SMALL_WORK
    counts = []

    def spy(name):
        real = SOLVERS[name].solve

        def solve(*args, **kw):
            counts.append(torch.get_num_threads())
            return real(*args, **kw)
        return dataclasses.replace(SOLVERS[name], solve=solve)

    for name in ("owlqn", "newton"):
        monkeypatch.setitem(SOLVERS, name, spy(name))
    with torch_threads(2):
        p = fit_path(X, y, n_lambdas=10, eps=0.05, progress=False)
        assert torch.get_num_threads() == 2  # the caller's count, restored
    return p, counts, len(probes)


@pytest.mark.real_load
def test_the_start_reports_a_count_held_down_by_load_and_not_by_the_quota(monkeypatch):
    """resolve_threads' report: held where others' load left fewer cores than the CPUs and
    the quota allow (the governor measures only such a count again), not under a quota."""
    import os

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(th, "_probe", lambda n, m, C: {1: [1.0], 2: [0.5]})
    with torch_threads(2):
        for quota, load, k, held in [(1.0, 0.0, 1, False), (None, 1.0, 1, True),
                                     (None, 0.0, 2, False), (1.5, 1.0, 1, False)]:
            monkeypatch.setattr(th, "cpu_quota", lambda q=quota: q)
            _script_start_load(monkeypatch, [load])
            report = {}
            assert th.resolve_threads(None, torch.device("cpu"), (4000, 200, 10),
                                      report=report) == k
            assert report == {"held": held}, (quota, load)


@pytest.mark.real_load  # free_threads is the test's own
def test_a_fit_held_down_by_load_at_its_start_takes_the_second_core_once_it_is_free(
        monkeypatch):
    """Another process's load at the start leaves one thread; the load then goes (quiet
    readings): after RAISE_SPANS quiet spans the count is measured again (the probe: two
    threads faster) and the later points run on two, the path verified."""
    from helpers_kkt import kkt_ratios

    monkeypatch.setattr(th, "RAISE_SPANS", 4)  # points 1-3 (the first solved) on one thread
    p, counts, probes = _spied_fit(monkeypatch, {1: [1.0], 2: [0.5]})
    # held at one (no probe), then measured: both cores free (no probe either: PROBE_WORK)
    assert p.info["threads"] == 1 and probes == 0
    point, k = p.info["threads_raised_at"]
    assert k == 2 and point == 3  # a reading before every point, from λ #0 on
    assert counts[0] == 1 and counts[-1] == 2
    assert p.info["threads_dropped_at"] is None
    assert kkt_ratios(*_spied_data(), p).max() <= 1.0


def _spied_data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=4000, n_features=200, n_informative=20,
                               n_redundant=0, n_classes=10, n_clusters_per_class=1,
                               random_state=5)
    return X.astype(np.float32), y


@pytest.mark.real_load  # free_threads is the test's own
def test_a_held_count_is_measured_again_at_most_while_the_path_leaves_room(monkeypatch):
    """The same start, but the measure finds two threads no faster: it is tried again after
    twice as many quiet spans each time, and the fit stays on one thread (Newton's points
    too: its own probe finds two threads no faster either)."""
    monkeypatch.setattr(th, "RAISE_SPANS", 2)
    monkeypatch.setattr(th, "PROBE_WORK", 10**12)  # the probe decides, every core free or not
    p, counts, probes = _spied_fit(monkeypatch, {1: [0.5], 2: [1.0]}, {1: [0.5], 2: [1.0]})
    assert p.info["threads"] == 1 and p.info["threads_raised_at"] is None
    assert set(counts) == {1}
    # 2, 4 then 8 quiet spans before each measure: the 10-point path has room for two
    assert probes == 2


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_physical_cores_count_smt_siblings_once(tmp_path, monkeypatch):
    import os

    def topology(siblings):
        for c, text in siblings.items():
            _write(tmp_path / f"cpu{c}" / "topology" / "thread_siblings_list", text + "\n")

    def affinity(pid):
        assert pid == 0  # this process's own
        return {0, 1, 2, 3}

    monkeypatch.setattr(os, "sched_getaffinity", affinity)
    topology({0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})  # two cores, two siblings each
    assert ml.physical_cores(str(tmp_path)) == 2
    topology({2: "2", 3: "3"})
    assert ml.physical_cores(str(tmp_path)) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})  # cpu5 unreadable
    assert ml.physical_cores(str(tmp_path)) is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2})
    assert ml.physical_cores(str(tmp_path)) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set())
    assert ml.physical_cores(str(tmp_path)) is None

    def no_affinity(pid):
        raise OSError("no affinity here")

    monkeypatch.setattr(os, "sched_getaffinity", no_affinity)
    assert ml.physical_cores(str(tmp_path)) is None
    assert ml.SYS_CPU == "/sys/devices/system/cpu"


def test_cpu_quota_reads_v2_and_v1_hierarchies_and_their_ancestors(tmp_path):
    cg, me = tmp_path / "cg", tmp_path / "self_cgroup"
    # v2: the smallest quota on the way down from the root
    _write(cg / "cpu.max", "max 100000\n")
    _write(cg / "a" / "cpu.max", "300000 100000\n")
    _write(cg / "a" / "b" / "cpu.max", "150000 100000\n")
    _write(me, "0::/a/b\n")
    assert ml.cpu_quota(str(cg), str(me)) == pytest.approx(1.5)
    _write(cg / "a" / "cpu.max", "50000 100000\n")  # an ancestor's limit binds the children
    assert ml.cpu_quota(str(cg), str(me)) == pytest.approx(0.5)
    _write(cg / "a" / "cpu.max", "max 100000\n")
    _write(cg / "a" / "b" / "cpu.max", "max 100000\n")
    assert ml.cpu_quota(str(cg), str(me)) is None  # no limit anywhere
    # v1: the cpu controller's folder, other controllers ignored
    v1 = tmp_path / "v1"
    for folder, quota in ((v1 / "cpu,cpuacct", -1), (v1 / "cpu,cpuacct" / "docker", 250000),
                          (v1 / "cpu,cpuacct" / "docker" / "x", -1),
                          (v1 / "memory" / "docker" / "x", 10)):
        _write(folder / "cpu.cfs_quota_us", f"{quota}\n")
        _write(folder / "cpu.cfs_period_us", "100000\n")
    _write(me, "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n1:name=systemd:/docker/x\n")
    assert ml.cpu_quota(str(v1), str(me)) == pytest.approx(2.5)
    # inside a container: the host's path, the container's own cgroup seen as the root
    box = tmp_path / "box"
    _write(box / "cpu" / "cpu.cfs_quota_us", "100000\n")
    _write(box / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(me, "4:cpu:/kubepods/pod1/abc\n")
    assert ml.cpu_quota(str(box), str(me)) == pytest.approx(1.0)
    _write(box / "cpu" / "cpu.cfs_quota_us", "not a number\n")  # unreadable: no limit known
    assert ml.cpu_quota(str(box), str(me)) is None
    assert ml.cpu_quota(str(box), str(tmp_path / "missing")) is None  # not Linux
    assert ml._quota_v2("max 100000") is None and ml._quota_v2("200000 100000") == 2.0
    assert ml._quota_v2("") is None
    # a hybrid system: v2 mounted under unified/ (the v1 cpu folder without a quota)
    hy = tmp_path / "hybrid"
    _write(hy / "unified" / "s" / "cpu.max", "120000 100000\n")
    _write(hy / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(hy / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(me, "4:cpu:/s\n0::/s\n")
    assert ml.cpu_quota(str(hy), str(me)) == pytest.approx(1.2)
    # v1 mounted under another name than the controller list: "cpu,cpuacct", then "cpu"
    for folder in ("cpu,cpuacct", "cpu"):
        alt = tmp_path / f"alt-{folder}"
        _write(alt / folder / "job" / "cpu.cfs_quota_us", "300000\n")
        _write(alt / folder / "job" / "cpu.cfs_period_us", "100000\n")
        _write(me, "3:cpuacct,cpu:/job\n")
        assert ml.cpu_quota(str(alt), str(me)) == pytest.approx(3.0), folder
    # a colon in the path (container runtimes name cgroups so)
    col = tmp_path / "colon"
    _write(col / "cpu" / "a:b" / "cpu.cfs_quota_us", "50000\n")
    _write(col / "cpu" / "a:b" / "cpu.cfs_period_us", "100000\n")
    _write(me, "2:cpu:/a:b\n")
    assert ml.cpu_quota(str(col), str(me)) == pytest.approx(0.5)
    # a v1 quota of 0 or a period of 0 is no limit known (not a division by zero); 1 µs is one
    for quota, period, want in (("0", "100000", None), ("1000", "0", None),
                                ("1", "100000", 1e-5), ("1000", "1", 1000.0)):
        _write(col / "cpu" / "a:b" / "cpu.cfs_quota_us", quota)
        _write(col / "cpu" / "a:b" / "cpu.cfs_period_us", period)
        got = ml.cpu_quota(str(col), str(me))
        assert got == (None if want is None else pytest.approx(want)), (quota, period)


@pytest.mark.real_load
def test_free_threads_keeps_within_the_cgroup_quota(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setattr(th, "cpu_quota", lambda: 1.0)
    monkeypatch.setattr(th, "busy_cores", lambda: pytest.fail("read the load for one thread"))
    assert th.free_threads(4) == 1
    monkeypatch.setattr(th, "cpu_quota", lambda: 2.0)  # exactly 2 CPUs: 2 threads
    assert th.free_threads(4, 0.0) == 2
    monkeypatch.setattr(th, "cpu_quota", lambda: 2.5)  # rounded down: 2 threads
    assert th.free_threads(4, 0.0) == 2 and th.free_threads(4, 0.6) == 2
    assert th.free_threads(1, 0.0) == 1
    monkeypatch.setattr(th, "cpu_quota", lambda: 0.5)  # under one CPU: still one thread
    assert th.free_threads(4, 0.0) == 1
    monkeypatch.setattr(th, "cpu_quota", lambda: None)  # no quota: the load decides
    assert th.free_threads(4, 0.0) == 4 and th.free_threads(4, 2.6) == 1


@pytest.mark.real_load
def test_a_fit_under_a_one_cpu_quota_runs_on_one_thread(tmp_path):
    """A real cgroup (v1 cpu controller, where this machine lets the test make one): a process
    held to one CPU's worth of time per period chooses one thread for a fit that two threads
    would otherwise be probed for."""
    import os
    import subprocess
    import sys
    import uuid

    base = "/sys/fs/cgroup/cpu"
    if not os.access(os.path.join(base, "cpu.cfs_quota_us"), os.W_OK):
        pytest.skip("no writable cgroup v1 cpu controller here")
    group = os.path.join(base, f"sparse-probe-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(group)
    except OSError as e:
        pytest.skip(f"cannot make a cgroup here: {e}")
    try:
        with open(os.path.join(group, "cpu.cfs_period_us"), "w") as fh:
            fh.write("100000")
        with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as fh:
            fh.write("100000")
        code = ("import torch\n"
                "from sparse_probe.solvers import threads as th\n"
                "torch.set_num_threads(2)\n"
                "from sparse_probe.solvers import machine_load as ml\n"
                "print(ml.cpu_quota(), th.resolve_threads(None, torch.device('cpu'), "
                "(50000, 300, 4)))\n")
        env = {k: v for k, v in os.environ.items() if k != th.ENV_VAR}
        proc = subprocess.run(
            ["bash", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"',
             sys.executable, code], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        quota, k = proc.stdout.split()
        assert float(quota) == 1.0 and k == "1"
        # this process itself, moved in and back: the defaults read its own cgroup
        from pathlib import Path

        home = next(line.split(":", 2)[2]
                    for line in Path("/proc/self/cgroup").read_text().splitlines()
                    if "cpu" in line.split(":")[1].split(","))
        assert ml.cpu_quota() is None or home != "/"
        with open(os.path.join(group, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
        try:
            assert ml.cpu_quota() == 1.0 and th.free_threads(2, 0.0) == 1
        finally:
            with open(os.path.join(base, home.lstrip("/"), "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
    finally:
        os.rmdir(group)


def test_the_statistics_pass_runs_on_the_fits_thread_count(monkeypatch):
    """column_sums runs inside the fit's thread choice (two threads of torch's reductions
    stall beside a busy core), and the caller's count is restored after the fit."""
    import sparse_probe.fit as fit_module

    seen = []
    real = fit_module.column_sums

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(fit_module, "column_sums", spy)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit_path(X, y, n_lambdas=3, progress=False, threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


class _ClockWindow:
    """A load window on a scripted clock (``now[0]`` seconds since it opened) that reads
    ``load`` cores busy, counting its readings."""

    made: ClassVar[list] = []

    def __init__(self, now, load):
        self.now, self.load, self.reads = now, load, 0
        _ClockWindow.made.append(self)

    def elapsed(self):
        return self.now[0]

    def busy(self, *a, **k):
        self.reads += 1
        return self.load


def test_the_start_decides_in_its_load_window_while_the_set_up_runs_on_one_thread(
        monkeypatch):
    """fit_threads with a count to measure: torch on one thread while the window is open;
    a poll before the window's length leaves it open, the first one at it reads the load
    once and sets the count chosen (the rest of the set-up runs on it); settle reads an
    open window at once; the caller's count restored after."""
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(th, "physical_cores", lambda: 2)
    monkeypatch.setattr(th, "free_threads", _one_core_taken)
    now, load = [0.0], [0.0]
    _ClockWindow.made = []
    monkeypatch.setattr(th, "LoadWindow", lambda: _ClockWindow(now, load[0]))
    shape = (50_000, 300, 4)
    with torch_threads(2):
        with th.fit_threads(None, "cpu", shape) as start:
            assert not start.decided and start.k is None and torch.get_num_threads() == 1
            now[0] = ml.LOAD_WINDOW_S - 1e-6
            start.poll()
            assert not start.decided and torch.get_num_threads() == 1
            assert _ClockWindow.made[0].reads == 0
            start.poll(next_work=th.WINDOW_WORK)  # a piece that fits the window: run it
            assert not start.decided and torch.get_num_threads() == 1
            now[0] = ml.LOAD_WINDOW_S
            start.poll()
            assert start.decided and start.k == 2 and torch.get_num_threads() == 2
            start.poll()
            assert start.settle() == 2 and _ClockWindow.made[0].reads == 1  # read once
        assert torch.get_num_threads() == 2
        now[0], load[0] = 0.0, 1.0  # another process on one core: one thread
        report = {}
        with th.fit_threads(None, "cpu", shape, report=report) as start:
            assert start.settle() == 1 and torch.get_num_threads() == 1
            assert _ClockWindow.made[1].reads == 1 and report == {"held": True}
        assert torch.get_num_threads() == 2 and len(_ClockWindow.made) == 2
        # a piece too large for the window on one thread: decided before it, window open
        load[0] = 0.0
        with th.fit_threads(None, "cpu", shape) as start:
            start.poll(next_work=th.WINDOW_WORK + 1)
            assert start.decided and start.k == 2 and torch.get_num_threads() == 2
            assert _ClockWindow.made[2].reads == 1
        assert th.WINDOW_WORK == 64_000_000
        # resolve_threads: the same choice, torch's count left as it was
        load[0] = 1.0
        assert th.resolve_threads(None, "cpu", shape) == 1 and torch.get_num_threads() == 2
    # no window where the count needs no reading of the load
    monkeypatch.setattr(th, "LoadWindow", lambda: pytest.fail("opened a load window"))
    monkeypatch.setattr(th, "cpu_quota", lambda: None)
    with torch_threads(2):
        for threads, shp, k in [(3, shape, 3), (1, shape, 1), (None, (10, 10, 2), 1)]:
            with th.fit_threads(threads, "cpu", shp) as start:
                assert start.decided and start.k == k and torch.get_num_threads() == k
                start.poll()
                assert start.settle() == k
        monkeypatch.setenv(th.ENV_VAR, "1")
        with th.fit_threads(None, "cpu", shape) as start:
            assert start.decided and start.k == 1
        monkeypatch.delenv(th.ENV_VAR)
        monkeypatch.setattr(th, "cpu_quota", lambda: 1.5)  # a quota of one CPU (rounded down)
        report = {}
        with th.fit_threads(None, "cpu", shape, report=report) as start:
            assert start.decided and start.k == 1 and report == {"held": False}
        with th.fit_threads(None, "cuda", shape) as start:
            assert start.decided and start.k is None and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    with torch_threads(1), th.fit_threads(None, "cpu", shape) as start:
        assert start.decided and start.k == 1


@pytest.mark.parametrize(("elapsed", "window_work"), [(0.0, None), (ml.LOAD_WINDOW_S, None),
                                                      (0.0, 7_999_999)])
def test_a_fits_set_up_runs_in_the_load_window_on_one_thread(monkeypatch, elapsed,
                                                              window_work):
    """The fit's statistics' pass runs while the window is open, on one thread: with a
    window that never reaches its length by the polls, all of the set-up (the first full
    gradient too, its 8 M multiply-adds within WINDOW_WORK) and settle decides; with one
    already past it, the statistics' first row block's poll decides and the rest runs on the
    count chosen; with the gradient's work over WINDOW_WORK, the poll before it decides. The
    solves run on the count chosen either way."""
    import dataclasses

    import sparse_probe.fit as fit_module
    from sparse_probe.solvers import SOLVERS

    monkeypatch.delenv(th.ENV_VAR, raising=False)
    monkeypatch.setattr(th, "physical_cores", lambda: 2)
    _ClockWindow.made = []
    monkeypatch.setattr(th, "LoadWindow", lambda: _ClockWindow([elapsed], 0.0))
    if window_work is not None:
        monkeypatch.setattr(th, "WINDOW_WORK", window_work)
    seen: dict[str, list] = {"sums": [], "polls": [], "gradient": [], "solve": []}

    def spy(key, real):
        def f(*a, **k):
            seen[key].append(torch.get_num_threads())
            return real(*a, **k)
        return f

    real_poll = th.StartThreads.poll
    monkeypatch.setattr(th.StartThreads, "poll", lambda self, next_work=0.0: seen[
        "polls"].append(self.decided) or real_poll(self, next_work))
    monkeypatch.setattr(fit_module, "column_sums", spy("sums", fit_module.column_sums))
    monkeypatch.setattr(fit_module._Trainer, "full_gradient",
                        spy("gradient", fit_module._Trainer.full_gradient))
    for name in ("owlqn", "newton"):
        monkeypatch.setitem(SOLVERS, name, dataclasses.replace(
            SOLVERS[name], solve=spy("solve", SOLVERS[name].solve)))
    X, y = _spied_data()
    with torch_threads(2):
        p = fit_path(X, y, n_lambdas=3, eps=0.3, progress=False)
        assert torch.get_num_threads() == 2
    assert seen["sums"] == [1] and _ClockWindow.made[0].reads == 1
    assert seen["polls"][0] is False and len(seen["polls"]) >= 2  # a row block's, copies'
    if window_work is not None:  # 4000 x 200 x 10: 8 M, one over
        assert not any(seen["polls"]) and seen["gradient"][0] == 2
    elif elapsed < ml.LOAD_WINDOW_S:
        assert not any(seen["polls"]) and seen["gradient"][0] == 1
    else:
        assert seen["polls"][1:] == [True] * (len(seen["polls"]) - 1)
        assert seen["gradient"][0] == 2
    assert set(seen["solve"]) == {2} and p.info["threads"] == 2
