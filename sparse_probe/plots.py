"""The paper's accuracy-vs-sparsity figure for a path (matplotlib, Agg)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sparse_probe.path import Path
from sparse_probe.rundir import atomic_path

__all__ = ["plot_path"]


def plot_path(path: Path, out: str | os.PathLike, selected: int | None = None) -> None:
    """Save accuracy (train/val) against mean features per class, and nnz against λ."""
    fpc = path.features_per_class
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    x = np.maximum(fpc, 1e-1)
    ax1.plot(x, path.train_acc, label="train", color="tab:blue")
    if not np.all(np.isnan(path.val_acc)):
        ax1.plot(x, path.val_acc, label="validation", color="tab:orange")
    if selected is not None:
        ax1.axvline(x[selected], color="gray", ls="--", lw=1)
        ax1.annotate(f"selected\n{fpc[selected]:.1f} feat/class", (x[selected], ax1.get_ylim()[0]),
                     xytext=(4, 8), textcoords="offset points", fontsize=8)
    ax1.set_xscale("log")
    ax1.set_xlabel("mean features per class (log)")
    ax1.set_ylabel("accuracy")
    ax1.set_title("Accuracy vs sparsity")
    ax1.legend()
    ax2.plot(path.lambdas, path.nnz, color="tab:green")
    ax2.set_xscale("log")
    ax2.invert_xaxis()
    ax2.set_xlabel("λ (log, decreasing)")
    ax2.set_ylabel("nonzero weights")
    ax2.set_title("Regularization path")
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
