"""Re-read kept image audits with the current reader, against the truth by intervention.

``bench_audit.py --keep`` leaves each variant's directory (its HITs' manifest with the panels'
numbers and the truth by intervention). This script asks the careful reader of every audited
HIT (:func:`tasks.viz.evidence.reader_evidence`, what a diligent simulated worker answers:
:func:`tasks.simulate.evidence_answer`) what the feature's pattern is, and scores that as
``bench_audit.py`` scores the crowd's verdicts: a planted cue is *found* when some HIT whose
truth is the cue's kind, and which the cue carries most of, is read as a cue of that kind; a
HIT read as a kind of cue that carries under :data:`~tasks.viz.intervention.PARTIAL_SHARE` of
it is a *false alarm*, one it carries more of (though under half) *mixed*. No crowd, server
or model runs: a change of the reader's rules is measured on the same HITs in seconds. The
blur line is taken from the manifest or, for HITs built before it, from ``--detail`` (JSON
lines of ``benchmarks/measure_detail.py --record``).

Usage: ``python benchmarks/reread_audit.py VARIANT_DIR [...] [--detail FILE ...]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read_variant(run: Path, detail: Mapping[tuple[str, str], float] | None = None
                 ) -> dict[str, Any]:
    """The reader's findings on one kept variant directory (holding ``demo.json`` and
    ``shapes/tasks/manifest.jsonl``).

    Returns
    -------
    dict
        ``{"cues": {cue: bool found}, "false_alarms": [str], "mixed": int, "misses": [str]}``.
    """
    from sparse_probe.datasets.shapes import CUE_KINDS
    from sparse_probe.rundir import read_jsonl
    from tasks.simulate import evidence_answer
    from tasks.viz.evidence import reader_evidence
    from tasks.viz.intervention import PARTIAL_SHARE

    cues = json.loads((run / "demo.json").read_text(encoding="utf-8"))["config"]["cues"]
    rows = [r for r in read_jsonl(run / "shapes" / "tasks" / "manifest.jsonl",
                                  what="manifest.jsonl") if not r.get("is_gold")]
    said = {}
    for r in rows:
        line = r.get("detail", (detail or {}).get((run.name, r["hit_key"])))
        seen = reader_evidence(r.get("evidence"), r.get("evidence_panels"),
                               r.get("evidence_images"), r.get("colour"), line)
        said[r["hit_key"]] = evidence_answer(seen, "image")[1]
    out: dict[str, Any] = {"cues": {}, "false_alarms": [], "mixed": 0, "misses": []}
    for cue in cues:
        kind = CUE_KINDS[cue]
        shown = [r for r in rows if r.get("truth") == f"spurious:{kind}" and r.get("removal")
                 and max(r["removal"]["cues"].items(), key=lambda kv: kv[1] or 0.0)[0] == cue]
        if not shown:
            continue  # no audited feature carries it: not counted, as in bench_audit.py
        out["cues"][cue] = any(said[r["hit_key"]] == kind for r in shown)
        if not out["cues"][cue]:
            out["misses"].append(f"{run.name} {cue}: " + "; ".join(
                f"{r['class_name']}:{r['feature']} read as {said[r['hit_key']]}" for r in shown))
    for r in rows:
        kind = said[r["hit_key"]]
        if kind not in ("mark", "background") or str(r.get("truth")).startswith("spurious"):
            continue
        share = float(((r.get("removal") or {}).get("kinds") or {}).get(kind, 0.0))
        if share >= PARTIAL_SHARE:
            out["mixed"] += 1
        else:
            out["false_alarms"].append(f"{run.name} {r['class_name']}:{r['feature']} read as "
                                       f"{kind}, truth {r.get('truth')} {r.get('removal')}")
    return out


def summary_line(results: Sequence[dict[str, Any]]) -> str:
    """Found/shown per cue, in all, false alarms and mixed HITs over ``results``."""
    per: dict[str, list[int]] = {}
    for res in results:
        for cue, found in res["cues"].items():
            per.setdefault(cue, [0, 0])
            per[cue][0] += int(found)
            per[cue][1] += 1
    found = sum(f for f, _ in per.values())
    shown = sum(n for _, n in per.values())
    cues = " ".join(f"{c} {f}/{n}" for c, (f, n) in sorted(per.items()))
    return (f"{cues} | found {found}/{shown} | false alarms "
            f"{sum(len(r['false_alarms']) for r in results)} | mixed "
            f"{sum(r['mixed'] for r in results)}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--detail", type=Path, action="append", default=[],
                    help="measure_detail.py --record output (blur lines at sigma 1)")
    args = ap.parse_args(argv)
    detail: dict[tuple[str, str], float] = {}
    for path in args.detail:
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                detail[(rec["run"], rec["hit_key"])] = float(rec["detail"]["1"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            ap.error(f"--detail {path}: expected measure_detail.py --record lines with a "
                     f"blur line at sigma 1 ({exc})")
    results = []
    for run in args.runs:
        if not (run / "demo.json").is_file() or not (
                run / "shapes" / "tasks" / "manifest.jsonl").is_file():
            ap.error(f"{run}: not a kept image variant (demo.json and "
                     "shapes/tasks/manifest.jsonl expected)")
        results.append(read_variant(run, detail))
    print(summary_line(results))
    for res in results:
        for line in res["misses"] + res["false_alarms"]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
