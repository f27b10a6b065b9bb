"""Runs that cannot be corrupted (issue 13): cell identity and edited specs, the run lock, crash
isolation (segfault, memory leak, hang), --retry-failed, full disk, malformed rows, exit status,
and a Dask run left without workers."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, subprocess_env, write_spec

from harness import api
from harness.cli import main
from harness.errors import RunStopped, UserError
from harness.plugin.seeds import cell_spawn_key
from harness.runner import store
from harness.runner.store import RunDir
from harness.spec import parse_spec

HARNESS = str(Path(sys.executable).with_name("harness"))


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def quick_run(tmp_path, text=ECHO_SPEC, **kw):
    spec = write_spec(tmp_path / "spec.toml", text)
    kw.setdefault("executor", "inline")
    return api.run(str(spec), results_dir=tmp_path / "results", progress=False, figures=False, **kw)


# ----------------------------------------------------------------------------------------------
# cell identity


def test_cell_id_covers_seed_parameters_and_versions_but_the_seed_stays(registry, monkeypatch):
    base = parse_spec(ECHO_SPEC, registry=registry).cells()
    other_seed = parse_spec(ECHO_SPEC.replace("seed = 1", "seed = 2"), registry=registry).cells()
    other_param = parse_spec(ECHO_SPEC.replace('experiment = "echo"', 'experiment = "echo"\nsleep = 0.001'),
                             registry=registry).cells()
    for a, b, c in zip(base, other_seed, other_param):
        assert len({a.cell_id, b.cell_id, c.cell_id}) == 3
        assert len({a.point_id, b.point_id, c.point_id}) == 3
        # the seed is keyed on the seed coordinates and the repetition only, as before
        assert a.spawn_key == b.spawn_key == c.spawn_key == cell_spawn_key(a.seed_coords, a.repetition)
    assert base[0].versions["experiment"].startswith("<local>") or base[0].versions["experiment"]
    assert base[0].describe()["versions"] == base[0].versions
    monkeypatch.setattr(type(registry), "version_of", lambda self, kind, name: "other 9.9")
    upgraded = parse_spec(ECHO_SPEC, registry=registry).cells()
    assert [c.cell_id for c in upgraded] != [c.cell_id for c in base]
    assert [c.spawn_key for c in upgraded] == [c.spawn_key for c in base]


def test_spec_toml_carries_a_checksum(tmp_path):
    run_dir = quick_run(tmp_path)
    text = run_dir.spec_path.read_text()
    assert text.splitlines()[-1].startswith(store.CHECKSUM_PREFIX)
    body, recorded = run_dir.read_spec_text()
    assert recorded == store.spec_checksum(body)
    identity = run_dir.read_identity()
    assert identity["checksum"] == recorded and identity["spec"] == body
    assert "experiment echo" in identity["versions"]
    assert not run_dir.lock_path.exists()  # released when the run ends


@pytest.mark.parametrize("edit, named", [
    (lambda t: t.replace("seed = 1", "seed = 7"), "benchmark.seed: 1 -> 7"),
    (lambda t: t.replace("x = [1.0, 2.0, 3.0]", "x = [1.0, 2.0, 4.0]"), "experiments[a].grid.x"),
    (lambda t: t.replace("repetitions = 2", "repetitions = 3", 1), "benchmark.repetitions: 2 -> 3"),
])
def test_resume_of_an_edited_spec_exits_2_naming_the_change(tmp_path, edit, named):
    run_dir = quick_run(tmp_path)
    rows_before = run_dir.rows_path.read_bytes()
    run_dir.spec_path.write_text(edit(run_dir.spec_path.read_text()))
    with pytest.raises(UserError, match="does not describe the cells of this run") as info:
        api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")
    assert named in str(info.value)
    result = invoke("run", "--resume", run_dir.path, "-q", "--executor", "inline")
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert run_dir.rows_path.read_bytes() == rows_before  # nothing mixed in
    assert not run_dir.lock_path.exists()


def test_a_comment_edit_resumes_and_a_plugin_upgrade_does_not(tmp_path, registry, monkeypatch):
    run_dir = quick_run(tmp_path)
    run_dir.spec_path.write_text("# a note\n" + run_dir.spec_path.read_text())
    api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")  # same values
    monkeypatch.setattr(type(registry), "version_of", lambda self, kind, name: "harness 99")
    with pytest.raises(UserError, match=r"version of experiment echo: .* -> harness 99"):
        api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")


def test_rows_of_other_cells_are_never_mixed_in(tmp_path):
    run_dir = quick_run(tmp_path)
    rows = run_dir.read_rows()
    stranger = dict(rows[0], cell_id="0123456789abcdef")  # e.g. an older harness's cell id
    with open(run_dir.rows_path, "a") as f:
        f.write(json.dumps(stranger) + "\n")
    with pytest.raises(UserError, match="1 of 7 rows are not cells of"):
        api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")


# ----------------------------------------------------------------------------------------------
# the lock


SLOW_SPEC = """
[benchmark]
name = "slow"
seed = 3

[[experiments]]
experiment = "sleep"
seconds = 0.3
[experiments.grid]
i = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
"""


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    spec = write_spec(tmp_path / "slow.toml", SLOW_SPEC)
    results = tmp_path / "results"
    proc = subprocess.Popen([HARNESS, "run", str(spec), "--results-dir", str(results), "-q", "--no-figures"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(results.glob("*/*/run.lock")) and time.monotonic() < deadline:
            time.sleep(0.05)
        lock = next(results.glob("*/*/run.lock"))
        run_dir = lock.parent
        while not json.loads(lock.read_text() or "{}").get("pid") and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(UserError) as info:
            api.run(resume=run_dir, progress=False, figures=False)
        message = str(info.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message
        assert "being written by" in message and str(lock) in message
        result = invoke("run", "--resume", run_dir, "-q")
        assert result.exit_code == 2 and f"pid {proc.pid}" in result.output
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    # killed: its lock is stale (the process is gone) and a resume takes it over
    assert lock.exists()
    api.run(resume=run_dir, progress=False, figures=False)
    assert len(RunDir(run_dir).read_rows()) == 20 and not lock.exists()


def test_stale_and_foreign_locks(tmp_path):
    run_dir = quick_run(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"}
    run_dir.lock_path.write_text(json.dumps(holder))
    api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")  # stale: taken over
    assert not run_dir.lock_path.exists()
    holder["host"] = "elsewhere.example"
    run_dir.lock_path.write_text(json.dumps(holder))
    with pytest.raises(UserError, match=rf"another host .* rm {run_dir.lock_path}"):
        api.run(resume=run_dir.path, progress=False, figures=False, executor="inline")


def test_concurrent_text_writers_use_their_own_temporary_files(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    errors = []

    def write(k):
        try:
            for i in range(30):
                run.write_text("summary.csv", f"writer {k} line {i}\n" * 50)
        except Exception as exc:  # pragma: no cover - the failure this test is about
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = run.summary_path.read_text()
    assert len(set(text.splitlines())) == 1  # one writer's whole file, never a mix
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------
# crash isolation, --retry-failed, exit status


CRASH_SPEC = """
[benchmark]
name = "crashes"
seed = 5

[[experiments]]
id = "seg"
experiment = "segfault"
at = 1
[experiments.grid]
i = [0, 1, 2]

[[experiments]]
id = "leak"
experiment = "leak"
limit_mb = 128

[[experiments]]
id = "oom"
experiment = "leak"
limit_mb = 128
kill = true

[[experiments]]
id = "pids"
experiment = "threads"
[experiments.grid]
i = [0, 1, 2]
"""


@pytest.mark.slow
def test_serial_runs_isolate_crashes_in_one_reused_worker(tmp_path):
    spec = write_spec(tmp_path / "crash.toml", CRASH_SPEC)
    result = invoke("run", spec, "--results-dir", tmp_path / "results", "--no-figures")
    assert result.exit_code == 3, result.output  # some cells failed
    assert "Traceback" not in result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    rows = {(r["experiment_id"], r["coords"].get("i")): r for r in RunDir(run_dir).read_rows()}
    seg = rows[("seg", 1)]
    assert seg["status"] == "failed" and "SIGSEGV" in seg["error"] and "segmentation fault" in seg["error"]
    assert rows[("seg", 0)]["status"] == rows[("seg", 2)]["status"] == "ok"
    assert rows[("leak", None)]["status"] == "failed" and "MemoryError" in rows[("leak", None)]["error"]
    assert rows[("oom", None)]["status"] == "failed" and "SIGKILL" in rows[("oom", None)]["error"]
    pids = {rows[("pids", i)]["metrics"]["pid"] for i in range(3)}
    assert len(pids) == 1 and os.getpid() not in pids  # one worker for all three cells, not this process
    assert "3 cells not ok; the first: seg [i=1] repetition 0: failed: the worker process died" in result.output
    assert f"--resume {run_dir} --retry-failed" in result.output

    # --retry-failed runs exactly the failed cells again; the newer rows replace the older
    lines_before = len(run_dir.joinpath("rows.jsonl").read_text().splitlines())
    again = invoke("run", "--resume", run_dir, "--retry-failed", "-q", "--no-figures")
    assert again.exit_code == 3, again.output
    lines = run_dir.joinpath("rows.jsonl").read_text().splitlines()
    assert len(lines) == lines_before + 3
    rows_after = RunDir(run_dir).read_rows()
    assert len(rows_after) == len(rows)
    retried = {r["cell_id"]: r["finished"] for r in rows_after if r["status"] == "failed"}
    assert all(json.loads(line)["cell_id"] in retried for line in lines[-3:])
    assert all(retried[json.loads(line)["cell_id"]] == json.loads(line)["finished"] for line in lines[-3:])
    plain = invoke("run", "--resume", run_dir, "-q", "--no-figures")  # without the flag: nothing runs
    assert plain.exit_code == 3
    assert len(run_dir.joinpath("rows.jsonl").read_text().splitlines()) == len(lines)


@pytest.mark.slow
def test_a_hang_is_stopped_by_the_timeout_and_a_fresh_worker_goes_on(tmp_path):
    text = """
[benchmark]
name = "hang"
seed = 1

[[experiments]]
experiment = "hang"

[[experiments]]
id = "after"
experiment = "sleep"
seconds = 0.05
[experiments.grid]
i = [0, 1, 2]
"""
    # the timeout is shorter than a fresh worker's start-up here: only the cells' own time counts
    run_dir = quick_run(tmp_path, text, executor=None, timeout=1.0)
    rows = run_dir.read_rows()
    status = {(r["experiment_id"], r["coords"].get("i")): r["status"] for r in rows}
    assert status == {("hang", None): "timeout", ("after", 0): "ok", ("after", 1): "ok", ("after", 2): "ok"}
    assert api.run_status(rows)[1]["experiment_id"] == "hang"


def test_exit_status_counts_skipped_as_ok():
    ok = {"status": "ok"}
    assert api.run_status([ok, {"status": "skipped"}]) == ({"ok": 1, "skipped": 1}, None)
    bad = {"status": "diverged", "experiment_id": "b", "coords": {"n": 3}, "repetition": 1,
           "error": "non-finite metric: loss=nan\nmore"}
    counts, first = api.run_status([ok, bad])
    assert first is bad
    assert api.describe_failure(bad) == "b [n=3] repetition 1: diverged: non-finite metric: loss=nan"


@pytest.mark.slow
def test_exit_code_0_only_when_every_cell_is_ok(tmp_path):
    spec = write_spec(tmp_path / "ok.toml", ECHO_SPEC)
    assert invoke("run", spec, "--results-dir", tmp_path / "r", "-q", "--no-figures").exit_code == 0
    failing = write_spec(tmp_path / "fail.toml", ECHO_SPEC + '\n[[experiments]]\nid = "f"\nexperiment = "fail"\n')
    result = invoke("run", failing, "--results-dir", tmp_path / "r", "-q", "--no-figures")
    assert result.exit_code == 3
    assert "2 cells not ok; the first: f [no grid] repetition 0: failed: ValueError: boom at x=0.0" in result.output


def test_retry_failed_needs_resume(tmp_path):
    result = invoke("run", write_spec(tmp_path / "s.toml", ECHO_SPEC), "--retry-failed")
    assert result.exit_code == 2 and "--retry-failed" in result.output


# ----------------------------------------------------------------------------------------------
# full disk, malformed rows


class _FullDisk:
    """``os`` for harness.runner.store, whose writes fail with ENOSPC after ``allowed`` rows."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if self.allowed <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.allowed -= 1
        return os.write(fd, data)


@pytest.mark.slow
def test_a_full_disk_ends_with_one_line_and_the_resume_command(tmp_path, monkeypatch):
    spec = write_spec(tmp_path / "echo.toml", ECHO_SPEC)
    monkeypatch.setattr(store, "os", _FullDisk(allowed=2))
    result = invoke("run", spec, "--results-dir", tmp_path / "results", "-q", "--no-figures")
    assert result.exit_code == 4, (result.output, result.exception)
    assert "Traceback" not in result.output
    err = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "No space left on device (free some space)" in err[0]
    run_dir = next((tmp_path / "results").glob("*/*"))
    assert f"resume with: harness run --resume {run_dir}" in err[0]
    monkeypatch.undo()
    assert len(RunDir(run_dir).read_rows()) == 2  # no torn row
    done = invoke("run", "--resume", run_dir, "-q", "--no-figures")
    assert done.exit_code == 0, done.output
    assert len(RunDir(run_dir).read_rows()) == 6


def test_rows_of_the_wrong_shape_are_reported_and_skipped_everywhere(tmp_path, capsys):
    run_dir = quick_run(tmp_path)
    good = run_dir.read_rows()
    with open(run_dir.rows_path, "a") as f:
        f.write(json.dumps({"cell_id": "x1", "status": "ok"}) + "\n")  # line 7: keys missing
        f.write(json.dumps(dict(good[0], cell_id="x2", metrics=[1, 2])) + "\n")  # line 8: wrong type
        f.write(json.dumps(dict(good[0], cell_id="x3", status=17)) + "\n")  # line 9
        f.write(json.dumps([1, 2, 3]) + "\n")  # line 10: not an object
        f.write(json.dumps(dict(good[0], cell_id="x4", status="weird")) + "\n")  # line 11
    rows = RunDir(run_dir.path).read_rows()
    assert [r["cell_id"] for r in rows] == [r["cell_id"] for r in good]
    err = capsys.readouterr().err
    for line in (7, 8, 9, 10, 11):
        assert f"rows.jsonl:{line}: skipped, not a result row" in err
    assert "no point_id" in err and "metrics is an array, expected an object" in err
    for args in (["show", run_dir.path], ["report", run_dir.path], ["plot", run_dir.path],
                 ["compare", run_dir.path, run_dir.path], ["export", run_dir.path],
                 ["fit", run_dir.path, "--metric", "x2", "--axis", "x"], ["runs", "--results-dir", tmp_path / "results"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert "Traceback" not in result.output


# ----------------------------------------------------------------------------------------------
# dask: no live worker


@pytest.mark.slow
def test_a_dask_run_without_workers_stops_with_the_resume_command(tmp_path):
    distributed = pytest.importorskip("distributed")
    import logging

    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster:
        spec = write_spec(tmp_path / "echo.toml", ECHO_SPEC)
        t0 = time.monotonic()
        with pytest.raises(RunStopped) as info:
            api.run(str(spec), results_dir=tmp_path / "results", progress=False, figures=False,
                    executor="dask", scheduler=cluster.scheduler_address, worker_wait=1.0)
        assert time.monotonic() - t0 < 30
    message = str(info.value)
    run_dir = next((tmp_path / "results").glob("*/*"))
    assert "no Dask worker has been connected for 1 s" in message
    assert f"resume with: harness run --resume {run_dir}" in message
    assert not (run_dir / "run.lock").exists()
