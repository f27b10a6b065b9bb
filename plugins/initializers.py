"""Built-in initializers.

Shapes follow ``harness.plugin.components``: ``shapes = [(n_1, d), (n_2, n_1), ..., (1, n_{L-1})]``,
layer ``l`` has entries ``W_l[i, j]`` with fan-in ``n_{l-1}`` (columns) and fan-out ``n_l``
(rows); the last shape is the output layer. Every initializer draws from the ``rng`` it is
given only, in float64, and casts to ``dtype`` at the end (so a float32 network gets the same
numbers, rounded).

- ``fan_in_gaussian``: hidden ``N(0, beta^2 / fan_in)``, output ``N(0, output_variance)``
  (variance 1 by default, not 1 / fan_in: the setting of Bombari, Amani and Mondelli, 2022);
  biases (networks that have them) ``N(0, bias_variance)``, zero by default, drawn after the
  weights (``initialize_biases``; the other initializers give zero biases);
- ``lecun`` / ``he``: ``N(0, 1 / fan_in)`` / ``N(0, 2 / fan_in)`` in every layer;
- ``orthogonal``: Haar-distributed semi-orthogonal matrices times ``gain``;
- ``daniely_symmetric``: Daniely's (2020) symmetric two-layer initialisation, whose network
  output is zero at initialisation.
"""
from __future__ import annotations

import numpy as np

from harness import Initializer, Param, hookimpl


def _gaussian_layers(shapes, rng, dtype, variances) -> list[np.ndarray]:
    """One ``N(0, v_l)`` matrix of shape ``shapes[l]`` per layer, drawn in order."""
    return [(np.sqrt(v) * rng.standard_normal(shape)).astype(dtype, copy=False)
            for shape, v in zip(shapes, variances)]


def _shape_list(shapes) -> list[tuple[int, int]]:
    out = [(int(n), int(m)) for n, m in shapes]
    if not out:
        raise ValueError("shapes must list at least one layer")
    return out


class FanInGaussian(Initializer):
    name = "fan_in_gaussian"
    help = "hidden W_l ~ N(0, beta^2/fan_in), output layer ~ N(0, output_variance) (Bombari et al.)"
    params = (
        Param("beta", float, 1.0, "hidden-layer scale: entry variance beta^2 / fan_in", min=0.0),
        Param("output_variance", float, 1.0, "entry variance of the output layer (not divided by fan-in)",
              min=0.0),
        Param("bias_variance", float, 0.0, "entry variance of every bias (networks with biases; "
              "0: zero biases)", min=0.0),
    )

    def initialize_biases(self, shapes, rng, dtype=np.float64):
        if not self.bias_variance:
            return [np.zeros(tuple(s), dtype=dtype) for s in shapes]
        return _gaussian_layers([tuple(s) for s in shapes], rng, dtype, [self.bias_variance] * len(shapes))

    def expected_bias_variances(self, shapes):
        return [float(self.bias_variance)] * len(shapes)

    def expected_variances(self, shapes):
        shapes = _shape_list(shapes)
        hidden = [self.beta ** 2 / m for _, m in shapes[:-1]]
        return hidden + [float(self.output_variance)]

    def initialize(self, shapes, rng, dtype=np.float64):
        shapes = _shape_list(shapes)
        return _gaussian_layers(shapes, rng, dtype, self.expected_variances(shapes))


class _FanInScaled(Initializer):
    """``N(0, gain2 / fan_in)`` in every layer, the output layer included."""

    gain2: float = 1.0

    def expected_variances(self, shapes):
        return [self.gain2 / m for _, m in _shape_list(shapes)]

    def initialize(self, shapes, rng, dtype=np.float64):
        shapes = _shape_list(shapes)
        return _gaussian_layers(shapes, rng, dtype, self.expected_variances(shapes))


class LeCun(_FanInScaled):
    name = "lecun"
    help = "every layer W_l ~ N(0, 1/fan_in)"
    gain2 = 1.0


class He(_FanInScaled):
    name = "he"
    help = "every layer W_l ~ N(0, 2/fan_in)"
    gain2 = 2.0


def haar_semi_orthogonal(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random ``(n, m)`` matrix with orthonormal rows (``n <= m``) or columns (``n > m``).

    QR of a ``(max, min)`` Gaussian matrix, with the columns of Q multiplied by the signs of
    R's diagonal so that the result is Haar-distributed (plain QR is not).
    """
    k, r = max(n, m), min(n, m)
    q, upper = np.linalg.qr(rng.standard_normal((k, r)))
    signs = np.sign(np.diag(upper))
    signs[signs == 0] = 1.0
    q = q * signs
    return q if n >= m else q.T


class Orthogonal(Initializer):
    name = "orthogonal"
    help = "Haar-random semi-orthogonal layers times gain (entry variance gain^2 / max(fan_in, fan_out))"
    params = (Param("gain", float, 1.0, "multiplies every (semi-)orthogonal matrix", min=0.0),)

    def expected_variances(self, shapes):
        # Rows (n <= m) or columns (n > m) are unit vectors of length max(n, m), each uniform on
        # the sphere, so every entry has mean 0 and variance 1 / max(n, m).
        return [self.gain ** 2 / max(n, m) for n, m in _shape_list(shapes)]

    def initialize(self, shapes, rng, dtype=np.float64):
        return [(self.gain * haar_semi_orthogonal(n, m, rng)).astype(dtype, copy=False)
                for n, m in _shape_list(shapes)]


class DanielySymmetric(Initializer):
    name = "daniely_symmetric"
    help = ("two-layer symmetric init (Daniely 2020): w_i ~ N(0, I/d), w_{i+q/2} = w_i, "
            "u_i = +-B/sqrt(q), u_{i+q/2} = -u_i; zero output at init")
    params = (Param("B", float, 1.0, "output weights are +-B/sqrt(q)", min=0.0,
                    check=lambda b: None if b > 0 else "must be > 0"),)
    example_shapes = [(600, 200), (1, 600)]

    @staticmethod
    def _check(shapes) -> tuple[int, int]:
        shapes = _shape_list(shapes)
        if len(shapes) != 2 or shapes[1] != (1, shapes[0][0]):
            raise ValueError(f"daniely_symmetric needs two-layer shapes [(q, d), (1, q)], got {shapes}")
        q, d = shapes[0]
        if q % 2:
            raise ValueError(f"daniely_symmetric needs an even number of hidden units q, got q = {q}")
        return q, d

    def expected_variances(self, shapes):
        q, d = self._check(shapes)
        return [1.0 / d, self.B ** 2 / q]

    def initialize(self, shapes, rng, dtype=np.float64):
        """``W`` (q, d) with rows ``i`` and ``i + q/2`` equal; ``u`` (1, q) with
        ``u[i + q/2] = -u[i]``: the paired units cancel, so the output is zero for every input
        and activation (exactly in exact arithmetic, to rounding in floating point)."""
        q, d = self._check(shapes)
        half = rng.standard_normal((q // 2, d)) / np.sqrt(d)
        u_half = rng.choice(np.array([-1.0, 1.0]), size=q // 2) * (self.B / np.sqrt(q))
        W = np.concatenate([half, half], axis=0)
        u = np.concatenate([u_half, -u_half])[None, :]
        return [W.astype(dtype, copy=False), u.astype(dtype, copy=False)]


INITIALIZERS = (FanInGaussian, LeCun, He, Orthogonal, DanielySymmetric)


@hookimpl
def harness_register_initializers(registry):
    for component in INITIALIZERS:
        registry.add(component)
