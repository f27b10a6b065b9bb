"""harness.plugin.manager: a fresh registry per call, hooks that enforce their kind, misspelt hooks
refused naming the plugin, and components created through a cell recorded in its row."""
import types

import pytest

from harness import Activation, PluginError, hookimpl
from harness.plugin.manager import load_registry, make_plugin_manager
from harness.runner.execute import run_cell
from harness.spec import parse_spec


class Cube(Activation):
    name = "test_cube"
    help = "x^3"

    def phi(self, x):
        return x ** 3

    def dphi(self, x):
        return 3 * x ** 2

    def d2phi(self, x):
        return 6 * x


def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def test_each_call_builds_a_fresh_registry_with_its_plugins():
    good = _plugin("good_plugin", harness_register_activations=lambda registry: registry.add(Cube))
    with_cube = load_registry([good])
    assert "test_cube" in with_cube.names("activation")
    assert with_cube.provider_of("activation", "test_cube") == "<local>"
    assert with_cube.plugins == ("good_plugin",)  # what a worker process rebuilds it from
    plain = load_registry()
    assert plain is not with_cube and "test_cube" not in plain.names("activation")
    assert plain.provider_of("activation", "sigmoid") == "harness"  # pluggy's distribution info


def test_a_component_registered_from_another_kinds_hook_is_an_error_naming_the_plugin():
    wrong = _plugin("wrong_kind_plugin", harness_register_losses=lambda registry: registry.add(Cube))
    with pytest.raises(PluginError, match=r"wrong_kind_plugin.*Cube \(a activation\).*harness_register_losses.*"
                                          r"harness_register_activations"):
        make_plugin_manager([wrong])


def test_a_misspelt_hook_is_an_error_naming_the_plugin():
    typo = _plugin("typo_plugin", harness_register_activation=lambda registry: registry.add(Cube))
    with pytest.raises(PluginError, match=r"unknown hook 'harness_register_activation' in plugin 'typo_plugin' "
                                          r"\(did you mean harness_register_activations\?\)"):
        make_plugin_manager([typo])


def test_an_installed_plugin_with_a_misspelt_hook_is_a_recorded_failure(monkeypatch, tmp_path):
    (tmp_path / "typo_env_plugin.py").write_text(
        "from harness import hookimpl\n\n@hookimpl\ndef harness_register_optimizer(registry):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "typo_env_plugin")
    registry = load_registry()
    (failure,) = [f for f in registry.failures if f[0] == "typo_env_plugin"]
    assert "unknown hook 'harness_register_optimizer'" in failure[1]
    assert "sigmoid" in registry.names("activation")  # the others still load


def test_components_a_cell_creates_by_name_are_recorded_in_its_row(registry):
    spec = parse_spec('[benchmark]\nname = "c"\nseed = 1\n\n[[experiments]]\nexperiment = "capacity"\n'
                      'N = 30\nd = 4\nratio = 2.0\nmodel = "two_layer"\nmax_epochs = 20\n',
                      registry=registry)
    row = run_cell(spec.cells()[0], registry)
    assert row["status"] == "ok", row["error"]
    components = row["components"]
    assert components["architecture"]["name"] == "two_layer" and components["architecture"]["params"]["q"] >= 1
    assert components["initializer"]["name"] == "daniely_symmetric"
    assert components["optimizer"]["name"] == "sgd"
    assert components["optimizer"]["params"]["lr"] > 0
