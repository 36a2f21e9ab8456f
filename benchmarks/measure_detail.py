"""How much of each audited feature the blur line keeps, against the truth by intervention.

``bench_audit.py --keep`` leaves each variant's run directory behind. For every HIT shown where
its feature is highest, this script scores the run's own model on the HIT's top images blurred
(:func:`tasks.viz.perturb.detail_kept`, at each ``--sigmas`` share of the image's side) and
prints, per group of features by the texture's share of them by intervention (the manifest's
``removal``: the generator redraws the images without the texture), how much the blur kept.
It is the measurement behind :data:`tasks.viz.perturb.DETAIL_SIGMA` and
:data:`tasks.viz.evidence.DETAIL_LEFT`: the blur must take most of every feature the texture
carries and little of the rest.

Usage: ``python benchmarks/measure_detail.py RUN_DIR [RUN_DIR ...] [--sigmas 1,1.5,2]
[--record FILE]`` where a run directory is a variant's directory (holding ``shapes/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Groups of features, by the texture's share of them (by intervention) where most top
#: images show it.
GROUPS = ("texture >= 0.5", "texture 0.2-0.5", "texture < 0.2", "top images not textured")


def measure_run(run: Path, sigmas: Sequence[float]) -> list[dict[str, Any]]:
    """One record per measurable HIT of ``run`` (a variant directory): its truth, the
    texture's share, the share of the top images showing the texture, and the blur line at
    each ``sigma`` (pixels at 64 pixels)."""
    import numpy as np

    from sparse_probe.rundir import RunDir, read_features_meta, read_jsonl
    from tasks.viz.perturb import detail_kept, feature_scorer
    from tasks.viz.source import load_source

    rd = RunDir(run / "shapes")
    meta = read_features_meta(rd.features)
    sources: dict[str, Any] = {}
    out = []
    for r in read_jsonl(rd.manifest, what="manifest.jsonl"):
        if r.get("is_gold") or r.get("direction") != "highest" or not r.get("removal"):
            continue
        split = r["example_ids"][0].split("/")[0]
        if split not in sources:
            ids = json.loads((rd.features / f"{split}_ids.json").read_text())
            sources[split] = (load_source(meta, split), {i: k for k, i in enumerate(ids)})
        src, index = sources[split]
        where = np.array([index[i] for i in r["example_ids"]])
        score = feature_scorer([r["feature"]] * len(where), [r["weight"]] * len(where),
                               spatial=src.spatial, pooled=src.features)
        x = src.images[where]
        line = {f"{s:g}": detail_kept(score, x, s / 64) for s in sigmas}
        if any(v is None for v in line.values()):
            continue
        top = ((r.get("evidence_images") or {}).get("top") or {}).get("texture", 0.0)
        out.append({"run": run.name, "hit_key": r["hit_key"], "truth": r["truth"],
                    "texture": (r["removal"].get("cues") or {}).get("texture"),
                    "top_textured": float(top), "detail": line})
    return out


def group_of(rec: dict[str, Any]) -> str:
    """The :data:`GROUPS` entry of a record."""
    tex = rec["texture"]
    if tex is None or rec["top_textured"] < 0.8:
        return GROUPS[3]
    return GROUPS[0] if tex >= 0.5 else GROUPS[1] if tex >= 0.2 else GROUPS[2]


def table(records: Sequence[dict[str, Any]], sigmas: Sequence[float], line: float = 0.5
          ) -> list[str]:
    """Per σ and group: count, the largest and smallest share kept, and how many are at most
    ``line`` (named by the blur rule where one background cue fills the top images)."""
    import numpy as np

    rows = [f"{'sigma':>5} {'group':>24} {'n':>4} {'min':>5} {'median':>6} {'max':>5} "
            f"{'<= ' + format(line, 'g'):>6}"]
    for s in sigmas:
        for g in GROUPS:
            v = np.array([r["detail"][f"{s:g}"] for r in records if group_of(r) == g])
            if not len(v):
                continue
            rows.append(f"{s:>5g} {g:>24} {len(v):>4} {v.min():>5.2f} {np.median(v):>6.2f} "
                        f"{v.max():>5.2f} {int((v <= line).sum()):>6}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--sigmas", default="1,1.5,2",
                    help="blur standard deviations in pixels at 64 pixels, comma-separated")
    ap.add_argument("--record", type=Path, help="append one JSON line per HIT")
    args = ap.parse_args(argv)
    try:
        sigmas = [float(s) for s in args.sigmas.split(",") if s]
    except ValueError:
        ap.error(f"--sigmas: expected numbers separated by commas, got {args.sigmas!r}")
    if not sigmas or min(sigmas) <= 0:
        ap.error("--sigmas: expected positive numbers")
    records = []
    for run in args.runs:
        if not (run / "shapes" / "tasks" / "manifest.jsonl").is_file():
            ap.error(f"{run}: no shapes/tasks/manifest.jsonl (a bench_audit.py --keep variant)")
        recs = measure_run(run, sigmas)
        records += recs
        if args.record:
            with args.record.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in recs)
        print(f"{run.name}: {len(recs)} HITs", flush=True)
    for row in table(records, sigmas):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
