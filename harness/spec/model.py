"""The data model of a benchmark file: :class:`Spec` (the benchmark), :class:`ExperimentSpec`
(one ``[[experiments]]`` block, its resolved grid points and cells) and :class:`Axis`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.plugin.experiment import Experiment
from harness.plugin.params import Param
from harness.plugin.seeds import canonical
from harness.spec.cells import Cell
from harness.spec.search import Search
from harness.spec.tomlwriter import dumps

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


_BENCHMARK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


MAX_GRID_POINTS = 100_000
"""Grid points one experiment block may have (axes multiplied; a searched block's grid too)."""


MAX_ID_LENGTH = 64
"""Characters of an experiment block's id (it starts the names of the block's figure files)."""


MAX_CELLS = 1_000_000
"""Cells a benchmark file may have in all (grid points times repetitions)."""


_EXPERIMENT_RESERVED = ("id", "experiment", "repetitions", "seed_by", "grid", "derived", "search",
                        "description")


BENCHMARK_PARAMS = (
    Param("name", str, help="benchmark name; run directories go to results/<name>/",
          check=lambda v: None if _BENCHMARK_NAME.match(v) else
          "use 1 to 100 letters, digits, '_', '-' and '.', starting with a letter or digit"),
    Param("seed", int, min=0, help="root seed of every cell's random streams"),
    Param("repetitions", int, 1, min=1, max=MAX_CELLS, help="repetitions of every grid point"),
    Param("description", str, "", help="free text"),
)


@dataclass
class Axis:
    """One grid axis: ``keys`` (one, or several when tied) and the list of values (tuples when tied)."""

    label: str
    keys: tuple[str, ...]
    values: list[Any]


@dataclass
class ExperimentSpec:
    """One ``[[experiments]]`` block after validation."""

    id: str
    experiment: str
    component: type[Experiment]
    repetitions: int
    params: dict[str, Any]
    slots: dict[str, dict[str, Any]]
    axes: list[Axis]
    derived: dict[str, str]
    seed_by: list[str] | None
    description: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)
    """Per grid point: ``{"coords", "params", "components"}`` (resolved). Empty for a searched
    block, whose cells are made as its search goes (:mod:`harness.runner.search`)."""
    search: Search | None = None
    """The ``[experiments.search]`` table, if the block searches an axis."""
    search_points: list[dict[str, Any]] = field(default_factory=list)
    """Per grid point of a searched block: ``{"base", "coords", "start"}``: the grid values, the
    coordinates without the searched axis, and the resolved first value."""
    resolve: Any = field(default=None, repr=False, compare=False)
    """``resolve(coords) -> point``: derived values and parameters at any coordinates."""
    _cells: dict = field(default_factory=dict, repr=False, compare=False)
    registry: Any = field(default=None, repr=False, compare=False)
    """The registry the block was validated with (for :meth:`versions`)."""

    def versions(self, components: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """``"experiment"`` and each slot -> its component's version (part of a cell's identity,
        :meth:`harness.plugin.registry.Registry.version_of`); empty without a registry."""
        if self.registry is None:
            return {}
        out = {"experiment": self.registry.version_of("experiment", self.experiment)}
        slots = dict(getattr(self.component, "slots", {}) or {})
        for slot, chosen in components.items():
            kind = slots.get(slot, (None,))[0]
            try:
                out[slot] = self.registry.version_of(kind, chosen["name"])
            except Exception:  # an unknown slot or component: run_cell reports it
                continue
        return out

    @property
    def grid(self) -> dict[str, list[Any]]:
        """Axis label -> values (tied axes as lists of lists), as written in the file."""
        return {a.label: [list(v) if len(a.keys) > 1 else v for v in a.values] for a in self.axes}

    def per_point_keys(self) -> set[str]:
        """The key paths set per point: the grid's axes, the derived values and the searched axis."""
        keys = {k for a in self.axes for k in a.keys} | set(self.derived)
        return keys | {self.search.axis} if self.search is not None else keys

    def seed_axes(self) -> list[str]:
        if self.seed_by is not None:
            return list(self.seed_by)
        return self._default_seed_axes()

    def _default_seed_axes(self) -> list[str]:
        keys = [k for a in self.axes for k in a.keys]
        return keys + [self.search.axis] if self.search is not None else keys

    def seed_identity(self) -> tuple[str, ...] | None:
        """``seed_by`` when it keys the seeds on other values than the default (every axis and
        the searched axis), else ``None``: part of a cell's identity (:attr:`Cell.seed_by`)."""
        if self.seed_by is None or sorted(self.seed_by) == sorted(self._default_seed_axes()):
            return None
        return tuple(self.seed_by)

    def cells_at(self, coords: Mapping[str, Any], root_seed: int) -> list[Cell]:
        """Every repetition's cell at grid coordinates ``coords`` (derived values are computed)."""
        key = canonical([root_seed, dict(coords)])
        cells = self._cells.get(key)
        if cells is None:
            point = self.resolve(dict(coords))
            full = point["coords"]
            seed_coords = {k: full[k] for k in self.seed_axes()}
            cells = [Cell(experiment_id=self.id, experiment=self.experiment, params=point["params"],
                          components=point["components"], coords=full, repetition=rep,
                          root_seed=root_seed, seed_coords=seed_coords, skip=point.get("skip"),
                          seed_by=self.seed_identity(),
                          versions=self.versions(point["components"]))
                     for rep in range(self.repetitions)]
            self._cells[key] = cells
        return cells

    def point_searches(self, root_seed: int) -> list:
        """One :class:`harness.runner.search.PointSearch` per grid point of a searched block."""
        from harness.spec.search import PointSearch

        out = []
        for index, sp in enumerate(self.search_points):
            base = sp["base"]
            out.append(PointSearch(
                experiment_id=self.id, search=self.search, coords=dict(sp["coords"]), start=sp["start"],
                make_cells=lambda x, base=base: self.cells_at({**base, self.search.axis: x}, root_seed),  # type: ignore[misc]
                index=index))
        return out


@dataclass
class Spec:
    """A validated benchmark file."""

    source: str
    name: str
    seed: int
    repetitions: int
    description: str
    experiments: list[ExperimentSpec]

    def cells(self) -> list[Cell]:
        """Every cell, repetition-major (all grid points of repetition 0 first), so that a
        partial run covers the whole grid."""
        out = []
        for exp in self.experiments:
            seed_axes = exp.seed_axes()
            versions = [exp.versions(point["components"]) for point in exp.points]
            for rep in range(exp.repetitions):
                for point, point_versions in zip(exp.points, versions):
                    coords = point["coords"]
                    out.append(Cell(versions=point_versions,
                        experiment_id=exp.id, experiment=exp.experiment, params=point["params"],
                        components=point["components"], coords=coords, repetition=rep,
                        root_seed=self.seed, seed_coords={k: coords[k] for k in seed_axes},
                        seed_by=exp.seed_identity(),
                        skip=point.get("skip")))
        return out

    def experiment(self, experiment_id: str) -> ExperimentSpec:
        for exp in self.experiments:
            if exp.id == experiment_id:
                return exp
        raise KeyError(experiment_id)

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in; loading it again gives the same cells."""
        experiments = []
        for exp in self.experiments:
            block: dict[str, Any] = {"id": exp.id, "experiment": exp.experiment,
                                     "repetitions": exp.repetitions}
            if exp.description:
                block["description"] = exp.description
            if exp.seed_by is not None:
                block["seed_by"] = list(exp.seed_by)
            per_point = exp.per_point_keys()  # a default here would set them twice
            block.update({k: v for k, v in exp.params.items() if k not in per_point})
            for slot, spec in exp.slots.items():
                if slot not in per_point:
                    block[slot] = {"name": spec["name"], **{k: v for k, v in spec["params"].items()
                                                             if f"{slot}.{k}" not in per_point}}
            if exp.axes:
                block["grid"] = exp.grid
            if exp.derived:
                block["derived"] = dict(exp.derived)
            if exp.search is not None:
                block["search"] = exp.search.to_table()
            experiments.append(block)
        bench = {"name": self.name, "seed": self.seed, "repetitions": self.repetitions}
        if self.description:
            bench["description"] = self.description
        return {"benchmark": bench, "experiments": experiments}

    def to_toml(self) -> str:
        return dumps(self.resolved())
