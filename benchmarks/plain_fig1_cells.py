"""The plain NumPy/SciPy yardstick of benchmarks/fig1_four_cells.toml: the same four Fig. 1 cells
(Bombari, Amani and Mondelli, NeurIPS 2022), written as a user would, with no harness import.

Per cell: N = 2048 inputs x ~ N(0, I_d) with d = 512; a 3-layer sigmoid network d -> d -> d -> 1
without biases (hidden weights N(0, 1/fan_in), output weights N(0, 1)); the NTK Gram matrix over
all weights by the plain formula

    K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)          (N x N, o = entrywise product)

with F_l the forward activations (F_0 = X) and B_l the back-propagated signals (B_3 = 1,
B_l = sigmoid'(G_l) * (B_{l+1} W_{l+1})); then lambda_min(K) by LAPACK
(scipy.linalg.eigvalsh with subset_by_index=[0, 0]). Prints one line per cell.
``python benchmarks/plain_fig1_cells.py N d`` runs other sizes (as ``-s experiments.fig1.grid.N=[N]
-s experiments.fig1.grid.d=[d]`` does for the harness run).

The random streams are the harness's (root seed 2022, one child per repetition, streams "data"
and "init"), so each printed lambda_min is the one in the harness run's rows.lambda_min_full,
to round-off. Time it as a whole process against the harness run, e.g.

    python benchmarks/plain_fig1_cells.py
    harness run benchmarks/fig1_four_cells.toml -q --results-dir /tmp/fig1
"""
import hashlib
import json
import sys

import numpy as np
import scipy.linalg

ROOT_SEED, REPETITIONS = 2022, 4
N, D = (int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (2048, 512)


def _hash32(text):
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def stream(repetition, name):
    """The generator of one named stream of one repetition (the harness's seeding)."""
    coords = _hash32("coords:" + json.dumps({"N": N, "d": D}, sort_keys=True, separators=(",", ":")))
    key = (coords, repetition, _hash32("stream:" + name))
    return np.random.default_rng(np.random.SeedSequence(ROOT_SEED, spawn_key=key))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ntk_gram(X, Ws):
    """K = J J^T over every weight of the bias-free sigmoid network ``Ws`` (hidden layers, then
    the (1, n) output layer), without forming the Jacobian."""
    Fs, Gs = [X], []
    for W in Ws[:-1]:
        Gs.append(Fs[-1] @ W.T)
        Fs.append(sigmoid(Gs[-1]))
    B = np.ones((X.shape[0], 1))
    K = Fs[-1] @ Fs[-1].T  # the output layer: B_L = 1
    for l in range(len(Ws) - 2, -1, -1):
        s = sigmoid(Gs[l])
        B = s * (1.0 - s) * (B @ Ws[l + 1])
        K += (Fs[l] @ Fs[l].T) * (B @ B.T)
    return K


def main():
    for rep in range(REPETITIONS):
        X = stream(rep, "data").standard_normal((N, D))
        rng = stream(rep, "init")
        Ws = [rng.standard_normal((D, D)) / np.sqrt(D), rng.standard_normal((D, D)) / np.sqrt(D),
              rng.standard_normal((1, D))]
        K = ntk_gram(X, Ws)
        lam = scipy.linalg.eigvalsh(K, subset_by_index=[0, 0], overwrite_a=True, check_finite=False)[0]
        print(f"repetition {rep}: N={N} d={D} lambda_min={float(lam)!r}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
