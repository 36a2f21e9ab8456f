"""Features whose means are large against their spread (massive-activation channels, raw
measurements): the path's KKT claims must hold on the data as the user gave it.

The float32 columns the solvers see are standardized as ``(x - mean32) * inv_scale32``;
the path reports that standardization (its ``mean`` and ``scale`` are those float32 values),
and every product is taken on standardized values. With the float64 mean the columns were
shifted by its float32 rounding (a per-class logit offset the reported intercepts lacked), and
products on the raw values with the standardization folded in afterwards lost the gradient to
cancellation: the fitter reported KKT <= tol where an independent check found up to 3x tol.
"""

import numpy as np
import pytest
from helpers_kkt import kkt_ratios

from sparse_probe import fit_path
from sparse_probe.synthetic import make_sparse_classification


def _offset_data(seed):
    X, y, _ = make_sparse_classification(1500, 40, 4, informative_per_class=3, seed=seed)
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.5, 3.0, X.shape[1])
    offset = rng.uniform(50.0, 150.0, X.shape[1]) * rng.choice([-1, 1], X.shape[1])
    return (X * spread + offset).astype(np.float32), y


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("mode", ["default", "low_memory", "streamed"])
def test_kkt_holds_on_the_raw_data_with_large_means(tmp_path, seed, mode):
    X, y = _offset_data(seed)
    kw = {}
    src = X
    if mode == "low_memory":
        kw = dict(low_memory=True)
    elif mode == "streamed":  # from disk, no column cache: every pass standardizes raw chunks
        src = tmp_path / "X.npy"
        np.save(src, X)
        src, kw = str(src), dict(low_memory=True, cache_bytes=1024, chunk_rows=400)
    p = fit_path(src, y, n_lambdas=15, eps=1e-3, progress=False, **kw)
    tols = np.asarray(p.info["tol_per_point"])
    assert np.all(p.kkt_violation <= tols)  # the fitter's own claim...
    assert kkt_ratios(X, y, p).max() <= 1.0  # ...holds on the user's data


def test_reported_standardization_is_the_float32_one():
    X, y = _offset_data(3)
    p = fit_path(X, y, n_lambdas=3, progress=False)
    # mean and 1/scale are float32 values: (x - mean) / scale in float64 is what the solvers
    # computed in float32, up to one rounding of each standardized value
    np.testing.assert_array_equal(p.mean.astype(np.float32).astype(np.float64), p.mean)
    inv = 1.0 / p.scale  # a float32 value up to the float64 rounding of two reciprocals
    np.testing.assert_allclose(inv.astype(np.float32).astype(np.float64), inv, rtol=5e-16, atol=0)
    mean64 = X.astype(np.float64).mean(0)
    assert np.all(np.abs(p.mean - mean64) <= 2**-24 * np.abs(mean64))  # half a float32 ulp
    Xs = (X - p.mean) / p.scale
    # each column's mean is off zero by at most that rounding, in units of its spread
    assert np.all(np.abs(Xs.mean(0)) <= 2**-24 * np.abs(mean64) / p.scale + 1e-9)
    np.testing.assert_allclose(Xs.std(0), 1.0, rtol=1e-6)
