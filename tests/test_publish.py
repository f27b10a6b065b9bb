"""harness.results.publish: a results page made from a tiny run, every number on it checked against
the run's rows and records; the regenerate script, the index and the README block."""
from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from harness import api
from harness.cli import main
from harness.plugin.tables import format_value
from harness.results.publish import HEADLINE_BEGIN, HEADLINE_END, MARKER, clock, harness_command
from harness.runner.search import thresholds
from harness.spec import load_spec

USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")

SPEC = """
[benchmark]
name = "tiny"
seed = 11
repetitions = 4
description = "a ramp searched for its threshold, and an echo grid"

[[experiments]]
id = "ramp"
experiment = "ramp"
noise = 0.3
[experiments.grid]
k = [1.0, 2.0]
[experiments.search]
axis = "n"
lower = 1
upper = 1000
start = "50 * k"
metric = "loss"
tolerance = 0.05
below = 0

[[experiments]]
id = "echo"
experiment = "echo"
[experiments.grid]
x = [1.0, 2.0]
"""

README = """# A project

Its answer:

<!-- results:tiny:begin -->
(to be filled)
<!-- results:tiny:end -->

The end.
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from plugins_for_tests import loaded_test_plugins

    root = tmp_path_factory.mktemp("publish")
    (root / "tiny.toml").write_text(SPEC)
    (root / "README.md").write_text(README)
    with loaded_test_plugins() as registry:
        run_dir = api.run(str(root / "tiny.toml"), results_dir=root / "results", progress=False, registry=registry)
        pages = api.publish([str(run_dir.path)], root / "docs" / "results", readme=root / "README.md",
                            registry=registry)
        run = api.load_run(run_dir.path, registry)
        spec = load_spec(run_dir.path / "spec.toml", registry=registry)
    return {"root": root, "run": run, "spec": spec, "pages": pages,
            "page": pages[0].read_text(), "env": json.loads((run_dir.path / "env.json").read_text())}


def tables_of(text: str) -> dict[str, list[list[str]]]:
    """Every markdown table under a ``###`` heading (or the headline block), by heading: its lines
    of cells (the header first)."""
    out: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line == HEADLINE_BEGIN:
            heading = "headline"
        elif line.startswith("| ") and heading is not None:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if set(cells) != {"---"}:
                out.setdefault(heading, []).append(cells)
    return out


@pytest.mark.slow
def test_the_page_opens_with_the_answer_then_figures_then_how_it_was_made(published):
    page = published["page"]
    assert published["pages"][0].name == "tiny.md"
    assert page.index("## What the run answers") < page.index("## Figures") < page.index("## How the run was made")
    marker = json.loads(page.splitlines()[0][len(MARKER):-3])
    assert marker["benchmark"] == "tiny"
    assert marker["publish"].startswith("harness publish latest:tiny --out ")


@pytest.mark.slow
def test_headline_and_threshold_numbers_are_the_rows_thresholds(published):
    run, spec = published["run"], published["spec"]
    lines = thresholds(spec, run.rows)
    assert [t["status"] for t in lines] == ["found", "found"]
    tables = tables_of(published["page"])
    head = tables["headline"]
    assert head[0] == ["block", "grid point", "searched", "threshold [95% bootstrap]", "bracket", "status"]
    for cells, t in zip(head[1:], lines, strict=True):
        threshold = f"{format_value(t['threshold'])} [{format_value(t['ci_low'])}, {format_value(t['ci_high'])}]"
        bracket = f"{format_value(t['lower'])} - {format_value(t['upper'])}"
        assert cells == ["ramp", f"k = {format_value(t['k'])}, level {format_value(t['level'])}", "n", threshold,
                         bracket, "found"]
        # the threshold interpolates between the bracket, where mean log10(loss) crosses 0
        assert t["lower"] <= t["threshold"] <= t["upper"]
    detail = tables["ramp: threshold search over n"]
    assert detail[0] == ["k", "level", "n* [95% bootstrap]", "bracket of n", "status", "cells",
                         "early stops at the bracket", "median stop epoch"]
    for cells, t in zip(detail[1:], lines, strict=True):
        assert cells[0] == format_value(t["k"]) and cells[1] == format_value(t["level"])
        assert cells[5] == str(t["n_cells"])
        assert cells[6:] == [format_value(t["early_stop_fraction"]), format_value(t["median_stop_epoch"])]
        assert t["n_cells"] == sum(1 for r in run.rows if r["experiment_id"] == "ramp" and r["coords"]["k"] == t["k"])


@pytest.mark.slow
def test_experiment_table_numbers_are_recomputed_from_the_rows(published):
    rows = [r for r in published["run"].rows if r["experiment_id"] == "ramp"]
    by_n: dict = {}
    for r in rows:
        by_n.setdefault(r["params"]["n"], []).append(math.log10(r["metrics"]["loss"]))
    table = tables_of(published["page"])["ramp: log10(loss) per n"]
    assert table[0] == ["n", "rows", "mean log10(loss) [95% bootstrap]", "loss <= 1 [95% Wilson]"]
    assert [int(c[0]) for c in table[1:]] == sorted(by_n)
    for cells in table[1:]:
        values = np.array(by_n[int(cells[0])])
        assert cells[1] == str(values.size)
        mean_text = cells[2].split(" [")[0]
        assert mean_text == format_value(values.mean())
        if values.size >= 3:  # the bootstrap interval holds the mean
            low, high = (float(x) for x in cells[2].split(" [")[1].rstrip("]").split(", "))
            assert low <= values.mean() <= high
        k = int((values <= 0).sum())
        ci = binomtest(k, values.size).proportion_ci(confidence_level=0.95, method="wilson")
        expected = f"{format_value(k / values.size)} [{format_value(ci.low)}, {format_value(ci.high)}]"
        assert cells[3] == expected
    # the claim carries its number: the least-squares slope of log10(loss) against n over the rows
    n = np.array([r["params"]["n"] for r in rows], dtype=float)
    y = np.array([math.log10(r["metrics"]["loss"]) for r in rows])
    slope = np.polyfit(n, y, 1)[0]
    assert f"log10(loss) grows linearly in n: slope {format_value(slope)} per unit n." in published["page"]


@pytest.mark.slow
def test_how_the_run_was_made_comes_from_env_json_and_rows(published):
    env, run = published["env"], published["run"]
    facts = {c[0]: c[1] for c in tables_of(published["page"])["How the run was made"][1:]}
    session = env["sessions"][0]
    assert facts["command"] == f"`{harness_command(session['command_line'])}`"
    assert env["git"] is None or facts["commit"].startswith(f"`{env['git']['commit']}`")
    assert facts["date"].startswith(session["started"])
    dgemm = session["dgemm"]
    assert dgemm["gflops"] > 0 and dgemm["size"] == 1000 and dgemm["repeats"] == 3
    assert facts["DGEMM at the start"].startswith(f"{format_value(dgemm['gflops'])} GFLOP/s (1000 x 1000")
    assert session["ended"] == "finished" and session["wall_seconds"] > 0 and session["cpu_seconds"] > 0
    assert facts["wall time"] == f"{clock(session['wall_seconds'])} ({format_value(session['wall_seconds'])} s)"
    assert facts["CPU time"].startswith(f"{clock(session['cpu_seconds'])} ({format_value(session['cpu_seconds'])} s")
    assert facts["machine"].startswith(f"{env['cpu']}, {env['cores']} cores")
    assert facts["cells"] == f"{len(run.rows)}: {len(run.rows)} ok"
    blocks = {c[0]: c for c in tables_of(published["page"])["How the run was made"][1:] if c[0] in ("ramp", "echo")}
    assert blocks["echo"][2] == str(8) and blocks["echo"][3] == "8 ok"  # 2 points x 4 repetitions


@pytest.mark.slow
def test_every_number_in_the_answer_is_accounted_for(published):
    """No number on the page's answer that the checks above do not derive from the rows."""
    run, spec = published["run"], published["spec"]
    expected = set()
    for t in thresholds(spec, run.rows):
        expected |= {format_value(t[k]) for k in ("k", "threshold", "ci_low", "ci_high", "lower", "upper", "n_cells")}
        expected |= {format_value(t[k]) for k in ("early_stop_fraction", "median_stop_epoch") if t.get(k) is not None}
    rows = [r for r in run.rows if r["experiment_id"] == "ramp"]
    by_n: dict = {}
    for r in rows:
        by_n.setdefault(r["params"]["n"], []).append(math.log10(r["metrics"]["loss"]))
    for n, v in by_n.items():
        values = np.array(v)
        k = int((values <= 0).sum())
        ci = binomtest(k, values.size).proportion_ci(method="wilson")
        expected |= {str(n), str(values.size), format_value(values.mean()), format_value(k / values.size),
                     format_value(ci.low), format_value(ci.high)}
        if values.size >= 3:
            idx = np.random.default_rng(0).integers(0, values.size, size=(2000, values.size))
            expected |= {format_value(q) for q in np.quantile(values[idx].mean(axis=1), [0.025, 0.975])}
    n = np.array([r["params"]["n"] for r in rows], dtype=float)
    expected.add(format_value(np.polyfit(n, [math.log10(r["metrics"]["loss"]) for r in rows], 1)[0]))
    answer = published["page"].split("## What the run answers", 1)[1].split("## Estimates", 1)[0]
    answer = answer.replace("95%", "").replace("log10", "")  # names, not numbers
    tables = "\n".join(line for line in answer.splitlines() if line.startswith("| "))
    numbers = set(re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]\d+)?(?![\w.])", tables))
    numbers -= {"0", "1"}  # the condition's level and "loss <= 1" in the headers
    assert numbers <= expected, sorted(numbers - expected)


@pytest.mark.slow
def test_figures_are_copied_next_to_the_page(published):
    root = published["root"] / "docs" / "results"
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", published["page"])
    assert linked and all((root / path).is_file() for path in linked)
    assert {Path(p).name for p in linked} == {p.name for p in (Path(published["run"].path) / "figures").glob("*.png")}


@pytest.mark.slow
def test_regenerate_index_and_readme(published):
    root = published["root"]
    script = root / "docs" / "results" / "regenerate"
    text = script.read_text()
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "    tiny)\n" in text and "harness publish latest:tiny --out " in text
    # the run was made through the API, not `harness run`: the script says so instead of guessing
    assert "was not made by harness run" in text
    assert "[tiny](tiny.md)" in (root / "docs" / "results" / "index.md").read_text()
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- results:tiny:begin -->\n", 1)[1].split("\n<!-- results:tiny:end -->", 1)[0]
    headline = published["page"].split(HEADLINE_BEGIN + "\n", 1)[1].split("\n" + HEADLINE_END, 1)[0]
    assert block == headline + "\n\nFrom [docs/results/tiny.md](docs/results/tiny.md)."
    assert readme.startswith("# A project") and readme.endswith("The end.\n")


def test_harness_command_is_written_as_typed():
    assert harness_command("/x/.venv/bin/harness run 'a b.toml' -j 2") == "harness run 'a b.toml' -j 2"
    assert harness_command("/usr/bin/python3.11 -m harness run f.toml") == "harness run f.toml"
    assert harness_command("/src/harness/__main__.py run f.toml") == "harness run f.toml"
    assert harness_command("/x/pytest/__main__.py -q") == "/x/pytest/__main__.py -q"
    assert harness_command("python script.py") == "python script.py"
    assert harness_command(None) is None
    assert clock(254.4) == "4:14" and clock(3723) == "1:02:03" and clock(None) == "-"


@pytest.mark.slow
def test_cli_publish_and_its_mistakes(published, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(published["root"] / "results"))
    runner = CliRunner()
    out = tmp_path / "pages"
    result = runner.invoke(main, ["publish", "latest:tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "tiny.md").is_file() and result.output.strip() == str(out / "tiny.md")
    result = runner.invoke(main, ["publish", "latest:nothing", "--out", str(out)])
    assert result.exit_code == 2 and "error: no runs of benchmark 'nothing'" in result.output
    (tmp_path / "R.md").write_text("no markers\n")
    result = runner.invoke(main, ["publish", "latest:tiny", "--out", str(out), "--readme", str(tmp_path / "R.md")])
    assert result.exit_code == 2
    assert "R.md: no block to fill; add the lines <!-- results:tiny:begin --> and <!-- results:tiny:end -->" in result.output
    result = runner.invoke(main, ["publish", "latest:tiny", "latest:tiny", "--out", str(out)])
    assert result.exit_code == 2 and "two runs of benchmark 'tiny'" in result.output


def test_the_estimate_table_is_the_plan_beside_the_rows(published, registry):
    """Per block: the cells the dry-run plans for the run's spec, the cells run and the sum of
    their rows' elapsed seconds; the run's wall time from env.json."""
    run = published["run"]
    lines = tables_of(published["page"])["The dry-run's estimate against this run"]
    by_block = {line[0]: line for line in lines[1:]}
    planned = api.plan(str(run.path / "spec.toml"), registry=registry)
    for block in ("ramp", "echo"):
        rows = [r for r in run.rows if r["experiment_id"] == block]
        assert by_block[block][1] == str(sum(1 for e in planned if e["cell"].experiment_id == block))
        assert by_block[block][2] == str(len(rows))
        assert by_block[block][4] == format_value(sum(r["elapsed"] for r in rows))
    assert by_block["all (cell seconds)"][2] == str(len(run.rows))
    wall = published["env"]["sessions"][0]["wall_seconds"]
    assert by_block["all (wall time, -j 1)"][4] == clock(wall)


def test_a_run_of_part_of_a_file_gets_the_plan_of_the_whole_file(published, registry):
    from types import SimpleNamespace

    from harness.results.plan_tables import recorded_file, whole_file_table

    path = published["root"] / "tiny.toml"
    run = SimpleNamespace(env={"sessions": [{"command_line": f"/v/bin/harness run {path} -j 2 -s benchmark.repetitions=2"}]})
    assert recorded_file(run) == (path, ["benchmark.repetitions=2"])
    assert recorded_file(SimpleNamespace(env={"sessions": [{"command_line": f"harness run {path} -j 2"}]})) is None
    table = whole_file_table(path, registry, jobs=(1, 2))
    assert [line[:2] for line in table.rows] == [[j, len(api.plan(str(path), jobs=j, registry=registry))]
                                                 for j in (1, 2)]


def test_a_summary_table_joins_the_headline_and_the_readme(published, tmp_path):
    """A table an experiment marks ``headline`` (N*/d^2 and N*/P, P*/N) sits in the page's headline
    block beside the thresholds, once, and --readme copies it with them."""
    from harness.plugin.tables import Table
    from harness.results.publish import headline, render_page, update_readme

    run = published["run"]
    tables = [Table("summary", ["a"], [[1.5]], ["what a is"], headline=True), Table("detail", ["b"], [[2.5]])]
    page = render_page(run, "tiny", tables, [], "harness publish latest:tiny", headline(run.thresholds))
    block = page.split(HEADLINE_BEGIN, 1)[1].split(HEADLINE_END, 1)[0]
    assert "**summary**" in block and "| 1.5 |" in block and "what a is." in block and "detail" not in block
    assert page.count("| 1.5 |") == 1 and "### detail" in page.split(HEADLINE_END, 1)[1]
    readme = tmp_path / "R.md"
    readme.write_text(README)
    update_readme(readme, "tiny", page, "docs/results/tiny.md")
    assert "**summary**" in readme.read_text() and "| 1.5 |" in readme.read_text()
