"""Optional backend ``torch``: the NTK Gram matrix and the training gradients with PyTorch, on a
CUDA GPU when there is one (``pip install 'harness[torch]'``).

Chosen in a benchmark file through an experiment's ``backend`` slot::

    backend = "torch"                             # device "auto": cuda when available, else cpu
    backend = { name = "torch", device = "cuda" } # insist on the GPU

Same formulas as the CPU engine (:mod:`harness.engine.ntk`, :mod:`harness.engine.gradients`),
so results agree with the ``numba`` backend to rounding (the tests require 1e-8 relative in float64):

- NTK: forward activations ``F_l`` and back-propagated signals ``B_l`` on the device, then
  ``K = sum_l (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` built in blocks of rows, so that the extra
  device memory beyond ``K`` (N, N) and the factors is two (rows, N) blocks;
- training: :meth:`TorchBackend.gradient_engine` returns an evaluator with the interface of
  :class:`harness.engine.gradients.GradientEngine`. Weights stay NumPy arrays owned by the
  optimizer: each evaluation uploads them (P numbers), runs the forward and backward products
  on the device and downloads the gradients (P numbers); the loss and its gradient in the
  outputs (N numbers each way) use the Loss component's NumPy code, so every loss plugin works.
  The inputs ``X`` are uploaded once and reused while the same array object is passed (the
  training loop's full batch); do not modify ``X`` in place between evaluations.
- batched training (:func:`harness.engine.batched_training.train_batch`, the memorisation
  cells' repetitions as one stack): :meth:`TorchBackend.stacked_gradient_engine` returns an
  evaluator with the interface of :class:`harness.engine.stacked_gradients.StackedGradientEngine`.
  Each evaluation uploads every layer's weights as one stacked tensor ``(k, n_l, n_{l-1})``, runs
  the forward and backward passes of the whole stack as batched products (``torch.bmm``),
  downloads the k outputs (k x rows numbers) for the Loss component (member by member, on the
  host), uploads the k output signals and downloads the stacked gradients. The same algebra as
  the single evaluator, so the members' results agree with training each alone to rounding.

Both evaluators compute in the dtype they are made for, float64 or float32 (a cell's
``dtype``: the stacked repetitions of a float32 memorisation cell train as float32 tensors, as
torch trains by default); the tests require agreement with the CPU engine to float32 rounding in
float32.

Activations: the built-ins (``jit_code`` sigmoid, relu, tanh, quadratic, identity) run as torch
operations, after a check on probe points that they reproduce the plugin's own ``phi`` and
``dphi``; any other activation is evaluated with its NumPy ``phi`` / ``dphi`` (a round trip to
the host on a GPU: correct, slower).

Without torch installed, choosing this backend raises a :class:`harness.PluginError` that says
how to install it (before a run starts, and on first use).
"""
from __future__ import annotations

import importlib.util
import re
from typing import Any, Sequence

import numpy as np

from harness import Backend, Param, PluginError, hookimpl

INSTALL_HINT = ("pip install 'harness[torch]' (a CPU build; for a GPU install the CUDA build "
                "of torch that pytorch.org lists for your driver)")
BLOCK_BYTES = 256 * 2**20
"""Bytes of one (rows, N) block of the NTK assembly (two are alive at a time)."""

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TorchUnavailable(PluginError, ImportError):
    """The torch backend was chosen but PyTorch cannot be imported."""


def _check_device(value: str) -> str | None:
    return None if _DEVICE.match(value) else "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"


def import_torch():
    """``torch``, or a :class:`TorchUnavailable` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise TorchUnavailable(f"the torch backend needs PyTorch, which cannot be imported ({exc}); "
                               f"install it with: {INSTALL_HINT}") from None
    return torch


class TorchBackend(Backend):
    name = "torch"
    help = "PyTorch: NTK Gram and training gradients on a CUDA GPU or the CPU (needs harness[torch])"
    params = (Param("device", str, "auto", "'cuda' (or 'cuda:N'), 'cpu', or 'auto': cuda when "
                    "available, else cpu", check=_check_device),)

    @classmethod
    def check_available(cls) -> None:
        if importlib.util.find_spec("torch") is None:
            raise TorchUnavailable(f"the torch backend needs PyTorch, which is not installed; "
                                   f"install it with: {INSTALL_HINT}")

    # -- device and dtype -----------------------------------------------------------------------
    def torch_device(self):
        """The ``torch.device`` computations run on (``auto`` resolved)."""
        torch = import_torch()
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise PluginError(f"backend torch: device {self.device!r} asked for, but torch "
                                  f"{torch.__version__} sees no CUDA device (a CPU build, no GPU or "
                                  "no driver); use device = \"cpu\" or \"auto\"")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise PluginError(f"backend torch: device {self.device!r} asked for, but only "
                                  f"{torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device(self.device)

    # -- NTK --------------------------------------------------------------------------------
    def ntk(self, weights, X, activation, layers=None, dtype=np.float64):
        """``K = sum_{l in layers} (F_{l-1} F_{l-1}^T) o (B_l B_l^T)`` (N, N), a NumPy array of
        ``dtype`` (float32 or float64); ``layers`` 1-based, ``None`` for all."""
        from harness.engine.ntk import check_network, layer_list

        torch = import_torch()
        device = self.torch_device()
        tdtype = _torch_dtype(torch, dtype)
        check_network(weights, X)
        L = len(weights)
        wanted = layer_list(layers, L)
        act = TorchActivation(activation, torch)
        with torch.no_grad():
            Ws = [_to_device(torch, W, device, tdtype) for W in weights]
            F = [_to_device(torch, X, device, tdtype)]
            dphis = {}
            for l in range(1, L):  # F_l and phi'(G_l), 1-based layers
                G = F[-1] @ Ws[l - 1].T
                if l >= wanted[0]:
                    dphis[l] = act.dphi(G)
                F.append(act.phi(G))
            del G
            B: dict[int, Any] = {L: None}  # B_L is all ones: K_L = F_{L-1} F_{L-1}^T
            b = None
            for l in range(L - 1, wanted[0] - 1, -1):
                b = dphis.pop(l) * (Ws[L - 1] if b is None else b @ Ws[l])
                B[l] = b
            terms = [(F[l - 1], B[l]) for l in wanted]
            del dphis, b
            N = F[0].shape[0]
            K = torch.empty((N, N), dtype=tdtype, device=device)
            itemsize = np.dtype(dtype).itemsize
            rows = max(1, min(N, BLOCK_BYTES // max(1, N * itemsize)))
            for i0 in range(0, N, rows):
                i1 = min(N, i0 + rows)
                block = K[i0:i1]
                for t, (A, C) in enumerate(terms):
                    P = A[i0:i1] @ A.T
                    if C is not None:
                        P.mul_(C[i0:i1] @ C.T)
                    if t == 0:
                        block.copy_(P)
                    else:
                        block.add_(P)
            return K.cpu().numpy()

    # -- training ---------------------------------------------------------------------------
    def gradient_engine(self, shapes: Sequence[tuple[int, int]], activation, trainable=None,
                        dtype=np.float64, max_rows=None) -> "TorchGradientEngine":
        return TorchGradientEngine(self, shapes, activation, trainable, dtype)

    def stacked_gradient_engine(self, shapes: Sequence[tuple[int, int]], activation, members: int,
                                trainable=None, dtype=np.float64, rows=None) -> "TorchStackedGradientEngine":
        return TorchStackedGradientEngine(self, shapes, activation, members, trainable, dtype)


def _torch_dtype(torch, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return torch.float64
    if dtype == np.float32:
        return torch.float32
    raise ValueError(f"the torch backend computes in float32 or float64, not {dtype}")


def _to_device(torch, array, device, tdtype):
    return torch.as_tensor(np.asarray(array), device=device).to(tdtype)


class _TorchEvaluator:
    """What both evaluators share: the device, dtypes, layer shapes, frozen layers, the
    activation on torch tensors and the inputs kept on the device."""

    def __init__(self, backend: TorchBackend, shapes, activation, trainable=None, dtype=np.float64):
        self.torch = import_torch()
        self.device = backend.torch_device()
        self.dtype = np.dtype(dtype)
        self.tdtype = _torch_dtype(self.torch, self.dtype)
        self.shapes = [(int(a), int(b)) for a, b in shapes]
        if self.shapes[-1][0] != 1:
            raise ValueError(f"the output layer must have one unit, got shape {self.shapes[-1]}")
        self.L = len(self.shapes)
        self.trainable = list(trainable) if trainable is not None else [True] * self.L
        if len(self.trainable) != self.L:
            raise ValueError("trainable must give one flag per layer")
        self.activation = TorchActivation(activation, self.torch)
        idx = [l for l, t in enumerate(self.trainable) if t]
        self.lowest = min(idx) if idx else self.L  # 0-based lowest trainable layer
        self._x_source: Any = None
        self._x: Any = None

    def _inputs(self, X: np.ndarray):
        if X is self._x_source and self._x is not None:
            return self._x
        self._x_source, self._x = X, _to_device(self.torch, X, self.device, self.tdtype)
        return self._x


class TorchGradientEngine(_TorchEvaluator):
    """Loss and gradients on a torch device, with the interface of
    :class:`harness.engine.gradients.GradientEngine` (see the module docstring)."""

    def _forward(self, weights, X):
        """``(F, dphi, out)``: activations ``F_0..F_{L-1}``, ``phi'(G_l)`` where the backward
        pass needs it (0-based hidden index), the output (N,) on the device."""
        Ws = [_to_device(self.torch, W, self.device, self.tdtype) for W in weights]
        F = [self._inputs(X)]
        dphi = {}
        for l in range(self.L - 1):  # 0-based: G = F_l W_l^T is hidden layer l+1
            G = F[-1] @ Ws[l].T
            if l + 1 > self.lowest:
                dphi[l + 1] = self.activation.dphi(G)
            F.append(self.activation.phi(G))
        out = F[-1] @ Ws[-1][0]
        return Ws, F, dphi, out

    def predict(self, weights: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Network output f (N,) (a fresh NumPy array)."""
        with self.torch.no_grad():
            return self._forward(weights, X)[3].cpu().numpy().copy()

    def loss_and_grads(self, weights: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, loss):
        """Mean loss at ``weights`` on ``(X (N, d), y (N,))`` and its gradient in every trainable
        layer (``None`` for frozen layers), as a ``GradientResult`` of fresh NumPy arrays."""
        from harness.engine.gradients import GradientResult

        torch = self.torch
        with torch.no_grad():
            Ws, F, dphi, out_t = self._forward(weights, X)
            out = out_t.cpu().numpy().copy()
            r_np = np.ascontiguousarray(loss.grad(out, y), dtype=self.dtype)
            value = float(loss.value(out, y))
            r = torch.as_tensor(r_np, device=self.device)
            L = self.L
            grads: list[Any] = [None] * L
            if self.trainable[L - 1]:
                grads[L - 1] = (r @ F[L - 1]).reshape(1, -1)
            if self.lowest < L - 1:
                D = r[:, None] * Ws[L - 1] * dphi[L - 1]  # signal of 0-based layer L-2 (hidden L-1)
                for l in range(L - 2, self.lowest - 1, -1):
                    if self.trainable[l]:
                        grads[l] = D.T @ F[l]
                    if l > self.lowest:
                        D = (D @ Ws[l]) * dphi[l]
            grads = [None if g is None else g.cpu().numpy() for g in grads]
        return GradientResult(value, out, grads)


class TorchStackedGradientEngine(_TorchEvaluator):
    """Loss and gradients of up to ``members`` networks of one shape at once on a torch device,
    with the interface of :class:`harness.engine.stacked_gradients.StackedGradientEngine` (see
    the module docstring). The inputs ``X`` (k, rows, d) stay on the device while the same array
    object is passed; do not modify it in place between evaluations."""

    def __init__(self, backend: TorchBackend, shapes, activation, members: int, trainable=None,
                 dtype=np.float64) -> None:
        super().__init__(backend, shapes, activation, trainable, dtype)
        self.members = int(members)

    def _stack(self, W: np.ndarray, k: int):
        return _to_device(self.torch, np.ascontiguousarray(W[:k]), self.device, self.tdtype)

    def loss_and_grads(self, W: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, loss,
                       k: int) -> tuple[list[float], list]:
        """Losses (k floats) and gradients (per layer fresh NumPy arrays (k, n_l, n_{l-1}), or
        ``None`` for frozen layers) of the first ``k`` members of the stacks ``W`` on ``X``
        (k, rows, d), ``y`` (k, rows)."""
        torch = self.torch
        k = int(k)
        if k > self.members:
            raise ValueError(f"{k} members asked for, the engine was made for {self.members}")
        L = self.L
        with torch.no_grad():
            Ws = [self._stack(w, k) for w in W]
            F = [self._inputs(X)]
            dphi = {}
            for l in range(L - 1):  # 0-based: G = F_l W_l^T is hidden layer l+1, per member
                G = torch.bmm(F[-1], Ws[l].transpose(1, 2))
                if l + 1 > self.lowest:
                    dphi[l + 1] = self.activation.dphi(G)
                F.append(self.activation.phi(G))
            del G
            out = torch.bmm(F[-1], Ws[-1].transpose(1, 2))[:, :, 0].cpu().numpy()  # (k, rows)
            y = np.asarray(y)
            r_np = np.empty(out.shape, dtype=self.dtype)
            values = []
            for i in range(k):  # the Loss component, member by member (NumPy, on the host)
                r_np[i] = loss.grad(out[i], y[i])
                values.append(float(loss.value(out[i], y[i])))
            r = torch.as_tensor(r_np, device=self.device)
            grads: list[Any] = [None] * L
            if self.trainable[L - 1]:
                grads[L - 1] = torch.bmm(r[:, None, :], F[L - 1])
            if self.lowest < L - 1:
                D = r[:, :, None] * Ws[L - 1] * dphi[L - 1]  # signals of 0-based layer L-2
                for l in range(L - 2, self.lowest - 1, -1):
                    if self.trainable[l]:
                        grads[l] = torch.bmm(D.transpose(1, 2), F[l])
                    if l > self.lowest:
                        D = torch.bmm(D, Ws[l]) * dphi[l]
            grads = [None if g is None else g.cpu().numpy() for g in grads]
        return values, grads


# ---------------------------------------------------------------------------------------------
# activations as torch operations


def _torch_ops(torch) -> dict[str, tuple]:
    s = torch.sigmoid
    return {
        "sigmoid": (s, lambda g: s(g) * s(-g)),
        "relu": (lambda g: torch.clamp_min(g, 0), lambda g: (g > 0).to(g.dtype)),
        "tanh": (torch.tanh, lambda g: 4 * (s(2 * g) * s(-2 * g))),
        "quadratic": (lambda g: g * g, lambda g: 2 * g),
        "identity": (lambda g: g, torch.ones_like),
    }


_PROBE = np.array([-30.0, -3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0, 30.0])


class TorchActivation:
    """``phi`` and ``dphi`` of an Activation component on torch tensors: torch operations for a
    built-in ``jit_code`` that reproduces the plugin on probe points, else the plugin's NumPy
    functions through the host."""

    def __init__(self, activation, torch) -> None:
        self.activation = activation
        self.torch = torch
        ops = _torch_ops(torch).get(getattr(activation, "jit_code", None) or "")
        if ops is not None and not self._agrees(*ops):
            ops = None
        self.native = ops is not None
        if ops is not None:
            self.phi, self.dphi = ops

    def _agrees(self, phi, dphi) -> bool:
        x = self.torch.as_tensor(_PROBE)
        try:
            return bool(np.allclose(phi(x).numpy(), self.activation.phi(_PROBE), rtol=1e-12, atol=1e-14)
                        and np.allclose(dphi(x).numpy(), self.activation.dphi(_PROBE), rtol=1e-9, atol=1e-13))
        except Exception:
            return False

    def _numpy(self, fn, g):
        value = np.asarray(fn(g.detach().cpu().numpy()))
        return self.torch.as_tensor(value, device=g.device).to(g.dtype)

    def phi(self, g):
        return self._numpy(self.activation.phi, g)

    def dphi(self, g):
        return self._numpy(self.activation.dphi, g)


@hookimpl
def harness_register_backends(registry):
    registry.add(TorchBackend)
