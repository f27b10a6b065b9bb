"""Executing cells: serially in this process, in a pool of worker processes, or on a Dask cluster.

:func:`execute` yields one row per cell, in the order the cells finish. The executor is chosen
by name (:data:`EXECUTORS`): ``"serial"``, ``"processes"`` or ``"dask"``
(:mod:`harness.dask_executor`); left unset, ``jobs=1`` without a timeout runs every cell here
(serial) and anything else uses worker processes. With worker processes each cell runs in one
of ``jobs`` worker processes, so that a cell past ``timeout`` seconds can be stopped by killing
its worker (a fresh worker takes its place) and a worker that dies (a crash, the out-of-memory
killer) only fails its own cell. Workers share the cores: each one is limited to ``cores // jobs`` BLAS, OpenMP and Numba
threads, set once when it starts.

The rows are the same whatever the executor: a cell is a pure function of its parameters and
seed (only ``elapsed`` and ``finished`` differ).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from typing import Any, Iterable, Iterator

from .cells import Cell
from .execute import make_row, run_cell

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
_MAX_START_FAILURES = 3


def cpu_count() -> int:
    """Cores this process may use (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """BLAS / Numba threads for each of ``jobs`` workers, so that jobs x threads <= cores."""
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, jobs))


def uses_workers(jobs: int, timeout: float | None) -> bool:
    """Whether cells run in worker processes (else serially in this process)."""
    return jobs > 1 or timeout is not None


EXECUTORS: dict[str, str] = {
    "serial": "harness.runner:execute_serial",
    "processes": "harness.runner:execute_processes",
    "dask": "harness.dask_executor:execute",
}
"""Executors by name, each ``"module:function"``, imported on use. The function takes
``(cells, jobs, timeout, registry, **options)`` and yields one row per cell as it finishes."""


def choose_executor(executor: str | None, jobs: int = 1, timeout: float | None = None,
                    scheduler: str | None = None) -> str:
    """The executor name to use; a :class:`~harness.errors.UserError` for a bad combination.

    ``None`` picks ``"dask"`` when a ``scheduler`` address is given, else ``"serial"`` for one
    job without a timeout and ``"processes"`` otherwise.
    """
    from .errors import UserError, suggest

    if executor is None:
        if scheduler is not None:
            return choose_executor("dask", jobs, timeout, scheduler)
        return "processes" if uses_workers(jobs, timeout) else "serial"
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
    if executor == "serial" and timeout is not None:
        raise UserError("a timeout needs worker processes: use --executor processes")
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
            registry=None, executor: str | None = None, **options: Any) -> Iterator[dict[str, Any]]:
    """Run ``cells`` and yield each row as its cell finishes.

    ``executor`` names one of :data:`EXECUTORS` (``None``: see :func:`choose_executor`);
    ``options`` go to it (the dask executor's ``scheduler`` address, ``log``).
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


def execute_serial(cells: list[Cell], jobs: int = 1, timeout: float | None = None,
                   registry=None, **options: Any) -> Iterator[dict[str, Any]]:
    """Every cell in this process, one after the other (``jobs`` and ``timeout`` unused)."""
    for cell in cells:
        yield run_cell(cell, registry)


def execute_processes(cells: list[Cell], jobs: int = 1, timeout: float | None = None,
                      registry=None, **options: Any) -> Iterator[dict[str, Any]]:
    """Each cell in one of ``jobs`` worker processes, stopped after ``timeout`` seconds."""
    yield from _Pool(min(jobs, len(cells)), threads_per_job(jobs), timeout).run(cells)


def check_not_bootstrapping() -> None:
    """A :class:`~harness.errors.UserError` when called while a ``spawn``-ed child process
    imports its parent's main module: a script that calls ``harness.run`` at top level, without
    the ``if __name__ == "__main__":`` guard, run in a process started by multiprocessing.

    The harness's own worker processes never import the main module (:func:`_main_module_hidden`),
    so this is for other pools (a Dask cluster, the user's own multiprocessing); without it each
    such child would start a run of its own before failing."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        from .errors import UserError

        raise UserError("harness.run was called while a new process was importing the main module: "
                        "put the call under 'if __name__ == \"__main__\":' in your script")


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start worker processes without making them import the parent's main module.

    ``spawn`` runs a child's main module again (as ``__mp_main__``) unless it has no file and no
    module name; a worker needs nothing from it (it loads the plugins from entry points and
    receives plain cells), and a script that calls ``harness.run(..., jobs=2)`` without the
    ``if __name__ == "__main__":`` guard would otherwise start a run in every worker."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    saved = {key: getattr(main, key, missing) for key in ("__file__", "__spec__")}
    try:
        main.__spec__ = None
        main.__file__ = None
        yield
    finally:
        for key, value in saved.items():
            if value is missing:
                try:
                    delattr(main, key)
                except AttributeError:
                    pass
            else:
                setattr(main, key, value)


# ----------------------------------------------------------------------------------------------
# worker processes


def _worker_main(conn, threads: int) -> None:
    """A worker: limit threads, load the plugins, then run the cells it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    _die_with_parent()
    _limit_threads(threads)
    from .plugin_manager import get_registry

    registry = get_registry()
    if "numba" in sys.modules:
        _set_numba_threads(threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        try:
            row = run_cell(cell, registry)
        except BaseException as exc:  # run_cell catches cell errors; this is a last resort
            from .execute import format_exception

            row = make_row(cell, "failed", error=format_exception(exc))
        conn.send(("row", row))


_LIMITS: Any = None


def _limit_threads(threads: int) -> None:
    global _LIMITS
    try:
        import numpy  # noqa: F401  (loads the BLAS library so that threadpoolctl sees it)
        from threadpoolctl import threadpool_limits

        _LIMITS = threadpool_limits(limits=threads)
    except Exception:  # thread limits are an optimisation, never a reason to fail
        pass


def _set_numba_threads(threads: int) -> None:
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:
        pass


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the parent process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent already died before prctl took effect
            os._exit(1)
    except Exception:
        pass


class _Worker:
    def __init__(self, ctx, threads: int) -> None:
        parent_conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn, threads), daemon=True,
                                   name="harness-worker")
        saved = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
        try:  # the child reads these when it first loads BLAS / OpenMP / Numba
            for key in THREAD_ENV_VARS:
                os.environ[key] = str(threads)
            with _main_module_hidden():
                self.process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.cell: Cell | None = None
        self.started = 0.0

    def assign(self, cell: Cell) -> None:
        self.cell = cell
        self.started = time.monotonic()
        self.conn.send(cell)

    def stop(self, kill: bool = False) -> None:
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                kill = True
            else:
                self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()


class _Pool:
    def __init__(self, size: int, threads: int, timeout: float | None) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.size = size
        self.threads = threads
        self.timeout = timeout
        self.workers: list[_Worker] = []
        self.start_failures = 0

    def run(self, cells: list[Cell]) -> Iterator[dict[str, Any]]:
        from multiprocessing.connection import wait

        pending = deque(cells)
        try:
            self.workers = [_Worker(self.ctx, self.threads) for _ in range(self.size)]
            while pending or any(w.cell is not None for w in self.workers):
                for w in self.workers:
                    if w.ready and w.cell is None and pending:
                        w.assign(pending.popleft())
                wait_for = None
                if self.timeout is not None:
                    deadlines = [w.started + self.timeout for w in self.workers if w.cell is not None]
                    if deadlines:
                        wait_for = max(0.0, min(deadlines) - time.monotonic())
                ready = wait([w.conn for w in self.workers], timeout=wait_for)
                for i, w in enumerate(list(self.workers)):
                    if w.conn in ready:
                        try:
                            message = w.conn.recv()
                        except (EOFError, OSError):
                            yield from self._replace_dead(i, w)
                            continue
                        if message[0] == "ready":
                            w.ready = True
                            self.start_failures = 0
                        elif message[0] == "row":
                            w.cell = None
                            yield message[1]
                    elif (self.timeout is not None and w.cell is not None
                          and time.monotonic() - w.started >= self.timeout):
                        cell, elapsed = w.cell, time.monotonic() - w.started
                        w.stop(kill=True)
                        self.workers[i] = _Worker(self.ctx, self.threads)
                        yield make_row(cell, "timeout", error=f"exceeded the timeout of {self.timeout:g} s",
                                       elapsed=elapsed)
        finally:
            for w in self.workers:
                w.stop(kill=w.cell is not None)
            self.workers = []

    def _replace_dead(self, i: int, w: _Worker) -> Iterator[dict[str, Any]]:
        cell, elapsed = w.cell, time.monotonic() - w.started
        w.stop(kill=True)
        code = w.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if not w.ready:
            self.start_failures += 1
            if self.start_failures >= _MAX_START_FAILURES:
                raise RuntimeError(f"worker processes fail to start ({how})")
        self.workers[i] = _Worker(self.ctx, self.threads)
        if cell is not None:
            yield make_row(cell, "failed", error=f"the worker process died while running this cell ({how})",
                           elapsed=elapsed)
