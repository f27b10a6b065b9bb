"""``--set KEY=VALUE`` overrides: parsing a value, applying it to the raw TOML table, and naming
the override an error comes from.
"""
from __future__ import annotations

import tomllib
from typing import Any, Sequence

from ..errors import SpecError, suggest


def _override_of(key: str | None, raw: dict, overrides: Sequence[str]) -> str | None:
    """The ``--set`` key path (the last one) that set ``key`` or a value inside it, if any."""
    if not key:
        return None
    blamed = None
    blocks = raw.get("experiments") if isinstance(raw.get("experiments"), list) else []
    for item in overrides:
        path = item.partition("=")[0].strip()
        parts = path.split(".")
        names = [path]
        if parts[0] == "experiments" and len(parts) >= 3:
            rest = parts[2:]
            if rest[0] in ("grid", "derived") and len(rest) > 1:
                rest = [rest[0], ".".join(rest[1:])]
            tail = ".".join(rest)
            for index, block in enumerate(blocks):
                if not isinstance(block, dict):
                    continue
                ref = block.get("id", block.get("experiment"))
                if ref == parts[1] or (parts[1].isdigit() and int(parts[1]) == index):
                    names += [f"experiments.{ref}.{tail}", f"experiments[{index}].{tail}"]
                    break
        if any(key == n or key.startswith((n + ".", n + "[")) for n in names):
            blamed = path
    return blamed


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
