"""The ntk_spectrum experiment (plugins/ntk_spectrum.py) and benchmarks/ntk_spectrum.toml."""
import math
from pathlib import Path

import numpy as np
import pytest

from harness import SpecError
from harness.engine.eigen import eigvalsh_extremes
from harness.engine.jacobian import jacobian_ntk
from harness.plugin.conformance import check_component
from harness.plugin.context import CellContext, FigureContext
from harness.runner.execute import run_cell
from harness.spec import load_spec, parse_spec
from harness_plugins.ntk_spectrum import NTKSpectrum, kernel_layers

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def spec_text(params: str, grid: str = "", reps: int = 1) -> str:
    return f"""
[benchmark]
name = "t"
seed = 11
repetitions = {reps}

[[experiments]]
id = "k"
experiment = "ntk_spectrum"
{params}
{grid}
"""


def run_all(text, registry):
    return [run_cell(cell, registry) for cell in parse_spec(text, registry=registry).cells()]


def test_conformance():
    failed = [str(r) for r in check_component("experiment", "ntk_spectrum") if not r.passed]
    assert not failed, failed


def test_rows_match_an_independent_computation(registry):
    text = spec_text('N = 260\nd = 30\nkernels = ["full", "W1", "W2", "W3"]\n'
                     'architecture = { name = "fc", widths = [40, 35] }')
    spec = parse_spec(text, registry=registry)
    (cell,) = spec.cells()
    row = run_cell(cell, registry)
    assert row["status"] == "ok", row.get("error")
    m = row["metrics"]
    assert (m["N"], m["d"], m["d2"], m["L"]) == (260, 30, 900, 3)
    assert m["P"] == 30 * 40 + 40 * 35 + 35
    # redraw the data and weights from the cell's streams and build K from the explicit Jacobian
    ctx = CellContext(components={"dataset": registry.create("dataset", "gaussian")}, seed=cell.seed_sequence())
    X, _ = ctx.dataset.sample(260, 30, ctx.rng("data"))
    shapes = [(40, 30), (35, 40), (1, 35)]
    W = registry.create("initializer", "fan_in_gaussian").initialize(shapes, ctx.rng("init"))
    act = registry.create("activation", "sigmoid")
    for name, layers in [("full", None), ("W1", [1]), ("W2", [2]), ("W3", [3])]:
        lo, hi, w = eigvalsh_extremes(jacobian_ntk(W, X, act, layers))
        assert m[f"lambda_min_{name}"] == pytest.approx(lo, rel=1e-8, abs=1e-12 * hi)
        assert m[f"lambda_max_{name}"] == pytest.approx(hi, rel=1e-8)
        assert m[f"trace_{name}"] == pytest.approx(w.sum(), rel=1e-10)
        assert m[f"solver_{name}"] in ("cholesky_krylov", "tridiagonal", "rank_bound")
    # K = K_1 + K_2 + K_3 with PSD blocks: traces add, lambda_min(K) >= each block's
    assert m["trace_full"] == pytest.approx(m["trace_W1"] + m["trace_W2"] + m["trace_W3"], rel=1e-12)
    assert m["lambda_min_full"] >= max(m["lambda_min_W1"], m["lambda_min_W2"], m["lambda_min_W3"])
    # W3's block is F_2 F_2^T of rank <= 35 < N: lambda_min = 0 exactly, said by its rank bound
    # (the eigvalsh value above is round-off below the floor), no eigen-solve of a singular K
    assert m["below_floor_W3"] and m["solver_W3"] == "rank_bound" and m["lambda_min_W3"] == 0.0
    assert all(m[f"solver_{k}"] != "rank_bound" for k in ("full", "W1", "W2"))
    assert not m["below_floor_full"]


def test_solvers_dtypes_and_determinism(registry):
    base = 'N = 300\nd = 80\n'  # condition number ~1e5: float32 keeps ~2 digits of lambda_min
    rows = {}
    fast = 'solver = "cholesky_krylov"\n'
    for label, extra in [("auto", ""), ("fast", fast), ("eig", 'solver = "eigvalsh"'),
                         ("f32", fast + 'dtype = "float32"'), ("again", fast)]:
        (row,) = run_all(spec_text(base + extra), registry)
        assert row["status"] == "ok", row.get("error")
        rows[label] = row["metrics"]
    assert rows["auto"]["solver_full"] == "tridiagonal"  # small N: auto picks the LAPACK reduction
    assert rows["fast"]["solver_full"] == rows["f32"]["solver_full"] == "cholesky_krylov"
    assert rows["eig"]["solver_full"] == "eigvalsh"
    lo = rows["eig"]["lambda_min_full"]
    # the same LAPACK reduction, then bisection instead of all eigenvalues: equal to round-off
    assert rows["auto"]["lambda_min_full"] == pytest.approx(lo, rel=0, abs=rows["eig"]["floor_full"])
    assert rows["fast"]["lambda_min_full"] == pytest.approx(lo, rel=1e-8)
    assert rows["fast"]["lambda_max_full"] == pytest.approx(rows["eig"]["lambda_max_full"], rel=1e-8)
    assert rows["f32"]["lambda_min_full"] == pytest.approx(lo, rel=5e-2)
    assert rows["f32"]["lambda_min_full"] != lo
    assert rows["again"]["lambda_min_full"] == rows["fast"]["lambda_min_full"]


def test_kernel_names(registry):
    assert kernel_layers(["full", "W2"], [True, True, True]) == {"full": [1, 2, 3], "W2": [2]}
    assert kernel_layers(["full"], [True, False]) == {"full": [1]}
    with pytest.raises(ValueError, match="W1..W3"):
        kernel_layers(["W4"], [True] * 3)
    for bad in ('["W0"]', '["full", "full"]', '["w2"]', "[]"):
        with pytest.raises(SpecError):
            parse_spec(spec_text(f"N = 10\nd = 3\nkernels = {bad}"), registry=registry)
    # a kernel the network does not have is refused when the file loads, not a failed row
    with pytest.raises(SpecError, match=r"kernels = \['W4'\]: kernel 'W4': the network has layers W1..W3"):
        parse_spec(spec_text('N = 10\nd = 3\nkernels = ["W4"]'), registry=registry)


def test_benchmark_file_is_the_papers_grid(registry):
    spec = load_spec(BENCHMARKS / "ntk_spectrum.toml", registry=registry)
    cells = list(spec.cells())
    assert len(cells) == 600
    points = {(c.params["N"], c.params["d"]) for c in cells}
    ds = sorted({d for _, d in points})
    assert ds == [math.floor(math.sqrt(1000 * i)) for i in range(5, 956, 50)]
    assert ds[0] == 70 and ds[-1] == 977 and len(ds) == 20
    assert {N for N, _ in points} == {1000, 2000, 3000}
    c = cells[0]
    assert c.components["activation"]["name"] == "sigmoid"
    assert c.components["architecture"]["params"]["widths"] == ["d", "d"]
    assert c.components["initializer"]["params"]["output_variance"] == 1.0
    assert c.params["kernels"] == ["full", "W1", "W2", "W3"]  # the full K and every per-layer block
    assert len({c.seed_sequence().spawn_key for c in cells}) == 600
    est = NTKSpectrum(N=3000, d=977).estimate(cells[-1].params, cells[-1].components)
    # five (N, N) matrices (the four kernels and a solver's copy), three (N, n_l) arrays per layer
    # (n = 977, 977, 977, 1), the weights twice (tests/test_memory_estimates.py measures the model)
    kernels = 5 * 8 * 3000 ** 2
    assert est["memory_bytes"] == kernels + 3 * 8 * 3000 * (3 * 977 + 1) + 2 * 8 * (2 * 977 ** 2 + 977)
    assert 0 < est["seconds"] < 60


def fake_rows(slopes, Ns=(1000, 2000), d_values=(70, 300, 500, 700), reps=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for N, a in zip(Ns, slopes):
        for d in d_values:
            for r in range(reps):
                lam = a * d * d * (1 + 0.02 * rng.standard_normal())
                rows.append({"status": "ok", "params": {"N": N, "d": d}, "coords": {"N": N, "d": d},
                             "repetition": r,
                             "metrics": {"N": N, "d": d, "lambda_min_full": lam,
                                         "below_floor_full": False,
                                         "lambda_min_W2": lam / 30, "below_floor_W2": d == 70}})
    rows.append({"status": "failed", "params": {"N": 1000, "d": 70}, "metrics": {}})
    return rows


def test_figures_show_fits_per_n():
    ctx = FigureContext(benchmark="ntk_spectrum", experiment_id="fig1", experiment="ntk_spectrum",
                        grid={"N": [1000, 2000], "i": [5, 90, 250, 490]}, repetitions=3)
    figs = NTKSpectrum(N=1000, d=70).figures(fake_rows([1.4e-4, 1.1e-4]), ctx)
    assert list(figs) == ["lambda_min_full", "lambda_min_W2", "lambda_min_per_layer"]
    ax = figs["lambda_min_full"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "N = 1000"
    fits = [t for t in labels if t.startswith("fit N = ")]
    assert len(fits) == 2
    # the fitted slope printed in the legend recovers the slope the rows were drawn with
    slope_1000 = float(fits[0].split("slope ")[1].split(" ")[0])
    assert slope_1000 == pytest.approx(1.4e-4, rel=0.05)
    assert len(ax.collections) == 2  # one +-1 std band per N
    texts = " ".join(t.get_text() for t in figs["lambda_min_W2"].texts)
    assert "6 row(s) with λ_min below the round-off floor" in texts
    assert "mean ± 1 std" in texts and "3 repetition(s)" in texts


def test_kernel_order_is_natural():
    from harness_plugins.ntk_spectrum import kernel_order

    assert kernel_order({"W10", "W2", "full", "W1", "W3"}) == ["full", "W1", "W2", "W3", "W10"]
    rows = fake_rows([1.4e-4, 1.1e-4], reps=2)
    for r in rows:
        if r["metrics"]:
            m = r["metrics"]
            m.update({"lambda_min_W10": 1.0, "lambda_min_W1": m["lambda_min_full"] * 0.8})
    ctx = FigureContext(benchmark="b", experiment_id="e", experiment="ntk_spectrum",
                        grid={"N": [1000, 2000]}, repetitions=2)
    figs = NTKSpectrum(N=1000, d=70).figures(rows, ctx)
    assert list(figs) == ["lambda_min_full", "lambda_min_W1", "lambda_min_W2", "lambda_min_W10",
                          "lambda_min_per_layer"]
    ax = figs["lambda_min_per_layer"].axes[0]
    labels = [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()]
    assert labels == ["full K", "K_W1", "K_W2", "K_W10"]


def test_per_layer_figure(registry):
    """One column per N: every kernel's lambda_min (mean over repetitions) with its slope per
    d^2, and below each block's share of the full lambda_min; rows below the round-off floor
    are left out and counted."""
    from matplotlib.figure import Figure

    rows = fake_rows([1.4e-4, 1.1e-4])
    for r in rows:
        if r["metrics"]:  # a numerically singular block, like K_W3 = F_2 F_2^T when n_2 < N
            r["metrics"].update({"lambda_min_W3": -1e-11, "below_floor_W3": True})
    ctx = FigureContext(benchmark="b", experiment_id="e", experiment="ntk_spectrum",
                        grid={"N": [1000, 2000]}, repetitions=3)
    fig = NTKSpectrum(N=1000, d=70).figures(rows, ctx)["lambda_min_per_layer"]
    assert isinstance(fig, Figure)
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert [ax.get_title() for ax in top] == ["N = 1000", "N = 2000"] and len(bottom) == 2
    full_line, w2_line = [l for l in top[0].get_lines() if len(l.get_xdata())]
    np.testing.assert_array_equal(full_line.get_xdata(), [70 ** 2, 300 ** 2, 500 ** 2, 700 ** 2])
    at_700 = [r["metrics"] for r in rows if r["metrics"] and r["params"] == {"N": 1000, "d": 700}]
    assert full_line.get_ydata()[-1] == pytest.approx(np.mean([m["lambda_min_full"] for m in at_700]))
    texts = [t.get_text() for t in top[0].get_legend().get_texts()]
    assert texts[0].startswith("full K: slope ")
    assert float(texts[0].split("slope ")[1].split(" ")[0]) == pytest.approx(1.4e-4, rel=0.05)
    assert texts[2] == "K_W3: λ_min below the round-off floor in all 12 rows (not drawn)"
    (share_w2,) = bottom[0].get_lines()
    np.testing.assert_allclose(share_w2.get_ydata(), 1 / 30)  # fake_rows: W2 = full / 30
    assert "mean ± 1 std" in " ".join(t.get_text() for t in fig.texts)
    # a single kernel: no per-layer figure
    for r in rows:
        if r["metrics"]:
            del r["metrics"]["lambda_min_W2"], r["metrics"]["lambda_min_W3"]
    assert list(NTKSpectrum(N=1000, d=70).figures(rows, ctx)) == ["lambda_min_full"]


def test_one_pass_gives_every_block_and_they_sum_to_the_full_k(registry, monkeypatch):
    """kernels = full, W1, W2, W3 in one row: one forward/backward pass; traces add up and
    lambda_min_full is at least the sum of the blocks' lambda_min (Weyl)."""
    import harness.engine.ntk as ntk

    calls = []
    real = ntk.ntk_factors
    monkeypatch.setattr(ntk, "ntk_factors", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    (row,) = run_all(spec_text('N = 60\nd = 9\nkernels = ["W3", "full", "W1", "W2"]'), registry)
    assert row["status"] == "ok", row.get("error")
    assert calls == [[1, 2, 3]]
    m = row["metrics"]
    blocks = ("W1", "W2", "W3")
    assert m["trace_full"] == pytest.approx(sum(m[f"trace_{k}"] for k in blocks), rel=1e-13)
    assert m["lambda_min_full"] >= sum(m[f"lambda_min_{k}"] for k in blocks) * (1 - 1e-12)


def test_rows_keep_timings_apart_and_record_resolved_layers(registry):
    (row,) = run_all(spec_text('N = 12\nd = 4\nkernels = ["full", "W2"]\n'
                               'architecture = { name = "fc", widths = ["d", "2*d"] }'), registry)
    assert row["status"] == "ok"
    assert not any("seconds" in k for k in row["metrics"])
    assert {"ntk_seconds", "solver_seconds_full", "solver_seconds_W2"} <= set(row["timings"])
    assert row["resolved"] == {"architecture.widths": [4, 8], "kernel_layers": {"full": [1, 2, 3], "W2": [2]}}
    assert row["components"]["architecture"]["params"]["widths"] == [4, 8]
    assert row["params"]["krylov_block"] is None  # the solver's own tuned block unless set


def test_a_block_zero_by_its_rank_is_labelled_and_never_fitted():
    """K_W3 = F_2 F_2^T (rank <= d < N): rows with solver rank_bound show as "0 (rank <= d < N)",
    drawn at 0 without a line through them, in both figures and in the answer table."""
    rows = fake_rows([1.4e-4, 1.1e-4])
    for r in rows:
        if r["metrics"]:
            r["metrics"].update({"lambda_min_W3": 0.0, "below_floor_W3": True, "solver_W3": "rank_bound"})
    ctx = FigureContext(benchmark="b", experiment_id="e", experiment="ntk_spectrum",
                        grid={"N": [1000, 2000]}, repetitions=3)
    figs = NTKSpectrum(N=1000, d=70).figures(rows, ctx)
    top = figs["lambda_min_per_layer"].axes[0]
    texts = [t.get_text() for t in top.get_legend().get_texts()]
    assert texts[2] == "K_W3: λ_min = 0 (rank <= d < N), by the rank bound (not fitted)"
    w3 = figs["lambda_min_W3"].axes[0]
    labels = [t.get_text() for t in w3.get_legend().get_texts()]
    assert labels == ["N = 1000: λ_min = 0 (rank <= d < N)", "N = 2000: λ_min = 0 (rank <= d < N)"]
    assert not [t for t in labels if "fit" in t or "slope" in t]
    (table,) = NTKSpectrum(N=1000, d=70).tables(rows, ctx)
    cells = {(line[0], line[1]): line for line in table.cells()}
    assert cells[("1000", "K_W3")][2:5] == ["- (not fitted)", "-", "0 (rank <= d < N)"]
    # the full K's slope is the least-squares slope through every repetition (numpy's), per unit d^2
    ok = [r["metrics"] for r in rows if r["metrics"] and r["metrics"]["N"] == 1000]
    slope = np.polyfit([m["d"] ** 2 for m in ok], [m["lambda_min_full"] for m in ok], 1)[0]
    assert cells[("1000", "full K")][2].startswith(f"{slope:.4g} [")
    at_700 = [m["lambda_min_full"] for m in ok if m["d"] == 700]
    assert cells[("1000", "full K")][4] == f"{np.mean(at_700):.4g} ± {np.std(at_700, ddof=1):.4g}"
    assert cells[("1000", "K_W2")][7] == f"{1 / 30:.4g}"  # fake_rows: W2 = full / 30
    assert "the full K's slope is positive at every N" in table.notes[-1]
