"""Side-by-side comparison of result rows: one or several runs, grouped by a key.

Rows are grouped by ``by`` (the experiment block ``experiment_id`` by default; also ``run``,
``experiment``, any grid coordinate, experiment parameter, slot (its component name) or
``slot.param``) and lined up by grid point (the coordinates other than ``by``). ``by`` may name
several keys (``["architecture", "activation"]``, ``"architecture,activation"``, a repeated
``--by``): rows are then grouped by the tuple of their values, labelled ``v1/v2/...`` (rows
lacking any of the keys belong to no group). A key given twice is refused. Group labels are
short and name only what differs between the groups (:mod:`harness.results.labels`:
``fc``, ``fc(bias)``, ``residual(blocks=1)``).

**Blocks are never mixed.** Unless the groups *are* blocks (``by`` names ``experiment_id`` or
``experiment``), each experiment block is compared on its own: one :class:`MetricComparison`
per block and metric (its ``block``), so that the architectures of an NTK block and of a
memorisation block never share a table. ``experiments`` picks blocks (``--experiment/-e``).

For each metric, each group gets ``mean ± std (n)`` per point, from its ``ok`` and ``diverged``
rows with a finite value (as in ``summary.csv``). Without ``metrics``, a metric that is the same
in every row at each point (``N``, ``d``, ``P`` of equal-sized networks) says nothing about the
groups and is left out (named in ``left_out``) unless ``constants``.

Paired comparisons: a row of a group and a row of the baseline group (the first group) pair up
when they sit at the same point and have the same seed (``seed.root`` and ``seed.spawn_key``),
i.e. the same data and initial weights. For each group the mean paired difference
``group - baseline`` is reported with a percentile bootstrap confidence interval (pairs
resampled with replacement), per point (and, with ``pooled=True``, pooled over all points in
a last line ``all``). With ``ratio=True`` also the paired ratio ``group / baseline``: the
geometric mean of the per-pair ratios, ``exp(mean log(g / b))``, with the bootstrap interval of
the mean log mapped back by ``exp`` (pairs where either value is not > 0 are left out and
counted): the natural summary of a positive metric that spans decades. Groups without shared
seeds get neither (they were not drawn from the same random streams). An interval that rests
on fewer than :data:`MIN_PAIRS` pairs is marked ``*`` and named in a note.

Groups and points follow the grid's order (the order of the cells in the run's spec), not the
order in which the cells finished: :func:`harness.api.load_runs` sorts each run's rows so.

Timings (wall-clock seconds, a row's ``timings``) are not compared unless asked for
(``timings=True``, ``harness compare --timings``): then each is one more metric,
``timings.<name>``. Formats: :mod:`harness.results.compare_format`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from harness.errors import UserError, suggest
from harness.results.fits import available_keys, metric_names, row_value
from harness.results.labels import short_labels
from harness.results.stats import finite_float, mean_std

METRIC_STATUSES = ("ok", "diverged")
BLOCK_KEYS = ("experiment_id", "experiment")
"""Keys whose groups are blocks: rows of several blocks then share a table."""
_SPECIAL_KEYS = ("run",) + BLOCK_KEYS
ALL = "all"
"""Point label of the line pooled over every point."""
MIN_PAIRS = 5
"""An interval resting on fewer pairs than this is marked as unreliable."""
GROUP_SEPARATOR = "/"
"""Joins the values of several ``by`` keys into one group label."""


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs when fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or n_boot <= 0:
        return math.nan, math.nan
    scale = float(np.max(np.abs(v)))  # means of values near the float range: scaled to 1
    if not 0 < scale < math.inf:
        scale = 1.0
    v = v / scale
    rng = rng if rng is not None else np.random.default_rng(0)
    chunk = max(1, min(n_boot, 1_000_000 // v.size))
    means = []
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        means.append(v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1))
        done += k
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return float(lo) * scale, float(hi) * scale


@dataclass
class Stats:
    mean: float | None
    std: float | None
    n: int


@dataclass
class Difference:
    """Mean of ``group - baseline`` over paired rows, with its bootstrap interval."""

    mean: float | None
    ci_low: float
    ci_high: float
    pairs: int

    @property
    def few_pairs(self) -> bool:
        """An interval exists but rests on fewer than :data:`MIN_PAIRS` pairs."""
        return 0 < self.pairs < MIN_PAIRS and not math.isnan(self.ci_low)


@dataclass
class Ratio(Difference):
    """Geometric mean of the paired ratios ``group / baseline`` (``mean``), with the bootstrap
    interval of the mean log ratio mapped back by ``exp``; ``excluded``: pairs left out because
    a value was not > 0."""

    excluded: int = 0


@dataclass
class Line:
    """One point (or the pooled line, ``point is None``): stats per group, differences (and
    ratios, when asked for) per non-baseline group."""

    point: dict[str, Any] | None
    stats: dict[str, Stats] = field(default_factory=dict)
    diffs: dict[str, Difference] = field(default_factory=dict)
    ratios: dict[str, Ratio] = field(default_factory=dict)


@dataclass
class MetricComparison:
    metric: str
    by: str
    groups: list[str]
    baseline: str
    point_keys: list[str]
    lines: list[Line]
    level: float
    block: str | None = None
    """The experiment block compared (``None`` when the groups are blocks)."""
    ratio: bool = False
    """Whether ``lines`` hold paired ratios (what the tables show against the baseline)."""
    warnings: list[str] = field(default_factory=list)
    """What the pairing cannot tell (a block id that runs different experiments in the runs)."""

    @property
    def title(self) -> str:
        return f"{self.block}: {self.metric}" if self.block is not None else self.metric

    def paired(self) -> list[dict[str, Ratio] | dict[str, Difference]]:
        """Per line, what is shown against the baseline: the ratios or the differences."""
        return [line.ratios if self.ratio else line.diffs for line in self.lines]

    @property
    def any_pairs(self) -> bool:
        return any(d.pairs for p in self.paired() for d in p.values())

    @property
    def few_pair_intervals(self) -> int:
        """How many intervals rest on fewer than :data:`MIN_PAIRS` pairs."""
        return sum(1 for p in self.paired() for d in p.values() if d.few_pairs)

    @property
    def excluded_pairs(self) -> int:
        """Pairs left out of the ratios because a value was not > 0."""
        return sum(r.excluded for line in self.lines for r in line.ratios.values())


class Comparisons(list):
    """The :class:`MetricComparison` list :func:`compare` returns, with ``left_out``: block (or
    ``None``) -> the metrics left out because they are the same in every row at each point."""

    def __init__(self, items=(), left_out: Mapping[str | None, Sequence[str]] | None = None) -> None:
        super().__init__(items)
        self.left_out: dict[str | None, list[str]] = {k: list(v) for k, v in (left_out or {}).items()}


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def run_label(path: str | Path, all_paths: Sequence[str | Path]) -> str:
    """A short label for a run directory: its name, or its full path when names collide."""
    p = Path(path)
    return p.name if [Path(q).name for q in all_paths].count(p.name) == 1 else str(p)


def _key_value(row: Mapping[str, Any], run: str, key: str) -> Any:
    return run if key == "run" else row_value(row, key)


def group_rows(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
               by: str | Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    """Group label -> rows. With several runs, labels are prefixed by the run label when the
    same value of ``by`` occurs in more than one run. Rows that have no value of ``by`` (an
    experiment block without that axis or parameter) belong to no group. ``by`` may be several
    keys (see :func:`by_keys`): a group per tuple of values, labelled ``v1/v2/...``; each
    value's label is short (:func:`harness.results.labels.short_labels`)."""
    keys = by_keys(by)
    _check_keys([r for _, rows in runs for r in rows], keys)
    return _grouped(runs, keys)


def _check_keys(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    """A :class:`UserError` naming a key of ``keys`` that no row has."""
    for key in keys:
        if key not in _SPECIAL_KEYS:
            available = available_keys(rows)
            if key not in available:
                choices = list(_SPECIAL_KEYS) + available
                raise UserError(f"--by {key!r}: not a key of the rows{suggest(key, choices)}; "
                                f"choose from: {', '.join(choices)}")


def _grouped(runs, keys: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    valued: list[tuple[str, Mapping[str, Any], list[Any]]] = []
    for label, rows in runs:  # rows without a value of ``by`` (other experiment blocks) are left out
        for row in rows:
            values = [_key_value(row, label, key) for key in keys]
            if all(v is not None for v in values):
                valued.append((label, row, values))
    names: list[dict[str, str]] = []  # per key: canonical value -> short label
    for i in range(len(keys)):
        distinct = {_hashable(values[i]): values[i] for _, _, values in valued}
        names.append(dict(zip(distinct, short_labels(list(distinct.values())))))
    seen_in: dict[str, set[str]] = {}
    labelled = []
    for run, row, values in valued:
        value = GROUP_SEPARATOR.join(names[i][_hashable(v)] for i, v in enumerate(values))
        seen_in.setdefault(value, set()).add(run)
        labelled.append((run, row, value))
    prefix = len(runs) > 1 and "run" not in keys and any(len(s) > 1 for s in seen_in.values())
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run, row, value in labelled:
        groups.setdefault(f"{run}:{value}" if prefix else value, []).append(row)
    return groups


def _point(row: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Where a row sits: its coordinates other than the ``by`` keys."""
    return {k: v for k, v in (row.get("coords") or {}).items() if k not in keys}


def _value(row: Mapping[str, Any], metric: str, timings: bool = False) -> float | None:
    from harness.spec.row import row_metrics

    if row.get("status") not in METRIC_STATUSES:
        return None
    return finite_float(row_metrics(row, timings).get(metric))  # a boolean counts as 0 or 1


def _seed_key(row: Mapping[str, Any]) -> tuple | None:
    seed = row.get("seed") or {}
    if "root" not in seed or "spawn_key" not in seed:
        return None
    return (seed["root"], tuple(seed["spawn_key"]))


def _by_seed(entries: Sequence[tuple[tuple | None, float]]) -> dict[tuple, float]:
    """Seed -> value, for the seeds held by exactly one row (a seed shared by several rows of
    a group at one point cannot be paired unambiguously)."""
    counts: dict[tuple, int] = {}
    for seed, _ in entries:
        if seed is not None:
            counts[seed] = counts.get(seed, 0) + 1
    return {seed: v for seed, v in entries if seed is not None and counts[seed] == 1}


def _stats(values: Sequence[float]) -> Stats:
    mean, std = mean_std(values)
    return Stats(mean, std, len(values))


def _difference(diffs: Sequence[float], n_boot: int, level: float, rng: np.random.Generator) -> Difference:
    if not diffs:
        return Difference(None, math.nan, math.nan, 0)
    lo, hi = bootstrap_mean_ci(diffs, n_boot, level, rng)
    return Difference(mean_std(diffs)[0], lo, hi, len(diffs))


def _ratio(pairs: Sequence[tuple[float, float]], n_boot: int, level: float, rng: np.random.Generator) -> Ratio:
    """The paired ratio of ``[(group value, baseline value)]`` (see the module docstring)."""
    logs = [math.log(g / b) for g, b in pairs if g > 0 and b > 0]
    excluded = len(pairs) - len(logs)
    if not logs:
        return Ratio(None, math.nan, math.nan, 0, excluded)
    lo, hi = bootstrap_mean_ci(logs, n_boot, level, rng)
    return Ratio(math.exp(math.fsum(logs) / len(logs)), math.exp(lo), math.exp(hi), len(logs), excluded)


def by_keys(by: str | Sequence[str] | None) -> list[str]:
    """The keys ``by`` names: a string (comma-separated for several), or a sequence of them (a
    repeated ``--by``); ``["experiment_id"]`` when none. A key named twice, or an empty one
    between commas, is a :class:`UserError`."""
    items = [by] if by is None or isinstance(by, str) else list(by)
    raw = [k.strip() for item in items if item for k in str(item).split(",")]
    if not raw:
        return ["experiment_id"]
    if any(not k for k in raw):
        raise UserError(f"--by {','.join(raw)!r}: an empty key; separate keys with single commas "
                        "(or repeat --by)")
    repeated = [k for k in dict.fromkeys(raw) if raw.count(k) > 1]
    if repeated:
        raise UserError(f"--by {', '.join(repeated)} given more than once ({', '.join(raw)}): "
                        "name each key once")
    return raw


def _blocks(runs, experiments: Sequence[str]) -> list[str]:
    """The experiment blocks of the rows, in order; only ``experiments`` when given (each must
    be a block of the rows)."""
    blocks = list(dict.fromkeys(str(r.get("experiment_id")) for _, rows in runs for r in rows))
    for block in experiments:
        if block not in blocks:
            raise UserError(f"--experiment {block!r}: no such experiment block{suggest(block, blocks)}; "
                            f"blocks: {', '.join(blocks)}")
    return [b for b in blocks if b in experiments] if experiments else blocks


def _is_constant(groups: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str], metric: str,
                 timings: bool) -> bool:
    """Whether ``metric`` takes one value in every row at each point (nothing to compare)."""
    at: dict[str, set[float]] = {}
    for rows in groups.values():
        for r in rows:
            v = _value(r, metric, timings)
            if v is not None:
                values = at.setdefault(_hashable(_point(r, keys)), set())
                values.add(v)
                if len(values) > 1:
                    return False
    return True


def compare(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], metrics: Sequence[str] | None = None,
            by: str | Sequence[str] = "experiment_id", baseline: str | None = None, n_boot: int = 2000,
            level: float = 0.95, rng: np.random.Generator | int | None = None,
            pooled: bool = False, timings: bool = False, experiments: Sequence[str] = (),
            ratio: bool = False, constants: bool = False) -> Comparisons:
    """Compare ``runs`` (``[(run label, rows), ...]``) metric by metric (see the module docstring).

    ``metrics`` defaults to every numeric metric that is not constant (all of them with
    ``constants``); ``baseline`` (a group label) to the first group; ``pooled`` adds the line
    ``all`` pooled over every point; ``experiments`` keeps only these blocks; ``ratio`` adds
    the paired ratios. Groups and points come in the order of the rows. Unknown metrics, keys,
    blocks or baselines, or a key given twice, raise :class:`UserError`. Timings are left out
    unless ``timings`` (then ``timings.<name>``).
    """
    keys = by_keys(by)
    if not 0 < level < 1:
        raise UserError(f"--level {level}: must be between 0 and 1")
    blocks = _blocks(runs, experiments)
    runs = [(label, [r for r in rows if str(r.get("experiment_id")) in blocks]) for label, rows in runs]
    all_rows = [r for _, rows in runs for r in rows]
    if not all_rows:
        raise UserError("no result rows to compare")
    from harness.spec.row import row_metrics

    known = metric_names([{"metrics": row_metrics(r, timings)} for r in all_rows])
    if not known:
        raise UserError("the rows hold no numeric metric to compare")
    for m in metrics or ():
        if m not in known:
            raise UserError(f"--metric {m!r}: no such numeric metric{suggest(m, known)}; "
                            f"metrics: {', '.join(known) or 'none'}")
    _check_keys(all_rows, keys)  # a key no row has is refused; a block without it is left out
    if any(k in BLOCK_KEYS for k in keys):
        scopes: list[tuple[str | None, list]] = [(None, runs)]
    else:
        scopes = [(b, [(label, [r for r in rows if str(r.get("experiment_id")) == b]) for label, rows in runs])
                  for b in blocks]
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    out = Comparisons()
    baselines_seen: list[str] = []
    for block, scope in scopes:
        groups = _grouped(scope, keys)
        if not groups:
            continue
        names = list(groups)
        baselines_seen += names
        if baseline is not None and baseline not in groups:
            continue
        base = baseline if baseline is not None else names[0]
        names = [base] + [g for g in names if g != base]
        present = metric_names([{"metrics": row_metrics(r, timings)} for rs in groups.values() for r in rs])
        chosen = [m for m in (metrics or present) if m in present]
        if not metrics and not constants:
            dropped = [m for m in chosen if len(names) > 1 and _is_constant(groups, keys, m, timings)]
            if dropped:
                out.left_out[block] = dropped
            chosen = [m for m in chosen if m not in dropped]
        for metric in chosen:
            out.append(_compare_metric(groups, names, keys, metric, n_boot, level, gen, pooled, timings,
                                       block, ratio))
    if baseline is not None and baseline not in baselines_seen:
        choices = list(dict.fromkeys(baselines_seen))
        raise UserError(f"--baseline {baseline!r}: no such group{suggest(baseline, choices)}; "
                        f"groups: {', '.join(choices)}")
    return out


def _compare_metric(groups, names, keys, metric, n_boot, level, gen, pooled, timings, block,
                    ratio) -> MetricComparison:
    grouped_rows = [r for g in names for r in groups[g]]
    point_keys = list(dict.fromkeys(k for r in grouped_rows for k in _point(r, keys)))
    points: dict[str, dict[str, Any]] = {}
    for r in grouped_rows:
        pt = _point(r, keys)
        points.setdefault(_hashable(pt), pt)
    baseline = names[0]
    # group -> point -> list of (seed key, value)
    table: dict[str, dict[str, list[tuple[tuple | None, float]]]] = {g: {} for g in names}
    for g in names:
        for r in groups[g]:
            v = _value(r, metric, timings)
            if v is not None:
                table[g].setdefault(_hashable(_point(r, keys)), []).append((_seed_key(r), v))
    lines: list[Line] = []
    all_pairs: dict[str, list[tuple[float, float]]] = {g: [] for g in names[1:]}
    for pkey, pt in points.items():
        if not any(pkey in table[g] for g in names):
            continue
        line = Line(point=pt)
        for g in names:
            line.stats[g] = _stats([v for _, v in table[g].get(pkey, [])])
        base = _by_seed(table[baseline].get(pkey, []))
        for g in names[1:]:
            other = _by_seed(table[g].get(pkey, []))
            pairs = [(other[seed], base[seed]) for seed in other if seed in base]
            _paired(line, g, pairs, n_boot, level, gen, ratio)
            all_pairs[g].extend(pairs)
        lines.append(line)
    if pooled and len(lines) > 1 and names[1:]:
        total = Line(point=None)
        for g in names:
            total.stats[g] = _stats([v for vals in table[g].values() for _, v in vals])
        for g in names[1:]:
            _paired(total, g, all_pairs[g], n_boot, level, gen, ratio)
        lines.append(total)
    return MetricComparison(metric, ",".join(keys), names, baseline, point_keys, lines, level, block, ratio)


def _paired(line: Line, group: str, pairs, n_boot, level, gen, ratio: bool) -> None:
    diffs = [g - b for g, b in pairs if math.isfinite(g - b)]  # beyond the float range: left out
    line.diffs[group] = _difference(diffs, n_boot, level, gen)
    if ratio:
        line.ratios[group] = _ratio(pairs, n_boot, level, gen)

