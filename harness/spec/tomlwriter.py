"""A small TOML writer for the resolved spec (``spec.toml`` in a run directory).

Writes what :mod:`tomllib` reads back to the same value: tables, arrays of tables, arrays,
strings, integers, floats (including inf and nan), booleans. ``None`` values are left out.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text of ``data`` (a mapping of mappings, lists and scalars)."""
    lines: list[str] = []
    _write_table(lines, data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    out = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in out)
    out = out.replace("\x7f", "\\u007f")
    return f'"{out}"'


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if hasattr(v, "item"):  # numpy scalar
        return _value(v.item())
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _write_table(lines: list[str], table: Mapping[str, Any], path: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items()
               if v is not None and not _is_table(v) and not _is_table_array(v)]
    subtables = [(k, v) for k, v in table.items() if _is_table(v)]
    arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
    if path and (scalars or not (subtables or arrays)):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in scalars:
        lines.append(f"{_key(str(k))} = {_value(v)}")
    for k, v in subtables:
        _write_table(lines, v, path + [str(k)])
    for k, items in arrays:
        for item in items:
            lines.append("")
            lines.append("[[" + ".".join(_key(p) for p in path + [str(k)]) + "]]")
            sub_scalars = {a: b for a, b in item.items() if not _is_table(b) and not _is_table_array(b)}
            for a, b in sub_scalars.items():
                if b is not None:
                    lines.append(f"{_key(str(a))} = {_value(b)}")
            for a, b in item.items():
                if _is_table(b):
                    _write_table(lines, b, path + [str(k), str(a)])
