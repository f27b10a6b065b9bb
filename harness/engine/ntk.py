"""The empirical NTK Gram matrix of a bias-free fully-connected network, without its Jacobian.

Network and notation as in :mod:`harness.engine.network`: weights ``[W_1, ..., W_L]``,
``W_l`` of shape (n_l, n_{l-1}), the output layer (1, n_{L-1}); ``F_0 = X`` (N, d),
``G_l = F_{l-1} W_l^T``, ``F_l = phi(G_l)``; signals ``B_L = 1``,
``B_l = phi'(G_l) o (B_{l+1} W_{l+1})`` (N, n_l). Since ``d f_i / d W_l = B_l[i]^T F_{l-1}[i]``,
the NTK block of layer ``l`` (the Gram matrix of the Jacobian columns of ``W_l``) is

    K_l = (F_{l-1} F_{l-1}^T) o (B_l B_l^T)      (N, N),     K = sum_l K_l = J J^T,

and the N x P Jacobian is never formed. Layers are numbered from 1 (``W_1``) to L (the output).

Cost: the forward and backward products (about 2 N sum_l n_l n_{l-1} flops each way) and one
pair of Gram products per layer, computed tile by tile over the upper triangle
(:func:`harness.engine.gram.hadamard_gram_sums`). Memory: the (N, N) outputs, the factors
``F_{l-1}`` and ``B_l`` of the requested layers (O(N sum n_l); for the full K of a network with
equal widths n, about 4 N n floats) and scratch of a few row blocks and tiles per thread;
pre-activations are overwritten in place by the fused activation kernels of
:mod:`harness.engine.pointwise`. Measured peak at (N, n) = (2048, 512): 1.2 x (N^2 + 3 N n)
floats.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .gram import hadamard_gram_sums
from .pointwise import phi_dphi_inplace
from .threads import engine_threads, run_in_threads

__all__ = ["ntk_gram", "ntk_blocks", "ntk_kernels", "ntk_factors", "check_network", "network_factors",
           "network_kernels"]

_ROW_CHUNK = 256  # rows per block in the forward and backward passes


def check_network(weights: Sequence[np.ndarray], X: np.ndarray) -> list[int]:
    """Validate shapes; return the sizes ``[n_0 = d, n_1, ..., n_L = 1]``."""
    if len(weights) == 0:
        raise ValueError("a network needs at least one weight matrix")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (N, d), got shape {X.shape}")
    sizes = [X.shape[1]]
    for l, W in enumerate(weights, start=1):
        W = np.asarray(W)
        if W.ndim != 2 or W.shape[1] != sizes[-1]:
            raise ValueError(f"W_{l} has shape {W.shape}, expected (n_{l}, {sizes[-1]})")
        sizes.append(W.shape[0])
    if sizes[-1] != 1:
        raise ValueError(f"the output layer W_{len(weights)} must have one row, got {sizes[-1]}")
    return sizes


def layer_list(layers: Sequence[int] | None, L: int) -> list[int]:
    """The sorted 1-based layer numbers ``layers`` of an ``L``-layer network (``None``: all)."""
    if layers is None:
        return list(range(1, L + 1))
    out = sorted({int(l) for l in layers})
    if not out or out[0] < 1 or out[-1] > L:
        raise ValueError(f"layers must be a non-empty subset of 1..{L}, got {list(layers)}")
    return out


def ntk_factors(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                layers: Sequence[int] | None = None, dtype=np.float64, *,
                threads: int | None = None,
                chunk: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """The Gram factors ``{l: (F_{l-1}, B_l)}`` of the requested layers (1-based).

    ``F_{l-1}`` is (N, n_{l-1}), ``B_l`` is (N, n_l), both C-contiguous in ``dtype``;
    ``B_L`` (the output layer's signal, all ones) is returned as ``None``.

    Rows are independent, so the forward and backward passes run on blocks of ``chunk`` rows,
    one block per thread at a time (single-threaded BLAS inside): each block goes through every
    layer while it is in cache, and only the requested factors are kept at full size.
    """
    dtype = np.dtype(dtype)
    sizes = check_network(weights, X)
    L = len(weights)
    wanted = layer_list(layers, L)
    lowest = wanted[0]
    Ws = [np.ascontiguousarray(W, dtype=dtype) for W in weights]
    X = np.ascontiguousarray(X, dtype=dtype)
    N = X.shape[0]
    n_threads = engine_threads(threads)
    if chunk is None:
        chunk = min(_ROW_CHUNK, max(32, -(-N // (2 * n_threads))))
    chunk = max(1, min(int(chunk), max(N, 1)))
    # full-size arrays: F_l where layer l+1 is wanted, B_l (kept in D_l) where l is wanted
    F_full = {l: np.empty((N, sizes[l]), dtype) for l in range(1, L) if l + 1 in wanted}
    D_full = {l: np.empty((N, sizes[l]), dtype) for l in range(1, L) if l in wanted}
    widest = max(sizes[1:L], default=1)

    def make_state():
        F_tmp = {l: np.empty((chunk, sizes[l]), dtype) for l in range(1, L) if l not in F_full}
        D_tmp = {l: np.empty((chunk, sizes[l]), dtype) for l in range(1, L) if l not in D_full}
        return F_tmp, D_tmp, np.empty(chunk * widest, dtype)

    def work(state, r0):
        F_tmp, D_tmp, T_buf = state
        rows = slice(r0, min(r0 + chunk, N))
        m = rows.stop - rows.start
        f = X[rows]
        d_chunks = {}
        for l in range(1, L):
            g = F_full[l][rows] if l in F_full else F_tmp[l][:m]
            np.matmul(f, Ws[l - 1].T, out=g)
            d = D_full[l][rows] if l in D_full else D_tmp[l][:m]
            phi_dphi_inplace(g, activation, d)  # g <- phi(g), d <- phi'(g)
            d_chunks[l] = d
            f = g
        b = None
        for l in range(L - 1, lowest - 1, -1):  # d_chunks[l] becomes B_l[rows]
            d = d_chunks[l]
            if b is None:
                np.multiply(d, Ws[L - 1][0], out=d)
            else:
                T = T_buf[: m * sizes[l]].reshape(m, sizes[l])
                np.matmul(b, Ws[l], out=T)
                np.multiply(d, T, out=d)
            b = d

    if L > 1:
        run_in_threads(work, range(0, N, chunk), n_threads, make_state)
    F_all = {0: X, **F_full}
    return {l: (F_all[l - 1], D_full.get(l)) for l in wanted}


def ntk_kernels(weights: Sequence[np.ndarray], X: np.ndarray, activation,
                groups: Mapping[str, Sequence[int] | None], dtype=np.float64, *,
                tile: int | None = None, threads: int | None = None) -> dict[str, np.ndarray]:
    """Several sums of NTK blocks at once: ``{name: sum_{l in layers} K_l}``, each (N, N).

    ``groups`` maps a name to a list of 1-based layers (``None``: all layers). Each block's
    Gram products are computed once even when it appears in several groups.
    """
    L = len(weights)
    resolved = {name: layer_list(layers, L) for name, layers in groups.items()}
    needed = sorted({l for ls in resolved.values() for l in ls})
    factors = ntk_factors(weights, X, activation, needed, dtype, threads=threads)
    index = {l: k for k, l in enumerate(needed)}
    terms = [factors[l] for l in needed]
    outs = hadamard_gram_sums(terms, [[index[l] for l in ls] for ls in resolved.values()],
                              tile=tile, threads=threads)
    return dict(zip(resolved, outs))


def ntk_gram(weights: Sequence[np.ndarray], X: np.ndarray, activation,
             layers: Sequence[int] | None = None, dtype=np.float64, *,
             tile: int | None = None, threads: int | None = None) -> np.ndarray:
    """The NTK Gram matrix ``K = sum_{l in layers} K_l`` (N, N) in ``dtype``.

    ``weights``: ``[W_1, ..., W_L]``; ``X``: (N, d); ``activation``: an Activation component;
    ``layers``: 1-based layer numbers (``None``: all, i.e. ``K = J J^T`` over every weight).
    """
    return ntk_kernels(weights, X, activation, {"K": layers}, dtype, tile=tile, threads=threads)["K"]


def ntk_blocks(weights: Sequence[np.ndarray], X: np.ndarray, activation,
               layers: Sequence[int] | None = None, dtype=np.float64, *,
               tile: int | None = None, threads: int | None = None) -> dict[int, np.ndarray]:
    """The per-layer blocks ``{l: K_l}`` (each (N, N)) for ``l`` in ``layers`` (1-based;
    ``None``: all layers)."""
    L = len(weights)
    ls = layer_list(layers, L)
    out = ntk_kernels(weights, X, activation, {str(l): [l] for l in ls}, dtype,
                      tile=tile, threads=threads)
    return {l: out[str(l)] for l in ls}


# ----------------------------------------------------------------------------------------------
# general networks: biases, residual blocks, per-layer activations (harness.engine.network.Network)


def parameter_list(params: Sequence[int] | None, n: int) -> list[int]:
    """The sorted 0-based parameter indices ``params`` of a network with ``n`` (``None``: all)."""
    if params is None:
        return list(range(n))
    out = sorted({int(p) for p in params})
    if not out or out[0] < 0 or out[-1] >= n:
        raise ValueError(f"parameters must be a non-empty subset of 0..{n - 1}, got {list(params)}")
    return out


def network_factors(net, params: Sequence[np.ndarray], X: np.ndarray, activation,
                    wanted: Sequence[int] | None = None, dtype=np.float64, *,
                    threads: int | None = None,
                    chunk: int | None = None) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """The Gram factors of the requested parameters (0-based indices into ``params``) of the
    :class:`~harness.engine.network.Network` ``net``: ``(H_{l-1}, B_l)`` for ``W_l`` (``B_L``
    is ``None``: all ones) and ``(B_l, None)`` for ``b_l`` (``(1, None)`` for the output bias),
    so that each parameter's NTK block is ``(A A^T) o (C C^T)``.

    The same row-block scheme as :func:`ntk_factors`: a residual block keeps its state
    ``h_l = h_{l-1} + alpha phi(g_l)`` and ``alpha phi'(g_l)``; back-propagation carries
    ``S_l = df/dh_l`` (``S_{l-1} = B_l W_l + S_l`` through a residual block).
    """
    dtype = np.dtype(dtype)
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.ndim != 2 or X.shape[1] != net.d:
        raise ValueError(f"X must be (N, {net.d}), got shape {X.shape}")
    net.check_parameters(params)
    L, N = net.L, X.shape[0]
    wanted_p = parameter_list(wanted, net.n_params)
    layer_of = net.parameter_layers()
    layers = sorted({layer_of[p] for p in wanted_p})
    lowest = layers[0]
    Ws = [np.ascontiguousarray(params[i], dtype=dtype) for i in net.weight_index]
    bs = [None if i is None else np.ascontiguousarray(params[i][:, 0], dtype=dtype) for i in net.bias_index]
    acts = net.activations(activation)
    res = [l.residual for l in net.layers]
    alpha = [float(l.alpha) for l in net.layers]
    sizes = [net.d] + [l.fan_out for l in net.layers]
    weight_wanted = {layer_of[p] for p in wanted_p if p in net.weight_index}
    n_threads = engine_threads(threads)
    if chunk is None:
        chunk = min(_ROW_CHUNK, max(32, -(-N // (2 * n_threads))))
    chunk = max(1, min(int(chunk), max(N, 1)))
    # 1-based l: H_l kept where W_{l+1} is wanted; B_l (in D_l) kept where layer l is wanted
    H_full = {l: np.empty((N, sizes[l]), dtype) for l in range(1, L) if l + 1 in weight_wanted}
    D_full = {l: np.empty((N, sizes[l]), dtype) for l in range(1, L) if l in layers}
    widest = max(sizes[1:L], default=1)

    def make_state():
        H_tmp = {l: np.empty((chunk, sizes[l]), dtype) for l in range(1, L) if l not in H_full}
        D_tmp = {l: np.empty((chunk, sizes[l]), dtype) for l in range(1, L) if l not in D_full}
        return H_tmp, D_tmp, [np.empty(chunk * widest, dtype) for _ in range(2)]

    def work(state, r0):
        H_tmp, D_tmp, T_bufs = state
        rows = slice(r0, min(r0 + chunk, N))
        m = rows.stop - rows.start
        h = X[rows]
        d_chunks = {}
        for l in range(1, L):
            g = H_full[l][rows] if l in H_full else H_tmp[l][:m]
            np.matmul(h, Ws[l - 1].T, out=g)
            if bs[l - 1] is not None:
                g += bs[l - 1]
            d = D_full[l][rows] if l in D_full else D_tmp[l][:m]
            phi_dphi_inplace(g, acts[l - 1], d)  # g <- phi(g), d <- phi'(g)
            if res[l - 1]:
                g *= alpha[l - 1]
                g += h
                d *= alpha[l - 1]
            d_chunks[l] = d
            h = g
        b = None
        S = None  # S_l = df/dh_l while layer l is residual (needed for S_{l-1})
        flip = 0
        for l in range(L - 1, lowest - 1, -1):  # d_chunks[l] becomes B_l[rows]
            d = d_chunks[l]
            T = T_bufs[flip][: m * sizes[l]].reshape(m, sizes[l])
            flip ^= 1
            if b is None:
                T[...] = Ws[L - 1][0]
            else:
                np.matmul(b, Ws[l], out=T)
                if res[l]:  # layer l + 1 (0-based l) is residual: S_l = B_{l+1} W_{l+1} + S_{l+1}
                    T += S
            np.multiply(d, T, out=d)
            S = T
            b = d

    if L > 1:
        run_in_threads(work, range(0, N, chunk), n_threads, make_state)
    H_all = {0: X, **H_full}
    ones = None
    out: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    for p in wanted_p:
        l = layer_of[p]
        if p == net.weight_index[l - 1]:
            out[p] = (H_all[l - 1], D_full.get(l))
        elif l < L:
            out[p] = (D_full[l], None)
        else:
            if ones is None:
                ones = np.ones((N, 1), dtype)
            out[p] = (ones, None)
    return out


def network_kernels(net, params: Sequence[np.ndarray], X: np.ndarray, activation,
                    groups: Mapping[str, Sequence[int] | None], dtype=np.float64, *,
                    tile: int | None = None, threads: int | None = None) -> dict[str, np.ndarray]:
    """``{name: sum_{p in group} K_p}`` for a :class:`~harness.engine.network.Network`;
    ``groups`` map a name to 0-based parameter indices (``None``: every parameter). A plain
    network goes through :func:`ntk_kernels` (the same numbers, the original code path)."""
    resolved = {name: parameter_list(ps, net.n_params) for name, ps in groups.items()}
    if net.plain:
        return ntk_kernels(list(params), X, activation,
                           {name: [p + 1 for p in ps] for name, ps in resolved.items()},
                           dtype, tile=tile, threads=threads)
    needed = sorted({p for ps in resolved.values() for p in ps})
    factors = network_factors(net, params, X, activation, needed, dtype, threads=threads)
    # A layer whose weight and bias are both in a group contributes one term,
    # K_W + K_b = ([H, 1] [H, 1]^T) o (B B^T): the bias costs a column, not a second Gram product.
    keys_of = {}
    for name, ps in resolved.items():
        keys = []
        for l in range(net.L):
            w, b = net.weight_index[l], net.bias_index[l]
            if b is not None and w in ps and b in ps:
                keys.append(("Wb", l))
            else:
                keys += [("p", p) for p in (w, b) if p is not None and p in ps]
        keys_of[name] = keys
    all_keys = sorted({k for ks in keys_of.values() for k in ks}, key=lambda k: (k[1], k[0]))
    terms = []
    for kind, i in all_keys:
        if kind == "p":
            terms.append(factors[i])
        else:
            H, B = factors[net.weight_index[i]]
            A = np.empty((H.shape[0], H.shape[1] + 1), dtype=H.dtype)
            A[:, :-1] = H
            A[:, -1] = 1.0
            terms.append((A, B))
    index = {k: t for t, k in enumerate(all_keys)}
    outs = hadamard_gram_sums(terms, [[index[k] for k in keys_of[name]] for name in resolved],
                              tile=tile, threads=threads)
    return dict(zip(resolved, outs))
