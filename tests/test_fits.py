"""harness.results.fits: line and power-law fits with bootstrap intervals, their overlay, and ``harness fit``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from harness.results.fits import FitResult, fit_rows, fit_slope, format_fits, plot_fit


def test_exact_line_is_recovered_with_a_degenerate_interval():
    x = np.arange(1.0, 11.0)
    fit = fit_slope(x, 3.0 - 2.0 * x, n_boot=200)
    assert fit.slope == pytest.approx(-2.0, abs=1e-12)
    assert fit.intercept == pytest.approx(3.0, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n == 10 and fit.dropped == 0 and not fit.log
    assert fit.ci_low == pytest.approx(-2.0, abs=1e-9) and fit.ci_high == pytest.approx(-2.0, abs=1e-9)
    assert fit.predict([0.0, 5.0]) == pytest.approx([3.0, -7.0])


def test_matches_numpy_polyfit_and_r2_on_noisy_data():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 50)
    y = 1.5 * x + 4 + rng.normal(0, 2, 50)
    fit = fit_slope(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
    # the bootstrap interval is close to the normal-theory one (slope +- 1.96 se)
    resid = y - (intercept + slope * x)
    se = math.sqrt((resid ** 2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    assert fit.ci_low < fit.slope < fit.ci_high
    assert (fit.ci_high - fit.ci_low) == pytest.approx(2 * 1.96 * se, rel=0.3)


def test_log_log_fit_recovers_a_power_law_and_drops_nonpositive_points():
    rng = np.random.default_rng(0)
    x = np.geomspace(10, 10_000, 30)
    y = 0.2 * x ** 1.5 * np.exp(rng.normal(0, 0.05, x.size))
    fit = fit_slope(np.append(x, [0.0, 5.0, np.nan]), np.append(y, [1.0, -1.0, 2.0]), log=True)
    assert fit.log and fit.n == 30 and fit.dropped == 3
    assert fit.slope == pytest.approx(1.5, abs=0.02)
    assert math.exp(fit.intercept) == pytest.approx(0.2, rel=0.15)
    assert fit.ci_low < 1.5 < fit.ci_high and fit.ci_high - fit.ci_low < 0.05
    assert fit.predict(100.0) == pytest.approx(math.exp(fit.intercept) * 100 ** fit.slope)
    assert "log-log slope 1.5" in fit.describe()


def test_bootstrap_interval_covers_the_true_slope_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    x = np.linspace(0, 1, 30)
    hits = 0
    trials = 200
    for _ in range(trials):
        y = 0.7 * x + rng.normal(0, 0.3, x.size)
        fit = fit_slope(x, y, n_boot=400, rng=rng)
        hits += fit.ci_low <= 0.7 <= fit.ci_high
    assert 0.88 <= hits / trials <= 0.99


def test_same_data_same_interval_and_rng_changes_it():
    x, y = [1, 2, 3, 4, 5, 6], [1.1, 1.9, 3.2, 3.9, 5.3, 5.8]
    a, b = fit_slope(x, y), fit_slope(x, y)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    c = fit_slope(x, y, rng=np.random.default_rng(99))
    assert (c.ci_low, c.ci_high) != (a.ci_low, a.ci_high)
    narrow = fit_slope(x, y, level=0.5)
    assert a.ci_low < narrow.ci_low < narrow.ci_high < a.ci_high


def test_two_points_give_a_slope_but_no_interval():
    fit = fit_slope([1.0, 3.0], [2.0, 6.0])
    assert fit.slope == pytest.approx(2.0)
    assert math.isnan(fit.ci_low) and math.isnan(fit.ci_high)
    assert "[n/a]" in fit.describe()


@pytest.mark.parametrize("x, y, log, match", [
    ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], False, "two distinct x"),
    ([1.0, 2.0], [1.0, 2.0, 3.0], False, "differ in length"),
    ([-1.0, -2.0, 3.0], [1.0, 2.0, 3.0], True, "finite, positive"),
])
def test_unfittable_data_raises(x, y, log, match):
    with pytest.raises(ValueError, match=match):
        fit_slope(x, y, log=log)


def test_plot_fit_draws_the_fitted_line_and_its_band():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    rng = np.random.default_rng(5)
    x = np.geomspace(1, 100, 20)
    y = 3 * x ** -0.5 * np.exp(rng.normal(0, 0.1, 20))
    fit = fit_slope(x, y, log=True)
    fig, ax = plt.subplots()
    line = plot_fit(ax, fit, label="N")
    xs, ys = line.get_data()
    assert xs[0] == pytest.approx(1.0) and xs[-1] == pytest.approx(100.0)
    assert ys == pytest.approx(fit.predict(xs))
    assert line.get_label().startswith("N: log-log slope")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    verts = bands[0].get_paths()[0].vertices
    # the band encloses the fitted curve at the middle of the range
    mid = fit.predict(10.0)
    near = verts[np.abs(verts[:, 0] - 10.0) < 1.0][:, 1]
    assert near.min() < mid < near.max()
    plt.close(fig)


def _row(exp_id, coords, metric, status="ok", rep=0):
    return {"cell_id": f"{exp_id}-{json.dumps(coords)}-{rep}", "point_id": f"{exp_id}-{json.dumps(coords)}",
            "experiment_id": exp_id, "experiment": "toy", "coords": coords, "repetition": rep,
            "params": {"N": coords.get("N", 100)}, "components": {"architecture": {"name": "fc", "params": {"q": 4}}},
            "seed": {"root": 1, "spawn_key": [0, rep]}, "status": status, "metrics": {"m": metric},
            "curves": {}, "elapsed": 0.1, "error": None}


def test_fit_rows_fits_per_block_and_per_value_of_the_other_axes():
    rows = []
    for q, power in ((2, 1.0), (4, 2.0)):
        for N in (10, 20, 40, 80):
            for rep in range(2):
                rows.append(_row("a", {"N": N, "q": q}, 5.0 * N ** power, rep=rep))
    for N in (10, 100):
        rows.append(_row("b", {"N": N}, 7.0 * N ** 0.5))
    rows.append(_row("b", {"N": 1000}, float("nan"), status="diverged"))  # left out
    fits = fit_rows(rows, "m", "N", log=True, grid_keys={"a": ["N", "q"], "b": ["N"]})
    got = {(g.experiment_id, tuple(g.fixed.items())): g.fit for g in fits}
    assert set(got) == {("a", (("q", 2),)), ("a", (("q", 4),)), ("b", ())}
    assert got[("a", (("q", 2),))].slope == pytest.approx(1.0)
    assert got[("a", (("q", 4),))].slope == pytest.approx(2.0)
    assert got[("a", (("q", 4),))].n == 8
    assert got[("b", ())].slope == pytest.approx(0.5) and got[("b", ())].n == 2
    text = format_fits(fits, "m", "N")
    assert "a [q=4]: log m vs log N: log-log slope 2" in text


def test_fit_rows_does_not_hold_fixed_the_axis_a_derived_value_comes_from():
    # grid axis i, derived d = 10 i: fitting against d must not group by i
    rows = [_row("a", {"i": i, "d": 10 * i}, 3.0 * 10 * i) for i in (1, 2, 3, 4)]
    (g,) = fit_rows(rows, "m", "d", grid_keys={"a": ["i"]})
    assert g.fixed == {} and g.fit.slope == pytest.approx(3.0)


def test_fit_rows_reaches_slot_parameters_and_reports_unfittable_groups():
    rows = [_row("a", {"N": 10}, 1.0), _row("a", {"N": 10}, 2.0, rep=1)]
    (g,) = fit_rows(rows, "m", "N")
    assert g.fit is None and "two distinct x" in g.problem
    assert "no fit" in format_fits([g], "m", "N")
    with pytest.raises(UserError, match=r"--axis 'Nn'.*did you mean 'N'"):
        fit_rows(rows, "m", "Nn")
    with pytest.raises(UserError, match=r"--metric 'mm'.*metrics: m"):
        fit_rows(rows, "mm", "N")
    (g,) = fit_rows(rows, "m", "architecture.q")
    assert g.fit is None  # one value of q only


def test_harness_fit_cli_on_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.toml").write_text('[benchmark]\nname = "t"\nseed = 1\n\n[[experiments]]\nid = "a"\n'
                                   'experiment = "toy"\n[experiments.grid]\nN = [10, 20, 40]\n')
    rows = [_row("a", {"N": N}, 2.0 * N ** 0.75, rep=r) for N in (10, 20, 40) for r in range(2)]
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(run), "--metric", "m", "--axis", "N", "--log"])
    assert result.exit_code == 0, result.output
    assert "a: log m vs log N: log-log slope 0.75" in result.output
    result = runner.invoke(main, ["fit", str(run), "-m", "m", "-a", "N", "--json", "--n-boot", "50"])
    data = json.loads(result.output)
    xs = [N for N in (10, 20, 40) for _ in range(2)]
    assert data[0]["fit"]["slope"] == pytest.approx(np.polyfit(xs, [2.0 * x ** 0.75 for x in xs], 1)[0])
    assert data[0]["fit"]["n"] == 6 and data[0]["fit"]["n_boot"] == 50 and data[0]["fit"]["log"] is False
    bad = runner.invoke(main, ["fit", str(run), "-m", "nope", "-a", "N"])
    assert bad.exit_code == 2 and "error: --metric 'nope'" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(main, ["fit", str(tmp_path / "nowhere"), "-m", "m", "-a", "N"])
    assert missing.exit_code == 2 and "no such run directory" in missing.output


def test_fit_result_as_dict_is_json():
    fit = fit_slope([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert isinstance(fit, FitResult)
    assert json.loads(json.dumps(fit.as_dict()))["n"] == 4


def test_fit_plot_shows_points_fits_and_what_was_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace as NS

    import matplotlib.pyplot as plt

    from harness.results.fits import plot_fits, run_caption

    # a loaded run (harness.results.runs.Run) needs only its spec here
    block = NS(id="a", experiment="toy", repetitions=2, axes=[NS(label="N", keys=("N",), values=[10, 20, 40])])
    run = NS(spec=NS(name="t", experiments=[block]))
    rows = [_row("a", {"N": N}, 2.0 * N + r, rep=r) for N in (10, 20, 40) for r in range(2)]
    caption = run_caption(run)
    assert caption == "t / a (toy); grid N: [10, 20, 40]; 2 repetition(s)"
    fits = fit_rows(rows, "m", "N")
    fig = plot_fits(fits, "m", "N", caption=caption)
    ax = fig.axes[0]
    assert caption in ax.get_title() and "error bars: std over repetitions" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("a: slope 2 ") and labels[1] == "a (mean ± std)"
    # the points are the means over repetitions at each N
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    assert list(points.get_xdata()) == [10, 20, 40] and list(points.get_ydata()) == [20.5, 40.5, 80.5]
    plt.close(fig)

    run = tmp_path / "run"  # a run directory (its spec names an unknown experiment: no caption)
    run.mkdir()
    (run / "spec.toml").write_text('[benchmark]\nname = "t"\nseed = 1\nrepetitions = 2\n\n[[experiments]]\n'
                                   'id = "a"\nexperiment = "toy"\n[experiments.grid]\nN = [10, 20, 40]\n')
    (run / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fit.png"
    result = CliRunner().invoke(main, ["fit", str(run), "-m", "m", "-a", "N", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(main, ["fit", str(run), "-m", "m", "-a", "N", "--plot", str(tmp_path / "f.txt")])
    assert bad.exit_code == 2 and "use a file name ending in .png, .svg, .pdf" in bad.output
