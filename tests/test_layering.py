"""The stages share nothing but files (DESIGN.md): the import layering is checked, not hoped for.

Two checks of the same rules:

- an ``ast`` walk over every module (imports at module level, inside functions, and
  ``importlib.import_module``/``__import__`` calls with a literal name), needing no extra tool;
- the import-linter contracts of ``pyproject.toml`` (``[tool.importlinter]``), which also see
  indirect chains, when import-linter is installed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sparse_probe", "tasks", "analysis", "hit_templates")

#: (importer package, imported package, importer modules allowed to do it, by prefix)
RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("analysis", "tasks", ()),
    ("tasks", "analysis", ()),
    ("sparse_probe", "tasks", ("sparse_probe.demo",)),
    ("sparse_probe", "analysis", ("sparse_probe.demo",)),
]
#: Single imports excused for now (the same ``ignore_imports`` as pyproject.toml's contract):
#: analysis.ingest's QuestionFormAnswers parser moves to sparse_probe on another branch.
KNOWN: set[tuple[str, str]] = set()  # every rule holds; add (importer, imported) only with a reason


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """Every name ``path`` imports, with its line: ``import``/``from`` statements anywhere
    (relative ones resolved against ``module``; ``from a import b`` gives ``a.b``) and
    ``import_module``/``__import__`` calls with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found += [(name if a.name == "*" else f"{name}.{a.name}", node.lineno)
                      for a in node.names]
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            fn = node.func
            callee = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if callee in ("import_module", "__import__"):
                found.append((node.args[0].value, node.lineno))
    return found


def violations(root: Path, rules=RULES, known=frozenset()) -> list[str]:
    """``file:line: importer imports imported`` for each import that breaks ``rules``."""
    out: list[str] = []
    for pkg in {r[0] for r in rules}:
        for path in sorted((root / pkg).rglob("*.py")):
            module = _module_name(path, root)
            for name, line in imports_of(path, module):
                top = name.split(".")[0]
                for importer, imported, allowed in rules:
                    if importer != pkg or top != imported:
                        continue
                    if any(module == a or module.startswith(a + ".") for a in allowed):
                        continue
                    if any(module == k and (name == v or name.startswith(v + "."))
                           for k, v in known):
                        continue
                    out.append(f"{path.relative_to(root)}:{line}: {module} imports {name}")
    return sorted(set(out))


@pytest.mark.slow
def test_packages_import_across_stages_only_where_allowed():
    assert violations(ROOT, known=KNOWN) == []


def test_the_check_sees_lazy_relative_and_dynamic_imports(tmp_path):
    files = {
        "analysis/__init__.py": "",
        "analysis/report.py": "def f():\n    from tasks.ledger import Ledger\n",
        "tasks/__init__.py": "",
        "tasks/sub/__init__.py": "",
        "tasks/sub/x.py": "import importlib\nm = importlib.import_module('analysis.quality')\n",
        "sparse_probe/__init__.py": "",
        "sparse_probe/fit.py": "import tasks\n",
        "sparse_probe/demo/__init__.py": "from tasks import build\nimport analysis.report\n",
        "sparse_probe/ok.py": "from . import fit\nfrom .demo import x\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert violations(tmp_path) == [
        "analysis/report.py:2: analysis.report imports tasks.ledger.Ledger",
        "sparse_probe/fit.py:1: sparse_probe.fit imports tasks",
        "tasks/sub/x.py:2: tasks.sub.x imports analysis.quality",
    ]
    assert violations(tmp_path, known={("analysis.report", "tasks.ledger")}) == [
        "sparse_probe/fit.py:1: sparse_probe.fit imports tasks",
        "tasks/sub/x.py:2: tasks.sub.x imports analysis.quality",
    ]


@pytest.mark.slow
def test_import_linter_contracts_are_kept():
    pytest.importorskip("importlinter")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout
