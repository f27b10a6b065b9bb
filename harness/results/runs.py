"""A run directory loaded back (:class:`Run`): its rows, summary, spec and environment.

The output modules (summary, figures, report, compare, fits) take a :class:`Run` or its rows;
this module reads the store and never imports :mod:`harness.api`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.spec.row import Row
from harness.runner.store import RunDir


def env_sessions(env: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The sessions a run directory's ``env.json`` records (``sessions``: one dict per
    ``harness run`` or ``--resume``), what is not a dict left out."""
    sessions = (env or {}).get("sessions")
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def recorded_seconds(sessions: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """``key`` (``"wall_seconds"`` or ``"cpu_seconds"``) added over the sessions, as each
    recorded it at its end; ``None`` without sessions or when one has no such record (it was
    interrupted, or an older harness made it)."""
    values = [s.get(key) for s in sessions]
    if not values or any(v is None for v in values):
        return None
    return sum(float(v) for v in values)


@dataclass
class Run:
    """A run directory loaded back: its rows, summary, spec and environment."""

    run_dir: RunDir
    rows: list[Row]
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
        from harness.runner.search import searched_cell_ids

        visited, pending = searched_cell_ids(self.spec, self.rows)
        return len(self.spec.cells()) + len(visited) + pending

    @property
    def missing(self) -> int | None:
        if self.spec is None:
            return None
        from harness.runner.search import pending_cells

        have = {r["cell_id"] for r in self.rows}
        return (sum(1 for c in self.spec.cells() if c.cell_id not in have)
                + len(pending_cells(self.spec, self.rows)))

    @property
    def thresholds(self) -> list[dict[str, Any]]:
        """One line per searched grid point and level (:func:`harness.runner.search.thresholds`);
        empty without a search or a loadable spec."""
        if self.spec is None:
            return []
        from harness.runner.search import thresholds

        return thresholds(self.spec, self.rows)

    @property
    def meta(self) -> dict[str, Any]:
        """``meta.json``: the run's ``name`` and ``tags`` (``{}`` for an older run)."""
        return self.run_dir.read_meta()

    def to_records(self) -> tuple[list[str], list[dict[str, Any]]]:
        """``(columns, records)``: one flat record per row, in the grid's order
        (:func:`harness.results.summary.tidy` says which columns)."""
        from harness.results.summary import tidy

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


def load_run(path: str | Path | RunDir, registry=None) -> Run:
    """Load a run directory (its spec is re-validated against ``registry``, by default the
    installed plugins; if that fails ``spec`` is ``None`` and ``spec_error`` says why)."""
    from harness.errors import UserError as _UserError
    from harness.results.summary import summarize

    run_dir = RunDir.open(path.path if isinstance(path, RunDir) else path)
    rows = run_dir.read_rows()
    spec, spec_error = None, None
    try:
        from harness.spec import load_spec

        spec = load_spec(run_dir.spec_path, registry=registry)
    except _UserError as exc:
        spec_error = str(exc)
    order = list(dict.fromkeys(c.point_id for c in spec.cells())) if spec is not None else None
    if spec is not None:
        order = _search_order(spec, rows, order)
    return Run(run_dir=run_dir, rows=rows, env=run_dir.read_env(), spec=spec, spec_error=spec_error,
               summary=summarize(rows, order))


def _search_order(spec, rows, order: list[str]) -> list[str]:
    """Grid order for the points of searched blocks too: by block, grid point, then axis value."""
    if spec is None or not any(e.search is not None for e in spec.experiments):
        return order
    from harness.runner.search import replay_spec, row_key, rows_by_key

    by_key = rows_by_key(rows)
    out = list(order)
    for point, outcome in replay_spec(spec, rows):
        for x in sorted(outcome.evaluated):
            for c in point.make_cells(x):  # the rows' own point id (older runs: other ids)
                row = by_key.get(row_key(c.experiment_id, c.coords, c.repetition))
                if row is not None:
                    out.append(row["point_id"])
                    break
    return out


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


# ----------------------------------------------------------------------------------------------
# finding runs, exporting them (re-exported by harness.api)


def _check_meta(name: str | None, tags: Sequence[str], resume) -> list[str]:
    from harness.runner.layout import check_label, check_tags

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
    from harness.runner.layout import resolve_run_path

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

    from harness.runner.layout import find_runs, run_sort_key

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
        from harness.results.summary import tidy_csv

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
