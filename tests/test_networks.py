"""Networks with biases, residual blocks and any forward (issue 15).

The structured NTK (``K_W = (H H^T) o (B B^T)``, ``K_b = B B^T``), the training gradients and the
batched training of :class:`harness.engine.network.Network` against autograd differentiating a
forward written here independently; the generic (autograd) path against the structured one; the
built-in ``fc`` with biases and ``residual``; refusal of inconsistent declarations; saved arrays.
"""
from __future__ import annotations

import json
import re

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import jacobian as ag_jacobian

from harness import Architecture, Param
from harness.engine.batched_training import Member, train_batch
from harness.engine.generic import GenericGradientEngine, generic_kernels
from harness.engine.network import Dense, Network
from harness.engine.ntk import network_kernels, ntk_gram
from harness.engine.structured import GenericModel, NetworkGradientEngine
from harness.engine.training import train
from harness.plugin.manager import load_registry

REGISTRY = load_registry()


def act(name):
    return REGISTRY.create("activation", name)


def reference_forward(params, X, net, activation):
    """The network written directly in autograd.numpy from its description (independent of
    Network.forward_pass and of every engine)."""
    from harness.engine.generic import autograd_activation

    h, k = X, 0
    for l, layer in enumerate(net.layers):
        W = params[k]
        k += 1
        g = anp.dot(h, W.T)
        if layer.bias:
            g = g + anp.reshape(params[k], (1, -1))
            k += 1
        if l == net.L - 1:
            return anp.reshape(g, (-1,))
        a = autograd_activation(layer.activation or activation).phi(g)
        h = h + layer.alpha * a if layer.residual else a


def autograd_K(net, params, X, activation, wanted=None):
    wanted = list(range(net.n_params)) if wanted is None else wanted
    shapes = [params[p].shape for p in wanted]

    def f(theta):
        ps, pos = list(params), 0
        for p, s in zip(wanted, shapes):
            n = int(np.prod(s))
            ps[p] = anp.reshape(theta[pos:pos + n], s)
            pos += n
        return reference_forward(ps, X, net, activation)

    J = ag_jacobian(f)(np.concatenate([params[p].ravel() for p in wanted]))
    return J @ J.T


def random_params(net, rng, bias_scale=0.5):
    return [rng.standard_normal(s) * (bias_scale if s[1] == 1 and name.startswith("b") else 1 / np.sqrt(s[1]))
            for s, name in zip(net.parameter_shapes(), net.parameter_names())]


NETWORKS = {
    "fc_bias_1": lambda d, n: [Dense(n, d, bias=True), Dense(1, n, bias=True)],
    "fc_bias_3": lambda d, n: [Dense(n, d, bias=True), Dense(n + 2, n, bias=True), Dense(n, n + 2, bias=True),
                               Dense(1, n, bias=True)],
    "fc_hidden_bias_only": lambda d, n: [Dense(n, d, bias=True), Dense(n, n, bias=True), Dense(1, n)],
    "residual_1": lambda d, n: [Dense(n, d), Dense(n, n, residual=True, alpha=0.5), Dense(1, n)],
    "residual_3_bias": lambda d, n: [Dense(n, d, bias=True)]
    + [Dense(n, n, bias=True, residual=True, alpha=a) for a in (1.0, 0.3, -0.7)] + [Dense(1, n, bias=True)],
    "residual_mixed_act": lambda d, n: [Dense(n, d, bias=True, activation=act("sigmoid")),
                                        Dense(n, n, residual=True, alpha=1.5, activation=act("relu")),
                                        Dense(n, n, bias=True), Dense(1, n, bias=True)],
}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_structured_ntk_equals_autograd(name, activation):
    rng = np.random.default_rng(abs(hash((name, activation))) % 2 ** 32)
    d, n, N = 5, 7, 13
    net = Network(NETWORKS[name](d, n))
    params = random_params(net, rng)
    X = rng.standard_normal((N, d))
    groups = {"full": None, **{nm: [i] for i, nm in enumerate(net.parameter_names())}}
    K = network_kernels(net, params, X, act(activation), groups)
    scale = np.abs(autograd_K(net, params, X, act(activation))).max()
    for key, ps in groups.items():
        ref = autograd_K(net, params, X, act(activation), ps)
        assert np.max(np.abs(K[key] - ref)) <= 1e-10 * scale, (key, np.max(np.abs(K[key] - ref)))


def test_structured_ntk_row_blocks_and_threads():
    """Several row blocks and threads give the same K as one block."""
    from harness.engine.gram import hadamard_gram_sums
    from harness.engine.ntk import network_factors

    rng = np.random.default_rng(3)
    net = Network(NETWORKS["residual_3_bias"](6, 9))
    params = random_params(net, rng)
    X = rng.standard_normal((70, 6))
    ref = autograd_K(net, params, X, act("tanh"))
    for chunk, threads in ((7, 1), (16, 2), (70, 2)):
        f = network_factors(net, params, X, act("tanh"), None, chunk=chunk, threads=threads)
        K = hadamard_gram_sums([f[p] for p in sorted(f)], [list(range(len(f)))], tile=32, threads=threads)[0]
        assert np.max(np.abs(K - ref)) <= 1e-10 * np.abs(ref).max()


def test_plain_network_is_the_original_engine():
    rng = np.random.default_rng(4)
    net = Network.chain([(6, 4), (5, 6), (1, 5)])
    assert net.plain and net.parameter_names() == ["W1", "W2", "W3"]
    params = random_params(net, rng)
    X = rng.standard_normal((20, 4))
    K = network_kernels(net, params, X, act("sigmoid"), {"full": None})["full"]
    assert np.array_equal(K, ntk_gram(params, X, act("sigmoid")))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("name", ["fc_bias_3", "residual_3_bias", "residual_mixed_act", "residual_1"])
def test_training_gradients_equal_autograd(name, activation):
    from autograd import grad

    rng = np.random.default_rng(5)
    net = Network(NETWORKS[name](4, 6))
    params = random_params(net, rng)
    X, y = rng.standard_normal((11, 4)), rng.standard_normal(11)
    loss = REGISTRY.create("loss", "mse")
    res = NetworkGradientEngine(net, act(activation)).loss_and_grads(params, X, y, loss)

    def mean_loss(ps):
        return anp.mean((reference_forward(ps, X, net, act(activation)) - y) ** 2)

    ref = grad(mean_loss)(params)
    assert abs(res.loss - mean_loss(params)) <= 1e-12
    for g, r in zip(res.grads, ref):
        assert g.shape == r.shape
        assert np.max(np.abs(g - r)) <= 1e-10 * max(1.0, np.abs(r).max())


def test_frozen_parameters_get_no_gradient():
    rng = np.random.default_rng(6)
    net = Network([Dense(5, 3, bias=True), Dense(5, 5, residual=True, bias=True), Dense(1, 5, bias=True, trainable=False)])
    params = random_params(net, rng)
    X, y = rng.standard_normal((9, 3)), rng.standard_normal(9)
    res = NetworkGradientEngine(net, act("tanh")).loss_and_grads(params, X, y, REGISTRY.create("loss", "mse"))
    assert [g is None for g in res.grads] == [False, False, False, False, True, True]


@pytest.mark.parametrize("optimizer", [("adam", {"lr": 1e-2}), ("sgd", {"lr": 0.05, "momentum": 0.9}),
                                       ("sgd", {"lr": 0.05, "batch_size": 4})])
def test_batched_training_equals_single(optimizer):
    """A stack of residual networks with biases trains bit for bit like each alone."""
    rng = np.random.default_rng(7)
    net = Network(NETWORKS["residual_3_bias"](4, 6))
    X, y = rng.standard_normal((10, 4)), rng.standard_normal(10)
    loss = REGISTRY.create("loss", "mse")
    starts = [random_params(net, np.random.default_rng(10 + k)) for k in range(3)]
    tr = net.parameter_trainable()
    members = [Member(p, X, y, REGISTRY.create("optimizer", *optimizer), max_epochs=30,
                      rng=np.random.default_rng(k)) for k, p in enumerate(starts)]
    batched = train_batch(members, act("tanh"), loss, trainable=tr, model=net, threads=1)
    for k, (p, b) in enumerate(zip(starts, batched)):
        single = train(p, X, y, act("tanh"), loss, REGISTRY.create("optimizer", *optimizer), trainable=tr,
                       max_epochs=30, rng=np.random.default_rng(k), model=net)
        assert np.array_equal(single.losses, b.losses)
        assert all(np.array_equal(a, c) for a, c in zip(single.weights, b.weights))


def test_generic_path_agrees_with_structured():
    rng = np.random.default_rng(8)
    net = Network(NETWORKS["residual_mixed_act"](4, 6))
    params = random_params(net, rng)
    X, y = rng.standard_normal((12, 4)), rng.standard_normal(12)
    groups = {"full": None, "W2": [2], "b1": [1]}
    K = network_kernels(net, params, X, act("tanh"), groups)
    G = generic_kernels(net.forward, params, X, act("tanh"), groups)
    for k in groups:
        assert np.max(np.abs(K[k] - G[k])) <= 1e-10 * np.abs(K["full"]).max()
    loss = REGISTRY.create("loss", "mse")
    a = NetworkGradientEngine(net, act("tanh")).loss_and_grads(params, X, y, loss)
    b = GenericGradientEngine(net.forward, act("tanh")).loss_and_grads(params, X, y, loss)
    assert all(np.max(np.abs(g - h)) <= 1e-12 for g, h in zip(a.grads, b.grads))
    model = GenericModel(net.forward, net.parameter_shapes())
    opt = lambda: REGISTRY.create("optimizer", "adam", {"lr": 1e-2})  # noqa: E731
    s = train(params, X, y, act("tanh"), loss, opt(), max_epochs=20, model=net, trainable=net.parameter_trainable())
    g = train(params, X, y, act("tanh"), loss, opt(), max_epochs=20, model=model)
    assert np.allclose(s.losses, g.losses, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- built-ins

def test_fc_bias_and_residual_builtins():
    fc = REGISTRY.create("architecture", "fc", {"widths": ["d", "2*d"], "bias": True})
    net = fc.network(3)
    assert net.parameter_names() == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert net.parameter_shapes() == [(3, 3), (3, 1), (6, 3), (6, 1), (1, 6), (1, 1)]
    assert fc.param_count(3) == 9 + 3 + 18 + 6 + 6 + 1 and fc.ntk_path(3) == "structured"
    assert REGISTRY.create("architecture", "fc").network(3).plain  # bias defaults to false
    res = REGISTRY.create("architecture", "residual", {"width": "2*d", "blocks": 3, "alpha": 0.5, "bias": True})
    net = res.network(4)
    assert res.layer_shapes(4) == [(8, 4), (8, 8), (8, 8), (8, 8), (1, 8)]
    assert [l.residual for l in net.layers] == [False, True, True, True, False]
    assert all(l.alpha == 0.5 for l in net.layers[1:4]) and all(l.bias for l in net.layers)
    # matched parameter counts: fc [n, n] and residual (width n, one block) have the same P
    assert (REGISTRY.create("architecture", "fc", {"widths": [7, 7]}).param_count(5)
            == REGISTRY.create("architecture", "residual", {"width": 7, "blocks": 1}).param_count(5))


def test_fan_in_gaussian_biases():
    arch = REGISTRY.create("architecture", "fc", {"widths": [50, 50], "bias": True})
    plain = REGISTRY.create("architecture", "fc", {"widths": [50, 50]})
    zero = REGISTRY.create("initializer", "fan_in_gaussian")
    p = arch.init_parameters(10, zero, np.random.default_rng(0))
    q = plain.init_parameters(10, zero, np.random.default_rng(0))
    assert [np.array_equal(a, b) for a, b in zip(p[::2], q)] == [True] * 3  # same weights, drawn first
    assert all(not b.any() for b in p[1::2])
    init = REGISTRY.create("initializer", "fan_in_gaussian", {"bias_variance": 0.25})
    p = arch.init_parameters(10, init, np.random.default_rng(0))
    biases = np.concatenate([b.ravel() for b in p[1::2]])
    assert abs(biases.var() - 0.25) < 0.1 and [b.shape for b in p[1::2]] == [(50, 1), (50, 1), (1, 1)]


# ----------------------------------------------------------------------------- any forward

class SkipNet(Architecture):
    """Not a chain: f = w2 . tanh(W1 x) + v . x (a linear skip from the input to the output)."""

    name = "_test_skipnet"
    help = "test"
    params = (Param("width", int, 6, "hidden width"),)

    def layer_shapes(self, d):
        return [(self.width, d), (1, self.width), (1, d)]

    def forward(self, params, X, activation):
        W1, w2, v = params
        return (activation.phi(X @ W1.T) @ w2.T + X @ v.T)[:, 0]


class LiarNet(Architecture):
    """Declares a chain network but computes something else."""

    name = "_test_liar"
    help = "test"

    def network(self, d):
        return Network.chain([(4, d), (1, 4)])

    def forward(self, params, X, activation):
        return 2.0 * self.network(X.shape[1]).forward(params, X, activation)


def test_generic_architecture_is_never_run_as_a_chain():
    arch = SkipNet()
    assert arch.network(3) is None and arch.ntk_path(3) == "generic"
    assert arch.problem(3) is None
    rng = np.random.default_rng(9)
    params = [rng.standard_normal(s) for s in arch.layer_shapes(3)]
    X = rng.standard_normal((8, 3))
    from harness_plugins.backends import NumbaBackend

    K, path = NumbaBackend().model_kernels(arch.model(3), params, X, act("tanh"), {"full": None})
    assert path == "generic"
    # by hand: J = [w2 o tanh'(W1 x) x^T, tanh(W1 x), x]
    g = X @ params[0].T
    J = np.concatenate([np.einsum("ij,ik->ijk", (1 - np.tanh(g) ** 2) * params[1], X).reshape(8, -1),
                        np.tanh(g), X], axis=1)
    assert np.allclose(K["full"], J @ J.T, rtol=1e-12, atol=1e-12)


def test_inconsistent_declarations_are_refused():
    assert "disagrees" in LiarNet().problem(3)

    class BadShapes(Architecture):
        name = "_test_bad"
        help = "test"

        def network(self, d):
            return Network([Dense(4, d), Dense(1, 5)])

    assert "fan_in 5" in BadShapes().problem(3)


# ----------------------------------------------------------------------------- runs

def _run(tmp_path, text, name="t"):
    from harness import api

    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    run_dir = api.run(str(path), results_dir=str(tmp_path / "results"), executor="inline", progress=False)
    rows = [json.loads(line) for line in open(run_dir.path / "rows.jsonl" if hasattr(run_dir, "path")
                                              else f"{run_dir}/rows.jsonl")]
    return run_dir, rows


NTK_FILE = """
[benchmark]
name = "nets"
seed = 3

[[experiments]]
id = "ntk"
experiment = "ntk_spectrum"
kernels = ["full", "b1"]
activation = "tanh"
initializer = { name = "fan_in_gaussian", bias_variance = 0.2 }
dataset = { name = "gaussian", targets = "zero" }
save_arrays = true

[experiments.grid]
N = [15]
d = [4]
architecture = [{ name = "fc", widths = ["d", "d"], bias = true }, { name = "residual", blocks = 2, alpha = 0.5, bias = true }]
"""


@pytest.mark.slow
def test_ntk_spectrum_saves_arrays_that_reproduce_K(tmp_path):
    run_dir, rows = _run(tmp_path, NTK_FILE)
    path = run_dir.path if hasattr(run_dir, "path") else run_dir
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["metrics"]["ntk_path"] == "structured"
        z = np.load(f"{path}/arrays/{r['cell_id']}.npz")
        arch = REGISTRY.create("architecture", r["components"]["architecture"]["name"],
                               r["components"]["architecture"]["params"])
        net = arch.network(4)
        names = net.parameter_names()
        assert [n for n in z.files if n not in ("X", "K")] == names and z[names[-2]].shape == (1, net.layers[-1].fan_in)
        K = autograd_K(net, [z[n] for n in names], z["X"], act("tanh"))
        assert np.max(np.abs(K - z["K"])) <= 1e-10 * np.abs(K).max()
        assert abs(np.linalg.eigvalsh(K)[0] - r["metrics"]["lambda_min_full"]) <= 1e-8 * np.abs(K).max()


@pytest.mark.slow
def test_generic_architecture_in_a_run(tmp_path, monkeypatch):
    registry = load_registry()
    registry.add(SkipNet)
    from harness import api

    text = NTK_FILE.replace('kernels = ["full", "b1"]', 'kernels = ["full", "W3"]').replace(
        'architecture = [{ name = "fc", widths = ["d", "d"], bias = true }, { name = "residual", blocks = 2, alpha = 0.5, bias = true }]',
        'architecture = ["_test_skipnet"]')
    path = tmp_path / "g.toml"
    path.write_text(text)
    run_dir = api.run(str(path), results_dir=str(tmp_path / "results"), executor="inline", progress=False,
                      registry=registry)
    rows = [json.loads(line) for line in open(f"{run_dir.path}/rows.jsonl")]
    assert rows[0]["status"] == "ok" and rows[0]["metrics"]["ntk_path"] == "generic"
    assert rows[0]["metrics"]["P"] == 6 * 4 + 6 + 4


def test_inconsistent_architecture_is_a_spec_error(tmp_path):
    registry = load_registry()
    registry.add(LiarNet)
    from harness import api
    from harness.errors import SpecError

    text = NTK_FILE.replace('kernels = ["full", "b1"]', 'kernels = ["full"]').replace(
        'architecture = [{ name = "fc", widths = ["d", "d"], bias = true }, { name = "residual", blocks = 2, alpha = 0.5, bias = true }]',
        'architecture = ["_test_liar"]')
    path = tmp_path / "l.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match="disagrees"):
        api.run(str(path), results_dir=str(tmp_path / "results"), executor="inline", progress=False,
                registry=registry)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("rows.jsonl"))


@pytest.mark.slow
def test_memorization_with_residual_and_biases(tmp_path):
    text = """
[benchmark]
name = "mem"
seed = 4
repetitions = 2

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 40
window = 10
activation = "tanh"
initializer = { name = "fan_in_gaussian", bias_variance = 0.1 }
save_arrays = true

[experiments.grid]
N = [20]
d = [4]
architecture = [{ name = "fc", widths = ["d", "d"], bias = true }, { name = "residual", blocks = 1, bias = true }]
"""
    run_dir, rows = _run(tmp_path, text, "mem")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {r["metrics"]["ntk_path"] for r in rows} == {"structured"}
    for r in rows:
        z = np.load(f"{run_dir.path}/arrays/{r['cell_id']}.npz")
        assert {"X", "y", "f", "W1", "b1", "W2", "b2", "W3", "b3"} <= set(z.files)
        arch = REGISTRY.create("architecture", r["components"]["architecture"]["name"],
                               r["components"]["architecture"]["params"])
        f = arch.network(4).forward([z[n] for n in arch.parameter_names(4)], z["X"], act("tanh"))
        assert np.allclose(f, z["f"], rtol=1e-12, atol=1e-14)
        assert abs(np.mean((f - z["y"]) ** 2) - r["metrics"]["final_loss"]) <= 1e-12
    figures = sorted(p.name for p in (run_dir.path / "figures").glob("*.png"))
    assert sum("heatmap-" in f and "final" not in f for f in figures) == 2  # one per architecture


@pytest.mark.slow
def test_conformance_covers_networks_and_generic_forwards():
    from harness.plugin.conformance import check_component

    for kind, comp in (("architecture", "residual"), ("architecture", "fc"), ("architecture", SkipNet),
                       ("initializer", "fan_in_gaussian")):
        results = check_component(kind, comp, REGISTRY) if isinstance(comp, str) else check_component(kind, comp)
        assert all(r.passed and not r.skipped for r in results), [str(r) for r in results]
        assert any(r.name in ("NTK against an independent Jacobian", "biases") for r in results)
    failed = [r for r in check_component("architecture", LiarNet) if not r.passed]
    assert failed and "disagrees" in str(failed[0])


class DetachedNet(SkipNet):
    """A forward that hides its skip weights from autograd (reads the traced value): the generic
    path's NTK then lacks their block, which only an independent derivative can see."""

    name = "_test_detached"

    def forward(self, params, X, activation):
        W1, w2, v = params
        v = getattr(v, "_value", v)
        return (activation.phi(X @ W1.T) @ w2.T + X @ v.T)[:, 0]


def test_generic_ntk_is_checked_against_finite_differences_with_the_error_printed():
    from harness.plugin.conformance import check_component
    from harness.plugin.conformance.architecture import finite_difference_jacobian

    (ntk,) = [r for r in check_component("architecture", SkipNet) if r.name == "NTK against an independent Jacobian"]
    assert ntk.passed and not ntk.skipped
    errors = [float(x) for x in re.findall(r"finite-difference J J\^T to ([0-9.e+-]+)", ntk.detail)]
    assert len(errors) == 2 and all(0 < e < 1e-8 for e in errors), ntk.detail
    (bad,) = [r for r in check_component("architecture", DetachedNet) if r.name == "NTK against an independent Jacobian"]
    assert not bad.passed and "differs from finite differences' J J^T by" in bad.detail
    # the finite-difference Jacobian itself: exact for a linear forward
    X = np.random.default_rng(0).standard_normal((5, 3))
    W = np.random.default_rng(1).standard_normal((1, 3))
    J = finite_difference_jacobian(lambda p, X, a: (X @ p[0].T)[:, 0], [W], X, None)
    assert np.allclose(J, X, rtol=1e-9, atol=1e-10)


def test_split_rows_keeps_extra_axes_apart():
    from harness.plugin.series import extra_axes, split_rows

    rows = [{"coords": {"N": N, "i": i, "d": 2 * i, "architecture": {"name": a}}, "params": {"N": N, "d": 2 * i}}
            for N in (10, 20) for i in (1, 2) for a in ("fc", "residual")]
    drawn = lambda r: (r["params"]["N"], r["params"]["d"])  # noqa: E731
    assert extra_axes(rows, drawn) == ["architecture"]  # i and d are the drawn d itself: never split
    groups = split_rows(rows, drawn)
    assert [g for g, _ in groups] == ["architecture=fc", "architecture=residual"]
    assert all(len(part) == 4 for _, part in groups)
    assert split_rows([r for r in rows if r["coords"]["architecture"]["name"] == "fc"], drawn)[0][0] == ""


@pytest.mark.slow
def test_plot_metric_cli(tmp_path):
    from click.testing import CliRunner

    from harness.cli import main

    run_dir, _ = _run(tmp_path, NTK_FILE.replace("save_arrays = true", "save_arrays = false"))
    result = CliRunner().invoke(main, ["plot", str(run_dir.path), "--metric", "lambda_min_full", "--x", "d",
                                       "--hue", "architecture", "--log"])
    assert result.exit_code == 0, result.output
    assert (run_dir.path / "figures" / "ntk-plot_lambda_min_full_vs_d_by_architecture_log.png").exists()
    bad = CliRunner().invoke(main, ["plot", str(run_dir.path), "--metric", "lambda_min_full"])
    assert bad.exit_code == 2
