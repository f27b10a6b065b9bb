"""Embedding a one-hidden-layer network with ``H0`` units into a wider one with ``H >= H0`` units.

All three maps take a packed ``theta`` of length ``3 H0 + 1`` (layout of
:mod:`harness_plugins.semi_flat.shallow`) and return one of length ``3 H + 1`` that computes exactly the
same function ``f(x) = sum_j v_j phi(w_j x + b_j) + c`` for every ``x``. The ``H0`` original
units keep their index ``0 .. H0-1``; the added units come after them, in order, so that the
first ``H0`` units (and the first added ones) are the same for every ``H``. These maps follow
Fukumizu, Yamaguchi, Mototake and Tanaka (NeurIPS 2019); the free constants (which unit is
replicated, the new units' biases and weights) are our choices, named and documented below.

- :func:`unit_replication` (``split = lambda``): added unit ``k`` (``k = 0 .. H-H0-1``) copies
  the input weight and bias of original unit ``j = k mod H0``; the current output weight
  ``v_j`` is split into ``lambda v_j`` (kept by unit ``j``) and ``(1 - lambda) v_j`` (the copy).
  Units are therefore replicated round-robin, and a unit split twice keeps ``lambda^2 v_j``.
- :func:`inactive_units`: added units have input weight ``w = 0``, so each outputs the constant
  ``v phi(b)``; the output bias ``c`` is lowered by ``sum v phi(b)``. With ReLU and ``b < 0``
  the unit is dead (``phi(b) = 0``, nothing to compensate) and stays dead under perturbations
  of ``w`` and ``b`` smaller than ``|b| / |x|``.
- :func:`inactive_propagation`: added units have output weight ``v = 0`` and free input weight
  and bias.

Stationary points: with residuals ``r`` of the training set, a stationary point of the training
error ``E = sum_i r_i^2`` of the narrow network (``sum_i r_i = 0`` from ``c`` and the unit
equations) is mapped to a stationary point of the wide one

- by unit replication, always (each copy's gradient is a multiple of its original's);
- by inactive units when ``v phi'(b) = 0``: any ``v`` for a dead ReLU unit, but ``v = 0`` for a
  smooth activation, since the gradient in the new input weight is ``2 v phi'(b) sum_i r_i x_i``;
- by inactive propagation when the gradient in ``v``, ``2 sum_i r_i phi(w x_i + b)``, vanishes:
  ``w = 0``, or a ReLU unit dead on every training input.

At an interpolating point (``r = 0``) every map gives a zero gradient.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .shallow import n_units, pack, unpack

EMBEDDINGS = ("inactive_units", "unit_replication", "inactive_propagation")
"""Names accepted by :func:`embed`."""


def _added(value, count: int, name: str) -> np.ndarray:
    """``value`` (a scalar or an array of length ``count``) as a float array ``(count,)``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(count, float(arr))
    arr = arr.reshape(-1)
    if arr.shape[0] != count:
        raise ValueError(f"{name} must be a scalar or have one value per added unit ({count}), "
                         f"got {arr.shape[0]}")
    return arr


def _check_width(theta: np.ndarray, H: int) -> int:
    H0 = n_units(theta)
    if H < H0:
        raise ValueError(f"cannot embed {H0} units into H = {H} < {H0}")
    return H0


def unit_replication(theta: np.ndarray, H: int, split: float = 0.5) -> np.ndarray:
    """Replicate units round-robin with split ``lambda = split``; ``(3 H0 + 1,) -> (3 H + 1,)``."""
    H0 = _check_width(theta, H)
    if H > H0 and H0 == 0:
        raise ValueError("unit replication needs at least one unit to copy")
    p = unpack(theta)
    w, b, v = list(p.w), list(p.b), list(p.v)
    for k in range(H - H0):
        j = k % H0
        w.append(w[j])
        b.append(b[j])
        v.append((1.0 - split) * v[j])
        v[j] = split * v[j]
    return pack(w, b, v, p.c)


def inactive_units(theta: np.ndarray, H: int, activation, bias=-1.0, output_weight=1.0) -> np.ndarray:
    """Add ``H - H0`` units with ``w = 0``, bias ``bias`` and output weight ``output_weight``
    (scalars or arrays ``(H - H0,)``), and lower ``c`` by ``sum v phi(b)``."""
    H0 = _check_width(theta, H)
    p = unpack(theta)
    b_new = _added(bias, H - H0, "bias")
    v_new = _added(output_weight, H - H0, "output_weight")
    c = p.c - float(v_new @ activation.phi(b_new)) if H > H0 else p.c
    return pack(np.concatenate([p.w, np.zeros(H - H0)]), np.concatenate([p.b, b_new]),
                np.concatenate([p.v, v_new]), c)


def inactive_propagation(theta: np.ndarray, H: int, input_weight=1.0, bias=-1.0) -> np.ndarray:
    """Add ``H - H0`` units with ``v = 0``, input weight ``input_weight`` and bias ``bias``
    (scalars or arrays ``(H - H0,)``)."""
    H0 = _check_width(theta, H)
    p = unpack(theta)
    return pack(np.concatenate([p.w, _added(input_weight, H - H0, "input_weight")]),
                np.concatenate([p.b, _added(bias, H - H0, "bias")]),
                np.concatenate([p.v, np.zeros(H - H0)]), p.c)


def embed(theta: np.ndarray, H: int, method: str, activation, *, split: float = 0.5,
          bias=-1.0, output_weight=1.0, input_weight=1.0) -> np.ndarray:
    """Embed by ``method`` (one of :data:`EMBEDDINGS`), passing the options that method uses:
    ``split`` (unit replication), ``bias`` and ``output_weight`` (inactive units), ``input_weight``
    and ``bias`` (inactive propagation)."""
    makers: dict[str, Callable[[], np.ndarray]] = {
        "unit_replication": lambda: unit_replication(theta, H, split),
        "inactive_units": lambda: inactive_units(theta, H, activation, bias, output_weight),
        "inactive_propagation": lambda: inactive_propagation(theta, H, input_weight, bias),
    }
    if method not in makers:
        raise ValueError(f"unknown embedding {method!r}; expected one of {', '.join(EMBEDDINGS)}")
    return makers[method]()
