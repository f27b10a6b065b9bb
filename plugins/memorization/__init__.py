"""Memorisation experiments: Bombari et al.'s Figure 2, Daniely's two-layer baseline, and a
capacity study that puts both on the same data at matched parameter counts.

The experiments live one per module (:mod:`.deep` for ``memorization``, :mod:`.two_layer` for
``two_layer_memorization``, :mod:`.capacity` for ``capacity``), with their shared training
helpers (:mod:`._common`), cost estimates (:mod:`.costs`) and figures (:mod:`.figures`, and
:mod:`.threshold_figures` for the threshold search).
"""
from __future__ import annotations

from harness import hookimpl

from ._common import *  # noqa: F401,F403  (the public helpers, as before the split)
from ._common import LOG10_FLOOR, MEMORISED_LOG10, MODELS  # noqa: F401
from .capacity import Capacity, deep_width, two_layer_units  # noqa: F401
from .costs import window_epochs  # noqa: F401
from .deep import Memorization
from .figures import _grid_means, _heatmap, memorisation_threshold  # noqa: F401
from .threshold_figures import threshold_fit, threshold_lines  # noqa: F401
from .two_layer import TwoLayerMemorization, labels_of  # noqa: F401

EXPERIMENTS = (Memorization, TwoLayerMemorization, Capacity)


@hookimpl
def harness_register_experiments(registry):
    for component in EXPERIMENTS:
        registry.add(component)
