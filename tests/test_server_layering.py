"""The task server's storage layering: the SQL lives in ``tasks/server/storage.py`` only.

``storage.py`` holds every statement and is the one way to the database; ``db.py`` (tables,
connections, transactions) sits under it. No other module of ``tasks.server`` may hold SQL text,
import SQLAlchemy, ``sqlite3`` or ``db.py``, or import another module's private names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[1] / "tasks" / "server"
STORAGE = "storage.py"
DATABASE_MODULES = {"db.py", STORAGE}  # may import sqlalchemy / sqlite3
_SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s")
_DB_LIBRARIES = ("sqlalchemy", "sqlite3")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def sql_literals(source: str) -> list[str]:
    """String constants (docstrings aside) that contain a SQL statement keyword."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs and _SQL.search(node.value)]


def imports(source: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import; relative modules keep their leading dots."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
    return out


def _modules() -> list[Path]:
    paths = sorted(SERVER.glob("*.py"))
    assert {p.name for p in paths} >= {STORAGE, "db.py", "worker.py", "hotpaths.py"}
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_sql_only_in_storage(path):
    found = sql_literals(path.read_text())
    if path.name == STORAGE:
        assert found, "storage.py is expected to hold the server's SQL"
    else:
        assert found == [], f"{path.name} holds SQL text; move it into {STORAGE}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_only_storage_reaches_the_database(path):
    for module, names in imports(path.read_text()):
        top = module.lstrip(".").split(".")[0]
        if path.name not in DATABASE_MODULES:
            assert top not in _DB_LIBRARIES, f"{path.name} imports {module}"
        if path.name != STORAGE:
            assert module not in (".db", "tasks.server.db"), f"{path.name} imports {module}"
        if module.startswith(".") or module.startswith("tasks.server"):
            private = [n for n in names if n.startswith("_")]
            assert private == [], f"{path.name} imports private {private} from {module}"


def test_the_checks_catch_violations():
    src = ('"""Module doc: UPDATE ... WHERE is fine in prose."""\n'
           'Q = "SELECT a FROM t WHERE b = :b"\n'
           'def f():\n    """UPDATE in a docstring is prose."""\n'
           '    return "UPDATE hits SET n = 1"\n'
           'from .worker import _TAKE_SQL\nimport sqlalchemy.orm\n')
    assert sql_literals(src) == ["SELECT a FROM t WHERE b = :b", "UPDATE hits SET n = 1"]
    assert sql_literals('x = "Select a colour, then update it"') == []
    assert (".worker", ["_TAKE_SQL"]) in imports(src)
    assert ("sqlalchemy.orm", []) in imports(src)
