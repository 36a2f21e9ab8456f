"""The demo's verdict on itself: what was flagged and the fate of each planted cue.

:func:`summarize_run` compares one finished run's report with the generator's ground truth
(``OUT/demo_summary.json`` holds one entry per run); :func:`summary_lines` is its console form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sparse_probe.rundir import RunDir, read_features_meta, read_jsonl
from tasks.viz.intervention import PARTIAL_SHARE

__all__ = ["intervention_note", "is_mixed", "object_larger", "summarize_run",
           "summary_lines"]

logger = logging.getLogger(__name__)


def _planted_cues(run: Path) -> list[dict[str, Any]]:
    """The planted cues of a built-in run, from the generator's own record."""
    from sparse_probe.datasets.prepare import load_builtin

    meta = read_features_meta(RunDir(run).features)
    ds = load_builtin(meta)
    if meta["kind"] == "image":
        return [{"cue": cue, "kind": ds.cue_kind[cue], "class": int(c),
                 "class_name": ds.class_names[c]} for cue, c in ds.cue_class.items()]
    toxic = ds.class_names.index("toxic")
    return [{"cue": "identity terms", "kind": "identity", "class": toxic,
             "class_name": ds.class_names[toxic]}]


def _counterfactual_summary(run: Path) -> list[dict[str, Any]]:
    import pandas as pd

    csv = run / "report" / "counterfactual.csv"
    if not csv.is_file():
        return []
    df = pd.read_csv(csv)
    out = []
    if "test" in df.columns and (df["test"] == "image_patch").any():
        for (c, f, m), g in df.groupby(["class", "feature", "model"]):
            g = g.set_index("test")
            if {"image_patch", "image_control"} <= set(g.index):
                out.append({"class": int(c), "feature": int(f), "model": str(m),
                            "flip_rate": float(g.loc["image_patch", "flip_rate"]),
                            "control_flip_rate": float(g.loc["image_control", "flip_rate"])})
    elif {"group", "term", "direction"} <= set(df.columns):
        pooled = df[(df["term"] == "*") & (df["direction"] == "to_toxic")]
        for m, g in pooled.groupby("model"):
            g = g.set_index("group")
            if "control" not in g.index:
                continue
            for group in g.index:
                if group != "control":
                    out.append({"group": str(group), "model": str(m),
                                "flip_rate": float(g.loc[group, "flip_rate"]),
                                "control_flip_rate": float(g.loc["control", "flip_rate"])})
    return out


def _manifest(run: Path) -> dict[str, dict[str, Any]]:
    """hit_key -> its ``tasks/manifest.jsonl`` row (empty without one)."""
    manifest = RunDir(run).manifest
    if not manifest.is_file():
        return {}
    return {row["hit_key"]: row for row in read_jsonl(
        manifest, what="manifest.jsonl from `sparse-probe tasks build`")}


def _dominant_cue(row: dict[str, Any], check: dict[str, Any] | None) -> str | None:
    """The planted cue that carries most of a HIT's feature by intervention (``check`` or the
    row's ``removal``), else the one holding most of its evidence; None without cues."""
    cues = ((check or {}).get("removal") or row.get("removal") or {}).get("cues") \
        or (row.get("evidence") or {}).get("cues") or {}
    if not cues:
        return None
    return max(cues.items(), key=lambda kv: float(kv[1] or 0.0))[0]


def is_mixed(flagged: dict[str, Any]) -> bool:
    """Whether a flagged feature whose truth is not the crowd's kind of cue is a *mixed*
    feature of that kind: by intervention the cue kind the crowd named carries at least
    :data:`~tasks.viz.intervention.PARTIAL_SHARE` of it, though less than half (e.g. an
    object feature that a texture carries 40% of). No answer is right or wrong for it, so it
    is neither a finding nor a false alarm; the summary lists it apart, with
    ``object_larger`` saying whether the object carries more than the cue."""
    removal = flagged.get("removal") or {}
    if flagged.get("truth_source") != "intervention" or not removal:
        return False
    share = float((removal.get("kinds") or {}).get(flagged.get("kind") or "", 0.0))
    return share >= PARTIAL_SHARE


def object_larger(flagged: dict[str, Any]) -> bool:
    """Whether the object carries more of a flagged feature than the kind of cue the crowd
    named (by intervention; False without a measurement)."""
    removal = flagged.get("removal") or {}
    share = float((removal.get("kinds") or {}).get(flagged.get("kind") or "", 0.0))
    return bool(removal) and float(removal.get("object") or 0.0) > share


def _reliance(run: Path) -> dict[str, dict[str, Any]]:
    """Per planted image cue, the model's measured reliance on it
    (:func:`sparse_probe.demo.reliance.cue_reliance`); empty for text runs."""
    from sparse_probe.demo.reliance import cue_reliance

    try:
        return cue_reliance(run)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # e.g. a moved checkpoint
        logger.warning("%s: cannot measure the model's reliance on its cues (%s)", run, exc)
        return {}


def summarize_run(run: Path, checks: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """Flagged features and the fate of each planted cue for one finished run directory.

    A cue is ``found`` when a feature whose HIT shows it (``truth`` from the builder, and the
    cue carries most of the feature, which tells apart two cues of one kind) was judged
    spurious, ``missed`` otherwise; ``shown`` says whether any HIT showed it to the crowd.
    On built-in data the builder's ``truth`` is the truth by intervention wherever it was
    measured (:mod:`tasks.viz.intervention`: the generator redraws the shown images without
    each region, or the shown comments lose each kind of word; no map or panel enters it),
    else the maps' (``truth_source`` of each flagged feature
    says which); ``checks`` (hit_key -> ``{"truth", "removal"}``, e.g. measured afterwards by
    ``benchmarks/measure_intervention.py`` for runs built before) replaces the builder's.
    Image cues also get ``reliance``, how much the model relies on the cue
    (:func:`sparse_probe.demo.reliance.cue_reliance`), and ``learned``: whether that reliance
    is significant (a cue the model does not use cannot be found by auditing its features;
    None for text cues).
    Gold HITs (known-answer items) never count: a finding must not rest on one. Features
    judged spurious whose ground truth is not a planted cue are false alarms, except mixed
    ones (:func:`is_mixed`), listed in ``flagged_mixed``.
    """
    report = json.loads((run / "report" / "report.json").read_text(encoding="utf-8"))
    manifest = _manifest(run)
    checks = dict(checks or {})
    for key, row in manifest.items():
        if key not in checks and row.get("truth_removal"):
            checks[key] = {"truth": row["truth_removal"], "removal": row.get("removal")}
    rows = [{**r, "truth": checks[r["hit_key"]]["truth"]} if r.get("hit_key") in checks
            else r for r in report["features"]]
    flagged = [{"class": r["class"], "class_name": r["class_name"], "feature": r["feature"],
                "kind": r["kind"], "truth": r["truth"], "gold": bool(r["is_gold"]),
                "truth_source": "intervention" if r.get("hit_key") in checks else "maps",
                "removal": (checks.get(r.get("hit_key")) or {}).get("removal")}
               for r in rows if r["verdict"] == "spurious"]
    dominant = {k: c for k, row in manifest.items()
                if (c := _dominant_cue(row, checks.get(k))) is not None}
    reliance = _reliance(run)
    cues = []
    for cue in _planted_cues(run):
        truth = f"spurious:{cue['kind']}"
        region = "identity" if cue["kind"] == "identity" else cue["cue"]  # evidence's name
        shown = [r for r in rows if r["truth"] == truth and not r.get("is_gold")
                 and dominant.get(r.get("hit_key", ""), region) == region]
        hits = [r for r in shown if r["verdict"] == "spurious"]
        if hits:
            status, note = "found", (f"flagged {len(hits)} of {len(shown)} features whose "
                                     "HITs show it")
        elif shown:
            status, note = "missed", (f"shown in {len(shown)} HITs but not judged spurious "
                                      f"(verdicts: {sorted({r['verdict'] for r in shown})})")
        else:
            status, note = "missed", (
                "no audited feature carries it as its pattern (by intervention: the model "
                "spreads it over features of other things, or they are not top features)"
                if checks else "no audited feature's evidence shows it (the heatmaps "
                "attribute it elsewhere or it is not a top feature)")
        rel = reliance.get(cue["cue"])
        learned = None if rel is None else bool(rel["learned"])
        if rel is not None:
            how = (f"the model's reliance on it: other classes predicted "
                   f"{cue['class_name']} {rel['to_class_with']:.2f} with it vs "
                   f"{rel['to_class_without']:.2f} without (effect {rel['effect']:+.2f}, "
                   f"z {rel['z']:.1f})")
            note = (f"{note}; {how}" if learned else
                    f"NOT LEARNED: {how}, not significant, so no feature can show it; {note}")
        cues.append({**cue, "status": status, "shown": bool(shown),
                     "features": [[r["class"], r["feature"]] for r in hits], "note": note,
                     "learned": learned, "reliance": rel})
    unfounded = [f for f in flagged
                 if not f["gold"] and not (f["truth"] or "").startswith("spurious")]
    mixed = [f for f in unfounded if is_mixed(f)]
    false_alarms = [f for f in unfounded if not is_mixed(f)]
    core_flagged = [f for f in false_alarms if f["truth"] == "core"]
    return {"run": str(run), "kind": report["summary"]["kind"],
            "report": str(run / "report" / "index.html"), "flagged": flagged, "cues": cues,
            "false_alarms": false_alarms, "core_flagged_spurious": len(core_flagged),
            "truth_by_intervention": bool(checks), "flagged_mixed": mixed,
            "counterfactual": _counterfactual_summary(run)}


def _listing(items: Iterable[str]) -> str:
    """Comma-separated items, or ``none``."""
    return ", ".join(items) or "none"


def intervention_note(f: dict[str, Any]) -> str:
    """`` by intervention: object 0.85, watermark 0.16`` for a flagged feature whose truth was
    decided by intervention (its shares), else ``""``."""
    if f.get("truth_source") != "intervention" or not f.get("removal"):
        return ""
    shares = {"object": f["removal"]["object"], **f["removal"]["cues"]}
    return " by intervention: " + ", ".join(f"{k} {float(v):.2f}" for k, v in shares.items())


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The console form of ``OUT/demo_summary.json``."""
    lines = []
    for name, s in summary["runs"].items():
        lines.append(f"{name}: report {s['report']}")
        lines.append("  judged spurious: " + _listing(
            f"{f['class_name']}:{f['feature']} ({f['kind']})" for f in s["flagged"]))
        for c in s["cues"]:
            status = c["status"].upper() + (" (NOT LEARNED)" if c.get("learned") is False
                                            and c["status"] != "found" else "")
            lines.append(f"  planted cue {c['cue']!r} ({c['kind']}, class {c['class_name']}): "
                         f"{status} - {c['note']}")
        if s.get("flagged_mixed"):
            lines.append("  flagged mixed features (the named cue carries a part of the "
                         "feature, less than half; no answer is wrong): " + _listing(
                             f"{f['class_name']}:{f['feature']}{intervention_note(f)}"
                             for f in s["flagged_mixed"]))
        lines.append("  false alarms: " + _listing(
            f"{f['class_name']}:{f['feature']} (truth {f['truth']}{intervention_note(f)})"
            for f in s["false_alarms"]))
        for r in s["counterfactual"]:
            what = (f"group {r['group']}" if "group" in r
                    else f"feature {r['class']}:{r['feature']}")
            # the network's own last layer is "original" (recorded as "dense" in the JSON)
            model = "original" if r["model"] == "dense" else r["model"]
            lines.append(f"  counterfactual ({model}): {what} flips {r['flip_rate']:.2f} "
                         f"vs control {r['control_flip_rate']:.2f}")
    return lines
