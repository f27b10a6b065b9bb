"""The plugin conformance suite: every registered component through the interface of its kind.

``check_component(kind, name_or_class)`` returns one :class:`CheckResult` per check; a check
that cannot apply (an experiment without an ``example`` cell, a component with required
parameters) is reported as skipped with its reason. ``assert_conforms(kind, name)`` is the
one-line pytest helper for plugin authors::

    from harness.plugin.conformance import assert_conforms

    def test_my_activation_conforms():
        assert_conforms("activation", "my_softplus")

One pytest item per check, like scikit-learn's ``parametrize_with_checks``::

    from harness.plugin.conformance import parametrize_with_checks

    @parametrize_with_checks([("activation", "my_softplus")])
    def test_conforms(component, check):
        check(component)

What is checked, by kind (one module per kind, :mod:`.activation`, :mod:`.initializer`, ...;
a check is a function registered for its kind with the :func:`~.core.check` decorator):

- every kind: the declaration (name, help, params), that the declared defaults validate, and
  that the component can be built with its defaults;
- activation: shapes and float32/float64 dtypes kept, vectorised (array = element by element),
  finite without floating-point warnings for large ``|x|``, and ``dphi`` / ``d2phi`` against
  central finite differences of ``phi`` / ``dphi`` at points away from kinks;
- initializer: shapes, dtypes, finite, equal seeds give equal weights, per-layer entry
  variance against ``expected_variances()`` within 5 standard errors; ``initialize_biases``
  shapes ``(n, 1)``, dtypes, determinism and ``expected_bias_variances()``;
- architecture: ``problem(d)`` is ``None`` (consistent declarations); a network's layer shapes
  chain from ``d`` to 1; ``trainable``, ``parameter_shapes`` and ``param_count`` agree;
  ``forward`` gives ``(N,)`` and agrees with its network's forward; the NTK the engine computes
  (structured per dense layer, biases and residual blocks included) equals ``J J^T`` with J from
  autograd through the architecture's own ``forward``; a generic forward's NTK (autograd's)
  equals ``J J^T`` with J from central finite differences of the forward, the error printed;
- dataset: shapes, dtypes, finite, equal seeds give equal data, different seeds differ;
- loss: ``grad`` against central finite differences of ``value``, shapes, that the loss
  is a mean over samples, and that a declared ``jit_code`` is one the training kernel computes
  and agrees with it;
- optimizer: ``prepare`` returns a dict; steps keep shapes and dtypes, leave frozen layers
  (gradient ``None``) untouched, move the trainable ones, and are deterministic; on float32
  weights the weights and the state stay float32 and follow the float64 steps to rounding;
- experiment: the ``example`` cell run twice with the same seed gives identical results (timing
  metrics excepted, see :data:`TIMING_KEY`), as a flat dict of scalars and lists of numbers, with
  wall-clock times (``*_seconds``) only under the reserved key ``timings`` (a dict of numbers,
  not compared) and ``resolved`` a dict; its metrics are among those it declares
  (:meth:`~harness.plugin.experiment.Experiment.metric_names`);
- backend: ``ntk`` (full kernel, default arguments) agrees with ``sum_l (F_{l-1} F_{l-1}^T) o
  (B_l B_l^T)`` computed from :mod:`harness.engine.network`; ``stacked_gradient_engine`` (the
  losses and gradients of a stack of networks, first layer frozen or not) agrees with
  :class:`harness.engine.stacked_gradients.StackedGradientEngine`.
"""
from __future__ import annotations

from typing import Any, Iterable

from harness.plugin.components import Component
from harness.plugin.conformance.core import (
    CHECKS,
    EVERY_KIND,
    Check,
    CheckResult,
    Skip,
    Subject,
    check,
    checks_for,
    run_checks,
)
from harness.plugin.registry import KINDS, Registry

from . import activation, architecture, backend, common, dataset, experiment, initializer, loss, optimizer  # noqa: F401

KIND_CHECKS: dict[str, list[Check]] = {kind: [c for c in CHECKS if c.kind == kind] for kind in KINDS}
"""The checks of each kind, after the checks common to all kinds (registered under ``"*"``)."""

assert all(KIND_CHECKS.values()), "every kind needs its checks"

__all__ = ["CHECKS", "EVERY_KIND", "KIND_CHECKS", "Check", "CheckResult", "Skip", "Subject", "assert_conforms", "check",
           "check_component", "checks_for", "parametrize_with_checks"]


def _subject(kind: str, name_or_class: str | type[Component], registry: Registry | None) -> Subject:
    if kind not in KIND_CHECKS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KIND_CHECKS)}")
    if registry is None:
        from harness.plugin.manager import load_registry

        registry = load_registry()
    cls = registry.get(kind, name_or_class) if isinstance(name_or_class, str) else name_or_class
    return Subject(kind, cls, registry)


def check_component(kind: str, name_or_class: str | type[Component],
                    registry: Registry | None = None) -> list[CheckResult]:
    """Run every check that applies to the component ``name_or_class`` of ``kind``.

    ``name_or_class`` is a registered name (looked up in ``registry``, by default the installed
    plugins' registry, built afresh) or a component class (registered or not).
    """
    subject = _subject(kind, name_or_class, registry)
    from threadpoolctl import threadpool_limits

    # The problems are small: one BLAS thread is fastest, and never oversubscribes the machine
    # when several test processes run side by side.
    with threadpool_limits(limits=1, user_api="blas"):
        return run_checks(subject)


def assert_conforms(kind: str, name_or_class: str | type[Component],
                    registry: Registry | None = None) -> list[CheckResult]:
    """Raise :class:`AssertionError` listing every failed check; return all results otherwise."""
    results = check_component(kind, name_or_class, registry)
    failed = [r for r in results if not r.passed]
    if failed:
        label = name_or_class if isinstance(name_or_class, str) else name_or_class.__name__
        raise AssertionError(f"{kind} {label!r} fails {len(failed)} conformance check(s):\n"
                             + "\n".join(f"  {r}" for r in failed))
    return results


def parametrize_with_checks(components: Iterable[tuple[str, Any]], registry: Registry | None = None):
    """A ``pytest.mark.parametrize`` of ``(component, check)`` with one item per check of each
    of ``components`` (``(kind, registered name or class)`` pairs), named ``kind-name-check``;
    the test body calls ``check(component)``."""
    import pytest

    params = []
    for kind, name_or_class in components:
        subject = _subject(kind, name_or_class, registry)
        for c in checks_for(kind):
            params.append(pytest.param(subject, c, id=f"{kind}-{subject.label}-{c.name}"))
    return pytest.mark.parametrize("component, check", params)
