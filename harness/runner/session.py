"""The owner of one run: :class:`RunSession` opens (or resumes) a run directory under its lock,
records the environment, runs rounds of cells until no threshold search asks for more, and
finishes: the summary, then the outputs the caller asked for, then the lock is released.

    options = RunOptions.checked(jobs=2)
    workers = options.start_workers(registry.plugins)  # starting while the spec is read
    with RunSession.create(spec, registry, options, "results", workers=workers) as session:
        session.run_rounds(summarize, while_waiting=prepare)
        session.finish(summarize, outputs)

``summarize(run_dir, cells, spec) -> rows``, ``outputs(run_dir, rows, spec)`` and ``prepare()``
come from the caller (:mod:`harness.api`): writing summaries, figures and reports belongs to
:mod:`harness.results`, a layer above this one. The lock is held from :meth:`create` or
:meth:`resume` until the ``with`` block ends, whatever ends it.

Time around the cells: with the local executors (``serial``, ``processes``), a worker can start
before the spec is even read (:meth:`RunOptions.start_workers`), and once the first cells are
sent this process, which only waits for rows, writes ``env.json`` and calls ``prepare()`` (e.g.
importing what the figures need) on a thread of its own, while the worker loads its kernels.
``env.json`` is written before the first row is appended, whatever the executor.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.errors import RunStopped, UserError
from harness.runner.store import RunDir
from harness.spec.row import Row

RETRIED_STATUSES = ("failed", "timeout")
"""The statuses whose cells ``--retry-failed`` runs again."""
OK_STATUSES = ("ok", "skipped")
"""The statuses of a successful cell: a skipped cell is one the experiment declares it does not
run (:class:`harness.plugin.experiment.Skip`), not a failure."""

Summarize = Callable[[RunDir, Sequence[Any], Any], list[Row]]
Outputs = Callable[[RunDir, list[Row], Any], None]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; its finished rows are kept in ``run_dir``."""

    def __init__(self, run_dir: RunDir, done: int, total: int) -> None:
        super().__init__(f"interrupted with {done} of {total} cells finished")
        self.run_dir = run_dir
        self.done = done
        self.total = total


def log(message: str) -> None:
    """A progress or warning line on standard error."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run executes (never what it computes): the executor and its settings, whether to
    report progress, and the checks to relax. Made by :meth:`checked`."""

    jobs: int = 1
    timeout: float | None = None
    executor: str = "serial"
    scheduler: str | None = None
    worker_wait: float | None = None
    progress: bool = True
    force: bool = False
    retry_failed: bool = False

    @classmethod
    def checked(cls, jobs: int = 1, timeout: float | None = None, executor: str | None = None,
                scheduler: str | None = None, worker_wait: float | None = None, progress: bool = True,
                force: bool = False, retry_failed: bool = False, resume: Any = None) -> RunOptions:
        """The options, each checked (a :class:`UserError` names the bad one), with the executor
        chosen (:func:`harness.runner.executors.choose_executor`) and able to start."""
        from harness.runner.executors import check_executor, choose_executor

        _check_jobs_and_timeout(jobs, timeout)
        executor = choose_executor(executor, jobs, timeout, scheduler)
        if retry_failed and resume is None:
            raise UserError("--retry-failed reruns the failed cells of a run: use it with --resume RUN_DIR")
        if worker_wait is not None and (not isinstance(worker_wait, (int, float)) or isinstance(worker_wait, bool)
                                        or not 0 < worker_wait < math.inf):
            raise UserError(f"the wait for a Dask worker must be a finite number of seconds > 0, got {worker_wait!r}")
        options = cls(jobs, timeout, executor, scheduler, None if executor != "dask" or worker_wait is None
                      else float(worker_wait), progress, force, retry_failed)
        check_executor(executor, **options.executor_options())
        return options

    def executor_options(self) -> dict[str, Any]:
        """Keyword arguments of the executor beyond jobs, timeout and registry."""
        if self.executor != "dask":
            return {}
        out: dict[str, Any] = {"scheduler": self.scheduler, "log": log if self.progress else None}
        if self.worker_wait is not None:
            out["worker_wait"] = self.worker_wait
        return out

    def log(self, message: str) -> None:
        if self.progress:
            log(message)

    @property
    def local(self) -> bool:
        """Whether cells run in worker processes of this machine (``serial``, ``processes``)."""
        return self.executor in ("serial", "processes")

    def threads(self) -> int | None:
        """BLAS / Numba threads of each worker (``None``: a Dask cluster's workers decide)."""
        from harness.plugin.machine import cpu_count
        from harness.runner.executors import threads_per_job

        if self.executor == "serial":
            return cpu_count()
        if self.scheduler is not None:
            return None  # the cluster's workers decide (see harness.runner.dask_executor)
        return threads_per_job(self.jobs)

    def start_workers(self, plugins: tuple = ()):
        """With a local executor, a :class:`~harness.runner.executors.WorkerPools` whose first
        worker starts now (for a registry of the installed plugins plus ``plugins``, i.e.
        ``registry.plugins``), to be handed to the session; else ``None``. Its start-up runs
        while this process reads the spec and creates the run directory."""
        if not self.local:
            return None
        from harness.runner.executors import WorkerPools

        workers = WorkerPools()
        workers.start(self.threads(), plugins)
        return workers


def _check_jobs_and_timeout(jobs: int, timeout: float | None) -> None:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise UserError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not timeout > 0 or not math.isfinite(timeout)):
        raise UserError(f"--timeout {timeout!r}: must be a finite number of seconds > 0 (leave it out for "
                        "no timeout)")
    from harness.engine.kernel_blas import ENV, expected_name, mkl_library

    try:
        kernel = expected_name()
    except ValueError as exc:  # a bad HARNESS_KERNEL_BLAS: refused before any cell runs
        raise UserError(f"environment variable {exc}") from None
    if kernel == "mkl" and mkl_library() is None:
        raise UserError(f"environment variable {ENV}=mkl: MKL is not installed (pip install -e \".[mkl]\")")


def check_memory(spec, registry, options: RunOptions) -> None:
    """Refuse a spec with a cell that cannot fit in this machine's memory (unless ``force``)."""
    from harness.runner.resources import check_memory as check

    check(spec, registry, force=options.force, log=log if options.progress else None)


class RunSession:
    """One run of a spec into a locked run directory (see the module docstring)."""

    def __init__(self, run_dir: RunDir, spec, rows: list[Row], registry, options: RunOptions,
                 resumed: bool, workers=None) -> None:
        self.run_dir = run_dir
        self.spec = spec
        self.rows = rows
        self.registry = registry
        self.options = options
        self.resumed = resumed
        self.workers = workers
        """Worker processes started ahead (:meth:`RunOptions.start_workers`), or ``None``."""
        self.cells = spec.cells()
        self.searching = any(e.search is not None for e in spec.experiments)
        from harness.runner.envinfo import SessionClock

        self.clock = SessionClock()

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, spec, registry, options: RunOptions, results_dir: str | Path, name: str | None = None,
               tags: Sequence[str] = (), workers=None) -> RunSession:
        """A new run directory for ``spec`` under ``results_dir``, locked, with its meta, spec
        and identity written. ``workers``: from :meth:`RunOptions.start_workers` (the session
        closes them; so does a refusal here)."""
        from harness.runner.integrity import check_components_available, spec_identity

        with _close_on_error(workers):
            check_components_available(spec.cells(), registry)
            check_memory(spec, registry, options)
            run_dir = RunDir.create(results_dir, spec.name, label=name)
            run_dir.lock()
            with _unlock_on_error(run_dir):
                run_dir.write_meta(name, list(tags))
                run_dir.write_spec(spec.to_toml())
                run_dir.write_identity(spec_identity(spec))
        return cls(run_dir, spec, [], registry, options, resumed=False, workers=workers)

    @classmethod
    def resume(cls, path: str | Path, registry, options: RunOptions, workers=None) -> RunSession:
        """The run directory at ``path``, locked, checked against its spec and components,
        repaired (a torn last line), with its rows read (less those ``--retry-failed`` reruns).
        ``workers``: as for :meth:`create`."""
        from harness.runner.integrity import check_components_available, check_rows_belong, check_unchanged
        from harness.spec import load_spec

        with _close_on_error(workers):
            run_dir = RunDir.open(path)
            run_dir.lock()  # one writer at a time: before anything is repaired or appended
            if run_dir.stale_lock:
                options.log(f"note: took over the stale lock of pid {run_dir.stale_lock.get('pid')} "
                            "(no longer running)")
            with _unlock_on_error(run_dir):
                spec = load_spec(run_dir.spec_path, registry=registry)
                check_unchanged(run_dir, spec)
                check_components_available(spec.cells(), registry)
                check_memory(spec, registry, options)
                run_dir.repair()
                rows = run_dir.read_rows()
                check_rows_belong(run_dir, spec, rows)
        if options.retry_failed:  # their cells run again; the new rows replace these
            rows = [r for r in rows if r.get("status") not in RETRIED_STATUSES]
        return cls(run_dir, spec, rows, registry, options, resumed=True, workers=workers)

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc_info) -> None:
        _stop(self.workers)  # started but never used (no cell to run): not left behind
        self.run_dir.close()
        self.run_dir.unlock()

    # -- running -------------------------------------------------------------------------------

    def record_environment(self, threads: int | None) -> None:
        """Append this session to ``env.json`` (created with the machine's facts on a new run)."""
        from harness.runner import envinfo

        o = self.options
        session = envinfo.session(o.jobs if o.scheduler is None else None, threads, o.timeout)
        session["executor"] = o.executor
        if o.scheduler is not None:
            session["scheduler"] = o.scheduler
        if self.run_dir.env_path.exists():
            env = self.run_dir.read_env()
            before = [x.get("kernel_blas") for x in env.get("sessions", []) if x.get("kernel_blas")]
            now = session.get("kernel_blas")
            if before and now and before[-1].get("name") != now.get("name"):
                o.log(f"note: the run's earlier cells computed the training kernel's products with "
                      f"{before[-1].get('name')}, this session with {now.get('name')} "
                      f"(HARNESS_KERNEL_BLAS): rows agree to rounding, not bit for bit")
            env.setdefault("sessions", []).append(session)
        else:
            env = envinfo.collect(o.jobs, threads, o.timeout, current=session)
            env["sessions"] = [session]
        self.run_dir.write_env(env)

    def _first_round(self) -> list:
        from harness.runner.search import pending_cells

        done_ids = {r["cell_id"] for r in self.rows}
        todo = [c for c in self.cells if c.cell_id not in done_ids]
        if self.searching:
            todo += pending_cells(self.spec, self.rows)
        return todo

    def run_rounds(self, summarize: Summarize, while_waiting: Callable[[], None] | None = None) -> dict[str, Row]:
        """Run every cell without a row, then each round of the threshold searches, appending
        rows as they come; returns every row by cell id. Ctrl-C writes the summary and raises
        :class:`Interrupted`; a full disk or a Dask run without workers raises
        :class:`~harness.errors.RunStopped` with the resume command. ``while_waiting()`` is
        called on a thread of its own once the workers compute (see the module docstring; not
        with the inline executor); its errors are ignored."""
        from harness.runner.executors import WorkerPools, execute
        from harness.runner.integrity import is_search_row
        from harness.runner.progress import Progress
        from harness.runner.search import pending_cells

        o = self.options
        exec_options = o.executor_options()
        workers = None
        if o.local:  # kept between rounds
            workers, self.workers = self.workers or WorkerPools(), None
            exec_options["workers"] = workers
        todo = self._first_round()
        threads = o.threads()
        waiting = _WhileWaiting(lambda: self.record_environment(threads),
                                while_waiting if o.executor != "inline" else None)
        if o.local:
            exec_options["on_waiting"] = waiting.start
        else:
            waiting.start()
        known = {c.cell_id for c in self.cells} | {c.cell_id for c in todo}
        previous = [r for r in self.rows if r["cell_id"] in known or is_search_row(self.spec, r)]
        verb = "resuming" if self.resumed else "writing"
        where = f"executor={o.executor}" + (f" at {o.scheduler}" if o.scheduler is not None else
                                            f", jobs={o.jobs}, threads per job={threads}")
        more = " (threshold searches add cells as they go)" if self.searching else ""
        o.log(f"{verb} {self.run_dir.path}: {len(todo)} of {len(previous) + len(todo)} cells to run{more}, {where}")
        bar = Progress(total=len(previous) + len(todo), done=len(previous),
                       failures=sum(1 for r in previous if r.get("status") not in OK_STATUSES), quiet=not o.progress)
        all_rows: dict[str, Row] = {r["cell_id"]: r for r in self.rows}
        try:
            while todo:
                # cells learn their run directory (CellContext.run_dir: saved arrays); not their identity
                todo = [dataclasses.replace(c, run_dir=str(self.run_dir.path)) for c in todo]
                stream = execute(todo, jobs=o.jobs, timeout=o.timeout, registry=self.registry,
                                 executor=o.executor, **exec_options)
                try:
                    for row in stream:
                        waiting.environment_written()  # env.json comes before any row
                        self.run_dir.append_row(row)
                        all_rows[row["cell_id"]] = row
                        bar.update(row)
                finally:
                    stream.close()
                    self.run_dir.close()
                # the next round of every threshold search (none without searches)
                todo = pending_cells(self.spec, all_rows.values()) if self.searching else []
                bar.total += len(todo)
        except KeyboardInterrupt:
            bar.close()
            _stop(workers)
            waiting.finish(raise_error=False)
            finished = len(self.run_dir.read_rows())
            summarize(self.run_dir, self.cells, self.spec)
            self.record_end("interrupted")
            raise Interrupted(self.run_dir, finished, bar.total) from None
        except RunStopped as exc:  # a full disk, no Dask worker left: the finished rows are kept
            bar.close()
            _stop(workers)
            waiting.finish(raise_error=False)
            raise RunStopped(f"{exc}; the finished rows are kept: resume with: "
                             f"harness run --resume {self.run_dir.path}") from None
        except UserError:  # a write the run directory refuses (read-only): the rows so far are kept
            bar.close()
            _stop(workers)
            waiting.finish(raise_error=False)
            raise
        bar.close()
        _stop(workers)
        waiting.finish()
        return all_rows

    def finish(self, summarize: Summarize, outputs: Outputs | None = None) -> list[Row]:
        """Write the summary (a full disk: :class:`RunStopped` with the command that writes it
        again), then ``outputs`` (figures, report: they warn, never lose the run); returns the rows."""
        try:
            rows = summarize(self.run_dir, self.cells, self.spec)
        except RunStopped as exc:
            raise RunStopped(f"{exc}; every row is kept: write the summary again with: "
                             f"harness run --resume {self.run_dir.path}") from None
        if outputs is not None:
            outputs(self.run_dir, rows, self.spec)
        self.record_end("finished")
        return rows

    def record_end(self, how: str) -> None:
        """Complete this session's entry in ``env.json``: when and how it ended (``finished``,
        ``interrupted``), its wall and CPU seconds (:class:`harness.runner.envinfo.SessionClock`)."""
        env = self.run_dir.read_env()
        sessions = env.get("sessions") if isinstance(env.get("sessions"), list) else []
        if not sessions or not isinstance(sessions[-1], dict):
            return
        sessions[-1].update(self.clock.record(), ended=how)
        try:
            self.run_dir.write_env(env)
        except RunStopped:  # a full disk: the rows and outputs are what matters
            pass


def _stop(workers) -> None:
    if workers is not None:
        workers.close()


class _close_on_error:
    """Close worker processes started ahead of a session that could not be opened."""

    def __init__(self, workers) -> None:
        self.workers = workers

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _stop(self.workers)


class _WhileWaiting:
    """Writing ``env.json``, then an optional ``prepare()``, on a thread of this process started
    by :meth:`start` (while the workers compute), or here by :meth:`finish` if it never started.
    Errors of the environment are raised by :meth:`environment_written` and :meth:`finish`;
    those of ``prepare`` are ignored (the outputs it prepares meet them again, and warn)."""

    def __init__(self, environment: Callable[[], None], prepare: Callable[[], None] | None) -> None:
        self._environment = environment
        self._prepare = prepare
        self._thread: threading.Thread | None = None
        self._written = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="harness-while-waiting", daemon=True)
            self._thread.start()

    def _write_environment(self) -> None:
        try:
            self._environment()
        except BaseException as exc:  # raised in the caller's thread
            self._error = exc
        finally:
            self._written.set()

    def _run(self) -> None:
        if not self._written.is_set():
            self._write_environment()
        if self._prepare is not None:
            try:
                self._prepare()
            except BaseException:
                pass

    def environment_written(self) -> None:
        """Wait until ``env.json`` is written (here and now if the thread never started); raise
        its error if any."""
        if self._thread is None and not self._written.is_set():
            self._write_environment()
        self._written.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def finish(self, raise_error: bool = True) -> None:
        """Wait for both tasks (running them here if they never started)."""
        if self._thread is None:
            self._thread = threading.current_thread()
            self._run()
        elif self._thread is not threading.current_thread():
            self._thread.join()
        if raise_error:
            self.environment_written()


class _unlock_on_error:
    """Release the run directory's lock when the block raises (the session never started)."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.run_dir.unlock()


def run_status(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int], Mapping[str, Any] | None]:
    """``(counts by status, first row not ok)`` of a run's rows; ``None`` when every cell is ok
    (or ``skipped``). ``harness run`` exits with 0 then, with 3 otherwise."""
    counts: dict[str, int] = {}
    first = None
    for r in rows:
        status = r.get("status", "?")
        counts[status] = counts.get(status, 0) + 1
        if first is None and status not in OK_STATUSES:
            first = r
    return counts, first


def describe_failure(row: Mapping[str, Any]) -> str:
    """One line about a row that is not ok: block, coordinates, repetition and the error's first line."""
    coords = ", ".join(f"{k}={v}" for k, v in (row.get("coords") or {}).items())
    error = str(row.get("error") or "").strip().splitlines()
    text = (f"{row.get('experiment_id')} [{coords or 'no grid'}] repetition {row.get('repetition')}: "
            f"{row.get('status')}" + (f": {error[0]}" if error else ""))
    return text if len(text) <= 300 else text[:297] + "..."
