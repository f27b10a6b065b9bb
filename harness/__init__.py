"""harness: a plugin-based benchmark harness for over-parameterised neural networks.

Public API (also what the CLI calls): components and parameters for plugin authors
(``hookimpl``, ``Param``, ``Activation``, ...), and the run API (``run``, ``load_run``).
"""
from harness.plugin import (
    REQUIRED,
    Activation,
    Architecture,
    Backend,
    CellContext,
    Component,
    Dataset,
    Experiment,
    Initializer,
    Loss,
    Optimizer,
    Param,
    PluginError,
    Registry,
    Skip,
    SkipCell,
    SpecError,
    TrainingProblem,
    UserError,
    hookimpl,
    warm_up,
)
from harness.version import __version__

_API = ("run", "load_run", "plan", "plot", "compare", "fit", "report", "describe_plugins", "check_plugin")


def __getattr__(name):  # the run API, imported on first use: ``harness.run(...)``
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = [
    "Activation", "Architecture", "Backend", "CellContext", "Component", "Dataset", "Experiment",
    "Initializer", "Loss", "Optimizer", "Registry", "Skip", "SkipCell", "TrainingProblem", "warm_up",
    "PluginError", "SpecError", "UserError", "hookimpl", "REQUIRED", "Param", "__version__", *_API,
]
