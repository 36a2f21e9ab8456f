"""The glmnet backend reads glmnet's error flag: a truncated path is kept and reported, a fatal
code is a clear error (glmnet5.f's documented ``jerr`` values)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sparse_probe.fit import FeatureSource, _evaluate, _float32_standardization, column_stats
from sparse_probe.penalties import make_penalty
from sparse_probe.solvers.glmnet_backend import _check_jerr, fit_path_glmnet

pytest.importorskip("glmnet")


def _fit(X, y, C, *, max_iter, n_lambdas=20, eps=1e-3):
    src = FeatureSource(X, chunk_rows=4096, name="X")
    mean, scale = _float32_standardization(*column_stats(src))
    return fit_path_glmnet(src, y, C, mean, scale, penalty=make_penalty(0.99, False),
                           n_lambdas=n_lambdas, eps=eps, lambdas=None, val=(None, None),
                           classes=None, t0=time.perf_counter(), tol=1e-3, evaluate=_evaluate,
                           progress=False, max_iter=max_iter)


@pytest.mark.parametrize("seed", [0, 7])
def test_unconverged_lambda_truncates_the_path_with_a_warning(seed, caplog):
    # a maxit too small for the whole path: glmnet stops at some λ #k with jerr = -k and returns
    # the k-1 solutions before it; those are kept (verified), not turned into an exception
    X, y = make_classification(400, 30, n_informative=10, n_classes=4, random_state=seed)
    full = _fit(X, y, 4, max_iter=1_000_000)
    assert full.info["jerr"] == 0 and full.info["stopped"] == "complete"
    assert len(full.lambdas) == 20
    with caplog.at_level(logging.WARNING, logger="sparse_probe.solvers.glmnet_backend"):
        cut = _fit(X, y, 4, max_iter=100)
    k = -cut.info["jerr"]
    assert 2 <= k <= 20
    assert len(cut.lambdas) == len(cut.weights) == k - 1
    assert cut.info["stopped"] == f"λ #{k} did not converge within maxit=100 passes"
    assert f"λ #{k} did not converge" in caplog.text and f"{k - 1} of 20 points" in caplog.text
    np.testing.assert_allclose(cut.lambdas, full.lambdas[: k - 1])
    # the points glmnet did return are its converged solutions: the same as the full path's
    for i in range(k - 1):
        np.testing.assert_allclose(cut.objective[i], full.objective[i], rtol=1e-9)


@pytest.mark.parametrize(("jerr", "needle"), [
    (8003, "class 3 has null probability below 1e-5"),
    (9001, "class 1 has null probability above 1 - 1e-5"),
    (7777, "error code 7777: memory allocation error"),
])
def test_fatal_codes_raise_naming_the_code(jerr, needle):
    with pytest.raises(RuntimeError, match=needle):
        _check_jerr(jerr, 0, 10, 100)


@pytest.mark.parametrize(("jerr", "lmu", "expected"), [
    (0, 10, "complete"),
    (0, 6, "deviance rule"),
    (-4, 3, "λ #4 did not converge within maxit=50 passes"),
    (-10005, 4, "nx limit on nonzero features exceeded at λ #5"),
    (-20007, 6, "pmax limit on nonzero features exceeded at λ #7"),
])
def test_nonfatal_codes_name_why_the_path_stopped(jerr, lmu, expected):
    assert _check_jerr(jerr, lmu, 10, 50) == expected
