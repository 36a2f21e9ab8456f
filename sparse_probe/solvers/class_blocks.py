"""Per-class blocks of the Hessian as the initial matrix of OWL-QN's L-BFGS model.

For the mean multinomial cross-entropy with the ridge weight ``l2``, the Hessian's block of
class k (its m weights and its bias, ``x̃ = [x, 1]``) is

    B_k = (1/n) Σ_i p_ik (1 − p_ik) x̃_i x̃_iᵀ + r_k diag(1, …, 1, 0),

``r_k`` the ridge weight ``l2``, at least :data:`FLOOR` times the block's mean weight diagonal,
and the blocks between two classes are ``−(1/n) Σ_i p_ik p_il x̃_i x̃_iᵀ``. The inverse of the
block-diagonal part, ``M = blockdiag(B_1⁻¹, …, B_C⁻¹)``, scaled by ``τ = s.y / y.M y`` of the
newest curvature pair, replaces L-BFGS's scaled identity ``γ I`` as the initial inverse Hessian
``H0 = τ M`` (the compact form with a general ``H0``: Byrd, Nocedal & Schnabel,
"Representations of quasi-Newton matrices and their use in limited memory methods", Math.
Programming 63, 1994, eq. 2.17; :mod:`~sparse_probe.solvers.lbfgs`). It carries each class's
own feature correlations (strong in deep features), which a scaled identity cannot and a few
dozen pairs learn slowly; the pairs then correct the coupling between classes, weak where the
probability mass is spread over many classes. This is the class-by-class curvature glmnet's
multinomial solver works with (Friedman, Hastie & Tibshirani, "Regularization paths for
generalized linear models via coordinate descent", J. Stat. Softw. 2010, section 4), used here
as a preconditioner. Left out, the couplings between classes make ``M`` underestimate the
curvature of moves that take mass from one class to another (by up to 2×): the unscaled ``M``
overshot, and each iteration took 2.2 line-search trials instead of 1.1 on a 1,000-class path;
``τ`` took them back to 1.1.

Only the weights that could move at the solve's start and still can (nonzero, or at zero
with a nonzero pseudo-gradient) keep their couplings; each other weight gets its own
curvature (its diagonal entry) only, and the classes whose set shrank get new inverses at
that iteration (:meth:`ClassBlocks.set_free`). A weight held at zero must not lend the free
ones its correlations: with exactly collinear columns one of a pair sits at zero while the inverse
of their joint block is ~1/l2 along their difference, and directions along it, clipped by
the orthant projection, stalled OWL-QN 800× over its tolerance (the collinear 30-class test).

The blocks are estimated on all examples (evenly spaced subsamples of 4,096 of 5,000 doubled
the iterations on 1,000 classes: there a class's block rests on its few own examples) and
reused for :data:`REUSE` solves on the same columns, or extended to the columns that joined
them at the same weights (the working set grows by appending: 6 of the 100-class bench path's
9 estimates were of a grown set; ``class-blocks-extend-cpu-2026-12-05.txt``). Measured side
by side: ``benchmarks/results/class-blocks-cpu-2026-12-05.txt``.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

__all__ = ["COUNT_GROWTH_CAP", "LONG_GAIN", "LONG_SHARE", "PAIRS", "ClassBlocks", "blocks_paid",
           "blocks_pay", "expected_count", "long_blocks"]

PAIRS = 10
"""Curvature pairs OWL-QN's L-BFGS keeps on CPU while the blocks are its initial matrix (the
fewest :func:`~sparse_probe.solvers.lbfgs.history_for` gives; otherwise at most
:data:`~sparse_probe.solvers.lbfgs.CPU_PAIRS`, 80 before; a GPU keeps the budget's). The
blocks hold each class's curvature, so the pairs only correct the couplings between classes,
and each pair costs ``M y`` to keep up whenever a block changes. With 80, 20 and 10 pairs a
held-out collinear 3014 × 52 × 70 path took 11.4, 3.9 and 3.4 s (1,473, 1,858 and 1,750
OWL-QN iterations); the 1,000-class bench row 29.9 / 29.1 / 28.2 s, 1,000 classes at
n = 5,000 12.4 / 10.0 / 10.1 s, 100 classes 3.1 / 2.8 / 2.7 s (ad hoc runs, best of one or
two, all pairs capped; ``benchmarks/results/lbfgs-pairs-cpu-2026-12-05.txt`` has the
library's rule side by side)."""

REUSE = 8
"""Solves that may reuse one estimate of the blocks (on the same working-set columns, with
their own ridge weight and free weights): the probabilities move little between neighbouring
path points, and the pairs correct what they moved."""

PAY_ITERATIONS = 32
"""The blocks are estimated where that costs at most this many OWL-QN iterations' products
(:func:`blocks_pay`): they saved 5-10 iterations per point where points took 15-50."""

FLOOR = 0.1
"""Each weight's diagonal entry gets at least this share of its block's mean weight diagonal
(the ridge weight where that is larger): exactly collinear free columns leave a block
singular but for ``l2``, and the inverse's ~1/l2 along their difference gave directions the
line search cut 4.5 times per iteration on a collinear 70-class draw (3014 × 52, seed
505989: the default path 13.8 s; with 0.01 and 0.1 here 9.2 and 9.0 s; OWL-QN alone with
0.1, 0.3, 1.0: 8.1, 9.3, 12.2 s), the 1,000- and 100-class paths within their noise (ad hoc
runs)."""

DOWNDATE_SHARE = 0.125
"""A class that loses at most this share of the weights it kept (:meth:`ClassBlocks.set_free`)
gets its inverse from the old one (:meth:`ClassBlocks._drop`, ``(m+1)² |D|`` multiply-adds for
``|D|`` weights lost), else a new factorization (``(m+1)³``)."""

BLOCK_FLOATS = 1 << 23
"""float32 entries of one row block of the pairwise products ``x̃_i x̃_j`` (32 MiB)."""

MAX_ENTRIES = 1 << 21
"""Largest ``C (m + 1)²`` the blocks may take (float64: 16 MiB)."""

SINGLE_APPLY = True
"""On CPU the products ``M q`` (:meth:`ClassBlocks.apply`, two per OWL-QN iteration) read the
inverses rounded to float32 (:attr:`ClassBlocks.inv32`: half the bytes, read from memory each
time once the logits' passes have evicted them) and take ``q`` rounded so too, one numpy
product per class block: ``M`` is then the float32 inverse, symmetric positive definite, whose
rounding (~1e-7 of each product) a search direction does not need. Torch's float64 einsum took
1.5-2.4x as long a vector and 2.1-6.8x for the 10 pairs' rows, in cache or not
(``benchmarks/measure_class_blocks.py``, ``results/class-blocks-single-cpu-2026-12-07.txt``;
inside the 100-class bench path 0.43 against 0.25 ms a product, ad hoc)."""

KEEP_WEIGHTS = 1 << 23
"""Largest ``n C`` for which the blocks keep their weights ``p(1-p)`` (float32: 32 MiB) to
extend the estimate to columns that join (:meth:`ClassBlocks._extend`). Above it every new
working set is estimated afresh."""

MIN_CLASSES = 20
"""Fewest classes the blocks are used for. The blocks between classes are left out, and with
few classes they are large (with two, ``p_1 p_2 = p_1 (1 − p_1)``: as large as the classes'
own): on the 10-class bench paths the blocks made one OWL-QN point take 16 iterations
instead of 8 (``current``) and sent the choice to Newton points earlier, 2.2x slower
(``benchmarks/results/class-blocks-cpu-2026-12-05.txt``)."""


def blocks_pay(n: int, m: int, C: int, expected_iters: float | None = None) -> bool:
    """Whether a solve on ``n`` examples, ``m`` working-set features and ``C`` classes uses the
    class blocks: at least :data:`MIN_CLASSES` classes, and blocks within
    :data:`MAX_ENTRIES` and cheaper to estimate and invert (``n (m+1)(m+2)/2 C`` and ``(m+1)³
    C`` multiply-adds, the Cholesky factor and the inverse from it, once per :data:`REUSE`
    solves at most) than :data:`PAY_ITERATIONS` of OWL-QN's iterations (two ``n m C``
    products each): at n = 1,000 ``m`` up to 103, at n ≫ m up to 124; or than
    :data:`LONG_SHARE` of the ``expected_iters`` the solve is expected to take (the caller's
    count from the last path point OWL-QN solved), where that is more.

    The inverses cost the same at any ``n``: on a held-out 154 × 97 path with 40 classes
    (``heldout-sweep-seed5602-cpu-2026-12-07.txt``) they took most of the blocks' set-up (an
    ad hoc profile), and the path ran 1.6x as fast without the blocks
    (``class-blocks-small-n-cpu-2026-12-07.txt``)."""
    if C < MIN_CLASSES or m < 1 or C * (m + 1) ** 2 > MAX_ENTRIES:
        return False
    pay = float(PAY_ITERATIONS)
    if expected_iters is not None:
        pay = max(pay, LONG_SHARE * float(expected_iters))
    return n * (m + 1) * (m + 2) / 2 + (m + 1) ** 3 <= pay * 2 * n * m


LONG_SHARE = 0.125
"""Share of a solve's expected iterations (:func:`blocks_pay`) the blocks' estimate may cost
beyond :data:`PAY_ITERATIONS`. Deep collinear many-class points take 1,000-5,000 OWL-QN
iterations; at ``m`` = 198 the blocks (50 iterations' products to estimate) took a held-out
2899 × 198 × 40 path's last point from 5,000 iterations, unconverged, to 2,387, and collinear
paths of 20-35 classes ran 1.0-2.7x as fast (``benchmarks/results/
class-blocks-long-cpu-2026-12-06.txt``)."""

LONG_GAIN = 0.8
"""A path keeps the blocks for its long solves (:func:`long_blocks`) where the first solve
that used them took at most this share of the iterations expected without them
(:func:`blocks_paid`): on post-ReLU low-rank features they saved none (280 where the counts
before ran 282, 292; a held-out 2600 × 140 × 30 draw) and each iteration cost about twice as
much; on collinear ones they took 388 where the count had grown from 265 to 407 over the
two points before (2200 × 170 × 25; 771 without them)."""

COUNT_GROWTH_CAP = 2.0
"""The largest growth per path point :func:`expected_count` extrapolates."""


def expected_count(counts: list[tuple[int, int]], point: int) -> float:
    """OWL-QN's iterations expected at path point ``point`` from its counts at earlier points
    without the blocks, ``counts`` ``[(point, iterations), ...]`` in path order: the last
    count grown by the per-point ratio of the last two (at least 1, at most
    :data:`COUNT_GROWTH_CAP`; counts grow as λ falls), or the last count where there is one."""
    p2, c2 = counts[-1]
    if len(counts) < 2:
        return float(c2)
    p1, c1 = counts[-2]
    growth = (c2 / max(c1, 1)) ** (1.0 / (p2 - p1))
    growth = min(max(growth, 1.0), COUNT_GROWTH_CAP)
    return c2 * growth ** (point - p2)


def long_blocks(n: int, m: int, C: int, expected_iters: float | None) -> bool:
    """Whether the blocks are used only because the solve is expected to be long:
    :func:`blocks_pay` with ``expected_iters`` but not without."""
    return blocks_pay(n, m, C, expected_iters) and not blocks_pay(n, m, C)


def blocks_paid(iters: int, counts: list[tuple[int, int]], point: int) -> bool:
    """Whether a solve at path point ``point`` that used the blocks for being long
    (:func:`long_blocks`) showed them worth it: ``iters`` at most :data:`LONG_GAIN` times
    :func:`expected_count` of the earlier counts without them."""
    return iters <= LONG_GAIN * expected_count(counts, point)


class ClassBlocks:
    """``M = blockdiag(B_k⁻¹)`` for one solve (module docstring).

    Parameters
    ----------
    Xw : torch.Tensor of shape (n, m), float32
        Working-set columns.
    z : torch.Tensor of shape (n, C)
        Logits at the solve's start (the probabilities are their softmax).
    l2 : float
        Ridge weight on the weights (not the biases).
    free : torch.Tensor of shape (C, m), bool
        Weights whose couplings are kept (:meth:`set_free` changes them); the others get
        their diagonal entry only.
    previous : ClassBlocks, optional
        The last solve's blocks: their estimate is reused where they were computed on the same
        ``Xw`` (the same tensor) fewer than :data:`REUSE` solves ago, and extended where
        ``Xw``'s columns are theirs with more appended (``features``).
    features : array of int, optional
        Which features ``Xw``'s columns are, in order (``fit_path``'s working set, whose
        cache appends the features that join): where the previous blocks' columns are the
        first of these, only the joining columns' rows are estimated (:meth:`_extend`).

    Attributes
    ----------
    gram : torch.Tensor of shape (C, m + 1, m + 1), float64
        The blocks without the ridge weight, ``(1/n) Σ p(1-p) x̃ x̃ᵀ``.
    inv : torch.Tensor of shape (C, m + 1, m + 1), float64
        ``B_k⁻¹`` per class with the couplings kept now, the bias last.
    inv32 : numpy.ndarray of shape (C, m + 1, m + 1), float32, or None
        ``inv`` rounded to float32, kept beside it on CPU: the ``M`` of :meth:`apply` and
        :meth:`apply_classes` there (:data:`SINGLE_APPLY`); None on other devices.
    uses : int
        Solves that used ``gram`` so far, this one included.
    wd : torch.Tensor of shape (n, C), float32, or None
        The weights ``p(1-p)`` ``gram`` was estimated at, kept for :meth:`_extend` where
        ``n C`` is at most :data:`KEEP_WEIGHTS`.
    """

    def __init__(self, Xw: torch.Tensor, z: torch.Tensor, l2: float, free: torch.Tensor,
                 previous: ClassBlocks | None = None, features=None):
        n, m = Xw.shape
        C = z.shape[1]
        self.C, self.m = C, m
        self.features = None if features is None else np.array(features, dtype=np.int64)
        young = previous is not None and previous.uses < REUSE and previous.C == C
        if young and previous.xw() is Xw:
            self.gram, self.uses, self.xw = previous.gram, previous.uses + 1, previous.xw
            self.wd = previous.wd
        elif young and previous.wd is not None and previous.wd.shape[0] == n and \
                _appended(previous.features, self.features):
            # the same features first, more after them: their rows at the same weights
            self.gram = self._extend(previous.gram, Xw, previous.wd)
            self.uses, self.xw, self.wd = previous.uses + 1, weakref.ref(Xw), previous.wd
        else:
            wd = self._weights(z)
            self.gram, self.uses, self.xw = self._estimate(Xw, wd), 1, weakref.ref(Xw)
            self.wd = wd if n * C <= KEEP_WEIGHTS else None
        self.l2 = l2
        dev = self.gram.device
        self.keep = torch.ones((C, m + 1), dtype=torch.bool, device=dev)
        self.keep[:, :m] = free.to(dev)
        self.inv = self._inverse(torch.arange(C, device=dev))
        self.inv32 = self.inv.numpy().astype(np.float32) if SINGLE_APPLY and \
            dev.type == "cpu" else None

    def set_free(self, free: torch.Tensor) -> torch.Tensor:
        """Drop the couplings of the weights not ``free`` (C, m) from here on; returns the
        classes whose blocks changed (int64, possibly empty), their inverses recomputed.

        The couplings kept only shrink within a solve: a weight that joins the moving set
        mid-solve keeps its diagonal entry only until the next solve's blocks. Re-adding them
        recomputed blocks at most iterations (316 inverses over the 100-class path's 454
        iterations, their cost as large as the iterations they saved) for ~5% fewer
        iterations (ad hoc runs)."""
        keep = torch.ones_like(self.keep)
        keep[:, : self.m] = free.to(keep.device)
        keep &= self.keep
        dropped = self.keep & ~keep
        changed = torch.nonzero(dropped.any(1))[:, 0]
        if changed.numel():
            self.keep = keep
            self._drop(changed, dropped)
        return changed

    def _drop(self, classes: torch.Tensor, dropped: torch.Tensor) -> None:
        """Decouple the weights ``dropped`` (C, m + 1) of ``classes`` in ``inv``: where a
        class loses at most :data:`DOWNDATE_SHARE` of the weights it kept, from its inverse,
        else by a new factorization (:meth:`_inverse`).

        With ``M = B_KK⁻¹`` the inverse on the kept set K and D ⊂ K the dropped weights, the
        inverse on ``K ∖ D`` is ``M − M_{·D} (M_DD)⁻¹ M_{D·}`` (the inverse of a principal
        block through the Schur complement of the inverse: Horn & Johnson, "Matrix
        Analysis", 0.7.3), about ``(m+1)² |D|`` multiply-adds against a Cholesky factor and
        inverse's ``(m+1)³``; each dropped weight then gets its own curvature, the inverse of
        its diagonal entry with the ridge weight, as :meth:`_inverse` gives it. On the
        held-out collinear 2,899 x 198 x 40 path a solve's set shrank by one or two weights
        in a class at a time (one or two of ~144 kept, in ~7 classes per shrink), where the
        factorizations took 4.5 s of the path's ~31 (an ad hoc profile)."""
        lost = dropped[classes].sum(1)
        fresh = lost > DOWNDATE_SHARE * (self.keep[classes].sum(1) + lost)
        if bool(fresh.any()):
            self.inv[classes[fresh]] = self._inverse(classes[fresh])
        down = classes[~fresh]
        for k, ridge in zip(down.tolist(), self._ridges(down).tolist(), strict=True):
            D = torch.nonzero(dropped[k])[:, 0]
            M = self.inv[k]
            MD = M[:, D]  # (m+1, |D|)
            M -= MD @ torch.linalg.solve(M[D][:, D], MD.T)
            M[D, :] = 0.0
            M[:, D] = 0.0
            M[D, D] = 1.0 / (self.gram[k, D, D] + ridge)
        if self.inv32 is not None:
            idx = classes.cpu().numpy()
            self.inv32[idx] = self.inv[classes].numpy()

    def _ridges(self, classes: torch.Tensor) -> torch.Tensor:
        """The ridge on each weight's diagonal entry of the blocks of ``classes``, (k,):
        :data:`FLOOR` times the block's mean weight diagonal, at least ``l2``."""
        diag = torch.diagonal(self.gram[classes], dim1=1, dim2=2)[:, : self.m]
        return torch.clamp(FLOOR * diag.mean(1), min=self.l2)

    def columns(self, classes: torch.Tensor) -> torch.Tensor:
        """Flat (OWL-QN layout) indices of the weights and bias of each class in ``classes``,
        (k (m+1),): each class's m weights, then its bias."""
        m, Cm = self.m, self.C * self.m
        w = classes[:, None] * m + torch.arange(m, device=classes.device)[None, :]
        return torch.cat([w, Cm + classes[:, None]], 1).reshape(-1)

    def apply_classes(self, Q: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``M q`` on the columns :meth:`columns` of ``classes``: ``Q`` (h, k (m+1)) in that
        order, the same shape back, in Q's dtype."""
        h = Q.shape[0]
        out = self._times(Q.reshape(h, classes.numel(), self.m + 1), classes)
        return out.reshape(h, -1).to(Q.dtype)

    @staticmethod
    def _weights(z: torch.Tensor) -> torch.Tensor:
        """The weights ``p(1-p)`` (n, C) float32 of logits ``z`` (n, C)."""
        P = torch.softmax(z.to(torch.float64), 1)
        return (P * (1.0 - P)).to(torch.float32)

    @staticmethod
    def _pair_sums(Xw: torch.Tensor, Wd: torch.Tensor, T: int, fill) -> torch.Tensor:
        """``(1/n) Σ_i Wd[i, k] q_i`` per class k, (C, T) float64, for T pairwise products
        ``q_i`` of each row ``x̃_i = [x_i, 1]`` of ``Xw`` (n, m) with the weights ``Wd`` (n, C):
        ``fill(Xb, Q)`` writes a row block's products (rows, T) from its rows ``Xb`` (rows,
        m+1) into ``Q``; blocks of at most :data:`BLOCK_FLOATS` float32 products, one product
        with the weights each, accumulated in float64."""
        n = Xw.shape[0]
        dev = Xw.device
        Xa = torch.cat([Xw, torch.ones((n, 1), dtype=Xw.dtype, device=dev)], 1)  # (n, m+1)
        acc = torch.zeros((Wd.shape[1], T), dtype=torch.float64, device=dev)
        step = max(1, BLOCK_FLOATS // T)
        Q = torch.empty((min(step, n), T), dtype=Xa.dtype, device=dev)
        for s in range(0, n, step):
            Xb = Xa[s : s + step]
            r = Xb.shape[0]
            fill(Xb, Q[:r])
            acc += (Wd[s : s + step].T @ Q[:r]).to(torch.float64)
        return acc / n

    @staticmethod
    def _estimate(Xw: torch.Tensor, Wd: torch.Tensor) -> torch.Tensor:
        """``(1/n) Σ p(1-p) x̃ x̃ᵀ`` per class, (C, m+1, m+1) float64, from the weights
        ``Wd = p(1-p)`` (n, C) and the pairwise products ``x̃_i x̃_j`` (j ≥ i)
        (:meth:`_pair_sums`)."""
        m = Xw.shape[1]
        iu, ju = torch.triu_indices(m + 1, m + 1, device=Xw.device)

        def fill(Xb, Q):  # x_i x_j for j >= i: triu_indices' order, slices (no gather)
            o = 0
            for i in range(m + 1):
                torch.mul(Xb[:, i : i + 1], Xb[:, i:], out=Q[:, o : o + m + 1 - i])
                o += m + 1 - i

        G = ClassBlocks._pair_sums(Xw, Wd, iu.numel(), fill)
        B = torch.zeros((Wd.shape[1], m + 1, m + 1), dtype=torch.float64, device=Xw.device)
        B[:, iu, ju] = G
        B[:, ju, iu] = G
        return B

    @staticmethod
    def _extend(gram: torch.Tensor, Xw: torch.Tensor, Wd: torch.Tensor) -> torch.Tensor:
        """:meth:`_estimate` on ``Xw`` (n, m) from ``gram`` (C, k+1, k+1), the estimate on its
        first k columns at the weights ``Wd`` (n, C): the old entries moved (the bias from
        place k to m), the joining columns' rows ``(1/n) Σ p(1-p) x_j x̃ᵀ`` (j ≥ k) from
        :meth:`_pair_sums` as there, about ``(m - k)(m + 1)`` pairs against
        ``(m + 1)(m + 2)/2``. The same weights throughout: one Gram matrix per class, positive
        semidefinite, as a fresh estimate at them would be."""
        m = Xw.shape[1]
        k = gram.shape[1] - 1
        dev = Xw.device

        def fill(Xb, Q):  # x_j x̃ for each joining column j
            for j in range(k, m):
                o = (j - k) * (m + 1)
                torch.mul(Xb[:, j : j + 1], Xb, out=Q[:, o : o + m + 1])

        rows = ClassBlocks._pair_sums(Xw, Wd, (m - k) * (m + 1), fill).view(-1, m - k, m + 1)
        B = torch.empty((gram.shape[0], m + 1, m + 1), dtype=torch.float64, device=dev)
        old = torch.cat([torch.arange(k, device=dev), torch.tensor([m], device=dev)])
        B[:, old[:, None], old[None, :]] = gram
        B[:, k:m, :] = rows
        B[:, :, k:m] = rows.transpose(1, 2)
        return B

    def _inverse(self, classes: torch.Tensor) -> torch.Tensor:
        """The inverses of the blocks of ``classes`` with the ridge weight, the couplings of
        the weights not kept left out (their diagonal entries stay)."""
        m = self.m
        B = self.gram[classes]
        keep = self.keep[classes]
        diag = torch.diagonal(B, dim1=1, dim2=2).clone()
        B = torch.where(keep[:, :, None] & keep[:, None, :], B, torch.zeros_like(B))
        idx = torch.arange(m + 1, device=B.device)
        B[:, idx, idx] = diag
        B[:, idx[:m], idx[:m]] += self._ridges(classes)[:, None]
        return _spd_inverse(B)

    def _times(self, Qa: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """``inv[k] @ Qa[r, k]`` for every row r and class k of ``classes`` (None: all),
        ``Qa`` (h, k, m+1): with :attr:`inv32` one numpy float32 product per block
        (:data:`SINGLE_APPLY`), float32 back; else torch's float64 einsum, float64 back."""
        if self.inv32 is not None:
            inv32 = self.inv32 if classes is None else self.inv32[classes.cpu().numpy()]
            a = Qa.to(torch.float32).numpy().transpose(1, 2, 0)  # (k, m+1, h)
            return torch.from_numpy(np.matmul(inv32, a).transpose(2, 0, 1))
        inv = self.inv if classes is None else self.inv[classes]
        return torch.einsum("kij,hkj->hki", inv, Qa.to(torch.float64))

    def apply(self, Q: torch.Tensor) -> torch.Tensor:
        """``M q`` for each row of ``Q`` of shape (p,) or (h, p), ``p = C m + C`` (weights
        class by class, then the biases: OWL-QN's flat layout), in Q's dtype."""
        C, m = self.C, self.m
        Cm = C * m
        one = Q.ndim == 1
        Qh = Q[None] if one else Q
        h = Qh.shape[0]
        Qa = torch.cat([Qh[:, :Cm].reshape(h, C, m), Qh[:, Cm:, None]], 2)  # (h, C, m+1)
        out = self._times(Qa)  # (h, C, m+1)
        flat = torch.cat([out[:, :, :m].reshape(h, Cm), out[:, :, m]], 1)
        flat = flat.to(Q.dtype)
        return flat[0] if one else flat


def _appended(old, new) -> bool:
    """Whether feature list ``new`` is ``old`` with more features after it (both given)."""
    return old is not None and new is not None and new.size > old.size and \
        np.array_equal(new[: old.size], old)


def _spd_inverse(B: torch.Tensor) -> torch.Tensor:
    """Inverses of the symmetric positive semidefinite blocks ``B`` (b, k, k): through their
    Cholesky factors, with a small multiple of each block's mean diagonal added where a
    factorization fails (a column constant over the examples, or exactly collinear ones
    without ridge), and each block's diagonal inverse where even that fails."""
    L, info = torch.linalg.cholesky_ex(B)
    bad = info != 0
    if bool(bad.any()):
        k = B.shape[-1]
        eye = torch.eye(k, dtype=B.dtype, device=B.device)
        scale = torch.diagonal(B, dim1=1, dim2=2).mean(1).clamp_min(1e-300)
        Bj = B[bad] + 1e-8 * scale[bad, None, None] * eye
        Lj, info_j = torch.linalg.cholesky_ex(Bj)
        L[bad] = Lj
        still = torch.zeros_like(bad)
        still[bad] = info_j != 0
        if bool(still.any()):
            d = torch.diagonal(B[still], dim1=1, dim2=2).clamp_min(1e-12 * scale[still, None])
            L[still] = torch.diag_embed(d.sqrt())
    return torch.cholesky_inverse(L)
