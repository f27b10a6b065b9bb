"""What a run answers, as :class:`harness.plugin.tables.Table` s: for each experiment block, its
threshold search's table (when it searches an axis) and the tables its experiment makes from the
rows (:meth:`harness.plugin.experiment.Experiment.tables`: fits, ratios, fractions with their
intervals). ``report.html`` and the results pages (:mod:`harness.results.publish`) show them
before the figures.

A block whose experiment's tables fail gets a one-line table saying so: the answer of the
other blocks is never lost.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from harness.plugin.tables import Interval, Table, bracket_text

THRESHOLD_FIELDS = ("experiment_id", "axis", "threshold", "lower", "upper", "n_cells", "ci_low", "ci_high",
                    "status", "condition", "evaluations", "error", "level", "early_stop_fraction",
                    "median_stop_epoch")
"""Fields of a threshold line that are not the grid point's coordinates."""
_EXTRA_COLUMNS = {"early_stop_fraction": "early stops at the bracket", "median_stop_epoch": "median stop epoch"}


def threshold_table(block_id: str, lines: Sequence[Mapping[str, Any]]) -> Table:
    """The threshold search of one block: one line per grid point (and level): its coordinates,
    the threshold, the final bracket, the 95% bootstrap interval over repetitions, the status and
    the cells evaluated."""
    coords = [k for k in dict.fromkeys(k for t in lines for k in t) if k not in THRESHOLD_FIELDS]
    has_level = any("level" in t for t in lines)
    extras = [k for k in _EXTRA_COLUMNS if any(t.get(k) is not None for t in lines)]
    axis = next((t.get("axis") for t in lines if t.get("axis")), "axis")
    columns = [*coords, *(["level"] if has_level else []), f"{axis}* [95% bootstrap]", f"bracket of {axis}",
               "status", "cells", *(_EXTRA_COLUMNS[k] for k in extras)]
    rows = []
    for t in lines:
        bracket = bracket_text(t.get("lower"), t.get("upper"))
        threshold = Interval(t.get("threshold"), t.get("ci_low"), t.get("ci_high"), "95% bootstrap")
        rows.append([*(t.get(c) for c in coords), *([t.get("level")] if has_level else []), threshold,
                     bracket, t.get("status"), t.get("n_cells"), *(t.get(k) for k in extras)])
    from harness.results.thresholds import block_condition

    notes = [f"Condition: {block_condition(lines)}"] if all(t.get("condition") for t in lines) else []
    notes.append(f"{axis}*: where the aggregate crosses the level, interpolated between the two values of "
                 f"the final bracket (the largest {axis} evaluated on one side, the smallest on the other); "
                 "the bootstrap interval resamples the repetitions. Status above_upper / below_lower: the "
                 "condition never changed inside the searched range.")
    return Table(f"{block_id}: threshold search over {axis}", columns, rows, notes, block=block_id)


def run_tables(run, registry=None) -> list[Table]:
    """Every block's answer tables for a loaded run (:class:`harness.results.runs.Run`), in the
    order of the spec's blocks: the threshold table first, then the experiment's own."""
    from harness.plugin.context import FigureContext
    from harness.results.figures import blocks_from_rows, blocks_from_spec

    rows = run.rows
    blocks = blocks_from_spec(run.spec, rows) if run.spec is not None else blocks_from_rows(rows)
    name = run.spec.name if run.spec is not None else run.path.parent.name
    if registry is None:
        from harness.plugin.manager import load_registry

        registry = load_registry()
    out: list[Table] = []
    for block in blocks:
        block_rows = [r for r in rows if r.get("experiment_id") == block.experiment_id]
        if block.thresholds:
            out.append(threshold_table(block.experiment_id, block.thresholds))
        if not block_rows:
            continue
        context = FigureContext(benchmark=name, experiment_id=block.experiment_id, experiment=block.experiment,
                                grid=dict(block.grid), repetitions=block.repetitions, search=block.search,
                                thresholds=list(block.thresholds))
        try:
            cls = registry.get("experiment", block.experiment)
            try:
                experiment = cls(**block_rows[0].get("params", {}))
            except Exception:
                experiment = cls.__new__(cls)  # tables() rarely needs the parameters
            for table in experiment.tables(block_rows, context) or []:
                table.block = block.experiment_id
                out.append(table)
        except Exception as exc:  # one block's failure never hides the others' answer
            out.append(Table(f"{block.experiment_id}: tables failed", ["error"],
                             [[f"{type(exc).__name__}: {exc}"]], block=block.experiment_id))
    return out
