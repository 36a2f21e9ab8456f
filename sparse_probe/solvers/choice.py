"""Which solver a path point gets by default for the elementwise elastic net: OWL-QN or
proximal Newton, from what each solver *measured* at the last points it solved.

The two cost very different things (``bench_path.py --geometry`` problems, 1 thread):

- OWL-QN: its iteration count, which the geometry decides (about 10 per λ on well-separated
  features, 25–160 on collinear ones, 30–100 on post-ReLU low-rank ones, 40–60 with n ≪ d),
  times the seconds of one iteration: about ``4 n m C`` multiply-adds in two products, plus
  the L-BFGS two-loop and per-iteration overhead, which dominate where n is small (n ≪ d).
- Proximal Newton (:mod:`~sparse_probe.solvers.newton`): 2–7 iterations per λ whatever the
  geometry, but about one fresh Hessian per point, ``n N²/2`` multiply-adds for ``N`` free
  coordinates, plus per iteration two products over the working set and the model's
  coordinate descent (``~N²`` per sweep).

A constant exchange rate between the two (the first version of this module: a Newton point
costs ``4 + 0.17 N²/(m C)`` OWL-QN iterations, fitted within ~40% on three geometries) was
wrong by 2–5× where OWL-QN's iterations are overhead-bound (n ≪ d), and picked OWL-QN at
points where Newton was 3–5× faster. So the choice compares *seconds*, predicted from each
solver's own measurements on this path (:class:`PathTimes`, updated after every point):

- OWL-QN at the new point: its last iteration count times its seconds per iteration,
  scaled by the working set's size (an iteration is linear in ``m``);
- Newton at the new point: its seconds per unit of :func:`newton_size` (the constant model's
  shape in multiply-adds, plus a fixed cost per point) times that size at the new point.

Each rate is the lower median of the solver's last three points (``_RECENT``): on a busy
machine one point's seconds scatter by 2× and more.

Before Newton has run, its seconds are the constant model's estimate in OWL-QN iterations
(:func:`newton_cost`) times OWL-QN's measured seconds per iteration: that rule, right within
~40% on the well-separated and collinear geometries, decides where Newton is first tried.
Before OWL-QN has run once, OWL-QN is chosen: Newton's first use in a process imports
scikit-learn's coordinate descent (about 1.4 s here), which is worth it only where Newton
will keep winning. OWL-QN's iteration count grows along a path, so an old count understates
it: once on Newton the path stays there until Newton's estimate exceeds ``stay`` times
OWL-QN's (on the collinear path OWL-QN ran at 3 of the last 7 points without it, needing
103–142 iterations each where its old count said ~50); then OWL-QN runs again and its
count is refreshed. While on Newton that old count is also grown with the square root of
the free coordinates since it was measured (:func:`owlqn_seconds`): unscaled, a count from
the sparse start of the collinear path sent one point of its dense end to OWL-QN (75–93
iterations, ~1 s, where Newton takes 4–7). Off Newton the count is fresh and not grown
(grown there, it sent the current geometry to Newton from its second point: 9.1 s against
2.8 s). Above ``max_free`` free coordinates Newton would hand over to OWL-QN
anyway: OWL-QN is chosen.

Everything here is pure (no clocks): the caller measures and passes the seconds in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["PathTimes", "newton_cost", "newton_seconds", "newton_size", "owlqn_seconds",
           "prefer_newton"]


def newton_cost(n: int, m: int, C: int, n_free: int) -> float:
    """Estimated cost of one path point with proximal Newton, in OWL-QN iterations (the
    constant model, used until Newton has been measured).

    Parameters
    ----------
    n, m, C : int
        Examples, working-set features, classes.
    n_free : int
        Free coordinates expected in the Newton model (weights plus the C biases).
    """
    if n <= 0 or m <= 0 or C <= 0:
        raise ValueError(f"newton_cost: n, m and C must be positive, got {n}, {m}, {C}")
    return 4.0 + 0.17 * n_free * n_free / (m * C)


_RECENT = 3
"""Seconds-per-unit rates are the lower median of the solver's last this many points: a busy
machine slows single measurements down by 2–10× (a process descheduled for a while once made
a Newton point read 10× its neighbours and, averaged in, sent the rest of the wide path to
OWL-QN at 2.3× the time), and a lucky Newton point (no fresh Hessian) reads fast."""


def _push(recent: tuple[float, ...], value: float) -> tuple[float, ...]:
    return (*recent, value)[-_RECENT:]


def _median_low(values: tuple[float, ...]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


_POINT_WORK = 6e7
"""A Newton point's fixed cost in multiply-adds (its Python and small products: ~15 ms here
against ~2.5e-10 s per multiply-add of its large points, on the collinear and the n ≪ d
path alike). Without it the first, tiny Newton points (~0.03 s at 40 free coordinates)
extrapolated to 2–3× the measured seconds of the next ones, and a collinear path stayed on
OWL-QN from its third point on (23 s against 11 s)."""


def newton_size(n: int, m: int, C: int, n_free: int) -> float:
    """The work a Newton point's seconds are proportional to, in multiply-adds:
    :func:`newton_cost` times an OWL-QN iteration's ``n m C`` (a fixed part of ~4 products
    over the working set, and its Hessian's ``0.17 n N²``), plus ``_POINT_WORK``."""
    return n * (4.0 * m * C + 0.17 * float(n_free) ** 2) + _POINT_WORK


@dataclass(frozen=True)
class PathTimes:
    """What each solver measured at the path points it solved (empty: not yet run).

    Attributes
    ----------
    owlqn_iters : int or None
        OWL-QN's iterations at its last point.
    owlqn_rates : tuple of float
        OWL-QN's seconds per iteration per working-set feature at its last points that
        iterated (at most ``_RECENT``).
    owlqn_free : int or None
        The free coordinates (nonzero weights and violators) at OWL-QN's last point.
    newton_rates : tuple of float
        Newton's seconds per multiply-add of :func:`newton_size` at its last points.
    """

    owlqn_iters: int | None = None
    owlqn_rates: tuple[float, ...] = ()
    owlqn_free: int | None = None
    newton_rates: tuple[float, ...] = ()

    def after_owlqn(self, iters: int, seconds: float, m: int,
                    n_free: int | None = None) -> PathTimes:
        """This record updated with an OWL-QN point: ``iters`` iterations in ``seconds`` on
        ``m`` working-set features, ``n_free`` free coordinates (None: unknown)."""
        rates = self.owlqn_rates
        if iters > 0 and m > 0 and seconds > 0:
            rates = _push(rates, seconds / (iters * m))
        return replace(self, owlqn_iters=int(iters), owlqn_rates=rates, owlqn_free=n_free)

    def after_newton(self, seconds: float, n: int, m: int, C: int, n_free: int) -> PathTimes:
        """This record updated with a Newton point: ``seconds`` on ``n`` examples, ``m``
        working-set features, ``C`` classes and ``n_free`` free coordinates."""
        return replace(self, newton_rates=_push(self.newton_rates,
                                                seconds / newton_size(n, m, C, n_free)))


def owlqn_seconds(times: PathTimes, m: int, n_free: int | None = None) -> float | None:
    """Predicted seconds of OWL-QN at a point with ``m`` working-set features (None: OWL-QN
    has not been measured).

    With ``n_free`` (given for a stale count, see :func:`prefer_newton`) the last iteration
    count grows with ``sqrt(n_free / owlqn_free)`` (never shrinks): along the paths OWL-QN's
    iterations grew about as ``N^0.5`` (n ≪ d: 5 → 64 as N went 25 → 3,463) to ``N^0.7``
    (collinear: 4 → 107 as N went 13 → 1,555)."""
    if times.owlqn_iters is None or not times.owlqn_rates:
        return None
    iters = float(max(times.owlqn_iters, 1))
    if n_free is not None and times.owlqn_free:
        iters *= max(1.0, n_free / times.owlqn_free) ** 0.5
    return iters * _median_low(times.owlqn_rates) * m


def newton_seconds(times: PathTimes, n: int, m: int, C: int, n_free: int) -> float | None:
    """Predicted seconds of proximal Newton at a point (None: neither solver measured).

    Parameters
    ----------
    times : PathTimes
    n, m, C : int
        Examples, working-set features, classes.
    n_free : int
        Free coordinates expected in the Newton model (weights plus the C biases).
    """
    if times.newton_rates:
        return _median_low(times.newton_rates) * newton_size(n, m, C, n_free)
    if not times.owlqn_rates:
        return None
    return newton_cost(n, m, C, n_free) * _median_low(times.owlqn_rates) * m


def prefer_newton(times: PathTimes, n: int, m: int, C: int, n_free: int, *,
                  on_newton: bool = False, stay: float = 1.5,
                  max_free: int | None = None) -> bool:
    """Whether proximal Newton is expected to be faster than OWL-QN at this path point.

    Parameters
    ----------
    times : PathTimes
        The solvers' last measurements on this path.
    n, m, C, n_free : int
        As :func:`newton_seconds`.
    on_newton : bool
        The last point used Newton: it stays unless estimated ``stay`` times slower than
        OWL-QN (hysteresis against an old, low OWL-QN count).
    stay : float
    max_free : int, optional
        Newton's own limit on free coordinates (above it, it would hand over to OWL-QN).
    """
    if max_free is not None and n_free > max_free:
        return False
    # on Newton, OWL-QN's count is stale (from an earlier, sparser point): grown with N
    owl = owlqn_seconds(times, m, n_free if on_newton else None)
    newt = newton_seconds(times, n, m, C, n_free)
    if owl is None or newt is None:
        return False
    return newt < (stay if on_newton else 1.0) * owl
