"""The default's per-point choice between OWL-QN and proximal Newton (solvers/choice.py):
pure functions of the solvers' measured seconds, checked on exact numbers (no clocks)."""

import pytest

from sparse_probe.solvers.choice import (
    PathTimes,
    newton_cost,
    newton_seconds,
    owlqn_seconds,
    prefer_newton,
)

N_EX, M, C = 10_000, 100, 10


def _owlqn_only(iters=40, seconds=0.4, m=M):
    return PathTimes().after_owlqn(iters, seconds, m)


def test_owlqn_first_and_the_constant_model_until_newton_is_measured():
    assert not prefer_newton(PathTimes(), N_EX, M, C, 20)  # nothing measured: OWL-QN
    assert owlqn_seconds(PathTimes(), M) is None and newton_seconds(PathTimes(), N_EX, M, C, 5) is None
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
    assert t0.owlqn_it_seconds == t.owlqn_it_seconds and t0.owlqn_iters == 0
    assert owlqn_seconds(t0, M) == pytest.approx(0.01)  # counted as one iteration
    with pytest.raises(ValueError, match="newton_cost: n, m and C must be positive"):
        newton_cost(0, 10, 3, 5)


def test_newton_seconds_from_its_own_measurements():
    n_free = 400
    work = 0.5 * N_EX * n_free**2
    t = _owlqn_only().after_newton(0.5, N_EX, n_free, hessian_seconds=0.3, hessian_work=work)
    # one fresh Hessian per point at 0.3 s, 0.2 s of the rest for 400 free coordinates
    assert newton_seconds(t, N_EX, M, C, n_free) == pytest.approx(0.5)
    assert newton_seconds(t, N_EX, M, C, 2 * n_free) == pytest.approx(4 * 0.3 + 2 * 0.2)
    # the next point reused the model (no fresh Hessian) in 0.1 s: running averages
    t2 = t.after_newton(0.1, N_EX, n_free, hessian_seconds=0.0, hessian_work=0.0)
    assert t2.newton_hessian_rate == t.newton_hessian_rate  # no Hessian: the rate is kept
    assert t2.newton_hessians == pytest.approx(0.5)  # half a fresh Hessian per point
    assert newton_seconds(t2, N_EX, M, C, n_free) == pytest.approx(0.5 * 0.3 + 0.5 * (0.2 + 0.1))
    # a slower Hessian next: the rate is averaged too
    t3 = t.after_newton(0.9, N_EX, n_free, hessian_seconds=0.6, hessian_work=work)
    assert newton_seconds(t3, N_EX, M, C, n_free) == pytest.approx(0.45 + 0.25)


def test_measured_seconds_overrule_the_constant_model():
    # n ≪ d: OWL-QN's iterations are overhead-bound (14 ms each at n = 500), the constant
    # model says Newton costs more OWL-QN iterations than OWL-QN needs, the clock says not
    n, m, n_free = 500, 3000, 2600
    t = PathTimes().after_owlqn(40, 0.56, m)
    assert newton_cost(n, m, C, n_free) > 40 and not prefer_newton(t, n, m, C, n_free)
    t = t.after_newton(0.12, n, n_free, hessian_seconds=0.05, hessian_work=0.5 * n * n_free**2)
    assert prefer_newton(t, n, m, C, n_free)
    # and the other way: a Newton point measured slow sends the next one to OWL-QN
    slow = t.after_newton(3.0, n, n_free, hessian_seconds=2.0, hessian_work=0.5 * n * n_free**2)
    assert not prefer_newton(slow, n, m, C, n_free, on_newton=True)


def test_hysteresis_and_the_size_limit():
    n_free = 400
    work = 0.5 * N_EX * n_free**2
    owl = 0.4  # _owlqn_only's seconds at m = M
    for newton_s, fresh, stay in ((0.3, True, True), (0.5, False, True), (0.7, False, False)):
        t = _owlqn_only().after_newton(newton_s, N_EX, n_free, hessian_seconds=0.5 * newton_s,
                                       hessian_work=work)
        assert newton_seconds(t, N_EX, M, C, n_free) == pytest.approx(newton_s)
        assert prefer_newton(t, N_EX, M, C, n_free) == fresh, newton_s
        assert prefer_newton(t, N_EX, M, C, n_free, on_newton=True) == stay, newton_s
        assert prefer_newton(t, N_EX, M, C, n_free, on_newton=True, stay=newton_s / owl * 0.99) \
            is False
    t = _owlqn_only().after_newton(0.01, N_EX, n_free, hessian_seconds=0.0, hessian_work=0.0)
    assert prefer_newton(t, N_EX, M, C, n_free, max_free=n_free)
    assert not prefer_newton(t, N_EX, M, C, n_free + 1, max_free=n_free)
