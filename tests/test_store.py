"""harness.runner.store: run directory layout, durable appends, torn last lines, repair."""
from __future__ import annotations

import json
import re

import pytest

from harness.errors import UserError
from harness.runner.store import RunDir


def row(cell_id, status="ok", **metrics):
    return {"cell_id": cell_id, "point_id": "p" + cell_id, "experiment_id": "a", "experiment": "echo",
            "coords": {}, "repetition": 0, "status": status, "metrics": metrics, "curves": {}}


def test_create_names_and_layout(tmp_path):
    a = RunDir.create(tmp_path / "results", "demo")
    b = RunDir.create(tmp_path / "results", "demo")
    assert a.path != b.path
    assert a.path.parent == tmp_path / "results" / "demo"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", a.path.name)
    assert a.rows_path.exists() and a.read_rows() == []


def test_append_then_read_in_order(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    with run:
        for i in range(3):
            run.append_row(row(str(i), loss=float(i)))
    assert [r["cell_id"] for r in run.read_rows()] == ["0", "1", "2"]
    lines = run.rows_path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["metrics"] == {"loss": 1.0}
    assert run.finished_ids() == {"0", "1", "2"}


def test_rows_are_readable_while_the_file_is_open(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    run.append_row(row("0"))
    assert RunDir(run.path).read_rows()[0]["cell_id"] == "0"  # flushed, not buffered
    run.close()


def test_torn_last_line_is_ignored_and_repaired(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    run.append_row(row("0"))
    run.append_row(row("1"))
    run.close()
    good = run.rows_path.read_bytes()
    with open(run.rows_path, "ab") as f:
        f.write(b'{"cell_id": "2", "status": "o')  # a write cut short by a kill
    assert [r["cell_id"] for r in run.read_rows()] == ["0", "1"]
    assert run.repair() == len(b'{"cell_id": "2", "status": "o')
    assert run.rows_path.read_bytes() == good
    run.append_row(row("2"))
    run.close()
    assert [r["cell_id"] for r in run.read_rows()] == ["0", "1", "2"]
    assert run.repair() == 0


def test_complete_json_without_newline_counts_as_torn(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    run.rows_path.write_text(json.dumps(row("0")) + "\n" + json.dumps(row("1")))
    assert [r["cell_id"] for r in run.read_rows()] == ["0"]


def test_corrupt_line_in_the_middle_is_a_user_error(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    run.rows_path.write_text(json.dumps(row("0")) + "\nnot json\n" + json.dumps(row("1")) + "\n")
    with pytest.raises(UserError, match=r"rows.jsonl:2"):
        run.read_rows()


def test_later_row_for_the_same_cell_wins(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    with run:
        run.append_row(row("0", status="failed"))
        run.append_row(row("1"))
        run.append_row(row("0", status="ok"))
    rows = run.read_rows()
    assert [(r["cell_id"], r["status"]) for r in rows] == [("1", "ok"), ("0", "ok")]


def test_nan_and_numpy_values_round_trip(tmp_path):
    import math

    import numpy as np

    run = RunDir.create(tmp_path, "demo")
    with run:
        run.append_row(row("0", loss=math.nan, big=-math.inf, other=np.float64(0.5)))
    text = run.rows_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} token in rows.jsonl"))
    assert back["metrics"] == {"loss": None, "big": None, "other": 0.5}
    assert back["nonfinite"] == ["metrics.loss", "metrics.big"]
    assert run.read_rows()[0]["metrics"] == back["metrics"]


def test_rows_written_with_nan_tokens_by_older_versions_still_read(tmp_path):
    import math

    run = RunDir.create(tmp_path, "demo")
    run.rows_path.write_text('{"cell_id": "0", "point_id": "p0", "experiment_id": "a", "experiment": "echo", '
                             '"coords": {}, "repetition": 0, "status": "diverged", '
                             '"metrics": {"loss": NaN, "big": Infinity}, "curves": {}}\n')
    metrics = run.read_rows()[0]["metrics"]
    assert math.isnan(metrics["loss"]) and metrics["big"] == math.inf


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "", "-x", ".hidden"])
def test_benchmark_names_that_would_leave_the_results_folder_are_refused(tmp_path, name):
    with pytest.raises(UserError, match="benchmark name"):
        RunDir.create(tmp_path / "results", name)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "results"])


def test_atomic_text_files_and_sessions(tmp_path):
    run = RunDir.create(tmp_path, "demo")
    run.write_spec("[benchmark]\nname = 'demo'\n")
    assert run.spec_path.read_text().startswith("[benchmark]")
    assert not list(run.path.glob("*.tmp"))
    run.add_session({"python": "3"}, {"jobs": 1})
    run.add_session({"python": "other"}, {"jobs": 2})
    env = run.read_env()
    assert env["python"] == "3" and [s["jobs"] for s in env["sessions"]] == [1, 2]


def test_open_rejects_what_is_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        RunDir.open(tmp_path / "file")
    with pytest.raises(UserError, match="no spec.toml"):
        RunDir.open(tmp_path)


def test_create_in_unwritable_place_is_a_user_error(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    with pytest.raises(UserError, match="cannot create a run directory"):
        RunDir.create(tmp_path / "blocker", "demo")


def test_named_runs_meta_and_finding_the_latest(tmp_path):
    import os
    from pathlib import Path

    from harness.runner.layout import check_label, find_runs, resolve_run_path

    a = RunDir.create(tmp_path, "bench", label="first-try")
    assert a.path.name.endswith("-first-try") and a.read_meta() == {}
    a.write_meta("first-try", ["x"])
    assert json.loads(a.meta_path.read_text())["tags"] == ["x"] and a.read_meta()["name"] == "first-try"
    for run in (a,):
        run.write_spec("[benchmark]\n")
    b = RunDir.create(tmp_path, "bench")
    b.write_spec("[benchmark]\n")
    c = RunDir.create(tmp_path, "other")
    c.write_spec("[benchmark]\n")
    os.utime(a.spec_path, ns=(1, 1))  # same second: the spec's mtime breaks the tie
    RunDir.create(tmp_path, "bench")  # no spec.toml yet: not a run directory
    assert find_runs(tmp_path, "bench") == [a.path, b.path]
    assert find_runs(tmp_path) == [a.path, b.path, c.path]
    assert resolve_run_path("latest", tmp_path) == c.path
    assert resolve_run_path("latest:bench", tmp_path) == b.path
    assert resolve_run_path(a.path) == a.path and resolve_run_path("elsewhere") == Path("elsewhere")
    with pytest.raises(UserError, match="--name 'a/b'"):
        check_label("a/b")
    with pytest.raises(UserError, match="--name"):
        RunDir.create(tmp_path, "bench", label="-x")
