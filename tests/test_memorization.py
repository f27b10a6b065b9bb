"""The memorisation experiments (plugins/memorization.py) and their benchmark files."""
import math
from pathlib import Path

import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness import SpecError
from harness.plugin.context import FigureContext
from harness.runner.execute import run_cell
from harness.spec import load_spec, parse_spec
from harness_plugins.memorization import Capacity, deep_width, labels_of, two_layer_units

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def spec_text(block: str, grid: str = "", reps: int = 1) -> str:
    return f"""
[benchmark]
name = "t"
seed = 7
repetitions = {reps}

[[experiments]]
{block}
{grid}
"""


def run_all(text: str, registry) -> list[dict]:
    spec = parse_spec(text, registry=registry)
    return [run_cell(cell, registry) for cell in spec.cells()]


FIG2 = """id = "fig2"
experiment = "memorization"
max_epochs = {epochs}
window = {window}
curve_points = 100000
architecture = {{ name = "fc", widths = ["d", "d", "d"] }}
"""


def test_memorization_rows(registry):
    text = spec_text(FIG2.format(epochs=3000, window=100), """
[experiments.grid]
"N, d" = [[40, 12], [400, 4]]
""")
    over, under = run_all(text, registry)
    for row in (over, under):
        assert row["status"] == "ok", row["error"]
        m, c = row["metrics"], row["curves"]
        N, d = row["params"]["N"], row["params"]["d"]
        assert m["P"] == 3 * d * d + d and m["P_over_N"] == m["P"] / N and m["d2"] == d * d
        assert m["lr"] == pytest.approx(1 / (10 * math.sqrt(N)))
        assert m["eta_rule"] is None and m["eta"] is None
        losses = np.asarray(c["loss_curve"])
        assert c["loss_curve_epoch"] == list(range(m["stop_epoch"]))  # the full curve was kept
        assert losses[0] == m["initial_loss"]
        sums = [losses[k:k + 100].sum() for k in range(0, len(losses) - 99, 100)]
        assert m["windows"] == len(sums)
        assert "window_loss" not in m and "best_window_loss" not in m
        if m["stop_reason"] == "window":
            assert sums[-1] > sums[-2] and all(b <= a for a, b in zip(sums[:-2], sums[1:-1]))
            assert m["stop_epoch"] % 100 == 0
            # the authors' value: the window before the one that triggered the stop
            k = len(sums) - 2
            assert m["stop_window_loss"] == pytest.approx(sums[-1] / 50, rel=1e-12)
        else:
            assert m["stop_reason"] == "max_epochs" and m["stop_epoch"] == 3000
            k = len(sums) - 1  # no stop: the last complete window
            assert m["stop_window_loss"] is None
        assert m["reported_loss"] == pytest.approx(sums[k] / 50, rel=1e-12)
        assert (m["reported_window_start"], m["reported_window_end"]) == (100 * k, 100 * k + 100)
        assert m["reported_loss"] == pytest.approx(losses[100 * k:100 * k + 100].mean() * 2, rel=1e-12)
    # P = 1740 >> N = 40 memorises; P = 52 << N = 400 cannot
    assert over["metrics"]["final_loss"] < 1e-3
    assert under["metrics"]["final_loss"] > 0.1


def test_memorization_lr_rule_and_gd_theory(registry):
    text = spec_text(FIG2.format(epochs=30, window=0) + """N = 50
d = 6
lr_rule = "2*P/N"
""")
    (row,) = run_all(text, registry)
    assert row["metrics"]["lr"] == pytest.approx(2 * (3 * 36 + 6) / 50)
    text = spec_text(FIG2.format(epochs=30, window=0) + """N = 50
d = 6
lr_rule = ""
optimizer = { name = "adam", lr = 0.0123 }
""")
    (row,) = run_all(text, registry)
    assert row["metrics"]["lr"] == 0.0123
    for key in ("reported_loss", "reported_window_start", "reported_window_end", "stop_window_loss",
                "windows"):  # no window rule: no authors' value
        assert key in row["metrics"] and row["metrics"][key] is None
    text = spec_text(FIG2.format(epochs=30, window=0) + """N = 50
d = 6
optimizer = { name = "gd_theory", c = 1.0 }
""")
    (row,) = run_all(text, registry)
    m = row["metrics"]
    assert m["lr"] is None and m["eta_rule"].startswith("ntk_smooth")
    assert m["eta"] == pytest.approx(50 / (2 * m["lambda_max_K0"]))
    with pytest.raises(SpecError, match="lr_rule"):
        parse_spec(spec_text(FIG2.format(epochs=3, window=0) + 'lr_rule = "1/sqrt(M)"\n'), registry=registry)


def test_diverged_training_marks_the_row(registry):
    text = spec_text(FIG2.format(epochs=200, window=0) + """N = 30
d = 5
activation = "identity"
optimizer = { name = "gd_theory", rule = "constant", c = 100.0 }
""")
    (row,) = run_all(text, registry)
    assert row["status"] == "diverged"
    # strict JSON: the infinite final loss is null, named in nonfinite and in the error
    assert row["metrics"]["final_loss"] is None and row["metrics"]["stop_reason"] == "diverged"
    assert "metrics.final_loss" in row["nonfinite"] and "final_loss=inf" in row["error"]
    # with the window rule: the loss blows up at epoch 1, inside the first 5-epoch window, so
    # no window is complete and there is no authors' value
    (row,) = run_all(text.replace("window = 0", "window = 5"), registry)
    m = row["metrics"]
    assert row["status"] == "diverged" and m["stop_reason"] == "diverged" and m["stop_epoch"] == 2
    assert m["windows"] == 0 and m["reported_loss"] is None and m["reported_window_start"] is None


DANIELY = """id = "dan"
experiment = "two_layer_memorization"
m = {m}
d = {d}
steps = 3000
architecture = {{ name = "two_layer", q = {q} }}
dataset = {{ name = "sphere", targets = "sign" }}
optimizer = {{ name = "sgd", lr = 3.0, batch_size = 10 }}
"""


def test_two_layer_memorization_rows(registry):
    over = run_all(spec_text(DANIELY.format(m=100, d=50, q=20)), registry)[0]
    under = run_all(spec_text(DANIELY.format(m=200, d=10, q=2)), registry)[0]
    for row in (over, under):
        assert row["status"] == "ok", row["error"]
        m = row["metrics"]
        assert m["qd_over_m"] == m["q"] * row["params"]["d"] / m["m"]
        assert m["P"] == m["q"] * row["params"]["d"]  # the frozen output layer is not counted
        assert m["initial_output_max_abs"] <= 1e-15  # zero up to the rounding of the sums
        assert m["initial_loss"] == pytest.approx(1.0)  # hinge at h = 0 is the margin
    assert over["metrics"]["train_accuracy"] == 1.0 and over["metrics"]["final_loss"] == 0.0
    assert over["metrics"]["stop_reason"] == "tolerance"
    assert under["metrics"]["train_accuracy"] < 0.9
    # q = 2: one distinct hyperplane, so about half the points never activate a unit
    assert 0.1 < under["metrics"]["inactive_fraction"] < 0.7
    assert over["metrics"]["inactive_fraction"] == 0.0
    assert under["metrics"]["stop_reason"] == "max_steps" and under["metrics"]["steps"] == 3000


def test_symmetric_initialisation_output_is_exactly_zero(registry):
    """The paired units cancel exactly: equal rows of W give equal activations, and summing
    each half in the same order gives s and -s."""
    rng = np.random.default_rng(0)
    X, _ = registry.create("dataset", "sphere").sample(300, 20, rng)
    W, u = registry.create("initializer", "daniely_symmetric", {"B": 2.0}).initialize([(64, 20), (1, 64)], rng)
    F = registry.create("activation", "relu").phi(X @ W.T)
    h = F[:, :32] @ u[0, :32] + F[:, 32:] @ u[0, 32:]
    assert np.all(h == 0.0)
    assert np.max(np.abs(F @ u[0])) <= 1e-15


def test_labels_of():
    np.testing.assert_array_equal(labels_of(np.array([-0.3, 0.0, 2.0, -1.0])), [-1, 1, 1, -1])


@pytest.mark.parametrize("d, depth", [(10, 4), (3, 3), (20, 2)])
def test_matched_widths_are_the_closest(d, depth):
    def count(w):
        return d * w + (depth - 2) * w * w + w

    for target in (5, 50, 100, 400, 1600, 12345):
        w = deep_width(target, d, depth)
        assert abs(count(w) - target) == min(abs(count(v) - target) for v in range(1, 2000))
        q = two_layer_units(target, d)
        assert q % 2 == 0 and q >= 2
        assert abs(q * d - target) == min(abs(v * d - target) for v in range(2, 5000, 2))


CAPACITY = """id = "cap"
experiment = "capacity"
N = 60
d = 5
max_epochs = 400
gd_max_epochs = 400
seed_by = []
"""


def capacity_metrics(text: str, ratios: list[float], registry) -> dict:
    """Run the capacity block ``text`` over the four models and ``ratios`` (every cell must
    succeed): the metrics by ``(model, ratio)``."""
    rows = run_all(spec_text(text, f"""
[experiments.grid]
model = ["deep_adam", "deep_gd", "deep_gd_paper", "two_layer"]
ratio = {ratios}
"""), registry)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    return {(r["params"]["model"], r["params"]["ratio"]): r["metrics"] for r in rows}


def test_capacity_rows_share_data_and_record_steps(registry):
    by = capacity_metrics(CAPACITY, [0.5, 4.0], registry)
    for (model, ratio), m in by.items():
        assert m["reached_zero"] == (m["final_loss"] <= 1e-3)
        assert abs(m["P_over_N"] - ratio) <= 0.5 * ratio
    # same data and the same deep network: the two deep models start from the same loss
    for ratio in (0.5, 4.0):
        assert by[("deep_adam", ratio)]["initial_loss"] == by[("deep_gd", ratio)]["initial_loss"]
    two = by[("two_layer", 4.0)]
    assert two["eta_rule"].startswith("sgd lr = ntk_smooth") and two["lr"] == two["eta"]
    assert by[("deep_gd", 4.0)]["eta"] == pytest.approx(60 / (2 * by[("deep_gd", 4.0)]["lambda_max_K0"]))
    # deep_gd_paper: rule paper, eta = C / (gamma N d n_{L-1}) with the defaults gamma = 1, C = N/2;
    # both rows carry both rules, computed on the same network
    for ratio in (0.5, 4.0):
        gd, paper = by[("deep_gd", ratio)], by[("deep_gd_paper", ratio)]
        assert paper["eta_rule"].startswith("paper:") and gd["eta_rule"].startswith("ntk_smooth:")
        assert paper["eta"] == pytest.approx((60 / 2) / (60 * 5 * paper["width"]), rel=1e-14)
        assert paper["eta"] == gd["eta_paper"] and gd["eta"] == paper["eta_ntk_smooth"]
        assert paper["initial_loss"] == gd["initial_loss"]
    assert by[("two_layer", 4.0)]["final_loss"] < by[("two_layer", 0.5)]["final_loss"]


def test_gd_trains_until_it_memorises_or_its_own_budget(registry):
    """GD models get gd_max_epochs, the others max_epochs; every network stops once its loss is
    <= zero_tol / 10; the dry-run costs a GD cell at its whole budget."""
    text = CAPACITY.replace("max_epochs = 400\ngd_max_epochs = 400", "max_epochs = 30\ngd_max_epochs = 90")
    by = capacity_metrics(text, [0.5, 64.0], registry)
    for model in ("deep_gd", "deep_gd_paper"):
        low = by[(model, 0.5)]  # under-parameterised: never memorises, uses the whole budget
        assert (low["stop_epoch"], low["stop_reason"]) == (90, "max_epochs") and low["final_loss"] > 1e-4
    assert by[("deep_adam", 0.5)]["stop_epoch"] <= 30 and by[("two_layer", 0.5)]["stop_epoch"] <= 30
    # the tolerance rule stops a network that memorises before its budget, at its own epoch
    for (model, ratio), m in by.items():
        if m["stop_reason"] != "max_epochs":
            assert m["final_loss"] <= 1e-4 and m["stop_epoch"] < (90 if model.startswith("deep_gd") else 30)
    experiment = registry.get("experiment", "capacity")
    params = {"N": 60, "d": 5, "ratio": 2.0, "depth": 4, "max_epochs": 100, "two_layer_batch_size": 40}
    cost = {budget: experiment().estimate({**params, "model": "deep_gd", "gd_max_epochs": budget}, {})["seconds"]
            for budget in (1000, 100000)}
    assert cost[100000] == pytest.approx(100 * cost[1000], rel=1e-9)


def test_capacity_labels_name_the_rule_that_ran_and_the_budget(registry):
    from harness_plugins.memorization.capacity import model_label

    assert model_label({"model": "deep_gd", "gd_rule": "ntk", "gd_max_epochs": 500}) == \
        "deep_gd (GD, step rule ntk, <= 500 epochs)"
    assert model_label({"model": "deep_gd_paper", "gd_rule": "ntk", "gd_max_epochs": 500}) == \
        "deep_gd_paper (GD, step rule paper, <= 500 epochs)"
    assert model_label({"model": "deep_adam", "max_epochs": 3000, "gd_max_epochs": 9}) == \
        "deep_adam (Adam, lr 1/(10*sqrt(N)), <= 3000 epochs)"
    rows = run_all(spec_text(CAPACITY.replace("max_epochs = 400\n", "max_epochs = 20\n") + 'gd_rule = "ntk"\n', """
[experiments.grid]
model = ["deep_gd", "two_layer"]
ratio = [1.0]
"""), registry)
    figs = registry.create("experiment", "capacity").figures(rows, context("capacity"))
    legend = [t.get_text() for t in figs["capacity"].axes[0].get_legend().get_texts()]
    assert legend == ["deep_gd (GD, step rule ntk, <= 20 epochs)", "two_layer (SGD, step of rule ntk, <= 20 epochs)"]


def fake_row(model, ratio, final_loss, status="ok"):
    return {"params": {"model": model, "ratio": ratio}, "status": status,
            "metrics": {"final_loss": final_loss, "reached_zero": final_loss <= 1e-3, "P_over_N": ratio}}


def test_capacity_table_numbers():
    rows = [fake_row("deep_adam", 1.0, 1e-4), fake_row("deep_adam", 1.0, 0.1),
            fake_row("deep_adam", 1.0, 1e-5), fake_row("deep_gd", 1.0, math.inf, "diverged"),
            fake_row("deep_gd", 1.0, 0.2), {"params": {"model": "deep_gd", "ratio": 1.0}, "status": "failed",
                                            "metrics": {}}]
    lines = Capacity.table(rows)
    adam, gd = lines
    assert (adam["model"], adam["n"], adam["diverged"]) == ("deep_adam", 3, 0)
    assert adam["fraction_zero"] == pytest.approx(2 / 3)
    assert adam["final_loss_median"] == pytest.approx(1e-4)
    assert adam["final_loss_mean"] == pytest.approx((1e-4 + 0.1 + 1e-5) / 3)
    assert (gd["n"], gd["diverged"], gd["fraction_zero"]) == (2, 1, 0.0)
    assert gd["final_loss_mean"] == pytest.approx(0.2)
    # the answer: the fractions with their Wilson intervals (scipy's, computed independently)
    from scipy.stats import binomtest

    (table,) = Capacity().tables(rows, context("capacity"))
    assert [line[0] for line in table.rows] == ["deep_adam (Adam, lr 1/(10*sqrt(N)), <= 3000 epochs)",
                                                "deep_gd (GD, step rule ntk_smooth, <= 100000 epochs)"]
    ci = binomtest(2, 3).proportion_ci(method="wilson")
    assert table.cells()[0][3] == f"{2 / 3:.4g} [{ci.low:.4g}, {ci.high:.4g}]"
    ci = binomtest(0, 2).proportion_ci(method="wilson")
    assert table.cells()[1][3] == f"0 [0, {ci.high:.4g}]"


def context(exp):
    return FigureContext(benchmark="t", experiment_id="x", experiment=exp, grid={"N": [1, 2]}, repetitions=1)


@pytest.mark.slow
def test_figures(registry):
    from matplotlib.figure import Figure

    rows = run_all(spec_text(FIG2.format(epochs=120, window=50), """
[experiments.grid]
N = [20, 40]
d = [3, 5]
"""), registry)
    figs = registry.create("experiment", "memorization").figures(rows, context("memorization"))
    assert set(figs) == {"heatmap", "heatmap_final_loss", "loss_vs_P_over_N", "loss_curves"}
    assert len([a for a in figs["loss_curves"].axes if a.get_lines()]) == 4  # one panel per (N, d)
    assert all(isinstance(f, Figure) for f in figs.values())
    labels = [line.get_label() for line in figs["heatmap"].axes[0].get_lines()]
    assert "P = N" in labels
    p_line = figs["heatmap"].axes[0].get_lines()[labels.index("P = N")]
    np.testing.assert_array_equal(p_line.get_xdata(), [9, 25])
    np.testing.assert_array_equal(p_line.get_ydata(), [3 * 9 + 3, 3 * 25 + 5])

    rows = run_all(spec_text(DANIELY.format(m=40, d=8, q=2).replace(", q = 2", ""), """
[experiments.grid]
"architecture.q" = [4, 10, 20]
"""), registry)
    figs = registry.create("experiment", "two_layer_memorization").figures(rows, context("two_layer_memorization"))
    assert list(figs) == ["accuracy_vs_qd_over_m", "loss_curves"]
    ax = figs["accuracy_vs_qd_over_m"].axes[0]
    (errorbar,) = ax.containers  # one line per d, here one d
    curve = errorbar.lines[0]
    np.testing.assert_allclose(np.asarray(curve.get_xdata(), float), [4 * 8 / 40, 10 * 8 / 40, 20 * 8 / 40])
    np.testing.assert_allclose(np.asarray(curve.get_ydata(), float), [r["metrics"]["train_accuracy"] for r in rows])

    rows = [fake_row(m, r, 10 ** -r) for m in ("deep_adam", "two_layer") for r in (1.0, 2.0, 4.0)]
    figs = registry.create("experiment", "capacity").figures(rows, context("capacity"))
    assert set(figs) == {"capacity", "capacity_table"}
    assert registry.create("experiment", "capacity").figures([], context("capacity")) == {}


def test_estimates_are_positive(registry):
    for name, params, components in [
        ("memorization", {"N": 400, "d": 22, "max_epochs": 100},
         {"architecture": {"name": "fc", "params": {"widths": ["d", "d", "d"]}}}),
        ("two_layer_memorization", {"m": 100, "d": 10, "steps": 100}, {}),
        ("capacity", {"N": 100, "d": 5, "ratio": 2.0, "depth": 4, "max_epochs": 10, "window": 100,
                      "model": "two_layer", "two_layer_batch_size": 40}, {}),
    ]:
        est = registry.create("experiment", name).estimate(params, components)
        assert est["memory_bytes"] > 0 and est["seconds"] > 0


@pytest.mark.slow
def test_benchmark_files_load(registry):
    spec = load_spec(BENCHMARKS / "memorization.toml", registry=registry)
    (fig2,) = spec.experiments
    assert spec.repetitions == 10 and len(fig2.points) == 30 * 29
    ds = sorted({p["params"]["d"] for p in fig2.points})
    assert ds == sorted({math.floor(math.sqrt(500 * i)) for i in range(1, 31)}) and ds[-1] == 122
    Ns = sorted({p["params"]["N"] for p in fig2.points})
    assert Ns == [400 * i for i in range(1, 31) if i != 8]
    assert fig2.params["lr_rule"] == "1/(10*sqrt(N))" and fig2.params["max_epochs"] == 10000

    spec = load_spec(BENCHMARKS / "daniely.toml", registry=registry)
    for exp in spec.experiments:
        for p in exp.points:
            q = p["components"]["architecture"]["params"]["q"]
            assert q % 2 == 0 and q >= 2
            assert p["components"]["dataset"]["params"]["targets"] == "sign"

    spec = load_spec(BENCHMARKS / "capacity.toml", registry=registry)
    cap, searched = spec.experiments
    assert len(cap.points) == 20
    assert {p["params"]["model"] for p in cap.points} == {"deep_adam", "deep_gd", "deep_gd_paper", "two_layer"}
    cells = [c for c in spec.cells() if c.repetition == 0]
    assert len({c.spawn_key for c in cells}) == 1  # one seed per repetition: the same data everywhere
    # the threshold search over P/N sees the same data as the grid (seed_by = [])
    assert searched.search.axis == "ratio" and searched.search.holds == "high"
    (point,) = [p for p in searched.point_searches(spec.seed) if p.coords["model"] == "two_layer"]
    assert point.make_cells(2.0)[0].spawn_key == cells[0].spawn_key

    spec = load_spec(BENCHMARKS / "memorization_threshold.toml", registry=registry)
    (threshold,) = spec.experiments
    s = threshold.search
    assert (s.axis, s.metric, s.transform, s.condition, s.levels) == ("N", "reported_loss", "log10", "below",
                                                                       (-3.0, -4.0, -6.0))
    assert (s.warm_start, s.wave, s.tolerance) == (True, 1, 0.1)
    assert [p["coords"]["d"] for p in threshold.search_points] == [math.floor(math.sqrt(500 * i))
                                                                   for i in range(1, 31)]
    assert threshold.params["lr_rule"] == fig2.params["lr_rule"] and threshold.params["max_epochs"] == 10000
    assert threshold.search_points[0]["start"] == round(1.2 * 22 ** 2)


@pytest.mark.slow
def test_memorisation_threshold_and_its_fit_on_the_heat_map():
    from harness_plugins.memorization import _heatmap, memorisation_threshold

    # synthetic grid: memorised (log10 loss -6) exactly when N <= 2 d^2; one d never memorised
    cells = {}
    for d in (4, 6, 8, 10, 12):
        for N in (8, 16, 32, 64, 128, 256, 512):
            memorised = N <= 2 * d * d and d != 4
            cells[(d, N)] = [-6.0 if memorised else -1.0] * 2
    assert memorisation_threshold(cells) == {6: 64, 8: 128, 10: 128, 12: 256}
    cells[(6, 32)] = [-1.0, -1.0]  # a hole: the threshold stops below it
    assert memorisation_threshold(cells)[6] == 16

    def fake(d, N, v):  # the final loss is never memorised here: N* must come from reported_loss
        return {"status": "ok", "coords": {"d": d, "N": N}, "params": {"d": d, "N": N},
                "metrics": {"reported_loss": 10.0 ** v, "final_loss": 0.1, "P": 3 * d * d + d,
                            "P_over_N": (3 * d * d + d) / N, "d": d, "N": N}}

    rows = [fake(d, N, v) for (d, N), vals in cells.items() for v in vals]
    figs = installed_registry().create("experiment", "memorization").figures(rows, context("memorization"))
    final_labels = [line.get_label() for line in figs["heatmap_final_loss"].axes[0].get_lines()]
    assert not any(l.startswith("N*") for l in final_labels)  # no threshold on the final loss
    fig = figs["heatmap"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    points = fig.axes[0].get_lines()[[i for i, l in enumerate(labels) if l.startswith("N*")][0]]
    np.testing.assert_array_equal(points.get_xdata(), [36, 64, 100, 144])
    np.testing.assert_array_equal(points.get_ydata(), [16, 128, 128, 256])
    assert any(l.startswith("fit N* against d^2") for l in labels)
    # a threshold at the top of the grid is censored: with fewer than 3 left, no fit is drawn
    for N in (256, 512):
        cells[(8, N)] = cells[(10, N)] = cells[(12, N)] = [-6.0, -6.0]
    rows = [r for r in rows if r["coords"]["N"] < 256]
    for (d, N), vals in cells.items():
        if N >= 256:
            rows += [fake(d, N, v) for v in vals]
    fig = _heatmap(rows, context("memorization"), "reported_loss", "reported loss", threshold=True)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert not any(l.startswith("fit N*") for l in labels) and any(l.startswith("N*") for l in labels)


def test_heat_map_draws_the_level_lines():
    """Mean log10(reported_loss) = -N / 100 at every d: the lines of the levels -3, -4, -6 lie at
    N = 300, 400, 600 (the cell centres interpolated linearly), across the whole d range."""
    from matplotlib.contour import ContourSet

    def row(d, N):
        return {"status": "ok", "coords": {"d": d, "N": N}, "params": {"d": d, "N": N},
                "metrics": {"reported_loss": 10.0 ** (-N / 100), "final_loss": 1.0, "P": 3 * d * d + d,
                            "P_over_N": (3 * d * d + d) / N}}

    rows = [row(d, N) for d in (10, 20, 30) for N in (100, 250, 500, 700, 900)]
    figs = installed_registry().create("experiment", "memorization").figures(rows, context("memorization"))
    ax = figs["heatmap"].axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert list(lines.levels) == [-6.0, -4.0, -3.0]
    for level, segments in zip(lines.levels, lines.allsegs):
        points = np.concatenate(segments)
        np.testing.assert_allclose(points[:, 1], -100 * level, rtol=1e-9)  # N where the mean crosses
        assert points[:, 0].min() == 100 and points[:, 0].max() == 900  # over every d^2
    assert "white lines: where the mean log10 crosses -6, -4, -3" in figs["heatmap"].texts[0].get_text()
    final = figs["heatmap_final_loss"].axes[0]
    assert not [c for c in final.collections if isinstance(c, ContourSet)]  # only on the reported loss


def test_heat_maps_average_log10_of_reported_loss():
    """Fig. 2's heat map is the mean over repetitions of log10(reported_loss) (not the log of the
    mean, not final_loss); the final loss has its own map; memorised: that mean <= -3."""
    from harness_plugins.memorization import MEMORISED_LOG10

    assert MEMORISED_LOG10 == -3.0

    def row(d, N, reported, final, status="ok"):
        return {"status": status, "coords": {"d": d, "N": N}, "params": {"d": d, "N": N},
                "metrics": {"reported_loss": reported, "final_loss": final, "P": 3 * d * d + d,
                            "P_over_N": (3 * d * d + d) / N}}

    rows = [
        # (d=2, N=4): log10 -1 and -6 -> mean -3.5, memorised (log10 of the mean would be -1.3)
        row(2, 4, 1e-1, 1e-2), row(2, 4, 1e-6, 1e-4),
        # (d=2, N=8): -2 and -3.5 -> -2.75, not memorised
        row(2, 8, 1e-2, 1e-8), row(2, 8, 10 ** -3.5, 1e-8),
        # (d=3, N=4): -4 and -3 -> -3.5; (d=3, N=8): one repetition has no value -> blank
        row(3, 4, 1e-4, 1.0), row(3, 4, 1e-3, 1.0),
        row(3, 8, 1e-9, 1e-9), row(3, 8, None, 1e-9),
    ]
    figs = installed_registry().create("experiment", "memorization").figures(rows, context("memorization"))
    from matplotlib.collections import QuadMesh

    (mesh,) = [c for c in figs["heatmap"].axes[0].collections if isinstance(c, QuadMesh)]
    Z = np.ma.getdata(mesh.get_array()).reshape(2, 2)  # rows N = 4, 8; columns d = 2, 3
    mask = np.ma.getmaskarray(mesh.get_array()).reshape(2, 2)
    np.testing.assert_allclose(Z[0], [-3.5, -3.5], rtol=1e-12)
    assert Z[1, 0] == pytest.approx(-2.75, rel=1e-12) and mask[1, 1] and not mask[1, 0]
    assert "reported loss" in figs["heatmap"].axes[0].get_title()
    (mesh,) = [c for c in figs["heatmap_final_loss"].axes[0].collections if isinstance(c, QuadMesh)]
    Zf = np.ma.getdata(mesh.get_array()).reshape(2, 2)
    np.testing.assert_allclose(Zf, [[-3.0, 0.0], [-8.0, -9.0]], rtol=1e-12)
    assert "final loss" in figs["heatmap_final_loss"].axes[0].get_title()

    from harness_plugins.memorization import _grid_means, memorisation_threshold

    cells, _ = _grid_means(rows, "reported_loss")
    assert cells[(3, 8)] == [-9.0, math.inf]
    assert memorisation_threshold(cells) == {2: 4, 3: 4}
    # a diverged repetition counts as not memorised, whatever its reported value
    rows[1] = row(2, 4, 1e-6, math.inf, status="diverged")
    cells, _ = _grid_means(rows, "reported_loss")
    assert cells[(2, 4)] == [-1.0, math.inf] and memorisation_threshold(cells) == {3: 4}


# ---- issue 13: late failures refused at load; rows show the lr used; timings apart

@pytest.mark.parametrize("extra, grid, message", [
    ('N = 20\nd = 5\nlr_rule = "q / N"', "", "experiments.fig2.lr_rule = 'q / N': uses q; allowed: N, d, P"),
    ('N = 20\nd = 5\nlr_rule = "1 - N"', "",
     "experiments.fig2.lr_rule = '1 - N': gives -19 at N = 20, d = 5, P = 80; a learning rate must be a finite"),
    ('N = 20\narchitecture = { name = "fc", widths = ["d - 10"] }', "[experiments.grid]\nd = [12, 5]",
     "experiments.fig2.architecture.widths = 'd - 10': gives -5 at d = 5; a width must be an integer >= 1 "
     "(at grid point d=5)"),
    ('N = 20\nd = 5\ndataset = { name = "gaussian", targets = "teacher", teacher_activation = "relux" }', "",
     "experiments.fig2.dataset.teacher_activation = 'relux': unknown activation 'relux'"),
])
def test_late_failures_are_refused_when_the_file_loads(registry, extra, grid, message):
    text = spec_text(FIG2.format(epochs=3, window=0).replace(
        'architecture = { name = "fc", widths = ["d", "d", "d"] }\n', "" if "architecture" in extra else
        'architecture = { name = "fc", widths = ["d", "d", "d"] }\n') + extra, grid)
    with pytest.raises(SpecError) as info:
        parse_spec(text, "m.toml", registry=registry)
    assert str(info.value).startswith("m.toml: ") and message in str(info.value)


def test_rows_show_the_lr_used_and_keep_timings_apart(registry):
    (row,) = run_all(spec_text(FIG2.format(epochs=5, window=0) + "N = 25\nd = 4\n"), registry)
    assert row["status"] == "ok"
    lr = 1 / (10 * math.sqrt(25))
    assert row["components"]["optimizer"]["params"]["lr"] == pytest.approx(lr)  # not adam's default
    assert row["resolved"] == {"architecture.widths": [4, 4, 4], "optimizer.lr": pytest.approx(lr)}
    assert "train_seconds" in row["timings"] and not any("seconds" in k for k in row["metrics"])


def test_memorisation_figures_never_pool_an_extra_axis(registry):
    # two_layer_memorization: an activation axis besides d, m and q gets its own lines
    rows = []
    for act, acc in (("relu", 0.9), ("tanh", 0.6)):
        for q in (4, 10):
            rows.append({"coords": {"architecture.q": q, "activation": act}, "status": "ok",
                         "params": {"d": 8, "m": 40},
                         "metrics": {"train_accuracy": acc, "qd_over_m": q * 8 / 40}})
    figs = registry.create("experiment", "two_layer_memorization").figures(rows, context("two_layer_memorization"))
    ax = figs["accuracy_vs_qd_over_m"].axes[0]
    assert len(ax.containers) == 2
    labels = ax.get_legend_handles_labels()[1]
    assert "activation=relu: d = 8, m = 40" in labels and "activation=tanh: d = 8, m = 40" in labels
    ys = sorted(float(c.lines[0].get_ydata()[0]) for c in ax.containers)
    assert ys == [0.6, 0.9]  # not their mean
    # capacity: an axis besides model and ratio splits the figure and the table
    rows = [{**fake_row(m, r, 10 ** -r), "coords": {"model": m, "ratio": r, "d": d}}
            for d in (3, 5) for m in ("deep_adam", "two_layer") for r in (1.0, 2.0)]
    figs = registry.create("experiment", "capacity").figures(rows, context("capacity"))
    assert set(figs) == {"capacity-1_d=3", "capacity_table-1_d=3", "capacity-2_d=5", "capacity_table-2_d=5"}
    assert any(t.get_text() == "d=5" for t in figs["capacity-2_d=5"].texts)
    unsplit = [{**r, "coords": {"model": r["params"]["model"], "ratio": r["params"]["ratio"]}}
               for r in rows if r["coords"]["d"] == 3]
    assert set(registry.create("experiment", "capacity").figures(unsplit, context("capacity"))) == {
        "capacity", "capacity_table"}


@pytest.mark.slow
def test_loss_curves_one_panel_per_point_one_line_per_repetition_capped():
    from harness_plugins.memorization.figures import MAX_LOSS_CURVE_PANELS, loss_curves_figure

    rows = [{"coords": {"N": N, "d": 3}, "status": "ok", "repetition": rep,
             "curves": {"loss_curve": [1.0, 0.1 / (rep + 1), 0.01], "loss_curve_epoch": [1, 5, 10]}}
            for N in (10, 20) for rep in range(3)]
    fig = loss_curves_figure(rows, context("memorization"))
    drawn = [a for a in fig.axes if a.get_lines()]
    assert len(drawn) == 2 and all(len(a.get_lines()) == 3 for a in drawn)
    assert [a.get_title() for a in drawn] == ["N=10, d=3", "N=20, d=3"]
    big = [{**r, "coords": {"N": N, "d": 3}} for N in range(40) for r in rows[:1]]
    fig = loss_curves_figure(big, context("memorization"))
    drawn = [a for a in fig.axes if a.get_lines()]
    assert len(drawn) == MAX_LOSS_CURVE_PANELS
    assert drawn[0].get_title() == "N=0, d=3" and drawn[-1].get_title() == "N=39, d=3"
    assert any(f"showing {MAX_LOSS_CURVE_PANELS} of 40 grid points" in t.get_text() for t in fig.texts)
    assert loss_curves_figure([{"coords": {}, "status": "ok", "curves": {}}], context("memorization")) is None


def test_capacity_slots_model_sizes_the_configured_architecture(registry):
    rows = run_all(spec_text(CAPACITY.replace("max_epochs = 400", "max_epochs = 20") + """model = "slots"
architecture = { name = "residual", blocks = 2, bias = true }
optimizer = "adam"
""", """
[experiments.grid]
ratio = [16.0, 32.0]
"""), registry)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for r in rows:
        target = r["params"]["ratio"] * 60
        assert abs(r["metrics"]["P"] - target) <= 0.05 * target
        arch = r["components"]["architecture"]
        assert arch["name"] == "residual" and arch["params"]["width"] == r["metrics"]["width"]
        assert registry.create("architecture", "residual", arch["params"]).param_count(5) == r["metrics"]["P"]
        assert r["components"]["optimizer"]["name"] == "adam"
    # the built-in models leave the optional slots unset: their rows show what they create
    plain = run_all(spec_text(CAPACITY + 'model = "two_layer"\n'), registry)
    assert plain[0]["components"]["optimizer"]["name"] == "sgd"
    with pytest.raises(SpecError, match="needs the architecture slot"):
        parse_spec(spec_text(CAPACITY + 'model = "slots"\noptimizer = "adam"\n'), registry=registry)


def test_capacity_slots_model_takes_a_plugin_architecture():
    from harness import Architecture, Param
    from harness.plugin.manager import load_registry

    class Wide(Architecture):  # a plugin architecture: d -> width -> 1, all trained
        name = "wide_test"
        help = "one hidden layer"
        params = (Param("width", int, 3, min=1),)

        def layer_shapes(self, d):
            return [(self.width, d), (1, self.width)]

    registry = load_registry()
    registry.add(Wide)
    rows = run_all(spec_text(CAPACITY.replace("max_epochs = 400", "max_epochs = 10") + """model = "slots"
ratio = 3.0
architecture = "wide_test"
optimizer = { name = "sgd", lr = 0.01 }
"""), registry)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    m = rows[0]["metrics"]
    assert m["width"] == 30 and m["P"] == 180 and m["lr"] == 0.01
    assert rows[0]["components"]["architecture"] == {"name": "wide_test", "params": {"width": 30}}


def test_rows_record_every_key_an_optimizer_prepares():
    """A new optimizer's ``prepare()`` keys land in the row as ``optimizer.<key>`` (a scalar as a
    metric, a list as a curve); the step-size fields stay under their own names."""
    from harness.plugin.manager import load_registry
    from harness_plugins.optimizers import SGD

    class Diagnosed(SGD):
        name = "sgd_diagnosed_test"
        help = "SGD whose prepare() reports diagnostics of its own"

        def prepare(self, problem):
            return {"lr": self.lr, "eta": self.lr, "grad_norm0": 2.5, "schedule": "flat",
                    "probe_steps": [1.0, 2.0]}

    registry = load_registry()
    registry.add(Diagnosed)
    (row,) = run_all(spec_text(FIG2.format(epochs=5, window=0) + """N = 30
d = 4
lr_rule = ""
optimizer = { name = "sgd_diagnosed_test", lr = 0.01 }
"""), registry)
    assert row["status"] == "ok", row["error"]
    m = row["metrics"]
    assert m["optimizer.grad_norm0"] == 2.5 and m["optimizer.schedule"] == "flat"
    assert row["curves"]["optimizer.probe_steps"] == [1.0, 2.0]
    assert m["lr"] == 0.01 and m["eta"] == 0.01
    assert m["eta_rule"] is None and m["eta_paper"] is None  # the step-size fields every row has


def test_threshold_search_figures_one_line_per_level():
    """N* = c_l d^2 exactly at the levels -3, -4, -6 (c = 1.4, 0.9, 0.8): one line, band and fit
    per level, the fit's slope c_l, and how the runs at each threshold stopped."""
    from matplotlib.collections import PolyCollection

    from harness_plugins.memorization.threshold_figures import search_map, threshold_figure, threshold_lines

    slopes = {-3.0: 1.4, -4.0: 0.9, -6.0: 0.8}
    thresholds, rows = [], []
    for d in (22, 31, 38, 44):
        for level, c in slopes.items():
            n_star = c * d * d
            thresholds.append({"d": d, "i": d, "level": level, "threshold": n_star, "lower": 0.97 * n_star,
                               "upper": 1.03 * n_star, "ci_low": 0.9 * n_star, "ci_high": 1.1 * n_star,
                               "status": "found", "n_cells": 80, "early_stop_fraction": 0.5 if level == -3 else 1.0,
                               "median_stop_epoch": 10 * d})
        for N in (400, 800):
            rows.append({"status": "ok", "params": {"d": d, "N": N}, "coords": {"d": d, "N": N},
                         "metrics": {"P": 3 * d * d + d, "reported_loss": 1e-4}})
    lines = threshold_lines(thresholds, rows)
    assert [(t["d"], t["level"]) for t in lines[:3]] == [(22, -3.0), (22, -4.0), (22, -6.0)]
    assert lines[0]["N_star_over_d2"] == pytest.approx(1.4) and lines[0]["P"] == 3 * 22 * 22 + 22
    assert lines[0]["N_star_over_P"] == pytest.approx(1.4 * 484 / 1474)
    ctx = FigureContext(benchmark="t", experiment_id="x", experiment="memorization", grid={"i": [1, 2, 3, 4]},
                        repetitions=10, search={"axis": "N", "lower": 100, "upper": 40000, "below": [-3, -4, -6],
                                                "transform": "log10", "metric": "reported_loss"})
    fig = threshold_figure(lines, ctx)
    ax, ax_early, ax_epoch = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    for level, c in slopes.items():
        fit = next(line for line in ax.get_lines() if line.get_label().endswith(f"(level {level:g})"))
        assert fit.get_label().startswith(f"fit N* = {c:.3g} [")
        x = np.asarray(fit.get_xdata(), float)
        np.testing.assert_allclose(np.asarray(fit.get_ydata(), float)[1:] / x[1:], c, rtol=1e-9)
    assert len(ax.containers) == 3  # one errorbar line per level
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3  # one bootstrap band each
    assert "d^2 = N" in labels and "P = N" in labels
    early = {line.get_label(): list(line.get_ydata()) for line in ax_early.get_lines()}
    assert early == {"level -3": [0.5] * 4, "level -4": [1.0] * 4, "level -6": [1.0] * 4}
    assert [list(line.get_ydata()) for line in ax_epoch.get_lines()][0] == [220, 310, 380, 440]
    assert "stopped early" in fig.texts[0].get_text()
    smap = search_map(rows, lines, ctx)
    assert [line.get_label() for line in smap.axes[0].get_lines()] == ["N* level -3", "N* level -4", "N* level -6"]


def test_training_rows_say_how_they_stopped(registry):
    """Experiment.stopping of the training experiments: the window rule is an early stop; the
    epoch budget, a tolerance or divergence are not; a row without the record says nothing."""
    from harness_plugins.memorization._common import training_stopping

    assert training_stopping({"stop_reason": "window", "stop_epoch": 700}) == (True, 700.0)
    for reason in ("max_epochs", "tolerance", "diverged"):
        assert training_stopping({"stop_reason": reason, "stop_epoch": 10000}) == (False, 10000.0)
    assert training_stopping({"stop_epoch": 5}) is None and training_stopping({}) is None
    rows = run_all(spec_text(FIG2.format(epochs=400, window=20), "[experiments.grid]\nN = [20]\nd = [3]\n"), registry)
    for name in ("memorization", "two_layer_memorization", "capacity"):
        cls = registry.get("experiment", name)
        assert cls.stopping(rows[0]["metrics"]) == training_stopping(rows[0]["metrics"]) is not None
    early, epoch = registry.get("experiment", "memorization").stopping(rows[0]["metrics"])
    assert epoch == rows[0]["metrics"]["stop_epoch"] and early == (rows[0]["metrics"]["stop_reason"] == "window")


def test_window_epochs_grow_with_the_samples():
    """The epoch model of the estimates: the P/N shape at N = 500, times (N / 500)^0.25 (16 times
    the samples: twice the epochs), within the epoch budget."""
    from harness_plugins.memorization.costs import _expected_epochs, window_epochs

    shape = 100 * (7 + 38 / (1 + (2.0 / 1.3) ** 4))
    assert window_epochs(2.0, 100) == pytest.approx(shape)
    assert window_epochs(2.0, 100, N=500) == pytest.approx(shape)
    assert window_epochs(2.0, 100, N=8000) == pytest.approx(2 * shape)
    assert _expected_epochs({"max_epochs": 10000, "window": 100}, P=16000, N=8000) == pytest.approx(2 * shape)
    assert _expected_epochs({"max_epochs": 1000, "window": 100}, P=16000, N=8000) == 1000
    assert _expected_epochs({"max_epochs": 700, "window": 0}, P=16000, N=8000) == 700


def test_answer_tables_of_memorization_grid_and_search(registry):
    """Grid: the largest N memorised per d and each point's mean log10(reported_loss); search: N*(d)
    as N*/d^2 and N*/P with the fit N* = c d^2 (least squares through the origin)."""
    from harness_plugins.memorization.tables import search_table

    rows = run_all(spec_text(FIG2.format(epochs=600, window=50), """
[experiments.grid]
N = [10, 200]
d = [6]
""", reps=3), registry)
    threshold, points = registry.create("experiment", "memorization").tables(rows, context("memorization"))
    logs = {N: [max(math.log10(r["metrics"]["reported_loss"]), -10.0) for r in rows if r["params"]["N"] == N]
            for N in (10, 200)}  # clipped at LOG10_FLOOR, as the heat map and the threshold read them
    by_n = {line[2]: line for line in points.cells()}
    for N in (10, 200):
        assert by_n[str(N)][4].startswith(f"{np.mean(logs[N]):.4g}")
        assert by_n[str(N)][5] == ("yes" if np.mean(logs[N]) <= -3 else "no")
    expected = 200 if all(np.mean(logs[N]) <= -3 for N in (10, 200)) else (10 if np.mean(logs[10]) <= -3 else "< 10")
    assert threshold.cells()[0][3] == str(expected)
    # a search: two d with their thresholds
    fake = [{"params": {"d": d}, "metrics": {"P": 3 * d * d + d}, "status": "ok"} for d in (22, 31)]
    lines = [{"d": d, "threshold": n, "lower": n - 5, "upper": n + 5, "ci_low": n - 20, "ci_high": n + 20,
              "status": "found", "n_cells": 30} for d, n in ((22, 719.0), (31, 1337.0))]
    (table,) = search_table(lines, fake, context("memorization"))
    assert table.headline and table.columns[:5] == ["d", "P", "N* [95% bootstrap]", "N*/d^2", "N*/P"]
    assert [c[3] for c in table.cells()] == [f"{719 / 484:.4g}", f"{1337 / 961:.4g}"]
    assert table.cells()[0][4] == f"{719 / (3 * 484 + 22):.4g}"
    c = (484 * 719 + 961 * 1337) / (484 ** 2 + 961 ** 2)
    assert f"N* = {c:.4g} (no interval: fewer than 3 d) d^2" in table.notes[1]
    # several levels: one table with a level column, a fit per level
    levels = [dict(t, level=level, threshold=t["threshold"] * f) for t in lines for level, f in ((-3, 1.0), (-6, 0.5))]
    (table,) = search_table(levels, fake, context("memorization"))
    assert table.columns[0] == "level" and [line[:2] for line in table.cells()] == [
        ["-3", "22"], ["-3", "31"], ["-6", "22"], ["-6", "31"]]
    assert table.cells()[2][4] == f"{0.5 * 719 / 484:.4g}"
    assert f"level -3: N* = {c:.4g} (no interval" in table.notes[1]
    assert f"level -6: N* = {0.5 * c:.4g} (no interval" in table.notes[1]




def test_two_layer_answer_table():
    from scipy.stats import binomtest

    from harness_plugins.memorization.tables import two_layer_tables

    def row(r, acc):
        return {"status": "ok", "params": {"d": 10, "m": 100}, "metrics": {"qd_over_m": r, "train_accuracy": acc}}

    rows = [row(0.5, 0.9), row(0.5, 1.0), row(0.5, 0.95), row(1.0, 1.0), row(1.0, 0.99), row(1.0, 1.0),
            row(2.0, 1.0), row(2.0, 1.0), row(2.0, 1.0)]
    (table,) = two_layer_tables(rows, context("two_layer_memorization"))
    cells = table.cells()
    assert [c[2] for c in cells] == ["0.5", "1", "2"]
    assert cells[0][3].startswith(f"{np.mean([0.9, 1.0, 0.95]):.4g} [")
    ci = binomtest(2, 3).proportion_ci(method="wilson")
    assert cells[1][4] == f"{2 / 3:.4g} [{ci.low:.4g}, {ci.high:.4g}]"
    assert [c[5] for c in cells] == ["2", "", ""]  # every seed at 100% from q d / m = 2 on


def test_dtype_speed_table_pairs_the_repetitions():
    from harness_plugins.memorization.tables import dtype_speed_table

    def row(dtype, rep, seconds, epochs=100):
        return {"status": "ok", "coords": {"dtype": dtype}, "repetition": rep, "params": {"N": 1200, "d": 38},
                "metrics": {"stop_epoch": epochs}, "timings": {"train_seconds": seconds}}

    f64, f32 = [0.10, 0.12, 0.11, 0.13], [0.06, 0.06, 0.066, 0.052]
    rows = [row("float64", i, s) for i, s in enumerate(f64)] + [row("float32", i, s) for i, s in enumerate(f32)]
    table = dtype_speed_table(rows, context("memorization"))
    (line,) = table.cells()
    assert line[1:4] == ["1200", "38", "4"]
    assert line[4] == f"{1e3 * np.median(f64) / 100:.4g}" and line[5] == f"{1e3 * np.median(f32) / 100:.4g}"
    ratio = np.exp(np.mean(np.log(np.array(f32) / np.array(f64))))
    assert line[6].startswith(f"{ratio:.4g} [")
    assert dtype_speed_table([row("float64", 0, 0.1)], context("memorization")) is None
