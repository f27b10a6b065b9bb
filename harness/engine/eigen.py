"""Extreme eigenvalues of a symmetric positive semi-definite kernel matrix K (N, N).

Solvers (the ``solver`` argument of :func:`extreme_eigenvalues`):

- ``"eigvalsh"``: the reference, :func:`scipy.linalg.eigvalsh` (LAPACK dsyevr: reduction to
  tridiagonal form, then all eigenvalues), O(4/3 N^3) flops of which half are matrix-vector
  products.
- ``"tridiagonal"``: the same reduction to tridiagonal form (LAPACK dsytrd, blocked), then
  bisection (dstebz) for the two extreme eigenvalues only: what dsyevr does for a subset of
  the spectrum, without SciPy's wrapper around it.
- ``"cholesky_krylov"``: lambda_min through Cholesky factorisations (LAPACK potrf, N^3/3
  flops, the only O(N^3) steps), lambda_max by Lanczos on K itself (one vector per step: a
  matrix-vector product is ~3x cheaper than a product with 2 vectors; the top eigenvalue of an
  NTK is well separated, ~4 steps). The bottom of an NTK's spectrum is
  clustered (relative spacing ~1%: on a Figure-1 kernel at N = 2048 the lowest eigenvalues are
  20.66, 20.94, 21.52, ...), which makes plain Krylov iterations on K^{-1} slow. For float64 K
  (default), shift-and-invert with a certified shift:

  1. pilot, float32: Cholesky of K (half the time of float64's) and block
     Lanczos on K^{-1} (``block`` = 4 vectors) until lambda_min is estimated to
     :data:`PILOT_TOL` (~10 steps; the estimate is an upper bound of lambda_min up to float32
     round-off, which perturbs these eigenvalues by ~5e-6 relative);
  2. shift sigma = estimate * (1 - 3 * estimated error - 1e-3); the float32 Cholesky of
     K - sigma I exists iff sigma is below lambda_min (up to float32 round-off): a certificate.
     When it fails the distance to the estimate grows x2.5 (at most 3 tries, then sigma = 0);
  3. float64 block Davidson on K (:func:`davidson_bottom`) from the pilot's Ritz vectors,
     preconditioned by that factor: the shifted spectrum's top 1/(l1 - sigma) is well separated
     from 1/(l2 - sigma), so it converges in ~4 steps (one K @ V and one float32 solve each);
     the Rayleigh-Ritz and residuals use K in float64, so the float32 factors limit the speed,
     not the accuracy (agreement with dsyevr ~1e-11).

  The measurements against dsyevr's lambda_min alone: ``harness bench ntk``; the alternatives
  tried: docs/engine.md. The error estimate of the Davidson iteration uses
  ``r^T (K - sigma I)^{-1} r`` (see :func:`davidson_bottom`), much sharper than
  ``||r||^2 / gap``, which saves a step.

  Otherwise (float32 K, ``shift_invert=False``, or K not positive definite in float32): one
  float64 Cholesky K = C C^T and block Lanczos on K^{-1} = C^{-T} C^{-1} (``block`` = 8 vectors),
  lambda_min(K) = 1 / lambda_max(K^{-1}): ~20-30 steps.

  Every solve with a factor (pilot, Davidson, this path) is two triangular sweeps over the
  factor by :mod:`.thin_solves`, which reads it at about twice LAPACK ``potrs``'s rate.
- ``"auto"`` (default): chosen by N (:func:`auto_solver`, in :mod:`.solver_choice`): ``tridiagonal``
  below :data:`AUTO_MIN_N`, where a dense reduction of a matrix that fits in cache costs less than
  the iterations' fixed costs, ``cholesky_krylov`` from there on, falling back to
  ``tridiagonal`` when the Cholesky factorisation fails (K not numerically positive definite)
  or the iteration does not converge (the row's ``fallback`` says why).

The certificate of a ``cholesky_krylov`` result (``extra``): ``sigma``, a shift whose float32
Cholesky factorisation of ``K - sigma I`` succeeded, so ``sigma <= lambda_min`` (up to float32
round-off of K, ~eps32 * lambda_max); ``lambda_min`` itself is a Ritz value, an upper bound of
the true one, within ``estimated_error`` (relative) of it.

Every result records the solver actually used, lambda_min, lambda_max, the trace, the round-off
floor ``eps * N * lambda_max`` (eps of K's dtype) and whether lambda_min is below it (then the
computed lambda_min is not distinguishable from zero: K is numerically singular).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from . import solver_choice
from .krylov import block_krylov_top, davidson_bottom
from .solver_choice import AUTO_MIN_N, auto_solver  # noqa: F401  (the choice by N, without SciPy)
from .thin_products import symmetric_product
from .thin_solves import cholesky_solve_block
from .threads import blas_threads, engine_threads

__all__ = ["SpectrumResult", "extreme_eigenvalues", "SOLVERS", "auto_solver", "tridiagonal_extremes",
           "block_krylov_top", "davidson_bottom", "NotPositiveDefinite"]

SOLVERS = ("auto", "eigvalsh", "tridiagonal", "cholesky_krylov")
CHOLESKY_ONE_THREAD_BELOW = 800
"""Below this N the Cholesky factorisations of ``cholesky_krylov`` run on one BLAS thread: as
fast as two on a quiet machine, and on a busy one two threads wait for each other."""
EIGVALSH_ONE_THREAD_BELOW = 900
"""Below this N, :func:`eigvalsh_extremes` runs dsyevr on one BLAS thread. Its reduction to
tridiagonal form is mostly matrix-vector products, too small to share between threads
(docs/engine.md)."""


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The Cholesky factorisation of K failed: K is not numerically positive definite."""


@dataclass
class SpectrumResult:
    """Extreme eigenvalues of one kernel matrix and how they were obtained.

    ``solver``: the solver that produced the numbers; ``fallback``: why the requested solver
    was replaced (``None`` if it was not); ``floor``: ``eps * N * lambda_max``;
    ``below_floor``: ``lambda_min < floor``; ``seconds``: wall time of the solve;
    ``steps``: block Krylov steps (iterative solvers), ``estimated_error``: the iteration's
    estimate of the relative error of lambda_min.
    """

    solver: str
    lambda_min: float
    lambda_max: float
    trace: float
    floor: float
    below_floor: bool
    seconds: float
    N: int
    dtype: str
    steps: int | None = None
    estimated_error: float | None = None
    fallback: str | None = None
    extra: dict = field(default_factory=dict)

    METRICS = ("solver", "lambda_min", "lambda_max", "trace", "floor", "below_floor", "steps", "fallback",
               "condition")
    """The names :meth:`metrics` gives (each with its suffix), besides ``solver_seconds``."""

    def metrics(self, suffix: str = "") -> dict:
        """Flat scalar metrics ``lambda_min{suffix}``, ... for a result row."""
        keys = ("solver", "lambda_min", "lambda_max", "trace", "floor", "below_floor", "seconds",
                "steps", "fallback")
        d = asdict(self)
        out = {f"{k if k != 'seconds' else 'solver_seconds'}{suffix}": d[k] for k in keys}
        # None (not inf) when lambda_min <= 0: a singular kernel is a finding, not a divergence
        out[f"condition{suffix}"] = (self.lambda_max / self.lambda_min
                                     if self.lambda_min > 0 else None)
        return out


def _result(solver, lmin, lmax, K, seconds, **kw) -> SpectrumResult:
    N = K.shape[0]
    eps = float(np.finfo(K.dtype).eps)
    floor = eps * N * abs(float(lmax))
    return SpectrumResult(solver=solver, lambda_min=float(lmin), lambda_max=float(lmax),
                          trace=float(np.trace(K, dtype=np.float64)), floor=floor,
                          below_floor=bool(lmin < floor), seconds=seconds, N=N,
                          dtype=str(K.dtype), **kw)


def _check_matrix(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"K must be a non-empty square matrix, got shape {K.shape}")
    if K.dtype not in (np.float32, np.float64):
        K = K.astype(np.float64)
    if not np.all(np.isfinite(K)):
        raise ValueError("K has non-finite entries")
    return K


def eigvalsh_extremes(K: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Reference: every eigenvalue of K (ascending) by LAPACK dsyevr; (min, max, all). On one
    BLAS thread below N = :data:`EIGVALSH_ONE_THREAD_BELOW`."""
    if K.shape[0] < EIGVALSH_ONE_THREAD_BELOW:
        with blas_threads(1):
            w = scipy.linalg.eigvalsh(K, driver="evr", check_finite=False)
    else:
        w = scipy.linalg.eigvalsh(K, driver="evr", check_finite=False)
    return float(w[0]), float(w[-1]), w


def _cholesky(K: np.ndarray, overwrite: bool = False) -> np.ndarray:
    potrf = lapack.get_lapack_funcs("potrf", (K,))
    # K is symmetric: its C-ordered buffer read in Fortran order is K itself (no copy needed
    # to hand it to LAPACK); potrf copies unless ``overwrite`` (then K's buffer becomes the factor).
    C, info = potrf(K.T, lower=1, clean=0, overwrite_a=int(overwrite))
    if info > 0:
        raise NotPositiveDefinite(f"Cholesky failed at column {info} of {K.shape[0]}")
    if info < 0:
        raise ValueError(f"potrf: illegal argument {-info}")
    return C


def tridiagonal_extremes(K: np.ndarray) -> tuple[float, float]:
    """``(lambda_min, lambda_max)`` of the symmetric ``K``: LAPACK's blocked reduction to
    tridiagonal form T (sytrd, 4/3 N^3 flops, with the process's BLAS threads) and bisection
    on T (stebz, O(N) per step) for its first and last eigenvalues, each to LAPACK's default
    absolute tolerance (about eps * ||T||)."""
    N = K.shape[0]
    sytrd, stebz = lapack.get_lapack_funcs(("sytrd", "stebz"), (K,))
    # K symmetric: its C-ordered buffer read in Fortran order is K itself
    _, d, e, _, info = sytrd(K.T, lower=1, lwork=64 * N)
    if info != 0:
        raise np.linalg.LinAlgError(f"sytrd failed: info = {info}")
    ends = []
    for index in (1, N):
        m, w, _, _, info = stebz(d, e, 2, 0.0, 0.0, index, index, 0.0, "E")
        if info != 0 or m != 1:
            raise np.linalg.LinAlgError(f"stebz failed for eigenvalue {index}: info = {info}")
        ends.append(float(w[0]))
    return ends[0], ends[1]


def _cholesky_solver(C: np.ndarray, dtype=None):
    """``V -> (C C^T)^{-1} V`` for the Fortran-ordered lower factor ``C`` of :func:`_cholesky`,
    in C's precision, returned as ``dtype``: two triangular sweeps over ``C.T`` (the upper factor
    with contiguous rows) by :func:`harness.engine.thin_solves.cholesky_solve_block`, about
    twice as fast as LAPACK ``potrs`` on the thin blocks of the iterations."""
    U = C.T

    def solve(V):
        X = cholesky_solve_block(U, V)
        return X if dtype is None else X.astype(dtype)

    return solve


def _float32_copy(K: np.ndarray) -> np.ndarray:
    """A float32 copy of ``K`` (always a new array: the shifted factorisation overwrites it),
    C-ordered; from N = :data:`CHOLESKY_ONE_THREAD_BELOW` on, the two
    halves of the rows converted on two threads when the engine has them (NumPy's cast
    releases the GIL; a memory-bound pass that one core does not saturate)."""
    N = K.shape[0]
    if N < CHOLESKY_ONE_THREAD_BELOW or engine_threads() < 2:
        return np.array(K, dtype=np.float32, order="C")
    out = np.empty(K.shape, dtype=np.float32)
    half = N // 2
    other = threading.Thread(target=np.copyto, args=(out[half:], K[half:]),
                             kwargs={"casting": "same_kind"})
    other.start()
    try:
        np.copyto(out[:half], K[:half], casting="same_kind")
    finally:
        other.join()
    return out


# Tuned on Figure-1 NTKs, N = 2048-3000 (see the module docstring).
PILOT_TOL = 5e-3  # estimated relative error of the float32 pilot's lambda_min
SHIFT_MARGIN = (3.0, 1e-3)  # sigma = estimate * (1 - 3 * estimated error - 1e-3)
SHIFT_TRIES = 3  # shifted factorisations tried, the distance to the estimate x2.5 each time
SHIFT_BACKOFF = 2.5
SHIFT_INVERT_BLOCK = 4  # default block of the shift-invert path (8 for block Lanczos on K^-1)
PILOT_BLOCK = 4  # block of the float32 pilot on K^-1
INVERSE_BLOCK = 8


def _shift_invert_bottom(K: np.ndarray, lmax: float, *, block: int, tol: float, seed: int,
                         max_vectors: int | None, pilot_block: int | None = None
                         ) -> tuple[float, int, float, dict]:
    """lambda_min of the float64 ``K`` through float32 Cholesky factors (see the module
    docstring): a float32 pilot on K^{-1} estimates lambda_min, the float32 factor of
    ``K - sigma I`` (which exists iff sigma is below K's smallest eigenvalue, up to float32
    round-off) preconditions a float64 block Davidson on K. Raises
    :class:`NotPositiveDefinite` when K is not positive definite in float32."""
    N = K.shape[0]
    rng = np.random.default_rng([seed, 0])
    one_thread = N < CHOLESKY_ONE_THREAD_BELOW
    buffer = _float32_copy(K)
    with blas_threads(1) if one_thread else contextlib.nullcontext():
        C0 = _cholesky(buffer)  # a copy: ``buffer`` still holds K in float32
    with blas_threads(1):
        theta, psteps, perr, _, X = block_krylov_top(
            _cholesky_solver(C0), N, pilot_block or block, tol=max(tol, PILOT_TOL),
            max_vectors=max_vectors, rng=rng, dtype=np.float32, vectors=True)
    if not theta > 0:
        raise ArithmeticError("float32 pilot on K^-1 gave a non-positive estimate")
    X = X[:, :block] if X.shape[1] > block else X
    estimate = 1.0 / theta
    distance = estimate * (SHIFT_MARGIN[0] * perr + SHIFT_MARGIN[1])
    C, sigma, tries = C0, 0.0, 0
    while distance < estimate and tries < SHIFT_TRIES:
        if tries:  # the failed factorisation overwrote the buffer
            np.copyto(buffer, K, casting="same_kind")
        tries += 1
        buffer.flat[::N + 1] -= np.float32(estimate - distance)
        try:  # factored in place: the buffer becomes the factor
            with blas_threads(1) if one_thread else contextlib.nullcontext():
                C, sigma = _cholesky(buffer, overwrite=True), estimate - distance
            break
        except NotPositiveDefinite:  # the shift is not below lambda_min: move it down
            distance *= SHIFT_BACKOFF
    del buffer
    if C is not C0:
        del C0
    with blas_threads(1):
        lmin, dsteps, err, ok = davidson_bottom(
            K, _cholesky_solver(C, np.float64), X, tol=tol, max_vectors=max_vectors,
            norm_estimate=lmax, shift=sigma, rng=rng, product=symmetric_product(K))
    if not ok:
        raise ArithmeticError(f"block Davidson on K did not converge (estimated error {err:.2e})")
    info = {"pilot_steps": psteps, "pilot_lambda_min": estimate, "sigma": sigma,
            "shift_tries": tries, "davidson_steps": dsteps}
    return lmin, psteps + dsteps, err, info


def _lambda_max(K: np.ndarray, *, tol: float, seed: int, max_vectors: int | None = None,
                must_converge: bool = True) -> tuple[float, int, float, bool]:
    """lambda_max of K by Lanczos on K, one vector per step (the top of an NTK is well
    separated: ~4 steps), each step one pass over K (:func:`symmetric_product`), on one BLAS
    thread: these chains of small, memory-bound products run faster there than on several
    threads, whose per-call synchronisation dominates (and collapses on a loaded machine).
    ``(lambda_max, steps, estimated relative error, converged)``; raises ArithmeticError when
    it does not converge and ``must_converge``."""
    with blas_threads(1):
        lmax, steps, err, ok = block_krylov_top(symmetric_product(K), K.shape[0], 1, tol=tol,
                                                max_vectors=max_vectors,
                                                rng=np.random.default_rng([seed, 1]), dtype=K.dtype)
    if not ok and must_converge:
        raise ArithmeticError(f"Lanczos on K did not converge (estimated error {err:.2e})")
    return lmax, steps, err, ok


def cholesky_krylov(K: np.ndarray, *, block: int | None = None, tol: float = 1e-9,
                    seed: int = 0, max_vectors: int | None = None,
                    shift_invert: bool | None = None) -> SpectrumResult:
    """lambda_min through Cholesky factors, lambda_max by Lanczos on K (see the module
    docstring). ``shift_invert`` (default: for float64 K with N >= 16 block): float32 factors
    and a shifted float64 block Davidson (``block`` default 4); else block Lanczos on K^{-1}
    through a float64 factor (``block`` default 8), which is also the path when K is not
    positive definite in float32. Raises
    :class:`NotPositiveDefinite` or :class:`ArithmeticError` (no convergence);
    :func:`extreme_eigenvalues` turns those into a fallback."""
    t0 = time.perf_counter()
    return _cholesky_krylov(_check_matrix(K), t0, block=block, tol=tol, seed=seed,
                            max_vectors=max_vectors, shift_invert=shift_invert)


def _cholesky_krylov(K: np.ndarray, t0: float, *, block: int | None, tol: float, seed: int,
                     max_vectors: int | None = None, shift_invert: bool | None = None) -> SpectrumResult:
    """:func:`cholesky_krylov` of a ``K`` that :func:`_check_matrix` passed (the check reads
    all of K: once per call is enough), timed from ``t0``."""
    N = K.shape[0]
    tol = max(tol, 10 * float(np.finfo(K.dtype).eps))  # float32 cannot resolve 1e-9
    lmax = _lambda_max(K, tol=tol, seed=seed, max_vectors=max_vectors)[0]
    if shift_invert is None:
        shift_invert = K.dtype == np.float64 and N >= 16 * (block or SHIFT_INVERT_BLOCK)
    extra: dict = {}
    if shift_invert:
        b = block or SHIFT_INVERT_BLOCK
        try:
            lmin, steps, err, info = _shift_invert_bottom(K, lmax, block=b, tol=tol, seed=seed,
                                                          max_vectors=max_vectors,
                                                          pilot_block=block or PILOT_BLOCK)
            extra.update(info, block=b, method="shift_invert")
            return _result("cholesky_krylov", lmin, lmax, K, time.perf_counter() - t0, steps=steps,
                           estimated_error=float(err), extra=extra)
        except NotPositiveDefinite as exc:  # not definite in float32: try float64
            extra["shift_invert_failed"] = str(exc)
    block = block or INVERSE_BLOCK
    C = _cholesky(K)  # the one O(N^3) step, multi-threaded
    with blas_threads(1):
        theta, steps, err, ok = block_krylov_top(_cholesky_solver(C), N, block, tol=tol,
                                                 max_vectors=max_vectors,
                                                 rng=np.random.default_rng([seed, 0]), dtype=K.dtype)
    if not ok or theta <= 0:
        raise ArithmeticError(f"block Krylov on K^-1 did not converge (estimated error {err:.2e})")
    lmin = 1.0 / theta
    extra.update(block=block, method="inverse")
    return _result("cholesky_krylov", lmin, lmax, K, time.perf_counter() - t0, steps=steps,
                   estimated_error=float(err), extra=extra)


def extreme_eigenvalues(K: np.ndarray, solver: str = "auto", *, block: int | None = None,
                        tol: float = 1e-9, seed: int = 0, rank_bound: int | None = None) -> SpectrumResult:
    """lambda_min and lambda_max of the symmetric PSD matrix ``K`` (N, N) with ``solver``
    (one of :data:`SOLVERS`). ``block``, ``tol`` and ``seed`` tune ``cholesky_krylov``: block
    size (default: its own), relative tolerance and the seed of its random start (results do
    not depend on it beyond ``tol``).

    ``rank_bound``: an upper bound on the rank of ``K`` known from its structure (a layer block
    ``(F F^T) o (B B^T)`` has rank at most ``n_{l-1} n_l``). When it is below N, lambda_min is
    exactly 0 in exact arithmetic: it is reported as 0.0 with solver ``rank_bound`` (lambda_max
    from block Lanczos), instead of an eigen-solve of a singular matrix that would only return
    round-off (and, with ``auto``, fail the Cholesky factorisation first)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    t0 = time.perf_counter()
    K = _check_matrix(K)
    N = K.shape[0]
    fallback = None
    if rank_bound is not None and rank_bound < N and solver not in ("eigvalsh", "tridiagonal"):
        lmax, steps, err, ok = _lambda_max(K, tol=tol, seed=seed, must_converge=False)
        if ok:
            return _result("rank_bound", 0.0, lmax, K, time.perf_counter() - t0, steps=steps,
                           estimated_error=float(err), extra={"rank_bound": int(rank_bound)})
        fallback = f"Lanczos for lambda_max did not converge (estimated error {err:.2e})"
    if solver == "auto":
        solver = solver_choice.auto_solver(N) if fallback is None else "tridiagonal"
        if solver == "cholesky_krylov":
            try:
                return _cholesky_krylov(K, t0, block=block, tol=tol, seed=seed)
            except (NotPositiveDefinite, ArithmeticError) as exc:
                fallback = f"{type(exc).__name__}: {exc}"
                solver = "tridiagonal"
    elif solver == "cholesky_krylov":
        return _cholesky_krylov(K, t0, block=block, tol=tol, seed=seed)
    if solver == "tridiagonal":
        lmin, lmax = tridiagonal_extremes(K)
    else:
        lmin, lmax, _ = eigvalsh_extremes(K)
    return _result(solver, lmin, lmax, K, time.perf_counter() - t0, fallback=fallback)
