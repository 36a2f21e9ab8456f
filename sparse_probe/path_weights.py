"""A path's weights in memory: one (C, d) float64 matrix per point, each kept sparse or dense,
whichever is smaller.

A sparse head is sparse along most of its path, but the path keeps its weights in float64 (the
fitter verified those, not a float32 rounding of them: :class:`~sparse_probe.path.Path`), so
dense storage of every point costs ``8·C·d`` bytes each: 1.6 GB for 100 points of a 1,000-class
head over 2,048 features. Here a point with ``k`` nonzero weights costs ``12·k`` bytes (a 32-bit
flat index and a float64 value; 64-bit indices past 2³¹ entries) where that is less than the
dense ``8·C·d``, which it is below two thirds density. Reading a point gives a fresh dense array,
exactly the weights stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

__all__ = ["PathWeights"]


class PathWeights(Sequence[np.ndarray]):
    """The weights of a path's points, each read back as a dense (C, d) float64 array.

    Parameters
    ----------
    items : iterable of array_like, each (C, d)
        Initial points (converted to float64; all of one shape).

    Examples
    --------
    >>> w = PathWeights()
    >>> w.append(np.array([[0.0, 1.5], [0.0, 0.0]]))
    >>> w[0]
    array([[0. , 1.5],
           [0. , 0. ]])
    >>> w.nonzero(0)
    (array([0]), array([1]), array([1.5]))
    """

    def __init__(self, items: Iterable[np.ndarray] = ()) -> None:
        self._shape: tuple[int, int] | None = None
        self._points: list[np.ndarray | tuple[np.ndarray, np.ndarray]] = []
        for W in items:
            self.append(W)

    # ------------------------------------------------------------------ building
    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        if len(shape) != 2:
            raise ValueError(f"PathWeights: a point's weights must be (C, d), got {shape}")
        shape2 = (int(shape[0]), int(shape[1]))
        if self._shape is None:
            self._shape = shape2
        elif shape2 != self._shape:
            raise ValueError(f"PathWeights: a point of shape {shape2} on a path of "
                             f"{self._shape}")
        return shape2

    def _index_dtype(self) -> type:
        C, d = self._shape
        return np.int32 if C * d < 2**31 else np.int64

    def append(self, W: np.ndarray) -> None:
        """Add one point (copied: the caller's array may change afterwards).

        Parameters
        ----------
        W : array_like of shape (C, d)
        """
        W = np.asarray(W)
        self._check_shape(W.shape)
        flat = np.flatnonzero(W)
        idx = self._index_dtype()
        if flat.size * (np.dtype(idx).itemsize + 8) < W.size * 8:
            self._points.append((flat.astype(idx), W.reshape(-1)[flat].astype(np.float64)))
        else:
            self._points.append(np.array(W, dtype=np.float64))

    def append_coo(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                   shape: tuple[int, int]) -> None:
        """Add one point from its nonzeros (as :meth:`nonzero` gives them), never densified
        when sparse storage is the smaller.

        Parameters
        ----------
        rows, cols : ndarray of shape (k,), int
            Class and feature of each value (no repeats).
        values : ndarray of shape (k,)
        shape : (C, d)
        """
        C, d = self._check_shape(tuple(shape))
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        if not rows.shape == cols.shape == np.shape(values) or rows.ndim != 1:
            raise ValueError(f"PathWeights: rows {rows.shape}, cols {cols.shape} and values "
                             f"{np.shape(values)} must be one length")
        if rows.size and (rows.min() < 0 or rows.max() >= C or cols.min() < 0
                          or cols.max() >= d):
            raise ValueError(f"PathWeights: nonzeros outside a ({C}, {d}) point: classes "
                             f"{rows.min()}..{rows.max()}, features {cols.min()}..{cols.max()}")
        flat = rows * d + cols
        order = np.argsort(flat, kind="stable")
        flat, vals = flat[order], np.asarray(values, np.float64)[order]
        keep = vals != 0
        flat, vals = flat[keep], vals[keep]
        idx = self._index_dtype()
        if flat.size * (np.dtype(idx).itemsize + 8) < C * d * 8:
            self._points.append((flat.astype(idx), vals))
        else:
            W = np.zeros(C * d)
            W[flat] = vals
            self._points.append(W.reshape(C, d))

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._points)

    def _dense(self, p) -> np.ndarray:
        if isinstance(p, np.ndarray):
            return p.copy()
        flat, vals = p
        W = np.zeros(self._shape[0] * self._shape[1])
        W[flat] = vals
        return W.reshape(self._shape)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i):
        """Point ``i``'s weights, a fresh dense (C, d) float64 array (a list for a slice)."""
        if isinstance(i, slice):
            return [self._dense(p) for p in self._points[i]]
        return self._dense(self._points[i])

    def __iter__(self) -> Iterator[np.ndarray]:
        for p in self._points:
            yield self._dense(p)

    def nonzero(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point ``i``'s nonzero weights in row-major order, without a dense copy.

        Returns
        -------
        rows, cols : ndarray of shape (k,), int
            Class and feature of each nonzero weight.
        values : ndarray of shape (k,), float64
        """
        p = self._points[i]
        if isinstance(p, np.ndarray):
            flat = np.flatnonzero(p)
            vals = p.reshape(-1)[flat]
        else:
            flat, vals = p
        rows, cols = np.divmod(flat.astype(np.int64), self._shape[1])
        return rows, cols, vals.copy()

    @property
    def nbytes(self) -> int:
        """Bytes the stored points hold (indices and values)."""
        return sum(p.nbytes if isinstance(p, np.ndarray) else p[0].nbytes + p[1].nbytes
                   for p in self._points)

    def __repr__(self) -> str:
        return f"PathWeights({len(self)} points of {self._shape}, {self.nbytes} bytes)"
