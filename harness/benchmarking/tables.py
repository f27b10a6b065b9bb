"""Tables of the speed benchmarks: aligned text for the terminal, Markdown for the docs.

A table is a list of row dicts and a list of :class:`Column` (which key, its title, how its
value is formatted); a missing or ``None`` value prints as ``-``. Both formats show the same
cells, so a Markdown page generated with ``--markdown`` says exactly what the terminal said.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Column", "cells", "text_table", "markdown_table", "write_markdown", "check_writable"]

MISSING = "-"


@dataclass(frozen=True)
class Column:
    """``key`` of the row dict, ``title`` of the column, ``fmt``: a format string such as
    ``"{:.3f}"`` or a callable from the value to its text."""

    key: str
    title: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, row: Mapping[str, Any]) -> str:
        value = row.get(self.key)
        if value is None:
            return MISSING
        return self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


def cells(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    """The titles, then one list of rendered cells per row."""
    return [[c.title for c in columns]] + [[c.render(r) for c in columns] for r in rows]


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Right-aligned columns separated by two spaces, titles on the first line."""
    table = cells(rows, columns)
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)).rstrip() for line in table)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column],
                   notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned), preceded by ``notes`` (one
    paragraph each: what was measured, on what machine)."""
    table = cells(rows, columns)
    lines = [f"{note}\n" for note in notes]
    lines.append("| " + " | ".join(_escape(t) for t in table[0]) + " |")
    lines.append("|" + "|".join("---:" if _numeric(table, i) else "---" for i in range(len(columns))) + "|")
    lines += ["| " + " | ".join(_escape(c) for c in line) + " |" for line in table[1:]]
    return "\n".join(lines)


def _numeric(table: list[list[str]], i: int) -> bool:
    """Whether every body cell of column ``i`` reads as a number (a trailing ``x`` or ``%``
    allowed), so that it is right-aligned."""
    values = [line[i] for line in table[1:] if line[i] != MISSING]
    if not values:
        return False
    for v in values:
        try:
            float(v.rstrip("x%"))
        except ValueError:
            return False
    return True


def write_markdown(path: str, text: str) -> None:
    """Write ``text`` and a final newline to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def check_writable(path: str) -> str | None:
    """Why ``path`` cannot be written (a message), or None: checked before the benchmark runs."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--markdown {path}: the folder {folder} does not exist"
    if os.path.isdir(path):
        return f"--markdown {path}: is a folder, not a file"
    if not os.access(folder, os.W_OK):
        return f"--markdown {path}: the folder {folder} is not writable"
    return None
