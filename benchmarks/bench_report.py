"""Time ``sparse-probe report --answers --study`` on a study of the published shape.

Builds a synthetic study (:func:`analysis.synthetic_study.write_synthetic_study`: 5,000
(class, feature) items x 5 workers = 25,000 answers, 1,000 classes with 1-based ids and gaps,
one 3-valued question ``main_object / separate_object / background``, confidence, free text),
then runs the whole report as a user does (the CLI in a subprocess, twice: figures as files
and ``--self-contained``; for information also with ``--rule DawidSkene``, which loads
crowd-kit and scikit-learn) and prints its wall time and peak RSS next to the time of loading
the CSV alone (``pandas.read_csv``, in-process) and of ``import analysis``.

Targets (issue 17): whole report < 10 s and < 500 MB peak RSS.

Usage: ``python benchmarks/bench_report.py [--items N] [--classes K] [--workers W]
[--n-boot B] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run_child(cmd: list[str], env: dict[str, str]) -> str:
    """Run a child process; its stdout (stop with its stderr when it fails)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def _measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd`` in a fresh wrapper process so its peak RSS is its own."""
    wrapper = ("import resource, subprocess, sys, time; t=time.perf_counter(); "
               "p=subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "w=time.perf_counter()-t; "
               "r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
               "sys.stderr.write(p.stderr); print(p.stdout.strip()); print(f'@@ {w} {r}'); "
               "sys.exit(p.returncode)")
    out = _run_child([sys.executable, "-c", wrapper, *cmd], env)
    lines = out.splitlines()
    wall, rss = lines[-1].split()[1:]
    return float(wall), float(rss) / 1024.0, "\n".join(lines[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--keep", type=Path, default=None, help="Write the study and reports here.")
    args = ap.parse_args()

    import pandas as pd

    from analysis.synthetic_study import write_synthetic_study

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    csv_path, study = write_synthetic_study(work, n_items=args.items, n_classes=args.classes,
                                            n_workers=args.workers)
    size = csv_path.stat().st_size / 2**20
    t0 = time.perf_counter()
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    load = time.perf_counter() - t0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    imp_wall, imp_rss, _ = _measured([sys.executable, "-c", "import analysis"], env)
    base = [sys.executable, "-m", "sparse_probe.cli", "report", "--answers", str(csv_path),
            "--study", str(study), "--n-boot", str(args.n_boot)]
    rows = []
    for label, extra in (("report (figures as files)", ["--out", str(work / "report")]),
                         ("report --self-contained", ["--out", str(work / "report-inline"),
                                                      "--self-contained"])):
        wall, rss, out = _measured(base + extra, env)
        rows.append((label, wall, rss, out))
    ds_wall, ds_rss, _ = _measured([*base, "--out", str(work / "report-ds"), "--rule",
                                     "DawidSkene"], env)
    html = (work / "report-inline" / "index.html").stat().st_size / 2**20
    print(f"# bench_report  {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}"
          f"  {platform.machine()}  cpus={os.cpu_count()}")
    print(f"study: {args.items} items x {args.workers} workers = {len(df)} answers, "
          f"{args.classes} classes; CSV {size:.1f} MiB; n_boot={args.n_boot}")
    print(f"{'what':34s} {'wall s':>8s} {'peak RSS MiB':>13s}")
    print(f"{'load CSV alone (pandas.read_csv)':34s} {load:8.2f} {'-':>13s}")
    print(f"{'import analysis (subprocess)':34s} {imp_wall:8.2f} {imp_rss:13.0f}")
    for label, wall, rss, _ in rows:
        print(f"{label:34s} {wall:8.2f} {rss:13.0f}")
    print(f"{'(info) report --rule DawidSkene':34s} {ds_wall:8.2f} {ds_rss:13.0f}")
    print(f"self-contained index.html: {html:.2f} MiB")
    print(f"targets: report < 10 s, < 500 MB -> "
          f"{'met' if all(w < 10 and r < 500 for _, w, r, _ in rows) else 'NOT met'}")
    print(f"output: {rows[0][3]}")


if __name__ == "__main__":
    main()
