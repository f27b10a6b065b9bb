"""Rules for slot parameters: which of an experiment's rule and a slot's own value sets it.

An experiment parameter declared ``Param(..., sets="optimizer.lr")`` (the memorisation
experiments' ``lr_rule``) is a rule for a slot's parameter. Precedence, decided when the file
loads, at each grid point:

- the slot's parameter set explicitly (``optimizer = {name = "adam", lr = 0.0007}``, a grid table
  of the slot that names it, or the key ``optimizer.lr`` in the grid or ``derived``) and the rule
  not set: the slot's value wins; the rule resolves to ``""`` (no rule);
- both set explicitly, the rule not ``""``: refused, naming both (one of them would be ignored);
- the slot's parameter not set: the rule (its default where not set) applies, and the slot's
  parameter is left out of the point's resolved components, so that no default that never ran
  is recorded (the experiment reports the value it used in its result's ``resolved``); with the
  rule ``""`` the slot's default is recorded.

What was set explicitly is read from the file, and stays readable in the run's ``spec.toml``: a
rule not set is left out of the block's parameters (``None``, not written), and a slot parameter
that a rule governs is written only where it was set; loading ``spec.toml`` again therefore
gives the same cells.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness.plugin.params import Param
from harness.plugin.registry import Registry

from ..errors import SpecError


def rule_params(component: type) -> list[Param]:
    """The experiment's parameters that are rules for a slot parameter (``Param.sets``)."""
    return [p for p in getattr(component, "params", ()) if p.sets]


def block_given(block: Mapping[str, Any], exp_params: Mapping[str, Any], slots_decl: Mapping[str, Any]) -> set[str]:
    """Key paths a raw ``[[experiments]]`` block sets explicitly: its experiment parameters and
    ``slot.param`` for every parameter of a slot table."""
    given = set(exp_params)
    for slot in slots_decl:
        table = block.get(slot)
        if isinstance(table, dict):
            given.update(f"{slot}.{k}" for k in table if k != "name")
    return given


def prepare_block(component: type, base: dict[str, Any], slots: dict[str, dict[str, Any]], given: set[str]) -> None:
    """At block level (what ``spec.toml`` records): a rule not set is ``None``; a governed slot
    parameter not set is left out of the slot's parameters."""
    for p in rule_params(component):
        if p.name not in given:
            base[p.name] = None
        slot, _, name = p.sets.partition(".")
        if slot in slots and p.sets not in given:
            slots[slot]["params"].pop(name, None)


def _slot_param_given(point: Mapping[str, Any], block_slots: Mapping[str, Any], given: set[str], key: str) -> bool:
    slot, _, name = key.partition(".")
    coords = point["coords"]
    if key in coords:
        return True
    if slot in coords:  # the grid chose the slot's component (a table, or a bare name)
        raw = coords[slot]
        if isinstance(raw, dict):
            return name in raw
        same = slot in block_slots and raw == block_slots[slot]["name"]  # the block's own table
        return same and key in given
    return key in given


def apply_rules(component: type, point: dict[str, Any], block_slots: Mapping[str, Any], given: set[str],
                slots_decl: Mapping[str, tuple], registry: Registry, source: str, prefix: str,
                targets: Mapping[str, str]) -> None:
    """Resolve every rule of ``point`` (``{"coords", "params", "components"}``) in place (see the
    module docstring); a :class:`SpecError` when a rule and its slot parameter are both set."""
    for p in rule_params(component):
        slot, _, name = p.sets.partition(".")
        rule_given = p.name in given or p.name in point["coords"]
        slot_given = _slot_param_given(point, block_slots, given, p.sets)
        rule = point["params"].get(p.name)
        if rule_given and slot_given and rule:
            chosen = point["components"].get(slot) or {}
            value = (chosen.get("params") or {}).get(name)
            where = targets.get(p.name, prefix + p.name)
            raise SpecError(source, where, rule,
                            f"{prefix}{p.name} and {prefix}{p.sets} (= {value!r}) are both set: an explicit "
                            f"{p.sets} wins over {p.name}, which would be ignored; set one of them "
                            f"({p.name} = '' keeps {p.sets})")
        if rule is None:
            rule = "" if slot_given else p.default
            point["params"][p.name] = rule
        chosen = point["components"].get(slot)
        if chosen is None or slot_given:
            continue
        declared = {q.name: q for q in registry.get(slots_decl[slot][0], chosen["name"]).params}
        if name not in declared:
            continue
        if rule:
            chosen["params"].pop(name, None)
        else:
            chosen["params"].setdefault(name, declared[name].default)
