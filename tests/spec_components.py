"""Small components for the spec tests, registered in-process (not through entry points), and
what those tests share: :func:`spec_registry` (the installed plugins plus these; the ``registry``
fixture of a test module that sets ``USES_SPEC_COMPONENTS = True``), a small benchmark file
:data:`BASE`, :func:`parse` and :func:`error_of`."""
import sys

import pytest

from harness import Activation, Architecture, Experiment, Param, Skip, hookimpl
from harness.errors import SpecError
from harness.spec import parse_spec

BASE = """
[benchmark]
name = "t"
seed = 7

[[experiments]]
id = "e"
experiment = "probe"
N = 10
[experiments.grid]
scale = [1.0, 2.0]
"""


def spec_registry():
    """The installed plugins plus this module's components."""
    from harness.plugin.manager import make_plugin_manager

    return make_plugin_manager(extra_plugins=[sys.modules[__name__]])[1]


def parse(text, registry, overrides=()):
    """``text`` validated as the benchmark file ``b.toml``."""
    return parse_spec(text, "b.toml", overrides, registry)


def error_of(text, registry, overrides=()) -> str:
    """The one-line error that loading ``text`` (with ``overrides``) raises."""
    with pytest.raises(SpecError) as info:
        parse(text, registry, overrides)
    return str(info.value)


class Lin(Activation):
    name = "lin"
    help = "identity"

    def phi(self, x):
        return x

    def dphi(self, x):
        return x * 0 + 1

    def d2phi(self, x):
        return x * 0


class Chain(Architecture):
    name = "chain"
    help = "fc with given widths"
    params = (Param("widths", list, [2], item_type=(int, str)), Param("depth", int, 2, min=1))

    def layer_shapes(self, d):
        return [(1, d)]


class Probe(Experiment):
    name = "probe"
    help = "returns its parameters"
    params = (Param("N", int, min=1), Param("scale", float, 1.0, min=0.0),
              Param("mode", str, "a", choices=("a", "b")))
    slots = {"activation": ("activation", "lin"), "architecture": ("architecture", "chain")}
    metrics = ("N", "u")

    def run(self, cell):
        return {"N": self.N, "u": float(cell.rng("data").uniform())}


class Checked(Experiment):
    """Declares cross-parameter constraints (``check``) and skips N = 13."""

    name = "checked"
    help = "k <= N, architecture depth <= 5; N = 13 is skipped"
    params = (Param("N", int, min=1), Param("k", int, 1, min=1), Param("memory", int, 0, min=0))
    slots = {"architecture": ("architecture", "chain")}

    def check(self, params, components):
        if self.k > self.N:
            return "k", f"k = {self.k} exceeds N = {self.N}"
        if components["architecture"].depth > 5:
            return "architecture.depth", "at most 5 layers"
        if self.N == 13:
            return Skip("N = 13 is skipped on purpose")
        return None

    def run(self, cell):
        return {"N": self.N, "k": self.k}

    def estimate(self, cell_params, components):
        return {"memory_bytes": cell_params["memory"]}


@hookimpl
def harness_register_activations(registry):
    registry.add(Lin)


@hookimpl
def harness_register_architectures(registry):
    registry.add(Chain)


@hookimpl
def harness_register_experiments(registry):
    registry.add(Probe)
    registry.add(Checked)
