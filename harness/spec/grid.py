"""Grid axes and points: axis values and ranges, slot tables, the expressions of ``derived``,
resolving one grid point to typed parameters, and the experiment's ``check`` on it.
"""
from __future__ import annotations

import itertools
import math
import re
from typing import TYPE_CHECKING, Any, Mapping

from harness.plugin import expressions
from harness.plugin.experiment import Experiment
from harness.plugin.params import Param, resolve_params
from harness.plugin.registry import Registry
from harness.plugin.seeds import canonical, same_number

from ..errors import PluginError, SpecError, shorten, suggest
from .model import MAX_GRID_POINTS, Axis
from .slot_rules import apply_rules

if TYPE_CHECKING:
    from .model import ExperimentSpec


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
            raise SpecError(source, key + ".name", name if name is not None else ...,
                            f"missing: name the {kind} component")
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
    registry.check_names(cls, params, key + ".", source)
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
    if len(values) > MAX_GRID_POINTS:
        raise SpecError(source, key, values, f"{len(values)} values; at most {MAX_GRID_POINTS} grid points "
                        "per experiment block")
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        k = canonical(same_number(v))
        if k in seen:
            raise SpecError(source, key, values, f"value {shorten(repr(v), 60)} appears twice (items {seen[k]} and "
                            f"{i}): each grid value must be distinct (use repetitions to run a point again)")
        seen[k] = i
    return Axis(label=label, keys=keys, values=values)


def _check_distinct_components(axis: Axis, slots_decl: Mapping[str, tuple], source: str, prefix: str,
                               registry: Registry) -> None:
    """Refuse two values of an axis that configure the same components (``"relu"`` and
    ``{name = "relu"}``; a component with and without a parameter at its default value): they
    would be two grid points of one cell."""
    if not any(k in slots_decl for k in axis.keys):
        return
    seen: dict[str, int] = {}
    for i, value in enumerate(axis.values):
        parts = list(value) if len(axis.keys) > 1 else [value]
        resolved = [_slot_spec(v, k, slots_decl[k][0], source, prefix, registry) if k in slots_decl
                    else same_number(v) for k, v in zip(axis.keys, parts)]
        key = canonical(resolved)
        if key in seen:
            raise SpecError(source, f"{prefix}grid.{axis.label}", axis.values,
                            f"items {seen[key]} and {i} ({axis.values[seen[key]]!r} and {value!r}) configure the "
                            "same component: each grid value must be distinct (use repetitions to run a point again)")
        seen[key] = i


def _range_values(table: dict, source: str, key: str) -> list:
    allowed = {"start", "stop", "step", "num", "scale"}
    for k in table:
        if k not in allowed:
            raise SpecError(source, f"{key}.{k}", table[k], "unknown range key" + suggest(k, allowed)
                            + "; allowed: start, stop, and step or num (with scale = 'linear' or 'log')")
    start, stop = table.get("start"), table.get("stop")
    for k, v in (("start", start), ("stop", stop)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise SpecError(source, f"{key}.{k}", v if v is not None else ..., "expected a finite number")
    if "num" in table:
        num, scale = table["num"], table.get("scale", "linear")
        Param("num", int, min=1).validate(num, source, f"{key}.num")
        if num > MAX_GRID_POINTS:
            raise SpecError(source, f"{key}.num", num, f"{num} values; at most {MAX_GRID_POINTS} grid points "
                            "per experiment block")
        Param("scale", str, choices=("linear", "log")).validate(scale, source, f"{key}.scale")
        if scale == "log":
            if start <= 0 or stop <= 0:
                raise SpecError(source, key, table, "a log range needs start > 0 and stop > 0")
            vals = [math.exp(math.log(start) + (math.log(stop) - math.log(start)) * i / max(num - 1, 1))
                    for i in range(num)]
        else:
            vals = [start + (stop - start) * i / max(num - 1, 1) for i in range(num)]
        return [_snap(v) for v in vals]
    step = table.get("step", 1)
    if not isinstance(step, (int, float)) or isinstance(step, bool) or step == 0 or not math.isfinite(step):
        raise SpecError(source, f"{key}.step", step, "expected a finite non-zero number")
    ratio = (stop - start) / step
    if not math.isfinite(ratio) or ratio + 1 > MAX_GRID_POINTS:
        raise SpecError(source, f"{key}.step", step, f"the range from {start!r} to {stop!r} in steps of {step!r} "
                        f"has about {ratio + 1:.3g} values; at most {MAX_GRID_POINTS} grid points per "
                        "experiment block")
    count = math.floor(ratio + 1e-9) + 1
    if count <= 0:
        raise SpecError(source, key, table, "empty range: no value from start to stop with this step")
    return [start + i * step for i in range(count)]


def _snap(value: float) -> float | int:
    """A computed range value within rounding of an integer as that integer's float (``10.000000000000002``
    -> ``10.0``, which an ``int`` axis takes as ``10``); an int stays as it is."""
    if isinstance(value, int):
        return value
    nearest = round(value)
    if nearest != 0 and abs(value - nearest) <= 1e-9 * abs(nearest):
        return float(nearest)
    return value


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
                        targets: Mapping[str, str], given: set[str] | frozenset[str] = frozenset()) -> dict:
    """The point at ``coords`` (axis values): derived values added, parameters resolved, rules
    for slot parameters applied (:mod:`harness.spec.slot_rules`; ``given``: the key paths the
    block sets explicitly)."""
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
    point = _resolve_point(exp, coords, declared, slots_decl, source, prefix, registry, targets)
    apply_rules(exp.component, point, exp.slots, set(given), slots_decl, registry, source, prefix, targets)
    _check_point(exp, point, slots_decl, source, prefix, registry, targets)
    return point


def _check_point(exp: ExperimentSpec, point: dict, slots_decl, source, prefix, registry, targets) -> None:
    """Run the experiment's :meth:`~harness.plugin.experiment.Experiment.check` at a resolved point:
    a problem is a :class:`SpecError` naming the key at fault; a ``Skip`` marks the point."""
    from harness.plugin.experiment import Skip

    if exp.component.check is Experiment.check:
        return
    coords = point["coords"]
    at = f" (at grid point {_fmt(coords)})" if coords else ""

    def fail(key: str | None, problem: str, value: Any = ...) -> None:
        key = key or ""
        where = targets.get(key, prefix + key if key else prefix.rstrip("."))
        if value is ... and key:
            value = _value_at(point, key)
        raise SpecError(source, where, value, f"{problem}{at}")

    try:
        experiment = exp.component(**point["params"])
        components = {}
        for slot, (kind, default) in slots_decl.items():
            chosen = point["components"].get(slot) or ({"name": default, "params": {}} if default else None)
            if chosen is not None:
                components[slot] = registry.create(kind, chosen["name"], chosen.get("params", {}))
        result = experiment.check(dict(point["params"]), components)
    except SpecError as exc:
        key = exc.key or ""
        for slot, chosen in point["components"].items():  # "architecture.fc.widths[0]" -> "architecture.widths[0]"
            head = f"{slot}.{chosen.get('name')}."
            if key.startswith(head):
                key = f"{slot}.{key[len(head):]}"
        base = re.split(r"\[", key)[0]
        fail(base, exc.problem, exc.value if exc.value is not ... else _value_at(point, base))
        return
    except Exception as exc:  # a check that breaks is the plugin's bug, reported as such
        fail(None, f"{exp.experiment}.check failed: {type(exc).__name__}: {exc}")
        return
    if result is None:
        return
    if isinstance(result, Skip):
        point["skip"] = str(result.reason)
    elif isinstance(result, tuple) and len(result) == 2:
        fail(str(result[0]), str(result[1]))
    else:
        fail(None, str(result))


def _value_at(point: dict, key: str) -> Any:
    """The resolved value of a parameter (``N``) or slot parameter (``architecture.widths``)."""
    if key in point["params"]:
        return point["params"][key]
    slot, _, name = key.partition(".")
    chosen = point["components"].get(slot)
    if chosen is not None:
        return chosen.get("params", {}).get(name, ...) if name else chosen.get("name", ...)
    return ...


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
            if isinstance(value, str) and key in exp.slots and value == exp.slots[key]["name"]:
                new = {"name": value, "params": dict(exp.slots[key]["params"])}
            slot_specs[key] = new
        elif len(parts) == 2:
            slot_given.setdefault(parts[0], {})[parts[1]] = (value, where)
    for slot, given in slot_given.items():
        if not given:
            continue
        if slot not in slot_specs:  # an optional slot (no default component) left unconfigured
            value, where = next(iter(given.values()))
            raise SpecError(source, where, value, f"the slot {slot!r} is not configured: name its "
                            f"component ({prefix}{slot} = ...) to set its parameters")
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
        registry.check_names(cls, slot_specs[slot]["params"], f"{prefix}{slot}.", source)
    missing = [p.name for p in declared.values() if p.name not in params]
    if missing:
        raise SpecError(source, prefix + missing[0], ..., "missing required parameter")
    return {"coords": coords, "params": params, "components": slot_specs}
