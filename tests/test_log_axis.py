"""Figures choose a log y axis when what they draw spans more than two decades:
harness.plugin.figures.wants_log_axis, harness plot --metric, and ntk_spectrum's lambda_min figures."""
from __future__ import annotations

import pytest

from harness.plugin.context import FigureContext
from harness.plugin.figures import decades, wants_log_axis
from harness.results.metric_plot import metric_figure


def test_decades_and_the_two_decade_rule():
    assert decades([1e-4, 1e-2, 3.0]) == pytest.approx(4.477, abs=1e-3)
    assert wants_log_axis([1e-4, 1.0]) and not wants_log_axis([1.0, 99.0])
    assert not wants_log_axis([0.0, 1e-5, 1.0]) and not wants_log_axis([-1.0, 1e3])  # not all positive
    assert not wants_log_axis([]) and not wants_log_axis([float("nan"), 1.0])


def rows(values_by_arch):
    out = []
    for arch, values in values_by_arch.items():
        for d, v in zip((8, 16, 24), values):
            for rep in range(2):
                out.append({"status": "ok", "experiment_id": "ntk", "repetition": rep,
                            "coords": {"d": d, "architecture": {"name": arch}},
                            "metrics": {"lambda_min_full": v * (1 + 0.01 * rep), "N": 100, "d": d}})
    return out


def test_plot_metric_picks_log_for_decades_and_linear_otherwise():
    spread = rows({"sigmoid": [1e-5, 1e-4, 1e-3], "tanh": [0.1, 0.5, 1.0]})
    assert metric_figure(spread, "lambda_min_full", "d", "architecture").axes[0].get_yscale() == "log"
    assert metric_figure(spread, "lambda_min_full", "d", "architecture", log=False).axes[0].get_yscale() == "linear"
    close = rows({"sigmoid": [1.0, 2.0, 3.0], "tanh": [4.0, 5.0, 6.0]})
    assert metric_figure(close, "lambda_min_full", "d", "architecture").axes[0].get_yscale() == "linear"
    assert metric_figure(close, "lambda_min_full", "d", "architecture", log=True).axes[0].get_yscale() == "log"


def test_default_lambda_min_figures_use_a_log_axis_when_lambda_min_spans_decades():
    from harness_plugins.ntk_spectrum import NTKSpectrum

    context = FigureContext("b", "ntk", "ntk_spectrum", {"d": [8, 16, 24]}, 2)

    def figure(values_by_arch):
        rs = rows(values_by_arch)
        for r in rs:
            r["metrics"]["lambda_min_W1"] = r["metrics"]["lambda_min_full"] / 2
        return NTKSpectrum.figures(NTKSpectrum(N=100, d=8), rs, context)

    wide = figure({"sigmoid": [1e-5, 1e-4, 1e-3], "tanh": [0.1, 0.5, 1.0]})
    assert wide["lambda_min_full"].axes[0].get_yscale() == "log"
    (sigmoid,) = [k for k in wide if k.startswith("lambda_min_per_layer") and "sigmoid" in k]
    (tanh,) = [k for k in wide if k.startswith("lambda_min_per_layer") and "tanh" in k]
    assert wide[sigmoid].axes[0].get_yscale() == "log"  # 5e-6 .. 1e-3: more than two decades
    assert wide[tanh].axes[0].get_yscale() == "linear"  # 0.05 .. 1
    narrow = figure({"sigmoid": [1.0, 2.0, 3.0], "tanh": [4.0, 5.0, 6.0]})
    assert narrow["lambda_min_full"].axes[0].get_yscale() == "linear"
