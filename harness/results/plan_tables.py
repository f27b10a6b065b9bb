"""The dry-run's estimate beside a run, for results pages (``harness publish``):

- :func:`estimate_table`: per block, what ``harness run FILE --dry-run`` plans for the run's own
  spec (its cells, and their seconds with the run's ``-j``) against what the run did (its cells,
  the sum of the rows' ``elapsed``), with the ratio; and the planned wall time against the
  run's own record (``env.json``);
- :func:`whole_file_table`: where the run was made with ``--set`` overrides (a part of the
  benchmark file), the plan of the whole file as it is in the checkout, for a few ``-j``: its
  cells, cell-hours and wall time.

Both price cells with the rates calibrated on the machine that publishes
(:mod:`harness.plugin.calibration`); the notes say so and name that machine's key, so that a
page published elsewhere than it was run shows it.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Sequence

from harness.plugin.calibration import cell_seconds, machine_key, schedule
from harness.plugin.tables import Table
from harness.results.runs import env_sessions, recorded_seconds
from harness.runner.plan import plan_cells
from harness.runner.progress import format_seconds

WHOLE_FILE_JOBS = (1, 2, 64)
"""The ``-j`` of the whole file's plan: serial, this machine's two cores, and a 64-worker cluster
(64 processes of one thread each, of this machine's speed)."""


def _ratio(measured: float, planned: float) -> float | None:
    return measured / planned if planned > 0 else None


def estimate_table(run, registry) -> Table | None:
    """The dry-run's plan of the run's spec (with the run's first session's ``-j``) against the
    run's cells and times, per block and in total; ``None`` without a spec or sessions."""
    sessions = env_sessions(run.env)
    if run.spec is None or not sessions:
        return None
    jobs = int(sessions[0].get("jobs") or 1)
    entries = plan_cells(run.spec, registry, jobs)
    blocks = list(dict.fromkeys([e["cell"].experiment_id for e in entries]
                                + [str(r.get("experiment_id")) for r in run.rows]))
    lines: list[list[Any]] = []
    for block in blocks:
        planned = [e for e in entries if e["cell"].experiment_id == block]
        rows = [r for r in run.rows if r.get("experiment_id") == block]
        measured = sum(float(r.get("elapsed") or 0.0) for r in rows)
        seconds = cell_seconds(planned)
        lines.append([block, len(planned), len(rows), seconds, measured, _ratio(measured, seconds)])
    wall = recorded_seconds(sessions, "wall_seconds")
    planned_wall = schedule(entries, jobs)
    total_planned, total_measured = cell_seconds(entries), sum(float(r.get("elapsed") or 0.0) for r in run.rows)
    lines.append(["all (cell seconds)", len(entries), len(run.rows), total_planned, total_measured,
                  _ratio(total_measured, total_planned)])
    if planned_wall is not None and wall is not None:
        lines.append([f"all (wall time, -j {jobs})", "", "", format_seconds(planned_wall), format_seconds(wall),
                      _ratio(wall, planned_wall)])
    notes = [f"Planned: `harness run FILE --dry-run -j {jobs}` of the run's spec (its overrides applied), "
             "seconds from the rates calibrated on the machine that published this page "
             f"(`{machine_key()}`); a threshold search is planned along an expected path, so its "
             "planned cells are a model of the ones the search visited. Measured: the sum of the rows' "
             "`elapsed` (each cell's seconds in its worker) and the run's wall time from env.json. "
             "Ratio: measured / planned."]
    return Table(title="The dry-run's estimate against this run", notes=notes,
                 columns=["block", "cells planned", "cells run", "planned seconds", "measured seconds",
                          "measured / planned"], rows=lines)


def recorded_file(run) -> tuple[Path, list[str]] | None:
    """``(benchmark file, overrides)`` of the run's first recorded command, where it was
    ``harness run FILE ...`` with at least one ``-s/--set`` and FILE exists here; else ``None``."""
    sessions = env_sessions(run.env)
    command = sessions[0].get("command_line") if sessions else None
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if "run" not in words:
        return None
    args = words[words.index("run") + 1:]
    files = [w for w in args if w.endswith(".toml")]
    overrides = [args[i + 1] for i, w in enumerate(args[:-1]) if w in ("-s", "--set")]
    if not files or not overrides or not Path(files[0]).is_file():
        return None
    return Path(files[0]), overrides


def whole_file_table(path: Path, registry, jobs: Sequence[int] = WHOLE_FILE_JOBS) -> Table:
    """The plan of the whole benchmark file at ``path`` for each ``-j`` in ``jobs``."""
    from harness.spec.load import load_spec

    spec = load_spec(path, registry=registry)
    lines = []
    for j in jobs:
        entries = plan_cells(spec, registry, j)
        lines.append([j, len(entries), cell_seconds(entries) / 3600.0, format_seconds(schedule(entries, j))])
    notes = [f"`harness run {path.as_posix()} --dry-run -j J` (the whole file, no overrides), with the rates "
             f"calibrated on the machine that published this page (`{machine_key()}`): one thread per "
             "cell where J reaches the cores; -j 64 is a 64-worker cluster of cores like this machine's "
             "(docs/cluster.md)."]
    return Table(title=f"Plan of the whole file {path.name}", columns=["-j", "cells", "cell-hours", "wall time"],
                 rows=lines, notes=notes)
