"""Figure helpers for experiments' ``figures`` hooks: saving a figure to several formats with
tight, fast bounding boxes, choosing a log axis (:func:`wants_log_axis`), a table drawn as a
figure, and the threshold-search figure."""
from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

FORMATS = ("png", "svg")

LOG_AXIS_DECADES = 2.0
"""A positive quantity spanning more than this many decades is drawn on a log axis."""


def decades(values: Sequence[float]) -> float:
    """``log10(max / min)`` of the finite values of ``values``; NaN when there are none or one
    is not > 0 (such values cannot go on a log axis)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite or min(finite) <= 0:
        return math.nan
    return math.log10(max(finite) / min(finite))


def wants_log_axis(values: Sequence[float], threshold: float = LOG_AXIS_DECADES) -> bool:
    """Whether ``values`` (what an axis draws: means, and the band edges if any) are all
    positive and span more than ``threshold`` decades: then a linear axis flattens the small
    ones onto zero, and a log axis shows them."""
    span = decades(values)
    return span == span and span > threshold


def save_figure(fig: Any, paths: Mapping[str, Path]) -> list[Path]:
    """Save ``fig`` once per format (``{"png": path, "svg": path}``), cropped to its tight
    bounding box with Matplotlib's padding; the paths written, in order."""
    import matplotlib

    written = []
    engine = fig.get_layout_engine()
    with matplotlib.rc_context({"svg.fonttype": "none"}), faster_text():
        bbox = _tight_bbox(fig)
        try:
            if bbox != "tight" and engine is not None:
                fig.set_layout_engine(None)  # a placeholder (left by tight_layout()) does nothing
            for fmt, path in paths.items():  # but would make each save draw the figure twice
                fig.savefig(path, format=fmt, bbox_inches=bbox)
                written.append(Path(path))
        finally:
            if fig.get_layout_engine() is not engine:
                fig.set_layout_engine(engine)
    return written


def _tight_bbox(fig: Any):
    """What ``bbox_inches="tight"`` crops to, from one layout pass; ``"tight"`` itself when the
    figure has a layout engine that lays it out at every draw (then each save lays it out)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    try:
        from matplotlib.layout_engine import PlaceHolderLayoutEngine
    except ImportError:
        return "tight"
    engine = fig.get_layout_engine()
    if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine):
        return "tight"
    if matplotlib.rcParams["figure.autolayout"] or matplotlib.rcParams["figure.constrained_layout.use"]:
        return "tight"
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # as "tight" does: positions that only a draw computes
    bbox = fig.get_tightbbox(fig.canvas.get_renderer())
    return bbox.padded(matplotlib.rcParams["savefig.pad_inches"])


@contextlib.contextmanager
def faster_text():
    """Inside the block, lay out text faster, with the same result:

    - ``wrap=True`` text is wrapped greedily, measuring each word once (Matplotlib measures
      every prefix of each line: quadratic in the number of words). The same lines up to
      rounding (a line's width is taken as the sum of its words and spaces, without kerning
      across them); text with mathtext or TeX is left to Matplotlib.
    - Text metrics from the Agg renderer are shared between renderers of the same dpi (the
      layout in ``tight_layout``, the tight bounding box and the PNG: Matplotlib keeps one
      cache per renderer, and a new renderer is made for each).

    Matplotlib's own functions are restored on exit; where its private names are not there
    (another version) nothing is changed."""
    import matplotlib
    import matplotlib.text as mtext

    try:
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.text import Text

        original_wrap = Text.__dict__["_get_wrapped_text"]
        original_metrics = mtext._get_text_metrics_with_cache
        Text._get_rendered_text_width  # noqa: B018  (private: check they exist)
        Text._get_wrap_line_width  # noqa: B018
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def wrapped_text(self) -> str:
        text = self.get_text()
        if not self.get_wrap() or self.get_usetex() or "$" in text:
            return original_wrap(self)
        try:
            return _wrap_words(text, self._get_wrap_line_width(), self._get_rendered_text_width)
        except Exception:
            return original_wrap(self)

    shared: dict = {}

    def text_metrics(renderer, text, fontprop, ismath, dpi):
        if type(renderer) is not RendererAgg or ismath is not False:
            return original_metrics(renderer, text, fontprop, ismath, dpi)
        prop = fontprop.copy()
        key = (renderer.dpi, dpi, matplotlib.rcParams["text.hinting"], text, prop)
        found = shared.get(key)
        if found is None:
            found = shared[key] = original_metrics(renderer, text, prop, ismath, dpi)
        return found

    Text._get_wrapped_text = wrapped_text
    mtext._get_text_metrics_with_cache = text_metrics
    try:
        yield
    finally:
        Text._get_wrapped_text = original_wrap
        mtext._get_text_metrics_with_cache = original_metrics


def _wrap_words(text: str, line_width: float, width) -> str:
    """Greedy line breaking of ``text`` at spaces (newlines kept) so that each line's width,
    ``width(word)`` summed plus one space between words, stays within ``line_width`` (a word
    wider than that gets a line of its own)."""
    space = max(0.0, width("a a") - width("aa"))
    lines = []
    for paragraph in text.split("\n"):
        current: list[str] = []
        used = 0.0
        for word in paragraph.split(" "):
            w = width(word) if word else 0.0
            if current and used + space + w > line_width:
                lines.append(" ".join(current))
                current, used = [word], w
            else:
                used = w if not current else used + space + w
                current.append(word)
        lines.append(" ".join(current))
    return "\n".join(lines)


def close_figure(fig: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")  # figures made without pyplot need no closing
    if pyplot is None:
        return
    try:
        pyplot.close(fig)
    except Exception:
        pass


def threshold_figure(context, x: str | None = None, xlabel: str | None = None):
    """The generic figure of a threshold search: the threshold of every grid point against its
    first grid axis (or ``x``), one line per level (and per combination of the other grid axes),
    the bracket [lower, upper] as error bars and the bootstrap interval over repetitions as a
    band; points whose search did not find a threshold are marked at the bound they reached."""
    import matplotlib.pyplot as plt

    search = context.search or {}
    lines = context.thresholds
    keys = [k for k in context.grid] if context.grid else []
    x = x or (keys[0].split(",")[0].strip() if keys else None)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    values = list(dict.fromkeys(t.get(x) for t in lines))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    def position(t):  # categorical axes (a model name) are drawn at 0, 1, 2, ...
        return float(t[x]) if numeric else float(values.index(t[x]))

    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=20, fontsize=8)
    # one series per level and combination of the other grid axes (never pooled)
    others = [k.strip() for label in keys for k in label.split(",") if k.strip() != x]
    several = len({t.get("level") for t in lines}) > 1
    series: dict = {}
    for t in lines:
        key = tuple((k, t.get(k)) for k in others) + ((("level", t.get("level")),) if several else ())
        series.setdefault(key, []).append(t)
    for n, (key, members) in enumerate(series.items()):
        found = sorted((t for t in members if t.get("threshold") is not None and x in t), key=position)
        if not found:
            continue
        xs = [position(t) for t in found]
        ys = [float(t["threshold"]) for t in found]
        lo = [y - float(t["lower"]) for t, y in zip(found, ys)]
        hi = [float(t["upper"]) - y for t, y in zip(found, ys)]
        name = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in key)
        color = f"C{n % 10}"
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-" if numeric else "o", capsize=3, color=color,
                    label=f"threshold{' (' + name + ')' if name else ''}")
        ci = [(t.get("ci_low"), t.get("ci_high")) for t in found]
        if numeric and len(found) > 1 and all(a is not None and b is not None for a, b in ci):
            ax.fill_between(xs, [float(a) for a, _ in ci], [float(b) for _, b in ci], color=color, alpha=0.18, lw=0)
        elif all(a is not None and b is not None for a, b in ci):
            ax.vlines(xs, [float(a) for a, _ in ci], [float(b) for _, b in ci], color=color, lw=5, alpha=0.3)
    for status, marker in (("above_upper", "^"), ("below_lower", "v")):
        pts = [t for t in lines if t.get("status") == status and x in t]
        if pts:
            bound = search.get("upper") if status == "above_upper" else search.get("lower")
            ax.scatter([position(t) for t in pts], [bound] * len(pts), marker=marker, color="gray",
                       label=f"{status.replace('_', ' ')} {bound:g}")
    if search.get("scale", "log") == "log":
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or str(x))
    ax.set_ylabel(f"threshold of {search.get('axis', '?')}")
    ax.legend(fontsize=8)
    ax.set_title(f"{context.experiment_id}: threshold search", fontsize=10)
    fig.text(0.01, -0.09, context.caption("error bars: the search's final bracket; band: 95% bootstrap interval "
                                          "of the threshold over repetitions"), fontsize=7, wrap=True)
    return fig


def table_figure(lines: Sequence[Mapping[str, Any]], cols: Sequence[str], *, width: float,
                 base_height: float, row_height: float = 0.2, number_format: str = ".3g",
                 bbox: tuple[float, float, float, float] = (0, 0, 1, 1)):
    """A figure holding one table: a column per name in ``cols``, a row per line (floats with
    ``number_format``, ``None`` as "-"); the caller adds its caption. Height: ``base_height`` +
    ``row_height`` per row, header included (inches)."""
    from matplotlib.figure import Figure

    def text(v: Any) -> str:
        if isinstance(v, float):
            return format(v, number_format)
        return "-" if v is None else str(v)

    fig = Figure(figsize=(width, base_height + row_height * (len(lines) + 1)))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=[[text(line[c]) for c in cols] for line in lines], colLabels=list(cols),
                     loc="upper center", bbox=bbox)  # type: ignore[arg-type]
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    return fig
