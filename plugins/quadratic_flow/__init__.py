"""Quadratic teacher-student networks under population gradient flow (Martin, Bach, Biroli,
AISTATS 2024): the experiment ``quadratic_flow`` (:mod:`.experiment`), the student as an
architecture and an initializer (:mod:`.student`), the numerics (the closed-form risk, the flow in
the weights or their overlaps, finite-sample gradient descent: :mod:`.quadratic`), cost estimates
(:mod:`.costs`) and figures (:mod:`.figures`).
"""
from __future__ import annotations

from harness.plugin import hookimpl

from .experiment import SOLVERS, QuadraticFlow  # noqa: F401
from .figures import CONVENTIONS  # noqa: F401
from .student import QuadraticStudent, QuadraticStudentInit


@hookimpl
def harness_register_architectures(registry):
    registry.add(QuadraticStudent)


@hookimpl
def harness_register_initializers(registry):
    registry.add(QuadraticStudentInit)


@hookimpl
def harness_register_experiments(registry):
    registry.add(QuadraticFlow)
