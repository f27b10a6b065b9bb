"""Activation checks: shapes and float32/float64 dtypes kept, vectorised, finite for large
``|x|``, ``dphi`` / ``d2phi`` against central finite differences away from kinks.
"""
from __future__ import annotations

import warnings

import numpy as np

from harness.plugin.components import Activation
from harness.plugin.conformance.core import _rng, check


@check("activation", "shapes kept")
def _activation_shapes(act: Activation) -> str:
    rng = _rng(1)
    for shape in [(), (7,), (3, 4, 5), (0,), (2, 0)]:
        x = rng.standard_normal(shape)
        for fname in ("phi", "dphi", "d2phi"):
            out = getattr(act, fname)(x)
            assert np.shape(out) == shape, f"{fname} maps shape {shape} to {np.shape(out)}"
    return "shapes (), (7,), (3,4,5), (0,), (2,0) kept"


@check("activation", "dtypes kept")
def _activation_dtypes(act: Activation) -> str:
    x = _rng(2).standard_normal(11)
    for dtype in (np.float32, np.float64):
        for fname in ("phi", "dphi", "d2phi"):
            out = np.asarray(getattr(act, fname)(x.astype(dtype)))
            assert out.dtype == dtype, f"{fname} turns {np.dtype(dtype).name} into {out.dtype}"
    return "float32 and float64 kept"


@check("activation", "vectorised")
def _activation_vectorised(act: Activation) -> str:
    x = np.concatenate([_rng(3).uniform(-5, 5, 40), [0.0, -1.0, 1.0]])
    for fname in ("phi", "dphi", "d2phi"):
        f = getattr(act, fname)
        whole = np.asarray(f(x))
        single = np.array([np.asarray(f(x[i:i + 1])).reshape(()) for i in range(x.size)])
        assert np.allclose(whole, single, rtol=1e-12, atol=1e-300, equal_nan=True), \
            f"{fname} on an array differs from {fname} element by element"
    return "array results equal element-wise results"


@check("activation", "large inputs")
def _activation_large_inputs(act: Activation) -> str:
    x = np.array([-1000.0, -710.0, -100.0, -30.0, 30.0, 100.0, 710.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            for fname in ("phi", "dphi", "d2phi"):
                out = np.asarray(getattr(act, fname)(x))
                assert np.all(np.isfinite(out)), f"{fname} is not finite at {x[~np.isfinite(out)]}"
    return "finite, no overflow or invalid-value warnings for |x| up to 1000"


def _fd_points() -> np.ndarray:
    return np.concatenate([_rng(4).uniform(-6, 6, 400), [0.0, -12.0, 12.0, -20.0, 20.0]])


@check("activation", "d2phi vs finite differences",
       args=lambda s: (s.instance.dphi, s.instance.d2phi, _fd_points(), "d2phi"))
@check("activation", "dphi vs finite differences",
       args=lambda s: (s.instance.phi, s.instance.dphi, _fd_points(), "dphi"))
def _finite_difference_check(f, df, x: np.ndarray, what: str, rtol: float = 1e-6,
                             min_smooth: float = 0.95) -> str:
    """Compare ``df(x)`` with central differences of ``f`` at the points where the two
    one-sided differences agree (no kink within a step)."""
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    fp, f0, fm = (np.asarray(f(x + h), float), np.asarray(f(x), float), np.asarray(f(x - h), float))
    right, left = (fp - f0) / h, (f0 - fm) / h
    central = (fp - fm) / (2 * h)
    smooth = np.abs(right - left) <= 1e-2 * (1 + np.abs(central))
    assert smooth.mean() >= min_smooth, \
        f"{what}: one-sided differences disagree at {np.sum(~smooth)} of {x.size} points (not differentiable?)"
    analytic = np.asarray(df(x), float)
    err = np.abs(analytic - central)
    tol = rtol * (1 + np.abs(central))
    bad = smooth & ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad)[np.argmax((err / tol)[bad])]
        raise AssertionError(f"{what}: at x = {x[i]:.6g} analytic {analytic[i]:.10g}, finite "
                             f"difference {central[i]:.10g} ({bad.sum()} bad point(s))")
    return f"{what}: agrees to {rtol:g} at {smooth.sum()} points ({np.sum(~smooth)} at kinks skipped)"
