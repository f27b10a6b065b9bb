"""harness.results.summary: per-grid-point statistics, CSV and the text table."""
from __future__ import annotations

import math
import statistics

import pytest

from harness.results.summary import format_table, mean_std, read_csv, summarize, to_csv


def row(point, status="ok", coords=None, exp="a", **metrics):
    return {"cell_id": f"{point}-{len(metrics)}-{status}", "point_id": point, "experiment_id": exp,
            "experiment": "echo", "coords": coords if coords is not None else {"N": point},
            "status": status, "metrics": metrics, "curves": {}}


def test_mean_std_n_per_point():
    rows = [row("10", loss=1.0), row("10", loss=2.0), row("10", loss=4.0), row("20", loss=5.0)]
    lines = {line["point_id"]: line for line in summarize(rows)}
    a = lines["10"]
    assert a["n_rows"] == 3 and a["n_ok"] == 3 and a["N"] == "10"
    assert a["loss_mean"] == pytest.approx(7 / 3)
    assert a["loss_std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert a["loss_n"] == 3
    b = lines["20"]
    assert b["loss_mean"] == 5.0 and b["loss_std"] is None and b["loss_n"] == 1


def test_statuses_counted_and_only_finite_ok_or_diverged_values_used():
    rows = [row("p", loss=1.0, converged=True), row("p", loss=3.0, converged=False),
            row("p", status="diverged", loss=math.nan, steps=7), row("p", status="failed"),
            row("p", status="timeout"), row("p", status="failed", loss=100.0)]
    (line,) = summarize(rows)
    assert (line["n_rows"], line["n_ok"], line["n_diverged"], line["n_failed"], line["n_timeout"],
            line["n_skipped"]) == (6, 2, 1, 2, 1, 0)
    assert line["loss_mean"] == 2.0 and line["loss_n"] == 2  # NaN and the failed row left out
    assert line["converged_mean"] == 0.5  # booleans are 0/1
    assert line["steps_mean"] == 7.0 and line["steps_n"] == 1


def test_metric_that_is_never_finite_has_empty_statistics():
    (line,) = summarize([row("p", status="diverged", loss=math.inf)])
    assert line["loss_mean"] is None and line["loss_std"] is None and line["loss_n"] == 0


def test_non_numeric_metrics_are_not_summarised():
    (line,) = summarize([row("p", label="x", rule="fixed")])
    assert not any(k.startswith(("label", "rule")) for k in line)


def test_order_follows_the_given_point_ids():
    rows = [row("b", loss=1.0), row("a", loss=1.0), row("c", loss=1.0)]
    assert [line["point_id"] for line in summarize(rows, order=["c", "a"])] == ["c", "a", "b"]
    assert [line["point_id"] for line in summarize(rows, order=["zz"])] == ["b", "a", "c"]


def test_csv_round_trip_with_lists_and_missing_values():
    rows = [row("p", coords={"widths": [3, 4], "N": 1}, loss=0.25), row("q", coords={"N": 2})]
    parsed = read_csv(to_csv(summarize(rows)))
    assert parsed[0]["widths"] == "[3, 4]" and parsed[0]["loss_mean"] == "0.25"
    assert parsed[1]["widths"] == "" and parsed[1]["loss_mean"] == ""
    assert parsed[1]["n_rows"] == "1"


def test_mean_std_edge_cases():
    assert mean_std([]) == (None, None)
    assert mean_std([2.0]) == (2.0, None)
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_format_table_shows_mean_and_std():
    rows = [row("p", loss=1.0), row("p", loss=3.0), row("q", status="failed")]
    text = format_table(summarize(rows))
    header, rule, first, second = text.splitlines()
    assert header.split() == ["N", "rows", "ok", "failed", "loss"]
    assert "2 ± 1.414" in first
    assert second.split() == ["q", "1", "0", "1"]
    assert format_table([]) == "(no rows)"
    several = format_table(summarize([row("p", exp="a"), row("q", exp="b")]))
    assert several.splitlines()[0].split()[0] == "experiment"
