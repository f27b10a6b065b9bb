"""Small components for the spec tests, registered in-process (not through entry points)."""
from harness import Activation, Architecture, Experiment, Param, hookimpl


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

    def run(self, cell):
        return {"N": self.N, "u": float(cell.rng("data").uniform())}


@hookimpl
def harness_register_activations(registry):
    registry.add(Lin)


@hookimpl
def harness_register_architectures(registry):
    registry.add(Chain)


@hookimpl
def harness_register_experiments(registry):
    registry.add(Probe)
