"""Summaries of result rows: one line per grid point (``point_id``).

Each line holds the experiment block, the grid coordinates, ``n_rows``, the count of each
status (``n_ok``, ``n_diverged``, ...), and for every numeric metric ``<m>_mean``, ``<m>_std``
(sample standard deviation, ddof=1; empty when fewer than two values) and ``<m>_n`` (how many
values entered), right for any finite value (:func:`harness.results.stats.mean_std`: a mean
beyond the float range, of integer metrics such as ``10**400``, is written as an integer).
Metric values come from the ``ok`` and ``diverged`` rows; NaN and infinite values are left out (the status counts say how many rows diverged). Booleans count as 0/1, so
their mean is a fraction. Timings (a row's ``timings``: wall-clock seconds) are left out unless
asked for (``timings=True``, ``harness show --timings``): then they are summarised as
``timings.<name>`` like metrics.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Mapping, Sequence

from harness.errors import UserError, suggest
from harness.results.stats import mean_std, short_number
from harness.spec.row import STATUSES, row_metrics

METRIC_STATUSES = ("ok", "diverged")


def summarize(rows: Iterable[Mapping[str, Any]], order: Iterable[str] | None = None,
              timings: bool = False) -> list[dict[str, Any]]:
    """One dict per grid point, in ``order`` (point ids; others follow in first-seen order);
    with ``timings``, the rows' timings too (as ``timings.<name>``)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for pid in order or ():
        groups.setdefault(pid, [])
    for row in rows:
        groups.setdefault(row["point_id"], []).append(row)
    out = []
    for pid, members in groups.items():
        if not members:
            continue
        first = members[0]
        line: dict[str, Any] = {"experiment_id": first.get("experiment_id"),
                                "experiment": first.get("experiment"), "point_id": pid}
        for key, value in (first.get("coords") or {}).items():
            line[key] = value
        line["n_rows"] = len(members)
        for status in STATUSES:
            line[f"n_{status}"] = sum(1 for r in members if r.get("status") == status)
        values: dict[str, list[float]] = {}
        for r in members:
            if r.get("status") not in METRIC_STATUSES:
                continue
            for name, value in row_metrics(r, timings).items():
                if isinstance(value, (int, float)):
                    values.setdefault(name, [])
                    if isinstance(value, int):  # a bool as 0 or 1; an int of any size, exactly
                        values[name].append(int(value))
                    elif math.isfinite(value):
                        values[name].append(value)
        for name, xs in values.items():
            mean, std = mean_std(xs)
            line[f"{name}_mean"] = mean
            line[f"{name}_std"] = std
            line[f"{name}_n"] = len(xs)
        out.append(line)
    return out


def columns(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column, in first-seen order."""
    cols: dict[str, None] = {}
    for line in lines:
        for key in line:
            cols.setdefault(key, None)
    return list(cols)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(lines: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of the summary lines (lists as JSON, missing values empty)."""
    cols = columns(lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for line in lines:
        writer.writerow([_cell_text(line.get(c)) for c in cols])
    return buf.getvalue()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _fmt_number(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool) and abs(x) >= 10 ** 15):
        return short_number(x)
    return str(x)


def _table_spec(lines: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """``[(kind, key, column name)]`` of :func:`format_table`; kinds: ``block``, ``coord``,
    ``count`` (key: a status, or ``rows``) and ``metric``. A metric named like a coordinate is
    called ``<metric>_mean``."""
    cols = columns(lines)
    fixed = {"experiment_id", "experiment", "point_id", "n_rows"} | {f"n_{s}" for s in STATUSES}
    metric_names = [c[: -len("_mean")] for c in cols if c.endswith("_mean")]
    derived = {f"{m}_{s}" for m in metric_names for s in ("mean", "std", "n")}
    coord_cols = [c for c in cols if c not in fixed and c not in derived]
    statuses = [s for s in STATUSES if s != "ok" and any(line.get(f"n_{s}") for line in lines)]
    several = len({line.get("experiment_id") for line in lines}) > 1
    spec = [("block", "experiment_id", "experiment")] if several else []
    spec += [("coord", c, c) for c in coord_cols]
    spec += [("count", "rows", "rows"), ("count", "ok", "ok")] + [("count", s, s) for s in statuses]
    spec += [("metric", m, f"{m}_mean" if m in coord_cols else m) for m in metric_names]
    return spec


def table_columns(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns :func:`format_table` can show: ``experiment`` (with several blocks), the grid
    coordinates, ``rows``, ``ok``, the other statuses that occur, then each metric."""
    return [name for _, _, name in _table_spec(lines)]


MAX_CELL = 28
"""With a width limit, a longer cell (a long list of widths, say) is cut to this many characters."""


def _table_cell(line: Mapping[str, Any], kind: str, key: str) -> str:
    if kind == "block":
        return str(line.get("experiment_id", ""))
    if kind == "coord":
        v = line.get(key)
        return _fmt_number(v) if isinstance(v, (int, float)) else _cell_text(v)
    if kind == "count":
        return str(line.get("n_rows" if key == "rows" else f"n_{key}", 0))
    mean, std = line.get(f"{key}_mean"), line.get(f"{key}_std")
    if mean is None:
        return ""
    return _fmt_number(mean) if std is None else f"{_fmt_number(mean)} ± {_fmt_number(std)}"


def format_table(lines: Sequence[Mapping[str, Any]], max_width: int | None = None,
                 columns_: Sequence[str] | None = None) -> str:
    """A plain-text table: block, coordinates, counts, and ``mean ± std`` per metric.

    ``columns_`` picks columns by name (see :func:`table_columns`; a :class:`UserError` for an
    unknown one). ``max_width`` fits the table into that many characters: long cells are cut,
    and the columns that do not fit (from the last) are left out, named in a last line."""
    if not lines:
        return "(no rows)"
    spec = _table_spec(lines)
    if columns_:
        by_name = {name: (kind, key, name) for kind, key, name in spec}
        unknown = [c for c in columns_ if c not in by_name]
        if unknown:
            raise UserError(f"--columns {unknown[0]!r}: no such column{suggest(unknown[0], by_name)}; "
                            f"columns: {', '.join(by_name)}")
        spec = [by_name[c] for c in dict.fromkeys(columns_)]
    header = [name for _, _, name in spec]
    table = [[_table_cell(line, kind, key) for kind, key, _ in spec] for line in lines]
    if max_width:
        table = [[c if len(c) <= MAX_CELL else c[: MAX_CELL - 1] + "…" for c in r] for r in table]
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    hidden: list[str] = []
    if max_width and not columns_:
        keep = len(header)
        # the coordinates, rows and ok always stay; statuses and metrics go from the last
        first_optional = header.index("ok") + 1
        while keep > first_optional and sum(widths[:keep]) + 2 * (keep - 1) > max_width:
            keep -= 1
        hidden = header[keep:]
        header, widths, table = header[:keep], widths[:keep], [r[:keep] for r in table]
    text_lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                  "  ".join("-" * w for w in widths)]
    for r in table:
        text_lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if max_width:
        text_lines = [t if len(t) <= max_width else t[: max_width - 1] + "…" for t in text_lines]
    if hidden:
        note = f"({len(hidden)} more column{'s' if len(hidden) > 1 else ''}: {', '.join(hidden)}; pick with --columns)"
        text_lines.append(note if len(note) <= max_width else note[: max_width - 2] + "…)")
    return "\n".join(text_lines)


def format_blocks(lines: Sequence[Mapping[str, Any]], max_width: int | None = None,
                  columns_: Sequence[str] | None = None) -> str:
    """``harness show``'s tables: one per experiment block, under ``<block> (<experiment>)``.

    With ``columns_`` each block shows those of the columns it has; a column no block has is a
    :class:`UserError`."""
    blocks: dict[str, list[Mapping[str, Any]]] = {}
    for line in lines:
        blocks.setdefault(str(line.get("experiment_id")), []).append(line)
    if columns_:
        every = list(dict.fromkeys(c for block in blocks.values() for c in table_columns(block)))
        unknown = [c for c in columns_ if c not in every]
        if unknown:
            raise UserError(f"--columns {unknown[0]!r}: no such column{suggest(unknown[0], every)}; "
                            f"columns: {', '.join(every)}")
    parts = []
    for block_id, block in blocks.items():
        picked = [c for c in columns_ if c in table_columns(block)] if columns_ else None
        if columns_ and not picked:
            continue
        parts.append(f"{block_id} ({block[0].get('experiment')})\n" + format_table(block, max_width, picked))
    return "\n\n".join(parts)


def filter_lines(lines: Sequence[Mapping[str, Any]], experiments: Sequence[str] = (),
                 where: Sequence[str] = ()) -> list[Mapping[str, Any]]:
    """The summary lines of the blocks ``experiments`` (all when empty) whose values match every
    ``KEY=VALUE`` of ``where``. The same key given twice matches either value; numbers match by
    value (``N=100`` matches ``100.0``). Unknown blocks and keys are a :class:`UserError`."""
    if experiments:
        known = list(dict.fromkeys(str(line.get("experiment_id")) for line in lines))
        for e in experiments:
            if e not in known:
                raise UserError(f"--experiment {e!r}: no such experiment block{suggest(e, known)}; "
                                f"blocks: {', '.join(known) or 'none'}")
        lines = [line for line in lines if str(line.get("experiment_id")) in experiments]
    wanted: dict[str, list[str]] = {}
    for item in where:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--where {item!r}: expected KEY=VALUE, e.g. --where N=100")
        wanted.setdefault(key, []).append(value.strip())
    if wanted:
        keys = [c for c in columns(lines) if c not in ("point_id", "n_rows") and not c.startswith("n_")
                and not c.endswith(("_mean", "_std", "_n"))]
        for key in wanted:
            if key not in keys:
                raise UserError(f"--where {key}=...: no such key{suggest(key, keys)}; keys: {', '.join(keys)}")
        lines = [line for line in lines
                 if all(any(_matches(line.get(k), v) for v in vs) for k, vs in wanted.items())]
    return list(lines)


def _matches(value: Any, text: str) -> bool:
    if value is None:
        return text == ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    if isinstance(value, (list, dict, bool)):
        try:
            return json.loads(text) == value
        except ValueError:
            return False
    return str(value) == text


# ----------------------------------------------------------------------------------------------
# the tidy table: one line per row

TIDY_FIRST = ("experiment_id", "experiment", "repetition")
TIDY_LAST = ("seed.root", "seed.spawn_key", "elapsed", "finished", "error", "cell_id", "point_id")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _scalar(value: Any) -> Any:
    """Lists and dicts as JSON text; numbers, booleans, strings and None as they are."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return value


def tidy_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One result row as a flat dict (see :func:`tidy`)."""
    rec: dict[str, Any] = {k: row.get(k) for k in TIDY_FIRST}
    for k, v in (row.get("coords") or {}).items():
        rec[k] = _scalar(v)
    rec["status"] = row.get("status")
    for k, v in (row.get("metrics") or {}).items():
        rec[f"metrics.{k}"] = _scalar(v)
    for k, v in (row.get("timings") or {}).items():
        rec[f"timings.{k}"] = _scalar(v)
    flat: dict[str, Any] = {}
    for k, v in (row.get("params") or {}).items():
        _flatten(f"params.{k}", v, flat)
    for slot, chosen in (row.get("components") or {}).items():
        if isinstance(chosen, Mapping):
            flat[f"components.{slot}"] = chosen.get("name")
            for k, v in (chosen.get("params") or {}).items():
                _flatten(f"components.{slot}.{k}", v, flat)
    rec.update({k: _scalar(v) for k, v in flat.items()})
    seed = row.get("seed") or {}
    rec["seed.root"] = seed.get("root")
    rec["seed.spawn_key"] = _scalar(seed.get("spawn_key"))
    for k in ("elapsed", "finished", "error", "cell_id", "point_id"):
        rec[k] = row.get(k)
    return rec


def sort_rows(rows: Iterable[Mapping[str, Any]], order: Sequence[str] | None) -> list[Mapping[str, Any]]:
    """``rows`` in ``order`` (point ids: the grid's order), repetitions in order within a point;
    rows of other points follow in their order."""
    rows = list(rows)
    if not order:
        return rows
    rank = {pid: i for i, pid in enumerate(order)}

    def key(item):
        i, r = item
        rep = r.get("repetition")
        return rank.get(r.get("point_id"), len(rank)), rep if isinstance(rep, int) else 0, i

    return [r for _, r in sorted(enumerate(rows), key=key)]


def tidy(rows: Iterable[Mapping[str, Any]],
         order: Sequence[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """``(columns, records)``: one flat record per result row, in ``order`` (point ids: the grid's
    order), repetitions in order within a point; rows of other points follow in file order.

    Columns: ``experiment_id``, ``experiment``, ``repetition``, the grid coordinates (bare axis
    names), ``status``, ``metrics.<name>``, ``params.<name>`` (nested values flattened with dots),
    ``components.<slot>`` (the component's name) and ``components.<slot>.<param>``, ``timings.<name>``
    (wall-clock seconds, where rows have them), ``seed.root``,
    ``seed.spawn_key``, ``elapsed``, ``finished``, ``error``, ``cell_id``, ``point_id``. Curves are
    left out; lists and dicts are JSON text. A column a row lacks is ``None``."""
    rows = sort_rows(rows, order)
    records = [tidy_record(r) for r in rows]
    seen: dict[str, None] = {}
    for rec in records:
        for k in rec:
            seen.setdefault(k, None)
    middle = [k for k in seen if k not in TIDY_FIRST and k not in TIDY_LAST]
    coords = [k for k in middle if k != "status"
              and not k.startswith(("metrics.", "params.", "components.", "timings."))]
    cols = (list(TIDY_FIRST) + coords + ["status"] + [k for k in middle if k.startswith("metrics.")]
            + [k for k in middle if k.startswith("params.")] + [k for k in middle if k.startswith("components.")]
            + [k for k in middle if k.startswith("timings.")] + list(TIDY_LAST))
    return cols, [{k: rec.get(k) for k in cols} for rec in records]


def tidy_csv(rows: Iterable[Mapping[str, Any]], order: Sequence[str] | None = None) -> str:
    """The tidy table (:func:`tidy`) as CSV text (missing values empty; needs no pandas)."""
    cols, records = tidy(rows, order)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for rec in records:
        writer.writerow([_cell_text(rec[c]) for c in cols])
    return buf.getvalue()
