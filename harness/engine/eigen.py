# Length: about 480 lines in one module because one solver: the float32 pilot, the certified shift
# and the Davidson refinement feed each other.
"""Extreme eigenvalues of a symmetric positive semi-definite kernel matrix K (N, N).

Solvers (the ``solver`` argument of :func:`extreme_eigenvalues`):

- ``"eigvalsh"``: the reference, :func:`scipy.linalg.eigvalsh` (LAPACK dsyevr: reduction to
  tridiagonal form, then all eigenvalues), O(4/3 N^3) flops of which half are matrix-vector
  products.
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

  About twice as fast as dsyevr's lambda_min alone at N = 2000-3000 (measurements, and the
  alternatives tried: docs/engine.md). The error estimate of the Davidson iteration uses
  ``r^T (K - sigma I)^{-1} r`` (see :func:`davidson_bottom`), much sharper than
  ``||r||^2 / gap``, which saves a step.

  Otherwise (float32 K, ``shift_invert=False``, or K not positive definite in float32): one
  float64 Cholesky K = C C^T and block Lanczos on K^{-1} = C^{-T} C^{-1} (``block`` = 8 vectors,
  triangular solves, BLAS-3), lambda_min(K) = 1 / lambda_max(K^{-1}): ~20-30 steps.
- ``"auto"`` (default): ``cholesky_krylov`` for N >= 900, falling back to ``eigvalsh`` when the
  Cholesky factorisation fails (K not numerically positive definite) or the iteration does not
  converge; ``eigvalsh`` for small N.

Every result records the solver actually used, lambda_min, lambda_max, the trace, the round-off
floor ``eps * N * lambda_max`` (eps of K's dtype) and whether lambda_min is below it (then the
computed lambda_min is not distinguishable from zero: K is numerically singular).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from .threads import blas_threads

__all__ = ["SpectrumResult", "extreme_eigenvalues", "SOLVERS", "block_krylov_top",
           "davidson_bottom", "NotPositiveDefinite"]

SOLVERS = ("auto", "eigvalsh", "cholesky_krylov")
AUTO_MIN_N = 900
"""``auto`` uses eigvalsh below this N, where the shifted solver stops paying (docs/engine.md)."""
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


def _cholesky_qr(Z: np.ndarray, rng: np.random.Generator, V: np.ndarray) -> np.ndarray:
    """An orthonormal basis (N, b) of the columns of ``Z`` (already orthogonal to ``V``):
    Cholesky-QR twice (BLAS-3). Directions that vanish (an invariant subspace was found) are
    replaced by random ones orthogonal to ``V``."""
    Q = Z
    for attempt in range(3):
        try:
            for _ in range(2):
                R = np.linalg.cholesky(Q.T @ Q).T
                Q = scipy.linalg.solve_triangular(R, Q.T, trans="T", lower=False,
                                                  check_finite=False).T
            return np.asfortranarray(Q)
        except np.linalg.LinAlgError:
            norms = np.linalg.norm(Q, axis=0)
            weak = norms < 1e-8 * max(1.0, float(norms.max(initial=0.0)))
            if attempt > 0 or not weak.any():
                weak[:] = True
            Q = np.array(Q, order="F")
            Q[:, weak] = rng.standard_normal((Q.shape[0], int(weak.sum())))
            for _ in range(2):
                Q -= V @ (V.T @ Q)
    raise ArithmeticError("could not extend the Krylov basis")


def block_krylov_top(apply, N: int, block: int, *, tol: float = 1e-9, max_vectors: int | None = None,
                     rng: np.random.Generator | None = None, dtype=np.float64, vectors: bool = False
                     ) -> tuple:
    """Largest eigenvalue of a symmetric operator by block Lanczos with full reorthogonalisation.

    ``apply(V)`` returns ``A @ V`` for an (N, b) Fortran-ordered block ``V``. The orthonormal
    basis ``V_0, V_1, ...`` grows by ``block`` vectors per step (at most ``max_vectors``, default
    min(N, 600)): ``W = A V_k`` is projected on the basis (``C = [V_0..V_k]^T W`` is the new
    block column of the projected matrix ``H``), the rest ``Z = W - [V_0..V_k] C`` is
    orthogonalised once more and factored ``Z = V_{k+1} R``. The Ritz value ``theta`` (largest
    eigenvalue of ``H``, increasing to the largest eigenvalue of A) has the residual norm
    ``||R y_k||`` (``y_k``: the last block of its Ritz vector's coordinates). Stops when the
    estimated relative error of ``theta`` is below ``tol``: the larger of the last change of
    ``theta`` times ``q / (1 - q)`` (``q`` the observed contraction of successive changes,
    capped at 0.9) and the residual bound ``min(||r||, ||r||^2 / gap)`` (``gap`` to the next
    Ritz value), or when the basis spans the whole space. Each step reads the basis four times
    (two Gram-Schmidt passes). Returns ``(theta, steps, estimated relative error, converged)``,
    and with ``vectors=True`` also the Ritz vectors (N, block) of the ``block`` largest Ritz
    values, largest first.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    b = max(1, min(int(block), N))
    cap = min(N, int(max_vectors) if max_vectors else max(600, 4 * b))
    cap = max(b, cap - cap % b)
    V = np.empty((N, cap), dtype=dtype, order="F")
    H = np.zeros((cap, cap), dtype=np.float64)
    V[:, :b] = _cholesky_qr(rng.standard_normal((N, b)).astype(dtype), rng, V[:, :0])
    theta_prev = change_prev = None
    theta, err, steps, k = 0.0, np.inf, 0, 0
    eps = float(np.finfo(dtype).eps)
    while True:
        steps += 1
        k1 = k + b
        Vk = V[:, :k1]
        W = np.asarray(apply(V[:, k:k1]), dtype=dtype)
        C = Vk.T @ W  # (k1, b): the new block column of H
        H[:k1, k:k1] = C
        H[k:k1, :k] = C[:k].T
        H[k:k1, k:k1] = 0.5 * (C[k:k1] + C[k:k1].T)
        if k1 < N:
            Z = W - Vk @ C
            Z -= Vk @ (Vk.T @ Z)  # second Gram-Schmidt pass
            Q = _cholesky_qr(Z, rng, Vk) if k1 + b <= cap else None
            R = Q.T @ Z if Q is not None else np.linalg.qr(Z, mode="r")
        else:
            Q, R = None, np.zeros((b, b))
        if k1 >= 2:
            vals, vecs = scipy.linalg.eigh(H[:k1, :k1], subset_by_index=[k1 - 2, k1 - 1], driver="evr",
                                           check_finite=False)
        else:
            vals, vecs = np.array([0.0, H[0, 0]]), np.ones((1, 2))
        theta, y = float(vals[-1]), vecs[:, -1]
        scale = max(abs(theta), np.finfo(np.float64).tiny)
        rnorm = float(np.linalg.norm(R @ y[k:k1]))
        gap = float(vals[-1] - vals[-2]) if k1 >= 2 else scale
        residual_bound = min(rnorm, rnorm ** 2 / max(gap, 1e-300)) / scale
        if theta_prev is None:
            err = residual_bound
        else:
            change = abs(theta - theta_prev) / scale
            q = 0.9 if not change_prev else min(0.9, change / change_prev)
            err = max(change * q / (1 - q), min(residual_bound, change if change > 0 else 1.0))
            change_prev = change
        theta_prev = theta
        converged = err <= tol or rnorm <= 8 * eps * scale * np.sqrt(N) or k1 >= N
        if converged or Q is None:
            done = (theta, steps, err, converged)
            if not vectors:
                return done
            nv = min(b, k1)
            _, Y = scipy.linalg.eigh(H[:k1, :k1], subset_by_index=[k1 - nv, k1 - 1], driver="evr",
                                     check_finite=False)
            return (*done, np.asfortranarray(Vk @ Y[:, ::-1].astype(dtype)))
        V[:, k1:k1 + b] = Q
        k = k1


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


def _cholesky_solver(C: np.ndarray, dtype=None):
    """``V -> (C C^T)^{-1} V`` by LAPACK potrs, in C's precision, returned as ``dtype``."""
    potrs = lapack.get_lapack_funcs("potrs", (C,))

    def solve(V):
        X, info = potrs(C, np.asarray(V, dtype=C.dtype, order="F"), lower=1)
        if info != 0:
            raise ValueError(f"potrs failed: {info}")
        return X if dtype is None else X.astype(dtype)

    return solve


def davidson_bottom(K: np.ndarray, precondition, X0: np.ndarray, *, tol: float = 1e-9,
                    max_steps: int = 100, max_vectors: int | None = None,
                    norm_estimate: float | None = None, shift: float | None = None,
                    rng: np.random.Generator | None = None) -> tuple[float, int, float, bool]:
    """Smallest eigenvalue of the symmetric ``K`` by block Davidson from the start block ``X0``
    (N, b), with ``precondition(R)`` approximating ``(K - sigma I)^{-1} R`` for a shift
    ``sigma`` below the smallest eigenvalue.

    Each step: Rayleigh-Ritz on the basis ``V`` (``H = V^T K V``, in K's precision), the ``b``
    lowest Ritz pairs ``(theta_i, x_i)``, their residuals ``R = K X - X diag(theta)``, and the
    basis grows by the orthonormalised ``precondition(R)`` (one product ``K @ W`` of b vectors
    per step); at ``max_vectors`` columns (default max(8 b, 32)) it restarts from the Ritz
    vectors. With the exact ``(K - sigma I)^{-1}`` this is shift-and-invert block Lanczos;
    with an approximate one (a float32 factor), the residuals, computed with K itself, keep the
    answer exact. Ritz values are upper bounds of the eigenvalues. Stops when the residual bound
    ``min(||r||, ||r||^2 / gap)`` (``gap``: the next Ritz value minus theta) relative to theta
    is below ``tol``, or when ``||r||`` reaches round-off (``8 eps sqrt(N) norm_estimate``).
    Given the ``shift`` sigma, the error is also estimated by ``r^T (K - sigma I)^{-1} r``
    (the preconditioned residual is computed anyway): with ``x = sum_j c_j v_j``,
    ``theta - lambda_1 = sum_{j>1} c_j^2 (lambda_j - lambda_1)`` while
    ``r^T (K - sigma I)^{-1} r >= sum_{j>1} c_j^2 (lambda_j - theta)^2 / (lambda_j - sigma)``,
    so ``theta - lambda_1 <= r^T (K - sigma I)^{-1} r (lambda_2 - sigma) / (lambda_2 - theta)``
    up to a factor ``1 + O((theta - lambda_1) / (lambda_2 - theta))`` (lambda_2 estimated by
    the second Ritz value); the estimate used is twice that (the preconditioner is only
    approximately the inverse). It is usually ~100x below ``||r||^2 / gap`` and saves a step.
    Returns ``(theta, steps, estimated relative error, converged)``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    N, b = X0.shape
    cap = min(N, int(max_vectors) if max_vectors else max(8 * b, 32))
    if cap < 2 * b:
        raise ValueError(f"max_vectors={cap} leaves no room for a block of {b}")
    eps = float(np.finfo(K.dtype).eps)
    norm = norm_estimate if norm_estimate else float(np.abs(K).max()) * N
    floor = 8 * eps * np.sqrt(N) * norm
    Kt = K.T
    V = np.empty((N, cap), dtype=K.dtype, order="F")
    KV = np.empty((N, cap), dtype=K.dtype, order="F")
    V[:, :b] = _cholesky_qr(np.asarray(X0, dtype=K.dtype), rng, V[:, :0])
    KV[:, :b] = Kt @ V[:, :b]
    m, steps = b, 0
    while True:
        steps += 1
        H = V[:, :m].T @ KV[:, :m]
        H = 0.5 * (H + H.T)
        nv = min(max(b, 2), m)
        theta, Y = scipy.linalg.eigh(H, subset_by_index=[0, nv - 1], driver="evr",
                                     check_finite=False)
        X = V[:, :m] @ Y[:, :b]
        KX = KV[:, :m] @ Y[:, :b]
        R = KX - X * theta[:b]
        rnorm = float(np.linalg.norm(R[:, 0]))
        scale = max(abs(float(theta[0])), np.finfo(np.float64).tiny)
        gap = float(theta[1] - theta[0]) if nv > 1 else scale
        err = min(rnorm, rnorm ** 2 / max(gap, 1e-300)) / scale
        W = None
        if shift is not None and err > tol and nv > 1 and theta[1] > theta[0] > shift:
            W = np.asarray(precondition(R), dtype=K.dtype)
            rtr = abs(float(R[:, 0] @ W[:, 0]))
            err = min(err, 2.0 * rtr * (theta[1] - shift) / (theta[1] - theta[0]) / scale)
        if err <= tol or rnorm <= floor or m >= N:
            return float(theta[0]), steps, err, True
        if steps >= max_steps:
            return float(theta[0]), steps, err, False
        if W is None:
            W = np.asarray(precondition(R), dtype=K.dtype)
        if m + b > cap:  # restart from the Ritz vectors
            V[:, :b], KV[:, :b] = X, KX
            m = b
        Vm = V[:, :m]
        W -= Vm @ (Vm.T @ W)
        W -= Vm @ (Vm.T @ W)
        V[:, m:m + b] = _cholesky_qr(W, rng, Vm)
        KV[:, m:m + b] = Kt @ V[:, m:m + b]
        m += b


# Tuned on Figure-1 NTKs, N = 2048-3000 (see the module docstring).
PILOT_TOL = 5e-3  # estimated relative error of the float32 pilot's lambda_min
SHIFT_MARGIN = (3.0, 1e-3)  # sigma = estimate * (1 - 3 * estimated error - 1e-3)
SHIFT_TRIES = 3  # shifted factorisations tried, the distance to the estimate x2.5 each time
SHIFT_BACKOFF = 2.5
SHIFT_INVERT_BLOCK = 4  # default block of the shift-invert path (8 for block Lanczos on K^-1)
INVERSE_BLOCK = 8


def _shift_invert_bottom(K: np.ndarray, lmax: float, *, block: int, tol: float, seed: int,
                         max_vectors: int | None) -> tuple[float, int, float, dict]:
    """lambda_min of the float64 ``K`` through float32 Cholesky factors (see the module
    docstring): a float32 pilot on K^{-1} estimates lambda_min, the float32 factor of
    ``K - sigma I`` (which exists iff sigma is below K's smallest eigenvalue, up to float32
    round-off) preconditions a float64 block Davidson on K. Raises
    :class:`NotPositiveDefinite` when K is not positive definite in float32."""
    N = K.shape[0]
    rng = np.random.default_rng([seed, 0])
    C0 = _cholesky(K.astype(np.float32), overwrite=True)
    with blas_threads(1):
        theta, psteps, perr, _, X = block_krylov_top(
            _cholesky_solver(C0), N, block, tol=max(tol, PILOT_TOL), max_vectors=max_vectors,
            rng=rng, dtype=np.float32, vectors=True)
    if not theta > 0:
        raise ArithmeticError("float32 pilot on K^-1 gave a non-positive estimate")
    estimate = 1.0 / theta
    distance = estimate * (SHIFT_MARGIN[0] * perr + SHIFT_MARGIN[1])
    C, sigma, tries, S = C0, 0.0, 0, None
    while distance < estimate and tries < SHIFT_TRIES:
        tries += 1
        S = K.astype(np.float32)
        S.flat[::N + 1] -= np.float32(estimate - distance)
        try:
            C, sigma = _cholesky(S, overwrite=True), estimate - distance
            break
        except NotPositiveDefinite:  # the shift is not below lambda_min: move it down
            distance *= SHIFT_BACKOFF
    del S
    if C is not C0:
        del C0
    with blas_threads(1):
        lmin, dsteps, err, ok = davidson_bottom(
            K, _cholesky_solver(C, np.float64), X, tol=tol, max_vectors=max_vectors,
            norm_estimate=lmax, shift=sigma, rng=rng)
    if not ok:
        raise ArithmeticError(f"block Davidson on K did not converge (estimated error {err:.2e})")
    info = {"pilot_steps": psteps, "pilot_lambda_min": estimate, "sigma": sigma,
            "shift_tries": tries, "davidson_steps": dsteps}
    return lmin, psteps + dsteps, err, info


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
    K = _check_matrix(K)
    N = K.shape[0]
    tol = max(tol, 10 * float(np.finfo(K.dtype).eps))  # float32 cannot resolve 1e-9
    Kt = K.T  # Fortran-ordered view of the symmetric K
    # Both iterations are chains of small, memory-bound products (K @ V, triangular solves
    # with a few right-hand sides): single-threaded BLAS runs them faster than multi-threaded
    # BLAS, whose per-call synchronisation dominates (and collapses under a loaded machine).
    # lambda_max: one vector per step (a matrix-vector product is ~3x cheaper than a product
    # with 2 vectors here); the top of an NTK is well separated, ~4 steps.
    with blas_threads(1):
        lmax, _, err_max, ok_max = block_krylov_top(lambda V: Kt @ V, N, 1, tol=tol,
                                                    max_vectors=max_vectors,
                                                    rng=np.random.default_rng([seed, 1]), dtype=K.dtype)
    if not ok_max:
        raise ArithmeticError(f"block Krylov on K did not converge (estimated error {err_max:.2e})")
    if shift_invert is None:
        shift_invert = K.dtype == np.float64 and N >= 16 * (block or SHIFT_INVERT_BLOCK)
    extra: dict = {}
    if shift_invert:
        b = block or SHIFT_INVERT_BLOCK
        try:
            lmin, steps, err, info = _shift_invert_bottom(K, lmax, block=b, tol=tol, seed=seed,
                                                          max_vectors=max_vectors)
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
    if rank_bound is not None and rank_bound < N and solver != "eigvalsh":
        with blas_threads(1):
            lmax, steps, err, ok = block_krylov_top(lambda V: K.T @ V, N, 1, tol=tol,
                                                    rng=np.random.default_rng([seed, 1]), dtype=K.dtype)
        if ok:
            return _result("rank_bound", 0.0, lmax, K, time.perf_counter() - t0, steps=steps,
                           estimated_error=float(err), extra={"rank_bound": int(rank_bound)})
        fallback = f"Lanczos for lambda_max did not converge (estimated error {err:.2e})"
    if solver == "cholesky_krylov" or (solver == "auto" and N >= AUTO_MIN_N):
        try:
            return cholesky_krylov(K, block=block, tol=tol, seed=seed)
        except (NotPositiveDefinite, ArithmeticError) as exc:
            if solver == "cholesky_krylov":
                raise
            fallback = f"{type(exc).__name__}: {exc}"
    lmin, lmax, _ = eigvalsh_extremes(K)
    return _result("eigvalsh", lmin, lmax, K, time.perf_counter() - t0, fallback=fallback)
