"""harness.spec.overrides: a --set mistake is blamed on the --set that made it (never on the file or
another key), and every block and axis can be addressed (ids with dots, tied axes)."""

import pytest
from spec_components import BASE
from spec_components import error_of as text_error_of

from harness.spec import parse_spec

USES_SPEC_COMPONENTS = True  # the registry fixture: installed plugins + tests/spec_components.py


def error_of(overrides, registry, text=BASE) -> str:
    """The error of ``text`` loaded with the ``--set`` ``overrides``."""
    return text_error_of(text, registry, overrides)


@pytest.mark.parametrize("override, expected", [
    ("benchmark.repetitions=10**9", "--set benchmark.repetitions: benchmark.repetitions = '10**9': wrong type str, "
     "expected an int in [1, 1000000] (the value '10**9' is not a TOML value, so it was read as a string"),
    ("benchmark.repetitions=1000000000", "--set benchmark.repetitions: benchmark.repetitions = 1000000000: out of range"),
    ("search.lower=8", "--set: search.lower = 8: unknown top-level key 'search'; a key path starts with benchmark. "
     "or experiments.<id>. (e.g. experiments.<id>.search.lower)"),
    ("activation.name.x=3", "--set: activation.name.x = 3: unknown top-level key 'activation'"),
    ("experiments.e.activation.name.x=3", "--set experiments.e.activation.name.x: experiments.e.activation.name"),
    ("experiments.e.search.lower=8", "--set experiments.e.search.lower: experiments.e.search.axis: missing"),
    ("benchmarks.seed=3", "unknown top-level key 'benchmarks' (did you mean 'benchmark'?)"),
])
def test_set_mistakes_are_blamed_on_the_set(registry, override, expected):
    assert expected in error_of([override], registry)


def test_a_key_inside_a_value_that_is_not_a_table(registry):
    text = BASE.replace("N = 10", 'N = 10\nactivation = { name = "lin" }')
    assert ("--set: experiments.e.activation.name.x = 3: experiments.e.activation.name is not a table (it is 'lin')"
            in error_of(["experiments.e.activation.name.x=3"], registry, text))


def test_an_id_with_dots_is_addressed_as_written(registry):
    text = BASE.replace('id = "e"', 'id = "a.b"') + '\n[[experiments]]\nid = "a"\nexperiment = "probe"\nN = 4\n'
    spec = parse_spec(text, "b.toml", ["experiments.a.b.N=20", "experiments.a.N=5"], registry)
    assert spec.experiment("a.b").params["N"] == 20 and spec.experiment("a").params["N"] == 5
    assert "--set experiments.a.b.N: experiments.a.b.N = 0: out of range" in error_of(["experiments.a.b.N=0"],
                                                                                      registry, text)


def test_tied_axes_are_addressed_however_spaced(registry):
    text = BASE.replace("scale = [1.0, 2.0]", '"N, scale" = [[1, 1.0], [2, 2.0]]').replace("N = 10\n", "")
    for label in ("N, scale", "N,scale", " N ,  scale"):
        spec = parse_spec(text, "b.toml", [f"experiments.e.grid.{label}=[[5, 3.0]]"], registry)
        assert [(c.params["N"], c.params["scale"]) for c in spec.cells()] == [(5, 3.0)]
