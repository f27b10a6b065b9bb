"""Exact interpolation of 1-D points by a one-hidden-layer ReLU network with ``H`` units.

On the data range ``[x_(1), x_(n)]`` (sorted inputs) a ReLU network
``f(x) = sum_j v_j relu(w_j x + b_j) + c`` is a continuous piecewise-linear function whose
breakpoints ("knots") are the kinks ``t_j = -b_j / w_j`` of the units that fall inside the range:
at most ``H`` knots. Conversely a continuous piecewise-linear function ``g`` with ``K`` knots inside
the range is a ReLU network with ``H`` units on the range

- always when ``K <= H - 1``: one unit per knot, facing right (``w = 1, b = -t, v = jump``), and
  the affine part ``s_0 (x - x_(1)) + y_(1)`` from units whose kinks lie left of the data (linear
  on the data range);
- when ``K = H`` only if the units' directions can be chosen so that the slope right of all knots,
  ``sum`` of the jumps of the right-facing units, equals the last piece's slope (a unit facing left,
  ``a (t - x)_+``, has jump ``a`` but no slope right of ``t``): a one-equation condition on the
  ``(2-dimensional, generically)`` family of ``H``-knot interpolants, decided here by search
  (:func:`interpolate`), not proved.

:func:`min_knots` computes exactly the smallest number ``K*`` of knots of a continuous
piecewise-linear interpolant of the points, by dynamic programming over the slope of the piece
through the current point. With ``S_k(i)`` the set of slopes ``s`` such that some interpolant of
points ``1..i`` with ``k`` knots ends with a piece of slope ``s`` through point ``i``, and
``m_i`` the chord slope from point ``i`` to ``i + 1`` (gap width ``h``):

- no knot in the gap: the piece must be the chord, so ``m_i in S_k(i)`` gives ``m_i in S_k(i+1)``;
- one knot at ``x_i + u``, ``0 <= u < h``: the next slope is ``(h m_i - s u) / (h - u)``, monotone in
  ``u`` from ``m_i`` to ``+-infinity`` with the sign of ``m_i - s``: ``S_{k+1}(i+1)`` gets
  ``[m_i, inf)`` if some ``s < m_i`` is in ``S_k(i)``, ``(-inf, m_i]`` if some ``s > m_i`` is;
- two knots in the gap: any slope (a bridging piece), ``S_{k+2}(i+1) = R``;

starting from ``S_0(1) = R``; ``K* = min {k : S_k(n) non-empty}``. For the certificate every
comparison is widened by ``1e-9 (1 + max |y|) / min gap`` (chords of points on one line differ by
round-off), which can only lower ``K*``. The closed intervals (knots
allowed exactly at data points) make ``K*`` a certificate: **if ``K* > H`` no network with ``H``
ReLU units interpolates the points**, whatever its weights (it has at most ``H`` knots in the
range). The construction uses the open intervals (knots strictly inside gaps), which differ only
on a measure-zero set of data.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .shallow import pack

INF = math.inf


def _chords(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.diff(y) / np.diff(x)


def _step(sets: dict[int, list[tuple[float, float]]], m: float, closed: bool, k_max: int, tol: float = 0.0):
    """One gap of the dynamic programme: slope sets at point i -> at point i + 1. With ``closed``
    every comparison is widened by ``tol`` (a superset of the exact sets, so that points on one
    line up to round-off count as collinear)."""
    out: dict[int, list[tuple[float, float]]] = {}
    if not closed:
        tol = 0.0

    def add(k, interval):
        if k <= k_max:
            out.setdefault(k, [])
            if interval not in out[k]:
                out[k].append(interval)

    for k, intervals in sets.items():
        if not intervals:
            continue
        lo = min(a for a, _ in intervals)
        hi = max(b for _, b in intervals)
        contains = any((a - tol <= m <= b + tol) if closed else (a < m < b) for a, b in intervals)
        if contains:
            add(k, (m, m))
        if lo < m + tol:
            add(k + 1, (m - tol, INF))
        if hi > m - tol:
            add(k + 1, (-INF, m + tol))
        if closed:
            add(k + 1, (m, m))
        add(k + 2, (-INF, INF))
    return out


def slope_sets(x, y, closed: bool = True, k_max: int | None = None) -> list[dict[int, list[tuple[float, float]]]]:
    """The sets ``S_k(i)`` for sorted ``x`` (strictly increasing), ``i = 0 .. n-1``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = x.shape[0]
    k_max = 2 * n if k_max is None else k_max
    m = _chords(x, y)
    # round-off of a chord slope: relative 1e-9 of the largest |y| over the smallest gap
    tol = 1e-9 * (1.0 + float(np.max(np.abs(y)))) / float(np.min(np.diff(x))) if n > 1 else 0.0
    sets = [{0: [(-INF, INF)]}]
    for i in range(n - 1):
        sets.append(_step(sets[-1], float(m[i]), closed, k_max, tol))
    return sets


def min_knots(x, y, closed: bool = True) -> int:
    """``K*``: the fewest knots of a continuous piecewise-linear interpolant of ``(x, y)``."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError("inputs must be distinct")
    if x.shape[0] <= 2:
        return 0
    last = slope_sets(x, y, closed)[-1]
    return min(k for k, v in last.items() if v)


def _pick(intervals, target: float, below: float | None = None, above: float | None = None) -> float | None:
    """A point of the union of open ``intervals`` (singletons allowed) restricted to
    ``(-inf, below)`` / ``(above, inf)``, as close to ``target`` as allowed with a margin from the
    open ends."""
    best, dist = None, INF
    for a, b in intervals:
        if a == b:
            if (below is None or a < below) and (above is None or a > above):
                if abs(a - target) < dist:
                    best, dist = a, abs(a - target)
            continue
        lo, hi = a, b
        if below is not None:
            hi = min(hi, below)
        if above is not None:
            lo = max(lo, above)
        if not lo < hi:
            continue
        if math.isfinite(lo) and math.isfinite(hi):
            w = hi - lo
            p = min(max(target, lo + 0.1 * w), hi - 0.1 * w)
        elif math.isfinite(lo):
            p = max(target, lo + 0.5 * (1.0 + abs(lo)))
        elif math.isfinite(hi):
            p = min(target, hi - 0.5 * (1.0 + abs(hi)))
        else:
            p = target
        if abs(p - target) < dist:
            best, dist = p, abs(p - target)
    return best


@dataclass
class Spline:
    """A continuous piecewise-linear function on the data range: value ``y0`` and slope ``s0`` at
    ``x0``, knots ``t`` (increasing) with slope jumps ``a``."""

    x0: float
    y0: float
    s0: float
    t: np.ndarray
    a: np.ndarray

    def __call__(self, x):
        x = np.asarray(x, float)
        return self.y0 + self.s0 * (x - self.x0) + np.maximum(x[:, None] - self.t[None, :], 0.0) @ self.a

    @property
    def last_slope(self) -> float:
        return float(self.s0 + self.a.sum())


def spline_interpolant(x, y, K: int, rng: np.random.Generator | None = None) -> Spline | None:
    """A continuous piecewise-linear interpolant with exactly ``K`` knots, all strictly inside
    gaps between sorted inputs (``None`` if the open-interval programme finds none). ``rng``
    randomises the free slopes (else the choice nearest a symmetric knot placement)."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    n = x.shape[0]
    m = _chords(x, y)
    sets = slope_sets(x, y, closed=False, k_max=K)
    if not sets[-1].get(K):
        return None
    jitter = (lambda s: s + rng.normal(0.0, 1.0 + abs(s))) if rng is not None else (lambda s: s)
    s_next = _pick(sets[-1][K], jitter(float(m[-1])))
    k = K
    knots: list[float] = []
    slopes = [s_next]  # slope of the piece through point i+1, built backwards
    for i in range(n - 2, -1, -1):
        h, mi = x[i + 1] - x[i], float(m[i])
        s_prev = None
        if s_next == mi and any(a < mi < b or a == b == mi for a, b in sets[i].get(k, [])):
            s_prev = mi
        if s_prev is None and k >= 1 and s_next != mi:
            if s_next > mi:
                s_prev = _pick(sets[i].get(k - 1, []), jitter(2 * mi - s_next), below=mi)
            else:
                s_prev = _pick(sets[i].get(k - 1, []), jitter(2 * mi - s_next), above=mi)
            if s_prev is not None:
                u = h * (s_next - mi) / (s_next - s_prev)
                knots.append(x[i] + u)
                k -= 1
        if s_prev is None and k >= 2 and sets[i].get(k - 2):
            s_prev = _pick(sets[i][k - 2], jitter(mi))
            # bridge: through (x_i + h/3, line_prev) and (x_i + 2h/3, line_next)
            t1, t2 = x[i] + h / 3, x[i] + 2 * h / 3
            knots += [t2, t1]
            k -= 2
        if s_prev is None:
            return None
        slopes.append(s_prev)
        s_next = s_prev
    knot_x = np.array(knots[::-1])
    slopes = slopes[::-1]  # slope of the piece through point i, i = 0..n-1 (piece-wise)
    # Rebuild the spline from the points: evaluate the pieces' slopes between knots.
    s0 = slopes[0]
    # slope changes: recover jumps by fitting the knots exactly to the points (linear least squares,
    # consistent by construction): unknowns y0, s0, a_1..a_K
    A = np.hstack([np.ones((n, 1)), (x - x[0])[:, None], np.maximum(x[:, None] - knot_x[None, :], 0.0)])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    if not np.allclose(A @ coef, y, rtol=0, atol=1e-9 * (1 + np.abs(y).max())):
        return None
    del s0
    return Spline(float(x[0]), float(coef[0]), float(coef[1]), knot_x, coef[2:])


def network_from_spline(sp: Spline, H: int, x_min: float, directions=None) -> np.ndarray:
    """Packed ReLU network ``(3 H + 1,)`` equal to ``sp`` on ``[x_min, inf)`` when ``K < H``
    (right-facing knot units, the affine part split over ``H - K`` units with kinks left of the
    data at ``x_min - 1, x_min - 2, ...``), or with ``K = H`` and ``directions`` (+1 right,
    -1 left facing; the affine part is then whatever the directions give, fixed by ``c``)."""
    K = sp.t.shape[0]
    if K > H:
        raise ValueError(f"{K} knots need more than {H} units")
    if K == H:
        sign = np.ones(K) if directions is None else np.asarray(directions, float)
        w, b, v = sign.copy(), -sign * sp.t, sp.a.copy()
        # value at x0: sum over left-facing units a (t - x0); match y0 with c
        c = sp.y0 - float(np.sum(np.where(sign < 0, sp.a * (sp.t - sp.x0), 0.0)))
        return pack(w, b, v, c)
    spare = H - K
    kinks = x_min - np.arange(1, spare + 1, dtype=float)
    w = np.concatenate([np.ones(K), np.ones(spare)])
    b = np.concatenate([-sp.t, -kinks])
    v = np.concatenate([sp.a, np.full(spare, sp.s0 / spare)])
    # affine part: sum (s0/spare)(x - kink) = s0 x - (s0/spare) sum kinks; match y0 at x0
    c = sp.y0 - sp.s0 * sp.x0 + (sp.s0 / spare) * float(kinks.sum())
    return pack(w, b, v, c)


@dataclass
class InterpolationResult:
    theta: np.ndarray | None
    min_knots: int
    status: str
    """``"constructed"`` (K* <= H - 1), ``"searched"`` (K* = H, found by the direction search),
    ``"not_found"`` (K* = H, search failed) or ``"impossible"`` (K* > H)."""


def interpolate(x, y, H: int, polish: Callable[[np.ndarray], tuple[np.ndarray, bool]],
                rng: np.random.Generator, attempts: int = 4) -> InterpolationResult:
    """Interpolating ReLU start for ``H`` units. ``polish(theta) -> (theta, reached)`` refines a
    start (Levenberg-Marquardt to the target). With ``K* = H`` every direction pattern of the
    knot units is tried from ``attempts`` interpolants (the first deterministic, then with random
    free slopes), in order of the affine mismatch, until ``polish`` reaches the target."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    K = min_knots(x, y, closed=True)
    if K > H:
        return InterpolationResult(None, K, "impossible")
    x_min = float(x.min())
    if K <= H - 1:
        for attempt in range(attempts):
            sp = spline_interpolant(x, y, K, rng if attempt else None)
            if sp is None:
                continue
            theta, reached = polish(network_from_spline(sp, H, x_min))
            if reached:
                return InterpolationResult(theta, K, "constructed")
        return InterpolationResult(None, K, "not_found")
    for attempt in range(attempts):
        sp = spline_interpolant(x, y, H, rng if attempt else None)
        if sp is None:
            continue
        patterns = []
        for signs in itertools.product((1.0, -1.0), repeat=H):
            right = np.array(signs) > 0
            patterns.append((abs(sp.last_slope - float(sp.a[right].sum())), signs))
        patterns.sort()
        for _, signs in patterns[:8]:
            theta, reached = polish(network_from_spline(sp, H, x_min, signs))
            if reached:
                return InterpolationResult(theta, K, "searched")
    return InterpolationResult(None, K, "not_found")
