"""Threshold search: bracket and bisect one axis of an experiment block instead of gridding it.

A benchmark block may declare, next to (or instead of) its grid::

    [experiments.search]
    axis = "N"                 # the key path searched (an experiment parameter, a slot
                               # parameter "architecture.q", or a free variable of `derived`)
    lower = 100                # bounds of the search (inclusive)
    upper = 40000
    scale = "log"              # "log": bisect log(axis) (default); "linear"
    integer = true             # default: true when the axis is an int parameter
    start = "2 * d**2"         # first value: an expression in the grid point's values
                               # (default: the middle of the bounds)
    growth = 2.0               # until both sides are seen, step by this factor (log) or by
                               # this amount (linear) from the last value
    tolerance = 0.05           # stop when upper / lower <= 1 + tolerance (log) or
                               # upper - lower <= tolerance (linear); adjacent integers stop
    max_steps = 24             # at most this many axis values per grid point
    metric = "reported_loss"   # a metric of the experiment's rows
    transform = "log10"        # "log10" or "none": averaged over the repetitions
    below = -3                 # the condition: mean(transform(metric)) <= -3 ...
    # above = 0.999            # ... or >= a level
    holds = "low"              # the condition holds at low axis values ("high": at high ones)

For every point of the rest of the grid, the runner evaluates the block at one axis value at a
time (all repetitions of it: ordinary cells, rows and seeds, exactly as a grid over the axis
would make them), steps by ``growth`` until it has seen the condition hold and fail, then
bisects the bracket. The search is a pure function of the rows: replaying it over a run's rows
gives the cells still to run (:func:`pending_cells`) or, once all are there, the threshold
(:func:`thresholds`), so resume, ``-j``, dask and a killed run need nothing special.

Aggregation. At one axis value the repetitions' ``transform(metric)`` values are averaged (the
mean of log10 for ``transform = "log10"``, as Bombari et al. average their heat map). A row with
status ``diverged`` or a missing, non-finite or (for log10) non-positive metric counts as failing
the condition (+inf below a ``below`` level, -inf for ``above``); a ``failed`` or ``timeout`` row
stops that grid point's search with status ``failed`` (its cells stay in rows.jsonl).

The result per grid point (one line of ``thresholds.csv``): ``axis``; ``lower`` and ``upper``,
the bracket (the largest evaluated value on the low side of the threshold and the smallest on
the high side); ``threshold``, where the aggregated metric crosses the level, interpolated
linearly in log(axis) (``scale = "log"``) or in the axis (``"linear"``) between the two bracket
values; ``n_cells``; ``status``: ``found``, ``above_upper`` (the low side reaches the upper bound:
the threshold is above the searched range), ``below_lower``, ``max_steps``, ``failed`` or
``incomplete`` (rows still missing: an interrupted run); ``ci_low``, ``ci_high``: a 95% percentile
bootstrap interval of the threshold over the repetitions (:func:`bootstrap_interval`; the
bracket says how finely the axis was searched, this interval how much the threshold would move
with other seeds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.spec.cells import Cell

TRANSFORMS = ("log10", "none")


@dataclass(frozen=True)
class Search:
    """A validated ``[experiments.search]`` table (see the module docstring)."""

    axis: str
    lower: float
    upper: float
    metric: str
    level: float
    condition: str  # "below" or "above"
    holds: str = "low"  # "low" or "high"
    scale: str = "log"
    integer: bool = False
    start: str | None = None
    growth: float = 2.0
    tolerance: float = 0.05
    max_steps: int = 24
    transform: str = "log10"

    def to_table(self) -> dict[str, Any]:
        """The TOML table that declares this search (every default written out)."""
        table: dict[str, Any] = {"axis": self.axis, "lower": self.lower, "upper": self.upper,
                                 "scale": self.scale, "integer": self.integer}
        if self.start is not None:
            table["start"] = self.start
        table.update({"growth": self.growth, "tolerance": self.tolerance, "max_steps": self.max_steps,
                      "metric": self.metric, "transform": self.transform, self.condition: self.level,
                      "holds": self.holds})
        return table

    # -- values on the axis --------------------------------------------------------------------

    def clamp(self, x: float) -> float | int:
        """``x`` inside the bounds, as an int on an integer axis (floats to 10 significant digits,
        so that coordinates and cell ids stay readable and stable)."""
        x = min(max(float(x), self.lower), self.upper)
        if self.integer:
            return int(round(x))
        return float(f"{x:.10g}")

    def middle(self, lo: float, hi: float) -> float:
        if self.scale == "log":
            return math.sqrt(lo * hi)
        return 0.5 * (lo + hi)

    def converged(self, lo: float, hi: float) -> bool:
        if self.integer and hi - lo <= 1:
            return True
        if self.scale == "log":
            return hi / lo <= 1.0 + self.tolerance
        return hi - lo <= self.tolerance

    def step_up(self, x: float) -> float:
        return x * self.growth if self.scale == "log" else x + self.growth

    def step_down(self, x: float) -> float:
        return x / self.growth if self.scale == "log" else x - self.growth

    # -- the condition -------------------------------------------------------------------------

    def value_of(self, row: Mapping[str, Any]) -> float:
        """One repetition's transformed metric (a failing infinity where it has none)."""
        bad = math.inf if self.condition == "below" else -math.inf
        if row.get("status") != "ok":
            return bad
        value = (row.get("metrics") or {}).get(self.metric)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return bad
        if self.transform == "log10":
            return math.log10(value) if value > 0 else bad
        return float(value)

    def satisfied(self, aggregate: float) -> bool:
        if self.condition == "below":
            return aggregate <= self.level
        return aggregate >= self.level

    def low_side(self, aggregate: float) -> bool:
        """Whether an axis value with this aggregate lies below the threshold."""
        return self.satisfied(aggregate) == (self.holds == "low")

    def interpolate(self, lo: float, m_lo: float, hi: float, m_hi: float) -> float:
        """Where the aggregate crosses the level between the bracket values (log or linear axis)."""
        if self.scale == "log":
            a, b = math.log(lo), math.log(hi)
        else:
            a, b = float(lo), float(hi)
        if math.isfinite(m_lo) and math.isfinite(m_hi) and m_hi != m_lo:
            t = min(1.0, max(0.0, (self.level - m_lo) / (m_hi - m_lo)))
        else:
            t = 0.5
        x = a + t * (b - a)
        return math.exp(x) if self.scale == "log" else x


@dataclass
class PointSearch:
    """The search at one grid point of a block: ``make_cells(x)`` gives the cells (all
    repetitions) at axis value ``x``; ``start`` is the resolved first value."""

    experiment_id: str
    search: Search
    coords: dict[str, Any]
    """The grid point's coordinates without the searched axis (axes and axis-free derived values)."""
    start: float
    make_cells: Callable[[Any], list[Cell]]
