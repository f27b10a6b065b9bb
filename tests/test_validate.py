"""harness.spec.validate: what a benchmark file may say, refused at load with the key at fault and
a did-you-mean: a search metric the experiment does not return, a derived key that is no
parameter, a value set both once and per point, two grid values of one component, an id too
long for its figure files; log ranges on integer axes."""
from pathlib import Path

import pytest
from spec_components import BASE, error_of, parse

from harness.plugin.manager import load_registry

USES_SPEC_COMPONENTS = True  # the registry fixture: installed plugins + tests/spec_components.py


SEARCH = BASE.replace("N = 10\n", "") + """
[experiments.search]
axis = "N"
lower = 10
upper = 100
metric = "{metric}"
below = 1
"""


def test_a_misspelt_search_metric_is_refused_with_a_suggestion(registry):
    assert parse(SEARCH.format(metric="u"), registry).experiments[0].search.metric == "u"
    msg = error_of(SEARCH.format(metric="uu"), registry)
    assert msg == ("b.toml: experiments.e.search.metric = 'uu': not a metric of 'probe' (did you mean 'u'?); "
                   "its metrics: N, u")


def test_built_in_search_metrics_are_checked():
    registry = load_registry()
    text = Path("benchmarks/daniely.toml").read_text()
    msg = error_of(text, registry, ['experiments.hinge_threshold.search.metric="train_acuracy"'])
    assert msg.startswith("--set experiments.hinge_threshold.search.metric: experiments.hinge_threshold.search."
                          "metric = 'train_acuracy': not a metric of 'two_layer_memorization' (did you mean "
                          "'train_accuracy'?)")
    spec = parse(Path("benchmarks/min_overparam.toml").read_text(), registry)  # the shipped searches load
    assert {e.search.metric for e in spec.experiments if e.search} == {"reported_loss", "final_loss"}


def test_a_derived_key_that_names_nothing_is_refused(registry):
    text = BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", 'i = [1, 2]\n[experiments.derived]\n'
                                                  'N = "10 * i"\nscael = "2 * i"')
    msg = error_of(text, registry)
    assert msg.startswith("b.toml: experiments.e.derived.scael = '2 * i': 'scael' is neither a parameter of 'probe' "
                          "(did you mean 'scale'?) nor used by another derived expression")
    # a free variable that a later expression uses is fine
    text = text.replace('scael = "2 * i"', 'k = "2 * i"\n"architecture.depth" = "k + 1"')
    assert [c.components["architecture"]["params"]["depth"] for c in parse(text, registry).cells()] == [3, 5]


@pytest.mark.parametrize("change, expected", [
    (("N = 10", "N = 10\nscale = 3.0"), "b.toml: experiments.e.scale = 3.0: also set by experiments.e.grid.scale"),
    (("N = 10", 'N = 10\nactivation = "lin"\n[experiments.architecture]\nname = "chain"\ndepth = 3'), None),
    (("scale = [1.0, 2.0]", '"architecture.depth" = [1, 2]'), None),
    (("N = 10", 'N = 10\narchitecture = { name = "chain", depth = 3 }'), None),
])
def test_a_value_set_once_and_per_point(registry, change, expected):
    text = BASE.replace(*change)
    if expected is None:
        parse(text, registry)
    else:
        assert error_of(text, registry).startswith(expected)


def test_a_slot_parameter_set_once_and_per_point(registry):
    text = BASE.replace("N = 10", 'N = 10\narchitecture = { name = "chain", depth = 3 }').replace(
        "scale = [1.0, 2.0]", '"architecture.depth" = [1, 2]')
    assert error_of(text, registry).startswith("b.toml: experiments.e.architecture.depth = 3: also set by "
                                               "experiments.e.grid.architecture.depth")
    text = BASE.replace("N = 10", 'N = 10\nactivation = "sigmoid"').replace("scale = [1.0, 2.0]", 'activation = ["lin"]')
    assert "the slot is also set by experiments.e.grid.activation" in error_of(text, registry)
    text = BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", 'i = [1]\n[experiments.derived]\nN = "i"')
    assert "N = 7: also set by experiments.e.derived.N" in error_of(text.replace('id = "e"', 'id = "e"\nN = 7'),
                                                                   registry)
    assert "N = 7: also set by experiments.e.search.axis" in error_of(
        SEARCH.format(metric="u").replace('id = "e"', 'id = "e"\nN = 7'), registry)


def test_a_default_written_out_is_not_an_overlap(registry):
    """A resolved spec.toml of an earlier version wrote every default next to the grid."""
    text = BASE.replace("N = 10", 'N = 10\nmode = "a"\narchitecture = { name = "chain", depth = 2, widths = [2] }')
    text = text.replace("scale = [1.0, 2.0]", 'mode = ["a", "b"]\n"architecture.depth" = [1, 2]')
    spec = parse(text, registry)
    assert len(spec.cells()) == 4
    again = parse(spec.to_toml(), registry)  # and a resolved spec leaves such defaults out
    assert [c.cell_id for c in again.cells()] == [c.cell_id for c in spec.cells()]
    assert "mode" not in spec.resolved()["experiments"][0]


@pytest.mark.parametrize("values", ['["lin", { name = "lin" }]', '[{ name = "chain" }, { name = "chain", depth = 2 }]'])
def test_two_grid_values_of_one_component_are_refused(registry, values):
    slot = "activation" if "lin" in values else "architecture"
    text = BASE.replace("scale = [1.0, 2.0]", f"{slot} = {values}")
    msg = error_of(text, registry)
    assert msg.startswith(f"b.toml: experiments.e.grid.{slot} = ") and "items 0 and 1" in msg
    assert "configure the same component" in msg
    assert len(parse(BASE.replace("scale = [1.0, 2.0]", '"architecture" = [{ name = "chain" }, { name = "chain", '
                                   'depth = 3 }]'), registry).cells()) == 2


def test_log_and_linear_ranges_on_an_integer_axis(registry):
    text = BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", 'N = { start = 10, stop = 1000, num = 3, '
                                                  'scale = "log" }')
    assert [c.params["N"] for c in parse(text, registry).cells()] == [10, 100, 1000]
    text = BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", "N = { start = 10, stop = 40, num = 4 }")
    assert [c.params["N"] for c in parse(text, registry).cells()] == [10, 20, 30, 40]
    msg = error_of(text.replace("num = 4", "num = 5"), registry)
    assert "grid.N = 17.5: wrong type float, expected an int" in msg


def test_an_id_too_long_for_file_names_is_refused(registry):
    assert parse(BASE.replace('id = "e"', f'id = "{"e" * 64}"'), registry).experiments[0].id == "e" * 64
    msg = error_of(BASE.replace('id = "e"', f'id = "{"e" * 500}"'), registry)
    assert msg.startswith("b.toml: experiments[0].id = 'eeee") and "expected 1 to 64 letters" in msg


def test_grid_values_beyond_the_float_range(registry):
    """Found by tests/test_fuzz_loader.py: an integer grid value of 400 digits was compared with the
    others as a float, an OverflowError."""
    text = BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", f"N = [{10 ** 400}, 3]")
    assert [c.params["N"] for c in parse(text, registry).cells()] == [10 ** 400, 3]
    msg = error_of(BASE.replace("N = 10\n", "").replace("scale = [1.0, 2.0]", f"N = [{10 ** 400}, {10 ** 400}]"),
                   registry)
    assert "appears twice (items 0 and 1)" in msg
    assert "appears twice" in error_of(BASE.replace("scale = [1.0, 2.0]", "scale = [2, 2.0]"), registry)
