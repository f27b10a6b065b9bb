"""Checks of every kind: the declaration, that the declared defaults validate, construction.
"""
from __future__ import annotations

import json
import re

from harness.plugin.components import Component
from harness.plugin.conformance.core import EVERY_KIND, _instance, check, class_arg
from harness.plugin.params import Param


@check(EVERY_KIND, "declaration", args=lambda s: (s.cls, s.kind))
def _check_declaration(cls: type[Component], kind: str) -> str:
    assert cls.kind == kind, f"class kind is {cls.kind!r}, checked as {kind!r}"
    assert isinstance(cls.name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", cls.name), \
        f"name {cls.name!r} must be a non-empty identifier-like string"
    assert isinstance(cls.help, str) and cls.help.strip(), "help must be a non-empty one-line string"
    names = [p.name for p in cls.params]
    assert all(isinstance(p, Param) for p in cls.params), "params must be Param objects"
    assert len(set(names)) == len(names), f"duplicate parameter names in {names}"
    json.dumps(cls.describe())
    return f"{len(names)} parameter(s)"


@check(EVERY_KIND, "defaults validate", args=class_arg)
def _check_defaults_validate(cls: type[Component]) -> str:
    checked = 0
    for p in cls.params:
        if p.required or p.default is None:
            continue
        p.validate(p.default, None, f"{cls.kind}.{cls.name}.{p.name}")
        checked += 1
    return f"{checked} default(s) valid"


@check(EVERY_KIND, "construct with defaults", args=class_arg)
def _check_construct(cls: type[Component]) -> str:
    component = _instance(cls)
    assert set(component.config) == {p.name for p in cls.params}, \
        f"config keys {sorted(component.config)} differ from the declared parameters"
    repr(component)
    return repr(component)
