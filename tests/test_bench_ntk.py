"""harness bench ntk: the plain baselines (correct, and free of harness code), the interleaved
timing, and the text and Markdown tables."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.benchmarking import ntk_speed, plain_ntk
from harness.benchmarking.tables import Column, markdown_table, text_table
from harness.results.publish import page_marker, regenerate_script

PLAIN = Path(plain_ntk.__file__)


def test_plain_module_imports_only_numpy_scipy_and_the_standard_library():
    tree = ast.parse(PLAIN.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in the baseline"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "time", "numpy", "scipy"}, imported


BLOCKED = """
import importlib.abc, importlib.util, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "harness" or name.startswith("harness."):
            raise ImportError("the baseline imported " + name)
sys.meta_path.insert(0, Refuse())
spec = importlib.util.spec_from_file_location("plain_ntk_alone", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
weights, X = mod.figure1_problem(7, 9, seed=3)
K = mod.plain_ntk(weights, X)
print(json.dumps({"K": K.tolist(), "lmin": mod.plain_lambda_min(K),
                  "harness": sorted(m for m in sys.modules if m.split(".")[0] == "harness")}))
"""


@pytest.mark.slow
def test_baseline_runs_without_harness_and_matches_the_explicit_jacobian():
    """In a fresh interpreter where importing harness fails, the baseline computes K; K equals
    J J^T from the explicit per-sample Jacobian, and its lambda_min is dense eigvalsh's."""
    from harness.engine.jacobian import jacobian
    from harness.plugin.manager import load_registry

    proc = subprocess.run([sys.executable, "-c", BLOCKED, str(PLAIN)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["harness"] == []
    K = np.array(out["K"])
    weights, X = plain_ntk.figure1_problem(7, 9, seed=3)
    J = jacobian(weights, X, load_registry().create("activation", "sigmoid"))
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-12, atol=1e-12 * np.abs(K).max())
    assert out["lmin"] == pytest.approx(np.linalg.eigvalsh(J @ J.T)[0], rel=1e-9)


def test_figure1_problem_shapes_and_scales():
    weights, X = plain_ntk.figure1_problem(300, 400, seed=1)
    assert [W.shape for W in weights] == [(300, 300), (300, 300), (1, 300)] and X.shape == (400, 300)
    assert np.var(weights[0]) == pytest.approx(1 / 300, rel=0.05)  # N(0, 1/d)
    assert np.var(weights[2]) == pytest.approx(1.0, rel=0.3)  # output N(0, 1)


def test_paired_times_alternate_and_take_medians_of_pair_ratios(monkeypatch):
    clock = {"t": 0.0}
    order = []
    monkeypatch.setattr(ntk_speed.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(ntk_speed.time, "sleep", lambda s: None)
    ours_costs = iter([1.0, 2.0, 1.0])
    base_costs = iter([3.0, 2.0, 5.0])

    def ours():
        order.append("ours")
        clock["t"] += next(ours_costs)

    def baseline():
        order.append("baseline")
        clock["t"] += next(base_costs)

    out = ntk_speed.paired_times(ours, baseline, 3)
    assert order == ["ours", "baseline"] * 3
    assert out["ours"] == 1.0 and out["baseline"] == 3.0
    assert out["ratios"] == [3.0, 1.0, 5.0] and out["ratio"] == 3.0  # not 3.0 / 1.0 of the medians
    with pytest.raises(ValueError, match="repeats"):
        ntk_speed.paired_times(ours, baseline, 0)


def test_floors():
    assert ntk_speed.cholesky_floor_s(3000, 100.0) == pytest.approx(3000 ** 3 / 3 / 1e11)
    # 3-layer d -> d -> d -> 1: forward 2 N d^2 twice, backward 2 N d^2 once, grams N^2 (3d + 2d)
    assert ntk_speed.structured_flops([10, 10, 10, 1], 7) == pytest.approx(6 * 7 * 100 + 49 * 50)


COLUMNS = (Column("name", "name"), Column("t", "t_s", "{:.3f}"), Column("r", "ratio", "{:.2f}x"))
ROWS = [{"name": "a|b", "t": 0.12345, "r": 2.0}, {"name": "long name", "t": None, "r": 0.5}]


def test_text_table_aligns_columns():
    lines = text_table(ROWS, COLUMNS).splitlines()
    assert lines[0].split() == ["name", "t_s", "ratio"]
    assert lines[1].split() == ["a|b", "0.123", "2.00x"]
    assert lines[2].endswith("-  0.50x")  # a missing value prints as "-"
    assert len({len(line) for line in lines}) == 1  # right-aligned to one width


def test_markdown_table_structure():
    md = markdown_table(ROWS, COLUMNS, notes=["What was measured."])
    lines = md.splitlines()
    assert lines[0] == "What was measured." and lines[1] == ""
    assert lines[2] == "| name | t_s | ratio |"
    assert lines[3] == "|---|---:|---:|"  # numbers right-aligned, text left
    assert lines[4] == "| a\\|b | 0.123 | 2.00x |"  # a pipe inside a cell is escaped
    assert lines[5] == "| long name | - | 0.50x |"


@pytest.mark.slow
def test_bench_ntk_cli_writes_a_markdown_table_with_a_lambda_min_line_per_size(capsys, tmp_path):
    out_file = tmp_path / "ntk.md"
    rows = ntk_speed.cli(["--sizes", "8x40,12x60", "--repeats", "1", "--markdown", str(out_file)])
    captured = capsys.readouterr()
    assert "done d=8 N=40" in captured.err  # progress on stderr
    text_lines = captured.out.strip().splitlines()
    assert text_lines[-3].split() == [c.title for c in ntk_speed.COLUMNS]
    lines = out_file.read_text().strip().splitlines()
    assert any(line.startswith("Machine:") and "DGEMM" in line and "GFLOP/s" in line for line in lines)
    # a page: its title, then the command, the date and the commit it came from
    marker = page_marker(out_file)  # the results pages' marker: docs/results/regenerate remakes it
    assert marker["benchmark"] == "ntk" and marker["run"].startswith("harness ") and marker["publish"] is None
    lines = lines[1:]
    assert lines[0] == "# harness bench ntk"
    assert re.match(r"Generated by `harness .*` on \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
                    r"(commit `[0-9a-f]{40}` \((clean|with uncommitted changes)\)|not run from a git work tree)\.$",
                    lines[2]), lines[2]
    table = [line for line in lines if line.startswith("|")]
    titles = [c.strip() for c in table[0].strip("|").split("|")]
    assert titles == [c.title for c in ntk_speed.COLUMNS]
    assert len(table) == 2 + 2
    for row, line, text in zip(rows, table[2:], text_lines[-2:]):
        cells = dict(zip(titles, (c.strip() for c in line.strip("|").split("|"))))
        assert cells["N"] == str(row["N"]) and cells["lmin_solver"] == row["lmin_solver"]
        assert float(cells["lmin_vs_eigvalsh"].rstrip("x")) > 0
        assert list(cells.values()) == text.split()  # the same cells as the terminal's table
        assert row["lmin_rel_diff"] < 1e-9 and row["ntk_rel_diff"] < 1e-12


def test_bench_ntk_refuses_bad_arguments_before_running(capsys, tmp_path):
    for argv, message in ((["--sizes", "512by2048"], "'512by2048' is not dxN"),
                          (["--repeats", "0"], "--repeats must be >= 1"),
                          (["--markdown", str(tmp_path / "missing" / "t.md")], "does not exist")):
        with pytest.raises(SystemExit) as exc:
            ntk_speed.cli(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_regenerate_runs_a_bench_page_by_its_own_command():
    script = regenerate_script([{"benchmark": "bench-ntk", "run": "harness bench ntk --markdown docs/results/bench-ntk.md",
                                 "publish": None}])
    body = script.split("    bench-ntk)\n", 1)[1].split(";;", 1)[0].split()
    assert body == ["harness", "bench", "ntk", "--markdown", "docs/results/bench-ntk.md"]
