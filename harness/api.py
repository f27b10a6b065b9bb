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
from typing import Any, Mapping, Sequence

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
        figures: bool = True, executor: str | None = None, scheduler: str | None = None,
        name: str | None = None, tags: Sequence[str] = ()) -> RunDir:
    """Run a benchmark (a file path or a :class:`harness.spec.Spec`) and return its run directory.

    ``executor``: ``"serial"``, ``"processes"`` or ``"dask"`` (``None``: serial for one job
    without a timeout, else processes; dask when a ``scheduler`` is given). ``scheduler``: the
    address of a Dask scheduler (``tcp://HOST:PORT``); with ``executor="dask"`` and no address
    a local Dask cluster of ``jobs`` worker processes runs the cells.

    ``resume=RUN_DIR`` instead finishes an earlier run: only the cells without a row run. Rows are
    appended to ``rows.jsonl`` as cells finish; ``summary.csv`` is written at the end (also when
    interrupted) and the figures after a complete pass. Ctrl-C raises :class:`Interrupted`.

    ``name`` (part of the directory name) and ``tags`` are kept in ``meta.json`` and shown by
    :func:`list_runs`; a resumed run keeps its own.
    """
    from . import envinfo
    from .plugin_manager import get_registry
    from .progress import Progress
    from .runner import check_executor, choose_executor, cpu_count, execute, threads_per_job

    _check_options(jobs, timeout)
    tags = _check_meta(name, tags, resume)
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
        run_dir = RunDir.create(results_dir, spec_obj.name, label=name)
        run_dir.write_meta(name, tags)
        run_dir.write_spec(spec_obj.to_toml())
        rows = []

    from .search import pending_cells

    cells = spec_obj.cells()
    done_ids = {r["cell_id"] for r in rows}
    todo = [c for c in cells if c.cell_id not in done_ids]
    searching = any(e.search is not None for e in spec_obj.experiments)
    if searching:
        todo += pending_cells(spec_obj, rows)
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
            finished = len(run_dir.read_rows())
            _write_summary(run_dir, cells, spec_obj)
            raise Interrupted(run_dir, finished, bar.total) from None
        finally:
            stream.close()
            run_dir.close()
        # the next round of every threshold search (none without searches)
        todo = pending_cells(spec_obj, all_rows.values()) if searching else []
        bar.total += len(todo)
    bar.close()
    all_rows = _write_summary(run_dir, cells, spec_obj)
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


def _is_search_row(spec, row) -> bool:
    exp = next((e for e in spec.experiments if e.id == row.get("experiment_id")), None)
    return exp is not None and exp.search is not None


def _write_summary(run_dir: RunDir, cells, spec=None) -> list[dict[str, Any]]:
    """Write ``summary.csv`` (and ``thresholds.csv`` when the spec searches an axis)."""
    rows = run_dir.read_rows()
    order = list(dict.fromkeys(c.point_id for c in cells))
    run_dir.write_summary(rows, _search_order(spec, rows, order))
    if spec is not None and any(e.search is not None for e in spec.experiments):
        from .search import thresholds, thresholds_csv

        run_dir.write_text("thresholds.csv", thresholds_csv(thresholds(spec, rows)))
    return rows


def _search_order(spec, rows, order: list[str]) -> list[str]:
    """Grid order for the points of searched blocks too: by block, grid point, then axis value."""
    if spec is None or not any(e.search is not None for e in spec.experiments):
        return order
    from .search import replay

    by_id = {r["cell_id"]: r for r in rows}
    out = list(order)
    for exp in spec.experiments:
        if exp.search is None:
            continue
        for point in exp.point_searches(spec.seed):
            for x in sorted(replay(point, by_id).evaluated):
                out.append(point.make_cells(x)[0].point_id)
    return out


def _draw(run_dir: RunDir, rows, spec, registry):
    from .figures import FigureReport, blocks_from_rows, blocks_from_spec, draw

    blocks = blocks_from_spec(spec, rows) if spec is not None else blocks_from_rows(rows)
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


def plan(spec, overrides: Sequence[str] = (), jobs: int = 1) -> list[dict[str, Any]]:
    """The cells a run would execute, each with its cost estimate (``--dry-run``).

    A block with a threshold search contributes the cells of an expected search path
    (:func:`harness.search.expected_path`; ``searched`` is true for them): the real search
    visits about as many axis values, at places its results decide.

    Returns one dict per cell: ``cell`` (:class:`harness.cells.Cell`), ``memory_bytes`` and
    ``seconds`` (``None`` where the experiment does not say), ``setup_key``/``setup_seconds``
    (a cost paid once per worker process for all cells with that key, or ``None``) and
    ``error`` (an estimate that failed). Seconds are for cells running with ``-j jobs``, i.e.
    ``cores // jobs`` threads each, from rates calibrated on this machine
    (:mod:`harness.calibration`); :func:`harness.calibration.schedule` turns them into a wall time.
    """
    from . import calibration
    from .plugin_manager import get_registry
    from .runner import threads_per_job

    registry = get_registry()
    spec_obj = _load(spec, overrides, registry)
    out = []
    cache: dict[str, Any] = {}
    from .search import expected_path, point_searches

    searched: list = []  # a searched block's cells along an expected path (harness.search)
    for point in point_searches(spec_obj):
        for x in expected_path(point.search, point.start):
            searched.extend(point.make_cells(x))
    searched_ids = {c.cell_id for c in searched}
    with calibration.for_threads(threads_per_job(jobs)):
        cells = spec_obj.cells() + searched
        for cell in cells:
            entry: dict[str, Any] = {"cell": cell, "memory_bytes": None, "seconds": None,
                                     "setup_key": None, "setup_seconds": None, "error": None,
                                     "searched": cell.cell_id in searched_ids}
            key = cell.point_id
            if key not in cache:
                try:
                    cls = registry.get("experiment", cell.experiment)
                    cache[key] = dict(cls(**cell.params).estimate(cell.params, cell.components) or {})
                except Exception as exc:
                    cache[key] = {"error": f"{type(exc).__name__}: {exc}"}
            est = cache[key]
            for k in ("memory_bytes", "seconds", "setup_key", "setup_seconds", "error"):
                if est.get(k) is not None:
                    entry[k] = est[k]
            if entry["setup_key"] is not None and est.get("setup_scope") == "seed":
                entry["setup_key"] = (entry["setup_key"], cell.root_seed, tuple(cell.spawn_key))
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
        """Cells in the spec (``None`` when the spec cannot be loaded); for threshold searches,
        the cells visited so far plus those the searches need next."""
        if self.spec is None:
            return None
        from .search import searched_cell_ids

        visited, pending = searched_cell_ids(self.spec, self.rows)
        return len(self.spec.cells()) + len(visited) + pending

    @property
    def missing(self) -> int | None:
        if self.spec is None:
            return None
        from .search import pending_cells

        have = {r["cell_id"] for r in self.rows}
        return (sum(1 for c in self.spec.cells() if c.cell_id not in have)
                + len(pending_cells(self.spec, self.rows)))

    @property
    def thresholds(self) -> list[dict[str, Any]]:
        """One line per searched grid point (:func:`harness.search.thresholds`); empty without
        a search or a loadable spec."""
        if self.spec is None:
            return []
        from .search import thresholds

        return thresholds(self.spec, self.rows)

    @property
    def meta(self) -> dict[str, Any]:
        """``meta.json``: the run's ``name`` and ``tags`` (``{}`` for an older run)."""
        return self.run_dir.read_meta()

    def to_records(self) -> tuple[list[str], list[dict[str, Any]]]:
        """``(columns, records)``: one flat record per row, in the grid's order
        (:func:`harness.summary.tidy` says which columns)."""
        from .summary import tidy

        return tidy(self.rows, [line["point_id"] for line in self.summary])

    def to_pandas(self):
        """The rows as one tidy :class:`pandas.DataFrame` (:meth:`to_records`); needs pandas."""
        pd = _import_pandas("Run.to_pandas()")
        cols, records = self.to_records()
        return pd.DataFrame.from_records(records, columns=cols)

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
    if spec is not None:
        order = _search_order(spec, rows, order)
    return Run(run_dir=run_dir, rows=rows, env=run_dir.read_env(), spec=spec, spec_error=spec_error,
               summary=summarize(rows, order))


# ----------------------------------------------------------------------------------------------
# finding runs, exporting them


def _check_meta(name: str | None, tags: Sequence[str], resume) -> list[str]:
    from .store import check_label, check_tags

    if isinstance(tags, str):
        tags = [tags]
    if resume is not None and (name or tags):
        raise UserError("--name and --tag label a new run; a resumed run keeps the name and tags it has")
    if name is not None:
        check_label(name)
    return check_tags(tags)


def resolve_run(path: str | Path, results_dir: str | Path | None = None) -> Path:
    """The run directory ``path`` names: a path, ``latest`` (the newest run under the results
    folder) or ``latest:BENCHMARK`` (the newest run of one benchmark). A :class:`UserError`
    when it is not a run directory."""
    from .store import resolve_run_path

    return RunDir.open(resolve_run_path(path, results_dir)).path


def list_runs(benchmark: str | None = None, results_dir: str | Path | None = None,
              tags: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The runs under ``results_dir`` (default ``$HARNESS_RESULTS_DIR`` or ``results``), oldest
    first; with ``benchmark`` only its runs, with ``tags`` only runs holding every one of them.

    One dict per run: ``path``, ``benchmark``, ``started`` (local time, ``YYYY-mm-dd HH:MM:SS``),
    ``rows`` (cells finished), ``status`` (counts by status), ``commit`` (the harness's git
    commit, from ``env.json``), ``dirty``, ``name`` and ``tags`` (from ``meta.json``),
    ``sessions`` (the first run and each resume) and ``jobs`` (of the last session)."""
    from datetime import datetime

    from .store import find_runs, run_sort_key

    out = []
    for path in find_runs(results_dir, benchmark):
        run_dir = RunDir(path)
        meta, env = run_dir.read_meta(), run_dir.read_env()
        run_tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        if any(t not in run_tags for t in tags):
            continue
        counts: dict[str, int] = {}
        try:
            rows = run_dir.read_rows()
        except UserError:
            rows = None
        for r in rows or ():
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        sessions = env.get("sessions") if isinstance(env.get("sessions"), list) else []
        started = None
        if sessions and isinstance(sessions[0], dict) and sessions[0].get("started"):
            try:
                started = datetime.fromisoformat(sessions[0]["started"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            except (TypeError, ValueError):
                started = None
        if started is None:
            stamp = run_sort_key(path)[0]
            started = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
        git = env.get("git") if isinstance(env.get("git"), dict) else {}
        out.append({"path": path, "benchmark": path.parent.name, "started": started,
                    "rows": None if rows is None else len(rows), "status": counts,
                    "commit": git.get("commit"), "dirty": git.get("dirty"), "name": meta.get("name"),
                    "tags": run_tags, "sessions": len(sessions),
                    "jobs": sessions[-1].get("jobs") if sessions and isinstance(sessions[-1], dict) else None})
    return out


def format_runs(runs: Sequence[Mapping[str, Any]], results_dir: str | Path | None = None, width: int = 100) -> str:
    """The table ``harness runs`` prints (:func:`list_runs`): run, started, rows, statuses, git
    commit (``*`` when it had uncommitted changes), name and tags; at most ``width`` characters
    a line (long names and tags are cut)."""
    root = Path(results_dir) if results_dir is not None else None
    header = ["run", "started", "rows", "status", "commit", "name / tags"]
    table = []
    for r in runs:
        path = Path(r["path"])
        try:
            shown = str(path.relative_to(root)) if root is not None else f"{r['benchmark']}/{path.name}"
        except ValueError:
            shown = str(path)
        status = " ".join(f"{k} {v}" for k, v in sorted(r["status"].items())) or ("-" if r["rows"] == 0 else "?")
        commit = (r["commit"] or "")[:7] + ("*" if r.get("dirty") else "") if r.get("commit") else "-"
        label = ", ".join(([r["name"]] if r.get("name") else []) + [f"#{t}" for t in r.get("tags") or []])
        table.append([shown, r["started"][:16], "?" if r["rows"] is None else str(r["rows"]), status, commit, label])
    widths = [max(len(row[i]) for row in [header] + table) for i in range(len(header))]
    lines = []
    for row in [header] + table:
        text = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        lines.append(text if len(text) <= width else text[: width - 1] + "…")
    lines.append(f"{len(runs)} run{'s' if len(runs) != 1 else ''}; the last is 'latest'"
                 + (f" (or 'latest:{runs[-1]['benchmark']}')" if runs else ""))
    return "\n".join(lines)


def remembered_jobs(run_dir: str | Path) -> int:
    """The ``jobs`` of the last session of a run (``env.json``), for a resume that does not say;
    1 when it is not recorded (a Dask cluster's session records none)."""
    env = RunDir.open(run_dir).read_env()
    sessions = env.get("sessions") if isinstance(env.get("sessions"), list) else []
    for session in reversed(sessions):
        jobs = session.get("jobs") if isinstance(session, dict) else None
        if isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1:
            return jobs
    return 1


EXPORT_FORMATS = ("csv", "parquet")


def _import_pandas(what: str, parquet: bool = False):
    try:
        import pandas as pd
    except ImportError:
        extra = " pyarrow" if parquet else ""
        raise UserError(f"{what} needs pandas{' and pyarrow' if parquet else ''}, which is not installed: "
                        f"pip install pandas{extra}") from None
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError(f"{what} needs pyarrow, which is not installed: pip install pyarrow") from None
    return pd


def export(run_dir: str | Path | RunDir, fmt: str = "csv", output: str | Path | None = None) -> str | Path:
    """Write the run's tidy table (:meth:`Run.to_records`), one line per row.

    ``fmt="csv"`` (needs no pandas): returns the CSV text when ``output`` is ``None``, else writes
    ``output`` and returns its path. ``fmt="parquet"`` (needs pandas and pyarrow) writes ``output``
    (default ``RUN_DIR/rows.parquet``) and returns its path."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        if output is not None and str(output) == "-":
            raise UserError("--format parquet -o -: parquet is written to a file; give -o FILE.parquet")
        pd = _import_pandas("--format parquet", parquet=True)
    result = load_run(run_dir)
    if fmt == "csv":
        from .summary import tidy_csv

        text = tidy_csv(result.rows, [line["point_id"] for line in result.summary])
        if output is None:
            return text
        target = Path(output)
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
        return target
    target = Path(output) if output is not None else result.path / "rows.parquet"
    cols, records = result.to_records()
    frame = pd.DataFrame.from_records(records, columns=cols)
    for col in frame.columns:  # a column mixing text and numbers (blocks differ) is stored as text
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if v is not None}
            if len(kinds) > 1:
                frame[col] = [None if v is None else str(v) for v in frame[col]]
    try:
        frame.to_parquet(target, index=False)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
