"""Which solver a path point gets by default for the elementwise elastic net: OWL-QN or
proximal Newton, from the problem's sizes and the iteration counts seen so far (no clocks:
two identical fits make identical choices, so an audit's sparse layer is reproducible).

Both solvers' costs are counted in one unit, a multiply-add of OWL-QN's data products, with
constants measured by ``benchmarks/measure_solver_costs.py`` (nonnegative least squares on
every path point of the ``bench_path.py --geometry`` paths and four held-out collinear draws
with each solver forced, 1 thread; ``benchmarks/results/solver-costs-cpu-2026-12-05.txt``):

- one OWL-QN iteration: ``4 n m C`` (the two products) ``+ 53.1 · 4 h m C`` (the two passes of
  the L-BFGS product over the ``h`` curvature pairs OWL-QN keeps on CPU,
  :func:`~sparse_probe.solvers.owlqn.default_pairs`: 10 beside the class blocks, else at
  most 20; memory-bound, plus the pair's own pass) ``+ 235 · n C`` (the elementwise work on the
  (n, C) logits) ``+ 1.04e8`` (a fixed overhead of small operations, ~1.6 ms here): where n is
  small (n ≪ d) the last terms dominate, and an OWL-QN iteration costs several times its
  products;
- one Newton point of ``K`` steps on ``N`` expected free coordinates: ``2.28 · 0.6 · n N²/2``
  (the Hessian: 0.6 fresh Hessians' work per point, about the mean over the geometries where
  Newton wins) ``+ K · (2.4 · 4 n m C + 534 · 0.8 · N² + 6.12e7)`` (per step: its products
  and line search, the model's coordinate descent, a fixed overhead) ``+ 5.44e8``. ``K`` is
  the mean of Newton's last three points on this path (3.5 before it has run: 2.0–4.2 steps
  per point on the bench and held-out paths).

These replaced the 2026-12-02 fit (``10.8 · 4 h m C + 9.8e7`` per OWL-QN iteration with the 80
pairs it kept then, Newton ``1.75 · 0.6 · n N²/2 + K (1.41 · 4nmC + 251 · 0.8 N² + 1.53e8) +
2.2e7``) once OWL-QN kept fewer pairs and its products ran faster (the unit itself 2.3×
cheaper against everything else): priced as before, a held-out collinear path (2528 × 363 ×
10) stayed on Newton to its end and took 7.3 s against 3.5 s now
(``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``).

Earlier (session 12), re-measured Newton constants were *not* adopted: with them Newton
entered the ``current`` path at its second point and stayed to the end on OWL-QN's count from
the first point grown with ``(N / N_then)^0.7``, several times slower than OWL-QN. The fits
since price Newton on its own work (below) and keep that path on OWL-QN.

Where the static estimate underprices Newton, the path corrects it from what Newton's points
did: the solver counts its work (the Hessians' multiply-adds, the entries its model solves
read from models beyond and within the caches, their factorizations' multiply-adds:
``SolveResult.work``, :class:`~sparse_probe.solvers.gram_cd.QPWork`), counts no clock
disturbs, so the choice stays reproducible. :func:`newton_observed_cost` prices them (a second
fit of ``measure_solver_costs.py``, on the counts), and the mean of its ratio to the estimate
over Newton's last three points scales the estimate up (``prefer_newton(newton_over=...)``),
never down: the last three priced by the same formula (:func:`cost_route`: the Gram route, the
data route, or the data route on a path where a data-space solve crawled into the Gram route,
priced as both; :func:`newton_over_seen`, :func:`newton_cost`'s ``data_crawls``). On a held-out collinear draw with 40 classes (3333 × 138 × 40) the coupled
model's solves cost 1.5-2.5 times the estimate per point: the path stayed on Newton to its end
and took 30-39 s where OWL-QN alone took 16-19 s; read from its counts, it goes back to
OWL-QN at its 14th point (16 s; ``benchmarks/compare_revisions.py``,
results/compare-work-pricing-cpu-2026-12-03.txt), and the bench geometries' choices do not
change.

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

Both choices are bounded by what a point then costs, in counts (no clocks): an OWL-QN point
where Newton could run gets :data:`HANDOVER` times Newton's estimate (:func:`owlqn_budget`),
a Newton point the same times OWL-QN's expected count (:func:`newton_budget`), each handing
the point to the other solver from where it stands; a path on Newton whose OWL-QN count is
stale tries OWL-QN where the count's slow-end growth would change the choice
(:func:`owlqn_probe`); and a Newton point that handed over floors Newton's price until Newton
solves a point alone again (:func:`newton_over_seen`). On the held-out collinear draws where
the estimates missed most these took the path 1.2-2.3× faster, on the bench geometries and a
fresh set of draws the choices and times stayed within the machine's spread but for a few
(``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``).
"""

from __future__ import annotations

from sparse_probe.solvers.class_blocks import blocks_pay
from sparse_probe.solvers.data_cd import compiled as data_compiled
from sparse_probe.solvers.data_cd import data_pays
from sparse_probe.solvers.owlqn import default_pairs

__all__ = ["CARRY_MARGIN", "DATA_ENTRY", "DATA_MIN_SWEEPS", "DATA_PASSES", "HANDOVER", "carry_pays",
           "cost_route", "data_route", "data_sweep_cap", "grown_count", "newton_budget",
           "newton_cost", "newton_cost_ratio", "newton_observed_cost", "newton_over_seen",
           "owlqn_budget", "owlqn_iteration_cost", "owlqn_probe", "prefer_newton"]

# measured constants (module docstring), in multiply-adds of OWL-QN's products
OWLQN_PAIR_PASSES = 53.1  # per 4 h mC: the L-BFGS product's passes over its h pairs
OWLQN_LOGITS = 235.0  # per nC: the elementwise work on the (n, C) logits
OWLQN_FIXED = 1.04e8
FRESH_HESSIAN = 2.28  # per n N²/2 of one fresh Hessian
NEWTON_HESSIAN = FRESH_HESSIAN * 0.6  # per n N²/2: 0.6 fresh Hessians' work per point
NEWTON_STEP_PRODUCTS = 2.4  # per 4nmC and step
NEWTON_STEP_MODEL = 534.0 * 0.8  # per N² and step: 0.8 model solves' N² per step
NEWTON_STEP_FIXED = 6.12e7
NEWTON_FIXED = 5.44e8
NEWTON_STEPS = 3.5  # steps per point before Newton has run on a path
# the price of a Newton point's counted work (newton_observed_cost), the second Newton fit of
# benchmarks/measure_solver_costs.py (results/solver-costs-cpu-2026-12-05.txt)
WORK_HESSIAN = 2.46  # per Hessian multiply-add
WORK_STEP_PRODUCTS = 2.49  # per 4nmC and step
WORK_STEP_FIXED = 5.36e7
WORK_FIXED = 5.76e8
DATA_ENTRY = 35.0  # per example read by a data-space model solve (solvers.data_cd)
STREAM = 32.6  # per entry read from a model beyond the caches
STREAM_CACHED = 19.2  # per entry read from a model within them
BLAS3 = 2.78  # per multiply-add of a factorization or multi-column triangular solve


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
    h = default_pairs(p + C, blocks_pay(n, m, C), "cpu")
    return 4.0 * n * p + OWLQN_PAIR_PASSES * 4.0 * h * p + OWLQN_LOGITS * n * C + OWLQN_FIXED


DATA_PASSES = 15.0
"""Passes over every free coordinate a data-space model solve is estimated to read, in
examples (:func:`newton_cost`; passes over the active part count their share): 10.3-11.9 on
three n ≪ d paths, 16.6-20.5 on three more (two collinear; ``benchmarks/measure_data_cd.py``,
``results/data-cd-cpu-2026-12-06.txt``, where :data:`DATA_ENTRY`, 14.3 Hessian multiply-adds
an example at one thread, was measured too)."""
DATA_MIN_SWEEPS = 8
"""Passes a data-space model solve may always make (:func:`data_sweep_cap`)."""


def data_route(n: int, C: int, n_free: int) -> bool:
    """Whether Newton solves a model of ``n_free`` coordinates (weights plus the C biases) on
    ``n`` examples in data space (:func:`~sparse_probe.solvers.data_cd.data_pays`, with its
    compiled sweeps built) on a CPU: no Hessian, and no (N, N) model to outgrow ``max_free``."""
    return data_pays(n, n_free - C) and data_compiled()


def data_sweep_cap(n_free: int) -> int:
    """Passes a data-space model solve of ``n_free`` coordinates may make before the Newton
    solver gives up on it for the Gram route: as many as cost what its fresh Hessian would,
    ``WORK_HESSIAN · n N²/2`` against ``DATA_ENTRY · n N`` a pass, at least
    :data:`DATA_MIN_SWEEPS`."""
    return max(DATA_MIN_SWEEPS, int(WORK_HESSIAN * n_free / (2.0 * DATA_ENTRY)))


def cost_route(n: int, C: int, n_free: int, data_crawls: bool = False) -> str:
    """Which of :func:`newton_cost`'s formulas prices a Newton point of ``n_free``
    coordinates: ``"gram"`` (a Hessian and model solves on it), ``"data"`` (its models solved
    in data space, :func:`data_route`) or ``"data+gram"`` (data space where an earlier point's
    data-space solve crawled into the Gram route: ``data_crawls``)."""
    if not data_route(n, C, n_free):
        return "gram"
    return "data+gram" if data_crawls else "data"


def _newton_step_cost(n: int, m: int, C: int, N2: float) -> float:
    """One Newton step's estimated cost (its products and line search, the model's coordinate
    descent on ``N2 = N²`` entries, a fixed overhead), in multiply-adds of OWL-QN's products."""
    return NEWTON_STEP_PRODUCTS * 4.0 * n * m * C + NEWTON_STEP_MODEL * N2 + NEWTON_STEP_FIXED


def newton_cost(n: int, m: int, C: int, n_free: int, steps: float | None = None, *,
                data_crawls: bool = False) -> float:
    """Estimated cost of one path point with proximal Newton, in OWL-QN iterations.

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    n_free : int
        Free coordinates expected in the Newton model (weights plus the C biases).
    steps : float, optional
        Newton steps expected at the point (default :data:`NEWTON_STEPS`).
    data_crawls : bool
        A data-space model solve on this path crawled into the Gram route
        (:func:`~sparse_probe.solvers.newton.newton`'s ``work["crawled"]``): a data-route
        point is priced as its data-space steps plus the Gram route it ends on, a fresh
        Hessian and a model solve a step after the first (:func:`cost_route`'s
        ``"data+gram"``). Priced by the data-space formula alone, linear in ``N``, such
        points on a held-out collinear path (1372 × 159 × 20) ran at 2.2 times it at
        N = 1,519 and 6.5 times at N = 2,254: a ratio from the first could not price the
        second (``benchmarks/results/over-routes-cpu-2026-12-06.txt``).
    """
    _check(n, m, C, "newton_cost")
    N2 = float(n_free) ** 2
    k = NEWTON_STEPS if steps is None else max(float(steps), 1.0)
    if data_route(n, C, n_free):  # no Hessian: DATA_PASSES passes over the examples a step
        step = NEWTON_STEP_PRODUCTS * 4.0 * n * m * C + \
            DATA_PASSES * DATA_ENTRY * n * float(n_free) + NEWTON_STEP_FIXED
        point = k * step + NEWTON_FIXED
        if data_crawls:
            point += FRESH_HESSIAN * n * N2 / 2 + max(k - 1.0, 1.0) * NEWTON_STEP_MODEL * N2
        return point / owlqn_iteration_cost(n, m, C)
    step = _newton_step_cost(n, m, C, N2)
    point = NEWTON_HESSIAN * n * N2 / 2 + k * step + NEWTON_FIXED
    return point / owlqn_iteration_cost(n, m, C)


CARRY_MARGIN = 4.0
"""A path point takes its first Newton step on the last point's model
(:func:`~sparse_probe.solvers.newton.carry_model`) only where a fresh Hessian is estimated to
cost this many times a step on that model: where it is not, a weak step on the old model (then
a fresh Hessian anyway) costs about what it saves. On the n ≪ d bench path (n = 500, a fresh
Hessian ~1.6 steps' cost at its end) carrying made the path 0.87× as fast, on the collinear
path (~26 steps) 1.35× as fast (``benchmarks/results/newton-carry-cpu-2026-12-04.txt``;
the steps priced as then: with the 2026-12-05 prices the two paths' ends stay on their sides
of the margin, the carry's choices on the bench geometries unchanged in
``solver-budgets-cpu-2026-12-05.txt``)."""


def carry_pays(n: int, m: int, C: int, n_free: int) -> bool:
    """Whether the next point's first step should be taken on the last point's Newton model:
    a fresh Hessian (``2.28 · n N²/2``) estimated at least :data:`CARRY_MARGIN` times a
    step's products, model solve and overhead (:func:`newton_cost`'s per-step terms).

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    n_free : int
        Free coordinates of the model (weights plus the C biases).
    """
    _check(n, m, C, "carry_pays")
    N2 = float(n_free) ** 2
    step = _newton_step_cost(n, m, C, N2)
    return FRESH_HESSIAN * n * N2 / 2 >= CARRY_MARGIN * step


def newton_observed_cost(n: int, m: int, C: int, steps: int, work: dict) -> float:
    """What a path point Newton solved cost, from the work it counted, in OWL-QN iterations
    (:func:`newton_cost`'s unit, so that their ratio says how far the estimate was off).

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    steps : int
        Newton steps taken.
    work : dict
        ``SolveResult.work`` of :func:`~sparse_probe.solvers.newton.newton`: ``"hessian"``
        (multiply-adds of its Hessians), ``"stream"``, ``"stream_cached"``, ``"blas3"`` (its
        model solves', :class:`~sparse_probe.solvers.gram_cd.QPWork`), ``"data"`` (examples
        read by its data-space model solves, :class:`~sparse_probe.solvers.data_cd.DataWork`).

    Notes
    -----
    Every term is priced by one least-squares fit of Newton's seconds per point on its counted
    work (``benchmarks/measure_solver_costs.py``, the bench geometries and four held-out
    collinear draws, 1 thread; results/solver-costs-cpu-2026-12-05.txt: within 0.71-1.12 of
    the measured seconds per problem, where the fit on ``Σ N²`` of the model solves was off
    by 0.38-0.57 on the held-out draws): ``2.46 ×`` the Hessians' multiply-adds ``+ k (2.49 ·
    4nmC + 5.36e7) + 32.6 ×`` entries read from models beyond the caches ``+ 19.2 ×`` from
    models within them ``+ 2.78 ×`` factorization multiply-adds ``+ 5.76e8``; ``+ 35 ×`` the
    examples read by data-space model solves (``"data"``, :mod:`~sparse_probe.solvers.data_cd`;
    priced apart, at its measured time per example over the Hessian's per multiply-add at one
    thread: :data:`DATA_ENTRY`).
    """
    _check(n, m, C, "newton_observed_cost")
    k = max(int(steps), 1)
    model = (STREAM * work.get("stream", 0.0) + STREAM_CACHED * work.get("stream_cached", 0.0)
             + BLAS3 * work.get("blas3", 0.0) + DATA_ENTRY * work.get("data", 0.0))
    point = (WORK_HESSIAN * work.get("hessian", 0.0)
             + k * (WORK_STEP_PRODUCTS * 4.0 * n * m * C + WORK_STEP_FIXED) + model + WORK_FIXED)
    return point / owlqn_iteration_cost(n, m, C)


def newton_cost_ratio(n: int, m: int, C: int, n_free: int, steps: int, work: dict, *,
                      data_crawls: bool = False) -> float:
    """How far :func:`newton_cost` was off at a point Newton solved: its
    :func:`newton_observed_cost` over the estimate at the same size and steps (what
    :func:`prefer_newton`'s ``newton_over`` averages), ``data_crawls`` as
    :func:`newton_cost`.

    Parameters
    ----------
    n, m, C, n_free : int
        As :func:`newton_cost`, at the point.
    steps : int
        Newton steps taken there.
    work : dict
        Its ``SolveResult.work``.
    """
    return newton_observed_cost(n, m, C, steps, work) / \
        newton_cost(n, m, C, n_free, steps, data_crawls=data_crawls)


OVER_POINTS = 3
"""Newton's points on a path whose :func:`newton_cost_ratio` :func:`newton_over_seen`
averages: the last three."""


def newton_over_seen(fresh: list[float], counted: list[float], *,
                     on_newton: bool, floor: float | None = None,
                     routes: list[str] | None = None,
                     route: str | None = None) -> float | None:
    """The ``newton_over`` a path point's choice reads (:func:`prefer_newton`,
    :func:`owlqn_budget`): the mean :func:`newton_cost_ratio` of Newton's last
    :data:`OVER_POINTS` points (of those on this point's route, where there are some), or
    None before Newton has run.

    Parameters
    ----------
    fresh : list of float
        Each Newton point's ratio with its Hessian work priced at least one fresh Hessian
        (``n N²/2``), where it took its first steps on the last point's model
        (:func:`~sparse_probe.solvers.newton.carry_model`).
    counted : list of float
        The same points' ratios on the work as counted.
    on_newton : bool
        The last point used Newton.
    floor : float, optional
        The ratio of a Newton point that handed over to OWL-QN past its budget
        (:func:`newton_budget`) since Newton last solved a point alone: what Newton cost
        there at least, so the mean is taken at least as this. Averaged with the cheaper
        points before it, it let a held-out collinear path (3900 × 390 × 10 to 1e-3·λ_max)
        enter Newton again two points later, to hand over again.
    routes : list of str, optional
        Each of those points' :func:`cost_route` (parallel to ``fresh`` and ``counted``).
    route : str, optional
        This point's :func:`cost_route`: with ``routes``, only the points priced by the same
        formula are averaged, where there are any. :func:`newton_cost` prices the routes by
        different formulas, and a ratio says how far one of them was off: on a held-out
        collinear path (1372 × 159 × 20 to 1e-2·λ_max, 30 λ) the Gram route's points ran
        at 1.0-1.3 times their estimate and the first data-route point (N > n) at 5.1;
        averaged with the Gram route's, its 5.1 read as 2.6-3.6, and the path went back to
        Newton for its last three points, each taking 2-3 times OWL-QN's neighbours; with
        this and ``data_crawls`` (:func:`newton_cost`) it stays on OWL-QN there (1.6× as
        fast), and the seven held-out draws whose choices changed ran 0.83-1.77× as fast (six
        faster; ``benchmarks/results/over-routes-cpu-2026-12-06.txt``).

    Notes
    -----
    Entering Newton (``on_newton`` false) reads ``fresh``: a point after OWL-QN's has no model
    to carry. ``fresh`` alone was the rule when the carry came in (counted, the carried points'
    saving had tipped a held-out 20-class collinear path onto Newton at a point that cost 7×
    OWL-QN's: ``benchmarks/results/newton-carry-cpu-2026-12-04.txt``); that path now leaves
    Newton where it did, its two lists being equal up to there. Staying reads ``counted``: the
    points ahead are carried as the path's last ones were; priced as if they were not, the
    collinear bench path at one thread left Newton for its last point, where OWL-QN took 156
    iterations (0.59 s) against its Newton points' 0.1-0.25 s
    (``benchmarks/results/newton-stay-cpu-2026-12-04.txt``).
    """
    seen = counted if on_newton else fresh
    if routes is not None and route is not None:
        if len(routes) != len(seen):
            raise ValueError(f"newton_over_seen: {len(routes)} routes for {len(seen)} ratios")
        same = [seen[i] for i, on in enumerate(routes) if on == route]
        seen = same or seen
    mean = float(sum(seen[-OVER_POINTS:]) / len(seen[-OVER_POINTS:])) if seen else None
    if floor is None:
        return mean
    return floor if mean is None else max(mean, float(floor))


def prefer_newton(n: int, m: int, C: int, n_free: int, owlqn_iters: float | None, *,
                  on_newton: bool = False, stay: float = 1.5, enter: float = 0.7,
                  owlqn_free: int | None = None, newton_steps: float | None = None,
                  max_free: int | None = None, newton_over: float | None = None,
                  data_crawls: bool = False) -> bool:
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
        Newton would only hand the point to OWL-QN, so OWL-QN it is, but for a model solved in
        data space (:func:`data_route`: no (N, N) model to outgrow).
    newton_over : float, optional
        How far :func:`newton_cost` underpriced Newton's last points on this path: the mean
        of their :func:`newton_cost_ratio`. Above 1 the
        estimate is scaled by it; below 1 it is not lowered (the estimate errs on Newton's
        costly side by design, the module docstring: a Newton made cheaper on paper went
        on where OWL-QN was several times faster).
    data_crawls : bool
        As :func:`newton_cost`.
    """
    if owlqn_iters is None or (max_free is not None and n_free > max_free
                               and not data_route(n, C, n_free)):
        return False
    iters = grown_count(owlqn_iters, n_free, owlqn_free) if on_newton else float(owlqn_iters)
    return _newton_estimate(n, m, C, n_free, newton_steps, newton_over, data_crawls) < \
        (stay if on_newton else enter) * iters


COUNT_GROWTH = 0.7
"""While on Newton, OWL-QN's count from an earlier point is grown as ``(N / N_then)`` to this
power (:func:`grown_count`; module docstring)."""


def grown_count(owlqn_iters: float, n_free: int, owlqn_free: int | None) -> float:
    """OWL-QN's iterations expected at ``n_free`` free coordinates from its count
    ``owlqn_iters`` at ``owlqn_free``: grown as ``(n_free / owlqn_free)^0.7``
    (:data:`COUNT_GROWTH`), never shrunk; the count itself where ``owlqn_free`` is unknown.

    Parameters
    ----------
    owlqn_iters : float
        OWL-QN's iterations at the last point it solved.
    n_free, owlqn_free : int
        Free coordinates expected now and at that point.
    """
    iters = float(owlqn_iters)
    if owlqn_free:
        iters *= max(1.0, n_free / owlqn_free) ** COUNT_GROWTH
    return iters


def _newton_estimate(n: int, m: int, C: int, n_free: int, newton_steps: float | None,
                     newton_over: float | None, data_crawls: bool) -> float:
    """:func:`newton_cost` scaled up by ``newton_over`` (never down), in OWL-QN iterations."""
    cost = newton_cost(n, m, C, n_free, newton_steps, data_crawls=data_crawls)
    return cost * max(1.0, float(newton_over)) if newton_over is not None else cost


HANDOVER = 3.0
"""A path point given to OWL-QN where Newton could solve it gets this many times Newton's
estimated cost of the point, in iterations (at least :data:`MIN_BUDGET`); beyond, Newton
takes the point over from where OWL-QN stands (:func:`owlqn_budget`). A point the default
gave Newton gets this many times OWL-QN's expected iterations, beyond which OWL-QN takes it
over (:func:`newton_budget`): with 1.5 (the cost at which the choice would have left Newton)
a held-out path where OWL-QN's count grew as ``N^1.2`` (1500 × 250 × 5 to 1e-3·λ_max) handed
a Newton point of 8 steps to OWL-QN, which then took 736 iterations (the path 4.5 s against
2.9 s on Newton; ``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``)."""
MIN_BUDGET = 100


def newton_budget(owlqn_iters: float | None, n_free: int, owlqn_free: int | None, *,
                  on_newton: bool) -> float | None:
    """The cost, in OWL-QN iterations, past which a Newton point the default chose hands over
    to OWL-QN (``newton(max_cost=...)``): :data:`HANDOVER` times OWL-QN's expected
    iterations (its count, grown as :func:`prefer_newton` grows it while on Newton), at
    least :data:`MIN_BUDGET`; None before OWL-QN has run.

    The estimate that chose Newton can miss by an order of magnitude where the model solve
    crawls: on held-out collinear draws at 1e-3·λ_max a point Newton entered at an estimate
    of 219 OWL-QN iterations took 11.8 s where OWL-QN's neighbours took 0.9-1.7 s (3900 ×
    390 × 10), and one estimated at 154 took 5.5 s, its neighbours 0.6 s (1800 × 220 × 20;
    ``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``). OWL-QN's own points have
    this bound already (:func:`owlqn_budget`).

    Parameters
    ----------
    owlqn_iters : float or None
        OWL-QN's iterations at the last point it solved.
    n_free : int
        Free coordinates expected at this point.
    owlqn_free : int or None
        Those expected where the count was taken.
    on_newton : bool
        The last point ended on Newton (the count is then grown).
    """
    if owlqn_iters is None:
        return None
    iters = grown_count(owlqn_iters, n_free, owlqn_free) if on_newton else float(owlqn_iters)
    return max(float(MIN_BUDGET), HANDOVER * iters)


def owlqn_budget(n: int, m: int, C: int, n_free: int, *, newton_steps: float | None = None,
                 newton_over: float | None = None, max_free: int | None = None,
                 data_crawls: bool = False) -> int | None:
    """Iterations OWL-QN gets at a point before Newton takes it over, or None (no Newton).

    The choice (:func:`prefer_newton`) prices OWL-QN by its count at the last point it
    solved; along a collinear path that count can be far below what a later point needs:
    a held-out 2207 x 355 x 3 path to 1e-5·λ_max went back to OWL-QN for one point (its count
    from the path's second point, 25) and ran it to ``max_iter`` (2,000 iterations, over half
    the path's time) without converging, where Newton solved the neighbouring points in
    34-41 steps. An OWL-QN point that costs ``HANDOVER`` times Newton's estimate has shown the
    choice wrong, whatever its count said; Newton then costs about its estimate more.

    Parameters
    ----------
    n, m, C, n_free : int
        As :func:`newton_cost`.
    newton_steps, newton_over : float, optional
        As :func:`prefer_newton`.
    max_free : int, optional
        Newton's limit on ``n_free`` (its (N, N) model's): above it, None, but for a model
        solved in data space (:func:`data_route`).
    data_crawls : bool
        As :func:`newton_cost`.
    """
    if max_free is not None and n_free > max_free and not data_route(n, C, n_free):
        return None
    est = _newton_estimate(n, m, C, n_free, newton_steps, newton_over, data_crawls)
    return max(MIN_BUDGET, int(HANDOVER * est + 0.5))


PROBE_EXPONENT = 0.4
"""The slow end of the growth of OWL-QN's iterations with the model's size, as a power of
``N`` (:func:`owlqn_probe`): from their first to their last point with OWL-QN forced they grew
as ``N^0.33`` (well separated), ``N^0.45`` (n ≪ d), ``N^0.57`` (post-ReLU low-rank, a
held-out 40-class draw), ``N^0.62-0.67`` (100 classes, collinear, two held-out collinear
draws) and ``N^0.91`` on one (``benchmarks/results/solver-costs-cpu-2026-12-05.txt``); the
choice grows a stale count with ``0.7`` (:data:`COUNT_GROWTH`)."""
PROBE_GROWTH = 2.0
"""The model must have grown this many times since OWL-QN's count before a probe."""


def owlqn_probe(n: int, m: int, C: int, n_free: int, owlqn_iters: float | None,
                owlqn_free: int | None, *, stay: float = 1.5, newton_steps: float | None = None,
                newton_over: float | None = None, data_crawls: bool = False) -> int | None:
    """Iterations to try OWL-QN for at a point that stays on Newton with a stale count, or
    None (stay on Newton).

    A path on Newton knows OWL-QN's iterations only from the last point OWL-QN solved,
    often at its sparse start, and :func:`prefer_newton` grows that count with the model as
    ``(N / N_then)^0.7``. Grown a hundredfold in ``N`` that guess is off by several times
    where the count grew slower: a held-out collinear path (2528 × 363 × 10, count 11 at
    N = 19) stayed on Newton to its end and took 7.3 s, 3.5 s with the probe
    (``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``; Newton forced took 9.3 s on
    its 30-λ path, OWL-QN forced 4.2 s: ``solver-costs-cpu-2026-12-05.txt``). Where the choice would
    change had the count grown at the slow end of the growth seen (:data:`PROBE_EXPONENT`) and the
    model has grown at least :data:`PROBE_GROWTH` times, OWL-QN is tried for as many
    iterations as Newton is estimated to cost at the point: converged within them, the point
    cost no more than Newton's and the count is fresh; otherwise Newton takes the point over
    from where OWL-QN stands (the path's hand-over, :func:`owlqn_budget`) and OWL-QN's count
    at this size is the larger of the budget and the grown count (:func:`grown_count`): the
    probe only said it is over the budget. Taken as the budget alone, it put the next point's
    Newton budget (:func:`newton_budget`) at 1.5 times Newton's own estimate, which a point
    on a held-out path then passed, to be finished by OWL-QN at several times Newton's cost
    (1500 × 250 × 5 to 1e-3·λ_max: 4.65 s against 2.92 s on Newton alone;
    ``benchmarks/results/solver-budgets-cpu-2026-12-05.txt``).

    Parameters
    ----------
    n, m, C, n_free : int
        As :func:`newton_cost`.
    owlqn_iters : float or None
        OWL-QN's iterations at the last point it solved.
    owlqn_free : int or None
        The free coordinates expected there.
    stay : float
        :func:`prefer_newton`'s ``stay``.
    newton_steps, newton_over : float, optional
        As :func:`prefer_newton`.
    data_crawls : bool
        As :func:`newton_cost`.
    """
    if owlqn_iters is None or not owlqn_free:
        return None
    grown = n_free / owlqn_free
    if grown < PROBE_GROWTH:
        return None
    est = _newton_estimate(n, m, C, n_free, newton_steps, newton_over, data_crawls)
    if est < stay * float(owlqn_iters) * grown ** PROBE_EXPONENT:
        return None
    return max(1, int(est + 0.5))
