"""harness/engine/thin_products.py: K @ V for a symmetric K and a thin block V, against BLAS."""
import numpy as np
import pytest

from harness.engine.thin_products import symmetric_product, symmetric_times_block


def symmetric(n, seed=0, dtype=np.float64):
    A = np.random.default_rng(seed).standard_normal((n, n))
    return (A + A.T).astype(dtype)


@pytest.mark.parametrize("n", [1, 3, 4, 7, 130])
@pytest.mark.parametrize("b", [1, 2, 4, 5, 8])
def test_matches_blas(n, b):
    K = symmetric(n, seed=n + b)
    V = np.random.default_rng(b).standard_normal((n, b))
    expected = K @ V
    for M in (K, np.asfortranarray(K)):  # both layouts give the rows of a symmetric matrix
        got = symmetric_times_block(M, V)
        assert got.shape == (n, b) and got.flags.f_contiguous
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max())
    np.testing.assert_allclose(symmetric_product(K)(np.asfortranarray(V)), expected, rtol=1e-12,
                               atol=1e-12 * np.abs(expected).max())


def test_other_dtypes_and_layouts_fall_back_to_blas():
    K32 = symmetric(50, dtype=np.float32)
    V = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    np.testing.assert_allclose(symmetric_product(K32)(V), K32 @ V, rtol=1e-5)
    np.testing.assert_allclose(symmetric_times_block(K32, V), K32 @ V, rtol=1e-5)
    K = symmetric(60)
    strided = K[::2, ::2]  # neither C- nor Fortran-contiguous
    Vs = np.random.default_rng(2).standard_normal((30, 2))
    np.testing.assert_allclose(symmetric_times_block(strided, Vs), strided @ Vs, rtol=1e-13)
