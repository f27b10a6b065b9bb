"""The ``harness`` command line: a thin face over :mod:`harness.api`.

    harness run FILE [--set key.path=value ...] [--jobs N] [--timeout S] [--dry-run [--cells]]
                     [--executor serial|processes|dask] [--scheduler tcp://HOST:PORT]
    harness run FILE [--name NAME] [--tag TAG ...] [--force]
    harness run --resume RUN_DIR [-j N]
    harness runs [BENCHMARK] [--tag TAG ...] [--results-dir DIR]
    harness show RUN_DIR [--experiment ID ...] [--where KEY=VALUE ...] [--columns a,b,c] [--width N] [--timings]
    harness export RUN_DIR [--format csv|parquet] [-o FILE]
    harness plugins [--json]
    harness plot RUN_DIR
    harness report RUN_DIR
    harness publish RUN_DIR... [--out docs/results] [--readme README.md]
    harness compare RUN_DIR [RUN_DIR ...] [--metric M] [--by KEY[,KEY...]] [--experiment ID] [--ratio]
                    [--pooled] [--timings] [--constants] [--format table|csv|markdown] [--width N]
    harness fit RUN_DIR --metric M --axis A [--log]
    harness check-plugin NAME [--kind KIND]

Wherever a RUN_DIR is accepted, ``latest`` names the newest run under the results folder
(``$HARNESS_RESULTS_DIR`` or ``results``) and ``latest:BENCHMARK`` the newest run of a benchmark.

A mistake in the input (a bad file, key, value or option) prints ``error: <message>`` on stderr
and exits with code 2, without a traceback. ``harness run`` exits with 0 when every cell is ok
(``skipped`` counts as ok), 3 when some cells failed, timed out or diverged (the first is
printed), 4 when the run had to stop (a full disk, no Dask worker left) and 130 when
interrupted; a resume of an edited spec, or of a run directory another process is writing,
is an input mistake (2).
"""
from __future__ import annotations

import gc
import json
import signal
import sys

import click

from .errors import UserError

EXIT_INTERRUPTED = 130
EXIT_CELLS_FAILED = 3
"""``harness run``: the run finished, but some cells failed, timed out or diverged."""
MAX_COMPARE_WIDTH = 200
"""``harness compare``'s tables are at most this wide unless --width says otherwise."""
EXIT_STOPPED = 4
"""``harness run``: the run had to stop (a full disk, no Dask worker left); resume it
(:class:`harness.errors.RunStopped`)."""


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:  # one line, whatever the names it quotes hold
            click.echo("error: " + " ".join(str(exc).splitlines()), err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness", prog_name="harness")
def main() -> None:
    """Benchmarks for the theory of over-parameterised neural networks."""


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "-s", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a value of the benchmark file (repeatable), e.g. experiments.fig1.N=2000.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes running cells in parallel  [default: 1; with --resume, the -j of "
                   "the run's last session].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop a cell after this many seconds (its row gets status timeout).")
@click.option("--executor", type=click.Choice(["serial", "processes", "dask", "inline"]), default=None,
              help="Where cells run: one by one in a worker process (serial), in --jobs worker processes, "
                   "on a Dask cluster, or in this process without crash isolation (inline, for debugging) "
                   "(default: serial for one job, else processes).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="With --executor dask: the scheduler of an existing Dask cluster "
                   "(without it, a local cluster of --jobs worker processes is started).")
@click.option("--dry-run", is_flag=True, help="List the grid points with their cells' estimated memory and time, "
              "and the totals; run nothing (the options are checked as for a run).")
@click.option("--cells", is_flag=True, help="With --dry-run: one line per cell instead of per grid point.")
@click.option("--recalibrate", is_flag=True,
              help="With --dry-run: measure this machine's speed again instead of using the cached "
                   "calibration (see harness.plugin.calibration; also HARNESS_RECALIBRATE=1).")
@click.option("--resume", "resume", metavar="RUN_DIR", default=None,
              help="Finish an interrupted run: only cells without a row run.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume: also run again the cells whose row is failed or timeout (the new row "
                   "replaces the old).")
@click.option("--worker-wait", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="With --executor dask: stop (resumable) when no worker has been connected for this long "
                   "[default: 60].")
@click.option("--results-dir", default="results", show_default=True, metavar="DIR", envvar="HARNESS_RESULTS_DIR",
              help="Where run directories are created (DIR/<benchmark>/<timestamp-id>[-NAME]); "
                   "also $HARNESS_RESULTS_DIR.")
@click.option("--name", default=None, metavar="NAME",
              help="A name for the run: kept in meta.json and appended to the directory name "
                   "(letters, digits, '.', '_', '-').")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="A tag for the run, kept in meta.json and shown by harness runs (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--no-figures", is_flag=True, help="Do not draw figures at the end.")
@click.option("--force", is_flag=True,
              help="Run even cells whose memory estimate exceeds this machine's memory (refused otherwise).")
def run(file, overrides, jobs, timeout, executor, scheduler, dry_run, cells, recalibrate, resume, results_dir, quiet,
        no_figures, name, tags, force, retry_failed, worker_wait):
    """Run the benchmark FILE (or resume a run with --resume RUN_DIR).

    Exit status: 0 when every cell is ok (or skipped), 3 when some cells failed, timed out or
    diverged (the first is printed), 2 for a mistake in the input (also an edited spec on
    --resume, or a run directory another process is writing), 4 when the run had to stop
    (a full disk, no Dask worker left: resume it), 130 when interrupted."""
    from . import api

    if file is None and resume is None:
        raise UserError("give a benchmark FILE to run, or --resume RUN_DIR")
    if jobs is None and resume is None:
        jobs = 1
    if dry_run:
        if resume is not None:
            raise UserError("--dry-run lists the cells of a benchmark FILE; it cannot be combined with --resume")
        api.check_run_options(jobs, timeout, executor, scheduler, worker_wait, not quiet, force, retry_failed,
                              resume, name, tags)  # what a run refuses, a dry run refuses
        if recalibrate:
            api.recalibrate()
        _echo(api.plan_lines(api.plan(file, overrides, jobs=jobs), jobs, cells=cells))
        return
    if jobs is None:  # a resume runs with the -j of the run's last session unless told
        jobs = api.remembered_jobs(resume) if file is None else 1
    try:  # a scheduler's SIGTERM stops the run as cleanly as Ctrl-C
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not in the main thread
        previous = None
    try:
        run_dir = api.run(file, overrides=overrides, jobs=jobs, timeout=timeout, resume=resume,
                          results_dir=results_dir, progress=not quiet, figures=not no_figures,
                          executor=executor, scheduler=scheduler, name=name, tags=tags, force=force,
                          retry_failed=retry_failed, worker_wait=worker_wait)
    except api.Interrupted as exc:
        click.echo(f"interrupted: {exc.done} of {exc.total} cells finished and kept in {exc.run_dir.path}; "
                   f"finish with: harness run --resume {exc.run_dir.path}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    # The process ends next: what it holds now lives until then, so keep it out of the
    # interpreter's last garbage collection (a scan of every object Matplotlib, SciPy and the
    # plugins made, for nothing to free).
    gc.freeze()
    counts, first = api.run_status(run_dir.read_rows())
    if not quiet:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        click.echo(f"done: {run_dir.path} ({parts or 'no rows'})", err=True)
    click.echo(str(run_dir.path))
    if first is not None:
        bad = sum(v for k, v in counts.items() if k not in api.OK_STATUSES)
        click.echo(f"{bad} cell{'s' if bad != 1 else ''} not ok; the first: {api.describe_failure(first)}", err=True)
        if any(k in api.RETRIED_STATUSES for k in counts):
            click.echo(f"(run them again with: harness run --resume {run_dir.path} --retry-failed)", err=True)
        sys.exit(EXIT_CELLS_FAILED)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _echo(lines) -> None:
    """Print ``(text, to_stderr)`` lines (what the API's ``*_lines`` functions return)."""
    for text, err in lines:
        click.echo(text, err=err)


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--experiment", "-e", "experiments", multiple=True, metavar="ID",
              help="Only this experiment block (repeatable).")
@click.option("--where", "-w", multiple=True, metavar="KEY=VALUE",
              help="Only the grid points where a coordinate has this value (repeatable: different keys "
                   "must all match, the same key twice matches either value).")
@click.option("--columns", "-c", "columns_", default=None, metavar="A,B,C",
              help="Only these columns (coordinates, rows, ok, statuses, metrics), in this order.")
@click.option("--width", type=click.IntRange(min=0), default=None, metavar="N",
              help="Fit the tables into N characters (0: no limit) [default: the terminal's width, "
                   "100 when not a terminal].")
@click.option("--timings", is_flag=True, help="Also summarise the rows' timings (wall-clock seconds, as "
              "timings.<name>); left out by default.")
def show(run_dir, experiments, where, columns_, width, timings):
    """Print the summary of a run directory as a table (RUN_DIR may be latest or latest:BENCHMARK)."""
    from . import api

    _echo(api.show_lines(run_dir, experiments, where, columns_, _terminal_width() if width is None else width,
                         timings))


def _terminal_width() -> int:
    import shutil

    if sys.stdout.isatty():
        return max(40, shutil.get_terminal_size((100, 24)).columns)
    return 100


@main.command()
@click.argument("benchmark", required=False)
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only runs with this tag (repeatable: all of them).")
@click.option("--results-dir", default="results", show_default=True, metavar="DIR", envvar="HARNESS_RESULTS_DIR",
              help="Where to look (also $HARNESS_RESULTS_DIR).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def runs(benchmark, tags, results_dir, as_json):
    """List the runs under the results folder, oldest first (of BENCHMARK, or all)."""
    from . import api

    found = api.list_runs(benchmark, results_dir, tags)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    if not found:
        click.echo(f"no runs under {results_dir}" + (f" with tag {', '.join(tags)}" if tags else ""), err=True)
        return
    click.echo(api.format_runs(found, results_dir))


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--output", "-o", default=None, metavar="FILE",
              help="Where to write [default: csv to stdout, parquet to RUN_DIR/rows.parquet].")
def export(run_dir, fmt, output):
    """Write the rows as one tidy table: a line per row with its coordinates, status, metrics,
    flattened parameters and seed (parquet needs pandas and pyarrow)."""
    from . import api

    result = api.export(run_dir, fmt, None if output == "-" and fmt == "csv" else output)
    if isinstance(result, str):
        click.echo(result, nl=False)
    else:
        click.echo(str(result))


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--metric", "-m", default=None, metavar="NAME",
              help="Draw this metric (instead of redrawing the experiments' figures).")
@click.option("--x", "x_axis", default=None, metavar="KEY", help="With --metric: the x axis (a grid axis, "
              "parameter or metric).")
@click.option("--hue", default=None, metavar="KEY", help="With --metric: one line per value of KEY (a grid "
              "axis, parameter, slot such as architecture, or slot.param).")
@click.option("--log/--linear", "log", default=None, help="With --metric: a logarithmic or linear y axis "
              "[default: logarithmic when the metric is positive and spans more than two decades].")
@click.option("--experiment", "experiment_id", default=None, metavar="ID", help="With --metric: only this "
              "experiment block.")
def plot(run_dir, metric, x_axis, hue, log, experiment_id):
    """(Re)draw the figures of a run directory into RUN_DIR/figures, or, with --metric M --x
    AXIS [--hue KEY] [--log], draw one metric (other grid axes get their own panels)."""
    from . import api

    if metric is not None or x_axis is not None or hue is not None or log is not None or experiment_id is not None:
        if metric is None or x_axis is None:
            raise click.UsageError("--metric and --x go together (--hue, --log, --experiment need them)")
        for path in api.plot_metric(run_dir, metric, x_axis, hue, log, experiment_id):
            click.echo(str(path))
        return
    report = api.plot(run_dir)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.written:
        for path in report.written:
            click.echo(str(path))
    else:
        click.echo("no figures written", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(as_json):
    """List every component by kind, with its parameters and the distribution providing it."""
    from .api import describe_plugins

    info = describe_plugins()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for kind, entries in info["components"].items():
        if not entries:
            continue
        click.echo(f"{kind}:")
        width = max(len(e["name"]) for e in entries)
        for e in entries:
            provider = e["provider"] + (f" {e['version']}" if e["version"] else "")
            click.echo(f"  {e['name'].ljust(width)}  [{provider}]" + (f"  {e['help']}" if e["help"] else ""))
            for slot, s in (e.get("slots") or {}).items():
                default = f", default {s['default']}" if s["default"] else ""
                click.echo(f"      slot {slot}: {s['kind']}{default}")
            for p in e["params"]:
                default = "required" if p["required"] else f"= {p['default']!r}"
                allowed = f" (one of {', '.join(map(str, p['choices']))})" if p["choices"] else ""
                text = f"      {p['name']}: {p['type']} {default}{allowed}"
                click.echo(text + (f"  {p['help']}" if p["help"] else ""))
    if info["failures"]:
        click.echo("plugins that failed to load:")
        for f in info["failures"]:
            module = f" (module {f['module']})" if f.get("module") else ""
            click.echo(f"  {f['plugin']}{module}: {f['error']}")


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--output", "-o", default=None, metavar="FILE", help="Where to write (default RUN_DIR/report.html).")
def report(run_dir, output):
    """Write RUN_DIR/report.html, one self-contained page."""
    from .api import report as write_report

    click.echo(str(write_report(run_dir, output)))


@main.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--out", "-o", default="docs/results", show_default=True, metavar="DIR",
              help="The folder of the results pages.")
@click.option("--readme", default=None, metavar="FILE",
              help="Also put each page's headline table into FILE, between the lines "
                   "<!-- results:BENCHMARK:begin --> and <!-- results:BENCHMARK:end -->.")
def publish(run_dirs, out, readme):
    """Write a results page per run: OUT/BENCHMARK.md, its figures, OUT/regenerate and OUT/index.md.

    Every number on a page comes from the run directory: what it answers (thresholds, the
    experiments' tables with their intervals), its figures, and how it was made (command, commit,
    date, machine, DGEMM rate, wall and CPU time).
    """
    from .api import publish as write_pages

    for path in write_pages(run_dirs, out, readme):
        click.echo(str(path))


@main.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME",
              help="A metric to compare (repeatable; default every numeric metric that differs somewhere).")
@click.option("--by", multiple=True, metavar="KEY",
              help="What to compare: experiment_id, experiment, run, a grid axis, a parameter, a slot "
                   "(its component) or slot.param; several keys (repeat --by, or comma-separated) group "
                   "by the tuple of their values, labelled v1/v2  [default: experiment_id].")
@click.option("--experiment", "-e", "experiments", multiple=True, metavar="ID",
              help="Only this experiment block (repeatable). Blocks are compared one by one unless "
                   "--by names experiment_id or experiment.")
@click.option("--baseline", default=None, metavar="GROUP", help="The group differences are taken against "
              "(default the first).")
@click.option("--ratio", is_flag=True, help="Paired ratios group / baseline (geometric mean of the "
              "per-pair ratios, bootstrap interval) instead of differences: for positive metrics that "
              "span decades.")
@click.option("--constants", is_flag=True, help="Also compare the metrics that are the same in every row at "
              "each point (N, d, P, ...), left out by default.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--width", type=click.IntRange(min=0), default=None, metavar="N",
              help="Fit the text tables into N characters, pivoting to a line per group when the groups "
                   "do not fit side by side (0: no limit) [default: the terminal's width up to 200, 100 "
                   "when not a terminal].")
@click.option("--n-boot", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Bootstrap resamples of the paired differences.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--pooled", is_flag=True, help="Add a line 'all' pooling every point.")
@click.option("--timings", is_flag=True, help="Also compare the rows' timings (wall-clock seconds, as "
              "timings.<name>); left out by default.")
def compare(run_dirs, metrics, by, experiments, baseline, ratio, constants, fmt, width, n_boot, level, pooled,
            timings):
    """Compare groups of rows side by side, with paired differences or ratios (in the grid's order)."""
    from .api import compare as compare_runs
    from .api import few_pairs_warning, format_comparisons, left_out_note

    comparisons = compare_runs(run_dirs, metrics=list(metrics), by=by, baseline=baseline,
                               n_boot=n_boot, level=level, pooled=pooled, timings=timings,
                               experiments=experiments, ratio=ratio, constants=constants)
    if not comparisons:
        raise UserError("nothing to compare: " + (left_out_note(comparisons) or "no block has two groups"))
    width = min(_terminal_width(), MAX_COMPARE_WIDTH) if width is None else width or None
    click.echo(format_comparisons(comparisons, fmt, width if fmt == "table" else None).rstrip("\n"))
    for warning in dict.fromkeys(w for c in comparisons for w in c.warnings):
        click.echo(f"warning: {warning}", err=True)
    if fmt == "csv":  # the table and markdown formats say it in their notes
        for c in comparisons:
            if c.few_pair_intervals:
                click.echo(f"warning: {few_pairs_warning(c)}", err=True)
        note = left_out_note(comparisons)
        if note:
            click.echo(f"note: {note}", err=True)


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--metric", "-m", required=True, metavar="NAME", help="The metric (y).")
@click.option("--axis", "-a", required=True, metavar="KEY", help="The grid axis or parameter (x).")
@click.option("--log", "log", is_flag=True, help="Fit log(metric) against log(axis): a power law.")
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the slope's interval.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the interval.")
@click.option("--json", "as_json", is_flag=True, help="Print the fits as JSON.")
@click.option("--plot", "plot_file", default=None, metavar="FILE",
              help="Also draw the data and the fits into FILE (.png, .svg or .pdf).")
def fit(run_dir, metric, axis, log, n_boot, level, as_json, plot_file):
    """Fit a metric against an axis, with a bootstrap interval."""
    from .api import fit as fit_run
    from .api import fits_json, format_fits

    fits, drawn = fit_run(run_dir, metric, axis, log=log, n_boot=n_boot, level=level, plot=plot_file)
    click.echo(fits_json(fits) if as_json else format_fits(fits, metric, axis))
    if drawn is not None:
        click.echo(str(drawn), err=True)


@main.command("check-plugin")
@click.argument("name")
@click.option("--kind", "kind", default=None, metavar="KIND",
              help="The component's kind, when the name is used by several kinds.")
def check_plugin(name, kind):
    """Run the conformance checks on one component (exit 1 on a failure; 2 when no component has
    the name, naming the plugins that failed to load, their modules and errors)."""
    from .api import check_plugin as check

    found = check(name, kind)
    if found.failures:
        click.echo(f"warning: {found.failures}", err=True)
    click.echo(f"{found.kind} {name} [{found.provider}]")
    for result in found.results:
        click.echo(f"  {result}")
    click.echo(f"{found.passed} passed, {found.failed} failed, {found.skipped} skipped")
    if found.failed:
        sys.exit(1)


_BENCHMARKS = {"ntk": "harness.benchmarking.ntk_speed:cli", "adam": "harness.benchmarking.adam_speed:main",
               "train": "harness.benchmarking.train_speed:main"}


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", type=click.Choice(sorted(_BENCHMARKS)))
@click.pass_context
def bench(ctx: click.Context, name: str) -> None:
    """Speed benchmarks, timed side by side against a baseline (in one process; torch in its own).

    \b
    harness bench ntk  [--sizes 234x500,504x1000] [--threads T] [--repeats R] [--markdown]
        our NTK Gram vs the plain NumPy formula, our lambda_min vs scipy's eigvalsh
        (dsyevr), interleaved; the DGEMM rate and the floors; --markdown: a Markdown table
    harness bench adam [--d 122] [--N 12000] [--threads T] [--dtypes float64,float32]
        one full-batch Adam epoch of the Figure 2 network vs PyTorch on the CPU (if installed;
        torch timed in its own process)
    harness bench train [--sizes 22x400,38x1200] [--R 1,10] [--threads T] [--repeats R]
                        [--dtype float32|float64|float64,float32]
        many small networks: batched training vs one at a time (fused kernel, NumPy engine),
        plain NumPy and torch (CPU, own process); --dtype float64,float32: both precisions side
        by side (float32: SGEMM); --blocks 64,107,160: the kernel alone

    Options after NAME go to that benchmark.
    """
    import importlib

    module, _, func = _BENCHMARKS[name].partition(":")
    getattr(importlib.import_module(module), func)(list(ctx.args))


if __name__ == "__main__":  # pragma: no cover
    main()
