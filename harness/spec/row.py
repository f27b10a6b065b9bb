"""The result row: one JSON object per cell, a line of ``rows.jsonl``; :class:`Row` is its type.

A row is a pure function of its cell (:mod:`harness.runner.execute` makes it), so the same cell
gives the same row in-process or in any worker process. Its fields:

- the cell's identity (:meth:`harness.spec.cells.Cell.describe`): ``cell_id``, ``point_id``,
  ``experiment_id``, ``experiment``, ``coords``, ``repetition``, ``params``, ``components``,
  ``seed``;
- ``plugins``: the distribution providing the experiment and each slot's component;
- ``status``: ``ok``, ``diverged`` (a NaN or infinite metric), ``failed`` (an exception),
  ``timeout`` or ``skipped`` (the experiment's ``check`` or ``run`` said why, in ``error``);
- ``metrics`` (scalars) and ``curves`` (lists): what the experiment computed, the same for the
  same cell wherever and whenever it runs;
- ``timings``: wall-clock seconds the experiment measured (``ntk_seconds``, ``train_seconds``,
  ...; the reserved result key ``"timings"``), kept out of ``metrics``;
- ``resolved``: values fixed only when the cell ran (the reserved result key ``"resolved"``:
  ``{"optimizer.lr": 0.005, "architecture.widths": [22, 22]}``); a ``slot.param`` entry also
  replaces that parameter in the row's ``components``, which so show what was used;
- ``nonfinite``: the fields (``metrics.final_loss``, ``curves.loss_curve``) that held NaN or
  infinite values: rows are strict JSON, those values are written as ``null`` (and a
  non-finite metric makes the row ``diverged``);
- ``error`` (``None`` or a message), ``elapsed`` (seconds) and ``finished`` (ISO 8601 time, UTC).

:data:`TIMING_FIELDS` are the fields that depend on when and where a cell ran: two runs of a
cell give rows equal in everything else.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping, TypedDict, cast

from harness.plugin.experiment import is_legacy_timing
from harness.spec.cells import Cell


class Row(TypedDict, total=False):
    """A result row as read from or written to ``rows.jsonl`` (see the module docstring)."""

    cell_id: str
    point_id: str
    experiment_id: str
    experiment: str
    coords: dict[str, Any]
    repetition: int
    params: dict[str, Any]
    components: dict[str, Any]
    seed: dict[str, Any]
    plugins: dict[str, str]
    status: str
    metrics: dict[str, Any]
    curves: dict[str, Any]
    timings: dict[str, float]
    resolved: dict[str, Any]
    nonfinite: list[str]
    error: str | None
    elapsed: float
    finished: str
    versions: dict[str, Any]


def row_to_json(row: Mapping[str, Any]) -> str:
    """One line of ``rows.jsonl`` (without its newline): strict JSON (:func:`strict_row`)."""
    return json.dumps(strict_row(row), default=str, allow_nan=False)


def row_from_json(text: str | bytes) -> Row:
    """A row parsed from one line of ``rows.jsonl``; :func:`row_problem` says whether it has the
    expected shape."""
    return json.loads(text)


STATUSES = ("ok", "diverged", "failed", "timeout", "skipped")


TIMING_FIELDS = ("elapsed", "finished", "timings")
"""Row fields that depend on when and where a cell ran, not on the cell."""


def make_row(cell: Cell, status: str, metrics: Mapping[str, Any] | None = None,
             curves: Mapping[str, Any] | None = None, error: str | None = None,
             plugins: Mapping[str, str] | None = None, elapsed: float = 0.0,
             timings: Mapping[str, float] | None = None,
             resolved: Mapping[str, Any] | None = None,
             created: Mapping[str, Mapping[str, Any]] | None = None) -> Row:
    """A result row for ``cell`` (see the module docstring for the fields); strict JSON data
    (non-finite numbers become ``None``, named in ``nonfinite``). ``created``: components the
    cell made by name (:meth:`CellContext.create`), added to the row's ``components``."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    row = cell.describe()
    if created:
        row["components"] = {**(row.get("components") or {}),
                             **{label: {"name": c["name"], "params": dict(c.get("params") or {})}
                                for label, c in created.items() if label not in (row.get("components") or {})}}
    resolved = dict(resolved or {})
    if resolved:
        components = {slot: {**chosen, "params": dict(chosen.get("params") or {})}
                      for slot, chosen in (row.get("components") or {}).items()}
        for key, value in resolved.items():
            slot, _, name = key.partition(".")
            if name and slot in components:
                components[slot]["params"][name] = value
        row["components"] = components
    row.update({
        "plugins": dict(plugins or {}),
        "status": status,
        "metrics": dict(metrics or {}),
        "curves": dict(curves or {}),
        "timings": dict(timings or {}),
        "resolved": resolved,
        "error": error,
        "elapsed": round(float(elapsed), 6),
        "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    })
    return cast(Row, strict_row(row))


def strict_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` as strict JSON data: every NaN or infinite number becomes ``None`` and the fields
    that held one are listed in ``nonfinite`` (``metrics.loss``, ``curves.loss_curve``; added to
    what the row already lists). Idempotent."""
    found: list[str] = list(row.get("nonfinite") or [])

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            if path not in found:
                found.append(path)
            return None
        if isinstance(value, Mapping):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, path) for v in value]  # one entry per list, not per item
        return value

    out = {k: clean(v, k) for k, v in row.items() if k != "nonfinite"}
    out["nonfinite"] = found
    return out


def row_metrics(row: Mapping[str, Any], timings: bool = False) -> dict[str, Any]:
    """A row's metrics for summaries and comparisons: without timings (also the timing metrics
    of rows written before ``timings`` existed), or with ``timings`` each as ``timings.<name>``."""
    metrics = row.get("metrics") or {}
    legacy = "timings" not in row
    out = {k: v for k, v in metrics.items() if not (legacy and is_legacy_timing(k))}
    if timings:
        measured = dict(row.get("timings") or {})
        if legacy:
            measured.update({k: v for k, v in metrics.items() if is_legacy_timing(k)})
        out.update({f"timings.{k}": v for k, v in measured.items()})
    return out


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


ROW_SHAPE: dict[str, tuple[type, ...]] = {
    "cell_id": (str,), "point_id": (str,), "experiment_id": (str,), "status": (str,),
    "coords": (dict,), "metrics": (dict,),
}
"""The keys every result row has, with their JSON types."""


ROW_OPTIONAL: dict[str, tuple[type, ...]] = {
    "experiment": (str,), "repetition": (int,), "params": (dict,), "components": (dict,),
    "curves": (dict,), "seed": (dict,), "error": (str, type(None)), "elapsed": (int, float, type(None)),
    "finished": (str, type(None)), "timings": (dict, type(None)), "plugins": (dict,),
    "versions": (dict,), "resolved": (dict,), "nonfinite": (list,),
}
"""Keys a row may have, with their JSON types when present."""


def row_problem(row: Any) -> str | None:
    """Why ``row`` (parsed JSON) is not a result row of the expected shape, or ``None``."""
    from harness.spec.row import STATUSES

    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, expected an object"
    problems = []
    for key, types in ROW_SHAPE.items():
        if key not in row:
            problems.append(f"no {key}")
        elif not isinstance(row[key], types) or isinstance(row[key], bool):
            problems.append(f"{key} is {_json_type(row[key])}, expected {_json_type(types[0]())}")
    for key, types in ROW_OPTIONAL.items():
        if key in row and (not isinstance(row[key], types) or (isinstance(row[key], bool) and bool not in types)):
            problems.append(f"{key} is {_json_type(row[key])}")
    if not problems and row["status"] not in STATUSES:
        problems.append(f"status {row['status']!r} is not one of {', '.join(STATUSES)}")
    if not problems:
        for slot, chosen in (row.get("components") or {}).items():
            if not isinstance(chosen, dict):
                problems.append(f"components.{slot} is {_json_type(chosen)}")
                break
    return "; ".join(problems[:3]) if problems else None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
