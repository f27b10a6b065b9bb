"""harness.runner.process_group: processes a cell starts end with its worker, after a timeout and
at the end of a run, so that none is left behind and ``out=$(harness run ...)`` returns."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugins_for_tests import subprocess_env, write_spec

HARNESS = str(Path(sys.executable).with_name("harness"))

SPEC = """
[benchmark]
name = "spawn"
seed = 1

[[experiments]]
id = "s"
experiment = "spawn"
pid_file = "{pid_file}"
hang = {hang}
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _gone_soon(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("hang, args, status", [(False, [], 0), (True, ["--timeout", "3"], 3)])
def test_children_of_a_cell_end_with_the_run(tmp_path, hang, args, status):
    pid_file = tmp_path / "child.pid"
    spec = write_spec(tmp_path / "spawn.toml", SPEC.format(pid_file=pid_file, hang=str(hang).lower()))
    # stdout is a pipe read to its end, as out=$(harness run ...) does: a child holding it open
    # would keep communicate() waiting for its 120 s
    start = time.monotonic()
    done = subprocess.run([HARNESS, "run", str(spec), "--results-dir", str(tmp_path / "r"), "-q", "--no-figures",
                           *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90,
                          env=subprocess_env())
    assert done.returncode == status, done.stderr
    assert time.monotonic() - start < 60
    assert done.stdout.strip().startswith(str(tmp_path / "r" / "spawn"))
    child = int(pid_file.read_text())
    assert _gone_soon(child), f"the cell's child {child} outlived the run"


def test_end_group_leaves_other_groups_alone():
    from harness.runner.process_group import end_group

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        end_group(os.getpid())  # not a group this process leads for a worker: nothing happens
        end_group(None)
        assert other.poll() is None
        end_group(other.pid)  # the group it leads
        assert other.wait(timeout=10) == -9
    finally:
        if other.poll() is None:
            other.kill()
