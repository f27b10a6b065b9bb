"""harness/engine/thin_solves.py: K X = V through the Cholesky factor of K, against LAPACK."""
import numpy as np
import pytest
import scipy.linalg

from harness.engine.thin_solves import cholesky_solve_block


def spd(n, seed=0):
    A = np.random.default_rng(seed).standard_normal((n, n))
    return A @ A.T / n + 0.5 * np.eye(n)


def upper_factor(K, dtype):
    """The upper factor with contiguous rows, its strictly lower part NaN (never to be read)."""
    U = np.ascontiguousarray(scipy.linalg.cholesky(K.astype(dtype), lower=False))
    U[np.tril_indices(len(K), -1)] = np.nan
    return U


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 130])
@pytest.mark.parametrize("b", [1, 2, 4, 5, 8])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-11), (np.float32, 2e-4)])
def test_matches_lapack(n, b, dtype, rtol):
    K = spd(n, seed=n + b)
    V = np.random.default_rng(b).standard_normal((n, b))
    U = upper_factor(K, dtype)
    got = cholesky_solve_block(U, np.asfortranarray(V))
    assert got.shape == (n, b) and got.flags.f_contiguous and got.dtype == dtype
    expected = np.linalg.solve(K, V)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    # the same precision as LAPACK's solve with the same factor
    lapack = scipy.linalg.cho_solve((np.triu(np.nan_to_num(U)), False), V.astype(dtype))
    np.testing.assert_allclose(got, lapack, rtol=10 * np.finfo(dtype).eps * n,
                               atol=10 * np.finfo(dtype).eps * n * np.abs(lapack).max())


def test_one_vector_and_any_layout_of_v():
    K = spd(37, seed=3)
    U = upper_factor(K, np.float64)
    v = np.random.default_rng(4).standard_normal(37)
    x = cholesky_solve_block(U, v)
    assert x.shape == (37,)
    np.testing.assert_allclose(K @ x, v, rtol=1e-10, atol=1e-10)
    V = np.random.default_rng(5).standard_normal((37, 6))[:, ::2]  # strided columns
    np.testing.assert_allclose(K @ cholesky_solve_block(U, V), V, rtol=1e-10, atol=1e-10)
    assert np.array_equal(V, np.random.default_rng(5).standard_normal((37, 6))[:, ::2])  # not overwritten


def test_the_factor_of_potrf_serves_as_is():
    """The Fortran-ordered lower factor of potrf (clean=0 leaves K in its other triangle)."""
    K = spd(64, seed=6)
    C, info = scipy.linalg.lapack.dpotrf(np.asfortranarray(K), lower=1, clean=0)
    assert info == 0 and C.flags.f_contiguous
    V = np.random.default_rng(7).standard_normal((64, 4))
    np.testing.assert_allclose(K @ cholesky_solve_block(C.T, V), V, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("U, V, match", [
    (np.eye(3)[:, :2], np.ones((3, 1)), "square"),
    (np.asfortranarray(np.triu(np.ones((3, 3))) + np.eye(3))[:, :], np.ones((3, 1)), "C-contiguous"),
    (np.eye(3, dtype=np.int64), np.ones((3, 1)), "float32 or float64"),
    (np.eye(3), np.ones((4, 1)), "3 rows"),
])
def test_bad_arguments(U, V, match):
    with pytest.raises(ValueError, match=match):
        cholesky_solve_block(U, V)
