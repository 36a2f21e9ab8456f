"""Coordinate descent for an elastic-net quadratic program given by its Gram matrix.

Solves

    min_u  ½ uᵀ Q u − qᵀ u + l1 Σ_j |u_j| + l2/2 ||u||²

for a symmetric positive semidefinite ``Q`` (N, N) float64: the subproblem of the proximal
Newton solver (:mod:`~sparse_probe.solvers.newton`), where ``Q`` is the loss's Hessian on the
free coordinates, with no further pass over the n examples.

Three kernels, the same updates (cyclic, exact 1-D minimization, glmnet's covariance form
``Qu`` kept up to date with one axpy per changed coordinate), the first one found taken:

- the project's own compiled sweeps (``sparse_probe.solvers._gram_cd``, C, built at
  install; ``Qu`` is kept across calls and the violation read off it after every sweep, so a
  sweep costs only the axpys of the coordinates that move, and nothing of scikit-learn is
  imported: importing it took 1.3-1.5 s here, a quarter of some whole paths);
- scikit-learn's compiled ``enet_coordinate_descent_gram`` (a private function of
  ``sklearn.linear_model._cd_fast``), where the extension was not built, called a few sweeps at
  a time with our own stopping rule between calls, its gap-safe screening off (our ``Q`` is no
  least-squares Gram, so the screening's duality gap would not be one);
- a numpy loop over coordinates, about a hundred times slower, used when neither is there (or
  its call signature changed; each compiled kernel is checked once per process against the
  numpy loop on a small problem).

``SPARSE_PROBE_GRAM_CD=sklearn`` or ``=numpy`` forces one of the last two.

Coordinate descent crawls where ``Q`` is nearly singular (exactly collinear features, where only
the ridge ``l2`` regularizes): on the collinear benchmark path the last, tight model solves of a
point ran into the 500-sweep cap, each about half a fresh Hessian's time (an ad hoc profile).
So where the sweeps still needed would pass a budget of about one Cholesky factorization's cost
(:func:`cd_sweep_budget`), :func:`enet_qp` switches to an active-set method from the CD iterate (:func:`active_set_qp`: the face's linear
system solved exactly, sign changes handled by a line search over the breakpoints, the
feature-sign search of Lee, Battle, Raina & Ng, NIPS 2006), which ends in a few factorizations
once the signs are about right; if it does not reach the tolerance, coordinate descent resumes.
Models of at most :data:`DIRECT_MAX` coordinates go to the active-set method first, and so do
the later solves of a model whose caller kept the method's factor (:class:`Faces`: a Newton
step on a reused model), which then solve their faces without factorizing anew.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sparse_probe.index_sets import unique
from sparse_probe.solvers.compiled import CheckDraws

__all__ = ["DIRECT_MAX", "SWEEP_BUDGET_CAP", "Faces", "QPWork", "active_set_qp", "cd_sweep_budget",
           "enet_qp", "qp_violation"]

log = logging.getLogger(__name__)

_KERNEL: list = []  # [(kind, callable or None)], decided on first use
_SCREEN_ARG = [True]  # the kernel takes ``do_screening`` (scikit-learn >= 1.8)


@dataclass
class QPWork:
    """The work of model solves, in counts no clock disturbs (summed over the solves given it).

    Attributes
    ----------
    stream, stream_cached : float
        Matrix entries read by memory-bound passes (coordinate descent's axpys, ``N`` per
        coordinate that moves, counted as ``N`` times the nonzeros per sweep; matrix-vector
        products; the gathers of faces and the copies of their factors), of models over
        :data:`CACHED_MAX` coordinates and of those within it: a sweep of a model that fits
        in the caches reads each entry several times faster
        (``benchmarks/measure_model_solve.py``).
    blas3 : float
        Multiply-adds of dense factorizations and multi-column triangular solves.
    """

    stream: float = 0.0
    stream_cached: float = 0.0
    blas3: float = 0.0

    def read(self, entries: float, N: int) -> None:
        """Count ``entries`` read from an (N, N) model's arrays."""
        if N <= CACHED_MAX:
            self.stream_cached += float(entries)
        else:
            self.stream += float(entries)


CACHED_MAX = 1448
""":class:`QPWork`'s bound between cached and streamed models: ``8 N²`` bytes = 16 MiB (one
sweep's time per entry grew 3-4x between N = 1,024 and 2,048 in
``benchmarks/results/model-solve-cpu-2026-12-03.txt``)."""


REFINE_SKIP = 1e-9
""":class:`Faces` refines a face solve once (one product with the model, two triangular solves)
until a refinement on its factor changes the solve by at most this share of its largest entry;
later solves on that factor skip it. The faces of the benchmark paths (collinear, deep
features) changed by at most 6e-12 of it (an ad hoc run over four paths), so the refinement only
re-read the model and the factor; an ill-conditioned face, whose correction is larger, keeps
being refined. A solve a little less exact costs no accuracy: :func:`active_set_qp` weighs
every move on the exact objective and reports the violation from an exact product."""

REFINE_ALWAYS = 64
"""Factors of at most this many entries are refined at every solve (a pass over them costs
little)."""

JOIN_TRIES = 6
"""Face solves :func:`active_set_qp` makes at most per iteration: while joining entries come out
of the face's minimizer with the wrong sign, those are turned away and the face solved again
(up to ``JOIN_TRIES - 2`` times), then the fallback (the largest violator, or none) is tried."""

JOIN_MIN = 8
"""The fewest joiners :func:`active_set_qp` asks for after an iteration that turned some away
(:func:`_join_cap`)."""

CARRY_ROWS = 0.25
"""Largest share of the model's N rows :func:`active_set_qp` reads to carry its candidates'
products ``Q w`` from ``Q u`` and ``Q d`` (:func:`_candidate_products`); where the entries
they set to zero are more, one product with all of them reads the whole model instead."""


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


def _cd_own(u: np.ndarray, l1: float, l2: float, Q: np.ndarray, q: np.ndarray,
            sweeps: int, fn, Qu: np.ndarray, tol: float = -1.0) -> tuple[float, int]:
    """Up to ``sweeps`` passes of the project's compiled kernel, in place on ``u`` and on
    ``Qu`` (``Q @ u``, kept up to date), stopping after the first pass whose violation is at
    most ``tol``; returns that :func:`qp_violation` (read off the kept ``Qu``) and the passes
    made."""
    viol, made = fn(u, Qu, Q, q, float(l1), float(l2), int(sweeps), float(tol))
    return viol, made


def _agrees(run) -> bool:
    """Whether ``run(u, l1, l2, Q, q, sweeps)`` matches the numpy loop on a small problem."""
    rs = CheckDraws(0)
    A = rs.standard_normal((30, 6))
    Q = A.T @ A / 30
    q = rs.standard_normal(6)
    u1, u2 = np.zeros(6), np.zeros(6)
    run(u1, 0.1, 0.01, Q, q, 50)
    _cd_numpy(u2, 0.1, 0.01, Q, q, 50)
    return bool(np.allclose(u1, u2, rtol=1e-9, atol=1e-12))


def _own_kernel():
    from sparse_probe.solvers._gram_cd import sweeps

    return sweeps, lambda u, l1, l2, Q, q, k: _cd_own(u, l1, l2, Q, q, k, sweeps, Q @ u)


def _sklearn_kernel():
    from sklearn.linear_model._cd_fast import enet_coordinate_descent_gram as raw

    return raw, lambda u, l1, l2, Q, q, k: _cd_sklearn(u, l1, l2, Q, q, k, raw)


#: The compiled kernels in order of preference: kind, loader (returns the function and its
#: call as the numpy loop's), the name a warning gives it.
_CANDIDATES = (("own", _own_kernel, "the compiled _gram_cd.sweeps"),
               ("sklearn", _sklearn_kernel, "scikit-learn's enet_coordinate_descent_gram"))


def _kernel() -> tuple[str, object]:
    """``(kind, fn)``: ``("own", sweeps)``, ``("sklearn", enet_coordinate_descent_gram)`` or
    ``("numpy", None)``; the first compiled one present that agrees with the numpy loop
    (``SPARSE_PROBE_GRAM_CD=sklearn`` skips the own kernel, ``=numpy`` both)."""
    if _KERNEL:
        return _KERNEL[0]
    choice = ("numpy", None)
    force = os.environ.get("SPARSE_PROBE_GRAM_CD")
    skip = {"numpy": ("own", "sklearn"), "sklearn": ("own",)}.get(force, ())
    for kind, load, name in _CANDIDATES:
        if kind in skip:
            continue
        try:
            fn, run = load()
            if _agrees(run):
                choice = (kind, fn)
                break
            log.warning("gram_cd: %s disagrees with the numpy loop; not used", name)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            log.debug("gram_cd: %s unavailable (%s)", name, exc)
    _KERNEL.append(choice)
    return choice


def _objective(Q: np.ndarray, q: np.ndarray, u: np.ndarray, l1: float, l2: float) -> float:
    """``½ uᵀQu − qᵀu + l1||u||₁ + l2/2||u||²``."""
    return _objectives(Q @ u, q, u, l1, l2)


def _objectives(QU: np.ndarray, q: np.ndarray, U: np.ndarray, l1: float, l2: float):
    """:func:`_objective` of ``U`` (N,), a float, or of each column of ``U`` (N, K), shape
    (K,), given ``QU = Q U``."""
    if U.ndim == 1:
        return float(0.5 * U @ QU - q @ U + l1 * np.abs(U).sum() + 0.5 * l2 * (U @ U))
    return 0.5 * (U * QU).sum(0) - q @ U + l1 * np.abs(U).sum(0) + 0.5 * l2 * (U * U).sum(0)


class Faces:
    """Exact solves of ``(Q_SS + l2 I) v = r`` for faces ``S`` of one QP, sharing a factor.

    One Cholesky factorization ``A0 = UᵀU`` of ``A0 = Q_TT + l2 I`` on a superset ``T``
    serves every face inside it: the entries of ``T`` outside ``S`` (``Z``) are held at zero by
    Lagrange multipliers, ``μ = (A0⁻¹)_ZZ⁻¹ (A0⁻¹ r)_Z``. With ``A0 = UᵀU`` and the columns
    ``y_z = U⁻ᵀ e_z`` (one forward triangular solve each, computed once and kept with their
    Gram matrix ``K = YᵀY``), ``(A0⁻¹)_ZZ = K_ZZ`` and ``(A0⁻¹ r)_Z = Y_Zᵀ U⁻ᵀ r``, and the
    solve is ``U⁻¹(U⁻ᵀ r − Y_Z μ)``: a face that differs from the last by a few entries costs
    two triangular solves with a vector and a few with its new columns, not a factorization.
    Entries outside ``T`` are appended to the factor (bordering, one triangular solve each),
    the kept columns extended by as many rows (replayed from the same starts, the slowest model
    solves of a held-out deep path took 1.19× less time than with the columns ``A0⁻¹ e_z``,
    two triangular solves each and dropped at every border:
    ``benchmarks/results/faces-kept-columns-cpu-2026-12-07.txt``); a face that leaves more
    than a quarter of ``T`` out is factorized anew. One step of iterative refinement follows
    (the faces of collinear features are ill-conditioned), until one on the factor changes
    nothing (:data:`REFINE_SKIP`).

    The factor outlives one solve: a caller that solves the same model again (a Newton step
    on a reused model) passes it to :func:`enet_qp`, which then starts from the active-set
    method on it, and :meth:`grown` carries it to a model with entries appended.
    """

    def __init__(self, Q: np.ndarray, l2: float, work: QPWork | None = None):
        self.Q, self.l2 = Q, l2
        self.work = QPWork() if work is None else work
        self.N = Q.shape[0]
        self.where = np.full(Q.shape[0], -1, dtype=np.int64)  # entry -> position in T
        self.T = np.zeros(0, dtype=np.int64)
        # the factor of A0 = Q_TT + l2 I, [[U, L], [0, U2]]: U of the last factorization's
        # entries, L and U2 of those bordered on since (None: none), so that a border
        # copies only the new columns, not the whole factor
        self.U: torch.Tensor | None = None
        self.L: torch.Tensor | None = None
        self.U2: torch.Tensor | None = None
        # the kept columns Fᵀ⁻¹ e_pos of the whole factor F (|T|, c), their Gram matrix YᵀY
        # (c, c) = A0⁻¹ on their positions, and each position's column in them
        self.Y: torch.Tensor | None = None
        self.K: torch.Tensor | None = None
        self.ycol: dict[int, int] = {}
        self.factorizations = 0
        # the last refinement on this factor changed its solve by at most REFINE_SKIP of it
        # (later solves on it skip the refinement; reset where the factor changes)
        self.accurate = False

    @property
    def factored(self) -> bool:
        """Whether a factor is held (an earlier solve made one)."""
        return self.U is not None

    def grown(self, Q: np.ndarray) -> Faces:
        """This factor for a model ``Q`` (N', N') whose leading (N, N) block is this one's
        model, the entries after it appended (:func:`~sparse_probe.solvers.newton._cover`):
        the factor and the kept columns ``Fᵀ⁻¹ e_z`` are of that block, so they hold unchanged."""
        if Q.shape[0] < self.N or Q.shape != (Q.shape[0], Q.shape[0]):
            raise ValueError(f"Faces.grown: model {Q.shape} does not extend ({self.N}, {self.N})")
        out = Faces(Q, self.l2, self.work)
        out.where[: self.N] = self.where
        out.T, out.U, out.L, out.U2 = self.T, self.U, self.L, self.U2
        out.Y, out.K, out.ycol = self.Y, self.K, dict(self.ycol)  # (replaced, never changed)
        out.factorizations = self.factorizations
        out.accurate = self.accurate
        return out

    def _gram(self, rows: np.ndarray, cols: np.ndarray, diag: bool) -> torch.Tensor:
        """``Q[rows][:, cols]`` as a float64 tensor, plus ``l2`` on the diagonal if ``diag``
        (rows and cols the same entries). Q is symmetric: the fewer of the two are gathered
        as whole rows (a border's ``Q[T, new]`` reads ``|new|`` rows of Q, not ``|T|``)."""
        few, many = (cols, rows) if cols.size < rows.size else (rows, cols)
        A = np.take(np.take(self.Q, few, 0), many, 1)
        A = torch.from_numpy(np.ascontiguousarray(A.T) if few is cols else A)
        self.work.read(float(few.size) * (self.Q.shape[1] + many.size), self.N)
        if diag:
            A.diagonal().add_(self.l2)
        return A

    def _factor(self, S: np.ndarray) -> bool:
        U, info = torch.linalg.cholesky_ex(self._gram(S, S, True), upper=True)
        self.factorizations += 1
        self.work.blas3 += float(S.size) ** 3 / 3
        self.where[:] = -1
        self.L = self.U2 = None
        self.accurate = False
        if int(info) != 0:
            self.U, self.T = None, np.zeros(0, dtype=np.int64)
            return False
        self.T, self.U = S.copy(), U
        self.Y = self.K = None
        self.ycol = {}
        self.where[S] = np.arange(S.size)
        return True

    def _forward(self, R: torch.Tensor, first: int = 0) -> torch.Tensor:
        """``Fᵀ⁻¹ R`` for the factor ``F`` (``A0 = FᵀF``), R of shape (|T|, k); with ``first``,
        R holds only the rows from that position on (the right side is zero above them, and so
        is the solution, whose rows from there on are returned): the solve starts there where
        that leaves a corner of at most a quarter of the factor's rows, and else runs on the
        whole factor with R padded with zeros. torch copies a triangular matrix sliced from
        the factor before it solves with it: at N = 3,000 (one thread) the corner from half
        the rows took 5.9 ms against 2.0 ms for the whole factor, from 90% 0.07 ms against 2.1
        (``benchmarks/results/faces-forward-cpu-2026-12-07.txt``); on a held-out collinear path
        the kept columns (:meth:`_keep`) were a third of the active-set method's time."""
        t = self.T.size
        if first and 4 * (t - first) > t:
            full = R.new_zeros((t, R.shape[1]))
            full[first:] = R
            return self._forward(full)[first:]
        t0 = self.U.shape[0]
        if first >= t0:  # all in the bordered block: zero on the last factorization's rows
            return torch.linalg.solve_triangular(self.U2.mT[first - t0:, first - t0:], R,
                                                 upper=False)
        y1 = torch.linalg.solve_triangular(self.U.mT[first:, first:], R[: t0 - first],
                                           upper=False)
        if self.L is None:
            return y1
        y2 = torch.linalg.solve_triangular(self.U2.mT, R[t0 - first:] - self.L[first:].mT @ y1,
                                           upper=False)
        return torch.cat([y1, y2])

    def _border(self, new: np.ndarray) -> bool:
        """Append the entries ``new`` to ``T`` and its factor: their columns of the factor,
        ``Fᵀ⁻¹ A0[T, new]`` and the Schur complement's factor; the factor of the last
        factorization is not copied."""
        k, t = new.size, self.T.size
        t0 = self.U.shape[0]
        X = self._forward(self._gram(self.T, new, False))  # (t, k): Fᵀ X = A0[T, new]
        S22 = self._gram(new, new, True) - X.mT @ X
        U22, info = torch.linalg.cholesky_ex(S22, upper=True)
        # the triangular solves, the Schur complement, its factor; the bordered columns'
        # copies (the last factorization's factor stays where it is)
        self.work.blas3 += t * t * k / 2 + t * k * k + k ** 3 / 3
        self.work.read(float(t0) * (t - t0 + k) + float(t - t0 + k) ** 2, self.N)
        if int(info) != 0:
            return False
        K = t - t0
        self.L = X[:t0] if self.L is None else torch.cat([self.L, X[:t0]], 1)
        U2 = torch.zeros((K + k, K + k), dtype=torch.float64)
        if K:
            U2[:K, :K] = self.U2
            U2[:K, K:] = X[t0:]
        U2[K:, K:] = U22
        self.U2, self.accurate = U2, False
        if self.Y is not None:  # the kept columns' new rows: Xᵀ y + U22ᵀ y_new = 0
            c = self.Y.shape[1]
            Ynew = -torch.linalg.solve_triangular(U22.mT, X.mT @ self.Y, upper=False)
            self.Y = torch.cat([self.Y, Ynew])
            self.K = self.K + Ynew.mT @ Ynew
            self.work.blas3 += float(k) * t * c + k * k * c / 2 + float(k) * c * c
        self.T = np.concatenate([self.T, new])
        self.where[new] = np.arange(t, t + k)
        return True

    def _backward(self, y: torch.Tensor) -> torch.Tensor:
        """``F⁻¹ y`` for the factor ``F`` (``A0 = FᵀF``), y of shape (|T|, k)."""
        t0 = self.U.shape[0]
        if self.L is None:
            return torch.linalg.solve_triangular(self.U, y, upper=True)
        x2 = torch.linalg.solve_triangular(self.U2, y[t0:], upper=True)
        x1 = torch.linalg.solve_triangular(self.U, y[:t0] - self.L @ x2, upper=True)
        return torch.cat([x1, x2])

    def _keep(self, pos: list[int]) -> None:
        """Add the columns ``Fᵀ⁻¹ e_p`` of the positions ``pos`` (in T) to the kept ones and
        their products to the Gram matrix. A column is zero above its position, so the solve
        is given the rows from the first one's on (:meth:`_forward` decides where it starts)."""
        t, k = self.T.size, len(pos)
        first = min(pos)
        E = torch.zeros((t - first, k), dtype=torch.float64)
        E[[p - first for p in pos], range(k)] = 1.0
        Ynew = torch.zeros((t, k), dtype=torch.float64)
        Ynew[first:] = self._forward(E, first)
        self.work.blas3 += float(t - first) ** 2 * k / 2
        if self.Y is None:
            self.Y, self.K = Ynew, Ynew.mT @ Ynew
        else:
            cross = self.Y.mT @ Ynew
            self.K = torch.cat([torch.cat([self.K, cross], 1),
                                torch.cat([cross.mT, Ynew.mT @ Ynew], 1)])
            self.Y = torch.cat([self.Y, Ynew], 1)
        self.work.blas3 += float(t) * k * self.Y.shape[1]
        for i, p in enumerate(pos):
            self.ycol[p] = self.Y.shape[1] - k + i

    def _times(self, w: torch.Tensor) -> torch.Tensor:
        """``A0 w`` (|T|,): one product with the model (no copy of ``Q_TT`` is kept)."""
        full = np.zeros(self.N)
        full[self.T] = w.numpy()
        self.work.read(float(self.N) * self.N, self.N)
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite w: solve() says so
            return torch.from_numpy((self.Q @ full)[self.T]) + self.l2 * w

    def _constrained(self, rT: torch.Tensor, Z: np.ndarray) -> torch.Tensor:
        """``argmin ½ wᵀA0w − rTᵀw`` subject to ``w_Z = 0`` (positions in T)."""
        t = self.T.size
        self.work.read(float(t) * t, self.N)  # two passes over the factor
        y = self._forward(rT[:, None])[:, 0]
        if Z.size == 0:
            return self._backward(y[:, None])[:, 0]
        missing = [int(z) for z in Z if int(z) not in self.ycol]
        if missing:
            self._keep(missing)
        idx = torch.as_tensor([self.ycol[int(z)] for z in Z])
        c = self.Y.shape[1]
        # μ = K_ZZ⁻¹ (A0⁻¹ r)_Z, (A0⁻¹ r)_Z = Y_Zᵀ y; then U⁻¹(y − Y_Z μ) (products with all kept
        # columns, μ zero outside Z: no copy of Y_Z)
        mu = torch.zeros(c, dtype=torch.float64)
        mu[idx] = torch.linalg.solve(self.K[idx][:, idx], (self.Y.mT @ y)[idx])
        w = self._backward((y - self.Y @ mu)[:, None])[:, 0]
        self.work.blas3 += 2.0 * Z.size ** 3 / 3
        self.work.read(2.0 * t * c, self.N)
        w[torch.from_numpy(Z)] = 0.0
        return w

    def solve(self, S: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
        """``v`` (|S|,) with ``(Q_SS + l2 I) v = rhs``, or None where the matrix is not
        numerically positive definite."""
        new = S[self.where[S] < 0] if self.U is not None else S
        refactor = self.U is None or 4 * new.size > S.size \
            or 4 * (self.T.size + new.size - S.size) > self.T.size + new.size
        if (refactor or (new.size and not self._border(new))) and not self._factor(np.sort(S)):
            return None
        pos = self.where[S]
        inS = np.zeros(self.T.size, dtype=bool)
        inS[pos] = True
        Z = np.flatnonzero(~inS)
        posT = torch.from_numpy(pos)
        rT = torch.zeros(self.T.size, dtype=torch.float64)
        rT[posT] = torch.from_numpy(rhs)
        w = self._constrained(rT, Z)
        if not self.accurate or self.T.size <= REFINE_ALWAYS:
            res = rT - self._times(w)  # refinement on the face (Z's residual: the multipliers')
            res[torch.from_numpy(Z)] = 0.0
            dw = self._constrained(res, Z)
            w = w + dw
            self.accurate = float(dw.abs().max()) <= REFINE_SKIP * float(w.abs().max())
        v = w[posT].numpy()
        return v if np.isfinite(v).all() else None


def _distinct(a: np.ndarray) -> np.ndarray:
    """The distinct entries of the 1-D float array ``a`` (no NaN), sorted: ``np.unique(a)``,
    whose first call in a process imports ``numpy.ma`` (7 ms of a fresh process's fit)."""
    s = np.sort(a)
    return s[np.append(True, s[1:] != s[:-1])]


def active_set_qp(Q: np.ndarray, q: np.ndarray, u0: np.ndarray, l1: float, l2: float, *,
                  tol: float, max_iter: int = 20, work: QPWork | None = None,
                  stop: Callable[[], bool] | None = None,
                  faces: Faces | None = None) -> tuple[np.ndarray, int, float]:
    """The elastic-net QP of :func:`enet_qp` by an active-set (feature-sign) method from ``u0``.

    Each iteration fixes a sign pattern ``θ``: the signs of the nonzero entries, and for the
    zero entries whose gradient exceeds ``l1`` the sign that lowers the objective (they join);
    it minimizes the quadratic ``½ uᵀ(Q + l2 I)u − qᵀu + l1 θᵀu`` on that face exactly (a
    Cholesky solve) and moves toward the minimizer as far as the objective says: the best of
    the minimizer, the points where an entry crosses zero (there the entry is set to zero),
    the first minimizer along the move with each crossing entry held at zero from its
    breakpoint on (:func:`_projected_path`; at N = 3,752 on a held-out collinear path it took
    a solve from 153 face solves to 34, the segment's best point dropping one entry a move)
    and the steps of 1, 1/2, 1/4, 1/8 toward the minimizer with every entry that crossed zero
    set to zero (from a far start these shed many entries at once).
    Joining entries whose minimizer has the wrong sign are turned away and the face solved
    again, while some still have it (:data:`JOIN_TRIES`); then none join (or, where the face
    itself is already solved, only the largest violator, whose minimizer then has the right
    sign). After an iteration that turned joiners away, the next asks only for the largest
    violators, twice as many as joined (:func:`_join_cap`). From a Newton step's start on
    correlated features most violators come out with the wrong sign: on a held-out deep path
    (4804 × 512 × 6 to 1e-3·λ_max) each iteration of the earlier rule (one round of turning
    away, then none) factorized the face of all ~1,300 violators and the face of the ~400 with
    the right sign, and then joined none, 0.55 s an iteration at N ≈ 3,000 that only moved the
    nonzeros. Every accepted move lowers the objective (on the face's orthant the objective
    is that quadratic), so no pattern repeats. The candidates' products ``Q w`` are carried
    from ``Q u`` and ``Q d`` where they set few entries to zero (:func:`_candidate_products`:
    one read of the model per move instead of two); a violation read off a carried product
    that meets ``tol`` is confirmed on ``Q @ u`` before the method stops, and the violation
    returned is always one of a product.

    Parameters
    ----------
    Q : ndarray of shape (N, N), float64
        Symmetric positive semidefinite.
    q : ndarray of shape (N,), float64
    u0 : ndarray of shape (N,), float64
        Start (not modified); a coordinate-descent iterate with about the right signs makes
        this end in one or two solves.
    l1, l2 : float
    tol : float
        Stop once :func:`qp_violation` is at most this.
    max_iter : int
        Face solves at most.
    work : QPWork, optional
        Counts the work done into it.
    stop : callable, optional
        Asked after each face solve: true stops there (the caller's work budget is spent).
    faces : Faces, optional
        The factor to solve the faces with, of this ``Q`` and ``l2`` (kept from an earlier
        solve, or new); default a new one.

    Returns
    -------
    u : ndarray of shape (N,)
        The best point reached (never worse than ``u0`` in the objective).
    solves : int
        Face solves made.
    violation : float
        :func:`qp_violation` at ``u``.
    """
    u = np.array(u0, dtype=np.float64, copy=True)
    solves = 0
    work = QPWork() if work is None else work
    faces = _faces_for(Q, l2, work, faces)
    N, NN = u.size, float(u.size) ** 2  # NN: one matrix-vector product (or a few at once)

    def exact(u):  # Q u by a product, and the gradient, violation and objective from it
        work.read(NN, N)
        Qu = Q @ u
        return Qu, Qu - q + l2 * u, qp_violation(Q, q, u, l1, l2, Qu=Qu), \
            _objectives(Qu, q, u, l1, l2)

    Qu, g, viol, f = exact(u)
    carried = False  # Qu carried from Q u and Q d, not a product
    cap = None
    while viol > tol or carried:
        if viol <= tol:  # met on a carried Qu: confirmed on an exact one
            Qu, g, viol, f = exact(u)
            carried = False
            if viol <= tol:
                break
        if solves >= max_iter or (solves and stop is not None and stop()):
            break
        nz = u != 0
        excess = np.abs(g) - l1
        viol_zero = ~nz & (excess > 0)
        face_done = not nz.any() or float(np.abs(g[nz] + l1 * np.sign(u[nz])).max()) <= tol
        # entries to join: every violator (the largest under the cap); then, while some get
        # the wrong sign, those that got the right one; else the largest violator where the
        # face itself is solved (then its sign is right), or none
        join = _largest(viol_zero, excess, cap)
        asked = int(join.sum())
        for attempt in range(JOIN_TRIES):
            theta = np.sign(u)
            theta[join] = -np.sign(g[join])
            S = np.flatnonzero(nz | join)
            v = faces.solve(S, q[S] - l1 * theta[S]) if S.size else np.zeros(0)
            solves += 1
            if v is None:
                break
            wrong = join[S] & (np.sign(v) != theta[S])
            if not wrong.any():
                break
            if attempt < JOIN_TRIES - 2:
                join = join.copy()
                join[S[wrong]] = False
            elif face_done:
                join = np.zeros_like(join)
                join[int(np.argmax(np.where(viol_zero, excess, -np.inf)))] = True
            else:
                join = np.zeros_like(join)
        if v is None or wrong.any() or S.size == 0:
            break
        cap = _join_cap(cap, asked, int(join.sum()))
        uS = u[S]
        d = v - uS
        # breakpoints: nonzero entries the move would carry across zero; the objective along
        # the segment is ½ t² dᵀAd + t gᵀd + l1 ||u + t d||₁ up to a constant (A = Q + l2 I)
        cross = (uS != 0) & (np.sign(v) != theta[S])
        tc = np.full(S.size, np.inf)
        tc[cross] = uS[cross] / (uS[cross] - v[cross])
        ts = _distinct(np.append(tc[cross], 1.0))
        ts = ts[(ts > 0) & (ts <= 1)]
        dfull = np.zeros(u.size)
        dfull[S] = d
        Qd = Q @ dfull
        curv = float(dfull @ Qd + l2 * (d @ d))
        work.read(NN, N)
        slope = float(g[S] @ d)
        path = uS[None, :] + ts[:, None] * d[None, :]
        path[np.abs(tc[None, :] - ts[:, None]) <= 1e-12 * ts[:, None]] = 0.0  # exact zeros
        phi = 0.5 * curv * ts ** 2 + slope * ts + l1 * (np.abs(path).sum(1) - np.abs(uS).sum())
        k = int(np.argmin(phi))
        # candidates (point, t): each is u + t·dfull with a few entries set to zero
        cands = []  # the best point on the segment where it descends, ...
        if phi[k] < 0:
            cands.append((u.copy(), float(ts[k])))
            cands[-1][0][S] = path[k]
        if cross.any():  # ... the first minimizer along the move projected onto the orthant
            cands.append(_projected_path(Q, l2, u, S, d, g[S] + l1 * theta[S], Qd[S] + l2 * d,
                                         tc, work))
        # ... and the minimizer projected onto the orthant (every entry that would cross zero
        # set to zero): where many entries leave the face, this drops them all at once
        for t in (1.0, 0.5, 0.25, 0.125) if cross.any() else ():
            w = u.copy()
            w[S] = uS + t * d
            w[S[np.sign(w[S]) != theta[S]]] = 0.0
            cands.append((w, t))
        j = -1
        if cands:
            Wc = np.stack([w for w, _ in cands], 1)
            QW, carry = _candidate_products(Q, Qu, Qd, u, dfull, Wc,
                                            np.array([t for _, t in cands]), work)
            fs = _objectives(QW, q, Wc, l1, l2)
            j = int(np.argmin(fs))  # the first of the smallest, as the candidates' order ranks
        if j < 0 or not fs[j] < f:  # no candidate, or no descent (rounding at the optimum)
            break
        u, f, Qu, carried = cands[j][0], float(fs[j]), QW[:, j], carry
        g = Qu - q + l2 * u
        viol = qp_violation(Q, q, u, l1, l2, Qu=Qu)
    if carried:  # the violation reported from an exact product
        viol = exact(u)[2]
    return u, solves, viol


def _candidate_products(Q: np.ndarray, Qu: np.ndarray, Qd: np.ndarray, u: np.ndarray,
                        dfull: np.ndarray, Wc: np.ndarray, ts: np.ndarray,
                        work: QPWork) -> tuple[np.ndarray, bool]:
    """``Q w`` for each of :func:`active_set_qp`'s candidates ``w`` at ``t``, each ``u + t·dfull``
    but for the entries ``Z_w`` it sets to zero: ``Q u + t·Q d + Q_{·Z} (w − u − t·dfull)_Z``
    (``Q`` symmetric: the rows ``Z``, all candidates' at once), ``N |Z|`` entries read instead
    of the model's ``N²``. Where ``|Z|`` is over :data:`CARRY_ROWS` of N, one product with all
    the candidates.

    On a held-out collinear path's slowest model (N = 3,332) the active-set method dropped
    one or two entries a face solve over 122 solves, and each candidates' product re-read the
    model: about a fifth of the method's time (an ad hoc profile).

    Parameters
    ----------
    Q : ndarray of shape (N, N)
    Qu, Qd : ndarray of shape (N,)
        ``Q u`` (exact or carried) and ``Q dfull``.
    u, dfull : ndarray of shape (N,)
        The point and the move.
    Wc : ndarray of shape (N, K)
        The candidates, one a column.
    ts : ndarray of shape (K,)
        Each candidate's ``t``.
    work : QPWork

    Returns
    -------
    QW : ndarray of shape (N, K)
        ``Q w`` per candidate, in order.
    carried : bool
        Whether ``QW`` was carried (rounding apart from ``Q @ W``; False: the product).
    """
    N = u.size
    fixes = []
    for j, t in enumerate(ts):
        base = u + t * dfull
        Z = np.flatnonzero(Wc[:, j] != base)
        fixes.append((Z, Wc[Z, j] - base[Z]))
    rows = unique(np.concatenate([Z for Z, _ in fixes]))  # np.unique imports numpy.ma
    if rows.size > CARRY_ROWS * N:
        work.read(float(N) ** 2, N)
        return Q @ Wc, False
    QW = Qu[:, None] + Qd[:, None] * ts[None, :]
    if rows.size:
        work.read(float(rows.size) * N, N)
        QZ = np.asarray(Q[rows])  # (|Z|, N): Q's columns Z, as Q is symmetric
        for j, (Z, e) in enumerate(fixes):
            if Z.size:
                QW[:, j] += e @ QZ[np.searchsorted(rows, Z)]
    return QW, True


def _largest(candidates: np.ndarray, excess: np.ndarray, cap: int | None) -> np.ndarray:
    """The ``cap`` candidates (bool, (N,)) of the largest ``excess`` (N,) as a mask; all of
    them where ``cap`` is None or not fewer."""
    if cap is None or int(candidates.sum()) <= cap:
        return candidates
    out = np.zeros_like(candidates)
    out[np.argpartition(np.where(candidates, -excess, np.inf), cap - 1)[:cap]] = True
    return out


def _join_cap(cap: int | None, asked: int, joined: int) -> int | None:
    """The joiners :func:`active_set_qp` asks for at its next iteration, after this one asked
    for ``asked`` (under ``cap``; None: no cap) and ``joined`` of them joined: twice those that
    joined (at least :data:`JOIN_MIN`) where some were turned away, twice the cap where all
    it allowed joined, else unchanged."""
    if joined < asked:
        return max(JOIN_MIN, 2 * joined)
    if cap is not None and asked >= cap:
        return 2 * cap
    return cap


def _faces_for(Q: np.ndarray, l2: float, work: QPWork, faces: Faces | None) -> Faces:
    """``faces`` counting into ``work`` where it is a factor of this ``Q`` and ``l2``; a new
    one where None; a ``ValueError`` for another model's."""
    if faces is None:
        return Faces(Q, l2, work)
    if faces.Q is not Q or faces.l2 != l2:
        raise ValueError("gram_cd: the Faces given is of another model (Q or l2)")
    faces.work = work
    return faces


def _projected_path(Q: np.ndarray, l2: float, u: np.ndarray, S: np.ndarray, d: np.ndarray,
                    gS: np.ndarray, AdS: np.ndarray, tc: np.ndarray,
                    work: QPWork) -> np.ndarray:
    """The first minimizer of the QP along the move ``u_S + t d`` (t in [0, 1]) projected onto
    the orthant ``θ``: each entry that would cross zero is held at zero from its breakpoint
    ``tc`` on (the generalized Cauchy point of projected methods: Moré & Toraldo, "Algorithms
    for bound constrained quadratic programming problems", Numer. Math. 55, 1989).

    On the orthant the objective is the quadratic ``½ wᵀAw − qᵀw + l1 θᵀw`` (``A = Q + l2
    I``), so along each piece between two breakpoints it is a parabola in ``t``; its slope and
    curvature are carried from piece to piece, each breakpoint reading the entries of ``A``
    between its entry and those held before it (``O(K²)`` for K breakpoints passed, no pass
    over ``Q``). Where the move's straight segment stops at its first breakpoint (one entry
    leaves per face solve), this path lets every entry that crosses before the minimizer
    leave at once.

    Parameters
    ----------
    Q, l2, u
        The QP's model, ridge and current point (N,).
    S : ndarray of shape (K0,), int
        The face's entries; ``d`` (K0,) the move on them.
    gS, AdS : ndarray of shape (K0,)
        The orthant's gradient ``A u − q + l1 θ`` (θ the face's signs) and ``A d`` on ``S``.
    tc : ndarray of shape (K0,)
        Each entry's breakpoint (``inf`` for those that do not cross).
    work : QPWork

    Returns
    -------
    w : ndarray of shape (N,)
        The point reached.
    t : float
        Where it stopped along the move: ``w`` is ``u + t d`` but for the entries held at zero.
    """
    order = np.argsort(tc, kind="stable")
    order = order[tc[order] <= 1.0]
    slope, curv = float(gS @ d), float(d @ AdS)
    t_prev, t_end = 0.0, 1.0
    held: list[int] = []  # positions in S held at zero, in breakpoint order
    held_t: list[float] = []
    for j in order:
        tb = float(tc[j])
        if slope >= 0:
            t_end = t_prev
            break
        if curv > 0 and t_prev - slope / curv <= tb:
            t_end = t_prev - slope / curv
            break
        # the slope just before tb, then the direction loses entry j
        slope_b = slope + curv * (tb - t_prev)
        if held:
            row = np.asarray(Q[S[j], S[held]])  # K entries (no product with Q)
            dh = d[held]
            g_j = gS[j] + tb * AdS[j] - float(row @ ((tb - np.asarray(held_t)) * dh))
            Ad_j = AdS[j] - float(row @ dh)
        else:
            g_j = gS[j] + tb * AdS[j]
            Ad_j = AdS[j]
        dj = d[j]
        slope = slope_b - dj * g_j
        curv = curv - 2.0 * dj * Ad_j + dj * dj * (Q[S[j], S[j]] + l2)
        held.append(int(j))
        held_t.append(tb)
        t_prev = tb
    else:
        if slope >= 0:
            t_end = t_prev
        elif curv > 0:
            t_end = min(1.0, t_prev - slope / curv)
    work.read(float(len(held)) ** 2, Q.shape[0])
    w = u.copy()
    w[S] = u[S] + t_end * d
    gone = S[order[tc[order] <= t_end]]
    w[gone] = 0.0
    return w, float(t_end)


def cd_sweep_budget(N: int) -> int:
    """Coordinate-descent sweeps :func:`enet_qp` may expect to need before it tries
    :func:`active_set_qp` instead: about one Cholesky factorization of the (N, N) model
    (``N³/3`` flops, BLAS-3) against one late sweep (``N²`` multiply-adds where every
    nonzero still moves, memory-bound): ``16 + min(N/16, SWEEP_BUDGET_CAP)``.

    ``benchmarks/measure_model_solve.py`` (results/model-solve-cpu-2026-12-03.txt, two runs)
    times both: the ratio grows at least as ``N/16`` while the model fits in the caches
    (98-131 at N = 1,024), then stops growing (19-82 from N = 2,048 to 4,096, one or two
    threads): beyond the caches a sweep streams the whole model from memory, ``8 N²`` bytes,
    so ``N/16`` (128-256 sweeps there) let coordinate descent crawl for several
    factorizations' time on collinear models.
    """
    return 16 + min(N // 16, SWEEP_BUDGET_CAP)


SWEEP_BUDGET_CAP = 64
""":func:`cd_sweep_budget`'s largest ``N/16`` term: the sweeps one Cholesky factorization
costs once the model no longer fits in the caches (its docstring)."""


STOP_CHUNK = 8
"""Sweeps between two checks of :func:`enet_qp`'s ``stop`` at most (otherwise 64): a sweep of
a model beyond the caches costs about a hundred thousand coordinate updates' reads."""

DIRECT_MAX = 512
"""Models of at most this many coordinates go to :func:`active_set_qp` first: a factorization
costs at most ``512³/3`` flops there (a few coordinate-descent sweeps' worth), and where it
solves the model no coordinate-descent kernel is needed at all (where the project's own was
not built, the first use of scikit-learn's imports scikit-learn: over a second here)."""


def enet_qp(Q: np.ndarray, q: np.ndarray, u0: np.ndarray, l1: float, l2: float, *,
            tol: float, max_sweeps: int = 500, direct_max: int = DIRECT_MAX,
            work: QPWork | None = None,
            stop: Callable[[], bool] | None = None,
            faces: Faces | None = None) -> tuple[np.ndarray, int, float]:
    """Minimize ``½ uᵀQu − qᵀu + l1||u||₁ + l2/2||u||²`` by coordinate descent from ``u0``
    (small models, and models whose ``faces`` hold a factor: :func:`active_set_qp` first).

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
    direct_max : int
        Up to this N the active-set method runs first; coordinate descent only where it
        does not reach ``tol``.
    work : QPWork, optional
        Counts the work done into it (:class:`QPWork`).
    stop : callable, optional
        Asked after each chunk of sweeps and each face solve: true returns the iterate
        reached (every pass lowers the objective; a caller's work budget is spent).
    faces : Faces, optional
        The active-set method's factor for this ``Q`` and ``l2``, kept by the caller across
        solves of one model: one that holds a factor (an earlier solve needed the method)
        sends this solve to the method first, its factorization reused; the method's
        factor is left in it either way.

    Returns
    -------
    u : ndarray of shape (N,)
    sweeps : int
        Passes made (0 where the active-set method alone solved it).
    violation : float
        :func:`qp_violation` at ``u``.
    """
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    q = np.ascontiguousarray(q, dtype=np.float64)
    u = np.array(u0, dtype=np.float64, copy=True)
    if Q.shape != (u.size, u.size) or q.shape != u.shape:
        raise ValueError(f"enet_qp: Q {Q.shape}, q {q.shape} and u0 {u.shape} disagree")
    done, chunk = 0, 2
    budget = cd_sweep_budget(u.size)
    work = QPWork() if work is None else work
    N = u.size
    tried = False
    faces = _faces_for(Q, l2, work, faces)
    # small, or the model's last solve crawled into the active-set method: face solves first
    if u.size <= direct_max or faces.factored:
        tried = True
        u, _, viol = active_set_qp(Q, q, u, l1, l2, tol=tol, work=work, stop=stop, faces=faces)
        if viol <= tol or (stop is not None and stop()):
            return u, 0, viol
    else:  # a Newton model's start (the current weights) is never its solution: no check
        viol = float("inf")
    kind, fn = _kernel()
    Qu = None  # the own kernel's Q @ u, kept across its calls
    while viol > tol and done < max_sweeps and not (done and stop is not None and stop()):
        k = min(chunk, max_sweeps - done)
        before = viol
        if kind == "own":
            if Qu is None:
                Qu = Q @ u
                work.read(float(N) * N, N)
            viol, k = _cd_own(u, l1, l2, Q, q, k, fn, Qu, tol)
            # a sweep reads a row of Q for each coordinate that moves: the nonzeros
            work.read(float(k) * N * max(int(np.count_nonzero(u)), 1), N)
            if viol <= tol:  # the kept product drifts by rounding: confirm on an exact one
                Qu = Q @ u
                work.read(float(N) * N, N)
                viol = qp_violation(Q, q, u, l1, l2, Qu=Qu)
            if k == 0:  # met tol on the kernel's reading of an exact Qu, not on numpy's
                break
        else:
            if kind == "sklearn":
                _cd_sklearn(u, l1, l2, Q, q, k, fn)
            else:
                _cd_numpy(u, l1, l2, Q, q, k)
            viol = qp_violation(Q, q, u, l1, l2)
            work.read((k + 1.0) * N * N, N)  # these kernels read all of Q every sweep
        done += k
        # check often at first, rarely once it runs long (often where a budget may stop it)
        chunk = min(2 * chunk, 64 if stop is None else STOP_CHUNK)
        if viol <= tol or tried or done < 8 or not before < float("inf"):
            continue
        # crawling (the sweeps still needed at the last chunk's contraction would pass the
        # budget): solve the face exactly instead, once
        rate = (viol / before) ** (1.0 / k) if 0 < viol < before else 1.0
        if rate >= 1.0 or done + np.log(tol / viol) / np.log(rate) > budget:
            tried = True
            u, _, viol = active_set_qp(Q, q, u, l1, l2, tol=tol, work=work, stop=stop,
                                       faces=faces)
            Qu = None
    if Qu is not None and viol > tol:  # stopped by max_sweeps: the exact violation
        viol = qp_violation(Q, q, u, l1, l2)
    if viol == float("inf"):  # no sweep made (max_sweeps 0)
        viol = qp_violation(Q, q, u, l1, l2)
    return u, done, viol
