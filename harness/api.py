# Length: about 470 lines in one module because the run orchestration (run and resume, plan, plot)
# shares the run's state; analysis, catalogue, views, runs and integrity are modules of their own.
"""The Python API behind the CLI: run a benchmark, resume a run, plan one, load one back.

    import harness.api as h
    run_dir = h.run("benchmarks/min_overparam.toml", overrides=["benchmark.repetitions=2"], jobs=2)
    result = h.load_run(run_dir)
    result.rows, result.summary, result.spec
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.plugin.catalogue import check_plugin, describe_plugins  # noqa: F401  (public API)
from harness.results.analysis import (  # noqa: F401  (public API)
    compare,
    few_pairs_warning,
    fit,
    fits_json,
    format_comparisons,
    format_fits,
    load_runs,
    report,
)
from harness.results.runs import (  # noqa: F401  (public API)
    EXPORT_FORMATS,
    Run,
    _check_meta,
    _import_pandas,
    _search_order,
    export,
    format_runs,
    list_runs,
    load_run,
    remembered_jobs,
    resolve_run,
)
from harness.results.views import plan_lines, show_lines  # noqa: F401  (public API)
from harness.runner.integrity import (  # noqa: F401  (public API)
    _is_search_row,
    check_components_available,
    check_rows_belong,
    check_unchanged,
    component_versions,
    spec_identity,
)
from harness.runner.store import RunDir

from .errors import RunStopped, UserError


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C; its finished rows are kept in ``run_dir``."""

    def __init__(self, run_dir: RunDir, done: int, total: int) -> None:
        super().__init__(f"interrupted with {done} of {total} cells finished")
        self.run_dir = run_dir
        self.done = done
        self.total = total


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _check_options(jobs: int, timeout: float | None) -> None:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise UserError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not timeout > 0 or not math.isfinite(timeout)):
        raise UserError(f"--timeout {timeout!r}: must be a finite number of seconds > 0 (leave it out for "
                        "no timeout)")
    from .engine.kernel_blas import ENV, expected_name, mkl_library

    try:
        kernel = expected_name()
    except ValueError as exc:  # a bad HARNESS_KERNEL_BLAS: refused before any cell runs
        raise UserError(f"environment variable {exc}") from None
    if kernel == "mkl" and mkl_library() is None:
        raise UserError(f"environment variable {ENV}=mkl: MKL is not installed (pip install -e \".[mkl]\")")


def _registry(registry, plugins: Sequence[Any]):
    """The registry a call works with: the one given, or a fresh one of the installed plugins
    plus ``plugins``."""
    if registry is not None:
        if plugins:
            raise UserError("give either plugins or a registry built from them, not both")
        return registry
    from harness.plugin.manager import load_registry

    return load_registry(plugins)


def _load(spec, overrides: Sequence[str], registry):
    from .spec import Spec, load_spec

    if isinstance(spec, Spec):
        if overrides:
            raise UserError("overrides apply to a benchmark file, not to a loaded Spec")
        return spec
    if spec is None:
        raise UserError("no benchmark file given (or resume a run directory)")
    return load_spec(spec, overrides, registry=registry)


def run(spec=None, overrides: Sequence[str] = (), jobs: int = 1, timeout: float | None = None,
        resume: str | Path | None = None, results_dir: str | Path = "results", progress: bool = True,
        figures: bool = True, executor: str | None = None, scheduler: str | None = None,
        name: str | None = None, tags: Sequence[str] = (), force: bool = False,
        retry_failed: bool = False, worker_wait: float | None = None, plugins: Sequence[Any] = (),
        registry=None) -> RunDir:
    """Run a benchmark (a file path or a :class:`harness.spec.Spec`) and return its run directory.

    ``plugins``: plugin modules (or module names, or objects) to use besides the installed ones;
    the run builds its own registry from them (:func:`harness.plugin.manager.load_registry`),
    and worker processes rebuild it from the same list. ``registry``: an already built one.

    ``executor``: ``"serial"`` (one reused worker process), ``"processes"``, ``"dask"`` or
    ``"inline"`` (this process: no crash isolation, for debugging) (``None``: serial for one
    job, else processes; dask when a ``scheduler`` is given). ``scheduler``: the
    address of a Dask scheduler (``tcp://HOST:PORT``); with ``executor="dask"`` and no address
    a local Dask cluster of ``jobs`` worker processes runs the cells.

    ``resume=RUN_DIR`` instead finishes an earlier run: only the cells without a row run. Rows are
    appended to ``rows.jsonl`` as cells finish; ``summary.csv`` is written at the end (also when
    interrupted) and the figures after a complete pass. Ctrl-C raises :class:`Interrupted`.

    ``name`` (part of the directory name) and ``tags`` are kept in ``meta.json`` and shown by
    :func:`list_runs`; a resumed run keeps its own.

    Integrity: the run directory is locked while this runs (a second writer gets a
    :class:`UserError` naming this one); a resume of a run whose ``spec.toml`` was edited, or
    whose components' versions changed, is refused naming what changed (cell ids cover
    everything that determines a result, :mod:`harness.spec.cells`). ``retry_failed`` (with
    ``resume``): cells whose row is ``failed`` or ``timeout`` run again (the new row replaces
    the old). A full disk raises :class:`~harness.errors.RunStopped` with the resume command;
    so does a Dask run left without any worker for ``worker_wait`` seconds (default
    :data:`harness.runner.dask_executor.WORKER_WAIT`). Whether every cell is ok: :func:`run_status`.

    Before anything runs, each cell's memory estimate is compared with the machine's memory
    (:func:`harness.runner.resources.check_memory`): a cell that cannot fit is a :class:`UserError`
    unless ``force``.
    """
    from harness.runner import envinfo
    from harness.runner.executors import check_executor, choose_executor, cpu_count, execute, threads_per_job
    from harness.runner.progress import Progress

    _check_options(jobs, timeout)
    tags = _check_meta(name, tags, resume)
    executor = choose_executor(executor, jobs, timeout, scheduler)
    options = {"scheduler": scheduler, "log": _log if progress else None} if executor == "dask" else {}
    if retry_failed and resume is None:
        raise UserError("--retry-failed reruns the failed cells of a run: use it with --resume RUN_DIR")
    if worker_wait is not None and (not isinstance(worker_wait, (int, float)) or isinstance(worker_wait, bool)
                                    or not 0 < worker_wait < math.inf):
        raise UserError(f"the wait for a Dask worker must be a finite number of seconds > 0, got {worker_wait!r}")
    if worker_wait is not None and executor == "dask":
        options["worker_wait"] = float(worker_wait)
    check_executor(executor, **options)
    registry = _registry(registry, plugins)
    if resume is not None:
        if spec is not None:
            raise UserError("give either a benchmark file or a run directory to resume, not both")
        if overrides:
            raise UserError("--set cannot change a run being resumed; start a new run instead")
        from .spec import load_spec

        run_dir = RunDir.open(resume)
        run_dir.lock()  # one writer at a time: before anything is repaired or appended
        if run_dir.stale_lock and progress:
            _log(f"note: took over the stale lock of pid {run_dir.stale_lock.get('pid')} (no longer running)")
        with _unlock_on_error(run_dir):
            spec_obj = load_spec(run_dir.spec_path, registry=registry)
            check_unchanged(run_dir, spec_obj)
            check_components_available(spec_obj.cells(), registry)
            _check_memory(spec_obj, registry, force, progress)
            run_dir.repair()
            rows = run_dir.read_rows()
            check_rows_belong(run_dir, spec_obj, rows)
        if retry_failed:  # their cells run again; the new rows replace these
            rows = [r for r in rows if r.get("status") not in RETRIED_STATUSES]
    else:
        spec_obj = _load(spec, overrides, registry)
        check_components_available(spec_obj.cells(), registry)
        _check_memory(spec_obj, registry, force, progress)
        run_dir = RunDir.create(results_dir, spec_obj.name, label=name)
        run_dir.lock()
        with _unlock_on_error(run_dir):
            run_dir.write_meta(name, tags)
            run_dir.write_spec(spec_obj.to_toml())
            run_dir.write_identity(spec_identity(spec_obj))
        rows = []
    if executor in ("serial", "processes"):  # worker processes kept from one round to the next
        from harness.runner.executors import WorkerPools

        options["workers"] = workers = WorkerPools()
    else:
        workers = None

    from harness.runner.search import pending_cells

    cells = spec_obj.cells()
    done_ids = {r["cell_id"] for r in rows}
    todo = [c for c in cells if c.cell_id not in done_ids]
    searching = any(e.search is not None for e in spec_obj.experiments)
    if searching:
        todo += pending_cells(spec_obj, rows)
    if executor == "serial":
        threads = cpu_count()
    elif scheduler is not None:
        threads = None  # the cluster's workers decide (see harness.runner.dask_executor)
    else:
        threads = threads_per_job(jobs)
    session = envinfo.session(jobs if scheduler is None else None, threads, timeout)
    session["executor"] = executor
    if scheduler is not None:
        session["scheduler"] = scheduler
    if run_dir.env_path.exists():
        env = run_dir.read_env()
        before = [x.get("kernel_blas") for x in env.get("sessions", []) if x.get("kernel_blas")]
        now = session.get("kernel_blas")
        if progress and before and now and before[-1].get("name") != now.get("name"):
            _log(f"note: the run's earlier cells computed the training kernel's products with "
                 f"{before[-1].get('name')}, this session with {now.get('name')} "
                 f"(HARNESS_KERNEL_BLAS): rows agree to rounding, not bit for bit")
        env.setdefault("sessions", []).append(session)
    else:
        env = envinfo.collect(jobs, threads, timeout)
        env["sessions"] = [session]
    with _unlock_on_error(run_dir):
        run_dir.write_env(env)

    if progress:
        verb = "resuming" if resume is not None else "writing"
        where = f"executor={executor}" + (f" at {scheduler}" if scheduler is not None else
                                          f", jobs={jobs}, threads per job={threads}")
        more = " (threshold searches add cells as they go)" if searching else ""
    known = {c.cell_id for c in cells} | {c.cell_id for c in todo}
    previous = [r for r in rows if r["cell_id"] in known or _is_search_row(spec_obj, r)]
    if progress:
        _log(f"{verb} {run_dir.path}: {len(todo)} of {len(previous) + len(todo)} cells to run{more}, {where}")
    bar = Progress(total=len(previous) + len(todo), done=len(previous),
                   failures=sum(1 for r in previous if r.get("status") not in ("ok", "skipped")),
                   quiet=not progress)
    all_rows = {r["cell_id"]: r for r in rows}
    while todo:
        # cells learn their run directory (CellContext.run_dir: saved arrays); not their identity
        todo = [dataclasses.replace(c, run_dir=str(run_dir.path)) for c in todo]
        stream = execute(todo, jobs=jobs, timeout=timeout, registry=registry, executor=executor, **options)
        try:
            for row in stream:
                run_dir.append_row(row)
                all_rows[row["cell_id"]] = row
                bar.update(row)
        except KeyboardInterrupt:
            stream.close()
            run_dir.close()
            bar.close()
            _stop(workers)
            finished = len(run_dir.read_rows())
            try:
                _write_summary(run_dir, cells, spec_obj)
            finally:
                run_dir.unlock()
            raise Interrupted(run_dir, finished, bar.total) from None
        except RunStopped as exc:  # a full disk, no Dask worker left: the finished rows are kept
            stream.close()
            bar.close()
            _stop(workers)
            run_dir.unlock()
            raise RunStopped(f"{exc}; the finished rows are kept: resume with: "
                             f"harness run --resume {run_dir.path}") from None
        finally:
            stream.close()
            run_dir.close()
        # the next round of every threshold search (none without searches)
        todo = pending_cells(spec_obj, all_rows.values()) if searching else []
        bar.total += len(todo)
    bar.close()
    _stop(workers)
    try:
        all_rows = _write_summary(run_dir, cells, spec_obj)
    except RunStopped as exc:
        run_dir.unlock()
        raise RunStopped(f"{exc}; every row is kept: write the summary again with: "
                         f"harness run --resume {run_dir.path}") from None
    if figures:
        report = _draw(run_dir, all_rows, spec_obj, registry)
        for warning in report.warnings:
            _log(f"warning: {warning}")
    _write_report(run_dir, registry)
    run_dir.unlock()
    return run_dir


RETRIED_STATUSES = ("failed", "timeout")
"""The statuses whose cells ``--retry-failed`` runs again."""
OK_STATUSES = ("ok", "skipped")
"""The statuses of a successful cell: a skipped cell is one the experiment declares it does not
run (:class:`harness.plugin.components.Skip`), not a failure."""


@contextlib.contextmanager
def _unlock_on_error(run_dir: RunDir):
    try:
        yield
    except BaseException:
        run_dir.unlock()
        raise


def _stop(workers) -> None:
    if workers is not None:
        workers.close()


def run_status(rows) -> tuple[dict[str, int], dict[str, Any] | None]:
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


def _check_memory(spec, registry, force: bool, progress: bool) -> None:
    from harness.runner.resources import check_memory

    check_memory(spec, registry, force=force, log=_log if progress else None)


def _write_report(run_dir: RunDir, registry=None) -> None:
    """Write ``report.html``; a failure is a warning, never a lost run."""
    try:
        from harness.results.report import write_report

        write_report(load_run(run_dir, registry))
    except Exception as exc:
        _log(f"warning: report.html could not be written: {type(exc).__name__}: {exc}")


def _write_summary(run_dir: RunDir, cells, spec=None) -> list[dict[str, Any]]:
    """Write ``summary.csv`` (and ``thresholds.csv`` when the spec searches an axis)."""
    rows = run_dir.read_rows()
    order = list(dict.fromkeys(c.point_id for c in cells))
    run_dir.write_summary(rows, _search_order(spec, rows, order))
    if spec is not None and any(e.search is not None for e in spec.experiments):
        from harness.runner.search import thresholds, thresholds_csv

        run_dir.write_text("thresholds.csv", thresholds_csv(thresholds(spec, rows)))
    return rows


def _draw(run_dir: RunDir, rows, spec, registry):
    from harness.results.figures import FigureReport, blocks_from_rows, blocks_from_spec, draw

    blocks = blocks_from_spec(spec, rows) if spec is not None else blocks_from_rows(rows)
    name = spec.name if spec is not None else run_dir.path.parent.name
    try:
        return draw(run_dir.path, rows, blocks, name, registry)
    except Exception as exc:  # figures never lose a run
        report = FigureReport()
        report.warnings.append(f"figures failed: {type(exc).__name__}: {exc}")
        return report


def plot(run_dir: str | Path, plugins: Sequence[Any] = (), registry=None):
    """(Re)draw the figures of a run directory and refresh its report.html; returns a
    :class:`harness.results.figures.FigureReport`."""
    registry = _registry(registry, plugins)
    result = load_run(run_dir, registry)
    drawn = _draw(result.run_dir, result.rows, result.spec, registry)
    _write_report(result.run_dir, registry)
    return drawn


def plot_metric(run_dir: str | Path, metric: str, x: str, hue: str | None = None, log: bool = False,
                experiment_id: str | None = None, plugins: Sequence[Any] = (), registry=None) -> list[Path]:
    """Draw ``metric`` against ``x`` (one line per ``hue`` value, one panel per combination of
    the other grid axes; :mod:`harness.results.metric_plot`) into ``RUN/figures/<block>-plot_...`` (one
    figure per experiment block, or only ``experiment_id``); returns the paths written."""
    from harness.plugin.figures import FORMATS, close_figure, save_figure
    from harness.results.metric_plot import figure_stem, metric_figure

    registry = _registry(registry, plugins)
    result = load_run(run_dir, registry)
    blocks: dict = {}
    for row in result.rows:
        blocks.setdefault(row.get("experiment_id"), []).append(row)
    if experiment_id is not None:
        if experiment_id not in blocks:
            raise UserError(f"no experiment block {experiment_id!r} in {run_dir}; "
                            f"blocks: {', '.join(map(str, blocks))}")
        blocks = {experiment_id: blocks[experiment_id]}
    written: list[Path] = []
    problems = []
    out_dir = result.run_dir.path / "figures"
    for block, rows in blocks.items():
        try:
            fig = metric_figure(rows, metric, x, hue, log, title=f"{block}: {metric} against {x}")
        except ValueError as exc:
            problems.append(f"{block}: {exc}")
            continue
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{block}-{figure_stem(metric, x, hue, log)}"
            written += save_figure(fig, {fmt: out_dir / f"{stem}.{fmt}" for fmt in FORMATS})
        finally:
            close_figure(fig)
    if not written:
        raise UserError("nothing to draw: " + "; ".join(problems))
    return written


def plan(spec, overrides: Sequence[str] = (), jobs: int = 1, plugins: Sequence[Any] = (),
         registry=None) -> list[dict[str, Any]]:
    """The cells a run would execute, each with its cost estimate (``--dry-run``).

    A block with a threshold search contributes the cells of an expected search path
    (:func:`harness.runner.search.expected_path`; ``searched`` is true for them): the real search
    visits about as many axis values, at places its results decide.

    Returns one dict per cell: ``cell`` (:class:`harness.spec.cells.Cell`), ``memory_bytes`` and
    ``seconds`` (``None`` where the experiment does not say), ``setup_key``/``setup_seconds``
    (a cost paid once per worker process for all cells with that key, or ``None``) and
    ``error`` (an estimate that failed). Seconds are for cells running with ``-j jobs``, i.e.
    ``cores // jobs`` threads each, from rates calibrated on this machine
    (:mod:`harness.plugin.calibration`); :func:`harness.plugin.calibration.schedule` turns them into a wall time.
    Cells the runner would group (:func:`harness.runner.execute.group_cells`) and whose estimate is
    ``stacked`` share their worker's threads: their seconds are divided by
    :func:`harness.plugin.calibration.parallel_speedup` of ``min(threads, group size)``.
    """
    from harness.plugin import calibration
    from harness.runner.execute import cell_context, group_cells
    from harness.runner.executors import threads_per_job

    registry = _registry(registry, plugins)
    spec_obj = _load(spec, overrides, registry)
    out = []
    cache: dict[str, Any] = {}
    from harness.runner.search import expected_path, point_searches

    searched: list = []  # a searched block's cells along an expected path (harness.runner.search)
    for point in point_searches(spec_obj):
        for x in expected_path(point.search, point.start):
            searched.extend(point.make_cells(x))
    searched_ids = {c.cell_id for c in searched}
    stacked: dict[int, tuple[dict, bool]] = {}  # id(cell) -> (its entry, its estimate's "stacked")
    with calibration.for_threads(threads_per_job(jobs)):
        cells = spec_obj.cells() + searched
        for cell in cells:
            entry: dict[str, Any] = {"cell": cell, "memory_bytes": None, "seconds": None,
                                     "setup_key": None, "setup_seconds": None, "error": None,
                                     "searched": cell.cell_id in searched_ids}
            key = cell.point_id
            if key not in cache:
                try:
                    experiment = cell_context(cell, registry)[0]
                    cache[key] = dict(experiment.estimate(cell.params, cell.components) or {})
                except Exception as exc:
                    cache[key] = {"error": f"{type(exc).__name__}: {exc}"}
            est = cache[key]
            for k in ("memory_bytes", "seconds", "setup_key", "setup_seconds", "error"):
                if est.get(k) is not None:
                    entry[k] = est[k]
            if entry["setup_key"] is not None and est.get("setup_scope") == "seed":
                entry["setup_key"] = (entry["setup_key"], cell.root_seed, tuple(cell.spawn_key))
            out.append(entry)
            stacked[id(cell)] = (entry, bool(est.get("stacked")))
    threads = threads_per_job(jobs)
    if threads > 1:
        for group in group_cells(cells, registry, parts=jobs):
            factor = calibration.parallel_speedup(min(threads, len(group)))
            for cell in group:
                entry, shares = stacked[id(cell)]
                if shares and len(group) > 1 and entry["seconds"] is not None:
                    entry["seconds"] = float(entry["seconds"]) / factor
    return out


def recalibrate() -> None:
    """Forget the cost rates measured on this machine: the next plan measures them again."""
    from harness.plugin import calibration

    calibration.recalibrate()
