"""The index-set helpers against numpy's own set functions, on index lists made here."""

import numpy as np
import pytest

from sparse_probe import index_sets


def _draws():
    rng = np.random.default_rng(2026)
    for size_a, size_b, high in [(0, 0, 5), (0, 7, 5), (9, 0, 5), (1, 1, 3), (50, 40, 30),
                                 (3000, 2500, 5000), (200, 300, 10**12)]:
        for dtype in (np.int64, np.int32, np.intp):
            hi = min(high, np.iinfo(dtype).max)
            yield (rng.integers(0, hi, size_a).astype(dtype),
                   rng.integers(0, hi, size_b).astype(dtype))


@pytest.mark.parametrize("a,b", list(_draws()))
def test_helpers_equal_numpys_set_functions(a, b):
    for got, want in [(index_sets.unique(a), np.unique(a)),
                      (index_sets.union(a, b), np.union1d(a, b)),
                      (index_sets.difference(a, b), np.setdiff1d(a, b)),
                      (index_sets.difference(b, a), np.setdiff1d(b, a))]:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for x, y in [(a, b), (b, a)]:
        got = index_sets.members(x, y)
        assert got.dtype == bool and got.shape == x.shape
        np.testing.assert_array_equal(got, np.isin(x, y))


def test_unique_flattens_and_keeps_sorted_distinct_entries():
    a = np.array([[5, 1, 5], [1, 9, 0]])
    np.testing.assert_array_equal(index_sets.unique(a), [0, 1, 5, 9])
    np.testing.assert_array_equal(index_sets.unique(np.array([7, 7, 7])), [7])
    np.testing.assert_array_equal(index_sets.difference(np.array([4, 2, 4, 3]), np.array([3])),
                                  [2, 4])


def test_members_at_the_ends_of_the_other_list_and_in_any_shape():
    b = np.array([9, 2, 5, 2])
    a = np.array([[1, 2, 3], [9, 10, 5]])  # below, at and above b's ends
    np.testing.assert_array_equal(index_sets.members(a, b),
                                  [[False, True, False], [True, False, True]])
    assert index_sets.members(np.array([3]), np.zeros(0, dtype=np.int64)).tolist() == [False]


def test_a_fit_in_a_fresh_interpreter_imports_neither_numpy_ma_nor_numpy_random(tmp_path):
    """numpy 2.4's np.unique, np.isin and np.median import numpy.ma on their first call, and
    numpy.random is imported on its first use: a fresh process's fit paid 12 ms for the two.
    A path that runs OWL-QN and Newton (its Gram model solves), grows its working set and
    self-checks the compiled kernels imports neither."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(7)
    X = rng.standard_normal((1500, 90)).astype(np.float32)
    X[:, 45:] = 0.5 * X[:, 45:] + X[:, :45] @ rng.standard_normal((45, 45)).astype(np.float32)
    y = (X[:, :6] @ rng.standard_normal((6, 5))).argmax(1)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = (
        "import json, sys, numpy as np\n"
        "from sparse_probe import fit_path\n"
        f"X, y = np.load({str(tmp_path / 'X.npy')!r}), np.load({str(tmp_path / 'y.npy')!r})\n"
        "seen = lambda: [m for m in ('numpy.ma', 'numpy.random') if m in sys.modules]\n"
        "before = seen()\n"
        "p = fit_path(X, y, n_lambdas=20, eps=1e-3, progress=False)\n"
        "print(json.dumps([before, seen(), sorted(set(p.info['method_per_point']))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, methods = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == [] and after == [], out.stdout
    assert {"newton", "owlqn"} <= set(methods), methods
