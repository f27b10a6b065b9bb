"""The same cell gives the same row whatever runs it (issue 13): serially (one worker process),
in this process, with -j 2, on a Dask cluster, and across a SIGKILL + resume, on real
experiments (ntk_spectrum and memorization, tiny sizes): every field but the timings
(``timings``, ``elapsed``, ``finished``) is identical."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugins_for_tests import subprocess_env, write_spec

from harness import api
from harness.runner.store import RunDir
from harness.spec.row import TIMING_FIELDS

HARNESS = str(Path(sys.executable).with_name("harness"))

SPEC = """
[benchmark]
name = "repro"
seed = 2022
repetitions = 2

[[experiments]]
id = "ntk"
experiment = "ntk_spectrum"
kernels = ["full", "W2"]
activation = "sigmoid"
architecture = { name = "fc", widths = ["d", "d"] }
[experiments.grid]
N = [12, 20]
d = [4, 6]

[[experiments]]
id = "pause"
experiment = "sleep"
seconds = 0.5
[experiments.grid]
i = [0, 1]

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 60
window = 10
activation = "relu"
architecture = { name = "fc", widths = ["d", "d", "d"] }
[experiments.grid]
N = [8, 16]
d = [3]
"""
REAL = 8 + 4  # ntk_spectrum and memorization cells
TOTAL = REAL + 4


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


def comparable(rows):
    return {r["cell_id"]: json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)
            for r in rows}


def run(tmp_path, name, **kw):
    spec = write_spec(tmp_path / f"{name}.toml", SPEC)
    return api.run(str(spec), results_dir=tmp_path / name, progress=False, figures=False, **kw).read_rows()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    rows = run(tmp_path_factory.mktemp("serial"), "serial")
    assert len(rows) == TOTAL
    real = [r for r in rows if r["experiment"] in ("ntk_spectrum", "memorization")]
    assert len(real) == REAL and all(r["status"] == "ok" for r in real), [r["error"] for r in real]
    return comparable(rows)


@pytest.mark.slow
def test_inline_and_two_jobs_give_the_serial_rows(tmp_path, reference):
    assert comparable(run(tmp_path, "inline", executor="inline")) == reference
    assert comparable(run(tmp_path, "jobs2", jobs=2)) == reference


@pytest.mark.slow
def test_dask_gives_the_serial_rows(tmp_path, reference):
    pytest.importorskip("distributed")
    assert comparable(run(tmp_path, "dask", executor="dask", jobs=2)) == reference


@pytest.mark.slow
def test_sigkill_and_resume_give_the_serial_rows(tmp_path, reference):
    spec = write_spec(tmp_path / "kill.toml", SPEC)
    results = tmp_path / "results"
    env = subprocess_env()
    proc = subprocess.Popen([HARNESS, "run", str(spec), "--results-dir", str(results), "-q", "--no-figures"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    rows_path = None
    while time.monotonic() < deadline:  # killed once the ntk rows and a pause are written
        found = list(results.glob("*/*/rows.jsonl"))
        rows_path = found[0] if found else None
        if rows_path is not None and rows_path.read_bytes().count(b"\n") >= 9:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = RunDir(rows_path.parent).read_rows()
    assert 9 <= len(before) < TOTAL, len(before)
    assert any(r["experiment"] == "ntk_spectrum" for r in before)
    done = subprocess.run([HARNESS, "run", "--resume", str(rows_path.parent), "-q", "--no-figures"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = RunDir(rows_path.parent).read_rows()
    assert comparable(after) == reference
    assert {k: v for k, v in comparable(after).items() if k in comparable(before)} == comparable(before)
