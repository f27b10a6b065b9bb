# Length: about 640 lines in one module because the run directory's format: every file of it is
# written, locked, repaired and read together.
"""The run directory: where a run's spec, environment, rows, summary and figures are written.

Layout of ``results/<benchmark>/<YYYYmmdd-HHMMSS>-<6 hex>/``:

- ``spec.toml``: the resolved spec (every default filled in); a resume reads it back;
- ``env.json``: package versions, CPU, BLAS, git state, command line, jobs and threads, and one
  entry per session (the first run and each resume);
- ``rows.jsonl``: one JSON object per finished cell, appended, flushed and fsync'ed as each
  cell finishes, so a run killed at any moment keeps every finished row;
- ``summary.csv``: one line per grid point (:mod:`harness.results.summary`);
- ``figures/``: PNG and SVG figures;
- ``meta.json``: the run's ``name`` and ``tags`` (``harness run --name/--tag``) and when it was
  created. With a name the directory is ``<YYYYmmdd-HHMMSS>-<6 hex>-<name>``;
- ``identity.json``: what the cells were made from (the spec's checksum and text, each
  component's version); ``spec.toml``'s last line holds the same checksum. A resume of an
  edited spec or with other component versions is refused, naming what changed;
- ``run.lock``: present while a run or resume writes the directory (pid, host, start time,
  command); a second writer is refused (:meth:`RunDir.lock`).

``rows.jsonl`` lines that are JSON but not result rows (missing keys, wrong types) are reported
(``warning: rows.jsonl:LINE: ...``) and skipped by everything that reads rows.

A run directory can be named by its path, or as ``latest`` (the newest run under the results
folder, any benchmark) or ``latest:BENCHMARK`` (the newest run of that benchmark); see
:func:`resolve_run_path`. The results folder is ``$HARNESS_RESULTS_DIR`` or ``results``.

A kill can tear only the last line of ``rows.jsonl`` (the bytes after its last newline);
:meth:`RunDir.read_rows` ignores it and :meth:`RunDir.repair` cuts it off before a resume
appends again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import UserError
from harness.runner.layout import (  # noqa: F401  (the run directory's file names, used with RunDir)
    ENV_FILE,
    FIGURES_DIR,
    IDENTITY_FILE,
    LOCK_FILE,
    META_FILE,
    ROWS_FILE,
    SPEC_FILE,
    SUMMARY_FILE,
    check_benchmark_name,
    check_label,
    resolve_run_path,
)
from harness.spec.row import Row, row_from_json, row_problem, row_to_json


class RunDir:
    """One run directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._rows_file: Any = None
        self._lock_fd: int | None = None
        self.stale_lock: dict[str, Any] | None = None
        """The holder of a stale lock :meth:`lock` took over (``None``: there was none)."""
        self.bad_rows: list[str] = []
        """The lines of ``rows.jsonl`` the last read skipped (wrong shape), one message each."""

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
        ``-<label>`` appended when a label (the run's ``--name``) is given. A benchmark ``name``
        that is not one plain directory name (``..``, a path) is refused: run directories stay
        inside ``results_dir``."""
        parent = Path(results_dir) / check_benchmark_name(name)  # one plain name: never outside
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
        if not isinstance(path, (str, os.PathLike)):
            raise UserError(f"a run directory is a path (or latest, latest:BENCHMARK), got {path!r}")
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
        """Write ``name`` atomically: a temporary file of a name no other writer uses (this
        process's id and random digits), fsync'ed, then renamed over ``name``. A failed write
        (a full disk) leaves ``name`` as it was and raises :class:`~harness.errors.RunStopped`."""
        target = self.path / name
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise storage_error(target, exc) from None
        _fsync_dir(self.path)
        return target

    def write_spec(self, toml_text: str) -> None:
        """Write ``spec.toml``: ``toml_text`` and a last comment line holding its checksum
        (:func:`spec_checksum`), by which a resume sees an edited spec."""
        body = toml_text if toml_text.endswith("\n") else toml_text + "\n"
        self.write_text(SPEC_FILE, body + f"{CHECKSUM_PREFIX}{spec_checksum(body)} (of the lines above)\n")

    def read_spec_text(self) -> tuple[str, str | None]:
        """``(text, checksum)``: ``spec.toml`` without its checksum line, and the checksum that
        line records (``None`` when there is none: an older run, or the line was removed)."""
        try:
            text = self.spec_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {self.spec_path}: {exc}") from None
        head, _, last = text.rstrip("\n").rpartition("\n")
        if last.startswith(CHECKSUM_PREFIX):
            words = last[len(CHECKSUM_PREFIX):].split()
            return (head + "\n" if head else ""), (words[0] if words else "")
        return text, None

    def write_identity(self, identity: Mapping[str, Any]) -> None:
        """Record what the run's cells were made from (``identity.json``: the spec's checksum
        and text, the components' versions), for a resume to compare with."""
        self.write_text(IDENTITY_FILE, json.dumps(dict(identity), indent=1, sort_keys=True, default=str) + "\n")

    def read_identity(self) -> dict[str, Any]:
        """``identity.json`` (``{}`` when absent or unreadable: an older run)."""
        try:
            data = json.loads((self.path / IDENTITY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # -- the lock: one writer at a time ------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def lock(self, command: str | None = None) -> None:
        """Make this process the run directory's only writer until :meth:`unlock`.

        ``run.lock`` holds the writer's pid, host, start time and command, and this process
        holds an exclusive ``flock`` on it (the kernel drops it when the process dies, however
        it dies). A lock held by a live process raises :class:`UserError` naming it. A lock
        left behind by a process that is gone is stale: on this host (the flock is free) it is
        taken over; a lock written on another host cannot be checked from here, so it is
        refused with the command that removes it."""
        import fcntl

        if self._lock_fd is not None:
            return
        if self.lock_path.is_dir():
            raise UserError(f"{self.lock_path} is a directory, not a lock file: remove it (rmdir "
                            f"{self.lock_path}) and run the command again")
        for _ in range(10):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise storage_error(self.lock_path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_lock(fd)
                os.close(fd)
                raise UserError(self._locked_message(holder, alive=True)) from None
            try:  # the file we locked is still the lock file (not one its holder just removed)
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = _read_lock(fd)
            host = socket.gethostname()
            if holder and holder.get("host") not in (None, host):
                os.close(fd)
                raise UserError(self._locked_message(holder, alive=None))
            if holder and _same_process_alive(holder):  # a file system without working flock
                os.close(fd)
                raise UserError(self._locked_message(holder, alive=True))
            info = {"pid": os.getpid(), "host": host, "pid_start": _process_start(os.getpid()),
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": command or " ".join(sys.argv)}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                raise storage_error(self.lock_path, exc) from None
            self._lock_fd = fd
            self.stale_lock = holder or None
            return
        raise UserError(f"{self.lock_path}: cannot take the lock (it keeps changing); is another "
                        "harness process starting on this run directory?")

    def unlock(self) -> None:
        """Give the lock up (remove ``run.lock``); nothing when this process does not hold it."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                os.unlink(self.lock_path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _locked_message(self, holder: Mapping[str, Any], alive: bool | None) -> str:
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
               f"{holder.get('started', '?')}" if holder else "another process")
        if holder.get("command"):
            who += f" ({holder['command']})"
        if alive:
            return (f"{self.path} is being written by {who}: wait for it to finish (one writer at a "
                    f"time). If that process is gone, remove {self.lock_path} and resume again")
        return (f"{self.path} is locked by {who}, on another host that this one cannot check: if no "
                f"harness process runs there any more, remove the stale lock with: rm {self.lock_path}")

    def __del__(self) -> None:
        try:
            self.unlock()
        except Exception:
            pass

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
        """Append one row as a line of ``rows.jsonl``; it is on disk when this returns. The line is
        strict JSON: NaN and infinite numbers are written as ``null`` and named in the row's
        ``nonfinite`` (:func:`harness.spec.row.strict_row`); files written before, with bare
        ``NaN``/``Infinity`` tokens, still read back."""
        line = row_to_json(row) + "\n"
        data = line.encode("utf-8")
        try:
            if self._rows_file is None:
                self._rows_file = open(self.rows_path, "ab", buffering=0)
            fd = self._rows_file.fileno()
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # no half-written row left behind
                    os.ftruncate(fd, size)
                raise
        except OSError as exc:
            self.close()
            raise storage_error(self.rows_path, exc) from None

    def close(self) -> None:
        if self._rows_file is not None:
            f, self._rows_file = self._rows_file, None
            with contextlib.suppress(OSError):
                f.close()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------
    def read_rows(self) -> list[Row]:
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

    def _parse_rows(self) -> tuple[list[Row], int]:
        try:
            data = self.rows_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as exc:
            raise UserError(f"cannot read {self.rows_path}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1  # bytes after the last newline are a torn line
        by_id: dict[str, Row] = {}
        bad: list[str] = []
        for number, raw in enumerate(data[:end].splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = row_from_json(raw)
            except ValueError:
                raise UserError(f"{self.rows_path}:{number}: not a result row (invalid JSON); "
                                "fix or delete that line") from None
            problem = row_problem(row)
            if problem is not None:
                bad.append(f"{self.rows_path}:{number}: skipped, not a result row ({problem})")
                continue
            cell_id = row["cell_id"]
            by_id.pop(cell_id, None)
            by_id[cell_id] = row
        self.bad_rows = bad
        _report_bad_rows(bad)
        return list(by_id.values()), end

    # -- summary -----------------------------------------------------------------------------


_REPORTED: set[str] = set()


def _report_bad_rows(messages: list[str]) -> None:
    """Print each skipped line once per process (``warning: FILE:LINE: ...`` on stderr)."""
    new = [m for m in messages if m not in _REPORTED]
    _REPORTED.update(new)
    for m in new[:10]:
        sys.stderr.write(f"warning: {m}\n")
    if len(new) > 10:
        sys.stderr.write(f"warning: ... and {len(new) - 10} more lines that are not result rows\n")
    if new:
        sys.stderr.flush()


def storage_error(path: Path, exc: OSError) -> UserError:
    """The error of a failed write of ``path``: a full disk (or quota) is a
    :class:`~harness.errors.RunStopped` (exit 4: free some space and resume); anything else (a
    read-only or not writable directory, a directory where a file should be) is a
    :class:`UserError` (exit 2: resuming would not help until it is fixed)."""
    import errno

    from harness.errors import RunStopped

    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RunStopped(f"cannot write {path}: {why} (free some space)")
    return UserError(f"cannot write {path}: {why}; make it writable (or its directory) and run the command again")


CHECKSUM_PREFIX = "# harness spec checksum: sha256:"
"""The last line of a run's ``spec.toml`` starts so (:meth:`RunDir.write_spec`)."""


def spec_checksum(text: str) -> str:
    """The SHA-256 (hex) of a spec's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_lock(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or ``None``."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, ValueError, IndexError, TypeError):
        return None


def _same_process_alive(holder: Mapping[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` (this host) still runs: its pid exists and
    started when the lock says (a reused pid is another process)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists (another user's)
    recorded, now = holder.get("pid_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


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
