"""The ``harness`` command line: a thin face over :mod:`harness.api`.

    harness run FILE [--set key.path=value ...] [--jobs N] [--timeout S] [--dry-run]
                     [--executor serial|processes|dask] [--scheduler tcp://HOST:PORT]
    harness run FILE [--name NAME] [--tag TAG ...]
    harness run --resume RUN_DIR [-j N]
    harness runs [BENCHMARK] [--tag TAG ...] [--results-dir DIR]
    harness show RUN_DIR [--experiment ID ...] [--where KEY=VALUE ...] [--columns a,b,c] [--width N]
    harness export RUN_DIR [--format csv|parquet] [-o FILE]
    harness plugins [--json]
    harness plot RUN_DIR
    harness report RUN_DIR
    harness compare RUN_DIR [RUN_DIR ...] [--metric M] [--by KEY] [--pooled] [--format table|csv|markdown]
    harness fit RUN_DIR --metric M --axis A [--log]
    harness check-plugin NAME [--kind KIND]

Wherever a RUN_DIR is accepted, ``latest`` names the newest run under the results folder
(``$HARNESS_RESULTS_DIR`` or ``results``) and ``latest:BENCHMARK`` the newest run of a benchmark.

A mistake in the input (a bad file, key, value or option) prints ``error: <message>`` on stderr
and exits with code 2, without a traceback.
"""
from __future__ import annotations

import json
import signal
import sys

import click

from .errors import UserError

EXIT_INTERRUPTED = 130


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
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
@click.option("--executor", type=click.Choice(["serial", "processes", "dask"]), default=None,
              help="Where cells run: here one by one, in --jobs worker processes, or on a Dask "
                   "cluster (default: serial for one job without --timeout, else processes).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="With --executor dask: the scheduler of an existing Dask cluster "
                   "(without it, a local cluster of --jobs worker processes is started).")
@click.option("--dry-run", is_flag=True, help="List the cells with their estimated memory and time; run nothing.")
@click.option("--recalibrate", is_flag=True,
              help="With --dry-run: measure this machine's speed again instead of using the cached "
                   "calibration (see harness.calibration; also HARNESS_RECALIBRATE=1).")
@click.option("--resume", "resume", metavar="RUN_DIR", default=None,
              help="Finish an interrupted run: only cells without a row run.")
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
def run(file, overrides, jobs, timeout, executor, scheduler, dry_run, recalibrate, resume, results_dir, quiet,
        no_figures, name, tags):
    """Run the benchmark FILE (or resume a run with --resume RUN_DIR)."""
    from . import api

    if file is None and resume is None:
        raise UserError("give a benchmark FILE to run, or --resume RUN_DIR")
    if jobs is None and resume is None:
        jobs = 1
    if dry_run:
        if resume is not None:
            raise UserError("--dry-run lists the cells of a benchmark FILE; it cannot be combined with --resume")
        if recalibrate:
            from . import calibration

            calibration.recalibrate()
        _print_plan(api.plan(file, overrides, jobs=jobs), jobs)
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
                          executor=executor, scheduler=scheduler, name=name, tags=tags)
    except api.Interrupted as exc:
        click.echo(f"interrupted: {exc.done} of {exc.total} cells finished and kept in {exc.run_dir.path}; "
                   f"finish with: harness run --resume {exc.run_dir.path}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not quiet:
        counts: dict[str, int] = {}
        for row in run_dir.read_rows():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        click.echo(f"done: {run_dir.path} ({parts or 'no rows'})", err=True)
    click.echo(str(run_dir.path))


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _fmt_bytes(n) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _fmt_seconds(s) -> str:
    if s is None:
        return "?"
    from .progress import format_seconds

    return f"{s:.2g} s" if s < 60 else format_seconds(s)


def _print_plan(entries, jobs: int) -> None:
    header = ["#", "experiment", "rep", "coords", "memory", "time"]
    table = []
    for i, e in enumerate(entries, start=1):
        cell = e["cell"]
        coords = ", ".join(f"{k}={v}" for k, v in cell.coords.items()) or "-"
        table.append([str(i), cell.experiment_id, str(cell.repetition), coords,
                      _fmt_bytes(e["memory_bytes"]), _fmt_seconds(e["seconds"])])
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    for r in [header] + table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    from .calibration import cache_path, consulted, schedule
    from .runner import threads_per_job

    known = [e["seconds"] for e in entries if e["seconds"] is not None]
    mems = [e["memory_bytes"] for e in entries if e["memory_bytes"] is not None]
    text = f"{len(entries)} cells"
    if known:
        threads = threads_per_job(jobs)
        total = sum(known) + sum(dict(((e.get("setup_key"), e.get("setup_seconds") or 0.0)
                                       for e in entries if e.get("setup_key") is not None)).values())
        text += (f"; estimated time about {_fmt_seconds(schedule(entries, jobs))} with -j {jobs} "
                 f"({threads} thread{'s' if threads > 1 else ''} per job; cells add up to {_fmt_seconds(total)})")
        if len(known) < len(entries):
            text += f" (no estimate for {len(entries) - len(known)} cells)"
    if mems:
        text += f"; memory per cell up to {_fmt_bytes(max(mems))}"
    click.echo(text)
    searched = sum(1 for e in entries if e.get("searched"))
    if searched:
        click.echo(f"({searched} of these cells are threshold searches along an expected path: the "
                   "real searches visit about as many axis values, where their results lead)")
    if consulted():
        click.echo(f"(times from rates measured on this machine, cached in {cache_path()}; "
                   "--recalibrate measures again)", err=True)
    for e in entries:
        if e["error"]:
            click.echo(f"warning: estimate failed for {e['cell'].experiment_id}: {e['error']}", err=True)
            break


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
def show(run_dir, experiments, where, columns_, width):
    """Print the summary of a run directory as a table (RUN_DIR may be latest or latest:BENCHMARK)."""
    from . import api
    from .search import format_thresholds
    from .summary import filter_lines, format_blocks

    if width is None:
        width = _terminal_width()
    cols = [c.strip() for c in columns_.split(",") if c.strip()] if columns_ is not None else None
    if columns_ is not None and not cols:
        raise UserError("--columns '': name at least one column, e.g. --columns N,rows,loss")
    result = api.load_run(run_dir)
    shown = filter_lines(result.summary, experiments, where)
    tables = format_blocks(shown, max_width=width or None, columns_=cols)  # checks --columns
    counts = result.status_counts()
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no rows"
    total = result.total
    click.echo(f"run: {result.path}")
    click.echo(f"cells: {len(result.rows)}" + (f" of {total}" if total is not None else "") + f" ({parts})")
    if result.spec_error:
        click.echo(f"warning: the run's spec no longer loads: {result.spec_error}", err=True)
    missing = result.missing
    if missing:
        click.echo(f"incomplete: {missing} cells missing; finish with: harness run --resume {result.path}")
    if shown:
        click.echo("")
        click.echo(tables)
    else:
        click.echo("(no grid point matches)" if result.summary else "(no rows yet)")
    searched = [t for t in result.thresholds if not experiments or t["experiment_id"] in experiments]
    for block_id in dict.fromkeys(t["experiment_id"] for t in searched):
        lines = [{k: v for k, v in t.items() if k not in ("experiment_id", "condition", "evaluations")}
                 for t in searched if t["experiment_id"] == block_id]
        click.echo("")
        condition = next(t["condition"] for t in searched if t["experiment_id"] == block_id)
        click.echo(f"{block_id}: threshold search ({condition}; thresholds.csv)")
        click.echo(format_thresholds(lines, max_width=width or None))


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
def plot(run_dir):
    """(Re)draw the figures of a run directory into RUN_DIR/figures."""
    from . import api

    report = api.plot(run_dir)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.written:
        for path in report.written:
            click.echo(str(path))
    else:
        click.echo("no figures written", err=True)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def _describe_plugins() -> dict:
    from .plugin_manager import get_registry

    registry = get_registry()
    kinds: dict[str, list] = {}
    versions: dict[str, str | None] = {}
    for kind, name, component, provider in registry:
        if provider not in versions:
            versions[provider] = _version(provider) if not provider.startswith("<") else None
        entry = component.describe()
        entry["provider"] = provider
        entry["version"] = versions[provider]
        slots = getattr(component, "slots", None)
        if kind == "experiment" and slots is not None:
            entry["slots"] = {s: {"kind": k, "default": d} for s, (k, d) in dict(slots).items()}
        kinds.setdefault(kind, []).append(entry)
    return {"components": kinds,
            "failures": [{"plugin": name, "error": error} for name, error in registry.failures]}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(as_json):
    """List every component by kind, with its parameters and the distribution providing it."""
    info = _describe_plugins()
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
            click.echo(f"  {f['plugin']}: {f['error']}")


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--output", "-o", default=None, metavar="FILE", help="Where to write (default RUN_DIR/report.html).")
def report(run_dir, output):
    """Write RUN_DIR/report.html, one self-contained page."""
    from .api import resolve_run
    from .report import write_report

    click.echo(str(write_report(resolve_run(run_dir), output)))


@main.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME",
              help="A metric to compare (repeatable; default every numeric metric).")
@click.option("--by", multiple=True, metavar="KEY",
              help="What to compare: experiment_id, experiment, run, a grid axis, a parameter, a slot "
                   "(its component) or slot.param (one key)  [default: experiment_id].")
@click.option("--baseline", default=None, metavar="GROUP", help="The group differences are taken against "
              "(default the first).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--n-boot", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Bootstrap resamples of the paired differences.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--pooled", is_flag=True, help="Add a line 'all' pooling every point.")
def compare(run_dirs, metrics, by, baseline, fmt, n_boot, level, pooled):
    """Compare groups of rows side by side, with paired differences (in the grid's order)."""
    from .compare import compare as compare_runs, few_pairs_warning, format_comparisons, load_runs, one_key

    key = one_key(by)  # a repeated --by is refused before anything is loaded
    comparisons = compare_runs(load_runs(run_dirs), metrics=list(metrics), by=key, baseline=baseline,
                               n_boot=n_boot, level=level, pooled=pooled)
    click.echo(format_comparisons(comparisons, fmt).rstrip("\n"))
    if fmt == "csv":  # the table and markdown formats say it in their notes
        for c in comparisons:
            if c.few_pair_intervals:
                click.echo(f"warning: {few_pairs_warning(c)}", err=True)


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
    from .compare import load_runs
    from .fits import check_plot_path, fit_rows, format_fits, grid_keys

    from .api import resolve_run

    if plot_file:
        check_plot_path(plot_file)
    run_dir = str(resolve_run(run_dir))
    (_, rows), = load_runs([run_dir])
    keys = grid_keys(run_dir)
    fits = fit_rows(rows, metric, axis, log=log, grid_keys=keys, n_boot=n_boot, level=level)
    if as_json:
        from .fits import fits_json

        click.echo(fits_json(fits))
    else:
        click.echo(format_fits(fits, metric, axis))
    if plot_file:
        from .fits import save_fit_plot

        click.echo(str(save_fit_plot(fits, metric, axis, log, run_dir, plot_file)), err=True)


@main.command("check-plugin")
@click.argument("name")
@click.option("--kind", "kind", default=None, metavar="KIND",
              help="The component's kind, when the name is used by several kinds.")
def check_plugin(name, kind):
    """Run the conformance checks on one component (exit 1 on a failure)."""
    from .components import KINDS
    from .conformance import check_component
    from .errors import suggest
    from .plugin_manager import get_registry

    registry = get_registry()
    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind {kind!r}: not a plugin kind{suggest(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    kinds = [kind] if kind else [k for k in KINDS if name in registry.names(k)]
    if kind and name not in registry.names(kind):
        registry.get(kind, name)  # raises a PluginError with close names
    if not kinds:
        every = sorted({n for k in KINDS for n in registry.names(k)})
        raise UserError(f"no component named {name!r}{suggest(name, every)}; list them with: harness plugins")
    if len(kinds) > 1:
        raise UserError(f"{name!r} is registered as {' and '.join(kinds)}; choose one with --kind")
    kind = kinds[0]
    click.echo(f"{kind} {name} [{registry.provider_of(kind, name)}]")
    results = check_component(kind, name, registry)
    for result in results:
        click.echo(f"  {result}")
    failed = sum(1 for r in results if not r.passed)
    skipped = sum(1 for r in results if r.skipped)
    click.echo(f"{len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    if failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()


_BENCHMARKS = {"ntk": "harness.benchmarking.ntk_speed:cli", "adam": "harness.benchmarking.adam_speed:main"}


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", type=click.Choice(sorted(_BENCHMARKS)))
@click.pass_context
def bench(ctx: click.Context, name: str) -> None:
    """Speed benchmarks, timed side by side against a baseline in one process.

    \b
    harness bench ntk  [--sizes 256x1024,512x2048] [--threads T] [--repeats R]
        our NTK Gram vs plain NumPy/BLAS vs the explicit Jacobian product; GFLOP/s against
        the measured DGEMM rate; peak memory; lambda_min solver vs eigvalsh
    harness bench adam [--d 122] [--N 12000] [--threads T] [--dtypes float64,float32]
        one full-batch Adam epoch of the Figure 2 network vs PyTorch on the CPU (if installed)

    Options after NAME go to that benchmark.
    """
    import importlib

    module, _, func = _BENCHMARKS[name].partition(":")
    getattr(importlib.import_module(module), func)(list(ctx.args))
