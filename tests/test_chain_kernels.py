"""The fused loss-and-gradient kernel (harness.engine.chain_kernels): losses and gradients
against autograd and finite differences, for every fused activation, several depths, frozen
layers, row blocks of any size, stacks evaluated in part, float32; the engines fall back to the
NumPy path where the kernel cannot be trusted."""
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from harness.engine.chain_kernels import (
    MAX_FLOPS,
    BlockBuffers,
    FusedEvaluator,
    fused_codes,
    fused_loss,
    jit_slots,
    jit_table,
    mse_loss_and_grads,
)
from harness.engine.gradients import GradientEngine
from harness.engine.kernel_blas import load_mkl, mkl_library


def _libraries():
    """The products the kernel can call here: ``np.dot`` (SciPy's OpenBLAS) and, when the
    ``mkl`` extra is installed, MKL's CBLAS GEMM and MKL's JIT GEMMs: ``{name: (blas, jit)}``
    with ``blas`` a KernelBlas or None (np.dot) and ``jit`` whether to build a JIT table."""
    out = {"np.dot": (None, False)}
    if mkl_library() is not None:
        lib = load_mkl()
        out["mkl"] = (lib, False)
        out["mkl-jit"] = (lib, True)
    return out


LIBRARIES = _libraries()


def _intel_cpu() -> bool:
    """Whether this is an Intel processor (MKL compiles JIT GEMMs for Intel's only); ``True``
    where /proc/cpuinfo cannot tell, so that the JIT is then required."""
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


def products(library, shapes, block, rows, dtype=np.float64):
    """``(gemm address, JIT table, owners)`` for :func:`mse_loss_and_grads`."""
    blas, jit = LIBRARIES[library]
    gemm = 0 if blas is None else blas.address(dtype)
    if jit:
        table, owners = jit_table(shapes, block, rows, dtype, blas)
        if not table[..., 1].any() and not _intel_cpu():
            pytest.skip("MKL compiles no JIT GEMM on this (non-Intel) processor")
        assert table[..., 1].any()
        return gemm, table, owners
    return gemm, np.zeros((2, jit_slots(len(shapes)), 2), np.int64), []

PHI = {"relu": lambda g: anp.maximum(g, 0.0), "sigmoid": lambda g: 1.0 / (1.0 + anp.exp(-g)),
       "tanh": anp.tanh, "quadratic": lambda g: g * g, "identity": lambda g: g}


def chain(widths, d, seed):
    rng = np.random.default_rng(seed)
    sizes = [d, *widths, 1]
    return [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]


def reference(weights, X, y, act):
    def loss(ws):
        f = X
        for W in ws[:-1]:
            f = PHI[act](f @ W.T)
        out = f @ ws[-1][0]
        return anp.mean((out - y) ** 2)

    return loss(weights), grad(loss)(weights)


def evaluate(weights, X, y, code, trainable, block, library="np.dot", dtype=np.float64):
    """The kernel on a stack of one network, with ``block`` rows per block, the products of
    ``library`` (a key of LIBRARIES) and every array in ``dtype`` (the inputs rounded to it)."""
    shapes = [W.shape for W in weights]
    buffers = BlockBuffers(shapes, dtype, rows=block)
    grads = tuple(np.full((1, *s), np.nan, dtype=dtype) for s in shapes)
    out, values = np.empty((1, X.shape[0]), dtype=dtype), np.empty(1, dtype=dtype)
    flags = np.array(trainable, dtype=np.bool_)
    lowest = int(np.flatnonzero(flags)[0]) if flags.any() else len(shapes)
    gemm, jits, owners = products(library, shapes, block, X.shape[0], dtype)  # owners: alive during the call
    mse_loss_and_grads(tuple(W.astype(dtype)[None] for W in weights), X.astype(dtype)[None],
                       y.astype(dtype)[None], grads, flags, lowest, code, buffers.F, buffers.P,
                       buffers.Da, buffers.Db, buffers.s, buffers.T, buffers.U, out, values, 1, gemm, jits)
    del owners
    return values[0], [g[0] for g in grads], out[0]


CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "quadratic": 3, "identity": 4}


@pytest.mark.parametrize("act", list(CODES))
@pytest.mark.parametrize("widths", [(6,), (6, 5), (7, 4, 6)])
@pytest.mark.parametrize("block", [16, 37, 200])
@pytest.mark.parametrize("library", list(LIBRARIES))
def test_kernel_equals_autograd(act, widths, block, library):
    """Blocks of 16 and 37 rows leave a partial last block (N = 53); 200 is one block; with
    every BLAS the kernel can call here."""
    d, N = 5, 53
    weights = chain(widths, d, seed=len(widths) + block)
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((N, d)), rng.standard_normal(N)
    value, grads, out = evaluate(weights, X, y, CODES[act], [True] * len(weights), block, library)
    ref_value, ref_grads = reference(weights, X, y, act)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-13 * np.abs(r).max())
    f = X
    for W in weights[:-1]:
        f = np.asarray(PHI[act](f @ W.T))
    np.testing.assert_allclose(out, f @ weights[-1][0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("trainable", [[False, True, True], [False, False, True], [True, True, False],
                                       [False, True, False]])
def test_frozen_layers_are_left_alone(trainable):
    d, N = 4, 40
    weights = chain((6, 5), d, seed=3)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((N, d)), rng.standard_normal(N)
    _, grads, _ = evaluate(weights, X, y, CODES["tanh"], trainable, 16)
    _, ref = reference(weights, X, y, "tanh")
    for g, r, t in zip(grads, ref, trainable):
        if t:
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)
        else:
            assert np.isnan(g).all()  # never written


def test_gradient_against_finite_differences():
    d, N = 3, 30
    weights = chain((4, 4), d, seed=11)
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((N, d)), rng.standard_normal(N)
    _, grads, _ = evaluate(weights, X, y, CODES["sigmoid"], [True] * 3, 8)
    h = 1e-6
    for l, (i, j) in [(0, (1, 2)), (1, (3, 0)), (2, (0, 3))]:
        plus = [W.copy() for W in weights]
        minus = [W.copy() for W in weights]
        plus[l][i, j] += h
        minus[l][i, j] -= h
        fd = (evaluate(plus, X, y, 0, [True] * 3, 8)[0] - evaluate(minus, X, y, 0, [True] * 3, 8)[0]) / (2 * h)
        assert grads[l][i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_stack_members_beyond_k_untouched(registry):
    """Members 0..k-1 of a stack are evaluated, each with its own data; the rest are not."""
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    d, N, R, k = 4, 33, 4, 3
    nets = [chain((5, 5), d, seed=20 + r) for r in range(R)]
    rng = np.random.default_rng(9)
    X, y = rng.standard_normal((R, N, d)), rng.standard_normal((R, N))
    W = [np.stack([net[l] for net in nets]) for l in range(3)]
    grads = [np.full_like(w, np.nan) for w in W]
    ev = FusedEvaluator([w.shape[1:] for w in W], CODES["relu"], [True] * 3, np.float64)
    values, out = ev.evaluate(W, X, y, grads, k)
    for r in range(k):
        ref_value, ref_grads = reference(nets[r], X[r], y[r], "relu")
        assert values[r] == pytest.approx(ref_value, rel=1e-12)
        for g, ref in zip(grads, ref_grads):
            np.testing.assert_allclose(g[r], ref, rtol=1e-10, atol=1e-14)
    assert all(np.isnan(g[k]).all() for g in grads)
    single = GradientEngine([w.shape[1:] for w in W], act).loss_and_grads(nets[1], X[1], y[1], loss)
    assert single.loss == values[1]  # the engine's path is the kernel on a stack of one
    for g, gs in zip(grads, single.grads):
        assert np.array_equal(g[1], gs)


@pytest.mark.parametrize("act", list(CODES))
@pytest.mark.parametrize("widths, block", [((8, 8), 20), ((7, 4, 6), 37), ((6,), 200)])
@pytest.mark.parametrize("library", list(LIBRARIES))
def test_float32_kernel_equals_autograd_to_float32_rounding(act, widths, block, library):
    """In float32 (SGEMM: np.dot on float32 arrays, MKL's cblas_sgemm or its JIT SGEMMs) the
    loss, the gradients and the outputs agree with autograd in float64 on the same (rounded)
    numbers to float32 rounding, and the kernel writes float32."""
    d, N = 6, 64
    weights = [W.astype(np.float32).astype(np.float64) for W in chain(widths, d, seed=4 + len(widths))]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, d)).astype(np.float32).astype(np.float64)
    y = rng.standard_normal(N).astype(np.float32).astype(np.float64)
    value, grads, out = evaluate(weights, X, y, CODES[act], [True] * len(weights), block, library,
                                 np.float32)
    ref_value, ref_grads = reference(weights, X, y, act)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert float(value) == pytest.approx(ref_value, rel=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * np.abs(r).max())
    f = X
    for W in weights[:-1]:
        f = np.asarray(PHI[act](f @ W.T))
    np.testing.assert_allclose(out, f @ weights[-1][0], rtol=1e-5, atol=1e-6 * np.abs(f @ weights[-1][0]).max())
    value64, grads64, _ = evaluate(weights, X, y, CODES[act], [True] * len(weights), block, library)
    assert float(value) != value64 or any(not np.array_equal(g, h) for g, h in zip(grads, grads64))


def test_float32_engine_paths_agree(registry):
    """The single-network engine in float32: the compiled kernel (MSE) and the NumPy path (the
    same loss without jit_code) agree to float32 rounding; both give float32 gradients."""
    act = registry.create("activation", "relu")
    fused, plain = registry.create("loss", "mse"), registry.create("loss", "mse")
    plain.jit_code = None
    weights = [W.astype(np.float32) for W in chain((7, 7, 7), 7, seed=8)]
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((90, 7)).astype(np.float32), rng.standard_normal(90).astype(np.float32)
    engine = GradientEngine([W.shape for W in weights], act, dtype=np.float32)
    assert engine.fused_evaluator(fused, 90) is not None and engine.fused_evaluator(plain, 90) is None
    a = engine.loss_and_grads(weights, X, y, fused)
    a_grads = [g.copy() for g in a.grads]
    b = engine.loss_and_grads(weights, X, y, plain)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    for g, h in zip(a_grads, b.grads):
        assert g.dtype == h.dtype == np.float32
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-5 * np.abs(h).max())


def test_engine_kernel_and_numpy_paths_agree(registry):
    """The kernel (MSE) and the NumPy path (the same loss without jit_code) give the same loss
    and gradients to round-off; a loss without jit_code never reaches the kernel."""
    act = registry.create("activation", "sigmoid")
    fused, plain = registry.create("loss", "mse"), registry.create("loss", "mse")
    plain.jit_code = None
    d, N = 6, 90
    weights = chain((7, 7, 7), d, seed=8)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((N, d)), rng.standard_normal(N)
    engine = GradientEngine([W.shape for W in weights], act)
    assert engine.fused_evaluator(fused, N) is not None and engine.fused_evaluator(plain, N) is None
    a = engine.loss_and_grads(weights, X, y, fused)
    a = (a.loss, [g.copy() for g in a.grads], a.output.copy())
    b = engine.loss_and_grads(weights, X, y, plain)
    assert a[0] == pytest.approx(b.loss, rel=1e-13)
    for g, h in zip(a[1], b.grads):
        np.testing.assert_allclose(g, h, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(a[2], b.output, rtol=1e-13)


def test_a_loss_that_disagrees_is_refused(registry):
    """A plugin that declares jit_code "mse" but computes half the squared error is not
    evaluated by the kernel (the probe check), so training stays correct."""
    mse = registry.create("loss", "mse")

    class HalfSquares(type(mse)):
        name = "half_squares"

        def value(self, f, y):
            return 0.5 * super().value(f, y)

        def grad(self, f, y):
            return 0.5 * super().grad(f, y)

    half = HalfSquares()
    assert fused_loss(mse) == 0 and fused_loss(half) is None
    act = registry.create("activation", "relu")
    assert fused_codes([(4, 3), (1, 4)], act, half, np.float64, 10) is None


def test_limits_of_the_kernel(registry):
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    shapes = [(50, 50), (50, 50), (1, 50)]
    rows_at_limit = int(MAX_FLOPS / (6 * (2 * 2500 + 50))) + 1
    assert fused_codes(shapes, act, loss, np.float64, 100) is not None
    assert fused_codes(shapes, act, loss, np.float64, rows_at_limit) is None
    assert fused_codes(shapes, act, loss, np.float16, 100) is None
    assert fused_codes([(1, 5)], act, loss, np.float64, 100) is None  # one layer: NumPy path


@pytest.mark.skipif("mkl" not in LIBRARIES, reason="MKL is not installed (pip install -e '.[mkl]')")
def test_mkl_and_np_dot_agree_to_rounding_on_a_figure2_block():
    """MKL's products (CBLAS and JIT) and OpenBLAS's, through the whole kernel, on the Figure-2
    network at d = 38 (blocks of 107 rows, a partial last one)."""
    d, N = 38, 1000
    weights = chain((d, d, d), d, seed=11)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((N, d)), rng.standard_normal(N)
    a = evaluate(weights, X, y, CODES["relu"], [True] * 4, 107, "np.dot")
    for library in ("mkl", "mkl-jit"):
        b = evaluate(weights, X, y, CODES["relu"], [True] * 4, 107, library)
        assert b[0] == pytest.approx(a[0], rel=1e-13)
        for ga, gb in zip(a[1], b[1]):
            np.testing.assert_allclose(gb, ga, rtol=1e-11, atol=1e-14 * np.abs(ga).max())
        np.testing.assert_allclose(b[2], a[2], rtol=1e-12, atol=1e-14)


def test_kernel_blas_choice_is_validated(monkeypatch):
    from harness.engine import kernel_blas as kb

    monkeypatch.setenv(kb.ENV, "atlas")
    kb._reset_for_tests()
    try:
        with pytest.raises(ValueError, match="HARNESS_KERNEL_BLAS='atlas': allowed values are auto, openblas, mkl"):
            kb.kernel_blas()
        monkeypatch.setenv(kb.ENV, "openblas")
        kb._reset_for_tests()
        chosen = kb.kernel_blas()
        assert chosen.name == "openblas" and chosen.address(np.float64) == 0
    finally:
        monkeypatch.delenv(kb.ENV)
        kb._reset_for_tests()
