"""``harness check-plugin``: the conformance suite on one component from the command line.

The components below are loaded as a plugin module (``HARNESS_PLUGINS``) by the fixture.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness import Activation, Architecture, hookimpl
from harness.cli import main
from harness.plugin import manager as plugin_manager


class Arctan(Activation):
    name = "twin"
    help = "arctan, smooth everywhere"

    def phi(self, x):
        return np.arctan(x)

    def dphi(self, x):
        return 1.0 / (1.0 + np.square(x))

    def d2phi(self, x):
        return -2.0 * x / np.square(1.0 + np.square(x))


class WrongSlope(Activation):
    name = "wrong_slope"
    help = "tanh with a derivative off by a factor of two"

    def phi(self, x):
        return np.tanh(x)

    def dphi(self, x):
        return 2.0 / np.square(np.cosh(np.clip(x, -300, 300)))

    def d2phi(self, x):
        t = np.tanh(x)
        return -2.0 * t * (1 - t * t)


class Narrow(Architecture):
    name = "twin"
    help = "one hidden layer of four units"

    def layer_shapes(self, d):
        return [(4, int(d)), (1, 4)]


@hookimpl
def harness_register_activations(registry):
    registry.add(Arctan)
    registry.add(WrongSlope)


@hookimpl
def harness_register_architectures(registry):
    registry.add(Narrow)


@pytest.fixture(scope="module")
def cli():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parent))
        mp.setenv(plugin_manager.EXTRA_PLUGINS_ENV, Path(__file__).stem)
        runner = CliRunner()
        yield lambda *args: runner.invoke(main, ["check-plugin", *args])
        mp.undo()


def test_a_conforming_builtin_passes_every_check(cli):
    result = cli("sigmoid")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "activation sigmoid [harness]"
    checks = [line for line in lines[1:-1]]
    assert checks and all(line.startswith("  [ok] ") for line in checks)
    assert any("dphi vs finite differences" in line for line in checks)
    assert lines[-1] == f"{len(checks)} passed, 0 failed, 0 skipped"


def test_a_wrong_derivative_fails_with_exit_code_1(cli):
    result = cli("wrong_slope")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "activation wrong_slope [<local>]"
    assert "  [FAIL] dphi vs finite differences" in result.output
    assert "  [ok] shapes kept" in result.output
    assert "  [FAIL] d2phi vs finite differences" in result.output  # d2phi is checked against dphi
    passed = sum(1 for line in result.output.splitlines() if line.startswith("  [ok] "))
    assert result.output.splitlines()[-1] == f"{passed} passed, 2 failed, 0 skipped"


def test_a_name_used_by_two_kinds_needs_kind(cli):
    result = cli("twin")
    assert result.exit_code == 2
    assert result.output.strip() == "error: 'twin' is registered as activation and architecture; choose one with --kind"
    arch = cli("twin", "--kind", "architecture")
    assert arch.exit_code == 0, arch.output
    assert arch.output.startswith("architecture twin [<local>]")
    assert "forward" in arch.output
    act = cli("twin", "--kind", "activation")
    assert act.exit_code == 0 and act.output.startswith("activation twin [<local>]")


@pytest.mark.parametrize("args, message", [
    (["sigmod"], "error: no component named 'sigmod' (did you mean 'sigmoid'"),
    (["sigmoid", "--kind", "activations"], "error: --kind 'activations': not a plugin kind (did you mean 'activation'?)"),
    (["sigmoid", "--kind", "architecture"], "error: unknown architecture 'sigmoid'"),
])
def test_user_mistakes_are_one_line_errors(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1


def test_a_name_from_a_plugin_that_failed_to_load_names_plugin_module_and_error(monkeypatch, tmp_path):
    (tmp_path / "lion_typo.py").write_text(
        "from harness import hookimpl\n\n@hookimpl\ndef harness_register_optimizer(registry):\n    pass\n")
    (tmp_path / "lion_raises.py").write_text(
        "from harness import hookimpl\n\n@hookimpl\ndef harness_register_optimizers(registry):\n"
        "    raise RuntimeError('lion needs a GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugin_manager.EXTRA_PLUGINS_ENV, "lion_typo,lion_missing,lion_raises")
    result = CliRunner().invoke(main, ["check-plugin", "lion"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = result.output
    assert text.startswith("error: no component named 'lion'; plugins that failed to load: ")
    assert ("plugin 'lion_missing' (module lion_missing): ModuleNotFoundError: No module named 'lion_missing'"
            in text)
    assert ("plugin 'lion_typo' (module lion_typo): PluginError: unknown hook 'harness_register_optimizer'"
            in text and "did you mean harness_register_optimizers?" in text)
    assert "plugin 'lion_raises' (module lion_raises): RuntimeError: lion needs a GPU" in text
    with_kind = CliRunner().invoke(main, ["check-plugin", "lion", "--kind", "optimizer"])
    assert with_kind.exit_code == 2 and "unknown optimizer 'lion'" in with_kind.output
    assert "(module lion_typo)" in with_kind.output
    listed = CliRunner().invoke(main, ["plugins"])
    assert "  lion_raises (module lion_raises): RuntimeError: lion needs a GPU" in listed.output
    found = CliRunner().invoke(main, ["check-plugin", "sigmoid"])  # a component that loaded: checked, warned
    assert found.exit_code == 0 and "warning: plugins that failed to load" in found.stderr
