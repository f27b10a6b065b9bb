"""The layout of the results: the files of a run directory, where run directories live, the
names and labels they may have, and finding runs by benchmark or resolving ``latest`` and
partial names."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterable

from harness.errors import UserError

SPEC_FILE = "spec.toml"
ENV_FILE = "env.json"
ROWS_FILE = "rows.jsonl"
SUMMARY_FILE = "summary.csv"
FIGURES_DIR = "figures"
META_FILE = "meta.json"
IDENTITY_FILE = "identity.json"
LOCK_FILE = "run.lock"
RESULTS_ENV = "HARNESS_RESULTS_DIR"
"""Environment variable naming the results folder (default ``results``)."""


LATEST = "latest"


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_STAMP = re.compile(r"^(\d{8}-\d{6})-[0-9a-f]{6}(?:-|$)")


_BENCHMARK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_benchmark_name(name: str) -> str:
    """``name`` if it can be a benchmark's folder under the results folder (one plain name: 1 to
    100 letters, digits, '_', '-', '.', starting with a letter or digit; never ``.`` or ``..``)."""
    if not isinstance(name, str) or not _BENCHMARK.match(name):
        raise UserError(f"benchmark name {name!r}: use 1 to 100 letters, digits, '_', '-' and '.', starting "
                        "with a letter or digit (it names the folder under the results folder)")
    return name


def check_label(label: str) -> str:
    """``label`` if it can be a run's ``--name`` (it becomes part of the directory name)."""
    if not isinstance(label, str) or not _LABEL.match(label) or label == LATEST:
        raise UserError(f"--name {label!r}: use 1 to 64 letters, digits, '.', '_' and '-', starting with a "
                        f"letter or digit (and not {LATEST!r})")
    return label


def check_tags(tags: Iterable[str]) -> list[str]:
    """The run's ``--tag`` values: non-empty, one line each, without commas; duplicates dropped."""
    out: list[str] = []
    for tag in tags:
        text = tag.strip() if isinstance(tag, str) else tag
        if not isinstance(text, str) or not text or "\n" in text or "," in text or len(text) > 100:
            raise UserError(f"--tag {tag!r}: a tag is 1 to 100 characters on one line, without commas")
        if text not in out:
            out.append(text)
    return out


def default_results_dir() -> Path:
    """``$HARNESS_RESULTS_DIR``, else ``results`` (relative to the working directory)."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def run_sort_key(path: Path) -> tuple[str, int]:
    """Oldest first: the directory name's timestamp, then when its ``spec.toml`` was written."""
    match = _STAMP.match(path.name)
    try:
        mtime = (path / SPEC_FILE).stat().st_mtime_ns
    except OSError:
        mtime = 0
    stamp = match.group(1) if match else time.strftime("%Y%m%d-%H%M%S", time.localtime(mtime / 1e9))
    return stamp, mtime


def benchmarks(results_dir: str | os.PathLike | None = None) -> list[str]:
    """The benchmarks with at least one run directory under ``results_dir``."""
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(_run_dirs(p)))


def _run_dirs(parent: Path) -> list[Path]:
    try:
        return [p for p in parent.iterdir() if p.is_dir() and (p / SPEC_FILE).is_file()]
    except OSError:
        return []


def find_runs(results_dir: str | os.PathLike | None = None, benchmark: str | None = None) -> list[Path]:
    """The run directories under ``results_dir`` (of one ``benchmark``, or all), oldest first.

    An unknown benchmark is a :class:`UserError` naming the known ones; a missing results
    folder gives no runs."""
    from harness.errors import suggest

    root = Path(results_dir) if results_dir is not None else default_results_dir()
    if benchmark is not None:
        known = benchmarks(root)
        if benchmark not in known:
            raise UserError(f"no runs of benchmark {benchmark!r} under {root}{suggest(benchmark, known)}; "
                            f"benchmarks with runs: {', '.join(known) or 'none'}")
        paths = _run_dirs(root / benchmark)
    else:
        paths = [p for b in benchmarks(root) for p in _run_dirs(root / b)]
    return sorted(paths, key=run_sort_key)


def resolve_run_path(path: str | os.PathLike, results_dir: str | os.PathLike | None = None) -> Path:
    """``path`` as a run directory path: an existing path as it is; ``latest`` as the newest run
    under the results folder (any benchmark); ``latest:BENCHMARK`` as the newest run of
    ``BENCHMARK``. Anything else is returned unchanged (:meth:`RunDir.open` checks it)."""
    text = os.fspath(path)
    p = Path(text)
    if p.exists() or not (text == LATEST or text.startswith(LATEST + ":")):
        return p
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    benchmark = text[len(LATEST) + 1:] or None if text != LATEST else None
    if text != LATEST and benchmark is None:
        raise UserError(f"{text!r}: write latest (the newest run) or latest:BENCHMARK")
    runs = find_runs(root, benchmark)
    if not runs:
        raise UserError(f"{text!r}: no run directories under {root} (set {RESULTS_ENV} to look elsewhere)")
    return runs[-1]
