"""harness.runner.workers and the worker pools of harness.runner.executors: a worker started ahead
of its cells is the one that runs them, the caller hears when the workers are busy, a worker told
to stop leaves at once, and one-time warm-ups are not counted against a cell's timeout."""
from __future__ import annotations

import multiprocessing

import pytest

from harness.runner.executors import WorkerPools, execute, threads_per_job
from harness.runner.workers import describe_exit
from harness.spec.cells import Cell

USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py


def cell(experiment, params, rep=0):
    return Cell(experiment_id="a", experiment=experiment, params=dict(params), components={},
                coords=dict(params), repetition=rep, root_seed=7, seed_coords=dict(params))


def workers_alive() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "harness-worker"]


def test_describe_exit():
    assert describe_exit(None) == "exit code unknown"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-11) == "killed by signal 11 (SIGSEGV: a segmentation fault)"


@pytest.mark.slow
def test_a_worker_started_ahead_runs_the_cells_and_leaves_when_told(registry):
    workers = WorkerPools()
    workers.start(threads_per_job(1), registry.plugins)
    (started,) = workers._started
    waited = []
    rows = list(execute([cell("threads", {"i": i}) for i in range(2)], jobs=1, registry=registry,
                        workers=workers, on_waiting=lambda: waited.append(len(waited))))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["metrics"]["pid"] for r in rows} == {started.process.pid}  # no second worker
    assert waited == [0]  # told once, before any row came back
    assert workers._started == []
    workers.close()
    started.process.join(5)
    assert started.process.exitcode == 0  # left by itself, not killed
    assert not workers_alive()


@pytest.mark.slow
def test_a_worker_started_for_other_threads_is_not_used_and_is_closed(registry):
    workers = WorkerPools()
    workers.start(threads_per_job(1) + 1, registry.plugins)
    (spare,) = workers._started
    rows = list(execute([cell("threads", {"i": 0})], jobs=1, registry=registry, workers=workers))
    assert rows[0]["status"] == "ok" and rows[0]["metrics"]["pid"] != spare.process.pid
    assert rows[0]["metrics"]["numba_env"] == threads_per_job(1)
    workers.close()
    assert not spare.process.is_alive() and not workers_alive()


@pytest.mark.slow
def test_a_warm_up_is_not_counted_against_the_timeout(registry):
    """The cell sleeps 1.0 s after a one-time warm-up of 1.0 s: within a 1.5 s timeout only
    because the worker reports the warm-up (harness.plugin.experiment.warm_up) to its parent,
    whose clock then leaves it out."""
    rows = list(execute([cell("sleep", {"seconds": 1.0, "warm_up": 1.0})], jobs=1, timeout=1.5,
                        registry=registry))
    assert rows[0]["status"] == "ok", rows[0]["error"]
    rows = list(execute([cell("sleep", {"seconds": 2.0})], jobs=1, timeout=1.5, registry=registry))
    assert rows[0]["status"] == "timeout"  # without a warm-up the same time is the cell's
