"""The conformance suite's machinery: :class:`CheckResult`, :class:`Skip`, the :func:`check`
decorator that registers a check for a kind, :class:`Subject` (what a check receives) and
the small fixed problems several kinds share.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.plugin.components import Activation, Component, Loss

SEED = 20240501
"""Root seed of every random draw the suite makes (the suite itself is deterministic)."""


N_SE = 5.0
"""Statistical checks allow this many standard errors."""


TIMING_KEY = re.compile(r"(^|_)(seconds|secs|time|wall|elapsed|duration)(_|$)|_s$")
"""Result keys that hold wall-clock timings, left out of the experiment determinism check."""


@dataclass
class CheckResult:
    """The outcome of one check: ``passed`` is True for a skipped check (``skipped`` says so)."""

    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False

    def __str__(self) -> str:
        status = "SKIP" if self.skipped else ("ok" if self.passed else "FAIL")
        return f"[{status}] {self.name}" + (f": {self.detail}" if self.detail else "")


class Skip(Exception):
    """Raised by a check that does not apply to the component; the message is the reason."""


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=key))


def _instance(cls: type[Component], params: dict | None = None) -> Any:
    """``cls(**params)``; :class:`Skip` when a required parameter is not given."""
    params = dict(params or {})
    missing = [p.name for p in cls.params if p.required and p.name not in params]
    if missing:
        raise Skip(f"required parameter(s) {', '.join(missing)} have no default")
    return cls(**params)


class _Tanh(Activation):
    """A fixed activation for the checks that need one (independent of what is registered)."""

    name = "_conformance_tanh"
    help = "tanh"

    def phi(self, x):
        return np.tanh(x)

    def dphi(self, x):
        return 1 - np.tanh(x) ** 2

    def d2phi(self, x):
        return -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)


def _gaussian_weights(shapes, rng) -> list[np.ndarray]:
    return [rng.standard_normal(shape) / math.sqrt(shape[1]) for shape in shapes]


class _HalfSquaredError(Loss):
    """``mean (f - y)^2 / 2``: a fixed loss for the optimizer checks."""

    name = "_conformance_half_mse"
    help = "mean (f - y)^2 / 2"
    curvature = 1.0

    def value(self, f, y):
        return float(np.mean((f - y) ** 2) / 2)

    def grad(self, f, y):
        return (f - y) / f.size


def _same(a: Any, b: Any) -> bool:
    """Equality of results, NaN equal to NaN, lists and dicts item by item."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------- registration

EVERY_KIND = "*"
"""The kind under which the checks common to every kind are registered."""


def instance_arg(subject: "Subject") -> tuple:
    """The default arguments of a check: the component built with its defaults."""
    return (subject.instance,)


def class_arg(subject: "Subject") -> tuple:
    return (subject.cls,)


@dataclass(frozen=True)
class Check:
    """One registered check (:func:`check`): ``fn(*args(subject))`` returns a detail text when it
    passes, raises :class:`AssertionError` when it fails and :class:`Skip` when it does not
    apply. ``after``: the name of a check of the same kind that must pass first (when running a
    component's checks together, :func:`run_checks`)."""

    kind: str
    name: str
    fn: Callable[..., str | None]
    args: Callable[["Subject"], tuple] = instance_arg
    after: str | None = None

    def result(self, subject: "Subject") -> CheckResult:
        """Run on ``subject`` and record the outcome (never raises)."""
        try:
            detail = self.fn(*self.args(subject))
        except Skip as exc:
            return CheckResult(self.name, True, str(exc), skipped=True)
        except AssertionError as exc:
            return CheckResult(self.name, False, str(exc) or "assertion failed")
        except Exception as exc:
            return CheckResult(self.name, False, f"raised {type(exc).__name__}: {exc}")
        return CheckResult(self.name, True, detail or "")

    def __call__(self, subject: "Subject") -> str:
        """Run as one pytest item (:func:`harness.plugin.conformance.parametrize_with_checks`): an
        :class:`AssertionError` fails it, :class:`Skip` skips it."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            try:
                return self.fn(*self.args(subject)) or ""
            except Skip as exc:
                import pytest

                pytest.skip(f"{self.kind} {subject.label}: {self.name}: {exc}")
                raise  # not reached

    def __repr__(self) -> str:
        return f"<check {self.kind}: {self.name}>"


CHECKS: list[Check] = []
"""Every registered check, in registration order (the order they run in)."""


def check(kind: str, name: str, args: Callable[["Subject"], tuple] = instance_arg, after: str | None = None):
    """Register the decorated function as the check ``name`` of ``kind`` (:class:`Check`)."""
    def register(fn):
        CHECKS.append(Check(kind, name, fn, args, after))
        return fn

    return register


def checks_for(kind: str) -> list[Check]:
    """The checks of ``kind``: those of every kind first, then the kind's own."""
    return ([c for c in CHECKS if c.kind == EVERY_KIND] + [c for c in CHECKS if c.kind == kind])


class Subject:
    """What a check receives: the component class, its kind, the registry it was found in, and
    (built on first use) the component configured with its defaults."""

    def __init__(self, kind: str, cls: type[Component], registry: Any = None) -> None:
        self.kind, self.cls, self.registry = kind, cls, registry
        self.label = getattr(cls, "name", "") or cls.__name__

    @functools.cached_property
    def instance(self) -> Any:
        try:
            return _instance(self.cls)
        except Skip:
            raise
        except Exception as exc:
            raise Skip(f"cannot be built with its defaults ({type(exc).__name__}: {exc}; see "
                       "'construct with defaults')") from None

    def __repr__(self) -> str:
        return f"{self.kind}:{self.label}"


def run_checks(subject: Subject) -> list[CheckResult]:
    """Every check of the subject's kind, in order; a check whose ``after`` did not pass (or was
    not run) is left out."""
    done: dict[str, CheckResult] = {}
    out = []
    for c in checks_for(subject.kind):
        if c.after is not None and not (c.after in done and done[c.after].passed and not done[c.after].skipped):
            continue
        result = c.result(subject)
        done[c.name] = result
        out.append(result)
    return out
