"""The experiment kind: one kind of study, turning a cell (parameters + seed) into a result, and
what its ``run`` may return or raise (:class:`Skip`, :class:`SkipCell`, the reserved result keys)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from harness.plugin.components import Component

if TYPE_CHECKING:  # annotations only
    from harness.plugin.context import CellContext, FigureContext



class Experiment(Component):
    """One kind of study: turns a cell (parameters + seed) into a result.

    ``slots`` maps each plugin slot the experiment uses to ``(kind, default component name)``,
    e.g. ``{"activation": ("activation", "sigmoid")}``; the benchmark file picks a component per
    slot. ``run(cell)`` gets a :class:`CellContext` and returns a flat dict: scalar values
    (float, int, bool, str or None) become metrics, lists of numbers become curves. A NaN or
    infinite metric marks the row ``diverged``. Two keys are reserved:

    - ``"timings"``: ``{name: seconds}`` of anything measured with a clock (they go to the row's
      ``timings``, never to its metrics, so that the same cell gives the same metrics); keep
      compilation and warm-up out of them (:func:`warm_up` helps);
    - ``"resolved"``: ``{key path: value}`` of values decided only when the cell runs or
      computed from expressions (``"optimizer.lr"``, ``"architecture.widths"``): a
      ``slot.param`` key replaces that parameter in the row's ``components`` (the row shows
      what was used), and every entry is kept in the row's ``resolved``.

    :meth:`check` refuses impossible points when the file is loaded; raise :class:`SkipCell` in
    ``run`` to record a cell as ``skipped`` with a reason.
    """

    kind = "experiment"
    slots: ClassVar[Mapping[str, tuple[str, str | None]]] = {}
    example: ClassVar[Mapping[str, Any]] = {}
    """A small, fast cell for the conformance suite: ``{"params": {...}, "components":
    {slot: {"name": .., "params": {...}}}}`` (missing parts take their defaults)."""

    metrics: ClassVar[Sequence[str] | None] = None
    """The names of the metrics ``run`` returns (its scalar results, nested dicts flattened with
    dots), a superset: what a benchmark file may name before anything runs (a threshold search's
    ``metric``); a name ending in ``.*`` stands for every metric under that prefix
    (``optimizer.*``, :func:`declares_metric`). ``None``: not declared, nothing is checked.
    :meth:`metric_names` may make it depend on the cell's parameters; the conformance suite
    checks the example cell against it."""

    context: "CellContext | None" = None
    """The cell this instance runs or is planned for (set by :meth:`bind`): ``estimate`` may
    look at the cell's configured components (``self.context.architecture``) through it."""

    def bind(self, cell: "CellContext") -> None:
        self.context = cell

    def run(self, cell: "CellContext") -> dict:
        raise NotImplementedError

    @classmethod
    def batch_key(cls, params: Mapping[str, Any], components: Mapping[str, Mapping[str, Any]]):
        """Optional batching (:func:`harness.runner.execute.run_cells`): a hashable key, equal for
        cells of one experiment block that :meth:`run_batch` can run together (the same shapes),
        or ``None`` (the default) for a cell that runs alone. ``params`` are the cell's resolved
        parameters, ``components`` slot -> ``{"name", "params"}``; keep it cheap."""
        return None

    @classmethod
    def run_batch(cls, members: Sequence[tuple["Experiment", "CellContext"]]) -> list:
        """Run several cells at once (cells whose :meth:`batch_key` agree): ``members`` holds
        ``(experiment configured with the cell's parameters, its CellContext)``; return one
        entry per member, in order: what ``run`` returns for it alone (the same result), or an
        exception for a member that failed (the runner then runs that cell alone). The default
        calls ``run`` on each."""
        out: list = []
        for experiment, context in members:
            try:
                out.append(experiment.run(context))
            except Exception as exc:  # noqa: BLE001 - the runner reruns this member alone
                out.append(exc)
        return out

    @classmethod
    def metric_names(cls, params: Mapping[str, Any], components: Mapping[str, Mapping[str, Any]]):
        """The names of the metrics a cell with these resolved ``params`` and ``components``
        (slot -> ``{"name", "params"}``) returns, or ``None`` when not declared; by default
        :attr:`metrics`."""
        return cls.metrics

    def check(self, params: Mapping[str, Any], components: Mapping[str, "Component"]):
        """Cross-parameter constraints of one resolved grid point, checked when the benchmark
        file is loaded (for every grid point, and for every cell a threshold search makes), so
        that a cell that cannot run is refused before any cell runs.

        ``self`` is configured with the point's parameters (also given as ``params``);
        ``components`` maps each slot to its configured component. Return ``None`` when the
        point can run, a problem (a string, or ``(key, problem)`` naming the parameter at fault,
        ``"kernels"`` or ``"architecture.widths"``), or :class:`Skip` to record the point's cells
        as ``skipped`` with a reason instead of running them. Raising
        :class:`~harness.errors.SpecError` also works. Keep it cheap: no data, no training.
        """
        return None

    def estimate(self, cell_params: Mapping[str, Any], components: Mapping[str, Mapping[str, Any]]) -> dict:
        """Rough cost of one cell for ``--dry-run``: ``{"memory_bytes": .., "seconds": ..}``.

        ``cell_params`` are the experiment's resolved parameters, ``components`` maps each slot
        to ``{"name": .., "params": ..}``. Unknown costs are simply left out. Optional:
        ``setup_key`` and ``setup_seconds``, a cost a worker process pays once for all cells
        with the same key (compiling kernels, an in-process cache; with ``"setup_scope":
        "seed"`` only cells with the same seed share it). Seconds should come from rates
        measured on the machine (:func:`harness.plugin.calibration.rates`, :mod:`harness.plugin.costs`)
        for cells running with :func:`harness.plugin.calibration.threads` threads each; with
        ``"stacked": True`` they are one thread's seconds of a cell that, in a group
        (:meth:`batch_key`), is one of several trained on parallel threads: the plan divides
        them by :func:`harness.plugin.calibration.parallel_speedup` of ``min(threads, group size)``.
        """
        return {}

    @classmethod
    def stopping(cls, metrics: Mapping[str, Any]) -> tuple[bool, float] | None:
        """How one training run ended, from its row's ``metrics``: ``(stopped early, epoch it
        stopped at)``, where *early* means an early-stopping rule ended it (not the epoch
        budget, a loss tolerance or divergence). A threshold search reports, for each threshold,
        the fraction of the runs at its bracket that stopped early and their median stop epoch
        (``thresholds.csv``: ``early_stop_fraction``, ``median_stop_epoch``), so that a reader
        sees whether the aggregated value comes from converged runs or from early-stopped ones.
        ``None`` (the default): the experiment does not train, or the row does not say."""
        return None

    def figures(self, rows: Sequence[Mapping[str, Any]], context: "FigureContext") -> dict:
        """The experiment's figures from its result rows: ``{file stem: matplotlib Figure}``.

        ``rows`` are this experiment block's rows as written to rows.jsonl (every status);
        ``context`` says what was run, for titles and captions. The harness saves each figure
        as PNG and SVG in the run's ``figures/`` folder.
        """
        return {}

    def tables(self, rows: Sequence[Mapping[str, Any]], context: "FigureContext") -> list:
        """What the block's rows answer: a list of :class:`harness.plugin.tables.Table`, the
        thresholds, fits and ratios with their intervals, each claim in the notes with the number
        that supports it. ``report.html`` and the results pages (``harness publish``) show them
        first, then the figures. ``rows`` and ``context`` as for :meth:`figures`; a threshold
        search's table is added by the harness (``context.thresholds``)."""
        return []


def declares_metric(names, metric: str) -> bool:
    """Whether the declared metric ``names`` (:attr:`Experiment.metrics`) cover ``metric``: by
    name, or by a ``prefix.*`` entry."""
    return metric in names or any(n.endswith(".*") and metric.startswith(n[:-1]) for n in names)


@dataclass(frozen=True)
class Skip:
    """Returned by :meth:`Experiment.check`: the point's cells are recorded as ``skipped`` with
    ``reason`` instead of running."""

    reason: str


class SkipCell(Exception):
    """Raised by :meth:`Experiment.run`: the cell is recorded as ``skipped`` with this reason."""


_WARMED: set = set()


WARM_UP_LISTENERS: list = []
"""Callables told the seconds of each :func:`warm_up` (:mod:`harness.runner.executors`'s workers)."""


def warm_up(key: Any, fn) -> float:
    """Call ``fn()`` once per process for ``key`` (compiling kernels, filling caches) and return
    the seconds it took (0.0 when ``key`` was already warmed up): run it before timing a cell's
    work so that one-time costs stay out of the cell's ``timings``."""
    import time

    if key in _WARMED:
        return 0.0
    t0 = time.perf_counter()
    fn()
    _WARMED.add(key)
    seconds = time.perf_counter() - t0
    for listener in WARM_UP_LISTENERS:  # a worker's timeout clock leaves this time out
        try:
            listener(seconds)
        except Exception:
            pass
    return seconds


RESERVED_KEYS = ("timings", "resolved")
"""Keys of an experiment's result that are not metrics (see the module docstring)."""


def is_legacy_timing(name: str) -> bool:
    """A metric name that older harness versions used for a wall-clock time (``ntk_seconds``,
    ``solver_seconds_full``, ``train_seconds``), before rows had ``timings``."""
    return "seconds" in name.split("_")
