"""harness-softplus: an example harness plugin with a softplus activation and a pyramid architecture.

The harness imports this module through the ``harness`` entry-point group (see setup.cfg) and
calls the ``harness_register_*`` hooks below; each hook adds its component classes to the
registry it is given.
"""
from harness.plugin import hookimpl

from .activation import Softplus
from .architecture import Pyramid

__all__ = ["Softplus", "Pyramid"]


@hookimpl
def harness_register_activations(registry):
    registry.add(Softplus)


@hookimpl
def harness_register_architectures(registry):
    registry.add(Pyramid)
