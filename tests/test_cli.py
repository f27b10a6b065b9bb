"""harness.cli: run, --dry-run, --set, show, plot; user mistakes give one line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, subprocess_env, write_spec

from harness.cli import main

HARNESS = str(Path(sys.executable).with_name("harness"))


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path / "demo.toml", ECHO_SPEC)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not an unexpected exception
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.slow
def test_run_writes_a_run_directory_and_show_prints_it(tmp_path, spec):
    result = invoke("run", spec, "--results-dir", tmp_path / "results", "-q")
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path / "results" / "demo"
    for name in ("spec.toml", "env.json", "rows.jsonl", "summary.csv"):
        assert (run_dir / name).is_file()
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert sorted({r["coords"]["x"] for r in rows}) == [1.0, 2.0, 3.0]
    env = json.loads((run_dir / "env.json").read_text())
    assert env["sessions"][0]["jobs"] == 1 and env["packages"]["numpy"]
    assert env["sessions"][0]["threads_per_job"] >= 1 and "blas" in env and "git" in env
    assert (run_dir / "figures" / "a-u_vs_x.png").stat().st_size > 0
    assert (run_dir / "figures" / "a-u_vs_x.svg").read_text().lstrip().startswith("<?xml")

    shown = invoke("show", run_dir)
    assert shown.exit_code == 0, shown.output
    assert "cells: 6 of 6 (ok 6)" in shown.output
    table = shown.output.split("a (echo)")[1].splitlines()
    assert table[1].split()[:4] == ["x", "rows", "ok", "x_mean"]  # the metric x, named apart from the axis x
    assert [line.split()[0] for line in table[3:6]] == ["1", "2", "3"]


@pytest.mark.slow
def test_set_overrides_values(tmp_path, spec):
    result = invoke("run", spec, "--results-dir", tmp_path, "-q", "--no-figures",
                    "--set", "experiments.a.grid.x=[5.0]", "-s", "benchmark.repetitions=3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (Path(result.stdout.strip()) / "rows.jsonl").read_text().splitlines()]
    assert [r["coords"]["x"] for r in rows] == [5.0, 5.0, 5.0]
    assert sorted(r["repetition"] for r in rows) == [0, 1, 2]
    assert "repetitions = 3" in (Path(result.stdout.strip()) / "spec.toml").read_text()


def test_dry_run_lists_cells_with_estimates_and_runs_nothing(tmp_path, spec):
    result = invoke("run", spec, "--dry-run", "--cells", "--results-dir", tmp_path / "results", "-j", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "experiment", "rep", "coords", "memory", "time"]
    assert lines[3].split()[:4] == ["3", "a", "0", "x=3.0"] and "3.0 kB" in lines[3]
    # echo's estimate is 0.5 s a cell: 3 cells per worker, plus each worker's start-up
    from harness.plugin.calibration import WORKER_START_SECONDS
    from harness.runner.executors import threads_per_job

    wall = f"{1.5 + WORKER_START_SECONDS:.2g} s"
    assert (f"6 cells; estimated time about {wall} with -j 2 ({threads_per_job(2)} thread"
            in lines[-1]), lines[-1]
    assert "cells add up to 3 s" in lines[-1]
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_failures_and_figure_errors_do_not_stop_the_run(tmp_path):
    spec = write_spec(tmp_path / "mixed.toml", """
[benchmark]
name = "mixed"
seed = 2
[[experiments]]
id = "bad"
experiment = "fail"
[[experiments]]
id = "d"
experiment = "nan"
[[experiments]]
id = "fig"
experiment = "badfig"
""")
    result = invoke("run", spec, "--results-dir", tmp_path)
    assert result.exit_code == 3, result.output  # some cells not ok
    assert "2 cells not ok; the first: bad [no grid] repetition 0: failed: ValueError: boom" in result.stderr
    assert "warning: figures of 'fig' (badfig) failed: RuntimeError: cannot draw" in result.stderr
    assert "done:" in result.stderr and "diverged 1, failed 1, ok 1" in result.stderr
    run_dir = Path(result.stdout.strip())
    shown = invoke("show", run_dir)
    assert "cells: 3 of 3 (diverged 1, failed 1, ok 1)" in shown.output


@pytest.mark.slow
def test_plot_redraws_figures(tmp_path, spec):
    run_dir = Path(invoke("run", spec, "--results-dir", tmp_path, "-q", "--no-figures").stdout.strip())
    assert not (run_dir / "figures").exists()
    result = invoke("plot", run_dir)
    assert result.exit_code == 0, result.output
    assert sorted(Path(p).name for p in result.stdout.split()) == ["a-u_vs_x.png", "a-u_vs_x.svg"]


@pytest.mark.slow
def test_show_an_incomplete_run_says_how_to_finish(tmp_path, spec):
    run_dir = Path(invoke("run", spec, "--results-dir", tmp_path, "-q", "--no-figures").stdout.strip())
    rows = (run_dir / "rows.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "rows.jsonl").write_text("".join(rows[:4]))
    result = invoke("show", run_dir)
    assert result.exit_code == 0
    assert "cells: 4 of 6" in result.output
    assert f"incomplete: 2 cells missing; finish with: harness run --resume {run_dir}" in result.output


@pytest.mark.parametrize("args, fragments", [
    (["run"], ["error: give a benchmark FILE to run, or --resume RUN_DIR"]),
    (["run", "{tmp}/missing.toml"], ["error:", "missing.toml: no such file"]),
    (["run", "{spec}", "--set", "nonsense"], ["error:", "expected key.path=value"]),
    (["run", "{spec}", "--set", "experiments.a.x='abc'"], ["error:", "experiments.a.x", "abc"]),
    (["run", "{spec}", "--set", "experiments.zz.x=1"], ["error:", "no experiment block 'zz'"]),
    (["run", "{spec}", "--jobs", "0"], ["--jobs"]),
    (["run", "{spec}", "--timeout", "-1"], ["--timeout"]),
    (["run", "--resume", "{tmp}/nowhere"], ["error:", "no such run directory"]),
    (["run", "{spec}", "--resume", "{tmp}"], ["error:", "not both"]),
    (["run", "--resume", "{tmp}", "--dry-run"], ["error:", "--dry-run"]),
    (["show", "{tmp}"], ["error:", "not a run directory (no spec.toml)"]),
    (["plot", "{tmp}/nowhere"], ["error:", "no such run directory"]),
    (["nosuchcommand"], ["No such command"]),
])
def test_user_mistakes_exit_2_with_a_message(tmp_path, spec, args, fragments):
    args = [a.format(tmp=tmp_path, spec=spec) for a in args]
    assert_user_error(invoke(*args), *fragments)


def test_bad_benchmark_files(tmp_path):
    bad_toml = write_spec(tmp_path / "bad.toml", "[benchmark\nname = 1")
    assert_user_error(invoke("run", bad_toml), "invalid TOML")
    unknown = write_spec(tmp_path / "unknown.toml", ECHO_SPEC.replace('experiment = "echo"', 'experiment = "ecko"'))
    assert_user_error(invoke("run", unknown, "--results-dir", tmp_path), "ecko", "echo")
    typo = write_spec(tmp_path / "typo.toml", ECHO_SPEC.replace("x = 1.0\n", "xx = 1.0\n"))
    assert_user_error(invoke("run", typo, "--results-dir", tmp_path), "experiments.a.xx")
    assert not list(tmp_path.glob("demo"))  # nothing created for an invalid file


@pytest.mark.slow
def test_console_script_user_error_and_help(tmp_path):
    env = subprocess_env()
    bad = subprocess.run([HARNESS, "run", str(tmp_path / "nope.toml")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
    helped = subprocess.run([HARNESS, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("run", "show", "plugins", "plot"):
        assert command in helped.stdout


@pytest.mark.slow
def test_bench_ntk_runs_and_prints_ratios():
    from click.testing import CliRunner

    from harness.cli import main

    result = CliRunner().invoke(main, ["bench", "ntk", "--sizes", "32x64", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    header = lines[-2].split()
    values = dict(zip(header, lines[-1].split()))
    assert values["d"] == "32" and values["N"] == "64"
    assert values["ntk_vs_plain"].endswith("x") and float(values["ntk_vs_plain"][:-1]) > 0
    assert values["lmin_vs_eigvalsh"].endswith("x") and float(values["lmin_vs_eigvalsh"][:-1]) > 0
    assert float(values["lmin_rel_diff"]) < 1e-8


def test_bench_rejects_unknown_name():
    from click.testing import CliRunner

    from harness.cli import main

    result = CliRunner().invoke(main, ["bench", "nope"])
    assert result.exit_code == 2 and "'nope' is not one of" in result.output


# ---- refused before anything runs (issue 13): one line, exit 2, no run directory

@pytest.fixture
def timed(tmp_path):
    from plugins_for_tests import TIMED_SPEC

    return write_spec(tmp_path / "timed.toml", TIMED_SPEC.replace("n = [2, 3, 13]", "n = [2, 3]"))


@pytest.mark.parametrize("args, fragments", [
    (["--set", "experiments.t.k=5"], ["error: --set experiments.t.k: experiments.t.k = 5: k = 5 exceeds n = 2 "
                                      "(at grid point n=2)"]),
    (["--set", "experiments.t.grid.n=[2, 2]"], ["--set experiments.t.grid.n", "value 2 appears twice"]),
    (["--set", "benchmark.name=.."], ["--set benchmark.name: benchmark.name = '..'"]),
    (["--set", "experiments.t.grid.n={start=1, stop=2, step=1e-9}"], ["has about 1e+09 values; at most 100000"]),
    (["--set", "experiments.t.derived.memory=\"10**10**10\""], ["experiments.t.derived.memory = '10**10**10'",
                                                                 "more than 300 digits"]),
    (["--timeout", "inf"], ["--timeout inf: must be a finite number of seconds > 0"]),
    (["--set", "experiments.t.memory=1000000000000000"], ["experiments.t at n=2: a cell needs about 1000.0 TB",
                                                          "nothing was run", "--force"]),
])
def test_bad_input_is_refused_before_anything_runs(tmp_path, timed, args, fragments):
    results = tmp_path / "results"
    result = invoke("run", timed, "--results-dir", results, "-q", *args)
    assert_user_error(result, *fragments)
    assert len(result.output.strip().splitlines()) == 1 and len(result.output) < 500
    assert not results.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["timed.toml"]


@pytest.mark.slow
def test_force_runs_cells_that_do_not_fit(tmp_path, timed):
    result = invoke("run", timed, "--results-dir", tmp_path / "results", "-q", "--no-figures", "--force",
                    "--set", "experiments.t.memory=1000000000000000")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (Path(result.stdout.strip()) / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    plan = invoke("run", timed, "--dry-run", "--set", "experiments.t.memory=1000000000000000")
    assert plan.exit_code == 0 and "harness run refuses them unless --force" in plan.output


@pytest.mark.slow
def test_show_and_compare_leave_timings_out_unless_asked(tmp_path, timed):
    result = invoke("run", timed, "--results-dir", tmp_path / "results", "-q", "--no-figures")
    assert result.exit_code == 0, result.output
    run_dir = result.stdout.strip()
    shown = invoke("show", run_dir, "--width", "0")
    assert shown.exit_code == 0 and "value" in shown.output and "seconds" not in shown.output
    assert "timings.work_seconds" in invoke("show", run_dir, "--width", "0", "--timings").output
    compared = invoke("compare", run_dir, "--by", "n")
    assert compared.exit_code == 0 and "seconds" not in compared.output
    assert "timings.work_seconds" in invoke("compare", run_dir, "--by", "n", "--timings").output


def test_a_bad_kernel_blas_choice_is_refused_before_any_cell_runs(tmp_path, spec, monkeypatch):
    import harness.engine.kernel_blas as kb

    monkeypatch.setenv("HARNESS_KERNEL_BLAS", "atlas")
    result = invoke("run", spec, "--results-dir", tmp_path / "results", "-q")
    assert_user_error(result, "HARNESS_KERNEL_BLAS='atlas': allowed values are auto, openblas, mkl")
    assert not (tmp_path / "results").exists()
    monkeypatch.setenv("HARNESS_KERNEL_BLAS", "mkl")
    monkeypatch.setattr(kb, "mkl_library", lambda: None)  # as on a machine without the extra
    result = invoke("run", spec, "--results-dir", tmp_path / "results", "-q")
    assert_user_error(result, "HARNESS_KERNEL_BLAS=mkl: MKL is not installed")
    assert not (tmp_path / "results").exists()
