"""Text views for the CLI: the ``--dry-run`` plan and ``harness show``'s summary, as lines.

Each function returns ``(text, to_stderr)`` lines, so that the CLI only prints them; a notebook
user can print them too. Re-exported by :mod:`harness.api`.
"""
from __future__ import annotations

from typing import Sequence

from harness.errors import UserError
from harness.plugin.calibration import cache_path, cell_seconds, consulted, schedule
from harness.results.runs import load_run
from harness.results.summary import filter_lines, format_blocks, summarize
from harness.results.thresholds import block_condition, format_thresholds
from harness.runner.executors import threads_per_job
from harness.runner.progress import format_seconds
from harness.runner.resources import cells_over, format_bytes, machine_memory
from harness.runner.layout import resolve_run_path


def _fmt_seconds(s) -> str:
    if s is None:
        return "?"
    return f"{s:.2g} s" if s < 60 else format_seconds(s)


def plan_lines(entries, jobs: int, cells: bool = False) -> list[tuple[str, bool]]:
    """The ``--dry-run`` table of :func:`harness.api.plan`'s entries, its totals and warnings,
    as ``(text, to_stderr)`` lines: one line per grid point (its cells, the memory of one cell,
    the seconds of all), or with ``cells`` one line per cell."""
    out: list[tuple[str, bool]] = []
    if cells:
        header = ["#", "experiment", "rep", "coords", "memory", "time"]
        table = []
        for i, e in enumerate(entries, start=1):
            cell = e["cell"]
            table.append([str(i), cell.experiment_id, str(cell.repetition), _coords_text(cell),
                          format_bytes(e["memory_bytes"]), _fmt_seconds(e["seconds"])])
    else:
        header, table = ["#", "experiment", "coords", "cells", "memory", "time"], _point_table(entries)
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    for r in [header] + table:
        out.append(("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), False))

    known = [e["seconds"] for e in entries if e["seconds"] is not None]
    mems = [e["memory_bytes"] for e in entries if e["memory_bytes"] is not None]
    text = f"{len(entries)} cells"
    if known:
        threads = threads_per_job(jobs)
        total = cell_seconds(entries)
        text += (f"; estimated time about {_fmt_seconds(schedule(entries, jobs))} with -j {jobs} "
                 f"({threads} thread{'s' if threads > 1 else ''} per job; cells add up to {_fmt_seconds(total)})")
        if len(known) < len(entries):
            text += f" (no estimate for {len(entries) - len(known)} cells)"
    if mems:
        text += f"; memory per cell up to {format_bytes(max(mems))}"
    out.append((text, False))

    memory = machine_memory()
    over = cells_over(entries, memory)
    if over:
        out.append((f"warning: {over} cell(s) need more memory than this machine has ({format_bytes(memory)}): "
                    "harness run refuses them unless --force", True))
    searched = sum(1 for e in entries if e.get("searched"))
    if searched:
        out.append((f"({searched} of these cells are threshold searches along an expected path: the "
                    "real searches visit about as many axis values, where their results lead)", False))
    if consulted():
        out.append((f"(times from rates measured on this machine, cached in {cache_path()}; "
                    "--recalibrate measures again)", True))
    for e in entries:
        if e["error"]:
            out.append((f"warning: estimate failed for {e['cell'].experiment_id}: {e['error']}", True))
            break
    return out


def _coords_text(cell) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.coords.items()) or "-"


def _point_table(entries) -> list[list[str]]:
    """One row per grid point (the cells of all its repetitions): memory per cell, total time."""
    points: dict[str, list] = {}
    for e in entries:
        points.setdefault(e["cell"].point_id, []).append(e)
    table = []
    for i, members in enumerate(points.values(), start=1):
        cell = members[0]["cell"]
        mems = [e["memory_bytes"] for e in members if e["memory_bytes"] is not None]
        secs = [e["seconds"] for e in members if e["seconds"] is not None]
        table.append([str(i), cell.experiment_id, _coords_text(cell), str(len(members)),
                      format_bytes(max(mems) if mems else None),
                      _fmt_seconds(sum(secs)) if len(secs) == len(members) else "?"])
    return table


def show_lines(run_dir, experiments: Sequence[str] = (), where: Sequence[str] = (), columns_: str | None = None,
               width: int = 100, timings: bool = False) -> list[tuple[str, bool]]:
    """``harness show``: the run's status line and its summary tables (only ``experiments``,
    the grid points ``where`` KEY=VALUE, the columns ``columns_`` "A,B,C"; ``width`` 0 for no
    limit; ``timings`` adds the rows' timings), as ``(text, to_stderr)`` lines."""
    out: list[tuple[str, bool]] = []
    cols = [c.strip() for c in columns_.split(",") if c.strip()] if columns_ is not None else None
    if columns_ is not None and not cols:
        raise UserError("--columns '': name at least one column, e.g. --columns N,rows,loss")
    result = load_run(resolve_run_path(str(run_dir)))
    summary = result.summary
    if timings:
        summary = summarize(result.rows, [line["point_id"] for line in result.summary], timings=True)
    shown = filter_lines(summary, experiments, where)
    tables = format_blocks(shown, max_width=width or None, columns_=cols)  # checks --columns
    counts = result.status_counts()
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no rows"
    total = result.total
    out.append((f"run: {result.path}", False))
    out.append((f"cells: {len(result.rows)}" + (f" of {total}" if total is not None else "") + f" ({parts})", False))
    if result.spec_error:
        out.append((f"warning: the run's spec no longer loads: {result.spec_error}", True))
    out += [(text, True) for text in untrained_warnings(result.rows, experiments)]
    missing = result.missing
    if missing:
        out.append((f"incomplete: {missing} cells missing; finish with: harness run --resume {result.path}", False))
    if shown:
        out.append(("", False))
        out.append((tables, False))
    else:
        out.append(("(no grid point matches)" if result.summary else "(no rows yet)", False))
    searched = [t for t in result.thresholds if not experiments or t["experiment_id"] in experiments]
    for block_id in dict.fromkeys(t["experiment_id"] for t in searched):
        lines = [{k: v for k, v in t.items() if k not in ("experiment_id", "condition", "evaluations")}
                 for t in searched if t["experiment_id"] == block_id]
        out.append(("", False))
        condition = block_condition([t for t in searched if t["experiment_id"] == block_id])
        out.append((f"{block_id}: threshold search ({condition}; thresholds.csv)", False))
        out.append((format_thresholds(lines, max_width=width or None), False))
    return out


UNTRAINED = "weights_unchanged"
"""The metric of a training row whose weights ended where they started although the optimizer
stepped with a step size > 0 (``harness_plugins.memorization``)."""


def untrained_warnings(rows, experiments: Sequence[str] = ()) -> list[str]:
    """One warning per experiment block with rows flagged :data:`UNTRAINED`: they did not train."""
    flagged: dict[str, int] = {}
    for r in rows:
        if (not experiments or r.get("experiment_id") in experiments) and (r.get("metrics") or {}).get(UNTRAINED):
            flagged[str(r.get("experiment_id"))] = flagged.get(str(r.get("experiment_id")), 0) + 1
    return [f"warning: {n} row{'s' if n > 1 else ''} of {block} did not train: the weights ended where they "
            f"started although the optimizer stepped with lr > 0 on a finite loss ({UNTRAINED}); an optimizer "
            "step that updates nothing (check it with harness check-plugin), or gradients exactly zero"
            for block, n in flagged.items()]
