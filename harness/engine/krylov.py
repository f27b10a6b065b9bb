"""Block Krylov iterations for one extreme eigenvalue of a symmetric operator.

- :func:`block_krylov_top`: the largest eigenvalue of an operator given by its action on a block
  of vectors (block Lanczos with full reorthogonalisation);
- :func:`davidson_bottom`: the smallest eigenvalue of an explicit matrix K by block Davidson with
  a shift-and-invert preconditioner.

Both run on matrices of a few thousand rows, where one step costs a few products with K or a
triangular factor (memory-bound, ~0.1-10 ms) plus a handful of small dense operations. Those
small operations call LAPACK directly (Cholesky-QR through ``potrf``/``trtri``, Ritz values
through ``syevr`` on the projected matrix), not through SciPy's checked wrappers, whose
argument validation cost ~30-100 us per call, as much as a whole step at N = 500.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

__all__ = ["block_krylov_top", "davidson_bottom", "orthonormalize"]


def _ritz(H: np.ndarray, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs ``first..last`` (0-based, ascending) of the small symmetric float64 ``H``
    given by its upper triangle (LAPACK dsyevr, only the requested pairs)."""
    w, z, m, _, info = lapack.dsyevr(H, compute_v=1, range="I", lower=0, il=first + 1, iu=last + 1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevr failed on the projected matrix: info = {info}")
    return w[:m], z[:, :m]


def _cholesky_qr_once(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Z = Q R`` by Cholesky of ``Z^T Z``: ``(Q, R)``; raises LinAlgError if ``Z`` is
    numerically rank deficient."""
    G = Z.T @ Z
    potrf = lapack.get_lapack_funcs("potrf", (G,))
    R, info = potrf(G, lower=0, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError("rank-deficient block")
    trtri = lapack.get_lapack_funcs("trtri", (R,))
    Rinv, info = trtri(R, lower=0)
    if info != 0:
        raise np.linalg.LinAlgError("singular triangular factor")
    return Z @ Rinv, R


def orthonormalize(Z: np.ndarray, rng: np.random.Generator, V: np.ndarray,
                   factor: bool = False):
    """An orthonormal basis (N, b), Fortran-ordered, of the columns of ``Z`` (already orthogonal
    to the orthonormal ``V`` (N, k)): Cholesky-QR twice (BLAS-3). With ``factor=True`` also
    ``R`` (b, b) with ``Z = Q R`` (zero rows where directions vanished). Directions that vanish
    (an invariant subspace was found) are replaced by random ones orthogonal to ``V``."""
    Q = Z
    for attempt in range(3):
        try:
            Q1, R1 = _cholesky_qr_once(Q)
            Q2, R2 = _cholesky_qr_once(Q1)
            Q2 = np.asfortranarray(Q2)
            if not factor:
                return Q2
            return Q2, (R2 @ R1 if attempt == 0 else Q2.T @ Z)
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
    H = np.zeros((min(cap, 64), min(cap, 64)), dtype=np.float64, order="F")  # grows by doubling
    V[:, :b] = orthonormalize(rng.standard_normal((N, b)).astype(dtype), rng, V[:, :0])
    theta_prev = change_prev = None
    theta, err, steps, k = 0.0, np.inf, 0, 0
    eps = float(np.finfo(dtype).eps)
    while True:
        steps += 1
        k1 = k + b
        Vk = V[:, :k1]
        W = apply(V[:, k:k1])
        if W.dtype != dtype:
            W = W.astype(dtype)
        C = Vk.T @ W  # (k1, b): the new block column of H
        if k1 > H.shape[0]:
            grown = np.zeros((min(cap, 2 * k1), min(cap, 2 * k1)), order="F")
            grown[:k, :k] = H[:k, :k]
            H = grown
        H[:k1, k:k1] = C
        H[k:k1, k:k1] = 0.5 * (C[k:k1] + C[k:k1].T)
        Q = None
        if k1 < N:
            Z = W - Vk @ C
            Z -= Vk @ (Vk.T @ Z)  # second Gram-Schmidt pass
            if k1 + b <= cap:
                Q, R = orthonormalize(Z, rng, Vk, factor=True)
            else:
                R = np.linalg.qr(Z, mode="r")
        else:
            R = np.zeros((b, b))
        if k1 >= 2:  # H's upper triangle holds the projected matrix
            vals, vecs = _ritz(H[:k1, :k1], k1 - 2, k1 - 1)
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
            _, Y = _ritz(H[:k1, :k1], k1 - nv, k1 - 1)
            return (*done, np.asfortranarray(Vk @ Y[:, ::-1].astype(dtype)))
        V[:, k1:k1 + b] = Q
        k = k1


def davidson_bottom(K: np.ndarray, precondition, X0: np.ndarray, *, tol: float = 1e-9,
                    max_steps: int = 100, max_vectors: int | None = None,
                    norm_estimate: float | None = None, shift: float | None = None,
                    rng: np.random.Generator | None = None, product=None) -> tuple[float, int, float, bool]:
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
    ``product(V)`` computes ``K @ V`` (default: BLAS). Returns ``(theta, steps, estimated
    relative error, converged)``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    N, b = X0.shape
    cap = min(N, int(max_vectors) if max_vectors else max(8 * b, 32))
    if cap < 2 * b:
        raise ValueError(f"max_vectors={cap} leaves no room for a block of {b}")
    eps = float(np.finfo(K.dtype).eps)
    norm = norm_estimate if norm_estimate else float(np.abs(K).max()) * N
    floor = 8 * eps * np.sqrt(N) * norm
    if product is None:
        Kt = K.T
        product = lambda V: Kt @ V  # noqa: E731
    V = np.empty((N, cap), dtype=K.dtype, order="F")
    KV = np.empty((N, cap), dtype=K.dtype, order="F")
    V[:, :b] = orthonormalize(np.asarray(X0, dtype=K.dtype), rng, V[:, :0])
    KV[:, :b] = product(V[:, :b])
    m, steps = b, 0
    while True:
        steps += 1
        H = V[:, :m].T @ KV[:, :m]
        H = np.asfortranarray(0.5 * (H + H.T), dtype=np.float64)
        nv = min(max(b, 2), m)
        theta, Y = _ritz(H, 0, nv - 1)
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
        V[:, m:m + b] = orthonormalize(W, rng, Vm)
        KV[:, m:m + b] = product(V[:, m:m + b])
        m += b
