"""The torch backend (harness_plugins.torch_backend): NTK Gram and training gradients against the
Numba CPU engine, device selection, and the error when torch is not installed.

Tests that compute need torch (a CPU build is enough) and are skipped without it; the
missing-torch tests simulate its absence and always run.
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from harness import Activation, Experiment, Param, PluginError, SpecError, UserError, hookimpl
from harness.plugin.manager import make_plugin_manager

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install 'harness[torch]')")


class NtkProbe(Experiment):
    """The NTK of a small random network through the backend slot (a stand-in experiment)."""

    name = "test_ntk_probe"
    help = "trace and smallest eigenvalue of the NTK, from the backend slot"
    params = (Param("N", int, 12), Param("d", int, 5))
    slots = {"backend": ("backend", "numba"), "activation": ("activation", "sigmoid")}

    def run(self, cell):
        rng = cell.rng("data")
        X = rng.standard_normal((self.N, self.d))
        weights = [rng.standard_normal((7, self.d)) / np.sqrt(self.d), rng.standard_normal((6, 7)) / np.sqrt(7),
                   rng.standard_normal((1, 6))]
        K = cell.backend.ntk(weights, X, cell.activation)
        return {"trace": float(np.trace(K)), "lambda_min": float(np.linalg.eigvalsh(K)[0])}


@hookimpl
def harness_register_experiments(registry):
    registry.add(NtkProbe)


@pytest.fixture(scope="module")
def registry():
    return make_plugin_manager(extra_plugins=[sys.modules[__name__]])[1]


@pytest.fixture
def no_torch(monkeypatch):
    """Make ``import torch`` fail as if torch were not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)


def network(rng, d=6, widths=(9, 8), dtype=np.float64):
    sizes = [d, *widths, 1]
    weights = [rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(len(sizes) - 1)]
    return [W.astype(dtype) for W in weights]


def rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def jacobian_ntk(weights, X, activation):
    """K = J J^T from the explicit per-sample Jacobian (an independent reference)."""
    from harness.engine.jacobian import jacobian_ntk as explicit

    return explicit(weights, X, activation)


# ----------------------------------------------------------------------------- without torch

def test_missing_torch_is_a_clear_plugin_error(registry, no_torch):
    cls = registry.get("backend", "torch")
    with pytest.raises(PluginError, match=r"pip install 'harness\[torch\]'"):
        cls.check_available()
    backend = cls()  # building it needs no torch (listing and validation work without it)
    with pytest.raises(PluginError, match=r"needs PyTorch.*pip install 'harness\[torch\]'"):
        backend.ntk(network(np.random.default_rng(0)), np.zeros((3, 6)), registry.create("activation", "tanh"))
    with pytest.raises(ImportError):  # also an ImportError: the conformance suite skips it
        backend.gradient_engine([(9, 6), (8, 9), (1, 8)], registry.create("activation", "tanh"))


def test_choosing_torch_without_torch_stops_before_the_run(registry, no_torch, tmp_path, monkeypatch):
    from harness import api
    spec = tmp_path / "b.toml"
    spec.write_text('[benchmark]\nname = "t"\nseed = 1\n\n[[experiments]]\nexperiment = "test_ntk_probe"\n'
                    'backend = "torch"\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"torch backend needs PyTorch.*harness\[torch\]"):
        api.run(str(spec), registry=registry, results_dir=tmp_path / "results", progress=False, figures=False)
    assert not (tmp_path / "results").exists()  # no run directory was started


def test_device_parameter_is_validated(registry):
    cls = registry.get("backend", "torch")
    for good in ("auto", "cpu", "cuda", "cuda:1"):
        assert cls(device=good).device == good
    with pytest.raises(SpecError, match="device"):
        cls(device="gpu")


def test_numba_backend_is_the_cpu_engine(registry):
    """The reference the torch backend is held to: the base Backend's training API over the
    CPU engine, and ``ntk`` = ``ntk_gram``."""
    from harness.engine.gradients import loss_and_gradients
    from harness.engine.ntk import ntk_gram

    rng = np.random.default_rng(8)
    weights, X, y = network(rng), rng.standard_normal((11, 6)), rng.standard_normal(11)
    act, loss = registry.create("activation", "tanh"), registry.create("loss", "mse")
    backend = registry.create("backend", "numba")
    assert np.array_equal(backend.ntk(weights, X, act, [2, 3]), ntk_gram(weights, X, act, [2, 3]))
    ref = loss_and_gradients(weights, X, y, act, loss, [False, True, True])
    first = backend.loss_and_grads(weights, X, y, act, loss, [False, True, True])
    second = backend.loss_and_grads([2 * W for W in weights], X, y, act, loss, [False, True, True])
    assert first.grads[0] is None and abs(first.loss - ref.loss) <= 1e-14 * ref.loss
    for g, h in zip(first.grads[1:], ref.grads[1:]):
        assert rel(g, h) < 1e-12
    assert rel(second.grads[2], first.grads[2]) > 1e-3  # a second call does not overwrite the first


# ----------------------------------------------------------------------------- with torch

ACTIVATIONS = ["sigmoid", "relu", "tanh", "quadratic", "identity"]


@needs_torch
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_ntk_agrees_with_numba_and_with_the_jacobian(registry, name):
    from harness.engine.ntk import ntk_gram

    rng = np.random.default_rng(1)
    weights, X = network(rng), rng.standard_normal((15, 6))
    act = registry.create("activation", name)
    torch_backend = registry.create("backend", "torch", {"device": "cpu"})
    K = torch_backend.ntk(weights, X, act)
    assert K.shape == (15, 15) and K.dtype == np.float64
    assert rel(K, ntk_gram(weights, X, act)) < 1e-8
    assert rel(K, jacobian_ntk(weights, X, act)) < 1e-8
    for layers in ([1], [2], [3], [1, 3]):
        assert rel(torch_backend.ntk(weights, X, act, layers), ntk_gram(weights, X, act, layers)) < 1e-8


@needs_torch
def test_ntk_blocks_sum_to_the_full_kernel_and_row_blocks_do_not_matter(registry, monkeypatch):
    import harness_plugins.torch_backend as tb

    rng = np.random.default_rng(2)
    weights, X = network(rng, widths=(10, 7, 5)), rng.standard_normal((23, 6))
    act = registry.create("activation", "tanh")
    backend = registry.create("backend", "torch")
    K = backend.ntk(weights, X, act)
    blocks = sum(backend.ntk(weights, X, act, [l]) for l in range(1, 5))
    assert rel(blocks, K) < 1e-13
    monkeypatch.setattr(tb, "BLOCK_BYTES", 5 * 23 * 8)  # five rows per block, a ragged last one
    assert rel(backend.ntk(weights, X, act), K) < 1e-13
    assert np.allclose(K, K.T, rtol=0, atol=1e-12 * np.abs(K).max())


@needs_torch
def test_float32_ntk(registry):
    rng = np.random.default_rng(3)
    weights, X = network(rng), rng.standard_normal((10, 6))
    act = registry.create("activation", "sigmoid")
    backend = registry.create("backend", "torch")
    K32 = backend.ntk([W.astype(np.float32) for W in weights], X.astype(np.float32), act, dtype=np.float32)
    assert K32.dtype == np.float32
    assert 1e-9 < rel(K32, backend.ntk(weights, X, act)) < 1e-4  # float32 rounding, no more


@needs_torch
@pytest.mark.parametrize("name", ["relu", "sigmoid", "quadratic"])
@pytest.mark.parametrize("trainable", [None, [False, True, True], [True, False, False], [False, False, True]])
def test_loss_and_grads_agree_with_the_numba_engine(registry, name, trainable):
    from harness.engine.gradients import GradientEngine

    rng = np.random.default_rng(4)
    weights, X, y = network(rng), rng.standard_normal((20, 6)), rng.standard_normal(20)
    act, loss = registry.create("activation", name), registry.create("loss", "mse")
    ref = GradientEngine([W.shape for W in weights], act, trainable).loss_and_grads(weights, X, y, loss)
    got = registry.create("backend", "torch").loss_and_grads(weights, X, y, act, loss, trainable)
    assert abs(got.loss - ref.loss) <= 1e-12 * ref.loss
    assert rel(got.output, ref.output) < 1e-12
    for g, h, t in zip(got.grads, ref.grads, trainable or [True] * 3):
        assert (g is None) == (not t)
        if t:
            assert g.shape == h.shape and g.dtype == np.float64
            assert rel(g, h) < 1e-8


@needs_torch
def test_training_on_torch_follows_the_numba_trajectory(registry):
    """Fifty full-batch Adam steps (the memorisation set-up: ReLU, MSE, frozen nothing)."""
    from harness.engine.gradients import GradientEngine

    rng = np.random.default_rng(5)
    start, X, y = network(rng, d=8, widths=(8, 8, 8)), rng.standard_normal((40, 8)), rng.standard_normal(40)
    act, loss = registry.create("activation", "relu"), registry.create("loss", "mse")
    shapes = [W.shape for W in start]
    finals, curves = [], []
    for engine in (GradientEngine(shapes, act), registry.create("backend", "torch").gradient_engine(shapes, act)):
        opt = registry.create("optimizer", "adam", {"lr": 0.01})
        weights = [W.copy() for W in start]
        state, losses = opt.init_state(weights), []
        for _ in range(50):
            res = engine.loss_and_grads(weights, X, y, loss)
            losses.append(res.loss)
            opt.step(weights, res.grads, state)
        finals.append(weights)
        curves.append(np.array(losses))
        assert np.array_equal(engine.predict(weights, X), engine.predict(weights, X))
    assert curves[1][-1] < 0.5 * curves[1][0]  # it trains
    assert rel(curves[1], curves[0]) < 1e-8
    for a, b in zip(*finals):
        assert rel(a, b) < 1e-8


@needs_torch
def test_a_new_inputs_array_is_uploaded_again(registry):
    rng = np.random.default_rng(6)
    weights = network(rng)
    act = registry.create("activation", "tanh")
    engine = registry.create("backend", "torch").gradient_engine([W.shape for W in weights], act)
    X1, X2 = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    from harness.engine.network import forward

    assert rel(engine.predict(weights, X1), forward(weights, X1, act).output) < 1e-12
    assert rel(engine.predict(weights, X2), forward(weights, X2, act).output) < 1e-12


class Softsign(Activation):
    name = "test_softsign"
    help = "x / (1 + |x|), NumPy only"

    def phi(self, x):
        return x / (1 + np.abs(x))

    def dphi(self, x):
        return 1 / (1 + np.abs(x)) ** 2

    def d2phi(self, x):
        return -2 * np.sign(x) / (1 + np.abs(x)) ** 3


class FakeSigmoid(Softsign):
    """Claims the sigmoid kernel but is another function: the probe check must notice."""

    name = "test_fake_sigmoid"
    jit_code = "sigmoid"


@needs_torch
@pytest.mark.parametrize("cls", [Softsign, FakeSigmoid])
def test_other_activations_use_their_numpy_functions(registry, cls):
    import torch

    from harness.engine.ntk import ntk_gram
    from harness_plugins.torch_backend import TorchActivation

    act = cls()
    assert not TorchActivation(act, torch).native
    assert TorchActivation(registry.create("activation", "sigmoid"), torch).native
    rng = np.random.default_rng(7)
    weights, X = network(rng), rng.standard_normal((9, 6))
    assert rel(registry.create("backend", "torch").ntk(weights, X, act), jacobian_ntk(weights, X, act)) < 1e-8
    assert rel(registry.create("backend", "torch").ntk(weights, X, act), ntk_gram(weights, X, act)) < 1e-8


@needs_torch
def test_device_auto_and_cuda(registry):
    import torch

    auto = registry.create("backend", "torch").torch_device()
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-CUDA error cannot be shown here")
    backend = registry.create("backend", "torch", {"device": "cuda"})
    with pytest.raises(PluginError, match=r"'cuda' asked for.*no CUDA device.*device = \"cpu\""):
        backend.ntk(network(np.random.default_rng(0)), np.zeros((3, 6)), registry.create("activation", "tanh"))


@needs_torch
def test_torch_backend_conforms():
    from harness.plugin.conformance import assert_conforms

    results = assert_conforms("backend", "torch")
    assert any(r.name == "ntk" and r.passed and not r.skipped for r in results)


@needs_torch
def test_benchmark_file_selects_the_backend_and_rows_agree(registry, tmp_path, monkeypatch):
    from harness import api
    metrics = {}
    for backend in ("numba", "torch"):
        spec = tmp_path / f"{backend}.toml"
        spec.write_text(f'[benchmark]\nname = "{backend}"\nseed = 3\nrepetitions = 2\n\n[[experiments]]\n'
                        f'experiment = "test_ntk_probe"\nbackend = {{ name = "{backend}", device = "cpu" }}\n'
                        if backend == "torch" else
                        f'[benchmark]\nname = "{backend}"\nseed = 3\nrepetitions = 2\n\n[[experiments]]\n'
                        f'experiment = "test_ntk_probe"\nbackend = "{backend}"\n', encoding="utf-8")
        run_dir = api.run(str(spec), registry=registry, results_dir=tmp_path / "results", progress=False, figures=False,
                          executor="inline")  # this process's patched registry runs the cells
        rows = sorted(run_dir.read_rows(), key=lambda r: r["repetition"])
        assert [r["status"] for r in rows] == ["ok", "ok"], rows[0]["error"]
        metrics[backend] = [(r["metrics"]["trace"], r["metrics"]["lambda_min"]) for r in rows]
    assert rows[0]["components"]["backend"] == {"name": "torch", "params": {"device": "cpu"}}
    assert np.allclose(metrics["torch"], metrics["numba"], rtol=1e-8, atol=0)
    assert metrics["numba"][0] != metrics["numba"][1]  # two repetitions, two networks


# ----------------------------------------------------------------------------- benchmarks/gpu_check.py

def load_gpu_check():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_skips_without_torch(no_torch, capsys):
    assert load_gpu_check().main([]) == 0
    assert "gpu_check skipped: torch is not installed" in capsys.readouterr().out


@needs_torch
def test_gpu_check_skips_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert load_gpu_check().main([]) == 0
    assert "gpu_check skipped: no CUDA device" in capsys.readouterr().out


@needs_torch
def test_gpu_check_runs_small_on_the_cpu(tmp_path, capsys):
    import json

    out = tmp_path / "gpu.json"
    assert load_gpu_check().main(["--device", "cpu", "--small", "--no-point", "--repeats", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fig1 NTK N=200" in text and "fig2 Adam N=300" in text and text.count("ratio") == 2
    results = json.loads(out.read_text())["results"]
    assert [r["case"].split()[0] for r in results] == ["fig1", "fig2"]
    for r in results:
        assert r["cpu_s"] > 0 and r["gpu_s"] > 0 and r["ratio"] == pytest.approx(r["cpu_s"] / r["gpu_s"])
        assert all(v < 1e-8 for k, v in r.items() if k.startswith("rel_diff_"))
    assert results[0]["lambda_min"] > 0 and results[1]["final_loss"] > 0


@needs_torch
@pytest.mark.parametrize("experiment, extra", [
    ("memorization", 'N = 40\nd = 5\nmax_epochs = 60\nwindow = 20\narchitecture = { name = "fc", widths = ["d", "d"] }\n'),
    ("two_layer_memorization", "m = 30\nd = 6\nsteps = 60\n"),
])
def test_training_experiments_give_the_same_rows_on_both_backends(registry, experiment, extra):
    from harness.runner.execute import run_cell
    from harness.spec import parse_spec

    rows = {}
    for backend in ("numba", "torch"):
        text = (f'[benchmark]\nname = "b"\nseed = 3\n[[experiments]]\nexperiment = "{experiment}"\n{extra}'
                + ('backend = { name = "torch", device = "cpu" }\n' if backend == "torch" else 'backend = "numba"\n'))
        (cell,) = parse_spec(text, "b.toml", registry=registry).cells()
        rows[backend] = run_cell(cell, registry)
    assert rows["numba"]["status"] == rows["torch"]["status"] == "ok"
    a, b = rows["numba"]["metrics"], rows["torch"]["metrics"]
    assert a["final_loss"] > 0
    assert rel(np.array(a["final_loss"]), np.array(b["final_loss"])) < 1e-8
    assert np.allclose(rows["numba"]["curves"]["loss_curve"], rows["torch"]["curves"]["loss_curve"], rtol=1e-8)


@needs_torch
def test_ntk_spectrum_gives_the_same_eigenvalues_on_both_backends(registry):
    from harness.runner.execute import run_cell
    from harness.spec import parse_spec

    metrics = {}
    for backend in ("numba", "torch"):
        text = ('[benchmark]\nname = "b"\nseed = 5\n[[experiments]]\nexperiment = "ntk_spectrum"\n'
                'N = 100\nd = 9\nkernels = ["full", "W2"]\nsolver = "eigvalsh"\n'
                'architecture = { name = "fc", widths = [40, 30] }\ndataset = { name = "gaussian", targets = "zero" }\n'
                + ('backend = { name = "torch", device = "cpu" }\n' if backend == "torch" else 'backend = "numba"\n'))
        (cell,) = parse_spec(text, "b.toml", registry=registry).cells()
        row = run_cell(cell, registry)
        assert row["status"] == "ok", row["error"]
        metrics[backend] = row["metrics"]
    for key in ("lambda_min_full", "lambda_max_full", "trace_full", "lambda_min_W2", "trace_W2"):
        a, b = metrics["numba"][key], metrics["torch"][key]
        assert a > 0 and abs(a - b) <= 1e-8 * abs(a), key


@needs_torch
def test_gpu_check_runs_a_whole_threshold_point_on_the_cpu():
    """The Figure 2 threshold point of gpu_check, tiny: the search of memorization_threshold.toml
    (levels -3, -4, -6) steered by float32 stacks trained on the torch backend (device cpu)."""
    from harness.plugin.manager import load_registry
    from harness.runner.search import STATUSES

    registry = load_registry()
    gpu = registry.create("backend", "torch", {"device": "cpu"})
    lines = []
    point = load_gpu_check().run_point(registry, gpu, repetitions=2, cpu_epochs=2, max_epochs=120, d=10, window=20,
                                       log=lines.append)
    visited = point["visited"]
    Ns = [v["N"] for v in visited]
    assert len(set(Ns)) == len(Ns) >= 2 and Ns[0] == round(1.2 * 10 * 10)  # the file's start at d = 10
    for v in visited:
        assert len(v["epochs"]) == 2 and all(1 <= e <= 120 for e in v["epochs"])
        assert v["cpu_s_estimate"] == pytest.approx(v["cpu_s_per_network_epoch"] * sum(v["epochs"]))
        assert v["ratio"] == pytest.approx(v["cpu_s_estimate"] / v["device_s"])
    assert [lv["level"] for lv in point["levels"]] == [-3.0, -4.0, -6.0]
    aggregate = {v["N"]: v["mean_log10_reported"] for v in visited}
    for lv in point["levels"]:
        assert lv["status"] in STATUSES
        if lv["status"] == "found":  # a bracket of visited values on the two sides of the level
            assert aggregate[lv["lower"]] <= lv["level"] < aggregate[lv["upper"]]
            assert lv["lower"] <= lv["threshold"] <= lv["upper"]
    assert point["device_s"] == pytest.approx(sum(v["device_s"] for v in visited))
    assert lines[0].startswith("fig2 threshold point: d = 10, 2 repetitions, float32")
    assert lines[-1].startswith(f"  the point: {len(Ns)} values of N")
