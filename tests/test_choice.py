"""The default's per-point choice between OWL-QN and proximal Newton (solvers/choice.py):
pure functions of the solvers' measured seconds, checked on exact numbers (no clocks)."""

import pytest

from sparse_probe.solvers.choice import (
    PathTimes,
    newton_cost,
    newton_seconds,
    newton_size,
    owlqn_seconds,
    prefer_newton,
)

N_EX, M, C = 10_000, 100, 10


def _owlqn_only(iters=40, seconds=0.4, m=M):
    return PathTimes().after_owlqn(iters, seconds, m)


def test_owlqn_first_and_the_constant_model_until_newton_is_measured():
    assert not prefer_newton(PathTimes(), N_EX, M, C, 20)  # nothing measured: OWL-QN
    assert owlqn_seconds(PathTimes(), M) is None
    assert newton_seconds(PathTimes(), N_EX, M, C, 5) is None
    t = _owlqn_only(iters=40, seconds=0.4)
    assert owlqn_seconds(t, M) == pytest.approx(0.4)
    assert owlqn_seconds(t, 2 * M) == pytest.approx(0.8)  # an iteration is linear in m
    # before Newton has run: the constant model in OWL-QN iterations, at OWL-QN's measured rate
    for n_free in (50, 450, 470, 900):
        assert newton_seconds(t, N_EX, M, C, n_free) == pytest.approx(
            newton_cost(N_EX, M, C, n_free) * 0.4 / 40)
        assert prefer_newton(t, N_EX, M, C, n_free) == (newton_cost(N_EX, M, C, n_free) < 40)
    assert prefer_newton(t, N_EX, M, C, 450) and not prefer_newton(t, N_EX, M, C, 470)
    assert not prefer_newton(_owlqn_only(iters=3, seconds=0.03), N_EX, M, C, 50)  # cheap OWL-QN
    # an OWL-QN point that did not iterate keeps the measured rate but lowers the count
    t0 = t.after_owlqn(0, 0.001, M)
    assert t0.owlqn_rates == t.owlqn_rates and t0.owlqn_iters == 0
    assert owlqn_seconds(t0, M) == pytest.approx(0.01)  # counted as one iteration
    with pytest.raises(ValueError, match="newton_cost: n, m and C must be positive"):
        newton_cost(0, 10, 3, 5)


def test_newton_seconds_scale_its_own_measurement_by_its_work():
    # n (4 m C + 0.17 N²) multiply-adds plus a fixed 6e7 per point
    assert newton_size(N_EX, M, C, 400) == pytest.approx(1e4 * (4000 + 27_200) + 6e7)
    assert newton_size(N_EX, M, C, 800) == pytest.approx(1e4 * (4000 + 108_800) + 6e7)
    t = _owlqn_only().after_newton(0.5, N_EX, M, C, 400)
    assert newton_seconds(t, N_EX, M, C, 400) == pytest.approx(0.5)
    assert newton_seconds(t, N_EX, M, C, 800) == pytest.approx(0.5 * 1.188e9 / 3.72e8)
    assert newton_seconds(t, N_EX, 2 * M, C, 400) == pytest.approx(0.5 * 4.12e8 / 3.72e8)
    # a tiny first Newton point (40 free coordinates, mostly fixed cost) does not extrapolate
    # to several times the next points' seconds: without the fixed part this ratio is 4.6
    tiny = _owlqn_only().after_newton(0.027, N_EX, 43, C, 39)
    assert newton_seconds(tiny, N_EX, 121, C, 160) / 0.027 == pytest.approx(1.9, abs=0.05)


def test_a_slowed_down_measurement_does_not_decide_alone():
    # a busy machine slows single measurements down: the lower median of the last three
    t = _owlqn_only().after_newton(0.3, N_EX, M, C, 400)
    slow = t.after_newton(3.0, N_EX, M, C, 400)
    assert newton_seconds(slow, N_EX, M, C, 400) == pytest.approx(0.3)  # of two, the lower
    slow = slow.after_newton(0.35, N_EX, M, C, 400)
    assert newton_seconds(slow, N_EX, M, C, 400) == pytest.approx(0.35)  # the median
    assert prefer_newton(slow, N_EX, M, C, 400, on_newton=True)
    slow = slow.after_newton(3.0, N_EX, M, C, 400)  # now two of the last three are slow
    assert newton_seconds(slow, N_EX, M, C, 400) == pytest.approx(3.0)
    assert not prefer_newton(slow, N_EX, M, C, 400, on_newton=True)
    owl = _owlqn_only(seconds=0.4).after_owlqn(40, 4.0, M)  # the same for OWL-QN
    assert owlqn_seconds(owl, M) == pytest.approx(0.4)
    assert owlqn_seconds(owl.after_owlqn(40, 4.0, M), M) == pytest.approx(4.0)
    assert owlqn_seconds(owl.after_owlqn(40, 4.0, M).after_owlqn(40, 0.4, M).after_owlqn(
        40, 0.4, M), M) == pytest.approx(0.4)  # only the last three count


def test_measured_seconds_overrule_the_constant_model():
    # n ≪ d: OWL-QN's iterations are overhead-bound (14 ms each at n = 500), the constant
    # model says Newton costs more OWL-QN iterations than OWL-QN needs, the clock says not
    n, m, n_free = 500, 3000, 2600
    t = PathTimes().after_owlqn(40, 0.56, m)
    assert newton_cost(n, m, C, n_free) > 40 and not prefer_newton(t, n, m, C, n_free)
    t = t.after_newton(0.12, n, m, C, n_free)
    assert prefer_newton(t, n, m, C, n_free)


def test_hysteresis_and_the_size_limit():
    owl = 0.4  # _owlqn_only's seconds at m = M
    for newton_s, fresh, stay in ((0.3, True, True), (0.5, False, True), (0.7, False, False)):
        t = _owlqn_only().after_newton(newton_s, N_EX, M, C, 400)
        assert prefer_newton(t, N_EX, M, C, 400) == fresh, newton_s
        assert prefer_newton(t, N_EX, M, C, 400, on_newton=True) == stay, newton_s
        assert not prefer_newton(t, N_EX, M, C, 400, on_newton=True,
                                 stay=newton_s / owl * 0.99)
    t = _owlqn_only().after_newton(0.01, N_EX, M, C, 400)
    assert prefer_newton(t, N_EX, M, C, 400, max_free=400)
    assert not prefer_newton(t, N_EX, M, C, 401, max_free=400)


def test_a_stale_owlqn_count_grows_with_the_free_coordinates_while_on_newton():
    # OWL-QN ran last at 100 free coordinates (10 iterations, 0.1 s); the path went on with
    # Newton to 900: its iterations grow about as sqrt(N), so the count reads 30
    t = _owlqn_only(iters=10, seconds=0.1)
    t = t.after_owlqn(10, 0.1, M, n_free=100)
    assert owlqn_seconds(t, M) == pytest.approx(0.1)
    assert owlqn_seconds(t, M, 900) == pytest.approx(0.3)
    assert owlqn_seconds(t, M, 25) == pytest.approx(0.1)  # never below the measured count
    assert owlqn_seconds(_owlqn_only(iters=10, seconds=0.1), M, 900) == pytest.approx(0.1)
    # Newton measured at 0.2 s there: 0.2 > 1.5 × 0.1 would leave Newton on the stale count,
    # 0.2 < 1.5 × 0.3 keeps it; off Newton the count is fresh and not grown
    t = t.after_newton(0.2, N_EX, M, C, 900)
    assert prefer_newton(t, N_EX, M, C, 900, on_newton=True)
    assert not prefer_newton(t, N_EX, M, C, 900, on_newton=False)
