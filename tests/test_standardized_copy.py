"""The standardized copy a CPU fit keeps of in-memory features (fit.STANDARDIZED_COPY_BYTES):
when it is made, and that a fit with it is bit for bit the fit that standardizes every chunk."""

import numpy as np
import pytest
import torch

import sparse_probe.fit as fit_module
from sparse_probe import fit_path
from sparse_probe.data import FeatureSource
from sparse_probe.synthetic import make_sparse_classification


@pytest.fixture(scope="module")
def xy():
    X, y, _ = make_sparse_classification(900, 30, 3, informative_per_class=3, seed=7)
    # unstandardized, means large against spreads: the float32 standardization rounds
    X = X * np.linspace(0.3, 4.0, 30, dtype=np.float32) + np.linspace(-50, 80, 30,
                                                                          dtype=np.float32)
    return X.astype(np.float32), y


def _trainer(X, y, *, cache_bytes=2 * 2**30, low_memory=False, chunk_rows=None):
    src = FeatureSource(X, chunk_rows=chunk_rows)
    mean, scale = fit_module._float32_standardization(*fit_module.column_stats(src))
    return fit_module._Trainer(src, y, int(y.max()) + 1, mean, scale, torch.device("cpu"),
                               cache_bytes, low_memory)


def test_the_copy_is_each_chunk_standardized_bit_for_bit(xy):
    X, y = xy
    tr = _trainer(X, y, chunk_rows=256)  # four chunks, the last one short
    copy = tr.standardized()
    assert copy is not None and copy.dtype == torch.float32 and copy.shape == X.shape
    assert tr.standardized() is copy  # made once
    for s, block in tr.src.chunks():
        cols = torch.arange(X.shape[1])
        ref = tr._standardized_cols(block, cols)
        assert torch.equal(copy[s : s + ref.shape[0]], ref)
    # the row blocks the full-gradient pass reads: the copy's rows, in order, all of them
    starts = [s for s, _ in tr._std_blocks()]
    assert starts == list(range(0, X.shape[0], 256))
    assert torch.equal(torch.cat([b for _, b in tr._std_blocks()]), copy)


def test_the_copy_is_kept_up_to_its_byte_limit_only(xy, monkeypatch):
    X, y = xy
    nbytes = 4 * X.shape[0] * X.shape[1]
    monkeypatch.setattr(fit_module, "STANDARDIZED_COPY_BYTES", nbytes)
    assert _trainer(X, y).standardized() is not None  # exactly at the limit: kept
    assert _trainer(X, y, cache_bytes=nbytes).standardized() is not None
    assert _trainer(X, y, cache_bytes=nbytes - 1).standardized() is None  # the cache's bound
    monkeypatch.setattr(fit_module, "STANDARDIZED_COPY_BYTES", nbytes - 1)
    assert _trainer(X, y).standardized() is None  # one byte over: chunks standardized instead
    # streamed chunks without it: the same values as the copy's
    monkeypatch.setattr(fit_module, "STANDARDIZED_COPY_BYTES", nbytes)
    want = _trainer(X, y).standardized()
    monkeypatch.setattr(fit_module, "STANDARDIZED_COPY_BYTES", nbytes - 1)
    got = torch.cat([b.clone() for _, b in _trainer(X, y, chunk_rows=200)._std_blocks()])
    assert torch.equal(got, want)


def test_no_copy_in_low_memory_mode_or_for_features_on_disk(xy, tmp_path):
    X, y = xy
    assert _trainer(X, y, low_memory=True).standardized() is None
    np.save(tmp_path / "X.npy", X)
    assert _trainer(str(tmp_path / "X.npy"), y).standardized() is None


def test_a_fit_with_the_copy_is_the_fit_without_it(xy, monkeypatch):
    """The same path, bit for bit, whether the KKT passes and the columns joining the working
    set read the copy or standardize raw chunks (the default's copy against a limit of 0)."""
    X, y = xy
    kw = dict(alpha=0.9, n_lambdas=8, eps=2e-2, progress=False, threads=1)
    with_copy = fit_path(X, y, **kw)
    monkeypatch.setattr(fit_module, "STANDARDIZED_COPY_BYTES", 0)
    without = fit_path(X, y, **kw)
    for a, b in zip(with_copy.weights, without.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(with_copy.intercepts, without.intercepts)
    np.testing.assert_array_equal(with_copy.kkt_violation, without.kkt_violation)
    assert with_copy.nnz[-1] > 0
