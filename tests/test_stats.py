"""harness.results.stats: means and deviations of any finite metric, and a run whose metrics sit at
the ends of the number range (1e308, ~1e200 differing by seed, 10**400) that every command reads."""
from __future__ import annotations

import math
import statistics
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import write_spec

from harness.cli import main
from harness.results.stats import finite_float, mean_std

USES_TEST_PLUGINS = True
pytestmark = pytest.mark.usefixtures("registry")


def _exact(xs):
    """Mean and sample standard deviation from rational arithmetic (the reference)."""
    fs = [Fraction(x) for x in xs]
    mean = sum(fs) / len(fs)
    var = sum((f - mean) ** 2 for f in fs) / (len(fs) - 1)
    return mean, var


def test_ordinary_values_keep_fsum_digits():
    xs = [0.1, 0.2, 0.3, 1e-9, 7.5]
    mean, std = mean_std(xs)
    assert mean == math.fsum(xs) / len(xs)
    assert std == math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    assert std == pytest.approx(statistics.stdev(xs), rel=1e-15)
    assert mean_std([]) == (None, None) and mean_std([2.5]) == (2.5, None)


@pytest.mark.parametrize("xs", [
    [1e308, 1e308, 1e308],                      # the sum overflows
    [1e200, 2e200, 1.5e200],                    # (x - mean)**2 overflows
    [1.2e308, -1.2e308, 1.2e308, -1.2e308],     # x - mean overflows
    [-1e308, -1.5e308],
])
def test_values_near_the_float_range(xs):
    mean, std = mean_std(xs)
    exact_mean, exact_var = _exact(xs)
    assert isinstance(mean, float) and mean == pytest.approx(float(exact_mean), rel=1e-15)
    assert math.isfinite(std) and std == pytest.approx(math.sqrt(float(exact_var / 2 ** 2000)) * 2.0 ** 1000,
                                                       rel=1e-12)


def test_a_deviation_beyond_the_float_range_is_an_integer():
    xs = [1.79e308, -1.79e308]
    mean, std = mean_std(xs)
    assert mean == 0.0
    assert isinstance(std, int) and std > 10 ** 308
    assert abs(std - math.isqrt(int(_exact(xs)[1]))) <= 1


def test_integers_beyond_the_float_range_are_exact():
    mean, std = mean_std([10 ** 400, 10 ** 400 + 2])
    assert mean == 10 ** 400 + 1
    assert std == pytest.approx(math.sqrt(2.0), rel=1e-15)
    mean, std = mean_std([10 ** 400, 3 * 10 ** 400])
    assert mean == 2 * 10 ** 400 and abs(std - math.isqrt(2 * 10 ** 800)) <= 1


def test_finite_float():
    assert finite_float(3) == 3.0 and finite_float(True) == 1.0 and finite_float(1e308) == 1e308
    assert finite_float(10 ** 400) is None and finite_float(math.inf) is None and finite_float(math.nan) is None
    assert finite_float("1") is None and finite_float(None) is None


HUGE_SPEC = """
[benchmark]
name = "huge"
seed = 3
repetitions = 3

[[experiments]]
id = "h"
experiment = "huge"
[experiments.grid]
i = [1, 2]
"""


def test_every_command_reads_a_run_with_huge_metrics(tmp_path):
    runner = CliRunner()
    spec = write_spec(tmp_path / "huge.toml", HUGE_SPEC)
    result = runner.invoke(main, ["run", str(spec), "--results-dir", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    run = Path(result.stdout.strip())
    summary = (run / "summary.csv").read_text()
    header, first = summary.splitlines()[:2]
    line = dict(zip(header.split(","), first.split(",")))
    assert float(line["lr_mean"]) == 1e308 and float(line["lr_std"]) == 0.0
    assert int(line["big_mean"]) == 10 ** 400 and float(line["big_std"]) == 0.0
    assert 1e200 <= float(line["spread_mean"]) <= 2e200 and 0 < float(line["spread_std"]) < 1e200
    assert (run / "report.html").is_file()
    for args in (["show", run], ["export", run], ["report", run], ["plot", run],
                 ["plot", run, "--metric", "spread", "--x", "i"], ["compare", run, "--by", "i"],
                 ["fit", run, "--metric", "spread", "--axis", "i"], ["fit", run, "--metric", "big", "--axis", "i"],
                 ["run", "--resume", run, "-q"]):
        out = runner.invoke(main, [str(a) for a in args])
        assert out.exit_code in (0, 2), (args, out.output, out.exception)
        assert out.exception is None or isinstance(out.exception, SystemExit), (args, out.exception)
        assert "Traceback" not in out.output
    shown = runner.invoke(main, ["show", str(run), "--width", "0"])
    assert "1.000e+308 ± 0" in shown.output
