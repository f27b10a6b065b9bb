"""What a semi-flat run answers, from its rows:

- ``embedding_generalization``: the ratio err(N_H) / err(N_H0) per activation, map and H (mean ±
  standard error over the trials), with the paper's claim stated beside the numbers (the ratio at
  the smallest and largest H); then, per activation, how the trials trained: the fraction reaching
  the 1e-29 target with its Wilson interval and the number of trials within a factor 10 of the
  target (the decisions another machine's last bits could turn), the ReLU certificate (K* > H0:
  impossible) and what every trained point is (:data:`harness_plugins.semi_flat.points.TRAINED_CLASSES`:
  "local minimum" only where the second-order check certifies one);
- ``embedding_critical_point``: per activation, map and split, the classes of the embedded points
  with the saddle fraction's Wilson interval and the Hessian's inertia.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

from harness.plugin.tables import Table, format_value, fraction, plus_minus

from .embedding import EMBEDDINGS
from .figures import _activation_of
from .points import TRAINED_CLASSES

CLASS_NAMES = {"interpolating": "interpolating (global minimum)", "minimum": "local minimum (certified)",
               "flat_directions": "flat / undecided", "saddle": "saddle", "not_critical": "not critical",
               "kink": "kink at a data point (undecided)"}
"""How the tables name each class of a trained point."""


def _mean_sem(m: Mapping[str, Any]) -> str | None:
    if m.get("mean_ratio") is None:
        return None
    return plus_minus(m["mean_ratio"], m.get("sem_ratio"))


def generalization_tables(rows: Sequence[Mapping[str, Any]], context) -> list[Table]:
    """See the module docstring."""
    ok = [r for r in rows if r.get("status") == "ok" and (r.get("metrics") or {}).get("n_trials")]
    if not ok:
        return []
    by: dict = defaultdict(dict)  # (activation, map) -> H -> metrics
    for r in ok:
        by[(_activation_of(r), r["params"].get("embedding"))][int(r["params"]["H"])] = r["metrics"]
    Hs = sorted({H for line in by.values() for H in line})
    order = {e: i for i, e in enumerate(EMBEDDINGS)}
    keys = sorted(by, key=lambda k: (k[0], order.get(k[1], 9)))
    lines, claims = [], []
    for act, emb in keys:
        line = by[(act, emb)]
        lines.append([act, emb, *(_mean_sem(line[H]) if H in line else None for H in Hs)])
        ends = sorted(line)
        if len(ends) >= 2:
            first, last = line[ends[0]], line[ends[-1]]
            claims.append(f"{act}, {emb}: mean ratio {_mean_sem(first)} at H = {ends[0]}, {_mean_sem(last)} at "
                          f"H = {ends[-1]} (median {format_value(last.get('median_ratio'))})")
    notes = ["Mean ratio ± standard error over the trials of each cell (the same trials at every H)",
             "The paper: the ratio grows with H for tanh and stays near 1 for ReLU. Per activation and map, "
             "from the table: " + "; ".join(claims)] if claims else []
    out = [Table(f"{context.experiment_id}: generalisation-error ratio err(N_H) / err(N_H0)",
                 ["activation", "map", *(f"H = {H}" for H in Hs)], lines, notes)]
    out.append(_training_table(ok, context))
    return out


def _training_table(rows, context) -> Table:
    """One line per activation (every cell of an activation trains the same trials: the first
    cell's counts stand for all)."""
    first: dict = {}
    for r in rows:
        first.setdefault(_activation_of(r), r)
    columns = ["activation", "trials", "reached the target [95% Wilson]", "within 10x of the target",
               "K* > H0: impossible [95% Wilson]", "reached, of the possible [95% Wilson]",
               *(CLASS_NAMES[c] for c in TRAINED_CLASSES)]
    lines = []
    for act, r in sorted(first.items()):
        m, n = r["metrics"], int(r["params"]["trials"])
        impossible = m.get("relu_impossible")
        reached_possible = None
        if impossible is not None:
            possible = n - int(impossible)
            found = int(m.get("relu_constructed") or 0) + int(m.get("relu_searched") or 0)
            reached_possible = fraction(found, possible) if possible else None
        lines.append([act, n, fraction(int(m["target_reached"]), n), m.get("target_borderline"),
                      fraction(int(impossible), n) if impossible is not None else None, reached_possible,
                      *(m.get(f"point_{c}") for c in TRAINED_CLASSES)])
    return Table(f"{context.experiment_id}: training to the target and what each trained point is", columns, lines, [
        "Reached: training error <= target_error (1e-29, at the float64 floor of these interpolants): whether "
        "Levenberg-Marquardt reaches it depends on the last bits of the arithmetic, so on another machine up "
        "to the trials within 10x of the target can fall on the other side",
        "K*: the fewest knots of any continuous piecewise-linear interpolant of a trial's data; K* > H0 proves "
        "that no H0-unit ReLU network reaches zero error",
        "Trained points: interpolating (the target was reached); a kink within kink_tol of a training input "
        "(ReLU: the error is not differentiable there, undecided); otherwise from the relative gradient and "
        "the Hessian: local minimum only where every eigenvalue is positive (certified at second order), "
        "flat / undecided with a zero eigenvalue (every ReLU point has one per unit, from its rescaling), "
        "saddle with a negative one, not critical when a gradient is left"])


def critical_point_tables(lines: Sequence[Mapping[str, Any]], context) -> list[Table]:
    """The classes of the embedded points (:meth:`EmbeddingCriticalPoint.table` lines)."""
    if not lines:
        return []
    rows = [[l["activation"], f"{l['H0']} -> {l['H']}", l["map"], l["split"], l["kept"], l["minimum"], l["flat"],
             fraction(int(l["saddle"]), int(l["kept"])), l["not critical"], f"{l['neg']} / {l['zero']} / {l['pos']}"]
            for l in lines]
    return [Table(f"{context.experiment_id}: minimum or saddle after embedding", [
        "activation", "H0 -> H", "map", "split", "kept", "local minimum", "flat / undecided", "saddle [95% Wilson]",
        "not critical", "Hessian negative / zero / positive"], rows, [
        "Kept: trials whose narrow network reached a critical point with positive loss and no negative "
        "eigenvalue; the embedded point is classified from its exact Hessian (zero: |lambda| <= hessian_rtol "
        "max |lambda|), a local minimum only when every eigenvalue is positive"])]
