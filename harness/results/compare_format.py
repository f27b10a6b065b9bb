"""Comparison tables for readers: text, Markdown and CSV of :func:`harness.results.compare.compare`.

Each :class:`~harness.results.compare.MetricComparison` is one table under its title
(``<block>: <metric>``). Two layouts:

- *wide*: one line per point, a column per group (``mean ± std (n)``), then a column per
  non-baseline group with its paired difference (``g − base``) or ratio (``g / base``);
- *long* (pivoted): one line per point and group, columns ``group``, ``mean ± std (n)`` and
  ``vs <baseline>``: as narrow as the groups are many.

With a ``width`` (the terminal's, for ``harness compare``) the wide layout is used when it fits
and the long one otherwise; cells are then cut and every line is at most ``width`` characters
(notes are wrapped). The CSV is tidy: one line per point and group with plain column names
(``experiment_id, metric, <point keys>, group, baseline, mean, std, n, diff, diff_ci_low,
diff_ci_high, pairs``, and with ratios ``ratio, ratio_ci_low, ratio_ci_high, ratio_pairs,
ratio_excluded``); the pooled line has ``all`` in the point columns.
"""
from __future__ import annotations

import csv
import io
import math
import textwrap
from typing import Any, Sequence

from harness.errors import UserError
from harness.results.compare import ALL, GROUP_SEPARATOR, MIN_PAIRS, Difference, MetricComparison, Ratio, Stats
from harness.results.labels import value_text
from harness.results.stats import short_number

FORMATS = ("table", "csv", "markdown")
MAX_CELL = 40
"""With a width limit, a cell longer than this (a long coordinate value) is cut."""


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return short_number(x, signed)


def _stats_text(s: Stats) -> str:
    if s.n == 0:
        return "-"
    if s.std is None:
        return f"{_num(s.mean)} (n={s.n})"
    return f"{_num(s.mean)} ± {_num(s.std)} (n={s.n})"


def _pairs_text(d: Difference) -> str:
    return f"({d.pairs} pair{'s' if d.pairs != 1 else ''}{'*' if d.few_pairs else ''})"


def _paired_text(d: Difference | None) -> str:
    if d is None or not d.pairs:
        return "-"
    if isinstance(d, Ratio):
        ci = f" [{_num(d.ci_low)}, {_num(d.ci_high)}]" if not math.isnan(d.ci_low) else ""
        return f"{_num(d.mean)}×{ci} {_pairs_text(d)}"
    ci = f" [{_num(d.ci_low, True)}, {_num(d.ci_high, True)}]" if not math.isnan(d.ci_low) else ""
    return f"{_num(d.mean, True)}{ci} {_pairs_text(d)}"


def _point_cells(c: MetricComparison, point: dict[str, Any] | None) -> list[str]:
    if not c.point_keys:
        return [ALL if point is None else "-"]
    if point is None:
        return [ALL] + [""] * (len(c.point_keys) - 1)
    return [value_text(point[k]) if k in point else "" for k in c.point_keys]


def _vs(c: MetricComparison, group: str) -> str:
    return f"{group} / {c.baseline}" if c.ratio else f"{group} − {c.baseline}"


def wide_parts(c: MetricComparison) -> tuple[list[str], list[list[str]]]:
    """``(header, body)`` of the wide layout (see the module docstring)."""
    header = (list(c.point_keys) or ["point"]) + list(c.groups) + [_vs(c, g) for g in c.groups[1:]]
    body = [_point_cells(c, line.point) + [_stats_text(line.stats[g]) for g in c.groups]
            + [_paired_text(paired.get(g)) for g in c.groups[1:]]
            for line, paired in zip(c.lines, c.paired())]
    return header, body


def long_parts(c: MetricComparison) -> tuple[list[str], list[list[str]]]:
    """``(header, body)`` of the long layout: a line per point and group."""
    what = "ratio" if c.ratio else "difference"
    header = (list(c.point_keys) or ["point"]) + ["group", "mean ± std (n)", f"{what} vs {c.baseline}"]
    body = []
    for line, paired in zip(c.lines, c.paired()):
        point = _point_cells(c, line.point)
        for i, g in enumerate(c.groups):
            vs = "(baseline)" if i == 0 else _paired_text(paired.get(g))
            body.append((point if i == 0 else [""] * len(point)) + [g, _stats_text(line.stats[g]), vs])
    return header, body


def _width_of(header: Sequence[str], body: Sequence[Sequence[str]]) -> int:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return sum(widths) + 2 * (len(widths) - 1)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


def table_parts(c: MetricComparison, width: int | None = None) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, body, notes)`` of one comparison: the wide layout when it fits in ``width``
    characters (or without a width), else the long one with cells cut to fit."""
    header, body = wide_parts(c)
    if width and _width_of(header, body) > width:
        header, body = long_parts(c)
        if _width_of(header, body) > width:
            body = [[_cut(x, MAX_CELL) for x in r] for r in body]
    return header, body, notes(c)


def notes(c: MetricComparison) -> list[str]:
    """What the cells and the paired columns mean, and what to distrust."""
    keys = c.by.split(",")
    grouped = c.by if len(keys) == 1 else f"({', '.join(keys)}), labelled {GROUP_SEPARATOR.join(keys)}"
    out = [f"cells: mean ± std (n) of {c.metric} over ok/diverged rows with a finite value, grouped by {grouped}"]
    if len(c.groups) > 1:
        if not c.any_pairs:
            out.append(f"no rows pair up with {c.baseline} (same seed root and spawn_key at the same point): "
                       "nothing paired")
        elif c.ratio:
            out.append(f"ratios: geometric mean of paired (group / {c.baseline}) over rows with the same seed "
                       f"(root and spawn_key) at the same point, [{c.level:.0%} bootstrap CI]")
        else:
            out.append(f"differences: mean of paired (group − {c.baseline}) over rows with the same seed "
                       f"(root and spawn_key) at the same point, [{c.level:.0%} bootstrap CI]")
    else:
        out.append(f"only one group ({c.groups[0]}): nothing to compare against; choose another --by")
    if c.ratio and c.excluded_pairs:
        out.append(f"{c.excluded_pairs} pair(s) left out of the ratios: a value was not > 0")
    if c.few_pair_intervals:
        out.append(few_pairs_warning(c))
    return out


def few_pairs_warning(c: MetricComparison) -> str:
    n = c.few_pair_intervals
    return (f"{c.title}: {n} interval{'s rest' if n > 1 else ' rests'} on fewer than {MIN_PAIRS} pairs "
            "(marked *): too few to trust a bootstrap interval; run more repetitions")


def left_out_note(comparisons: Sequence[MetricComparison]) -> str | None:
    """The metrics :func:`~harness.results.compare.compare` left out as constant, or ``None``."""
    left_out = getattr(comparisons, "left_out", None) or {}
    if not left_out:
        return None
    parts = [(f"{block}: " if block is not None else "") + ", ".join(names) for block, names in left_out.items()]
    return ("left out, the same in every row at each point (name them with --metric, or add --constants): "
            + "; ".join(parts))


def _wrap(text: str, width: int | None, indent: str = "  ") -> list[str]:
    if not width:
        return [indent + text]
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=True, break_on_hyphens=False) or [indent]


def format_table(comparisons: Sequence[MetricComparison], width: int | None = None) -> str:
    """The text tables (see the module docstring); ``width`` bounds every line."""
    blocks = []
    for c in comparisons:
        header, body, text_notes = table_parts(c, width)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines = [c.title, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in body]
        if width:
            lines = [_cut(ln, width) for ln in lines]
        lines += [ln for n in text_notes for ln in _wrap(n, width)]
        blocks.append("\n".join(lines))
    note = left_out_note(comparisons)
    if note:
        blocks.append("\n".join(_wrap(note, width, indent="")))
    return "\n\n".join(blocks)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def format_markdown(comparisons: Sequence[MetricComparison], width: int | None = None) -> str:
    blocks = []
    for c in comparisons:
        header, body, text_notes = table_parts(c, width)
        lines = [f"### {c.title}", "", "| " + " | ".join(_md_cell(h) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in body]
        lines += [""] + [f"*{_md_cell(n)}*" for n in text_notes]
        blocks.append("\n".join(lines))
    note = left_out_note(comparisons)
    if note:
        blocks.append(f"*{_md_cell(note)}*")
    return "\n\n".join(blocks) + "\n"


def _csv_num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x)) if isinstance(x, float) else str(x)


CSV_STATS = ("mean", "std", "n")
CSV_DIFF = ("diff", "diff_ci_low", "diff_ci_high", "pairs")
CSV_RATIO = ("ratio", "ratio_ci_low", "ratio_ci_high", "ratio_pairs", "ratio_excluded")


def format_csv(comparisons: Sequence[MetricComparison]) -> str:
    """One tidy CSV (see the module docstring)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    point_keys = list(dict.fromkeys(k for c in comparisons for k in c.point_keys))
    ratio = any(line.ratios for c in comparisons for line in c.lines)  # computed, if not shown
    writer.writerow(["experiment_id", "metric", *point_keys, "group", "baseline", *CSV_STATS, *CSV_DIFF,
                     *(CSV_RATIO if ratio else ())])
    for c in comparisons:
        for line in c.lines:
            if line.point is None:
                point = [ALL] * len(point_keys)
            else:
                point = [value_text(line.point[k]) if k in line.point else "" for k in point_keys]
            for g in c.groups:
                s = line.stats[g]
                cells = [c.block or "", c.metric, *point, g, c.baseline, _csv_num(s.mean), _csv_num(s.std), str(s.n)]
                d = line.diffs.get(g)
                cells += ([_csv_num(d.mean), _csv_num(d.ci_low), _csv_num(d.ci_high), str(d.pairs)]
                          if d else [""] * len(CSV_DIFF))
                if ratio:
                    r = line.ratios.get(g)
                    cells += ([_csv_num(r.mean), _csv_num(r.ci_low), _csv_num(r.ci_high), str(r.pairs),
                               str(r.excluded)] if r else [""] * len(CSV_RATIO))
                writer.writerow(cells)
    return buf.getvalue()


def format_comparisons(comparisons: Sequence[MetricComparison], fmt: str = "table",
                       width: int | None = None) -> str:
    """``comparisons`` as ``fmt`` (``table``, ``markdown`` or ``csv``); ``width`` bounds the
    lines of the table and Markdown formats (``None``: no bound)."""
    if fmt == "table":
        return format_table(comparisons, width)
    if fmt == "csv":
        return format_csv(comparisons)
    if fmt == "markdown":
        return format_markdown(comparisons, width)
    raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
