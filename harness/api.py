"""The Python API behind the CLI: run a benchmark, resume a run, plan one, load one back.

    import harness.api as h
    run_dir = h.run("benchmarks/min_overparam.toml", overrides=["benchmark.repetitions=2"], jobs=2)
    result = h.load_run(run_dir)
    result.rows, result.summary, result.spec
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError
from .store import RunDir


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
                                or not timeout > 0):
        raise UserError(f"timeout must be a number of seconds > 0, got {timeout!r}")


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
        figures: bool = True, executor: str | None = None, scheduler: str | None = None) -> RunDir:
    """Run a benchmark (a file path or a :class:`harness.spec.Spec`) and return its run directory.

    ``executor``: ``"serial"``, ``"processes"`` or ``"dask"`` (``None``: serial for one job
    without a timeout, else processes; dask when a ``scheduler`` is given). ``scheduler``: the
    address of a Dask scheduler (``tcp://HOST:PORT``); with ``executor="dask"`` and no address
    a local Dask cluster of ``jobs`` worker processes runs the cells.

    ``resume=RUN_DIR`` instead finishes an earlier run: only the cells without a row run. Rows are
    appended to ``rows.jsonl`` as cells finish; ``summary.csv`` is written at the end (also when
    interrupted) and the figures after a complete pass. Ctrl-C raises :class:`Interrupted`.
    """
    from . import envinfo
    from .plugin_manager import get_registry
    from .progress import Progress
    from .runner import check_executor, choose_executor, cpu_count, execute, threads_per_job

    _check_options(jobs, timeout)
    executor = choose_executor(executor, jobs, timeout, scheduler)
    options = {"scheduler": scheduler, "log": _log if progress else None} if executor == "dask" else {}
    check_executor(executor, **options)
    registry = get_registry()
    if resume is not None:
        if spec is not None:
            raise UserError("give either a benchmark file or a run directory to resume, not both")
        if overrides:
            raise UserError("--set cannot change a run being resumed; start a new run instead")
        from .spec import load_spec

        run_dir = RunDir.open(resume)
        spec_obj = load_spec(run_dir.spec_path, registry=registry)
        check_components_available(spec_obj.cells(), registry)
        run_dir.repair()
        rows = run_dir.read_rows()
    else:
        spec_obj = _load(spec, overrides, registry)
        check_components_available(spec_obj.cells(), registry)
        run_dir = RunDir.create(results_dir, spec_obj.name)
        run_dir.write_spec(spec_obj.to_toml())
        rows = []

    cells = spec_obj.cells()
    done_ids = {r["cell_id"] for r in rows}
    todo = [c for c in cells if c.cell_id not in done_ids]
    if executor == "serial":
        threads = cpu_count()
    elif scheduler is not None:
        threads = None  # the cluster's workers decide (see harness.dask_executor)
    else:
        threads = threads_per_job(jobs)
    session = envinfo.session(jobs if scheduler is None else None, threads, timeout)
    session["executor"] = executor
    if scheduler is not None:
        session["scheduler"] = scheduler
    if run_dir.env_path.exists():
        env = run_dir.read_env()
        env.setdefault("sessions", []).append(session)
    else:
        env = envinfo.collect(jobs, threads, timeout)
        env["sessions"] = [session]
    run_dir.write_env(env)

    if progress:
        verb = "resuming" if resume is not None else "writing"
        where = f"executor={executor}" + (f" at {scheduler}" if scheduler is not None else
                                          f", jobs={jobs}, threads per job={threads}")
        _log(f"{verb} {run_dir.path}: {len(todo)} of {len(cells)} cells to run, {where}")
    cell_ids = {c.cell_id for c in cells}
    previous = [r for r in rows if r["cell_id"] in cell_ids]
    bar = Progress(total=len(cells), done=len(previous),
                   failures=sum(1 for r in previous if r.get("status") not in ("ok", "skipped")),
                   quiet=not progress)
    stream = execute(todo, jobs=jobs, timeout=timeout, registry=registry, executor=executor, **options)
    try:
        for row in stream:
            run_dir.append_row(row)
            bar.update(row)
    except KeyboardInterrupt:
        stream.close()
        run_dir.close()
        bar.close()
        finished = len(run_dir.read_rows())
        _write_summary(run_dir, cells)
        raise Interrupted(run_dir, finished, len(cells)) from None
    finally:
        stream.close()
        run_dir.close()
    bar.close()
    all_rows = _write_summary(run_dir, cells)
    if figures:
        report = _draw(run_dir, all_rows, spec_obj, registry)
        for warning in report.warnings:
            _log(f"warning: {warning}")
    _write_report(run_dir)
    return run_dir


def check_components_available(cells, registry) -> None:
    """Raise the :class:`~harness.errors.PluginError` of the first component the cells use whose
    optional dependencies are missing here (``Component.check_available``), before anything runs."""
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        try:
            cls = registry.get("experiment", cell.experiment)
        except Exception:
            continue  # run_cell reports it as a failed row
        for slot, chosen in cell.components.items():
            kind = dict(cls.slots).get(slot, (None,))[0]
            if kind is None or (kind, chosen["name"]) in seen:
                continue
            seen.add((kind, chosen["name"]))
            try:
                component = registry.get(kind, chosen["name"])
            except Exception:
                continue
            component.check_available()


def _write_report(run_dir: RunDir) -> None:
    """Write ``report.html``; a failure is a warning, never a lost run."""
    try:
        from .report import write_report

        write_report(run_dir.path)
    except Exception as exc:
        _log(f"warning: report.html could not be written: {type(exc).__name__}: {exc}")


def _write_summary(run_dir: RunDir, cells) -> list[dict[str, Any]]:
    rows = run_dir.read_rows()
    order = list(dict.fromkeys(c.point_id for c in cells))
    run_dir.write_summary(rows, order)
    return rows


def _draw(run_dir: RunDir, rows, spec, registry):
    from .figures import FigureReport, blocks_from_rows, blocks_from_spec, draw

    blocks = blocks_from_spec(spec) if spec is not None else blocks_from_rows(rows)
    name = spec.name if spec is not None else run_dir.path.parent.name
    try:
        return draw(run_dir.path, rows, blocks, name, registry)
    except Exception as exc:  # figures never lose a run
        report = FigureReport()
        report.warnings.append(f"figures failed: {type(exc).__name__}: {exc}")
        return report


def plot(run_dir: str | Path):
    """(Re)draw the figures of a run directory and refresh its report.html; returns a
    :class:`harness.figures.FigureReport`."""
    result = load_run(run_dir)
    from .plugin_manager import get_registry

    drawn = _draw(result.run_dir, result.rows, result.spec, get_registry())
    _write_report(result.run_dir)
    return drawn


def plan(spec, overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The cells a run would execute, each with its cost estimate (``--dry-run``).

    Returns one dict per cell: ``cell`` (:class:`harness.cells.Cell`), ``memory_bytes`` and
    ``seconds`` (``None`` where the experiment does not say) and ``error`` (an estimate that
    failed).
    """
    from .plugin_manager import get_registry

    registry = get_registry()
    spec_obj = _load(spec, overrides, registry)
    out = []
    cache: dict[str, Any] = {}
    for cell in spec_obj.cells():
        entry: dict[str, Any] = {"cell": cell, "memory_bytes": None, "seconds": None, "error": None}
        key = cell.point_id
        if key not in cache:
            try:
                cls = registry.get("experiment", cell.experiment)
                cache[key] = dict(cls(**cell.params).estimate(cell.params, cell.components) or {})
            except Exception as exc:
                cache[key] = {"error": f"{type(exc).__name__}: {exc}"}
        est = cache[key]
        for k in ("memory_bytes", "seconds", "error"):
            if est.get(k) is not None:
                entry[k] = est[k]
        out.append(entry)
    return out


@dataclass
class Run:
    """A run directory loaded back: its rows, summary, spec and environment."""

    run_dir: RunDir
    rows: list[dict[str, Any]]
    env: dict[str, Any]
    spec: Any = None
    spec_error: str | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def total(self) -> int | None:
        """Cells in the spec (``None`` when the spec cannot be loaded)."""
        return len(self.spec.cells()) if self.spec is not None else None

    @property
    def missing(self) -> int | None:
        if self.spec is None:
            return None
        have = {r["cell_id"] for r in self.rows}
        return sum(1 for c in self.spec.cells() if c.cell_id not in have)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        return counts


def load_run(path: str | Path | RunDir) -> Run:
    """Load a run directory (its spec is re-validated; if that fails ``spec`` is ``None`` and
    ``spec_error`` says why)."""
    from .errors import UserError as _UserError
    from .summary import summarize

    run_dir = RunDir.open(path.path if isinstance(path, RunDir) else path)
    rows = run_dir.read_rows()
    spec, spec_error = None, None
    try:
        from .spec import load_spec

        spec = load_spec(run_dir.spec_path)
    except _UserError as exc:
        spec_error = str(exc)
    order = list(dict.fromkeys(c.point_id for c in spec.cells())) if spec is not None else None
    return Run(run_dir=run_dir, rows=rows, env=run_dir.read_env(), spec=spec, spec_error=spec_error,
               summary=summarize(rows, order))
