"""Mutation testing of the project's C kernels (mutmut mutates Python only).

Usage::

    python tools/mutation_c.py --source sparse_probe/solvers/_softmax_ce.c \\
        --tests tests/test_fused_ce.py [--functions exp_nonpos,sum,row,rows] [--out FILE]

Each mutant is one change to the code of the named functions (comments and strings are left
alone), in the spirit of mutmut's operators: a number ``k`` becomes ``k + 1`` (``0.5`` ->
``1.5``), a comparison flips (``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``), an
arithmetic operator swaps (``+`` <-> ``-``, ``*`` <-> ``/``, ``+=`` <-> ``-=``), ``&&`` <->
``||``. The working tree is copied to a temporary directory (``tools/mutation.py``'s copy, built
extensions included), the mutant compiled there with setup.py's flags over the copy's
extension, and the tests run against the copy; a mutant that fails to compile counts as
killed (the compiler caught it). Prints each survivor with its line and exits 1 below
``--target``. The working tree is never changed.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation import ROOT, _copy_tree

NUMBER = re.compile(r"(?<![\w.])(0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)"
                    r"(LL|L|U)?(?![\w.])")
SWAPS = [("<=", "<"), (">=", ">"), ("==", "!="), ("!=", "=="), ("+=", "-="), ("-=", "+="),
         ("&&", "||"), ("||", "&&")]
SINGLE = {"<": "<=", ">": ">=", "+": "-", "-": "+", "*": "/", "/": "*"}


def _code_mask(src: str) -> list[bool]:
    """True for characters of code (not in a comment, string, char literal or directive)."""
    mask = [True] * len(src)
    i = 0
    while i < len(src):
        if src.startswith("/*", i):
            j = src.index("*/", i) + 2
        elif src.startswith("//", i) or (src[i] == "#" and (i == 0 or src[i - 1] == "\n")):
            j = src.find("\n", i)
            j = len(src) if j < 0 else j
        elif src[i] in "\"'":
            j = i + 1
            while src[j] != src[i]:
                j += 2 if src[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        mask[i:j] = [False] * (j - i)
        i = j
    return mask


def _function_spans(src: str, names: list[str]) -> list[tuple[int, int]]:
    """(start, end) of the bodies of the named functions (from '{' to its matching '}')."""
    spans = []
    for name in names:
        comment = r"/\*(?:[^*]|\*(?!/))*\*/"  # one /* ... */, never past its own end
        m = re.search(rf"^(?:\w[^\n;]*?\s)?{re.escape(name)}\s*\([^;{{]*\)\s*(?:{comment}\s*)*\{{",
                      src, re.M)
        if m is None:
            raise SystemExit(f"--functions: no function {name!r} in the source")
        start = depth = m.end() - 1
        depth = 0
        for k in range(start, len(src)):
            depth += {"{": 1, "}": -1}.get(src[k], 0)
            if depth == 0:
                spans.append((start, k + 1))
                break
    return spans


def _number_mutant(lit: str) -> str:
    if lit.lower().startswith("0x"):
        return hex(int(lit, 16) + 1)
    return repr(float(lit) + 1) if any(c in lit for c in ".eE") else str(int(lit) + 1)


def mutants(src: str, functions: list[str]) -> list[tuple[int, str, str]]:
    """(offset, original, replacement) of every mutant in the named functions' code and in
    the numbers of the source's ``#define`` lines."""
    mask = _code_mask(src)
    out: list[tuple[int, str, str]] = []
    for m in re.finditer(r"^#define\s+\w+\s+-?(\S+)", src, re.M):  # numeric constants
        if NUMBER.fullmatch(m.group(1)):
            out.append((m.start(1), m.group(1), _number_mutant(m.group(1))))
    for a, b in _function_spans(src, functions):
        body = src[a:b]
        in_number = [False] * len(body)  # an exponent's sign is the number's, not an operator
        for m in NUMBER.finditer(body):
            if mask[a + m.start()]:
                out.append((a + m.start(1), m.group(1), _number_mutant(m.group(1))))
                in_number[m.start():m.end()] = [True] * (m.end() - m.start())
        k = 0
        while k < len(body):
            if not mask[a + k] or in_number[k]:
                k += 1
                continue
            two = body[k : k + 2]
            hit = next((sw for sw in SWAPS if sw[0] == two), None)
            if hit:
                out.append((a + k, two, hit[1]))
                k += 2
                continue
            if two in ("->", "++", "--", "<<", ">>", "*=", "/="):
                k += 2
                continue
            c = body[k]
            nxt = body[k + 1] if k + 1 < len(body) else ""
            pointer = c == "*" and (nxt.isalpha() or nxt == "_") and _is_decl(body, k)
            if c in SINGLE and nxt != "=" and not pointer:
                out.append((a + k, c, SINGLE[c]))
            k += 1
    return sorted(set(out))


def _is_decl(body: str, k: int) -> bool:
    """A '*' of a pointer declaration (``double *restrict e``, ``..., *R64 = ...``)."""
    line_start = body.rfind("\n", 0, k) + 1
    head = body[line_start:k].strip()
    return bool(re.fullmatch(r"(const\s+)?\w+", head)) or head.endswith(",")


def setup_openmp(setup_py: Path) -> set[str]:
    """The extensions setup.py builds with OpenMP (its ``OPENMP`` set, read without running
    setup.py): their mutants are compiled with ``-fopenmp`` too, or the code of their
    OpenMP blocks would not be in the module the tests run."""
    for node in ast.parse(setup_py.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "OPENMP"
                                                for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def mutant_path(tree: Path, source: str) -> Path:
    """Where a mutant of ``source`` (relative to the repository) is written in the copy
    ``tree``: beside the source, so that its own headers (``#include "_buffers.h"``) are found.
    A mutant that fails to compile counts as killed, and written elsewhere every one did (the
    unmutated text is now built from here first)."""
    return tree / Path(source).parent / "mutant.c"


def _build(src_file: Path, module: str, tree: Path, openmp: bool) -> bool:
    """Compile ``src_file`` over ``module``'s extension in the copy ``tree`` (``openmp``:
    with ``-fopenmp``, :func:`setup_openmp`); whether it compiled."""
    inc = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = tree / (module.replace(".", "/") + suffix)
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    omp = ["-fopenmp"] if openmp else []
    r = subprocess.run([cc, "-O3", "-fopenmp-simd", *omp, "-fPIC", "-shared", f"-I{inc}",
                        str(src_file), "-o", str(target)], capture_output=True)
    return r.returncode == 0


def _tests_pass(tree: Path, tests: list[str], timeout: float) -> bool:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=tree, capture_output=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": str(tree),
                                "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--tests", required=True, action="append")
    ap.add_argument("--functions", default=None,
                    help="comma-separated functions to mutate (default: every function)")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    src_path = ROOT / args.source
    src = src_path.read_text()
    module = args.source.removesuffix(".c").replace("/", ".")
    names = (args.functions.split(",") if args.functions else
             re.findall(r"^(?:static\s+)?(?:inline\s+)?(?:PyMODINIT_FUNC|[\w ]+?\*?)\s*\n?(\w+)\(",
                        src, re.M))
    found = mutants(src, names)
    lines = [f"{args.source}: {len(found)} mutants in {', '.join(names)}; tests {' '.join(args.tests)}"]
    print(lines[0], flush=True)
    survivors = []
    with tempfile.TemporaryDirectory(prefix="mutation-c-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        mutant_src = mutant_path(tree, args.source)
        mutant_src.write_text(src)
        openmp = module in setup_openmp(tree / "setup.py")  # read once, not per mutant
        if not (_build(mutant_src, module, tree, openmp)
                and _tests_pass(tree, args.tests, args.timeout)):
            raise SystemExit("the unmutated kernel does not build (as the mutants are built) "
                             "or pass its tests")
        for off, old, new in found:
            mutant_src.write_text(src[:off] + new + src[off + len(old):])
            killed = not _build(mutant_src, module, tree, openmp) or \
                not _tests_pass(tree, args.tests, args.timeout)
            line_no = src.count("\n", 0, off) + 1
            if not killed:
                survivors.append(f"  line {line_no}: {old!r} -> {new!r}: "
                                 f"{src.splitlines()[line_no - 1].strip()}")
                print(survivors[-1], flush=True)
        shutil.copy2(src_path, mutant_src)
    score = 1 - len(survivors) / max(len(found), 1)
    lines += [f"killed {len(found) - len(survivors)} of {len(found)}: score {score:.3f} "
              f"(target {args.target})", *(["survivors:", *survivors] if survivors else [])]
    print("\n".join(lines[1:]))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if score >= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
