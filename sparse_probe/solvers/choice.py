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
solver's own last measurement (:class:`PathTimes`, updated after every point):

- OWL-QN at the new point: its last iteration count times its last seconds per iteration,
  scaled by the working set's size (an iteration is linear in ``m``);
- Newton at the new point: its measured seconds per Hessian multiply-add times its measured
  fresh Hessians per point (the model carried from the last point often serves a whole
  point) times ``n N²/2``, plus its measured other seconds (products and coordinate
  descent) per free coordinate times ``N``; running averages over its points, as one
  point's seconds scatter by up to 2× on a busy machine.

Before Newton has run, its seconds are the constant model's estimate in OWL-QN iterations
(:func:`newton_cost`) times OWL-QN's measured seconds per iteration: that rule, right within
~40% on the well-separated and collinear geometries, decides where Newton is first tried.
Before OWL-QN has run once, OWL-QN is chosen: Newton's first use in a process imports
scikit-learn's coordinate descent (about 1.4 s here), which is worth it only where Newton
will keep winning. OWL-QN's iteration count grows along a path, so an old count understates
it: once on Newton the path stays there until Newton's estimate exceeds ``stay`` times
OWL-QN's (on the collinear path OWL-QN ran at 3 of the last 7 points without it, needing
103–142 iterations each where its old count said ~50); then OWL-QN runs again and its
count is refreshed. Above ``max_free`` free coordinates Newton would hand over to OWL-QN
anyway: OWL-QN is chosen.

Everything here is pure (no clocks): the caller measures and passes the seconds in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["PathTimes", "newton_cost", "newton_seconds", "owlqn_seconds", "prefer_newton"]


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


_SMOOTH = 0.5
"""Weight of the newest point in Newton's running averages: one point's seconds scatter by
up to 2× on a busy machine (and its iteration count, 1–8, with it)."""


def _ema(old: float | None, new: float) -> float:
    return new if old is None else (1.0 - _SMOOTH) * old + _SMOOTH * new


@dataclass(frozen=True)
class PathTimes:
    """What each solver measured at the path points it solved (None: not yet run).

    Attributes
    ----------
    owlqn_iters : int or None
        OWL-QN's iterations at its last point.
    owlqn_it_seconds : float or None
        OWL-QN's seconds per iteration per working-set feature at its last point that
        iterated.
    newton_hessian_rate : float or None
        Newton's seconds per Hessian multiply-add (``n N²/2`` per fresh Hessian), a running
        average over the points that built one.
    newton_hessians : float or None
        Newton's fresh Hessians per point (in units of ``n N²/2`` at that point's ``N``), a
        running average: the carried model often serves a whole point.
    newton_other_rate : float or None
        Newton's seconds outside fresh Hessians per free coordinate, a running average.
    """

    owlqn_iters: int | None = None
    owlqn_it_seconds: float | None = None
    newton_hessian_rate: float | None = None
    newton_hessians: float | None = None
    newton_other_rate: float | None = None

    def after_owlqn(self, iters: int, seconds: float, m: int) -> PathTimes:
        """This record updated with an OWL-QN point: ``iters`` iterations in ``seconds`` on
        ``m`` working-set features."""
        rate = self.owlqn_it_seconds
        if iters > 0 and m > 0 and seconds > 0:
            rate = seconds / (iters * m)
        return replace(self, owlqn_iters=int(iters), owlqn_it_seconds=rate)

    def after_newton(self, seconds: float, n: int, n_free: int, hessian_seconds: float,
                     hessian_work: float) -> PathTimes:
        """This record updated with a Newton point on ``n`` examples and ``n_free`` free
        coordinates: ``seconds`` in all, of which ``hessian_seconds`` built fresh Hessians of
        ``hessian_work`` multiply-adds in all."""
        rate = self.newton_hessian_rate
        if hessian_work > 0 and hessian_seconds > 0:
            rate = _ema(rate, hessian_seconds / hessian_work)
        n_free = max(int(n_free), 1)
        return replace(
            self, newton_hessian_rate=rate,
            newton_hessians=_ema(self.newton_hessians, hessian_work / (0.5 * n * n_free ** 2)),
            newton_other_rate=_ema(self.newton_other_rate,
                                   max(seconds - hessian_seconds, 0.0) / n_free))


def owlqn_seconds(times: PathTimes, m: int) -> float | None:
    """Predicted seconds of OWL-QN at a point with ``m`` working-set features (None: OWL-QN
    has not been measured)."""
    if times.owlqn_iters is None or times.owlqn_it_seconds is None:
        return None
    return max(times.owlqn_iters, 1) * times.owlqn_it_seconds * m


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
    if times.newton_other_rate is not None:
        hessian = 0.5 * n * float(n_free) ** 2  # multiply-adds of one fresh Hessian
        rate = times.newton_hessian_rate or 0.0
        return rate * (times.newton_hessians or 0.0) * hessian + times.newton_other_rate * n_free
    if times.owlqn_it_seconds is None:
        return None
    return newton_cost(n, m, C, n_free) * times.owlqn_it_seconds * m


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
    owl = owlqn_seconds(times, m)
    newt = newton_seconds(times, n, m, C, n_free)
    if owl is None or newt is None:
        return False
    return newt < (stay if on_newton else 1.0) * owl
