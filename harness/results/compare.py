"""Side-by-side comparison of result rows: one or several runs, grouped by a key.

Rows are grouped by ``by`` (the experiment block ``experiment_id`` by default; also ``run``,
``experiment``, any grid coordinate, experiment parameter, slot (its component name) or
``slot.param``) and lined up by grid point (the coordinates other than ``by``). ``by`` may name
several keys (``["architecture", "activation"]``, ``"architecture,activation"``, a repeated
``--by``): rows are then grouped by the tuple of their values, labelled ``v1/v2/...`` (rows
lacking any of the keys belong to no group), and lined up by the coordinates other than all of
them. A key given twice is refused. For each metric,
each group gets ``mean ± std (n)`` per point, from its ``ok`` and ``diverged`` rows with a
finite value (as in ``summary.csv``).

Paired differences: a row of a group and a row of the baseline group (the first group) pair up
when they sit at the same point and have the same seed (``seed.root`` and ``seed.spawn_key``),
i.e. the same data and initial weights. For each group the mean paired difference
``group - baseline`` is reported with a percentile bootstrap confidence interval (pairs
resampled with replacement), per point (and, with ``pooled=True``, pooled over all points in
a last line ``all``). Groups without shared seeds get no difference (they were not drawn from
the same random streams). An interval that rests on fewer than :data:`MIN_PAIRS` pairs is
marked ``*`` and named in a note: a bootstrap over so few pairs is unreliable.

Groups and points follow the grid's order (the order of the cells in the run's spec), not the
order in which the cells finished: :func:`harness.api.load_runs` sorts each run's rows so.

Timings (wall-clock seconds, a row's ``timings``) are not compared unless asked for
(``timings=True``, ``harness compare --timings``): then each is one more metric,
``timings.<name>``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from harness.errors import UserError, suggest
from harness.results.fits import available_keys, metric_names, row_value

FORMATS = ("table", "csv", "markdown")
METRIC_STATUSES = ("ok", "diverged")
_SPECIAL_KEYS = ("run", "experiment_id", "experiment")
ALL = "all"
"""Point label of the line pooled over every point."""
MIN_PAIRS = 5
"""An interval resting on fewer pairs than this is marked as unreliable."""


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs when fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or n_boot <= 0:
        return math.nan, math.nan
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
    return float(lo), float(hi)


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
class Line:
    """One point (or the pooled line, ``point is None``): stats per group, differences per
    non-baseline group."""

    point: dict[str, Any] | None
    stats: dict[str, Stats] = field(default_factory=dict)
    diffs: dict[str, Difference] = field(default_factory=dict)


@dataclass
class MetricComparison:
    metric: str
    by: str
    groups: list[str]
    baseline: str
    point_keys: list[str]
    lines: list[Line]
    level: float

    @property
    def any_pairs(self) -> bool:
        return any(d.pairs for line in self.lines for d in line.diffs.values())

    @property
    def few_pair_intervals(self) -> int:
        """How many intervals rest on fewer than :data:`MIN_PAIRS` pairs."""
        return sum(1 for line in self.lines for d in line.diffs.values() if d.few_pairs)


def _label(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def run_label(path: str | Path, all_paths: Sequence[str | Path]) -> str:
    """A short label for a run directory: its name, or its full path when names collide."""
    p = Path(path)
    return p.name if [Path(q).name for q in all_paths].count(p.name) == 1 else str(p)


GROUP_SEPARATOR = "/"
"""Joins the values of several ``by`` keys into one group label."""


def _group_value(row: Mapping[str, Any], run: str, keys: Sequence[str]) -> str | None:
    """The group label of a row (``None`` when it lacks one of ``keys``)."""
    parts = []
    for key in keys:
        if key == "run":
            parts.append(run)
            continue
        value = row_value(row, key)
        if value is None:
            return None
        parts.append(_label(value))
    return GROUP_SEPARATOR.join(parts)


def group_rows(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
               by: str | Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
    """Group label -> rows. With several runs, labels are prefixed by the run label when the
    same value of ``by`` occurs in more than one run. Rows that have no value of ``by`` (an
    experiment block without that axis or parameter) belong to no group. ``by`` may be several
    keys (see :func:`by_keys`): a group per tuple of values, labelled ``v1/v2/...``."""
    keys = by_keys(by)
    all_rows = [r for _, rows in runs for r in rows]
    for key in keys:
        if key not in _SPECIAL_KEYS:
            available = available_keys(all_rows)
            if key not in available:
                choices = list(_SPECIAL_KEYS) + available
                raise UserError(f"--by {key!r}: not a key of the rows{suggest(key, choices)}; "
                                f"choose from: {', '.join(choices)}")
    values_by_run: list[list[tuple[str, Mapping[str, Any]]]] = []
    for label, rows in runs:  # rows without a value of ``by`` (other experiment blocks) are left out
        labelled = ((_group_value(row, label, keys), row) for row in rows)
        values_by_run.append([(value, row) for value, row in labelled if value is not None])
    seen_in: dict[str, set[int]] = {}
    for i, pairs in enumerate(values_by_run):
        for value, _ in pairs:
            seen_in.setdefault(value, set()).add(i)
    prefix = len(runs) > 1 and "run" not in keys and any(len(s) > 1 for s in seen_in.values())
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for (label, _), pairs in zip(runs, values_by_run):
        for value, row in pairs:
            groups.setdefault(f"{label}:{value}" if prefix else value, []).append(row)
    return groups


def _point(row: Mapping[str, Any], by: str | Sequence[str]) -> dict[str, Any]:
    """Where a row sits: its coordinates other than the ``by`` keys, and its experiment block
    when the groups are runs or values of a grid axis (blocks are then compared with themselves;
    not when a key is the block or experiment itself)."""
    keys = [by] if isinstance(by, str) else list(by)
    coords = row.get("coords") or {}
    point = {k: v for k, v in coords.items() if k not in keys}
    if (("run" in keys or any(k in coords for k in keys))
            and "experiment_id" not in keys and "experiment" not in keys):
        point = {"experiment_id": row.get("experiment_id"), **point}
    return point


def _value(row: Mapping[str, Any], metric: str, timings: bool = False) -> float | None:
    from harness.spec.row import row_metrics

    if row.get("status") not in METRIC_STATUSES:
        return None
    v = row_metrics(row, timings).get(metric)  # a boolean counts as 0 or 1: its mean is a fraction
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


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
    from harness.results.summary import mean_std

    mean, std = mean_std(values)
    return Stats(mean, std, len(values))


def _difference(diffs: Sequence[float], n_boot: int, level: float, rng: np.random.Generator) -> Difference:
    if not diffs:
        return Difference(None, math.nan, math.nan, 0)
    lo, hi = bootstrap_mean_ci(diffs, n_boot, level, rng)
    return Difference(math.fsum(diffs) / len(diffs), lo, hi, len(diffs))


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


def compare(runs: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], metrics: Sequence[str] | None = None,
            by: str | Sequence[str] = "experiment_id", baseline: str | None = None, n_boot: int = 2000,
            level: float = 0.95, rng: np.random.Generator | int | None = None,
            pooled: bool = False, timings: bool = False) -> list[MetricComparison]:
    """Compare ``runs`` (``[(run label, rows), ...]``) metric by metric (see the module docstring).

    ``metrics`` defaults to every numeric metric; ``baseline`` (a group label) to the first
    group; ``pooled`` adds the line ``all`` pooled over every point. Groups and points come in
    the order of the rows. ``by`` may be several keys (see :func:`by_keys`): groups are then
    the tuples of their values, ``c.by`` the keys joined by commas. Unknown metrics, keys or
    baselines, or a key given twice, raise :class:`UserError`. Timings are left out unless
    ``timings`` (then ``timings.<name>``).
    """
    keys = by_keys(by)
    by = keys[0] if len(keys) == 1 else keys
    if not 0 < level < 1:
        raise UserError(f"--level {level}: must be between 0 and 1")
    all_rows = [r for _, rows in runs for r in rows]
    if not all_rows:
        raise UserError("no result rows to compare")
    from harness.spec.row import row_metrics

    known = metric_names([{"metrics": row_metrics(r, timings)} for r in all_rows])
    if not metrics:
        metrics = known
        if not metrics:
            raise UserError("the rows hold no numeric metric to compare")
    for m in metrics:
        if m not in known:
            raise UserError(f"--metric {m!r}: no such numeric metric{suggest(m, known)}; "
                            f"metrics: {', '.join(known) or 'none'}")
    groups = group_rows(runs, keys)
    names = list(groups)
    if baseline is None:
        baseline = names[0]
    elif baseline not in groups:
        raise UserError(f"--baseline {baseline!r}: no such group{suggest(baseline, names)}; groups: {', '.join(names)}")
    names = [baseline] + [g for g in names if g != baseline]
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)

    grouped_rows = [r for g in names for r in groups[g]]
    point_keys = list(dict.fromkeys(k for r in grouped_rows for k in _point(r, by)))
    points: dict[str, dict[str, Any]] = {}
    for r in grouped_rows:
        pt = _point(r, by)
        points.setdefault(_hashable(pt), pt)

    out = []
    for metric in metrics:
        # group -> point -> list of (seed key, value)
        table: dict[str, dict[str, list[tuple[tuple | None, float]]]] = {g: {} for g in names}
        for g in names:
            for r in groups[g]:
                v = _value(r, metric, timings)
                if v is not None:
                    table[g].setdefault(_hashable(_point(r, by)), []).append((_seed_key(r), v))
        lines: list[Line] = []
        all_diffs: dict[str, list[float]] = {g: [] for g in names[1:]}
        for pkey, pt in points.items():
            if not any(pkey in table[g] for g in names):
                continue
            line = Line(point=pt)
            for g in names:
                line.stats[g] = _stats([v for _, v in table[g].get(pkey, [])])
            base = _by_seed(table[baseline].get(pkey, []))
            for g in names[1:]:
                other = _by_seed(table[g].get(pkey, []))
                diffs = [other[seed] - base[seed] for seed in other if seed in base]
                line.diffs[g] = _difference(diffs, n_boot, level, gen)
                all_diffs[g].extend(diffs)
            lines.append(line)
        if pooled and len(lines) > 1 and names[1:]:
            total = Line(point=None)
            for g in names:
                total.stats[g] = _stats([v for vals in table[g].values() for _, v in vals])
            for g in names[1:]:
                total.diffs[g] = _difference(all_diffs[g], n_boot, level, gen)
            lines.append(total)
        out.append(MetricComparison(metric, ",".join(keys), names, baseline, point_keys, lines, level))
    return out


# ----------------------------------------------------------------------------------------------
# formatting


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        text = f"{x:+.4g}" if signed else f"{x:.4g}"
    else:
        text = f"{x:+.3e}" if signed else f"{x:.3e}"
    return text


def _stats_text(s: Stats) -> str:
    if s.n == 0:
        return "-"
    if s.std is None:
        return f"{_num(s.mean)} (n={s.n})"
    return f"{_num(s.mean)} ± {_num(s.std)} (n={s.n})"


def _diff_text(d: Difference) -> str:
    if not d.pairs:
        return "-"
    ci = f" [{_num(d.ci_low, True)}, {_num(d.ci_high, True)}]" if not math.isnan(d.ci_low) else ""
    return f"{_num(d.mean, True)}{ci} ({d.pairs} pair{'s' if d.pairs != 1 else ''}{'*' if d.few_pairs else ''})"


def _point_cells(c: MetricComparison, line: Line) -> list[str]:
    if not c.point_keys:
        return [ALL if line.point is None else "-"]
    if line.point is None:
        return [ALL] + [""] * (len(c.point_keys) - 1)
    return [_label(line.point[k]) if k in line.point else "" for k in c.point_keys]


def _header(c: MetricComparison) -> list[str]:
    return (list(c.point_keys) or ["point"]) + list(c.groups) + [f"{g} − {c.baseline}" for g in c.groups[1:]]


def _body(c: MetricComparison) -> list[list[str]]:
    return [_point_cells(c, line) + [_stats_text(line.stats[g]) for g in c.groups]
            + [_diff_text(line.diffs[g]) for g in c.groups[1:]] for line in c.lines]


def _notes(c: MetricComparison) -> list[str]:
    keys = c.by.split(",")
    grouped = c.by if len(keys) == 1 else f"({', '.join(keys)}), labelled {GROUP_SEPARATOR.join(keys)}"
    notes = [f"cells: mean ± std (n) of {c.metric} over ok/diverged rows with a finite value, grouped by {grouped}"]
    if len(c.groups) > 1:
        if c.any_pairs:
            notes.append(f"differences: mean of paired (group − {c.baseline}) over rows with the same seed "
                         f"(root and spawn_key) at the same point, [{c.level:.0%} bootstrap CI]")
        else:
            notes.append(f"no rows pair up with {c.baseline} (same seed root and spawn_key at the same point): "
                         "no paired differences")
    else:
        notes.append(f"only one group ({c.groups[0]}): nothing to compare against; choose another --by")
    if c.few_pair_intervals:
        notes.append(few_pairs_warning(c))
    return notes


def few_pairs_warning(c: MetricComparison) -> str:
    n = c.few_pair_intervals
    return (f"{c.metric}: {n} interval{'s rest' if n > 1 else ' rests'} on fewer than {MIN_PAIRS} pairs "
            "(marked *): too few to trust a bootstrap interval; run more repetitions")


def table_parts(c: MetricComparison) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, body, notes)`` of one comparison, as the table format prints them."""
    return _header(c), _body(c), _notes(c)


def format_table(comparisons: Sequence[MetricComparison]) -> str:
    blocks = []
    for c in comparisons:
        header, body = _header(c), _body(c)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines = [f"{c.metric}", "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in body]
        lines += [f"  {n}" for n in _notes(c)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def format_markdown(comparisons: Sequence[MetricComparison]) -> str:
    blocks = []
    for c in comparisons:
        header, body = _header(c), _body(c)
        lines = [f"### {c.metric}", "", "| " + " | ".join(_md_cell(h) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in body]
        lines += [""] + [f"*{_md_cell(n)}*" for n in _notes(c)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _csv_num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x)) if isinstance(x, float) else str(x)


def format_csv(comparisons: Sequence[MetricComparison]) -> str:
    """One CSV: ``metric``, the point columns, then per group ``<g>_mean``, ``<g>_std``,
    ``<g>_n``, and per non-baseline group ``<g>-<baseline>_diff``, ``_ci_low``, ``_ci_high``,
    ``_pairs``. The pooled line has ``all`` in the point columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    point_keys = list(dict.fromkeys(k for c in comparisons for k in c.point_keys))
    groups = list(dict.fromkeys(g for c in comparisons for g in c.groups))
    baseline = comparisons[0].baseline if comparisons else ""
    header = ["metric"] + point_keys
    for g in groups:
        header += [f"{g}_mean", f"{g}_std", f"{g}_n"]
    others = [g for g in groups if g != baseline]
    for g in others:
        header += [f"{g}-{baseline}_{s}" for s in ("diff", "ci_low", "ci_high", "pairs")]
    writer.writerow(header)
    for c in comparisons:
        for line in c.lines:
            cells = [c.metric]
            for k in point_keys:
                if line.point is None:
                    cells.append(ALL)
                else:
                    cells.append(_label(line.point[k]) if k in line.point else "")
            for g in groups:
                s = line.stats.get(g)
                cells += [_csv_num(s.mean), _csv_num(s.std), str(s.n)] if s else ["", "", ""]
            for g in others:
                d = line.diffs.get(g)
                cells += ([_csv_num(d.mean), _csv_num(d.ci_low), _csv_num(d.ci_high), str(d.pairs)]
                          if d else ["", "", "", ""])
            writer.writerow(cells)
    return buf.getvalue()


def format_comparisons(comparisons: Sequence[MetricComparison], fmt: str = "table") -> str:
    if fmt == "table":
        return format_table(comparisons)
    if fmt == "csv":
        return format_csv(comparisons)
    if fmt == "markdown":
        return format_markdown(comparisons)
    raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
