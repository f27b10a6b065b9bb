"""The one-hidden-layer network with biases, 1-D input and output, as pure functions of arrays.

The network with ``H`` hidden units is ``f(x) = sum_j v_j phi(w_j x + b_j) + c``. Its parameters
are packed in one vector ``theta`` of length ``P = 3 H + 1``, block by block::

    theta = [w_1 .. w_H, b_1 .. b_H, v_1 .. v_H, c]

Inputs ``x`` and targets ``y`` have shape ``(N,)``; ``Z = x w^T + b`` is ``(N, H)``. The training
error is the plain sum of squares ``E(theta) = sum_i (f(x_i) - y_i)^2`` (no 1/2, no 1/N), so
its gradient is ``2 J^T r`` and its Hessian ``2 J^T J + 2 sum_i r_i d^2 f(x_i)`` with the
residuals ``r = f(x) - y`` and the Jacobian ``J = d f(x) / d theta`` of shape ``(N, P)``.

``activation`` is any object with vectorised ``phi``, ``dphi`` and ``d2phi`` (an Activation
component). For ReLU the kink contributes nothing (``d2phi = 0``): the Hessian is the one of the
smooth piece the point lies in.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ShallowParams(NamedTuple):
    """Views into a packed ``theta``: ``w``, ``b``, ``v`` of shape ``(H,)`` and the scalar ``c``."""

    w: np.ndarray
    b: np.ndarray
    v: np.ndarray
    c: float


def n_units(theta: np.ndarray) -> int:
    """The number of hidden units ``H`` of a packed vector of length ``3 H + 1``."""
    P = np.shape(theta)[0]
    if P < 1 or (P - 1) % 3:
        raise ValueError(f"a packed shallow network has length 3 H + 1, got {P}")
    return (P - 1) // 3


def pack(w, b, v, c) -> np.ndarray:
    """Pack ``w``, ``b``, ``v`` (each ``(H,)``) and ``c`` (scalar) into ``theta`` ``(3 H + 1,)``."""
    w, b, v = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (w, b, v))
    if not (w.shape == b.shape == v.shape):
        raise ValueError(f"w, b, v must have the same length, got {w.shape}, {b.shape}, {v.shape}")
    return np.concatenate([w, b, v, [float(c)]])


def unpack(theta: np.ndarray) -> ShallowParams:
    """Split ``theta`` ``(3 H + 1,)`` into views ``w``, ``b``, ``v`` ``(H,)`` and ``c``."""
    H = n_units(theta)
    return ShallowParams(theta[:H], theta[H:2 * H], theta[2 * H:3 * H], float(theta[3 * H]))


def preactivations(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``Z = x w^T + b``, shape ``(N, H)``."""
    p = unpack(theta)
    return np.asarray(x, dtype=np.float64)[:, None] * p.w[None, :] + p.b[None, :]


def forward(theta: np.ndarray, x: np.ndarray, activation) -> np.ndarray:
    """Network output ``f(x)``, shape ``(N,)``."""
    p = unpack(theta)
    return activation.phi(preactivations(theta, x)) @ p.v + p.c


def residuals(theta: np.ndarray, x: np.ndarray, y: np.ndarray, activation) -> np.ndarray:
    """``r = f(x) - y``, shape ``(N,)``."""
    return forward(theta, x, activation) - y


def jacobian(theta: np.ndarray, x: np.ndarray, activation) -> np.ndarray:
    """``J = d f(x) / d theta``, shape ``(N, 3 H + 1)``, columns in the packing order:
    ``v_j phi'(z_j) x``, ``v_j phi'(z_j)``, ``phi(z_j)`` and ones."""
    p = unpack(theta)
    x = np.asarray(x, dtype=np.float64)
    Z = preactivations(theta, x)
    D = activation.dphi(Z) * p.v[None, :]
    return np.hstack([D * x[:, None], D, activation.phi(Z), np.ones((x.shape[0], 1))])


def training_error(theta: np.ndarray, x: np.ndarray, y: np.ndarray, activation) -> float:
    """``E = sum_i (f(x_i) - y_i)^2`` (a float)."""
    r = residuals(theta, x, y, activation)
    return float(r @ r)


def error_gradient(theta: np.ndarray, x: np.ndarray, y: np.ndarray, activation) -> np.ndarray:
    """``grad E = 2 J^T r``, shape ``(3 H + 1,)``."""
    return 2.0 * jacobian(theta, x, activation).T @ residuals(theta, x, y, activation)


def error_hessian(theta: np.ndarray, x: np.ndarray, y: np.ndarray, activation) -> np.ndarray:
    """Exact Hessian of ``E``, shape ``(P, P)`` with ``P = 3 H + 1``.

    ``2 J^T J`` plus ``2 sum_i r_i d^2 f(x_i)``; the second term couples only the parameters of
    one unit (``w_j, b_j, v_j``): ``v_j phi'' [x^2, x, 1]`` in the ``(w, b)`` block and
    ``phi' [x, 1]`` between ``(w_j, b_j)`` and ``v_j``.
    """
    p = unpack(theta)
    H = p.w.shape[0]
    x = np.asarray(x, dtype=np.float64)
    J = jacobian(theta, x, activation)
    r = residuals(theta, x, y, activation)
    Z = preactivations(theta, x)
    D1 = activation.dphi(Z)
    D2 = activation.d2phi(Z)
    rx, rxx = r * x, r * x * x
    ww = p.v * (rxx @ D2)
    wb = p.v * (rx @ D2)
    bb = p.v * (r @ D2)
    wv = rx @ D1
    bv = r @ D1
    S = np.zeros((3 * H + 1, 3 * H + 1))
    iw, ib, iv = np.arange(H), H + np.arange(H), 2 * H + np.arange(H)
    S[iw, iw] = ww
    S[ib, ib] = bb
    S[iw, ib] = S[ib, iw] = wb
    S[iw, iv] = S[iv, iw] = wv
    S[ib, iv] = S[iv, ib] = bv
    return 2.0 * (J.T @ J + S)


class Inertia(NamedTuple):
    """Counts of negative, zero and positive eigenvalues, and the absolute tolerance used."""

    negative: int
    zero: int
    positive: int
    tol: float


def inertia(eigenvalues: np.ndarray, rtol: float) -> Inertia:
    """Classify eigenvalues: ``|lambda| <= tol`` is zero, with ``tol = rtol * max |lambda|``."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    tol = float(rtol * np.max(np.abs(lam))) if lam.size else 0.0
    return Inertia(int(np.sum(lam < -tol)), int(np.sum(np.abs(lam) <= tol)), int(np.sum(lam > tol)), tol)
