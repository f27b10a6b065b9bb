"""The threshold search (harness.runner.search): exact thresholds of a synthetic experiment, the same
cells as a grid, censoring and failures, validation, executors, and SIGKILL + resume."""
from __future__ import annotations

import csv
import io
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
from harness.errors import SpecError
from harness.runner.search import pending_cells, thresholds
from harness.spec import parse_spec
from harness.spec.row import TIMING_FIELDS

HARNESS = str(Path(sys.executable).with_name("harness"))

RAMP = """
[benchmark]
name = "ramp"
seed = 5
repetitions = {reps}

[[experiments]]
id = "r"
experiment = "ramp"
noise = {noise}
sleep = {sleep}

[experiments.grid]
k = [1.0, 2.0, 3.5]

[experiments.search]
axis = "n"
lower = 1
upper = 10000
start = "50 * k"
metric = "loss"
tolerance = 0.001
below = 0
{extra}
"""


def ramp(reps=1, noise=0.0, sleep=0.0, extra=""):
    return RAMP.format(reps=reps, noise=noise, sleep=sleep, extra=extra)


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


def run_search(spec, registry, rows=None):
    """Drive the search in-process (as api.run does) and return all rows."""
    from harness.runner.execute import run_cell

    rows = {} if rows is None else rows
    while True:
        todo = pending_cells(spec, rows.values())
        if not todo:
            return rows
        for cell in todo:
            row = run_cell(cell, registry)
            rows[row["cell_id"]] = row


def read_csv(path):
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def test_finds_a_known_threshold_exactly(registry):
    spec = parse_spec(ramp(), "ramp.toml", registry=registry)
    rows = run_search(spec, registry)
    lines = thresholds(spec, rows.values())
    assert [t["k"] for t in lines] == [1.0, 2.0, 3.5]
    for t in lines:
        # log10(loss) = (n - 100 k) / 10 <= 0 exactly for n <= 100 k
        assert t["status"] == "found"
        assert (t["lower"], t["upper"]) == (round(100 * t["k"]), round(100 * t["k"]) + 1)
        assert t["threshold"] == pytest.approx(100 * t["k"], rel=1e-12)  # the crossing is at lower
        assert t["axis"] == "n" and t["n_cells"] == len(t["evaluations"].split(";"))
    # bracketing from 50 k by factors of 2, then bisection: far fewer cells than the 10000 values
    assert max(t["n_cells"] for t in lines) <= 12


def test_linear_interpolation_between_the_bracket(registry):
    text = ramp(extra='scale = "linear"\ngrowth = 64\ntransform = "none"\nbelow = 1.0'.replace("below = 0\n", ""))
    text = text.replace("below = 0\n", "")
    spec = parse_spec(text, "ramp.toml", registry=registry)
    rows = run_search(spec, registry)
    for t in thresholds(spec, rows.values()):
        # loss(100k) = 1 exactly: the crossing of the level 1 is at the lower bracket value
        assert t["status"] == "found" and t["lower"] == round(100 * t["k"])
        assert t["threshold"] == pytest.approx(100 * t["k"])


def test_holds_high_with_above_gives_the_same_bracket(registry):
    text = ramp().replace("below = 0", 'above = 0\nholds = "high"')
    spec = parse_spec(text, "ramp.toml", registry=registry)
    rows = run_search(spec, registry)
    for t in thresholds(spec, rows.values()):
        # log10(loss) >= 0 for n >= 100 k: the high side starts at 100 k
        assert t["status"] == "found"
        assert (t["lower"], t["upper"]) == (round(100 * t["k"]) - 1, round(100 * t["k"]))
        assert t["threshold"] == pytest.approx(100 * t["k"], rel=1e-12)


def test_search_cells_are_the_grid_cells(registry):
    """A searched cell has the id, seed and parameters of the same cell in a grid."""
    search = parse_spec(ramp(reps=2, noise=0.3), "ramp.toml", registry=registry)
    grid_text = ramp(reps=2, noise=0.3).split("[experiments.search]")[0] + "n = [100, 137]\n"
    grid = parse_spec(grid_text, "grid.toml", registry=registry)
    exp = search.experiments[0]
    made = {c.cell_id: c for x in (100, 137) for k in (1.0, 2.0, 3.5)
            for c in exp.cells_at({"k": k, "n": x}, search.seed)}
    for cell in grid.cells():
        other = made[cell.cell_id]
        assert other.spawn_key == cell.spawn_key and other.params == cell.params
        assert other.coords == cell.coords


def test_censored_and_failed_points(registry):
    spec = parse_spec(ramp().replace("upper = 10000", "upper = 150"), "ramp.toml", registry=registry)
    lines = thresholds(spec, run_search(spec, registry).values())
    assert [t["status"] for t in lines] == ["found", "above_upper", "above_upper"]
    assert lines[1]["lower"] == 150 and lines[1]["upper"] is None and lines[1]["threshold"] is None

    spec = parse_spec(ramp().replace("noise = 0.0", "noise = 0.0\nfail_above = 250"), "ramp.toml",
                      registry=registry)
    rows = run_search(spec, registry)
    lines = thresholds(spec, rows.values())
    assert lines[0]["status"] == "found" and lines[1]["status"] == "failed"
    assert any(r["status"] == "failed" for r in rows.values())  # failures stay rows


def test_a_value_the_experiment_refuses_mid_search_fails_that_point_only(registry):
    # the bounds pass the experiment's check at load; 141 (k = 1's first bisection) does not
    spec = parse_spec(ramp().replace("noise = 0.0", "noise = 0.0\nrefuse = [130, 150]"), "ramp.toml",
                      registry=registry)
    lines = thresholds(spec, run_search(spec, registry).values())
    assert [t["status"] for t in lines] == ["failed", "found", "found"]
    assert "n = 141" in lines[0]["error"] and "refused" in lines[0]["error"]
    assert lines[0]["evaluations"].startswith("50:") and lines[0]["threshold"] is None


def test_incomplete_until_rows_arrive(registry):
    spec = parse_spec(ramp(reps=2), "ramp.toml", registry=registry)
    first = pending_cells(spec, [])
    assert len(first) == 3 * 2 and {c.coords["n"] for c in first} == {50, 100, 175}
    assert all(t["status"] == "incomplete" for t in thresholds(spec, []))


@pytest.mark.parametrize("change, key, words", [
    ('axis = "n"', "experiments.r.search.axis", "also set by"),
    ("lower = 1\n", "experiments.r.search.upper", "greater than lower"),
    ('metric = "loss"', "experiments.r.search.metric", "missing"),
    ("below = 0", "experiments.r.search", "exactly one of below"),
    ("start =", "experiments.r.search.strat", "unknown search key"),
    ("lower = 1\n", "experiments.r.search.lower", "lower > 0"),
    ("below = 0", "experiments.r.search.holds", "not allowed"),
])
def test_bad_search_tables_are_refused(registry, change, key, words):
    text = ramp()
    if key.endswith("axis"):
        text = text.replace("k = [1.0, 2.0, 3.5]", "k = [1.0]\nn = [3]")
    elif words == "greater than lower":
        text = text.replace("lower = 1\n", "lower = 20000\n")
    elif key.endswith("metric"):
        text = text.replace('metric = "loss"\n', "")
    elif words.startswith("exactly"):
        text = text.replace("below = 0", "below = 0\nabove = 1")
    elif words == "unknown search key":
        text = text.replace("start =", "strat =")
    elif words == "lower > 0":
        text = text.replace("lower = 1\n", "lower = 0\n")
    else:
        text = text.replace("below = 0", 'below = 0\nholds = "middle"')
    with pytest.raises(SpecError) as err:
        parse_spec(text, "ramp.toml", registry=registry)
    assert err.value.key == key and words in str(err.value)
    assert str(err.value).startswith("ramp.toml: ")


def test_resolved_spec_round_trips(registry):
    spec = parse_spec(ramp(), "ramp.toml", registry=registry)
    again = parse_spec(spec.to_toml(), "spec.toml", registry=registry)
    assert again.experiments[0].search == spec.experiments[0].search
    assert [p["start"] for p in again.experiments[0].search_points] == [50, 100, 175]


def strip(rows):
    return {r["cell_id"]: json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)
            for r in rows}


@pytest.mark.slow
def test_run_serial_and_two_jobs_agree(tmp_path, registry):
    spec = write_spec(tmp_path / "ramp.toml", ramp(reps=3, noise=0.2))
    a = api.run(spec, results_dir=tmp_path / "a", progress=False, figures=True)
    b = api.run(spec, jobs=2, results_dir=tmp_path / "b", progress=False, figures=False)
    ta, tb = read_csv(a.path / "thresholds.csv"), read_csv(b.path / "thresholds.csv")
    assert ta == tb and len(ta) == 3 and all(t["status"] == "found" for t in ta)
    assert strip(api.load_run(a).rows) == strip(api.load_run(b).rows)
    assert (a.path / "figures" / "r-thresholds.png").exists()
    run = api.load_run(a)
    assert run.missing == 0 and run.total == len(run.rows)
    assert [t["threshold"] for t in run.thresholds] == [pytest.approx(float(t["threshold"])) for t in ta]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_thresholds(tmp_path, registry):
    spec = write_spec(tmp_path / "ramp.toml", ramp(reps=2, noise=0.2, sleep=0.05))
    reference = api.run(spec, results_dir=tmp_path / "ref", progress=False, figures=False)
    env = subprocess_env()
    proc = subprocess.Popen([HARNESS, "run", str(spec), "--results-dir", str(tmp_path / "killed"), "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    rows_path = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "killed").glob("*/*/rows.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 9:  # past the first round of 6 cells
            rows_path = found[0]
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert rows_path is not None, "the run did not get going"
    run_dir = rows_path.parent
    assert not (run_dir / "thresholds.csv").exists() or True
    resumed = subprocess.run([HARNESS, "run", "--resume", str(run_dir), "-q"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert read_csv(run_dir / "thresholds.csv") == read_csv(reference.path / "thresholds.csv")
    assert strip(api.load_run(run_dir).rows) == strip(api.load_run(reference).rows)
