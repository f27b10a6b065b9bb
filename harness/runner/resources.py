"""The machine's memory, and the check that every cell's estimated memory fits in it.

:func:`check_memory` runs before a run starts (:func:`harness.api.run`): each grid point's
estimate (:meth:`harness.plugin.experiment.Experiment.estimate`, its ``memory_bytes``; a threshold
search's at both ends of its range) is compared with the machine's memory
(:func:`machine_memory`, from ``/proc/meminfo`` or ``os.sysconf``). A cell that cannot fit is
refused before anything runs, unless ``force`` (``harness run --force``).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from harness.errors import UserError


def machine_memory() -> int | None:
    """Total memory of this machine in bytes (``None`` when it cannot be told). Inside a
    container with a smaller memory limit (cgroup v2 ``memory.max``), that limit."""
    total = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        total = None
    if total is None:
        try:
            total = int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            total = None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            text = f.read().strip()
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    except OSError:
        pass
    return total if total and total > 0 else None


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def estimated_memory(cell, registry, cache: dict | None = None) -> int | None:
    """The experiment's ``memory_bytes`` estimate of ``cell`` (``None`` when it gives none or
    the estimate fails); never runs a calibration probe (:func:`harness.plugin.calibration.no_probes`)."""
    from harness.plugin.calibration import no_probes

    cache = {} if cache is None else cache
    key = cell.point_id
    if key not in cache:
        try:
            from harness.runner.execute import cell_context

            with no_probes():
                experiment = cell_context(cell, registry)[0]
                est = experiment.estimate(cell.params, cell.components) or {}
            value = est.get("memory_bytes")
            cache[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        except Exception:
            cache[key] = None
    return cache[key]


def spec_cells_to_check(spec) -> list:
    """One cell per grid point, and a threshold search's cells at both ends of its range."""
    from harness.runner.search import point_searches

    seen: dict[str, Any] = {}
    for cell in spec.cells():
        seen.setdefault(cell.point_id, cell)
    for point in point_searches(spec):
        s = point.search
        for x in (s.clamp(s.lower), s.clamp(s.upper)):
            cells = point.make_cells(x)
            if cells:
                seen.setdefault(cells[0].point_id, cells[0])
    return list(seen.values())


def check_memory(spec, registry, force: bool = False, log=None, memory: int | None = None) -> list:
    """Refuse (a :class:`~harness.errors.UserError`, exit 2) a spec with a cell whose memory
    estimate exceeds the machine's memory, naming the first such cell and how many there are;
    with ``force`` only warn through ``log``. Returns the cells that do not fit."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return []
    cache: dict = {}
    too_big = []
    for cell in spec_cells_to_check(spec):
        need = estimated_memory(cell, registry, cache)
        if need is not None and need > memory:
            too_big.append((cell, need))
    if not too_big:
        return []
    cell, need = too_big[0]
    at = ", ".join(f"{k}={v!r}" for k, v in cell.coords.items()) or "its only point"
    more = f" (and {len(too_big) - 1} more grid point(s))" if len(too_big) > 1 else ""
    text = (f"{spec.source}: experiments.{cell.experiment_id} at {at}: a cell needs about "
            f"{format_bytes(need)} of memory (the experiment's estimate), this machine has "
            f"{format_bytes(memory)}{more}")
    if force:
        if log is not None:
            log(f"warning: {text}; running anyway (--force)")
        return [c for c, _ in too_big]
    from harness.errors import shorten

    raise UserError(shorten(f"{text}; nothing was run: shrink the grid, or pass --force to run it anyway", 500))


def cells_over(entries: Iterable[dict], memory: int | None) -> int:
    """How many plan entries (:func:`harness.api.plan`) need more than ``memory`` bytes."""
    if memory is None:
        return 0
    return sum(1 for e in entries if e.get("memory_bytes") is not None and e["memory_bytes"] > memory)
