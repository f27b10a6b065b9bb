"""Running one cell: build its components, call the experiment, classify the result as a row.

``run_cell(cell) -> row`` is a pure function of the cell (its resolved parameters and seed), so
the same cell gives the same row in-process or in any worker process. A row is one JSON object:

- the cell's identity (:meth:`harness.cells.Cell.describe`): ``cell_id``, ``point_id``,
  ``experiment_id``, ``experiment``, ``coords``, ``repetition``, ``params``, ``components``,
  ``seed``;
- ``plugins``: the distribution providing the experiment and each slot's component;
- ``status``: ``ok``, ``diverged`` (a NaN or infinite metric), ``failed`` (an exception),
  ``timeout`` or ``skipped``;
- ``metrics`` (scalars), ``curves`` (lists), ``error`` (``None`` or a message), ``elapsed``
  (seconds) and ``finished`` (ISO 8601 time, UTC).
"""
from __future__ import annotations

import math
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Mapping

from .cells import Cell

STATUSES = ("ok", "diverged", "failed", "timeout", "skipped")
TIMING_FIELDS = ("elapsed", "finished")
"""Row fields that depend on when and where a cell ran, not on the cell."""

_TRACEBACK_LINES = 6


def run_cell(cell: Cell, registry=None) -> dict[str, Any]:
    """Run ``cell`` and return its result row; exceptions become ``failed`` rows."""
    if registry is None:
        from .plugin_manager import get_registry

        registry = get_registry()
    start = time.perf_counter()
    plugins: dict[str, str] = {}
    try:
        from .components import CellContext

        cls = registry.get("experiment", cell.experiment)
        plugins["experiment"] = registry.provider_of("experiment", cell.experiment)
        experiment = cls(**cell.params)
        components = {}
        for slot, (kind, default) in dict(cls.slots).items():
            chosen = cell.components.get(slot)
            if chosen is None:
                if default is None:
                    continue
                chosen = {"name": default, "params": {}}
            components[slot] = registry.create(kind, chosen["name"], chosen.get("params", {}))
            plugins[slot] = registry.provider_of(kind, chosen["name"])
        for slot in cell.components:
            if slot not in cls.slots:
                raise ValueError(f"experiment {cell.experiment!r} has no slot {slot!r}")
        context = CellContext(components, cell.seed_sequence(), dict(cell.coords))
        result = experiment.run(context)
        if not isinstance(result, Mapping):
            raise TypeError(f"{cls.__name__}.run returned {type(result).__name__}, expected a dict")
        metrics, curves = split_result(result)
    except (Exception, SystemExit) as exc:  # a failing cell is data; the run goes on
        return make_row(cell, "failed", error=format_exception(exc), plugins=plugins,
                        elapsed=time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        error = "non-finite metric: " + ", ".join(f"{k}={metrics[k]}" for k in bad)
        return make_row(cell, "diverged", metrics, curves, error, plugins, elapsed)
    return make_row(cell, "ok", metrics, curves, None, plugins, elapsed)


def make_row(cell: Cell, status: str, metrics: Mapping[str, Any] | None = None,
             curves: Mapping[str, Any] | None = None, error: str | None = None,
             plugins: Mapping[str, str] | None = None, elapsed: float = 0.0) -> dict[str, Any]:
    """A result row for ``cell`` (see the module docstring for the fields)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    row = cell.describe()
    row.update({
        "plugins": dict(plugins or {}),
        "status": status,
        "metrics": dict(metrics or {}),
        "curves": dict(curves or {}),
        "error": error,
        "elapsed": round(float(elapsed), 6),
        "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    })
    return row


def format_exception(exc: BaseException) -> str:
    """``Type: message`` followed by the last lines of the traceback."""
    head = f"{type(exc).__name__}: {exc}"
    frames = traceback.format_tb(exc.__traceback__)
    tail = "".join(frames).rstrip().splitlines()[-_TRACEBACK_LINES:]
    return head + ("\n" + "\n".join(tail) if tail else "")


def split_result(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an experiment's result into scalar ``metrics`` and list ``curves``.

    Nested dicts are flattened with dotted keys (``{"opt": {"step": 0.1}}`` -> ``opt.step``);
    NumPy scalars become Python numbers and arrays become (nested) lists; a 0-d array is a
    scalar. Anything else that is not JSON (a Path, an object) is recorded as its ``str``.
    """
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
            return
        key = prefix[:-1]
        value = to_jsonable(value)
        if isinstance(value, list):
            curves[key] = value
        else:
            metrics[key] = value

    for k, v in result.items():
        visit(f"{k}.", v)
    return metrics, curves


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON-friendly Python data (NumPy scalars and arrays converted)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays
    if callable(tolist) and hasattr(value, "dtype"):
        return to_jsonable(tolist())
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=str)]
    return str(value)
