"""Chunked access to a feature matrix held in RAM, on a torch device, or in a ``.npy`` on disk.

The fitter only ever needs two things from ``X`` (shape ``(n_samples, n_features)``): streaming
row chunks (for full-data gradient passes, statistics and KKT checks) and gathering a subset of
columns (the working set). :class:`FeatureSource` provides both for every input kind. A
memory-mapped ``.npy`` is read with plain file reads into one reusable buffer instead of through
the mapping, so that the resident memory stays bounded by the chunk size even when the file is
larger than RAM (pages touched through a mapping stay resident and count toward RSS).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureSource", "as_labels", "block_tensor"]

DEFAULT_CHUNK_BYTES = 64 * 2**20


class FeatureSource:
    """Row-chunked, column-gatherable view of a feature matrix.

    Parameters
    ----------
    X : ndarray, torch.Tensor, np.memmap, str or Path
        Features of shape (n_samples, n_features). A path must name a 2-D ``.npy`` file; a
        ``np.memmap`` is read from its file.
    chunk_rows : int, optional
        Rows per chunk; default keeps a float32 chunk near 64 MiB.
    name : str
        Used in error messages (e.g. ``"X"`` or ``"X_val"``).
    """

    def __init__(self, X, *, chunk_rows: int | None = None, name: str = "X"):
        self.name = name
        self._array: np.ndarray | None = None
        self._tensor: torch.Tensor | None = None
        self._file: Path | None = None
        self._offset = 0
        if isinstance(X, str | os.PathLike):
            self._open_npy(Path(X))
        elif isinstance(X, np.memmap) and getattr(X, "filename", None) and X.ndim == 2:
            self._open_npy(Path(X.filename), memmap=X)
        elif isinstance(X, torch.Tensor):
            if X.ndim != 2:
                raise ValueError(f"{name}: expected a 2-D tensor (n_samples, n_features), got {X.ndim}-D")
            if not X.is_floating_point():
                raise ValueError(f"{name}: expected floating point features, got {X.dtype}")
            self._tensor = X.detach()
            self.n, self.d = X.shape
            self.dtype = np.dtype(str(X.dtype).replace("torch.", ""))
        else:
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {arr.shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
                    arr = arr.astype(np.float32)
                else:
                    raise ValueError(f"{name}: expected numeric features, got dtype {arr.dtype}")
            self._array = arr
            self.n, self.d = arr.shape
            self.dtype = arr.dtype
        if self.n == 0 or self.d == 0:
            raise ValueError(f"{self.name}: empty feature matrix of shape ({self.n}, {self.d})")
        row_bytes = max(1, self.d * 4)
        self.chunk_rows = int(chunk_rows or max(256, DEFAULT_CHUNK_BYTES // row_bytes))
        if self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")

    # ------------------------------------------------------------------ construction
    def _open_npy(self, path: Path, memmap: np.memmap | None = None) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{self.name}: {path} does not exist")
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = reader(fh)
            except ValueError as exc:
                raise ValueError(f"{self.name}: {path} is not a .npy file ({exc})") from exc
            offset = fh.tell()
        if memmap is not None and memmap.shape != shape:
            # a memmap view of part of a file: fall back to reading through it
            self._array = memmap
            self.n, self.d = memmap.shape
            self.dtype = memmap.dtype
            return
        if len(shape) != 2:
            raise ValueError(f"{self.name}: {path} holds shape {shape}, expected (n_samples, n_features)")
        if fortran:
            raise ValueError(f"{self.name}: {path} is Fortran-ordered; save it C-ordered")
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"{self.name}: {path} has dtype {dtype}, expected float32 or float64")
        self._file, self._offset = path, offset
        self.n, self.d = shape
        self.dtype = np.dtype(dtype)

    @property
    def on_disk(self) -> bool:
        """True when rows are streamed from a file."""
        return self._file is not None

    @property
    def nbytes(self) -> int:
        """Size of the matrix in its own dtype."""
        return self.n * self.d * self.dtype.itemsize

    # ------------------------------------------------------------------ access
    def chunks(self, chunk_rows: int | None = None) -> Iterator[tuple[int, np.ndarray | torch.Tensor]]:
        """Yield ``(start, block)`` row blocks of shape (rows, n_features) in order.

        Blocks from a file reuse one buffer: copy a block if you keep it past the next one.
        """
        step = int(chunk_rows or self.chunk_rows)
        if self._tensor is not None:
            for s in range(0, self.n, step):
                yield s, self._tensor[s : s + step]
            return
        if self._array is not None:
            for s in range(0, self.n, step):
                yield s, self._array[s : s + step]
            return
        assert self._file is not None
        row_bytes = self.d * self.dtype.itemsize
        buf = np.empty((min(step, self.n), self.d), dtype=self.dtype)
        with open(self._file, "rb", buffering=0) as fh:
            for s in range(0, self.n, step):
                rows = min(step, self.n - s)
                view = buf[:rows]
                fh.seek(self._offset + s * row_bytes)
                got = fh.readinto(memoryview(view).cast("B"))
                if got != rows * row_bytes:
                    raise ValueError(f"{self.name}: {self._file} is truncated at row {s}")
                yield s, view

    def to_device(self, device: str | torch.device) -> FeatureSource:
        """A copy of the whole matrix on ``device``, in its own dtype (a float16 file stays
        float16: half the memory of float32), read chunk by chunk (host memory: one chunk).
        Chunks of the copy are views of it, as many rows as this source's."""
        try:
            dtype = getattr(torch, self.dtype.name)
        except AttributeError:
            raise ValueError(f"{self.name}: dtype {self.dtype} has no torch equivalent") from None
        T = torch.empty((self.n, self.d), dtype=dtype, device=device)
        for s, block in self.chunks():
            T[s : s + block.shape[0]] = block_tensor(block, device, dtype)
        return FeatureSource(T, chunk_rows=self.chunk_rows, name=self.name)

    def gather_columns(self, cols: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Return ``X[:, cols]`` as a C-ordered float32 array of shape (n_samples, len(cols))."""
        cols = np.asarray(cols, dtype=np.int64)
        if out is None:
            out = np.empty((self.n, cols.size), dtype=np.float32)
        for s, block in self.chunks():
            if isinstance(block, torch.Tensor):
                block = block[:, torch.as_tensor(cols, device=block.device)].cpu().numpy()
                out[s : s + block.shape[0]] = block
            else:
                out[s : s + block.shape[0]] = block[:, cols]
        return out


def block_tensor(block: np.ndarray | torch.Tensor, device: str | torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """A row block as a ``dtype`` tensor on ``device``, converted by torch.

    The conversion (e.g. a float16 file's rows to float32 or float64) runs in torch, on the
    device after the copy: vectorized and threaded on CPU, and on a GPU only the file's own
    bytes cross the bus. Converting with numpy first (single-threaded) had been 55% of a
    streamed 200k × 2048 float16 fit's time on a GPU machine. The result never shares
    memory with a read-only block (a read-only memmap: writing to it would crash), and is
    not written here; it may share memory with a writable block already of that dtype on
    that device.

    Parameters
    ----------
    block : ndarray or torch.Tensor of shape (rows, d)
        Rows of any float dtype (a file's float16 rows, a memmap's, a tensor on any device).
    device : str or torch.device
    dtype : torch.dtype
        The result's dtype (float32 for the solvers, float64 for exact sums).

    Returns
    -------
    torch.Tensor of shape (rows, d), C-ordered, on ``device``
    """
    if isinstance(block, torch.Tensor):
        return _moved(block, device, dtype)
    arr = np.ascontiguousarray(block)
    if not arr.flags.writeable:
        if torch.device(device).type == "cpu" and arr.dtype.name == str(dtype).removeprefix("torch."):
            return torch.from_numpy(arr.copy())  # the converted tensor would alias it
        with warnings.catch_warnings():  # read only here: copied or converted just below
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return _moved(torch.from_numpy(arr), device, dtype)
    return _moved(torch.from_numpy(arr), device, dtype)


def _moved(t: torch.Tensor, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` on ``device`` as ``dtype``; from the host to another device, copied first and
    converted there: torch's own ``to(device, dtype)`` converts on the host for host-to-GPU
    copies (ATen's CUDA copy kernel), which moves float32 across the bus for float16 data."""
    device = torch.device(device)
    if t.device.type == "cpu" and device.type != "cpu" and t.dtype != dtype:
        return t.to(device=device).to(dtype=dtype)
    return t.to(device=device, dtype=dtype)


def as_labels(y, n: int, *, n_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Validate integer class labels of shape (n,) in ``[0, n_classes)``; return int64."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{name}: labels must be integers 0..C-1")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise ValueError(f"{name}: labels must be integers 0..C-1, got dtype {y.dtype}")
    y = np.array(y, dtype=np.int64)  # an owned, writable copy (read-only memmaps: torch warns)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        limit = f"[0, {n_classes})" if n_classes is not None else ">= 0"
        raise ValueError(f"{name}: labels out of range: found {lo}..{hi}, expected {limit}")
    return y
