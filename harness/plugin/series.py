"""Keeping grid axes apart in figures: which axes a figure did not draw, and the row groups
they make.

A figure draws some quantities (its x axis, its colours, its panels); every *other* grid axis
that varies among rows with the same drawn values would be averaged away. :func:`split_rows`
finds those axes from the rows' ``coords`` and returns one group of rows per combination of
their values, labelled ``"architecture=residual(blocks=1, bias=True)"``, so that a figure
draws one line (or panel, or figure) per group. An axis that is a function of the drawn ones
(a derived ``d`` next to its ``i``; tied axes) never splits anything.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

__all__ = ["extra_axes", "split_rows", "short_value", "slug", "row_label", "per_series", "label_figure"]

Row = Mapping[str, Any]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def short_value(value: Any) -> str:
    """A compact label for an axis value: a component table ``{name, params...}`` as
    ``name(k=v, ...)``; lists and numbers as written."""
    if isinstance(value, Mapping):
        name = value.get("name")
        params = {k: v for k, v in value.items() if k not in ("name", "params")}
        params.update(value.get("params") or {}) if isinstance(value.get("params"), Mapping) else None
        inner = ", ".join(f"{k}={short_value(v)}" for k, v in params.items())
        if name is None:
            return "{" + inner + "}"
        return f"{name}({inner})" if inner else str(name)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(short_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def extra_axes(rows: Sequence[Row], drawn: Callable[[Row], Any]) -> list[str]:
    """The coordinate keys that take several values among rows with equal ``drawn(row)``
    (the quantities the figure draws), in the order they first appear."""
    order: list[str] = []
    values: dict = defaultdict(set)
    for r in rows:
        coords = r.get("coords") or {}
        d = _key(drawn(r))
        for k, v in coords.items():
            if k not in order:
                order.append(k)
            values[(k, d)].add(_key(v))
    return [k for k in order if any(len(vs) > 1 for (kk, _), vs in values.items() if kk == k)]


def row_label(row: Row, keys: Sequence[str]) -> str:
    coords = row.get("coords") or {}
    return ", ".join(f"{k}={short_value(coords.get(k))}" for k in keys)


def split_rows(rows: Sequence[Row], drawn: Callable[[Row], Any]) -> list[tuple[str, list]]:
    """``[(label, rows)]``, one group per combination of the :func:`extra_axes`' values (sorted
    by label); ``[("", rows)]`` when the figure's quantities determine every axis."""
    keys = extra_axes(rows, drawn)
    if not keys:
        return [("", list(rows))]
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(row_label(r, keys), []).append(r)
    return sorted(groups.items())  # by label: the same order whatever order the rows finished in


def slug(label: str, index: int | None = None) -> str:
    """A file-name-safe version of ``label`` (at most 60 characters; ``index`` prefixed so that
    stems stay unique)."""
    text = re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_")[:60]
    return f"{index}_{text}" if index is not None else text


def label_figure(fig, label: str):
    """Write a series label (from :func:`split_rows`) at the top of ``fig``; returns ``fig``."""
    if label:
        fig.text(0.5, 0.999, label, ha="center", va="top", fontsize=7, color="0.3")
    return fig


def per_series(rows: Sequence[Row], drawn: Callable[[Row], Any],
               figures: Callable[[list], Mapping[str, Any]],
               among: Callable[[Row], bool] | None = None) -> dict:
    """The figures of ``figures(rows)`` once per group of :func:`split_rows`: names unchanged
    when nothing splits, else suffixed ``-<index>_<slug of the label>`` and each figure labelled
    with its group (:func:`label_figure`). For figures that are drawn whole from their rows.
    With ``among``, the extra axes are found among the rows it accepts (e.g. the ``ok`` ones,
    whose drawn values are known) and every row is then grouped by them."""
    keys = extra_axes([r for r in rows if among is None or among(r)], drawn)
    if keys:
        by_label: dict[str, list] = {}
        for r in rows:
            by_label.setdefault(row_label(r, keys), []).append(r)
        groups = sorted(by_label.items())
    else:
        groups = [("", list(rows))]
    out: dict = {}
    for i, (label, part) in enumerate(groups):
        suffix = f"-{slug(label, i + 1)}" if label else ""
        for name, fig in figures(part).items():
            out[name + suffix] = label_figure(fig, label)
    return out
