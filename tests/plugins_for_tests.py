"""Tiny components for the runner, store and CLI tests, loaded with HARNESS_PLUGINS=plugins_for_tests.

Experiments: ``echo`` (seeded draws, a curve, a nested dict, an optional sleep, a figure),
``sleep``, ``fail`` (raises), ``nan`` (a NaN metric), ``crash`` (kills its process),
``segfault`` (a real SIGSEGV through ctypes), ``leak`` (runs out of memory under its own
RLIMIT_AS), ``hang`` (never returns),
``threads`` (reports its thread limits), ``interrupt`` (a Ctrl-C), ``badfig`` (its figures raise),
``odd`` (a result that is not JSON), ``spawn`` (starts a child process), ``huge`` (metrics at the ends of the number range), ``ramp`` (a known threshold: loss = 10 ** ((n - c) / w) with seeded noise, for the threshold
search), ``timed`` (timings, resolved values, a ``check`` with a skip, a memory estimate).
Dataset: ``tdata``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from pathlib import Path

import numpy as np

from harness import Dataset, Experiment, Param, Skip, SkipCell, hookimpl

HERE = Path(__file__).resolve().parent
MODULE = "plugins_for_tests"


class TData(Dataset):
    name = "tdata"
    help = "constant inputs"
    params = (Param("value", float, 0.5, help="every entry"),)

    def sample(self, n, d, rng, dtype=np.float64):
        return np.full((n, d), self.value, dtype=dtype), np.zeros(n, dtype=dtype)


class Echo(Experiment):
    name = "echo"
    help = "returns its parameters and a few seeded draws"
    params = (Param("x", float, 1.0, help="a number"),
              Param("sleep", float, 0.0, min=0.0, help="seconds to sleep"))
    slots = {"data": ("dataset", "tdata")}
    example = {"params": {"x": 2.0}}

    def run(self, cell):
        if self.sleep:
            time.sleep(self.sleep)
        X, _ = cell.data.sample(2, 3, cell.rng("data"))
        return {
            "x": self.x,
            "u": float(cell.rng("data").uniform()),
            "x2": np.float64(self.x * self.x),
            "flag": np.bool_(self.x > 1.5),
            "data_sum": X.sum(),
            "curve": np.arange(3) * self.x,
            "nested": {"a": 1, "b": [1, 2]},
            "label": f"x={self.x}",
        }

    def estimate(self, cell_params, components):
        return {"memory_bytes": int(1000 * cell_params["x"]), "seconds": 0.5 + cell_params["sleep"]}

    def figures(self, rows, context):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ok = [r for r in rows if r["status"] == "ok"]
        ax.plot([r["metrics"]["x"] for r in ok], [r["metrics"]["u"] for r in ok], "o")
        ax.set_title(context.caption())
        return {"u_vs_x": fig}


class Sleep(Experiment):
    name = "sleep"
    help = "sleeps"
    params = (Param("seconds", float, 0.1, min=0.0),
              Param("i", int, 0, help="an index, to make many cells"),
              Param("warm_up", float, 0.0, min=0.0, help="seconds of a one-time warm-up (harness.warm_up) first"))

    def run(self, cell):
        if self.warm_up:
            from harness import warm_up

            warm_up(("sleep", self.warm_up), lambda: time.sleep(self.warm_up))
        time.sleep(self.seconds)
        return {"slept": self.seconds, "i": self.i, "u": float(cell.rng().uniform())}


class Fail(Experiment):
    name = "fail"
    help = "raises"
    params = (Param("x", float, 0.0),)

    def run(self, cell):
        raise ValueError(f"boom at x={self.x}")


class NaN(Experiment):
    name = "nan"
    help = "returns a NaN metric"
    params = (Param("x", float, 0.0),)

    def run(self, cell):
        return {"loss": math.nan, "growth": np.float64(np.inf), "steps": 3, "trace": [1.0, math.inf]}


class Crash(Experiment):
    name = "crash"
    help = "kills its own process (only run it in a worker)"
    params = ()

    def run(self, cell):
        os._exit(3)


class Segfault(Experiment):
    name = "segfault"
    help = "dereferences a null pointer (a real SIGSEGV; only run it in a worker)"
    params = (Param("i", int, 0, help="an index, to make many cells"),
              Param("at", int, -1, help="crash only at i == at (-1: always)"))

    def run(self, cell):
        if self.at in (-1, self.i):
            import ctypes
            import faulthandler

            faulthandler.disable()  # a plain segfault: no traceback dump on stderr
            ctypes.string_at(0)
        return {"i": self.i, "u": float(cell.rng().uniform())}


class Leak(Experiment):
    name = "leak"
    help = ("allocates memory until it runs out, under an address-space limit (RLIMIT_AS) of its "
            "process's current size + limit_mb (only in a worker)")
    params = (Param("limit_mb", int, 256, min=16, help="memory it may add, in MB"),
              Param("kill", bool, False, help="act as the out-of-memory killer: SIGKILL itself on MemoryError"))

    def run(self, cell):
        import resource
        import signal

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + self.limit_mb * 2 ** 20
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        hoard = []
        try:
            while True:
                hoard.append(np.ones(16 * 2 ** 20, dtype=np.uint8))  # touched: really resident
        except MemoryError:
            hoard.clear()
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise
        finally:
            hoard.clear()
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))  # the worker goes on unlimited


class Hang(Experiment):
    name = "hang"
    help = "never returns (needs --timeout)"
    params = (Param("i", int, 0),)

    def run(self, cell):
        while True:
            time.sleep(1.0)


class Threads(Experiment):
    name = "threads"
    help = "reports the thread limits it runs under"
    params = (Param("i", int, 0),)

    def run(self, cell):
        from threadpoolctl import threadpool_info

        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        return {"blas_threads": max(blas) if blas else -1,
                "numba_env": int(os.environ.get("NUMBA_NUM_THREADS", "-1")),
                "pid": os.getpid()}


class Interrupt(Experiment):
    name = "interrupt"
    help = "raises KeyboardInterrupt at cell i == at (as Ctrl-C would)"
    params = (Param("i", int, 0), Param("at", int, 2))

    def run(self, cell):
        if self.i == self.at:
            raise KeyboardInterrupt
        return {"i": self.i}


class BadFig(Experiment):
    name = "badfig"
    help = "its figures raise"
    params = (Param("x", float, 0.0),)

    def run(self, cell):
        return {"x": self.x}

    def figures(self, rows, context):
        raise RuntimeError("cannot draw")


class Spawn(Experiment):
    name = "spawn"
    help = "starts a child process that sleeps (and keeps stdout open), writes its pid, then returns or hangs"
    params = (Param("pid_file", str, help="where the child's pid is written"),
              Param("hang", bool, False, help="never return (for a timeout)"))

    def run(self, cell):
        import subprocess
        import sys

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # inherits stdout
        Path(self.pid_file).write_text(str(child.pid))
        while self.hang:
            time.sleep(1)
        return {"child": child.pid}


class Odd(Experiment):
    name = "odd"
    help = "returns a value that is not JSON: an object, a complex number, bytes, a NumPy complex array"
    params = (Param("kind", str, "object", choices=("object", "complex", "bytes", "complex_curve", "plain")),)

    def run(self, cell):
        value = {"object": object(), "complex": 1 + 2j, "bytes": b"x", "complex_curve": np.array([1j, 2.0]),
                 "plain": 1.5}[self.kind]
        return {"fine": 1.0, "odd": value}


class Huge(Experiment):
    name = "huge"
    help = "metrics at the ends of the number range: 1e308, ~1e200 that differ by seed, 10**400"
    params = (Param("i", int, 0, help="an index, to make many cells"),)

    def run(self, cell):
        u = float(cell.rng("draw").uniform())
        return {"lr": 1e308, "spread": 1e200 * (1.0 + u), "big": 10 ** 400,
                "opposite": 1.7e308 if u < 0.5 else -1.7e308, "plain": u}


class Ramp(Experiment):
    name = "ramp"
    help = "loss = 10 ** ((n - c * k) / w + noise * N(0, 1)): crosses 1 at n = c k (a known threshold)"
    params = (Param("n", int, 1, min=1, help="the searched axis"),
              Param("c", float, 100.0, help="threshold per unit of k"),
              Param("k", float, 1.0, help="a grid axis the threshold scales with"),
              Param("w", float, 10.0, help="decades per w units of n"),
              Param("noise", float, 0.0, min=0.0, help="seeded noise in decades"),
              Param("sleep", float, 0.0, min=0.0, help="seconds to sleep"),
              Param("fail_above", int, 0, min=0, help="raise for n > fail_above (0: never)"),
              Param("refuse", list, [], item_type=int, help="[lo, hi]: check() refuses lo <= n <= hi"))

    def check(self, params, components):
        if self.refuse and self.refuse[0] <= self.n <= self.refuse[1]:
            return ("n", f"refused: {self.refuse[0]} <= n <= {self.refuse[1]}")
        return None

    def run(self, cell):
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail_above and self.n > self.fail_above:
            raise ValueError("ramp failure")
        noise = self.noise * float(cell.rng("data").standard_normal())
        # a made-up training record: "stopped early" at n <= c k, after n epochs
        return {"loss": 10.0 ** ((self.n - self.c * self.k) / self.w + noise), "n": self.n,
                "stop_epoch": self.n, "stop_reason": "window" if self.n <= self.c * self.k else "max_epochs"}

    @classmethod
    def stopping(cls, metrics):
        if "stop_reason" not in metrics:
            return None
        return metrics["stop_reason"] == "window", metrics["stop_epoch"]

    def tables(self, rows, context):
        """Per n: the mean log10(loss) with its bootstrap interval and the fraction of rows with
        loss <= 1 with its Wilson interval; a note with the slope of log10(loss) against n."""
        from harness.plugin.fitting import fit_slope
        from harness.plugin.tables import Table, format_value, fraction, mean_interval

        ok = [r for r in rows if r.get("status") == "ok"]
        by_n: dict = {}
        for r in ok:
            by_n.setdefault(r["metrics"]["n"], []).append(math.log10(r["metrics"]["loss"]))
        lines = [[n, len(v), mean_interval(v), fraction(sum(x <= 0 for x in v), len(v))]
                 for n, v in sorted(by_n.items())]
        notes = []
        if len(by_n) >= 2:
            fit = fit_slope([r["metrics"]["n"] for r in ok], [math.log10(r["metrics"]["loss"]) for r in ok])
            notes.append(f"log10(loss) grows linearly in n: slope {format_value(fit.slope)} per unit n")
        return [Table("ramp: log10(loss) per n", ["n", "rows", "mean log10(loss) [95% bootstrap]",
                                                  "loss <= 1 [95% Wilson]"], lines, notes)]


class Timed(Experiment):
    name = "timed"
    help = "timings and resolved values in its result; check: k <= n, n = 13 skipped; memory estimate"
    params = (Param("n", int, 1, min=1, help="a number"),
              Param("k", int, 1, min=1, help="at most n"),
              Param("memory", int, 1000, min=0, help="its memory estimate, bytes"),
              Param("skip_at_run", bool, False, help="raise SkipCell in run"))
    slots = {"data": ("dataset", "tdata")}

    def check(self, params, components):
        if self.k > self.n:
            return "k", f"k = {self.k} exceeds n = {self.n}"
        if self.n == 13:
            return Skip("n = 13 is skipped")
        return None

    def run(self, cell):
        if self.skip_at_run:
            raise SkipCell("nothing to do here")
        t0 = time.perf_counter()
        value = float(cell.rng("data").uniform())
        return {"n": self.n, "value": value, "timings": {"work_seconds": time.perf_counter() - t0 + 1e-6},
                "resolved": {"data.value": 0.25 * self.n, "width": [self.n, self.n]}}

    def estimate(self, cell_params, components):
        return {"memory_bytes": cell_params["memory"], "seconds": 0.01}


@hookimpl
def harness_register_datasets(registry):
    registry.add(TData)


@hookimpl
def harness_register_experiments(registry):
    for cls in (Echo, Sleep, Fail, NaN, Crash, Threads, Interrupt, BadFig, Ramp, Segfault, Leak, Hang, Timed, Huge, Spawn, Odd):
        registry.add(cls)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a ``harness`` subprocess that loads this module."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env["HARNESS_PLUGINS"] = MODULE
    env.update(extra)
    return env


@contextlib.contextmanager
def loaded_test_plugins():
    """Load this module as a plugin in this process (and in worker processes it spawns)."""
    import sys

    from harness.plugin import manager as plugin_manager

    saved = os.environ.get("HARNESS_PLUGINS")
    os.environ["HARNESS_PLUGINS"] = MODULE
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        yield plugin_manager.load_registry()
    finally:
        if saved is None:
            os.environ.pop("HARNESS_PLUGINS", None)
        else:
            os.environ["HARNESS_PLUGINS"] = saved


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


ECHO_SPEC = """
[benchmark]
name = "demo"
seed = 1
repetitions = 2

[[experiments]]
id = "a"
experiment = "echo"
x = 1.0
[experiments.grid]
x = [1.0, 2.0, 3.0]
"""


TIMED_SPEC = """
[benchmark]
name = "timed"
seed = 1
repetitions = 2

[[experiments]]
id = "t"
experiment = "timed"
k = 2
[experiments.grid]
n = [2, 3, 13]
"""


@functools.lru_cache(maxsize=None)
def installed_registry():
    """The registry of the installed plugins, built once per test session (tests only read it)."""
    from harness.plugin.manager import load_registry

    return load_registry()
