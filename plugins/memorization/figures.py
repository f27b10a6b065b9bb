"""Figures of the memorisation experiments: the Fig. 2 heat maps with the threshold N*(d) and the
level lines, loss against P / N, the capacity figure and table (the threshold search's figures:
:mod:`.threshold_figures`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from ._common import LEVEL_LINES, LOG10_FLOOR, MEMORISED_LOG10, MODELS


def _finish(fig, context, bands: str):
    fig.text(0.5, 0.005, context.caption(bands), ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _metric(row, key):
    return (row.get("metrics") or {}).get(key)


def _log10(values: Sequence[float]) -> list[float]:
    return [math.log10(max(float(v), 1e-300)) for v in values
            if v is not None and math.isfinite(float(v))]


def memorisation_threshold(cells) -> dict:
    """{d: N*}: per d, the largest N of the grid up to which every N is memorised (mean log10
    loss <= :data:`MEMORISED_LOG10`); d values whose smallest N is not memorised are left out.
    ``cells`` is ``{(d, N): [log10 values of the repetitions]}``, as :func:`_grid_means` builds
    it; the figures build it from ``reported_loss``, so memorised means mean log10(reported_loss)
    <= -3. A cell with an infinite entry (a repetition without a value) is not memorised."""
    out = {}
    for d in sorted({k[0] for k in cells}):
        best = None
        for N in sorted(N for dd, N in cells if dd == d):
            vals = cells[(d, N)]
            if not vals or float(np.mean(vals)) > MEMORISED_LOG10:
                break
            best = N
        if best is not None:
            out[d] = best
    return out


def _grid_means(rows, key: str):
    """{(d, N): [log10 values of the repetitions]} and {d: P} from memorization rows. Logs are
    clipped below at :data:`LOG10_FLOOR`; a repetition that diverged or has no finite value of
    ``key`` (e.g. ``reported_loss`` with no complete window) enters as ``+inf``, so its cell's
    mean is infinite: drawn blank and not memorised (as the threshold search counts it)."""
    cells: dict = defaultdict(list)
    params_of_d: dict = {}
    for r in rows:
        d, N = int(r["params"]["d"]), int(r["params"]["N"])
        value = _metric(r, key)
        if r.get("status") == "diverged":
            value = None
        logs = _log10([value])
        cells[(d, N)].append(max(logs[0], LOG10_FLOOR) if logs else math.inf)
        if _metric(r, "P") is not None:
            params_of_d[d] = int(_metric(r, "P"))
    return cells, params_of_d


def _edges(centers: Sequence[float]) -> np.ndarray:
    c = np.asarray(sorted(centers), float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5]) if c[0] else np.array([-0.5, 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _heatmap(rows, context, key: str, label: str, threshold: bool = False, series: str = ""):
    """Heat map of the mean over repetitions of log10(``key``) over (d^2, N), with the lines
    P = N and d^2 = N; with ``threshold``, also N*(d) (:func:`memorisation_threshold` on these
    means) and its linear fit in d^2. The figure reproducing Fig. 2 uses ``reported_loss``."""
    from matplotlib.figure import Figure

    cells, P_of_d = _grid_means(rows, key)
    ds = sorted({k[0] for k in cells})
    Ns = sorted({k[1] for k in cells})
    Z = np.full((len(Ns), len(ds)), np.nan)
    for (d, N), vals in cells.items():
        if vals:
            Z[Ns.index(N), ds.index(d)] = float(np.mean(vals))
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    x = [d * d for d in ds]
    finite = Z[np.isfinite(Z)]
    vmin = float(finite.min()) if finite.size else LOG10_FLOOR
    vmax = max(float(finite.max()), vmin + 1e-9) if finite.size else 0.0
    mesh = ax.pcolormesh(_edges(x), _edges(Ns), np.ma.masked_invalid(Z), cmap="viridis", shading="flat",
                         vmin=vmin, vmax=vmax)
    fig.colorbar(mesh, ax=ax, label=f"log10 {label}")
    if P_of_d:
        dd = sorted(P_of_d)
        ax.plot([d * d for d in dd], [P_of_d[d] for d in dd], color="red", lw=1.5, label="P = N")
        ax.plot([d * d for d in dd], [d * d for d in dd], color="white", lw=1.0, ls="--", label="d^2 = N")
    level_text = _level_lines(ax, x, Ns, Z) if threshold else ""
    threshold = memorisation_threshold(cells) if threshold else {}
    fit_text = ""
    if len(threshold) >= 3:
        from harness.plugin.fitting import fit_slope, plot_fit

        dd = sorted(threshold)
        ax.plot([d * d for d in dd], [threshold[d] for d in dd], "o", color="orange", ms=4, mfc="none",
                label=f"N*: largest N memorised (mean log10 {key} <= {MEMORISED_LOG10:g})")
        inside = [d for d in dd if threshold[d] < max(Ns)]  # N* at the grid's edge is censored
        if len(inside) >= 3:
            fit = fit_slope([d * d for d in inside], [threshold[d] for d in inside])
            plot_fit(ax, fit, label="fit N* against d^2", color="orange", band=False, lw=1.0)
            fit_text = ("; orange: N*(d) and its linear fit in d^2 over the d whose N* is inside "
                        "the grid (slope, 95% bootstrap CI in the legend)")
    if P_of_d:
        ax.set_ylim(_edges(Ns)[0], _edges(Ns)[-1])
        ax.legend(loc="upper left", fontsize=6, framealpha=0.6)
    ax.set_xlabel("d^2")
    ax.set_ylabel("N")
    ax.set_title(f"log10 {label}" + (f"\n{series}" if series else ""), fontsize=9 if series else None)
    return _finish(fig, context, f"cell colour: mean of log10({key}) over repetitions "
                                 f"(losses clipped at 1e{LOG10_FLOOR}; blank: not run, or a "
                                 f"repetition diverged or has no value); "
                                 f"red: P = N (trainable parameters); dashed: d^2 = N{level_text}{fit_text}")


def _level_lines(ax, x, Ns, Z) -> str:
    """Contour lines of the mean log10 ``Z`` (shape ``(len(Ns), len(x))``, NaN where no cell) at
    :data:`LEVEL_LINES`, labelled; returns the caption's words (empty when the grid is too small
    for a line, i.e. under 2 x 2 cells)."""
    if len(x) < 2 or len(Ns) < 2 or not np.isfinite(Z).any():
        return ""
    finite = Z[np.isfinite(Z)]
    levels = sorted(v for v in LEVEL_LINES if finite.min() < v < finite.max())
    if not levels:
        return ""
    lines = ax.contour(x, Ns, np.ma.masked_invalid(Z), levels=levels, colors="white", linewidths=0.9,
                       linestyles=["-", "--", ":"][: len(levels)])
    ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize=6)
    return (f"; white lines: where the mean log10 crosses {', '.join(f'{v:g}' for v in levels)} "
            "(linear between cell centres)")


def _loss_vs_ratio(rows, context, groups=None):
    """Final loss against P / N, one point per cell; one colour per group of
    :func:`harness.plugin.series.split_rows` (extra grid axes are never pooled)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    for i, (label, part) in enumerate(groups or [("", rows)]):
        xs, ys = [], []
        for r in part:
            v, ratio = _metric(r, "final_loss"), _metric(r, "P_over_N")
            if v is not None and ratio is not None and math.isfinite(v):
                xs.append(ratio)
                ys.append(max(v, 1e-300))
        ax.scatter(xs, ys, s=6, alpha=0.5, color=f"C{i}", label=label or None)
    ax.axvline(1.0, color="red", lw=1, label="P = N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("P / N")
    ax.set_ylabel("final training loss")
    ax.legend(fontsize=7)
    return _finish(fig, context, "one point per cell and repetition")


def _capacity_figure(lines, context):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.6, 3.9))
    ax1, ax2 = fig.subplots(1, 2)
    models = [m for m in MODELS if any(l["model"] == m for l in lines)]
    models += sorted({l["model"] for l in lines} - set(MODELS))  # e.g. capacity's "slots"
    for model in models:
        own = sorted((l for l in lines if l["model"] == model), key=lambda l: l["P_over_N"])
        x = [l["P_over_N"] for l in own]
        label = own[0].get("label", model)  # the step rule that ran and the epoch budget
        ax1.plot(x, [l["fraction_zero"] for l in own], marker="o", label=label)
        pts = [(l["P_over_N"], l["final_loss_median"]) for l in own if l["final_loss_median"] is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [max(p[1], 1e-300) for p in pts], marker="o", label=label)
    ticks = sorted({round(l["ratio"], 6) for l in lines})
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axvline(1.0, color="gray", lw=1, ls="--")
        ax.set_xlabel("P / N (trainable parameters per sample)")
        ax.legend(fontsize=6)
    ax1.set_ylabel("fraction of seeds reaching zero loss")
    ax1.set_ylim(-0.03, 1.03)
    ax2.set_yscale("log")
    ax2.set_ylabel("final training loss (median over seeds)")
    return _finish(fig, context, "fraction: final loss <= zero_tol; right: median over repetitions")


def _table_figure(lines, context, cols=None, what="one line per model and target P / N", width=9.0,
                  number_format=".3g"):
    from harness.plugin.figures import table_figure

    cols = cols or ["label", "ratio", "P_over_N", "n", "fraction_zero", "final_loss_mean",
                    "final_loss_median", "diverged"]
    return _finish(table_figure(lines, cols, width=width, base_height=0.5, number_format=number_format),
                   context, what)


def capacity_threshold_figure(context, labels):
    """The threshold search of the capacity study (P*/N per model, the final bracket as error
    bars), each model named with its step rule and epoch budget (``labels``: model -> label)."""
    from harness.plugin.figures import threshold_figure

    fig = threshold_figure(context, x="model", xlabel="model (step rule, epoch budget)")
    ax = fig.axes[0]
    models = list(dict.fromkeys(t.get("model") for t in context.thresholds))
    ax.set_xticks(range(len(models)), [labels.get(m, str(m)).replace(" (", "\n(") for m in models],
                  rotation=0, fontsize=6.5)
    ax.set_ylabel("P*/N (threshold of the target P / N)")
    return fig


MAX_LOSS_CURVE_PANELS = 16
"""At most this many grid points get a panel in the ``loss_curves`` figure; a bigger grid shows
this many points evenly spaced in the grid's order (the caption says how many of how many)."""


def loss_curves_figure(rows, context, max_panels: int = MAX_LOSS_CURVE_PANELS):
    """The training loss curve (``curves.loss_curve`` against ``curves.loss_curve_epoch``, the
    subsampled per-epoch curve) of each repetition: small multiples, one panel per grid point
    (every coordinate, so no axis is pooled), one line per repetition, log scale. At most
    ``max_panels`` panels (see :data:`MAX_LOSS_CURVE_PANELS`); ``None`` when no row has a curve."""
    import json

    from matplotlib.figure import Figure

    from harness.plugin.series import row_label

    points: dict = {}
    for r in rows:
        curve = (r.get("curves") or {}).get("loss_curve")
        if curve:
            key = json.dumps(r.get("coords") or {}, sort_keys=True, default=str)
            points.setdefault(key, []).append(r)
    if not points:
        return None
    keys = list(points)
    total = len(keys)
    if total > max_panels:
        keys = [keys[round(i * (total - 1) / (max_panels - 1))] for i in range(max_panels)] if max_panels > 1 \
            else keys[:1]
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(3.0 * ncols, 2.3 * nrows + 0.5))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, key in zip(axes, keys):
        group = sorted(points[key], key=lambda r: r.get("repetition") or 0)
        coords = list((group[0].get("coords") or {}))
        for i, r in enumerate(group):
            curves = r["curves"]
            y = np.maximum(np.asarray(curves["loss_curve"], float), 1e-300)
            x = curves.get("loss_curve_epoch") or list(range(1, len(y) + 1))
            ax.plot(x, y, lw=1, color=f"C{i % 10}", alpha=0.8,
                    label=f"rep {r.get('repetition', i)}" + (" (diverged)" if r.get("status") == "diverged" else ""))
        ax.set_yscale("log")
        ax.set_title(row_label(group[0], coords) or context.experiment_id, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("epoch", fontsize=7)
        if len(group) <= 6:
            ax.legend(fontsize=5)
    for ax in axes[len(keys):]:
        ax.axis("off")
    axes[0].set_ylabel("training loss", fontsize=7)
    shown = (f"; showing {len(keys)} of {total} grid points, evenly spaced in the grid's order "
             f"(at most {max_panels} panels)" if total > len(keys) else "")
    return _finish(fig, context, f"one panel per grid point, one line per repetition: the per-epoch "
                                 f"training loss (subsampled to curve_points){shown}")
