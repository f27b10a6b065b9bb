"""Minimum or saddle (``embedding_critical_point``): a non-interpolating critical point of a narrow
network, embedded into a wider one and classified by the Hessian's spectrum.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

import harness_plugins.semi_flat.shallow as shallow
from harness.plugin import Experiment, Param
from harness.plugin.seeds import stream_key

from .embedding import EMBEDDINGS, embed
from .figures import _activation_of, _critical_table_figure
from .generalization import _teacher_check, is_relu
from .points import CLASSES, classify, newton_polish, relative_gradient


class EmbeddingCriticalPoint(Experiment):
    """Minimum or saddle: embed a non-interpolating critical point and classify it by the Hessian.

    One trial: the training set of :class:`EmbeddingGeneralization` (same streams: ``n_train``
    inputs ``x ~ N(0, input_std^2)``, one-unit teacher plus noise ``N(0, noise_variance)``); an
    ``H0``-unit network (``H0 = 1`` or ``2``: it cannot interpolate 10 noisy points) trained by
    Levenberg-Marquardt with target 0 (it stalls at a critical point with positive loss), then
    ``newton_steps`` Newton steps to bring the gradient to round-off. The trial is kept when that
    point is critical (relative gradient, :func:`relative_gradient`, ``<= gradient_rtol``), has loss
    ``>= min_loss`` and no negative Hessian eigenvalue (a local minimum to second order) and, for
    ReLU with ``require_active``, every unit is active on some training input (a dead unit would make
    it a narrower network); restarts (up to ``max_restarts``) otherwise. A ReLU point always has zero
    eigenvalues (each unit's scaling ``(w, b, v) -> (a w, a b, v / a)``), so the narrow point's
    inertia is recorded too. It is embedded into ``H`` units by ``embedding`` with the
    free constants of the parameters, and the embedded point is classified by :func:`classify`:
    gradient first (not every map gives a critical point off interpolation, see
    :mod:`harness_plugins.semi_flat.embedding`: inactive units need ``v phi'(b) = 0``, i.e. ``new_output_weight
    = 0`` for tanh or a dead ReLU unit; inactive propagation needs ``sum_i r_i phi(w x_i + b) = 0``,
    i.e. ``new_input_weight = 0`` for tanh or a ReLU unit dead on every training input), then the
    Hessian's inertia with zero meaning ``|lambda| <= hessian_rtol * max |lambda|``. The Hessian is
    the exact one of :func:`harness_plugins.semi_flat.shallow.error_hessian`; for ReLU it is the Hessian of the
    smooth piece the point lies in (no training input sits on a kink, checked: ``kink_margin_min``).

    Metrics: ``n_kept`` (trials kept), ``discarded`` (starts whose narrow point was not kept), ``narrow_loss_median``,
    ``narrow_gradient_max``, the narrow Hessian's ``narrow_negative_max``, ``narrow_zero``,
    ``narrow_positive`` (medians), ``embedded_gradient_max`` (relative), one count per class
    (``minimum``, ``flat_directions``, ``saddle``, ``not_critical``), ``class`` (the majority), the
    inertia ``hessian_negative`` / ``hessian_zero`` / ``hessian_positive`` (min and max over trials
    when they differ: ``*_min``, ``*_max``), the floor ``hessian_tol_max`` (largest absolute floor
    used), the largest |eigenvalue| called zero relative to max |lambda| (``zero_rel_max``) and the
    smallest called non-zero (``nonzero_rel_min``): a wide gap between them says the split is not
    a matter of the threshold; ``most_negative_rel`` (most negative eigenvalue / max |lambda|).
    """

    name = "embedding_critical_point"
    help = ("embed a non-interpolating local minimum of a narrow network by each map and classify the "
            "embedded point (minimum, flat directions, saddle) from the Hessian's spectrum")
    slots = {"activation": ("activation", "tanh")}
    metrics = ("H", "H0", "class", "discarded", "embedded_gradient_max", "flat_directions", "hessian_negative",
               "hessian_negative_max", "hessian_negative_min", "hessian_positive", "hessian_positive_max",
               "hessian_positive_min", "hessian_tol_max", "hessian_zero", "hessian_zero_max", "hessian_zero_min",
               "kink_margin_min", "minimum", "most_negative_rel", "n_kept", "narrow_gradient_max",
               "narrow_loss_median", "narrow_negative_max", "narrow_positive", "narrow_zero", "nonzero_rel_min",
               "not_critical", "parameters", "saddle", "zero_rel_max")
    params = (
        Param("H0", int, 1, "width of the trained (non-interpolating) network", min=1),
        Param("H", int, 2, "width of the embedded network (H > H0)", min=2),
        Param("embedding", str, "unit_replication", "embedding map", choices=EMBEDDINGS),
        Param("split", float, 0.5, "unit replication: output-weight split lambda"),
        Param("new_bias", float, -1.0, "inactive units / inactive propagation: bias of each added unit"),
        Param("new_output_weight", float, 0.0, "inactive units: output weight of each added unit"),
        Param("new_input_weight", float, 0.0, "inactive propagation: input weight of each added unit"),
        Param("trials", int, 50, "data sets (trials) per cell", min=1),
        Param("n_train", int, 10, "training points", min=1),
        Param("noise_variance", float, 1e-2, "variance of the output noise", min=0.0),
        Param("teacher", list, [1.0, 0.0, 1.0, 0.0], "one-unit teacher [w, b, v, c]",
              item_type=float, check=_teacher_check),
        Param("input_std", float, 1.0, "inputs x ~ N(0, input_std^2)", min=0.0),
        Param("init_std", float, 1.0, "starts: every parameter ~ N(0, init_std^2)", min=0.0),
        Param("max_restarts", int, 10, "fresh starts when the narrow point is not kept", min=0),
        Param("max_iterations", int, 500, "Levenberg-Marquardt iterations per start", min=1),
        Param("newton_steps", int, 20, "Newton polishing steps after Levenberg-Marquardt", min=0),
        Param("gradient_rtol", float, 1e-10, "critical: relative gradient <= gradient_rtol", min=0.0),
        Param("min_loss", float, 1e-8, "keep narrow points with training error >= min_loss", min=0.0),
        Param("require_active", bool, True,
              "ReLU: keep narrow points whose every unit is active on at least one training input"),
        Param("hessian_rtol", float, 1e-9, "|eigenvalue| <= hessian_rtol * max |eigenvalue| counts as zero",
              min=0.0),
    )
    example = {"params": {"trials": 2}, "components": {"activation": {"name": "tanh", "params": {}}}}

    def check(self, params, components):
        """An embedding adds units: H > H0."""
        return None if self.H > self.H0 else ("H", f"H = {self.H} is not larger than H0 = {self.H0}: the "
                                                    "embedding needs H > H0")

    def run(self, cell) -> dict:
        act = cell.activation
        H0, H = self.H0, self.H
        if H <= H0:
            raise ValueError(f"H = {H} must exceed H0 = {H0}")
        teacher = shallow.pack([self.teacher[0]], [self.teacher[1]], [self.teacher[2]], self.teacher[3])
        base_key = tuple(cell.seed.spawn_key) + (stream_key("trials"),)
        entropy = cell.seed.entropy

        def rng(t: int, stream: str) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=base_key + (t, stream_key(stream))))

        kept, discarded = [], 0
        for t in range(self.trials):
            data = rng(t, "data")
            x = self.input_std * data.standard_normal(self.n_train)
            y = shallow.forward(teacher, x, act) + np.sqrt(self.noise_variance) * data.standard_normal(self.n_train)
            narrow, n_bad = self._narrow(x, y, act, rng(t, "init"))
            discarded += n_bad
            if narrow is None:
                continue
            theta0, g0, inert0, loss0 = narrow
            wide = embed(theta0, H, self.embedding, act, split=self.split, bias=self.new_bias,
                         output_weight=self.new_output_weight, input_weight=self.new_input_weight)
            g = relative_gradient(wide, x, y, act)
            lam = np.linalg.eigvalsh(shallow.error_hessian(wide, x, y, act))
            label, inert = classify(lam, g, self.gradient_rtol, self.hessian_rtol)
            top = float(np.max(np.abs(lam)))
            zero = np.abs(lam) <= inert.tol
            margin = float(np.min(np.abs(shallow.preactivations(wide, x)))) if is_relu(act) else None
            kept.append(dict(loss=loss0, g0=g0, inert0=inert0, g=g, label=label, inert=inert, margin=margin,
                             zero_rel=float(np.max(np.abs(lam[zero]))) / top if zero.any() else 0.0,
                             nonzero_rel=float(np.min(np.abs(lam[~zero]))) / top if (~zero).any() else None,
                             neg_rel=float(lam.min()) / top))
        out: dict[str, Any] = {"n_kept": len(kept), "discarded": discarded, "parameters": 3 * H + 1}
        counts = {c: sum(k["label"] == c for k in kept) for c in CLASSES}
        out.update(counts)
        out["class"] = max(CLASSES, key=lambda c: counts[c]) if kept else None
        if not kept:
            return out
        for name, idx in (("hessian_negative", 0), ("hessian_zero", 1), ("hessian_positive", 2)):
            vals = [k["inert"][idx] for k in kept]
            out[name] = int(np.median(vals))
            out[name + "_min"], out[name + "_max"] = int(min(vals)), int(max(vals))
        nonzero = [k["nonzero_rel"] for k in kept if k["nonzero_rel"] is not None]
        margins = [k["margin"] for k in kept if k["margin"] is not None]
        out.update({
            "narrow_loss_median": float(np.median([k["loss"] for k in kept])),
            "narrow_gradient_max": float(max(k["g0"] for k in kept)),
            "narrow_negative_max": int(max(k["inert0"].negative for k in kept)),
            "narrow_zero": int(np.median([k["inert0"].zero for k in kept])),
            "narrow_positive": int(np.median([k["inert0"].positive for k in kept])),
            "embedded_gradient_max": float(max(k["g"] for k in kept)),
            "hessian_tol_max": float(max(k["inert"].tol for k in kept)),
            "zero_rel_max": float(max(k["zero_rel"] for k in kept)),
            "nonzero_rel_min": float(min(nonzero)) if nonzero else None,
            "most_negative_rel": float(min(k["neg_rel"] for k in kept)),
            "kink_margin_min": float(min(margins)) if margins else None,
        })
        return out

    def _narrow(self, x, y, act, init_rng):
        """``(theta, relative gradient, zero eigenvalues, loss)`` of a kept narrow point, or ``None``,
        and the number of discarded starts."""
        from .levenberg_marquardt import levenberg_marquardt

        P = 3 * self.H0 + 1
        bad = 0
        for _ in range(self.max_restarts + 1):
            r = levenberg_marquardt(lambda th: shallow.residuals(th, x, y, act),
                                    lambda th: shallow.jacobian(th, x, act),
                                    self.init_std * init_rng.standard_normal(P), target=0.0,
                                    max_iterations=self.max_iterations)
            theta = newton_polish(r.theta, x, y, act, self.newton_steps)
            g = relative_gradient(theta, x, y, act)
            loss = shallow.training_error(theta, x, y, act)
            inert = shallow.inertia(np.linalg.eigvalsh(shallow.error_hessian(theta, x, y, act)), self.hessian_rtol)
            active = (not (is_relu(act) and self.require_active)
                      or bool(np.all(np.any(shallow.preactivations(theta, x) > 0, axis=0))))
            if g <= self.gradient_rtol and loss >= self.min_loss and inert.negative == 0 and active:
                return (theta, g, inert, loss), bad
            bad += 1
        return None, bad

    def estimate(self, cell_params: Mapping[str, Any], components) -> dict:
        trials = int(cell_params.get("trials", 50))
        P, n = 3 * int(cell_params.get("H", 2)) + 1, int(cell_params.get("n_train", 10))
        # the Hessian (P, P) and its eigen-decomposition's copies; the data and activations
        return {"memory_bytes": int(8 * (3 * P * P + 4 * n * P)), "seconds": 0.05 * trials}

    def figures(self, rows: Sequence[Mapping[str, Any]], context) -> dict:
        from harness.plugin.series import per_series

        def draw(part):
            lines = self.table(part)
            return {"classification_table": _critical_table_figure(lines, context)} if lines else {}

        # one table per combination of any grid axis the table's columns do not show
        return per_series(rows, lambda r: (_activation_of(r), r["params"].get("H0"), r["params"].get("H"),
                                           r["params"].get("embedding"), r["params"].get("split")), draw)

    def tables(self, rows: Sequence[Mapping[str, Any]], context) -> list:
        """The classes of the embedded points with the saddle fraction's Wilson interval
        (:func:`harness_plugins.semi_flat.tables.critical_point_tables`)."""
        from .tables import critical_point_tables

        return critical_point_tables(self.table(rows), context)

    @staticmethod
    def table(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One line per (activation, H0, H, map): counts per class and the inertia."""
        out = []
        for r in rows:
            m = r.get("metrics") or {}
            if r.get("status") != "ok" or not m.get("n_kept"):
                continue
            p = r["params"]
            act = _activation_of(r)

            def span(name):
                lo, hi = m.get(name + "_min"), m.get(name + "_max")
                return f"{lo}" if lo == hi else f"{lo}-{hi}"

            out.append({"activation": act, "H0": p["H0"], "H": p["H"], "map": p["embedding"],
                        "split": p["split"] if p["embedding"] == "unit_replication" else None,
                        "kept": m["n_kept"],
                        "narrow n/z/p": f"{m['narrow_negative_max']}/{m['narrow_zero']}/{m['narrow_positive']}",
                        "minimum": m["minimum"], "flat": m["flat_directions"],
                        "saddle": m["saddle"], "not critical": m["not_critical"],
                        "neg": span("hessian_negative"), "zero": span("hessian_zero"), "pos": span("hessian_positive"),
                        "grad (rel)": m["embedded_gradient_max"], "zero <=": m["zero_rel_max"],
                        "nonzero >=": m["nonzero_rel_min"]})
        order = {e: i for i, e in enumerate(EMBEDDINGS)}
        return sorted(out, key=lambda l: (l["activation"], l["H0"], order.get(l["map"], 9), l["split"] or 0))
