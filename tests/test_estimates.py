"""Cost estimates of --dry-run: the calibration cache, the -j schedule, and estimate vs measured
time on a tiny benchmark of every built-in experiment."""
from __future__ import annotations

import time

import pytest

from harness import api
from harness.plugin import calibration
from harness.runner.executors import cpu_count


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(calibration.RECALIBRATE_ENV, raising=False)
    calibration._memo.clear()
    yield tmp_path / "cache" / calibration.CACHE_FILE
    calibration._memo.clear()
    calibration.recalibrate(False)


def test_rates_are_probed_once_then_read_from_the_cache(cache, monkeypatch):
    calls = []

    def probe():
        calls.append(1)
        return {"op_s": 1e-3 * len(calls)}

    assert calibration.rates("unit", probe) == {"op_s": 1e-3}
    assert cache.is_file() and len(calls) == 1
    calibration._memo.clear()  # a new process: reads the file, does not probe
    assert calibration.rates("unit", probe) == {"op_s": 1e-3} and len(calls) == 1
    calibration._memo.clear()
    assert calibration.rates("unit", probe, version=2) == {"op_s": 2e-3}  # a changed probe
    monkeypatch.setenv(calibration.RECALIBRATE_ENV, "1")
    calibration._memo.clear()
    assert calibration.rates("unit", probe, version=2) == {"op_s": 3e-3}
    monkeypatch.delenv(calibration.RECALIBRATE_ENV)
    calibration._memo.clear()
    assert calibration.rates("unit", probe, version=2) == {"op_s": 3e-3} and len(calls) == 3


def test_probes_run_on_one_thread_and_keys_name_the_machine(cache):
    seen = {}

    def probe():
        from threadpoolctl import threadpool_info

        seen["threads"] = {i["num_threads"] for i in threadpool_info()}
        return {"x": 1.0}

    calibration.rates("threads", probe)
    assert seen["threads"] <= {1}
    key = calibration.machine_key()
    assert f"cores={cpu_count()}" in key and "harness=" in key and "numpy=" in key


def test_schedule_spreads_cells_over_jobs_and_pays_setup_once_per_worker():
    cells = [{"seconds": 1.0, "setup_key": "k", "setup_seconds": 4.0} for _ in range(4)]
    assert calibration.schedule(cells, 1) == pytest.approx(8.0)
    # two workers: each pays the set-up and its worker start-up, then half the cells
    assert calibration.schedule(cells, 2) == pytest.approx(calibration.WORKER_START_SECONDS + 4.0 + 2.0)
    assert calibration.schedule([{"seconds": None}], 2) is None
    assert calibration.speedup(1e12, 1) == 1.0 and 1.0 < calibration.speedup(1e12, 2) < 2.0
    assert calibration.speedup(1e3, 2) < 1.01


def test_schedule_runs_rounds_one_after_the_other():
    # round 0: 3 s and 1 s on two workers (ends at 3 s); round 1 waits for it: 3 + 2 = 5 s
    cells = [{"seconds": 3.0}, {"seconds": 1.0}, {"seconds": 2.0, "round": 1}, {"seconds": 0.5, "round": 1}]
    start = calibration.WORKER_START_SECONDS
    assert calibration.schedule(cells, 2) == pytest.approx(start + 3.0 + 2.0)
    without = [{k: v for k, v in c.items() if k != "round"} for c in cells]
    assert calibration.schedule(without, 2) == pytest.approx(start + 3.5)  # one bag: 3 + 0.5 | 1 + 2
    assert calibration.schedule(cells, 1) == calibration.schedule(without, 1) == pytest.approx(6.5)


TINY = """
[benchmark]
name = "tiny_estimates"
seed = 7
repetitions = 1

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 3000
window = 100
architecture = { name = "fc", widths = ["d", "d", "d"] }
[experiments.grid]
N = [100, 300]
d = [8, 16]

[[experiments]]
id = "cap"
experiment = "capacity"
N = 100
d = 5
max_epochs = 400
gd_max_epochs = 400
[experiments.grid]
model = ["deep_adam", "deep_gd", "two_layer"]
ratio = [1.0, 4.0]

[[experiments]]
id = "daniely"
experiment = "two_layer_memorization"
m = 100
d = 10
steps = 1500
architecture = { name = "two_layer", q = 20 }
optimizer = { name = "sgd", lr = 1.0, batch_size = 10 }

[[experiments]]
id = "flow"
experiment = "quadratic_flow"
d = 50
m_star = 4
t_max = 40.0
[experiments.grid]
m = [2, 8]

[[experiments]]
id = "ntk"
experiment = "ntk_spectrum"
N = 950
d = 30
kernels = ["full", "W2"]

[[experiments]]
id = "flat"
experiment = "embedding_generalization"
trials = 15
hessian_trials = 15
n_test = 500
[experiments.grid]
H = [5, 20]
"""


@pytest.mark.slow
def test_estimates_are_within_3x_of_measured_cpu_time_on_a_tiny_benchmark(tmp_path):
    """Each cell runs here on one thread (as with -j cores); the comparison is with CPU time,
    which a machine shared with other jobs inflates far less than wall time. The second pass
    is timed: compiled kernels and trained students (the estimates' set-up costs) are then in
    place, as they are after the first cells of a run."""
    from plugins_for_tests import installed_registry

    from harness.runner.execute import run_cell

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY, encoding="utf-8")
    entries = api.plan(spec, jobs=cpu_count())  # one thread per job
    assert all(e["seconds"] is not None and e["error"] is None for e in entries), entries
    registry = installed_registry()
    measured: dict[str, float] = {}
    with calibration.limited_threads(1):
        for e in entries:
            run_cell(e["cell"], registry)
        for e in entries:
            t0 = time.process_time()
            row = run_cell(e["cell"], registry)
            assert row["status"] == "ok", row["error"]
            block = e["cell"].experiment_id
            measured[block] = measured.get(block, 0.0) + time.process_time() - t0
    estimated: dict[str, float] = {}
    for e in entries:
        estimated[e["cell"].experiment_id] = estimated.get(e["cell"].experiment_id, 0.0) + e["seconds"]
    report = ", ".join(f"{b}: {estimated[b]:.2f} s vs {measured[b]:.2f} s" for b in measured)
    total_est, total = sum(estimated.values()), sum(measured.values())
    assert total / 3 <= total_est <= 3 * total, report
    for block in measured:  # per block, looser: small blocks are noisier
        assert measured[block] / 6 <= estimated[block] <= 6 * measured[block] + 0.05, report


def test_dry_run_names_the_jobs_actually_requested(tmp_path):
    from click.testing import CliRunner

    from harness.cli import main

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY, encoding="utf-8")
    for jobs in ("1", "3"):
        result = CliRunner().invoke(main, ["run", str(spec), "--dry-run", "-j", jobs])
        assert result.exit_code == 0, result.output
        threads = max(1, cpu_count() // int(jobs))
        assert f"with -j {jobs} ({threads} thread" in result.stdout.splitlines()[-1]


GROUPED = """
[benchmark]
name = "grouped_estimates"
seed = 3
repetitions = 5

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 500
window = 100
architecture = {{ name = "fc", widths = ["d", "d", "d"] }}
batched = {batched}
[experiments.grid]
N = [200, 400]
d = [10]
"""


@pytest.mark.parametrize("batched", ["true", "false"])
def test_plan_divides_stacked_cells_of_a_group_by_the_threads_they_share(tmp_path, monkeypatch, batched):
    """The 5 repetitions of a grid point train as one stack on the worker's threads (4 here):
    each cell's estimate is its one-thread time over parallel_speedup(4); alone (batching off,
    or ``batched = false``), its one-thread time; on one thread per job nothing changes."""
    import harness.runner.executors

    spec = tmp_path / "grouped.toml"
    spec.write_text(GROUPED.format(batched=batched), encoding="utf-8")
    monkeypatch.setattr(harness.runner.executors, "cpu_count", lambda: 4)
    grouped = api.plan(spec, jobs=1)
    monkeypatch.setenv("HARNESS_BATCH", "0")
    alone = api.plan(spec, jobs=1)
    one_thread_jobs = api.plan(spec, jobs=4)
    assert len(grouped) == len(alone) == 10
    factor = calibration.parallel_speedup(4) if batched == "true" else 1.0
    for g, a, j in zip(grouped, alone, one_thread_jobs):
        assert g["cell"].cell_id == a["cell"].cell_id
        assert g["seconds"] == pytest.approx(a["seconds"] / factor, rel=1e-12)
        assert j["seconds"] == pytest.approx(a["seconds"], rel=1e-12)  # kernel: one thread anyway
    assert calibration.parallel_speedup(1) == 1.0 and calibration.parallel_speedup(2) == pytest.approx(1.85)


class _PlainFC:
    """A plugin with one generic architecture: the ``fc`` network [d, d] written as a forward."""

    from harness import Architecture, Param, hookimpl

    class PlainFC(Architecture):
        name = "_test_plain_fc"
        help = "fc [d, d] as a plain forward: the generic (autograd) path"

        def layer_shapes(self, d):
            return [(d, d), (d, d), (1, d)]

        def forward(self, params, X, activation):
            h = X
            for W in params[:-1]:
                h = activation.phi(h @ W.T)
            return (h @ params[-1].T)[:, 0]

    @staticmethod
    @hookimpl
    def harness_register_architectures(registry):
        registry.add(_PlainFC.PlainFC)


GENERIC = """
[benchmark]
name = "generic"
seed = 1
repetitions = 1
[[experiments]]
id = "ntk"
experiment = "ntk_spectrum"
dataset = { name = "gaussian", targets = "zero" }
[experiments.grid]
N = [1000]
d = [64]
architecture = ["fc", "_test_plain_fc"]
"""


@pytest.mark.slow
def test_generic_path_is_priced_from_its_own_probe(tmp_path, cache):
    """The same network on the structured and the generic path: the dry-run prices the generic
    cell from the calibrated autograd probe, within 3x of its measured CPU time (one thread)."""
    from harness.plugin import costs
    from harness.plugin.manager import load_registry
    from harness.runner.execute import run_cell

    spec = tmp_path / "generic.toml"
    spec.write_text(GENERIC, encoding="utf-8")
    registry = load_registry([_PlainFC()])
    structured, generic = api.plan(spec, jobs=cpu_count(), registry=registry)
    assert "generic" in calibration.consulted() and costs.generic_rates()["row_s_1"] > 0
    measured = []
    with calibration.limited_threads(1):
        for e in (structured, generic):
            run_cell(e["cell"], registry)  # compiled kernels in place, as after a run's first cells
            t0 = time.process_time()
            row = run_cell(e["cell"], registry)
            measured.append(time.process_time() - t0)
            assert row["status"] == "ok", row["error"]
    assert row["metrics"]["ntk_path"] == "generic"
    assert generic["seconds"] > 1.5 * structured["seconds"]
    assert measured[1] / 3 <= generic["seconds"] <= 3 * measured[1], (generic["seconds"], measured)


def test_float32_epochs_are_priced_at_the_float32_probes_rate(cache, monkeypatch):
    """A float32 Fig. 2 cell is priced from the float32 probe (training_float32), a float64 one
    from the float64 probe; with the float32 epochs at half the time, the cell costs half."""
    from harness.plugin import costs
    from harness_plugins.memorization.costs import _train_cost

    sizes = {f"epoch_np_{i}": x for i, x in enumerate((2e4, 1e7, 1.6e8))}
    f64 = {**sizes, **{f"epoch_s_at_np_{i}": t for i, t in enumerate((1e-4, 1e-2, 0.2))}}
    f32 = {**sizes, **{f"epoch_s_at_np_{i}": t / 2 for i, t in enumerate((1e-4, 1e-2, 0.2))}}
    monkeypatch.setattr(costs, "training_rates", lambda: {**f64, "setup_s": 0.0})
    monkeypatch.setattr(costs, "training_float32_rates", lambda: f32)
    N, P = 1200, 3 * 38 * 38 + 38
    assert costs.epoch_seconds(N, P, one_thread=True, dtype="float32") == pytest.approx(
        costs.epoch_seconds(N, P, one_thread=True) / 2)
    assert _train_cost(N, P, 100, dtype="float32")["seconds"] == pytest.approx(
        _train_cost(N, P, 100)["seconds"] / 2)
    with pytest.raises(ValueError, match="float16"):
        costs.epoch_seconds(N, P, dtype="float16")


def test_float32_probe_trains_in_float32(cache):
    """The float32 probe's epochs are real float32 trainings, timed at three sizes."""
    from harness.plugin import costs

    rates = costs.training_float32_rates()
    assert sorted(rates) == sorted([f"epoch_np_{i}" for i in range(3)] + [f"epoch_s_at_np_{i}" for i in range(3)])
    assert all(rates[f"epoch_s_at_np_{i}"] > 0 for i in range(3))
    assert rates["epoch_s_at_np_0"] < rates["epoch_s_at_np_2"]
