"""The threshold search's algorithm: bracket and bisect one axis of a block, replayed from rows.

The search is a pure function of the rows: :func:`replay` over a run's rows gives the cells still
to run (:func:`pending_cells`) or, once all are there, the threshold (:func:`thresholds`), so
resume, ``-j``, dask and a killed run need nothing special. The ``[experiments.search]`` table
and what each line of ``thresholds.csv`` means are described in :mod:`harness.spec.search`;
the tables are printed by :mod:`harness.results.thresholds`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from harness.errors import UserError
from harness.plugin.seeds import canonical, same_number
from harness.spec.cells import Cell
from harness.spec.search import PointSearch, Search

STATUSES = ("found", "above_upper", "below_lower", "max_steps", "failed", "incomplete")
_STOP_STATUSES = ("failed", "timeout")


# ----------------------------------------------------------------------------------------------
# one grid point


@dataclass
class Outcome:
    """Where a point's search stands after replaying the rows."""

    status: str | None  # None: still running (``need`` holds the cells to run next)
    need: list[Cell]
    evaluated: dict[Any, float]  # axis value -> aggregate
    n_cells: int
    lower: Any = None
    upper: Any = None
    threshold: float | None = None
    samples: dict[Any, list[float]] = field(default_factory=dict)  # axis value -> per repetition
    error: str | None = None  # why a search stopped as failed before its cells ran


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


def replay(point: PointSearch, rows_by_id: Mapping[str, Mapping[str, Any]]) -> Outcome:
    """Walk the search over the rows that exist; stop at the first axis value with missing rows."""
    s = point.search
    evaluated: dict[Any, float] = {}
    samples: dict[Any, list[float]] = {}
    n_cells = 0
    x = s.clamp(point.start)
    for _ in range(s.max_steps):
        try:
            cells = point.make_cells(x)
        except UserError as exc:  # a value between the bounds the experiment refuses
            outcome = _finish(s, "failed", evaluated, n_cells, samples)
            outcome.error = f"{s.axis} = {x}: {exc}"
            return outcome
        rows = [rows_by_id.get(row_key(c.experiment_id, c.coords, c.repetition)) for c in cells]
        missing = [c for c, r in zip(cells, rows) if r is None]
        n_cells += len(cells) - len(missing)
        if missing:
            return Outcome(None, missing, evaluated, n_cells, samples=samples)
        if any(r.get("status") in _STOP_STATUSES for r in rows):
            return _finish(s, "failed", evaluated, n_cells, samples)
        samples[x] = [s.value_of(r) for r in rows]
        evaluated[x] = sum(samples[x]) / len(rows)
        nxt, status = _next_value(s, evaluated)
        if status is not None:
            return _finish(s, status, evaluated, n_cells, samples)
        x = nxt
    return _finish(s, "max_steps", evaluated, n_cells, samples)


def _bracket(s: Search, evaluated: Mapping[Any, float]) -> tuple[Any, Any]:
    """(largest value on the low side, smallest value on the high side above it)."""
    low = [x for x, m in evaluated.items() if s.low_side(m)]
    high = [x for x, m in evaluated.items() if not s.low_side(m)]
    hi = min(high) if high else None
    if hi is not None:
        low = [x for x in low if x < hi]
    lo = max(low) if low else None
    return lo, hi


def _next_value(s: Search, evaluated: Mapping[Any, float]) -> tuple[Any, str | None]:
    lo, hi = _bracket(s, evaluated)
    if hi is None:  # only the low side seen: go up
        if lo >= s.upper:
            return None, "above_upper"
        x = s.clamp(s.step_up(lo))
    elif lo is None:  # only the high side seen: go down
        if hi <= s.lower:
            return None, "below_lower"
        x = s.clamp(s.step_down(hi))
    else:
        if s.converged(lo, hi):
            return None, "found"
        x = s.clamp(s.middle(lo, hi))
        if not lo < x < hi:
            return None, "found"
    if x in evaluated:  # cannot happen with a monotone metric; stop rather than loop
        return None, "found" if lo is not None and hi is not None else "max_steps"
    return x, None


def _finish(s: Search, status: str, evaluated: Mapping[Any, float], n_cells: int,
            samples: Mapping[Any, list[float]]) -> Outcome:
    lo, hi = _bracket(s, evaluated)
    threshold = None
    if status == "found" and lo is not None and hi is not None:
        threshold = s.interpolate(lo, evaluated[lo], hi, evaluated[hi])
    return Outcome(status, [], dict(evaluated), n_cells, lower=lo, upper=hi, threshold=threshold,
                   samples=dict(samples))


def bootstrap_interval(s: Search, samples: Mapping[Any, Sequence[float]], resamples: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """A percentile bootstrap interval of the threshold over the repetitions.

    Each resample draws, at every evaluated axis value independently (each value has its own
    seeds), the repetitions with replacement, recomputes the aggregates and the crossing the
    same way as the threshold (the bracket from all evaluated values, interpolated); a resample
    whose crossing falls outside the evaluated values counts at the end of that range. The
    generator is seeded, so the interval is the same on every executor. ``(None, None)`` with
    fewer than two evaluated values or a single repetition.
    """
    import numpy as np

    xs = sorted(samples)
    if len(xs) < 2 or min(len(samples[x]) for x in xs) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = []
    for x in xs:
        v = np.asarray(samples[x], dtype=float)
        idx = rng.integers(0, len(v), size=(resamples, len(v)))
        with np.errstate(invalid="ignore"):
            means.append(v[idx].mean(axis=1))
    table = np.array(means).T  # (resamples, len(xs))
    out = []
    for row in table:
        agg = dict(zip(xs, row.tolist()))
        lo, hi = _bracket(s, agg)
        if lo is None:
            out.append(float(xs[0]))
        elif hi is None:
            out.append(float(xs[-1]))
        else:
            out.append(s.interpolate(lo, agg[lo], hi, agg[hi]))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(out, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------
# a whole spec


def point_searches(spec) -> list[PointSearch]:
    """Every grid point of every searched block of ``spec``, in file and grid order."""
    out = []
    for exp in spec.experiments:
        if exp.search is not None:
            out.extend(exp.point_searches(spec.seed))
    return out


_rows_by_id = rows_by_key


def pending_cells(spec, rows: Iterable[Mapping[str, Any]]) -> list[Cell]:
    """The cells every unfinished search needs next (none once all searches are done)."""
    by_id = _rows_by_id(rows)
    out: list[Cell] = []
    for point in point_searches(spec):
        out.extend(replay(point, by_id).need)
    return out


def searched_cell_ids(spec, rows: Iterable[Mapping[str, Any]]) -> tuple[set[str], int]:
    """(ids of the search cells the replay visits with rows present, count of cells pending)."""
    by_id = _rows_by_id(rows)
    visited: set[str] = set()
    pending = 0
    for point in point_searches(spec):
        outcome = replay(point, by_id)
        for x in outcome.evaluated:
            visited.update(c.cell_id for c in point.make_cells(x))
        pending += len(outcome.need)
    return visited, pending


def thresholds(spec, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per searched grid point: ``experiment_id``, its coordinates, ``axis``,
    ``threshold``, ``lower``, ``upper``, ``n_cells``, ``status``, the condition and the values
    evaluated (``evaluations``: ``x:aggregate`` pairs in axis order)."""
    by_id = _rows_by_id(rows)
    lines = []
    for point in point_searches(spec):
        s = point.search
        outcome = replay(point, by_id)
        ci = bootstrap_interval(s, outcome.samples) if outcome.status == "found" else (None, None)
        line: dict[str, Any] = {"experiment_id": point.experiment_id, **point.coords, "axis": s.axis,
                                "threshold": outcome.threshold, "lower": outcome.lower,
                                "upper": outcome.upper, "n_cells": outcome.n_cells,
                                "ci_low": ci[0], "ci_high": ci[1],
                                "status": outcome.status or "incomplete",
                                "condition": f"mean {_aggregated(s)} "
                                             f"{'<=' if s.condition == 'below' else '>='} {s.level:g}"
                                             f" holds at {s.holds} {s.axis}",
                                "evaluations": ";".join(f"{x}:{m:.4g}" for x, m in sorted(outcome.evaluated.items()))}
        if outcome.error:
            line["error"] = outcome.error[:300]
        lines.append(line)
    return lines


def _aggregated(s: Search) -> str:
    return s.metric if s.transform == "none" else f"{s.transform}({s.metric})"


def expected_path(s: Search, start: float) -> list[Any]:
    """The axis values a search visits when its threshold lies just below ``start x growth``
    (the start holds, one step out fails, every midpoint holds): what ``--dry-run`` plans with.
    Real searches visit about as many values, at other places."""
    lo = s.clamp(start)
    xs = [lo]
    hi = s.clamp(s.step_up(lo) if s.holds == "low" else s.step_down(lo))
    if hi == lo:
        return xs
    xs.append(hi)
    lo, hi = min(lo, hi), max(lo, hi)
    while len(xs) < s.max_steps and not s.converged(lo, hi):
        m = s.clamp(s.middle(lo, hi))
        if not lo < m < hi:
            break
        xs.append(m)
        lo = m
    return xs
