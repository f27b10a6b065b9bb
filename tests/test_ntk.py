"""The NTK engine (harness/engine/ntk.py, gram.py, pointwise.py, jacobian.py,
autograd_reference.py): K from the structured formula against J J^T from explicit Jacobians."""
import tracemalloc

import numpy as np
import pytest
from activations_for_tests import Softplus  # noqa: E402

from harness import Activation
from harness.engine.gram import hadamard_gram_sums
from harness.engine.jacobian import jacobian, jacobian_ntk, parameter_offsets
from harness.engine.ntk import check_network, ntk_blocks, ntk_factors, ntk_gram, ntk_kernels
from harness.engine.pointwise import KERNELS, fused_kernel, phi_dphi_inplace
from tests.autograd_reference import autograd_jacobian, autograd_ntk

ACTIVATIONS = ["sigmoid", "relu", "tanh", "quadratic", "identity"]


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def network(registry, d, widths, initializer="fan_in_gaussian", seed=0, N=17):
    rng = np.random.default_rng(seed)
    init = registry.create("initializer", initializer)
    sizes = [d] + list(widths) + [1]
    shapes = [(sizes[l + 1], sizes[l]) for l in range(len(sizes) - 1)]
    weights = init.initialize(shapes, rng)
    X = rng.standard_normal((N, d))
    return weights, X


CASES = [  # (activation, input dim, hidden widths, initializer)
    ("sigmoid", 6, [], "fan_in_gaussian"),
    ("sigmoid", 5, [9, 7], "fan_in_gaussian"),
    ("relu", 4, [8, 3, 6], "he"),
    ("tanh", 7, [5], "orthogonal"),
    ("tanh", 3, [6, 6, 6, 4], "lecun"),
    ("quadratic", 5, [4, 7], "lecun"),
    ("identity", 6, [3, 8], "fan_in_gaussian"),
    ("relu", 9, [12], "fan_in_gaussian"),
]


@pytest.mark.parametrize("act,d,widths,init", CASES)
def test_ntk_equals_jacobian_products(registry, act, d, widths, init):
    activation = registry.create("activation", act)
    weights, X = network(registry, d, widths, init, seed=len(widths) + d)
    K = ntk_gram(weights, X, activation, tile=5)  # several tiles, the last one ragged
    J_numba = jacobian(weights, X, activation)
    J_auto = autograd_jacobian(weights, X, activation)
    assert J_numba.shape == (X.shape[0], parameter_offsets(weights)[-1])
    assert rel(J_numba, J_auto) < 1e-12
    assert rel(K, J_numba @ J_numba.T) < 1e-10
    assert rel(K, J_auto @ J_auto.T) < 1e-10
    assert np.array_equal(K, K.T)
    # blocks: each layer's block is the Gram matrix of that layer's Jacobian columns
    blocks = ntk_blocks(weights, X, activation)
    assert sorted(blocks) == list(range(1, len(weights) + 1))
    for l, Kl in blocks.items():
        assert rel(Kl, autograd_ntk(weights, X, activation, [l])) < 1e-10
    assert rel(sum(blocks.values()), K) < 1e-13


def test_layer_subsets_and_groups(registry):
    activation = registry.create("activation", "sigmoid")
    weights, X = network(registry, 6, [10, 8, 7], seed=3, N=40)
    J = jacobian(weights, X, activation)
    off = parameter_offsets(weights)
    for layers in ([2], [1, 3], [2, 3, 4], [4]):
        cols = np.concatenate([np.arange(off[l - 1], off[l]) for l in layers])
        Js = J[:, cols]
        assert rel(ntk_gram(weights, X, activation, layers, tile=16), Js @ Js.T) < 1e-10
        assert rel(jacobian_ntk(weights, X, activation, layers), Js @ Js.T) < 1e-13
    out = ntk_kernels(weights, X, activation, {"full": None, "W2": [2], "top": [3, 4]}, tile=9)
    assert rel(out["full"], J @ J.T) < 1e-10
    assert rel(out["W2"] + out["top"], ntk_gram(weights, X, activation, [2, 3, 4])) < 1e-12
    with pytest.raises(ValueError, match="subset of 1..4"):
        ntk_gram(weights, X, activation, [5])


def test_per_layer_blocks_from_one_pass_sum_to_the_full_k(registry):
    """Fig. 1's network (sigmoid, d -> d -> d -> 1, output weights N(0, 1)): the full K and the
    blocks K_W1, K_W2, K_W3 from one ntk_kernels call; the blocks add up to the full K to
    round-off, and each block is the Gram matrix of its layer's Jacobian columns."""
    activation = registry.create("activation", "sigmoid")
    rng = np.random.default_rng(7)
    d, N = 12, 90
    init = registry.create("initializer", "fan_in_gaussian", {"beta": 1.0, "output_variance": 1.0})
    weights = init.initialize([(d, d), (d, d), (1, d)], rng)
    X = rng.standard_normal((N, d))
    out = ntk_kernels(weights, X, activation, {"full": None, "W1": [1], "W2": [2], "W3": [3]}, tile=32)
    assert list(out) == ["full", "W1", "W2", "W3"]
    total = out["W1"] + out["W2"] + out["W3"]
    eps = np.finfo(np.float64).eps
    assert np.abs(total - out["full"]).max() <= 8 * eps * np.abs(out["full"]).max()
    J = jacobian(weights, X, activation)
    off = parameter_offsets(weights)
    for l in (1, 2, 3):
        Jl = J[:, off[l - 1]:off[l]]
        assert rel(out[f"W{l}"], Jl @ Jl.T) < 1e-12
    # Weyl: lambda_min of the sum is at least the sum of the blocks' lambda_min
    lam = {k: np.linalg.eigvalsh(K)[0] for k, K in out.items()}
    assert lam["full"] >= lam["W1"] + lam["W2"] + lam["W3"] - 1e-10 * np.linalg.eigvalsh(out["full"])[-1]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("tile,chunk", [(None, None), (7, 5), (64, 3), (1000, 1000)])
def test_tiles_threads_and_chunks_do_not_change_k(registry, threads, tile, chunk):
    activation = registry.create("activation", "tanh")
    weights, X = network(registry, 11, [13, 9], seed=5, N=101)
    ref = jacobian_ntk(weights, X, activation)
    factors = ntk_factors(weights, X, activation, threads=threads, chunk=chunk)
    terms = [factors[l] for l in sorted(factors)]
    K = hadamard_gram_sums(terms, [[0, 1, 2]], tile=tile, threads=threads)[0]
    assert rel(K, ref) < 1e-12
    assert np.array_equal(K, K.T)


def test_float32(registry):
    activation = registry.create("activation", "sigmoid")
    weights, X = network(registry, 20, [30, 25], seed=8, N=64)
    K64 = ntk_gram(weights, X, activation)
    K32 = ntk_gram(weights, X, activation, dtype=np.float32)
    assert K32.dtype == np.float32 and K64.dtype == np.float64
    err = rel(K32, K64)
    assert 1e-9 < err < 1e-5  # float32 rounding: clearly not float64, but accurate to ~1e-6
    w32 = [w.astype(np.float32) for w in weights]
    K = ntk_gram(w32, X.astype(np.float32), activation)  # dtype float64 is the default
    assert K.dtype == np.float64
    assert rel(K, ntk_gram([w.astype(np.float64) for w in w32], X.astype(np.float32).astype(np.float64),
                           activation)) < 1e-15


class MislabelledSigmoid(Softplus):
    """Claims the sigmoid kernel but computes softplus: the probe must reject the kernel."""

    name = "mislabelled_test"
    jit_code = "sigmoid"


class ScaledTanh(Activation):
    """tanh(2x) claiming the plain tanh kernel."""

    name = "scaled_tanh_test"
    jit_code = "tanh"

    def phi(self, x):
        return np.tanh(2 * x)

    def dphi(self, x):
        return 2 * (1 - np.tanh(2 * x) ** 2)


@pytest.mark.parametrize("cls", [Softplus, MislabelledSigmoid, ScaledTanh])
def test_activation_without_usable_kernel(registry, cls):
    activation = cls()
    assert fused_kernel(activation) is None
    weights, X = network(registry, 5, [7, 6], seed=2, N=23)
    assert rel(ntk_gram(weights, X, activation, tile=8), autograd_ntk(weights, X, activation)) < 1e-10


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_kernels_match_plugins(registry, name, dtype):
    activation = registry.create("activation", name)
    assert activation.jit_code in KERNELS
    assert fused_kernel(activation) is not None
    x = np.random.default_rng(1).standard_normal((37, 29)).astype(dtype) * 6
    x[0, :4] = [0.0, 50.0, -50.0, 1e-8]
    G = x.copy()
    D = phi_dphi_inplace(G, activation)
    assert D.dtype == dtype
    tol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(G, activation.phi(x.astype(np.float64)), rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(D, activation.dphi(x.astype(np.float64)), rtol=tol, atol=tol * 1e-3)


def test_shape_checks(registry):
    activation = registry.create("activation", "relu")
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match="W_2 has shape"):
        ntk_gram([np.zeros((4, 3)), np.zeros((1, 5))], X, activation)
    with pytest.raises(ValueError, match="one row"):
        check_network([np.zeros((4, 3)), np.zeros((2, 4))], X)
    with pytest.raises(ValueError, match=r"X must be \(N, d\)"):
        check_network([np.zeros((1, 3))], np.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        check_network([], X)


def test_memory_stays_near_one_kernel(registry):
    """Peak allocation of ntk_gram within 1.5x of (N^2 + 3 N n) floats (the issue's budget)."""
    activation = registry.create("activation", "sigmoid")
    N, n = 1024, 192
    weights, X = network(registry, n, [n, n], seed=1, N=N)
    ntk_gram(weights, X, activation)  # warm-up: compilation, caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        K = ntk_gram(weights, X, activation, threads=2)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    budget = 8 * (N * N + 3 * N * n)
    assert K.nbytes <= peak <= 1.5 * budget, (peak / budget)


def test_thread_runner_propagates_errors_and_restores_blas():
    from threadpoolctl import threadpool_info

    from harness.engine.threads import engine_threads, run_in_threads

    before = [i["num_threads"] for i in threadpool_info()]
    seen = []

    def work(state, item):
        seen.append(item)
        if item == 3:
            raise KeyError("item 3")

    with pytest.raises(KeyError, match="item 3"):
        run_in_threads(work, range(8), 2)
    assert 3 in seen
    assert [i["num_threads"] for i in threadpool_info()] == before
    with pytest.raises(ValueError):
        engine_threads(0)
    assert engine_threads(3) == 3
