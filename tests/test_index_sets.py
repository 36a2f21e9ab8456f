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


def test_unique_flattens_and_keeps_sorted_distinct_entries():
    a = np.array([[5, 1, 5], [1, 9, 0]])
    np.testing.assert_array_equal(index_sets.unique(a), [0, 1, 5, 9])
    np.testing.assert_array_equal(index_sets.unique(np.array([7, 7, 7])), [7])
    np.testing.assert_array_equal(index_sets.difference(np.array([4, 2, 4, 3]), np.array([3])),
                                  [2, 4])
