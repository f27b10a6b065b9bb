"""The BLAS library whose matrix products the compiled training kernel calls.

:mod:`harness.engine.chain_kernels` spends about four fifths of its time in small products
(blocks of about 100 rows times a d x d weight matrix). By default it calls them through
Numba's ``np.dot``, i.e. SciPy's OpenBLAS, whose small-matrix kernels reach about 50 GFLOP/s
per core on the development machine (AVX-512). With Intel's MKL installed (``pip install -e
".[mkl]"``, the ``mkl`` wheel) the kernel calls, for each product shape of a problem, a GEMM
that MKL compiles for that shape (``mkl_cblas_jit_create_dgemm``: 63-68 GFLOP/s on those
products; ``mkl_cblas_jit_create_sgemm`` for a float32 network), and MKL's ``cblas_dgemm`` /
``cblas_sgemm`` (sequential: the kernel's callers are the threads; about 58 GFLOP/s in float64)
where MKL declines to compile one (on processors other than Intel's it compiles none); the
matrix-vector products stay on ``np.dot``. The
kernel then takes about 18% less time (docs/engine.md has the measurements; ``harness bench
train --blocks 107`` repeats them side by side).

``HARNESS_KERNEL_BLAS`` chooses: ``auto`` (default: MKL when installed), ``openblas`` or
``mkl`` (an error when MKL cannot be loaded). Which library ran is recorded with every run
(:func:`harness.runner.envinfo.collect`, ``kernel_blas``). MKL and OpenBLAS agree to rounding, not
bit for bit; single and batched training always use the same products, so their rows stay
identical.

The kernel receives the libraries' addresses as arguments (compiled intrinsics call them), so
that its compiled code stays cached on disk across processes.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV", "JitGemm", "KernelBlas", "expected_name", "kernel_blas", "load_mkl", "mkl_library"]

ENV = "HARNESS_KERNEL_BLAS"
"""``auto`` (default), ``openblas`` or ``mkl``."""

_MKL_THREADING_SEQUENTIAL = 1  # MKL_Set_Threading_Layer's code for the sequential layer
_MKL_INTERFACE_LP64 = 0        # 32-bit integers, as the kernel passes them
_MKL_JIT_SUCCESS = 0           # mkl_jit_status_t: MKL_JIT_SUCCESS, MKL_NO_JIT, MKL_JIT_ERROR
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enums


@dataclass(frozen=True)
class KernelBlas:
    """``name`` (``"openblas"``: SciPy's, through ``np.dot``; ``"mkl"``), ``version`` and the
    addresses of ``cblas_dgemm`` and ``cblas_sgemm`` (0: ``np.dot``)."""

    name: str
    version: str | None
    dgemm: int = 0
    sgemm: int = 0

    def address(self, dtype) -> int:
        """The GEMM address the kernel takes for arrays of ``dtype`` (0: ``np.dot``)."""
        import numpy as np

        return self.dgemm if np.dtype(dtype) == np.dtype(np.float64) else self.sgemm

    def jit_gemm(self, m: int, n: int, k: int, trans_a: bool, dtype) -> "JitGemm | None":
        """A GEMM compiled by MKL for ``C (m x n) = op(A) B`` with ``op(A)`` (m x k), ``A``
        transposed when ``trans_a``, row-major contiguous operands (``mkl_cblas_jit_create_?gemm``);
        ``None`` without MKL or where MKL declines (it then says to use the standard GEMM)."""
        if self.name != "mkl" or _mkl_handle is None:
            return None
        return JitGemm.create(_mkl_handle, m, n, k, trans_a, dtype)


class JitGemm:
    """One MKL JIT GEMM: ``handle`` (the jitter) and ``function``, the address of
    ``void f(void *jitter, T *a, T *b, T *c)``; destroyed with the object."""

    def __init__(self, lib, handle: int, function: int) -> None:
        self._lib, self.handle, self.function = lib, int(handle), int(function)

    @classmethod
    def create(cls, lib, m: int, n: int, k: int, trans_a: bool, dtype) -> "JitGemm | None":
        import numpy as np

        double = np.dtype(dtype) == np.dtype(np.float64)
        real = ctypes.c_double if double else ctypes.c_float
        create = lib.mkl_cblas_jit_create_dgemm if double else lib.mkl_cblas_jit_create_sgemm
        get = lib.mkl_jit_get_dgemm_ptr if double else lib.mkl_jit_get_sgemm_ptr
        i = ctypes.c_int
        create.argtypes = [ctypes.POINTER(ctypes.c_void_p), i, i, i, i, i, i, real, i, i, real, i]
        create.restype = i
        get.argtypes = [ctypes.c_void_p]
        get.restype = ctypes.c_void_p
        lib.mkl_jit_destroy.argtypes = [ctypes.c_void_p]
        lib.mkl_jit_destroy.restype = i
        jitter = ctypes.c_void_p()
        lda = m if trans_a else k
        with _lock:  # evaluators on parallel threads create theirs at the same time
            status = create(ctypes.byref(jitter), _ROW_MAJOR, _TRANS if trans_a else _NO_TRANS,
                            _NO_TRANS, int(m), int(n), int(k), 1.0, int(lda), int(n), 0.0, int(n))
        if status != _MKL_JIT_SUCCESS or not jitter.value:
            if jitter.value:
                lib.mkl_jit_destroy(jitter)
            return None  # MKL_NO_JIT (use the standard GEMM) or MKL_JIT_ERROR
        function = get(jitter)
        if not function:
            lib.mkl_jit_destroy(jitter)
            return None
        return cls(lib, jitter.value, function)

    def __del__(self) -> None:
        try:
            if self.handle:
                self._lib.mkl_jit_destroy(ctypes.c_void_p(self.handle))
                self.handle = 0
        except Exception:
            pass


_lock = threading.Lock()
_chosen: KernelBlas | None = None
_mkl_handle = None  # keeps the loaded library alive


def mkl_library() -> Path | None:
    """Path of ``libmkl_rt`` from the installed ``mkl`` distribution, or ``None``."""
    from importlib import metadata

    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return None
    dist = metadata.distribution("mkl")
    for f in files:
        name = Path(str(f)).name
        if name.startswith("libmkl_rt.so") or (name.startswith("mkl_rt") and name.endswith(".dll")):
            path = Path(str(dist.locate_file(f))).resolve()
            if path.is_file():
                return path
    return None


def load_mkl() -> KernelBlas:
    """Load MKL (sequential, LP64) and return its GEMM addresses; raises where it cannot."""
    global _mkl_handle
    path = mkl_library()
    if path is None:
        raise RuntimeError("MKL is not installed (pip install -e \".[mkl]\")")
    lib = ctypes.CDLL(str(path))
    lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
    lib.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
    version = None
    try:
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        version = buf.value.decode(errors="replace").strip() or None
    except Exception:  # the version is for the record only
        pass
    _mkl_handle = lib
    return KernelBlas("mkl", version, ctypes.cast(lib.cblas_dgemm, ctypes.c_void_p).value or 0,
                      ctypes.cast(lib.cblas_sgemm, ctypes.c_void_p).value or 0)


def _openblas() -> KernelBlas:
    version = None
    try:
        import scipy.linalg  # noqa: F401  (the library Numba's np.dot calls)
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if "scipy_openblas" in info.get("filepath", "") and "64_" not in info.get("filepath", ""):
                version = info.get("version")
    except Exception:
        pass
    return KernelBlas("openblas", version)


def _choice() -> str:
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "openblas", "mkl"):
        raise ValueError(f"{ENV}={choice!r}: allowed values are auto, openblas, mkl")
    return choice


def expected_name() -> str:
    """The library :func:`kernel_blas` will choose (``"openblas"`` or ``"mkl"``), decided from
    :data:`ENV` and the installed packages without loading anything (for cache keys)."""
    choice = _choice()
    if choice == "openblas" or (choice == "auto" and mkl_library() is None):
        return "openblas"
    return "mkl"


def kernel_blas() -> KernelBlas:
    """The library the kernel uses in this process (chosen once, by :data:`ENV`)."""
    global _chosen
    with _lock:
        if _chosen is None:
            choice = _choice()
            if expected_name() == "openblas":
                _chosen = _openblas()
            else:
                try:
                    _chosen = load_mkl()
                except Exception as exc:
                    if choice == "mkl":
                        raise RuntimeError(f"{ENV}=mkl: MKL could not be loaded: {exc}") from exc
                    _chosen = _openblas()
        return _chosen


def _reset_for_tests() -> None:
    global _chosen
    with _lock:
        _chosen = None
