"""Report figures (matplotlib's object API with the Agg canvas; PNG files).

Every function takes plain arrays/tables and an output path, writes one PNG and returns the path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sparse_probe.rundir import atomic_path

__all__ = [
    "VERDICT_COLORS",
    "fig_accuracy_path",
    "fig_agreement",
    "fig_counterfactual",
    "fig_identity_share",
    "fig_spurious_share",
    "fig_verdict_counts",
]

VERDICT_COLORS = {
    "core": "#2b8a3e", "spurious": "#c92a2a", "no_pattern": "#868e96", "undecided": "#f08c00",
    "pending": "#ced4da", "unaudited": "#e9ecef",
    "spurious:background": "#e03131", "spurious:mark": "#a61e4d", "spurious:identity": "#862e9c",
    "spurious:other": "#ff6b6b",
}


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return out


def fig_accuracy_path(
    features_per_class: np.ndarray,
    train_acc: np.ndarray,
    val_acc: np.ndarray,
    selected: int | None,
    out: str | Path,
    test_acc: Mapping[str, float | None] | None = None,
) -> Path:
    """Accuracy vs sparsity along the regularization path.

    Parameters
    ----------
    features_per_class : array of shape (L,)
        Mean non-zero weights per class at each path point.
    train_acc, val_acc : arrays of shape (L,)
    selected : int or None
        Index of the chosen point (marked).
    out : path
    test_acc : dict, optional
        ``{"dense": acc, "sparse": acc}`` drawn as horizontal reference lines.
    """
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    x = np.maximum(np.asarray(features_per_class, float), 1e-2)
    ax.plot(x, train_acc, "-o", ms=3, label="train")
    ax.plot(x, val_acc, "-o", ms=3, label="validation")
    if selected is not None and 0 <= selected < len(x):
        ax.axvline(x[selected], color="k", ls="--", lw=1)
        ax.plot([x[selected]], [val_acc[selected]], "k*", ms=12, label="selected")
    for name, v in (test_acc or {}).items():
        if v is not None:
            ax.axhline(v, ls=":", lw=1, color="grey")
            ax.text(x.min(), v, f" test ({name})", va="bottom", fontsize=7, color="grey")
    if np.all(x > 0) and x.max() / x.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("non-zero weights per class")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy along the elastic-net path")
    ax.legend(fontsize=8)
    return _save(fig, out)


#: Classes drawn one bar each in :func:`fig_spurious_share`; more are summarized.
MAX_CLASS_BARS = 40


def fig_spurious_share(shares: pd.DataFrame, out: str | Path,
                       max_classes: int = MAX_CLASS_BARS) -> Path:
    """Share of each class's weight mass (sum of |w|) per verdict.

    Parameters
    ----------
    shares : DataFrame indexed by class name
        Columns are categories (``core``, ``spurious:mark``, ..., ``unaudited``); rows sum to 1.
    max_classes : int
        With more classes, only the ``max_classes`` with the largest spurious share are drawn
        (the title says so), so the figure stays readable at 1,000 classes.
    """
    n_all = len(shares)
    title = "Where each class's evidence comes from"
    if n_all > max_classes:
        sp = shares[[c for c in shares.columns if str(c).startswith("spurious")]].sum(axis=1)
        order = np.argsort(-sp.to_numpy(), kind="stable")[:max_classes]
        shares = shares.iloc[order]
        title = f"Top {max_classes} of {n_all} classes by spurious weight share"
    fig = Figure(figsize=(6.5, 0.45 * max(len(shares), 3) + 1.2))
    ax = fig.add_subplot()
    left = np.zeros(len(shares))
    y = np.arange(len(shares))
    for col in shares.columns:
        vals = shares[col].to_numpy(float)
        ax.barh(y, vals, left=left, color=VERDICT_COLORS.get(col, "#adb5bd"), label=col)
        left += vals
    ax.set_yticks(y, [str(i) for i in shares.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of |weight| mass in the sparse layer")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return _save(fig, out)


def fig_verdict_counts(verdicts: pd.DataFrame, out: str | Path) -> Path:
    """Bar chart of verdict counts (spurious split by kind)."""
    labels = [v if v != "spurious" else f"spurious:{k}"
              for v, k in zip(verdicts["verdict"], verdicts["kind"], strict=True)]
    counts = pd.Series(labels, dtype=object).value_counts().sort_index()
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    ax.bar(range(len(counts)), counts.to_numpy(),
           color=[VERDICT_COLORS.get(k, "#adb5bd") for k in counts.index])
    ax.set_xticks(range(len(counts)), list(counts.index), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("features")
    ax.set_title("Crowd verdicts")
    return _save(fig, out)


def fig_agreement(agreement: Mapping[str, Mapping], out: str | Path) -> Path:
    """Fleiss' kappa and Krippendorff's alpha per question with bootstrap 95% intervals."""
    names = [q for q, v in agreement.items() if v.get("fleiss_kappa") is not None]
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for off, (stat, ci, label) in zip((-0.18, 0.18), (
            ("fleiss_kappa", "kappa_ci", "Fleiss' kappa"),
            ("krippendorff_alpha", "alpha_ci", "Krippendorff's alpha")), strict=True):
        vals = np.array([agreement[q][stat] for q in names], float)
        lo = np.array([agreement[q][ci][0] if agreement[q][ci][0] is not None else v
                       for q, v in zip(names, vals, strict=True)], float)
        hi = np.array([agreement[q][ci][1] if agreement[q][ci][1] is not None else v
                       for q, v in zip(names, vals, strict=True)], float)
        ax.bar(x + off, vals, width=0.36, label=label,
               yerr=np.vstack([vals - lo, hi - vals]).clip(0), capsize=3)
    ax.set_xticks(x, names)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
    ax.set_title("Inter-rater agreement (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return _save(fig, out)


def fig_identity_share(crowd: Mapping[str, float], examples: Mapping[str, float] | None,
                       out: str | Path) -> Path:
    """Identity terms among the top features of the standard (dense) vs the sparse layer.

    Parameters
    ----------
    crowd : mapping layer -> share
        Share of audited top features the crowd judged ``spurious: identity``.
    examples : mapping, optional
        Layer -> share of top features whose top-activating texts mostly mention an identity
        term (see :func:`analysis.report.identity_example_share`).
    """
    panels = [p for p in (crowd, examples) if p]
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    for ax, data in zip(axes, panels, strict=True):
        names = [n for n in ("dense", "sparse") if n in data]
        ax.bar(names, [data[n] for n in names],
               color=[{"dense": "#495057", "sparse": "#862e9c"}[n] for n in names])
        ax.set_ylim(0, 1)
        if data is crowd:
            ax.set_ylabel("share judged spurious: identity")
            ax.set_title("Crowd verdicts on top features", fontsize=9)
        else:
            ax.set_ylabel("share of identity-term features")
            ax.set_title(f"Top features whose top {data.get('k', '')} texts are "
                         f"≥{100 * data.get('threshold', 0):.0f}% identity", fontsize=8)
    fig.suptitle("Identity terms: standard (dense) vs sparse layer", fontsize=10)
    return _save(fig, out)


def fig_counterfactual(results: pd.DataFrame, out: str | Path) -> Path:
    """Flip rates with Wilson 95% intervals, one bar per (test, model, item).

    Parameters
    ----------
    results : DataFrame
        ``counterfactual.csv`` rows: ``test, model, label, flip_rate, ci_low, ci_high``.
    """
    results = results.head(40)
    fig = Figure(figsize=(7, 0.32 * max(len(results), 4) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(results))
    rate = results["flip_rate"].to_numpy(float)
    err = np.vstack([rate - results["ci_low"].to_numpy(float),
                     results["ci_high"].to_numpy(float) - rate]).clip(0)
    colors = ["#c92a2a" if "control" not in str(t) else "#868e96" for t in results["test"]]
    ax.barh(y, rate, xerr=err, color=colors, capsize=2)
    ax.set_yticks(y, [f"{r.test} · {r.model} · {r.label}" for r in results.itertuples()],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("flip rate (Wilson 95% CI)")
    ax.set_title("Counterfactual tests")
    return _save(fig, out)
