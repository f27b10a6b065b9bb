"""``--set KEY=VALUE`` overrides: parsing a value, applying it to the raw TOML table, and naming
the override an error comes from.
"""
from __future__ import annotations

import tomllib
from typing import Any, Mapping, Sequence

from ..errors import SpecError, suggest


def _override_of(key: str | None, raw: dict, overrides: Sequence[str],
                 created: Mapping[str, str] | None = None) -> str | None:
    """The ``--set`` key path (the last one) that an error at ``key`` comes from, if any: the
    override set ``key``, a value inside it or a key inside a value it set (``--set
    activation.name.x=3`` and the error at ``activation.name``), or ``key`` lies in a table the
    override created (``created``: override -> that table's key path, from :func:`apply_override`)."""
    if not key:
        return None
    blamed = None
    for item in overrides:
        path = item.partition("=")[0].strip()
        names = _key_names(path, raw)
        table = (created or {}).get(item)
        inside = _key_names(table, raw) if table else []
        if (any(key == n or key.startswith((n + ".", n + "[")) or n.startswith(key + ".") for n in names)
                or any(key == n or key.startswith((n + ".", n + "[")) for n in inside)):
            blamed = path
    return blamed


def _key_names(path: str, raw: dict) -> list[str]:
    """The ways an error's key can name the key path ``path`` of an override: as written, and
    with its experiment block by id and by position (``experiments[0]``)."""
    parts = [p.strip() for p in path.split(".")]
    names = [path]
    blocks = raw.get("experiments") if isinstance(raw.get("experiments"), list) else []
    found = _match_block(blocks, parts[1:]) if parts[0] == "experiments" else None
    if found is not None:
        index, used = found
        rest = parts[1 + used:]
        if rest and rest[0] in ("grid", "derived") and len(rest) > 1:
            rest = [rest[0], ".".join(rest[1:])]
        tail = "." + ".".join(rest) if rest else ""
        ref = blocks[index].get("id", blocks[index].get("experiment"))
        names += [f"experiments.{ref}{tail}", f"experiments[{index}]{tail}"]
    return names


def parse_override_value(text: str) -> Any:
    """A ``--set`` value: any TOML value (``3``, ``[1, 2]``, ``"x"``, ``{ a = 1 }``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except ValueError as exc:  # an integer of more digits than Python converts
        raise SpecError("--set", None, text, huge_integer_problem(exc)) from None


def is_toml_value(text: str) -> bool:
    """Whether ``text`` is a TOML value (else a ``--set`` reads it as a string)."""
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return False
    except ValueError:
        return True
    return True


def huge_integer_problem(exc: ValueError) -> str:
    """The problem of an integer literal of more digits than Python converts (``exc`` from
    :mod:`tomllib`)."""
    import sys

    return (f"an integer literal too long to read ({str(exc).split(':')[-1].split(';')[0].strip()}); "
            f"integers have at most {sys.get_int_max_str_digits()} digits")


def apply_override(raw: dict, item: str, source: str) -> str | None:
    """Apply one ``key.path=value`` to the raw TOML data; returns the key path of the first
    table it had to create (``experiments.m.search``), or ``None``.

    Experiments are addressed by id (``experiments.fig1.N=2000``; an id with dots as written,
    ``experiments.a.b.N``), by experiment name when the block has no id, or by position
    (``experiments.0.N``). After ``grid.`` or ``derived.`` the rest of the path is one key
    (``experiments.fig1.grid.architecture.q=[2, 4]``, ``experiments.fig1.grid.N,d=[[1, 2]]``).
    """
    if not isinstance(item, str) or "=" not in item:
        raise SpecError("--set", str(item), ..., "expected key.path=value")
    path, _, text = item.partition("=")
    path = path.strip()
    try:
        value = parse_override_value(text.strip())
    except SpecError as exc:
        raise SpecError("--set", path, ..., exc.problem) from None
    parts = [p.strip() for p in path.split(".")]
    if not path or any(not p for p in parts):
        raise SpecError("--set", path, value, "empty key in key path")
    if parts[0] not in ("benchmark", "experiments"):
        raise SpecError("--set", path, value, f"unknown top-level key {parts[0]!r}"
                        + suggest(parts[0], ["benchmark", "experiments"]) + "; a key path starts with benchmark. "
                        "or experiments.<id>. (e.g. experiments.<id>." + path + ")")
    created = None
    block = None
    node: Any = raw
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        if node is raw and part == "experiments":
            blocks = raw.get("experiments")
            if not isinstance(blocks, list):
                raise SpecError("--set", path, value, f"{source} has no [[experiments]]")
            node, used = _find_block(blocks, parts[i + 1:], path, value, source)
            block = node
            i += 1 + used
            continue
        if isinstance(node, dict) and part in ("grid", "derived") and node is not raw and i + 1 < len(parts):
            table = node.setdefault(part, {})
            if not isinstance(table, dict):
                raise SpecError("--set", path, value, f"{part} is not a table")
            key = ".".join(parts[i + 1:])
            if "," in key:  # tied axes: the same axis however its names are spaced
                key = next((k for k in table if _tied(k) == _tied(key)), key)
            table[key] = value
            return created
        nxt = node.get(part) if isinstance(node, dict) else None
        if nxt is None:
            nxt = {}
            node[part] = nxt
            if created is None:
                created = ".".join(parts[: i + 1])
        elif isinstance(nxt, str) and node is block:  # a slot given as a bare name
            nxt = {"name": nxt}
            node[part] = nxt
        elif not isinstance(nxt, dict):
            raise SpecError("--set", path, value, f"{'.'.join(parts[: i + 1])} is not a table (it is "
                            f"{nxt!r}): set it, not a key inside it")
        node = nxt
        i += 1
    if i >= len(parts):
        raise SpecError("--set", path, value, "the key path names an experiment block, not a key in it")
    node[parts[-1]] = value
    return created


def _tied(label: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in label.split(","))


def _find_block(blocks: list, rest: list[str], path: str, value: Any, source: str) -> tuple[dict, int]:
    """The block the key path ``rest`` (after ``experiments.``) starts with, and how many of its
    parts name it (:func:`_match_block`)."""
    found = _match_block(blocks, rest)
    if found is not None:
        return blocks[found[0]], found[1]
    ref = rest[0]
    ids = [str(b.get("id", b.get("experiment"))) for b in blocks if isinstance(b, dict)]
    raise SpecError("--set", path, value,
                    f"no experiment block {ref!r} in {source}{suggest(ref, ids)}; blocks: {', '.join(ids)}")


def _match_block(blocks: list, rest: list[str]) -> tuple[int, int] | None:
    """``(index, parts used)`` of the block that the key path parts ``rest`` start with: by id
    (an id with dots takes as many parts as it has; the longest id that fits), by experiment
    name when the block has no id, or by position; ``None`` when none does."""
    for used in range(len(rest), 0, -1):
        ref = ".".join(rest[:used])
        for index, block in enumerate(blocks):
            if isinstance(block, dict) and block.get("id", block.get("experiment")) == ref:
                return index, used
    if rest and rest[0].isdigit() and int(rest[0]) < len(blocks) and isinstance(blocks[int(rest[0])], dict):
        return int(rest[0]), 1
    return None
