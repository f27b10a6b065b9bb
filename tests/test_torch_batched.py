"""Batched training on the torch backend (harness_plugins.torch_backend.TorchStackedGradientEngine):
the stacked evaluator against the CPU stacked engine, train_batch on torch against train alone
and against the CPU path, and memorisation cells that batch on torch. On the CPU device."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'harness[torch]')")

from harness.engine.batched_training import Member, train_batch  # noqa: E402
from harness.engine.stacked_gradients import StackedGradientEngine  # noqa: E402
from harness.engine.stopping import WindowRule  # noqa: E402
from harness.engine.training import train  # noqa: E402


@pytest.fixture(scope="module")
def torch_backend(registry):
    return registry.create("backend", "torch", {"device": "cpu"})


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def stack(rng, R, shapes, n):
    W = [np.stack([rng.standard_normal(s) / np.sqrt(s[1]) for _ in range(R)]) for s in shapes]
    X = rng.standard_normal((R, n, shapes[0][1]))
    y = rng.standard_normal((R, n))
    return W, X, y


SHAPES = [(9, 6), (8, 9), (7, 8), (1, 7)]


# ----------------------------------------------------------------------------- the evaluator

@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("trainable", [None, [False, True, True, True], [False, False, True, True]])
def test_stacked_engine_equals_the_cpu_stacked_engine(registry, torch_backend, activation, trainable):
    act, loss = registry.create("activation", activation), registry.create("loss", "mse")
    R, k, n = 5, 4, 30  # only the first k members of the stacks are current
    W, X, y = stack(np.random.default_rng(11), R, SHAPES, n)
    cpu = StackedGradientEngine(SHAPES, act, R, trainable, rows=n)
    dev = torch_backend.stacked_gradient_engine(SHAPES, act, R, trainable, np.float64, n)
    assert type(dev).__name__ == "TorchStackedGradientEngine"
    ref_values, ref_grads = cpu.loss_and_grads(W, X[:k], y[:k], loss, k)
    ref_grads = [None if g is None else g.copy() for g in ref_grads]
    for _ in range(2):  # the second call reuses the inputs on the device
        values, grads = dev.loss_and_grads(W, X[:k], y[:k], loss, k)
        assert len(values) == k and all(type(v) is float for v in values)
        assert np.allclose(values, ref_values, rtol=1e-12, atol=0)
        for g, h, t in zip(grads, ref_grads, trainable or [True] * len(SHAPES)):
            assert (g is None) == (not t)
            if t:
                assert isinstance(g, np.ndarray) and g.shape == h.shape and g.dtype == np.float64
                assert rel(g, h) < 1e-12
    # a different inputs array (other members' data) is uploaded again
    values, _ = dev.loss_and_grads(W, X[1:k + 1], y[1:k + 1], loss, k)
    assert np.allclose(values, cpu.loss_and_grads(W, X[1:k + 1], y[1:k + 1], loss, k)[0], rtol=1e-12)


def test_stacked_engine_float32(registry, torch_backend):
    act, loss = registry.create("activation", "tanh"), registry.create("loss", "mse")
    W, X, y = stack(np.random.default_rng(12), 3, SHAPES, 20)
    W, X, y = [w.astype(np.float32) for w in W], X.astype(np.float32), y.astype(np.float32)
    ref_values, ref_grads = StackedGradientEngine(SHAPES, act, 3, dtype=np.float32, rows=20).loss_and_grads(
        W, X, y, loss, 3)
    values, grads = torch_backend.stacked_gradient_engine(SHAPES, act, 3, None, np.float32, 20).loss_and_grads(
        W, X, y, loss, 3)
    assert np.allclose(values, ref_values, rtol=1e-5)
    for g, h in zip(grads, ref_grads):
        assert g.dtype == np.float32 and rel(g, h) < 1e-4


def test_the_base_backend_gives_the_cpu_stacked_engine(registry):
    act = registry.create("activation", "relu")
    engine = registry.create("backend", "numba").stacked_gradient_engine(SHAPES, act, 3, None, np.float64, 10)
    assert isinstance(engine, StackedGradientEngine) and engine.members == 3


# ----------------------------------------------------------------------------- train_batch

D, N = 6, 40
FIG2 = [(D, D), (D, D), (D, D), (1, D)]  # d -> d -> d -> d -> 1, the Figure 2 network


def fig2_members(registry, R=3, max_epochs=60):
    init = registry.create("initializer", "fan_in_gaussian")
    out = []
    for i in range(R):
        rng = np.random.default_rng(200 + i)
        X, y = rng.standard_normal((N, D)), rng.standard_normal(N)
        out.append(dict(weights=init.initialize(FIG2, rng), X=X, y=y, max_epochs=max_epochs))
    return out


def optimizer(registry, i):
    return registry.create("optimizer", "adam", {"lr": 0.05 * (1 + 0.2 * i)})


def record_stack_sizes(monkeypatch) -> list:
    """The member count ``k`` of every evaluation of the torch stacked engine, appended to the
    returned list as they happen."""
    from harness_plugins import torch_backend as module

    sizes: list = []
    original = module.TorchStackedGradientEngine.loss_and_grads

    def spy(self, W, X, y, loss, k):
        sizes.append(k)
        return original(self, W, X, y, loss, k)

    monkeypatch.setattr(module.TorchStackedGradientEngine, "loss_and_grads", spy)
    return sizes


def assert_close(a, b, rtol=1e-9):
    assert a.epochs == b.epochs and a.steps == b.steps and a.stop_reason == b.stop_reason
    assert np.allclose(a.losses, b.losses, rtol=rtol, atol=0)
    for u, v in zip(a.weights, b.weights):
        assert np.allclose(u, v, rtol=rtol, atol=rtol * np.max(np.abs(v)))
    assert np.allclose(a.final_output, b.final_output, rtol=rtol, atol=rtol * np.max(np.abs(b.final_output)))
    assert a.final_loss == pytest.approx(b.final_loss, rel=rtol)
    assert a.initial_loss == pytest.approx(b.initial_loss, rel=rtol)


def test_train_batch_on_torch_equals_train_alone_and_the_cpu_path(registry, torch_backend, monkeypatch):
    """Three Figure 2 networks, Adam with per-member learning rates and windows: the window
    rule stops the members at different epochs (the stack shrinks on the device)."""
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    probs = fig2_members(registry)
    windows = [3, 5, 60]

    def members():
        return [Member(p["weights"], p["X"], p["y"], optimizer(registry, i), rules=[WindowRule(windows[i])],
                       max_epochs=p["max_epochs"]) for i, p in enumerate(probs)]

    calls = record_stack_sizes(monkeypatch)
    on_torch = train_batch(members(), act, loss, backend=torch_backend)
    assert calls and max(calls) == 3 and min(calls) < 3  # one stack, shrinking as members stop
    alone = [train(p["weights"], p["X"], p["y"], act, loss, optimizer(registry, i),
                   rules=[WindowRule(windows[i])], max_epochs=p["max_epochs"], backend=torch_backend)
             for i, p in enumerate(probs)]
    cpu = train_batch(members(), act, loss)
    assert len({r.epochs for r in on_torch}) > 1  # the members stopped at different epochs
    assert max(r.epochs for r in on_torch) >= 50
    for t, a, c in zip(on_torch, alone, cpu):
        assert_close(t, a)
        assert_close(t, c)
        assert t.losses[-1] < t.losses[0]  # it trains


def test_train_batch_on_torch_frozen_layer_and_mini_batches(registry, torch_backend):
    act, loss = registry.create("activation", "tanh"), registry.create("loss", "mse")
    probs = fig2_members(registry, max_epochs=15)
    trainable = [False, True, True, True]

    def members():
        return [Member(p["weights"], p["X"], p["y"],
                       registry.create("optimizer", "sgd", {"lr": 0.05, "batch_size": 16, "momentum": 0.9}),
                       max_epochs=p["max_epochs"], rng=np.random.default_rng(30 + i)) for i, p in enumerate(probs)]

    on_torch = train_batch(members(), act, loss, trainable=trainable, backend=torch_backend)
    cpu = train_batch(members(), act, loss, trainable=trainable)
    for t, c, p in zip(on_torch, cpu, probs):
        assert_close(t, c)
        assert np.array_equal(t.weights[0], p["weights"][0])  # the frozen layer stays


# ----------------------------------------------------------------------------- memorisation runs

SPEC = """[benchmark]
name = "torch_batched"
seed = 5
repetitions = 3

[[experiments]]
experiment = "memorization"
N = 40
d = 6
max_epochs = 60
window = 10
lr_rule = "0.05"
batched = {batched}
activation = "relu"
architecture = {{ name = "fc", widths = ["d", "d", "d"] }}
backend = {{ name = "torch", device = "cpu" }}
"""


def test_memorization_cells_batch_on_torch(registry, tmp_path, monkeypatch):
    from harness import api
    from harness.runner.execute import group_cells
    from harness.spec import parse_spec

    cells = parse_spec(SPEC.format(batched="true"), "b.toml", registry=registry).cells()
    assert [len(g) for g in group_cells(cells, registry)] == [3]
    numba = SPEC.format(batched="true").replace('{ name = "torch", device = "cpu" }', '"numba"')
    mixed = cells + parse_spec(numba, "b.toml", registry=registry).cells()
    assert [len(g) for g in group_cells(mixed, registry)] == [3, 3]  # one backend per group
    off = parse_spec(SPEC.format(batched="false"), "b.toml", registry=registry).cells()
    assert [len(g) for g in group_cells(off, registry)] == [1, 1, 1]

    stacks = record_stack_sizes(monkeypatch)
    rows = {}
    for batched in ("true", "false"):
        spec = tmp_path / f"{batched}.toml"
        spec.write_text(SPEC.format(batched=batched), encoding="utf-8")
        run_dir = api.run(str(spec), registry=registry, results_dir=tmp_path / "results", progress=False,
                          figures=False, executor="inline")
        rows[batched] = sorted(run_dir.read_rows(), key=lambda r: r["repetition"])
        if batched == "true":
            assert stacks and max(stacks) == 3  # the three repetitions trained as one stack
            stacks.clear()
    assert not stacks  # batched = false: each cell alone (the single evaluator)
    together, alone = rows["true"], rows["false"]
    assert [r["status"] for r in together] == ["ok"] * 3, together[0].get("error")
    assert [r["status"] for r in alone] == ["ok"] * 3
    for a, b in zip(together, alone):
        assert a["components"]["backend"] == {"name": "torch", "params": {"device": "cpu"}}
        ma, mb = a["metrics"], b["metrics"]
        assert ma["stop_epoch"] == mb["stop_epoch"] and ma["stop_reason"] == mb["stop_reason"]
        for key in ("final_loss", "initial_loss", "reported_loss"):
            assert ma[key] == pytest.approx(mb[key], rel=1e-9), key
        assert np.allclose(a["curves"]["loss_curve"], b["curves"]["loss_curve"], rtol=1e-9, atol=0)
    assert json.dumps(together[0]["metrics"]["final_loss"]) != json.dumps(together[1]["metrics"]["final_loss"])


def test_float32_memorization_cells_batch_on_torch(registry, monkeypatch):
    """dtype = "float32" on torch: the repetitions train as one float32 stack on the device
    (tensors in float32), and the rows follow the CPU engine's float32 rows to float32 rounding."""
    from harness.runner.execute import group_cells, run_cells
    from harness.spec import parse_spec
    from harness_plugins import torch_backend as module

    dtypes = []
    original = module.TorchStackedGradientEngine.loss_and_grads

    def spy(self, W, X, y, loss, k):
        dtypes.append((self.tdtype, X.dtype, W[0].dtype))
        return original(self, W, X, y, loss, k)

    monkeypatch.setattr(module.TorchStackedGradientEngine, "loss_and_grads", spy)
    text = SPEC.format(batched="true") + 'dtype = "float32"\n'
    cells = parse_spec(text, "b.toml", registry=registry).cells()
    (group,) = group_cells(cells, registry)
    on_torch = run_cells(group, registry)
    assert dtypes and set(dtypes) == {(module.import_torch().float32, np.dtype(np.float32), np.dtype(np.float32))}
    numba = text.replace('{ name = "torch", device = "cpu" }', '"numba"')
    on_cpu = run_cells(parse_spec(numba, "b.toml", registry=registry).cells(), registry)
    for a, b in zip(on_torch, on_cpu):
        assert a["status"] == b["status"] == "ok" and a["params"]["dtype"] == "float32"
        ma, mb = a["metrics"], b["metrics"]
        assert ma["stop_epoch"] == mb["stop_epoch"] and ma["stop_reason"] == mb["stop_reason"]
        for key in ("final_loss", "initial_loss", "reported_loss"):
            assert ma[key] == pytest.approx(mb[key], rel=1e-4), key
