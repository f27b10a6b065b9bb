"""A cell: one grid point of one experiment at one repetition, with its seed.

A cell is pure data (picklable, JSON-friendly) and running it is a pure function of it:
``harness.runner.execute.run_cell(cell) -> row``. Identity:

- ``point_id``: everything that determines the results of a grid point: the experiment block,
  its experiment, the grid coordinates, the root seed, the resolved parameters and components,
  the components' versions and, when the block keys its seeds on other values than every axis
  (``seed_by``), those keys (one summary line each);
- ``cell_id``: ``point_id`` plus the repetition (one result row each; resume skips finished ids).

So a row whose cell id matches was computed from the same inputs: an edited seed, grid value,
parameter or an upgraded plugin gives other ids, never a mix. The identity does not depend on
how the cell came about (a grid or a threshold search, :mod:`harness.runner.search`): the
coordinates' numbers are normalised first (:func:`harness.plugin.seeds.same_number`: a grid's
``2`` and a search's ``2.0`` are one id and one seed; ``coords`` keep them as written). The seed
(its spawn key, :mod:`harness.plugin.seeds`) is keyed on the seed coordinates and repetition
only, so it stays what it was in earlier versions of the harness.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.plugin.seeds import canonical, cell_spawn_key, same_number


@dataclass(frozen=True)
class Cell:
    experiment_id: str
    """The ``id`` of the experiment block in the benchmark file."""
    experiment: str
    """The experiment component name (``ntk_spectrum``)."""
    params: dict[str, Any]
    """The experiment's own parameters, resolved (defaults filled, grid values substituted)."""
    components: dict[str, dict[str, Any]]
    """Slot -> ``{"name": component name, "params": resolved parameters}``."""
    coords: dict[str, Any]
    """Grid coordinates of this cell: every axis and derived value, by key path."""
    repetition: int
    root_seed: int
    seed_coords: dict[str, Any] = field(default_factory=dict)
    """The subset of ``coords`` the seed is keyed on (all axes unless ``seed_by`` says)."""
    skip: str | None = field(default=None, compare=False)
    """Why the cell is not run (:class:`harness.plugin.experiment.Skip` from the experiment's
    ``check``): its row is ``skipped`` with this reason. Not part of the cell's identity."""
    versions: dict[str, str] = field(default_factory=dict)
    """Slot (and ``"experiment"``) -> the version of the component used (:meth:`Registry.version_of`)."""
    seed_by: tuple[str, ...] | None = None
    """The block's ``seed_by`` when it differs from the default (every axis): part of the
    identity, so that two cells at the same coordinates with other seeds have other ids."""
    run_dir: str | None = field(default=None, compare=False)
    """The run directory the cell runs for (set by the runner; not part of its identity):
    :attr:`harness.plugin.context.CellContext.run_dir`."""

    def identity(self) -> list[Any]:
        """What determines this cell's results, except the repetition (hashed into the ids)."""
        base = [self.experiment_id, self.experiment, same_number(self.coords), self.root_seed, self.params,
                self.components, self.versions]
        return base + [{"seed_by": list(self.seed_by)}] if self.seed_by is not None else base

    @functools.cached_property
    def point_id(self) -> str:
        return _digest(canonical(self.identity()))

    @functools.cached_property
    def cell_id(self) -> str:
        return _digest(canonical(self.identity() + [self.repetition]))

    @property
    def spawn_key(self) -> tuple[int, int]:
        return cell_spawn_key(self.seed_coords, self.repetition)

    def seed_sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.root_seed, spawn_key=self.spawn_key)

    def describe(self) -> dict[str, Any]:
        """The identifying part of a result row."""
        return {
            "cell_id": self.cell_id,
            "point_id": self.point_id,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment,
            "coords": self.coords,
            "repetition": self.repetition,
            "params": self.params,
            "components": self.components,
            "seed": {"root": self.root_seed, "spawn_key": list(self.spawn_key)},
            "versions": dict(self.versions),
        }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
