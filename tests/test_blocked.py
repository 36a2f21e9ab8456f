"""Streaming evaluation (low-memory mode) against the cached in-memory one."""

import pytest
import torch

from sparse_probe.solvers.blocked import BlockedData
from sparse_probe.solvers.restricted import RestrictedData


def test_raw_blocks_standardized_in_float32_match_cached_columns():
    """Raw blocks with large means: standardized in float32 before any product, as the fit's
    cached columns are (``(x - mean32) * inv_scale32``), so both see the same values; the
    standardization folded into float32 products of the raw values left 1e-4 relative error
    in the gradient here (mean/std up to 100)."""
    g = torch.Generator().manual_seed(3)
    n, m, C = 1000, 6, 4
    raw = torch.randn(n, m, generator=g) * torch.linspace(0.5, 4, m) + 50.0  # large means
    y = torch.randint(0, C, (n,), generator=g)
    mean = raw.to(torch.float64).mean(0).to(torch.float32)
    inv_scale = (1 / raw.to(torch.float64).std(0, unbiased=False)).to(torch.float32)
    Xs = (raw - mean) * inv_scale
    W = torch.randn(C, m, dtype=torch.float64, generator=g)
    b = torch.randn(C, dtype=torch.float64, generator=g)
    ref_loss, ref_G, ref_gb = RestrictedData(Xs, y, C).loss_grad(W, b)

    def blocks():  # uneven last block; the caller's buffer is reused between blocks
        buf = torch.empty(300, m)
        for s in range(0, n, 300):
            rows = min(300, n - s)
            buf[:rows] = raw[s : s + rows]
            yield s, buf[:rows]

    def views():  # the caller's own tensor, block by block
        for s in range(0, n, 300):
            yield s, raw[s : s + 300]

    before = raw.clone()
    for cols, source in ((None, blocks), (torch.arange(m), blocks), (None, views)):
        data = BlockedData(source, y, n, m, C, cols=cols, mean=mean.double(),
                           inv_scale=inv_scale.double())
        for _ in range(2):  # buffers are reused across evaluations
            loss, G, gb = data.loss_grad(W, b)
            assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
            torch.testing.assert_close(gb, ref_gb, rtol=0, atol=1e-12)
            # float32 products over different row blocks: a few ulps of the sums
            torch.testing.assert_close(G, ref_G, rtol=1e-6, atol=1e-8)
        loss_only, none_G, _ = data.loss_grad(W, b, need_grad=False)
        assert none_G is None and abs(loss_only - ref_loss) <= 1e-12 * abs(ref_loss)
    assert torch.equal(raw, before)  # the caller's blocks are not standardized in place


def test_working_set_cache_grows_shrinks_and_matches_the_source():
    import numpy as np

    from sparse_probe.data import FeatureSource
    from sparse_probe.fit import _Trainer
    from sparse_probe.fit_common import column_stats

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((500, 30)) * 3 + 1).astype(np.float32)
    src = FeatureSource(X, chunk_rows=128)
    mean, scale = column_stats(src)
    y = rng.integers(0, 3, 500)
    tr = _Trainer(src, y, 3, mean, scale, "cpu", cache_bytes=2**30, low_memory=False)
    Xstd = (X - mean) / scale
    for ws in ([3, 7], [1, 3, 7, 20], [1, 3, 7, 20, 29, 0], [3, 20, 5], [3, 20, 5, 8, 9, 10]):
        tr.set_working_set(np.array(ws))
        assert sorted(tr.ws.tolist()) == sorted(ws)
        assert tr.Xw.is_contiguous()
        np.testing.assert_allclose(tr.Xw.numpy(), Xstd[:, tr.ws], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(tr.XwT.numpy(), tr.Xw.numpy().T)
    # appending keeps the order of the columns already cached
    before = tr.ws.copy()
    tr.set_working_set(np.concatenate([before, [11, 12]]))
    assert tr.ws[: before.size].tolist() == before.tolist()


def _reference(Xs, y, C, W, b):
    """Mean cross-entropy and its gradient in float64 by autograd, from the float32 data."""
    W = W.double().clone().requires_grad_(True)
    b = b.double().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(Xs.double() @ W.T + b, y)
    G, gb = torch.autograd.grad(loss, (W, b))
    return float(loss.detach()), G, gb


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("cols", [None, "subset"])
@pytest.mark.parametrize("standardize", [False, True])
def test_streamed_loss_and_gradient_by_either_kernel(fused, cols, standardize, monkeypatch):
    """The streamed loss and gradient against autograd's float64 ones, through the compiled
    cross-entropy kernel and through torch's residual (``SPARSE_PROBE_FUSED_CE=0``), with the
    working set's columns gathered or not, raw blocks standardized or not; blocks that grow
    after short ones, some of fewer rows than columns (the buffers grow), float32 weights as float64 ones; the loss alone
    (``need_grad=False``) equal to the loss with its gradient, and the products counted."""
    if not fused:
        monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", "0")
    g = torch.Generator().manual_seed(7)
    n, d, C = 700, 9, 5
    raw = torch.randn(n, d, generator=g) * 2.0 + (3.0 if standardize else 0.0)
    y = torch.randint(0, C, (n,), generator=g)
    sel = torch.tensor([7, 2, 5, 0]) if cols else None
    X = raw[:, sel] if sel is not None else raw
    m = X.shape[1]
    mean = inv_scale = None  # the working set's statistics, shape (m,)
    Xs = X
    if standardize:
        mean = X.double().mean(0)
        inv_scale = 1 / X.double().std(0, unbiased=False)
        Xs = (X - mean.float()) * inv_scale.float()
    sizes = [3, 5, 92, 300, 250, 50]  # short blocks (fewer rows than columns), then larger

    def blocks():
        s = 0
        for r in sizes:
            yield s, raw[s : s + r]
            s += r

    W = torch.randn(C, m, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    ref_loss, ref_G, ref_gb = _reference(Xs, y, C, W, b)
    before = raw.clone()
    data = BlockedData(blocks, y, n, m, C, cols=sel, mean=mean, inv_scale=inv_scale)
    for Wt, bt in ((W, b), (W.float(), b.float()), (W, b)):
        loss, G, gb = data.loss_grad(Wt, bt)
        tol = 1e-12 if Wt.dtype == torch.float64 else 1e-6
        assert abs(loss - ref_loss) <= tol * abs(ref_loss)
        assert G.dtype == gb.dtype == torch.float64
        torch.testing.assert_close(G, ref_G, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(gb, ref_gb, rtol=1e-6 if Wt.dtype == torch.float64 else 1e-4,
                                   atol=1e-9 if Wt.dtype == torch.float64 else 1e-6)
    alone, none_G, none_gb = data.loss_grad(W, b, need_grad=False)
    assert none_G is None and none_gb is None and alone == pytest.approx(ref_loss, rel=1e-12)
    assert data.n_products == 3 * 2 + 1
    assert torch.equal(raw, before)  # the caller's blocks: read, never written


@pytest.mark.parametrize("fused", [True, False])
def test_streamed_loss_of_the_biases_alone(fused, monkeypatch):
    """No column in the working set (m = 0): the intercepts' cross-entropy and its gradient,
    an empty weight gradient."""
    if not fused:
        monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", "0")
    g = torch.Generator().manual_seed(8)
    n, C = 400, 4
    y = torch.randint(0, C, (n,), generator=g)
    raw = torch.randn(n, 0)
    b = torch.tensor([0.3, -0.2, 0.5, -0.6], dtype=torch.float64)
    data = BlockedData(lambda: iter([(0, raw[:150]), (150, raw[150:])]), y, n, 0, C)
    loss, G, gb = data.loss_grad(torch.zeros(C, 0, dtype=torch.float64), b)
    ref_loss, _, ref_gb = _reference(torch.zeros(n, 0), y, C, torch.zeros(C, 0), b)
    assert G.shape == (C, 0) and loss == pytest.approx(ref_loss, rel=1e-12)
    torch.testing.assert_close(gb, ref_gb, rtol=0, atol=1e-12)
