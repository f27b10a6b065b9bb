"""Means and standard deviations that stay right for any finite metric value.

A metric may be any finite float (``1e308``, values near ``1e200`` that differ across
repetitions) or any integer (``10**400``, beyond the float range). :func:`mean_std` computes in
floating point as before when nothing overflows (the same digits as ``math.fsum``), and
otherwise exactly (rational arithmetic), so that summaries never fail and never lose a run:
a statistic that fits in a float is a float, one beyond the float range (the mean of
``10**400``s) is the nearest integer. :func:`finite_float` is what figures, fits and
comparisons use: a number as a finite float, or ``None`` where it has none (NaN, infinite, an
integer beyond the float range).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Sequence


def mean_std_arrays(groups: Sequence[Sequence[int | float]]) -> tuple[Any, Any]:
    """Per group of values, the mean and the sample deviation (0 for one value; NaN beyond the
    float range) as two float arrays, for the lines and bands of figures."""
    import numpy as np

    stats = [mean_std(g) for g in groups]
    mean = [finite_float(m) for m, _ in stats]
    std = [0.0 if s is None else finite_float(s) for _, s in stats]
    return (np.array([np.nan if m is None else m for m in mean]),
            np.array([np.nan if s is None else s for s in std]))


def finite_float(value: Any) -> float | None:
    """``value`` (an int, float or bool; a bool is 0 or 1) as a finite float; ``None`` for
    anything else, for NaN and infinities, and for integers beyond the float range."""
    if not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def mean_std(xs: Sequence[int | float]) -> tuple[Any, Any]:
    """Mean and sample standard deviation (ddof 1) of finite numbers; ``None`` where undefined
    (no value; one value for the deviation). Floats as ``math.fsum`` gives them when no
    intermediate overflows; otherwise exact, a result beyond the float range as an int."""
    n = len(xs)
    if n == 0:
        return None, None
    try:
        floats = [float(x) for x in xs]
        mean = math.fsum(floats) / n
        if n < 2:
            return mean, None
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in floats) / (n - 1))
        if math.isfinite(mean) and math.isfinite(std):
            return mean, std
    except OverflowError:
        pass
    return _exact_mean_std(xs)


def _exact_mean_std(xs: Sequence[int | float]) -> tuple[Any, Any]:
    values = [Fraction(x) for x in xs]
    n = len(values)
    mean = sum(values, Fraction(0)) / n
    if n < 2:
        return _number(mean), None
    var = sum(((v - mean) ** 2 for v in values), Fraction(0)) / (n - 1)
    return _number(mean), _sqrt(var)


def _number(value: Fraction) -> float | int:
    """``value`` as a float, or as the nearest int when it is beyond the float range."""
    try:
        return float(value)
    except OverflowError:
        return round(value)


def _sqrt(value: Fraction) -> float | int:
    """The square root of ``value`` >= 0: a float, or an int when beyond the float range."""
    try:
        return math.sqrt(float(value))
    except OverflowError:
        pass
    # value >= 2**1024: scale by an even power of two, take the root, scale back
    shift = (value.numerator.bit_length() - value.denominator.bit_length()) // 2 * 2 - 1000
    root = math.sqrt(float(value / (1 << shift))) * 2.0 ** (shift // 2) if shift // 2 < 1024 else math.inf
    if math.isfinite(root):
        return root
    return math.isqrt(round(value))


def short_number(x: float | int, signed: bool = False) -> str:
    """``x`` in 4 significant digits (``0.1235``, ``1.235e+08``); an integer beyond the float
    range too (``1.000e+400``), where ``format(x, "e")`` cannot."""
    sign = "+" if signed else ""
    if isinstance(x, int) and finite_float(x) is None:
        from decimal import Decimal

        return format(Decimal(x), f"{sign}.3e")
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return format(x, f"{sign}.4g")
    return format(x, f"{sign}.3e")
