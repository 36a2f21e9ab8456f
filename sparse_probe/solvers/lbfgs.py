"""L-BFGS inverse-Hessian products in compact form (two matrix-vector products each).

The compact inverse BFGS matrix of Byrd, Nocedal & Schnabel ("Representations of
quasi-Newton matrices and their use in limited memory methods", Math. Programming 63, 1994):
with the last h curvature pairs as the rows of ``S`` and ``Y`` (h, p), ``R`` the upper
triangle of ``S Y^T`` (``R_ij = s_i.y_j``, i <= j), ``D`` its diagonal and the scaling
``γ = s.y / y.y`` of the newest pair,

    H q = γ q + S^T u - γ Y^T v,   v = R^{-1} (S q),
    u = R^{-T} ((D + γ Y Y^T) v - γ Y q).

A product costs one (2h, p)·(p,) product, two h×h triangular solves (the small matrices
are refreshed when a pair is added) and one (p, 2h)·(2h,) update, instead of the two-loop
recursion's 4h vector operations (Nocedal & Wright, Algorithm 7.4; this equals it). The pairs
can be stored in float32: a search direction needs no more precision, and the two passes over
the buffer per direction are then half the bytes.

With an initial matrix ``H0 = τ M`` instead of ``γ I`` (:meth:`LBFGSMemory.set_initial`,
e.g. the per-class blocks of :mod:`~sparse_probe.solvers.class_blocks`; ``τ = s.y / y.M y``
of the newest pair, as ``γ`` is for ``I``) the same formula holds with ``γ Y`` replaced by
``τ Z``, ``Z = M Y`` kept beside the pairs, and ``γ Y Y^T`` by ``τ Y Z^T``:

    H q = τ M q + S^T u - τ Z^T v,   v = R^{-1} (S q),
    u = R^{-T} ((D + τ Y Z^T) v - τ Z q)

(Byrd, Nocedal & Schnabel eq. 2.17).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CPU_PAIRS", "LBFGSMemory", "history_for"]


CPU_PAIRS = 20
"""Most curvature pairs OWL-QN keeps on CPU (:func:`history_for`'s budget allows 80 at most
sizes; the GPU keeps that). Each pair costs two reads of a vector per direction and update,
and past ~20 the older pairs bought no fewer iterations where the path crawls: held-out
collinear paths without the class blocks took 17.6 s (7,953 OWL-QN iterations) with 80 pairs
and 11.1 s (5,200) with 20 (3395 × 253 × 20), 3.6 s (914) and 2.6 s (766) (2390 × 387 × 40);
on the bench's own geometry 0.80 and 0.78 s (283 and 359 iterations; ad hoc runs, one each;
``benchmarks/results/lbfgs-pairs-cpu-2026-12-05.txt`` has the library's rule side by side)."""


def history_for(p: int, *, max_pairs: int = 80, min_pairs: int = 10,
                budget_bytes: int = 64 * 2**20, itemsize: int = 4) -> int:
    """Pairs to keep for vectors of length ``p``: as many as ``budget_bytes`` of buffer
    (2 vectors of ``itemsize`` bytes per element and pair) allow, within
    ``[min_pairs, max_pairs]``.

    More pairs cut iterations along the path, where the memory is carried from one λ to the
    next (the curvature of the loss barely changes between neighbouring λ). Each direction
    reads the buffer twice, so its cost is bounded with the memory.
    """
    return int(min(max_pairs, max(min_pairs, budget_bytes // (2 * itemsize * max(p, 1)))))


class LBFGSMemory:
    """The last ``history`` curvature pairs and the products with their inverse Hessian.

    The pairs live in one ring buffer ``(2 history, p)`` (steps in the first half, gradient
    changes in the second) written in place, so that ``S q`` and ``Y q`` are one product and
    the update one more; the small h×h matrices are kept in age order and mapped to buffer
    slots with an index.

    Parameters
    ----------
    history : int
        Pairs kept (h).
    storage_dtype : torch.dtype, optional
        Dtype of the stored pairs (default: that of the first pair). The inner products
        ``s.y`` and ``y.y`` of a new pair are taken in the pair's own dtype.
    """

    def __init__(self, history: int = 10, storage_dtype: torch.dtype | None = None):
        self.history = history
        self.storage_dtype = storage_dtype
        self._SY: torch.Tensor | None = None  # (2 history, p): s rows, then y rows
        self.slots: list[int] = []  # buffer slot of each pair, oldest first
        self.SY = np.zeros((0, 0))  # s_i . y_j in age order, (h, h)
        self.YY = np.zeros((0, 0))  # y_i . y_j
        self._small: tuple | None = None  # R, diag(R), YY (float64 tensors), slot order
        self.ridge: float | None = None  # the owner's note of the ridge weight in the y's
        self.initial = None  # M (an object with apply(Q)), or None: γ I
        self._Z: torch.Tensor | None = None  # (history, p): M y per slot, with ``initial``
        self.YZ = np.zeros((0, 0))  # y_i . M y_j in age order
        self.blocks = None  # the owner's last initial matrix, for its reuse (owlqn)

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def dim(self) -> int | None:
        """Length p of the stored vectors (None before the first pair)."""
        return None if self._SY is None else int(self._SY.shape[1])

    @property
    def gamma(self) -> float | None:
        """``s.y / y.y`` of the newest pair (the initial inverse-Hessian scaling), if any."""
        return float(self.SY[-1, -1] / self.YY[-1, -1]) if self.slots else None

    def clear(self) -> None:
        """Drop the pairs (the initial matrix stays)."""
        self.slots = []
        self.SY = np.zeros((0, 0))
        self.YY = np.zeros((0, 0))
        self.YZ = np.zeros((0, 0))
        self._Z = None
        self._small = None

    def set_initial(self, initial) -> None:
        """Use ``initial`` (an object whose ``apply(Q)`` returns ``M q`` for each row of
        ``Q``, (p,) or (h, p); ``M`` symmetric positive definite) for the initial inverse
        Hessian ``τ M`` instead of ``γ I``, or ``γ I`` again for None. ``M y`` of the pairs
        kept is computed once here, a new pair's in :meth:`push`."""
        self.initial = initial
        self._Z = None
        self.YZ = np.zeros((0, 0))
        if initial is not None and self.slots:
            self._z_live()
        self._refresh_small()

    def initial_changed(self, cols: torch.Tensor, apply_cols) -> None:
        """The initial matrix changed on the coordinates ``cols`` only, and couples them with
        no others (a block-diagonal ``M`` whose blocks on ``cols`` changed):
        ``apply_cols(Q)`` returns its product with rows ``Q`` (h, len(cols)) on those
        coordinates. Updates ``Z = M Y`` on them and ``Y Z^T`` by the change."""
        if self.initial is None or not self.slots or self._Z is None:
            return
        H = self.history
        live = torch.as_tensor(self.slots, device=self._SY.device)
        Ysub = self._SY[H + live][:, cols]
        Zl = self._Z[live]
        Zold = Zl[:, cols]
        Znew = apply_cols(Ysub).to(self._Z.dtype)
        Zl[:, cols] = Znew
        self._Z[live] = Zl
        d = (Ysub.double() @ (Znew.double() - Zold.double()).T).cpu().numpy()
        self.YZ = self.YZ + 0.5 * (d + d.T)
        self._refresh_small()

    def _z_live(self) -> None:
        """``Z = M Y`` and ``Y Z^T`` for the live pairs (after ``initial`` or the y's
        changed)."""
        H = self.history
        live = torch.as_tensor(self.slots, device=self._SY.device)
        Y = self._SY[H + live]
        Z = self.initial.apply(Y).to(self._SY.dtype)
        self._Z = torch.zeros((H, self._SY.shape[1]), dtype=self._SY.dtype,
                              device=self._SY.device)
        self._Z[live] = Z
        YZ = (Y.double() @ Z.double().T).cpu().numpy()
        self.YZ = 0.5 * (YZ + YZ.T)

    def push(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Add the pair (step ``s``, gradient change ``y``) of shape (p,) unless its curvature
        ``s.y`` is not safely positive; drop the oldest beyond ``history``. Returns whether
        it was added."""
        sy, yy = float(s @ y), float(y @ y)
        if not (sy > 0 and sy > 1e-16 * yy):
            return False
        H = self.history
        if self._SY is None or self._SY.shape[1] != s.shape[0]:
            # zeros: slots not in use get zero coefficients, and 0 * garbage could be NaN
            self._SY = torch.zeros((2 * H, s.shape[0]), dtype=self.storage_dtype or s.dtype,
                                   device=s.device)
            self.clear()
        if len(self.slots) == H:
            slot = self.slots.pop(0)
            self.SY, self.YY = self.SY[1:, 1:], self.YY[1:, 1:]
            self.YZ = self.YZ[1:, 1:]
        else:  # a free slot (not always the next one: add_to_y may drop pairs)
            slot = min(set(range(H)).difference(self.slots))
        old = self.slots
        h = len(old) + 1
        SY = np.zeros((h, h))
        YY = np.zeros((h, h))
        SY[:-1, :-1], YY[:-1, :-1] = self.SY, self.YY
        if old:  # one product with the whole buffer, then the live slots
            col = (self._SY @ y.to(self._SY.dtype)).double().cpu().numpy()
            SY[:-1, -1] = col[old]  # s_i . y_new: the upper triangle (i <= j) is all we use
            YY[:-1, -1] = YY[-1, :-1] = col[H + np.asarray(old)]
        SY[-1, -1], YY[-1, -1] = sy, yy
        self._SY[slot], self._SY[H + slot] = s, y
        if self.initial is not None:
            z = self.initial.apply(y.to(self._SY.dtype))
            if self._Z is None:
                self._Z = torch.zeros_like(self._SY[:H])
            self._Z[slot] = z
            YZ = np.zeros((h, h))
            YZ[:-1, :-1] = self.YZ
            yz = (self._SY[H:] @ z).double().cpu().numpy()  # y_i . M y_new
            YZ[:-1, -1] = YZ[-1, :-1] = yz[old]
            YZ[-1, -1] = float(y.double() @ z.double())
            self.YZ = YZ
        self.slots = [*old, slot]
        self.SY, self.YY = SY, YY
        self._refresh_small()
        return True

    def resize(self, history: int) -> None:
        """Keep at most ``history`` pairs from now on: the newest ones where there are more,
        all of them where the memory grows (the products with the pairs kept are those of a
        memory that was given only them)."""
        if history == self.history:
            return
        keep = min(len(self.slots), history)
        if self._SY is not None:
            H = self.history
            live = torch.as_tensor(self.slots[len(self.slots) - keep:], dtype=torch.long,
                                   device=self._SY.device)
            buf = self._SY.new_zeros((2 * history, self._SY.shape[1]))
            buf[:keep], buf[history : history + keep] = self._SY[live], self._SY[H + live]
            if self._Z is not None:
                Z = self._Z.new_zeros((history, self._Z.shape[1]))
                Z[:keep] = self._Z[live]
                self._Z = Z
            self._SY = buf
            drop = len(self.slots) - keep
            self.SY, self.YY = self.SY[drop:, drop:], self.YY[drop:, drop:]
            if self.YZ.size:
                self.YZ = self.YZ[drop:, drop:]
        self.slots = list(range(keep))
        self.history = history
        self._refresh_small()

    def embed(self, index: np.ndarray | torch.Tensor, p: int) -> None:
        """Move the pairs into a larger space of length ``p``: entry ``i`` of every stored
        vector goes to ``index[i]``, the other entries are zero. For a problem that gained
        coordinates (features joining a working set): the pairs keep their curvature
        information on the old coordinates (``s.y`` and ``y.y`` are unchanged) and say
        nothing about the new ones, which get the scaled identity."""
        if self._SY is None:
            return
        buf = self._SY.new_zeros((self._SY.shape[0], p))
        buf[:, torch.as_tensor(index, device=buf.device)] = self._SY
        self._SY = buf
        self.set_initial(None)  # an H0 of the smaller space: its owner sets a new one

    def add_to_y(self, delta: float) -> None:
        """Replace every pair's ``y`` by ``y + delta * s``: the gradient changes of a smooth
        part whose ridge weight moved by ``delta`` (the next point of a path). Pairs whose
        curvature would no longer be safely positive are dropped with all older ones. The
        initial matrix is dropped (``γ I`` again) as in :meth:`embed`."""
        if not self.slots or delta == 0:
            return
        H = self.history
        live = torch.as_tensor(self.slots, device=self._SY.device)
        S = self._SY[live]
        Y = self._SY[H + live].add_(S, alpha=delta)
        self._SY[H + live] = Y
        SYm = (S @ Y.T).double().cpu().numpy()
        YYm = (Y @ Y.T).double().cpu().numpy()
        keep = np.diag(SYm) > np.maximum(0.0, 1e-16 * np.diag(YYm))
        if not keep.all():  # keep the newest consecutive run of good pairs
            first = int(np.flatnonzero(~keep)[-1]) + 1
            SYm, YYm = SYm[first:, first:], YYm[first:, first:]
            self.slots = self.slots[first:]
        self.SY, self.YY = SYm, YYm
        self.set_initial(None)  # H0 held the old ridge weight: its owner sets a new one

    def _refresh_small(self) -> None:
        """Refresh the small matrices ``apply`` uses (torch float64, age order)."""
        if not self.slots:
            self._small = None
            return
        dev = self._SY.device
        R = torch.as_tensor(np.triu(self.SY), device=dev)
        YY = self.YZ if self.initial is not None else self.YY
        self._small = (R, torch.diagonal(R).clone(), torch.as_tensor(YY, device=dev),
                       torch.as_tensor(self.slots, device=dev))

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        """``H q`` for q of shape (p,) (requires at least one pair), in q's dtype."""
        if self.initial is not None:
            return self._apply_initial(q)
        g, H = self.gamma, self.history
        R, Rdiag, YY, order = self._small
        ab = (self._SY @ q.to(self._SY.dtype)).to(torch.float64)
        a, b = ab[order, None], ab[H + order, None]  # S q and Y q in age order, (h, 1)
        v = torch.linalg.solve_triangular(R, a, upper=True)
        u = torch.linalg.solve_triangular(R.T, Rdiag[:, None] * v + g * (YY @ v) - g * b,
                                          upper=False)
        coef = torch.zeros(2 * H, dtype=torch.float64, device=ab.device)  # unused slots: 0
        coef[order], coef[H + order] = u[:, 0], -g * v[:, 0]
        return torch.add((self._SY.T @ coef.to(self._SY.dtype)).to(q.dtype), q, alpha=g)

    def _apply_initial(self, q: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` with the initial matrix ``H0`` (module docstring)."""
        H = self.history
        R, Rdiag, YZ, order = self._small
        tau = self.tau
        qs = q.to(self._SY.dtype)
        a = (self._SY[:H] @ qs).to(torch.float64)[order, None]  # S q, (h, 1)
        b = (self._Z @ qs).to(torch.float64)[order, None]  # Z q = Y M q
        v = torch.linalg.solve_triangular(R, a, upper=True)
        u = torch.linalg.solve_triangular(R.T, Rdiag[:, None] * v + tau * (YZ @ v) - tau * b,
                                          upper=False)
        cs = torch.zeros(H, dtype=torch.float64, device=a.device)
        cz = torch.zeros(H, dtype=torch.float64, device=a.device)
        cs[order], cz[order] = u[:, 0], -tau * v[:, 0]
        out = self._SY[:H].T @ cs.to(self._SY.dtype) + self._Z.T @ cz.to(self._SY.dtype)
        return out.to(q.dtype) + tau * self.initial.apply(q)

    @property
    def tau(self) -> float:
        """``s.y / y.M y`` of the newest pair: the initial matrix's scaling (``H0 = τ M``)."""
        return float(self.SY[-1, -1] / self.YZ[-1, -1])
