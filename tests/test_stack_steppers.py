"""harness.engine.stack_steppers and the guards around it: an optimizer cannot silently not train.

An optimizer whose ``step`` rebinds its list's entries (``weights[l] = W - lr * g``) trains the
same in batched and single mode; the conformance suite steps every optimizer both ways and fails
one that moves a member differently (a broken fused stepper, a subclass whose ``step`` its
inherited fused stepper ignores); a training row whose weights did not move is flagged
(``metrics.weights_unchanged``) and ``harness show`` names it.
"""
from __future__ import annotations

import numpy as np
import pytest

from harness import Optimizer, Param, hookimpl
from harness.engine.batched_training import Member, train_batch
from harness.engine.stack_steppers import MemberStepper, make_stepper
from harness.engine.training import train
from harness.plugin.conformance import check_component
from harness.plugin.manager import load_registry


class RebindingSGD(Optimizer):
    """Plain SGD written the way a newcomer writes it: the step rebinds the list entries."""

    name = "_test_rebinding_sgd"
    help = "W <- W - lr g, by rebinding"
    params = (Param("lr", float, 0.05, "step size"),)

    def step(self, weights, grads, state):
        for i, (W, g) in enumerate(zip(weights, grads)):
            if g is not None:
                weights[i] = W - self.lr * g

    def reference_step(self, weights, grads, state):
        return [W - self.lr * g if g is not None else W.copy() for W, g in zip(weights, grads)], state


class Idle(Optimizer):
    """Steps that update nothing: what the rebinding trap looked like from the rows."""

    name = "_test_idle"
    help = "updates nothing"
    params = (Param("lr", float, 0.05, "step size (unused)"),)

    def step(self, weights, grads, state):
        return None


class BrokenFused(RebindingSGD):
    """A fused stepper that forgets to update: batched training would not train."""

    name = "_test_broken_fused"

    @classmethod
    def batch_stepper(cls, optimizers, stacks):
        class Nothing:
            def step(self, stacks, grads, mask):
                return None

            def select(self, keep):
                return None

        return Nothing()


class SignDescent(RebindingSGD):
    """A subclass whose step is sign descent (rebinding too)."""

    name = "_test_signed"

    def step(self, weights, grads, state):
        for i, (W, g) in enumerate(zip(weights, grads)):
            if g is not None:
                weights[i] = W - self.lr * np.sign(g)

    def reference_step(self, weights, grads, state):
        return [W - self.lr * np.sign(g) if g is not None else W.copy() for W, g in zip(weights, grads)], state


class Plugin:
    @staticmethod
    @hookimpl
    def harness_register_optimizers(registry):
        for cls in (RebindingSGD, Idle, BrokenFused, SignDescent):
            registry.add(cls)


def problem(seed, N=24, d=5):
    rng = np.random.default_rng(seed)
    shapes = [(6, d), (6, 6), (1, 6)]
    return ([rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes], rng.standard_normal((N, d)),
            rng.standard_normal(N))


def test_rebinding_step_trains_the_same_batched_and_alone():
    reg = load_registry()
    act, loss = reg.create("activation", "tanh"), reg.create("loss", "mse")
    members = [Member(*problem(s), RebindingSGD(), max_epochs=30) for s in range(3)]
    together = train_batch(members, act, loss, threads=1)
    for m, res in zip(members, together):
        alone = train(m.weights, m.X, m.y, act, loss, RebindingSGD(), max_epochs=30)
        assert res.final_loss < 0.9 * res.initial_loss and res.moved
        assert res.final_loss == pytest.approx(alone.final_loss, rel=1e-12)
        assert all(np.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(res.weights, alone.weights))


def test_member_stepper_writes_back_what_the_step_rebinds():
    stacks = [np.ones((2, 3, 4)), np.ones((2, 1, 3))]
    grads = [np.full((2, 3, 4), 2.0), None]
    stepper = make_stepper([RebindingSGD(lr=0.5), RebindingSGD(lr=0.5)], stacks)
    assert isinstance(stepper, MemberStepper)
    stepper.step(stacks, grads, np.array([True, False]))
    assert np.all(stacks[0][0] == 0.0) and np.all(stacks[0][1] == 1.0) and np.all(stacks[1] == 1.0)


def test_a_fused_stepper_is_used_only_for_the_step_it_belongs_to():
    reg = load_registry()
    adam = reg.get("optimizer", "adam")
    stacks = [np.ones((2, 3, 4))]
    assert not isinstance(make_stepper([adam(), adam()], stacks), MemberStepper)

    class SignedFromAdam(adam):  # step overridden, batch_stepper inherited from Adam
        def step(self, weights, grads, state):
            for i, (W, g) in enumerate(zip(weights, grads)):
                if g is not None:
                    weights[i] = W - self.lr * np.sign(g)

    assert isinstance(make_stepper([SignedFromAdam(), SignedFromAdam()], stacks), MemberStepper)


def results_of(name):
    reg = load_registry([Plugin()])
    return {r.name: r for r in check_component("optimizer", name, reg)}


def test_conformance_steps_every_optimizer_batched_and_alone():
    for name in ("_test_rebinding_sgd", "_test_signed"):
        results = results_of(name)
        assert all(r.passed for r in results.values()), [str(r) for r in results.values()]
        assert "MemberStepper: the same weights as each member alone" in results["batched stepper"].detail
    broken = results_of("_test_broken_fused")["batched stepper"]
    assert not broken.passed and "batched training moves it differently from training alone" in broken.detail
    idle = results_of("_test_idle")
    assert not idle["steps"].passed and "moved" in idle["steps"].detail


SPEC = """
[benchmark]
name = "trap"
seed = 3
repetitions = 3

[[experiments]]
id = "mem"
experiment = "memorization"
max_epochs = 40
window = 0
batched = {batched}
optimizer = {{ name = "{optimizer}", lr = 0.05 }}
architecture = {{ name = "fc", widths = [6, 6] }}
[experiments.grid]
N = [30]
d = [4]
"""


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["_test_rebinding_sgd", "_test_idle"])
def test_rows_flag_weights_that_did_not_move_and_show_names_them(tmp_path, optimizer):
    from click.testing import CliRunner

    from harness import api
    from harness.cli import main

    registry = load_registry([Plugin()])
    rows = {}
    for batched in ("true", "false"):
        spec = tmp_path / f"{batched}.toml"
        spec.write_text(SPEC.format(batched=batched, optimizer=optimizer), encoding="utf-8")
        run_dir = api.run(str(spec), registry=registry, results_dir=tmp_path / batched, progress=False,
                          figures=False, executor="inline")
        rows[batched] = sorted(run_dir.read_rows(), key=lambda r: r["repetition"])
        shown = CliRunner().invoke(main, ["show", str(run_dir.path)])
        assert shown.exit_code == 0
        warned = "warning: 3 rows of mem did not train" in shown.stderr
        assert warned == (optimizer == "_test_idle"), shown.stderr
    for a, b in zip(rows["true"], rows["false"]):
        assert a["status"] == b["status"] == "ok"
        ma, mb = a["metrics"], b["metrics"]
        assert ma["lr"] == mb["lr"] == 0.05
        assert ma["final_loss"] == pytest.approx(mb["final_loss"], rel=1e-12)
        if optimizer == "_test_idle":
            # equal up to the products' library (MKL and OpenBLAS differ in the last bit)
            assert ma["weights_unchanged"] is True and ma["final_loss"] == pytest.approx(ma["initial_loss"], rel=1e-12)
        else:
            assert ma["weights_unchanged"] is False and ma["final_loss"] < 0.9 * ma["initial_loss"]


def test_weights_unchanged_needs_steps_a_positive_step_size_and_no_movement():
    from harness.results.views import untrained_warnings
    from harness_plugins.memorization._common import weights_unchanged

    reg = load_registry()
    act, loss = reg.create("activation", "tanh"), reg.create("loss", "mse")
    W, X, y = problem(0)
    idle = train(W, X, y, act, loss, Idle(), max_epochs=3)
    moved = train(W, X, y, act, loss, RebindingSGD(), max_epochs=3)
    assert (idle.steps, idle.moved, moved.moved) == (3, False, True)
    assert weights_unchanged(idle, 0.05) and not weights_unchanged(moved, 0.05)
    assert not weights_unchanged(idle, 0.0)  # lr = 0: nothing was supposed to move
    idle.steps = 0
    assert not weights_unchanged(idle, 0.05)  # no finite loss, no step
    rows = [{"experiment_id": "mem", "metrics": {"weights_unchanged": flag}} for flag in (True, False, True)]
    (warning,) = untrained_warnings(rows)
    assert warning.startswith("warning: 2 rows of mem did not train") and untrained_warnings(rows, ["other"]) == []
