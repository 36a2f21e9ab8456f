"""Per-class Hessian blocks as L-BFGS's initial matrix: the blocks against the multinomial
Hessian written out in float64, the compact form with a general H0 against the textbook BFGS
update, and the solves that use them against the ones that do not."""

import numpy as np
import pytest
import torch
from helpers_lbfgs import push_pairs

from sparse_probe.solvers import class_blocks as cb
from sparse_probe.solvers.class_blocks import ClassBlocks, blocks_pay
from sparse_probe.solvers.lbfgs import LBFGSMemory


def problem(n, m, C, seed):
    g = np.random.default_rng(seed)
    base = g.standard_normal((n, 3))
    X = base @ g.standard_normal((3, m)) + 0.3 * g.standard_normal((n, m))  # correlated
    z = g.standard_normal((n, C)) * 1.5
    return torch.tensor(X, dtype=torch.float32), torch.tensor(z, dtype=torch.float64)


def hessian_blocks_ref(X, z, l2):
    """Each class's diagonal block of the mean multinomial CE Hessian over (weights, bias),
    from ``(1/n) Σ_i (diag(p_i) - p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ`` in float64, ridge on the weights
    (:func:`ridge`; none for ``l2`` None)."""
    X = X.double().numpy()
    n, m = X.shape
    P = torch.softmax(z, 1).numpy()
    Xa = np.hstack([X, np.ones((n, 1))])
    out = []
    for k in range(P.shape[1]):
        B = (Xa * (P[:, k] * (1 - P[:, k]))[:, None]).T @ Xa / n
        if l2 is not None:
            B[np.arange(m), np.arange(m)] += ridge(B, l2)
        out.append(B)
    return np.stack(out)


def ridge(B, l2):
    """The weights' diagonal addition: ``l2``, at least ``FLOOR`` times the block's mean
    weight diagonal (``B`` without it, (m+1, m+1))."""
    return max(l2, cb.FLOOR * float(np.diag(B)[:-1].mean()))


def test_blocks_are_the_inverse_of_each_class_hessian_block():
    X, z = problem(300, 7, 4, 0)
    l2 = 0.05
    blocks = ClassBlocks(X, z, l2, torch.ones(4, 7, dtype=torch.bool))
    ref = np.linalg.inv(hessian_blocks_ref(X, z, l2))
    np.testing.assert_allclose(blocks.inv.numpy(), ref, rtol=2e-4, atol=2e-4 * np.abs(ref).max())


def test_weights_not_free_keep_only_their_own_curvature():
    X, z = problem(250, 6, 3, 1)
    l2 = 0.02  # under FLOOR times the mean diagonal: the floor is what is added
    free = torch.ones(3, 6, dtype=torch.bool)
    free[1, 2] = free[2, 0] = False
    blocks = ClassBlocks(X, z, l2, free)
    B = hessian_blocks_ref(X, z, l2)
    for k, j in [(1, 2), (2, 0)]:
        Bk = B[k].copy()
        d = Bk[j, j]
        Bk[j, :] = Bk[:, j] = 0.0
        Bk[j, j] = d
        np.testing.assert_allclose(blocks.inv[k].numpy(), np.linalg.inv(Bk), rtol=2e-4,
                                   atol=2e-4 * np.abs(np.linalg.inv(Bk)).max())
        assert blocks.inv[k, j, j].item() == pytest.approx(1.0 / d, rel=2e-4)
    np.testing.assert_allclose(blocks.inv[0].numpy(), np.linalg.inv(B[0]), rtol=2e-4,
                               atol=2e-4 * np.abs(np.linalg.inv(B[0])).max())
    # the couplings kept only shrink within a solve: freeing every weight changes nothing
    before = blocks.inv.clone()
    assert blocks.set_free(torch.ones(3, 6, dtype=torch.bool)).numel() == 0
    assert torch.equal(blocks.inv, before)
    # dropping one weight's couplings changes its class's block only
    free[0, 4] = False
    assert blocks.set_free(free).tolist() == [0]
    assert torch.equal(blocks.inv[1:], before[1:])
    Bk = B[0].copy()
    d = Bk[4, 4]
    Bk[4, :] = Bk[:, 4] = 0.0
    Bk[4, 4] = d
    np.testing.assert_allclose(blocks.inv[0].numpy(), np.linalg.inv(Bk), rtol=2e-4,
                               atol=2e-4 * np.abs(np.linalg.inv(Bk)).max())


def decoupled_inverse(B, held, l2):
    """numpy's inverse of a class block ``B`` (m+1, m+1, no ridge) with the ridge of
    :func:`ridge` and the weights ``held`` coupled to nothing (their diagonal entries kept)."""
    Bk = B.copy()
    m = B.shape[0] - 1
    Bk[np.arange(m), np.arange(m)] += ridge(B, l2)
    for j in held:
        d = Bk[j, j]
        Bk[j, :] = Bk[:, j] = 0.0
        Bk[j, j] = d
    return np.linalg.inv(Bk)


@pytest.mark.parametrize("l2", [1e-4, 50.0])  # the ridge under and over FLOOR x the diagonal
def test_blocks_that_lose_a_few_weights_are_downdated_to_the_exact_inverse(monkeypatch, l2):
    """A class that loses at most DOWNDATE_SHARE of its kept weights gets its inverse from the
    old one (no factorization), equal to numpy's inverse of the decoupled block, over several
    shrinks in a row; exactly collinear columns included."""
    X, z = problem(400, 40, 5, 7)
    X[:, 9] = X[:, 3] - 0.5 * X[:, 4]  # exactly collinear
    free = torch.ones(5, 40, dtype=torch.bool)
    blocks = ClassBlocks(X, z, l2, free)
    factored = []
    real = ClassBlocks._inverse
    monkeypatch.setattr(ClassBlocks, "_inverse",
                        lambda self, classes: factored.append(classes.tolist()) or real(self, classes))
    B = blocks.gram.numpy()  # the estimate (float32 products; against float64 sums above)
    np.testing.assert_allclose(B, hessian_blocks_ref(X, z, None), rtol=2e-4,
                               atol=2e-4 * np.abs(B).max())
    held = {k: [] for k in range(5)}
    for drops in ([(0, 3)], [(0, 9), (2, 9), (2, 4)], [(4, 39), (4, 0), (4, 17), (1, 3)],
                  [(2, 3), (2, 10)]):
        for k, j in drops:
            free[k, j] = False
            held[k].append(j)
        changed = blocks.set_free(free)
        assert changed.tolist() == sorted({k for k, _ in drops})
        for k in range(5):
            ref = decoupled_inverse(B[k], held[k], l2)
            np.testing.assert_allclose(blocks.inv[k].numpy(), ref, rtol=1e-7,
                                       atol=1e-9 * np.abs(ref).max())
    assert factored == []  # every shrink was at most 4 of 41 kept weights


def test_many_downdates_in_a_row_keep_float64_accuracy(monkeypatch):
    """A solve's free set shrinks one weight at a time, dozens of times (~54 shrinks a solve on
    the 2,899 x 198 x 40 path): 36 single drops from one class's inverse, every one by the
    downdate, end within 1e-9 of numpy's inverse of the decoupled block."""
    X, z = problem(500, 60, 2, 9)
    X[:, 7] = X[:, 1] + X[:, 2]  # exactly collinear
    free = torch.ones(2, 60, dtype=torch.bool)
    blocks = ClassBlocks(X, z, 1e-6, free)
    monkeypatch.setattr(ClassBlocks, "_inverse", lambda self, classes: pytest.fail("factorized"))
    order = np.random.default_rng(10).permutation(60)[:36]
    for j in order:
        free[0, int(j)] = False
        assert blocks.set_free(free).tolist() == [0]
    ref = decoupled_inverse(blocks.gram[0].numpy(), order, 1e-6)
    np.testing.assert_allclose(blocks.inv[0].numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    assert float(torch.linalg.eigvalsh(blocks.inv[0]).min()) > 0


@pytest.mark.parametrize("lost,factored", [(5, False), (6, True)])
def test_a_class_that_loses_more_than_the_share_is_factorized_anew(monkeypatch, lost, factored):
    """The edge: 39 weights and the bias kept, DOWNDATE_SHARE of 40 is 5 weights; another
    class's losses do not count towards it."""
    X, z = problem(300, 39, 3, 8)
    free = torch.ones(3, 39, dtype=torch.bool)
    blocks = ClassBlocks(X, z, 0.01, free)
    calls = []
    real = ClassBlocks._inverse
    monkeypatch.setattr(ClassBlocks, "_inverse",
                        lambda self, classes: calls.append(classes.tolist()) or real(self, classes))
    free[1, :lost] = False
    free[2, :8] = False  # over the share: factorized either way (each class's own count)
    assert blocks.set_free(free).tolist() == [1, 2]
    assert calls == ([[1, 2]] if factored else [[2]])
    B = blocks.gram.numpy()
    for k, held in [(1, range(lost)), (2, range(8))]:
        ref = decoupled_inverse(B[k], held, 0.01)
        np.testing.assert_allclose(blocks.inv[k].numpy(), ref, rtol=1e-7,
                                   atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("single", [True, False])
def test_apply_uses_the_flat_layout_weights_by_class_then_biases(single):
    """Row by row and class by class, ``M q`` is the class's inverse times its weights and
    bias: on CPU the float32 inverse times ``q`` rounded to float32 (to float32's rounding),
    without ``inv32`` (other devices) the float64 one (to 1e-12)."""
    X, z = problem(200, 5, 3, 2)
    blocks = ClassBlocks(X, z, 0.1, torch.ones(3, 5, dtype=torch.bool))
    if not single:
        blocks.inv32 = None
    inv = blocks.inv if not single else torch.from_numpy(blocks.inv32).double()
    rtol = 1e-6 if single else 1e-12
    g = torch.Generator().manual_seed(3)
    Q = torch.randn(4, 3 * 5 + 3, generator=g, dtype=torch.float64)
    got = blocks.apply(Q)
    for r in range(4):
        for k in range(3):
            qk = torch.cat([Q[r, 5 * k : 5 * k + 5], Q[r, 15 + k : 16 + k]])
            if single:
                qk = qk.float().double()
            want = inv[k] @ qk
            np.testing.assert_allclose(got[r, 5 * k : 5 * k + 5].numpy(), want[:5].numpy(),
                                       rtol=rtol)
            assert got[r, 15 + k].item() == pytest.approx(want[5].item(), rel=rtol)
    np.testing.assert_allclose(blocks.apply(Q[1]).numpy(), got[1].numpy(), rtol=rtol)
    # float32 rows (the memory's stored pairs) on either route, float32 back
    got32 = blocks.apply(Q.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), got.numpy(), rtol=1e-5, atol=1e-6)
    cls = torch.tensor([2, 0])
    Qc = torch.cat([torch.cat([Q[:, 5 * k : 5 * k + 5], Q[:, 15 + k : 16 + k]], 1)
                    for k in cls.tolist()], 1)
    np.testing.assert_allclose(blocks.apply_classes(Qc, cls).numpy(),
                               torch.cat([got[:, 10:15], got[:, 17:18], got[:, 0:5],
                                          got[:, 15:16]], 1).numpy(), rtol=rtol)
    np.testing.assert_allclose(blocks.apply_classes(Qc.float(), cls).numpy(),
                               blocks.apply_classes(Qc, cls).numpy(), rtol=1e-5, atol=1e-6)


def test_single_apply_off_keeps_no_float32_copy(monkeypatch):
    """With :data:`~sparse_probe.solvers.class_blocks.SINGLE_APPLY` off the blocks keep no
    float32 inverses and their products are float64 ones (other devices' route)."""
    monkeypatch.setattr(cb, "SINGLE_APPLY", False)
    X, z = problem(200, 5, 3, 4)
    blocks = ClassBlocks(X, z, 0.1, torch.ones(3, 5, dtype=torch.bool))
    assert blocks.inv32 is None
    q = torch.randn(18, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = blocks.apply(q)
    assert not torch.equal(out.float().double(), out)


def test_products_on_cpu_are_float32_ones_of_the_rounded_inverse():
    """On CPU :attr:`ClassBlocks.inv32` is ``inv`` rounded to float32, kept so when a class's
    inverse is downdated, and ``M q`` comes out of a float32 product (every entry a float32
    number; the float64 route's are not)."""
    X, z = problem(300, 6, 4, 12)
    blocks = ClassBlocks(X, z, 0.05, torch.ones(4, 6, dtype=torch.bool))
    assert cb.SINGLE_APPLY and blocks.inv32.dtype == np.float32
    np.testing.assert_array_equal(blocks.inv32, blocks.inv.numpy().astype(np.float32))
    free = torch.ones(4, 6, dtype=torch.bool)
    free[1, 2] = free[3, 0] = False  # a downdate (one of 7 kept) in classes 1 and 3
    free[0, :4] = False  # a fresh inverse (4 of 7) in class 0
    changed = blocks.set_free(free)
    assert changed.tolist() == [0, 1, 3]
    np.testing.assert_array_equal(blocks.inv32, blocks.inv.numpy().astype(np.float32))
    q = torch.randn(4 * 6 + 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = blocks.apply(q)
    assert out.dtype == torch.float64 and torch.equal(out.float().double(), out)
    blocks.inv32 = None
    exact = blocks.apply(q)
    assert not torch.equal(exact.float().double(), exact)
    np.testing.assert_allclose(out.numpy(), exact.numpy(), rtol=1e-5,
                               atol=1e-6 * float(exact.abs().max()))


def test_estimate_is_reused_on_the_same_columns_up_to_reuse_solves():
    X, z = problem(200, 4, 3, 5)
    free = torch.ones(3, 4, dtype=torch.bool)
    first = ClassBlocks(X, z, 0.1, free)
    prev = first
    for uses in range(2, cb.REUSE + 1):
        nxt = ClassBlocks(X, z + 1.0 * uses, 0.2, free, previous=prev)  # other probabilities
        assert nxt.gram is first.gram and nxt.uses == uses
        prev = nxt
    # its own ridge weight, on the reused estimate
    ref = first.gram.clone().numpy()
    for k in range(3):
        ref[k, np.arange(4), np.arange(4)] += ridge(first.gram[k].numpy(), 0.2)
    np.testing.assert_allclose(prev.inv.numpy(), np.linalg.inv(ref), rtol=1e-9)
    fresh = ClassBlocks(X, z, 0.1, free, previous=prev)  # REUSE solves: estimated again
    assert fresh.gram is not first.gram and fresh.uses == 1
    other = ClassBlocks(X.clone(), z, 0.1, free, previous=first)  # other columns
    assert other.gram is not first.gram


def test_estimate_is_the_same_over_several_row_blocks(monkeypatch):
    X, z = problem(301, 5, 3, 12)
    one = ClassBlocks(X, z, 0.0, torch.ones(3, 5, dtype=torch.bool)).gram
    monkeypatch.setattr(cb, "BLOCK_FLOATS", 21 * 40)  # 40 rows a block, the last one 21
    many = ClassBlocks(X, z, 0.0, torch.ones(3, 5, dtype=torch.bool)).gram
    np.testing.assert_allclose(many.numpy(), one.numpy(), rtol=1e-5, atol=1e-7)  # float32 sums
    np.testing.assert_allclose(many.numpy(), hessian_blocks_ref(X, z, None), rtol=2e-4,
                               atol=1e-6)


def test_estimate_extends_to_appended_columns_at_its_own_weights(monkeypatch):
    X, z = problem(301, 7, 4, 21)
    order = [5, 1, 9, 3, 0, 2, 8]  # the features of X's columns, in cache order
    first = ClassBlocks(X[:, :4].contiguous(), z, 0.1, torch.ones(4, 4, dtype=torch.bool),
                        features=order[:4])
    assert first.wd is not None and first.uses == 1
    # three columns joined; the probabilities moved, the estimate keeps its own weights
    grown = ClassBlocks(X, z + torch.linspace(0, 2, 4, dtype=torch.float64), 0.2,
                        torch.ones(4, 7, dtype=torch.bool), previous=first, features=order)
    assert grown.uses == 2 and grown.wd is first.wd and grown.gram.shape == (4, 8, 8)
    fresh = ClassBlocks._estimate(X, first.wd)
    np.testing.assert_allclose(grown.gram.numpy(), fresh.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grown.gram.numpy(), hessian_blocks_ref(X, z, None), rtol=2e-4,
                               atol=1e-6)
    assert torch.equal(grown.gram, grown.gram.transpose(1, 2))
    ref = fresh.numpy().copy()  # its inverses with its own ridge weight
    for k in range(4):
        ref[k, np.arange(7), np.arange(7)] += ridge(fresh[k].numpy(), 0.2)
    np.testing.assert_allclose(grown.inv.numpy(), np.linalg.inv(ref), rtol=1e-5, atol=1e-8)
    # over several row blocks (3 joining columns x 8 = 24 pairs: 40 rows a block, then 21)
    monkeypatch.setattr(cb, "BLOCK_FLOATS", 24 * 40)
    again = ClassBlocks(X, z, 0.2, torch.ones(4, 7, dtype=torch.bool), previous=first,
                        features=order)
    np.testing.assert_allclose(again.gram.numpy(), grown.gram.numpy(), rtol=1e-5, atol=1e-7)
    # and on from there, through a solve that reused it on the same columns: one more column,
    # at the same weights still
    same = ClassBlocks(X, z * 2.0, 0.2, torch.ones(4, 7, dtype=torch.bool), previous=grown,
                       features=order)
    assert same.gram is grown.gram and same.wd is first.wd
    X8 = torch.cat([X, X[:, :1] * 0.5 + 1.0], 1)
    more = ClassBlocks(X8, z, 0.2, torch.ones(4, 8, dtype=torch.bool), previous=same,
                       features=[*order, 4])
    assert more.uses == 4
    np.testing.assert_allclose(more.gram.numpy(), hessian_blocks_ref(X8, z, None), rtol=2e-4,
                               atol=1e-6)


def test_extension_sums_its_row_blocks_in_float64(monkeypatch):
    """One row a block: each block's product is one float32 rounding of ``w x_j x_l`` (the
    pairwise product itself rounded to float32 first), summed over 400 rows in float64 as
    here; a float32 running sum would be ~1e-6 off."""
    X, z = problem(400, 5, 3, 23)
    first = ClassBlocks(X[:, :3].contiguous(), z, 0.1, torch.ones(3, 3, dtype=torch.bool),
                        features=[0, 1, 2])
    monkeypatch.setattr(cb, "BLOCK_FLOATS", 1)
    grown = ClassBlocks(X, z, 0.1, torch.ones(3, 5, dtype=torch.bool), previous=first,
                        features=[0, 1, 2, 3, 4])
    Xa = np.hstack([X.numpy(), np.ones((400, 1), dtype=np.float32)])
    wd = first.wd.numpy()
    for j in (3, 4):
        pair = Xa[:, j : j + 1] * Xa  # float32, as the estimate's products
        for k in range(3):
            terms = (wd[:, k : k + 1] * pair).astype(np.float64)  # each rounded once
            np.testing.assert_allclose(grown.gram[k, j].numpy(), terms.sum(0) / 400,
                                       rtol=1e-12, atol=1e-15)


def test_estimate_is_made_afresh_unless_columns_were_only_appended(monkeypatch):
    X, z = problem(200, 6, 3, 22)
    free4, free6 = torch.ones(3, 4, dtype=torch.bool), torch.ones(3, 6, dtype=torch.bool)
    z2 = z * 0.5  # the next solve's probabilities: a fresh estimate takes these
    first = ClassBlocks(X[:, :4].contiguous(), z, 0.1, free4, features=[0, 1, 2, 3])
    fresh = hessian_blocks_ref(X, z2, None)

    def afresh(nxt):
        assert nxt.uses == 1 and nxt.wd is not first.wd
        np.testing.assert_allclose(nxt.gram.numpy(), fresh, rtol=2e-4, atol=1e-6)

    afresh(ClassBlocks(X, z2, 0.1, free6, previous=first, features=[1, 0, 2, 3, 4, 5]))
    afresh(ClassBlocks(X, z2, 0.1, free6, previous=first, features=[0, 1, 2, 9, 4, 5]))
    afresh(ClassBlocks(X, z2, 0.1, free6, previous=first))  # no features given
    same = ClassBlocks(X[:, :4].clone(), z2, 0.1, free4, previous=first, features=range(4))
    assert same.uses == 1  # the same features, no more: a new tensor is estimated afresh
    first.uses = cb.REUSE  # as old as a reused estimate may be
    afresh(ClassBlocks(X, z2, 0.1, free6, previous=first, features=range(6)))
    first.uses = cb.REUSE - 1
    assert ClassBlocks(X, z2, 0.1, free6, previous=first, features=range(6)).uses == cb.REUSE
    # the weights are kept up to KEEP_WEIGHTS entries: beyond, nothing to extend from
    monkeypatch.setattr(cb, "KEEP_WEIGHTS", 200 * 3)
    assert ClassBlocks(X[:, :4].contiguous(), z, 0.1, free4).wd is not None
    monkeypatch.setattr(cb, "KEEP_WEIGHTS", 200 * 3 - 1)
    big = ClassBlocks(X[:, :4].contiguous(), z, 0.1, free4, features=range(4))
    assert big.wd is None
    afresh(ClassBlocks(X, z2, 0.1, free6, previous=big, features=range(6)))


def test_spd_inverse_jitters_singular_blocks_and_falls_back_to_the_diagonal():
    from sparse_probe.solvers.class_blocks import _spd_inverse

    good = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    singular = torch.tensor([[4.0, 4.0], [4.0, 4.0]], dtype=torch.float64)  # PSD, rank 1
    indefinite = torch.tensor([[1.0, 3.0], [3.0, 4.0]], dtype=torch.float64)
    zero_diag = torch.tensor([[0.0, 3.0], [3.0, 4.0]], dtype=torch.float64)
    small = singular / 16.0  # mean diagonal 0.25: the jitter 2.5e-9
    inv = _spd_inverse(torch.stack([good, singular, indefinite, zero_diag, small]))
    np.testing.assert_allclose(inv[0].numpy(), np.linalg.inv(good.numpy()), rtol=1e-12)
    jittered = singular.numpy() + 1e-8 * 4.0 * np.eye(2)  # 1e-8 times the mean diagonal
    np.testing.assert_allclose(inv[1].numpy(), np.linalg.inv(jittered), rtol=1e-6)
    np.testing.assert_allclose(inv[2].numpy(), np.diag([1.0, 0.25]), rtol=1e-12)
    # the diagonal, each entry at least 1e-12 times the mean diagonal (2 here)
    np.testing.assert_allclose(inv[3].numpy(), np.diag([1.0 / 2e-12, 0.25]), rtol=1e-9)
    np.testing.assert_allclose(inv[4].numpy(),
                               np.linalg.inv(small.numpy() + 2.5e-9 * np.eye(2)), rtol=1e-6)


def test_singular_blocks_still_give_a_positive_definite_inverse():
    X, z = problem(100, 4, 3, 6)
    X[:, 3] = X[:, 0]  # exactly collinear columns and no ridge: singular blocks
    X[:, 2] = 0.0
    blocks = ClassBlocks(X, z, 0.0, torch.ones(3, 4, dtype=torch.bool))
    assert torch.isfinite(blocks.inv).all()
    for k in range(3):
        assert float(torch.linalg.eigvalsh(blocks.inv[k]).min()) > 0


@pytest.mark.parametrize("n,m,C,pays", [
    (10_000, 64, 100, True),    # many classes at small d
    (20_000, 32, 1000, True),
    (10_000, 64, 2, False),     # few classes: their coupling is as large as their blocks
    (10_000, 64, 10, False),
    (500, 5000, 10, False),     # blocks too large
    (300, 200, 40, False),      # m > 124: the estimate costs more than 32 iterations
    (10_000, 0, 10, False),
    # the edges: n (m+1)(m+2)/2 + (m+1)^3 <= 2 * 32 n m up to m = 103 at n = 1,000,
    (1_000, 103, 20, True),
    (1_000, 104, 20, False),
    (1_000_000, 124, 20, True),  # up to m = 124 where n >> m (the inverses' cost vanishes)
    (1_000_000, 125, 20, False),
    (154, 97, 40, False),       # a held-out draw's shape: inverses as costly as the estimate
    (1_000, 1, 20, True),
    (1_000, 0, 20, False),
    (1_000, 8, 19, False),      # at least 20 classes,
    (1_000, 63, 512, True),     # C (m+1)^2 up to 2^21 entries
    (1_000, 63, 513, False),
    (1_000, 63, 600, False),
])
def test_blocks_pay(n, m, C, pays):
    assert blocks_pay(n, m, C) is pays
    assert blocks_pay(n, m, C, expected_iters=None) is pays
    assert blocks_pay(n, m, C, expected_iters=0) is pays  # a short solve: the fixed bar


@pytest.mark.parametrize("m,C,expected,pays", [
    # m = 198 at n = 1,000: (m+1)(m+2)/2 + (m+1)^3/n = 22,527.2 against LONG_SHARE *
    # expected * 2m: 561.22 iterations
    (198, 40, 561, False),
    (198, 40, 562, True),
    (198, 40, 5000, True),
    (198, 20, 562, True),
    (125, 20, 320, False),   # m = 125: 8,001 + 1,953.1 needs 320.04 expected
    (125, 20, 321, True),
    (103, 20, 1, True),      # the fixed bar still holds where the count is small
    (256, 20, 784, True),    # m = 256: 33,153 + 16,974.6 against 64 * expected: 783.24
    (256, 20, 783, False),
    (198, 19, 10**6, False),  # however long: at least 20 classes,
    (63, 600, 10**6, False),  # and within MAX_ENTRIES
])
def test_blocks_pay_for_long_solves(m, C, expected, pays):
    """Where a solve is expected to be long, the blocks' estimate may cost up to LONG_SHARE
    of its iterations' products: wider working sets get them."""
    assert cb.LONG_SHARE == 0.125
    assert blocks_pay(1_000, m, C, expected_iters=expected) is pays


def bfgs_dense(H0, pairs):
    """The textbook inverse BFGS update from ``H0``, pair by pair (Nocedal & Wright eq. 6.17)."""
    H = H0.clone()
    eye = torch.eye(H.shape[0], dtype=H.dtype)
    for s, y in pairs:
        rho = 1.0 / float(s @ y)
        V = eye - rho * torch.outer(y, s)
        H = V.T @ H @ V + rho * torch.outer(s, s)
    return H


def quadratic_and_h0(p, seed):
    """An SPD quadratic's Hessian ``A`` (p, p), an SPD initial matrix ``H0`` and the generator
    that made them (its next draws: the steps)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(p, p, generator=g, dtype=torch.float64)
    A = A @ A.T / p + 0.2 * torch.eye(p, dtype=torch.float64)
    M = torch.randn(p, p, generator=g, dtype=torch.float64)
    H0 = torch.linalg.inv(M @ M.T / p + 0.5 * torch.eye(p, dtype=torch.float64))
    return A, H0, g


class Dense:
    def __init__(self, H0):
        self.H0 = H0

    def apply(self, Q):
        return (Q.to(torch.float64) @ self.H0).to(Q.dtype)  # H0 symmetric


@pytest.mark.parametrize("n_pairs,set_first", [(1, True), (4, True), (9, True), (4, False)])
def test_compact_form_with_an_initial_matrix_matches_dense_bfgs(n_pairs, set_first):
    """``τ M`` with ``τ = s.y / y.M y`` of the newest pair, then the pairs' updates."""
    p, history = 30, 5
    A, H0, g = quadratic_and_h0(p, n_pairs)
    mem = LBFGSMemory(history)
    if set_first:  # H0 y computed at push
        mem.set_initial(Dense(H0))
    pairs = push_pairs(mem, A, g, n_pairs, history)
    if not set_first:  # H0 y of the pairs kept computed at once
        mem.set_initial(Dense(H0))
    s_new, y_new = pairs[-1]
    tau = float(s_new @ y_new) / float(y_new @ H0 @ y_new)  # H0 = τ M, M the given matrix
    assert mem.tau == pytest.approx(tau, rel=1e-12)
    H = bfgs_dense(tau * H0, pairs)
    for _ in range(3):
        q = torch.randn(p, generator=g, dtype=torch.float64)
        np.testing.assert_allclose(mem.apply(q).numpy(), (H @ q).numpy(), rtol=1e-9,
                                   atol=1e-11 * float((H @ q).abs().max()))


def test_add_to_y_and_embed_drop_the_initial_matrix():
    p = 12
    g = torch.Generator().manual_seed(7)
    mem = LBFGSMemory(4)
    mem.set_initial(Dense(2.0 * torch.eye(p, dtype=torch.float64)))
    for _ in range(3):
        s = torch.randn(p, generator=g, dtype=torch.float64)
        mem.push(s, 3.0 * s)
    q = torch.randn(p, generator=g, dtype=torch.float64)
    # with the initial matrix: τ = s.y / y.M y = 3 / 18 scales M = 2 I to I / 3 (= H here)
    np.testing.assert_allclose(mem.apply(q).numpy(), (q / 3.0).numpy(), rtol=1e-10)
    mem.add_to_y(0.5)
    assert mem.initial is None
    # γ I again: every pair has curvature 3.5, so H = I / 3.5
    np.testing.assert_allclose(mem.apply(q).numpy(), (q / 3.5).numpy(), rtol=1e-10)
    mem.set_initial(Dense(2.0 * torch.eye(p, dtype=torch.float64)))
    mem.embed(np.arange(p), p + 3)
    assert mem.initial is None and mem.dim == p + 3


def test_path_with_the_blocks_matches_the_path_without(monkeypatch):
    """A collinear 30-class problem made here: OWL-QN with the blocks as H0 reaches the same
    objectives as with γ I at every λ (1e-6 relative), every point verified in float64."""
    from helpers_kkt import kkt_ratios

    from sparse_probe import fit_path, objective_f64

    g = np.random.default_rng(11)
    n, d, C = 900, 12, 30
    y = np.arange(n) % C
    centers = g.standard_normal((C, 4)) * 1.5
    base = centers[y] + g.standard_normal((n, 4))
    X = np.hstack([base, base @ g.standard_normal((4, d - 4))])  # exact combinations
    X = (X + 0.05 * g.standard_normal((n, d))).astype(np.float32)
    made = []
    real = ClassBlocks.__init__

    def spy(self, *a, **k):
        made.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(ClassBlocks, "__init__", spy)
    fits = {}
    for use in (True, False):
        monkeypatch.setattr(cb, "MIN_CLASSES", 20 if use else 10**9)
        made.clear()
        fits[use] = fit_path(X, y, alpha=0.99, n_lambdas=12, eps=1e-2, progress=False,
                             solver="owlqn")
        assert (len(made) > 0) is use
    a, b = fits[True], fits[False]
    assert kkt_ratios(X, y, a).max() <= 1.0
    for i, lam in enumerate(a.lambdas):
        fa = objective_f64(X, y, a.weights[i], a.intercepts[i], lam, 0.99, mean=a.mean,
                           scale=a.scale)
        fb = objective_f64(X, y, b.weights[i], b.intercepts[i], lam, 0.99, mean=b.mean,
                           scale=b.scale)
        assert abs(fa - fb) <= 1e-6 * abs(fb), (i, fa, fb)


def test_measure_script_times_both_routes_on_the_same_blocks(capsys, monkeypatch):
    """benchmarks/measure_class_blocks.py: a row per shape, row count and cache state, the
    float32 route within float32's rounding of the float64 one and not equal to it."""
    from helpers_bench import load_bench

    script = load_bench("measure_class_blocks")
    monkeypatch.setattr(script, "SHAPES", [(300, 6, 20), (200, 9, 25)])
    # at the count the tests run on (the script sets its own)
    script.main(["--repeats", "1", "--threads", str(torch.get_num_threads())])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [(r.split()[0], r.split()[1], r.split()[2]) for r in rows] == [
        (shape, h, cache) for shape in ("300×6×20", "200×9×25") for h in ("1", "10")
        for cache in ("warm", "cold")]
    for line in rows:
        _, _, _, t64, t32, _, err = line.split()
        assert float(t64) > 0 and float(t32) > 0
        assert 0 < float(err) < 1e-5, line


@pytest.mark.parametrize("single", [True, False])
def test_changing_the_free_weights_updates_the_memory_on_their_classes_only(single):
    """After :meth:`ClassBlocks.set_free` and ``initial_changed`` on the classes it reports,
    the memory's products equal dense BFGS from the new ``τ M`` (every pair re-read): to
    1e-9 on float64 products, to float32's rounding on the float32 ones (CPU's)."""
    n, m, C = 300, 5, 4
    X, z = problem(n, m, C, 8)
    blocks = ClassBlocks(X, z, 0.05, torch.ones(C, m, dtype=torch.bool))
    if not single:
        blocks.inv32 = None
    rtol = 1e-5 if single else 1e-9
    p = C * m + C
    g = torch.Generator().manual_seed(9)
    A = torch.randn(p, p, generator=g, dtype=torch.float64)
    A = A @ A.T / p + 0.3 * torch.eye(p, dtype=torch.float64)
    mem = LBFGSMemory(6)
    mem.set_initial(blocks)
    pairs = []
    eye = torch.eye(p, dtype=torch.float64)
    for it in range(9):
        if it in (3, 5, 7):
            free = torch.rand(C, m, generator=g) > 0.4
            before = blocks.inv.clone()
            changed = blocks.set_free(free)
            same = torch.ones(C, dtype=torch.bool)
            same[changed] = False
            assert torch.equal(blocks.inv[same], before[same])  # untouched classes
            assert not torch.equal(blocks.inv[changed], before[changed])
            mem.initial_changed(blocks.columns(changed),
                                lambda Q, k=changed: blocks.apply_classes(Q, k))
        s = torch.randn(p, generator=g, dtype=torch.float64)
        mem.push(s, A @ s)
        pairs = [*pairs, (s, A @ s)][-6:]
        M = blocks.apply(eye)
        s_new, y_new = pairs[-1]
        H = bfgs_dense(float(s_new @ y_new) / float(y_new @ M @ y_new) * M, pairs)
        q = torch.randn(p, generator=g, dtype=torch.float64)
        np.testing.assert_allclose(mem.apply(q).numpy(), (H @ q).numpy(), rtol=rtol,
                                   atol=rtol / 10 * float((H @ q).abs().max()))
    # a free set that is the same again changes nothing
    assert blocks.set_free(blocks.keep[:, :m].clone()).numel() == 0


@pytest.mark.parametrize("n_pairs", [3, 8])
def test_resize_keeps_the_initial_matrix_products(n_pairs):
    """A memory with ``τ M`` cut to 2 pairs applies as dense BFGS from ``τ M`` over those two
    (its ``M y`` kept with them)."""
    p, history = 30, 6
    A, H0, g = quadratic_and_h0(p, 40 + n_pairs)
    mem = LBFGSMemory(history)
    mem.set_initial(Dense(H0))
    pairs = push_pairs(mem, A, g, n_pairs, history)
    mem.resize(2)
    pairs = pairs[-2:]
    s_new, y_new = pairs[-1]
    tau = float(s_new @ y_new) / float(y_new @ H0 @ y_new)
    assert mem.tau == pytest.approx(tau, rel=1e-12)
    H = bfgs_dense(tau * H0, pairs)
    q = torch.randn(p, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(mem.apply(q).numpy(), (H @ q).numpy(), rtol=1e-9,
                               atol=1e-11 * float((H @ q).abs().max()))


def test_owlqn_keeps_few_pairs_beside_the_blocks_and_its_budget_without():
    """With the blocks as H0 OWL-QN's memory holds ``PAIRS`` pairs (a carried larger one is cut
    to its newest); without them ``history_for``'s budget, on CPU at most ``CPU_PAIRS`` (a
    carried cut one grows back)."""
    from sparse_probe.penalties import ElasticNet
    from sparse_probe.solvers.lbfgs import CPU_PAIRS, history_for
    from sparse_probe.solvers.owlqn import owlqn
    from sparse_probe.solvers.restricted import RestrictedData

    for C, blocks in ((24, True), (6, False)):
        n, m = 1200, 8
        X, _ = problem(n, m, C, 5)
        y = torch.as_tensor(np.arange(n) % C)
        data = RestrictedData(X, y, C, XwT=X.T.contiguous())
        assert cb.blocks_pay(n, m, C) is blocks
        W0 = torch.zeros(C, m, dtype=torch.float64)
        b0 = torch.zeros(C, dtype=torch.float64)
        pen = ElasticNet(0.99)
        budget = history_for(C * m + C)
        assert budget > CPU_PAIRS > cb.PAIRS  # three different sizes at this problem's p
        want = cb.PAIRS if blocks else CPU_PAIRS
        first = owlqn(data, W0, b0, 0.01, pen, tol=1e-6)
        assert first.memory.history == want
        other = LBFGSMemory(budget if blocks else cb.PAIRS)  # the other size, carried in
        res = owlqn(data, W0, b0, 0.01, pen, tol=1e-6, memory=other)
        assert res.converged and res.memory is other and other.history == want
        explicit = owlqn(data, W0, b0, 0.01, pen, tol=1e-6, history=7)  # the caller's count
        assert explicit.memory.history == 7


def _over_124(seed):
    """A working set of m = 130 columns (over the blocks' fixed bar, m <= 124), 600 examples of
    20 classes: ``RestrictedData`` and a zero start (W0 (C, m), b0 (C,))."""
    from sparse_probe.solvers.restricted import RestrictedData

    n, m, C = 600, 130, 20
    X, _ = problem(n, m, C, seed)
    y = torch.as_tensor(np.arange(n) % C)
    data = RestrictedData(X, y, C, XwT=X.T.contiguous())
    return data, torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)


def test_owlqn_uses_the_blocks_where_its_expected_count_pays_for_them():
    """``owlqn(expected_iters=...)``: over m = 124 the blocks are OWL-QN's H0 (its memory then
    keeps ``PAIRS`` pairs) only where the caller expects a long solve; the solution is the
    same either way."""
    from sparse_probe.penalties import ElasticNet
    from sparse_probe.solvers.lbfgs import CPU_PAIRS
    from sparse_probe.solvers.owlqn import owlqn

    data, W0, b0 = _over_124(7)
    pen = ElasticNet(0.99)
    runs = {}
    for expected in (None, 100, 10_000):
        runs[expected] = owlqn(data, W0, b0, 0.02, pen, tol=1e-7, expected_iters=expected)
        assert runs[expected].converged
    assert runs[None].memory.history == CPU_PAIRS
    assert runs[100].memory.history == CPU_PAIRS  # 12.5 iterations' worth: under 33.25
    assert runs[10_000].memory.history == cb.PAIRS
    for expected in (100, 10_000):
        np.testing.assert_allclose(runs[expected].W.numpy(), runs[None].W.numpy(), atol=1e-5)


def _spied_solvers(monkeypatch):
    """Both solvers of the elementwise penalty wrapped to record, per call, the solver, the
    OWL-QN count it was given and what it did (the real solvers run)."""
    from sparse_probe.solvers import SOLVERS, SolverSpec

    calls = []
    for name, key in (("owlqn", "expected_iters"), ("newton", "owlqn_expected_iters")):
        real = SOLVERS[name]

        def spy(*args, _real=real, _name=name, _key=key, **kw):
            res = _real.solve(*args, **kw)
            calls.append((_name, kw.get(_key), res.iterations or {_name: res.n_iter},
                          isinstance(res.memory, LBFGSMemory) and res.memory.initial is not None,
                          args[1].shape[1]))
            return res

        monkeypatch.setitem(SOLVERS, name, SolverSpec(name, spy, real.penalties,
                                                      uses_logits=real.uses_logits))
    return calls


def _last_owlqn_counts(calls):
    """The count each call should have been given: OWL-QN's iterations at the last point it
    solved alone before it (None before any)."""
    want, last = [], None
    for _name, _given, parts, *_ in calls:
        want.append(last)
        if parts.keys() == {"owlqn"}:
            last = parts["owlqn"]
    return want


def test_fit_path_gives_owlqn_the_count_of_the_last_point_it_solved(monkeypatch):
    """``fit_path`` passes each OWL-QN point the iterations OWL-QN took at the last point it
    solved (none at the first), which decides the blocks for long solves."""
    from sparse_probe import fit_path

    calls = _spied_solvers(monkeypatch)
    X, _ = problem(400, 12, 20, 3)
    y = np.arange(400) % 20
    fit_path(X.numpy(), y, alpha=0.99, n_lambdas=8, eps=1e-2, solver="owlqn", progress=False,
             threads=1)
    assert len(calls) == 7 and {c[0] for c in calls} == {"owlqn"}  # every point but λ_max's
    assert calls[1][1] is not None and calls[1][1] > 0
    assert [c[1] for c in calls] == _last_owlqn_counts(calls)


def test_fit_path_gives_newtons_hand_over_the_last_owlqn_count(monkeypatch):
    """Newton points get the same count for the OWL-QN they may hand over to: on a path the
    default choice splits between the two solvers, every call gets the last OWL-QN-alone
    count."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "benchmarks"))
    import bench_path as bp

    from sparse_probe import fit_path

    calls = _spied_solvers(monkeypatch)
    X, y = bp.make_geometry("collinear", 1500, 64, 10, 5)
    fit_path(X, y, alpha=0.99, n_lambdas=12, eps=1e-2, progress=False, threads=1)
    names = [c[0] for c in calls]
    assert "owlqn" in names and "newton" in names[names.index("owlqn"):]
    assert [c[1] for c in calls] == _last_owlqn_counts(calls)


def test_newton_hands_the_expected_count_to_owlqn():
    """``newton(owlqn_expected_iters=...)`` reaches the OWL-QN it hands a model over
    ``max_free`` to: with a long count the blocks are its H0 (``PAIRS`` pairs kept)."""
    from sparse_probe.penalties import ElasticNet
    from sparse_probe.solvers.lbfgs import CPU_PAIRS
    from sparse_probe.solvers.newton import newton

    data, W0, b0 = _over_124(8)
    C = W0.shape[0]
    for expected, pairs in ((None, CPU_PAIRS), (10_000, cb.PAIRS)):
        res = newton(data, W0, b0, 0.02, ElasticNet(0.99), tol=1e-7, max_free=C,
                     owlqn_expected_iters=expected)
        assert res.iterations.keys() == {"owlqn"} and res.converged
        assert res.memory.history == pairs


@pytest.mark.parametrize("counts,point,expected", [
    ([(3, 100)], 7, 100.0),                  # one count: itself
    ([(3, 100), (4, 150)], 4, 150.0),        # at the last point: the last count
    ([(3, 100), (4, 150)], 6, 337.5),        # 150 * 1.5^2
    ([(2, 100), (4, 400)], 5, 800.0),        # 2x per point over two points: 400 * 2
    ([(3, 100), (4, 500)], 5, 1000.0),       # 5x per point, capped at COUNT_GROWTH_CAP (2)
    ([(3, 300), (4, 150)], 6, 150.0),        # shrinking counts: not extrapolated down
    ([(3, 0), (4, 8)], 5, 16.0),             # a zero count read as 1, the growth capped
    ([(3, 1), (4, 3)], 5, 6.0),              # 3x from a count of 1: capped at 2
    ([(2, 100), (4, 225)], 5, 337.5),        # 1.5x per point over two points: 225 * 1.5
    ([(1, 5), (3, 100), (4, 150)], 5, 225.0),  # the last two only
])
def test_expected_count_extrapolates_the_last_two_counts(counts, point, expected):
    assert cb.COUNT_GROWTH_CAP == 2.0
    assert cb.expected_count(counts, point) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("iters,paid", [(269, True), (270, True), (271, False)])
def test_blocks_paid_is_a_fifth_fewer_iterations_than_expected(iters, paid):
    """337.5 expected (150 grown 1.5x over two points): paid at up to 0.8 * 337.5 = 270."""
    assert cb.LONG_GAIN == 0.8
    assert cb.blocks_paid(iters, [(3, 100), (4, 150)], 6) is paid


def test_blocks_pay_exactly_at_the_bar():
    """n = 864, m = 173: the estimate and the inverses, 13,154,400 + 5,268,024 multiply-adds
    per class, are exactly LONG_SHARE * 493 iterations' products (0.125 * 493 * 2 * 864 *
    173): paid for at the bar, not below it."""
    assert blocks_pay(864, 173, 20, expected_iters=493) is True
    assert blocks_pay(864, 173, 20, expected_iters=492.99) is False


def test_long_blocks_are_those_only_the_expected_count_pays_for():
    assert cb.long_blocks(1_000, 198, 40, 562) is True
    assert cb.long_blocks(1_000, 198, 40, 561) is False  # not paid for
    assert cb.long_blocks(1_000, 198, 40, None) is False
    assert cb.long_blocks(1_000, 64, 40, 10_000) is False  # paid for anyway: not long ones
    assert cb.long_blocks(1_000, 198, 10, 10_000) is False  # never (10 classes)


@pytest.mark.parametrize("gain", [0.0, 100.0])
def test_a_path_drops_the_long_blocks_where_the_first_use_did_not_pay(monkeypatch, gain):
    """The first OWL-QN point that used the blocks for a long solve judges them
    (``blocks_paid``): where they did not pay, no later point gets the count (so none uses
    them for being long); where they did, every later point does."""
    import sys

    from sparse_probe import fit_path

    fit_module = sys.modules["sparse_probe.fit"]
    monkeypatch.setattr(cb, "LONG_SHARE", 4.0)  # long already at a few iterations: m > 124
    monkeypatch.setattr(cb, "LONG_GAIN", gain)  # 0: they never pay; 100: always
    calls = _spied_solvers(monkeypatch)
    judged = []
    real_paid = fit_module.blocks_paid

    def paid(iters, counts, point):
        judged.append((iters, list(counts), point))
        return real_paid(iters, counts, point)

    monkeypatch.setattr(fit_module, "blocks_paid", paid)
    n, C = 400, 20
    X, _ = problem(n, 140, C, 4)
    y = np.arange(n) % C
    fit_path(X.numpy(), y, alpha=0.99, n_lambdas=10, eps=1e-2, solver="owlqn",
             progress=False, threads=1)
    first = next(i for i, c in enumerate(calls) if cb.long_blocks(n, c[4], C, c[1]))
    assert calls[first][3]  # it used them
    # judged once, there, on the counts of the last two points solved without them
    assert len(judged) == 1
    iters, counts, point = judged[0]
    assert iters == calls[first][2]["owlqn"]
    plain = [c[2]["owlqn"] for c in calls[:first] if not c[3] and c[2].keys() == {"owlqn"}]
    assert plain and [c for _, c in counts] == plain[-2:]
    assert [p for p, _ in counts] == sorted({p for p, _ in counts}) and counts[-1][0] < point
    later = calls[first + 1:]
    assert later
    if gain == 0.0:
        assert all(c[1] is None and not c[3] for c in later)
    else:
        assert [c[1] for c in calls] == _last_owlqn_counts(calls)
        assert any(c[3] for c in later)
