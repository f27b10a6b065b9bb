"""Benchmark-file parsing, validation, grid expansion and seeds (harness.spec)."""

import pytest
from spec_components import error_of, parse

from harness.errors import SpecError
from harness.spec import apply_override, load_spec

USES_SPEC_COMPONENTS = True  # the registry fixture: installed plugins + tests/spec_components.py


BASE = """
[benchmark]
name = "t"
seed = 7
repetitions = 2

[[experiments]]
id = "e"
experiment = "probe"
N = 10
[experiments.grid]
scale = [1.0, 2.0]
"""


def test_cells_cover_grid_and_repetitions(registry):
    spec = parse(BASE, registry)
    cells = spec.cells()
    assert len(cells) == 4
    assert [c.repetition for c in cells] == [0, 0, 1, 1]  # repetition-major
    assert {c.coords["scale"] for c in cells} == {1.0, 2.0}
    assert all(c.params["N"] == 10 and c.params["mode"] == "a" for c in cells)
    assert cells[0].components["activation"] == {"name": "lin", "params": {}}
    assert cells[0].components["architecture"] == {"name": "chain", "params": {"widths": [2], "depth": 2}}
    assert len({c.cell_id for c in cells}) == 4
    assert len({c.point_id for c in cells}) == 2


def test_range_tied_and_derived(registry):
    text = BASE.replace("N = 10\n", "").replace('scale = [1.0, 2.0]', '''i = { start = 5, stop = 25, step = 10 }
"mode, architecture.depth" = [["a", 1], ["b", 3]]
[experiments.derived]
N = "floor(sqrt(1000 * i))"
"architecture.widths" = "[N, 2 * architecture_depth]"''')
    spec = parse(text, registry)
    points = spec.experiments[0].points
    assert len(points) == 6
    p = points[-1]
    assert p["coords"]["i"] == 25 and p["params"]["N"] == 158 and p["params"]["mode"] == "b"
    assert p["components"]["architecture"]["params"] == {"widths": [158, 6], "depth": 3}


def test_slot_axis_and_log_range(registry):
    text = BASE.replace('scale = [1.0, 2.0]', 'scale = { start = 0.01, stop = 100, num = 5, scale = "log" }\n'
                        'activation = ["lin"]')
    spec = parse(text, registry)
    scales = [p["params"]["scale"] for p in spec.experiments[0].points]
    assert scales == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])


def test_seeds_stable_under_grid_extension(registry):
    small = parse(BASE, registry).cells()
    big = parse(BASE.replace("[1.0, 2.0]", "[0.5, 1.0, 2.0, 4.0]"), registry).cells()
    by_id = {c.cell_id: c for c in big}
    for cell in small:
        other = by_id[cell.cell_id]
        assert other.spawn_key == cell.spawn_key
        assert other.seed_sequence().generate_state(4).tolist() == cell.seed_sequence().generate_state(4).tolist()
    # distinct cells get distinct streams
    states = {tuple(c.seed_sequence().generate_state(2)) for c in big}
    assert len(states) == len(big)


def test_seed_by_shares_seeds_across_axis(registry):
    text = BASE.replace("N = 10", 'N = 10\nseed_by = []')
    cells = parse(text, registry).cells()
    assert cells[0].spawn_key == cells[1].spawn_key  # same repetition, different scale
    assert cells[0].spawn_key != cells[2].spawn_key  # different repetition


def test_resolved_spec_round_trips(registry):
    text = BASE.replace("N = 10\n", "").replace('scale = [1.0, 2.0]', '''i = { start = 1, stop = 3 }
[experiments.derived]
N = "10 * i"''')
    spec = parse(text, registry)
    again = parse(spec.to_toml(), registry)
    assert [c.cell_id for c in again.cells()] == [c.cell_id for c in spec.cells()]
    assert again.resolved() == spec.resolved()
    resolved = spec.resolved()["experiments"][0]
    assert resolved["architecture"] == {"name": "chain", "widths": [2], "depth": 2}
    assert resolved["scale"] == 1.0 and resolved["mode"] == "a"


def test_overrides(registry):
    spec = parse(BASE, registry, ["experiments.e.N=20", "benchmark.repetitions=1",
                                  "experiments.e.grid.scale=[3.0]", "experiments.e.architecture.depth=4",
                                  "experiments.e.mode=b"])
    cells = spec.cells()
    assert len(cells) == 1
    assert cells[0].params == {"N": 20, "scale": 3.0, "mode": "b"}
    assert cells[0].components["architecture"]["params"]["depth"] == 4


@pytest.mark.parametrize("text_change, overrides, expected", [
    (("seed = 7", "seed = -1"), (), "b.toml: benchmark.seed = -1: out of range"),
    (("seed = 7", 'seed = "x"'), (), "benchmark.seed = 'x': wrong type str"),
    (("N = 10", "N = 10\nbogus = 3"), (), "experiments.e.bogus = 3: unknown key"),
    (("N = 10", "N = 10\nscael = 3"), (), "did you mean 'scale'"),
    (('experiment = "probe"', 'experiment = "prob"'), (), "experiments[0].experiment = 'prob': unknown experiment 'prob' (did you mean 'probe'?)"),
    (("N = 10", 'N = 10\nactivation = "linn"'), (), "experiments.e.activation = 'linn': unknown activation 'linn' (did you mean 'lin'?)"),
    (("N = 10", 'N = 10\narchitecture = { name = "chain", depth = 0 }'), (), "experiments.e.architecture.depth = 0: out of range, expected an int >= 1"),
    (("N = 10", 'N = 10\nmode = "c"'), (), "experiments.e.mode = 'c': not allowed"),
    (("scale = [1.0, 2.0]", "scale = []"), (), "experiments.e.grid.scale = []: empty grid axis"),
    (("scale = [1.0, 2.0]", "scale = [1.0, -2.5]"), (), "experiments.e.grid.scale = -2.5: out of range"),
    (("scale = [1.0, 2.0]", "sacle = [1.0]"), (), "experiments.e.grid.sacle = [1.0]: 'sacle' is neither a parameter"),
    (("scale = [1.0, 2.0]", '"architecture.dpth" = [1]'), (), "grid.architecture.dpth = 1: 'chain' has no parameter 'dpth' (did you mean 'depth'"),
    (("scale = [1.0, 2.0]", '"a, b" = [[1]]'), (), "experiments.e.grid.a, b[0] = [1]: tied axes"),
    (("N = 10\n", ""), (), "experiments.e.N: missing required parameter"),
    (("[benchmark]", "[benchmrk]"), (), "b.toml: benchmrk"),
    (("N = 10", "N = 10 10"), (), "b.toml: invalid TOML"),
    ((None, None), ("experiments.x.N=3",), "--set: experiments.x.N = 3: no experiment block 'x'"),
    ((None, None), ("experiments.e.N",), "--set: experiments.e.N: expected key.path=value"),
    ((None, None), ("experiments.e.N=0",), "experiments.e.N = 0: out of range"),
])
def test_bad_input_messages(registry, text_change, overrides, expected):
    text = BASE if text_change[0] is None else BASE.replace(*text_change)
    assert expected in error_of(text, registry, overrides)


def test_derived_errors_name_the_expression(registry):
    text = BASE.replace("N = 10\n", "").replace('scale = [1.0, 2.0]', '''i = [0, 1]
[experiments.derived]
N = "10 / i"''')
    msg = error_of(text, registry)
    assert "experiments.e.derived.N = '10 / i'" in msg and "division by zero" in msg and "i=0" in msg
    msg = error_of(BASE.replace('scale = [1.0, 2.0]', 'i = [1]\n[experiments.derived]\nN = "os.system(1)"'), registry)
    assert "not allowed in an expression" in msg


def test_missing_file_and_directory(tmp_path, registry):
    with pytest.raises(SpecError, match="nope.toml: no such file"):
        load_spec(tmp_path / "nope.toml", registry=registry)
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path, registry=registry)


def test_override_slot_given_by_name_becomes_table():
    raw = {"benchmark": {}, "experiments": [{"id": "e", "experiment": "probe", "activation": "lin"}]}
    apply_override(raw, "experiments.e.activation.scale=2", "b.toml")
    assert raw["experiments"][0]["activation"] == {"name": "lin", "scale": 2}


# ---- one resolve-and-validate pass (issue 13): bounded, complete, blaming the right input

CHECKED = """
[benchmark]
name = "c"
seed = 1

[[experiments]]
id = "e"
experiment = "checked"
k = 2
[experiments.grid]
N = [4, 8]
"""


def test_duplicate_grid_values_are_refused_naming_them(registry):
    msg = error_of(BASE.replace("scale = [1.0, 2.0]", "scale = [1.0, 2.0, 1]"), registry)
    assert msg.startswith("b.toml: experiments.e.grid.scale = [1.0, 2.0, 1]: value 1 appears twice (items 0 and 2)")
    msg = error_of(BASE.replace("scale = [1.0, 2.0]", '"N, scale" = [[1, 1.0], [1, 1.0]]'), registry)
    assert "appears twice" in msg and "grid.N, scale" in msg


@pytest.mark.parametrize("axis, expected", [
    ("scale = { start = 0, stop = 1, num = 100000000 }", "grid.scale.num = 100000000: 100000000 values; at most 100000"),
    ("scale = { start = 1, stop = 2, step = 1e-9 }", "grid.scale.step = 1e-09: the range from 1 to 2 in steps of 1e-09 has about 1e+09 values"),
    ("scale = { start = 0, stop = inf, step = 1 }", "grid.scale.stop = inf: expected a finite number"),
    ("scale = { start = 1, stop = 1000 }\nx = { start = 1, stop = 1000 }\ny = { start = 1, stop = 1000 }\n"
     "[experiments.derived]\nN = \"x + y\"", "grid: 1000000000 grid points (1000 x 1000 x 1000); at most 100000"),
])
def test_grid_size_is_capped_before_anything_is_allocated(registry, axis, expected):
    import time

    t0 = time.perf_counter()
    msg = error_of(BASE.replace("scale = [1.0, 2.0]", axis), registry)
    assert time.perf_counter() - t0 < 2.0
    assert expected in msg


def test_total_cells_are_capped(registry):
    from harness.spec import MAX_CELLS

    msg = error_of(BASE.replace("repetitions = 2", f"repetitions = {MAX_CELLS}"), registry)
    assert f"at most {MAX_CELLS}" in msg


@pytest.mark.parametrize("expression, expected", [
    ("10**10**10", "more than 300 digits"),
    ("min([4]*3*10**8)", "more than 10000 items"),
    ("+".join(["1"] * 3000), "too long"),
])
def test_hostile_derived_expressions_are_refused_at_load(registry, expression, expected):
    text = BASE.replace("N = 10\n", "") + f'[experiments.derived]\nN = "{expression}"\n'
    msg = error_of(text, registry)
    assert msg.startswith("b.toml: experiments.e.derived.N = ") and expected in msg
    assert len(msg) <= 400


def test_long_values_are_cut_in_messages(registry):
    msg = error_of(BASE.replace("N = 10", "N = " + str(list(range(2000)))), registry)
    assert msg.startswith("b.toml: experiments.e.N = [0, 1, 2") and "..." in msg and len(msg) <= 400


def test_infinite_parameters_are_refused(registry):
    msg = error_of(BASE.replace("scale = [1.0, 2.0]", "scale = [1.0, inf]"), registry)
    assert "experiments.e.grid.scale = inf: not a finite number" in msg
    assert "not a finite number" in error_of(BASE.replace("N = 10", "N = 10\nscale = inf").replace(
        "[experiments.grid]\nscale = [1.0, 2.0]", ""), registry)


@pytest.mark.parametrize("name", ["..", ".", "../up", "a/b", ".hidden"])
def test_benchmark_names_outside_results_are_refused(registry, name):
    msg = error_of(BASE.replace('name = "t"', f'name = "{name}"'), registry)
    assert msg.startswith(f"b.toml: benchmark.name = {name!r}: use 1 to 100 letters")


def test_experiment_check_runs_at_every_point_and_names_the_key(registry):
    spec = parse(CHECKED, registry)
    assert [c.params["N"] for c in spec.cells()] == [4, 8]
    msg = error_of(CHECKED.replace("N = [4, 8]", "N = [4, 1]"), registry)
    assert msg == "b.toml: experiments.e.k = 2: k = 2 exceeds N = 1 (at grid point N=1)"
    msg = error_of(CHECKED.replace("k = 2", 'architecture = { name = "chain" }')
                   .replace("N = [4, 8]", "N = [4]\n\"architecture.depth\" = [2, 9]"), registry)
    assert msg.startswith("b.toml: experiments.e.grid.architecture.depth = 9: at most 5 layers (at grid point")


def test_values_from_set_are_blamed_on_set(registry):
    msg = error_of(CHECKED, registry, ["experiments.e.k=6"])
    assert msg.startswith("--set experiments.e.k: experiments.e.k = 6: k = 6 exceeds N = 4")
    msg = error_of(CHECKED, registry, ["experiments.0.grid.N=[4, 4]"])
    assert msg.startswith("--set experiments.0.grid.N: experiments.e.grid.N = [4, 4]: value 4 appears twice")
    msg = error_of(BASE, registry, ["benchmark.name=.."])
    assert msg.startswith("--set benchmark.name: benchmark.name = '..'")
    # a mistake in the file stays the file's, whatever else --set changed
    assert error_of(CHECKED.replace("N = [4, 8]", "N = [1]"), registry, ["benchmark.seed=3"]).startswith("b.toml:")


def test_a_check_can_mark_points_skipped(registry):
    spec = parse(CHECKED.replace("N = [4, 8]", "N = [4, 13]"), registry)
    skips = {c.params["N"]: c.skip for c in spec.cells()}
    assert skips == {4: None, 13: "N = 13 is skipped on purpose"}


def test_search_points_are_checked_at_both_bounds(registry):
    search = CHECKED.replace("k = 2", "k = 5").replace("[experiments.grid]\nN = [4, 8]", """[experiments.search]
axis = "N"
lower = {lower}
upper = 100
metric = "N"
below = 1""")
    assert len(parse(search.format(lower=10), registry).experiments[0].search_points) == 1
    msg = error_of(search.format(lower=2), registry)
    assert msg.startswith("b.toml: experiments.e.k = 5: k = 5 exceeds N = 2 (at grid point N=2)")
