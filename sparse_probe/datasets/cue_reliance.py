"""Does a trained model rely on each planted cue? Measured where cues are independent of class.

In the shapes test split every image carries each planted cue with the same probability,
independently of its class (and of the other cues), so the cue is a randomized treatment
there: comparing images *of other classes* with and without the cue measures the cue's own
effect on the model's decision, with nothing else changed on average.

:func:`cue_effects` gives, per cue, the share of other-class test images the network's own
last layer (the "original" model) assigns to the cue's class with the cue and without it, their
difference (``effect``), the cue class's accuracy with and without the cue, and ``learned``:
whether the effect is significantly above zero (one-sided two-proportion z-test at
:data:`LEARNED_Z`, i.e. p < 0.01). A cue the model does not rely on cannot be found by any
audit of its features: :func:`sparse_probe.datasets.prepare.prepare_builtin` checks every
planted cue after training the built-in shapes model (on a split of its own), and the demo
summary reports the measurement on the test split
(:func:`sparse_probe.demo.reliance.cue_reliance`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["LEARNED_Z", "cue_effect", "cue_effects"]

#: One-sided z of a significant effect (p < 0.01).
LEARNED_Z = 2.326


def cue_effect(pred: np.ndarray, labels: np.ndarray, has_cue: np.ndarray, k: int
               ) -> dict[str, Any]:
    """The effect of one cue tied to class ``k`` on the predictions of one split.

    Parameters
    ----------
    pred, labels : ndarray of int, shape (n,)
    has_cue : ndarray of bool, shape (n,)
        Which images carry the cue (independent of the class: a test split).
    k : int
        The cue's class.

    Returns
    -------
    dict
        ``to_class_with`` / ``to_class_without``: share of other-class images predicted as
        ``k`` with / without the cue; ``effect``: their difference; ``z``: its two-proportion
        z statistic; ``class_acc_with`` / ``class_acc_without``: accuracy on class ``k`` with /
        without the cue (None where no image); ``n_with`` / ``n_without``: other-class images;
        ``learned``: ``z >= LEARNED_Z``.
    """
    pred, labels, has_cue = np.asarray(pred), np.asarray(labels), np.asarray(has_cue, bool)
    if not (pred.shape == labels.shape == has_cue.shape) or pred.ndim != 1:
        raise ValueError(f"cue_effect: pred {pred.shape}, labels {labels.shape} and has_cue "
                         f"{has_cue.shape} must be equal 1-d shapes")
    other = labels != k
    a, b = other & has_cue, other & ~has_cue
    n1, n0 = int(a.sum()), int(b.sum())
    p1 = float((pred[a] == k).mean()) if n1 else 0.0
    p0 = float((pred[b] == k).mean()) if n0 else 0.0
    pooled = (p1 * n1 + p0 * n0) / max(n1 + n0, 1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / max(n1, 1) + 1 / max(n0, 1)))
    z = (p1 - p0) / se if se > 0 else 0.0

    def acc(mask: np.ndarray) -> float | None:
        return float((pred[mask] == k).mean()) if mask.any() else None

    return {"to_class_with": round(p1, 4), "to_class_without": round(p0, 4),
            "effect": round(p1 - p0, 4), "z": round(z, 2), "n_with": n1, "n_without": n0,
            "class_acc_with": acc(~other & has_cue), "class_acc_without": acc(~other & ~has_cue),
            "learned": bool(z >= LEARNED_Z)}


def cue_effects(pred: np.ndarray, split: Any) -> dict[str, dict[str, Any]]:
    """:func:`cue_effect` of every planted cue of a shapes split whose cues are independent
    of the class (a test split), from the predictions ``pred`` (n,) on its images."""
    return {cue: cue_effect(pred, split.labels, split.has_cue[cue], k)
            for cue, k in split.cue_class.items()}
