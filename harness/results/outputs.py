"""What a run writes from its rows when its cells are done: ``summary.csv`` (and
``thresholds.csv`` for threshold searches), the figures and ``report.html``. Figures and the
report never lose a run: their failures are warnings.

:func:`prepare_outputs` imports ahead what they need (Matplotlib and its Agg and SVG backends
take longer to import than a figure takes to draw), for a run to call while it waits for its
workers (:meth:`harness.runner.session.RunSession.run_rounds`)."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from harness.errors import RunStopped
from harness.results.runs import _search_order, load_run
from harness.runner.layout import SUMMARY_FILE
from harness.runner.store import RunDir
from harness.spec.row import Row


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def write_summary(run_dir: RunDir, cells: Sequence[Any], spec=None) -> list[Row]:
    """Write ``summary.csv`` (and ``thresholds.csv`` when the spec searches an axis) from the
    rows on disk; returns them."""
    from harness.results.summary import summarize, to_csv

    rows = run_dir.read_rows()
    order = list(dict.fromkeys(c.point_id for c in cells))
    run_dir.write_text(SUMMARY_FILE, to_csv(summarize(rows, _search_order(spec, rows, order))))
    if spec is not None and any(e.search is not None for e in spec.experiments):
        from harness.results.thresholds import thresholds_csv
        from harness.runner.search import thresholds

        run_dir.write_text("thresholds.csv", thresholds_csv(thresholds(spec, rows)))
    return rows


def draw_figures(run_dir: RunDir, rows: Sequence[Row], spec, registry):
    """Draw every block's figures into ``<run>/figures``; returns the
    :class:`harness.results.figures.FigureReport` (a failure is one of its warnings)."""
    from harness.results.figures import FigureReport, blocks_from_rows, blocks_from_spec, draw

    blocks = blocks_from_spec(spec, rows) if spec is not None else blocks_from_rows(rows)
    name = spec.name if spec is not None else run_dir.path.parent.name
    try:
        return draw(run_dir.path, rows, blocks, name, registry)
    except Exception as exc:  # figures never lose a run
        report = FigureReport()
        report.warnings.append(f"figures failed: {type(exc).__name__}: {exc}")
        return report


def write_report(run_dir: RunDir, registry=None) -> None:
    """Write ``report.html``; a failure to render it is a warning, never a lost run; a failure to
    write it (a full disk, a read-only directory) raises (:func:`harness.runner.store.storage_error`)."""
    from harness.errors import UserError

    try:
        from harness.results.report import write_report as write

        write(load_run(run_dir, registry), registry=registry)
    except UserError:
        raise
    except Exception as exc:
        _warn(f"report.html could not be written: {type(exc).__name__}: {exc}")


def prepare_outputs(figures: bool = True):
    """A function, with no argument, that imports what :func:`finished_run_outputs` will need:
    the summary and report modules and, with ``figures``, Matplotlib with the Agg backend (as
    :func:`harness.results.figures.draw` sets it), its PNG and SVG writers and ``pyplot``."""

    def prepare() -> None:
        import harness.results.report  # noqa: F401
        import harness.results.summary  # noqa: F401

        if figures:
            from harness.results.figures import use_agg

            use_agg()
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.backends.backend_svg  # noqa: F401
            import matplotlib.figure  # noqa: F401
            import matplotlib.pyplot  # noqa: F401

    return prepare


def finished_run_outputs(registry, figures: bool = True):
    """The outputs of a finished run, as :meth:`harness.runner.session.RunSession.finish` calls
    them: the figures (unless ``figures`` is false; their warnings printed) and the report."""

    def outputs(run_dir: RunDir, rows: list[Row], spec) -> None:
        try:
            if figures:
                drawn = draw_figures(run_dir, rows, spec, registry)
                for warning in drawn.warnings:
                    _warn(warning)
                if drawn.write_error is not None:
                    raise drawn.write_error
            write_report(run_dir, registry)
        except RunStopped as exc:  # a full disk: the rows and summary are kept
            raise RunStopped(f"{exc}; every row and summary.csv are kept: draw the figures and the report "
                             f"again with: harness plot {run_dir.path}") from None

    return outputs
