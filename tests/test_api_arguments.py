"""The Python API checks its arguments (harness.api): a wrong type is a UserError naming the
argument and what it takes, before anything is read or written, never a bare TypeError and never
a string read character by character."""
from __future__ import annotations

import pytest

import harness.api as api
from harness.errors import UserError

SPEC = "benchmarks/ntk_spectrum_small.toml"


@pytest.mark.parametrize("call, fragment", [
    (lambda d: api.run(SPEC, overrides="benchmark.seed=3", results_dir=d),
     "overrides are a list of 'key.path=value' strings"),
    (lambda d: api.run(SPEC, plugins="harness_softplus", results_dir=d),
     "plugins must be a list of modules, module names or plugin objects, got 'harness_softplus'"),
    (lambda d: api.run(SPEC, plugins=[42], results_dir=d), "plugin 42: expected a module, a module name"),
    (lambda d: api.run(SPEC, force="no", results_dir=d), "force must be True or False, got 'no'"),
    (lambda d: api.run(SPEC, retry_failed=1, results_dir=d), "retry_failed must be True or False"),
    (lambda d: api.run(SPEC, jobs="2", results_dir=d), "jobs must be a whole number >= 1, got '2'"),
    (lambda d: api.run(SPEC, timeout="3", results_dir=d), "--timeout '3': must be a finite number"),
    (lambda d: api.run(5, results_dir=d), "5: expected a benchmark file path, got int"),
    (lambda d: api.plan(5), "5: expected a benchmark file path, got int"),
    (lambda d: api.load_run(None), "a run directory is a path (or latest, latest:BENCHMARK), got None"),
    (lambda d: api.plot(3.5), "a run directory is a path"),
])
def test_bad_arguments_are_user_errors(tmp_path, call, fragment):
    with pytest.raises(UserError) as info:
        call(tmp_path / "results")
    assert fragment in str(info.value)
    assert not (tmp_path / "results").exists()
