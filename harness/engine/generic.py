"""The generic path: NTK and gradients of *any* forward, by automatic differentiation.

An architecture whose forward the structured engine cannot express (it overrides
``Architecture.forward`` without describing itself as a :class:`~harness.engine.network.Network`)
still runs: its forward ``f(params, X, activation) -> (N,)`` is differentiated by ``autograd``
with respect to its parameter arrays. The activation enters as an autograd primitive whose
derivative is the plugin's ``dphi`` (so any activation plugin works); the forward must be written
with array operators (``@``, ``+``, ``*``, indexing), ``activation.phi`` and ``autograd.numpy``
functions (``harness.engine.generic.anp``) -- a plain ``numpy`` function applied to a traced
array fails loudly (:class:`GenericPathError`), never silently.

- :func:`generic_jacobian`: ``J = d f / d theta`` (N, P) over the chosen parameters, one reverse
  pass per sample in chunks of rows (``autograd.jacobian`` on a chunk of ``chunk`` rows);
- :func:`generic_kernels`: ``{name: J_g J_g^T}`` for groups of parameters;
- :class:`GenericGradientEngine`: ``loss_and_grads`` / ``predict`` with the interface of
  :class:`harness.engine.gradients.GradientEngine` (one forward and one vector-Jacobian product
  per evaluation).

Slower than the structured engine (Python-level tracing, N reverse passes for J), exact to
round-off. Rows computed this way say ``ntk_path = "generic"``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import autograd.numpy as anp  # noqa: F401  (re-exported for plugin forwards)
import numpy as np

from .problem import GradientResult

__all__ = ["anp", "GenericPathError", "autograd_activation", "generic_jacobian", "generic_kernels",
           "GenericGradientEngine"]


class GenericPathError(RuntimeError):
    """The forward could not be differentiated by autograd."""


class _TracedActivation:
    """An activation whose ``phi`` is an autograd primitive with derivative ``dphi``."""

    jit_code = None

    def __init__(self, activation) -> None:
        from autograd.extend import defvjp, primitive

        self.base = activation
        self.name = getattr(activation, "name", type(activation).__name__)
        phi = primitive(lambda x: activation.phi(x))
        defvjp(phi, lambda ans, x: lambda g: g * activation.dphi(x))
        self.phi = phi
        self.dphi = activation.dphi

    def __getattr__(self, name):
        return getattr(self.base, name)


def autograd_activation(activation):
    """``activation`` with a ``phi`` autograd can differentiate (derivative: its ``dphi``)."""
    return activation if isinstance(activation, _TracedActivation) else _TracedActivation(activation)


def _call(forward: Callable, params, X, activation):
    try:
        return anp.reshape(forward(params, X, activation), (-1,))
    except (TypeError, ValueError, AttributeError) as exc:
        raise GenericPathError(
            f"the architecture's forward cannot be differentiated on the generic path ({type(exc).__name__}: "
            f"{exc}); write it with array operators, activation.phi and autograd.numpy "
            f"(harness.engine.generic.anp) instead of plain numpy functions") from exc


def generic_jacobian(forward: Callable, params: Sequence[np.ndarray], X: np.ndarray, activation,
                     wanted: Sequence[int] | None = None, chunk: int = 16) -> np.ndarray:
    """``J`` (N, sum of the sizes of ``wanted``) of ``forward(params, X, activation)`` with
    respect to the parameters ``wanted`` (0-based; ``None``: all), flattened row-major and
    concatenated in order."""
    from autograd import jacobian as ag_jacobian

    params = [np.asarray(p, dtype=np.float64) for p in params]
    X = np.asarray(X, dtype=np.float64)
    wanted = list(range(len(params))) if wanted is None else sorted({int(p) for p in wanted})
    act = autograd_activation(activation)
    sizes = [params[p].size for p in wanted]
    shapes = [params[p].shape for p in wanted]

    def f(theta, Xc):
        chosen, pos = {}, 0
        for p, n, s in zip(wanted, sizes, shapes):
            chosen[p] = anp.reshape(theta[pos:pos + n], s)
            pos += n
        return _call(forward, [chosen.get(i, params[i]) for i in range(len(params))], Xc, act)

    theta0 = np.concatenate([params[p].ravel() for p in wanted]) if wanted else np.zeros(0)
    jac = ag_jacobian(f)
    N = X.shape[0]
    J = np.empty((N, theta0.size))
    for r0 in range(0, N, chunk):
        J[r0:r0 + chunk] = np.asarray(jac(theta0, X[r0:r0 + chunk])).reshape(-1, theta0.size)
    return J


def generic_kernels(forward: Callable, params: Sequence[np.ndarray], X: np.ndarray, activation,
                    groups: Mapping[str, Sequence[int] | None], dtype=np.float64) -> dict[str, np.ndarray]:
    """``{name: J_g J_g^T}`` (N, N) for groups of 0-based parameter indices (``None``: all),
    from one Jacobian over every parameter any group needs."""
    n = len(params)
    resolved = {k: (list(range(n)) if v is None else sorted({int(p) for p in v})) for k, v in groups.items()}
    needed = sorted({p for v in resolved.values() for p in v})
    J = generic_jacobian(forward, params, X, activation, needed)
    offsets, pos = {}, 0
    for p in needed:
        offsets[p] = (pos, pos + int(np.size(params[p])))
        pos += int(np.size(params[p]))
    out = {}
    for name, ps in resolved.items():
        cols = np.concatenate([np.arange(*offsets[p]) for p in ps])
        Jg = J[:, cols]
        out[name] = np.asarray(Jg @ Jg.T, dtype=dtype)
    return out


class GenericGradientEngine:
    """Loss and gradients of ``forward`` by autograd, with the interface of
    :class:`harness.engine.gradients.GradientEngine` (``loss_and_grads``, ``predict``)."""

    def __init__(self, forward: Callable, activation, trainable: Sequence[bool] | None = None,
                 dtype=np.float64) -> None:
        self.forward = forward
        self.activation = autograd_activation(activation)
        self.trainable = None if trainable is None else list(trainable)
        self.dtype = np.dtype(dtype)

    def predict(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        return np.array(_call(self.forward, list(params), X, self.activation), dtype=self.dtype)

    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, loss):
        from autograd import make_vjp

        params = list(params)
        vjp, out = make_vjp(lambda ps: _call(self.forward, ps, X, self.activation))(params)
        out = np.asarray(out, dtype=self.dtype)
        r = np.asarray(loss.grad(out, y), dtype=self.dtype)
        grads = list(vjp(r))
        mask = self.trainable or [True] * len(params)
        grads = [np.asarray(g, dtype=self.dtype).reshape(np.shape(p)) if t else None
                 for g, p, t in zip(grads, params, mask)]
        return GradientResult(float(loss.value(out, y)), out, grads)
