"""Which text HIT panel shows a feature's reliance on identity terms (built-in toxicity, quick).

For every seed this trains the quick built-in toxicity model (nothing is downloaded) and, for
every feature of its representation and each way a class can use it (class toxic or non-toxic,
the feature high or low: ``sign`` +1 / -1), measures

- the **reference** reliance, independent of any panel: on the test split (where identity
  terms are independent of the label) the mean change of the feature, in the class's
  direction and in units of the feature's standard deviation, when the identity terms are
  deleted from the comments that have one (``id``), and when the class's own words (insults
  for toxic, compliments for non-toxic) are deleted from the comments that have them
  (``cls``). A (feature, class, sign) is *identity-reliant* when ``id`` exceeds both ``cls``
  and ``MIN_RELIANCE``, *class-reliant* when ``cls`` exceeds both ``id`` and ``MIN_RELIANCE``;
  the rest are left out;
- what each text HIT panel shows on the 9 top comments of the validation split, as
  ``tasks build`` renders it: ``occlusion`` (share of the highlighted words' attribution on
  identity terms / class words, :func:`tasks.viz.evidence.text_evidence`), ``insertion`` (each
  kind's mean effect when appended to 16 ordinary comments over every word tested, less that
  of the 128 words picked at random of neither kind, :func:`tasks.viz.text_panels.kind_shares`;
  candidates as ``tasks build`` takes them: the words of the 30 top comments and the 100 words
  most associated with the feature over the split; until 2026-12-02 the mass of the 10 words
  that push the feature most), ``contrast`` (the feature left
  with the highlighted words removed / only kept), ``reader``
  (:func:`tasks.viz.text_panels.text_reader_evidence`, what the simulated crowd reads), and
  ``truth``, the truth by intervention of ``bench_audit.py``
  (:func:`tasks.viz.intervention.text_removal`: identity terms' share, deleted from the top
  comments or appended to ordinary ones beyond words of neither kind; ``says id`` when it is
  at least half), with each panel's agreement with it.

Printed per reference group: the mean identity share of each panel, the share of cases where
the panel's dominant region is identity terms (``says id``: the crowd would flag it; for
class-reliant features this is a false alarm) and the AUC of the identity share between the
two groups; the ``strong`` rows keep the cases whose reference change is at least ``STRONG``
standard deviations (the features a sparse head leans on are of this kind).

Usage: ``python benchmarks/measure_text_evidence.py --seeds 0 1 [--out FILE]``
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

from sparse_probe.datasets import load_builtin, prepare_builtin
from sparse_probe.extract import read_meta
from tasks.viz.evidence import dominant_region, text_evidence
from tasks.viz.intervention import PARTIAL_SHARE, text_removal
from tasks.viz.source import CLASS_WORD_KINDS, load_source
from tasks.viz.text_attr import occlusion_attributions
from tasks.viz.text_panels import (
    associated_words,
    candidate_words,
    highlight_contrast,
    insertion_ranking,
    kind_shares,
    ordinary_rows,
    text_reader_evidence,
    typical_words,
    word_kinds,
)
from tasks.viz.topk import direction_for, top_k

MIN_RELIANCE = 0.05  # reference change (in feature std) below which a feature relies on neither
STRONG = 0.5  # rows "strong": reference change at least this (the features a sparse head uses)
PANELS = ("occlusion", "insertion", "reader", "truth")
REACH_LINES = (0.3, 0.35, 0.4, 0.45, 0.5)  # candidate lines of the reader (INSERTION_REACH)
CLASS_WORDS = {"toxic": "insult", "non-toxic": "compliment"}


def _encode(src, texts: list[str]) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 1024):
            out.append(src.features(texts[i:i + 1024]).detach().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _deletion(src, split, kind_prefix: str) -> np.ndarray:
    """Mean change (d,) of every feature when the tokens of a kind are deleted from the
    comments that have them: f(x) - f(x without them)."""
    rows = [i for i, ks in enumerate(split.token_kinds)
            if any(k.startswith(kind_prefix) for k in ks)]
    full = [" ".join(split.tokens[i]) for i in rows]
    cut = [" ".join(t for t, k in zip(split.tokens[i], split.token_kinds[i], strict=True)
                    if not k.startswith(kind_prefix)) for i in rows]
    return (_encode(src, full) - _encode(src, cut)).mean(0)


def measure(seed: int) -> list[dict]:
    run = Path(tempfile.mkdtemp(prefix=f"text-evidence-{seed}-"))
    try:
        feats = prepare_builtin("toxicity", run, seed=seed, quick=True, progress=False)
        meta = read_meta(feats)
        src = load_source(meta, "val")
        ds = load_builtin(meta)
        test = ds.test
        X = _encode(src, list(src.texts))
        std = _encode(src, test.texts).std(0) + 1e-9
        dele = {"identity": _deletion(src, test, "identity")}
        for word_kind in CLASS_WORDS.values():
            dele[word_kind] = _deletion(src, test, word_kind)
        kinds_of = word_kinds(src.tokens, src.token_kinds)
        control = typical_words(src.tokens)
        identity, neither = src.text_word_groups
        out = []
        for j in range(X.shape[1]):
            col = X[:, j]
            if np.ptp(col) <= 1e-9:
                continue
            base = [src.texts[i] for i in ordinary_rows(col, 16)]
            for sign in (1.0, -1.0):
                rows = top_k(col, 9, direction_for(sign))
                toks = [src.tokens[i] for i in rows]
                attrs = occlusion_attributions(src.features, toks, j, sign)
                occ = text_evidence(attrs, [src.token_kinds[i] for i in rows], CLASS_WORD_KINDS)
                pool = top_k(col, 30, direction_for(sign))
                words = list(dict.fromkeys(candidate_words([src.tokens[i] for i in pool], 100)
                                           + associated_words(src.tokens, col, sign, 100)))
                ranking = insertion_ranking(src.features, base, words, j, sign)
                typical = insertion_ranking(src.features, base, control, j, sign)
                departure = float(np.mean(sign * (col[rows] - np.median(col))))
                # as tasks build: no panel where the top comments do not depart from an
                # ordinary one the class's way (the page shows none)
                ins = (kind_shares(ranking, kinds_of, CLASS_WORD_KINDS, typical=typical,
                                   scale=departure) if departure > 0 else
                       {"object": 0.0, "cues": {"identity": 0.0}, "background": 0.0})
                con = highlight_contrast(src.features, toks, attrs, j, sign,
                                         float(np.median(col))) or {}
                panels = {"occlusion": occ, **({"insertion": ins} if departure > 0 else {})}
                reader = text_reader_evidence(panels, occ)
                check = text_removal(src.features, toks, [src.token_kinds[i] for i in rows], j,
                                     sign, float(np.median(col)), CLASS_WORD_KINDS,
                                     ordinary=base, cue_words=identity,
                                     control_words=neither)
                truth = ({"object": 0.0, "cues": {"identity": 0.0}, "background": 0.0,
                          "says": False, "unmeasured": True} if check is None else
                         {"object": check["removal"]["object"],
                          "cues": {"identity": check["removal"]["kinds"]["identity"]},
                          "background": 0.0,
                          "says": check["truth"] == "spurious:identity"})
                for cls_name, word_kind in CLASS_WORDS.items():
                    ref_id = sign * dele["identity"][j] / std[j]
                    ref_cls = sign * dele[word_kind][j] / std[j]
                    group = ("identity" if ref_id > max(ref_cls, MIN_RELIANCE) else
                             "class" if ref_cls > max(ref_id, MIN_RELIANCE) else None)
                    if group is None:
                        continue
                    out.append({"seed": seed, "feature": j, "sign": sign, "class": cls_name,
                                "group": group, "ref_id": float(ref_id),
                                "ref_cls": float(ref_cls), "removed": con.get("removed"),
                                "kept": con.get("kept"),
                                **{p: ev for p, ev in (("occlusion", occ), ("insertion", ins),
                                                       ("reader", reader), ("truth", truth))}})
        return out
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def _says(ev: dict) -> bool:
    """Whether a panel names identity terms (the truth: whether they carry half the feature)."""
    return bool(ev["says"]) if "says" in ev else dominant_region(ev) == "identity"


def table(records: list[dict]) -> list[str]:
    """Per reference group: n, and per panel the mean identity share and 'says id' rate; then
    the AUC of each panel's identity share, and the contrast numbers."""
    groups = defaultdict(list)
    for r in records:
        groups[r["group"]].append(r)
        if max(r["ref_id"], r["ref_cls"]) >= STRONG:
            groups[r["group"] + " strong"].append(r)
    lines = [f"{'reference':>30} {'n':>4} | " + " | ".join(f"{p:^20}" for p in PANELS),
             f"{'':>30} {'':>4} | " + " | ".join(f"{'id share   says id':^20}" for _ in PANELS)]
    for g in ("identity", "class", "identity strong", "class strong"):
        rs = groups.get(g, [])
        cells = []
        for p in PANELS:
            share = np.mean([r[p]["cues"]["identity"] for r in rs]) if rs else float("nan")
            says = np.mean([_says(r[p]) for r in rs]) if rs else float("nan")
            cells.append(f"{share:>8.2f} {says:>9.2f}  ")
        label = (g.split()[0] + f"-reliant, >= {STRONG:g} sd") if " " in g else g + "-reliant"
        lines.append(f"{label:>30} {len(rs):>4} | " + " | ".join(cells))
    lines.append("AUC of the identity share (identity- vs class-reliant): " + ", ".join(
        f"{p} {_auc([r[p]['cues']['identity'] for r in groups.get('identity', [])], [r[p]['cues']['identity'] for r in groups.get('class', [])]):.2f}"
        for p in PANELS))
    for p in ("occlusion", "insertion", "reader"):
        # one row per (feature, sign): the class columns repeat it
        # (the truth is not measured where the top comments do not depart the class's way)
        cases = [r for r in {(r["seed"], r["feature"], r["sign"]): r for r in records}.values()
                 if not r["truth"].get("unmeasured")]
        both = [(_says(r[p]), _says(r["truth"]), r["truth"]["cues"]["identity"])
                for r in cases]
        lines.append(
            f"{p} against the truth by intervention over {len(both)} (feature, sign) cases: "
            f"names identity terms where they carry half of it "
            f"{sum(a and t for a, t, _ in both)} of {sum(t for _, t, _ in both)}, where they do "
            f"not {sum(a and not t for a, t, _ in both)} of {sum(not t for _, t, _ in both)} "
            f"({sum(a and v < PARTIAL_SHARE for a, _, v in both)} where they carry less than "
            f"{PARTIAL_SHARE:g}, the rest mixed)")
    # where the reader's line on the insertion panel's identity reach could sit: each line
    # against the truth (a miss is a carried cue unnamed; under PARTIAL_SHARE a false alarm)
    cases = [r for r in {(r["seed"], r["feature"], r["sign"]): r for r in records}.values()
             if not r["truth"].get("unmeasured")]
    sweep = []
    for line in REACH_LINES:
        said = []
        for r in cases:
            panels = {"occlusion": r["occlusion"],
                      **({"insertion": r["insertion"]} if "reach" in r["insertion"] else {})}
            seen = text_reader_evidence(panels, r["occlusion"], reach_line=line)
            said.append((_says(seen), _says(r["truth"]), r["truth"]["cues"]["identity"]))
        sweep.append(f"{line:g}: {sum(a and t for a, t, _ in said)}/{sum(t for _, t, _ in said)}"
                     f" found, {sum(a and v < PARTIAL_SHARE for a, _, v in said)} false, "
                     f"{sum(a and not t and v >= PARTIAL_SHARE for a, t, v in said)} mixed")
    lines.append("reader with identity named from an insertion reach of at least (line: carried "
                 "found, false alarms, mixed flagged): " + "; ".join(sweep))
    for g in ("identity", "class"):
        rs = [r for r in groups.get(g, []) if r["removed"] is not None]
        if rs:
            lines.append(f"contrast, {g}-reliant (n={len(rs)}): feature left with the "
                         f"highlighted words removed {np.mean([r['removed'] for r in rs]):.2f}, "
                         f"only them kept {np.mean([r['kept'] for r in rs]):.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=None, help="also append the output here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lines: list[str] = []
    records: list[dict] = []
    for seed in args.seeds:
        recs = measure(seed)
        records += recs
        lines.append(f"seed {seed}:")
        lines += ["  " + ln for ln in table(recs)]
    lines.append(f"all seeds {args.seeds} ({time.perf_counter() - t0:.0f} s):")
    lines += ["  " + ln for ln in table(records)]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
