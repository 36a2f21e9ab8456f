"""Coordinate descent for an elastic-net quadratic program given by its Gram matrix.

Solves

    min_u  ½ uᵀ Q u − qᵀ u + l1 Σ_j |u_j| + l2/2 ||u||²

for a symmetric positive semidefinite ``Q`` (N, N) float64: the subproblem of the proximal
Newton solver (:mod:`~sparse_probe.solvers.newton`), where ``Q`` is the loss's Hessian on the
free coordinates, with no further pass over the n examples.

Two kernels, the same updates (cyclic, exact 1-D minimization, glmnet's covariance form
``Qu`` kept up to date with one axpy per changed coordinate):

- scikit-learn's compiled ``enet_coordinate_descent_gram`` (a private function of
  ``sklearn.linear_model._cd_fast``), called a few sweeps at a time with our own stopping rule
  between calls, its gap-safe screening off (our ``Q`` is no least-squares Gram, so the
  screening's duality gap would not be one);
- a numpy loop over coordinates, about a hundred times slower, used when that function is
  missing or its call signature changed (checked once per process against the numpy loop on a
  small problem), or when ``SPARSE_PROBE_GRAM_CD=numpy`` is set.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np

__all__ = ["enet_qp", "qp_violation"]

log = logging.getLogger(__name__)

_KERNEL: list = []  # [callable or None], decided on first use
_SCREEN_ARG = [True]  # the kernel takes ``do_screening`` (scikit-learn >= 1.8)


def qp_violation(Q: np.ndarray, q: np.ndarray, u: np.ndarray, l1: float, l2: float,
                 Qu: np.ndarray | None = None) -> float:
    """Largest entry of the minimum-norm subgradient of the QP at ``u`` (gradient units)."""
    g = (Q @ u if Qu is None else Qu) - q + l2 * u
    pg = np.where(u > 0, g + l1, np.where(u < 0, g - l1,
                                          np.sign(g) * np.maximum(np.abs(g) - l1, 0.0)))
    return float(np.abs(pg).max()) if pg.size else 0.0


def _cd_numpy(u: np.ndarray, l1: float, l2: float, Q: np.ndarray, q: np.ndarray,
              sweeps: int) -> None:
    """``sweeps`` cyclic passes over all coordinates, in place on ``u``."""
    Qu = Q @ u
    diag = Q.diagonal() + l2
    for _ in range(sweeps):
        for j in range(u.size):
            a = diag[j]
            if a <= 0:
                continue
            uj = u[j]
            v = q[j] - Qu[j] + (a - l2) * uj
            new = np.sign(v) * max(abs(v) - l1, 0.0) / a
            if new != uj:
                Qu += (new - uj) * Q[j]
                u[j] = new


def _cd_sklearn(u: np.ndarray, l1: float, l2: float, Q: np.ndarray, q: np.ndarray,
                sweeps: int, fn) -> None:
    """``sweeps`` passes of scikit-learn's compiled Gram coordinate descent, in place on ``u``.

    Its own stopping tests (a relative coordinate change, then a duality gap that assumes
    ``Q = XᵀX``, ``q = Xᵀy``) are switched off with a tolerance of -1e300 and a dummy ``y``:
    it makes exactly ``sweeps`` passes, and its convergence warning is expected and muted.
    """
    rng = np.random.RandomState(0)
    y = np.ones(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _SCREEN_ARG[0]:
            try:
                fn(u, l1, l2, Q, q, y, sweeps, -1e300, rng, False, False, do_screening=False)
                return
            except TypeError:  # scikit-learn before gap-safe screening: no such argument
                _SCREEN_ARG[0] = False
        fn(u, l1, l2, Q, q, y, sweeps, -1e300, rng, False, False)


def _kernel():
    """The compiled kernel when it is there and agrees with the numpy loop, else None."""
    if _KERNEL:
        return _KERNEL[0]
    fn = None
    if os.environ.get("SPARSE_PROBE_GRAM_CD", "") != "numpy":
        try:
            from sklearn.linear_model._cd_fast import enet_coordinate_descent_gram as raw

            rs = np.random.default_rng(0)
            A = rs.standard_normal((30, 6))
            Q = A.T @ A / 30
            q = rs.standard_normal(6)
            u1, u2 = np.zeros(6), np.zeros(6)
            _cd_sklearn(u1, 0.1, 0.01, Q, q, 50, raw)
            _cd_numpy(u2, 0.1, 0.01, Q, q, 50)
            if np.allclose(u1, u2, rtol=1e-9, atol=1e-12):
                fn = raw
            else:
                log.warning("gram_cd: scikit-learn's enet_coordinate_descent_gram disagrees "
                            "with the numpy loop; using the numpy loop")
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            log.debug("gram_cd: compiled kernel unavailable (%s); numpy loop", exc)
    _KERNEL.append(fn)
    return fn


def enet_qp(Q: np.ndarray, q: np.ndarray, u0: np.ndarray, l1: float, l2: float, *,
            tol: float, max_sweeps: int = 500) -> tuple[np.ndarray, int, float]:
    """Minimize ``½ uᵀQu − qᵀu + l1||u||₁ + l2/2||u||²`` by coordinate descent from ``u0``.

    Parameters
    ----------
    Q : ndarray of shape (N, N), float64
        Symmetric positive semidefinite (C-contiguous).
    q : ndarray of shape (N,), float64
    u0 : ndarray of shape (N,), float64
        Start (not modified).
    l1, l2 : float
        L1 and ridge weights (``l1 > 0`` or ``l2 > 0``, or Q positive definite).
    tol : float
        Stop once the largest subgradient entry (:func:`qp_violation`) is at most this.
    max_sweeps : int
        Cyclic passes over all coordinates at most.

    Returns
    -------
    u : ndarray of shape (N,)
    sweeps : int
        Passes made.
    violation : float
        :func:`qp_violation` at ``u``.
    """
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    q = np.ascontiguousarray(q, dtype=np.float64)
    u = np.array(u0, dtype=np.float64, copy=True)
    if Q.shape != (u.size, u.size) or q.shape != u.shape:
        raise ValueError(f"enet_qp: Q {Q.shape}, q {q.shape} and u0 {u.shape} disagree")
    fn = _kernel()
    done, chunk = 0, 2
    viol = qp_violation(Q, q, u, l1, l2)
    while viol > tol and done < max_sweeps:
        k = min(chunk, max_sweeps - done)
        if fn is not None:
            _cd_sklearn(u, l1, l2, Q, q, k, fn)
        else:
            _cd_numpy(u, l1, l2, Q, q, k)
        done += k
        chunk = min(2 * chunk, 64)  # check often at first, rarely once it runs long
        viol = qp_violation(Q, q, u, l1, l2)
    return u, done, viol
