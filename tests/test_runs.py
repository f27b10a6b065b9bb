"""Finding and using runs: ``harness runs``, ``--name/--tag``, ``latest``, ``show`` filters and
columns, ``export`` / ``Run.to_pandas()``, ``--resume`` remembering ``-j``, ``fit --json``."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import ECHO_SPEC, write_spec

from harness import api
from harness.cli import main
from harness.errors import UserError
from harness.runner.layout import find_runs, resolve_run_path
from harness.runner.store import RunDir

TWO_BLOCKS = """
[benchmark]
name = "two"
seed = 4
repetitions = 2

[[experiments]]
id = "a"
experiment = "echo"
[experiments.grid]
x = [1.0, 2.0, 3.0]
sleep = [0.0, 0.001]

[[experiments]]
id = "b"
experiment = "echo"
x = 5.0
"""


USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Three runs: demo (named, tagged), two (tagged), demo again (newest)."""
    root = tmp_path_factory.mktemp("runs")
    demo = write_spec(root / "demo.toml", ECHO_SPEC)
    two = write_spec(root / "two.toml", TWO_BLOCKS)
    out = root / "results"
    first = api.run(str(demo), results_dir=out, progress=False, figures=False, name="baseline",
                    tags=["paper", "v1"]).path
    second = api.run(str(two), results_dir=out, progress=False, figures=False, tags=["v1"]).path
    third = api.run(str(demo), results_dir=out, progress=False, figures=False).path
    return {"root": out, "first": first, "second": second, "third": third}


def invoke(*args, results_dir=None):
    env = {"HARNESS_RESULTS_DIR": str(results_dir)} if results_dir is not None else {}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# -- name, tags, meta.json --------------------------------------------------------------------

@pytest.mark.slow
def test_name_is_part_of_the_directory_and_meta_json_keeps_name_and_tags(results):
    first = results["first"]
    assert first.name.endswith("-baseline") and first.parent.name == "demo"
    meta = json.loads((first / "meta.json").read_text())
    assert meta["name"] == "baseline" and meta["tags"] == ["paper", "v1"] and meta["created"]
    assert api.load_run(first).meta["tags"] == ["paper", "v1"]
    assert json.loads((results["third"] / "meta.json").read_text())["name"] is None


@pytest.mark.parametrize("args, fragment", [
    (["--name", "has space"], "--name 'has space': use 1 to 64 letters"),
    (["--name", "latest"], "--name 'latest'"),
    (["--tag", "a,b"], "--tag 'a,b'"),
])
def test_bad_name_or_tag_is_a_user_error_and_creates_nothing(tmp_path, args, fragment):
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    assert_user_error(invoke("run", spec, "--results-dir", tmp_path / "r", "-q", *args), fragment)
    assert not (tmp_path / "r").exists()


def test_resume_keeps_its_name_and_refuses_a_new_one(results):
    assert_user_error(invoke("run", "--resume", results["first"], "--name", "other"), "a resumed run keeps")


# -- harness runs -----------------------------------------------------------------------------

def test_list_runs_oldest_first_with_counts_commit_and_labels(results):
    found = api.list_runs(results_dir=results["root"])
    assert [r["path"] for r in found] == [results["first"], results["second"], results["third"]]
    first = found[0]
    assert first["benchmark"] == "demo" and first["rows"] == 6 and first["status"] == {"ok": 6}
    assert first["name"] == "baseline" and first["tags"] == ["paper", "v1"] and first["sessions"] == 1
    env = json.loads((results["first"] / "env.json").read_text())
    assert first["commit"] == (env["git"] or {}).get("commit")
    assert [r["path"] for r in api.list_runs("demo", results["root"])] == [results["first"], results["third"]]
    assert [r["path"] for r in api.list_runs(results_dir=results["root"], tags=["v1"])] == [
        results["first"], results["second"]]
    with pytest.raises(UserError, match=r"no runs of benchmark 'dem' .*did you mean 'demo'.*demo, two"):
        api.list_runs("dem", results["root"])


def test_harness_runs_prints_a_table_within_100_columns(results):
    result = invoke("runs", "--results-dir", results["root"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "started", "rows", "status", "commit", "name", "/", "tags"]
    assert lines[1].startswith(f"demo/{results['first'].name}") and "ok 6" in lines[1]
    assert "baseline, #paper" in lines[1]  # a long label may be cut at 100 columns
    assert lines[2].startswith(f"two/{results['second'].name}") and "ok 14" in lines[2] and "#v1" in lines[2]
    assert lines[-1].startswith("3 runs; the last is 'latest'")
    assert all(len(line) <= 100 for line in lines)
    only = invoke("runs", "two", results_dir=results["root"])  # the folder from $HARNESS_RESULTS_DIR
    assert only.exit_code == 0 and len(only.stdout.splitlines()) == 3
    as_json = json.loads(invoke("runs", "--json", "--tag", "paper", results_dir=results["root"]).stdout)
    assert [Path(r["path"]) for r in as_json] == [results["first"]]
    assert_user_error(invoke("runs", "nope", results_dir=results["root"]), "no runs of benchmark 'nope'")
    empty = invoke("runs", results_dir=results["root"] / "none")
    assert empty.exit_code == 0 and "no runs under" in empty.stderr


# -- latest -----------------------------------------------------------------------------------

def test_latest_resolves_to_the_newest_run(results, monkeypatch):
    root = results["root"]
    assert resolve_run_path("latest", root) == results["third"]
    assert resolve_run_path("latest:two", root) == results["second"]
    assert find_runs(root, "demo") == [results["first"], results["third"]]
    with pytest.raises(UserError, match="latest:BENCHMARK"):
        resolve_run_path("latest:", root)
    with pytest.raises(UserError, match="no runs of benchmark 'zz'"):
        resolve_run_path("latest:zz", root)
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(root))
    assert RunDir.open("latest").path == results["third"]
    assert api.load_run("latest:two").path == results["second"]
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(root / "none"))
    with pytest.raises(UserError, match="no run directories under"):
        RunDir.open("latest")


def test_latest_works_in_every_command(results, tmp_path):
    root = results["root"]
    shown = invoke("show", "latest:two", results_dir=root)
    assert shown.exit_code == 0 and f"run: {results['second']}" in shown.output
    report = invoke("report", "latest", "-o", tmp_path / "r.html", results_dir=root)
    assert report.exit_code == 0, report.output
    assert results["third"].name in (tmp_path / "r.html").read_text()
    fit = invoke("fit", "latest", "-m", "x2", "-a", "x", "--n-boot", "10", results_dir=root)
    assert fit.exit_code == 0, fit.output
    exported = invoke("export", "latest:two", results_dir=root)
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 15


# -- show: filters, columns, width ------------------------------------------------------------

def test_show_filters_by_experiment_and_where(results):
    run = results["second"]
    result = invoke("show", run, "--experiment", "a", "--where", "x=2", "--where", "sleep=0")
    assert result.exit_code == 0, result.output
    assert "a (echo)" in result.output and "b (echo)" not in result.output
    body = result.output.split("a (echo)")[1].strip().splitlines()
    assert len(body) == 3 and body[2].split()[:2] == ["2", "0"]  # header, rule, one point
    either = invoke("show", run, "-e", "a", "-w", "x=1", "-w", "x=3.0")  # same key twice: either value
    assert len(either.output.split("a (echo)")[1].strip().splitlines()) == 6
    nothing = invoke("show", run, "-w", "x=9")
    assert nothing.exit_code == 0 and "(no grid point matches)" in nothing.output


def test_show_selects_columns_and_fits_100_columns(results):
    run = results["second"]
    result = invoke("show", run, "-e", "a", "--columns", "x,sleep,u")
    assert result.exit_code == 0, result.output
    header = result.output.split("a (echo)")[1].strip().splitlines()[0]
    assert header.split() == ["x", "sleep", "u"]
    default = invoke("show", run)
    assert all(len(line) <= 100 for line in default.output.splitlines()), default.output
    wide = invoke("show", run, "--width", "0")
    assert max(len(line) for line in wide.output.splitlines()) > 60
    assert "more columns" not in wide.output
    narrow = invoke("show", run, "--width", "60")
    assert all(len(line) <= 60 for line in narrow.output.splitlines() if not line.startswith("run:"))
    assert "more columns: " in narrow.output and "data_sum" in narrow.output.split("more columns: ")[1]
    table = narrow.output.split("a (echo)")[1].strip().splitlines()
    assert table[0].split()[:6] == ["x", "sleep", "rows", "ok", "x_mean", "u"]  # a metric named like an axis


@pytest.mark.parametrize("args, fragment", [
    (["--experiment", "c"], "--experiment 'c': no such experiment block; blocks: a, b"),
    (["--where", "y=1"], "--where y=...: no such key"),
    (["--where", "x"], "--where 'x': expected KEY=VALUE"),
    (["--columns", "x,nope"], "--columns 'nope': no such column"),
])
def test_show_mistakes_are_user_errors(results, args, fragment):
    assert_user_error(invoke("show", results["second"], *args), fragment)


# -- export and to_pandas ---------------------------------------------------------------------

def test_export_csv_is_one_tidy_line_per_row_in_grid_order(results, tmp_path):
    run = results["second"]
    lines = (run / "rows.jsonl").read_text().splitlines(keepends=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("spec.toml", "env.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    (copy / "rows.jsonl").write_text("".join(reversed(lines)))  # finished in another order
    result = invoke("export", copy, "--format", "csv")
    assert result.exit_code == 0, result.output
    data = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(data) == 14
    header = result.stdout.splitlines()[0].split(",")
    assert header[:6] == ["experiment_id", "experiment", "repetition", "x", "sleep", "status"]
    assert {"metrics.u", "metrics.x2", "metrics.nested.a", "params.x", "components.data",
            "components.data.value", "seed.root", "seed.spawn_key", "elapsed", "cell_id"} <= set(header)
    assert not any(h.startswith("curves") for h in header)
    assert [(d["experiment_id"], d["x"], d["sleep"], d["repetition"]) for d in data[:4]] == [
        ("a", "1.0", "0.0", "0"), ("a", "1.0", "0.0", "1"), ("a", "1.0", "0.001", "0"), ("a", "1.0", "0.001", "1")]
    assert data[-1]["experiment_id"] == "b" and data[-1]["x"] == "" and data[-1]["params.x"] == "5.0"
    assert data[0]["metrics.nested.a"] == "1" and json.loads(data[0]["seed.spawn_key"])[1] == 0
    assert data[0]["components.data"] == "tdata" and data[0]["status"] == "ok"
    out = invoke("export", copy, "-o", tmp_path / "t.csv")
    assert out.exit_code == 0 and (tmp_path / "t.csv").read_text() == result.stdout


def test_to_records_and_pandas(results, monkeypatch):
    run = api.load_run(results["first"])
    cols, records = run.to_records()
    assert len(records) == 6 and cols[3] == "x" and records[0]["metrics.x2"] == 1.0
    try:
        import pandas  # noqa: F401
    except ImportError:
        pandas = None
    if pandas is not None:
        frame = run.to_pandas()
        assert list(frame.columns) == cols and len(frame) == 6
        assert frame.groupby("x")["metrics.x2"].mean().to_dict() == {1.0: 1.0, 2.0: 4.0, 3.0: 9.0}
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas absent
    with pytest.raises(UserError, match=r"Run.to_pandas\(\) needs pandas.*pip install pandas"):
        run.to_pandas()


def test_parquet_needs_pandas_and_pyarrow(results, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert_user_error(invoke("export", results["first"], "--format", "parquet"),
                      "--format parquet needs pandas and pyarrow", "pip install pandas pyarrow")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    csv_text = invoke("export", results["first"])  # csv needs neither
    assert csv_text.exit_code == 0 and len(csv_text.stdout.splitlines()) == 7


def test_parquet_round_trip(results, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    result = invoke("export", results["second"], "--format", "parquet", "-o", tmp_path / "rows.parquet")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "rows.parquet")
    assert len(frame) == 14 and frame["metrics.x2"].iloc[0] == 1.0
    assert list(frame.columns) == api.load_run(results["second"]).to_records()[0]


# -- --resume remembers -j ----------------------------------------------------------------------

def test_resume_uses_the_jobs_of_the_last_session_unless_given(results, monkeypatch, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("spec.toml", "rows.jsonl", "env.json"):
        (run / name).write_bytes((results["first"] / name).read_bytes())
    env = json.loads((run / "env.json").read_text())
    env["sessions"].append(dict(env["sessions"][0], jobs=3))
    (run / "env.json").write_text(json.dumps(env))
    assert api.remembered_jobs(run) == 3
    seen = {}

    def fake_run(file=None, **kwargs):
        seen.update(kwargs)
        return RunDir(run)

    monkeypatch.setattr(api, "run", fake_run)
    assert invoke("run", "--resume", run, "-q").exit_code == 0
    assert seen["jobs"] == 3 and seen["resume"] == str(run)
    assert invoke("run", "--resume", run, "-q", "-j", "1").exit_code == 0
    assert seen["jobs"] == 1
    spec = write_spec(tmp_path / "demo.toml", ECHO_SPEC)
    assert invoke("run", spec, "-q").exit_code == 0 and seen["jobs"] == 1  # a new run: 1


# -- fit --json -------------------------------------------------------------------------------

def test_fit_json_is_strict_json(results):
    # x is constant within block b: its fit has NaN slope, which must come out as null
    result = invoke("fit", results["second"], "-m", "u", "-a", "x", "--json", "--n-boot", "20")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    assert {d["experiment_id"] for d in data} >= {"a"}
