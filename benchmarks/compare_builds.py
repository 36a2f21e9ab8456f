"""Compare two HIT builds (``sparse-probe tasks build`` outputs), e.g. ``--device cuda`` vs CPU.

What must agree: the same HITs (``hit_key``), and per HIT the same example ids, truth labels
(``truth``, ``truth_maps``, ``truth_removal``) and gold answers; these decide what workers see
and how their answers are scored. What may differ by rounding is measured and printed: the
largest absolute difference of any number in a HIT's evidence (``evidence``,
``evidence_panels``, ``evidence_images``, ``removal``, ``colour``) and, per asset image, the
largest and mean absolute pixel difference (0-255).

Usage: ``python benchmarks/compare_builds.py BUILD_A BUILD_B [--json OUT]``; exit status 1
when something that must agree does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

#: fields that must be equal in both builds
SAME = ("example_ids", "truth", "truth_maps", "truth_removal", "is_gold", "gold", "class",
        "feature", "layer")
#: fields whose numbers may differ by rounding
NUMERIC = ("evidence", "evidence_panels", "evidence_images", "removal", "colour")


def _manifest(build: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (build / "manifest.jsonl").read_text().splitlines()
            if line.strip()]
    return {r["hit_key"]: r for r in rows}


def _numbers(obj, prefix: str = "") -> dict[str, float]:
    """Flatten the numbers of nested dicts/lists into ``{path: value}``."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def _pixels(a: Path, b: Path) -> tuple[float, float] | None:
    from PIL import Image

    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return None
    d = np.abs(x - y)
    return float(d.max()), float(d.mean())


def compare(a: Path, b: Path) -> dict:
    """The comparison of builds ``a`` and ``b`` (see the module docstring)."""
    ma, mb = _manifest(a), _manifest(b)
    problems: list[str] = []
    if set(ma) != set(mb):
        problems.append(f"HITs differ: only in A {sorted(set(ma) - set(mb))[:5]}, "
                        f"only in B {sorted(set(mb) - set(ma))[:5]}")
    worst_num = (0.0, "")
    pix_max, pix_means, shape_mismatch, n_assets = 0.0, [], [], 0
    by_kind: dict[str, list[tuple[float, float]]] = {}  # asset name -> (max, mean) per HIT
    for key in sorted(set(ma) & set(mb)):
        ra, rb = ma[key], mb[key]
        for f in SAME:
            if ra.get(f) != rb.get(f):
                problems.append(f"{key}: {f} differs ({ra.get(f)!r} vs {rb.get(f)!r})")
        na = _numbers({f: ra.get(f) for f in NUMERIC})
        nb = _numbers({f: rb.get(f) for f in NUMERIC})
        if set(na) != set(nb):
            problems.append(f"{key}: evidence fields differ ({sorted(set(na) ^ set(nb))[:4]})")
        for k in set(na) & set(nb):
            d = abs(na[k] - nb[k])
            if d > worst_num[0]:
                worst_num = (d, f"{key}: {k} {na[k]:.6g} vs {nb[k]:.6g}")
        for name, rel in (ra.get("assets") or {}).items():
            pa, pb = a / rel, b / (rb.get("assets") or {}).get(name, rel)
            if not (pa.is_file() and pb.is_file()) or pa.suffix != ".png":
                continue
            n_assets += 1
            px = _pixels(pa, pb)
            if px is None:
                shape_mismatch.append(f"{key}:{name}")
                continue
            pix_max = max(pix_max, px[0])
            pix_means.append(px[1])
            by_kind.setdefault(name, []).append(px)
    if shape_mismatch:
        problems.append(f"asset sizes differ: {shape_mismatch[:5]}")
    return {
        "a": str(a), "b": str(b), "hits": len(set(ma) & set(mb)), "problems": problems,
        "same_fields": list(SAME), "evidence_max_abs_diff": worst_num[0],
        "evidence_worst": worst_num[1], "assets_compared": n_assets,
        "pixel_max_abs_diff": pix_max,
        "pixel_mean_abs_diff": float(np.mean(pix_means)) if pix_means else 0.0,
        "pixels_by_asset": {k: {"images": len(v), "max": max(m for m, _ in v),
                                "mean": float(np.mean([a for _, a in v]))}
                            for k, v in sorted(by_kind.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = ap.parse_args(argv)
    for p in (args.a, args.b):
        if not (p / "manifest.jsonl").is_file():
            print(f"{p}: no manifest.jsonl (expected a `sparse-probe tasks build` output)",
                  file=sys.stderr)
            return 2
    r = compare(args.a, args.b)
    print(f"{r['a']} vs {r['b']}: {r['hits']} HITs; "
          f"{'SAME ' + ', '.join(SAME) if not r['problems'] else 'DIFFERENT'}")
    for p in r["problems"][:20]:
        print("  " + p)
    print(f"  evidence numbers: largest difference {r['evidence_max_abs_diff']:.3g}"
          + (f" ({r['evidence_worst']})" if r["evidence_worst"] else ""))
    print(f"  {r['assets_compared']} asset images: largest pixel difference "
          f"{r['pixel_max_abs_diff']:.0f}/255, mean {r['pixel_mean_abs_diff']:.4f}")
    for k, v in r["pixels_by_asset"].items():
        print(f"    {k}: {v['images']} images, largest {v['max']:.0f}/255, mean {v['mean']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
