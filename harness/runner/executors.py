"""Executing cells: in one worker process, in a pool of worker processes, on a Dask cluster, or
in this process.

:func:`execute` yields one row per cell, in the order the cells finish. The executor is chosen
by name (:data:`EXECUTORS`): ``"serial"``, ``"processes"``, ``"dask"``
(:mod:`harness.runner.dask_executor`) or ``"inline"``; left unset, ``jobs=1`` is serial and more jobs
use worker processes.

Crash isolation: ``serial`` and ``processes`` run every cell in a worker process (``serial``:
one, using every core; ``processes``: ``jobs`` of them), started once and reused for the cells
that follow (no start-up cost per cell). A worker that dies (a segfault, the out-of-memory
killer, ``os._exit``) only fails its own cell: that cell gets a ``failed`` row saying how the
worker died, a fresh worker takes its place and the run goes on. A cell past ``timeout``
seconds is stopped by killing its worker (its row: ``timeout``); the clock starts when the
worker reports it began the cell, so a fresh worker's start-up is never counted, and one-time
warm-up (:func:`harness.plugin.experiment.warm_up`: compiling kernels) is added to the cell's allowance.
``inline`` runs the cells in this process, one after the other, without isolation or timeouts:
for debugging (a debugger, ``breakpoint()``) and for tests that patch the process.
Workers share the cores: each one is limited to ``cores // jobs`` BLAS, OpenMP and Numba
threads, set once when it starts (the worker processes themselves: :mod:`harness.runner.workers`).
A worker leads a process group with what its cells start, ended with it
(:mod:`harness.runner.process_group`).
A caller that knows it will run cells can start a worker ahead of them
(:meth:`WorkerPools.start`), so that the worker's start-up (Python, NumPy, the plugins) overlaps
with its own (reading the spec, creating the run directory), and can be told when the workers
are busy and it has nothing to do but wait (the ``on_waiting`` option).

The rows are the same whatever the executor: a cell is a pure function of its parameters and
seed (only ``elapsed`` and ``finished`` differ).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Generator, Iterable, Iterator

from harness.plugin.machine import cpu_count
from harness.runner.execute import group_cells, run_cells
from harness.runner.workers import WorkerProcess, describe_exit
from harness.spec.cells import Cell
from harness.spec.row import Row, make_row

_MAX_START_FAILURES = 3


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """BLAS / Numba threads for each of ``jobs`` workers, so that jobs x threads <= cores."""
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, jobs))


def uses_workers(jobs: int, timeout: float | None) -> bool:
    """Whether cells run in worker processes (else serially in this process)."""
    return jobs > 1 or timeout is not None


EXECUTORS: dict[str, str] = {
    "serial": "harness.runner.executors:execute_serial",
    "processes": "harness.runner.executors:execute_processes",
    "dask": "harness.runner.dask_executor:execute",
    "inline": "harness.runner.executors:execute_inline",
}
"""Executors by name, each ``"module:function"``, imported on use. The function takes
``(cells, jobs, timeout, registry, **options)`` and yields one row per cell as it finishes."""


def choose_executor(executor: str | None, jobs: int = 1, timeout: float | None = None,
                    scheduler: str | None = None) -> str:
    """The executor name to use; a :class:`~harness.errors.UserError` for a bad combination.

    ``None`` picks ``"dask"`` when a ``scheduler`` address is given, else ``"serial"`` for one
    job and ``"processes"`` for more.
    """
    from harness.errors import UserError, suggest

    if executor is None:
        if scheduler is not None:
            return choose_executor("dask", jobs, timeout, scheduler)
        return "processes" if jobs > 1 else "serial"
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}{suggest(executor, EXECUTORS)}; "
                        f"choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise UserError(f"a scheduler address is for the dask executor, not {executor!r}: "
                        "use --executor dask (or leave --executor out)")
    if scheduler is not None and jobs != 1:
        raise UserError("--jobs sets the size of a local Dask cluster; with a scheduler address "
                        "the cluster's workers decide how many cells run at once")
    if executor == "serial" and jobs > 1:
        raise UserError("the serial executor runs one cell at a time: drop --jobs or use "
                        "--executor processes")
    if executor == "inline" and jobs > 1:
        raise UserError("the inline executor runs one cell at a time in this process: drop --jobs "
                        "or use --executor processes")
    if executor == "inline" and timeout is not None:
        raise UserError("a timeout needs a worker process to stop: drop --executor inline (the "
                        "serial executor runs cells in a worker process and supports --timeout)")
    if executor == "dask" and timeout is not None:
        raise UserError("the dask executor does not support a timeout (a running Dask task "
                        "cannot be stopped); use --executor processes for timeouts")
    return executor


def _executor_function(name: str, attribute: str | None = None):
    import importlib

    module_name, _, function = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute or function, None)


def check_executor(name: str, **options: Any) -> None:
    """Let executor ``name`` refuse early (before a run directory is made): its module's
    optional ``check(**options)`` raises a :class:`~harness.errors.UserError` when it cannot
    run here (a missing package, an unreachable cluster).

    Any executor refuses inside a process that is still starting up, importing a script's main
    module (see :func:`check_not_bootstrapping`)."""
    check_not_bootstrapping()
    check = _executor_function(name, "check")
    if check is not None:
        check(**options)


def execute(cells: Iterable[Cell], jobs: int = 1, timeout: float | None = None,
            registry=None, executor: str | None = None, **options: Any) -> Generator[Row, None, None]:
    """Run ``cells`` and yield each row as its cell finishes.

    ``executor`` names one of :data:`EXECUTORS` (``None``: see :func:`choose_executor`);
    ``options`` go to it (the dask executor's ``scheduler`` address, ``log``; the local
    executors' ``workers``, a :class:`WorkerPools`, and ``on_waiting``, a function called once,
    with no argument, when the first cell is sent to a worker and this process waits for rows).
    Close the generator (or let it finish) to stop: workers are then ended and the cells still
    running are dropped (they have no row, so a resume runs them again).
    """
    cells = list(cells)
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")
    name = choose_executor(executor, jobs, timeout, options.get("scheduler"))
    if not cells:
        return
    run = _executor_function(name)
    yield from run(cells, jobs=jobs, timeout=timeout, registry=registry, **options)


def execute_inline(cells: list[Cell], jobs: int = 1, timeout: float | None = None,
                   registry=None, **options: Any) -> Iterator[Row]:
    """Every cell in this process, one after the other (``jobs`` and ``timeout`` unused): no
    crash isolation; for debugging and for tests that patch this process. Cells that can run
    together do (:func:`harness.runner.execute.group_cells`)."""
    for group in group_cells(cells, registry):
        yield from run_cells(group, registry)


def execute_serial(cells: list[Cell], jobs: int = 1, timeout: float | None = None,
                   registry=None, workers: "WorkerPools | None" = None,
                   **options: Any) -> Iterator[Row]:
    """Every cell in one worker process (started once, using every core), one after the other,
    stopped after ``timeout`` seconds; a crash fails only its cell (a fresh worker goes on)."""
    yield from _pool(workers, 1, cpu_count(), timeout, registry).run(cells, options.get("on_waiting"))


def execute_processes(cells: list[Cell], jobs: int = 1, timeout: float | None = None,
                      registry=None, workers: "WorkerPools | None" = None,
                      **options: Any) -> Iterator[Row]:
    """Each cell in one of ``jobs`` worker processes, stopped after ``timeout`` seconds."""
    pool = _pool(workers, jobs, threads_per_job(jobs), timeout, registry)
    yield from pool.run(cells, options.get("on_waiting"))


class WorkerPools:
    """Worker processes kept from one :func:`execute` call to the next (pass it as the
    ``workers`` option), so that a run whose cells come in rounds (threshold searches) starts
    its workers once; :meth:`start` starts one ahead of the first call. :meth:`close` ends them
    (also when the object is collected)."""

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int, int], _Pool] = {}
        self._started: list[WorkerProcess] = []

    def start(self, threads: int, plugins: tuple = ()) -> None:
        """Start a worker process now, with ``threads`` threads and the registry of the installed
        plugins plus ``plugins`` (what ``registry.plugins`` holds), for the first pool of that
        registry and thread count to take (:meth:`get`); it is closed unused otherwise."""
        self._started.append(WorkerProcess(_spawn_context(), threads, tuple(plugins)))

    def get(self, size: int, threads: int, timeout: float | None, registry) -> "_Pool":
        key = (size, threads, id(registry))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(size, threads, timeout, registry, keep=True)
            fits = [w for w in self._started if w.threads == threads and w.plugins == tuple(registry.plugins)]
            pool.workers, self._started = fits[:size], [w for w in self._started if w not in fits[:size]]
        pool.timeout = timeout
        return pool

    def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        started, self._started = self._started, []
        for pool in pools:
            pool.close()
        for w in started:  # never used: it may still be starting, nothing of it to keep
            w.stop(kill=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _pool(workers: "WorkerPools | None", size: int, threads: int, timeout: float | None, registry) -> "_Pool":
    if workers is not None:
        return workers.get(size, threads, timeout, registry)
    return _Pool(size, threads, timeout, registry)


def check_not_bootstrapping() -> None:
    """A :class:`~harness.errors.UserError` when called while a ``spawn``-ed child process
    imports its parent's main module: a script that calls ``harness.run`` at top level, without
    the ``if __name__ == "__main__":`` guard, run in a process started by multiprocessing.

    The harness's own worker processes never import the main module
    (:func:`harness.runner.workers._main_module_hidden`),
    so this is for other pools (a Dask cluster, the user's own multiprocessing); without it each
    such child would start a run of its own before failing."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        from harness.errors import UserError

        raise UserError("harness.run was called while a new process was importing the main module: "
                        "put the call under 'if __name__ == \"__main__\":' in your script")


def _spawn_context():
    import multiprocessing

    return multiprocessing.get_context("spawn")


class _Pool:
    """Up to ``size`` worker processes (started as cells need them). ``keep``: the idle workers
    outlive :meth:`run` (for the next call) until :meth:`close`."""

    def __init__(self, size: int, threads: int, timeout: float | None, registry, keep: bool = False) -> None:
        self.registry = registry
        self.ctx = _spawn_context()
        self.size = size
        self.threads = threads
        self.timeout = timeout
        self.keep = keep
        self.workers: list[WorkerProcess] = []
        self.start_failures = 0

    def close(self) -> None:
        workers, self.workers = self.workers, []
        for w in workers:
            w.stop(kill=w.cell is not None)

    def _allowance(self, w: WorkerProcess) -> float:
        """A group's timeout: the per-cell timeout times its number of cells."""
        return self.timeout * (len(w.cell) if isinstance(w.cell, list) else 1)

    def run(self, cells: list[Cell], on_waiting: Callable[[], None] | None = None) -> Iterator[Row]:
        """Run ``cells``, grouped (:func:`harness.runner.execute.group_cells`: a worker gets a group of
        cells that run together, one row each). A group past its allowance (``timeout`` x its
        size) or whose worker dies is not recorded: its cells go back to the queue to run
        alone, each with the per-cell ``timeout``, so rows never depend on the grouping.
        ``on_waiting()`` is called once, when a worker has a cell and this process waits."""
        from multiprocessing.connection import wait

        groups = group_cells(cells, self.registry, parts=self.size)
        pending: deque[Any] = deque(g if len(g) > 1 else g[0] for g in groups)
        try:
            while len(self.workers) < min(self.size, len(pending)):
                self.workers.append(WorkerProcess(self.ctx, self.threads, self.registry.plugins))
            while pending or any(w.cell is not None for w in self.workers):
                for w in self.workers:
                    if w.ready and w.cell is None and pending:
                        w.assign(pending.popleft())
                if on_waiting is not None and any(w.cell is not None for w in self.workers):
                    call, on_waiting = on_waiting, None
                    call()
                wait_for = None
                if self.timeout is not None:
                    deadlines = [w.started + self._allowance(w) for w in self.workers
                                 if w.cell is not None and w.began]
                    if deadlines:
                        wait_for = max(0.0, min(deadlines) - time.monotonic())
                ready = wait([w.conn for w in self.workers], timeout=wait_for)
                for i, w in enumerate(list(self.workers)):
                    if w.conn in ready:
                        try:
                            message = w.conn.recv()
                        except (EOFError, OSError):
                            if isinstance(w.cell, list):  # its cells run again, each alone
                                pending.extendleft(reversed(w.cell))
                                w.cell = None
                            yield from self._replace_dead(i, w)
                            continue
                        if message[0] == "ready":
                            w.ready = True
                            self.start_failures = 0
                        elif message[0] == "rows":
                            w.cell = None
                            yield from message[1]
                        elif message[0] == "started":
                            w.started, w.began = time.monotonic(), True
                        elif message[0] == "warmup":  # one-time compiling: not the cell's time
                            w.started += max(0.0, message[1])
                        elif message[0] == "row":
                            w.cell = None
                            yield message[1]
                    elif (self.timeout is not None and w.cell is not None and w.began
                          and time.monotonic() - w.started >= self._allowance(w)):
                        cell, elapsed = w.cell, time.monotonic() - w.started
                        w.stop(kill=True)
                        self.workers[i] = WorkerProcess(self.ctx, self.threads, self.registry.plugins)
                        if isinstance(cell, list):  # its cells run again, each alone
                            pending.extendleft(reversed(cell))
                            continue
                        yield make_row(cell, "timeout", error=f"exceeded the timeout of {self.timeout:g} s",
                                       elapsed=elapsed)
        finally:
            if self.keep:  # idle workers wait for the next call; busy ones (closed early) end
                busy = [w for w in self.workers if w.cell is not None]
                self.workers = [w for w in self.workers if w.cell is None]
                for w in busy:
                    w.stop(kill=True)
            else:
                self.close()

    def _replace_dead(self, i: int, w: WorkerProcess) -> Iterator[Row]:
        cell, elapsed = w.cell, time.monotonic() - w.started
        w.stop(kill=True)
        code = w.process.exitcode
        how = describe_exit(code)
        if not w.ready:
            self.start_failures += 1
            if self.start_failures >= _MAX_START_FAILURES:
                raise RuntimeError(f"worker processes fail to start ({how})")
        self.workers[i] = WorkerProcess(self.ctx, self.threads, self.registry.plugins)
        if isinstance(cell, Cell):  # a group's cells were put back to run alone
            yield make_row(cell, "failed", error=f"the worker process died while running this cell ({how})",
                           elapsed=elapsed)
