"""Drawing a run's figures: each experiment block's ``figures(rows, context)``, saved as PNG and
SVG in ``<run>/figures/<experiment id>-<stem>.{png,svg}``.

A figure that fails (its experiment raises, or saving fails) becomes a warning; the others are
still drawn.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

FORMATS = ("png", "svg")


@dataclass
class FigureReport:
    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Block:
    """What the figures of one experiment block need to know."""

    experiment_id: str
    experiment: str
    grid: dict[str, Any]
    repetitions: int


def blocks_from_spec(spec) -> list[Block]:
    return [Block(e.id, e.experiment, e.grid, e.repetitions) for e in spec.experiments]


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


def _use_agg() -> None:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def draw(run_dir: str | Path, rows: Sequence[Mapping[str, Any]], blocks: Sequence[Block],
         benchmark: str, registry=None) -> FigureReport:
    """Draw every block's figures from ``rows`` into ``run_dir/figures``."""
    from .components import Experiment, FigureContext

    report = FigureReport()
    if registry is None:
        from .plugin_manager import get_registry

        registry = get_registry()
    out_dir = Path(run_dir) / "figures"
    for block in blocks:
        block_rows = [r for r in rows if r.get("experiment_id") == block.experiment_id]
        if not block_rows:
            continue
        try:
            cls = registry.get("experiment", block.experiment)
            if cls.figures is Experiment.figures:
                continue  # no figures; spare the matplotlib import
            try:
                experiment = cls(**block_rows[0].get("params", {}))
            except Exception:
                experiment = cls.__new__(cls)  # figures() rarely needs the parameters
            context = FigureContext(benchmark=benchmark, experiment_id=block.experiment_id,
                                    experiment=block.experiment, grid=dict(block.grid),
                                    repetitions=block.repetitions)
            _use_agg()
            figures = experiment.figures(block_rows, context) or {}
        except Exception as exc:
            report.warnings.append(f"figures of {block.experiment_id!r} ({block.experiment}) failed: "
                                   f"{type(exc).__name__}: {exc}")
            continue
        for stem, fig in dict(figures).items():
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                for fmt in FORMATS:
                    path = out_dir / f"{block.experiment_id}-{stem}.{fmt}"
                    fig.savefig(path, format=fmt, bbox_inches="tight")
                    report.written.append(path)
            except Exception as exc:
                report.warnings.append(f"figure {stem!r} of {block.experiment_id!r} could not be saved: "
                                       f"{type(exc).__name__}: {exc}")
            finally:
                _close(fig)
    return report


def _close(fig: Any) -> None:
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:
        pass
