"""Cost estimates of a run before it runs (``harness run --dry-run``): every cell a spec would
execute, threshold searches along an expected path, each with its memory and seconds."""
from __future__ import annotations

from typing import Any

from harness.plugin import calibration
from harness.runner.execute import cell_context, group_cells
from harness.runner.executors import threads_per_job
from harness.runner.search_plan import planned_rounds


def plan_cells(spec_obj, registry, jobs: int = 1) -> list[dict[str, Any]]:
    """The cells a run would execute, each with its cost estimate (``--dry-run``).

    A block with a threshold search contributes the cells of its expected search paths
    (:func:`harness.runner.search_plan.planned_paths`: the search itself, waves and warm starts
    included, run against a model of where the thresholds lie; ``searched`` is true for them):
    the real search visits about as many axis values, at places its results decide.

    Returns one dict per cell: ``cell`` (:class:`harness.spec.cells.Cell`), ``memory_bytes`` and
    ``seconds`` (``None`` where the experiment does not say), ``setup_key``/``setup_seconds``
    (a cost paid once per worker process for all cells with that key, or ``None``) and
    ``error`` (an estimate that failed), ``round`` (the round of the run it runs in: 0 for
    grid cells, the search's round for searched ones; rounds run one after the other,
    :func:`harness.plugin.calibration.schedule`). Seconds are for cells running with ``-j jobs``, i.e.
    ``cores // jobs`` threads each, from rates calibrated on this machine
    (:mod:`harness.plugin.calibration`); :func:`harness.plugin.calibration.schedule` turns them into a wall time.
    Cells the runner would group (:func:`harness.runner.execute.group_cells`) and whose estimate is
    ``stacked`` share their worker's threads: their seconds are divided by
    :func:`harness.plugin.calibration.parallel_speedup` of ``min(threads, group size)``.
    """
    out = []
    cache: dict[str, Any] = {}
    searched: list = []  # a searched block's cells along its expected paths (harness.runner.search_plan)
    round_of: dict[str, int] = {}
    for point, rounds in planned_rounds(spec_obj):
        for index, values in rounds:
            for x in values:
                for cell in point.make_cells(x):
                    searched.append(cell)
                    round_of[cell.cell_id] = index
    searched_ids = set(round_of)
    stacked: dict[int, tuple[dict, bool]] = {}  # id(cell) -> (its entry, its estimate's "stacked")
    with calibration.for_threads(threads_per_job(jobs)):
        cells = spec_obj.cells() + searched
        for cell in cells:
            entry: dict[str, Any] = {"cell": cell, "memory_bytes": None, "seconds": None,
                                     "setup_key": None, "setup_seconds": None, "error": None,
                                     "searched": cell.cell_id in searched_ids,
                                     "round": round_of.get(cell.cell_id, 0)}
            key = cell.point_id
            if key not in cache:
                try:
                    experiment = cell_context(cell, registry)[0]
                    cache[key] = dict(experiment.estimate(cell.params, cell.components) or {})
                except Exception as exc:
                    cache[key] = {"error": f"{type(exc).__name__}: {exc}"}
            est = cache[key]
            for k in ("memory_bytes", "seconds", "setup_key", "setup_seconds", "error"):
                if est.get(k) is not None:
                    entry[k] = est[k]
            if entry["setup_key"] is not None and est.get("setup_scope") == "seed":
                entry["setup_key"] = (entry["setup_key"], cell.root_seed, tuple(cell.spawn_key))
            out.append(entry)
            stacked[id(cell)] = (entry, bool(est.get("stacked")))
    threads = threads_per_job(jobs)
    if threads > 1:
        for group in group_cells(cells, registry, parts=jobs):
            factor = calibration.parallel_speedup(min(threads, len(group)))
            for cell in group:
                entry, shares = stacked[id(cell)]
                if shares and len(group) > 1 and entry["seconds"] is not None:
                    entry["seconds"] = float(entry["seconds"]) / factor
    return out


