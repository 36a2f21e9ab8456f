"""Which HIT evidence panel shows which kind of planted cue (built-in shapes, quick models).

For every seed and cue configuration this trains the quick built-in ShapesCNN (nothing is
downloaded), then finds, for each planted cue, the channel that depends on it most (the largest
relative drop of its mean activation when the cues are removed from the same validation images,
which the generator can redraw without cues, among the channels at least as active as the
median channel on those images) and one object channel (the active channel that
changes least). For the 9 top-activating validation images of each such channel it computes
every map panel of :mod:`tasks.viz.panels` and measures against the generator's masks:

- ``cue``: share of the shown map's mass on the cue's own mask (object channel: on any cue);
- ``obj``: share on the object's mask;
- ``ok``: the map's dominant region is the right answer (``spurious:<kind>`` for a cue
  channel, ``core`` for the object channel; :func:`tasks.viz.evidence.truth_from_evidence`);
- ``rm`` / ``kp``: the feature left with the map's highlighted region removed / with only that
  region kept (the contrast panel's numbers).

``reader`` is what a careful reader takes from the HIT's panels: the trusted map
(:func:`tasks.viz.evidence.trusted_panel`) and, where no region dominates it, the cue seen in
the top images but not in the class's least-activating ones
(:func:`tasks.viz.evidence.reader_evidence`), i.e. what the simulated crowd reads. The
``least`` column: share of the class's 9 least-activating images that carry the cue, beside
the share among the 9 top-activating ones (the least-activating panel shows that contrast).

Usage: ``python benchmarks/measure_evidence.py --seeds 0 1 2 [--configs ...] [--out FILE]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparse_probe.datasets import load_builtin, make_shapes, prepare_builtin
from sparse_probe.datasets.shapes import CUES, DEFAULT_CUE_STRENGTH, cue_config
from sparse_probe.extract import read_meta
from tasks.viz.evidence import reader_evidence, trusted_panel, truth_from_evidence
from tasks.viz.panels import HIT_PANELS, MAP_PANELS, panel_evidence
from tasks.viz.source import load_source
from tasks.viz.topk import top_k

#: Cue placements measured by default: the defaults, then every cue kind on other classes
#: (texture on ring was the placement the crowd missed most).
DEFAULT_CONFIGS = ("watermark=triangle,texture=ring", "texture=square,stripe=circle",
                   "tint=star,watermark=ring", "texture=cross,tint=triangle")
MIN_DROP = 0.3  # a channel that loses less than this without the cue does not depend on it


def parse_config(text: str) -> dict[str, str]:
    """``"watermark=triangle,texture=ring"`` -> ``{"watermark": "triangle", ...}``."""
    out = dict(part.split("=", 1) for part in text.split(",") if part)
    cue_config(out, DEFAULT_CUE_STRENGTH)  # validates
    return out


def _clean_val(params: dict) -> np.ndarray:
    """The validation images of the same seed with every cue switched off."""
    p = {**params, "cue_strength": 0.0, "cue_leak": 0.0}
    cues = params.get("cues") or {n: {"class": c} for n, (c, _) in CUES.items()}
    p["cues"] = {n: {"class": c["class"], "strength": 0.0} for n, c in cues.items()}
    return make_shapes(**p).val.images


def _score_panels(src, val, rows, least, ch, cue, kind, out, lime_samples):
    pe = panel_evidence(src, rows, ch, 1.0, panels=MAP_PANELS, lime_samples=lime_samples,
                        object_masks=val.object_masks[rows],
                        cue_masks={n: m[rows] for n, m in val.cue_masks.items()})
    want = "core" if cue == "object" else f"spurious:{kind}"
    kinds = dict(val.cue_kind)
    panels = dict(pe.evidence)
    shown = {p: panels[p] for p in HIT_PANELS if p in panels}
    trusted = trusted_panel(shown)
    images = {"top": {c: float(h[rows].mean()) for c, h in val.has_cue.items()},
              "least": {c: float(h[least].mean()) for c, h in val.has_cue.items()}}
    seen = reader_evidence(None, shown, images)
    if seen is not None:
        panels["reader"] = {**seen, **{k: panels[trusted][k] for k in ("removed", "kept")}}
    for name, ev in panels.items():
        share = (sum(ev["cues"].values()) if cue == "object" else ev["cues"].get(cue, 0.0))
        out[name].append({"cue": share, "obj": ev["object"],
                          "ok": float(truth_from_evidence(ev, kinds) == want),
                          "rm": ev["removed"], "kp": ev["kept"]})
    return trusted


def measure(seed: int, config: dict[str, str], lime_samples: int) -> dict:
    run = Path(tempfile.mkdtemp(prefix=f"evidence-{seed}-"))
    try:
        feats = prepare_builtin("shapes", run, seed=seed, quick=True, progress=False,
                                cues=config)
        meta = read_meta(feats)
        src = load_source(meta, "val")
        ds = load_builtin(meta)
        val = ds.val
        x = src.images[np.arange(len(val))]
        xc = torch.from_numpy(_clean_val(meta["dataset"]["params"])).permute(0, 3, 1, 2)
        with torch.no_grad():
            f = src.spatial(x).mean((2, 3)).numpy()
            fc = src.spatial(xc.float() / 255.0).mean((2, 3)).numpy()
        res: dict = {"cues": {}}
        any_cue = np.any([val.has_cue[c] for c in val.has_cue], axis=0)
        for cue, kind in ds.cue_kind.items():
            only = val.has_cue[cue] & ~np.any(
                [val.has_cue[c] for c in val.has_cue if c != cue] or [np.zeros(len(val), bool)],
                axis=0)
            drop = (f[only] - fc[only]).mean(0) / (f[only].mean(0) + 1e-6)
            # a channel nearly silent on these images has a noisy relative drop
            drop[f[only].mean(0) < np.median(f[only].mean(0))] = -np.inf
            ch = int(np.argmax(drop))
            entry = {"channel": ch, "drop": float(drop[ch]), "panels": defaultdict(list)}
            res["cues"][cue] = entry
            if drop[ch] < MIN_DROP:
                continue
            rows = top_k(f[:, ch], 9)
            cls = np.flatnonzero(val.labels == ds.cue_class[cue])
            least = cls[top_k(f[cls, ch], 9, "lowest")]
            entry["trusted"] = _score_panels(src, val, rows, least, ch, cue, kind,
                                             entry["panels"], lime_samples)
            entry["top_rate"] = float(val.has_cue[cue][rows].mean())
            entry["least_rate"] = float(val.has_cue[cue][least].mean())
        change = np.abs(f - fc)[any_cue].mean(0) / (f[any_cue].mean(0) + 1e-6)
        active = np.flatnonzero(f.mean(0) >= np.median(f.mean(0)))
        ch = int(active[np.argmin(change[active])])
        entry = {"channel": ch, "drop": float(change[ch]), "panels": defaultdict(list)}
        rows = top_k(f[:, ch], 9)
        cls = np.flatnonzero(val.labels == np.bincount(val.labels[rows]).argmax())
        least = cls[top_k(f[cls, ch], 9, "lowest")]
        entry["trusted"] = _score_panels(src, val, rows, least, ch, "object", "object",
                                         entry["panels"], lime_samples)
        res["cues"]["object"] = entry
        return res
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                    help="cue placements, each NAME=CLASS[,NAME=CLASS...]")
    ap.add_argument("--lime-samples", type=int, default=96)
    ap.add_argument("--out", type=Path, default=None, help="also write the output here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    t0 = time.perf_counter()
    by_kind: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, list] = defaultdict(list)
    trusted: dict[str, list] = defaultdict(list)
    for seed in args.seeds:
        for text in args.configs:
            res = measure(seed, parse_config(text), args.lime_samples)
            for cue, e in res["cues"].items():
                head = f"seed {seed} [{text}] {cue}: channel {e['channel']} drop {e['drop']:.2f}"
                if not e["panels"]:
                    say(head + f" (below {MIN_DROP}: no channel depends on it; skipped)")
                    continue
                say(head + "  " + "  ".join(
                    f"{p}: cue {v[0]['cue']:.2f} obj {v[0]['obj']:.2f} rm {v[0]['rm']:.2f} "
                    f"kp {v[0]['kp']:.2f}" for p, v in e["panels"].items() if p != "reader")
                    + f"  reader={e.get('trusted')}")
                for p, v in e["panels"].items():
                    by_kind[cue][p].extend(v)
                trusted[cue].append(e.get("trusted"))
                if "least_rate" in e:
                    rates[cue].append((e["top_rate"], e["least_rate"]))
    say("")
    say(f"{len(args.seeds)} seeds x {len(args.configs)} cue placements "
        f"({time.perf_counter() - t0:.0f} s, contended 2-core CPU)")
    say("mean over measured channels; cue = share of the shown map on the cue's own mask "
        "(object row: on any cue), obj = on the object, ok = dominant region is the right "
        "answer, rm/kp = feature left with the highlight removed / only it kept")
    panels = [*MAP_PANELS, "reader"]
    say(f"{'channel of':>10} {'n':>3} | " + " | ".join(f"{p:^26}" for p in panels))
    say(f"{'':>10} {'':>3} | " + " | ".join(f"{'cue  obj   ok   rm   kp':^26}" for _ in panels))
    for cue, d in by_kind.items():
        n = len(d[MAP_PANELS[0]])
        cells = []
        for p in panels:
            v = d.get(p, [])
            if not v:
                cells.append(f"{'-':^26}")
                continue
            m = {k: float(np.mean([r[k] for r in v])) for k in ("cue", "obj", "ok", "rm", "kp")}
            cells.append(f"{m['cue']:.2f} {m['obj']:.2f} {m['ok']:.2f} {m['rm']:.2f} "
                         f"{m['kp']:.2f}".center(26))
        say(f"{cue:>10} {n:>3} | " + " | ".join(cells))
    say("")
    for cue, r in rates.items():
        top = np.mean([a for a, _ in r])
        least = np.mean([b for _, b in r])
        say(f"{cue}: share of images with the cue among the top 9 {top:.2f}, among the class's "
            f"9 least-activating {least:.2f}")
    for cue, t in trusted.items():
        say(f"{cue}: reader trusts " + ", ".join(f"{p} {t.count(p)}x" for p in sorted(
            {p for p in t if p})))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
