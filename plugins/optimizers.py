"""Built-in optimizers: gradient descent with a theory-set step, SGD and Adam.

All follow :class:`harness.Optimizer`: ``prepare(problem)`` (what to record in the row),
``init_state(weights)``, ``step(weights, grads, state)`` (in place; ``None`` gradients are
frozen layers and are skipped) and ``reference_step`` (the update rule in plain NumPy, for the
conformance suite). ``batch_size`` (``None`` = full batch) tells the training loop how many
samples each step sees.

``gd_theory`` — full-batch gradient descent with the step computed at initialisation:

- ``rule = "ntk_smooth"`` (default): ``eta = c N / (kappa lambda_max(K(theta_0)))``, where
  ``K`` is the NTK over the trainable layers and ``kappa`` the loss's ``curvature`` (a bound on
  the per-sample ``d^2 l / df^2``: 2 for the MSE without 1/2, 1/4 for the logistic loss).
  Why: for the linearised model ``f(theta) = f_0 + J (theta - theta_0)`` the mean loss has
  Hessian ``J^T H_f J`` with ``H_f <= (kappa / N) I``, so it is ``beta``-smooth with
  ``beta = kappa lambda_max(J J^T) / N = kappa lambda_max(K) / N``. The descent lemma gives
  ``L(theta - eta g) <= L(theta) - eta (1 - eta beta / 2) |g|^2``: every step decreases the loss
  for ``eta < 2 / beta`` (``c < 2``), and ``eta = 1 / beta`` (``c = 1``) maximises the
  guaranteed decrease while keeping a factor 2 from the edge, which absorbs the drift of ``K``
  during training of a wide network. For the MSE this is ``eta = N / (2 lambda_max(K_0))``:
  the residual evolves as ``r <- (I - (2 eta / N) K) r``, whose top mode is removed in one step.
- ``rule = "ntk"``: ``eta = c / lambda_max(K(theta_0))`` (loss-agnostic; for the MSE it is
  ``2 / N`` times more cautious than ``ntk_smooth`` at the same ``c``).
- ``rule = "constant"``: ``eta = c``.

The rule (as a formula) and the value are returned by ``prepare`` as ``eta_rule`` and ``eta``
(with ``lambda_max_K0``), which the experiments write into every row.

``sgd`` — ``W <- W - lr v``, ``v <- momentum v + g`` (plain SGD when ``momentum = 0``).

``adam`` — Kingma and Ba (2015) with bias correction:
``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
``W <- W - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
"""
from __future__ import annotations


import numpy as np
from numba import njit

from harness import Optimizer, Param, hookimpl
from harness.errors import UserError

_BATCH = Param("batch_size", int, None, "samples per step; unset: full batch", min=1)


def _positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


# ---- gradient descent with the theoretical step ----------------------------------------------

class GDTheory(Optimizer):
    name = "gd_theory"
    help = "full-batch GD with step set at initialisation, default eta = c N / (curvature lambda_max(K0))"
    params = (
        Param("rule", str, "ntk_smooth", "step rule", choices=("ntk_smooth", "ntk", "constant")),
        Param("c", float, 1.0, "multiplier of the rule (ntk_smooth: c < 2 keeps the linearised "
              "model monotone; c = 1 is the 1/smoothness step)", check=_positive),
        Param("method", str, "auto", "how lambda_max(K0) is computed",
              choices=("auto", "dense", "matvec")),
    )
    batch_size = None

    RULES = {
        "ntk_smooth": "eta = c N / (curvature lambda_max(K0))",
        "ntk": "eta = c / lambda_max(K0)",
        "constant": "eta = c",
    }

    eta: float | None = None

    def prepare(self, problem) -> dict:
        from harness.engine.step_size import ntk_lambda_max

        lam = None
        if self.rule == "constant":
            eta = self.c
        else:
            lam = ntk_lambda_max(problem.weights, problem.X, problem.activation,
                                 problem.trainable, method=self.method)
            if not lam > 0:
                raise ValueError(f"lambda_max(K0) = {lam}: cannot set a step from it")
            if self.rule == "ntk":
                eta = self.c / lam
            else:
                kappa = getattr(problem.loss, "curvature", None)
                if kappa is None:
                    raise UserError(f"gd_theory rule 'ntk_smooth' needs a smooth loss; loss "
                                    f"{problem.loss.name!r} has no curvature bound (use rule 'ntk' "
                                    f"or 'constant')")
                eta = self.c * problem.X.shape[0] / (kappa * lam)
        self.eta = float(eta)
        return {"eta_rule": f"{self.rule}: {self.RULES[self.rule]} (c = {self.c:g})",
                "eta": self.eta, "lambda_max_K0": lam}

    def _eta(self) -> float:
        if self.eta is None:
            raise RuntimeError("gd_theory.prepare(problem) must run before step")
        return self.eta

    def init_state(self, weights):
        return {"t": 0}

    def step(self, weights, grads, state) -> None:
        eta = self._eta()
        for W, g in zip(weights, grads):
            if g is not None:
                W -= eta * g
        state["t"] += 1

    def reference_step(self, weights, grads, state):
        eta = self._eta()
        new = [W - eta * g if g is not None else W.copy() for W, g in zip(weights, grads)]
        return new, {"t": state["t"] + 1}


# ---- SGD ---------------------------------------------------------------------------------

@njit(cache=True)
def _sgd_momentum(W, g, buf, lr, momentum):
    """``buf <- momentum buf + g``; ``W <- W - lr buf`` (2-D arrays, in place)."""
    n, m = W.shape
    for i in range(n):
        for j in range(m):
            b = momentum * buf[i, j] + g[i, j]
            buf[i, j] = b
            W[i, j] -= lr * b


class SGD(Optimizer):
    name = "sgd"
    help = "stochastic gradient descent (optional heavy-ball momentum)"
    params = (
        Param("lr", float, 0.01, "step size", check=_positive),
        _BATCH,
        Param("momentum", float, 0.0, "heavy-ball coefficient (0: plain SGD)", min=0.0, max=0.999999),
    )

    def prepare(self, problem) -> dict:
        return {"lr": self.lr}

    def init_state(self, weights):
        buf = [np.zeros_like(W) for W in weights] if self.momentum else None
        return {"t": 0, "buf": buf}

    def step(self, weights, grads, state) -> None:
        for l, (W, g) in enumerate(zip(weights, grads)):
            if g is None:
                continue
            if self.momentum:
                _sgd_momentum(W, g, state["buf"][l], self.lr, self.momentum)
            else:
                W -= self.lr * g
        state["t"] += 1

    def reference_step(self, weights, grads, state):
        new_w, new_buf = [], []
        for l, (W, g) in enumerate(zip(weights, grads)):
            if g is None:
                new_w.append(W.copy())
                new_buf.append(None if state["buf"] is None else state["buf"][l].copy())
                continue
            if self.momentum:
                b = self.momentum * state["buf"][l] + g
                new_buf.append(b)
                new_w.append(W - self.lr * b)
            else:
                new_w.append(W - self.lr * g)
        return new_w, {"t": state["t"] + 1, "buf": new_buf if self.momentum else None}


# ---- Adam --------------------------------------------------------------------------------

@njit(cache=True)
def _adam(W, g, m, v, step_size, beta1, beta2, eps_hat, sqrt_bc2):
    """One fused Adam update of a 2-D block, in place:
    ``m, v`` moments; ``W -= step_size * m / (sqrt(v) / sqrt_bc2 + eps_hat)``."""
    n, k = W.shape
    for i in range(n):
        for j in range(k):
            gij = g[i, j]
            mij = beta1 * m[i, j] + (1.0 - beta1) * gij
            vij = beta2 * v[i, j] + (1.0 - beta2) * gij * gij
            m[i, j] = mij
            v[i, j] = vij
            W[i, j] -= step_size * mij / (np.sqrt(vij) / sqrt_bc2 + eps_hat)


class Adam(Optimizer):
    name = "adam"
    help = "Adam (Kingma and Ba) with bias correction; defaults lr 1e-3, betas (0.9, 0.999), eps 1e-8"
    params = (
        Param("lr", float, 1e-3, "step size", check=_positive),
        Param("beta1", float, 0.9, "first-moment decay", min=0.0, max=0.999999999),
        Param("beta2", float, 0.999, "second-moment decay", min=0.0, max=0.999999999),
        Param("eps", float, 1e-8, "added to sqrt(v hat)", min=0.0),
        _BATCH,
    )

    def prepare(self, problem) -> dict:
        return {"lr": self.lr}

    def init_state(self, weights):
        return {"t": 0, "m": [np.zeros_like(W) for W in weights],
                "v": [np.zeros_like(W) for W in weights]}

    def step(self, weights, grads, state) -> None:
        t = state["t"] + 1
        bc1 = 1.0 - self.beta1 ** t
        sqrt_bc2 = np.sqrt(1.0 - self.beta2 ** t)
        for l, (W, g) in enumerate(zip(weights, grads)):
            if g is None:
                continue
            _adam(W, g, state["m"][l], state["v"][l], self.lr / bc1, self.beta1, self.beta2,
                  self.eps, sqrt_bc2)
        state["t"] = t

    def reference_step(self, weights, grads, state):
        t = state["t"] + 1
        new_w, new_m, new_v = [], [], []
        for W, g, m, v in zip(weights, grads, state["m"], state["v"]):
            if g is None:
                new_w.append(W.copy()), new_m.append(m.copy()), new_v.append(v.copy())
                continue
            m = self.beta1 * m + (1 - self.beta1) * g
            v = self.beta2 * v + (1 - self.beta2) * g ** 2
            m_hat = m / (1 - self.beta1 ** t)
            v_hat = v / (1 - self.beta2 ** t)
            new_w.append(W - self.lr * m_hat / (np.sqrt(v_hat) + self.eps))
            new_m.append(m)
            new_v.append(v)
        return new_w, {"t": t, "m": new_m, "v": new_v}


OPTIMIZERS = (GDTheory, SGD, Adam)


@hookimpl
def harness_register_optimizers(registry):
    for component in OPTIMIZERS:
        registry.add(component)
