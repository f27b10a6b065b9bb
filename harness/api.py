"""The Python API behind the CLI: run a benchmark, resume a run, plan one, load one back.

    import harness.api as h
    run_dir = h.run("benchmarks/min_overparam.toml", overrides=["benchmark.repetitions=2"], jobs=2)
    result = h.load_run(run_dir)
    result.rows, result.summary, result.spec
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from harness.plugin.catalogue import check_plugin, describe_plugins  # noqa: F401  (public API)
from harness.results.analysis import (  # noqa: F401  (public API)
    compare,
    few_pairs_warning,
    fit,
    fits_json,
    format_comparisons,
    format_fits,
    left_out_note,
    load_runs,
    report,
)
from harness.results.outputs import draw_figures, finished_run_outputs, prepare_outputs, write_report, write_summary
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
    check_components_available,
    check_rows_belong,
    check_unchanged,
    component_versions,
    is_search_row,
    spec_identity,
)
from harness.runner.session import (  # noqa: F401  (public API)
    OK_STATUSES,
    RETRIED_STATUSES,
    Interrupted,
    RunOptions,
    RunSession,
    describe_failure,
    run_status,
)
from harness.runner.store import RunDir

from .errors import UserError


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

    ``resume=RUN_DIR`` finishes an earlier run instead (only cells without a row run;
    ``retry_failed`` reruns failed and timed-out ones). ``executor``: ``"serial"``,
    ``"processes"``, ``"dask"`` (at ``scheduler``, or a local cluster of ``jobs`` workers) or
    ``"inline"`` (this process, for debugging); ``None`` chooses by ``jobs`` and ``scheduler``.
    ``plugins``: plugin modules to use besides the installed ones (or a built ``registry``).
    ``name`` and ``tags`` label a new run (``meta.json``). A cell whose memory estimate exceeds the
    machine's is refused unless ``force``. Ctrl-C raises :class:`Interrupted` with the rows kept;
    a full disk or a Dask run without workers for ``worker_wait`` seconds raises
    :class:`~harness.errors.RunStopped` with the resume command. The lock, resume checks, rounds
    and outputs: :class:`harness.runner.session.RunSession`; whether every cell is ok:
    :func:`run_status`. With a local executor the first worker process starts before the spec
    is read, and the outputs' imports happen while the cells run (:func:`prepare_outputs`).
    """
    options, tags = check_run_options(jobs, timeout, executor, scheduler, worker_wait, progress, force,
                                      retry_failed, resume, name, tags)
    session = _open_session(spec, overrides, resume, registry, plugins, options, results_dir, name, tags)
    with session:
        session.run_rounds(write_summary, while_waiting=prepare_outputs(figures))
        session.finish(write_summary, finished_run_outputs(session.registry, figures))
    return session.run_dir


def _open_session(spec, overrides: Sequence[str], resume, registry, plugins: Sequence[Any], options: RunOptions,
                  results_dir, name: str | None, tags: Sequence[str]) -> RunSession:
    """The run's :class:`RunSession`, new or resumed; with a local executor its first worker
    process starts before the spec is read, so that the two start-ups overlap."""
    from harness.plugin.manager import plugin_list

    if resume is not None:
        if spec is not None:
            raise UserError("give either a benchmark file or a run directory to resume, not both")
        if overrides:
            raise UserError("--set cannot change a run being resumed; start a new run instead")
    if registry is not None and plugins:
        _registry(registry, plugins)  # the error: either plugins or a registry
    workers = options.start_workers(registry.plugins if registry is not None else plugin_list(plugins))
    try:
        registry = _registry(registry, plugins)
        if resume is None:
            spec = _load(spec, overrides, registry)
    except BaseException:
        if workers is not None:
            workers.close()
        raise
    if resume is not None:
        return RunSession.resume(resume, registry, options, workers=workers)
    return RunSession.create(spec, registry, options, results_dir, name, tags, workers=workers)


def check_run_options(jobs: int = 1, timeout: float | None = None, executor: str | None = None,
                      scheduler: str | None = None, worker_wait: float | None = None, progress: bool = True,
                      force: bool = False, retry_failed: bool = False, resume=None, name: str | None = None,
                      tags: Sequence[str] = ()) -> tuple[RunOptions, list[str]]:
    """``(options, tags)``: the checks :func:`run` makes of its options before anything runs (a
    :class:`UserError` names the bad one); ``harness run --dry-run`` makes them too."""
    for label, flag in (("progress", progress), ("force", force), ("retry_failed", retry_failed)):
        if not isinstance(flag, bool):
            raise UserError(f"{label} must be True or False, got {flag!r}")
    options = RunOptions.checked(jobs, timeout, executor, scheduler, worker_wait, progress, force,
                                 retry_failed, resume)
    return options, _check_meta(name, tags, resume)


def plot(run_dir: str | Path, plugins: Sequence[Any] = (), registry=None):
    """(Re)draw the figures of a run directory and refresh its report.html; returns a
    :class:`harness.results.figures.FigureReport`."""
    registry = _registry(registry, plugins)
    result = load_run(run_dir, registry)
    drawn = draw_figures(result.run_dir, result.rows, result.spec, registry)
    if drawn.write_error is not None:  # a full disk (exit 4) or a read-only run directory (exit 2)
        raise drawn.write_error
    write_report(result.run_dir, registry)
    return drawn


def plot_metric(run_dir: str | Path, metric: str, x: str, hue: str | None = None, log: bool | None = None,
                experiment_id: str | None = None, plugins: Sequence[Any] = (), registry=None) -> list[Path]:
    """Draw ``metric`` against ``x`` (one line per ``hue`` value, one panel per combination of
    the other grid axes; :mod:`harness.results.metric_plot`) into ``RUN/figures/<block>-plot_...`` (one
    figure per experiment block, or only ``experiment_id``); returns the paths written. ``log``:
    a log y axis (``None``: when the metric spans more than two decades)."""
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
    if hue is not None:  # a key no row has would draw one line, labelled as if split by it
        from harness.errors import suggest
        from harness.results.fits import available_keys

        keys = available_keys(row for rows in blocks.values() for row in rows)
        if hue not in keys:
            raise UserError(f"--hue {hue!r}: no such key in {run_dir}{suggest(hue, keys)}; keys: {', '.join(keys)}")
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
    """The cells a run would execute, each with its cost estimate (``--dry-run``):
    :func:`harness.runner.plan.plan_cells`."""
    from harness.runner.plan import plan_cells

    registry = _registry(registry, plugins)
    return plan_cells(_load(spec, overrides, registry), registry, jobs)


def publish(run_dirs: Sequence[str | Path], out: str | Path = "docs/results", readme: str | Path | None = None,
            plugins: Sequence[Any] = (), registry=None) -> list[Path]:
    """Write a results page per run (``<out>/<benchmark>.md`` with its figures, then ``<out>/regenerate``
    and ``<out>/index.md``; ``readme``: fill that file's block of each benchmark with its headline
    table) and return the pages: :func:`harness.results.publish.publish`."""
    from harness.results.publish import publish as write_pages

    return write_pages(run_dirs, out, _registry(registry, plugins), readme)


def recalibrate() -> None:
    """Forget the cost rates measured on this machine: the next plan measures them again."""
    from harness.plugin import calibration

    calibration.recalibrate()
