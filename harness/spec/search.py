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
    # below = [-3, -4, -6]     # ... or several levels, one threshold each, from the same cells
    # above = 0.999            # ... or >= a level (or a list of levels)
    holds = "low"              # the condition holds at low axis values ("high": at high ones)
    warm_start = false         # true: start each grid point from the thresholds found at
                               # earlier points (see below)
    wave = 1                   # with warm_start: grid points searched side by side

For every point of the rest of the grid, the runner evaluates the block at one axis value at a
time (all repetitions of it: ordinary cells, rows and seeds, exactly as a grid over the axis
would make them), steps by ``growth`` until it has seen the condition hold and fail, then
bisects the bracket. The search is a pure function of the rows: replaying it over a run's rows
gives the cells still to run (:func:`harness.runner.search.pending_cells`) or, once all are
there, the thresholds (:func:`harness.runner.search.thresholds`), so resume, ``-j``, dask and a
killed run need nothing special.

Several levels. ``below`` or ``above`` may be a list: every grid point then gets one threshold
per level from one search. The levels share the cells: every axis value evaluated counts for
every level (a value is never evaluated twice), and each round evaluates, side by side, the next
value of every level not yet done (its step out while one side of it is unseen, else the middle
of its bracket; levels with the same next value share it).

Warm starts (``warm_start = true``). The grid points are taken in grid order, in waves of
``wave`` points; the points of one wave search side by side, and a wave starts once every
earlier wave is done, from what those found: for each level, the point's ``start`` times the
mean ratio threshold / ``start`` of the (up to) :data:`WARM_NEIGHBOURS` nearest earlier points
(in grid order) whose threshold at that level was found (geometric mean on a log scale; on a
linear scale the mean difference). With ``start = "2 * d**2"`` that is a fitted c d^2, local in
d. From that prediction the search steps out by :meth:`Search.warm_step` (about the tolerance,
then doubling) instead of ``growth``. A level no earlier point found starts from ``start`` as
usual, and so does the first wave. Since a wave sees only finished earlier waves, the path is a
pure function of the rows: serial, ``-j``, dask and a resumed run visit the same cells. Without
``warm_start`` (the default, and how runs made before it replay) every point starts from
``start``, all at once.

Aggregation. At one axis value the repetitions' ``transform(metric)`` values are averaged (the
mean of log10 for ``transform = "log10"``, as Bombari et al. average their heat map). A row with
status ``diverged`` or a missing, non-finite or (for log10) non-positive metric counts as failing
the condition (+inf below a ``below`` level, -inf for ``above``); a ``failed`` or ``timeout`` row
stops that grid point's search with status ``failed`` (its cells stay in rows.jsonl).

The result per grid point and level (one line of ``thresholds.csv``): ``level``; ``axis``;
``lower`` and ``upper``, the bracket (the largest evaluated value on the low side of the
threshold and the smallest on the high side); ``threshold``, where the aggregated metric crosses
the level, interpolated linearly in log(axis) (``scale = "log"``) or in the axis (``"linear"``)
between the two bracket values; ``n_cells`` (the point's cells, shared by its levels);
``status``: ``found``, ``above_upper`` (the low side reaches the upper bound: the threshold is
above the searched range), ``below_lower``, ``max_steps``, ``failed`` or ``incomplete`` (rows
still missing: an interrupted run, or a wave waiting for earlier ones); ``ci_low``, ``ci_high``: a
95% percentile bootstrap interval of the threshold over the repetitions (the bracket says how
finely the axis was searched, this interval how much the threshold would move with other seeds);
``early_stop_fraction`` and ``median_stop_epoch``: how the training runs at the two bracket
values ended (:meth:`harness.plugin.experiment.Experiment.stopping`; empty for experiments that
do not say).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.spec.cells import Cell

TRANSFORMS = ("log10", "none")

WARM_NEIGHBOURS = 3
"""A warm start predicts a level's threshold from this many nearest earlier grid points."""


@dataclass(frozen=True)
class Search:
    """A validated ``[experiments.search]`` table (see the module docstring)."""

    axis: str
    lower: float
    upper: float
    metric: str
    levels: tuple[float, ...]
    """The condition's levels, in the file's order (one threshold per grid point and level)."""
    condition: str  # "below" or "above"
    holds: str = "low"  # "low" or "high"
    scale: str = "log"
    integer: bool = False
    start: str | None = None
    growth: float = 2.0
    tolerance: float = 0.05
    max_steps: int = 24
    transform: str = "log10"
    warm_start: bool = False
    wave: int = 1

    def to_table(self) -> dict[str, Any]:
        """The TOML table that declares this search (every default written out; one level is
        written as a number, as files made before several levels have it)."""
        table: dict[str, Any] = {"axis": self.axis, "lower": self.lower, "upper": self.upper,
                                 "scale": self.scale, "integer": self.integer}
        if self.start is not None:
            table["start"] = self.start
        levels: Any = self.levels[0] if len(self.levels) == 1 else list(self.levels)
        table.update({"growth": self.growth, "tolerance": self.tolerance, "max_steps": self.max_steps,
                      "metric": self.metric, "transform": self.transform, self.condition: levels,
                      "holds": self.holds})
        if self.warm_start:
            table.update({"warm_start": True, "wave": self.wave})
        return table

    def describe(self, level: float) -> str:
        """The condition at one level, in words (``thresholds.csv``'s ``condition``)."""
        aggregated = self.metric if self.transform == "none" else f"{self.transform}({self.metric})"
        return (f"mean {aggregated} {'<=' if self.condition == 'below' else '>='} {level:g}"
                f" holds at {self.holds} {self.axis}")

    # -- values on the axis --------------------------------------------------------------------

    def clamp(self, x: float) -> float | int:
        """``x`` inside the bounds, as an int on an integer axis (floats to 10 significant digits,
        so that coordinates and cell ids stay readable and stable)."""
        x = min(max(float(x), self.lower), self.upper)
        if self.integer:
            return int(round(x))
        return float(f"{x:.10g}")

    def position(self, x: float) -> float:
        """Where ``x`` lies on the search's scale: log(x), or x on a linear scale."""
        return math.log(x) if self.scale == "log" else float(x)

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

    def warm_unit(self) -> float:
        """The first step out from a warm start's prediction: a factor ``(1 + tolerance) ** 0.95``
        on a log scale, ``0.95 * tolerance`` on a linear one: just inside the tolerance, so that a
        prediction off by less than that is bracketed, and found, with two values."""
        return (1.0 + self.tolerance) ** 0.95 if self.scale == "log" else 0.95 * self.tolerance

    def warm_step(self, x: float, prior: float, up: bool) -> float:
        """The next value out from ``x`` (the farthest value seen on one side) of a search that
        started from the prediction ``prior``: the distance from ``prior`` doubles with each
        step, at least one :meth:`warm_unit` (distances 1, 2, 4, 8, ... units), so that a close
        prediction costs two values and a poor one a few more."""
        unit = self.warm_unit()
        if self.scale == "log":
            done = abs(math.log(x / prior)) / math.log(unit) if x > 0 and prior > 0 else 0.0
            factor = unit ** max(1.0, done)
            return x * factor if up else x / factor
        step = unit * max(1.0, abs(x - prior) / unit)
        return x + step if up else x - step

    def step_up(self, x: float, step: float | None = None) -> float:
        step = self.growth if step is None else step
        return x * step if self.scale == "log" else x + step

    def step_down(self, x: float, step: float | None = None) -> float:
        step = self.growth if step is None else step
        return x / step if self.scale == "log" else x - step

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

    def satisfied(self, aggregate: float, level: float) -> bool:
        if self.condition == "below":
            return aggregate <= level
        return aggregate >= level

    def low_side(self, aggregate: float, level: float) -> bool:
        """Whether an axis value with this aggregate lies below the threshold of ``level``."""
        return self.satisfied(aggregate, level) == (self.holds == "low")

    def bracket(self, evaluated: Mapping[Any, float], level: float) -> tuple[Any, Any]:
        """(largest evaluated value on the low side of ``level``, smallest value on the high side
        above it); ``None`` for a side not seen. ``evaluated``: axis value -> aggregate."""
        low = [x for x, m in evaluated.items() if self.low_side(m, level)]
        high = [x for x, m in evaluated.items() if not self.low_side(m, level)]
        hi = min(high) if high else None
        if hi is not None:
            low = [x for x in low if x < hi]
        lo = max(low) if low else None
        return lo, hi

    def interpolate(self, lo: float, m_lo: float, hi: float, m_hi: float, level: float) -> float:
        """Where the aggregate crosses ``level`` between the bracket values (log or linear axis)."""
        if self.scale == "log":
            a, b = math.log(lo), math.log(hi)
        else:
            a, b = float(lo), float(hi)
        if math.isfinite(m_lo) and math.isfinite(m_hi) and m_hi != m_lo:
            t = min(1.0, max(0.0, (level - m_lo) / (m_hi - m_lo)))
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
    index: int = 0
    """The point's position in its block's grid order (waves and warm-start neighbours)."""
