"""Experiment ``embedding_critical_point``: a non-interpolating local minimum of a 1-unit network,
embedded by each map, has zero gradient to round-off and is classified from the Hessian."""
import numpy as np
import pytest
from plugins_for_tests import installed_registry

import harness_plugins.semi_flat as semi_flat
from harness.plugin.context import CellContext, FigureContext
from harness.plugin.seeds import cell_seed
from harness_plugins.semi_flat import shallow

RELU_DEAD = {"new_bias": -10.0, "new_output_weight": 1.0, "new_input_weight": 1.0}


def run(activation="tanh", **params):
    reg = installed_registry()
    exp = reg.create("experiment", "embedding_critical_point", {"trials": 4, **params})
    return exp.run(CellContext({"activation": reg.create("activation", activation)}, cell_seed(5, {}, 0), {}))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("embedding", ["unit_replication", "inactive_units", "inactive_propagation"])
def test_embedded_point_is_critical_to_round_off_with_positive_loss(activation, embedding):
    extra = RELU_DEAD if activation == "relu" else {}
    out = run(activation, embedding=embedding, **extra)
    assert out["n_kept"] == 4
    assert out["narrow_loss_median"] > 1e-3          # does not interpolate
    assert out["narrow_gradient_max"] < 1e-13        # zero gradient to round-off (relative)
    assert out["embedded_gradient_max"] < 1e-13
    assert out["not_critical"] == 0
    assert out["narrow_negative_max"] == 0           # the narrow point is a local minimum


def test_classes_per_map_and_activation():
    assert run("tanh", embedding="unit_replication")["saddle"] == 4
    assert run("tanh", embedding="inactive_units")["saddle"] == 4
    relu = run("relu", embedding="unit_replication")
    assert relu["flat_directions"] == 4 and relu["hessian_negative_max"] == 0
    # a dead ReLU unit only adds zero eigenvalues
    dead = run("relu", embedding="inactive_units", **RELU_DEAD)
    assert dead["hessian_zero"] == dead["narrow_zero"] + 3 and dead["hessian_negative_max"] == 0


def test_inactive_unit_with_output_weight_on_tanh_is_not_critical():
    out = run("tanh", embedding="inactive_units", new_output_weight=1.0)
    assert out["not_critical"] == 4 and out["class"] == "not_critical"


def test_hessian_at_the_embedded_saddle_matches_finite_differences():
    reg = installed_registry()
    act = reg.create("activation", "tanh")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10)
    y = np.tanh(x) + 0.1 * rng.standard_normal(10)
    exp = reg.create("experiment", "embedding_critical_point", {})
    narrow, _ = exp._narrow(x, y, act, np.random.default_rng(1))
    theta = semi_flat.embed(narrow[0], 2, "unit_replication", act, split=0.5)
    H = shallow.error_hessian(theta, x, y, act)
    eps = 1e-6
    fd = np.column_stack([(shallow.error_gradient(theta + eps * e, x, y, act)
                           - shallow.error_gradient(theta - eps * e, x, y, act)) / (2 * eps)
                          for e in np.eye(theta.size)])
    np.testing.assert_allclose(H, fd, atol=1e-6 * np.abs(H).max())
    lam = np.linalg.eigvalsh(H)
    assert lam.min() < -1e-6 * np.abs(lam).max()   # the negative direction is real, not round-off


def test_classify_uses_the_relative_floor():
    lam = np.array([-1e-12, 0.0, 1e-3, 1.0])
    label, inert = semi_flat.classify(lam, 1e-16, 1e-10, 1e-9)
    assert label == "flat_directions" and inert.zero == 2 and inert.tol == pytest.approx(1e-9)
    assert semi_flat.classify(np.array([-1e-3, 1.0]), 1e-16, 1e-10, 1e-9)[0] == "saddle"
    assert semi_flat.classify(np.array([1e-3, 1.0]), 1e-16, 1e-10, 1e-9)[0] == "minimum"
    assert semi_flat.classify(np.array([1e-3, 1.0]), 1e-6, 1e-10, 1e-9)[0] == "not_critical"


def test_table_and_figure():
    reg = installed_registry()
    rows = []
    for emb in ("unit_replication", "inactive_units"):
        exp = reg.create("experiment", "embedding_critical_point", {"trials": 2, "embedding": emb})
        out = run(embedding=emb, trials=2)
        rows.append({"status": "ok", "params": dict(exp.config), "metrics": out,
                     "components": {"activation": {"name": "tanh", "params": {}}}})
    lines = semi_flat.EmbeddingCriticalPoint.table(rows)
    assert [l["map"] for l in lines] == ["inactive_units", "unit_replication"]  # EMBEDDINGS order
    assert lines[1]["saddle"] == 2 and lines[1]["split"] == 0.5 and lines[0]["split"] is None
    context = FigureContext("semi_flat_minima", "critical_point", "embedding_critical_point",
                            {"embedding": ["unit_replication", "inactive_units"]}, 1)
    figs = reg.create("experiment", "embedding_critical_point", {}).figures(rows, context)
    assert set(figs) == {"classification_table"}


def test_table_splits_an_axis_it_does_not_show():
    rows = [{"coords": {"seed_offset": k}, "status": "ok", "params": {"H0": 1, "H": 2, "embedding": "inactive_units",
                                                                      "split": 0.5},
             "components": {"activation": {"name": "tanh"}},
             "metrics": {"n_kept": 1, "narrow_negative_max": 0, "narrow_zero": 0, "narrow_positive": 1,
                         "minimum": 1, "flat_directions": 0, "saddle": 0, "not_critical": 0,
                         "hessian_negative_min": 0, "hessian_negative_max": 0, "hessian_zero_min": 1,
                         "hessian_zero_max": 1, "hessian_positive_min": 2, "hessian_positive_max": 2,
                         "embedded_gradient_max": 0.0, "zero_rel_max": 0.0, "nonzero_rel_min": 1.0}}
            for k in (0, 1)]
    context = FigureContext("b", "x", "embedding_critical_point", {"seed_offset": [0, 1]}, 1)
    figs = installed_registry().create("experiment", "embedding_critical_point", {}).figures(rows, context)
    assert set(figs) == {"classification_table-1_seed_offset=0", "classification_table-2_seed_offset=1"}
