"""The mutation-testing configuration stays consistent with the tree (tools/mutation.py)."""

from __future__ import annotations

import configparser
import importlib.util
import re
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


def _threaded_torch(text: str) -> bool:
    """Whether a test file sets torch's thread count above one somewhere."""
    return any(m.group(1).strip() != "1"
               for m in re.finditer(r"torch\.set_num_threads\(([^)]*)\)", text))


def test_modules_whose_tests_run_torch_on_threads_fork_from_a_server():
    """torch's OpenMP team does not survive fork: forked from the process that ran such tests,
    a mutant's run spins until mutmut's CPU limit calls it a timeout."""
    driver = _driver()
    _, modules = driver.load_config()
    files = driver._worktree_files()
    threaded = []
    for m in modules:
        tests = driver._test_files(m["tests"], files)
        if any(_threaded_torch((ROOT / t).read_text(encoding="utf-8")) for t in tests):
            threaded.append(m["path"])
            assert m.get("process_isolation") == "forkserver", m["path"]
    assert "sparse_probe/solvers/fused_ce.py" in threaded
    assert _threaded_torch("torch.set_num_threads(before)")
    assert not _threaded_torch("torch.set_num_threads(1)\ntorch.get_num_threads()")


def test_the_isolation_reaches_mutmuts_config_and_a_wrong_one_is_refused(tmp_path):
    driver = _driver()
    cfg = configparser.ConfigParser()
    cfg.read_string(driver._setup_cfg("sparse_probe/x.py", ["tests/test_x.py"], ["-q"],
                                      "forkserver"))
    assert cfg["mutmut"]["process_isolation"] == "forkserver"
    assert cfg["mutmut"]["only_mutate"].split() == ["sparse_probe/x.py"]
    cfg.read_string(driver._setup_cfg("sparse_probe/x.py", ["tests/test_x.py"], ["-q"]))
    assert cfg["mutmut"]["process_isolation"] == "fork"
    bad = tmp_path / "mutation.toml"
    bad.write_text('[[module]]\npath = "a.py"\ntests = ["tests/a.py"]\n'
                   'process_isolation = "spawn"\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"a\.py: process_isolation must be one of fork, "
                                         r"forkserver, got 'spawn'"):
        driver.load_config(bad)
    bad.write_text('[[module]]\npath = "a.py"\ntests = ["tests/a.py"]\n'
                   'process_isolation = "forkserver"\n', encoding="utf-8")
    assert driver.load_config(bad)[1][0]["process_isolation"] == "forkserver"


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


def test_c_mutants_are_compiled_with_setups_openmp_flag(tmp_path):
    """tools/mutation_c.py reads setup.py's OPENMP set (without running setup.py): the
    cross-entropy kernel's mutants get -fopenmp, as its install does."""
    driver = _c_driver()
    assert driver.setup_openmp(ROOT / "setup.py") == {"sparse_probe.solvers._softmax_ce"}
    (tmp_path / "setup.py").write_text("import sys\nOPENMP = {'a._b', 'c._d'}\nsetup()\n")
    assert driver.setup_openmp(tmp_path / "setup.py") == {"a._b", "c._d"}
    (tmp_path / "setup.py").write_text("setup()\n")
    assert driver.setup_openmp(tmp_path / "setup.py") == set()


def test_c_mutants_are_written_beside_their_source(tmp_path):
    """A mutant of a kernel that includes its own header must be compiled where the header is
    found: written elsewhere, every mutant failed to compile and counted as killed."""
    driver = _c_driver()
    path = driver.mutant_path(tmp_path, "sparse_probe/solvers/_softmax_ce.c")
    assert path.parent == tmp_path / "sparse_probe" / "solvers" and path.suffix == ".c"
    src = (ROOT / "sparse_probe" / "solvers" / "_softmax_ce.c").read_text()
    assert '#include "_buffers.h"' in src
    assert (ROOT / "sparse_probe" / "solvers" / "_buffers.h").is_file()


def _c_driver():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        spec = importlib.util.spec_from_file_location("mutation_c", ROOT / "tools" / "mutation_c.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return module


C_SNIPPET = """#define LIMIT 8
#define NAME "x<y"
static int
f(const double *restrict a, int n) /* a < b */
{
    double s = 0.5, *p = NULL; // i - 1
    for (int i = 0; i < n && a[i] >= 0x10; i++)
        s += a[i] * 2 - "a-b"[0];
    return s != 1e-3 ? s / n : -s;
}

static int
g(void)
{
    return 7 + 1;
}
"""


def test_c_mutants_are_the_code_of_the_named_functions_and_the_defines():
    """Each mutant of tools/mutation_c.py: one operator, comparison or number of the named
    functions' code (not a comment, string, pointer declaration or another function) and
    the numbers of #define lines."""
    src = C_SNIPPET
    found = _c_driver().mutants(src, ["f"])
    by_text = sorted((src.count("\n", 0, off) + 1, old, new) for off, old, new in found)
    assert by_text == sorted([
        (1, "8", "9"),
        (6, "0.5", "1.5"),
        (7, "0", "1"), (7, "<", "<="), (7, "&&", "||"), (7, ">=", ">"), (7, "0x10", "0x11"),
        (8, "+=", "-="), (8, "*", "/"), (8, "2", "3"), (8, "-", "+"), (8, "0", "1"),
        (9, "!=", "=="), (9, "1e-3", "1.001"), (9, "/", "*"), (9, "-", "+"),
    ])
    for off, old, _ in found:  # every offset points at the text it replaces
        assert src[off:off + len(old)] == old


def test_c_mutants_refuse_a_function_the_source_lacks():
    with pytest.raises(SystemExit, match="no function 'h'"):
        _c_driver().mutants(C_SNIPPET, ["h"])
