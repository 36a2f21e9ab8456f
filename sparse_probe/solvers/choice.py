"""Which solver a path point gets by default for the elementwise elastic net: OWL-QN or
proximal Newton, from cheap signals of the problem.

The two cost very different things (measured on the ``bench_path.py --geometry`` problems,
1 thread, in units of one OWL-QN iteration, i.e. about ``4 n m C`` multiply-adds plus its
per-iteration overhead):

- OWL-QN: its iteration count, which the geometry decides: about 10 per λ on well-separated
  features, 25–160 on collinear ones, 30–100 on post-ReLU low-rank ones, 40–60 with n ≪ d.
- Proximal Newton (:mod:`~sparse_probe.solvers.newton`): 2–7 iterations per λ whatever the
  geometry (with a Hessian reused while it contracts well), but a fresh Hessian costs
  ``n N²/2`` for ``N`` free coordinates (against ``4 n m C`` for an OWL-QN iteration) and the
  coordinate descent on the model ``~N²`` per sweep. Per-λ times of both solvers (1 thread,
  30-λ paths of the collinear, current and wide geometries, 15 points from λ 5 to 29) fitted
  ``4 + 0.17 N² / (m C)`` OWL-QN iterations within about 40%, at n = 500 and n = 10,000
  alike.

:func:`prefer_newton` compares the two, with OWL-QN's iteration count taken from the last path
point it solved (it grows along a path, so an old count understates it: once on Newton the
path stays there until Newton's estimate exceeds ``stay`` times that count; then OWL-QN runs
again and its count is refreshed). Before OWL-QN has run once, OWL-QN is chosen: Newton's
first use in a process imports scikit-learn's coordinate descent (about 1.4 s here), which
is worth it only where Newton will keep winning. (Newton at the first, tiny points of the
current geometry's path cost 4.1 s against 2.6 s for the whole path in a bench run for that
reason alone.)
"""

from __future__ import annotations

__all__ = ["newton_cost", "prefer_newton"]


def newton_cost(n: int, m: int, C: int, n_free: int) -> float:
    """Estimated cost of one path point with proximal Newton, in OWL-QN iterations.

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


def prefer_newton(n: int, m: int, C: int, n_free: int, owlqn_iters: float | None, *,
                  on_newton: bool = False, stay: float = 1.5) -> bool:
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
    """
    if owlqn_iters is None:
        return False
    return newton_cost(n, m, C, n_free) < (stay if on_newton else 1.0) * owlqn_iters
