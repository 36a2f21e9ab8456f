"""Does the counterfactual test support every planted cue and no object feature?

Shapes (images): for each variant (seed x cue placement x cue strength) the built-in ShapesCNN
is trained on ``make_shapes`` with two planted cues. The placement the test was developed on is
the dataset's default (``watermark``: a mark at a random place, tied to *triangle*;
``texture``: background stripes, tied to *ring*); ``--heldout`` runs placements and seeds it
was never tuned on (:data:`HELDOUT_PLACEMENTS`: other classes, and two more kinds, a border
``stripe`` (mark) and a background ``tint``). In the test split each cue is in half of the
images of every class. Ground truth comes from the generator, which can redraw the same test
images without their cues: the *cue feature* of a cue is the channel through which the cue pushes
its class's logit most (the drop of its activation when the cue is removed from images that
carry no other cue, times its weight for the class; both positive: a channel the cue raises and
that votes for the class); the *object feature*
of a class is the channel (voting for the class) that correlates most with it among channels the
cues barely move (mean relative change < 0.15). ``reliance`` is how much more often images of
other classes carrying the cue are predicted as the cue's class than the same images without
it: a cue the model does not use cannot be confirmed. Each feature goes through
:func:`analysis.counterfactual.cue_test` with its defaults (spatial maps through
``sparse_probe.extract.spatial_maps``; the dataset's object masks, unless ``--no-masks``; no
crowd kind, so every insertion test may decide); a cue feature should get ``supports``, an
object feature never. Columns: flip rates of the paste tests, the removal, the background swap
(``bg_swap``) and the background removal, each beside its highest control.

Toxicity (texts): the built-in encoder trained on ``make_toxicity`` (identity terms tied to the
toxic label with probability ``bias``); each identity group is inserted into the test comments
and compared with the ``objects`` lexicon (the control) by
:func:`analysis.counterfactual.group_verdicts`; the neutral ``names`` group, compared with the
same control, should not be supported.

Usage: ``python benchmarks/bench_counterfactual.py [--seeds 0 1 2] [--heldout] [--quick]``;
prints a table per variant and the totals per cue kind (mark, background, identity).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

#: The cue placements the test was developed on (the dataset's defaults) and held-out ones
#: (other classes and two more cue kinds: a border stripe and a background tint).
DEFAULT_PLACEMENT = "watermark=triangle,texture=ring"
HELDOUT_PLACEMENTS = ("stripe=circle,tint=star", "texture=square,watermark=cross",
                      "tint=cross,stripe=ring", "texture=star,stripe=triangle")


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean()
    den = np.sqrt((a * a).sum(0) * (b * b).sum()) + 1e-12
    return (a * b[:, None]).sum(0) / den


def parse_placement(text: str) -> dict[str, str]:
    """``"watermark=triangle,texture=ring"`` -> ``{"watermark": "triangle", ...}``."""
    out = {}
    for part in text.split(","):
        name, _, cls = part.partition("=")
        out[name.strip()] = cls.strip()
    return out


def shapes_variant(seed: int, cue_strength: float, n_train: int, size: int, epochs: int,
                   n: int, frac: float, max_area: float, placement: str = DEFAULT_PLACEMENT,
                   masks: bool = True) -> list[dict]:
    from analysis.counterfactual import cue_test, torch_predictor
    from sparse_probe.datasets import make_shapes
    from sparse_probe.datasets.models import train_shapes_model
    from sparse_probe.extract import spatial_maps

    params = {"n_train": n_train, "n_val": 120, "n_test": 900, "size": size, "seed": seed}
    cues = parse_placement(placement)
    ds = make_shapes(**params, cue_strength=cue_strength, cues=cues)
    # the same test objects without any cue (the generator draws the cue flags either way)
    clean = make_shapes(**params, cue_strength=cue_strength, cues=cues, test_cue_rate=0.0).test
    model, info = train_shapes_model(ds, epochs=epochs, width=32, progress=False, seed=seed)
    model = model.cpu().eval()
    meta = {"spatial_layer": "features"}

    def to_model(b: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(b)).permute(0, 3, 1, 2).float() / 255.0

    def pooled(images: np.ndarray) -> np.ndarray:
        return torch.cat([spatial_maps(model, meta, to_model(images[i:i + 256]))
                          for i in range(0, len(images), 256)]).mean((2, 3)).numpy()

    test = ds.test
    assert (clean.labels == test.labels).all()
    acts, acts_clean = pooled(test.images), pooled(clean.images)
    weight = model.fc.weight.detach().numpy()  # (classes, channels)
    predict = {"dense": torch_predictor(model, to_model)}
    pred, pred_clean = (predict["dense"](x).argmax(1) for x in (test.images, clean.images))
    items = []
    any_cue = np.any(list(test.has_cue.values()), axis=0)
    for cue, k in ds.cue_class.items():
        has = test.has_cue[cue]
        # ground truth: the channel through which the cue pushes its class most: the drop of
        # its activation when the cue is removed from images carrying no other cue, times its
        # weight for the class (a channel two cues drive, voting for the other cue's class,
        # is the other cue's)
        alone = has & ~np.any([h for c, h in test.has_cue.items() if c != cue] or
                              [np.zeros_like(has)], axis=0)
        rise = (acts[alone] - acts_clean[alone]).mean(0)
        push = np.where((rise > 0) & (weight[k] > 0), rise * weight[k], -np.inf)
        others = has & (test.labels != k)
        reliance = float((pred[others] == k).mean() - (pred_clean[others] == k).mean())
        items.append((f"cue:{ds.cue_kind[cue]}:{cue}", k, int(np.argmax(push)), reliance))
    change = np.abs(acts - acts_clean)[any_cue].mean(0) / (acts[any_cue].mean(0) + 1e-6)
    for k, name in enumerate(ds.class_names):
        # an object channel: barely moved by the cues, tied to class k, voting for it
        cc = np.nan_to_num(_corr(acts_clean, (test.labels == k).astype(float)))
        cc[(change > 0.15) | (weight[k] <= 0)] = -np.inf
        if np.isfinite(cc).any():
            items.append((f"object:{name}", k, int(np.argmax(cc)), float("nan")))
    rows = []
    for kind, cls, feat, reliance in items:
        res = cue_test(predict, test.images, test.labels, acts[:, feat],
                       lambda b, f=feat: spatial_maps(model, meta, to_model(b))[:, f].numpy(),
                       cls, n=n, seed=seed, frac=frac, max_area=max_area,
                       object_masks=test.object_masks if masks else None)
        r = {x["test"]: x for x in res.rows}
        rows.append({"dataset": "shapes", "seed": seed, "strength": cue_strength,
                     "placement": placement, "item": kind,
                     "class": ds.class_names[cls], "feature": feat, "reliance": reliance,
                     "paste_same": r["paste_same"]["flip_rate"],
                     "ctrl_same": max(r[c]["flip_rate"] for c in
                                      ("paste_same_ctrl_elsewhere", "paste_same_ctrl_nontop")),
                     "paste_random": r["paste_random"]["flip_rate"],
                     "ctrl_random": max(r[c]["flip_rate"] for c in
                                        ("paste_random_ctrl_elsewhere",
                                         "paste_random_ctrl_nontop")),
                     "removal": r["removal"]["flip_rate"],
                     "ctrl_removal": r["removal_ctrl_other_classes"]["flip_rate"],
                     "bg_swap": r["background_swap"]["flip_rate"],
                     "ctrl_bg_swap": max(r[c]["flip_rate"] for c in
                                         ("background_swap_ctrl_random",
                                          "background_swap_ctrl_nontop")),
                     "bg_removal": r["background_removal"]["flip_rate"],
                     "ctrl_bg_removal": r["background_removal_ctrl_other_classes"]["flip_rate"],
                     "verdict": res.verdicts["dense"],
                     "test_acc": info["test"]["accuracy"]})
    return rows


def toxicity_variant(seed: int, bias: float, n: int) -> list[dict]:
    from analysis.counterfactual import group_verdicts, term_test, torch_predictor
    from sparse_probe.datasets import make_toxicity
    from sparse_probe.datasets.models import train_toxicity_model
    from sparse_probe.datasets.toxicity import IDENTITY_TERMS, load_lexicon

    ds = make_toxicity(n_train=2000, n_val=100, n_test=600, seed=seed, bias=bias)
    model, info = train_toxicity_model(ds, epochs=4, progress=False, seed=seed)
    model = model.cpu().eval()
    lexicon = {g: terms[:6] for g, terms in IDENTITY_TERMS.items()}
    lexicon["names"] = load_lexicon("names")[:6]
    lexicon["control"] = load_lexicon("objects")[:6]
    res = term_test({"dense": torch_predictor(model)}, ds.test.texts, lexicon, toxic_class=1,
                    n=n, seed=seed)
    pooled = {r["group"]: r for r in res.rows if r["term"] == "*"
              and r["direction"] == "to_toxic"}
    return [{"dataset": "toxicity", "seed": seed, "strength": bias, "placement": "identity",
             "item": ("cue:identity:" if v["group"] in IDENTITY_TERMS else "object:")
             + v["group"], "class": "toxic", "feature": -1,
             "reliance": float("nan"), "paste_same": pooled[v["group"]]["flip_rate"],
             "ctrl_same": pooled["control"]["flip_rate"], "paste_random": float("nan"),
             "ctrl_random": float("nan"),
             "removal": float("nan"), "ctrl_removal": float("nan"), "verdict": v["verdict"],
             "test_acc": info["test"]["accuracy"]} for v in group_verdicts(res.rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="default 0 1 2 (3 4 with --heldout)")
    ap.add_argument("--placements", nargs="+", default=None,
                    help=f"cue placements NAME=CLASS,... (default {DEFAULT_PLACEMENT})")
    ap.add_argument("--heldout", action="store_true",
                    help="the held-out placements and seeds (other classes, stripe and tint)")
    ap.add_argument("--no-masks", action="store_true",
                    help="run the cue tests without the dataset's object masks")
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.9, 0.75])
    ap.add_argument("--biases", type=float, nargs="+", default=[0.9, 0.75])
    ap.add_argument("--n", type=int, default=200, help="perturbed images / texts per test")
    ap.add_argument("--quick", action="store_true", help="smaller data (a smoke run)")
    ap.add_argument("--frac", type=float, default=0.8, help="evidence threshold (cue_test)")
    ap.add_argument("--max-area", type=float, default=0.0625, help="pasted evidence cap")
    ap.add_argument("--no-text", action="store_true", help="skip the toxicity variants")
    ap.add_argument("--min-reliance", type=float, default=0.1,
                    help="an image cue counts as used by the model above this reliance")
    args = ap.parse_args()
    seeds = args.seeds or ([3, 4] if args.heldout else [0, 1, 2])
    placements = args.placements or (list(HELDOUT_PLACEMENTS) if args.heldout
                                     else [DEFAULT_PLACEMENT])
    torch.set_num_threads(1)
    n_train, size, epochs = (600, 48, 4) if args.quick else (1500, 64, 6)
    t0 = time.perf_counter()
    rows: list[dict] = []
    for seed in seeds:
        for placement in placements:
            for s in args.strengths:
                rows += shapes_variant(seed, s, n_train, size, epochs, args.n, args.frac,
                                       args.max_area, placement, not args.no_masks)
        for b in [] if args.no_text else args.biases:
            rows += toxicity_variant(seed, b, args.n)
    import pandas as pd

    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    used = df["item"].str.startswith("cue:") & ~(df["reliance"] < args.min_reliance)
    df["kind"] = np.where(used, "planted cue, used",
                          np.where(df["item"].str.startswith("cue:"), "planted cue, unused",
                                   "object"))
    df["supported"] = df["verdict"] == "supports"
    df["cue_kind"] = np.where(df["item"].str.startswith("cue:"),
                              df["item"].str.split(":").str[1], "-")
    tab = df.groupby(["dataset", "kind", "cue_kind"]).agg(
        variants=("supported", "size"), supported=("supported", "sum"),
        refuted=("verdict", lambda v: int((v == "refutes").sum())))
    tab["share_supported"] = tab["supported"] / tab["variants"]
    print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
    cues = df[df["kind"] == "planted cue, used"]
    objs = df[df["kind"] == "object"]
    print(f"\nplanted cues the model uses (reliance >= {args.min_reliance}; every text cue) "
          f"supported: {int(cues['supported'].sum())}/{len(cues)} ({cues['supported'].mean():.1%});"
          f" object features supported: {int(objs['supported'].sum())}/{len(objs)}")
    for kind, sub in cues.groupby(cues["item"].str.split(":").str[1]):
        print(f"  {kind}: {int(sub['supported'].sum())}/{len(sub)}")
    print(f"elapsed {time.perf_counter() - t0:.0f} s (CPU, 1 thread)")


if __name__ == "__main__":
    main()
