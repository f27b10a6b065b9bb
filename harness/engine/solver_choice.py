"""Which eigen-solver ``auto`` runs on an N x N kernel (:func:`auto_solver`), kept apart from the
solvers (:mod:`harness.engine.eigen`, which loads SciPy's LAPACK) so that a cost estimate, made
in a process that reads a benchmark file and computes nothing, can ask without loading LAPACK."""
from __future__ import annotations

AUTO_MIN_N = 450
"""``auto`` uses ``tridiagonal`` below this N, ``cholesky_krylov`` from it on: the crossover
measured on Figure-1 kernels with ``harness bench ntk`` (docs/engine.md)."""


def auto_solver(N: int) -> str:
    """The solver ``auto`` runs first on an N x N kernel."""
    return "cholesky_krylov" if N >= AUTO_MIN_N else "tridiagonal"
