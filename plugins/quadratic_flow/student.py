"""The quadratic student as components: the architecture ``quadratic_student``
(``f_W(x) = (1/m) sum_j (w_j . x)^2``, output weights frozen at ``1/m``) and its initializer
``quadratic_student_init`` (rows orthonormal or Gaussian, of norm ``norm``).
"""
from __future__ import annotations

import numpy as np

from harness.plugin import Architecture, Initializer, Param


class QuadraticStudent(Architecture):
    name = "quadratic_student"
    help = "f_W(x) = (1/m) sum_j (w_j . x)^2: m quadratic neurons, output weights frozen at 1/m"
    params = (Param("m", int, 10, "number of hidden neurons", min=1),)

    def layer_shapes(self, d):
        return [(int(self.m), int(d)), (1, int(self.m))]

    def trainable(self, d):
        return [True, False]


class QuadraticStudentInit(Initializer):
    name = "quadratic_student_init"
    help = "rows w_j orthonormal (or Gaussian) of norm `norm`; output weights 1/m"
    params = (
        Param("init", str, "orthonormal", "orthonormal rows or Gaussian entries N(0, norm^2/d)",
              choices=("orthonormal", "gaussian")),
        Param("norm", float, 1.0, "norm of each row (exact if orthonormal, root mean square if Gaussian)",
              min=0.0),
    )
    example_shapes = [(20, 50), (1, 20)]

    def initialize(self, shapes, rng, dtype=np.float64):
        from .quadratic import draw_family

        if len(shapes) != 2 or shapes[1][0] != 1 or shapes[1][1] != shapes[0][0]:
            raise ValueError(f"quadratic_student_init expects shapes [(m, d), (1, m)], got {list(shapes)}")
        m, d = shapes[0]
        # More rows than dimensions: independent orthonormal blocks of at most d rows each.
        blocks = [draw_family(d, min(d, m - start), self.init, self.norm, rng).T
                  for start in range(0, m, d)]
        hidden = np.concatenate(blocks, axis=0).astype(dtype)
        return [hidden, np.full((1, m), 1.0 / m, dtype=dtype)]

    def expected_variances(self, shapes):
        d = shapes[0][1]
        return [self.norm ** 2 / d, None]
