"""Which solver a path point gets by default for the elementwise elastic net: OWL-QN or
proximal Newton, from the problem's sizes and the iteration counts seen so far (no clocks:
two identical fits make identical choices, so an audit's sparse layer is reproducible).

Both solvers' costs are counted in one unit, a multiply-add of OWL-QN's data products, with
constants measured by ``benchmarks/measure_solver_costs.py`` (nonnegative least squares on
every path point of the ``bench_path.py --geometry`` paths with each solver forced, 1
thread; ``benchmarks/results/solver-costs-cpu-2026-12-02.txt``):

- one OWL-QN iteration: ``4 n m C`` (the two products) ``+ 10.8 · 4 h m C`` (the two passes of
  the L-BFGS product over ``h`` curvature pairs of ``mC`` floats, memory-bound, plus the
  pair's own pass) ``+ 9.8e7`` (a fixed overhead of small operations, ~4 ms here): where n
  is small (n ≪ d) the last two dominate, and an OWL-QN iteration costs several times its
  products;
- one Newton point of ``K`` steps on ``N`` expected free coordinates: ``1.75 · 0.6 · n N²/2``
  (the Hessian: 0.6 fresh Hessians' work per point, the mean over the geometries where Newton
  wins) ``+ K · (1.41 · 4 n m C + 251 · 0.8 · N² + 1.53e8)`` (per step: its products and line
  search, the model's coordinate descent, a fixed overhead) ``+ 2.2e7``. ``K`` is the mean of
  Newton's last three points on this path (3.5 before it has run: 3.0–4.3 on the collinear,
  post-ReLU low-rank and n ≪ d paths, but 9.6 on well-separated features).

Session 12 made Newton's points cheaper (the coupled rows of joining weights, a fresh Hessian
at the start of every point, the active-set model solve): re-measured
on a loaded machine, ``0.8 · 1.11 · n N²/2 + K · (1.15 · 4 n m C + 175 · N²) + 2.88e8`` with
``K`` 1.9–2.6 (2.1 on well-separated features), the same file. Those constants were *not*
adopted: with them Newton entered the ``current`` path at its second point and stayed to the
end on OWL-QN's count from the first point grown with ``(N / N_then)^0.7``, which came to
about nine times what OWL-QN takes at that path's end; the path ran several times slower
than on OWL-QN (an ad hoc run). The constants above overstate Newton's cost now, which keeps
that path on OWL-QN and still puts the collinear, low-rank and n ≪ d paths on Newton; a
growth of the stale count that follows the path (not one exponent for every geometry) is what
adopting the new ones needs.

OWL-QN's iteration count is what the geometry decides (about 10 per λ on well-separated
features, 25–160 on collinear ones, 30–100 on post-ReLU low-rank ones, 40–60 with n ≪ d):
:func:`prefer_newton` takes it from the last path point OWL-QN solved. A count grows along a
path, so an old one understates it: while on Newton it is grown with ``(N / N_then)^0.7``
(OWL-QN's iterations grew about as ``N^0.5`` with n ≪ d and ``N^0.7`` on collinear paths;
unscaled, a count from the path's sparse start sent points of its dense end back to OWL-QN,
for 45–162 iterations each; grown with the square root, still one point of the collinear
path's end, for 132), and the path stays on Newton until it is estimated ``stay``
times costlier. Entering Newton takes a clear gain (``enter``): where Newton wins it wins
by 3-10× (4 steps per λ against 42-63 OWL-QN iterations), and a Newton point that only
breaks even is a gamble on its step count (on well-separated features its first points take
few steps and its later ones many more, so entering at break-even put a stretch of that path
on Newton and made it slower; an ad hoc run). Before OWL-QN has run once, OWL-QN is chosen:
there is no count to compare with yet. (This rule was also set when Newton's first model of
over :data:`~sparse_probe.solvers.gram_cd.DIRECT_MAX` coordinates in a process imported
scikit-learn's coordinate descent, over a second here; the project's own compiled kernel
needs no import, but scikit-learn's is still the fallback where that was not built.)
"""

from __future__ import annotations

from sparse_probe.solvers.lbfgs import history_for

__all__ = ["newton_cost", "owlqn_iteration_cost", "prefer_newton"]

# measured constants (module docstring), in multiply-adds of OWL-QN's products
OWLQN_PAIR_PASSES = 10.8
OWLQN_FIXED = 9.8e7
NEWTON_HESSIAN = 1.75 * 0.6  # per n N²/2: 0.6 fresh Hessians' work per point
NEWTON_STEP_PRODUCTS = 1.41  # per 4nmC and step
NEWTON_STEP_MODEL = 251.0 * 0.8  # per N² and step: 0.8 model solves' N² per step
NEWTON_STEP_FIXED = 1.53e8
NEWTON_FIXED = 2.2e7
NEWTON_STEPS = 3.5  # steps per point before Newton has run on a path


def _check(n: int, m: int, C: int, caller: str) -> None:
    if n <= 0 or m <= 0 or C <= 0:
        raise ValueError(f"{caller}: n, m and C must be positive, got {n}, {m}, {C}")


def owlqn_iteration_cost(n: int, m: int, C: int) -> float:
    """Cost of one OWL-QN iteration in multiply-adds of its products (module docstring).

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    """
    _check(n, m, C, "owlqn_iteration_cost")
    p = m * C
    return 4.0 * n * p + OWLQN_PAIR_PASSES * 4.0 * history_for(p + C) * p + OWLQN_FIXED


def newton_cost(n: int, m: int, C: int, n_free: int, steps: float | None = None) -> float:
    """Estimated cost of one path point with proximal Newton, in OWL-QN iterations.

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    n_free : int
        Free coordinates expected in the Newton model (weights plus the C biases).
    steps : float, optional
        Newton steps expected at the point (default :data:`NEWTON_STEPS`).
    """
    _check(n, m, C, "newton_cost")
    N2 = float(n_free) ** 2
    k = NEWTON_STEPS if steps is None else max(float(steps), 1.0)
    step = NEWTON_STEP_PRODUCTS * 4.0 * n * m * C + NEWTON_STEP_MODEL * N2 + NEWTON_STEP_FIXED
    point = NEWTON_HESSIAN * n * N2 / 2 + k * step + NEWTON_FIXED
    return point / owlqn_iteration_cost(n, m, C)


def prefer_newton(n: int, m: int, C: int, n_free: int, owlqn_iters: float | None, *,
                  on_newton: bool = False, stay: float = 1.5, enter: float = 0.7,
                  owlqn_free: int | None = None, newton_steps: float | None = None,
                  max_free: int | None = None) -> bool:
    """Whether proximal Newton is expected to be faster than OWL-QN at this path point.

    Parameters
    ----------
    n, m, C, n_free : int
        As :func:`newton_cost`.
    owlqn_iters : float or None
        OWL-QN's iterations at the last point it solved (None: it has not run yet).
    on_newton : bool
        The last point used Newton: it stays unless estimated ``stay`` times costlier than
        OWL-QN (hysteresis against an old, low OWL-QN count: on the collinear path OWL-QN
        ran at 3 of the last 7 points without it, needing 103-142 iterations each where
        its old count said ~50).
    stay : float
    enter : float
        Off Newton, Newton is chosen only when estimated below ``enter`` times OWL-QN's
        cost (module docstring).
    owlqn_free : int, optional
        Free coordinates (``n_free``'s measure) at the point where ``owlqn_iters`` was
        counted: while on Newton the count is grown with ``(n_free / owlqn_free)^0.7``,
        never shrunk.
    newton_steps : float, optional
        Newton's mean steps per point on this path so far (None: it has not run).
    max_free : int, optional
        Newton's own limit (:data:`~sparse_probe.solvers.newton.DEFAULT_MAX_FREE`): above it
        Newton would only hand the point to OWL-QN, so OWL-QN it is.
    """
    if owlqn_iters is None or (max_free is not None and n_free > max_free):
        return False
    iters = float(owlqn_iters)
    if on_newton and owlqn_free:
        iters *= max(1.0, n_free / owlqn_free) ** 0.7
    return newton_cost(n, m, C, n_free, newton_steps) < (stay if on_newton else enter) * iters
