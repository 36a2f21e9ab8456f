"""The mutation-testing configuration stays consistent with the tree (tools/mutation.py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("mutation_driver", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_configured_module_exists_and_has_test_patterns():
    defaults, modules = _driver().load_config()
    assert 0 < defaults["target"] <= 1
    paths = [m["path"] for m in modules]
    assert len(paths) == len(set(paths))
    for m in modules:
        assert (ROOT / m["path"]).is_file(), m["path"]
        assert all(p.startswith("tests/") for p in m["tests"]), m


def test_equivalent_mutants_name_a_configured_module_and_give_a_reason():
    driver = _driver()
    _, modules = driver.load_config()
    configured = {m["path"] for m in modules}
    for module, entries in driver.load_equivalents().items():
        assert module in configured, module
        dotted = module.removesuffix(".py").replace("/", ".")
        for name, reason in entries.items():
            assert name.startswith(dotted + ".x"), name
            assert len(reason) > 10, name


def test_the_mutation_copy_carries_the_built_extension(tmp_path):
    """The compiled kernel is ignored by git; the copy the mutants run in must still hold it,
    or gram_cd's tests would run against a fallback (and fail on the kernel choice)."""
    built = sorted((ROOT / "sparse_probe" / "solvers").glob("_gram_cd*.so"))
    if not built and shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler: the optional _gram_cd extension is not built")
    assert built, "the _gram_cd extension is not built (pip install -e . builds it)"
    _driver()._copy_tree(tmp_path)
    rel = built[0].relative_to(ROOT)
    assert (tmp_path / rel).read_bytes() == built[0].read_bytes()
    assert (tmp_path / "sparse_probe" / "solvers" / "_gram_cd.c").is_file()
    assert not (tmp_path / ".venv").exists()
