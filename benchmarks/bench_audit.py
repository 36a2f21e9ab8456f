"""Held-out cue benchmark: does the whole audit find every planted cue, and only those?

Runs the built-in audits end to end (:func:`sparse_probe.demo.run_demo`, ``--quick`` sizes:
data, model, sparse head, HITs, task server, simulated crowd over HTTP, report) over variants
of the image audit (seeds x cue placements x strengths; every cue kind the shapes generator
plants: watermark and stripe are marks, texture and tint backgrounds) and of the text audit
(seeds; identity terms), and prints

- recall per cue kind: the share of the variants planting the cue in which it was FOUND (a
  feature whose HIT shows it was judged spurious; ``demo_summary.json``), over the cues the
  model learned; a cue missed because the model does not rely on it (no significant effect on
  its decisions in the test split, :mod:`sparse_probe.demo.reliance`) is listed apart as
  not learned, since no audit of the model's features can find it; a learned cue that no
  audited feature carries as its pattern (by intervention, below: the model spreads it over
  features of the object, each taking less than half of its value from it) is listed apart
  too, with its effect, since an audit of features (the paper's method) cannot name it;
- false alarms: features judged spurious whose truth is not a planted cue. The truth is
  decided by intervention wherever it can be (:mod:`tasks.viz.intervention`: the shapes
  generator redraws each image HIT's shown images without the object and without each cue;
  a text HIT's shown comments lose the words of each kind, or ordinary comments gain them
  (net of words of neither kind, the control group); a
  kind of cue carrying at least half of the feature is its pattern, else the object if it
  does), so it does not come from the maps and panels the simulated crowd reads; image
  features shown where they are lowest keep the maps' truth. A flagged feature that the
  named kind of cue carries in part (a fifth to a half) is *mixed*: no answer is wrong for
  it, so it is listed apart, neither a finding nor a false alarm (the count of those the
  object carries more of is printed too: the stricter rule used until 2026-12-02 counted
  them as false alarms);
- findings resting on gold items: spurious verdicts on gold (known-answer) HITs, which must
  never be findings (must be none).

Targets at the default strength: every cue kind found in >= 95% of variants, 0 false alarms,
0 findings on gold.

Runnable in pieces: ``--variants 0:4`` (a slice of the image variants, ``--list`` prints
them), ``--kinds image`` or ``--kinds text`` (one text variant per seed), ``--seeds 0 1``; ``--record FILE`` appends one JSON line per variant and
the table summarizes every line of that file, so pieces run at different times add up.
``--tiny`` runs one image and one text variant (what ``tests/test_bench_audit.py`` runs).

Usage: ``python benchmarks/bench_audit.py [--variants 10] [--record runs.jsonl]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Cue placements of the image audit: the defaults, then every kind on other classes (each
#: cue kind appears in several placements, two cues per image dataset).
PLACEMENTS: tuple[str, ...] = (
    "watermark=triangle,texture=ring",
    "texture=square,stripe=circle",
    "tint=star,watermark=ring",
    "texture=cross,tint=triangle",
    "stripe=ring,watermark=square",
)
DEFAULT_STRENGTH = 0.9
TARGET_RECALL = 0.95


def image_variants(seeds: Sequence[int], placements: Sequence[str] = PLACEMENTS,
                   strengths: Sequence[float] = (DEFAULT_STRENGTH,)) -> list[dict[str, Any]]:
    """Every (seed, placement, strength) of the image audit, placements varying fastest."""
    return [{"kind": "image", "seed": int(s), "placement": p, "strength": float(st)}
            for st in strengths for s in seeds for p in placements]


def text_variants(seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One text audit (identity terms planted in the toxicity corpus) per seed."""
    return [{"kind": "text", "seed": int(s), "placement": "identity=toxic", "strength": None}
            for s in seeds]


def cue_list(variant: dict[str, Any]) -> list[str]:
    """The ``--cue NAME=CLASS:STRENGTH`` values of an image variant."""
    return [f"{part}:{variant['strength']:g}" for part in variant["placement"].split(",")]


def run_variant(variant: dict[str, Any], workdir: Path, keep: bool = False,
                device: str | None = None) -> dict[str, Any]:
    """Run one variant's audit end to end; returns its record (one JSON line)."""
    from sparse_probe.demo import run_demo

    kind = variant["kind"]
    out = workdir / (f"{kind}-s{variant['seed']}-" + variant["placement"].replace(",", "_")
                     .replace("=", "-") + (f"-{variant['strength']:g}" if variant["strength"]
                                          is not None else ""))
    t0 = time.perf_counter()
    try:
        result = run_demo(out, kind=kind, quick=True, seed=variant["seed"], force=True,
                          progress=False, device=device,
                          cues=cue_list(variant) if kind == "image" else None)
        (summary,) = result.summary["runs"].values()
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    return variant_record(variant, summary, time.perf_counter() - t0)


def variant_record(variant: dict[str, Any], summary: dict[str, Any], seconds: float
                   ) -> dict[str, Any]:
    """One variant's record (one JSON line) from its run's ``demo_summary.json`` entry
    (:func:`sparse_probe.demo.summary.summarize_run`)."""
    return {
        **variant, "seconds": round(seconds, 1),
        "cues": [{"cue": c["cue"], "kind": c["kind"], "class": c["class"],
                  "class_name": c["class_name"],
                  "status": c["status"], "shown": c["shown"], "features": c["features"],
                  "learned": c.get("learned"), "reliance": c.get("reliance")}
                 for c in summary["cues"]],
        "false_alarms": [{"class_name": f["class_name"], "feature": f["feature"],
                          "truth": f["truth"], "truth_source": f.get("truth_source"),
                          "removal": f.get("removal")} for f in summary["false_alarms"]],
        "mixed": [{"class_name": f["class_name"], "feature": f["feature"], "kind": f["kind"],
                   "truth": f["truth"], "truth_source": f.get("truth_source"),
                   "removal": f.get("removal")} for f in summary.get("flagged_mixed", [])],
        "gold_findings": [{"class_name": f["class_name"], "feature": f["feature"]}
                          for f in summary["flagged"] if f["gold"]],
        "n_flagged": len(summary["flagged"]),
        "truth_by_intervention": bool(summary.get("truth_by_intervention")),
        "n_flagged_by_intervention": sum(f.get("truth_source") == "intervention"
                                         for f in summary["flagged"]),
    }


def variant_line(r: dict[str, Any]) -> str:
    """One console line per variant."""
    what = (f"[{r['placement']} @{r['strength']:g}]" if r["strength"] is not None
            else "[identity terms]")
    cues = ", ".join(f"{c['cue']} {c['status'].upper()}" + (
        "" if c.get("reliance") is None else f" (effect {c['reliance']['effect']:+.2f}"
        + ("" if c.get("learned") is not False else ", NOT LEARNED") + ")") for c in r["cues"])
    return (f"{r['kind']} seed {r['seed']} {what}: {cues}; false alarms "
            f"{len(r['false_alarms'])}; findings on gold {len(r['gold_findings'])} "
            f"({r['seconds']:.0f} s)")


def summarize(records: Iterable[dict[str, Any]]) -> tuple[list[str], bool]:
    """The table over ``records`` and whether every target is met."""
    from sparse_probe.demo.summary import intervention_note, object_larger
    records = list(records)
    found: dict[str, list[int]] = defaultdict(list)
    by_strength: dict[tuple[str, float | None], list[int]] = defaultdict(list)
    not_learned = []
    not_carried = []
    own: dict[str, list[int]] = defaultdict(list)
    for r in records:
        for c in r["cues"]:
            name = "identity" if c["kind"] == "identity" else c["cue"]
            if c.get("learned") is False and c["status"] != "found":
                not_learned.append((r, c))  # no audit can find a cue the model does not use
                continue
            if r.get("truth_by_intervention") and c["status"] != "found" and not c["shown"]:
                not_carried.append((r, c))  # no audited feature is mainly this cue
                continue
            found[name].append(int(c["status"] == "found"))
            if c["status"] == "found" and "class" in c:  # through a feature of its own class?
                own[name].append(int(any(f[0] == c["class"] for f in c["features"])))
            by_strength[(name, r["strength"])].append(int(c["status"] == "found"))
    alarms = [(r, f) for r in records for f in r["false_alarms"]]
    gold = [(r, g) for r in records for g in r["gold_findings"]]
    n_img = sum(r["kind"] == "image" for r in records)
    lines = [f"{len(records)} variants ({n_img} image, {len(records) - n_img} text)",
             f"{'cue':>10} {'kind':>10} {'found':>7} {'recall':>7}"]
    ok = bool(records)
    kinds = {"watermark": "mark", "stripe": "mark", "texture": "background",
             "tint": "background", "identity": "identity"}
    for name in sorted(found, key=lambda n: list(kinds).index(n) if n in kinds else 99):
        v = found[name]
        rec = sum(v) / len(v)
        default = by_strength.get((name, DEFAULT_STRENGTH)) or (
            by_strength.get((name, None)) if name == "identity" else None)
        if default and sum(default) / len(default) < TARGET_RECALL:
            ok = False
        lines.append(f"{name:>10} {kinds.get(name, '?'):>10} {sum(v):>3}/{len(v):<3} "
                     f"{rec:>7.2f}" + (f"   {sum(own[name])}/{len(own[name])} found through a "
                                       "feature of the cue's own class" if own[name] else ""))
    lines.append(f"cues the model did not learn (not counted above): {len(not_learned)}"
                 + "".join(f"\n  {r['kind']} seed {r['seed']} [{r['placement']}]: {c['cue']} "
                           f"effect {c['reliance']['effect']:+.2f} (z {c['reliance']['z']:.1f})"
                           for r, c in not_learned))
    lines.append("learned cues that no audited feature carries as its pattern (by "
                 f"intervention; not counted above): {len(not_carried)}" + "".join(
                     f"\n  {r['kind']} seed {r['seed']} [{r['placement']}]: {c['cue']}"
                     + ("" if c.get("reliance") is None
                        else f" effect {c['reliance']['effect']:+.2f}")
                     for r, c in not_carried))
    for (name, st), v in sorted(by_strength.items(), key=lambda kv: str(kv[0])):
        if st is not None and st != DEFAULT_STRENGTH:
            lines.append(f"{name:>10} at strength {st:g}: {sum(v)}/{len(v)}")
    lines.append(f"false alarms: {len(alarms)}" + "".join(
        f"\n  {r['kind']} seed {r['seed']} [{r['placement']}]: {f['class_name']}:"
        f"{f['feature']} (truth {f['truth']}{intervention_note(f)})" for r, f in alarms))
    from tasks.viz.intervention import PARTIAL_SHARE

    mixed = [(r, f) for r in records for f in r.get("mixed", [])]
    larger = sum(object_larger(f) for _, f in mixed)
    lines.append(f"flagged mixed features (neither findings nor false alarms: the named cue "
                 f"carries at least {PARTIAL_SHARE:.0%} of the feature but less than half): "
                 f"{len(mixed)}, {larger} of them with the object carrying more (false alarms "
                 "by the stricter rule used until 2026-12-02)" + "".join(
                     f"\n  {r['kind']} seed {r['seed']} [{r['placement']}]: {f['class_name']}:"
                     f"{f['feature']} as {f['kind']}{intervention_note(f)}" for r, f in mixed))
    n_flagged = sum(r.get("n_flagged", 0) for r in records)
    n_iv = sum(r.get("n_flagged_by_intervention", 0) for r in records)
    lines.append(f"truth of the flagged features: {n_iv} of {n_flagged} by intervention "
                 "(each HIT's examples without each region or kind of word), the rest "
                 "from the maps")
    lines.append(f"findings resting on gold items: {len(gold)}" + "".join(
        f"\n  {r['kind']} seed {r['seed']} [{r['placement']}]: {g['class_name']}:"
        f"{g['feature']}" for r, g in gold))
    ok = ok and not alarms and not gold
    lines.append(f"targets (every cue kind >= {TARGET_RECALL:.0%} at strength "
                 f"{DEFAULT_STRENGTH:g}, 0 false alarms, 0 findings on gold): "
                 + ("MET" if ok else "NOT MET"))
    return lines, ok


def _slice(spec: str | None, n: int) -> slice:
    if spec is None:
        return slice(0, n)
    if ":" in spec:
        a, b = spec.split(":", 1)
        return slice(int(a) if a else 0, int(b) if b else n)
    return slice(0, int(spec))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="image,text", help="image, text or image,text")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--placements", nargs="+", default=list(PLACEMENTS),
                    help="image cue placements, each NAME=CLASS[,NAME=CLASS...]")
    ap.add_argument("--strengths", type=float, nargs="+", default=[DEFAULT_STRENGTH])
    ap.add_argument("--variants", default=None,
                    help="N (the first N image variants) or A:B (a slice); see --list")
    ap.add_argument("--tiny", action="store_true",
                    help="one image variant (the default placement) and one text variant")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    ap.add_argument("--record", type=Path, default=None,
                    help="append one JSON line per variant; the table covers the whole file")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep each variant's demo directory")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    if not kinds <= {"image", "text"}:
        ap.error(f"--kinds: expected image and/or text, got {args.kinds!r}")
    if args.tiny:
        variants = (image_variants([args.seeds[0]], [PLACEMENTS[0]])
                    if "image" in kinds else []) + (text_variants([args.seeds[0]])
                                                    if "text" in kinds else [])
    else:
        img = image_variants(args.seeds, args.placements, args.strengths) \
            if "image" in kinds else []
        variants = img[_slice(args.variants, len(img))]
        if "text" in kinds:  # one per seed; --variants slices the image variants only
            variants += text_variants(args.seeds)
    if args.list:
        for i, v in enumerate(variants):
            print(i, json.dumps(v))
        return 0
    import torch

    torch.set_num_threads(1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    workdir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for v in variants:
        r = run_variant(v, workdir, keep=args.keep, device=args.device)
        print(variant_line(r), flush=True)
        records.append(r)
        if args.record is not None:
            with open(args.record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(r) + "\n")
    if args.record is not None and args.record.is_file():
        records = [json.loads(line) for line in args.record.read_text().splitlines() if line]
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    lines, ok = summarize(records)
    print(f"\n{len(variants)} variants run now in {time.perf_counter() - t0:.0f} s")
    for line in lines:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
