"""harness: a plugin-based benchmark harness for over-parameterised neural networks.

Public API (also what the CLI calls): components and parameters for plugin authors
(``hookimpl``, ``Param``, ``Activation``, ...), and the run API (``run``, ``load_run``).
"""
from .components import (Activation, Architecture, Backend, CellContext, Component, Dataset,
                         Experiment, Initializer, Loss, Optimizer, Registry, TrainingProblem)
from .errors import PluginError, SpecError, UserError
from .hookspecs import hookimpl
from .params import REQUIRED, Param

__version__ = "0.1.0"

__all__ = [
    "Activation", "Architecture", "Backend", "CellContext", "Component", "Dataset", "Experiment",
    "Initializer", "Loss", "Optimizer", "Registry", "TrainingProblem", "PluginError", "SpecError",
    "UserError", "hookimpl", "REQUIRED", "Param", "__version__",
]
