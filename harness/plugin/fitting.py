"""Line fits with bootstrap intervals, for figures and tables: the slope of y against x (or of
log y against log x), and a proportional fit y = c x, each with its interval over resampled
points. Plugins draw them on their own figures (:func:`plot_fit`); :mod:`harness.results.fits`
fits a run's rows with them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

DEFAULT_SEED = 0
"""Seed of the bootstrap when no ``rng`` is given, so that the same data give the same interval."""


@dataclass
class FitResult:
    """A fitted line and the bootstrap interval of its slope.

    ``slope`` and ``intercept`` are in the fitted coordinates (natural logs when ``log``);
    ``ci_low`` / ``ci_high`` bound the slope at confidence ``level`` (NaN when the bootstrap
    has too few distinct resamples, e.g. two points); ``r2`` is the coefficient of
    determination in the fitted coordinates; ``n`` the number of points used (after dropping
    non-finite values and, with ``log``, non-positive ones); ``dropped`` the number left out.
    """

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    r2: float
    n: int
    log: bool = False
    level: float = 0.95
    n_boot: int = 0
    dropped: int = 0
    x_min: float = math.nan
    x_max: float = math.nan
    boot_slopes: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    boot_intercepts: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def predict(self, x: Any) -> np.ndarray:
        """The fitted curve at ``x`` (in data units: ``exp(b) * x ** a`` for a log-log fit)."""
        x = np.asarray(x, dtype=float)
        if self.log:
            return np.exp(self.intercept) * x ** self.slope
        return self.intercept + self.slope * x

    def describe(self, precision: int = 3) -> str:
        """``slope 0.512 [0.481, 0.540] (95% CI), R² 0.998, n 12`` (log-log fits say so)."""
        p = precision
        ci = (f"[{self.ci_low:.{p}g}, {self.ci_high:.{p}g}]" if math.isfinite(self.ci_low)
              else "[n/a]")
        kind = "log-log slope" if self.log else "slope"
        return (f"{kind} {self.slope:.{p}g} {ci} ({self.level:.0%} bootstrap CI), "
                f"R² {self.r2:.{p}g}, n {self.n}")

    def as_dict(self) -> dict[str, Any]:
        return {"slope": self.slope, "intercept": self.intercept, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "r2": self.r2, "n": self.n, "log": self.log,
                "level": self.level, "n_boot": self.n_boot, "dropped": self.dropped}


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept along the last axis (NaN where x is constant)."""
    xm = x.mean(axis=-1, keepdims=True)
    ym = y.mean(axis=-1, keepdims=True)
    sxx = ((x - xm) ** 2).sum(axis=-1)
    sxy = ((x - xm) * (y - ym)).sum(axis=-1)
    scale = np.maximum(np.abs(xm[..., 0]), 1.0) ** 2 * x.shape[-1] * 1e-24
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > scale, sxy / np.where(sxx > scale, sxx, 1.0), np.nan)
    intercept = ym[..., 0] - slope * xm[..., 0]
    return slope, intercept


def generator_of(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(DEFAULT_SEED)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def fit_slope(x: Sequence[float], y: Sequence[float], log: bool = False, n_boot: int = 1000,
              rng: np.random.Generator | int | None = None, level: float = 0.95) -> FitResult:
    """Fit a line (``log=True``: a power law) through ``(x, y)`` with a bootstrap CI on the slope.

    ``x`` and ``y`` are 1-D sequences of equal length; pairs with a non-finite value (and, with
    ``log``, a non-positive one) are dropped and counted in ``dropped``. At least two distinct
    ``x`` values must remain, else :class:`ValueError`. ``rng`` is a Generator, a seed, or
    ``None`` (a fixed seed: the same data give the same interval).
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length ({xa.size} and {ya.size})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    if log:
        keep &= (xa > 0) & (ya > 0)
    dropped = int(xa.size - keep.sum())
    xa, ya = xa[keep], ya[keep]
    if np.unique(xa).size < 2:
        what = "finite, positive" if log else "finite"
        raise ValueError(f"a fit needs at least two distinct x values with {what} data; got "
                         f"{np.unique(xa).size} (from {xa.size} point(s), {dropped} dropped)")
    u = np.log(xa) if log else xa
    v = np.log(ya) if log else ya
    slope, intercept = (float(t) for t in _line(u, v))
    resid = v - (intercept + slope * u)
    ss_tot = float(((v - v.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0

    boot_s = boot_b = np.empty(0)
    lo = hi = math.nan
    if n_boot > 0:
        gen = generator_of(rng)
        idx = gen.integers(0, u.size, size=(n_boot, u.size))
        boot_s, boot_b = _line(u[idx], v[idx])
        ok = np.isfinite(boot_s)
        boot_s, boot_b = boot_s[ok], boot_b[ok]
        # too few usable resamples (tiny n): no honest interval
        if boot_s.size >= max(10, n_boot // 2) and u.size >= 3:
            alpha = (1 - level) / 2
            lo, hi = (float(q) for q in np.quantile(boot_s, [alpha, 1 - alpha]))
    return FitResult(slope=slope, intercept=intercept, ci_low=lo, ci_high=hi, r2=r2, n=int(u.size),
                     log=log, level=level, n_boot=n_boot, dropped=dropped,
                     x_min=float(xa.min()), x_max=float(xa.max()),
                     boot_slopes=boot_s, boot_intercepts=boot_b)


def plot_fit(ax: Any, fit: FitResult, label: str | None = None, color: Any = None, band: bool = True,
             num: int = 100, **kwargs: Any) -> Any:
    """Overlay ``fit`` on matplotlib ``ax``: the fitted line over the fitted x range, labelled
    with the slope and its interval, and (``band``) the pointwise bootstrap band of the line.

    A log-log fit is drawn as a curve in data units (set log scales on ``ax`` to see a line).
    Extra keywords go to ``ax.plot``. Returns the line.
    """
    if fit.log:
        xs = np.geomspace(fit.x_min, fit.x_max, num)
    else:
        xs = np.linspace(fit.x_min, fit.x_max, num)
    text = fit.describe()
    label = f"{label}: {text}" if label else f"fit: {text}"
    kwargs.setdefault("linestyle", "--")
    (line,) = ax.plot(xs, fit.predict(xs), label=label, color=color, **kwargs)
    if band and fit.boot_slopes.size >= 10 and math.isfinite(fit.ci_low):
        u = np.log(xs) if fit.log else xs
        curves = fit.boot_intercepts[:, None] + fit.boot_slopes[:, None] * u[None, :]
        alpha = (1 - fit.level) / 2
        low, high = np.quantile(curves, [alpha, 1 - alpha], axis=0)
        if fit.log:
            low, high = np.exp(low), np.exp(high)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return line


def fit_proportional(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> dict[str, Any]:
    """Least squares through the origin, ``y = c x``, with a percentile bootstrap interval over
    the points (seeded: the same data give the same interval). Returns ``c``, ``ci_low``,
    ``ci_high`` (NaN with fewer than 3 points) and ``n``; non-finite pairs are left out."""
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size == 0 or not np.any(xa != 0):
        raise ValueError("a proportional fit needs at least one point with x != 0")
    c = float((xa * ya).sum() / (xa * xa).sum())
    lo = hi = math.nan
    if xa.size >= 3 and n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, xa.size, size=(n_boot, xa.size))
        num, den = (xa[idx] * ya[idx]).sum(axis=1), (xa[idx] ** 2).sum(axis=1)
        boot = num[den > 0] / den[den > 0]
        alpha = (1 - level) / 2
        lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1 - alpha]))
    return {"c": c, "ci_low": lo, "ci_high": hi, "n": int(xa.size), "level": level}
