"""Short labels for the groups of a comparison: each names only what differs between groups.

A group is a value of a ``by`` key: a number or a string (labelled as written), a list, or a
component table such as the grid value ``{name = "residual", width = "d", blocks = 1}``. Tables
are labelled ``name(what differs)``: among the groups with the same component name, only the
parameters whose values are not the same in all of them are shown (a ``true`` flag by its name
alone, ``fc(bias)``; other values as ``key=value``, ``residual(blocks=2)``); a parameter every
group of that name shares is left out, and so is a component name that is alone (``fc`` next to
``fc(bias)`` and ``residual``). Labels never hold JSON; two different values never get the
same label (the full ``name(k=v, ...)`` form, then the canonical JSON, break a tie).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from harness.plugin.series import short_value

__all__ = ["short_labels", "value_text"]


def value_text(value: Any) -> str:
    """A compact text of one value: strings as they are, numbers with ``str``, lists and tables
    as :func:`harness.plugin.series.short_value` writes them (``[d, d]``, ``fc(bias=True)``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return str(value)
    return short_value(value)


def _table(value: Any) -> dict[str, Any] | None:
    """``{name, params...}`` of a component value (a table or a bare name), else ``None``."""
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        params = {k: v for k, v in value.items() if k not in ("name", "params")}
        if isinstance(value.get("params"), Mapping):
            params.update(value["params"])
        return {"name": value["name"], **params}
    return None


def _param_text(key: str, value: Any) -> str:
    if value is True:
        return key
    if value is False:
        return f"{key}=false"
    return f"{key}={value_text(value)}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def short_labels(values: Sequence[Any]) -> list[str]:
    """One label per value of ``values`` (distinct values, in order; see the module docstring)."""
    tables = [_table(v) for v in values]
    names = {t["name"] for t in tables if t is not None}
    if names and all(t is not None or (isinstance(v, str) and v in names) for v, t in zip(values, tables)):
        tables = [t if t is not None else {"name": v} for v, t in zip(values, tables)]
    labels = []
    for value, table in zip(values, tables):
        if table is None:
            labels.append(value_text(value))
            continue
        same_name = [t for t in tables if t is not None and t["name"] == table["name"]]
        keys = list(dict.fromkeys(k for t in same_name for k in t if k != "name"))
        differ = [k for k in keys if len({_canonical(t.get(k, ...)) for t in same_name}) > 1]
        shown = [_param_text(k, table[k]) for k in differ if k in table]
        labels.append(f"{table['name']}({', '.join(shown)})" if shown else table["name"])
    return _untie(values, labels)


def _untie(values: Sequence[Any], labels: list[str]) -> list[str]:
    """``labels`` with every label shared by different values replaced by a longer form."""
    for longer in (value_text, _canonical):
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        if all(n == 1 for n in counts.values()):
            break
        labels = [longer(v) if counts[label] > 1 else label for v, label in zip(values, labels)]
    return labels
