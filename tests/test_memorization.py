"""The memorisation experiments (plugins/memorization.py) and their benchmark files."""
import math
from pathlib import Path

import numpy as np
import pytest

from harness import SpecError
from harness.components import FigureContext
from harness.conformance import check_component
from harness.execute import run_cell
from harness.plugin_manager import get_registry
from harness.spec import load_spec, parse_spec
from harness_plugins.memorization import Capacity, deep_width, labels_of, two_layer_units

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def registry():
    return get_registry()


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


@pytest.mark.parametrize("name", ["memorization", "two_layer_memorization", "capacity"])
def test_conformance(name):
    failed = [str(r) for r in check_component("experiment", name) if not r.passed]
    assert not failed, failed


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
        assert m["window_loss"] == pytest.approx(sums[-1] / 50, rel=1e-12)
        if m["stop_reason"] == "window":
            assert sums[-1] > sums[-2] and all(b <= a for a, b in zip(sums[:-2], sums[1:-1]))
            assert m["stop_epoch"] % 100 == 0
        else:
            assert m["stop_reason"] == "max_epochs" and m["stop_epoch"] == 3000
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
    assert row["metrics"]["final_loss"] == math.inf and row["metrics"]["stop_reason"] == "diverged"


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
seed_by = []
"""


def test_capacity_rows_share_data_and_record_steps(registry):
    rows = run_all(spec_text(CAPACITY, """
[experiments.grid]
model = ["deep_adam", "deep_gd", "two_layer"]
ratio = [0.5, 4.0]
"""), registry)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    by = {(r["params"]["model"], r["params"]["ratio"]): r["metrics"] for r in rows}
    for (model, ratio), m in by.items():
        assert m["reached_zero"] == (m["final_loss"] <= 1e-3)
        assert abs(m["P_over_N"] - ratio) <= 0.5 * ratio
    # same data and the same deep network: the two deep models start from the same loss
    for ratio in (0.5, 4.0):
        assert by[("deep_adam", ratio)]["initial_loss"] == by[("deep_gd", ratio)]["initial_loss"]
    two = by[("two_layer", 4.0)]
    assert two["eta_rule"].startswith("sgd lr = ntk_smooth") and two["lr"] == two["eta"]
    assert by[("deep_gd", 4.0)]["eta"] == pytest.approx(60 / (2 * by[("deep_gd", 4.0)]["lambda_max_K0"]))
    assert by[("two_layer", 4.0)]["final_loss"] < by[("two_layer", 0.5)]["final_loss"]


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


def context(exp):
    return FigureContext(benchmark="t", experiment_id="x", experiment=exp, grid={"N": [1, 2]}, repetitions=1)


def test_figures(registry):
    from matplotlib.figure import Figure

    rows = run_all(spec_text(FIG2.format(epochs=120, window=50), """
[experiments.grid]
N = [20, 40]
d = [3, 5]
"""), registry)
    figs = registry.create("experiment", "memorization").figures(rows, context("memorization"))
    assert set(figs) == {"heatmap", "heatmap_window_loss", "loss_vs_P_over_N"}
    assert all(isinstance(f, Figure) for f in figs.values())
    labels = [line.get_label() for line in figs["heatmap"].axes[0].get_lines()]
    assert "P = N" in labels
    p_line = figs["heatmap"].axes[0].get_lines()[labels.index("P = N")]
    np.testing.assert_array_equal(p_line.get_xdata(), [9, 25])
    np.testing.assert_array_equal(p_line.get_ydata(), [3 * 9 + 3, 3 * 25 + 5])

    rows = run_all(spec_text(DANIELY.format(m=40, d=8, q=2), """
[experiments.grid]
"architecture.q" = [4, 10, 20]
"""), registry)
    figs = registry.create("experiment", "two_layer_memorization").figures(rows, context("two_layer_memorization"))
    assert list(figs) == ["accuracy_vs_qd_over_m"]
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
    (cap,) = spec.experiments
    assert len(cap.points) == 15
    cells = [c for c in spec.cells() if c.repetition == 0]
    assert len({c.spawn_key for c in cells}) == 1  # one seed per repetition: the same data everywhere


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

    rows = []
    for (d, N), vals in cells.items():
        for v in vals:
            rows.append({"status": "ok", "coords": {"d": d, "N": N}, "params": {"d": d, "N": N},
                         "metrics": {"final_loss": 10.0 ** v, "P": 3 * d * d + d, "d": d, "N": N}})
    fig = _heatmap(rows, context("memorization"), "final_loss", "final loss")
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
            rows += [{"status": "ok", "coords": {"d": d, "N": N}, "params": {"d": d, "N": N},
                      "metrics": {"final_loss": 10.0 ** v, "P": 3 * d * d + d, "d": d, "N": N}} for v in vals]
    fig = _heatmap(rows, context("memorization"), "final_loss", "final loss")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert not any(l.startswith("fit N*") for l in labels) and any(l.startswith("N*") for l in labels)
