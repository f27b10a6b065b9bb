"""The threshold search's algorithm: bracket and bisect one axis of a block at one or several
levels, replayed from rows.

The search is a pure function of the rows: :func:`replay_spec` over a run's rows gives the cells
still to run (:func:`pending_cells`) or, once all are there, the thresholds (:func:`thresholds`),
so resume, ``-j``, dask and a killed run need nothing special. A point's search runs in rounds:
each round evaluates, side by side, the next axis value of every level not yet done (a value
serves every level); with ``warm_start`` the block's points go in waves, each wave predicted
from the thresholds of the finished earlier ones (:func:`warm_priors`). The
``[experiments.search]`` table and what each line of ``thresholds.csv`` means are described in
:mod:`harness.spec.search`; the tables are printed by :mod:`harness.results.thresholds`, the
dry-run's expected paths made by :mod:`harness.runner.search_plan`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.errors import UserError
from harness.plugin.seeds import canonical, same_number
from harness.runner.search_stats import bootstrap_interval, stopping_summary
from harness.spec.cells import Cell
from harness.spec.search import WARM_NEIGHBOURS, PointSearch, Search

STATUSES = ("found", "above_upper", "below_lower", "max_steps", "failed", "incomplete")
_STOP_STATUSES = ("failed", "timeout")


# ----------------------------------------------------------------------------------------------
# one grid point


@dataclass
class LevelOutcome:
    """Where one level of a point's search stands: ``status`` ``None`` while it searches."""

    level: float
    status: str | None = None
    lower: Any = None
    upper: Any = None
    threshold: float | None = None


@dataclass
class Outcome:
    """Where a point's search stands after replaying the rows."""

    levels: list[LevelOutcome]
    need: list[Cell]  # the cells to run next (empty when done, or while a wave waits)
    evaluated: dict[Any, float]  # axis value -> aggregate
    n_cells: int
    samples: dict[Any, list[float]] = field(default_factory=dict)  # axis value -> per repetition
    rows: dict[Any, list[Mapping[str, Any]]] = field(default_factory=dict)  # axis value -> its rows
    error: str | None = None  # why a search stopped as failed before its cells ran
    prior: dict[float, float] = field(default_factory=dict)  # level -> warm-start prediction

    @property
    def done(self) -> bool:
        """Every level has a final status."""
        return all(lv.status is not None for lv in self.levels)


def row_key(experiment_id: str, coords: Mapping[str, Any], repetition: int) -> str:
    """How a search finds its rows: the block, the coordinates and the repetition. Within one
    run directory these determine a cell (its spec cannot change, see ``--resume``), and unlike
    the cell id they do not change when a later version of the harness adds a parameter, so a
    run made by an older version still replays (``harness show``, ``plot``, ``report``)."""
    return canonical([experiment_id, same_number(dict(coords)), int(repetition)])  # 2.0 is 2


def rows_by_key(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The rows of ``rows`` by :func:`row_key` (a later row for the same cell wins)."""
    out = {}
    for r in rows:
        if isinstance(r, Mapping) and "coords" in r and "experiment_id" in r:
            out[row_key(r["experiment_id"], r["coords"] or {}, r.get("repetition", 0))] = r
    return out


def first_round(s: Search, start: float, priors: Mapping[float, float]) -> list[Any]:
    """The axis values a point evaluates first: each level's warm-start prediction (``start``
    for a level without one), in level order; a value within the tolerance of an earlier one is
    left out (one value serves both)."""
    out: list[Any] = []
    for level in s.levels:
        x = s.clamp(priors.get(level, start))
        if not any(x == y or s.converged(min(x, y), max(x, y)) for y in out):
            out.append(x)
    return out


def next_value(s: Search, evaluated: Mapping[Any, float], level: float,
               prior: float | None = None) -> tuple[Any, str | None]:
    """``(next axis value, None)`` for one level, or ``(None, final status)``: step out while one
    side is unseen (by ``growth``, or from a warm start's ``prior`` by :meth:`Search.warm_step`),
    then bisect the bracket. A warm level whose bracket comes from other levels' values keeps
    stepping out from its prior while that step falls short of the bracket's middle."""
    lo, hi = s.bracket(evaluated, level)
    if hi is None:  # only the low side seen: go up
        if lo >= s.upper:
            return None, "above_upper"
        x = s.clamp(s.step_up(lo) if prior is None else s.warm_step(lo, prior, up=True))
        if s.integer and x == lo:  # a step finer than the axis' unit
            x = s.clamp(lo + 1)
    elif lo is None:  # only the high side seen: go down
        if hi <= s.lower:
            return None, "below_lower"
        x = s.clamp(s.step_down(hi) if prior is None else s.warm_step(hi, prior, up=False))
        if s.integer and x == hi:
            x = s.clamp(hi - 1)
    else:
        if s.converged(lo, hi):
            return None, "found"
        x = s.clamp(s.middle(lo, hi))
        if prior is not None and (prior <= lo or prior >= hi):  # a bracket from other levels' values
            out = s.clamp(s.warm_step(lo, prior, up=True) if prior <= lo else s.warm_step(hi, prior, up=False))
            if lo < out < hi and abs(s.position(out) - s.position(prior)) < abs(s.position(x) - s.position(prior)):
                x = out  # the step out from the prior falls short of the middle: take it
        if not lo < x < hi:
            return None, "found"
    if x in evaluated:  # cannot happen with a monotone metric; stop rather than loop
        return None, "found" if lo is not None and hi is not None else "max_steps"
    return x, None


class PointWalk:
    """One point's search fed with aggregates, round by round: ``todo`` holds the axis values
    the next round evaluates (empty once every level has a status); :meth:`record` takes their
    aggregates. :func:`replay` feeds it from rows, the dry-run's plan from a model
    (:mod:`harness.runner.search_plan`). ``priors``: level -> predicted threshold (a warm start),
    from which that level steps out by :meth:`Search.warm_step` instead of ``growth``."""

    def __init__(self, s: Search, start: float, priors: Mapping[float, float] | None = None) -> None:
        self.s = s
        self.priors = dict(priors or {})
        self.levels = [LevelOutcome(level) for level in s.levels]
        self.evaluated: dict[Any, float] = {}
        self.todo: list[Any] = first_round(s, start, self.priors)[: s.max_steps]

    def record(self, aggregates: Mapping[Any, float]) -> None:
        """The aggregates of this round's values; sets the next round (or the statuses)."""
        s = self.s
        self.evaluated.update(aggregates)
        todo: list[Any] = []
        for lv in self.levels:
            if lv.status is None:
                x, lv.status = next_value(s, self.evaluated, lv.level, self.priors.get(lv.level))
                if x is not None and x not in todo:
                    todo.append(x)
        if todo and len(self.evaluated) >= s.max_steps:
            self.finish("max_steps")
        elif todo:
            self.todo = todo[: s.max_steps - len(self.evaluated)]
        else:
            self.finish(None)

    def finish(self, status: str | None) -> None:
        """Give every level still searching ``status``; brackets and thresholds of every level."""
        s = self.s
        for lv in self.levels:
            if lv.status is None:
                lv.status = status
            lv.lower, lv.upper = s.bracket(self.evaluated, lv.level)
            if lv.status == "found" and lv.lower is not None and lv.upper is not None:
                lv.threshold = s.interpolate(lv.lower, self.evaluated[lv.lower], lv.upper,
                                             self.evaluated[lv.upper], lv.level)
        self.todo = []


def replay(point: PointSearch, rows_by_id: Mapping[str, Mapping[str, Any]],
           priors: Mapping[float, float] | None = None) -> Outcome:
    """Walk a point's search (:class:`PointWalk`) over the rows that exist, round by round; stop
    at the first round with missing rows (``need``)."""
    s = point.search
    walk = PointWalk(s, point.start, priors)
    out = Outcome(levels=walk.levels, need=[], evaluated=walk.evaluated, n_cells=0, prior=walk.priors)
    while walk.todo:
        got: dict[Any, list] = {}
        for x in walk.todo:
            try:
                cells = point.make_cells(x)
            except UserError as exc:  # a value between the bounds the experiment refuses
                out.error = f"{s.axis} = {x}: {exc}"
                walk.finish("failed")
                return out
            rows = [rows_by_id.get(row_key(c.experiment_id, c.coords, c.repetition)) for c in cells]
            missing = [c for c, r in zip(cells, rows) if r is None]
            out.n_cells += len(cells) - len(missing)
            out.need.extend(missing)
            got[x] = rows
        if out.need:
            return out
        aggregates = {}
        for x, rows in got.items():
            if any(r.get("status") in _STOP_STATUSES for r in rows):
                continue
            out.samples[x] = [s.value_of(r) for r in rows]
            aggregates[x] = sum(out.samples[x]) / len(rows)
            out.rows[x] = rows
        if len(aggregates) < len(got):  # a failed or timed-out cell stops the point's search
            walk.evaluated.update(aggregates)
            walk.finish("failed")
            return out
        walk.record(aggregates)
    return out


# ----------------------------------------------------------------------------------------------
# a block: waves and warm starts


def warm_priors(point: PointSearch, earlier: Sequence[tuple[PointSearch, Outcome]]) -> dict[float, float]:
    """Level -> predicted threshold of ``point`` from finished earlier points: ``start`` times the
    mean ratio threshold / start of the :data:`~harness.spec.search.WARM_NEIGHBOURS` nearest
    points in grid order (ties: the earlier) that found that level (geometric mean on a log
    scale, mean difference on a linear one). Levels no earlier point found are left out."""
    s = point.search
    priors = {}
    for level in s.levels:
        found = [(q, lv.threshold) for q, o in earlier for lv in o.levels
                 if lv.level == level and lv.status == "found" and lv.threshold is not None]
        found.sort(key=lambda item: (abs(item[0].index - point.index), item[0].index))
        near = found[:WARM_NEIGHBOURS]
        if not near:
            continue
        if s.scale == "log":
            shift = sum(math.log(t / q.start) for q, t in near) / len(near)
            priors[level] = point.start * math.exp(shift)
        else:
            priors[level] = point.start + sum(t - q.start for q, t in near) / len(near)
    return priors


def replay_block(points: Sequence[PointSearch], rows_by_id: Mapping[str, Mapping[str, Any]]) -> list[Outcome]:
    """The outcome of every point of one searched block, in grid order. Without ``warm_start``
    every point starts from its ``start``; with it, the points go in waves of ``wave``: a wave
    starts once every earlier point is done (until then its points wait: no cells, status
    ``incomplete``), each of its points from :func:`warm_priors` over the earlier points."""
    if not points:
        return []
    s = points[0].search
    if not s.warm_start:
        return [replay(p, rows_by_id) for p in points]
    outcomes: list[Outcome] = []
    for first in range(0, len(points), s.wave):
        wave = points[first:first + s.wave]
        if not all(o.done for o in outcomes):
            outcomes.extend(Outcome(levels=[LevelOutcome(lv) for lv in s.levels], need=[], evaluated={},
                                    n_cells=0) for _ in wave)
            continue
        earlier = list(zip(points[:first], outcomes))
        outcomes.extend(replay(p, rows_by_id, warm_priors(p, earlier)) for p in wave)
    return outcomes


# ----------------------------------------------------------------------------------------------
# a whole spec


def point_searches(spec) -> list[PointSearch]:
    """Every grid point of every searched block of ``spec``, in file and grid order."""
    out = []
    for exp in spec.experiments:
        if exp.search is not None:
            out.extend(exp.point_searches(spec.seed))
    return out


def replay_spec(spec, rows: Iterable[Mapping[str, Any]]) -> list[tuple[PointSearch, Outcome]]:
    """``(point, outcome)`` for every grid point of every searched block, in file and grid order."""
    by_id = rows_by_key(rows)
    out: list[tuple[PointSearch, Outcome]] = []
    for exp in spec.experiments:
        if exp.search is not None:
            points = exp.point_searches(spec.seed)
            out.extend(zip(points, replay_block(points, by_id)))
    return out


def pending_cells(spec, rows: Iterable[Mapping[str, Any]]) -> list[Cell]:
    """The cells every unfinished search needs next (none once all searches are done)."""
    return [c for _, outcome in replay_spec(spec, rows) for c in outcome.need]


def searched_cell_ids(spec, rows: Iterable[Mapping[str, Any]]) -> tuple[set[str], int]:
    """(ids of the search cells the replay visits with rows present, count of cells pending)."""
    visited: set[str] = set()
    pending = 0
    for point, outcome in replay_spec(spec, rows):
        for x in outcome.evaluated:
            visited.update(c.cell_id for c in point.make_cells(x))
        pending += len(outcome.need)
    return visited, pending


def thresholds(spec, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per searched grid point and level: ``experiment_id``, its coordinates,
    ``level``, ``axis``, ``threshold``, ``lower``, ``upper``, ``n_cells``, ``ci_low``,
    ``ci_high``, ``status``, the condition, the values evaluated (``evaluations``:
    ``x:aggregate`` pairs in axis order), ``early_stop_fraction`` and ``median_stop_epoch``."""
    lines = []
    for point, outcome in replay_spec(spec, rows):
        s = point.search
        component = spec.experiment(point.experiment_id).component
        evaluations = ";".join(f"{x}:{m:.4g}" for x, m in sorted(outcome.evaluated.items()))
        for lv in outcome.levels:
            found = lv.status == "found"
            ci = bootstrap_interval(s, outcome.samples, lv.level) if found else (None, None)
            at_bracket = [r for x in (lv.lower, lv.upper) if x is not None for r in outcome.rows.get(x, [])]
            early, epoch = stopping_summary(component, at_bracket)
            line: dict[str, Any] = {"experiment_id": point.experiment_id, **point.coords, "level": lv.level,
                                    "axis": s.axis, "threshold": lv.threshold, "lower": lv.lower,
                                    "upper": lv.upper, "n_cells": outcome.n_cells,
                                    "ci_low": ci[0], "ci_high": ci[1], "status": lv.status or "incomplete",
                                    "condition": s.describe(lv.level), "evaluations": evaluations,
                                    "early_stop_fraction": early, "median_stop_epoch": epoch}
            if outcome.error:
                line["error"] = outcome.error[:300]
            lines.append(line)
    return lines
