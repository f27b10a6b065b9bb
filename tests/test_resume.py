"""Killed and interrupted runs lose no finished row, and --resume finishes exactly what is missing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugins_for_tests import subprocess_env, write_spec

from harness import api
from harness.errors import UserError
from harness.spec.row import TIMING_FIELDS

HARNESS = str(Path(sys.executable).with_name("harness"))

SLEEP_SPEC = """
[benchmark]
name = "slow"
seed = 11
repetitions = 2

[[experiments]]
id = "s"
experiment = "sleep"
seconds = 0.5
[experiments.grid]
i = [0, 1, 2, 3, 4]

[[experiments]]
id = "f"
experiment = "fail"
"""
TOTAL = 12  # 5 points x 2 repetitions + 1 point x 2 repetitions
# 0.5 s a sleep cell: a run with -j 2 lasts about 3 s, so a signal sent after the first rows
# arrives before the end even when the test process is slowed by a busy machine


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial run of the same benchmark."""
    root = tmp_path_factory.mktemp("reference")
    spec = write_spec(root / "slow.toml", SLEEP_SPEC)
    run_dir = api.run(spec, results_dir=root / "results", progress=False, figures=False)
    return run_dir


def by_cell(rows):
    return {r["cell_id"]: json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)
            for r in rows}


def raw_lines(run_dir):
    return [json.loads(line) for line in Path(run_dir, "rows.jsonl").read_text().splitlines() if line]


def only_run_dir(results: Path) -> Path:
    dirs = list(results.glob("*/*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def wait_for_rows(rows_path: Path, n: int, proc, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if rows_path.exists() and rows_path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"harness exited early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no rows appeared in time")


def assert_same_as_reference(run_dir, reference):
    lines = raw_lines(run_dir)
    ids = [r["cell_id"] for r in lines]
    assert len(ids) == len(set(ids)) == TOTAL  # every cell exactly once
    assert by_cell(lines) == by_cell(reference.read_rows())
    assert Path(run_dir, "summary.csv").read_text() == reference.summary_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_then_resume_loses_nothing(tmp_path, reference, jobs):
    spec = write_spec(tmp_path / "slow.toml", SLEEP_SPEC)
    results = tmp_path / "results"
    env = subprocess_env()
    proc = subprocess.Popen([HARNESS, "run", str(spec), "--results-dir", str(results), "-q", "--no-figures",
                             "--jobs", str(jobs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_rows_path = None
    deadline = time.monotonic() + 30
    while wait_for_rows_path is None and time.monotonic() < deadline:
        found = list(results.glob("*/*/rows.jsonl"))
        wait_for_rows_path = found[0] if found else None
        time.sleep(0.02)
    assert wait_for_rows_path is not None
    wait_for_rows(wait_for_rows_path, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    run_dir = only_run_dir(results)
    before = raw_lines(run_dir)
    assert 3 <= len(before) < TOTAL  # killed part-way
    kept = by_cell(before)

    done = subprocess.run([HARNESS, "run", "--resume", str(run_dir), "-q", "--no-figures"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr  # the "fail" block's cells failed (exit code 3)
    assert "Traceback" not in done.stderr
    assert_same_as_reference(run_dir, reference)
    after = by_cell(raw_lines(run_dir))
    assert all(after[k] == v for k, v in kept.items())  # finished rows untouched
    env_json = json.loads(Path(run_dir, "env.json").read_text())
    assert [s["jobs"] for s in env_json["sessions"]] == [jobs, jobs]  # the resume remembers -j


@pytest.mark.slow
def test_torn_last_line_is_dropped_and_redone(tmp_path, reference):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference.path, run_dir)
    rows_path = run_dir / "rows.jsonl"
    lines = rows_path.read_text().splitlines(keepends=True)
    torn = lines[-3][: len(lines[-3]) // 2]  # the first half of a row, as a kill mid-write leaves it
    rows_path.write_text("".join(lines[:-3]) + torn)
    resumed = api.run(resume=run_dir, progress=False, figures=False)
    assert resumed.path == run_dir
    assert_same_as_reference(run_dir, reference)


def test_resuming_a_complete_run_runs_nothing(tmp_path, reference):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference.path, run_dir)
    before = (run_dir / "rows.jsonl").read_bytes()
    api.run(resume=run_dir, progress=False, figures=False)
    assert (run_dir / "rows.jsonl").read_bytes() == before
    assert len(json.loads((run_dir / "env.json").read_text())["sessions"]) == 2


def test_resume_refuses_overrides_and_a_second_spec(tmp_path, reference):
    with pytest.raises(UserError, match="cannot change a run being resumed"):
        api.run(resume=reference.path, overrides=["benchmark.seed=3"], progress=False)
    with pytest.raises(UserError, match="not both"):
        api.run(tmp_path / "x.toml", resume=reference.path, progress=False)
    with pytest.raises(UserError, match="not a run directory"):
        api.run(resume=tmp_path, progress=False)


def test_keyboard_interrupt_keeps_finished_rows_and_writes_summary(tmp_path):
    spec = write_spec(tmp_path / "int.toml", """
[benchmark]
name = "int"
seed = 1
[[experiments]]
experiment = "interrupt"
at = 3
[experiments.grid]
i = [0, 1, 2, 3, 4, 5]
""")
    with pytest.raises(api.Interrupted) as info:  # inline: the cell's Ctrl-C reaches this process
        api.run(spec, results_dir=tmp_path / "results", progress=False, figures=False, executor="inline")
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt)
    assert (exc.done, exc.total) == (3, 6)
    assert [r["metrics"]["i"] for r in exc.run_dir.read_rows()] == [0, 1, 2]
    assert exc.run_dir.summary_path.read_text().count("\n") == 4  # header + 3 points


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_or_sigterm_stops_a_parallel_run_cleanly(tmp_path, reference, signum):
    spec = write_spec(tmp_path / "slow.toml", SLEEP_SPEC)
    results = tmp_path / "results"
    proc = subprocess.Popen([HARNESS, "run", str(spec), "--results-dir", str(results), "--no-figures",
                             "-j", "2"], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(results.glob("*/*/rows.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_for_rows(next(results.glob("*/*/rows.jsonl")), 2, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = only_run_dir(results)
    assert f"harness run --resume {run_dir}" in err
    assert len(raw_lines(run_dir)) >= 2
    assert os.path.exists(run_dir / "summary.csv")
    api.run(resume=run_dir, progress=False, figures=False)
    assert_same_as_reference(run_dir, reference)


@pytest.mark.slow
def test_resume_notes_a_change_of_the_training_kernels_blas(tmp_path, monkeypatch, capsys):
    """env.json records the kernel's BLAS per session; a resume with another one says so."""
    from harness.runner import envinfo

    spec = write_spec(tmp_path / "k.toml", """
[benchmark]
name = "k"
seed = 2
[[experiments]]
experiment = "sleep"
seconds = 0.0
[experiments.grid]
i = [0, 1]
""")
    monkeypatch.setattr(envinfo, "kernel_blas_info", lambda: {"name": "openblas", "version": "x"})
    run_dir = api.run(spec, results_dir=tmp_path / "results", progress=True, figures=False)
    capsys.readouterr()
    api.run(resume=run_dir.path, progress=True, figures=False)
    assert "training kernel's products" not in capsys.readouterr().err  # same library: silent
    monkeypatch.setattr(envinfo, "kernel_blas_info", lambda: {"name": "mkl", "version": "y"})
    api.run(resume=run_dir.path, progress=True, figures=False)
    err = capsys.readouterr().err
    assert "earlier cells computed the training kernel's products with openblas, this session with mkl" in err
    sessions = json.loads(Path(run_dir.path, "env.json").read_text())["sessions"]
    assert [s["kernel_blas"]["name"] for s in sessions] == ["openblas", "openblas", "mkl"]
