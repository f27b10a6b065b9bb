"""Extreme eigenvalues (harness/engine/eigen.py): the Cholesky + block Krylov solver and the
tridiagonal solver against LAPACK's eigvalsh, the choice by N, fallbacks, the certificate and the
round-off floor flag."""
import numpy as np
import pytest
import scipy.linalg
from plugins_for_tests import installed_registry

from harness.engine import eigen, solver_choice
from harness.engine.eigen import (
    SOLVERS,
    NotPositiveDefinite,
    SpectrumResult,
    block_krylov_top,
    cholesky_krylov,
    eigvalsh_extremes,
    extreme_eigenvalues,
)
from harness.engine.ntk import ntk_gram


def spd_with_spectrum(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T with a Haar-random orthogonal Q."""
    n = len(eigenvalues)
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    q *= np.sign(np.diag(r))
    K = (q * np.asarray(eigenvalues, dtype=float)) @ q.T
    return 0.5 * (K + K.T)


def clustered_spectrum(n, seed=1):
    """Bottom eigenvalues 1, 1.013, 1.035, ... (relative spacing ~1%, like an NTK's), the bulk up
    to 1e4 and one large top eigenvalue (condition number ~1e6)."""
    rng = np.random.default_rng(seed)
    bottom = 1.0 + np.cumsum(rng.uniform(0.005, 0.02, size=40))
    bulk = np.geomspace(1.5, 1e4, n - 42)
    return np.concatenate([[1.0], bottom, bulk, [1e6]])


@pytest.fixture(scope="module")
def ntk_kernel():
    reg = installed_registry()
    rng = np.random.default_rng(4)
    N, d = 600, 40
    X = rng.standard_normal((N, d))
    shapes = reg.create("architecture", "fc").layer_shapes(d)
    W = reg.create("initializer", "fan_in_gaussian").initialize(shapes, rng)
    return ntk_gram(W, X, reg.create("activation", "sigmoid"))


def test_reference_is_eigvalsh():
    ev = clustered_spectrum(300)
    K = spd_with_spectrum(ev)
    lo, hi, w = eigvalsh_extremes(K)
    assert w.shape == (300,)
    np.testing.assert_allclose([lo, hi], [ev.min(), ev.max()], rtol=1e-9)
    res = extreme_eigenvalues(K, "eigvalsh")
    assert res.solver == "eigvalsh" and res.fallback is None
    assert res.lambda_min == lo and res.lambda_max == hi
    assert res.trace == pytest.approx(ev.sum(), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("block", [1, 4, 8, 16])
def test_cholesky_krylov_agrees_on_clustered_spectrum(block):
    ev = clustered_spectrum(500, seed=block)
    K = spd_with_spectrum(ev, seed=block)
    lo, hi, _ = eigvalsh_extremes(K)
    res = cholesky_krylov(K, block=block)
    assert res.solver == "cholesky_krylov"
    assert abs(res.lambda_min - lo) / lo < 1e-8
    assert abs(res.lambda_max - hi) / hi < 1e-8
    assert res.steps >= 2 and res.estimated_error <= 1e-9
    assert not res.below_floor


def test_cholesky_krylov_agrees_on_an_ntk(ntk_kernel, monkeypatch):
    lo, hi, _ = eigvalsh_extremes(ntk_kernel)
    monkeypatch.setattr(solver_choice, "AUTO_MIN_N", 700)
    assert extreme_eigenvalues(ntk_kernel).solver == "tridiagonal"  # N = 600 < AUTO_MIN_N
    monkeypatch.setattr(solver_choice, "AUTO_MIN_N", 500)
    for solver in ("auto", "cholesky_krylov"):
        res = extreme_eigenvalues(ntk_kernel, solver)
        assert res.solver == "cholesky_krylov"
        assert abs(res.lambda_min - lo) / lo < 1e-8
        assert abs(res.lambda_max - hi) / hi < 1e-8
        assert res.trace == pytest.approx(np.trace(ntk_kernel), rel=1e-14)
    # the estimate is honest: a loose tolerance gives a visibly worse, still bounded, answer
    loose = cholesky_krylov(ntk_kernel, tol=1e-3)
    assert loose.steps < res.steps
    assert abs(loose.lambda_min - lo) / lo < 1e-3
    assert loose.lambda_min >= lo * (1 - 1e-12)  # Ritz values approach lambda_min from above


def test_singular_kernel_falls_back_and_is_flagged(monkeypatch):
    monkeypatch.setattr(solver_choice, "AUTO_MIN_N", 100)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((400, 150))
    K = A @ A.T  # rank 150: lambda_min is zero up to round-off
    with pytest.raises(NotPositiveDefinite):
        cholesky_krylov(K)
    with pytest.raises(NotPositiveDefinite):
        extreme_eigenvalues(K, "cholesky_krylov")
    res = extreme_eigenvalues(K, "auto")
    assert res.solver == "tridiagonal"
    assert "NotPositiveDefinite" in res.fallback
    assert res.below_floor
    assert abs(res.lambda_min) < res.floor
    assert res.floor == pytest.approx(np.finfo(np.float64).eps * 400 * res.lambda_max)


def test_floor_flag_on_a_definite_but_tiny_eigenvalue():
    ev = np.concatenate([[1e-14], np.linspace(1, 2, 299)])
    res = extreme_eigenvalues(spd_with_spectrum(ev), "eigvalsh")
    assert res.below_floor and res.lambda_min < res.floor
    ok = extreme_eigenvalues(spd_with_spectrum(np.linspace(1, 2, 300)), "eigvalsh")
    assert not ok.below_floor


def test_auto_chooses_the_solver_by_n():
    K = spd_with_spectrum(np.linspace(1, 3, 50))
    res = extreme_eigenvalues(K)
    assert res.solver == "tridiagonal" and res.fallback is None
    assert res.lambda_min == pytest.approx(1.0, rel=1e-12)
    assert res.lambda_max == pytest.approx(3.0, rel=1e-12)
    assert eigen.auto_solver(eigen.AUTO_MIN_N - 1) == "tridiagonal"
    assert eigen.auto_solver(eigen.AUTO_MIN_N) == "cholesky_krylov"
    big = spd_with_spectrum(clustered_spectrum(eigen.AUTO_MIN_N, seed=2), seed=2)
    assert extreme_eigenvalues(big).solver == "cholesky_krylov"


def test_float32():
    ev = np.linspace(1.0, 50.0, 400)
    K32 = spd_with_spectrum(ev).astype(np.float32)
    for solver in ("eigvalsh", "tridiagonal", "cholesky_krylov"):
        res = extreme_eigenvalues(K32, solver, tol=1e-5)
        assert res.dtype == "float32"
        assert res.lambda_min == pytest.approx(1.0, rel=1e-4)
        assert res.lambda_max == pytest.approx(50.0, rel=1e-4)
        assert res.floor == pytest.approx(np.finfo(np.float32).eps * 400 * res.lambda_max, rel=1e-4)


@pytest.mark.slow
def test_block_krylov_top_on_known_operators():
    d = np.concatenate([np.linspace(0, 1, 997), [1.5, 1.9, 2.0]])
    rng = np.random.default_rng(3)
    for block in (1, 3, 8):
        theta, steps, err, ok = block_krylov_top(lambda V: d[:, None] * V, d.size, block, tol=1e-12, rng=rng)
        assert ok and theta == pytest.approx(2.0, rel=1e-11)
    # a space smaller than the block: the whole space is spanned at once
    theta, steps, err, ok = block_krylov_top(lambda V: np.array([3.0, 1.0])[:, None] * V, 2, 8)
    assert ok and steps == 1 and theta == pytest.approx(3.0, rel=1e-14)


def test_metrics_and_arguments():
    K = spd_with_spectrum(np.linspace(2, 4, 300))
    res = extreme_eigenvalues(K)
    assert isinstance(res, SpectrumResult)
    m = res.metrics("_full")
    for key in ("lambda_min_full", "lambda_max_full", "trace_full", "below_floor_full", "solver_full",
                "floor_full", "solver_seconds_full", "condition_full", "steps_full", "fallback_full"):
        assert key in m
    assert m["condition_full"] == pytest.approx(2.0, rel=1e-8)
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in m.values())
    assert set(SOLVERS) == {"auto", "eigvalsh", "tridiagonal", "cholesky_krylov"}
    with pytest.raises(ValueError, match="unknown solver"):
        extreme_eigenvalues(K, "lobpcg")
    with pytest.raises(ValueError, match="square"):
        extreme_eigenvalues(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        extreme_eigenvalues(np.full((3, 3), np.nan))


def test_shift_invert_path_and_the_float64_path_agree(ntk_kernel):
    lo, hi, _ = eigvalsh_extremes(ntk_kernel)
    fast = cholesky_krylov(ntk_kernel)
    assert fast.extra["method"] == "shift_invert" and fast.extra["shift_tries"] >= 1
    assert 0 < fast.extra["sigma"] < lo  # the certified shift is below lambda_min
    assert fast.steps == fast.extra["pilot_steps"] + fast.extra["davidson_steps"]
    slow = cholesky_krylov(ntk_kernel, shift_invert=False)
    assert slow.extra["method"] == "inverse" and slow.extra["block"] == eigen.INVERSE_BLOCK
    for res in (fast, slow):
        assert abs(res.lambda_min - lo) / lo < 1e-8
        assert abs(res.lambda_max - hi) / hi < 1e-8
        assert res.estimated_error <= 1e-9


def test_shift_certificate_fails_then_recovers(monkeypatch):
    """A shift at the pilot's estimate (an upper bound of lambda_min) is not below lambda_min:
    the float32 Cholesky of K - sigma I fails and the shift moves down."""
    ev = clustered_spectrum(400, seed=7)
    K = spd_with_spectrum(ev, seed=7)
    lo = eigvalsh_extremes(K)[0]
    monkeypatch.setattr(eigen, "PILOT_TOL", 1e-2)
    monkeypatch.setattr(eigen, "SHIFT_MARGIN", (0.0, 1e-6))
    monkeypatch.setattr(eigen, "SHIFT_BACKOFF", 1e4)
    res = cholesky_krylov(K)
    assert res.extra["method"] == "shift_invert"
    assert res.extra["shift_tries"] == 2
    assert res.extra["pilot_lambda_min"] * (1 - 1e-6) > lo > res.extra["sigma"] > 0
    assert abs(res.lambda_min - lo) / lo < 1e-8


def test_shift_certificate_never_succeeds_uses_the_unshifted_factor(monkeypatch):
    """Every shifted float32 factorisation fails (whether a shift within float32 round-off of
    lambda_min factors depends on the BLAS, so the failure is forced): the solver tries
    SHIFT_TRIES shifts, then preconditions with the unshifted factor, and is still exact."""
    ev = clustered_spectrum(400, seed=8)
    K = spd_with_spectrum(ev, seed=8)
    lo = eigvalsh_extremes(K)[0]
    calls = []
    real = eigen._cholesky

    def first_only(A, overwrite=False):
        calls.append(A.dtype)
        if len(calls) > 1 and A.dtype == np.float32:
            raise eigen.NotPositiveDefinite("forced: the shift is not below lambda_min")
        return real(A, overwrite=overwrite)

    monkeypatch.setattr(eigen, "_cholesky", first_only)
    res = cholesky_krylov(K)
    assert res.extra["shift_tries"] == eigen.SHIFT_TRIES and res.extra["sigma"] == 0.0
    assert len(calls) == 1 + eigen.SHIFT_TRIES
    assert abs(res.lambda_min - lo) / lo < 1e-8


def test_definite_in_float64_only_takes_the_float64_path(monkeypatch):
    """1 + 1e-8 rounds to 1 in float32: K = 11^T + diag(d) is singular in float32, definite in
    float64 (condition ~3e10)."""
    n = 300
    d = np.linspace(1e-8, 2e-8, n)
    K = np.ones((n, n)) + np.diag(d)
    lo, hi, _ = eigvalsh_extremes(K)
    res = cholesky_krylov(K)
    assert res.extra["method"] == "inverse" and "shift_invert_failed" in res.extra
    assert abs(res.lambda_min - lo) / lo < 1e-4  # eigvalsh itself is only good to ~eps * cond
    assert abs(res.lambda_max - hi) / hi < 1e-10
    monkeypatch.setattr(solver_choice, "AUTO_MIN_N", 100)
    assert extreme_eigenvalues(K).solver == "cholesky_krylov"


def test_davidson_bottom_with_an_exact_shift_invert():
    ev = clustered_spectrum(300, seed=5)
    K = spd_with_spectrum(ev, seed=5)
    lo = eigvalsh_extremes(K)[0]
    sigma = 0.98 * lo
    inv = np.linalg.inv(K - sigma * np.eye(300))
    X0 = np.random.default_rng(0).standard_normal((300, 4))
    theta, steps, err, ok = eigen.davidson_bottom(K, lambda R: inv @ R, X0, tol=1e-10, shift=sigma)
    assert ok and err <= 1e-10 and abs(theta - lo) / lo < 1e-10
    # a Ritz value: an upper bound, up to the reference's own rounding (dsyevr's lo moves by
    # about 1e-12 relative with the number of BLAS threads; eps * lambda_max / lo = 2e-10)
    assert theta >= lo * (1 - 1e-11)
    # without the shift the estimate is the residual bound alone: never fewer steps
    theta2, steps2, _, ok2 = eigen.davidson_bottom(K, lambda R: inv @ R, X0, tol=1e-10)
    assert ok2 and steps2 >= steps and abs(theta2 - lo) / lo < 1e-10


def test_block_krylov_top_ritz_vectors():
    d = np.concatenate([np.linspace(0, 1, 497), [1.5, 1.9, 2.0]])
    theta, steps, err, ok, X = block_krylov_top(lambda V: d[:, None] * V, d.size, 3, tol=1e-12,
                                                vectors=True)
    assert ok and X.shape == (500, 3)
    np.testing.assert_allclose(np.abs(X[-3:, :]), np.eye(3)[::-1], atol=1e-5)


def test_rank_bound_reports_an_exact_zero_and_lanczos_lambda_max():
    """A kernel whose structure bounds its rank below N (the last layer's block F F^T) has
    lambda_min = 0 exactly; the solver says so instead of returning round-off."""
    from harness.engine.eigen import extreme_eigenvalues

    rng = np.random.default_rng(3)
    F = rng.standard_normal((300, 40))
    K = F @ F.T
    ref = np.linalg.eigvalsh(K)
    res = extreme_eigenvalues(K, "auto", rank_bound=40)
    assert res.solver == "rank_bound" and res.lambda_min == 0.0 and res.below_floor
    assert res.lambda_max == pytest.approx(ref[-1], rel=1e-8)
    assert abs(ref[0]) < res.floor  # what a solve would have returned: round-off
    # a bound that does not prove singularity changes nothing; eigvalsh is never replaced
    assert extreme_eigenvalues(K + np.eye(300), "auto", rank_bound=400).solver != "rank_bound"
    assert extreme_eigenvalues(K, "eigvalsh", rank_bound=40).solver == "eigvalsh"


def spectra(n):
    """Well- and ill-conditioned test spectra of size n: name -> eigenvalues."""
    return {"well (cond 10)": np.linspace(1.0, 10.0, n),
            "clustered bottom (cond 1e6)": clustered_spectrum(n, seed=11),
            "geometric (cond 1e6)": np.geomspace(1e-3, 1e3, n),
            "ill (cond 1e10)": np.geomspace(1e-7, 1e3, n)}


@pytest.mark.parametrize("name", list(spectra(100)))
def test_every_solver_agrees_with_dense_eigvalsh(name):
    """lambda_min and lambda_max of each solver against scipy's dense eigvalsh: within
    ``tol`` relative plus the round-off floor eps * N * lambda_max (the accuracy of dsyevr
    itself on an ill-conditioned K)."""
    K = spd_with_spectrum(spectra(480)[name], seed=3)
    ref = scipy.linalg.eigvalsh(K)
    floor = np.finfo(np.float64).eps * K.shape[0] * ref[-1]
    for solver in ("tridiagonal", "cholesky_krylov", "auto"):
        res = extreme_eigenvalues(K, solver)
        assert abs(res.lambda_min - ref[0]) <= 1e-8 * ref[0] + floor, (solver, res.lambda_min, ref[0])
        assert abs(res.lambda_max - ref[-1]) <= 1e-8 * ref[-1], (solver, res.lambda_max, ref[-1])
        assert res.below_floor == (res.lambda_min < res.floor)


def test_tridiagonal_matches_dsyevr_subset_on_an_ntk(ntk_kernel):
    """The same LAPACK reduction as scipy's eigvalsh(subset_by_index=[0, 0]): the same number
    to a few ulps of lambda_max."""
    lo = scipy.linalg.eigvalsh(ntk_kernel, subset_by_index=[0, 0])[0]
    hi = scipy.linalg.eigvalsh(ntk_kernel, subset_by_index=[599, 599])[0]
    res = extreme_eigenvalues(ntk_kernel, "tridiagonal")
    eps = np.finfo(np.float64).eps
    assert abs(res.lambda_min - lo) <= 16 * eps * hi
    assert abs(res.lambda_max - hi) <= 16 * eps * hi
    assert res.steps is None and res.estimated_error is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_certificate_brackets_lambda_min(seed, ntk_kernel):
    """A shift-invert result proves ``sigma <= lambda_min`` (the float32 Cholesky of
    K - sigma I succeeded) and reports a Ritz value: an upper bound within ``estimated_error``
    (relative) of lambda_min. Checked against dense eigvalsh on an NTK and on random spectra."""
    kernels = [ntk_kernel, spd_with_spectrum(clustered_spectrum(500, seed=20 + seed), seed=seed)]
    for K in kernels:
        lo = scipy.linalg.eigvalsh(K)[0]
        res = cholesky_krylov(K, seed=seed)
        assert res.extra["method"] == "shift_invert"
        sigma, err = res.extra["sigma"], res.estimated_error
        roundoff = np.finfo(np.float64).eps * K.shape[0] * res.lambda_max
        assert 0 < sigma <= lo
        assert lo - roundoff <= res.lambda_min <= lo * (1 + err) + roundoff
        assert err <= 1e-9
        # the certificate itself: K - sigma I is positive definite, K - lambda I for lambda a
        # little above lambda_min is not
        np.linalg.cholesky(K - sigma * np.eye(K.shape[0]))
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.cholesky(K - lo * (1 + 1e-6) * np.eye(K.shape[0]))


def test_tridiagonal_skips_the_rank_bound_shortcut():
    F = np.random.default_rng(3).standard_normal((300, 40))
    K = F @ F.T
    res = extreme_eigenvalues(K, "tridiagonal", rank_bound=40)
    assert res.solver == "tridiagonal" and abs(res.lambda_min) < res.floor


@pytest.mark.parametrize("dtype, n", [(np.float32, 200), (np.float64, 200), (np.float64, 900)])
def test_shift_invert_leaves_k_unchanged(dtype, n):
    """The shifted factorisation overwrites its float32 copy of K, never K (also for a float32
    K, and for the copy made on two threads from N = CHOLESKY_ONE_THREAD_BELOW on)."""
    spectrum = clustered_spectrum(n) if dtype == np.float64 else np.linspace(1.0, 50.0, n)
    K = spd_with_spectrum(spectrum, seed=n).astype(dtype)  # float32: well above its round-off
    before = K.copy()
    res = cholesky_krylov(K, shift_invert=True)
    assert np.array_equal(K, before)
    assert res.extra["method"] == "shift_invert"
    expected = scipy.linalg.eigvalsh(K.astype(np.float64), subset_by_index=[0, 0])[0]
    assert res.lambda_min == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-9)
