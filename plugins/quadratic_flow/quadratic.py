"""Quadratic networks with a quadratic teacher: population risk, gradient flow, finite-sample GD.

Model. Student ``f_W(x) = (1/m) sum_j (w_j . x)^2 = x^T A x`` with ``W = [w_1 .. w_m]`` of shape
``(d, m)`` (one neuron per column) and ``A = W W^T / m``; teacher ``f*(x) = x^T A* x`` with
``W*`` of shape ``(d, m*)`` and ``A* = W* W*^T / m*``. Inputs ``x ~ N(0, I_d)``.

Population risk. With ``Delta = A - A*`` (symmetric), ``E[(x^T Delta x)^2] = (tr Delta)^2 +
2 ||Delta||_F^2`` (Isserlis), so

    R(W) = 1/4 E[(f_W(x) - f*(x))^2] = 1/4 [(tr Delta)^2 + 2 ||Delta||_F^2],
    grad_W R = (1/m) (tr(Delta) I + 2 Delta) W                                 (d, m).

Overlaps. Everything above depends on ``W`` and ``W*`` only through ``Q = W^T W`` (m, m),
``M = W^T W*`` (m, m*) and ``P = W*^T W*`` (m*, m*): with ``tau = tr Delta = tr Q / m - tr P / m*``,

    ||Delta||_F^2 = tr(Q^2) / m^2 + tr(P^2) / m*^2 - 2 ||M||_F^2 / (m m*),
    Delta W = W Q / m - W* M^T / m*,

so no ``d x d`` matrix is ever formed: the risk, the gradient and the flow cost ``O(d m (m + m*))``
in the weights and ``O(m^2 (m + m*))`` in the overlaps.

Gradient flow and its time. ``dW/dt = -c grad_W R`` with ``c = time_factor(m, time_scale)``:
``"gradient"`` is the plain flow (``c = 1``); ``"mean_field"`` (``c = m``) moves every neuron at
``dw_j/dt = -(tau I + 2 Delta) w_j``, so that ``dA/dt = -(G A + A G)`` with
``G = tau I + 2 Delta`` does not depend on ``m`` and times are comparable across widths. The two
differ only by ``t_gradient = m t_mean_field``. In the overlaps the flow closes (``P`` is fixed):

    dQ/dt = -(c/m) [2 tau Q + (4/m) Q^2 - (4/m*) M M^T],
    dM/dt = -(c/m) [tau M + (2/m) Q M - (2/m*) M P].

Initialisations. Student and teacher are drawn independently, each as an ``"orthonormal"``
family (orthonormal columns times ``norm``: ``||w_j|| = norm`` exactly; needs ``m <= d``) or
``"gaussian"`` (entries ``N(0, norm^2 / d)``: ``E ||w_j||^2 = norm^2``). Both laws are rotation
invariant, so the initial overlaps can be drawn in ``O((m + m*)^3)`` without any vector of
length ``d`` (:func:`initial_overlaps`, Bartlett decomposition of the Wishart Gram matrices);
:func:`initial_weights` draws the weights themselves from the same law.

Finite sample. ``L_n(W) = 1/(4n) sum_i (f_W(x_i) - y_i)^2`` with ``E L_n = R`` when
``y = f*(x)``; ``grad_W L_n = X^T (r * (X W)) / (n m)``, ``r = f_W(X) - y``. Gradient descent with
step ``eta`` (time units) is ``W <- W - eta c grad_W L_n``, so step ``k`` sits at time ``k eta``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

TIME_SCALES = ("mean_field", "gradient")
INITS = ("orthonormal", "gaussian")


# ----------------------------------------------------------------------------- overlaps and risk

@dataclass
class Overlaps:
    """``Q = W^T W`` (m, m), ``M = W^T W*`` (m, m*), ``P = W*^T W*`` (m*, m*)."""

    Q: np.ndarray
    M: np.ndarray
    P: np.ndarray

    @property
    def m(self) -> int:
        return self.Q.shape[0]

    @property
    def m_star(self) -> int:
        return self.P.shape[0]

    @classmethod
    def from_weights(cls, W: np.ndarray, W_star: np.ndarray) -> "Overlaps":
        """Overlaps of ``W`` (d, m) and ``W*`` (d, m*)."""
        return cls(W.T @ W, W.T @ W_star, W_star.T @ W_star)


def trace_delta(ov: Overlaps) -> float:
    """``tr(A - A*)``."""
    return float(np.trace(ov.Q) / ov.m - np.trace(ov.P) / ov.m_star)


def frobenius_delta_sq(ov: Overlaps) -> float:
    """``||A - A*||_F^2`` from the overlaps (clipped at 0 against round-off)."""
    m, ms = ov.m, ov.m_star
    value = (np.sum(ov.Q * ov.Q) / m ** 2 + np.sum(ov.P * ov.P) / ms ** 2
             - 2.0 * np.sum(ov.M * ov.M) / (m * ms))
    return max(float(value), 0.0)


def risk_overlaps(ov: Overlaps) -> float:
    """Population risk ``1/4 [(tr Delta)^2 + 2 ||Delta||_F^2]`` from the overlaps."""
    return 0.25 * (trace_delta(ov) ** 2 + 2.0 * frobenius_delta_sq(ov))


def risk_matrices(A: np.ndarray, A_star: np.ndarray) -> float:
    """The same risk from the ``d x d`` matrices ``A`` and ``A*`` (for small ``d`` and checks)."""
    D = A - A_star
    return 0.25 * (float(np.trace(D)) ** 2 + 2.0 * float(np.sum(D * D)))


def population_risk(W: np.ndarray, W_star: np.ndarray) -> float:
    """Population risk of the student ``W`` (d, m) against the teacher ``W*`` (d, m*)."""
    return risk_overlaps(Overlaps.from_weights(W, W_star))


def population_gradient(W: np.ndarray, W_star: np.ndarray) -> np.ndarray:
    """``grad_W R = (1/m)(tau W + 2 Delta W)``, shape (d, m), with ``O(d m (m + m*))`` work."""
    ov = Overlaps.from_weights(W, W_star)
    return _gradient_from(W, W_star, ov)


def _gradient_from(W: np.ndarray, W_star: np.ndarray, ov: Overlaps) -> np.ndarray:
    m, ms = ov.m, ov.m_star
    tau = trace_delta(ov)
    delta_W = W @ (ov.Q / m) - W_star @ (ov.M.T / ms)
    return (tau * W + 2.0 * delta_W) / m


def time_factor(m: int, time_scale: str) -> float:
    """``c`` in ``dW/dt = -c grad_W R``: ``m`` for ``"mean_field"``, ``1`` for ``"gradient"``."""
    if time_scale == "mean_field":
        return float(m)
    if time_scale == "gradient":
        return 1.0
    raise ValueError(f"unknown time_scale {time_scale!r}; expected one of {TIME_SCALES}")


def overlap_cosine(ov: Overlaps) -> float:
    """``tr(A A*) / (||A||_F ||A*||_F)`` in [0, 1]: 1 exactly when ``A`` is a multiple of ``A*``."""
    num = float(np.sum(ov.M * ov.M))
    den = float(np.sqrt(np.sum(ov.Q * ov.Q) * np.sum(ov.P * ov.P)))
    return num / den if den > 0 else float("nan")


def subspace_overlap(ov: Overlaps) -> float:
    """Fraction of the student's squared weight norm inside the teacher subspace.

    ``sum_j ||Pi* w_j||^2 / sum_j ||w_j||^2 = tr(P^{-1} M^T M) / tr Q`` with ``Pi*`` the
    orthogonal projector on ``span(W*)`` (teacher of full column rank). About ``m* / d`` for
    independent random families; 1 when the student lies in the teacher subspace.
    """
    inside = float(np.trace(np.linalg.solve(ov.P, ov.M.T @ ov.M)))
    total = float(np.trace(ov.Q))
    return inside / total if total > 0 else float("nan")


# ----------------------------------------------------------------------------- flow equations

def flow_rhs_weights(W: np.ndarray, W_star: np.ndarray, c: float) -> np.ndarray:
    """``dW/dt = -c grad_W R``, shape (d, m)."""
    return -c * population_gradient(W, W_star)


def flow_rhs_overlaps(ov: Overlaps, c: float) -> tuple[np.ndarray, np.ndarray]:
    """``(dQ/dt (m, m), dM/dt (m, m*))`` of the flow, from the overlaps alone (``P`` is fixed)."""
    m, ms = ov.m, ov.m_star
    tau = trace_delta(ov)
    Q, M, P = ov.Q, ov.M, ov.P
    dQ = -(c / m) * (2.0 * tau * Q + (4.0 / m) * (Q @ Q) - (4.0 / ms) * (M @ M.T))
    dM = -(c / m) * (tau * M + (2.0 / m) * (Q @ M) - (2.0 / ms) * (M @ P))
    return dQ, dM


# ----------------------------------------------------------------------------- integration

@dataclass
class SolverOptions:
    """Options of :func:`scipy.integrate.solve_ivp`: ``method``, tolerances ``rtol``/``atol``,
    ``max_step`` (largest step in time units, ``None``: unbounded) and ``first_step``."""

    method: str = "RK45"
    rtol: float = 1e-8
    atol: float = 1e-12
    max_step: float | None = None
    first_step: float | None = None

    def kwargs(self) -> dict:
        out = {"method": self.method, "rtol": self.rtol, "atol": self.atol}
        if self.max_step is not None:
            out["max_step"] = self.max_step
        if self.first_step is not None:
            out["first_step"] = self.first_step
        return out


@dataclass
class FlowResult:
    """A trajectory: ``t`` (T,) the requested times, ``risk`` (T,) the risk there, ``crossings``
    the first time the risk falls to each requested level (``None``: not within the horizon),
    ``final`` the overlaps at the last time (and ``W_final`` (d, m) for the weight flow)."""

    t: np.ndarray
    risk: np.ndarray
    crossings: dict[float, float | None]
    final: Overlaps
    initial: Overlaps
    nfev: int = 0
    success: bool = True
    message: str = ""
    W_final: np.ndarray | None = None
    history: list[Overlaps] = field(default_factory=list)


def _solve(rhs: Callable, risk_of: Callable, overlaps_of: Callable, y0: np.ndarray,
           t_eval: np.ndarray, levels: Sequence[float], options: SolverOptions,
           keep_history: bool) -> tuple:
    from scipy.integrate import solve_ivp

    t_eval = np.asarray(t_eval, dtype=np.float64)
    events = []
    for level in levels:
        def event(t, y, level=level):
            return risk_of(y) - level
        event.direction = -1.0  # type: ignore[attr-defined]  # solve_ivp reads it
        events.append(event)
    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), y0, t_eval=t_eval, events=events or None,
                    **options.kwargs())
    risk = np.array([risk_of(sol.y[:, i]) for i in range(sol.y.shape[1])])
    if sol.y.shape[1] < t_eval.size:  # the solver stopped early: pad with NaN
        risk = np.concatenate([risk, np.full(t_eval.size - risk.size, np.nan)])
    r0 = risk_of(y0)
    crossings: dict[float, float | None] = {}
    for k, level in enumerate(levels):
        if r0 <= level:
            crossings[level] = 0.0
        elif sol.t_events is not None and len(sol.t_events[k]):
            crossings[level] = float(sol.t_events[k][0])
        else:
            crossings[level] = None
    y_end = sol.y[:, -1] if sol.y.shape[1] else y0
    history = [overlaps_of(sol.y[:, i]) for i in range(sol.y.shape[1])] if keep_history else []
    return sol, risk, crossings, y_end, history


def integrate_overlaps(initial: Overlaps, t_eval: np.ndarray, time_scale: str = "mean_field",
                       levels: Sequence[float] = (), options: SolverOptions | None = None,
                       keep_history: bool = False) -> FlowResult:
    """Integrate the reduced flow in ``(Q, M)`` at the times ``t_eval`` (T,), starting at 0.

    ``levels`` are absolute risk levels whose first crossing times are located by event
    detection. The state has ``m^2 + m m*`` numbers whatever ``d``.
    """
    options = options or SolverOptions()
    m, ms = initial.m, initial.m_star
    P = np.array(initial.P, dtype=np.float64)
    c = time_factor(m, time_scale)
    nq = m * m

    def unpack(y: np.ndarray) -> Overlaps:
        Q = y[:nq].reshape(m, m)
        return Overlaps(0.5 * (Q + Q.T), y[nq:].reshape(m, ms), P)

    def rhs(t, y):
        dQ, dM = flow_rhs_overlaps(unpack(y), c)
        return np.concatenate([dQ.ravel(), dM.ravel()])

    y0 = np.concatenate([np.asarray(initial.Q, np.float64).ravel(),
                         np.asarray(initial.M, np.float64).ravel()])
    sol, risk, crossings, y_end, history = _solve(rhs, lambda y: risk_overlaps(unpack(y)), unpack,
                                                  y0, t_eval, levels, options, keep_history)
    return FlowResult(t=np.asarray(t_eval, np.float64), risk=risk, crossings=crossings,
                      final=unpack(y_end), initial=initial, nfev=int(sol.nfev),
                      success=bool(sol.success), message=str(sol.message), history=history)


def integrate_weights(W0: np.ndarray, W_star: np.ndarray, t_eval: np.ndarray,
                      time_scale: str = "mean_field", levels: Sequence[float] = (),
                      options: SolverOptions | None = None, keep_history: bool = False) -> FlowResult:
    """Integrate ``dW/dt = -c grad_W R`` for ``W`` (d, m) with the teacher ``W*`` (d, m*) fixed."""
    options = options or SolverOptions()
    d, m = W0.shape
    c = time_factor(m, time_scale)
    W_star = np.asarray(W_star, np.float64)

    def unpack(y: np.ndarray) -> np.ndarray:
        return y.reshape(d, m)

    def rhs(t, y):
        return flow_rhs_weights(unpack(y), W_star, c).ravel()

    def overlaps_of(y):
        return Overlaps.from_weights(unpack(y), W_star)

    sol, risk, crossings, y_end, history = _solve(rhs, lambda y: risk_overlaps(overlaps_of(y)),
                                                  overlaps_of, np.asarray(W0, np.float64).ravel(),
                                                  t_eval, levels, options, keep_history)
    W_end = unpack(y_end).copy()
    return FlowResult(t=np.asarray(t_eval, np.float64), risk=risk, crossings=crossings,
                      final=Overlaps.from_weights(W_end, W_star),
                      initial=Overlaps.from_weights(W0, W_star), nfev=int(sol.nfev),
                      success=bool(sol.success), message=str(sol.message), W_final=W_end,
                      history=history)


# ----------------------------------------------------------------------------- initialisation

def bartlett_factor(dof: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Lower-triangular ``L`` (k, k) with ``L L^T ~ Wishart_k(dof, I)`` (needs ``dof >= k``).

    ``L_ii = sqrt(chi^2_{dof - i})`` (i = 0..k-1), ``L_ij ~ N(0, 1)`` below the diagonal: the law
    of the transposed R factor of the QR decomposition of a ``dof x k`` standard Gaussian matrix.
    """
    if dof < k:
        raise ValueError(f"Bartlett factor needs dof >= k, got dof = {dof}, k = {k}")
    L = np.tril(rng.standard_normal((k, k)), -1)
    L[np.diag_indices(k)] = np.sqrt(rng.chisquare(dof - np.arange(k)))
    return L


def _inverse_sqrt(S: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(0.5 * (S + S.T))
    return (vecs / np.sqrt(vals)) @ vecs.T


def frame_transform(gram: np.ndarray, init: str, norm: float, d: int) -> np.ndarray:
    """The ``k x k`` matrix ``T`` with ``W = G T`` for a ``d x k`` standard Gaussian ``G`` of
    Gram matrix ``gram = G^T G``: ``norm * gram^{-1/2}`` (orthonormal columns of norm ``norm``,
    the polar factor) or ``norm / sqrt(d) I`` (Gaussian entries of variance ``norm^2 / d``)."""
    k = gram.shape[0]
    if init == "orthonormal":
        if k > d:
            raise ValueError(f"an orthonormal family of {k} vectors does not exist in dimension {d}")
        return norm * _inverse_sqrt(gram)
    if init == "gaussian":
        return (norm / np.sqrt(d)) * np.eye(k)
    raise ValueError(f"unknown initialisation {init!r}; expected one of {INITS}")


def draw_family(d: int, k: int, init: str, norm: float, rng: np.random.Generator) -> np.ndarray:
    """``k`` vectors in dimension ``d`` as the columns of a (d, k) array (see :func:`frame_transform`)."""
    G = rng.standard_normal((d, k))
    return G @ frame_transform(G.T @ G, init, norm, d)


def initial_weights(d: int, m: int, m_star: int, init: str, teacher_init: str,
                    rng_student: np.random.Generator, rng_teacher: np.random.Generator,
                    student_norm: float = 1.0, teacher_norm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Student ``W`` (d, m) and teacher ``W*`` (d, m*), independent, each from its own stream."""
    W_star = draw_family(d, m_star, teacher_init, teacher_norm, rng_teacher)
    W = draw_family(d, m, init, student_norm, rng_student)
    return W, W_star


def initial_overlaps(d: int, m: int, m_star: int, init: str, teacher_init: str,
                     rng_student: np.random.Generator, rng_teacher: np.random.Generator,
                     student_norm: float = 1.0, teacher_norm: float = 1.0) -> Overlaps:
    """The overlaps of :func:`initial_weights`'s law drawn without vectors of length ``d``.

    Write the teacher's Gaussian matrix ``G_t = O [R; 0]`` (QR, ``O`` Haar, ``R^T`` a Bartlett
    factor with ``d`` degrees of freedom). The student's Gaussian ``G_s`` is independent and
    rotation invariant, so ``O^T G_s = [H; K]`` with ``H`` (m*, m) Gaussian and ``K^T K ~
    Wishart_m(d - m*, I)``: ``G_s^T G_t = H^T R``, ``G_s^T G_s = H^T H + K^T K``. Needs
    ``d >= m + m*``; cost ``O((m + m*)^3)``.
    """
    if d < m + m_star:
        raise ValueError(f"initial_overlaps needs d >= m + m* (d = {d}, m = {m}, m* = {m_star}); "
                         "draw the weights with initial_weights instead")
    R = bartlett_factor(d, m_star, rng_teacher).T             # (m*, m*) upper triangular
    gram_t = R.T @ R
    H = rng_student.standard_normal((m_star, m))
    K = bartlett_factor(d - m_star, m, rng_student)          # K K^T ~ Wishart_m(d - m*, I)
    gram_s = H.T @ H + K @ K.T
    cross = H.T @ R                                           # (m, m*)
    Ts = frame_transform(gram_s, init, student_norm, d)
    Tt = frame_transform(gram_t, teacher_init, teacher_norm, d)
    Q = Ts.T @ gram_s @ Ts
    return Overlaps(0.5 * (Q + Q.T), Ts.T @ cross @ Tt, Tt.T @ gram_t @ Tt)


# ----------------------------------------------------------------------------- finite sample

def quadratic_output(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``f_W(X) = sum_j (X w_j)^2 / m`` for ``X`` (n, d) and ``W`` (d, m): shape (n,)."""
    Z = X @ W
    return np.einsum("ij,ij->i", Z, Z) / W.shape[1]


def teacher_labels(X: np.ndarray, W_star: np.ndarray, noise: float = 0.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """``y = f*(X) + noise * N(0, 1)``, shape (n,)."""
    y = quadratic_output(W_star, X)
    if noise > 0:
        if rng is None:
            raise ValueError("label noise needs a random generator")
        y = y + noise * rng.standard_normal(y.shape)
    return y


def empirical_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """``L_n = 1/(4n) sum_i (f_W(x_i) - y_i)^2`` (its expectation is the population risk)."""
    r = quadratic_output(W, X) - y
    return 0.25 * float(np.mean(r * r))


def empirical_gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``grad_W L_n = X^T (r * (X W)) / (n m)``, shape (d, m), ``r = f_W(X) - y``."""
    Z = X @ W
    r = np.einsum("ij,ij->i", Z, Z) / W.shape[1] - y
    return X.T @ (r[:, None] * Z) / (X.shape[0] * W.shape[1])


@dataclass
class GDResult:
    """Gradient descent on a finite sample: at the recorded steps ``steps`` (T,) (times
    ``t = steps * eta``), the population ``risk`` (T,) and the training loss ``train_loss`` (T,);
    ``crossings`` as in :class:`FlowResult`, from the population risk at every step."""

    steps: np.ndarray
    t: np.ndarray
    risk: np.ndarray
    train_loss: np.ndarray
    crossings: dict[float, float | None]
    W_final: np.ndarray
    final: Overlaps


def gd_finite_sample(W0: np.ndarray, W_star: np.ndarray, X: np.ndarray, y: np.ndarray,
                     eta: float, n_steps: int, time_scale: str = "mean_field",
                     record_steps: Sequence[int] | None = None,
                     levels: Sequence[float] = ()) -> GDResult:
    """Full-batch GD ``W <- W - eta c grad_W L_n`` for ``n_steps`` steps from ``W0`` (d, m).

    ``X`` (n, d), ``y`` (n,). ``eta`` is in time units of the flow (step ``k`` is time
    ``k eta``). A step that makes the weights non-finite stops the run; the rest is NaN.
    """
    W = np.array(W0, dtype=np.float64, copy=True)
    m = W.shape[1]
    c = time_factor(m, time_scale)
    record = sorted(set(int(s) for s in (record_steps if record_steps is not None else range(n_steps + 1))))
    record_set = set(record)
    risk_at, loss_at = {}, {}
    crossings: dict[float, float | None] = {level: None for level in levels}
    pending = list(levels)
    for k in range(n_steps + 1):
        if pending or k in record_set:
            r = population_risk(W, W_star)
            for level in list(pending):
                if r <= level:
                    crossings[level] = k * eta
                    pending.remove(level)
            if k in record_set:
                risk_at[k], loss_at[k] = r, empirical_loss(W, X, y)
        if k == n_steps:
            break
        W -= (eta * c) * empirical_gradient(W, X, y)
        if not np.all(np.isfinite(W)):
            break
    steps = np.array(record, dtype=np.int64)
    risk = np.array([risk_at.get(k, np.nan) for k in record])
    loss = np.array([loss_at.get(k, np.nan) for k in record])
    return GDResult(steps=steps, t=steps * eta, risk=risk, train_loss=loss, crossings=crossings,
                    W_final=W, final=Overlaps.from_weights(W, W_star))
