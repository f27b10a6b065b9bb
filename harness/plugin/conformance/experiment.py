"""Experiment checks: the ``example`` cell run twice with the same seed gives identical, flat
results (timings apart).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from harness.plugin.conformance.core import SEED, TIMING_KEY, Skip, _instance, _same, check
from harness.plugin.context import CellContext
from harness.plugin.registry import Registry

_SCALARS = (type(None), bool, int, float, str, np.bool_, np.integer, np.floating)


_NUMBERS = (int, float, np.integer, np.floating)


def _experiment_cell(cls, registry: Registry) -> tuple[Any, CellContext]:
    example = dict(cls.example or {})
    if not example:
        raise Skip("the experiment has no example cell")
    experiment = _instance(cls, example.get("params", {}))
    components = {}
    chosen = example.get("components", {})
    unknown = set(chosen) - set(cls.slots)
    assert not unknown, f"example names unknown slot(s) {sorted(unknown)}; slots: {sorted(cls.slots)}"
    for slot, (kind, default) in cls.slots.items():
        spec = chosen.get(slot, {})
        name = spec.get("name", default)
        if name is None:
            continue
        components[slot] = registry.create(kind, name, spec.get("params", {}))
    cell = CellContext(components=components, seed=np.random.SeedSequence(SEED, spawn_key=(60,)),
                       coords=dict(example.get("params", {})), registry=registry)
    for component in [*components.values(), experiment]:
        component.bind(cell)
    return experiment, cell


@check("experiment", "example cell", args=lambda s: (s.cls, s.registry))
def _experiment_example(cls, registry: Registry) -> str:
    runs, seconds = [], []
    for _ in range(2):
        experiment, cell = _experiment_cell(cls, registry)
        start = time.perf_counter()
        runs.append(experiment.run(cell))
        seconds.append(time.perf_counter() - start)
    first, second = runs
    assert isinstance(first, dict), f"run returned {type(first).__name__}, expected a dict"
    from harness.plugin.experiment import is_legacy_timing

    for run in runs:
        timings = run.pop("timings", {})
        assert isinstance(timings, dict) and all(isinstance(v, _NUMBERS) for v in timings.values()), \
            "result 'timings' (reserved) must be a dict of seconds"
        resolved = run.get("resolved", {})
        assert isinstance(resolved, dict), "result 'resolved' (reserved) must be a dict of key path -> value"
    resolved = first.pop("resolved", None), second.pop("resolved", None)
    assert resolved[0] == resolved[1], f"two runs with the same seed resolved different values: {resolved}"
    clocks = [k for k in first if is_legacy_timing(k)]
    assert not clocks, (f"result {clocks[0]!r} looks like a wall-clock time: return timings under the reserved "
                        "key 'timings' (they are kept out of the metrics)")
    for key, value in first.items():
        assert isinstance(key, str), f"result key {key!r} is not a string"
        if isinstance(value, list):
            assert all(isinstance(v, _NUMBERS) and not isinstance(v, bool) for v in value), \
                f"result {key!r} is a list but not a list of numbers (a curve)"
        else:
            assert isinstance(value, _SCALARS), \
                f"result {key!r} is a {type(value).__name__}: results must be scalars or lists of numbers"
    assert isinstance(second, dict) and second.keys() == first.keys(), \
        f"two runs returned different keys: {sorted(first)} vs {sorted(second)}"
    differ = [k for k in first if not TIMING_KEY.search(k) and not _same(first[k], second[k])]
    assert not differ, f"two runs with the same seed differ in {differ}"
    return f"{len(first)} result(s), identical over two runs ({max(seconds):.2f} s per run)"


@check("experiment", "declared metrics", args=lambda s: (s.cls, s.registry))
def _experiment_metrics(cls, registry: Registry) -> str:
    """The example cell's metrics (its scalar results, nested dicts flattened with dots) are among
    those the experiment declares (:meth:`harness.plugin.experiment.Experiment.metric_names`)."""
    example = dict(cls.example or {})
    params = {p.name: p.default for p in cls.params if not p.required}
    params.update(example.get("params", {}))
    components = {slot: {"name": (example.get("components", {}).get(slot) or {}).get("name", default),
                         "params": (example.get("components", {}).get(slot) or {}).get("params", {})}
                  for slot, (_, default) in cls.slots.items()}
    declared = cls.metric_names(params, components)
    if declared is None:
        raise Skip("the experiment declares no metrics")
    experiment, cell = _experiment_cell(cls, registry)
    result = dict(experiment.run(cell))
    result.pop("timings", None)
    result.pop("resolved", None)
    metrics: list[str] = []

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
        elif not isinstance(value, (list, tuple, np.ndarray)) or np.ndim(value) == 0:
            metrics.append(prefix[:-1])

    for key, value in result.items():
        visit(f"{key}.", value)
    from harness.plugin.experiment import declares_metric

    undeclared = sorted(m for m in metrics if not declares_metric(declared, m))
    assert not undeclared, f"metrics {undeclared} are not among the declared metric_names: add them to metrics"
    return f"{len(metrics)} metric(s), all declared"
