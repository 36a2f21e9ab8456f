"""The sparse head's penalties: elementwise and grouped elastic net, one class each.

Both are ``λ [α P1(W) + (1-α)/2 ||W||_F^2]`` on the weights ``W`` (C, d) of standardized
features (the bias is never penalized), with the L1 share α in (0, 1] (glmnet's ``alpha``;
Zou & Hastie, "Regularization and variable selection via the elastic net", JRSS-B 2005):

- :class:`ElasticNet`: ``P1(W) = Σ_kj |W_kj|`` (glmnet's multinomial lasso, also glm_saga's);
- :class:`GroupedElasticNet`: ``P1(W) = Σ_j ||W_:j||_2``, one L2 norm over the classes per
  feature (glmnet's ``type.multinomial="grouped"``; Friedman, Hastie & Tibshirani, J. Stat.
  Softw. 2010, section 4): a feature enters or leaves all classes together.

Everything the fitter needs from a penalty lives here, once: the split into the L1 weight
``l1 = λα`` and the ridge weight ``l2 = λ(1-α)`` (:meth:`Penalty.l1_l2`), the value, the
proximal operator, the per-feature dual norm that decides whether a feature is zero at the
optimum (λ_max, the strong rule, the KKT check) and the KKT violation. Solvers, the shared
objective (:mod:`sparse_probe.objective`) and ``fit_path`` all call these.

Methods take numpy arrays or torch tensors (of any device) and return the same kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

__all__ = ["DEFAULT_ALPHA", "PENALTIES", "ElasticNet", "GroupedElasticNet", "Penalty", "make_penalty"]

DEFAULT_ALPHA = 0.99
"""The default L1 share α (the paper's choice, Wong et al. 2021): one home for the CLI,
``fit_path`` and ``SparseProbe``'s ``l1_ratio``."""


def _xp(a):
    """The array module of ``a``: torch for tensors, numpy otherwise."""
    return torch if isinstance(a, torch.Tensor) else np


def _col_norms(A):
    """L2 norm of each column of a (C, d) array, shape (d,)."""
    return (A * A).sum(0) ** 0.5


@dataclass(frozen=True)
class Penalty(ABC):
    """Base of the elastic-net penalties (see the module docstring); not used on its own.

    Parameters
    ----------
    alpha : float, default :data:`DEFAULT_ALPHA`
        L1 share α in (0, 1].
    """

    alpha: float = DEFAULT_ALPHA
    name: ClassVar[str] = ""
    grouped: ClassVar[bool] = False

    def __post_init__(self):
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha (the L1 share) must be in (0, 1], got {self.alpha}")

    def l1_l2(self, lam: float) -> tuple[float, float]:
        """The L1 and ridge weights ``(λα, λ(1-α))`` at penalty strength ``lam``."""
        return lam * self.alpha, lam * (1.0 - self.alpha)

    # ---------------------------------------------------------------- per-penalty parts
    @abstractmethod
    def p1(self, W) -> float:
        """``P1(W)``, the L1-type part (unweighted). W: (C, d)."""

    @abstractmethod
    def dual_norm(self, G):
        """Per feature, the dual norm of a gradient column ``G_:j`` with respect to P1's
        per-feature norm, shape (d,). A feature is zero at the optimum iff its value is at
        most ``λα`` (subgradient condition at ``W_:j = 0``)."""

    @abstractmethod
    def prox_p1(self, W, thresh: float):
        """Proximal operator of ``thresh * P1`` at ``W`` (C, d) (the L1-type part alone)."""

    @abstractmethod
    def kkt_violation(self, G, W, lam: float):
        """Per-feature violation of the optimality conditions, shape (d,) (gradient units).

        Parameters
        ----------
        G : array of shape (C, d)
            Gradient of the smooth loss (mean cross-entropy) at ``W``, ridge not included.
        W : array of shape (C, d)
        lam : float

        Returns
        -------
        array of shape (d,)
            0 at an exact optimum. See :mod:`sparse_probe.objective` for the conditions.
        """

    # ---------------------------------------------------------------- shared
    def value(self, W, lam: float) -> float:
        """``λ [α P1(W) + (1-α)/2 ||W||_F^2]``; float64 for numpy input. W: (C, d)."""
        if not isinstance(W, torch.Tensor):
            W = np.asarray(W, dtype=np.float64)
        l1, l2 = self.l1_l2(lam)
        return float(l1 * self.p1(W) + 0.5 * l2 * float((W * W).sum()))

    def prox(self, W, lam: float, step: float):
        """Proximal operator of ``step * λ [α P1 + (1-α)/2 ||·||^2]`` at ``W`` (C, d): the
        ``P1`` prox at threshold ``step λα``, then the ridge shrinkage ``1 / (1 + step λ(1-α))``
        (the prox of a sum with a squared norm; Parikh & Boyd, "Proximal algorithms", 2014,
        section 2.2)."""
        l1, l2 = self.l1_l2(lam)
        return self.prox_p1(W, step * l1) / (1.0 + step * l2)

    def lambda_max(self, G0) -> float:
        """Smallest λ at which ``W = 0`` is optimal: ``max_j dual_norm(G0)_j / α``, with
        ``G0`` (C, d) the loss gradient at ``W = 0`` and the intercept-only optimum."""
        return float(self.dual_norm(G0).max()) / self.alpha

    def screen(self, G, lam: float, lam_prev: float):
        """Sequential strong rule (Tibshirani et al., JRSS-B 2012): boolean mask (d,) of the
        features that may be nonzero at ``lam``, from the gradient ``G`` at the solution for
        ``lam_prev``: ``dual_norm(G)_j >= α(2λ - λ_prev)``."""
        return self.dual_norm(G) >= self.alpha * (2 * lam - lam_prev)


@dataclass(frozen=True)
class ElasticNet(Penalty):
    """Elementwise elastic net: ``P1(W) = Σ_kj |W_kj|`` (see the module docstring).

    KKT with ``G = ∂CE/∂W``: ``G_kj + λ(1-α) W_kj + λα sign(W_kj) = 0`` where ``W_kj != 0``,
    ``|G_kj| <= λα`` where ``W_kj = 0``. The proximal operator is soft-thresholding followed
    by the ridge shrinkage: ``sign(w) max(|w| - tλα, 0) / (1 + tλ(1-α))``.
    """

    name: ClassVar[str] = "elasticnet"
    grouped: ClassVar[bool] = False

    def p1(self, W) -> float:
        return float(abs(W).sum())

    def dual_norm(self, G):
        return _xp(G).amax(abs(G), 0)

    def prox_p1(self, W, thresh: float):
        return _xp(W).sign(W) * (abs(W) - thresh).clip(min=0)

    def kkt_violation(self, G, W, lam: float):
        xp = _xp(G)
        if xp is np:
            G, W = np.asarray(G, dtype=np.float64), np.asarray(W, dtype=np.float64)
        l1, l2 = self.l1_l2(lam)
        active = abs(G + l2 * W + l1 * xp.sign(W))
        viol = xp.where(W != 0, active, (abs(G) - l1).clip(min=0))
        return xp.amax(viol, 0)


@dataclass(frozen=True)
class GroupedElasticNet(Penalty):
    """Grouped elastic net: ``P1(W) = Σ_j ||W_:j||_2`` (see the module docstring).

    KKT: ``G_:j + λ(1-α) W_:j + λα W_:j / ||W_:j|| = 0`` where ``W_:j != 0``,
    ``||G_:j|| <= λα`` where ``W_:j = 0``. The proximal operator is the block
    soft-threshold followed by the ridge shrinkage,
    ``W_:j max(0, 1 - tλα / ||W_:j||) / (1 + tλ(1-α))``.
    """

    name: ClassVar[str] = "grouped"
    grouped: ClassVar[bool] = True

    def p1(self, W) -> float:
        return float(_col_norms(W).sum())

    def dual_norm(self, G):
        return _col_norms(G)

    def prox_p1(self, W, thresh: float):
        norms = _col_norms(W).clip(min=1e-300)
        return W * (1.0 - thresh / norms).clip(min=0)[None, :]

    def kkt_violation(self, G, W, lam: float):
        xp = _xp(G)
        if xp is np:
            G, W = np.asarray(G, dtype=np.float64), np.asarray(W, dtype=np.float64)
        l1, l2 = self.l1_l2(lam)
        norms = _col_norms(W)
        resid = G + l2 * W + l1 * W / norms.clip(min=1e-300)[None, :]
        return xp.where(norms > 0, _col_norms(resid), (_col_norms(G) - l1).clip(min=0))


PENALTIES: dict[str, type[Penalty]] = {"elasticnet": ElasticNet, "grouped": GroupedElasticNet}


def make_penalty(alpha: float = DEFAULT_ALPHA, grouped: bool = False) -> Penalty:
    """The penalty ``fit_path``'s ``alpha``/``grouped`` arguments name."""
    return (GroupedElasticNet if grouped else ElasticNet)(alpha)
