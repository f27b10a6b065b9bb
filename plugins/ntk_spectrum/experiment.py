"""NTK spectrum at initialisation: Bombari, Amani and Mondelli (NeurIPS 2022), Figure 1.

``ntk_spectrum`` draws ``N`` inputs from the dataset slot (stream ``"data"``) and a network
from the architecture and initializer slots (stream ``"init"``), computes the empirical NTK
Gram matrices named in ``kernels`` on the backend slot (``numba``, the default, is
:func:`harness.engine.ntk.ntk_kernels`; ``torch`` runs the same formula on a torch device) and their
extreme eigenvalues with :func:`harness.engine.eigen.extreme_eigenvalues`.

Kernels: ``"full"`` is ``K = J J^T`` over every trainable parameter (the paper's figure);
``"W1"``, ``"W2"``, ... is the block ``K_l`` of one weight matrix (1-based; ``"W2"`` is what the
script published with the paper computes, about 30 times smaller than the full K at the
paper's sizes); ``"b1"``, ``"b2"``, ... the block of a bias (networks with biases). Any
architecture works: the structured engine for networks it describes (biases, residual blocks,
:mod:`harness.engine.network`), the generic autograd path for any other forward; the metric
``ntk_path`` says which. With ``save_arrays = true`` the cell writes ``arrays/<cell_id>.npz``
in the run directory: ``X``, the full ``K`` and the parameters ``W1, b1, W2, ...`` in forward
order (the output layer last, ``(1, n)``). Metrics per kernel ``k``: ``lambda_min_k``, ``lambda_max_k``, ``trace_k``,
``floor_k`` (``eps * N * lambda_max``), ``below_floor_k`` (lambda_min below the round-off floor:
numerically singular), ``condition_k``, ``solver_k`` (the solver that produced the numbers),
``fallback_k`` (why ``auto`` fell back from ``cholesky_krylov``, if it did), ``steps_k``; plus ``N``, ``d``,
``d2``, ``P`` (trainable parameters) and ``L``. Wall-clock times go to the row's ``timings``
(``ntk_seconds``, ``solver_seconds_k``; the engine's kernels are compiled once per process
before the clock starts, ``warmup_seconds``), never to its metrics. The row's ``resolved``
holds the hidden widths (``architecture.widths``, also written into the row's components) and
the layers each kernel sums (``kernel_layers``). ``krylov_block`` is unset by default: the
solver then uses its own tuned block (what the speed table in the README measures).

Kernels are checked against the network when the file is loaded (``kernels = ["W9"]`` on a
three-layer network is refused then, as is a width expression below 1 at some ``d``).

All kernels of a cell come from one engine pass (:func:`harness.engine.ntk.ntk_kernels`: one
forward and backward pass, each layer's Gram block computed once and summed into every kernel
that contains it), so ``kernels = ["full", "W1", "W2", "W3"]`` costs one pass plus one
eigen-solve per kernel; ``full`` is, to round-off, the sum of the blocks (``trace_full`` is
the sum of the blocks' traces, and by Weyl's inequality ``lambda_min_full`` is at least the sum
of the blocks' ``lambda_min``).

Figures: for each kernel, lambda_min against d^2 with one line per N (mean +- 1 std over
repetitions) and a least-squares line through all repetitions per N, whose slope and 95%
bootstrap confidence interval are in the legend (Theorem 3.1: lambda_min grows linearly in
d^2 = n_{L-2} n_{L-1} once N polylog N = o(d^2)). With two or more kernels, also
``lambda_min_per_layer``: one column per N; top, one line per kernel (the full K and each
block, mean +- 1 std) with its least-squares slope per unit d^2; bottom, each block's share
lambda_min(K_block) / lambda_min(K) (a flat share next to a linearly growing full K: the block
grows like d^2 too). Rows below the round-off floor are not drawn but counted in the legend
(K_W3 = F_2 F_2^T has rank <= n_2, singular whenever n_2 < N). Kernels are ordered naturally:
full, W1, W2, ..., W10. Any other grid axis (architecture, activation, ...) is never pooled:
lines get one colour per value (:func:`harness.plugin.series.split_rows`; line style: N) and the
per-layer figure is drawn once per value.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness.plugin import Experiment, Param, dataset_problem, hidden_widths_resolved, save_arrays

from .costs import _widths, spectrum_cost
from .figures import _lambda_min_figure, _per_layer_figure
from .kernels import _check_kernels, _parameter_layers, kernel_order, kernel_params

DTYPES = ("float64", "float32")


class NTKSpectrum(Experiment):
    name = "ntk_spectrum"
    help = "extreme eigenvalues of the empirical NTK Gram matrix (full and per-layer) at initialisation"
    slots = {"activation": ("activation", "sigmoid"), "architecture": ("architecture", "fc"),
             "initializer": ("initializer", "fan_in_gaussian"), "dataset": ("dataset", "gaussian"),
             "backend": ("backend", "numba")}
    params = (
        Param("N", int, help="number of samples", min=1),
        Param("d", int, help="input dimension", min=1),
        Param("kernels", list, ["full"], "kernels to compute: 'full' (all trainable weights) and/or "
              "per-layer blocks 'W1', 'W2', ... (1-based)", item_type=str, min_length=1,
              check=_check_kernels),
        Param("solver", str, "auto", "eigen-solver: 'auto' (chosen by N: 'tridiagonal' for small N, "
              "'cholesky_krylov' for large N, falling back to 'tridiagonal'), 'cholesky_krylov', "
              "'tridiagonal' (LAPACK reduction and bisection, the two extremes) or the reference "
              "'eigvalsh' (every eigenvalue)",
              choices=("auto", "eigvalsh", "tridiagonal", "cholesky_krylov")),
        Param("dtype", str, "float64", "floating type of data, weights and kernels", choices=DTYPES),
        Param("krylov_block", int, None, "block size of the Krylov iteration (unset: the solver's own, "
              "tuned default)", min=1),
        Param("tol", float, 1e-9, "relative tolerance of the Krylov iteration on lambda_min",
              min=1e-15, max=1e-2),
        Param("save_arrays", bool, False, "write arrays/<cell_id>.npz in the run directory: X, the "
              "full K and every parameter (W1, b1, W2, ... in forward order)"),
    )
    example = {"params": {"N": 300, "d": 12, "kernels": ["full", "W2"]},
               "components": {"architecture": {"name": "fc", "params": {"widths": [24, 16]}},
                              "dataset": {"name": "gaussian", "params": {"targets": "zero"}}}}

    @classmethod
    def metric_names(cls, params, components):
        """``N``, ``d``, ``d2``, ``P``, ``L``, ``ntk_path`` and, per kernel ``k``, the spectrum's
        metrics (:attr:`harness.engine.eigen.SpectrumResult.METRICS`: ``lambda_min_k``, ...)."""
        from harness.engine.eigen import SpectrumResult

        return ("N", "d", "d2", "P", "L", "ntk_path") + tuple(
            f"{m}_{k}" for k in params["kernels"] for m in SpectrumResult.METRICS)

    def check(self, params, components):
        """The kernels name layers the network has; widths and the dataset work at this d."""
        arch = components["architecture"]
        arch.layer_shapes(self.d)  # a width below 1 at this d: SpecError
        problem = arch.problem(self.d)
        if problem:
            return "architecture", problem
        model = arch.model(self.d)
        try:
            kernel_params(self.kernels, model)
        except ValueError as exc:
            return "kernels", str(exc)
        backend = components.get("backend")
        if backend is not None and not backend.supports_model(model):
            return "backend", (f"backend {backend.name!r} cannot compute this network "
                               f"({arch.ntk_path(self.d)} path); use backend 'numba'")
        return dataset_problem(components.get("dataset"), self.d)

    def run(self, cell) -> dict:
        import time

        from harness.engine.eigen import extreme_eigenvalues
        N, d, dtype = self.N, self.d, np.dtype(self.dtype)
        arch = cell.architecture
        model = arch.model(d)
        shapes = arch.layer_shapes(d)
        pshapes = model.parameter_shapes()
        groups = kernel_params(self.kernels, model)
        save = self.save_arrays and "full" not in groups
        if save:  # the saved K is always the full one
            groups["full"] = kernel_params(["full"], model)["full"]
        X, _ = cell.dataset.sample(N, d, cell.rng("data"), dtype=dtype)
        params = arch.init_parameters(d, cell.initializer, cell.rng("init"), dtype=dtype)
        warmup = _warm_up_kernels(cell.backend, cell.activation, shapes, dtype)
        t0 = time.perf_counter()
        kernels, path = cell.backend.model_kernels(model, params, X, cell.activation, groups, dtype)
        timings = {"ntk_seconds": time.perf_counter() - t0}
        if warmup:
            timings["warmup_seconds"] = warmup
        if self.save_arrays:
            save_arrays(cell, X=X, K=kernels["full"], params=params, names=model.parameter_names())
        if save:
            del kernels["full"], groups["full"]
        out: dict[str, Any] = {"N": N, "d": d, "d2": d * d, "P": arch.param_count(d), "L": len(shapes),
                               "ntk_path": path}
        for name in list(kernels):
            K = kernels.pop(name)
            # K = J J^T over the kernel's parameters: its rank is at most their number
            rank_bound = sum(int(np.prod(pshapes[p])) for p in groups[name])
            res = extreme_eigenvalues(K, self.solver, block=self.krylov_block, tol=self.tol,
                                      rank_bound=rank_bound)
            del K
            metrics = res.metrics("_" + name)
            timings[f"solver_seconds_{name}"] = metrics.pop(f"solver_seconds_{name}")
            out.update(metrics)
        out["timings"] = timings
        names, layer_of = model.parameter_names(), _parameter_layers(model)
        out["resolved"] = {**hidden_widths_resolved(arch, shapes),
                           "kernel_layers": {k: sorted({layer_of[p] for p in v}) for k, v in groups.items()}}
        if len(names) != len(shapes):  # biases: name the parameters each kernel sums
            out["resolved"]["kernel_params"] = {k: [names[p] for p in v] for k, v in groups.items()}
        return out

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        p = {prm.name: prm.default for prm in self.params}
        p.update(cell_params)
        d = int(p["d"])
        generic_P = None
        try:  # the cell's configured architecture when bound (any architecture), else the fc widths
            arch = self.context.components["architecture"]
            widths = [n for n, _ in arch.layer_shapes(d)[:-1]]
            generic_P = arch.param_count(d, trainable_only=False) if arch.ntk_path(d) == "generic" else None
        except Exception:
            widths = _widths(components, d)
        return spectrum_cost(p, [d] + widths + [1], generic_P)

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        ok = [r for r in rows if r.get("status") == "ok" and r.get("metrics")]
        kernels = kernel_order({k[len("lambda_min_"):] for r in ok for k in r["metrics"]
                                if k.startswith("lambda_min_")})
        from harness.plugin.series import slug, split_rows

        # any grid axis besides N and d (architecture, activation, ...) gets its own lines
        groups = split_rows(ok, lambda r: (int(r["metrics"]["N"]), int(r["metrics"]["d"])))
        out = {f"lambda_min_{k}": _lambda_min_figure(ok, k, context, groups) for k in kernels}
        if len(kernels) >= 2:
            for i, (label, part) in enumerate(groups):
                suffix = f"-{slug(label, i + 1)}" if label else ""
                part_kernels = [k for k in kernels if any(f"lambda_min_{k}" in r["metrics"] for r in part)]
                out["lambda_min_per_layer" + suffix] = _per_layer_figure(part, part_kernels, context, label)
        return out

    def tables(self, rows: Sequence[Mapping[str, Any]], context) -> list:
        """lambda_min against d^2 per N and kernel: slopes with intervals, values at the largest d
        (:func:`harness_plugins.ntk_spectrum.tables.spectrum_tables`)."""
        from .tables import spectrum_tables

        return spectrum_tables(rows, context)


def _warm_up_kernels(backend, activation, shapes, dtype) -> float:
    """Compile the backend's NTK kernels for this activation, depth and dtype once per process
    (on a tiny bias-free chain: the structured engine's kernels are the same for every network),
    so that compilation stays out of ``ntk_seconds``; returns the seconds spent (0.0 when
    already done)."""
    from harness import warm_up

    key = ("ntk_kernels", type(backend).__name__, repr(backend), type(activation).__name__, repr(activation),
           len(shapes), str(np.dtype(dtype)))

    def run():
        rng = np.random.default_rng(0)
        sizes = [3] + [3] * (len(shapes) - 1) + [1]
        tiny = [rng.standard_normal((sizes[l + 1], sizes[l])).astype(dtype) for l in range(len(shapes))]
        L = len(tiny)
        backend.ntk_kernels(tiny, rng.standard_normal((4, 3)).astype(dtype), activation,
                            {"full": None, **{f"W{l}": [l] for l in range(1, L + 1)}}, dtype)

    return warm_up(key, run)
