"""Dataset checks: shapes, dtypes, finite, equal seeds equal data, different seeds differ.
"""
from __future__ import annotations

import numpy as np

from harness.plugin.conformance.core import _rng, check


@check("dataset", "shapes and dtypes")
def _dataset_shapes_dtypes(ds) -> str:
    n, d = 13, 5
    for dtype in (np.float64, np.float32):
        X, y = ds.sample(n, d, _rng(30), dtype)
        assert isinstance(X, np.ndarray) and X.shape == (n, d), f"X has shape {np.shape(X)}, expected {(n, d)}"
        assert isinstance(y, np.ndarray) and y.shape == (n,), f"y has shape {np.shape(y)}, expected {(n,)}"
        assert X.dtype == dtype and y.dtype == dtype, \
            f"asked for {np.dtype(dtype).name}, got X {X.dtype} and y {y.dtype}"
        assert np.all(np.isfinite(X)) and np.all(np.isfinite(y)), "non-finite data"
    return "X (13, 5), y (13,), float64 and float32, finite"


@check("dataset", "deterministic")
def _dataset_determinism(ds) -> str:
    X1, y1 = ds.sample(17, 4, _rng(31), np.float64)
    X2, y2 = ds.sample(17, 4, _rng(31), np.float64)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2), "equal seeds gave different data"
    X3, _ = ds.sample(17, 4, _rng(32), np.float64)
    assert not np.array_equal(X1, X3), "different seeds gave equal inputs"
    return "equal seeds equal, different seeds differ"
