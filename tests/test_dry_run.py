"""harness run --dry-run: one line per grid point with its totals (one per cell with --cells), the
same option checks as a run, and times of any size (harness.results.views, runner.progress)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, write_spec

from harness.cli import main
from harness.runner.progress import format_seconds

USES_TEST_PLUGINS = True
pytestmark = pytest.mark.usefixtures("registry")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path / "demo.toml", ECHO_SPEC)


def test_one_line_per_grid_point_by_default_and_per_cell_with_cells(spec):
    points = invoke("run", spec, "--dry-run")
    assert points.exit_code == 0, points.output
    lines = points.stdout.splitlines()
    assert lines[0].split() == ["#", "experiment", "coords", "cells", "memory", "time"]
    # echo estimates 1000 x bytes and 0.5 s per cell; 2 repetitions per point
    assert [line.split()[1:] for line in lines[1:4]] == [["a", "x=1.0", "2", "1.0", "kB", "1", "s"],
                                                       ["a", "x=2.0", "2", "2.0", "kB", "1", "s"],
                                                       ["a", "x=3.0", "2", "3.0", "kB", "1", "s"]]
    assert lines[4].startswith("6 cells; estimated time about")
    cells = invoke("run", spec, "--dry-run", "--cells")
    lines = cells.stdout.splitlines()
    assert lines[0].split() == ["#", "experiment", "rep", "coords", "memory", "time"] and len(lines) == 8
    assert lines[7].startswith("6 cells; estimated time about")


@pytest.mark.parametrize("args, fragment", [
    (["--timeout", "nan"], "--timeout nan: must be a finite number of seconds > 0"),
    (["--timeout", "inf"], "--timeout inf: must be a finite number of seconds > 0"),
    (["--name", "../x"], "--name '../x': use 1 to 64 letters"),
    (["--retry-failed"], "--retry-failed reruns the failed cells of a run: use it with --resume RUN_DIR"),
    (["--executor", "inline", "--timeout", "3"], "a timeout needs a worker process to stop"),
])
def test_a_dry_run_refuses_what_a_run_refuses(spec, tmp_path, args, fragment):
    for mode in (["--dry-run"], ["--results-dir", tmp_path / "r", "-q"]):
        result = invoke("run", spec, *mode, *args)
        assert result.exit_code == 2 and fragment in result.output, (mode, result.output)
    assert not (tmp_path / "r").exists()


def test_times_of_any_size():
    assert format_seconds(59.4) == "0:59" and format_seconds(3725) == "1:02:05"
    assert format_seconds(1.5e8) == "1.5e+08 s" and format_seconds(float("inf")) == "inf s"
    assert format_seconds(1e303) == "1e+303 s"


@pytest.mark.parametrize("override", ["experiments.orthonormal.t_max=1e308",
                                      "experiments.finite_sample.gd_step=1e-300"])
def test_a_plan_of_extreme_but_valid_values_prints(override):
    result = invoke("run", "benchmarks/quadratic_teacher_student.toml", "-s", override, "--dry-run")
    assert result.exit_code == 0, (result.output, result.exception)
    assert all(len(line) < 200 for line in result.output.splitlines())
