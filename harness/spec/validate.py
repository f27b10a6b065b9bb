"""Validation of a parsed benchmark file: the ``[benchmark]`` table, each ``[[experiments]]`` block
and its ``[experiments.search]`` table, every error naming the key at fault.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from harness.plugin import expressions
from harness.plugin.experiment import declares_metric
from harness.plugin.params import REQUIRED, Param, resolve_params
from harness.plugin.registry import Registry
from harness.spec.search import TRANSFORMS, Search

from ..errors import PluginError, SpecError, suggest
from .grid import (
    _check_distinct_components,
    _check_key_path,
    _derive_and_resolve,
    _fmt,
    _grid_coords,
    _is_free,
    _parse_axis,
    _slot_spec,
    _var_name,
)
from .model import (
    _EXPERIMENT_RESERVED,
    _NAME,
    BENCHMARK_PARAMS,
    MAX_CELLS,
    MAX_GRID_POINTS,
    MAX_ID_LENGTH,
    ExperimentSpec,
    Spec,
)
from .slot_rules import block_given, prepare_block


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
        exp.registry = registry
        if exp.id in seen:
            raise SpecError(source, f"experiments[{index}].id", exp.id,
                            "duplicate id; give each experiment block a distinct id")
        seen.add(exp.id)
        experiments.append(exp)
    total = sum(len(e.points) * e.repetitions for e in experiments)
    if total > MAX_CELLS:
        raise SpecError(source, "experiments", ..., f"{total} cells (grid points x repetitions) in all; at most "
                        f"{MAX_CELLS}: use fewer grid values or repetitions, or split the file")
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
    if not isinstance(exp_id, str) or not _NAME.match(exp_id) or len(exp_id) > MAX_ID_LENGTH:
        raise SpecError(source, f"{where}.id", exp_id, f"expected 1 to {MAX_ID_LENGTH} letters, digits, '_', '-' or "
                        "'.' (it names the block's figure files)")
    prefix = f"experiments.{exp_id}."

    repetitions = block.get("repetitions", default_repetitions)
    Param("repetitions", int, min=1, max=MAX_CELLS).validate(repetitions, source, prefix + "repetitions")
    description = block.get("description", "")
    Param("description", str).validate(description, source, prefix + "description")

    slots_decl = dict(component.slots)
    slots: dict[str, dict[str, Any]] = {}
    for slot, (kind, default) in slots_decl.items():
        if default is None and slot not in block:
            continue  # an optional slot (no default component), left unconfigured
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
    n_points = math.prod(len(a.values) for a in axes)
    if n_points > MAX_GRID_POINTS:
        sizes = " x ".join(str(len(a.values)) for a in axes)
        raise SpecError(source, prefix + "grid", ..., f"{n_points} grid points ({sizes}); at most "
                        f"{MAX_GRID_POINTS} per experiment block: use fewer or coarser axes")
    targets: dict[str, str] = {}  # key path -> where it is set (for error messages)
    for axis in axes:
        for key in axis.keys:
            _check_key_path(key, declared, slots_decl, source, f"{prefix}grid.{axis.label}", axis.values)
            if key in targets:
                raise SpecError(source, f"{prefix}grid.{axis.label}", ..., f"{key!r} is set twice in the grid")
            targets[key] = f"{prefix}grid.{axis.label}"
        _check_distinct_components(axis, slots_decl, source, prefix, registry)
    for key in derived:
        if key in targets:
            raise SpecError(source, f"{prefix}derived.{key}", derived[key], f"{key!r} is also a grid axis")
        targets[key] = f"{prefix}derived.{key}"
    _check_set_once(block, targets, declared, slots_decl, source, prefix, registry)

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
        elif _is_free(key, declared, slots_decl) and not _feeds_another(key, derived, block.get("search")):
            allowed = sorted(declared) + [f"{s}.<param>" for s in slots_decl] + list(slots_decl)
            raise SpecError(source, f"{prefix}derived.{key}", derived[key],
                            f"{key!r} is neither a parameter of {name!r}{suggest(key, allowed)} nor used by "
                            "another derived expression or the search's start; allowed: " + ", ".join(allowed))

    search = None
    if "search" in block:
        search = _parse_search(block["search"], source, prefix, declared, slots_decl, targets, used)
        targets[search.axis] = f"{prefix}search.axis"
        _check_set_once(block, {search.axis: targets[search.axis]}, declared, slots_decl, source, prefix, registry)

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

    given = block_given(block, exp_params, slots_decl)
    prepare_block(component, base, slots, given)  # a rule vs its slot parameter (slot_rules)
    exp = ExperimentSpec(id=exp_id, experiment=name, component=component, repetitions=repetitions,
                         params=base, slots=slots, axes=axes, derived=dict(derived), seed_by=seed_by,
                         description=description, search=search)
    exp.resolve = functools.partial(_derive_and_resolve, exp, declared=declared, slots_decl=slots_decl,
                                    source=source, prefix=prefix, registry=registry, targets=targets,
                                    given=given)
    if search is None:
        exp.points = [exp.resolve(coords) for coords in _grid_coords(exp)]
        if not exp.points:
            raise SpecError(source, prefix + "grid", grid_raw, "empty grid: no cell to run")
    else:
        exp.search_points = [_search_point(exp, coords, source, prefix) for coords in _grid_coords(exp)]
    return exp


def _feeds_another(key: str, derived: Mapping[str, Any], search: Any) -> bool:
    """Whether the free variable ``key`` of ``derived`` is used by another derived expression or
    by the search's ``start`` (else it names nothing: a misspelt parameter)."""
    texts = [t for k, t in derived.items() if k != key and isinstance(t, str)]
    if isinstance(search, dict) and isinstance(search.get("start"), str):
        texts.append(search["start"])
    for text in texts:
        try:
            if _var_name(key) in expressions.names_in(text):
                return True
        except expressions.ExpressionError:
            continue
    return False


def _check_set_once(block: Mapping[str, Any], targets: Mapping[str, str], declared: Mapping[str, Param],
                    slots_decl: Mapping[str, Any], source: str, prefix: str, registry: Registry) -> None:
    """Refuse a parameter, slot or slot parameter that the block sets as a single value and also
    per point (a grid axis, a derived value, the searched axis): one of them would be ignored. A
    single value equal to the default is let through (it changes nothing; run directories of
    earlier versions wrote every default into their spec)."""
    for key, where in targets.items():
        head, _, param = key.partition(".")
        if not param and key in block and key in declared:
            if declared[key].default is REQUIRED or not _same_value(block[key], declared[key].default):
                raise SpecError(source, prefix + key, block[key], f"also set by {where}: set a parameter once "
                                "(drop the single value or the per-point one)")
        elif not param and key in slots_decl and key in block:
            default = slots_decl[key][1]
            given = block[key]
            name = given.get("name", default) if isinstance(given, dict) else given
            extra = {k: v for k, v in given.items() if k != "name"} if isinstance(given, dict) else {}
            if name != default or not _defaults(extra, slots_decl[key][0], name, registry):
                raise SpecError(source, prefix + key, given, f"the slot is also set by {where}: choose its "
                                "component once (drop one of them)")
        elif param and head in slots_decl and isinstance(block.get(head), dict) and param in block[head]:
            given = block[head]
            name = given.get("name", slots_decl[head][1])
            if not _defaults({param: given[param]}, slots_decl[head][0], name, registry):
                raise SpecError(source, f"{prefix}{key}", given[param], f"also set by {where}: set a parameter "
                                "once (drop the single value or the per-point one)")


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                              and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _defaults(given: Mapping[str, Any], kind: str, name: Any, registry: Registry) -> bool:
    """Whether every parameter in ``given`` is at the default of component ``name``."""
    try:
        declared = {p.name: p for p in registry.get(kind, name).params}
    except Exception:
        return False
    return all(k in declared and declared[k].default is not REQUIRED and _same_value(v, declared[k].default)
               for k, v in given.items())


_SEARCH_KEYS = ("axis", "lower", "upper", "scale", "integer", "start", "growth", "tolerance", "max_steps",
                "metric", "transform", "below", "above", "holds", "warm_start", "wave")

MAX_LEVELS = 16
"""Levels one search may have (``below`` or ``above`` as a list)."""


def _parse_search(table: Any, source: str, prefix: str, declared: Mapping[str, Param],
                  slots_decl: Mapping[str, Any], targets: Mapping[str, str], used: set[str]) -> Search:
    """Validate an ``[experiments.search]`` table (see :mod:`harness.runner.search`)."""
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
    levels = _parse_levels(table[condition], source, f"{where}.{condition}")
    holds = Param("holds", str, choices=("low", "high")).validate(table.get("holds", "low"), source,
                                                                  f"{where}.holds")
    warm_start = Param("warm_start", bool).validate(table.get("warm_start", False), source, f"{where}.warm_start")
    wave = Param("wave", int, min=1, max=MAX_GRID_POINTS).validate(table.get("wave", 1), source, f"{where}.wave")
    if "wave" in table and not warm_start:
        raise SpecError(source, f"{where}.wave", wave, "waves order warm starts: set warm_start = true too "
                        "(without it every grid point starts from start, all at once)")
    return Search(axis=axis, lower=lower, upper=upper, metric=metric, levels=levels, condition=condition,
                  holds=holds, scale=scale, integer=integer, start=start, growth=float(growth),
                  tolerance=float(tolerance), max_steps=max_steps, transform=transform,
                  warm_start=warm_start, wave=wave)


def _parse_levels(value: Any, source: str, key: str) -> tuple[float, ...]:
    """``below`` / ``above``: a finite number, or a non-empty list of distinct finite numbers."""
    allowed = "a finite number or a list of distinct finite numbers, e.g. -3 or [-3, -4, -6]"
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SpecError(source, key, value, f"empty list; expected {allowed}")
    if len(items) > MAX_LEVELS:
        raise SpecError(source, key, value, f"{len(items)} levels; at most {MAX_LEVELS}")
    levels = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise SpecError(source, key, value, f"{item!r} is not a finite number; expected {allowed}")
        if float(item) in levels:
            raise SpecError(source, key, value, f"the level {item!r} is given twice; expected {allowed}")
        levels.append(float(item))
    return tuple(levels)


def _search_point(exp: ExperimentSpec, base: dict, source: str, prefix: str) -> dict:
    """A searched block's grid point: validated at both bounds, with its resolved first value."""
    s = exp.search
    point = exp.resolve({**base, s.axis: s.clamp(s.lower)})
    names = exp.component.metric_names(point["params"], point["components"])
    if names is not None and not declares_metric(names, s.metric):
        raise SpecError(source, f"{prefix}search.metric", s.metric, f"not a metric of {exp.experiment!r}"
                        f"{suggest(s.metric, names)}; its metrics: {', '.join(names)}")
    at_lower = point["coords"]
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
