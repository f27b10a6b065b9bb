"""harness.runner.dask_executor: cells on a real Dask LocalCluster with two worker processes.

One cluster is shared by most tests (started here, reached through its scheduler address, as an
existing cluster would be); one test lets the executor start its own. Rows must equal a serial
run's (timing fields aside), a worker killed mid-cell must cost that cell a retry, and a run
written by the client must resume exactly. The tests that need dask are skipped without it.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from plugins_for_tests import ECHO_SPEC, HERE, MODULE, subprocess_env, write_spec

from harness.errors import UserError
from harness.runner.executors import choose_executor, execute, threads_per_job
from harness.spec.cells import Cell
from harness.spec.row import TIMING_FIELDS

HAVE_DASK = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason='dask is not installed (pip install -e ".[dask]")')


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py


@pytest.fixture(scope="module")
def cluster(registry):
    """Two single-task worker processes that load the test plugins, with the scheduler settings
    the executor gives its own local cluster (one retry after a worker death, nothing queued)."""
    import dask
    import distributed

    env = {"HARNESS_PLUGINS": MODULE,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))}
    from harness.runner.dask_executor import LOCAL_SCHEDULER_CONFIG

    with dask.config.set(LOCAL_SCHEDULER_CONFIG):
        c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.CRITICAL, env=env)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(cluster):
    import distributed

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as c:
        yield c


def cell(experiment="echo", params=None, components=None, rep=0, seed=7):
    params = dict(params or {})
    return Cell(experiment_id="a", experiment=experiment, params=params, components=dict(components or {}),
                coords=dict(params), repetition=rep, root_seed=seed, seed_coords=dict(params))


def echo(x, rep=0, sleep=0.0):
    return cell("echo", {"x": x, "sleep": sleep}, {"data": {"name": "tdata", "params": {"value": 0.5}}}, rep=rep)


def by_id(rows):
    """Each row as canonical JSON without its timing fields, by cell id (NaN equals NaN here)."""
    return {r["cell_id"]: json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)
            for r in rows}


def worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def wait_for_workers(client, n: int, timeout: float = 30.0) -> None:
    client.wait_for_workers(n, timeout=timeout)


# ----------------------------------------------------------------------------- choosing

def test_choose_executor():
    assert choose_executor(None) == "serial"
    assert choose_executor(None, jobs=2) == "processes"
    assert choose_executor(None, timeout=3.0) == "serial"  # one worker process: timeouts work
    assert choose_executor(None, scheduler="tcp://h:1") == "dask"
    assert choose_executor("dask", jobs=4) == "dask"
    for args, message in [
        (("dask", 1, 5.0), "does not support a timeout"),
        (("processes", 1, None, "tcp://h:1"), "scheduler address is for the dask executor"),
        (("dask", 3, None, "tcp://h:1"), "with a scheduler address the cluster's workers decide"),
        (("serial", 2), "one cell at a time"),
        (("inline", 1, 2.0), "timeout needs a worker process"),
        (("inline", 2), "one cell at a time in this process"),
        (("daks",), "did you mean 'dask'"),
    ]:
        with pytest.raises(UserError, match=message):
            choose_executor(*args)


def test_missing_dask_is_a_clear_error_before_the_run_starts(registry, monkeypatch, tmp_path):
    from harness import api

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UserError, match=r'pip install -e "\.\[dask\]"'):
        list(execute([cell()], executor="dask"))
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    with pytest.raises(UserError, match=r"dask executor needs dask.distributed"):
        api.run(str(spec), executor="dask", results_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_host_threads_share_each_hosts_cores():
    from harness.runner.dask_executor import host_threads

    workers = {"tcp://a:1": {"nthreads": 2}, "tcp://a:2": {"nthreads": 2}, "tcp://b:7": {"nthreads": 1},
               "tcp://c:1": {"nthreads": 4}}
    cores = {"tcp://a:1": 16, "tcp://a:2": 16, "tcp://b:7": 8, "tcp://c:1": 2}
    assert host_threads(workers, cores) == {"tcp://a": 4, "tcp://b": 8, "tcp://c": 1}


# ----------------------------------------------------------------------------- on a cluster

def mixed_cells():
    return ([echo(x, rep) for x in (1.0, 2.0, 3.0) for rep in (0, 1)]
            + [cell("fail", {"x": 1.0}), cell("nan", {"x": 2.0})])


@pytest.mark.slow
@needs_dask
def test_own_local_cluster_gives_the_serial_rows_with_limited_threads(registry):
    cells = mixed_cells()
    serial = list(execute(cells, registry=registry))
    threads = [cell("threads", {"i": i}) for i in range(2)]
    lines = []
    rows = list(execute(cells + threads, jobs=2, executor="dask", log=lines.append))
    assert len(rows) == len(cells) + 2
    assert by_id([r for r in rows if r["experiment"] != "threads"]) == by_id(serial)
    assert {r["status"] for r in rows} == {"ok", "failed", "diverged"}
    expected = threads_per_job(2)
    for r in (r for r in rows if r["experiment"] == "threads"):
        assert r["status"] == "ok", r["error"]
        assert r["metrics"]["numba_env"] == expected  # set for the workers by the executor
        assert r["metrics"]["blas_threads"] in (expected, -1)
        assert r["metrics"]["pid"] != os.getpid()  # computed in a worker process
    assert "local Dask cluster" in lines[0] and "2 worker process(es)" in lines[0]


@pytest.mark.slow
@needs_dask
def test_existing_cluster_gives_the_serial_rows(registry, cluster):
    cells = mixed_cells()
    lines = []
    rows = list(execute(cells, executor="dask", scheduler=cluster.scheduler_address, log=lines.append))
    assert by_id(rows) == by_id(list(execute(cells, registry=registry)))
    assert "2 worker(s) on 1 host(s), 2 task slot(s)" in lines[0]


@pytest.mark.slow
@needs_dask
def test_worker_killed_mid_cell_costs_that_cell_a_retry(registry, cluster, client):
    wait_for_workers(client, 2)
    slow = [echo(x, sleep=2.0) for x in (5.0, 6.0)]
    quick = [echo(x) for x in (7.0, 8.0)]
    before = worker_pids(client)
    killed: list[int] = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            busy = [w for w, keys in client.processing().items()
                    if any(str(k).startswith("harness-cell-") for k in keys)]
            if busy:
                time.sleep(0.5)  # well inside the 2 s cell
                os.kill(before[busy[0]], signal.SIGKILL)
                killed.append(before[busy[0]])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    rows = list(execute(slow + quick, executor="dask", scheduler=cluster.scheduler_address))
    killer.join()
    assert killed, "no worker was busy with a cell"
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert by_id(rows) == by_id(list(execute(slow + quick, registry=registry)))
    wait_for_workers(client, 2)
    assert killed[0] not in worker_pids(client).values()  # the nanny replaced the dead worker


@pytest.mark.slow
@needs_dask
def test_cell_that_keeps_killing_its_worker_fails_alone(registry, cluster, client):
    wait_for_workers(client, 2)
    cells = [cell("crash"), echo(1.5), echo(2.5)]
    rows = {r["cell_id"]: r for r in execute(cells, executor="dask", scheduler=cluster.scheduler_address)}
    crash, *others = [rows[c.cell_id] for c in cells]
    assert crash["status"] == "failed"
    assert "worker process died while running this cell" in crash["error"]
    assert [r["status"] for r in others] == ["ok", "ok"]  # a death touches only its own cell
    wait_for_workers(client, 2)


@pytest.mark.slow
@needs_dask
def test_closing_the_stream_cancels_the_remaining_cells(registry, cluster, client):
    cells = [cell("sleep", {"seconds": 0.3, "i": i}) for i in range(12)]
    stream = execute(cells, executor="dask", scheduler=cluster.scheduler_address)
    first = next(stream)
    assert first["status"] == "ok"
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = client.run_on_scheduler(lambda dask_scheduler: sum(
            1 for k in dask_scheduler.tasks if str(k).startswith("harness-cell-")))
        if left == 0:
            break
        time.sleep(0.1)
    assert left == 0


@needs_dask
def test_workers_without_harness_are_reported(registry, cluster, monkeypatch, tmp_path):
    import harness.runner.dask_executor as dx
    from harness import api

    monkeypatch.setattr(dx, "_probe", _no_harness_probe)
    with pytest.raises(UserError, match="cannot run harness cells.*No module named 'harness'"):
        list(execute([echo(1.0)], executor="dask", scheduler=cluster.scheduler_address))
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    with pytest.raises(UserError, match="cannot run harness cells"):
        api.run(str(spec), scheduler=cluster.scheduler_address, results_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def _no_harness_probe():
    raise ModuleNotFoundError("No module named 'harness'")


@pytest.mark.slow
@needs_dask
def test_unreachable_scheduler_is_a_user_error(registry, monkeypatch, tmp_path):
    import socket

    import harness.runner.dask_executor as dx
    from harness import api

    monkeypatch.setattr(dx, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(UserError, match=f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}"):
        list(execute([echo(1.0)], executor="dask", scheduler=f"tcp://127.0.0.1:{port}"))
    assert time.monotonic() - start < 15
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    with pytest.raises(UserError, match="cannot connect to the Dask scheduler"):
        api.run(str(spec), scheduler=f"tcp://127.0.0.1:{port}", results_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # refused before a run directory was made


@pytest.mark.slow
@needs_dask
def test_api_run_on_a_cluster_writes_rows_and_resumes_exactly(registry, cluster, tmp_path):
    from harness import api

    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    serial = api.run(str(spec), results_dir=tmp_path / "serial", progress=False, figures=False)
    run_dir = api.run(str(spec), results_dir=tmp_path / "dask", progress=False, figures=False,
                      executor="dask", scheduler=cluster.scheduler_address)
    want = by_id(serial.read_rows())
    assert by_id(run_dir.read_rows()) == want and len(want) == 6
    session = run_dir.read_env()["sessions"][0]
    assert session["executor"] == "dask" and session["scheduler"] == cluster.scheduler_address

    # as if killed after two rows, in the middle of writing the third
    lines = run_dir.rows_path.read_text(encoding="utf-8").splitlines(keepends=True)
    run_dir.rows_path.write_text("".join(lines[:2]) + lines[2][:25], encoding="utf-8")
    resumed = api.run(resume=run_dir.path, progress=False, figures=False, executor="dask",
                      scheduler=cluster.scheduler_address)
    assert by_id(resumed.read_rows()) == want
    assert len(resumed.rows_path.read_text(encoding="utf-8").splitlines()) == 6  # 4 re-run, none twice
    assert [s["executor"] for s in resumed.read_env()["sessions"]] == ["dask", "dask"]


@pytest.mark.slow
@needs_dask
def test_cli_sends_cells_to_the_scheduler(registry, cluster, tmp_path):
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    harness_cli = os.path.join(os.path.dirname(sys.executable), "harness")
    out = subprocess.run([harness_cli, "run", str(spec), "--executor", "dask", "--scheduler",
                          cluster.scheduler_address, "--results-dir", str(tmp_path / "r"), "--no-figures"],
                         env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"executor=dask at {cluster.scheduler_address}" in out.stderr
    rows = [json.loads(line) for line in open(os.path.join(out.stdout.strip(), "rows.jsonl"), encoding="utf-8")]
    assert sorted(r["status"] for r in rows) == ["ok"] * 6

    bad = subprocess.run([harness_cli, "run", str(spec), "--executor", "dask", "--timeout", "5",
                          "--results-dir", str(tmp_path / "r")],
                         env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "does not support a timeout" in bad.stderr
    assert "Traceback" not in bad.stderr
