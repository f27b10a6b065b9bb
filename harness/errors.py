"""Errors the harness reports to users.

A :class:`UserError` is a mistake in the user's input (a benchmark file, a ``--set`` override, a
command-line argument). The CLI prints its message on one line and exits with code 2; it never
shows a traceback for it. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable


class UserError(Exception):
    """A mistake in the user's input: printed without traceback, exit code 2."""

    exit_code = 2


class SpecError(UserError):
    """A bad value in a benchmark file, located by file and key path.

    ``SpecError(source, key, value, problem)`` renders as
    ``benchmarks/x.toml: experiments.fig1.grid.N = -3: must be >= 1``.
    """

    def __init__(self, source: str | None, key: str | None, value: Any = ..., problem: str = ""):
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source or "<spec>"
        if self.key:
            where += f": {self.key}"
            if self.value is not ...:
                where += f" = {_short_repr(self.value)}"
        return shorten(f"{where}: {self.problem}" if self.problem else where)


MAX_MESSAGE = 400
"""Characters of an error message (longer ones are cut, ending in ``...``)."""


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line of at most ``limit`` characters (every line break, ``\r`` and the
    Unicode separators too, becomes a space)."""
    text = " ".join(str(text).splitlines()) if str(text) else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PluginError(UserError):
    """A plugin that cannot be loaded or a component name that does not exist."""


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidates, or ``""``."""
    close = difflib.get_close_matches(str(name), sorted(candidates), n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class RunStopped(UserError):
    """A run that had to stop before it finished, through no fault of its cells (the disk is
    full, no Dask worker is left): the finished rows are kept and ``harness run --resume RUN_DIR``
    finishes it. The CLI prints the message on one line and exits with code 4."""

    exit_code = 4
