"""What a run answers, as tables: :class:`Table` (a title, columns, lines and notes) and
:class:`Interval` (a number with its interval), returned by an experiment's
:meth:`~harness.plugin.experiment.Experiment.tables`. ``report.html`` and the results pages
(``harness publish``) open with them, before the figures.

One text for every value (:func:`format_value`), so that a page, the report and a test that
recomputes a number from the rows agree to the digit: integers as they are, floats to four
significant digits (``0.01234``, ``1.235e-05``), ``None`` as ``-``, booleans as ``yes`` / ``no``,
an :class:`Interval` as ``value [low, high]``; :func:`plus_minus` for ``value ± spread``,
:func:`bracket_text` for a threshold search's final bracket.

Interval helpers for plugins: :func:`wilson_interval` (a fraction of successes, e.g. seeds that
memorise) and :func:`mean_interval` (a mean with a percentile bootstrap interval). Slopes with
their bootstrap intervals come from :func:`harness.plugin.fitting.fit_slope`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SIGNIFICANT = 4
"""Significant digits of a float in every table."""


@dataclass(frozen=True)
class Interval:
    """``value`` with its interval ``[low, high]`` (``None`` where there is none); ``what``
    says what the interval is (``"95% bootstrap"``, ``"95% Wilson"``, ``"bracket"``), for the
    table's notes."""

    value: Any
    low: float | None = None
    high: float | None = None
    what: str = ""

    def text(self) -> str:
        if self.low is None or self.high is None or not _finite(self.low) or not _finite(self.high):
            return format_value(self.value)
        return f"{format_value(self.value)} [{format_value(self.low)}, {format_value(self.high)}]"


@dataclass
class Table:
    """One table of a run's answer.

    ``columns`` names the columns; ``rows`` holds one sequence of values per line (numbers,
    text, ``None``, :class:`Interval`); ``notes`` are sentences under the table: what the
    intervals are, and every claim the table supports, with the number that supports it
    (``"lambda_min grows linearly in d^2: slope 1.2e-04 [1.1e-04, 1.3e-04] per unit d^2"``).
    ``block`` is the experiment block (set by the harness). ``headline``: the table summarises
    the run (e.g. a threshold as over-parameterisation, N*/d^2 and N*/P): a results page shows it
    at the top beside the thresholds, and ``harness publish --readme`` copies it with them."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    block: str | None = None
    headline: bool = False

    def cells(self) -> list[list[str]]:
        """Every value as text (:func:`format_value`), line by line."""
        return [[format_value(v) for v in line] for line in self.rows]


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_value(value: Any) -> str:
    """The text of one value in a table (see the module docstring)."""
    if isinstance(value, Interval):
        return value.text()
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{SIGNIFICANT}g}"
    return str(value)


def plus_minus(value: Any, spread: Any = None) -> str:
    """``value ± spread`` (each by :func:`format_value`), or ``value`` alone when there is no
    spread (``None``: e.g. a standard deviation of one repetition)."""
    text = format_value(value)
    return text if spread is None else f"{text} ± {format_value(spread)}"


def bracket_text(lower: Any, upper: Any) -> str | None:
    """A threshold search's final bracket as text: ``lower - upper``; ``above LOWER`` or ``below
    UPPER`` when the condition never changed inside the searched range; ``None`` when nothing was
    evaluated."""
    if lower is not None and upper is not None:
        return f"{format_value(lower)} - {format_value(upper)}"
    if lower is not None:
        return f"above {format_value(lower)}"
    if upper is not None:
        return f"below {format_value(upper)}"
    return None


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n`` at confidence
    ``level``: ``(nan, nan)`` when ``n == 0``. Unlike the normal approximation it stays inside
    [0, 1] and is not empty at 0 or n successes (0 of 5: [0, 0.43])."""
    from statistics import NormalDist

    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no round-off left over
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def fraction(successes: int, n: int, level: float = 0.95) -> Interval:
    """``successes / n`` with its Wilson interval (:func:`wilson_interval`)."""
    low, high = wilson_interval(successes, n, level)
    return Interval(successes / n if n else None, low, high, f"{level:.0%} Wilson")


def mean_interval(values: Sequence[float], level: float = 0.95, n_boot: int = 2000,
                  seed: int = 0) -> Interval:
    """The mean of the finite ``values`` with a percentile bootstrap interval (seeded: the same
    values give the same interval); no interval with fewer than 3 values."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(None)
    mean = float(x.mean())
    if x.size < 3 or n_boot <= 0:
        return Interval(mean)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    alpha = (1 - level) / 2
    low, high = np.quantile(x[idx].mean(axis=1), [alpha, 1 - alpha])
    return Interval(mean, float(low), float(high), f"{level:.0%} bootstrap")
