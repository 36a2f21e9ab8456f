"""The two float32 products of every solver iteration, on the fastest kernel at hand.

Each OWL-QN iteration costs one ``X W^T`` (n, m)·(m, C) and one ``R^T X`` (C, n)·(n, m), with
C (the classes) small: these skinny shapes are far from a BLAS's square-matrix sweet spot. On
CPU torch sends them to MKL's sgemm; oneDNN (which torch bundles for its CPU convolutions and
linear layers) JITs kernels for the CPU it runs on. In one ad-hoc timing on the 2-core AMD EPYC
(Zen 3) machines we develop on, at n = 20,000, m = 512, C = 10 (the MKL ``R^T X`` is the
row-blocked form used before, see ``block_rows``):

=================  =======  ======
product            MKL      oneDNN
=================  =======  ======
``X W^T``          8.2 ms   5.5 ms
``R^T X``          10.5 ms  7.0 ms (``X^T`` given), 7.5 ms (a view of row-major ``X``)
=================  =======  ======

Both are reached through ``torch.ops.mkldnn._linear_pointwise`` (``input @ weight^T``, the op
behind torch's own oneDNN linear layers): ``X W^T`` with ``X`` as input and ``W`` as the weight
(a bias, when given, is added in the product's epilogue), ``R^T X`` with ``R^T`` as input and
``X^T`` as the weight, read in place (no copy of X). Dense weights timed the same as weights
converted to oneDNN's blocked layout. Results agree with MKL's to float32 rounding (relative
error ~1e-6: only the summation order differs). CUDA tensors always use ``@``. Outputs of
:data:`FRESH_MAP_BYTES` and more (the step product at many classes) go to torch's BLAS instead,
written into a buffer the caller reuses: oneDNN's op has no output argument, and a fresh output
that large cost more in page faults than the product. And ``R^T X`` over a row-major ``X`` of
at most :data:`SINGLE_CALL_BYTES` is one plain BLAS call ``(C, n) @ (n, m)`` where a check
on the machine finds it faster and summing in pieces (:func:`single_call_pays`): on session
35's machine (the working sets of most paths) it ran in 0.13-0.89 of oneDNN's time; on
session 44's, an AMD EPYC with AVX-512, in 1.5-3.0x oneDNN's, summing each entry's n terms in
one running float32 sum (``benchmarks/results/products-single-call-check-cpu-2026-12-06.txt``).

Why a private op: torch's public API sends every CPU matmul to its BLAS (MKL); the op behind
torch's own oneDNN linear layers is the one way to reach oneDNN's kernels for a plain product
without a compiled extension. Being private, it may be missing from a build or change its
signature in any torch release, so it is used only behind a guard, and degrades to ``@``:

- the op is missing, or raises on its first use (``AttributeError``/``RuntimeError``/
  ``TypeError`` in the once-per-process self-check against ``@`` on a small problem): ``@``
  from then on, logged at debug level;
- it returns numbers that disagree with ``@`` on the self-check: ``@``, with a warning;
- it raises later, on a real product: that product and all later ones use ``@``, with a
  warning;
- ``SPARSE_PROBE_ONEDNN=0`` in the environment: ``@`` always, no check.

``tests/test_products.py`` forces each of these and compares with ``@``.

Reproducibility: with oneDNN and more than one thread, repeated fits of the same data in fresh
processes agreed to rounding but not always bit for bit (on a 30-λ test path, about one run in
four took a few more iterations and ended with weights differing in the last bits; each
product alone was bit-identical across runs, and we did not find the cause). The KKT
tolerance holds either way. For bit-identical repeats set ``SPARSE_PROBE_ONEDNN=0`` or run
with one thread.
"""

from __future__ import annotations

import logging
import os
import time

import torch

__all__ = ["FRESH_MAP_BYTES", "SINGLE_CALL_BYTES", "SINGLE_CALL_ERROR", "WIDE_CLASSES",
           "onednn_enabled", "reuse_output", "rt_x", "single_call_pays", "x_wt"]

#: From this many classes on, ``rt_x`` on CPU multiplies a row-major float32 copy of the
#: residual ``R`` (n, C), read transposed by the BLAS, instead of building the (C, n)
#: transpose: that strided copy scatters each row of R over C cache lines.
#: ``benchmarks/measure_products.py`` (1 thread, quiet machine, results/products-cpu-*.txt):
#: at C = 1,000 the row-major route was 3.5-4.7x faster (the transposed copy alone is 75-87%
#: of the other route), at C = 100 1.6-2x, at C = 32-64 1.1-1.3x; at C = 10-16 the two were
#: within noise of each other either way, so the old route stays there.
WIDE_CLASSES = 32

#: Bytes from which an (n, C) product output is written into a reused buffer (:func:`x_wt`'s
#: ``out``) instead of a fresh tensor. glibc serves allocations of 32 MiB and more (its largest
#: dynamic mmap threshold on 64-bit) with a fresh mapping whose every page faults on first
#: touch; smaller ones come back from its heap. ``benchmarks/measure_products.py --outputs``
#: (results/products-cpu-2026-12-03.txt): at 38-76 MiB outputs BLAS writing into a buffer
#: took 0.44-0.91 of oneDNN's fresh product on one thread, 0.50-0.74 on two (C = 1,000,
#: n = 20,000: 23 ms against 53 on one), at 31 MiB 0.89-1.38 (oneDNN's kernels faster
#: where no page faults are paid).
FRESH_MAP_BYTES = 32 * 2**20

#: Largest row-major ``X`` (bytes) whose ``R^T X`` on CPU (under :data:`WIDE_CLASSES` classes)
#: is one BLAS call ``(C, n) @ (n, m)`` instead of oneDNN's: ``benchmarks/measure_products.py
#: --routes`` (results/products-routes-cpu-2026-12-05.txt) found the single call 0.13-0.89x
#: oneDNN's time up to 29 MiB of ``X`` (n = 2,000-20,000, m = 30-384, C = 2-10; one and two
#: threads), 0.73-1.46x at 39 MiB, 0.95-1.85x from 49 MiB on, where oneDNN's kernels win
#: (the row-blocked form of the same call had lost to oneDNN at 20,000 × 512, above).
#: Whole paths under 32 classes ran 1.00-1.18x faster with it, side by side
#: (``benchmarks/results/compare-session-cpu-2026-12-05.txt``, run C).
SINGLE_CALL_BYTES = 32 * 2**20

#: Largest error, relative to the result, that the single-call route may show on its check
#: (:func:`single_call_pays`): a product whose every entry sums 32,768 terms of one sign, the
#: case where one running float32 sum errs the most. The float32 gradient's error bound
#: (``restricted.F32_GRADIENT_ERROR``) assumes the reduction over n is summed in pieces, as
#: oneDNN does (3.1 units of 2⁻²⁴ on the check) and MKL did where ``tests/test_precision.py``
#: passed (the machines of sessions 35-43). On an AMD EPYC with AVX-512 (session 44) MKL's
#: call summed an entry's terms in one float32 sequence (bit for bit numpy's float32 cumsum):
#: 87.6 units on the check, and a gradient entry at 30,000 × 100 × 3 13x the bound; oneDNN's
#: product there 1.5e-7 against 1.1e-5.
SINGLE_CALL_ERROR = 32 * 2.0**-24

log = logging.getLogger(__name__)

_STATE: dict[str, bool] = {}


def _linear(inp: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(inp, weight, bias, "none", [], "")


def onednn_enabled() -> bool:
    """Whether CPU products go through oneDNN: available, not disabled by the environment
    variable ``SPARSE_PROBE_ONEDNN=0``, and correct on a self-check (done once)."""
    if os.environ.get("SPARSE_PROBE_ONEDNN", "1") == "0":
        return False
    if "ok" not in _STATE:
        _STATE["ok"] = _self_check()
    return _STATE["ok"]


def _self_check() -> bool:
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        X = torch.randn(300, 37, generator=g)
        W = torch.randn(3, 37, generator=g)
        R = torch.randn(300, 3, generator=g)
        ok = torch.allclose(_linear(X, W), X @ W.T, rtol=1e-4, atol=1e-4)
        b = torch.randn(W.shape[0], generator=g)
        ok &= torch.allclose(_linear(X, W, b), X @ W.T + b, rtol=1e-4, atol=1e-4)
        ok &= torch.allclose(_linear(R.T.contiguous(), X.T), R.T @ X, rtol=1e-4, atol=1e-4)
        XT = X.T.contiguous()
        ok &= torch.allclose(_linear(R.T.contiguous(), XT), R.T @ X, rtol=1e-4, atol=1e-4)
        if not ok:
            log.warning("oneDNN products disagree with torch's on a self-check; using torch's")
        return bool(ok)
    except (RuntimeError, AttributeError, TypeError) as e:  # op missing or changed signature
        log.debug("oneDNN products unavailable (%s); using torch's", e)
        return False


def single_call_pays() -> bool:
    """Whether ``R^T X`` over a row-major ``X`` of at most :data:`SINGLE_CALL_BYTES` (under
    :data:`WIDE_CLASSES` classes) is one plain BLAS call rather than oneDNN's: decided once
    per process, where oneDNN is in use (:func:`onednn_enabled`), by a check of the call on
    this machine. It must sum the n terms of an entry in pieces (an error of at most
    :data:`SINGLE_CALL_ERROR` on a product whose terms all have one sign) and beat oneDNN's
    product at a working set's shape (10 classes, 8,192 rows, 128 columns; median of 5 each,
    interleaved). On the machine of session 35 it ran in 0.13-0.89 of oneDNN's time; on
    session 44's (AMD EPYC, AVX-512) in 1.5-3.0x oneDNN's at C ≤ 10 on two threads, and it
    failed the sum."""
    if "single" not in _STATE:
        _STATE["single"] = _check_single_call()
        log.debug("products: one BLAS call for R^T X: %s", _STATE["single"])
    return _STATE["single"]


def _check_single_call(single=torch.mm, onednn=None, clock=time.perf_counter) -> bool:
    """:func:`single_call_pays`' check; ``single(Rt, X)`` and ``onednn(Rt, X)`` (default
    ``_linear(Rt, X.T)``) are the two routes' products of ``Rt`` (C, n) and ``X`` (n, m),
    ``clock`` (seconds): for tests."""
    if not onednn_enabled():
        return True  # nothing to choose: torch's products either way
    onednn = onednn or (lambda a, b: _linear(a, b.T))
    g = torch.Generator().manual_seed(0)
    n = 32768
    Rt = torch.rand(3, n, generator=g) / n
    X = torch.rand(n, 8, generator=g)
    ref = Rt.double() @ X.double()
    err = float((single(Rt, X).double() - ref).abs().max() / ref.abs().max())
    if not err <= SINGLE_CALL_ERROR:
        return False
    Rt = torch.randn(10, 8192, generator=g)
    X = torch.randn(8192, 128, generator=g)
    routes = {"single": lambda: single(Rt, X), "onednn": lambda: onednn(Rt, X)}
    times: dict[str, list[float]] = {k: [] for k in routes}
    for f in routes.values():  # untimed first calls (oneDNN generates its kernels)
        f()
    for _ in range(5):
        for k, f in routes.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return med["single"] < med["onednn"]


def _use_onednn(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.numel() > 0 for t in tensors) and onednn_enabled()


def reuse_output(n: int, C: int) -> bool:
    """Whether an (n, C) float32 product output should be a reused buffer (``x_wt(out=...)``)
    rather than a fresh tensor: at :data:`FRESH_MAP_BYTES` and more (a CPU rule: the caller
    checks the device)."""
    return 4 * n * C >= FRESH_MAP_BYTES


def x_wt(X: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None = None,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """``X @ W.T (+ bias)`` in float32.

    Parameters
    ----------
    X : torch.Tensor of shape (n, m), float32, row-major rows (a row slice is fine)
    W : torch.Tensor of shape (C, m), any float dtype (converted to float32)
    bias : torch.Tensor of shape (C,), optional
        Added to every row (in the product's epilogue: no extra pass over the (n, C) output).
    out : torch.Tensor of shape (n, C), float32, contiguous, optional
        Written with the product (torch's BLAS, ``addmm``/``mm`` into it: oneDNN's op takes no
        output) and returned; for outputs of :data:`FRESH_MAP_BYTES` and more
        (:func:`reuse_output`), whose fresh allocations cost more than the product.

    Returns
    -------
    torch.Tensor of shape (n, C), float32
    """
    W32 = W.to(torch.float32)
    b32 = None if bias is None else bias.to(torch.float32).contiguous()
    if out is not None:
        return torch.mm(X, W32.T, out=out) if b32 is None else torch.addmm(b32, X, W32.T, out=out)
    if _use_onednn(X, W32) and X.is_contiguous():
        try:
            return _linear(X, W32.contiguous(), b32)
        except RuntimeError as e:
            _disable(e)
    return X @ W32.T if b32 is None else torch.addmm(b32, X, W32.T)


def rt_x(R: torch.Tensor, X: torch.Tensor | None = None, XT: torch.Tensor | None = None,
         block_rows: int = 2048) -> torch.Tensor:
    """``R^T X`` in float32: (n, C) residuals times (n, m) float32 features -> (C, m).

    Parameters
    ----------
    R : torch.Tensor of shape (n, C), any float dtype (converted to float32)
        The transpose of a contiguous (C, n) float32 array (the compiled cross-entropy
        kernel's residual) is read as is, with no copy (from :data:`WIDE_CLASSES` classes
        on, by oneDNN's product, never the BLAS route for row-major ``R``).
    X : torch.Tensor of shape (n, m), float32, optional
        Row-major features.
    XT : torch.Tensor of shape (m, n), float32, optional
        The same features column-major (contiguous rows of ``X^T``): the faster operand when a
        caller keeps one. At least one of ``X``, ``XT`` is required.
    block_rows : int
        Without oneDNN, CPU products with row-major ``X`` are accumulated over row blocks: one
        reduction-shaped MKL call ``(C, n) @ (n, m)`` ran about 2x slower on the 2-core
        machines we measured (the blocks keep it in cache).
    """
    wide = R.shape[1] >= WIDE_CLASSES
    if wide and R.device.type == "cpu" and X is not None and not R.T.is_contiguous():
        # many classes: a row-major float32 copy (no copy when R is one) read transposed by
        # the BLAS; the (C, n) transposed copy below costs more than the product there
        R32 = R.to(torch.float32, memory_format=torch.contiguous_format)
        return torch.mm(R32.T, X)
    # (C, n) float32 in one pass; no copy when R is already the transpose of such a tensor
    # (the compiled cross-entropy kernel writes its residual so)
    Rt = R.T.to(torch.float32, memory_format=torch.contiguous_format)
    if not wide and X is not None and X.device.type == "cpu" and X.is_contiguous() and \
            4 * X.numel() <= SINGLE_CALL_BYTES and single_call_pays():
        return Rt @ X  # one BLAS call beats oneDNN's at these sizes (SINGLE_CALL_BYTES)
    Xt = XT if XT is not None else X.T  # (m, n), a view when from X
    dense = XT.is_contiguous() if XT is not None else X.is_contiguous()
    if dense and _use_onednn(Rt, Xt):
        try:
            return _linear(Rt, Xt)
        except RuntimeError as e:
            _disable(e)
    if XT is not None:
        return Rt @ XT.T
    if X.device.type != "cpu" or X.shape[0] <= block_rows:
        return Rt @ X
    out = torch.zeros((Rt.shape[0], X.shape[1]), dtype=torch.float32)
    for s in range(0, X.shape[0], block_rows):
        out.addmm_(Rt[:, s : s + block_rows], X[s : s + block_rows])
    return out


def _disable(err: Exception) -> None:
    log.warning("oneDNN product failed (%s); using torch's products from now on", err)
    _STATE["ok"] = False
