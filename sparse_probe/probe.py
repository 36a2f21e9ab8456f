"""Write and read the ``probe/`` directory: ``path.npz``, ``probe.json``, ``head.pt``."""

from __future__ import annotations

import os
from pathlib import Path as FsPath

import numpy as np

from sparse_probe.head import SparseHead
from sparse_probe.path import Path
from sparse_probe.rundir import (
    MissingArtefactError,
    RunDirError,
    features_fingerprint,
    fingerprint_of,
    read_features_meta,
    read_json,
    with_relative,
    write_json,
)
from sparse_probe.select import Selection

__all__ = ["accuracy_of", "load_probe", "probe_features_fingerprint", "probe_fingerprint",
           "top_features", "write_probe"]


def top_features(W: np.ndarray, classes: list[str] | None, k: int) -> list[dict]:
    """Top-``k`` nonzero features per class by |weight| (sign kept), rank 1 = largest.

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
        Weights on standardized features (comparable across features).
    """
    rows = []
    for c in range(W.shape[0]):
        order = np.argsort(-np.abs(W[c]), kind="stable")
        order = [j for j in order[:k] if W[c, j] != 0]
        for rank, j in enumerate(order, start=1):
            rows.append({"class": c, "class_name": classes[c] if classes else str(c),
                         "feature": int(j), "weight": float(W[c, j]), "rank": rank})
    return rows


def accuracy_of(path: Path, index: int, X, y) -> float | None:
    """Accuracy of point ``index`` on raw features ``X`` (n, d) — None without data."""
    if X is None:
        return None
    correct = 0
    n = len(y)
    for s in range(0, n, 65536):
        z = path.decision_function(np.asarray(X[s : s + 65536]), index)
        correct += int((z.argmax(1) == y[s : s + 65536]).sum())
    return correct / n


def _nanfloat(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def write_probe(
    path: Path,
    selection: Selection,
    out_dir: str | os.PathLike,
    *,
    features_dir: str | None = None,
    fit_options: dict | None = None,
    test: tuple | None = None,
    top_k: int = 10,
) -> dict:
    """Write ``path.npz``, ``head.pt`` and ``probe.json`` (see docs/contracts.md).

    The dense reference is the least-regularized point of the path. Returns the probe.json dict.
    """
    out = FsPath(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path.save(out / "path.npz")
    i_s, i_d = selection.index, len(path) - 1
    SparseHead.from_path(path, i_s).save(out / "head.pt")
    X_test, y_test = test if test is not None else (None, None)
    classes = path.classes or [str(c) for c in range(path.n_classes)]

    def acc(i):
        return {"train": _nanfloat(path.train_acc[i]), "val": _nanfloat(path.val_acc[i]),
                "test": accuracy_of(path, i, X_test, y_test)}

    probe = {
        "format": 1,
        **with_relative({"features_dir": features_dir}, "features_dir", out),
        "classes": classes,
        "d": path.n_features,
        "fit": dict(fit_options or {}, alpha=path.alpha, grouped=path.grouped,
                    n_points=len(path), lambda_max=float(path.lambdas[0]),
                    **{k: v for k, v in path.info.items()
                       if k in ("solver", "method", "tol", "threads", "threads_newton",
                                "threads_dropped_at", "threads_raised_at", "stopped",
                                "copied_columns")}),
        "selection": selection.to_json(),
        "accuracy": {"dense": acc(i_d), "sparse": acc(i_s)},
        "features_per_class": {"dense": float(path.features_per_class[i_d]),
                               "sparse": float(path.features_per_class[i_s])},
        "nnz": {"dense": int(path.nnz[i_d]), "sparse": int(path.nnz[i_s])},
        "kkt_violation_max": float(np.max(path.kkt_violation)),
        "top_features": {"sparse": top_features(path.weights[i_s], classes, top_k),
                         "dense": top_features(path.weights[i_d], classes, top_k)},
    }
    features_fp = _features_fp(features_dir)
    probe["inputs"] = {"features": features_fp}
    probe["fingerprint"] = fingerprint_of({
        "features": features_fp, "selection": probe["selection"], "fit": probe["fit"],
        "top": probe["top_features"]["sparse"]})
    write_json(out / "probe.json", probe)
    return probe


def _features_fp(features_dir: str | os.PathLike | None) -> str | None:
    """The fingerprint recorded in (or computed for) ``features_dir``; None without one."""
    if features_dir is None:
        return None
    try:
        meta = read_features_meta(features_dir)
    except (MissingArtefactError, ValueError):
        return None
    return meta.get("fingerprint") or features_fingerprint(features_dir, meta)


def load_probe(probe_dir: str | os.PathLike) -> tuple[dict, Path]:
    """Read ``probe.json`` and ``path.npz`` of a probe directory (the one probe reader).

    Raises
    ------
    sparse_probe.rundir.MissingArtefactError
        ``probe.json`` or ``path.npz`` is missing (also a ``FileNotFoundError``).
    sparse_probe.rundir.RunDirError
        ``probe.json`` is not valid JSON or not an object (also a ``ValueError``).
    """
    d = FsPath(probe_dir)
    probe = read_json(d / "probe.json", what="probe.json of a probe directory",
                      hint=f"is {d} a probe directory (sparse-probe fit --out)?")
    if not isinstance(probe, dict):
        raise RunDirError(f"{d / 'probe.json'}: expected a JSON object")
    return probe, Path.load(d / "path.npz")


def probe_fingerprint(probe: dict) -> str | None:
    """The fingerprint a probe.json records of itself (None for probes older than fingerprints)."""
    return probe.get("fingerprint")


def probe_features_fingerprint(probe: dict) -> str | None:
    """The fingerprint of the features a probe was fitted on (None when not recorded)."""
    return (probe.get("inputs") or {}).get("features")
