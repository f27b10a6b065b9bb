"""Benchmark files: parsing, validation and grid expansion into cells.

A benchmark file is TOML (read with :mod:`tomllib`)::

    [benchmark]
    name = "ntk_spectrum"        # run directories go to results/<name>/
    seed = 2022                  # root seed
    repetitions = 10             # default 1
    description = "..."          # optional

    [[experiments]]
    id = "fig1"                  # optional, defaults to the experiment name; unique
    experiment = "ntk_spectrum"  # an experiment component
    N = 1000                     # the experiment's own parameters, flat
    activation = "sigmoid"       # a slot: a component name ...
    architecture = { name = "fc", widths = ["d", "d"] }   # ... or a table with its parameters
    repetitions = 10             # optional, overrides the benchmark's
    seed_by = ["N", "i"]         # optional: the axes the seed depends on (default: all grid axes)

    [experiments.grid]           # Cartesian product of the axes
    N = [1000, 2000, 3000]
    i = { start = 5, stop = 955, step = 50 }      # inclusive range
    "architecture.depth" = [2, 3]                 # a key path into a slot's parameters
    "n, q" = [[100, 4], [200, 8]]                 # tied axes: vary together

    [experiments.derived]        # computed per grid point, in order (harness.expressions)
    d = "floor(sqrt(1000 * i))"

Grid and derived keys are key paths of the experiment's parameters (``N``), of a slot's
parameters (``architecture.widths``), a slot itself (``activation = ["tanh", "relu"]``), or free
variables (``i``) that a derived expression uses. Expressions see every axis and derived value
(dots in key paths become underscores: ``architecture_q``) and the experiment's scalar
parameters.

Everything is validated when the file is loaded, before any cell runs; each mistake raises a
:class:`~harness.errors.SpecError` naming the file, the key path and the value.
"""
from __future__ import annotations

import functools
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import expressions
from .cells import Cell
from .components import Experiment, Registry
from .errors import PluginError, SpecError, suggest
from .params import Param, resolve_params
from .search import TRANSFORMS, Search
from .seeds import canonical
from .tomlwriter import dumps

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_EXPERIMENT_RESERVED = ("id", "experiment", "repetitions", "seed_by", "grid", "derived", "search",
                        "description")

BENCHMARK_PARAMS = (
    Param("name", str, help="benchmark name; run directories go to results/<name>/",
          check=lambda v: None if _NAME.match(v) else "use letters, digits, '_', '-' and '.' only"),
    Param("seed", int, min=0, help="root seed of every cell's random streams"),
    Param("repetitions", int, 1, min=1, help="repetitions of every grid point"),
    Param("description", str, "", help="free text"),
)


@dataclass
class Axis:
    """One grid axis: ``keys`` (one, or several when tied) and the list of values (tuples when tied)."""

    label: str
    keys: tuple[str, ...]
    values: list[Any]


@dataclass
class ExperimentSpec:
    """One ``[[experiments]]`` block after validation."""

    id: str
    experiment: str
    component: type[Experiment]
    repetitions: int
    params: dict[str, Any]
    slots: dict[str, dict[str, Any]]
    axes: list[Axis]
    derived: dict[str, str]
    seed_by: list[str] | None
    description: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)
    """Per grid point: ``{"coords", "params", "components"}`` (resolved). Empty for a searched
    block, whose cells are made as its search goes (:mod:`harness.search`)."""
    search: Search | None = None
    """The ``[experiments.search]`` table, if the block searches an axis."""
    search_points: list[dict[str, Any]] = field(default_factory=list)
    """Per grid point of a searched block: ``{"base", "coords", "start"}``: the grid values, the
    coordinates without the searched axis, and the resolved first value."""
    resolve: Any = field(default=None, repr=False, compare=False)
    """``resolve(coords) -> point``: derived values and parameters at any coordinates."""
    _cells: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def grid(self) -> dict[str, list[Any]]:
        """Axis label -> values (tied axes as lists of lists), as written in the file."""
        return {a.label: [list(v) if len(a.keys) > 1 else v for v in a.values] for a in self.axes}

    def seed_axes(self) -> list[str]:
        if self.seed_by is not None:
            return list(self.seed_by)
        keys = [k for a in self.axes for k in a.keys]
        return keys + [self.search.axis] if self.search is not None else keys

    def cells_at(self, coords: Mapping[str, Any], root_seed: int) -> list[Cell]:
        """Every repetition's cell at grid coordinates ``coords`` (derived values are computed)."""
        key = canonical([root_seed, dict(coords)])
        cells = self._cells.get(key)
        if cells is None:
            point = self.resolve(dict(coords))
            full = point["coords"]
            seed_coords = {k: full[k] for k in self.seed_axes()}
            cells = [Cell(experiment_id=self.id, experiment=self.experiment, params=point["params"],
                          components=point["components"], coords=full, repetition=rep,
                          root_seed=root_seed, seed_coords=seed_coords)
                     for rep in range(self.repetitions)]
            self._cells[key] = cells
        return cells

    def point_searches(self, root_seed: int) -> list:
        """One :class:`harness.search.PointSearch` per grid point of a searched block."""
        from .search import PointSearch

        out = []
        for sp in self.search_points:
            base = sp["base"]
            out.append(PointSearch(
                experiment_id=self.id, search=self.search, coords=dict(sp["coords"]), start=sp["start"],
                make_cells=lambda x, base=base: self.cells_at({**base, self.search.axis: x}, root_seed)))
        return out


@dataclass
class Spec:
    """A validated benchmark file."""

    source: str
    name: str
    seed: int
    repetitions: int
    description: str
    experiments: list[ExperimentSpec]

    def cells(self) -> list[Cell]:
        """Every cell, repetition-major (all grid points of repetition 0 first), so that a
        partial run covers the whole grid."""
        out = []
        for exp in self.experiments:
            seed_axes = exp.seed_axes()
            for rep in range(exp.repetitions):
                for point in exp.points:
                    coords = point["coords"]
                    out.append(Cell(
                        experiment_id=exp.id, experiment=exp.experiment, params=point["params"],
                        components=point["components"], coords=coords, repetition=rep,
                        root_seed=self.seed, seed_coords={k: coords[k] for k in seed_axes}))
        return out

    def experiment(self, experiment_id: str) -> ExperimentSpec:
        for exp in self.experiments:
            if exp.id == experiment_id:
                return exp
        raise KeyError(experiment_id)

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in; loading it again gives the same cells."""
        experiments = []
        for exp in self.experiments:
            block: dict[str, Any] = {"id": exp.id, "experiment": exp.experiment,
                                     "repetitions": exp.repetitions}
            if exp.description:
                block["description"] = exp.description
            if exp.seed_by is not None:
                block["seed_by"] = list(exp.seed_by)
            block.update(exp.params)
            for slot, spec in exp.slots.items():
                block[slot] = {"name": spec["name"], **spec["params"]}
            if exp.axes:
                block["grid"] = exp.grid
            if exp.derived:
                block["derived"] = dict(exp.derived)
            if exp.search is not None:
                block["search"] = exp.search.to_table()
            experiments.append(block)
        bench = {"name": self.name, "seed": self.seed, "repetitions": self.repetitions}
        if self.description:
            bench["description"] = self.description
        return {"benchmark": bench, "experiments": experiments}

    def to_toml(self) -> str:
        return dumps(self.resolved())


# ----------------------------------------------------------------------------------------------
# loading


def load_spec(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None) -> Spec:
    """Read, override (``key.path=value`` strings) and validate a benchmark file."""
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise SpecError(source, None, problem="no such file")
    if p.is_dir():
        raise SpecError(source, None, problem="is a directory, expected a TOML benchmark file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, None, problem=f"cannot read: {exc}") from None
    return parse_spec(text, source, overrides, registry)


def parse_spec(text: str, source: str = "<string>", overrides: Sequence[str] = (),
               registry: Registry | None = None) -> Spec:
    """Validate benchmark-file text (see :func:`load_spec`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, None, problem=f"invalid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item, source)
    if registry is None:
        from .plugin_manager import get_registry

        registry = get_registry()
    return _validate(raw, source, registry)


def parse_override_value(text: str) -> Any:
    """A ``--set`` value: any TOML value (``3``, ``[1, 2]``, ``"x"``, ``{ a = 1 }``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, item: str, source: str) -> None:
    """Apply one ``key.path=value`` to the raw TOML data.

    Experiments are addressed by id (``experiments.fig1.N=2000``), by experiment name when the
    block has no id, or by position (``experiments.0.N``). After ``grid.`` or ``derived.`` the
    rest of the path is one key (``experiments.fig1.grid.architecture.q=[2, 4]``).
    """
    if "=" not in item:
        raise SpecError("--set", item, ..., "expected key.path=value")
    path, _, text = item.partition("=")
    path = path.strip()
    value = parse_override_value(text.strip())
    parts = [p for p in path.split(".")]
    if not path or any(not p for p in parts):
        raise SpecError("--set", path, value, "empty key in key path")
    node: Any = raw
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        if node is raw and part == "experiments":
            blocks = raw.get("experiments")
            if not isinstance(blocks, list):
                raise SpecError("--set", path, value, f"{source} has no [[experiments]]")
            node = _find_block(blocks, parts[i + 1], path, value, source)
            i += 2
            continue
        if isinstance(node, dict) and part in ("grid", "derived") and node is not raw and i + 1 < len(parts):
            table = node.setdefault(part, {})
            if not isinstance(table, dict):
                raise SpecError("--set", path, value, f"{part} is not a table")
            table[".".join(parts[i + 1:])] = value
            return
        nxt = node.get(part) if isinstance(node, dict) else None
        if nxt is None:
            nxt = {}
            node[part] = nxt
        elif isinstance(nxt, str) and node is not raw:  # a slot given as a bare name
            nxt = {"name": nxt}
            node[part] = nxt
        elif not isinstance(nxt, dict):
            raise SpecError("--set", path, value, f"{'.'.join(parts[: i + 1])} is not a table")
        node = nxt
        i += 1
    if i >= len(parts):
        raise SpecError("--set", path, value, "the key path names an experiment block, not a key in it")
    node[parts[-1]] = value


def _find_block(blocks: list, ref: str, path: str, value: Any, source: str) -> dict:
    for block in blocks:
        if isinstance(block, dict) and block.get("id", block.get("experiment")) == ref:
            return block
    if ref.isdigit() and int(ref) < len(blocks):
        return blocks[int(ref)]
    ids = [str(b.get("id", b.get("experiment"))) for b in blocks if isinstance(b, dict)]
    raise SpecError("--set", path, value,
                    f"no experiment block {ref!r} in {source}{suggest(ref, ids)}; blocks: {', '.join(ids)}")


def _validate(raw: dict, source: str, registry: Registry) -> Spec:
    for key in raw:
        if key not in ("benchmark", "experiments"):
            raise SpecError(source, key, raw[key], "unknown top-level key" + suggest(key, ["benchmark", "experiments"])
                            + "; allowed: benchmark, experiments")
    bench_raw = raw.get("benchmark")
    if not isinstance(bench_raw, dict):
        raise SpecError(source, "benchmark", ..., "missing [benchmark] table (with name and seed)")
    bench = resolve_params(BENCHMARK_PARAMS, bench_raw, source, prefix="benchmark.")
    blocks = raw.get("experiments")
    if blocks is None:
        raise SpecError(source, "experiments", ..., "no [[experiments]] block: nothing to run")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SpecError(source, "experiments", blocks, "expected an array of tables ([[experiments]])")
    if not blocks:
        raise SpecError(source, "experiments", blocks, "empty: nothing to run")
    experiments: list[ExperimentSpec] = []
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        exp = _validate_experiment(block, index, source, registry, bench["repetitions"])
        if exp.id in seen:
            raise SpecError(source, f"experiments[{index}].id", exp.id,
                            "duplicate id; give each experiment block a distinct id")
        seen.add(exp.id)
        experiments.append(exp)
    return Spec(source=source, name=bench["name"], seed=bench["seed"], repetitions=bench["repetitions"],
                description=bench["description"], experiments=experiments)


def _validate_experiment(block: dict, index: int, source: str, registry: Registry,
                         default_repetitions: int) -> ExperimentSpec:
    where = f"experiments[{index}]"
    name = block.get("experiment")
    if name is None:
        raise SpecError(source, f"{where}.experiment", ..., "missing: name the experiment component to run; available: "
                        + ", ".join(registry.names("experiment")))
    if not isinstance(name, str):
        raise SpecError(source, f"{where}.experiment", name, "expected a string (an experiment name)")
    try:
        component = registry.get("experiment", name)
    except PluginError as exc:
        raise SpecError(source, f"{where}.experiment", name, str(exc)) from None
    exp_id = block.get("id", name)
    if not isinstance(exp_id, str) or not _NAME.match(exp_id):
        raise SpecError(source, f"{where}.id", exp_id, "expected a string of letters, digits, '_', '-' or '.'")
    prefix = f"experiments.{exp_id}."

    repetitions = block.get("repetitions", default_repetitions)
    Param("repetitions", int, min=1).validate(repetitions, source, prefix + "repetitions")
    description = block.get("description", "")
    Param("description", str).validate(description, source, prefix + "description")

    slots_decl = dict(component.slots)
    slots: dict[str, dict[str, Any]] = {}
    for slot, (kind, default) in slots_decl.items():
        slots[slot] = _slot_spec(block.get(slot, default), slot, kind, source, prefix, registry, default)

    exp_params = {k: v for k, v in block.items() if k not in _EXPERIMENT_RESERVED and k not in slots_decl}
    declared = {p.name: p for p in component.params}
    for key in exp_params:
        if key not in declared:
            allowed = sorted(declared) + sorted(slots_decl) + list(_EXPERIMENT_RESERVED)
            raise SpecError(source, prefix + key, exp_params[key],
                            f"unknown key for experiment {name!r}{suggest(key, allowed)}; allowed: "
                            + ", ".join(allowed))

    grid_raw = block.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SpecError(source, prefix + "grid", grid_raw, "expected a table of axes")
    derived = block.get("derived", {})
    if not isinstance(derived, dict):
        raise SpecError(source, prefix + "derived", derived, "expected a table of expressions")
    for key, text in derived.items():
        if not isinstance(text, str):
            raise SpecError(source, f"{prefix}derived.{key}", text, "expected an expression string")
        try:
            expressions.check(text)
        except expressions.ExpressionError as exc:
            raise SpecError(source, f"{prefix}derived.{key}", text, str(exc)) from None

    axes = [_parse_axis(label, values, source, prefix) for label, values in grid_raw.items()]
    targets: dict[str, str] = {}  # key path -> where it is set (for error messages)
    for axis in axes:
        for key in axis.keys:
            _check_key_path(key, declared, slots_decl, source, f"{prefix}grid.{axis.label}", axis.values)
            if key in targets:
                raise SpecError(source, f"{prefix}grid.{axis.label}", ..., f"{key!r} is set twice in the grid")
            targets[key] = f"{prefix}grid.{axis.label}"
    for key in derived:
        if key in targets:
            raise SpecError(source, f"{prefix}derived.{key}", derived[key], f"{key!r} is also a grid axis")
        targets[key] = f"{prefix}derived.{key}"

    # free grid variables must feed a derived expression (catches typos in axis names)
    used = set().union(*[expressions.names_in(t) for t in derived.values()]) if derived else set()
    for axis in axes:
        for key in axis.keys:
            if _is_free(key, declared, slots_decl) and _var_name(key) not in used:
                allowed = sorted(declared) + [f"{s}.<param>" for s in slots_decl] + list(slots_decl)
                raise SpecError(source, f"{prefix}grid.{axis.label}", axis.values,
                                f"{key!r} is neither a parameter of {name!r}{suggest(key, allowed)} nor used "
                                "by a derived expression; allowed: " + ", ".join(allowed))
    for key in derived:
        if "." in key:
            _check_key_path(key, declared, slots_decl, source, f"{prefix}derived.{key}", derived[key])

    search = None
    if "search" in block:
        search = _parse_search(block["search"], source, prefix, declared, slots_decl, targets, used)
        targets[search.axis] = f"{prefix}search.axis"

    seed_by = block.get("seed_by")
    if seed_by is not None:
        Param("seed_by", list, item_type=str).validate(seed_by, source, prefix + "seed_by")
        known = [k for a in axes for k in a.keys] + list(derived) + ([search.axis] if search else [])
        for item in seed_by:
            if item not in known:
                raise SpecError(source, prefix + "seed_by", seed_by,
                                f"{item!r} is not a grid axis or derived value{suggest(item, known)}; known: "
                                + (", ".join(known) or "none"))

    # base parameters: everything not set per point must resolve now
    base_given = {k: v for k, v in exp_params.items()}
    for key, p in declared.items():
        if p.required and key not in base_given and key not in targets:
            raise SpecError(source, prefix + key, ..., f"missing required parameter ({p.allowed()})")
    base = {}
    for p in component.params:
        if p.name in base_given:
            base[p.name] = p.validate(base_given[p.name], source, prefix + p.name)
        elif not p.required:
            base[p.name] = p.default

    exp = ExperimentSpec(id=exp_id, experiment=name, component=component, repetitions=repetitions,
                         params=base, slots=slots, axes=axes, derived=dict(derived), seed_by=seed_by,
                         description=description, search=search)
    exp.resolve = functools.partial(_derive_and_resolve, exp, declared=declared, slots_decl=slots_decl,
                                    source=source, prefix=prefix, registry=registry, targets=targets)
    if search is None:
        exp.points = [exp.resolve(coords) for coords in _grid_coords(exp)]
        if not exp.points:
            raise SpecError(source, prefix + "grid", grid_raw, "empty grid: no cell to run")
    else:
        exp.search_points = [_search_point(exp, coords, source, prefix) for coords in _grid_coords(exp)]
    return exp


_SEARCH_KEYS = ("axis", "lower", "upper", "scale", "integer", "start", "growth", "tolerance", "max_steps",
                "metric", "transform", "below", "above", "holds")


def _parse_search(table: Any, source: str, prefix: str, declared: Mapping[str, Param],
                  slots_decl: Mapping[str, Any], targets: Mapping[str, str], used: set[str]) -> Search:
    """Validate an ``[experiments.search]`` table (see :mod:`harness.search`)."""
    where = prefix + "search"
    if not isinstance(table, dict):
        raise SpecError(source, where, table, "expected a table: axis, lower, upper, metric, and below or above")
    for key in table:
        if key not in _SEARCH_KEYS:
            raise SpecError(source, f"{where}.{key}", table[key], "unknown search key" + suggest(key, _SEARCH_KEYS)
                            + "; allowed: " + ", ".join(_SEARCH_KEYS))
    for key in ("axis", "lower", "upper", "metric"):
        if key not in table:
            raise SpecError(source, f"{where}.{key}", ..., "missing (a search needs axis, lower, upper, metric, "
                            "and below or above)")
    axis = Param("axis", str).validate(table["axis"], source, f"{where}.axis")
    _check_key_path(axis, declared, slots_decl, source, f"{where}.axis", axis)
    if axis in targets:
        raise SpecError(source, f"{where}.axis", axis, f"{axis!r} is also set by {targets[axis]}: search an axis "
                        "that the grid and derived tables do not set")
    if _is_free(axis, declared, slots_decl) and _var_name(axis) not in used:
        allowed = sorted(declared) + [f"{s}.<param>" for s in slots_decl]
        raise SpecError(source, f"{where}.axis", axis, f"{axis!r} is neither a parameter{suggest(axis, allowed)} "
                        "nor used by a derived expression; allowed: " + ", ".join(allowed))
    number = Param("number", (int, float))
    lower = number.validate(table["lower"], source, f"{where}.lower")
    upper = number.validate(table["upper"], source, f"{where}.upper")
    for key, v in (("lower", lower), ("upper", upper)):
        if not math.isfinite(v):
            raise SpecError(source, f"{where}.{key}", v, "expected a finite number")
    if not lower < upper:
        raise SpecError(source, f"{where}.upper", upper, f"must be greater than lower = {lower!r}")
    scale = Param("scale", str, choices=("log", "linear")).validate(table.get("scale", "log"), source,
                                                                    f"{where}.scale")
    if scale == "log" and lower <= 0:
        raise SpecError(source, f"{where}.lower", lower, "a log-scale search needs lower > 0 (or scale = 'linear')")
    param = declared.get(axis)
    int_axis = param is not None and param.type is int
    integer = Param("integer", bool).validate(table.get("integer", int_axis), source, f"{where}.integer")
    start = table.get("start")
    if start is not None:
        if isinstance(start, (int, float)) and not isinstance(start, bool):
            start = repr(start)
        start = Param("start", str).validate(start, source, f"{where}.start")
        try:
            expressions.check(start)
        except expressions.ExpressionError as exc:
            raise SpecError(source, f"{where}.start", start, str(exc)) from None
    growth = Param("growth", (int, float)).validate(table.get("growth", 2.0), source, f"{where}.growth")
    if not math.isfinite(growth) or growth <= (1.0 if scale == "log" else 0.0):
        raise SpecError(source, f"{where}.growth", growth,
                        "expected a factor > 1 (log scale)" if scale == "log" else "expected a step > 0")
    tolerance = Param("tolerance", (int, float)).validate(table.get("tolerance", 0.05), source, f"{where}.tolerance")
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise SpecError(source, f"{where}.tolerance", tolerance, "expected a number > 0")
    max_steps = Param("max_steps", int, min=1, max=1000).validate(table.get("max_steps", 24), source,
                                                                  f"{where}.max_steps")
    metric = Param("metric", str).validate(table["metric"], source, f"{where}.metric")
    transform = Param("transform", str, choices=TRANSFORMS).validate(table.get("transform", "log10"), source,
                                                                     f"{where}.transform")
    conditions = [k for k in ("below", "above") if k in table]
    if len(conditions) != 1:
        raise SpecError(source, where, table, "give exactly one of below = LEVEL or above = LEVEL (the condition "
                        "on the repetitions' mean of transform(metric))")
    condition = conditions[0]
    level = number.validate(table[condition], source, f"{where}.{condition}")
    if not math.isfinite(level):
        raise SpecError(source, f"{where}.{condition}", level, "expected a finite number")
    holds = Param("holds", str, choices=("low", "high")).validate(table.get("holds", "low"), source,
                                                                  f"{where}.holds")
    return Search(axis=axis, lower=lower, upper=upper, metric=metric, level=float(level), condition=condition,
                  holds=holds, scale=scale, integer=integer, start=start, growth=float(growth),
                  tolerance=float(tolerance), max_steps=max_steps, transform=transform)


def _search_point(exp: ExperimentSpec, base: dict, source: str, prefix: str) -> dict:
    """A searched block's grid point: validated at both bounds, with its resolved first value."""
    s = exp.search
    at_lower = exp.resolve({**base, s.axis: s.clamp(s.lower)})["coords"]
    at_upper = exp.resolve({**base, s.axis: s.clamp(s.upper)})["coords"]
    coords = {k: v for k, v in at_lower.items() if k != s.axis and at_upper.get(k) == v}
    if s.start is None:
        start = s.middle(s.lower, s.upper)
    else:
        env = {k: v for k, v in exp.params.items() if isinstance(v, (int, float, str, list))}
        env.update({_var_name(k): v for k, v in coords.items()})
        try:
            start = expressions.evaluate(s.start, env)
        except expressions.ExpressionError as exc:
            raise SpecError(source, f"{prefix}search.start", s.start, f"{exc} (at grid point {_fmt(base)})") from None
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
            raise SpecError(source, f"{prefix}search.start", s.start,
                            f"expected a finite number, got {start!r} (at grid point {_fmt(base)})")
    return {"base": base, "coords": coords, "start": s.clamp(start)}


def _slot_spec(value: Any, slot: str, kind: str, source: str, prefix: str, registry: Registry,
               default: str | None = None) -> dict[str, Any]:
    """``"sigmoid"`` or ``{name = "sigmoid", ...}`` -> ``{"name": .., "params": {..}}`` (validated).

    A table without ``name`` configures the slot's default component."""
    key = prefix + slot
    if isinstance(value, str):
        name, given = value, {}
    elif isinstance(value, dict):
        given = {k: v for k, v in value.items() if k != "name"}
        name = value.get("name", default)
        if not isinstance(name, str):
            raise SpecError(source, key + ".name", name if name is not None else ..., f"missing: name the {kind} component")
    elif value is None:
        raise SpecError(source, key, ..., f"missing: name the {kind} component; available: "
                        + ", ".join(registry.names(kind)))
    else:
        raise SpecError(source, key, value, f"expected a {kind} name or a table with name and parameters")
    try:
        cls = registry.get(kind, name)
    except PluginError as exc:
        raise SpecError(source, key + (".name" if isinstance(value, dict) else ""), name, str(exc)) from None
    params = resolve_params(cls.params, given, source, prefix=key + ".")
    return {"name": name, "params": params}


def _parse_axis(label: str, values: Any, source: str, prefix: str) -> Axis:
    key = f"{prefix}grid.{label}"
    keys = tuple(k.strip() for k in label.split(","))
    if any(not k for k in keys):
        raise SpecError(source, key, values, "empty axis name")
    if isinstance(values, dict):
        values = _range_values(values, source, key)
    if not isinstance(values, list):
        raise SpecError(source, key, values, "expected a list of values or a range table {start, stop, step}")
    if not values:
        raise SpecError(source, key, values, "empty grid axis: no cell to run")
    if len(keys) > 1:
        for i, v in enumerate(values):
            if not isinstance(v, list) or len(v) != len(keys):
                raise SpecError(source, f"{key}[{i}]", v,
                                f"tied axes {label!r} need lists of {len(keys)} values each")
        values = [tuple(v) for v in values]
    return Axis(label=label, keys=keys, values=values)


def _range_values(table: dict, source: str, key: str) -> list:
    allowed = {"start", "stop", "step", "num", "scale"}
    for k in table:
        if k not in allowed:
            raise SpecError(source, f"{key}.{k}", table[k], "unknown range key" + suggest(k, allowed)
                            + "; allowed: start, stop, and step or num (with scale = 'linear' or 'log')")
    start, stop = table.get("start"), table.get("stop")
    for k, v in (("start", start), ("stop", stop)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise SpecError(source, f"{key}.{k}", v if v is not None else ..., "expected a number")
    if "num" in table:
        num, scale = table["num"], table.get("scale", "linear")
        Param("num", int, min=1).validate(num, source, f"{key}.num")
        Param("scale", str, choices=("linear", "log")).validate(scale, source, f"{key}.scale")
        if scale == "log":
            if start <= 0 or stop <= 0:
                raise SpecError(source, key, table, "a log range needs start > 0 and stop > 0")
            vals = [math.exp(math.log(start) + (math.log(stop) - math.log(start)) * i / max(num - 1, 1))
                    for i in range(num)]
        else:
            vals = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
        return vals
    step = table.get("step", 1)
    if not isinstance(step, (int, float)) or isinstance(step, bool) or step == 0:
        raise SpecError(source, f"{key}.step", step, "expected a non-zero number")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count <= 0:
        raise SpecError(source, key, table, "empty range: no value from start to stop with this step")
    return [start + i * step for i in range(count)]


def _is_free(key: str, declared: Mapping[str, Param], slots: Mapping[str, Any]) -> bool:
    head = key.split(".")[0]
    return head not in declared and head not in slots


def _var_name(key: str) -> str:
    return key.replace(".", "_")


def _check_key_path(key: str, declared, slots, source, where, value) -> None:
    parts = key.split(".")
    if len(parts) == 1:
        return  # a parameter, a slot or a free variable
    if parts[0] not in slots:
        allowed = list(slots)
        raise SpecError(source, where, value,
                        f"{key!r}: {parts[0]!r} is not a slot of this experiment{suggest(parts[0], allowed)}; "
                        f"slots: {', '.join(allowed) or 'none'}")
    if len(parts) != 2:
        raise SpecError(source, where, value, f"{key!r}: expected <slot>.<parameter>")


def _coerce_integral(value: Any, param: Param | None) -> Any:
    """Derived values like ``3.0`` for an ``int`` parameter become ``3``."""
    if param is None:
        return value
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    if int in types and float not in types and isinstance(value, float) and value.is_integer():
        return int(value)
    if list in types and isinstance(value, list) and param.item_type is not None:
        items = param.item_type if isinstance(param.item_type, tuple) else (param.item_type,)
        if int in items and float not in items:
            return [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
    return value


def _grid_coords(exp: ExperimentSpec) -> list[dict[str, Any]]:
    """The grid's points (axis values only), in grid order."""
    out = []
    for combo in itertools.product(*[a.values for a in exp.axes]):
        coords: dict[str, Any] = {}
        for axis, value in zip(exp.axes, combo):
            if len(axis.keys) > 1:
                coords.update(zip(axis.keys, value))
            else:
                coords[axis.keys[0]] = value
        out.append(coords)
    return out


def _derive_and_resolve(exp: ExperimentSpec, coords: Mapping[str, Any], *, declared: Mapping[str, Param],
                        slots_decl: Mapping[str, tuple], source: str, prefix: str, registry: Registry,
                        targets: Mapping[str, str]) -> dict:
    """The point at ``coords`` (axis values): derived values added, parameters resolved."""
    coords = dict(coords)
    env = {k: v for k, v in exp.params.items() if isinstance(v, (int, float, str, list))}
    env.update({_var_name(k): v for k, v in coords.items()})
    for key, text in exp.derived.items():
        try:
            value = expressions.evaluate(text, env)
        except expressions.ExpressionError as exc:
            raise SpecError(source, f"{prefix}derived.{key}", text,
                            f"{exc} (at grid point {_fmt(coords)})") from None
        param = declared.get(key) if "." not in key else None
        value = _coerce_integral(value, param)
        coords[key] = value
        env[_var_name(key)] = value
    return _resolve_point(exp, coords, declared, slots_decl, source, prefix, registry, targets)


def _fmt(coords: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in coords.items())


def _resolve_point(exp: ExperimentSpec, coords: dict, declared, slots_decl, source, prefix, registry,
                   targets) -> dict:
    params = dict(exp.params)
    slot_specs = {s: {"name": v["name"], "params": dict(v["params"])} for s, v in exp.slots.items()}
    slot_given: dict[str, dict[str, Any]] = {s: {} for s in slot_specs}
    for key, value in coords.items():
        where = targets.get(key, prefix + key)
        parts = key.split(".")
        if len(parts) == 1 and key in declared:
            value = _coerce_integral(value, declared[key])
            try:
                params[key] = declared[key].validate(value, source, where)
            except SpecError as exc:
                raise SpecError(source, where, value, f"{exc.problem} (parameter {prefix + key})") from None
        elif len(parts) == 1 and key in slots_decl:
            kind = slots_decl[key][0]
            try:
                new = _slot_spec(value, key, kind, source, prefix, registry)
            except SpecError as exc:
                raise SpecError(source, where, value, exc.problem) from None
            if isinstance(value, str) and value == exp.slots[key]["name"]:
                new = {"name": value, "params": dict(exp.slots[key]["params"])}
            slot_specs[key] = new
        elif len(parts) == 2:
            slot_given[parts[0]][parts[1]] = (value, where)
    for slot, given in slot_given.items():
        if not given:
            continue
        cls = registry.get(slots_decl[slot][0], slot_specs[slot]["name"])
        decl = {p.name: p for p in cls.params}
        for pname, (value, where) in given.items():
            if pname not in decl:
                raise SpecError(source, where, value,
                                f"{slot_specs[slot]['name']!r} has no parameter {pname!r}{suggest(pname, decl)}; "
                                f"allowed: {', '.join(sorted(decl)) or 'none'}")
            value = _coerce_integral(value, decl[pname])
            try:
                slot_specs[slot]["params"][pname] = decl[pname].validate(value, source, where)
            except SpecError as exc:
                raise SpecError(source, where, value, f"{exc.problem} (parameter {prefix}{slot}.{pname})") from None
    missing = [p.name for p in declared.values() if p.name not in params]
    if missing:
        raise SpecError(source, prefix + missing[0], ..., "missing required parameter")
    return {"coords": coords, "params": params, "components": slot_specs}
