"""The plugin component kinds and the registry that holds them.

A component is a class: its class attributes ``name``, ``help`` and ``params`` declare it, and an
instance is the component configured with validated parameters (``Sigmoid()``,
``FullyConnected(widths=["d", "d"])``). Each kind below is one interface; the conformance suite
(``harness.plugin.conformance``) runs every registered component through the interface of its kind.

Shapes used throughout: ``X`` is ``(N, d)``; a network's weights are a list
``[W_1, ..., W_L]`` with ``W_l`` of shape ``(n_l, n_{l-1})``, ``n_0 = d`` and ``n_L = 1``, so that
``G_l = F_{l-1} W_l^T`` and the output is ``F_{L-1} W_L^T`` of shape ``(N,)`` after squeezing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from harness.engine.problem import TrainingProblem  # noqa: F401  (re-exported for plugin authors)
from harness.plugin.params import Param, resolve_params

if TYPE_CHECKING:  # annotations only
    from harness.plugin.context import CellContext



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

    def bind(self, cell: "CellContext") -> None:
        """Called once by the cell that uses this component, before the experiment runs: a
        component that builds other components by name creates them here with
        :meth:`CellContext.create`, so that the row records them. The default does nothing."""

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

    def initialize_biases(self, shapes: Sequence[tuple[int, int]], rng: np.random.Generator,
                          dtype: Any = np.float64) -> list[np.ndarray]:
        """The biases of a network that has some, one ``(n_l, 1)`` array per shape in forward
        order, drawn from ``rng`` *after* :meth:`initialize` drew the weights (so a network's
        weights do not depend on whether it has biases). The default: zeros (an initializer
        that knows biases overrides it, and :meth:`expected_bias_variances`)."""
        return [np.zeros(tuple(s), dtype=dtype) for s in shapes]

    def expected_bias_variances(self, shapes: Sequence[tuple[int, int]]) -> list[float | None]:
        """The entry variance of each bias (``0.0`` for the default zero biases)."""
        return [0.0] * len(shapes)


class Architecture(Component):
    """A feed-forward network with one output. Three ways to declare one:

    - ``layer_shapes(d)`` (and ``trainable(d)``): a bias-free chain
      ``[(n_1, d), (n_2, n_1), ..., (1, n_{L-1})]`` (``fc``, ``two_layer``);
    - ``network(d)``: a :class:`harness.engine.network.Network` of dense layers with optional
      biases, per-layer activations and residual blocks ``h <- h + alpha phi(W h + b)``
      (``residual``, ``fc`` with ``bias = true``); ``layer_shapes`` and ``trainable`` then follow
      from it;
    - ``forward(params, X, activation)`` overridden with ``layer_shapes(d)`` giving the shapes
      of its parameter arrays: any forward. It runs on the *generic path* (autograd Jacobian and
      gradients, :mod:`harness.engine.generic`), slower but exact; never as a chain.

    The structured engine (NTK, gradients, batched training) computes every network it can
    describe; :meth:`ntk_path` says which path a network takes (rows record it as ``ntk_path``).
    Overriding ``forward`` *and* ``network`` declares the same network twice: :meth:`problem`
    refuses it when they disagree, as it refuses shapes that do not chain.

    Parameters are a flat list in forward order ``[W1, b1, W2, ...]`` (:meth:`parameter_names`;
    weights ``(fan_out, fan_in)``, biases ``(fan_out, 1)``, the output layer last).
    """

    kind = "architecture"

    def _overrides(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(Architecture, method)

    def network(self, d: int):
        """The network at input dimension ``d`` as a :class:`~harness.engine.network.Network`,
        or ``None`` when only ``forward`` describes it (the generic path). The default: the
        bias-free chain of :meth:`layer_shapes`, unless ``forward`` is overridden."""
        if self._overrides("forward"):
            return None
        from harness.engine.network import Network

        return Network.chain(self.layer_shapes(d), self.trainable(d))

    def layer_shapes(self, d: int) -> list[tuple[int, int]]:
        """Weight shapes ``(fan_out, fan_in)`` per dense layer (a generic architecture: the
        shapes of its parameter arrays)."""
        if self._overrides("network"):
            return self.network(d).layer_shapes()
        raise NotImplementedError

    def trainable(self, d: int) -> list[bool]:
        if self._overrides("network"):
            return self.network(d).trainable_layers()
        return [True] * len(self.layer_shapes(d))

    def model(self, d: int):
        """What the engine runs: the :meth:`network`, or a
        :class:`~harness.engine.structured.GenericModel` of :meth:`forward` (generic path)."""
        net = self.network(d)
        if net is not None:
            return net
        from harness.engine.structured import GenericModel

        return GenericModel(self.forward, self.layer_shapes(d), self.trainable(d), self.name)

    def ntk_path(self, d: int) -> str:
        """``"structured"`` (the NTK formula per dense layer, Numba) or ``"generic"`` (autograd)."""
        return "generic" if self.network(d) is None else "structured"

    def parameter_shapes(self, d: int) -> list[tuple[int, int]]:
        return self.model(d).parameter_shapes()

    def parameter_names(self, d: int) -> list[str]:
        return self.model(d).parameter_names()

    def parameter_trainable(self, d: int) -> list[bool]:
        return self.model(d).parameter_trainable()

    def param_count(self, d: int, trainable_only: bool = True) -> int:
        model = self.model(d)
        mask = model.parameter_trainable()
        return int(sum(int(np.prod(s)) for s, t in zip(model.parameter_shapes(), mask)
                       if t or not trainable_only))

    def init_parameters(self, d: int, initializer: "Initializer", rng: np.random.Generator,
                        dtype: Any = np.float64) -> list[np.ndarray]:
        """The initial parameters in forward order: ``initializer.initialize`` on the weight
        shapes (the same draws as a bias-free network), then ``initialize_biases`` on the bias
        shapes (zeros unless the initializer knows biases)."""
        net = self.network(d)
        if net is None:
            return list(initializer.initialize(self.layer_shapes(d), rng, dtype))
        weights = list(initializer.initialize(net.layer_shapes(), rng, dtype))
        bias_shapes = [(l.fan_out, 1) for l in net.layers if l.bias]
        biases = list(initializer.initialize_biases(bias_shapes, rng, dtype)) if bias_shapes else []
        params = []
        for l, layer in enumerate(net.layers):
            params.append(weights[l])
            if layer.bias:
                params.append(np.asarray(biases.pop(0), dtype=dtype).reshape(layer.fan_out, 1))
        return params

    def problem(self, d: int) -> str | None:
        """Why this architecture cannot run at input dimension ``d`` (shapes that do not chain,
        a ``network`` and a ``forward`` that disagree, a forward that is not ``(N,)``), or
        ``None``. Experiments call it from their ``check``, so the file is refused at load."""
        from harness.engine.network import Network

        try:
            net = self.network(d)
        except (ValueError, TypeError) as exc:
            return f"network({d}): {exc}"
        if net is not None and not isinstance(net, Network):
            return f"network({d}) returned {type(net).__name__}, expected harness.engine.network.Network or None"
        if net is not None:
            if net.d != d:
                return f"network({d}) takes inputs of dimension {net.d}"
            if self._overrides("network"):
                for what in ("layer_shapes", "trainable"):
                    if self._overrides(what):
                        mine = [tuple(s) for s in self.layer_shapes(d)] if what == "layer_shapes" else \
                            [bool(t) for t in self.trainable(d)]
                        theirs = net.layer_shapes() if what == "layer_shapes" else net.trainable_layers()
                        if mine != theirs:
                            return f"{what}({d}) = {mine} disagrees with network({d}): {theirs}"
        else:
            shapes = self.layer_shapes(d)
            if not shapes or any(len(s) < 1 or any(isinstance(v, bool) or int(v) < 1 for v in s)
                                 for s in shapes):
                return f"layer_shapes({d}) = {shapes} is not a list of positive integer shapes"
            if len(self.trainable(d)) != len(shapes):
                return f"trainable({d}) has {len(self.trainable(d))} flags for {len(shapes)} parameters"
        if self._overrides("forward"):
            rng = np.random.default_rng(0)
            from harness.engine.network import _ProbeTanh

            shapes = self.parameter_shapes(d)
            params = [rng.standard_normal(tuple(s)) / np.sqrt(s[-1]) for s in shapes]
            X = rng.standard_normal((3, d))
            try:
                out = np.asarray(self.forward(params, X, _ProbeTanh()), dtype=np.float64)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the plugin's forward is at fault
                return f"forward fails on parameters of shapes {shapes}: {type(exc).__name__}: {exc}"
            if out.shape != (3,):
                return f"forward gives shape {out.shape} on 3 inputs, expected (3,)"
            if net is not None:
                ref = net.forward(params, X, _ProbeTanh())
                if not np.allclose(out, ref, rtol=1e-8, atol=1e-10):
                    return (f"forward disagrees with network({d}) (by {np.max(np.abs(out - ref)):.3g}): "
                            f"the two declarations describe different networks")
        return None

    def forward(self, params: Sequence[np.ndarray], X: np.ndarray, activation: Activation) -> np.ndarray:
        """Network output, shape ``(N,)`` (the default: :meth:`network`'s forward; for a
        subclass that overrides ``forward`` and calls this one, the chain of ``layer_shapes``)."""
        d = int(np.shape(X)[1])
        net = self.network(d)
        if net is None:
            from harness.engine.network import Network

            net = Network.chain(self.layer_shapes(d), self.trainable(d))
        return net.forward(params, X, activation)


class Dataset(Component):
    """Draws a training set: ``sample(n, d, rng)`` returns ``X (n, d)`` and ``y (n,)``."""

    kind = "dataset"

    def sample(self, n: int, d: int, rng: np.random.Generator,
               dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class Loss(Component):
    """A per-sample loss l(f, y) averaged over samples.

    ``value(f, y)`` returns the mean loss (float); ``grad(f, y)`` returns d(mean loss)/df,
    shape ``(N,)`` (so it already carries the 1/N). ``jit_code`` optionally names a loss the
    training kernel computes itself (``"mse"``: :mod:`harness.engine.chain_kernels`), used only
    where the plugin's ``value``/``grad`` agree with it on probe values; ``None``: the training
    engines call ``value``/``grad``.
    """

    kind = "loss"
    jit_code: ClassVar[str | None] = None
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
    ``stacked_gradient_engine(shapes, activation, members, trainable, dtype, rows)`` returns the
    evaluator of batched training (:func:`harness.engine.batched_training.train_batch`: up to
    ``members`` networks of one shape as one stack), with the interface of
    :class:`harness.engine.stacked_gradients.StackedGradientEngine`: ``loss_and_grads(W, X, y,
    loss, k)`` takes ``W`` per layer a stack ``(members, n_l, n_{l-1})`` of which the first ``k``
    are current, ``X`` (k, rows, d) and ``y`` (k, rows), and returns ``(values, grads)``: k
    floats (each member's loss through the Loss component) and per layer the gradients
    ``(k, n_l, n_{l-1})`` as NumPy arrays, ``None`` for frozen layers (``rows``: the row count
    of a call, N or the mini-batch size).
    The default implementations are the CPU engine, so a backend that only accelerates the NTK
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

    def supports_model(self, model) -> bool:
        """Whether :meth:`model_kernels` can compute ``model`` (an ``Architecture.model(d)``):
        the default, a plain bias-free chain only (what :meth:`ntk_kernels` computes)."""
        return bool(getattr(model, "plain", False))

    def model_kernels(self, model, params, X, activation, groups: Mapping[str, Sequence[int] | None],
                      dtype=np.float64) -> tuple[dict, str]:
        """``({name: sum_{p in group} K_p}, ntk_path)`` for ``groups`` of 0-based *parameter*
        indices (``None``: all) of ``model``. The default runs a plain network through
        :meth:`ntk_kernels` (parameter ``p`` is layer ``p + 1``) and refuses anything else."""
        if not self.supports_model(model):
            raise NotImplementedError(f"backend {self.name!r} computes bias-free chains only")
        n = len(params)
        layer_groups = {k: [p + 1 for p in (range(n) if v is None else v)] for k, v in groups.items()}
        return self.ntk_kernels(list(params), X, activation, layer_groups, dtype), "structured"

    def gradient_engine(self, shapes: Sequence[tuple[int, int]], activation: "Activation",
                        trainable: Sequence[bool] | None = None, dtype: Any = np.float64,
                        max_rows: int | None = None):
        from harness.engine.gradients import GradientEngine

        return GradientEngine(shapes, activation, trainable, dtype=dtype, max_rows=max_rows)

    def stacked_gradient_engine(self, shapes: Sequence[tuple[int, int]], activation: "Activation",
                                members: int, trainable: Sequence[bool] | None = None,
                                dtype: Any = np.float64, rows: int | None = None):
        from harness.engine.stacked_gradients import StackedGradientEngine

        return StackedGradientEngine(shapes, activation, members, trainable, dtype, rows=rows)

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


