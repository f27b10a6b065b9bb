"""harness.results.compare_format and the readers' side of compare: blocks kept apart (-e),
short labels, paired ratios, constant metrics left out, tables that fit the width."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from harness.results.compare import compare
from harness.results.compare_format import format_comparisons, left_out_note, long_parts, table_parts

ARCHS = [{"name": "fc", "widths": ["d", "d"]}, {"name": "fc", "widths": ["d", "d"], "bias": True},
         {"name": "residual", "width": "d", "blocks": 1}, {"name": "residual", "width": "d", "blocks": 1, "bias": True}]
MEM_ARCHS = [{"name": "fc", "widths": ["d", "d", "d"]}, {"name": "residual", "width": "d", "blocks": 2}]


def arch_rows():
    """An NTK block (4 architectures, lambda_min spanning decades; N, d, L the same for all) and a
    memorisation block (2 architectures): rows as the runner writes them, seeds shared per point."""
    rng = np.random.default_rng(3)
    rows = []
    for block, archs, metric in (("ntk", ARCHS, "lambda_min_full"), ("mem", MEM_ARCHS, "final_loss")):
        for N in (100, 300):
            for d in (12, 32):
                for a, arch in enumerate(archs):
                    for rep in range(6):
                        value = 10.0 ** (a - 4) * d * (1 + 0.1 * rng.standard_normal())
                        coords = {"N": N, "d": d, "architecture": arch}
                        rows.append({"cell_id": f"{block}-{N}-{d}-{a}-{rep}", "point_id": f"{block}-{N}-{d}-{a}",
                                     "experiment_id": block, "experiment": block, "coords": coords, "repetition": rep,
                                     "params": {"N": N, "d": d}, "components": {"architecture": {
                                         "name": arch["name"], "params": {k: v for k, v in arch.items() if k != "name"}}},
                                     "seed": {"root": 1, "spawn_key": [N, d, rep]}, "status": "ok",
                                     "metrics": {metric: value, "N": N, "d": d, "L": 3}})
    return rows


def test_blocks_are_never_mixed_and_experiment_picks_them():
    comps = compare([("r", arch_rows())], metrics=["lambda_min_full"], by="architecture", n_boot=200)
    (c,) = comps  # the metric only exists in the NTK block
    assert c.block == "ntk" and c.groups == ["fc", "fc(bias)", "residual", "residual(bias)"]
    assert c.point_keys == ["N", "d"]
    both = compare([("r", arch_rows())], by="architecture", n_boot=50)
    assert [(x.block, x.metric) for x in both] == [("ntk", "lambda_min_full"), ("mem", "final_loss")]
    assert both[1].groups == ["fc", "residual"]  # labels within the block: nothing differs but the name
    (mem,) = compare([("r", arch_rows())], by="architecture", experiments=["mem"], n_boot=50)
    assert mem.block == "mem"
    with pytest.raises(UserError, match=r"--experiment 'nkt': no such experiment block.*did you mean 'ntk'"):
        compare([("r", arch_rows())], experiments=["nkt"])


def test_constant_metrics_are_left_out_unless_named_or_asked_for():
    comps = compare([("r", arch_rows())], by="architecture", experiments=["ntk"], n_boot=50)
    assert [c.metric for c in comps] == ["lambda_min_full"]
    assert comps.left_out == {"ntk": ["N", "d", "L"]}
    assert "left out, the same in every row at each point" in left_out_note(comps)
    assert "ntk: N, d, L" in format_comparisons(comps)
    kept = compare([("r", arch_rows())], by="architecture", experiments=["ntk"], n_boot=50, constants=True)
    assert [c.metric for c in kept] == ["lambda_min_full", "N", "d", "L"] and not kept.left_out
    (named,) = compare([("r", arch_rows())], metrics=["L"], by="architecture", experiments=["ntk"], n_boot=50)
    assert named.lines[0].diffs["fc(bias)"].mean == 0.0


def test_paired_ratio_is_the_geometric_mean_of_per_pair_ratios():
    rows = arch_rows()
    (c,) = compare([("r", rows)], metrics=["lambda_min_full"], by="architecture", ratio=True, n_boot=500)
    line = c.lines[0]  # N = 100, d = 12
    value = {(r["coords"]["architecture"].get("bias", False), r["coords"]["architecture"]["name"],
              r["repetition"]): r["metrics"]["lambda_min_full"]
             for r in rows if r["experiment_id"] == "ntk" and r["coords"]["N"] == 100 and r["coords"]["d"] == 12}
    per_pair = [value[(False, "residual", k)] / value[(False, "fc", k)] for k in range(6)]
    r = line.ratios["residual"]
    assert r.pairs == 6 and r.mean == pytest.approx(math.exp(np.mean(np.log(per_pair))))
    assert r.ci_low <= r.mean <= r.ci_high and r.ci_low >= min(per_pair) and r.ci_high <= max(per_pair)
    assert 80 < r.mean < 125  # residual is two decades above fc in these rows
    header, body, _ = table_parts(c)
    assert "residual / fc" in header and "×" in body[0][header.index("residual / fc")]


def test_ratio_leaves_out_pairs_that_are_not_positive():
    rows = [r for r in arch_rows() if r["experiment_id"] == "ntk"]
    rows[0]["metrics"]["lambda_min_full"] = 0.0  # fc, N = 100, d = 12, repetition 0
    (c,) = compare([("r", rows)], metrics=["lambda_min_full"], by="architecture", ratio=True, n_boot=50)
    assert c.lines[0].ratios["residual"].pairs == 5 and c.lines[0].ratios["residual"].excluded == 1
    assert c.excluded_pairs == 3 and "3 pair(s) left out of the ratios" in format_comparisons([c])


def test_table_pivots_to_fit_the_width_and_every_line_fits():
    (c,) = compare([("r", arch_rows())], metrics=["lambda_min_full"], by="architecture", ratio=True, n_boot=50,
                   pooled=True)
    wide = format_comparisons([c])
    assert max(len(ln) for ln in wide.splitlines()) > 100
    for width in (200, 100, 60):
        text = format_comparisons([c], width=width)
        assert max(len(ln) for ln in text.splitlines()) <= width
        assert "{" not in text and '"' not in text
    narrow = format_comparisons([c], width=100).splitlines()
    header, body = long_parts(c)
    assert narrow[1].split() == ["N", "d", "group", "mean", "±", "std", "(n)", "ratio", "vs", "fc"]
    assert [r[2] for r in body[:4]] == ["fc", "fc(bias)", "residual", "residual(bias)"]
    assert body[0][4] == "(baseline)" and body[0][:2] == ["100", "12"] and body[1][:2] == ["", ""]


def test_cli_done_when_ntk_block_by_architecture_with_ratios(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.toml").write_text('[benchmark]\nname = "t"\nseed = 1\n')
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in arch_rows()))
    result = CliRunner().invoke(main, ["compare", str(run), "--by", "architecture", "-e", "ntk",
                                       "--metric", "lambda_min_full", "--ratio", "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ntk: lambda_min_full" and max(map(len, lines)) <= 100  # not a terminal: 100
    assert "residual(bias)" in result.output and "{" not in result.output
    assert "ratios: geometric mean of paired (group / fc)" in result.output
    csv_out = CliRunner().invoke(main, ["compare", str(run), "--by", "architecture", "--experiment", "ntk",
                                        "--ratio", "--format", "csv", "--n-boot", "50"])
    data = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert {d["group"] for d in data} == {"fc", "fc(bias)", "residual", "residual(bias)"}
    assert {d["experiment_id"] for d in data} == {"ntk"} and "note: left out" in csv_out.stderr
    bad = CliRunner().invoke(main, ["compare", str(run), "-e", "nope"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --experiment 'nope'")


@pytest.mark.slow
def test_done_when_on_a_reduced_architectures_run(tmp_path):
    """``harness compare RUN --by architecture -e ntk --metric lambda_min_full --ratio`` on a reduced
    benchmarks/architectures.toml run: exit 0, lines of at most 200 characters, no JSON label; the
    report's comparison tables the same."""
    from pathlib import Path

    from harness import api

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "architectures.toml"
    run_dir = api.run(str(bench), overrides=["experiments.ntk.grid.N=[40]", "experiments.ntk.grid.d=[6, 12]",
                                            "experiments.mem.grid.N=[20]", "experiments.mem.grid.d=[4]",
                                            "experiments.mem.max_epochs=20", "benchmark.repetitions=2"],
                      results_dir=tmp_path / "results", progress=False, executor="inline")
    for width in ([], ["--width", "200"], ["--width", "60"]):
        result = CliRunner().invoke(main, ["compare", str(run_dir.path), "--by", "architecture", "-e", "ntk",
                                           "--metric", "lambda_min_full", "--ratio", *width])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "ntk: lambda_min_full" and max(map(len, lines)) <= 200
        assert not any(c in result.output for c in '{}"')
        assert "residual(bias)" in result.output and "ratio" in result.output
    html = (run_dir.path / "report.html").read_text()
    section = html[html.index('id="compare"'):html.index('id="problems"')]
    assert "<h3>ntk: by architecture</h3>" in section and "<h3>mem: by architecture</h3>" in section
    assert "fc(bias)" in section and "&quot;name&quot;" not in section and "{" not in section
    assert "ratio vs fc" in section or "residual / fc" in section  # lambda_min spans decades: ratios
    assert "left out, the same in every row at each point" in section
