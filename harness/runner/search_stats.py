"""What a threshold line says beyond its bracket: the bootstrap interval of the threshold over the
repetitions, and how the runs at the bracket ended (the provenance of the aggregated value)."""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from harness.spec.search import Search


def bootstrap_interval(s: Search, samples: Mapping[Any, Sequence[float]], level: float,
                       resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float | None, float | None]:
    """A percentile bootstrap interval of the threshold at ``level`` over the repetitions.

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
        lo, hi = s.bracket(agg, level)
        if lo is None:
            out.append(float(xs[0]))
        elif hi is None:
            out.append(float(xs[-1]))
        else:
            out.append(s.interpolate(lo, agg[lo], hi, agg[hi], level))
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(out, [tail, 100 - tail])
    return float(low), float(high)


def stopping_summary(component, rows: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """``(fraction of runs that stopped early, median epoch they stopped at)`` over ``rows``, from
    the experiment's :meth:`~harness.plugin.experiment.Experiment.stopping`; ``(None, None)``
    when no row says (an experiment that does not train)."""
    stops = []
    for r in rows:
        try:
            stop = component.stopping(r.get("metrics") or {})
        except Exception:  # a plugin's reading of an odd row never loses the thresholds
            stop = None
        if stop is not None:
            stops.append(stop)
    if not stops:
        return None, None
    return (sum(1 for early, _ in stops if early) / len(stops),
            float(statistics.median(float(epoch) for _, epoch in stops)))
