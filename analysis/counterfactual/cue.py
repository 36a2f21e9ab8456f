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
``background_swap``
    A background cue (a texture, a colour cast) covers the image around the object and cannot
    travel in a small patch: put the objects of images of other classes onto the backgrounds
    of f's top images (:mod:`analysis.counterfactual.background`); a flip is as in the paste
    tests. Controls: the same objects on the backgrounds of random images (of any class) where
    f is below its median (``ctrl_random``), and of the images where f is lowest
    (``ctrl_nontop``). The background is everything but the object where object masks are
    given (ground truth, or the user's), else f's evidence region of each top image (or the
    user's region), moved to the same place.
``background_removal``
    The images of class c where f is highest, on the ``ctrl_random`` backgrounds; a flip is a
    correct prediction that becomes wrong. Control: the same in other classes.

With object masks the paste and removal tests carry only the evidence outside the object: an
object part pasted into an image of another class moves it towards its class legitimately, and
is no evidence of a cue.

Decision per test and model: **supports** when the test's interval lies above every control's
interval and its rate is at least ``min_effect`` (0.05) above the highest control rate;
**refutes** when every arm has at least ``min_n`` examples and the effect is no more than
``margin`` above the highest control rate; **inconclusive** otherwise.

The feature's verdict comes from the insertion tests (:data:`DECIDING_TESTS`: the paste tests
and the background swap, or only those of the kind the crowd named; without object masks the
swap decides only when the crowd named the background, since it then moves wherever the feature
fires, the object included): it is supported when one
of them supports it (the pattern, added to images of other classes with their objects intact,
moves them to c) and refuted when all of them refute it. The removal tests measure reliance and
are reported beside it, but they cannot tell a cue from the object: removing a genuine object
part drops the class's accuracy too (on the shapes benchmark it "supports" most object
features).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.counterfactual.background import (
    background_plates,
    swap_backgrounds,
    swap_regions,
)
from analysis.counterfactual.evidence import (
    elsewhere_boxes,
    evidence_regions,
    fill_regions,
    firing_masks,
)
from analysis.counterfactual.models import Predictor
from analysis.counterfactual.stats import wilson_interval

__all__ = ["CUE_TESTS", "DECIDING_TESTS", "CueTestResult", "cue_test", "decide",
           "feature_verdict"]

logger = logging.getLogger(__name__)

#: Effect test -> its control tests.
CUE_TESTS: dict[str, tuple[str, ...]] = {
    "paste_same": ("paste_same_ctrl_elsewhere", "paste_same_ctrl_nontop"),
    "paste_random": ("paste_random_ctrl_elsewhere", "paste_random_ctrl_nontop"),
    "removal": ("removal_ctrl_other_classes",),
    "background_swap": ("background_swap_ctrl_random", "background_swap_ctrl_nontop"),
    "background_removal": ("background_removal_ctrl_other_classes",),
}
#: The crowd's spurious kind -> the tests whose outcome decides the feature's verdict (a mark
#: is carried by the paste tests, a background by the background swap; an unknown kind by any).
DECIDING_TESTS: dict[str | None, tuple[str, ...]] = {
    "mark": ("paste_same", "paste_random"),
    "background": ("background_swap",),
    None: ("paste_same", "paste_random", "background_swap"),
}
VERDICTS = ("supports", "refutes", "inconclusive")
#: Without object masks the background swap moves every pixel where the feature's map is at
#: least this fraction of its range (:func:`~analysis.counterfactual.evidence.firing_masks`).
SWAP_FRAC = 0.5


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


def feature_verdict(test_verdicts: Mapping[str, str], kind: str | None = None,
                    object_masks: bool = True) -> str:
    """Supported when a deciding test supports, refuted when every deciding test refutes.

    Parameters
    ----------
    test_verdicts : mapping test name -> verdict
        The effect tests of :data:`CUE_TESTS` that were run.
    kind : {"mark", "background"} or None
        What the crowd says the feature's pattern is; it picks the deciding tests
        (:data:`DECIDING_TESTS`; any other kind, or None, lets every insertion test decide).
        The removal tests never decide: removing a genuine object part drops the class's
        accuracy too.
    object_masks : bool
        Whether the tests knew the objects. Without masks the background swap moves wherever
        the feature fires, which for a feature of the object is the object itself: it then
        decides only when the crowd says the pattern is the background.
    """
    tests = DECIDING_TESTS.get(kind, DECIDING_TESTS[None])
    if not object_masks and kind != "background":
        tests = tuple(t for t in tests if t != "background_swap")
    deciding = [v for t, v in test_verdicts.items() if t in tests]
    if "supports" in deciding:
        return "supports"
    if deciding and all(v == "refutes" for v in deciding):
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
    object_masks: np.ndarray | None = None,
    kind: str | None = None,
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
    object_masks : bool array of shape (N, H, W), optional
        The object of each image (ground truth of a built-in dataset, or the user's masks).
        With them the paste and removal tests carry only evidence outside the object (an
        object part pasted into other images moves them legitimately), and the background
        tests move whole backgrounds (everything but the object); without them the background
        tests move each image's evidence region.
    kind : {"mark", "background"} or None
        The crowd's spurious kind, which picks the tests that decide (:func:`feature_verdict`;
        without object masks the background swap decides only for ``"background"``).

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
    obj = None
    if object_masks is not None:
        obj = np.asarray(object_masks).astype(bool)
        if obj.shape != (N, H, W):
            raise ValueError(f"object_masks: expected shape ({N}, {H}, {W}), got {obj.shape}")
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
        regions = cores
    else:
        # with object masks, the evidence outside the object is what a cue can be
        regions, cores, boxes = evidence_regions(
            maps, (H, W), frac, max_area, outside=None if obj is None else obj[top_idx])
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

    # --- background swap: the other classes' objects over the top images' backgrounds, vs
    # over the backgrounds of random images (of any class) where the feature is below its
    # median, and of the images where it is lowest
    quiet = np.setdiff1d(order[(N + 1) // 2:], top_idx)
    donors = rng.choice(quiet if len(quiet) else np.arange(N), size=n)
    low_which = low_idx[which % len(low_idx)]
    if obj is not None:
        plates = {"": background_plates(src, obj[top_idx])[which],
                  "_ctrl_random": background_plates(images[donors], obj[donors]),
                  "_ctrl_nontop": background_plates(images[low_which], obj[low_which])}
        for suffix, plate in plates.items():
            arms[f"background_swap{suffix}"] = swap_backgrounds(base, obj[pick], plate)
    else:
        where = regions if user_mask is not None else firing_masks(maps, (H, W), SWAP_FRAC)
        for suffix, donor in (("", src[which]), ("_ctrl_random", images[donors]),
                              ("_ctrl_nontop", images[low_which])):
            arms[f"background_swap{suffix}"] = swap_regions(base, where[which], donor)

    # --- removal in class `target` vs in other classes, where the feature is highest: the
    # evidence region filled with the median colour, or the background swapped for that of
    # random images where the feature is below its median (the swap control's donors)
    def highest(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        k = min(n, max(1, (len(idx) + 1) // 2)) if len(idx) else 0
        return idx[np.argsort(-activation[idx], kind="stable")[:k]]

    rem_idx = {"removal": highest(labels == target),
               "removal_ctrl_other_classes": highest(labels != target)}
    rem_idx.update({f"background_{name}": idx for name, idx in rem_idx.items()})
    quiet_plates = (plates["_ctrl_random"] if obj is not None else None)
    removed = {}
    for name, idx in rem_idx.items():
        if not len(idx):
            continue  # an empty arm: its row says n = 0
        background = name.startswith("background_")
        if user_mask is not None:
            m = np.repeat(user_mask[None], len(idx), axis=0)
        elif background and obj is None:
            m = firing_masks(maps_fn(images[idx]), (H, W), SWAP_FRAC)
        elif not background:
            m, _, _ = evidence_regions(maps_fn(images[idx]), (H, W), frac, max_area,
                                       outside=None if obj is None else obj[idx])
        j = np.arange(len(idx)) % n
        if not background:
            removed[name] = fill_regions(images[idx], m)
        elif quiet_plates is not None:
            removed[name] = swap_backgrounds(images[idx], obj[idx], quiet_plates[j])
        else:
            removed[name] = swap_regions(images[idx], m, images[donors[j]])

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
            control_of = "" if arm in CUE_TESTS else arm.split("_ctrl_")[0]
            if not len(idx):
                result.rows.append(_row(arm, control_of, model,
                                        target, np.zeros(0, bool), np.zeros(0, bool),
                                        np.zeros(0), np.zeros(0)))
                continue
            own = labels[idx]
            q0, q1 = predict(images[idx]), predict(removed[arm])
            r = np.arange(len(idx))
            result.rows.append(_row(arm, control_of, model, target,
                                    q0.argmax(1) == own, q1.argmax(1) != own,
                                    q1[r, own] - q0[r, own],
                                    _logit(q1[r, own]) - _logit(q0[r, own])))
        mine = {r["test"]: r for r in result.rows if r["model"] == model}
        test_verdicts = {}
        for test, controls in CUE_TESTS.items():
            test_verdicts[test] = decide(mine[test], [mine[c] for c in controls], min_n)
            mine[test]["verdict"] = test_verdicts[test]
        result.verdicts[model] = feature_verdict(test_verdicts, kind, obj is not None)
        logger.info("cue test target=%d model=%s: %s", target, model, result.verdicts[model])
    return result
