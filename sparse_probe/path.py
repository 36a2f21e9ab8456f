"""The regularization path: one fitted sparse head per λ, with its diagnostics.

Saved as ``probe/path.npz`` (layout in docs/contracts.md): weights of every point in COO form
(they are sparse on the part of the path that matters), on the *standardized* features.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath

import numpy as np

from sparse_probe.path_weights import PathWeights
from sparse_probe.rundir import atomic_path

__all__ = ["Path"]

_ARRAYS = (
    "lambdas", "intercepts", "nnz", "nnz_per_class", "n_active", "train_acc", "train_loss",
    "val_acc", "val_loss", "objective", "kkt_violation", "n_iter", "time",
)


@dataclass
class Path:
    """A fitted regularization path.

    Attributes
    ----------
    lambdas : ndarray of shape (L,)
        Penalty strengths, decreasing; ``lambdas[0]`` is λ_max (all weights zero).
    alpha : float
        L1 share α of the elastic net.
    grouped : bool
        Whether the L1 part is glmnet's grouped (per-feature L2 over classes) penalty.
    weights : PathWeights (a sequence of ndarray, each (C, d) float64)
        Weights on the standardized features for each point, as the solver verified them (a
        float32 rounding moved the gradient by up to several times the KKT tolerance at a
        path's small-λ end: relative 6e-8 of weights ~5 is ~1e-9 against tolerances of 2e-9
        at ``eps = 1e-5``). Each point is kept sparse where that is smaller
        (:mod:`~sparse_probe.path_weights`); ``weights[i]`` is a fresh dense array. A list
        of arrays given to the constructor is converted.
    intercepts : ndarray of shape (L, C)
    mean, scale : ndarray of shape (d,)
        Training-set standardization: ``x_std = (x - mean) / scale``.
    nnz : ndarray of shape (L,)
        Nonzero weights. ``nnz_per_class`` (L, C): nonzero features per class.
        ``n_active`` (L,): features used by any class.
    train_acc, train_loss, val_acc, val_loss : ndarray of shape (L,)
        Accuracy and mean cross-entropy (NaN where no validation set was given).
    objective : ndarray of shape (L,)
        The penalized objective at each point (float64).
    kkt_violation : ndarray of shape (L,)
        Largest violation of the optimality conditions (gradient units), all coordinates.
    n_iter : ndarray of shape (L,)
        Solver iterations per point. ``time`` (L,): cumulative seconds.
    info : dict
        Solver name, tolerance, sizes and other settings.
    """

    lambdas: np.ndarray
    alpha: float
    grouped: bool
    weights: Sequence[np.ndarray]
    intercepts: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    nnz: np.ndarray
    nnz_per_class: np.ndarray
    n_active: np.ndarray
    train_acc: np.ndarray
    train_loss: np.ndarray
    val_acc: np.ndarray
    val_loss: np.ndarray
    objective: np.ndarray
    kkt_violation: np.ndarray
    n_iter: np.ndarray
    time: np.ndarray
    classes: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, PathWeights):
            self.weights = PathWeights(self.weights)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.lambdas)

    @property
    def n_classes(self) -> int:
        return self.intercepts.shape[1]

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    @property
    def features_per_class(self) -> np.ndarray:
        """Mean number of nonzero features per class, shape (L,)."""
        return self.nnz_per_class.mean(axis=1)

    def raw_coef(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Weights (C, d) and bias (C,) acting on raw (unstandardized) features at point ``i``."""
        W = self.weights[i].astype(np.float64) / self.scale
        b = self.intercepts[i] - W @ self.mean
        return W, b

    def decision_function(self, X: np.ndarray, i: int) -> np.ndarray:
        """Logits (n, C) of raw features ``X`` (n, d) at point ``i``."""
        W, b = self.raw_coef(i)
        return np.asarray(X, dtype=np.float64) @ W.T + b

    def summary(self) -> str:
        """A fixed-width table: λ, nnz, features/class, train/val accuracy, KKT violation."""
        lines = [f"{'#':>3} {'lambda':>10} {'nnz':>7} {'feat/cls':>8} {'active':>6} "
                 f"{'train':>6} {'val':>6} {'kkt':>8} {'iter':>5}"]
        for i in range(len(self)):
            lines.append(
                f"{i:>3} {self.lambdas[i]:>10.3e} {int(self.nnz[i]):>7} "
                f"{self.features_per_class[i]:>8.1f} {int(self.n_active[i]):>6} "
                f"{self.train_acc[i]:>6.3f} {self.val_acc[i]:>6.3f} "
                f"{self.kkt_violation[i]:>8.1e} {int(self.n_iter[i]):>5}"
            )
        return "\n".join(lines)

    @classmethod
    def from_records(cls, records: dict[str, list], *, lambdas, alpha, grouped, mean, scale,
                     classes, info) -> Path:
        """Assemble a path from per-point lists (keys: ``weights`` and the array names)."""
        L = len(records["weights"])
        arrays = {k: np.asarray(v) for k, v in records.items() if k != "weights"}
        return cls(lambdas=np.asarray(lambdas)[:L], alpha=alpha, grouped=grouped,
                   weights=records["weights"], mean=mean, scale=scale, classes=classes,
                   info=info, **arrays)

    @staticmethod
    def empty_records() -> dict[str, list]:
        """Per-point lists filled by the solvers, then passed to :meth:`from_records`."""
        records: dict[str, list] = {k: [] for k in _ARRAYS if k != "lambdas"}
        records["weights"] = PathWeights()  # type: ignore[assignment]
        return records

    @staticmethod
    def append_point(records: dict[str, list], W: np.ndarray, b: np.ndarray, **metrics) -> None:
        """Add one point to ``records``: weights (C, d), bias (C,), their sparsity counts and
        ``metrics`` (train_acc, train_loss, val_acc, val_loss, objective, kkt_violation,
        n_iter, time)."""
        nz = np.asarray(W) != 0
        records["weights"].append(W)  # copied (float64): the solver's array moves on
        records["intercepts"].append(np.array(b, dtype=np.float64))
        records["nnz"].append(int(nz.sum()))
        records["nnz_per_class"].append(nz.sum(1))
        records["n_active"].append(int(nz.any(0).sum()))
        for key, value in metrics.items():
            records[key].append(value)

    # ------------------------------------------------------------------ io
    def save(self, path: str | os.PathLike) -> None:
        """Write ``path.npz`` atomically (temp file in the same folder, then rename)."""
        path = FsPath(path)
        rows, cols, vals, ptr = [], [], [], [0]
        weights = self.weights if isinstance(self.weights, PathWeights) \
            else PathWeights(self.weights)
        for i in range(len(weights)):
            r, c, v = weights.nonzero(i)  # row-major, as np.nonzero of the dense point
            rows.append(r.astype(np.int32))
            cols.append(c.astype(np.int32))
            vals.append(v.astype(np.float64))
            ptr.append(ptr[-1] + r.size)
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        arrays["bias"] = arrays.pop("intercepts")
        info = dict(self.info, classes=self.classes)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                **arrays,
                alpha=np.float64(self.alpha),
                grouped=np.bool_(self.grouped),
                mean=self.mean,
                scale=self.scale,
                w_ptr=np.asarray(ptr, dtype=np.int64),
                w_row=np.concatenate(rows) if rows else np.zeros(0, np.int32),
                w_col=np.concatenate(cols) if cols else np.zeros(0, np.int32),
                w_val=np.concatenate(vals) if vals else np.zeros(0, np.float64),
                info=np.array(json.dumps(info)),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Path:
        """Read a ``path.npz`` written by :meth:`save`."""
        path = FsPath(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such path file (run `sparse-probe fit` first)")
        try:
            z = np.load(path, allow_pickle=False)
            info = json.loads(str(z["info"]))
            C = z["bias"].shape[1]
            d = z["mean"].shape[0]
            weights = PathWeights()
            ptr = z["w_ptr"]
            w_row, w_col, w_val = z["w_row"], z["w_col"], z["w_val"]
            for i in range(len(ptr) - 1):
                sl = slice(ptr[i], ptr[i + 1])
                # float32 values of older files widen exactly
                weights.append_coo(w_row[sl], w_col[sl], w_val[sl], (C, d))
            kwargs = {name: z[name] for name in _ARRAYS if name != "intercepts"}
        except KeyError as exc:
            raise ValueError(f"{path}: missing array {exc}; not a sparse-probe path file") from exc
        except ValueError as exc:  # nonzeros outside the shape the file itself gives
            raise ValueError(f"{path}: {exc}") from None
        classes = info.pop("classes", None)
        return cls(
            alpha=float(z["alpha"]), grouped=bool(z["grouped"]), weights=weights,
            intercepts=z["bias"], mean=z["mean"], scale=z["scale"], classes=classes,
            info=info, **kwargs,
        )
