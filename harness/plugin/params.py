"""Declared parameters of plugin components.

Every component lists its parameters as :class:`Param` objects: a name, a type, a default, an
allowed range or a set of choices, and a one-line help. The benchmark-file validator, the
``harness plugins`` listing and the error messages are all driven by these declarations.
"""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from harness.errors import SpecError, suggest


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of a parameter that has no default: the benchmark file must set it."""

_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "table"}


def type_name(tp: type | tuple[type, ...]) -> str:
    if isinstance(tp, tuple):
        return " or ".join(type_name(t) for t in tp)
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


@dataclass(frozen=True)
class Param:
    """One declared parameter of a component.

    ``type`` is ``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict`` (or a tuple of them);
    an ``int`` is accepted where a ``float`` is declared. For lists, ``item_type``,
    ``choices``, ``min`` and ``max`` apply to each item. ``default=None`` marks an optional
    parameter that is unset by default; ``REQUIRED`` (the default) means it must be given.
    ``check`` is an optional extra validator returning an error text or ``None``; ``component``
    names a plugin kind when the value names a component of it. Numbers must
    be finite (NaN is never accepted; ``inf`` only with ``finite=False``).
    """

    name: str
    type: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    item_type: builtins.type | tuple[builtins.type, ...] | None = None
    min_length: int = 0
    check: Callable[[Any], str | None] | None = None
    finite: bool = True
    component: str | None = None
    """The value names a registered component of this kind (``"activation"``): checked against
    the run's registry when the benchmark file loads (:meth:`harness.plugin.registry.Registry.create`)."""
    sets: str | None = None
    """For an experiment's text parameter that is a *rule* for a slot's parameter (``lr_rule``
    sets ``"optimizer.lr"``): the ``slot.param`` it sets. The slot's parameter, set explicitly in
    the benchmark file, wins over the rule's default (the rule then resolves to ``""``: none);
    both set explicitly is refused when the file loads, naming both; where the rule applies, the
    slot's parameter is left out of the resolved spec (the experiment reports the value it used
    in its result's ``resolved``). :mod:`harness.spec.slot_rules` applies this."""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def allowed(self) -> str:
        """Describe what the parameter accepts, for error messages and listings."""
        if self.type is list or (isinstance(self.type, tuple) and list in self.type):
            item = type_name(self.item_type) if self.item_type else "value"
            text = f"a list of {item}"
            if self.min_length:
                text += f" with at least {self.min_length} item(s)"
        else:
            name = type_name(self.type)
            text = f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
        if self.choices is not None:
            text += " in {" + ", ".join(repr(c) for c in self.choices) + "}"
        if self.min is not None and self.max is not None:
            text += f" in [{self.min}, {self.max}]"
        elif self.min is not None:
            text += f" >= {self.min}"
        elif self.max is not None:
            text += f" <= {self.max}"
        return text

    def validate(self, value: Any, source: str | None = None, key: str | None = None) -> Any:
        """Return ``value`` coerced to the declared type, or raise :class:`SpecError`."""
        key = key or self.name
        if value is None and self.default is None:
            return None
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if isinstance(value, list) and list in types:
            if len(value) < self.min_length:
                raise SpecError(source, key, value, f"expected {self.allowed()}")
            out = [self._check_scalar(v, self.item_type, source, f"{key}[{i}]")
                   for i, v in enumerate(value)] if self.item_type else list(value)
            if self.item_type is None:
                for i, v in enumerate(out):
                    self._check_range(v, source, f"{key}[{i}]")
        else:
            out = self._check_scalar(value, self.type, source, key)
        if self.check is not None:
            problem = self.check(out)
            if problem:
                raise SpecError(source, key, value, problem)
        return out

    def _check_scalar(self, value: Any, tp, source, key) -> Any:
        types = tp if isinstance(tp, tuple) else (tp,)
        ok = False
        for t in types:
            if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value) if not (int in types and isinstance(value, int)) else value
                ok = True
                break
            if t is int and isinstance(value, int) and not isinstance(value, bool):
                ok = True
                break
            if t is bool and isinstance(value, bool):
                ok = True
                break
            if t not in (int, float, bool) and isinstance(value, t):
                ok = True
                break
        if not ok:
            raise SpecError(source, key, value,
                            f"wrong type {type_name(type(value))}, expected {self.allowed()}")
        self._check_range(value, source, key)
        return value

    def _check_range(self, value: Any, source, key) -> None:
        if self.choices is not None and value not in self.choices:
            raise SpecError(source, key, value,
                            f"not allowed, expected {self.allowed()}" + suggest(value, map(str, self.choices)))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise SpecError(source, key, value, f"NaN is not allowed, expected {self.allowed()}")
            if isinstance(value, float) and math.isinf(value) and self.finite:
                raise SpecError(source, key, value, f"not a finite number, expected {self.allowed()}")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise SpecError(source, key, value, f"out of range, expected {self.allowed()}")

    def describe(self) -> dict:
        """A JSON-friendly description, used by ``harness plugins --json``."""
        return {
            "name": self.name,
            "type": type_name(self.type),
            "item_type": type_name(self.item_type) if self.item_type else None,
            "default": None if self.required else self.default,
            "required": self.required,
            "choices": list(self.choices) if self.choices is not None else None,
            "min": self.min,
            "max": self.max,
            "help": self.help,
            "component": self.component,
            "sets": self.sets,
        }


def resolve_params(params: Sequence[Param], given: Mapping[str, Any], source: str | None = None,
                   prefix: str = "") -> dict:
    """Validate ``given`` against the declarations and fill in defaults.

    Unknown keys and missing required keys raise :class:`SpecError` naming ``prefix + key``.
    """
    declared = {p.name: p for p in params}
    for key, value in given.items():
        if key not in declared:
            allowed = ", ".join(sorted(declared)) or "none"
            raise SpecError(source, prefix + key, value,
                            f"unknown parameter{suggest(key, declared)}; allowed: {allowed}")
    out = {}
    for p in params:
        if p.name in given:
            out[p.name] = p.validate(given[p.name], source, prefix + p.name)
        elif p.required:
            raise SpecError(source, prefix + p.name, ..., f"missing required parameter ({p.allowed()})")
        else:
            out[p.name] = p.default
    return out
