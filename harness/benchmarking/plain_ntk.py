"""The baselines of ``harness bench ntk``, written as a user would: NumPy and SciPy only.

Nothing here imports the harness (a test checks it): the point of the benchmark is to compare
the engine with what anyone could write in a few lines, not with the project's own code.

The network is Figure 1 of Bombari, Amani and Mondelli (2022): ``f(x) = w_3 . phi(W_2 phi(W_1
x))``, phi = sigmoid, no biases, ``W_1`` (d, d) and ``W_2`` (d, d) with N(0, 1/d) entries, ``w_3``
(1, d) with N(0, 1) entries, inputs x ~ N(0, I_d).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg


def figure1_problem(d: int, N: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``([W_1, W_2, w_3], X)``: weights of shapes (d, d), (d, d), (1, d) and inputs X (N, d),
    float64, drawn from ``numpy.random.default_rng(seed)`` in that order."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((d, d)) / np.sqrt(d)
    W2 = rng.standard_normal((d, d)) / np.sqrt(d)
    w3 = rng.standard_normal((1, d))
    X = rng.standard_normal((N, d))
    return [W1, W2, w3], X


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def plain_ntk(weights: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """The NTK Gram matrix K = J J^T (N, N) over all weights of a bias-free sigmoid network.

    Forward pass ``F_0 = X``, ``F_l = sigmoid(F_{l-1} W_l^T)``; back-propagated signals
    ``B_L = 1``, ``B_l = sigmoid'(G_l) * (B_{l+1} W_{l+1})``; then
    ``K = sum_l (F_{l-1} F_{l-1}^T) * (B_l B_l^T)`` (``*`` entrywise).
    """
    F = [X]
    for W in weights[:-1]:
        F.append(sigmoid(F[-1] @ W.T))
    L = len(weights)
    B: list = [None] * (L + 1)  # B[l] for l = 1..L; B[L] is all ones
    b = np.ones((X.shape[0], 1))
    for l in range(L - 1, 0, -1):
        b = F[l] * (1.0 - F[l]) * (b @ weights[l])  # sigmoid'(G_l) = F_l (1 - F_l)
        B[l] = b
    K = F[L - 1] @ F[L - 1].T  # the output layer: B_L B_L^T is all ones
    for l in range(1, L):
        K += (F[l - 1] @ F[l - 1].T) * (B[l] @ B[l].T)
    return K


def plain_lambda_min(K: np.ndarray) -> float:
    """The smallest eigenvalue of K by LAPACK dsyevr, as SciPy offers it."""
    return float(scipy.linalg.eigvalsh(K, subset_by_index=[0, 0])[0])
