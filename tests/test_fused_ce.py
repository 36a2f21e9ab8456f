"""The compiled cross-entropy rows (sparse_probe/solvers/_softmax_ce.c, fused_ce.py) against
float64 references: torch's log_softmax, closed forms of two-class rows (log(1 + e^x), the
logistic function) and the torch passes they replace; their use in the solvers against the
same fits with the kernel turned off."""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import shutil
import sys
import sysconfig

import numpy as np
import pytest
import torch

from sparse_probe.solvers import fused_ce
from sparse_probe.solvers.restricted import RestrictedData
from sparse_probe.solvers.threads import torch_threads

try:  # built at install where a C compiler is present (setup.py; optional)
    from sparse_probe.solvers._softmax_ce import rows as ROWS
except ImportError:
    ROWS = None

HAVE_CC = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is not None
#: skipped only where no C compiler could have built the kernel (a compiler and no extension
#: is a broken install, and fails them)
pytestmark = pytest.mark.skipif(ROWS is None and not HAVE_CC,
                                reason="no C compiler: the optional _softmax_ce extension is not built")


def _reference(s: torch.Tensor, y: torch.Tensor, scale: float):
    """Summed CE and residual of float64 logits ``s`` by torch's log_softmax (float64); the
    true class's residual ``scale (p_y - 1)`` as ``-scale`` times the other classes' sum (the
    difference would err by a rounding of ``scale`` where ``p_y`` nears 1)."""
    ls = torch.log_softmax(s, 1)
    loss = float(-ls.gather(1, y[:, None]).sum())
    P = ls.exp()
    R = P * scale
    rows = torch.arange(len(y))
    R[rows, y] = -scale * (P.sum(1) - P[rows, y]) if s.shape[1] > 1 else 0.0
    return loss, R


def _assert_residual(R, ref, y, scale, rtol=1e-13, atol=1e-18):
    """``R`` against :func:`_reference`'s: each entry to ``rtol``/``atol``, except the true
    class's, which a kernel may compute as ``scale p_y - scale``: up to 4 roundings of
    ``scale`` off where ``p_y`` nears 1 (no test of a kernel gets looser than that)."""
    rows = torch.arange(len(y))
    true = torch.zeros_like(R, dtype=torch.bool)
    true[rows, y] = True
    err = (R - ref).abs()
    assert bool((err[~true] <= atol + rtol * ref[~true].abs()).all())
    assert bool((err[true] <= atol + rtol * ref[true].abs() + 4 * 2.0**-52 * abs(scale)).all())


def _call(z, y, *, dz=None, t=0.0, dz2=None, cls2=None, scale=1.0, R64=True, zn=True):
    n, C = z.shape
    out = dict(zn=torch.empty_like(z) if zn else None,
               R64=torch.empty_like(z) if R64 else None,
               R32=torch.empty(n, C, dtype=torch.float32), gb=torch.zeros(C, dtype=torch.float64))

    def np_(a):
        return None if a is None else a.numpy()

    loss = ROWS(n, C, z.numpy(), np_(dz), t, np_(dz2), np_(cls2), y.numpy(), np_(out["zn"]),
                np_(out["R64"]), out["R32"].numpy(), out["gb"].numpy(), scale)
    return loss, out


@pytest.fixture(autouse=True)
def _threads_on_small_arrays(monkeypatch):
    """The threaded routes on arrays of a few hundred thousand entries (the library's
    MIN_ENTRIES_PER_THREAD asks for millions per thread: a speed threshold, not a behaviour)."""
    monkeypatch.setattr(fused_ce, "MIN_ENTRIES_PER_THREAD", 1 << 17)
    monkeypatch.setattr(fused_ce, "OPENMP_MIN_ENTRIES_PER_THREAD", 1 << 17)


OPENMP = bool(getattr(sys.modules.get("sparse_probe.solvers._softmax_ce"), "OPENMP", 0))


@pytest.fixture(params=["openmp", "pool"])
def route(request, monkeypatch):
    """Each way ce_rows spreads its blocks over threads: the kernel's OpenMP team (where it was
    built with OpenMP), or Python threads (a build without it, or a forked child: taken here
    by marking this process as one)."""
    if request.param == "openmp" and not (ROWS is not None and OPENMP):
        pytest.skip("the kernel was built without OpenMP")
    if request.param == "pool":
        monkeypatch.setattr(fused_ce, "_FORKED", [True])
    assert fused_ce._openmp(ROWS) == (request.param == "openmp")
    return request.param


def _problem(n, C, seed, spread=4.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, C, dtype=torch.float64, generator=g) * spread
    y = torch.randint(0, C, (n,), generator=g)
    return z, y, g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("C", [1, 2, 3, 8, 10, 31, 32, 37, 1000])
def test_rows_match_log_softmax_in_float64(C, seed):
    z, y, g = _problem(257, C, seed)
    dz = torch.randn(257, C, generator=g)  # float32: the solvers' step products
    dz2 = torch.randn(257, C, generator=g) * 0.1
    t, scale = 0.375, 1.0 / 257
    loss, out = _call(z, y, dz=dz, t=t, dz2=dz2, scale=scale)
    s = z + t * dz.double() + dz2.double()
    ref_loss, ref_R = _reference(s, y, scale)
    assert torch.allclose(out["zn"], s, rtol=1e-15, atol=1e-14)  # up to one FMA rounding
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    _assert_residual(out["R64"], ref_R, y, scale)
    assert torch.equal(out["R32"], out["R64"].float())
    assert torch.allclose(out["gb"], out["R64"].sum(0), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("C", [1, 2, 5, 16, 31, 32, 40])
@pytest.mark.parametrize("n", [1, 31, 33, 100])
def test_the_two_routes_agree_with_every_input(C, n):
    """route 0 (along rows) and 1 (across rows, 32 at a time: n covers a part block, one
    block and a block and a part) on a float32 step, a correction for a few classes and each
    output, against log_softmax and each other."""
    z, y, g = _problem(n, C, 100 * C + n)
    dz = torch.randn(n, C, generator=g)
    cls = torch.tensor(sorted({0, C // 2, C - 1}))
    dz2 = torch.randn(n, len(cls), generator=g) * 0.1
    s = z + 0.625 * dz.double()
    s[:, cls] += dz2.double()
    ref_loss, ref_R = _reference(s, y, 1 / n)
    got = []
    for route in (0, 1):
        zn, R64, R32 = torch.empty_like(z), torch.empty_like(z), torch.empty(n, C)
        gb = torch.zeros(C, dtype=torch.float64)
        loss = ROWS(n, C, z.numpy(), dz.numpy(), 0.625, dz2.numpy(), cls.numpy(), y.numpy(),
                    zn.numpy(), R64.numpy(), R32.numpy(), gb.numpy(), 1 / n, route)
        assert loss == pytest.approx(ref_loss, rel=1e-13, abs=1e-300)
        assert torch.allclose(zn, s, rtol=1e-15, atol=1e-14)
        _assert_residual(R64, ref_R, y, 1 / n)
        assert torch.equal(R32, R64.float())
        assert torch.allclose(gb, ref_R.sum(0), rtol=1e-12, atol=1e-16)
        got.append(loss)
    assert got[0] == pytest.approx(got[1], rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("C", [3, 7, 31])
def test_lanes_move_the_logits_in_their_own_scratch_without_zn(C):
    """Across rows, a step with no zn to receive the moved logits goes through the kernel's
    own scratch (beside the transposed rows and the column sums): over several blocks of 32
    rows and a part, with a correction for a few classes, as log_softmax has it."""
    n = 100
    z, y, g = _problem(n, C, 50 + C)
    dz = torch.randn(n, C, generator=g)
    cls = torch.tensor(sorted({0, C - 1}))
    dz2 = torch.randn(n, len(cls), generator=g) * 0.1
    s = z + 0.75 * dz.double()
    s[:, cls] += dz2.double()
    ref_loss, ref_R = _reference(s, y, 1 / n)
    R64, gb = torch.empty_like(z), torch.zeros(C, dtype=torch.float64)
    loss = ROWS(n, C, z.numpy(), dz.numpy(), 0.75, dz2.numpy(), cls.numpy(), y.numpy(), None,
                R64.numpy(), None, gb.numpy(), 1 / n, 1)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    _assert_residual(R64, ref_R, y, 1 / n)
    assert torch.allclose(gb, ref_R.sum(0), rtol=1e-12, atol=1e-16)


def _assert_default_route(outs: dict, chosen: int) -> None:
    """``outs[route] = (loss, residual, gb)`` for routes -1, 0, 1: the default's bits are
    route ``chosen``'s and not the other's."""
    assert outs[-1][0] == outs[chosen][0]
    assert torch.equal(outs[-1][1], outs[chosen][1]) and torch.equal(outs[-1][2], outs[chosen][2])
    other = outs[1 - chosen]
    assert not (torch.equal(other[1], outs[-1][1]) and torch.equal(other[2], outs[-1][2])
                and other[0] == outs[-1][0])


@pytest.mark.parametrize("C", [30, 31, 32, 33])
def test_the_default_route_is_across_rows_up_to_31_classes_and_along_rows_from_32(C):
    """The routes differ in their last bits (the lanes' own log, the true class's residual
    from the other classes' share), so the default's bits say which one ran: route -1 is
    route 1 up to LANE_MAX_C classes and route 0 beyond (a speed choice, measured:
    measure_softmax_ce.py)."""
    n = 200
    z, y, g = _problem(n, C, 40 + C)
    dz = torch.randn(n, C, generator=g)
    outs = {}
    for route in (-1, 0, 1):
        R64, gb = torch.empty_like(z), torch.zeros(C, dtype=torch.float64)
        loss = ROWS(n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), None,
                    R64.numpy(), None, gb.numpy(), 1 / n, route)
        outs[route] = loss, R64, gb
    _assert_default_route(outs, 1 if C <= 31 else 0)


@pytest.mark.parametrize("C", [31, 32, 255, 256])
def test_for_a_transposed_residual_the_default_route_is_across_rows_up_to_255_classes(C):
    """With R32 transposed (ld > 0), route -1 is route 1 (lanes) up to LANE_MAX_C_T classes
    and route 0 beyond, told apart by their last bits as above (a speed choice, measured:
    measure_residual_layout.py --routes)."""
    n = 70
    z, y, g = _problem(n, C, 50 + C)
    dz = torch.randn(n, C, generator=g)
    outs = {}
    for route in (-1, 0, 1):
        RT, gb = torch.empty(C, n), torch.zeros(C, dtype=torch.float64)
        loss = ROWS(n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), None, None,
                    RT.numpy(), gb.numpy(), 1 / n, route, 1, n)
        outs[route] = loss, RT, gb
    _assert_default_route(outs, 1 if C <= 255 else 0)


@pytest.mark.parametrize("classes", [[5], [0, 39, 7], []])
def test_a_correction_for_a_few_classes_is_the_dense_one(classes):
    """dz2 given for some classes only (the clipped weights' classes) is the dense (n, C)
    correction that is zero elsewhere."""
    z, y, g = _problem(300, 40, 12)
    dz = torch.randn(300, 40, generator=g)
    cls = torch.tensor(classes, dtype=torch.int64)
    few = torch.randn(300, len(classes), generator=g)
    dense = torch.zeros(300, 40)
    dense[:, cls] = few
    a_loss, a = _call(z, y, dz=dz, t=0.75, dz2=few.contiguous(), cls2=cls)
    b_loss, b = _call(z, y, dz=dz, t=0.75, dz2=dense)
    assert a_loss == b_loss
    for key in ("zn", "R64", "R32", "gb"):
        assert torch.equal(a[key], b[key]), key
    ref_loss, _ = _reference(z + 0.75 * dz.double() + dense.double(), y, 1.0)
    assert a_loss == pytest.approx(ref_loss, rel=1e-13)


def test_float64_step_and_no_step():
    z, y, g = _problem(100, 40, 3)
    dz = torch.randn(100, 40, dtype=torch.float64, generator=g)
    loss, out = _call(z, y, dz=dz, t=-1.5)
    ref_loss, ref_R = _reference(z - 1.5 * dz, y, 1.0)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    _assert_residual(out["R64"], ref_R, y, 1.0)
    for C in (7, 40):  # a float64 step on each route, over several blocks of 32 rows
        zc, yc, gc = _problem(100, C, 30 + C)
        dzc = torch.randn(100, C, dtype=torch.float64, generator=gc)
        ref_loss, ref_R = _reference(zc - 1.5 * dzc, yc, 1.0)
        for route in (0, 1):
            zn, R64 = torch.empty_like(zc), torch.empty_like(zc)
            gb = torch.zeros(C, dtype=torch.float64)
            got = ROWS(100, C, zc.numpy(), dzc.numpy(), -1.5, None, None, yc.numpy(),
                       zn.numpy(), R64.numpy(), None, gb.numpy(), 1.0, route)
            assert got == pytest.approx(ref_loss, rel=1e-13), (C, route)
            assert torch.allclose(zn, zc - 1.5 * dzc, rtol=1e-15, atol=1e-14), (C, route)
            _assert_residual(R64, ref_R, yc, 1.0)
    loss0, out0 = _call(z, y, zn=False)  # no step: z itself, nothing written to zn
    ref_loss0, ref_R0 = _reference(z, y, 1.0)
    assert loss0 == pytest.approx(ref_loss0, rel=1e-13)
    _assert_residual(out0["R64"], ref_R0, y, 1.0)


def test_two_class_rows_are_the_closed_forms_across_exps_range():
    """A row (0, x) with label 0 has CE log(1 + e^x) and residual e^x / (1 + e^x) in class 1:
    over x from -745 to 745 (both signs through the row maximum) this pins the kernel's exp,
    its range reduction and its clamp to about 1e-15 relative."""
    x = torch.cat([torch.linspace(-745.0, 745.0, 20001, dtype=torch.float64),
                   torch.tensor([-708.0, -707.9, 0.0, 1e-300, 0.3465, -0.3467, 709.0],
                                dtype=torch.float64)])
    z = torch.stack([torch.zeros_like(x), x], 1)
    y = torch.zeros(len(x), dtype=torch.int64)
    _, out = _call(z, y)
    ce = [math.log1p(math.exp(v)) if v < 30 else v + math.log1p(math.exp(-v)) for v in x.tolist()]
    sig = [1.0 / (1.0 + math.exp(-v)) if v > -700 else math.exp(v) for v in x.tolist()]
    per_row = []
    for i in range(len(x)):
        li = ROWS(1, 2, z[i : i + 1].numpy(), None, 0.0, None, None, y[i : i + 1].numpy(), None,
                     None, None, np.zeros(2), 1.0)
        per_row.append(li)
    per_row = np.array(per_row)
    ce, sig = np.array(ce), np.array(sig)
    R1 = out["R64"][:, 1].numpy()
    # below exp(-708) = 3.3e-308 the clamp stands in: nothing beside the row's 1
    want = np.maximum(sig, math.exp(-708.0))
    assert np.all(np.abs(R1 - want) <= 4e-16 * want)
    # CE: log of a sum that is at least 1, so an absolute error (as torch's passes)
    assert np.all(np.abs(per_row - ce) <= 4e-16 * np.maximum(ce, 1.0))
    # the true class: p_0 - 1 = -sigmoid(x), to the rounding of p_0 (near 1)
    assert np.abs(out["R64"][:, 0].numpy() + sig).max() <= 2.3e-16


@pytest.mark.parametrize("C", [50, 4])
@pytest.mark.parametrize("zn", [True, False])
def test_huge_logits_do_not_overflow(zn, C):
    z, y, _ = _problem(64, C, 4, spread=3000.0)  # exp of the raw logits would overflow
    z[0, 0] = z[0].max() + 900.0  # a row whose maximum is its first class, one its last
    z[1, -1] = z[1].max() + 900.0
    loss, out = _call(z, y, scale=0.5, zn=zn)
    ref_loss, ref_R = _reference(z, y, 0.5)
    assert math.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-13)
    _assert_residual(out["R64"], ref_R, y, 0.5, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("C", [33, 9])
@pytest.mark.parametrize("zn", [True, False])
def test_a_non_finite_logit_makes_its_row_nan_and_no_other(zn, C):
    z, y, _ = _problem(6, C, 5)
    z[2, 7] = math.inf
    z[4, 1] = math.nan
    z[3, 0] = -math.inf  # the first and the last class are checked too
    z[5, -1] = math.inf
    loss, out = _call(z, y, zn=zn)
    assert math.isnan(loss)
    R = out["R64"]
    assert all(torch.isnan(R[i]).all() for i in (2, 3, 4, 5))
    rest = [0, 1]
    _assert_residual(R[rest], _reference(z[rest], y[rest], 1.0)[1], y[rest], 1.0)
    assert torch.isnan(out["gb"]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_read_only_inputs_are_read(dtype):
    z, y, g = _problem(20, 40, 13)
    dz = torch.randn(20, 40, generator=g, dtype=dtype)
    cls2 = torch.tensor([0, 17, 39])
    dz2 = torch.randn(20, 3, generator=g)
    ins = [a.numpy().copy() for a in (z, dz, y, dz2, cls2)]
    for a in ins:
        a.flags.writeable = False
    gb = np.zeros(40)
    loss = ROWS(20, 40, ins[0], ins[1], 0.5, ins[3], ins[4], ins[2], None, None, None, gb, 1.0)
    moved = z + 0.5 * dz.double()
    moved[:, cls2] += dz2.double()
    assert loss == pytest.approx(_reference(moved, y, 1.0)[0], rel=1e-13)


def test_arrays_of_any_buffer_exporter_with_a_native_byte_order_are_read():
    """ctypes arrays say "<d" and "<q", a cast memoryview "@d": the same numbers as numpy's."""
    z, y, _ = _problem(6, 40, 9)
    gb = np.zeros(40)
    zc = (ctypes.c_double * 240)(*z.flatten().tolist())
    yc = (ctypes.c_int64 * 6)(*y.tolist())
    assert memoryview(zc).format == "<d" and memoryview(yc).format == "<q"
    zm = memoryview(z.numpy().copy()).cast("B").cast("@d")
    ref = _reference(z, y, 1.0)[0]
    for zz, yy in ((zc, yc), (zm, y.numpy())):
        gb[:] = 0
        loss = ROWS(6, 40, zz, None, 0.0, None, None, yy, None, None, None, gb, 1.0)
        assert loss == pytest.approx(ref, rel=1e-13)


def test_one_class_rows_cost_nothing():
    z, y, _ = _problem(7, 1, 21)
    loss, out = _call(z, y, scale=2.0)
    assert loss == 0.0
    assert torch.equal(out["R64"], torch.zeros(7, 1, dtype=torch.float64))
    assert torch.equal(out["gb"], torch.zeros(1, dtype=torch.float64))


def test_no_array_is_held_after_a_call_or_a_refusal():
    """Every buffer taken is released: the arrays' reference counts are what they were."""
    z, y, g = _problem(10, 40, 8)
    arrays = dict(z=z.numpy(), dz=torch.randn(10, 40, generator=g, dtype=torch.float32).numpy(),
                  dz2=np.zeros((10, 2), dtype=np.float32), cls2=np.array([1, 5]),
                  y=y.numpy(), zn=np.empty((10, 40)), R64=np.empty((10, 40)),
                  R32=np.empty((10, 40), dtype=np.float32), gb=np.zeros(40))
    bad_y = arrays["y"].copy()
    bad_y[0] = 40
    bad_cls2 = np.array([40, 1])

    def call(**over):
        a = {**arrays, **over}
        return ROWS(10, 40, a["z"], a["dz"], 0.5, a["dz2"], a["cls2"], a["y"], a["zn"],
                    a["R64"], a["R32"], a["gb"], 1.0)

    before = {k: sys.getrefcount(a) for k, a in arrays.items()}
    for _ in range(3):
        call()
        for over in (dict(y=bad_y), dict(cls2=bad_cls2), dict(gb=np.zeros(39)),
                     dict(dz2=np.zeros((10, 3), dtype=np.float32))):
            with pytest.raises(ValueError):
                call(**over)
    assert {k: sys.getrefcount(a) for k, a in arrays.items()} == before


def test_zero_rows():
    z = torch.zeros((0, 40), dtype=torch.float64)
    y = torch.zeros(0, dtype=torch.int64)
    loss, out = _call(z, y)
    assert loss == 0.0 and torch.equal(out["gb"], torch.zeros(40, dtype=torch.float64))


@pytest.mark.parametrize("C", [1, 2, 31, 32, 37, 1000])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 70])
@pytest.mark.parametrize("route", [0, 1])
def test_a_transposed_residual_is_the_row_major_one(C, n, route):
    """ld > 0: R32 spans a (C, ld) array, row i in column i; the same floats as the (n, C)
    residual on
    both routes (along rows: 16 rows staged at a time, n covers a part, one, and more),
    a row with a non-finite logit NaN in its column only, columns past n untouched."""
    z, y, g = _problem(n, C, 7 * C + n + route)
    dz = torch.randn(n, C, generator=g)
    if n > 3:
        z[3, C - 1] = float("inf")
    outs = []
    for ld in (0, n, n + 5):
        R32 = torch.full((C, ld) if ld else (n, C), 7.0)
        gb = torch.zeros(C, dtype=torch.float64)
        # the (C - 1) ld + n floats from row 0 of class 0 to row n - 1 of class C - 1
        span = R32.view(-1)[: (C - 1) * ld + n] if ld else R32
        loss = ROWS(n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), None, None,
                    span.numpy(), gb.numpy(), 1 / n, route, 1, ld)
        if ld:
            assert torch.equal(R32[:, n:], torch.full((C, ld - n), 7.0))
            R32 = R32[:, :n].T
        outs.append((loss, gb, R32))
    for loss, gb, R32 in outs[1:]:
        assert loss == outs[0][0] or (math.isnan(loss) and math.isnan(outs[0][0]))
        assert torch.equal(gb, outs[0][1]) or n > 3  # a NaN row: NaN sums either way
        assert torch.equal(R32.isnan(), outs[0][2].isnan())
        finite = ~outs[0][2].isnan()
        assert torch.equal(R32[finite], outs[0][2][finite])
    if n > 3:
        assert bool(outs[0][2][3].isnan().all()) and not bool(outs[0][2][:3].isnan().any())


def test_ce_rows_writes_the_transposed_residual_over_threads(route):
    """ce_rows(R32T=...) on either thread route: the one-thread row-major residual's floats,
    the same loss and bias sums; along rows (100 classes) and in lanes (7)."""
    before = torch.get_num_threads()
    try:
        for n, C in ((3001, 100), (4999, 7)):
            z, y, g = _problem(n, C, C)
            dz = torch.randn(n, C, generator=g)
            torch.set_num_threads(1)
            R32 = torch.empty(n, C)
            ref = fused_ce.ce_rows(z, y, dz=dz, t=0.5, R32=R32, scale=1 / n)
            torch.set_num_threads(3)
            RT = torch.empty(C, n)
            got = fused_ce.ce_rows(z, y, dz=dz, t=0.5, R32T=RT, scale=1 / n)
            assert got[0] == pytest.approx(ref[0], rel=1e-14)
            assert torch.allclose(got[1], ref[1], rtol=0, atol=1e-15)
            assert torch.equal(RT.T, R32)
    finally:
        torch.set_num_threads(before)


def test_ce_rows_refuses_two_residual_layouts_or_a_wrong_shape():
    z, y, _ = _problem(10, 40, 8)
    with pytest.raises(ValueError, match="R32 and R32T are alternatives"):
        fused_ce.ce_rows(z, y, R32=torch.empty(10, 40), R32T=torch.empty(40, 10))
    with pytest.raises(ValueError, match=r"R32T must have shape \(40, 10\), got \(10, 40\)"):
        fused_ce.ce_rows(z, y, R32T=torch.empty(10, 40))


def test_rows_refuse_what_they_cannot_read():
    z, y, _ = _problem(10, 40, 6)
    gb = np.zeros(40)
    bad_y = y.clone()
    bad_y[0] = 40  # the first row is checked too
    with pytest.raises(ValueError, match="label 40 of row 0 is not in"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, bad_y.numpy(), None, None, None, gb, 1.0)
    bad_y[0] = y[0]
    bad_y[3] = 40
    with pytest.raises(ValueError, match="label 40 of row 3 is not in"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, bad_y.numpy(), None, None, None, gb, 1.0)
    bad_y[3] = -1
    with pytest.raises(ValueError, match="label -1 of row 3"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, bad_y.numpy(), None, None, None, gb, 1.0)
    with pytest.raises(ValueError, match="z must be a C-contiguous float64 array of 400"):
        ROWS(10, 40, z.float().numpy(), None, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0)
    with pytest.raises(ValueError, match="R32 must be a C-contiguous float32"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None, z.numpy(), gb, 1.0)
    with pytest.raises(ValueError, match="gb must be"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None, None, np.zeros(39), 1.0)
    with pytest.raises(ValueError, match="dz must be"):
        ROWS(10, 40, z.numpy(), np.zeros((10, 39)), 0.0, None, None, y.numpy(), None, None, None, gb,
             1.0)
    for dz in ([0.0] * 400, np.zeros((40, 10)).T):  # not a buffer; not C-contiguous
        with pytest.raises(ValueError, match=r"dz must be a C-contiguous float64 array$"):
            ROWS(10, 40, z.numpy(), dz, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0)
    for i, name, kind in ((2, "z", " float64"), (7, "y", " int64"), (11, "gb", ", writable float64")):
        args = [10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0]
        args[i] = None  # the arrays that may not be None
        with pytest.raises(ValueError, match=f"{name} must be a C-contiguous{kind} array$"):
            ROWS(*args)
    ro = z.numpy().copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"zn must be a C-contiguous, writable float64 array$"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), ro, None, None, gb, 1.0)
    ro32 = np.zeros((10, 40), dtype=np.float32)
    ro32.flags.writeable = False
    with pytest.raises(ValueError, match=r"R32 must be a C-contiguous, writable float32 array$"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None, ro32, gb, 1.0)
    # an 8-byte item of the other kind is not taken for the one asked for
    with pytest.raises(ValueError, match="z must be a C-contiguous float64 array of 400 entries"):
        ROWS(10, 40, z.long().numpy(), None, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0)
    with pytest.raises(ValueError, match="y must be a C-contiguous int64 array of 10 entries"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.double().numpy(), None, None, None, gb,
             1.0)
    big = z.numpy().astype(">f8")  # another byte order
    with pytest.raises(ValueError, match="z must be a C-contiguous float64 array of 400"):
        ROWS(10, 40, big, None, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0)
    empty_y = np.zeros(0, dtype=np.int64)  # no rows: no entries either
    with pytest.raises(ValueError, match="z must be a C-contiguous float64 array of 0 entries"):
        ROWS(0, 40, z.numpy()[:1], None, 0.0, None, None, empty_y, None, None, None, gb, 1.0)
    with pytest.raises(ValueError, match="z must be a C-contiguous float64 array of 0 entries"):
        ROWS(0, 40, np.zeros(5, dtype=np.float32), None, 0.0, None, None, empty_y, None, None,
             None, gb, 1.0)
    with pytest.raises(ValueError, match="cls2 must be a C-contiguous int64 array of 3 entries"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, np.array([1.0, 2.0, 3.0]), y.numpy(), None,
             None, None, gb, 1.0)
    few = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="class 40 of cls2 is not in"):
        ROWS(10, 40, z.numpy(), None, 0.0, few, np.array([3, 40]), y.numpy(), None, None, None,
             gb, 1.0)
    with pytest.raises(ValueError, match="class -1 of cls2 is not in"):  # the first is checked
        ROWS(10, 40, z.numpy(), None, 0.0, few, np.array([-1, 3]), y.numpy(), None, None, None,
             gb, 1.0)
    with pytest.raises(ValueError, match="dz2 must be a C-contiguous float32 array of 30 "):
        ROWS(10, 40, z.numpy(), None, 0.0, few, np.array([1, 2, 3]), y.numpy(), None, None,
             None, gb, 1.0)
    with pytest.raises(ValueError, match="need n >= 0 and C >= 1"):
        ROWS(10, 0, z.numpy(), None, 0.0, None, None, y.numpy(), None, None, None, gb, 1.0)
    with pytest.raises(ValueError, match="R32's leading dimension 9 is below n = 10"):
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None,
             np.zeros(360, dtype=np.float32), gb, 1.0, -1, 1, 9)
    with pytest.raises(ValueError, match="R32 must be a C-contiguous float32 array of 439 "
                                         "entries"):  # (C - 1) ld + n for ld = 11
        ROWS(10, 40, z.numpy(), None, 0.0, None, None, y.numpy(), None, None,
             np.zeros(440, dtype=np.float32), gb, 1.0, -1, 1, 11)


# ------------------------------------------------------------------ fused_ce.py
def test_ce_rows_over_threads_is_the_one_thread_result(route):
    z, y, g = _problem(3000, 100, 7)
    dz = torch.randn(3000, 100, generator=g)
    before = torch.get_num_threads()
    res = {}
    try:
        for k in (1, 3):
            torch.set_num_threads(k)
            zn, R32 = torch.empty_like(z), torch.empty(3000, 100)
            loss, gb = fused_ce.ce_rows(z, y, dz=dz, t=0.5, zn=zn, R32=R32, scale=1 / 3000)
            res[k] = loss, gb, zn, R32
    finally:
        torch.set_num_threads(before)
    assert res[3][0] == pytest.approx(res[1][0], rel=1e-14)
    assert torch.allclose(res[3][1], res[1][1], rtol=0, atol=1e-15)
    assert torch.equal(res[3][2], res[1][2]) and torch.equal(res[3][3], res[1][3])
    ref_loss, ref_R = _reference(z + 0.5 * dz.double(), y, 1 / 3000)
    assert res[3][0] == pytest.approx(ref_loss, rel=1e-13)
    assert torch.allclose(res[3][1], ref_R.sum(0), rtol=0, atol=1e-14)


def test_the_openmp_blocks_are_the_pools_blocks_exactly(monkeypatch):
    """The kernel's OpenMP blocks split the rows where the pool route does (its blocks counted)
    and sum the blocks' losses and column sums in its order: the same bits on both routes, on
    every route of the kernel (along rows, in lanes), float32 and float64 steps, every output,
    with more threads than rows too."""
    if not OPENMP:
        pytest.skip("the kernel was built without OpenMP")
    monkeypatch.setattr(fused_ce, "MIN_ENTRIES_PER_THREAD", 1)  # every case on k threads
    monkeypatch.setattr(fused_ce, "OPENMP_MIN_ENTRIES_PER_THREAD", 1)
    real, calls = fused_ce._kernel(), []

    def counted(*args):  # the pool route's blocks, counted
        calls.append(args[0])
        return real(*args)

    with torch_threads(None):  # torch's count restored after the body
        for n, C, k, f64 in ((3000, 100, 3, False), (3001, 7, 2, False), (2, 1000, 4, False),
                             (600, 12, 3, True), (601, 45, 2, True)):
            z, y, g = _problem(n, C, 21 + C)
            dz = torch.randn(n, C, generator=g, dtype=torch.float64 if f64 else torch.float32)
            torch.set_num_threads(k)
            res = {}
            for route in ("openmp", "pool"):
                monkeypatch.setitem(fused_ce._STATE, "rows", real if route == "openmp" else counted)
                monkeypatch.setattr(fused_ce, "_FORKED", [route == "pool"])  # as in a child
                calls.clear()
                zn, R32, R64 = torch.empty_like(z), torch.empty(n, C), torch.empty_like(z)
                loss, gb = fused_ce.ce_rows(z, y, dz=dz, t=0.5, zn=zn, R32=R32, R64=R64,
                                            scale=1 / n)
                res[route] = loss, gb, zn, R32, R64
            assert sorted(calls) == sorted(n * (j + 1) // min(k, n) - n * j // min(k, n)
                                           for j in range(min(k, n))), (n, C)
            assert res["openmp"][0] == res["pool"][0], (n, C)
            for a, b in zip(res["openmp"][1:], res["pool"][1:], strict=True):
                assert torch.equal(a, b), (n, C)


@pytest.mark.parametrize("threads", [-3, 0, 1, 2, 5, 200])
def test_the_kernels_threads_argument_is_a_count_of_blocks(threads):
    """rows(..., threads): any count gives the one-thread result (up to the order its blocks'
    losses are summed in); fewer than two, and the argument left out, are one block exactly;
    more than the rows is one per row."""
    n, C = 150, 33
    z, y, g = _problem(n, C, 22)
    dz = torch.randn(n, C, generator=g)
    out = {}
    for k in ("default", 1, threads):
        zn, R32, gb = torch.empty_like(z), torch.empty(n, C), torch.zeros(C, dtype=torch.float64)
        args = (n, C, z.numpy(), dz.numpy(), 0.5, None, None, y.numpy(), zn.numpy(), None,
                R32.numpy(), gb.numpy(), 1 / n)
        loss = ROWS(*args) if k == "default" else ROWS(*args, -1, k)
        out[k] = loss, gb, zn, R32
    assert out["default"][0] == out[1][0] and torch.equal(out["default"][1], out[1][1])
    if threads <= 1:
        assert out[threads][0] == out[1][0] and torch.equal(out[threads][1], out[1][1])
    assert out[threads][0] == pytest.approx(out[1][0], rel=1e-14)
    assert torch.allclose(out[threads][1], out[1][1], rtol=0, atol=1e-15)
    assert torch.equal(out[threads][2], out[1][2]) and torch.equal(out[threads][3], out[1][3])


def test_a_forked_child_takes_the_pool_route(monkeypatch):
    monkeypatch.setattr(fused_ce, "_FORKED", [False])
    monkeypatch.setattr(fused_ce, "_POOLS", {})
    assert fused_ce._openmp(ROWS) == OPENMP
    fused_ce._forget_pools()  # what os.register_at_fork runs in the child
    assert fused_ce._FORKED == [True] and not fused_ce._openmp(ROWS)


MAPS = """7f00-7f10 r-xp 00000000 08:01 1234 /opt/py/torch/lib/libgomp.so.1
7f10-7f20 r--p 00010000 08:01 1234 /opt/py/torch/lib/libgomp.so.1
7f20-7f30 r-xp 00000000 08:01 99 /opt/py/scikit_learn.libs/libgomp-e985bcbb.so.1.0.0
7f30-7f40 rw-p 00000000 00:00 0
7f40-7f50 r-xp 00000000 08:01 77 /usr/lib/x86_64-linux-gnu/libm.so.6
"""
TORCH_GOMP, SKLEARN_GOMP = "/opt/py/torch/lib/libgomp.so.1", "/opt/py/scikit_learn.libs/libgomp-e985bcbb.so.1.0.0"
SYSTEM_GOMP, IOMP = "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0", "/opt/conda/lib/libiomp5.so"


def test_openmp_runtimes_are_read_from_the_maps_once_per_file():
    assert fused_ce.openmp_runtimes(MAPS) == {TORCH_GOMP, SKLEARN_GOMP}
    assert fused_ce.openmp_runtimes("7f30-7f40 rw-p 00000000 00:00 0\n") == set()
    if sys.platform == "linux":  # this process: absolute paths, the kernel's libgomp among them
        found = fused_ce.openmp_runtimes()
        assert all(os.path.isabs(p) for p in found)
        assert not OPENMP or any(os.path.basename(p).startswith("libgomp.so.1") for p in found)


@pytest.mark.parametrize("found, shared", [
    ({TORCH_GOMP}, True),
    ({TORCH_GOMP, SKLEARN_GOMP}, True),  # a wheel's private copy under a hashed name
    ({SYSTEM_GOMP}, True),
    (set(), True),  # none read (not Linux): the build's word
    ({TORCH_GOMP, SYSTEM_GOMP}, False),  # two files behind the soname the kernel binds
    ({IOMP, SYSTEM_GOMP}, False),  # a conda torch on Intel's runtime, the kernel on GNU's
    ({"/opt/conda/lib/libomp.so", TORCH_GOMP}, False),
])
def test_the_kernel_shares_torchs_runtime_only_where_one_gnu_runtime_is_mapped(found, shared):
    assert fused_ce.shares_torchs_runtime(found) is shared


def test_another_runtime_sends_the_blocks_to_python_threads(monkeypatch, caplog):
    """Decided once per process and logged."""
    if not OPENMP:
        pytest.skip("the kernel was built without OpenMP")
    monkeypatch.setattr(fused_ce, "_FORKED", [False])
    monkeypatch.setattr(fused_ce, "_RUNTIME", {})
    monkeypatch.setattr(fused_ce, "openmp_runtimes", lambda: {IOMP, SYSTEM_GOMP})
    with caplog.at_level(logging.INFO, logger="sparse_probe.solvers.fused_ce"):
        assert not fused_ce._openmp(ROWS) and not fused_ce._openmp(ROWS)
    assert len(caplog.records) == 1 and "libiomp5" in caplog.records[0].getMessage()
    monkeypatch.setattr(fused_ce, "_RUNTIME", {})
    monkeypatch.setattr(fused_ce, "openmp_runtimes", lambda: {TORCH_GOMP, SKLEARN_GOMP})
    assert fused_ce._openmp(ROWS)


def test_forgetting_the_pools_keeps_the_checked_kernel(monkeypatch):
    """What a forked child runs (os.register_at_fork): every pool dropped, the self-checked
    kernel kept; the next threaded rows make a pool of their own (two threads beside the
    calling one, which runs the first of the three blocks)."""
    z, y, _ = _problem(4000, 100, 12)  # 3 blocks of at least MIN_ENTRIES_PER_THREAD
    monkeypatch.setattr(fused_ce, "_STATE", {})
    monkeypatch.setattr(fused_ce, "_POOLS", {})
    monkeypatch.setattr(fused_ce, "_FORKED", [True])  # the pool route (as a build without OpenMP)
    before, pools = torch.get_num_threads(), {}
    try:
        torch.set_num_threads(3)
        first = fused_ce.ce_rows(z, y)[0]
        pools = dict(fused_ce._POOLS)
        assert list(pools) == [2] and fused_ce._STATE == {"rows": ROWS}
        fused_ce._forget_pools()
        assert fused_ce._POOLS == {} and fused_ce._STATE == {"rows": ROWS}
        assert fused_ce.ce_rows(z, y)[0] == first
        assert list(fused_ce._POOLS) == [2] and fused_ce._POOLS[2] is not pools[2]
    finally:
        torch.set_num_threads(before)
        for pool in [*pools.values(), *fused_ce._POOLS.values()]:
            pool.shutdown()


def test_a_pool_is_made_once_per_thread_count_with_named_threads(monkeypatch):
    import threading

    monkeypatch.setattr(fused_ce, "_POOLS", {})
    try:
        made = fused_ce._POOLS
        p3 = fused_ce._pool(3)
        assert fused_ce._pool(3) is p3 and made == {3: p3}
        p2 = fused_ce._pool(2)
        assert p2 is not p3 and made == {3: p3, 2: p2}
        assert p3._max_workers == 3 and p2._max_workers == 2
        names = set(p3.map(lambda _: threading.current_thread().name, range(30)))
        assert names and all(n.startswith("sparse-probe-ce_") for n in names)
    finally:
        for pool in fused_ce._POOLS.values():
            pool.shutdown()


def _ce_rows_in_child(queue, z, y):
    torch.set_num_threads(3)
    queue.put(fused_ce.ce_rows(z, y, scale=0.5)[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_ce_rows_over_threads_in_a_forked_child_after_the_parent_used_them(route, monkeypatch):
    """A child forked after the parent's threaded rows (its pool's threads, or its OpenMP
    team: a parallel region in the child would wait for it forever) gets pool threads of its
    own."""
    monkeypatch.setattr(fused_ce, "_POOLS", {})
    z, y, _ = _problem(3000, 100, 11)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        parent = fused_ce.ce_rows(z, y, scale=0.5)[0]
        assert bool(fused_ce._POOLS) == (route == "pool")  # a pool was made, or not needed
    finally:
        torch.set_num_threads(before)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_ce_rows_in_child, args=(queue, z, y))
    child.start()
    try:
        got = queue.get(timeout=120)  # the unfixed pool waits here forever
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert got == pytest.approx(parent, rel=1e-14)


@pytest.mark.parametrize("with_cls2", [False, True])
def test_ce_rows_over_threads_with_a_correction_and_int32_labels(with_cls2, route):
    """The clipped columns' correction (dz2, with or without its classes) and labels of
    another integer type reach every block as they reach one thread."""
    n, C = 3000, 100
    z, y, g = _problem(n, C, 9)
    dz = torch.randn(n, C, generator=g)
    cls2 = torch.tensor([5, 17, 90], dtype=torch.int32) if with_cls2 else None
    dz2 = torch.randn(n, 3 if with_cls2 else C, generator=g)
    before = torch.get_num_threads()
    res = {}
    try:
        for k in (1, 3):
            torch.set_num_threads(k)
            R32 = torch.empty(n, C)
            res[k] = (*fused_ce.ce_rows(z, y.to(torch.int32), dz=dz, t=0.5, dz2=dz2, cls2=cls2,
                                        R32=R32, scale=1 / n), R32)
    finally:
        torch.set_num_threads(before)
    full = dz2 if cls2 is None else torch.zeros(n, C).index_copy_(1, cls2.long(), dz2)
    ref_loss, ref_R = _reference(z + 0.5 * dz.double() + full.double(), y, 1 / n)
    for k in (1, 3):
        assert res[k][0] == pytest.approx(ref_loss, rel=1e-13), k
        assert torch.allclose(res[k][1], ref_R.sum(0), rtol=0, atol=1e-14), k
        assert torch.allclose(res[k][2].double(), ref_R, rtol=1e-6, atol=1e-9), k


def test_ce_rows_threads_only_for_enough_entries(monkeypatch):
    """Each thread gets at least MIN_ENTRIES_PER_THREAD entries (counted by the blocks run);
    the calling thread runs one of the blocks itself."""
    import threading

    monkeypatch.setattr(fused_ce, "_FORKED", [True])  # the pool route

    calls, here = [], []
    real = fused_ce._kernel()

    def counting(n, *args):
        calls.append(n)
        here.append(threading.current_thread() is threading.main_thread())
        return real(n, *args)

    monkeypatch.setitem(fused_ce._STATE, "rows", counting)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        n = 3 * fused_ce.MIN_ENTRIES_PER_THREAD // 64 + 5  # 3 threads' worth at C = 64
        z, y, _ = _problem(n, 64, 8)
        fused_ce.ce_rows(z, y)
        assert len(calls) == 3 and sum(calls) == n
        assert sum(here) == 1  # the calling thread's block; the pool's threads the others
        calls.clear()
        z, y, _ = _problem(fused_ce.MIN_ENTRIES_PER_THREAD // 64 - 1, 64, 8)
        fused_ce.ce_rows(z, y)
        assert len(calls) == 1
        calls.clear()
        n = 2 * fused_ce.MIN_ENTRIES_PER_THREAD // 64 + 3  # 2 threads' worth: two blocks
        z, y, _ = _problem(n, 64, 8)
        fused_ce.ce_rows(z, y)
        assert sorted(calls) == [n // 2, n - n // 2]  # in the order the threads finish
        calls.clear()
        C = 2 * fused_ce.MIN_ENTRIES_PER_THREAD  # 4 threads' worth in 2 rows: a row each
        z, y, _ = _problem(2, C, 8)
        fused_ce.ce_rows(z, y)
        assert calls == [1, 1]
        calls.clear()
        torch.set_num_threads(1)  # many entries, one thread: one block on this thread
        monkeypatch.setattr(fused_ce, "_POOLS", {})
        z, y, _ = _problem(n, 64, 8)
        fused_ce.ce_rows(z, y)
        assert calls == [n] and fused_ce._POOLS == {}
    finally:
        torch.set_num_threads(before)


def test_the_openmp_route_asks_for_threads_only_for_enough_entries(monkeypatch):
    """One kernel call, its thread count: one per OPENMP_MIN_ENTRIES_PER_THREAD entries, at
    most torch's count and the rows, at least one."""
    if not OPENMP:
        pytest.skip("the kernel was built without OpenMP")
    monkeypatch.setattr(fused_ce, "_FORKED", [False])
    asked, real = [], fused_ce._kernel()

    def counting(*args):
        asked.append((args[0], args[14]))  # n, threads
        return real(*args)

    counting.__module__ = real.__module__  # the built module says it has OpenMP
    monkeypatch.setitem(fused_ce._STATE, "rows", counting)
    per = fused_ce.OPENMP_MIN_ENTRIES_PER_THREAD
    with torch_threads(None):  # torch's count restored after the body
        torch.set_num_threads(4)
        for n, C, k in ((3 * per // 64 + 5, 64, 3), (per // 64 - 1, 64, 1),
                        (2 * per // 64 + 3, 64, 2), (9 * per // 64, 64, 4), (2, 2 * per, 2)):
            asked.clear()
            z, y, _ = _problem(n, C, 8)
            fused_ce.ce_rows(z, y)
            assert asked == [(n, k)], (n, C)
        torch.set_num_threads(1)
        asked.clear()
        fused_ce.ce_rows(z, y)
        assert asked == [(2, 1)]


def test_usable(monkeypatch):
    z = torch.zeros((5, 2), dtype=torch.float64)
    assert fused_ce.usable(z) and fused_ce.usable(z[:, :1].contiguous())
    assert not fused_ce.usable(torch.zeros((5, 0), dtype=torch.float64))
    assert not fused_ce.usable(z.float())
    assert not fused_ce.usable(torch.zeros((2, 5), dtype=torch.float64).T)
    monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", "0")
    assert not fused_ce.usable(z)


def test_a_kernel_that_disagrees_is_not_used(monkeypatch, caplog):
    """The once-per-process self-check: a kernel off by a little is refused with a warning."""
    real = ROWS

    def off(*args):
        return real(*args) * (1 + 1e-9)

    import sparse_probe.solvers._softmax_ce as mod

    monkeypatch.setattr(mod, "rows", off)
    monkeypatch.setattr(fused_ce, "_STATE", {})
    with caplog.at_level(logging.WARNING, logger="sparse_probe.solvers.fused_ce"):
        assert fused_ce._kernel() is None
    assert [r.getMessage() for r in caplog.records] == [
        "fused cross-entropy kernel disagrees with torch on a self-check; using torch's "
        "operations"]
    assert not fused_ce.usable(torch.zeros((4, 40), dtype=torch.float64))
    monkeypatch.setattr(mod, "rows", real)
    monkeypatch.setattr(fused_ce, "_STATE", {})
    assert fused_ce._kernel() is real


def _nudge_zn(a):  # the moved logits off by 1e-9 (their check: 1e-12 absolute)
    a[8][...] += 1e-9


def _nudge_r32_relative(a):  # the residual off by 5e-6 of itself (check: 1e-6 relative)
    a[10][...] *= np.float32(1 + 5e-6)


def _nudge_r32_absolute(a):  # the residual off by 5e-9 (check: 1e-9 absolute + 1e-6 relative)
    a[10][...] += np.float32(5e-9)


def _nudge_gb(a):  # the bias gradient off by 1e-10 (check: 1e-12 absolute)
    a[11][...] += 1e-10


@pytest.mark.parametrize("nudge", [_nudge_zn, _nudge_r32_relative, _nudge_r32_absolute, _nudge_gb])
def test_the_self_check_refuses_each_output_off_by_more_than_its_tolerance(nudge):
    """Each output the solvers read is checked at its own tolerance: an error just beyond it
    in any one of them fails the self-check, the exact kernel passes it."""
    assert fused_ce._agrees(ROWS)

    def off(*args):
        loss = ROWS(*args)
        nudge(args)
        return loss

    assert not fused_ce._agrees(off)


def test_the_self_check_tries_the_openmp_blocks_only_on_more_than_one_thread():
    """Blocks that go wrong only on two OpenMP threads fail the self-check where torch has
    more than one thread; on one thread the check starts no OpenMP team (a team left in a
    one-thread process would hang its forked children) and passes."""
    if not OPENMP:
        pytest.skip("the kernel was built without OpenMP")
    asked = []

    def off_on_threads(*args):
        asked.append(args[14])  # threads
        loss = ROWS(*args)
        return loss * (1 + 1e-9) if args[14] > 1 else loss

    off_on_threads.__module__ = ROWS.__module__
    with torch_threads(None):  # torch's count restored after the body
        torch.set_num_threads(1)
        assert fused_ce._agrees(off_on_threads) and set(asked) == {1}
        asked.clear()
        torch.set_num_threads(2)
        assert not fused_ce._agrees(off_on_threads) and set(asked) == {1, 2}
        assert fused_ce._agrees(ROWS)


# ------------------------------------------------------------------ in the solvers
def _restricted(n, m, C, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, m, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return RestrictedData(X, y, C), g


@pytest.mark.parametrize("C", [2, 10, 40, 200])
def test_restricted_loss_and_gradient_with_and_without_the_kernel(C, monkeypatch):
    """Both routes of RestrictedData.ce_along (across rows below 32 classes, along rows from
    32) and torch's passes against log_softmax of the moved logits."""
    data, g = _restricted(500, 12, C, 9)
    W = torch.randn(C, 12, dtype=torch.float64, generator=g) * 0.3
    b = torch.randn(C, dtype=torch.float64, generator=g)
    dW = torch.randn(C, 12, dtype=torch.float64, generator=g) * 0.1
    z = data.logits64(W, b)
    dz = data.step(dW, torch.zeros(C, dtype=torch.float64))
    cls = torch.tensor(sorted({3 % C, C - 1, 0}))  # a clipped trial's correction, few classes
    clipped = torch.zeros(C, 12, dtype=torch.float64)
    clipped[cls, 4] = torch.tensor([0.2, -0.1, 0.05][: len(cls)], dtype=torch.float64)
    dz2 = data.matvec32(clipped[cls], torch.tensor([4]))
    out = torch.empty_like(z)
    got = {}
    for env in ("1", "0"):
        monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", env)
        loss, R = data.ce_along(z, dz, 0.5, out, dz2, cls)
        G, gb = data.grad(R)
        got[env] = loss, G, gb, out.clone(), R.dtype
    assert got["1"][4] == torch.float32 and got["0"][4] == torch.float64
    # the float32 correction product is what both add, to the classes in cls only
    torch.testing.assert_close(dz2.double(), data.Xw.double() @ clipped[cls].T, rtol=1e-6,
                               atol=1e-7)
    moved = z + 0.5 * dz.double()
    moved[:, cls] += dz2.double()
    ref_loss, ref_R = _reference(moved, data.y, 1 / 500)
    for env in ("1", "0"):
        loss, G, gb, zn, _ = got[env]
        assert loss == pytest.approx(ref_loss / 500, rel=1e-13)
        assert torch.allclose(gb, ref_R.sum(0), rtol=0, atol=1e-15)
        assert torch.allclose(G, ref_R.T @ data.Xw.double(), rtol=1e-5, atol=1e-8)
        assert torch.allclose(zn, moved, rtol=1e-15, atol=1e-14)


def test_grad_of_a_residual_that_is_not_the_kernels_sums_it(monkeypatch):
    """grad() uses the kernel's bias sums only for the kernel's own buffer: a float64 residual
    passed in afterwards (a copy the caller made) is summed afresh."""
    data, g = _restricted(300, 5, 50, 10)
    z = data.logits64(torch.randn(50, 5, dtype=torch.float64, generator=g),
                      torch.zeros(50, dtype=torch.float64))
    _, R = data.ce(z)
    other = torch.randn(300, 50, dtype=torch.float64, generator=g)
    _, gb = data.grad(other)
    assert torch.allclose(gb, other.sum(0), rtol=0, atol=1e-12)
    _, gb_kernel = data.grad(R)  # the buffer now holds other's float32 copy: summed afresh
    assert torch.allclose(gb_kernel, R.double().sum(0), rtol=0, atol=1e-6)


def _assert_same_path_and_kkt(X, y, a, b, points: int) -> None:
    """Paths ``a`` (kernel) and ``b`` (torch) have the same float64 objectives (to 1e-7, far
    below the tolerance) and ``a`` meets KKT at every point, both by numpy's evaluation."""
    from sparse_probe import kkt_violation, objective_f64

    assert len(a) == len(b) == points
    tols = a.info["tol_per_point"]
    for i, lam in enumerate(a.lambdas):
        Fa, G, gb = objective_f64(X, y, a.weights[i], a.intercepts[i], lam, 0.99, mean=a.mean,
                                  scale=a.scale, return_grad=True)
        Fb = objective_f64(X, y, b.weights[i], b.intercepts[i], lam, 0.99, mean=b.mean,
                           scale=b.scale)
        assert Fa == pytest.approx(Fb, rel=1e-7)
        assert kkt_violation(G, a.weights[i], lam, 0.99).max() <= 1.01 * tols[i]
        assert np.abs(gb).max() <= 1.01 * tols[i]


@pytest.mark.parametrize(("seed", "C"), [(0, 60), (1, 60), (2, 2), (3, 10)])
def test_a_path_is_the_same_with_and_without_the_kernel(seed, C, monkeypatch):
    """OWL-QN's trials (with clipped weights: the kernel's second term) on paths of 60 classes
    (the kernel along rows), 2 and 10 (across rows): the float64 objectives agree to far below
    the tolerance, and KKT holds at every point (numpy's independent evaluation)."""
    from sparse_probe import fit_path

    rng = np.random.default_rng(seed)
    n, d = 1200, 24
    centers = rng.standard_normal((C, d)) * 0.8
    y = rng.integers(0, C, n)
    X = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    paths = {}
    for env in ("1", "0"):
        monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", env)
        paths[env] = fit_path(X, y, alpha=0.99, n_lambdas=8, eps=0.05, progress=False,
                              solver="owlqn", threads=1)
    _assert_same_path_and_kkt(X, y, paths["1"], paths["0"], 8)


@pytest.mark.parametrize("C", [45, 5])
@pytest.mark.parametrize("env", ["1", "0"])
def test_streamed_blocks_match_the_float64_reference(env, C, monkeypatch):
    """Low-memory mode (BlockedData): each row block's loss, residual and bias sums from the
    kernel (or torch's passes when it is off), against log_softmax on the whole data."""
    from sparse_probe.solvers.blocked import BlockedData

    monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", env)
    g = torch.Generator().manual_seed(11)
    n, m = 700, 7
    X = torch.randn(n, m, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    W = torch.randn(C, m, dtype=torch.float64, generator=g)
    b = torch.randn(C, dtype=torch.float64, generator=g)

    def blocks():  # uneven last block
        for s in range(0, n, 256):
            yield s, X[s : s + 256]

    data = BlockedData(blocks, y, n, m, C)
    ref_loss, ref_R = _reference(X.double() @ W.T + b, y, 1.0 / n)
    for _ in range(2):  # buffers reused across evaluations
        loss, G, gb = data.loss_grad(W, b)
        assert loss == pytest.approx(ref_loss / n, rel=1e-12)
        torch.testing.assert_close(gb, ref_R.sum(0), rtol=0, atol=1e-14)
        torch.testing.assert_close(G, ref_R.T @ X.double(), rtol=1e-5, atol=1e-7)
    loss_only, none_G, none_gb = data.loss_grad(W, b, need_grad=False)
    assert none_G is None and none_gb is None
    assert loss_only == pytest.approx(ref_loss / n, rel=1e-12)


@pytest.mark.parametrize("C", [40, 3])
def test_a_path_streamed_from_disk_is_the_same_with_and_without_the_kernel(
        tmp_path, monkeypatch, C):
    """Low-memory mode on a .npy file (every evaluation and KKT pass streamed in chunks of
    250 rows: part blocks of the kernel's across-rows route at 3 classes): the kernel's path
    against torch's, and KKT at every point by numpy's evaluation."""
    from sparse_probe import fit_path

    rng = np.random.default_rng(5)
    n, d = 900, 16
    y = rng.integers(0, C, n)
    X = (rng.standard_normal((C, d))[y] + rng.standard_normal((n, d))).astype(np.float32)
    f = tmp_path / "X.npy"
    np.save(f, X)
    paths = {}
    for env in ("1", "0"):
        monkeypatch.setenv("SPARSE_PROBE_FUSED_CE", env)
        paths[env] = fit_path(str(f), y, alpha=0.99, n_lambdas=6, eps=0.1, chunk_rows=250,
                              low_memory=True, progress=False, threads=1)
    a = paths["1"]
    _assert_same_path_and_kkt(X, y, a, paths["0"], 6)
    assert (np.abs(a.kkt_violation) <= a.info["tol_per_point"]).all()


def test_measure_script_checks_the_kernel_against_torchs_passes(capsys):
    """benchmarks/measure_softmax_ce.py: at every shape torch's passes and the kernel's two
    routes agree to rounding."""
    from helpers_bench import load_bench

    before = torch.get_num_threads()
    script = load_bench("measure_softmax_ce")
    try:
        script.main(["--repeats", "1"])
    finally:
        torch.set_num_threads(before)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [tuple(int(v) for v in line.split()[:2]) for line in rows] == script.SHAPES
    for line in rows:
        _, _, torch_ms, along_ms, across_ms, _, diff = line.split()
        assert float(torch_ms) > 0 and float(along_ms) > 0 and float(across_ms) > 0
        assert float(diff) < 1e-12, line


_BUILD_CHECK = """
import importlib.machinery, importlib.util, json, os, sys
import torch  # first, as fused_ce imports it: the kernel binds to the libgomp it loaded
path = sys.argv[1]
loader = importlib.machinery.ExtensionFileLoader("_softmax_ce", path)
m = importlib.util.module_from_spec(importlib.util.spec_from_loader("_softmax_ce", loader))
loader.exec_module(m)
maps = open("/proc/self/maps").read().split("\\n")
print(json.dumps({"openmp": m.OPENMP,
                  "gomp": sorted({l.split()[-1] for l in maps if "libgomp" in l})}))
"""


def _built_kernel(root, env_flags):
    """setup.py's build of the extensions in a copy of their sources under ``root`` (with
    ``SPARSE_PROBE_OPENMP_FLAGS`` = ``env_flags`` unless None); returns the build's output
    and what a process importing its ``_softmax_ce`` after torch says: the module's
    ``OPENMP`` and the libgomp files mapped."""
    import json
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "sparse_probe", "solvers")
    os.makedirs(src)
    shutil.copy(os.path.join(here, "setup.py"), root)
    for name in ("_softmax_ce.c", "_gram_cd.c", "_data_cd.c", "_centering.c", "_buffers.h"):
        shutil.copy(os.path.join(here, "sparse_probe", "solvers", name), src)
    env = dict(os.environ)
    env.pop("SPARSE_PROBE_OPENMP_FLAGS", None)
    if env_flags is not None:
        env["SPARSE_PROBE_OPENMP_FLAGS"] = env_flags
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (so,) = [f for f in os.listdir(src) if f.startswith("_softmax_ce") and f.endswith(".so")]
    got = subprocess.run([sys.executable, "-c", _BUILD_CHECK, os.path.join(src, so)],
                         capture_output=True, text=True, timeout=300, check=True)
    return build.stdout + build.stderr, json.loads(got.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_CC and sys.platform == "linux"), reason="builds with GCC/Linux")
def test_setup_builds_the_kernel_with_openmp_on_torchs_libgomp_or_without_it(tmp_path):
    """setup.py: with OpenMP (its threads then torch's: one libgomp in the process, torch's),
    and without it where the compiler refuses the flags (a note; the kernel still built) or
    SPARSE_PROBE_OPENMP_FLAGS is empty."""
    out, got = _built_kernel(tmp_path / "default", None)
    torch_gomp = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    assert got["openmp"] == 1 and "without OpenMP" not in out
    if os.path.exists(torch_gomp):  # a wheel that bundles its own runtime: that one, once
        assert got["gomp"] == [os.path.realpath(torch_gomp)] or got["gomp"] == [torch_gomp]
    out, got = _built_kernel(tmp_path / "refused", "-fopenmp -fno-such-flag-sparse-probe")
    assert "note: sparse_probe.solvers._softmax_ce without OpenMP" in out
    assert got["openmp"] == 0
    out, got = _built_kernel(tmp_path / "off", "")
    assert got["openmp"] == 0 and "without OpenMP" not in out


def test_a_kernel_not_built_is_logged_and_torchs_passes_used(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sparse_probe.solvers._softmax_ce", None)  # import fails
    monkeypatch.setattr(fused_ce, "_STATE", {})
    with caplog.at_level(logging.DEBUG, logger="sparse_probe.solvers.fused_ce"):
        assert fused_ce._kernel() is None
    assert [r.getMessage() for r in caplog.records] == [
        "fused cross-entropy kernel not built; using torch's operations"]
    assert not fused_ce.usable(torch.zeros((4, 40), dtype=torch.float64))


def test_ce_rows_steps_all_of_dz_unless_told():
    z, y, g = _problem(50, 40, 13)
    dz = torch.randn(50, 40, generator=g)
    loss, gb = fused_ce.ce_rows(z, y, dz=dz)
    ref_loss, ref_R = _reference(z + dz.double(), y, 1.0)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    assert torch.allclose(gb, ref_R.sum(0), rtol=0, atol=1e-12)
