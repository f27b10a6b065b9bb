"""Experiment ``embedding_generalization``: shared trials across widths, exact ratio 1 where theory
says so, Hessian counts, aggregated statistics, the figures and the benchmark file."""
from pathlib import Path

import numpy as np
import pytest
from plugins_for_tests import installed_registry

from harness.plugin.context import CellContext, FigureContext
from harness.plugin.seeds import cell_seed
from harness_plugins.semi_flat import figures, generalization

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "semi_flat_minima.toml"
SMALL = {"trials": 4, "n_test": 300, "hessian_trials": 4}


def run(activation="tanh", seed=7, **params):
    reg = installed_registry()
    exp = reg.create("experiment", "embedding_generalization", {**SMALL, **params})
    cell = CellContext({"activation": reg.create("activation", activation)}, cell_seed(seed, {}, 0),
                       {"H": exp.H})
    return exp.run(cell)


def test_registered_with_an_activation_slot():
    cls = installed_registry().get("experiment", "embedding_generalization")
    assert cls.slots == {"activation": ("activation", "tanh")}
    assert cls.example["params"]["trials"] <= 5


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_same_width_gives_ratio_exactly_one(activation):
    out = run(activation, H=5)
    assert out["n_trials"] == 4 and out["ratio"] == [1.0] * 4
    assert out["mean_ratio"] == 1.0 and out["sem_ratio"] == 0.0
    assert out["error_H"] == out["error_H0"]


@pytest.mark.slow
def test_widths_share_students_perturbations_and_test_inputs():
    generalization._CACHE.clear()
    a = run(H=6)
    b = run(H=11)
    generalization._CACHE.clear()  # recomputed from the seed alone, not from the cache
    c = run(H=11)
    assert b == c
    for key in ("error_H0", "error_unperturbed", "rho_mean", "train_error_max", "restarts_mean"):
        assert a[key] == b[key]
    assert a["error_H"] != b["error_H"]


def test_trial_t_does_not_depend_on_the_number_of_trials():
    few, more = run(H=9, trials=2), run(H=9, trials=5)
    assert few["ratio"] == more["ratio"][:2]


def test_unitwise_perturbation_restricts_to_the_narrow_network():
    big, small = generalization._unitwise_normal(np.random.default_rng(3), 9, 5)
    bigger, _ = generalization._unitwise_normal(np.random.default_rng(3), 12, 5)
    from harness_plugins.semi_flat import shallow

    pb, ps, pB = shallow.unpack(big), shallow.unpack(small), shallow.unpack(bigger)
    for name in ("w", "b", "v"):
        np.testing.assert_array_equal(getattr(pb, name)[:5], getattr(ps, name))
        np.testing.assert_array_equal(getattr(pB, name)[:9], getattr(pb, name))
    assert pb.c == ps.c == pB.c


def test_embedding_is_exact_and_statistics_are_consistent():
    out = run(H=12)
    r = np.array(out["ratio"])
    assert out["embedding_deviation_max"] < 1e-10
    assert out["mean_ratio"] == pytest.approx(r.mean(), rel=1e-14)
    assert out["median_ratio"] == pytest.approx(np.median(r), rel=1e-14)
    assert out["std_ratio"] == pytest.approx(r.std(ddof=1), rel=1e-12)
    assert out["sem_ratio"] == pytest.approx(r.std(ddof=1) / 2.0, rel=1e-12)
    assert out["parameters"] == 37


@pytest.mark.slow
def test_tanh_ratio_grows_with_width():
    ratios = [run(H=H, trials=20, hessian_trials=0)["mean_ratio"] for H in (5, 10, 20)]
    assert ratios[0] == 1.0 < ratios[1] < ratios[2]


def test_dead_relu_units_leave_the_perturbed_error_unchanged():
    out = run("relu", H=20)
    # rho = 0.01 ||theta|| is far below the margin |b| = 1 of the dead units: they stay dead
    assert out["rho_mean"] * 4 * 4 < 1.0
    np.testing.assert_allclose(out["ratio"], 1.0, rtol=1e-12)


def test_hessian_counts_at_an_interpolating_embedded_point():
    out = run(H=12, n_train=10)
    # whether Levenberg-Marquardt gets below 1e-29 in float64 in a given trial depends on the
    # BLAS's summation order in the last bits (4 of 4 on one machine, 3 of 4 on another)
    assert out["target_reached"] >= 3
    # E = 0: the Hessian is 2 J^T J with J of shape (10, 37) and rank 10
    assert (out["hessian_negative"], out["hessian_zero"], out["hessian_positive"]) == (0, 27, 10)
    assert out["hessian_negative_max"] == 0
    assert out["gradient_max"] < 1e-10


def test_require_target_without_any_reached_trial_reports_none():
    out = run("relu", H=6, require_target=True, trials=2, hessian_trials=0, relu_start="random")
    assert out["target_reached"] == 0 and out["n_trials"] == 0 and out["ratio"] == []
    assert out["mean_ratio"] is None and out["sem_ratio"] is None
    assert out["hessian_zero"] is None


def test_narrower_target_width_is_rejected():
    with pytest.raises(ValueError, match="smaller than H0"):
        run(H=3)


def test_pooled_mean_and_standard_error_match_the_union():
    rng = np.random.default_rng(0)
    groups = [rng.standard_normal(n) + shift for n, shift in ((5, 0.0), (9, 1.0), (3, -2.0))]
    union = np.concatenate(groups)
    mean, se = figures.pooled([(g.size, g.mean(), g.std(ddof=1)) for g in groups])
    assert mean == pytest.approx(union.mean(), rel=1e-13)
    assert se == pytest.approx(union.std(ddof=1) / np.sqrt(union.size), rel=1e-12)


def fake_rows():
    rows = []
    for act in ("tanh", "relu"):
        for H in (5, 8):
            out = run(act, H=H, trials=3, hessian_trials=1)
            metrics = {k: v for k, v in out.items() if not isinstance(v, list)}
            rows.append({"coords": {"activation": act, "H": H}, "status": "ok", "repetition": 0,
                         "params": {**installed_registry().create("experiment", "embedding_generalization",
                                                              {**SMALL, "H": H}).config},
                         "components": {"activation": {"name": act, "params": {}}},
                         "metrics": metrics, "curves": {"ratio": out["ratio"]}})
    rows.append({**rows[0], "status": "failed", "metrics": {}})
    return rows


def test_figures_draw_one_line_per_activation_with_error_bars():
    exp = installed_registry().create("experiment", "embedding_generalization")
    context = FigureContext("semi_flat_minima", "embedding_ratio", "embedding_generalization",
                            {"activation": ["tanh", "relu"], "H": [5, 8]}, 1)
    figs = exp.figures(fake_rows(), context)
    assert set(figs) == {"ratio_vs_H", "hessian_vs_H"}
    ax = figs["ratio_vs_H"].axes[0]
    labels = [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["relu", "tanh"]
    assert len(ax.containers) == 2  # two error-bar plots
    texts = [t.get_text() for t in figs["ratio_vs_H"].texts]
    assert any("standard error" in t and "semi_flat_minima" in t for t in texts)
    assert exp.figures([], context) == {}


def test_estimate_grows_with_trials_and_width():
    exp = installed_registry().create("experiment", "embedding_generalization")
    small = exp.estimate({**exp.config, "H": 5, "trials": 10}, {})
    large = exp.estimate({**exp.config, "H": 30, "trials": 1000}, {})
    assert 0 < small["seconds"] < large["seconds"] and 0 < small["memory_bytes"] < large["memory_bytes"]


def test_benchmark_file_shares_one_seed_over_the_grid():
    from harness.spec import load_spec

    spec = load_spec(BENCHMARK)
    cells = [c for c in spec.cells() if c.experiment_id == "embedding_ratio"]
    assert len(cells) == 2 * 3 * 10
    assert {c.coords["activation"] for c in cells} == {"tanh", "relu"}
    assert {c.coords["embedding"] for c in cells} == {"inactive_units", "unit_replication", "inactive_propagation"}
    assert sorted({c.coords["H"] for c in cells})[0] == 5 and max(c.coords["H"] for c in cells) == 30
    assert len({c.spawn_key for c in cells}) == 1
    assert all(c.params["trials"] == 1000 and c.params["H0"] == 5 for c in cells)
    assert all(c.params["relu_start"] == "constructive" for c in cells)
    critical = [c for c in spec.cells() if c.experiment == "embedding_critical_point"]
    assert {c.params["H0"] for c in critical} == {1}


def test_ratio_figure_has_one_panel_per_map():
    rows = fake_rows()
    rows += [{**r, "params": {**r["params"], "embedding": "unit_replication"}} for r in rows if r["status"] == "ok"]
    exp = installed_registry().create("experiment", "embedding_generalization")
    context = FigureContext("semi_flat_minima", "embedding_ratio", "embedding_generalization",
                            {"activation": ["tanh", "relu"], "H": [5, 8]}, 1)
    fig = exp.figures(rows, context)["ratio_vs_H"]
    assert [a.get_title() for a in fig.axes] == ["inactive units", "unit replication"]


def test_relu_rows_report_the_knot_certificate():
    out = run("relu", H=6, trials=6, hessian_trials=0)
    assert out["relu_impossible"] + out["relu_constructed"] + out["relu_searched"] + out["relu_not_found"] == 6
    assert out["target_reached"] == out["relu_constructed"] + out["relu_searched"]
    assert run("tanh", H=6, trials=2, hessian_trials=0)["relu_impossible"] is None


def test_figures_split_an_axis_they_do_not_draw():
    rows = [{**r, "coords": {**r["coords"], "init_std": s}} for s in (0.5, 2.0) for r in fake_rows()]
    exp = installed_registry().create("experiment", "embedding_generalization")
    context = FigureContext("semi_flat_minima", "embedding_ratio", "embedding_generalization",
                            {"activation": ["tanh", "relu"], "H": [5, 8], "init_std": [0.5, 2.0]}, 1)
    figs = exp.figures(rows, context)
    assert set(figs) == {"ratio_vs_H-1_init_std=0.5", "hessian_vs_H-1_init_std=0.5",
                         "ratio_vs_H-2_init_std=2", "hessian_vs_H-2_init_std=2"}
    assert len(figs["ratio_vs_H-1_init_std=0.5"].axes[0].containers) == 2  # one line per activation


def test_kink_distance_and_the_class_of_a_trained_point():
    """The kink check comes before any classification; "minimum" only where every Hessian
    eigenvalue is positive; a ReLU point off interpolation has a zero eigenvalue per unit."""
    from harness_plugins.semi_flat import newton_polish, shallow, trained_point_class
    from harness_plugins.semi_flat.points import kink_distance

    reg = installed_registry()
    relu, tanh = reg.create("activation", "relu"), reg.create("activation", "tanh")
    x = np.array([-1.5, -0.4, 0.3, 1.1, 2.0])
    theta = shallow.pack([2.0, -1.0], [-0.6, 0.2], [1.0, 0.5], 0.1)  # knots at 0.3 and 0.2
    assert kink_distance(theta, x) == pytest.approx(0.0, abs=1e-15)
    assert kink_distance(shallow.pack([2.0], [-0.6], [0.0], 0.1), x) is None  # v = 0: no kink that matters
    y = shallow.forward(theta, x, relu) + 0.3
    label, kink, grad = trained_point_class(theta, x, y, relu, False, relu=True, kink_tol=1e-6,
                                            gradient_rtol=1e-6, hessian_rtol=1e-10)
    assert (label, grad) == ("kink", None) and kink <= 1e-15
    assert trained_point_class(theta, x, y, relu, True, relu=True, kink_tol=1e-6, gradient_rtol=1e-6,
                               hessian_rtol=1e-10)[0] == "interpolating"
    # a positive-loss minimum of a one-unit tanh network (10 noisy points): Newton brings the
    # gradient to round-off and every eigenvalue of the 4 x 4 Hessian is positive
    rng = np.random.default_rng(0)
    xs = rng.standard_normal(10)
    ys = np.tanh(xs) + 0.1 * rng.standard_normal(10)
    from harness_plugins.semi_flat.levenberg_marquardt import levenberg_marquardt

    start = shallow.pack([1.0], [0.0], [1.0], 0.0)
    fit = levenberg_marquardt(lambda th: shallow.residuals(th, xs, ys, tanh), lambda th: shallow.jacobian(th, xs, tanh),
                              start, target=0.0, max_iterations=500)
    point = newton_polish(fit.theta, xs, ys, tanh)
    lam = np.linalg.eigvalsh(shallow.error_hessian(point, xs, ys, tanh))
    label, _, grad = trained_point_class(point, xs, ys, tanh, False, relu=False, kink_tol=1e-6,
                                         gradient_rtol=1e-6, hessian_rtol=1e-10)
    assert grad <= 1e-6 and label == ("minimum" if lam.min() > 1e-10 * abs(lam).max() else "flat_directions")
    assert label == "minimum"
    # moved off the minimum, it is not critical
    moved = point + 1e-2
    assert trained_point_class(moved, xs, ys, tanh, False, relu=False, kink_tol=1e-6, gradient_rtol=1e-6,
                               hessian_rtol=1e-10)[0] == "not_critical"


@pytest.mark.slow
def test_relu_trials_are_classified_and_the_tables_carry_intervals():
    from scipy.stats import binomtest

    from harness_plugins.semi_flat import TRAINED_CLASSES

    out = run("relu", H=6, trials=12)
    counts = {c: out[f"point_{c}"] for c in TRAINED_CLASSES}
    assert sum(counts.values()) == 12
    assert counts["interpolating"] == out["target_reached"]
    assert counts["minimum"] == 0  # a ReLU point off interpolation has zero eigenvalues (unit rescaling)
    assert 0 <= out["target_borderline"] <= 12
    row = {"status": "ok", "params": {**SMALL, "trials": 12, "H": 6, "embedding": "inactive_units"},
           "components": {"activation": {"name": "relu", "params": {}}},
           "metrics": {k: v for k, v in out.items() if not isinstance(v, list)}}
    context = FigureContext(benchmark="b", experiment_id="ratio", experiment="embedding_generalization",
                            grid={"H": [6]}, repetitions=1)
    ratio, training = generalization.EmbeddingGeneralization().tables([row], context)
    assert ratio.cells()[0][2] == f"{out['mean_ratio']:.4g} ± {out['sem_ratio']:.4g}"
    (line,) = training.cells()
    ci = binomtest(out["target_reached"], 12).proportion_ci(method="wilson")
    assert line[2] == f"{out['target_reached'] / 12:.4g} [{ci.low:.4g}, {ci.high:.4g}]"
    assert line[3] == str(out["target_borderline"])
    assert line[6:] == [str(counts[c]) for c in TRAINED_CLASSES]
    assert training.columns[7] == "local minimum (certified)" and training.columns[8] == "flat / undecided"
