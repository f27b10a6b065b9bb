"""Semi-flat minima by embedding (Fukumizu, Yamaguchi, Mototake and Tanaka, NeurIPS 2019).

The experiments ``embedding_generalization`` (:mod:`.generalization`) and
``embedding_critical_point`` (:mod:`.critical_point`), with their numerics: what a trained
point is (:mod:`.points`: gradient, Hessian class, the ReLU kink check), the
one-hidden-layer network (:mod:`.shallow`), the embedding maps (:mod:`.embedding`),
Levenberg-Marquardt training (:mod:`.levenberg_marquardt`) and exact ReLU interpolation
(:mod:`.relu_interpolation`); cost estimates (:mod:`.costs`) and figures (:mod:`.figures`).
"""
from __future__ import annotations

from harness.plugin import hookimpl

from .critical_point import EmbeddingCriticalPoint  # noqa: F401
from .embedding import EMBEDDINGS, embed  # noqa: F401
from .figures import pooled  # noqa: F401
from .generalization import EmbeddingGeneralization, TrainedStudent, is_relu, train_student  # noqa: F401
from .points import CLASSES, TRAINED_CLASSES, classify, newton_polish, relative_gradient, trained_point_class  # noqa: F401

EXPERIMENTS = (EmbeddingGeneralization, EmbeddingCriticalPoint)


@hookimpl
def harness_register_experiments(registry):
    for component in EXPERIMENTS:
        registry.add(component)
