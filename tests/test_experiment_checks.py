"""Cross-parameter constraints of the built-in experiments are refused when the benchmark file is
loaded (a SpecError naming the key, exit 2), not when a cell runs (exit 3)."""
from __future__ import annotations

import pytest

from harness.errors import SpecError
from harness.plugin.manager import load_registry
from harness.spec import parse_spec

REGISTRY = load_registry()

HEAD = """
[benchmark]
name = "t"
seed = 1

[[experiments]]
id = "e"
"""

CASES = [
    ('experiment = "embedding_generalization"\nH0 = 5\nH = 3\n',
     "experiments.e.H = 3: H = 3 is smaller than H0 = 5: an embedding needs H >= H0"),
    ('experiment = "embedding_critical_point"\nH0 = 2\nH = 2\n',
     "experiments.e.H = 2: H = 2 is not larger than H0 = 2: the embedding needs H > H0"),
    ('experiment = "two_layer_memorization"\nm = 50\nd = 5\n'
     'architecture = { name = "two_layer", q = 7 }\ninitializer = "daniely_symmetric"\n',
     "experiments.e.architecture.q = 7: daniely_symmetric needs an even number of hidden units q, got q = 7"),
    ('experiment = "capacity"\nmodel = "deep_gd_paper"\ngd_C = "-N"\n',
     "experiments.e.gd_C = '-N': '-N' = -400 at N = 400, d = 10, n = "),
    ('experiment = "capacity"\nmodel = "two_layer"\ngd_gamma = "0"\n',
     "experiments.e.gd_gamma = '0': '0' = 0 at N = 400, d = 10"),
]


@pytest.mark.parametrize("block, expected", CASES)
def test_constraints_are_refused_at_load(block, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(HEAD + block, "b.toml", (), REGISTRY)
    assert str(info.value).startswith(f"b.toml: {expected}"), str(info.value)


@pytest.mark.parametrize("block", [
    'experiment = "embedding_generalization"\nH0 = 5\nH = 5\n',
    'experiment = "embedding_critical_point"\nH0 = 2\nH = 3\n',
    'experiment = "two_layer_memorization"\nm = 50\nd = 5\narchitecture = { name = "two_layer", q = 8 }\n'
    'initializer = "daniely_symmetric"\n',
    'experiment = "two_layer_memorization"\nm = 50\nd = 5\narchitecture = { name = "two_layer", q = 7 }\n'
    'initializer = "lecun"\n',
    'experiment = "capacity"\nmodel = "deep_gd_paper"\ngd_C = "N"\ngd_gamma = "2"\n',
    'experiment = "capacity"\nmodel = "two_layer"\ntwo_layer_lr = 0.1\ngd_gamma = "0"\n',  # gamma unused
])
def test_valid_points_load(block):
    assert len(parse_spec(HEAD + block, "b.toml", (), REGISTRY).cells()) == 1
