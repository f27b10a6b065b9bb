"""Architecture checks: layer shapes chain from d to 1, the counts agree, ``forward`` gives
``(N,)``, and the engine's NTK equals ``J J^T`` from an independent derivative: autograd for
the structured path, central finite differences for the generic (autograd) path.
"""
from __future__ import annotations

import numpy as np

from harness.plugin.conformance.core import Skip, _gaussian_weights, _rng, _Tanh, check

ARCH_DIMS = (3, 8)


@check("architecture", "layer shapes")
def _architecture_shapes(arch) -> str:
    from harness.engine.network import Network

    out = []
    for d in ARCH_DIMS:
        problem = arch.problem(d)
        assert problem is None, f"d = {d}: {problem}"
        net = arch.network(d)
        shapes = arch.layer_shapes(d)
        assert len(shapes) >= 1, f"d = {d}: no layers"
        for l, s in enumerate(shapes):
            assert len(s) == 2 and all(isinstance(v, (int, np.integer)) and v >= 1 for v in s), \
                f"d = {d}: layer {l} shape {s} is not two integers >= 1"
        if net is None:  # any forward (generic path): shapes of its parameter arrays
            out.append(f"d={d}: generic forward, parameters {shapes}")
            continue
        assert isinstance(net, Network), f"d = {d}: network() returned {type(net).__name__}"
        assert shapes[0][1] == d, f"d = {d}: first layer has fan-in {shapes[0][1]}"
        for l in range(1, len(shapes)):
            assert shapes[l][1] == shapes[l - 1][0], f"d = {d}: layer {l} fan-in {shapes[l][1]} != " \
                                                     f"layer {l - 1} fan-out {shapes[l - 1][0]}"
        assert shapes[-1][0] == 1, f"d = {d}: output layer has {shapes[-1][0]} outputs, expected n_L = 1"
        out.append(f"d={d}: {net.describe()}")
    return "; ".join(out)


@check("architecture", "trainable and param_count", after="layer shapes")
def _architecture_counts(arch) -> str:
    for d in ARCH_DIMS:
        shapes = arch.layer_shapes(d)
        mask = arch.trainable(d)
        assert len(mask) == len(shapes), f"d = {d}: trainable has {len(mask)} items for {len(shapes)} layers"
        assert all(isinstance(t, (bool, np.bool_)) for t in mask), f"d = {d}: trainable must hold bools"
        pshapes, pmask = arch.parameter_shapes(d), arch.parameter_trainable(d)
        names = arch.parameter_names(d)
        assert len(pshapes) == len(pmask) == len(names), f"d = {d}: parameter shapes, flags and names differ in length"
        total = sum(int(np.prod(s)) for s in pshapes)
        trained = sum(int(np.prod(s)) for s, t in zip(pshapes, pmask) if t)
        assert arch.param_count(d, trainable_only=False) == total, \
            f"d = {d}: param_count(all) = {arch.param_count(d, trainable_only=False)}, shapes give {total}"
        assert arch.param_count(d) == trained, \
            f"d = {d}: param_count(trainable) = {arch.param_count(d)}, shapes and mask give {trained}"
    return "trainable and param_count consistent with the parameter shapes"


@check("architecture", "forward", after="layer shapes")
def _architecture_forward(arch) -> str:
    act = _Tanh()
    for d in ARCH_DIMS:
        rng = _rng(20, d)
        params = _gaussian_weights(arch.parameter_shapes(d), rng)
        X = rng.standard_normal((6, d))
        out = np.asarray(arch.forward(params, X, act))
        assert out.shape == (6,), f"d = {d}: forward gives shape {out.shape}, expected (6,)"
        assert np.all(np.isfinite(out)), f"d = {d}: forward is not finite"
        net = arch.network(d)
        if net is not None:
            ref = net.forward(params, X, act)
            assert np.allclose(out, ref, rtol=1e-10, atol=1e-12), \
                f"d = {d}: forward differs from its network's by {np.max(np.abs(out - ref)):.3g}"
    return "output (N,), equal to its network's forward where it describes one"


FD_TOLERANCE = 1e-6
"""Largest relative error allowed between the generic path's NTK and J J^T from central finite
differences (their own error is about 1e-9 at the step :func:`finite_difference_jacobian` takes)."""


def finite_difference_jacobian(forward, params, X: np.ndarray, activation) -> np.ndarray:
    """``J`` (N, P): central differences of ``forward(params, X, activation)`` (plain NumPy, no
    automatic differentiation) in every parameter entry, flattened row-major in parameter order,
    with the step ``1e-5 max(1, |theta|)`` (error O(step^2))."""
    params = [np.array(p, dtype=np.float64) for p in params]
    columns = []
    for p in params:
        for idx in np.ndindex(p.shape):
            h = 1e-5 * max(1.0, abs(p[idx]))
            saved = p[idx]
            p[idx] = saved + h
            up = np.asarray(forward(params, X, activation), dtype=np.float64).reshape(-1)
            p[idx] = saved - h
            down = np.asarray(forward(params, X, activation), dtype=np.float64).reshape(-1)
            p[idx] = saved
            columns.append((up - down) / (2 * h))
    return np.stack(columns, axis=1)


@check("architecture", "NTK against an independent Jacobian", after="forward")
def _architecture_ntk(arch) -> str:
    """The NTK the engine computes for this architecture equals J J^T from an independent
    derivative of the architecture's own ``forward``: J by autograd for the structured path
    (the engine's formula never differentiates the forward), J by central finite differences
    for the generic path (whose NTK autograd computes)."""
    from harness.engine.generic import generic_jacobian, generic_kernels
    from harness.engine.ntk import network_kernels

    act = _Tanh()
    lines = []
    for d in ARCH_DIMS:
        rng = _rng(21, d)
        params = _gaussian_weights(arch.parameter_shapes(d), rng)
        if sum(int(np.prod(s)) for s in arch.parameter_shapes(d)) > 4000:
            raise Skip(f"more than 4000 parameters at d = {d}")
        X = rng.standard_normal((7, d))
        net = arch.network(d)
        if net is None:
            K = generic_kernels(arch.forward, params, X, act, {"K": None})["K"]
            J = finite_difference_jacobian(arch.forward, params, X, act)
            ref = J @ J.T
            err = np.max(np.abs(K - ref)) / max(np.abs(ref).max(), 1e-300)
            assert err <= FD_TOLERANCE, (f"d = {d}: generic NTK differs from finite differences' J J^T by "
                                         f"{err:.3g} (relative; at most {FD_TOLERANCE:g})")
            lines.append(f"d={d}: generic NTK = finite-difference J J^T to {err:.1e}")
            continue
        J = generic_jacobian(arch.forward, params, X, act)
        ref = J @ J.T
        K = network_kernels(net, params, X, act, {"K": None})["K"]
        err = np.max(np.abs(K - ref)) / max(np.abs(ref).max(), 1e-300)
        assert err <= 1e-9, f"d = {d}: structured NTK differs from autograd's J J^T by {err:.3g} (relative)"
        lines.append(f"d={d}: structured NTK = J J^T to {err:.1e}")
    return "; ".join(lines)
