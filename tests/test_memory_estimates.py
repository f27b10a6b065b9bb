"""Memory estimates (Experiment.estimate's memory_bytes) against the measured peak of small cells of
every built-in experiment, within 2x; and the memory check refusing a cell whose dominant arrays
do not fit (ntk_spectrum with widths of 100,000).

The peak is measured in a fresh process (the cells one after the other, each after a tiny warm-up
cell of the same experiment that loads its compiled kernels): the larger of tracemalloc's peak
(NumPy's allocations) and the growth of the resident set's high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs`` before each cell; it also sees what compiled kernels allocate)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.plugin.manager import load_registry
from harness.runner.resources import check_memory
from harness.spec import parse_spec

HEAD = '[benchmark]\nname = "m"\nseed = 1\n[[experiments]]\nid = "e"\n'

# (label, experiment block of the measured cell, its warm-up's replacements)
CELLS = [
    ("ntk_spectrum", 'experiment = "ntk_spectrum"\nN = 1500\nd = 60\nkernels = ["full", "W1", "W2", "W3"]\n'
     'architecture = { name = "fc", widths = [200, 200] }', {"N = 1500": "N = 50", "d = 60": "d = 5"}),
    ("ntk_spectrum wide", 'experiment = "ntk_spectrum"\nN = 100\nd = 20\narchitecture = { name = "fc", '
     'widths = [3000, 3000] }', {"N = 100": "N = 50", "[3000, 3000]": "[30, 30]"}),
    ("memorization", 'experiment = "memorization"\nN = 20000\nd = 80\nmax_epochs = 3\nwindow = 0',
     {"N = 20000": "N = 20", "d = 80": "d = 4"}),
    ("capacity", 'experiment = "capacity"\nN = 20000\nd = 80\nratio = 2.0\nmax_epochs = 3\ngd_max_epochs = 3\nmodel = "deep_gd"',
     {"N = 20000": "N = 20", "d = 80": "d = 4"}),
    ("two_layer_memorization", 'experiment = "two_layer_memorization"\nm = 20000\nd = 80\nsteps = 50\n'
     'architecture = { name = "two_layer", q = 500 }', {"m = 20000": "m = 20", "d = 80": "d = 4", "q = 500": "q = 4"}),
    ("quadratic_flow", 'experiment = "quadratic_flow"\nd = 1000\nm = 40\nm_star = 20\nt_max = 5.0\n'
     'flow = "weights"\nn_train = 20000\ngd_step = 1.0', {"d = 1000": "d = 10", "n_train = 20000": "n_train = 50"}),
    ("quadratic_flow n_points", 'experiment = "quadratic_flow"\nd = 50\nm = 4\nm_star = 2\nt_max = 5.0\n'
     'n_points = 100000', {"n_points = 100000": "n_points = 20"}),
    ("embedding_generalization", 'experiment = "embedding_generalization"\nH = 30\ntrials = 3\nn_test = 200000\n'
     'hessian_trials = 2', {"n_test = 200000": "n_test = 200", "H = 30": "H = 6"}),
    ("embedding_critical_point", 'experiment = "embedding_critical_point"\nH0 = 2\nH = 300\ntrials = 3',
     {"H = 300": "H = 3"}),
]

MEASURE = r"""
import json, sys, tracemalloc
from harness.plugin.manager import load_registry
from harness.spec import parse_spec
from harness.runner.execute import cell_context, run_cell

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

registry = load_registry()
out = []
for label, warm, text in json.loads(sys.stdin.read()):
    for source in (warm, text):
        cell = parse_spec(source, label, (), registry).cells()[0]
        estimate = cell_context(cell, registry)[0].estimate(cell.params, cell.components)["memory_bytes"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        before, _ = rss()
        tracemalloc.start()
        row = run_cell(cell, registry)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = rss()[1] - before
    out.append([label, row["status"], row["error"], estimate, max(traced, peak)])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_estimates_are_within_2x_of_the_measured_peak():
    jobs = []
    for label, block, warm in CELLS:
        small = block
        for old, new in warm.items():
            small = small.replace(old, new)
        jobs.append([label, HEAD + small, HEAD + block])
    done = subprocess.run([sys.executable, "-c", MEASURE], input=json.dumps(jobs), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert [r[0] for r in results] == [c[0] for c in CELLS]
    ratios = {}
    for label, status, error, estimate, measured in results:
        assert status in ("ok", "diverged"), (label, error)
        assert measured > 10_000_000 or label == "embedding_critical_point", (label, measured)  # arrays dominate
        ratios[label] = estimate / measured
    assert all(0.5 <= r <= 2.0 for r in ratios.values()), ratios


def test_a_cell_whose_weights_do_not_fit_is_refused():
    text = HEAD + 'experiment = "ntk_spectrum"\nN = 1000\nd = 100\narchitecture = { name = "fc", widths = ["100000", ' \
                  '"100000"] }\n'
    spec = parse_spec(text, "wide.toml", (), load_registry())
    with pytest.raises(UserError) as info:
        check_memory(spec, load_registry(), memory=64 * 2 ** 30)
    # the weights (100 x 1e5 + 1e5 x 1e5 + 1e5 entries) twice in float64: 160.2 GB; the layers' (N, n_l)
    # arrays 3 x 8 x 1000 x 200101: 4.8 GB; the kernel (N, N) and a copy: 16 MB
    weights = 16 * (100 * 100_000 + 100_000 ** 2 + 100_000)
    layers, kernels = 3 * 8 * 1000 * (100 + 2 * 100_000 + 1), 2 * 8 * 1000 ** 2
    assert f"a cell needs about {(weights + layers + kernels) / 1e9:.1f} GB of memory" in str(info.value)


def test_n_points_is_bounded():
    from harness.errors import SpecError

    with pytest.raises(SpecError, match="n_points = 2000000: out of range, expected an int in"):
        parse_spec(HEAD + 'experiment = "quadratic_flow"\nn_points = 2000000\n', "q.toml", (), load_registry())
