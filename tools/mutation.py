"""Mutation testing of the modules that decide verdicts, money, access and math (issue 20).

Usage::

    python tools/mutation.py                          # every module of tools/mutation.toml
    python tools/mutation.py --module tasks/ledger.py # one (or several, repeat --module)
    python tools/mutation.py --out benchmarks/results/mutation-YYYY-MM-DD.txt
    python tools/mutation.py --module sparse_probe/solvers/gram_cd.py \
        --mutants 'sparse_probe.solvers.gram_cd.x__kernel__mutmut_*'  # one function's mutants

For each module the working tree (git's tracked and untracked, non-ignored files) is copied to
a temporary directory, and mutmut runs there, mutating only that module and running only the
module's own tests (``tools/mutation.toml``). The working tree is never mutated, even when the
run is killed; the temporary copy is removed afterwards (``--keep`` keeps it for
``mutmut browse``). The driver prints ``module | mutants | killed | survived | equivalent |
score``, then each survivor with its diff, and exits 1 when a module scores below its target.
A survivor that behaves exactly like the original code is listed, with a one-line reason, in
``tests/mutation_equivalents.toml`` and does not count against the score.

Why mutmut (3.x) rather than cosmic-ray: mutmut runs the test selection once, records which
tests reach each function, and then runs, in a forked process per mutant, only those tests;
all mutants live in one copy of the source behind trampolines switched by an environment
variable. cosmic-ray rewrites the file and runs the whole test command once per mutant, which
with torch and a Flask server imported per run costs seconds per mutant instead of
milliseconds, and it mutates files in place.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutation.toml"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"
#: Packages copied under ``mutants/`` so that every import resolves to the mutated copy.
PACKAGES = ("sparse_probe", "tasks", "analysis")

#: mutmut's ``process_isolation``: ``fork`` forks each mutant's run from the process that ran
#: the whole test selection; ``forkserver`` from a server that only collected the tests. A
#: module whose tests run torch on more than one thread needs the second: torch's OpenMP team
#: does not survive fork, and the child's first parallel region spins forever (mutmut's CPU
#: limit then reports a "timeout" for a mutant whose tests would pass).
ISOLATION = ("fork", "forkserver")

#: mutmut's statuses (mutmut.stats.status_by_exit_code) grouped for the score.
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
SURVIVED = {"survived", "no tests", "suspicious"}


@dataclass
class ModuleResult:
    """Outcome of one module's run."""

    path: str
    target: float
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> status
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> diff
    equivalent: dict[str, str] = field(default_factory=dict)  # survivor -> reason
    error: str | None = None
    unchecked: int = 0
    seconds: float = 0.0

    @property
    def killed(self) -> int:
        return sum(s in KILLED for s in self.statuses.values())

    @property
    def survivors(self) -> list[str]:
        return sorted(k for k, s in self.statuses.items() if s in SURVIVED)

    @property
    def score(self) -> float | None:
        """Killed share of the mutants that can be killed (equivalents left out)."""
        denom = self.killed + len(self.survivors) - len(self.equivalent)
        return None if denom <= 0 else self.killed / denom

    @property
    def passed(self) -> bool:
        return self.error is None and (self.score is None or self.score >= self.target)


def load_config(path: Path = CONFIG) -> tuple[dict, list[dict]]:
    """``(defaults, modules)`` of ``tools/mutation.toml``."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    modules = data.get("module", [])
    for m in modules:
        if "path" not in m or not isinstance(m.get("tests"), list):
            raise SystemExit(f"{path}: every [[module]] needs 'path' and a 'tests' list")
        if m.get("process_isolation", "fork") not in ISOLATION:
            raise SystemExit(f"{path}: [[module]] {m['path']}: process_isolation must be one of "
                             f"{', '.join(ISOLATION)}, got {m['process_isolation']!r}")
    return data.get("defaults", {}), modules


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, dict[str, str]]:
    """``{module: {mutant name: reason}}`` of the equivalent-mutants file."""
    if not path.is_file():
        return {}
    out: dict[str, dict[str, str]] = {}
    for n, e in enumerate(tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])):
        names = [e["mutant"]] if "mutant" in e else e.get("mutants")
        if not (all(isinstance(e.get(k), str) and e.get(k) for k in ("module", "reason"))
                and isinstance(names, list) and names
                and all(isinstance(m, str) for m in names)):
            raise SystemExit(f"{path}: equivalent #{n + 1} needs module, reason and mutant "
                             "(or a list of mutants)")
        for name in names:
            out.setdefault(e["module"], {})[name] = e["reason"]
    return out


def _worktree_files() -> list[str]:
    """Tracked plus untracked, non-ignored files of the working tree (as the user sees it)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
        check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def _copy_tree(dest: Path) -> None:
    """The working tree as the user sees it, plus the packages' built extension modules
    (ignored by git, but without them the copy would run other code than the tests do)."""
    built = [str(p.relative_to(ROOT)) for pkg in PACKAGES for ext in ("*.so", "*.pyd")
             for p in (ROOT / pkg).rglob(ext)]
    for rel in [*_worktree_files(), *built]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def _test_files(patterns: list[str], files: list[str]) -> list[str]:
    return sorted({f for p in patterns for f in files if fnmatch.fnmatchcase(f, p)})


def _setup_cfg(module: str, tests: list[str], pytest_args: list[str],
               isolation: str = "fork") -> str:
    def lines(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    also = [p for p in ("hit_templates", "docs", "README.md", "benchmarks") if (ROOT / p).exists()]
    return ("[mutmut]\n"
            f"source_paths ={lines(list(PACKAGES))}\n"
            f"only_mutate ={lines([module])}\n"
            f"also_copy ={lines(also)}\n"
            f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
            f"pytest_add_cli_args ={lines(['-p', 'mutation_plugin', *pytest_args])}\n"
            "use_git_change_detection = false\n"
            f"process_isolation = {isolation}\n")


_SHOW = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
diffs = {n: get_diff_for_mutant(n, path=sys.argv[1]) for n in json.loads(sys.argv[2])}
print(json.dumps(diffs))
"""


def _diffs(names: list[str], module: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """The diff of each mutant (what ``mutmut show`` prints), in one process."""
    if not names:
        return {}
    out = subprocess.run([sys.executable, "-c", _SHOW, module, json.dumps(names)], cwd=cwd,
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {n: f"(no diff: {out.stderr.strip().splitlines()[-1:]})" for n in names}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mutmut_run(args: list[str], cwd: Path, env: dict[str, str], log: Path,
                timeout: float | None) -> int | None:
    """``mutmut run`` in its own process group; the group (mutmut forks a worker per mutant)
    is killed on timeout, Ctrl-C or SIGTERM. Returns the exit code, None on timeout."""
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mutmut", *args], cwd=cwd, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_module(spec: dict, defaults: dict, *, max_children: int, keep: bool,
               timeout: float | None, verbose: bool) -> ModuleResult:
    """Run mutmut on one module in a temporary copy of the working tree."""
    module = spec["path"]
    res = ModuleResult(module, float(spec.get("target", defaults.get("target", 0.9))))
    if not (ROOT / module).is_file():
        res.error = "module not found"
        return res
    files = _worktree_files()
    tests = _test_files(spec["tests"], files)
    if not tests:
        res.error = f"no test file matches {spec['tests']}"
        return res
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sparse-probe-mutation-"))
    try:
        _copy_tree(tmp)
        (tmp / "setup.cfg").write_text(_setup_cfg(
            module, tests, list(spec.get("pytest_args", defaults.get("pytest_args", []))),
            spec.get("process_isolation", "fork")))
        # mutmut reads [tool.mutmut] from pyproject.toml first; the copy has none, so setup.cfg
        # is used. Subprocesses the tests start import the mutated copy too.
        # mutants/ must exist before mutmut starts: it puts the folder on sys.path only if it
        # exists, and a missing folder would let `import tasks` fall through to the installed
        # (unmutated) package.
        (tmp / "mutants").mkdir()
        # tools/ for mutation_plugin (pytest -p): tqdm's lock must not be shared by workers
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp / "mutants"), str(tmp / "tools")]),
               "OMP_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        log = tmp / "mutmut.log"
        if verbose:
            print(f"== {module}: mutmut in {tmp} against {' '.join(tests)}", flush=True)
        patterns = list(spec.get("mutants", []))
        code = _mutmut_run(["run", "--max-children", str(max_children), *patterns], tmp, env,
                           log, timeout)
        meta = tmp / "mutants" / (module + ".meta")
        if not meta.is_file():
            tail = log.read_text(errors="replace").replace("\r", "\n")[-2000:]
            res.error = f"mutmut run failed (exit {code}):\n{tail}"
            return res
        from mutmut.stats import status_by_exit_code

        # mutmut saves results as it goes, so a run cut short still tells what it checked.
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if patterns:  # only the selected functions' mutants count
            codes = {k: v for k, v in codes.items()
                     if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
        res.statuses = {k: status_by_exit_code[v] for k, v in codes.items()}
        res.unchecked = sum(v is None for v in codes.values())
        if code is None:
            res.error = (f"timed out after {timeout:.0f} s with {res.unchecked} of "
                         f"{len(codes)} mutants unchecked (score of the checked ones)")
        elif res.unchecked:
            said = [ln.strip() for ln in log.read_text(errors="replace").replace("\r", "\n")
                    .splitlines() if ln.strip().startswith(("Stopping", "failed"))]
            res.error = (f"mutmut exited {code} with {res.unchecked} mutants unchecked"
                         + (f": {said[0]}" if said else ""))
        res.diffs = _diffs(res.survivors, module, tmp, env)
        equivalents = load_equivalents().get(module, {})  # read now: it may have been edited
        for name in res.survivors:
            if name in equivalents:
                res.equivalent[name] = equivalents[name]
        return res
    finally:
        res.seconds = time.monotonic() - t0
        if keep:
            print(f"   kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def format_table(results: list[ModuleResult]) -> str:
    """The per-module score table."""
    head = ("module", "mutants", "killed", "survived", "(no tests)", "equivalent", "score",
            "target", "time")
    rows = [head]
    for r in results:
        score = "-" if r.score is None else f"{100 * r.score:.1f}%"
        if r.error:
            score = f"{score} (partial)" if r.statuses and r.score is not None else "error"
        rows.append((r.path, str(len(r.statuses) - r.unchecked), str(r.killed),
                     str(len(r.survivors)),
                     str(sum(s == "no tests" for s in r.statuses.values())),
                     str(len(r.equivalent)), score, f"{100 * r.target:.0f}%",
                     f"{r.seconds:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_survivors(results: list[ModuleResult]) -> str:
    """Each module's survivors (not listed as equivalent) with their diffs, plus errors."""
    out: list[str] = []
    for r in results:
        if r.error:
            out.append(f"## {r.path}: {r.error}")
        live = [n for n in r.survivors if n not in r.equivalent]
        if live:
            out.append(f"## {r.path}: {len(live)} surviving mutants")
            for name in live:
                out.append(f"### {name} ({r.statuses[name]})")
                out.append(r.diffs.get(name, "").strip())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", default=[],
                    help="module path(s) from tools/mutation.toml (default: all)")
    ap.add_argument("--max-children", type=int, default=2, help="parallel mutant workers")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed per module (default: no limit)")
    ap.add_argument("--out", type=Path, help="also write the table and survivors here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    ap.add_argument("--list", action="store_true", help="list the modules and their tests")
    ap.add_argument("--mutants", action="append", default=[], metavar="PATTERN",
                    help="check only the mutants matching these mutmut name patterns (with "
                         "one --module; replaces its configured 'mutants')")
    args = ap.parse_args(argv)

    # SIGTERM (make interrupted, CI cancel) unwinds like Ctrl-C, so temporary copies go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    defaults, modules = load_config()
    wanted = {m.strip() for arg in args.module for m in arg.split(",") if m.strip()}
    unknown = wanted - {m["path"] for m in modules}
    if unknown:
        print(f"error: {sorted(unknown)} not in {CONFIG.relative_to(ROOT)}", file=sys.stderr)
        return 2
    selected = [m for m in modules if not wanted or m["path"] in wanted]
    if args.mutants:
        if len(selected) != 1:
            print("error: --mutants needs exactly one --module", file=sys.stderr)
            return 2
        selected = [{**selected[0], "mutants": list(args.mutants)}]
    if args.list:
        files = _worktree_files()
        for m in selected:
            print(f"{m['path']}: {' '.join(_test_files(m['tests'], files)) or '(no tests)'}")
        return 0
    results = []
    for spec in selected:
        r = run_module(spec, defaults, max_children=args.max_children, keep=args.keep,
                       timeout=args.timeout, verbose=True)
        score = "-" if r.score is None else f"{100 * r.score:.1f}%"
        if r.error:
            score += f" ({r.error.splitlines()[0]})"
        print(f"   {r.path}: {len(r.statuses) - r.unchecked} mutants, {r.killed} killed, "
              f"{len(r.survivors)} survived ({len(r.equivalent)} equivalent): {score} "
              f"in {r.seconds:.0f} s", flush=True)
        results.append(r)
    table, survivors = format_table(results), format_survivors(results)
    print("\n" + table + ("\n\n" + survivors if survivors else ""))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n" + ("\n" + survivors + "\n" if survivors else ""))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
