"""harness.results.compare: side-by-side tables, seed-paired differences, bootstrap intervals, ``harness compare``."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from harness.api import load_runs
from harness.cli import main
from harness.errors import UserError
from harness.results.compare import bootstrap_mean_ci, compare, group_rows
from harness.results.compare_format import format_comparisons


def row(exp_id, coords, value, spawn, status="ok", root=1, metric="loss", components=None):
    return {"cell_id": f"{exp_id}-{json.dumps(coords)}-{spawn}", "point_id": f"{exp_id}-{json.dumps(coords)}",
            "experiment_id": exp_id, "experiment": "toy", "coords": coords, "repetition": spawn,
            "params": {}, "components": components or {"architecture": {"name": exp_id, "params": {}}},
            "seed": {"root": root, "spawn_key": [7, spawn]}, "status": status,
            "metrics": {metric: value, "steps": 10}, "curves": {}, "elapsed": 0.1, "error": None}


def only_point(c, **coords):
    (line,) = [ln for ln in c.lines if ln.point == coords]
    return line


def test_paired_differences_follow_the_seed_not_the_row_order():
    a = [row("fc", {"N": 10}, v, spawn=s) for s, v in enumerate([1.0, 5.0, 2.0])]
    b = [row("pyr", {"N": 10}, v, spawn=s) for s, v in enumerate([2.0, 7.0, 2.5])]
    (c,) = compare([("r", a + b[::-1])], metrics=["loss"])
    assert c.groups == ["fc", "pyr"] and c.baseline == "fc"
    line = only_point(c, N=10)
    assert line.stats["fc"].mean == pytest.approx(8 / 3) and line.stats["fc"].n == 3
    assert line.stats["pyr"].std == pytest.approx(np.std([2.0, 7.0, 2.5], ddof=1))
    d = line.diffs["pyr"]
    assert d.pairs == 3 and d.mean == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    assert 0.5 <= d.ci_low <= d.mean <= d.ci_high <= 2.0  # the mean of resampled diffs stays in their range


def test_rows_with_other_seeds_or_bad_status_do_not_pair():
    a = [row("fc", {"N": 10}, 1.0, spawn=0), row("fc", {"N": 10}, 2.0, spawn=1),
         row("fc", {"N": 10}, 9.0, spawn=2, status="failed")]
    b = [row("pyr", {"N": 10}, 3.0, spawn=0, root=2),  # another root seed
         row("pyr", {"N": 10}, 4.0, spawn=1), row("pyr", {"N": 10}, 8.0, spawn=2),
         row("pyr", {"N": 10}, float("nan"), spawn=3, status="diverged")]
    (c,) = compare([("r", a + b)], metrics=["loss"])
    line = only_point(c, N=10)
    assert line.stats["fc"].n == 2 and line.stats["pyr"].n == 3  # failed and NaN rows left out
    assert line.diffs["pyr"].pairs == 1 and line.diffs["pyr"].mean == pytest.approx(2.0)
    assert math.isnan(line.diffs["pyr"].ci_low)  # one pair: no interval


def test_points_line_up_by_the_other_coordinates_and_a_pooled_line_follows():
    rows = []
    for N, shift in ((10, 1.0), (20, 3.0)):
        for s in range(4):
            rows.append(row("fc", {"N": N}, float(s), spawn=s))
            rows.append(row("pyr", {"N": N}, s + shift, spawn=s))
    (c,) = compare([("r", rows)], metrics=["loss"])
    assert [ln.point for ln in c.lines] == [{"N": 10}, {"N": 20}]  # the pooled line is opt-in
    (c,) = compare([("r", rows)], metrics=["loss"], pooled=True)
    assert [ln.point for ln in c.lines] == [{"N": 10}, {"N": 20}, None]
    assert c.lines[0].diffs["pyr"].mean == pytest.approx(1.0)
    assert c.lines[0].diffs["pyr"].ci_low == pytest.approx(1.0)  # every diff equal: zero-width interval
    assert c.lines[1].diffs["pyr"].mean == pytest.approx(3.0)
    pooled = c.lines[2]
    assert pooled.diffs["pyr"].pairs == 8 and pooled.diffs["pyr"].mean == pytest.approx(2.0)
    assert pooled.stats["fc"].n == 8


def test_by_a_coordinate_and_a_slot_and_baseline_choice():
    rows = [row("e", {"N": 10, "act": act}, v, spawn=0) for act, v in (("relu", 1.0), ("tanh", 4.0))]
    (c,) = compare([("r", rows)], metrics=["loss"], by="act", baseline="tanh")
    assert c.groups == ["tanh", "relu"] and c.point_keys == ["N"] and c.block == "e" and c.title == "e: loss"
    assert only_point(c, N=10).diffs["relu"].mean == pytest.approx(-3.0)
    by_slot = [row("a", {"N": 10}, 1.0, 0), row("b", {"N": 10}, 2.5, 0), row("b", {"N": 10}, 3.5, 0)]
    assert list(group_rows([("r", by_slot)], "architecture")) == ["a", "b"]
    # blocks are never mixed: a slot that differs between blocks gives one group per block
    a, b = compare([("r", by_slot)], metrics=["loss"], by="architecture")
    assert (a.block, a.groups, b.block, b.groups) == ("a", ["a"], "b", ["b"])
    assert only_point(b, N=10).stats["b"].n == 2
    with pytest.raises(UserError, match=r"--by 'ac'.*did you mean 'act'"):
        compare([("r", rows)], by="ac")
    with pytest.raises(UserError, match=r"--baseline 'gelu'.*groups: relu, tanh"):
        compare([("r", rows)], by="act", baseline="gelu")
    with pytest.raises(UserError, match=r"--metric 'los'.*did you mean 'loss'"):
        compare([("r", rows)], metrics=["los"])


def test_several_runs_with_the_same_block_ids_are_told_apart():
    r1 = [row("fig1", {"N": 10}, 1.0, spawn=s) for s in range(3)]
    r2 = [row("fig1", {"N": 10}, 1.5, spawn=s) for s in range(3)]
    (c,) = compare([("run1", r1), ("run2", r2)], metrics=["loss"])
    assert c.groups == ["run1:fig1", "run2:fig1"]
    assert only_point(c, N=10).diffs["run2:fig1"].mean == pytest.approx(0.5)
    (c,) = compare([("run1", r1), ("run2", r2)], metrics=["loss"], by="run")
    assert c.groups == ["run1", "run2"]


def test_bootstrap_interval_has_the_normal_width():
    rng = np.random.default_rng(4)
    d = rng.normal(0.5, 1.0, 400)
    lo, hi = bootstrap_mean_ci(d, n_boot=4000, rng=np.random.default_rng(1))
    assert lo < d.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * d.std(ddof=1) / 20, rel=0.1)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([1.0]))


def test_pairing_narrows_the_interval_compared_to_the_spread_of_each_group():
    rng = np.random.default_rng(8)
    base = rng.normal(0, 5, 50)  # a large per-seed effect shared by both groups
    rows = [row("a", {}, float(v), spawn=s) for s, v in enumerate(base)]
    rows += [row("b", {}, float(v + 0.3 + rng.normal(0, 0.1)), spawn=s) for s, v in enumerate(base)]
    (c,) = compare([("r", rows)], metrics=["loss"])
    (line,) = c.lines
    d = line.diffs["b"]
    assert d.ci_low < 0.3 < d.ci_high and d.ci_high - d.ci_low < 0.1
    assert line.stats["a"].std > 3


def sample_rows():
    rows = []
    for N in (10, 20):
        for s in range(3):
            rows.append(row("fc", {"N": N}, 1.0 + s, spawn=s))
            rows.append(row("pyr|x", {"N": N}, 2.0 + s, spawn=s))
    return rows


def test_formats_table_markdown_csv():
    comps = compare([("r", sample_rows())], metrics=["loss", "steps"], n_boot=100, pooled=True, ratio=True)
    for c in comps:
        c.ratio = False  # the tables show differences; the CSV holds both
    table = format_comparisons(comps, "table")
    lines = table.splitlines()
    assert lines[0] == "loss"
    assert lines[1].split() == ["N", "fc", "pyr|x", "pyr|x", "−", "fc"]
    assert lines[3].split()[:4] == ["10", "2", "±", "1"]
    assert "+1 [+1, +1] (3 pairs*)" in lines[3]  # * : fewer than 5 pairs
    assert any(ln.startswith("all") and "(6 pairs)" in ln for ln in lines)
    assert "loss: 2 intervals rest on fewer than 5 pairs (marked *)" in table
    assert "\nsteps\n" in table

    md = format_comparisons(comps, "markdown")
    assert "### loss" in md and "| N | fc | pyr\\|x | pyr\\|x − fc |" in md

    text = format_comparisons(comps, "csv")
    assert text.splitlines()[0] == ("experiment_id,metric,N,group,baseline,mean,std,n,diff,diff_ci_low,diff_ci_high,"
                                    "pairs,ratio,ratio_ci_low,ratio_ci_high,ratio_pairs,ratio_excluded")
    data = list(csv.DictReader(io.StringIO(text)))
    assert [(d["metric"], d["N"], d["group"]) for d in data][:6] == [
        ("loss", "10", "fc"), ("loss", "10", "pyr|x"), ("loss", "20", "fc"), ("loss", "20", "pyr|x"),
        ("loss", "all", "fc"), ("loss", "all", "pyr|x")]
    assert float(data[0]["mean"]) == 2.0 and float(data[0]["std"]) == 1.0 and data[0]["n"] == "3"
    assert data[0]["diff"] == "" and data[0]["baseline"] == "fc"
    assert float(data[1]["diff"]) == 1.0 and data[1]["pairs"] == "3"
    # paired ratios (2/1, 3/2, 4/3): the geometric mean is the cube root of their product, 4
    assert float(data[1]["ratio"]) == pytest.approx(4 ** (1 / 3)) and data[1]["ratio_pairs"] == "3"
    assert float(data[7]["diff"]) == 0.0 and float(data[7]["ratio"]) == 1.0
    with pytest.raises(UserError, match="--format 'xml'"):
        format_comparisons(comps, "xml")


def test_boolean_metrics_compare_as_fractions():
    rows = [row("a", {}, flag, spawn=s, metric="reached") for s, flag in enumerate([True, False, True, True])]
    rows += [row("b", {}, flag, spawn=s, metric="reached") for s, flag in enumerate([True, True, True, True])]
    (c,) = compare([("r", rows)], metrics=["reached"])
    (line,) = c.lines
    assert line.stats["a"].mean == pytest.approx(0.75) and line.stats["b"].mean == 1.0
    assert line.diffs["b"].mean == pytest.approx(0.25) and line.diffs["b"].pairs == 4


def test_one_group_says_there_is_nothing_to_compare():
    (c,) = compare([("r", [row("a", {"N": 1}, 1.0, 0)])], metrics=["loss"])
    assert "nothing to compare" in format_comparisons([c], "table")


def write_run(path, rows, spec='[benchmark]\nname = "t"\nseed = 1\n'):
    path.mkdir(parents=True)
    (path / "spec.toml").write_text(spec)
    (path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_harness_compare_cli(tmp_path):
    one = write_run(tmp_path / "one", sample_rows())
    two = write_run(tmp_path / "two", [row("fc", {"N": 10}, 1.5 + s, spawn=s) for s in range(3)])
    runner = CliRunner()
    result = runner.invoke(main, ["compare", str(one), "--metric", "loss", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("experiment_id,metric,N,group,baseline,mean,std,n,diff")
    result = runner.invoke(main, ["compare", str(one), str(two), "-m", "loss", "--by", "run",
                                  "--format", "markdown"])
    assert result.exit_code == 0, result.output
    # runs are compared block by block: fc of two against fc of one, seed by seed
    assert "### fc: loss\n\n| N | one | two | two − one |" in result.output
    assert "| 10 | 2 ± 1 (n=3) | 2.5 ± 1 (n=3) | +0.5 [+0.5, +0.5] (3 pairs\\*) |" in result.output
    assert "fewer than 5 pairs (marked \\*)" in result.output
    assert "### pyr|x: loss" in result.output and "| 10 | 3 ± 1 (n=3) |" in result.output
    bad = runner.invoke(main, ["compare", str(one), "--by", "nope"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --by 'nope'") and "Traceback" not in bad.output
    missing = runner.invoke(main, ["compare", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    assert runner.invoke(main, ["compare"]).exit_code == 2


def test_rows_without_the_by_key_belong_to_no_group():
    capacity = [row("capacity", {"model": m, "ratio": 1.0}, v, spawn=0) for m, v in (("deep", 1.0), ("wide", 2.0))]
    other = [row("fig2", {"N": 10}, 3.0, spawn=0)]
    groups = group_rows([("r", capacity + other)], by="model")
    assert sorted(groups) == ["deep", "wide"]
    assert all(r["experiment_id"] == "capacity" for rs in groups.values() for r in rs)
    (c,) = compare([("r", capacity + other)], metrics=["loss"], by="model")  # fig2 has no model
    assert c.groups == ["deep", "wide"] and c.block == "capacity"
    assert "N" not in c.point_keys and "ratio" in c.point_keys  # columns of the compared rows only


def test_few_pairs_are_flagged_only_below_five():
    def rows_with(n):
        return ([row("a", {}, float(s), spawn=s) for s in range(n)]
                + [row("b", {}, s + 0.5 + 0.1 * (s % 2), spawn=s) for s in range(n)])

    (few,) = compare([("r", rows_with(4))], metrics=["loss"], n_boot=200)
    (enough,) = compare([("r", rows_with(5))], metrics=["loss"], n_boot=200)
    assert few.lines[0].diffs["b"].few_pairs and few.few_pair_intervals == 1
    assert not enough.lines[0].diffs["b"].few_pairs and enough.few_pair_intervals == 0
    assert "(4 pairs*)" in format_comparisons([few]) and "fewer than 5 pairs" in format_comparisons([few])
    assert "*" not in format_comparisons([enough]) and "fewer than" not in format_comparisons([enough])
    (one,) = compare([("r", rows_with(1))], metrics=["loss"])
    assert not one.lines[0].diffs["b"].few_pairs  # one pair: no interval at all, nothing to flag


def test_a_key_given_twice_is_refused_not_dropped(tmp_path):
    with pytest.raises(UserError, match=r"--by N given more than once \(N, N\): name each key once"):
        compare([("r", sample_rows())], metrics=["loss"], by=["N", "N"])
    with pytest.raises(UserError, match="given more than once"):
        compare([("r", sample_rows())], by="N, N")
    with pytest.raises(UserError, match="an empty key"):
        compare([("r", sample_rows())], by="N,,experiment_id")
    one = write_run(tmp_path / "one", sample_rows())
    result = CliRunner().invoke(main, ["compare", str(one), "--by", "N", "--by", "N"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: --by N given more than once (N, N)")


def arch_act_rows():
    rows = []
    for arch, shift in (("fc", 0.0), ("res", 1.0)):
        for act, act_shift in (("relu", 0.0), ("tanh", 10.0)):
            for N in (10, 20):
                for s in range(3):
                    rows.append(row(arch, {"N": N, "act": act}, s + shift + act_shift + N, spawn=s))
    return rows


def test_several_keys_group_by_the_tuple_of_values(tmp_path):
    rows = arch_act_rows()
    groups = group_rows([("r", rows)], ["experiment_id", "act"])
    assert list(groups) == ["fc/relu", "fc/tanh", "res/relu", "res/tanh"]
    assert all(len(g) == 6 for g in groups.values())
    (c,) = compare([("r", rows)], metrics=["loss"], by=["experiment_id", "act"])
    assert c.by == "experiment_id,act" and c.groups == ["fc/relu", "fc/tanh", "res/relu", "res/tanh"]
    assert c.point_keys == ["N"]  # the block is a key: blocks line up by the other coordinates
    line = only_point(c, N=10)
    assert line.stats["fc/relu"].mean == pytest.approx(11.0) and line.stats["fc/relu"].n == 3
    assert line.diffs["res/tanh"].mean == pytest.approx(11.0) and line.diffs["res/tanh"].pairs == 3
    # comma-separated is the same, and the order of the keys orders the label
    (same,) = compare([("r", rows)], metrics=["loss"], by="experiment_id, act")
    assert same.groups == c.groups and same.by == c.by
    (swapped,) = compare([("r", rows)], metrics=["loss"], by=["act", "experiment_id"], baseline="relu/res")
    assert swapped.groups == ["relu/res", "relu/fc", "tanh/fc", "tanh/res"]
    assert only_point(swapped, N=20).diffs["relu/fc"].mean == pytest.approx(-1.0)
    # two grid axes: one table per block
    fc, res = compare([("r", rows)], metrics=["loss"], by="act,N")
    assert (fc.block, res.block) == ("fc", "res") and fc.point_keys == [] and "relu/10" in fc.groups
    assert "grouped by (act, N), labelled act/N" in format_comparisons([fc])
    # an unknown key among several is named
    with pytest.raises(UserError, match=r"--by 'ac'.*did you mean 'act'"):
        compare([("r", rows)], by=["experiment_id", "ac"])


def test_several_keys_leave_out_rows_missing_one_and_work_across_runs():
    rows = arch_act_rows()
    other = [row("fig2", {"N": 10}, 3.0, spawn=0)]  # no act: belongs to no group
    assert sum(len(g) for g in group_rows([("r", rows + other)], ["experiment_id", "act"]).values()) == len(rows)
    c, _ = compare([("one", rows), ("two", rows)], metrics=["loss"], by=["run", "act"])
    assert c.groups == ["one/relu", "one/tanh", "two/relu", "two/tanh"]
    assert c.point_keys == ["N"] and c.block == "fc"
    assert only_point(c, N=10).diffs["two/relu"].mean == pytest.approx(0.0)
    (c,) = compare([("one", rows), ("two", rows)], metrics=["loss"], by="experiment_id,act")
    assert c.groups[:2] == ["one:fc/relu", "one:fc/tanh"]  # the same values in both runs: prefixed


def test_cli_several_keys_repeated_or_comma_separated(tmp_path):
    one = write_run(tmp_path / "one", arch_act_rows())
    runner = CliRunner()
    repeated = runner.invoke(main, ["compare", str(one), "-m", "loss", "--by", "experiment_id", "--by", "act",
                                    "--format", "markdown", "--n-boot", "50"])
    assert repeated.exit_code == 0, repeated.output
    assert "| N | fc/relu | fc/tanh | res/relu | res/tanh | fc/tanh − fc/relu |" in repeated.output
    comma = runner.invoke(main, ["compare", str(one), "-m", "loss", "--by", "experiment_id,act",
                                 "--format", "markdown", "--n-boot", "50"])
    assert comma.exit_code == 0 and comma.output == repeated.output
    csv_out = runner.invoke(main, ["compare", str(one), "-m", "loss", "--by", "experiment_id,act", "--format", "csv"])
    assert [ln.split(",")[3] for ln in csv_out.stdout.splitlines()[1:5]] == ["fc/relu", "fc/tanh", "res/relu",
                                                                             "res/tanh"]


def test_cli_pooled_line_is_opt_in_and_csv_warns_on_stderr(tmp_path):
    one = write_run(tmp_path / "one", sample_rows())
    runner = CliRunner()
    plain = runner.invoke(main, ["compare", str(one), "-m", "loss"])
    assert plain.exit_code == 0 and not any(ln.startswith("all") for ln in plain.stdout.splitlines())
    pooled = runner.invoke(main, ["compare", str(one), "-m", "loss", "--pooled"])
    assert any(ln.startswith("all") and "(6 pairs)" in ln for ln in pooled.stdout.splitlines())
    csv_out = runner.invoke(main, ["compare", str(one), "-m", "loss", "--format", "csv"])
    assert csv_out.exit_code == 0 and "warning: loss: 2 intervals rest on fewer than 5 pairs" in csv_out.stderr
    assert "warning" not in csv_out.stdout


GRID_SPEC = """
[benchmark]
name = "order"
seed = 1
repetitions = 2

[[experiments]]
id = "a"
experiment = "echo"
[experiments.grid]
x = [3.0, 1.0, 2.0]
"""


@pytest.mark.slow
def test_groups_and_points_follow_the_grid_not_the_completion_order(tmp_path):
    from plugins_for_tests import loaded_test_plugins

    from harness import api

    spec = tmp_path / "order.toml"
    spec.write_text(GRID_SPEC)
    with loaded_test_plugins():
        run_dir = api.run(str(spec), results_dir=str(tmp_path / "results"), progress=False, figures=False).path
        lines = (run_dir / "rows.jsonl").read_text().splitlines(keepends=True)
        (run_dir / "rows.jsonl").write_text("".join(sorted(lines, key=lambda ln: json.loads(ln)["metrics"]["u"])))
        ((_, rows),) = load_runs([run_dir])
        assert [r["coords"]["x"] for r in rows] == [3.0, 3.0, 1.0, 1.0, 2.0, 2.0]
        assert [r["repetition"] for r in rows] == [0, 1] * 3
        (c,) = compare(load_runs([run_dir]), metrics=["u"], by="x")
        assert c.groups == ["3.0", "1.0", "2.0"]
        result = CliRunner().invoke(main, ["compare", "latest", "-m", "u"], env={"HARNESS_RESULTS_DIR": str(tmp_path / "results")})
        assert result.exit_code == 0, result.output


def test_compare_warns_when_one_block_id_runs_different_experiments(tmp_path):
    from harness.results.analysis import mixed_experiments

    a = [{"experiment_id": "fig1", "experiment": "memorization"}]
    b = [{"experiment_id": "fig1", "experiment": "ntk_spectrum"}]
    assert mixed_experiments([("a", a), ("b", a)]) is None
    assert mixed_experiments([("a", a), ("b", b)]) == (
        "block 'fig1' runs different experiments (memorization in a, ntk_spectrum in b): their rows are "
        "paired by block id and coordinates, not by what they measure")
