"""Progress of a run on stderr: cells done, failures, elapsed time and time left.

On a terminal a bar is redrawn in place; otherwise (a log file, CI) a plain line is printed every
``interval`` seconds and at the end. ``quiet=True`` prints nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO

LONG_SECONDS = 1e7
"""From this many seconds on (about 4 months), a time is written in scientific notation."""


def format_seconds(seconds: float | None) -> str:
    """``1:02:03``, ``4:05``; a time of :data:`LONG_SECONDS` or more (or infinite) as ``1.2e+08 s``."""
    if seconds is None:
        return "?"
    if not seconds < LONG_SECONDS:
        return f"{seconds:.3g} s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts finished rows; ``done`` starts at the rows a resumed run already has."""

    def __init__(self, total: int, done: int = 0, failures: int = 0, quiet: bool = False,
                 stream: TextIO | None = None, interval: float = 10.0, width: int = 30) -> None:
        self.total = total
        self.done = done
        self.failures = failures
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.width = width
        self.start = time.monotonic()
        self._done_at_start = done
        self._last_print: float | None = None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False
        self._printed_done: int | None = None  # the count of the last plain line printed
        self._closed = False

    def update(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        if row.get("status") not in ("ok", "skipped"):
            self.failures += 1
        self._show()

    def eta(self) -> float | None:
        ran = self.done - self._done_at_start
        if ran <= 0:
            return None
        return (time.monotonic() - self.start) / ran * max(0, self.total - self.done)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        text = f"{self.done}/{self.total} cells"
        if self.failures:
            text += f", {self.failures} not ok"
        return text + f", {format_seconds(elapsed)} elapsed, {format_seconds(self.eta())} left"

    def _show(self, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self._tty:
            filled = int(self.width * self.done / self.total) if self.total else self.width
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
            self._drawn = True
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif final and self._printed_done == self.done:
            return  # the last line printed already says where the run ended
        elif final or self._last_print is None or now - self._last_print >= self.interval:
            self._last_print = now
            self._printed_done = self.done
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Print the final state once (ends the bar's line on a terminal); a second call prints
        nothing."""
        if self._closed:
            return
        self._closed = True
        self._show(final=True)
