"""The plain PyTorch yardstick of benchmarks/fig2_ten_networks.toml: the same ten Fig. 2 networks
(Bombari, Amani and Mondelli, NeurIPS 2022) trained on the CPU one after the other, written as a
user would, with no harness import (NumPy draws the data and weights; PyTorch trains).

Per network: N = 1200 inputs x ~ N(0, I_d) with d = 38 and targets y ~ N(0, 1); a 4-layer ReLU
network d -> d -> d -> d -> 1 without biases (nn.Linear(bias=False); hidden weights
N(0, 1/fan_in), output weights N(0, 1)); full-batch Adam (torch.optim.Adam, default betas,
lr = 1/(10 sqrt(N))) on the loss mean((f - y)^2) for exactly 2000 epochs, in float64 (the
harness's default). Prints the final loss of each network (the loss at the final weights).

The random streams are the harness's (root seed 2022, one child per repetition, streams "data"
and "init"), so the networks start from the weights and data of the harness run's cells; their
final losses agree with the rows' final_loss only roughly (2000 Adam steps amplify rounding).
Time it as a whole process against the harness run, e.g.

    python benchmarks/plain_torch_fig2_networks.py
    harness run benchmarks/fig2_ten_networks.toml -q --results-dir /tmp/fig2
"""
import hashlib
import json
import math

import numpy as np
import torch

ROOT_SEED, NETWORKS, N, D, EPOCHS = 2022, 10, 1200, 38, 2000


def _hash32(text):
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def stream(repetition, name):
    """The generator of one named stream of one repetition (the harness's seeding)."""
    coords = _hash32("coords:" + json.dumps({"N": N, "d": D}, sort_keys=True, separators=(",", ":")))
    key = (coords, repetition, _hash32("stream:" + name))
    return np.random.default_rng(np.random.SeedSequence(ROOT_SEED, spawn_key=key))


def network(weights):
    layers = []
    for l, W in enumerate(weights):
        linear = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
        layers.append(linear)
        if l < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def main():
    for rep in range(NETWORKS):
        data = stream(rep, "data")
        X = torch.from_numpy(data.standard_normal((N, D)))
        y = torch.from_numpy(data.standard_normal(N))
        init = stream(rep, "init")
        shapes = [(D, D)] * 3 + [(1, D)]
        weights = [np.sqrt(1.0 / D) * init.standard_normal(s) for s in shapes[:-1]]
        weights.append(init.standard_normal(shapes[-1]))
        net = network(weights)
        opt = torch.optim.Adam(net.parameters(), lr=1.0 / (10.0 * math.sqrt(N)))
        for _ in range(EPOCHS):
            opt.zero_grad(set_to_none=True)
            loss = ((net(X).squeeze(1) - y) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(((net(X).squeeze(1) - y) ** 2).mean())
        print(f"network {rep}: d={D} N={N} epochs={EPOCHS} final_loss={final!r}", flush=True)


if __name__ == "__main__":
    main()
