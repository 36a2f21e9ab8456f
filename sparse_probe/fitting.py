"""The fit stage as one library function: a features folder in, a probe folder out.

:func:`fit_features` reads ``features/`` (``train.npy`` + ``train_labels.npy``, optional
``val``/``test`` splits, ``meta.json``), fits the elastic-net path
(:func:`sparse_probe.fit.fit_path`), selects the sparse decision layer
(:func:`sparse_probe.select.select`) and writes ``probe/`` (``path.npz``, ``probe.json``,
``head.pt``; :func:`sparse_probe.probe.write_probe`). ``sparse-probe fit`` and the demo both
call it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sparse_probe.fit import fit_path
from sparse_probe.penalties import DEFAULT_ALPHA
from sparse_probe.probe import write_probe
from sparse_probe.rundir import RunDirError, read_features_meta
from sparse_probe.select import parse_rule, select

__all__ = ["fit_features", "load_features_split"]


def load_features_split(features_dir: str | os.PathLike[str], split: str, *,
                        required: bool) -> tuple[str | None, np.ndarray | None]:
    """Locate one split of a features folder and load its labels.

    Parameters
    ----------
    features_dir : path-like
        A features folder (``{split}.npy`` of shape (n, d), float32, and
        ``{split}_labels.npy`` of shape (n,), int64).
    split : str
        ``"train"``, ``"val"``, ``"test"``, ...
    required : bool
        Raise when the split is absent (otherwise return ``(None, None)``).

    Returns
    -------
    x_path : str or None
        Path of ``{split}.npy`` (memory-mapped by the solver, never loaded whole here).
    y : ndarray of shape (n,) or None
        The labels.

    Raises
    ------
    RunDirError
        A required split is missing, its labels are missing or unreadable, or the shapes of
        features and labels disagree (the message names the file).
    """
    d = Path(features_dir)
    xf = d / f"{split}.npy"
    yf = d / f"{split}_labels.npy"
    if not xf.exists():
        if required:
            raise RunDirError(f"{xf}: missing; expected {split}.npy (n×d float32) from "
                              "`sparse-probe extract`")
        return None, None
    if not yf.exists():
        raise RunDirError(f"{yf}: missing; expected int64 labels beside {xf.name}")
    try:
        y = np.load(yf, allow_pickle=False)
        shape = np.load(xf, mmap_mode="r").shape
    except ValueError as exc:
        raise RunDirError(f"{xf.parent}: unreadable .npy ({exc})") from None
    if y.ndim != 1 or len(shape) != 2 or shape[0] != y.shape[0]:
        got = y.shape[0] if y.ndim == 1 else y.shape
        raise RunDirError(f"{yf}: {got} labels for {shape} features in {xf.name}")
    return str(xf), y


def fit_features(
    features_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    alpha: float = DEFAULT_ALPHA,
    n_lambdas: int = 100,
    eps: float = 1e-3,
    grouped: bool = False,
    select_rule: str = "val_acc_within=0.05",
    solver: str = "torch",
    device: str | None = None,
    tol: float = 1e-3,
    max_features_per_class: float | None = None,
    max_seconds: float | None = None,
    top_k: int = 10,
    progress: bool = True,
    threads: int | str | None = None,
) -> dict[str, Any]:
    """Fit the elastic-net path on a features folder and write the probe folder.

    Parameters
    ----------
    features_dir : path-like
        ``RUN/features``: ``train.npy`` (n_train, d) float32 and ``train_labels.npy``
        (n_train,) int64 are required; ``val`` and ``test`` splits are optional (validation
        accuracy drives the default selection rule; test accuracy is reported). ``meta.json``,
        when present, gives the class names (read with
        :func:`sparse_probe.rundir.read_features_meta`).
    out_dir : path-like
        ``RUN/probe``, created if needed: ``path.npz``, ``probe.json``, ``head.pt``.
    alpha : float
        L1 share α in (0, 1].
    n_lambdas : int
        Points on the path.
    eps : float
        Smallest λ as a fraction of λ_max.
    grouped : bool
        glmnet's grouped multinomial penalty (L2 over classes per feature).
    select_rule : str
        ``val_acc_within=Δ``, ``features_per_class=K`` or ``lambda=λ``
        (:func:`sparse_probe.select.parse_rule`).
    solver : {"torch", "owlqn", "newton", "fista", "glmnet"}
        As :func:`sparse_probe.fit.fit_path`'s (``probe.json`` records the solvers used in
        ``fit.method``).
    device : str, optional
        torch device of the solver (``"cpu"``, ``"cuda"``).
    tol : float
        KKT tolerance relative to α·λ at each point.
    max_features_per_class : float, optional
        Stop the path once the mean number of features per class exceeds this.
    max_seconds : float, optional
        A time budget for the path (:func:`sparse_probe.fit.fit_path`'s): it stops after the
        first point past it, and ``probe.json``'s ``fit.stopped`` says so.
    top_k : int
        Top features per class listed in ``probe.json``.
    progress : bool
        A tqdm bar over the path.
    threads : int or "auto", optional
        CPU threads, as :func:`sparse_probe.fit.fit_path`'s (recorded in ``probe.json``'s
        ``fit.threads``).

    Returns
    -------
    dict
        The content of ``probe.json`` (docs/contracts.md, ``probe/``).

    Raises
    ------
    RunDirError
        The features folder, a split or ``meta.json`` is missing or malformed.
    ValueError
        A bad selection rule or fitting option (the message says which).
    """
    rule, value = parse_rule(select_rule)
    features = Path(features_dir)
    if not features.is_dir():
        raise RunDirError(f"{features}: not a directory; expected a features folder from "
                          "`sparse-probe extract`")
    meta = read_features_meta(features) if (features / "meta.json").exists() else {}
    X, y = load_features_split(features, "train", required=True)
    X_val, y_val = load_features_split(features, "val", required=False)
    X_test, y_test = load_features_split(features, "test", required=False)
    classes = meta.get("classes")
    path = fit_path(X, y, alpha=alpha, n_lambdas=n_lambdas, eps=eps, grouped=grouped, tol=tol,
                    device=device, X_val=X_val, y_val=y_val,
                    n_classes=len(classes) if classes else None, classes=classes,
                    solver=solver, max_features_per_class=max_features_per_class,
                    max_seconds=max_seconds, progress=progress, threads=threads)
    selection = select(path, rule, value)
    test = (np.load(X_test, mmap_mode="r"), y_test) if X_test else None
    return write_probe(path, selection, out_dir, features_dir=str(features.resolve()),
                       fit_options={"n_lambdas": n_lambdas, "eps": eps, "tol": tol},
                       test=test, top_k=top_k)
