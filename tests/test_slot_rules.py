"""harness.spec.slot_rules: an explicit optimizer lr wins over the memorisation experiments'
default lr_rule, both explicit are refused naming both, and rows, group labels and the report
show the lr that ran; spec.toml keeps what was set, so a run loads back to the same cells."""
from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import SpecError
from harness.plugin.manager import load_registry
from harness.spec import parse_spec

REGISTRY = load_registry()

BLOCK = """
[benchmark]
name = "lr"
seed = 1
repetitions = 1

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 20
window = 0
architecture = {{ name = "fc", widths = [4, 4] }}
{extra}
[experiments.grid]
N = [16, 64]
d = [3]
{grid}
"""


def spec_of(extra="", grid=""):
    return parse_spec(BLOCK.format(extra=extra, grid=grid), "lr.toml", registry=REGISTRY)


def described(spec):
    return [(c.params["lr_rule"], c.components["optimizer"]["params"].get("lr")) for c in spec.cells()]


def test_an_explicit_optimizer_lr_wins_over_the_default_rule():
    spec = spec_of('optimizer = { name = "adam", lr = 0.0007 }')
    assert described(spec) == [("", 0.0007), ("", 0.0007)]


def test_without_an_explicit_lr_the_rule_applies_and_no_default_lr_is_recorded():
    spec = spec_of('optimizer = { name = "adam" }')
    assert described(spec) == [("1/(10*sqrt(N))", None), ("1/(10*sqrt(N))", None)]
    spec = spec_of('optimizer = { name = "adam" }\nlr_rule = "1/N"')
    assert described(spec) == [("1/N", None), ("1/N", None)]
    spec = spec_of('lr_rule = ""')  # no rule: the optimizer's own (default) lr runs, and is recorded
    assert described(spec) == [("", 0.001), ("", 0.001)]


def test_an_explicit_lr_with_an_explicit_rule_is_refused_naming_both():
    for extra, grid in (('optimizer = { name = "adam", lr = 0.0007 }\nlr_rule = "1/N"', ""),
                        ('lr_rule = "1/N"', '"optimizer.lr" = [0.001, 0.01]'),
                        ("", 'lr_rule = ["1/N"]\noptimizer = [{ name = "sgd", lr = 0.1 }]')):
        with pytest.raises(SpecError) as info:
            spec_of(extra, grid)
        text = str(info.value)
        assert "lr.toml" in text and "lr_rule" in text and "optimizer.lr" in text and "both set" in text, text
    # an explicit empty rule says "the optimizer's lr": no conflict
    assert described(spec_of('optimizer = { name = "adam", lr = 0.0007 }\nlr_rule = ""'))[0] == ("", 0.0007)


def test_per_grid_point_and_through_spec_toml():
    grid = 'optimizer = [{ name = "adam", lr = 0.0007 }, { name = "adam" }, "sgd"]'
    spec = spec_of("", grid)
    assert described(spec) == [("", 0.0007), ("1/(10*sqrt(N))", None), ("1/(10*sqrt(N))", None)] * 2
    for extra, grid in (('optimizer = { name = "adam", lr = 0.0007 }', ""), ('optimizer = { name = "adam" }', ""),
                        ('lr_rule = ""', ""), ("", grid)):
        spec = spec_of(extra, grid)
        again = parse_spec(spec.to_toml(), "spec.toml", registry=REGISTRY)
        assert [c.describe() for c in again.cells()] == [c.describe() for c in spec.cells()]
        written = spec.to_toml()
        if extra == 'optimizer = { name = "adam" }':
            assert "lr_rule" not in written and "lr = " not in written.split("[experiments.grid]")[0]


def test_refusal_from_the_command_line(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text(BLOCK.format(extra='optimizer = { name = "adam", lr = 0.0007 }\nlr_rule = "1/N"', grid=""))
    result = CliRunner().invoke(main, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error:") and "experiments.mem.lr_rule" in result.output
    assert "experiments.mem.optimizer.lr (= 0.0007)" in result.output


@pytest.mark.slow
def test_rows_labels_and_report_show_the_lr_that_ran(tmp_path):
    from harness import api
    from harness.results.compare import compare

    path = tmp_path / "lr.toml"
    path.write_text(BLOCK.format(extra="", grid='optimizer = [{ name = "adam", lr = 0.0007 }, { name = "adam" }]'))
    run_dir = api.run(str(path), results_dir=tmp_path / "results", progress=False, executor="inline")
    rows = run_dir.read_rows()
    for r in rows:
        ran = 0.0007 if r["coords"]["optimizer"].get("lr") else 1 / (10 * math.sqrt(r["coords"]["N"]))
        assert r["status"] == "ok" and r["metrics"]["lr"] == pytest.approx(ran)
        assert r["components"]["optimizer"]["params"]["lr"] == pytest.approx(ran)
    groups = compare([("run", rows)], metrics=["final_loss"], by="optimizer.lr")[0].groups
    assert groups == ["0.0007", "0.025", "0.0125"]
    by_optimizer = compare([("run", rows)], metrics=["final_loss"], by="optimizer")[0].groups
    assert by_optimizer == ["adam(lr=0.0007)", "adam"]
    html = (run_dir.path / "report.html").read_text()
    assert "adam(lr=0.0007)" in html and "0.025" in html
