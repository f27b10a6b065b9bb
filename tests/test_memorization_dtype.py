"""The training experiments' ``dtype`` (memorization, two_layer_memorization, capacity): float32
cells train in float32, a dtype other than float64 and float32 is refused, and float32 Adam reaches
the same memorisation decisions as float64 on the paper's first d."""
import math
from collections import defaultdict

import numpy as np
import pytest
from test_memorization import FIG2, run_all, spec_text

from harness import SpecError
from harness.runner.execute import group_cells, run_cells
from harness.spec import parse_spec


@pytest.mark.parametrize("experiment, params", [
    ("memorization", 'N = 20\nd = 5\narchitecture = { name = "fc", widths = ["d", "d", "d"] }'),
    ("two_layer_memorization", "m = 20\nd = 5"),
    ("capacity", "N = 20\nd = 5"),
])
def test_a_dtype_other_than_float64_or_float32_is_refused(registry, experiment, params):
    text = spec_text(f'id = "x"\nexperiment = "{experiment}"\n{params}\ndtype = "float16"\n')
    with pytest.raises(SpecError) as info:
        parse_spec(text, "m.toml", registry=registry)
    assert str(info.value).startswith("m.toml: experiments.x.dtype = 'float16': not allowed")
    assert "float64" in str(info.value) and "float32" in str(info.value)


@pytest.mark.parametrize("batched", [False, True])
def test_float32_rows_train_in_float32(registry, monkeypatch, batched):
    """dtype = "float32": data and weights reach the training loop in float32 (the float64
    draws rounded), the row records the dtype, and its losses follow the float64 row's to
    float32 rounding without being equal to them."""
    import harness.engine.batched_training as bt
    from harness_plugins.memorization import _common

    seen = []
    real_train, real_batch = _common.train, bt.train_batch

    def spy_train(weights, X, y, *args, **kwargs):
        seen.append((X, y, list(weights)))
        return real_train(weights, X, y, *args, **kwargs)

    def spy_batch(members, *args, **kwargs):
        seen.extend((m.X, m.y, list(m.weights)) for m in members)
        return real_batch(members, *args, **kwargs)

    monkeypatch.setattr(_common, "train", spy_train)
    monkeypatch.setattr(bt, "train_batch", spy_batch)
    block = FIG2.format(epochs=300, window=100) + f"N = 30\nd = 4\nbatched = {str(batched).lower()}\n"
    rows = {}
    for dtype in ("float64", "float32"):
        seen.clear()
        rows[dtype] = run_all(spec_text(block + f'dtype = "{dtype}"\n', reps=2), registry)
        assert sum(X.shape == (30, 4) for X, _, _ in seen) == 2  # and a warm-up's tiny network
        for X, y, weights in seen:
            assert X.dtype == y.dtype == np.dtype(dtype)
            assert all(W.dtype == np.dtype(dtype) for W in weights)
        assert all(r["status"] == "ok" and r["params"]["dtype"] == dtype for r in rows[dtype])
    for r64, r32 in zip(rows["float64"], rows["float32"]):
        c64, c32 = np.asarray(r64["curves"]["loss_curve"]), np.asarray(r32["curves"]["loss_curve"])
        assert not np.array_equal(c64, c32)
        assert np.allclose(c32[:50], c64[:50], rtol=1e-4, atol=0)


DECISION_SPEC = """
[benchmark]
name = "float32_decisions"
seed = 2022
repetitions = 10

[[experiments]]
id = "fig2"
experiment = "memorization"
d = 22
max_epochs = 10000
window = 100
lr_rule = "1/(10*sqrt(N))"
architecture = { name = "fc", widths = ["d", "d", "d"] }
seed_by = ["N"]

[experiments.grid]
N = [400, 700, 1000]
dtype = ["float64", "float32"]
"""


@pytest.mark.slow
def test_float32_and_float64_reach_the_same_memorisation_decisions(registry):
    """Fig. 2's protocol at d = 22, N = 400, 700, 1000, 10 seeds (the same data and initial
    weights in both dtypes: the seed is keyed on N only): at the levels -3, -4 and -6 of the mean
    log10(reported_loss) both dtypes call each N memorised or not alike, and their means agree
    within 0.3. (About 30 s on 2 cores.)"""
    cells = parse_spec(DECISION_SPEC, "float32.toml", registry=registry).cells()
    rows = [row for group in group_cells(cells, registry) for row in run_cells(group, registry)]
    logs = defaultdict(list)
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        value = r["metrics"]["reported_loss"]
        logs[(r["params"]["N"], r["params"]["dtype"])].append(max(math.log10(value), -10.0))
    assert sorted(len(v) for v in logs.values()) == [10] * 6
    for N in (400, 700, 1000):
        m64, m32 = float(np.mean(logs[(N, "float64")])), float(np.mean(logs[(N, "float32")]))
        assert abs(m32 - m64) <= 0.3, (N, m64, m32)
        for level in (-3.0, -4.0, -6.0):
            assert (m32 <= level) == (m64 <= level), (N, level, m64, m32)
        assert logs[(N, "float64")] != logs[(N, "float32")]  # two trainings, not one
    decisions = {float(np.mean(logs[(N, "float64")])) <= -3.0 for N in (400, 700, 1000)}
    assert decisions == {True, False}  # the -3 level falls inside the range: the test can tell
