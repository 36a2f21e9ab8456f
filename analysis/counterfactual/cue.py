"""Cue tests of one image feature: paste its evidence (where it sat, and at random places) and
remove it, each against matched controls, and decide whether the tests support the feature
being a cue the model relies on.

For a feature f of class c, the *evidence* of f in an image is the region where f's spatial map,
upsampled to the image, is high (:mod:`analysis.counterfactual.evidence`), or a region / patch
the user gives. Tests (each a proportion with a 95% Wilson interval):

``paste_same``
    Cut the evidence (the core's pixels) from each of f's ``top`` images and paste it at the same
    position into images of other classes; a flip is a prediction that was not c and becomes c.
    Controls: the same mask over pixels from elsewhere in the same top image
    (``ctrl_elsewhere``, where the map is lowest) and over the same place in the images where f
    is lowest (``ctrl_nontop``), pasted at the same place.
``paste_random``
    The same patches and controls at random (seeded) positions.
``removal``
    Fill the evidence region of f with the image's median colour in the images of class c where
    f is highest; a flip is a correct prediction that becomes wrong (the accuracy drop).
    Control (``ctrl_other_classes``): the same removal in the images of other classes where f
    is highest, each scored against its own class.

Decision per test and model: **supports** when the test's interval lies above every control's
interval and its rate is at least ``min_effect`` (0.05) above the highest control rate; **refutes** when every arm has at least ``min_n`` examples and the effect is no more
than ``margin`` above the highest control rate; **inconclusive** otherwise.

The feature's verdict comes from the paste tests: it is supported when a paste test supports it
(the pattern alone, added to images of other classes with their objects intact, moves them to
c) and refuted when both paste tests refute it. The removal test measures reliance and is
reported beside it, but it cannot tell a cue from the object: removing a genuine object part
drops the class's accuracy too (on the shapes benchmark it "supports" most object features).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.counterfactual.evidence import elsewhere_boxes, evidence_regions, fill_regions
from analysis.counterfactual.models import Predictor
from analysis.counterfactual.stats import wilson_interval

__all__ = ["CUE_TESTS", "CueTestResult", "cue_test", "decide", "feature_verdict"]

logger = logging.getLogger(__name__)

#: Effect test -> its control tests.
CUE_TESTS: dict[str, tuple[str, ...]] = {
    "paste_same": ("paste_same_ctrl_elsewhere", "paste_same_ctrl_nontop"),
    "paste_random": ("paste_random_ctrl_elsewhere", "paste_random_ctrl_nontop"),
    "removal": ("removal_ctrl_other_classes",),
}
VERDICTS = ("supports", "refutes", "inconclusive")


@dataclass
class CueTestResult:
    """Outcome of :func:`cue_test` for one feature.

    Attributes
    ----------
    rows : list of dict
        One per (test, model): ``test``, ``control_of`` (the effect test a control belongs to,
        else ``""``), ``model``, ``target``, ``n``, ``flips``, ``flip_rate``, ``ci_low``,
        ``ci_high``, ``mean_prob_increase`` and ``mean_logit_increase`` (of the target class
        for paste tests, of each image's own class for removals), ``verdict`` (effect rows).
    verdicts : dict
        ``model -> supports | refutes | inconclusive`` for the feature.
    boxes : int array of shape (k, 4)
        The evidence boxes ``(y0, x0, y1, x1)`` cut from the top images.
    """

    rows: list[dict] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _paste_at(base: np.ndarray, patches: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              which: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Paste the masked pixels of ``patches[which[i]]`` with top-left corner ``pos[i]``."""
    out = base.copy()
    for i, (y, x) in enumerate(pos):
        p, m = patches[which[i]], masks[which[i]]
        out[i, y:y + p.shape[0], x:x + p.shape[1]][m] = p[m]
    return out


def _row(test: str, control_of: str, model: str, target: int, eligible: np.ndarray,
         flips: np.ndarray, dp: np.ndarray, dl: np.ndarray) -> dict:
    k, m = int((flips & eligible).sum()), int(eligible.sum())
    lo, hi = wilson_interval(k, m)
    return {"test": test, "control_of": control_of, "model": model, "target": int(target),
            "n": m, "flips": k, "flip_rate": k / m if m else float("nan"), "ci_low": lo,
            "ci_high": hi, "mean_prob_increase": float(np.mean(dp)) if len(dp) else float("nan"),
            "mean_logit_increase": float(np.mean(dl)) if len(dl) else float("nan")}


def _user_mask(region: tuple[int, int, int, int] | np.ndarray, H: int, W: int) -> np.ndarray:
    """A user-given box ``(y0, x0, y1, x1)`` or mask (H, W) as a bool mask (H, W)."""
    arr = np.asarray(region)
    if arr.ndim == 2:
        if arr.shape != (H, W) or not arr.astype(bool).any():
            raise ValueError(f"region: expected a mask of shape ({H}, {W}) with at least one "
                             f"pixel set, got shape {arr.shape}")
        return arr.astype(bool)
    if arr.shape != (4,):
        raise ValueError(f"region: expected (y0, x0, y1, x1) or a mask, got {region!r}")
    y0, x0, y1, x1 = (int(v) for v in arr)
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise ValueError(f"region: expected 0 <= y0 < y1 <= {H} and 0 <= x0 < x1 <= {W}, "
                         f"got {tuple(int(v) for v in arr)}")
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def decide(effect: Mapping, controls: Sequence[Mapping], min_n: int = 30,
           margin: float = 0.02, min_effect: float = 0.05) -> str:
    """``supports`` / ``refutes`` / ``inconclusive`` for one effect row against its controls.

    Parameters
    ----------
    effect, controls : mappings with ``n``, ``flip_rate``, ``ci_low``, ``ci_high``
    min_n : int
        Examples every arm needs before a test may refute.
    margin : float
        Largest excess of the effect over the highest control rate that still refutes.
    min_effect : float
        Smallest excess over the highest control rate that may support: with thousands of
        edits a real but negligible sensitivity (a few points) is not evidence of reliance.
    """
    if not controls or not effect["n"] or any(not c["n"] for c in controls):
        return "inconclusive"
    top = max(c["flip_rate"] for c in controls)
    if all(effect["ci_low"] > c["ci_high"] for c in controls) \
            and effect["flip_rate"] >= top + min_effect:
        return "supports"
    if (effect["n"] >= min_n and all(c["n"] >= min_n for c in controls)
            and effect["flip_rate"] <= top + margin):
        return "refutes"
    return "inconclusive"


def feature_verdict(test_verdicts: Mapping[str, str]) -> str:
    """Supported when a paste test supports, refuted when every paste test refutes.

    Parameters
    ----------
    test_verdicts : mapping test name -> verdict
        At least the paste tests of :data:`CUE_TESTS`.
    """
    paste = [v for t, v in test_verdicts.items() if t.startswith("paste")]
    if "supports" in paste:
        return "supports"
    if paste and all(v == "refutes" for v in paste):
        return "refutes"
    return "inconclusive"


def cue_test(
    predictors: Mapping[str, Predictor],
    images: np.ndarray,
    labels: np.ndarray,
    activation: np.ndarray,
    maps_fn: Callable[[np.ndarray], np.ndarray],
    target: int,
    n: int = 200,
    top: int = 16,
    seed: int = 0,
    frac: float = 0.8,
    max_area: float = 0.0625,
    region: tuple[int, int, int, int] | np.ndarray | None = None,
    patch: np.ndarray | None = None,
    min_n: int = 30,
) -> CueTestResult:
    """Paste and removal tests of one feature, with their controls and a verdict per model.

    Parameters
    ----------
    predictors : mapping name -> predictor
        Each maps images (k, H, W, C) to probabilities (k, n_classes).
    images : array of shape (N, H, W, C)
        The test pool (the top / lowest images and the perturbed ones are drawn from it).
    labels : int array of shape (N,)
    activation : array of shape (N,)
        The feature's (pooled) activation on ``images``.
    maps_fn : callable
        ``maps_fn(images (k, H, W, C)) -> (k, h, w)``: the feature's spatial map.
    target : int
        The feature's class.
    n : int
        Perturbed images per paste test; at most ``n`` images per removal arm.
    top : int
        Top-activating images to cut evidence from (and lowest ones for the control).
    seed : int
    frac, max_area
        See :func:`analysis.counterfactual.evidence.evidence_regions`: the paste tests carry
        each top image's evidence core (its pixels under the core's mask), removal fills the
        whole evidence region.
    region : (y0, x0, y1, x1) or bool array of shape (H, W), optional
        A user-given evidence box (pixels, end exclusive) or mask instead of the map's region.
    patch : array of shape (h, w, C), optional
        A user-given cue patch; pasted at ``region``'s corner if given, else where the evidence
        box of each top image starts.
    min_n : int
        See :func:`decide`.

    Returns
    -------
    CueTestResult
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    activation = np.asarray(activation, dtype=float)
    N, H, W = images.shape[:3]
    if not (len(labels) == len(activation) == N):
        raise ValueError(f"labels/activation: expected {N} values each, got {len(labels)} and "
                         f"{len(activation)}")
    rng = np.random.default_rng(seed)
    order = np.argsort(-activation, kind="stable")
    top_idx = order[: max(1, min(top, N))]
    low_idx = order[::-1][: len(top_idx)]
    src = images[top_idx]
    maps = maps_fn(src)
    user_mask = _user_mask(region, H, W) if region is not None else None
    if user_mask is not None:
        ys, xs = np.nonzero(user_mask)
        boxes = np.tile([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], (len(src), 1))
        cores = np.repeat(user_mask[None], len(src), axis=0)
    else:
        _, cores, boxes = evidence_regions(maps, (H, W), frac, max_area)
    masks = [cores[i, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(boxes)]
    if patch is not None:
        patch = np.asarray(patch, dtype=images.dtype)
        if patch.ndim != 3 or patch.shape[2] != images.shape[3] or patch.shape[0] > H \
                or patch.shape[1] > W:
            raise ValueError(f"patch: expected shape (h<={H}, w<={W}, {images.shape[3]}), got "
                             f"{patch.shape}")
        ph, pw = patch.shape[:2]
        ys = np.clip(boxes[:, 0], 0, H - ph)
        xs = np.clip(boxes[:, 1], 0, W - pw)
        boxes = np.stack([ys, xs, ys + ph, xs + pw], 1)
        patches = [patch] * len(src)
        masks = [np.ones((ph, pw), bool)] * len(src)
    else:
        patches = [src[i, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(boxes)]
    other = elsewhere_boxes(maps, (H, W), boxes)
    ctrl_else = [src[i, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(other)]
    ctrl_low = [images[low_idx[i], y0:y1, x0:x1] for i, (y0, x0, y1, x1) in enumerate(boxes)]
    result = CueTestResult(boxes=boxes)

    # --- paste tests on images of other classes
    pool = np.flatnonzero(labels != target)
    if len(pool) == 0:
        raise ValueError(f"labels: no image outside class {target} to paste into")
    pick = rng.choice(pool, size=n, replace=len(pool) < n)
    base = images[pick]
    which = rng.integers(0, len(patches), n)
    same = boxes[which, :2]
    rand = np.stack([rng.integers(0, H - (boxes[which, 2] - boxes[which, 0]) + 1),
                     rng.integers(0, W - (boxes[which, 3] - boxes[which, 1]) + 1)], 1)
    arms = {}
    for place, pos in (("paste_same", same), ("paste_random", rand)):
        arms[place] = _paste_at(base, patches, masks, which, pos)
        arms[f"{place}_ctrl_elsewhere"] = _paste_at(base, ctrl_else, masks, which, pos)
        arms[f"{place}_ctrl_nontop"] = _paste_at(base, ctrl_low, masks, which, pos)

    # --- removal in class `target` vs in other classes, where the feature is highest
    def highest(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        k = min(n, max(1, (len(idx) + 1) // 2)) if len(idx) else 0
        return idx[np.argsort(-activation[idx], kind="stable")[:k]]

    rem_idx = {"removal": highest(labels == target),
               "removal_ctrl_other_classes": highest(labels != target)}
    removed = {}
    for name, idx in rem_idx.items():
        if not len(idx):
            removed[name] = images[:0]
            continue
        if user_mask is not None:
            m = np.repeat(user_mask[None], len(idx), axis=0)
        else:
            m, _, _ = evidence_regions(maps_fn(images[idx]), (H, W), frac, max_area)
        removed[name] = fill_regions(images[idx], m)

    for model, predict in predictors.items():
        p0 = predict(base)
        eligible = p0.argmax(1) != target
        for arm, imgs in arms.items():
            p1 = predict(imgs)
            flips = p1.argmax(1) == target
            control_of = "" if arm in CUE_TESTS else arm.split("_ctrl_")[0]
            result.rows.append(_row(arm, control_of, model, target, eligible, flips,
                                    p1[:, target] - p0[:, target],
                                    _logit(p1[:, target]) - _logit(p0[:, target])))
        for arm, idx in rem_idx.items():
            if not len(idx):
                result.rows.append(_row(arm, "" if arm == "removal" else "removal", model,
                                        target, np.zeros(0, bool), np.zeros(0, bool),
                                        np.zeros(0), np.zeros(0)))
                continue
            own = labels[idx]
            q0, q1 = predict(images[idx]), predict(removed[arm])
            r = np.arange(len(idx))
            result.rows.append(_row(arm, "" if arm == "removal" else "removal", model, target,
                                    q0.argmax(1) == own, q1.argmax(1) != own,
                                    q1[r, own] - q0[r, own],
                                    _logit(q1[r, own]) - _logit(q0[r, own])))
        mine = {r["test"]: r for r in result.rows if r["model"] == model}
        test_verdicts = {}
        for test, controls in CUE_TESTS.items():
            test_verdicts[test] = decide(mine[test], [mine[c] for c in controls], min_n)
            mine[test]["verdict"] = test_verdicts[test]
        result.verdicts[model] = feature_verdict(test_verdicts)
        logger.info("cue test target=%d model=%s: %s", target, model, result.verdicts[model])
    return result
