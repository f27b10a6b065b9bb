"""Built-in datasets: Gaussian inputs and inputs uniform on the sphere, with a choice of targets.

``sample(n, d, rng, dtype)`` returns ``X`` of shape ``(n, d)`` and ``y`` of shape ``(n,)``, both of
``dtype``. Everything is drawn from the one ``rng`` given, in this order: inputs, then the
targets (the teacher's weights for ``targets = "teacher"``), then the output noise, so equal
seeds give equal data.

Inputs:
- ``gaussian``: raw ``x ~ N(0, I_d)`` (norm about sqrt(d); not projected on the sphere);
- ``sphere``: ``x`` uniform on the unit sphere ``S^{d-1}``.

Targets (``targets``):
- ``gaussian``: ``y ~ N(0, 1)`` independent of x;
- ``sign``: random labels ``+-1`` with probability 1/2 each, independent of x;
- ``teacher``: the output of a random bias-free fully-connected teacher with hidden widths
  ``teacher_widths``, activation ``teacher_activation`` and weights from ``teacher_initializer``
  (all looked up in the plugin registry when sampling);
- ``zero``: ``y = 0``.
Then ``noise_std * N(0, 1)`` is added to every target.
"""
from __future__ import annotations

import numpy as np

from harness.plugin import Dataset, Param, PluginError, SpecError, Width, hookimpl

TARGETS = ("gaussian", "sign", "teacher", "zero")


class _TargetedDataset(Dataset):
    """The target options shared by every input distribution."""

    params = (
        Param("targets", str, "gaussian", "how y is drawn", choices=TARGETS),
        Width.param("teacher_widths", [1], "hidden widths of the teacher network (ints or expressions in d)",
                    many=True, min=1),
        Param("teacher_activation", str, "relu", "activation of the teacher network (a registered name)",
              component="activation"),
        Param("teacher_initializer", str, "lecun", "initializer of the teacher's weights (a registered name)",
              component="initializer"),
        Param("noise_std", float, 0.0, "standard deviation of Gaussian noise added to the targets", min=0.0),
    )

    def inputs(self, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
        """Inputs ``X`` of shape ``(n, d)``, float64."""
        raise NotImplementedError

    def problem_at(self, d: int):
        """``("dataset.teacher_widths", problem)`` when the teacher's widths fail at ``d``."""
        if self.targets != "teacher":
            return None
        for i, w in enumerate(self.teacher_widths):
            try:
                Width.resolve(w, d, f"dataset.teacher_widths[{i}]")
            except SpecError as exc:
                return "dataset.teacher_widths", f"item {i}: {exc.problem}"
        return None

    def sample(self, n, d, rng, dtype=np.float64):
        n, d = int(n), int(d)
        X = self.inputs(n, d, rng)
        if self.targets == "gaussian":
            y = rng.standard_normal(n)
        elif self.targets == "sign":
            y = 2.0 * rng.integers(0, 2, size=n) - 1.0
        elif self.targets == "teacher":
            y = self.teacher_outputs(X, rng)
        else:
            y = np.zeros(n)
        if self.noise_std > 0:
            y = y + self.noise_std * rng.standard_normal(n)
        return X.astype(dtype, copy=False), y.astype(dtype, copy=False)

    def bind(self, cell) -> None:
        """With teacher targets: create the teacher network's activation, initializer and ``fc``
        architecture through the cell, which records them in the row's ``components`` (as
        ``dataset.teacher_activation``, ``dataset.teacher_initializer``, ``dataset.teacher``)."""
        self._teacher = None
        if self.targets != "teacher":
            return
        prefix = f"dataset.{self.name}."
        activation = cell.create("activation", self.teacher_activation, label="dataset.teacher_activation")
        initializer = cell.create("initializer", self.teacher_initializer, label="dataset.teacher_initializer")
        try:
            architecture = cell.create("architecture", "fc", {"widths": list(self.teacher_widths)},
                                       label="dataset.teacher")
        except SpecError as exc:
            raise SpecError(None, prefix + "teacher_widths", self.teacher_widths, exc.problem) from None
        except PluginError as exc:
            raise SpecError(None, prefix + "teacher_widths", self.teacher_widths,
                            f"the teacher needs the 'fc' architecture: {exc}") from None
        self._teacher = (activation, initializer, architecture)

    def teacher_outputs(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw a teacher network from ``rng`` and return its outputs on ``X``, shape ``(n,)``;
        the dataset must be bound to its cell (:meth:`bind`)."""
        from harness.engine.network import forward

        teacher = getattr(self, "_teacher", None)
        if teacher is None:
            raise RuntimeError(f"dataset {self.name!r} with teacher targets builds its teacher through its cell: "
                               "create it with cell.create('dataset', ...) (a slot's component is bound for you)")
        activation, initializer, architecture = teacher
        try:
            shapes = architecture.layer_shapes(X.shape[1])
        except SpecError as exc:
            raise SpecError(None, f"dataset.{self.name}.teacher_widths", self.teacher_widths, exc.problem) from None
        weights = initializer.initialize(shapes, rng, np.float64)
        return forward(weights, X, activation).output


class GaussianInputs(_TargetedDataset):
    name = "gaussian"
    help = "x ~ N(0, I_d) (raw, norm about sqrt(d)); targets gaussian, sign, teacher or zero"

    def inputs(self, n, d, rng):
        return rng.standard_normal((n, d))


class SphereInputs(_TargetedDataset):
    name = "sphere"
    help = "x uniform on the unit sphere S^{d-1}; targets gaussian, sign, teacher or zero"

    def inputs(self, n, d, rng):
        Z = rng.standard_normal((n, d))
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        while np.any(norms == 0):  # probability zero; redraw rather than divide by zero
            bad = norms[:, 0] == 0
            Z[bad] = rng.standard_normal((int(bad.sum()), d))
            norms = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / norms


DATASETS = (GaussianInputs, SphereInputs)


@hookimpl
def harness_register_datasets(registry):
    for component in DATASETS:
        registry.add(component)
