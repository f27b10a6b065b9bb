"""Groups of cells run together (harness.runner.execute.group_cells / run_cells) through the executors:
one row per cell, equal to the row the cell gives alone (all but the timing fields)."""
from __future__ import annotations

import json

import pytest

from harness.runner.execute import group_cells, run_cell, run_cells
from harness.runner.executors import execute
from harness.spec.cells import Cell
from harness.spec.row import TIMING_FIELDS


def mem_cell(rep, N=40, d=5, window=10, exp_id="m", batched=True, **params):
    p = {"N": N, "d": d, "max_epochs": 150, "window": window, "tol": None, "lr_rule": "1/(10*sqrt(N))",
         "curve_points": 50, "divergence_factor": 1e8, "batched": batched, **params}
    comps = {"architecture": {"name": "fc", "params": {"widths": ["d", "d", "d"]}}}
    return Cell(experiment_id=exp_id, experiment="memorization", params=p, components=comps,
                coords={"N": N, "d": d}, repetition=rep, root_seed=11, seed_coords={"N": N, "d": d})


def text(row):
    """Everything but the timing fields, as canonical JSON: equal means bit-identical numbers."""
    return json.dumps({k: v for k, v in row.items() if k not in TIMING_FIELDS}, sort_keys=True)


@pytest.mark.parametrize("dtype", [pytest.param("float64", marks=pytest.mark.slow), "float32"])
def test_memorization_rows_batched_equal_single(registry, dtype):
    cells = ([mem_cell(r, lr_rule="0.05", dtype=dtype) for r in range(5)]
             + [mem_cell(r, window=3 + r, lr_rule="0.05", dtype=dtype) for r in range(5, 8)])
    assert [len(g) for g in group_cells(cells, registry)] == [8]
    alone = [run_cell(c, registry) for c in cells]
    together = run_cells(cells, registry)
    assert [r["cell_id"] for r in together] == [c.cell_id for c in cells]
    assert [text(r) for r in together] == [text(r) for r in alone]
    assert len({r["metrics"]["stop_epoch"] for r in together}) > 1  # stops at different epochs
    assert all(r["timings"]["train_seconds"] > 0 for r in together)
    assert all(r["params"]["dtype"] == dtype and r["status"] == "ok" for r in together)


def test_cells_of_two_dtypes_train_in_separate_stacks(registry):
    cells = [mem_cell(r, dtype="float32") for r in range(3)] + [mem_cell(r) for r in range(2)]
    assert [len(g) for g in group_cells(cells, registry)] == [3, 2]
    rows = run_cells(cells[:3], registry) + run_cells(cells[3:], registry)
    f32, f64 = rows[0]["metrics"], rows[3]["metrics"]  # repetition 0: the same data and weights
    assert f32["final_loss"] != f64["final_loss"]
    assert f32["final_loss"] == pytest.approx(f64["final_loss"], rel=1e-3)


def daniely_cell(rep, m=30, d=6, q=8, steps=60, lr=0.5, loss="hinge", dtype="float64"):
    p = {"m": m, "d": d, "steps": steps, "tol": 0.0, "lr_rule": "", "curve_points": 50,
         "divergence_factor": 1e8, "save_arrays": False, "dtype": dtype}
    comps = {"architecture": {"name": "two_layer", "params": {"q": q}},
             "optimizer": {"name": "sgd", "params": {"lr": lr, "batch_size": 10}},
             "loss": {"name": loss}}
    return Cell(experiment_id="t", experiment="two_layer_memorization", params=p, components=comps,
                coords={"m": m, "d": d}, repetition=rep, root_seed=5, seed_coords={"m": m, "d": d})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["hinge", "mse"])
def test_two_layer_rows_batched_equal_single(registry, loss, dtype):
    """Daniely's cells batch too (per-cell steps and learning rates in one stack)."""
    cells = ([daniely_cell(r, loss=loss, dtype=dtype) for r in range(4)]
             + [daniely_cell(4, steps=25, loss=loss, dtype=dtype), daniely_cell(5, lr=0.2, loss=loss, dtype=dtype)])
    assert [len(g) for g in group_cells(cells, registry)] == [5, 1]  # the lr is a component parameter
    alone = [run_cell(c, registry) for c in cells]
    together = run_cells(cells, registry)
    assert [text(r) for r in together] == [text(r) for r in alone]
    assert all(r["status"] == "ok" for r in together)
    assert together[4]["metrics"]["steps"] == 25


def capacity_cell(rep, model, ratio=2.0, dtype="float64"):
    p = {"N": 40, "d": 5, "ratio": ratio, "model": model, "depth": 4, "max_epochs": 120, "gd_max_epochs": 120,
         "lr_rule": "1/(10*sqrt(N))", "window": 10, "gd_rule": "ntk_smooth", "gd_c": 1.0,
         "gd_gamma": 1.0, "gd_C": 1.0, "two_layer_c": 1.0, "two_layer_lr": None,
         "two_layer_batch_size": 16, "two_layer_B": 1.0, "zero_tol": 1e-3, "curve_points": 50,
         "divergence_factor": 1e8, "save_arrays": False, "dtype": dtype}
    return Cell(experiment_id="c", experiment="capacity", params=p, components={},
                coords={"ratio": ratio, "model": model}, repetition=rep, root_seed=3,
                seed_coords={"ratio": ratio})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["deep_adam", "deep_gd", "two_layer"])
def test_capacity_rows_batched_equal_single(registry, model, dtype):
    cells = [capacity_cell(r, model, dtype=dtype) for r in range(3)] + [capacity_cell(0, model, ratio=3.0, dtype=dtype)]
    assert [len(g) for g in group_cells(cells, registry)] == [3, 1]
    alone = [run_cell(c, registry) for c in cells]
    together = run_cells(cells, registry)
    assert [text(r) for r in together] == [text(r) for r in alone]
    assert all(r["status"] == "ok" for r in together)


def test_group_cells_keys_parts_and_switches(registry, monkeypatch):
    a = [mem_cell(r) for r in range(4)]
    b = [mem_cell(r, N=50) for r in range(3)]  # other shapes: another group
    c = [mem_cell(r, exp_id="other") for r in range(2)]  # other block: another group
    off = [mem_cell(r, batched=False) for r in range(2)]
    groups = group_cells(a + b + c + off, registry)
    assert [len(g) for g in groups] == [4, 3, 2, 1, 1]
    assert [len(g) for g in group_cells(a, registry, parts=2)] == [2, 2]
    assert [len(g) for g in group_cells(a + b, registry, max_size=2)] == [2, 2, 1, 2]
    monkeypatch.setenv("HARNESS_BATCH", "0")
    assert [len(g) for g in group_cells(a, registry)] == [1, 1, 1, 1]


def test_a_failing_member_runs_alone(registry, monkeypatch):
    from harness_plugins.memorization import Memorization

    cells = [mem_cell(r) for r in range(3)]
    original = Memorization.run_batch.__func__

    def flaky(cls, members):
        out = original(cls, members)
        out[1] = RuntimeError("boom")
        return out

    monkeypatch.setattr(Memorization, "run_batch", classmethod(flaky))
    rows = run_cells(cells, registry)
    assert [text(r) for r in rows] == [text(run_cell(c, registry)) for c in cells]

    def broken(cls, members):
        raise RuntimeError("the whole group failed")

    monkeypatch.setattr(Memorization, "run_batch", classmethod(broken))
    rows = run_cells(cells, registry)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [text(r) for r in rows] == [text(run_cell(c, registry)) for c in cells]


@pytest.mark.slow
@pytest.mark.parametrize("executor,jobs,timeout", [("inline", 1, None), ("processes", 2, 600.0)])
def test_executors_give_one_row_per_cell(registry, executor, jobs, timeout):
    cells = [mem_cell(r) for r in range(4)] + [mem_cell(r, N=30) for r in range(2)] + [mem_cell(0, batched=False, N=20)]
    rows = list(execute(cells, jobs=jobs, timeout=timeout, registry=registry, executor=executor))
    assert sorted(r["cell_id"] for r in rows) == sorted(c.cell_id for c in cells)
    alone = {c.cell_id: text(run_cell(c, registry)) for c in cells}
    assert all(text(r) == alone[r["cell_id"]] for r in rows)


@pytest.mark.slow
def test_a_group_past_its_timeout_runs_its_cells_alone(registry):
    """A group gets the per-cell timeout times its size; past it, each cell runs alone with
    the per-cell timeout (here every cell times out alone too: one timeout row per cell)."""
    cells = [mem_cell(r, N=400, d=30, max_epochs=100000, window=0) for r in range(2)]
    rows = list(execute(cells, jobs=1, timeout=0.5, registry=registry, executor="processes"))
    assert sorted(r["cell_id"] for r in rows) == sorted(c.cell_id for c in cells)
    assert {r["status"] for r in rows} == {"timeout"}


@pytest.mark.slow
def test_dask_executor_runs_groups(registry):
    pytest.importorskip("distributed")
    cells = [mem_cell(r) for r in range(3)]
    rows = list(execute(cells, jobs=1, registry=registry, executor="dask"))
    alone = {c.cell_id: text(run_cell(c, registry)) for c in cells}
    assert sorted(alone) == sorted(r["cell_id"] for r in rows)
    assert all(text(r) == alone[r["cell_id"]] for r in rows)
