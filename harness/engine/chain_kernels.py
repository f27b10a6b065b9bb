"""Loss and gradients of bias-free chains as one Numba kernel, over a stack of networks.

For a chain ``f_0 = x, g_l = W_l f_{l-1}, f_l = phi(g_l), f_L = W_L f_{L-1}`` with a fused
activation (:data:`harness.engine.pointwise.KERNELS`) and the mean squared error,
:func:`mse_loss_and_grads` computes, for each member of a stack, the loss and the gradient in
every trainable layer in one compiled call, in blocks of rows:

- per block, the forward pass (the products ``G_l = F_{l-1} W_l^T`` by BLAS ``dgemm``/``sgemm``
  called from Numba: through ``np.dot``, i.e. SciPy's OpenBLAS, or, with MKL installed, GEMMs
  that MKL compiles for each product shape, :mod:`harness.engine.kernel_blas`; the activation
  and its derivative in one pass), the outputs, the loss terms and the output signal
  ``2 (f - y) / N``, then the
  backward pass (``D_{L-1} = s w_L^T * phi'(G_{L-1})``, ``D_{l-1} = (D_l W_l) * phi'(G_{l-1})``)
  and the block's share of each gradient ``D_l^T F_{l-1}``, added to the previous blocks';
- the block is sized so that its activations, derivatives and signals stay in the core's cache
  (:func:`block_rows`): a member's data is read once per evaluation instead of being written to
  memory by the forward pass and read back by the backward pass.

The kernel runs without the GIL and without a Python call per layer or block, so Python threads
over disjoint members run in parallel (:mod:`harness.engine.batched_training`). The single-network
engine (:class:`harness.engine.gradients.GradientEngine`) calls the same kernel on a stack of
one: both paths make the same BLAS calls on the same numbers in the same order, so they agree to
the last bit when BLAS runs with the same number of threads.

The loss is fused only when the Loss component declares ``jit_code = "mse"`` and agrees with
the kernel's formulas on probe values (:func:`fused_loss`): ``value = sum (f - y)^2 / N`` (summed
in row order) and ``grad = (f - y) (2 / N)``. Other losses use the engines' NumPy path.

The module imports Numba at import; the engines import it on first use. Its kernels are cached
on disk like every kernel (:mod:`harness.engine.jit`) and call the activation kernels of
:mod:`harness.engine.pointwise`, which Numba compiles into them: Numba's cache checks only this
file's time stamp, so after editing those activation kernels, touch this file (or remove its
``__pycache__``) to recompile. ``tests/test_chain_kernels.py`` checks every activation through
this kernel against autograd.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .evaluation_cost import KERNEL_MAX_FLOPS
from .kernel_blas import kernel_blas
from .pointwise import KERNELS, fused_kernel

__all__ = ["ACTIVATION_CODES", "LOSS_CODES", "BLOCK_BYTES", "MAX_FLOPS", "block_rows", "fused_loss",
           "jit_slots", "jit_table",
           "fused_codes", "mse_loss_and_grads", "BlockBuffers", "FusedEvaluator", "EvaluatorCache"]

ACTIVATION_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "quadratic": 3, "identity": 4}
"""The integer the kernel takes for each fused activation (``Activation.jit_code``)."""

LOSS_CODES = {"mse": 0}
"""Losses the kernel computes itself (``Loss.jit_code``)."""

BLOCK_BYTES = 2 ** 18
"""Bytes of the per-block activations, derivatives and signals (a quarter of a 1 MiB L2)."""

_sigmoid = KERNELS["sigmoid"].dispatcher()
_tanh = KERNELS["tanh"].dispatcher()
_quadratic = KERNELS["quadratic"].dispatcher()
_identity = KERNELS["identity"].dispatcher()


@numba.njit(nogil=True, cache=True)
def _relu_flat(g, p):
    """ReLU and its derivative on flat contiguous buffers (a loop LLVM vectorises)."""
    for i in range(g.size):
        x = g[i]
        positive = x > 0.0
        g[i] = x if positive else 0.0
        p[i] = 1.0 if positive else 0.0


@numba.njit(nogil=True, cache=True)
def _times(a, b):
    """``a *= b`` on flat contiguous buffers."""
    for i in range(a.size):
        a[i] *= b[i]


@numba.njit(nogil=True, cache=True)
def _activate(code, g, p, cols):
    """``g <- phi(g)``, ``p <- phi'(g)`` on the flat buffers of a block of ``cols`` columns: ReLU
    as a flat loop, the other activations by their :mod:`~harness.engine.pointwise` kernels."""
    if code == 2:
        _relu_flat(g, p)
        return
    G = g.reshape((g.size // cols, cols))
    P = p.reshape(G.shape)
    if code == 0:
        _sigmoid(G, P)
    elif code == 1:
        _tanh(G, P)
    elif code == 3:
        _quadratic(G, P)
    else:
        _identity(G, P)


@intrinsic
def _cblas_gemm(typingctx, address, trans_a, m, n, k, A, lda, B, ldb, C, ldc):
    """``cblas_?gemm(RowMajor, trans_a, NoTrans, m, n, k, 1, A, lda, B, ldb, 0, C, ldc)`` at the
    run-time ``address`` (:mod:`harness.engine.kernel_blas`; an argument rather than a constant,
    so that the compiled kernel can be cached), double or single precision after ``A``."""
    if not (isinstance(A, types.Array) and A.dtype in (types.float64, types.float32)):
        return None
    sig = types.void(address, trans_a, m, n, k, A, lda, B, ldb, C, ldc)

    def codegen(context, builder, signature, args):
        real = ir.DoubleType() if A.dtype == types.float64 else ir.FloatType()
        i32, ptr = ir.IntType(32), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [real, ptr, i32, ptr, i32, real, ptr, i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())

        def int32(v):
            return builder.trunc(v, i32) if v.type.width > 32 else v

        def data(ty, v):
            return builder.bitcast(context.make_array(ty)(context, builder, v).data, ptr)

        builder.call(fn, [ir.Constant(i32, 101), int32(args[1]), ir.Constant(i32, 111),
                          int32(args[2]), int32(args[3]), int32(args[4]), ir.Constant(real, 1.0),
                          data(A, args[5]), int32(args[6]), data(B, args[7]), int32(args[8]),
                          ir.Constant(real, 0.0), data(C, args[9]), int32(args[10])])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _jit_gemm(typingctx, function, jitter, A, B, C):
    """``function(jitter, A, B, C)``: a GEMM compiled by MKL for these shapes
    (:class:`harness.engine.kernel_blas.JitGemm`), at run-time addresses."""
    if not (isinstance(A, types.Array) and A.dtype in (types.float64, types.float32)):
        return None
    sig = types.void(function, jitter, A, B, C)

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr, ptr])
        fn = builder.inttoptr(args[0], fnty.as_pointer())

        def data(ty, v):
            return builder.bitcast(context.make_array(ty)(context, builder, v).data, ptr)

        builder.call(fn, [builder.inttoptr(args[1], ptr), data(A, args[2]), data(B, args[3]),
                          data(C, args[4])])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def _mm(gemm, jit, A, B, C):
    """``C = A @ B`` (C-contiguous matrices): by the JIT GEMM ``jit`` (``(jitter, function)``)
    when it has a function, else ``np.dot`` when ``gemm`` is 0, else the CBLAS GEMM at that
    address."""
    if jit[1] != 0:
        _jit_gemm(jit[1], jit[0], A, B, C)
    elif gemm == 0:
        np.dot(A, B, C)
    else:
        _cblas_gemm(gemm, 111, A.shape[0], B.shape[1], A.shape[1], A, A.shape[1], B, B.shape[1],
                    C, C.shape[1])


@numba.njit(nogil=True, cache=True)
def _tm(gemm, jit, A, B, C):
    """``C = A^T @ B`` (C-contiguous matrices), as :func:`_mm`."""
    if jit[1] != 0:
        _jit_gemm(jit[1], jit[0], A, B, C)
    elif gemm == 0:
        np.dot(A.T, B, C)
    else:
        _cblas_gemm(gemm, 112, A.shape[1], B.shape[1], A.shape[0], A, A.shape[1], B, B.shape[1],
                    C, C.shape[1])


def jit_slots(L: int) -> int:
    """Products of one block of an L-layer chain in the kernel's JIT table: the forward product
    of each hidden layer (slot l), the gradient of each layer below the output (slot L-1+l) and
    the back-propagation product through each (slot 2(L-1)+l)."""
    return 3 * (L - 1)


def jit_table(shapes, block: int, rows: int, dtype, blas=None) -> tuple[np.ndarray, list]:
    """The kernel's JIT GEMMs for ``rows`` samples in blocks of ``block``: an int64 array
    ``(2, jit_slots(L), 2)`` of ``(jitter, function)`` for full blocks (row 0) and the last,
    partial one (row 1), zeros where MKL's JIT is not available (the kernel then calls
    ``gemm``), and the :class:`~harness.engine.kernel_blas.JitGemm` objects that own them."""
    blas = kernel_blas() if blas is None else blas
    shapes = [(int(a), int(b)) for a, b in shapes]
    L = len(shapes)
    table = np.zeros((2, jit_slots(L), 2), dtype=np.int64)
    owners: list = []
    sizes = [min(block, rows), rows % block if rows > block and rows % block else 0]
    for i, c in enumerate(sizes):
        if c == 0 or blas.name != "mkl":
            continue
        for l in range(L - 1):
            n_out, n_in = shapes[l]
            for slot, (m, n, k, trans) in ((l, (c, n_out, n_in, False)),                 # F W^T
                                           (L - 1 + l, (n_out, n_in, c, True)),           # D^T F
                                           (2 * (L - 1) + l, (c, n_in, n_out, False))):   # D W
                jit = blas.jit_gemm(m, n, k, trans, dtype)
                if jit is not None:
                    table[i, slot] = (jit.handle, jit.function)
                    owners.append(jit)
    return table, owners


@numba.njit(nogil=True, cache=True)
def _rows(M, a, b):
    """Rows ``a:b`` of the C-contiguous matrix ``M`` as a C-contiguous view (a plain slice is
    typed non-contiguous, and Numba would copy it before each BLAS call)."""
    cols = M.shape[1]
    return M.ravel()[a * cols:b * cols].reshape((b - a, cols))


def block_rows(shapes, dtype) -> int:
    """Rows per block for layer ``shapes`` ``[(n_1, d), ..., (1, n_{L-1})]``: the block's
    activations and derivatives of every hidden layer plus two signal buffers fit in
    :data:`BLOCK_BYTES` (at least 16 rows)."""
    hidden = [int(n) for n, _ in shapes[:-1]]
    per_row = (2 * sum(hidden) + 2 * max(hidden + [1]) + 2) * np.dtype(dtype).itemsize
    return max(16, BLOCK_BYTES // per_row)


_PROBE_F = np.linspace(-3.0, 3.0, 13)
_PROBE_Y = np.cos(np.arange(13.0))
_loss_checked: dict[tuple, bool] = {}


def fused_loss(loss) -> int | None:
    """The kernel's code for ``loss`` (a Loss component), or ``None``: when its ``jit_code`` is
    missing or unknown, or its ``value``/``grad`` disagree with the kernel's formulas on probe
    values (relative 1e-12); checked once per loss class and configuration."""
    code = getattr(loss, "jit_code", None)
    if not isinstance(code, str) or code not in LOSS_CODES:
        return None
    key = (type(loss), code, repr(getattr(loss, "config", None)))
    ok = _loss_checked.get(key)
    if ok is None:
        e = _PROBE_F - _PROBE_Y
        try:
            value = float(loss.value(_PROBE_F, _PROBE_Y))
            grad = np.asarray(loss.grad(_PROBE_F, _PROBE_Y), dtype=np.float64)
            ok = (bool(np.isclose(value, float(e @ e) / e.size, rtol=1e-12))
                  and bool(np.allclose(grad, e * (2.0 / e.size), rtol=1e-12, atol=0.0)))
        except Exception:
            ok = False
        _loss_checked[key] = ok
    return LOSS_CODES[code] if ok else None


MAX_FLOPS = KERNEL_MAX_FLOPS
"""The kernel serves evaluations of fewer flops than this (``6 rows P``): see
:data:`harness.engine.evaluation_cost.KERNEL_MAX_FLOPS`, where it is defined (a module without
Numba, for the cost estimates)."""


def fused_codes(shapes, activation, loss, dtype, rows: int) -> tuple[int, int] | None:
    """``(activation code, loss code)`` when the kernel evaluates this network (at least two
    layers, float32 or float64, under :data:`MAX_FLOPS` on ``rows`` samples) with a fused
    activation (:func:`harness.engine.pointwise.fused_kernel`) and loss (:func:`fused_loss`);
    else ``None``."""
    shapes = [tuple(int(v) for v in s) for s in shapes]
    if len(shapes) < 2 or any(len(s) != 2 for s in shapes):
        return None
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        return None
    if 6.0 * rows * sum(a * b for a, b in shapes) >= MAX_FLOPS or fused_kernel(activation) is None:
        return None
    lc = fused_loss(loss)
    if lc is None:
        return None
    return ACTIVATION_CODES[activation.jit_code], lc


class BlockBuffers:
    """Scratch of one kernel caller (one thread): per hidden layer the block's activations and
    derivatives and the layer's transposed weights, two signal buffers, the output signal and one
    gradient accumulator per layer."""

    def __init__(self, shapes, dtype, rows: int | None = None) -> None:
        dtype = np.dtype(dtype)
        self.block = block_rows(shapes, dtype) if rows is None else int(rows)
        hidden = [int(n) for n, _ in shapes[:-1]]
        b = self.block
        self.F = tuple(np.empty(b * n, dtype=dtype) for n in hidden)
        self.P = tuple(np.empty(b * n, dtype=dtype) for n in hidden)
        self.Da = np.empty(b * max(hidden), dtype=dtype)
        self.Db = np.empty(b * max(hidden), dtype=dtype)
        self.s = np.empty(b, dtype=dtype)
        self.T = tuple(np.empty((int(a), int(c)), dtype=dtype) for a, c in shapes)
        self.U = tuple(np.empty((int(c), int(a)), dtype=dtype) for a, c in shapes[:-1])


@numba.njit(nogil=True, cache=True)
def mse_loss_and_grads(W, X, y, grads, trainable, lowest, code, F, P, Da, Db, s, T, U, out, values, k,
                       gemm, jits):
    """Mean squared error and gradients of members ``0..k-1`` of a stack.

    ``W``: tuple of the L weight stacks ``(R, n_l, n_{l-1})`` (L >= 2); ``X`` ``(R, rows, d)``,
    ``y`` ``(R, rows)``; ``grads``: tuple of L gradient stacks shaped like ``W`` (written for
    trainable layers only); ``trainable`` one flag per layer, ``lowest`` the lowest trainable
    layer (0-based); ``code`` the activation's code; ``F``, ``P``, ``Da``, ``Db``, ``s``, ``T``,
    ``U`` the scratch of :class:`BlockBuffers` (its block size sets the rows per block); ``out``
    ``(R, rows)`` receives the outputs and ``values`` ``(R,)`` the losses; ``gemm`` the address of
    the CBLAS GEMM for the matrix products, 0 for ``np.dot`` (:mod:`harness.engine.kernel_blas`),
    and ``jits`` the JIT GEMMs of :func:`jit_table` for these rows (zeros: none).
    """
    L = len(W)
    rows = X.shape[1]
    block = s.shape[0]
    scale = 2.0 / rows
    for r in range(k):
        # the hidden layers' W_l^T, contiguous: the forward products are then (rows x fan_in)
        # (fan_in x fan_out) without transposition, the form BLAS's small-matrix kernels take
        for l in range(L - 1):
            Wl = W[l][r]
            Ul = U[l]
            for i in range(Wl.shape[0]):
                for j in range(Wl.shape[1]):
                    Ul[j, i] = Wl[i, j]
        total = 0.0
        first = True
        for a in range(0, rows, block):
            b = min(rows, a + block)
            c = b - a
            J = jits[0] if c == block or rows <= block else jits[1]
            # forward
            n = W[0].shape[1]
            G = F[0][:c * n].reshape((c, n))
            _mm(gemm, J[0], _rows(X[r], a, b), U[0], G)
            _activate(code, F[0][:c * n], P[0][:c * n], n)
            for l in range(1, L - 1):
                m = W[l].shape[1]
                G = F[l][:c * m].reshape((c, m))
                _mm(gemm, J[l], F[l - 1][:c * n].reshape((c, n)), U[l], G)
                _activate(code, F[l][:c * m], P[l][:c * m], m)
                n = m
            o = out[r, a:b]
            np.dot(F[L - 2][:c * n].reshape((c, n)), W[L - 1][r][0], o)
            sig = s[:c]
            for i in range(c):
                e = o[i] - y[r, a + i]
                total += e * e
                sig[i] = e * scale
            # backward: the block's share of every gradient
            if trainable[L - 1]:
                if first:
                    np.dot(sig, F[L - 2][:c * n].reshape((c, n)), grads[L - 1][r][0])
                else:
                    np.dot(sig, F[L - 2][:c * n].reshape((c, n)), T[L - 1][0])
                    g = grads[L - 1][r][0]
                    t = T[L - 1][0]
                    for j in range(n):
                        g[j] += t[j]
            if lowest < L - 1:
                D = Da[:c * n].reshape((c, n))
                w = W[L - 1][r][0]
                Pm = P[L - 2][:c * n].reshape((c, n))
                for i in range(c):
                    si = sig[i]
                    for j in range(n):
                        D[i, j] = si * w[j] * Pm[i, j]
                in_a = True
                for l in range(L - 2, lowest - 1, -1):  # D: the signal of layer l (0-based), (c, n_l+1)
                    fan_in = W[l].shape[2]
                    if trainable[l]:
                        if l == 0:
                            below = _rows(X[r], a, b)
                        else:
                            below = F[l - 1][:c * fan_in].reshape((c, fan_in))
                        if first:
                            _tm(gemm, J[L - 1 + l], D, below, grads[l][r])
                        else:
                            _tm(gemm, J[L - 1 + l], D, below, T[l])
                            g2 = grads[l][r]
                            t2 = T[l]
                            for i in range(g2.shape[0]):
                                for j in range(g2.shape[1]):
                                    g2[i, j] += t2[i, j]
                    if l > lowest:
                        if in_a:
                            Dn = Db[:c * fan_in].reshape((c, fan_in))
                        else:
                            Dn = Da[:c * fan_in].reshape((c, fan_in))
                        _mm(gemm, J[2 * (L - 1) + l], D, W[l][r], Dn)
                        _times(Dn.ravel(), P[l - 1][:c * fan_in])
                        D = Dn
                        in_a = not in_a
            first = False
        values[r] = total / rows


class FusedEvaluator:
    """:func:`mse_loss_and_grads` for one layer shape list, activation, trainable set and dtype,
    with its scratch: one per caller thread. ``evaluate`` returns ``(values (k,), out (k, rows))``
    (buffers of the evaluator, overwritten by the next call) and writes ``grads``."""

    def __init__(self, shapes, activation_code: int, trainable, dtype) -> None:
        self.shapes = [(int(a), int(b)) for a, b in shapes]
        self.code = int(activation_code)
        self.trainable = np.array([bool(t) for t in trainable], dtype=np.bool_)
        idx = np.flatnonzero(self.trainable)
        self.lowest = int(idx[0]) if idx.size else len(self.shapes)
        self.dtype = np.dtype(dtype)
        self.buffers = BlockBuffers(self.shapes, self.dtype)
        self.blas = kernel_blas()
        self.gemm = self.blas.address(self.dtype)  # 0: np.dot
        self._frozen = np.empty((1, 1, 1), dtype=self.dtype)
        self._outputs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._jits: dict[int, tuple[np.ndarray, list]] = {}  # rows -> jit_table

    def evaluate(self, W, X, y, grads, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``W``: the weight stacks ``(R, n_l, n_{l-1})``; ``X`` ``(R', rows, d)``, ``y``
        ``(R', rows)`` (copied when not C-contiguous, e.g. a mini-batch's slice of a stack);
        ``grads``: per layer a stack shaped like ``W`` or ``None`` (frozen)."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=self.dtype)
        rows = int(X.shape[1])
        key = (int(k), rows)
        bufs = self._outputs.get(key)
        if bufs is None:
            bufs = (np.empty((k, rows), dtype=self.dtype), np.empty(k, dtype=self.dtype))
            self._outputs[key] = bufs
        out, values = bufs
        b = self.buffers
        jits = self._jits.get(rows)
        if jits is None:
            jits = self._jits[rows] = jit_table(self.shapes, b.block, rows, self.dtype, self.blas)
        mse_loss_and_grads(tuple(W), X, y, tuple(self._frozen if g is None else g for g in grads),
                           self.trainable, self.lowest, self.code, b.F, b.P, b.Da, b.Db, b.s, b.T,
                           b.U, out, values, int(k), self.gemm, jits[0])
        return values, out


class EvaluatorCache:
    """The :class:`FusedEvaluator` an engine uses for a loss component and a row count (one per
    engine: the scratch is the engine's), or ``None`` where :func:`fused_codes` refuses."""

    def __init__(self, shapes, activation, trainable, dtype) -> None:
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.activation, self.trainable, self.dtype = activation, list(trainable), np.dtype(dtype)
        self._loss: object = None
        self._evaluator: FusedEvaluator | None = None
        self._by_rows: dict[int, FusedEvaluator | None] = {}

    def get(self, loss, rows: int) -> FusedEvaluator | None:
        """The evaluator for ``loss`` on ``rows`` samples (decided once per loss object and row
        count: the decision costs more than a small network's evaluation)."""
        if loss is not self._loss:
            self._loss, self._evaluator, self._by_rows = loss, None, {}
        if rows not in self._by_rows:
            codes = fused_codes(self.shapes, self.activation, loss, self.dtype, rows)
            if codes is not None and self._evaluator is None:
                self._evaluator = FusedEvaluator(self.shapes, codes[0], self.trainable, self.dtype)
            self._by_rows[rows] = self._evaluator if codes is not None else None
        return self._by_rows[rows]
