"""Benchmark files: parsing, validation and grid expansion into cells.

A benchmark file is TOML (read with :mod:`tomllib`)::

    [benchmark]
    name = "ntk_spectrum"        # run directories go to results/<name>/
    seed = 2022                  # root seed
    repetitions = 10             # default 1
    description = "..."          # optional

    [[experiments]]
    id = "fig1"                  # optional, defaults to the experiment name; unique
    experiment = "ntk_spectrum"  # an experiment component
    N = 1000                     # the experiment's own parameters, flat
    activation = "sigmoid"       # a slot: a component name ...
    architecture = { name = "fc", widths = ["d", "d"] }   # ... or a table with its parameters
    repetitions = 10             # optional, overrides the benchmark's
    seed_by = ["N", "i"]         # optional: the axes the seed depends on (default: all grid axes)

    [experiments.grid]           # Cartesian product of the axes
    N = [1000, 2000, 3000]
    i = { start = 5, stop = 955, step = 50 }      # inclusive range
    "architecture.depth" = [2, 3]                 # a key path into a slot's parameters
    "n, q" = [[100, 4], [200, 8]]                 # tied axes: vary together

    [experiments.derived]        # computed per grid point, in order (harness.plugin.expressions)
    d = "floor(sqrt(1000 * i))"

Grid and derived keys are key paths of the experiment's parameters (``N``), of a slot's
parameters (``architecture.widths``), a slot itself (``activation = ["tanh", "relu"]``), or free
variables (``i``) that a derived expression uses. Expressions see every axis and derived value
(dots in key paths become underscores: ``architecture_q``) and the experiment's scalar
parameters.

Everything is validated when the file is loaded, before any cell runs; each mistake raises a
:class:`~harness.errors.SpecError` naming the file (``--set`` for a value given there), the key
path and the value. One resolve-and-validate pass expands every block: each axis has distinct
values and at most :data:`MAX_GRID_POINTS` points are made per block (:data:`MAX_CELLS` cells in
all, repetitions included; a range's size is computed before any value is made), every derived
expression is evaluated at every point with bounded cost (:mod:`harness.plugin.expressions`), every
parameter is validated at every point, and the experiment's
:meth:`~harness.plugin.experiment.Experiment.check` runs at every resolved point (a threshold search's
at both ends of its range, and at every value it visits) and may mark a point skipped.

The package: :mod:`.model` (the data model), :mod:`.load` (text to a validated Spec),
:mod:`.overrides` (``--set``), :mod:`.validate` (the tables and blocks), :mod:`.grid` (axes,
points, derived values, slot tables).
"""
from .load import load_spec, parse_spec
from .model import (
           BENCHMARK_PARAMS,
           MAX_CELLS,
           MAX_GRID_POINTS,
           Axis,
           ExperimentSpec,
           Spec,
)
from .overrides import apply_override, parse_override_value

__all__ = ["BENCHMARK_PARAMS", "MAX_CELLS", "MAX_GRID_POINTS", "Axis", "ExperimentSpec", "Spec", "apply_override",
           "load_spec", "parse_override_value", "parse_spec"]
