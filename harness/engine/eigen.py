"""Extreme eigenvalues of a symmetric positive semi-definite kernel matrix K (N, N).

Solvers (the ``solver`` argument of :func:`extreme_eigenvalues`):

- ``"eigvalsh"``: the reference, :func:`scipy.linalg.eigvalsh` (LAPACK dsyevr: reduction to
  tridiagonal form, then all eigenvalues), O(4/3 N^3) flops of which half are matrix-vector
  products.
- ``"cholesky_krylov"``: Cholesky factorisation K = C C^T (LAPACK potrf, N^3/3 flops, the
  only O(N^3) step), then a block Krylov (block Lanczos) iteration on K^{-1} = C^{-T} C^{-1},
  applied to ``block`` vectors at a time by triangular solves (potrs, BLAS-3);
  lambda_min(K) = 1 / lambda_max(K^{-1}). lambda_max(K) comes from the same iteration on K
  itself (products K @ V), which converges in a few steps because the top eigenvalue of an NTK
  is well separated. The bottom of an NTK's spectrum is clustered (relative spacing ~1%: on a
  Figure-1 kernel at N = 2048 the lowest eigenvalues are 21.95, 22.23, 22.45, ...), so the
  iteration needs ~20-30 steps of 8 vectors for 1e-9; each step reads the factor twice
  (memory-bound, ~3-4 ms at N = 2048 on a 2-core machine). Measured there: Cholesky ~35 ms,
  Krylov ~130 ms, dsyevr for lambda_min alone ~190 ms (about 1.1x); at N = 3000, 1.4-1.9x
  (dsyevr grows faster). One-vector Lanczos needs ~40-60 steps of nearly the same cost.
- ``"auto"`` (default): ``cholesky_krylov`` for N >= 1500, falling back to ``eigvalsh`` when the
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
           "NotPositiveDefinite"]

SOLVERS = ("auto", "eigvalsh", "cholesky_krylov")
AUTO_MIN_N = 1500  # below this eigvalsh is as fast (measured on NTKs of Figure 1)


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
    """Reference: every eigenvalue of K (ascending) by LAPACK dsyevr; (min, max, all)."""
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
                     rng: np.random.Generator | None = None, dtype=np.float64
                     ) -> tuple[float, int, float, bool]:
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
    (two Gram-Schmidt passes). Returns ``(theta, steps, estimated relative error, converged)``.
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
        if err <= tol or rnorm <= 8 * eps * scale * np.sqrt(N) or k1 >= N:
            return theta, steps, err, True
        if Q is None:
            return theta, steps, err, False
        V[:, k1:k1 + b] = Q
        k = k1


def _cholesky(K: np.ndarray) -> np.ndarray:
    potrf = lapack.get_lapack_funcs("potrf", (K,))
    # K is symmetric: its C-ordered buffer read in Fortran order is K itself (no copy needed
    # to hand it to LAPACK); potrf copies because overwrite_a=0.
    C, info = potrf(K.T, lower=1, clean=0, overwrite_a=0)
    if info > 0:
        raise NotPositiveDefinite(f"Cholesky failed at column {info} of {K.shape[0]}")
    if info < 0:
        raise ValueError(f"potrf: illegal argument {-info}")
    return C


def cholesky_krylov(K: np.ndarray, *, block: int = 8, tol: float = 1e-9, seed: int = 0,
                    max_vectors: int | None = None) -> SpectrumResult:
    """lambda_min by block Lanczos on K^{-1} through a Cholesky factor; lambda_max by block
    Lanczos on K. Raises :class:`NotPositiveDefinite` or :class:`ArithmeticError` (no
    convergence); :func:`extreme_eigenvalues` turns those into a fallback."""
    t0 = time.perf_counter()
    K = _check_matrix(K)
    N = K.shape[0]
    tol = max(tol, 10 * float(np.finfo(K.dtype).eps))  # float32 cannot resolve 1e-9
    Kt = K.T  # Fortran-ordered view of the symmetric K
    # Both iterations are chains of small, memory-bound products (K @ V, triangular solves
    # with a few right-hand sides): single-threaded BLAS runs them faster than multi-threaded
    # BLAS, whose per-call synchronisation dominates (and collapses under a loaded machine).
    with blas_threads(1):
        lmax, _, err_max, ok_max = block_krylov_top(lambda V: Kt @ V, N, 2, tol=tol,
                                                    max_vectors=max_vectors,
                                                    rng=np.random.default_rng([seed, 1]), dtype=K.dtype)
    if not ok_max:
        raise ArithmeticError(f"block Krylov on K did not converge (estimated error {err_max:.2e})")
    C = _cholesky(K)  # the one O(N^3) step, multi-threaded
    potrs = lapack.get_lapack_funcs("potrs", (C,))

    def solve(V):
        X, info = potrs(C, V, lower=1)
        if info != 0:
            raise ValueError(f"potrs failed: {info}")
        return X

    with blas_threads(1):
        theta, steps, err, ok = block_krylov_top(solve, N, block, tol=tol, max_vectors=max_vectors,
                                                 rng=np.random.default_rng([seed, 0]), dtype=K.dtype)
    if not ok or theta <= 0:
        raise ArithmeticError(f"block Krylov on K^-1 did not converge (estimated error {err:.2e})")
    lmin = 1.0 / theta
    return _result("cholesky_krylov", lmin, lmax, K, time.perf_counter() - t0, steps=steps,
                   estimated_error=float(err), extra={"block": block})


def extreme_eigenvalues(K: np.ndarray, solver: str = "auto", *, block: int = 8, tol: float = 1e-9,
                        seed: int = 0) -> SpectrumResult:
    """lambda_min and lambda_max of the symmetric PSD matrix ``K`` (N, N) with ``solver``
    (one of :data:`SOLVERS`). ``block``, ``tol`` and ``seed`` tune ``cholesky_krylov``: block
    size, relative tolerance and the seed of its random start (results do not depend on it
    beyond ``tol``)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    t0 = time.perf_counter()
    K = _check_matrix(K)
    N = K.shape[0]
    fallback = None
    if solver == "cholesky_krylov" or (solver == "auto" and N >= AUTO_MIN_N):
        try:
            return cholesky_krylov(K, block=block, tol=tol, seed=seed)
        except (NotPositiveDefinite, ArithmeticError) as exc:
            if solver == "cholesky_krylov":
                raise
            fallback = f"{type(exc).__name__}: {exc}"
    lmin, lmax, _ = eigvalsh_extremes(K)
    return _result("eigvalsh", lmin, lmax, K, time.perf_counter() - t0, fallback=fallback)
