"""Comparing and plotting run directories from the command line: runs whose block runs another
experiment are compared with a warning, and a --hue key that no row has is refused."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, write_spec

from harness.cli import main

USES_TEST_PLUGINS = True
pytestmark = pytest.mark.usefixtures("registry")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _run(tmp_path, name, text):
    spec = write_spec(tmp_path / f"{name}.toml", text)
    result = invoke("run", spec, "--results-dir", tmp_path / "r", "-q", "--no-figures", "--executor", "inline")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def test_compare_of_different_experiments_warns(tmp_path):
    echo = _run(tmp_path, "a", ECHO_SPEC)
    other = _run(tmp_path, "b", ECHO_SPEC.replace('name = "demo"', 'name = "other"').replace(
        'experiment = "echo"\nx = 1.0', 'experiment = "huge"').replace("x = [1.0, 2.0, 3.0]", "i = [1, 2, 3]"))
    same = invoke("compare", echo, echo, "--by", "run")
    assert same.exit_code == 0 and "warning" not in same.output
    mixed = invoke("compare", echo, other, "--by", "run")
    assert mixed.exit_code == 0, mixed.output
    assert "warning: block 'a' runs different experiments (echo in " in mixed.output


def test_plot_refuses_an_unknown_hue(tmp_path):
    run = _run(tmp_path, "a", ECHO_SPEC)
    result = invoke("plot", run, "--metric", "u", "--x", "x", "--hue", "zz")
    assert result.exit_code == 2 and "--hue 'zz': no such key" in result.output
    assert not list((run / "figures").glob("*by_zz*")) if (run / "figures").exists() else True
    assert invoke("plot", run, "--metric", "u", "--x", "x", "--hue", "data").exit_code == 0
