"""Re-score finished audits with the truth by intervention (no map involved).

``bench_audit.py --keep`` leaves each variant's run directory behind. Runs built before the
truth by intervention existed, or built elsewhere, have no ``truth_removal`` in their
manifest; this script measures it now on the run's own model and HITs
(:func:`tasks.viz.intervention.feature_removal`: the shapes generator redraws each HIT's shown
images without the object, each cue, and each cue kind; text HITs delete the words of each
kind from the shown comments, :func:`tasks.viz.intervention.text_removal`), scores the run's crowd verdicts
against it (:func:`sparse_probe.demo.summary.summarize_run` with these checks) and prints one
``bench_audit.py`` line per run and its table over all runs.

Usage: ``python benchmarks/measure_intervention.py RUN_DIR [RUN_DIR ...] [--record FILE]``
where a run directory holds ``features/``, ``tasks/manifest.jsonl`` and ``report/`` (e.g.
``<workdir>/image-s0-watermark-triangle_texture-ring-0.9/shapes``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure_run(run: Path) -> dict[str, dict[str, Any]]:
    """hit_key -> ``{"truth", "removal"}`` for every HIT of ``run`` whose truth by
    intervention can be measured (image HITs shown where the feature is highest; text HITs
    whose comments depart the class's way)."""
    import numpy as np

    from sparse_probe.rundir import RunDir, read_features_meta, read_jsonl
    from tasks.viz.intervention import feature_removal, text_feature_removal
    from tasks.viz.source import load_source

    rd = RunDir(run)
    meta = read_features_meta(rd.features)
    rows = [r for r in read_jsonl(rd.manifest, what="manifest.jsonl")
            if r.get("kind") == "text" or r.get("direction") == "highest"]
    sources: dict[str, Any] = {}
    checks = {}
    for r in rows:
        split = r["example_ids"][0].split("/")[0]
        if split not in sources:
            ids = json.loads((rd.features / f"{split}_ids.json").read_text())
            sources[split] = (load_source(meta, split), {i: k for k, i in enumerate(ids)},
                              np.load(rd.features / f"{split}.npy", mmap_mode="r"))
        src, index, values = sources[split]
        where = np.array([index[i] for i in r["example_ids"]])
        if r["kind"] == "image":
            check = feature_removal(src, where, r["feature"], r["weight"])
        else:
            check = text_feature_removal(src, where, r["feature"], r["weight"],
                                         values[:, r["feature"]])
        if check is not None:
            checks[r["hit_key"]] = check
    return checks


def variant_of(run: Path) -> dict[str, Any]:
    """The bench_audit variant (kind, seed, placement, strength) a run directory was made
    with."""
    from sparse_probe.rundir import RunDir, read_features_meta

    meta = read_features_meta(RunDir(run).features)
    params = meta["dataset"].get("params") or {}
    if meta.get("kind") == "text":
        return {"kind": "text", "seed": int(params.get("seed", 0)),
                "placement": "identity=toxic", "strength": None}
    cues = params.get("cues") or {"watermark": {"class": "triangle"},
                                  "texture": {"class": "ring"}}
    strengths = {c.get("strength", params.get("cue_strength")) for c in cues.values()}
    return {"kind": "image", "seed": int(params.get("seed", 0)),
            "placement": ",".join(f"{n}={c['class']}" for n, c in cues.items()),
            "strength": float(strengths.pop()) if len(strengths) == 1 else None}


def main(argv: Sequence[str] | None = None) -> int:
    import bench_audit
    import torch

    from sparse_probe.demo.summary import summarize_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--record", type=Path, default=None,
                    help="append one bench_audit JSON line per run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    records = []
    for run in args.runs:
        if not (run / "tasks" / "manifest.jsonl").is_file():
            raise SystemExit(f"{run}: no tasks/manifest.jsonl (expected a run directory "
                             "with features/, tasks/ and report/)")
        t0 = time.perf_counter()
        summary = summarize_run(run, checks=measure_run(run))
        r = bench_audit.variant_record(variant_of(run), summary, time.perf_counter() - t0)
        records.append(r)
        print(bench_audit.variant_line(r), flush=True)
        if args.record is not None:
            with open(args.record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(r) + "\n")
    lines, _ = bench_audit.summarize(records)
    print()
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
