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
