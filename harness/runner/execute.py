"""Running one cell: build its components, call the experiment, classify the result as a row.

``run_cell(cell) -> row`` is a pure function of the cell (its resolved parameters and seed), so
the same cell gives the same row in-process or in any worker process; the row's fields are
described in :mod:`harness.spec.row`.
"""
from __future__ import annotations

import math
import time
import traceback
from typing import Any, Mapping

from harness.spec.cells import Cell
from harness.spec.row import Row, make_row, to_jsonable

_TRACEBACK_LINES = 6


def cell_context(cell: Cell, registry) -> tuple[Any, Any, dict[str, str]]:
    """``(experiment configured with the cell's parameters, its CellContext, plugins)``: every
    slot's component created through the context, and they and the experiment bound to it
    (:meth:`Component.bind`);
    ``plugins`` maps ``"experiment"`` and each slot to the distribution providing it."""
    from harness.plugin.context import CellContext

    cls = registry.get("experiment", cell.experiment)
    plugins = {"experiment": registry.provider_of("experiment", cell.experiment)}
    for slot in cell.components:
        if slot not in cls.slots:
            raise ValueError(f"experiment {cell.experiment!r} has no slot {slot!r}")
    context = CellContext({}, cell.seed_sequence(), dict(cell.coords), registry=registry,
                          cell_id=cell.cell_id, run_dir=getattr(cell, "run_dir", None))
    for slot, (kind, default) in dict(cls.slots).items():
        chosen = cell.components.get(slot)
        if chosen is None:
            if default is None:
                continue
            chosen = {"name": default, "params": {}}
        context.components[slot] = registry.create(kind, chosen["name"], chosen.get("params", {}))
        plugins[slot] = registry.provider_of(kind, chosen["name"])
    for component in list(context.components.values()):
        component.bind(context)
    experiment = cls(**cell.params)
    experiment.bind(context)
    return experiment, context, plugins


def run_cell(cell: Cell, registry) -> Row:
    """Run ``cell`` with the components of ``registry`` and return its result row; exceptions
    become ``failed`` rows."""
    start = time.perf_counter()
    plugins: dict[str, str] = {}
    if cell.skip is not None:
        return make_row(cell, "skipped", error=cell.skip)
    from harness.plugin.experiment import SkipCell

    context = None
    try:
        experiment, context, plugins = cell_context(cell, registry)
        result = experiment.run(context)
        who = type(experiment).__name__
        if not isinstance(result, Mapping):
            raise TypeError(f"{who}.run returned {type(result).__name__}, expected a dict")
        result = dict(result)
        timings = _timings(result.pop("timings", None), who)
        resolved = _resolved(result.pop("resolved", None), who)
        metrics, curves = split_result(result)
    except SkipCell as exc:
        return make_row(cell, "skipped", error=str(exc) or "skipped by the experiment", plugins=plugins,
                        elapsed=time.perf_counter() - start, created=_created(context))
    except (Exception, SystemExit) as exc:  # a failing cell is data; the run goes on
        return make_row(cell, "failed", error=format_exception(exc), plugins=plugins,
                        elapsed=time.perf_counter() - start, created=_created(context))
    elapsed = time.perf_counter() - start
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        error = "non-finite metric: " + ", ".join(f"{k}={metrics[k]}" for k in bad)
        return make_row(cell, "diverged", metrics, curves, error, plugins, elapsed, timings, resolved,
                        _created(context))
    return make_row(cell, "ok", metrics, curves, None, plugins, elapsed, timings, resolved, _created(context))


def _created(context) -> dict[str, Any]:
    return dict(context.created) if context is not None else {}


def _timings(value: Any, who: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{who}.run returned timings of type {type(value).__name__}, expected a dict of seconds")
    out = {}
    for key, seconds in value.items():
        seconds = to_jsonable(seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"{who}.run returned timing {key!r} = {seconds!r}, expected seconds")
        out[str(key)] = float(seconds)
    return out


def _resolved(value: Any, who: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{who}.run returned resolved of type {type(value).__name__}, expected a dict")
    return {str(k): to_jsonable(v) for k, v in value.items()}


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
    scalar. Anything else (a complex number, bytes, an object, an integer too long to write) is
    not a result: a :class:`TypeError` naming the key (the cell's row is ``failed``).
    """
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
            return
        key = prefix[:-1]
        value = plain_value(key, value)
        if isinstance(value, list):
            curves[key] = value
        else:
            metrics[key] = value

    for k, v in result.items():
        visit(f"{k}.", v)
    return metrics, curves


def plain_value(key: str, value: Any) -> Any:
    """``value`` as JSON data (NumPy scalars and arrays converted): ``None``, a bool, an int, a
    float, a string, or a list of them (a curve); a :class:`TypeError` naming ``key`` for
    anything else, rather than a ``str`` of it in a row that looks ``ok``."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        value = tolist()
    if isinstance(value, (list, tuple)):
        return [plain_value(key, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            str(value)
        except ValueError:  # more digits than Python writes
            raise TypeError(f"result {key!r} is an integer of more digits than can be written "
                            f"({value.bit_length()} bits)") from None
        return value
    if value is None or isinstance(value, (bool, float, str)):
        return value
    text = repr(value)
    raise TypeError(f"result {key!r} = {text if len(text) <= 60 else text[:57] + '...'} is a "
                    f"{type(value).__name__} value: a result is a number, a boolean, a string or None, or a list of "
                    "them (a curve)")


# ----------------------------------------------------------------------------------------------
# groups of cells run together (batching)

BATCH_ENV = "HARNESS_BATCH"
"""Set to ``0`` to run every cell alone (no groups), whatever the experiments support."""
MAX_GROUP = 64
"""At most this many cells in one group."""


def batching_enabled() -> bool:
    import os

    return os.environ.get(BATCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def batch_key(cell: Cell, registry):
    """The key cells share when they can run as one group (see :func:`run_cells`), or ``None``:
    ``(experiment block, experiment, the experiment's Experiment.batch_key)``. Skipped cells,
    unknown experiments and a failing ``batch_key`` give ``None`` (the cell runs alone)."""
    if getattr(cell, "skip", None) is not None:
        return None
    try:
        cls = registry.get("experiment", cell.experiment)
        key = cls.batch_key(cell.params, cell.components)
        if key is None:
            return None
        hash(key)
    except Exception:
        return None
    return (cell.experiment_id, cell.experiment, key)


def group_cells(cells, registry, parts: int = 1, max_size: int | None = None) -> list[list[Cell]]:
    """The cells in groups to run together (one list per group, in the cells' order of first
    appearance; a cell without a batch key is a group of its own). Groups are split in halves,
    largest first, until there are at least ``parts`` of them (so that ``parts`` workers all get
    work) and none is larger than ``max_size`` (default :data:`MAX_GROUP`). With batching
    disabled (:data:`BATCH_ENV`) every cell is its own group."""
    cells = list(cells)
    if not batching_enabled():
        return [[c] for c in cells]
    max_size = MAX_GROUP if max_size is None else max(1, int(max_size))
    groups: list[list[Cell]] = []
    by_key: dict = {}
    for cell in cells:
        key = batch_key(cell, registry)
        if key is None:
            groups.append([cell])
        elif key in by_key:
            by_key[key].append(cell)
        else:
            by_key[key] = [cell]
            groups.append(by_key[key])
    out: list[list[Cell]] = []
    for g in groups:  # at most max_size, in near-equal parts
        n = -(-len(g) // max_size)
        out.extend(g[i * len(g) // n:(i + 1) * len(g) // n] for i in range(n))
    while len(out) < parts:
        i = max(range(len(out)), key=lambda j: len(out[j]), default=None)
        if i is None or len(out[i]) < 2:
            break
        g = out[i]
        out[i:i + 1] = [g[:len(g) // 2], g[len(g) // 2:]]
    return out


def run_cells(cells, registry) -> list[Row]:
    """Run a group of cells (from :func:`group_cells`) and return one row per cell, in order.

    One cell (or an experiment without batching) is :func:`run_cell`. Otherwise the experiment's
    ``run_batch`` runs them together; every row is what :func:`run_cell` gives for that cell
    (the same metrics and curves: experiments promise it, the tests check it), except the
    ``elapsed`` of a member, which is the group's time divided by its size. A member that failed
    in the batch (an exception in its place), or every member when ``run_batch`` itself raises,
    runs again alone through :func:`run_cell`, so one failing cell never costs the others their
    rows and a failure's row is the one the cell gives alone.
    """
    cells = list(cells)
    if len(cells) <= 1:
        return [run_cell(c, registry) for c in cells]
    start = time.perf_counter()
    try:
        cls = registry.get("experiment", cells[0].experiment)
        members, plugins, contexts = [], [], []
        for cell in cells:
            if cell.experiment != cells[0].experiment:
                raise ValueError("a group holds cells of one experiment")
            experiment, context, used = cell_context(cell, registry)
            members.append((experiment, context))
            contexts.append(context)
            plugins.append(used)
        results = list(cls.run_batch(members))
        if len(results) != len(cells):
            raise ValueError(f"{cls.__name__}.run_batch returned {len(results)} results for "
                             f"{len(cells)} cells")
    except (Exception, SystemExit):  # the group could not run together: each cell alone
        return [run_cell(c, registry) for c in cells]
    elapsed = (time.perf_counter() - start) / len(cells)
    rows = []
    for cell, result, used, context in zip(cells, results, plugins, contexts):
        row = None
        if isinstance(result, Mapping):
            try:
                result = dict(result)
                timings = _timings(result.pop("timings", None), cls.__name__)
                resolved = _resolved(result.pop("resolved", None), cls.__name__)
                metrics, curves = split_result(result)
                bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
                status, error = "ok", None
                if bad:
                    status = "diverged"
                    error = "non-finite metric: " + ", ".join(f"{k}={metrics[k]}" for k in bad)
                row = make_row(cell, status, metrics, curves, error, used, elapsed, timings, resolved,
                               _created(context))
            except Exception:
                row = None
        rows.append(row if row is not None else run_cell(cell, registry))
    return rows
