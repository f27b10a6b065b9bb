"""The analysis half of the Python API: compare runs, fit a metric, write a report.

Each function loads the run directories it is given (:func:`harness.results.runs.load_run`) and hands
the loaded runs to an output module (:mod:`harness.results.compare`, :mod:`harness.results.fits`,
:mod:`harness.results.report`), which never loads anything itself. Re-exported by :mod:`harness.api`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.results.compare_format import few_pairs_warning, format_comparisons, left_out_note  # noqa: F401  (re-exported: printing)
from harness.results.fits import fits_json, format_fits  # noqa: F401  (re-exported: printing)
from harness.results.runs import load_run


def load_runs(paths: Iterable[str | Path], registry=None) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """``[(run label, rows)]`` for run directories (a :class:`UserError` for a bad path), each
    run's rows in the grid's order (the spec's cells; file order when the spec does not load).
    ``latest`` and ``latest:BENCHMARK`` name the newest runs."""
    from harness.results.compare import run_label
    from harness.runner.layout import resolve_run_path
    from harness.results.summary import sort_rows

    runs = [load_run(resolve_run_path(str(p)), registry) for p in paths]
    resolved = [str(r.path) for r in runs]
    return [(run_label(path, resolved), sort_rows(r.rows, [line["point_id"] for line in r.summary]))
            for path, r in zip(resolved, runs)]


def compare(run_dirs: Sequence[str | Path], metrics: Sequence[str] | None = None,
            by: str | Sequence[str] = "experiment_id", baseline: str | None = None, n_boot: int = 2000,
            level: float = 0.95, pooled: bool = False, timings: bool = False, registry=None,
            experiments: Sequence[str] = (), ratio: bool = False, constants: bool = False):
    """Compare the rows of one or several run directories (:func:`harness.results.compare.compare`);
    returns the list of :class:`harness.results.compare.MetricComparison` (one per experiment
    block and metric unless the groups are blocks). ``by`` is one key or several (a list, or
    comma-separated): rows are then grouped by the tuple of their values. ``experiments`` keeps
    only these blocks; ``ratio`` adds paired ratios; ``constants`` keeps the metrics that are the
    same in every row at each point."""
    from harness.results.compare import by_keys
    from harness.results.compare import compare as compare_rows

    keys = by_keys(by)  # a key given twice is refused before anything is loaded
    runs = load_runs(run_dirs, registry)
    comparisons = compare_rows(runs, metrics=list(metrics or []) or None, by=keys, baseline=baseline,
                               n_boot=n_boot, level=level, pooled=pooled, timings=timings,
                               experiments=list(experiments or ()), ratio=ratio, constants=constants)
    warning = mixed_experiments(runs)
    for c in comparisons if warning else ():
        c.warnings.append(warning)
    return comparisons


def mixed_experiments(runs: Sequence[tuple[str, Sequence[Any]]]) -> str | None:
    """A warning when runs hold one experiment block id with different experiments (their rows
    would be paired by block id and coordinates, as if they measured the same thing)."""
    by_block: dict[str, dict[str, str]] = {}
    for label, rows in runs:
        for r in rows:
            by_block.setdefault(str(r.get("experiment_id")), {}).setdefault(str(r.get("experiment")), label)
    mixed = {block: kinds for block, kinds in by_block.items() if len(kinds) > 1}
    if not mixed:
        return None
    block, kinds = next(iter(mixed.items()))
    what = ", ".join(f"{e} in {label}" for e, label in kinds.items())
    return (f"block {block!r} runs different experiments ({what}): their rows are paired by block id and "
            "coordinates, not by what they measure")


def fit(run_dir: str | Path, metric: str, axis: str, log: bool = False, n_boot: int = 1000,
        level: float = 0.95, plot: str | Path | None = None, registry=None):
    """Fit ``metric`` against ``axis`` in a run (:func:`harness.results.fits.fit_rows`), per experiment
    block and combination of its other grid axes. With ``plot`` (a .png, .svg or .pdf path) the
    data and the fits are also drawn there. Returns ``(fits, plot path or None)``."""
    from harness.results.fits import check_plot_path, fit_rows, grid_keys, save_fit_plot
    from harness.runner.layout import resolve_run_path
    from harness.results.summary import sort_rows

    if plot is not None:
        check_plot_path(plot)
    run = load_run(resolve_run_path(str(run_dir)), registry)
    rows = sort_rows(run.rows, [line["point_id"] for line in run.summary])
    fits = fit_rows(rows, metric, axis, log=log, grid_keys=grid_keys(run), n_boot=n_boot, level=level)
    drawn = save_fit_plot(fits, metric, axis, log, run, plot) if plot is not None else None
    return fits, drawn


def report(run_dir: str | Path, output: str | Path | None = None, registry=None) -> Path:
    """Write the run's ``report.html`` (or ``output``) and return its path."""
    from harness.results.report import write_report
    from harness.runner.layout import resolve_run_path

    return write_report(load_run(resolve_run_path(str(run_dir)), registry), output, registry)
