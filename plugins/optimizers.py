"""Built-in optimizers: gradient descent with a step set at initialisation by a rule, SGD and Adam.

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
  This rule is *not* the paper's step (Bombari et al. 2022 state theirs only up to a constant,
  see ``paper``); it is the classical step of smooth optimisation applied to the NTK at
  initialisation.
- ``rule = "paper"``: ``eta = c C (gamma N d n)^{-1}``, with ``n = n_{L-1}`` the last hidden
  width (the output layer's fan-in) and ``gamma``, ``C`` expressions in ``N``, ``d``, ``n``
  (defaults ``"1"``): the form of the step of Bombari, Amani and Mondelli's (2022)
  gradient-descent theorem, ``eta <= C (gamma N d n_{L-1})^{-1}``, where ``gamma`` is the scale
  of their initialisation (their eq. (18)) and ``C`` an unspecified constant. *Reconstruction*:
  eq. (18) is not available here and is not reproduced; the network keeps whatever initializer
  the benchmark names (the standard one in ours), so ``gamma`` is a free input and this is the
  paper's *scaling* of the step, not a step the paper guarantees for our initialisation. The
  step multiplies the gradient of the harness's loss as defined (the MSE is the *mean* of
  (f - y)^2): if the theorem's loss is the sum 1/2 sum_i (f_i - y_i)^2, the same trajectory on
  our mean loss needs ``C`` multiplied by ``N / 2``.
- ``rule = "ntk"``: ``eta = c / lambda_max(K(theta_0))`` (loss-agnostic; for the MSE it is
  ``2 / N`` times more cautious than ``ntk_smooth`` at the same ``c``).
- ``rule = "constant"``: ``eta = c``.

``prepare`` returns the rule (as a formula, with its constants) and the value as ``eta_rule``
and ``eta``, with ``lambda_max_K0`` and, for reference, both theory rules at the same ``c``:
``eta_ntk_smooth`` (``None`` when the loss has no curvature bound) and ``eta_paper``
(``gamma_paper`` and ``C_paper`` are the values its expressions took). The rule ``constant``
computes no eigenvalue and leaves the three reference values ``None``. The experiments write
all of these into every row.

``sgd`` — ``W <- W - lr v``, ``v <- momentum v + g`` (plain SGD when ``momentum = 0``).

``adam`` — Kingma and Ba (2015) with bias correction:
``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
``W <- W - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.

Precision: the state (moments, momentum buffers) has the weights' dtype, and every step computes
in it: the scalars of a step (step sizes, betas, eps, the bias corrections, computed in float64
from the step count) are rounded to the weights' dtype first (:func:`_real`), so a float32
network is updated in float32 arithmetic as PyTorch's optimizers update one, and a stack of
members (the batched steppers) gets the very numbers each member gets alone.
"""
from __future__ import annotations

import numpy as np

from harness.engine.jit import njit  # Numba kernels loaded on first call, cached on disk
from harness.plugin import Expr, Optimizer, Param, UserError, hookimpl

_BATCH = Param("batch_size", int, None, "samples per step; unset: full batch", min=1)


def _real(W: np.ndarray):
    """The scalar type of the weights ``W`` (``np.float32`` or ``np.float64``): a step's scalars
    are converted with it, so that the step computes in the weights' precision."""
    return W.dtype.type


def _positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


PAPER_CONSTANT = Expr("N", "d", "n", shown="N, d, n (= n_{L-1})")
"""A ``gd_theory`` constant of rule ``paper``: a number or an expression in N, d, n."""


# ---- gradient descent with a step set at initialisation by a rule (ntk_smooth, paper, ntk, constant) --

class GDTheory(Optimizer):
    name = "gd_theory"
    help = ("full-batch GD with step set at initialisation: rule ntk_smooth (default), "
            "eta = c N / (curvature lambda_max(K0)); rule paper, eta = c C / (gamma N d n_{L-1})")
    params = (
        Param("rule", str, "ntk_smooth", "step rule", choices=("ntk_smooth", "paper", "ntk", "constant")),
        Param("c", float, 1.0, "multiplier of the rule (ntk_smooth: c < 2 keeps the linearised "
              "model monotone; c = 1 is the 1/smoothness step)", check=_positive),
        PAPER_CONSTANT.param("gamma", "1", "rule paper: gamma, the initialisation scale of the paper's "
                             "eq. (18) (not reproduced), as an expression in N, d, n = n_{L-1}"),
        PAPER_CONSTANT.param("C", "1", "rule paper: the unspecified constant C, as an expression in "
                             "N, d, n = n_{L-1}"),
        Param("method", str, "auto", "how lambda_max(K0) is computed",
              choices=("auto", "dense", "matvec")),
    )
    batch_size = None

    RULES = {
        "ntk_smooth": "eta = c N / (curvature lambda_max(K0))",
        "paper": "eta = c C / (gamma N d n_{L-1})",
        "ntk": "eta = c / lambda_max(K0)",
        "constant": "eta = c",
    }

    eta: float | None = None

    def paper_constants(self, problem) -> tuple[dict, float, float]:
        """``({N, d, n}, gamma, C)`` of rule ``paper`` for ``problem`` (``n = n_{L-1}``, the
        number of columns of the output layer)."""
        sizes = {"N": int(problem.X.shape[0]), "d": int(problem.X.shape[1]),
                 "n": int(np.shape(problem.weights[-1])[1])}
        gamma, C = (float(PAPER_CONSTANT.value(v, sizes)) for v in (self.gamma, self.C))
        return sizes, gamma, C

    def prepare(self, problem) -> dict:
        from harness.engine.step_size import ntk_lambda_max, ntk_smooth_step, paper_step

        lam = eta_smooth = eta_paper = gamma = C = None
        if self.rule == "constant":
            eta = self.c
        else:
            lam = ntk_lambda_max(problem.weights, problem.X, problem.activation,
                                 problem.trainable, method=self.method,
                                 network=getattr(problem, "network", None))
            if not lam > 0:
                raise ValueError(f"lambda_max(K0) = {lam}: cannot set a step from it")
            sizes, gamma, C = self.paper_constants(problem)
            eta_paper = paper_step(sizes["N"], sizes["d"], sizes["n"], gamma, C, self.c)
            kappa = getattr(problem.loss, "curvature", None)
            if kappa is not None:
                eta_smooth = ntk_smooth_step(sizes["N"], lam, kappa, self.c)
            if self.rule == "ntk":
                eta = self.c / lam
            elif self.rule == "paper":
                eta = eta_paper
            else:
                if kappa is None:
                    raise UserError(f"gd_theory rule 'ntk_smooth' needs a smooth loss; loss "
                                    f"{problem.loss.name!r} has no curvature bound (use rule "
                                    f"'paper', 'ntk' or 'constant')")
                eta = eta_smooth
        self.eta = float(eta)
        consts = f"c = {self.c:g}"
        if self.rule == "paper":
            for name, text, value in (("gamma", self.gamma, gamma), ("C", self.C, C)):
                shown = f"{value:g}"
                consts += f", {name} = " + (shown if str(text) == shown else f"{text} = {shown}")
        return {"eta_rule": f"{self.rule}: {self.RULES[self.rule]} ({consts})",
                "eta": self.eta, "lambda_max_K0": lam,
                "eta_ntk_smooth": eta_smooth, "eta_paper": eta_paper,
                "gamma_paper": gamma, "C_paper": C}

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
                W -= _real(W)(eta) * g
        state["t"] += 1

    @classmethod
    def batch_stepper(cls, optimizers, stacks):
        """Fused steps of a stack of members (see :mod:`harness.engine.batched_training`)."""
        return _GDStack([o._eta() for o in optimizers], stacks)

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
            real = _real(W)
            if self.momentum:
                _sgd_momentum(W, g, state["buf"][l], real(self.lr), real(self.momentum))
            else:
                W -= real(self.lr) * g
        state["t"] += 1

    @classmethod
    def batch_stepper(cls, optimizers, stacks):
        """Fused steps of a stack of members (see :mod:`harness.engine.batched_training`);
        ``None`` when their momenta differ."""
        if len({o.momentum for o in optimizers}) != 1:
            return None
        return _SGDStack([o.lr for o in optimizers], optimizers[0].momentum, stacks)

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
def _adam(W, g, m, v, step_size, beta1, c1, beta2, c2, eps_hat, sqrt_bc2):
    """One fused Adam update of a 2-D block, in place, in the dtype of the scalars (the weights'):
    ``m, v`` moments (``c1 = 1 - beta1``, ``c2 = 1 - beta2``);
    ``W -= step_size * m / (sqrt(v) / sqrt_bc2 + eps_hat)``."""
    n, k = W.shape
    for i in range(n):
        for j in range(k):
            gij = g[i, j]
            mij = beta1 * m[i, j] + c1 * gij
            vij = beta2 * v[i, j] + c2 * gij * gij
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
            real = _real(W)
            _adam(W, g, state["m"][l], state["v"][l], real(self.lr / bc1), real(self.beta1),
                  real(1.0 - self.beta1), real(self.beta2), real(1.0 - self.beta2), real(self.eps),
                  real(sqrt_bc2))
        state["t"] = t

    @classmethod
    def batch_stepper(cls, optimizers, stacks):
        """Fused steps of a stack of members (see :mod:`harness.engine.batched_training`);
        ``None`` when their betas or eps differ (learning rates may differ)."""
        if len({(o.beta1, o.beta2, o.eps) for o in optimizers}) != 1:
            return None
        return _AdamStack([o.lr for o in optimizers], optimizers[0], stacks)

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


# ---- stacks of members (batched training) -------------------------------------------------------
# The same arithmetic as the single-network kernels above, member by member over a stack
# (R, n, k) of weight matrices, with per-member step sizes; members whose ``mask`` entry is
# false are left untouched. Steppers keep one state entry per stack position (``select``
# reorders them when members leave the stack).


@njit(nogil=True, cache=True)
def _adam_stack(W, g, m, v, step_size, beta1, c1, beta2, c2, eps_hat, sqrt_bc2, mask):
    R, n, k = W.shape
    for r in range(R):
        if not mask[r]:
            continue
        s, c = step_size[r], sqrt_bc2[r]
        for i in range(n):
            for j in range(k):
                gij = g[r, i, j]
                mij = beta1 * m[r, i, j] + c1 * gij
                vij = beta2 * v[r, i, j] + c2 * gij * gij
                m[r, i, j] = mij
                v[r, i, j] = vij
                W[r, i, j] -= s * mij / (np.sqrt(vij) / c + eps_hat)


@njit(nogil=True, cache=True)
def _sgd_stack(W, g, lr, mask):
    R, n, k = W.shape
    for r in range(R):
        if not mask[r]:
            continue
        a = lr[r]
        for i in range(n):
            for j in range(k):
                W[r, i, j] -= a * g[r, i, j]


@njit(nogil=True, cache=True)
def _sgd_momentum_stack(W, g, buf, lr, momentum, mask):
    R, n, k = W.shape
    for r in range(R):
        if not mask[r]:
            continue
        a = lr[r]
        for i in range(n):
            for j in range(k):
                b = momentum * buf[r, i, j] + g[r, i, j]
                buf[r, i, j] = b
                W[r, i, j] -= a * b


class _GDStack:
    def __init__(self, etas, stacks):
        self.lr = np.array(etas, dtype=stacks[0].dtype)  # the members' steps, in the weights' dtype

    def step(self, stacks, grads, mask):
        lr = self.lr[:len(mask)]
        for W, g in zip(stacks, grads):
            if g is not None:
                _sgd_stack(W, g, lr, mask)

    def select(self, keep):
        self.lr = self.lr[list(keep)]


class _SGDStack(_GDStack):
    def __init__(self, lrs, momentum, stacks):
        super().__init__(lrs, stacks)
        self.momentum = _real(stacks[0])(momentum)
        self.buf = [np.zeros_like(W) for W in stacks] if self.momentum else None

    def step(self, stacks, grads, mask):
        if not self.momentum:
            return super().step(stacks, grads, mask)
        k = len(mask)
        lr = self.lr[:k]
        for W, g, b in zip(stacks, grads, self.buf):
            if g is not None:
                _sgd_momentum_stack(W, g, b[:k], lr, self.momentum, mask)

    def select(self, keep):
        super().select(keep)
        if self.buf is not None:
            n = len(keep)
            for b in self.buf:
                b[:n] = b[list(keep)]


class _AdamStack:
    def __init__(self, lrs, adam, stacks):
        self.lr = [float(x) for x in lrs]
        self.beta1, self.beta2, self.eps = adam.beta1, adam.beta2, adam.eps
        self.dtype = stacks[0].dtype
        real = self.dtype.type
        self.scalars = (real(self.beta1), real(1.0 - self.beta1), real(self.beta2), real(1.0 - self.beta2),
                        real(self.eps))  # as Adam.step passes them
        self.t = [0] * len(self.lr)
        self.m = [np.zeros_like(W) for W in stacks]
        self.v = [np.zeros_like(W) for W in stacks]

    def step(self, stacks, grads, mask):
        k = len(mask)
        step_size = np.zeros(k, dtype=self.dtype)
        sqrt_bc2 = np.ones(k, dtype=self.dtype)
        for r in range(k):
            if mask[r]:  # the scalars exactly as Adam.step computes them
                t = self.t[r] + 1
                bc1 = 1.0 - self.beta1 ** t
                sqrt_bc2[r] = np.sqrt(1.0 - self.beta2 ** t)
                step_size[r] = self.lr[r] / bc1
                self.t[r] = t
        beta1, c1, beta2, c2, eps = self.scalars
        for W, g, m, v in zip(stacks, grads, self.m, self.v):
            if g is not None:
                _adam_stack(W, g, m[:k], v[:k], step_size, beta1, c1, beta2, c2, eps, sqrt_bc2, mask)

    def select(self, keep):
        keep = list(keep)
        n = len(keep)
        self.lr = [self.lr[i] for i in keep]
        self.t = [self.t[i] for i in keep]
        for a in (*self.m, *self.v):
            a[:n] = a[keep]


OPTIMIZERS = (GDTheory, SGD, Adam)


@hookimpl
def harness_register_optimizers(registry):
    for component in OPTIMIZERS:
        registry.add(component)
