"""Every hook a harness plugin can implement, one per plugin kind.

Each hook receives a :class:`harness.plugin.registry.Registry` and calls ``registry.add(Component)``
for every component it provides. Plugins are modules (or objects) with functions decorated by
``harness.hookimpl`` and are found through the ``harness`` entry-point group.
"""
import pluggy

PROJECT = "harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_register_activations(registry):
    """Register activation components (element-wise phi with its first two derivatives)."""


@hookspec
def harness_register_initializers(registry):
    """Register initializer components (draw a network's weights from its layer shapes)."""


@hookspec
def harness_register_architectures(registry):
    """Register architecture components (layer shapes and which layers are trained)."""


@hookspec
def harness_register_datasets(registry):
    """Register dataset components (draw inputs X and targets y)."""


@hookspec
def harness_register_losses(registry):
    """Register loss components (mean loss and its gradient in the outputs)."""


@hookspec
def harness_register_optimizers(registry):
    """Register optimizer components (prepare, init_state and step)."""


@hookspec
def harness_register_experiments(registry):
    """Register experiment components (turn one cell's parameters and seed into a result row)."""


@hookspec
def harness_register_backends(registry):
    """Register backend components (where the NTK and training kernels run)."""
