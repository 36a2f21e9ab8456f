"""Streaming evaluation (low-memory mode) against the cached in-memory one."""

import torch

from sparse_probe.solvers.blocked import BlockedData
from sparse_probe.solvers.restricted import RestrictedData


def test_raw_blocks_with_folded_standardization_match_cached_columns():
    g = torch.Generator().manual_seed(3)
    n, m, C = 1000, 6, 4
    raw = torch.randn(n, m, generator=g) * torch.linspace(0.5, 4, m) + 50.0  # large means
    y = torch.randint(0, C, (n,), generator=g)
    mean = raw.to(torch.float64).mean(0)
    scale = raw.to(torch.float64).std(0, unbiased=False)
    Xs = ((raw.to(torch.float64) - mean) / scale).to(torch.float32)
    W = torch.randn(C, m, dtype=torch.float64, generator=g)
    b = torch.randn(C, dtype=torch.float64, generator=g)
    ref_loss, ref_G, ref_gb = RestrictedData(Xs, y, C).loss_grad(W, b)

    def blocks():  # uneven last block; the caller's buffer is reused between blocks
        buf = torch.empty(300, m)
        for s in range(0, n, 300):
            rows = min(300, n - s)
            buf[:rows] = raw[s : s + rows]
            yield s, buf[:rows]

    data = BlockedData(blocks, y, n, m, C, mean=mean, inv_scale=1 / scale)
    for _ in range(2):  # buffers are reused across evaluations
        loss, G, gb = data.loss_grad(W, b)
        assert abs(loss - ref_loss) <= 1e-9 * abs(ref_loss)
        # the reference rounds standardized values to float32: logits agree to ~1e-7
        torch.testing.assert_close(gb, ref_gb, rtol=0, atol=1e-8)
        # float32 gradient products on raw values (mean/std = 50/0.5 at worst): 1e-4 relative
        torch.testing.assert_close(G, ref_G, rtol=1e-4, atol=1e-5)
    loss_only, none_G, _ = data.loss_grad(W, b, need_grad=False)
    assert none_G is None and abs(loss_only - ref_loss) <= 1e-9 * abs(ref_loss)


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
