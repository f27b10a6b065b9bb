"""Figures of the semi-flat experiments: the generalisation-error ratio and the Hessian at the
embedded point against H (``embedding_generalization``), and the classification table
(``embedding_critical_point``).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from .embedding import EMBEDDINGS


def pooled(stats: Sequence[tuple[int, float, float | None]]) -> tuple[float, float | None]:
    """Mean and standard error of the union of groups given as ``(n, mean, std)`` (ddof 1)."""
    n = np.array([s[0] for s in stats], float)
    m = np.array([s[1] for s in stats], float)
    s = np.array([s[2] if s[2] is not None else 0.0 for s in stats], float)
    N = n.sum()
    mean = float(n @ m / N)
    if N < 2:
        return mean, None
    var = (np.sum((n - 1) * s ** 2) + np.sum(n * (m - mean) ** 2)) / (N - 1)
    return mean, float(np.sqrt(var / N))


def _activation_of(row: Mapping[str, Any]) -> str:
    return ((row.get("components") or {}).get("activation") or {}).get("name", "?")


def _label(row: Mapping[str, Any], embeddings: set) -> str:
    act = _activation_of(row)
    return f"{act} / {row['params'].get('embedding')}" if len(embeddings) > 1 else act


def _by_line(rows) -> dict:
    """``{label: {H: [rows]}}``, one line per activation (and embedding, when several)."""
    embeddings = {r["params"].get("embedding") for r in rows}
    lines: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        lines[_label(r, embeddings)][int(r["params"]["H"])].append(r)
    return lines


def _ratio_figure(rows, context):
    """One panel per embedding map, one line per activation (pooled mean +- standard error)."""
    from matplotlib.figure import Figure

    maps = [m for m in EMBEDDINGS if any(r["params"].get("embedding") == m for r in rows)]
    fig = Figure(figsize=(4.6 * len(maps) + 0.6, 4.6))
    axes = fig.subplots(1, len(maps), squeeze=False, sharey=True)[0]
    for ax, emb in zip(axes, maps):
        own = [r for r in rows if r["params"].get("embedding") == emb]
        lines: dict = defaultdict(lambda: defaultdict(list))
        for r in own:
            act = _activation_of(r)
            lines[act][int(r["params"]["H"])].append(r)
        for label, by_H in sorted(lines.items()):
            Hs = sorted(by_H)
            stats = [pooled([(r["metrics"]["n_trials"], r["metrics"]["mean_ratio"], r["metrics"].get("std_ratio"))
                             for r in by_H[H]]) for H in Hs]
            errs = [st[1] if st[1] is not None else 0.0 for st in stats]
            reached = np.mean([r["metrics"].get("target_reached_fraction", np.nan) for H in Hs for r in by_H[H]])
            ax.errorbar(Hs, [st[0] for st in stats], yerr=errs, marker="o", markersize=3, capsize=2,
                        label=f"{label} (target reached: {reached:.0%} of trials)")
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle="--")
        ax.set_xlabel("H (hidden units of the embedded network)")
        ax.set_title(emb.replace("_", " "), fontsize=10)
        ax.legend(title="activation", fontsize=7)
    axes[0].set_ylabel("mean of err(N_H + delta) / err(N_H0 + delta)")
    first = rows[0]["params"]
    fig.suptitle(f"Generalisation-error ratio after embedding (H0 = {first['H0']}, "
                 f"rho = {first['rho_relative']:g} ||theta(H0)||)", fontsize=10)
    fig.text(0.01, 0.01, context.caption("bars: ± 1 standard error over trials; all trials, interpolating "
                                         "or not (see target reached)"), fontsize=6, wrap=True)
    fig.subplots_adjust(bottom=0.2, top=0.86, wspace=0.08)
    return fig


def _hessian_figure(rows, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.6, 4.4))
    ax_count, ax_trace = fig.subplots(1, 2)
    for label, by_H in sorted(_by_line(rows).items()):
        Hs = [H for H in sorted(by_H) if by_H[H][0]["metrics"].get("hessian_zero") is not None]
        if not Hs:
            continue
        zero = [np.mean([r["metrics"]["hessian_zero"] for r in by_H[H]]) for H in Hs]
        neg = [np.max([r["metrics"]["hessian_negative_max"] for r in by_H[H]]) for H in Hs]
        trace = [np.mean([r["metrics"]["hessian_trace_mean"] for r in by_H[H]]) for H in Hs]
        line, = ax_count.plot(Hs, zero, marker="o", markersize=3, label=f"{label}: zero (median)")
        ax_count.plot(Hs, neg, marker="v", markersize=3, linestyle=":", color=line.get_color(),
                      label=f"{label}: negative (max over trials)")
        ax_trace.plot(Hs, trace, marker="o", markersize=3, label=label)
    first = rows[0]["params"]
    ax_count.set_xlabel("H")
    ax_count.set_ylabel("eigenvalue count")
    ax_count.set_title(f"zero: |lambda| <= {first['hessian_rtol']:g} max |lambda|", fontsize=9)
    ax_count.legend(fontsize=7)
    ax_trace.set_xlabel("H")
    ax_trace.set_ylabel("trace (mean over trials)")
    ax_trace.set_yscale("log")
    ax_trace.legend(fontsize=7)
    fig.suptitle("Hessian of the training error at the embedded point", fontsize=10)
    fig.text(0.01, 0.01, context.caption(f"Hessian of the first {first['hessian_trials']} trial(s) per cell"),
             fontsize=6, wrap=True)
    fig.subplots_adjust(bottom=0.2, wspace=0.3)
    return fig


def _critical_table_figure(lines, context):
    from harness.plugin.figures import table_figure

    fig = table_figure(lines, list(lines[0]), width=11.0, base_height=0.9, row_height=0.22,
                       number_format=".1e", bbox=(0, 0.18, 1, 0.82))
    fig.text(0.01, 0.01, context.caption(
        "counts of trials per class; neg/zero/pos: Hessian eigenvalue counts (range over trials); zero: "
        "|lambda| <= hessian_rtol max |lambda|; 'zero <=' / 'nonzero >=': largest zero and smallest "
        "non-zero |lambda| / max |lambda|; grad (rel): max |grad E| / (2 sum |r_i| max |J_i.|)"),
        fontsize=6, wrap=True)
    return fig
