"""The solver's two float32 products (oneDNN when available, torch's @ otherwise) against
float64 references, and the fit they drive against the plain-product fit."""

import numpy as np
import pytest
import torch

import sparse_probe.solvers.products as products
from sparse_probe import fit_path, kkt_violation, objective_f64
from sparse_probe.solvers.products import onednn_enabled, rt_x, x_wt
from sparse_probe.solvers.restricted import RestrictedData


@pytest.fixture(params=["onednn", "torch"])
def backend(request, monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "1" if request.param == "onednn" else "0")
    if request.param == "onednn" and not onednn_enabled():
        pytest.skip("this torch build has no usable oneDNN linear op")
    return request.param


@pytest.mark.parametrize("n,m", [(1, 1), (300, 37), (5000, 255), (4097, 64)])
def test_products_match_float64(backend, n, m):
    g = torch.Generator().manual_seed(n + m)
    X = torch.randn(n, m, generator=g)
    W = torch.randn(10, m, generator=g, dtype=torch.float64)
    R = torch.randn(n, 10, generator=g, dtype=torch.float64)
    X64 = X.double()
    ref_z = X64 @ W.float().double().T
    ref_g = R.float().double().T @ X64
    # float32 products of n-term (resp. m-term) sums: a few ulps times sqrt(terms) of the scale
    z = x_wt(X, W)
    assert z.dtype == torch.float32 and z.shape == (n, 10)
    np.testing.assert_allclose(z.double().numpy(), ref_z.numpy(), rtol=0,
                               atol=1e-5 * float(ref_z.abs().max()) + 1e-6)
    b = torch.randn(10, generator=g, dtype=torch.float64)  # the bias epilogue
    zb = x_wt(X, W, bias=b)
    ref_zb = ref_z + b.float().double()
    np.testing.assert_allclose(zb.double().numpy(), ref_zb.numpy(), rtol=0,
                               atol=1e-5 * float(ref_zb.abs().max()) + 1e-6)
    for G in (rt_x(R, X), rt_x(R, XT=X.T.contiguous())):
        assert G.dtype == torch.float32 and G.shape == (10, m)
        np.testing.assert_allclose(G.double().numpy(), ref_g.numpy(), rtol=0,
                                   atol=1e-5 * float(ref_g.abs().max()) + 1e-6)


@pytest.mark.parametrize("C", [products.WIDE_CLASSES - 1, products.WIDE_CLASSES, 1000])
def test_residual_product_of_many_classes_matches_float64(backend, C):
    """From WIDE_CLASSES classes on, R^T X takes the row-major route; the result is the same
    product (float64 R given as is, or as the solver's float32 buffer)."""
    g = torch.Generator().manual_seed(C)
    X = torch.randn(700, 24, generator=g)
    R = torch.randn(700, C, generator=g, dtype=torch.float64)
    ref = R.float().double().T @ X.double()
    for G in (rt_x(R, X), rt_x(R.float(), X), rt_x(R, X, XT=X.T.contiguous())):
        assert G.dtype == torch.float32 and G.shape == (C, 24)
        np.testing.assert_allclose(G.double().numpy(), ref.numpy(), rtol=0,
                                   atol=1e-5 * float(ref.abs().max()) + 1e-6)


@pytest.mark.parametrize("C", [products.WIDE_CLASSES, 300])
def test_a_transposed_residual_of_many_classes_goes_to_onednn_as_is(backend, C, monkeypatch):
    """R given as the transpose of a (C, n) float32 array (the compiled kernel's residual):
    from WIDE_CLASSES classes on, no copy and oneDNN's product over a view of row-major X
    (the many-class BLAS route reads row-major R; the single call is for fewer classes,
    even where its check found it paying); the same product."""
    g = torch.Generator().manual_seed(C + 1)
    X = torch.randn(700, 24, generator=g)
    RT = torch.randn(C, 700, generator=g)
    ref = RT.double() @ X.double()
    calls = []
    real = products._linear

    def spy(*args):
        calls.append(args[0].data_ptr())
        return real(*args)

    monkeypatch.setattr(products, "_linear", spy)
    monkeypatch.setitem(products._STATE, "single", True)  # would take a small row-major R
    G = rt_x(RT.T, X)
    np.testing.assert_allclose(G.double().numpy(), ref.numpy(), rtol=0,
                               atol=1e-5 * float(ref.abs().max()) + 1e-6)
    # oneDNN read the caller's array itself (torch's products where oneDNN is off)
    assert calls == ([RT.data_ptr()] if backend == "onednn" else [])


def test_restricted_gradient_of_many_classes_matches_float64():
    """RestrictedData's gradient on either side of WIDE_CLASSES vs a float64 softmax (from the
    compiled kernel's transposed residual where it is built)."""
    for C in (3, products.WIDE_CLASSES - 1, products.WIDE_CLASSES + 8, 300):
        g = torch.Generator().manual_seed(C)
        n, m = 900, 12
        X = torch.randn(n, m, generator=g)
        y = torch.randint(0, C, (n,), generator=g)
        W = 0.3 * torch.randn(C, m, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(C, generator=g, dtype=torch.float64)
        data = RestrictedData(X, y, C)
        loss, G, gb = data.loss_grad(W, b)
        z = X.double() @ W.T + b
        P = torch.softmax(z, 1)
        P[torch.arange(n), y] -= 1
        np.testing.assert_allclose(G.numpy(), (P.T @ X.double() / n).numpy(), rtol=0, atol=2e-7)
        np.testing.assert_allclose(gb.numpy(), (P.sum(0) / n).numpy(), rtol=0, atol=1e-12)
        ref_loss = float(-torch.log_softmax(z, 1)[torch.arange(n), y].mean())
        assert abs(loss - ref_loss) <= 1e-12 * ref_loss


def test_failing_op_falls_back_to_torch(monkeypatch):
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "1")
    monkeypatch.setattr(products, "_STATE", {"ok": True})

    def broken(*args):
        raise RuntimeError("simulated oneDNN failure")

    monkeypatch.setattr(products, "_linear", broken)
    X = torch.randn(50, 7)
    W = torch.randn(3, 7)
    R = torch.randn(50, 3)
    torch.testing.assert_close(x_wt(X, W), X @ W.T)
    assert products._STATE["ok"] is False  # disabled for the rest of the process
    torch.testing.assert_close(rt_x(R, X), R.T @ X)


@pytest.mark.slow
def test_fit_agrees_with_plain_products(monkeypatch):
    """The products only change float32 rounding: both fits reach the same objective at every
    point (each to its KKT tolerance) and the same signed supports away from ties."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=1500, n_features=40, n_informative=8, n_classes=4,
                               n_clusters_per_class=1, random_state=3)
    X = X.astype(np.float32)
    fits = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("SPARSE_PROBE_ONEDNN", flag)
        fits[flag] = fit_path(X, y, n_lambdas=15, eps=1e-2, progress=False, tol=1e-4)
    a, b = fits["0"], fits["1"]
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-7)
    for Wa, Wb in zip(a.weights, b.weights, strict=True):
        clear = np.maximum(np.abs(Wa), np.abs(Wb)) > 1e-4  # away from the zero ties
        np.testing.assert_array_equal(np.sign(Wa[clear]), np.sign(Wb[clear]))
        assert abs(int((Wa != 0).sum()) - int((Wb != 0).sum())) <= 2


@pytest.mark.parametrize("fault", ["wrong", "missing"])
def test_failed_self_check_falls_back_to_the_plain_product(monkeypatch, fault):
    """The private op is trusted only after its self-check: an op that returns wrong numbers
    or is missing (a torch without it, or with a changed signature) turns oneDNN off, and the
    products are then exactly torch's ``@``."""
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "1")
    monkeypatch.setattr(products, "_STATE", {})
    real = products._linear

    def wrong(*args):
        return real(*args) * 1.01

    def missing(*args):
        raise AttributeError("no such op: mkldnn::_linear_pointwise")

    monkeypatch.setattr(products, "_linear", wrong if fault == "wrong" else missing)
    if fault == "wrong" and not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    assert onednn_enabled() is False
    g = torch.Generator().manual_seed(5)
    X = torch.randn(3000, 40, generator=g)
    W = torch.randn(4, 40, generator=g)
    b = torch.randn(4, generator=g)
    R = torch.randn(3000, 4, generator=g)
    assert torch.equal(x_wt(X, W), X @ W.T)
    assert torch.equal(x_wt(X, W, bias=b), torch.addmm(b, X, W.T))
    # R^T X: the same float32 sums, possibly in another order (operand layouts differ)
    torch.testing.assert_close(rt_x(R, XT=X.T.contiguous()), R.T @ X, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(rt_x(R, X), R.T @ X, rtol=1e-5, atol=1e-4)


def test_measure_products_script_runs_and_checks_both_routes(capsys):
    """benchmarks/measure_products.py (it asserts both routes agree before timing them)."""
    from helpers_bench import load_bench

    load_bench("measure_products").main(["--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 8 and lines[2].split()[:3] == ["4000", "1000", "32"]


def test_product_into_a_buffer_is_the_same_product(backend):
    """x_wt(out=...) writes X W^T (+ b) into the given buffer and returns it."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(300, 37, generator=g)
    W = torch.randn(40, 37, generator=g, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    out = torch.full((300, 40), float("nan"))
    for bias in (None, b):
        ref = X.double() @ W.float().double().T + (0 if bias is None else bias.float().double())
        got = x_wt(X, W, bias=bias, out=out)
        assert got is out
        np.testing.assert_allclose(got.double().numpy(), ref.numpy(), rtol=0,
                                   atol=1e-5 * float(ref.abs().max()))


def test_large_step_products_reuse_one_buffer():
    """RestrictedData.step: outputs of FRESH_MAP_BYTES and more are written into one buffer
    of the data object (every call the right product), smaller ones are fresh tensors."""
    C = 1024
    n = products.FRESH_MAP_BYTES // (4 * C)  # exactly at the threshold
    assert products.reuse_output(n, C)
    assert not products.reuse_output(n - 1, C) and not products.reuse_output(n, C - 1)
    g = torch.Generator().manual_seed(7)
    y = torch.arange(n) % C
    for rows, reused in ((n, True), (n - 1, False)):
        X = torch.randn(rows, 3, generator=g)
        data = RestrictedData(X, y[:rows], C)
        outs = []
        for _ in range(2):
            dW = torch.randn(C, 3, generator=g, dtype=torch.float64)
            db = torch.randn(C, generator=g, dtype=torch.float64)
            dz = data.step(dW, db)
            ref = X.double() @ dW.float().double().T + db.float().double()
            np.testing.assert_allclose(dz.double().numpy(), ref.numpy(), rtol=0, atol=1e-5)
            outs.append(dz)  # both kept alive: fresh tensors cannot share an address
        assert (outs[0].data_ptr() == outs[1].data_ptr()) == reused


def test_measure_products_outputs_mode_times_both_routes(capsys):
    """benchmarks/measure_products.py --outputs (it asserts both routes agree first)."""
    from helpers_bench import load_bench

    mod = load_bench("measure_products")
    mod.main(["--outputs", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(mod.OUTPUT_SHAPES)
    assert lines[2].split()[:4] == ["20000", "1000", "32", "76"]
    assert all(float(line.split()[-1]) > 0 for line in lines[2:])


def test_fit_with_buffered_step_products_meets_kkt_and_matches_fresh_ones(monkeypatch):
    """A many-class path whose step products take the reused buffer (n C at FRESH_MAP_BYTES):
    every point meets its KKT tolerance in an independent float64 check, and the objectives
    agree with the same fit on fresh products (threshold raised past it) to 1e-8."""
    C = 1024
    n = products.FRESH_MAP_BYTES // (4 * C)
    rs = np.random.default_rng(11)
    y = np.arange(n) % C
    X = (rs.standard_normal((C, 5))[y] + rs.standard_normal((n, 5))).astype(np.float32)
    calls = []
    real_step = RestrictedData.step

    def spy(self, dW, db):
        out = real_step(self, dW, db)
        calls.append(self._dz32 is not None and out.data_ptr() == self._dz32.data_ptr())
        return out

    monkeypatch.setattr(RestrictedData, "step", spy)
    kw = dict(n_lambdas=4, eps=0.3, progress=False, threads=1)
    path = fit_path(X, y, **kw)
    assert calls and all(calls)  # every step product went into the buffer
    tols = np.asarray(path.info["tol_per_point"])
    for i in range(1, len(path)):
        _, G, gb = objective_f64(X, y, path.weights[i], path.intercepts[i], path.lambdas[i],
                                 path.alpha, mean=path.mean, scale=path.scale, return_grad=True)
        viol = kkt_violation(G, path.weights[i], path.lambdas[i], path.alpha)
        assert max(viol.max(), np.abs(gb).max()) <= 1.5 * tols[i]  # float32 data's rounding
    assert path.nnz[-1] > 0
    calls.clear()
    monkeypatch.setattr(products, "FRESH_MAP_BYTES", 4 * n * C + 4)
    fresh = fit_path(X, y, **kw)
    assert calls and not any(calls)
    np.testing.assert_allclose(path.objective, fresh.objective, rtol=1e-8)


def test_small_residual_products_take_one_blas_call(monkeypatch):
    """Under WIDE_CLASSES classes, R^T X over a row-major X of at most SINGLE_CALL_BYTES is one
    plain BLAS call (oneDNN's op not called); one byte more and oneDNN takes it (given X^T or
    not). The same product either way, against float64."""
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "1")
    if not onednn_enabled():
        pytest.skip("this torch build has no usable oneDNN linear op")
    g = torch.Generator().manual_seed(5)
    X = torch.randn(600, 21, generator=g)
    R = torch.randn(600, 7, generator=g, dtype=torch.float64)
    ref = R.float().double().T @ X.double()
    tol = 1e-5 * float(ref.abs().max()) + 1e-6  # float32 sums of 600 terms
    calls = []
    real = products._linear

    def spy(*args):
        calls.append(args[1].shape)
        return real(*args)

    monkeypatch.setattr(products, "_linear", spy)
    monkeypatch.setitem(products._STATE, "single", True)  # the check found it paying
    monkeypatch.setattr(products, "SINGLE_CALL_BYTES", 4 * X.numel())  # exactly X's bytes
    for G in (rt_x(R, X), rt_x(R, X, XT=X.T.contiguous())):
        np.testing.assert_allclose(G.double().numpy(), ref.numpy(), rtol=0, atol=tol)
    assert calls == []
    monkeypatch.setattr(products, "SINGLE_CALL_BYTES", 4 * X.numel() - 1)
    for G in (rt_x(R, X), rt_x(R, X, XT=X.T.contiguous())):
        np.testing.assert_allclose(G.double().numpy(), ref.numpy(), rtol=0, atol=tol)
    assert len(calls) == 2
    rt_x(R, XT=X.T.contiguous())  # only the column-major copy: oneDNN's route whatever the size
    monkeypatch.setattr(products, "SINGLE_CALL_BYTES", 2**40)
    rt_x(R, XT=X.T.contiguous())
    assert len(calls) == 4
    # where the check found the single call not paying, oneDNN takes the small products too
    monkeypatch.setitem(products._STATE, "single", False)
    np.testing.assert_allclose(rt_x(R, X).double().numpy(), ref.numpy(), rtol=0, atol=tol)
    assert len(calls) == 5


def test_the_single_call_is_checked_for_its_sum_and_its_speed(monkeypatch):
    """single_call_pays' check: a call that sums an entry's terms in one running float32 sum
    (emulated by a float32 cumulative sum) fails it whatever its speed; one that sums exactly
    passes where it beats oneDNN's product (scripted clock) and fails where it does not; with
    oneDNN off there is nothing to choose. Decided once per process."""
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "1")
    if not onednn_enabled():
        pytest.skip("this torch build has no usable oneDNN linear op")

    def running(Rt, X):  # one float32 sequence per entry, as MKL's call on session 44's CPU
        terms = (Rt[:, :, None] * X[None]).numpy()  # numpy's float32 cumsum: float32 partials
        return torch.from_numpy(np.cumsum(terms, axis=1, dtype=np.float32)[:, -1])

    def exact(Rt, X):
        return (Rt.double() @ X.double()).float()

    calls, now = [], [0.0]

    def clock():
        return now[0]

    def timed(cost):  # a route whose every call advances the scripted clock by ``cost``
        def f(Rt, X):
            now[0] += cost
            calls.append(cost)
            return exact(Rt, X)
        return f

    assert products.SINGLE_CALL_ERROR == 32 * 2.0**-24
    assert not products._check_single_call(single=running, onednn=timed(1.0), clock=clock)
    assert calls == []  # failed on its sum: not timed
    assert products._check_single_call(single=timed(1.0), onednn=timed(2.0), clock=clock)
    assert len(calls) == 1 + 12  # the sum checked; each route one untimed call, five timed
    assert not products._check_single_call(single=timed(2.0), onednn=timed(1.0), clock=clock)
    assert not products._check_single_call(single=timed(1.0), onednn=timed(1.0), clock=clock)
    # the real routes on this machine: a decision either way, recorded once
    monkeypatch.delitem(products._STATE, "single", raising=False)
    first = products.single_call_pays()
    real = products._check_single_call
    monkeypatch.setattr(products, "_check_single_call", lambda: pytest.fail("checked twice"))
    assert products.single_call_pays() is first
    monkeypatch.setenv("SPARSE_PROBE_ONEDNN", "0")  # no oneDNN: nothing to choose
    assert real(single=running) is True
