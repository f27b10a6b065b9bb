"""``report.html``: one self-contained page per run.

The page opens with what the run answers (:mod:`harness.results.answers`: each threshold
search's table and the experiments' own tables, with their intervals and notes), then its figures
(PNG embedded as base64 data URIs; an SVG-only figure as an SVG data URI) in the order of the
experiment blocks, each with a caption saying which block, experiment, grid and repetitions it
shows; then how it ran: the run's facts, its status counts per experiment block, the summary
table of each block (``mean ± std (n)`` per metric), the comparison tables of each compared
axis, every cell that did not finish ``ok`` with its error, the resolved spec and the
environment.

A **compared axis** is a grid axis of one key, with at least two values, that picks a
component or a variant: a slot (``activation = ["tanh", "relu"]``, ``optimizer``,
``architecture``) or a parameter whose values are text (``model = ["deep_adam", "two_layer"]``).
For each, the report holds ``harness compare RUN -e BLOCK --by AXIS`` (:mod:`harness.results.compare`):
per metric that is not the same in every row at each point, the groups (short labels naming what
differs) side by side at each point of the other axes, with seed-paired differences against the
first value, or paired ratios for a positive metric spanning more than two decades; a table
wider than :data:`REPORT_TABLE_WIDTH` characters is pivoted to a line per group.

The page loads nothing from elsewhere and runs no script. Every text taken from the run (names,
values, error messages) is HTML-escaped.
"""
from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.results.runs import env_sessions, recorded_seconds
from harness.results.stats import short_number

REPORT_FILE = "report.html"
MAX_PROBLEM_ROWS = 500
"""At most this many non-ok cells are listed (the counts always cover all of them)."""
STATUSES = ("ok", "diverged", "failed", "timeout", "skipped")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.wide { overflow-x: auto; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.6em; overflow-x: auto;
      white-space: pre-wrap; word-break: break-word; font-size: 0.85em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.ok { color: #1a7f37; } .bad { color: #b42318; font-weight: bold; } .muted { color: #777; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes included, so it is safe in attributes too)."""
    return html.escape(value if isinstance(value, str) else _text(value), quote=True)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return short_number(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        return short_number(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _table(header: Sequence[str] | None, rows: Iterable[Sequence[Any]],
           numeric: Sequence[bool] | None = None) -> str:
    out = ['<div class="wide"><table>']
    if header is not None:
        out += ["<thead><tr>"] + [f"<th>{esc(h)}</th>" for h in header] + ["</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if numeric and i < len(numeric) and numeric[i] else ""
            out.append(f"<td{cls}>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figures(figures_dir: Path) -> list[tuple[str, str, str]]:
    """``[(stem, mime type, base64 data)]``: the PNG of each figure, else its SVG."""
    if not figures_dir.is_dir():
        return []
    by_stem: dict[str, dict[str, Path]] = {}
    for path in sorted(figures_dir.iterdir()):
        suffix = path.suffix.lower()
        if path.is_file() and suffix in (".png", ".svg"):
            by_stem.setdefault(path.stem, {})[suffix] = path
    out = []
    for stem, files in by_stem.items():
        path = files.get(".png") or files[".svg"]
        mime = "image/png" if path.suffix.lower() == ".png" else "image/svg+xml"
        try:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
        out.append((stem, mime, data))
    return out


def _spec_blocks(spec_text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        raw = tomllib.loads(spec_text)
    except tomllib.TOMLDecodeError:
        return {}, []
    bench = raw.get("benchmark") if isinstance(raw.get("benchmark"), dict) else {}
    blocks = [b for b in raw.get("experiments", []) if isinstance(b, dict)] if isinstance(
        raw.get("experiments"), list) else []
    return bench, blocks


def _status_section(rows: Sequence[Mapping[str, Any]], blocks: Sequence[Mapping[str, Any]],
                    expected: Mapping[str, int]) -> str:
    ids = [str(b.get("id", b.get("experiment"))) for b in blocks]
    ids += [i for i in dict.fromkeys(str(r.get("experiment_id")) for r in rows) if i not in ids]
    kinds = {str(b.get("id", b.get("experiment"))): b.get("experiment", "") for b in blocks}
    header = ["experiment block", "experiment", "rows"] + list(STATUSES)
    if expected:
        header.append("not run")
    table = []
    totals = {s: 0 for s in STATUSES}
    for block_id in ids:
        members = [r for r in rows if str(r.get("experiment_id")) == block_id]
        counts = {s: sum(1 for r in members if r.get("status") == s) for s in STATUSES}
        for s in STATUSES:
            totals[s] += counts[s]
        kind = kinds.get(block_id) or (members[0].get("experiment") if members else "")
        line = [block_id, kind, len(members)] + [counts[s] for s in STATUSES]
        if expected:
            line.append(max(0, expected.get(block_id, 0) - len(members)) if block_id in expected else "")
        table.append(line)
    numeric = [False, False] + [True] * (len(header) - 2)
    bad = sum(totals[s] for s in STATUSES if s != "ok")
    verdict = (f'<p class="ok">All {len(rows)} cells finished ok.</p>' if rows and not bad else
               f'<p class="bad">{bad} of {len(rows)} cells did not finish ok.</p>' if rows else
               '<p class="muted">No result rows.</p>')
    return verdict + _table(header, table, numeric)


def _summary_section(summary: Sequence[Mapping[str, Any]]) -> str:
    from harness.results.summary import columns

    if not summary:
        return '<p class="muted">No rows to summarise.</p>'
    blocks: dict[str, list[Mapping[str, Any]]] = {}
    for line in summary:
        blocks.setdefault(str(line.get("experiment_id")), []).append(line)
    out = []
    fixed = {"experiment_id", "experiment", "point_id", "n_rows"} | {f"n_{s}" for s in STATUSES}
    for block_id, lines in blocks.items():
        cols = columns(lines)
        metrics = [c[: -len("_mean")] for c in cols if c.endswith("_mean")]
        derived = {f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")}
        coords = [c for c in cols if c not in fixed and c not in derived]
        statuses = [s for s in STATUSES if s != "ok" and any(line.get(f"n_{s}") for line in lines)]
        header = coords + ["rows", "ok"] + statuses + metrics
        body = []
        for line in lines:
            cells: list[Any] = [line.get(c) for c in coords]
            cells += [line.get("n_rows", 0), line.get("n_ok", 0)] + [line.get(f"n_{s}", 0) for s in statuses]
            for m in metrics:
                mean, std, n = line.get(f"{m}_mean"), line.get(f"{m}_std"), line.get(f"{m}_n")
                if mean is None:
                    cells.append("")
                elif std is None:
                    cells.append(f"{_text(mean)} (n={n})")
                else:
                    cells.append(f"{_text(mean)} ± {_text(std)} (n={n})")
            body.append(cells)
        numeric = [False] * len(coords) + [True] * (len(header) - len(coords))
        out.append(f"<h3>{esc(block_id)} <span class=\"muted\">({esc(lines[0].get('experiment'))})</span></h3>")
        out.append(_table(header, body, numeric))
    out.append('<p class="muted">Cells: mean ± sample standard deviation (n values) over the ok and '
               'diverged rows with a finite value.</p>')
    return "".join(out)


def _problem_section(rows: Sequence[Mapping[str, Any]]) -> str:
    bad = [r for r in rows if r.get("status") != "ok"]
    if not bad:
        return '<p class="ok">None: every cell finished ok.</p>'
    out = []
    if len(bad) > MAX_PROBLEM_ROWS:
        out.append(f'<p class="muted">The first {MAX_PROBLEM_ROWS} of {len(bad)} are listed.</p>')
    out.append('<div class="wide"><table><thead><tr><th>experiment block</th><th>coordinates</th>'
               '<th>repetition</th><th>seed</th><th>status</th><th>error</th></tr></thead><tbody>')
    for r in bad[:MAX_PROBLEM_ROWS]:
        coords = ", ".join(f"{k}={_text(v)}" for k, v in (r.get("coords") or {}).items()) or "-"
        seed = r.get("seed") or {}
        seed_text = f"{seed.get('root', '')} / {_text(seed.get('spawn_key', ''))}"
        out.append(f"<tr><td>{esc(r.get('experiment_id'))}</td><td>{esc(coords)}</td>"
                   f"<td class=\"num\">{esc(r.get('repetition'))}</td><td>{esc(seed_text)}</td>"
                   f"<td class=\"bad\">{esc(r.get('status'))}</td>"
                   f"<td><pre>{esc(r.get('error') or '')}</pre></td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def figure_order(stems: Sequence[str], block_ids: Sequence[str]) -> list[tuple[str | None, str, str]]:
    """``[(block id or None, stem, figure name)]``: the figures (files ``<block id>-<name>``) in
    the order of the blocks, by name within a block; a figure of no known block comes last."""
    by_length = sorted(block_ids, key=len, reverse=True)  # "fig1-x" belongs to "fig1-x", not "fig1"
    placed: list[tuple[int, str, str | None, str]] = []
    for stem in stems:
        block = next((b for b in by_length if stem.startswith(f"{b}-")), None)
        rank = list(block_ids).index(block) if block is not None else len(block_ids)
        name = stem[len(block) + 1:] if block is not None else stem
        placed.append((rank, name, block, stem))
    return [(block, stem, name) for _, name, block, stem in sorted(placed, key=lambda t: (t[0], t[1]))]


def figure_caption(number: int, block: Mapping[str, Any] | None, name: str, bench: Mapping[str, Any],
                   helps: Mapping[str, str], rows: Sequence[Mapping[str, Any]]) -> str:
    """``Figure n. <block> (<experiment>: <what it measures>): <name>; grid ...; k repetitions; rows``."""
    from harness.plugin.context import FigureContext

    if block is None:
        return f"Figure {number}. {name} (no experiment block of this run's spec)."
    block_id = str(block.get("id", block.get("experiment")))
    experiment = str(block.get("experiment", ""))
    context = FigureContext(benchmark=str(bench.get("name", "")), experiment_id=block_id, experiment=experiment,
                            grid=dict(block.get("grid") or {}),
                            repetitions=int(block.get("repetitions", bench.get("repetitions", 1)) or 1))
    what = helps.get(block_id)
    members = [r for r in rows if str(r.get("experiment_id")) == block_id]
    ok = sum(1 for r in members if r.get("status") == "ok")
    text = f"Figure {number}. {name.replace('_', ' ')}: block {block_id} ({experiment}"
    text += f": {what})" if what else ")"
    axes = context.caption().split("; ", 1)[1] if "; " in context.caption() else ""
    return f"{text}; {axes}; from {len(members)} rows ({ok} ok)."


def _figure_section(figures: Sequence[tuple[str, str, str]], blocks: Sequence[Mapping[str, Any]] = (),
                    bench: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None,
                    rows: Sequence[Mapping[str, Any]] = ()) -> str:
    if not figures:
        return ('<p class="muted">No figures in this run directory (draw them with '
                '<code>harness plot RUN_DIR</code>, then write the report again).</p>')
    ids = [str(b.get("id", b.get("experiment"))) for b in blocks]
    by_id = dict(zip(ids, blocks))
    data = {stem: (mime, b64) for stem, mime, b64 in figures}
    out = []
    current: object = object()
    for number, (block_id, stem, name) in enumerate(figure_order(list(data), ids), start=1):
        if block_id != current:
            current = block_id
            kind = by_id[block_id].get("experiment", "") if block_id is not None else ""
            out.append(f"<h3>{esc(block_id)} <span class=\"muted\">({esc(kind)})</span></h3>"
                       if block_id is not None else "<h3>Other figures</h3>")
        mime, b64 = data[stem]
        caption = figure_caption(number, by_id.get(block_id) if block_id is not None else None, name,
                                 bench or {}, helps or {}, rows)
        out.append(f'<figure id="fig-{esc(stem)}"><img src="data:{mime};base64,{b64}" alt="{esc(stem)}">'
                   f"<figcaption>{esc(caption)} <span class=\"muted\">[{esc(stem)}]</span></figcaption></figure>")
    return "".join(out)


def compared_axes(spec) -> list[tuple[str, str]]:
    """``[(block id, axis)]``: the compared axes of a loaded spec (see the module docstring)."""
    out = []
    for exp in getattr(spec, "experiments", None) or []:
        for axis in exp.axes:
            if len(axis.keys) != 1 or len(axis.values) < 2:
                continue
            key = axis.keys[0]
            if key in exp.slots or all(isinstance(v, str) for v in axis.values):
                out.append((exp.id, axis.label))
    return out


REPORT_TABLE_WIDTH = 160
"""The report's comparison tables pivot to a line per group when wider than this (characters)."""


def _compare_section(run, n_boot: int = 1000) -> str:
    """The comparison tables of every compared axis ("" when there is none): per block, short
    group labels, constant metrics left out, paired ratios for positive metrics that span more
    than two decades (:func:`harness.plugin.figures.wants_log_axis`), differences otherwise."""
    from harness.errors import UserError
    from harness.plugin.figures import wants_log_axis
    from harness.results.compare import compare
    from harness.results.compare_format import left_out_note, table_parts
    from harness.results.summary import sort_rows

    axes = compared_axes(run.spec)
    if not axes:
        return ""
    rows = sort_rows(run.rows, [line["point_id"] for line in run.summary])
    out = ['<p class="muted">Per compared axis (a slot, or a parameter with text values, varied by the '
           'grid): each metric side by side, with seed-paired differences against the first value, or '
           'paired ratios where the metric is positive and spans more than two decades (as '
           '<code>harness compare RUN -e BLOCK --by AXIS [--ratio]</code>).</p>']
    for block_id, axis in axes:
        block_rows = [r for r in rows if r.get("experiment_id") == block_id]
        out.append(f"<h3>{esc(block_id)}: by {esc(axis)}</h3>")
        try:
            comparisons = compare([(run.path.name, block_rows)], by=axis, n_boot=n_boot, ratio=True)
        except UserError as exc:
            out.append(f"<p class=\"muted\">{esc(exc)}</p>")
            continue
        for c in comparisons:
            values = [s.mean for line in c.lines for s in line.stats.values() if s.mean is not None]
            c.ratio = wants_log_axis(values)  # the lines hold both; the table shows one
            header, body, notes = table_parts(c, REPORT_TABLE_WIDTH)
            out.append(f"<h4>{esc(c.metric)}</h4>" + _table(header, body))
            out.append("".join(f'<p class="muted">{esc(n)}</p>' for n in notes))
        note = left_out_note(comparisons)
        if note:
            out.append(f'<p class="muted">{esc(note)}</p>')
    return "".join(out)


def _blocks_section(blocks: Sequence[Mapping[str, Any]]) -> str:
    if not blocks:
        return ""
    header = ["experiment block", "experiment", "repetitions", "grid", "derived"]
    body = []
    for b in blocks:
        grid = b.get("grid") or {}
        grid_text = "; ".join(f"{k} = {_text(v)}" for k, v in grid.items()) or "no grid"
        derived = "; ".join(f"{k} = {v}" for k, v in (b.get("derived") or {}).items())
        body.append([b.get("id", b.get("experiment")), b.get("experiment"), b.get("repetitions"), grid_text, derived])
    return _table(header, body)


def _answer_section(tables: Sequence[Any]) -> str:
    """The run's answer (:func:`harness.results.answers.run_tables`): one table per entry, its
    notes under it."""
    if not tables:
        return '<p class="muted">No threshold search and no table from the experiments of this run.</p>'
    out = []
    for table in tables:
        out.append(f"<h3>{esc(table.title)}</h3>")
        body = table.cells()
        numeric = [all(_looks_numeric(line[i]) for line in body) if body else False
                   for i in range(len(table.columns))]
        out.append(_table(list(table.columns), body, numeric))
        out.append("".join(f'<p class="muted">{esc(n if n.endswith(".") else n + ".")}</p>' for n in table.notes))
    return "".join(out)


def _looks_numeric(text: str) -> bool:
    head = text.split(" [", 1)[0]
    try:
        float(head)
    except ValueError:
        return head == "-"
    return True


def render_report(run, registry=None) -> str:
    """The HTML text of the report of a loaded run (:class:`harness.results.runs.Run`; see the module
    docstring): what the run answers first, then the figures, then how it ran. ``registry``: the
    plugins whose experiments make the tables (default: the installed ones)."""
    from harness.results.answers import run_tables

    path = Path(run.path)
    try:
        spec_text = (path / "spec.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        spec_text = f"(cannot read spec.toml: {exc})"
    bench, blocks = _spec_blocks(spec_text)
    name = bench.get("name") or path.parent.name
    expected: dict[str, int] = {}
    if run.spec is not None:
        for cell in run.spec.cells():
            expected[cell.experiment_id] = expected.get(cell.experiment_id, 0) + 1
    figures = _figures(path / "figures")

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(name)}: {esc(path.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(name)} <span class=\"muted\">{esc(path.name)}</span></h1>"]
    if bench.get("description"):
        parts.append(f"<p>{esc(bench['description'])}</p>")
    if run.spec_error:
        parts.append(f'<p class="bad">The spec no longer loads: {esc(run.spec_error)}</p>')
    parts.append('<h2 id="answer">What the run answers</h2>' + _answer_section(run_tables(run, registry)))
    helps = {e.id: getattr(e.component, "help", "") for e in run.spec.experiments} if run.spec is not None else {}
    parts.append('<h2 id="figures">Figures</h2>' + _figure_section(figures, blocks, bench, helps, run.rows))
    facts = [("run directory", str(path)), ("root seed", bench.get("seed")),
             ("repetitions (default)", bench.get("repetitions"))]
    env = run.env or {}
    sessions = env_sessions(env)
    if sessions and sessions[0].get("started"):
        facts.append(("started", sessions[0]["started"]))
    facts += run_times(sessions, run.rows)
    for key in ("python", "platform", "cpu", "cores"):
        if key in env and not isinstance(env[key], (dict, list)):
            facts.append((key, env[key]))
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    if git.get("commit"):
        facts.append(("git commit", f"{git['commit']}" + (" (with uncommitted changes)" if git.get("dirty") else "")))
    parts.append('<h2 id="run">The run</h2>' + _table(None, facts))
    parts.append('<h2 id="experiments">Experiment blocks</h2>' + _blocks_section(blocks))
    parts.append('<h2 id="status">Status</h2>' + _status_section(run.rows, blocks, expected))
    parts.append('<h2 id="summary">Summary</h2>' + _summary_section(run.summary))
    compared = _compare_section(run) if run.spec is not None else ""
    if compared:
        parts.append('<h2 id="compare">Comparisons</h2>' + compared)
    parts.append('<h2 id="problems">Cells that did not finish ok</h2>' + _problem_section(run.rows))
    parts.append(f'<h2 id="spec">Spec</h2><pre>{esc(spec_text)}</pre>')
    parts.append(f'<h2 id="environment">Environment</h2><pre>{esc(json.dumps(env, indent=2, default=str))}</pre>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def run_times(sessions: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """How long the run took, from its own record (never typed): ``wall time`` and ``CPU time``
    as each session recorded them at its end (``env.json``: ``wall_seconds``, ``cpu_seconds``),
    else, for a session without that record, from its start to the last row it finished
    (``rows.jsonl``), added over sessions; ``cell time``, the rows' ``elapsed`` added up (more
    than the wall time with ``-j``)."""
    from harness.runner.progress import format_seconds

    recorded = [x for x in sessions if isinstance(x, dict)]
    wall = recorded_seconds(recorded, "wall_seconds")
    out = []
    if wall is not None:
        out.append(("wall time", f"{format_seconds(wall)} ({len(recorded)} session{'s' if len(recorded) > 1 else ''}, "
                                 "as recorded)"))
        cpu = recorded_seconds(recorded, "cpu_seconds")
        if cpu is not None:
            out.append(("CPU time", f"{format_seconds(cpu)} (the harness process and its local workers)"))
    else:
        starts = sorted(t for t in (_time(x.get("started")) for x in recorded) if t)
        ends = sorted(t for t in (_time(r.get("finished")) for r in rows if r.get("finished")) if t)
        if starts and ends:
            span = 0.0
            for i, start in enumerate(starts):
                until = starts[i + 1] if i + 1 < len(starts) else None
                done = [t for t in ends if t >= start and (until is None or t < until)]
                span += (max(done) - start).total_seconds() if done else 0.0
            out.append(("wall time", f"{format_seconds(span)} ({len(starts)} session{'s' if len(starts) > 1 else ''})"))
    elapsed = [float(r["elapsed"]) for r in rows if isinstance(r.get("elapsed"), (int, float))]
    if elapsed:
        out.append(("cell time", f"{format_seconds(sum(elapsed))} (the cells' elapsed seconds added up)"))
    return out


def write_report(run, output: str | Path | None = None, registry=None) -> Path:
    """Write the report of a loaded run (:class:`harness.results.runs.Run`) to ``output`` (default
    ``RUN_DIR/report.html``)."""
    from harness.runner.store import storage_error

    text = render_report(run, registry)
    target = Path(output) if output is not None else Path(run.path) / REPORT_FILE
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:  # a full disk: RunStopped (exit 4); read-only: UserError (exit 2)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise storage_error(target, exc) from None
    return target
