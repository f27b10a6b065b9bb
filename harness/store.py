"""The run directory: where a run's spec, environment, rows, summary and figures are written.

Layout of ``results/<benchmark>/<YYYYmmdd-HHMMSS>-<6 hex>/``:

- ``spec.toml``: the resolved spec (every default filled in); a resume reads it back;
- ``env.json``: package versions, CPU, BLAS, git state, command line, jobs and threads, and one
  entry per session (the first run and each resume);
- ``rows.jsonl``: one JSON object per finished cell, appended, flushed and fsync'ed as each
  cell finishes, so a run killed at any moment keeps every finished row;
- ``summary.csv``: one line per grid point (:mod:`harness.summary`);
- ``figures/``: PNG and SVG figures;
- ``meta.json``: the run's ``name`` and ``tags`` (``harness run --name/--tag``) and when it was
  created. With a name the directory is ``<YYYYmmdd-HHMMSS>-<6 hex>-<name>``.

A run directory can be named by its path, or as ``latest`` (the newest run under the results
folder, any benchmark) or ``latest:BENCHMARK`` (the newest run of that benchmark); see
:func:`resolve_run_path`. The results folder is ``$HARNESS_RESULTS_DIR`` or ``results``.

A kill can tear only the last line of ``rows.jsonl`` (the bytes after its last newline);
:meth:`RunDir.read_rows` ignores it and :meth:`RunDir.repair` cuts it off before a resume
appends again.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import UserError

SPEC_FILE = "spec.toml"
ENV_FILE = "env.json"
ROWS_FILE = "rows.jsonl"
SUMMARY_FILE = "summary.csv"
FIGURES_DIR = "figures"
META_FILE = "meta.json"
RESULTS_ENV = "HARNESS_RESULTS_DIR"
"""Environment variable naming the results folder (default ``results``)."""
LATEST = "latest"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STAMP = re.compile(r"^(\d{8}-\d{6})-[0-9a-f]{6}(?:-|$)")


class RunDir:
    """One run directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._rows_file = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ------------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def env_path(self) -> Path:
        return self.path / ENV_FILE

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def figures_dir(self) -> Path:
        return self.path / FIGURES_DIR

    # -- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, results_dir: str | os.PathLike, name: str, label: str | None = None) -> "RunDir":
        """A new, empty run directory ``<results_dir>/<name>/<YYYYmmdd-HHMMSS>-<6 hex>``, with
        ``-<label>`` appended when a label (the run's ``--name``) is given."""
        parent = Path(results_dir) / name
        suffix = f"-{check_label(label)}" if label else ""
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for _ in range(100):
                path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}{suffix}"
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                run = cls(path)
                run.rows_path.touch()
                return run
        except OSError as exc:
            raise UserError(f"cannot create a run directory under {parent}: {exc.strerror or exc}") from None
        raise UserError(f"cannot create a run directory under {parent}: every name is taken")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run directory; a :class:`UserError` if ``path`` is not one. ``latest`` and
        ``latest:BENCHMARK`` name the newest run (:func:`resolve_run_path`)."""
        p = resolve_run_path(path)
        if not p.exists():
            raise UserError(f"{p}: no such run directory")
        if not p.is_dir():
            raise UserError(f"{p}: not a directory (expected a run directory with {SPEC_FILE} and {ROWS_FILE})")
        if not (p / SPEC_FILE).is_file():
            raise UserError(f"{p}: not a run directory (no {SPEC_FILE})")
        return cls(p)

    # -- writing -----------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` atomically (a temporary file, fsync'ed, then renamed)."""
        target = self.path / name
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.path)
        return target

    def write_spec(self, toml_text: str) -> None:
        self.write_text(SPEC_FILE, toml_text)

    def read_env(self) -> dict[str, Any]:
        try:
            return json.loads(self.env_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` (``{}`` when absent or unreadable)."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def write_meta(self, name: str | None = None, tags: Iterable[str] = ()) -> None:
        """Record the run's name and tags in ``meta.json``."""
        meta = {"name": name, "tags": list(tags),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.write_text(META_FILE, json.dumps(meta, indent=2) + "\n")

    def write_env(self, env: Mapping[str, Any]) -> None:
        self.write_text(ENV_FILE, json.dumps(env, indent=2, sort_keys=False, default=str) + "\n")

    def add_session(self, env: Mapping[str, Any], session: Mapping[str, Any]) -> None:
        """Record the environment of the first run, and append ``session`` (this run or resume)."""
        current = self.read_env() or dict(env)
        current.setdefault("sessions", []).append(dict(session))
        self.write_env(current)

    def append_row(self, row: Mapping[str, Any]) -> None:
        """Append one row as a line of ``rows.jsonl``; it is on disk when this returns."""
        line = json.dumps(row, default=str, allow_nan=True) + "\n"
        if self._rows_file is None:
            self._rows_file = open(self.rows_path, "a", encoding="utf-8")
        self._rows_file.write(line)
        self._rows_file.flush()
        os.fsync(self._rows_file.fileno())

    def close(self) -> None:
        if self._rows_file is not None:
            self._rows_file.close()
            self._rows_file = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------
    def read_rows(self) -> list[dict[str, Any]]:
        """Every complete row in ``rows.jsonl``, in the order written (a torn last line is
        ignored). A later row for the same cell replaces an earlier one."""
        rows, _ = self._parse_rows()
        return rows

    def repair(self) -> int:
        """Cut a torn last line off ``rows.jsonl``; returns the number of bytes removed."""
        self.close()
        if not self.rows_path.exists():
            self.rows_path.touch()
            return 0
        _, good_bytes = self._parse_rows()
        size = self.rows_path.stat().st_size
        if size > good_bytes:
            with open(self.rows_path, "r+b") as f:
                f.truncate(good_bytes)
                f.flush()
                os.fsync(f.fileno())
        return size - good_bytes

    def finished_ids(self) -> set[str]:
        return {row["cell_id"] for row in self.read_rows()}

    def _parse_rows(self) -> tuple[list[dict[str, Any]], int]:
        try:
            data = self.rows_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise UserError(f"cannot read {self.rows_path}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1  # bytes after the last newline are a torn line
        by_id: dict[str, dict[str, Any]] = {}
        for number, raw in enumerate(data[:end].splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                cell_id = row["cell_id"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{self.rows_path}:{number}: not a result row (invalid JSON or no cell_id); "
                                "fix or delete that line") from None
            by_id.pop(cell_id, None)
            by_id[cell_id] = row
        return list(by_id.values()), end

    # -- summary -----------------------------------------------------------------------------
    def write_summary(self, rows: Iterable[Mapping[str, Any]], order: Iterable[str] | None = None) -> Path:
        from .summary import summarize, to_csv

        return self.write_text(SUMMARY_FILE, to_csv(summarize(rows, order)))


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
    from .errors import suggest

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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
