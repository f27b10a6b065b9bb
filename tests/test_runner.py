"""harness.runner.execute and harness.runner.executors: one cell to one row, serial and worker-process execution."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.runner.execute import run_cell, split_result
from harness.runner.executors import cpu_count, execute, threads_per_job
from harness.spec.cells import Cell
from harness.spec.row import TIMING_FIELDS, make_row, to_jsonable

USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py


def cell(experiment="echo", params=None, components=None, coords=None, rep=0, seed=7, exp_id="a"):
    params = dict(params or {})
    coords = dict(coords if coords is not None else params)
    return Cell(experiment_id=exp_id, experiment=experiment, params=params,
                components=dict(components or {}), coords=coords, repetition=rep, root_seed=seed,
                seed_coords=dict(coords))


def echo(x, rep=0, sleep=0.0):
    return cell("echo", {"x": x, "sleep": sleep}, {"data": {"name": "tdata", "params": {"value": 0.5}}},
                coords={"x": x}, rep=rep)


def strip(row):
    return {k: v for k, v in row.items() if k not in TIMING_FIELDS}


def as_text(row):
    """The row as canonical JSON without timing fields (NaN compares equal to NaN here)."""
    return json.dumps(strip(row), sort_keys=True)


# -- run_cell -------------------------------------------------------------------------------------

def test_ok_row_has_identity_metrics_and_curves(registry):
    c = echo(2.0)
    row = run_cell(c, registry)
    assert row["status"] == "ok" and row["error"] is None
    for key, value in c.describe().items():
        assert row[key] == value
    assert row["metrics"]["x"] == 2.0 and row["metrics"]["x2"] == 4.0
    assert row["metrics"]["flag"] is True and row["metrics"]["nested.a"] == 1
    assert row["metrics"]["data_sum"] == pytest.approx(3.0)  # 2 x 3 entries of 0.5 from the slot
    assert row["curves"] == {"curve": [0.0, 2.0, 4.0], "nested.b": [1, 2]}
    assert row["plugins"] == {"experiment": "<local>", "data": "<local>"}
    assert row["elapsed"] >= 0 and "T" in row["finished"]
    json.dumps(row, allow_nan=False)  # plain JSON types only


def test_row_is_a_pure_function_of_the_cell(registry):
    a, b = run_cell(echo(1.0, rep=1), registry), run_cell(echo(1.0, rep=1), registry)
    assert strip(a) == strip(b)
    other = run_cell(echo(1.0, rep=2), registry)
    assert other["metrics"]["u"] != a["metrics"]["u"]  # another repetition, another seed


def test_slot_parameters_reach_the_component(registry):
    c = cell("echo", {"x": 1.0, "sleep": 0.0}, {"data": {"name": "tdata", "params": {"value": 2.0}}})
    assert run_cell(c, registry)["metrics"]["data_sum"] == pytest.approx(12.0)


def test_exception_becomes_failed_row_with_type_message_and_traceback(registry):
    row = run_cell(cell("fail", {"x": 3.0}), registry)
    assert row["status"] == "failed"
    assert row["error"].startswith("ValueError: boom at x=3.0")
    assert "plugins_for_tests.py" in row["error"]  # the last traceback lines
    assert row["metrics"] == {} and row["curves"] == {}


def test_nan_metric_is_diverged_and_metrics_kept(registry):
    row = run_cell(cell("nan", {"x": 0.0}), registry)
    assert row["status"] == "diverged"
    # strict JSON: non-finite values are null, and the row names where they were
    assert row["metrics"]["loss"] is None and row["metrics"]["growth"] is None
    assert row["metrics"]["steps"] == 3
    assert row["curves"]["trace"] == [1.0, None]
    assert row["nonfinite"] == ["metrics.loss", "metrics.growth", "curves.trace"]
    assert "loss=nan" in row["error"] and "growth=inf" in row["error"]
    json.dumps(row, allow_nan=False)


def test_unknown_experiment_or_bad_parameter_is_a_failed_row(registry):
    assert run_cell(cell("nope"), registry)["status"] == "failed"
    row = run_cell(cell("echo", {"x": "text"}), registry)
    assert row["status"] == "failed" and "x" in row["error"]


def test_split_result_and_to_jsonable():
    metrics, curves = split_result({"a": np.int64(3), "b": np.array(2.5), "c": np.arange(4).reshape(2, 2),
                                    "d": {"e": (1, 2), "f": None}})
    assert metrics["a"] == 3 and type(metrics["a"]) is int
    assert metrics["b"] == 2.5 and type(metrics["b"]) is float
    assert curves == {"c": [[0, 1], [2, 3]], "d.e": [1, 2]}
    assert metrics["d.f"] is None
    with pytest.raises(TypeError, match="result 'g' = <object object at"):  # not JSON: never a str of it
        split_result({"g": object.__new__(object)})
    assert to_jsonable({1: np.float32(0.5)}) == {"1": 0.5}


def test_make_row_rejects_unknown_status():
    with pytest.raises(ValueError):
        make_row(cell(), "weird")


# -- execute --------------------------------------------------------------------------------------

def test_threads_per_job_never_oversubscribes():
    assert threads_per_job(1, 8) == 8 and threads_per_job(3, 8) == 2 and threads_per_job(16, 8) == 1
    for jobs in range(1, 10):
        assert jobs * threads_per_job(jobs, 8) <= max(8, jobs)
    assert cpu_count() >= 1


@pytest.mark.slow
def test_serial_equals_two_jobs(registry):
    cells = [echo(x, rep) for rep in range(2) for x in (1.0, 2.0, 3.0)]
    cells += [cell("fail", {"x": 1.0}, exp_id="f"), cell("nan", {"x": 0.0}, exp_id="n")]
    serial = {r["cell_id"]: as_text(r) for r in execute(cells, jobs=1, registry=registry)}
    parallel_rows = list(execute(cells, jobs=2, registry=registry))
    parallel = {r["cell_id"]: as_text(r) for r in parallel_rows}
    assert len(parallel_rows) == len(cells) == len(serial)
    # failed rows carry a traceback whose file paths are the same in both executors
    assert serial == parallel


@pytest.mark.slow
def test_timeout_kills_the_cell_and_the_run_goes_on(registry):
    cells = [cell("sleep", {"seconds": 30.0, "i": 0}), cell("sleep", {"seconds": 0.0, "i": 1})]
    rows = {r["params"]["i"]: r for r in execute(cells, jobs=1, timeout=1.0, registry=registry)}
    assert rows[0]["status"] == "timeout" and "timeout" in rows[0]["error"]
    assert 1.0 <= rows[0]["elapsed"] < 10
    assert rows[1]["status"] == "ok"


@pytest.mark.slow
def test_dead_worker_fails_only_its_cell(registry):
    cells = [cell("crash"), echo(1.0), echo(2.0)]
    rows = list(execute(cells, jobs=2, registry=registry))
    by_exp = {r["experiment"]: r for r in rows}
    assert len(rows) == 3
    assert by_exp["crash"]["status"] == "failed" and "exit code 3" in by_exp["crash"]["error"]
    assert sorted(r["status"] for r in rows if r["experiment"] == "echo") == ["ok", "ok"]


@pytest.mark.slow
def test_workers_are_limited_to_their_share_of_threads(registry):
    cells = [cell("threads", {"i": i}) for i in range(2)]
    rows = list(execute(cells, jobs=2, registry=registry))
    want = threads_per_job(2)
    for r in rows:
        assert r["status"] == "ok"
        assert r["metrics"]["numba_env"] == want
        assert r["metrics"]["blas_threads"] == want


@pytest.mark.slow
def test_closing_the_stream_stops_the_workers(registry):
    cells = [cell("sleep", {"seconds": 0.05, "i": i}) for i in range(6)]
    stream = execute(cells, jobs=2, registry=registry)
    first = next(stream)
    assert first["status"] == "ok"
    stream.close()  # must return promptly, leaving no worker behind
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "harness-worker"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        list(execute([cell()], jobs=0))
    with pytest.raises(ValueError):
        list(execute([cell()], timeout=0))
    assert list(execute([], jobs=3)) == []


# ---- honest rows (issue 13): timings apart, resolved values, skipped cells, strict JSON

def _timed_rows(tmp_path, **options):
    from plugins_for_tests import TIMED_SPEC, write_spec

    from harness import api

    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = write_spec(tmp_path / "timed.toml", TIMED_SPEC)
    run_dir = api.run(spec, results_dir=tmp_path / "results", progress=False, figures=False, **options)
    return sorted(run_dir.read_rows(), key=lambda r: (r["coords"]["n"], r["repetition"])), run_dir


@pytest.mark.slow
def test_timings_resolved_values_and_skips_in_rows(registry, tmp_path):
    rows, run_dir = _timed_rows(tmp_path)
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["coords"]["n"] for r in ok] == [2, 2, 3, 3]
    for r in ok:
        assert set(r["timings"]) == {"work_seconds"} and r["timings"]["work_seconds"] > 0
        assert not any("seconds" in k for k in r["metrics"])  # timings never in metrics
        n = r["coords"]["n"]
        assert r["resolved"] == {"data.value": 0.25 * n, "width": [n, n]}
        assert r["components"]["data"]["params"]["value"] == 0.25 * n  # what was used
        assert r["nonfinite"] == []
    skipped = [r for r in rows if r["coords"]["n"] == 13]
    assert [r["status"] for r in skipped] == ["skipped", "skipped"]
    assert skipped[0]["error"] == "n = 13 is skipped" and skipped[0]["metrics"] == {}
    for line in run_dir.rows_path.read_text().splitlines():  # strict JSON
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    # the summary leaves timings out unless asked
    from harness.results.summary import summarize

    line = summarize(rows)[0]
    assert "value_mean" in line and not any(k.startswith("timings") or "seconds" in k for k in line)
    assert "timings.work_seconds_mean" in summarize(rows, timings=True)[0]


@pytest.mark.slow
def test_rows_differ_only_in_timing_fields_across_executors(registry, tmp_path):
    serial, _ = _timed_rows(tmp_path / "a")
    pooled, _ = _timed_rows(tmp_path / "b", jobs=2)
    assert "timings" in TIMING_FIELDS
    assert [strip(r) for r in serial] == [strip(r) for r in pooled]


def test_skip_cell_raised_in_run(registry):
    c = Cell(experiment_id="t", experiment="timed", params={"skip_at_run": True}, components={}, coords={},
             repetition=0, root_seed=1)
    row = run_cell(c, registry)
    assert row["status"] == "skipped" and row["error"] == "nothing to do here"


@pytest.mark.slow
def test_compare_ignores_timings_unless_asked(registry, tmp_path):
    from harness.results.compare import compare

    rows, _ = _timed_rows(tmp_path)
    assert [c.metric for c in compare([("r", rows)], by="n")] == ["n", "value"]
    with_timings = compare([("r", rows)], by="n", timings=True)
    assert [c.metric for c in with_timings] == ["n", "value", "timings.work_seconds"]
    from harness.errors import UserError

    with pytest.raises(UserError, match="no such numeric metric"):
        compare([("r", rows)], metrics=["timings.work_seconds"], by="n")


def test_timing_metrics_of_older_rows_are_treated_as_timings():
    from harness.results.summary import summarize
    from harness.spec.row import row_metrics

    old = {"cell_id": "c", "point_id": "p", "status": "ok", "coords": {},
           "metrics": {"lambda_min_full": 1.0, "ntk_seconds": 2.0, "solver_seconds_full": 0.1}}
    assert row_metrics(old) == {"lambda_min_full": 1.0}
    assert row_metrics(old, timings=True) == {"lambda_min_full": 1.0, "timings.ntk_seconds": 2.0,
                                              "timings.solver_seconds_full": 0.1}
    assert not any("seconds" in k for k in summarize([old])[0])


@pytest.mark.parametrize("kind, shown", [("object", "<object object at"), ("complex", "(1+2j) is a complex value"),
                                         ("bytes", "b'x' is a bytes value"), ("complex_curve", "1j is a complex")])
def test_a_result_that_is_not_json_fails_its_cell_naming_the_key(registry, kind, shown):
    from harness.runner.execute import run_cell
    from harness.spec.cells import Cell

    cell = Cell(experiment_id="o", experiment="odd", params={"kind": kind}, components={}, coords={},
                repetition=0, root_seed=1)
    row = run_cell(cell, registry)
    assert row["status"] == "failed" and row["metrics"] == {}
    assert row["error"].startswith("TypeError: result 'odd' = ") and shown in row["error"]
    ok = run_cell(Cell(experiment_id="o", experiment="odd", params={"kind": "plain"}, components={}, coords={},
                       repetition=0, root_seed=1), registry)
    assert ok["status"] == "ok" and ok["metrics"] == {"fine": 1.0, "odd": 1.5}
