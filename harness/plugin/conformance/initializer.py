"""Initializer checks: shapes, dtypes, determinism, per-layer entry variances against
``expected_variances()`` (within :data:`~.core.N_SE` standard errors), biases.
"""
from __future__ import annotations

import math

import numpy as np

from harness.plugin.conformance.core import N_SE, Skip, _rng, check

DEFAULT_INIT_SHAPES = [(400, 200), (600, 400), (1, 600)]
"""Shapes the initializer checks draw with: fan-in differs from fan-out in every layer, so that
a variance scaled by the wrong one is caught."""


N_INIT_DRAWS = 16


def _init_shapes(cls) -> list[tuple[int, int]]:
    shapes = cls.example_shapes if getattr(cls, "example_shapes", None) else DEFAULT_INIT_SHAPES
    return [(int(n), int(m)) for n, m in shapes]


def _init_args(subject) -> tuple:
    return subject.instance, _init_shapes(subject.cls)


@check("initializer", "shapes and dtypes", args=_init_args)
def _initializer_shapes_dtypes(init, shapes) -> str:
    for dtype in (np.float64, np.float32):
        weights = init.initialize(shapes, _rng(10), dtype)
        assert isinstance(weights, list) and len(weights) == len(shapes), \
            f"expected a list of {len(shapes)} arrays, got {type(weights).__name__} of {len(weights)}"
        for l, (W, shape) in enumerate(zip(weights, shapes)):
            assert isinstance(W, np.ndarray), f"layer {l} is {type(W).__name__}, not an ndarray"
            assert W.shape == shape, f"layer {l} has shape {W.shape}, expected {shape}"
            assert W.dtype == dtype, f"layer {l} has dtype {W.dtype}, expected {np.dtype(dtype).name}"
            assert np.all(np.isfinite(W)), f"layer {l} has non-finite entries"
    return f"shapes {shapes}, float64 and float32, finite"


@check("initializer", "deterministic", args=_init_args)
def _initializer_determinism(init, shapes) -> str:
    a = init.initialize(shapes, _rng(11), np.float64)
    b = init.initialize(shapes, _rng(11), np.float64)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "equal seeds gave different weights"
    c = init.initialize(shapes, _rng(12), np.float64)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c)), "different seeds gave equal weights"
    return "equal seeds equal, different seeds differ"


@check("initializer", "entry variances", args=_init_args)
def _initializer_variances(init, shapes) -> str:
    expected = init.expected_variances(shapes)
    assert len(expected) == len(shapes), f"expected_variances has {len(expected)} items for {len(shapes)} layers"
    if all(v is None for v in expected):
        raise Skip("expected_variances() gives no fixed variance")
    draws = [init.initialize(shapes, _rng(13, k), np.float64) for k in range(N_INIT_DRAWS)]
    lines = []
    for l, v_exp in enumerate(expected):
        if v_exp is None:
            continue
        layers = [d[l].ravel() for d in draws]
        per_draw = np.array([np.var(w) for w in layers])
        pooled = np.concatenate(layers)
        v_hat = per_draw.mean()
        # Standard error: the larger of the spread across independent draws (valid even when
        # entries within a draw are dependent) and the independent-entries formula
        # sqrt((m4 - var^2) / n) (valid when they are not).
        m4 = np.mean((pooled - pooled.mean()) ** 4)
        se_entries = math.sqrt(max(m4 - v_hat ** 2, 0.0) / pooled.size)
        se_draws = per_draw.std(ddof=1) / math.sqrt(len(per_draw))
        se = max(se_entries, se_draws)
        tol = N_SE * se + 1e-9 * abs(v_exp)
        line = f"layer {l}: {v_hat:.5g} +- {se:.2g} vs expected {v_exp:.5g}"
        assert abs(v_hat - v_exp) <= tol, line + f" (off by {abs(v_hat - v_exp) / max(se, 1e-300):.1f} SE)"
        lines.append(line)
    return "; ".join(lines)


@check("initializer", "biases", args=_init_args)
def _initializer_biases(init, shapes) -> str:
    bias_shapes = [(n, 1) for n, _ in shapes]
    for dtype in (np.float64, np.float32):
        biases = init.initialize_biases(bias_shapes, _rng(14), dtype)
        assert isinstance(biases, list) and len(biases) == len(bias_shapes), \
            f"initialize_biases: expected a list of {len(bias_shapes)} arrays"
        for l, (b, shape) in enumerate(zip(biases, bias_shapes)):
            assert isinstance(b, np.ndarray) and b.shape == shape and b.dtype == dtype, \
                (f"bias {l}: {getattr(b, 'shape', None)} {getattr(b, 'dtype', None)}, "
                 f"expected {shape} {np.dtype(dtype).name}")
            assert np.all(np.isfinite(b)), f"bias {l} has non-finite entries"
    a = init.initialize_biases(bias_shapes, _rng(15), np.float64)
    b = init.initialize_biases(bias_shapes, _rng(15), np.float64)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "equal seeds gave different biases"
    expected = init.expected_bias_variances(bias_shapes)
    assert len(expected) == len(bias_shapes), "expected_bias_variances has the wrong length"
    for l, v in enumerate(expected):
        if v is None:
            continue
        if v == 0:
            assert not a[l].any(), f"bias {l}: expected zeros"
            continue
        draws = np.concatenate([init.initialize_biases(bias_shapes, _rng(16, k), np.float64)[l].ravel()
                                for k in range(4 * N_INIT_DRAWS)])
        se = math.sqrt(max(np.mean((draws - draws.mean()) ** 4) - np.var(draws) ** 2, 0.0) / draws.size)
        assert abs(np.var(draws) - v) <= N_SE * se + 1e-9 * v, \
            f"bias {l}: variance {np.var(draws):.4g} vs expected {v:.4g}"
    return f"bias shapes {bias_shapes}, dtypes, deterministic, variances {expected}"
