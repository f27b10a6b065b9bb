"""Several levels from one threshold search, warm starts in waves, and the dry-run's plan of them
(harness.runner.search, harness.runner.search_plan): exact thresholds per level of a synthetic
experiment, shared cells, the same thresholds.csv on every executor and after a resume, the
columns of thresholds.csv, the provenance of each threshold, and the planned cells."""
from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import pytest
from plugins_for_tests import write_spec

from harness import api
from harness.errors import SpecError
from harness.results.views import show_lines
from harness.runner.execute import run_cell
from harness.runner.plan import plan_cells
from harness.runner.search import pending_cells, replay_spec, thresholds
from harness.runner.search_plan import block_paths, planned_paths, planned_rounds
from harness.spec import parse_spec

USES_TEST_PLUGINS = True  # the registry fixture (conftest.py) loads tests/plugins_for_tests.py
pytestmark = pytest.mark.usefixtures("registry")

HAVE_DASK = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))

# log10(loss) = (n - 100 k) / 10 (+ seeded noise): the level L is crossed at n = 100 k + 10 L
RAMP = """
[benchmark]
name = "ramp"
seed = 5
repetitions = {reps}

[[experiments]]
id = "r"
experiment = "ramp"
noise = {noise}

[experiments.grid]
k = {ks}

[experiments.search]
axis = "n"
lower = 1
upper = 10000
start = "50 * k"
metric = "loss"
tolerance = {tolerance}
below = {levels}
{extra}
"""


def ramp(levels="[0, -1, -3]", reps=1, noise=0.0, ks="[1.0, 2.0, 3.5]", tolerance=0.001, extra=""):
    return RAMP.format(levels=levels, reps=reps, noise=noise, ks=ks, tolerance=tolerance, extra=extra)


def run_search(spec, registry):
    """Drive the search in-process, round by round (as a run does); returns the rows by cell id
    and how often each cell ran."""
    rows, runs = {}, {}
    while True:
        todo = pending_cells(spec, rows.values())
        if not todo:
            return rows, runs
        for cell in todo:
            runs[cell.cell_id] = runs.get(cell.cell_id, 0) + 1
            row = run_cell(cell, registry)
            rows[row["cell_id"]] = row


def read_csv(path):
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


@pytest.mark.parametrize("warm", [False, True])
def test_one_threshold_per_level_at_every_point(registry, warm):
    spec = parse_spec(ramp(extra="warm_start = true" if warm else ""), "ramp.toml", registry=registry)
    rows, _ = run_search(spec, registry)
    lines = thresholds(spec, rows.values())
    assert [(t["k"], t["level"]) for t in lines] == [(k, level) for k in (1.0, 2.0, 3.5) for level in (0, -1, -3)]
    for t in lines:
        exact = 100 * t["k"] + 10 * t["level"]
        assert t["status"] == "found"
        assert (t["lower"], t["upper"]) == (round(exact), round(exact) + 1)  # adjacent integers
        assert t["threshold"] == pytest.approx(exact, rel=1e-12)  # the crossing is at lower exactly
        assert t["condition"] == f"mean log10(loss) <= {t['level']:g} holds at low n"


def test_levels_share_cells_and_no_cell_runs_twice(registry):
    spec = parse_spec(ramp(reps=2), "ramp.toml", registry=registry)
    rows, runs = run_search(spec, registry)
    assert set(runs.values()) == {1}
    lines = thresholds(spec, rows.values())
    for k in (1.0, 2.0, 3.5):
        mine = [t for t in lines if t["k"] == k]
        # every level of a point reports the same cells: they were evaluated once, for all levels
        assert len({t["n_cells"] for t in mine}) == 1 and len({t["evaluations"] for t in mine}) == 1
        values = mine[0]["evaluations"].split(";")
        assert mine[0]["n_cells"] == 2 * len(values) == sum(1 for r in rows.values() if r["params"]["k"] == k)
        # each level's bracket is made of values the point evaluated
        for t in mine:
            assert {f"{t['lower']}", f"{t['upper']}"} <= {v.split(":")[0] for v in values}
    separate = 0
    for level in (0, -1, -3):
        one = parse_spec(ramp(levels=str(level), reps=2), "ramp.toml", registry=registry)
        separate += len(run_search(one, registry)[0])
    assert len(rows) < separate  # three levels searched together cost fewer cells than apart


def test_rounds_evaluate_every_levels_next_value_side_by_side(registry):
    spec = parse_spec(ramp(ks="[1.0]"), "ramp.toml", registry=registry)
    assert [c.coords["n"] for c in pending_cells(spec, [])] == [50]  # the start: low side of all
    rows, _ = run_search(spec, registry)
    # start 50 is below every threshold (70, 90, 100): one step up to 100, where level 0 holds
    # (log10 loss = 0) and -1, -3 fail: level 0 steps on to 200, the others bisect [50, 100]
    first = {r["params"]["n"] for r in rows.values()}
    assert {50, 100, 200, 71} <= first
    lines = thresholds(spec, rows.values())
    assert [t["threshold"] for t in lines] == [pytest.approx(100), pytest.approx(90), pytest.approx(70)]


def test_warm_starts_cost_fewer_cells(registry):
    ks = "[1.0, 1.1, 1.2, 1.3, 1.4, 1.5]"
    cold = parse_spec(ramp(ks=ks, tolerance=0.02), "ramp.toml", registry=registry)
    warm = parse_spec(ramp(ks=ks, tolerance=0.02, extra="warm_start = true\nwave = 2"), "ramp.toml",
                      registry=registry)
    cold_rows, warm_rows = run_search(cold, registry)[0], run_search(warm, registry)[0]
    by_k = {}
    for t in thresholds(warm, warm_rows.values()):
        by_k.setdefault(t["k"], []).append(t)
        assert t["status"] == "found" and t["upper"] / t["lower"] <= 1.02
        assert t["lower"] <= 100 * t["k"] + 10 * t["level"] <= t["upper"]
    outcomes = [o for _, o in replay_spec(warm, warm_rows.values())]
    assert [bool(o.prior) for o in outcomes] == [False, False, True, True, True, True]  # waves of 2
    # the third point is predicted from the first two: start x mean ratio threshold / start
    ratio = math.exp(sum(math.log((100 * k + 10 * 0) / (50 * k)) for k in (1.0, 1.1)) / 2)
    assert outcomes[2].prior[0.0] == pytest.approx(50 * 1.2 * ratio)
    warm_values = [len(ts[0]["evaluations"].split(";")) for ts in by_k.values()]
    assert max(warm_values[2:]) < min(warm_values[:2])  # warm points need fewer values than cold ones
    assert len(warm_rows) < len(cold_rows)


def test_a_wave_waits_for_the_earlier_ones(registry):
    spec = parse_spec(ramp(extra="warm_start = true"), "ramp.toml", registry=registry)
    first = pending_cells(spec, [])
    assert {c.coords["k"] for c in first} == {1.0}  # only the first wave starts
    assert [t["status"] for t in thresholds(spec, [])] == ["incomplete"] * 9


def test_thresholds_csv_columns(tmp_path, registry):
    one = api.run(write_spec(tmp_path / "one.toml", ramp(levels="0", reps=2, noise=0.2)),
                  results_dir=tmp_path / "one", progress=False, figures=False)
    header = (one.path / "thresholds.csv").read_text().splitlines()[0].split(",")
    assert header == ["experiment_id", "k", "level", "axis", "threshold", "lower", "upper", "n_cells",
                      "ci_low", "ci_high", "status", "condition", "evaluations", "early_stop_fraction",
                      "median_stop_epoch"]
    three = api.run(write_spec(tmp_path / "three.toml", ramp(reps=2, noise=0.2)),
                    results_dir=tmp_path / "three", progress=False, figures=True)
    lines = read_csv(three.path / "thresholds.csv")
    assert lines[0].keys() == dict.fromkeys(header).keys()
    assert [(t["k"], t["level"]) for t in lines] == [(k, lv) for k in ("1.0", "2.0", "3.5")
                                                       for lv in ("0.0", "-1.0", "-3.0")]
    assert all(t["status"] == "found" and float(t["ci_low"]) <= float(t["ci_high"]) for t in lines)
    run = api.load_run(three.path)
    assert [t["level"] for t in run.thresholds] == [0.0, -1.0, -3.0] * 3
    assert (three.path / "figures" / "r-thresholds.png").exists()
    shown = [text for text, _ in show_lines(three.path, width=0)]
    assert "r: threshold search (mean log10(loss) <= LEVEL holds at low n, LEVEL = 0, -1, -3; " \
           "thresholds.csv)" in shown
    table = shown[shown.index(next(s for s in shown if s.startswith("r: threshold search"))) + 1]
    header, *table_lines = table.splitlines()
    assert header.split() == ["k", "level", "axis", "threshold", "lower", "upper", "n_cells", "ci_low", "ci_high",
                              "status", "early_stop_fraction", "median_stop_epoch"]
    assert [line.split()[:2] for line in table_lines] == [[k, lv] for k in ("1", "2", "3.5") for lv in ("0", "-1", "-3")]
    report = (three.path / "report.html").read_text()
    answer = report[report.index('id="answer"'):report.index('id="figures"')]  # the answer comes first
    assert "<th>level</th>" in answer and "<th>early stops at the bracket</th>" in answer


def test_each_threshold_says_how_its_runs_stopped(registry):
    # the ramp "stops early" at n <= 100 k (after n epochs): the bracket of level 0 is [100 k, 100 k + 1]
    spec = parse_spec(ramp(ks="[1.0]", reps=2), "ramp.toml", registry=registry)
    lines = thresholds(spec, run_search(spec, registry)[0].values())
    top, *others = lines
    assert (top["lower"], top["upper"]) == (100, 101)
    assert top["early_stop_fraction"] == 0.5 and top["median_stop_epoch"] == 100.5
    for t in others:  # the lower levels' brackets lie below 100: every run there stopped early
        assert t["early_stop_fraction"] == 1.0 and t["median_stop_epoch"] == pytest.approx(t["lower"] + 0.5)


def _same_thresholds(*paths):
    tables = [read_csv(Path(p) / "thresholds.csv") for p in paths]
    assert all(t == tables[0] for t in tables[1:])
    return tables[0]


def test_serial_two_jobs_dask_and_a_resume_give_the_same_thresholds(tmp_path, registry):
    text = ramp(reps=3, noise=0.3, ks="[1.0, 1.5, 2.0, 2.5]", tolerance=0.05, extra="warm_start = true\nwave = 2")
    spec = write_spec(tmp_path / "ramp.toml", text)
    serial = api.run(spec, results_dir=tmp_path / "serial", progress=False, figures=False)
    jobs = api.run(spec, jobs=2, results_dir=tmp_path / "jobs", progress=False, figures=False)
    runs = [serial.path, jobs.path]
    if HAVE_DASK:
        dask = api.run(spec, jobs=2, executor="dask", results_dir=tmp_path / "dask", progress=False, figures=False)
        runs.append(dask.path)
    # a run interrupted after 40% of its rows, resumed
    partial = api.run(spec, results_dir=tmp_path / "partial", progress=False, figures=False)
    rows_path = partial.path / "rows.jsonl"
    lines = rows_path.read_text().splitlines(keepends=True)
    rows_path.write_text("".join(lines[: len(lines) * 2 // 5]))
    (partial.path / "thresholds.csv").unlink()
    resumed = api.run(resume=partial.path, progress=False, figures=False)
    runs.append(resumed.path)
    table = _same_thresholds(*runs)
    assert len(table) == 12 and {t["status"] for t in table} == {"found"}
    assert len(rows_path.read_text().splitlines()) == len(lines)  # the resume ran only what was missing


@pytest.mark.parametrize("value, words", [
    ("[]", "empty list"),
    ('[-3, "x"]', "'x' is not a finite number"),
    ("[-3, -3.0]", "given twice"),
    ("[true]", "True is not a finite number"),
])
def test_bad_level_lists_are_refused(registry, value, words):
    with pytest.raises(SpecError) as err:
        parse_spec(ramp(levels=value), "ramp.toml", registry=registry)
    assert err.value.key == "experiments.r.search.below" and words in str(err.value)
    assert str(err.value).startswith("ramp.toml: ")


def test_waves_need_warm_starts_and_a_positive_size(registry):
    with pytest.raises(SpecError) as err:
        parse_spec(ramp(extra="wave = 2"), "ramp.toml", registry=registry)
    assert err.value.key == "experiments.r.search.wave" and "warm_start = true" in str(err.value)
    with pytest.raises(SpecError) as err:
        parse_spec(ramp(extra="warm_start = true\nwave = 0"), "ramp.toml", registry=registry)
    assert err.value.key == "experiments.r.search.wave"


def test_levels_and_waves_round_trip(registry):
    spec = parse_spec(ramp(extra="warm_start = true\nwave = 2"), "ramp.toml", registry=registry)
    again = parse_spec(spec.to_toml(), "spec.toml", registry=registry)
    assert again.experiments[0].search == spec.experiments[0].search
    assert again.experiments[0].search.levels == (0.0, -1.0, -3.0)
    one = parse_spec(ramp(levels="-3"), "ramp.toml", registry=registry)
    assert one.experiments[0].search.to_table()["below"] == -3.0  # as files made before lists have it


# ----------------------------------------------------------------------------------------------
# the dry-run's plan


def test_the_plan_follows_the_search_when_the_model_holds(registry):
    """One cold level: the plan's model puts the threshold at start; a ramp whose threshold is
    there visits exactly the planned values."""
    text = ramp(levels="0", ks="[1.0, 2.0]").replace('start = "50 * k"', 'start = "100 * k"')
    spec = parse_spec(text, "ramp.toml", registry=registry)
    rows, _ = run_search(spec, registry)
    for point, path in planned_paths(spec):
        visited = sorted(r["params"]["n"] for r in rows.values() if r["params"]["k"] == point.coords["k"])
        assert sorted(path) == visited and path[:2] == [point.start, 2 * point.start]


def test_the_plan_costs_every_level_and_warm_start(registry):
    ks = "[1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]"
    single = parse_spec(ramp(levels="0", reps=2, ks=ks, tolerance=0.05), "ramp.toml", registry=registry)
    multi = parse_spec(ramp(reps=2, ks=ks, tolerance=0.05), "ramp.toml", registry=registry)
    warm = parse_spec(ramp(reps=2, ks=ks, tolerance=0.05, extra="warm_start = true"), "ramp.toml",
                      registry=registry)
    counts = {}
    for name, spec in (("single", single), ("multi", multi), ("warm", warm)):
        spec = parse_spec(spec.to_toml().replace('"50 * k"', '"5000 * k"').replace("10000", "1000000"), "big.toml",
                          registry=registry)  # values far from 1: no rounding to integers in the way
        planned = plan_cells(spec, registry)
        paths = [path for _, path in planned_paths(spec)]
        assert all(len(set(p)) == len(p) for p in paths)  # no value twice at a point
        assert len(planned) == 2 * sum(len(p) for p in paths)  # every repetition of every value
        assert all(e["searched"] and e["seconds"] is None for e in planned)  # the ramp gives no estimate
        counts[name] = [len(p) for p in paths]
        rounds = {e["round"] for e in planned}
        assert rounds == set(range(len(rounds)))  # rounds follow one another, from the run's first
    # with warm starts, a wave starts in the round after the earlier one's last
    (_, first), (_, second) = planned_rounds(warm)[:2]
    assert [r for r, _ in second][0] == first[-1][0] + 1
    assert sum(counts["multi"]) > sum(counts["single"])  # three levels cost more than one ...
    assert sum(counts["multi"]) < 3 * sum(counts["single"])  # ... and less than three searches
    assert counts["warm"][0] == counts["multi"][0]  # the first point starts cold
    # later points start from the earlier ones' thresholds: the model puts each level 0.5 or 1.5
    # tolerance units from its prediction, i.e. two or three values a level
    assert max(counts["warm"][1:]) <= 3 * 3 and sum(counts["warm"][1:]) < sum(counts["multi"][1:])


def test_planned_paths_end_with_every_level_found():
    from harness.runner.search import PointWalk
    from harness.runner.search_plan import model_aggregate, model_thresholds
    from harness.spec.search import PointSearch, Search

    for condition, holds in (("below", "low"), ("above", "high"), ("below", "high"), ("above", "low")):
        s = Search(axis="N", lower=10, upper=1e6, metric="m", levels=(-3.0, -4.0, -6.0), condition=condition,
                   holds=holds, integer=True, tolerance=0.05, warm_start=True, wave=1)
        points = [PointSearch("b", s, {"i": i}, 100 * (i + 1) ** 2, None, index=i) for i in range(6)]
        paths = block_paths(points)
        assert len(paths) == 6 and all(paths)
        truth = model_thresholds(s, points[0], {})
        ordered = sorted(truth, key=truth.get)
        aggregates = [model_aggregate(s, truth, truth[level]) for level in ordered]
        assert aggregates == pytest.approx(ordered)  # the model crosses each level at its threshold
        walk = PointWalk(s, points[0].start)
        while walk.todo:
            walk.record({x: model_aggregate(s, truth, x) for x in walk.todo})
        assert [lv.status for lv in walk.levels] == ["found"] * 3
        for lv in walk.levels:
            assert lv.lower <= truth[lv.level] <= lv.upper


def test_the_generic_figure_draws_one_line_and_band_per_level(registry):
    from matplotlib.collections import PolyCollection

    from harness.plugin.context import FigureContext
    from harness.plugin.figures import threshold_figure

    spec = parse_spec(ramp(reps=3, noise=0.2), "ramp.toml", registry=registry)
    lines = thresholds(spec, run_search(spec, registry)[0].values())
    ctx = FigureContext(benchmark="ramp", experiment_id="r", experiment="ramp", grid={"k": [1.0, 2.0, 3.5]},
                        repetitions=3, search=spec.experiments[0].search.to_table(), thresholds=lines)
    fig = threshold_figure(ctx)
    ax = fig.axes[0]
    assert len(ax.containers) == 3 and len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
    for container, level in zip(ax.containers, (0, -1, -3)):
        line = container.lines[0]
        assert container.get_label() == f"threshold (level={level})"
        want = [t["threshold"] for t in lines if t["level"] == level]
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), want, rtol=1e-12)
        np.testing.assert_allclose(want, [100 * k + 10 * level for k in (1.0, 2.0, 3.5)], rtol=0.05)
    assert "below 0, -1, -3" in fig.texts[0].get_text()
