"""Results pages: ``harness publish RUN... --out docs/results`` writes, for each run directory,
``<out>/<benchmark>.md`` and its figures (``<out>/<benchmark>/*.png``), every number on the page
taken from the run's own files:

1. what the run answers (:mod:`harness.results.answers`): the thresholds in one table (the
   page's *headline*, also what ``--readme`` copies into a README), then each block's tables
   with their intervals and notes;
2. the dry-run's estimate against the run, and for a run of part of a file the plan of the whole
   file (:mod:`harness.results.plan_tables`);
3. the figures, with their captions (:func:`harness.results.report.figure_caption`);
4. how the run was made (``env.json``): the exact command of each session, the commit, the date,
   the machine (CPU model, cores, BLAS and the DGEMM rate measured at the start of the run),
   wall and CPU time of each session, and the cells per block and status.

Each page starts with a comment holding the command that made its run and the one that wrote the
page; from these, ``<out>/regenerate`` (a bash script listing every page's commands) and
``<out>/index.md`` (one line per page) are rewritten after every publish. ``--readme FILE``
replaces the text between ``<!-- results:<benchmark>:begin -->`` and ``<!-- results:<benchmark>:end
-->`` in FILE with the page's headline table and a link to the page.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.plugin.tables import Table, format_value
from harness.results.runs import env_sessions, recorded_seconds

MARKER = "<!-- harness-publish: "
"""First line of a page: ``<!-- harness-publish: {json} -->`` with the page's ``benchmark``, the
``run`` command (as recorded) and the ``publish`` command."""
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"
REGENERATE = "regenerate"
INDEX = "index.md"


# -- the run's records ---------------------------------------------------------------------------
def harness_command(command_line: str | None) -> str | None:
    """The recorded command line with the program written as a user types it: ``/x/.venv/bin/harness
    run F`` and ``python -m harness run F`` become ``harness run F``; another command (a script
    calling the API) is returned as it is."""
    if not command_line:
        return None
    try:
        words = shlex.split(command_line)
    except ValueError:
        return command_line
    program = Path(words[0]) if words else None
    if program is not None and (program.name == "harness" or program.parts[-2:] == ("harness", "__main__.py")):
        words = ["harness", *words[1:]]
    elif len(words) >= 3 and os.path.basename(words[0]).startswith("python") and words[1:3] == ["-m", "harness"]:
        words = ["harness", *words[3:]]
    return shlex.join(words)


def clock(seconds: float | None) -> str:
    """``4:14`` (m:ss) or ``1:02:03`` (h:mm:ss); ``-`` when unknown."""
    from harness.runner.progress import format_seconds

    return "-" if seconds is None else format_seconds(float(seconds))


def _blas(env: Mapping[str, Any]) -> str:
    libs = [lib for lib in env.get("blas") or [] if isinstance(lib, dict) and lib.get("user_api") == "blas"]
    texts = list(dict.fromkeys(f"{lib.get('internal_api', '?')} {lib.get('version', '')}".strip()
                               + (f" ({lib['num_threads']} threads)" if lib.get("num_threads") else "")
                               for lib in libs))
    return ", ".join(texts) or "-"


def run_facts(run) -> list[tuple[str, str]]:
    """``[(what, text)]``: how the run was made, from its ``env.json`` and rows (see the module
    docstring)."""
    env = run.env or {}
    sessions = env_sessions(env)
    facts: list[tuple[str, str]] = []
    for i, s in enumerate(sessions):
        label = "command" if i == 0 else f"command (session {i + 1})"
        facts.append((label, f"`{harness_command(s.get('command_line')) or '-'}`"))
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    if git.get("commit"):
        state = "with uncommitted changes" if git.get("dirty") else "clean"
        facts.append(("commit", f"`{git['commit']}` ({state})"))
    else:
        facts.append(("commit", "- (not run from a git work tree)"))
    started = [s.get("started") for s in sessions if s.get("started")]
    if started:
        facts.append(("date", f"{started[0]} (UTC, start of the run)"))
    cores = env.get("cores")
    total = env.get("cores_total")
    machine = f"{env.get('cpu') or 'unknown CPU'}, {cores} cores" + (f" (of {total})" if total and total != cores else "")
    facts.append(("machine", machine + (f"; {env['platform']}" if env.get("platform") else "")))
    kernel = sessions[0].get("kernel_blas") if sessions else None
    blas = _blas(env)
    if isinstance(kernel, dict) and kernel.get("name"):
        blas += f"; training kernel's products: {kernel['name']} {kernel.get('version') or ''}".rstrip()
    facts.append(("BLAS", blas))
    for i, s in enumerate(sessions):
        dgemm = s.get("dgemm")
        if isinstance(dgemm, dict) and dgemm.get("gflops"):
            label = "DGEMM at the start" if i == 0 else f"DGEMM (session {i + 1})"
            facts.append((label, f"{format_value(float(dgemm['gflops']))} GFLOP/s ({dgemm.get('size')} x "
                                 f"{dgemm.get('size')} float64 products, best of {dgemm.get('repeats')}, "
                                 f"{dgemm.get('threads')} threads)"))
    wall, cpu = recorded_seconds(sessions, "wall_seconds"), recorded_seconds(sessions, "cpu_seconds")
    if wall is not None:
        facts.append(("wall time", f"{clock(wall)} ({format_value(wall)} s" + (
            f" over {len(sessions)} sessions)" if len(sessions) > 1 else ")")))
    else:
        facts.append(("wall time", "- (a session without an end record: interrupted, or an older harness)"))
    if cpu is not None:
        facts.append(("CPU time", f"{clock(cpu)} ({format_value(cpu)} s, user + system of the harness "
                                  "process and its local worker processes)"))
    jobs = [s.get("jobs") for s in sessions]
    if jobs:
        facts.append(("jobs", ", ".join("-" if j is None else str(j) for j in jobs)
                      + f"; threads per job: {sessions[0].get('threads_per_job')}"))
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    versions = [f"{k} {v}" for k, v in packages.items() if v and k in ("harness", "numpy", "scipy", "numba")]
    if versions or env.get("python"):
        facts.append(("software", ", ".join([f"Python {env.get('python')}", *versions])))
    counts = Counter(str(r.get("status")) for r in run.rows)
    facts.append(("cells", f"{len(run.rows)}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    return facts


# -- markdown ------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table of texts (``|`` escaped)."""
    out = ["| " + " | ".join(_cell(str(c)) for c in columns) + " |",
           "| " + " | ".join("---" for _ in columns) + " |"]
    out += ["| " + " | ".join(_cell(str(c)) for c in line) + " |" for line in rows]
    return "\n".join(out)


def table_markdown(table: Table, level: int = 3) -> str:
    """A :class:`~harness.plugin.tables.Table` as a heading (``level`` 0: its title in bold, for
    the headline block, which a README embeds under headings of its own), a markdown table and its
    notes."""
    parts = [f"{'#' * level} {table.title}" if level else f"**{table.title}**"]
    if table.columns:
        parts += ["", markdown_table(table.columns, table.cells())]
    if table.notes:
        parts += [""] + [note if note.endswith(".") else note + "." for note in table.notes]
    return "\n".join(parts)


def headline(lines: Sequence[Mapping[str, Any]]) -> Table | None:
    """Every threshold search of the run in one table (block, grid point, the searched axis, the
    threshold with its 95% bootstrap interval, the final bracket, the status) from the threshold
    lines (:attr:`harness.results.runs.Run.thresholds`); ``None`` without a search."""
    from harness.plugin.tables import Interval
    from harness.plugin.tables import bracket_text
    from harness.results.answers import THRESHOLD_FIELDS

    if not lines:
        return None
    rows = []
    for t in lines:
        point = ", ".join(f"{k} = {format_value(v)}" for k, v in t.items() if k not in THRESHOLD_FIELDS)
        if "level" in t:
            point += (", " if point else "") + f"level {format_value(t['level'])}"
        bracket = bracket_text(t.get("lower"), t.get("upper"))
        rows.append([t.get("experiment_id"), point or "-", t.get("axis"),
                     Interval(t.get("threshold"), t.get("ci_low"), t.get("ci_high")), bracket, t.get("status")])
    return Table("Thresholds", ["block", "grid point", "searched", "threshold [95% bootstrap]", "bracket",
                                "status"], rows)


def _figures(run, name: str, out_dir: Path) -> list[tuple[str, str]]:
    """Copy the run's PNG figures to ``out_dir/<name>/`` (replacing what was there) and return
    ``[(relative path, caption)]`` in the report's order."""
    from harness.results.report import _spec_blocks, figure_caption, figure_order

    source = Path(run.path) / "figures"
    pngs = sorted(p for p in source.glob("*.png")) if source.is_dir() else []
    target = out_dir / name
    if target.is_dir():
        for old in target.glob("*.png"):
            old.unlink()
    if not pngs:
        return []
    target.mkdir(parents=True, exist_ok=True)
    try:
        bench, blocks = _spec_blocks((Path(run.path) / "spec.toml").read_text(encoding="utf-8"))
    except OSError:
        bench, blocks = {}, []
    ids = [str(b.get("id", b.get("experiment"))) for b in blocks]
    by_id = dict(zip(ids, blocks))
    helps = {e.id: getattr(e.component, "help", "") for e in run.spec.experiments} if run.spec is not None else {}
    out = []
    for number, (block_id, stem, fig_name) in enumerate(figure_order([p.stem for p in pngs], ids), start=1):
        shutil.copyfile(source / f"{stem}.png", target / f"{stem}.png")
        caption = figure_caption(number, by_id.get(block_id) if block_id is not None else None, fig_name,
                                 bench, helps, run.rows)
        out.append((f"{name}/{stem}.png", caption))
    return out


def render_page(run, name: str, tables: Sequence[Table], figures: Sequence[tuple[str, str]],
                publish_command: str, top: Table | None = None, estimates: Sequence[Table] = ()) -> str:
    """The markdown text of one results page (see the module docstring)."""
    env = run.env or {}
    sessions = env_sessions(env)
    marker = {"benchmark": name, "run": harness_command(sessions[0].get("command_line")) if sessions else None,
              "publish": publish_command}
    description = run.spec.description if run.spec is not None else ""
    parts = [MARKER + json.dumps(marker) + " -->", f"# {name}", ""]
    if description:
        parts += [description, ""]
    parts += [f"Generated by `harness publish` from the run directory `{Path(run.path).name}`: every number "
              "below comes from its rows and records. To make it again: "
              f"`{marker['run'] or 'harness run ...'}`, then `{publish_command}` "
              f"(or `docs/results/{REGENERATE} {name}`).", "", "## What the run answers", ""]
    summaries = [t for t in tables if t.headline]
    if top is not None or summaries:
        block = [markdown_table(top.columns, top.cells())] if top is not None else []
        block += [table_markdown(t, level=0) for t in summaries]
        parts += [HEADLINE_BEGIN, "\n\n".join(block), HEADLINE_END, ""]
    if not tables:
        parts += ["No threshold search and no table from the experiments of this run: see the figures.", ""]
    for table in tables:
        if not table.headline:
            parts += [table_markdown(table), ""]
    if estimates:
        parts += ["## Estimates", ""]
        for table in estimates:
            parts += [table_markdown(table), ""]
    parts += ["## Figures", ""]
    if not figures:
        parts += ["No figures in the run directory (`harness plot RUN` draws them).", ""]
    for path, caption in figures:
        parts += [f"![{_cell(Path(path).stem)}]({path})", "", f"*{caption}*", ""]
    parts += ["## How the run was made", "", markdown_table(["", ""], run_facts(run)), ""]
    parts += [markdown_table(["block", "experiment", "cells", "statuses"], _block_counts(run)), ""]
    if run.spec_error:
        parts += [f"The spec no longer loads with the installed plugins: {run.spec_error}", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def _block_counts(run) -> list[list[str]]:
    by_block: dict[str, Counter] = {}
    kinds: dict[str, str] = {}
    for r in run.rows:
        block = str(r.get("experiment_id"))
        kinds.setdefault(block, str(r.get("experiment")))
        by_block.setdefault(block, Counter())[str(r.get("status"))] += 1
    return [[b, kinds[b], str(sum(c.values())), ", ".join(f"{n} {s}" for s, n in sorted(c.items()))]
            for b, c in by_block.items()]


def _estimates(run, registry) -> list[Table]:
    """The dry-run's estimate against the run and, for a run of part of a file, the plan of the
    whole file (:mod:`harness.results.plan_tables`)."""
    from harness.results.plan_tables import estimate_table, recorded_file, whole_file_table

    tables = []
    try:
        estimate = estimate_table(run, registry)
    except Exception as exc:  # an estimate that cannot be made must not cost the page
        estimate = Table(title="The dry-run's estimate against this run", columns=[], notes=[
            f"No estimate: {type(exc).__name__}: {exc}"])
    if estimate is not None:
        tables.append(estimate)
    recorded = recorded_file(run)
    if recorded is not None:
        try:
            tables.append(whole_file_table(recorded[0], registry))
        except Exception as exc:
            tables.append(Table(title=f"Plan of the whole file {recorded[0].name}", columns=[], notes=[
                f"No plan: {type(exc).__name__}: {exc}"]))
    return tables


# -- the folder: pages, regenerate, index, README --------------------------------------------------
def page_marker(path: Path) -> dict[str, Any] | None:
    """The JSON of a page's first line (:data:`MARKER`), or ``None`` for a page of another origin."""
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except OSError:
        return None
    if not first.startswith(MARKER) or not first.endswith("-->"):
        return None
    try:
        data = json.loads(first[len(MARKER):-3].strip())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def regenerate_script(pages: Sequence[dict[str, Any]]) -> str:
    """The bash script that remakes every page: its run, then its publish command (a page of
    ``harness bench ... --markdown`` is written by its command alone)."""
    names = [p["benchmark"] for p in pages]
    lines = ["#!/usr/bin/env bash",
             "# Written by `harness publish` from the pages in this folder (do not edit): each page's run",
             "# command as recorded in its env.json, then the command that wrote the page. From the",
             "# repository root: docs/results/regenerate [BENCHMARK ...] (default: every page). A run",
             "# that finishes with failed cells (exit code 3) still gets its page.",
             "set -euo pipefail",
             'cd "$(dirname "$0")/../.."',
             f"pages=({' '.join(shlex.quote(n) for n in names)})",
             'if [ "$#" -gt 0 ]; then pages=("$@"); fi',
             'for page in "${pages[@]}"; do',
             '  case "$page" in']
    for p in pages:
        lines.append(f"    {shlex.quote(p['benchmark'])})")
        run = p.get("run")
        if run and run.startswith("harness run "):
            lines.append(f"      {run} || [ $? -eq 3 ]")
        elif run and run.startswith("harness bench ") and not p.get("publish"):
            lines.append(f"      {run}")  # a speed benchmark's page: the command writes it
            lines.append("      ;;")
            continue
        else:
            lines.append(f"      echo {shlex.quote('the run of this page was not made by harness run: ' + str(run))} >&2")
            lines.append("      exit 2")
        lines.append(f"      {p['publish']}")
        lines.append("      ;;")
    lines += ['    *) echo "no page $page; pages: ${pages[*]}" >&2; exit 2 ;;', "  esac", "done", ""]
    return "\n".join(lines)


def write_folder_files(out_dir: Path) -> None:
    """Rewrite ``regenerate`` and ``index.md`` from the pages in ``out_dir``."""
    pages = []
    for path in sorted(out_dir.glob("*.md")):
        marker = page_marker(path)
        if marker is not None and marker.get("benchmark") == path.stem:
            pages.append(marker)
    script = out_dir / REGENERATE
    script.write_text(regenerate_script(pages), encoding="utf-8")
    script.chmod(0o755)
    index = ["# Results", "", "One page per benchmark file, generated from a run directory by "
             "`harness publish`; `docs/results/regenerate` makes every run and page again.", "",
             markdown_table(["page", "made by"], [[f"[{p['benchmark']}]({p['benchmark']}.md)", f"`{p.get('run')}`"]
                                                  for p in pages]), ""]
    (out_dir / INDEX).write_text("\n".join(index), encoding="utf-8")


def update_readme(readme: Path, name: str, page: str, link: str) -> None:
    """Replace the text between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->``
    in ``readme`` with the page's headline table and a link to the page."""
    begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--readme {readme}: cannot read it: {exc.strerror or exc}") from None
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise UserError(f"--readme {readme}: no block to fill; add the lines {begin} and {end} where the "
                        f"table of {name} goes")
    match = re.search(re.escape(HEADLINE_BEGIN) + r"\n(.*?)\n" + re.escape(HEADLINE_END), page, re.S)
    if match is None:
        raise UserError(f"--readme {readme}: the page of {name} has no headline table (its run has no "
                        "threshold search and no summary table)")
    block = f"{begin}\n{match.group(1)}\n\nFrom [{link}]({link}).\n{end}"
    head, rest = text.split(begin, 1)
    readme.write_text(head + block + rest.split(end, 1)[1], encoding="utf-8")


def publish(run_dirs: Sequence[str | Path], out: str | Path, registry=None, readme: str | Path | None = None,
            results_dir: str | Path | None = None) -> list[Path]:
    """Write the results page of each run (``latest`` and ``latest:BENCHMARK`` work) into ``out``;
    returns the pages written. ``readme``: also fill that file's block of each page's benchmark
    (:func:`update_readme`)."""
    from harness.plugin.manager import load_registry
    from harness.results.answers import run_tables
    from harness.results.runs import load_run
    from harness.runner.layout import resolve_run_path

    if not run_dirs:
        raise UserError("give at least one run directory to publish")
    registry = registry if registry is not None else load_registry()  # once, for every page
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot create it: {exc.strerror or exc}") from None
    runs: list[tuple[str, Any]] = []
    seen: dict[str, Any] = {}
    for given in run_dirs:
        run = load_run(resolve_run_path(str(given), results_dir), registry)
        name = run.spec.name if run.spec is not None else Path(run.path).parent.name
        if name in seen:
            raise UserError(f"two runs of benchmark {name!r} given ({seen[name]} and {given}): a page per "
                            "benchmark, publish one of them")
        seen[name] = given
        runs.append((name, run))
    written = []
    for name, run in runs:
        command = f"harness publish latest:{name} --out {out_dir.as_posix()}"
        if readme is not None:
            command += f" --readme {Path(readme).as_posix()}"
        top = headline(run.thresholds)
        page = render_page(run, name, run_tables(run, registry), _figures(run, name, out_dir), command, top,
                           _estimates(run, registry))
        path = out_dir / f"{name}.md"
        path.write_text(page, encoding="utf-8")
        written.append(path)
        if readme is not None and HEADLINE_BEGIN in page:
            link = os.path.relpath(path.resolve(), Path(readme).resolve().parent).replace(os.sep, "/")
            update_readme(Path(readme), name, page, link)
    write_folder_files(out_dir)
    return written
