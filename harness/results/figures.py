"""Drawing a run's figures: each experiment block's ``figures(rows, context)``, saved as PNG and
SVG in ``<run>/figures/<experiment id>-<stem>.{png,svg}``.

A figure that fails (its experiment raises, or saving fails) becomes a warning; the others are
still drawn.

Speed (text layout is most of a figure's cost, and Matplotlib 3.11 lays out each string anew in
every pass): the tight bounding box is computed once per figure and used for both formats (with
``bbox_inches="tight"`` each format draws the figure twice), SVG keeps text as ``<text>``
elements (``svg.fonttype = "none"``; the text stays text, in the DejaVu Sans font family, and the
file is about 3x smaller than with every glyph as a path), wrapped text (``wrap=True``,
e.g. captions) is wrapped word by word and text metrics are shared between the passes at one
dpi (:func:`harness.plugin.figures.faster_text`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.plugin.figures import FORMATS, close_figure, faster_text, save_figure, table_figure, threshold_figure  # noqa: F401


@dataclass
class FigureReport:
    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    write_error: Exception | None = None
    """The first figure that could not be written (:func:`harness.runner.store.storage_error`: a
    full disk, a read-only directory), which the caller raises: not a warning."""


@dataclass
class Block:
    """What the figures of one experiment block need to know."""

    experiment_id: str
    experiment: str
    grid: dict[str, Any]
    repetitions: int
    search: dict[str, Any] | None = None
    thresholds: list[dict[str, Any]] = field(default_factory=list)


def blocks_from_spec(spec, rows: Sequence[Mapping[str, Any]] = ()) -> list[Block]:
    """The spec's blocks; a searched block carries its search and its thresholds over ``rows``."""
    from harness.runner.search import thresholds

    lines = thresholds(spec, rows) if any(e.search is not None for e in spec.experiments) else []
    return [Block(e.id, e.experiment, e.grid, e.repetitions,
                  e.search.to_table() if e.search is not None else None,
                  [t for t in lines if t["experiment_id"] == e.id])
            for e in spec.experiments]


def blocks_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[Block]:
    """Blocks guessed from the rows (used when the spec cannot be loaded)."""
    out: dict[str, Block] = {}
    for r in rows:
        b = out.setdefault(r["experiment_id"], Block(r["experiment_id"], r["experiment"], {}, 0))
        b.repetitions = max(b.repetitions, int(r.get("repetition", 0)) + 1)
        for k, v in (r.get("coords") or {}).items():
            values = b.grid.setdefault(k, [])
            if v not in values:
                values.append(v)
    return list(out.values())


def use_agg() -> None:
    """Draw with Matplotlib's Agg backend (no window), unless ``pyplot`` was imported first (a
    notebook keeps its own backend)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def draw(run_dir: str | Path, rows: Sequence[Mapping[str, Any]], blocks: Sequence[Block],
         benchmark: str, registry) -> FigureReport:
    """Draw every block's figures from ``rows`` into ``run_dir/figures``, with the experiments
    of ``registry`` (the run's)."""
    from harness.plugin.experiment import Experiment
    from harness.plugin.context import FigureContext

    report = FigureReport()
    out_dir = Path(run_dir) / "figures"
    for block in blocks:
        block_rows = [r for r in rows if r.get("experiment_id") == block.experiment_id]
        if not block_rows:
            continue
        try:
            cls = registry.get("experiment", block.experiment)
            if cls.figures is Experiment.figures and block.search is None:
                continue  # no figures; spare the matplotlib import
            try:
                experiment = cls(**block_rows[0].get("params", {}))
            except Exception:
                experiment = cls.__new__(cls)  # figures() rarely needs the parameters
            context = FigureContext(benchmark=benchmark, experiment_id=block.experiment_id,
                                    experiment=block.experiment, grid=dict(block.grid),
                                    repetitions=block.repetitions, search=block.search,
                                    thresholds=list(block.thresholds))
            use_agg()
            with faster_text():
                figures = dict(experiment.figures(block_rows, context) or {})
            if block.search is not None and "thresholds" not in figures:
                figures["thresholds"] = threshold_figure(context)
        except Exception as exc:
            report.warnings.append(f"figures of {block.experiment_id!r} ({block.experiment}) failed: "
                                   f"{type(exc).__name__}: {exc}")
            continue
        for stem, fig in dict(figures).items():
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                paths = {fmt: out_dir / f"{block.experiment_id}-{stem}.{fmt}" for fmt in FORMATS}
                report.written.extend(save_figure(fig, paths))
            except OSError as exc:
                from harness.runner.store import storage_error

                if report.write_error is None:
                    report.write_error = storage_error(out_dir / f"{block.experiment_id}-{stem}", exc)
            except Exception as exc:
                report.warnings.append(f"figure {stem!r} of {block.experiment_id!r} could not be saved: "
                                       f"{type(exc).__name__}: {exc}")
            finally:
                close_figure(fig)
    return report


