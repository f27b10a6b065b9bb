"""Cost estimates of ``ntk_spectrum`` cells, from the NTK and eigen-solver rates
:mod:`harness.plugin.costs` measures on this machine.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def spectrum_cost(p: Mapping[str, Any], sizes: Sequence[int], generic_P: int | None = None) -> dict:
    """Memory (bytes) and seconds of one cell with the experiment's parameters ``p`` (defaults
    filled in) on a network of layer sizes ``sizes = [d, n_1, ..., 1]``: the Gram matrices and
    one eigen-solve per kernel (a dense reduction where the solver, or ``auto`` at this N, takes
    one), and the kernels' compilation as a once-per-process set-up cost. ``generic_P``: the
    parameter count of a network on the generic (autograd) path, priced from its own probe
    (:func:`harness.plugin.costs.generic_ntk_seconds`) instead of the structured formula."""
    N = int(p["N"])
    n_kernels = len(p["kernels"])
    from harness.engine.solver_choice import auto_solver  # not .eigen: no LAPACK to load here
    from harness.plugin import costs  # rates calibrated on this machine

    if generic_P is None:
        seconds = costs.ntk_seconds(N, sizes, n_kernels)
    else:
        seconds = costs.generic_ntk_seconds(N, generic_P, n_kernels)
    solver = auto_solver(N) if p["solver"] == "auto" else p["solver"]
    if solver in ("eigvalsh", "tridiagonal"):
        seconds += n_kernels * 4.0 * N ** 3 / costs.ntk_rates()["gemm_flops_per_s"]
    if p["dtype"] == "float32":
        seconds *= 0.6
    itemsize = 4 if p["dtype"] == "float32" else 8
    return {"memory_bytes": costs.ntk_memory_bytes(N, sizes, n_kernels, itemsize),
            "seconds": float(seconds), "setup_key": "ntk_kernels",
            "setup_seconds": costs.ntk_rates()["setup_s"]}


def _widths(components, d: int) -> list[int]:
    """Hidden widths of the architecture slot (``fc`` default ``[d, d]``), for estimates."""
    arch = (components or {}).get("architecture") or {}
    widths = (arch.get("params") or {}).get("widths", ["d", "d"])
    out = []
    for w in widths:
        if isinstance(w, int):
            out.append(w)
        else:
            from harness.plugin.expressions import evaluate

            try:
                out.append(int(evaluate(str(w), {"d": d})))
            except Exception:
                out.append(d)
    return out
