"""harness.runner.session: what the run's own process does while its workers compute (env.json,
the caller's preparation of the outputs), and workers started before the session opens."""
from __future__ import annotations

import json
import threading

import pytest
from plugins_for_tests import ECHO_SPEC, write_spec

from harness.errors import RunStopped, UserError
from harness.results.outputs import write_summary
from harness.runner.session import RunOptions, RunSession, _WhileWaiting
from harness.spec import load_spec

USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py


def test_while_waiting_runs_both_tasks_on_its_thread_and_raises_the_environments_error():
    seen = []
    waiting = _WhileWaiting(lambda: seen.append(("env", threading.current_thread().name)),
                            lambda: seen.append(("prepare", threading.current_thread().name)))
    waiting.start()
    waiting.environment_written()
    waiting.finish()
    assert seen == [("env", "harness-while-waiting"), ("prepare", "harness-while-waiting")]

    def full_disk():
        raise RunStopped("no space left")

    def broken_prepare():
        raise ImportError("no matplotlib")

    waiting = _WhileWaiting(full_disk, broken_prepare)
    waiting.start()
    with pytest.raises(RunStopped, match="no space left"):
        waiting.environment_written()
    waiting.finish()  # the error was raised once; the preparation's is ignored


def test_while_waiting_never_started_runs_here():
    seen = []
    waiting = _WhileWaiting(lambda: seen.append("env"), lambda: seen.append("prepare"))
    waiting.environment_written()  # a row before the thread started: env.json first, here
    assert seen == ["env"]
    waiting.finish()
    assert seen == ["env", "prepare"]
    waiting = _WhileWaiting(lambda: seen.append("env2"), None)
    waiting.finish()
    assert seen[-1] == "env2"


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["serial", "inline"])
def test_a_session_writes_env_json_before_rows_and_prepares_while_waiting(tmp_path, registry, executor):
    spec = load_spec(write_spec(tmp_path / "demo.toml", ECHO_SPEC), registry=registry)
    options = RunOptions.checked(executor=executor, progress=False)
    workers = options.start_workers(registry.plugins)
    assert (workers is not None) == (executor == "serial")
    prepared = []
    with RunSession.create(spec, registry, options, tmp_path / "results", workers=workers) as session:
        rows = session.run_rounds(write_summary, while_waiting=lambda: prepared.append(
            (threading.current_thread().name, session.run_dir.env_path.exists())))
    assert rows and all(r["status"] == "ok" for r in rows.values())
    env = json.loads(session.run_dir.env_path.read_text())
    assert env["sessions"][0]["executor"] == executor
    # the inline executor runs cells in this process: nothing to prepare meanwhile
    assert prepared == ([("harness-while-waiting", True)] if executor == "serial" else [])


@pytest.mark.slow
def test_workers_started_for_a_session_that_cannot_open_are_closed(tmp_path, registry):
    spec = load_spec(write_spec(tmp_path / "demo.toml", ECHO_SPEC), registry=registry)
    options = RunOptions.checked(progress=False)
    workers = options.start_workers(registry.plugins)
    (worker,) = workers._started
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises((UserError, RunStopped, OSError)):
        RunSession.create(spec, registry, options, blocked, workers=workers)
    worker.process.join(5)
    assert not worker.process.is_alive()
