"""A cell's data, for experiments: whether its dataset can draw at an input dimension, and the
arrays a cell writes next to its row.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def dataset_problem(dataset: Any, d: int) -> tuple[str, str] | None:
    """``(key, problem)`` if ``dataset`` cannot draw data at input dimension ``d`` (a teacher
    width below 1 there: the dataset's ``problem_at(d)``), else ``None``; for experiments'
    ``check``."""
    check = getattr(dataset, "problem_at", None)
    return check(d) if check is not None else None


def save_arrays(cell: Any, *, X: np.ndarray, K: np.ndarray | None = None, params: Sequence[np.ndarray],
                names: Sequence[str], **extra: Any) -> str | None:
    """Write ``arrays/<cell_id>.npz`` in the run directory (:meth:`CellContext.array_path`):
    ``X`` ``(N, d)``, ``K`` ``(N, N)`` (if given), every parameter under its name (``W1, b1, W2,
    ...``, forward order, the output layer last) and ``extra``; returns the path, or ``None``
    outside a run."""
    path = cell.array_path() if hasattr(cell, "array_path") else None
    if path is None:
        return None
    arrays: dict[str, Any] = {"X": np.asarray(X)}
    if K is not None:
        arrays["K"] = np.asarray(K)
    arrays.update({name: np.asarray(p) for name, p in zip(names, params)})
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return str(path)
