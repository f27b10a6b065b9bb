"""Seeds: one root seed per benchmark, one child SeedSequence per cell, keyed by coordinates.

A cell's seed is ``SeedSequence(root_seed, spawn_key=(key(coords), repetition))`` where
``key(coords)`` is a stable 32-bit hash of the cell's seed coordinates (canonical JSON). Adding a
value to a grid axis therefore leaves every other cell's seed unchanged, and two experiments
evaluated at the same coordinates and repetition get the same seed (paired comparisons).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import numpy as np


def _hash32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def canonical(obj: Any) -> str:
    """Canonical JSON text of ``obj`` (sorted keys, no spaces), used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def same_number(value: Any) -> Any:
    """``value`` with every float that holds an integer (below 2**53 in size) as that int, in
    lists, tuples and tables too: ``2.0`` and ``2`` are one coordinate, one identity and one
    seed, and an int stays the int it was. Booleans and other values are unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2.0 ** 53:
        return int(value)
    if isinstance(value, (list, tuple)):
        return type(value)(same_number(v) for v in value)
    if isinstance(value, dict):
        return {k: same_number(v) for k, v in value.items()}
    return value


def stream_key(name: str) -> int:
    """The spawn-key word of a named random stream ("data", "init", ...)."""
    return _hash32("stream:" + name)


def cell_spawn_key(coords: Mapping[str, Any], repetition: int) -> tuple[int, int]:
    """The spawn key of the cell at seed coordinates ``coords`` (numbers normalised,
    :func:`same_number`: ``2`` and ``2.0`` are one seed) and ``repetition``."""
    return (_hash32("coords:" + canonical(same_number(dict(coords)))), int(repetition))


def cell_seed(root_seed: int, coords: Mapping[str, Any], repetition: int) -> np.random.SeedSequence:
    """The seed of the cell at ``coords`` (the seed axes only) and ``repetition``."""
    return np.random.SeedSequence(int(root_seed), spawn_key=cell_spawn_key(coords, repetition))
