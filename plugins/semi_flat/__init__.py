"""Semi-flat minima by embedding (Fukumizu, Yamaguchi, Mototake and Tanaka, NeurIPS 2019): the
experiments ``embedding_generalization`` and ``embedding_critical_point``
(:mod:`.generalization`), the one-hidden-layer network's numerics (:mod:`.shallow`), the
embedding maps (:mod:`.embedding`), Levenberg-Marquardt training (:mod:`.levenberg_marquardt`),
exact ReLU interpolation (:mod:`.relu_interpolation`) and cost estimates (:mod:`.costs`).
"""
from __future__ import annotations

from .embedding import EMBEDDINGS, embed  # noqa: F401
from .generalization import (  # noqa: F401
    CLASSES,
    EmbeddingCriticalPoint,
    EmbeddingGeneralization,
    TrainedStudent,
    classify,
    harness_register_experiments,
    is_relu,
    newton_polish,
    pooled,
    relative_gradient,
    train_student,
)
