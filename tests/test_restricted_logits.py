"""RestrictedData.logits64: float64 logits over the columns that carry a weight.

The reference is the product written out in float64 numpy on the same columns (float32 values
widened, or the float64 standardized columns in exact mode); the columns whose weights are all
zero add exactly nothing, so gathering the others changes only the summation's rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_probe.solvers.restricted import LOGITS_NONZERO_SHARE, RestrictedData, row_argmax


def _data(n=300, m=40, C=5, seed=0, *, colmajor=True, exact=None):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, m)).astype(np.float32)
    y = torch.as_tensor(g.integers(0, C, n))
    Xw = torch.from_numpy(X)
    X64 = (X.astype(np.float64) * (1 + 1e-9))  # the provider's values differ from X's
    provider = None
    if exact == "provider":
        X64T = torch.from_numpy(np.ascontiguousarray(X64.T))

        def provider():
            yield 0, X64T.T  # one block, a column-major view (as _Trainer.exact_ws_blocks)
    data = RestrictedData(Xw, y, C, XwT=Xw.T.contiguous() if colmajor else None,
                          exact_blocks=provider, block_rows=128)
    data.exact = exact is not None
    ref_X = X64 if exact == "provider" else X.astype(np.float64)
    return data, ref_X


def _weights(C, m, k, seed=1):
    """(C, m) float64 weights with exactly k columns holding a nonzero entry."""
    g = np.random.default_rng(seed)
    W = np.zeros((C, m))
    cols = g.choice(m, k, replace=False)
    W[:, cols] = g.standard_normal((C, k)) * (g.random((C, k)) < 0.6)
    W[0, cols] = np.where(W[0, cols] == 0, 0.5, W[0, cols])  # every chosen column nonzero
    return torch.from_numpy(W), g.standard_normal(C)


@pytest.mark.parametrize("exact", [None, "widened", "provider"])
@pytest.mark.parametrize("colmajor", [True, False])
@pytest.mark.parametrize("k", [0, 1, 7, 20, 21, 40])
def test_logits64_match_the_float64_product_whatever_columns_carry_weights(exact, colmajor, k):
    data, X64 = _data(exact=exact, colmajor=colmajor)
    W, b = _weights(data.C, data.m, k)
    z = data.logits64(W, torch.from_numpy(b))
    assert z.dtype == torch.float64 and z.shape == (data.n, data.C)
    ref = X64 @ W.numpy().T + b
    np.testing.assert_allclose(z.numpy(), ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
    assert data.n_products == 1  # one product counted, whatever was gathered
    # float32 weights and biases (a caller's own): widened, the same logits
    z32 = data.logits64(W.float(), torch.from_numpy(b).float())
    assert z32.dtype == torch.float64 and data.n_products == 2
    ref32 = X64 @ W.float().double().numpy().T + b.astype(np.float32)
    np.testing.assert_allclose(z32.numpy(), ref32, rtol=0,
                               atol=1e-12 * max(1.0, np.abs(ref32).max()))


def test_logits64_gather_the_weighted_columns_only_where_they_are_few(monkeypatch):
    data, _ = _data(m=40)
    seen = []
    real = RestrictedData._x64_blocks

    def spy(self, cols=None):
        seen.append(None if cols is None else cols.tolist())
        yield from real(self, cols)

    monkeypatch.setattr(RestrictedData, "_x64_blocks", spy)
    limit = int(LOGITS_NONZERO_SHARE * data.m)  # 20 of 40
    for k in (1, limit, limit + 1, data.m):
        W, b = _weights(data.C, data.m, k, seed=k)
        data.logits64(W, torch.from_numpy(b))
        want = sorted(np.flatnonzero((W.numpy() != 0).any(0)).tolist()) if k <= limit else None
        assert seen.pop() == want, k
    # all weights zero: the biases, no pass over the data at all
    z = data.logits64(torch.zeros(data.C, data.m, dtype=torch.float64),
                      torch.arange(data.C, dtype=torch.float64))
    assert not seen
    np.testing.assert_array_equal(z.numpy(), np.broadcast_to(np.arange(data.C, dtype=float),
                                                             (data.n, data.C)))


def test_logits64_keep_a_nan_weight_in_the_product():
    # a NaN weight is "nonzero": its column is gathered and the logits say so (the solvers
    # reject such a point) rather than silently dropping it
    data, _ = _data()
    W, b = _weights(data.C, data.m, 3)
    W[2, 5] = float("nan")
    z = data.logits64(W, torch.from_numpy(b))
    assert torch.isnan(z[:, 2]).all() and torch.isfinite(z[:, [0, 1, 3, 4]]).all()



@pytest.mark.parametrize("C,k,in_place", [(5, 10, True), (5, 11, False), (30, 7, True),
                                          (2, 20, False)])
def test_logits64_multiply_in_place_unless_the_columns_outnumber_twice_the_classes(
        monkeypatch, C, k, in_place):
    """Gathered column-major columns (k of them): ``addmm_`` on their transposed view for
    each row block where k <= TRANSPOSED_SUM_CLASSES * C, else their rows' product added
    transposed (restricted.TRANSPOSED_SUM_CLASSES); the same logits either way."""
    from sparse_probe.solvers.restricted import TRANSPOSED_SUM_CLASSES

    assert (k <= TRANSPOSED_SUM_CLASSES * C) == in_place
    data, X64 = _data(C=C)  # 300 rows in blocks of 128: three blocks
    calls = []
    real = torch.Tensor.addmm_
    monkeypatch.setattr(torch.Tensor, "addmm_",
                        lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    W, b = _weights(C, data.m, k)
    z = data.logits64(W, torch.from_numpy(b))
    ref = X64 @ W.numpy().T + b
    np.testing.assert_allclose(z.numpy(), ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
    assert len(calls) == (3 if in_place else 0)


@pytest.mark.parametrize("n,C", [(5000, 60), (4097, 64), (2048, 128), (100, 10)])
def test_add_widened_is_torchs_mixed_add_bit_for_bit(monkeypatch, n, C):
    """Float64 logits plus a float32 step, block by block (rows not a multiple of the block,
    one block, fewer entries than WIDEN_MIN): the same bits as torch's mixed-dtype add_, in
    place, on the very tensor passed in; float64 steps are added as is."""
    import sparse_probe.solvers.restricted as restricted

    monkeypatch.setattr(restricted, "WIDEN_MIN", 1000)  # blocks from 1,000 entries here
    monkeypatch.setattr(restricted, "WIDEN_ROWS", 2048)
    g = torch.Generator().manual_seed(n)
    z = torch.randn(n, C, generator=g, dtype=torch.float64) * 1e3
    d = torch.randn(n, C, generator=g) * torch.rand(n, C, generator=g) ** 8
    want = z.clone().add_(d)
    got = restricted.add_widened(z, d)
    assert got is z and got.dtype == torch.float64
    assert torch.equal(got, want)
    d64 = d.double() / 3
    assert torch.equal(restricted.add_widened(z.clone(), d64), z + d64)


def test_add_widened_takes_blocks_only_from_widen_min_entries(monkeypatch):
    import sparse_probe.solvers.restricted as restricted

    copies = []
    real = torch.Tensor.copy_
    monkeypatch.setattr(torch.Tensor, "copy_",
                        lambda self, src, *a, **kw: copies.append(self.shape) or
                        real(self, src, *a, **kw))
    z, d = torch.zeros(300, 4, dtype=torch.float64), torch.ones(300, 4)
    monkeypatch.setattr(restricted, "WIDEN_ROWS", 128)
    monkeypatch.setattr(restricted, "WIDEN_MIN", 1201)
    restricted.add_widened(z, d)
    assert copies == []  # 1,200 entries: torch's add_
    monkeypatch.setattr(restricted, "WIDEN_MIN", 1200)
    restricted.add_widened(z, d)
    assert copies == [(128, 4), (128, 4), (44, 4)]
    assert torch.equal(z, torch.full((300, 4), 2.0, dtype=torch.float64))


def test_row_argmax_is_argmax_with_ties_and_nans():
    g = torch.Generator().manual_seed(2)
    z = torch.randint(0, 3, (500, 7), generator=g).double()  # many ties
    z[5, 3] = float("nan")
    z[6, :] = float("nan")
    z[7, 1] = float("inf")
    assert torch.equal(row_argmax(z), z.argmax(1))
    assert row_argmax(z)[5] == 3 and row_argmax(z)[7] == 1
