"""harness.plugin.figures.save_figure: the same PNG as ``bbox_inches="tight"`` with fewer layout passes,
SVG text kept as text, wrapped text wrapped word by word, Matplotlib left as it was."""
from __future__ import annotations

import io

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.text as mtext  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from harness.plugin import figures  # noqa: E402

CAPTION = ("bench / block (experiment); grid N: [100, 200, 300], i: 10 values 5..95; 10 repetition(s); "
           "bands: mean +- 1 std over repetitions; dashed: least-squares line through all repetitions, "
           "slope with 95% bootstrap CI")


def make_figure() -> Figure:
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    x = np.linspace(0, 1e4, 10)
    for n in (100, 200, 300):
        ax.plot(x, x / n, "o-", label=f"N = {n}")
        ax.fill_between(x, x / n - 1, x / n + 1, alpha=0.2)
    ax.set_xlabel("d² (= n_{L-2} n_{L-1})")
    ax.set_ylabel("λ_min")
    ax.legend(fontsize=6.5, loc="upper left")
    fig.text(0.5, 0.005, CAPTION, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def png_pixels(data: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(data), format="png")


@pytest.mark.slow
def test_same_png_as_tight_and_svg_text_stays_text(tmp_path):
    reference = io.BytesIO()
    make_figure().savefig(reference, format="png", bbox_inches="tight")
    fig = make_figure()
    engine = fig.get_layout_engine()
    written = figures.save_figure(fig, {"png": tmp_path / "f.png", "svg": tmp_path / "f.svg"})
    assert written == [tmp_path / "f.png", tmp_path / "f.svg"]
    assert fig.get_layout_engine() is engine
    ours, theirs = png_pixels((tmp_path / "f.png").read_bytes()), png_pixels(reference.getvalue())
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    svg = (tmp_path / "f.svg").read_text()
    assert ">N = 200<" in svg and "bench / block (experiment)" in svg  # <text>, not glyph paths
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # only inside save_figure


def test_wrapping_measures_each_word_once_and_matplotlib_is_restored():
    widths = {}

    def width(s):
        widths[s] = widths.get(s, 0) + 1
        return 10.0 * len(s)

    assert figures._wrap_words("aa bb cc dd\nee", 55.0, width) == "aa bb\ncc dd\nee"
    assert figures._wrap_words("toolongword x", 30.0, width) == "toolongword\nx"
    assert max(widths.values()) <= 3  # words are measured, not every prefix of a line
    wrap, metrics = Text.__dict__["_get_wrapped_text"], mtext._get_text_metrics_with_cache
    with figures.faster_text():
        assert Text.__dict__["_get_wrapped_text"] is not wrap
    assert Text.__dict__["_get_wrapped_text"] is wrap and mtext._get_text_metrics_with_cache is metrics


@pytest.mark.slow
def test_wrapped_caption_has_the_same_lines_as_matplotlib():
    def lines(faster: bool) -> str:
        fig = make_figure()
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        caption = fig.texts[0]
        caption._renderer = renderer
        if faster:
            with figures.faster_text():
                return caption._get_wrapped_text()
        return caption._get_wrapped_text()

    assert "\n" in lines(False) and lines(True) == lines(False)
