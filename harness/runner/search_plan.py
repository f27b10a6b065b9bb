"""The axis values a threshold search is expected to visit, for ``--dry-run``
(:func:`harness.runner.plan.plan_cells`).

The plan runs the search itself (:class:`harness.runner.search.PointWalk`, with the same waves
and warm starts as a run) against a model of where the thresholds lie:

- a point without a warm start (the first wave, or ``warm_start = false``) has its levels'
  thresholds spread evenly in log(axis) (in the axis on a linear scale) over one ``growth``
  step centred on its ``start``, in the order the condition implies (for ``below`` levels
  holding at low values, the highest level at the largest axis value); one level lies at
  ``start`` itself;
- a point with a warm start has each predicted level's threshold 0.5 or 1.5
  :meth:`~harness.spec.search.Search.warm_unit` away from its prediction (alternating with the
  point and the level, as is the side): a prediction is rarely exact, and one off by 1.5
  units costs a third value, one off by 0.5 units none;
- the aggregate between and beyond the thresholds is linear in log(axis) (only which side of
  each threshold a value lies on steers the search).

So a search costs, in the plan, the steps out and the bisections it costs when ``start`` is a
fair guess and a warm start's prediction is off by about the tolerance; the thresholds
themselves are the run's to find.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from harness.runner.search import Outcome, PointWalk, warm_priors
from harness.spec.search import PointSearch, Search


def _orientation(s: Search) -> int:
    """+1 when the aggregate grows with the axis across the thresholds, -1 when it falls."""
    return 1 if (s.condition == "below") == (s.holds == "low") else -1


def _shift(s: Search, x: float, steps: float, step: float) -> float:
    """``x`` moved by ``steps`` (a fraction) of ``step`` (a factor on a log scale, an amount on a
    linear one)."""
    return x * step ** steps if s.scale == "log" else x + steps * step


def model_thresholds(s: Search, point: PointSearch, priors: dict[float, float]) -> dict[float, float]:
    """Level -> the model's threshold at ``point`` (see the module docstring)."""
    ordered = sorted(s.levels, key=lambda level: _orientation(s) * level)  # increasing threshold
    n = len(ordered)
    values = []
    for k, level in enumerate(ordered):
        if level in priors:
            i = s.levels.index(level)
            sign = 1 if (point.index + i) % 2 == 0 else -1
            units = 0.5 if (point.index // 2 + i) % 2 == 0 else 1.5
            values.append(_shift(s, priors[level], sign * units, s.warm_unit()))
        else:
            values.append(_shift(s, point.start, (k + 0.5) / n - 0.5, s.growth))
    return dict(zip(ordered, sorted(values)))  # the levels' order kept


def model_aggregate(s: Search, thresholds: dict[float, float], x: float) -> float:
    """The model's aggregate at ``x``: through (threshold, level) for every level, linear in
    log(axis) (or the axis) in between and beyond (unit slope with a single level)."""
    def position(v: float) -> float:
        return math.log(max(v, 1e-300)) if s.scale == "log" else float(v)

    knots = sorted((position(t), level) for level, t in thresholds.items())
    u = position(x)
    if len(knots) == 1:
        return knots[0][1] + _orientation(s) * (u - knots[0][0])
    i = 0
    while i < len(knots) - 2 and u > knots[i + 1][0]:
        i += 1
    (u0, m0), (u1, m1) = knots[i], knots[i + 1]
    if u1 == u0:
        return m1 if u >= u1 else m0
    return m0 + (m1 - m0) * (u - u0) / (u1 - u0)


def block_rounds(points: Sequence[PointSearch]) -> list[list[tuple[int, list[Any]]]]:
    """The axis values each point of one searched block is expected to visit, round by round:
    per point, ``(round, values)`` pairs, ``round`` counted from the run's first round (a wave
    starts in the round after its predecessor's last, as a run starts it)."""
    if not points:
        return []
    s = points[0].search
    wave = s.wave if s.warm_start else len(points)
    done: list[tuple[PointSearch, Outcome]] = []
    out: list[list[tuple[int, list[Any]]]] = []
    offset = 0
    for first in range(0, len(points), wave):
        earlier = list(done)
        length = 0
        for point in points[first:first + wave]:
            priors = warm_priors(point, earlier) if s.warm_start else {}
            truth = model_thresholds(s, point, priors)
            walk = PointWalk(s, point.start, priors)
            rounds: list[tuple[int, list[Any]]] = []
            while walk.todo:
                rounds.append((offset + len(rounds), list(walk.todo)))
                walk.record({x: model_aggregate(s, truth, x) for x in walk.todo})
            done.append((point, Outcome(levels=walk.levels, need=[], evaluated=walk.evaluated, n_cells=0)))
            out.append(rounds)
            length = max(length, len(rounds))
        offset += length
    return out


def block_paths(points: Sequence[PointSearch]) -> list[list[Any]]:
    """The axis values each point of one searched block is expected to visit, in the order a
    run visits them (:func:`block_rounds` without the rounds)."""
    return [[x for _, values in rounds for x in values] for rounds in block_rounds(points)]


def planned_rounds(spec) -> list[tuple[PointSearch, list[tuple[int, list[Any]]]]]:
    """``(point, [(round, values), ...])`` for every grid point of every searched block of
    ``spec`` (:func:`block_rounds`; every block starts in the run's first round)."""
    out: list[tuple[PointSearch, list[tuple[int, list[Any]]]]] = []
    for exp in spec.experiments:
        if exp.search is not None:
            points = exp.point_searches(spec.seed)
            out.extend(zip(points, block_rounds(points)))
    return out


def planned_paths(spec) -> list[tuple[PointSearch, list[Any]]]:
    """``(point, expected axis values)`` for every grid point of every searched block of ``spec``."""
    return [(point, [x for _, values in rounds for x in values]) for point, rounds in planned_rounds(spec)]
