"""The conformance suite: every registered component conforms, and the suite catches broken ones."""
import math
import time

import numpy as np
import pytest
from plugins_for_tests import installed_registry
from scipy.special import expit

from harness import Activation, Architecture, Backend, Dataset, Experiment, Initializer, Loss, Optimizer, Param
from harness.engine.network import backward_signals, forward
from harness.plugin.conformance import KIND_CHECKS, assert_conforms, check_component, parametrize_with_checks
from harness.plugin.registry import KINDS

REGISTRY = installed_registry()
COMMON = 3  # declaration, defaults validate, construct with defaults


@parametrize_with_checks([(kind, name) for kind, name, _, _ in REGISTRY], REGISTRY)
def test_registered_component_conforms(component, check):
    """One item per check of every registered component (the only place they are all run)."""
    check(component)


def test_every_kind_has_checks():
    assert set(KIND_CHECKS) == set(KINDS)


def _failed(kind, cls):
    return {r.name for r in check_component(kind, cls, REGISTRY) if not r.passed}


def _passed_all(kind, cls):
    results = check_component(kind, cls, REGISTRY)
    assert all(r.passed for r in results), [str(r) for r in results if not r.passed]
    return results


# ----------------------------------------------------------------------------- activations

class GoodSoftplus(Activation):
    name = "test_softplus"
    help = "log(1 + e^x)"

    def phi(self, x):
        return np.logaddexp(0, x)

    def dphi(self, x):
        return expit(x)

    def d2phi(self, x):
        return expit(x) * expit(-x)


class WrongDphi(GoodSoftplus):
    def dphi(self, x):
        return expit(x) * 1.001


class WrongD2phi(GoodSoftplus):
    def d2phi(self, x):
        return expit(x) * (1 - expit(x)) * (1 + 1e-3 * np.cos(x))


class OverflowingSoftplus(GoodSoftplus):
    def phi(self, x):
        return np.log(1 + np.exp(x))


class Float64Only(GoodSoftplus):
    def phi(self, x):
        return np.logaddexp(0, np.asarray(x, dtype=np.float64))


class NotVectorised(GoodSoftplus):
    def phi(self, x):
        return np.asarray(x) * 0 + math.log1p(math.exp(float(np.ravel(x)[0])))


def test_good_activation_passes():
    _passed_all("activation", GoodSoftplus)


@pytest.mark.parametrize("cls,check", [
    (WrongDphi, "dphi vs finite differences"),
    (WrongD2phi, "d2phi vs finite differences"),
    (OverflowingSoftplus, "large inputs"),
    (Float64Only, "dtypes kept"),
    (NotVectorised, "vectorised"),
])
def test_broken_activation_is_caught(cls, check):
    assert check in _failed("activation", cls)


def test_kinks_are_skipped_not_failed():
    class AbsoluteValue(GoodSoftplus):
        def phi(self, x):
            return np.abs(x)

        def dphi(self, x):
            return np.sign(x)

        def d2phi(self, x):
            return np.zeros_like(x)

    results = {r.name: r for r in check_component("activation", AbsoluteValue, REGISTRY)}
    assert results["dphi vs finite differences"].passed
    assert "1 at kinks skipped" in results["dphi vs finite differences"].detail


# ----------------------------------------------------------------------------- initializers

class FanOutGaussian(Initializer):
    """Declares 1/fan_in but draws 1/fan_out: the variance check must catch it."""

    name = "test_fan_out"
    help = "wrong scaling"

    def expected_variances(self, shapes):
        return [1 / m for _, m in shapes]

    def initialize(self, shapes, rng, dtype=np.float64):
        return [(rng.standard_normal(s) / math.sqrt(s[0])).astype(dtype) for s in shapes]


class SlightlyWide(Initializer):
    name = "test_wide"
    help = "variance 10% above the declared one"

    def expected_variances(self, shapes):
        return [1 / m for _, m in shapes]

    def initialize(self, shapes, rng, dtype=np.float64):
        return [(rng.standard_normal(s) * math.sqrt(1.1 / s[1])).astype(dtype) for s in shapes]


class GlobalState(SlightlyWide):
    def initialize(self, shapes, rng, dtype=np.float64):
        return [(np.random.standard_normal(s) / math.sqrt(s[1])).astype(dtype) for s in shapes]


class WrongDtype(SlightlyWide):
    def initialize(self, shapes, rng, dtype=np.float64):
        return [rng.standard_normal(s) / math.sqrt(s[1]) for s in shapes]


class TransposedShapes(SlightlyWide):
    def initialize(self, shapes, rng, dtype=np.float64):
        return [(rng.standard_normal(s[::-1]) / math.sqrt(s[1])).astype(dtype) for s in shapes]


@pytest.mark.parametrize("cls,check", [
    (FanOutGaussian, "entry variances"),
    (SlightlyWide, "entry variances"),
    (GlobalState, "deterministic"),
    (WrongDtype, "shapes and dtypes"),
    (TransposedShapes, "shapes and dtypes"),
])
@pytest.mark.slow
def test_broken_initializer_is_caught(cls, check):
    assert check in _failed("initializer", cls)


@pytest.mark.slow
def test_initializer_with_dependent_entries_passes():
    # each row repeated: the variance check must widen its standard error, not fail
    class RepeatedRows(Initializer):
        name = "test_repeated"
        help = "rows drawn in pairs"

        def expected_variances(self, shapes):
            return [1 / m for _, m in shapes]

        def initialize(self, shapes, rng, dtype=np.float64):
            out = []
            for n, m in shapes:
                half = rng.standard_normal(((n + 1) // 2, m)) / math.sqrt(m)
                out.append(np.repeat(half, 2, axis=0)[:n].astype(dtype))
            return out

    _passed_all("initializer", RepeatedRows)


# ----------------------------------------------------------------------------- architectures

class TwoOutputs(Architecture):
    name = "test_two_outputs"
    help = "ends with 2 outputs"

    def layer_shapes(self, d):
        return [(4, d), (2, 4)]


class BrokenChain(TwoOutputs):
    def layer_shapes(self, d):
        return [(4, d), (3, 5), (1, 3)]


class BadCount(Architecture):
    name = "test_bad_count"
    help = "param_count ignores the mask"

    def layer_shapes(self, d):
        return [(4, d), (1, 4)]

    def trainable(self, d):
        return [True, False]

    def param_count(self, d, trainable_only=True):
        return 4 * d + 4


class ShortMask(BadCount):
    def trainable(self, d):
        return [True]

    def param_count(self, d, trainable_only=True):
        return Architecture.param_count(self, d, trainable_only)


class ScaledForward(BadCount):
    """Declares the chain network (``network``) but computes twice its output (``forward``):
    two declarations of different networks (an architecture that only overrides ``forward``
    is a valid generic one, run on the autograd path)."""

    param_count = Architecture.param_count

    def network(self, d):
        from harness.engine.network import Network

        return Network.chain(self.layer_shapes(d), self.trainable(d))

    def forward(self, weights, X, activation):
        return 2 * super().forward(weights, X, activation)


@pytest.mark.parametrize("cls,check", [
    (TwoOutputs, "layer shapes"), (BrokenChain, "layer shapes"), (BadCount, "trainable and param_count"),
    (ShortMask, "layer shapes"), (ScaledForward, "layer shapes"),
])
def test_broken_architecture_is_caught(cls, check):
    assert check in _failed("architecture", cls)


# ----------------------------------------------------------------------------- datasets

class GoodDataset(Dataset):
    name = "test_dataset"
    help = "Gaussian x, y = sum x"

    def sample(self, n, d, rng, dtype=np.float64):
        X = rng.standard_normal((n, d))
        return X.astype(dtype), X.sum(axis=1).astype(dtype)


class ColumnTargets(GoodDataset):
    def sample(self, n, d, rng, dtype=np.float64):
        X, y = super().sample(n, d, rng, dtype)
        return X, y[:, None]


class IgnoresRng(GoodDataset):
    def sample(self, n, d, rng, dtype=np.float64):
        return super().sample(n, d, np.random.default_rng(), dtype)


class IgnoresDtype(GoodDataset):
    def sample(self, n, d, rng, dtype=np.float64):
        return super().sample(n, d, rng, np.float64)


def test_good_dataset_passes():
    _passed_all("dataset", GoodDataset)


@pytest.mark.parametrize("cls,check", [(ColumnTargets, "shapes and dtypes"), (IgnoresRng, "deterministic"),
                                       (IgnoresDtype, "shapes and dtypes")])
def test_broken_dataset_is_caught(cls, check):
    assert check in _failed("dataset", cls)


# ----------------------------------------------------------------------------- losses

class GoodSquared(Loss):
    name = "test_squared"
    help = "mean (f - y)^2"

    def value(self, f, y):
        return float(np.mean((f - y) ** 2))

    def grad(self, f, y):
        return 2 * (f - y) / f.size


class SumNotMean(GoodSquared):
    def value(self, f, y):
        return float(np.sum((f - y) ** 2))

    def grad(self, f, y):
        return 2 * (f - y)


class WrongSign(GoodSquared):
    def grad(self, f, y):
        return -2 * (f - y) / f.size


class ColumnGrad(GoodSquared):
    def grad(self, f, y):
        return super().grad(f, y)[:, None]


class HalfSquaresClaimingMse(GoodSquared):
    """Declares the kernel's MSE but is half of it: the kernel would compute another loss."""
    jit_code = "mse"

    def value(self, f, y):
        return 0.5 * super().value(f, y)

    def grad(self, f, y):
        return 0.5 * super().grad(f, y)


class UnknownJitCode(GoodSquared):
    jit_code = "huber"


class SquaredWithJitCode(GoodSquared):
    jit_code = "mse"


def test_good_loss_passes():
    _passed_all("loss", GoodSquared)
    _passed_all("loss", SquaredWithJitCode)


@pytest.mark.parametrize("cls,check", [(SumNotMean, "mean over samples"), (WrongSign, "grad vs finite differences"),
                                       (ColumnGrad, "shapes"), (HalfSquaresClaimingMse, "jit_code honoured"),
                                       (UnknownJitCode, "jit_code honoured")])
def test_broken_loss_is_caught(cls, check):
    assert check in _failed("loss", cls)


# ----------------------------------------------------------------------------- optimizers

class GoodGD(Optimizer):
    name = "test_gd"
    help = "plain gradient descent"
    params = (Param("lr", float, 0.1, "step", min=0.0),)

    def prepare(self, problem):
        return {"rule": "fixed", "lr": self.lr}

    def step(self, weights, grads, state):
        for W, g in zip(weights, grads):
            if g is not None:
                W -= self.lr * g


class DecaysEverything(GoodGD):
    def step(self, weights, grads, state):
        for W, g in zip(weights, grads):
            W *= 0.99
            if g is not None:
                W -= self.lr * g


class NoisyGD(GoodGD):
    def step(self, weights, grads, state):
        for W, g in zip(weights, grads):
            if g is not None:
                W -= self.lr * g + 1e-3 * np.random.standard_normal(W.shape)


class NoPrepareDict(GoodGD):
    def prepare(self, problem):
        return None


class Stalls(GoodGD):
    def step(self, weights, grads, state):
        pass


class Float64Momentum(GoodGD):
    """Heavy-ball momentum whose buffers are float64 whatever the weights."""

    def init_state(self, weights):
        return {"buf": [np.zeros(np.shape(W)) for W in weights]}

    def step(self, weights, grads, state):
        for W, g, b in zip(weights, grads, state["buf"]):
            if g is not None:
                b *= 0.5
                b += g
                W -= (self.lr * b).astype(W.dtype)


class SlowInFloat32(GoodGD):
    """Takes a tenth of the step on float32 weights."""

    def step(self, weights, grads, state):
        for W, g in zip(weights, grads):
            if g is not None:
                W -= (self.lr if W.dtype == np.float64 else 0.1 * self.lr) * g


def test_good_optimizer_passes():
    _passed_all("optimizer", GoodGD)


@pytest.mark.parametrize("cls,check", [(DecaysEverything, "steps"), (NoisyGD, "deterministic"),
                                       (NoPrepareDict, "steps"), (Stalls, "steps"),
                                       (Float64Momentum, "float32 kept"), (SlowInFloat32, "float32 kept")])
def test_broken_optimizer_is_caught(cls, check):
    assert check in _failed("optimizer", cls)


# ----------------------------------------------------------------------------- experiments

class GoodExperiment(Experiment):
    name = "test_experiment"
    help = "mean of phi over the data"
    params = (Param("n", int, 5, "samples", min=1),)
    slots = {"activation": ("activation", "tanh"), "dataset": ("dataset", "gaussian")}
    example = {"params": {"n": 7}, "components": {"activation": {"name": "sigmoid"}}}

    def run(self, cell):
        start = time.perf_counter()
        X, y = cell.dataset.sample(self.n, 3, cell.rng("data"))
        f = cell.activation.phi(X @ cell.rng("init").standard_normal(3))
        return {"mean": float(f.mean()), "n": self.n, "curve": [float(v) for v in f], "status_note": "ok",
                "nan_metric": float("nan"), "timings": {"seconds": time.perf_counter() - start},
                "resolved": {"activation.scale": 1.0}}


class TimingAsMetric(GoodExperiment):
    def run(self, cell):
        out = super().run(cell)
        out["run_seconds"] = out.pop("timings")["seconds"]
        return out


class GlobalRandomExperiment(GoodExperiment):
    def run(self, cell):
        out = super().run(cell)
        out["mean"] += np.random.standard_normal()
        return out


class NestedExperiment(GoodExperiment):
    def run(self, cell):
        return {"metrics": super().run(cell)}


class ArrayCurveExperiment(GoodExperiment):
    def run(self, cell):
        out = super().run(cell)
        out["curve"] = np.array(out["curve"])
        return out


class NoExample(GoodExperiment):
    example = {}


class DeclaredExperiment(GoodExperiment):
    metrics = ("mean", "n", "status_note", "nan_metric")


class UndeclaredMetric(DeclaredExperiment):
    metrics = ("mean", "n", "status_note")


class BadSlot(GoodExperiment):
    example = {"components": {"activaton": {"name": "relu"}}}


def test_good_experiment_passes():
    results = _passed_all("experiment", GoodExperiment)
    assert any(r.name == "example cell" and not r.skipped for r in results)


@pytest.mark.parametrize("cls", [GlobalRandomExperiment, NestedExperiment, ArrayCurveExperiment, BadSlot])
def test_broken_experiment_is_caught(cls):
    assert "example cell" in _failed("experiment", cls)


def test_declared_metrics_are_checked_against_the_example():
    results = {r.name: r for r in check_component("experiment", DeclaredExperiment, REGISTRY)}
    assert results["declared metrics"].passed and not results["declared metrics"].skipped
    assert results["declared metrics"].detail == "4 metric(s), all declared"
    failed = {r.name: str(r) for r in check_component("experiment", UndeclaredMetric, REGISTRY) if not r.passed}
    assert "metrics ['nan_metric'] are not among the declared metric_names" in failed["declared metrics"]
    assert {r.name: r for r in check_component("experiment", GoodExperiment, REGISTRY)}["declared metrics"].skipped


def test_wall_clock_metric_is_caught():
    failed = [str(r) for r in check_component("experiment", TimingAsMetric, REGISTRY) if not r.passed]
    assert failed and "'run_seconds' looks like a wall-clock time" in failed[0]


def test_experiment_without_example_is_skipped():
    results = {r.name: r for r in check_component("experiment", NoExample, REGISTRY)}
    assert results["example cell"].skipped and results["example cell"].passed
    assert "no example" in results["example cell"].detail


# ----------------------------------------------------------------------------- every kind

class BadDefault(GoodSoftplus):
    params = (Param("alpha", float, -1.0, "must be positive", min=0.0),)


class RequiredParam(GoodSoftplus):
    params = (Param("alpha", float, help="no default"),)


class NoHelp(GoodSoftplus):
    help = ""


def test_invalid_default_is_caught():
    assert "defaults validate" in _failed("activation", BadDefault)


def test_missing_help_is_caught():
    assert "declaration" in _failed("activation", NoHelp)


def test_required_parameter_skips_instance_checks():
    results = check_component("activation", RequiredParam, REGISTRY)
    construct = next(r for r in results if r.name == "construct with defaults")
    assert construct.skipped and "alpha" in construct.detail
    assert all(r.passed for r in results)


def test_kind_mismatch_is_caught():
    assert "declaration" in _failed("dataset", GoodSoftplus)


def test_assert_conforms_lists_failures():
    with pytest.raises(AssertionError) as info:
        assert_conforms("activation", WrongDphi, REGISTRY)
    text = str(info.value)
    assert "WrongDphi" in text and "dphi vs finite differences" in text and "FAIL" in text
    assert "dtypes kept" not in text  # only the failed checks are listed


def test_unknown_kind_and_name():
    with pytest.raises(ValueError, match="unknown kind"):
        check_component("activations", "relu")
    with pytest.raises(Exception, match="did you mean 'relu'"):
        check_component("activation", "relux")


# ----------------------------------------------------------------------------- backends

class JacobianBackend(Backend):
    """K = J J^T from the explicit per-sample Jacobian (harness.engine.jacobian)."""

    name = "test_jacobian_backend"
    help = "explicit Jacobian"

    def ntk(self, weights, X, activation, layers=None, dtype=np.float64):
        from harness.engine.jacobian import jacobian_ntk

        return jacobian_ntk(weights, X, activation, layers, dtype)


class MissingFirstLayer(JacobianBackend):
    def ntk(self, weights, X, activation, blocks="full", dtype=np.float64):
        fp = forward(weights, X, activation)
        B = backward_signals(weights, fp, activation)
        return sum((F @ F.T) * (b @ b.T) for F, b in list(zip(fp.F, B))[1:])


def test_good_backend_passes():
    _passed_all("backend", JacobianBackend)


def test_broken_backend_is_caught():
    assert "ntk" in _failed("backend", MissingFirstLayer)


def test_engine_ntk_gram_passes_as_a_backend():
    ntk = pytest.importorskip("harness.engine.ntk")

    class EngineBackend(JacobianBackend):
        def ntk(self, weights, X, activation, blocks="full", dtype=np.float64):
            return ntk.ntk_gram(weights, X, activation)

    _passed_all("backend", EngineBackend)
