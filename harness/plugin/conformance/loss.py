"""Loss checks: shapes, ``grad`` against finite differences of ``value``, a mean over samples, a
declared ``jit_code`` honoured by the training kernel.
"""
from __future__ import annotations

import numpy as np

from harness.plugin.conformance.core import _rng, check


def _loss_data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(40)
    return rng.standard_normal(n), 2.0 * rng.integers(0, 2, n) - 1.0


@check("loss", "shapes")
def _loss_shapes(loss) -> str:
    f, y = _loss_data()
    value = loss.value(f, y)
    assert np.ndim(value) == 0 and np.isfinite(float(value)), f"value is {value!r}, not a finite scalar"
    g = np.asarray(loss.grad(f, y))
    assert g.shape == f.shape, f"grad has shape {g.shape}, expected {f.shape}"
    assert np.all(np.isfinite(g)), "grad is not finite"
    return "value a finite scalar, grad (N,)"


@check("loss", "grad vs finite differences", after="shapes")
def _loss_grad(loss) -> str:
    f, y = _loss_data()
    n = f.size
    h = 1e-6 * np.maximum(1.0, np.abs(f))
    step = lambda i, s: loss.value(np.where(np.arange(n) == i, f + s * h, f), y)  # noqa: E731
    v0 = loss.value(f, y)
    plus = np.array([step(i, 1) for i in range(n)])
    minus = np.array([step(i, -1) for i in range(n)])
    right, left, central = (plus - v0) / h, (v0 - minus) / h, (plus - minus) / (2 * h)
    scale = np.max(np.abs(central)) + 1.0 / n
    smooth = np.abs(right - left) <= 1e-2 * scale
    assert smooth.mean() >= 0.9, f"the loss is not differentiable at {np.sum(~smooth)} of {n} points"
    g = np.asarray(loss.grad(f, y), float)
    err = np.abs(g - central)
    tol = 1e-6 * scale + 1e-5 * np.abs(central)
    bad = smooth & ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(f"at f = {f[i]:.6g}, y = {y[i]:g}: grad {g[i]:.10g}, finite difference "
                             f"{central[i]:.10g} ({bad.sum()} bad coordinate(s))")
    return f"grad agrees with finite differences at {smooth.sum()} coordinates"


@check("loss", "mean over samples", after="shapes")
def _loss_is_mean(loss) -> str:
    f, y = _loss_data()
    v1, v2 = loss.value(f, y), loss.value(np.concatenate([f, f]), np.concatenate([y, y]))
    assert np.isclose(v1, v2, rtol=1e-12, atol=1e-300), \
        f"value on the data twice over is {v2!r}, on the data once {v1!r}: not a mean over samples"
    g1 = np.asarray(loss.grad(f, y))
    g2 = np.asarray(loss.grad(np.concatenate([f, f]), np.concatenate([y, y])))
    assert np.allclose(g2[: f.size], g1 / 2, rtol=1e-12, atol=1e-300), \
        "grad on the data twice over is not half the grad on the data once (missing 1/N?)"
    return "a mean over samples (grad carries 1/N)"


@check("loss", "jit_code honoured", after="shapes")
def _loss_jit_code(loss) -> str:
    """A declared ``jit_code`` must name a loss the training kernel computes
    (:data:`harness.engine.chain_kernels.LOSS_CODES`) and agree with it on probe values; the
    engines would otherwise ignore it (correct, but not what the plugin asked for)."""
    code = getattr(loss, "jit_code", None)
    if code is None:
        return "no jit_code: the training engines call value and grad"
    from harness.engine.chain_kernels import LOSS_CODES, fused_loss

    assert code in LOSS_CODES, f"jit_code {code!r} is not one of the kernel's losses ({', '.join(LOSS_CODES)})"
    assert fused_loss(loss) is not None, (f"jit_code {code!r} declared, but value/grad disagree with the "
                                          "kernel's formulas on probe values: the kernel will not be used")
    return f"jit_code {code!r}: the training kernel computes this loss"
