"""Tests of the quadratic_flow plugin: the quadratic_student architecture and its initializer,
the quadratic_flow experiment (rows, recovery, flows, finite sample, cost) and its figures."""
import io
import math

import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness import Activation, CellContext
from harness.engine.network import forward
from harness.plugin.conformance import assert_conforms
from harness.plugin.context import FigureContext
from harness_plugins.quadratic_flow import QuadraticFlow, QuadraticStudent, QuadraticStudentInit
from harness_plugins.quadratic_flow import quadratic as q


class _Square(Activation):
    name = "_test_square"
    help = "z^2"

    def phi(self, x):
        return x * x

    def dphi(self, x):
        return 2 * x

    def d2phi(self, x):
        return 2 * np.ones_like(x)


def _cell(seed=0):
    return CellContext(components={}, seed=np.random.SeedSequence(seed))


def _run(seed=0, **params):
    return QuadraticFlow(**params).run(_cell(seed))


@pytest.mark.parametrize("kind,name", [("architecture", "quadratic_student"),
                                       ("initializer", "quadratic_student_init"),
                                       ("experiment", "quadratic_flow")])
def test_registered_and_conforms(kind, name):
    registry = installed_registry()
    assert registry.provider_of(kind, name) == "harness"
    assert_conforms(kind, name, registry)


@pytest.mark.parametrize("init", ["orthonormal", "gaussian"])
def test_architecture_with_initializer_is_the_quadratic_network(init):
    d, m = 9, 5
    arch = QuadraticStudent(m=m)
    weights = QuadraticStudentInit(init=init, norm=1.5).initialize(arch.layer_shapes(d),
                                                                   np.random.default_rng(1))
    assert arch.trainable(d) == [True, False]
    np.testing.assert_array_equal(weights[1], np.full((1, m), 1 / m))
    if init == "orthonormal":
        np.testing.assert_allclose(weights[0] @ weights[0].T, 2.25 * np.eye(m), atol=1e-12)
    X = np.random.default_rng(2).standard_normal((7, d))
    out = arch.forward(weights, X, _Square())
    np.testing.assert_allclose(out, q.quadratic_output(weights[0].T, X), rtol=1e-12)
    np.testing.assert_allclose(out, forward(weights, X, _Square()).output, rtol=1e-12)


def test_initializer_more_rows_than_dimensions_uses_orthonormal_blocks():
    W1, _ = QuadraticStudentInit().initialize([(7, 3), (1, 7)], np.random.default_rng(3))
    for block in (W1[:3], W1[3:6]):
        np.testing.assert_allclose(block @ block.T, np.eye(3), atol=1e-12)
    assert np.linalg.norm(W1[6]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        QuadraticStudentInit().initialize([(4, 3), (2, 4), (1, 2)], np.random.default_rng(3))


def test_row_for_overparameterised_student_recovers():
    d, m, ms = 100, 20, 10
    out = _run(d=d, m=m, m_star=ms, t_max=100.0, n_points=51)
    assert out["initial_draw"] == "overlaps" and out["solver_success"]
    assert len(out["t"]) == len(out["risk"]) == 51 and out["t"][-1] == 100.0
    assert out["risk"][0] == pytest.approx(out["initial_risk"])
    assert out["recovered"] is True
    assert 0 < out["escape_time"] < out["time_to_recovery"] < 100.0
    # the recorded curve is consistent with the located crossing
    t, risk = np.array(out["t"]), np.array(out["risk"])
    level = 1e-2 * out["initial_risk"]
    assert np.all(risk[t < out["time_to_recovery"]] > level * (1 - 1e-6))
    assert np.all(risk[t > out["time_to_recovery"]] <= level * (1 + 1e-6))
    assert out["final_relative_risk"] < 1e-2
    # the student starts almost orthogonal to the teacher (E overlap = m*/d) and ends inside it
    assert 0.3 * ms / d < out["initial_subspace_overlap"] < 3 * ms / d
    assert out["final_subspace_overlap"] > 0.95
    assert out["final_overlap_cosine"] > 0.999


@pytest.mark.parametrize("init", ["orthonormal", "gaussian"])
def test_row_for_underparameterised_student_does_not_recover(init):
    out = _run(d=100, m=5, m_star=10, init=init, t_max=100.0, n_points=11)
    assert out["recovered"] is False and out["time_to_recovery"] is None
    assert out["final_relative_risk"] > 0.1
    if init == "orthonormal":  # a rank-5 A captures at most half of A* = P*/10: cosine <= sqrt(5/10)
        assert out["final_overlap_cosine"] <= np.sqrt(0.5) + 1e-6


def test_weight_flow_and_overlap_flow_give_the_same_row():
    """n_train > 0 draws the weights, so both flows start from the same point."""
    params = dict(d=60, m=8, m_star=4, t_max=40.0, n_points=21, n_train=40, gd_step=0.1, rtol=1e-10,
                  atol=1e-14)
    a = _run(seed=5, flow="weights", **params)
    b = _run(seed=5, flow="overlaps", **params)
    np.testing.assert_allclose(a["risk"], b["risk"], rtol=1e-6)
    assert a["time_to_recovery"] == pytest.approx(b["time_to_recovery"], rel=1e-5)
    assert a["gd_risk"] == b["gd_risk"]
    # 40 samples < d(d+1)/2: gradient descent fits them and misses the teacher
    assert a["gd_final_train_loss"] < 0.1 * a["gd_final_risk"]
    assert a["gd_recovered"] is False


def test_finite_sample_row_approaches_the_flow_with_many_samples():
    out = _run(seed=6, d=10, m=4, m_star=2, t_max=30.0, n_points=31, n_train=3000, gd_step=0.05)
    np.testing.assert_allclose(out["gd_t"], out["t"], atol=1e-12)
    gap = np.max(np.abs(np.array(out["gd_risk"]) - np.array(out["risk"]))) / out["initial_risk"]
    assert gap < 0.05
    assert out["gd_recovered"] is True
    assert out["gd_time_to_recovery"] == pytest.approx(out["time_to_recovery"], rel=0.15)


def test_gradient_time_scale_is_m_times_slower():
    a = _run(seed=7, d=50, m=8, m_star=4, t_max=60.0, n_points=7)
    b = _run(seed=7, d=50, m=8, m_star=4, t_max=480.0, n_points=7, time_scale="gradient")
    np.testing.assert_allclose(b["risk"], a["risk"], rtol=1e-5)
    assert b["time_to_recovery"] == pytest.approx(8 * a["time_to_recovery"], rel=1e-4)


def test_escape_takes_longer_in_higher_dimension():
    """Escaping from the initial overlap ~ 1/sqrt(d) takes a time growing with log d."""
    esc = {d: np.mean([_run(seed=s, d=d, m=20, m_star=10, t_max=60.0, n_points=3)["escape_time"]
                       for s in range(3)]) for d in (100, 10_000)}
    assert esc[10_000] > 1.25 * esc[100]


def test_estimate():
    exp = QuadraticFlow()
    small = exp.estimate({"d": 10_000, "m": 40}, {})
    big = exp.estimate({"d": 10_000, "m": 40, "flow": "weights"}, {})
    gd = exp.estimate({"d": 100, "m": 20, "n_train": 10_000}, {})
    for e in (small, big, gd):
        assert e["seconds"] > 0 and e["memory_bytes"] > 0
    assert big["seconds"] > 10 * small["seconds"]
    assert gd["memory_bytes"] > 8 * 10_000 * 100


def _rows():
    rows = []
    for d in (60, 300):
        for m in (2, 4, 8):
            for rep in range(2):
                params = dict(d=d, m=m, m_star=4, t_max=60.0, n_points=21)
                out = _run(seed=100 * d + 10 * m + rep, **params)
                full = {p.name: p.default for p in QuadraticFlow.params}
                full.update(params)
                rows.append({"coords": {"d": d, "ratio": m / 4}, "params": full, "status": "ok",
                             "repetition": rep,
                             "metrics": {k: v for k, v in out.items() if not isinstance(v, list)},
                             "curves": {k: v for k, v in out.items() if isinstance(v, list)}})
    rows.append({"coords": {"d": 60, "ratio": 1.0}, "params": rows[0]["params"], "status": "failed",
                 "repetition": 2, "metrics": {}, "curves": {}})
    return rows


@pytest.mark.slow
def test_figures():
    from matplotlib.figure import Figure

    context = FigureContext(benchmark="quadratic_teacher_student", experiment_id="orthonormal",
                            experiment="quadratic_flow", grid={"d": [60, 300], "ratio": [0.5, 1, 2]},
                            repetitions=2)
    figs = QuadraticFlow().figures(_rows(), context)
    assert set(figs) == {"risk_curves", "recovery_vs_ratio", "recovery_vs_log_d", "recovery_table"}
    for fig in figs.values():
        assert isinstance(fig, Figure)
        texts = [t.get_text() for t in fig.texts]
        assert any("quadratic_teacher_student / orthonormal" in t for t in texts)
        fig.savefig(io.BytesIO(), format="png")
    assert len(figs["risk_curves"].axes) == 2
    labels = figs["recovery_vs_log_d"].axes[0].get_legend_handles_labels()[1]
    assert any("m/m* = 2" in label and "slope" in label for label in labels)
    assert QuadraticFlow().figures([], context) == {}


@pytest.mark.slow
def test_finite_sample_figure():
    rows = []
    for n in (30, 300):
        for rep in range(2):
            params = dict(d=10, m=4, m_star=2, t_max=20.0, n_points=11, n_train=n, gd_step=0.1)
            out = _run(seed=10 * n + rep, **params)
            full = {p.name: p.default for p in QuadraticFlow.params}
            full.update(params)
            rows.append({"coords": {"n_train": n}, "params": full, "status": "ok", "repetition": rep,
                         "metrics": {k: v for k, v in out.items() if not isinstance(v, list)},
                         "curves": {k: v for k, v in out.items() if isinstance(v, list)}})
    context = FigureContext(benchmark="b", experiment_id="finite_sample", experiment="quadratic_flow",
                            grid={"n_train": [30, 300]}, repetitions=2)
    figs = QuadraticFlow().figures(rows, context)
    assert set(figs) == {"risk_curves", "finite_sample", "finite_sample_table"}  # one d, one ratio: no recovery plots
    ax = figs["finite_sample"].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "population flow" in labels and "GD, n = 300: population risk" in labels
    assert ax.get_ylabel() == "R(t) / R(0)"
    # every curve over its own row's R(0): the flow starts at 1, GD's curves are the rows' ratios
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["population flow"].get_ydata()[0], 1.0, rtol=1e-12)
    own = [r for r in rows if r["params"]["n_train"] == 300]
    expected = np.exp(np.mean([np.log(np.asarray(r["curves"]["gd_risk"]) / r["metrics"]["initial_risk"])
                               for r in own], axis=0))
    np.testing.assert_allclose(lines["GD, n = 300: population risk"].get_ydata(), expected, rtol=1e-12)
    figs["finite_sample"].savefig(io.BytesIO(), format="png")
    # the answer table: per n, GD's recovered fraction and R(t_max)/R(0) from the rows
    (table,) = QuadraticFlow().tables(rows, context)
    by_n = {line[2]: line for line in table.cells()}
    rel = [r["metrics"]["gd_final_risk"] / r["metrics"]["initial_risk"] for r in own]
    assert by_n["300"][6] == f"{min(rel):.4g}-{max(rel):.4g}"
    k = sum(bool(r["metrics"]["gd_recovered"]) for r in own)
    assert by_n["300"][3].startswith(f"{k / 2:.4g} [")


@pytest.mark.parametrize("key,value", [("t_max", 0.0), ("max_step", 0.0), ("gd_step", -1.0),
                                       ("init", "uniform"), ("m", 0)])
def test_bad_parameters_are_rejected(key, value):
    from harness import SpecError

    with pytest.raises(SpecError):
        QuadraticFlow(**{key: value})


def test_table_reports_every_ratio_and_d_with_recovery_spread():
    from harness_plugins.quadratic_flow import QuadraticFlow as QF

    rows = []
    for d in (30, 60):
        for ratio, times in ((0.5, [None, None]), (1.0, [10.0, 14.0])):
            for t in times:
                rows.append({"status": "ok", "params": {"d": d, "m": int(ratio * 4), "m_star": 4, "init": "orthonormal",
                                                        "n_train": 0},
                             "metrics": {"time_to_recovery": t, "recovered": t is not None, "escape_time": 2.0,
                                         "final_relative_risk": 0.5 if t is None else 1e-15}})
    lines = QF.table(rows)
    assert [(l["d"], l["m/m*"]) for l in lines] == [(30, 0.5), (30, 1.0), (60, 0.5), (60, 1.0)]
    assert lines[0]["recovered"] == 0 and lines[0]["t_rec_mean"] is None
    assert lines[1]["recovered"] == 1 and lines[1]["t_rec_mean"] == 12.0
    assert lines[1]["t_rec_std"] == pytest.approx(np.std([10.0, 14.0], ddof=1))
    assert (lines[1]["t_rec_min"], lines[1]["t_rec_max"]) == (10.0, 14.0)


def test_answer_tables_give_recovery_and_the_trend_in_log_d():
    from harness_plugins.quadratic_flow import QuadraticFlow as QF

    times = {(100, 1.0): [20.0, 22.0, 30.0], (1000, 1.0): [25.0, 27.0, 26.0], (10000, 1.0): [31.0, 33.0, 30.0],
             (100, 0.5): [None, None, None], (1000, 0.5): [None, None, None]}
    rows = [{"status": "ok", "params": {"d": d, "m": int(ratio * 4), "m_star": 4, "init": "orthonormal", "n_train": 0},
             "metrics": {"time_to_recovery": t, "recovered": t is not None, "escape_time": 2.0,
                         "final_relative_risk": 0.5 if t is None else 1e-15}}
            for (d, ratio), ts in times.items() for t in ts]
    context = FigureContext(benchmark="b", experiment_id="flow", experiment="quadratic_flow",
                            grid={"d": [100, 1000, 10000]}, repetitions=3)
    recovery, trend = QF().tables(rows, context)
    cells = {(line[1], line[2]): line for line in recovery.cells()}
    assert cells[("100", "0.5")][3] == "0 [0, 0.5615]"  # 0 of 3, Wilson
    assert cells[("100", "1")][4] == f"{np.mean([20, 22, 30]):.4g} ± {np.std([20, 22, 30], ddof=1):.4g} (20-30)"
    (line,) = trend.cells()
    x = [math.log(d) for (d, r), ts in times.items() if r == 1.0 for _ in ts]
    y = [t for (d, r), ts in times.items() if r == 1.0 for t in ts]
    assert line[2].startswith(f"{np.polyfit(x, y, 1)[0]:.4g} [")
    assert line[5] == f"{np.std([20, 22, 30], ddof=1):.4g} at d = 100"
    assert line[6] == "grows with log d (interval above 0)"


def test_figure_captions_state_the_conventions():
    from harness_plugins.quadratic_flow import CONVENTIONS

    rows = []
    for ratio in (1, 2):
        out = _run(d=30, m=2 * ratio, m_star=2, t_max=30.0, n_points=31)
        rows.append({"status": "ok", "params": {**QuadraticFlow(d=30, m=2 * ratio, m_star=2).config},
                     "metrics": {k: v for k, v in out.items() if not isinstance(v, list)},
                     "curves": {"t": out["t"], "risk": out["risk"]}})
    context = FigureContext("quadratic_teacher_student", "orthonormal", "quadratic_flow", {"ratio": [1, 2]}, 1)
    figs = QuadraticFlow().figures(rows, context)
    assert {"recovery_vs_ratio", "recovery_table"} <= set(figs)
    for fig in figs.values():
        assert any(CONVENTIONS in t.get_text() for t in fig.texts)
    assert "1/m" in CONVENTIONS and "1/4" in CONVENTIONS and "mean-field" in CONVENTIONS


@pytest.mark.slow
def test_figures_split_an_axis_they_do_not_draw():
    rows = [{**r, "coords": {**r["coords"], "init": init}, "params": {**r["params"], "init": init}}
            for init in ("orthonormal", "gaussian") for r in _rows()]
    context = FigureContext(benchmark="b", experiment_id="x", experiment="quadratic_flow",
                            grid={"d": [60, 300], "ratio": [0.5, 1, 2], "init": ["orthonormal", "gaussian"]},
                            repetitions=2)
    figs = QuadraticFlow().figures(rows, context)
    names = {"risk_curves", "recovery_vs_ratio", "recovery_vs_log_d", "recovery_table"}
    assert set(figs) == {f"{n}-1_init=gaussian" for n in names} | {f"{n}-2_init=orthonormal" for n in names}
    assert any(t.get_text() == "init=gaussian" for t in figs["risk_curves-1_init=gaussian"].texts)
