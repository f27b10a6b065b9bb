"""Quadratic teacher-student networks under population gradient flow (Martin, Bach, Biroli,
AISTATS 2024): the experiment ``quadratic_flow`` (:mod:`.experiment`), its numerics (the
closed-form risk, the flow in the weights or their overlaps, finite-sample gradient descent:
:mod:`.quadratic`) and cost estimates (:mod:`.costs`).
"""
from __future__ import annotations

from .experiment import (  # noqa: F401
    CONVENTIONS,
    SOLVERS,
    QuadraticFlow,
    QuadraticStudent,
    QuadraticStudentInit,
    harness_register_architectures,
    harness_register_experiments,
    harness_register_initializers,
)
