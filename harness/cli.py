"""The ``harness`` command line: a thin face over :mod:`harness.api`.

    harness run FILE [--set key.path=value ...] [--jobs N] [--timeout S] [--dry-run]
                     [--executor serial|processes|dask] [--scheduler tcp://HOST:PORT]
    harness run --resume RUN_DIR
    harness show RUN_DIR
    harness plugins [--json]
    harness plot RUN_DIR
    harness report RUN_DIR
    harness compare RUN_DIR [RUN_DIR ...] [--metric M] [--by KEY] [--format table|csv|markdown]
    harness fit RUN_DIR --metric M --axis A [--log]
    harness check-plugin NAME [--kind KIND]

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
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes running cells in parallel.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop a cell after this many seconds (its row gets status timeout).")
@click.option("--executor", type=click.Choice(["serial", "processes", "dask"]), default=None,
              help="Where cells run: here one by one, in --jobs worker processes, or on a Dask "
                   "cluster (default: serial for one job without --timeout, else processes).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="With --executor dask: the scheduler of an existing Dask cluster "
                   "(without it, a local cluster of --jobs worker processes is started).")
@click.option("--dry-run", is_flag=True, help="List the cells with their estimated memory and time; run nothing.")
@click.option("--resume", "resume", metavar="RUN_DIR", default=None,
              help="Finish an interrupted run: only cells without a row run.")
@click.option("--results-dir", default="results", show_default=True, metavar="DIR",
              help="Where run directories are created (DIR/<benchmark>/<timestamp-id>).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--no-figures", is_flag=True, help="Do not draw figures at the end.")
def run(file, overrides, jobs, timeout, executor, scheduler, dry_run, resume, results_dir, quiet, no_figures):
    """Run the benchmark FILE (or resume a run with --resume RUN_DIR)."""
    from . import api

    if file is None and resume is None:
        raise UserError("give a benchmark FILE to run, or --resume RUN_DIR")
    if dry_run:
        if resume is not None:
            raise UserError("--dry-run lists the cells of a benchmark FILE; it cannot be combined with --resume")
        _print_plan(api.plan(file, overrides), jobs)
        return
    try:  # a scheduler's SIGTERM stops the run as cleanly as Ctrl-C
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not in the main thread
        previous = None
    try:
        run_dir = api.run(file, overrides=overrides, jobs=jobs, timeout=timeout, resume=resume,
                          results_dir=results_dir, progress=not quiet, figures=not no_figures,
                          executor=executor, scheduler=scheduler)
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
    known = [e["seconds"] for e in entries if e["seconds"] is not None]
    mems = [e["memory_bytes"] for e in entries if e["memory_bytes"] is not None]
    total = sum(known)
    text = f"{len(entries)} cells"
    if known:
        text += (f"; estimated time {_fmt_seconds(total)} serial, about {_fmt_seconds(total / jobs)} "
                 f"with --jobs {jobs}")
        if len(known) < len(entries):
            text += f" (no estimate for {len(entries) - len(known)} cells)"
    if mems:
        text += f"; memory per cell up to {_fmt_bytes(max(mems))}"
    click.echo(text)
    for e in entries:
        if e["error"]:
            click.echo(f"warning: estimate failed for {e['cell'].experiment_id}: {e['error']}", err=True)
            break


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
def show(run_dir):
    """Print the summary of a run directory as a table."""
    from . import api
    from .summary import format_table

    result = api.load_run(run_dir)
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
    blocks: dict[str, list] = {}
    for line in result.summary:
        blocks.setdefault(line["experiment_id"], []).append(line)
    for block_id, lines in blocks.items():
        click.echo("")
        click.echo(f"{block_id} ({lines[0]['experiment']})")
        click.echo(format_table(lines))
    if not blocks:
        click.echo("(no rows yet)")


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
    from .report import write_report

    click.echo(str(write_report(run_dir, output)))


@main.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME",
              help="A metric to compare (repeatable; default every numeric metric).")
@click.option("--by", default="experiment_id", show_default=True, metavar="KEY",
              help="What to compare: experiment_id, experiment, run, a grid axis, a parameter, a slot "
                   "(its component) or slot.param.")
@click.option("--baseline", default=None, metavar="GROUP", help="The group differences are taken against "
              "(default the first).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--n-boot", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Bootstrap resamples of the paired differences.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
def compare(run_dirs, metrics, by, baseline, fmt, n_boot, level):
    """Compare groups of rows side by side, with paired differences."""
    from .compare import compare as compare_runs, format_comparisons, load_runs

    comparisons = compare_runs(load_runs(run_dirs), metrics=list(metrics), by=by, baseline=baseline,
                               n_boot=n_boot, level=level)
    click.echo(format_comparisons(comparisons, fmt).rstrip("\n"))


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

    if plot_file:
        check_plot_path(plot_file)
    (_, rows), = load_runs([run_dir])
    keys = grid_keys(run_dir)
    fits = fit_rows(rows, metric, axis, log=log, grid_keys=keys, n_boot=n_boot, level=level)
    if as_json:
        click.echo(json.dumps([{"experiment_id": g.experiment_id, "fixed": g.fixed,
                                "fit": g.fit.as_dict() if g.fit else None, "problem": g.problem or None}
                               for g in fits], indent=2, default=str))
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
