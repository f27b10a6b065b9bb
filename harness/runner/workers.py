"""Worker processes of the local executors (:mod:`harness.runner.executors`): how one starts,
what it runs, how it reports and how it ends.

A worker is a fresh Python process (``spawn``), started with ``threads`` BLAS, OpenMP and Numba
threads (set in its environment before it loads those libraries). It rebuilds the parent's
registry from ``registry.plugins``, says ``("ready", pid)`` and then runs the cells it is sent,
one message each way per cell: ``("started", pid)`` when it begins (the parent's timeout clock
starts), ``("warmup", seconds)`` for each one-time warm-up
(:func:`harness.plugin.experiment.warm_up`, not counted against the timeout), then ``("row",
row)`` or, for a group of cells run together, ``("rows", rows)``. ``None`` tells it to stop: it
flushes its output and leaves at once (:func:`os._exit`), without the interpreter's clean-up of
its modules (a worker that loaded Numba and SciPy spends about a third of a second there, with
nothing left to save).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any, Iterator

from harness.runner.execute import run_cell, run_cells
from harness.runner.process_group import die_with_parent, end_group, lead_group
from harness.runner.threads import THREAD_ENV_VARS, limit_threads, set_numba_threads
from harness.spec.cells import Cell
from harness.spec.row import make_row


def _worker_main(conn, threads: int, plugins: tuple = ()) -> None:
    """A worker: limit threads, load the plugins (the parent's registry rebuilt from its plugin
    list, ``registry.plugins``), then run the cells it is sent until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    lead_group()  # what a cell starts belongs to this worker's group, ended with it
    die_with_parent()
    limit_threads(threads)
    from harness.plugin.manager import load_registry

    registry = load_registry(plugins)
    if "numba" in sys.modules:
        set_numba_threads(threads)
    conn.send(("ready", os.getpid()))
    _report_warm_ups(conn)
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            _exit_now()
        conn.send(("started", os.getpid()))  # the parent's timeout clock starts now
        if isinstance(cell, list):  # a group of cells run together: one row each
            try:
                rows = run_cells(cell, registry)
            except BaseException as exc:  # run_cells catches cell errors; a last resort
                from harness.runner.execute import format_exception

                rows = [make_row(c, "failed", error=format_exception(exc)) for c in cell]
            conn.send(("rows", rows))
            continue
        try:
            row = run_cell(cell, registry)
        except BaseException as exc:  # run_cell catches cell errors; this is a last resort
            from harness.runner.execute import format_exception

            row = make_row(cell, "failed", error=format_exception(exc))
        conn.send(("row", row))


def _exit_now() -> None:
    """Leave the worker process: its rows are sent, its output is flushed; skipping the
    interpreter's finalisation saves the parent the wait for it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _report_warm_ups(conn) -> None:
    """Tell the parent the seconds each one-time warm-up takes (:func:`harness.plugin.experiment.warm_up`),
    so that a cell's timeout does not count compiling kernels in a fresh worker."""
    try:
        from harness.plugin import experiment

        experiment.WARM_UP_LISTENERS.append(lambda seconds: conn.send(("warmup", float(seconds))))
    except Exception:
        pass


_SIGNAL_HINTS = {"SIGSEGV": "a segmentation fault", "SIGBUS": "a bus error", "SIGABRT": "aborted",
                 "SIGKILL": "killed, e.g. by the out-of-memory killer", "SIGILL": "an illegal instruction",
                 "SIGFPE": "an arithmetic fault", "SIGTERM": "terminated"}


def describe_exit(code: int | None) -> str:
    """How a worker process ended: ``"killed by signal 11 (SIGSEGV: a segmentation fault)"``."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        hint = _SIGNAL_HINTS.get(name)
        return f"killed by signal {-code} ({name}{': ' + hint if hint else ''})"
    return f"exit code {code}"


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


class WorkerProcess:
    """One worker process and the parent's end of its pipe, with the cell (or group of cells)
    it runs. Starting returns at once: the worker says ``ready`` when it has loaded the plugins."""

    def __init__(self, ctx, threads: int, plugins: tuple = ()) -> None:
        parent_conn, child_conn = ctx.Pipe()
        self.threads = threads
        self.plugins = plugins
        self.process = ctx.Process(target=_worker_main, args=(child_conn, threads, plugins), daemon=True,
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
        self.cell: Cell | list[Cell] | None = None
        self.started = 0.0
        self.began = False
        """Whether the worker reported that it began the cell (the timeout clock runs)."""

    def assign(self, cell: Any) -> None:
        self.cell = cell
        self.started = time.monotonic()
        self.began = False
        self.conn.send(cell)

    def stop(self, kill: bool = False) -> None:
        """Ask the worker to leave (it exits as soon as it reads the request) or kill it, and end
        every process its cells started (its process group)."""
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                kill = True
            else:
                self.process.join(timeout=1.0)
        end_group(self.process.pid)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()
