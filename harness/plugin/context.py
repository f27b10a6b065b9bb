"""What an experiment's cell and figures see: :class:`CellContext` (the configured components of
one cell, its seed streams and run directory) and :class:`FigureContext` (a block's grid and
settings when its figures are drawn)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from harness.plugin.components import Component
from harness.plugin.registry import Registry


@dataclass
class CellContext:
    """What an experiment's ``run`` receives for one cell.

    ``components`` holds one configured component per slot (also reachable as attributes,
    ``cell.activation``); ``seed`` is the cell's :class:`numpy.random.SeedSequence`.
    ``rng(stream)`` gives an independent generator per named stream ("data", "init", ...), so
    that two experiments with the same seed draw the same data whatever else they draw.
    """

    components: dict[str, Component]
    seed: np.random.SeedSequence
    coords: dict[str, Any] = field(default_factory=dict)
    registry: Registry | None = field(default=None, repr=False)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Components made by :meth:`create`, ``{label: {"name", "params"}}``: the row records
    them in its ``components`` next to the slots'."""
    cell_id: str | None = None
    """The cell's id (the row's ``cell_id``)."""
    run_dir: str | None = None
    """The run directory the cell's row goes to (``None`` outside a run, e.g. the conformance
    suite): where an experiment may write files next to the rows, see :meth:`array_path`."""

    def array_path(self, folder: str = "arrays", suffix: str = ".npz"):
        """``<run_dir>/<folder>/<cell_id><suffix>`` (the folder created), or ``None`` when the
        cell runs outside a run directory."""
        if not self.run_dir or not self.cell_id:
            return None
        from pathlib import Path

        path = Path(self.run_dir) / folder
        path.mkdir(parents=True, exist_ok=True)
        return path / f"{self.cell_id}{suffix}"

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None,
               label: str | None = None) -> Component:
        """Create a component by name (one the experiment or another component builds itself,
        such as the capacity study's architecture or the teacher network's activation) and
        record it under ``label`` (default ``kind``) in the row's ``components``."""
        if self.registry is None:
            raise RuntimeError("this CellContext has no registry to create components with")
        component = self.registry.create(kind, name, params)
        component.bind(self)
        self.created[label or kind] = {"name": name, "params": dict(component.config)}
        return component

    def rng(self, stream: str = "default") -> np.random.Generator:
        from harness.plugin.seeds import stream_key

        child = np.random.SeedSequence(self.seed.entropy,
                                       spawn_key=tuple(self.seed.spawn_key) + (stream_key(stream),))
        return np.random.default_rng(child)

    def __getattr__(self, name: str) -> Component:
        components = self.__dict__.get("components", {})
        if name in components:
            return components[name]
        raise AttributeError(name)


@dataclass
class FigureContext:
    """What a figure must state: the benchmark, the experiment block, its grid and repetitions."""

    benchmark: str
    experiment_id: str
    experiment: str
    grid: dict[str, Any]
    repetitions: int
    search: dict[str, Any] | None = None
    """The block's ``[experiments.search]`` table, if it searches an axis (:mod:`harness.runner.search`)."""
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    """With a search: one line per grid point and level (``level``, ``threshold``, ``lower``,
    ``upper``, ``status``, ...)."""

    def caption(self, bands: str = "") -> str:
        """One line naming the experiment, grid and repetitions (and what the bands are)."""
        axes = ", ".join(f"{k}: {_fmt_axis(v)}" for k, v in self.grid.items()) or "no grid"
        if self.search:
            s = self.search
            condition = "below" if "below" in s else "above"
            levels = s[condition] if isinstance(s[condition], list) else [s[condition]]
            cond = f"{condition} {', '.join(f'{v:g}' for v in levels)}"
            axes += (f"; {s['axis']} searched in [{s['lower']:g}, {s['upper']:g}] for mean "
                     f"{s['transform']}({s['metric']}) {cond}")
        text = (f"{self.benchmark} / {self.experiment_id} ({self.experiment}); grid {axes}; "
                f"{self.repetitions} repetition(s)")
        return text + (f"; {bands}" if bands else "")


def _fmt_axis(values: Any) -> str:
    if isinstance(values, list) and len(values) > 4:
        return f"{len(values)} values {values[0]}..{values[-1]}"
    return str(values)
