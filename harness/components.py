"""The plugin component kinds and the registry that holds them.

A component is a class: its class attributes ``name``, ``help`` and ``params`` declare it, and an
instance is the component configured with validated parameters (``Sigmoid()``,
``FullyConnected(widths=["d", "d"])``). Each kind below is one interface; the conformance suite
(``harness.conformance``) runs every registered component through the interface of its kind.

Shapes used throughout: ``X`` is ``(N, d)``; a network's weights are a list
``[W_1, ..., W_L]`` with ``W_l`` of shape ``(n_l, n_{l-1})``, ``n_0 = d`` and ``n_L = 1``, so that
``G_l = F_{l-1} W_l^T`` and the output is ``F_{L-1} W_L^T`` of shape ``(N,)`` after squeezing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from .errors import PluginError, suggest
from .params import Param, resolve_params


class Component:
    """Base of every plugin component.

    Subclasses set ``name`` (unique within the kind), ``help`` (one line) and ``params``.
    ``Component(**params)`` validates the parameters (raising :class:`~harness.errors.SpecError`
    on a bad one), fills defaults, stores them in ``self.config`` and as attributes.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    params: ClassVar[Sequence[Param]] = ()

    def __init__(self, **params: Any) -> None:
        config = resolve_params(self.params, params, source=None, prefix=f"{self.kind}.{self.name}.")
        self.config = config
        for key, value in config.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def describe(cls) -> dict:
        return {"kind": cls.kind, "name": cls.name, "help": cls.help,
                "params": [p.describe() for p in cls.params]}

    @classmethod
    def check_available(cls) -> None:
        """Raise a :class:`~harness.errors.PluginError` saying how to install what this component
        needs when an optional dependency is missing (checked before a run starts; cheap, it
        should not import the dependency). The default: nothing is missing."""


class Activation(Component):
    """An element-wise activation phi with its first and second derivatives.

    ``phi``, ``dphi`` and ``d2phi`` take and return NumPy arrays of any shape (vectorised, no
    Python loops). ``jit_code`` optionally names a built-in Numba element-wise kernel
    (``"sigmoid"``, ``"relu"``, ``"tanh"``, ``"quadratic"``, ``"identity"``) that the fused engine
    paths may use instead of the NumPy functions; ``None`` means "use phi/dphi".
    """

    kind = "activation"
    jit_code: ClassVar[str | None] = None

    def phi(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dphi(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def d2phi(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Initializer(Component):
    """Draws the weights of a network from its layer shapes.

    ``initialize(shapes, rng, dtype)`` returns a list of arrays, one per ``(n_l, n_{l-1})`` in
    ``shapes`` (the last one is the output layer), drawn from ``rng`` only.
    """

    kind = "initializer"
    example_shapes: ClassVar[Sequence[tuple[int, int]] | None] = None
    """Layer shapes the conformance suite draws with (``None``: a generic deep network); set it
    when the initializer accepts only particular shapes (a two-layer network, say)."""

    def initialize(self, shapes: Sequence[tuple[int, int]], rng: np.random.Generator,
                   dtype: Any = np.float64) -> list[np.ndarray]:
        raise NotImplementedError

    def expected_variances(self, shapes: Sequence[tuple[int, int]]) -> list[float | None]:
        """The entry variance each layer should have (``None`` where not a fixed number);
        the conformance suite checks drawn weights against it statistically."""
        return [None] * len(shapes)


class Architecture(Component):
    """A bias-free feed-forward network shape.

    ``layer_shapes(d)`` gives ``[(n_1, d), (n_2, n_1), ..., (1, n_{L-1})]``; ``trainable(d)``
    says which layers are trained (a frozen output layer for the two-layer network).
    """

    kind = "architecture"

    def layer_shapes(self, d: int) -> list[tuple[int, int]]:
        raise NotImplementedError

    def trainable(self, d: int) -> list[bool]:
        return [True] * len(self.layer_shapes(d))

    def param_count(self, d: int, trainable_only: bool = True) -> int:
        shapes = self.layer_shapes(d)
        mask = self.trainable(d) if trainable_only else [True] * len(shapes)
        return int(sum(a * b for (a, b), t in zip(shapes, mask) if t))

    def forward(self, weights: Sequence[np.ndarray], X: np.ndarray, activation: Activation) -> np.ndarray:
        """Network output, shape ``(N,)``."""
        from .engine.network import forward

        return forward(weights, X, activation).output


class Dataset(Component):
    """Draws a training set: ``sample(n, d, rng)`` returns ``X (n, d)`` and ``y (n,)``."""

    kind = "dataset"

    def sample(self, n: int, d: int, rng: np.random.Generator,
               dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class Loss(Component):
    """A per-sample loss l(f, y) averaged over samples.

    ``value(f, y)`` returns the mean loss (float); ``grad(f, y)`` returns d(mean loss)/df,
    shape ``(N,)`` (so it already carries the 1/N).
    """

    kind = "loss"
    curvature: ClassVar[float | None] = None
    """A bound on the per-sample ``d^2 l / df^2`` (so the mean loss's Hessian in ``f`` is at
    most ``curvature / N``); ``None`` for a loss that is not smooth."""

    def value(self, f: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, f: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Optimizer(Component):
    """Updates weights from gradients.

    ``prepare(problem)`` is called once before training with a :class:`TrainingProblem`
    and returns a dict recorded in the result row (for example the step-size rule and the
    step used); ``init_state(weights)`` returns the optimizer state; ``step(weights, grads,
    state)`` updates the trainable weights in place. ``batch_size`` is the number of samples
    per step (``None``: full batch). ``reference_step(weights, grads, state)`` is the update
    rule written plainly in NumPy, returning ``(new_weights, new_state)`` without touching its
    arguments; the conformance suite checks ``step`` against it.
    """

    kind = "optimizer"
    batch_size: int | None = None

    def reference_step(self, weights: Sequence[np.ndarray], grads: Sequence[np.ndarray | None],
                       state: Any) -> tuple[list[np.ndarray], Any]:
        raise NotImplementedError

    def prepare(self, problem: "TrainingProblem") -> dict:
        return {}

    def init_state(self, weights: Sequence[np.ndarray]) -> Any:
        return None

    def step(self, weights: list[np.ndarray], grads: Sequence[np.ndarray | None], state: Any) -> None:
        raise NotImplementedError


@dataclass
class TrainingProblem:
    """What an optimizer may look at before training (data and network at initialisation)."""

    X: np.ndarray
    y: np.ndarray
    weights: list[np.ndarray]
    activation: Activation
    trainable: list[bool]
    loss: Loss


class Backend(Component):
    """Where the numerical kernels run (the default is ``numba``, the CPU engine).

    ``ntk(weights, X, activation, layers=None, dtype)`` has the contract of
    :func:`harness.engine.ntk.ntk_gram`: the NTK Gram matrix ``sum_{l in layers} K_l`` (N, N) as
    a NumPy array of ``dtype`` (``layers``: 1-based, ``None`` for all).
    ``gradient_engine(shapes, activation, trainable, dtype, max_rows)`` returns the loss-and-
    gradient evaluator the training loop calls, with the interface of
    :class:`harness.engine.gradients.GradientEngine`: ``loss_and_grads(weights, X, y, loss)``
    returns a ``GradientResult`` (``loss`` float, ``output`` (N,), ``grads`` NumPy arrays shaped
    like the weights, ``None`` for frozen layers) and ``predict(weights, X)`` the output (N,).
    The default implementation is the CPU engine, so a backend that only accelerates the NTK
    still trains. ``loss_and_grads(...)`` evaluates once (a fresh evaluator per call).
    """

    kind = "backend"

    def ntk(self, weights, X, activation, layers=None, dtype=np.float64):
        raise NotImplementedError

    def ntk_kernels(self, weights, X, activation, groups: Mapping[str, Sequence[int] | None],
                    dtype=np.float64) -> dict:
        """Several kernels at once, ``{name: sum_{l in layers} K_l}`` for ``groups`` mapping a
        name to 1-based layers (``None``: all), as :func:`harness.engine.ntk.ntk_kernels`. The
        default calls :meth:`ntk` once per group; a backend may share work between groups."""
        return {name: self.ntk(weights, X, activation, layers, dtype) for name, layers in groups.items()}

    def gradient_engine(self, shapes: Sequence[tuple[int, int]], activation: "Activation",
                        trainable: Sequence[bool] | None = None, dtype: Any = np.float64,
                        max_rows: int | None = None):
        from .engine.gradients import GradientEngine

        return GradientEngine(shapes, activation, trainable, dtype=dtype, max_rows=max_rows)

    def loss_and_grads(self, weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray,
                       activation: "Activation", loss: "Loss", trainable: Sequence[bool] | None = None):
        """Mean loss and its gradient at ``weights`` on ``(X (N, d), y (N,))``: a
        ``GradientResult`` whose arrays belong to the caller."""
        engine = self.gradient_engine([np.shape(W) for W in weights], activation, trainable,
                                      dtype=np.asarray(X).dtype, max_rows=np.shape(X)[0])
        result = engine.loss_and_grads(weights, X, y, loss)
        result.output = np.array(result.output, copy=True)
        result.grads = [None if g is None else np.array(g, copy=True) for g in result.grads]
        return result


class Experiment(Component):
    """One kind of study: turns a cell (parameters + seed) into a result.

    ``slots`` maps each plugin slot the experiment uses to ``(kind, default component name)``,
    e.g. ``{"activation": ("activation", "sigmoid")}``; the benchmark file picks a component per
    slot. ``run(cell)`` gets a :class:`CellContext` and returns a flat dict: scalar values
    (float, int, bool, str or None) become metrics, lists of numbers become curves. A NaN or
    infinite metric marks the row ``diverged``.
    """

    kind = "experiment"
    slots: ClassVar[Mapping[str, tuple[str, str | None]]] = {}
    example: ClassVar[Mapping[str, Any]] = {}
    """A small, fast cell for the conformance suite: ``{"params": {...}, "components":
    {slot: {"name": .., "params": {...}}}}`` (missing parts take their defaults)."""

    def run(self, cell: "CellContext") -> dict:
        raise NotImplementedError

    def estimate(self, cell_params: Mapping[str, Any], components: Mapping[str, Mapping[str, Any]]) -> dict:
        """Rough cost of one cell for ``--dry-run``: ``{"memory_bytes": .., "seconds": ..}``.

        ``cell_params`` are the experiment's resolved parameters, ``components`` maps each slot
        to ``{"name": .., "params": ..}``. Unknown costs are simply left out. Optional:
        ``setup_key`` and ``setup_seconds``, a cost a worker process pays once for all cells
        with the same key (compiling kernels, an in-process cache; with ``"setup_scope":
        "seed"`` only cells with the same seed share it). Seconds should come from rates
        measured on the machine (:func:`harness.calibration.rates`, :mod:`harness.engine.costs`)
        for cells running with :func:`harness.calibration.threads` threads each.
        """
        return {}

    def figures(self, rows: Sequence[Mapping[str, Any]], context: "FigureContext") -> dict:
        """The experiment's figures from its result rows: ``{file stem: matplotlib Figure}``.

        ``rows`` are this experiment block's rows as written to rows.jsonl (every status);
        ``context`` says what was run, for titles and captions. The harness saves each figure
        as PNG and SVG in the run's ``figures/`` folder.
        """
        return {}


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

    def rng(self, stream: str = "default") -> np.random.Generator:
        from .seeds import stream_key

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
    """The block's ``[experiments.search]`` table, if it searches an axis (:mod:`harness.search`)."""
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    """With a search: one line per grid point (``threshold``, ``lower``, ``upper``, ``status``, ...)."""

    def caption(self, bands: str = "") -> str:
        """One line naming the experiment, grid and repetitions (and what the bands are)."""
        axes = ", ".join(f"{k}: {_fmt_axis(v)}" for k, v in self.grid.items()) or "no grid"
        if self.search:
            s = self.search
            cond = f"below {s['below']:g}" if "below" in s else f"above {s['above']:g}"
            axes += (f"; {s['axis']} searched in [{s['lower']:g}, {s['upper']:g}] for mean "
                     f"{s['transform']}({s['metric']}) {cond}")
        text = f"{self.benchmark} / {self.experiment_id} ({self.experiment}); grid {axes}; {self.repetitions} repetition(s)"
        return text + (f"; {bands}" if bands else "")


def _fmt_axis(values: Any) -> str:
    if isinstance(values, list) and len(values) > 4:
        return f"{len(values)} values {values[0]}..{values[-1]}"
    return str(values)


KINDS: dict[str, type[Component]] = {
    cls.kind: cls
    for cls in (Activation, Initializer, Architecture, Dataset, Loss, Optimizer, Experiment, Backend)
}
"""Every plugin kind, by name, with its interface class."""


@dataclass
class Entry:
    component: type[Component]
    provider: str


class Registry:
    """All registered components, by kind and name, with the distribution providing each."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.provider = "<unknown>"
        self.failures: list[tuple[str, str]] = []

    def add(self, component: type[Component]) -> None:
        """Register a component class (``registry.add(Sigmoid)``)."""
        if not (isinstance(component, type) and issubclass(component, Component)):
            raise TypeError(f"registry.add expects a Component subclass, got {component!r}")
        kind = component.kind
        if kind not in self._entries:
            raise TypeError(f"{component.__name__} has unknown kind {kind!r}")
        if not component.name:
            raise TypeError(f"{component.__name__} has no name")
        existing = self._entries[kind].get(component.name)
        if existing is not None and existing.component is not component:
            raise PluginError(f"{kind} {component.name!r} registered twice: by {existing.provider} "
                              f"and by {self.provider}")
        self._entries[kind][component.name] = Entry(component, self.provider)

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class ``name`` of ``kind``; a :class:`PluginError` suggests close names."""
        entries = self._entries[kind]
        if name not in entries:
            msg = f"unknown {kind} {name!r}{suggest(name, entries)}; available: {', '.join(sorted(entries)) or 'none'}"
            if self.failures:
                msg += "; plugins that failed to load: " + ", ".join(n for n, _ in self.failures)
            raise PluginError(msg)
        return entries[name].component

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def provider_of(self, kind: str, name: str) -> str:
        return self._entries[kind][name].provider

    def __iter__(self) -> Iterator[tuple[str, str, type[Component], str]]:
        for kind, entries in self._entries.items():
            for name in sorted(entries):
                yield kind, name, entries[name].component, entries[name].provider

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Component:
        return self.get(kind, name)(**dict(params or {}))
