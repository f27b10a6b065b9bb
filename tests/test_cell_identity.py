"""A cell's identity covers every input that decides its result (harness.spec.cells): the
coordinates' numbers are normalised (a grid's 2 and a search's 2.0 are one id, one seed, one row),
and seed_by is part of the identity when it keys the seeds on other values than every axis."""
from __future__ import annotations

import json

import pytest
from plugins_for_tests import write_spec

from harness import api
from harness.plugin.seeds import same_number
from harness.spec import load_spec
from harness.spec.row import TIMING_FIELDS

USES_TEST_PLUGINS = True
pytestmark = pytest.mark.usefixtures("registry")

SPEC = """
[benchmark]
name = "same"
seed = 11
repetitions = 2

[[experiments]]
id = "grid"
experiment = "echo"
[experiments.grid]
x = [2, 3]

[[experiments]]
id = "search"
experiment = "echo"
[experiments.search]
axis = "x"
lower = 1.0
upper = 8.0
start = "2.0"
metric = "u"
transform = "none"
above = 2.0
max_steps = 2
"""


def test_same_number():
    assert same_number(2.0) == 2 and isinstance(same_number(2.0), int)
    assert same_number([1.0, (2.0, 0.5)]) == [1, (2, 0.5)] and same_number({"a": -3.0}) == {"a": -3}
    assert same_number(True) is True and same_number(2.5) == 2.5 and same_number(1e300) == 1e300
    assert same_number(7) == 7 and same_number("2.0") == "2.0"


def test_a_grid_and_a_search_at_the_same_value_give_the_same_cell(tmp_path, registry):
    spec = load_spec(write_spec(tmp_path / "same.toml", SPEC), registry=registry)
    grid = [c for c in spec.cells() if c.coords["x"] == 2]
    point = spec.experiment("search").point_searches(spec.seed)[0]
    assert point.start == 2.0 and isinstance(point.start, float)  # the search's value is a float
    searched = point.make_cells(point.start)
    assert [c.coords for c in searched] == [c.coords for c in grid] == [{"x": 2}, {"x": 2}]  # 2.0 == 2
    assert [c.point_id for c in searched] != [c.point_id for c in grid]  # other blocks, other ids
    again = spec.experiment("grid").cells_at({"x": 2.0}, spec.seed)  # the grid's block at 2.0: its own cells
    assert [c.cell_id for c in again] == [c.cell_id for c in grid]
    assert [c.spawn_key for c in searched] == [c.spawn_key for c in grid]
    assert [c.params for c in searched] == [c.params for c in grid]

    run = api.run(tmp_path / "same.toml", results_dir=tmp_path / "r", progress=False, figures=False,
                  executor="inline", registry=registry)
    rows = [json.loads(line) for line in run.rows_path.read_text().splitlines()]
    at_two = {r["experiment_id"]: r for r in rows if r["coords"]["x"] == 2 and r["repetition"] == 1}
    assert set(at_two) == {"grid", "search"}
    g, s = at_two["grid"], at_two["search"]
    assert g["seed"] == s["seed"] and g["metrics"] == s["metrics"] and g["curves"] == s["curves"]
    differ = {k for k in g if g[k] != s[k]} - set(TIMING_FIELDS)
    assert differ == {"cell_id", "point_id", "experiment_id"}  # the block is part of the identity


def test_seed_by_is_part_of_the_identity(tmp_path, registry):
    base = SPEC.split("[[experiments]]\nid = \"search\"")[0]
    default = load_spec(write_spec(tmp_path / "a.toml", base), registry=registry).cells()
    keyed = load_spec(write_spec(tmp_path / "b.toml", base.replace('experiment = "echo"',
                                                                   'experiment = "echo"\nseed_by = []')),
                      registry=registry).cells()
    same = load_spec(write_spec(tmp_path / "c.toml", base.replace('experiment = "echo"',
                                                                  'experiment = "echo"\nseed_by = ["x"]')),
                     registry=registry).cells()
    assert [c.spawn_key for c in keyed] != [c.spawn_key for c in default]
    assert not {c.cell_id for c in keyed} & {c.cell_id for c in default}  # other seeds, other ids
    # seed_by naming every axis is the default: the same seeds and the same ids
    assert [(c.cell_id, c.spawn_key) for c in same] == [(c.cell_id, c.spawn_key) for c in default]


def test_numbers_written_one_way_keep_their_ids(tmp_path, registry):
    """An int axis written as ints, or a float axis as floats with fractions, keeps the ids and
    seeds it had: a cell's identity is a hash of the canonical JSON of exactly these values."""
    import hashlib

    from harness.plugin.seeds import canonical, cell_spawn_key

    spec = load_spec(write_spec(tmp_path / "a.toml", SPEC.split("[[experiments]]\nid = \"search\"")[0]
                                .replace("x = [2, 3]", "x = [2, 3.5]")), registry=registry)
    for c in spec.cells():
        written = {"x": 2} if c.coords["x"] == 2 else {"x": 3.5}
        assert c.coords == written and type(c.coords["x"]) is type(written["x"])  # kept as written
        assert c.spawn_key == cell_spawn_key(written, c.repetition)
        identity = [c.experiment_id, c.experiment, written, c.root_seed, c.params, c.components, c.versions]
        assert c.point_id == hashlib.sha256(canonical(identity).encode()).hexdigest()[:16]
